/* percept tokenize: the token ids of PE_core's text tower for each string,
 * one JSON array per line (exactly `context` ids). Outside checks compare
 * this output with the reference tokenizer: keep it exactly that. */
#include "cli/cli.h"
#include "common/perr.h"
#include "encoder/pe_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: percept tokenize [--vocab FILE] [--context N] STRING...\n"
        "\n"
        "Prints the token ids of each STRING as a JSON array, one line per string:\n"
        "[49406] + BPE ids + [49407], zero-padded (or cut, ending in 49407) to N ids.\n"
        "\n"
        "  --vocab FILE   bpe_simple_vocab_16e6.txt.gz (default: $PERCEPT_VOCAB, then\n"
        "                 next to $PERCEPT_MODEL, then under $PERCEPT_HOME/models)\n"
        "  --context N    ids per string (default 32)\n");
}

static int cmd_tokenize(int argc, char **argv) {
    const char *vocab_flag = NULL;
    long context = 32;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) { first = i + 1; break; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return CLI_OK; }
        if (!strcmp(a, "--vocab") || !strcmp(a, "--context")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "percept tokenize: %s needs a value\n", a);
                return CLI_ERROR;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--vocab")) { vocab_flag = v; continue; }
            char *end = NULL;
            context = strtol(v, &end, 10);
            if (!*v || *end || context < 1 || context > PE_TOK_MAX_CONTEXT) {
                fprintf(stderr, "percept tokenize: --context must be an integer in 1..%d, got '%s'\n",
                        PE_TOK_MAX_CONTEXT, v);
                return CLI_ERROR;
            }
            continue;
        }
        if (!strncmp(a, "--vocab=", 8)) { vocab_flag = a + 8; continue; }
        if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "percept tokenize: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_ERROR;
        }
        first = i;
        break;
    }
    if (first >= argc) {
        usage(stderr);
        return CLI_ERROR;
    }

    char *vocab = NULL;
    const char *model = getenv("PERCEPT_MODEL");
    int rc = cli_find_vocab(vocab_flag, model && *model ? model : NULL, &vocab);
    if (rc) return cli_fail("tokenize", rc);
    pe_tokenizer *tok = NULL;
    rc = pe_tokenizer_load(vocab, &tok);
    free(vocab);
    if (rc) return cli_fail("tokenize", rc);

    int32_t *ids = malloc((size_t)context * sizeof *ids);
    if (!ids) { pe_tokenizer_free(tok); return cli_fail("tokenize", perr_set(PERR_NOMEM, "ids")); }
    int status = CLI_OK;
    for (int i = first; i < argc; i++) {
        rc = pe_tokenize(tok, argv[i], strlen(argv[i]), (int)context, ids, NULL);
        if (rc) { status = cli_fail("tokenize", perr_prefix(rc, "string %d", i - first + 1)); break; }
        putchar('[');
        for (long k = 0; k < context; k++) printf(k ? ",%d" : "%d", (int)ids[k]);
        fputs("]\n", stdout);
    }
    free(ids);
    pe_tokenizer_free(tok);
    if (fflush(stdout) != 0) status = CLI_ERROR;
    return status;
}

CLI_COMMAND(tokenize, "tokenize", "print the token ids of strings (CLIP BPE)", cmd_tokenize)
