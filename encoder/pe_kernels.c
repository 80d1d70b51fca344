/* pe_kernels: the entry points of the encoder's kernels, their scalar
 * references, and the run-time choice between instruction sets.
 *
 * DESIGN: every entry point picks its version on each call from
 * pe_cpu()->isa (AVX-512 in pe_kern_avx512.c, AVX2 in pe_kern_avx2.c, the
 * C code here otherwise); those files are compiled for their instruction
 * set through target pragmas, never build flags, so one binary runs on any
 * x86-64. The references (`*_ref`) are always compiled and are what the
 * scalar level runs where they are fast enough. No allocation; OpenBLAS is
 * called through cblas only.
 */
#include "encoder/pe_kernels.h"

#include "encoder/pe_cpu.h"
#include "encoder/pe_kern_isa.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#ifdef PE_KERN_X86
#include <immintrin.h>
#endif

static inline pe_isa isa(void) { return pe_cpu_level(); }

/* ---------------------------------------------------------------- GEMM */

void pe_gemm_nt_ref(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                    float beta, float *C, int ldc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[(size_t)m * lda + k] * W[(size_t)n * ldw + k];
            float *c = &C[(size_t)m * ldc + n];
            *c = (float)s + (beta != 0 ? beta * *c : 0.0f);
        }
}

#ifdef PE_KERN_X86
/* The small-M kernel is AVX2 code (target pragma); small_linear() below
 * falls back to plain C below that level. */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* MR rows of A (MR <= 4) x NR rows of W (NR <= 3), K in steps of 8 with a
 * scalar tail. All accumulators live in registers (12 of 16 ymm for 4x3).
 * While the first row block of A runs, the next NR rows of W are
 * prefetched: W is streamed from memory exactly once, and without this
 * the kernel waits on DRAM (measured 40 -> 91 GFLOP/s for M=12, K=512). */
#define PE_SMALL_KERNEL(MR, NR)                                                                           \
    static void small_##MR##x##NR(int K, const float *A, int lda, const float *W, int ldw, const float *bias, \
                                  float beta, float *C, int ldc, const float *pf) {                        \
        __m256 acc[MR][NR];                                                                              \
        for (int i = 0; i < MR; i++)                                                                     \
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();                                \
        int k = 0;                                                                                       \
        for (; k + 8 <= K; k += 8) {                                                                     \
            if (pf && !(k & 15))                                                                         \
                for (int j = 0; j < NR; j++) {                                                           \
                    /* long rows (c_proj): keep the current block in L1 */                              \
                    if (K <= 1024) _mm_prefetch((const char *)(pf + (size_t)j * ldw + k), _MM_HINT_T0);   \
                    else _mm_prefetch((const char *)(pf + (size_t)j * ldw + k), _MM_HINT_T1);             \
                }                                                                                        \
            __m256 w[NR];                                                                                \
            for (int j = 0; j < NR; j++) w[j] = _mm256_loadu_ps(W + (size_t)j * ldw + k);                \
            for (int i = 0; i < MR; i++) {                                                               \
                __m256 a = _mm256_loadu_ps(A + (size_t)i * lda + k);                                     \
                for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(a, w[j], acc[i][j]);            \
            }                                                                                            \
        }                                                                                                \
        for (int i = 0; i < MR; i++)                                                                     \
            for (int j = 0; j < NR; j++) {                                                               \
                float s = hsum8(acc[i][j]);                                                              \
                for (int kk = k; kk < K; kk++) s += A[(size_t)i * lda + kk] * W[(size_t)j * ldw + kk];   \
                if (bias) s += bias[j];                                                                  \
                float *c = &C[(size_t)i * ldc + j];                                                      \
                *c = beta != 0 ? s + beta * *c : s;                                                      \
            }                                                                                            \
    }

/* The loops over the constant MR/NR must be unrolled so the accumulators
 * stay in registers; the release build is -O2, so ask for it here. */
#pragma GCC push_options
#pragma GCC optimize("unroll-loops")
PE_SMALL_KERNEL(4, 3)
PE_SMALL_KERNEL(3, 3)
PE_SMALL_KERNEL(2, 3)
PE_SMALL_KERNEL(1, 3)
PE_SMALL_KERNEL(4, 1)
PE_SMALL_KERNEL(3, 1)
PE_SMALL_KERNEL(2, 1)
PE_SMALL_KERNEL(1, 1)
#pragma GCC pop_options

typedef void (*small_fn)(int, const float *, int, const float *, int, const float *, float, float *, int,
                         const float *);

static void small_linear_avx2(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                              const float *bias, float beta, float *C, int ldc) {
    static const small_fn f3[5] = {NULL, small_1x3, small_2x3, small_3x3, small_4x3};
    static const small_fn f1[5] = {NULL, small_1x1, small_2x1, small_3x1, small_4x1};
    /* n outer: the W rows stay in L1 while every A row passes by. */
    for (int n = 0; n < N;) {
        int nr = N - n >= 3 ? 3 : 1;
        const small_fn *f = nr == 3 ? f3 : f1;
        const float *next = n + nr + 3 <= N ? W + (size_t)(n + nr) * ldw : NULL;
        for (int m = 0; m < M; m += 4) {
            int mr = M - m < 4 ? M - m : 4;
            f[mr](K, A + (size_t)m * lda, lda, W + (size_t)n * ldw, ldw, bias ? bias + n : NULL, beta,
                  C + (size_t)m * ldc + n, ldc, m == 0 ? next : NULL);
        }
        n += nr;
    }
}
#pragma GCC pop_options
#endif

static void small_linear(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                         const float *bias, float beta, float *C, int ldc) {
#ifdef PE_KERN_X86
    if (isa() >= PE_ISA_AVX2) {
        small_linear_avx2(M, N, K, A, lda, W, ldw, bias, beta, C, ldc);
        return;
    }
#endif
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) s += A[(size_t)m * lda + k] * W[(size_t)n * ldw + k];
            float *c = &C[(size_t)m * ldc + n];
            *c = beta != 0 ? s + beta * *c : s;
        }
}

void pe_gemm_nt_small(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                      float beta, float *C, int ldc) {
    small_linear(M, N, K, A, lda, W, ldw, NULL, beta, C, ldc);
}

void pe_gemm_nt(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (M <= PE_GEMM_SMALL_M) {
        pe_gemm_nt_small(M, N, K, A, lda, W, ldw, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, ldw, beta, C, ldc);
}

void pe_linear(int M, int N, int K, const float *A, int lda, const float *W, const float *bias,
               float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (M <= PE_GEMM_SMALL_M) {
        small_linear(M, N, K, A, lda, W, K, bias, 0.0f, C, ldc);
        return;
    }
    /* C starts as the bias and sgemm accumulates (beta = 1): one pass over
     * C instead of OpenBLAS's zeroing pass plus a bias pass. */
    if (bias)
        for (int m = 0; m < M; m++) memcpy(C + (size_t)m * ldc, bias, N * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, K, bias ? 1.0f : 0.0f, C, ldc);
}

void pe_gemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void pe_add_bias(float *y, int rows, int n, int ld, const float *b) {
    for (int r = 0; r < rows; r++) pe_residual(y + (size_t)r * ld, b, NULL, n);
}

void pe_scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* ------------------------------------------------- residual adds, RoPE */

void pe_residual_ref(float *x, const float *y, const float *gamma, int n) {
    if (gamma)
        for (int i = 0; i < n; i++) x[i] += gamma[i] * y[i];
    else
        for (int i = 0; i < n; i++) x[i] += y[i];
}

void pe_residual(float *x, const float *y, const float *gamma, int n) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: pe_residual_avx512(x, y, gamma, n); return;
    case PE_ISA_AVX2: pe_residual_avx2(x, y, gamma, n); return;
    default: break;
    }
#endif
    pe_residual_ref(x, y, gamma, n);
}

void pe_rope_ref(float *v, const float *c, const float *s, int npairs) {
    for (int i = 0; i < npairs; i++) {
        float u = v[2 * i], w = v[2 * i + 1];
        v[2 * i] = u * c[i] - w * s[i];
        v[2 * i + 1] = w * c[i] + u * s[i];
    }
}

void pe_rope(float *v, const float *c, const float *s, int npairs) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: pe_rope_avx512(v, c, s, npairs); return;
    case PE_ISA_AVX2: pe_rope_avx2(v, c, s, npairs); return;
    default: break;
    }
#endif
    pe_rope_ref(v, c, s, npairs);
}

void pe_rope_heads_ref(float *v, int nh, int hd, const float *c, const float *s, float scale) {
    for (int h = 0; h < nh; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < hd / 2; i++) {
            float cc = c[i] * scale, ss = s[i] * scale, u = x[2 * i], w = x[2 * i + 1];
            x[2 * i] = u * cc - w * ss;
            x[2 * i + 1] = w * cc + u * ss;
        }
    }
}

void pe_rope_heads(float *v, int nh, int hd, const float *c, const float *s, float scale) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: pe_rope_heads_avx512(v, nh, hd, c, s, scale); return;
    case PE_ISA_AVX2: pe_rope_heads_avx2(v, nh, hd, c, s, scale); return;
    default: break;
    }
#endif
    pe_rope_heads_ref(v, nh, hd, c, s, scale);
}

/* ----------------------------------------------------------- LayerNorm */

void pe_layernorm_ref(const float *x, float *y, int d, const float *g, const float *b, float eps) {
    double mean = 0, var = 0;
    for (int i = 0; i < d; i++) mean += x[i];
    mean /= d;
    for (int i = 0; i < d; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= d;
    double inv = 1.0 / sqrt(var + eps);
    for (int i = 0; i < d; i++) y[i] = (float)((x[i] - mean) * inv) * g[i] + b[i];
}

void pe_layernorm(const float *x, float *y, int d, const float *g, const float *b, float eps) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: pe_layernorm_avx512(x, y, d, g, b, eps); return;
    case PE_ISA_AVX2: pe_layernorm_avx2(x, y, d, g, b, eps); return;
    default: break;
    }
#endif
    pe_layernorm_ref(x, y, d, g, b, eps);
}

/* ------------------------------------------------------- exp, erf, GELU */

void pe_gelu_ref(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void pe_gelu(float *x, size_t n) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: pe_gelu_avx512(x, n); return;
    case PE_ISA_AVX2: pe_gelu_avx2(x, n); return;
    default: break;
    }
#endif
    pe_gelu_ref(x, n);
}

float pe_softmax_exp_ref(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    return (float)sum;
}

float pe_softmax_exp(float *x, int n) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: return pe_softmax_exp_avx512(x, n);
    case PE_ISA_AVX2: return pe_softmax_exp_avx2(x, n);
    default: break;
    }
#endif
    return pe_softmax_exp_ref(x, n);
}

/* ----------------------------------------------------------- attention */

/* Softmax attention of query rows against one head's keys and values, with
 * K and V packed once per head (16-key panels of K, dense V) so that both
 * products run as register-blocked outer products (6 query rows x 16-64
 * columns) with the scores of 6 rows kept in L1. OpenBLAS on the same
 * shapes re-packs K and V for every call and writes the T x T score matrix
 * out of cache. */

int pe_attn_fast_ok(int hd) { return hd > 0 && hd % 16 == 0 && isa() >= PE_ISA_AVX2; }

static int round16(int x) { return (x + 15) / 16 * 16; }

size_t pe_attn_scratch(int T, int hd) {
    size_t Tp = round16(T);
    return Tp * hd + (size_t)T * hd + 6 * Tp + 12 * (size_t)hd;
}

void pe_attn_pack(int T, int hd, const float *K, int ldk, const float *V, int ldv, float *scratch) {
    int Tp = round16(T);
    float *Kp = scratch, *Vp = scratch + (size_t)Tp * hd;
    for (int t0 = 0; t0 < Tp; t0 += 16) {
        float *panel = Kp + (size_t)t0 * hd;
        for (int d = 0; d < hd; d++)
            for (int i = 0; i < 16; i++) {
                int t = t0 + i;
                panel[d * 16 + i] = t < T ? K[(size_t)t * ldk + d] : 0.0f;
            }
    }
    for (int t = 0; t < T; t++) memcpy(Vp + (size_t)t * hd, V + (size_t)t * ldv, hd * sizeof(float));
}

void pe_attn_ref(int nq, int T, int hd, const float *Q, int ldq, const float *K, int ldk, const float *V,
                 int ldv, float *O, int ldo) {
    for (int i = 0; i < nq; i++) {
        double s[T > 0 ? T : 1], mx = -INFINITY, sum = 0;
        for (int t = 0; t < T; t++) {
            double d = 0;
            for (int e = 0; e < hd; e++) d += (double)Q[(size_t)i * ldq + e] * K[(size_t)t * ldk + e];
            s[t] = d;
            if (d > mx) mx = d;
        }
        for (int t = 0; t < T; t++) { s[t] = exp(s[t] - mx); sum += s[t]; }
        for (int e = 0; e < hd; e++) {
            double o = 0;
            for (int t = 0; t < T; t++) o += s[t] * V[(size_t)t * ldv + e];
            O[(size_t)i * ldo + e] = (float)(o / sum);
        }
    }
}

/* The scalar level on the packed layout (correct, not fast: the towers use
 * sgemm at that level, see pe_attn_fast_ok). */
static void attn_rows_c(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo) {
    int Tp = round16(T);
    const float *Kp = scratch, *Vp = scratch + (size_t)Tp * hd;
    float *S = (float *)(Vp + (size_t)T * hd);
    for (int i = 0; i < nq; i++) {
        for (int t = 0; t < T; t++) {
            float d = 0;
            for (int e = 0; e < hd; e++) d += Q[(size_t)i * ldq + e] * Kp[(size_t)(t / 16) * 16 * hd + e * 16 + t % 16];
            S[t] = d;
        }
        float inv = 1.0f / pe_softmax_exp_ref(S, T);
        for (int e = 0; e < hd; e++) {
            float o = 0;
            for (int t = 0; t < T; t++) o += S[t] * Vp[(size_t)t * hd + e];
            O[(size_t)i * ldo + e] = o * inv;
        }
    }
}

void pe_attn_rows(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo) {
#ifdef PE_KERN_X86
    switch (isa()) {
    case PE_ISA_AVX512: pe_attn_rows_avx512(nq, T, hd, Q, ldq, scratch, O, ldo); return;
    case PE_ISA_AVX2: pe_attn_rows_avx2(nq, T, hd, Q, ldq, scratch, O, ldo); return;
    default: break;
    }
#endif
    attn_rows_c(nq, T, hd, Q, ldq, scratch, O, ldo);
}

/* ------------------------------------------------------ bf16 attention */

/* float -> bf16, round to nearest even (as vcvtneps2bf16; NaN stays NaN). */
static uint16_t bf16_rne(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float bf16_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float pe_bf16_round(float x) { return bf16_f(bf16_rne(x)); }

int pe_attn_bf16_ok(int hd) {
#ifdef PE_KERN_X86
    return hd > 0 && hd % 16 == 0 && pe_cpu()->bf16;
#else
    (void)hd;
    return 0;
#endif
}

void pe_attn_pack_bf16(int T, int hd, const float *K, int ldk, const float *V, int ldv, float *scratch) {
    int Tp = round16(T), T2 = (T + 1) / 2 * 2;
    uint16_t *Kb = (uint16_t *)scratch;                /* [Tp/16][hd/2][16][2] */
    uint16_t *Vb = Kb + (size_t)Tp * hd;               /* [T2/2][hd][2] */
    for (int t0 = 0; t0 < Tp; t0 += 16) {
        uint16_t *panel = Kb + (size_t)t0 * hd;
        for (int d2 = 0; d2 < hd / 2; d2++)
            for (int i = 0; i < 16; i++) {
                int t = t0 + i;
                panel[(d2 * 16 + i) * 2] = t < T ? bf16_rne(K[(size_t)t * ldk + 2 * d2]) : 0;
                panel[(d2 * 16 + i) * 2 + 1] = t < T ? bf16_rne(K[(size_t)t * ldk + 2 * d2 + 1]) : 0;
            }
    }
    for (int t = 0; t < T2; t++)
        for (int e = 0; e < hd; e++)
            Vb[((size_t)(t / 2) * hd + e) * 2 + (t & 1)] = t < T ? bf16_rne(V[(size_t)t * ldv + e]) : 0;
}

void pe_attn_rows_bf16(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo) {
#ifdef PE_KERN_X86
    if (pe_cpu()->bf16) {
        pe_attn_rows_bf16_avx512(nq, T, hd, Q, ldq, scratch, O, ldo);
        return;
    }
#endif
    /* Without native bf16 dot products: the same arithmetic in C (slow;
     * callers check pe_attn_bf16_ok and use the fp32 kernel instead). */
    int Tp = round16(T), T2 = (T + 1) / 2 * 2;
    const uint16_t *Kb = (const uint16_t *)scratch, *Vb = Kb + (size_t)Tp * hd;
    float *S = (float *)(Vb + (size_t)T2 * hd);
    for (int i = 0; i < nq; i++) {
        const float *q = Q + (size_t)i * ldq;
        for (int t = 0; t < T; t++) {
            float d = 0;
            for (int e = 0; e < hd; e++)
                d += pe_bf16_round(q[e]) * bf16_f(Kb[(size_t)(t / 16) * 16 * hd + ((e / 2) * 16 + t % 16) * 2 + (e & 1)]);
            S[t] = d;
        }
        float inv = 1.0f / pe_softmax_exp_ref(S, T);
        for (int e = 0; e < hd; e++) {
            float o = 0;
            for (int t = 0; t < T; t++) o += pe_bf16_round(S[t]) * bf16_f(Vb[((size_t)(t / 2) * hd + e) * 2 + (t & 1)]);
            O[(size_t)i * ldo + e] = o * inv;
        }
    }
}

void pe_attn_ref_bf16(int nq, int T, int hd, const float *Q, int ldq, const float *K, int ldk, const float *V,
                      int ldv, float *O, int ldo) {
    for (int i = 0; i < nq; i++) {
        double s[T > 0 ? T : 1], mx = -INFINITY, sum = 0;
        for (int t = 0; t < T; t++) {
            double d = 0;
            for (int e = 0; e < hd; e++)
                d += (double)pe_bf16_round(Q[(size_t)i * ldq + e]) * pe_bf16_round(K[(size_t)t * ldk + e]);
            s[t] = d;
            if (d > mx) mx = d;
        }
        for (int t = 0; t < T; t++) { s[t] = exp(s[t] - mx); sum += s[t]; }
        for (int e = 0; e < hd; e++) {
            double o = 0;
            for (int t = 0; t < T; t++) o += (double)pe_bf16_round((float)s[t]) * pe_bf16_round(V[(size_t)t * ldv + e]);
            O[(size_t)i * ldo + e] = (float)(o / sum);
        }
    }
}
