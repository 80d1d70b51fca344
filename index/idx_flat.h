/* idx_flat: exact inner-product search over a raw row-major float array,
 * for the memory-mapped base of a loaded Flat index (idx.c). Internal to
 * the index module.
 *
 * idxf_knn / idxf_range answer exactly as FAISS 1.7.3's knn_inner_product /
 * range_search_inner_product on the same array (bit-identical scores, same
 * ids in the same order, ties included): a batch of >= 20 queries without
 * tombstones goes to FAISS itself (BLAS); everything else is our blocked
 * scan with idx_kern's kernels feeding FAISS's result handlers
 * (idx_flat.cpp). The _faiss variants always call FAISS (tests and
 * benchmarks compare the two).
 *
 * Rows whose bit is set in dead (bit r of dead[r / 8]) are skipped; dead
 * may be NULL. Labels are row numbers (-1: missing). All functions catch
 * every C++ exception and return PERR_* with the message set. */
#ifndef PERCEPT_IDX_FLAT_H
#define PERCEPT_IDX_FLAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* k best rows of xb (nb x d) for each of nq queries: D, I are nq x k, best
 * first. */
int idxf_knn(const float *q, size_t nq, const float *xb, size_t nb, int d, size_t k,
             const uint8_t *dead, float *D, int64_t *I);
int idxf_knn_faiss(const float *q, size_t nq, const float *xb, size_t nb, int d, size_t k,
                   const uint8_t *dead, float *D, int64_t *I);

/* Every row with inner product > radius for one query; *n hits in *D, *I
 * (malloc'ed, in row order; free() them). */
int idxf_range(const float *q, const float *xb, size_t nb, int d, float radius,
               const uint8_t *dead, size_t *n, float **D, int64_t **I);
int idxf_range_faiss(const float *q, const float *xb, size_t nb, int d, float radius,
                     const uint8_t *dead, size_t *n, float **D, int64_t **I);

/* The mapped rows of a loaded Flat index (idx.c), valid while ix lives and
 * is not modified: for benchmarks that must read the very memory idx_search
 * reads. PERR_INVALID if ix has no mapped base. */
struct idx;
int idxf_base(const struct idx *ix, const float **x, const int64_t **ids, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
