/* eng: the percept database: encoder + FAISS index + LMDB storage.
 *
 * A database is a directory: one LMDB environment (storage/st.h; every
 * vector lives there, the source of truth) and one FAISS index file per
 * collection (index/idx.h; derived data, rebuilt or caught up from LMDB's
 * per-collection change log on open). The model identity (fingerprint, dim,
 * path) is recorded at creation; opening with another model is refused.
 *
 * This header is the one API of both the embedded CLI and the server.
 *
 * Thread safety:
 *  - every eng_* call on one eng_db may be made from any thread at the same
 *    time as others, except eng_close (no other call may be running).
 *  - queries (eng_search_*, eng_classify_*, eng_moderate_*, eng_get, eng_dups,
 *    eng_stats, eng_export) run concurrently; each borrows one encoder
 *    context from a pool (size eng_open_opts.n_encoders) when it encodes.
 *  - writes (eng_ingest_*, eng_add_*, eng_remove, eng_label_*, collection
 *    management) are serialised through one writer lock; queries keep
 *    running meanwhile and never see a half-written item (an item is in
 *    the index only after its LMDB transaction committed; an index hit whose
 *    item is gone from LMDB is dropped).
 *
 * Ids: item ids are global to the database (unique across collections);
 * the same bytes ingested into two collections are two items.
 */
#ifndef PERCEPT_ENG_H
#define PERCEPT_ENG_H

#include <stddef.h>
#include <stdint.h>

typedef struct eng_db eng_db;

#define ENG_DEFAULT_COLLECTION "default"
#define ENG_DEFAULT_INDEX "Flat"
#define ENG_NAME_MAX 65          /* collection name bytes, incl. NUL */
#define ENG_GROUP_MAX 256        /* uploads in one group-commit transaction at most */

/* ---- open / close ------------------------------------------------------ */

typedef struct eng_open_opts {
    /* Model file. Required to create a database; when opening an existing
     * one, NULL means the model path recorded at creation. When given for an
     * existing database its fingerprint and dim must match the recorded
     * ones (PERR_MODEL otherwise, naming both models). The model is loaded
     * lazily, on the first call that encodes. */
    const char *model_path;
    const char *vocab_path;     /* NULL: next to the model file */
    int create;                 /* create the directory if it has no db */
    /* Creating without a model: a vectors-only database of this dimension
     * (model name "none", fingerprint 0); encoding calls then fail. For
     * imports and benchmarks. */
    int vector_dim;
    int read_only;              /* no writes; indexes are not saved */
    size_t map_size;            /* LMDB map size in bytes; 0: storage default */
    int n_encoders;             /* encoder contexts for queries (default 2) */
    int encoder_threads;        /* threads per encoder context (default 1) */
    /* Save an index after this many changes during bulk ingest (default
     * 20000); indexes are always saved at close. */
    int save_every;
    /* Uploads per group-commit transaction at most (eng_upload_commit;
     * default and cap ENG_GROUP_MAX = 256; 1: a transaction per upload,
     * for comparison in bench_server). */
    int upload_group_max;
    /* Precision of the encoder's matrix products, "fp32" or "bf16"
     * (docs/encoder.md). A database records the precision its vectors are
     * made with when it is created (fp32 when not given); NULL opens it with
     * the recorded one, another one is refused (PERR_MODEL): vectors of two
     * precisions would be mixed in one index. */
    const char *precision;
} eng_open_opts;

void eng_open_opts_default(eng_open_opts *o);

/* Opens (or creates) the database in dir. Loads each collection's index,
 * replays changes newer than the index's covered sequence, rebuilds a
 * missing or damaged index from LMDB (*out is NULL on failure). */
int eng_open(const char *dir, const eng_open_opts *o, eng_db **out);
/* Saves dirty indexes (unless read-only) and frees everything. Returns the
 * first error of saving; the handle is freed regardless. NULL: no-op. */
int eng_close(eng_db *db);

/* A handle with a model and no database (classification and encoding
 * only; every database call fails with PERR_INVALID). */
int eng_open_model(const char *model_path, const char *vocab_path, eng_db **out);

/* Saves every dirty index now (atomic replace, with the sequence it covers). */
int eng_checkpoint(eng_db *db);

typedef struct eng_info {
    char model_path[1024];
    char model_name[64];
    uint64_t model_fingerprint;
    int dim;
    uint32_t layout_version;
    char precision[8];          /* "fp32", "bf16": of the database's vectors */
    char encoder_isa[32];       /* instruction set of the encoder's products here */
} eng_info;
int eng_get_info(eng_db *db, eng_info *out);

/* ---- collections ------------------------------------------------------- */

typedef struct eng_collection_info {
    char name[ENG_NAME_MAX];
    char factory[256];          /* FAISS factory string, e.g. "Flat", "HNSW32" */
    uint64_t n_items;
    uint64_t n_index;           /* vectors in the in-memory index */
    uint64_t n_segments;        /* video segments stored */
    uint64_t n_seg_index;       /* segment vectors in the in-memory segment index */
    uint64_t seq;               /* last change sequence in LMDB */
    uint64_t index_seq;         /* sequence covered by the in-memory index */
    float threshold;            /* moderation default threshold; NAN when unset */
    int trained;
    int thumbnails;             /* 1: ingest keeps a thumbnail per item (default) */
    /* HNSW: removed vectors still in the graph / graph size. The engine
     * rebuilds the index from LMDB once this passes 0.2 (0 for other types). */
    double tombstone_frac;
} eng_collection_info;

/* factory NULL: ENG_DEFAULT_INDEX. PERR_EXISTS when it exists. */
int eng_collection_create(eng_db *db, const char *name, const char *factory);
/* Removes the collection, its items and its index file. */
int eng_collection_drop(eng_db *db, const char *name);
/* *out: malloc'd array of *n entries; caller frees. */
int eng_collection_list(eng_db *db, eng_collection_info **out, int *n);
int eng_collection_get(eng_db *db, const char *name, eng_collection_info *out);
/* Thumbnails kept at ingest for this collection's new items (on by
 * default); items already stored keep theirs. */
int eng_collection_set_thumbnails(eng_db *db, const char *name, int on);
/* Moderation default threshold of a set: "collection" or "collection:label". */
int eng_set_threshold(eng_db *db, const char *set, float threshold);
/* *out NAN when none was set. */
int eng_get_threshold(eng_db *db, const char *set, float *out);

/* ---- items ------------------------------------------------------------- */

typedef struct eng_kv { const char *key; const char *value; } eng_kv;

typedef struct eng_item {
    uint64_t id;
    char collection[ENG_NAME_MAX];
    char *uri;                  /* source path or URI */
    char media[16];             /* "image", "video", "vector" */
    uint8_t sha256[32];
    uint64_t size;              /* bytes of the source */
    int width, height;          /* source pixels; 0 when unknown */
    int64_t created_ms;         /* time of ingest (ms since the epoch) */
    double duration_s;          /* video only, else 0 */
    double fps;                 /* video only, else 0 */
    char codec[32];             /* video only ("h264", "vp9", "gif", ...), else "" */
    uint32_t n_segments;        /* video only: segment vectors stored */
    char **labels; int n_labels;
    eng_kv *meta; int n_meta;   /* key/value strings owned by the item */
    float *vector; int dim;     /* normalized; NULL unless asked for */
} eng_item;

/* with_vector: also fill item->vector. PERR_NOT_FOUND for unknown ids. */
int eng_get(eng_db *db, uint64_t id, int with_vector, eng_item **out);
void eng_item_free(eng_item *it);

/* Removes items from LMDB and their index. Unknown ids: PERR_NOT_FOUND
 * after removing the known ones (*n_removed counts them). */
int eng_remove(eng_db *db, const uint64_t *ids, int n, int *n_removed);
int eng_label_add(eng_db *db, const char *label, const uint64_t *ids, int n);
int eng_label_remove(eng_db *db, const char *label, const uint64_t *ids, int n);

/* ---- thumbnails -------------------------------------------------------- */

/* Ingest keeps, in collections with thumbnails on, a WebP thumbnail of
 * ENG_THUMB_SIDE px on the long side for every image (made from the decode
 * that feeds the encoder), every video (its middle uniform frame) and every
 * video segment (a frame of its own), stored in LMDB with the item
 * (docs/storage.md "thumbs"). */
#define ENG_THUMB_SIDE 256

typedef struct eng_thumb {
    void *data; size_t len;     /* encoded picture, malloc'd (eng_thumb_clear) */
    int width, height;
    char mime[16];              /* "image/webp" or "image/jpeg" */
    int stored;                 /* 1: from the database; 0: made now from the
                                   item's source file (none was stored) */
} eng_thumb;

/* The thumbnail of item id (segment < 0) or of its video segment `segment`.
 * When none is stored (a layout-1 database, a collection with thumbnails
 * off, an item added before) it is made from the item's stored path when
 * that file is readable here (not stored back). PERR_NOT_FOUND: no such
 * item or segment, or no thumbnail can be had (vector items, a source
 * gone); the message says which. */
int eng_get_thumbnail(eng_db *db, uint64_t id, int segment, eng_thumb *out);
/* Frees out->data and zeroes *out. NULL-safe. */
void eng_thumb_clear(eng_thumb *t);

/* ---- ingest ------------------------------------------------------------ */

typedef enum {
    ENG_ADDED = 0,        /* stored and searchable; id valid */
    ENG_PRESENT = 1,      /* same bytes already in the collection; id = it */
    ENG_FAILED = 2,       /* not stored; reason says why */
    ENG_SKIPPED = 3,      /* a directory not entered (already walked); not a
                             failure; code and reason say why */
} eng_outcome;

typedef struct eng_file_result {
    const char *path;     /* as given / found while walking */
    eng_outcome outcome;
    int code;             /* perr code when FAILED */
    const char *reason;   /* message when FAILED */
    uint64_t id;
} eng_file_result;

typedef struct eng_progress {
    uint64_t seen;        /* files found so far */
    uint64_t done;        /* finished (added + present + failed + skipped) */
    uint64_t added, present, failed;
    uint64_t skipped;     /* directories not entered again (ENG_SKIPPED) */
    uint64_t bytes;       /* bytes read */
    int walking;          /* 1 while directories are still being walked */
    double elapsed_s;
    double encode_s;      /* cumulated time inside the encoder */
    double decode_s;      /* cumulated time decoding+preprocessing video frames */
    uint64_t videos;      /* videos added */
    uint64_t frames;      /* video frames sampled and encoded */
    uint64_t frames_decoded; /* video frames the decoders decoded (seeks included) */
    double video_s;       /* seconds of video added */
} eng_progress;

/* Called from the writer thread after each committed batch (results of
 * the batch's files, all acknowledged: their transaction committed) and for
 * each file that failed or was already present. Must be quick. */
typedef void (*eng_result_fn)(void *user, const eng_file_result *r);
typedef void (*eng_progress_fn)(void *user, const eng_progress *p);

/* Video ingest (docs/video.md "Ingest"). A video (any container/codec
 * pe_video accepts, animated GIF/WebP included; decided by content) is one
 * item whose vector is the video vector of pe-core.md: `frames` frames
 * uniformly over the duration, each embedded, L2-normalized, averaged,
 * L2-normalized. Its segments ([i*segment_s, (i+1)*segment_s), the last one
 * shorter) get vectors from `segment_frames` frames each, kept in the
 * collection's segment index (eng_query.segments). Work per video is bounded
 * by the limits: over one, the video fails whole (nothing stored). */
typedef struct eng_video_opts {
    int frames;                 /* video vector frames (default 8; 1..256) */
    double segment_s;           /* segment window, seconds (default 2; 0: no segments) */
    int segment_frames;         /* frames per segment (default 2; 1..16) */
    int max_frames_decoded;     /* per video, seeks included (default 100000) */
    double max_duration;        /* seconds of delivered video (default 4 h) */
    double max_seconds;         /* wall-clock decoding budget per video (default 900) */
    int max_side;               /* frames scaled so the longest side is at most
                                   this before preprocessing (default 0: full size,
                                   the same preprocessing as an image file) */
} eng_video_opts;

void eng_video_opts_default(eng_video_opts *o);

/* What a video is, as ingest measured it. */
typedef struct eng_video_meta {
    double duration_s, fps;
    int width, height;          /* displayed size */
    char codec[32], container[32];
    int n_frames;               /* frames encoded (video vector + segments) */
    int n_segments;
} eng_video_meta;

typedef struct eng_ingest_opts {
    const char *collection;     /* NULL: "default" (created on demand) */
    const char *const *labels; int n_labels;
    const eng_kv *meta; int n_meta;
    int jobs;                   /* decode threads (default: cores) */
    int batch;                  /* encoder batch (default 8) */
    int encoder_threads;        /* threads of the bulk encoder (default 0:
                                   every core; vectors do not depend on it) */
    int commit_batch;           /* items per LMDB transaction (default 64) */
    int recursive;              /* walk directories (default 1) */
    eng_result_fn on_result; eng_progress_fn on_progress; void *user;
    volatile int *cancel;       /* set to non-zero to stop early (may be NULL) */
    const eng_video_opts *video; /* NULL: eng_video_opts_default */
} eng_ingest_opts;

void eng_ingest_opts_default(eng_ingest_opts *o);

/* Ingests files and directories ("-" reads paths from stdin, one a line).
 * A bad file is reported through on_result and skipped; the run goes on.
 * Returns an error only for what stops the whole run (storage full, I/O
 * error on the database, model missing); *out gets the final counters. */
int eng_ingest_paths(eng_db *db, const char *const *paths, int n,
                     const eng_ingest_opts *o, eng_progress *out);

/* The walk of eng_ingest_paths, for callers that ingest elsewhere (the
 * CLI's upload to a server). Directories recursively (when recursive), in
 * name order, at most 64 deep, links followed but each directory entered
 * once (device + inode): one entered again is passed to skip (code
 * PERR_EXISTS, reason naming the path it was first walked by). Everything
 * else goes to file, whatever it is (its reader reports what is wrong).
 * "-" reads paths from stdin, one a line. stop (may be NULL) is polled. */
typedef struct eng_walk_opts {
    int recursive;
    void (*file)(void *user, const char *path);
    void (*skip)(void *user, const char *path, int code, const char *reason);
    int (*stop)(void *user);
    void *user;
} eng_walk_opts;

void eng_walk(const char *const *paths, int n, const eng_walk_opts *o);

/* One media buffer. *id gets the new or existing id; *outcome ENG_ADDED or
 * ENG_PRESENT (ENG_FAILED with an error). eng_upload_prepare +
 * eng_upload_commit, waiting for the commit: callers adding at the same
 * time share transactions. */
int eng_add_buffer(eng_db *db, const void *data, size_t len, const char *uri,
                   const eng_ingest_opts *o, uint64_t *id, eng_outcome *outcome);

/* Uploads with group commit (the server's INGEST), in two steps so that the
 * thread that decodes never waits for a disk sync:
 *  - eng_upload_prepare does the CPU work on the calling thread: SHA-256,
 *    the "already present" lookup, decoding and encoding (o: collection,
 *    labels, meta, video; copied, o may die on return). A file that cannot
 *    be stored fails here (*out NULL, error with the uri named).
 *  - eng_upload_commit hands it to the database's one committer thread.
 *    Uploads queued while a transaction commits go together into the next
 *    one (up to eng_open_opts.upload_group_max): one LMDB write transaction and sync
 *    per group instead of per upload. Within a group the same bytes twice
 *    are stored once: the later upload is ENG_PRESENT with the same id. An
 *    upload that storage refuses (a label or metadata value over the limits)
 *    fails alone; when the whole transaction fails (map full, I/O), each
 *    upload of the group is retried in its own transaction.
 * done runs exactly once per committed upload: after the transaction holding
 * it committed (synced: the item is durable, in the index and searchable),
 * with rc PERR_OK, the id and ENG_ADDED / ENG_PRESENT; or with rc != 0 (the
 * message in perr_msg() on that thread) when it was not stored. It runs on
 * the committer thread (on the caller's, before eng_upload_commit returns,
 * for an upload found present by prepare) and must be quick: the next group
 * waits for it. eng_close commits and answers what is queued before closing. */
typedef struct eng_upload eng_upload;
typedef void (*eng_upload_fn)(void *user, int rc, uint64_t id, eng_outcome outcome);
int eng_upload_prepare(eng_db *db, const void *data, size_t len, const char *uri,
                       const eng_ingest_opts *o, eng_upload **out);
/* Takes u (freed after done ran). */
void eng_upload_commit(eng_db *db, eng_upload *u, eng_upload_fn done, void *user);
/* A prepared upload not committed after all. NULL: no-op. */
void eng_upload_free(eng_upload *u);

/* Raw vectors (n x dim; normalized here), e.g. for benchmarks or imports.
 * uris may be NULL. ids[i] gets each new id (ids may be NULL). One
 * transaction for all n. */
int eng_add_vectors(eng_db *db, const float *vectors, int n, const char *const *uris,
                    const eng_ingest_opts *o, uint64_t *ids);

/* ---- queries ----------------------------------------------------------- */

typedef struct eng_query {
    const char *const *collections; int n_collections; /* none: "default" */
    int k;                      /* top-k (default 10); with min_score: cap (0 = no cap) */
    float min_score;            /* used when has_min_score: every item >= it */
    int has_min_score;
    const char *const *labels; int n_labels;   /* item must have all (AND) */
    const eng_kv *where; int n_where;          /* metadata exact match (AND) */
    int include_self;           /* eng_search_id: keep the query item (default 0) */
    /* Search the collections' video segment indexes instead of their items:
     * each hit is one segment (start_s/end_s set; id = the video's item id),
     * several segments of one video may be returned. Filters apply to the
     * video item. */
    int segments;
} eng_query;

void eng_query_default(eng_query *q);

typedef struct eng_hit {
    uint64_t id;
    float score;                /* cosine similarity */
    char collection[ENG_NAME_MAX];
    char *uri;
    char media[16];
    char **labels; int n_labels;
    /* Video segment times: with eng_query.segments the matching stored
     * segment; in moderation of a video, the segment of the *query* video
     * that matched this hit best. -1 otherwise. */
    double start_s, end_s;
    /* The item's media metadata (video: duration, fps, codec; images:
     * width/height only). */
    int width, height;
    double duration_s, fps;
    char codec[32];
} eng_hit;

typedef struct eng_results {
    eng_hit *hits; int n;       /* best first */
} eng_results;

void eng_results_free(eng_results *r);

int eng_search_text(eng_db *db, const char *text, const eng_query *q, eng_results **out);
int eng_search_image_file(eng_db *db, const char *path, const eng_query *q, eng_results **out);
int eng_search_image_buffer(eng_db *db, const void *data, size_t len, const eng_query *q,
                            eng_results **out);
/* Items similar to item id (its stored vector). The item itself is
 * excluded unless q->include_self. */
int eng_search_id(eng_db *db, uint64_t id, const eng_query *q, eng_results **out);
/* vector: dim floats, normalized here. */
int eng_search_vector(eng_db *db, const float *vector, int dim, const eng_query *q,
                      eng_results **out);

/* nq vectors (nq x dim, row-major; normalized here) under one query shape
 * q: out[i] gets exactly what eng_search_vector gives for vector i alone
 * (same hits, scores and order), but unfiltered Flat searches are answered
 * by one batched FAISS call (BLAS from 20 queries), several times faster
 * per query. out: nq pointers, each freed with eng_results_free. On error
 * every out[i] is NULL (the message names the query when one is at fault). */
int eng_search_vectors(eng_db *db, const float *vectors, int nq, int dim, const eng_query *q,
                       eng_results **out);

/* Encoders, exposed for the server and classification: out gets dim
 * normalized floats. */
int eng_encode_text(eng_db *db, const char *text, float *out);
int eng_encode_image_file(eng_db *db, const char *path, float *out);
int eng_encode_image_buffer(eng_db *db, const void *data, size_t len, float *out);
int eng_dim(eng_db *db);
/* The database directory as given to eng_open (the server keeps it out of
 * the messages it sends to clients). */
const char *eng_dir(eng_db *db);
/* Any media file or buffer, kind decided by content: an image's vector or a
 * video's video vector (vopts NULL: defaults; only frames and the limits
 * apply). meta (may be NULL) is filled for videos and zeroed for images;
 * *is_video (may be NULL) says which. eng_encode_image_* and every query,
 * classification and moderation by file/buffer accept videos this way. */
int eng_encode_media_file(eng_db *db, const char *path, const eng_video_opts *vopts,
                          float *out, eng_video_meta *meta, int *is_video);
int eng_encode_media_buffer(eng_db *db, const void *data, size_t len, const char *label,
                            const eng_video_opts *vopts, float *out, eng_video_meta *meta,
                            int *is_video);

/* ---- zero-shot classification ----------------------------------------- */

/* probs[i] = softmax(exp(logit_scale) * cos(image, prompt(label_i))).
 * prompt: NULL for "a photo of a {label}." ({label} is replaced). */
int eng_classify_file(eng_db *db, const char *path, const char *const *labels, int n,
                      const char *prompt, float *probs);
int eng_classify_buffer(eng_db *db, const void *data, size_t len, const char *const *labels,
                        int n, const char *prompt, float *probs);

/* ---- moderation -------------------------------------------------------- */

typedef struct eng_mod_result {
    int matched;                /* any hit of any set at or above its threshold */
    eng_results *nearest;       /* nearest items over all sets (best first) */
    float *thresholds;          /* per set: the threshold used */
    int *set_matched;           /* per set: 1 when matched */
    int n_sets;
} eng_mod_result;

/* A video upload (eng_moderate_file/_buffer on video content) is checked by
 * its video vector and by each of its segment vectors: a set matches when
 * any of them reaches the threshold, and each nearest hit carries in
 * start_s/end_s the query segment that scored best (-1 when the whole-video
 * vector did). */
/* sets: "collection" or "collection:label". threshold NAN: each set's stored
 * threshold (PERR_INVALID when a set has none). k: nearest matches kept
 * per set (default 5 when <= 0). */
int eng_moderate_vector(eng_db *db, const float *vector, const char *const *sets, int n_sets,
                        float threshold, int k, eng_mod_result **out);
int eng_moderate_file(eng_db *db, const char *path, const char *const *sets, int n_sets,
                      float threshold, int k, eng_mod_result **out);
int eng_moderate_buffer(eng_db *db, const void *data, size_t len, const char *const *sets,
                        int n_sets, float threshold, int k, eng_mod_result **out);
void eng_mod_result_free(eng_mod_result *r);

/* ---- duplicates -------------------------------------------------------- */

typedef enum { ENG_DUP_EXACT = 0, ENG_DUP_NEAR = 1, ENG_DUP_SIMILAR = 2 } eng_dup_tier;

/* Default cosine thresholds. NEAR was calibrated with the tiny-a test model
 * on real photos (tests/engine, docs/design.md): JPEG re-encodes (q60) and
 * 70 % resizes stay >= 0.999, 90 % crops fall to 0.91-0.999, and two
 * different photos reach 0.986 with those random weights. The trained
 * PE_core models spread unrelated photos much further apart: they may want
 * a lower NEAR (around 0.95) and a SIMILAR around 0.8; pass --threshold. */
#define ENG_NEAR_THRESHOLD_DEFAULT 0.995f
#define ENG_SIMILAR_THRESHOLD_DEFAULT 0.90f

typedef struct eng_dup_group {
    uint64_t *ids; int n;       /* first: the representative (lowest id) */
    float min_score;            /* lowest similarity to the representative */
} eng_dup_group;

typedef struct eng_dups {
    eng_dup_group *groups; int n;
} eng_dups;

/* Groups a collection (NULL: default) by tier. threshold <= 0: the tier's
 * default (ignored for EXACT). Groups are connected components of the
 * "similar above threshold" relation; only groups of 2+ are returned. */
int eng_find_dups(eng_db *db, const char *collection, eng_dup_tier tier, float threshold,
                  eng_dups **out);
void eng_dups_free(eng_dups *d);

/* ---- stats / export ---------------------------------------------------- */

typedef struct eng_stats {
    uint64_t n_items;
    int n_collections;
    uint64_t lmdb_bytes;        /* data.mdb size on disk */
    uint64_t index_bytes;       /* all index files */
    uint64_t map_size;
    uint64_t upload_groups;     /* group-commit transactions since open */
    uint64_t uploads_grouped;   /* uploads they held (/ upload_groups: mean group) */
} eng_stats;
int eng_get_stats(eng_db *db, eng_stats *out);

/* Visits every item of a collection (NULL: all), in id order, with its
 * vector. Returning non-zero from fn stops the walk with that code. */
typedef int (*eng_item_fn)(void *user, const eng_item *it);
int eng_foreach(eng_db *db, const char *collection, int with_vector, eng_item_fn fn, void *user);
/* The same walk resumed: from collection from_coll (NULL: the first) at
 * its items with id > after_id, then the collections after it (paging:
 * pass the last item's collection and id). fn returning > 0 ends the
 * walk with PERR_OK. */
int eng_foreach_from(eng_db *db, const char *collection, const char *from_coll, uint64_t after_id,
                     int with_vector, eng_item_fn fn, void *user);

#endif
