/* bench_tokenizer: microseconds per pe_tokenize call (context 32) on typical
 * query texts; prints a table (median and spread of 7 runs) and a checksum
 * of the ids so a fast but wrong build shows. Vocabulary: $PERCEPT_VOCAB or
 * ../shared/pe-fixtures/bpe_simple_vocab_16e6.txt.gz. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *vocab = getenv("PERCEPT_VOCAB");
    if (argc > 1) vocab = argv[1];
    if (!vocab || !*vocab) vocab = "../shared/pe-fixtures/bpe_simple_vocab_16e6.txt.gz";
    double t0 = now_us();
    pe_tokenizer *t = NULL;
    if (pe_tokenizer_load(vocab, &t)) { fprintf(stderr, "bench_tokenizer: %s\n", perr_msg()); return 1; }
    double load_ms = (now_us() - t0) / 1e3;
    static const struct { const char *name, *text; } cases[] = {
        {"short caption", "a photo of a cat"},
        {"long caption", "a very detailed photograph of a small orange cat sitting on a wooden chair "
                         "next to a window with sunlight streaming in, in the style of a painting"},
        {"html + quotes", "she said &quot;hello&quot; &amp; \xe2\x80\x9cgoodbye\xe2\x80\x9d"},
        {"mojibake", "sch\xc3\x83\xc2\xb6n caf\xc3\x83\xc2\xa9 \xc3\xa2\xe2\x82\xac\xe2\x80\x9d voil\xc3\x83 "},
        {"cjk", "\xe4\xb8\x80\xe5\x8f\xaa\xe7\x8c\xab\xe7\x9a\x84\xe7\x85\xa7\xe7\x89\x87"},
        {"greek caps", "\xce\x93\xce\xb5\xce\xb9\xce\xac \xcf\x83\xce\xbf\xcf\x85 \xce\x9a\xcf\x8c\xcf\x83\xce\xbc\xce\xb5, "
                       "\xce\x9c\xce\x95\xce\x93\xce\x91\xce\x9b\xce\x9f\xce\xa3"},
    };
    printf("# pe_tokenize, context 32; vocabulary load %.1f ms; 7 runs each\n", load_ms);
    printf("%-16s %8s %10s %10s\n", "text", "bytes", "median_us", "spread_us");
    uint64_t checksum = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *s = cases[c].text;
        size_t len = strlen(s);
        int32_t ids[32];
        double runs[7];
        int iters = 2000;
        for (int r = 0; r < 7; r++) {
            double a = now_us();
            for (int i = 0; i < iters; i++)
                if (pe_tokenize(t, s, len, 32, ids, NULL)) { fprintf(stderr, "bench_tokenizer: %s\n", perr_msg()); return 1; }
            runs[r] = (now_us() - a) / iters;
        }
        for (int k = 0; k < 32; k++) checksum = checksum * 1000003u + (uint32_t)ids[k];
        qsort(runs, 7, sizeof *runs, cmp_d);
        printf("%-16s %8zu %10.2f %10.2f\n", cases[c].name, len, runs[3], runs[6] - runs[0]);
    }
    printf("# checksum %016llx\n", (unsigned long long)checksum);
    pe_tokenizer_free(t);
    return 0;
}
