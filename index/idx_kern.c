/* idx_kern.c: inner-product kernels bit-identical to FAISS 1.7.3's AVX2
 * fvec_inner_product (see idx_kern.h).
 *
 * DESIGN. FAISS computes one row at a time with a single FMA accumulator:
 * each FMA waits for the previous one (4 cycles), which caps a one-thread
 * scan at about 8 bytes per cycle, below the memory bandwidth. The sum's
 * order is what fixes the result, so we keep exactly that chain per row
 * and run 8 rows side by side: 8 independent chains, same floats.
 *   FAISS, per row (d = 8m + r):  acc8 = 0; acc8 = fma(x_c, y_c, acc8) for
 *   each 8-float chunk c; s4 = hi(acc8) + lo(acc8); s4 = fma(x4, y4, s4) if
 *   r >= 4; s4 = fma(x_t, y_t, s4) over the last r % 4 floats, zero-padded;
 *   result = (s4[0] + s4[1]) + (s4[2] + s4[3]) (two hadds).
 *   (Read from the disassembly of our build: the compiler contracts FAISS's
 *   add(mul) into one FMA.)
 * AVX2: 8 rows, one ymm chain each. AVX-512: the same chains two rows per
 * zmm (lanes 0-7 row a, 8-15 row b): a 64-byte load per row holds two
 * consecutive chunks, regrouped by vshuff32x4 into [a_c | b_c] and
 * [a_c+1 | b_c+1], so each FMA still advances every lane's chain by
 * exactly one chunk. Scalar: the 8 lanes emulated with fmaf. The 4-float
 * tail and the horizontal sum are shared code (128-bit, AVX). Masked loads
 * never touch memory past the row (the last row may end the mapping). */
#define _GNU_SOURCE
#include "index/idx_kern.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 8 /* rows scored side by side */

/* ------------------------------------------------------------- scalar */

static float ip_scalar(const float *x, const float *y, size_t d) {
    float a[8] = {0}, s[4];
    size_t i = 0;
    for (; i + 8 <= d; i += 8)
        for (int l = 0; l < 8; l++) a[l] = fmaf(x[i + l], y[i + l], a[l]);
    for (int l = 0; l < 4; l++) s[l] = a[l + 4] + a[l];
    if (d - i >= 4) {
        for (int l = 0; l < 4; l++) s[l] = fmaf(x[i + l], y[i + l], s[l]);
        i += 4;
    }
    if (d > i) /* zero-padded lanes: fmaf(0, 0, s) as FAISS does */
        for (size_t l = 0; l < 4; l++) s[l] = fmaf(i + l < d ? x[i + l] : 0.f, i + l < d ? y[i + l] : 0.f, s[l]);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void ip_ny_scalar(float *ip, const float *x, const float *y, size_t d, size_t ny) {
    for (size_t j = 0; j < ny; j++) ip[j] = ip_scalar(x, y + j * d, d);
}

#if defined(__x86_64__) || defined(__i386__)
/* -------------------------------------------------------------- AVX2 */

/* The part after the 8-float chunks: acc8 folded to 4 lanes, the 4-float
 * chunk, the zero-padded tail, the two hadds. x, y point past the chunks;
 * rem = d % 8. */
__attribute__((target("avx2,fma")))
static inline float finish(__m256 acc, const float *x, const float *y, size_t rem) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    if (rem >= 4) {
        s = _mm_fmadd_ps(_mm_loadu_ps(x), _mm_loadu_ps(y), s);
        x += 4; y += 4; rem -= 4;
    }
    if (rem) {
        __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32((int)rem), _mm_setr_epi32(0, 1, 2, 3));
        s = _mm_fmadd_ps(_mm_maskload_ps(x, m), _mm_maskload_ps(y, m), s);
    }
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static inline float ip_avx2_1(const float *x, const float *y, size_t d) {
    __m256 a = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= d; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a);
    return finish(a, x + i, y + i, d - i);
}

/* Row r of the group of 8 scored at step t of ip_ny_*: segment r of the
 * ny rows (ny / 8 rows each), row t in it. Eight long sequential streams
 * keep the hardware prefetchers ahead; 8 adjacent rows (bursts of 2 KiB
 * each at d = 512) measured slower than FAISS's one row at a time. */
#define SEG_ROW(r) (y + ((size_t)(r) * L + t) * d)

__attribute__((target("avx2,fma")))
static void ip_ny_avx2(float *ip, const float *x, const float *y, size_t d, size_t ny) {
    size_t L = ny / ROWS;
    for (size_t t = 0; t < L; t++) {
        const float *yr[ROWS];
        for (int r = 0; r < ROWS; r++) yr[r] = SEG_ROW(r);
        __m256 a[ROWS];
        for (int r = 0; r < ROWS; r++) a[r] = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 8 <= d; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
#pragma GCC unroll 8
            for (int r = 0; r < ROWS; r++) a[r] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(yr[r] + i), a[r]);
        }
        for (int r = 0; r < ROWS; r++) ip[r * L + t] = finish(a[r], x + i, yr[r] + i, d - i);
    }
    for (size_t j = ROWS * L; j < ny; j++) ip[j] = ip_avx2_1(x, y + j * d, d);
}

/* ----------------------------------------------------------- AVX-512 */

__attribute__((target("avx512f,avx2,fma")))
static void ip_ny_avx512(float *ip, const float *x, const float *y, size_t d, size_t ny) {
    enum { PAIRS = ROWS / 2 };
    size_t L = ny / ROWS;
    for (size_t t = 0; t < L; t++) {
        const float *yr[ROWS];
        for (int r = 0; r < ROWS; r++) yr[r] = SEG_ROW(r);
        __m512 a[PAIRS]; /* pair p: row 2p in lanes 0-7, row 2p+1 in 8-15 */
        for (int p = 0; p < PAIRS; p++) a[p] = _mm512_setzero_ps();
        size_t i = 0;
        for (; i + 16 <= d; i += 16) {
            __m512 xv = _mm512_loadu_ps(x + i);
            __m512 x0 = _mm512_shuffle_f32x4(xv, xv, 0x44), x1 = _mm512_shuffle_f32x4(xv, xv, 0xEE);
#pragma GCC unroll 4
            for (int p = 0; p < PAIRS; p++) {
                __m512 ya = _mm512_loadu_ps(yr[2 * p] + i), yb = _mm512_loadu_ps(yr[2 * p + 1] + i);
                a[p] = _mm512_fmadd_ps(x0, _mm512_shuffle_f32x4(ya, yb, 0x44), a[p]);
                a[p] = _mm512_fmadd_ps(x1, _mm512_shuffle_f32x4(ya, yb, 0xEE), a[p]);
            }
        }
        if (i + 8 <= d) { /* one chunk left */
            __m512 x0 = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(x + i))));
            for (int p = 0; p < PAIRS; p++) {
                __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(yr[2 * p] + i)));
                __m256d hi = _mm256_castps_pd(_mm256_loadu_ps(yr[2 * p + 1] + i));
                a[p] = _mm512_fmadd_ps(x0, _mm512_castpd_ps(_mm512_insertf64x4(lo, hi, 1)), a[p]);
            }
            i += 8;
        }
        for (int p = 0; p < PAIRS; p++) {
            __m256 ra = _mm512_castps512_ps256(a[p]);
            __m256 rb = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[p]), 1));
            ip[2 * p * L + t] = finish(ra, x + i, yr[2 * p] + i, d - i);
            ip[(2 * p + 1) * L + t] = finish(rb, x + i, yr[2 * p + 1] + i, d - i);
        }
    }
    for (size_t j = ROWS * L; j < ny; j++) ip[j] = ip_avx2_1(x, y + j * d, d);
}
#endif

/* ----------------------------------------------------------- dispatch */

static idxk_isa g_isa;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

int idxk_isa_supported(idxk_isa isa) {
#if defined(__x86_64__) || defined(__i386__)
    switch (isa) {
    case IDXK_SCALAR: return 1;
    case IDXK_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case IDXK_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    }
    return 0;
#else
    return isa == IDXK_SCALAR;
#endif
}

const char *idxk_isa_name(idxk_isa isa) {
    return isa == IDXK_AVX512 ? "avx512" : isa == IDXK_AVX2 ? "avx2" : "scalar";
}

static void pick(void) {
    idxk_isa cap = IDXK_AVX512;
    const char *e = getenv("PERCEPT_MAX_ISA");
    if (e && *e) {
        if (!strcmp(e, "scalar")) cap = IDXK_SCALAR;
        else if (!strcmp(e, "avx2")) cap = IDXK_AVX2;
        else if (strcmp(e, "avx512"))
            fprintf(stderr, "percept: PERCEPT_MAX_ISA=%s not one of avx512, avx2, scalar: ignored\n", e);
    }
    g_isa = IDXK_SCALAR;
    for (int i = cap; i > IDXK_SCALAR; i--)
        if (idxk_isa_supported((idxk_isa)i)) { g_isa = (idxk_isa)i; break; }
}

idxk_isa idxk_isa_active(void) {
    pthread_once(&g_once, pick);
    return g_isa;
}

void idxk_ip_ny_isa(idxk_isa isa, float *ip, const float *x, const float *y, size_t d, size_t ny) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa == IDXK_AVX512) { ip_ny_avx512(ip, x, y, d, ny); return; }
    if (isa == IDXK_AVX2) { ip_ny_avx2(ip, x, y, d, ny); return; }
#endif
    ip_ny_scalar(ip, x, y, d, ny);
}

void idxk_ip_ny(float *ip, const float *x, const float *y, size_t d, size_t ny) {
    idxk_ip_ny_isa(idxk_isa_active(), ip, x, y, d, ny);
}
