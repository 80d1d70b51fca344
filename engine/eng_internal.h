/* eng_internal: what the engine's files share (not a public header). */
#ifndef PERCEPT_ENG_INTERNAL_H
#define PERCEPT_ENG_INTERNAL_H

#include "engine/eng.h"
#include "encoder/pe.h"
#include "encoder/pe_tokenizer.h"
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
    char *vocab_path;

    /* encoder, loaded lazily under model_mu */
    pthread_mutex_t model_mu;
    int model_state;        /* 0 not loaded, 1 loaded, <0 the load error */
    pe_model *model;
    pe_tokenizer *tok;
    eng_ctx_pool pool;
    int image_size, context_length;

    /* collections */
    pthread_rwlock_t coll_lock;
    eng_coll *colls; int n_colls, cap_colls;

    /* writes are serialised through this lock (plus LMDB's own) */
    pthread_mutex_t write_mu;
    /* engine file (model path, set thresholds): guarded by write_mu */
    struct eng_threshold { char set[2 * ST_NAME_MAX + ST_LABEL_MAX + 2]; float value; } *thr;
    int n_thr;
};

/* eng_db.c */
int eng_model_ready(eng_db *db);                 /* loads the encoder once */
pe_ctx *eng_ctx_get(eng_db *db);                 /* blocks until one is free */
void eng_ctx_put(eng_db *db, pe_ctx *c);
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

/* eng_sha.c */
void eng_sha256(const void *data, size_t len, uint8_t out[32]);

/* helpers */
double eng_now_s(void);
char *eng_strdup(const char *s);

#endif
