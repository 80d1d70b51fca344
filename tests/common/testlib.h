/* testlib: the small harness every percept test uses.
 *
 * A test is a program: main() calls T_RUN(fn) for each case and returns
 * t_done(). A failed CHECK prints file:line and the values, marks the case
 * failed and goes on; REQUIRE returns from the case. Fixtures are found via
 * PERCEPT_FIXTURES (default ../shared/pe-fixtures beside the checkout).
 */
#ifndef PERCEPT_TESTLIB_H
#define PERCEPT_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int t_failed_checks;

void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond) do { if (!(cond)) t_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define REQUIRE(cond) do { if (!(cond)) { t_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) t_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (!a_ || !b_ || strcmp(a_, b_)) t_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
/* A call returning a perr code must succeed; prints perr_msg() if not. */
#define CHECK_OK(call) do { int rc_ = (call); if (rc_ != 0) \
    t_fail(__FILE__, __LINE__, "%s -> %s: %s", #call, perr_name(rc_), perr_msg()); } while (0)
#define REQUIRE_OK(call) do { int rc_ = (call); if (rc_ != 0) { \
    t_fail(__FILE__, __LINE__, "%s -> %s: %s", #call, perr_name(rc_), perr_msg()); return; } } while (0)
/* A call must fail with this code (and leave a non-empty message). */
#define CHECK_ERR(call, code) do { int rc_ = (call); if (rc_ != (code)) \
    t_fail(__FILE__, __LINE__, "%s -> %s, expected %s (%s)", #call, perr_name(rc_), perr_name(code), perr_msg()); \
    else if (!perr_msg()[0]) t_fail(__FILE__, __LINE__, "%s: empty error message", #call); } while (0)

#define T_RUN(fn) t_run(#fn, fn)
void t_run(const char *name, void (*fn)(void));
/* Prints "N passed, N failed" and returns the exit status. */
int t_done(void);

/* Fixture root (PERCEPT_FIXTURES or the default); path helpers return
 * malloc'd strings the caller frees. */
const char *t_fixtures(void);
char *t_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a whole file; *len gets its size. NULL on failure. Caller frees. */
void *t_read_file(const char *path, size_t *len);
/* Reads golden <fixtures>/<model>/golden/<name>.f32 (or .i32); checks the
 * element count against index.json when n_expected > 0. Caller frees. */
float *t_golden_f32(const char *model, const char *name, size_t *n);
int32_t *t_golden_i32(const char *model, const char *name, size_t *n);
/* max |a-b| / max(1, max|b|) over n values. */
double t_rel_maxdiff(const float *a, const float *b, size_t n);
double t_cosine(const float *a, const float *b, size_t n);
/* A fresh empty directory under $TMPDIR (or /tmp); removed by t_rmtree. */
char *t_tmpdir(const char *tag);
void t_rmtree(const char *path);
/* Writes len bytes to path; 0 on success. */
int t_write_file(const char *path, const void *data, size_t len);
/* Runs a shell command. *out gets its stdout, *err its stderr (each may be
 * NULL: stdout is then discarded, stderr left to the test's); caller frees.
 * Returns the exit status (-1 when it did not exit). */
int t_cmd(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* t_cmd(NULL, NULL, ...) that prints the command when it fails: for the
 * steps a test needs done (make a clip, convert a file). 0 on success. */
int t_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
