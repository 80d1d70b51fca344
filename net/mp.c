/* net_mp: bounded MessagePack reading and small packing helpers (mp.h). */
#include "net/mp.h"
#include "net/proto.h"
#include "common/perr.h"

#include <math.h>
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

static int str_of(const msgpack_object *o, const char *what, net_arena *a, const char **out) {
    if (o->type != MSGPACK_OBJECT_STR) return perr_set(PERR_INVALID, "field \"%s\": expected a string", what);
    if (memchr(o->via.str.ptr, 0, o->via.str.size))
        return perr_set(PERR_INVALID, "field \"%s\": string contains a NUL byte", what);
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
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) *out = o->via.u64 != 0;
    else return perr_set(PERR_INVALID, "field \"%s\": expected a boolean", key);
    return PERR_OK;
}

int net_mp_bin(const msgpack_object *map, const char *key, const void **data, size_t *len) {
    const msgpack_object *o = net_mp_get(map, key);
    if (!o) return PERR_OK;
    if (o->type == MSGPACK_OBJECT_BIN) { *data = o->via.bin.ptr; *len = o->via.bin.size; }
    else if (o->type == MSGPACK_OBJECT_STR) { *data = o->via.str.ptr; *len = o->via.str.size; }
    else return perr_set(PERR_INVALID, "field \"%s\": expected bin bytes", key);
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
