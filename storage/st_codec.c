/* st_codec: the binary records of storage (collections, items) and the
 * validation of user strings (labels, metadata).
 *
 * DESIGN: records are versioned (first byte) and decoded with every length
 * checked against the bytes that remain; a record that does not fit gives
 * PERR_FORMAT naming the key and the byte offset, never a crash or an
 * allocation sized by unchecked input. Layouts: docs/storage.md. This file
 * never touches LMDB.
 */
#include "storage/st_internal.h"

#include <math.h>
#include <stdlib.h>

/* --------------------------------------------------------- validation */

int st_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int st_check_label(const char *label) {
    if (!label) return perr_set(PERR_INVALID, "label: NULL");
    size_t n = strlen(label);
    if (n == 0) return perr_set(PERR_INVALID, "label: empty");
    if (n > ST_LABEL_MAX)
        return perr_set(PERR_INVALID, "label of %zu bytes (max %d)", n, ST_LABEL_MAX);
    if (!st_utf8_valid((const unsigned char *)label, n))
        return perr_set(PERR_INVALID, "label: not valid UTF-8");
    return PERR_OK;
}

int st_check_meta(const char *key, const char *value) {
    if (!key) return perr_set(PERR_INVALID, "metadata: NULL key");
    size_t n = strlen(key);
    if (n == 0) return perr_set(PERR_INVALID, "metadata: empty key");
    if (n > ST_META_KEY_MAX)
        return perr_set(PERR_INVALID, "metadata key of %zu bytes (max %d)", n, ST_META_KEY_MAX);
    if (!st_utf8_valid((const unsigned char *)key, n))
        return perr_set(PERR_INVALID, "metadata key: not valid UTF-8");
    if (!value) return perr_set(PERR_INVALID, "metadata \"%s\": NULL value", key);
    size_t vn = strlen(value);
    if (vn > ST_META_VAL_MAX)
        return perr_set(PERR_INVALID, "metadata \"%s\": value of %zu bytes (max %d)", key, vn,
                        ST_META_VAL_MAX);
    if (!st_utf8_valid((const unsigned char *)value, vn))
        return perr_set(PERR_INVALID, "metadata \"%s\": value not valid UTF-8", key);
    return PERR_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const st_kv *)a)->key, ((const st_kv *)b)->key);
}

int st_item_normalize(const st_item *it, const char ***labels, size_t *n_labels,
                      st_kv **meta, size_t *n_meta) {
    *labels = NULL; *meta = NULL; *n_labels = *n_meta = 0;
    if (it->n_labels > ST_LABELS_MAX)
        return perr_set(PERR_INVALID, "%zu labels (max %d)", it->n_labels, ST_LABELS_MAX);
    if (it->n_meta > ST_META_MAX)
        return perr_set(PERR_INVALID, "%zu metadata entries (max %d)", it->n_meta, ST_META_MAX);
    if ((it->n_labels && !it->labels) || (it->n_meta && !it->meta))
        return perr_set(PERR_INVALID, "item: NULL labels or metadata array with a count");
    int rc;
    for (size_t i = 0; i < it->n_labels; i++)
        if ((rc = st_check_label(it->labels[i]))) return perr_prefix(rc, "label %zu", i);
    for (size_t i = 0; i < it->n_meta; i++)
        if ((rc = st_check_meta(it->meta[i].key, it->meta[i].value)))
            return perr_prefix(rc, "metadata entry %zu", i);
    const char **l = malloc((it->n_labels + 1) * sizeof *l);
    st_kv *m = malloc((it->n_meta + 1) * sizeof *m);
    if (!l || !m) { free(l); free(m); return perr_set(PERR_NOMEM, "storage: out of memory"); }
    if (it->n_labels) memcpy(l, it->labels, it->n_labels * sizeof *l);
    if (it->n_meta) memcpy(m, it->meta, it->n_meta * sizeof *m);
    qsort(l, it->n_labels, sizeof *l, cmp_str);
    qsort(m, it->n_meta, sizeof *m, cmp_kv);
    size_t nl = 0;
    for (size_t i = 0; i < it->n_labels; i++)
        if (nl == 0 || strcmp(l[nl - 1], l[i])) l[nl++] = l[i];
    for (size_t i = 1; i < it->n_meta; i++)
        if (!strcmp(m[i - 1].key, m[i].key)) {
            rc = perr_set(PERR_INVALID, "metadata key \"%s\" given twice", m[i].key);
            free(l); free(m);
            return rc;
        }
    *labels = l; *n_labels = nl;
    *meta = m; *n_meta = it->n_meta;
    return PERR_OK;
}

/* -------------------------------------------------------- index keys */

size_t st_label_key(unsigned char *buf, uint32_t coll, const char *label) {
    size_t n = strlen(label);
    st_be32(buf, coll);
    memcpy(buf + 4, label, n);
    return 4 + n;
}

static uint64_t fnv1a64(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= UINT64_C(0x100000001b3); }
    return h;
}

/* coll | key | 0x00 | value                  (value <= ST_META_SHORT_MAX)
 * coll | key | 0x01 | value[0..255] | fnv64  (longer: lookups re-check the
 *                                             item's value) */
size_t st_meta_key(unsigned char *buf, uint32_t coll, const char *key, const char *value) {
    size_t kn = strlen(key), vn = strlen(value);
    st_be32(buf, coll);
    memcpy(buf + 4, key, kn);
    size_t o = 4 + kn;
    if (vn <= ST_META_SHORT_MAX) {
        buf[o++] = 0;
        memcpy(buf + o, value, vn);
        return o + vn;
    }
    buf[o++] = 1;
    memcpy(buf + o, value, 256);
    o += 256;
    st_be64(buf + o, fnv1a64(value, vn));
    return o + 8;
}

/* -------------------------------------------------------- collections */

/* u8 version, u8 name_len, u8 factory_len, u8 0, i64 created, u64 seq,
 * u64 log_start, u64 n_items, u64 n_segments, name, factory */
#define COLL_HDR 44

int st_coll_encode(const st_collection *c, unsigned char *buf, size_t cap, size_t *len) {
    size_t nn = strlen(c->name), fn = strlen(c->factory);
    if (COLL_HDR + nn + fn > cap) return perr_set(PERR_INTERNAL, "collection record too large");
    buf[0] = ST_COLL_REC_VERSION;
    buf[1] = (unsigned char)nn;
    buf[2] = (unsigned char)fn;
    buf[3] = (unsigned char)(c->flags & 0xFF);
    ST_PUT(buf + 4, c->created_unix);
    ST_PUT(buf + 12, c->seq);
    ST_PUT(buf + 20, c->log_start);
    ST_PUT(buf + 28, c->n_items);
    ST_PUT(buf + 36, c->n_segments);
    memcpy(buf + COLL_HDR, c->name, nn);
    memcpy(buf + COLL_HDR + nn, c->factory, fn);
    *len = COLL_HDR + nn + fn;
    return PERR_OK;
}

int st_coll_decode(const void *p, size_t len, uint32_t id, st_collection *out) {
    const unsigned char *b = p;
    memset(out, 0, sizeof *out);
    if (len < COLL_HDR)
        return perr_set(PERR_FORMAT, "colls: key %u: record of %zu bytes, header needs %d",
                        id, len, COLL_HDR);
    if (b[0] != ST_COLL_REC_VERSION)
        return perr_set(PERR_FORMAT, "colls: key %u: record version %u, expected %d", id,
                        b[0], ST_COLL_REC_VERSION);
    size_t nn = b[1], fn = b[2];
    if (nn == 0 || nn > ST_NAME_MAX || fn > ST_FACTORY_MAX || COLL_HDR + nn + fn != len)
        return perr_set(PERR_FORMAT, "colls: key %u: name/factory lengths %zu/%zu do not "
                        "fit a %zu-byte record", id, nn, fn, len);
    out->id = id;
    out->flags = b[3];
    ST_GET(out->created_unix, b + 4);
    ST_GET(out->seq, b + 12);
    ST_GET(out->log_start, b + 20);
    ST_GET(out->n_items, b + 28);
    ST_GET(out->n_segments, b + 36);
    memcpy(out->name, b + COLL_HDR, nn);
    memcpy(out->factory, b + COLL_HDR + nn, fn);
    if (memchr(out->name, 0, nn) || memchr(out->factory, 0, fn))
        return perr_set(PERR_FORMAT, "colls: key %u: NUL byte in name or factory", id);
    return PERR_OK;
}

/* -------------------------------------------------------------- items */

/* Header (ST_ITEM_HDR = 88 bytes, little-endian):
 *   0 u8 version   1 u8 media   2 u16 n_labels   4 u32 coll
 *   8 u8[32] hash  40 u64 size  48 i64 created_ms 56 i32 width 60 i32 height
 *  64 f64 duration 72 f64 fps   80 u32 n_segments 84 u16 n_meta 86 u16 0
 * then: u16 uri_len, uri; u8 codec_len, codec;
 *       n_labels x (u8 len, bytes); n_meta x (u8 klen, key, u16 vlen, value) */
int st_item_encode(const st_item *it, unsigned char **out, size_t *len) {
    size_t un = it->uri ? strlen(it->uri) : 0, cn = it->codec ? strlen(it->codec) : 0;
    size_t total = ST_ITEM_HDR + 2 + un + 1 + cn;
    for (size_t i = 0; i < it->n_labels; i++) total += 1 + strlen(it->labels[i]);
    for (size_t i = 0; i < it->n_meta; i++)
        total += 1 + strlen(it->meta[i].key) + 2 + strlen(it->meta[i].value);
    if (total > ST_ITEM_REC_MAX)
        return perr_set(PERR_TOO_LARGE, "item record of %zu bytes (max %u): too much "
                        "metadata", total, ST_ITEM_REC_MAX);
    unsigned char *b = calloc(1, total);
    if (!b) return perr_set(PERR_NOMEM, "storage: out of memory");
    uint16_t nl = (uint16_t)it->n_labels, nm = (uint16_t)it->n_meta, u16;
    b[0] = ST_ITEM_REC_VERSION;
    b[1] = (unsigned char)it->media;
    ST_PUT(b + 2, nl);
    ST_PUT(b + 4, it->coll);
    memcpy(b + 8, it->hash, ST_HASH_LEN);
    ST_PUT(b + 40, it->size_bytes);
    ST_PUT(b + 48, it->created_ms);
    ST_PUT(b + 56, it->width);
    ST_PUT(b + 60, it->height);
    ST_PUT(b + 64, it->duration_s);
    ST_PUT(b + 72, it->fps);
    ST_PUT(b + 80, it->n_segments);
    ST_PUT(b + 84, nm);
    size_t o = ST_ITEM_HDR;
    u16 = (uint16_t)un; ST_PUT(b + o, u16); o += 2;
    memcpy(b + o, it->uri, un); o += un;
    b[o++] = (unsigned char)cn;
    memcpy(b + o, it->codec, cn); o += cn;
    for (size_t i = 0; i < it->n_labels; i++) {
        size_t n = strlen(it->labels[i]);
        b[o++] = (unsigned char)n;
        memcpy(b + o, it->labels[i], n); o += n;
    }
    for (size_t i = 0; i < it->n_meta; i++) {
        size_t kn = strlen(it->meta[i].key), vn = strlen(it->meta[i].value);
        b[o++] = (unsigned char)kn;
        memcpy(b + o, it->meta[i].key, kn); o += kn;
        u16 = (uint16_t)vn; ST_PUT(b + o, u16); o += 2;
        memcpy(b + o, it->meta[i].value, vn); o += vn;
    }
    *out = b;
    *len = o;
    return PERR_OK;
}

/* Bounded reader over one record. */
typedef struct rd {
    const unsigned char *p;
    size_t len, off;
    uint64_t id;
    int err;
} rd;

static int rd_fail(rd *r, const char *what, size_t need) {
    if (!r->err)
        r->err = perr_set(PERR_FORMAT, "items: key %llu: %s at byte %zu needs %zu bytes, "
                          "record has %zu", (unsigned long long)r->id, what, r->off, need,
                          r->len);
    return r->err;
}
/* Returns a pointer to n bytes and advances, or NULL. */
static const unsigned char *rd_take(rd *r, size_t n, const char *what) {
    if (r->err) return NULL;
    if (n > r->len - r->off) { rd_fail(r, what, n); return NULL; }
    const unsigned char *p = r->p + r->off;
    r->off += n;
    return p;
}
static size_t rd_len(rd *r, size_t width, const char *what) {
    const unsigned char *p = rd_take(r, width, what);
    if (!p) return 0;
    if (width == 1) return p[0];
    uint16_t v; ST_GET(v, p); return v;
}
/* Copies a length-prefixed string into *dst (NUL-terminated), advancing *dst. */
static const char *rd_str(rd *r, size_t width, const char *what, char **dst) {
    size_t n = rd_len(r, width, what);
    const unsigned char *s = rd_take(r, n, what);
    if (!s) return NULL;
    if (memchr(s, 0, n)) {
        r->err = perr_set(PERR_FORMAT, "items: key %llu: NUL byte inside %s at byte %zu",
                          (unsigned long long)r->id, what, r->off - n);
        return NULL;
    }
    char *d = *dst;
    memcpy(d, s, n);
    d[n] = 0;
    *dst = d + n + 1;
    return d;
}

int st_item_decode(const void *p, size_t len, uint64_t id, st_item **out) {
    *out = NULL;
    const unsigned char *b = p;
    if (len < ST_ITEM_HDR + 3)
        return perr_set(PERR_FORMAT, "items: key %llu: record of %zu bytes, shorter than its "
                        "%d-byte header", (unsigned long long)id, len, ST_ITEM_HDR + 3);
    if (b[0] != ST_ITEM_REC_VERSION)
        return perr_set(PERR_FORMAT, "items: key %llu: record version %u, expected %d",
                        (unsigned long long)id, b[0], ST_ITEM_REC_VERSION);
    if (b[1] != ST_MEDIA_IMAGE && b[1] != ST_MEDIA_VIDEO)
        return perr_set(PERR_FORMAT, "items: key %llu: media kind %u at byte 1",
                        (unsigned long long)id, b[1]);
    uint16_t nl, nm;
    ST_GET(nl, b + 2);
    ST_GET(nm, b + 84);
    size_t var = len - ST_ITEM_HDR;
    /* Each label takes >= 2 bytes, each meta entry >= 4: counts are bounded
     * by the record before anything is allocated from them. */
    if (nl > ST_LABELS_MAX || nm > ST_META_MAX || (size_t)nl * 2 + (size_t)nm * 4 > var)
        return perr_set(PERR_FORMAT, "items: key %llu: %u labels and %u metadata entries "
                        "cannot fit %zu bytes", (unsigned long long)id, nl, nm, var);
    size_t nstr = 2 + nl + 2 * (size_t)nm;
    size_t sz = sizeof(st_item) + nl * sizeof(char *) + nm * sizeof(st_kv) + var + nstr;
    st_item *it = calloc(1, sz);
    if (!it) return perr_set(PERR_NOMEM, "storage: out of memory");
    const char **labels = (const char **)(it + 1);
    st_kv *meta = (st_kv *)(labels + nl);
    char *strs = (char *)(meta + nm);

    it->id = id;
    it->media = (st_media)b[1];
    ST_GET(it->coll, b + 4);
    memcpy(it->hash, b + 8, ST_HASH_LEN);
    ST_GET(it->size_bytes, b + 40);
    ST_GET(it->created_ms, b + 48);
    ST_GET(it->width, b + 56);
    ST_GET(it->height, b + 60);
    ST_GET(it->duration_s, b + 64);
    ST_GET(it->fps, b + 72);
    ST_GET(it->n_segments, b + 80);

    rd r = {b, len, ST_ITEM_HDR, id, 0};
    it->uri = rd_str(&r, 2, "uri", &strs);
    it->codec = rd_str(&r, 1, "codec", &strs);
    for (size_t i = 0; i < nl && !r.err; i++) labels[i] = rd_str(&r, 1, "label", &strs);
    for (size_t i = 0; i < nm && !r.err; i++) {
        meta[i].key = rd_str(&r, 1, "metadata key", &strs);
        meta[i].value = rd_str(&r, 2, "metadata value", &strs);
    }
    if (!r.err && r.off != len)
        r.err = perr_set(PERR_FORMAT, "items: key %llu: %zu trailing bytes after byte %zu",
                         (unsigned long long)id, len - r.off, r.off);
    if (r.err) { free(it); return r.err; }
    it->labels = nl ? labels : NULL;
    it->n_labels = nl;
    it->meta = nm ? meta : NULL;
    it->n_meta = nm;
    *out = it;
    return PERR_OK;
}

void st_item_free(st_item *it) { free(it); }
