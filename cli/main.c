/* percept: git-style dispatch to the registered subcommands. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "common/perr.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLI_MAX_COMMANDS 64
static const cli_command *commands[CLI_MAX_COMMANDS];
static int n_commands;

void cli_register(const cli_command *c) {
    if (n_commands < CLI_MAX_COMMANDS) commands[n_commands++] = c;
}

int cli_fail(const char *cmd, int rc) {
    const char *m = perr_msg();
    fprintf(stderr, "percept %s: %s\n", cmd, m[0] ? m : perr_str(rc));
    return CLI_ERROR;
}

const char *cli_home(void) {
    static char buf[4096];
    const char *e = getenv("PERCEPT_HOME");
    if (e && *e) return e;
    const char *home = getenv("HOME");
    snprintf(buf, sizeof buf, "%s/.local/share/percept", home && *home ? home : ".");
    return buf;
}

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

int cli_find_model(const char *flag, char **out) {
    *out = NULL;
    if (flag && *flag) { *out = xstrdup(flag); return PERR_OK; }
    const char *e = getenv("PERCEPT_MODEL");
    if (e && *e) { *out = xstrdup(e); return PERR_OK; }
    /* The default model: $PERCEPT_HOME/models/default (a link or a file
     * holding a path), written by `percept model fetch` / `model default`. */
    char p[4096];
    snprintf(p, sizeof p, "%s/models/default", cli_home());
    char target[4096];
    ssize_t n = readlink(p, target, sizeof target - 1);
    if (n > 0) {
        target[n] = 0;
        if (target[0] == '/') { *out = xstrdup(target); }
        else { char full[8192]; snprintf(full, sizeof full, "%s/models/%s", cli_home(), target); *out = xstrdup(full); }
        return PERR_OK;
    }
    return perr_set(PERR_NOT_FOUND,
        "no model given: pass --model FILE, set PERCEPT_MODEL, or run "
        "`percept model fetch` (installs under %s/models)", cli_home());
}

int cli_find_vocab(const char *flag, const char *model_path, char **out) {
    static const char name[] = "bpe_simple_vocab_16e6.txt.gz";
    *out = NULL;
    if (flag && *flag) { *out = xstrdup(flag); return PERR_OK; }
    const char *e = getenv("PERCEPT_VOCAB");
    if (e && *e) { *out = xstrdup(e); return PERR_OK; }
    char p[8192];
    if (model_path) {
        const char *slash = strrchr(model_path, '/');
        int dirlen = slash ? (int)(slash - model_path) : 1;
        snprintf(p, sizeof p, "%.*s/%s", dirlen, slash ? model_path : ".", name);
        if (access(p, R_OK) == 0) { *out = xstrdup(p); return PERR_OK; }
    }
    snprintf(p, sizeof p, "%s/models/%s", cli_home(), name);
    if (access(p, R_OK) == 0) { *out = xstrdup(p); return PERR_OK; }
    return perr_set(PERR_NOT_FOUND,
        "no vocabulary (%s): pass --vocab FILE, set PERCEPT_VOCAB, put it next "
        "to the model file, or run `percept model fetch`", name);
}

void cli_print_floats(FILE *f, const float *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%.9g" : "%.9g", (double)v[i]);
    fputc(']', f);
}

static void usage(FILE *f) {
    fprintf(f, "usage: percept <command> [options]\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-14s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n`percept <command> --help` describes a command.\n");
}

/* FAISS 1.7.3 reads an index (SQ, PQ, IVF, HNSW; Flat files are used in
 * place, index/idx.h) into zero-filled std::vectors: with THP in "madvise"
 * mode (Debian's default) 1 GB of codes costs ~250k page faults, most of the
 * time to open a large database (measured on a 2 GB index: 12 s -> 3 s).
 * glibc's hugetlb tunable makes malloc madvise its large mappings for
 * transparent huge pages; tunables are read at start-up only, so set it and
 * re-execute once. An explicit GLIBC_TUNABLES is left alone. */
static void enable_malloc_thp(char **argv) {
    if (getenv("GLIBC_TUNABLES") || getenv("PERCEPT_NO_REEXEC")) return;
    setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1);
    setenv("PERCEPT_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on without it */
}

int main(int argc, char **argv) {
    enable_malloc_thp(argv);
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_ERROR : CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) { printf("percept 0.1.0\n"); return CLI_OK; }
    /* Two-word commands first ("model info"), then one-word ones. */
    if (argc >= 3) {
        char two[128];
        snprintf(two, sizeof two, "%s %s", argv[1], argv[2]);
        for (int i = 0; i < n_commands; i++)
            if (!strcmp(commands[i]->name, two)) return commands[i]->fn(argc - 2, argv + 2);
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(commands[i]->name, argv[1])) return commands[i]->fn(argc - 1, argv + 1);
    fprintf(stderr, "percept: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_ERROR;
}
