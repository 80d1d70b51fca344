/* multipart/form-data bodies (http/multipart.h) and the JSON/query field
 * conversions (http/json.h): real form bodies as curl and browsers write
 * them parse into their parts with exact bytes; every truncation and 20 000
 * random mutations of them either parse or fail with a message, never read
 * outside the body (ASan build); base64 round-trips; query strings are typed
 * by field name. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "http/json.h"
#include "http/multipart.h"
#include "tests/common/testlib.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* A body as curl -F 'k=5' -F 'labels=a' -F 'file=@x.jpg' writes it. */
static const char *B = "------------------------d74496d66958873e";
static char *form(size_t *len, const uint8_t *file, size_t flen) {
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    fprintf(f, "--%s\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n5\r\n", B);
    fprintf(f, "--%s\r\nContent-Disposition: form-data; name=\"labels\"\r\n\r\na b\r\n", B);
    fprintf(f, "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x \\\"q\\\".jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n", B);
    fwrite(file, 1, flen, f);
    fprintf(f, "\r\n--%s--\r\n", B);
    fclose(f);
    *len = n;
    return p;
}

static void test_parse_real_form(void) {
    uint8_t file[300];
    for (int i = 0; i < 300; i++) file[i] = (uint8_t)(i * 7); /* CR, LF and '-' bytes included */
    memcpy(file + 100, "\r\n--", 4);                          /* a near-delimiter inside the data */
    size_t len;
    char *body = form(&len, file, sizeof file);
    http_part *p = NULL;
    int n = 0;
    REQUIRE_OK(http_mp_parse((uint8_t *)body, len, B + 0, &p, &n));
    CHECK_EQ_INT(n, 3);
    CHECK_STR(p[0].name, "k");
    CHECK_EQ_INT(p[0].len, 1);
    CHECK(!memcmp(p[0].data, "5", 1));
    CHECK_STR(p[1].name, "labels");
    CHECK(p[1].len == 3 && !memcmp(p[1].data, "a b", 3));
    CHECK_STR(p[2].name, "file");
    CHECK_STR(p[2].filename, "x \"q\".jpg");
    CHECK(p[2].has_filename && !p[0].has_filename);
    CHECK_STR(p[2].content_type, "image/jpeg");
    CHECK_EQ_INT(p[2].len, sizeof file);
    CHECK(!memcmp(p[2].data, file, sizeof file));
    free(p);
    free(body);
}

static void test_boundary_header(void) {
    char b[80];
    CHECK_OK(http_mp_boundary("multipart/form-data; boundary=abc", b, sizeof b));
    CHECK_STR(b, "abc");
    CHECK_OK(http_mp_boundary("multipart/form-data; charset=utf-8; boundary=\"a b;c\"", b, sizeof b));
    CHECK_STR(b, "a b;c");
    CHECK_ERR(http_mp_boundary("multipart/form-data", b, sizeof b), PERR_INVALID);
    CHECK_ERR(http_mp_boundary("multipart/form-data; boundary=", b, sizeof b), PERR_INVALID);
    char lng[200] = "multipart/form-data; boundary=";
    memset(lng + strlen(lng), 'x', 80);
    CHECK_ERR(http_mp_boundary(lng, b, sizeof b), PERR_INVALID);
}

static void test_malformed(void) {
    http_part *p = NULL;
    int n = 0;
    const char *no_close = "--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue";
    CHECK_ERR(http_mp_parse((const uint8_t *)no_close, strlen(no_close), "zz", &p, &n), PERR_FORMAT);
    const char *no_boundary = "just some bytes";
    CHECK_ERR(http_mp_parse((const uint8_t *)no_boundary, strlen(no_boundary), "zz", &p, &n), PERR_FORMAT);
    const char *bad_after = "--zzX\r\n\r\n";
    CHECK_ERR(http_mp_parse((const uint8_t *)bad_after, strlen(bad_after), "zz", &p, &n), PERR_FORMAT);
    /* headers never terminated, longer than the 8 KiB bound */
    size_t big = 20000;
    char *h = malloc(big);
    memcpy(h, "--zz\r\nX: ", 9);
    memset(h + 9, 'a', big - 9);
    CHECK_ERR(http_mp_parse((const uint8_t *)h, big, "zz", &p, &n), PERR_TOO_LARGE);
    free(h);
    /* too many parts */
    char *many = NULL;
    size_t ml = 0;
    FILE *f = open_memstream(&many, &ml);
    for (int i = 0; i < HTTP_MP_MAX_PARTS + 1; i++) fprintf(f, "--zz\r\n\r\nx\r\n");
    fprintf(f, "--zz--");
    fclose(f);
    CHECK_ERR(http_mp_parse((const uint8_t *)many, ml, "zz", &p, &n), PERR_TOO_LARGE);
    free(many);
    /* a preamble before the first delimiter is skipped; an empty form is fine */
    const char *pre = "preamble\r\n--zz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--zz--";
    REQUIRE_OK(http_mp_parse((const uint8_t *)pre, strlen(pre), "zz", &p, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_STR(p[0].name, "a");
    free(p);
    REQUIRE_OK(http_mp_parse((const uint8_t *)"--zz--", 6, "zz", &p, &n));
    CHECK_EQ_INT(n, 0);
    free(p);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* Every prefix and 20 000 mutations: parse or fail with a message; parts stay in the body. */
static void test_truncations_and_mutations(void) {
    uint8_t file[64];
    memset(file, 'z', sizeof file);
    size_t len;
    char *body = form(&len, file, sizeof file);
    int fails = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *c = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        memcpy(c, body, cut);
        http_part *p = NULL;
        int n = 0;
        int rc = http_mp_parse(c, cut, B, &p, &n);
        if (rc) { fails++; CHECK(perr_msg()[0]); }
        for (int i = 0; i < n; i++) CHECK(p[i].data >= c && p[i].data + p[i].len <= c + cut);
        free(p);
        free(c);
    }
    CHECK(fails > (int)len / 2); /* a cut body misses its closing delimiter */
    for (int it = 0; it < 20000; it++) {
        uint8_t *c = malloc(len);
        memcpy(c, body, len);
        int k = 1 + (int)(next() % 4);
        for (int j = 0; j < k; j++) {
            size_t at = next() % len;
            static const uint8_t pick[] = {'\r', '\n', '-', '"', ';', '=', 0, 'x'};
            c[at] = (next() & 1) ? pick[next() % sizeof pick] : (uint8_t)next();
        }
        size_t l = len - (next() % 3 == 0 ? next() % len : 0);
        http_part *p = NULL;
        int n = 0;
        int rc = http_mp_parse(c, l, B, &p, &n);
        if (rc) CHECK(perr_msg()[0]);
        for (int i = 0; i < n; i++) CHECK(p[i].data >= c && p[i].data + p[i].len <= c + l);
        free(p);
        free(c);
    }
    free(body);
}

static void test_base64(void) {
    for (size_t n = 0; n < 40; n++) {
        uint8_t in[40];
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)(next());
        http_buf b = {0};
        http_base64_encode(&b, in, n);
        CHECK_EQ_INT(b.len, (n + 2) / 3 * 4);
        uint8_t *out = NULL;
        size_t ol = 0;
        CHECK_OK(http_base64_decode(b.p ? b.p : "", b.len, &out, &ol));
        CHECK_EQ_INT(ol, n);
        CHECK(!n || !memcmp(in, out, n));
        free(out);
        http_buf_free(&b);
    }
    uint8_t *out = NULL;
    size_t ol = 0;
    CHECK_ERR(http_base64_decode("ab$d", 4, &out, &ol), PERR_INVALID);
    CHECK_ERR(http_base64_decode("abcde", 5, &out, &ol), PERR_INVALID);
    CHECK_OK(http_base64_decode("_-8", 3, &out, &ol)); /* URL-safe alphabet, no padding */
    CHECK(ol == 2 && out[0] == 0xff && out[1] == 0xef);
    free(out);
}

/* The packed map of a query string, as JSON, for comparison. */
static char *query_json(const char *q) {
    http_fields f;
    http_fields_init(&f);
    uint8_t *p = NULL;
    size_t n = 0;
    int rc = http_fields_from_query(&f, q);
    if (!rc) rc = http_fields_pack(&f, &p, &n);
    http_fields_free(&f);
    if (rc) return NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    http_buf b = {0};
    if (msgpack_unpack_next(&u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS) http_mp_to_json(&u.data, NULL, &b);
    msgpack_unpacked_destroy(&u);
    free(p);
    return b.p;
}

static void test_query_typing(void) {
    char *j = query_json("k=5&min_score=0.25&labels=a&labels=b%20c&meta.k1=v+1&where.x=y&include_self=true&text=a%2Bb&k=9&ids=3&ids=4");
    REQUIRE(j);
    CHECK_STR(j, "{\"k\":5,\"min_score\":0.25,\"labels\":[\"a\",\"b c\"],\"meta\":{\"k1\":\"v 1\"},\"where\":{\"x\":\"y\"},"
                 "\"include_self\":true,\"text\":\"a+b\",\"ids\":[3,4]}");
    free(j);
    CHECK(query_json("k=five") == NULL);
    CHECK(strstr(perr_msg(), "\"k\""));
    CHECK(query_json("id=-1") == NULL);
    CHECK(query_json("segments=maybe") == NULL);
    j = query_json("");
    CHECK_STR(j, "{}");
    free(j);
}

/* Empty keys and strings (MessagePack may give them a NULL pointer): found
 * by fuzz_http_body (UBSan: memcpy from NULL). */
static void test_empty_keys_and_strings(void) {
    cJSON *j = cJSON_Parse("{\"\": \"\", \"a\": \"\", \"k\": 1}");
    REQUIRE(j);
    http_fields f;
    http_fields_init(&f);
    uint8_t *p = NULL;
    size_t n = 0;
    CHECK_OK(http_fields_from_json(&f, j));
    CHECK_OK(http_fields_pack(&f, &p, &n));
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    http_buf b = {0};
    if (msgpack_unpack_next(&u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS) http_mp_to_json(&u.data, NULL, &b);
    CHECK_STR(b.p, "{\"\":\"\",\"a\":\"\",\"k\":1}");
    http_buf_free(&b);
    msgpack_unpacked_destroy(&u);
    free(p);
    http_fields_free(&f);
    cJSON_Delete(j);
}

static void test_json_strings(void) {
    http_buf b = {0};
    const char s[] = "a\"\\\n\x01<\xff\xc3\xa9";
    http_buf_json_str(&b, s, sizeof s - 1);
    CHECK_STR(b.p, "\"a\\\"\\\\\\n\\u0001\\u003c\\ufffd\xc3\xa9\"");
    http_buf_free(&b);
}

int main(void) {
    T_RUN(test_parse_real_form);
    T_RUN(test_boundary_header);
    T_RUN(test_malformed);
    T_RUN(test_truncations_and_mutations);
    T_RUN(test_base64);
    T_RUN(test_query_typing);
    T_RUN(test_json_strings);
    T_RUN(test_empty_keys_and_strings);
    return t_done();
}
