/* net_mp: MessagePack payload helpers over msgpack-c, shared by the server
 * and the client library.
 *
 * Reading: net_mp_unpack() pre-checks the bytes (net_mp_check: every
 * declared length against the bytes present, depth and object caps) and
 * only then runs msgpack-c's unpacker; strings and blobs of the result
 * point into the caller's buffer, which must outlive the object. Field
 * getters take a map and a key, and set a message naming the field when
 * its type is wrong. Strings are copied NUL-terminated into an arena that
 * frees them all at once.
 *
 * Thread-safe: no globals.
 */
#ifndef PERCEPT_NET_MP_H
#define PERCEPT_NET_MP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* A list of allocations freed together. */
typedef struct net_arena { void **v; int n, cap; } net_arena;
void *net_arena_alloc(net_arena *a, size_t n);
char *net_arena_strndup(net_arena *a, const char *s, size_t n);
void net_arena_free(net_arena *a);

/* Pre-checks and unpacks one object; *out valid while buf and u live.
 * PERR_FORMAT / PERR_TOO_LARGE when the bytes are not one bounded object. */
int net_mp_unpack(const uint8_t *buf, size_t len, msgpack_unpacked *u, const msgpack_object **out);

/* A request payload: net_mp_unpack, then the rules every request follows
 * (docs/protocol.md §3, "Types"): empty or nil is an empty map; anything
 * else must be a map (INVALID) whose keys are all strings, valid UTF-8,
 * none twice (INVALID). *out is valid while buf and u live. */
int net_mp_request(const uint8_t *buf, size_t len, msgpack_unpacked *u, const msgpack_object **out);
/* The key rules alone, for a map value (meta, where); what names it. */
int net_mp_check_keys(const msgpack_object *map, const char *what);

/* Field of a map; NULL when absent, nil, or map is not a map. */
const msgpack_object *net_mp_get(const msgpack_object *map, const char *key);

/* Getters: return PERR_OK and leave *out untouched when the key is absent
 * (check with net_mp_get for required fields), PERR_INVALID naming the key
 * on a wrong type or range. One rule per type, for every field: str is a
 * MessagePack str of valid UTF-8 without NUL (bin refused); bin is bin
 * (str refused); bool is true/false or the integers 0/1; int/uint are
 * integers (no floats); float is any number, finite. */
int net_mp_str(const msgpack_object *map, const char *key, net_arena *a, const char **out);
int net_mp_u64(const msgpack_object *map, const char *key, uint64_t *out);
int net_mp_int(const msgpack_object *map, const char *key, int *out);
int net_mp_float(const msgpack_object *map, const char *key, float *out, int *present);
int net_mp_bool(const msgpack_object *map, const char *key, int *out);
/* A bin blob: pointer into the payload. */
int net_mp_bin(const msgpack_object *map, const char *key, const void **data, size_t *len);
/* An array of strings (a lone string counts as one), at most max. */
int net_mp_strs(const msgpack_object *map, const char *key, net_arena *a, int max,
                const char ***out, int *n);
/* An array of unsigned integers, at most max (arena-allocated). */
int net_mp_u64s(const msgpack_object *map, const char *key, net_arena *a, int max,
                uint64_t **out, int *n);
/* A map of string -> string (eng_kv layout: key, value pairs). */
typedef struct net_kv { const char *key; const char *value; } net_kv;
int net_mp_kvs(const msgpack_object *map, const char *key, net_arena *a, int max,
               net_kv **out, int *n);

/* Writing. */
void net_mp_pack_cstr(msgpack_packer *pk, const char *s);
void net_mp_pack_key(msgpack_packer *pk, const char *key); /* same, named for maps */
void net_mp_pack_bin(msgpack_packer *pk, const void *data, size_t len);

#endif
