/* The server in-process on loopback (free ports), with the tiny-a model:
 * same results as the engine called directly, concurrency, pipelining,
 * disconnects, slow readers, every kind of bad frame, limits, auth,
 * metrics and a graceful stop. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "net/client.h"
#include "net/mp.h"
#include "net/ops.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *dir;
static eng_db *db;
static uint64_t ids[6];   /* the six fixture images in "default" */

static void same_results(const eng_results *a, const eng_results *b) {
    REQUIRE(a && b);
    CHECK_EQ_INT(a->n, b->n);
    for (int i = 0; i < a->n && i < b->n; i++) {
        CHECK(a->hits[i].id == b->hits[i].id);
        CHECK(a->hits[i].score == b->hits[i].score);
        CHECK_STR(a->hits[i].collection, b->hits[i].collection);
        CHECK_STR(a->hits[i].uri, b->hits[i].uri);
        CHECK_STR(a->hits[i].media, b->hits[i].media);
        CHECK_EQ_INT(a->hits[i].n_labels, b->hits[i].n_labels);
    }
}

/* Ingest the six images through the server, then every query kind gives
 * the engine's own answer. */
static void test_core_ops_match_embedded(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    CHECK_EQ_INT(pc_dim(c), eng_dim(db));
    CHECK_OK(pc_ping(c));
    for (int i = 0; i < 6; i++) {
        size_t len;
        void *img = nt_image(nt_images[i], &len);
        REQUIRE(img);
        const char *labels[] = {i % 2 ? "odd" : "even"};
        eng_kv meta[] = {{"name", nt_images[i]}};
        pc_ingest_opts o = {.uri = nt_images[i], .labels = labels, .n_labels = 1, .meta = meta, .n_meta = 1};
        eng_outcome oc;
        CHECK_OK(pc_ingest_bytes(c, img, len, &o, &ids[i], &oc));
        CHECK_EQ_INT(oc, ENG_ADDED);
        uint64_t again;
        CHECK_OK(pc_ingest_bytes(c, img, len, &o, &again, &oc)); /* same bytes: present */
        CHECK_EQ_INT(oc, ENG_PRESENT);
        CHECK(again == ids[i]);
        free(img);
    }
    eng_query q;
    eng_query_default(&q);
    q.k = 5;
    eng_results *a = NULL, *b = NULL;
    CHECK_OK(pc_search_text(c, "a photo of a cat", &q, &a));
    CHECK_OK(eng_search_text(db, "a photo of a cat", &q, &b));
    same_results(a, b);
    CHECK_EQ_INT(a ? a->n : 0, 5);
    eng_results_free(a); eng_results_free(b); a = b = NULL;
    /* Labels filter + min score. */
    const char *even[] = {"even"};
    q.labels = even; q.n_labels = 1; q.has_min_score = 1; q.min_score = -1;
    CHECK_OK(pc_search_id(c, ids[0], &q, &a));
    CHECK_OK(eng_search_id(db, ids[0], &q, &b));
    same_results(a, b);
    for (int i = 0; a && i < a->n; i++) CHECK_STR(a->hits[i].labels[0], "even");
    eng_results_free(a); eng_results_free(b); a = b = NULL;
    eng_query_default(&q);
    /* Vector and image queries. */
    int dim = eng_dim(db);
    float *v = malloc(sizeof(float) * (size_t)dim), *w = malloc(sizeof(float) * (size_t)dim);
    CHECK_OK(pc_embed_text(c, "a rocket", v));
    CHECK_OK(eng_encode_text(db, "a rocket", w));
    CHECK(memcmp(v, w, sizeof(float) * (size_t)dim) == 0);
    CHECK_OK(pc_search_vector(c, v, dim, &q, &a));
    CHECK_OK(eng_search_vector(db, v, dim, &q, &b));
    same_results(a, b);
    eng_results_free(a); eng_results_free(b); a = b = NULL;
    size_t len;
    void *img = nt_image("coffee.png", &len);
    CHECK_OK(pc_embed_image(c, img, len, v));
    CHECK_OK(eng_encode_image_buffer(db, img, len, w));
    CHECK(memcmp(v, w, sizeof(float) * (size_t)dim) == 0);
    CHECK_OK(pc_search_image(c, img, len, &q, &a));
    CHECK_OK(eng_search_image_buffer(db, img, len, &q, &b));
    same_results(a, b);
    CHECK(a && a->n > 0 && a->hits[0].id == ids[4]);
    eng_results_free(a); eng_results_free(b); a = b = NULL;
    /* GET with vector. */
    eng_item *it = NULL, *ie = NULL;
    CHECK_OK(pc_get(c, ids[4], 1, &it));
    CHECK_OK(eng_get(db, ids[4], 1, &ie));
    if (it && ie) {
        CHECK(it->id == ie->id);
        CHECK_STR(it->uri, ie->uri);
        CHECK(!memcmp(it->sha256, ie->sha256, 32));
        CHECK_EQ_INT(it->width, ie->width);
        CHECK_EQ_INT(it->n_meta, 1);
        CHECK_STR(it->meta[0].value, "coffee.png");
        CHECK_EQ_INT(it->dim, dim);
        CHECK(it->vector && !memcmp(it->vector, ie->vector, sizeof(float) * (size_t)dim));
    }
    eng_item_free(it); eng_item_free(ie);
    CHECK_ERR(pc_get(c, 999999, 0, &it), PERR_NOT_FOUND);
    /* CLASSIFY equals the engine. */
    const char *cls[] = {"cat", "rocket", "coffee"};
    float p1[3], p2[3];
    CHECK_OK(pc_classify(c, img, len, cls, 3, NULL, p1));
    CHECK_OK(eng_classify_buffer(db, img, len, cls, 3, NULL, p2));
    CHECK(!memcmp(p1, p2, sizeof p1));
    free(img);
    /* STATS and COLLECTIONS. */
    eng_stats st;
    eng_info info;
    CHECK_OK(pc_stats(c, &st, &info));
    CHECK_EQ_INT(st.n_items, 6);
    CHECK_EQ_INT(info.dim, dim);
    CHECK_OK(pc_collection_create(c, "extra", NULL));
    CHECK_ERR(pc_collection_create(c, "extra", NULL), PERR_EXISTS);
    eng_collection_info *ci = NULL;
    int n = 0;
    CHECK_OK(pc_collection_list(c, &ci, &n));
    CHECK_EQ_INT(n, 2);
    free(ci);
    CHECK_OK(pc_collection_drop(c, "extra"));
    CHECK_OK(pc_snapshot(c));
    free(v); free(w);
    pc_close(c);
    nt_server_stop(&s);
}

static void test_delete_and_label(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    size_t len;
    void *img = nt_image("camera.png", &len);
    pc_ingest_opts o = {.collection = "scratch", .uri = "camera.png"};
    uint64_t id;
    CHECK_OK(pc_ingest_bytes(c, img, len, &o, &id, NULL));
    CHECK_OK(pc_label(c, "flagged", &id, 1, 0));
    eng_item *it = NULL;
    CHECK_OK(pc_get(c, id, 0, &it));
    CHECK(it && it->n_labels == 1 && !strcmp(it->labels[0], "flagged"));
    eng_item_free(it);
    int removed = -1;
    CHECK_OK(pc_delete(c, &id, 1, &removed));
    CHECK_EQ_INT(removed, 1);
    CHECK_ERR(pc_get(c, id, 0, &it), PERR_NOT_FOUND);
    CHECK_ERR(pc_delete(c, &id, 1, &removed), PERR_NOT_FOUND);
    CHECK_OK(pc_collection_drop(c, "scratch"));
    free(img);
    pc_close(c);
    nt_server_stop(&s);
}

/* ---- concurrency ---------------------------------------------------------- */

typedef struct worker_arg { const char *addr; int t; int failures; } worker_arg;

static void *client_worker(void *p) {
    worker_arg *w = p;
    pc_client *c = NULL;
    if (pc_connect(w->addr, NULL, &c)) { w->failures++; return NULL; }
    char coll[32];
    snprintf(coll, sizeof coll, "conc%d", w->t);
    int dim = pc_dim(c);
    float *v = malloc(sizeof(float) * (size_t)dim);
    for (int i = 0; i < 6; i++) {
        size_t len;
        void *img = nt_image(nt_images[(i + w->t) % 6], &len);
        pc_ingest_opts o = {.collection = coll, .uri = nt_images[(i + w->t) % 6]};
        uint64_t id = 0;
        eng_outcome oc;
        if (pc_ingest_bytes(c, img, len, &o, &id, &oc) || oc != ENG_ADDED) w->failures++;
        /* The item just acknowledged is found by its own vector, in its collection. */
        eng_item *it = NULL;
        if (pc_get(c, id, 1, &it) || !it->vector) w->failures++;
        else {
            eng_query q;
            eng_query_default(&q);
            const char *cs[] = {coll};
            q.collections = cs; q.n_collections = 1; q.k = 1;
            eng_results *r = NULL;
            if (pc_search_vector(c, it->vector, it->dim, &q, &r) || r->n != 1 || r->hits[0].id != id ||
                strcmp(r->hits[0].collection, coll)) w->failures++;
            eng_results_free(r);
        }
        eng_item_free(it);
        if (pc_embed_text(c, "a cup of coffee", v)) w->failures++;
        free(img);
    }
    free(v);
    pc_close(c);
    return NULL;
}

static void test_many_clients_ingest_and_search(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    enum { N = 8 };
    pthread_t th[N];
    worker_arg wa[N];
    for (int i = 0; i < N; i++) { wa[i] = (worker_arg){s.addr, i, 0}; pthread_create(&th[i], NULL, client_worker, &wa[i]); }
    for (int i = 0; i < N; i++) { pthread_join(th[i], NULL); CHECK_EQ_INT(wa[i].failures, 0); }
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    for (int i = 0; i < N; i++) {
        char coll[32];
        snprintf(coll, sizeof coll, "conc%d", i);
        eng_collection_info ci;
        CHECK_OK(eng_collection_get(db, coll, &ci));
        CHECK_EQ_INT(ci.n_items, 6);
        CHECK_OK(pc_collection_drop(c, coll));
    }
    pc_close(c);
    nt_server_stop(&s);
}

/* ---- pipelining ----------------------------------------------------------- */

static size_t pack_map1(uint8_t *buf, const char *key, const char *val) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    net_mp_pack_cstr(&pk, key);
    net_mp_pack_cstr(&pk, val);
    memcpy(buf, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_pipelining_out_of_order(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    REQUIRE(fd >= 0);
    /* 30 requests sent before reading: EMBED text (workers), then PING
     * (answered by the loop at once), interleaved. */
    enum { N = 30 };
    int seen[N + 1] = {0};
    uint8_t p[256];
    for (int i = 1; i <= N; i++) {
        if (i % 3 == 0) CHECK_EQ_INT(nt_send_frame(fd, 1, NET_OP_PING, 0, (uint64_t)i, NULL, 0), 0);
        else {
            char text[64];
            snprintf(text, sizeof text, "request number %d", i);
            size_t n = pack_map1(p, "text", text);
            CHECK_EQ_INT(nt_send_frame(fd, 1, NET_OP_EMBED, 0, (uint64_t)i, p, (uint32_t)n), 0);
        }
    }
    int out_of_order = 0;
    uint64_t last = 0;
    for (int k = 0; k < N; k++) {
        net_header h;
        uint8_t *pl = NULL;
        REQUIRE(nt_recv_frame(fd, &h, &pl, 20000) == 0);
        CHECK(h.id >= 1 && h.id <= N);
        if (h.id >= 1 && h.id <= N) seen[h.id]++;
        CHECK(h.flags == NET_F_RESPONSE);
        CHECK_EQ_INT(h.opcode, h.id % 3 == 0 ? NET_OP_PING : NET_OP_EMBED);
        if (h.id < last) out_of_order = 1;
        last = h.id;
        free(pl);
    }
    for (int i = 1; i <= N; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK(out_of_order); /* PINGs overtake the queued EMBEDs */
    close(fd);
    nt_server_stop(&s);
}

/* ---- disconnects, slow readers ------------------------------------------ */

static void test_disconnect_mid_request(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    for (int round = 0; round < 20; round++) {
        int fd = nt_connect(s.port);
        REQUIRE(fd >= 0);
        size_t len;
        void *img = nt_image("chelsea.png", &len);
        uint8_t hdr[NET_HEADER_SIZE];
        net_header h = {NET_MAGIC, 1, NET_OP_EMBED, 0, 1, (uint32_t)len + 100};
        net_header_encode(&h, hdr);
        nt_send_raw(fd, hdr, sizeof hdr);
        if (round % 2) nt_send_raw(fd, img, len / 2); /* half a payload, then gone */
        else { /* whole requests, gone before the answers */
            uint8_t p[64];
            size_t n = pack_map1(p, "text", "x");
            nt_send_frame(fd, 1, NET_OP_EMBED, 0, 2, p, (uint32_t)n);
        }
        free(img);
        close(fd);
    }
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    CHECK_OK(pc_ping(c));
    float *v = malloc(sizeof(float) * (size_t)pc_dim(c));
    CHECK_OK(pc_embed_text(c, "still serving", v));
    free(v);
    pc_close(c);
    nt_server_stop(&s);
}

static void test_slow_reader_does_not_stall_others(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.max_write_queue = 1 << 20;
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    int fd = nt_connect(s.port);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    /* 200 GETs with vectors and never read (yet). */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    net_mp_pack_cstr(&pk, "id"); msgpack_pack_uint64(&pk, ids[0]);
    net_mp_pack_cstr(&pk, "vector"); msgpack_pack_true(&pk);
    enum { N = 200 };
    for (int i = 1; i <= N; i++) nt_send_frame(fd, 1, NET_OP_GET, 0, (uint64_t)i, sb.data, (uint32_t)sb.size);
    /* Another client is served meanwhile, quickly. */
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    pc_set_timeout(c, 10);
    for (int i = 0; i < 20; i++) CHECK_OK(pc_ping(c));
    eng_item *it = NULL;
    CHECK_OK(pc_get(c, ids[1], 1, &it));
    eng_item_free(it);
    pc_close(c);
    /* The slow reader still gets every answer. */
    int got = 0;
    for (int i = 0; i < N; i++) {
        net_header h;
        uint8_t *p = NULL;
        if (nt_recv_frame(fd, &h, &p, 20000)) break;
        got += !(h.flags & NET_F_ERROR);
        free(p);
    }
    CHECK_EQ_INT(got, N);
    msgpack_sbuffer_destroy(&sb);
    close(fd);
    nt_server_stop(&s);
}

/* ---- bad frames ------------------------------------------------------------ */

static int expect_error(int fd, uint64_t id, int code) {
    net_header h;
    uint8_t *p = NULL;
    if (nt_recv_frame(fd, &h, &p, 10000)) { t_fail(__FILE__, __LINE__, "no response to id %llu", (unsigned long long)id); return 0; }
    char msg[512] = "";
    int got = nt_error_code(p, h.length, msg, sizeof msg);
    if (!(h.flags & NET_F_ERROR) || h.id != id || got != code || !msg[0])
        t_fail(__FILE__, __LINE__, "id %llu: expected %s, got flags %x id %llu %s (%s)", (unsigned long long)id,
               perr_name(code), h.flags, (unsigned long long)h.id, perr_name(got), msg);
    free(p);
    return got == code;
}

static void test_bad_frames(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.max_frame = 1 << 20;
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    pc_client *good = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &good));
    int fd = nt_connect(s.port);
    /* Answered, connection kept: */
    nt_send_frame(fd, 1, 0x7e, 0, 1, NULL, 0);
    expect_error(fd, 1, PERR_UNSUPPORTED);
    nt_send_frame(fd, 2, NET_OP_PING, 0, 2, NULL, 0);
    expect_error(fd, 2, PERR_VERSION);
    nt_send_frame(fd, 1, NET_OP_PING, NET_F_RESPONSE, 3, NULL, 0);
    expect_error(fd, 3, PERR_PROTOCOL);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 4, "\xc1", 1);                 /* invalid type byte */
    expect_error(fd, 4, PERR_FORMAT);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 5, "\xdd\xff\xff\xff\xff", 5); /* array of 4G in 5 bytes */
    expect_error(fd, 5, PERR_FORMAT);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 6, "\x81\xa4text\xdb\x00\x10\x00\x00xyz", 14); /* str32 lies */
    expect_error(fd, 6, PERR_FORMAT);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 7, "\x93\x01\x02\x03", 4);     /* not a map */
    expect_error(fd, 7, PERR_INVALID);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 8, "\x81\xa4text\x05", 7);     /* text: an int */
    expect_error(fd, 8, PERR_INVALID);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 9, "\x81\xa6vector\xc4\x03\x00\x00\x00", 13); /* wrong dim */
    expect_error(fd, 9, PERR_INVALID);
    nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 10, "\x82\xa4text\xa1x\xa1k\xcd\xff\xff", 13); /* k too big */
    expect_error(fd, 10, PERR_INVALID);
    nt_send_frame(fd, 1, NET_OP_EMBED, 0, 11, "\x81\xa5image\xc4\x04GIF8", 13); /* corrupt image */
    expect_error(fd, 11, PERR_UNSUPPORTED); /* the engine's code, passed through */
    nt_send_frame(fd, 1, NET_OP_PING, 0, 12, NULL, 0);                    /* still fine */
    net_header h;
    uint8_t *p = NULL;
    CHECK(nt_recv_frame(fd, &h, &p, 5000) == 0 && h.id == 12 && !(h.flags & NET_F_ERROR));
    free(p);
    /* Frame over the limit: answered with its id, then closed. */
    nt_send_frame(fd, 1, NET_OP_INGEST, 0, 13, NULL, 0);
    expect_error(fd, 13, PERR_INVALID); /* INGEST with nothing */
    uint8_t hdr[NET_HEADER_SIZE];
    net_header big = {NET_MAGIC, 1, NET_OP_INGEST, 0, 14, (1u << 20) + 1};
    net_header_encode(&big, hdr);
    nt_send_raw(fd, hdr, sizeof hdr);
    expect_error(fd, 14, PERR_TOO_LARGE);
    CHECK(nt_wait_eof(fd, 5000));
    close(fd);
    /* Bad magic: error frame (id 0), then closed. */
    fd = nt_connect(s.port);
    nt_send_raw(fd, "GET / HTTP/1.1\r\n\r\n", 18);
    expect_error(fd, 0, PERR_PROTOCOL);
    CHECK(nt_wait_eof(fd, 5000));
    close(fd);
    /* The other client never noticed. */
    CHECK_OK(pc_ping(good));
    pc_close(good);
    nt_server_stop(&s);
}

/* ---- limits, auth, metrics, stop ----------------------------------------- */

static void test_auth(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.token = "s3cret-token";
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    int fd = nt_connect(s.port);
    nt_send_frame(fd, 1, NET_OP_PING, 0, 1, NULL, 0); /* PING needs no token */
    net_header h;
    uint8_t *p = NULL;
    CHECK(nt_recv_frame(fd, &h, &p, 5000) == 0 && !(h.flags & NET_F_ERROR));
    free(p);
    nt_send_frame(fd, 1, NET_OP_STATS, 0, 2, NULL, 0);
    expect_error(fd, 2, PERR_AUTH);
    uint8_t pl[64];
    size_t n = pack_map1(pl, "token", "wrong");
    nt_send_frame(fd, 1, NET_OP_HELLO, 0, 3, pl, (uint32_t)n);
    expect_error(fd, 3, PERR_AUTH);
    nt_send_frame(fd, 1, NET_OP_STATS, 0, 4, NULL, 0);
    expect_error(fd, 4, PERR_AUTH);
    close(fd);
    pc_client *c = NULL;
    CHECK_ERR(pc_connect(s.addr, "nope", &c), PERR_AUTH);
    REQUIRE_OK(pc_connect(s.addr, NULL, &c)); /* connects, but may only ping */
    CHECK_OK(pc_ping(c));
    eng_stats st;
    CHECK_ERR(pc_stats(c, &st, NULL), PERR_AUTH);
    pc_close(c);
    REQUIRE_OK(pc_connect(s.addr, "s3cret-token", &c));
    CHECK_OK(pc_stats(c, &st, NULL));
    pc_close(c);
    nt_server_stop(&s);
    /* Non-loopback without a token is refused; with --insecure it binds. */
    net_server *srv = NULL;
    static const char *const any[] = {"0.0.0.0:0"};
    net_server_opts_default(&o);
    o.listen = any; o.n_listen = 1;
    CHECK_ERR(net_server_new(db, &o, &srv), PERR_AUTH);
    CHECK(srv == NULL);
}

static void test_limits(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.max_conns = 2;
    o.idle_timeout_ms = 300;
    o.workers = 1;
    o.max_queue = 2;
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    int a = nt_connect(s.port), b = nt_connect(s.port);
    nt_send_frame(a, 1, NET_OP_PING, 0, 1, NULL, 0);
    nt_send_frame(b, 1, NET_OP_PING, 0, 1, NULL, 0);
    net_header h;
    uint8_t *p = NULL;
    CHECK(nt_recv_frame(a, &h, &p, 5000) == 0); free(p);
    CHECK(nt_recv_frame(b, &h, &p, 5000) == 0); free(p);
    int c3 = nt_connect(s.port);
    expect_error(c3, 0, PERR_BUSY);  /* too many connections */
    CHECK(nt_wait_eof(c3, 5000));
    close(c3);
    /* A full queue answers BUSY, every request gets exactly one answer. */
    size_t len;
    void *img = nt_image("astronaut.png", &len);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    net_mp_pack_cstr(&pk, "image");
    net_mp_pack_bin(&pk, img, len);
    enum { N = 20 };
    for (int i = 1; i <= N; i++) nt_send_frame(a, 1, NET_OP_EMBED, 0, (uint64_t)i, sb.data, (uint32_t)sb.size);
    int busy = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        if (nt_recv_frame(a, &h, &p, 20000)) break;
        if (h.flags & NET_F_ERROR) busy += nt_error_code(p, h.length, NULL, 0) == PERR_BUSY;
        else ok++;
        free(p);
    }
    CHECK_EQ_INT(busy + ok, N);
    CHECK(busy > 0);
    CHECK(ok >= 2);
    msgpack_sbuffer_destroy(&sb);
    free(img);
    /* Idle: closed with a TIMEOUT frame. */
    usleep(800 * 1000);
    expect_error(b, 0, PERR_TIMEOUT);
    CHECK(nt_wait_eof(b, 3000));
    close(a);
    close(b);
    nt_server_stop(&s);
}

static void test_metrics_http(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.metrics = "127.0.0.1:0";
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    CHECK_OK(pc_ping(c));
    float *v = malloc(sizeof(float) * (size_t)pc_dim(c));
    CHECK_OK(pc_embed_text(c, "metrics", v));
    free(v);
    pc_close(c);
    int fd = nt_connect(net_server_port(s.srv, -1));
    REQUIRE(fd >= 0);
    const char *rq = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    nt_send_raw(fd, rq, strlen(rq));
    char buf[16384];
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = 0;
    CHECK(strstr(buf, "HTTP/1.1 200 OK") == buf);
    CHECK(strstr(buf, "percept_requests_total{op=\"PING\"} 1") != NULL);
    CHECK(strstr(buf, "percept_requests_total{op=\"EMBED\"} 1") != NULL);
    CHECK(strstr(buf, "percept_request_duration_seconds_bucket{op=\"EMBED\",le=\"+Inf\"} 1") != NULL);
    CHECK(strstr(buf, "percept_queue_depth 0") != NULL);
    close(fd);
    nt_server_stop(&s);
}

/* Stop with requests in flight: every accepted request is answered. */
static void test_stop_finishes_inflight(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    size_t len;
    void *img = nt_image("rocket.jpg", &len);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    net_mp_pack_cstr(&pk, "image");
    net_mp_pack_bin(&pk, img, len);
    enum { N = 8 };
    for (int i = 1; i <= N; i++) nt_send_frame(fd, 1, NET_OP_EMBED, 0, (uint64_t)i, sb.data, (uint32_t)sb.size);
    /* The first answer proves the server read them. */
    net_header h;
    uint8_t *p = NULL;
    int got = 0;
    if (nt_recv_frame(fd, &h, &p, 20000) == 0) { got++; free(p); }
    net_server_stop(s.srv);
    while (nt_recv_frame(fd, &h, &p, 20000) == 0) { got += !(h.flags & NET_F_ERROR); free(p); }
    CHECK_EQ_INT(got, N);
    pthread_join(s.th, NULL);
    net_server_free(s.srv);
    msgpack_sbuffer_destroy(&sb);
    free(img);
    close(fd);
}

int main(void) {
    nt_init();
    dir = t_tmpdir("net_server");
    if (nt_open_db(dir, 2, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return 1; }
    T_RUN(test_core_ops_match_embedded);
    T_RUN(test_delete_and_label);
    T_RUN(test_many_clients_ingest_and_search);
    T_RUN(test_pipelining_out_of_order);
    T_RUN(test_disconnect_mid_request);
    T_RUN(test_slow_reader_does_not_stall_others);
    T_RUN(test_bad_frames);
    T_RUN(test_auth);
    T_RUN(test_limits);
    T_RUN(test_metrics_http);
    T_RUN(test_stop_finishes_inflight);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
    nt_fini();
    return t_done();
}
