/* Flat index files (format 2): the rows are used in place from the mapped
 * file (base) with an in-memory delta for later adds and a tombstone bitmap
 * for later removes. Checks that a loaded Flat index answers exactly like
 * the one that was saved (batch 1 and BLAS batches), that add/remove/
 * contains/count/filtered/range search stay exact across base + delta,
 * that saving again keeps the answers, that damage anywhere in the raw
 * payload is PERR_FORMAT naming the file, and that a version-1 file is
 * PERR_VERSION. */
#include "common/perr.h"
#include "index/idx.h"
#include "tests/common/testlib.h"
#include "tests/index/idx_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zlib.h>

#define D 48
#define N 3000
#define NA 400   /* added after load */
#define NQB 25   /* a batch: FAISS uses BLAS from 20 queries */
#define K 10

static float *g_x, *g_xa, *g_q;
static int64_t g_ids[N], g_ida[NA];
static char *g_dir;

static char *path_in(const char *name) { return t_path("%s/%s", g_dir, name); }

/* Every answer an idx gives for the test queries. */
typedef struct answers {
    float s1[NQB * K], sb[NQB * K], sf[NQB * K];
    int64_t i1[NQB * K], ib[NQB * K], if_[NQB * K];
    idx_hits r[3];
} answers;

static int64_t g_filter[N + NA];
static size_t g_nfilter;

static void answers_get(const idx *ix, answers *a) {
    for (int i = 0; i < NQB; i++) /* batch 1, one by one */
        CHECK_OK(idx_search(ix, g_q + i * D, 1, K, a->s1 + i * K, a->i1 + i * K));
    CHECK_OK(idx_search(ix, g_q, NQB, K, a->sb, a->ib));
    CHECK_OK(idx_search_filtered(ix, g_q, NQB, K, g_filter, g_nfilter, a->sf, a->if_));
    for (int i = 0; i < 3; i++) CHECK_OK(idx_range_search(ix, g_q + i * D, 0.25f, 1000, &a->r[i]));
}

static void answers_clear(answers *a) { for (int i = 0; i < 3; i++) idx_hits_clear(&a->r[i]); }

/* Bit-identical answers; for batches (BLAS from 20 queries) only when both
 * sides ran the same kernel over the same row order (exact_batch): a base
 * with many tombstones is scanned one vector at a time (IDSelector), which
 * rounds differently from BLAS in the last bit, exactly as FAISS's own
 * IndexFlat differs between a batch of 19 and one of 20. */
static void answers_same(const answers *a, const answers *b, int exact_batch, const char *what) {
    if (memcmp(a->i1, b->i1, sizeof a->i1) || memcmp(a->s1, b->s1, sizeof a->s1))
        t_fail(__FILE__, __LINE__, "%s: batch-1 answers differ", what);
    if (memcmp(a->ib, b->ib, sizeof a->ib))
        t_fail(__FILE__, __LINE__, "%s: batch ids differ", what);
    for (int i = 0; i < NQB * K; i++)
        if (exact_batch ? a->sb[i] != b->sb[i] : fabsf(a->sb[i] - b->sb[i]) > 1e-6f) {
            t_fail(__FILE__, __LINE__, "%s: batch score %d: %.9g vs %.9g", what, i, a->sb[i], b->sb[i]);
            break;
        }
    if (memcmp(a->if_, b->if_, sizeof a->if_) || memcmp(a->sf, b->sf, sizeof a->sf))
        t_fail(__FILE__, __LINE__, "%s: filtered answers differ", what);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(a->r[i].n, b->r[i].n);
        if (a->r[i].n != b->r[i].n) continue;
        CHECK(memcmp(a->r[i].ids, b->r[i].ids, a->r[i].n * 8) == 0);
        CHECK(memcmp(a->r[i].scores, b->r[i].scores, a->r[i].n * 4) == 0);
    }
}

/* The live set: base rows (keep_b) then added rows (keep_a), checked
 * against brute force: ids exact, scores to float rounding. */
static float g_all[(N + NA) * D];
static int64_t g_allid[N + NA];
static unsigned char g_keep[N + NA];

static void answers_truth(const answers *a, const char *what) {
    float ts[K];
    int64_t ti[K];
    unsigned char fkeep[N + NA];
    for (int j = 0; j < N + NA; j++) {
        fkeep[j] = 0;
        if (!g_keep[j]) continue;
        for (size_t f = 0; f < g_nfilter; f++) if (g_filter[f] == g_allid[j]) fkeep[j] = 1;
    }
    for (int i = 0; i < NQB; i++) {
        tu_knn(g_all, g_allid, g_keep, N + NA, D, g_q + i * D, K, ts, ti);
        for (int j = 0; j < K; j++) {
            if (a->i1[i * K + j] != ti[j] || a->ib[i * K + j] != ti[j] ||
                fabsf(a->s1[i * K + j] - ts[j]) > 1e-5f || fabsf(a->sb[i * K + j] - ts[j]) > 1e-5f) {
                t_fail(__FILE__, __LINE__, "%s: query %d rank %d: got %lld/%lld, want %lld", what, i, j,
                       (long long)a->i1[i * K + j], (long long)a->ib[i * K + j], (long long)ti[j]);
                return;
            }
        }
        tu_knn(g_all, g_allid, fkeep, N + NA, D, g_q + i * D, K, ts, ti);
        for (int j = 0; j < K; j++)
            if (a->if_[i * K + j] != ti[j] || (ti[j] >= 0 && fabsf(a->sf[i * K + j] - ts[j]) > 1e-5f)) {
                t_fail(__FILE__, __LINE__, "%s: filtered query %d rank %d: got %lld, want %lld", what, i, j,
                       (long long)a->if_[i * K + j], (long long)ti[j]);
                return;
            }
    }
    for (int i = 0; i < 3; i++) {
        size_t want = 0;
        for (int j = 0; j < N + NA; j++)
            if (g_keep[j] && tu_dot(g_q + i * D, g_all + j * D, D) > 0.25f + 1e-5f) want++;
        CHECK(a->r[i].n >= want && a->r[i].n <= want + 2); /* boundary rounding */
        CHECK(a->r[i].n > 0);
        for (size_t h = 0; h < a->r[i].n; h++) {
            CHECK(a->r[i].scores[h] > 0.25f);
            if (h) CHECK(a->r[i].scores[h] <= a->r[i].scores[h - 1]);
            int found = 0;
            for (int j = 0; j < N + NA && !found; j++) found = g_keep[j] && g_allid[j] == a->r[i].ids[h];
            CHECK(found);
        }
    }
}

static void live_check(const idx *ix) {
    size_t n = 0;
    for (int j = 0; j < N + NA; j++) {
        n += g_keep[j];
        if (j % 7 == 0 || j >= N - 50) CHECK_EQ_INT(idx_contains(ix, g_allid[j]), g_keep[j]);
    }
    CHECK_EQ_INT(idx_count(ix), n);
    idx_stats st;
    idx_get_stats(ix, &st);
    CHECK_EQ_INT(st.count, n);
}

static idx *reload(const idx *ix, const char *name, uint64_t seq) {
    char *p = path_in(name);
    idx *back = NULL;
    uint64_t s2 = 0;
    if (idx_save(ix, p, seq) || idx_load(p, NULL, &back, &s2)) {
        t_fail(__FILE__, __LINE__, "save/load %s: %s", p, perr_msg());
        free(p);
        return NULL;
    }
    CHECK(s2 == seq);
    free(p);
    return back;
}

static void test_flat_model(void) {
    memset(g_keep, 0, sizeof g_keep);
    idx *ix;
    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    for (int j = 0; j < N; j++) g_keep[j] = 1;
    /* filter: every 5th base id, every 3rd added id, some unknown ids */
    g_nfilter = 0;
    for (int j = 0; j < N + NA; j++)
        if ((j < N && j % 5 == 0) || (j >= N && j % 3 == 0)) g_filter[g_nfilter++] = g_allid[j];
    /* the ids are increasing: g_ids < g_ida */

    answers a0, a1;
    answers_get(ix, &a0);
    answers_truth(&a0, "in memory");
    /* save -> load: the same answers, bit for bit */
    idx *b1 = reload(ix, "m1.idx", 11);
    REQUIRE(b1);
    answers_get(b1, &a1);
    answers_same(&a0, &a1, 1, "after load");
    live_check(b1);
    answers_clear(&a0); answers_clear(&a1);
    idx_free(ix);

    /* after load: add (delta), remove base rows and delta rows */
    int64_t dup = g_ids[5];
    CHECK_ERR(idx_add(b1, g_xa, &dup, 1), PERR_EXISTS);
    REQUIRE_OK(idx_add(b1, g_xa, g_ida, NA));
    for (int j = N; j < N + NA; j++) g_keep[j] = 1;
    CHECK_ERR(idx_add(b1, g_xa, g_ida, 1), PERR_EXISTS);
    int64_t rm[300];
    size_t nrm = 0;
    for (int j = 0; j < N + NA && nrm < 290; j += 17) { rm[nrm++] = g_allid[j]; g_keep[j] = 0; }
    rm[nrm++] = g_allid[0];         /* duplicate in the request */
    rm[nrm++] = 77777777;           /* unknown */
    size_t removed = 0;
    CHECK_OK(idx_remove(b1, rm, nrm, &removed));
    CHECK_EQ_INT(removed, nrm - 2);
    CHECK_OK(idx_remove(b1, rm, nrm, &removed)); /* again: nothing left to remove */
    CHECK_EQ_INT(removed, 0);
    /* the best hit of query 0 goes away */
    answers a2, a3;
    answers_get(b1, &a2);
    answers_truth(&a2, "base + delta");
    live_check(b1);
    int64_t top = a2.i1[0];
    CHECK_OK(idx_remove(b1, &top, 1, &removed));
    CHECK_EQ_INT(removed, 1);
    for (int j = 0; j < N + NA; j++) if (g_allid[j] == top) g_keep[j] = 0;
    answers_clear(&a2);
    answers_get(b1, &a2);
    answers_truth(&a2, "top removed");
    CHECK(a2.i1[0] != top);
    /* many tombstones: the batch search goes through the IDSelector */
    for (int j = 1; j < N; j += 2) { int64_t id = g_allid[j]; idx_remove(b1, &id, 1, NULL); g_keep[j] = 0; }
    answers_clear(&a2);
    answers_get(b1, &a2);
    answers_truth(&a2, "half removed");
    live_check(b1);

    /* a removed id can come back (in the delta) */
    int64_t back_id = g_allid[1];
    REQUIRE_OK(idx_add(b1, g_x + 1 * D, &back_id, 1));
    g_keep[1] = 1;
    answers_clear(&a2);
    answers_get(b1, &a2);
    answers_truth(&a2, "re-added");
    live_check(b1);

    /* filtered search through the growing path too */
    idx_opts o = idx_opts_default();
    o.filter_scan_max = 1;
    char *p = path_in("m2.idx");
    REQUIRE_OK(idx_save(b1, p, 12));
    idx *b2 = NULL;
    REQUIRE_OK(idx_load(p, NULL, &b2, NULL));
    answers_get(b2, &a3);
    answers_same(&a2, &a3, 0, "saved again");
    live_check(b2);
    answers_clear(&a3);
    idx *bg = NULL;
    REQUIRE_OK(idx_load(p, &o, &bg, NULL));
    answers_get(bg, &a3);
    answers_truth(&a3, "saved again, growing filter");
    answers_clear(&a3);
    idx_free(bg);
    /* the first idx keeps working on its (replaced) mapping */
    answers_get(b1, &a3);
    answers_same(&a2, &a3, 1, "old mapping after save");
    answers_clear(&a3);
    /* and a third generation from the reloaded one */
    idx *b3 = reload(b2, "m3.idx", 13);
    REQUIRE(b3);
    answers_get(b3, &a3);
    answers_same(&a2, &a3, 0, "third generation");
    answers_clear(&a3);
    answers_clear(&a2);
    idx_free(b3);
    idx_free(b2);
    idx_free(b1);
    free(p);
}

/* Empty and all-removed Flat indexes save and load. */
static void test_flat_empty(void) {
    idx *ix;
    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    idx *b = reload(ix, "e1.idx", 1);
    REQUIRE(b);
    CHECK_EQ_INT(idx_count(b), 0);
    float s[K];
    int64_t id[K];
    CHECK_OK(idx_search(b, g_q, 1, K, s, id));
    CHECK(id[0] == -1);
    REQUIRE_OK(idx_add(b, g_x, g_ids, 10));
    idx_free(ix);
    ix = reload(b, "e2.idx", 2);
    REQUIRE(ix);
    CHECK_OK(idx_remove(ix, g_ids, 10, NULL));
    CHECK_EQ_INT(idx_count(ix), 0);
    CHECK_OK(idx_search(ix, g_q, 1, K, s, id));
    CHECK(id[0] == -1);
    idx_hits h;
    CHECK_OK(idx_range_search(ix, g_q, -1.0f, 10, &h));
    CHECK_EQ_INT(h.n, 0);
    idx_hits_clear(&h);
    idx_free(b);
    b = reload(ix, "e3.idx", 3);
    REQUIRE(b);
    CHECK_EQ_INT(idx_count(b), 0);
    idx_free(b);
    idx_free(ix);
}

static void hash_fix(unsigned char *b, size_t len) {
    uint64_t h = XXH3_64bits_withSeed(b, 56, XXH3_64bits(b + 64, len - 64));
    for (int i = 0; i < 8; i++) b[56 + i] = (unsigned char)(h >> (8 * i));
}

static void expect_fails(const char *p, int code, const char *what) {
    idx *ix = (idx *)1;
    int rc = idx_load(p, NULL, &ix, NULL);
    if (rc != code) t_fail(__FILE__, __LINE__, "%s: load -> %s, expected %s (%s)", what,
                           perr_name(rc), perr_name(code), perr_msg());
    CHECK(ix == NULL);
    if (!strstr(perr_msg(), p)) t_fail(__FILE__, __LINE__, "%s: message does not name the file: %s", what, perr_msg());
}

static void test_flat_damage(void) {
    idx *ix;
    REQUIRE_OK(idx_create("Flat", D, NULL, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, N));
    char *p = path_in("d.idx"), *bad = path_in("bad.idx");
    REQUIRE_OK(idx_save(ix, p, 4));
    idx_free(ix);
    size_t len;
    unsigned char *b = t_read_file(p, &len);
    REQUIRE(b);
    size_t ids_at = 4096, x_at = 4096 + ((N * 8 + 4095) / 4096) * 4096;
    CHECK_EQ_INT(len, x_at + (size_t)N * D * 4); /* the documented layout */
    CHECK(memcmp(b + ids_at, g_ids, N * 8) == 0);
    CHECK(memcmp(b + x_at, g_x, (size_t)N * D * 4) == 0);
    unsigned char *c = malloc(len + 1);
    /* a flipped bit anywhere: factory, padding, ids, vectors, last byte */
    size_t offs[] = {64, 70, 2000, ids_at, ids_at + 8 * 1234 + 3, ids_at + N * 8 + 5, x_at, x_at + len / 3,
                     x_at + (len - x_at) / 2 + 1, len - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        memcpy(c, b, len);
        c[offs[i]] ^= 0x04;
        REQUIRE(t_write_file(bad, c, len) == 0);
        expect_fails(bad, PERR_FORMAT, "flipped bit");
        CHECK(strstr(perr_msg(), "checksum") != NULL);
    }
    /* truncated at a page boundary, inside the ids, inside the vectors */
    size_t cuts[] = {4096, ids_at + 100, x_at, len - 4096, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        REQUIRE(t_write_file(bad, b, cuts[i]) == 0);
        expect_fails(bad, PERR_FORMAT, "truncated");
    }
    memcpy(c, b, len);
    c[len] = 0;
    REQUIRE(t_write_file(bad, c, len + 1) == 0);
    expect_fails(bad, PERR_FORMAT, "appended byte");
    /* consistent checksum over invalid content: duplicate and negative ids */
    memcpy(c, b, len);
    memcpy(c + ids_at + 8, c + ids_at, 8);
    hash_fix(c, len);
    REQUIRE(t_write_file(bad, c, len) == 0);
    expect_fails(bad, PERR_FORMAT, "duplicate id");
    CHECK(strstr(perr_msg(), "duplicate id") != NULL);
    memcpy(c, b, len);
    c[ids_at + 8 * 7 + 7] = 0x80;
    hash_fix(c, len);
    REQUIRE(t_write_file(bad, c, len) == 0);
    expect_fails(bad, PERR_FORMAT, "negative id");
    /* a FAISS-layout flag on a Flat file, and the raw flag on another type */
    memcpy(c, b, len);
    c[24] &= (unsigned char)~2u;
    hash_fix(c, len);
    REQUIRE(t_write_file(bad, c, len) == 0);
    expect_fails(bad, PERR_FORMAT, "layout flag");
    /* the good file still loads and answers */
    idx *ok = NULL;
    CHECK_OK(idx_load(p, NULL, &ok, NULL));
    if (ok) CHECK_EQ_INT(idx_count(ok), N);
    idx_free(ok);
    free(b); free(c); free(p); free(bad);
}

/* A file written by format version 1 (crc32 checks, FAISS payload) is
 * refused with PERR_VERSION: the engine rebuilds it from storage. */
static void test_old_version(void) {
    idx *ix;
    REQUIRE_OK(idx_create("HNSW16", D, NULL, &ix));
    REQUIRE_OK(idx_add(ix, g_x, g_ids, 500));
    char *p = path_in("v1.idx");
    REQUIRE_OK(idx_save(ix, p, 4));
    idx_free(ix);
    size_t len;
    unsigned char *b = t_read_file(p, &len);
    REQUIRE(b);
    /* rewrite the header as version 1 did: version 1, crc32 of the payload
     * at 56, crc32 of bytes 0..59 at 60 */
    b[8] = 1;
    uint32_t pc = (uint32_t)crc32(0, b + 64, (uInt)(len - 64));
    for (int i = 0; i < 4; i++) b[56 + i] = (unsigned char)(pc >> (8 * i));
    uint32_t hc = (uint32_t)crc32(0, b, 60);
    for (int i = 0; i < 4; i++) b[60 + i] = (unsigned char)(hc >> (8 * i));
    REQUIRE(t_write_file(p, b, len) == 0);
    expect_fails(p, PERR_VERSION, "version 1");
    CHECK(strstr(perr_msg(), "version 1") != NULL);
    free(b);
    free(p);
}

int main(void) {
    tu_seed(11);
    g_x = tu_vectors(N, D);
    g_xa = tu_vectors(NA, D);
    g_q = tu_vectors(NQB, D);
    /* make query 0..2 close to some rows so range searches have hits */
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < D; j++) g_q[i * D + j] = g_q[i * D + j] * 0.3f + g_x[(100 * i + 8) * D + j];
        idx_normalize(g_q + i * D, 1, D);
    }
    for (int i = 0; i < N; i++) g_ids[i] = 2 * (int64_t)i + 5;
    for (int i = 0; i < NA; i++) g_ida[i] = 100000 + 3 * (int64_t)i;
    memcpy(g_all, g_x, sizeof(float) * N * D);
    memcpy(g_all + N * D, g_xa, sizeof(float) * NA * D);
    memcpy(g_allid, g_ids, sizeof g_ids);
    memcpy(g_allid + N, g_ida, sizeof g_ida);
    g_dir = t_tmpdir("idx_flat");
    T_RUN(test_flat_model);
    T_RUN(test_flat_empty);
    T_RUN(test_flat_damage);
    T_RUN(test_old_version);
    t_rmtree(g_dir);
    free(g_dir);
    free(g_x); free(g_xa); free(g_q);
    return t_done();
}
