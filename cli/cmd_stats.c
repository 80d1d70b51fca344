/* percept stats: database size, model, collections. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Disk bytes LMDB spends on one stored vector (4 KiB pages, LMDB 0.9): a
 * leaf node is an 8-byte header + 12-byte key + 4 x dim bytes; a node above
 * (4096 - 16) / 2 bytes goes to its own overflow pages (16-byte header +
 * value, whole pages). So dim 512 -> 4 KiB, 1024 -> 8 KiB (docs/storage.md). */
static uint64_t vector_disk_bytes(int dim) {
    uint64_t value = 4 * (uint64_t)(dim > 0 ? dim : 0), node = 8 + 12 + value;
    if (node <= (4096 - 16) / 2) return node;
    return ((16 + value + 4095) / 4096) * 4096;
}

static int cmd_stats(int argc, char **argv) {
    db_args a = {0};
    int rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        if (!strcmp(argv[i], "--help")) { puts("usage: percept stats (--db DIR | --server HOST:PORT [--token-file F]) [--json]"); return CLI_OK; }
        else rc = perr_set(PERR_INVALID, "unexpected %s", argv[i]);
    }
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK && a.server) rc = pc_connect_cli(a.server, a.token_file, &pc);
    else if (rc == PERR_OK) rc = db_open(&a, 0, 1, &db);
    eng_stats st;
    eng_info info;
    eng_collection_info *ci = NULL;
    int n = 0;
    if (rc == PERR_OK && pc) rc = pc_stats(pc, &st, &info);
    if (rc == PERR_OK && pc) rc = pc_collection_list(pc, &ci, &n);
    if (rc == PERR_OK && !pc) rc = eng_get_stats(db, &st);
    if (rc == PERR_OK && !pc) rc = eng_get_info(db, &info);
    if (rc == PERR_OK && !pc) rc = eng_collection_list(db, &ci, &n);
    if (rc == PERR_OK) {
        char fp[17];
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)info.model_fingerprint);
        if (a.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "items", (double)st.n_items);
            cJSON_AddNumberToObject(j, "lmdb_bytes", (double)st.lmdb_bytes);
            cJSON_AddNumberToObject(j, "index_bytes", (double)st.index_bytes);
            cJSON_AddNumberToObject(j, "map_size", (double)st.map_size);
            cJSON_AddNumberToObject(j, "lmdb_bytes_per_item", st.n_items ? (double)st.lmdb_bytes / st.n_items : 0);
            cJSON_AddNumberToObject(j, "vector_disk_bytes", (double)vector_disk_bytes(info.dim));
            cJSON *m = cJSON_AddObjectToObject(j, "model");
            cJSON_AddStringToObject(m, "name", info.model_name);
            cJSON_AddStringToObject(m, "path", info.model_path);
            cJSON_AddStringToObject(m, "fingerprint", fp);
            cJSON_AddNumberToObject(m, "dim", info.dim);
            cJSON_AddStringToObject(m, "precision", info.precision);
            cJSON_AddStringToObject(m, "encoder_isa", info.encoder_isa);
            cJSON_AddNumberToObject(j, "layout_version", info.layout_version);
            cJSON *arr = cJSON_AddArrayToObject(j, "collections");
            for (int i = 0; i < n; i++) {
                cJSON_AddItemToArray(arr, db_collection_json(&ci[i]));
            }
            db_print_json(j);
        } else {
            printf("items        %llu\n", (unsigned long long)st.n_items);
            printf("model        %s (%s, fingerprint %s, dim %d)\n", info.model_name, info.model_path, fp, info.dim);
            printf("encoder      %s vectors, matrix products on %s\n", info.precision[0] ? info.precision : "fp32",
                   info.encoder_isa[0] ? info.encoder_isa : "?");
            printf("lmdb         %.1f MiB (map %.1f GiB)\n", st.lmdb_bytes / 1048576.0, st.map_size / 1073741824.0);
            if (st.n_items)
                printf("per item     %.1f KiB in LMDB (file size / items; a %d-d vector alone takes %.1f KiB%s)\n",
                       st.lmdb_bytes / 1024.0 / st.n_items, info.dim, vector_disk_bytes(info.dim) / 1024.0,
                       vector_disk_bytes(info.dim) >= 4096 ? " of overflow pages" : " inline");
            printf("indexes      %.1f MiB\n", st.index_bytes / 1048576.0);
            for (int i = 0; i < n; i++)
                printf("collection   %-20s %-14s %llu items\n", ci[i].name, ci[i].factory, (unsigned long long)ci[i].n_items);
        }
    }
    free(ci);
    int out = rc ? cli_fail("stats", rc) : CLI_OK;
    eng_close(db);
    pc_close(pc);
    return out;
}

CLI_COMMAND(stats, "stats", "database size, model and collections", cmd_stats)
