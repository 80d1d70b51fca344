/* percept get: one item's record (always JSON). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <string.h>

static int cmd_get(int argc, char **argv) {
    db_args a = {0};
    uint64_t id = 0;
    int have = 0, vec = 0, rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        if (!strcmp(argv[i], "--help")) { puts("usage: percept get (--db DIR | --server HOST:PORT [--token-file F]) [--vector] [--json] ID"); return CLI_OK; }
        if (!strcmp(argv[i], "--vector")) vec = 1;
        else if (!have) { rc = db_parse_u64(argv[i], "ID", &id); have = 1; }
        else rc = perr_set(PERR_INVALID, "one id only");
    }
    if (rc == PERR_OK && !have) rc = perr_set(PERR_INVALID, "usage: percept get --db DIR ID");
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK && a.server) rc = pc_connect_cli(a.server, a.token_file, &pc);
    else if (rc == PERR_OK) rc = db_open(&a, 0, 1, &db);
    eng_item *it = NULL;
    if (rc == PERR_OK) rc = pc ? pc_get(pc, id, vec, &it) : eng_get(db, id, vec, &it);
    if (rc == PERR_OK) db_print_json(db_item_json(it, vec));
    int out = rc ? cli_fail("get", rc) : CLI_OK;
    eng_item_free(it);
    eng_close(db);
    pc_close(pc);
    return out;
}

CLI_COMMAND(get, "get", "show one item (JSON)", cmd_get)
