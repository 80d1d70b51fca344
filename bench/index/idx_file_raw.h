/* Raw FAISS from an idx file (layout: docs/index.md), for benchmarks that
 * compare idx_search with FAISS itself on the same vectors: a Flat file
 * (raw rows) becomes a fresh IndexIDMap2(IndexFlatIP) holding a copy of its
 * rows; any other type is its FAISS main index read with faiss_read_index.
 * Exits on error (benchmarks only). */
#ifndef PERCEPT_BENCH_IDX_FILE_RAW_H
#define PERCEPT_BENCH_IDX_FILE_RAW_H

#include <c_api/IndexFlat_c.h>
#include <c_api/Index_c.h>
#include <c_api/MetaIndexes_c.h>
#include <c_api/error_c.h>
#include <c_api/index_io_c.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t bench_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static inline FaissIndex *bench_raw_faiss(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char h[64];
    if (!f || fread(h, 1, 64, f) != 64) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    uint32_t dim = (uint32_t)bench_le(h + 12, 4), flags = (uint32_t)bench_le(h + 24, 4);
    uint32_t flen = (uint32_t)bench_le(h + 28, 4), n_params = (uint32_t)bench_le(h + 52, 4);
    FaissIndex *raw = NULL;
    if (!(flags & 2)) { /* FAISS layout: the main index follows the factory */
        fseek(f, 64 + flen, SEEK_SET);
        if (faiss_read_index(f, 0, &raw)) { fprintf(stderr, "faiss_read_index failed\n"); exit(1); }
        fclose(f);
        return raw;
    }
    uint64_t n = bench_le(h + 32, 8);
    uint64_t ids_at = (64 + flen + 40 * (uint64_t)n_params + 4095) / 4096 * 4096;
    uint64_t x_at = (ids_at + 8 * n + 4095) / 4096 * 4096;
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    float *x = malloc((n ? n : 1) * dim * sizeof *x);
    if (!ids || !x || fseek(f, (long)ids_at, SEEK_SET) || fread(ids, 8, n, f) != n ||
        fseek(f, (long)x_at, SEEK_SET) || fread(x, 4 * (size_t)dim, n, f) != n) {
        fprintf(stderr, "cannot read the rows of %s\n", path);
        exit(1);
    }
    fclose(f);
    FaissIndexFlatIP *flat = NULL;
    FaissIndexIDMap2 *map = NULL;
    if (faiss_IndexFlatIP_new_with(&flat, (idx_t)dim) || faiss_IndexIDMap2_new(&map, flat) ||
        faiss_Index_add_with_ids(map, (idx_t)n, x, ids)) {
        fprintf(stderr, "FAISS: %s\n", faiss_get_last_error());
        exit(1);
    }
    faiss_IndexIDMap2_set_own_fields(map, 1);
    free(ids);
    free(x);
    return map;
}

#endif
