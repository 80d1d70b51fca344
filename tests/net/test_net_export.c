/* EXPORT and DUPS over the server: every item of a vectors-only database
 * (three collections, 700 items: several 256-item pages, one page ending
 * exactly at a collection's end) comes back through pc_export in
 * eng_foreach's order with the same metadata and vector bytes; a stop from
 * the callback stops the paging; raw EXPORT pages honour limit / after and
 * reject bad fields; DUPS groups equal eng_find_dups's. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "net/client.h"
#include "net/mp.h"
#include "net/ops.h"
#include "net/proto.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 32, N_A = 300, N_B = 256, N_C = 144, N_ALL = N_A + N_B + N_C, MAXV = N_ALL + 8 };

static char *dir;
static eng_db *db;
static nt_server srv;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

typedef struct seen {
    uint64_t ids[MAXV];
    char colls[MAXV][80];
    float vec[MAXV][DIM];
    int n_labels[MAXV];
    int n, stop_at;
} seen;

static int collect(void *user, const eng_item *it) {
    seen *s = user;
    if (s->n == MAXV) return PERR_INTERNAL;
    s->ids[s->n] = it->id;
    snprintf(s->colls[s->n], sizeof s->colls[0], "%s", it->collection);
    if (it->vector && it->dim == DIM) memcpy(s->vec[s->n], it->vector, sizeof s->vec[0]);
    s->n_labels[s->n] = it->n_labels;
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static void setup(void) {
    dir = t_tmpdir("net_export");
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.create = 1;
    o.vector_dim = DIM;
    if (eng_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); exit(1); }
    float *v = malloc(sizeof(float) * N_A * DIM);
    for (int i = 0; i < N_A * DIM; i++) v[i] = frand();
    /* near-duplicates in "default": items 0..4 again, slightly moved */
    for (int i = 0; i < 5; i++)
        for (int d = 0; d < DIM; d++) v[(size_t)(N_A - 1 - i) * DIM + d] = v[(size_t)i * DIM + d] * 1.0001f;
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    uint64_t ids[N_A];
    int rc = eng_add_vectors(db, v, N_A, NULL, &io, ids);
    if (!rc) rc = eng_label_add(db, "l", ids, 10);
    if (!rc) rc = eng_collection_create(db, "b", NULL);
    io.collection = "b";
    if (!rc) rc = eng_add_vectors(db, v, N_B, NULL, &io, NULL);
    if (!rc) rc = eng_collection_create(db, "c", "HNSW32");
    io.collection = "c";
    if (!rc) rc = eng_add_vectors(db, v + 10 * DIM, N_C, NULL, &io, NULL);
    free(v);
    if (rc || nt_server_start(&srv, db, NULL)) { fprintf(stderr, "setup: %s\n", perr_msg()); exit(1); }
}

static void same(const seen *a, const seen *b) {
    CHECK_EQ_INT(a->n, b->n);
    int bad = 0;
    for (int i = 0; i < a->n && i < b->n; i++)
        bad += a->ids[i] != b->ids[i] || strcmp(a->colls[i], b->colls[i]) ||
               memcmp(a->vec[i], b->vec[i], sizeof a->vec[0]) || a->n_labels[i] != b->n_labels[i];
    CHECK_EQ_INT(bad, 0);
}

static void test_export_all_and_one(void) {
    static seen emb, net;
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(srv.addr, NULL, &c));
    memset(&emb, 0, sizeof emb); memset(&net, 0, sizeof net);
    REQUIRE_OK(eng_foreach(db, NULL, 1, collect, &emb));
    CHECK_EQ_INT(emb.n, N_ALL);
    CHECK_OK(pc_export(c, NULL, 1, collect, &net));
    same(&emb, &net);
    const char *colls[] = {"default", "b", "c"};
    for (int k = 0; k < 3; k++) {
        memset(&emb, 0, sizeof emb); memset(&net, 0, sizeof net);
        REQUIRE_OK(eng_foreach(db, colls[k], 1, collect, &emb));
        CHECK_OK(pc_export(c, colls[k], 1, collect, &net));
        same(&emb, &net);
    }
    CHECK_ERR(pc_export(c, "nosuch", 1, collect, &net), PERR_NOT_FOUND);
    CHECK(strstr(perr_msg(), "nosuch") != NULL);
    /* a callback's stop ends the paging with its code */
    memset(&net, 0, sizeof net);
    net.stop_at = 260;
    CHECK_EQ_INT(pc_export(c, NULL, 1, collect, &net), 7);
    CHECK_EQ_INT(net.n, 260);
    pc_close(c);
}

/* One raw EXPORT; returns the error code or 0 with items count and next. */
static int raw_export(pc_client *c, const char *after_coll, int64_t after, int limit, int *n_items,
                      char *next_coll, uint64_t *next_after, int *has_next) {
    msgpack_sbuffer sb; msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2 + (after_coll ? 1 : 0) + (after >= 0 ? 1 : 0));
    net_mp_pack_key(&pk, "limit"); msgpack_pack_int(&pk, limit);
    net_mp_pack_key(&pk, "vector"); msgpack_pack_false(&pk);
    if (after_coll) { net_mp_pack_key(&pk, "after_collection"); net_mp_pack_cstr(&pk, after_coll); }
    if (after >= 0) { net_mp_pack_key(&pk, "after"); msgpack_pack_uint64(&pk, (uint64_t)after); }
    uint8_t *resp = NULL;
    size_t len = 0;
    int rc = pc_call(c, NET_OP_EXPORT, sb.data, sb.size, &resp, &len);
    msgpack_sbuffer_destroy(&sb);
    if (rc) return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    rc = net_mp_unpack(resp, len, &u, &o);
    if (!rc) {
        const msgpack_object *items = net_mp_get(o, "items"), *next = net_mp_get(o, "next");
        *n_items = items && items->type == MSGPACK_OBJECT_ARRAY ? (int)items->via.array.size : -1;
        if (*n_items > 0 && net_mp_get(&items->via.array.ptr[0], "vector")) *n_items = -2; /* vector: false */
        *has_next = next && next->type == MSGPACK_OBJECT_MAP;
        if (*has_next) {
            const msgpack_object *ac = net_mp_get(next, "after_collection"), *af = net_mp_get(next, "after");
            snprintf(next_coll, 32, "%.*s", ac ? (int)ac->via.str.size : 0, ac ? ac->via.str.ptr : "");
            *next_after = af ? af->via.u64 : 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    free(resp);
    return rc;
}

static void test_export_pages(void) {
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(srv.addr, NULL, &c));
    int n = 0, more = 0, pages = 0, total = 0;
    char coll[32] = "";
    uint64_t after = 0;
    /* limit 100: 300 + 256 + 144 items, the page boundary falls exactly at
     * the end of "default" (300) without an empty page in between */
    do {
        REQUIRE_OK(raw_export(c, pages ? coll : NULL, pages ? (int64_t)after : -1, 100, &n, coll, &after, &more));
        CHECK(n >= 0);
        total += n;
        pages++;
    } while (more && pages < 100);
    CHECK_EQ_INT(total, N_ALL);
    CHECK_EQ_INT(pages, 7);
    /* limit exactly the collection: next points past it */
    REQUIRE_OK(raw_export(c, NULL, -1, N_A, &n, coll, &after, &more));
    CHECK_EQ_INT(n, N_A);
    CHECK(more);
    CHECK_STR(coll, "default");
    CHECK_ERR(raw_export(c, NULL, -1, 0, &n, coll, &after, &more), PERR_INVALID);
    CHECK_ERR(raw_export(c, NULL, -1, NET_MAX_K + 1, &n, coll, &after, &more), PERR_INVALID);
    CHECK_ERR(raw_export(c, NULL, 5, 10, &n, coll, &after, &more), PERR_INVALID);     /* after without collection */
    CHECK_ERR(raw_export(c, "gone", 5, 10, &n, coll, &after, &more), PERR_NOT_FOUND);
    /* after the last id of the last collection: empty, no next */
    REQUIRE_OK(raw_export(c, "c", (int64_t)1 << 40, 10, &n, coll, &after, &more));
    CHECK_EQ_INT(n, 0);
    CHECK(!more);
    pc_close(c);
}

static void test_dups(void) {
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(srv.addr, NULL, &c));
    struct { const char *coll; eng_dup_tier t; float thr; } cases[] = {
        {NULL, ENG_DUP_NEAR, 0}, {NULL, ENG_DUP_EXACT, 0}, {"c", ENG_DUP_SIMILAR, 0.3f}, {"b", ENG_DUP_SIMILAR, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        eng_dups *e = NULL, *r = NULL;
        REQUIRE_OK(eng_find_dups(db, cases[k].coll, cases[k].t, cases[k].thr, &e));
        CHECK_OK(pc_dups(c, cases[k].coll, cases[k].t, cases[k].thr, &r));
        if (!r) { eng_dups_free(e); continue; }
        CHECK_EQ_INT(e->n, r->n);
        int bad = 0;
        for (int g = 0; g < e->n && g < r->n; g++) {
            bad += e->groups[g].n != r->groups[g].n || e->groups[g].min_score != r->groups[g].min_score;
            for (int i = 0; i < e->groups[g].n && i < r->groups[g].n; i++) bad += e->groups[g].ids[i] != r->groups[g].ids[i];
        }
        CHECK_EQ_INT(bad, 0);
        if (k == 0) CHECK(e->n >= 5); /* the 5 near-duplicates planted */
        eng_dups_free(e);
        eng_dups_free(r);
    }
    eng_dups *r = NULL;
    CHECK_ERR(pc_dups(c, "nosuch", ENG_DUP_NEAR, 0, &r), PERR_NOT_FOUND);
    CHECK_ERR(pc_dups(c, NULL, ENG_DUP_NEAR, 1.5f, &r), PERR_INVALID);
    CHECK(r == NULL);
    pc_close(c);
}

int main(void) {
    setup();
    T_RUN(test_export_all_and_one);
    T_RUN(test_export_pages);
    T_RUN(test_dups);
    nt_server_stop(&srv);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
    return t_done();
}
