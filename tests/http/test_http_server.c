/* The HTTP door (docs/http.md) on loopback, against the binary protocol and
 * the engine (what --db runs), on a tiny-a database of the six fixture
 * images:
 *  - search by text, vector, uploaded image (raw, multipart, base64 JSON)
 *    and id answers the same ids, scores (bit for bit), uris and labels as
 *    pc_search_* over the binary protocol and eng_search_* in process;
 *  - ingest by raw body and multipart with labels/meta, GET, label, delete,
 *    embedding, classify, moderate, collections, stats, dups, export paging;
 *  - errors: JSON {"error", "message"} with the mapped status (400, 404,
 *    405, 413, 415, 401), the token, /healthz /readyz /metrics;
 *  - TEI /embed and Weaviate /vectorize with requests of their published
 *    shapes give the engine's vectors. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "http/json.h"
#include "net/client.h"
#include "http_testutil.h"
#include "../net/net_testutil.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *dir;
static eng_db *db;
static ht_server S;
static pc_client *pc;
static uint64_t ids[6];
static void *img[6];
static size_t img_len[6];
static int dim;

static void setup(void) {
    nt_init();
    dir = t_tmpdir("http_server");
    if (nt_open_db(dir, 2, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); exit(1); }
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    for (int i = 0; i < 6; i++) {
        img[i] = nt_image(nt_images[i], &img_len[i]);
        const char *labels[] = {i % 2 ? "odd" : "even"};
        eng_kv meta[] = {{"n", i < 3 ? "low" : "high"}};
        io.labels = labels;
        io.n_labels = 1;
        io.meta = meta;
        io.n_meta = 1;
        eng_outcome out;
        if (!img[i] || eng_add_buffer(db, img[i], img_len[i], nt_images[i], &io, &ids[i], &out)) {
            fprintf(stderr, "ingest %s: %s\n", nt_images[i], perr_msg());
            exit(1);
        }
    }
    dim = eng_dim(db);
    if (ht_start(&S, db, NULL) || pc_connect(S.n.addr, NULL, &pc)) { fprintf(stderr, "server: %s\n", perr_msg()); exit(1); }
}

static void teardown(void) {
    pc_close(pc);
    ht_stop(&S);
    eng_close(db);
    for (int i = 0; i < 6; i++) free(img[i]);
    t_rmtree(dir);
    free(dir);
    ht_fini();
    nt_fini();
}

static int req(const char *method, const char *path, const char *ctype, const void *body, size_t len, ht_resp *r) {
    return ht_req(S.http_port, method, path, ctype, body, len, NULL, r);
}
static int post_json(const char *path, const char *json, ht_resp *r) {
    return req("POST", path, "application/json", json, strlen(json), r);
}

/* hits of a JSON answer == r (ids, float32 scores bit for bit, uris, labels) */
static void same_hits(const cJSON *json, const eng_results *r, const char *what) {
    const cJSON *hits = cJSON_GetObjectItemCaseSensitive(json, "hits");
    if (!cJSON_IsArray(hits)) { t_fail(__FILE__, __LINE__, "%s: no hits array", what); return; }
    if (cJSON_GetArraySize(hits) != r->n) {
        t_fail(__FILE__, __LINE__, "%s: %d hits over HTTP, %d expected", what, cJSON_GetArraySize(hits), r->n);
        return;
    }
    int i = 0;
    for (const cJSON *h = hits->child; h; h = h->next, i++) {
        const eng_hit *e = &r->hits[i];
        double id = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "id"));
        float score = (float)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "score"));
        const char *uri = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "uri"));
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(h, "labels");
        if ((uint64_t)id != e->id || memcmp(&score, &e->score, sizeof score) || !uri || strcmp(uri, e->uri) ||
            cJSON_GetArraySize(labels) != e->n_labels ||
            (e->n_labels && strcmp(cJSON_GetStringValue(labels->child), e->labels[0])))
            t_fail(__FILE__, __LINE__, "%s: hit %d: id %.0f score %.9g uri %s, expected id %llu score %.9g uri %s", what, i,
                   id, (double)score, uri ? uri : "?", (unsigned long long)e->id, (double)e->score, e->uri);
    }
}

/* Elements of a JSON array of numbers that are not exactly v[i] as float32
 * (a length mismatch counts as n + 1). */
static int diff_floats(const cJSON *arr, const float *v, int n) {
    if (cJSON_GetArraySize(arr) != n) return n + 1;
    int i = 0, d = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        float x = (float)e->valuedouble;
        d += memcmp(&x, &v[i], sizeof x) != 0;
    }
    return d;
}

static void test_search_text_same_as_binary_and_db(void) {
    eng_query q;
    eng_query_default(&q);
    q.k = 5;
    eng_results *direct = NULL, *bin = NULL;
    REQUIRE_OK(eng_search_text(db, "a cat on a sofa", &q, &direct));
    REQUIRE_OK(pc_search_text(pc, "a cat on a sofa", &q, &bin));
    ht_resp r;
    REQUIRE(post_json("/search", "{\"text\": \"a cat on a sofa\", \"k\": 5}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(direct->n, 5);
    same_hits(r.json, direct, "text, JSON body");
    same_hits(r.json, bin, "text vs binary");
    ht_resp_free(&r);
    /* the same as a form post and with filters in the query string */
    const char *form = "text=a+cat+on+a+sofa&k=5";
    REQUIRE(req("POST", "/search", "application/x-www-form-urlencoded", form, strlen(form), &r) == 0);
    same_hits(r.json, direct, "text, form");
    ht_resp_free(&r);
    eng_results *filtered = NULL;
    const char *labels[] = {"odd"};
    eng_kv where[] = {{"n", "high"}};
    q.labels = labels; q.n_labels = 1; q.where = where; q.n_where = 1;
    REQUIRE_OK(eng_search_text(db, "a cat on a sofa", &q, &filtered));
    REQUIRE(req("POST", "/search?k=5&labels=odd&where.n=high", "application/json", "{\"text\":\"a cat on a sofa\"}", 26, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(filtered->n >= 1);
    same_hits(r.json, filtered, "text, filters in the query");
    ht_resp_free(&r);
    eng_results_free(filtered);
    eng_results_free(direct);
    eng_results_free(bin);
}

static void test_search_vector_image_id(void) {
    eng_query q;
    eng_query_default(&q);
    q.k = 4;
    float *v = malloc(sizeof(float) * (size_t)dim);
    REQUIRE_OK(eng_encode_image_buffer(db, img[2], img_len[2], v));
    /* vector: JSON array; the engine normalises both the same way */
    http_buf b = {0};
    http_buf_puts(&b, "{\"k\":4,\"vector\":[");
    for (int i = 0; i < dim; i++) http_buf_printf(&b, i ? ",%.9g" : "%.9g", (double)v[i]);
    http_buf_puts(&b, "]}");
    eng_results *direct = NULL, *bin = NULL;
    REQUIRE_OK(eng_search_vector(db, v, dim, &q, &direct));
    REQUIRE_OK(pc_search_vector(pc, v, dim, &q, &bin));
    ht_resp r;
    REQUIRE(post_json("/search", b.p, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    same_hits(r.json, direct, "vector");
    same_hits(r.json, bin, "vector vs binary");
    CHECK_EQ_INT(direct->hits[0].id, ids[2]);
    ht_resp_free(&r);
    http_buf_free(&b);
    eng_results_free(direct);
    eng_results_free(bin);
    /* image: raw body, multipart, base64 in JSON */
    REQUIRE_OK(eng_search_image_buffer(db, img[5], img_len[5], &q, &direct));
    REQUIRE(req("POST", "/search?k=4", "image/jpeg", img[5], img_len[5], &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    same_hits(r.json, direct, "raw image");
    ht_resp_free(&r);
    char *mp = NULL;
    size_t mpl = 0;
    FILE *f = open_memstream(&mp, &mpl);
    fprintf(f, "--XyZ\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n4\r\n"
               "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rocket.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n");
    fwrite(img[5], 1, img_len[5], f);
    fprintf(f, "\r\n--XyZ--\r\n");
    fclose(f);
    REQUIRE(req("POST", "/search", "multipart/form-data; boundary=XyZ", mp, mpl, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    same_hits(r.json, direct, "multipart image");
    ht_resp_free(&r);
    free(mp);
    http_buf_puts(&b, "{\"k\":4,\"image\":\"");
    http_base64_encode(&b, img[5], img_len[5]);
    http_buf_puts(&b, "\"}");
    REQUIRE(post_json("/search", b.p, &r) == 0);
    same_hits(r.json, direct, "base64 image");
    ht_resp_free(&r);
    http_buf_free(&b);
    eng_results_free(direct);
    /* id */
    REQUIRE_OK(eng_search_id(db, ids[3], &q, &direct));
    char path[64];
    snprintf(path, sizeof path, "/items/%llu/similar?k=4", (unsigned long long)ids[3]);
    REQUIRE(req("GET", path, NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    same_hits(r.json, direct, "similar to id");
    ht_resp_free(&r);
    eng_results_free(direct);
    free(v);
}

static void test_items_ingest_get_label_delete(void) {
    /* a re-encoded copy of chelsea (its RGBA twin's bytes differ): raw upload with labels/meta */
    ht_resp r;
    REQUIRE(req("POST", "/ingest?collection=up&uri=up%2Fx.png&labels=new&labels=two&meta.src=http", "image/png",
                img[3], img_len[3], &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    const char *outcome = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "outcome"));
    CHECK_STR(outcome, "added");
    uint64_t id = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "id"));
    ht_resp_free(&r);
    REQUIRE(req("POST", "/ingest?collection=up", "image/png", img[3], img_len[3], &r) == 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "outcome")), "present");
    CHECK_EQ_INT((uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "id")), id);
    ht_resp_free(&r);
    eng_item *it = NULL;
    REQUIRE_OK(eng_get(db, id, 1, &it));
    CHECK_STR(it->collection, "up");
    CHECK_STR(it->uri, "up/x.png");
    CHECK_EQ_INT(it->n_labels, 2);
    CHECK(it->n_meta == 1 && !strcmp(it->meta[0].key, "src") && !strcmp(it->meta[0].value, "http"));
    /* GET with the vector: the same float32 values */
    char path[64];
    snprintf(path, sizeof path, "/items/%llu?vector=true", (unsigned long long)id);
    REQUIRE(req("GET", path, NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(diff_floats(cJSON_GetObjectItemCaseSensitive(r.json, "vector"), it->vector, it->dim), 0);
    const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "sha256"));
    char hex[65];
    for (int k = 0; k < 32; k++) sprintf(hex + 2 * k, "%02x", it->sha256[k]);
    CHECK_STR(sha, hex);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r.json, "meta"), "src")), "http");
    ht_resp_free(&r);
    eng_item_free(it);
    /* label then delete */
    char body[128];
    snprintf(body, sizeof body, "{\"label\":\"flag\",\"ids\":[%llu]}", (unsigned long long)id);
    REQUIRE(post_json("/label", body, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    ht_resp_free(&r);
    REQUIRE_OK(eng_get(db, id, 0, &it));
    CHECK_EQ_INT(it->n_labels, 3);
    eng_item_free(it);
    snprintf(path, sizeof path, "/items/%llu", (unsigned long long)id);
    REQUIRE(req("DELETE", path, NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "removed")), 1);
    ht_resp_free(&r);
    REQUIRE(req("GET", path, NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 404);
    CHECK_STR(ht_error(&r), "NOT_FOUND");
    ht_resp_free(&r);
    /* multipart ingest with fields */
    char *mp = NULL;
    size_t mpl = 0;
    FILE *f = open_memstream(&mp, &mpl);
    fprintf(f, "--b0\r\nContent-Disposition: form-data; name=\"collection\"\r\n\r\nup\r\n"
               "--b0\r\nContent-Disposition: form-data; name=\"meta.who\"\r\n\r\nform\r\n"
               "--b0\r\nContent-Disposition: form-data; name=\"data\"; filename=\"c.png\"\r\n\r\n");
    fwrite(img[1], 1, img_len[1], f);
    fprintf(f, "\r\n--b0--\r\n");
    fclose(f);
    REQUIRE(req("POST", "/ingest", "multipart/form-data; boundary=b0", mp, mpl, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    id = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "id"));
    ht_resp_free(&r);
    free(mp);
    REQUIRE_OK(eng_get(db, id, 0, &it));
    CHECK_STR(it->collection, "up");
    CHECK(it->n_meta == 1 && !strcmp(it->meta[0].value, "form"));
    eng_item_free(it);
    REQUIRE(post_json("/collections", "{\"action\":\"drop\",\"name\":\"up\"}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    ht_resp_free(&r);
}

static void test_embed_classify_moderate(void) {
    float *v = malloc(sizeof(float) * (size_t)dim);
    REQUIRE_OK(eng_encode_text(db, "a rocket", v));
    ht_resp r;
    REQUIRE(post_json("/embedding", "{\"text\":\"a rocket\"}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "dim")), dim);
    CHECK_EQ_INT(diff_floats(cJSON_GetObjectItemCaseSensitive(r.json, "vector"), v, dim), 0);
    ht_resp_free(&r);
    /* classify a raw upload; labels repeated in the query */
    const char *labels[] = {"cat", "rocket", "coffee"};
    float probs[3];
    REQUIRE_OK(eng_classify_buffer(db, img[5], img_len[5], labels, 3, NULL, probs));
    REQUIRE(req("POST", "/classify?labels=cat&labels=rocket&labels=coffee", "image/jpeg", img[5], img_len[5], &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(diff_floats(cJSON_GetObjectItemCaseSensitive(r.json, "probs"), probs, 3), 0);
    ht_resp_free(&r);
    /* moderate: an exact copy of a stored image matches its set */
    REQUIRE(req("POST", "/moderate?sets=default:even&threshold=0.99", "image/png", img[2], img_len[2], &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "matched")), 1);
    const cJSON *near = cJSON_GetObjectItemCaseSensitive(r.json, "nearest");
    CHECK(cJSON_GetArraySize(near) >= 1);
    CHECK_EQ_INT((uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(near ? near->child : NULL, "id")), ids[2]);
    ht_resp_free(&r);
    free(v);
}

static void test_collections_stats_dups_export(void) {
    ht_resp r;
    REQUIRE(req("GET", "/collections", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(r.json, "collections");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c ? c->child : NULL, "name")), "default");
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c ? c->child : NULL, "n_items")), 6);
    ht_resp_free(&r);
    REQUIRE(post_json("/collections", "{\"action\":\"create\",\"name\":\"default\"}", &r) == 0);
    CHECK_EQ_INT(r.status, 409);
    CHECK_STR(ht_error(&r), "EXISTS");
    ht_resp_free(&r);
    REQUIRE(req("GET", "/stats", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(r.json, "model");
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(m, "dim")), dim);
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r.json, "server")));
    ht_resp_free(&r);
    /* dups: chelsea and its RGBA twin are the one near group */
    eng_dups *d = NULL;
    REQUIRE_OK(eng_find_dups(db, NULL, ENG_DUP_NEAR, 0, &d));
    REQUIRE(req("GET", "/dups?tier=near", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(r.json, "groups");
    CHECK_EQ_INT(cJSON_GetArraySize(g), d->n);
    ht_resp_free(&r);
    eng_dups_free(d);
    /* export in pages of 4: 6 items, the second page's next is null */
    uint64_t got[8];
    int n = 0;
    char path[256] = "/export?limit=4&vector=false";
    for (int page = 0; page < 3; page++) {
        REQUIRE(req("GET", path, NULL, NULL, 0, &r) == 0);
        REQUIRE(r.status == 200);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
        for (const cJSON *it = items ? items->child : NULL; it && n < 8; it = it->next) {
            got[n++] = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
            CHECK(!cJSON_GetObjectItemCaseSensitive(it, "vector"));
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r.json, "next");
        if (cJSON_IsNull(next)) { ht_resp_free(&r); break; }
        snprintf(path, sizeof path, "/export?limit=4&vector=false&after_collection=%s&after=%.0f",
                 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(next, "after_collection")),
                 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(next, "after")));
        ht_resp_free(&r);
    }
    CHECK_EQ_INT(n, 6);
    for (int i = 0; i < 6 && i < n; i++) CHECK_EQ_INT(got[i], ids[i]);
}

static void test_errors(void) {
    ht_resp r;
    REQUIRE(post_json("/search", "{\"text\":\"x\",\"k\":0}", &r) == 0);
    CHECK_EQ_INT(r.status, 400);
    CHECK_STR(ht_error(&r), "INVALID");
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "message")), "\"k\""));
    ht_resp_free(&r);
    REQUIRE(post_json("/search", "{\"text\": \"x\", ", &r) == 0);
    CHECK_EQ_INT(r.status, 400);
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "message")), "byte"));
    ht_resp_free(&r);
    REQUIRE(post_json("/search", "{\"text\":\"x\",\"id\":3}", &r) == 0); /* two query kinds: the binary op's own check */
    CHECK_EQ_INT(r.status, 400);
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "message")), "exactly one"));
    ht_resp_free(&r);
    REQUIRE(post_json("/search", "{\"vector\":[1,2,3]}", &r) == 0);
    CHECK_EQ_INT(r.status, 400);
    ht_resp_free(&r);
    REQUIRE(req("POST", "/search", "image/png", "not an image", 12, &r) == 0);
    CHECK_EQ_INT(r.status, 415);
    CHECK_STR(ht_error(&r), "UNSUPPORTED");
    ht_resp_free(&r);
    REQUIRE(req("POST", "/search", "image/jpeg", img[5], 2000, &r) == 0); /* a truncated JPEG */
    CHECK_EQ_INT(r.status, 422);
    CHECK_STR(ht_error(&r), "DECODE");
    ht_resp_free(&r);
    REQUIRE(req("POST", "/label", "text/plain", "x", 1, &r) == 0);
    CHECK_EQ_INT(r.status, 415);
    ht_resp_free(&r);
    REQUIRE(req("GET", "/nope", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 404);
    CHECK_STR(ht_error(&r), "NOT_FOUND");
    ht_resp_free(&r);
    REQUIRE(req("PUT", "/search", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 405);
    CHECK_STR(r.allow, "POST");
    ht_resp_free(&r);
    REQUIRE(req("GET", "/items/abc", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 400);
    ht_resp_free(&r);
    REQUIRE(req("GET", "/healthz", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    ht_resp_free(&r);
    REQUIRE(req("GET", "/readyz", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r.json, "dim")), dim);
    ht_resp_free(&r);
    REQUIRE(req("GET", "/metrics", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "percept_requests_total{op=\"SEARCH\"}") != NULL);
    ht_resp_free(&r);
}

/* The HTTP door's messages name no server path either (docs/protocol.md:
 * the database directory shows as <db>), whether the operation ran as a
 * task (/embedding) or was queued like a binary request (/search). */
static void test_messages_without_server_paths(void) {
    char *real = realpath(dir, NULL);
    const char *routes[] = {"/embedding", "/search"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 2; i++) {
            char body[4200];
            snprintf(body, sizeof body, "{\"path\": \"%s/no-such-file.png\"}", i && real ? real : dir);
            ht_resp r;
            REQUIRE(post_json(routes[k], body, &r) == 0);
            CHECK(r.status >= 400);
            const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "message"));
            if (!m || strstr(m, dir) || (real && strstr(m, real)) || !strstr(m, "<db>/no-such-file.png"))
                t_fail(__FILE__, __LINE__, "%s: message %s", routes[k], m ? m : "(none)");
            ht_resp_free(&r);
        }
    free(real);
}

/* A second server on the same database: a token and a 64 KiB body limit. */
static void test_token_and_limits(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.token = "s3cret";
    o.max_frame = 65536;
    ht_server s2;
    REQUIRE_OK(ht_start(&s2, db, &o));
    ht_resp r;
    const char *q = "{\"text\":\"x\",\"k\":1}";
    REQUIRE(ht_req(s2.http_port, "POST", "/search", "application/json", q, strlen(q), NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 401);
    CHECK_STR(ht_error(&r), "AUTH");
    CHECK_STR(r.www_auth, "Bearer");
    ht_resp_free(&r);
    REQUIRE(ht_req(s2.http_port, "POST", "/search", "application/json", q, strlen(q), "wrong", &r) == 0);
    CHECK_EQ_INT(r.status, 401);
    ht_resp_free(&r);
    REQUIRE(ht_req(s2.http_port, "POST", "/search", "application/json", q, strlen(q), "s3cret", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    ht_resp_free(&r);
    /* what Milvus 2.6's TEI function sends (milvus-io/milvus internal/util/function/models/tei) */
    const char *milvus = "{\"inputs\":[\"a photo of a cat\"],\"truncate\":true,\"truncation_direction\":\"Right\"}";
    REQUIRE(ht_req(s2.http_port, "POST", "/embed", "application/json", milvus, strlen(milvus), "s3cret", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(cJSON_IsArray(r.json) && cJSON_GetArraySize(r.json->child) == dim);
    ht_resp_free(&r);
    REQUIRE(ht_req(s2.http_port, "POST", "/embed", "application/json", milvus, strlen(milvus), NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 401);
    ht_resp_free(&r);
    REQUIRE(ht_req(s2.http_port, "GET", "/healthz", NULL, NULL, 0, NULL, &r) == 0); /* probes need no token */
    CHECK_EQ_INT(r.status, 200);
    ht_resp_free(&r);
    REQUIRE(ht_req(s2.http_port, "GET", "/metrics", NULL, NULL, 0, NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 401);
    ht_resp_free(&r);
    REQUIRE(ht_req(s2.http_port, "POST", "/search", "image/png", img[0], img_len[0], "s3cret", &r) == 0);
    CHECK_EQ_INT(r.status, 413);
    ht_resp_free(&r);
    ht_stop(&s2);
}

/* Recorded requests of the published shapes (docs/http.md cites them). */
static void test_tei_and_weaviate(void) {
    float *a = malloc(sizeof(float) * (size_t)dim), *b = malloc(sizeof(float) * (size_t)dim);
    REQUIRE_OK(eng_encode_text(db, "test input", a));
    REQUIRE_OK(eng_encode_text(db, "test input 2", b));
    ht_resp r;
    /* TEI: {"inputs": [...]} -> [[...], [...]] */
    REQUIRE(post_json("/embed", "{\"inputs\": [\"test input\", \"test input 2\"], \"normalize\": true, \"truncate\": false}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    REQUIRE(cJSON_IsArray(r.json) && cJSON_GetArraySize(r.json) == 2);
    const float *want[2] = {a, b};
    int k = 0;
    for (const cJSON *row = r.json->child; row; row = row->next, k++) CHECK_EQ_INT(diff_floats(row, want[k], dim), 0);
    ht_resp_free(&r);
    REQUIRE(post_json("/embed", "{\"inputs\": \"test input\"}", &r) == 0); /* a single string: still nested */
    CHECK(cJSON_IsArray(r.json) && cJSON_GetArraySize(r.json) == 1 && cJSON_IsArray(r.json->child));
    ht_resp_free(&r);
    REQUIRE(post_json("/embed", "{\"inputs\": 3}", &r) == 0);
    CHECK_EQ_INT(r.status, 422);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "error_type")), "validation");
    ht_resp_free(&r);
    /* Weaviate multi2vec-clip: {"texts": [...], "images": [base64]} */
    float *iv = malloc(sizeof(float) * (size_t)dim);
    REQUIRE_OK(eng_encode_image_buffer(db, img[5], img_len[5], iv));
    http_buf body = {0};
    http_buf_puts(&body, "{\"texts\":[\"test input\"],\"images\":[\"");
    http_base64_encode(&body, img[5], img_len[5]);
    http_buf_puts(&body, "\"]}");
    REQUIRE(post_json("/vectorize", body.p, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(r.json, "textVectors");
    const cJSON *ivs = cJSON_GetObjectItemCaseSensitive(r.json, "imageVectors");
    REQUIRE(cJSON_GetArraySize(tv) == 1 && cJSON_GetArraySize(ivs) == 1);
    CHECK_EQ_INT(diff_floats(tv->child, a, dim), 0);
    CHECK_EQ_INT(diff_floats(ivs->child, iv, dim), 0);
    ht_resp_free(&r);
    http_buf_free(&body);
    REQUIRE(post_json("/vectorize", "{\"texts\":[\"only text\"]}", &r) == 0);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "imageVectors")), 0);
    ht_resp_free(&r);
    REQUIRE(req("GET", "/meta", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(cJSON_IsObject(r.json));
    ht_resp_free(&r);
    REQUIRE(req("GET", "/.well-known/live", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 204);
    ht_resp_free(&r);
    REQUIRE(req("GET", "/.well-known/ready", NULL, NULL, 0, &r) == 0);
    CHECK_EQ_INT(r.status, 204);
    ht_resp_free(&r);
    free(a); free(b); free(iv);
}

/* HTTP/2 (prior knowledge, as h2c clients do) answers the same. */
static void test_http2(void) {
    ht_h2 = 1;
    ht_resp r;
    int rc = post_json("/search", "{\"text\": \"a cat on a sofa\", \"k\": 2}", &r);
    ht_h2 = 0;
    REQUIRE(rc == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.version, 2);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "hits")), 2);
    ht_resp_free(&r);
}

typedef struct slow { int port; long status; int n; double t_answer; } slow;
static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static void *slow_request(void *arg) {
    slow *s = arg;
    http_buf b = {0};
    http_buf_puts(&b, "{\"inputs\":[");
    for (int i = 0; i < 1000; i++) http_buf_printf(&b, "%s\"text number %d\"", i ? "," : "", i);
    http_buf_puts(&b, "]}");
    ht_resp r;
    if (ht_req(s->port, "POST", "/embed", "application/json", b.p, b.len, NULL, &r) == 0) {
        s->status = r.status;
        s->n = cJSON_GetArraySize(r.json);
        s->t_answer = mono();
    }
    ht_resp_free(&r);
    http_buf_free(&b);
    ht_thread_fini();
    return NULL;
}

/* A stop while a request runs: that request is still answered in full,
 * then the server stops (keep-alive connections closed). The request must
 * have reached the server before the stop: an attempt where it had not
 * (connection refused, or 503 while draining: a loaded machine) is retried
 * with a longer wait. */
static void test_stop_finishes_running_requests(void) {
    int inflight_seen = 0;
    /* Waits from 5 ms doubling: on a quiet machine the 1000 texts take
     * well under 150 ms (a fixed 150 ms start missed them every time). */
    for (int attempt = 0; attempt < 9 && !inflight_seen; attempt++) {
        ht_server s2;
        REQUIRE_OK(ht_start(&s2, db, NULL));
        slow sl = {s2.http_port, 0, 0, 0};
        pthread_t th;
        pthread_create(&th, NULL, slow_request, &sl);
        struct timespec ts = {0, (5L << attempt) * 1000000L};
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec = ts.tv_nsec / 1000000000L; ts.tv_nsec %= 1000000000L; }
        nanosleep(&ts, NULL);
        double t_stop = mono();
        ht_stop(&s2);
        pthread_join(th, NULL);
        /* never connected before the listener closed, or arrived while draining (503 BUSY) */
        if (sl.status == 0 || sl.status == 503) continue;
        CHECK_EQ_INT(sl.status, 200);  /* accepted: answered in full */
        CHECK_EQ_INT(sl.n, 1000);
        inflight_seen = sl.t_answer > t_stop; /* it was running when the stop came (1000 texts: ~0.4 s) */
    }
    CHECK(inflight_seen);
}

/* Concurrent HTTP vector searches are coalesced like binary ones (the
 * server's batch counters grow by more searches than batches) and each
 * answer is still exactly its single search. */
typedef struct vs_run { int id; int bad, n; } vs_run;
static float *vs_queries;
enum { VS_THREADS = 16, VS_EACH = 25 };
static void *vs_thread(void *arg) {
    vs_run *v = arg;
    eng_query q;
    eng_query_default(&q);
    q.k = 3;
    for (int i = 0; i < VS_EACH; i++) {
        const float *qv = vs_queries + (size_t)((v->id * VS_EACH + i) % 64) * dim;
        http_buf b = {0};
        http_buf_puts(&b, "{\"k\":3,\"vector\":[");
        for (int d = 0; d < dim; d++) http_buf_printf(&b, d ? ",%.9g" : "%.9g", (double)qv[d]);
        http_buf_puts(&b, "]}");
        ht_resp r;
        eng_results *want = NULL;
        if (ht_req(S.http_port, "POST", "/search", "application/json", b.p, b.len, NULL, &r) || r.status != 200 ||
            eng_search_vector(db, qv, dim, &q, &want)) v->bad++;
        else {
            const cJSON *hits = cJSON_GetObjectItemCaseSensitive(r.json, "hits");
            int k = 0;
            if (cJSON_GetArraySize(hits) != want->n) v->bad++;
            for (const cJSON *h = hits ? hits->child : NULL; h && k < want->n; h = h->next, k++) {
                float sc = (float)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "score"));
                if ((uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "id")) != want->hits[k].id ||
                    memcmp(&sc, &want->hits[k].score, sizeof sc)) v->bad++;
            }
            v->n++;
        }
        eng_results_free(want);
        ht_resp_free(&r);
        http_buf_free(&b);
    }
    ht_thread_fini();
    return NULL;
}

static double server_counter(const char *name) {
    ht_resp r;
    if (req("GET", "/stats", NULL, NULL, 0, &r)) return -1;
    double v = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r.json, "server"), name));
    ht_resp_free(&r);
    return v;
}

static void test_vector_searches_coalesce(void) {
    vs_queries = malloc(sizeof(float) * 64 * (size_t)dim);
    uint64_t x = 12345;
    for (int i = 0; i < 64 * dim; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; vs_queries[i] = (float)((x >> 11) % 2001) / 1000.0f - 1.0f; }
    double b0 = server_counter("search_batches"), q0 = server_counter("batched_searches");
    vs_run runs[VS_THREADS];
    pthread_t th[VS_THREADS];
    for (int i = 0; i < VS_THREADS; i++) { runs[i] = (vs_run){i, 0, 0}; pthread_create(&th[i], NULL, vs_thread, &runs[i]); }
    int bad = 0, n = 0;
    for (int i = 0; i < VS_THREADS; i++) { pthread_join(th[i], NULL); bad += runs[i].bad; n += runs[i].n; }
    double b1 = server_counter("search_batches"), q1 = server_counter("batched_searches");
    CHECK_EQ_INT(n, VS_THREADS * VS_EACH);
    CHECK_EQ_INT(bad, 0);
    CHECK(b1 > b0);                 /* batches were formed */
    CHECK(q1 - q0 > b1 - b0);       /* with more than one search in some */
    fprintf(stderr, "coalesced: %.0f searches in %.0f batches\n", q1 - q0, b1 - b0);
    free(vs_queries);
}

int main(void) {
    setup();
    T_RUN(test_search_text_same_as_binary_and_db);
    T_RUN(test_search_vector_image_id);
    T_RUN(test_items_ingest_get_label_delete);
    T_RUN(test_embed_classify_moderate);
    T_RUN(test_collections_stats_dups_export);
    T_RUN(test_errors);
    T_RUN(test_messages_without_server_paths);
    T_RUN(test_token_and_limits);
    T_RUN(test_tei_and_weaviate);
    T_RUN(test_http2);
    T_RUN(test_vector_searches_coalesce);
    T_RUN(test_stop_finishes_running_requests);
    teardown();
    return t_done();
}
