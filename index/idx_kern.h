/* idx_kern: inner products of one query with many contiguous rows, the
 * kernel of every exact scan over raw float rows (the mapped Flat base, the
 * small-filter scan). Internal to the index module.
 *
 * Every variant reproduces, bit for bit, the arithmetic of FAISS 1.7.3's
 * fvec_inner_product as our AVX2 FAISS build compiles it (one 8-lane FMA
 * chain over the 8-float chunks, hi+lo halves, an FMA for a 4-float chunk,
 * an FMA for the 1-3 float tail, then two hadds), so a scan with these
 * kernels scores every row exactly as FAISS's knn_inner_product does: same
 * floats, hence the same ids in the same order. The speed comes from
 * scoring several rows at once (independent chains), not from reordering
 * the sum.
 *
 * ISA: chosen once at run time (cpuid): AVX-512 (F) where present, else
 * AVX2+FMA, else the scalar reference (fmaf per lane, same result). The
 * environment variable PERCEPT_MAX_ISA=avx512|avx2|scalar caps the choice
 * (tests force the lower levels with it); an unknown value is reported on
 * stderr once and ignored. Thread-safe. */
#ifndef PERCEPT_IDX_KERN_H
#define PERCEPT_IDX_KERN_H

#include <stddef.h>

typedef enum idxk_isa { IDXK_SCALAR = 0, IDXK_AVX2 = 1, IDXK_AVX512 = 2 } idxk_isa;

/* ip[j] = <x, y + j*d> for j < ny (rows contiguous, stride d), with the
 * active ISA. d >= 1; no alignment needed; reads nothing past y + ny*d. */
void idxk_ip_ny(float *ip, const float *x, const float *y, size_t d, size_t ny);

/* The same with a given ISA (tests, benchmarks); isa must be supported. */
void idxk_ip_ny_isa(idxk_isa isa, float *ip, const float *x, const float *y, size_t d, size_t ny);

int idxk_isa_supported(idxk_isa isa);  /* 1 if this CPU runs it */
idxk_isa idxk_isa_active(void);        /* best supported, capped by PERCEPT_MAX_ISA */
const char *idxk_isa_name(idxk_isa isa); /* "scalar", "avx2", "avx512" */

#endif
