/* test_engine: the database on real photos with the tiny-a model.
 *
 * Answers known by construction: an ingested photo finds itself first with
 * cosine 1; a re-encoded copy is a near-duplicate; an identical copy under
 * another name is "already present"; deleted items never come back (after
 * reopen and after an index rebuild); filters and minimum scores return
 * exactly what a brute-force scan over the stored vectors says; moderation
 * sees an item added just before; another model is refused. */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"
#include "photos.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static photo_set P;
static char *model_path, *vocab_path;

static int open_db(const char *dir, const char *model, eng_db **db) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model;
    o.vocab_path = vocab_path;
    o.create = 1;
    return eng_open(dir, &o, db);
}

static char *copy_file(const char *src, const char *dir, const char *name) {
    size_t len;
    void *d = t_read_file(src, &len);
    if (!d) return NULL;
    char *p = t_path("%s", dir);
    free(p);
    p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    t_write_file(p, d, len);
    free(d);
    return p;
}

typedef struct collect { uint64_t *ids; char **paths; int n; int failed; int present; } collect;

static void on_result(void *u, const eng_file_result *r) {
    collect *c = u;
    if (r->outcome == ENG_FAILED) { c->failed++; return; }
    if (r->outcome == ENG_PRESENT) c->present++;
    c->ids = realloc(c->ids, sizeof *c->ids * (size_t)(c->n + 1));
    c->paths = realloc(c->paths, sizeof *c->paths * (size_t)(c->n + 1));
    c->ids[c->n] = r->id;
    c->paths[c->n++] = strdup(r->path);
}

static void collect_free(collect *c) {
    for (int i = 0; i < c->n; i++) free(c->paths[i]);
    free(c->ids);
    free(c->paths);
    memset(c, 0, sizeof *c);
}

static uint64_t id_of(const collect *c, const char *path) {
    for (int i = 0; i < c->n; i++) if (!strcmp(c->paths[i], path)) return c->ids[i];
    return 0;
}

/* ------------------------------------------------------------- ingest */

static void test_ingest_search_self(void) {
    char *dir = t_tmpdir("eng-self");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, model_path, &db));
    collect c = {0};
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.on_result = on_result;
    o.user = &c;
    o.jobs = 2;
    eng_progress p;
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, P.n, &o, &p));
    CHECK_EQ_INT(p.added, P.n);
    CHECK_EQ_INT(p.failed, 0);
    CHECK_EQ_INT(c.n, P.n);
    /* every photo finds itself first, score 1 (by file and by id) */
    eng_query q;
    eng_query_default(&q);
    q.k = 3;
    for (int i = 0; i < P.n; i++) {
        uint64_t id = id_of(&c, P.paths[i]);
        CHECK(id != 0);
        eng_results *r = NULL;
        CHECK_OK(eng_search_image_file(db, P.paths[i], &q, &r));
        if (r && r->n > 0) {
            if (r->hits[0].id != id) t_fail(__FILE__, __LINE__, "%s: first hit %llu, expected %llu", P.paths[i],
                                            (unsigned long long)r->hits[0].id, (unsigned long long)id);
            CHECK(fabsf(r->hits[0].score - 1.0f) < 1e-5f);
            CHECK_STR(r->hits[0].uri, P.paths[i]);
            CHECK_STR(r->hits[0].collection, "default");
            CHECK(r->hits[0].start_s == -1);
        } else CHECK(r && r->n > 0);
        eng_results_free(r);
        q.include_self = 1;
        CHECK_OK(eng_search_id(db, id, &q, &r));
        if (r && r->n) { CHECK(r->hits[0].id == id); CHECK(fabsf(r->hits[0].score - 1.0f) < 1e-5f); }
        eng_results_free(r);
        q.include_self = 0;
        CHECK_OK(eng_search_id(db, id, &q, &r));
        for (int k = 0; r && k < r->n; k++) CHECK(r->hits[k].id != id);
        eng_results_free(r);
    }
    /* text search returns k results sorted by score */
    eng_results *r = NULL;
    q.k = 10;
    CHECK_OK(eng_search_text(db, "a photo of a cat", &q, &r));
    CHECK(r && r->n == 10);
    for (int k = 1; r && k < r->n; k++) CHECK(r->hits[k - 1].score >= r->hits[k].score);
    eng_results_free(r);

    /* an identical copy under another name is already present, with the id */
    char *cp = copy_file(P.paths[0], dir, "copy-of-first.jpg");
    collect c2 = {0};
    o.user = &c2;
    const char *one[] = {cp};
    CHECK_OK(eng_ingest_paths(db, one, 1, &o, &p));
    CHECK_EQ_INT(p.present, 1);
    CHECK_EQ_INT(p.added, 0);
    CHECK(c2.n == 1 && c2.ids[0] == id_of(&c, P.paths[0]));
    /* a second run over everything adds nothing (resume) */
    collect c3 = {0};
    o.user = &c3;
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, P.n, &o, &p));
    CHECK_EQ_INT(p.present, P.n);
    CHECK_EQ_INT(p.added, 0);
    /* the item record */
    eng_item *it = NULL;
    CHECK_OK(eng_get(db, id_of(&c, P.paths[1]), 1, &it));
    if (it) {
        CHECK_STR(it->uri, P.paths[1]);
        CHECK_STR(it->media, "image");
        CHECK(it->width > 0 && it->height > 0 && it->size > 0);
        CHECK(it->dim == 32);
        double n2 = 0;
        for (int d = 0; d < it->dim; d++) n2 += it->vector[d] * it->vector[d];
        CHECK(fabs(n2 - 1) < 1e-4);
    }
    eng_item_free(it);
    CHECK_OK(eng_close(db));
    free(cp);
    collect_free(&c); collect_free(&c2); collect_free(&c3);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------- near-dups */

static float cosine(eng_db *db, const char *a, const char *b) {
    float va[32], vb[32];
    if (eng_encode_image_file(db, a, va) || eng_encode_image_file(db, b, vb)) return NAN;
    double s = 0;
    for (int i = 0; i < 32; i++) s += va[i] * vb[i];
    return (float)s;
}

static void test_near_duplicates(void) {
    char *dir = t_tmpdir("eng-near");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, model_path, &db));
    int nb = P.n < 24 ? P.n : 24;
    /* calibration table: cosine of each variant to its original */
    static const photo_variant vs[] = {PV_REENCODE_Q60, PV_REENCODE_PNG, PV_RESIZE_70, PV_CROP_90, PV_ROT90, PV_FLIP};
    enum { NV = sizeof vs / sizeof vs[0] };
    float mn[NV], mx[NV];
    double sum[NV];
    for (int v = 0; v < NV; v++) { mn[v] = 2; mx[v] = -2; sum[v] = 0; }
    float other_max = -2;
    char **q60 = calloc((size_t)nb, sizeof *q60);
    for (int i = 0; i < nb; i++) {
        for (int v = 0; v < NV; v++) {
            char dst[4096];
            snprintf(dst, sizeof dst, "%s/v%02d-%s.%s", dir, i, photos_variant_name(vs[v]),
                     vs[v] == PV_REENCODE_PNG ? "png" : "jpg");
            REQUIRE(photos_make_variant(P.paths[i], dst, vs[v]) == 0);
            float c = cosine(db, P.paths[i], dst);
            if (c < mn[v]) mn[v] = c;
            if (c > mx[v]) mx[v] = c;
            sum[v] += c;
            if (vs[v] == PV_REENCODE_Q60) q60[i] = strdup(dst);
        }
        for (int j = 0; j < nb; j++) {
            if (j == i) continue;
            float c = cosine(db, P.paths[i], P.paths[j]);
            if (c > other_max) other_max = c;
        }
    }
    printf("  near-duplicate calibration, tiny-a model, %d photos (cosine to the original):\n", nb);
    for (int v = 0; v < NV; v++)
        printf("    %-14s min %.4f  mean %.4f  max %.4f\n", photos_variant_name(vs[v]), mn[v], sum[v] / nb, mx[v]);
    printf("    %-14s max %.4f\n", "other photos", other_max);
    /* re-encodes are near-duplicates under the default threshold */
    CHECK(mn[0] >= ENG_NEAR_THRESHOLD_DEFAULT);
    CHECK(mn[1] >= ENG_NEAR_THRESHOLD_DEFAULT);

    /* dups --tier near groups each original with its q60 re-encode */
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    collect c = {0};
    o.on_result = on_result;
    o.user = &c;
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, nb, &o, NULL));
    CHECK_OK(eng_ingest_paths(db, (const char *const *)q60, nb, &o, NULL));
    eng_dups *d = NULL;
    CHECK_OK(eng_find_dups(db, NULL, ENG_DUP_NEAR, 0, &d));
    for (int i = 0; d && i < nb; i++) {
        uint64_t a = id_of(&c, P.paths[i]), b = id_of(&c, q60[i]);
        int together = 0;
        for (int g = 0; g < d->n; g++) {
            int ha = 0, hb = 0;
            for (int k = 0; k < d->groups[g].n; k++) { ha |= d->groups[g].ids[k] == a; hb |= d->groups[g].ids[k] == b; }
            together |= ha && hb;
        }
        if (!together) t_fail(__FILE__, __LINE__, "photo %d and its q60 re-encode not grouped", i);
    }
    /* no group joins two different photos */
    for (int g = 0; d && g < d->n; g++) {
        int originals = 0;
        for (int k = 0; k < d->groups[g].n; k++)
            for (int i = 0; i < nb; i++) originals += d->groups[g].ids[k] == id_of(&c, P.paths[i]);
        if (originals > 1) t_fail(__FILE__, __LINE__, "near group %d joins %d different photos", g, originals);
    }
    eng_dups_free(d);
    /* exact tier: the same bytes in two collections */
    o.collection = "other";
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, 2, &o, NULL));
    CHECK_OK(eng_find_dups(db, NULL, ENG_DUP_EXACT, 0, &d));
    CHECK(d && d->n == 2);
    eng_dups_free(d);
    CHECK_OK(eng_find_dups(db, "default", ENG_DUP_EXACT, 0, &d));
    CHECK(d && d->n == 0);
    eng_dups_free(d);
    for (int i = 0; i < nb; i++) free(q60[i]);
    free(q60);
    collect_free(&c);
    CHECK_OK(eng_close(db));
    t_rmtree(dir);
    free(dir);
}

/* --------------------------------------------- filters, min-score, merge */

typedef struct brute { const float *q; int dim; const char *label; const char *mk, *mv;
                       uint64_t ids[4096]; float sc[4096]; char coll[4096][ENG_NAME_MAX]; int n; } brute;

static int brute_fn(void *u, const eng_item *it) {
    brute *b = u;
    if (b->label) {
        int has = 0;
        for (int i = 0; i < it->n_labels; i++) has |= !strcmp(it->labels[i], b->label);
        if (!has) return 0;
    }
    if (b->mk) {
        int has = 0;
        for (int i = 0; i < it->n_meta; i++) has |= !strcmp(it->meta[i].key, b->mk) && !strcmp(it->meta[i].value, b->mv);
        if (!has) return 0;
    }
    double s = 0;
    for (int i = 0; i < b->dim; i++) s += b->q[i] * it->vector[i];
    b->ids[b->n] = it->id;
    b->sc[b->n] = (float)s;
    snprintf(b->coll[b->n], ENG_NAME_MAX, "%s", it->collection);
    b->n++;
    return 0;
}

static void test_filters_minscore_merge(void) {
    char *dir = t_tmpdir("eng-filter");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, model_path, &db));
    int half = P.n / 2;
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    const char *lab[] = {"nature"};
    eng_kv meta[] = {{"source", "debian"}, {"batch", "1"}};
    o.collection = "a";
    o.labels = lab; o.n_labels = 1;
    o.meta = meta; o.n_meta = 2;
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, half / 2, &o, NULL));
    o.labels = NULL; o.n_labels = 0;
    meta[1].value = "2";
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths + half / 2, half - half / 2, &o, NULL));
    o.collection = "b";
    o.n_meta = 0;
    CHECK_OK(eng_collection_create(db, "b", "HNSW16"));
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths + half, P.n - half, &o, NULL));

    float qv[32];
    REQUIRE_OK(eng_encode_text(db, "mountains and a lake", qv));
    eng_query q;
    eng_query_default(&q);
    /* label filter: exactly the labeled items, best first (brute force) */
    const char *cols_a[] = {"a"};
    q.collections = cols_a; q.n_collections = 1;
    q.labels = lab; q.n_labels = 1;
    q.k = 100;
    eng_results *r = NULL;
    CHECK_OK(eng_search_vector(db, qv, 32, &q, &r));
    brute *b = calloc(1, sizeof *b);
    b->q = qv; b->dim = 32; b->label = "nature";
    CHECK_OK(eng_foreach(db, "a", 1, brute_fn, b));
    CHECK_EQ_INT(r ? r->n : -1, b->n);
    CHECK_EQ_INT(b->n, half / 2);
    for (int i = 0; r && i < r->n; i++) {
        int found = 0;
        for (int k = 0; k < b->n; k++) if (b->ids[k] == r->hits[i].id) { found = 1; CHECK(fabsf(b->sc[k] - r->hits[i].score) < 1e-5f); }
        CHECK(found);
        CHECK(r->hits[i].n_labels == 1 && !strcmp(r->hits[i].labels[0], "nature"));
    }
    eng_results_free(r);
    /* metadata AND label: batch=2 items never have the label: empty */
    eng_kv w2[] = {{"batch", "2"}};
    q.where = w2; q.n_where = 1;
    CHECK_OK(eng_search_vector(db, qv, 32, &q, &r));
    CHECK(r && r->n == 0);
    eng_results_free(r);
    q.labels = NULL; q.n_labels = 0;
    CHECK_OK(eng_search_vector(db, qv, 32, &q, &r));
    CHECK_EQ_INT(r ? r->n : -1, half - half / 2);
    eng_results_free(r);
    q.where = NULL; q.n_where = 0;

    /* min-score over both collections: exactly the items >= threshold */
    memset(b, 0, sizeof *b);
    b->q = qv; b->dim = 32;
    CHECK_OK(eng_foreach(db, NULL, 1, brute_fn, b));
    CHECK_EQ_INT(b->n, P.n);
    float sorted[4096];
    memcpy(sorted, b->sc, sizeof(float) * (size_t)b->n);
    for (int i = 1; i < b->n; i++) for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) { float t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t; }
    float thr = (sorted[b->n / 3] + sorted[b->n / 3 + 1]) / 2; /* between two scores */
    int expect = 0;
    for (int i = 0; i < b->n; i++) expect += b->sc[i] >= thr;
    const char *both[] = {"a", "b"};
    q.collections = both; q.n_collections = 2;
    q.has_min_score = 1; q.min_score = thr; q.k = 0;
    CHECK_OK(eng_search_vector(db, qv, 32, &q, &r));
    CHECK_EQ_INT(r ? r->n : -1, expect);
    for (int i = 0; r && i < r->n; i++) CHECK(r->hits[i].score >= thr);
    eng_results_free(r);
    /* merge: top-k over two collections = brute-force top-k, in order */
    q.has_min_score = 0; q.k = 15;
    CHECK_OK(eng_search_vector(db, qv, 32, &q, &r));
    REQUIRE(r && r->n == 15);
    int seen_a = 0, seen_b = 0;
    for (int i = 0; i < 15; i++) {
        CHECK(fabsf(r->hits[i].score - sorted[i]) < 1e-5f);
        if (i) CHECK(r->hits[i - 1].score >= r->hits[i].score);
        seen_a |= !strcmp(r->hits[i].collection, "a");
        seen_b |= !strcmp(r->hits[i].collection, "b");
    }
    printf("  merge: top-15 holds items of a: %d, of b: %d\n", seen_a, seen_b);
    eng_results_free(r);
    /* unknown collection: clear error */
    const char *nope[] = {"nope"};
    q.collections = nope; q.n_collections = 1;
    CHECK_ERR(eng_search_vector(db, qv, 32, &q, &r), PERR_NOT_FOUND);
    free(b);
    CHECK_OK(eng_close(db));
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------ delete, rebuild */

static int search_has(eng_db *db, const char *path, uint64_t id) {
    eng_query q;
    eng_query_default(&q);
    q.k = 50;
    eng_results *r = NULL;
    if (eng_search_image_file(db, path, &q, &r)) return -1;
    int has = 0;
    for (int i = 0; i < r->n; i++) has |= r->hits[i].id == id;
    eng_results_free(r);
    return has;
}

static void test_delete_reopen_rebuild(void) {
    char *dir = t_tmpdir("eng-del");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, model_path, &db));
    int n = P.n < 30 ? P.n : 30;
    collect c = {0};
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.on_result = on_result;
    o.user = &c;
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, n, &o, NULL));
    uint64_t del[3] = {id_of(&c, P.paths[0]), id_of(&c, P.paths[5]), id_of(&c, P.paths[9])};
    int removed = 0;
    CHECK_OK(eng_remove(db, del, 3, &removed));
    CHECK_EQ_INT(removed, 3);
    uint64_t unknown = 999999;
    CHECK_ERR(eng_remove(db, &unknown, 1, &removed), PERR_NOT_FOUND);
    CHECK_EQ_INT(search_has(db, P.paths[0], del[0]), 0);
    eng_item *it = NULL;
    CHECK_ERR(eng_get(db, del[1], 0, &it), PERR_NOT_FOUND);
    CHECK_OK(eng_close(db));
    /* reopen: replay from the saved index */
    REQUIRE_OK(open_db(dir, NULL, &db));
    CHECK_EQ_INT(search_has(db, P.paths[5], del[1]), 0);
    CHECK_EQ_INT(search_has(db, P.paths[6], id_of(&c, P.paths[6])), 1);
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_items, n - 3);
    CHECK_EQ_INT(ci.n_index, n - 3);
    CHECK_OK(eng_close(db));
    /* damage the index file: rebuilt from LMDB, the deleted stay deleted */
    char *ip = t_path("%s/index", dir);
    char *f = NULL;
    {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "ls %s/*.faiss", ip);
        FILE *pp = popen(cmd, "r");
        char line[4096] = "";
        if (pp && fgets(line, sizeof line, pp)) { line[strcspn(line, "\n")] = 0; f = strdup(line); }
        if (pp) pclose(pp);
    }
    REQUIRE(f != NULL);
    size_t len;
    unsigned char *data = t_read_file(f, &len);
    REQUIRE(data && len > 64);
    data[len / 2] ^= 0x5a;
    t_write_file(f, data, len / 2 + 10); /* flipped and truncated */
    free(data);
    REQUIRE_OK(open_db(dir, NULL, &db));
    CHECK_EQ_INT(search_has(db, P.paths[9], del[2]), 0);
    CHECK_EQ_INT(search_has(db, P.paths[7], id_of(&c, P.paths[7])), 1);
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_index, n - 3);
    CHECK_OK(eng_close(db));
    /* missing index file: rebuilt too */
    unlink(f);
    REQUIRE_OK(open_db(dir, NULL, &db));
    CHECK_EQ_INT(search_has(db, P.paths[0], del[0]), 0);
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_index, n - 3);
    /* re-ingesting deleted bytes adds them back under a new id */
    collect c2 = {0};
    o.user = &c2;
    const char *one[] = {P.paths[0]};
    eng_progress p;
    CHECK_OK(eng_ingest_paths(db, one, 1, &o, &p));
    CHECK_EQ_INT(p.added, 1);
    CHECK(c2.n == 1 && c2.ids[0] != del[0]);
    CHECK_OK(eng_close(db));
    collect_free(&c); collect_free(&c2);
    free(f); free(ip);
    t_rmtree(dir);
    free(dir);
}


/* HNSW cannot remove: deletes leave tombstones; past 20 % of the graph the
 * engine rebuilds the index from LMDB (build, swap, save). Checked on the
 * in-memory index (collection info), on the saved file (after reopen), and
 * on the answers: every live photo still finds itself first with score 1,
 * no deleted item ever comes back. */
static void check_hnsw_answers(eng_db *db, const collect *c, const uint64_t *del, int n_del, int live) {
    eng_query q;
    eng_query_default(&q);
    const char *coll = "h";
    q.collections = &coll;
    q.n_collections = 1;
    q.k = 50;
    for (int i = 0; i < c->n; i++) {
        int dead = 0;
        for (int d = 0; d < n_del; d++) dead |= del[d] == c->ids[i];
        eng_results *r = NULL;
        CHECK_OK(eng_search_image_file(db, c->paths[i], &q, &r));
        if (!r) continue;
        for (int k = 0; k < r->n; k++)
            for (int d = 0; d < n_del; d++)
                if (r->hits[k].id == del[d]) t_fail(__FILE__, __LINE__, "deleted item %llu returned", (unsigned long long)del[d]);
        if (!dead) {
            if (r->n == 0 || r->hits[0].id != c->ids[i] || fabsf(r->hits[0].score - 1.0f) > 1e-5f)
                t_fail(__FILE__, __LINE__, "%s: first hit %llu (score %g), expected %llu", c->paths[i],
                       r->n ? (unsigned long long)r->hits[0].id : 0ULL, r->n ? r->hits[0].score : 0.0f,
                       (unsigned long long)c->ids[i]);
        }
        /* HNSW is approximate: k = 50 over ~50 live items may miss one or two */
        int want = live < 50 ? live : 50;
        if (r->n > want || r->n < want - 2) t_fail(__FILE__, __LINE__, "%d hits, %d live items", r->n, want);
        eng_results_free(r);
    }
}

static void test_hnsw_tombstone_rebuild(void) {
    char *dir = t_tmpdir("eng-hnsw");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, model_path, &db));
    REQUIRE_OK(eng_collection_create(db, "h", "HNSW32"));
    int n = P.n < 60 ? P.n : 60;
    collect c = {0};
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.collection = "h";
    o.on_result = on_result;
    o.user = &c;
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, n, &o, NULL));
    REQUIRE(c.n == n);
    /* under the limit: tombstones stay (d / n of the graph) */
    int below = (int)(0.2 * n) - 1;   /* 11 of 60: 0.18 */
    uint64_t del[64];
    int n_del = 0;
    for (int i = 0; i < below; i++) del[n_del++] = c.ids[(i * 7) % n];
    int removed = 0;
    CHECK_OK(eng_remove(db, del, n_del, &removed));
    CHECK_EQ_INT(removed, n_del);
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "h", &ci));
    CHECK(fabs(ci.tombstone_frac - (double)n_del / n) < 1e-9);
    CHECK_EQ_INT(ci.n_index, n - n_del);
    check_hnsw_answers(db, &c, del, n_del, n - n_del);
    CHECK_OK(eng_close(db));
    /* reopen: the saved file keeps its tombstones (still under the limit) */
    REQUIRE_OK(open_db(dir, NULL, &db));
    CHECK_OK(eng_collection_get(db, "h", &ci));
    CHECK(fabs(ci.tombstone_frac - (double)n_del / n) < 1e-9);
    /* two more deletes pass 0.2: rebuilt from LMDB, no tombstone left */
    uint64_t more[2];
    for (int i = 0, k = 0; k < 2 && i < n; i++) {
        int dead = 0;
        for (int d = 0; d < n_del; d++) dead |= del[d] == c.ids[i];
        if (!dead) { more[k++] = c.ids[i]; del[n_del++] = c.ids[i]; }
    }
    CHECK_OK(eng_remove(db, more, 2, &removed));
    CHECK_EQ_INT(removed, 2);
    CHECK_OK(eng_collection_get(db, "h", &ci));
    CHECK(ci.tombstone_frac == 0);
    CHECK_EQ_INT(ci.n_index, n - n_del);
    CHECK_EQ_INT(ci.n_items, n - n_del);
    CHECK_EQ_INT(ci.index_seq, ci.seq);
    check_hnsw_answers(db, &c, del, n_del, n - n_del);
    /* adds after the rebuild land in the new index */
    collect c2 = {0};
    o.user = &c2;
    const char *one[] = {P.paths[n < P.n ? n : 0]};
    eng_progress p;
    CHECK_OK(eng_ingest_paths(db, one, 1, &o, &p));
    CHECK_EQ_INT(p.added + p.present, 1);
    CHECK_OK(eng_close(db));
    /* the rebuilt index was saved: reopen finds it clean and consistent */
    REQUIRE_OK(open_db(dir, NULL, &db));
    CHECK_OK(eng_collection_get(db, "h", &ci));
    CHECK(ci.tombstone_frac == 0);
    CHECK_EQ_INT(ci.n_index, ci.n_items);
    check_hnsw_answers(db, &c, del, n_del, (int)ci.n_items);
    CHECK_OK(eng_close(db));
    collect_free(&c); collect_free(&c2);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------ moderation */

static void test_moderation(void) {
    char *dir = t_tmpdir("eng-mod");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, model_path, &db));
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.collection = "banned";
    CHECK_OK(eng_ingest_paths(db, (const char *const *)P.paths, 10, &o, NULL));
    const char *sets[] = {"banned"};
    eng_mod_result *m = NULL;
    /* no threshold anywhere: a clear error */
    CHECK_ERR(eng_moderate_file(db, P.paths[20], sets, 1, NAN, 3, &m), PERR_INVALID);
    CHECK_OK(eng_set_threshold(db, "banned", 0.999f));
    float t;
    CHECK_OK(eng_get_threshold(db, "banned", &t));
    CHECK(t == 0.999f);
    CHECK_OK(eng_moderate_file(db, P.paths[20], sets, 1, NAN, 3, &m));
    if (m) { CHECK(!m->matched); CHECK(m->thresholds[0] == 0.999f); CHECK(m->nearest->n == 3); }
    eng_mod_result_free(m);
    /* added just before: matched by the very next lookup */
    uint64_t id;
    eng_outcome oc;
    size_t len;
    void *bytes = t_read_file(P.paths[20], &len);
    REQUIRE(bytes);
    CHECK_OK(eng_add_buffer(db, bytes, len, "upload-20", &o, &id, &oc));
    CHECK(oc == ENG_ADDED);
    CHECK_OK(eng_moderate_buffer(db, bytes, len, sets, 1, NAN, 3, &m));
    if (m) {
        CHECK(m->matched);
        CHECK(m->nearest->n >= 1 && m->nearest->hits[0].id == id);
        CHECK(fabsf(m->nearest->hits[0].score - 1) < 1e-5f);
    }
    eng_mod_result_free(m);
    /* a label set inside the collection: only labeled items count */
    const char *lset[] = {"banned:weapons"};
    CHECK_OK(eng_moderate_buffer(db, bytes, len, lset, 1, 0.999f, 3, &m));
    if (m) CHECK(!m->matched);
    eng_mod_result_free(m);
    CHECK_OK(eng_label_add(db, "weapons", &id, 1));
    CHECK_OK(eng_moderate_buffer(db, bytes, len, lset, 1, 0.999f, 3, &m));
    if (m) { CHECK(m->matched); CHECK(m->nearest->n == 1); }
    eng_mod_result_free(m);
    /* threshold persists across reopen; delete unmatches */
    CHECK_OK(eng_close(db));
    REQUIRE_OK(open_db(dir, NULL, &db));
    CHECK_OK(eng_get_threshold(db, "banned", &t));
    CHECK(t == 0.999f);
    int removed;
    CHECK_OK(eng_remove(db, &id, 1, &removed));
    CHECK_OK(eng_moderate_buffer(db, bytes, len, sets, 1, NAN, 3, &m));
    if (m) CHECK(!m->matched);
    eng_mod_result_free(m);
    free(bytes);
    CHECK_OK(eng_close(db));
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------ classification */

static void test_classify(void) {
    eng_db *db = NULL;
    REQUIRE_OK(eng_open_model(model_path, vocab_path, &db));
    const char *labels[] = {"cat", "dog", "rocket", "mountain"};
    float p[4];
    CHECK_OK(eng_classify_file(db, P.paths[0], labels, 4, NULL, p));
    double s = 0;
    for (int i = 0; i < 4; i++) { s += p[i]; CHECK(p[i] > 0 && p[i] < 1); }
    CHECK(fabs(s - 1) < 1e-5);
    /* against the formula: softmax(exp(logit_scale) * cos) */
    float img[32], txt[32];
    CHECK_OK(eng_encode_image_file(db, P.paths[0], img));
    double lg[4], mx = -1e30, z = 0;
    for (int i = 0; i < 4; i++) {
        char t[64];
        snprintf(t, sizeof t, "a photo of a %s.", labels[i]);
        CHECK_OK(eng_encode_text(db, t, txt));
        double c = 0;
        for (int d = 0; d < 32; d++) c += img[d] * txt[d];
        lg[i] = c;
        if (c > mx) mx = c;
    }
    /* the scale is the model's; check ratios: log(p_i/p_j) = scale*(c_i-c_j) */
    double scale = log(p[0] / p[1]) / (lg[0] - lg[1]);
    for (int i = 2; i < 4; i++) CHECK(fabs(log(p[0] / p[i]) - scale * (lg[0] - lg[i])) < 1e-3);
    (void)z;
    /* 11 labels: two encoder batches (8 + 3); each probability against the
     * formula with one-by-one text encodes; a second call (prompts from the
     * handle's cache) gives the same numbers */
    const char *many[] = {"cat", "dog", "rocket", "mountain", "beach", "city", "forest", "flower",
                          "car", "river", "snow"};
    float pm[11], pm2[11];
    CHECK_OK(eng_classify_file(db, P.paths[1], many, 11, "a picture of {label}", pm));
    CHECK_OK(eng_encode_image_file(db, P.paths[1], img));
    double lm[11], mxm = -1e30, zs = 0;
    float sc = 0;
    for (int i = 0; i < 11; i++) {
        char t[64];
        snprintf(t, sizeof t, "a picture of %s", many[i]);
        CHECK_OK(eng_encode_text(db, t, txt));
        double c = 0;
        for (int d = 0; d < 32; d++) c += img[d] * txt[d];
        lm[i] = c;
        if (c > mxm) mxm = c;
    }
    /* log(p_i/p_0) = scale * (c_i - c_0) for every label, the second batch's
     * too. Batched text encodes differ from one-by-one ones by summation
     * order (~1e-5 in cosine, times a logit scale ~100) */
    sc = (float)(log(pm[1] / pm[0]) / (lm[1] - lm[0]));
    CHECK(fabs(sc - scale) < 1e-2 * fabs(scale));
    for (int i = 2; i < 11; i++) {
        double got = log(pm[i] / pm[0]), want = scale * (lm[i] - lm[0]);
        if (fabs(got - want) > 1e-2) t_fail(__FILE__, __LINE__, "label %s: log-ratio %g, formula %g", many[i], got, want);
    }
    (void)zs; (void)mxm;
    CHECK_OK(eng_classify_file(db, P.paths[1], many, 11, "a picture of {label}", pm2));
    for (int i = 0; i < 11; i++) CHECK(pm[i] == pm2[i]);
    eng_item *it = NULL;
    CHECK_ERR(eng_get(db, 1, 0, &it), PERR_INVALID);
    eng_close(db);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_inputs(void) {
    char *dir = t_tmpdir("eng-bad");
    char *junk = t_path("%s/junk", dir);
    mkdir(junk, 0755);
    /* a directory of non-media, a truncated JPEG, an empty file, a FIFO, a
     * dangling link, a JPEG named .png (accepted: content decides) */
    char p[4096];
    snprintf(p, sizeof p, "%s/readme.txt", junk); t_write_file(p, "hello world\n", 12);
    snprintf(p, sizeof p, "%s/page.html", junk); t_write_file(p, "<!DOCTYPE html><html></html>", 28);
    snprintf(p, sizeof p, "%s/empty.jpg", junk); t_write_file(p, "", 0);
    size_t len;
    unsigned char *jpg = t_read_file(P.paths[3], &len);
    REQUIRE(jpg);
    snprintf(p, sizeof p, "%s/truncated.jpg", junk); t_write_file(p, jpg, len / 3);
    snprintf(p, sizeof p, "%s/real-jpeg.png", junk); t_write_file(p, jpg, len);
    free(jpg);
    snprintf(p, sizeof p, "%s/fifo.jpg", junk); mkfifo(p, 0644);
    snprintf(p, sizeof p, "%s/dangling.jpg", junk); symlink("/nonexistent/x.jpg", p);
    char *dbdir = t_path("%s/db", dir);
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dbdir, model_path, &db));
    collect c = {0};
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.on_result = on_result;
    o.user = &c;
    eng_progress pr;
    const char *in[] = {junk, "/nonexistent/file.jpg"};
    CHECK_OK(eng_ingest_paths(db, in, 2, &o, &pr));
    CHECK_EQ_INT(pr.added, 1);     /* real-jpeg.png */
    CHECK_EQ_INT(pr.failed, 7);
    CHECK_EQ_INT(c.failed, 7);
    collect_free(&c);
    CHECK_OK(eng_close(db));

    /* another model is refused, naming both */
    char *st = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    unsigned char *w = t_read_file(st, &len);
    REQUIRE(w);
    uint64_t hl = 0;
    memcpy(&hl, w, 8);
    /* change the first value of every tensor's data: the first 4 data bytes */
    w[8 + hl] ^= 0x01;
    char *other = t_path("%s/other.safetensors", dir);
    t_write_file(other, w, len);
    free(w);
    CHECK_ERR(open_db(dbdir, other, &db), PERR_MODEL);
    CHECK(strstr(perr_msg(), "other.safetensors") && strstr(perr_msg(), "tiny-a"));
    printf("  model mismatch: %s\n", perr_msg());
    /* with the right model: fine, and nothing lost */
    REQUIRE_OK(open_db(dbdir, st, &db));
    eng_stats s;
    CHECK_OK(eng_get_stats(db, &s));
    CHECK_EQ_INT(s.n_items, 1);
    CHECK_OK(eng_close(db));

    /* a full disk (small LMDB map): the run stops with a clear error and
     * every acknowledged item survives */
    char *small = t_path("%s/small", dir);
    eng_open_opts oo;
    eng_open_opts_default(&oo);
    oo.model_path = model_path;
    oo.vocab_path = vocab_path;
    oo.create = 1;
    oo.map_size = 128 * 1024;
    REQUIRE_OK(eng_open(small, &oo, &db));
    collect c2 = {0};
    o.user = &c2;
    o.commit_batch = 4;
    int rc = PERR_OK;
    static const char *cn[] = {"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"};
    for (int round = 0; round < 8 && rc == PERR_OK; round++) {
        o.collection = cn[round];
        rc = eng_ingest_paths(db, (const char *const *)P.paths, P.n, &o, &pr);
    }
    CHECK_EQ_INT(rc, PERR_FULL);
    CHECK(strstr(perr_msg(), "map size") != NULL);
    printf("  full: %s (%d acknowledged before)\n", perr_msg(), c2.n);
    CHECK(c2.n > 0);
    CHECK(c2.failed > 0);
    eng_close(db);
    int acked = 0;
    for (int i = 0; i < c2.n; i++) acked++;
    REQUIRE_OK(eng_open(small, &oo, &db));
    CHECK_OK(eng_get_stats(db, &s));
    CHECK_EQ_INT(s.n_items, acked);
    for (int i = 0; i < c2.n; i++) {
        eng_item *it = NULL;
        CHECK_OK(eng_get(db, c2.ids[i], 0, &it));
        eng_item_free(it);
    }
    eng_close(db);
    collect_free(&c2);
    free(small); free(other); free(st); free(dbdir); free(junk);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    int n = photos_gather(&P, 60, 256);
    printf("photos: %d real photos gathered\n", n);
    if (n < 40) {
        fprintf(stderr, "need at least 40 real photos (install gnome-backgrounds, mate-backgrounds, ukui-wallpapers: scripts/deps.sh)\n");
        return 1;
    }
    T_RUN(test_ingest_search_self);
    T_RUN(test_near_duplicates);
    T_RUN(test_filters_minscore_merge);
    T_RUN(test_delete_reopen_rebuild);
    T_RUN(test_hnsw_tombstone_rebuild);
    T_RUN(test_moderation);
    T_RUN(test_classify);
    T_RUN(test_bad_inputs);
    photos_free(&P);
    free(model_path);
    free(vocab_path);
    return t_done();
}
