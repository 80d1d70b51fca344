/* eng_video: videos in the engine: decoding plans (which frames, through
 * pe_video), video and segment vectors, the per-collection segment indexes,
 * video queries and video moderation.
 *
 * DESIGN. A plan opens one video (pe_video, with the engine's limits) and
 * lists its sample times: `frames` uniform times for the video vector, then
 * `segment_frames` times per segment window. Decoding delivers frames in
 * time order, each preprocessed exactly like an image file
 * (pe_image_preprocess_rgb: squash to S x S, normalize) into its own tensor
 * that the consumer owns: the ingest pipeline hands each one to the encoder
 * thread as it comes (bounded queue), queries encode them here in batches
 * of 8. So a decoder holds at most one frame of one video at a time.
 *
 * Segment indexes. Each collection has a second FAISS index (Flat) of its
 * videos' segment vectors, ids ST_SEG_ID(item, i), file
 * <dir>/index/<collection id>.seg.faiss. It is derived from storage like
 * the main index: saved with the sequence it covers (always together with
 * the main index, before the change log is trimmed), caught up from the
 * change log on open (ADD: the item's stored segments; DEL: n_segments ids),
 * rebuilt from st_scan_segments when missing, damaged or inconsistent.
 *
 * Never: store part of a video (its item, vector and segments go in one
 * transaction, after every frame was encoded); decode without the limits;
 * keep more than one decoded frame per decoder.
 */
#define _GNU_SOURCE
#include "engine/eng_internal.h"
#include "common/perr.h"
#include "encoder/pe_image.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEG_FACTORY "Flat"

void eng_video_opts_default(eng_video_opts *o) {
    memset(o, 0, sizeof *o);
    o->frames = 8;
    o->segment_s = 2.0;
    o->segment_frames = 2;
    o->max_frames_decoded = 100000;
    o->max_duration = 4 * 3600.0;
    o->max_seconds = 900.0;
    o->max_side = 0;
}

void eng_video_resolve_opts(const eng_video_opts *in, eng_video_opts *out) {
    if (in) *out = *in;
    else eng_video_opts_default(out);
}

static int check_opts(const eng_video_opts *o) {
    if (o->frames < 1 || o->frames > 256)
        return perr_set(PERR_INVALID, "video frames %d: between 1 and 256", o->frames);
    if (!(o->segment_s == 0 || (o->segment_s >= 0.1 && o->segment_s <= 86400)))
        return perr_set(PERR_INVALID, "segment length %g s: 0 (no segments) or 0.1 to 86400", o->segment_s);
    if (o->segment_frames < 1 || o->segment_frames > 16)
        return perr_set(PERR_INVALID, "segment frames %d: between 1 and 16", o->segment_frames);
    if (o->max_frames_decoded < 1)
        return perr_set(PERR_INVALID, "max frames decoded %d: at least 1", o->max_frames_decoded);
    return PERR_OK;
}

/* ------------------------------------------------------------------ plans */

void eng_vplan_free(eng_vplan *p) {
    if (!p) return;
    for (int i = 0; p->thumbs && i <= p->n_segs; i++) pe_thumb_clear(&p->thumbs[i]);
    free(p->thumbs);
    pe_video_close(p->v);
    free(p->times);
    free(p->data);
    free(p);
}

int eng_vplan_open(eng_db *db, const eng_video_opts *o, const char *path, void *data,
                   size_t len, int own_data, int segments, eng_vplan **out) {
    *out = NULL;
    eng_vplan *p = calloc(1, sizeof *p);
    if (!p) { if (own_data) free(data); return perr_set(PERR_NOMEM, "%s: video plan", path ? path : "video"); }
    if (own_data) p->data = data;
    eng_video_resolve_opts(o, &p->o);
    int rc = check_opts(&p->o);
    if (rc) goto fail;
    rc = eng_model_ready(db);
    if (rc) goto fail;
    pe_video_limits lim;
    pe_video_limits_default(&lim);
    lim.max_frames_decoded = p->o.max_frames_decoded;
    lim.max_duration = p->o.max_duration;
    lim.max_seconds_decoding = p->o.max_seconds;
    lim.threads = 1;
    if (data) rc = pe_video_open_buffer(data, len, path, &lim, &p->v);
    else rc = pe_video_open(path, &lim, &p->v);
    if (rc) goto fail;
    p->info = *pe_video_info_get(p->v);
    if (p->info.truncated) {
        /* Storing what is there would store a video cut short as if whole. */
        rc = perr_set(PERR_FORMAT, "%s: truncated %s video (%s; %.1f s of frames present): not stored",
                      path ? path : "video", p->info.container, p->info.truncated_why, p->info.duration);
        goto fail;
    }
    if (!(p->info.duration > 0)) {
        rc = perr_set(PERR_FORMAT, "%s: zero-length video (no frame time)", path ? path : "video");
        goto fail;
    }
    p->n_frames = p->o.frames;
    p->seg_frames = p->o.segment_frames;
    if (segments && p->o.segment_s > 0) {
        rc = pe_video_segment_times(&p->info, p->o.segment_s, p->seg_frames, NULL, 0, &p->n_segs);
        if (rc) goto fail;
        if (p->n_segs > ST_SEGMENTS_MAX) {
            rc = perr_set(PERR_TOO_LARGE, "%s: %.0f s in %g s segments makes %d segments (at most %d): use longer segments",
                          path ? path : "video", p->info.duration, p->o.segment_s, p->n_segs, ST_SEGMENTS_MAX);
            goto fail;
        }
    }
    p->n_times = p->n_frames + p->n_segs * p->seg_frames;
    if (p->n_times > p->o.max_frames_decoded) {
        rc = perr_set(PERR_TOO_LARGE, "%s: %d frames to sample exceed the cap of %d decoded frames per video",
                      path ? path : "video", p->n_times, p->o.max_frames_decoded);
        goto fail;
    }
    p->times = malloc(sizeof(double) * (size_t)p->n_times);
    if (!p->times) { rc = perr_set(PERR_NOMEM, "%s: sample times", path ? path : "video"); goto fail; }
    rc = pe_video_uniform_times(&p->info, p->n_frames, p->times);
    if (rc == PERR_OK && p->n_segs) {
        int ns = 0;
        rc = pe_video_segment_times(&p->info, p->o.segment_s, p->seg_frames, p->times + p->n_frames,
                                    p->n_times - p->n_frames, &ns);
    }
    if (rc) goto fail;
    *out = p;
    return PERR_OK;
fail:
    eng_vplan_free(p);
    return rc;
}

void eng_vplan_segment(const eng_vplan *p, int i, double *start, double *end) {
    *start = i * p->o.segment_s;
    double e = (i + 1) * p->o.segment_s;
    *end = e < p->info.duration ? e : p->info.duration;
}

void eng_vplan_meta(const eng_vplan *p, eng_video_meta *m) {
    memset(m, 0, sizeof *m);
    m->duration_s = p->info.duration;
    m->fps = p->info.fps;
    m->width = p->info.width;
    m->height = p->info.height;
    snprintf(m->codec, sizeof m->codec, "%s", p->info.codec);
    snprintf(m->container, sizeof m->container, "%s", p->info.container);
    m->n_frames = p->n_times;
    m->n_segments = p->n_segs;
}

typedef struct decode_ctx {
    eng_db *db;
    eng_vplan *p;
    eng_vframe_fn fn;
    void *user;
    const char *label;
} decode_ctx;

/* The thumbnail slot (0: the video, 1 + i: segment i) sample `index` of
 * plan p makes, or -1: the middle uniform frame, and each segment's middle
 * sample. */
static int thumb_slot(const eng_vplan *p, int index) {
    if (index < p->n_frames) return index == p->n_frames / 2 ? 0 : -1;
    int k = index - p->n_frames;
    return k % p->seg_frames == (p->seg_frames - 1) / 2 ? 1 + k / p->seg_frames : -1;
}

/* A thumbnail that fails leaves its slot empty: the video still goes in. */
static void frame_thumb(eng_vplan *p, int index, const uint8_t *rgb, int w, int h, size_t stride) {
    int slot = thumb_slot(p, index);
    if (slot < 0 || slot > p->n_segs) return;
    if (!p->thumbs && !(p->thumbs = calloc((size_t)p->n_segs + 1, sizeof *p->thumbs))) return;
    pe_thumb_clear(&p->thumbs[slot]);
    pe_thumb_opts to;
    pe_thumb_opts_default(&to);
    to.max_side = ENG_THUMB_SIDE;
    if (pe_image_thumbnail_rgb(rgb, w, h, stride, &to, &p->thumbs[slot])) perr_clear();
}

static int on_frame(void *user, int index, double t, const uint8_t *rgb, int w, int h,
                    size_t stride) {
    (void)t;
    decode_ctx *d = user;
    if (d->p->want_thumbs) frame_thumb(d->p, index, rgb, w, h, stride);
    int s = d->db->image_size;
    float *px = malloc(sizeof(float) * 3 * (size_t)s * (size_t)s);
    if (!px) return perr_set(PERR_NOMEM, "%s: frame pixels", d->label);
    int rc = pe_image_preprocess_rgb(rgb, w, h, stride, s, px);
    if (rc) { free(px); return perr_prefix(rc, "%s: frame at %.3f s", d->label, t); }
    return d->fn(d->user, index, px);
}

int eng_vplan_decode(eng_db *db, eng_vplan *p, eng_vframe_fn fn, void *user) {
    decode_ctx d = {db, p, fn, user, "video"};
    return pe_video_sample(p->v, p->times, p->n_times, p->o.max_side, on_frame, &d);
}

void eng_vplan_vectors(eng_db *db, const eng_vplan *p, const float *frame_emb, float *vec,
                       float *seg_vecs) {
    int d = db->dim;
    pe_video_vector(frame_emb, p->n_frames, d, vec);
    for (int i = 0; seg_vecs && i < p->n_segs; i++)
        pe_video_vector(frame_emb + (size_t)(p->n_frames + i * p->seg_frames) * d, p->seg_frames, d,
                        seg_vecs + (size_t)i * d);
}

/* Synchronous encoding: frames gathered in batches of up to 8. */
typedef struct sync_ctx {
    eng_db *db;
    float *px;          /* 8 x 3 x S x S */
    int idx[8], n;
    float *emb;         /* n_times x dim */
    float *out;         /* 8 x dim */
} sync_ctx;

static int sync_flush(sync_ctx *s) {
    if (!s->n) return PERR_OK;
    pe_ctx *c = eng_ctx_get(s->db);
    int rc = pe_encode_pixels(c, s->px, s->n, s->out);
    eng_ctx_put(s->db, c);
    for (int i = 0; rc == PERR_OK && i < s->n; i++)
        memcpy(s->emb + (size_t)s->idx[i] * s->db->dim, s->out + (size_t)i * s->db->dim,
               sizeof(float) * (size_t)s->db->dim);
    s->n = 0;
    return rc;
}

static int sync_frame(void *user, int index, float *pixels) {
    sync_ctx *s = user;
    size_t np = (size_t)3 * s->db->image_size * s->db->image_size;
    memcpy(s->px + np * (size_t)s->n, pixels, sizeof(float) * np);
    free(pixels);
    s->idx[s->n++] = index;
    return s->n == 8 ? sync_flush(s) : PERR_OK;
}

int eng_vplan_encode(eng_db *db, eng_vplan *p, float **frame_emb) {
    *frame_emb = NULL;
    size_t np = (size_t)3 * db->image_size * db->image_size;
    sync_ctx s = {.db = db};
    s.px = malloc(sizeof(float) * np * 8);
    s.out = malloc(sizeof(float) * (size_t)db->dim * 8);
    s.emb = calloc((size_t)p->n_times * (size_t)db->dim, sizeof(float));
    int rc = (s.px && s.out && s.emb) ? PERR_OK : perr_set(PERR_NOMEM, "video frames");
    if (rc == PERR_OK) rc = eng_vplan_decode(db, p, sync_frame, &s);
    if (rc == PERR_OK) rc = sync_flush(&s);
    free(s.px);
    free(s.out);
    if (rc) { free(s.emb); return rc; }
    *frame_emb = s.emb;
    return PERR_OK;
}

/* ------------------------------------------------------------- sniffing */

int eng_is_video_bytes(const void *data, size_t len) {
    pe_media_kind k = pe_media_sniff(data, len);
    return k == PE_MEDIA_VIDEO || k == PE_MEDIA_ANIMATION;
}

int eng_is_video_file(const char *path, int *is_video) {
    *is_video = 0;
    pe_media_kind k = PE_MEDIA_UNKNOWN;
    int rc = pe_media_sniff_file(path, &k);
    if (rc) return rc;
    *is_video = k == PE_MEDIA_VIDEO || k == PE_MEDIA_ANIMATION;
    return PERR_OK;
}

/* ---------------------------------------------------------- media encode */

static int encode_plan(eng_db *db, eng_vplan *p, float *out, eng_video_meta *meta) {
    float *emb = NULL;
    int rc = eng_vplan_encode(db, p, &emb);
    if (rc == PERR_OK) {
        eng_vplan_vectors(db, p, emb, out, NULL);
        if (meta) eng_vplan_meta(p, meta);
    }
    free(emb);
    return rc;
}

int eng_encode_media_file(eng_db *db, const char *path, const eng_video_opts *vopts,
                          float *out, eng_video_meta *meta, int *is_video) {
    if (meta) memset(meta, 0, sizeof *meta);
    if (is_video) *is_video = 0;
    int v = 0;
    if (eng_is_video_file(path, &v) != PERR_OK) { perr_clear(); v = 0; } /* the image path reports it */
    if (!v) return eng_encode_image_file(db, path, out);
    if (is_video) *is_video = 1;
    eng_vplan *p = NULL;
    int rc = eng_vplan_open(db, vopts, path, NULL, 0, 0, 0, &p);
    if (rc == PERR_OK) rc = encode_plan(db, p, out, meta);
    eng_vplan_free(p);
    return rc;
}

int eng_encode_media_buffer(eng_db *db, const void *data, size_t len, const char *label,
                            const eng_video_opts *vopts, float *out, eng_video_meta *meta,
                            int *is_video) {
    if (meta) memset(meta, 0, sizeof *meta);
    if (is_video) *is_video = 0;
    if (!eng_is_video_bytes(data, len)) return eng_encode_image_buffer(db, data, len, out);
    if (is_video) *is_video = 1;
    eng_vplan *p = NULL;
    int rc = eng_vplan_open(db, vopts, label ? label : "<buffer>", (void *)data, len, 0, 0, &p);
    if (rc == PERR_OK) rc = encode_plan(db, p, out, meta);
    eng_vplan_free(p);
    return rc;
}

/* ------------------------------------------------------- segment indexes */

void eng_seg_path(eng_db *db, uint32_t coll, char *out, size_t cap) {
    snprintf(out, cap, "%s/%u.seg.faiss", st_index_dir(db->st), coll);
}

typedef struct seg_build {
    idx *ix;
    float *buf; int64_t *ids; size_t n, cap; int dim;
} seg_build;

static int seg_flush(seg_build *b) {
    if (!b->n) return PERR_OK;
    int rc = idx_add(b->ix, b->buf, b->ids, b->n);
    b->n = 0;
    return rc;
}

static int seg_scan(void *ud, uint64_t item, uint32_t i, const st_segment *seg, int dim) {
    seg_build *b = ud;
    if (dim != b->dim)
        return perr_set(PERR_FORMAT, "item %llu segment %u: dim %d, database dim %d",
                        (unsigned long long)item, i, dim, b->dim);
    memcpy(b->buf + b->n * (size_t)dim, seg->vec, sizeof(float) * (size_t)dim);
    b->ids[b->n++] = (int64_t)ST_SEG_ID(item, i);
    return b->n == b->cap ? seg_flush(b) : 0;
}

static int seg_rebuild(eng_db *db, eng_coll *c, st_txn *txn) {
    idx *ix = NULL;
    int rc = idx_create(SEG_FACTORY, db->dim, NULL, &ix);
    if (rc) return rc;
    seg_build b = {.ix = ix, .cap = 1024, .dim = db->dim};
    b.buf = malloc(sizeof(float) * b.cap * (size_t)db->dim);
    b.ids = malloc(sizeof(int64_t) * b.cap);
    if (!b.buf || !b.ids) rc = perr_set(PERR_NOMEM, "rebuilding segments of %s", c->name);
    if (rc == PERR_OK) rc = st_scan_segments(txn, c->id, 0, seg_scan, &b);
    if (rc == PERR_OK) rc = seg_flush(&b);
    free(b.buf);
    free(b.ids);
    if (rc) { idx_free(ix); return perr_prefix(rc, "collection %s: rebuilding the segment index", c->name); }
    idx_free(c->seg_ix);
    c->seg_ix = ix;
    return PERR_OK;
}

typedef struct seg_replay { eng_coll *c; st_txn *txn; uint64_t n; } seg_replay;

static int seg_change(void *ud, const st_change *ch) {
    seg_replay *r = ud;
    if (!ch->n_segments) return 0;
    int rc = PERR_OK;
    if (ch->op == ST_OP_ADD) {
        st_segment *segs = NULL;
        size_t n = 0;
        rc = st_item_segments(r->txn, ch->item, &segs, &n);
        if (rc == PERR_NOT_FOUND) { perr_clear(); return 0; } /* deleted later */
        for (size_t i = 0; rc == PERR_OK && i < n; i++) {
            int64_t id = (int64_t)ST_SEG_ID(ch->item, i);
            if (!idx_contains(r->c->seg_ix, id)) rc = idx_add(r->c->seg_ix, segs[i].vec, &id, 1);
        }
        free(segs);
    } else {
        for (uint32_t i = 0; rc == PERR_OK && i < ch->n_segments; i++) {
            int64_t id = (int64_t)ST_SEG_ID(ch->item, i);
            rc = idx_remove(r->c->seg_ix, &id, 1, NULL);
        }
    }
    r->n++;
    return rc;
}

int eng_seg_load(eng_db *db, const st_collection *sc, st_txn *txn, eng_coll *c) {
    char path[PATH_MAX];
    eng_seg_path(db, c->id, path, sizeof path);
    uint64_t covered = 0;
    int rc = idx_load(path, NULL, &c->seg_ix, &covered);
    const char *why = NULL;
    char whybuf[512];
    if (rc == PERR_NOT_FOUND) why = "missing";
    else if (rc) { snprintf(whybuf, sizeof whybuf, "%s", perr_msg()); why = whybuf; }
    else if (idx_dim(c->seg_ix) != db->dim) why = "of another dimension";
    else if (covered > sc->seq) why = "newer than the database";
    if (!why) {
        seg_replay r = {c, txn, 0};
        rc = st_changes(txn, c->id, covered, seg_change, &r);
        if (rc == PERR_NOT_FOUND) why = "older than the change log";
        else if (rc) { snprintf(whybuf, sizeof whybuf, "%s", perr_msg()); why = whybuf; }
        else if (idx_count(c->seg_ix) != sc->n_segments) why = "inconsistent with the database";
        else if (r.n && !c->unsaved) c->unsaved = 1;
    }
    if (why) {
        if (strcmp(why, "missing") || sc->n_segments)
            fprintf(stderr, "percept: collection %s: segment index %s is %s; rebuilding it from the database\n",
                    c->name, path, why);
        perr_clear();
        rc = seg_rebuild(db, c, txn);
        if (rc) return rc;
        if (!c->unsaved) c->unsaved = 1;
    }
    return PERR_OK;
}

int eng_seg_save(eng_db *db, eng_coll *c) {
    if (db->read_only || !c->seg_ix) return PERR_OK;
    char path[PATH_MAX];
    eng_seg_path(db, c->id, path, sizeof path);
    int rc = idx_save(c->seg_ix, path, c->index_seq);
    if (rc) return perr_prefix(rc, "collection %s: saving %s", c->name, path);
    return PERR_OK;
}

int eng_seg_added(eng_db *db, uint32_t coll, uint64_t item, const float *vecs, int n) {
    if (n <= 0) return PERR_OK;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)n);
    if (!ids) return perr_set(PERR_NOMEM, "segment ids");
    for (int i = 0; i < n; i++) ids[i] = (int64_t)ST_SEG_ID(item, (uint32_t)i);
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find_id(db, coll);
    int rc = c && c->seg_ix ? idx_add(c->seg_ix, vecs, ids, (size_t)n) : PERR_OK;
    pthread_rwlock_unlock(&db->coll_lock);
    free(ids);
    return rc;
}

int eng_seg_removed(eng_db *db, eng_coll *c, uint64_t item, uint32_t n) {
    (void)db;
    if (!n || !c->seg_ix) return PERR_OK;
    int64_t *ids = malloc(sizeof(int64_t) * n);
    if (!ids) return perr_set(PERR_NOMEM, "segment ids");
    for (uint32_t i = 0; i < n; i++) ids[i] = (int64_t)ST_SEG_ID(item, i);
    int rc = idx_remove(c->seg_ix, ids, n, NULL);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------- moderation */

/* Moves the hits of src into the merged list (best score per item). */
typedef struct merged { eng_hit *v; int n, cap; } merged;

static int merge_hits(merged *m, eng_results *src, double qs, double qe) {
    for (int i = 0; src && i < src->n; i++) {
        eng_hit *h = &src->hits[i];
        int j;
        for (j = 0; j < m->n; j++) if (m->v[j].id == h->id) break;
        if (j < m->n) {
            if (h->score <= m->v[j].score) continue;
            eng_hit old = m->v[j];
            m->v[j] = *h;
            *h = old; /* freed with src */
        } else {
            if (m->n == m->cap) {
                int cap = m->cap ? m->cap * 2 : 16;
                eng_hit *nv = realloc(m->v, sizeof *nv * (size_t)cap);
                if (!nv) return perr_set(PERR_NOMEM, "moderation");
                m->v = nv;
                m->cap = cap;
            }
            m->v[m->n++] = *h;
            memset(h, 0, sizeof *h);
        }
        m->v[j < m->n ? j : m->n - 1].start_s = qs;
        m->v[j < m->n ? j : m->n - 1].end_s = qe;
    }
    return PERR_OK;
}

static int hit_cmp(const void *a, const void *b) {
    const eng_hit *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int eng_moderate_video(eng_db *db, eng_vplan *p, const char *const *sets, int n_sets,
                       float threshold, int k, eng_mod_result **out) {
    *out = NULL;
    float *emb = NULL;
    int rc = eng_vplan_encode(db, p, &emb);
    if (rc) return rc;
    int d = db->dim;
    float *vec = malloc(sizeof(float) * (size_t)d);
    float *segs = malloc(sizeof(float) * (size_t)d * (size_t)(p->n_segs + 1));
    if (!vec || !segs) rc = perr_set(PERR_NOMEM, "moderation");
    else eng_vplan_vectors(db, p, emb, vec, segs);
    free(emb);
    eng_mod_result *res = NULL;
    merged m = {0};
    /* q = -1: the whole-video vector; then each segment. */
    for (int q = -1; rc == PERR_OK && q < p->n_segs; q++) {
        eng_mod_result *r = NULL;
        rc = eng_moderate_vector(db, q < 0 ? vec : segs + (size_t)q * d, sets, n_sets, threshold, k, &r);
        if (rc) break;
        double qs = -1, qe = -1;
        if (q >= 0) eng_vplan_segment(p, q, &qs, &qe);
        if (!res) { res = r; rc = merge_hits(&m, r->nearest, qs, qe); continue; }
        for (int s = 0; s < n_sets; s++) if (r->set_matched[s]) res->set_matched[s] = 1;
        if (r->matched) res->matched = 1;
        rc = merge_hits(&m, r->nearest, qs, qe);
        eng_mod_result_free(r);
    }
    free(vec);
    free(segs);
    if (rc == PERR_OK && res) {
        if (m.n > 1) qsort(m.v, (size_t)m.n, sizeof *m.v, hit_cmp);
        int kk = k > 0 ? k : 5;
        for (int i = kk; i < m.n; i++) {
            free(m.v[i].uri);
            for (int l = 0; l < m.v[i].n_labels; l++) free(m.v[i].labels[l]);
            free(m.v[i].labels);
        }
        if (m.n > kk) m.n = kk;
        eng_results *nr = res->nearest;
        for (int i = 0; i < nr->n; i++) { /* leftovers (moved ones are zeroed) */
            free(nr->hits[i].uri);
            for (int l = 0; l < nr->hits[i].n_labels; l++) free(nr->hits[i].labels[l]);
            free(nr->hits[i].labels);
        }
        free(nr->hits);
        nr->hits = m.v;
        nr->n = m.n;
        m.v = NULL;
    }
    if (m.v) {
        for (int i = 0; i < m.n; i++) {
            free(m.v[i].uri);
            for (int l = 0; l < m.v[i].n_labels; l++) free(m.v[i].labels[l]);
            free(m.v[i].labels);
        }
        free(m.v);
    }
    if (rc) { eng_mod_result_free(res); return rc; }
    *out = res;
    return PERR_OK;
}
