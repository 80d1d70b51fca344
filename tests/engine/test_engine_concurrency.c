/* test_engine_concurrency: one eng_db handle, several query threads and one
 * writer thread at the same time (real photos, tiny-a model).
 *
 * The writer ingests photos and re-encoded variants (into a Flat
 * collection, with a label and metadata), adds random vectors to an HNSW
 * collection, and deletes from both (HNSW deletes pass the tombstone limit
 * again and again, so the index is rebuilt and swapped while queries run).
 * Each deletion is published (append-only list) only after eng_remove
 * returned.
 *
 * Query threads run every kind of query: text, image file, id, vector,
 * label filter, metadata filter, minimum score (range), moderation. Every
 * result must be consistent:
 *  - no id whose delete was acknowledged before the query started;
 *  - every id resolves with eng_get (unless its delete was acknowledged
 *    since the query started), with the collection, labels and metadata the
 *    filter asked for;
 *  - every score equals the cosine recomputed from the stored vector and the
 *    query vector (1e-4), scores best first, >= min_score for a range query;
 *  - a base photo (never deleted) finds itself first with score 1.
 */
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

#define N_READERS 3
#define N_BASE 16          /* photos ingested before the threads start */
#define N_ROUNDS 12        /* writer rounds */
#define HNSW_PER_ROUND 24  /* random vectors added to "h" per round */

static photo_set P;
static char *model_path, *vocab_path;
static eng_db *DB;
static int DIM;

/* base photos: path, id, and the query vector of the file */
static uint64_t base_id[N_BASE];
static float *base_vec;      /* encoded now from the file (image queries) */
static float *base_stored;   /* as stored at ingest (id and vector queries) */

static const char *texts[] = {"a photo of a mountain", "a city at night", "flowers", "the sea"};
static float *text_vec;

/* Deletions: `intent` gets the ids before eng_remove is called, `acked`
 * after it returned (append-only lists; a reader snapshots a count). */
typedef struct idlist { uint64_t *v; size_t n, cap; } idlist;
static pthread_mutex_t del_mu = PTHREAD_MUTEX_INITIALIZER;
static idlist intent, acked;
static atomic_int writer_done;
static atomic_long n_queries, n_hits_checked, n_raced;

static size_t del_snapshot(void) {
    pthread_mutex_lock(&del_mu);
    size_t n = acked.n;
    pthread_mutex_unlock(&del_mu);
    return n;
}

static int list_contains(const idlist *l, uint64_t id, size_t upto) {
    pthread_mutex_lock(&del_mu);
    if (upto > l->n) upto = l->n;
    int has = 0;
    for (size_t i = 0; i < upto && !has; i++) has = l->v[i] == id;
    pthread_mutex_unlock(&del_mu);
    return has;
}

static void list_publish(idlist *l, const uint64_t *ids, int n) {
    pthread_mutex_lock(&del_mu);
    for (int i = 0; i < n; i++) {
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 256;
            l->v = realloc(l->v, sizeof *l->v * l->cap);
        }
        l->v[l->n++] = ids[i];
    }
    pthread_mutex_unlock(&del_mu);
}

/* ---------------------------------------------------------------- checks */

typedef struct qcheck {
    const float *qvec;          /* normalized query vector */
    size_t del_before;          /* deletions acknowledged before the query */
    const char *label;          /* every hit must carry it (NULL: none) */
    const char *meta_key, *meta_val;
    const char *collection;     /* every hit must be in it (NULL: any) */
    float min_score;            /* NAN: none */
    const char *what;
} qcheck;

static void check_results(const qcheck *qc, const eng_results *r) {
    atomic_fetch_add(&n_queries, 1);
    for (int i = 0; i < r->n; i++) {
        const eng_hit *h = &r->hits[i];
        if (i && h->score > r->hits[i - 1].score)
            t_fail(__FILE__, __LINE__, "%s: hits not sorted (%g after %g)", qc->what, h->score, r->hits[i - 1].score);
        if (list_contains(&acked, h->id, qc->del_before))
            t_fail(__FILE__, __LINE__, "%s: item %llu returned after its delete was acknowledged", qc->what,
                   (unsigned long long)h->id);
        if (!isnan(qc->min_score) && h->score < qc->min_score)
            t_fail(__FILE__, __LINE__, "%s: score %g below min %g", qc->what, h->score, qc->min_score);
        if (qc->collection && strcmp(h->collection, qc->collection))
            t_fail(__FILE__, __LINE__, "%s: hit in collection %s", qc->what, h->collection);
        eng_item *it = NULL;
        int rc = eng_get(DB, h->id, 1, &it);
        if (rc == PERR_NOT_FOUND) {
            /* deleted after the query started: legal only for an id whose
             * delete is under way or done */
            if (!list_contains(&intent, h->id, SIZE_MAX))
                t_fail(__FILE__, __LINE__, "%s: item %llu returned but unknown to eng_get and never deleted",
                       qc->what, (unsigned long long)h->id);
            atomic_fetch_add(&n_raced, 1);
            continue;
        }
        if (rc) { t_fail(__FILE__, __LINE__, "%s: eng_get %llu: %s", qc->what, (unsigned long long)h->id, perr_msg()); continue; }
        atomic_fetch_add(&n_hits_checked, 1);
        if (strcmp(it->collection, h->collection) || strcmp(it->uri, h->uri))
            t_fail(__FILE__, __LINE__, "%s: item %llu: hit says %s/%s, item %s/%s", qc->what,
                   (unsigned long long)h->id, h->collection, h->uri, it->collection, it->uri);
        double cos = 0;
        for (int d = 0; d < it->dim; d++) cos += (double)qc->qvec[d] * it->vector[d];
        if (it->dim != DIM || fabs(cos - h->score) > 1e-4)
            t_fail(__FILE__, __LINE__, "%s: item %llu: score %.6f, recomputed %.6f", qc->what,
                   (unsigned long long)h->id, h->score, cos);
        if (qc->label) {
            int has = 0;
            for (int l = 0; l < it->n_labels; l++) has |= !strcmp(it->labels[l], qc->label);
            if (!has) t_fail(__FILE__, __LINE__, "%s: item %llu lacks label %s", qc->what, (unsigned long long)h->id, qc->label);
        }
        if (qc->meta_key) {
            int has = 0;
            for (int m = 0; m < it->n_meta; m++)
                has |= !strcmp(it->meta[m].key, qc->meta_key) && !strcmp(it->meta[m].value, qc->meta_val);
            if (!has) t_fail(__FILE__, __LINE__, "%s: item %llu lacks %s=%s", qc->what, (unsigned long long)h->id,
                             qc->meta_key, qc->meta_val);
        }
        eng_item_free(it);
    }
}

/* ---------------------------------------------------------------- readers */

static void rand_unit(unsigned *seed, float *v) {
    double s = 0;
    for (int d = 0; d < DIM; d++) { v[d] = (float)rand_r(seed) / RAND_MAX - 0.5f; s += (double)v[d] * v[d]; }
    for (int d = 0; d < DIM; d++) v[d] = (float)(v[d] / sqrt(s));
}

static void *reader(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    float *rv = malloc(sizeof(float) * (size_t)DIM);
    static const char *hcoll[] = {"h"};
    static const char *both[] = {"default", "h"};
    for (int it = 0; !atomic_load(&writer_done) || it < 40; it++) {
        int kind = it % 8;
        int b = rand_r(&seed) % N_BASE;
        eng_query q;
        eng_query_default(&q);
        q.k = 8;
        qcheck qc = {.min_score = NAN, .del_before = del_snapshot()};
        eng_results *r = NULL;
        int rc = PERR_OK;
        switch (kind) {
        case 0: /* text */
            qc.what = "text";
            qc.qvec = text_vec + (size_t)(it / 8 % 4) * DIM;
            rc = eng_search_text(DB, texts[it / 8 % 4], &q, &r);
            qc.collection = "default";
            break;
        case 1: /* image file: a base photo finds itself first */
            qc.what = "image";
            qc.qvec = base_vec + (size_t)b * DIM;
            rc = eng_search_image_file(DB, P.paths[b], &q, &r);
            if (rc == PERR_OK && (r->n == 0 || r->hits[0].id != base_id[b] || fabsf(r->hits[0].score - 1) > 1e-4f))
                t_fail(__FILE__, __LINE__, "image %s: first hit %llu (%g), expected %llu", P.paths[b],
                       r->n ? (unsigned long long)r->hits[0].id : 0ULL, r->n ? r->hits[0].score : 0.f,
                       (unsigned long long)base_id[b]);
            break;
        case 2: /* id */
            qc.what = "id";
            qc.qvec = base_stored + (size_t)b * DIM;
            rc = eng_search_id(DB, base_id[b], &q, &r);
            for (int i = 0; rc == PERR_OK && i < r->n; i++)
                if (r->hits[i].id == base_id[b]) t_fail(__FILE__, __LINE__, "id search returned itself");
            break;
        case 3: /* vector over both collections */
            qc.what = "vector";
            rand_unit(&seed, rv);
            qc.qvec = rv;
            q.collections = both;
            q.n_collections = 2;
            rc = eng_search_vector(DB, rv, DIM, &q, &r);
            break;
        case 4: /* label filter: only the writer's "live" items carry it */
            qc.what = "label";
            qc.qvec = base_stored + (size_t)b * DIM;
            qc.label = "live";
            {
                static const char *lab[] = {"live"};
                q.labels = lab;
                q.n_labels = 1;
                rc = eng_search_vector(DB, qc.qvec, DIM, &q, &r);
            }
            break;
        case 5: /* metadata filter */
            qc.what = "where";
            qc.qvec = base_stored + (size_t)b * DIM;
            qc.meta_key = "round";
            qc.meta_val = (it / 8) % 2 ? "odd" : "even";
            {
                eng_kv w = {qc.meta_key, qc.meta_val};
                q.where = &w;
                q.n_where = 1;
                rc = eng_search_vector(DB, qc.qvec, DIM, &q, &r);
            }
            break;
        case 6: /* range on the HNSW collection (rebuilt under our feet) */
            qc.what = "range";
            rand_unit(&seed, rv);
            qc.qvec = rv;
            qc.collection = "h";
            q.collections = hcoll;
            q.n_collections = 1;
            q.has_min_score = 1;
            q.min_score = qc.min_score = 0.3f;
            q.k = 0;
            rc = eng_search_vector(DB, rv, DIM, &q, &r);
            break;
        case 7: { /* moderation: the base photo matches its own set */
            qc.what = "moderate";
            qc.qvec = base_stored + (size_t)b * DIM;
            const char *sets[] = {"default", "h"};
            eng_mod_result *m = NULL;
            rc = eng_moderate_vector(DB, qc.qvec, sets, 2, 0.999f, 5, &m);
            if (rc == PERR_OK) {
                if (!m->set_matched[0]) t_fail(__FILE__, __LINE__, "moderate: base photo %d did not match", b);
                check_results(&qc, m->nearest);
                eng_mod_result_free(m);
            }
            break;
        }
        }
        if (rc) t_fail(__FILE__, __LINE__, "%s query: %s: %s", qc.what ? qc.what : "?", perr_name(rc), perr_msg());
        else if (r) check_results(&qc, r);
        eng_results_free(r);
    }
    free(rv);
    return NULL;
}

/* ----------------------------------------------------------------- writer */

typedef struct wcollect { uint64_t ids[64]; int n, failed; } wcollect;

static void w_on_result(void *u, const eng_file_result *r) {
    wcollect *c = u;
    if (r->outcome == ENG_FAILED) { c->failed++; fprintf(stderr, "ingest %s: %s\n", r->path, r->reason); return; }
    if (r->outcome == ENG_ADDED && c->n < 64) c->ids[c->n++] = r->id;
}

static char **variants;
static int n_variants;

static void *writer(void *arg) {
    (void)arg;
    unsigned seed = 4242;
    float *vecs = malloc(sizeof(float) * (size_t)DIM * HNSW_PER_ROUND);
    uint64_t hids[HNSW_PER_ROUND];
    uint64_t h_live[4096];
    int n_h = 0;
    int next = 0;
    for (int round = 0; round < N_ROUNDS; round++) {
        /* ingest 4 files (photos beyond the base, or variants) */
        const char *files[4];
        int nf = 0;
        for (; nf < 4 && next < n_variants; nf++) files[nf] = variants[next++];
        wcollect c = {0};
        eng_ingest_opts o;
        eng_ingest_opts_default(&o);
        const char *lab[] = {"live"};
        eng_kv meta = {"round", round % 2 ? "odd" : "even"};
        o.labels = lab;
        o.n_labels = 1;
        o.meta = &meta;
        o.n_meta = 1;
        o.jobs = 1;
        o.on_result = w_on_result;
        o.user = &c;
        if (nf) CHECK_OK(eng_ingest_paths(DB, files, nf, &o, NULL));
        CHECK_EQ_INT(c.failed, 0);
        /* random vectors into the HNSW collection */
        for (int i = 0; i < HNSW_PER_ROUND; i++) rand_unit(&seed, vecs + (size_t)i * DIM);
        eng_ingest_opts ov;
        eng_ingest_opts_default(&ov);
        ov.collection = "h";
        CHECK_OK(eng_add_vectors(DB, vecs, HNSW_PER_ROUND, NULL, &ov, hids));
        for (int i = 0; i < HNSW_PER_ROUND && n_h < 4096; i++) h_live[n_h++] = hids[i];
        /* delete half of what this round ingested, and a third of "h" */
        int nd = c.n / 2;
        if (nd) {
            int removed = 0;
            list_publish(&intent, c.ids, nd);
            CHECK_OK(eng_remove(DB, c.ids, nd, &removed));
            CHECK_EQ_INT(removed, nd);
            list_publish(&acked, c.ids, nd);
        }
        int hd = n_h / 3;
        uint64_t hdel[4096];
        for (int i = 0; i < hd; i++) {
            int j = rand_r(&seed) % n_h;
            hdel[i] = h_live[j];
            h_live[j] = h_live[--n_h];
        }
        if (hd) {
            int removed = 0;
            list_publish(&intent, hdel, hd);
            CHECK_OK(eng_remove(DB, hdel, hd, &removed));
            CHECK_EQ_INT(removed, hd);
            list_publish(&acked, hdel, hd);
        }
        eng_collection_info ci;
        CHECK_OK(eng_collection_get(DB, "h", &ci));
        if (ci.tombstone_frac > 0.2) t_fail(__FILE__, __LINE__, "h: tombstone fraction %g after remove", ci.tombstone_frac);
    }
    free(vecs);
    atomic_store(&writer_done, 1);
    return NULL;
}

/* ------------------------------------------------------------------- test */

static void test_concurrent_queries_and_writes(void) {
    char *dir = t_tmpdir("eng-conc");
    eng_open_opts oo;
    eng_open_opts_default(&oo);
    oo.model_path = model_path;
    oo.vocab_path = vocab_path;
    oo.create = 1;
    oo.n_encoders = 2;
    oo.save_every = 13;   /* index saves happen while queries run */
    REQUIRE_OK(eng_open(dir, &oo, &DB));
    DIM = eng_dim(DB);
    REQUIRE_OK(eng_collection_create(DB, "h", "HNSW32"));
    /* base photos: ingested first, never deleted */
    for (int b = 0; b < N_BASE; b++) {
        eng_ingest_opts o;
        eng_ingest_opts_default(&o);
        wcollect c = {0};
        o.on_result = w_on_result;
        o.user = &c;
        const char *one[] = {P.paths[b]};
        REQUIRE_OK(eng_ingest_paths(DB, one, 1, &o, NULL));
        REQUIRE(c.n == 1);
        base_id[b] = c.ids[0];
    }
    base_vec = malloc(sizeof(float) * (size_t)DIM * N_BASE);
    text_vec = malloc(sizeof(float) * (size_t)DIM * 4);
    base_stored = malloc(sizeof(float) * (size_t)DIM * N_BASE);
    for (int b = 0; b < N_BASE; b++) {
        REQUIRE_OK(eng_encode_image_file(DB, P.paths[b], base_vec + (size_t)b * DIM));
        eng_item *it = NULL;
        REQUIRE_OK(eng_get(DB, base_id[b], 1, &it));
        memcpy(base_stored + (size_t)b * DIM, it->vector, sizeof(float) * (size_t)DIM);
        eng_item_free(it);
    }
    for (int t = 0; t < 4; t++) REQUIRE_OK(eng_encode_text(DB, texts[t], text_vec + (size_t)t * DIM));
    /* the writer's files: the other photos, then variants of the base */
    char *vdir = t_tmpdir("eng-conc-var");
    variants = calloc((size_t)P.n + N_BASE + 1, sizeof *variants);
    for (int i = N_BASE; i < P.n; i++) variants[n_variants++] = strdup(P.paths[i]);
    for (int b = 0; b < N_BASE && n_variants < N_ROUNDS * 4; b++) {
        char *p = t_path("%s/v%02d.jpg", vdir, b);
        if (photos_make_variant(P.paths[b], p, PV_RESIZE_70) == 0) variants[n_variants++] = p;
        else free(p);
    }
    pthread_t w, rd[N_READERS];
    atomic_store(&writer_done, 0);
    pthread_create(&w, NULL, writer, NULL);
    for (int i = 0; i < N_READERS; i++) pthread_create(&rd[i], NULL, reader, (void *)(uintptr_t)i);
    pthread_join(w, NULL);
    for (int i = 0; i < N_READERS; i++) pthread_join(rd[i], NULL);
    printf("concurrency: %ld queries, %ld hits checked against storage, %ld hits deleted while in flight, %zu deletes\n",
           atomic_load(&n_queries), atomic_load(&n_hits_checked), atomic_load(&n_raced), acked.n);
    CHECK(atomic_load(&n_queries) >= N_READERS * 40);
    CHECK(acked.n > 0);
    /* afterwards: index and storage agree, every deleted id is gone */
    eng_collection_info *cl = NULL;
    int nc = 0;
    CHECK_OK(eng_collection_list(DB, &cl, &nc));
    for (int i = 0; i < nc; i++) {
        CHECK_EQ_INT(cl[i].n_index, cl[i].n_items);
        CHECK_EQ_INT(cl[i].index_seq, cl[i].seq);
    }
    free(cl);
    for (size_t i = 0; i < acked.n; i++) {
        eng_item *it = NULL;
        if (eng_get(DB, acked.v[i], 0, &it) != PERR_NOT_FOUND)
            t_fail(__FILE__, __LINE__, "deleted item %llu still stored", (unsigned long long)acked.v[i]);
        eng_item_free(it);
    }
    CHECK_OK(eng_close(DB));
    DB = NULL;
    for (int i = 0; i < n_variants; i++) free(variants[i]);
    free(variants);
    free(base_vec);
    free(base_stored);
    free(text_vec);
    free(intent.v);
    free(acked.v);
    t_rmtree(vdir);
    free(vdir);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    int n = photos_gather(&P, 48, 256);
    printf("photos: %d real photos gathered\n", n);
    if (n < 40) {
        fprintf(stderr, "need at least 40 real photos (scripts/deps.sh installs them)\n");
        return 1;
    }
    T_RUN(test_concurrent_queries_and_writes);
    photos_free(&P);
    free(model_path);
    free(vocab_path);
    return t_done();
}
