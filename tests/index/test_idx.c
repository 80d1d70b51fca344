/* Index module: every offered index type on random unit vectors, compared
 * with a brute-force k-NN computed here: exactness for Flat (and the
 * pre-training side buffer), recall@10 bounds for approximate types,
 * removes (HNSW tombstones too), filtered and range search, errors, and
 * searches running concurrently with writers. */
#include "common/perr.h"
#include "index/idx.h"
#include "tests/common/testlib.h"
#include "tests/index/idx_testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D 64
#define N 4000
#define NQ 40
#define K 10

static float *g_x, *g_q;
static int64_t g_ids[N];

static void setup(void) {
    tu_seed(42);
    g_x = tu_vectors(N, D);
    g_q = tu_vectors(NQ, D);
    for (int i = 0; i < N; i++) g_ids[i] = 1000 + 7 * (int64_t)i;
}

static long row_of(int64_t id) {
    if (id < 1000 || (id - 1000) % 7) return -1;
    long r = (long)((id - 1000) / 7);
    return r < N ? r : -1;
}

/* Results equal the brute force up to float rounding: scores within 1e-4
 * rank by rank, ids equal except between near-tied scores. */
static void check_exact(const float *s, const int64_t *id, const float *ts, const int64_t *ti,
                        size_t nq, int k) {
    for (size_t i = 0; i < nq; i++)
        for (int j = 0; j < k; j++) {
            size_t a = i * k + j;
            if (ti[a] < 0) { CHECK_EQ_INT(id[a], -1); CHECK(isinf(s[a]) && s[a] < 0); continue; }
            if (fabsf(s[a] - ts[a]) > 1e-4f) {
                t_fail(__FILE__, __LINE__, "query %zu rank %d: score %g, brute force %g", i, j, s[a], ts[a]);
                return;
            }
            int tied = (j > 0 && fabsf(ts[a] - ts[a - 1]) < 1e-4f) || (j + 1 < k && ti[a + 1] >= 0 && fabsf(ts[a] - ts[a + 1]) < 1e-4f);
            if (!tied && id[a] != ti[a]) {
                t_fail(__FILE__, __LINE__, "query %zu rank %d: id %lld, brute force %lld", i, j,
                       (long long)id[a], (long long)ti[a]);
                return;
            }
        }
}

static void truth(const unsigned char *keep, float *ts, int64_t *ti, int k) {
    for (int i = 0; i < NQ; i++) tu_knn(g_x, g_ids, keep, N, D, g_q + i * D, k, ts + i * k, ti + i * k);
}

/* ----------------------------------------------------------------- tests */

static void test_flat_exact(void) {
    idx *ix;
    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    CHECK_EQ_INT(idx_needs_training(ix), 0);
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    CHECK_EQ_INT(idx_count(ix), N);
    CHECK_EQ_INT(idx_dim(ix), D);
    float s[NQ * K], ts[NQ * K];
    int64_t id[NQ * K], ti[NQ * K];
    truth(NULL, ts, ti, K);
    /* batched (BLAS path) and one by one (SIMD path) */
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    check_exact(s, id, ts, ti, NQ, K);
    for (int i = 0; i < NQ; i++) CHECK_OK(idx_search(ix, g_q + i * D, 1, K, s + i * K, id + i * K));
    check_exact(s, id, ts, ti, NQ, K);
    /* k larger than the index: padding */
    idx *small;
    REQUIRE_OK(idx_create("Flat", D, NULL, &small));
    REQUIRE_OK(idx_add(small, g_x, g_ids, 3));
    CHECK_OK(idx_search(small, g_q, 1, 5, s, id));
    CHECK(id[0] >= 0 && id[1] >= 0 && id[2] >= 0 && id[3] == -1 && id[4] == -1);
    CHECK(isinf(s[3]) && s[3] < 0);
    idx_free(small);
    idx_free(ix);
}

typedef struct {
    const char *factory;
    double min_recall;
    const char *param; double value;
} type_case;

/* One type end to end: add in chunks (training on the way), recall@10,
 * remove 10 %, removed ids never returned, recall still held. */
static void run_type(const type_case *tc) {
    idx_opts o = idx_opts_default();
    o.train_size = 2000;
    idx *ix;
    REQUIRE_OK(idx_create(tc->factory, D, &o, &ix));
    int needs = idx_needs_training(ix);
    if (tc->param) CHECK_OK(idx_set_param(ix, tc->param, tc->value));
    float s[NQ * K], ts[NQ * K];
    int64_t id[NQ * K], ti[NQ * K];
    for (int c = 0; c < N; c += 500) {
        REQUIRE_OK(idx_add(ix, g_x + (size_t)c * D, g_ids + c, 500));
        if (needs && c + 500 < 2000) {
            /* still buffered: exact, whatever the type */
            CHECK_EQ_INT(idx_needs_training(ix), 1);
            unsigned char keep[N] = {0};
            for (int i = 0; i < c + 500; i++) keep[i] = 1;
            truth(keep, ts, ti, K);
            CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
            check_exact(s, id, ts, ti, NQ, K);
        }
    }
    CHECK_EQ_INT(idx_needs_training(ix), 0);
    idx_stats st;
    idx_get_stats(ix, &st);
    CHECK_EQ_INT(st.buffered, 0);
    CHECK_EQ_INT(st.count, N);
    CHECK_STR(st.train_error, "");
    truth(NULL, ts, ti, K);
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    double r = tu_recall(id, ti, NQ, K);
    printf("  %-14s recall@10 %.3f (bound %.2f)\n", tc->factory, r, tc->min_recall);
    CHECK(r >= tc->min_recall);
    for (int i = 0; i < NQ * K; i++) CHECK(row_of(id[i]) >= 0);

    /* remove every 10th vector (and an unknown id) */
    int64_t rm[N / 10 + 1];
    unsigned char keep[N];
    for (int i = 0; i < N; i++) keep[i] = i % 10 != 3;
    int nrm = 0;
    for (int i = 3; i < N; i += 10) rm[nrm++] = g_ids[i];
    rm[nrm++] = 5; /* not present */
    size_t removed = 0;
    CHECK_OK(idx_remove(ix, rm, nrm, &removed));
    CHECK_EQ_INT(removed, nrm - 1);
    CHECK_EQ_INT(idx_count(ix), N - (nrm - 1));
    CHECK_EQ_INT(idx_contains(ix, rm[0]), 0);
    CHECK_EQ_INT(idx_contains(ix, g_ids[0]), 1);
    CHECK_OK(idx_remove(ix, rm, nrm, &removed));
    CHECK_EQ_INT(removed, 0);
    truth(keep, ts, ti, K);
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    int bad = 0;
    for (int i = 0; i < NQ * K; i++) bad += id[i] < 0 || !keep[row_of(id[i])];
    CHECK_EQ_INT(bad, 0);
    double r2 = tu_recall(id, ti, NQ, K);
    CHECK(r2 >= tc->min_recall - 0.03);
    idx_get_stats(ix, &st);
    if (!strncmp(tc->factory, "HNSW", 4)) {
        CHECK_EQ_INT(st.tombstones, nrm - 1);
        CHECK(fabs(st.tombstone_frac - (double)(nrm - 1) / N) < 1e-9);
    } else {
        CHECK_EQ_INT(st.tombstones, 0);
    }
    /* a removed id can be added again, with a new vector */
    CHECK_OK(idx_add(ix, g_q, &rm[0], 1));
    CHECK_OK(idx_search(ix, g_q, 1, 1, s, id));
    CHECK_EQ_INT(id[0], rm[0]);
    CHECK(s[0] > (strstr(tc->factory, "PQ") ? 0.5f : 0.97f)); /* PQ8 codes: coarse */
    idx_free(ix);
}

static const type_case g_types[] = {
    {"Flat", 0.999, NULL, 0},
    {"HNSW32", 0.95, "efSearch", 128},
    /* uniform random data is IVF's worst case: 8 of 16 lists give ~0.75 */
    {"IVF16,Flat", 0.65, "nprobe", 8},
    {"IVF16,SQ8", 0.65, "nprobe", 8},
    {"SQ8", 0.90, NULL, 0},
    {"SQfp16", 0.99, NULL, 0},
    {"IVF16,PQ8np", 0.2, "nprobe", 8}, /* np: no polysemous training (slow) */
    {"HNSW16,SQ8", 0.85, "efSearch", 128},
};

static double now(void);
static void test_types(void) {
    for (size_t i = 0; i < sizeof g_types / sizeof g_types[0]; i++) {
        double t0 = now();
        run_type(&g_types[i]);
        if (getenv("IDX_TEST_TIMES")) printf("  (%s: %.2f s)\n", g_types[i].factory, now() - t0);
    }
}

static void test_untrained_buffer(void) {
    idx_opts o = idx_opts_default();
    o.auto_train = 0;
    idx *ix;
    REQUIRE_OK(idx_create("IVF16,Flat", D, &o, &ix));
    CHECK_EQ_INT(idx_needs_training(ix), 1);
    CHECK_EQ_INT(idx_train_size(ix), 16 * 39);
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N)); /* beyond train_size: no auto-training */
    CHECK_EQ_INT(idx_needs_training(ix), 1);
    float s[NQ * K], ts[NQ * K];
    int64_t id[NQ * K], ti[NQ * K];
    truth(NULL, ts, ti, K);
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    check_exact(s, id, ts, ti, NQ, K);
    /* explicit training on a sample given by the caller */
    CHECK_ERR(idx_train(ix, g_x, 4), PERR_INVALID); /* fewer points than lists */
    CHECK_EQ_INT(idx_needs_training(ix), 1);
    CHECK_OK(idx_train(ix, g_x, 1000));
    CHECK_EQ_INT(idx_needs_training(ix), 0);
    CHECK_EQ_INT(idx_count(ix), N);
    CHECK_OK(idx_set_param(ix, "nprobe", 16)); /* all lists: exact again */
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    check_exact(s, id, ts, ti, NQ, K);
    CHECK_OK(idx_train(ix, NULL, 0)); /* no-op once trained */
    idx_free(ix);

    /* training from the buffer */
    REQUIRE_OK(idx_create("IVF16,Flat", D, &o, &ix));
    CHECK_ERR(idx_train(ix, NULL, 0), PERR_INVALID); /* empty buffer */
    REQUIRE_OK(idx_add(ix, g_x, g_ids, 800));
    CHECK_OK(idx_train(ix, NULL, 0));
    CHECK_EQ_INT(idx_needs_training(ix), 0);
    CHECK_EQ_INT(idx_count(ix), 800);
    idx_free(ix);
}

/* Filtered search: only allowed ids, and for Flat the exact best of them,
 * through both strategies (scoring the allowed ids; growing k). */
static void check_filtered(const char *factory, const char *param, double val, int exact,
                           size_t n_allowed_rows, size_t scan_max) {
    idx_opts o = idx_opts_default();
    o.filter_scan_max = scan_max;
    o.train_size = 2000;
    idx *ix;
    REQUIRE_OK(idx_create(factory, D, &o, &ix));
    if (param) CHECK_OK(idx_set_param(ix, param, val));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    /* remove a few so that tombstones / holes are in play */
    int64_t rm[] = {g_ids[0], g_ids[5], g_ids[10]};
    CHECK_OK(idx_remove(ix, rm, 3, NULL));
    unsigned char keep[N] = {0};
    int64_t *allowed = malloc((n_allowed_rows + 2) * sizeof *allowed);
    size_t na = 0;
    allowed[na++] = 3; /* unknown id, below every real one */
    size_t stride = N / n_allowed_rows;
    for (size_t i = 0; i < N && na < n_allowed_rows + 1; i += stride) {
        allowed[na++] = g_ids[i];
        keep[i] = i != 0 && i != 5 && i != 10;
    }
    float s[NQ * K], ts[NQ * K];
    int64_t id[NQ * K], ti[NQ * K];
    truth(keep, ts, ti, K);
    CHECK_OK(idx_search_filtered(ix, g_q, NQ, K, allowed, na, s, id));
    int bad = 0;
    for (int i = 0; i < NQ * K; i++) bad += id[i] >= 0 && !keep[row_of(id[i])];
    CHECK_EQ_INT(bad, 0);
    if (exact) check_exact(s, id, ts, ti, NQ, K);
    else {
        double r = tu_recall(id, ti, NQ, K);
        printf("  %-12s filtered (%zu allowed, scan_max %zu) recall@10 %.3f\n", factory, na, scan_max, r);
        CHECK(r >= (strncmp(factory, "IVF", 3) ? 0.8 : 0.6));
    }
    free(allowed);
    idx_free(ix);
}

static void test_filtered(void) {
    check_filtered("Flat", NULL, 0, 1, 60, 100000);    /* scored one by one */
    check_filtered("Flat", NULL, 0, 1, 60, 0);         /* growing k */
    check_filtered("Flat", NULL, 0, 1, 2000, 100000);  /* large filter: growing k */
    check_filtered("Flat", NULL, 0, 1, 5, 0);          /* fewer allowed than k */
    check_filtered("HNSW32", "efSearch", 64, 1, 60, 100000); /* scan: exact */
    check_filtered("HNSW32", "efSearch", 64, 0, 1000, 0);
    check_filtered("SQfp16", NULL, 0, 0, 60, 100000);
    check_filtered("IVF16,Flat", "nprobe", 16, 1, 60, 100000); /* IVF: growing k; all lists = exact */
    check_filtered("IVF16,Flat", "nprobe", 8, 0, 2000, 0);

    idx *ix;
    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    float s[K];
    int64_t id[K];
    int64_t unsorted[] = {g_ids[5], g_ids[2]}, dup[] = {g_ids[2], g_ids[2]}, none[] = {1, 2};
    CHECK_ERR(idx_search_filtered(ix, g_q, 1, K, unsorted, 2, s, id), PERR_INVALID);
    CHECK_ERR(idx_search_filtered(ix, g_q, 1, K, dup, 2, s, id), PERR_INVALID);
    CHECK_OK(idx_search_filtered(ix, g_q, 1, K, none, 2, s, id));
    CHECK_EQ_INT(id[0], -1);
    CHECK_OK(idx_search_filtered(ix, g_q, 1, K, NULL, 0, s, id));
    CHECK_EQ_INT(id[0], -1);
    idx_free(ix);
}

static void check_range(const char *factory, int exact) {
    idx_opts o = idx_opts_default();
    o.train_size = 2000;
    idx *ix;
    REQUIRE_OK(idx_create(factory, D, &o, &ix));
    if (!strncmp(factory, "IVF", 3)) CHECK_OK(idx_set_param(ix, "nprobe", 16));
    if (!strncmp(factory, "HNSW", 4)) CHECK_OK(idx_set_param(ix, "efSearch", 256));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    int64_t rm[] = {g_ids[1], g_ids[2]};
    CHECK_OK(idx_remove(ix, rm, 2, NULL));
    for (int qi = 0; qi < 5; qi++) {
        const float *q = g_q + qi * D;
        /* threshold: between the brute-force 40th and 41st scores */
        float ts[41];
        int64_t ti[41];
        unsigned char keep[N];
        for (int i = 0; i < N; i++) keep[i] = i != 1 && i != 2;
        tu_knn(g_x, g_ids, keep, N, D, q, 41, ts, ti);
        float thr = (ts[39] + ts[40]) / 2;
        idx_hits h;
        REQUIRE_OK(idx_range_search(ix, q, thr, 1000, &h));
        CHECK_EQ_INT(h.truncated, 0);
        for (size_t i = 0; i < h.n; i++) {
            CHECK(h.scores[i] > thr);
            CHECK(i == 0 || h.scores[i] <= h.scores[i - 1]);
            CHECK(row_of(h.ids[i]) >= 0 && keep[row_of(h.ids[i])]);
        }
        if (exact) {
            CHECK_EQ_INT(h.n, 40);
            for (size_t i = 0; i < h.n && i < 40; i++) CHECK_EQ_INT(h.ids[i], ti[i]);
        } else {
            CHECK(h.n >= 30 && h.n <= 40);
        }
        idx_hits_clear(&h);
        REQUIRE_OK(idx_range_search(ix, q, thr, 7, &h)); /* cap */
        CHECK_EQ_INT(h.n, 7);
        CHECK_EQ_INT(h.truncated, 1);
        if (exact) for (size_t i = 0; i < 7; i++) CHECK_EQ_INT(h.ids[i], ti[i]);
        idx_hits_clear(&h);
        REQUIRE_OK(idx_range_search(ix, q, 0.999f, 10, &h)); /* nothing that close */
        CHECK_EQ_INT(h.n, 0);
        idx_hits_clear(&h);
    }
    idx_free(ix);
}

static void test_range(void) {
    check_range("Flat", 1);
    check_range("IVF16,Flat", 1); /* nprobe = nlist */
    check_range("SQfp16", 0);
    check_range("HNSW32", 0);
    /* untrained: the exact buffer */
    idx_opts o = idx_opts_default();
    o.auto_train = 0;
    idx *ix;
    REQUIRE_OK(idx_create("IVF16,SQ8", D, &o, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    float ts[5];
    int64_t ti[5];
    tu_knn(g_x, g_ids, NULL, N, D, g_q, 5, ts, ti);
    idx_hits h;
    REQUIRE_OK(idx_range_search(ix, g_q, (ts[3] + ts[4]) / 2, 100, &h));
    CHECK_EQ_INT(h.n, 4);
    for (size_t i = 0; i < h.n; i++) CHECK_EQ_INT(h.ids[i], ti[i]);
    idx_hits_clear(&h);
    idx_free(ix);
}

static void test_errors(void) {
    idx *ix = (idx *)1;
    CHECK_ERR(idx_create("Blah", D, NULL, &ix), PERR_INVALID);
    CHECK(ix == NULL);
    CHECK(strstr(perr_msg(), "Blah") != NULL);
    /* (a factory FAISS rejects half-way, "IVF16,PQ7", is in test_idx_file.c's
     * FAISS-rejection build: FAISS leaks on that path) */
    CHECK_ERR(idx_create("IDMap,Flat", D, NULL, &ix), PERR_INVALID);
    CHECK_ERR(idx_create("", D, NULL, &ix), PERR_INVALID);
    CHECK_ERR(idx_create("Flat", 0, NULL, &ix), PERR_INVALID);
    CHECK_ERR(idx_create("Flat", IDX_DIM_MAX + 1, NULL, &ix), PERR_INVALID);

    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, 10));
    /* duplicate ids: nothing added */
    int64_t ids2[3] = {50, 51, g_ids[4]};
    CHECK_ERR(idx_add(ix, g_x, ids2, 3), PERR_EXISTS);
    CHECK_EQ_INT(idx_count(ix), 10);
    CHECK_EQ_INT(idx_contains(ix, 50), 0);
    int64_t ids3[2] = {60, 60};
    CHECK_ERR(idx_add(ix, g_x, ids3, 2), PERR_EXISTS);
    CHECK_EQ_INT(idx_count(ix), 10);
    int64_t neg = -5;
    CHECK_ERR(idx_add(ix, g_x, &neg, 1), PERR_INVALID);
    /* vectors that are not unit-norm or not finite */
    float v[D];
    memcpy(v, g_x, sizeof v);
    v[0] += 0.5f;
    int64_t one = 70;
    CHECK_ERR(idx_add(ix, v, &one, 1), PERR_INVALID);
    CHECK(strstr(perr_msg(), "normalized") != NULL);
    v[0] = NAN;
    CHECK_ERR(idx_add(ix, v, &one, 1), PERR_INVALID);
    float s[K];
    int64_t id[K];
    CHECK_ERR(idx_search(ix, v, 1, K, s, id), PERR_INVALID);
    CHECK_ERR(idx_search(ix, g_q, 1, 0, s, id), PERR_INVALID);
    CHECK_ERR(idx_search(ix, g_q, 1, IDX_K_MAX + 1, s, id), PERR_INVALID);
    CHECK_EQ_INT(idx_count(ix), 10);
    /* parameters */
    CHECK_ERR(idx_set_param(ix, "nprobe", 4), PERR_INVALID);
    CHECK_ERR(idx_set_param(ix, "noSuchThing", 4), PERR_INVALID);
    idx_free(ix);
    REQUIRE_OK(idx_create("HNSW32", D, NULL, &ix));
    CHECK_OK(idx_set_param(ix, "efSearch", 100));
    CHECK_ERR(idx_set_param(ix, "efSearch", 0), PERR_INVALID);
    CHECK_ERR(idx_set_param(ix, "nprobe", 3), PERR_INVALID);
    idx_free(ix);
    idx_free(NULL);

    /* normalize helper */
    float w[2 * 3] = {3, 0, 4, 0, 0, 0};
    CHECK_ERR(idx_normalize(w, 2, 3), PERR_INVALID);
    CHECK(fabsf(w[0] - 0.6f) < 1e-6f && fabsf(w[2] - 0.8f) < 1e-6f);
}

/* HNSW: a large share of tombstones still gives k live results. */
static void test_hnsw_tombstones(void) {
    idx *ix;
    REQUIRE_OK(idx_create("HNSW32", D, NULL, &ix));
    CHECK_OK(idx_set_param(ix, "efSearch", 64));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    int64_t *rm = malloc(N * sizeof *rm);
    unsigned char keep[N];
    int nrm = 0;
    for (int i = 0; i < N; i++) {
        keep[i] = i % 5 == 0;
        if (!keep[i]) rm[nrm++] = g_ids[i];
    }
    size_t removed;
    CHECK_OK(idx_remove(ix, rm, nrm, &removed));
    CHECK_EQ_INT(removed, nrm);
    idx_stats st;
    idx_get_stats(ix, &st);
    CHECK(fabs(st.tombstone_frac - 0.8) < 1e-9);
    float s[NQ * K], ts[NQ * K];
    int64_t id[NQ * K], ti[NQ * K];
    truth(keep, ts, ti, K);
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    int bad = 0;
    for (int i = 0; i < NQ * K; i++) bad += id[i] < 0 || !keep[row_of(id[i])];
    CHECK_EQ_INT(bad, 0);
    CHECK(tu_recall(id, ti, NQ, K) >= 0.9);
    /* everything removed: nothing returned */
    int64_t *rest = malloc(N * sizeof *rest);
    int nr = 0;
    for (int i = 0; i < N; i += 5) rest[nr++] = g_ids[i];
    CHECK_OK(idx_remove(ix, rest, nr, &removed));
    CHECK_EQ_INT(idx_count(ix), 0);
    CHECK_OK(idx_search(ix, g_q, 2, K, s, id));
    CHECK_EQ_INT(id[0], -1);
    free(rm); free(rest);
    idx_free(ix);
}

/* Readers search while a writer adds and removes: no crash, no torn result. */
typedef struct { idx *ix; int stop; int bad; int iters; } conc;

static void *reader(void *arg) {
    conc *c = arg;
    float s[4 * K];
    int64_t id[4 * K];
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        if (idx_search(c->ix, g_q, 4, K, s, id)) { c->bad++; break; }
        for (int i = 0; i < 4 * K; i++) if (id[i] >= 0 && row_of(id[i]) < 0) c->bad++;
        c->iters++;
    }
    return NULL;
}

static void test_concurrent(void) {
    idx_opts o = idx_opts_default();
    o.train_size = 1000;
    const char *types[] = {"HNSW16", "IVF8,Flat", "Flat"};
    for (int t = 0; t < 3; t++) {
        idx *ix;
        REQUIRE_OK(idx_create(types[t], D, &o, &ix));
        conc c[2] = {{.ix = ix}, {.ix = ix}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, reader, &c[i]);
        for (int b = 0; b < N; b += 250) {
            CHECK_OK(idx_add(ix, g_x + (size_t)b * D, g_ids + b, 250)); /* IVF trains on the way */
            if (b >= 500) CHECK_OK(idx_remove(ix, g_ids + b - 500, 100, NULL));
        }
        for (int i = 0; i < 2; i++) {
            __atomic_store_n(&c[i].stop, 1, __ATOMIC_RELEASE);
            pthread_join(th[i], NULL);
            CHECK_EQ_INT(c[i].bad, 0);
        }
        CHECK_EQ_INT(idx_count(ix), N - 100 * (N / 250 - 2));
        CHECK_EQ_INT(idx_needs_training(ix), 0);
        idx_free(ix);
    }
}

static void test_threads(void) {
    CHECK_EQ_INT(idx_get_threads(), 0);
    idx_set_threads(1);
    CHECK_EQ_INT(idx_get_threads(), 1);
    idx *ix;
    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    float s[NQ * K], ts[NQ * K];
    int64_t id[NQ * K], ti[NQ * K];
    truth(NULL, ts, ti, K);
    CHECK_OK(idx_search(ix, g_q, NQ, K, s, id));
    check_exact(s, id, ts, ti, NQ, K);
    idx_set_threads(0);
    CHECK_EQ_INT(idx_get_threads(), 0);
    idx_free(ix);
}

#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define RUN(fn) do { double t0_ = now(); T_RUN(fn); if (getenv("IDX_TEST_TIMES")) printf("  (%s: %.2f s)\n", #fn, now() - t0_); } while (0)

int main(void) {
    setup();
    RUN(test_flat_exact);
    RUN(test_types);
    RUN(test_untrained_buffer);
    RUN(test_filtered);
    RUN(test_range);
    RUN(test_errors);
    RUN(test_hnsw_tombstones);
    RUN(test_concurrent);
    RUN(test_threads);
    free(g_x);
    free(g_q);
    return t_done();
}
