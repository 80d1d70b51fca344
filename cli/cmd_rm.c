/* percept rm: delete items (from LMDB and their index). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_rm(int argc, char **argv) {
    db_args a = {0};
    uint64_t *ids = calloc((size_t)argc + 1, sizeof *ids);
    int n = 0, rc = ids ? PERR_OK : perr_set(PERR_NOMEM, "ids");
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        if (!strcmp(argv[i], "--help")) { puts("usage: percept rm (--db DIR | --server HOST:PORT [--token-file F]) [--json] ID..."); free(ids); return CLI_OK; }
        else rc = db_parse_u64(argv[i], "ID", &ids[n++]);
    }
    if (rc == PERR_OK && !n) rc = perr_set(PERR_INVALID, "no id given (usage: percept rm --db DIR ID...)");
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 0, 0, &db);
    int removed = 0;
    /* Over the server a partial NOT_FOUND carries no count: only the error is printed. */
    int known = rc == PERR_OK && (db || pc);
    if (rc == PERR_OK) rc = pc ? pc_delete(pc, ids, n, &removed) : eng_remove(db, ids, n, &removed);
    if (pc && rc) known = 0;
    pc_close(pc);
    int out = rc ? cli_fail("rm", rc) : CLI_OK;
    if (known) {
        if (a.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "removed", removed);
            db_print_json(j);
        } else printf("removed %d\n", removed);
    }
    int crc = eng_close(db);
    if (crc && out == CLI_OK) out = cli_fail("rm", crc);
    free(ids);
    return out;
}

CLI_COMMAND(rm, "rm", "delete items by id", cmd_rm)
