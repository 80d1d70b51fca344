/* idx.c: one FAISS index per collection, through FAISS's C API.
 *
 * DESIGN. An idx owns:
 *   main   the FAISS index: an IVF index (native ids) or an IndexIDMap2 over
 *          any other type (Flat, SQ, PQ, HNSW...). Until it is trained it is
 *          empty and:
 *   buf    an IndexIDMap2(IndexFlatIP) side buffer holds the vectors added so
 *          far; every read path uses it (exact). Training trains a fresh
 *          index built from the factory outside the lock, then moves the
 *          buffer in under the write lock and swaps.
 *   ids    our hash of live ids (duplicate check, contains, counts, filtered
 *          scans); for HNSW it maps an id to its position in the graph.
 *   tomb   HNSW only: one byte per graph position, 1 = removed. HNSW is
 *          searched through its sub-index (positions), tombstones dropped,
 *          positions translated through the IDMap2's id_map.
 *   base   Flat only, after idx_load: the file's ids and vectors used in
 *          place from the read-only mapping (never copied, never written),
 *          with a tombstone bitmap for rows removed since; ids maps a base
 *          id to its row (>= 0; -1 for ids in main). main is then the
 *          in-memory "delta" of vectors added after the load. Searches run
 *          our FAISS-identical scan on the mapping (idx_flat.cpp)
 *          and merge with main's results.
 * It never touches storage or the encoder, never aborts on bad input, and
 * never lets FAISS parse file bytes whose checksum it has not verified.
 * Persistence (format byte by byte: docs/index.md) is at the end of this file.
 */
#define _GNU_SOURCE
#include "index/idx.h"

#include "common/perr.h"
#include "index/idx_flat.h"
#include "index/idx_kern.h"

#include <c_api/AutoTune_c.h>
#include <c_api/IndexFlat_c.h>
#include <c_api/IndexIVF_c.h>
#include <c_api/Index_c.h>
#include <c_api/MetaIndexes_c.h>
#include <c_api/error_c.h>
#include <c_api/impl/AuxIndexStructures_c.h>
#include <c_api/index_factory_c.h>
#include <c_api/index_io_c.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
/* libxxhash's runtime dispatch (AVX2/AVX-512 when the CPU has them): the
 * plain XXH3 entry points are its SSE2 build, several times slower here.
 * Same hash values either way. */
#include <xxh_x86dispatch.h>
#endif

enum kind { K_IDMAP, K_IVF, K_HNSW };

#define PARAMS_MAX 16
#define PARAM_NAME_MAX 31

typedef struct idmap {
    int64_t *keys; /* -1 = empty slot */
    int64_t *vals;
    size_t cap;    /* power of two, or 0 */
    size_t n;
} idmap;

/* Flat: the rows of the loaded file, used in place (see DESIGN). */
typedef struct flat_base {
    const unsigned char *map; /* the whole file, PROT_READ; NULL if none */
    size_t map_len;
    const int64_t *ids;       /* n ids, in the mapping */
    const float *x;           /* n x dim, in the mapping */
    size_t n;
    uint8_t *dead;            /* bit r: row r removed; NULL until a remove */
    size_t n_dead;
} flat_base;

struct idx {
    char factory[IDX_FACTORY_MAX + 1];
    int dim;
    enum kind kind;
    idx_opts opts;
    size_t train_size;

    FaissIndex *main;
    FaissIndex *buf;      /* non-NULL exactly while !trained */
    int trained;
    int broken;           /* a FAISS failure left main inconsistent */

    idmap ids;
    unsigned char *tomb;  /* HNSW: per graph position */
    size_t tomb_cap, n_tomb;
    flat_base base;       /* Flat after idx_load (n == 0 otherwise) */

    struct { char name[PARAM_NAME_MAX + 1]; double value; } params[PARAMS_MAX];
    int n_params;

    pthread_rwlock_t rw;
    pthread_mutex_t train_mu;
    atomic_int training;
    char train_err[256];  /* last failure of an automatic training */
};

/* ------------------------------------------------------------ FAISS errors */

/* Translates a failed FAISS C API call, keeping FAISS's text. */
static int ferr(int code, const char *what) {
    const char *m = faiss_get_last_error();
    if (!m) m = "unknown error";
    if (strstr(m, "bad_alloc") || strstr(m, "std::bad_alloc")) code = PERR_NOMEM;
    return perr_set(code, "%s: FAISS: %s", what, m);
}

/* ---------------------------------------------------------------- threads */

static atomic_int g_threads;       /* 0 = OpenMP default */
static int g_default_threads;
static pthread_once_t g_threads_once = PTHREAD_ONCE_INIT;

static void threads_init(void) {
    const char *e = getenv("OMP_NUM_THREADS");
    int n = e ? atoi(e) : 0;
    g_default_threads = n > 0 ? n : omp_get_num_procs();
}

/* OpenMP's thread count is per calling thread: apply ours at every call. */
static void apply_threads(void) {
    pthread_once(&g_threads_once, threads_init);
    int want = atomic_load(&g_threads);
    if (want <= 0) want = g_default_threads;
    if (omp_get_max_threads() != want) omp_set_num_threads(want);
}

void idx_set_threads(int n) { atomic_store(&g_threads, n > 0 ? n : 0); }
int idx_get_threads(void) { return atomic_load(&g_threads); }

/* ------------------------------------------------------------ id hash map */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int idmap_grow(idmap *m, size_t want) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap * 7 / 10 < want) cap *= 2;
    if (cap == m->cap) return PERR_OK;
    int64_t *k = malloc(cap * sizeof *k), *v = malloc(cap * sizeof *v);
    if (!k || !v) {
        free(k); free(v);
        return perr_set(PERR_NOMEM, "idx: id map of %zu slots", cap);
    }
    memset(k, 0xff, cap * sizeof *k);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] < 0) continue;
        size_t j = mix64((uint64_t)m->keys[i]) & (cap - 1);
        while (k[j] >= 0) j = (j + 1) & (cap - 1);
        k[j] = m->keys[i];
        v[j] = m->vals[i];
    }
    free(m->keys); free(m->vals);
    m->keys = k; m->vals = v; m->cap = cap;
    return PERR_OK;
}

static size_t idmap_slot(const idmap *m, int64_t key) {
    if (!m->cap) return SIZE_MAX;
    size_t j = mix64((uint64_t)key) & (m->cap - 1);
    while (m->keys[j] >= 0) {
        if (m->keys[j] == key) return j;
        j = (j + 1) & (m->cap - 1);
    }
    return SIZE_MAX;
}

/* Inserts key (not present; the caller checked and reserved capacity). */
static void idmap_put_new(idmap *m, int64_t key, int64_t val) {
    size_t j = mix64((uint64_t)key) & (m->cap - 1);
    while (m->keys[j] >= 0) j = (j + 1) & (m->cap - 1);
    m->keys[j] = key;
    m->vals[j] = val;
    m->n++;
}

/* Inserts key unless present (one probe sequence): 1 if inserted, 0 if
 * present. The caller reserved capacity. */
static int idmap_put_unique(idmap *m, int64_t key, int64_t val) {
    size_t j = mix64((uint64_t)key) & (m->cap - 1);
    while (m->keys[j] >= 0) {
        if (m->keys[j] == key) return 0;
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key;
    m->vals[j] = val;
    m->n++;
    return 1;
}

/* Linear probing with backward-shift deletion (no tombstones in the map). */
static int idmap_del(idmap *m, int64_t key) {
    size_t j = idmap_slot(m, key);
    if (j == SIZE_MAX) return 0;
    size_t mask = m->cap - 1, i = j;
    for (;;) {
        i = (i + 1) & mask;
        if (m->keys[i] < 0) break;
        size_t home = mix64((uint64_t)m->keys[i]) & mask;
        /* move i into the hole j if its home is not in (j, i] cyclically */
        if (((i - home) & mask) >= ((i - j) & mask)) {
            m->keys[j] = m->keys[i];
            m->vals[j] = m->vals[i];
            j = i;
        }
    }
    m->keys[j] = -1;
    m->n--;
    return 1;
}

static void idmap_free(idmap *m) {
    free(m->keys); free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ locks */

static void rdlock(const idx *ix) { pthread_rwlock_rdlock(&((idx *)ix)->rw); }
static void wrlock(idx *ix) { pthread_rwlock_wrlock(&ix->rw); }
static void unlock(const idx *ix) { pthread_rwlock_unlock(&((idx *)ix)->rw); }

/* ------------------------------------------------------------ create, free */

idx_opts idx_opts_default(void) {
    idx_opts o = {.auto_train = 1, .train_size = 0, .train_max = 65536,
                  .filter_scan_max = 32768, .check_norm = 1};
    return o;
}

/* The HNSW graph (and NSG) cannot remove: such indexes use tombstones. */
static int factory_is_graph(const char *f) {
    return !strncmp(f, "HNSW", 4) || !strncmp(f, "NSG", 3);
}

static size_t derive_train_size(const idx *ix, FaissIndex *raw) {
    if (faiss_Index_is_trained(raw)) return 0;
    size_t t = 0;
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(raw);
    if (ivf) t = 39 * faiss_IndexIVF_nlist(ivf);
    if (strstr(ix->factory, "PQ") && t < 39 * 256) t = 39 * 256;
    if (strstr(ix->factory, "SQ") && t < 4096) t = 4096;
    if (!t) t = ix->dim * 2 > 4096 ? (size_t)ix->dim * 2 : 4096;
    return t;
}

/* A fresh, empty index of ix's factory, wrapped as ix->kind wants. */
static int new_faiss(const idx *ix, FaissIndex **out, enum kind *kind_out) {
    FaissIndex *raw = NULL;
    *out = NULL;
    if (faiss_index_factory(&raw, ix->dim, ix->factory, METRIC_INNER_PRODUCT))
        return ferr(PERR_INVALID, ix->factory);
    if (faiss_Index_metric_type(raw) != METRIC_INNER_PRODUCT) {
        faiss_Index_free(raw);
        return perr_set(PERR_INVALID, "%s: not an inner-product index", ix->factory);
    }
    if (faiss_IndexIVF_cast(raw)) {
        *kind_out = K_IVF;
        *out = raw;
        return PERR_OK;
    }
    FaissIndexIDMap2 *map = NULL;
    if (faiss_IndexIDMap2_new(&map, raw)) {
        int rc = ferr(PERR_INDEX, ix->factory);
        faiss_Index_free(raw);
        return rc;
    }
    faiss_IndexIDMap2_set_own_fields(map, 1);
    *kind_out = factory_is_graph(ix->factory) ? K_HNSW : K_IDMAP;
    *out = map;
    return PERR_OK;
}

static int new_buffer(int dim, FaissIndex **out) {
    FaissIndexFlatIP *flat = NULL;
    FaissIndexIDMap2 *map = NULL;
    *out = NULL;
    if (faiss_IndexFlatIP_new_with(&flat, dim)) return ferr(PERR_INDEX, "idx: side buffer");
    if (faiss_IndexIDMap2_new(&map, flat)) {
        faiss_Index_free(flat);
        return ferr(PERR_INDEX, "idx: side buffer");
    }
    faiss_IndexIDMap2_set_own_fields(map, 1);
    *out = map;
    return PERR_OK;
}

static int idx_alloc(const char *factory, int dim, const idx_opts *opts, idx **out) {
    *out = NULL;
    if (!factory || !*factory)
        return perr_set(PERR_INVALID, "idx: empty factory string");
    size_t flen = strlen(factory);
    if (flen > IDX_FACTORY_MAX)
        return perr_set(PERR_INVALID, "idx: factory string of %zu bytes (max %d)",
                        flen, IDX_FACTORY_MAX);
    if (strstr(factory, "IDMap"))
        return perr_set(PERR_INVALID, "%s: IDMap is not allowed (idx manages ids itself)",
                        factory);
    if (dim < 1 || dim > IDX_DIM_MAX)
        return perr_set(PERR_INVALID, "idx: dimension %d (1..%d)", dim, IDX_DIM_MAX);
    idx *ix = calloc(1, sizeof *ix);
    if (!ix) return perr_set(PERR_NOMEM, "idx: create");
    memcpy(ix->factory, factory, flen + 1);
    ix->dim = dim;
    ix->opts = opts ? *opts : idx_opts_default();
    if (!ix->opts.train_max) ix->opts.train_max = idx_opts_default().train_max;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->rw, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&ix->train_mu, NULL);
    *out = ix;
    return PERR_OK;
}

int idx_create(const char *factory, int dim, const idx_opts *opts, idx **out) {
    idx *ix;
    if (!out) return perr_set(PERR_INVALID, "idx_create: NULL out");
    *out = NULL;
    int rc = idx_alloc(factory, dim, opts, &ix);
    if (rc) return rc;
    apply_threads();
    if ((rc = new_faiss(ix, &ix->main, &ix->kind))) goto fail;
    FaissIndex *raw = ix->kind == K_IVF ? ix->main : faiss_IndexIDMap2_sub_index(ix->main);
    ix->trained = faiss_Index_is_trained(raw);
    ix->train_size = ix->opts.train_size ? ix->opts.train_size : derive_train_size(ix, raw);
    if (ix->trained) ix->train_size = 0;
    if (!ix->trained && (rc = new_buffer(dim, &ix->buf))) goto fail;
    *out = ix;
    return PERR_OK;
fail:
    idx_free(ix);
    return rc;
}

void idx_free(idx *ix) {
    if (!ix) return;
    if (ix->main) faiss_Index_free(ix->main);
    if (ix->buf) faiss_Index_free(ix->buf);
    idmap_free(&ix->ids);
    free(ix->tomb);
    if (ix->base.map) munmap((void *)ix->base.map, ix->base.map_len);
    free(ix->base.dead);
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->train_mu);
    free(ix);
}

/* ------------------------------------------------------------- accessors */

int idx_needs_training(const idx *ix) {
    rdlock(ix);
    int r = !ix->trained;
    unlock(ix);
    return r;
}

size_t idx_train_size(const idx *ix) {
    rdlock(ix);
    size_t r = ix->trained ? 0 : ix->train_size;
    unlock(ix);
    return r;
}

size_t idx_count(const idx *ix) {
    rdlock(ix);
    size_t n = ix->ids.n;
    unlock(ix);
    return n;
}

int idx_dim(const idx *ix) { return ix->dim; }
const char *idx_factory(const idx *ix) { return ix->factory; }

int idx_contains(const idx *ix, int64_t id) {
    rdlock(ix);
    int r = id >= 0 && idmap_slot(&ix->ids, id) != SIZE_MAX;
    unlock(ix);
    return r;
}

void idx_get_stats(const idx *ix, idx_stats *st) {
    memset(st, 0, sizeof *st);
    rdlock(ix);
    st->count = ix->ids.n;
    st->buffered = ix->buf ? (size_t)faiss_Index_ntotal(ix->buf) : 0;
    st->tombstones = ix->n_tomb;
    st->tombstone_frac = ix->n_tomb ? (double)ix->n_tomb / (double)(ix->ids.n + ix->n_tomb) : 0;
    st->trained = ix->trained;
    st->training = atomic_load(&((idx *)ix)->training);
    st->train_size = ix->trained ? 0 : ix->train_size;
    st->dim = ix->dim;
    memcpy(st->train_error, ix->train_err, sizeof st->train_error);
    unlock(ix);
}

/* --------------------------------------------------------------- checks */

static int check_vectors(const idx *ix, const float *x, size_t n, const char *what) {
    if (n && !x) return perr_set(PERR_INVALID, "idx: %s: NULL vectors", what);
    int d = ix->dim;
    for (size_t i = 0; i < n; i++) {
        const float *v = x + i * (size_t)d;
        float s = 0;
        for (int j = 0; j < d; j++) s += v[j] * v[j];
        if (!isfinite(s))
            return perr_set(PERR_INVALID, "idx: %s row %zu: non-finite value", what, i);
        if (ix->opts.check_norm && fabsf(s - 1.0f) > IDX_NORM_TOL)
            return perr_set(PERR_INVALID,
                            "idx: %s row %zu: squared L2 norm %g, vectors must be normalized",
                            what, i, (double)s);
    }
    return PERR_OK;
}

int idx_normalize(float *x, size_t n, int dim) {
    if (dim < 1) return perr_set(PERR_INVALID, "idx_normalize: dimension %d", dim);
    for (size_t i = 0; i < n; i++) {
        float *v = x + i * (size_t)dim;
        double s = 0;
        for (int j = 0; j < dim; j++) s += (double)v[j] * v[j];
        if (!isfinite(s) || s == 0)
            return perr_set(PERR_INVALID, "idx_normalize: row %zu is %s", i,
                            s == 0 ? "zero" : "not finite");
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < dim; j++) v[j] *= inv;
    }
    return PERR_OK;
}

static FaissIndex *graph_of(const idx *ix) { return faiss_IndexIDMap2_sub_index(ix->main); }

/* Makes the tombstone array cover every graph position. */
static int tomb_fit(idx *ix) {
    size_t need = (size_t)faiss_Index_ntotal(graph_of(ix));
    if (need <= ix->tomb_cap) return PERR_OK;
    size_t cap = ix->tomb_cap ? ix->tomb_cap : 1024;
    while (cap < need) cap *= 2;
    unsigned char *t = realloc(ix->tomb, cap);
    if (!t) return perr_set(PERR_NOMEM, "idx: tombstones for %zu vectors", cap);
    memset(t + ix->tomb_cap, 0, cap - ix->tomb_cap);
    ix->tomb = t;
    ix->tomb_cap = cap;
    return PERR_OK;
}

/* ---------------------------------------------------------------- training */

static int apply_params(const idx *ix, FaissIndex *target) {
    if (!ix->n_params) return PERR_OK;
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps)) return ferr(PERR_INDEX, "idx: parameters");
    int rc = PERR_OK;
    for (int i = 0; i < ix->n_params && !rc; i++)
        if (faiss_ParameterSpace_set_index_parameter(ps, target, ix->params[i].name,
                                                     ix->params[i].value))
            rc = ferr(PERR_INVALID, ix->params[i].name);
    faiss_ParameterSpace_free(ps);
    return rc;
}

/* Buffered vectors and ids (valid until the buffer changes). */
static void buf_data(const idx *ix, const float **x, const int64_t **ids, size_t *n) {
    float *xb = NULL;
    idx_t *idm = NULL;
    size_t nb = 0, nm = 0;
    faiss_IndexFlat_xb(faiss_IndexFlat_cast(faiss_IndexIDMap2_sub_index(ix->buf)), &xb, &nb);
    faiss_IndexIDMap2_id_map(ix->buf, &idm, &nm);
    *x = xb;
    *ids = idm;
    *n = nm;
}

/* Caller holds train_mu. */
static int train_locked(idx *ix, const float *x, size_t n) {
    float *sample = NULL;
    FaissIndex *staging = NULL;
    enum kind kind;
    int rc;

    rdlock(ix);
    if (ix->trained) { unlock(ix); return PERR_OK; }
    if (ix->broken) { unlock(ix); return perr_set(PERR_INDEX, "idx: index damaged, rebuild it"); }
    if (!x) {
        const float *bx;
        const int64_t *bid;
        size_t nb;
        buf_data(ix, &bx, &bid, &nb);
        size_t take = nb < ix->opts.train_max ? nb : ix->opts.train_max;
        if (!take) {
            unlock(ix);
            return perr_set(PERR_INVALID, "idx: %s: nothing to train on (buffer empty)",
                            ix->factory);
        }
        sample = malloc(take * (size_t)ix->dim * sizeof *sample);
        if (!sample) {
            unlock(ix);
            return perr_set(PERR_NOMEM, "idx: training sample of %zu vectors", take);
        }
        for (size_t i = 0; i < take; i++) /* evenly spread over the buffer */
            memcpy(sample + i * ix->dim, bx + (i * nb / take) * ix->dim,
                   ix->dim * sizeof *sample);
        x = sample;
        n = take;
    }
    unlock(ix);

    atomic_store(&ix->training, 1);
    apply_threads();
    if ((rc = new_faiss(ix, &staging, &kind))) goto out;
    if (faiss_Index_train(staging, (idx_t)n, x)) {
        rc = ferr(PERR_INVALID, ix->factory);
        goto out;
    }

    wrlock(ix);
    const float *bx;
    const int64_t *bid;
    size_t nb;
    buf_data(ix, &bx, &bid, &nb);
    if ((rc = apply_params(ix, staging))) goto out_unlock;
    if (nb && faiss_Index_add_with_ids(staging, (idx_t)nb, bx, bid)) {
        rc = ferr(PERR_INDEX, "idx: moving the side buffer into the trained index");
        goto out_unlock;
    }
    FaissIndex *old = ix->main;
    ix->main = staging;
    staging = old;
    if (ix->kind == K_HNSW) {
        for (size_t i = 0; i < nb; i++) ix->ids.vals[idmap_slot(&ix->ids, bid[i])] = (int64_t)i;
        if ((rc = tomb_fit(ix))) ix->broken = 1;
    }
    faiss_Index_free(ix->buf);
    ix->buf = NULL;
    ix->trained = 1;
    ix->train_err[0] = 0;
out_unlock:
    unlock(ix);
out:
    atomic_store(&ix->training, 0);
    if (staging) faiss_Index_free(staging);
    free(sample);
    return rc;
}

int idx_train(idx *ix, const float *x, size_t n) {
    if (x || n) {
        if (!x || !n) return perr_set(PERR_INVALID, "idx_train: %zu vectors at %p", n, (void *)x);
        int rc = check_vectors(ix, x, n, "train");
        if (rc) return rc;
    }
    pthread_mutex_lock(&ix->train_mu);
    int rc = train_locked(ix, x, n);
    pthread_mutex_unlock(&ix->train_mu);
    return rc;
}

/* ------------------------------------------------------------ add, remove */

int idx_add(idx *ix, const float *x, const int64_t *ids, size_t n) {
    if (!n) return PERR_OK;
    if (!ids) return perr_set(PERR_INVALID, "idx_add: NULL ids");
    int rc = check_vectors(ix, x, n, "add");
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0) return perr_set(PERR_INVALID, "idx_add: row %zu: negative id %" PRId64, i, ids[i]);
    apply_threads();

    wrlock(ix);
    if (ix->broken) { rc = perr_set(PERR_INDEX, "idx: index damaged by an earlier failure, rebuild it"); goto out; }
    if ((rc = idmap_grow(&ix->ids, ix->ids.n + n))) goto out;
    FaissIndex *target = ix->trained ? ix->main : ix->buf;
    int64_t pos0 = ix->kind == K_HNSW && ix->trained ? faiss_Index_ntotal(graph_of(ix)) : -1;
    for (size_t i = 0; i < n; i++) {
        if (idmap_slot(&ix->ids, ids[i]) != SIZE_MAX) {
            for (size_t j = 0; j < i; j++) idmap_del(&ix->ids, ids[j]);
            rc = perr_set(PERR_EXISTS, "idx_add: row %zu: id %" PRId64 " already present", i, ids[i]);
            goto out;
        }
        idmap_put_new(&ix->ids, ids[i], pos0 >= 0 ? pos0 + (int64_t)i : -1);
    }
    idx_t before = faiss_Index_ntotal(target);
    if (faiss_Index_add_with_ids(target, (idx_t)n, x, ids)) {
        rc = ferr(PERR_INDEX, "idx_add");
        for (size_t j = 0; j < n; j++) idmap_del(&ix->ids, ids[j]);
        if (faiss_Index_ntotal(target) != before) ix->broken = 1;
        goto out;
    }
    if (ix->kind == K_HNSW && ix->trained && (rc = tomb_fit(ix))) ix->broken = 1;
out:;
    int want_train = !rc && !ix->trained && ix->opts.auto_train && ix->train_size &&
                     (size_t)faiss_Index_ntotal(ix->buf) >= ix->train_size;
    unlock(ix);
    if (want_train && pthread_mutex_trylock(&ix->train_mu) == 0) {
        /* The add is done; a failed training leaves the vectors buffered
         * (still searchable) and is reported through idx_get_stats(). */
        if (train_locked(ix, NULL, 0)) {
            wrlock(ix);
            snprintf(ix->train_err, sizeof ix->train_err, "%s", perr_msg());
            unlock(ix);
        }
        pthread_mutex_unlock(&ix->train_mu);
        perr_clear();
    }
    return rc;
}

int idx_remove(idx *ix, const int64_t *ids, size_t n, size_t *removed) {
    if (removed) *removed = 0;
    if (!n) return PERR_OK;
    if (!ids) return perr_set(PERR_INVALID, "idx_remove: NULL ids");
    int64_t *present = malloc(n * sizeof *present);
    if (!present) return perr_set(PERR_NOMEM, "idx_remove: %zu ids", n);
    apply_threads();
    int rc = PERR_OK;
    size_t np = 0;

    wrlock(ix);
    if (ix->broken) { rc = perr_set(PERR_INDEX, "idx: index damaged by an earlier failure, rebuild it"); goto out; }
    for (size_t i = 0; i < n; i++) /* duplicates are harmless: counted once below */
        if (ids[i] >= 0 && idmap_slot(&ix->ids, ids[i]) != SIZE_MAX) present[np++] = ids[i];
    if (!np) goto out;
    size_t base_cnt = 0;
    if (ix->base.n) { /* base rows become tombstones; the rest is in main */
        flat_base *b = &ix->base;
        if (!b->dead && !(b->dead = calloc((b->n + 7) / 8, 1))) {
            rc = perr_set(PERR_NOMEM, "idx_remove: tombstones for %zu rows", b->n);
            goto out;
        }
        size_t keep = 0;
        for (size_t i = 0; i < np; i++) {
            size_t s = idmap_slot(&ix->ids, present[i]);
            if (s == SIZE_MAX) continue; /* a duplicate in ids[], already gone */
            int64_t row = ix->ids.vals[s];
            if (row < 0) { present[keep++] = present[i]; continue; }
            b->dead[row >> 3] |= (uint8_t)(1u << (row & 7));
            b->n_dead++;
            idmap_del(&ix->ids, present[i]);
            base_cnt++;
        }
        np = keep;
        if (removed) *removed = base_cnt;
        if (!np) goto out;
    }
    if (ix->kind == K_HNSW && ix->trained) {
        size_t cnt = 0;
        for (size_t i = 0; i < np; i++) {
            size_t s = idmap_slot(&ix->ids, present[i]);
            if (s == SIZE_MAX) continue;
            ix->tomb[ix->ids.vals[s]] = 1;
            ix->n_tomb++;
            idmap_del(&ix->ids, present[i]);
            cnt++;
        }
        if (removed) *removed = cnt;
        goto out;
    }
    FaissIndex *target = ix->trained ? ix->main : ix->buf;
    FaissIDSelectorBatch *sel = NULL;
    if (faiss_IDSelectorBatch_new(&sel, np, present)) { rc = ferr(PERR_INDEX, "idx_remove"); goto out; }
    size_t nrem = 0;
    if (faiss_Index_remove_ids(target, (FaissIDSelector *)sel, &nrem)) {
        rc = ferr(PERR_INDEX, "idx_remove");
    } else {
        size_t cnt = 0;
        for (size_t i = 0; i < np; i++) cnt += (size_t)idmap_del(&ix->ids, present[i]);
        if (cnt != nrem) {
            ix->broken = 1;
            rc = perr_set(PERR_INTERNAL, "idx_remove: FAISS removed %zu vectors, %zu ids were present",
                          nrem, cnt);
        }
        if (removed) *removed = cnt + base_cnt;
    }
    faiss_IDSelector_free((FaissIDSelector *)sel);
out:
    unlock(ix);
    free(present);
    return rc;
}

/* ----------------------------------------------------------------- search */

static FaissIndex *active(const idx *ix) { return ix->trained ? ix->main : ix->buf; }

/* Vectors in the FAISS index searched (HNSW: graph size, tombstones too). */
static size_t raw_total(const idx *ix) {
    if (!ix->trained) return (size_t)faiss_Index_ntotal(ix->buf);
    if (ix->base.n) /* live base rows (flat_search skips the dead) + delta */
        return ix->base.n - ix->base.n_dead + (size_t)faiss_Index_ntotal(ix->main);
    if (ix->kind == K_HNSW) return (size_t)faiss_Index_ntotal(graph_of(ix));
    return (size_t)faiss_Index_ntotal(ix->main);
}

static int searches_graph(const idx *ix) { return ix->trained && ix->kind == K_HNSW; }

static int flat_search(const idx *ix, const float *q, size_t nq, size_t k, float *D, int64_t *I);

/* FAISS k-NN on what ix searches; HNSW labels are graph positions. */
static int raw_search(const idx *ix, const float *q, size_t nq, size_t k, float *D, int64_t *I) {
    if (ix->base.n) return flat_search(ix, q, nq, k, D, I);
    FaissIndex *t = searches_graph(ix) ? graph_of(ix) : active(ix);
    if (faiss_Index_search(t, (idx_t)nq, q, (idx_t)k, D, I)) return ferr(PERR_INDEX, "idx_search");
    return PERR_OK;
}

static inline int base_dead(const flat_base *b, size_t r) {
    return b->dead && (b->dead[r >> 3] >> (r & 7) & 1);
}

/* k-NN over a Flat base + delta, labels are our ids. The base goes through
 * idxf_knn on the mapping: answers equal to FAISS's knn_inner_product (and
 * the same BLAS switch from 20 queries) as IndexFlatIP::search. Removed
 * rows are skipped by the scan; for a batch (BLAS) with few removed rows,
 * k + n_dead rows are fetched without them instead (exact, keeps BLAS). */
static int flat_search(const idx *ix, const float *q, size_t nq, size_t k, float *D, int64_t *I) {
    const flat_base *b = &ix->base;
    size_t nd = (size_t)faiss_Index_ntotal(ix->main);
    const uint8_t *dead = b->n_dead ? b->dead : NULL;
    size_t kb = k;
    if (dead && nq >= 20 && b->n_dead <= k + 1024) { kb = k + b->n_dead; dead = NULL; }
    if (kb > b->n && kb > k) kb = b->n > k ? b->n : k;
    float *Db = D, *Dd = NULL;
    int64_t *Ib = I, *Id = NULL;
    int rc = PERR_OK;
    if (kb != k || nd) {
        Db = malloc(nq * kb * sizeof *Db);
        Ib = malloc(nq * kb * sizeof *Ib);
        if (!Db || !Ib) { rc = perr_set(PERR_NOMEM, "idx_search: %zu x %zu results", nq, kb); goto out; }
    }
    if ((rc = idxf_knn(q, nq, b->x, b->n, ix->dim, kb, dead, Db, Ib))) goto out;
    if (nd) {
        Dd = malloc(nq * k * sizeof *Dd);
        Id = malloc(nq * k * sizeof *Id);
        if (!Dd || !Id) { rc = perr_set(PERR_NOMEM, "idx_search: %zu x %zu results", nq, k); goto out; }
        if (faiss_Index_search(ix->main, (idx_t)nq, q, (idx_t)k, Dd, Id)) { rc = ferr(PERR_INDEX, "idx_search"); goto out; }
    }
    if (Db == D) { /* no delta, no over-fetch: translate in place */
        for (size_t i = 0; i < nq * k; i++) I[i] = I[i] >= 0 ? b->ids[I[i]] : -1;
        goto out;
    }
    for (size_t qi = 0; qi < nq; qi++) { /* merge, base first on ties */
        const float *db = Db + qi * kb, *dd = Dd ? Dd + qi * k : NULL;
        const int64_t *ib = Ib + qi * kb, *id = Id ? Id + qi * k : NULL;
        float *od = D + qi * k;
        int64_t *oi = I + qi * k;
        size_t jb = 0, jd = 0;
        for (size_t o = 0; o < k; o++) {
            while (jb < kb && ib[jb] >= 0 && base_dead(b, (size_t)ib[jb])) jb++;
            int hb = jb < kb && ib[jb] >= 0, hd = id && jd < k && id[jd] >= 0;
            if (hb && (!hd || db[jb] >= dd[jd])) { od[o] = db[jb]; oi[o] = b->ids[ib[jb++]]; }
            else if (hd) { od[o] = dd[jd]; oi[o] = id[jd++]; }
            else { od[o] = -INFINITY; oi[o] = -1; }
        }
    }
out:
    if (Db != D) { free(Db); free(Ib); }
    free(Dd); free(Id);
    return rc;
}

/* For benchmarks (idx_flat.h): the mapped base rows, read in place. */
int idxf_base(const idx *ix, const float **x, const int64_t **ids, size_t *n) {
    if (!ix->base.n) return perr_set(PERR_INVALID, "idxf_base: not a loaded Flat index");
    *x = ix->base.x;
    *ids = ix->base.ids;
    *n = ix->base.n;
    return PERR_OK;
}

/* Our id for a raw label, or -1 if none (padding, tombstone). */
static inline int64_t live_id(const idx *ix, const int64_t *id_map, int64_t label) {
    if (label < 0 || !id_map) return label;
    if (ix->tomb[label]) return -1;
    return id_map[label];
}

static const int64_t *graph_id_map(const idx *ix) {
    if (!searches_graph(ix)) return NULL;
    idx_t *m = NULL;
    size_t n = 0;
    faiss_IndexIDMap2_id_map(ix->main, &m, &n);
    return m;
}

static int in_sorted(const int64_t *a, size_t n, int64_t v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && a[lo] == v;
}

static void fill_missing(float *s, int64_t *id, size_t n) {
    for (size_t i = 0; i < n; i++) { s[i] = -INFINITY; id[i] = -1; }
}

static int check_search_args(const idx *ix, const float *q, size_t nq, int k,
                             const float *scores, const int64_t *ids) {
    if (k < 1 || k > IDX_K_MAX) return perr_set(PERR_INVALID, "idx_search: k = %d (1..%d)", k, IDX_K_MAX);
    if (!scores || !ids) return perr_set(PERR_INVALID, "idx_search: NULL output");
    return check_vectors(ix, q, nq, "query");
}

/* k-NN keeping only live ids (and those in allowed, when given): searches
 * with a growing k until every query has k hits or the index is exhausted.
 * Exact whenever the underlying FAISS search is. */
static int search_growing(const idx *ix, const float *q, size_t nq, int k,
                          const int64_t *allowed, size_t n_allowed, size_t n_match,
                          float *scores, int64_t *ids) {
    size_t total = raw_total(ix);
    const int64_t *idm = graph_id_map(ix);
    double frac = total ? (double)n_match / (double)total : 1;
    if (frac <= 0) frac = 1.0 / (double)(total ? total : 1);
    size_t kf = (size_t)((double)k / frac * 1.5) + 8;
    if (kf > total) kf = total;
    if (kf < (size_t)k) kf = k;

    size_t *pend = malloc(nq * sizeof *pend);
    if (!pend) return perr_set(PERR_NOMEM, "idx_search: %zu queries", nq);
    size_t npend = nq;
    for (size_t i = 0; i < nq; i++) pend[i] = i;
    fill_missing(scores, ids, nq * (size_t)k);

    int rc = PERR_OK;
    float *qb = NULL, *D = NULL;
    int64_t *I = NULL;
    while (npend && !rc) {
        /* sub-batches of at most ~4M results keep the buffers bounded */
        size_t rows = ((size_t)1 << 22) / kf;
        if (rows < 1) rows = 1;
        if (rows > npend) rows = npend;
        free(qb); free(D); free(I);
        qb = malloc(rows * ix->dim * sizeof *qb);
        D = malloc(rows * kf * sizeof *D);
        I = malloc(rows * kf * sizeof *I);
        if (!qb || !D || !I) { rc = perr_set(PERR_NOMEM, "idx_search: k = %zu", kf); break; }
        size_t still = 0;
        for (size_t b = 0; b < npend && !rc; b += rows) {
            size_t nb = npend - b < rows ? npend - b : rows;
            for (size_t r = 0; r < nb; r++)
                memcpy(qb + r * ix->dim, q + pend[b + r] * ix->dim, ix->dim * sizeof *qb);
            if ((rc = raw_search(ix, qb, nb, kf, D, I))) break;
            for (size_t r = 0; r < nb; r++) {
                size_t qi = pend[b + r];
                float *os = scores + qi * k;
                int64_t *oi = ids + qi * k;
                int got = 0, raw_full = I[r * kf + kf - 1] >= 0;
                for (size_t j = 0; j < kf && got < k; j++) {
                    int64_t id = live_id(ix, idm, I[r * kf + j]);
                    if (id < 0 || (allowed && !in_sorted(allowed, n_allowed, id))) continue;
                    os[got] = D[r * kf + j];
                    oi[got++] = id;
                }
                if (got < k && raw_full && kf < total) {
                    fill_missing(os, oi, k);
                    pend[still++] = qi;
                }
            }
        }
        npend = still;
        kf = kf * 4 < total ? kf * 4 : total;
    }
    free(pend); free(qb); free(D); free(I);
    return rc;
}

/* A min-heap of the k best (score, id) of one query. */
static void heap_push(float *hs, int64_t *hi, int *n, int k, float s, int64_t id) {
    int i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (hs[p] <= s) break;
            hs[i] = hs[p]; hi[i] = hi[p]; i = p;
        }
    } else {
        if (s <= hs[0]) return;
        i = 0;
        for (;;) {
            int c = 2 * i + 1;
            if (c >= k) break;
            if (c + 1 < k && hs[c + 1] < hs[c]) c++;
            if (hs[c] >= s) break;
            hs[i] = hs[c]; hi[i] = hi[c]; i = c;
        }
    }
    hs[i] = s; hi[i] = id;
}

typedef struct { float s; int64_t id; } hit;

static int hit_cmp(const void *a, const void *b) {
    const hit *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Scores exactly the allowed ids (reconstructed from the index). */
static int search_scan(const idx *ix, const float *q, size_t nq, int k,
                       const int64_t *allowed, size_t n_allowed, float *scores, int64_t *ids) {
    enum { BLK = 256 };
    int d = ix->dim;
    float *blk = malloc((size_t)BLK * d * sizeof *blk), *ip = malloc(BLK * sizeof *ip);
    int64_t bid[BLK];
    int *hn = calloc(nq, sizeof *hn);
    hit *tmp = malloc((size_t)k * sizeof *tmp);
    int rc = PERR_OK;
    if (!blk || !ip || !hn || !tmp) { rc = perr_set(PERR_NOMEM, "idx_search_filtered"); goto out; }
    fill_missing(scores, ids, nq * (size_t)k);
    FaissIndex *graph = searches_graph(ix) ? graph_of(ix) : NULL;
    FaissIndex *src = active(ix);
    size_t nb = 0;
    for (size_t a = 0; a <= n_allowed; a++) {
        if (a < n_allowed) {
            size_t s = idmap_slot(&ix->ids, allowed[a]);
            if (s == SIZE_MAX) continue;
            int64_t row = ix->ids.vals[s];
            int frc = 0;
            if (graph) frc = faiss_Index_reconstruct(graph, row, blk + nb * d);
            else if (ix->base.n && row >= 0) memcpy(blk + nb * d, ix->base.x + (size_t)row * d, d * sizeof *blk);
            else frc = faiss_Index_reconstruct(src, allowed[a], blk + nb * d);
            if (frc) { rc = ferr(PERR_INDEX, "idx_search_filtered: reconstruct"); goto out; }
            bid[nb++] = allowed[a];
            if (nb < BLK) continue;
        }
        if (!nb) break;
        for (size_t i = 0; i < nq; i++) {
            idxk_ip_ny(ip, q + i * d, blk, d, nb);
            for (size_t j = 0; j < nb; j++)
                heap_push(scores + i * k, ids + i * k, &hn[i], k, ip[j], bid[j]);
        }
        nb = 0;
    }
    for (size_t i = 0; i < nq; i++) {
        for (int j = 0; j < hn[i]; j++) { tmp[j].s = scores[i * k + j]; tmp[j].id = ids[i * k + j]; }
        qsort(tmp, hn[i], sizeof *tmp, hit_cmp);
        fill_missing(scores + i * k, ids + i * k, k);
        for (int j = 0; j < hn[i]; j++) { scores[i * k + j] = tmp[j].s; ids[i * k + j] = tmp[j].id; }
    }
out:
    free(blk); free(ip); free(hn); free(tmp);
    return rc;
}

int idx_search(const idx *ix, const float *q, size_t nq, int k, float *scores, int64_t *ids) {
    int rc = check_search_args(ix, q, nq, k, scores, ids);
    if (rc || !nq) return rc;
    apply_threads();
    rdlock(ix);
    if (ix->broken) { rc = perr_set(PERR_INDEX, "idx: index damaged by an earlier failure, rebuild it"); goto out; }
    if (!ix->ids.n) { fill_missing(scores, ids, nq * (size_t)k); goto out; }
    if (searches_graph(ix) && ix->n_tomb) {
        rc = search_growing(ix, q, nq, k, NULL, 0, ix->ids.n, scores, ids);
        goto out;
    }
    if ((rc = raw_search(ix, q, nq, k, scores, ids))) goto out;
    const int64_t *idm = graph_id_map(ix);
    for (size_t i = 0; i < nq * (size_t)k; i++) {
        if (ids[i] >= 0 && idm) ids[i] = idm[ids[i]];
        if (ids[i] < 0) scores[i] = -INFINITY;
    }
out:
    unlock(ix);
    return rc;
}

int idx_search_filtered(const idx *ix, const float *q, size_t nq, int k,
                        const int64_t *allowed, size_t n_allowed, float *scores, int64_t *ids) {
    int rc = check_search_args(ix, q, nq, k, scores, ids);
    if (rc || !nq) return rc;
    if (n_allowed && !allowed) return perr_set(PERR_INVALID, "idx_search_filtered: NULL filter");
    for (size_t i = 1; i < n_allowed; i++)
        if (allowed[i] <= allowed[i - 1])
            return perr_set(PERR_INVALID,
                            "idx_search_filtered: filter not sorted ascending without duplicates at position %zu",
                            i);
    apply_threads();
    rdlock(ix);
    if (ix->broken) { rc = perr_set(PERR_INDEX, "idx: index damaged by an earlier failure, rebuild it"); goto out; }
    size_t n_match = 0;
    for (size_t i = 0; i < n_allowed; i++) n_match += idmap_slot(&ix->ids, allowed[i]) != SIZE_MAX;
    if (!n_match) { fill_missing(scores, ids, nq * (size_t)k); goto out; }
    size_t total = raw_total(ix);
    int can_scan = !(ix->trained && ix->kind == K_IVF);
    int cheap = searches_graph(ix) || n_match * 4 <= total;
    if (can_scan && n_match <= ix->opts.filter_scan_max && cheap)
        rc = search_scan(ix, q, nq, k, allowed, n_allowed, scores, ids);
    else
        rc = search_growing(ix, q, nq, k, allowed, n_allowed, n_match, scores, ids);
out:
    unlock(ix);
    return rc;
}

/* ----------------------------------------------------------- range search */

void idx_hits_clear(idx_hits *h) {
    if (!h) return;
    free(h->scores); free(h->ids);
    memset(h, 0, sizeof *h);
}

/* Sorts hits best first, keeps at most max, fills out. Takes ownership. */
static int hits_finish(hit *h, size_t n, size_t max, idx_hits *out) {
    qsort(h, n, sizeof *h, hit_cmp);
    out->truncated = n > max;
    if (n > max) n = max;
    out->n = n;
    out->scores = malloc((n ? n : 1) * sizeof *out->scores);
    out->ids = malloc((n ? n : 1) * sizeof *out->ids);
    if (!out->scores || !out->ids) {
        free(h); idx_hits_clear(out);
        return perr_set(PERR_NOMEM, "idx_range_search: %zu hits", n);
    }
    for (size_t i = 0; i < n; i++) { out->scores[i] = h[i].s; out->ids[i] = h[i].id; }
    free(h);
    return PERR_OK;
}

static int range_native(const idx *ix, const float *q, float min_score, size_t max,
                        idx_hits *out) {
    hit *bh = NULL;
    size_t nbh = 0;
    if (ix->base.n) { /* the mapped Flat base, then the delta below */
        float *bd;
        int64_t *bi;
        const flat_base *b = &ix->base;
        int rc = idxf_range(q, b->x, b->n, ix->dim, min_score, b->n_dead ? b->dead : NULL,
                            &nbh, &bd, &bi);
        if (rc) return rc;
        bh = malloc((nbh ? nbh : 1) * sizeof *bh);
        if (!bh) { free(bd); free(bi); return perr_set(PERR_NOMEM, "idx_range_search: %zu hits", nbh); }
        size_t m = 0;
        for (size_t i = 0; i < nbh; i++)
            if (bi[i] >= 0 && bd[i] > min_score) { bh[m].s = bd[i]; bh[m++].id = b->ids[bi[i]]; }
        nbh = m;
        free(bd); free(bi);
        if (!faiss_Index_ntotal(ix->main)) return hits_finish(bh, nbh, max, out);
    }
    FaissRangeSearchResult *r = NULL;
    if (faiss_RangeSearchResult_new(&r, 1)) { free(bh); return ferr(PERR_NOMEM, "idx_range_search"); }
    if (faiss_Index_range_search(active(ix), 1, q, min_score, r)) {
        int rc = ferr(PERR_INDEX, "idx_range_search");
        faiss_RangeSearchResult_free(r);
        free(bh);
        return rc;
    }
    size_t *lims;
    idx_t *labels;
    float *dist;
    faiss_RangeSearchResult_lims(r, &lims);
    faiss_RangeSearchResult_labels(r, &labels, &dist);
    size_t n = lims[1] - lims[0];
    hit *h = malloc((n + nbh ? n + nbh : 1) * sizeof *h);
    if (!h) { faiss_RangeSearchResult_free(r); free(bh); return perr_set(PERR_NOMEM, "idx_range_search"); }
    if (nbh) memcpy(h, bh, nbh * sizeof *h);
    free(bh);
    size_t m = nbh;
    for (size_t i = lims[0]; i < lims[1]; i++)
        if (labels[i] >= 0 && dist[i] > min_score) { h[m].s = dist[i]; h[m++].id = labels[i]; }
    faiss_RangeSearchResult_free(r);
    return hits_finish(h, m, max, out);
}

/* k-NN with a growing k until a result falls to min_score or below. */
static int range_growing(const idx *ix, const float *q, float min_score, size_t max,
                         idx_hits *out) {
    size_t total = raw_total(ix), kf = 64;
    const int64_t *idm = graph_id_map(ix);
    for (;;) {
        if (kf > total) kf = total;
        float *D = malloc(kf * sizeof *D);
        int64_t *I = malloc(kf * sizeof *I);
        hit *h = malloc(kf * sizeof *h);
        if (!D || !I || !h) {
            free(D); free(I); free(h);
            return perr_set(PERR_NOMEM, "idx_range_search: k = %zu", kf);
        }
        int rc = raw_search(ix, q, 1, kf, D, I);
        if (rc) { free(D); free(I); free(h); return rc; }
        size_t m = 0;
        int below = 0;
        for (size_t j = 0; j < kf; j++) {
            if (I[j] < 0) break;
            if (!(D[j] > min_score)) { below = 1; break; }
            int64_t id = live_id(ix, idm, I[j]);
            if (id >= 0) { h[m].s = D[j]; h[m++].id = id; }
        }
        int done = below || I[kf - 1] < 0 || kf >= total || m > max;
        free(D); free(I);
        if (done) return hits_finish(h, m, max, out);
        free(h);
        kf *= 4;
    }
}

int idx_range_search(const idx *ix, const float *q, float min_score, size_t max_results,
                     idx_hits *out) {
    if (!out) return perr_set(PERR_INVALID, "idx_range_search: NULL result");
    memset(out, 0, sizeof *out);
    if (!max_results) return perr_set(PERR_INVALID, "idx_range_search: max_results = 0");
    if (!isfinite(min_score)) return perr_set(PERR_INVALID, "idx_range_search: min_score not finite");
    int rc = check_vectors(ix, q, 1, "query");
    if (rc) return rc;
    apply_threads();
    rdlock(ix);
    if (ix->broken) rc = perr_set(PERR_INDEX, "idx: index damaged by an earlier failure, rebuild it");
    else if (!ix->ids.n) rc = hits_finish(malloc(sizeof(hit)), 0, max_results, out);
    else if (!ix->trained || ix->kind == K_IVF || !strcmp(ix->factory, "Flat"))
        rc = range_native(ix, q, min_score, max_results, out);
    else
        rc = range_growing(ix, q, min_score, max_results, out);
    unlock(ix);
    return rc;
}

/* -------------------------------------------------------------- parameters */

int idx_set_param(idx *ix, const char *name, double value) {
    if (!name || !*name || strlen(name) > PARAM_NAME_MAX)
        return perr_set(PERR_INVALID, "idx_set_param: bad parameter name");
    if (!isfinite(value)) return perr_set(PERR_INVALID, "idx_set_param: %s = non-finite", name);
    if ((!strcmp(name, "nprobe") || !strcmp(name, "efSearch")) && (value < 1 || value > 1e6))
        return perr_set(PERR_INVALID, "idx_set_param: %s = %g (1..1e6)", name, value);
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps)) return ferr(PERR_INDEX, "idx_set_param");
    wrlock(ix);
    int rc = PERR_OK, i;
    for (i = 0; i < ix->n_params && strcmp(ix->params[i].name, name); i++) {}
    if (i == PARAMS_MAX) {
        rc = perr_set(PERR_TOO_LARGE, "idx_set_param: more than %d parameters", PARAMS_MAX);
    } else if (faiss_ParameterSpace_set_index_parameter(ps, ix->main, name, value)) {
        rc = ferr(PERR_INVALID, ix->factory);
    } else {
        snprintf(ix->params[i].name, sizeof ix->params[i].name, "%s", name);
        ix->params[i].value = value;
        if (i == ix->n_params) ix->n_params++;
    }
    unlock(ix);
    faiss_ParameterSpace_free(ps);
    return rc;
}

/* ============================================================ persistence
 *
 * File = 64-byte header, then the payload (docs/index.md):
 *   0  magic "PCPTIDX1"          8 bytes
 *   8  format version  u32       IDX_FORMAT_VERSION (2)
 *  12  dim             u32
 *  16  covered_seq     u64
 *  24  flags           u32       bit 0: trained; bit 1: raw Flat payload
 *  28  factory_len     u32       <= IDX_FACTORY_MAX
 *  32  main            u64       FAISS layout: bytes of the FAISS main index;
 *                                raw Flat: number of rows
 *  40  buf_len         u64       bytes of the FAISS side buffer (0 if trained)
 *  48  n_tomb          u32       HNSW tombstone positions (u64 each)
 *  52  n_params        u32       search parameters (40 bytes each)
 *  56  check           u64       XXH3-64 of bytes 0..55, seeded with the
 *                                XXH3-64 of every byte from 64 to the end
 * FAISS layout: factory | main | buf | n_tomb x u64 | n_params x (name[32], f64)
 * raw Flat ("Flat" only, used in place by idx_load):
 *   factory | params | zeros to a 4096 multiple | ids (n x i64)
 *   | zeros to a 4096 multiple | vectors (n x dim x f32, row-major)
 * All integers little-endian. The file size must equal exactly the sum.
 */

#define HDR_SIZE 64
#define PARAM_REC 40
#define PAGE_ALIGN 4096
#define FLAG_TRAINED 1u
#define FLAG_RAW_FLAT 2u
static const char MAGIC[8] = {'P', 'C', 'P', 'T', 'I', 'D', 'X', '1'};

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the raw Flat layout is used in place: little-endian hosts only");

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static uint64_t align_up(uint64_t v) { return (v + PAGE_ALIGN - 1) / PAGE_ALIGN * PAGE_ALIGN; }

/* Payload writer: to fd, counting bytes and hashing them. */
typedef struct {
    int fd;
    uint64_t n;
    XXH3_state_t *h;
    int err;
} hash_sink;

static int sink_put(hash_sink *s, const void *buf, size_t len) {
    const char *b = buf;
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done < ((size_t)1 << 30) ? len - done : ((size_t)1 << 30);
        ssize_t w = write(s->fd, b + done, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { s->err = w < 0 ? errno : EIO; return -1; }
        done += (size_t)w;
    }
    XXH3_64bits_update(s->h, buf, len);
    s->n += len;
    return 0;
}

static int sink_zeros(hash_sink *s, uint64_t n) {
    static const unsigned char z[PAGE_ALIGN];
    while (n) {
        size_t c = n < sizeof z ? (size_t)n : sizeof z;
        if (sink_put(s, z, c)) return -1;
        n -= c;
    }
    return 0;
}

/* fopencookie write callback for FAISS's writer. */
static ssize_t sink_write(void *c, const char *b, size_t len) {
    return sink_put(c, b, len) ? -1 : (ssize_t)len;
}

static int write_params(const idx *ix, hash_sink *s) {
    unsigned char rec[PARAM_REC];
    for (int i = 0; i < ix->n_params; i++) {
        memset(rec, 0, sizeof rec);
        memcpy(rec, ix->params[i].name, strlen(ix->params[i].name));
        uint64_t bits;
        memcpy(&bits, &ix->params[i].value, 8);
        put64(rec + 32, bits);
        if (sink_put(s, rec, PARAM_REC)) return -1;
    }
    return 0;
}

/* FAISS layout; the caller wrote the factory. */
static int write_faiss(const idx *ix, FILE *f, hash_sink *s, uint64_t *main_len, uint64_t *buf_len) {
    uint64_t at = s->n;
    if (faiss_write_index(ix->main, f)) return ferr(PERR_IO, "idx_save: main index");
    if (fflush(f)) return -1;
    *main_len = s->n - at;
    at = s->n;
    if (ix->buf) {
        if (faiss_write_index(ix->buf, f)) return ferr(PERR_IO, "idx_save: side buffer");
        if (fflush(f)) return -1;
    }
    *buf_len = s->n - at;
    unsigned char rec[8];
    if (ix->kind == K_HNSW && ix->trained) {
        size_t np = (size_t)faiss_Index_ntotal(graph_of(ix));
        for (size_t p = 0; p < np; p++) {
            if (!ix->tomb[p]) continue;
            put64(rec, p);
            if (sink_put(s, rec, 8)) return -1;
        }
    }
    return write_params(ix, s);
}

/* Raw Flat layout: live base rows (in row order), then the delta; the
 * caller wrote the factory. *rows gets the row count. */
static int write_flat(const idx *ix, hash_sink *s, uint64_t *rows) {
    const flat_base *b = &ix->base;
    const float *dx = NULL;
    idx_t *did = NULL;
    size_t nd = 0, ndx = 0;
    FaissIndex *sub = faiss_IndexIDMap2_sub_index(ix->main);
    faiss_IndexFlat_xb(faiss_IndexFlat_cast(sub), (float **)&dx, &ndx);
    faiss_IndexIDMap2_id_map(ix->main, &did, &nd);
    if (ndx != nd * (size_t)ix->dim)
        return perr_set(PERR_INTERNAL, "idx_save: Flat index of %zu floats for %zu ids", ndx, nd);
    *rows = b->n - b->n_dead + nd;
    if (write_params(ix, s) || sink_zeros(s, align_up(HDR_SIZE + s->n) - (HDR_SIZE + s->n)))
        return -1;
    enum { CH = 8192 };
    int64_t ch[CH];
    size_t m = 0;
    for (size_t r = 0; r < b->n; r++) {
        if (base_dead(b, r)) continue;
        ch[m++] = b->ids[r];
        if (m == CH) { if (sink_put(s, ch, m * 8)) return -1; m = 0; }
    }
    if (m && sink_put(s, ch, m * 8)) return -1;
    if (nd && sink_put(s, did, nd * 8)) return -1;
    if (sink_zeros(s, align_up(HDR_SIZE + s->n) - (HDR_SIZE + s->n))) return -1;
    size_t row_bytes = (size_t)ix->dim * sizeof(float);
    for (size_t r = 0; r < b->n;) { /* runs of live rows straight from the mapping */
        if (base_dead(b, r)) { r++; continue; }
        size_t e = r + 1;
        while (e < b->n && !base_dead(b, e)) e++;
        if (sink_put(s, b->x + r * (size_t)ix->dim, (e - r) * row_bytes)) return -1;
        r = e;
    }
    if (nd && sink_put(s, dx, nd * row_bytes)) return -1;
    return 0;
}

static int is_raw_flat(const char *factory) { return !strcmp(factory, "Flat"); }

int idx_save(const idx *ix, const char *path, uint64_t covered_seq) {
    if (!path || !*path) return perr_set(PERR_INVALID, "idx_save: empty path");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16), *dircopy = strdup(path);
    XXH3_state_t *hs = XXH3_createState();
    if (!tmp || !dircopy || !hs) {
        free(tmp); free(dircopy); XXH3_freeState(hs);
        return perr_set(PERR_NOMEM, "idx_save");
    }
    XXH3_64bits_reset(hs);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int rc = PERR_OK;
    FILE *f = NULL;
    int fd = mkstemp(tmp);
    if (fd < 0) { rc = perr_errno(errno, "idx_save: create %s", tmp); goto out_nofile; }
    fchmod(fd, 0644);
    unsigned char hdr[HDR_SIZE] = {0};
    hash_sink sink = {.fd = fd, .h = hs};
    if (lseek(fd, HDR_SIZE, SEEK_SET) != HDR_SIZE) { rc = perr_errno(errno, "idx_save: %s", tmp); goto out; }
    int raw = is_raw_flat(ix->factory);
    if (!raw) {
        cookie_io_functions_t io = {.write = sink_write};
        f = fopencookie(&sink, "w", io);
        if (!f) { rc = perr_errno(errno, "idx_save: %s", tmp); goto out; }
    }
    apply_threads();

    rdlock(ix);
    uint64_t main_len = 0, buf_len = 0;
    uint32_t n_tomb = ix->kind == K_HNSW && ix->trained ? (uint32_t)ix->n_tomb : 0;
    int n_params = ix->n_params, trained = ix->trained, wrc;
    if (ix->n_tomb > UINT32_MAX) wrc = perr_set(PERR_TOO_LARGE, "idx_save: too many tombstones, rebuild");
    else if (ix->broken) wrc = perr_set(PERR_INDEX, "idx_save: index damaged by an earlier failure, rebuild it");
    else if (sink_put(&sink, ix->factory, strlen(ix->factory))) wrc = -1;
    else if (raw) wrc = write_flat(ix, &sink, &main_len);
    else wrc = write_faiss(ix, f, &sink, &main_len, &buf_len);
    unlock(ix);
    if (!wrc && f && fflush(f)) wrc = -1;
    if (wrc) {
        rc = sink.err ? perr_errno(sink.err, "idx_save: write %s", tmp)
             : wrc < 0 ? perr_set(PERR_IO, "idx_save: write %s", tmp) : wrc;
        goto out;
    }
    if (f && fclose(f)) { f = NULL; rc = perr_errno(sink.err ? sink.err : EIO, "idx_save: write %s", tmp); goto out; }
    f = NULL;

    memcpy(hdr, MAGIC, 8);
    put32(hdr + 8, IDX_FORMAT_VERSION);
    put32(hdr + 12, (uint32_t)ix->dim);
    put64(hdr + 16, covered_seq);
    put32(hdr + 24, (trained ? FLAG_TRAINED : 0) | (raw ? FLAG_RAW_FLAT : 0));
    put32(hdr + 28, (uint32_t)strlen(ix->factory));
    put64(hdr + 32, main_len);
    put64(hdr + 40, buf_len);
    put32(hdr + 48, n_tomb);
    put32(hdr + 52, (uint32_t)n_params);
    put64(hdr + 56, XXH3_64bits_withSeed(hdr, 56, XXH3_64bits_digest(hs)));
    if (pwrite(fd, hdr, HDR_SIZE, 0) != HDR_SIZE) { rc = perr_errno(errno ? errno : EIO, "idx_save: header of %s", tmp); goto out; }
    if (fsync(fd)) { rc = perr_errno(errno, "idx_save: fsync %s", tmp); goto out; }
    if (close(fd)) { fd = -1; rc = perr_errno(errno, "idx_save: close %s", tmp); goto out; }
    fd = -1;
    if (rename(tmp, path)) { rc = perr_errno(errno, "idx_save: rename %s -> %s", tmp, path); goto out; }
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd)) rc = perr_errno(errno, "idx_save: fsync directory of %s", path);
    if (dfd >= 0) close(dfd);
    free(tmp); free(dircopy); XXH3_freeState(hs);
    return rc;
out:
    if (f) fclose(f);
    if (fd >= 0) close(fd);
    unlink(tmp);
out_nofile:
    free(tmp); free(dircopy); XXH3_freeState(hs);
    return rc;
}

/* Reads one FAISS index from len bytes at p (already checksummed). */
static int read_blob(const char *path, const char *what, const unsigned char *p, uint64_t len,
                     FaissIndex **out) {
    *out = NULL;
    FILE *f = fmemopen((void *)p, len, "r");
    if (!f) return perr_errno(errno, "idx_load: %s", path);
    int rc = PERR_OK;
    if (faiss_read_index(f, 0, out)) {
        rc = ferr(PERR_FORMAT, what);
    } else if ((uint64_t)ftell(f) != len) {
        rc = perr_set(PERR_FORMAT, "%s: %ld of %" PRIu64 " bytes parsed", what, ftell(f), len);
    }
    fclose(f);
    if (rc) {
        if (*out) faiss_Index_free(*out);
        *out = NULL;
        return perr_prefix(rc, "idx_load: %s", path);
    }
    return PERR_OK;
}

/* Checks the loaded FAISS objects against the header and rebuilds ids and
 * tombstones. */
static int adopt(idx *ix, const char *path, const unsigned char *tomb, uint32_t n_tomb) {
    FaissIndex *m = ix->main;
    if (faiss_Index_d(m) != ix->dim || faiss_Index_metric_type(m) != METRIC_INNER_PRODUCT)
        return perr_set(PERR_FORMAT, "idx_load: %s: main index has dim %d / metric %d, header says %d / IP",
                        path, faiss_Index_d(m), (int)faiss_Index_metric_type(m), ix->dim);
    FaissIndex *raw;
    if (faiss_IndexIVF_cast(m)) {
        ix->kind = K_IVF;
        raw = m;
    } else if (faiss_IndexIDMap2_cast(m)) {
        ix->kind = factory_is_graph(ix->factory) ? K_HNSW : K_IDMAP;
        raw = faiss_IndexIDMap2_sub_index(m);
    } else {
        return perr_set(PERR_FORMAT, "idx_load: %s: main index is neither IVF nor IDMap2", path);
    }
    if (faiss_Index_is_trained(raw) != ix->trained)
        return perr_set(PERR_FORMAT, "idx_load: %s: trained flag disagrees with the index", path);
    ix->train_size = ix->opts.train_size ? ix->opts.train_size : derive_train_size(ix, raw);
    if (ix->trained) ix->train_size = 0;
    if (!ix->trained) {
        if (!ix->buf || !faiss_IndexIDMap2_cast(ix->buf) ||
            !faiss_IndexFlat_cast(faiss_IndexIDMap2_sub_index(ix->buf)) ||
            faiss_Index_d(ix->buf) != ix->dim || faiss_Index_ntotal(m) != 0)
            return perr_set(PERR_FORMAT, "idx_load: %s: untrained index without a valid side buffer", path);
    } else if (ix->buf) {
        return perr_set(PERR_FORMAT, "idx_load: %s: trained index with a side buffer", path);
    }
    if (n_tomb && !(ix->kind == K_HNSW && ix->trained))
        return perr_set(PERR_FORMAT, "idx_load: %s: tombstones in a non-HNSW index", path);

    int rc;
    if (ix->kind == K_HNSW && ix->trained) {
        if ((rc = tomb_fit(ix))) return rc;
        size_t np = (size_t)faiss_Index_ntotal(raw);
        for (uint32_t i = 0; i < n_tomb; i++) {
            uint64_t p = get64(tomb + 8 * (size_t)i);
            if (p >= np || ix->tomb[p])
                return perr_set(PERR_FORMAT, "idx_load: %s: bad tombstone %" PRIu64, path, p);
            ix->tomb[p] = 1;
        }
        ix->n_tomb = n_tomb;
    }

    /* live ids */
    FaissIndex *holder = ix->trained ? m : ix->buf;
    if (ix->kind == K_IVF && ix->trained) {
        FaissIndexIVF *ivf = faiss_IndexIVF_cast(m);
        size_t nlist = faiss_IndexIVF_nlist(ivf), total = (size_t)faiss_Index_ntotal(m), seen = 0;
        if ((rc = idmap_grow(&ix->ids, total))) return rc;
        size_t maxls = 0;
        for (size_t l = 0; l < nlist; l++) {
            size_t ls = faiss_IndexIVF_get_list_size(ivf, l);
            if (ls > total - seen)
                return perr_set(PERR_FORMAT, "idx_load: %s: list sizes exceed ntotal %zu", path, total);
            seen += ls;
            if (ls > maxls) maxls = ls;
        }
        int64_t *lst = malloc((maxls ? maxls : 1) * sizeof *lst);
        if (!lst) return perr_set(PERR_NOMEM, "idx_load: ids of %zu vectors", maxls);
        for (size_t l = 0; l < nlist; l++) {
            size_t ls = faiss_IndexIVF_get_list_size(ivf, l);
            faiss_IndexIVF_invlists_get_ids(ivf, l, lst);
            for (size_t j = 0; j < ls; j++) {
                if (lst[j] < 0 || idmap_slot(&ix->ids, lst[j]) != SIZE_MAX) {
                    int64_t bad = lst[j];
                    free(lst);
                    return perr_set(PERR_FORMAT, "idx_load: %s: invalid or duplicate id %" PRId64, path, bad);
                }
                idmap_put_new(&ix->ids, lst[j], -1);
            }
        }
        free(lst);
        if (seen != total) return perr_set(PERR_FORMAT, "idx_load: %s: %zu ids in lists, ntotal %zu", path, seen, total);
    } else {
        idx_t *idm = NULL;
        size_t n = 0;
        faiss_IndexIDMap2_id_map(holder, &idm, &n);
        if (n != (size_t)faiss_Index_ntotal(holder))
            return perr_set(PERR_FORMAT, "idx_load: %s: id map of %zu for %zu vectors", path, n, (size_t)faiss_Index_ntotal(holder));
        if ((rc = idmap_grow(&ix->ids, n))) return rc;
        int graph = ix->kind == K_HNSW && ix->trained;
        for (size_t p = 0; p < n; p++) {
            if (graph && ix->tomb[p]) continue;
            if (idm[p] < 0 || idmap_slot(&ix->ids, idm[p]) != SIZE_MAX)
                return perr_set(PERR_FORMAT, "idx_load: %s: invalid or duplicate id %" PRId64, path, (int64_t)idm[p]);
            idmap_put_new(&ix->ids, idm[p], graph ? (int64_t)p : -1);
        }
    }
    return PERR_OK;
}

/* Raw Flat layout: the rows stay in the mapping p (ix takes it over on
 * success); main becomes the empty in-memory delta. */
static int adopt_flat(idx *ix, const char *path, const unsigned char *p, uint64_t size,
                      uint64_t ids_at, uint64_t x_at, uint64_t rows) {
    enum kind kind;
    int rc = new_faiss(ix, &ix->main, &kind);
    if (rc) return perr_prefix(PERR_FORMAT, "idx_load: %s", path);
    ix->kind = kind;
    if ((rc = apply_params(ix, ix->main))) return perr_prefix(PERR_FORMAT, "idx_load: %s", path);
    ix->train_size = 0;
    if (!rows) return PERR_OK;
    const int64_t *ids = (const int64_t *)(p + ids_at);
    if ((rc = idmap_grow(&ix->ids, rows))) return rc;
    for (uint64_t r = 0; r < rows; r++)
        if (ids[r] < 0 || !idmap_put_unique(&ix->ids, ids[r], (int64_t)r))
            return perr_set(PERR_FORMAT, "idx_load: %s: invalid or duplicate id %" PRId64 " (row %" PRIu64 ")",
                            path, ids[r], r);
    ix->base.map = p;
    ix->base.map_len = size;
    ix->base.ids = ids;
    ix->base.x = (const float *)(p + x_at);
    ix->base.n = rows;
    return PERR_OK;
}

int idx_load(const char *path, const idx_opts *opts, idx **out, uint64_t *covered_seq) {
    if (!out) return perr_set(PERR_INVALID, "idx_load: NULL out");
    *out = NULL;
    if (!path || !*path) return perr_set(PERR_INVALID, "idx_load: empty path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return perr_errno(errno, "idx_load: open %s", path);
    struct stat st;
    if (fstat(fd, &st)) { int e = errno; close(fd); return perr_errno(e, "idx_load: stat %s", path); }
    if (!S_ISREG(st.st_mode)) { close(fd); return perr_set(PERR_FORMAT, "idx_load: %s: not a regular file", path); }
    uint64_t size = (uint64_t)st.st_size;
    if (size < HDR_SIZE) {
        close(fd);
        return perr_set(PERR_FORMAT, "idx_load: %s: %" PRIu64 " bytes, shorter than the %d-byte header",
                        path, size, HDR_SIZE);
    }
    /* MAP_POPULATE: one pass building the page tables beats a fault per
     * page during the hash and the first search (the file is usually in
     * the page cache). */
    const unsigned char *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return perr_errno(errno, "idx_load: mmap %s", path);
    idx *ix = NULL;
    int rc = PERR_OK, keep_map = 0;

    if (memcmp(p, MAGIC, 8)) { rc = perr_set(PERR_FORMAT, "idx_load: %s: bad magic at byte 0 (not a percept index file)", path); goto out; }
    uint32_t version = get32(p + 8), dim = get32(p + 12), flags = get32(p + 24), flen = get32(p + 28);
    uint64_t seq = get64(p + 16), main_len = get64(p + 32), buf_len = get64(p + 40);
    uint32_t n_tomb = get32(p + 48), n_params = get32(p + 52);
    /* The version comes before the checksum: another version may check
     * its bytes differently (version 1 used crc32). */
    if (version != IDX_FORMAT_VERSION) {
        rc = perr_set(PERR_VERSION, "idx_load: %s: format version %u, this build reads %d", path, version, IDX_FORMAT_VERSION);
        goto out;
    }
    int raw = (flags & FLAG_RAW_FLAT) != 0;
    if (dim < 1 || dim > IDX_DIM_MAX || flen < 1 || flen > IDX_FACTORY_MAX ||
        (flags & ~(FLAG_TRAINED | FLAG_RAW_FLAT)) || n_params > PARAMS_MAX || main_len > size ||
        buf_len > size || (raw && (buf_len || n_tomb || !(flags & FLAG_TRAINED)))) {
        rc = perr_set(PERR_FORMAT, "idx_load: %s: header fields out of range (dim %u, factory %u bytes, flags %#x, params %u)",
                      path, dim, flen, flags, n_params);
        goto out;
    }
    uint64_t want, ids_at = 0, x_at = 0;
    if (raw) { /* main_len is the row count; main_len <= size bounds the products */
        ids_at = align_up(HDR_SIZE + (uint64_t)flen + PARAM_REC * (uint64_t)n_params);
        x_at = align_up(ids_at + 8 * main_len);
        want = x_at + (uint64_t)dim * 4 * main_len;
    } else {
        want = HDR_SIZE + (uint64_t)flen + main_len + buf_len + 8 * (uint64_t)n_tomb +
               PARAM_REC * (uint64_t)n_params;
    }
    if (want != size) {
        rc = perr_set(PERR_FORMAT, "idx_load: %s: %" PRIu64 " bytes, header declares %" PRIu64 "%s",
                      path, size, want, size < want ? " (truncated)" : "");
        goto out;
    }
    if (XXH3_64bits_withSeed(p, 56, XXH3_64bits(p + HDR_SIZE, size - HDR_SIZE)) != get64(p + 56)) {
        rc = perr_set(PERR_FORMAT, "idx_load: %s: checksum mismatch (bytes 0..%" PRIu64 ")", path, size);
        goto out;
    }
    char factory[IDX_FACTORY_MAX + 1];
    memcpy(factory, p + HDR_SIZE, flen);
    factory[flen] = 0;
    if (strlen(factory) != flen) { rc = perr_set(PERR_FORMAT, "idx_load: %s: NUL in factory string", path); goto out; }
    if (raw != is_raw_flat(factory)) {
        rc = perr_set(PERR_FORMAT, "idx_load: %s: %s payload for factory %s", path, raw ? "raw Flat" : "FAISS", factory);
        goto out;
    }
    if ((rc = idx_alloc(factory, (int)dim, opts, &ix))) { rc = perr_prefix(PERR_FORMAT, "idx_load: %s", path); goto out; }
    ix->trained = flags & FLAG_TRAINED;
    apply_threads();
    const unsigned char *at = p + HDR_SIZE + flen, *tomb = NULL, *params;
    if (raw) {
        params = at;
    } else {
        if ((rc = read_blob(path, "main index", at, main_len, &ix->main))) goto out;
        at += main_len;
        if (buf_len && (rc = read_blob(path, "side buffer", at, buf_len, &ix->buf))) goto out;
        at += buf_len;
        tomb = at;
        params = at + 8 * (size_t)n_tomb;
    }
    for (uint32_t i = 0; i < n_params; i++, params += PARAM_REC) {
        if (memchr(params, 0, 32) == NULL || !params[0]) { rc = perr_set(PERR_FORMAT, "idx_load: %s: bad parameter name", path); goto out; }
        memcpy(ix->params[i].name, params, 32);
        uint64_t bits = get64(params + 32);
        memcpy(&ix->params[i].value, &bits, 8);
    }
    ix->n_params = (int)n_params;
    if (raw) {
        if ((rc = adopt_flat(ix, path, p, size, ids_at, x_at, main_len))) goto out;
        keep_map = main_len > 0;
    } else if ((rc = adopt(ix, path, tomb, n_tomb))) {
        goto out;
    }
    if (covered_seq) *covered_seq = seq;
    *out = ix;
    ix = NULL;
out:
    if (ix && ix->base.map) { ix->base.map = NULL; keep_map = 0; } /* unmapped below */
    if (!keep_map) munmap((void *)p, size);
    idx_free(ix);
    return rc;
}
