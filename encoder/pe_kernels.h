/* pe_kernels: the numeric building blocks of the PE_core forward passes
 * (encoder-internal).
 *
 * Every vectorized kernel has a plain scalar reference (`*_ref`) next to
 * it; tests/encoder_conformance/test_pe_kernels.c checks one against the
 * other at every instruction-set level the machine has. The entry points
 * choose AVX-512, AVX2 or C at run time (pe_cpu.h; PERCEPT_MAX_ISA caps
 * the level). All functions are pure and thread-safe; matrices are
 * row-major with explicit leading dimensions.
 */
#ifndef PERCEPT_PE_KERNELS_H
#define PERCEPT_PE_KERNELS_H

#include <stddef.h>

/* C[M,N] = A[M,K] . W[N,K]^T + beta*C  (a linear layer: W is [out, in]).
 * Small M goes to pe_gemm_nt_small (W streamed once), the rest to
 * OpenBLAS. beta is 0 or 1. */
void pe_gemm_nt(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                float beta, float *C, int ldc);
/* A linear layer: C[M,N] = A[M,K] . W[N,K]^T + bias (bias may be NULL),
 * W dense ([N, K], leading dimension K). */
void pe_linear(int M, int N, int K, const float *A, int lda, const float *W, const float *bias,
               float *C, int ldc);
/* C[M,N] = A[M,K] . B[K,N] + beta*C. */
void pe_gemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);
/* Register-blocked A.W^T for M <= ~16: every W row is read from memory
 * once for all rows of A, the next rows prefetched (the text tower's
 * shape: a few rows against large weight matrices). */
void pe_gemm_nt_small(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                      float beta, float *C, int ldc);
void pe_gemm_nt_ref(int M, int N, int K, const float *A, int lda, const float *W, int ldw,
                    float beta, float *C, int ldc);
/* M at or below which pe_gemm_nt uses the small kernel. */
#define PE_GEMM_SMALL_M 16

/* y[i] += b[i] over `rows` rows of n values (leading dimension ld). */
void pe_add_bias(float *y, int rows, int n, int ld, const float *b);

/* x[i] += gamma[i] * y[i] (LayerScale), or x[i] += y[i] when gamma is NULL. */
void pe_residual(float *x, const float *y, const float *gamma, int n);
void pe_residual_ref(float *x, const float *y, const float *gamma, int n);

/* y = (x - mean) / sqrt(var + eps) * g + b over d values (biased var). */
void pe_layernorm(const float *x, float *y, int d, const float *g, const float *b, float eps);
void pe_layernorm_ref(const float *x, float *y, int d, const float *g, const float *b, float eps);

/* Exact-erf GELU in place: x = 0.5 x (1 + erf(x / sqrt 2)). The fast
 * version evaluates erf like PyTorch's vectorized CPU kernel
 * (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7); the reference uses erff. */
void pe_gelu(float *x, size_t n);
void pe_gelu_ref(float *x, size_t n);

/* x[i] = exp(x[i] - max(x)) for i < n; returns the sum of the results.
 * The caller divides (softmax without the extra pass). */
float pe_softmax_exp(float *x, int n);
float pe_softmax_exp_ref(float *x, int n);

/* Rotates `npairs` adjacent pairs (v[2i], v[2i+1]) by the angle whose
 * cosine and sine are c[i], s[i]: (u c - w s, w c + u s). */
void pe_rope(float *v, const float *c, const float *s, int npairs);
void pe_rope_ref(float *v, const float *c, const float *s, int npairs);
/* pe_rope on nh heads of hd values (v + h*hd, hd/2 pairs each, the same
 * c and s), every value then multiplied by scale (q's 1/sqrt(hd)): one
 * call per token row instead of 2 per head plus a pass for the scale. The
 * scale is folded into c and s (c*scale, s*scale): not bit-identical to
 * rotating then scaling. */
void pe_rope_heads(float *v, int nh, int hd, const float *c, const float *s, float scale);
void pe_rope_heads_ref(float *v, int nh, int hd, const float *c, const float *s, float scale);

/* Softmax attention for one head: O[i] = softmax(Q[i] . K^T) . V for nq
 * query rows (Q already scaled by 1/sqrt(hd)). K and V are first packed
 * into `scratch` (pe_attn_scratch(T, hd) floats) with pe_attn_pack, once
 * per head; pe_attn_rows may then run on any query rows. Fast path only
 * when pe_attn_fast_ok(hd) (AVX2, hd % 16 == 0). pe_attn_ref: float64. */
int pe_attn_fast_ok(int hd);
size_t pe_attn_scratch(int T, int hd);
void pe_attn_pack(int T, int hd, const float *K, int ldk, const float *V, int ldv, float *scratch);
void pe_attn_rows(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo);
void pe_attn_ref(int nq, int T, int hd, const float *Q, int ldq, const float *K, int ldk, const float *V,
                 int ldv, float *O, int ldo);

/* bf16 attention (the bf16 precision): Q, K, V rounded to bf16 (nearest
 * even), S = Q.K^T with vdpbf16ps and fp32 accumulation, softmax in fp32,
 * the probabilities rounded to bf16 for P.V (fp32 accumulation), 1/sum in
 * fp32. Same calling pattern and scratch size as the fp32 kernel
 * (pe_attn_scratch); pe_attn_bf16_ok(hd): native AVX512_BF16 at the
 * current level and hd % 16 == 0 (elsewhere pe_attn_rows_bf16 runs the
 * same arithmetic in slow C: use the fp32 kernel). pe_attn_ref_bf16: the
 * same roundings, products and sums in float64. */
int pe_attn_bf16_ok(int hd);
void pe_attn_pack_bf16(int T, int hd, const float *K, int ldk, const float *V, int ldv, float *scratch);
void pe_attn_rows_bf16(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O, int ldo);
void pe_attn_ref_bf16(int nq, int T, int hd, const float *Q, int ldq, const float *K, int ldk, const float *V,
                      int ldv, float *O, int ldo);
/* x rounded to the nearest bf16 (ties to even), as a float. */
float pe_bf16_round(float x);

/* y[i] = x[i] * s */
void pe_scale(float *x, size_t n, float s);

#endif
