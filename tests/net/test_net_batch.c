/* The server's coalescing of vector searches (net/server.c run_batch,
 * eng_search_vectors): 64 connections send vector searches at once, in
 * several shapes (k, collections, label filters, min_score) mixed with
 * searches by id (not batchable: put back in the queue) and bad vectors;
 * every answer equals the embedded single-query answer bit for bit, and the
 * server's counters show that searches were answered in batches.
 * Vectors-only database of random unit vectors. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "net/client.h"
#include "net/mp.h"
#include "net/proto.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 64, N_MAIN = 3000, N_H = 500, N_CONNS = 64, PER_CONN = 40, N_SHAPES = 5 };

static char *dir;
static eng_db *db;
static uint64_t main_ids[N_MAIN];
static float *queries;     /* N_CONNS * PER_CONN x DIM */

static uint64_t rng = 0x1234567887654321ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static const char *const both[] = {"default", "h"};
static const char *const third[] = {"third"};

/* Query shape s (s == N_SHAPES - 1 is a search by id). */
static void shape(int s, eng_query *q) {
    eng_query_default(q);
    switch (s) {
    case 0: break;
    case 1: q->k = 3; break;
    case 2: q->collections = both; q->n_collections = 2; q->k = 7; break;
    case 3: q->labels = third; q->n_labels = 1; q->k = 5; break;
    default: q->k = 4; break;
    }
}

static void setup(void) {
    dir = t_tmpdir("net_batch");
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.create = 1;
    o.vector_dim = DIM;
    if (eng_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); exit(1); }
    float *v = malloc(sizeof(float) * N_MAIN * DIM);
    for (int i = 0; i < N_MAIN * DIM; i++) v[i] = frand();
    for (int i = 0; i < 20; i++) memcpy(v + (size_t)(N_MAIN - 1 - i) * DIM, v + (size_t)i * DIM, sizeof(float) * DIM);
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    if (eng_add_vectors(db, v, N_MAIN, NULL, &io, main_ids)) { fprintf(stderr, "add: %s\n", perr_msg()); exit(1); }
    uint64_t lab[N_MAIN / 3 + 1];
    int nl = 0;
    for (int i = 0; i < N_MAIN; i += 3) lab[nl++] = main_ids[i];
    if (eng_label_add(db, "third", lab, nl) || eng_collection_create(db, "h", "HNSW32")) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
    io.collection = "h";
    if (eng_add_vectors(db, v + 100 * DIM, N_H, NULL, &io, NULL)) { fprintf(stderr, "add h: %s\n", perr_msg()); exit(1); }
    free(v);
    queries = malloc(sizeof(float) * N_CONNS * PER_CONN * DIM);
    for (int i = 0; i < N_CONNS * PER_CONN * DIM; i++) queries[i] = frand();
}

typedef struct worker {
    const char *addr;
    int idx;
    int bad;              /* answers that differed from the embedded ones */
    char first_bad[256];
} worker;

static int results_equal(const eng_results *a, const eng_results *b, char *why, size_t cap) {
    if (a->n != b->n) { snprintf(why, cap, "%d hits, embedded %d", a->n, b->n); return 0; }
    for (int i = 0; i < a->n; i++) {
        const eng_hit *x = &a->hits[i], *y = &b->hits[i];
        if (x->id != y->id || memcmp(&x->score, &y->score, sizeof(float)) || strcmp(x->collection, y->collection) ||
            strcmp(x->uri, y->uri) || x->n_labels != y->n_labels) {
            snprintf(why, cap, "hit %d: id %llu score %.9g, embedded id %llu score %.9g", i, (unsigned long long)x->id,
                     x->score, (unsigned long long)y->id, y->score);
            return 0;
        }
    }
    return 1;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pc_client *c = NULL;
    if (pc_connect(w->addr, NULL, &c)) { w->bad++; snprintf(w->first_bad, sizeof w->first_bad, "connect: %s", perr_msg()); return NULL; }
    for (int j = 0; j < PER_CONN; j++) {
        int qi = w->idx * PER_CONN + j;
        const float *v = queries + (size_t)qi * DIM;
        int s = (w->idx + j) % N_SHAPES;
        eng_query q;
        shape(s, &q);
        eng_results *got = NULL, *want = NULL;
        char why[200] = "";
        int rc, erc;
        if (j % 13 == 12) { /* a vector of the wrong length: INVALID, answered alone */
            rc = pc_search_vector(c, v, DIM - 1, &q, &got);
            if (rc != PERR_INVALID) snprintf(why, sizeof why, "short vector: %s, not INVALID", perr_name(rc));
        } else if (s == N_SHAPES - 1) {
            uint64_t id = main_ids[(qi * 7) % N_MAIN];
            rc = pc_search_id(c, id, &q, &got);
            erc = eng_search_id(db, id, &q, &want);
            if (rc || erc) snprintf(why, sizeof why, "by id: %s / embedded %s", perr_name(rc), perr_name(erc));
            else results_equal(got, want, why, sizeof why);
        } else {
            rc = pc_search_vector(c, v, DIM, &q, &got);
            erc = eng_search_vector(db, v, DIM, &q, &want);
            if (rc || erc) snprintf(why, sizeof why, "shape %d: %s / embedded %s", s, perr_name(rc), perr_name(erc));
            else results_equal(got, want, why, sizeof why);
        }
        if (why[0]) {
            if (!w->bad++) snprintf(w->first_bad, sizeof w->first_bad, "conn %d query %d: %s", w->idx, j, why);
        }
        eng_results_free(got);
        eng_results_free(want);
    }
    pc_close(c);
    return NULL;
}

/* STATS "server" counters of the coalescing. */
static void batch_counters(const char *addr, uint64_t *batches, uint64_t *batched) {
    *batches = *batched = 0;
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(addr, NULL, &c));
    uint8_t *p = NULL;
    size_t len = 0;
    CHECK_OK(pc_call(c, NET_OP_STATS, "\x80", 1, &p, &len));
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    if (p && net_mp_unpack(p, len, &u, &o) == PERR_OK) {
        const msgpack_object *srv = net_mp_get(o, "server");
        const msgpack_object *a = srv ? net_mp_get(srv, "search_batches") : NULL;
        const msgpack_object *b = srv ? net_mp_get(srv, "batched_searches") : NULL;
        if (a && a->type == MSGPACK_OBJECT_POSITIVE_INTEGER) *batches = a->via.u64;
        if (b && b->type == MSGPACK_OBJECT_POSITIVE_INTEGER) *batched = b->via.u64;
    }
    msgpack_unpacked_destroy(&u);
    free(p);
    pc_close(c);
}

static void run_clients(int batch_max, int wait_us) {
    net_server_opts so;
    net_server_opts_default(&so);
    so.batch_max = batch_max;
    so.batch_wait_us = wait_us;
    nt_server srv;
    REQUIRE_OK(nt_server_start(&srv, db, &so));
    worker w[N_CONNS];
    pthread_t th[N_CONNS];
    for (int i = 0; i < N_CONNS; i++) {
        w[i] = (worker){.addr = srv.addr, .idx = i};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int bad = 0;
    for (int i = 0; i < N_CONNS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].bad && !bad) t_fail(__FILE__, __LINE__, "%s", w[i].first_bad);
        bad += w[i].bad;
    }
    CHECK_EQ_INT(bad, 0);
    uint64_t batches = 0, batched = 0;
    batch_counters(srv.addr, &batches, &batched);
    printf("  batch_max %d, wait %d us: %llu searches answered in %llu batches\n", batch_max, wait_us,
           (unsigned long long)batched, (unsigned long long)batches);
    if (batch_max > 1) {
        CHECK(batches > 0);
        CHECK(batched >= 2 * batches); /* a batch holds two searches or more */
    } else CHECK(batches == 0);
    nt_server_stop(&srv);
}

/* 64 connections, every answer equal to the embedded one, batches formed. */
static void test_64_conns_coalesced(void) { run_clients(64, 0); }
/* The same with a wait for stragglers and a small maximum batch. */
static void test_wait_and_small_batches(void) { run_clients(5, 200); }
/* Coalescing off: the reference behaviour. */
static void test_batching_off(void) { run_clients(1, 0); }

int main(void) {
    setup();
    T_RUN(test_64_conns_coalesced);
    T_RUN(test_wait_and_small_batches);
    T_RUN(test_batching_off);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
    free(queries);
    return t_done();
}
