/* percept: git-style dispatch to the registered subcommands. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "common/perr.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
 * re-execute once. The re-exec costs a second start of the process, so it
 * is done only when it can pay: a --db command (not --server, not --help)
 * whose index folder holds a FAISS-layout file of at least
 * PERCEPT_THP_MIN_BYTES (default 32 MiB, where the page faults saved
 * outweigh the second start). An explicit GLIBC_TUNABLES is left alone;
 * PERCEPT_REEXEC_LOG=1 says on stderr what was decided and why. */
#define THP_MIN_BYTES_DEFAULT ((long long)32 << 20)

/* The largest index file under <db>/index read into malloc'd memory (not a
 * raw Flat file, which is mapped in place); its size in *bytes, 0 if none. */
static void largest_read_index(const char *db, char *name, size_t cap, long long *bytes) {
    *bytes = 0;
    name[0] = 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/index", db);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode) || (long long)sb.st_size <= *bytes) continue;
        /* header: magic "PCPTIDX1", version, dim, seq, flags (bit 1: raw Flat) */
        unsigned char h[28];
        FILE *f = fopen(p, "rb");
        size_t n = f ? fread(h, 1, sizeof h, f) : 0;
        if (f) fclose(f);
        if (n == sizeof h && !memcmp(h, "PCPTIDX1", 8) && (h[24] & 2)) continue;
        *bytes = (long long)sb.st_size;
        snprintf(name, cap, "%s", p);
    }
    closedir(d);
}

static void enable_malloc_thp(int argc, char **argv) {
    if (getenv("GLIBC_TUNABLES") || getenv("PERCEPT_NO_REEXEC")) return;
    const char *log = getenv("PERCEPT_REEXEC_LOG");
    int verbose = log && *log && strcmp(log, "0");
    const char *db = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            if (verbose) fprintf(stderr, "percept: no re-exec (%s)\n", argv[i]);
            return;
        }
        if (!strcmp(argv[i], "--db") && i + 1 < argc) db = argv[i + 1];
    }
    if (!db) {
        if (verbose) fprintf(stderr, "percept: no re-exec (no --db)\n");
        return;
    }
    long long min = THP_MIN_BYTES_DEFAULT, bytes = 0;
    const char *m = getenv("PERCEPT_THP_MIN_BYTES");
    if (m && *m) min = atoll(m);
    char name[8192];
    largest_read_index(db, name, sizeof name, &bytes);
    if (bytes < min || bytes == 0) {
        if (verbose) fprintf(stderr, "percept: no re-exec (no FAISS-layout index of %lld bytes or more in %s/index)\n", min, db);
        return;
    }
    if (verbose) fprintf(stderr, "percept: re-exec with glibc.malloc.hugetlb=1 (%s: %lld bytes)\n", name, bytes);
    setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1);
    setenv("PERCEPT_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on without it */
}

int main(int argc, char **argv) {
    enable_malloc_thp(argc, argv);
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
