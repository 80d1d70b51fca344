/* db_common: what the database commands of the CLI share (opening a
 * database, parsing numbers and ids, printing results). */
#ifndef PERCEPT_CLI_DB_COMMON_H
#define PERCEPT_CLI_DB_COMMON_H

#include "engine/eng.h"

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct db_args {
    const char *db;        /* --db DIR */
    const char *model;     /* --model FILE */
    const char *vocab;     /* --vocab FILE */
    size_t map_size;       /* --map-size BYTES (hidden; tests) */
    const char *server;    /* --server HOST:PORT: a percept serve instead of --db */
    const char *token_file;/* --token-file F */
    const char *precision; /* --precision fp32|bf16 (eng_open_opts.precision) */
    int json;              /* --json */
    int local_only;        /* set by the command: no --server/--token-file... */
    int no_json;           /* ...no --json (they are then "unknown options") */
} db_args;

/* Consumes an option every database command shares at argv[*i] (--db,
 * --model, --vocab, --map-size, --server, --token-file, --json, --precision); returns 1
 * when it did (advancing *i), 0 when argv[*i] is something else, -1 on a
 * missing value (message set). */
int db_take_opt(db_args *a, int argc, char **argv, int *i);

/* Opens the database of a command. create: an ingest may create it (the
 * model then comes from --model, $PERCEPT_MODEL or the installed default).
 * read_only: queries, never blocking a writer. */
int db_open(const db_args *a, int create, int read_only, eng_db **out);

/* Option value helpers: set a message and return an error code. */
int db_parse_u64(const char *s, const char *what, uint64_t *out);
int db_parse_int(const char *s, const char *what, int *out);
int db_parse_float(const char *s, const char *what, float *out);
/* "k=v" -> key/value pointing into s (modified in place). */
int db_parse_kv(char *s, const char *what, eng_kv *out);

/* JSON of one hit / a result list / an item. */
cJSON *db_hit_json(const eng_hit *h);
cJSON *db_results_json(const eng_results *r);
cJSON *db_item_json(const eng_item *it, int with_vector);
/* One collection as `collection list --json` and `stats --json` print it. */
cJSON *db_collection_json(const eng_collection_info *ci);
/* Prints JSON compactly followed by a newline and frees it. */
void db_print_json(cJSON *j);
/* Human line for a hit. */
void db_print_hit(const eng_hit *h, int rank);

/* After a server call on the bytes of `file` failed with code r: the engine
 * names an uploaded buffer "image", so a media error is rewritten to name
 * the file, as embedded mode does ("x.jpg: truncated JPEG"). Returns r. */
int db_remote_media_error(int r, const char *file);

/* A growable array of pointers (for repeated options). */
typedef struct db_list { const char **v; int n, cap; } db_list;
int db_list_push(db_list *l, const char *s);
void db_list_free(db_list *l);

#endif
