/* st_internal: what the storage files share and nobody else sees.
 *
 * Byte order: keys are big-endian (so memcmp order == numeric order and
 * every per-collection table is a contiguous key range starting with the
 * collection id); values are little-endian (the host order of every machine
 * we build for; checked at compile time). docs/storage.md has every layout.
 */
#ifndef PERCEPT_ST_INTERNAL_H
#define PERCEPT_ST_INTERNAL_H

#include "storage/st.h"
#include "common/perr.h"

#include <lmdb.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "percept storage writes little-endian values; port st_le* first"
#endif

/* Sub-databases (names as stored in LMDB's main table). */
enum {
    ST_T_INFO, ST_T_COLLS, ST_T_COLL_NAMES, ST_T_ITEMS, ST_T_VECTORS,
    ST_T_SEGMENTS, ST_T_HASHES, ST_T_LABELS, ST_T_META, ST_T_CHANGES,
    ST_T_THUMBS,           /* layout 2 */
    ST_T_COUNT
};
extern const char *const st_table_names[ST_T_COUNT];

struct st_db {
    MDB_env *env;
    MDB_dbi dbi[ST_T_COUNT];
    char *dir;
    char *index_dir;
    char *data_path;
    int read_only;
    int has_thumbs;        /* 0: a layout-1 database opened read-only */
};

/* A buffer owned by a transaction (aligned copies of vectors). */
typedef struct st_buf {
    struct st_buf *next;
    _Alignas(16) unsigned char data[];
} st_buf;

struct st_txn {
    st_db *db;
    MDB_txn *t;
    int write;
    int dead;              /* a write failed midway: only abort is allowed */
    int dead_code;
    char dead_msg[256];
    st_buf *bufs;          /* freed when the transaction ends */
    int dim;               /* cached st_info.dim (-1: not read yet) */
};

/* ---- byte helpers */
static inline void st_be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void st_be64(unsigned char *p, uint64_t v) {
    st_be32(p, (uint32_t)(v >> 32)); st_be32(p + 4, (uint32_t)v);
}
static inline uint32_t st_rbe32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t st_rbe64(const unsigned char *p) {
    return (uint64_t)st_rbe32(p) << 32 | st_rbe32(p + 4);
}
/* Little-endian values: plain memcpy on our (little-endian) hosts; memcpy
 * because LMDB values are only 2-byte aligned. */
#define ST_PUT(p, v) memcpy((p), &(v), sizeof(v))
#define ST_GET(v, p) memcpy(&(v), (p), sizeof(v))

/* ---- errors (st_env.c) */
/* Translates an LMDB error of an operation on table `table` (may be NULL),
 * prefixing the formatted context; poisons a write txn. Returns the perr
 * code. */
int st_mdb_fail(st_txn *txn, int rc, int table, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* PERR code of an LMDB error, without message. */
int st_mdb_code(int rc);
/* Fails unless txn is alive (and writable when write). */
int st_check_txn(st_txn *txn, int write);
/* Marks a write transaction dead with the current perr message. */
void st_poison(st_txn *txn, int code);

/* ---- table access helpers (st_env.c) */
int st_get(st_txn *txn, int table, const void *key, size_t klen, MDB_val *val);
int st_put(st_txn *txn, int table, const void *key, size_t klen,
           const void *val, size_t vlen, unsigned flags);
/* Deletes key (and data when data != NULL, for dupsort tables); a missing
 * key is not an error. */
int st_del(st_txn *txn, int table, const void *key, size_t klen,
           const void *data, size_t dlen);
/* Deletes every key starting with prefix. */
int st_del_prefix(st_txn *txn, int table, const void *prefix, size_t plen);
/* A 4-byte aligned view of a vector value: the map itself when aligned,
 * else a copy owned by txn (valid until the transaction ends). NULL on
 * allocation failure. */
const float *st_txn_floats(st_txn *txn, const void *p, size_t nfloats);

/* ---- info (st_env.c) */
int st_dim(st_txn *txn, int *dim);
int st_counter_next(st_txn *txn, const char *key, uint64_t max, uint64_t *out);
int st_counter_peek(st_txn *txn, const char *key, uint64_t *out);

/* ---- records (st_codec.c) */
#define ST_COLL_REC_VERSION 1
#define ST_ITEM_REC_VERSION 1
#define ST_ITEM_HDR 88
#define ST_ITEM_REC_MAX (1u << 20)   /* encoded item record limit */
#define ST_META_SHORT_MAX 300        /* longer values are indexed by digest */

int st_coll_encode(const st_collection *c, unsigned char *buf, size_t cap,
                   size_t *len);
int st_coll_decode(const void *p, size_t len, uint32_t id, st_collection *out);

/* Encodes an item whose labels are sorted/unique and meta sorted by unique
 * key (st_item_normalize). *out malloc'd. */
int st_item_encode(const st_item *it, unsigned char **out, size_t *len);
/* Decodes a record into one allocation (st_item_free). */
int st_item_decode(const void *p, size_t len, uint64_t id, st_item **out);

/* Validates labels/meta of it and returns sorted, de-duplicated copies of
 * the pointer arrays (strings still the caller's). *labels and *meta malloc'd. */
int st_item_normalize(const st_item *it, const char ***labels, size_t *n_labels,
                      st_kv **meta, size_t *n_meta);
int st_check_label(const char *label);
int st_check_meta(const char *key, const char *value);
int st_utf8_valid(const unsigned char *s, size_t n);

/* Index keys: return the key length written into buf (>= 512 bytes). */
size_t st_label_key(unsigned char *buf, uint32_t coll, const char *label);
size_t st_meta_key(unsigned char *buf, uint32_t coll, const char *key,
                   const char *value);

/* ---- collections (st_coll.c) */
int st_coll_load(st_txn *txn, uint32_t id, st_collection *out);
int st_coll_store(st_txn *txn, const st_collection *c);

#endif
