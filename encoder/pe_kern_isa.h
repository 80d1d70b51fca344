/* pe_kern_isa: the per-instruction-set versions of the pe_kernels entry
 * points (encoder-internal; only pe_kernels.c and the pe_kern_*.c files
 * include this). pe_kernels.c picks one per call from pe_cpu()->isa; the
 * contracts are those of pe_kernels.h.
 *
 * pe_kern_avx2.c is compiled for AVX2+FMA and pe_kern_avx512.c for
 * AVX-512 F/BW/VL/DQ (+BF16 in the bf16 functions) through function target
 * pragmas, never through build flags: the rest of the binary stays at the
 * compiler's baseline and runs on any x86-64.
 */
#ifndef PERCEPT_PE_KERN_ISA_H
#define PERCEPT_PE_KERN_ISA_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define PE_KERN_X86 1
#endif

#define PE_KERN_DECL(sfx)                                                                                    \
    void pe_layernorm_##sfx(const float *x, float *y, int d, const float *g, const float *b, float eps);      \
    void pe_gelu_##sfx(float *x, size_t n);                                                                  \
    float pe_softmax_exp_##sfx(float *x, int n);                                                             \
    void pe_rope_##sfx(float *v, const float *c, const float *s, int npairs);                               \
    void pe_rope_heads_##sfx(float *v, int nh, int hd, const float *c, const float *s, float scale);         \
    void pe_residual_##sfx(float *x, const float *y, const float *gamma, int n);                             \
    void pe_attn_rows_##sfx(int nq, int T, int hd, const float *Q, int ldq, const float *scratch, float *O,  \
                            int ldo);

#ifdef PE_KERN_X86
PE_KERN_DECL(avx2)
PE_KERN_DECL(avx512)
/* bf16 attention with vdpbf16ps (AVX512_BF16); layout of pe_attn_pack_bf16 */
void pe_attn_rows_bf16_avx512(int nq, int T, int hd, const float *Q, int ldq, const void *scratch, float *O,
                              int ldo);
#endif

#endif
