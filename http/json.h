/* http_json: the JSON side of the HTTP door. Requests become the binary
 * protocol's MessagePack payloads (so one implementation, net/ops.c, checks
 * and runs every operation for both doors) and MessagePack responses become
 * JSON. Conversions (docs/http.md, "JSON and the binary payloads"):
 *  - request: a top-level "vector" array of numbers -> bin of float32;
 *    "image"/"data" strings -> base64-decoded bin; integral numbers -> ints;
 *  - response: bin "vector" -> array of float32 numbers, bin "sha256" -> hex,
 *    other bins -> base64; float32 printed with 9 significant digits
 *    (round-trips exactly), float64 with 17.
 * Query strings and multipart text fields are typed by field name (k: int,
 * min_score: number, labels: repeated, meta.KEY / where.KEY: maps, ...).
 * Pure functions, thread-safe.
 */
#ifndef PERCEPT_HTTP_JSON_H
#define PERCEPT_HTTP_JSON_H

#include <cjson/cJSON.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* A growing byte buffer; oom set (and further appends ignored) when
 * malloc fails. */
typedef struct http_buf { char *p; size_t len, cap; int oom; } http_buf;
void http_buf_put(http_buf *b, const void *s, size_t n);
void http_buf_puts(http_buf *b, const char *s);
void http_buf_printf(http_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal (quotes included), escaped; invalid UTF-8 bytes
 * become U+FFFD. */
void http_buf_json_str(http_buf *b, const char *s, size_t n);
void http_buf_free(http_buf *b);

/* MessagePack object -> JSON text (appended). key: the map key holding o
 * (NULL at the top), which decides how a bin is written. */
void http_mp_to_json(const msgpack_object *o, const char *key, http_buf *b);
/* {"error": NAME, "code": N, "message": MSG} */
void http_json_error(http_buf *b, int code, const char *msg);

/* base64 (RFC 4648, padding optional, whitespace rejected). *out malloc'd. */
int http_base64_decode(const char *s, size_t n, uint8_t **out, size_t *len);
void http_base64_encode(http_buf *b, const uint8_t *p, size_t n);

/* The fields of one request payload, packed as a map at the end. A key
 * added twice keeps its first value (JSON body, then multipart fields, then
 * the query string). */
typedef struct http_fields {
    msgpack_sbuffer sb;          /* packed values, key before value */
    msgpack_packer pk;
    char **keys;                 /* keys packed in sb */
    int n, cap;
    char **tk, **tv;             /* text fields, typed and grouped at pack time */
    int nt, capt;
} http_fields;
void http_fields_init(http_fields *f);
void http_fields_free(http_fields *f);
int http_fields_has(const http_fields *f, const char *key);
/* Members of a JSON object (PERR_INVALID naming the field on a bad vector
 * or base64, or when the body is not an object). */
int http_fields_from_json(http_fields *f, const cJSON *obj);
/* "a=1&b=x%20y&labels=p&labels=q&meta.k=v" typed by name. */
int http_fields_from_query(http_fields *f, const char *query);
/* One text field by name (multipart); values of a repeated list field come
 * one call each with the same key and are collected by http_fields_pack. */
int http_fields_add_text(http_fields *f, const char *key, const char *value, size_t len);
int http_fields_add_bin(http_fields *f, const char *key, const void *p, size_t n);
int http_fields_add_u64(http_fields *f, const char *key, uint64_t v);
int http_fields_add_u64s(http_fields *f, const char *key, const uint64_t *v, int n);
/* The map payload (malloc'd). */
int http_fields_pack(http_fields *f, uint8_t **out, size_t *len);

#endif
