/* `percept serve` as a process: SIGTERM during ingest from 4 clients loses
 * nothing that was acknowledged (every acknowledged id is in the database
 * afterwards, with its vector searchable), exit status 0; more SIGTERMs
 * and SIGINTs during the drain and the index save change nothing (they
 * used to kill it with status 143); the server listens on a port chosen
 * free at run time. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "net/client.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct ing { const char *addr; int t; uint64_t acked[256]; int n; } ing;

static void *ingester(void *p) {
    ing *g = p;
    pc_client *c = NULL;
    for (int tries = 0; tries < 200 && pc_connect(g->addr, NULL, &c); tries++) usleep(50000);
    if (!c) return NULL;
    for (int i = 0; i < 256; i++) {
        size_t len;
        void *img = nt_image(nt_images[i % 6], &len);
        char coll[32];
        snprintf(coll, sizeof coll, "t%d_%d", g->t, i / 6); /* new bytes per collection: a new item */
        pc_ingest_opts o = {.collection = coll, .uri = nt_images[i % 6]};
        uint64_t id;
        int rc = pc_ingest_bytes(c, img, len, &o, &id, NULL);
        free(img);
        if (rc) break; /* the server went away: stop */
        g->acked[g->n++] = id;
    }
    pc_close(c);
    return NULL;
}

/* extra: signals sent after the first SIGTERM, one every 2 ms until the
 * server has exited. */
static void sigterm_during_ingest(int extra) {
    char *dir = t_tmpdir("net_sigterm");
    char *dbdir = t_path("%s/db", dir);
    int port = nt_free_port();
    REQUIRE(port > 0);
    char listen[64], addr[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *exe = getenv("PERCEPT_EXE");
    REQUIRE(exe);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("PERCEPT_VOCAB", nt_vocab, 1);
        execl(exe, exe, "serve", "--db", dbdir, "--model", nt_model, "--listen", listen, (char *)NULL);
        _exit(127);
    }
    enum { N = 4 };
    ing g[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) { memset(&g[i], 0, sizeof g[i]); g[i].addr = addr; g[i].t = i; pthread_create(&th[i], NULL, ingester, &g[i]); }
    /* Let some ingest happen, then SIGTERM in the middle of it. */
    for (int waited = 0; waited < 600; waited++) {
        int total = 0;
        for (int i = 0; i < N; i++) total += __atomic_load_n(&g[i].n, __ATOMIC_RELAXED);
        if (total >= 20) break;
        usleep(50000);
    }
    kill(pid, SIGTERM);
    int status = 0, sent = 0;
    if (extra) {
        while (waitpid(pid, &status, WNOHANG) == 0) {
            kill(pid, sent % 2 ? SIGINT : SIGTERM);
            sent++;
            usleep(2000);
        }
        CHECK(sent >= 1);
    } else waitpid(pid, &status, 0);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        t_fail(__FILE__, __LINE__, "serve: %s %d after %d more signals", WIFEXITED(status) ? "exit status" : "killed by signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), sent);
    int total = 0;
    for (int i = 0; i < N; i++) total += g[i].n;
    CHECK(total >= 20);
    CHECK(total < N * 256); /* it really was stopped mid-way */
    /* Everything acknowledged is there, and found by its own vector. */
    eng_db *db = NULL;
    REQUIRE_OK(nt_open_db(dbdir, 1, &db));
    int missing = 0, unsearchable = 0;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < g[i].n; k++) {
            eng_item *it = NULL;
            if (eng_get(db, g[i].acked[k], 1, &it)) { missing++; continue; }
            eng_query q;
            eng_query_default(&q);
            const char *cs[] = {it->collection};
            q.collections = cs; q.n_collections = 1; q.k = 10;
            eng_results *r = NULL;
            int found = 0;
            if (eng_search_vector(db, it->vector, it->dim, &q, &r) == 0)
                for (int j = 0; j < r->n; j++) found |= r->hits[j].id == it->id;
            unsearchable += !found;
            eng_results_free(r);
            eng_item_free(it);
        }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(unsearchable, 0);
    eng_close(db);
    t_rmtree(dir);
    free(dbdir);
    free(dir);
}

static void test_sigterm_during_ingest(void) { sigterm_during_ingest(0); }
static void test_second_sigterm_finishes_the_drain(void) { sigterm_during_ingest(1); }

int main(void) {
    nt_init();
    T_RUN(test_sigterm_during_ingest);
    T_RUN(test_second_sigterm_finishes_the_drain);
    nt_fini();
    return t_done();
}
