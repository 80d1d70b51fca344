/* percept moderate: is this media close to anything in labeled sets?
 * Exit 0 clean, 1 matched, 2 error. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: percept moderate --db DIR --set NAME... [--threshold X] [-k N] [--json] FILE...\n"
    "       percept moderate --db DIR --set NAME --set-threshold X\n"
    "       percept moderate --server HOST:PORT [--token-file F] ... (same options and output)\n"
    "A set is a collection (\"banned\") or a label inside one (\"banned:weapons\").\n"
    "Each set's stored threshold applies unless --threshold is given.\n"
    "Exit status: 0 nothing matched, 1 a file matched, 2 error.\n";

/* The file's bytes are uploaded; a media error the server names no file
 * for gets the file's name, as embedded mode's message has it. */
static int moderate_remote(pc_client *pc, const char *file, const char *const *sets, int n_sets,
                           float thr, int k, eng_mod_result **m) {
    void *data = NULL;
    size_t len = 0;
    int r = pc_read_file(file, NET_MAX_FRAME_DEFAULT - 4096, &data, &len);
    if (r == PERR_OK) {
        r = db_remote_media_error(pc_moderate_image(pc, data, len, sets, n_sets, thr, k, m), file);
    }
    free(data);
    return r;
}

static int cmd_moderate(int argc, char **argv) {
    db_args a = {0};
    db_list sets = {0}, files = {0};
    float thr = NAN, set_thr = NAN;
    int k = 5, rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(usage_text, stdout); return CLI_OK; }
        else if (!strcmp(s, "--set") && has) rc = db_list_push(&sets, argv[++i]);
        else if (!strcmp(s, "--threshold") && has) rc = db_parse_float(argv[++i], "--threshold", &thr);
        else if (!strcmp(s, "--set-threshold") && has) rc = db_parse_float(argv[++i], "--set-threshold", &set_thr);
        else if (!strcmp(s, "-k") && has) rc = db_parse_int(argv[++i], "-k", &k);
        else if (s[0] == '-' && s[1]) rc = perr_set(PERR_INVALID, "unknown option %s\n%s", s, usage_text);
        else rc = db_list_push(&files, s);
    }
    if (rc == PERR_OK && !sets.n) rc = perr_set(PERR_INVALID, "no --set\n%s", usage_text);
    if (rc == PERR_OK && isnan(set_thr) && !files.n) rc = perr_set(PERR_INVALID, "no file to check\n%s", usage_text);
    if (rc == PERR_OK && !isnan(thr) && (thr < -1 || thr > 1)) rc = perr_set(PERR_INVALID, "--threshold %g: within [-1, 1]", thr);
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 0, isnan(set_thr), &db);
    for (int s = 0; rc == PERR_OK && !isnan(set_thr) && s < sets.n; s++)
        rc = pc ? pc_set_threshold(pc, sets.v[s], set_thr) : eng_set_threshold(db, sets.v[s], set_thr);
    int any = 0, failed = 0;
    cJSON *arr = cJSON_CreateArray();
    for (int f = 0; rc == PERR_OK && f < files.n; f++) {
        eng_mod_result *m = NULL;
        int r = pc ? moderate_remote(pc, files.v[f], sets.v, sets.n, thr, k, &m)
                   : eng_moderate_file(db, files.v[f], sets.v, sets.n, thr, k, &m);
        if (r && (r == PERR_INVALID || r == PERR_NOT_FOUND) && !strstr(perr_msg(), files.v[f])) { rc = r; break; }
        if (r) {
            failed++;
            fprintf(stderr, "percept moderate: %s\n", perr_msg());
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "file", files.v[f]);
            cJSON_AddStringToObject(o, "error", perr_msg());
            cJSON_AddItemToArray(arr, o);
            continue;
        }
        any |= m->matched;
        if (a.json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "file", files.v[f]);
            cJSON_AddBoolToObject(o, "matched", m->matched);
            cJSON *ss = cJSON_AddArrayToObject(o, "sets");
            for (int s = 0; s < m->n_sets; s++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "set", sets.v[s]);
                cJSON_AddNumberToObject(e, "threshold", m->thresholds[s]);
                cJSON_AddBoolToObject(e, "matched", m->set_matched[s]);
                cJSON_AddItemToArray(ss, e);
            }
            cJSON_AddItemToObject(o, "nearest", db_results_json(m->nearest));
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%s: %s\n", files.v[f], m->matched ? "MATCH" : "clean");
            for (int s = 0; s < m->n_sets; s++)
                printf("  set %-24s threshold %.4f  %s\n", sets.v[s], (double)m->thresholds[s], m->set_matched[s] ? "matched" : "-");
            for (int i = 0; i < m->nearest->n; i++) db_print_hit(&m->nearest->hits[i], i + 1);
        }
        eng_mod_result_free(m);
    }
    if (rc == PERR_OK && a.json && files.n) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "matched", any);
        cJSON_AddItemToObject(j, "results", arr);
        db_print_json(j);
    } else cJSON_Delete(arr);
    int out = rc ? cli_fail("moderate", rc) : failed ? CLI_ERROR : any ? CLI_MATCH : CLI_OK;
    pc_close(pc);
    int crc = eng_close(db);
    if (crc && out != CLI_ERROR) out = cli_fail("moderate", crc);
    db_list_free(&sets);
    db_list_free(&files);
    return out;
}

CLI_COMMAND(moderate, "moderate", "check media against labeled sets (exit 1 on a match)", cmd_moderate)
