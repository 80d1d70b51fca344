/* pe_kern_avx2: the encoder's elementwise and attention kernels for AVX2 +
 * FMA (contracts in pe_kernels.h, scalar references in pe_kernels.c).
 *
 * DESIGN: compiled for AVX2 through the target pragma below, not build
 * flags; pe_kernels.c calls these only when pe_cpu() found AVX2 and FMA.
 * The attention layout (16-key panels of K, dense V, 6 query rows per
 * register block) is shared with the AVX-512 and scalar versions.
 */
#include "encoder/pe_kern_isa.h"

#ifdef PE_KERN_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* ----------------------------------------------------------- LayerNorm */

void pe_layernorm_avx2(const float *x, float *y, int d, const float *g, const float *b, float eps) {
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

/* ------------------------------------------------------- exp, erf, GELU */

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

static void gelu_tail(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void pe_gelu_avx2(float *x, size_t n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 rs2 = _mm256_set1_ps((float)M_SQRT1_2);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = erf8(_mm256_mul_ps(v, rs2));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
    }
    if (i < n) gelu_tail(x + i, n - i);
}

float pe_softmax_exp_avx2(float *x, int n) {
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

/* ------------------------------------------------- RoPE, residual adds */

/* 4 pairs per step: the cosines and sines duplicated to both lanes of a
 * pair, fmaddsub gives (u c - w s, w c + u s). */
void pe_rope_avx2(float *v, const float *c, const float *s, int npairs) {
    int i = 0;
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for (; i + 4 <= npairs; i += 4) {
        __m256 x = _mm256_loadu_ps(v + 2 * i);
        __m256 cc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c + i)), dup);
        __m256 ss = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i)), dup);
        __m256 sw = _mm256_permute_ps(x, 0xB1); /* (w, u) */
        _mm256_storeu_ps(v + 2 * i, _mm256_fmaddsub_ps(x, cc, _mm256_mul_ps(sw, ss)));
    }
    for (; i < npairs; i++) {
        float u = v[2 * i], w = v[2 * i + 1];
        v[2 * i] = u * c[i] - w * s[i];
        v[2 * i + 1] = w * c[i] + u * s[i];
    }
}

void pe_rope_heads_avx2(float *v, int nh, int hd, const float *c, const float *s, float scale) {
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256 sc = _mm256_set1_ps(scale);
    int npairs = hd / 2, i = 0;
    for (; i + 4 <= npairs; i += 4) {
        __m256 cc = _mm256_mul_ps(sc, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c + i)), dup));
        __m256 ss = _mm256_mul_ps(sc, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i)), dup));
        for (int h = 0; h < nh; h++) {
            float *p = v + (size_t)h * hd + 2 * i;
            __m256 x = _mm256_loadu_ps(p);
            _mm256_storeu_ps(p, _mm256_fmaddsub_ps(x, cc, _mm256_mul_ps(_mm256_permute_ps(x, 0xB1), ss)));
        }
    }
    for (; i < npairs; i++) {
        float cc = c[i] * scale, ss = s[i] * scale;
        for (int h = 0; h < nh; h++) {
            float *p = v + (size_t)h * hd + 2 * i, u = p[0], w = p[1];
            p[0] = u * cc - w * ss;
            p[1] = w * cc + u * ss;
        }
    }
}

void pe_residual_avx2(float *x, const float *y, const float *gamma, int n) {
    int i = 0;
    if (gamma) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(x + i, _mm256_fmadd_ps(_mm256_loadu_ps(gamma + i), _mm256_loadu_ps(y + i),
                                                    _mm256_loadu_ps(x + i)));
        for (; i < n; i++) x[i] += gamma[i] * y[i];
    } else {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        for (; i < n; i++) x[i] += y[i];
    }
}

/* ----------------------------------------------------------- attention */

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

void pe_attn_rows_avx2(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo) {
    int Tp = (T + 15) / 16 * 16;
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
        for (int i = 0; i < 6; i++) inv[i] = 1.0f / pe_softmax_exp_avx2(S + (size_t)i * Tp, T);
        attn_pv6(T, hd, S, Tp, Vp, inv, o, lo);
        if (mr < 6)
            for (int i = 0; i < mr; i++) memcpy(O + (size_t)(i0 + i) * ldo, ot + (size_t)i * hd, hd * sizeof(float));
    }
}

#pragma GCC pop_options
#endif
