/* percept dups: groups of duplicates by tier (exact, near, similar). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <string.h>

static int cmd_dups(int argc, char **argv) {
    db_args a = {0};
    const char *coll = NULL;
    eng_dup_tier tier = ENG_DUP_NEAR;
    float thr = 0;
    int rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "--help")) {
            puts("usage: percept dups (--db DIR | --server HOST:PORT [--token-file F]) [--collection C] [--tier exact|near|similar] [--threshold X] [--json]");
            return CLI_OK;
        }
        else if (!strcmp(s, "--collection") && has) coll = argv[++i];
        else if (!strcmp(s, "--threshold") && has) rc = db_parse_float(argv[++i], "--threshold", &thr);
        else if (!strcmp(s, "--tier") && has) {
            const char *v = argv[++i];
            if (!strcmp(v, "exact")) tier = ENG_DUP_EXACT;
            else if (!strcmp(v, "near")) tier = ENG_DUP_NEAR;
            else if (!strcmp(v, "similar")) tier = ENG_DUP_SIMILAR;
            else rc = perr_set(PERR_INVALID, "--tier %s: exact, near or similar", v);
        } else rc = perr_set(PERR_INVALID, "unexpected %s", s);
    }
    if (rc == PERR_OK && (thr < 0 || thr > 1)) rc = perr_set(PERR_INVALID, "--threshold %g: within (0, 1]", thr);
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 0, 1, &db);
    eng_dups *d = NULL;
    if (rc == PERR_OK) rc = pc ? pc_dups(pc, coll, tier, thr, &d) : eng_find_dups(db, coll, tier, thr, &d);
    pc_close(pc);
    if (rc == PERR_OK) {
        static const char *names[] = {"exact", "near", "similar"};
        if (a.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "tier", names[tier]);
            cJSON *arr = cJSON_AddArrayToObject(j, "groups");
            for (int g = 0; g < d->n; g++) {
                cJSON *o = cJSON_CreateObject();
                cJSON *ids = cJSON_AddArrayToObject(o, "ids");
                for (int i = 0; i < d->groups[g].n; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)d->groups[g].ids[i]));
                cJSON_AddNumberToObject(o, "min_score", d->groups[g].min_score);
                cJSON_AddItemToArray(arr, o);
            }
            db_print_json(j);
        } else {
            for (int g = 0; g < d->n; g++) {
                printf("group %d (%s, min score %.4f):", g + 1, names[tier], (double)d->groups[g].min_score);
                for (int i = 0; i < d->groups[g].n; i++) printf(" %llu", (unsigned long long)d->groups[g].ids[i]);
                putchar('\n');
            }
            printf("%d group%s\n", d->n, d->n == 1 ? "" : "s");
        }
    }
    int out = rc ? cli_fail("dups", rc) : CLI_OK;
    eng_dups_free(d);
    eng_close(db);
    return out;
}

CLI_COMMAND(dups, "dups", "duplicate groups: exact, near or similar", cmd_dups)
