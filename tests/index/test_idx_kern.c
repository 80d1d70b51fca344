/* idx_kern and the Flat scan built on it (idx_flat): every ISA variant
 * against the scalar reference and against FAISS's own fvec_inner_product
 * (reached through idxf_knn_faiss), and idxf_knn / idxf_range against
 * FAISS's knn_inner_product / range_search_inner_product.
 *
 * "Identical" means: every score bit for bit (memcmp of the floats), the
 * same ids in the same order, ties included (the data has duplicate rows,
 * so equal scores occur). The data mixes magnitudes over 6 orders so that
 * summing in any other order changes the last bits (checked: a plain
 * sequential sum disagrees on many rows, so these comparisons can fail).
 *
 * Registered three times: as is (best ISA), and with PERCEPT_MAX_ISA=avx2
 * and =scalar, which idxk_isa_active() must obey (the end-to-end checks
 * then run on that level). */
#define _GNU_SOURCE
#include "common/perr.h"
#include "index/idx_flat.h"
#include "index/idx_kern.h"
#include "tests/common/testlib.h"
#include "tests/index/idx_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* n x d floats with magnitudes from 1e-3 to 1e3 and random signs. */
static float *wild(size_t n, size_t d) {
    float *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)(tu_gauss() * pow(10.0, 6 * tu_uniform() - 3));
    return x;
}

/* FAISS's score of every row (k = ny: each row appears once). */
static void faiss_scores(const float *x, const float *y, size_t d, size_t ny, float *out) {
    float *D = malloc(ny * sizeof *D);
    int64_t *I = malloc(ny * sizeof *I);
    CHECK_OK(idxf_knn_faiss(x, 1, y, ny, (int)d, ny, NULL, D, I));
    for (size_t j = 0; j < ny; j++) {
        REQUIRE(I[j] >= 0 && (size_t)I[j] < ny);
        out[I[j]] = D[j];
    }
    free(D);
    free(I);
}

static const size_t g_dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 23, 24, 25, 31,
                                32, 33, 40, 48, 100, 511, 512, 513, 520, 768, 1000};

static void test_kernels_vs_faiss(void) {
    size_t naive_differs = 0, total = 0;
    for (size_t di = 0; di < sizeof g_dims / sizeof *g_dims; di++) {
        size_t d = g_dims[di], ny = 8 * 3 + 5 + di % 4; /* whole groups of 8 and a remainder */
        float *x = wild(1, d), *y = wild(ny, d);
        float *ref = malloc(ny * 4), *got = malloc(ny * 4), *fs = malloc(ny * 4);
        idxk_ip_ny_isa(IDXK_SCALAR, ref, x, y, d, ny);
        faiss_scores(x, y, d, ny, fs);
        for (size_t j = 0; j < ny; j++) {
            if (memcmp(&ref[j], &fs[j], 4)) {
                t_fail(__FILE__, __LINE__, "d %zu row %zu: scalar %.9g, FAISS %.9g", d, j, ref[j], fs[j]);
                break;
            }
            float naive = 0;
            for (size_t i = 0; i < d; i++) naive += x[i] * y[j * d + i];
            naive_differs += naive != fs[j];
            total++;
        }
        for (int isa = IDXK_AVX2; isa <= IDXK_AVX512; isa++) {
            if (!idxk_isa_supported((idxk_isa)isa)) {
                printf("  (%s not supported by this CPU: not run)\n", idxk_isa_name((idxk_isa)isa));
                continue;
            }
            idxk_ip_ny_isa((idxk_isa)isa, got, x, y, d, ny);
            if (memcmp(got, ref, ny * 4)) t_fail(__FILE__, __LINE__, "d %zu: %s differs from scalar",
                                                  d, idxk_isa_name((idxk_isa)isa));
            idxk_ip_ny_isa((idxk_isa)isa, got, x, y + 3 * d, d, 1); /* a lone row */
            CHECK(!memcmp(got, ref + 3, 4));
        }
        free(x); free(y); free(ref); free(got); free(fs);
    }
    printf("  a plain sequential sum differs from FAISS on %zu of %zu rows\n", naive_differs, total);
    CHECK(naive_differs * 4 > total); /* the data discriminates summation orders */
}

/* Rows ending exactly at a page followed by an inaccessible page: the tail
 * loads must stay inside the rows (a mapped file can end there). */
static void test_no_overread(void) {
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED);
    REQUIRE(mprotect(m + pg, pg, PROT_NONE) == 0);
    const size_t dims[] = {13, 27, 9, 1};
    for (size_t di = 0; di < 4; di++) {
        size_t d = dims[di], ny = 11;
        float *y = (float *)(m + pg) - ny * d, *x = wild(1, d), *src = wild(ny, d), ref[11], got[11];
        memcpy(y, src, ny * d * 4);
        idxk_ip_ny_isa(IDXK_SCALAR, ref, x, y, d, ny);
        for (int isa = IDXK_AVX2; isa <= IDXK_AVX512; isa++) {
            if (!idxk_isa_supported((idxk_isa)isa)) continue;
            idxk_ip_ny_isa((idxk_isa)isa, got, x, y, d, ny);
            CHECK(!memcmp(got, ref, sizeof ref));
        }
        free(x); free(src);
    }
    munmap(m, 2 * pg);
}

/* PERCEPT_MAX_ISA caps the active level. */
static void test_isa_cap(void) {
    const char *e = getenv("PERCEPT_MAX_ISA");
    idxk_isa a = idxk_isa_active();
    printf("  active ISA %s (PERCEPT_MAX_ISA=%s)\n", idxk_isa_name(a), e ? e : "");
    CHECK(idxk_isa_supported(a));
    if (e && !strcmp(e, "scalar")) CHECK_EQ_INT(a, IDXK_SCALAR);
    else if (e && !strcmp(e, "avx2")) CHECK_EQ_INT(a, idxk_isa_supported(IDXK_AVX2) ? IDXK_AVX2 : IDXK_SCALAR);
    else for (int i = a + 1; i <= IDXK_AVX512; i++) CHECK(!idxk_isa_supported((idxk_isa)i));
}

#define NB 3001

/* idxf_knn / idxf_range against FAISS on the same rows: batch sizes on
 * both sides of FAISS's BLAS switch (20), heap and reservoir k, with and
 * without tombstones, duplicate rows for ties. */
static void test_scan_vs_faiss(void) {
    const int dims[] = {64, 61};
    for (int di = 0; di < 2; di++) {
        int d = dims[di];
        float *x = tu_vectors(NB, d), *q = tu_vectors(25, d);
        for (int r = 0; r < NB; r += 7) memcpy(x + (size_t)(r + 3 < NB ? r + 3 : r) * d, x + (size_t)r * d, d * 4);
        memcpy(q + 2 * d, x + 10 * d, d * 4);      /* query = a row: score ~1, its duplicate ties */
        uint8_t *dead = calloc((NB + 7) / 8, 1);
        for (int r = 0; r < NB; r++) if (tu_uniform() < 0.1) dead[r >> 3] |= (uint8_t)(1u << (r & 7));
        dead[10 >> 3] |= 1u << (10 & 7);            /* the row query 2 equals: its duplicate remains */
        const size_t nqs[] = {1, 3, 19, 25}, ks[] = {1, 10, 150};
        for (int withdead = 0; withdead < 2; withdead++)
            for (size_t a = 0; a < 4; a++)
                for (size_t b = 0; b < 3; b++) {
                    size_t nq = nqs[a], k = ks[b];
                    const uint8_t *dd = withdead ? dead : NULL;
                    float *D1 = malloc(nq * k * 4), *D2 = malloc(nq * k * 4);
                    int64_t *I1 = malloc(nq * k * 8), *I2 = malloc(nq * k * 8);
                    CHECK_OK(idxf_knn(q, nq, x, NB, d, k, dd, D1, I1));
                    CHECK_OK(idxf_knn_faiss(q, nq, x, NB, d, k, dd, D2, I2));
                    if (memcmp(I1, I2, nq * k * 8) || memcmp(D1, D2, nq * k * 4))
                        t_fail(__FILE__, __LINE__, "d %d nq %zu k %zu dead %d: differs from FAISS", d, nq, k,
                               withdead);
                    for (size_t i = 0; i < nq * k; i++)
                        if (withdead && I1[i] >= 0) CHECK(!(dead[I1[i] >> 3] >> (I1[i] & 7) & 1));
                    free(D1); free(D2); free(I1); free(I2);
                }
        for (int withdead = 0; withdead < 2; withdead++)
            for (int qi = 0; qi < 4; qi++) {
                size_t n1, n2;
                float *D1, *D2;
                int64_t *I1, *I2;
                float radius = qi == 2 ? 0.5f : 0.1f;
                CHECK_OK(idxf_range(q + qi * d, x, NB, d, radius, withdead ? dead : NULL, &n1, &D1, &I1));
                CHECK_OK(idxf_range_faiss(q + qi * d, x, NB, d, radius, withdead ? dead : NULL, &n2, &D2, &I2));
                CHECK_EQ_INT(n1, n2);
                CHECK(n1 > 0);
                if (n1 == n2 && (memcmp(I1, I2, n1 * 8) || memcmp(D1, D2, n1 * 4)))
                    t_fail(__FILE__, __LINE__, "range d %d q %d: differs from FAISS", d, qi);
                free(D1); free(D2); free(I1); free(I2);
            }
        free(x); free(q); free(dead);
    }
}

int main(void) {
    tu_seed(5);
    T_RUN(test_kernels_vs_faiss);
    T_RUN(test_no_overread);
    T_RUN(test_isa_cap);
    T_RUN(test_scan_vs_faiss);
    return t_done();
}
