/* Conformance: every string of tiny-a/golden/texts.json gives exactly the
 * ids of golden/text_ids.i32 ([60, 32]) and the n_bpe recorded there. */
#include "common/perr.h"
#include "encoder/pe_tokenizer.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pe_tokenizer *load_vocab(void) {
    char *path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    pe_tokenizer *t = NULL;
    int rc = pe_tokenizer_load(path, &t);
    if (rc) t_fail(__FILE__, __LINE__, "load %s: %s", path, perr_msg());
    free(path);
    return t;
}

static void test_golden_ids(void) {
    pe_tokenizer *tok = load_vocab();
    REQUIRE(tok);
    size_t n_ids = 0, len = 0;
    int32_t *gold = t_golden_i32("tiny-a", "text_ids", &n_ids);
    char *path = t_path("%s/tiny-a/golden/texts.json", t_fixtures());
    char *json = t_read_file(path, &len);
    free(path);
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    cJSON *texts = cJSON_GetObjectItem(root, "texts");
    int n = cJSON_GetArraySize(texts);
    if (!gold || !root || n != 60 || n_ids != 60 * 32) {
        t_fail(__FILE__, __LINE__, "fixtures: %d texts, %zu ids", n, n_ids);
        goto done;
    }
    int checked = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_GetArrayItem(texts, i);
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(e, "text"));
        const char *cleaned = cJSON_GetStringValue(cJSON_GetObjectItem(e, "cleaned"));
        int want_nbpe = cJSON_GetObjectItem(e, "n_bpe")->valueint;
        REQUIRE(text && cleaned);
        int32_t ids[32];
        int n_bpe = -1;
        CHECK_OK(pe_tokenize(tok, text, strlen(text), 32, ids, &n_bpe));
        int same = !memcmp(ids, gold + 32 * i, sizeof ids);
        if (!same) {
            t_fail(__FILE__, __LINE__, "text %d \"%s\": ids differ", i, text);
            for (int k = 0; k < 32; k++)
                if (ids[k] != gold[32 * i + k]) { fprintf(stderr, "  [%d] %d != %d\n", k, ids[k], gold[32 * i + k]); }
        }
        CHECK_EQ_INT(n_bpe, want_nbpe);
        /* the JSON's ids agree with the .i32 file */
        cJSON *jids = cJSON_GetObjectItem(e, "ids");
        for (int k = 0; k < 32; k++) CHECK_EQ_INT(cJSON_GetArrayItem(jids, k)->valueint, gold[32 * i + k]);
        char *c = NULL;
        CHECK_OK(pe_text_clean(text, strlen(text), &c));
        CHECK_STR(c, cleaned);
        free(c);
        checked++;
    }
    CHECK_EQ_INT(checked, 60);
done:
    cJSON_Delete(root);
    free(json);
    free(gold);
    pe_tokenizer_free(tok);
}

/* Context lengths other than 32: truncation keeps context-1 BPE ids and
 * ends with <end_of_text>; padding is zeros. */
static void test_context_lengths(void) {
    pe_tokenizer *tok = load_vocab();
    REQUIRE(tok);
    const char *s = "a photo of a cat";   /* 320 1125 539 320 2368 */
    int32_t ids[80];
    int nb = 0;
    CHECK_OK(pe_tokenize(tok, s, strlen(s), 77, ids, &nb));
    CHECK_EQ_INT(nb, 5);
    CHECK_EQ_INT(ids[0], PE_TOK_SOT);
    CHECK_EQ_INT(ids[6], PE_TOK_EOT);
    for (int k = 7; k < 77; k++) CHECK_EQ_INT(ids[k], 0);
    CHECK_OK(pe_tokenize(tok, s, strlen(s), 4, ids, &nb));
    CHECK_EQ_INT(nb, 5);
    CHECK_EQ_INT(ids[0], PE_TOK_SOT); CHECK_EQ_INT(ids[1], 320); CHECK_EQ_INT(ids[2], 1125);
    CHECK_EQ_INT(ids[3], PE_TOK_EOT);
    CHECK_OK(pe_tokenize(tok, s, strlen(s), 7, ids, &nb));   /* exactly fits */
    CHECK_EQ_INT(ids[5], 2368); CHECK_EQ_INT(ids[6], PE_TOK_EOT);
    CHECK_OK(pe_tokenize(tok, s, strlen(s), 6, ids, &nb));   /* one short */
    CHECK_EQ_INT(ids[4], 320); CHECK_EQ_INT(ids[5], PE_TOK_EOT);
    CHECK_OK(pe_tokenize(tok, s, strlen(s), 1, ids, &nb));
    CHECK_EQ_INT(ids[0], PE_TOK_EOT);
    CHECK_OK(pe_tokenize(tok, "", 0, 2, ids, &nb));
    CHECK_EQ_INT(nb, 0); CHECK_EQ_INT(ids[0], PE_TOK_SOT); CHECK_EQ_INT(ids[1], PE_TOK_EOT);
    CHECK_ERR(pe_tokenize(tok, s, strlen(s), 0, ids, &nb), PERR_INVALID);
    pe_tokenizer_free(tok);
}

/* `percept tokenize` prints the golden ids, one JSON array per line, for
 * all 60 texts in one call (every string passed as its own argument). */
static void test_cli_prints_golden(void) {
    const char *exe = getenv("PERCEPT_EXE");
    REQUIRE(exe && *exe);
    size_t len = 0, n_ids = 0;
    char *path = t_path("%s/tiny-a/golden/texts.json", t_fixtures());
    char *json = t_read_file(path, &len);
    free(path);
    int32_t *gold = t_golden_i32("tiny-a", "text_ids", &n_ids);
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    cJSON *texts = cJSON_GetObjectItem(root, "texts");
    int n = cJSON_GetArraySize(texts);
    char *vocab = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    char **argv = calloc((size_t)n + 8, sizeof *argv);
    int a = 0;
    argv[a++] = (char *)exe; argv[a++] = "tokenize"; argv[a++] = "--vocab"; argv[a++] = vocab;
    argv[a++] = "--context"; argv[a++] = "32"; argv[a++] = "--";
    for (int i = 0; i < n; i++)
        argv[a++] = (char *)cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(texts, i), "text"));
    int fd[2];
    REQUIRE(pipe(fd) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    close(fd[1]);
    CHECK_EQ_INT(rc, 0);
    FILE *f = fdopen(fd[0], "r");
    char *line = NULL;
    size_t cap = 0;
    int got = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        char want[1024];
        size_t k = 0;
        want[k++] = '[';
        for (int j = 0; j < 32; j++)
            k += (size_t)snprintf(want + k, sizeof want - k, j ? ",%d" : "%d", gold[32 * got + j]);
        snprintf(want + k, sizeof want - k, "]\n");
        if (got < n && strcmp(line, want)) t_fail(__FILE__, __LINE__, "line %d: %s want %s", got + 1, line, want);
        got++;
    }
    fclose(f);
    int status = 0;
    if (rc == 0) waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_INT(got, 60);
    posix_spawn_file_actions_destroy(&fa);
    free(line);
    free(argv);
    free(vocab);
    free(gold);
    cJSON_Delete(root);
    free(json);
}

int main(void) {
    T_RUN(test_golden_ids);
    T_RUN(test_context_lengths);
    T_RUN(test_cli_prints_golden);
    return t_done();
}
