/* st_item: items with their vectors, segments, hash/label/metadata index
 * entries, the per-collection change log, and scans.
 *
 * DESIGN: an item is written as one group of puts inside the caller's write
 * transaction: record, vector, hash entry, label and metadata index entries,
 * segments, the collection record (seq, counts) and one change record. All
 * input is validated before the first put, so a rejected item leaves the
 * transaction usable; a put that fails afterwards poisons the transaction
 * (st_poison) so the group can never be committed half-written. Readers see
 * all of an item or none of it because LMDB commits atomically. This file
 * never interprets vectors (normalization is the engine's job) beyond
 * refusing non-finite values.
 */
#include "storage/st_internal.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#define VEC_KEY 12   /* coll u32 | item u64 */
#define SEG_KEY 16   /* coll u32 | item u64 | idx u32 */
#define SEG_HDR 16   /* f64 start, f64 end */
#define HASH_KEY (4 + ST_HASH_LEN)
#define CHG_KEY 12   /* coll u32 | seq u64 */
#define CHG_VAL 16   /* u8 op, 3 x 0, u32 n_segments, u64 item */
#define IDX_KEY_MAX 512
/* Alignment: a leaf node is an 8-byte header, the key, then the value, and
 * LMDB packs nodes downwards from the (aligned) page end. With 12-byte
 * vector keys and 16-byte segment keys + 16-byte segment headers every node
 * of these tables is a multiple of 4 bytes long, so the floats in the map
 * are 4-byte aligned (overflow pages are page-aligned): st_item_vector and
 * the scans hand out map pointers, and the copy in st_txn_floats is only a
 * safety net. */

static void vec_key(unsigned char *k, uint32_t coll, uint64_t id) {
    st_be32(k, coll);
    st_be64(k + 4, id);
}
static void seg_key(unsigned char *k, uint32_t coll, uint64_t id, uint32_t idx) {
    vec_key(k, coll, id);
    st_be32(k + 12, idx);
}

static int finite_floats(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* Reads and decodes the record of item id. */
static int item_load(st_txn *txn, uint64_t id, st_item **out) {
    unsigned char k[8];
    st_be64(k, id);
    MDB_val v;
    int rc = st_get(txn, ST_T_ITEMS, k, 8, &v);
    if (rc == PERR_NOT_FOUND)
        return perr_set(PERR_NOT_FOUND, "no item with id %llu", (unsigned long long)id);
    if (rc) return rc;
    return st_item_decode(v.mv_data, v.mv_size, id, out);
}

/* The collection and segment count of item id, reading only the header. */
static int item_head(st_txn *txn, uint64_t id, uint32_t *coll, uint32_t *n_segments) {
    unsigned char k[8];
    st_be64(k, id);
    MDB_val v;
    int rc = st_get(txn, ST_T_ITEMS, k, 8, &v);
    if (rc == PERR_NOT_FOUND)
        return perr_set(PERR_NOT_FOUND, "no item with id %llu", (unsigned long long)id);
    if (rc) return rc;
    const unsigned char *b = v.mv_data;
    if (v.mv_size < ST_ITEM_HDR || b[0] != ST_ITEM_REC_VERSION)
        return perr_set(PERR_FORMAT, "items: key %llu: record of %zu bytes, version %u: "
                        "not a version %d item record", (unsigned long long)id, v.mv_size,
                        v.mv_size ? b[0] : 0, ST_ITEM_REC_VERSION);
    ST_GET(*coll, b + 4);
    if (n_segments) ST_GET(*n_segments, b + 80);
    return PERR_OK;
}

static int change_put(st_txn *txn, st_collection *c, st_op op, uint64_t item,
                      uint32_t n_segments) {
    unsigned char k[CHG_KEY], v[CHG_VAL] = {0};
    c->seq++;
    st_be32(k, c->id);
    st_be64(k + 4, c->seq);
    v[0] = (unsigned char)op;
    ST_PUT(v + 4, n_segments);
    ST_PUT(v + 8, item);
    return st_put(txn, ST_T_CHANGES, k, CHG_KEY, v, CHG_VAL, 0);
}

static int meta_index_put(st_txn *txn, uint32_t coll, const st_kv *kv, uint64_t id, int add) {
    unsigned char k[IDX_KEY_MAX], d[8];
    size_t kl = st_meta_key(k, coll, kv->key, kv->value);
    st_be64(d, id);
    return add ? st_put(txn, ST_T_META, k, kl, d, 8, 0) : st_del(txn, ST_T_META, k, kl, d, 8);
}

static int label_index_put(st_txn *txn, uint32_t coll, const char *label, uint64_t id, int add) {
    unsigned char k[IDX_KEY_MAX], d[8];
    size_t kl = st_label_key(k, coll, label);
    st_be64(d, id);
    return add ? st_put(txn, ST_T_LABELS, k, kl, d, 8, 0) : st_del(txn, ST_T_LABELS, k, kl, d, 8);
}

/* ---------------------------------------------------------------- add */

static int check_item(const st_item *it, int dim, const float *vec, const st_segment *segs,
                      size_t n_segs) {
    if (it->media != ST_MEDIA_IMAGE && it->media != ST_MEDIA_VIDEO)
        return perr_set(PERR_INVALID, "item: media kind %d (image %d or video %d)",
                        (int)it->media, ST_MEDIA_IMAGE, ST_MEDIA_VIDEO);
    size_t un = it->uri ? strlen(it->uri) : 0;
    if (un > ST_URI_MAX)
        return perr_set(PERR_INVALID, "item: uri of %zu bytes (max %d)", un, ST_URI_MAX);
    size_t cn = it->codec ? strlen(it->codec) : 0;
    if (cn > ST_CODEC_MAX)
        return perr_set(PERR_INVALID, "item: codec name of %zu bytes (max %d)", cn, ST_CODEC_MAX);
    for (size_t i = 0; i < cn; i++)
        if ((unsigned char)it->codec[i] < 0x20 || (unsigned char)it->codec[i] > 0x7e)
            return perr_set(PERR_INVALID, "item: codec name byte %zu is not printable ASCII", i);
    if (it->width < 0 || it->height < 0)
        return perr_set(PERR_INVALID, "item: negative size %dx%d", it->width, it->height);
    if (!isfinite(it->duration_s) || it->duration_s < 0 || !isfinite(it->fps) || it->fps < 0)
        return perr_set(PERR_INVALID, "item: duration %g s / fps %g not finite and >= 0",
                        it->duration_s, it->fps);
    if (!vec) return perr_set(PERR_INVALID, "item: NULL vector");
    if (!finite_floats(vec, dim))
        return perr_set(PERR_INVALID, "item: vector holds NaN or infinity");
    if (n_segs) {
        if (it->media != ST_MEDIA_VIDEO)
            return perr_set(PERR_INVALID, "item: %zu segments given for an image", n_segs);
        if (n_segs > ST_SEGMENTS_MAX)
            return perr_set(PERR_INVALID, "item: %zu segments (max %d)", n_segs, ST_SEGMENTS_MAX);
        if (!segs) return perr_set(PERR_INVALID, "item: NULL segment array");
    }
    for (size_t i = 0; i < n_segs; i++) {
        const st_segment *s = &segs[i];
        if (!isfinite(s->start_s) || !isfinite(s->end_s) || s->start_s < 0 ||
            s->end_s < s->start_s)
            return perr_set(PERR_INVALID, "segment %zu: bad interval [%g, %g) s", i,
                            s->start_s, s->end_s);
        if (!s->vec) return perr_set(PERR_INVALID, "segment %zu: NULL vector", i);
        if (!finite_floats(s->vec, dim))
            return perr_set(PERR_INVALID, "segment %zu: vector holds NaN or infinity", i);
    }
    return PERR_OK;
}

int st_item_add(st_txn *txn, uint32_t coll, const st_item *item, const float *vec,
                const st_segment *segs, size_t n_segs, uint64_t *id_out, uint64_t *seq_out) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if (!item) return perr_set(PERR_INVALID, "item: NULL");
    st_collection c;
    if ((rc = st_coll_load(txn, coll, &c))) return rc;
    int dim;
    if ((rc = st_dim(txn, &dim))) return rc;
    if (dim <= 0)
        return perr_set(PERR_INVALID, "no model recorded in the database (st_model_set "
                        "before adding items)");
    if ((rc = check_item(item, dim, vec, segs, n_segs))) return rc;
    const char **labels;
    st_kv *meta;
    size_t nl, nm;
    if ((rc = st_item_normalize(item, &labels, &nl, &meta, &nm))) return rc;

    unsigned char hk[HASH_KEY], vk[SEG_KEY], idb[8];
    st_be32(hk, coll);
    memcpy(hk + 4, item->hash, ST_HASH_LEN);
    MDB_val v;
    rc = st_get(txn, ST_T_HASHES, hk, HASH_KEY, &v);
    if (rc == 0) {
        uint64_t other = v.mv_size == 8 ? st_rbe64(v.mv_data) : 0;
        if (id_out) *id_out = other;
        free(labels); free(meta);
        return perr_set(PERR_EXISTS, "collection \"%s\" already holds these bytes as item %llu",
                        c.name, (unsigned long long)other);
    }
    if (rc != PERR_NOT_FOUND) { free(labels); free(meta); return rc; }

    st_item it = *item;
    it.coll = coll;
    it.labels = labels;
    it.n_labels = nl;
    it.meta = meta;
    it.n_meta = nm;
    it.n_segments = (uint32_t)n_segs;
    if (!it.uri) it.uri = "";
    if (!it.codec) it.codec = "";
    if (it.created_ms == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        it.created_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    /* Encode before the first put: a too-large record is a validation
     * error that leaves the transaction usable. */
    unsigned char *rec;
    size_t rec_len;
    if ((rc = st_item_encode(&it, &rec, &rec_len))) { free(labels); free(meta); return rc; }
    unsigned char *seg_buf = NULL;
    if (n_segs && !(seg_buf = malloc(SEG_HDR + (size_t)dim * 4))) {
        free(labels); free(meta); free(rec);
        return perr_set(PERR_NOMEM, "storage: out of memory");
    }

    /* From here on a failure poisons the transaction. */
    uint64_t id;
    if ((rc = st_counter_next(txn, "next_item", ST_ITEM_ID_MAX, &id))) goto fail;
    it.id = id;
    st_be64(idb, id);
    if ((rc = st_put(txn, ST_T_ITEMS, idb, 8, rec, rec_len, MDB_NOOVERWRITE))) {
        if (rc == PERR_EXISTS)
            rc = perr_set(PERR_FORMAT, "items: key %llu already used although the id counter "
                          "says it is free (database damaged)", (unsigned long long)id);
        goto fail;
    }
    vec_key(vk, coll, id);
    if ((rc = st_put(txn, ST_T_VECTORS, vk, VEC_KEY, vec, (size_t)dim * 4, 0))) goto fail;
    if ((rc = st_put(txn, ST_T_HASHES, hk, HASH_KEY, idb, 8, 0))) goto fail;
    for (size_t i = 0; i < nl; i++)
        if ((rc = label_index_put(txn, coll, labels[i], id, 1))) goto fail;
    for (size_t i = 0; i < nm; i++)
        if ((rc = meta_index_put(txn, coll, &meta[i], id, 1))) goto fail;
    for (size_t i = 0; i < n_segs; i++) {
        seg_key(vk, coll, id, (uint32_t)i);
        ST_PUT(seg_buf, segs[i].start_s);
        ST_PUT(seg_buf + 8, segs[i].end_s);
        memcpy(seg_buf + SEG_HDR, segs[i].vec, (size_t)dim * 4);
        if ((rc = st_put(txn, ST_T_SEGMENTS, vk, SEG_KEY, seg_buf, SEG_HDR + (size_t)dim * 4, 0)))
            goto fail;
    }
    c.n_items++;
    c.n_segments += n_segs;
    if ((rc = change_put(txn, &c, ST_OP_ADD, id, (uint32_t)n_segs))) goto fail;
    if ((rc = st_coll_store(txn, &c))) goto fail;
    free(labels); free(meta); free(rec); free(seg_buf);
    if (id_out) *id_out = id;
    if (seq_out) *seq_out = c.seq;
    return PERR_OK;
fail:
    st_poison(txn, rc);
    free(labels); free(meta); free(rec); free(seg_buf);
    return rc;
}

/* ---------------------------------------------------------- get, delete */

int st_item_get(st_txn *txn, uint64_t id, st_item **out) {
    *out = NULL;
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    return item_load(txn, id, out);
}

int st_item_delete(st_txn *txn, uint64_t id, uint64_t *seq_out) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    st_item *it;
    if ((rc = item_load(txn, id, &it))) return rc;
    st_collection c;
    if ((rc = st_coll_load(txn, it->coll, &c))) {
        st_item_free(it);
        return perr_prefix(rc, "item %llu", (unsigned long long)id);
    }
    unsigned char k[HASH_KEY], idb[8];
    st_be64(idb, id);
    if ((rc = st_del(txn, ST_T_ITEMS, idb, 8, NULL, 0))) goto fail;
    vec_key(k, c.id, id);
    if ((rc = st_del(txn, ST_T_VECTORS, k, VEC_KEY, NULL, 0))) goto fail;
    if ((rc = st_del_prefix(txn, ST_T_SEGMENTS, k, VEC_KEY))) goto fail;
    if ((rc = st_del_prefix(txn, ST_T_THUMBS, k, VEC_KEY))) goto fail;
    st_be32(k, c.id);
    memcpy(k + 4, it->hash, ST_HASH_LEN);
    /* Only if the hash entry is this item's (it always is, unless damaged). */
    MDB_val v;
    rc = st_get(txn, ST_T_HASHES, k, HASH_KEY, &v);
    if (rc == 0 && v.mv_size == 8 && st_rbe64(v.mv_data) == id)
        rc = st_del(txn, ST_T_HASHES, k, HASH_KEY, NULL, 0);
    else if (rc == PERR_NOT_FOUND)
        rc = PERR_OK;
    if (rc) goto fail;
    for (size_t i = 0; i < it->n_labels; i++)
        if ((rc = label_index_put(txn, c.id, it->labels[i], id, 0))) goto fail;
    for (size_t i = 0; i < it->n_meta; i++)
        if ((rc = meta_index_put(txn, c.id, &it->meta[i], id, 0))) goto fail;
    if (c.n_items) c.n_items--;
    c.n_segments = c.n_segments >= it->n_segments ? c.n_segments - it->n_segments : 0;
    if ((rc = change_put(txn, &c, ST_OP_DEL, id, it->n_segments))) goto fail;
    if ((rc = st_coll_store(txn, &c))) goto fail;
    st_item_free(it);
    if (seq_out) *seq_out = c.seq;
    return PERR_OK;
fail:
    st_poison(txn, rc);
    st_item_free(it);
    return rc;
}

int st_item_vector(st_txn *txn, uint64_t id, const float **vec, int *dim) {
    *vec = NULL;
    int rc = st_check_txn(txn, 0), d;
    if (rc) return rc;
    uint32_t coll;
    if ((rc = item_head(txn, id, &coll, NULL))) return rc;
    if ((rc = st_dim(txn, &d))) return rc;
    unsigned char k[VEC_KEY];
    vec_key(k, coll, id);
    MDB_val v;
    rc = st_get(txn, ST_T_VECTORS, k, VEC_KEY, &v);
    if (rc == PERR_NOT_FOUND)
        return perr_set(PERR_FORMAT, "vectors: key %u/%llu missing for an existing item",
                        coll, (unsigned long long)id);
    if (rc) return rc;
    if (v.mv_size != (size_t)d * 4)
        return perr_set(PERR_FORMAT, "vectors: key %u/%llu: %zu bytes, expected %d floats",
                        coll, (unsigned long long)id, v.mv_size, d);
    const float *f = st_txn_floats(txn, v.mv_data, (size_t)d);
    if (!f) return perr_set(PERR_NOMEM, "storage: out of memory");
    *vec = f;
    *dim = d;
    return PERR_OK;
}

/* Decodes one segment value (key already matched). */
static int seg_decode(const MDB_val *k, const MDB_val *v, int dim, st_segment *s,
                      const void **vec_bytes) {
    if (k->mv_size != SEG_KEY || v->mv_size != SEG_HDR + (size_t)dim * 4) {
        uint64_t id = k->mv_size >= 12 ? st_rbe64((unsigned char *)k->mv_data + 4) : 0;
        return perr_set(PERR_FORMAT, "segments: key of item %llu (%zu bytes): value of %zu "
                        "bytes, expected %d", (unsigned long long)id, k->mv_size, v->mv_size,
                        SEG_HDR + dim * 4);
    }
    ST_GET(s->start_s, v->mv_data);
    ST_GET(s->end_s, (unsigned char *)v->mv_data + 8);
    *vec_bytes = (unsigned char *)v->mv_data + SEG_HDR;
    return PERR_OK;
}

int st_item_segments(st_txn *txn, uint64_t id, st_segment **segs, size_t *n) {
    *segs = NULL;
    *n = 0;
    int rc = st_check_txn(txn, 0), dim;
    if (rc) return rc;
    uint32_t coll, ns;
    if ((rc = item_head(txn, id, &coll, &ns))) return rc;
    if ((rc = st_dim(txn, &dim))) return rc;
    if (ns == 0) return PERR_OK;
    if (ns > ST_SEGMENTS_MAX)
        return perr_set(PERR_FORMAT, "items: key %llu: %u segments (max %d)",
                        (unsigned long long)id, ns, ST_SEGMENTS_MAX);
    st_segment *out = calloc(ns, sizeof *out);
    if (!out) return perr_set(PERR_NOMEM, "storage: out of memory");
    unsigned char p[VEC_KEY];
    vec_key(p, coll, id);
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn->t, txn->db->dbi[ST_T_SEGMENTS], &c))) {
        free(out);
        return st_mdb_fail(txn, rc, ST_T_SEGMENTS, "cursor");
    }
    MDB_val k = {VEC_KEY, p}, v;
    size_t cnt = 0;
    int code = PERR_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size >= VEC_KEY && !memcmp(k.mv_data, p, VEC_KEY);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const void *vb;
        if (cnt >= ns || (code = seg_decode(&k, &v, dim, &out[cnt], &vb))) {
            if (!code)
                code = perr_set(PERR_FORMAT, "segments: item %llu has more segments than the "
                                "%u its record says", (unsigned long long)id, ns);
            break;
        }
        uint32_t idx = st_rbe32((unsigned char *)k.mv_data + 12);
        if (idx != cnt) {
            code = perr_set(PERR_FORMAT, "segments: item %llu: segment %u where %zu expected",
                            (unsigned long long)id, (unsigned)idx, cnt);
            break;
        }
        if (!(out[cnt].vec = st_txn_floats(txn, vb, (size_t)dim))) {
            code = perr_set(PERR_NOMEM, "storage: out of memory");
            break;
        }
        cnt++;
    }
    mdb_cursor_close(c);
    if (!code && rc && rc != MDB_NOTFOUND) code = st_mdb_fail(txn, rc, ST_T_SEGMENTS, "scan");
    if (!code && cnt != ns)
        code = perr_set(PERR_FORMAT, "segments: item %llu has %zu segments, its record says %u",
                        (unsigned long long)id, cnt, ns);
    if (code) { free(out); return code; }
    *segs = out;
    *n = cnt;
    return PERR_OK;
}

int st_hash_lookup(st_txn *txn, uint32_t coll, const uint8_t hash[ST_HASH_LEN], uint64_t *id_out) {
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    unsigned char k[HASH_KEY];
    st_be32(k, coll);
    memcpy(k + 4, hash, ST_HASH_LEN);
    MDB_val v;
    rc = st_get(txn, ST_T_HASHES, k, HASH_KEY, &v);
    if (rc == PERR_NOT_FOUND)
        return perr_set(PERR_NOT_FOUND, "no item with this content hash in collection %u", coll);
    if (rc) return rc;
    if (v.mv_size != 8)
        return perr_set(PERR_FORMAT, "hashes: collection %u: value of %zu bytes, expected 8",
                        coll, v.mv_size);
    *id_out = st_rbe64(v.mv_data);
    return PERR_OK;
}

/* ------------------------------------------------------ labels, metadata */

static int label_change(st_txn *txn, uint64_t id, const char *label, int add) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if ((rc = st_check_label(label))) return rc;
    st_item *it;
    if ((rc = item_load(txn, id, &it))) return rc;
    size_t pos = 0;
    int found = 0;
    while (pos < it->n_labels) {
        int c = strcmp(it->labels[pos], label);
        if (c == 0) { found = 1; break; }
        if (c > 0) break;
        pos++;
    }
    if (found == add) { st_item_free(it); return PERR_OK; }
    if (add && it->n_labels >= ST_LABELS_MAX) {
        st_item_free(it);
        return perr_set(PERR_INVALID, "item %llu already has %d labels (max)",
                        (unsigned long long)id, ST_LABELS_MAX);
    }
    const char **l = malloc((it->n_labels + 1) * sizeof *l);
    if (!l) { st_item_free(it); return perr_set(PERR_NOMEM, "storage: out of memory"); }
    size_t n = 0;
    for (size_t i = 0; i < it->n_labels; i++) {
        if (i == pos && add) l[n++] = label;
        if (i == pos && !add) continue;
        l[n++] = it->labels[i];
    }
    if (add && pos == it->n_labels) l[n++] = label;
    st_item upd = *it;
    upd.labels = l;
    upd.n_labels = n;
    unsigned char *rec, k8[8];
    size_t len;
    if ((rc = st_item_encode(&upd, &rec, &len)) == 0) { /* too large: txn still usable */
        st_be64(k8, id);
        rc = st_put(txn, ST_T_ITEMS, k8, 8, rec, len, 0);
        free(rec);
        if (!rc) rc = label_index_put(txn, it->coll, label, id, add);
        if (rc) st_poison(txn, rc);
    }
    free(l);
    st_item_free(it);
    return rc;
}

int st_label_add(st_txn *txn, uint64_t id, const char *label) {
    return label_change(txn, id, label, 1);
}
int st_label_remove(st_txn *txn, uint64_t id, const char *label) {
    return label_change(txn, id, label, 0);
}

/* Collects the ids stored as duplicates of key; filter (may be NULL)
 * decides which ones to keep. */
static int dup_ids(st_txn *txn, int table, const unsigned char *key, size_t klen,
                   int (*filter)(st_txn *, uint64_t, void *), void *fud,
                   uint64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn->t, txn->db->dbi[table], &c);
    if (rc) return st_mdb_fail(txn, rc, table, "cursor");
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND) { mdb_cursor_close(c); return PERR_OK; }
    size_t cnt = 0;
    if (rc == 0) rc = mdb_cursor_count(c, &cnt);
    if (rc) { mdb_cursor_close(c); return st_mdb_fail(txn, rc, table, "count"); }
    uint64_t *out = malloc(cnt * sizeof *out);
    if (!out) { mdb_cursor_close(c); return perr_set(PERR_NOMEM, "storage: out of memory"); }
    size_t m = 0;
    int code = PERR_OK;
    for (; rc == 0 && m < cnt; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
        if (v.mv_size != 8) {
            code = perr_set(PERR_FORMAT, "%s: duplicate of %zu bytes, expected an 8-byte id",
                            st_table_names[table], v.mv_size);
            break;
        }
        uint64_t id = st_rbe64(v.mv_data);
        int keep = 1;
        if (filter && (keep = filter(txn, id, fud)) < 0) { code = keep; break; }
        if (keep) out[m++] = id;
    }
    mdb_cursor_close(c);
    if (!code && rc && rc != MDB_NOTFOUND) code = st_mdb_fail(txn, rc, table, "scan");
    if (code || m == 0) { free(out); return code; }
    *ids = out;
    *n = m;
    return PERR_OK;
}

int st_label_ids(st_txn *txn, uint32_t coll, const char *label, uint64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    if ((rc = st_check_label(label))) return rc;
    unsigned char k[IDX_KEY_MAX];
    size_t kl = st_label_key(k, coll, label);
    return dup_ids(txn, ST_T_LABELS, k, kl, NULL, NULL, ids, n);
}

/* Long values are indexed by prefix + digest: confirm against the record. */
static int meta_filter(st_txn *txn, uint64_t id, void *ud) {
    const st_kv *want = ud;
    st_item *it;
    int rc = item_load(txn, id, &it);
    if (rc) return rc;
    int keep = 0;
    for (size_t i = 0; i < it->n_meta; i++)
        if (!strcmp(it->meta[i].key, want->key)) {
            keep = !strcmp(it->meta[i].value, want->value);
            break;
        }
    st_item_free(it);
    return keep;
}

int st_meta_ids(st_txn *txn, uint32_t coll, const char *key, const char *value,
                uint64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    if ((rc = st_check_meta(key, value))) return rc;
    unsigned char k[IDX_KEY_MAX];
    size_t kl = st_meta_key(k, coll, key, value);
    st_kv want = {key, value};
    int long_form = strlen(value) > ST_META_SHORT_MAX;
    return dup_ids(txn, ST_T_META, k, kl, long_form ? meta_filter : NULL, &want, ids, n);
}

int st_meta_set(st_txn *txn, uint64_t id, const char *key, const char *value) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if ((rc = st_check_meta(key, value ? value : ""))) return rc;
    st_item *it;
    if ((rc = item_load(txn, id, &it))) return rc;
    size_t pos = 0;
    int found = 0;
    while (pos < it->n_meta) {
        int c = strcmp(it->meta[pos].key, key);
        if (c == 0) { found = 1; break; }
        if (c > 0) break;
        pos++;
    }
    if (!value && !found) { st_item_free(it); return PERR_OK; }
    if (value && found && !strcmp(it->meta[pos].value, value)) { st_item_free(it); return PERR_OK; }
    if (value && !found && it->n_meta >= ST_META_MAX) {
        st_item_free(it);
        return perr_set(PERR_INVALID, "item %llu already has %d metadata entries (max)",
                        (unsigned long long)id, ST_META_MAX);
    }
    st_kv *m = malloc((it->n_meta + 1) * sizeof *m);
    if (!m) { st_item_free(it); return perr_set(PERR_NOMEM, "storage: out of memory"); }
    size_t n = 0;
    st_kv nkv = {key, value};
    for (size_t i = 0; i < it->n_meta; i++) {
        if (i == pos && !found && value) m[n++] = nkv;
        if (i == pos && found) { if (value) m[n++] = nkv; continue; }
        m[n++] = it->meta[i];
    }
    if (pos == it->n_meta && value) m[n++] = nkv;
    st_item upd = *it;
    upd.meta = m;
    upd.n_meta = n;
    unsigned char *rec;
    size_t len;
    if ((rc = st_item_encode(&upd, &rec, &len))) goto out; /* too large: txn still usable */
    unsigned char k8[8];
    st_be64(k8, id);
    rc = st_put(txn, ST_T_ITEMS, k8, 8, rec, len, 0);
    free(rec);
    if (!rc && found) rc = meta_index_put(txn, it->coll, &it->meta[pos], id, 0);
    if (!rc && value) rc = meta_index_put(txn, it->coll, &nkv, id, 1);
    if (rc) st_poison(txn, rc);
out:
    free(m);
    st_item_free(it);
    return rc;
}

/* ---------------------------------------------------------- change log */

static int cb_result(int r) { return r > 0 ? PERR_OK : r; }

int st_changes(st_txn *txn, uint32_t coll, uint64_t after_seq, st_change_fn fn, void *ud) {
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    st_collection c;
    if ((rc = st_coll_load(txn, coll, &c))) return rc;
    if (after_seq < c.log_start)
        return perr_set(PERR_NOT_FOUND, "collection \"%s\": changes up to seq %llu were trimmed, "
                        "cannot replay from seq %llu (rebuild the index)", c.name,
                        (unsigned long long)c.log_start, (unsigned long long)after_seq);
    if (after_seq >= c.seq) return PERR_OK;
    unsigned char p[CHG_KEY];
    st_be32(p, coll);
    st_be64(p + 4, after_seq + 1);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn->t, txn->db->dbi[ST_T_CHANGES], &cur)))
        return st_mdb_fail(txn, rc, ST_T_CHANGES, "cursor");
    MDB_val k = {CHG_KEY, p}, v;
    int code = PERR_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size == CHG_KEY && !memcmp(k.mv_data, p, 4);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        st_change ch;
        ch.seq = st_rbe64((unsigned char *)k.mv_data + 4);
        const unsigned char *b = v.mv_data;
        if (v.mv_size != CHG_VAL || (b[0] != ST_OP_ADD && b[0] != ST_OP_DEL)) {
            code = perr_set(PERR_FORMAT, "changes: key %u/%llu: bad record (%zu bytes, op %u)",
                            coll, (unsigned long long)ch.seq, v.mv_size, v.mv_size ? b[0] : 0);
            break;
        }
        ch.op = (st_op)b[0];
        ST_GET(ch.n_segments, b + 4);
        ST_GET(ch.item, b + 8);
        int r = fn(ud, &ch);
        if (r) { code = cb_result(r); rc = 0; break; }
    }
    mdb_cursor_close(cur);
    if (!code && rc && rc != MDB_NOTFOUND) code = st_mdb_fail(txn, rc, ST_T_CHANGES, "scan");
    return code;
}

int st_changes_trim(st_txn *txn, uint32_t coll, uint64_t upto) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    st_collection c;
    if ((rc = st_coll_load(txn, coll, &c))) return rc;
    if (upto > c.seq) upto = c.seq;
    if (upto <= c.log_start) return PERR_OK;
    unsigned char p[CHG_KEY];
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn->t, txn->db->dbi[ST_T_CHANGES], &cur)))
        return st_mdb_fail(txn, rc, ST_T_CHANGES, "cursor");
    for (;;) {
        st_be32(p, coll);
        st_be64(p + 4, 0);
        MDB_val k = {CHG_KEY, p}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size != CHG_KEY || memcmp(k.mv_data, p, 4) ||
            st_rbe64((unsigned char *)k.mv_data + 4) > upto)
            break;
        if ((rc = mdb_cursor_del(cur, 0))) break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) return st_mdb_fail(txn, rc, ST_T_CHANGES, "trim");
    c.log_start = upto;
    if ((rc = st_coll_store(txn, &c))) st_poison(txn, rc);
    return rc;
}

/* -------------------------------------------------------------- scans */

/* Positions a cursor on the first key of coll with item id > after_id in a
 * table keyed coll | item ... ; returns the MDB code. */
static int scan_start(MDB_cursor *c, unsigned char *p, uint32_t coll, uint64_t after_id,
                      MDB_val *k, MDB_val *v) {
    st_be32(p, coll);
    st_be64(p + 4, after_id + 1);
    k->mv_size = VEC_KEY;
    k->mv_data = p;
    return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
}

/* One row of a scan: decodes it and calls the caller's callback. Returns 0
 * to go on, > 0 when the callback asked to stop, else a perr code
 * (PERR_FORMAT naming the key, or the callback's error). */
typedef int (*scan_row_fn)(void *ctx, uint32_t coll, const MDB_val *k, const MDB_val *v, int dim,
                           float *scratch);

/* Walks the rows of coll with item id > after_id in a table keyed
 * coll | item ..., in key order. */
static int scan_table(st_txn *txn, int table, uint32_t coll, uint64_t after_id, scan_row_fn row, void *ctx) {
    int rc = st_check_txn(txn, 0), dim;
    if (rc) return rc;
    if ((rc = st_dim(txn, &dim))) return rc;
    if (after_id >= ST_ITEM_ID_MAX) return PERR_OK;
    /* LMDB values are not aligned: a misaligned vector is copied here */
    float *scratch = malloc((size_t)(dim > 0 ? dim : 1) * sizeof(float));
    if (!scratch) return perr_set(PERR_NOMEM, "storage: out of memory");
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn->t, txn->db->dbi[table], &c))) {
        free(scratch);
        return st_mdb_fail(txn, rc, table, "cursor");
    }
    unsigned char p[VEC_KEY];
    MDB_val k, v;
    int code = PERR_OK;
    for (rc = scan_start(c, p, coll, after_id, &k, &v);
         rc == 0 && k.mv_size >= 4 && !memcmp(k.mv_data, p, 4);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if ((code = row(ctx, coll, &k, &v, dim, scratch))) { rc = 0; break; }
    if (code > 0) code = PERR_OK;
    mdb_cursor_close(c);
    free(scratch);
    if (!code && rc && rc != MDB_NOTFOUND) code = st_mdb_fail(txn, rc, table, "scan");
    return code;
}

typedef struct vec_scan { st_vec_fn fn; void *ud; } vec_scan;

static int vec_row(void *ctx, uint32_t coll, const MDB_val *k, const MDB_val *v, int dim, float *scratch) {
    vec_scan *vs = ctx;
    uint64_t id = k->mv_size == VEC_KEY ? st_rbe64((unsigned char *)k->mv_data + 4) : 0;
    if (k->mv_size != VEC_KEY || v->mv_size != (size_t)dim * 4)
        return perr_set(PERR_FORMAT, "vectors: key %u/%llu (%zu bytes): value of %zu bytes, expected %d floats",
                        coll, (unsigned long long)id, k->mv_size, v->mv_size, dim);
    const float *f = v->mv_data;
    if ((uintptr_t)f & 3) { memcpy(scratch, f, (size_t)dim * 4); f = scratch; }
    int r = vs->fn(vs->ud, id, f, dim);
    return r > 0 ? 1 : r;
}

int st_scan_vectors(st_txn *txn, uint32_t coll, uint64_t after_id, st_vec_fn fn, void *ud) {
    vec_scan vs = {fn, ud};
    return scan_table(txn, ST_T_VECTORS, coll, after_id, vec_row, &vs);
}

typedef struct seg_scan { st_seg_fn fn; void *ud; } seg_scan;

static int seg_row(void *ctx, uint32_t coll, const MDB_val *k, const MDB_val *v, int dim, float *scratch) {
    (void)coll;
    seg_scan *ss = ctx;
    st_segment s;
    const void *vb;
    int code = seg_decode(k, v, dim, &s, &vb);
    if (code) return code;
    const unsigned char *kb = k->mv_data;
    uint64_t item = st_rbe64(kb + 4);
    uint32_t idx = st_rbe32(kb + 12);
    if ((uintptr_t)vb & 3) { memcpy(scratch, vb, (size_t)dim * 4); s.vec = scratch; }
    else s.vec = vb;
    int r = ss->fn(ss->ud, item, idx, &s, dim);
    return r > 0 ? 1 : r;
}

int st_scan_segments(st_txn *txn, uint32_t coll, uint64_t after_id, st_seg_fn fn, void *ud) {
    seg_scan ss = {fn, ud};
    return scan_table(txn, ST_T_SEGMENTS, coll, after_id, seg_row, &ss);
}

typedef struct item_scan { st_txn *txn; st_item_fn fn; void *ud; } item_scan;

static int item_row(void *ctx, uint32_t coll, const MDB_val *k, const MDB_val *v, int dim, float *scratch) {
    (void)v, (void)dim, (void)scratch;
    item_scan *is = ctx;
    if (k->mv_size != VEC_KEY)
        return perr_set(PERR_FORMAT, "vectors: key of %zu bytes in collection %u, expected %d", k->mv_size, coll, VEC_KEY);
    uint64_t id = st_rbe64((unsigned char *)k->mv_data + 4);
    st_item *it;
    int code = item_load(is->txn, id, &it);
    if (code == PERR_NOT_FOUND)
        return perr_set(PERR_FORMAT, "vectors: key %u/%llu has no item record", coll, (unsigned long long)id);
    if (code) return code;
    int r = is->fn(is->ud, it);
    st_item_free(it);
    return r > 0 ? 1 : r;
}

int st_scan_items(st_txn *txn, uint32_t coll, uint64_t after_id, st_item_fn fn, void *ud) {
    /* The collection's ids, in order, are the keys of its vectors. */
    item_scan is = {txn, fn, ud};
    return scan_table(txn, ST_T_VECTORS, coll, after_id, item_row, &is);
}

/* ------------------------------------------------------------ thumbnails */

/* Value: u8 format, u8 0, u16 width, u16 height, u16 0, then the bytes.
 * Key: coll u32 | item u64 | slot u32 (like segments). */
#define THUMB_HDR 8

int st_thumb_put(st_txn *txn, uint64_t id, uint32_t slot, const st_thumb *t) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if (t->format < 1 || t->format > 255 || t->width < 1 || t->width > 65535 ||
        t->height < 1 || t->height > 65535 || !t->data || t->len < 1 || t->len > ST_THUMB_MAX)
        return perr_set(PERR_INVALID, "item %llu thumbnail %u: format %d, %dx%d, %zu bytes "
                        "(format 1..255, sides 1..65535, 1..%u bytes)", (unsigned long long)id,
                        slot, t->format, t->width, t->height, t->len, ST_THUMB_MAX);
    uint32_t coll, nseg;
    if ((rc = item_head(txn, id, &coll, &nseg))) return rc;
    if (slot > nseg)
        return perr_set(PERR_INVALID, "item %llu: thumbnail slot %u, the item has %u segments",
                        (unsigned long long)id, slot, nseg);
    unsigned char k[SEG_KEY];
    seg_key(k, coll, id, slot);
    unsigned char *v = malloc(THUMB_HDR + t->len);
    if (!v) return perr_set(PERR_NOMEM, "item %llu: thumbnail of %zu bytes", (unsigned long long)id, t->len);
    uint16_t w = (uint16_t)t->width, h = (uint16_t)t->height, z = 0;
    v[0] = (unsigned char)t->format;
    v[1] = 0;
    ST_PUT(v + 2, w);
    ST_PUT(v + 4, h);
    ST_PUT(v + 6, z);
    memcpy(v + THUMB_HDR, t->data, t->len);
    rc = st_put(txn, ST_T_THUMBS, k, SEG_KEY, v, THUMB_HDR + t->len, 0);
    free(v);
    return rc;
}

int st_thumb_get(st_txn *txn, uint64_t id, uint32_t slot, st_thumb *out) {
    memset(out, 0, sizeof *out);
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    uint32_t coll;
    if ((rc = item_head(txn, id, &coll, NULL))) return rc;
    if (!txn->db->has_thumbs)
        return perr_set(PERR_NOT_FOUND, "item %llu: no thumbnail (layout 1 database)",
                        (unsigned long long)id);
    unsigned char k[SEG_KEY];
    seg_key(k, coll, id, slot);
    MDB_val v;
    rc = st_get(txn, ST_T_THUMBS, k, SEG_KEY, &v);
    if (rc == PERR_NOT_FOUND)
        return perr_set(PERR_NOT_FOUND, "item %llu: no thumbnail %u stored", (unsigned long long)id, slot);
    if (rc) return rc;
    const unsigned char *b = v.mv_data;
    uint16_t w = 0, h = 0;
    if (v.mv_size > THUMB_HDR) {
        ST_GET(w, b + 2);
        ST_GET(h, b + 4);
    }
    if (v.mv_size <= THUMB_HDR || b[0] == 0 || w == 0 || h == 0)
        return perr_set(PERR_FORMAT, "thumbs: key %u/%llu/%u: %zu-byte value is not a thumbnail",
                        coll, (unsigned long long)id, slot, v.mv_size);
    out->format = b[0];
    out->width = w;
    out->height = h;
    out->data = b + THUMB_HDR;
    out->len = v.mv_size - THUMB_HDR;
    return PERR_OK;
}
