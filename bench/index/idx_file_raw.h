/* Raw FAISS from an idx file (layout: docs/index.md), for benchmarks that
 * compare idx_search with FAISS itself on the same vectors:
 *   bench_raw_faiss(): any type but Flat: its FAISS main index read with
 *     faiss_read_index (a Flat file becomes an IndexIDMap2(IndexFlatIP)
 *     holding a heap copy of its rows: not the memory the engine scans);
 *   bench_flat_map(): a Flat file mapped read-only, its ids and rows in
 *     place: FAISS's own kernel (idxf_knn_faiss) run on it reads the very
 *     pages the engine's idx_load mapping reads (same file, page cache).
 * Exits on error (benchmarks only). */
#ifndef PERCEPT_BENCH_IDX_FILE_RAW_H
#define PERCEPT_BENCH_IDX_FILE_RAW_H

#include <c_api/IndexFlat_c.h>
#include <c_api/Index_c.h>
#include <c_api/MetaIndexes_c.h>
#include <c_api/error_c.h>
#include <c_api/index_io_c.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static inline uint64_t bench_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Header fields and the offsets of the raw Flat ids and rows. */
typedef struct bench_idx_hdr {
    uint32_t dim, flags, flen, n_params;
    uint64_t n, ids_at, x_at;
} bench_idx_hdr;

static inline bench_idx_hdr bench_idx_parse(const unsigned char *h) {
    bench_idx_hdr r;
    r.dim = (uint32_t)bench_le(h + 12, 4);
    r.flags = (uint32_t)bench_le(h + 24, 4);
    r.flen = (uint32_t)bench_le(h + 28, 4);
    r.n_params = (uint32_t)bench_le(h + 52, 4);
    r.n = bench_le(h + 32, 8);
    r.ids_at = (64 + r.flen + 40 * (uint64_t)r.n_params + 4095) / 4096 * 4096;
    r.x_at = (r.ids_at + 8 * r.n + 4095) / 4096 * 4096;
    return r;
}

/* A raw Flat file mapped read-only (munmap(map, len) when done). */
typedef struct bench_flat {
    void *map;
    size_t len;
    const int64_t *ids;
    const float *x;
    size_t n;
    int dim;
} bench_flat;

static inline bench_flat bench_flat_map(const char *path) {
    bench_flat b = {0};
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || st.st_size < 64) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    b.len = (size_t)st.st_size;
    b.map = mmap(NULL, b.len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (b.map == MAP_FAILED) { perror("mmap"); exit(1); }
    bench_idx_hdr h = bench_idx_parse(b.map);
    if (!(h.flags & 2) || h.x_at + 4 * (uint64_t)h.dim * h.n != b.len) {
        fprintf(stderr, "%s: not a raw Flat file\n", path);
        exit(1);
    }
    b.ids = (const int64_t *)((const unsigned char *)b.map + h.ids_at);
    b.x = (const float *)((const unsigned char *)b.map + h.x_at);
    b.n = h.n;
    b.dim = (int)h.dim;
    return b;
}

static inline FaissIndex *bench_raw_faiss(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char hb[64];
    if (!f || fread(hb, 1, 64, f) != 64) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    bench_idx_hdr h = bench_idx_parse(hb);
    FaissIndex *raw = NULL;
    if (!(h.flags & 2)) { /* FAISS layout: the main index follows the factory */
        fseek(f, 64 + h.flen, SEEK_SET);
        if (faiss_read_index(f, 0, &raw)) { fprintf(stderr, "faiss_read_index failed\n"); exit(1); }
        fclose(f);
        return raw;
    }
    uint64_t n = h.n;
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    float *x = malloc((n ? n : 1) * h.dim * sizeof *x);
    if (!ids || !x || fseek(f, (long)h.ids_at, SEEK_SET) || fread(ids, 8, n, f) != n ||
        fseek(f, (long)h.x_at, SEEK_SET) || fread(x, 4 * (size_t)h.dim, n, f) != n) {
        fprintf(stderr, "cannot read the rows of %s\n", path);
        exit(1);
    }
    fclose(f);
    FaissIndexFlatIP *flat = NULL;
    FaissIndexIDMap2 *map = NULL;
    if (faiss_IndexFlatIP_new_with(&flat, (idx_t)h.dim) || faiss_IndexIDMap2_new(&map, flat) ||
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
