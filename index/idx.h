/* idx: one FAISS index (1.7.3, through its C API) holding the normalized
 * vectors of one collection (or of one collection's video segments), keyed by
 * our own 64-bit ids. Cosine similarity: inner product on L2-normalized
 * float32 vectors; a score is the cosine, higher is closer.
 *
 * An idx is derived data: it knows nothing of storage or the encoder, and the
 * engine can always rebuild it from storage. idx_save() records the storage
 * sequence number the file covers so that the engine replays only what came
 * after it (docs/index.md).
 *
 * Index types: any FAISS factory string that builds an inner-product index,
 * e.g. "Flat" (exact), "HNSW32", "IVF1024,Flat", "IVF256,SQ8", "SQ8",
 * "SQfp16", "IVF1024,PQ32np" (write PQ with "np": otherwise FAISS runs its
 * slow polysemous training). Ids: IVF indexes keep ids natively; every other
 * type is wrapped in FAISS's IndexIDMap2. A factory string that FAISS rejects
 * (or that contains "IDMap": ids are ours) fails with PERR_INVALID carrying
 * FAISS's message. (FAISS's C API also prints every exception it catches to
 * stderr; the error code and perr_msg() are what count.) Types, training,
 * deletes, file format and thread model in detail: docs/index.md.
 *
 * Training (IVF, SQ8, PQ...): until the index is trained, added vectors go to
 * an exact flat side buffer that search, filtered search, range search and
 * remove all use; results stay exact meanwhile. When the buffer reaches
 * idx_train_size() vectors (opts.auto_train), or when idx_train() is called,
 * a fresh index is trained outside the lock (searches and adds continue on
 * the buffer) and the buffered vectors are then moved in.
 *
 * Deletes: FAISS removes from Flat, SQ, PQ and IVF indexes. HNSW cannot
 * remove: a removed HNSW vector becomes a tombstone that every search filters
 * out; idx_stats() reports the tombstone fraction, and the engine rebuilds
 * the index from storage when it grows (e.g. above 0.2). Removing from a
 * Flat/SQ index compacts the whole array (O(count)): remove in batches.
 *
 * Flat after idx_load: the file's rows are used in place from a read-only
 * mapping (the "base", never copied); vectors added later go to an
 * in-memory FAISS Flat "delta"; removing a base row sets its bit in a
 * tombstone bitmap (not counted in idx_stats.tombstones, which is HNSW's).
 * Searches scan the mapping with our kernel, whose answers equal FAISS's
 * knn_inner_product / range_search_inner_product bit for bit (BLAS batches
 * of >= 20 queries go to FAISS itself), and merge the delta's results;
 * counts, contains, filters and removes stay exact. idx_save writes the live rows as a fresh file; the
 * idx keeps its old mapping (docs/index.md).
 *
 * Ids are >= 0 and unique within an index: adding an id already present
 * fails with PERR_EXISTS (remove it first to replace its vector). -1 marks a
 * missing result.
 *
 * Thread safety: an idx locks internally with a writer-preferring rwlock.
 * Any number of idx_search / idx_search_filtered / idx_range_search /
 * idx_stats / idx_count / idx_save calls run concurrently; idx_add,
 * idx_remove and idx_set_param take the lock exclusively (a concurrent
 * search waits for them). Training runs outside the lock (see above); only
 * one training runs at a time per idx. idx_free must not race other calls.
 *
 * Threads: FAISS parallelises with OpenMP inside one call (over queries of
 * a batch, over lists, over HNSW adds). On a small machine OpenMP threads,
 * OpenBLAS threads (FAISS calls sgemm from a batch of 20 queries on Flat) and
 * the server's own workers oversubscribe the cores. Recommended for the
 * server: idx_set_threads(1) and one search worker per core (with
 * OPENBLAS_NUM_THREADS=1); for bulk ingest, training and rebuilds:
 * idx_set_threads(0) or the core count, from the thread that does the work.
 *
 * Errors: int perr codes (common/perr.h), message in perr_msg(). FAISS's
 * exceptions arrive as error codes through its C API; their text is kept:
 * PERR_INVALID for a bad factory string or argument, PERR_FORMAT for a file
 * that is not a valid index file (bad magic, length, checksum, or a FAISS
 * payload that does not parse), PERR_VERSION for another file format
 * version, PERR_INDEX for any other FAISS failure,
 * PERR_NOMEM, PERR_IO/PERR_FULL for the file system.
 */
#ifndef PERCEPT_IDX_H
#define PERCEPT_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_FORMAT_VERSION 2
#define IDX_FACTORY_MAX    255    /* factory string, bytes */
#define IDX_DIM_MAX        16384  /* vector dimension */
#define IDX_K_MAX          4096   /* k of one search */
#define IDX_NORM_TOL       1e-3f  /* |‖x‖² - 1| allowed for a "normalized" vector */

typedef struct idx idx;

/* ----------------------------------------------------------------- create */

typedef struct idx_opts {
    int auto_train;        /* train from the side buffer once it holds
                              idx_train_size() vectors, inside the idx_add()
                              that fills it (default 1). With 0 the engine
                              calls idx_train() itself. */
    size_t train_size;     /* vectors wanted for training; 0 = derive from
                              the factory (IVF: 39 per list, PQ: 39*256,
                              SQ: 4096, max of those that apply) */
    size_t train_max;      /* at most this many buffered vectors are used
                              for training (evenly sampled; default 262144) */
    size_t filter_scan_max;/* idx_search_filtered(): filters of at most this
                              many ids are answered by scoring exactly those
                              ids (every type except IVF); default 32768 */
    int check_norm;        /* reject vectors/queries that are not unit-norm
                              within IDX_NORM_TOL (default 1). NaN/Inf is
                              always rejected. */
} idx_opts;

idx_opts idx_opts_default(void);

/* Creates an empty index of dimension dim (1..IDX_DIM_MAX) from a FAISS
 * factory string, inner-product metric. opts may be NULL (defaults).
 * PERR_INVALID with FAISS's message for a string FAISS rejects. */
int idx_create(const char *factory, int dim, const idx_opts *opts, idx **out);
void idx_free(idx *ix);

/* ---------------------------------------------------------------- training */

/* 1 while the index is untrained (vectors live in the exact side buffer). */
int idx_needs_training(const idx *ix);
/* Vectors wanted for training (0 when the type needs none). */
size_t idx_train_size(const idx *ix);
/* Trains the index, then moves the buffered vectors into it. With x (n x
 * dim, normalized) trains on those vectors (e.g. a sample the engine read
 * from storage); with x == NULL and n == 0 on the buffered vectors (at most
 * opts.train_max of them). Too few vectors for FAISS (e.g. fewer than one
 * per IVF list) -> PERR_INVALID with FAISS's message. A no-op for a trained
 * index. Searches and adds continue on the buffer meanwhile; training may
 * take seconds to minutes (k-means). */
int idx_train(idx *ix, const float *x, size_t n);

/* ------------------------------------------------------------ add, remove */

/* Adds n vectors (n x dim floats, row-major, normalized) with ids (>= 0,
 * unique, not yet present). All or nothing: on error nothing was added.
 * May train (see opts.auto_train). */
int idx_add(idx *ix, const float *x, const int64_t *ids, size_t n);
/* Removes the ids present among ids[0..n); *removed (may be NULL) gets how
 * many were. Unknown ids are not an error. */
int idx_remove(idx *ix, const int64_t *ids, size_t n, size_t *removed);
/* 1 if id is present (live), else 0. */
int idx_contains(const idx *ix, int64_t id);

size_t idx_count(const idx *ix);   /* live vectors (buffer included) */
int idx_dim(const idx *ix);
const char *idx_factory(const idx *ix);  /* valid while ix lives */

/* ----------------------------------------------------------------- search */

/* k nearest by cosine for nq queries (nq x dim, normalized), 1 <= k <=
 * IDX_K_MAX. scores and ids are nq x k, row i best first; missing results
 * (fewer than k vectors) have id -1 and score -INFINITY. Batches are
 * searched together (FAISS switches Flat to BLAS from 20 queries). */
int idx_search(const idx *ix, const float *q, size_t nq, int k,
               float *scores, int64_t *ids);

/* Like idx_search, but only ids in allowed[0..n_allowed) (sorted ascending,
 * no duplicates, else PERR_INVALID) are returned; the same filter applies to
 * every query of the batch. Exact for Flat (and for the side buffer); for
 * small filters (<= opts.filter_scan_max ids, non-IVF types) the allowed ids
 * are scored one by one (exact on the stored codes), otherwise the index is
 * searched with a growing k until k allowed hits or exhaustion. */
int idx_search_filtered(const idx *ix, const float *q, size_t nq, int k,
                        const int64_t *allowed, size_t n_allowed,
                        float *scores, int64_t *ids);

/* Result of idx_range_search: n hits, best first. */
typedef struct idx_hits {
    size_t n;
    float *scores;
    int64_t *ids;
    int truncated;     /* 1 if more than max_results items qualified: the
                          best max_results are returned */
} idx_hits;

/* All items with score > min_score (strictly, FAISS's radius semantics for
 * inner product) for one query, at most max_results (>= 1) of them.
 * Native FAISS range search on Flat and IVF; other types (HNSW, SQ, PQ)
 * search with a growing k (approximate like their k-NN search).
 * *out is filled; free its arrays with idx_hits_clear(). */
int idx_range_search(const idx *ix, const float *q, float min_score,
                     size_t max_results, idx_hits *out);
void idx_hits_clear(idx_hits *h);

/* -------------------------------------------------------------- parameters */

/* Search-time parameter by FAISS name: "nprobe" (IVF), "efSearch" (HNSW),
 * and others FAISS's ParameterSpace knows. Applies to later searches, is
 * kept across training and saved with the index. PERR_INVALID if the index
 * type has no such parameter. */
int idx_set_param(idx *ix, const char *name, double value);

/* Process-wide OpenMP thread count for FAISS work done by idx calls (applied
 * to the calling thread at every idx call, so it holds for every worker
 * thread). n >= 1; 0 restores OpenMP's default (OMP_NUM_THREADS or the core
 * count). OpenBLAS threads are not touched (OPENBLAS_NUM_THREADS). */
void idx_set_threads(int n);
int idx_get_threads(void);  /* the value set, 0 = OpenMP default */

typedef struct idx_stats {
    size_t count;          /* live vectors */
    size_t buffered;       /* of which in the untrained side buffer */
    size_t tombstones;     /* removed HNSW vectors still in the graph */
    double tombstone_frac; /* tombstones / (count + tombstones) */
    int trained;
    int training;          /* a training is running */
    size_t train_size;
    int dim;
    char train_error[256]; /* why the last automatic training failed ("" if
                              it did not); the vectors stay buffered */
} idx_stats;

void idx_get_stats(const idx *ix, idx_stats *st);

/* ------------------------------------------------------------ persistence */

/* Writes the index atomically: a temporary file in path's directory,
 * fsync, rename over path, fsync of the directory. covered_seq is the
 * caller's storage sequence number that the contents reflect. Concurrent
 * searches continue. Byte layout: docs/index.md. */
int idx_save(const idx *ix, const char *path, uint64_t covered_seq);

/* Loads a file written by idx_save. PERR_NOT_FOUND if missing, PERR_FORMAT
 * naming the file for any damage (bad magic, truncation, checksum (XXH3-64
 * over the whole file), unparsable payload, bad ids), PERR_VERSION for
 * another format version (1: written before Flat files held raw rows).
 * A Flat file is used in place (mapped, see above): load time is the
 * checksum pass plus the id hash, not a copy. opts may be NULL (defaults; the
 * factory, dim and search parameters come from the file). covered_seq may
 * be NULL. */
int idx_load(const char *path, const idx_opts *opts, idx **out,
             uint64_t *covered_seq);

/* -------------------------------------------------------------- helpers */

/* Normalizes n vectors of dim floats in place to unit L2 norm.
 * PERR_INVALID (naming the row) for a zero or non-finite vector. */
int idx_normalize(float *x, size_t n, int dim);

#endif
