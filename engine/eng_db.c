/* eng_db: opening a database, the model, collections and their indexes,
 * items, labels, stats.
 *
 * DESIGN. LMDB (st_*) is the source of truth; every FAISS index is derived.
 * Each collection's index file <dir>/index/<collection id>.faiss records the
 * storage sequence it covers; opening loads it and replays the collection's
 * change log after that sequence (adds and deletes), or rebuilds the index
 * from the stored vectors when the file is missing, damaged, of another
 * factory, claims a sequence LMDB never reached, or the log was trimmed past
 * it. Writes always commit to LMDB first and touch the index after, so the
 * index never holds an item LMDB lacks except for a moment during a delete
 * (queries drop hits that LMDB no longer knows).
 *
 * A writable open takes an exclusive flock on <dir>/engine.lock: two
 * processes each holding an index in memory and saving it with "their"
 * sequence would cover each other's changes falsely. Read-only opens take
 * no lock and never save.
 *
 * Never: write to the index before LMDB committed; save an index whose
 * covered sequence is not exactly what it contains (saves happen under
 * write_mu, which every index change also holds).
 */
#define _GNU_SOURCE
#include "engine/eng_internal.h"
#include "common/perr.h"
#include "encoder/pe_image.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENG_CTX_BATCH 8   /* max batch of the query contexts (make_pool) */

double eng_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *eng_strdup(const char *s) { return s ? strdup(s) : NULL; }

void eng_open_opts_default(eng_open_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_encoders = 2;
    o->encoder_threads = 1;
    o->save_every = 20000;
}

/* ------------------------------------------------------------ engine file */

/* <dir>/engine.json: {"model_path": "...", "precision": "fp32",
 * "thresholds": {"set": x, ...}} (no "precision": fp32, the only one
 * before it was recorded).
 * Written atomically (temp file, fsync, rename, fsync of the directory). */
static int write_engine_file(eng_db *db) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return perr_set(PERR_NOMEM, "engine.json: out of memory");
    cJSON_AddStringToObject(root, "model_path", db->model_path ? db->model_path : "");
    if (db->vocab_path) cJSON_AddStringToObject(root, "vocab_path", db->vocab_path);
    cJSON_AddStringToObject(root, "precision", pe_precision_name(db->prec));
    cJSON *th = cJSON_AddObjectToObject(root, "thresholds");
    for (int i = 0; i < db->n_thr; i++) cJSON_AddNumberToObject(th, db->thr[i].set, db->thr[i].value);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return perr_set(PERR_NOMEM, "engine.json: out of memory");
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/engine.json", db->dir);
    snprintf(tmp, sizeof tmp, "%s/engine.json.tmp", db->dir);
    int rc = PERR_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { rc = perr_errno(errno, "%s", tmp); goto out; }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) { if (errno == EINTR) continue; rc = perr_errno(errno, "%s", tmp); close(fd); goto out; }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) { rc = perr_errno(errno, "%s: fsync", tmp); close(fd); goto out; }
    close(fd);
    if (rename(tmp, path) != 0) { rc = perr_errno(errno, "rename %s", path); goto out; }
    int dfd = open(db->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
out:
    free(text);
    return rc;
}

int eng_save_threshold_file(eng_db *db) { return write_engine_file(db); }

static int read_engine_file(eng_db *db) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/engine.json", db->dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return PERR_OK;
        return perr_errno(errno, "%s", path);
    }
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    if (!root) return perr_set(PERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *mp = cJSON_GetObjectItemCaseSensitive(root, "model_path");
    if (cJSON_IsString(mp) && mp->valuestring[0]) db->model_path = strdup(mp->valuestring);
    const cJSON *vp = cJSON_GetObjectItemCaseSensitive(root, "vocab_path");
    if (cJSON_IsString(vp) && vp->valuestring[0] && !db->vocab_path) db->vocab_path = strdup(vp->valuestring);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "precision");
    if (pr) {
        if (!cJSON_IsString(pr) || pe_precision_parse(pr->valuestring, &db->prec)) {
            cJSON_Delete(root);
            return perr_set(PERR_FORMAT, "%s: \"precision\" is not fp32 or bf16", path);
        }
        db->prec_recorded = 1;
    }
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(root, "thresholds");
    int cnt = cJSON_IsObject(th) ? cJSON_GetArraySize(th) : 0;
    if (cnt > 0) {
        db->thr = calloc((size_t)cnt, sizeof *db->thr);
        if (!db->thr) { cJSON_Delete(root); return perr_set(PERR_NOMEM, "%s", path); }
        const cJSON *e;
        cJSON_ArrayForEach(e, th) {
            if (!cJSON_IsNumber(e) || strlen(e->string) >= sizeof db->thr[0].set) continue;
            snprintf(db->thr[db->n_thr].set, sizeof db->thr[0].set, "%s", e->string);
            db->thr[db->n_thr++].value = (float)e->valuedouble;
        }
    }
    cJSON_Delete(root);
    return PERR_OK;
}

/* ------------------------------------------------------------------ model */

static int load_model(eng_db *db, const char *path, pe_model **out) {
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    lo.precision = db->prec;
    int rc = pe_model_load(path, &lo, out);
    if (rc) return perr_prefix(rc, "model %s", path);
    return PERR_OK;
}

static int model_mismatch(eng_db *db, const char *path, const pe_model *m) {
    const pe_config *c = pe_model_config(m);
    return perr_set(PERR_MODEL,
        "database %s was built with model '%s' (fingerprint %016llx, dim %d%s%s); "
        "model %s is '%s' (fingerprint %016llx, dim %d): open it with the model it was built with",
        db->dir, db->model_name, (unsigned long long)db->fingerprint, db->dim,
        db->model_path ? ", file " : "", db->model_path ? db->model_path : "",
        path, c->name, (unsigned long long)pe_model_fingerprint(m), c->output_dim);
}

/* The precision of this database's vectors: recorded, else fp32 for an
 * existing database (all were) or the requested one for a new database;
 * a request for another one than recorded is refused. */
static int resolve_precision(eng_db *db, const eng_open_opts *o, int is_new) {
    pe_precision want = PE_PRECISION_FP32;
    if (o->precision) {
        int rc = pe_precision_parse(o->precision, &want);
        if (rc) return rc;
    }
    if (!db->prec_recorded) db->prec = is_new ? want : PE_PRECISION_FP32;
    if (o->precision && want != db->prec)
        return perr_set(PERR_MODEL,
                        "database %s holds %s vectors; encoding with %s would mix two precisions in its indexes "
                        "(bf16 vs fp32 cosine ~0.9999, docs/encoder.md): open it with --precision %s or without "
                        "--precision",
                        db->dir, pe_precision_name(db->prec), pe_precision_name(want), pe_precision_name(db->prec));
    return PERR_OK;
}

/* Called with model_mu held, model loaded: creates the context pool. */
static int make_pool(eng_db *db) {
    int n = db->opts.n_encoders > 0 ? db->opts.n_encoders : 1;
    eng_ctx_pool *p = &db->pool;
    p->free_ctx = calloc((size_t)n, sizeof *p->free_ctx);
    if (!p->free_ctx) return perr_set(PERR_NOMEM, "encoder contexts");
    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = ENG_CTX_BATCH;
    co.n_threads = db->opts.encoder_threads > 0 ? db->opts.encoder_threads : 1;
    for (int i = 0; i < n; i++) {
        int rc = pe_ctx_new(db->model, &co, &p->free_ctx[i]);
        if (rc) return rc;
        p->n = p->n_free = i + 1;
    }
    return PERR_OK;
}

int eng_model_ready(eng_db *db) {
    pthread_mutex_lock(&db->model_mu);
    int rc = PERR_OK;
    if (db->model_state == 1) goto out;
    if (db->model_state < 0) { rc = db->model_state; perr_set(rc, "model %s could not be loaded earlier", db->model_path ? db->model_path : "(none)"); goto out; }
    if (!db->model_path) {
        if (db->fingerprint == 0) rc = perr_set(PERR_UNSUPPORTED, "database %s holds vectors only (no model): it cannot encode", db->dir);
        else rc = perr_set(PERR_NOT_FOUND, "database %s records no model path: pass the model (--model)", db->dir);
        goto out;
    }
    if (!db->model) {
        rc = load_model(db, db->model_path, &db->model);
        if (rc) goto out;
        if (pe_model_fingerprint(db->model) != db->fingerprint ||
            pe_model_config(db->model)->output_dim != db->dim) {
            rc = model_mismatch(db, db->model_path, db->model);
            pe_model_free(db->model);
            db->model = NULL;
            goto out;
        }
    }
    db->image_size = pe_model_config(db->model)->image_size;
    db->context_length = pe_model_config(db->model)->context_length;
    rc = make_pool(db);
    if (rc == PERR_OK) db->model_state = 1;
out:
    pthread_mutex_unlock(&db->model_mu);
    return rc;
}

static int tokenizer_ready(eng_db *db) {
    int rc = eng_model_ready(db);
    if (rc) return rc;
    pthread_mutex_lock(&db->model_mu);
    if (!db->tok) {
        char path[PATH_MAX];
        if (db->vocab_path) snprintf(path, sizeof path, "%s", db->vocab_path);
        else {
            const char *slash = strrchr(db->model_path, '/');
            int dl = slash ? (int)(slash - db->model_path) : 1;
            snprintf(path, sizeof path, "%.*s/bpe_simple_vocab_16e6.txt.gz", dl, slash ? db->model_path : ".");
        }
        rc = pe_tokenizer_load(path, &db->tok);
        if (rc) perr_prefix(rc, "vocabulary (pass --vocab or put it next to the model)");
    }
    pthread_mutex_unlock(&db->model_mu);
    return rc;
}

pe_ctx *eng_ctx_get(eng_db *db) {
    eng_ctx_pool *p = &db->pool;
    pthread_mutex_lock(&p->mu);
    while (p->n_free == 0) pthread_cond_wait(&p->cv, &p->mu);
    pe_ctx *c = p->free_ctx[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    return c;
}

void eng_ctx_put(eng_db *db, pe_ctx *c) {
    eng_ctx_pool *p = &db->pool;
    pthread_mutex_lock(&p->mu);
    p->free_ctx[p->n_free++] = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int eng_dim(eng_db *db) { return db->dim; }
const char *eng_dir(eng_db *db) { return db->dir; }

int eng_encode_text(eng_db *db, const char *text, float *out) {
    int rc = tokenizer_ready(db);
    if (rc) return rc;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)db->context_length);
    if (!ids) return perr_set(PERR_NOMEM, "token ids");
    int nb = 0;
    rc = pe_tokenize(db->tok, text, strlen(text), db->context_length, ids, &nb);
    if (rc == PERR_OK) {
        pe_ctx *c = eng_ctx_get(db);
        rc = pe_encode_ids(c, ids, 1, out);
        eng_ctx_put(db, c);
        if (rc == PERR_OK) pe_l2_normalize(out, db->dim);
    }
    free(ids);
    return rc;
}

static uint32_t text_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int eng_encode_texts(eng_db *db, const char *const *texts, int n, int use_cache, float *out) {
    int rc = tokenizer_ready(db);
    if (rc) return rc;
    size_t dim = (size_t)db->dim, cl = (size_t)db->context_length;
    eng_text_cache *tc = &db->tcache;
    int32_t *ids = malloc(sizeof(int32_t) * cl * ENG_CTX_BATCH);
    int *todo = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!ids || !todo) { free(ids); free(todo); return perr_set(PERR_NOMEM, "token ids"); }
    /* cache lookups first: only the misses are encoded */
    int nt = 0;
    for (int i = 0; i < n; i++) {
        int hit = 0;
        if (use_cache) {
            uint32_t slot = text_hash(texts[i]) % ENG_TEXT_CACHE;
            pthread_mutex_lock(&tc->mu);
            if (tc->text[slot] && !strcmp(tc->text[slot], texts[i])) {
                memcpy(out + (size_t)i * dim, tc->vec[slot], sizeof(float) * dim);
                hit = 1;
                tc->hits++;
            } else tc->misses++;
            pthread_mutex_unlock(&tc->mu);
        }
        if (!hit) todo[nt++] = i;
    }
    for (int b = 0; rc == PERR_OK && b < nt; b += ENG_CTX_BATCH) {
        int m = nt - b < ENG_CTX_BATCH ? nt - b : ENG_CTX_BATCH;
        for (int j = 0; rc == PERR_OK && j < m; j++) {
            const char *t = texts[todo[b + j]];
            int nb = 0;
            rc = pe_tokenize(db->tok, t, strlen(t), (int)cl, ids + (size_t)j * cl, &nb);
            if (rc) perr_prefix(rc, "text \"%.80s\"", t);
        }
        if (rc) break;
        /* the batch's rows are contiguous in a scratch, then scattered */
        float *tmp = malloc(sizeof(float) * dim * (size_t)m);
        if (!tmp) { rc = perr_set(PERR_NOMEM, "text vectors"); break; }
        pe_ctx *c = eng_ctx_get(db);
        rc = pe_encode_ids(c, ids, m, tmp);
        eng_ctx_put(db, c);
        for (int j = 0; rc == PERR_OK && j < m; j++) {
            float *v = out + (size_t)todo[b + j] * dim;
            memcpy(v, tmp + (size_t)j * dim, sizeof(float) * dim);
            pe_l2_normalize(v, (int)dim);
            if (!use_cache) continue;
            const char *t = texts[todo[b + j]];
            uint32_t slot = text_hash(t) % ENG_TEXT_CACHE;
            char *copy = strdup(t);
            pthread_mutex_lock(&tc->mu);
            if (!tc->vec[slot]) tc->vec[slot] = malloc(sizeof(float) * dim);
            if (copy && tc->vec[slot]) {
                free(tc->text[slot]);
                tc->text[slot] = copy;
                copy = NULL;
                memcpy(tc->vec[slot], v, sizeof(float) * dim);
            }
            pthread_mutex_unlock(&tc->mu);
            free(copy);
        }
        free(tmp);
    }
    free(ids);
    free(todo);
    return rc;
}

static int encode_image(eng_db *db, const char *path, const void *buf, size_t len, float *out) {
    int rc = eng_model_ready(db);
    if (rc) return rc;
    /* Videos (by content) give their video vector (eng_video.c). */
    int is_video = 0;
    if (path && eng_is_video_file(path, &is_video) != PERR_OK) { perr_clear(); is_video = 0; }
    if (path ? is_video : eng_is_video_bytes(buf, len))
        return path ? eng_encode_media_file(db, path, NULL, out, NULL, NULL)
                    : eng_encode_media_buffer(db, buf, len, "upload", NULL, out, NULL, NULL);
    size_t np = (size_t)3 * db->image_size * db->image_size;
    float *px = malloc(np * sizeof(float));
    if (!px) return perr_set(PERR_NOMEM, "pixels");
    if (path) rc = pe_image_preprocess_file(path, db->image_size, NULL, px, NULL);
    else rc = pe_image_preprocess_buffer(buf, len, "image", db->image_size, NULL, px, NULL);
    if (rc == PERR_OK) {
        pe_ctx *c = eng_ctx_get(db);
        rc = pe_encode_pixels(c, px, 1, out);
        eng_ctx_put(db, c);
        if (rc == PERR_OK) pe_l2_normalize(out, db->dim);
    }
    free(px);
    return rc;
}

int eng_encode_image_file(eng_db *db, const char *path, float *out) {
    return encode_image(db, path, NULL, 0, out);
}
int eng_encode_image_buffer(eng_db *db, const void *data, size_t len, float *out) {
    return encode_image(db, NULL, data, len, out);
}

/* ------------------------------------------------------------ collections */

eng_coll *eng_coll_find(eng_db *db, const char *name) {
    for (int i = 0; i < db->n_colls; i++)
        if (!strcmp(db->colls[i].name, name)) return &db->colls[i];
    return NULL;
}

eng_coll *eng_coll_find_id(eng_db *db, uint32_t id) {
    for (int i = 0; i < db->n_colls; i++)
        if (db->colls[i].id == id) return &db->colls[i];
    return NULL;
}

static void index_path(eng_db *db, uint32_t id, char *out, size_t cap) {
    snprintf(out, cap, "%s/%u.faiss", st_index_dir(db->st), id);
}

typedef struct rebuild_ctx {
    idx *ix;
    float *buf; int64_t *ids; size_t n, cap; int dim;
} rebuild_ctx;

static int rebuild_flush(rebuild_ctx *r) {
    if (!r->n) return PERR_OK;
    int rc = idx_add(r->ix, r->buf, r->ids, r->n);
    r->n = 0;
    return rc;
}

static int rebuild_vec(void *ud, uint64_t id, const float *vec, int dim) {
    rebuild_ctx *r = ud;
    if (dim != r->dim) return perr_set(PERR_FORMAT, "item %llu: vector of dim %d, database dim %d", (unsigned long long)id, dim, r->dim);
    memcpy(r->buf + r->n * (size_t)dim, vec, sizeof(float) * (size_t)dim);
    r->ids[r->n++] = (int64_t)id;
    if (r->n == r->cap) return rebuild_flush(r);
    return 0;
}

/* Builds a fresh index of a collection from every vector in LMDB (one read
 * txn); c is only read. */
static int build_index(eng_db *db, const eng_coll *c, st_txn *txn, idx **out) {
    *out = NULL;
    idx *ix = NULL;
    int rc = idx_create(c->factory, db->dim, NULL, &ix);
    if (rc) return perr_prefix(rc, "collection %s: index \"%s\"", c->name, c->factory);
    rebuild_ctx r = {.ix = ix, .cap = 1024, .dim = db->dim};
    r.buf = malloc(sizeof(float) * r.cap * (size_t)db->dim);
    r.ids = malloc(sizeof(int64_t) * r.cap);
    if (!r.buf || !r.ids) rc = perr_set(PERR_NOMEM, "rebuilding %s", c->name);
    if (rc == PERR_OK) rc = st_scan_vectors(txn, c->id, 0, rebuild_vec, &r);
    if (rc == PERR_OK) rc = rebuild_flush(&r);
    free(r.buf);
    free(r.ids);
    if (rc) { idx_free(ix); return perr_prefix(rc, "collection %s: rebuilding the index", c->name); }
    *out = ix;
    return PERR_OK;
}

/* Rebuilds a collection's index in place (at open: no query runs yet). */
static int rebuild_index(eng_db *db, eng_coll *c, st_txn *txn, uint64_t seq) {
    idx *ix = NULL;
    int rc = build_index(db, c, txn, &ix);
    if (rc) return rc;
    idx_free(c->ix);
    c->ix = ix;
    c->index_seq = seq;
    c->saved_seq = 0;
    c->unsaved = 1; /* force a save */
    return PERR_OK;
}

typedef struct replay_ctx { eng_db *db; eng_coll *c; st_txn *txn; uint64_t n; } replay_ctx;

static int replay_change(void *ud, const st_change *ch) {
    replay_ctx *r = ud;
    int64_t id = (int64_t)ch->item;
    int rc;
    if (ch->op == ST_OP_ADD) {
        const float *v; int dim;
        rc = st_item_vector(r->txn, ch->item, &v, &dim);
        if (rc == PERR_NOT_FOUND) { perr_clear(); return 0; } /* deleted later */
        if (rc) return rc;
        if (idx_contains(r->c->ix, id)) return 0;
        rc = idx_add(r->c->ix, v, &id, 1);
        if (rc) return rc;
    } else {
        rc = idx_remove(r->c->ix, &id, 1, NULL);
        if (rc) return rc;
    }
    r->c->index_seq = ch->seq;
    r->n++;
    return 0;
}

static int save_index(eng_db *db, eng_coll *c) {
    if (db->read_only || !c->unsaved) return PERR_OK;
    char path[PATH_MAX];
    index_path(db, c->id, path, sizeof path);
    int rc = eng_seg_save(db, c); /* before the log is trimmed below */
    if (rc) return rc;
    rc = idx_save(c->ix, path, c->index_seq);
    if (rc) return perr_prefix(rc, "collection %s: saving %s", c->name, path);
    c->saved_seq = c->index_seq;
    c->unsaved = 0;
    /* The log before the saved sequence is no longer needed. */
    st_txn *w = NULL;
    if (st_txn_begin(db->st, 1, &w) == PERR_OK) {
        if (st_changes_trim(w, c->id, c->saved_seq) == PERR_OK) st_txn_commit(w);
        else st_txn_abort(w);
    }
    perr_clear();
    return PERR_OK;
}

/* HNSW cannot remove a vector: it stays in the graph as a tombstone that
 * every search filters out (index/idx.h). Past this fraction of the graph
 * the index is rebuilt from LMDB: tombstones cost search time and recall
 * (the graph routes through dead nodes) and memory. */
#define ENG_TOMBSTONE_REBUILD 0.2

static int too_many_tombstones(const idx *ix) {
    idx_stats s;
    idx_get_stats(ix, &s);
    return s.tombstones > 0 && s.tombstone_frac > ENG_TOMBSTONE_REBUILD;
}

/* Rebuilds coll's index from LMDB when its tombstone fraction passed
 * ENG_TOMBSTONE_REBUILD. Caller holds write_mu (so LMDB cannot move while
 * we build) and not coll_lock. Queries keep searching the old index while
 * the new one is built; the swap takes coll_lock exclusively (every query
 * holds it shared while it touches an index), then the new index is saved
 * with the sequence it covers. */
static int compact_if_needed(eng_db *db, uint32_t coll) {
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find_id(db, coll);
    int need = c && too_many_tombstones(c->ix);
    pthread_rwlock_unlock(&db->coll_lock);
    if (!need) return PERR_OK;
    /* c stays valid: creating or dropping a collection takes write_mu */
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    st_collection sc;
    idx *fresh = NULL;
    rc = st_coll_get_id(txn, coll, &sc);
    if (rc == PERR_OK) rc = build_index(db, c, txn, &fresh);
    st_txn_abort(txn);
    if (rc) return rc;
    pthread_rwlock_wrlock(&db->coll_lock);
    idx *old = c->ix;
    c->ix = fresh;
    c->index_seq = sc.seq;
    c->unsaved++;
    pthread_rwlock_unlock(&db->coll_lock);
    idx_free(old);
    pthread_rwlock_rdlock(&db->coll_lock);
    rc = save_index(db, c);
    pthread_rwlock_unlock(&db->coll_lock);
    return rc;
}

/* Loads (or rebuilds) one collection's index and catches it up with LMDB. */
static int load_collection(eng_db *db, const st_collection *sc, st_txn *txn, eng_coll *c) {
    memset(c, 0, sizeof *c);
    c->id = sc->id;
    snprintf(c->name, sizeof c->name, "%s", sc->name);
    snprintf(c->factory, sizeof c->factory, "%s", sc->factory);
    char path[PATH_MAX];
    index_path(db, c->id, path, sizeof path);
    uint64_t covered = 0;
    int rc = idx_load(path, NULL, &c->ix, &covered);
    const char *why = NULL;
    if (rc == PERR_NOT_FOUND) why = "missing";
    else if (rc) why = perr_msg();
    else if (idx_dim(c->ix) != db->dim) why = "of another dimension";
    else if (strcmp(idx_factory(c->ix), c->factory)) why = "of another index type";
    else if (covered > sc->seq) why = "newer than the database";
    if (!why) {
        c->index_seq = c->saved_seq = covered;
        replay_ctx r = {db, c, txn, 0};
        rc = st_changes(txn, c->id, covered, replay_change, &r);
        if (rc == PERR_NOT_FOUND) why = "older than the change log";
        else if (rc) why = perr_msg();
        else {
            c->index_seq = sc->seq;
            c->unsaved = r.n;
            if (idx_count(c->ix) != sc->n_items) why = "inconsistent with the database";
            else if (too_many_tombstones(c->ix)) why = "more than 20 % deleted (HNSW tombstones)";
        }
    }
    if (why) {
        if (rc != PERR_NOT_FOUND || strcmp(why, "missing"))
            fprintf(stderr, "percept: collection %s: index file %s is %s; rebuilding it from the database\n",
                    c->name, path, why);
        perr_clear();
        rc = rebuild_index(db, c, txn, sc->seq);
        if (rc) return rc;
    }
    return eng_seg_load(db, sc, txn, c);
}

static int colls_push(eng_db *db, const eng_coll *c) {
    if (db->n_colls == db->cap_colls) {
        int cap = db->cap_colls ? db->cap_colls * 2 : 8;
        eng_coll *n = realloc(db->colls, sizeof *n * (size_t)cap);
        if (!n) return perr_set(PERR_NOMEM, "collections");
        db->colls = n;
        db->cap_colls = cap;
    }
    db->colls[db->n_colls++] = *c;
    return PERR_OK;
}

static int load_collections(eng_db *db) {
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    st_collection *cs = NULL;
    size_t n = 0;
    rc = st_coll_list(txn, &cs, &n);
    for (size_t i = 0; rc == PERR_OK && i < n; i++) {
        eng_coll c;
        rc = load_collection(db, &cs[i], txn, &c);
        if (rc == PERR_OK) rc = colls_push(db, &c);
        else { idx_free(c.ix); idx_free(c.seg_ix); }
    }
    st_txn_abort(txn);
    free(cs);
    for (int i = 0; rc == PERR_OK && i < db->n_colls; i++) rc = save_index(db, &db->colls[i]);
    return rc;
}

static int coll_create_locked(eng_db *db, const char *name, const char *factory) {
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    if (!factory || !*factory) factory = ENG_DEFAULT_INDEX;
    eng_coll c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.factory, sizeof c.factory, "%s", factory);
    /* Validate the factory before storing it. */
    int rc = idx_create(factory, db->dim, NULL, &c.ix);
    if (rc) return perr_prefix(rc, "collection %s: index \"%s\"", name, factory);
    rc = idx_create("Flat", db->dim, NULL, &c.seg_ix);
    if (rc) { idx_free(c.ix); return perr_prefix(rc, "collection %s: segment index", name); }
    st_txn *w;
    rc = st_txn_begin(db->st, 1, &w);
    if (rc == PERR_OK) {
        rc = st_coll_create(w, name, factory, &c.id);
        if (rc == PERR_OK) rc = st_txn_commit(w);
        else st_txn_abort(w);
    }
    if (rc == PERR_OK) {
        pthread_rwlock_wrlock(&db->coll_lock);
        rc = colls_push(db, &c);
        pthread_rwlock_unlock(&db->coll_lock);
    }
    if (rc) { idx_free(c.ix); idx_free(c.seg_ix); return perr_prefix(rc, "creating collection %s", name); }
    return PERR_OK;
}

int eng_coll_ensure(eng_db *db, const char *name, const char *factory) {
    pthread_rwlock_rdlock(&db->coll_lock);
    int have = eng_coll_find(db, name) != NULL;
    pthread_rwlock_unlock(&db->coll_lock);
    if (have) return PERR_OK;
    pthread_mutex_lock(&db->write_mu);
    pthread_rwlock_rdlock(&db->coll_lock);
    have = eng_coll_find(db, name) != NULL;
    pthread_rwlock_unlock(&db->coll_lock);
    int rc = have ? PERR_OK : coll_create_locked(db, name, factory);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

int eng_collection_create(eng_db *db, const char *name, const char *factory) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    pthread_mutex_lock(&db->write_mu);
    pthread_rwlock_rdlock(&db->coll_lock);
    int have = eng_coll_find(db, name) != NULL;
    pthread_rwlock_unlock(&db->coll_lock);
    int rc = have ? perr_set(PERR_EXISTS, "collection %s already exists", name)
                  : coll_create_locked(db, name, factory);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

int eng_collection_drop(eng_db *db, const char *name) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    pthread_mutex_lock(&db->write_mu);
    pthread_rwlock_wrlock(&db->coll_lock);
    int rc = PERR_OK;
    eng_coll *c = eng_coll_find(db, name);
    if (!c) { rc = perr_set(PERR_NOT_FOUND, "no collection %s", name); goto out; }
    st_txn *w;
    rc = st_txn_begin(db->st, 1, &w);
    if (rc) goto out;
    rc = st_coll_drop(w, c->id);
    if (rc) { st_txn_abort(w); goto out; }
    rc = st_txn_commit(w);
    if (rc) goto out;
    char path[PATH_MAX];
    index_path(db, c->id, path, sizeof path);
    unlink(path);
    eng_seg_path(db, c->id, path, sizeof path);
    unlink(path);
    idx_free(c->ix);
    idx_free(c->seg_ix);
    int i = (int)(c - db->colls);
    memmove(&db->colls[i], &db->colls[i + 1], sizeof *c * (size_t)(db->n_colls - i - 1));
    db->n_colls--;
out:
    pthread_rwlock_unlock(&db->coll_lock);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

static float threshold_of(eng_db *db, const char *set) {
    for (int i = 0; i < db->n_thr; i++)
        if (!strcmp(db->thr[i].set, set)) return db->thr[i].value;
    return NAN;
}

static void fill_coll_info(eng_db *db, eng_coll *c, const st_collection *sc, eng_collection_info *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", c->name);
    snprintf(o->factory, sizeof o->factory, "%s", c->factory);
    o->n_items = sc ? sc->n_items : 0;
    o->seq = sc ? sc->seq : 0;
    o->n_index = idx_count(c->ix);
    o->n_segments = sc ? sc->n_segments : 0;
    o->thumbnails = sc ? !(sc->flags & ST_COLL_NO_THUMBS) : 1;
    o->n_seg_index = c->seg_ix ? idx_count(c->seg_ix) : 0;
    o->index_seq = c->index_seq;
    o->trained = !idx_needs_training(c->ix);
    idx_stats is;
    idx_get_stats(c->ix, &is);
    o->tombstone_frac = is.tombstone_frac;
    o->threshold = threshold_of(db, c->name);
}

int eng_collection_list(eng_db *db, eng_collection_info **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    pthread_rwlock_rdlock(&db->coll_lock);
    pthread_mutex_lock(&db->write_mu);
    eng_collection_info *arr = calloc((size_t)db->n_colls + 1, sizeof *arr);
    if (!arr) rc = perr_set(PERR_NOMEM, "collection list");
    for (int i = 0; rc == PERR_OK && i < db->n_colls; i++) {
        st_collection sc;
        int r2 = st_coll_get_id(txn, db->colls[i].id, &sc);
        fill_coll_info(db, &db->colls[i], r2 == PERR_OK ? &sc : NULL, &arr[i]);
    }
    int cnt = db->n_colls;
    pthread_mutex_unlock(&db->write_mu);
    pthread_rwlock_unlock(&db->coll_lock);
    st_txn_abort(txn);
    if (rc) { free(arr); return rc; }
    *out = arr;
    *n = cnt;
    return PERR_OK;
}

int eng_collection_get(eng_db *db, const char *name, eng_collection_info *out) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find(db, name);
    if (!c) rc = perr_set(PERR_NOT_FOUND, "no collection %s", name);
    else {
        st_collection sc;
        rc = st_coll_get_id(txn, c->id, &sc);
        if (rc == PERR_OK) fill_coll_info(db, c, &sc, out);
    }
    pthread_rwlock_unlock(&db->coll_lock);
    st_txn_abort(txn);
    return rc;
}

/* A set is "collection" or "collection:label"; the collection must exist. */
static int check_set(eng_db *db, const char *set) {
    char name[ST_NAME_MAX + 1];
    const char *colon = strchr(set, ':');
    size_t nl = colon ? (size_t)(colon - set) : strlen(set);
    if (nl == 0 || nl > ST_NAME_MAX) return perr_set(PERR_INVALID, "set \"%s\": bad collection name", set);
    memcpy(name, set, nl);
    name[nl] = 0;
    pthread_rwlock_rdlock(&db->coll_lock);
    int have = eng_coll_find(db, name) != NULL;
    pthread_rwlock_unlock(&db->coll_lock);
    if (!have) return perr_set(PERR_NOT_FOUND, "set \"%s\": no collection %s", set, name);
    return PERR_OK;
}

int eng_set_threshold(eng_db *db, const char *set, float threshold) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    if (!(threshold >= -1.0f && threshold <= 1.0f))
        return perr_set(PERR_INVALID, "threshold %g: a cosine threshold is within [-1, 1]", threshold);
    if (strlen(set) >= sizeof db->thr[0].set) return perr_set(PERR_INVALID, "set name too long");
    int rc = check_set(db, set);
    if (rc) return rc;
    pthread_mutex_lock(&db->write_mu);
    int i;
    for (i = 0; i < db->n_thr; i++) if (!strcmp(db->thr[i].set, set)) break;
    if (i == db->n_thr) {
        void *n = realloc(db->thr, sizeof *db->thr * (size_t)(db->n_thr + 1));
        if (!n) { pthread_mutex_unlock(&db->write_mu); return perr_set(PERR_NOMEM, "thresholds"); }
        db->thr = n;
        snprintf(db->thr[i].set, sizeof db->thr[i].set, "%s", set);
        db->n_thr++;
    }
    db->thr[i].value = threshold;
    rc = write_engine_file(db);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

int eng_get_threshold(eng_db *db, const char *set, float *out) {
    pthread_mutex_lock(&db->write_mu);
    *out = threshold_of(db, set);
    pthread_mutex_unlock(&db->write_mu);
    return PERR_OK;
}

/* ---------------------------------------------------------- open / close */

static int ensure_dir(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return PERR_OK;
    return perr_errno(errno, "creating %s", dir);
}

int eng_open(const char *dir, const eng_open_opts *o, eng_db **out) {
    *out = NULL;
    eng_open_opts dflt;
    if (!o) { eng_open_opts_default(&dflt); o = &dflt; }
    eng_db *db = calloc(1, sizeof *db);
    if (!db) return perr_set(PERR_NOMEM, "eng_open");
    db->opts = *o;
    db->read_only = o->read_only;
    db->lock_fd = -1;
    db->dir = strdup(dir);
    if (o->vocab_path) db->vocab_path = strdup(o->vocab_path);
    pthread_mutex_init(&db->model_mu, NULL);
    pthread_mutex_init(&db->write_mu, NULL);
    pthread_mutex_init(&db->gc_mu, NULL);
    pthread_cond_init(&db->gc_cv, NULL);
    pthread_mutex_init(&db->pool.mu, NULL);
    pthread_cond_init(&db->pool.cv, NULL);
    pthread_rwlock_init(&db->coll_lock, NULL);
    pthread_mutex_init(&db->tcache.mu, NULL);
    int rc = PERR_OK;
    pe_model *given = NULL;

    if (o->create && !o->read_only) {
        /* Load the model before creating anything: a kill while a large
         * model loads would otherwise leave a database without its model
         * (recorded right after the environment is created). */
        if (o->model_path) {
            /* in the precision asked for; checked against a recorded one below */
            if (o->precision && (rc = pe_precision_parse(o->precision, &db->prec))) goto fail;
            rc = load_model(db, o->model_path, &given);
            if (rc) goto fail;
        }
        rc = ensure_dir(dir);
        if (rc) goto fail;
    }
    st_opts so;
    st_opts_default(&so);
    if (o->map_size) so.map_size = o->map_size;
    so.read_only = o->read_only;
    so.create = o->create;
    rc = st_open(dir, &so, &db->st);
    if (rc == PERR_NOT_FOUND && !o->create)
        { perr_prefix(rc, "no database in %s (ingest with --model creates one)", dir); goto fail; }
    if (rc) goto fail;

    if (!o->read_only) {
        char lp[PATH_MAX];
        snprintf(lp, sizeof lp, "%s/engine.lock", dir);
        db->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (db->lock_fd < 0) { rc = perr_errno(errno, "%s", lp); goto fail; }
        if (flock(db->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            rc = perr_set(PERR_BUSY, "database %s is open for writing by another process", dir);
            goto fail;
        }
    }

    st_txn *txn;
    rc = st_txn_begin(db->st, 0, &txn);
    if (rc) goto fail;
    st_info info;
    rc = st_info_get(txn, &info);
    st_txn_abort(txn);
    if (rc) goto fail;
    rc = read_engine_file(db);
    if (rc) goto fail;
    if ((rc = resolve_precision(db, o, info.dim == 0))) goto fail;
    if (given && pe_model_precision(given) != db->prec) {
        /* loaded early (creation) in another precision than recorded */
        pe_model_free(given);
        given = NULL;
    }

    if (o->model_path && !given) {
        rc = load_model(db, o->model_path, &given);
        if (rc) goto fail;
    }
    if (info.dim == 0 && !given && o->vector_dim > 0 && !o->read_only) {
        st_txn *w;
        rc = st_txn_begin(db->st, 1, &w);
        if (rc) goto fail;
        rc = st_model_set(w, 0, "none", o->vector_dim);
        if (rc) { st_txn_abort(w); goto fail; }
        rc = st_txn_commit(w);
        if (rc) goto fail;
        info.dim = o->vector_dim;
        snprintf(info.model_name, sizeof info.model_name, "none");
    }
    if (info.dim == 0) { /* a new database: record the model */
        /* Only an interrupted creation leaves this state: the environment
         * is created and the model recorded right after it, before
         * anything else can be stored. */
        if (!given || o->read_only) {
            rc = perr_set(PERR_INVALID,
                "database %s was not finished: its creation was interrupted before the model was recorded "
                "(nothing is stored in it); finish it with `percept ingest --db %s --model FILE PATH...` "
                "(the model it is to be built with), or remove the directory", dir, dir);
            goto fail;
        }
        const pe_config *c = pe_model_config(given);
        st_txn *w;
        rc = st_txn_begin(db->st, 1, &w);
        if (rc) goto fail;
        rc = st_model_set(w, pe_model_fingerprint(given), c->name, c->output_dim);
        if (rc) { st_txn_abort(w); goto fail; }
        rc = st_txn_commit(w);
        if (rc) goto fail;
        info.dim = c->output_dim;
        info.model_fingerprint = pe_model_fingerprint(given);
        snprintf(info.model_name, sizeof info.model_name, "%s", c->name);
    }
    db->dim = info.dim;
    db->fingerprint = info.model_fingerprint;
    snprintf(db->model_name, sizeof db->model_name, "%s", info.model_name);
    if (given) {
        if (pe_model_fingerprint(given) != db->fingerprint || pe_model_config(given)->output_dim != db->dim) {
            rc = model_mismatch(db, o->model_path, given);
            goto fail;
        }
        char *abs = realpath(o->model_path, NULL);
        int changed = !db->model_path || strcmp(db->model_path, abs ? abs : o->model_path) ||
                      !db->prec_recorded;
        free(db->model_path);
        db->model_path = abs ? abs : strdup(o->model_path);
        db->model = given;
        given = NULL;
        if (changed && !o->read_only) {
            rc = write_engine_file(db);
            if (rc) goto fail;
        }
    }
    rc = load_collections(db);
    if (rc) goto fail;
    /* Changes an index file does not cover (its writer was killed before
     * saving) are replayed in memory by every open. A reader cannot save
     * them, so the first writer to open saves them at once rather than at
     * its close: a writer killed again, or a long-running server, would
     * otherwise leave every reader replaying (docs/design.md). */
    if (!o->read_only) {
        int dirty = 0;
        for (int i = 0; i < db->n_colls; i++) dirty |= db->colls[i].unsaved != 0;
        if (dirty && eng_checkpoint(db) != PERR_OK) {
            fprintf(stderr, "percept: %s: saving the caught-up indexes failed (%s); they are saved at close\n",
                    dir, perr_msg());
            perr_clear();
        }
    }
    *out = db;
    return PERR_OK;
fail:
    pe_model_free(given);
    eng_close(db);
    return rc;
}

int eng_open_model(const char *model_path, const char *vocab_path, eng_db **out) {
    *out = NULL;
    eng_db *db = calloc(1, sizeof *db);
    if (!db) return perr_set(PERR_NOMEM, "eng_open_model");
    eng_open_opts_default(&db->opts);
    db->read_only = 1;
    db->lock_fd = -1;
    db->dir = strdup("(no database)");
    pthread_mutex_init(&db->model_mu, NULL);
    pthread_mutex_init(&db->write_mu, NULL);
    pthread_mutex_init(&db->gc_mu, NULL);
    pthread_cond_init(&db->gc_cv, NULL);
    pthread_mutex_init(&db->pool.mu, NULL);
    pthread_cond_init(&db->pool.cv, NULL);
    pthread_rwlock_init(&db->coll_lock, NULL);
    pthread_mutex_init(&db->tcache.mu, NULL);
    db->model_path = realpath(model_path, NULL);
    if (!db->model_path) db->model_path = strdup(model_path);
    if (vocab_path) db->vocab_path = strdup(vocab_path);
    int rc = load_model(db, model_path, &db->model);
    if (rc == PERR_OK) {
        const pe_config *c = pe_model_config(db->model);
        db->dim = c->output_dim;
        db->fingerprint = pe_model_fingerprint(db->model);
        snprintf(db->model_name, sizeof db->model_name, "%s", c->name);
        rc = eng_model_ready(db);
    }
    if (rc) { eng_close(db); return rc; }
    *out = db;
    return PERR_OK;
}

int eng_checkpoint(eng_db *db) {
    int rc = PERR_OK;
    pthread_mutex_lock(&db->write_mu);
    pthread_rwlock_rdlock(&db->coll_lock);
    for (int i = 0; i < db->n_colls; i++) {
        int r = save_index(db, &db->colls[i]);
        if (r && rc == PERR_OK) rc = r;
    }
    pthread_rwlock_unlock(&db->coll_lock);
    pthread_mutex_unlock(&db->write_mu);
    return rc;
}

int eng_close(eng_db *db) {
    if (!db) return PERR_OK;
    int rc = PERR_OK;
    eng_group_stop(db); /* queued uploads are committed and answered first */
    if (db->st) rc = eng_checkpoint(db);
    for (int i = 0; i < db->n_colls; i++) { idx_free(db->colls[i].ix); idx_free(db->colls[i].seg_ix); }
    free(db->colls);
    for (int i = 0; i < db->pool.n; i++) pe_ctx_free(db->pool.free_ctx[i]);
    free(db->pool.free_ctx);
    pe_tokenizer_free(db->tok);
    pe_model_free(db->model);
    st_close(db->st);
    if (db->lock_fd >= 0) close(db->lock_fd);
    pthread_mutex_destroy(&db->model_mu);
    pthread_mutex_destroy(&db->write_mu);
    pthread_mutex_destroy(&db->gc_mu);
    pthread_cond_destroy(&db->gc_cv);
    pthread_mutex_destroy(&db->pool.mu);
    pthread_cond_destroy(&db->pool.cv);
    pthread_rwlock_destroy(&db->coll_lock);
    for (int i = 0; i < ENG_TEXT_CACHE; i++) { free(db->tcache.text[i]); free(db->tcache.vec[i]); }
    pthread_mutex_destroy(&db->tcache.mu);
    free(db->thr);
    free(db->model_path);
    free(db->vocab_path);
    free(db->dir);
    free(db);
    return rc;
}

int eng_get_info(eng_db *db, eng_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->model_path, sizeof out->model_path, "%s", db->model_path ? db->model_path : "");
    snprintf(out->model_name, sizeof out->model_name, "%s", db->model_name);
    out->model_fingerprint = db->fingerprint;
    snprintf(out->precision, sizeof out->precision, "%s", pe_precision_name(db->prec));
    snprintf(out->encoder_isa, sizeof out->encoder_isa, "%s", pe_cpu_isa());
    out->dim = db->dim;
    out->layout_version = ST_LAYOUT_VERSION;
    return PERR_OK;
}

/* ------------------------------------------------------------- index sync */

int eng_index_added(eng_db *db, uint32_t coll, const uint64_t *ids, const float *vecs,
                    size_t n, uint64_t seq) {
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find_id(db, coll);
    int rc = PERR_OK;
    if (c && n) {
        rc = idx_add(c->ix, vecs, (const int64_t *)ids, n);
        if (rc == PERR_OK) {
            c->index_seq = seq;
            c->unsaved += n;
            if (db->opts.save_every > 0 && c->unsaved >= (uint64_t)db->opts.save_every)
                rc = save_index(db, c);
        }
    }
    pthread_rwlock_unlock(&db->coll_lock);
    return rc;
}

/* ------------------------------------------------------------------ items */

static const char *media_name(st_media m) {
    return m == ST_MEDIA_VIDEO ? "video" : m == ST_MEDIA_IMAGE ? "image" : "vector";
}

int eng_fill_item(eng_db *db, const st_item *si, eng_item *it) {
    memset(it, 0, sizeof *it);
    it->id = si->id;
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find_id(db, si->coll);
    snprintf(it->collection, sizeof it->collection, "%s", c ? c->name : "?");
    pthread_rwlock_unlock(&db->coll_lock);
    it->uri = strdup(si->uri ? si->uri : "");
    snprintf(it->media, sizeof it->media, "%s", media_name(si->media));
    memcpy(it->sha256, si->hash, 32);
    it->size = si->size_bytes;
    it->width = si->width;
    it->height = si->height;
    it->created_ms = si->created_ms;
    it->duration_s = si->duration_s;
    it->fps = si->fps;
    snprintf(it->codec, sizeof it->codec, "%s", si->codec ? si->codec : "");
    it->n_segments = si->n_segments;
    it->labels = calloc(si->n_labels + 1, sizeof(char *));
    it->meta = calloc(si->n_meta + 1, sizeof(eng_kv));
    if (!it->uri || !it->labels || !it->meta) return perr_set(PERR_NOMEM, "item");
    for (size_t i = 0; i < si->n_labels; i++) {
        if (!(it->labels[i] = strdup(si->labels[i]))) return perr_set(PERR_NOMEM, "item");
        it->n_labels++;
    }
    for (size_t i = 0; i < si->n_meta; i++) {
        it->meta[i].key = strdup(si->meta[i].key);
        it->meta[i].value = strdup(si->meta[i].value);
        it->n_meta++;
        if (!it->meta[i].key || !it->meta[i].value) return perr_set(PERR_NOMEM, "item");
    }
    return PERR_OK;
}

static void item_clear(eng_item *it) {
    free(it->uri);
    for (int i = 0; i < it->n_labels; i++) free(it->labels[i]);
    free(it->labels);
    for (int i = 0; i < it->n_meta; i++) { free((char *)it->meta[i].key); free((char *)it->meta[i].value); }
    free(it->meta);
    free(it->vector);
}

void eng_item_free(eng_item *it) {
    if (!it) return;
    item_clear(it);
    free(it);
}

int eng_get(eng_db *db, uint64_t id, int with_vector, eng_item **out) {
    *out = NULL;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    st_item *si = NULL;
    rc = st_item_get(txn, id, &si);
    if (rc == PERR_NOT_FOUND) perr_set(rc, "no item %llu", (unsigned long long)id);
    eng_item *it = NULL;
    if (rc == PERR_OK) {
        it = calloc(1, sizeof *it);
        rc = it ? eng_fill_item(db, si, it) : perr_set(PERR_NOMEM, "item");
    }
    if (rc == PERR_OK && with_vector) {
        const float *v; int dim;
        rc = st_item_vector(txn, id, &v, &dim);
        if (rc == PERR_OK) {
            it->vector = malloc(sizeof(float) * (size_t)dim);
            if (!it->vector) rc = perr_set(PERR_NOMEM, "vector");
            else { memcpy(it->vector, v, sizeof(float) * (size_t)dim); it->dim = dim; }
        }
    }
    st_item_free(si);
    st_txn_abort(txn);
    if (rc) { eng_item_free(it); return rc; }
    *out = it;
    return PERR_OK;
}

/* PERR_NOT_FOUND listing every id i with !known[i] (as many as the
 * message holds, then how many more), after the known ones were done. */
static int missing_error(const uint64_t *ids, const int *known, int n, int n_missing, const char *done) {
    char list[768];
    size_t len = 0;
    int listed = 0;
    for (int i = 0; i < n && len < sizeof list - 48; i++) {
        if (known[i]) continue;
        int w = snprintf(list + len, sizeof list - len, "%s%llu", listed ? ", " : "", (unsigned long long)ids[i]);
        if (w < 0 || (size_t)w >= sizeof list - len) break;
        len += (size_t)w;
        listed++;
    }
    if (listed < n_missing) snprintf(list + len, sizeof list - len, " and %d more", n_missing - listed);
    if (n_missing == n) return perr_set(PERR_NOT_FOUND, "no item%s %s", n > 1 ? "s" : "", list);
    return perr_set(PERR_NOT_FOUND, "no item%s %s (%d of %d ids unknown; the others were %s)",
                    n_missing > 1 ? "s" : "", list, n_missing, n, done);
}

int eng_remove(eng_db *db, const uint64_t *ids, int n, int *n_removed) {
    if (n_removed) *n_removed = 0;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    pthread_mutex_lock(&db->write_mu);
    st_txn *w;
    int rc = st_txn_begin(db->st, 1, &w);
    if (rc) { pthread_mutex_unlock(&db->write_mu); return rc; }
    uint32_t *colls = calloc((size_t)n + 1, sizeof *colls);
    uint64_t *seqs = calloc((size_t)n + 1, sizeof *seqs);
    int *gone = calloc((size_t)n + 1, sizeof *gone);
    uint32_t *nseg = calloc((size_t)n + 1, sizeof *nseg);
    int n_missing = 0;
    if (!colls || !seqs || !gone || !nseg) rc = perr_set(PERR_NOMEM, "remove");
    for (int i = 0; rc == PERR_OK && i < n; i++) {
        st_item *si = NULL;
        int r = st_item_get(w, ids[i], &si);
        if (r == PERR_NOT_FOUND) { n_missing++; perr_clear(); continue; }
        if (r) { rc = r; break; }
        colls[i] = si->coll;
        nseg[i] = si->n_segments;
        st_item_free(si);
        rc = st_item_delete(w, ids[i], &seqs[i]);
        if (rc == PERR_OK) gone[i] = 1;
    }
    if (rc == PERR_OK) rc = st_txn_commit(w);
    else st_txn_abort(w);
    if (rc == PERR_OK) {
        pthread_rwlock_rdlock(&db->coll_lock);
        for (int i = 0; i < n; i++) {
            if (!gone[i]) continue;
            eng_coll *c = eng_coll_find_id(db, colls[i]);
            if (!c) continue;
            int64_t id = (int64_t)ids[i];
            int r = idx_remove(c->ix, &id, 1, NULL);
            if (r == PERR_OK) r = eng_seg_removed(db, c, ids[i], nseg[i]);
            if (r && rc == PERR_OK) rc = r;
            if (seqs[i] > c->index_seq) c->index_seq = seqs[i];
            c->unsaved++;
            if (n_removed) (*n_removed)++;
        }
        pthread_rwlock_unlock(&db->coll_lock);
        /* HNSW: rebuild each touched collection past the tombstone limit */
        uint32_t touched[64];
        int nt = 0;
        for (int i = 0; i < n && nt < 64; i++) {
            if (!gone[i]) continue;
            int seen = 0;
            for (int j = 0; j < nt && !seen; j++) seen = touched[j] == colls[i];
            if (!seen) touched[nt++] = colls[i];
        }
        for (int i = 0; rc == PERR_OK && i < nt; i++) rc = compact_if_needed(db, touched[i]);
    }
    pthread_mutex_unlock(&db->write_mu);
    if (rc == PERR_OK && n_missing) rc = missing_error(ids, gone, n, n_missing, "removed");
    free(colls); free(seqs); free(gone); free(nseg);
    return rc;
}

/* Same rule as eng_remove: the known ids are changed, the unknown ones
 * listed in one NOT_FOUND. */
static int label_op(eng_db *db, const char *label, const uint64_t *ids, int n, int add) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    int *known = calloc((size_t)n + 1, sizeof *known);
    if (!known) return perr_set(PERR_NOMEM, "label");
    int n_missing = 0;
    pthread_mutex_lock(&db->write_mu);
    st_txn *w;
    int rc = st_txn_begin(db->st, 1, &w);
    for (int i = 0; rc == PERR_OK && i < n; i++) {
        rc = add ? st_label_add(w, ids[i], label) : st_label_remove(w, ids[i], label);
        if (rc == PERR_NOT_FOUND) { n_missing++; perr_clear(); rc = PERR_OK; continue; }
        known[i] = rc == PERR_OK;
    }
    if (rc == PERR_OK) rc = st_txn_commit(w);
    else st_txn_abort(w);
    pthread_mutex_unlock(&db->write_mu);
    if (rc == PERR_OK && n_missing) rc = missing_error(ids, known, n, n_missing, add ? "labelled" : "unlabelled");
    free(known);
    return rc;
}

int eng_label_add(eng_db *db, const char *label, const uint64_t *ids, int n) { return label_op(db, label, ids, n, 1); }
int eng_label_remove(eng_db *db, const char *label, const uint64_t *ids, int n) { return label_op(db, label, ids, n, 0); }

/* ------------------------------------------------------------------ stats */

int eng_get_stats(eng_db *db, eng_stats *out) {
    memset(out, 0, sizeof *out);
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    st_stats ss;
    rc = st_stats_get(txn, &ss);
    st_txn_abort(txn);
    if (rc) return rc;
    out->n_items = ss.n_items;
    out->n_collections = (int)ss.n_collections;
    out->lmdb_bytes = ss.file_bytes;
    out->map_size = ss.map_size;
    pthread_mutex_lock(&db->gc_mu);
    out->upload_groups = db->gc_groups;
    out->uploads_grouped = db->gc_items;
    pthread_mutex_unlock(&db->gc_mu);
    pthread_rwlock_rdlock(&db->coll_lock);
    for (int i = 0; i < db->n_colls; i++) {
        char p[PATH_MAX];
        struct stat sb;
        index_path(db, db->colls[i].id, p, sizeof p);
        if (stat(p, &sb) == 0) out->index_bytes += (uint64_t)sb.st_size;
        eng_seg_path(db, db->colls[i].id, p, sizeof p);
        if (stat(p, &sb) == 0) out->index_bytes += (uint64_t)sb.st_size;
    }
    pthread_rwlock_unlock(&db->coll_lock);
    return PERR_OK;
}

typedef struct foreach_ctx {
    eng_db *db; st_txn *txn; int with_vector; eng_item_fn fn; void *user;
    int stopped;                /* fn returned > 0: the whole walk ends */
} foreach_ctx;

static int foreach_item(void *ud, const st_item *si) {
    foreach_ctx *f = ud;
    eng_item it;
    int rc = eng_fill_item(f->db, si, &it);
    if (rc == PERR_OK && f->with_vector) {
        const float *v; int dim;
        rc = st_item_vector(f->txn, si->id, &v, &dim);
        if (rc == PERR_OK) { it.vector = (float *)v; it.dim = dim; }
    }
    if (rc == PERR_OK) rc = f->fn(f->user, &it);
    if (rc > 0) f->stopped = 1;
    it.vector = NULL; /* points into the map */
    item_clear(&it);
    return rc;
}

int eng_foreach(eng_db *db, const char *collection, int with_vector, eng_item_fn fn, void *user) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    uint32_t ids[256];
    int n = 0;
    pthread_rwlock_rdlock(&db->coll_lock);
    for (int i = 0; i < db->n_colls && n < 256; i++)
        if (!collection || !strcmp(collection, db->colls[i].name)) ids[n++] = db->colls[i].id;
    pthread_rwlock_unlock(&db->coll_lock);
    if (collection && n == 0) rc = perr_set(PERR_NOT_FOUND, "no collection %s", collection);
    foreach_ctx f = {db, txn, with_vector, fn, user, 0};
    for (int i = 0; rc == PERR_OK && i < n; i++) rc = st_scan_items(txn, ids[i], 0, foreach_item, &f);
    st_txn_abort(txn);
    return rc;
}

int eng_foreach_from(eng_db *db, const char *collection, const char *from_coll, uint64_t after_id,
                     int with_vector, eng_item_fn fn, void *user) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    uint32_t ids[256];
    int n = 0, start = -1;
    pthread_rwlock_rdlock(&db->coll_lock);
    for (int i = 0; i < db->n_colls && n < 256; i++) {
        if (collection && strcmp(collection, db->colls[i].name)) continue;
        if (from_coll && !strcmp(from_coll, db->colls[i].name)) start = n;
        ids[n++] = db->colls[i].id;
    }
    pthread_rwlock_unlock(&db->coll_lock);
    if (collection && n == 0) rc = perr_set(PERR_NOT_FOUND, "no collection %s", collection);
    else if (from_coll && start < 0) rc = perr_set(PERR_NOT_FOUND, "no collection %s (dropped while exporting?)", from_coll);
    foreach_ctx f = {db, txn, with_vector, fn, user, 0};
    for (int i = from_coll ? start : 0; rc == PERR_OK && !f.stopped && i < n; i++)
        rc = st_scan_items(txn, ids[i], from_coll && i == start ? after_id : 0, foreach_item, &f);
    st_txn_abort(txn);
    return rc;
}
