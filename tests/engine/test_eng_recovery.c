/* test_eng_recovery: after a writer is killed, who saves the index?
 *
 * A writer killed after committing items but before saving its index
 * leaves LMDB ahead of the index file. Every open replays the change log
 * past the file's covered sequence in memory; a reader cannot save (it
 * opens read-only, without the writer lock), so the next writer saves at
 * open (eng_open), once, instead of leaving every later reader to replay.
 * Also prints the cost a reader pays meanwhile (docs/design.md quotes it).
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "engine/eng.h"
#include "tests/common/testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM 512
#define SAVED 2000
#define UNSAVED 19000 /* just under eng_open_opts.save_every (20000): about the most a killed bulk ingest leaves */

static char *g_tmp;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sequence the collection's index file covers (header bytes 16..23). */
static long long covered_seq(const char *db) {
    char *p = t_path("%s/index/1.faiss", db);
    size_t len = 0;
    unsigned char *b = t_read_file(p, &len);
    free(p);
    long long v = -1;
    if (b && len >= 64) {
        v = 0;
        for (int i = 7; i >= 0; i--) v = v << 8 | b[16 + i];
    }
    free(b);
    return v;
}

static int add_random(eng_db *db, int n, unsigned *seed) {
    float *v = malloc(sizeof(float) * DIM * 1000);
    int rc = v ? PERR_OK : PERR_NOMEM;
    for (int done = 0; rc == PERR_OK && done < n; done += 1000) {
        for (int i = 0; i < DIM * 1000; i++) v[i] = (float)rand_r(seed) / RAND_MAX - 0.5f;
        rc = eng_add_vectors(db, v, 1000, NULL, NULL, NULL);
    }
    free(v);
    return rc;
}

/* Child: creates the database, saves after SAVED items, commits UNSAVED
 * more, then dies without closing (as kill -9 would leave it). */
static void writer_then_die(const char *dir) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.create = 1;
    o.vector_dim = DIM;
    eng_db *db = NULL;
    unsigned seed = 7;
    if (eng_open(dir, &o, &db) || add_random(db, SAVED, &seed) || eng_checkpoint(db) ||
        add_random(db, UNSAVED, &seed)) {
        fprintf(stderr, "child: %s\n", perr_msg());
        _exit(1);
    }
    _exit(0);
}

static double open_time(const char *dir, int read_only, uint64_t *n_index) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.read_only = read_only;
    eng_db *db = NULL;
    double t = now_s();
    int rc = eng_open(dir, &o, &db);
    t = now_s() - t;
    if (rc) { t_fail(__FILE__, __LINE__, "open: %s", perr_msg()); return -1; }
    eng_collection_info ci;
    if (eng_collection_get(db, ENG_DEFAULT_COLLECTION, &ci) == PERR_OK) *n_index = ci.n_index;
    eng_close(db);
    return t;
}

static void test_next_writer_saves(void) {
    char *dir = t_path("%s/db", g_tmp);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) writer_then_die(dir);
    int st = 0;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    long long saved = covered_seq(dir);
    REQUIRE(saved > 0);

    /* Readers replay in memory (they see every committed item) and leave
     * the file alone. */
    uint64_t n = 0;
    double t_replay = 0;
    for (int i = 0; i < 3; i++) {
        double t = open_time(dir, 1, &n);
        if (i == 0 || t < t_replay) t_replay = t;
    }
    CHECK_EQ_INT(n, SAVED + UNSAVED);
    CHECK_EQ_INT(covered_seq(dir), saved);

    /* The next writer saves at open, before it is closed. */
    eng_open_opts o;
    eng_open_opts_default(&o);
    eng_db *w = NULL;
    REQUIRE_OK(eng_open(dir, &o, &w));
    long long after = covered_seq(dir);
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(w, ENG_DEFAULT_COLLECTION, &ci));
    CHECK_EQ_INT(after, (long long)ci.seq);
    CHECK(after > saved);
    eng_close(w);

    double t_clean = 0;
    for (int i = 0; i < 3; i++) {
        double t = open_time(dir, 1, &n);
        if (i == 0 || t < t_clean) t_clean = t;
    }
    CHECK_EQ_INT(n, SAVED + UNSAVED);
    printf("  reader open, dim %d, %d items: %d changes replayed %.1f ms, none %.1f ms (best of 3)\n",
           DIM, SAVED + UNSAVED, UNSAVED, t_replay * 1e3, t_clean * 1e3);
    free(dir);
}

int main(void) {
    g_tmp = t_tmpdir("eng-recovery");
    T_RUN(test_next_writer_saves);
    t_rmtree(g_tmp);
    free(g_tmp);
    return t_done();
}
