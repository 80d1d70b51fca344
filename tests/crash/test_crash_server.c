/* test_crash_server: kill -9 of a server while 4 connections upload (group
 * commit) loses nothing acknowledged and leaves no half item.
 *
 * A child process (this program re-executed as "serve") opens the database
 * and serves it on a loopback port it prints; index saves every 7 changes so
 * that kills also land inside saves. Four client threads of the parent
 * upload real photos and their variants (their share each, every one also
 * one same photo, so duplicates meet in groups) and record every id the
 * server acknowledged. The parent kills the child with SIGKILL at a random
 * moment, reopens the database and checks: every acknowledged id is stored,
 * has its vector and finds itself first with score 1; the index holds
 * exactly the stored items. Rounds resume the same files (stored ones come
 * back "present" with their id); between rounds a third of the items is
 * deleted so that every round has work. A last round runs to the end and
 * stops the server with SIGTERM (drain: exit 0, everything acknowledged). */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"
#include "net/client.h"
#include "net/server.h"
#include "crash_check.h"
#include "photos.h"
#include "tests/common/testlib.h"

#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 10
#define NCONN 4

static char *model_path, *vocab_path;

static int child_main(const char *dbdir) {
    eng_db *db = NULL;
    if (crash_child_open(dbdir, model_path, vocab_path, 7, &db)) return 2;
    net_server_opts so;
    net_server_opts_default(&so);
    static const char *const lis[] = {"127.0.0.1:0"};
    so.listen = lis;
    so.n_listen = 1;
    so.handle_signals = 1; /* SIGTERM drains, as percept serve */
    net_server *srv = NULL;
    if (net_server_new(db, &so, &srv)) { fprintf(stderr, "child: %s\n", perr_msg()); return 2; }
    printf("port %d\n", net_server_port(srv, 0));
    fflush(stdout);
    /* the parent reads only that line and closes the pipe */
    int nul = open("/dev/null", O_WRONLY);
    if (nul >= 0) { dup2(nul, 1); close(nul); }
    net_server_run(srv);
    net_server_free(srv);
    return eng_close(db) ? 2 : 0;
}

typedef struct acks { uint64_t *v; int n, cap; pthread_mutex_t mu; } acks;

static void acks_add(acks *a, uint64_t id) {
    pthread_mutex_lock(&a->mu);
    int have = 0;
    for (int i = 0; i < a->n && !have; i++) have = a->v[i] == id;
    if (!have) {
        if (a->n == a->cap) { a->cap = a->cap ? a->cap * 2 : 256; a->v = realloc(a->v, sizeof *a->v * (size_t)a->cap); }
        a->v[a->n++] = id;
    }
    pthread_mutex_unlock(&a->mu);
}

typedef struct files { char **p; int n; } files;

typedef struct client {
    char addr[64];
    const files *f;
    int t;
    acks *a;
    atomic_int done_all;    /* every file answered */
    int errors;             /* failures while the server was alive */
} client;

static void *client_main(void *p) {
    client *c = p;
    pc_client *pc = NULL;
    if (pc_connect(c->addr, NULL, &pc)) return NULL;
    for (int i = -1; i < c->f->n; i++) {
        int k = i < 0 ? 0 : i;
        if (i >= 0 && i % NCONN != c->t) continue;
        void *data = NULL;
        size_t len = 0;
        if (pc_read_file(c->f->p[k], (size_t)1 << 26, &data, &len)) { c->errors++; break; }
        pc_ingest_opts io = {.uri = c->f->p[k]};
        uint64_t id = 0;
        eng_outcome oc;
        int rc = pc_ingest_bytes(pc, data, len, &io, &id, &oc);
        free(data);
        if (rc == PERR_NET || rc == PERR_PROTOCOL) break; /* killed */
        if (rc) { fprintf(stderr, "client %d: %s\n", c->t, perr_msg()); c->errors++; continue; }
        acks_add(c->a, id);
        if (i + NCONN >= c->f->n) atomic_store(&c->done_all, 1); /* its last file */
    }
    pc_close(pc);
    return NULL;
}

/* Starts the child; *port from its first line. */
static pid_t start_child(const char *dbdir, int *port) {
    int pfd[2];
    if (pipe(pfd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl("/proc/self/exe", "test_crash_server", "serve", dbdir, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[128];
    size_t n = 0;
    *port = 0;
    while (n < sizeof line - 1) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0) break;
        ssize_t r = read(pfd[0], line + n, 1);
        if (r <= 0) break;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    close(pfd[0]);
    if (sscanf(line, "port %d", port) != 1) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); return -1; }
    return pid;
}

static long ms_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* One round: the server, 4 uploading connections, a kill at kill_ms (< 0:
 * none; SIGTERM once the clients are done). */
static void run_round(const char *dbdir, const files *f, acks *a, int kill_ms, int *killed, long *el) {
    int port = 0;
    pid_t pid = start_child(dbdir, &port);
    *killed = 0;
    if (pid < 0) { t_fail(__FILE__, __LINE__, "the server child did not start"); return; }
    client c[NCONN];
    pthread_t th[NCONN];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < NCONN; i++) {
        memset(&c[i], 0, sizeof c[i]);
        snprintf(c[i].addr, sizeof c[i].addr, "127.0.0.1:%d", port);
        c[i].f = f;
        c[i].t = i;
        c[i].a = a;
        pthread_create(&th[i], NULL, client_main, &c[i]);
    }
    if (kill_ms >= 0) {
        for (;;) { /* kill at kill_ms unless the clients finished first */
            int alive = 0;
            for (int i = 0; i < NCONN; i++) alive += !c[i].done_all;
            if (!alive || ms_since(&t0) >= kill_ms) break;
            usleep(2000);
        }
        int any_left = 0;
        for (int i = 0; i < NCONN; i++) any_left += !c[i].done_all;
        if (any_left) { kill(pid, SIGKILL); *killed = 1; }
    }
    for (int i = 0; i < NCONN; i++) pthread_join(th[i], NULL);
    *el = ms_since(&t0);
    if (!*killed) kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    for (int i = 0; i < NCONN; i++) {
        if (!*killed) CHECK(c[i].done_all);
        CHECK_EQ_INT(c[i].errors, 0);
    }
    if (*killed) CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    else CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_kill9_server_uploads(void) {
    photo_set ps;
    int n = photos_gather(&ps, 24, 160);
    REQUIRE(n >= 16);
    static const photo_variant vs[] = {PV_REENCODE_Q60, PV_FLIP};
    files f = {calloc((size_t)n * 3, sizeof(char *)), 0};
    REQUIRE(f.p);
    for (int i = 0; i < n; i++) {
        f.p[f.n++] = strdup(ps.paths[i]);
        for (int v = 0; v < 2; v++) {
            char dst[4096];
            snprintf(dst, sizeof dst, "%s/v%03d-%d.jpg", ps.dir, i, v);
            REQUIRE(photos_make_variant(ps.paths[i], dst, vs[v]) == 0);
            f.p[f.n++] = strdup(dst);
        }
    }
    char *dbdir = t_tmpdir("crash-srv-db");
    acks a = {0};
    pthread_mutex_init(&a.mu, NULL);
    srand(4242);
    int kills = 0;
    long full_ms = 1500;
    for (int round = 0; round < ROUNDS; round++) {
        int kill_ms = 10 + (int)(rand() % (full_ms > 20 ? full_ms : 20));
        int killed = 0;
        long el = 0;
        run_round(dbdir, &f, &a, kill_ms, &killed, &el);
        kills += killed;
        if (!killed) full_ms = el;
        crash_check_db(dbdir, vocab_path, 0, a.v, &a.n, round, 1);
    }
    int killed = 0;
    long el = 0;
    run_round(dbdir, &f, &a, -1, &killed, &el);
    crash_check_db(dbdir, vocab_path, 0, a.v, &a.n, ROUNDS, 0);
    printf("  %d rounds, %d killed mid-upload, %d items acknowledged\n", ROUNDS, kills, a.n);
    CHECK(kills >= ROUNDS / 3);
    CHECK_EQ_INT(a.n, f.n);
    for (int i = 0; i < f.n; i++) free(f.p[i]);
    free(f.p);
    free(a.v);
    pthread_mutex_destroy(&a.mu);
    t_rmtree(dbdir);
    free(dbdir);
    photos_free(&ps);
}

int main(int argc, char **argv) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    if (argc == 3 && !strcmp(argv[1], "serve")) return child_main(argv[2]);
    T_RUN(test_kill9_server_uploads);
    free(model_path);
    free(vocab_path);
    return t_done();
}
