#define _GNU_SOURCE
#include "testlib.h"

#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PERCEPT_DEFAULT_FIXTURES
#define PERCEPT_DEFAULT_FIXTURES "../shared/pe-fixtures"
#endif

int t_failed_checks;
static int t_cases_passed, t_cases_failed;

void t_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    t_failed_checks++;
}

void t_run(const char *name, void (*fn)(void)) {
    int before = t_failed_checks;
    fn();
    if (t_failed_checks == before) {
        t_cases_passed++;
        fprintf(stderr, "ok   %s\n", name);
    } else {
        t_cases_failed++;
        fprintf(stderr, "FAIL %s\n", name);
    }
}

int t_done(void) {
    printf("%d passed, %d failed\n", t_cases_passed, t_cases_failed);
    return (t_cases_failed == 0 && t_cases_passed > 0) ? 0 : 1;
}

const char *t_fixtures(void) {
    const char *e = getenv("PERCEPT_FIXTURES");
    return (e && *e) ? e : PERCEPT_DEFAULT_FIXTURES;
}

char *t_path(const char *fmt, ...) {
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

void *t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n + 1);
    if (buf && fread(buf, 1, n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; if (len) *len = n; }
    return buf;
}

static void *golden(const char *model, const char *name, const char *ext, size_t *n) {
    char *p = t_path("%s/%s/golden/%s.%s", t_fixtures(), model, name, ext);
    size_t len = 0;
    void *d = t_read_file(p, &len);
    if (!d) fprintf(stderr, "cannot read golden %s\n", p);
    free(p);
    if (n) *n = len / 4;
    return d;
}
float *t_golden_f32(const char *model, const char *name, size_t *n) { return golden(model, name, "f32", n); }
int32_t *t_golden_i32(const char *model, const char *name, size_t *n) { return golden(model, name, "i32", n); }

double t_rel_maxdiff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates as a failure */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

double t_cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

char *t_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *p = t_path("%s/percept-%s-XXXXXX", (base && *base) ? base : "/tmp", tag);
    if (p && !mkdtemp(p)) { free(p); return NULL; }
    return p;
}

static int rm_cb(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb; (void)type; (void)ftw;
    return remove(p);
}
void t_rmtree(const char *path) {
    if (path) nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int t_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* t_cmd and t_sh: cmd is the formatted command (for t_sh's message). */
static int vcmd(char **out, char **err, char *cmd, size_t cmd_cap, const char *fmt, va_list ap) {
    char full[20000], ef[4096] = "";
    int w = vsnprintf(cmd, cmd_cap, fmt, ap);
    if (out) *out = NULL;
    if (err) *err = NULL;
    if (w < 0 || (size_t)w >= cmd_cap) { /* never run a cut command */
        fprintf(stderr, "t_cmd: a command of %d bytes, at most %zu: %.200s...\n", w, cmd_cap - 1, cmd);
        return -1;
    }
    if (err) {
        const char *td = getenv("TMPDIR");
        snprintf(ef, sizeof ef, "%s/percept-t-cmd-XXXXXX", td && *td ? td : "/tmp");
        int fd = mkstemp(ef);
        if (fd < 0) return -1;
        close(fd);
        snprintf(full, sizeof full, "(%s) 2>'%s'", cmd, ef);
    } else {
        snprintf(full, sizeof full, "%s", cmd);
    }
    FILE *f = popen(full, "r");
    if (!f) { if (err) unlink(ef); return -1; }
    size_t cap = 65536, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    if (buf) buf[len] = 0;
    int st = pclose(f);
    if (out) *out = buf; else free(buf);
    if (err) {
        size_t el = 0;
        char *e = t_read_file(ef, &el);
        *err = e ? e : strdup("");
        unlink(ef);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int t_cmd(char **out, char **err, const char *fmt, ...) {
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    int rc = vcmd(out, err, cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return rc;
}

int t_sh(const char *fmt, ...) {
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    int rc = vcmd(NULL, NULL, cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (rc) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}
