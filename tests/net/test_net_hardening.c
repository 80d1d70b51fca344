/* The protocol as docs/protocol.md states it, tried the way an outside
 * client author would (issue 9, "Hardening"): raw frames on loopback
 * against an in-process server with the tiny-a model. Error replies that
 * carry no one else's opcode or id, one type rule for every field, DELETE
 * and LABEL with unknown ids, no server paths in messages, and the
 * corners a client author hit (auth order, nesting depth, object counts,
 * UTF-8, duplicate and non-string keys, reused ids). */
#define _GNU_SOURCE
#include "common/perr.h"
#include "net/mp.h"
#include "net/ops.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dir;
static eng_db *db;
static uint64_t ids[6]; /* the six fixture images in "default" */

/* ---- helpers ------------------------------------------------------------ */

/* A payload under construction. */
typedef struct pb { msgpack_sbuffer sb; msgpack_packer pk; } pb;
static msgpack_packer *pb_init(pb *b) {
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
    return &b->pk;
}
static void pb_free(pb *b) { msgpack_sbuffer_destroy(&b->sb); }

/* One reply to a request sent alone on fd. */
typedef struct reply {
    net_header h;
    uint8_t *p;
    int code;        /* perr code of an error reply, 0 for success, 1 for none */
    char msg[1024];
} reply;

static void reply_free(reply *r) { free(r->p); r->p = NULL; }

static int recv_reply(int fd, reply *r) {
    memset(r, 0, sizeof *r);
    r->code = 1;
    if (nt_recv_frame(fd, &r->h, &r->p, 20000)) return 1;
    r->code = (r->h.flags & NET_F_ERROR) ? nt_error_code(r->p, r->h.length, r->msg, sizeof r->msg) : 0;
    if (r->h.flags & NET_F_ERROR && r->code == 0) r->code = 2; /* an error without a code */
    return r->code;
}

/* Sends op with the payload of b (NULL: empty) and returns the reply's code. */
static int call(int fd, int op, uint64_t id, const pb *b, reply *r) {
    if (nt_send_frame(fd, 1, op, 0, id, b ? b->sb.data : NULL, b ? (uint32_t)b->sb.size : 0)) return 1;
    int code = recv_reply(fd, r);
    if (code != 1 && r->h.id != id)
        t_fail(__FILE__, __LINE__, "reply id %llu to request %llu", (unsigned long long)r->h.id, (unsigned long long)id);
    return code;
}

static int call_raw(int fd, int op, uint64_t id, const void *p, uint32_t len, reply *r) {
    if (nt_send_frame(fd, 1, op, 0, id, p, len)) return 1;
    return recv_reply(fd, r);
}

/* The value of key in a reply payload map (r->p), kept in u. */
static const msgpack_object *reply_get(const reply *r, msgpack_unpacked *u, const char *key) {
    const msgpack_object *o = NULL;
    msgpack_unpacked_init(u);
    if (net_mp_unpack(r->p, r->h.length, u, &o)) return NULL;
    return net_mp_get(o, key);
}

/* ---- error replies carry nobody else's header ---------------------------- */

/* Connection A sends a PING with id 0x1122334455667788; connection B then
 * sends 20 zero bytes: B's PROTOCOL error has opcode 0 and id 0 (it used to
 * carry A's opcode and id: the parser's header was read although the
 * bad-magic path never filled it). */
static void test_bad_magic_reply_is_op0_id0(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    static const uint8_t zeros[NET_HEADER_SIZE];
    static const char *const garbage[] = {"\0", "PCPX0123456789abcdef", "GET / HTTP/1.1\r\n\r\n..", "PCP"};
    for (int round = 0; round < 8; round++) {
        int a = nt_connect(s.port), b = nt_connect(s.port);
        REQUIRE(a >= 0 && b >= 0);
        reply r;
        uint64_t aid = 0x1122334455667788ull + (uint64_t)round;
        CHECK_EQ_INT(call(a, NET_OP_PING, aid, NULL, &r), 0);
        CHECK(r.h.id == aid);
        reply_free(&r);
        if (round < 4) nt_send_raw(b, zeros, sizeof zeros);
        else if (round < 7) nt_send_raw(b, garbage[round - 4], round == 4 ? 1 : 20);
        else { nt_send_raw(b, "PCP", 3); usleep(20000); nt_send_raw(b, zeros, 17); } /* split */
        CHECK_EQ_INT(recv_reply(b, &r), PERR_PROTOCOL);
        CHECK_EQ_INT(r.h.opcode, 0);
        if (r.h.id != 0) t_fail(__FILE__, __LINE__, "round %d: bad magic answered with id 0x%llx", round, (unsigned long long)r.h.id);
        CHECK_EQ_INT(r.h.version, NET_VERSION);
        CHECK(r.h.flags == (NET_F_RESPONSE | NET_F_ERROR));
        reply_free(&r);
        CHECK(nt_wait_eof(b, 5000));
        /* A is unaffected. */
        CHECK_EQ_INT(call(a, NET_OP_PING, aid + 1, NULL, &r), 0);
        reply_free(&r);
        close(a);
        close(b);
    }
    /* An oversized frame is answered with its own opcode and id. */
    int a = nt_connect(s.port), b = nt_connect(s.port);
    reply r;
    CHECK_EQ_INT(call(a, NET_OP_PING, 77, NULL, &r), 0);
    reply_free(&r);
    uint8_t hdr[NET_HEADER_SIZE];
    net_header big = {NET_MAGIC, 1, NET_OP_SEARCH, 0, 5, 0xFFFFFFF0u};
    net_header_encode(&big, hdr);
    nt_send_raw(b, hdr, sizeof hdr);
    CHECK_EQ_INT(recv_reply(b, &r), PERR_TOO_LARGE);
    CHECK_EQ_INT(r.h.opcode, NET_OP_SEARCH);
    CHECK(r.h.id == 5);
    reply_free(&r);
    close(a);
    close(b);
    nt_server_stop(&s);
}

/* ---- one type rule for every field --------------------------------------- */

/* Expects code for op with payload b; the message must name `field`. */
static void expect(int fd, int op, const pb *b, int code, const char *field, int line) {
    static uint64_t next_id = 1000;
    reply r;
    int got = call(fd, op, next_id++, b, &r);
    if (got != code || (field && !strstr(r.msg, field)))
        t_fail(__FILE__, line, "%s: expected %s naming \"%s\", got %s (%s)", net_op_name(op), perr_name(code),
               field ? field : "", got == 0 ? "success" : perr_name(got), r.msg);
    reply_free(&r);
}
#define EXPECT(fd, op, b, code, field) expect(fd, op, b, code, field, __LINE__)

/* A one-key map {key: <packed by the caller>}: returns the packer. */
static msgpack_packer *map1(pb *b, const char *key) {
    msgpack_packer *pk = pb_init(b);
    msgpack_pack_map(pk, 1);
    net_mp_pack_key(pk, key);
    return pk;
}

static void pack_raw_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* str where bin is required, bin where str is, any integer as a bool, a
 * float as an int: INVALID naming the field, for every field of every
 * request (the getters of net/mp.h are the only way fields are read). */
static void test_types_one_rule(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    REQUIRE(fd >= 0);
    int dim = eng_dim(db);
    size_t vbytes = sizeof(float) * (size_t)dim;
    char *vs = calloc(1, vbytes);
    memset(vs, 'A', vbytes); /* a str of exactly the vector's size: still not a vector */
    pb b;
    /* bin fields given a str */
    static const struct { int op; const char *key; } bins[] = {
        {NET_OP_INGEST, "data"}, {NET_OP_SEARCH, "vector"}, {NET_OP_SEARCH, "image"},
        {NET_OP_EMBED, "image"}, {NET_OP_CLASSIFY, "image"}, {NET_OP_MODERATE, "image"},
        {NET_OP_MODERATE, "vector"}};
    for (size_t i = 0; i < sizeof bins / sizeof *bins; i++) {
        pack_raw_str(map1(&b, bins[i].key), vs, vbytes);
        EXPECT(fd, bins[i].op, &b, PERR_INVALID, bins[i].key);
        pb_free(&b);
    }
    /* str fields given a bin */
    static const struct { int op; const char *key; } strs[] = {
        {NET_OP_INGEST, "path"}, {NET_OP_INGEST, "uri"}, {NET_OP_INGEST, "collection"},
        {NET_OP_INGEST, "labels"}, {NET_OP_SEARCH, "text"}, {NET_OP_SEARCH, "path"},
        {NET_OP_SEARCH, "collections"}, {NET_OP_SEARCH, "labels"}, {NET_OP_CLASSIFY, "path"},
        {NET_OP_CLASSIFY, "prompt"}, {NET_OP_CLASSIFY, "labels"}, {NET_OP_MODERATE, "sets"},
        {NET_OP_LABEL, "label"}, {NET_OP_EMBED, "text"}, {NET_OP_COLLECTIONS, "action"},
        {NET_OP_COLLECTIONS, "name"}, {NET_OP_EXPORT, "collection"}, {NET_OP_EXPORT, "after_collection"},
        {NET_OP_DUPS, "tier"}, {NET_OP_DUPS, "collection"}, {NET_OP_HELLO, "token"}, {NET_OP_HELLO, "client"}};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        net_mp_pack_bin(map1(&b, strs[i].key), "cat", 3);
        EXPECT(fd, strs[i].op, &b, PERR_INVALID, strs[i].key);
        pb_free(&b);
    }
    /* meta / where values: bin instead of str */
    msgpack_packer *pk = map1(&b, "where");
    msgpack_pack_map(pk, 1); net_mp_pack_cstr(pk, "k"); net_mp_pack_bin(pk, "v", 1);
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "where");
    pb_free(&b);
    /* bools: true, false, 0 and 1 only */
    static const struct { int op; const char *key; } bools[] = {
        {NET_OP_SEARCH, "include_self"}, {NET_OP_SEARCH, "segments"}, {NET_OP_GET, "vector"},
        {NET_OP_LABEL, "remove"}, {NET_OP_EXPORT, "vector"}};
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        for (int v = 0; v < 3; v++) { /* 2, 5, "yes" (GET needs its id first) */
            pk = pb_init(&b);
            msgpack_pack_map(pk, 2);
            net_mp_pack_key(pk, "id"); msgpack_pack_uint64(pk, ids[0]);
            net_mp_pack_key(pk, bools[i].key);
            if (v < 2) msgpack_pack_int(pk, v ? 5 : 2); else net_mp_pack_cstr(pk, "yes");
            EXPECT(fd, bools[i].op, &b, PERR_INVALID, bools[i].key);
            pb_free(&b);
        }
    }
    /* ... and 0/1/true/false work: GET vector 1 has a vector, 0 has none */
    for (int v = 0; v < 4; v++) {
        pk = pb_init(&b);
        msgpack_pack_map(pk, 2);
        net_mp_pack_key(pk, "id"); msgpack_pack_uint64(pk, ids[0]);
        net_mp_pack_key(pk, "vector");
        if (v < 2) msgpack_pack_int(pk, v); else if (v == 2) msgpack_pack_false(pk); else msgpack_pack_true(pk);
        reply r;
        CHECK_EQ_INT(call(fd, NET_OP_GET, 1, &b, &r), 0);
        msgpack_unpacked u;
        const msgpack_object *vec = reply_get(&r, &u, "vector");
        CHECK_EQ_INT(vec != NULL, v == 1 || v == 3);
        if (vec) CHECK(vec->type == MSGPACK_OBJECT_BIN && vec->via.bin.size == vbytes);
        msgpack_unpacked_destroy(&u);
        reply_free(&r);
        pb_free(&b);
    }
    /* ints: a float is not an int, a string is not an id */
    msgpack_pack_double(map1(&b, "k"), 3.0);
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "\"k\"");
    pb_free(&b);
    net_mp_pack_cstr(map1(&b, "id"), "5");
    EXPECT(fd, NET_OP_GET, &b, PERR_INVALID, "\"id\"");
    pb_free(&b);
    msgpack_pack_int(map1(&b, "ids"), -4);
    EXPECT(fd, NET_OP_DELETE, &b, PERR_INVALID, "\"ids\"");
    pb_free(&b);
    /* PING: an empty payload or a map; not MessagePack is FORMAT, not a map INVALID */
    reply r;
    CHECK_EQ_INT(call_raw(fd, NET_OP_PING, 2, "\x80", 1, &r), 0);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, NET_OP_PING, 3, "\xc1", 1, &r), PERR_FORMAT);
    CHECK_EQ_INT(r.h.opcode, NET_OP_PING);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, NET_OP_PING, 4, "hello", 5, &r), PERR_FORMAT);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, NET_OP_PING, 5, "\x92\x01\x02", 3, &r), PERR_INVALID);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, NET_OP_PING, 6, NULL, 0, &r), 0);
    reply_free(&r);
    free(vs);
    close(fd);
    nt_server_stop(&s);
}

/* Map keys are strings, valid UTF-8, each once; str values are valid
 * UTF-8 (overlong forms and surrogates included); an empty collections
 * list is refused. */
static void test_keys_utf8_empty_lists(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    pb b;
    msgpack_packer *pk = pb_init(&b); /* {"text": "cat", 1: "x"} */
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "cat");
    msgpack_pack_int(pk, 1); net_mp_pack_cstr(pk, "x");
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "not a string");
    pb_free(&b);
    pk = pb_init(&b); /* {"text": "cat", "text": "dog"} */
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "cat");
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "dog");
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "\"text\" appears twice");
    pb_free(&b);
    pk = map1(&b, "meta"); /* duplicate keys inside meta */
    msgpack_pack_map(pk, 2);
    net_mp_pack_cstr(pk, "a"); net_mp_pack_cstr(pk, "1");
    net_mp_pack_cstr(pk, "a"); net_mp_pack_cstr(pk, "2");
    EXPECT(fd, NET_OP_INGEST, &b, PERR_INVALID, "\"a\" appears twice");
    pb_free(&b);
    pk = pb_init(&b); /* a key that is not UTF-8 */
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "cat");
    pack_raw_str(pk, "\xff", 1); net_mp_pack_cstr(pk, "x");
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "UTF-8");
    pb_free(&b);
    static const char *const bad[] = {"\xff", "ab\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pack_raw_str(map1(&b, "text"), bad[i], strlen(bad[i]));
        EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "UTF-8");
        pb_free(&b);
        pk = map1(&b, "labels");
        msgpack_pack_array(pk, 2);
        net_mp_pack_cstr(pk, "fine");
        pack_raw_str(pk, bad[i], strlen(bad[i]));
        EXPECT(fd, NET_OP_INGEST, &b, PERR_INVALID, "\"labels\"");
        pb_free(&b);
    }
    /* Valid multi-byte text is searched. */
    net_mp_pack_cstr(map1(&b, "text"), "un chat \xc3\xa9 \xf0\x9f\x90\x88");
    EXPECT(fd, NET_OP_SEARCH, &b, 0, NULL);
    pb_free(&b);
    pk = pb_init(&b);
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "cat");
    net_mp_pack_key(pk, "collections"); msgpack_pack_array(pk, 0);
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_INVALID, "\"collections\"");
    pb_free(&b);
    close(fd);
    nt_server_stop(&s);
}

/* ---- DELETE and LABEL with unknown ids: one rule ------------------------- */

static void pack_ids(msgpack_packer *pk, const uint64_t *v, int n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_uint64(pk, v[i]);
}

static int has_label(uint64_t id, const char *label) {
    eng_item *it = NULL;
    if (eng_get(db, id, 0, &it)) return -1;
    int found = 0;
    for (int i = 0; i < it->n_labels; i++) found |= !strcmp(it->labels[i], label);
    eng_item_free(it);
    return found;
}

/* [unknown1, known, unknown2]: the known id is labelled / unlabelled /
 * removed, and the NOT_FOUND names both unknown ids. */
static void test_unknown_ids_rule(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    size_t len;
    void *img = nt_image("rocket.jpg", &len);
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.collection = "unknown_ids";
    uint64_t known;
    REQUIRE_OK(eng_add_buffer(db, img, len, "rocket.jpg", &o, &known, NULL));
    free(img);
    const uint64_t u1 = 900001, u2 = 900002;
    uint64_t v[3] = {u1, known, u2};
    char w1[32], w2[32];
    snprintf(w1, sizeof w1, "%llu", (unsigned long long)u1);
    snprintf(w2, sizeof w2, "%llu", (unsigned long long)u2);
    for (int step = 0; step < 3; step++) {
        pb b;
        msgpack_packer *pk = pb_init(&b);
        msgpack_pack_map(pk, step == 2 ? 1 : (step == 1 ? 3 : 2));
        net_mp_pack_key(pk, "ids"); pack_ids(pk, v, 3);
        if (step < 2) { net_mp_pack_key(pk, "label"); net_mp_pack_cstr(pk, "flag"); }
        if (step == 1) { net_mp_pack_key(pk, "remove"); msgpack_pack_true(pk); }
        reply r;
        CHECK_EQ_INT(call(fd, step == 2 ? NET_OP_DELETE : NET_OP_LABEL, 10 + (uint64_t)step, &b, &r), PERR_NOT_FOUND);
        if (!strstr(r.msg, w1) || !strstr(r.msg, w2))
            t_fail(__FILE__, __LINE__, "step %d: NOT_FOUND does not name both unknown ids: %s", step, r.msg);
        CHECK(strstr(r.msg, "2 of 3") != NULL);
        reply_free(&r);
        pb_free(&b);
        if (step == 0) CHECK_EQ_INT(has_label(known, "flag"), 1);  /* labelled although others were unknown */
        if (step == 1) CHECK_EQ_INT(has_label(known, "flag"), 0);
        if (step == 2) CHECK_EQ_INT(has_label(known, "flag"), -1); /* removed */
    }
    /* Many unknown ids: the message says how many it did not list. */
    enum { N = 400 };
    uint64_t many[N];
    for (int i = 0; i < N; i++) many[i] = 800000 + (uint64_t)i;
    pb b;
    pack_ids(map1(&b, "ids"), many, N);
    reply r;
    CHECK_EQ_INT(call(fd, NET_OP_DELETE, 20, &b, &r), PERR_NOT_FOUND);
    CHECK(strstr(r.msg, "800000, 800001") != NULL);
    CHECK(strstr(r.msg, "more") != NULL);
    reply_free(&r);
    pb_free(&b);
    close(fd);
    nt_server_stop(&s);
}

/* ---- no server paths in messages -------------------------------------------- */

static void no_dir_in(const char *msg, const char *real, int line) {
    if (strstr(msg, dir) || (real && strstr(msg, real)))
        t_fail(__FILE__, line, "message names the database directory: %s", msg);
}

static void test_messages_without_server_paths(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    char *real = realpath(dir, NULL);
    pb b;
    reply r;
    msgpack_pack_uint64(map1(&b, "id"), 987654);
    CHECK_EQ_INT(call(fd, NET_OP_GET, 1, &b, &r), PERR_NOT_FOUND);
    CHECK(strstr(r.msg, "987654") != NULL);
    no_dir_in(r.msg, real, __LINE__);
    reply_free(&r); pb_free(&b);
    msgpack_packer *pk = map1(&b, "ids");
    uint64_t one = 987654;
    pack_ids(pk, &one, 1);
    CHECK_EQ_INT(call(fd, NET_OP_DELETE, 2, &b, &r), PERR_NOT_FOUND);
    no_dir_in(r.msg, real, __LINE__);
    reply_free(&r); pb_free(&b);
    pk = pb_init(&b);
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "cat");
    net_mp_pack_key(pk, "collections"); net_mp_pack_cstr(pk, "nosuch");
    CHECK_EQ_INT(call(fd, NET_OP_SEARCH, 3, &b, &r), PERR_NOT_FOUND);
    CHECK(strstr(r.msg, "nosuch") != NULL);
    no_dir_in(r.msg, real, __LINE__);
    reply_free(&r); pb_free(&b);
    pk = pb_init(&b);
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "action"); net_mp_pack_cstr(pk, "drop");
    net_mp_pack_key(pk, "name"); net_mp_pack_cstr(pk, "nosuch");
    CHECK_EQ_INT(call(fd, NET_OP_COLLECTIONS, 4, &b, &r), PERR_NOT_FOUND);
    no_dir_in(r.msg, real, __LINE__);
    reply_free(&r); pb_free(&b);
    /* Any message naming a file in the database directory shows it as <db>. */
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/no-such-file.png", i ? (real ? real : dir) : dir);
        net_mp_pack_cstr(map1(&b, "path"), path);
        CHECK(call(fd, NET_OP_EMBED, 5, &b, &r) < 0);
        no_dir_in(r.msg, real, __LINE__);
        CHECK(strstr(r.msg, "<db>/no-such-file.png") != NULL);
        reply_free(&r); pb_free(&b);
    }
    free(real);
    close(fd);
    nt_server_stop(&s);
}

/* ---- the corners of docs/protocol.md a client author asked about ---------- */

static int int01(const msgpack_object *o, int want) {
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 == (uint64_t)want;
}

/* With a token: before auth every request but PING/HELLO gets AUTH and the
 * connection is kept; an unknown opcode gets UNSUPPORTED (checked before
 * auth), bad MessagePack gets AUTH (the payload is not looked at); HELLO
 * without a token answers authenticated 0; response bools are integers. */
static void test_auth_order_and_bools(void) {
    net_server_opts o;
    net_server_opts_default(&o);
    o.token = "tok-123";
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    int fd = nt_connect(s.port);
    reply r;
    CHECK_EQ_INT(call(fd, NET_OP_STATS, 1, NULL, &r), PERR_AUTH);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, 0x7e, 2, NULL, 0, &r), PERR_UNSUPPORTED);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, NET_OP_SEARCH, 3, "\xc1", 1, &r), PERR_AUTH);
    reply_free(&r);
    CHECK_EQ_INT(call(fd, NET_OP_PING, 4, NULL, &r), 0); /* still connected */
    reply_free(&r);
    pb b;
    msgpack_pack_int(map1(&b, "version"), 1); /* HELLO without a token */
    CHECK_EQ_INT(call(fd, NET_OP_HELLO, 5, &b, &r), 0);
    msgpack_unpacked u;
    CHECK(int01(reply_get(&r, &u, "authenticated"), 0));
    msgpack_unpacked_destroy(&u);
    CHECK(int01(reply_get(&r, &u, "auth_required"), 1));
    msgpack_unpacked_destroy(&u);
    reply_free(&r); pb_free(&b);
    net_mp_pack_cstr(map1(&b, "token"), "tok-123");
    CHECK_EQ_INT(call(fd, NET_OP_HELLO, 6, &b, &r), 0);
    CHECK(int01(reply_get(&r, &u, "authenticated"), 1)); /* an integer, not a MessagePack bool */
    msgpack_unpacked_destroy(&u);
    reply_free(&r); pb_free(&b);
    CHECK_EQ_INT(call(fd, NET_OP_STATS, 7, NULL, &r), 0);
    reply_free(&r);
    close(fd);
    nt_server_stop(&s);
}

/* A payload {"text": "cat", "x": <arrays nested n deep around a nil>}. */
static void pack_nested(pb *b, int n) {
    msgpack_packer *pk = pb_init(b);
    msgpack_pack_map(pk, 2);
    net_mp_pack_key(pk, "text"); net_mp_pack_cstr(pk, "cat");
    net_mp_pack_key(pk, "x");
    for (int i = 0; i < n; i++) msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
}

/* Depth counts from the payload map (0): an object at depth 16 is fine,
 * at 17 FORMAT. A container whose count exceeds the bytes left is FORMAT;
 * more than 1 048 576 objects that are really there is TOO_LARGE. Every
 * reply (errors included) carries version 1, also the VERSION error to a
 * frame of version 2. A reused id is answered once per request. */
static void test_limits_versions_reused_ids(void) {
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    int fd = nt_connect(s.port);
    pb b;
    pack_nested(&b, 15); /* the nil at depth 16 */
    EXPECT(fd, NET_OP_SEARCH, &b, 0, NULL);
    pb_free(&b);
    pack_nested(&b, 16); /* the nil at depth 17 */
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_FORMAT, "deeper than 16");
    pb_free(&b);
    reply r;
    CHECK_EQ_INT(call_raw(fd, NET_OP_SEARCH, 1, "\x81\xa1x\xdd\x7f\xff\xff\xff", 8, &r), PERR_FORMAT);
    reply_free(&r);
    size_t n = NET_MP_MAX_OBJECTS; /* + map, key, array: over the cap */
    msgpack_packer *pk = map1(&b, "x");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_nil(pk);
    EXPECT(fd, NET_OP_SEARCH, &b, PERR_TOO_LARGE, "objects");
    pb_free(&b);
    /* version byte */
    nt_send_frame(fd, 2, NET_OP_PING, 0, 9, NULL, 0);
    CHECK_EQ_INT(recv_reply(fd, &r), PERR_VERSION);
    CHECK_EQ_INT(r.h.version, 1);
    CHECK(r.h.id == 9);
    reply_free(&r);
    CHECK_EQ_INT(call_raw(fd, 0x7d, 10, NULL, 0, &r), PERR_UNSUPPORTED);
    CHECK_EQ_INT(r.h.version, 1);
    reply_free(&r);
    /* id 42 three times in flight: three replies, each with id 42 */
    net_mp_pack_cstr(map1(&b, "text"), "a reused id");
    nt_send_frame(fd, 1, NET_OP_EMBED, 0, 42, b.sb.data, (uint32_t)b.sb.size);
    nt_send_frame(fd, 1, NET_OP_EMBED, 0, 42, b.sb.data, (uint32_t)b.sb.size);
    nt_send_frame(fd, 1, NET_OP_PING, 0, 42, NULL, 0);
    pb_free(&b);
    int embeds = 0, pings = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(recv_reply(fd, &r), 0);
        CHECK(r.h.id == 42);
        embeds += r.h.opcode == NET_OP_EMBED;
        pings += r.h.opcode == NET_OP_PING;
        reply_free(&r);
    }
    CHECK_EQ_INT(embeds, 2);
    CHECK_EQ_INT(pings, 1);
    close(fd);
    nt_server_stop(&s);
}

int main(void) {
    nt_init();
    dir = t_tmpdir("net_hardening");
    if (nt_open_db(dir, 2, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return 1; }
    for (int i = 0; i < 6; i++) {
        size_t len;
        void *img = nt_image(nt_images[i], &len);
        eng_outcome oc;
        eng_ingest_opts o;
        eng_ingest_opts_default(&o);
        if (!img || eng_add_buffer(db, img, len, nt_images[i], &o, &ids[i], &oc)) {
            fprintf(stderr, "ingest %s: %s\n", nt_images[i], perr_msg());
            return 1;
        }
        free(img);
    }
    T_RUN(test_bad_magic_reply_is_op0_id0);
    T_RUN(test_types_one_rule);
    T_RUN(test_keys_utf8_empty_lists);
    T_RUN(test_unknown_ids_rule);
    T_RUN(test_messages_without_server_paths);
    T_RUN(test_auth_order_and_bools);
    T_RUN(test_limits_versions_reused_ids);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
    nt_fini();
    return t_done();
}
