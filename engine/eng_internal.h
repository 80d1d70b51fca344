/* eng_internal: what the engine's files share (not a public header). */
#ifndef PERCEPT_ENG_INTERNAL_H
#define PERCEPT_ENG_INTERNAL_H

#include "engine/eng.h"
#include "encoder/pe.h"
#include "encoder/pe_tokenizer.h"
#include "encoder/pe_video.h"
#include "encoder/pe_image.h"
#include "index/idx.h"
#include "storage/st.h"

#include <pthread.h>

/* One collection as the engine holds it: its storage identity and its
 * in-memory index. The collection table (eng_db.colls) is guarded by
 * eng_db.coll_lock (read for lookups/queries, write for create/drop). */
typedef struct eng_coll {
    uint32_t id;
    char name[ST_NAME_MAX + 1];
    char factory[ST_FACTORY_MAX + 1];
    idx *ix;
    idx *seg_ix;            /* video segments (eng_video.c); same index_seq */
    uint64_t index_seq;     /* storage sequence the in-memory index reflects */
    uint64_t saved_seq;     /* sequence covered by the index file on disk */
    uint64_t unsaved;       /* changes applied since the last save */
} eng_coll;

/* A pool of encoder contexts for queries: borrow, encode, give back. */
typedef struct eng_ctx_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pe_ctx **free_ctx;
    int n_free, n;
} eng_ctx_pool;

/* Text embeddings of classification prompts, per handle: direct-mapped by
 * a hash of the exact text (the label substituted into the prompt), so the
 * same label set and prompt are encoded once. Bounded: ENG_TEXT_CACHE
 * slots, a colliding text replaces the slot. Guarded by mu. */
#define ENG_TEXT_CACHE 512
typedef struct eng_text_cache {
    pthread_mutex_t mu;
    char *text[ENG_TEXT_CACHE];
    float *vec[ENG_TEXT_CACHE];     /* dim floats, normalized */
    uint64_t hits, misses;
} eng_text_cache;

struct eng_db {
    char *dir;
    st_db *st;
    int read_only;
    int lock_fd;            /* flock'ed <dir>/engine.lock (writers only) */
    eng_open_opts opts;

    /* model identity recorded in storage and the engine file */
    int dim;
    uint64_t fingerprint;
    char model_name[ST_MODEL_NAME_MAX + 1];
    char *model_path;       /* recorded (or given) model path */
    pe_precision prec;      /* of the vectors (engine.json "precision") */
    int prec_recorded;      /* engine.json has it */
    char *vocab_path;

    /* encoder, loaded lazily under model_mu */
    pthread_mutex_t model_mu;
    int model_state;        /* 0 not loaded, 1 loaded, <0 the load error */
    pe_model *model;
    pe_tokenizer *tok;
    eng_ctx_pool pool;
    int image_size, context_length;
    eng_text_cache tcache;

    /* collections */
    pthread_rwlock_t coll_lock;
    eng_coll *colls; int n_colls, cap_colls;

    /* writes are serialised through this lock (plus LMDB's own) */
    pthread_mutex_t write_mu;
    /* engine file (model path, set thresholds): guarded by write_mu */
    struct eng_threshold { char set[2 * ST_NAME_MAX + ST_LABEL_MAX + 2]; float value; } *thr;
    int n_thr;

    /* Group commit of uploads (eng_ingest.c): a queue drained by one
     * committer thread, started by the first eng_upload_commit. */
    pthread_mutex_t gc_mu;
    pthread_cond_t gc_cv;
    struct eng_upload *gc_head, *gc_tail;
    int gc_started, gc_stop;
    pthread_t gc_thread;
    uint64_t gc_groups, gc_items;   /* transactions, uploads they held */
};


/* eng_db.c */
int eng_model_ready(eng_db *db);                 /* loads the encoder once */
pe_ctx *eng_ctx_get(eng_db *db);                 /* blocks until one is free */
void eng_ctx_put(eng_db *db, pe_ctx *c);
/* Encodes n texts (normalized, n x dim into out), in batches of the pool
 * contexts' max batch: one pe_encode_ids call per batch. With use_cache,
 * texts seen before on this handle come from eng_db.tcache. On error the
 * message names the text that failed. */
int eng_encode_texts(eng_db *db, const char *const *texts, int n, int use_cache, float *out);
/* Looks a collection up by name (caller holds coll_lock, read or write). */
eng_coll *eng_coll_find(eng_db *db, const char *name);
eng_coll *eng_coll_find_id(eng_db *db, uint32_t id);
/* Creates a collection on demand (takes write_mu and coll_lock itself). */
int eng_coll_ensure(eng_db *db, const char *name, const char *factory);
/* Applies committed adds (ids/vectors) to a collection's index and
 * advances its index sequence; saves when save_every is reached. Caller
 * holds write_mu. */
int eng_index_added(eng_db *db, uint32_t coll, const uint64_t *ids, const float *vecs,
                    size_t n, uint64_t seq);
int eng_save_threshold_file(eng_db *db);
int eng_fill_item(eng_db *db, const st_item *si, eng_item *out);

/* eng_video.c: video decoding plans, segment indexes. */
typedef struct eng_vplan {
    pe_video *v;
    pe_video_info info;
    eng_video_opts o;
    int n_frames;           /* uniform frames of the video vector: times[0..n_frames) */
    int n_segs, seg_frames; /* then n_segs x seg_frames segment times */
    int n_times;
    double *times;
    void *data;             /* bytes the handle reads (owned; may be NULL) */
    /* Thumbnails made while decoding (want_thumbs): [0] the video's (its
     * middle uniform frame), [1 + i] segment i's (its middle sample). A
     * frame whose thumbnail fails has none (len 0); the video still goes in. */
    int want_thumbs;
    pe_thumb *thumbs;       /* 1 + n_segs entries, or NULL */
} eng_vplan;
/* Opens a video from path or from data (ownership of data passes to the
 * plan when own_data, also on failure) and plans its sample times
 * (segments: 0 for query vectors). */
int eng_vplan_open(eng_db *db, const eng_video_opts *o, const char *path, void *data,
                   size_t len, int own_data, int segments, eng_vplan **out);
void eng_vplan_free(eng_vplan *p);
/* Decodes the planned frames in time order, each preprocessed into a
 * malloc'd 3 x S x S tensor passed to fn (which owns it afterwards). */
typedef int (*eng_vframe_fn)(void *user, int index, float *pixels);
int eng_vplan_decode(eng_db *db, eng_vplan *p, eng_vframe_fn fn, void *user);
/* frame_emb: n_times x dim raw embeddings. vec: dim; seg_vecs: n_segs x dim
 * (may be NULL); all normalized. */
void eng_vplan_vectors(eng_db *db, const eng_vplan *p, const float *frame_emb, float *vec,
                       float *seg_vecs);
/* Segment i's [start, end). */
void eng_vplan_segment(const eng_vplan *p, int i, double *start, double *end);
/* Decodes and encodes a whole plan synchronously with a pooled context
 * (batches of 8): *frame_emb malloc'd n_times x dim. */
int eng_vplan_encode(eng_db *db, eng_vplan *p, float **frame_emb);
void eng_vplan_meta(const eng_vplan *p, eng_video_meta *m);
void eng_video_resolve_opts(const eng_video_opts *in, eng_video_opts *out);

/* Segment indexes: <dir>/index/<collection id>.seg.faiss, Flat, derived from
 * storage like the main index and kept at the same index_seq. */
int eng_seg_load(eng_db *db, const st_collection *sc, st_txn *txn, eng_coll *c);
int eng_seg_save(eng_db *db, eng_coll *c);   /* caller holds write_mu */
void eng_seg_path(eng_db *db, uint32_t coll, char *out, size_t cap);
/* After a commit (caller holds write_mu): segments of one item added /
 * n_segments of item removed. */
int eng_seg_added(eng_db *db, uint32_t coll, uint64_t item, const float *vecs, int n);
int eng_seg_removed(eng_db *db, eng_coll *c, uint64_t item, uint32_t n);
/* Video moderation (eng_query.c calls it for video content). */
int eng_moderate_video(eng_db *db, eng_vplan *p, const char *const *sets, int n_sets,
                       float threshold, int k, eng_mod_result **out);
/* 1 when the bytes / file hold a video (or animation). */
int eng_is_video_bytes(const void *data, size_t len);
int eng_is_video_file(const char *path, int *is_video);

/* eng_ingest.c: commits what is queued, then stops the committer (eng_close). */
void eng_group_stop(eng_db *db);

/* eng_thumb.c */
/* 1 when the collection keeps thumbnails (its ST_COLL_NO_THUMBS unset). */
int eng_coll_thumbs(eng_db *db, uint32_t coll, int *on);
/* Stores pe thumbnail t of item id in slot (write txn); an empty t is
 * skipped. Only a failure that kills the transaction is returned. */
int eng_thumb_store(st_txn *w, uint64_t id, uint32_t slot, const pe_thumb *t);

/* eng_sha.c */
void eng_sha256(const void *data, size_t len, uint8_t out[32]);

/* helpers */
double eng_now_s(void);
char *eng_strdup(const char *s);

#endif
