/* Frame parser and MessagePack pre-check on hand-made bytes. */
#include "common/perr.h"
#include "net/mp.h"
#include "net/proto.h"
#include "tests/common/testlib.h"

#include <stdlib.h>
#include <string.h>

static size_t frame(uint8_t *buf, int op, uint64_t id, const void *p, uint32_t len) {
    net_header h = {NET_MAGIC, NET_VERSION, (uint8_t)op, 0, id, len};
    net_header_encode(&h, buf);
    memcpy(buf + NET_HEADER_SIZE, p, len);
    return NET_HEADER_SIZE + len;
}

static void test_frame_whole_and_partial(void) {
    uint8_t buf[64];
    size_t n = frame(buf, NET_OP_PING, 0x1122334455667788ull, "\x80", 1);
    CHECK_EQ_INT(n, 21);
    CHECK(!memcmp(buf, "PCPT", 4));
    net_header h;
    size_t need;
    CHECK_EQ_INT(net_frame_parse(buf, n, 1024, &h, &need), 21);
    CHECK_EQ_INT(h.opcode, NET_OP_PING);
    CHECK(h.id == 0x1122334455667788ull);
    CHECK_EQ_INT(h.length, 1);
    /* Every prefix: need more, never an error. */
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(net_frame_parse(buf, i, 1024, &h, &need), 0);
        CHECK_EQ_INT(need, i < NET_HEADER_SIZE ? NET_HEADER_SIZE : 21);
    }
    /* Two frames back to back: the first is returned alone. */
    size_t n2 = frame(buf + n, NET_OP_STATS, 2, "", 0);
    CHECK_EQ_INT(net_frame_parse(buf, n + n2, 1024, &h, &need), 21);
    CHECK_EQ_INT(net_frame_parse(buf + n, n2, 1024, &h, &need), 20);
    CHECK_EQ_INT(h.opcode, NET_OP_STATS);
}

static void test_frame_errors(void) {
    uint8_t buf[64];
    size_t n = frame(buf, NET_OP_PING, 1, "\x80", 1);
    net_header h;
    buf[0] = 'X';
    CHECK_ERR(net_frame_parse(buf, 1, 1024, &h, NULL), PERR_PROTOCOL); /* at the first byte */
    buf[0] = 'P';
    buf[3] = 'X';
    CHECK_ERR(net_frame_parse(buf, 4, 1024, &h, NULL), PERR_PROTOCOL);
    buf[3] = 'T';
    /* A declared length over the limit is refused from the header alone. */
    net_header big = {NET_MAGIC, 1, NET_OP_INGEST, 0, 9, 0xFFFFFFFFu};
    net_header_encode(&big, buf);
    CHECK_ERR(net_frame_parse(buf, NET_HEADER_SIZE, 64u << 20, &h, NULL), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "4294967295") != NULL);
    /* Unknown opcode and version are frames (answered by the server). */
    n = frame(buf, 0x7f, 3, "", 0);
    buf[4] = 9;
    CHECK_EQ_INT(net_frame_parse(buf, n, 1024, &h, NULL), 20);
    CHECK_EQ_INT(h.version, 9);
    CHECK(net_op_name(0x7f) == NULL);
    CHECK_STR(net_op_name(NET_OP_SEARCH), "SEARCH");
}

static int check(const char *bytes, size_t len) {
    return net_mp_check((const uint8_t *)bytes, len, NET_MP_MAX_DEPTH, NET_MP_MAX_OBJECTS);
}

static void test_mp_check(void) {
    /* Valid: {"a": [1, -1, nil, true, 1.5f32, "xy", bin(2)]} */
    static const char ok[] = "\x81\xa1" "a" "\x97\x01\xff\xc0\xc3\xca\x3f\xc0\x00\x00\xa2xy\xc4\x02\x00\x01";
    CHECK_OK(check(ok, sizeof ok - 1));
    /* Every truncation fails cleanly. */
    for (size_t i = 0; i + 1 < sizeof ok - 1; i++) CHECK(check(ok, i) != PERR_OK);
    /* Trailing byte. */
    CHECK_ERR(check("\x80\x80", 2), PERR_FORMAT);
    /* array32 declaring 4 billion elements in 5 bytes. */
    CHECK_ERR(check("\xdd\xff\xff\xff\xff", 5), PERR_FORMAT);
    CHECK(strstr(perr_msg(), "4294967295") != NULL);
    /* map32 likewise; bin32 and str32 lengths that lie. */
    CHECK_ERR(check("\xdf\x00\x01\x00\x00\x01", 6), PERR_FORMAT);
    CHECK_ERR(check("\xc6\x7f\xff\xff\xff\x00", 6), PERR_FORMAT);
    CHECK_ERR(check("\xdb\x00\x00\x00\x05" "abc", 8), PERR_FORMAT);
    /* Invalid type byte 0xc1. */
    CHECK_ERR(check("\xc1", 1), PERR_FORMAT);
    /* Nesting deeper than the limit. */
    char deep[40];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0x00;
    CHECK_ERR(check(deep, sizeof deep), PERR_FORMAT);
    CHECK(strstr(perr_msg(), "deeper") != NULL);
    /* Object cap: 100 nils against a cap of 50. */
    char many[103] = "\xdc\x00\x64";
    memset(many + 3, 0xc0, 100);
    CHECK_OK(check(many, 103));
    CHECK_ERR(net_mp_check((const uint8_t *)many, 103, 4, 50), PERR_TOO_LARGE);
    /* Empty input. */
    CHECK_ERR(check("", 0), PERR_FORMAT);
}

static void test_mp_getters(void) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    net_mp_pack_key(&pk, "k"); msgpack_pack_int(&pk, 7);
    net_mp_pack_key(&pk, "s"); net_mp_pack_cstr(&pk, "hello");
    net_mp_pack_key(&pk, "l"); msgpack_pack_array(&pk, 2); net_mp_pack_cstr(&pk, "a"); net_mp_pack_cstr(&pk, "b");
    net_mp_pack_key(&pk, "neg"); msgpack_pack_int(&pk, -3);
    net_mp_pack_key(&pk, "nul"); msgpack_pack_str(&pk, 3); msgpack_pack_str_body(&pk, "a\0b", 3);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    REQUIRE_OK(net_mp_unpack((const uint8_t *)sb.data, sb.size, &u, &o));
    net_arena a = {0};
    int k = 0;
    const char *s = NULL, **l = NULL;
    int n = 0;
    uint64_t u64 = 0;
    CHECK_OK(net_mp_int(o, "k", &k));
    CHECK_EQ_INT(k, 7);
    CHECK_OK(net_mp_str(o, "s", &a, &s));
    CHECK_STR(s, "hello");
    CHECK_OK(net_mp_strs(o, "l", &a, 8, &l, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_STR(l[1], "b");
    CHECK_ERR(net_mp_strs(o, "l", &a, 1, &l, &n), PERR_TOO_LARGE);
    CHECK_ERR(net_mp_u64(o, "neg", &u64), PERR_INVALID);
    CHECK(strstr(perr_msg(), "\"neg\"") != NULL);
    CHECK_ERR(net_mp_str(o, "k", &a, &s), PERR_INVALID);
    CHECK_ERR(net_mp_str(o, "nul", &a, &s), PERR_INVALID);
    CHECK_OK(net_mp_str(o, "absent", &a, &s)); /* absent: untouched */
    CHECK_STR(s, "hello");
    net_arena_free(&a);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

int main(void) {
    T_RUN(test_frame_whole_and_partial);
    T_RUN(test_frame_errors);
    T_RUN(test_mp_check);
    T_RUN(test_mp_getters);
    return t_done();
}
