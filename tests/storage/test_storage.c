/* Storage unit tests: round trips of every field, delete semantics, change
 * log, scans, collections, version refusal, corrupt records, a full map,
 * concurrent readers. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "storage/st.h"
#include "tests/common/testlib.h"
#include "tests/storage/st_testutil.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DIM 16

/* A fresh database with a model of DIM and one collection "photos". */
static st_db *fresh(char **dir, const char *tag, uint64_t map_size, uint32_t *coll) {
    *dir = t_tmpdir(tag);
    st_opts o;
    st_opts_default(&o);
    if (map_size) o.map_size = map_size;
    st_db *db = NULL;
    if (st_open(*dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return NULL; }
    st_txn *txn;
    if (st_txn_begin(db, 1, &txn) || st_model_set(txn, 0xabcdef, "tiny-a", DIM) ||
        st_coll_create(txn, "photos", "Flat", coll) || st_txn_commit(txn)) {
        fprintf(stderr, "setup: %s\n", perr_msg());
        st_close(db);
        return NULL;
    }
    return db;
}

static int add_seed(st_db *db, uint32_t coll, uint64_t seed, uint64_t *id, uint64_t *seq) {
    tu_item t;
    tu_item_make(&t, seed, DIM);
    st_txn *txn;
    int rc = st_txn_begin(db, 1, &txn);
    if (rc) return rc;
    rc = st_item_add(txn, coll, &t.it, t.vec, t.segs, t.n_segs, id, seq);
    if (rc) { st_txn_abort(txn); return rc; }
    return st_txn_commit(txn);
}

/* ------------------------------------------------------------ open/info */

static void test_open_and_info(void) {
    char *dir = t_tmpdir("st-open");
    char *sub = t_path("%s/db", dir);
    st_db *db;
    CHECK_ERR(st_open(sub, &(st_opts){.read_only = 1}, &db), PERR_NOT_FOUND);
    CHECK_ERR(st_open(sub, &(st_opts){.create = 0}, &db), PERR_NOT_FOUND);
    REQUIRE_OK(st_open(sub, NULL, &db));
    struct stat sb;
    CHECK(stat(st_index_dir(db), &sb) == 0 && S_ISDIR(sb.st_mode));
    char *data = t_path("%s/data.mdb", sub);
    CHECK(stat(data, &sb) == 0);
    free(data);
    CHECK_STR(st_dir(db), sub);
    st_txn *txn;
    st_info info;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_info_get(txn, &info));
    CHECK_EQ_INT(info.layout_version, ST_LAYOUT_VERSION);
    CHECK_EQ_INT(info.dim, 0);
    CHECK(llabs(info.created_unix - (int64_t)time(NULL)) < 60);
    CHECK_ERR(st_model_set(txn, 1, "x", 0), PERR_INVALID);
    CHECK_ERR(st_model_set(txn, 1, "x", ST_DIM_MAX + 1), PERR_INVALID);
    CHECK_OK(st_model_set(txn, UINT64_C(0x1234567890abcdef), "PE-Core-T16-384", DIM));
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);

    /* A file where the directory should be. */
    char *file = t_path("%s/file", dir);
    t_write_file(file, "x", 1);
    CHECK_ERR(st_open(file, NULL, &db), PERR_INVALID);
    free(file);

    REQUIRE_OK(st_open(sub, &(st_opts){.read_only = 1}, &db));
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    REQUIRE_OK(st_info_get(txn, &info));
    CHECK_EQ_INT(info.dim, DIM);
    CHECK(info.model_fingerprint == UINT64_C(0x1234567890abcdef));
    CHECK_STR(info.model_name, "PE-Core-T16-384");
    uint32_t id;
    CHECK_ERR(st_coll_create(txn, "x", "Flat", &id), PERR_INVALID); /* read txn */
    st_txn_abort(txn);
    CHECK_ERR(st_txn_begin(db, 1, &txn), PERR_INVALID);             /* read-only db */
    st_close(db);
    st_txn_abort(NULL);
    st_close(NULL);
    t_rmtree(dir);
    free(sub);
    free(dir);
}

/* ---------------------------------------------------------- collections */

static void test_collections(void) {
    char *dir;
    uint32_t photos;
    st_db *db = fresh(&dir, "st-coll", 0, &photos);
    REQUIRE(db);
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    uint32_t id;
    CHECK_ERR(st_coll_create(txn, "", "Flat", &id), PERR_INVALID);
    CHECK_ERR(st_coll_create(txn, "a b", "Flat", &id), PERR_INVALID);
    CHECK(strstr(perr_msg(), "byte 1") != NULL);
    CHECK_ERR(st_coll_create(txn, "café", "Flat", &id), PERR_INVALID);
    char longname[ST_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[ST_NAME_MAX + 1] = 0;
    CHECK_ERR(st_coll_create(txn, longname, "Flat", &id), PERR_INVALID);
    longname[ST_NAME_MAX] = 0; /* exactly the limit */
    uint32_t lid;
    CHECK_OK(st_coll_create(txn, longname, "HNSW32,Flat", &lid));
    CHECK_ERR(st_coll_create(txn, "photos", "Flat", &id), PERR_EXISTS);
    CHECK_ERR(st_coll_create(txn, "x", "", &id), PERR_INVALID);
    CHECK_ERR(st_coll_create(txn, "x", "Fl\nat", &id), PERR_INVALID);
    uint32_t vid;
    CHECK_OK(st_coll_create(txn, "Videos_2024.v-1", "IVF256,PQ32", &vid));
    REQUIRE_OK(st_txn_commit(txn));

    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    st_collection c;
    REQUIRE_OK(st_coll_get(txn, "Videos_2024.v-1", &c));
    CHECK_EQ_INT(c.id, vid);
    CHECK_STR(c.factory, "IVF256,PQ32");
    CHECK_EQ_INT(c.seq, 0);
    CHECK_EQ_INT(c.n_items, 0);
    REQUIRE_OK(st_coll_get_id(txn, lid, &c));
    CHECK_STR(c.name, longname);
    CHECK_ERR(st_coll_get(txn, "nope", &c), PERR_NOT_FOUND);
    CHECK_ERR(st_coll_get_id(txn, 999, &c), PERR_NOT_FOUND);
    st_collection *list;
    size_t n;
    REQUIRE_OK(st_coll_list(txn, &list, &n));
    REQUIRE(n == 3);
    CHECK_STR(list[0].name, "photos");
    CHECK_EQ_INT(list[0].id, photos);
    CHECK_EQ_INT(list[1].id, lid);
    CHECK_EQ_INT(list[2].id, vid);
    CHECK(photos < lid && lid < vid);
    free(list);
    st_txn_abort(txn);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------ round trip */

static void test_item_round_trip(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-item", 0, &coll);
    REQUIRE(db);
    uint64_t ids[6], seq;
    for (uint64_t s = 0; s < 6; s++) {
        REQUIRE_OK(add_seed(db, coll, s, &ids[s], &seq));
        CHECK_EQ_INT(seq, s + 1);
        if (s) CHECK(ids[s] > ids[s - 1]);
    }
    st_close(db);

    /* Everything survives a reopen. */
    st_opts o;
    st_opts_default(&o);
    REQUIRE_OK(st_open(dir, &o, &db));
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    for (uint64_t s = 0; s < 6; s++) {
        const char *why = tu_item_check(txn, ids[s], s, DIM);
        if (why) t_fail(__FILE__, __LINE__, "%s", why);
        tu_item t;
        tu_item_make(&t, s, DIM);
        uint64_t hid = 0;
        CHECK_OK(st_hash_lookup(txn, coll, t.it.hash, &hid));
        CHECK(hid == ids[s]);
    }
    /* Labels come back sorted and unique; the unicode label is indexed. */
    st_item *it;
    REQUIRE_OK(st_item_get(txn, ids[0], &it));
    CHECK_STR(it->labels[0], "mod-0");
    CHECK_STR(it->labels[1], "seed-0");
    CHECK_STR(it->labels[2], "猫");
    CHECK_STR(it->uri, "/data/фото/0-ü.jpg");
    CHECK_EQ_INT(it->coll, coll);
    st_item_free(it);
    uint64_t *lids;
    size_t n;
    REQUIRE_OK(st_label_ids(txn, coll, "猫", &lids, &n));
    CHECK_EQ_INT(n, 6);
    for (size_t i = 0; i < n; i++) CHECK(lids[i] == ids[i]);
    free(lids);
    REQUIRE_OK(st_label_ids(txn, coll, "mod-1", &lids, &n));
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK(lids[0] == ids[1]);
    free(lids);
    REQUIRE_OK(st_label_ids(txn, coll, "absent", &lids, &n));
    CHECK(n == 0 && lids == NULL);
    REQUIRE_OK(st_meta_ids(txn, coll, "camera", "cam-1", &lids, &n));
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK(lids[0] == ids[1]);
    free(lids);
    REQUIRE_OK(st_meta_ids(txn, coll, "seed", "5", &lids, &n));
    CHECK(n == 1 && lids[0] == ids[5]);
    free(lids);
    st_collection c;
    REQUIRE_OK(st_coll_get_id(txn, coll, &c));
    CHECK_EQ_INT(c.n_items, 6);
    CHECK_EQ_INT(c.n_segments, 1 + 4); /* videos: seeds 0, 3 (1 + s % 4 segments) */
    CHECK_EQ_INT(c.seq, 6);
    CHECK_ERR(st_item_get(txn, 12345, &it), PERR_NOT_FOUND);
    st_txn_abort(txn);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

static void test_item_validation(void) {
    char *dir;
    uint32_t coll, other;
    st_db *db = fresh(&dir, "st-valid", 0, &coll);
    REQUIRE(db);
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_coll_create(txn, "other", "Flat", &other));
    tu_item t;
    tu_item_make(&t, 1, DIM);
    uint64_t id, id2;
    /* Rejected items leave the transaction usable. */
    t.vec[3] = NAN;
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id, NULL), PERR_INVALID);
    tu_vec(t.vec, DIM, 1, 0);
    t.it.media = 7;
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id, NULL), PERR_INVALID);
    t.it.media = ST_MEDIA_IMAGE;
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, t.segs, 1, &id, NULL), PERR_INVALID);
    const char *badlab[] = {"ok", "\xff\xfe"};
    t.it.labels = badlab;
    t.it.n_labels = 2;
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id, NULL), PERR_INVALID);
    const char *emptylab[] = {""};
    t.it.labels = emptylab;
    t.it.n_labels = 1;
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id, NULL), PERR_INVALID);
    st_kv dup[] = {{"a", "1"}, {"a", "2"}};
    t.it.labels = NULL;
    t.it.n_labels = 0;
    t.it.meta = dup;
    t.it.n_meta = 2;
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id, NULL), PERR_INVALID);
    CHECK(strstr(perr_msg(), "\"a\"") != NULL);
    CHECK_ERR(st_item_add(txn, 999, &t.it, t.vec, NULL, 0, &id, NULL), PERR_NOT_FOUND);

    /* Duplicate labels collapse; a long metadata value is indexed too. */
    char *longv = malloc(5000);
    memset(longv, 'v', 4999);
    longv[4999] = 0;
    const char *labs[] = {"b", "a", "b", "a"};
    st_kv meta[] = {{"caption", longv}, {"empty", ""}};
    t.it.labels = labs;
    t.it.n_labels = 4;
    t.it.meta = meta;
    t.it.n_meta = 2;
    t.it.uri = NULL;
    t.it.created_ms = 0;
    REQUIRE_OK(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id, NULL));
    /* Same bytes: refused in the same collection, with the existing id. */
    CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &id2, NULL), PERR_EXISTS);
    CHECK(id2 == id);
    /* ... but allowed in another one. */
    CHECK_OK(st_item_add(txn, other, &t.it, t.vec, NULL, 0, &id2, NULL));
    CHECK(id2 > id);
    st_item *it;
    REQUIRE_OK(st_item_get(txn, id, &it));
    CHECK_EQ_INT(it->n_labels, 2);
    CHECK_STR(it->uri, "");
    CHECK_STR(it->codec, "");
    CHECK(it->created_ms > 1600000000000LL);
    CHECK_EQ_INT(it->n_meta, 2);
    CHECK_STR(it->meta[0].key, "caption");
    CHECK(strlen(it->meta[0].value) == 4999);
    st_item_free(it);
    uint64_t *ids;
    size_t n;
    REQUIRE_OK(st_meta_ids(txn, coll, "caption", longv, &ids, &n));
    CHECK(n == 1 && ids[0] == id);
    free(ids);
    longv[4000] = 'w'; /* same 256-byte prefix, other value */
    REQUIRE_OK(st_meta_ids(txn, coll, "caption", longv, &ids, &n));
    CHECK_EQ_INT(n, 0);
    REQUIRE_OK(st_meta_ids(txn, coll, "empty", "", &ids, &n));
    CHECK(n == 1 && ids[0] == id);
    free(ids);
    free(longv);
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------ labels, metadata */

static void test_label_meta_updates(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-lab", 0, &coll);
    REQUIRE(db);
    uint64_t a, b;
    REQUIRE_OK(add_seed(db, coll, 10, &a, NULL));
    REQUIRE_OK(add_seed(db, coll, 11, &b, NULL));
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    CHECK_OK(st_label_add(txn, a, "nsfw"));
    CHECK_OK(st_label_add(txn, a, "nsfw")); /* no-op */
    CHECK_OK(st_label_add(txn, b, "nsfw"));
    CHECK_OK(st_label_add(txn, a, "aaa"));
    CHECK_OK(st_label_remove(txn, b, "猫"));
    CHECK_OK(st_label_remove(txn, b, "never-there"));
    CHECK_ERR(st_label_add(txn, 9999, "x"), PERR_NOT_FOUND);
    CHECK_ERR(st_label_add(txn, a, ""), PERR_INVALID);
    CHECK_OK(st_meta_set(txn, a, "camera", "leica"));   /* replace */
    CHECK_OK(st_meta_set(txn, a, "zzz", "last"));       /* insert at end */
    CHECK_OK(st_meta_set(txn, a, "aaa", "first"));      /* insert at start */
    CHECK_OK(st_meta_set(txn, b, "seed", NULL));        /* remove */
    CHECK_OK(st_meta_set(txn, b, "nothing", NULL));     /* remove absent */
    REQUIRE_OK(st_txn_commit(txn));

    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    uint64_t *ids;
    size_t n;
    REQUIRE_OK(st_label_ids(txn, coll, "nsfw", &ids, &n));
    CHECK(n == 2 && ids[0] == a && ids[1] == b);
    free(ids);
    REQUIRE_OK(st_label_ids(txn, coll, "猫", &ids, &n));
    CHECK(n == 1 && ids[0] == a);
    free(ids);
    st_item *it;
    REQUIRE_OK(st_item_get(txn, a, &it));
    CHECK_EQ_INT(it->n_labels, 5);
    CHECK_STR(it->labels[0], "aaa");
    CHECK_STR(it->labels[3], "seed-10");
    CHECK_EQ_INT(it->n_meta, 4);
    CHECK_STR(it->meta[0].key, "aaa");
    CHECK_STR(it->meta[1].value, "leica");
    CHECK_STR(it->meta[3].key, "zzz");
    st_item_free(it);
    REQUIRE_OK(st_item_get(txn, b, &it));
    CHECK_EQ_INT(it->n_meta, 1);
    st_item_free(it);
    REQUIRE_OK(st_meta_ids(txn, coll, "camera", "cam-3", &ids, &n)); /* a's old value */
    CHECK_EQ_INT(n, 0);
    REQUIRE_OK(st_meta_ids(txn, coll, "camera", "leica", &ids, &n));
    CHECK(n == 1 && ids[0] == a);
    free(ids);
    REQUIRE_OK(st_meta_ids(txn, coll, "seed", "11", &ids, &n));
    CHECK_EQ_INT(n, 0);
    /* Label edits do not touch the change log. */
    st_collection c;
    REQUIRE_OK(st_coll_get_id(txn, coll, &c));
    CHECK_EQ_INT(c.seq, 2);
    st_txn_abort(txn);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------------------- delete */

typedef struct collect {
    uint64_t ids[256];
    size_t n;
    st_change ch[256];
    size_t nch;
    int stop_after;
} collect;

static int collect_change(void *ud, const st_change *c) {
    collect *k = ud;
    if (k->nch < 256) k->ch[k->nch++] = *c;
    return k->stop_after && (int)k->nch >= k->stop_after ? 1 : 0;
}
static int collect_vec(void *ud, uint64_t id, const float *v, int dim) {
    collect *k = ud;
    if (dim != DIM || ((uintptr_t)v & 3)) return perr_set(PERR_INTERNAL, "bad vector view");
    if (k->n < 256) k->ids[k->n++] = id;
    return 0;
}
static int collect_item(void *ud, const st_item *it) {
    collect *k = ud;
    if (k->n < 256) k->ids[k->n++] = it->id;
    return 0;
}
static int collect_seg(void *ud, uint64_t item, uint32_t idx, const st_segment *s, int dim) {
    collect *k = ud;
    if (k->n < 256) k->ids[k->n++] = ST_SEG_ID(item, idx);
    return 0;
}

static void test_delete(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-del", 0, &coll);
    REQUIRE(db);
    uint64_t ids[4];
    for (int s = 0; s < 4; s++) REQUIRE_OK(add_seed(db, coll, (uint64_t)s, &ids[s], NULL));
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    uint64_t seq;
    REQUIRE_OK(st_item_delete(txn, ids[3], &seq)); /* a video with 4 segments */
    CHECK_EQ_INT(seq, 5);
    CHECK_ERR(st_item_delete(txn, ids[3], &seq), PERR_NOT_FOUND);
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);
    REQUIRE_OK(st_open(dir, NULL, &db));

    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    st_item *it;
    CHECK_ERR(st_item_get(txn, ids[3], &it), PERR_NOT_FOUND);
    const float *v;
    int d;
    CHECK_ERR(st_item_vector(txn, ids[3], &v, &d), PERR_NOT_FOUND);
    tu_item t;
    tu_item_make(&t, 3, DIM);
    uint64_t hid;
    CHECK_ERR(st_hash_lookup(txn, coll, t.it.hash, &hid), PERR_NOT_FOUND);
    uint64_t *lids;
    size_t n;
    REQUIRE_OK(st_label_ids(txn, coll, "seed-3", &lids, &n));
    CHECK_EQ_INT(n, 0);
    REQUIRE_OK(st_label_ids(txn, coll, "猫", &lids, &n));
    CHECK_EQ_INT(n, 3);
    free(lids);
    REQUIRE_OK(st_meta_ids(txn, coll, "seed", "3", &lids, &n));
    CHECK_EQ_INT(n, 0);
    collect k = {0};
    REQUIRE_OK(st_scan_segments(txn, coll, 0, collect_seg, &k));
    CHECK_EQ_INT(k.n, 1); /* only seed 0's segment is left */
    if (k.n) CHECK(k.ids[0] == ST_SEG_ID(ids[0], 0));
    st_collection c;
    REQUIRE_OK(st_coll_get_id(txn, coll, &c));
    CHECK_EQ_INT(c.n_items, 3);
    CHECK_EQ_INT(c.n_segments, 1);
    /* The same bytes can come back, under a new id. */
    uint64_t again;
    REQUIRE_OK(st_item_add(txn, coll, &t.it, t.vec, t.segs, t.n_segs, &again, NULL));
    CHECK(again > ids[3]);
    REQUIRE_OK(st_item_delete(txn, again, NULL));
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);
    /* Ids are not reused after a reopen either. */
    REQUIRE_OK(st_open(dir, NULL, &db));
    uint64_t next;
    REQUIRE_OK(add_seed(db, coll, 3, &next, NULL));
    CHECK(next > again);
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    st_stats s;
    REQUIRE_OK(st_stats_get(txn, &s));
    CHECK_EQ_INT(s.n_items, 4);
    CHECK(s.last_item_id == next);
    st_txn_abort(txn);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------ change log, scan */

static void test_changes_and_scans(void) {
    char *dir;
    uint32_t a;
    st_db *db = fresh(&dir, "st-chg", 0, &a);
    REQUIRE(db);
    uint32_t b;
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_coll_create(txn, "b", "Flat", &b));
    REQUIRE_OK(st_txn_commit(txn));
    /* Interleave two collections: each keeps its own sequence. */
    uint64_t ia[6], ib[3];
    for (int i = 0; i < 6; i++) {
        REQUIRE_OK(add_seed(db, a, 100 + (uint64_t)i, &ia[i], NULL));
        if (i < 3) REQUIRE_OK(add_seed(db, b, 200 + (uint64_t)i, &ib[i], NULL));
    }
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_item_delete(txn, ia[1], NULL));
    REQUIRE_OK(st_item_delete(txn, ia[4], NULL));
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);
    REQUIRE_OK(st_open(dir, NULL, &db));

    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    collect k = {0};
    REQUIRE_OK(st_changes(txn, a, 0, collect_change, &k));
    REQUIRE(k.nch == 8);
    for (size_t i = 0; i < 8; i++) CHECK_EQ_INT(k.ch[i].seq, i + 1);
    for (int i = 0; i < 6; i++) {
        CHECK(k.ch[i].op == ST_OP_ADD && k.ch[i].item == ia[i]);
        tu_item t;
        tu_item_make(&t, 100 + (uint64_t)i, DIM);
        CHECK_EQ_INT(k.ch[i].n_segments, t.n_segs);
    }
    CHECK(k.ch[6].op == ST_OP_DEL && k.ch[6].item == ia[1]);
    CHECK(k.ch[7].op == ST_OP_DEL && k.ch[7].item == ia[4]);
    /* Replay from a saved seq: only the newer changes. */
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_changes(txn, a, 5, collect_change, &k));
    CHECK(k.nch == 3 && k.ch[0].seq == 6);
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_changes(txn, a, 8, collect_change, &k));
    CHECK_EQ_INT(k.nch, 0);
    memset(&k, 0, sizeof k);
    k.stop_after = 2;
    REQUIRE_OK(st_changes(txn, a, 0, collect_change, &k));
    CHECK_EQ_INT(k.nch, 2);
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_changes(txn, b, 0, collect_change, &k));
    CHECK(k.nch == 3 && k.ch[2].seq == 3 && k.ch[2].item == ib[2]);

    /* Scans: ids in order, deleted ones absent, after_id respected. */
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_scan_vectors(txn, a, 0, collect_vec, &k));
    uint64_t want[] = {ia[0], ia[2], ia[3], ia[5]};
    CHECK_EQ_INT(k.n, 4);
    for (size_t i = 0; i < 4 && i < k.n; i++) CHECK(k.ids[i] == want[i]);
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_scan_items(txn, a, ia[2], collect_item, &k));
    CHECK(k.n == 2 && k.ids[0] == ia[3] && k.ids[1] == ia[5]);
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_scan_vectors(txn, b, 0, collect_vec, &k));
    CHECK(k.n == 3 && k.ids[0] == ib[0] && k.ids[2] == ib[2]);
    /* Segments: seeds 102 and 105 are videos (102: 3 segments, 105: 2);
     * 105 is ia[5]. 102 = ia[2]. */
    memset(&k, 0, sizeof k);
    REQUIRE_OK(st_scan_segments(txn, a, 0, collect_seg, &k));
    CHECK_EQ_INT(k.n, 3 + 2);
    if (k.n == 5) {
        CHECK(k.ids[0] == ST_SEG_ID(ia[2], 0) && k.ids[2] == ST_SEG_ID(ia[2], 2));
        CHECK(k.ids[3] == ST_SEG_ID(ia[5], 0) && ST_SEG_ITEM(k.ids[4]) == ia[5] &&
              ST_SEG_IDX(k.ids[4]) == 1);
    }
    st_txn_abort(txn);

    /* Trim: replay from before the trimmed point is refused. */
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_changes_trim(txn, a, 6));
    REQUIRE_OK(st_txn_commit(txn));
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    memset(&k, 0, sizeof k);
    CHECK_ERR(st_changes(txn, a, 3, collect_change, &k), PERR_NOT_FOUND);
    REQUIRE_OK(st_changes(txn, a, 6, collect_change, &k));
    CHECK(k.nch == 2 && k.ch[0].seq == 7);
    st_collection c;
    REQUIRE_OK(st_coll_get_id(txn, a, &c));
    CHECK_EQ_INT(c.log_start, 6);
    CHECK_EQ_INT(c.seq, 8);
    st_txn_abort(txn);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ----------------------------------------------------------------- drop */

static void test_drop(void) {
    char *dir;
    uint32_t a;
    st_db *db = fresh(&dir, "st-drop", 0, &a);
    REQUIRE(db);
    uint32_t b;
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_coll_create(txn, "keep", "Flat", &b));
    REQUIRE_OK(st_txn_commit(txn));
    uint64_t ia[9], ib[9];
    for (int i = 0; i < 9; i++) {
        REQUIRE_OK(add_seed(db, a, (uint64_t)i, &ia[i], NULL));
        REQUIRE_OK(add_seed(db, b, (uint64_t)i, &ib[i], NULL)); /* same bytes, other coll */
    }
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    REQUIRE_OK(st_coll_drop(txn, a));
    CHECK_ERR(st_coll_drop(txn, a), PERR_NOT_FOUND);
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);
    REQUIRE_OK(st_open(dir, NULL, &db));
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    st_collection c;
    CHECK_ERR(st_coll_get(txn, "photos", &c), PERR_NOT_FOUND);
    for (int i = 0; i < 9; i++) {
        st_item *it;
        CHECK_ERR(st_item_get(txn, ia[i], &it), PERR_NOT_FOUND);
        const char *why = tu_item_check(txn, ib[i], (uint64_t)i, DIM);
        if (why) t_fail(__FILE__, __LINE__, "%s", why);
    }
    st_stats s;
    REQUIRE_OK(st_stats_get(txn, &s));
    CHECK_EQ_INT(s.n_collections, 1);
    CHECK_EQ_INT(s.n_items, 9);
    CHECK_EQ_INT(s.n_segments, 1 + 4 + 3); /* seeds 0, 3, 6 of "keep" */
    CHECK(s.map_size > 0 && s.page_size >= 4096 && s.pages_used > 0 && s.file_bytes > 0);
    uint64_t *ids;
    size_t n;
    REQUIRE_OK(st_label_ids(txn, a, "猫", &ids, &n));
    CHECK_EQ_INT(n, 0);
    collect k = {0};
    CHECK_ERR(st_changes(txn, a, 0, collect_change, &k), PERR_NOT_FOUND);
    /* The name can be used again, under a new id, with empty tables. */
    uint32_t a2;
    REQUIRE_OK(st_coll_create(txn, "photos", "Flat", &a2));
    CHECK(a2 > b);
    REQUIRE_OK(st_scan_vectors(txn, a2, 0, collect_vec, &k));
    CHECK_EQ_INT(k.n, 0);
    REQUIRE_OK(st_txn_commit(txn));
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ----------------------------------------------- version, corrupt records */

/* Opens the raw LMDB environment of a database, puts key=val in table. */
static int raw_put(const char *dir, const char *table, const void *key, size_t klen,
                   const void *val, size_t vlen) {
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    int rc = mdb_env_create(&env);
    if (rc) return rc;
    mdb_env_set_maxdbs(env, 16);
    if (!(rc = mdb_env_open(env, dir, 0, 0644)) && !(rc = mdb_txn_begin(env, NULL, 0, &t))) {
        MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
        if ((rc = mdb_dbi_open(t, table, 0, &dbi)) || (rc = mdb_put(t, dbi, &k, &v, 0)))
            mdb_txn_abort(t);
        else
            rc = mdb_txn_commit(t);
    }
    mdb_env_close(env);
    return rc;
}

/* ------------------------------------------------------------ thumbnails */

static int thumb_count(st_db *db) {
    st_txn *t;
    st_stats s = {0};
    if (st_txn_begin(db, 0, &t)) return -1;
    int rc = st_stats_get(t, &s);
    st_txn_abort(t);
    return rc ? -1 : (int)s.n_thumbs;
}

static void test_thumbs(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-thumb", 0, &coll);
    REQUIRE(db);
    uint64_t a, b;
    REQUIRE_OK(add_seed(db, coll, 1, &a, NULL));
    REQUIRE_OK(add_seed(db, coll, 2, &b, NULL));
    st_txn *w;
    REQUIRE_OK(st_txn_begin(db, 1, &w));
    static const char pic[] = "RIFF....WEBPVP8 fake bytes";
    st_thumb t = {2, 256, 170, pic, sizeof pic};
    CHECK_OK(st_thumb_put(w, a, ST_THUMB_ITEM, &t));
    CHECK_OK(st_thumb_put(w, b, ST_THUMB_ITEM, &t));
    /* validation: nothing written, the transaction lives on */
    st_thumb bad = t;
    bad.format = 0;
    CHECK_ERR(st_thumb_put(w, a, ST_THUMB_ITEM, &bad), PERR_INVALID);
    bad = t;
    bad.width = 70000;
    CHECK_ERR(st_thumb_put(w, a, ST_THUMB_ITEM, &bad), PERR_INVALID);
    bad = t;
    bad.len = ST_THUMB_MAX + 1;
    CHECK_ERR(st_thumb_put(w, a, ST_THUMB_ITEM, &bad), PERR_INVALID);
    CHECK_ERR(st_thumb_put(w, 9999, ST_THUMB_ITEM, &t), PERR_NOT_FOUND);
    st_item *it = NULL;
    REQUIRE_OK(st_item_get(w, a, &it));
    uint32_t nseg = it->n_segments;
    st_item_free(it);
    if (nseg) CHECK_OK(st_thumb_put(w, a, ST_THUMB_SEG(nseg - 1), &t));
    CHECK_ERR(st_thumb_put(w, a, ST_THUMB_SEG(nseg), &t), PERR_INVALID);
    REQUIRE_OK(st_txn_commit(w));
    st_txn *r;
    REQUIRE_OK(st_txn_begin(db, 0, &r));
    st_thumb g;
    CHECK_OK(st_thumb_get(r, a, ST_THUMB_ITEM, &g));
    CHECK(g.format == 2 && g.width == 256 && g.height == 170 && g.len == sizeof pic &&
          !memcmp(g.data, pic, sizeof pic));
    CHECK_ERR(st_thumb_get(r, a, ST_THUMB_SEG(nseg + 5), &g), PERR_NOT_FOUND);
    CHECK_ERR(st_thumb_get(r, 9999, ST_THUMB_ITEM, &g), PERR_NOT_FOUND);
    st_txn_abort(r);
    CHECK_EQ_INT(thumb_count(db), 2 + (nseg ? 1 : 0));
    /* deleting an item deletes its thumbnails; dropping the collection the rest */
    REQUIRE_OK(st_txn_begin(db, 1, &w));
    CHECK_OK(st_item_delete(w, a, NULL));
    REQUIRE_OK(st_txn_commit(w));
    CHECK_EQ_INT(thumb_count(db), 1);
    REQUIRE_OK(st_txn_begin(db, 1, &w));
    CHECK_OK(st_coll_drop(w, coll));
    REQUIRE_OK(st_txn_commit(w));
    CHECK_EQ_INT(thumb_count(db), 0);
    /* collection flags round-trip */
    uint32_t c2;
    REQUIRE_OK(st_txn_begin(db, 1, &w));
    REQUIRE_OK(st_coll_create(w, "other", "Flat", &c2));
    CHECK_OK(st_coll_set_flags(w, c2, ST_COLL_NO_THUMBS));
    CHECK_ERR(st_coll_set_flags(w, c2, 0x80), PERR_INVALID);
    REQUIRE_OK(st_txn_commit(w));
    REQUIRE_OK(st_txn_begin(db, 0, &r));
    st_collection sc;
    CHECK_OK(st_coll_get(r, "other", &sc));
    CHECK_EQ_INT(sc.flags, ST_COLL_NO_THUMBS);
    st_txn_abort(r);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* A layout-1 database: no "thumbs" table, version 1. Read-only opens it as
 * is (no thumbnails); a writable open upgrades it to 2. */
static void test_layout1_upgrade(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-l1", 0, &coll);
    REQUIRE(db);
    uint64_t a;
    REQUIRE_OK(add_seed(db, coll, 1, &a, NULL));
    st_close(db);
    {
        MDB_env *env;
        MDB_txn *t;
        MDB_dbi dbi;
        REQUIRE(mdb_env_create(&env) == 0);
        mdb_env_set_maxdbs(env, 16);
        REQUIRE(mdb_env_open(env, dir, 0, 0644) == 0);
        REQUIRE(mdb_txn_begin(env, NULL, 0, &t) == 0);
        REQUIRE(mdb_dbi_open(t, "thumbs", 0, &dbi) == 0);
        REQUIRE(mdb_drop(t, dbi, 1) == 0);
        REQUIRE(mdb_txn_commit(t) == 0);
        mdb_env_close(env);
    }
    uint32_t v1 = 1;
    REQUIRE(raw_put(dir, "info", "layout", 6, &v1, 4) == 0);
    REQUIRE_OK(st_open(dir, &(st_opts){.read_only = 1}, &db));
    st_txn *r;
    REQUIRE_OK(st_txn_begin(db, 0, &r));
    st_info in;
    CHECK_OK(st_info_get(r, &in));
    CHECK_EQ_INT(in.layout_version, 1);
    st_thumb g;
    CHECK_ERR(st_thumb_get(r, a, ST_THUMB_ITEM, &g), PERR_NOT_FOUND);
    st_item *it = NULL;
    CHECK_OK(st_item_get(r, a, &it));
    st_item_free(it);
    st_stats s;
    CHECK_OK(st_stats_get(r, &s));
    CHECK_EQ_INT(s.n_thumbs, 0);
    st_txn_abort(r);
    st_close(db);
    /* version 2 without the table is damage, not an old database */
    uint32_t v2 = 2;
    REQUIRE(raw_put(dir, "info", "layout", 6, &v2, 4) == 0);
    CHECK_ERR(st_open(dir, &(st_opts){.read_only = 1}, &db), PERR_FORMAT);
    REQUIRE(raw_put(dir, "info", "layout", 6, &v1, 4) == 0);
    REQUIRE_OK(st_open(dir, NULL, &db));
    REQUIRE_OK(st_txn_begin(db, 1, &r));
    CHECK_OK(st_info_get(r, &in));
    CHECK_EQ_INT(in.layout_version, ST_LAYOUT_VERSION);
    static const char pic[] = "bytes";
    CHECK_OK(st_thumb_put(r, a, ST_THUMB_ITEM, &(st_thumb){1, 2, 2, pic, sizeof pic}));
    REQUIRE_OK(st_txn_commit(r));
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

static void test_version_refusal(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-ver", 0, &coll);
    REQUIRE(db);
    REQUIRE_OK(add_seed(db, coll, 1, NULL, NULL));
    st_close(db);
    uint32_t v3 = ST_LAYOUT_VERSION + 1;
    REQUIRE(raw_put(dir, "info", "layout", 6, &v3, 4) == 0);
    CHECK_ERR(st_open(dir, NULL, &db), PERR_VERSION);
    CHECK(strstr(perr_msg(), "version 3") != NULL);
    CHECK_ERR(st_open(dir, &(st_opts){.read_only = 1}, &db), PERR_VERSION);
    uint32_t v1 = 1;
    REQUIRE(raw_put(dir, "info", "layout", 6, &v1, 4) == 0);
    REQUIRE_OK(st_open(dir, NULL, &db));
    st_close(db);
    /* A plain LMDB environment that is not ours. */
    char *other = t_path("%s/other", dir);
    mkdir(other, 0755);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_open(env, other, 0, 0644) == 0);
    REQUIRE(mdb_txn_begin(env, NULL, 0, &t) == 0);
    REQUIRE(mdb_dbi_open(t, NULL, 0, &dbi) == 0);
    MDB_val k = {3, "key"}, v = {3, "val"};
    REQUIRE(mdb_put(t, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(t) == 0);
    mdb_env_close(env);
    CHECK_ERR(st_open(other, NULL, &db), PERR_FORMAT);
    free(other);
    t_rmtree(dir);
    free(dir);
}

static void test_corrupt_records(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-corrupt", 0, &coll);
    REQUIRE(db);
    uint64_t id;
    REQUIRE_OK(add_seed(db, coll, 3, &id, NULL)); /* a video: every field used */
    /* Fetch the valid record bytes through a raw read. */
    st_close(db);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    REQUIRE(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 16);
    REQUIRE(mdb_env_open(env, dir, MDB_RDONLY, 0644) == 0);
    REQUIRE(mdb_txn_begin(env, NULL, MDB_RDONLY, &t) == 0);
    REQUIRE(mdb_dbi_open(t, "items", 0, &dbi) == 0);
    unsigned char key[8];
    for (int i = 0; i < 8; i++) key[i] = (unsigned char)(id >> (56 - 8 * i));
    MDB_val k = {8, key}, v;
    REQUIRE(mdb_get(t, dbi, &k, &v) == 0);
    size_t len = v.mv_size;
    unsigned char *good = malloc(len), *bad = malloc(len + 8);
    memcpy(good, v.mv_data, len);
    mdb_txn_abort(t);
    mdb_env_close(env);

    char idstr[32];
    snprintf(idstr, sizeof idstr, "key %llu", (unsigned long long)id);
    /* Every truncation, trailing garbage, and targeted damage -> PERR_FORMAT
     * naming the key; never a crash (ASan checks the reads). */
    size_t cuts[] = {0, 1, 50, 88, 90, len / 2, len - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        REQUIRE(raw_put(dir, "items", key, 8, good, cuts[c]) == 0);
        REQUIRE_OK(st_open(dir, NULL, &db));
        st_txn *txn;
        REQUIRE_OK(st_txn_begin(db, 0, &txn));
        st_item *it = NULL;
        CHECK_ERR(st_item_get(txn, id, &it), PERR_FORMAT);
        CHECK(strstr(perr_msg(), idstr) != NULL);
        CHECK(it == NULL);
        st_txn_abort(txn);
        st_close(db);
    }
    struct { size_t off; unsigned char val; } pokes[] = {
        {0, 9},      /* record version */
        {1, 0},      /* media kind */
        {2, 0xff},   /* n_labels low byte: 255 labels cannot fit */
        {88, 0xff},  /* uri length beyond the record */
        {89, 0xff},
    };
    for (size_t p = 0; p < sizeof pokes / sizeof *pokes; p++) {
        memcpy(bad, good, len);
        bad[pokes[p].off] = pokes[p].val;
        REQUIRE(raw_put(dir, "items", key, 8, bad, len) == 0);
        REQUIRE_OK(st_open(dir, NULL, &db));
        st_txn *txn;
        REQUIRE_OK(st_txn_begin(db, 0, &txn));
        st_item *it = NULL;
        CHECK_ERR(st_item_get(txn, id, &it), PERR_FORMAT);
        CHECK(strstr(perr_msg(), idstr) != NULL);
        st_txn_abort(txn);
        st_close(db);
    }
    memcpy(bad, good, len);
    memset(bad + len, 'x', 8);
    REQUIRE(raw_put(dir, "items", key, 8, bad, len + 8) == 0);
    REQUIRE_OK(st_open(dir, NULL, &db));
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    st_item *it = NULL;
    CHECK_ERR(st_item_get(txn, id, &it), PERR_FORMAT);
    CHECK(strstr(perr_msg(), "trailing") != NULL);
    st_txn_abort(txn);
    /* Random byte flips: decode succeeds or says PERR_FORMAT, nothing else. */
    uint64_t r = 42;
    int formats = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(bad, good, len);
        for (int f = 0; f < 3; f++) {
            r = tu_mix(r);
            bad[r % len] ^= (unsigned char)(1u << (r >> 32) % 8);
        }
        st_close(db);
        REQUIRE(raw_put(dir, "items", key, 8, bad, len) == 0);
        REQUIRE_OK(st_open(dir, NULL, &db));
        REQUIRE_OK(st_txn_begin(db, 0, &txn));
        int rc = st_item_get(txn, id, &it);
        CHECK(rc == PERR_OK || rc == PERR_FORMAT);
        formats += rc == PERR_FORMAT;
        if (rc == PERR_OK) st_item_free(it);
        st_txn_abort(txn);
    }
    CHECK(formats > 0);
    /* A vector of the wrong size. */
    st_close(db);
    unsigned char vk[12];
    for (int i = 0; i < 4; i++) vk[i] = (unsigned char)(coll >> (24 - 8 * i));
    memcpy(vk + 4, key, 8);
    REQUIRE(raw_put(dir, "items", key, 8, good, len) == 0);
    REQUIRE(raw_put(dir, "vectors", vk, 12, good, 10) == 0);
    REQUIRE_OK(st_open(dir, NULL, &db));
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    const float *vec;
    int d;
    CHECK_ERR(st_item_vector(txn, id, &vec, &d), PERR_FORMAT);
    CHECK(strstr(perr_msg(), "vectors") != NULL);
    collect kc = {0};
    CHECK_ERR(st_scan_vectors(txn, coll, 0, collect_vec, &kc), PERR_FORMAT);
    st_txn_abort(txn);
    st_close(db);
    free(good);
    free(bad);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------ full map */

static void test_full_map(void) {
    char *dir;
    uint32_t coll;
    const uint64_t map = 256 * 1024; /* 64 pages */
    st_db *db = fresh(&dir, "st-full", map, &coll);
    REQUIRE(db);
    uint64_t ids[4096];
    size_t n = 0;
    int rc = 0;
    const char *where = "";
    /* Items in transactions of 3: the failing transaction leaves no trace. */
    for (uint64_t s = 0; s < 4096 && !rc; s += 3) {
        st_txn *txn;
        REQUIRE_OK(st_txn_begin(db, 1, &txn));
        uint64_t got[3];
        for (int j = 0; j < 3 && !rc; j++) {
            tu_item t;
            tu_item_make(&t, s + (uint64_t)j, DIM);
            rc = st_item_add(txn, coll, &t.it, t.vec, t.segs, t.n_segs, &got[j], NULL);
            where = "add";
        }
        if (rc) {
            /* The transaction is dead: more work and commit are refused. */
            tu_item t;
            tu_item_make(&t, 99999, DIM);
            uint64_t x;
            CHECK_ERR(st_item_add(txn, coll, &t.it, t.vec, NULL, 0, &x, NULL), PERR_FULL);
            CHECK_ERR(st_txn_commit(txn), PERR_FULL);
            break;
        }
        rc = st_txn_commit(txn);
        where = "commit";
        if (!rc) for (int j = 0; j < 3; j++) ids[n++] = got[j];
    }
    CHECK_EQ_INT(rc, PERR_FULL);
    fprintf(stderr, "  map of %llu bytes full after %zu items (at %s): %s\n",
            (unsigned long long)map, n, where, perr_msg());
    CHECK(strstr(perr_msg(), "full") != NULL);
    CHECK(n > 10);
    st_close(db);

    /* Once more with one big transaction, so that a put (not the commit)
     * hits the limit: the transaction dies, the earlier data stays. */
    st_opts o;
    st_opts_default(&o);
    o.map_size = map;
    REQUIRE_OK(st_open(dir, &o, &db));
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 1, &txn));
    rc = 0;
    uint64_t s;
    for (s = 10000; s < 20000 && !rc; s++) {
        tu_item t;
        tu_item_make(&t, s, DIM);
        rc = st_item_add(txn, coll, &t.it, t.vec, t.segs, t.n_segs, NULL, NULL);
    }
    CHECK_EQ_INT(rc, PERR_FULL);
    CHECK(strstr(perr_msg(), "database full") != NULL);
    fprintf(stderr, "  big transaction full at item %llu: %s\n", (unsigned long long)(s - 10000),
            perr_msg());
    st_collection c;
    CHECK_ERR(st_coll_get_id(txn, coll, &c), PERR_FULL);
    CHECK_ERR(st_txn_commit(txn), PERR_FULL);
    st_close(db);

    /* Everything committed before is intact, in the same small map. */
    REQUIRE_OK(st_open(dir, &o, &db));
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    for (size_t i = 0; i < n; i++) {
        const char *why = tu_item_check(txn, ids[i], i, DIM);
        if (why) { t_fail(__FILE__, __LINE__, "%s", why); break; }
    }
    REQUIRE_OK(st_coll_get_id(txn, coll, &c));
    CHECK_EQ_INT(c.n_items, n);
    CHECK_EQ_INT(c.seq, n);
    st_stats stats;
    REQUIRE_OK(st_stats_get(txn, &stats));
    CHECK_EQ_INT(stats.n_items, n);
    st_txn_abort(txn);
    st_close(db);
    /* A larger map makes room again. */
    o.map_size = 4 * map;
    REQUIRE_OK(st_open(dir, &o, &db));
    uint64_t more;
    CHECK_OK(add_seed(db, coll, 50000, &more, NULL));
    CHECK(more > ids[n - 1]);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

/* ---------------------------------------------------- concurrent readers */

#define BATCH 5
#define BATCHES 120

typedef struct shared {
    st_db *db;
    uint32_t coll;
    volatile int done;
    int reads;
    int errors;
    char err[256];
} shared;

typedef struct rstate { shared *sh; size_t n; uint64_t batch_count[BATCHES]; } rstate;

static int reader_item(void *ud, const st_item *it) {
    rstate *r = ud;
    r->n++;
    /* The seed is in the metadata; the batch in a label. */
    uint64_t seed = strtoull(it->meta[1].value, NULL, 10);
    if (seed / BATCH < BATCHES) r->batch_count[seed / BATCH]++;
    return 0;
}

static void *reader(void *arg) {
    shared *sh = arg;
    rstate *r = calloc(1, sizeof *r);
    r->sh = sh;
    while (!sh->done || sh->reads < 5) {
        st_txn *txn;
        if (st_txn_begin(sh->db, 0, &txn)) { sh->errors++; break; }
        memset(r->batch_count, 0, sizeof r->batch_count);
        r->n = 0;
        st_collection c;
        int rc = st_coll_get_id(txn, sh->coll, &c);
        if (!rc) rc = st_scan_items(txn, sh->coll, 0, reader_item, r);
        const char *bad = NULL;
        if (rc) bad = perr_msg();
        else if (r->n != c.n_items || r->n % BATCH) bad = "item count not whole batches";
        for (int b = 0; b < BATCHES && !bad; b++)
            if (r->batch_count[b] != 0 && r->batch_count[b] != BATCH) bad = "half a batch";
        /* Spot-check complete items in this snapshot. */
        if (!bad && r->n) {
            uint64_t *ids;
            size_t n;
            if (st_label_ids(txn, sh->coll, "猫", &ids, &n) || n != r->n) bad = "label index";
            else {
                for (size_t i = 0; i < n && !bad; i += 7) {
                    st_item *it;
                    if (st_item_get(txn, ids[i], &it)) { bad = "get"; break; }
                    uint64_t seed = strtoull(it->meta[1].value, NULL, 10);
                    st_item_free(it);
                    const char *why = tu_item_check(txn, ids[i], seed, DIM);
                    if (why) bad = why;
                }
                free(ids);
            }
        }
        if (bad) {
            snprintf(sh->err, sizeof sh->err, "%s", bad);
            sh->errors++;
        }
        st_txn_abort(txn);
        __atomic_add_fetch(&sh->reads, 1, __ATOMIC_RELAXED);
        if (bad) break;
        usleep(500); /* a shared machine: no need to spin */
    }
    free(r);
    return NULL;
}

static void test_concurrent_readers(void) {
    char *dir;
    shared sh = {0};
    sh.db = fresh(&dir, "st-conc", 0, &sh.coll);
    REQUIRE(sh.db);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, reader, &sh);
    int werr = 0;
    for (uint64_t b = 0; b < BATCHES && !werr; b++) {
        st_txn *txn;
        if (st_txn_begin(sh.db, 1, &txn)) { werr = 1; break; }
        for (uint64_t j = 0; j < BATCH && !werr; j++) {
            tu_item t;
            tu_item_make(&t, b * BATCH + j, DIM);
            werr = st_item_add(txn, sh.coll, &t.it, t.vec, t.segs, t.n_segs, NULL, NULL) != 0;
        }
        if (werr) { st_txn_abort(txn); break; }
        werr = st_txn_commit(txn) != 0;
    }
    CHECK(!werr);
    sh.done = 1;
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    if (sh.errors) t_fail(__FILE__, __LINE__, "reader saw: %s", sh.err);
    CHECK(sh.reads >= 15);
    fprintf(stderr, "  %d consistent reader snapshots during %d commits\n", sh.reads, BATCHES);
    st_close(sh.db);
    t_rmtree(dir);
    free(dir);
}

/* Vectors come straight from the map (4-byte aligned, see docs/storage.md):
 * two lookups in one transaction return the same pointer, for small, odd
 * and overflow-page sized dimensions, with deletes shuffling the pages. */
static void test_zero_copy_vectors(void) {
    int dims[] = {1, 7, 16, 509, 1024};
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        int dim = dims[di];
        char *dir = t_tmpdir("st-zc");
        st_db *db;
        REQUIRE_OK(st_open(dir, NULL, &db));
        st_txn *txn;
        uint32_t coll;
        REQUIRE_OK(st_txn_begin(db, 1, &txn));
        REQUIRE_OK(st_model_set(txn, 1, "m", dim));
        REQUIRE_OK(st_coll_create(txn, "c", "Flat", &coll));
        float *v = malloc((size_t)dim * 4 * 4);
        uint64_t ids[40];
        for (uint64_t i = 0; i < 40; i++) {
            st_item it = {.media = ST_MEDIA_VIDEO, .uri = "u"};
            tu_hash(it.hash, i);
            st_segment seg[3];
            for (int k = 0; k < 4; k++) tu_vec(v + k * dim, dim, i, (uint64_t)k);
            for (int k = 0; k < 3; k++)
                seg[k] = (st_segment){k, k + 1, v + (k + 1) * dim};
            REQUIRE_OK(st_item_add(txn, coll, &it, v, seg, i % 4, &ids[i], NULL));
        }
        for (uint64_t i = 0; i < 40; i += 3) REQUIRE_OK(st_item_delete(txn, ids[i], NULL));
        REQUIRE_OK(st_txn_commit(txn));
        REQUIRE_OK(st_txn_begin(db, 0, &txn));
        int copies = 0;
        for (uint64_t i = 1; i < 40; i++) {
            if (i % 3 == 0) continue;
            const float *a, *b;
            int d;
            REQUIRE_OK(st_item_vector(txn, ids[i], &a, &d));
            REQUIRE_OK(st_item_vector(txn, ids[i], &b, &d));
            copies += a != b;
            tu_vec(v, dim, i, 0);
            CHECK(d == dim && !memcmp(a, v, (size_t)dim * 4));
            st_segment *s1, *s2;
            size_t n1, n2;
            REQUIRE_OK(st_item_segments(txn, ids[i], &s1, &n1));
            REQUIRE_OK(st_item_segments(txn, ids[i], &s2, &n2));
            CHECK(n1 == i % 4 && n2 == n1);
            for (size_t k = 0; k < n1; k++) {
                copies += s1[k].vec != s2[k].vec;
                tu_vec(v, dim, i, k + 1);
                CHECK(!memcmp(s1[k].vec, v, (size_t)dim * 4));
                CHECK(s1[k].start_s == (double)k);
            }
            free(s1);
            free(s2);
        }
        if (copies) t_fail(__FILE__, __LINE__, "dim %d: %d vectors were copied, not mapped", dim, copies);
        st_txn_abort(txn);
        free(v);
        st_close(db);
        t_rmtree(dir);
        free(dir);
    }
}

/* A read transaction begun in one thread and used/ended in another. */
static void *use_txn(void *arg) {
    st_txn *txn = arg;
    st_stats s;
    int rc = st_stats_get(txn, &s);
    st_txn_abort(txn);
    return (void *)(intptr_t)rc;
}

static void test_read_txn_moves_threads(void) {
    char *dir;
    uint32_t coll;
    st_db *db = fresh(&dir, "st-move", 0, &coll);
    REQUIRE(db);
    st_txn *txn;
    REQUIRE_OK(st_txn_begin(db, 0, &txn));
    pthread_t th;
    pthread_create(&th, NULL, use_txn, txn);
    void *ret;
    pthread_join(th, &ret);
    CHECK_EQ_INT((intptr_t)ret, 0);
    st_close(db);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    T_RUN(test_open_and_info);
    T_RUN(test_collections);
    T_RUN(test_item_round_trip);
    T_RUN(test_item_validation);
    T_RUN(test_label_meta_updates);
    T_RUN(test_delete);
    T_RUN(test_changes_and_scans);
    T_RUN(test_drop);
    T_RUN(test_version_refusal);
    T_RUN(test_thumbs);
    T_RUN(test_layout1_upgrade);
    T_RUN(test_corrupt_records);
    T_RUN(test_full_map);
    T_RUN(test_concurrent_readers);
    T_RUN(test_read_txn_moves_threads);
    T_RUN(test_zero_copy_vectors);
    return t_done();
}
