/* pe_mm: the encoder's matrix products against packed weights, on oneDNN
 * (encoder-internal).
 *
 * A pe_mm is one weight matrix (a linear layer's [out, in] weight and its
 * bias, or a projection [in, out]) packed once, at model load, in the
 * layout and precision oneDNN's fastest kernel for this CPU wants (for
 * AVX-512: 64-column panels; bf16 pairs for vdpbf16ps). Its columns may be
 * split into `parts` slices packed separately, so that a few-row product
 * can be spread over threads by output columns with a fixed partition.
 * pe_mm_run computes C[M, cols of part] = A[M, K] . W^T (+ bias) for any
 * M; the oneDNN primitive for each (M, lda, ldc) is created on first use
 * and kept in the pe_mm (shared by all threads, guarded by a mutex).
 * Everything runs sequentially in the calling thread: the encoder's own
 * pool is the only parallelism (docs/encoder.md, "Threading model").
 */
#ifndef PERCEPT_PE_MM_H
#define PERCEPT_PE_MM_H

#include "encoder/pe.h"

#include <stddef.h>

typedef struct pe_mm pe_mm;
/* Per-thread state of pe_mm_run: oneDNN stream, scratchpad, bf16 staging
 * of A. One per pool thread of a context. */
typedef struct pe_mm_tls pe_mm_tls;

/* w: [N, K] with row stride ldw when w_nk (a linear layer), else [K, N]
 * with row stride ldw (x @ P). bias: [N] or NULL. parts >= 1: the columns
 * are split into that many slices of whole 64-column panels (fewer when N
 * is small; pe_mm_parts says how many). w and bias are copied. */
int pe_mm_new(int N, int K, const float *w, int ldw, int w_nk, const float *bias, pe_precision prec, int parts,
              pe_mm **out);
void pe_mm_free(pe_mm *mm);
int pe_mm_parts(const pe_mm *mm);
/* First column and column count of a part. */
void pe_mm_part_cols(const pe_mm *mm, int part, int *c0, int *n);
/* oneDNN's kernel for this matrix ("brg:avx512_core", "gemm:jit", ...);
 * *ref_used (if not NULL) is 1 once a product of it ran on oneDNN's slow
 * reference code (a shape its fast kernels refused). */
const char *pe_mm_impl(const pe_mm *mm, int *ref_used);
/* Bytes of packed weights (all parts). */
size_t pe_mm_bytes(const pe_mm *mm);

/* C[M, n] = A[M, K] . W[c0:c0+n]^T + bias[c0:c0+n] for part `part`, C
 * pointing at column c0 of the output. A is float32 (converted to bf16
 * into the thread's staging buffer in bf16 mode). */
int pe_mm_run(const pe_mm *mm, int part, pe_mm_tls *t, int M, const float *A, int lda, float *C, int ldc);

int pe_mm_tls_new(pe_mm_tls **out);
void pe_mm_tls_free(pe_mm_tls *t);

/* oneDNN's instruction set on this CPU (after ONEDNN_MAX_CPU_ISA):
 * "avx512_core_bf16", "avx2", ... */
const char *pe_mm_isa(void);
/* 1 when the CPU computes bf16 products natively (AVX512_BF16 or AMX). */
int pe_mm_native_bf16(void);

#endif
