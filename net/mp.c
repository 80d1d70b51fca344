/* net_mp: bounded MessagePack reading and small packing helpers (mp.h). */
#include "net/mp.h"
#include "net/proto.h"
#include "common/perr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *net_arena_alloc(net_arena *a, size_t n) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        void **v = realloc(a->v, sizeof *v * (size_t)cap);
        if (!v) return NULL;
        a->v = v;
        a->cap = cap;
    }
    void *p = malloc(n ? n : 1);
    if (p) a->v[a->n++] = p;
    return p;
}

char *net_arena_strndup(net_arena *a, const char *s, size_t n) {
    char *p = net_arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void net_arena_free(net_arena *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

int net_mp_unpack(const uint8_t *buf, size_t len, msgpack_unpacked *u, const msgpack_object **out) {
    *out = NULL;
    int rc = net_mp_check(buf, len, NET_MP_MAX_DEPTH, NET_MP_MAX_OBJECTS);
    if (rc) return rc;
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(u, (const char *)buf, len, &off);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR) return perr_set(PERR_NOMEM, "unpacking a payload of %zu bytes", len);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        return perr_set(PERR_FORMAT, "malformed MessagePack payload (msgpack-c: %d at byte %zu)", (int)r, off);
    *out = &u->data;
    return PERR_OK;
}

static int check_text(const msgpack_object *o, const char *what);

int net_mp_request(const uint8_t *buf, size_t len, msgpack_unpacked *u, const msgpack_object **out) {
    static const msgpack_object empty = {.type = MSGPACK_OBJECT_MAP};
    *out = NULL;
    const msgpack_object *o = &empty; /* an empty payload, or nil, is an empty map */
    if (len) {
        int rc = net_mp_unpack(buf, len, u, &o);
        if (rc) return rc;
        if (o->type == MSGPACK_OBJECT_NIL) o = &empty;
        if (o->type != MSGPACK_OBJECT_MAP) return perr_set(PERR_INVALID, "the payload must be a MessagePack map");
        rc = net_mp_check_keys(o, "payload");
        if (rc) return rc;
    }
    *out = o;
    return PERR_OK;
}

static int key_cmp(const void *a, const void *b) {
    const msgpack_object *x = *(const msgpack_object *const *)a, *y = *(const msgpack_object *const *)b;
    if (x->via.str.size != y->via.str.size) return x->via.str.size < y->via.str.size ? -1 : 1;
    return memcmp(x->via.str.ptr, y->via.str.ptr, x->via.str.size);
}

int net_mp_check_keys(const msgpack_object *map, const char *what) {
    const msgpack_object_kv *kv = map->via.map.ptr;
    uint32_t n = map->via.map.size;
    for (uint32_t i = 0; i < n; i++) {
        if (kv[i].key.type != MSGPACK_OBJECT_STR)
            return perr_set(PERR_INVALID, "%s: map key %u is not a string", what, i);
        int rc = check_text(&kv[i].key, "(a key)");
        if (rc) return perr_prefix(rc, "%s: map key %u", what, i);
    }
    if (n < 2) return PERR_OK;
    /* Duplicates would make "which one counts" a guess: refused. Sorted
     * (not pairwise) so a map of a million keys stays cheap. */
    const msgpack_object **k = malloc(sizeof *k * n);
    if (!k) return perr_set(PERR_NOMEM, "%s: %u keys", what, n);
    for (uint32_t i = 0; i < n; i++) k[i] = &kv[i].key;
    qsort(k, n, sizeof *k, key_cmp);
    int rc = PERR_OK;
    for (uint32_t i = 1; i < n && !rc; i++)
        if (!key_cmp(&k[i - 1], &k[i]))
            rc = perr_set(PERR_INVALID, "%s: key \"%.*s\" appears twice", what,
                          (int)(k[i]->via.str.size > 64 ? 64 : k[i]->via.str.size), k[i]->via.str.ptr);
    free(k);
    return rc;
}

const msgpack_object *net_mp_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
            memcmp(kv->key.via.str.ptr, key, kl) == 0)
            return kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
    }
    return NULL;
}

/* Byte offset of the first invalid UTF-8 sequence (overlong forms,
 * surrogates and code points over U+10FFFF included), or -1. */
static long utf8_bad(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        int len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!len || n - i < (size_t)len) return (long)i;
        uint8_t lo = 0x80, hi = 0xbf; /* second byte range */
        if (c == 0xe0) lo = 0xa0;
        else if (c == 0xed) hi = 0x9f;
        else if (c == 0xf0) lo = 0x90;
        else if (c == 0xf4) hi = 0x8f;
        if (s[i + 1] < lo || s[i + 1] > hi) return (long)i;
        for (int k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return (long)i;
        i += (size_t)len;
    }
    return -1;
}

/* The one rule for text: a MessagePack str (not bin), valid UTF-8, no NUL. */
static int check_text(const msgpack_object *o, const char *what) {
    if (o->type != MSGPACK_OBJECT_STR)
        return perr_set(PERR_INVALID, "field \"%s\": expected a string (MessagePack str)%s", what,
                        o->type == MSGPACK_OBJECT_BIN ? ", got bin" : "");
    if (memchr(o->via.str.ptr, 0, o->via.str.size))
        return perr_set(PERR_INVALID, "field \"%s\": string contains a NUL byte", what);
    long bad = utf8_bad((const uint8_t *)o->via.str.ptr, o->via.str.size);
    if (bad >= 0) return perr_set(PERR_INVALID, "field \"%s\": invalid UTF-8 at byte %ld of the string", what, bad);
    return PERR_OK;
}

static int str_of(const msgpack_object *o, const char *what, net_arena *a, const char **out) {
    int rc = check_text(o, what);
    if (rc) return rc;
    const char *s = net_arena_strndup(a, o->via.str.ptr, o->via.str.size);
    if (!s) return perr_set(PERR_NOMEM, "field \"%s\"", what);
    *out = s;
    return PERR_OK;
}

int net_mp_str(const msgpack_object *map, const char *key, net_arena *a, const char **out) {
    const msgpack_object *o = net_mp_get(map, key);
    return o ? str_of(o, key, a, out) : PERR_OK;
}

static int u64_of(const msgpack_object *o, const char *what, uint64_t *out) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) { *out = o->via.u64; return PERR_OK; }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return perr_set(PERR_INVALID, "field \"%s\": %lld is negative", what, (long long)o->via.i64);
    return perr_set(PERR_INVALID, "field \"%s\": expected an unsigned integer", what);
}

int net_mp_u64(const msgpack_object *map, const char *key, uint64_t *out) {
    const msgpack_object *o = net_mp_get(map, key);
    return o ? u64_of(o, key, out) : PERR_OK;
}

int net_mp_int(const msgpack_object *map, const char *key, int *out) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT32_MAX) return perr_set(PERR_INVALID, "field \"%s\": %llu out of range", key, (unsigned long long)o->via.u64);
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (o->via.i64 < INT32_MIN) return perr_set(PERR_INVALID, "field \"%s\": %lld out of range", key, (long long)o->via.i64);
        v = o->via.i64;
    } else return perr_set(PERR_INVALID, "field \"%s\": expected an integer", key);
    *out = (int)v;
    return PERR_OK;
}

int net_mp_float(const msgpack_object *map, const char *key, float *out, int *present) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    double d;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: d = o->via.f64; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: d = (double)o->via.u64; break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: d = (double)o->via.i64; break;
    default: return perr_set(PERR_INVALID, "field \"%s\": expected a number", key);
    }
    if (!isfinite(d)) return perr_set(PERR_INVALID, "field \"%s\": not a finite number", key);
    *out = (float)d;
    if (present) *present = 1;
    return PERR_OK;
}

int net_mp_bool(const msgpack_object *map, const char *key, int *out) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    if (o->type == MSGPACK_OBJECT_BOOLEAN) *out = o->via.boolean;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= 1) *out = (int)o->via.u64;
    else return perr_set(PERR_INVALID, "field \"%s\": expected a boolean (true, false, 0 or 1)", key);
    return PERR_OK;
}

int net_mp_bin(const msgpack_object *map, const char *key, const void **data, size_t *len) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    if (o->type != MSGPACK_OBJECT_BIN)
        return perr_set(PERR_INVALID, "field \"%s\": expected bytes (MessagePack bin)%s", key,
                        o->type == MSGPACK_OBJECT_STR ? ", got str" : "");
    *data = o->via.bin.ptr;
    *len = o->via.bin.size;
    return PERR_OK;
}

int net_mp_strs(const msgpack_object *map, const char *key, net_arena *a, int max,
                const char ***out, int *n) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    const msgpack_object *items = o;
    uint32_t cnt = 1;
    if (o->type == MSGPACK_OBJECT_ARRAY) { items = o->via.array.ptr; cnt = o->via.array.size; }
    if (cnt > (uint32_t)max) return perr_set(PERR_TOO_LARGE, "field \"%s\": %u entries, at most %d", key, cnt, max);
    const char **v = net_arena_alloc(a, sizeof *v * (cnt ? cnt : 1));
    if (!v) return perr_set(PERR_NOMEM, "field \"%s\"", key);
    for (uint32_t i = 0; i < cnt; i++) {
        int rc = str_of(&items[i], key, a, &v[i]);
        if (rc) return rc;
    }
    *out = v;
    *n = (int)cnt;
    return PERR_OK;
}

int net_mp_u64s(const msgpack_object *map, const char *key, net_arena *a, int max,
                uint64_t **out, int *n) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    const msgpack_object *items = o;
    uint32_t cnt = 1;
    if (o->type == MSGPACK_OBJECT_ARRAY) { items = o->via.array.ptr; cnt = o->via.array.size; }
    if (cnt > (uint32_t)max) return perr_set(PERR_TOO_LARGE, "field \"%s\": %u entries, at most %d", key, cnt, max);
    uint64_t *v = net_arena_alloc(a, sizeof *v * (cnt ? cnt : 1));
    if (!v) return perr_set(PERR_NOMEM, "field \"%s\"", key);
    for (uint32_t i = 0; i < cnt; i++) {
        int rc = u64_of(&items[i], key, &v[i]);
        if (rc) return rc;
    }
    *out = v;
    *n = (int)cnt;
    return PERR_OK;
}

int net_mp_kvs(const msgpack_object *map, const char *key, net_arena *a, int max,
               net_kv **out, int *n) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    if (o->type != MSGPACK_OBJECT_MAP) return perr_set(PERR_INVALID, "field \"%s\": expected a map of strings", key);
    uint32_t cnt = o->via.map.size;
    if (cnt > (uint32_t)max) return perr_set(PERR_TOO_LARGE, "field \"%s\": %u entries, at most %d", key, cnt, max);
    char what[80];
    snprintf(what, sizeof what, "field \"%s\"", key);
    int krc = net_mp_check_keys(o, what);
    if (krc) return krc;
    net_kv *v = net_arena_alloc(a, sizeof *v * (cnt ? cnt : 1));
    if (!v) return perr_set(PERR_NOMEM, "field \"%s\"", key);
    for (uint32_t i = 0; i < cnt; i++) {
        int rc = str_of(&o->via.map.ptr[i].key, key, a, &v[i].key);
        if (!rc) rc = str_of(&o->via.map.ptr[i].val, key, a, &v[i].value);
        if (rc) return rc;
    }
    *out = v;
    *n = (int)cnt;
    return PERR_OK;
}

void net_mp_pack_cstr(msgpack_packer *pk, const char *s) {
    if (!s) { msgpack_pack_nil(pk); return; }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void net_mp_pack_key(msgpack_packer *pk, const char *key) { net_mp_pack_cstr(pk, key); }

void net_mp_pack_bin(msgpack_packer *pk, const void *data, size_t len) {
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, data, len);
}
