/* Hostile and broken inputs for pe_image / pe_media: each must give a clear
 * error with the right perr code, no crash, bounded memory, no blocking.
 * Every file is generated here. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

static char *g_dir;
static float g_out[3 * 64 * 64];

static char *tmp(const char *name) { return t_path("%s/%s", g_dir, name); }

static char *fixture(const char *name) { return t_path("%s/tiny-a/images/%s", t_fixtures(), name); }

/* Preprocessing path must fail with code and a message containing want
 * (and the file name). */
static void expect_fail(const char *path, int code, const char *want, int line) {
    perr_clear();
    int rc = pe_image_preprocess_file(path, 64, NULL, g_out, NULL);
    const char *m = perr_msg();
    if (rc != code)
        t_fail(__FILE__, line, "%s -> %s, expected %s (%s)", path, perr_name(rc), perr_name(code), m);
    else if (want && !strstr(m, want))
        t_fail(__FILE__, line, "%s: message \"%s\" lacks \"%s\"", path, m, want);
    else if (!strstr(m, path))
        t_fail(__FILE__, line, "%s: message \"%s\" does not name the file", path, m);
    else
        fprintf(stderr, "  %-4s %s\n", perr_name(rc), m);
}
#define EXPECT_FAIL(p, code, want) expect_fail(p, code, want, __LINE__)

static void write_or_fail(const char *path, const void *d, size_t n) {
    if (t_write_file(path, d, n)) t_fail(__FILE__, __LINE__, "cannot write %s", path);
}

/* ---- bombs ---- */

static void test_gif_bomb(void) {
    /* 22-byte GIF: header, screen 65535x65535, one frame 65535x65535, no data */
    static const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0,
                                  0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK_EQ_INT(sizeof gif, 22);
    char *p = tmp("bomb.gif");
    write_or_fail(p, gif, sizeof gif);
    EXPECT_FAIL(p, PERR_TOO_LARGE, "65535x65535 exceeds the 100 MP limit");
    /* also with a frame body and trailer, and 20000x20000 (1.6 GB "black image") */
    static const uint8_t gif2[] = {'G', 'I', 'F', '8', '9', 'a', 0x20, 0x4E, 0x20, 0x4E, 0, 0, 0,
                                   0x2C, 0, 0, 0, 0, 0x20, 0x4E, 0x20, 0x4E, 0, 2, 2, 0x4C, 0x01, 0, 0x3B};
    write_or_fail(p, gif2, sizeof gif2);
    EXPECT_FAIL(p, PERR_TOO_LARGE, "20000x20000");
    free(p);
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }

/* A PNG whose IHDR (valid CRC) claims w x h, with a tiny IDAT. */
static size_t make_png(uint8_t *b, uint32_t w, uint32_t h) {
    size_t n = 0;
    memcpy(b, "\x89PNG\r\n\x1A\n", 8), n = 8;
    put32(b + n, 13), memcpy(b + n + 4, "IHDR", 4);
    put32(b + n + 8, w), put32(b + n + 12, h);
    b[n + 16] = 8, b[n + 17] = 2, b[n + 18] = 0, b[n + 19] = 0, b[n + 20] = 0;
    put32(b + n + 21, (uint32_t)crc32(0, b + n + 4, 17));
    n += 25;
    uint8_t raw[64] = {0}, z[128];
    uLongf zn = sizeof z;
    compress(z, &zn, raw, sizeof raw);
    put32(b + n, (uint32_t)zn), memcpy(b + n + 4, "IDAT", 4), memcpy(b + n + 8, z, zn);
    put32(b + n + 8 + zn, (uint32_t)crc32(0, b + n + 4, 4 + zn));
    n += 12 + zn;
    put32(b + n, 0), memcpy(b + n + 4, "IEND", 4), put32(b + n + 8, (uint32_t)crc32(0, b + n + 4, 4));
    return n + 12;
}

static void test_png_bomb(void) {
    uint8_t b[256];
    size_t n = make_png(b, 100000, 100000);
    char *p = tmp("bomb.png");
    write_or_fail(p, b, n);
    EXPECT_FAIL(p, PERR_TOO_LARGE, "100000x100000 exceeds the 100 MP limit");
    /* within the pixel limit but over the side limit */
    n = make_png(b, 40000, 100);
    write_or_fail(p, b, n);
    EXPECT_FAIL(p, PERR_TOO_LARGE, "side limit");
    /* 9000x9000 (81 MP, allowed) with 64 bytes of data: truncated, quickly */
    n = make_png(b, 9000, 9000);
    write_or_fail(p, b, n);
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    EXPECT_FAIL(p, PERR_DECODE, "PNG");
    gettimeofday(&t1, NULL);
    fprintf(stderr, "  (%.2f s)\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_usec - t0.tv_usec) / 1e6);
    /* the buffer path refuses the same way */
    n = make_png(b, 100000, 100000);
    perr_clear();
    CHECK_ERR(pe_image_preprocess_buffer(b, n, "upload-7", 64, NULL, g_out, NULL), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "upload-7") != NULL);
    free(p);
}

/* rocket.jpg with its SOF0 frame size patched. */
static void test_jpeg_bomb(void) {
    char *src = fixture("rocket.jpg");
    size_t n;
    uint8_t *j = t_read_file(src, &n);
    free(src);
    REQUIRE(j);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n; i++)
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC2)) { sof = i; break; }
    REQUIRE(sof);
    char *p = tmp("bomb.jpg");
    j[sof + 5] = 0xFD, j[sof + 6] = 0xE8, j[sof + 7] = 0xFD, j[sof + 8] = 0xE8; /* 65000x65000 */
    write_or_fail(p, j, n);
    EXPECT_FAIL(p, PERR_TOO_LARGE, "65000x65000 exceeds the 100 MP limit");
    j[sof + 5] = 0x1F, j[sof + 6] = 0x40, j[sof + 7] = 0x1F, j[sof + 8] = 0x40; /* 8000x8000 */
    write_or_fail(p, j, n);
    /* Its scan data ends early but the file ends with EOI: libjpeg warns
     * "premature end of data segment" and fills grey, like Pillow does;
     * only fail_on=warning would refuse it (and many good photos with it).
     * It must be quick and small. */
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    perr_clear();
    int rc = pe_image_preprocess_file(p, 64, NULL, g_out, NULL);
    gettimeofday(&t1, NULL);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_usec - t0.tv_usec) / 1e6;
    /* (time printed, not checked: this machine is shared) */
    fprintf(stderr, "  8000x8000 JPEG with 110 KB of data -> %s in %.2f s %s\n", perr_name(rc), s, perr_msg());
    CHECK(rc == PERR_OK || rc == PERR_DECODE);
    /* a lower limit refuses it before decoding */
    pe_image_limits lim;
    pe_image_limits_default(&lim);
    lim.max_pixels = 50 * 1000000;
    perr_clear();
    CHECK_ERR(pe_image_preprocess_file(p, 64, &lim, g_out, NULL), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "50 MP") != NULL);
    /* the file-size limit */
    lim.max_file_bytes = 1000;
    CHECK_ERR(pe_image_preprocess_file(p, 64, &lim, g_out, NULL), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "file limit") != NULL);
    free(p);
    free(j);
}

/* ---- truncation ---- */

static void truncations(const char *name, const char *ext) {
    char *src = fixture(name);
    size_t n;
    uint8_t *d = t_read_file(src, &n);
    free(src);
    REQUIRE(d);
    const double fr[] = {0.002, 0.05, 0.3, 0.6, 0.95};
    for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) {
        size_t cut = (size_t)(n * fr[i]);
        char *p = t_path("%s/trunc_%zu.%s", g_dir, cut, ext);
        write_or_fail(p, d, cut);
        EXPECT_FAIL(p, PERR_DECODE, NULL);
        /* the message says what happened */
        const char *m = perr_msg();
        if (!strstr(m, "truncated") && !strstr(m, "corrupt"))
            t_fail(__FILE__, __LINE__, "%s: vague message \"%s\"", p, m);
        free(p);
    }
    /* the last 2 bytes (JPEG EOI / part of PNG IEND) */
    char *p = t_path("%s/trunc_end.%s", g_dir, ext);
    write_or_fail(p, d, n - 2);
    perr_clear();
    int rc = pe_image_preprocess_file(p, 64, NULL, g_out, NULL);
    fprintf(stderr, "  %s minus 2 bytes -> %s %s\n", name, perr_name(rc), perr_msg());
    CHECK(rc == PERR_OK || rc == PERR_DECODE);
    free(p);
    free(d);
}

static void test_truncated_jpeg(void) { truncations("rocket.jpg", "jpg"); }
static void test_truncated_png(void) { truncations("coffee.png", "png"); }

static void test_corrupt_png_crc(void) {
    char *src = fixture("coffee.png");
    size_t n;
    uint8_t *d = t_read_file(src, &n);
    free(src);
    REQUIRE(d);
    d[n / 2] ^= 0x5A; /* inside IDAT: CRC and zlib stream broken */
    char *p = tmp("badcrc.png");
    write_or_fail(p, d, n);
    EXPECT_FAIL(p, PERR_DECODE, "PNG");
    free(p);
    free(d);
}

/* ---- not images ---- */

static void test_not_images(void) {
    char *p = tmp("random.jpg");
    uint8_t r[4096];
    srand(7);
    for (size_t i = 0; i < sizeof r; i++) r[i] = (uint8_t)rand();
    r[0] = 0x13; /* not a signature by chance */
    write_or_fail(p, r, sizeof r);
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "not an image");
    free(p);

    p = tmp("page.jpg");
    const char *html = "<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n";
    write_or_fail(p, html, strlen(html));
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "HTML document");
    free(p);

    p = tmp("empty.jpg");
    write_or_fail(p, "", 0);
    EXPECT_FAIL(p, PERR_FORMAT, "empty file");
    free(p);

    p = tmp("vector.png");
    const char *svg = "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
                      "<image href=\"http://127.0.0.1:9/x.png\"/></svg>\n";
    write_or_fail(p, svg, strlen(svg));
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "SVG is not accepted");
    free(p);

    p = tmp("doc.jpg");
    write_or_fail(p, "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n", 15);
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "PDF is not accepted");
    free(p);

    /* A BMP is recognised and refused by name. */
    uint8_t bmp[58] = {'B', 'M', 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0};
    p = tmp("old.bmp");
    write_or_fail(p, bmp, sizeof bmp);
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "bmp");
    free(p);
}

static void test_not_regular_files(void) {
    /* a directory named like an image */
    char *p = tmp("dir.jpg");
    REQUIRE(mkdir(p, 0755) == 0);
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "is a directory");
    pe_media_kind k;
    CHECK_ERR(pe_media_sniff_file(p, &k), PERR_UNSUPPORTED);
    free(p);

    /* a FIFO with no writer: must not block */
    p = tmp("pipe.jpg");
    REQUIRE(mkfifo(p, 0644) == 0);
    alarm(20); /* a hang kills the test instead of the suite */
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "is a FIFO");
    CHECK_ERR(pe_media_sniff_file(p, &k), PERR_UNSUPPORTED);
    void *j;
    size_t jl;
    CHECK_ERR(pe_image_thumbnail_jpeg(p, 64, &j, &jl), PERR_UNSUPPORTED);
    alarm(0);
    free(p);

    /* a character device */
    EXPECT_FAIL("/dev/zero", PERR_UNSUPPORTED, "character device");

    /* missing file */
    p = tmp("missing.jpg");
    EXPECT_FAIL(p, PERR_NOT_FOUND, "No such file");
    free(p);

    /* unreadable file: root reads everything, so only as a normal user */
    if (geteuid() != 0) {
        char *src = fixture("coffee.png");
        size_t n;
        uint8_t *d = t_read_file(src, &n);
        p = tmp("secret.png");
        write_or_fail(p, d, n);
        chmod(p, 0);
        EXPECT_FAIL(p, PERR_IO, "Permission denied");
        free(p);
        free(d);
        free(src);
    } else {
        fprintf(stderr, "  (running as root: permission check not applicable)\n");
    }
}

/* ---- videos never reach libvips ---- */

static void test_videos_refused(void) {
    /* hand-written ftyp + empty moov: an MP4 header */
    static const uint8_t mp4[] = {0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 2, 0,
                                  'i', 's', 'o', 'm', 'i', 's', 'o', '2', 'a', 'v', 'c', '1', 'm', 'p', '4', '1',
                                  0, 0, 0, 8, 'm', 'o', 'o', 'v'};
    CHECK_EQ_INT(pe_media_sniff(mp4, sizeof mp4), PE_MEDIA_VIDEO);
    char *p = tmp("clip.jpg");
    write_or_fail(p, mp4, sizeof mp4);
    pe_media_kind k = PE_MEDIA_UNKNOWN;
    CHECK_OK(pe_media_sniff_file(p, &k));
    CHECK_EQ_INT(k, PE_MEDIA_VIDEO);
    EXPECT_FAIL(p, PERR_UNSUPPORTED, "mp4 video, not a still image");
    free(p);

    static const uint8_t webm[] = {0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81,
                                   0x01, 0x42, 0xF2, 0x81, 0x04, 0x42, 0xF3, 0x81, 0x08, 0x42, 0x82, 0x84,
                                   'w', 'e', 'b', 'm'};
    const char *f;
    CHECK_EQ_INT(pe_media_sniff_format(webm, sizeof webm, &f), PE_MEDIA_VIDEO);
    CHECK_STR(f, "webm");

    /* a real MP4 from the ffmpeg CLI, when it is installed */
    if (access("/usr/bin/ffmpeg", X_OK) == 0) {
        p = tmp("real.mp4");
        char *cmd = t_path("/usr/bin/ffmpeg -loglevel error -y -f lavfi -i testsrc=size=64x48:rate=5 "
                           "-t 1 -c:v mpeg4 -f mp4 '%s' </dev/null", p);
        int st = system(cmd);
        free(cmd);
        CHECK_EQ_INT(st, 0);
        if (st == 0) {
            CHECK_OK(pe_media_sniff_file(p, &k));
            CHECK_EQ_INT(k, PE_MEDIA_VIDEO);
            EXPECT_FAIL(p, PERR_UNSUPPORTED, "video");
            /* renamed to .png it is still a video */
            char *q = tmp("real_video.png");
            CHECK(rename(p, q) == 0);
            EXPECT_FAIL(q, PERR_UNSUPPORTED, "video");
            free(q);
        }
        free(p);
    } else {
        fprintf(stderr, "  (no ffmpeg CLI: only the hand-written MP4/WebM headers were checked)\n");
    }
}

static long max_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static void test_memory_bounded(void) {
    long mb = max_rss_mb();
    fprintf(stderr, "  peak RSS after all hostile files: %ld MB\n", mb);
#if defined(__SANITIZE_ADDRESS__)
    CHECK(mb < 1500);
#else
    CHECK(mb < 400);
#endif
}

int main(void) {
    g_dir = t_tmpdir("image_hostile");
    if (!g_dir) return 1;
    T_RUN(test_gif_bomb);
    T_RUN(test_png_bomb);
    T_RUN(test_jpeg_bomb);
    T_RUN(test_truncated_jpeg);
    T_RUN(test_truncated_png);
    T_RUN(test_corrupt_png_crc);
    T_RUN(test_not_images);
    T_RUN(test_not_regular_files);
    T_RUN(test_videos_refused);
    T_RUN(test_memory_bounded);
    t_rmtree(g_dir);
    free(g_dir);
    return t_done();
}
