/* db_common: shared pieces of the database commands (see db_common.h). */
#define _GNU_SOURCE
#include "cli/db_common.h"
#include "cli/cli.h"
#include "common/perr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int db_take_opt(db_args *a, int argc, char **argv, int *i) {
    const char *o = argv[*i];
    const char **slot = NULL;
    if (!strcmp(o, "--db")) slot = &a->db;
    else if (!strcmp(o, "--model")) slot = &a->model;
    else if (!strcmp(o, "--vocab")) slot = &a->vocab;
    else if (!strcmp(o, "--precision")) slot = &a->precision;
    else if (!strcmp(o, "--server") && !a->local_only) slot = &a->server;
    else if (!strcmp(o, "--token-file") && !a->local_only) slot = &a->token_file;
    else if (!strcmp(o, "--json") && !a->no_json) { a->json = 1; return 1; }
    else if (strcmp(o, "--map-size")) return 0;
    if (*i + 1 >= argc) { perr_set(PERR_INVALID, "%s needs a value", o); return -1; }
    const char *v = argv[++*i];
    if (slot) { *slot = v; return 1; }
    uint64_t m;
    if (db_parse_u64(v, "--map-size", &m)) return -1;
    a->map_size = (size_t)m;
    return 1;
}

int db_open(const db_args *a, int create, int read_only, eng_db **out) {
    *out = NULL;
    if (!a->db) return perr_set(PERR_INVALID, "no database: pass --db DIR");
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = a->model;
    o.precision = a->precision;
    o.read_only = read_only;
    o.map_size = a->map_size;
    const char *ev = getenv("PERCEPT_VOCAB");
    o.vocab_path = a->vocab ? a->vocab : (ev && *ev ? ev : NULL);
    int rc = eng_open(a->db, &o, out);
    if (rc != PERR_NOT_FOUND || !create) return rc;
    /* No database there yet: an ingest creates it with the model found. */
    char *model = NULL, *vocab = NULL;
    rc = cli_find_model(a->model, &model);
    if (rc) return perr_prefix(rc, "creating a database in %s", a->db);
    if (!o.vocab_path && cli_find_vocab(NULL, model, &vocab) == PERR_OK) o.vocab_path = vocab;
    o.model_path = model;
    o.create = 1;
    rc = eng_open(a->db, &o, out);
    free(model);
    free(vocab);
    return rc;
}

int db_parse_u64(const char *s, const char *what, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-')
        return perr_set(PERR_INVALID, "%s: \"%s\" is not a non-negative integer", what, s);
    *out = v;
    return PERR_OK;
}

int db_parse_int(const char *s, const char *what, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < -1000000000L || v > 1000000000L)
        return perr_set(PERR_INVALID, "%s: \"%s\" is not an integer", what, s);
    *out = (int)v;
    return PERR_OK;
}

int db_parse_float(const char *s, const char *what, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return perr_set(PERR_INVALID, "%s: \"%s\" is not a number", what, s);
    *out = v;
    return PERR_OK;
}

int db_parse_kv(char *s, const char *what, eng_kv *out) {
    char *eq = strchr(s, '=');
    if (!eq || eq == s) return perr_set(PERR_INVALID, "%s: \"%s\" is not key=value", what, s);
    *eq = 0;
    out->key = s;
    out->value = eq + 1;
    return PERR_OK;
}

cJSON *db_hit_json(const eng_hit *h) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)h->id);
    cJSON_AddNumberToObject(o, "score", h->score);
    cJSON_AddStringToObject(o, "collection", h->collection);
    cJSON_AddStringToObject(o, "uri", h->uri ? h->uri : "");
    cJSON_AddStringToObject(o, "media", h->media);
    cJSON *l = cJSON_AddArrayToObject(o, "labels");
    for (int i = 0; i < h->n_labels; i++) cJSON_AddItemToArray(l, cJSON_CreateString(h->labels[i]));
    if (h->start_s >= 0) {
        cJSON_AddNumberToObject(o, "start", h->start_s);
        cJSON_AddNumberToObject(o, "end", h->end_s);
    }
    /* Video hits carry their media metadata (image hits keep their shape). */
    if (!strcmp(h->media, "video")) {
        cJSON_AddNumberToObject(o, "width", h->width);
        cJSON_AddNumberToObject(o, "height", h->height);
        cJSON_AddNumberToObject(o, "duration", h->duration_s);
        cJSON_AddNumberToObject(o, "fps", h->fps);
        cJSON_AddStringToObject(o, "codec", h->codec);
    }
    return o;
}

cJSON *db_results_json(const eng_results *r) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; r && i < r->n; i++) cJSON_AddItemToArray(a, db_hit_json(&r->hits[i]));
    return a;
}

cJSON *db_item_json(const eng_item *it, int with_vector) {
    cJSON *o = cJSON_CreateObject();
    char hex[65];
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", it->sha256[i]);
    cJSON_AddNumberToObject(o, "id", (double)it->id);
    cJSON_AddStringToObject(o, "collection", it->collection);
    cJSON_AddStringToObject(o, "uri", it->uri ? it->uri : "");
    cJSON_AddStringToObject(o, "media", it->media);
    cJSON_AddStringToObject(o, "sha256", hex);
    cJSON_AddNumberToObject(o, "size", (double)it->size);
    cJSON_AddNumberToObject(o, "width", it->width);
    cJSON_AddNumberToObject(o, "height", it->height);
    cJSON_AddNumberToObject(o, "created_ms", (double)it->created_ms);
    if (!strcmp(it->media, "video")) {
        cJSON_AddNumberToObject(o, "duration", it->duration_s);
        cJSON_AddNumberToObject(o, "fps", it->fps);
        cJSON_AddStringToObject(o, "codec", it->codec);
        cJSON_AddNumberToObject(o, "segments", it->n_segments);
    }
    cJSON *l = cJSON_AddArrayToObject(o, "labels");
    for (int i = 0; i < it->n_labels; i++) cJSON_AddItemToArray(l, cJSON_CreateString(it->labels[i]));
    cJSON *m = cJSON_AddObjectToObject(o, "meta");
    for (int i = 0; i < it->n_meta; i++) cJSON_AddStringToObject(m, it->meta[i].key, it->meta[i].value);
    if (with_vector && it->vector) {
        cJSON *v = cJSON_AddArrayToObject(o, "vector");
        for (int i = 0; i < it->dim; i++) cJSON_AddItemToArray(v, cJSON_CreateNumber(it->vector[i]));
    }
    return o;
}

cJSON *db_collection_json(const eng_collection_info *ci) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", ci->name);
    cJSON_AddStringToObject(o, "index", ci->factory);
    cJSON_AddNumberToObject(o, "items", (double)ci->n_items);
    cJSON_AddNumberToObject(o, "indexed", (double)ci->n_index);
    cJSON_AddBoolToObject(o, "trained", ci->trained);
    if (isnan(ci->threshold)) cJSON_AddNullToObject(o, "threshold");
    else cJSON_AddNumberToObject(o, "threshold", ci->threshold);
    return o;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, <= U+10FFFF), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n) return 0;
    for (size_t i = 1; i < n; i++) if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;   /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0;   /* surrogate */
    if (c == 0xF0 && s[1] < 0x90) return 0;   /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0;   /* > U+10FFFF */
    return n;
}

static int utf8_valid(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

/* s with every byte that is not part of valid UTF-8 replaced by U+FFFD. */
static char *utf8_lossy(const char *s) {
    char *o = malloc(strlen(s) * 3 + 1), *w = o;
    if (!o) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (n) { memcpy(w, p, n); w += n; p += n; }
        else { memcpy(w, "\xEF\xBF\xBD", 3); w += 3; p++; }
    }
    *w = 0;
    return o;
}

static char *hex_of(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1);
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) snprintf(o + 2 * i, 3, "%02x", (unsigned char)s[i]);
    o[2 * n] = 0;
    return o;
}

/* File names and stored strings are bytes; JSON is UTF-8. A string that is
 * not valid UTF-8 is printed lossy (U+FFFD per bad byte) and, as an object
 * member, gets a sibling "<key>_hex" with its exact bytes (docs/cli.md). */
static void json_make_utf8(cJSON *j) {
    for (cJSON *c = j ? j->child : NULL; c; c = c->next) {
        if (c->string && !utf8_valid(c->string)) {
            char *k = utf8_lossy(c->string);
            if (k) {
                if (!(c->type & cJSON_StringIsConst)) cJSON_free(c->string);
                c->string = k;
                c->type &= ~cJSON_StringIsConst;
            }
        }
        if (cJSON_IsString(c) && c->valuestring && !utf8_valid(c->valuestring)) {
            char *hex = hex_of(c->valuestring), *v = utf8_lossy(c->valuestring);
            if (v) { cJSON_free(c->valuestring); c->valuestring = v; }
            if (hex && c->string && cJSON_IsObject(j)) {
                char key[256];
                snprintf(key, sizeof key, "%s_hex", c->string);
                cJSON *h = cJSON_CreateString(hex);
                /* after c, so the walk does not visit it again */
                if (h) {
                    h->string = strdup(key);
                    h->prev = c;
                    h->next = c->next;
                    if (c->next) c->next->prev = h;
                    else j->child->prev = h;
                    c->next = h;
                    c = h;
                }
            }
            free(hex);
        } else if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            json_make_utf8(c);
        }
    }
}

void db_print_json(cJSON *j) {
    json_make_utf8(j);
    char *s = cJSON_PrintUnformatted(j);
    if (s) { fputs(s, stdout); fputc('\n', stdout); free(s); }
    cJSON_Delete(j);
}

void db_print_hit(const eng_hit *h, int rank) {
    printf("%3d  %.6f  %-10s id=%-8llu %s", rank, (double)h->score, h->collection,
           (unsigned long long)h->id, h->uri ? h->uri : "");
    if (!strcmp(h->media, "video")) printf("  (video %.1fs)", h->duration_s);
    if (h->start_s >= 0)
        printf("  [%02d:%05.2f-%02d:%05.2f]", (int)(h->start_s / 60), h->start_s - 60 * (int)(h->start_s / 60),
               (int)(h->end_s / 60), h->end_s - 60 * (int)(h->end_s / 60));
    for (int i = 0; i < h->n_labels; i++) printf(i ? ",%s" : "  labels=%s", h->labels[i]);
    putchar('\n');
}

int db_list_push(db_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        const char **n = realloc(l->v, sizeof *n * (size_t)cap);
        if (!n) return perr_set(PERR_NOMEM, "options");
        l->v = n;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return PERR_OK;
}

void db_list_free(db_list *l) {
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int db_remote_media_error(int r, const char *file) {
    if (r != PERR_DECODE && r != PERR_UNSUPPORTED && r != PERR_TOO_LARGE) return r;
    char m[2048]; /* a copy: perr_set overwrites perr_msg() */
    snprintf(m, sizeof m, "%s", perr_msg());
    return !strncmp(m, "image: ", 7) ? perr_set(r, "%s: %s", file, m + 7) : perr_prefix(r, "%s", file);
}
