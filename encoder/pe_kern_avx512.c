/* pe_kern_avx512: the encoder's elementwise and attention kernels for
 * AVX-512 (contracts in pe_kernels.h, scalar references in pe_kernels.c),
 * and the bf16 attention kernel (AVX512_BF16).
 *
 * DESIGN: compiled for AVX-512 F/BW/VL/DQ through the target pragma below
 * (the bf16 functions add avx512bf16), not build flags; pe_kernels.c calls
 * these only when pe_cpu() says the CPU and OS support them. Tails use
 * masked loads and stores instead of scalar loops.
 * Attention: the packed layout of pe_attn_pack (16-key panels of K, dense
 * V); a register block is 6 query rows x 64 keys (or head-dim columns): 24
 * zmm accumulators, 4 vector loads and 6 broadcasts per 24 FMAs.
 * bf16 attention: K packed in 16-key panels of (d, d+1) pairs, V in
 * (t, t+1) pairs, so that one vdpbf16ps does two steps of the dot product;
 * scores, softmax and accumulation in fp32, the probabilities rounded to
 * bf16 for the P.V product (as oneDNN's and PyTorch's bf16 attention).
 */
#include "encoder/pe_kern_isa.h"

#ifdef PE_KERN_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline __mmask16 tail_mask(int n) { return (__mmask16)((1u << n) - 1); }

/* ----------------------------------------------------------- LayerNorm */

void pe_layernorm_avx512(const float *x, float *y, int d, const float *g, const float *b, float eps) {
    __m512 s = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= d; i += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(x + i));
    if (i < d) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail_mask(d - i), x + i));
    float mean = (float)((double)_mm512_reduce_add_ps(s) / d);
    __m512 vm = _mm512_set1_ps(mean), q = _mm512_setzero_ps();
    for (i = 0; i + 16 <= d; i += 16) {
        __m512 t = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
        q = _mm512_fmadd_ps(t, t, q);
    }
    if (i < d) {
        __mmask16 m = tail_mask(d - i);
        __m512 t = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
        q = _mm512_fmadd_ps(t, t, q);
    }
    float inv = (float)(1.0 / sqrt((double)_mm512_reduce_add_ps(q) / d + eps));
    __m512 vi = _mm512_set1_ps(inv);
    for (i = 0; i + 16 <= d; i += 16) {
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), vi);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(t, _mm512_loadu_ps(g + i), _mm512_loadu_ps(b + i)));
    }
    if (i < d) {
        __mmask16 m = tail_mask(d - i);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vi);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(t, _mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
}

/* ------------------------------------------------------- exp, erf, GELU */

/* The Cephes polynomial of the AVX2 version; 2^n applied with vscalefps,
 * which also handles the range ends without integer tricks. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.3762626647949f));
    __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                     _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, z, x);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, fx);
}

/* erf as PyTorch's Vectorized<float>::erf (Abramowitz-Stegun 7.1.26). */
static inline __m512 erf16(__m512 x) {
    __m512 a = _mm512_abs_ps(x);
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    __m512 r = _mm512_fnmadd_ps(p, e, one);
    /* copy the sign of x onto r (r >= 0) */
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r),
                                               _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))));
}

static inline __m512 gelu16(__m512 v) {
    __m512 e = erf16(_mm512_mul_ps(v, _mm512_set1_ps((float)M_SQRT1_2)));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

void pe_gelu_avx512(float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask((int)(n - i));
        _mm512_mask_storeu_ps(x + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

float pe_softmax_exp_avx512(float *x, int n) {
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) vmx = _mm512_max_ps(vmx, _mm512_loadu_ps(x + i));
    __mmask16 m = tail_mask(n - i);
    if (i < n) vmx = _mm512_max_ps(vmx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i));
    __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmx));
    __m512 s = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
        _mm512_storeu_ps(x + i, e);
        s = _mm512_add_ps(s, e);
    }
    if (i < n) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
        _mm512_mask_storeu_ps(x + i, m, e);
        s = _mm512_mask_add_ps(s, m, s, e);
    }
    return _mm512_reduce_add_ps(s);
}

/* ------------------------------------------------- RoPE, residual adds */

/* 8 pairs per step; see pe_rope_avx2. */
void pe_rope_avx512(float *v, const float *c, const float *s, int npairs) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    int i = 0;
    for (; i < npairs; i += 8) {
        int k = npairs - i < 8 ? npairs - i : 8;
        __mmask16 m2 = tail_mask(2 * k);
        __mmask8 m1 = (__mmask8)((1u << k) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m2, v + 2 * i);
        __m512 cc = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m1, c + i)));
        __m512 ss = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m1, s + i)));
        __m512 sw = _mm512_permute_ps(x, 0xB1); /* (w, u) */
        _mm512_mask_storeu_ps(v + 2 * i, m2, _mm512_fmaddsub_ps(x, cc, _mm512_mul_ps(sw, ss)));
    }
}

/* Outer loop over blocks of 8 pairs: the duplicated, scaled cos/sin are
 * built once and applied to the same block of every head. */
void pe_rope_heads_avx512(float *v, int nh, int hd, const float *c, const float *s, float scale) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512 sc = _mm512_set1_ps(scale);
    int npairs = hd / 2;
    for (int i = 0; i < npairs; i += 8) {
        int k = npairs - i < 8 ? npairs - i : 8;
        __mmask16 m2 = tail_mask(2 * k);
        __mmask8 m1 = (__mmask8)((1u << k) - 1);
        __m512 cc = _mm512_mul_ps(sc, _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m1, c + i))));
        __m512 ss = _mm512_mul_ps(sc, _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m1, s + i))));
        for (int h = 0; h < nh; h++) {
            float *p = v + (size_t)h * hd + 2 * i;
            __m512 x = _mm512_maskz_loadu_ps(m2, p);
            __m512 sw = _mm512_permute_ps(x, 0xB1);
            _mm512_mask_storeu_ps(p, m2, _mm512_fmaddsub_ps(x, cc, _mm512_mul_ps(sw, ss)));
        }
    }
}

void pe_residual_avx512(float *x, const float *y, const float *gamma, int n) {
    int i = 0;
    if (gamma)
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(x + i, _mm512_fmadd_ps(_mm512_loadu_ps(gamma + i), _mm512_loadu_ps(y + i),
                                                    _mm512_loadu_ps(x + i)));
    else
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i), yv = _mm512_maskz_loadu_ps(m, y + i);
        __m512 r = gamma ? _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gamma + i), yv, xv) : _mm512_add_ps(xv, yv);
        _mm512_mask_storeu_ps(x + i, m, r);
    }
}

/* ----------------------------------------------------------- attention */

/* Named accumulators a<row><col> (GCC keeps arrays of vectors on the
 * stack). Rows beyond the last query use a zero copy. */
#define ROW6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* S[6][t0..t0+64) for 4 panels, then single panels for the rest. */
static void attn_qk6(int Tp, int hd, const float *Q, int ldq, const float *Kp, float *S, int lds) {
    const float *q0 = Q, *q1 = Q + ldq, *q2 = Q + 2 * (size_t)ldq, *q3 = Q + 3 * (size_t)ldq,
                *q4 = Q + 4 * (size_t)ldq, *q5 = Q + 5 * (size_t)ldq;
    int t0 = 0;
    for (; t0 + 64 <= Tp; t0 += 64) {
        const float *p0 = Kp + (size_t)t0 * hd, *p1 = p0 + 16 * (size_t)hd, *p2 = p1 + 16 * (size_t)hd,
                    *p3 = p2 + 16 * (size_t)hd;
#define DECL(i) __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = a##i##0, a##i##2 = a##i##0, a##i##3 = a##i##0;
        ROW6(DECL)
#undef DECL
        for (int d = 0; d < hd; d++) {
            __m512 k0 = _mm512_loadu_ps(p0 + d * 16), k1 = _mm512_loadu_ps(p1 + d * 16),
                   k2 = _mm512_loadu_ps(p2 + d * 16), k3 = _mm512_loadu_ps(p3 + d * 16), x;
#define FMA(i) x = _mm512_set1_ps(q##i[d]); a##i##0 = _mm512_fmadd_ps(x, k0, a##i##0); \
               a##i##1 = _mm512_fmadd_ps(x, k1, a##i##1); a##i##2 = _mm512_fmadd_ps(x, k2, a##i##2); \
               a##i##3 = _mm512_fmadd_ps(x, k3, a##i##3);
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) { float *s_ = S + (size_t)(i) * lds + t0; _mm512_storeu_ps(s_, a##i##0); \
                   _mm512_storeu_ps(s_ + 16, a##i##1); _mm512_storeu_ps(s_ + 32, a##i##2); \
                   _mm512_storeu_ps(s_ + 48, a##i##3); }
        ROW6(STORE)
#undef STORE
    }
    for (; t0 < Tp; t0 += 16) {
        const float *p0 = Kp + (size_t)t0 * hd;
#define DECL(i) __m512 a##i = _mm512_setzero_ps();
        ROW6(DECL)
#undef DECL
        for (int d = 0; d < hd; d++) {
            __m512 k0 = _mm512_loadu_ps(p0 + d * 16);
#define FMA(i) a##i = _mm512_fmadd_ps(_mm512_set1_ps(q##i[d]), k0, a##i);
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) _mm512_storeu_ps(S + (size_t)(i) * lds + t0, a##i);
        ROW6(STORE)
#undef STORE
    }
}

/* O[6][hd] = (P[6][T] . V[T][hd]) * inv[i]: 64 columns at a time, then 16. */
static void attn_pv6(int T, int hd, const float *P, int ldp, const float *Vp, const float *inv, float *O,
                     int ldo) {
    const float *p0 = P, *p1 = P + ldp, *p2 = P + 2 * (size_t)ldp, *p3 = P + 3 * (size_t)ldp,
                *p4 = P + 4 * (size_t)ldp, *p5 = P + 5 * (size_t)ldp;
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) {
#define DECL(i) __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = a##i##0, a##i##2 = a##i##0, a##i##3 = a##i##0;
        ROW6(DECL)
#undef DECL
        const float *v = Vp + d0;
        for (int t = 0; t < T; t++, v += hd) {
            __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), v2 = _mm512_loadu_ps(v + 32),
                   v3 = _mm512_loadu_ps(v + 48), x;
#define FMA(i) x = _mm512_set1_ps(p##i[t]); a##i##0 = _mm512_fmadd_ps(x, v0, a##i##0); \
               a##i##1 = _mm512_fmadd_ps(x, v1, a##i##1); a##i##2 = _mm512_fmadd_ps(x, v2, a##i##2); \
               a##i##3 = _mm512_fmadd_ps(x, v3, a##i##3);
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) { __m512 sc = _mm512_set1_ps(inv[i]); float *o_ = O + (size_t)(i) * ldo + d0; \
                   _mm512_storeu_ps(o_, _mm512_mul_ps(a##i##0, sc)); \
                   _mm512_storeu_ps(o_ + 16, _mm512_mul_ps(a##i##1, sc)); \
                   _mm512_storeu_ps(o_ + 32, _mm512_mul_ps(a##i##2, sc)); \
                   _mm512_storeu_ps(o_ + 48, _mm512_mul_ps(a##i##3, sc)); }
        ROW6(STORE)
#undef STORE
    }
    for (; d0 < hd; d0 += 16) {
#define DECL(i) __m512 a##i = _mm512_setzero_ps();
        ROW6(DECL)
#undef DECL
        const float *v = Vp + d0;
        for (int t = 0; t < T; t++, v += hd) {
            __m512 v0 = _mm512_loadu_ps(v);
#define FMA(i) a##i = _mm512_fmadd_ps(_mm512_set1_ps(p##i[t]), v0, a##i);
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) _mm512_storeu_ps(O + (size_t)(i) * ldo + d0, _mm512_mul_ps(a##i, _mm512_set1_ps(inv[i])));
        ROW6(STORE)
#undef STORE
    }
}

void pe_attn_rows_avx512(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O,
                         int ldo) {
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
        for (int i = 0; i < 6; i++) inv[i] = 1.0f / pe_softmax_exp_avx512(S + (size_t)i * Tp, T);
        attn_pv6(T, hd, S, Tp, Vp, inv, o, lo);
        if (mr < 6)
            for (int i = 0; i < mr; i++) memcpy(O + (size_t)(i0 + i) * ldo, ot + (size_t)i * hd, hd * sizeof(float));
    }
}

/* -------------------------------------------------------- bf16 attention */

#pragma GCC push_options
#pragma GCC target("avx512bf16")

/* n floats -> n bf16 (round to nearest even), n even; dst may be padded. */
static void to_bf16(const float *src, int n, uint16_t *dst) {
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512(dst + i, (__m512i)r);
    }
    for (; i < n; i += 16) {
        int k = n - i < 16 ? n - i : 16;
        __m256bh r = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail_mask(k), src + i));
        _mm256_mask_storeu_epi16(dst + i, tail_mask(k), (__m256i)r);
    }
}

/* S[6][Tp] = Q.K^T: Qb rows of hd bf16 (as hd/2 pairs), K panels of 16 keys
 * x hd/2 pairs. 4 panels per block, then single panels. */
static void attn_qk6_bf16(int Tp, int hd, const uint32_t *Qb, const uint32_t *Kb, float *S, int lds) {
    int h2 = hd / 2;
    const uint32_t *q0 = Qb, *q1 = Qb + h2, *q2 = Qb + 2 * h2, *q3 = Qb + 3 * h2, *q4 = Qb + 4 * h2,
                   *q5 = Qb + 5 * h2;
    int t0 = 0;
#define BH(v) ((__m512bh)(v))
    for (; t0 + 64 <= Tp; t0 += 64) {
        const uint32_t *p0 = Kb + (size_t)t0 * h2, *p1 = p0 + 16 * (size_t)h2, *p2 = p1 + 16 * (size_t)h2,
                       *p3 = p2 + 16 * (size_t)h2;
#define DECL(i) __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = a##i##0, a##i##2 = a##i##0, a##i##3 = a##i##0;
        ROW6(DECL)
#undef DECL
        for (int d = 0; d < h2; d++) {
            __m512i k0 = _mm512_loadu_si512(p0 + d * 16), k1 = _mm512_loadu_si512(p1 + d * 16),
                    k2 = _mm512_loadu_si512(p2 + d * 16), k3 = _mm512_loadu_si512(p3 + d * 16), x;
#define FMA(i) x = _mm512_set1_epi32((int)q##i[d]); a##i##0 = _mm512_dpbf16_ps(a##i##0, BH(x), BH(k0)); \
               a##i##1 = _mm512_dpbf16_ps(a##i##1, BH(x), BH(k1)); a##i##2 = _mm512_dpbf16_ps(a##i##2, BH(x), BH(k2)); \
               a##i##3 = _mm512_dpbf16_ps(a##i##3, BH(x), BH(k3));
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) { float *s_ = S + (size_t)(i) * lds + t0; _mm512_storeu_ps(s_, a##i##0); \
                   _mm512_storeu_ps(s_ + 16, a##i##1); _mm512_storeu_ps(s_ + 32, a##i##2); \
                   _mm512_storeu_ps(s_ + 48, a##i##3); }
        ROW6(STORE)
#undef STORE
    }
    for (; t0 < Tp; t0 += 16) {
        const uint32_t *p0 = Kb + (size_t)t0 * h2;
#define DECL(i) __m512 a##i = _mm512_setzero_ps();
        ROW6(DECL)
#undef DECL
        for (int d = 0; d < h2; d++) {
            __m512i k0 = _mm512_loadu_si512(p0 + d * 16);
#define FMA(i) a##i = _mm512_dpbf16_ps(a##i, BH(_mm512_set1_epi32((int)q##i[d])), BH(k0));
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) _mm512_storeu_ps(S + (size_t)(i) * lds + t0, a##i);
        ROW6(STORE)
#undef STORE
    }
}

/* O[6][hd] = (P[6][T2] . V[T2][hd]) * inv[i]; P rows of T2 bf16 (pairs),
 * V as T2/2 rows of hd (t, t+1) pairs. */
static void attn_pv6_bf16(int T2, int hd, const uint32_t *Pb, int ldp, const uint32_t *Vb, const float *inv,
                          float *O, int ldo) {
    int n2 = T2 / 2;
    const uint32_t *p0 = Pb, *p1 = Pb + ldp, *p2 = Pb + 2 * (size_t)ldp, *p3 = Pb + 3 * (size_t)ldp,
                   *p4 = Pb + 4 * (size_t)ldp, *p5 = Pb + 5 * (size_t)ldp;
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) {
#define DECL(i) __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = a##i##0, a##i##2 = a##i##0, a##i##3 = a##i##0;
        ROW6(DECL)
#undef DECL
        const uint32_t *v = Vb + d0;
        for (int t = 0; t < n2; t++, v += hd) {
            __m512i v0 = _mm512_loadu_si512(v), v1 = _mm512_loadu_si512(v + 16), v2 = _mm512_loadu_si512(v + 32),
                    v3 = _mm512_loadu_si512(v + 48), x;
#define FMA(i) x = _mm512_set1_epi32((int)p##i[t]); a##i##0 = _mm512_dpbf16_ps(a##i##0, BH(x), BH(v0)); \
               a##i##1 = _mm512_dpbf16_ps(a##i##1, BH(x), BH(v1)); a##i##2 = _mm512_dpbf16_ps(a##i##2, BH(x), BH(v2)); \
               a##i##3 = _mm512_dpbf16_ps(a##i##3, BH(x), BH(v3));
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) { __m512 sc = _mm512_set1_ps(inv[i]); float *o_ = O + (size_t)(i) * ldo + d0; \
                   _mm512_storeu_ps(o_, _mm512_mul_ps(a##i##0, sc)); \
                   _mm512_storeu_ps(o_ + 16, _mm512_mul_ps(a##i##1, sc)); \
                   _mm512_storeu_ps(o_ + 32, _mm512_mul_ps(a##i##2, sc)); \
                   _mm512_storeu_ps(o_ + 48, _mm512_mul_ps(a##i##3, sc)); }
        ROW6(STORE)
#undef STORE
    }
    for (; d0 < hd; d0 += 16) {
#define DECL(i) __m512 a##i = _mm512_setzero_ps();
        ROW6(DECL)
#undef DECL
        const uint32_t *v = Vb + d0;
        for (int t = 0; t < n2; t++, v += hd) {
            __m512i v0 = _mm512_loadu_si512(v);
#define FMA(i) a##i = _mm512_dpbf16_ps(a##i, BH(_mm512_set1_epi32((int)p##i[t])), BH(v0));
            ROW6(FMA)
#undef FMA
        }
#define STORE(i) _mm512_storeu_ps(O + (size_t)(i) * ldo + d0, _mm512_mul_ps(a##i, _mm512_set1_ps(inv[i])));
        ROW6(STORE)
#undef STORE
    }
#undef BH
}

/* Scratch (floats): Kb Tp*hd/2 | Vb T2/2*hd | S 6*Tp | Pb 6*T2/2 | Qb 6*hd/2
 * | O tail 6*hd, with Tp = round16(T), T2 = round2(T) (see pe_attn_pack_bf16). */
void pe_attn_rows_bf16_avx512(int nq, int T, int hd, const float *Q, int ldq, const void *scratch, float *O,
                              int ldo) {
    int Tp = (T + 15) / 16 * 16, T2 = (T + 1) / 2 * 2;
    const uint32_t *Kb = scratch, *Vb = Kb + (size_t)Tp * hd / 2;
    float *S = (float *)(Vb + (size_t)T2 / 2 * hd);
    uint32_t *Pb = (uint32_t *)(S + 6 * (size_t)Tp);
    uint32_t *Qb = Pb + 6 * (size_t)T2 / 2;
    float *ot = (float *)(Qb + 6 * (size_t)hd / 2);
    for (int i0 = 0; i0 < nq; i0 += 6) {
        int mr = nq - i0 < 6 ? nq - i0 : 6;
        for (int i = 0; i < 6; i++) {
            if (i < mr) to_bf16(Q + (size_t)(i0 + i) * ldq, hd, (uint16_t *)(Qb + (size_t)i * hd / 2));
            else memset(Qb + (size_t)i * hd / 2, 0, hd * sizeof(uint16_t));
        }
        float *o = mr < 6 ? ot : O + (size_t)i0 * ldo;
        int lo = mr < 6 ? hd : ldo;
        attn_qk6_bf16(Tp, hd, Qb, Kb, S, Tp);
        float inv[6];
        for (int i = 0; i < 6; i++) {
            float *srow = S + (size_t)i * Tp;
            inv[i] = 1.0f / pe_softmax_exp_avx512(srow, T);
            if (T2 > T) srow[T] = 0.0f; /* the pad key of an odd T */
            to_bf16(srow, T2, (uint16_t *)(Pb + (size_t)i * T2 / 2));
        }
        attn_pv6_bf16(T2, hd, Pb, T2 / 2, Vb, inv, o, lo);
        if (mr < 6)
            for (int i = 0; i < mr; i++) memcpy(O + (size_t)(i0 + i) * ldo, ot + (size_t)i * hd, hd * sizeof(float));
    }
}
#pragma GCC pop_options

#undef ROW6
#pragma GCC pop_options
#endif
