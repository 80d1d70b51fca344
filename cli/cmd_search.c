/* percept search: text, image, item or vector queries against a database. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "cli/html.h"
#include "common/perr.h"
#include "net/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: percept search --db DIR (--text S | --image F | --id N | --vector F)\n"
    "                      [-k N] [--min-score X] [--collection C]... [--label L]...\n"
    "                      [--where k=v]... [--include-self] [--segments] [--json] [--html FILE]\n"
    "       percept search --server HOST:PORT [--token-file F] ... (same options and output)\n"
    "--image F: any photo or video (decided by content; --video is the same).\n"
    "--segments: search video segments; each hit is a moment \"video X, 00:41-00:43\".\n"
    "--vector F: a JSON array of floats, or raw little-endian float32 (dim x 4 bytes).\n"
    "--id N: items similar to item N, itself excluded unless --include-self;\n"
    "searches N's own collection unless --collection is given.\n"
    "--html FILE: also write the results as a self-contained page with thumbnails.\n";

/* Reads a query vector file: JSON array or raw float32. */
static int read_vector(const char *path, int dim, float **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return perr_errno(errno, "%s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > ((size_t)64 << 20)) { free(buf); fclose(f); return perr_set(PERR_TOO_LARGE, "%s: too large for a vector", path); }
            cap = cap ? cap * 2 : 65536;
            char *n = realloc(buf, cap + 1);
            if (!n) { free(buf); fclose(f); return perr_set(PERR_NOMEM, "%s", path); }
            buf = n;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    fclose(f);
    float *v = malloc(sizeof(float) * (size_t)dim);
    if (!v) { free(buf); return perr_set(PERR_NOMEM, "vector"); }
    size_t p = 0;
    while (p < len && (buf[p] == ' ' || buf[p] == '\n' || buf[p] == '\t' || buf[p] == '\r')) p++;
    int rc = PERR_OK;
    if (p < len && buf[p] == '[') {
        buf[len] = 0;
        cJSON *j = cJSON_Parse(buf);
        int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : -1;
        if (n != dim) rc = perr_set(PERR_INVALID, "%s: expected a JSON array of %d numbers (got %d)", path, dim, n);
        for (int i = 0; rc == PERR_OK && i < n; i++) {
            cJSON *e = cJSON_GetArrayItem(j, i);
            if (!cJSON_IsNumber(e)) rc = perr_set(PERR_INVALID, "%s: element %d is not a number", path, i);
            else v[i] = (float)e->valuedouble;
        }
        cJSON_Delete(j);
    } else if (len == sizeof(float) * (size_t)dim) {
        memcpy(v, buf, len);
    } else {
        rc = perr_set(PERR_INVALID, "%s: %zu bytes; a raw vector has %d float32 (%zu bytes), or give a JSON array",
                      path, len, dim, sizeof(float) * (size_t)dim);
    }
    free(buf);
    if (rc) { free(v); return rc; }
    *out = v;
    return PERR_OK;
}

static int cmd_search(int argc, char **argv) {
    db_args a = {0};
    eng_query q;
    eng_query_default(&q);
    db_list colls = {0}, labels = {0};
    eng_kv where[64];
    int n_where = 0, modes = 0;
    const char *text = NULL, *image = NULL, *vecfile = NULL, *html = NULL;
    uint64_t id = 0;
    int has_id = 0, rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(usage_text, stdout); return CLI_OK; }
        else if (!strcmp(s, "--html") && has) html = argv[++i];
        else if (!strcmp(s, "--include-self")) q.include_self = 1;
        else if (!strcmp(s, "--text") && has) { text = argv[++i]; modes++; }
        else if ((!strcmp(s, "--image") || !strcmp(s, "--video")) && has) { image = argv[++i]; modes++; }
        else if (!strcmp(s, "--segments")) q.segments = 1;
        else if (!strcmp(s, "--vector") && has) { vecfile = argv[++i]; modes++; }
        else if (!strcmp(s, "--id") && has) { rc = db_parse_u64(argv[++i], "--id", &id); has_id = 1; modes++; }
        else if ((!strcmp(s, "-k") || !strcmp(s, "--k")) && has) rc = db_parse_int(argv[++i], "-k", &q.k);
        else if (!strcmp(s, "--min-score") && has) { rc = db_parse_float(argv[++i], "--min-score", &q.min_score); q.has_min_score = 1; }
        else if (!strcmp(s, "--collection") && has) rc = db_list_push(&colls, argv[++i]);
        else if (!strcmp(s, "--label") && has) rc = db_list_push(&labels, argv[++i]);
        else if (!strcmp(s, "--where") && has) {
            if (n_where == 64) rc = perr_set(PERR_TOO_LARGE, "more than 64 --where");
            else rc = db_parse_kv(argv[++i], "--where", &where[n_where++]);
        }
        else rc = perr_set(PERR_INVALID, "unknown option %s (or missing value)\n%s", s, usage_text);
    }
    if (rc == PERR_OK && modes != 1)
        rc = perr_set(PERR_INVALID, "give exactly one of --text, --image, --id, --vector\n%s", usage_text);
    if (rc == PERR_OK && (q.k < 1 || q.k > 4096) && !(q.has_min_score && q.k == 0))
        rc = perr_set(PERR_INVALID, "-k %d: between 1 and 4096", q.k);
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK && a.server) rc = pc_connect_cli(a.server, a.token_file, &pc);
    else if (rc == PERR_OK) rc = db_open(&a, 0, 1, &db);
    if (rc) { db_list_free(&colls); db_list_free(&labels); return cli_fail("search", rc); }
    q.collections = colls.v;
    q.n_collections = colls.n;
    q.labels = labels.v;
    q.n_labels = labels.n;
    q.where = where;
    q.n_where = n_where;
    eng_results *res = NULL;
    if (pc) { /* the same queries through the server (net/client.h) */
        if (text) rc = pc_search_text(pc, text, &q, &res);
        else if (has_id) rc = pc_search_id(pc, id, &q, &res);
        else if (image) {
            void *data = NULL;
            size_t len = 0;
            rc = pc_read_file(image, NET_MAX_FRAME_DEFAULT - 4096, &data, &len);
            if (rc == PERR_OK) rc = pc_search_image(pc, data, len, &q, &res);
            free(data);
        } else {
            float *v = NULL;
            rc = read_vector(vecfile, pc_dim(pc), &v);
            if (rc == PERR_OK) rc = pc_search_vector(pc, v, pc_dim(pc), &q, &res);
            free(v);
        }
    }
    else if (text) rc = eng_search_text(db, text, &q, &res);
    else if (image) rc = eng_search_image_file(db, image, &q, &res);
    else if (has_id) rc = eng_search_id(db, id, &q, &res);
    else {
        float *v = NULL;
        rc = read_vector(vecfile, eng_dim(db), &v);
        if (rc == PERR_OK) rc = eng_search_vector(db, v, eng_dim(db), &q, &res);
        free(v);
    }
    if (rc == PERR_OK) {
        if (a.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddItemToObject(j, "results", db_results_json(res));
            db_print_json(j);
        } else {
            if (res->n == 0) printf("no results\n");
            for (int i = 0; i < res->n; i++) db_print_hit(&res->hits[i], i + 1);
        }
    }
    if (rc == PERR_OK && html) { /* cli/html.c */
        char idbuf[24];
        snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)id);
        html_query hq = {text ? "text" : image ? "image" : has_id ? "id" : "vector",
                         text ? text : image ? image : has_id ? idbuf : vecfile, a.server ? a.server : a.db};
        rc = html_write_results(html, &hq, res);
    }
    int out = rc ? cli_fail("search", rc) : CLI_OK;
    eng_results_free(res);
    eng_close(db);
    pc_close(pc);
    db_list_free(&colls);
    db_list_free(&labels);
    return out;
}

CLI_COMMAND(search, "search", "find items by text, image, item id or vector", cmd_search)
