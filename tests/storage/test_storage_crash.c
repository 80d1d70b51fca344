/* Crash test: a child process adds (and deletes) items in a loop and
 * reports each committed transaction through a pipe; the parent kills it
 * with SIGKILL at a random moment, reopens the database and checks that
 * every acknowledged item is complete, every acknowledged delete is gone,
 * and no half item exists anywhere (counts, indexes, vectors, segments and
 * the change log agree). Repeated ITERATIONS times on the same database.
 * Seed: PERCEPT_CRASH_SEED (default: time), printed for reproduction. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "storage/st.h"
#include "tests/common/testlib.h"
#include "tests/storage/st_testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM 16
#define ITERATIONS 30
#define MAX_IDS 200000

enum { MSG_READY = 0, MSG_ADD = 1, MSG_DEL_INTENT = 2, MSG_DEL = 3 };
typedef struct msg { uint32_t type, pad; uint64_t id, seed; } msg;

/* Parent's knowledge, indexed by item id. */
static uint64_t seed_of[MAX_IDS];  /* 0: unknown */
static unsigned char state[MAX_IDS]; /* 0 none, 1 live, 2 deleted, 3 delete in flight */

static void child(const char *dir, int fd, uint64_t seed_base) {
    alarm(60); /* never outlive a broken parent */
    st_db *db;
    if (st_open(dir, NULL, &db)) { fprintf(stderr, "child open: %s\n", perr_msg()); _exit(3); }
    uint32_t coll;
    st_txn *txn;
    st_collection c;
    if (st_txn_begin(db, 0, &txn) || st_coll_get(txn, "crash", &c)) _exit(4);
    coll = c.id;
    st_txn_abort(txn);
    msg ready = {MSG_READY, 0, 0, 0};
    if (write(fd, &ready, sizeof ready) != sizeof ready) _exit(11);
    uint64_t mine[4096];
    size_t n_mine = 0;
    uint64_t seed = seed_base;
    for (unsigned step = 0;; step++) {
        if (st_txn_begin(db, 1, &txn)) _exit(5);
        msg out[3];
        int n_out = 0;
        if (step % 5 == 4 && n_mine > 2) {
            uint64_t victim = mine[n_mine - 3];
            n_mine--;
            mine[n_mine - 2] = mine[n_mine];
            msg intent = {MSG_DEL_INTENT, 0, victim, 0};
            if (write(fd, &intent, sizeof intent) != sizeof intent) _exit(6);
            if (st_item_delete(txn, victim, NULL)) { fprintf(stderr, "child del: %s\n", perr_msg()); _exit(7); }
            out[n_out++] = (msg){MSG_DEL, 0, victim, 0};
        } else {
            int k = 1 + (int)(step % 3); /* 1..3 items per transaction */
            for (int j = 0; j < k; j++) {
                tu_item t;
                tu_item_make(&t, seed, DIM);
                uint64_t id;
                if (st_item_add(txn, coll, &t.it, t.vec, t.segs, t.n_segs, &id, NULL)) {
                    fprintf(stderr, "child add: %s\n", perr_msg());
                    _exit(8);
                }
                out[n_out++] = (msg){MSG_ADD, 0, id, seed};
                seed++;
            }
        }
        if (st_txn_commit(txn)) { fprintf(stderr, "child commit: %s\n", perr_msg()); _exit(9); }
        for (int i = 0; i < n_out; i++) {
            if (write(fd, &out[i], sizeof out[i]) != sizeof out[i]) _exit(10);
            if (out[i].type == MSG_ADD && n_mine < 4096) mine[n_mine++] = out[i].id;
        }
    }
}

typedef struct scan_ctx {
    st_txn *txn;
    size_t n, unacked;
    const char *bad;
    char why[300];
} scan_ctx;

static int check_scanned(void *ud, const st_item *it) {
    scan_ctx *s = ud;
    s->n++;
    if (it->id >= MAX_IDS || it->n_meta != 2) { s->bad = "id/meta out of range"; return 1; }
    uint64_t seed = strtoull(it->meta[1].value, NULL, 10);
    if (state[it->id] == 2) {
        snprintf(s->why, sizeof s->why, "item %llu deleted (acknowledged) but present",
                 (unsigned long long)it->id);
        s->bad = s->why;
        return 1;
    }
    if (state[it->id] == 0) { /* committed, killed before the ack: adopt it */
        state[it->id] = 1;
        seed_of[it->id] = seed;
        s->unacked++;
    }
    if (state[it->id] == 3) state[it->id] = 1; /* the delete did not commit */
    const char *why = tu_item_check(s->txn, it->id, seed, DIM);
    if (why) { snprintf(s->why, sizeof s->why, "%s", why); s->bad = s->why; return 1; }
    return 0;
}

static int count_vec(void *ud, uint64_t id, const float *v, int dim) { (*(size_t *)ud)++; return 0; }
static int count_seg(void *ud, uint64_t item, uint32_t idx, const st_segment *s, int dim) {
    (*(size_t *)ud)++;
    return 0;
}
static unsigned char replay_live[MAX_IDS];
static int replay(void *ud, const st_change *c) {
    if (c->item >= MAX_IDS) return perr_set(PERR_FORMAT, "change of item %llu", (unsigned long long)c->item);
    replay_live[c->item] = c->op == ST_OP_ADD;
    (*(uint64_t *)ud) = c->seq;
    return 0;
}

/* Verifies the database after a kill; returns 0 when consistent. */
static int verify(const char *dir, int iter, size_t *n_live, size_t *unacked) {
    st_db *db;
    if (st_open(dir, NULL, &db)) {
        t_fail(__FILE__, __LINE__, "iteration %d: reopen: %s", iter, perr_msg());
        return -1;
    }
    st_txn *txn;
    st_collection c;
    if (st_txn_begin(db, 0, &txn) || st_coll_get(txn, "crash", &c)) {
        t_fail(__FILE__, __LINE__, "iteration %d: %s", iter, perr_msg());
        st_close(db);
        return -1;
    }
    int bad = 0;
    /* 1. Every stored item is complete (also those not acknowledged). */
    scan_ctx s = {.txn = txn};
    int rc = st_scan_items(txn, c.id, 0, check_scanned, &s);
    if (rc || s.bad) {
        t_fail(__FILE__, __LINE__, "iteration %d: scan: %s", iter, s.bad ? s.bad : perr_msg());
        bad = 1;
    }
    /* 2. Acknowledged items present, acknowledged deletes gone. */
    size_t live = 0;
    for (uint64_t id = 1; id < MAX_IDS && !bad; id++) {
        st_item *it;
        if (state[id] == 3) { /* delete committed but not acknowledged */
            if (st_item_get(txn, id, &it) == PERR_NOT_FOUND) state[id] = 2;
            else st_item_free(it);
        }
        if (state[id] == 1) {
            live++;
            const char *why = tu_item_check(txn, id, seed_of[id], DIM);
            if (why) { t_fail(__FILE__, __LINE__, "iteration %d: acknowledged %s", iter, why); bad = 1; }
            tu_item t;
            tu_item_make(&t, seed_of[id], DIM);
            uint64_t hid = 0;
            if (!bad && (st_hash_lookup(txn, c.id, t.it.hash, &hid) || hid != id)) {
                t_fail(__FILE__, __LINE__, "iteration %d: hash of %llu", iter, (unsigned long long)id);
                bad = 1;
            }
        } else if (state[id] == 2) {
            if (st_item_get(txn, id, &it) != PERR_NOT_FOUND) {
                t_fail(__FILE__, __LINE__, "iteration %d: deleted item %llu still there", iter,
                       (unsigned long long)id);
                bad = 1;
            }
        }
    }
    /* 3. Counts agree everywhere. */
    size_t nvec = 0, nseg = 0, want_seg = 0;
    st_stats st;
    uint64_t *lab = NULL;
    size_t nlab = 0;
    if (!bad) {
        for (uint64_t id = 1; id < MAX_IDS; id++)
            if (state[id] == 1) {
                tu_item t;
                tu_item_make(&t, seed_of[id], DIM);
                want_seg += t.n_segs;
            }
        if (st_scan_vectors(txn, c.id, 0, count_vec, &nvec) ||
            st_scan_segments(txn, c.id, 0, count_seg, &nseg) || st_stats_get(txn, &st) ||
            st_label_ids(txn, c.id, "猫", &lab, &nlab)) {
            t_fail(__FILE__, __LINE__, "iteration %d: %s", iter, perr_msg());
            bad = 1;
        } else if (s.n != live || c.n_items != live || st.n_items != live || nvec != live ||
                   nlab != live || nseg != want_seg || c.n_segments != want_seg ||
                   st.n_segments != want_seg) {
            t_fail(__FILE__, __LINE__, "iteration %d: counts differ: live %zu scan %zu coll %llu "
                   "stats %llu vectors %zu label %zu; segments want %zu scan %zu coll %llu",
                   iter, live, s.n, (unsigned long long)c.n_items, (unsigned long long)st.n_items,
                   nvec, nlab, want_seg, nseg, (unsigned long long)c.n_segments);
            bad = 1;
        }
        free(lab);
    }
    /* 4. Replaying the change log gives exactly the live set. */
    if (!bad) {
        memset(replay_live, 0, sizeof replay_live);
        uint64_t last = 0;
        if (st_changes(txn, c.id, 0, replay, &last)) {
            t_fail(__FILE__, __LINE__, "iteration %d: changes: %s", iter, perr_msg());
            bad = 1;
        } else if (last != c.seq) {
            t_fail(__FILE__, __LINE__, "iteration %d: log ends at %llu, collection seq %llu",
                   iter, (unsigned long long)last, (unsigned long long)c.seq);
            bad = 1;
        }
        for (uint64_t id = 1; id < MAX_IDS && !bad; id++)
            if ((replay_live[id] != 0) != (state[id] == 1)) {
                t_fail(__FILE__, __LINE__, "iteration %d: replay disagrees on item %llu", iter,
                       (unsigned long long)id);
                bad = 1;
            }
    }
    st_txn_abort(txn);
    st_close(db);
    *n_live = live;
    *unacked += s.unacked;
    return bad ? -1 : 0;
}

/* Records one message of the child; 0 on a malformed one. */
static int take(const msg *m, size_t *got, size_t *acked, size_t *deletes) {
    if (m->type == MSG_READY) return 1;
    if (m->id == 0 || m->id >= MAX_IDS) {
        t_fail(__FILE__, __LINE__, "bad id %llu", (unsigned long long)m->id);
        return 0;
    }
    if (m->type == MSG_ADD) { state[m->id] = 1; seed_of[m->id] = m->seed; (*acked)++; }
    else if (m->type == MSG_DEL_INTENT) state[m->id] = 3;
    else if (m->type == MSG_DEL) { state[m->id] = 2; (*deletes)++; }
    (*got)++;
    return 1;
}

static void test_kill9_loop(void) {
    const char *env = getenv("PERCEPT_CRASH_SEED");
    uint64_t rng = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "  PERCEPT_CRASH_SEED=%llu\n", (unsigned long long)rng);
    char *dir = t_tmpdir("st-crash");
    st_db *db;
    REQUIRE_OK(st_open(dir, NULL, &db));
    st_txn *txn;
    uint32_t coll;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_model_set(txn, 7, "tiny-a", DIM));
    REQUIRE_OK(st_coll_create(txn, "crash", "Flat", &coll));
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db); /* never fork with an open environment */

    size_t acked = 0, deletes = 0, unacked = 0, live = 0, early = 0;
    for (int iter = 0; iter < ITERATIONS; iter++) {
        int fds[2];
        REQUIRE(pipe(fds) == 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(dir, fds[1], (uint64_t)(iter + 1) * 1000000);
            _exit(0);
        }
        close(fds[1]);
        rng = tu_mix(rng);
        /* A quarter of the kills land at once (during open or the first
         * commit); the others once the child is writing, after 0-60 ms. */
        msg m;
        size_t got = 0;
        ssize_t r;
        int wait_ready = rng % 4 != 0;
        if (wait_ready) {
            r = read(fds[0], &m, sizeof m);
            if (r != (ssize_t)sizeof m || m.type != MSG_READY) {
                t_fail(__FILE__, __LINE__, "iteration %d: child did not start", iter);
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                close(fds[0]);
                break;
            }
        }
        /* Every tenth run first waits for an acknowledged delete, so that
         * deletes are always exercised however slow the machine is. */
        int del_seen = !(wait_ready && iter % 10 == 9);
        while (!del_seen && read(fds[0], &m, sizeof m) == (ssize_t)sizeof m) {
            if (!take(&m, &got, &acked, &deletes)) break;
            del_seen = m.type == MSG_DEL;
        }
        usleep(wait_ready ? (unsigned)(rng >> 40) % 60000 : (unsigned)(rng >> 40) % 3000);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            t_fail(__FILE__, __LINE__, "iteration %d: child ended on its own (status %d)",
                   iter, status);
            close(fds[0]);
            break;
        }
        while ((r = read(fds[0], &m, sizeof m)) == (ssize_t)sizeof m)
            if (!take(&m, &got, &acked, &deletes)) break;
        close(fds[0]);
        if (got == 0) early++;
        if (verify(dir, iter, &live, &unacked)) break;
    }
    fprintf(stderr, "  %d kills: %zu acknowledged adds, %zu acknowledged deletes, %zu committed "
            "but unacknowledged items found whole, %zu kills before any commit, %zu live items\n",
            ITERATIONS, acked, deletes, unacked, early, live);
    CHECK(acked >= 10); /* the children did real work between kills */
    CHECK(deletes > 0);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    T_RUN(test_kill9_loop);
    return t_done();
}
