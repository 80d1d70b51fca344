/* percept export: every item as one JSON line (metadata and vector). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <string.h>

static int export_one(void *user, const eng_item *it) {
    (void)user;
    db_print_json(db_item_json(it, 1));
    return ferror(stdout) ? perr_set(PERR_IO, "writing to stdout") : 0;
}

static int cmd_export(int argc, char **argv) {
    db_args a = {0};
    a.no_json = 1;  /* always JSON lines: no --json to take */
    const char *coll = NULL;
    int rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        if (!strcmp(argv[i], "--help")) { puts("usage: percept export (--db DIR | --server HOST:PORT [--token-file F]) [--collection C]"); return CLI_OK; }
        if (!strcmp(argv[i], "--collection") && i + 1 < argc) coll = argv[++i];
        else rc = perr_set(PERR_INVALID, "unexpected %s", argv[i]);
    }
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 0, 1, &db);
    if (rc == PERR_OK) rc = pc ? pc_export(pc, coll, 1, export_one, NULL) : eng_foreach(db, coll, 1, export_one, NULL);
    pc_close(pc);
    int out = rc ? cli_fail("export", rc) : CLI_OK;
    eng_close(db);
    return out;
}

CLI_COMMAND(export, "export", "items as JSON lines (metadata and vectors)", cmd_export)
