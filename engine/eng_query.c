/* eng_query: search, zero-shot classification, moderation, duplicates.
 *
 * DESIGN. A query encodes (borrowing a context from the pool), then for each
 * collection asked: builds the allowed-id set when there are filters
 * (labels and metadata: storage's id lists, intersected; AND), asks the
 * collection's index (k-NN, filtered k-NN, or range search for a minimum
 * score), then merges all collections by score and resolves the hits in one
 * LMDB read transaction. A hit whose item is gone from LMDB (deleted since)
 * is dropped: the index may briefly lag a delete, never an add.
 *
 * Never: hold the collection table's write lock (queries only read it);
 * encode while holding a lock other than the context pool's.
 */
#define _GNU_SOURCE
#include "engine/eng_internal.h"
#include "common/perr.h"

#include <c_api/utils/distances_c.h> /* fvec_inner_products_ny: rescoring batches */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eng_query_default(eng_query *q) {
    memset(q, 0, sizeof *q);
    q->k = 10;
}

typedef struct cand { int64_t id; float score; uint32_t coll; } cand;

typedef struct cands { cand *v; size_t n, cap; } cands;

static int cands_push(cands *c, int64_t id, float score, uint32_t coll) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        cand *n = realloc(c->v, cap * sizeof *n);
        if (!n) return perr_set(PERR_NOMEM, "results");
        c->v = n;
        c->cap = cap;
    }
    c->v[c->n++] = (cand){id, score, coll};
    return PERR_OK;
}

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Intersects sorted a[0..*na) with sorted b[0..nb) in place. */
static void intersect(uint64_t *a, size_t *na, const uint64_t *b, size_t nb) {
    size_t i = 0, j = 0, o = 0;
    while (i < *na && j < nb) {
        if (a[i] < b[j]) i++;
        else if (a[i] > b[j]) j++;
        else { a[o++] = a[i]; i++; j++; }
    }
    *na = o;
}

/* Allowed ids of a collection under the query's filters; *filtered = 0 when
 * there are no filters. Extra label (a moderation set's) may be NULL. */
static int allowed_ids(eng_db *db, st_txn *txn, uint32_t coll, const eng_query *q,
                       const char *extra_label, uint64_t **out, size_t *n, int *filtered) {
    *out = NULL;
    *n = 0;
    *filtered = 0;
    int nf = q->n_labels + q->n_where + (extra_label ? 1 : 0);
    for (int f = 0; f < nf; f++) {
        uint64_t *ids = NULL;
        size_t m = 0;
        int rc;
        if (f < q->n_labels) rc = st_label_ids(txn, coll, q->labels[f], &ids, &m);
        else if (f < q->n_labels + q->n_where) {
            const eng_kv *kv = &q->where[f - q->n_labels];
            rc = st_meta_ids(txn, coll, kv->key, kv->value, &ids, &m);
        } else rc = st_label_ids(txn, coll, extra_label, &ids, &m);
        if (rc == PERR_NOT_FOUND) { perr_clear(); rc = PERR_OK; ids = NULL; m = 0; }
        if (rc) { free(*out); *out = NULL; return rc; }
        if (!*filtered) { *out = ids; *n = m; *filtered = 1; }
        else { intersect(*out, n, ids, m); free(ids); }
        if (*n == 0) break;
    }
    if (*filtered && *n > 1) qsort(*out, *n, sizeof **out, u64_cmp);
    return PERR_OK;
}

static int bsearch_u64(const uint64_t *a, size_t n, uint64_t x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (a[m] < x) lo = m + 1; else hi = m;
    }
    return lo < n && a[lo] == x;
}

#define RANGE_MAX ((size_t)1 << 20)

/* Replaces sorted item ids by the sorted ids of their video segments. */
static int segment_ids(st_txn *txn, uint64_t **ids, size_t *n) {
    uint64_t *out = NULL;
    size_t no = 0, cap = 0;
    for (size_t i = 0; i < *n; i++) {
        st_item *si = NULL;
        int rc = st_item_get(txn, (*ids)[i], &si);
        if (rc == PERR_NOT_FOUND) { perr_clear(); continue; }
        if (rc) { free(out); return rc; }
        uint32_t ns = si->n_segments;
        st_item_free(si);
        if (no + ns > cap) {
            size_t nc = (no + ns) * 2 + 16;
            uint64_t *x = realloc(out, nc * sizeof *x);
            if (!x) { free(out); return perr_set(PERR_NOMEM, "segment filter"); }
            out = x;
            cap = nc;
        }
        for (uint32_t s = 0; s < ns; s++) out[no++] = ST_SEG_ID((*ids)[i], s);
    }
    free(*ids);
    *ids = out;
    *n = no;
    return PERR_OK;
}

/* Searches one collection; appends candidates. want: how many to ask for. */
static int search_coll(eng_db *db, st_txn *txn, eng_coll *c, const float *vec, const eng_query *q,
                       const char *extra_label, int want, cands *out) {
    uint64_t *allowed = NULL;
    size_t na = 0;
    int filtered = 0;
    int rc = allowed_ids(db, txn, c->id, q, extra_label, &allowed, &na, &filtered);
    if (rc) return rc;
    if (filtered && na == 0) { free(allowed); return PERR_OK; }
    idx *ix = c->ix;
    if (q->segments) {
        /* Segment index: the filter's items become their segments' ids. */
        ix = c->seg_ix;
        if (filtered) {
            rc = segment_ids(txn, &allowed, &na);
            if (rc || na == 0) { free(allowed); return rc; }
        }
    }
    if (q->has_min_score) {
        idx_hits h;
        memset(&h, 0, sizeof h);
        /* range search is strict (>); we promise >= min_score */
        float radius = nextafterf(q->min_score, -INFINITY);
        rc = idx_range_search(ix, vec, radius, RANGE_MAX, &h);
        for (size_t i = 0; rc == PERR_OK && i < h.n; i++) {
            if (h.scores[i] < q->min_score) continue;
            if (filtered && !bsearch_u64(allowed, na, (uint64_t)h.ids[i])) continue;
            rc = cands_push(out, h.ids[i], h.scores[i], c->id);
        }
        idx_hits_clear(&h);
    } else {
        size_t cnt = idx_count(ix);
        int k = want;
        if ((size_t)k > cnt) k = (int)cnt;
        if (filtered && (size_t)k > na) k = (int)na;
        if (k > IDX_K_MAX) k = IDX_K_MAX;
        if (k > 0) {
            float *sc = malloc(sizeof(float) * (size_t)k);
            int64_t *ids = malloc(sizeof(int64_t) * (size_t)k);
            if (!sc || !ids) rc = perr_set(PERR_NOMEM, "search");
            else if (filtered) {
                rc = idx_search_filtered(ix, vec, 1, k, (const int64_t *)allowed, na, sc, ids);
            } else rc = idx_search(ix, vec, 1, k, sc, ids);
            for (int i = 0; rc == PERR_OK && i < k; i++)
                if (ids[i] >= 0) rc = cands_push(out, ids[i], sc[i], c->id);
            free(sc);
            free(ids);
        }
    }
    free(allowed);
    if (rc) perr_prefix(rc, "collection %s", c->name);
    return rc;
}

static void hit_clear(eng_hit *h) {
    free(h->uri);
    for (int i = 0; i < h->n_labels; i++) free(h->labels[i]);
    free(h->labels);
}

void eng_results_free(eng_results *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) hit_clear(&r->hits[i]);
    free(r->hits);
    free(r);
}

/* Sorts candidates, resolves up to k (0: all) in txn, skipping deleted ones
 * and `skip` (0: none). */
static int resolve_ex(eng_db *db, st_txn *txn, cands *cs, int k, uint64_t skip, int segments,
                      eng_results **out);

static int resolve(eng_db *db, st_txn *txn, cands *cs, int k, uint64_t skip, eng_results **out) {
    return resolve_ex(db, txn, cs, k, skip, 0, out);
}

/* segments: candidate ids are segment ids (ST_SEG_ID). */
static int resolve_ex(eng_db *db, st_txn *txn, cands *cs, int k, uint64_t skip, int segments,
                      eng_results **out) {
    if (cs->n > 1) qsort(cs->v, cs->n, sizeof *cs->v, cand_cmp);
    eng_results *r = calloc(1, sizeof *r);
    size_t cap = k > 0 && (size_t)k < cs->n ? (size_t)k : cs->n;
    if (!r || !(r->hits = calloc(cap + 1, sizeof *r->hits))) { free(r); return perr_set(PERR_NOMEM, "results"); }
    int rc = PERR_OK;
    for (size_t i = 0; i < cs->n && (size_t)r->n < cap; i++) {
        uint64_t item = segments ? ST_SEG_ITEM((uint64_t)cs->v[i].id) : (uint64_t)cs->v[i].id;
        if (skip && item == skip) continue;
        st_item *si = NULL;
        int g = st_item_get(txn, item, &si);
        if (g == PERR_NOT_FOUND) { perr_clear(); continue; }
        if (g) { rc = g; break; }
        eng_hit *h = &r->hits[r->n];
        h->id = si->id;
        h->score = cs->v[i].score;
        h->start_s = h->end_s = -1;
        h->width = si->width;
        h->height = si->height;
        h->duration_s = si->duration_s;
        h->fps = si->fps;
        snprintf(h->codec, sizeof h->codec, "%s", si->codec ? si->codec : "");
        if (segments) {
            st_segment *segs = NULL;
            size_t ns = 0;
            uint32_t sx = ST_SEG_IDX((uint64_t)cs->v[i].id);
            if (st_item_segments(txn, item, &segs, &ns) == PERR_OK && sx < ns) {
                h->start_s = segs[sx].start_s;
                h->end_s = segs[sx].end_s;
            }
            perr_clear();
            free(segs);
        }
        eng_coll *c = eng_coll_find_id(db, si->coll);
        snprintf(h->collection, sizeof h->collection, "%s", c ? c->name : "?");
        snprintf(h->media, sizeof h->media, "%s", si->media == ST_MEDIA_VIDEO ? "video" : "image");
        h->uri = strdup(si->uri ? si->uri : "");
        h->labels = calloc(si->n_labels + 1, sizeof(char *));
        r->n++;
        if (!h->uri || !h->labels) { st_item_free(si); rc = perr_set(PERR_NOMEM, "results"); break; }
        for (size_t l = 0; l < si->n_labels; l++)
            if ((h->labels[h->n_labels] = strdup(si->labels[l]))) h->n_labels++;
        st_item_free(si);
    }
    if (rc) { eng_results_free(r); return rc; }
    *out = r;
    return PERR_OK;
}

static int check_query(eng_db *db, const eng_query *q) {
    if (q->k < 0 || q->k > IDX_K_MAX)
        return perr_set(PERR_INVALID, "k = %d: between 1 and %d", q->k, IDX_K_MAX);
    if (q->has_min_score && !(q->min_score >= -1.0f && q->min_score <= 1.0f))
        return perr_set(PERR_INVALID, "min score %g: a cosine is within [-1, 1]", q->min_score);
    return PERR_OK;
}

/* The core: vec normalized. skip: an id to leave out (0: none). */
static int search_vec(eng_db *db, const float *vec, const eng_query *q, uint64_t skip,
                      const char *default_coll, eng_results **out) {
    *out = NULL;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    eng_query dq;
    if (!q) { eng_query_default(&dq); q = &dq; }
    int rc = check_query(db, q);
    if (rc) return rc;
    int k = q->k > 0 ? q->k : (q->has_min_score ? 0 : 10);
    const char *one = default_coll ? default_coll : ENG_DEFAULT_COLLECTION;
    const char *const *names = q->n_collections ? q->collections : &one;
    int nn = q->n_collections ? q->n_collections : 1;
    st_txn *txn;
    rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    cands cs = {0};
    pthread_rwlock_rdlock(&db->coll_lock);
    for (int i = 0; rc == PERR_OK && i < nn; i++) {
        eng_coll *c = eng_coll_find(db, names[i]);
        if (!c) { rc = perr_set(PERR_NOT_FOUND, "no collection %s", names[i]); break; }
        rc = search_coll(db, txn, c, vec, q, NULL, k + (skip ? 1 : 0), &cs);
    }
    if (rc == PERR_OK) rc = resolve_ex(db, txn, &cs, k, skip, q->segments, out);
    pthread_rwlock_unlock(&db->coll_lock);
    st_txn_abort(txn);
    free(cs.v);
    return rc;
}

int eng_search_vector(eng_db *db, const float *vector, int dim, const eng_query *q, eng_results **out) {
    *out = NULL;
    if (dim != db->dim) return perr_set(PERR_INVALID, "query vector of dim %d, database dim %d", dim, db->dim);
    float *v = malloc(sizeof(float) * (size_t)dim);
    if (!v) return perr_set(PERR_NOMEM, "query");
    memcpy(v, vector, sizeof(float) * (size_t)dim);
    int rc = idx_normalize(v, 1, dim);
    if (rc == PERR_OK) rc = search_vec(db, v, q, 0, NULL, out);
    free(v);
    return rc;
}

/* ---- batched vector search (eng_search_vectors) ----
 *
 * One FAISS call answers the whole batch, but every answer must equal what
 * eng_search_vector gives for that query alone. FAISS's Flat search scores a
 * batch of >= 20 queries with BLAS sgemm, whose float sums round differently
 * from the per-query kernel (fvec_inner_product) a single query uses. So for
 * Flat batches of >= BATCH_BLAS_MIN queries the index is asked for k +
 * margin candidates, each candidate is rescored with FAISS's own per-query
 * kernel on its stored vector, and the best k kept; a query whose k-th
 * exact score is not clear of what the BLAS pass may have missed (or ties
 * the next one) is answered by the single-query path instead. Smaller Flat
 * batches already use the per-query kernel; other index types (HNSW, IVF,
 * SQ...) are searched one query at a time inside the batch's transaction,
 * since their batched paths can differ from single searches. */
#define BATCH_BLAS_MIN 20        /* faiss distance_compute_blas_threshold */
#define RESCORE_EPS 1e-4f        /* bound on |sgemm - fvec_inner_product| for unit vectors */

typedef struct rs { int64_t id; float score; } rs;

static int rs_cmp(const void *a, const void *b) {
    const rs *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Flat, one collection, nq >= BATCH_BLAS_MIN: BLAS pass + exact rescoring.
 * fallback[i] set for queries that must take the single path. */
static int batch_flat(eng_db *db, st_txn *txn, eng_coll *c, const float *v, int nq, int kk,
                      cands *cs, unsigned char *fallback) {
    size_t cnt = idx_count(c->ix);
    int d = db->dim;
    int kw = kk + 8 + kk / 4;
    if ((size_t)kw > cnt) kw = (int)cnt;
    if (kw > IDX_K_MAX) kw = IDX_K_MAX;
    float *sc = malloc(sizeof(float) * (size_t)nq * (size_t)kw);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)nq * (size_t)kw);
    rs *r = malloc(sizeof(rs) * (size_t)kw);
    int rc = (sc && ids && r) ? PERR_OK : perr_set(PERR_NOMEM, "batched search");
    if (rc == PERR_OK) rc = idx_search(c->ix, v, (size_t)nq, kw, sc, ids);
    for (int i = 0; rc == PERR_OK && i < nq; i++) {
        if (fallback[i]) continue;
        const float *qi = v + (size_t)i * d;
        const int64_t *ii = ids + (size_t)i * kw;
        int n = 0, exact = 1;
        for (int j = 0; j < kw; j++) {
            if (ii[j] < 0) continue;
            const float *vec = NULL;
            int vd = 0;
            int g = st_item_vector(txn, (uint64_t)ii[j], &vec, &vd);
            if (g || vd != d) { perr_clear(); exact = 0; break; } /* gone or odd: single path */
            float ip;
            faiss_fvec_inner_products_ny(&ip, qi, vec, (size_t)d, 1);
            r[n++] = (rs){ii[j], ip};
        }
        if (!exact) { fallback[i] = 1; continue; }
        qsort(r, (size_t)n, sizeof *r, rs_cmp);
        int keep = n < kk ? n : kk;
        /* Items the BLAS pass did not return scored <= its last score (+ eps). */
        if (kw < (int)cnt && n > 0) {
            float last = sc[(size_t)i * kw + kw - 1];
            if (keep < kk || !(r[keep - 1].score > last + RESCORE_EPS)) { fallback[i] = 1; continue; }
        }
        if (keep > 0 && keep < n && r[keep - 1].score == r[keep].score) { fallback[i] = 1; continue; }
        for (int j = 0; rc == PERR_OK && j < keep; j++) rc = cands_push(&cs[i], r[j].id, r[j].score, c->id);
    }
    free(sc);
    free(ids);
    free(r);
    return rc;
}

int eng_search_vectors(eng_db *db, const float *vectors, int nq, int dim, const eng_query *q,
                       eng_results **out) {
    for (int i = 0; i < nq; i++) out[i] = NULL;
    if (nq <= 0) return PERR_OK;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (dim != db->dim) return perr_set(PERR_INVALID, "query vector of dim %d, database dim %d", dim, db->dim);
    eng_query dq;
    if (!q) { eng_query_default(&dq); q = &dq; }
    int rc = check_query(db, q);
    if (rc) return rc;
    /* Filters and minimum scores take the single path per query (their
     * index calls are per query already). */
    if (nq == 1 || q->has_min_score || q->n_labels || q->n_where) {
        for (int i = 0; rc == PERR_OK && i < nq; i++) {
            rc = eng_search_vector(db, vectors + (size_t)i * dim, dim, q, &out[i]);
            if (rc) perr_prefix(rc, "query %d", i);
        }
        if (rc) for (int i = 0; i < nq; i++) { eng_results_free(out[i]); out[i] = NULL; }
        return rc;
    }
    size_t vbytes = sizeof(float) * (size_t)nq * (size_t)dim;
    float *v = malloc(vbytes);
    cands *cs = calloc((size_t)nq, sizeof *cs);
    unsigned char *fallback = calloc((size_t)nq, 1);
    if (!v || !cs || !fallback) { rc = perr_set(PERR_NOMEM, "batched search of %d queries", nq); goto done; }
    memcpy(v, vectors, vbytes);
    for (int i = 0; rc == PERR_OK && i < nq; i++)
        if ((rc = idx_normalize(v + (size_t)i * dim, 1, dim))) perr_prefix(rc, "query %d", i);
    if (rc) goto done;
    int k = q->k > 0 ? q->k : 10;
    const char *one = ENG_DEFAULT_COLLECTION;
    const char *const *names = q->n_collections ? q->collections : &one;
    int nn = q->n_collections ? q->n_collections : 1;
    st_txn *txn;
    if ((rc = st_txn_begin(db->st, 0, &txn))) goto done;
    pthread_rwlock_rdlock(&db->coll_lock);
    for (int ci = 0; rc == PERR_OK && ci < nn; ci++) {
        eng_coll *c = eng_coll_find(db, names[ci]);
        if (!c) { rc = perr_set(PERR_NOT_FOUND, "no collection %s", names[ci]); break; }
        size_t cnt = idx_count(c->ix);
        int kk = k;
        if ((size_t)kk > cnt) kk = (int)cnt;
        if (kk > IDX_K_MAX) kk = IDX_K_MAX;
        if (kk <= 0) continue;
        int flat = !strcmp(idx_factory(c->ix), "Flat");
        if (flat && nq >= BATCH_BLAS_MIN && dim > 12) {
            rc = batch_flat(db, txn, c, v, nq, kk, cs, fallback);
        } else {
            /* Flat below the BLAS threshold: one call, per-query kernel.
             * Other types: one query per call. */
            int step = flat ? (dim > 12 ? BATCH_BLAS_MIN - 1 : 1) : 1;
            float *sc = malloc(sizeof(float) * (size_t)step * kk);
            int64_t *ids = malloc(sizeof(int64_t) * (size_t)step * kk);
            if (!sc || !ids) rc = perr_set(PERR_NOMEM, "batched search");
            for (int i = 0; rc == PERR_OK && i < nq; i += step) {
                int m = nq - i < step ? nq - i : step;
                rc = idx_search(c->ix, v + (size_t)i * dim, (size_t)m, kk, sc, ids);
                for (int j = 0; rc == PERR_OK && j < m * kk; j++)
                    if (ids[j] >= 0) rc = cands_push(&cs[i + j / kk], ids[j], sc[j], c->id);
            }
            free(sc);
            free(ids);
        }
        if (rc) perr_prefix(rc, "collection %s", c->name);
    }
    for (int i = 0; rc == PERR_OK && i < nq; i++)
        if (!fallback[i]) rc = resolve(db, txn, &cs[i], k, 0, &out[i]);
    pthread_rwlock_unlock(&db->coll_lock);
    st_txn_abort(txn);
    for (int i = 0; rc == PERR_OK && i < nq; i++)
        if (fallback[i]) rc = search_vec(db, v + (size_t)i * dim, q, 0, NULL, &out[i]);
done:
    if (rc) for (int i = 0; i < nq; i++) { eng_results_free(out[i]); out[i] = NULL; }
    if (cs) for (int i = 0; i < nq; i++) free(cs[i].v);
    free(cs);
    free(fallback);
    free(v);
    return rc;
}

int eng_search_text(eng_db *db, const char *text, const eng_query *q, eng_results **out) {
    *out = NULL;
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "query");
    int rc = eng_encode_text(db, text, v);
    if (rc == PERR_OK) rc = search_vec(db, v, q, 0, NULL, out);
    free(v);
    return rc;
}

int eng_search_image_file(eng_db *db, const char *path, const eng_query *q, eng_results **out) {
    *out = NULL;
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "query");
    int rc = eng_encode_image_file(db, path, v);
    if (rc == PERR_OK) rc = search_vec(db, v, q, 0, NULL, out);
    free(v);
    return rc;
}

int eng_search_image_buffer(eng_db *db, const void *data, size_t len, const eng_query *q,
                            eng_results **out) {
    *out = NULL;
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "query");
    int rc = eng_encode_image_buffer(db, data, len, v);
    if (rc == PERR_OK) rc = search_vec(db, v, q, 0, NULL, out);
    free(v);
    return rc;
}

int eng_search_id(eng_db *db, uint64_t id, const eng_query *q, eng_results **out) {
    *out = NULL;
    eng_item *it = NULL;
    int rc = eng_get(db, id, 1, &it);
    if (rc) return rc;
    eng_query dq;
    if (!q) { eng_query_default(&dq); q = &dq; }
    /* Without collections given: the item's own collection. */
    rc = search_vec(db, it->vector, q, q->include_self ? 0 : id, it->collection, out);
    eng_item_free(it);
    return rc;
}

/* --------------------------------------------------------- classification */

static int classify_vec(eng_db *db, const float *img, const char *const *labels, int n,
                        const char *prompt, float *probs) {
    if (n <= 0) return perr_set(PERR_INVALID, "no labels to classify against");
    if (!prompt) prompt = "a photo of a {label}.";
    const char *ph = strstr(prompt, "{label}");
    size_t dim = (size_t)db->dim;
    float *t = malloc(sizeof(float) * dim * (size_t)n);
    double *logit = malloc(sizeof(double) * (size_t)n);
    char **text = calloc((size_t)n, sizeof *text);
    int rc = (t && logit && text) ? PERR_OK : perr_set(PERR_NOMEM, "classify");
    for (int i = 0; rc == PERR_OK && i < n; i++) {
        size_t len = strlen(prompt) + strlen(labels[i]) + 1;
        if (!(text[i] = malloc(len))) { rc = perr_set(PERR_NOMEM, "classify"); break; }
        if (ph) snprintf(text[i], len, "%.*s%s%s", (int)(ph - prompt), prompt, labels[i], ph + 7);
        else snprintf(text[i], len, "%s", labels[i]);
    }
    /* all prompts in batches (one encoder call per batch), cached per handle */
    if (rc == PERR_OK) rc = eng_encode_texts(db, (const char *const *)text, n, 1, t);
    float scale = db->model ? pe_model_logit_scale(db->model) : 1.0f;
    double mx = -INFINITY;
    for (int i = 0; rc == PERR_OK && i < n; i++) {
        double cos = 0;
        for (size_t d = 0; d < dim; d++) cos += (double)img[d] * t[(size_t)i * dim + d];
        logit[i] = (double)scale * cos;
        if (logit[i] > mx) mx = logit[i];
    }
    if (rc == PERR_OK) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += exp(logit[i] - mx);
        for (int i = 0; i < n; i++) probs[i] = (float)(exp(logit[i] - mx) / sum);
    }
    for (int i = 0; text && i < n; i++) free(text[i]);
    free(text);
    free(t);
    free(logit);
    return rc;
}

int eng_classify_file(eng_db *db, const char *path, const char *const *labels, int n,
                      const char *prompt, float *probs) {
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "classify");
    int rc = eng_encode_image_file(db, path, v);
    if (rc == PERR_OK) rc = classify_vec(db, v, labels, n, prompt, probs);
    free(v);
    return rc;
}

int eng_classify_buffer(eng_db *db, const void *data, size_t len, const char *const *labels,
                        int n, const char *prompt, float *probs) {
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "classify");
    int rc = eng_encode_image_buffer(db, data, len, v);
    if (rc == PERR_OK) rc = classify_vec(db, v, labels, n, prompt, probs);
    free(v);
    return rc;
}

/* ------------------------------------------------------------- moderation */

void eng_mod_result_free(eng_mod_result *r) {
    if (!r) return;
    eng_results_free(r->nearest);
    free(r->thresholds);
    free(r->set_matched);
    free(r);
}

int eng_moderate_vector(eng_db *db, const float *vector, const char *const *sets, int n_sets,
                        float threshold, int k, eng_mod_result **out) {
    *out = NULL;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (n_sets <= 0) return perr_set(PERR_INVALID, "no set to moderate against");
    if (k <= 0) k = 5;
    eng_mod_result *m = calloc(1, sizeof *m);
    if (!m) return perr_set(PERR_NOMEM, "moderation");
    m->n_sets = n_sets;
    m->thresholds = calloc((size_t)n_sets, sizeof(float));
    m->set_matched = calloc((size_t)n_sets, sizeof(int));
    int rc = (m->thresholds && m->set_matched) ? PERR_OK : perr_set(PERR_NOMEM, "moderation");
    for (int s = 0; rc == PERR_OK && s < n_sets; s++) {
        float t = threshold;
        if (isnan(t)) {
            eng_get_threshold(db, sets[s], &t);
            if (isnan(t)) {
                /* a "coll:label" set falls back to its collection's */
                const char *colon = strchr(sets[s], ':');
                if (colon) {
                    char cn[ST_NAME_MAX + 1];
                    snprintf(cn, sizeof cn, "%.*s", (int)(colon - sets[s]), sets[s]);
                    eng_get_threshold(db, cn, &t);
                }
            }
            if (isnan(t)) rc = perr_set(PERR_INVALID, "set %s has no threshold: pass --threshold or set one (--set-threshold)", sets[s]);
        }
        m->thresholds[s] = t;
    }
    st_txn *txn = NULL;
    if (rc == PERR_OK) rc = st_txn_begin(db->st, 0, &txn);
    cands all = {0};
    if (rc == PERR_OK) {
        pthread_rwlock_rdlock(&db->coll_lock);
        for (int s = 0; rc == PERR_OK && s < n_sets; s++) {
            char cn[ST_NAME_MAX + 1];
            const char *colon = strchr(sets[s], ':');
            snprintf(cn, sizeof cn, "%.*s", colon ? (int)(colon - sets[s]) : (int)strlen(sets[s]), sets[s]);
            eng_coll *c = eng_coll_find(db, cn);
            if (!c) { rc = perr_set(PERR_NOT_FOUND, "set %s: no collection %s", sets[s], cn); break; }
            eng_query q;
            eng_query_default(&q);
            cands cs = {0};
            rc = search_coll(db, txn, c, vector, &q, colon ? colon + 1 : NULL, k, &cs);
            for (size_t i = 0; rc == PERR_OK && i < cs.n; i++) {
                if (cs.v[i].score >= m->thresholds[s]) {
                    /* the item must still exist (deleted items never match) */
                    st_item *si = NULL;
                    if (st_item_get(txn, (uint64_t)cs.v[i].id, &si) == PERR_OK) m->set_matched[s] = 1;
                    st_item_free(si);
                    perr_clear();
                }
                rc = cands_push(&all, cs.v[i].id, cs.v[i].score, cs.v[i].coll);
            }
            free(cs.v);
            if (m->set_matched[s]) m->matched = 1;
        }
        if (rc == PERR_OK) {
            /* the same item may be in two sets (a collection and one of its labels) */
            if (all.n > 1) qsort(all.v, all.n, sizeof *all.v, cand_cmp);
            size_t o = 0;
            for (size_t i = 0; i < all.n; i++)
                if (!o || all.v[o - 1].id != all.v[i].id) all.v[o++] = all.v[i];
            all.n = o;
            rc = resolve(db, txn, &all, k, 0, &m->nearest);
        }
        pthread_rwlock_unlock(&db->coll_lock);
    }
    st_txn_abort(txn);
    free(all.v);
    if (rc) { eng_mod_result_free(m); return rc; }
    *out = m;
    return PERR_OK;
}

int eng_moderate_file(eng_db *db, const char *path, const char *const *sets, int n_sets,
                      float threshold, int k, eng_mod_result **out) {
    *out = NULL;
    int is_video = 0;
    if (eng_is_video_file(path, &is_video) != PERR_OK) { perr_clear(); is_video = 0; }
    if (is_video) {
        eng_vplan *p = NULL;
        int rc = eng_vplan_open(db, NULL, path, NULL, 0, 0, 1, &p);
        if (rc == PERR_OK) rc = eng_moderate_video(db, p, sets, n_sets, threshold, k, out);
        eng_vplan_free(p);
        return rc;
    }
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "moderation");
    int rc = eng_encode_image_file(db, path, v);
    if (rc == PERR_OK) rc = eng_moderate_vector(db, v, sets, n_sets, threshold, k, out);
    free(v);
    return rc;
}

int eng_moderate_buffer(eng_db *db, const void *data, size_t len, const char *const *sets,
                        int n_sets, float threshold, int k, eng_mod_result **out) {
    *out = NULL;
    if (eng_is_video_bytes(data, len)) {
        eng_vplan *p = NULL;
        int rc = eng_vplan_open(db, NULL, "upload", (void *)data, len, 0, 1, &p);
        if (rc == PERR_OK) rc = eng_moderate_video(db, p, sets, n_sets, threshold, k, out);
        eng_vplan_free(p);
        return rc;
    }
    float *v = malloc(sizeof(float) * (size_t)db->dim);
    if (!v) return perr_set(PERR_NOMEM, "moderation");
    int rc = eng_encode_image_buffer(db, data, len, v);
    if (rc == PERR_OK) rc = eng_moderate_vector(db, v, sets, n_sets, threshold, k, out);
    free(v);
    return rc;
}

/* ------------------------------------------------------------- duplicates */

typedef struct dsu { uint64_t *ids; size_t *parent; size_t n, cap; } dsu;

static size_t dsu_find(dsu *d, size_t i) {
    while (d->parent[i] != i) { d->parent[i] = d->parent[d->parent[i]]; i = d->parent[i]; }
    return i;
}

static void dsu_union(dsu *d, size_t a, size_t b) {
    a = dsu_find(d, a);
    b = dsu_find(d, b);
    if (a == b) return;
    if (d->ids[a] < d->ids[b]) d->parent[b] = a; else d->parent[a] = b;
}

static size_t dsu_index(const dsu *d, uint64_t id) {
    size_t lo = 0, hi = d->n;
    while (lo < hi) { size_t m = (lo + hi) / 2; if (d->ids[m] < id) lo = m + 1; else hi = m; }
    return lo < d->n && d->ids[lo] == id ? lo : (size_t)-1;
}

typedef struct dup_scan { dsu *d; float *vecs; int dim; } dup_scan;

static int dup_collect(void *ud, uint64_t id, const float *vec, int dim) {
    dup_scan *s = ud;
    dsu *d = s->d;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        uint64_t *ni = realloc(d->ids, cap * sizeof *ni);
        if (ni) d->ids = ni;
        float *nv = realloc(s->vecs, cap * (size_t)dim * sizeof *nv);
        if (nv) s->vecs = nv;
        if (!ni || !nv) return perr_set(PERR_NOMEM, "duplicates");
        d->cap = cap;
    }
    d->ids[d->n] = id;
    memcpy(s->vecs + d->n * (size_t)dim, vec, sizeof(float) * (size_t)dim);
    d->n++;
    return 0;
}

void eng_dups_free(eng_dups *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) free(d->groups[i].ids);
    free(d->groups);
    free(d);
}

typedef struct hash_ent { uint8_t h[32]; uint64_t id; } hash_ent;
typedef struct hash_scan { hash_ent *v; size_t n, cap; } hash_scan;

static int hash_collect(void *ud, const st_item *it) {
    hash_scan *s = ud;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        hash_ent *n = realloc(s->v, cap * sizeof *n);
        if (!n) return perr_set(PERR_NOMEM, "duplicates");
        s->v = n;
        s->cap = cap;
    }
    memcpy(s->v[s->n].h, it->hash, 32);
    s->v[s->n++].id = it->id;
    return 0;
}

static int hash_cmp(const void *a, const void *b) {
    const hash_ent *x = a, *y = b;
    int c = memcmp(x->h, y->h, 32);
    return c ? c : (x->id < y->id ? -1 : x->id > y->id);
}

/* Exact tier: items with the same SHA-256. Ingest stores identical bytes once
 * per collection, so groups appear across collections (collection NULL: the
 * whole database). */
static int exact_dups(eng_db *db, const char *collection, eng_dups **out) {
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    hash_scan s = {0};
    pthread_rwlock_rdlock(&db->coll_lock);
    int found = 0;
    for (int i = 0; rc == PERR_OK && i < db->n_colls; i++) {
        if (collection && strcmp(collection, db->colls[i].name)) continue;
        found = 1;
        rc = st_scan_items(txn, db->colls[i].id, 0, hash_collect, &s);
    }
    pthread_rwlock_unlock(&db->coll_lock);
    st_txn_abort(txn);
    if (rc == PERR_OK && collection && !found) rc = perr_set(PERR_NOT_FOUND, "no collection %s", collection);
    eng_dups *res = rc ? NULL : calloc(1, sizeof *res);
    if (!rc && !res) rc = perr_set(PERR_NOMEM, "duplicates");
    if (rc == PERR_OK && s.n) {
        qsort(s.v, s.n, sizeof *s.v, hash_cmp);
        res->groups = calloc(s.n, sizeof *res->groups);
        if (!res->groups) rc = perr_set(PERR_NOMEM, "duplicates");
        for (size_t i = 0; rc == PERR_OK && i < s.n;) {
            size_t j = i + 1;
            while (j < s.n && !memcmp(s.v[j].h, s.v[i].h, 32)) j++;
            if (j - i >= 2) {
                eng_dup_group *g = &res->groups[res->n++];
                g->ids = malloc(sizeof(uint64_t) * (j - i));
                if (!g->ids) { rc = perr_set(PERR_NOMEM, "duplicates"); break; }
                for (size_t x = i; x < j; x++) g->ids[g->n++] = s.v[x].id;
                g->min_score = 1.0f;
            }
            i = j;
        }
    }
    free(s.v);
    if (rc) { eng_dups_free(res); return rc; }
    *out = res;
    return PERR_OK;
}

int eng_find_dups(eng_db *db, const char *collection, eng_dup_tier tier, float threshold,
                  eng_dups **out) {
    *out = NULL;
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (tier == ENG_DUP_EXACT) return exact_dups(db, collection, out);
    if (!collection) collection = ENG_DEFAULT_COLLECTION;
    if (threshold <= 0)
        threshold = tier == ENG_DUP_NEAR ? ENG_NEAR_THRESHOLD_DEFAULT : ENG_SIMILAR_THRESHOLD_DEFAULT;
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    dsu d = {0};
    dup_scan s = {&d, NULL, db->dim};
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find(db, collection);
    if (!c) rc = perr_set(PERR_NOT_FOUND, "no collection %s", collection);
    if (rc == PERR_OK) rc = st_scan_vectors(txn, c->id, 0, dup_collect, &s);
    if (rc == PERR_OK) {
        d.parent = malloc(sizeof(size_t) * (d.n + 1));
        if (!d.parent) rc = perr_set(PERR_NOMEM, "duplicates");
        for (size_t i = 0; rc == PERR_OK && i < d.n; i++) d.parent[i] = i;
    }
    /* Each item's neighbours above the threshold (range search on its
     * collection's index), unioned into connected components. */
    for (size_t i = 0; rc == PERR_OK && i < d.n; i++) {
        idx_hits h;
        memset(&h, 0, sizeof h);
        rc = idx_range_search(c->ix, s.vecs + i * (size_t)db->dim, nextafterf(threshold, -INFINITY), 4096, &h);
        for (size_t j = 0; rc == PERR_OK && j < h.n; j++) {
            if (h.scores[j] < threshold || (uint64_t)h.ids[j] == d.ids[i]) continue;
            size_t o = dsu_index(&d, (uint64_t)h.ids[j]);
            if (o != (size_t)-1) dsu_union(&d, i, o);
        }
        idx_hits_clear(&h);
    }
    eng_dups *res = calloc(1, sizeof *res);
    if (!res && rc == PERR_OK) rc = perr_set(PERR_NOMEM, "duplicates");
    if (rc == PERR_OK) {
        /* groups: roots with >= 2 members, members in id order */
        size_t *count = calloc(d.n + 1, sizeof *count);
        if (!count) rc = perr_set(PERR_NOMEM, "duplicates");
        for (size_t i = 0; rc == PERR_OK && i < d.n; i++) count[dsu_find(&d, i)]++;
        int ng = 0;
        for (size_t i = 0; rc == PERR_OK && i < d.n; i++) if (count[i] >= 2) ng++;
        if (rc == PERR_OK) res->groups = calloc((size_t)ng + 1, sizeof *res->groups);
        if (rc == PERR_OK && !res->groups) rc = perr_set(PERR_NOMEM, "duplicates");
        size_t *gi = calloc(d.n + 1, sizeof *gi);
        if (!gi && rc == PERR_OK) rc = perr_set(PERR_NOMEM, "duplicates");
        for (size_t i = 0; rc == PERR_OK && i < d.n; i++) {
            if (count[i] < 2) continue;
            eng_dup_group *g = &res->groups[res->n];
            gi[i] = (size_t)res->n++;
            g->ids = malloc(sizeof(uint64_t) * count[i]);
            if (!g->ids) rc = perr_set(PERR_NOMEM, "duplicates");
            g->min_score = 1.0f;
        }
        for (size_t i = 0; rc == PERR_OK && i < d.n; i++) {
            size_t root = dsu_find(&d, i);
            if (count[root] < 2) continue;
            eng_dup_group *g = &res->groups[gi[root]];
            g->ids[g->n++] = d.ids[i];
            double cos = 0;
            for (int x = 0; x < db->dim; x++)
                cos += (double)s.vecs[i * (size_t)db->dim + x] * s.vecs[root * (size_t)db->dim + x];
            if ((float)cos < g->min_score) g->min_score = (float)cos;
        }
        free(count);
        free(gi);
    }
    pthread_rwlock_unlock(&db->coll_lock);
    st_txn_abort(txn);
    free(d.ids);
    free(d.parent);
    free(s.vecs);
    if (rc) { eng_dups_free(res); return rc; }
    *out = res;
    return PERR_OK;
}
