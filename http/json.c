/* http_json: JSON <-> the binary protocol's MessagePack payloads (json.h).
 *
 * DESIGN: the HTTP door does not reimplement any operation. A request's
 * fields (JSON body, multipart text parts, query string, uploaded bytes) are
 * packed into exactly the map a binary client would send, and net_op_run
 * (net/ops.c) validates and runs it; its MessagePack answer is printed as
 * JSON here. Field typing for text sources lives in one table (field_types).
 */
#define _GNU_SOURCE
#include "http/json.h"
#include "common/perr.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer --------------------------------------------------------------- */

static int buf_grow(http_buf *b, size_t n) {
    if (b->oom) return 0;
    if (b->len + n + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return 0; }
    b->p = p;
    b->cap = cap;
    return 1;
}

void http_buf_put(http_buf *b, const void *s, size_t n) {
    if (!n || !buf_grow(b, n)) return; /* n == 0: s may be NULL (an empty MessagePack str) */
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void http_buf_puts(http_buf *b, const char *s) { http_buf_put(b, s, strlen(s)); }

void http_buf_printf(http_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) { http_buf_put(b, tmp, (size_t)n); return; }
    if (!buf_grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void http_buf_free(http_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Length of the valid UTF-8 sequence at s (0: invalid). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { k = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; min = 0x10000; }
    else return 0;
    if (n < k) return 0;
    unsigned cp = c & (0x7F >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

void http_buf_json_str(http_buf *b, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    if (!n) { http_buf_put(b, "\"\"", 2); return; } /* str may be NULL */
    http_buf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are */
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        const char *esc = NULL;
        char tmp[8];
        size_t k = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7F) { snprintf(tmp, sizeof tmp, "\\u%04x", c); esc = tmp; }
        else if (c >= 0x80 && !(k = utf8_len(s + i, n - i))) { esc = "\\ufffd"; k = 1; }
        /* '<' and '>' too, so JSON inlined in a page cannot close a tag */
        else if (c == '<') esc = "\\u003c";
        else if (c == '>') esc = "\\u003e";
        if (esc) {
            http_buf_put(b, s + i - run, run);
            run = 0;
            http_buf_puts(b, esc);
            i += k;
        } else {
            run += k;
            i += k;
        }
    }
    http_buf_put(b, s + n - run, run);
    http_buf_put(b, "\"", 1);
}

/* ---- base64 ----------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void http_base64_encode(http_buf *b, const uint8_t *p, size_t n) {
    if (!buf_grow(b, (n + 2) / 3 * 4)) return;
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64[v >> 18]; *o++ = b64[(v >> 12) & 63]; *o++ = b64[(v >> 6) & 63]; *o++ = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = b64[v >> 18]; *o++ = b64[(v >> 12) & 63]; *o++ = '='; *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = b64[v >> 18]; *o++ = b64[(v >> 12) & 63]; *o++ = b64[(v >> 6) & 63]; *o++ = '=';
    }
    b->len = (size_t)(o - b->p);
    b->p[b->len] = 0;
}

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62; /* standard and URL-safe alphabets */
    if (c == '/' || c == '_') return 63;
    return -1;
}

int http_base64_decode(const char *s, size_t n, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return perr_set(PERR_INVALID, "base64: %zu characters is not a valid length", n);
    uint8_t *p = malloc(n / 4 * 3 + 3);
    if (!p) return perr_set(PERR_NOMEM, "base64: %zu characters", n);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) { free(p); return perr_set(PERR_INVALID, "base64: invalid character at offset %zu", i); }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) { bits -= 8; p[o++] = (uint8_t)(acc >> bits); }
    }
    *out = p;
    *len = o;
    return PERR_OK;
}

/* ---- MessagePack -> JSON --------------------------------------------------- */

static void put_double(http_buf *b, double d, int is_f32) {
    if (!isfinite(d)) { http_buf_puts(b, "null"); return; }
    if (is_f32) http_buf_printf(b, "%.9g", (double)(float)d);
    else http_buf_printf(b, "%.17g", d);
}

void http_mp_to_json(const msgpack_object *o, const char *key, http_buf *b) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: http_buf_puts(b, "null"); break;
    case MSGPACK_OBJECT_BOOLEAN: http_buf_puts(b, o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: http_buf_printf(b, "%llu", (unsigned long long)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: http_buf_printf(b, "%lld", (long long)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32: put_double(b, o->via.f64, 1); break;
    case MSGPACK_OBJECT_FLOAT64: put_double(b, o->via.f64, 0); break;
    case MSGPACK_OBJECT_STR: http_buf_json_str(b, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: {
        const uint8_t *p = (const uint8_t *)o->via.bin.ptr;
        size_t n = o->via.bin.size;
        if (key && !strcmp(key, "vector") && n % 4 == 0) {
            http_buf_put(b, "[", 1);
            for (size_t i = 0; i < n / 4; i++) {
                float f;
                memcpy(&f, p + 4 * i, 4); /* little-endian hosts only (x86-64, as the protocol) */
                if (i) http_buf_put(b, ",", 1);
                put_double(b, f, 1);
            }
            http_buf_put(b, "]", 1);
        } else if (key && !strcmp(key, "sha256")) {
            http_buf_put(b, "\"", 1);
            for (size_t i = 0; i < n; i++) http_buf_printf(b, "%02x", p[i]);
            http_buf_put(b, "\"", 1);
        } else {
            http_buf_put(b, "\"", 1);
            http_base64_encode(b, p, n);
            http_buf_put(b, "\"", 1);
        }
        break;
    }
    case MSGPACK_OBJECT_ARRAY:
        http_buf_put(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) http_buf_put(b, ",", 1);
            http_mp_to_json(&o->via.array.ptr[i], key, b);
        }
        http_buf_put(b, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP:
        http_buf_put(b, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i) http_buf_put(b, ",", 1);
            char kbuf[64] = "";
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                size_t kn = kv->key.via.str.size < sizeof kbuf - 1 ? kv->key.via.str.size : sizeof kbuf - 1;
                if (kn) memcpy(kbuf, kv->key.via.str.ptr, kn); /* an empty key's ptr may be NULL */
                kbuf[kn] = 0;
                http_buf_json_str(b, kv->key.via.str.ptr, kv->key.via.str.size);
            } else { /* JSON keys are strings */
                http_buf_put(b, "\"", 1);
                http_mp_to_json(&kv->key, NULL, b);
                http_buf_put(b, "\"", 1);
            }
            http_buf_put(b, ":", 1);
            /* a "meta" map's values are the user's: never reinterpreted */
            http_mp_to_json(&kv->val, key && !strcmp(key, "meta") ? "" : kbuf, b);
        }
        http_buf_put(b, "}", 1);
        break;
    default: http_buf_puts(b, "null"); break;
    }
}

void http_json_error(http_buf *b, int code, const char *msg) {
    http_buf_puts(b, "{\"error\":");
    const char *name = perr_name(code);
    http_buf_json_str(b, name, strlen(name));
    http_buf_printf(b, ",\"code\":%d,\"message\":", code);
    const char *m = msg && msg[0] ? msg : perr_str(code);
    http_buf_json_str(b, m, strlen(m));
    http_buf_puts(b, "}");
}

/* ---- fields ------------------------------------------------------------------ */

void http_fields_init(http_fields *f) {
    memset(f, 0, sizeof *f);
    msgpack_sbuffer_init(&f->sb);
    msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
}

void http_fields_free(http_fields *f) {
    if (!f) return;
    msgpack_sbuffer_destroy(&f->sb);
    for (int i = 0; i < f->n; i++) free(f->keys[i]);
    for (int i = 0; i < f->nt; i++) { free(f->tk[i]); free(f->tv[i]); }
    free(f->keys);
    free(f->tk);
    free(f->tv);
    memset(f, 0, sizeof *f);
}

int http_fields_has(const http_fields *f, const char *key) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->keys[i], key)) return 1;
    return 0;
}

/* Reserves key (0: already there, value must be skipped; -1: no memory). */
static int add_key(http_fields *f, const char *key) {
    if (http_fields_has(f, key)) return 0;
    if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 16;
        char **k = realloc(f->keys, sizeof *k * (size_t)cap);
        if (!k) return -1;
        f->keys = k;
        f->cap = cap;
    }
    if (!(f->keys[f->n] = strdup(key))) return -1;
    f->n++;
    msgpack_pack_str(&f->pk, strlen(key));
    msgpack_pack_str_body(&f->pk, key, strlen(key));
    return 1;
}

int http_fields_add_bin(http_fields *f, const char *key, const void *p, size_t n) {
    int r = add_key(f, key);
    if (r < 0) return perr_set(PERR_NOMEM, "field \"%s\"", key);
    if (r) { msgpack_pack_bin(&f->pk, n); msgpack_pack_bin_body(&f->pk, p, n); }
    return PERR_OK;
}

int http_fields_add_u64(http_fields *f, const char *key, uint64_t v) {
    int r = add_key(f, key);
    if (r < 0) return perr_set(PERR_NOMEM, "field \"%s\"", key);
    if (r) msgpack_pack_uint64(&f->pk, v);
    return PERR_OK;
}

int http_fields_add_u64s(http_fields *f, const char *key, const uint64_t *v, int n) {
    int r = add_key(f, key);
    if (r < 0) return perr_set(PERR_NOMEM, "field \"%s\"", key);
    if (r) {
        msgpack_pack_array(&f->pk, (size_t)n);
        for (int i = 0; i < n; i++) msgpack_pack_uint64(&f->pk, v[i]);
    }
    return PERR_OK;
}

/* A JSON number: an integer when it is one (and fits), else a float64. */
static void pack_number(msgpack_packer *pk, double d) {
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        if (d >= 0) msgpack_pack_uint64(pk, (uint64_t)d);
        else msgpack_pack_int64(pk, (int64_t)d);
    } else msgpack_pack_double(pk, d);
}

static void pack_json(msgpack_packer *pk, const cJSON *j, int depth) {
    if (depth > 32 || cJSON_IsNull(j) || cJSON_IsInvalid(j)) { msgpack_pack_nil(pk); return; }
    if (cJSON_IsBool(j)) { if (cJSON_IsTrue(j)) msgpack_pack_true(pk); else msgpack_pack_false(pk); return; }
    if (cJSON_IsNumber(j)) { pack_number(pk, j->valuedouble); return; }
    if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, j->valuestring, n);
        return;
    }
    int n = cJSON_GetArraySize(j);
    if (cJSON_IsArray(j)) {
        msgpack_pack_array(pk, (size_t)n);
        for (const cJSON *c = j->child; c; c = c->next) pack_json(pk, c, depth + 1);
        return;
    }
    msgpack_pack_map(pk, (size_t)n);
    for (const cJSON *c = j->child; c; c = c->next) {
        size_t kn = strlen(c->string);
        msgpack_pack_str(pk, kn);
        msgpack_pack_str_body(pk, c->string, kn);
        pack_json(pk, c, depth + 1);
    }
}

int http_fields_from_json(http_fields *f, const cJSON *obj) {
    if (!cJSON_IsObject(obj)) return perr_set(PERR_INVALID, "the JSON body must be an object");
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *k = c->string;
        if (!strcmp(k, "vector") && cJSON_IsArray(c)) {
            int n = cJSON_GetArraySize(c), i = 0;
            float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
            if (!v) return perr_set(PERR_NOMEM, "field \"vector\"");
            for (const cJSON *e = c->child; e; e = e->next, i++) {
                if (!cJSON_IsNumber(e)) { free(v); return perr_set(PERR_INVALID, "field \"vector\": element %d is not a number", i); }
                v[i] = (float)e->valuedouble;
            }
            int rc = http_fields_add_bin(f, k, v, sizeof(float) * (size_t)n);
            free(v);
            if (rc) return rc;
        } else if ((!strcmp(k, "image") || !strcmp(k, "data")) && cJSON_IsString(c)) {
            uint8_t *p = NULL;
            size_t n = 0;
            int rc = http_base64_decode(c->valuestring, strlen(c->valuestring), &p, &n);
            if (rc) return perr_prefix(rc, "field \"%s\"", k);
            rc = http_fields_add_bin(f, k, p, n);
            free(p);
            if (rc) return rc;
        } else {
            int r = add_key(f, k);
            if (r < 0) return perr_set(PERR_NOMEM, "field \"%s\"", k);
            if (r) pack_json(&f->pk, c, 0);
        }
    }
    return PERR_OK;
}

/* Typing of text fields (query strings, multipart parts). */
typedef enum { T_STR, T_INT, T_U64, T_FLOAT, T_BOOL, T_LIST, T_U64_LIST } field_type;
static const struct { const char *name; field_type t; } field_types[] = {
    {"k", T_INT}, {"limit", T_INT}, {"frames", T_INT}, {"segment_frames", T_INT},
    {"min_score", T_FLOAT}, {"threshold", T_FLOAT}, {"segment_seconds", T_FLOAT},
    {"id", T_U64}, {"after", T_U64},
    {"include_self", T_BOOL}, {"segments", T_BOOL}, {"vector", T_BOOL}, {"remove", T_BOOL},
    {"collections", T_LIST}, {"labels", T_LIST}, {"sets", T_LIST},
    {"ids", T_U64_LIST},
};

static field_type type_of(const char *key) {
    for (size_t i = 0; i < sizeof field_types / sizeof field_types[0]; i++)
        if (!strcmp(field_types[i].name, key)) return field_types[i].t;
    return T_STR;
}

int http_fields_add_text(http_fields *f, const char *key, const char *value, size_t len) {
    if (f->nt == f->capt) {
        int cap = f->capt ? f->capt * 2 : 16;
        char **k = realloc(f->tk, sizeof *k * (size_t)cap);
        if (!k) return perr_set(PERR_NOMEM, "field \"%s\"", key);
        f->tk = k;
        char **v = realloc(f->tv, sizeof *v * (size_t)cap);
        if (!v) return perr_set(PERR_NOMEM, "field \"%s\"", key);
        f->tv = v;
        f->capt = cap;
    }
    char *k = strdup(key), *v = strndup(value, len);
    if (!k || !v) { free(k); free(v); return perr_set(PERR_NOMEM, "field \"%s\"", key); }
    f->tk[f->nt] = k;
    f->tv[f->nt] = v;
    f->nt++;
    return PERR_OK;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decoding in place ('+' is a space); returns the new length. */
static size_t url_decode(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') s[o++] = ' ';
        else if (s[i] == '%' && i + 2 < n + 0 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            s[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else s[o++] = s[i];
    }
    return o;
}

int http_fields_from_query(http_fields *f, const char *query) {
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n) {
            char *pair = strndup(p, n);
            if (!pair) return perr_set(PERR_NOMEM, "query string");
            char *eq = strchr(pair, '=');
            char *val = eq ? eq + 1 : pair + n;
            if (eq) *eq = 0;
            size_t kn = url_decode(pair, strlen(pair));
            pair[kn] = 0;
            size_t vn = url_decode(val, strlen(val));
            int rc = kn ? http_fields_add_text(f, pair, val, vn) : PERR_OK;
            free(pair);
            if (rc) return rc;
        }
        p = amp ? amp + 1 : NULL;
    }
    return PERR_OK;
}

static int parse_num(const char *key, const char *v, field_type t, msgpack_packer *pk) {
    char *end = NULL;
    if (!*v) return perr_set(PERR_INVALID, "field \"%s\": empty", key);
    if (t == T_INT || t == T_U64) {
        if (t == T_U64 && v[0] == '-') return perr_set(PERR_INVALID, "field \"%s\": \"%s\" is not an unsigned integer", key, v);
        errno = 0;
        if (t == T_INT) {
            long long x = strtoll(v, &end, 10);
            if (*end || errno) return perr_set(PERR_INVALID, "field \"%s\": \"%s\" is not an integer", key, v);
            msgpack_pack_int64(pk, x);
        } else {
            unsigned long long x = strtoull(v, &end, 10);
            if (*end || errno) return perr_set(PERR_INVALID, "field \"%s\": \"%s\" is not an unsigned integer", key, v);
            msgpack_pack_uint64(pk, x);
        }
        return PERR_OK;
    }
    double d = strtod(v, &end);
    if (*end || !isfinite(d)) return perr_set(PERR_INVALID, "field \"%s\": \"%s\" is not a number", key, v);
    msgpack_pack_double(pk, d);
    return PERR_OK;
}

/* Packs the text fields of one name (every occurrence: i and later). */
static int pack_text_group(http_fields *f, int i, const char *key) {
    field_type t = type_of(key);
    msgpack_packer *pk = &f->pk;
    int cnt = 0;
    for (int j = i; j < f->nt; j++) cnt += !strcmp(f->tk[j], key);
    const char *v = f->tv[i];
    switch (t) {
    case T_STR: {
        size_t n = strlen(v);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, v, n);
        return PERR_OK;
    }
    case T_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !*v) msgpack_pack_true(pk);
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) msgpack_pack_false(pk);
        else return perr_set(PERR_INVALID, "field \"%s\": \"%s\" is not a boolean (true/false/1/0)", key, v);
        return PERR_OK;
    case T_INT: case T_U64: case T_FLOAT: return parse_num(key, v, t, pk);
    case T_LIST: case T_U64_LIST:
        msgpack_pack_array(pk, (size_t)cnt);
        for (int j = i; j < f->nt; j++) {
            if (strcmp(f->tk[j], key)) continue;
            if (t == T_U64_LIST) {
                int rc = parse_num(key, f->tv[j], T_U64, pk);
                if (rc) return rc;
            } else {
                size_t n = strlen(f->tv[j]);
                msgpack_pack_str(pk, n);
                msgpack_pack_str_body(pk, f->tv[j], n);
            }
        }
        return PERR_OK;
    }
    return PERR_OK;
}

/* "meta.KEY" / "where.KEY" text fields: one map per prefix. */
static int pack_prefix_map(http_fields *f, const char *prefix) {
    size_t pl = strlen(prefix);
    int cnt = 0;
    for (int j = 0; j < f->nt; j++) cnt += !strncmp(f->tk[j], prefix, pl) && f->tk[j][pl];
    msgpack_pack_map(&f->pk, (size_t)cnt);
    for (int j = 0; j < f->nt; j++) {
        if (strncmp(f->tk[j], prefix, pl) || !f->tk[j][pl]) continue;
        const char *k = f->tk[j] + pl, *v = f->tv[j];
        msgpack_pack_str(&f->pk, strlen(k));
        msgpack_pack_str_body(&f->pk, k, strlen(k));
        msgpack_pack_str(&f->pk, strlen(v));
        msgpack_pack_str_body(&f->pk, v, strlen(v));
    }
    return PERR_OK;
}

int http_fields_pack(http_fields *f, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    for (int i = 0; i < f->nt; i++) {
        const char *k = f->tk[i];
        const char *dot = strchr(k, '.');
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(f->tk[j], k);
        if (seen) continue;
        if (dot && (!strncmp(k, "meta.", 5) || !strncmp(k, "where.", 6))) {
            char pre[8];
            size_t pl = (size_t)(dot - k) + 1;
            memcpy(pre, k, pl);
            pre[pl] = 0;
            /* only the first field of this prefix packs the map */
            int first = 1;
            for (int j = 0; j < i && first; j++) first = strncmp(f->tk[j], pre, pl) != 0;
            if (!first) continue;
            pre[pl - 1] = 0;
            int r = add_key(f, pre);
            if (r < 0) return perr_set(PERR_NOMEM, "field \"%s\"", pre);
            pre[pl - 1] = '.';
            if (r) pack_prefix_map(f, pre);
            continue;
        }
        int r = add_key(f, k);
        if (r < 0) return perr_set(PERR_NOMEM, "field \"%s\"", k);
        if (r) {
            int rc = pack_text_group(f, i, k);
            if (rc) return rc;
        }
    }
    msgpack_sbuffer hdr;
    msgpack_sbuffer_init(&hdr);
    msgpack_packer hp;
    msgpack_packer_init(&hp, &hdr, msgpack_sbuffer_write);
    msgpack_pack_map(&hp, (size_t)f->n);
    uint8_t *p = malloc(hdr.size + f->sb.size + 1);
    if (!p) { msgpack_sbuffer_destroy(&hdr); return perr_set(PERR_NOMEM, "request payload"); }
    memcpy(p, hdr.data, hdr.size);
    if (f->sb.size) memcpy(p + hdr.size, f->sb.data, f->sb.size);
    *len = hdr.size + f->sb.size;
    *out = p;
    msgpack_sbuffer_destroy(&hdr);
    return PERR_OK;
}
