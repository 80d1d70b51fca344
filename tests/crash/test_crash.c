/* test_crash: kill -9 during bulk ingest loses nothing acknowledged and
 * leaves no half item.
 *
 * A child process (this program re-executed as "child") ingests a list of
 * real photos and their variants, printing "ack <id>" on stdout for each
 * file once its transaction committed (the engine's on_result contract),
 * with index saves every few items so that kills also land inside saves.
 * The parent kills it with SIGKILL at a random moment, then reopens the
 * database (index load + replay, or rebuild) and checks: every acknowledged
 * id is stored, has its vector and finds itself first with score 1; the
 * index holds exactly the stored items; every stored item has a vector.
 * Rounds resume the same list (already stored bytes are skipped); between
 * rounds the parent deletes a third of the items so that every round has
 * work and deletes are covered too. */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"
#include "crash_check.h"
#include "photos.h"
#include "tests/common/testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 25

static char *model_path, *vocab_path;

static void child_result(void *u, const eng_file_result *r) {
    (void)u;
    if (r->outcome != ENG_FAILED) { printf("ack %llu\n", (unsigned long long)r->id); fflush(stdout); }
}

static int child_main(const char *dbdir, const char *list) {
    eng_db *db = NULL;
    if (crash_child_open(dbdir, model_path, vocab_path, 7, &db)) return 2;
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    io.on_result = child_result;
    io.commit_batch = 5;
    io.jobs = 2;
    const char *paths[] = {list};
    int rc = eng_ingest_paths(db, paths, 1, &io, NULL);
    eng_close(db);
    return rc ? 2 : 0;
}

typedef struct acks { uint64_t *v; int n, cap; } acks;

static void acks_add(acks *a, uint64_t id) {
    for (int i = 0; i < a->n; i++) if (a->v[i] == id) return;
    if (a->n == a->cap) { a->cap = a->cap ? a->cap * 2 : 256; a->v = realloc(a->v, sizeof *a->v * (size_t)a->cap); }
    a->v[a->n++] = id;
}

/* Runs the child over the list; kills it after kill_ms (< 0: never).
 * *elapsed_ms gets how long the child ran. */
static int run_child(const char *dbdir, const char *listdir, int kill_ms, acks *a, int *killed,
                     long *elapsed_ms) {
    int pfd[2];
    if (pipe(pfd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl("/proc/self/exe", "test_crash", "child", dbdir, listdir, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[4096], line[256];
    size_t ll = 0;
    int done = 0;
    *killed = 0;
    while (!done) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long el = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (kill_ms >= 0 && el >= kill_ms && !*killed) { kill(pid, SIGKILL); *killed = 1; }
        struct pollfd p = {pfd[0], POLLIN, 0};
        int wait = kill_ms >= 0 && !*killed ? (int)(kill_ms - el) : 1000;
        if (poll(&p, 1, wait < 0 ? 0 : wait) <= 0) continue;
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                line[ll] = 0;
                unsigned long long id;
                if (sscanf(line, "ack %llu", &id) == 1) acks_add(a, id);
                ll = 0;
            } else if (ll < sizeof line - 1) line[ll++] = buf[i];
        }
    }
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &now);
    *elapsed_ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
    return st;
}

static void test_kill9_during_ingest(void) {
    photo_set ps;
    int n = photos_gather(&ps, 40, 160);
    REQUIRE(n >= 30);
    /* originals plus three variants each: ~160 files */
    static const photo_variant vs[] = {PV_REENCODE_Q60, PV_RESIZE_70, PV_FLIP};
    for (int i = 0; i < n; i++)
        for (int v = 0; v < 3; v++) {
            char dst[4096];
            snprintf(dst, sizeof dst, "%s/v%03d-%d.jpg", ps.dir, i, v);
            REQUIRE(photos_make_variant(ps.paths[i], dst, vs[v]) == 0);
        }
    char *dbdir = t_tmpdir("crash-db");
    acks a = {0};
    srand(12345);
    int kills = 0;
    /* Kill moments are drawn over the length of the last run that finished
     * by itself, so that they land inside runs on a fast machine as on a
     * slow one (a fixed 30-1030 ms window missed most runs when the
     * machine was quiet). */
    long full_ms = 1000;
    for (int round = 0; round < ROUNDS; round++) {
        int kill_ms = 5 + (int)(rand() % (full_ms > 20 ? full_ms : 20));
        int killed = 0;
        long el = 0;
        int st = run_child(dbdir, ps.dir, kill_ms, &a, &killed, &el);
        kills += killed && WIFSIGNALED(st);
        if (!killed) full_ms = el;
        if (!killed) CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        crash_check_db(dbdir, vocab_path, 7, a.v, &a.n, round, 1);
    }
    /* a last uninterrupted run completes the set */
    int killed;
    long el = 0;
    int st = run_child(dbdir, ps.dir, -1, &a, &killed, &el);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    crash_check_db(dbdir, vocab_path, 7, a.v, &a.n, ROUNDS, 0);
    printf("  %d rounds, %d killed mid-run, %d items acknowledged\n", ROUNDS, kills, a.n);
    CHECK(kills >= ROUNDS / 3);
    CHECK_EQ_INT(a.n, n * 4);
    free(a.v);
    t_rmtree(dbdir);
    free(dbdir);
    photos_free(&ps);
}

int main(int argc, char **argv) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    if (argc == 4 && !strcmp(argv[1], "child")) return child_main(argv[2], argv[3]);
    T_RUN(test_kill9_during_ingest);
    free(model_path);
    free(vocab_path);
    return t_done();
}
