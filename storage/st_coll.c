/* st_coll: collections (create, look up, list, drop).
 *
 * DESIGN: a collection is a record in "colls" (key: u32 id, big-endian)
 * plus a name entry in "coll_names". Every per-collection table is keyed by
 * the collection id first, so dropping one is a range delete per table.
 * Ids come from the "next_coll" counter and are never reused.
 */
#include "storage/st_internal.h"

#include <stdlib.h>
#include <time.h>

static int check_name(const char *name) {
    if (!name) return perr_set(PERR_INVALID, "collection name: NULL");
    size_t n = strlen(name);
    if (n == 0) return perr_set(PERR_INVALID, "collection name: empty");
    if (n > ST_NAME_MAX)
        return perr_set(PERR_INVALID, "collection name of %zu bytes (max %d)", n, ST_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return perr_set(PERR_INVALID, "collection name: byte %zu (0x%02x) not allowed; "
                            "use letters, digits, '_', '.', '-'", i, c);
    }
    return PERR_OK;
}

int st_coll_load(st_txn *txn, uint32_t id, st_collection *out) {
    unsigned char k[4];
    st_be32(k, id);
    MDB_val v;
    int rc = st_get(txn, ST_T_COLLS, k, 4, &v);
    if (rc == PERR_NOT_FOUND) return perr_set(PERR_NOT_FOUND, "no collection with id %u", id);
    if (rc) return rc;
    return st_coll_decode(v.mv_data, v.mv_size, id, out);
}

int st_coll_store(st_txn *txn, const st_collection *c) {
    unsigned char k[4], buf[64 + ST_NAME_MAX + ST_FACTORY_MAX];
    size_t len;
    int rc = st_coll_encode(c, buf, sizeof buf, &len);
    if (rc) return rc;
    st_be32(k, c->id);
    return st_put(txn, ST_T_COLLS, k, 4, buf, len, 0);
}

int st_coll_create(st_txn *txn, const char *name, const char *factory, uint32_t *id_out) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if ((rc = check_name(name))) return rc;
    if (!factory || !*factory)
        return perr_set(PERR_INVALID, "collection \"%s\": empty index factory string", name);
    size_t fn = strlen(factory);
    if (fn > ST_FACTORY_MAX)
        return perr_set(PERR_INVALID, "collection \"%s\": factory string of %zu bytes (max %d)",
                        name, fn, ST_FACTORY_MAX);
    for (size_t i = 0; i < fn; i++)
        if ((unsigned char)factory[i] < 0x20 || (unsigned char)factory[i] > 0x7e)
            return perr_set(PERR_INVALID, "collection \"%s\": factory string byte %zu (0x%02x) "
                            "is not printable ASCII", name, i, (unsigned char)factory[i]);
    MDB_val v;
    rc = st_get(txn, ST_T_COLL_NAMES, name, strlen(name), &v);
    if (rc == 0) return perr_set(PERR_EXISTS, "collection \"%s\" already exists", name);
    if (rc != PERR_NOT_FOUND) return rc;

    uint64_t id;
    if ((rc = st_counter_next(txn, "next_coll", UINT32_MAX, &id))) return rc;
    st_collection c = {.id = (uint32_t)id, .created_unix = (int64_t)time(NULL)};
    memcpy(c.name, name, strlen(name) + 1);
    memcpy(c.factory, factory, fn + 1);
    unsigned char k[4];
    st_be32(k, c.id);
    if ((rc = st_put(txn, ST_T_COLL_NAMES, name, strlen(name), k, 4, 0))) return rc;
    if ((rc = st_coll_store(txn, &c))) return rc;
    if (id_out) *id_out = c.id;
    return PERR_OK;
}

int st_coll_set_flags(st_txn *txn, uint32_t id, uint32_t flags) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    if (flags & ~ST_COLL_FLAGS_ALL)
        return perr_set(PERR_INVALID, "collection %u: unknown flags 0x%x", id, flags);
    st_collection c;
    if ((rc = st_coll_load(txn, id, &c))) return rc;
    c.flags = flags;
    return st_coll_store(txn, &c);
}

int st_coll_get(st_txn *txn, const char *name, st_collection *out) {
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    if ((rc = check_name(name))) return rc;
    MDB_val v;
    rc = st_get(txn, ST_T_COLL_NAMES, name, strlen(name), &v);
    if (rc == PERR_NOT_FOUND) return perr_set(PERR_NOT_FOUND, "no collection named \"%s\"", name);
    if (rc) return rc;
    if (v.mv_size != 4)
        return perr_set(PERR_FORMAT, "coll_names: key \"%s\": %zu bytes, expected 4", name, v.mv_size);
    return st_coll_load(txn, st_rbe32(v.mv_data), out);
}

int st_coll_get_id(st_txn *txn, uint32_t id, st_collection *out) {
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    return st_coll_load(txn, id, out);
}

int st_coll_list(st_txn *txn, st_collection **out, size_t *n) {
    *out = NULL;
    *n = 0;
    int rc = st_check_txn(txn, 0);
    if (rc) return rc;
    MDB_stat ms;
    if ((rc = mdb_stat(txn->t, txn->db->dbi[ST_T_COLLS], &ms)))
        return st_mdb_fail(txn, rc, ST_T_COLLS, "stat");
    if (ms.ms_entries == 0) return PERR_OK;
    st_collection *list = malloc(ms.ms_entries * sizeof *list);
    if (!list) return perr_set(PERR_NOMEM, "storage: out of memory");
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn->t, txn->db->dbi[ST_T_COLLS], &c))) {
        free(list);
        return st_mdb_fail(txn, rc, ST_T_COLLS, "cursor");
    }
    MDB_val k, v;
    size_t cnt = 0;
    int code = PERR_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && cnt < ms.ms_entries;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 4) {
            code = perr_set(PERR_FORMAT, "colls: key of %zu bytes, expected 4", k.mv_size);
            break;
        }
        if ((code = st_coll_decode(v.mv_data, v.mv_size, st_rbe32(k.mv_data), &list[cnt])))
            break;
        cnt++;
    }
    mdb_cursor_close(c);
    if (!code && rc && rc != MDB_NOTFOUND) code = st_mdb_fail(txn, rc, ST_T_COLLS, "scan");
    if (code) { free(list); return code; }
    *out = list;
    *n = cnt;
    return PERR_OK;
}

int st_coll_drop(st_txn *txn, uint32_t id) {
    int rc = st_check_txn(txn, 1);
    if (rc) return rc;
    st_collection c;
    if ((rc = st_coll_load(txn, id, &c))) return rc;
    unsigned char p[4];
    st_be32(p, id);
    /* Item records are keyed by the global id: find them through the
     * collection's vectors (every item has exactly one). */
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn->t, txn->db->dbi[ST_T_VECTORS], &cur)))
        return st_mdb_fail(txn, rc, ST_T_VECTORS, "cursor");
    MDB_val k = {4, p}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size == 12 && !memcmp(k.mv_data, p, 4)) {
        if ((rc = st_del(txn, ST_T_ITEMS, (unsigned char *)k.mv_data + 4, 8, NULL, 0))) break;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc) return rc;
    if (mrc && mrc != MDB_NOTFOUND) return st_mdb_fail(txn, mrc, ST_T_VECTORS, "scan");
    static const int tables[] = {ST_T_VECTORS, ST_T_SEGMENTS, ST_T_HASHES, ST_T_LABELS,
                                 ST_T_META, ST_T_CHANGES, ST_T_THUMBS};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++)
        if ((rc = st_del_prefix(txn, tables[i], p, 4))) return rc;
    if ((rc = st_del(txn, ST_T_COLL_NAMES, c.name, strlen(c.name), NULL, 0))) return rc;
    return st_del(txn, ST_T_COLLS, p, 4, NULL, 0);
}
