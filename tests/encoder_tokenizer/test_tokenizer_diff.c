/* Differential test against ref_tokenizer.py, a standard-library Python
 * rendering of the official SimpleTokenizer: a few thousand generated texts
 * (mixed scripts, emoji, combining marks, digits, punctuation, entities,
 * special tokens, casing traps, long texts) must give exactly its ids.
 * The reference has no ftfy (not in the standard library), so every text is
 * compared with our ftfy step off; texts that ftfy provably leaves alone
 * ("safe") are compared through the full pipeline as well. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_tokenizer.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_TEXTS 3000

static void test_against_reference(void) {
    const char *src = getenv("PERCEPT_SRC");
    REQUIRE(src && *src);
    char *vocab = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    pe_tokenizer *tok = NULL;
    int rc = pe_tokenizer_load(vocab, &tok);
    if (rc) { t_fail(__FILE__, __LINE__, "%s", perr_msg()); free(vocab); return; }
    char *cmd = t_path("python3 '%s/tests/encoder_tokenizer/ref_tokenizer.py' gen --vocab '%s' --n %d --seed 20240601",
                       src, vocab, N_TEXTS);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, n_safe = 0, mismatches = 0;
    while (getline(&line, &cap, p) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (!j) { t_fail(__FILE__, __LINE__, "bad reference line %d", n + 1); break; }
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(j, "text"));
        cJSON *jids = cJSON_GetObjectItem(j, "ids");
        int safe = cJSON_IsTrue(cJSON_GetObjectItem(j, "safe"));
        int want_n = cJSON_GetArraySize(jids);
        int32_t *want = malloc(((size_t)want_n + 1) * sizeof *want);
        for (int k = 0; k < want_n; k++) want[k] = cJSON_GetArrayItem(jids, k)->valueint;

        char *clean = NULL;
        int32_t *ids = NULL;
        int got_n = 0;
        CHECK_OK(pe_text_clean_ex(text, strlen(text), PE_CLEAN_BASIC, &clean));
        if (clean) CHECK_OK(pe_tokenize_bpe(tok, clean, strlen(clean), &ids, &got_n));
        if (got_n != want_n || (want_n && (!ids || memcmp(ids, want, (size_t)want_n * sizeof *ids)))) {
            if (mismatches++ < 10) {
                t_fail(__FILE__, __LINE__, "text %d differs (%d vs %d ids): %s", n, got_n, want_n, line);
                fprintf(stderr, "  cleaned: \"%s\"\n", clean ? clean : "(null)");
            } else t_failed_checks++;
        }
        if (safe) {
            n_safe++;
            char *fixed = NULL;
            CHECK_OK(pe_ftfy_fix_text(text, strlen(text), &fixed));
            if (!fixed || strcmp(fixed, text)) t_fail(__FILE__, __LINE__, "ftfy changed safe text %d: %s", n, line);
            free(fixed);
            int ctx = want_n + 2, nb = -1;
            int32_t *full = malloc((size_t)ctx * sizeof *full);
            CHECK_OK(pe_tokenize(tok, text, strlen(text), ctx, full, &nb));
            CHECK_EQ_INT(nb, want_n);
            if (full[0] != PE_TOK_SOT || full[ctx - 1] != PE_TOK_EOT ||
                (want_n && memcmp(full + 1, want, (size_t)want_n * sizeof *want)))
                t_fail(__FILE__, __LINE__, "full pipeline differs on safe text %d: %s", n, line);
            free(full);
        }
        free(clean);
        free(ids);
        free(want);
        cJSON_Delete(j);
        n++;
    }
    int status = pclose(p);
    CHECK_EQ_INT(status, 0);
    CHECK_EQ_INT(n, N_TEXTS);
    CHECK(n_safe >= N_TEXTS / 10);
    fprintf(stderr, "  %d texts compared, %d also through ftfy (safe), %d mismatches\n", n, n_safe, mismatches);
    free(line);
    free(cmd);
    free(vocab);
    pe_tokenizer_free(tok);
}

int main(void) {
    T_RUN(test_against_reference);
    return t_done();
}
