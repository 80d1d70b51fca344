/* idx_flat: FAISS's exact inner-product kernels (faiss/utils/distances.h)
 * on a raw row-major float array, for the memory-mapped base of a loaded
 * Flat index (idx.c). Internal to the index module.
 *
 * Rows whose bit is set in dead (bit r of dead[r / 8]) are skipped; dead
 * may be NULL. Labels are row numbers (-1: missing). Both functions catch
 * every C++ exception and return PERR_* with the message set. */
#ifndef PERCEPT_IDX_FLAT_H
#define PERCEPT_IDX_FLAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* k best rows of xb (nb x d) for each of nq queries: D, I are nq x k, best
 * first. FAISS switches to BLAS from 20 queries when dead is NULL. */
int idxf_knn(const float *q, size_t nq, const float *xb, size_t nb, int d, size_t k,
             const uint8_t *dead, float *D, int64_t *I);

/* Every row with inner product > radius for one query; *n hits in *D, *I
 * (malloc'ed, unsorted; free() them). */
int idxf_range(const float *q, const float *xb, size_t nb, int d, float radius,
               const uint8_t *dead, size_t *n, float **D, int64_t **I);

#ifdef __cplusplus
}
#endif
#endif
