/* idx_flat.cpp: exact k-NN and range search over a raw row-major float
 * array (the mapped base of a loaded Flat index), and the C boundary to
 * FAISS's C++ brute-force kernels, which its C API does not export.
 *
 * DESIGN. FAISS's knn_inner_product answers a batch of >= 20 queries
 * without tombstones with BLAS (kept: a matrix product beats any scan
 * there). Everything else it answers one query and one row at a time
 * (exhaustive_inner_product_seq: fvec_inner_product per row, one FMA chain,
 * slower than memory; one pass over the rows per query). We take that path
 * over: rows in blocks that stay in L2, each block scored for every query
 * of the batch with idx_kern (8 rows side by side, bit-identical scores),
 * and the scores fed row by row to FAISS's own result handlers (its heap
 * below k = 100, its reservoir from there). Same scores in the same order
 * into the same handler: the same ids, order and ties as FAISS. Range
 * search keeps every live row with score > radius, in row order, as FAISS's
 * RangeSearchResultHandler. Threads: queries split over OpenMP threads as
 * FAISS does (one thread for one query). Owns nothing; never lets an
 * exception cross into C. */
#include "index/idx_flat.h"

extern "C" {
#include "common/perr.h"
#include "index/idx_kern.h"
}

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/ResultHandler.h>
#include <faiss/utils/distances.h>

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

namespace {

inline bool is_dead(const uint8_t *dead, size_t r) { return dead && (dead[r >> 3] >> (r & 7) & 1); }

/* Live rows: bit clear in the tombstone bitmap (FAISS's own path). */
struct LiveRows : faiss::IDSelector {
    const uint8_t *dead;
    explicit LiveRows(const uint8_t *d) : dead(d) {}
    bool is_member(idx_t r) const override { return !is_dead(dead, (size_t)r); }
};

int fail(const char *what, const std::exception &e) {
    int code = dynamic_cast<const std::bad_alloc *>(&e) ? PERR_NOMEM : PERR_INDEX;
    return perr_set(code, "%s: FAISS: %s", what, e.what());
}

/* Rows per block: for a batch ~256 KiB, so that every query after the
 * first reads the block from L2; for one query 16384 rows (the kernel
 * walks 8 segments of a block as sequential streams: long ones are
 * faster). */
size_t block_rows(size_t d, size_t nq) {
    return nq == 1 ? 16384 : std::max<size_t>(64, (size_t)65536 / d);
}

/* Feeds the score of every live row, in row order, to hs[0..nq) (queries
 * q[0..nq)); ip holds block_rows(d, nq) floats. */
template <class SH>
void scan(const float *q, size_t nq, const float *xb, size_t nb, size_t d, const uint8_t *dead,
          SH *hs, float *ip) {
    size_t blk = block_rows(d, nq);
    for (size_t b = 0; b < nb; b += blk) {
        size_t m = std::min(blk, nb - b);
        for (size_t i = 0; i < nq; i++) {
            idxk_ip_ny(ip, q + i * d, xb + b * d, d, m);
            SH &h = hs[i];
            if (!dead)
                for (size_t j = 0; j < m; j++) h.add_result(ip[j], (int64_t)(b + j));
            else
                for (size_t j = 0; j < m; j++)
                    if (!is_dead(dead, b + j)) h.add_result(ip[j], (int64_t)(b + j));
        }
    }
}

/* k-NN of nq queries with FAISS result handler type RH. */
template <class RH>
void knn_scan(const float *q, size_t nq, const float *xb, size_t nb, size_t d, size_t k,
              const uint8_t *dead, float *D, int64_t *I) {
    using SH = typename RH::SingleResultHandler;
    RH res(nq, D, I, k);
    std::vector<SH> hs;
    hs.reserve(nq); /* a reservoir points into its own vectors: no moves after begin() */
    for (size_t i = 0; i < nq; i++) hs.emplace_back(res);
    for (size_t i = 0; i < nq; i++) hs[i].begin(i);
    int nt = (int)std::min<size_t>(nq, (size_t)omp_get_max_threads());
    size_t blk = block_rows(d, 1); /* the larger of the two */
    std::vector<float> ip((size_t)nt * blk);
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        size_t q0 = nq * t / n, q1 = nq * (t + 1) / n;
        scan(q + q0 * d, q1 - q0, xb, nb, d, dead, hs.data() + q0, ip.data() + (size_t)t * blk);
    }
    for (size_t i = 0; i < nq; i++) hs[i].end();
}

/* Collects (score, row) of rows with score > radius (one query). */
struct RangeCollect {
    float radius;
    std::vector<float> D;
    std::vector<int64_t> I;
    void add_result(float s, int64_t r) {
        if (s > radius) { D.push_back(s); I.push_back(r); }
    }
};

int hits_out(size_t m, const float *d, const int64_t *i, size_t *n, float **D, int64_t **I) {
    float *dd = (float *)malloc((m ? m : 1) * sizeof *dd);
    int64_t *ii = (int64_t *)malloc((m ? m : 1) * sizeof *ii);
    if (!dd || !ii) {
        free(dd);
        free(ii);
        return perr_set(PERR_NOMEM, "idx_range_search: %zu hits", m);
    }
    if (m) {
        memcpy(dd, d, m * sizeof *dd);
        memcpy(ii, i, m * sizeof *ii);
    }
    *n = m;
    *D = dd;
    *I = ii;
    return PERR_OK;
}

} // namespace

extern "C" int idxf_knn(const float *q, size_t nq, const float *xb, size_t nb, int d,
                        size_t k, const uint8_t *dead, float *D, int64_t *I) {
    if (!dead && nq >= (size_t)faiss::distance_compute_blas_threshold)
        return idxf_knn_faiss(q, nq, xb, nb, d, k, nullptr, D, I);
    try {
        if (k < (size_t)faiss::distance_compute_min_k_reservoir)
            knn_scan<faiss::HeapResultHandler<faiss::CMin<float, int64_t>>>(q, nq, xb, nb, (size_t)d, k,
                                                                            dead, D, I);
        else
            knn_scan<faiss::ReservoirResultHandler<faiss::CMin<float, int64_t>>>(q, nq, xb, nb, (size_t)d,
                                                                                 k, dead, D, I);
        return PERR_OK;
    } catch (const std::exception &e) {
        return fail("idx_search (mapped Flat base)", e);
    }
}

extern "C" int idxf_range(const float *q, const float *xb, size_t nb, int d, float radius,
                          const uint8_t *dead, size_t *n, float **D, int64_t **I) {
    *n = 0;
    *D = nullptr;
    *I = nullptr;
    try {
        RangeCollect c;
        c.radius = radius;
        std::vector<float> ip(block_rows((size_t)d, 1));
        scan(q, 1, xb, nb, (size_t)d, dead, &c, ip.data());
        return hits_out(c.D.size(), c.D.data(), c.I.data(), n, D, I);
    } catch (const std::exception &e) {
        return fail("idx_range_search (mapped Flat base)", e);
    }
}

extern "C" int idxf_knn_faiss(const float *q, size_t nq, const float *xb, size_t nb, int d,
                              size_t k, const uint8_t *dead, float *D, int64_t *I) {
    try {
        LiveRows live(dead);
        faiss::knn_inner_product(q, xb, (size_t)d, nq, nb, k, D, I, dead ? &live : nullptr);
        return PERR_OK;
    } catch (const std::exception &e) {
        return fail("idx_search (mapped Flat base)", e);
    }
}

extern "C" int idxf_range_faiss(const float *q, const float *xb, size_t nb, int d, float radius,
                                const uint8_t *dead, size_t *n, float **D, int64_t **I) {
    *n = 0;
    *D = nullptr;
    *I = nullptr;
    try {
        LiveRows live(dead);
        faiss::RangeSearchResult r(1);
        faiss::range_search_inner_product(q, xb, (size_t)d, 1, nb, radius, &r,
                                          dead ? &live : nullptr);
        size_t m = r.lims[1] - r.lims[0];
        std::vector<int64_t> ids(r.labels + r.lims[0], r.labels + r.lims[1]);
        return hits_out(m, r.distances + r.lims[0], ids.data(), n, D, I);
    } catch (const std::exception &e) {
        return fail("idx_range_search (mapped Flat base)", e);
    }
}
