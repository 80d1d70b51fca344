/* test_eng_group: group commit of uploads (eng_upload_prepare /
 * eng_upload_commit) on real photos with the tiny-a model.
 *
 * A group is made deterministic: the first upload is committed alone, and
 * its completion (which runs on the committer thread before the committer
 * takes the next group) queues all the others, so they are exactly one
 * transaction. In that group: the same bytes twice (one added, the other
 * present with the same id), the same bytes into another collection
 * (added: dedup is per collection), one upload storage refuses (a label
 * over the limit: it fails alone), the rest added with their labels and
 * metadata. Every completion checks at once that its item is stored and
 * finds itself (durable and searchable when acknowledged); after a reopen
 * every acknowledged item is still there. Then several threads upload at
 * the same time through eng_add_buffer (which waits for the group commit):
 * every id stored once, found, and the same bytes from four threads give
 * one id. A group whose transaction dies (map full because of one
 * upload's metadata) is retried upload by upload: only that one fails. */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"
#include "photos.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *model_path, *vocab_path;
static photo_set P;

static eng_db *open_db_map(const char *dir, int create, size_t map) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.map_size = map;
    o.model_path = create ? model_path : NULL;
    o.vocab_path = vocab_path;
    o.create = create;
    eng_db *db = NULL;
    if (eng_open(dir, &o, &db)) { t_fail(__FILE__, __LINE__, "open %s: %s", dir, perr_msg()); return NULL; }
    return db;
}

static eng_db *open_db(const char *dir, int create) { return open_db_map(dir, create, 0); }

/* 1 when item id is stored in collection coll and finds itself first. */
static int stored_and_found(eng_db *db, uint64_t id, const char *coll) {
    eng_item *it = NULL;
    if (eng_get(db, id, 0, &it)) return 0;
    int ok = !strcmp(it->collection, coll);
    eng_item_free(it);
    eng_query q;
    eng_query_default(&q);
    q.k = 1;
    q.include_self = 1;
    q.collections = &coll;
    q.n_collections = 1;
    eng_results *r = NULL;
    if (eng_search_id(db, id, &q, &r)) return 0;
    ok = ok && r->n >= 1 && r->hits[0].id == id && fabsf(r->hits[0].score - 1) < 1e-5f;
    eng_results_free(r);
    return ok;
}

enum { MAXU = 40 };

typedef struct slot {
    const char *coll;
    int done, rc;
    uint64_t id;
    eng_outcome outcome;
    int found_at_ack;           /* stored and searchable inside done */
    char msg[512];
} slot;

typedef struct grp {
    eng_db *db;
    eng_upload *u[MAXU];
    slot s[MAXU];
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
} grp;

typedef struct cb { grp *g; int i; } cb;
static cb CB[MAXU];

static void on_done(void *user, int rc, uint64_t id, eng_outcome outcome) {
    cb *c = user;
    grp *g = c->g;
    slot *s = &g->s[c->i];
    s->rc = rc;
    s->id = id;
    s->outcome = outcome;
    if (rc) snprintf(s->msg, sizeof s->msg, "%s", perr_msg());
    else s->found_at_ack = stored_and_found(g->db, id, s->coll);
    /* The first completion queues the rest while the committer is busy
     * with it: they form the next group together. */
    if (c->i == 0)
        for (int i = 1; i < g->n; i++) eng_upload_commit(g->db, g->u[i], on_done, &CB[i]);
    pthread_mutex_lock(&g->mu);
    s->done = 1;
    g->finished++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void test_one_group(void) {
    char *dir = t_tmpdir("eng-group");
    grp *g = calloc(1, sizeof *g);
    REQUIRE(g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->db = open_db(dir, 1);
    REQUIRE(g->db);
    int np = P.n < 24 ? P.n : 24;
    char long_label[200];
    memset(long_label, 'x', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = 0;
    const char *lab_ok[] = {"grp"};
    const char *lab_bad[] = {long_label};
    eng_kv meta[] = {{"src", "group"}};
    int i_dup = -1, i_other = -1, i_bad = -1;
    for (int k = 0; k < np + 3; k++) {
        int photo = k < np ? k : k == np ? 3 : k == np + 1 ? 5 : 7;
        eng_ingest_opts o;
        eng_ingest_opts_default(&o);
        o.labels = lab_ok;
        o.n_labels = 1;
        o.meta = meta;
        o.n_meta = 1;
        if (k == np) i_dup = k;                                  /* photo 3 again */
        if (k == np + 1) { i_other = k; o.collection = "other"; } /* photo 5, elsewhere */
        if (k == np + 2) { i_bad = k; o.labels = lab_bad; }       /* refused by storage */
        size_t len = 0;
        void *bytes = t_read_file(P.paths[photo], &len);
        REQUIRE(bytes);
        char uri[64];
        snprintf(uri, sizeof uri, "upload-%d", k);
        REQUIRE_OK(eng_upload_prepare(g->db, bytes, len, uri, &o, &g->u[k]));
        free(bytes); /* prepare keeps what it needs */
        g->s[k].coll = o.collection ? o.collection : "default";
        CB[k] = (cb){g, k};
    }
    g->n = np + 3;
    eng_upload_commit(g->db, g->u[0], on_done, &CB[0]);
    pthread_mutex_lock(&g->mu);
    while (g->finished < g->n) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);

    eng_stats st;
    CHECK_OK(eng_get_stats(g->db, &st));
    CHECK_EQ_INT(st.upload_groups, 2);          /* the first alone, then all the others */
    CHECK_EQ_INT(st.uploads_grouped, g->n);
    for (int k = 0; k < g->n; k++) {
        slot *s = &g->s[k];
        if (k == i_bad) {
            CHECK(s->rc == PERR_INVALID || s->rc == PERR_TOO_LARGE);
            CHECK(strstr(s->msg, "upload-") != NULL); /* names the upload */
            continue;
        }
        if (s->rc) { t_fail(__FILE__, __LINE__, "upload %d: %s", k, s->msg); continue; }
        if (k == i_dup) {
            CHECK_EQ_INT(s->outcome, ENG_PRESENT);
            CHECK_EQ_INT(s->id, g->s[3].id);
        } else {
            CHECK_EQ_INT(s->outcome, ENG_ADDED);
            CHECK(s->found_at_ack);
        }
    }
    CHECK(g->s[i_other].id != g->s[5].id);
    /* ids unique among the added */
    for (int a = 0; a < g->n; a++)
        for (int b = a + 1; b < g->n; b++)
            if (a != i_dup && b != i_dup && a != i_bad && b != i_bad) CHECK(g->s[a].id != g->s[b].id);
    CHECK_OK(eng_close(g->db));

    /* durable: every acknowledged item after a reopen, with its labels and
     * metadata; nothing of the refused one */
    eng_db *db = open_db(dir, 0);
    REQUIRE(db);
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_items, np);
    CHECK_EQ_INT(ci.n_index, np);
    CHECK_OK(eng_collection_get(db, "other", &ci));
    CHECK_EQ_INT(ci.n_items, 1);
    for (int k = 0; k < g->n; k++) {
        if (k == i_bad || g->s[k].rc) continue;
        CHECK(stored_and_found(db, g->s[k].id, g->s[k].coll));
        eng_item *it = NULL;
        if (eng_get(db, g->s[k].id, 0, &it) == PERR_OK) {
            CHECK(it->n_labels == 1 && !strcmp(it->labels[0], "grp"));
            CHECK(it->n_meta == 1 && !strcmp(it->meta[0].key, "src") && !strcmp(it->meta[0].value, "group"));
            eng_item_free(it);
        }
    }
    CHECK_OK(eng_close(db));
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    t_rmtree(dir);
    free(dir);
}

/* ---- a group whose transaction dies ---------------------------------- */

/* A map too small for one upload's ~960 KB of metadata: the group's
 * transaction fails with "map full"; each upload is then committed alone,
 * so only the big one fails. */
static void test_full_group(void) {
    char *dir = t_tmpdir("eng-group-full");
    grp *g = calloc(1, sizeof *g);
    REQUIRE(g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->db = open_db_map(dir, 1, (size_t)768 << 10);
    REQUIRE(g->db);
    enum { NBIG = 16, VBIG = 60000 };
    char *vals = malloc((size_t)NBIG * (VBIG + 1));
    REQUIRE(vals);
    eng_kv big[NBIG];
    char keys[NBIG][8];
    for (int i = 0; i < NBIG; i++) {
        char *v = vals + (size_t)i * (VBIG + 1);
        memset(v, 'a' + i, VBIG);
        v[VBIG] = 0;
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        big[i] = (eng_kv){keys[i], v};
    }
    const int i_big = 2;
    g->n = 6;
    for (int k = 0; k < g->n; k++) {
        eng_ingest_opts o;
        eng_ingest_opts_default(&o);
        if (k == i_big) { o.meta = big; o.n_meta = NBIG; }
        size_t len = 0;
        void *bytes = t_read_file(P.paths[k], &len);
        REQUIRE(bytes);
        char uri[64];
        snprintf(uri, sizeof uri, "full-%d", k);
        REQUIRE_OK(eng_upload_prepare(g->db, bytes, len, uri, &o, &g->u[k]));
        free(bytes);
        g->s[k].coll = "default";
        CB[k] = (cb){g, k};
    }
    free(vals);
    eng_upload_commit(g->db, g->u[0], on_done, &CB[0]);
    pthread_mutex_lock(&g->mu);
    while (g->finished < g->n) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    eng_stats st;
    CHECK_OK(eng_get_stats(g->db, &st));
    CHECK_EQ_INT(st.upload_groups, 2);
    for (int k = 0; k < g->n; k++) {
        slot *s = &g->s[k];
        if (k == i_big) {
            CHECK_EQ_INT(s->rc, PERR_FULL);
            CHECK(strstr(s->msg, "full-2") != NULL);
            continue;
        }
        if (s->rc) { t_fail(__FILE__, __LINE__, "upload %d: %s", k, s->msg); continue; }
        CHECK_EQ_INT(s->outcome, ENG_ADDED);
        CHECK(s->found_at_ack);
    }
    CHECK_OK(eng_close(g->db));
    eng_db *db = open_db_map(dir, 0, (size_t)768 << 10);
    REQUIRE(db);
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_items, g->n - 1);
    CHECK_EQ_INT(ci.n_index, g->n - 1);
    for (int k = 0; k < g->n; k++)
        if (k != i_big && !g->s[k].rc) CHECK(stored_and_found(db, g->s[k].id, "default"));
    CHECK_OK(eng_close(db));
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    t_rmtree(dir);
    free(dir);
}

/* ---- several threads through eng_add_buffer -------------------------- */

enum { NT = 4 };
typedef struct th { eng_db *db; int t; uint64_t ids[64]; eng_outcome oc[64]; int n; uint64_t shared_id; eng_outcome shared_oc; int err; } th;

static void *uploader(void *p) {
    th *a = p;
    /* first the photo all threads upload, then a share of the others */
    for (int i = -1; i < P.n; i++) {
        int photo = i < 0 ? 0 : i;
        if (i >= 0 && (i == 0 || i % NT != a->t)) continue;
        size_t len = 0;
        void *bytes = t_read_file(P.paths[photo], &len);
        if (!bytes) { a->err = 1; return NULL; }
        uint64_t id = 0;
        eng_outcome oc = ENG_FAILED;
        int rc = eng_add_buffer(a->db, bytes, len, P.paths[photo], NULL, &id, &oc);
        free(bytes);
        if (rc) { fprintf(stderr, "thread %d: %s\n", a->t, perr_msg()); a->err = 1; return NULL; }
        if (i < 0) { a->shared_id = id; a->shared_oc = oc; }
        else if (a->n < 64) { a->ids[a->n] = id; a->oc[a->n++] = oc; }
    }
    return NULL;
}

static void test_threads(void) {
    char *dir = t_tmpdir("eng-group-thr");
    eng_db *db = open_db(dir, 1);
    REQUIRE(db);
    th a[NT];
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].db = db;
        a[i].t = i;
        pthread_create(&t[i], NULL, uploader, &a[i]);
    }
    for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
    int added_shared = 0, total = 0;
    for (int i = 0; i < NT; i++) {
        CHECK(!a[i].err);
        CHECK_EQ_INT(a[i].shared_id, a[0].shared_id);
        added_shared += a[i].shared_oc == ENG_ADDED;
        for (int k = 0; k < a[i].n; k++) {
            CHECK_EQ_INT(a[i].oc[k], ENG_ADDED);
            CHECK(stored_and_found(db, a[i].ids[k], "default"));
            total++;
        }
    }
    CHECK_EQ_INT(added_shared, 1);
    CHECK_EQ_INT(total, P.n - 1);
    CHECK(stored_and_found(db, a[0].shared_id, "default"));
    eng_stats st;
    CHECK_OK(eng_get_stats(db, &st));
    /* every upload that was stored went through the committer */
    CHECK(st.uploads_grouped >= (uint64_t)total + 1);
    CHECK(st.upload_groups >= 1 && st.upload_groups <= st.uploads_grouped);
    printf("  %d threads: %llu uploads in %llu transactions\n", NT, (unsigned long long)st.uploads_grouped,
           (unsigned long long)st.upload_groups);
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_items, P.n);
    CHECK_EQ_INT(ci.n_index, P.n);
    CHECK_OK(eng_close(db));
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    int n = photos_gather(&P, 32, 256);
    if (n < 16) {
        fprintf(stderr, "test_eng_group: %d photos found, 16 needed (scripts/deps.sh installs them)\n", n);
        return 1;
    }
    T_RUN(test_one_group);
    T_RUN(test_full_group);
    T_RUN(test_threads);
    photos_free(&P);
    free(model_path);
    free(vocab_path);
    return t_done();
}
