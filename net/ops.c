/* net_ops: request decoding, engine calls and response encoding, one
 * request at a time on a worker thread (ops.h; fields in docs/protocol.md).
 *
 * DESIGN: every field is read through the bounded getters of net/mp.h, so a
 * wrong type or an oversized list is an INVALID / TOO_LARGE error naming the
 * field; strings are copied into a per-request arena freed on return. The
 * engine is called exactly as the embedded CLI calls it, which is what makes
 * results through the server identical to embedded mode.
 */
#define _GNU_SOURCE
#include "net/ops.h"
#include "net/mp.h"
#include "net/proto.h"
#include "common/perr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- packing ------------------------------------------------------------ */

void net_pack_error(msgpack_packer *pk, int code, const char *message) {
    msgpack_pack_map(pk, 3);
    net_mp_pack_key(pk, "code");
    msgpack_pack_int(pk, code);
    net_mp_pack_key(pk, "name");
    net_mp_pack_cstr(pk, perr_name(code));
    net_mp_pack_key(pk, "message");
    net_mp_pack_cstr(pk, message && message[0] ? message : perr_str(code));
}

static void pack_strs(msgpack_packer *pk, char *const *v, int n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) net_mp_pack_cstr(pk, v[i]);
}

/* Optional keys (docs/protocol.md): start_s/end_s on segment hits (and on
 * moderation hits of a video query), width/height when known, the video
 * fields on video items only; image hits keep their original shape. */
void net_pack_hit(msgpack_packer *pk, const eng_hit *h) {
    int seg = h->start_s >= 0, dims = h->width > 0 || h->height > 0, video = !strcmp(h->media, "video");
    msgpack_pack_map(pk, 6 + (seg ? 2 : 0) + (dims ? 2 : 0) + (video ? 3 : 0));
    net_mp_pack_key(pk, "id"); msgpack_pack_uint64(pk, h->id);
    net_mp_pack_key(pk, "score"); msgpack_pack_float(pk, h->score);
    net_mp_pack_key(pk, "collection"); net_mp_pack_cstr(pk, h->collection);
    net_mp_pack_key(pk, "uri"); net_mp_pack_cstr(pk, h->uri ? h->uri : "");
    net_mp_pack_key(pk, "media"); net_mp_pack_cstr(pk, h->media);
    net_mp_pack_key(pk, "labels"); pack_strs(pk, h->labels, h->n_labels);
    if (seg) {
        net_mp_pack_key(pk, "start_s"); msgpack_pack_double(pk, h->start_s);
        net_mp_pack_key(pk, "end_s"); msgpack_pack_double(pk, h->end_s);
    }
    if (dims) {
        net_mp_pack_key(pk, "width"); msgpack_pack_int(pk, h->width);
        net_mp_pack_key(pk, "height"); msgpack_pack_int(pk, h->height);
    }
    if (video) {
        net_mp_pack_key(pk, "duration_s"); msgpack_pack_double(pk, h->duration_s);
        net_mp_pack_key(pk, "fps"); msgpack_pack_double(pk, h->fps);
        net_mp_pack_key(pk, "codec"); net_mp_pack_cstr(pk, h->codec);
    }
}

void net_pack_results(msgpack_packer *pk, const eng_results *r) {
    msgpack_pack_array(pk, (size_t)r->n);
    for (int i = 0; i < r->n; i++) net_pack_hit(pk, &r->hits[i]);
}

/* The item map with `extra` more entries for the caller to pack after it. */
static void pack_item_n(msgpack_packer *pk, const eng_item *it, int extra) {
    int vec = it->vector != NULL, video = !strcmp(it->media, "video");
    msgpack_pack_map(pk, 12 + vec + (video ? 3 : 0) + (size_t)extra);
    net_mp_pack_key(pk, "id"); msgpack_pack_uint64(pk, it->id);
    net_mp_pack_key(pk, "collection"); net_mp_pack_cstr(pk, it->collection);
    net_mp_pack_key(pk, "uri"); net_mp_pack_cstr(pk, it->uri ? it->uri : "");
    net_mp_pack_key(pk, "media"); net_mp_pack_cstr(pk, it->media);
    net_mp_pack_key(pk, "sha256"); net_mp_pack_bin(pk, it->sha256, 32);
    net_mp_pack_key(pk, "size"); msgpack_pack_uint64(pk, it->size);
    net_mp_pack_key(pk, "width"); msgpack_pack_int(pk, it->width);
    net_mp_pack_key(pk, "height"); msgpack_pack_int(pk, it->height);
    net_mp_pack_key(pk, "created_ms"); msgpack_pack_int64(pk, it->created_ms);
    net_mp_pack_key(pk, "duration_s"); msgpack_pack_double(pk, it->duration_s);
    if (video) {
        net_mp_pack_key(pk, "fps"); msgpack_pack_double(pk, it->fps);
        net_mp_pack_key(pk, "codec"); net_mp_pack_cstr(pk, it->codec);
        net_mp_pack_key(pk, "n_segments"); msgpack_pack_uint32(pk, it->n_segments);
    }
    net_mp_pack_key(pk, "labels"); pack_strs(pk, it->labels, it->n_labels);
    net_mp_pack_key(pk, "meta");
    msgpack_pack_map(pk, (size_t)it->n_meta);
    for (int i = 0; i < it->n_meta; i++) {
        net_mp_pack_cstr(pk, it->meta[i].key);
        net_mp_pack_cstr(pk, it->meta[i].value);
    }
    if (vec) { net_mp_pack_key(pk, "vector"); net_mp_pack_bin(pk, it->vector, sizeof(float) * (size_t)it->dim); }
}

void net_pack_item(msgpack_packer *pk, const eng_item *it) { pack_item_n(pk, it, 0); }

static void pack_vector(msgpack_packer *pk, const float *v, int dim) {
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "dim"); msgpack_pack_int(pk, dim);
    net_mp_pack_key(pk, "vector"); net_mp_pack_bin(pk, v, sizeof(float) * (size_t)dim);
}

/* ---- request pieces ----------------------------------------------------- */

/* A vector field: bin of dim little-endian float32, copied (aligned). */
static int get_vector(eng_db *db, const msgpack_object *req, const char *key, net_arena *a, float **out) {
    const void *p = NULL;
    size_t len = 0;
    int rc = net_mp_bin(req, key, &p, &len);
    if (rc || !p) return rc;
    int dim = eng_dim(db);
    if (dim <= 0) return perr_set(PERR_INTERNAL, "model dimension unknown");
    if (len != sizeof(float) * (size_t)dim)
        return perr_set(PERR_INVALID, "field \"%s\": %zu bytes; the model's vectors are %d float32 (%zu bytes)",
                        key, len, dim, sizeof(float) * (size_t)dim);
    float *v = net_arena_alloc(a, len);
    if (!v) return perr_set(PERR_NOMEM, "vector");
    memcpy(v, p, len);
    for (int i = 0; i < dim; i++)
        if (!isfinite(v[i])) return perr_set(PERR_INVALID, "field \"%s\": element %d is not finite", key, i);
    *out = v;
    return PERR_OK;
}

static int get_query(const msgpack_object *req, net_arena *a, eng_query *q) {
    eng_query_default(q);
    int rc = net_mp_int(req, "k", &q->k);
    if (!rc) rc = net_mp_float(req, "min_score", &q->min_score, &q->has_min_score);
    if (!rc) rc = net_mp_strs(req, "collections", a, NET_MAX_LIST, (const char ***)&q->collections, &q->n_collections);
    /* [] would mean "nothing" or "the default": refused rather than guessed. */
    if (!rc && net_mp_get(req, "collections") && q->n_collections == 0)
        rc = perr_set(PERR_INVALID, "field \"collections\": an empty list (omit it for [\"default\"])");
    if (!rc) rc = net_mp_strs(req, "labels", a, NET_MAX_LIST, (const char ***)&q->labels, &q->n_labels);
    net_kv *kv = NULL;
    int n = 0;
    if (!rc) rc = net_mp_kvs(req, "where", a, NET_MAX_LIST, &kv, &n);
    q->where = (const eng_kv *)kv; /* same layout: two const char * */
    q->n_where = n;
    if (!rc) rc = net_mp_bool(req, "include_self", &q->include_self);
    if (!rc) rc = net_mp_bool(req, "segments", &q->segments);
    if (rc) return rc;
    if ((q->k < 1 || q->k > NET_MAX_K) && !(q->has_min_score && q->k == 0))
        return perr_set(PERR_INVALID, "field \"k\": %d, between 1 and %d (0 only with min_score)", q->k, NET_MAX_K);
    return PERR_OK;
}

_Static_assert(sizeof(net_kv) == sizeof(eng_kv), "net_kv and eng_kv share a layout");

/* ---- operations --------------------------------------------------------- */

static int op_search(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    eng_query q;
    int rc = get_query(req, a, &q);
    if (rc) return rc;
    const char *text = NULL, *path = NULL;
    const void *img = NULL;
    size_t img_len = 0;
    float *vec = NULL;
    uint64_t id = 0;
    int has_id = net_mp_get(req, "id") != NULL;
    if (!rc) rc = net_mp_str(req, "text", a, &text);
    if (!rc) rc = net_mp_bin(req, "image", &img, &img_len);
    if (!rc) rc = net_mp_str(req, "path", a, &path);
    if (!rc) rc = get_vector(c->db, req, "vector", a, &vec);
    if (!rc) rc = net_mp_u64(req, "id", &id);
    if (rc) return rc;
    int modes = !!text + !!img + !!path + !!vec + has_id;
    if (modes != 1)
        return perr_set(PERR_INVALID, "SEARCH needs exactly one of text, image, path, vector, id (got %d)", modes);
    eng_results *res = NULL;
    if (text) rc = eng_search_text(c->db, text, &q, &res);
    else if (img) rc = eng_search_image_buffer(c->db, img, img_len, &q, &res);
    else if (path) rc = eng_search_image_file(c->db, path, &q, &res);
    else if (vec) rc = eng_search_vector(c->db, vec, eng_dim(c->db), &q, &res);
    else rc = eng_search_id(c->db, id, &q, &res);
    if (rc) return rc;
    net_pack_search(pk, res);
    eng_results_free(res);
    return PERR_OK;
}

void net_pack_search(msgpack_packer *pk, const eng_results *r) {
    msgpack_pack_map(pk, 1);
    net_mp_pack_key(pk, "hits");
    net_pack_results(pk, r);
}

/* ---- coalescing ---------------------------------------------------------- */

struct net_vsearch {
    msgpack_unpacked u;
    net_arena a;
    eng_query q;
    float *vec;
};

void net_vsearch_free(net_vsearch *v) {
    if (!v) return;
    net_arena_free(&v->a);
    msgpack_unpacked_destroy(&v->u);
    free(v);
}

int net_vsearch_decode(eng_db *db, const uint8_t *payload, size_t len, net_vsearch **out) {
    *out = NULL;
    if (!len) return 0;
    net_vsearch *v = calloc(1, sizeof *v);
    if (!v) return 0;
    msgpack_unpacked_init(&v->u);
    const msgpack_object *req = NULL;
    int ok = net_mp_request(payload, len, &v->u, &req) == PERR_OK &&
             get_query(req, &v->a, &v->q) == PERR_OK &&
             !v->q.segments && /* segment searches go one by one */
             get_vector(db, req, "vector", &v->a, &v->vec) == PERR_OK && v->vec &&
             !net_mp_get(req, "text") && !net_mp_get(req, "image") && !net_mp_get(req, "path") &&
             !net_mp_get(req, "id");
    if (!ok) { perr_clear(); net_vsearch_free(v); return 0; }
    *out = v;
    return 1;
}

static int strs_equal(const char *const *a, int na, const char *const *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return 0;
    return 1;
}

int net_vsearch_same_shape(const net_vsearch *a, const net_vsearch *b) {
    const eng_query *x = &a->q, *y = &b->q;
    if (x->k != y->k || x->has_min_score != y->has_min_score || x->include_self != y->include_self ||
        x->segments != y->segments) return 0;
    if (x->has_min_score && memcmp(&x->min_score, &y->min_score, sizeof(float))) return 0;
    if (!strs_equal(x->collections, x->n_collections, y->collections, y->n_collections)) return 0;
    if (!strs_equal(x->labels, x->n_labels, y->labels, y->n_labels)) return 0;
    if (x->n_where != y->n_where) return 0;
    for (int i = 0; i < x->n_where; i++)
        if (strcmp(x->where[i].key, y->where[i].key) || strcmp(x->where[i].value, y->where[i].value)) return 0;
    return 1;
}

int net_vsearch_batch(eng_db *db, net_vsearch *const *v, int n, eng_results **res) {
    int dim = eng_dim(db);
    float *all = malloc(sizeof(float) * (size_t)dim * (size_t)n);
    if (!all) return perr_set(PERR_NOMEM, "batch of %d searches", n);
    for (int i = 0; i < n; i++) memcpy(all + (size_t)i * dim, v[i]->vec, sizeof(float) * (size_t)dim);
    int rc = eng_search_vectors(db, all, n, dim, &v[0]->q, res);
    free(all);
    return rc;
}

typedef struct ingest_one { int seen; eng_file_result r; char reason[512]; } ingest_one;

static void on_ingest_result(void *user, const eng_file_result *r) {
    ingest_one *o = user;
    if (o->seen++) return;
    o->r = *r;
    o->r.path = NULL;
    snprintf(o->reason, sizeof o->reason, "%s", r->reason ? r->reason : "");
}

static int op_ingest(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.jobs = 1; /* the server's workers are the parallelism */
    const void *data = NULL;
    size_t len = 0;
    const char *path = NULL, *uri = NULL;
    net_kv *meta = NULL;
    int rc = net_mp_bin(req, "data", &data, &len);
    if (!rc) rc = net_mp_str(req, "path", a, &path);
    if (!rc) rc = net_mp_str(req, "uri", a, &uri);
    if (!rc) rc = net_mp_str(req, "collection", a, &o.collection);
    if (!rc) rc = net_mp_strs(req, "labels", a, NET_MAX_LIST, (const char ***)&o.labels, &o.n_labels);
    if (!rc) rc = net_mp_kvs(req, "meta", a, NET_MAX_LIST, &meta, &o.n_meta);
    /* Video sampling per request; the limits stay the server's. */
    eng_video_opts vo;
    eng_video_opts_default(&vo);
    float seg_s = 0;
    int has_seg = 0;
    if (!rc) rc = net_mp_int(req, "frames", &vo.frames);
    if (!rc) rc = net_mp_int(req, "segment_frames", &vo.segment_frames);
    if (!rc) rc = net_mp_float(req, "segment_seconds", &seg_s, &has_seg);
    if (rc) return rc;
    if (has_seg) vo.segment_s = seg_s;
    o.video = &vo;
    o.meta = (const eng_kv *)meta;
    if (!!data == !!path) return perr_set(PERR_INVALID, "INGEST needs exactly one of data, path");
    uint64_t id = 0;
    eng_outcome out = ENG_ADDED;
    if (data && c->ingest_done) { /* group commit: answered by ingest_done */
        eng_upload *up = NULL;
        rc = eng_upload_prepare(c->db, data, len, uri ? uri : "", &o, &up);
        if (rc) return rc;
        eng_upload_commit(c->db, up, c->ingest_done, c->ingest_user);
        return NET_OP_DEFERRED;
    } else if (data) {
        rc = eng_add_buffer(c->db, data, len, uri ? uri : "", &o, &id, &out);
        if (rc) return rc;
    } else {
        ingest_one one = {0};
        o.on_result = on_ingest_result;
        o.user = &one;
        o.recursive = 0;
        eng_progress p;
        rc = eng_ingest_paths(c->db, &path, 1, &o, &p);
        if (rc) return rc;
        if (!one.seen) return perr_set(PERR_NOT_FOUND, "%s: nothing ingested", path);
        if (one.r.outcome == ENG_FAILED)
            return perr_set(one.r.code ? one.r.code : PERR_INTERNAL, "%s", one.reason);
        id = one.r.id;
        out = one.r.outcome;
    }
    net_pack_ingest(pk, id, out);
    return PERR_OK;
}

void net_pack_ingest(msgpack_packer *pk, uint64_t id, eng_outcome outcome) {
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "id"); msgpack_pack_uint64(pk, id);
    net_mp_pack_key(pk, "outcome"); net_mp_pack_cstr(pk, outcome == ENG_PRESENT ? "present" : "added");
}

static int op_get(const net_op_ctx *c, const msgpack_object *req, msgpack_packer *pk) {
    uint64_t id = 0;
    int with_vector = 0, thumb = 0, segment = -1;
    if (!net_mp_get(req, "id")) return perr_set(PERR_INVALID, "GET needs field \"id\"");
    int rc = net_mp_u64(req, "id", &id);
    if (!rc) rc = net_mp_bool(req, "vector", &with_vector);
    if (!rc) rc = net_mp_bool(req, "thumbnail", &thumb);
    if (!rc) rc = net_mp_int(req, "segment", &segment);
    if (rc) return rc;
    eng_item *it = NULL;
    rc = eng_get(c->db, id, with_vector, &it);
    if (rc) return rc;
    eng_thumb th = {0};
    if (thumb) {
        rc = eng_get_thumbnail(c->db, id, segment < 0 ? -1 : segment, &th);
        if (rc == PERR_NOT_FOUND) { perr_clear(); rc = PERR_OK; } /* nil: none to be had */
        if (rc) { eng_item_free(it); return rc; }
    }
    pack_item_n(pk, it, thumb);
    if (thumb) {
        net_mp_pack_key(pk, "thumbnail");
        if (!th.data) {
            msgpack_pack_nil(pk);
        } else {
            msgpack_pack_map(pk, 5);
            net_mp_pack_key(pk, "data"); net_mp_pack_bin(pk, th.data, th.len);
            net_mp_pack_key(pk, "mime"); net_mp_pack_cstr(pk, th.mime);
            net_mp_pack_key(pk, "width"); msgpack_pack_int(pk, th.width);
            net_mp_pack_key(pk, "height"); msgpack_pack_int(pk, th.height);
            net_mp_pack_key(pk, "stored"); msgpack_pack_int(pk, th.stored);
        }
    }
    eng_thumb_clear(&th);
    eng_item_free(it);
    return PERR_OK;
}

static int op_delete(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    uint64_t *ids = NULL;
    int n = 0, removed = 0;
    int rc = net_mp_u64s(req, "ids", a, NET_MAX_IDS, &ids, &n);
    if (rc) return rc;
    if (n == 0) return perr_set(PERR_INVALID, "DELETE needs field \"ids\"");
    rc = eng_remove(c->db, ids, n, &removed);
    if (rc) return rc;
    msgpack_pack_map(pk, 1);
    net_mp_pack_key(pk, "removed"); msgpack_pack_int(pk, removed);
    return PERR_OK;
}

static int op_label(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    uint64_t *ids = NULL;
    int n = 0, remove = 0;
    const char *label = NULL;
    int rc = net_mp_u64s(req, "ids", a, NET_MAX_IDS, &ids, &n);
    if (!rc) rc = net_mp_str(req, "label", a, &label);
    if (!rc) rc = net_mp_bool(req, "remove", &remove);
    if (rc) return rc;
    if (!label || n == 0) return perr_set(PERR_INVALID, "LABEL needs fields \"label\" and \"ids\"");
    rc = remove ? eng_label_remove(c->db, label, ids, n) : eng_label_add(c->db, label, ids, n);
    if (rc) return rc;
    msgpack_pack_map(pk, 0);
    return PERR_OK;
}

static int op_embed(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    const char *text = NULL, *path = NULL;
    const void *img = NULL;
    size_t len = 0;
    int rc = net_mp_str(req, "text", a, &text);
    if (!rc) rc = net_mp_bin(req, "image", &img, &len);
    if (!rc) rc = net_mp_str(req, "path", a, &path);
    if (rc) return rc;
    if (!!text + !!img + !!path != 1) return perr_set(PERR_INVALID, "EMBED needs exactly one of text, image, path");
    int dim = eng_dim(c->db);
    if (dim <= 0) return perr_set(PERR_INTERNAL, "model dimension unknown");
    float *v = net_arena_alloc(a, sizeof(float) * (size_t)dim);
    if (!v) return perr_set(PERR_NOMEM, "vector");
    if (text) rc = eng_encode_text(c->db, text, v);
    else if (img) rc = eng_encode_image_buffer(c->db, img, len, v);
    else rc = eng_encode_image_file(c->db, path, v);
    if (rc) return rc;
    pack_vector(pk, v, dim);
    return PERR_OK;
}

static int op_classify(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    const char *path = NULL, *prompt = NULL;
    const char **labels = NULL;
    const void *img = NULL;
    size_t len = 0;
    int n = 0;
    int rc = net_mp_bin(req, "image", &img, &len);
    if (!rc) rc = net_mp_str(req, "path", a, &path);
    if (!rc) rc = net_mp_str(req, "prompt", a, &prompt);
    if (!rc) rc = net_mp_strs(req, "labels", a, NET_MAX_CLASSES, &labels, &n);
    if (rc) return rc;
    if (!!img + !!path != 1) return perr_set(PERR_INVALID, "CLASSIFY needs exactly one of image, path");
    if (n < 1) return perr_set(PERR_INVALID, "CLASSIFY needs field \"labels\" (at least one)");
    float *probs = net_arena_alloc(a, sizeof(float) * (size_t)n);
    if (!probs) return perr_set(PERR_NOMEM, "probs");
    rc = img ? eng_classify_buffer(c->db, img, len, labels, n, prompt, probs)
             : eng_classify_file(c->db, path, labels, n, prompt, probs);
    if (rc) return rc;
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "labels");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) net_mp_pack_cstr(pk, labels[i]);
    net_mp_pack_key(pk, "probs");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_float(pk, probs[i]);
    return PERR_OK;
}

static int op_moderate(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    const char *path = NULL;
    const char **sets = NULL;
    const void *img = NULL;
    size_t len = 0;
    float *vec = NULL, threshold = NAN;
    int n = 0, k = 0, has_t = 0;
    int rc = net_mp_bin(req, "image", &img, &len);
    if (!rc) rc = net_mp_str(req, "path", a, &path);
    if (!rc) rc = get_vector(c->db, req, "vector", a, &vec);
    if (!rc) rc = net_mp_strs(req, "sets", a, NET_MAX_LIST, &sets, &n);
    if (!rc) rc = net_mp_float(req, "threshold", &threshold, &has_t);
    if (!rc) rc = net_mp_int(req, "k", &k);
    if (rc) return rc;
    if (!!img + !!path + !!vec != 1) return perr_set(PERR_INVALID, "MODERATE needs exactly one of image, path, vector");
    if (k < 0 || k > NET_MAX_K) return perr_set(PERR_INVALID, "field \"k\": %d, between 0 and %d", k, NET_MAX_K);
    eng_mod_result *m = NULL;
    if (img) rc = eng_moderate_buffer(c->db, img, len, sets, n, threshold, k, &m);
    else if (path) rc = eng_moderate_file(c->db, path, sets, n, threshold, k, &m);
    else rc = eng_moderate_vector(c->db, vec, sets, n, threshold, k, &m);
    if (rc) return rc;
    msgpack_pack_map(pk, 3);
    net_mp_pack_key(pk, "matched"); msgpack_pack_int(pk, m->matched ? 1 : 0);
    net_mp_pack_key(pk, "sets");
    msgpack_pack_array(pk, (size_t)m->n_sets);
    for (int i = 0; i < m->n_sets; i++) {
        msgpack_pack_map(pk, 3);
        net_mp_pack_key(pk, "set"); net_mp_pack_cstr(pk, i < n ? sets[i] : "");
        net_mp_pack_key(pk, "threshold"); msgpack_pack_float(pk, m->thresholds[i]);
        net_mp_pack_key(pk, "matched"); msgpack_pack_int(pk, m->set_matched[i] ? 1 : 0);
    }
    net_mp_pack_key(pk, "nearest");
    if (m->nearest) net_pack_results(pk, m->nearest);
    else msgpack_pack_array(pk, 0);
    eng_mod_result_free(m);
    return PERR_OK;
}

static void pack_collection(msgpack_packer *pk, const eng_collection_info *ci) {
    msgpack_pack_map(pk, 8);
    net_mp_pack_key(pk, "name"); net_mp_pack_cstr(pk, ci->name);
    net_mp_pack_key(pk, "factory"); net_mp_pack_cstr(pk, ci->factory);
    net_mp_pack_key(pk, "n_items"); msgpack_pack_uint64(pk, ci->n_items);
    net_mp_pack_key(pk, "n_index"); msgpack_pack_uint64(pk, ci->n_index);
    net_mp_pack_key(pk, "seq"); msgpack_pack_uint64(pk, ci->seq);
    net_mp_pack_key(pk, "index_seq"); msgpack_pack_uint64(pk, ci->index_seq);
    net_mp_pack_key(pk, "threshold");
    if (isnan(ci->threshold)) msgpack_pack_nil(pk); else msgpack_pack_float(pk, ci->threshold);
    net_mp_pack_key(pk, "trained"); msgpack_pack_int(pk, ci->trained ? 1 : 0);
}

static int op_collections(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    const char *action = "list", *name = NULL, *factory = NULL;
    float threshold = NAN;
    int has_t = 0;
    int rc = net_mp_str(req, "action", a, &action);
    if (!rc) rc = net_mp_str(req, "name", a, &name);
    if (!rc) rc = net_mp_str(req, "factory", a, &factory);
    if (!rc) rc = net_mp_float(req, "threshold", &threshold, &has_t);
    if (rc) return rc;
    if (strcmp(action, "list") != 0 && !name)
        return perr_set(PERR_INVALID, "COLLECTIONS %s needs field \"name\"", action);
    if (!strcmp(action, "create")) rc = eng_collection_create(c->db, name, factory);
    else if (!strcmp(action, "drop")) rc = eng_collection_drop(c->db, name);
    else if (!strcmp(action, "threshold")) {
        if (!has_t) return perr_set(PERR_INVALID, "COLLECTIONS threshold needs field \"threshold\"");
        rc = eng_set_threshold(c->db, name, threshold);
    } else if (strcmp(action, "list") != 0)
        return perr_set(PERR_INVALID, "COLLECTIONS: unknown action \"%s\" (list, create, drop, threshold)", action);
    if (rc) return rc;
    eng_collection_info *ci = NULL;
    int n = 0;
    rc = eng_collection_list(c->db, &ci, &n);
    if (rc) return rc;
    msgpack_pack_map(pk, 1);
    net_mp_pack_key(pk, "collections");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) pack_collection(pk, &ci[i]);
    free(ci);
    return PERR_OK;
}

static int op_stats(const net_op_ctx *c, msgpack_packer *pk) {
    eng_stats st;
    eng_info info;
    int rc = eng_get_stats(c->db, &st);
    if (!rc) rc = eng_get_info(c->db, &info);
    if (rc) return rc;
    msgpack_pack_map(pk, 3);
    net_mp_pack_key(pk, "db");
    msgpack_pack_map(pk, 5);
    net_mp_pack_key(pk, "n_items"); msgpack_pack_uint64(pk, st.n_items);
    net_mp_pack_key(pk, "n_collections"); msgpack_pack_int(pk, st.n_collections);
    net_mp_pack_key(pk, "lmdb_bytes"); msgpack_pack_uint64(pk, st.lmdb_bytes);
    net_mp_pack_key(pk, "index_bytes"); msgpack_pack_uint64(pk, st.index_bytes);
    net_mp_pack_key(pk, "map_size"); msgpack_pack_uint64(pk, st.map_size);
    net_mp_pack_key(pk, "model");
    msgpack_pack_map(pk, 7);
    net_mp_pack_key(pk, "name"); net_mp_pack_cstr(pk, info.model_name);
    net_mp_pack_key(pk, "precision"); net_mp_pack_cstr(pk, info.precision);
    net_mp_pack_key(pk, "encoder_isa"); net_mp_pack_cstr(pk, info.encoder_isa);
    net_mp_pack_key(pk, "layout_version"); msgpack_pack_uint32(pk, info.layout_version);
    net_mp_pack_key(pk, "path"); net_mp_pack_cstr(pk, info.model_path);
    net_mp_pack_key(pk, "fingerprint"); msgpack_pack_uint64(pk, info.model_fingerprint);
    net_mp_pack_key(pk, "dim"); msgpack_pack_int(pk, info.dim);
    net_mp_pack_key(pk, "server");
    if (c->pack_server_stats) c->pack_server_stats(c->user, pk);
    else msgpack_pack_nil(pk);
    return PERR_OK;
}

/* EXPORT: one page of items in eng_foreach order. limit + 1 items are
 * visited so that "next" is nil exactly when nothing follows. */
typedef struct export_page {
    msgpack_packer pk;          /* the items, packed apart (count unknown up front) */
    msgpack_sbuffer sb;
    int n, limit;
    size_t max_bytes;
    char *last_coll;
    uint64_t last_id;
    int more;
} export_page;

static int export_item(void *user, const eng_item *it) {
    export_page *p = user;
    if (p->n == p->limit || p->sb.size >= p->max_bytes) { p->more = 1; return 1; }
    char *coll = strdup(it->collection);
    if (!coll) return perr_set(PERR_NOMEM, "EXPORT");
    free(p->last_coll);
    p->last_coll = coll;
    p->last_id = it->id;
    net_pack_item(&p->pk, it);
    p->n++;
    return 0;
}

static int op_export(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    const char *coll = NULL, *after_coll = NULL;
    uint64_t after = 0;
    int limit = 256, vec = 1;
    int rc = net_mp_str(req, "collection", a, &coll);
    if (!rc) rc = net_mp_str(req, "after_collection", a, &after_coll);
    if (!rc) rc = net_mp_u64(req, "after", &after);
    if (!rc) rc = net_mp_int(req, "limit", &limit);
    if (!rc) rc = net_mp_bool(req, "vector", &vec);
    if (rc) return rc;
    if (limit < 1 || limit > NET_MAX_K) return perr_set(PERR_INVALID, "EXPORT: limit %d not in 1..%d", limit, NET_MAX_K);
    if (net_mp_get(req, "after") && !after_coll)
        return perr_set(PERR_INVALID, "EXPORT: \"after\" needs \"after_collection\"");
    export_page p = {.limit = limit, .max_bytes = NET_EXPORT_PAGE_BYTES};
    msgpack_sbuffer_init(&p.sb);
    msgpack_packer_init(&p.pk, &p.sb, msgpack_sbuffer_write);
    rc = eng_foreach_from(c->db, coll, after_coll, after, vec, export_item, &p);
    if (rc == PERR_OK) {
        msgpack_pack_map(pk, 2);
        net_mp_pack_key(pk, "items");
        msgpack_pack_array(pk, (size_t)p.n);
        if (p.sb.size) msgpack_pack_bin_body(pk, p.sb.data, p.sb.size); /* raw: already packed objects */
        net_mp_pack_key(pk, "next");
        if (p.more) {
            msgpack_pack_map(pk, 2);
            net_mp_pack_key(pk, "after_collection"); net_mp_pack_cstr(pk, p.last_coll);
            net_mp_pack_key(pk, "after"); msgpack_pack_uint64(pk, p.last_id);
        } else msgpack_pack_nil(pk);
    }
    free(p.last_coll);
    msgpack_sbuffer_destroy(&p.sb);
    return rc;
}

static int op_dups(const net_op_ctx *c, const msgpack_object *req, net_arena *a, msgpack_packer *pk) {
    static const char *names[] = {"exact", "near", "similar"};
    const char *coll = NULL, *tier_s = "near";
    float thr = 0;
    int has_t = 0;
    int rc = net_mp_str(req, "collection", a, &coll);
    if (!rc) rc = net_mp_str(req, "tier", a, &tier_s);
    if (!rc) rc = net_mp_float(req, "threshold", &thr, &has_t);
    if (rc) return rc;
    int tier = -1;
    for (int i = 0; i < 3; i++) if (!strcmp(tier_s, names[i])) tier = i;
    if (tier < 0) return perr_set(PERR_INVALID, "DUPS: tier \"%s\": exact, near or similar", tier_s);
    if (!(thr >= 0 && thr <= 1)) return perr_set(PERR_INVALID, "DUPS: threshold %g not in [0, 1]", thr);
    eng_dups *d = NULL;
    rc = eng_find_dups(c->db, coll, (eng_dup_tier)tier, thr, &d);
    if (rc) return rc;
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "tier"); net_mp_pack_cstr(pk, names[tier]);
    net_mp_pack_key(pk, "groups");
    msgpack_pack_array(pk, (size_t)d->n);
    for (int g = 0; g < d->n; g++) {
        msgpack_pack_map(pk, 2);
        net_mp_pack_key(pk, "ids");
        msgpack_pack_array(pk, (size_t)d->groups[g].n);
        for (int i = 0; i < d->groups[g].n; i++) msgpack_pack_uint64(pk, d->groups[g].ids[i]);
        net_mp_pack_key(pk, "min_score"); msgpack_pack_float(pk, d->groups[g].min_score);
    }
    eng_dups_free(d);
    return PERR_OK;
}

int net_op_run(const net_op_ctx *c, int op, const uint8_t *payload, size_t len, msgpack_packer *pk) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    net_arena a = {0};
    const msgpack_object *req = NULL;
    int rc = net_mp_request(payload, len, &u, &req);
    if (rc) perr_prefix(rc, "%s", net_op_name(op));
    if (!rc) {
        switch (op) {
        case NET_OP_SEARCH: rc = op_search(c, req, &a, pk); break;
        case NET_OP_INGEST: rc = op_ingest(c, req, &a, pk); break;
        case NET_OP_GET: rc = op_get(c, req, pk); break;
        case NET_OP_DELETE: rc = op_delete(c, req, &a, pk); break;
        case NET_OP_LABEL: rc = op_label(c, req, &a, pk); break;
        case NET_OP_EMBED: rc = op_embed(c, req, &a, pk); break;
        case NET_OP_CLASSIFY: rc = op_classify(c, req, &a, pk); break;
        case NET_OP_MODERATE: rc = op_moderate(c, req, &a, pk); break;
        case NET_OP_COLLECTIONS: rc = op_collections(c, req, &a, pk); break;
        case NET_OP_STATS: rc = op_stats(c, pk); break;
        case NET_OP_EXPORT: rc = op_export(c, req, &a, pk); break;
        case NET_OP_DUPS: rc = op_dups(c, req, &a, pk); break;
        case NET_OP_SNAPSHOT:
            rc = eng_checkpoint(c->db);
            if (!rc) msgpack_pack_map(pk, 0);
            break;
        default: rc = perr_set(PERR_UNSUPPORTED, "opcode 0x%02x is not run on workers", op);
        }
    }
    /* Engine messages go out unchanged, so --server prints what --db does. */
    net_arena_free(&a);
    msgpack_unpacked_destroy(&u);
    return rc;
}
