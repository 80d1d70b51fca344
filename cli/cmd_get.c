/* percept get: one item's record (always JSON). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>


/* Writes the thumbnail bytes to path ("-": stdout). */
static int write_thumb(const char *path, const eng_thumb *t) {
    FILE *f = strcmp(path, "-") ? fopen(path, "wb") : stdout;
    if (!f) return perr_errno(errno, "%s", path);
    int bad = fwrite(t->data, 1, t->len, f) != t->len;
    if (f != stdout) bad |= fclose(f) != 0;
    else bad |= fflush(f) != 0;
    return bad ? perr_errno(errno, "%s: write", path) : PERR_OK;
}

static int cmd_get(int argc, char **argv) {
    db_args a = {0};
    uint64_t id = 0;
    int have = 0, vec = 0, rc = PERR_OK, segment = -1;
    const char *thumb_path = NULL;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        if (!strcmp(argv[i], "--help")) {
            puts("usage: percept get (--db DIR | --server HOST:PORT [--token-file F]) [--vector] [--json]\n"
                 "                   [--thumbnail FILE [--segment N]] ID\n"
                 "--thumbnail FILE: also write the item's thumbnail (WebP; made from its file when\n"
                 "  none was stored) to FILE (\"-\": stdout, then no JSON); --segment N: video segment N's.");
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--vector")) vec = 1;
        else if (!strcmp(argv[i], "--thumbnail") && i + 1 < argc) thumb_path = argv[++i];
        else if (!strcmp(argv[i], "--segment") && i + 1 < argc) {
            uint64_t s = 0;
            rc = db_parse_u64(argv[++i], "--segment", &s);
            if (!rc && s > 65535) rc = perr_set(PERR_INVALID, "--segment %llu: too large", (unsigned long long)s);
            segment = (int)s;
        }
        else if (!have) { rc = db_parse_u64(argv[i], "ID", &id); have = 1; }
        else rc = perr_set(PERR_INVALID, "one id only");
    }
    if (rc == PERR_OK && !have) rc = perr_set(PERR_INVALID, "usage: percept get --db DIR ID");
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK && a.server) rc = pc_connect_cli(a.server, a.token_file, &pc);
    else if (rc == PERR_OK) rc = db_open(&a, 0, 1, &db);
    eng_item *it = NULL;
    if (rc == PERR_OK && segment >= 0 && !thumb_path) rc = perr_set(PERR_INVALID, "--segment goes with --thumbnail");
    if (rc == PERR_OK) rc = pc ? pc_get(pc, id, vec, &it) : eng_get(db, id, vec, &it);
    eng_thumb th = {0};
    if (rc == PERR_OK && thumb_path)
        rc = pc ? pc_get_thumbnail(pc, id, segment, &th) : eng_get_thumbnail(db, id, segment, &th);
    if (rc == PERR_OK && thumb_path) rc = write_thumb(thumb_path, &th);
    if (rc == PERR_OK && !(thumb_path && !strcmp(thumb_path, "-"))) db_print_json(db_item_json(it, vec));
    eng_thumb_clear(&th);
    int out = rc ? cli_fail("get", rc) : CLI_OK;
    eng_item_free(it);
    eng_close(db);
    pc_close(pc);
    return out;
}

CLI_COMMAND(get, "get", "show one item (JSON)", cmd_get)
