/* percept label: add or remove a label on items. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_label(int argc, char **argv) {
    db_args a = {0};
    a.no_json = 1;
    const char *action = NULL, *label = NULL;
    uint64_t *ids = calloc((size_t)argc + 1, sizeof *ids);
    int n = 0, rc = ids ? PERR_OK : perr_set(PERR_NOMEM, "ids");
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        if (!strcmp(argv[i], "--help")) { puts("usage: percept label (--db DIR | --server HOST:PORT [--token-file F]) add|rm LABEL ID..."); free(ids); return CLI_OK; }
        else if (!action) action = argv[i];
        else if (!label) label = argv[i];
        else rc = db_parse_u64(argv[i], "ID", &ids[n++]);
    }
    if (rc == PERR_OK && (!action || (strcmp(action, "add") && strcmp(action, "rm")) || !label || !n))
        rc = perr_set(PERR_INVALID, "usage: percept label --db DIR add|rm LABEL ID...");
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 0, 0, &db);
    if (rc == PERR_OK && pc) rc = pc_label(pc, label, ids, n, strcmp(action, "add") != 0);
    else if (rc == PERR_OK) rc = !strcmp(action, "add") ? eng_label_add(db, label, ids, n) : eng_label_remove(db, label, ids, n);
    pc_close(pc);
    int out = rc ? cli_fail("label", rc) : CLI_OK;
    int crc = eng_close(db);
    if (crc && out == CLI_OK) out = cli_fail("label", crc);
    free(ids);
    return out;
}

CLI_COMMAND(label, "label", "add or remove a label on items", cmd_label)
