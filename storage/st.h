/* st: percept's storage, the source of truth of a database (LMDB).
 *
 * A database is a directory:
 *   <dir>/data.mdb, <dir>/lock.mdb   one LMDB environment (this module)
 *   <dir>/index/                     reserved for the engine's FAISS files
 * It holds items (records with metadata, labels, content hash), their
 * normalized float32 vectors, video segments, collections and one change log
 * per collection. FAISS indexes are derived data: the engine saves an index
 * file together with the collection sequence number it covers and replays
 * st_changes() after that number on open (or rebuilds with st_scan_*).
 * Byte layouts: docs/storage.md (layout version ST_LAYOUT_VERSION).
 *
 * Concurrency (LMDB's model): one write transaction at a time (per
 * database, across processes), any number of read transactions that see a
 * consistent snapshot and never block the writer. An st_db is thread-safe.
 * An st_txn is used by one thread at a time; a read transaction may move
 * between threads (the env is opened MDB_NOTLS), a write transaction must be
 * committed or aborted by the thread that began it.
 *
 * Durability: st_txn_commit() returns after the data is synced to disk. A
 * crash (kill -9, power loss) leaves every committed transaction complete
 * and nothing of an uncommitted one: an item is stored whole or not at all.
 *
 * Lifetimes: pointers handed out "valid until the transaction ends" point
 * into the memory map (or into memory owned by the transaction); they die
 * at st_txn_commit()/st_txn_abort(). Everything else the caller frees with
 * the function named next to it.
 *
 * Errors: int perr codes (common/perr.h), message in perr_msg(). LMDB's
 * MDB_MAP_FULL becomes PERR_FULL; a record that does not decode becomes
 * PERR_FORMAT naming the sub-database and key. When a write operation fails
 * with anything else than PERR_INVALID, PERR_NOT_FOUND, PERR_EXISTS or
 * PERR_TOO_LARGE (the checks made before anything is written), the write
 * transaction is dead:
 * every later call on it fails, st_txn_commit() fails, and the caller
 * aborts it. Nothing committed earlier is touched.
 */
#ifndef PERCEPT_ST_H
#define PERCEPT_ST_H

#include <stddef.h>
#include <stdint.h>

#define ST_LAYOUT_VERSION 2
/* Layout 1 (no thumbnails table) is still read: a writable open upgrades it
 * in place (creates the empty table, records version 2); a read-only open
 * reads it as is, without thumbnails. */
#define ST_LAYOUT_VERSION_MIN 1

/* Limits, checked with a clear error (PERR_INVALID / PERR_TOO_LARGE). */
#define ST_NAME_MAX      64     /* collection name, bytes, [A-Za-z0-9_.-]+ */
#define ST_FACTORY_MAX   255    /* FAISS factory string, bytes */
#define ST_MODEL_NAME_MAX 63    /* model name, bytes */
#define ST_URI_MAX       4096   /* source uri/path, bytes, no NUL */
#define ST_CODEC_MAX     31     /* video codec name, bytes */
#define ST_LABEL_MAX     128    /* one label, bytes of valid UTF-8 */
#define ST_LABELS_MAX    256    /* labels per item */
#define ST_META_KEY_MAX  128    /* metadata key, bytes of valid UTF-8 */
#define ST_META_VAL_MAX  65535  /* metadata value, bytes of valid UTF-8 */
#define ST_META_MAX      256    /* metadata entries per item */
#define ST_DIM_MAX       16384  /* embedding dimension */
#define ST_SEGMENTS_MAX  65536  /* segments per video item */
#define ST_HASH_LEN      32     /* SHA-256 */
#define ST_THUMB_MAX     (1u << 20) /* bytes of one stored thumbnail */

/* Item ids are global, start at 1, and are never reused. They stay below
 * 2^47 so that segment ids (below) fit FAISS's int64 ids. */
#define ST_ITEM_ID_MAX   ((UINT64_C(1) << 47) - 1)
/* The id of segment `idx` of item `item` in a FAISS segment index, and back. */
#define ST_SEG_ID(item, idx) (((uint64_t)(item) << 16) | (uint64_t)(idx))
#define ST_SEG_ITEM(segid)   ((uint64_t)(segid) >> 16)
#define ST_SEG_IDX(segid)    ((uint32_t)((segid) & 0xFFFF))

typedef struct st_db st_db;
typedef struct st_txn st_txn;

/* ------------------------------------------------------------------ open */

typedef struct st_opts {
    uint64_t map_size;   /* max database size, bytes (sparse); default 64 GiB.
                            An existing larger file keeps its size. */
    int read_only;       /* open MDB_RDONLY; no write txns (default 0) */
    int create;          /* create <dir> and an empty database when missing
                            (default 1; ignored when read_only) */
    unsigned max_readers;/* concurrent read txns (default 126) */
} st_opts;

void st_opts_default(st_opts *o);

/* Opens (or creates) the database in directory dir. Clears stale reader
 * slots left by dead processes (mdb_reader_check). A database of another
 * layout version is refused with PERR_VERSION; a directory holding no
 * percept database with PERR_NOT_FOUND (read_only or !create). opts may be
 * NULL (defaults). */
int st_open(const char *dir, const st_opts *opts, st_db **out);
/* Closes; every transaction must have ended. NULL-safe. */
void st_close(st_db *db);
/* The directory given to st_open, and "<dir>/index" (created by st_open
 * unless read-only) where the engine keeps its index files. */
const char *st_dir(const st_db *db);
const char *st_index_dir(const st_db *db);

/* ---------------------------------------------------------- transactions */

/* Begins a read (write = 0) or write (write = 1) transaction. A write begin
 * blocks while another write transaction is open (in any process). */
int st_txn_begin(st_db *db, int write, st_txn **out);
/* Commits (synced) and frees the handle, also on failure (then nothing of
 * the transaction is stored). For a read transaction same as abort. */
int st_txn_commit(st_txn *txn);
/* Discards and frees. NULL-safe. */
void st_txn_abort(st_txn *txn);
int st_txn_is_write(const st_txn *txn);

/* --------------------------------------------------------- database info */

typedef struct st_info {
    uint32_t layout_version;      /* ST_LAYOUT_VERSION */
    int64_t created_unix;         /* seconds since the epoch */
    uint64_t model_fingerprint;   /* pe_model_fingerprint(); 0 = none yet */
    char model_name[ST_MODEL_NAME_MAX + 1];
    int32_t dim;                  /* embedding dimension; 0 = none yet */
} st_info;

int st_info_get(st_txn *txn, st_info *out);
/* Records the model identity (write txn). The dimension can only change
 * while the database holds no item (PERR_MODEL otherwise); comparing
 * fingerprints is the engine's job. Items can only be added once a model
 * (dim > 0) is recorded. */
int st_model_set(st_txn *txn, uint64_t fingerprint, const char *name, int dim);

/* ----------------------------------------------------------- collections */

typedef struct st_collection {
    uint32_t id;                  /* assigned at create, never reused */
    char name[ST_NAME_MAX + 1];
    char factory[ST_FACTORY_MAX + 1]; /* FAISS index_factory string */
    int64_t created_unix;
    uint64_t seq;                 /* sequence of the last change (0: none) */
    uint64_t log_start;           /* changes with seq <= this were trimmed */
    uint64_t n_items;
    uint64_t n_segments;
    uint32_t flags;               /* ST_COLL_* */
} st_collection;

/* Collection flags (one byte in the record). */
#define ST_COLL_NO_THUMBS 0x01u   /* the engine stores no thumbnails for its items */
#define ST_COLL_FLAGS_ALL 0x01u

/* Creates a collection (write txn). Name: 1..ST_NAME_MAX bytes of
 * [A-Za-z0-9_.-] (PERR_INVALID naming the offending byte), unique
 * (PERR_EXISTS). factory: non-empty, printable ASCII; stored, not
 * interpreted. */
int st_coll_create(st_txn *txn, const char *name, const char *factory,
                   uint32_t *id_out);
/* Replaces the flags of collection id (write txn); unknown bits:
 * PERR_INVALID. */
int st_coll_set_flags(st_txn *txn, uint32_t id, uint32_t flags);
/* PERR_NOT_FOUND when there is no such collection. */
int st_coll_get(st_txn *txn, const char *name, st_collection *out);
int st_coll_get_id(st_txn *txn, uint32_t id, st_collection *out);
/* All collections in id order; *out is malloc'd (caller frees), NULL when
 * *n == 0. */
int st_coll_list(st_txn *txn, st_collection **out, size_t *n);
/* Drops a collection with its items, vectors, segments, hashes, labels,
 * metadata index and change log (write txn). Its id is not reused, so index
 * files named after the id never match a later collection of the same
 * name. */
int st_coll_drop(st_txn *txn, uint32_t id);

/* ----------------------------------------------------------------- items */

typedef enum st_media { ST_MEDIA_IMAGE = 1, ST_MEDIA_VIDEO = 2 } st_media;

typedef struct st_kv {
    const char *key;
    const char *value;
} st_kv;

/* An item. As input to st_item_add the caller owns every pointer; as
 * returned by st_item_get it is one allocation freed with st_item_free. */
typedef struct st_item {
    uint64_t id;                  /* assigned by st_item_add (ignored in) */
    uint32_t coll;                /* set by st_item_add (ignored in) */
    st_media media;
    const char *uri;              /* source uri or path (may be "") */
    uint8_t hash[ST_HASH_LEN];    /* SHA-256 of the source bytes */
    uint64_t size_bytes;          /* source size */
    int32_t width, height;        /* pixels (video: frame size) */
    double duration_s;            /* video only, else 0 */
    double fps;                   /* video only, else 0 */
    const char *codec;            /* video codec name, NULL/"" for none */
    int64_t created_ms;           /* ms since the epoch; 0 in = now */
    uint32_t n_segments;          /* set by storage (ignored in) */
    const char *const *labels;    /* set semantics: duplicates dropped */
    size_t n_labels;              /* returned labels are sorted (bytes) */
    const st_kv *meta;            /* keys unique (PERR_INVALID otherwise) */
    size_t n_meta;                /* returned sorted by key */
} st_item;

/* A video segment: [start_s, end_s) with its normalized vector (dim floats
 * of the database). */
typedef struct st_segment {
    double start_s, end_s;
    const float *vec;
} st_segment;

/* Adds an item with its normalized vector (dim = st_info.dim floats, all
 * finite) and, for videos, its segments, in the caller's write txn. Assigns
 * the id (*id_out) and appends an ADD record to the collection's change log
 * (*seq_out, may be NULL). If the collection already holds an item with the
 * same hash: PERR_EXISTS and *id_out = that item's id, nothing written. */
int st_item_add(st_txn *txn, uint32_t coll, const st_item *item,
                const float *vec, const st_segment *segs, size_t n_segs,
                uint64_t *id_out, uint64_t *seq_out);
/* Decodes item id (*out freed with st_item_free). PERR_NOT_FOUND, or
 * PERR_FORMAT naming the key when the stored record is corrupt. */
int st_item_get(st_txn *txn, uint64_t id, st_item **out);
void st_item_free(st_item *it);
/* Deletes item id with its vector, segments, hash entry, label and
 * metadata index entries, and appends a DEL record to its collection's
 * change log (*seq_out, may be NULL). The id is never reused. */
int st_item_delete(st_txn *txn, uint64_t id, uint64_t *seq_out);
/* The vector of item id: *vec valid until the transaction ends, *dim its
 * length. */
int st_item_vector(st_txn *txn, uint64_t id, const float **vec, int *dim);
/* Segments of item id in order (index i has segment id ST_SEG_ID(id, i)):
 * *segs malloc'd (caller frees; NULL when *n == 0), their vec pointers
 * valid until the transaction ends. */
int st_item_segments(st_txn *txn, uint64_t id, st_segment **segs, size_t *n);
/* The item of a collection holding content hash `hash`; PERR_NOT_FOUND. */
int st_hash_lookup(st_txn *txn, uint32_t coll, const uint8_t hash[ST_HASH_LEN],
                   uint64_t *id_out);

/* ------------------------------------------------------------ thumbnails */

/* A small preview picture of an item (slot ST_THUMB_ITEM) or of one of its
 * video segments (ST_THUMB_SEG(i)). The bytes are opaque to storage;
 * format is the engine's code for their encoding (1..255). */
#define ST_THUMB_ITEM 0u
#define ST_THUMB_SEG(i) ((uint32_t)(i) + 1u)

typedef struct st_thumb {
    int format;                   /* 1..255 */
    int width, height;            /* 1..65535 */
    const void *data;             /* 1..ST_THUMB_MAX bytes */
    size_t len;
} st_thumb;

/* Stores (or replaces) a thumbnail of item id (write txn, the item must
 * exist; a segment slot must be below its segment count + 1). Deleting the
 * item or dropping its collection deletes its thumbnails. */
int st_thumb_put(st_txn *txn, uint64_t id, uint32_t slot, const st_thumb *t);
/* out->data valid until the transaction ends. PERR_NOT_FOUND when the
 * item or that thumbnail does not exist (a layout-1 database opened
 * read-only has none). */
int st_thumb_get(st_txn *txn, uint64_t id, uint32_t slot, st_thumb *out);

/* ------------------------------------------------------ labels, metadata */

/* Adds/removes a label of an item (write txn). Adding a present label or
 * removing an absent one succeeds and changes nothing. These do not touch
 * the change log (vectors do not change). */
int st_label_add(st_txn *txn, uint64_t id, const char *label);
int st_label_remove(st_txn *txn, uint64_t id, const char *label);
/* Ids (ascending) of the items of coll having label; *ids malloc'd (caller
 * frees; NULL when *n == 0). */
int st_label_ids(st_txn *txn, uint32_t coll, const char *label,
                 uint64_t **ids, size_t *n);
/* Sets (value != NULL) or removes (value == NULL) a metadata entry. */
int st_meta_set(st_txn *txn, uint64_t id, const char *key, const char *value);
/* Ids (ascending) of the items of coll whose metadata has key == value
 * exactly (bytes); *ids malloc'd (caller frees; NULL when *n == 0). */
int st_meta_ids(st_txn *txn, uint32_t coll, const char *key, const char *value,
                uint64_t **ids, size_t *n);

/* ------------------------------------------------------------ change log */

typedef enum st_op { ST_OP_ADD = 1, ST_OP_DEL = 2 } st_op;

typedef struct st_change {
    uint64_t seq;          /* strictly increasing per collection */
    st_op op;
    uint64_t item;
    uint32_t n_segments;   /* segments added (ADD) or removed (DEL) */
} st_change;

/* Callbacks of st_changes/st_scan_*: return 0 to go on, > 0 to stop (the
 * scan then returns 0), < 0 (a perr code) to stop and fail with it. A
 * callback may read through the same transaction but must not write to it
 * (collect ids and write after the scan). */
typedef int (*st_change_fn)(void *ud, const st_change *c);

/* Calls fn for every change of coll with seq > after_seq, in seq order.
 * An ADD of an item deleted later is still reported (the later DEL follows);
 * the replayer skips it when st_item_get says PERR_NOT_FOUND. When changes
 * after after_seq were trimmed (after_seq < log_start), PERR_NOT_FOUND: the
 * caller rebuilds from st_scan_*. */
int st_changes(st_txn *txn, uint32_t coll, uint64_t after_seq,
               st_change_fn fn, void *ud);
/* Drops change records with seq <= upto (write txn), once an index saved
 * to disk covers them. */
int st_changes_trim(st_txn *txn, uint32_t coll, uint64_t upto);

/* -------------------------------------------------------------- scanning */

/* vec valid during the call only. */
typedef int (*st_vec_fn)(void *ud, uint64_t id, const float *vec, int dim);
typedef int (*st_seg_fn)(void *ud, uint64_t item, uint32_t idx,
                         const st_segment *seg, int dim);
/* it valid during the call only. */
typedef int (*st_item_fn)(void *ud, const st_item *it);

/* Every item vector of coll in id order with id > after_id. */
int st_scan_vectors(st_txn *txn, uint32_t coll, uint64_t after_id,
                    st_vec_fn fn, void *ud);
/* Every segment of coll in (item id, index) order with item > after_id. */
int st_scan_segments(st_txn *txn, uint32_t coll, uint64_t after_id,
                     st_seg_fn fn, void *ud);
/* Every item record of coll in id order with id > after_id. */
int st_scan_items(st_txn *txn, uint32_t coll, uint64_t after_id,
                  st_item_fn fn, void *ud);

/* ----------------------------------------------------------------- stats */

typedef struct st_stats {
    uint64_t map_size;       /* configured map size, bytes */
    uint64_t page_size;
    uint64_t pages_used;     /* last used page + 1 (file high-water mark) */
    uint64_t file_bytes;     /* size of data.mdb */
    uint32_t max_readers;
    uint32_t readers_used;
    uint64_t n_collections;
    uint64_t n_items;        /* all collections */
    uint64_t n_segments;
    uint64_t last_item_id;   /* highest id ever assigned (0: none) */
    uint64_t n_thumbs;       /* thumbnails stored (items and segments) */
} st_stats;

int st_stats_get(st_txn *txn, st_stats *out);

#endif
