/* percept collection: create, list and drop collections. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: percept collection --db DIR create NAME [--index FACTORY] [--no-thumbnails]\n"
    "       percept collection --db DIR thumbnails NAME on|off\n"
    "       percept collection --db DIR list [--json]\n"
    "       percept collection --db DIR drop NAME\n"
    "       percept collection --server HOST:PORT [--token-file F] ... (same actions and output)\n"
    "FACTORY: a FAISS index_factory string (default \"Flat\": exact);\n"
    "e.g. HNSW32, IVF1024,Flat, IVF256,SQ8 (trained once enough items are in).\n"
    "Thumbnails (256 px WebP, kept at ingest for result pages) are on by default;\n"
    "off applies to items ingested afterwards.\n";

static int cmd_collection(int argc, char **argv) {
    db_args a = {0};
    const char *pos[3] = {0};
    int npos = 0, rc = PERR_OK;
    const char *factory = NULL;
    int no_thumbs = 0;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(usage_text, stdout); return CLI_OK; }
        else if (!strcmp(s, "--index") && i + 1 < argc) factory = argv[++i];
        else if (!strcmp(s, "--no-thumbnails")) no_thumbs = 1;
        else if (s[0] == '-' || npos == 3) rc = perr_set(PERR_INVALID, "unexpected %s\n%s", s, usage_text);
        else pos[npos++] = s;
    }
    if (rc == PERR_OK && !npos) rc = perr_set(PERR_INVALID, "no action\n%s", usage_text);
    int list = rc == PERR_OK && !strcmp(pos[0], "list");
    int thumbs = rc == PERR_OK && !strcmp(pos[0], "thumbnails");
    if (thumbs && (npos != 3 || (strcmp(pos[2], "on") && strcmp(pos[2], "off"))))
        rc = perr_set(PERR_INVALID, "thumbnails NAME on|off\n%s", usage_text);
    else if (rc == PERR_OK && !list && !thumbs &&
             (npos != 2 || (strcmp(pos[0], "create") && strcmp(pos[0], "drop"))))
        rc = perr_set(PERR_INVALID, "unknown action\n%s", usage_text);
    if (rc == PERR_OK && (thumbs || no_thumbs) && a.server)
        rc = perr_set(PERR_UNSUPPORTED, "thumbnail settings need --db (not over the protocol)");
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 0, list, &db);
    if (rc == PERR_OK) {
        if (list) {
            eng_collection_info *ci = NULL;
            int n = 0;
            rc = pc ? pc_collection_list(pc, &ci, &n) : eng_collection_list(db, &ci, &n);
            if (rc == PERR_OK && a.json) {
                cJSON *arr = cJSON_CreateArray();
                for (int i = 0; i < n; i++) {
                    cJSON_AddItemToArray(arr, db_collection_json(&ci[i]));
                }
                cJSON *j = cJSON_CreateObject();
                cJSON_AddItemToObject(j, "collections", arr);
                db_print_json(j);
            } else if (rc == PERR_OK) {
                for (int i = 0; i < n; i++)
                    printf("%-20s %-16s %10llu items%s\n", ci[i].name, ci[i].factory,
                           (unsigned long long)ci[i].n_items, ci[i].trained ? "" : "  (untrained: exact search)");
            }
            free(ci);
        } else if (!strcmp(pos[0], "create")) {
            rc = pc ? pc_collection_create(pc, pos[1], factory) : eng_collection_create(db, pos[1], factory);
            if (rc == PERR_OK && no_thumbs) rc = eng_collection_set_thumbnails(db, pos[1], 0);
        } else if (thumbs) {
            rc = eng_collection_set_thumbnails(db, pos[1], !strcmp(pos[2], "on"));
        } else {
            rc = pc ? pc_collection_drop(pc, pos[1]) : eng_collection_drop(db, pos[1]);
        }
    }
    pc_close(pc);
    int out = rc ? cli_fail("collection", rc) : CLI_OK;
    int crc = eng_close(db);
    if (crc && !rc) out = cli_fail("collection", crc);
    return out;
}

CLI_COMMAND(collection, "collection", "create, list or drop collections", cmd_collection)
