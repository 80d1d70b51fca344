/* pe_kernels: vectorized kernels and their scalar references.
 *
 * DESIGN: AVX2+FMA versions under PERCEPT_AVX2 (the build enables it when
 * the machine has it), references always compiled. No allocation, no
 * global state; OpenBLAS is called through cblas only.
 */
#include "encoder/pe_kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#ifdef PERCEPT_AVX2
#include <immintrin.h>
#endif

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

#ifdef PERCEPT_AVX2
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

static void small_linear(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
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

void pe_gemm_nt_small(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                      float beta, float *C, int ldc) {
    small_linear(M, N, K, A, lda, W, ldw, NULL, beta, C, ldc);
}
#else
static void small_linear(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                         const float *bias, float beta, float *C, int ldc) {
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
#endif

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
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * ld;
        for (int i = 0; i < n; i++) row[i] += b[i];
    }
}

void pe_scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
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

#ifdef PERCEPT_AVX2
void pe_layernorm(const float *x, float *y, int d, const float *g, const float *b, float eps) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(x + i));
    double sum = hsum8(s);
    for (; i < d; i++) sum += x[i];
    float mean = (float)(sum / d);
    __m256 vm = _mm256_set1_ps(mean), q = _mm256_setzero_ps();
    for (i = 0; i + 8 <= d; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        q = _mm256_fmadd_ps(t, t, q);
    }
    double sq = hsum8(q);
    for (; i < d; i++) sq += (double)(x[i] - mean) * (x[i] - mean);
    float inv = (float)(1.0 / sqrt(sq / d + eps));
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= d; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < d; i++) y[i] = (x[i] - mean) * inv * g[i] + b[i];
}
#else
void pe_layernorm(const float *x, float *y, int d, const float *g, const float *b, float eps) {
    pe_layernorm_ref(x, y, d, g, b, eps);
}
#endif

/* ------------------------------------------------------- exp, erf, GELU */

void pe_gelu_ref(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

float pe_softmax_exp_ref(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    return (float)sum;
}

#ifdef PERCEPT_AVX2
/* Cephes expf: range reduction by ln 2 in two parts, degree-5 polynomial;
 * about 1 ulp on the range softmax and erf use. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, z, x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    e = _mm256_slli_epi32(e, 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* erf as PyTorch's Vectorized<float>::erf (Abramowitz-Stegun 7.1.26). */
static inline __m256 erf8(__m256 x) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 sign = _mm256_and_ps(x, sign_mask);
    __m256 a = _mm256_andnot_ps(sign_mask, x);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
    __m256 r = _mm256_fnmadd_ps(p, e, one);
    return _mm256_or_ps(r, sign);
}

void pe_gelu(float *x, size_t n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 rs2 = _mm256_set1_ps((float)M_SQRT1_2);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = erf8(_mm256_mul_ps(v, rs2));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
    }
    if (i < n) pe_gelu_ref(x + i, n - i);
}

float pe_softmax_exp(float *x, int n) {
    __m256 vmx = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmx), _mm256_extractf128_ps(vmx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float mx = _mm_cvtss_f32(m4);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    vmx = _mm256_set1_ps(mx);
    __m256 s = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    float sum = hsum8(s);
    for (; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    return sum;
}
#else
void pe_gelu(float *x, size_t n) { pe_gelu_ref(x, n); }
float pe_softmax_exp(float *x, int n) { return pe_softmax_exp_ref(x, n); }
#endif

/* ---------------------------------------------------------------- RoPE */

void pe_rope(float *v, const float *c, const float *s, int npairs) {
    for (int i = 0; i < npairs; i++) {
        float u = v[2 * i], w = v[2 * i + 1];
        v[2 * i] = u * c[i] - w * s[i];
        v[2 * i + 1] = w * c[i] + u * s[i];
    }
}

/* ----------------------------------------------------------- attention */

/* Softmax attention of query rows against one head's keys and values, with
 * K and V packed once per head (16-key panels of K, dense V) so that both
 * products run as register-blocked outer products (6 query rows x 16
 * columns, 12 accumulators) with the scores of 6 rows kept in L1. OpenBLAS
 * on the same shapes re-packs K and V for every call and writes the T x T
 * score matrix out of cache. */

int pe_attn_fast_ok(int hd) {
#ifdef PERCEPT_AVX2
    return hd > 0 && hd % 16 == 0;
#else
    (void)hd;
    return 0;
#endif
}

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

#ifdef PERCEPT_AVX2
/* Named accumulators, not arrays: GCC otherwise stores an accumulator
 * array back to the stack on every iteration (store-bound, measured 39
 * instead of ~70 GFLOP/s). Rows beyond the last query use a zero copy. */
#define ROW6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* S[6][Tp] = Q[6][hd] . K^T over the packed 16-key panels. */
static void attn_qk6(int Tp, int hd, const float *Q, int ldq, const float *Kp, float *S, int lds) {
    const float *q0 = Q, *q1 = Q + ldq, *q2 = Q + 2 * (size_t)ldq, *q3 = Q + 3 * (size_t)ldq,
                *q4 = Q + 4 * (size_t)ldq, *q5 = Q + 5 * (size_t)ldq;
    for (int t0 = 0; t0 < Tp; t0 += 16) {
        const float *panel = Kp + (size_t)t0 * hd;
#define DECL(i) __m256 a##i##0 = _mm256_setzero_ps(), a##i##1 = _mm256_setzero_ps();
        ROW6(DECL)
#undef DECL
        for (int d = 0; d < hd; d++) {
            __m256 k0 = _mm256_loadu_ps(panel + d * 16), k1 = _mm256_loadu_ps(panel + d * 16 + 8), x;
#define FMA(i) x = _mm256_broadcast_ss(q##i + d); a##i##0 = _mm256_fmadd_ps(x, k0, a##i##0); \
               a##i##1 = _mm256_fmadd_ps(x, k1, a##i##1);
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) _mm256_storeu_ps(S + (size_t)(i) * lds + t0, a##i##0); \
                 _mm256_storeu_ps(S + (size_t)(i) * lds + t0 + 8, a##i##1);
        ROW6(STORE)
#undef STORE
    }
}

/* O[6][hd] = (P[6][T] . V[T][hd]) * inv[i]. */
static void attn_pv6(int T, int hd, const float *P, int ldp, const float *Vp, const float *inv, float *O,
                     int ldo) {
    const float *p0 = P, *p1 = P + ldp, *p2 = P + 2 * (size_t)ldp, *p3 = P + 3 * (size_t)ldp,
                *p4 = P + 4 * (size_t)ldp, *p5 = P + 5 * (size_t)ldp;
    for (int d0 = 0; d0 < hd; d0 += 16) {
#define DECL(i) __m256 a##i##0 = _mm256_setzero_ps(), a##i##1 = _mm256_setzero_ps();
        ROW6(DECL)
#undef DECL
        const float *v = Vp + d0;
        for (int t = 0; t < T; t++, v += hd) {
            __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), x;
#define FMA(i) x = _mm256_broadcast_ss(p##i + t); a##i##0 = _mm256_fmadd_ps(x, v0, a##i##0); \
               a##i##1 = _mm256_fmadd_ps(x, v1, a##i##1);
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) { __m256 sc = _mm256_set1_ps(inv[i]); \
                   _mm256_storeu_ps(O + (size_t)(i) * ldo + d0, _mm256_mul_ps(a##i##0, sc)); \
                   _mm256_storeu_ps(O + (size_t)(i) * ldo + d0 + 8, _mm256_mul_ps(a##i##1, sc)); }
        ROW6(STORE)
#undef STORE
    }
}
#undef ROW6

void pe_attn_rows(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo) {
    int Tp = round16(T);
    const float *Kp = scratch, *Vp = scratch + (size_t)Tp * hd;
    float *S = (float *)(Vp + (size_t)T * hd);
    float *qt = S + 6 * (size_t)Tp, *ot = qt + 6 * (size_t)hd; /* tail copies */
    for (int i0 = 0; i0 < nq; i0 += 6) {
        int mr = nq - i0 < 6 ? nq - i0 : 6;
        const float *q = Q + (size_t)i0 * ldq;
        int lq = ldq;
        float *o = O + (size_t)i0 * ldo;
        int lo = ldo;
        if (mr < 6) {
            memset(qt, 0, 6 * (size_t)hd * sizeof(float));
            for (int i = 0; i < mr; i++) memcpy(qt + (size_t)i * hd, q + (size_t)i * ldq, hd * sizeof(float));
            q = qt;
            lq = hd;
            o = ot;
            lo = hd;
        }
        attn_qk6(Tp, hd, q, lq, Kp, S, Tp);
        float inv[6];
        for (int i = 0; i < 6; i++) inv[i] = 1.0f / pe_softmax_exp(S + (size_t)i * Tp, T);
        attn_pv6(T, hd, S, Tp, Vp, inv, o, lo);
        if (mr < 6)
            for (int i = 0; i < mr; i++) memcpy(O + (size_t)(i0 + i) * ldo, ot + (size_t)i * hd, hd * sizeof(float));
    }
}
#else
void pe_attn_rows(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo) {
    /* not used without AVX2 (pe_attn_fast_ok is 0); kept correct anyway */
    int Tp = round16(T);
    const float *Kp = scratch, *Vp = scratch + (size_t)Tp * hd;
    float *S = (float *)(Vp + (size_t)T * hd);
    for (int i = 0; i < nq; i++) {
        for (int t = 0; t < T; t++) {
            float d = 0;
            for (int e = 0; e < hd; e++) d += Q[(size_t)i * ldq + e] * Kp[(size_t)(t / 16) * 16 * hd + e * 16 + t % 16];
            S[t] = d;
        }
        float inv = 1.0f / pe_softmax_exp(S, T);
        for (int e = 0; e < hd; e++) {
            float o = 0;
            for (int t = 0; t < T; t++) o += S[t] * Vp[(size_t)t * hd + e];
            O[(size_t)i * ldo + e] = o * inv;
        }
    }
}
#endif
