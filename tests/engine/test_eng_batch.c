/* eng_search_vectors: every answer of a batch equals eng_search_vector's
 * answer for that query alone (ids, scores bit for bit, order, collections,
 * labels), for Flat batches above FAISS's BLAS threshold (rescored), below
 * it, HNSW, several collections, filters, min_score, k beyond the count,
 * exact duplicate vectors (ties), and errors. Vectors-only database of
 * random unit vectors (the engine's photo tests cover encoding). */
#include "common/perr.h"
#include "engine/eng.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 64, N_MAIN = 4000, N_HNSW = 800, NQ = 64 };

static char *dir;
static eng_db *db;
static float *queries;
static uint64_t main_ids[N_MAIN];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void random_vecs(float *v, int n) {
    for (int i = 0; i < n * DIM; i++) v[i] = frand();
}

static void setup(void) {
    dir = t_tmpdir("eng_batch");
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.create = 1;
    o.vector_dim = DIM;
    if (eng_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); exit(1); }
    float *v = malloc(sizeof(float) * N_MAIN * DIM);
    random_vecs(v, N_MAIN);
    /* exact duplicates: ties at equal scores */
    for (int i = 0; i < 40; i++) memcpy(v + (size_t)(N_MAIN - 1 - i) * DIM, v + (size_t)i * DIM, sizeof(float) * DIM);
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    if (eng_add_vectors(db, v, N_MAIN, NULL, &io, main_ids)) { fprintf(stderr, "add: %s\n", perr_msg()); exit(1); }
    /* a label on every third item (filters) */
    uint64_t lab[N_MAIN / 3 + 1];
    int nl = 0;
    for (int i = 0; i < N_MAIN; i += 3) lab[nl++] = main_ids[i];
    if (eng_label_add(db, "third", lab, nl)) { fprintf(stderr, "label: %s\n", perr_msg()); exit(1); }
    if (eng_collection_create(db, "h", "HNSW32")) { fprintf(stderr, "create: %s\n", perr_msg()); exit(1); }
    random_vecs(v, N_HNSW);
    io.collection = "h";
    if (eng_add_vectors(db, v, N_HNSW, NULL, &io, NULL)) { fprintf(stderr, "add h: %s\n", perr_msg()); exit(1); }
    free(v);
    queries = malloc(sizeof(float) * NQ * DIM);
    random_vecs(queries, NQ);
    /* some queries are stored vectors (self match; the duplicated ones tie) */
    eng_item *it = NULL;
    for (int i = 0; i < 8; i++) {
        if (eng_get(db, main_ids[i * 5], 1, &it)) { fprintf(stderr, "get: %s\n", perr_msg()); exit(1); }
        memcpy(queries + (size_t)i * 7 * DIM, it->vector, sizeof(float) * DIM);
        eng_item_free(it);
    }
}

static void same_results(const eng_results *a, const eng_results *b, int qi) {
    REQUIRE(a && b);
    if (a->n != b->n) t_fail(__FILE__, __LINE__, "query %d: %d hits batched, %d single", qi, a->n, b->n);
    for (int i = 0; i < a->n && i < b->n; i++) {
        const eng_hit *x = &a->hits[i], *y = &b->hits[i];
        if (x->id != y->id || memcmp(&x->score, &y->score, sizeof(float)) != 0)
            t_fail(__FILE__, __LINE__, "query %d hit %d: batched id %llu score %.9g, single id %llu score %.9g", qi, i,
                   (unsigned long long)x->id, x->score, (unsigned long long)y->id, y->score);
        CHECK_STR(x->collection, y->collection);
        CHECK_EQ_INT(x->n_labels, y->n_labels);
    }
}

/* Batched vs single for the first nq queries under q. */
static void compare(const eng_query *q, int nq) {
    eng_results *out[NQ];
    REQUIRE_OK(eng_search_vectors(db, queries, nq, DIM, q, out));
    for (int i = 0; i < nq; i++) {
        eng_results *one = NULL;
        CHECK_OK(eng_search_vector(db, queries + (size_t)i * DIM, DIM, q, &one));
        same_results(out[i], one, i);
        if (q->k > 0 && !q->has_min_score && !q->n_labels && out[i]) CHECK(out[i]->n > 0);
        eng_results_free(one);
        eng_results_free(out[i]);
    }
}

static void test_flat_blas_batch(void) {
    eng_query q;
    eng_query_default(&q);
    int ks[] = {1, 10, 100, 4096};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        q.k = ks[i];
        compare(&q, NQ);   /* >= 20: BLAS pass + rescoring */
        compare(&q, 20);
    }
}

static void test_flat_small_batch(void) {
    eng_query q;
    eng_query_default(&q);
    compare(&q, 1);
    compare(&q, 7);
    compare(&q, 19);
}

static void test_hnsw_and_two_collections(void) {
    const char *h[] = {"h"};
    const char *both[] = {"default", "h"};
    eng_query q;
    eng_query_default(&q);
    q.collections = h; q.n_collections = 1;
    compare(&q, NQ);
    q.collections = both; q.n_collections = 2;
    q.k = 25;
    compare(&q, NQ);
}

static void test_filters_and_min_score(void) {
    const char *labels[] = {"third"};
    eng_query q;
    eng_query_default(&q);
    q.labels = labels; q.n_labels = 1;
    compare(&q, NQ);
    eng_query_default(&q);
    q.has_min_score = 1; q.min_score = 0.3f; q.k = 0;
    compare(&q, 24);
}

static void test_errors(void) {
    eng_results *out[NQ];
    const char *missing[] = {"nope"};
    eng_query q;
    eng_query_default(&q);
    q.collections = missing; q.n_collections = 1;
    CHECK_ERR(eng_search_vectors(db, queries, NQ, DIM, &q, out), PERR_NOT_FOUND);
    for (int i = 0; i < NQ; i++) CHECK(out[i] == NULL);
    float *bad = malloc(sizeof(float) * NQ * DIM);
    memcpy(bad, queries, sizeof(float) * NQ * DIM);
    memset(bad + 30 * DIM, 0, sizeof(float) * DIM); /* a zero vector cannot be normalized */
    CHECK_ERR(eng_search_vectors(db, bad, NQ, DIM, NULL, out), PERR_INVALID);
    CHECK(strstr(perr_msg(), "query 30") != NULL);
    for (int i = 0; i < NQ; i++) CHECK(out[i] == NULL);
    CHECK_ERR(eng_search_vectors(db, queries, 3, DIM + 1, NULL, out), PERR_INVALID);
    free(bad);
}

int main(void) {
    setup();
    T_RUN(test_flat_blas_batch);
    T_RUN(test_flat_small_batch);
    T_RUN(test_hnsw_and_two_collections);
    T_RUN(test_filters_and_min_score);
    T_RUN(test_errors);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
    free(queries);
    return t_done();
}
