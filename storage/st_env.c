/* st_env: the LMDB environment, transactions, error translation, the info
 * table and stats.
 *
 * DESIGN: one MDB_env per st_db, opened MDB_NOTLS (read txns not tied to
 * threads) with synced commits. All sub-databases are opened once in
 * st_open (inside a transaction that commits, so the handles stay valid for
 * the life of the env). LMDB errors are translated here, keeping LMDB's
 * text; a write that fails midway marks its transaction dead so that a half
 * item can never be committed. Never opens the same environment twice in a
 * process (LMDB forbids it: closing one handle drops the other's locks).
 */
#define _GNU_SOURCE
#include "storage/st_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

const char *const st_table_names[ST_T_COUNT] = {
    [ST_T_INFO] = "info",         [ST_T_COLLS] = "colls",
    [ST_T_COLL_NAMES] = "coll_names", [ST_T_ITEMS] = "items",
    [ST_T_VECTORS] = "vectors",   [ST_T_SEGMENTS] = "segments",
    [ST_T_HASHES] = "hashes",     [ST_T_LABELS] = "labels",
    [ST_T_META] = "meta",         [ST_T_CHANGES] = "changes",
    [ST_T_THUMBS] = "thumbs",
};

static unsigned table_flags(int t) {
    return (t == ST_T_LABELS || t == ST_T_META) ? MDB_DUPSORT | MDB_DUPFIXED : 0;
}

/* ------------------------------------------------------------- errors */

int st_mdb_code(int rc) {
    switch (rc) {
    case 0: return PERR_OK;
    case MDB_NOTFOUND: return PERR_NOT_FOUND;
    case MDB_KEYEXIST: return PERR_EXISTS;
    case MDB_MAP_FULL: return PERR_FULL;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
    case MDB_BAD_VALSIZE: return PERR_FORMAT;
    case MDB_VERSION_MISMATCH: return PERR_VERSION;
    case MDB_READERS_FULL: case MDB_MAP_RESIZED: case MDB_TXN_FULL:
    case MDB_DBS_FULL: return PERR_BUSY;
    case ENOMEM: return PERR_NOMEM;
    case ENOSPC: return PERR_FULL;
    case ENOENT: return PERR_NOT_FOUND;
    case EACCES: case EIO: case EROFS: case EAGAIN: return PERR_IO;
    default: return PERR_DB;
    }
}

void st_poison(st_txn *txn, int code) {
    if (!txn || !txn->write || txn->dead) return;
    txn->dead = 1;
    txn->dead_code = code;
    snprintf(txn->dead_msg, sizeof txn->dead_msg, "%s", perr_msg());
}

int st_mdb_fail(st_txn *txn, int rc, int table, const char *fmt, ...) {
    int code = st_mdb_code(rc);
    char ctx[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    const char *tname = table >= 0 && table < ST_T_COUNT ? st_table_names[table] : NULL;
    if (rc == MDB_MAP_FULL) {
        MDB_envinfo ei;
        uint64_t map = 0;
        if (txn && mdb_env_info(txn->db->env, &ei) == 0) map = ei.me_mapsize;
        perr_set(code, "database full: %s%s%s: the map size of %llu bytes is "
                 "used up (the transaction was aborted; reopen with a larger "
                 "map_size)", tname ? tname : "", tname ? ": " : "", ctx,
                 (unsigned long long)map);
    } else {
        perr_set(code, "%s%s%s: %s", tname ? tname : "", tname ? ": " : "",
                 ctx, mdb_strerror(rc));
    }
    if (txn && txn->write && rc != MDB_NOTFOUND) st_poison(txn, code);
    return code;
}

int st_check_txn(st_txn *txn, int write) {
    if (!txn) return perr_set(PERR_INVALID, "storage: NULL transaction");
    if (write && !txn->write)
        return perr_set(PERR_INVALID, "storage: this operation needs a write transaction");
    if (txn->dead)
        return perr_set(txn->dead_code, "storage: the write transaction was "
                        "aborted by an earlier error (%s); abort it", txn->dead_msg);
    return PERR_OK;
}

/* ------------------------------------------------------ table helpers */

int st_get(st_txn *txn, int table, const void *key, size_t klen, MDB_val *val) {
    MDB_val k = {klen, (void *)key};
    int rc = mdb_get(txn->t, txn->db->dbi[table], &k, val);
    if (rc == MDB_NOTFOUND) return PERR_NOT_FOUND; /* caller names it */
    if (rc) return st_mdb_fail(txn, rc, table, "get");
    return PERR_OK;
}

int st_put(st_txn *txn, int table, const void *key, size_t klen,
           const void *val, size_t vlen, unsigned flags) {
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_put(txn->t, txn->db->dbi[table], &k, &v, flags);
    if (rc == MDB_KEYEXIST && (flags & (MDB_NODUPDATA | MDB_NOOVERWRITE)))
        return PERR_EXISTS;
    if (rc) return st_mdb_fail(txn, rc, table, "put (%zu-byte key, %zu-byte value)", klen, vlen);
    return PERR_OK;
}

int st_del(st_txn *txn, int table, const void *key, size_t klen,
           const void *data, size_t dlen) {
    MDB_val k = {klen, (void *)key}, d = {dlen, (void *)data};
    int rc = mdb_del(txn->t, txn->db->dbi[table], &k, data ? &d : NULL);
    if (rc == MDB_NOTFOUND) return PERR_OK;
    if (rc) return st_mdb_fail(txn, rc, table, "delete");
    return PERR_OK;
}

int st_del_prefix(st_txn *txn, int table, const void *prefix, size_t plen) {
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn->t, txn->db->dbi[table], &c);
    if (rc) return st_mdb_fail(txn, rc, table, "cursor");
    unsigned del_flags = (table_flags(table) & MDB_DUPSORT) ? MDB_NODUPDATA : 0;
    for (;;) { /* seek again after each delete: simple and O(log n) */
        MDB_val k = {plen, (void *)prefix}, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size < plen || memcmp(k.mv_data, prefix, plen)) break;
        if ((rc = mdb_cursor_del(c, del_flags))) break;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND) return st_mdb_fail(txn, rc, table, "delete range");
    return PERR_OK;
}

const float *st_txn_floats(st_txn *txn, const void *p, size_t nfloats) {
    if (((uintptr_t)p & 3) == 0) return p;
    st_buf *b = malloc(sizeof *b + nfloats * sizeof(float));
    if (!b) return NULL;
    memcpy(b->data, p, nfloats * sizeof(float));
    b->next = txn->bufs;
    txn->bufs = b;
    return (const float *)b->data;
}

/* --------------------------------------------------------------- info */

/* info table: "layout" u32, "created" i64, "model" (u64 fp, i32 dim, u8 n,
 * name), "next_item" u64, "next_coll" u64. */
static int info_get(st_txn *txn, const char *key, MDB_val *v) {
    int rc = st_get(txn, ST_T_INFO, key, strlen(key), v);
    if (rc == PERR_NOT_FOUND)
        return perr_set(PERR_FORMAT, "info: key \"%s\" missing (not a percept database?)", key);
    return rc;
}

int st_counter_peek(st_txn *txn, const char *key, uint64_t *out) {
    MDB_val v;
    int rc = info_get(txn, key, &v);
    if (rc) return rc;
    if (v.mv_size != 8)
        return perr_set(PERR_FORMAT, "info: key \"%s\": %zu bytes, expected 8", key, v.mv_size);
    ST_GET(*out, v.mv_data);
    return PERR_OK;
}

int st_counter_next(st_txn *txn, const char *key, uint64_t max, uint64_t *out) {
    uint64_t next;
    int rc = st_counter_peek(txn, key, &next);
    if (rc) return rc;
    if (next == 0 || next > max)
        return perr_set(PERR_FULL, "info: counter \"%s\" exhausted (%llu)", key,
                        (unsigned long long)next);
    uint64_t after = next + 1;
    rc = st_put(txn, ST_T_INFO, key, strlen(key), &after, 8, 0);
    if (rc) return rc;
    *out = next;
    return PERR_OK;
}

int st_dim(st_txn *txn, int *dim) {
    if (txn->dim >= 0) { *dim = txn->dim; return PERR_OK; }
    st_info info;
    int rc = st_info_get(txn, &info);
    if (rc) return rc;
    *dim = txn->dim = info.dim;
    return PERR_OK;
}

int st_info_get(st_txn *txn, st_info *out) {
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    MDB_val v;
    if ((rc = info_get(txn, "layout", &v))) return rc;
    if (v.mv_size != 4) return perr_set(PERR_FORMAT, "info: key \"layout\": %zu bytes, expected 4", v.mv_size);
    ST_GET(out->layout_version, v.mv_data);
    if ((rc = info_get(txn, "created", &v))) return rc;
    if (v.mv_size != 8) return perr_set(PERR_FORMAT, "info: key \"created\": %zu bytes, expected 8", v.mv_size);
    ST_GET(out->created_unix, v.mv_data);
    if ((rc = info_get(txn, "model", &v))) return rc;
    const unsigned char *p = v.mv_data;
    if (v.mv_size < 13 || v.mv_size != 13u + p[12] || p[12] > ST_MODEL_NAME_MAX)
        return perr_set(PERR_FORMAT, "info: key \"model\": bad record of %zu bytes", v.mv_size);
    ST_GET(out->model_fingerprint, p);
    ST_GET(out->dim, p + 8);
    if (out->dim < 0 || out->dim > ST_DIM_MAX)
        return perr_set(PERR_FORMAT, "info: key \"model\": dimension %d out of range", out->dim);
    memcpy(out->model_name, p + 13, p[12]);
    out->model_name[p[12]] = 0;
    return PERR_OK;
}

static int model_put(st_txn *txn, uint64_t fp, const char *name, int32_t dim) {
    unsigned char buf[13 + ST_MODEL_NAME_MAX];
    size_t n = strlen(name);
    ST_PUT(buf, fp);
    ST_PUT(buf + 8, dim);
    buf[12] = (unsigned char)n;
    memcpy(buf + 13, name, n);
    return st_put(txn, ST_T_INFO, "model", 5, buf, 13 + n, 0);
}

int st_model_set(st_txn *txn, uint64_t fingerprint, const char *name, int dim) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if (!name) name = "";
    if (strlen(name) > ST_MODEL_NAME_MAX)
        return perr_set(PERR_INVALID, "model name of %zu bytes (max %d)", strlen(name), ST_MODEL_NAME_MAX);
    if (dim < 1 || dim > ST_DIM_MAX)
        return perr_set(PERR_INVALID, "embedding dimension %d out of range 1..%d", dim, ST_DIM_MAX);
    int cur;
    if ((rc = st_dim(txn, &cur))) return rc;
    if (cur != dim) {
        MDB_stat ms;
        int mrc = mdb_stat(txn->t, txn->db->dbi[ST_T_ITEMS], &ms);
        if (mrc) return st_mdb_fail(txn, mrc, ST_T_ITEMS, "stat");
        if (ms.ms_entries > 0)
            return perr_set(PERR_MODEL, "cannot change the embedding dimension from %d to %d: "
                            "the database holds %zu items", cur, dim, (size_t)ms.ms_entries);
    }
    if ((rc = model_put(txn, fingerprint, name, dim))) return rc;
    txn->dim = dim;
    return PERR_OK;
}

/* ------------------------------------------------------------- open */

void st_opts_default(st_opts *o) {
    memset(o, 0, sizeof *o);
    o->map_size = UINT64_C(64) << 30;
    o->create = 1;
    o->max_readers = 126;
}

static int init_fresh(st_txn *txn) {
    uint32_t layout = ST_LAYOUT_VERSION;
    int64_t now = (int64_t)time(NULL);
    uint64_t one = 1;
    int rc;
    if ((rc = st_put(txn, ST_T_INFO, "layout", 6, &layout, 4, 0))) return rc;
    if ((rc = st_put(txn, ST_T_INFO, "created", 7, &now, 8, 0))) return rc;
    if ((rc = model_put(txn, 0, "", 0))) return rc;
    if ((rc = st_put(txn, ST_T_INFO, "next_item", 9, &one, 8, 0))) return rc;
    if ((rc = st_put(txn, ST_T_INFO, "next_coll", 9, &one, 8, 0))) return rc;
    return PERR_OK;
}

/* Opens every table (creating them in a fresh database) and checks the
 * layout version. */
static int open_tables(st_db *db) {
    st_txn txn = {.db = db, .write = !db->read_only, .dim = -1};
    int rc = mdb_txn_begin(db->env, NULL, db->read_only ? MDB_RDONLY : 0, &txn.t);
    if (rc) return st_mdb_fail(NULL, rc, -1, "%s: begin transaction", db->dir);
    /* A percept database has an "info" table; an empty environment is a
     * fresh one (also after a crash before the first commit). */
    MDB_dbi info;
    int fresh = 0;
    rc = mdb_dbi_open(txn.t, "info", 0, &info);
    if (rc == MDB_NOTFOUND) {
        MDB_dbi main_dbi;
        MDB_stat ms;
        int empty = mdb_dbi_open(txn.t, NULL, 0, &main_dbi) == 0 &&
                    mdb_stat(txn.t, main_dbi, &ms) == 0 && ms.ms_entries == 0;
        if (!empty) {
            mdb_txn_abort(txn.t);
            return perr_set(PERR_FORMAT, "%s: an LMDB environment, but not a percept database", db->dir);
        }
        if (db->read_only) {
            mdb_txn_abort(txn.t);
            return perr_set(PERR_NOT_FOUND, "%s: no percept database (empty environment)", db->dir);
        }
        fresh = 1;
    } else if (rc) {
        mdb_txn_abort(txn.t);
        return st_mdb_fail(NULL, rc, ST_T_INFO, "%s: open", db->dir);
    }
    db->has_thumbs = 1;
    for (int t = 0; t < ST_T_COUNT; t++) {
        rc = mdb_dbi_open(txn.t, st_table_names[t],
                          table_flags(t) | (db->read_only ? 0 : MDB_CREATE), &db->dbi[t]);
        if (rc == MDB_NOTFOUND && t == ST_T_THUMBS) {
            /* layout 1 read-only (checked below): no thumbnails */
            db->has_thumbs = 0;
            continue;
        }
        if (rc) {
            mdb_txn_abort(txn.t);
            if (rc == MDB_NOTFOUND)
                return perr_set(PERR_FORMAT, "%s: table \"%s\" missing", db->dir, st_table_names[t]);
            return st_mdb_fail(NULL, rc, t, "%s: open", db->dir);
        }
    }
    if (fresh && (rc = init_fresh(&txn))) {
        mdb_txn_abort(txn.t);
        return perr_prefix(rc, "%s: initialise", db->dir);
    }
    MDB_val v;
    rc = st_get(&txn, ST_T_INFO, "layout", 6, &v);
    if (rc || v.mv_size != 4) {
        mdb_txn_abort(txn.t);
        return perr_set(PERR_FORMAT, "%s: info: layout version record missing or malformed", db->dir);
    }
    uint32_t layout;
    ST_GET(layout, v.mv_data);
    if (layout < ST_LAYOUT_VERSION_MIN || layout > ST_LAYOUT_VERSION) {
        mdb_txn_abort(txn.t);
        return perr_set(PERR_VERSION, "%s: database layout version %u, this build reads "
                        "versions %d to %d", db->dir, layout, ST_LAYOUT_VERSION_MIN,
                        ST_LAYOUT_VERSION);
    }
    if (layout == 2 && !db->has_thumbs) {
        mdb_txn_abort(txn.t);
        return perr_set(PERR_FORMAT, "%s: table \"thumbs\" missing", db->dir);
    }
    if (layout == 1 && !db->read_only) {
        /* 1 -> 2 adds the (now created, empty) thumbnails table only. */
        uint32_t now = ST_LAYOUT_VERSION;
        if ((rc = st_put(&txn, ST_T_INFO, "layout", 6, &now, 4, 0))) {
            mdb_txn_abort(txn.t);
            return perr_prefix(rc, "%s: upgrading layout 1 to %d", db->dir, ST_LAYOUT_VERSION);
        }
    }
    st_info inf;
    if ((rc = st_info_get(&txn, &inf))) {
        mdb_txn_abort(txn.t);
        return perr_prefix(rc, "%s", db->dir);
    }
    rc = mdb_txn_commit(txn.t);
    if (rc) return st_mdb_fail(NULL, rc, -1, "%s: commit", db->dir);
    return PERR_OK;
}

int st_open(const char *dir, const st_opts *opts, st_db **out) {
    *out = NULL;
    st_opts o;
    if (opts) o = *opts; else st_opts_default(&o);
    if (!o.map_size) o.map_size = UINT64_C(64) << 30;
    if (!o.max_readers) o.max_readers = 126;
    if (!dir || !*dir) return perr_set(PERR_INVALID, "storage: empty database directory");
    int create = o.create && !o.read_only;

    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT || !create) return perr_errno(errno, "%s", dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) return perr_errno(errno, "mkdir %s", dir);
    } else if (!S_ISDIR(sb.st_mode)) {
        return perr_set(PERR_INVALID, "%s: not a directory", dir);
    }

    st_db *db = calloc(1, sizeof *db);
    if (!db) return perr_set(PERR_NOMEM, "storage: out of memory");
    db->read_only = o.read_only;
    if (asprintf(&db->dir, "%s", dir) < 0) db->dir = NULL;
    if (asprintf(&db->index_dir, "%s/index", dir) < 0) db->index_dir = NULL;
    if (asprintf(&db->data_path, "%s/data.mdb", dir) < 0) db->data_path = NULL;
    if (!db->dir || !db->index_dir || !db->data_path) {
        st_close(db);
        return perr_set(PERR_NOMEM, "storage: out of memory");
    }
    if (stat(db->data_path, &sb) != 0) {
        if (errno != ENOENT || !create) {
            int rc = errno == ENOENT
                ? perr_set(PERR_NOT_FOUND, "%s: no percept database (no data.mdb)", dir)
                : perr_errno(errno, "%s", db->data_path);
            st_close(db);
            return rc;
        }
    }

    int rc = mdb_env_create(&db->env);
    if (rc) { st_close(db); return st_mdb_fail(NULL, rc, -1, "%s: create environment", dir); }
    if ((rc = mdb_env_set_maxdbs(db->env, ST_T_COUNT + 2)) ||
        (rc = mdb_env_set_maxreaders(db->env, o.max_readers)) ||
        (rc = mdb_env_set_mapsize(db->env, (size_t)o.map_size))) {
        st_close(db);
        return st_mdb_fail(NULL, rc, -1, "%s: configure environment", dir);
    }
    unsigned flags = MDB_NOTLS | (o.read_only ? MDB_RDONLY : 0);
    rc = mdb_env_open(db->env, dir, flags, 0644);
    if (rc) {
        int code = st_mdb_fail(NULL, rc, -1, "%s: open LMDB environment", dir);
        st_close(db);
        return code;
    }
    int dead = 0;
    rc = mdb_reader_check(db->env, &dead); /* slots of crashed processes */
    if (rc) {
        int code = st_mdb_fail(NULL, rc, -1, "%s: reader check", dir);
        st_close(db);
        return code;
    }
    if ((rc = open_tables(db))) { st_close(db); return rc; }
    if (!o.read_only && mkdir(db->index_dir, 0755) != 0 && errno != EEXIST) {
        rc = perr_errno(errno, "mkdir %s", db->index_dir);
        st_close(db);
        return rc;
    }
    *out = db;
    return PERR_OK;
}

void st_close(st_db *db) {
    if (!db) return;
    if (db->env) mdb_env_close(db->env);
    free(db->dir);
    free(db->index_dir);
    free(db->data_path);
    free(db);
}

const char *st_dir(const st_db *db) { return db->dir; }
const char *st_index_dir(const st_db *db) { return db->index_dir; }

/* ------------------------------------------------------- transactions */

int st_txn_begin(st_db *db, int write, st_txn **out) {
    *out = NULL;
    if (write && db->read_only)
        return perr_set(PERR_INVALID, "%s: database opened read-only", db->dir);
    st_txn *txn = calloc(1, sizeof *txn);
    if (!txn) return perr_set(PERR_NOMEM, "storage: out of memory");
    txn->db = db;
    txn->write = !!write;
    txn->dim = -1;
    int rc = mdb_txn_begin(db->env, NULL, write ? 0 : MDB_RDONLY, &txn->t);
    if (rc == MDB_MAP_RESIZED && !write) {
        /* Another process grew the map: adopt its size and retry once. */
        if (mdb_env_set_mapsize(db->env, 0) == 0)
            rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn->t);
    }
    if (rc) {
        free(txn);
        return st_mdb_fail(NULL, rc, -1, "%s: begin %s transaction", db->dir,
                           write ? "write" : "read");
    }
    *out = txn;
    return PERR_OK;
}

static void txn_free(st_txn *txn) {
    st_buf *b = txn->bufs;
    while (b) { st_buf *n = b->next; free(b); b = n; }
    free(txn);
}

int st_txn_commit(st_txn *txn) {
    if (!txn) return perr_set(PERR_INVALID, "storage: NULL transaction");
    if (txn->dead) {
        int code = perr_set(txn->dead_code, "storage: commit refused, the transaction "
                            "was aborted by an earlier error (%s)", txn->dead_msg);
        mdb_txn_abort(txn->t);
        txn_free(txn);
        return code;
    }
    int rc = mdb_txn_commit(txn->t); /* frees txn->t, also on failure */
    int code = PERR_OK;
    if (rc) {
        txn->write = 0; /* nothing to poison: the txn is gone */
        code = st_mdb_fail(NULL, rc, -1, "%s: commit", txn->db->dir);
        if (rc == MDB_MAP_FULL)
            perr_set(PERR_FULL, "%s: database full at commit: the map size is used up "
                     "(the transaction was aborted; reopen with a larger map_size)",
                     txn->db->dir);
    }
    txn_free(txn);
    return code;
}

void st_txn_abort(st_txn *txn) {
    if (!txn) return;
    mdb_txn_abort(txn->t);
    txn_free(txn);
}

int st_txn_is_write(const st_txn *txn) { return txn && txn->write; }

/* -------------------------------------------------------------- stats */

int st_stats_get(st_txn *txn, st_stats *out) {
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    MDB_envinfo ei;
    MDB_stat es, ms;
    if ((rc = mdb_env_info(txn->db->env, &ei)) || (rc = mdb_env_stat(txn->db->env, &es)))
        return st_mdb_fail(txn, rc, -1, "%s: environment info", txn->db->dir);
    out->map_size = ei.me_mapsize;
    out->page_size = es.ms_psize;
    out->pages_used = (uint64_t)ei.me_last_pgno + 1;
    out->max_readers = ei.me_maxreaders;
    out->readers_used = ei.me_numreaders;
    struct stat sb;
    if (stat(txn->db->data_path, &sb) == 0) out->file_bytes = (uint64_t)sb.st_size;
    if ((rc = mdb_stat(txn->t, txn->db->dbi[ST_T_COLLS], &ms)))
        return st_mdb_fail(txn, rc, ST_T_COLLS, "stat");
    out->n_collections = ms.ms_entries;
    if ((rc = mdb_stat(txn->t, txn->db->dbi[ST_T_ITEMS], &ms)))
        return st_mdb_fail(txn, rc, ST_T_ITEMS, "stat");
    out->n_items = ms.ms_entries;
    if ((rc = mdb_stat(txn->t, txn->db->dbi[ST_T_SEGMENTS], &ms)))
        return st_mdb_fail(txn, rc, ST_T_SEGMENTS, "stat");
    out->n_segments = ms.ms_entries;
    if (txn->db->has_thumbs) {
        if ((rc = mdb_stat(txn->t, txn->db->dbi[ST_T_THUMBS], &ms)))
            return st_mdb_fail(txn, rc, ST_T_THUMBS, "stat");
        out->n_thumbs = ms.ms_entries;
    }
    uint64_t next;
    if ((rc = st_counter_peek(txn, "next_item", &next))) return rc;
    out->last_item_id = next - 1;
    return PERR_OK;
}
