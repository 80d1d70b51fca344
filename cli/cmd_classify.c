/* percept classify: zero-shot classification of images against label texts. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: percept classify (--db DIR | --model M) --labels \"cat,dog,...\"\n"
    "                        [--prompt \"a photo of a {label}.\"] [--top N] [--json] FILE...\n"
    "       percept classify --server HOST:PORT [--token-file F] ... (same options and output)\n"
    "Probabilities: softmax over labels of exp(logit_scale) * cos(image, prompt).\n";

/* The file's bytes are uploaded; a media error the server names no file
 * for gets the file's name, as embedded mode's message has it. */
static int classify_remote(pc_client *pc, const char *file, const char *const *labels, int n,
                           const char *prompt, float *probs) {
    void *data = NULL;
    size_t len = 0;
    int r = pc_read_file(file, NET_MAX_FRAME_DEFAULT - 4096, &data, &len);
    if (r == PERR_OK) {
        r = db_remote_media_error(pc_classify(pc, data, len, labels, n, prompt, probs), file);
    }
    free(data);
    return r;
}

static int cmd_classify(int argc, char **argv) {
    db_args a = {0};
    char *labels_arg = NULL;
    const char *prompt = NULL;
    db_list files = {0}, labels = {0};
    int top = 5, rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(usage_text, stdout); return CLI_OK; }
        else if (!strcmp(s, "--labels") && has) labels_arg = argv[++i];
        else if (!strcmp(s, "--prompt") && has) prompt = argv[++i];
        else if (!strcmp(s, "--top") && has) rc = db_parse_int(argv[++i], "--top", &top);
        else if (s[0] == '-' && s[1]) rc = perr_set(PERR_INVALID, "unknown option %s\n%s", s, usage_text);
        else rc = db_list_push(&files, s);
    }
    if (rc == PERR_OK && !labels_arg) rc = perr_set(PERR_INVALID, "no --labels\n%s", usage_text);
    if (rc == PERR_OK && !files.n) rc = perr_set(PERR_INVALID, "no file to classify\n%s", usage_text);
    if (rc == PERR_OK && !a.db && !a.model && !a.server) rc = perr_set(PERR_INVALID, "give --db DIR or --model FILE\n%s", usage_text);
    /* split the label list on commas, trimming spaces */
    for (char *p = labels_arg; rc == PERR_OK && p && *p;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        while (*p == ' ') p++;
        char *e = p + strlen(p);
        while (e > p && e[-1] == ' ') *--e = 0;
        if (*p) rc = db_list_push(&labels, p);
        p = c ? c + 1 : NULL;
    }
    if (rc == PERR_OK && labels.n < 1) rc = perr_set(PERR_INVALID, "--labels: no label");
    eng_db *db = NULL;
    pc_client *pc = NULL;
    if (rc == PERR_OK) {
        if (a.server) rc = pc_connect_cli(a.server, a.token_file, &pc);
        else if (a.db) rc = db_open(&a, 0, 1, &db);
        else {
            char *vocab = NULL;
            if (cli_find_vocab(a.vocab, a.model, &vocab) != PERR_OK) perr_clear();
            rc = eng_open_model(a.model, vocab, &db);
            free(vocab);
        }
    }
    float *probs = rc ? NULL : malloc(sizeof(float) * (size_t)labels.n);
    int *order = rc ? NULL : malloc(sizeof(int) * (size_t)labels.n);
    if (rc == PERR_OK && (!probs || !order)) rc = perr_set(PERR_NOMEM, "classify");
    int failed = 0;
    cJSON *arr = cJSON_CreateArray();
    for (int f = 0; rc == PERR_OK && f < files.n; f++) {
        int r = pc ? classify_remote(pc, files.v[f], labels.v, labels.n, prompt, probs)
                   : eng_classify_file(db, files.v[f], labels.v, labels.n, prompt, probs);
        if (r == PERR_MODEL || (r == PERR_NOT_FOUND && !strstr(perr_msg(), files.v[f]))) { rc = r; break; }
        if (r) {
            failed++;
            fprintf(stderr, "percept classify: %s\n", perr_msg());
            if (a.json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "file", files.v[f]);
                cJSON_AddStringToObject(o, "error", perr_msg());
                cJSON_AddItemToArray(arr, o);
            }
            continue;
        }
        for (int i = 0; i < labels.n; i++) order[i] = i;
        for (int i = 1; i < labels.n; i++) /* insertion sort: few labels */
            for (int j = i; j > 0 && probs[order[j]] > probs[order[j - 1]]; j--) { int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t; }
        int shown = top > 0 && top < labels.n ? top : labels.n;
        if (a.json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "file", files.v[f]);
            cJSON *l = cJSON_AddArrayToObject(o, "labels");
            for (int i = 0; i < labels.n; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "label", labels.v[order[i]]);
                cJSON_AddNumberToObject(e, "prob", probs[order[i]]);
                cJSON_AddItemToArray(l, e);
            }
            cJSON_AddItemToArray(arr, o);
        } else {
            printf("%s\n", files.v[f]);
            for (int i = 0; i < shown; i++) printf("  %-24s %.4f\n", labels.v[order[i]], (double)probs[order[i]]);
        }
    }
    if (rc == PERR_OK && a.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "results", arr);
        db_print_json(j);
    } else cJSON_Delete(arr);
    int out = rc ? cli_fail("classify", rc) : failed ? CLI_ERROR : CLI_OK;
    free(probs);
    free(order);
    pc_close(pc);
    eng_close(db);
    db_list_free(&files);
    db_list_free(&labels);
    return out;
}

CLI_COMMAND(classify, "classify", "zero-shot classification against label texts", cmd_classify)
