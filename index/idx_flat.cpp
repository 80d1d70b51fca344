/* idx_flat.cpp: the C boundary to FAISS's C++ brute-force kernels
 * (knn_inner_product, range_search_inner_product), which its C API does not
 * export. DESIGN: owns nothing; never lets an exception cross into C. */
#include "index/idx_flat.h"

extern "C" {
#include "common/perr.h"
}

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/distances.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>

namespace {

/* Live rows: bit clear in the tombstone bitmap. */
struct LiveRows : faiss::IDSelector {
    const uint8_t *dead;
    explicit LiveRows(const uint8_t *d) : dead(d) {}
    bool is_member(idx_t r) const override { return !(dead[r >> 3] >> (r & 7) & 1); }
};

int fail(const char *what, const std::exception &e) {
    int code = dynamic_cast<const std::bad_alloc *>(&e) ? PERR_NOMEM : PERR_INDEX;
    return perr_set(code, "%s: FAISS: %s", what, e.what());
}

} // namespace

extern "C" int idxf_knn(const float *q, size_t nq, const float *xb, size_t nb, int d,
                        size_t k, const uint8_t *dead, float *D, int64_t *I) {
    try {
        LiveRows live(dead);
        faiss::knn_inner_product(q, xb, (size_t)d, nq, nb, k, D, I, dead ? &live : nullptr);
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
        LiveRows live(dead);
        faiss::RangeSearchResult r(1);
        faiss::range_search_inner_product(q, xb, (size_t)d, 1, nb, radius, &r,
                                          dead ? &live : nullptr);
        size_t m = r.lims[1] - r.lims[0];
        float *dd = (float *)malloc((m ? m : 1) * sizeof *dd);
        int64_t *ii = (int64_t *)malloc((m ? m : 1) * sizeof *ii);
        if (!dd || !ii) {
            free(dd);
            free(ii);
            return perr_set(PERR_NOMEM, "idx_range_search: %zu hits", m);
        }
        memcpy(dd, r.distances + r.lims[0], m * sizeof *dd);
        for (size_t i = 0; i < m; i++) ii[i] = r.labels[r.lims[0] + i];
        *n = m;
        *D = dd;
        *I = ii;
        return PERR_OK;
    } catch (const std::exception &e) {
        return fail("idx_range_search (mapped Flat base)", e);
    }
}
