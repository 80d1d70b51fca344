/* pe_video on real videos made here with the ffmpeg CLI from the photos of
 * pe-fixtures/tiny-a/images, and on hostile files made from them.
 *
 * The main clip shows five photos for 2 s each (10 s, 25 fps, GOP 30), so
 * the photo shown at time t is known: frames sampled at t are compared with
 * that photo scaled by ffmpeg itself (mean absolute difference), and must
 * be closer to it than to every other photo.
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_video.h"
#include "encoder/pe_video_int.h"
#include "tests/common/testlib.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPHOTO 5
static const char *const k_photos[NPHOTO] = {"astronaut.png", "camera.png", "chelsea.png",
                                             "coffee.png", "rocket.jpg"};
static char *g_dir;   /* per-run scratch directory */
static int g_ready;   /* fixtures were made */

static char *tmp(const char *name) { return t_path("%s/%s", g_dir, name); }

#define FF "ffmpeg -hide_banner -loglevel error -nostdin -y -threads 1"

/* The five-photo clip: inputs and filter graph for one encoding. */
static int make_clip(const char *out, const char *vf_extra, const char *codec, const char *fps,
                     double seg, int audio) {
    char inputs[4096] = "", graph[4096] = "", cat[256] = "";
    for (int i = 0; i < NPHOTO; i++) {
        char b[1024];
        snprintf(b, sizeof b, " -loop 1 -framerate %s -t %g -i %s/tiny-a/images/%s", fps, seg,
                 t_fixtures(), k_photos[i]);
        strcat(inputs, b);
        snprintf(b, sizeof b, "[%d]scale=320:240,setsar=1,format=rgb24[v%d];", i, i);
        strcat(graph, b);
        snprintf(b, sizeof b, "[v%d]", i);
        strcat(cat, b);
    }
    return t_sh(FF "%s%s -filter_complex \"%s%sconcat=n=%d:v=1%s[v]\" -map \"[v]\"%s %s %s", inputs,
              audio ? " -f lavfi -t 10 -i sine=frequency=440:sample_rate=16000" : "", graph, cat,
              NPHOTO, vf_extra, audio ? " -map 5:a -c:a aac -b:a 32k" : "", codec, out);
}

/* Reference pixels: photo i as the clip shows it, scaled by ffmpeg to w x h
 * (rot: transposed clockwise after scaling). Caller frees. */
static uint8_t *ref_rgb(int i, int w, int h, int rot) {
    char name[128];
    snprintf(name, sizeof name, "ref_%d_%dx%d_%d.rgb", i, w, h, rot);
    char *p = tmp(name);
    size_t len = 0;
    uint8_t *px = t_read_file(p, &len);
    if (!px) {
        int sw = rot ? h : w, shh = rot ? w : h;
        if (t_sh(FF " -i %s/tiny-a/images/%s -vf \"scale=320:240,format=rgb24,scale=%d:%d:flags=area%s\""
                  " -f rawvideo -pix_fmt rgb24 %s",
               t_fixtures(), k_photos[i], sw, shh, rot ? ",transpose=1" : "", p) == 0)
            px = t_read_file(p, &len);
    }
    free(p);
    if (px && len != (size_t)w * h * 3) {
        free(px);
        px = NULL;
    }
    return px;
}

static double mad(const uint8_t *a, size_t astride, const uint8_t *b, int w, int h) {
    double s = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w * 3; x++) s += abs((int)a[(size_t)y * astride + x] - b[(size_t)y * w * 3 + x]);
    return s / ((double)w * h * 3);
}

/* ---- collecting frames ------------------------------------------------- */

typedef struct got {
    int n;
    int index[64];
    double t[64];
    int w[64], h[64];
    int photo[64];      /* best-matching photo */
    double diff[64];    /* its mean abs diff */
    double second[64];  /* the next best */
    int rot;
    uint32_t crc[64];
} got;

static uint32_t hash_px(const uint8_t *rgb, int w, int h, size_t stride) {
    uint32_t x = 2166136261u;
    for (int y = 0; y < h; y++)
        for (int i = 0; i < w * 3; i++) x = (x ^ rgb[(size_t)y * stride + i]) * 16777619u;
    return x;
}

static int collect(void *user, int index, double t, const uint8_t *rgb, int w, int h,
                   size_t stride) {
    got *g = user;
    if (g->n >= 64) return PERR_INTERNAL;
    int k = g->n++;
    g->index[k] = index;
    g->t[k] = t;
    g->w[k] = w;
    g->h[k] = h;
    g->crc[k] = hash_px(rgb, w, h, stride);
    g->photo[k] = -1;
    g->diff[k] = g->second[k] = 1e9;
    for (int i = 0; i < NPHOTO; i++) {
        uint8_t *r = ref_rgb(i, w, h, g->rot);
        if (!r) continue;
        double d = mad(rgb, stride, r, w, h);
        free(r);
        if (d < g->diff[k]) {
            g->second[k] = g->diff[k];
            g->diff[k] = d;
            g->photo[k] = i;
        } else if (d < g->second[k]) {
            g->second[k] = d;
        }
    }
    return 0;
}

static int count_only(void *user, int index, double t, const uint8_t *rgb, int w, int h,
                      size_t stride) {
    (*(int *)user)++;
    return 0;
}

/* ---- byte surgery on MP4 boxes ------------------------------------------ */

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static void wr32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v; }

/* Offset of the first box of type `type` (its size field), or -1. Boxes
 * are searched by their 4CC; fine for the files made above. */
static long find_box(const uint8_t *b, size_t n, const char *type, size_t from) {
    for (size_t i = from + 4; i + 4 <= n; i++)
        if (!memcmp(b + i, type, 4) && rd32(b + i - 4) >= 8) return (long)i - 4;
    return -1;
}

static char *write_copy(const char *name, const uint8_t *b, size_t n) {
    char *p = tmp(name);
    if (t_write_file(p, b, n)) {
        free(p);
        return NULL;
    }
    return p;
}

/* ---- fixtures ------------------------------------------------------------ */

static int make_fixtures(void) {
    g_dir = t_tmpdir("video");
    if (!g_dir) return -1;
    char *p;
    int rc = 0;
#define MK(name, expr) do { p = tmp(name); rc |= (expr); free(p); } while (0)
    MK("clip.mp4", make_clip(p, "", "-c:v libx264 -preset veryfast -g 30 -pix_fmt yuv420p", "25", 2, 1));
    MK("faststart.mp4", make_clip(p, "", "-c:v libx264 -preset veryfast -g 30 -pix_fmt yuv420p -movflags +faststart", "25", 2, 0));
    MK("clip.webm", make_clip(p, "", "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 800k -g 30 -pix_fmt yuv420p", "25", 2, 0));
    MK("clip.mkv", make_clip(p, "", "-c:v mpeg4 -q:v 2 -g 30 -pix_fmt yuv420p", "25", 2, 0));
    MK("rot90.mov", make_clip(p, "", "-c:v libx264 -preset veryfast -g 30 -pix_fmt yuv420p", "25", 2, 0));
    MK("clip.gif", make_clip(p, ",split[a][b];[a]palettegen=max_colors=256[pal];[b][pal]paletteuse=dither=none", "-loop 0", "5", 2, 0));
    MK("clip.webp", make_clip(p, "", "-c:v libwebp_anim -lossless 0 -q:v 90 -loop 0", "5", 2, 0));
    MK("still.webp", t_sh(FF " -i %s/tiny-a/images/chelsea.png %s", t_fixtures(), p));
    MK("audio.m4a", t_sh(FF " -f lavfi -t 3 -i sine=frequency=440:sample_rate=16000 -c:a aac %s", p));
    /* One second of frames (25) for the lying-duration files. */
    MK("short.mp4", t_sh(FF " -loop 1 -framerate 25 -t 1 -i %s/tiny-a/images/chelsea.png -vf scale=160:120,setsar=1"
                          " -c:v libx264 -preset veryfast -pix_fmt yuv420p %s", t_fixtures(), p));
    {   /* Two frames, 1 s apart: the second gets a 10-hour stts delta below. */
        char *list = tmp("list.txt");
        FILE *f = fopen(list, "w");
        if (f) {
            fprintf(f, "file '%s/tiny-a/images/chelsea.png'\nduration 1\nfile '%s/tiny-a/images/coffee.png'\nduration 1\n",
                    t_fixtures(), t_fixtures());
            fclose(f);
        }
        MK("twoframes.mp4", t_sh(FF " -f concat -safe 0 -i %s -vf scale=320:240,setsar=1,format=yuv420p -vsync vfr"
                                  " -c:v libx264 -preset veryfast %s", list, p));
        free(list);
    }
#undef MK
    /* FFmpeg 5.1's CLI ignores rotate metadata: write the display matrix
     * of a 90-degree clockwise rotation into tkhd as its mov muxer does
     * (ffprobe then reports rotation -90, ffplay shows it upright). */
    p = tmp("rot90.mov");
    size_t len = 0;
    uint8_t *b = t_read_file(p, &len);
    long tk = b ? find_box(b, len, "tkhd", 0) : -1;
    if (tk > 0 && b[tk + 8] == 0) {
        const uint32_t m[9] = {0, 1u << 16, 0, 0xFFFF0000u, 0, 0, 240u << 16, 0, 1u << 30};
        for (int i = 0; i < 9; i++) wr32(b + tk + 48 + 4 * i, m[i]);
        rc |= t_write_file(p, b, len);
    } else {
        rc = -1;
    }
    free(b);
    free(p);
    return rc;
}

/* ---- tests: formats and content ---------------------------------------- */

typedef struct clip_case {
    const char *file, *codec, *container;
    double fps, dur_tol, max_diff;
    int rot;
} clip_case;

static void check_clip(const clip_case *c) {
    char *p = tmp(c->file);
    pe_video *v = NULL;
    int rc = pe_video_open(p, NULL, &v);
    if (rc) t_fail(__FILE__, __LINE__, "%s: %s", c->file, perr_msg());
    free(p);
    if (rc) return;
    const pe_video_info *in = pe_video_info_get(v);
    CHECK_STR(in->codec, c->codec);
    CHECK_STR(in->container, c->container);
    if (fabs(in->duration - 10) > c->dur_tol)
        t_fail(__FILE__, __LINE__, "%s: duration %.4f", c->file, in->duration);
    if (fabs(in->fps - c->fps) > 0.01) t_fail(__FILE__, __LINE__, "%s: fps %.4f", c->file, in->fps);
    CHECK_EQ_INT(in->rotation, c->rot);
    CHECK_EQ_INT(in->width, c->rot ? 240 : 320);
    CHECK_EQ_INT(in->height, c->rot ? 320 : 240);
    CHECK_EQ_INT(in->truncated, 0);

    /* Times inside each photo's 2 s, away from the cuts, unsorted, one
     * repeated. */
    const double times[] = {7.1, 0.3, 1.7, 3.0, 5.5, 9.3, 0.3, 4.4};
    const int n = 8;
    got g;
    memset(&g, 0, sizeof g);
    g.rot = c->rot;
    rc = pe_video_sample(v, times, n, 160, collect, &g);
    if (rc) t_fail(__FILE__, __LINE__, "%s: sample: %s", c->file, perr_msg());
    CHECK_EQ_INT(g.n, n);
    for (int k = 0; k < g.n; k++) {
        int i = g.index[k];
        double want_t = times[i];
        if (k > 0) CHECK(g.t[k] >= g.t[k - 1]); /* delivered in time order */
        /* The frame shown at t started at most one frame before it. */
        if (!(g.t[k] <= want_t + 1e-3 && g.t[k] > want_t - 1.0 / c->fps - 1e-3))
            t_fail(__FILE__, __LINE__, "%s: t=%.3f delivered frame at %.4f", c->file, want_t, g.t[k]);
        CHECK_EQ_INT(g.w[k], c->rot ? 120 : 160);
        CHECK_EQ_INT(g.h[k], c->rot ? 160 : 120);
        int photo = (int)(want_t / 2);
        if (g.photo[k] != photo || g.diff[k] > c->max_diff || g.second[k] < 3 * g.diff[k])
            t_fail(__FILE__, __LINE__, "%s: t=%.2f shows photo %d (diff %.2f, next %.2f), expected %d",
                   c->file, want_t, g.photo[k], g.diff[k], g.second[k], photo);
    }
    /* The same time twice gives the same pixels. */
    for (int a = 0; a < g.n; a++)
        for (int b = a + 1; b < g.n; b++)
            if (times[g.index[a]] == times[g.index[b]]) CHECK(g.crc[a] == g.crc[b]);
    CHECK(in->frames_decoded > 0 && in->frames_decoded < 260);
    pe_video_close(v);
}

static void test_mp4_h264(void) {
    REQUIRE(g_ready);
    clip_case c = {"clip.mp4", "h264", "mp4", 25, 1e-6, 6, 0};
    check_clip(&c);
}
static void test_webm_vp9(void) {
    REQUIRE(g_ready);
    clip_case c = {"clip.webm", "vp9", "webm", 25, 1e-3, 8, 0};
    check_clip(&c);
}
static void test_mkv_mpeg4(void) {
    REQUIRE(g_ready);
    clip_case c = {"clip.mkv", "mpeg4", "matroska", 25, 1e-3, 6, 0};
    check_clip(&c);
}
static void test_mov_rotated(void) {
    REQUIRE(g_ready);
    clip_case c = {"rot90.mov", "h264", "mov", 25, 1e-6, 6, 90};
    check_clip(&c);
}
static void test_gif(void) {
    REQUIRE(g_ready);
    clip_case c = {"clip.gif", "gif", "gif", 5, 1e-3, 12, 0};
    check_clip(&c);
}
static void test_animated_webp(void) {
    REQUIRE(g_ready);
    /* libwebp_anim merges identical frames: five frames of 2 s each. */
    clip_case c = {"clip.webp", "webp", "webp", 0.5, 1e-6, 8, 0};
    check_clip(&c);
}

/* Targets close together decode on; targets far apart seek; a second
 * call going back in time works. */
static void test_seek_and_forward(void) {
    REQUIRE(g_ready);
    char *p = tmp("clip.mp4");
    pe_video *v = NULL;
    int rc = pe_video_open(p, NULL, &v);
    free(p);
    REQUIRE(rc == 0);
    int cnt = 0, seeks, reopens, fb;
    const double close_t[] = {0.0, 0.2, 0.4};
    CHECK_OK(pe_video_sample(v, close_t, 3, 64, count_only, &cnt));
    pe_video_counters(v, &seeks, &reopens, &fb);
    CHECK_EQ_INT(seeks, 0);
    CHECK_EQ_INT(cnt, 3);
    int64_t before = pe_video_info_get(v)->frames_decoded;
    const double far_t[] = {9.5};
    CHECK_OK(pe_video_sample(v, far_t, 1, 64, count_only, &cnt));
    pe_video_counters(v, &seeks, &reopens, &fb);
    CHECK_EQ_INT(seeks, 1);
    /* A seek to the keyframe at 9.6 - 0.6 = 8.4 s, not 9.5 s of decoding. */
    CHECK(pe_video_info_get(v)->frames_decoded - before <= 40);
    got g;
    memset(&g, 0, sizeof g);
    const double back[] = {2.5};
    CHECK_OK(pe_video_sample(v, back, 1, 160, collect, &g));
    CHECK_EQ_INT(g.n, 1);
    CHECK_EQ_INT(g.photo[0], 1);
    CHECK_EQ_INT(reopens, 0);
    CHECK_EQ_INT(fb, 0);
    pe_video_close(v);
}

/* A second call going back in time, in every format (GIF cannot seek:
 * it reopens; WebP reloads its sequential pages). */
static void test_back_in_time(void) {
    REQUIRE(g_ready);
    const char *files[] = {"clip.mp4", "clip.webm", "clip.mkv", "rot90.mov", "clip.gif", "clip.webp"};
    for (int f = 0; f < 6; f++) {
        char *p = tmp(files[f]);
        pe_video *v = NULL;
        int rc = pe_video_open(p, NULL, &v);
        free(p);
        if (rc) {
            t_fail(__FILE__, __LINE__, "%s: %s", files[f], perr_msg());
            continue;
        }
        got g;
        memset(&g, 0, sizeof g);
        g.rot = pe_video_info_get(v)->rotation;
        const double late = 9.3, early[2] = {5.5, 0.3};
        CHECK_OK(pe_video_sample(v, &late, 1, 160, collect, &g));
        CHECK_OK(pe_video_sample(v, early, 2, 160, collect, &g));
        CHECK_EQ_INT(g.n, 3);
        const int want[3] = {4, 0, 2};
        for (int k = 0; k < g.n && k < 3; k++)
            if (g.photo[k] != want[k])
                t_fail(__FILE__, __LINE__, "%s: frame %d shows photo %d, expected %d", files[f], k,
                       g.photo[k], want[k]);
        CHECK(pe_video_info_get(v)->frames_decoded < 300);
        pe_video_close(v);
    }
}

/* Times before the start and after the end give the first and last frame;
 * no frame is decoded twice for them. */
static void test_out_of_range_times(void) {
    REQUIRE(g_ready);
    char *p = tmp("clip.mp4");
    pe_video *v = NULL;
    int rc = pe_video_open(p, NULL, &v);
    free(p);
    REQUIRE(rc == 0);
    got g;
    memset(&g, 0, sizeof g);
    const double t[] = {-5, 1e9, 10.0, INFINITY};
    CHECK_OK(pe_video_sample(v, t, 4, 160, collect, &g));
    REQUIRE(g.n == 4);
    CHECK(g.t[0] == 0);
    CHECK_EQ_INT(g.photo[0], 0);
    for (int k = 1; k < 4; k++) {
        CHECK(fabs(g.t[k] - 9.96) < 1e-3);
        CHECK_EQ_INT(g.photo[k], 4);
    }
    const double nan_t = NAN;
    CHECK_ERR(pe_video_sample(v, &nan_t, 1, 160, collect, &g), PERR_INVALID);
    pe_video_close(v);
}

static void test_buffer_equals_file(void) {
    REQUIRE(g_ready);
    char *p = tmp("clip.webm");
    size_t len = 0;
    uint8_t *buf = t_read_file(p, &len);
    REQUIRE(buf);
    pe_video *a = NULL, *b = NULL;
    CHECK_OK(pe_video_open(p, NULL, &a));
    CHECK_OK(pe_video_open_buffer(buf, len, "upload.webm", NULL, &b));
    free(p);
    if (a && b) {
        const double t[] = {1.0, 6.1};
        got ga, gb;
        memset(&ga, 0, sizeof ga);
        memset(&gb, 0, sizeof gb);
        CHECK_OK(pe_video_sample(a, t, 2, 100, collect, &ga));
        CHECK_OK(pe_video_sample(b, t, 2, 100, collect, &gb));
        CHECK_EQ_INT(ga.n, 2);
        CHECK_EQ_INT(gb.n, 2);
        for (int k = 0; k < 2 && k < ga.n && k < gb.n; k++) {
            CHECK(ga.crc[k] == gb.crc[k]);
            CHECK(ga.t[k] == gb.t[k]);
            CHECK_EQ_INT(ga.w[k], 100);
            CHECK_EQ_INT(ga.h[k], 75);
        }
        CHECK(pe_video_info_get(a)->duration == pe_video_info_get(b)->duration);
    }
    pe_video_close(a);
    pe_video_close(b);
    /* Animated WebP from memory too. */
    p = tmp("clip.webp");
    uint8_t *wb = t_read_file(p, &len);
    free(p);
    pe_video *w = NULL;
    if (wb) {
        CHECK_OK(pe_video_open_buffer(wb, len, "upload.webp", NULL, &w));
        if (w) {
            got g;
            memset(&g, 0, sizeof g);
            const double t = 8.5;
            CHECK_OK(pe_video_sample(w, &t, 1, 160, collect, &g));
            CHECK_EQ_INT(g.photo[0], 4);
        }
        pe_video_close(w);
    }
    free(wb);
    free(buf);
}

static void test_full_size_and_threads(void) {
    REQUIRE(g_ready);
    char *p = tmp("clip.mp4");
    pe_video_limits lim;
    pe_video_limits_default(&lim);
    lim.threads = 2;
    pe_video *v = NULL;
    CHECK_OK(pe_video_open(p, &lim, &v));
    free(p);
    if (!v) return;
    got g;
    memset(&g, 0, sizeof g);
    const double t[] = {0.5, 6.5, 8.5};
    CHECK_OK(pe_video_sample(v, t, 3, 0, collect, &g));
    REQUIRE(g.n == 3);
    for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(g.w[k], 320);
        CHECK_EQ_INT(g.h[k], 240);
        CHECK_EQ_INT(g.photo[k], (int)(t[k] / 2));
    }
    pe_video_close(v);
}

/* ---- tests: limits ------------------------------------------------------ */

static void test_limits(void) {
    REQUIRE(g_ready);
    char *p = tmp("clip.mp4");
    pe_video_limits lim;
    pe_video *v = NULL;

    pe_video_limits_default(&lim);
    lim.max_pixels_per_frame = 320 * 240 - 1;
    CHECK_ERR(pe_video_open(p, &lim, &v), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "clip.mp4") && strstr(perr_msg(), "max_pixels_per_frame"));
    CHECK(v == NULL);

    pe_video_limits_default(&lim);
    lim.max_file_bytes = 1000;
    CHECK_ERR(pe_video_open(p, &lim, &v), PERR_TOO_LARGE);

    pe_video_limits_default(&lim);
    lim.max_duration = 5;
    CHECK_ERR(pe_video_open(p, &lim, &v), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "max_duration") != NULL);

    /* 10 frames of budget: t = 0.3 needs 8, t = 1.0 needs 26 (before its
     * keyframe at 1.2 s). */
    pe_video_limits_default(&lim);
    lim.max_frames_decoded = 10;
    CHECK_OK(pe_video_open(p, &lim, &v));
    if (v) {
        int cnt = 0;
        const double t[] = {0.3, 1.0};
        CHECK_ERR(pe_video_sample(v, t, 2, 64, count_only, &cnt), PERR_TOO_LARGE);
        CHECK(strstr(perr_msg(), "max_frames_decoded") != NULL);
        CHECK_EQ_INT(cnt, 1);
        CHECK(pe_video_info_get(v)->frames_decoded <= 11);
        pe_video_close(v);
        v = NULL;
    }
    pe_video_limits_default(&lim);
    lim.max_seconds_decoding = 1e-9;
    CHECK_ERR(pe_video_open(p, &lim, &v), PERR_TOO_LARGE);
    CHECK(strstr(perr_msg(), "max_seconds_decoding") != NULL);
    free(p);
}

/* ---- tests: hostile files ----------------------------------------------- */

/* Runs open (and, if it succeeds, sampling of 8 uniform times) with fd 2
 * redirected: nothing may be printed, and failures must name the file. */
static int open_quiet(const char *path, pe_video **out, int *printed) {
    fflush(stderr);
    char *errf = tmp("stderr.txt");
    int saved = dup(2);
    int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    int rc = pe_video_open(path, NULL, out);
    if (rc == 0) {
        double t[8];
        int cnt = 0;
        pe_video_uniform_times(pe_video_info_get(*out), 8, t);
        rc = pe_video_sample(*out, t, 8, 64, count_only, &cnt);
        if (rc == 0 && cnt != 8) rc = PERR_INTERNAL;
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct stat sb;
    *printed = stat(errf, &sb) == 0 ? (int)sb.st_size : -1;
    free(errf);
    return rc;
}

static void expect_refused(const char *path, int code, const char *what) {
    pe_video *v = NULL;
    int printed = 0;
    int rc = open_quiet(path, &v, &printed);
    if (rc != code)
        t_fail(__FILE__, __LINE__, "%s: got %s, expected %s (%s)", what, perr_name(rc), perr_name(code),
               perr_msg());
    else if (!strstr(perr_msg(), path))
        t_fail(__FILE__, __LINE__, "%s: message does not name the file: %s", what, perr_msg());
    if (printed != 0) t_fail(__FILE__, __LINE__, "%s: %d bytes printed to stderr", what, printed);
    pe_video_close(v);
}

static void test_not_videos(void) {
    REQUIRE(g_ready);
    char *p = tmp("empty.mp4");
    REQUIRE(t_write_file(p, "", 0) == 0);
    expect_refused(p, PERR_FORMAT, "zero-length file");
    free(p);

    uint8_t junk[65536];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 16);
    p = write_copy("garbage.mp4", junk, sizeof junk);
    REQUIRE(p);
    {
        pe_video *v = NULL;
        int printed = 0;
        int rc = open_quiet(p, &v, &printed);
        CHECK(rc == PERR_FORMAT || rc == PERR_UNSUPPORTED);
        CHECK(strstr(perr_msg(), p) != NULL);
        CHECK_EQ_INT(printed, 0);
        pe_video_close(v);
    }
    free(p);

    p = tmp("audio.m4a");
    expect_refused(p, PERR_UNSUPPORTED, "audio-only file");
    CHECK(strstr(perr_msg(), "no video stream") != NULL);
    free(p);

    p = t_path("%s/tiny-a/images/chelsea.png", t_fixtures());
    expect_refused(p, PERR_UNSUPPORTED, "PNG image");
    CHECK(strstr(perr_msg(), "still image") != NULL);
    free(p);
    p = t_path("%s/tiny-a/images/rocket.jpg", t_fixtures());
    expect_refused(p, PERR_UNSUPPORTED, "JPEG image");
    free(p);
    p = tmp("still.webp");
    expect_refused(p, PERR_UNSUPPORTED, "still WebP");
    free(p);

    /* A 30-byte GIF whose screen and frame claim 65535 x 65535: refused
     * from the header, nothing allocated for it. */
    static const uint8_t huge_gif[] = {'G', 'I', 'F', '8', '9', 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0,
                                       0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0,
                                       2, 2, 0x44, 0x01, 0, 0x3B};
    p = write_copy("huge.gif", huge_gif, sizeof huge_gif);
    REQUIRE(p);
    expect_refused(p, PERR_TOO_LARGE, "65535x65535 GIF");
    free(p);

    pe_video *v = NULL;
    CHECK_ERR(pe_video_open(g_dir, NULL, &v), PERR_INVALID);
    p = tmp("does-not-exist.mp4");
    CHECK_ERR(pe_video_open(p, NULL, &v), PERR_NOT_FOUND);
    free(p);
    p = tmp("fifo.mp4");
    if (mkfifo(p, 0600) == 0) CHECK_ERR(pe_video_open(p, NULL, &v), PERR_UNSUPPORTED);
    free(p);
    CHECK_ERR(pe_video_open_buffer(junk, 0, "empty upload", NULL, &v), PERR_FORMAT);
}

/* A file cut anywhere: a clear error or fewer frames, never a crash, never
 * a print, bounded work. */
static void truncations(const char *file, int faststart) {
    char *p = tmp(file);
    size_t len = 0;
    uint8_t *b = t_read_file(p, &len);
    free(p);
    REQUIRE(b && len > 4096);
    const size_t cuts[] = {1, 8, 100, 1000, 4096, len / 4, len / 2, len * 3 / 4, len - 1000, len - 1};
    int opened = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char name[64];
        snprintf(name, sizeof name, "cut_%zu_%s", cuts[i], file);
        char *c = write_copy(name, b, cuts[i]);
        REQUIRE(c);
        pe_video *v = NULL;
        int printed = 0;
        int rc = open_quiet(c, &v, &printed);
        if (printed) t_fail(__FILE__, __LINE__, "%s: printed %d bytes", name, printed);
        if (rc == 0) {
            opened++;
            const pe_video_info *in = pe_video_info_get(v);
            /* Opened: then it says what it delivers. */
            if (!(in->duration > 0 && in->duration <= 10.0 + 1e-6))
                t_fail(__FILE__, __LINE__, "%s: duration %.3f", name, in->duration);
            if (faststart && cuts[i] < len - 1000) CHECK(in->truncated);
        } else if (rc != PERR_FORMAT && rc != PERR_DECODE) {
            t_fail(__FILE__, __LINE__, "%s: %s (%s)", name, perr_name(rc), perr_msg());
        } else if (!strstr(perr_msg(), c)) {
            t_fail(__FILE__, __LINE__, "%s: message does not name the file: %s", name, perr_msg());
        }
        pe_video_close(v);
        free(c);
    }
    /* moov at the end: cuts before it do not open (the last byte or so
     * may still be spare); faststart: the later cuts open. */
    if (faststart) CHECK(opened >= 3);
    else CHECK(opened <= 2);
    free(b);
}

static void test_truncated_mp4(void) {
    REQUIRE(g_ready);
    truncations("clip.mp4", 0);
}
static void test_truncated_faststart_mp4(void) {
    REQUIRE(g_ready);
    truncations("faststart.mp4", 1);
    /* Half a faststart file: frames from the first half only. */
    char *p = tmp("faststart.mp4");
    size_t len = 0;
    uint8_t *b = t_read_file(p, &len);
    free(p);
    REQUIRE(b);
    pe_video *v = NULL;
    CHECK_OK(pe_video_open_buffer(b, len / 2, "half.mp4", NULL, &v));
    if (v) {
        const pe_video_info *in = pe_video_info_get(v);
        CHECK(in->truncated);
        CHECK(in->duration > 1 && in->duration < 9);
        CHECK(in->container_duration > 9.9);
        got g;
        memset(&g, 0, sizeof g);
        const double t[] = {0.5, 9.5};
        CHECK_OK(pe_video_sample(v, t, 2, 160, collect, &g));
        CHECK_EQ_INT(g.n, 2);
        CHECK_EQ_INT(g.photo[0], 0);
        CHECK(g.t[1] < in->duration);
        pe_video_close(v);
    }
    free(b);
}

static void test_truncated_others(void) {
    REQUIRE(g_ready);
    const char *files[] = {"clip.webm", "clip.mkv", "clip.gif", "clip.webp", "rot90.mov"};
    for (int f = 0; f < 5; f++) {
        char *p = tmp(files[f]);
        size_t len = 0;
        uint8_t *b = t_read_file(p, &len);
        free(p);
        REQUIRE(b);
        const size_t cuts[] = {10, 200, len / 3, len * 2 / 3, len - 7};
        for (int i = 0; i < 5; i++) {
            char label[64];
            snprintf(label, sizeof label, "cut_%zu_%s", cuts[i], files[f]);
            pe_video *v = NULL;
            int rc = pe_video_open_buffer(b, cuts[i], label, NULL, &v);
            if (rc == 0) {
                double t[8];
                int cnt = 0;
                pe_video_uniform_times(pe_video_info_get(v), 8, t);
                rc = pe_video_sample(v, t, 8, 64, count_only, &cnt);
                if (rc == 0) CHECK_EQ_INT(cnt, 8);
                CHECK(pe_video_info_get(v)->frames_decoded <= 2000);
            }
            if (rc && rc != PERR_FORMAT && rc != PERR_DECODE && rc != PERR_UNSUPPORTED)
                t_fail(__FILE__, __LINE__, "%s: %s (%s)", label, perr_name(rc), perr_msg());
            if (rc && !strstr(perr_msg(), label))
                t_fail(__FILE__, __LINE__, "%s: message does not name it: %s", label, perr_msg());
            pe_video_close(v);
        }
        free(b);
    }
}

/* Every accepted container, cut at a third, half, two thirds and 7 bytes
 * short: the cut is seen (open refuses it, or opens with truncated = 1 and
 * says what showed it); the whole file is not called truncated. (MPEG-TS
 * and -PS cut exactly at a packet boundary cannot be told from a shorter
 * recording: docs/video.md; the cuts here are not at one.) */
static void test_truncation_every_container(void) {
    REQUIRE(g_ready);
    static const struct { const char *file, *args; } k[] = {
        {"t.mp4", "-c:v libx264 -preset veryfast -g 10 -pix_fmt yuv420p -movflags +faststart"},
        {"tm.mp4", "-c:v libx264 -preset veryfast -g 10 -pix_fmt yuv420p"},
        {"t.mov", "-c:v libx264 -preset veryfast -g 10 -pix_fmt yuv420p -movflags +faststart"},
        {"t.webm", "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 300k -g 10 -pix_fmt yuv420p"},
        {"t.mkv", "-c:v mpeg4 -q:v 4 -g 10 -pix_fmt yuv420p"},
        {"t.avi", "-c:v mpeg4 -q:v 4 -g 10 -pix_fmt yuv420p"},
        {"t.flv", "-c:v flv -q:v 4 -g 10 -pix_fmt yuv420p"},
        {"t.ts", "-c:v mpeg2video -q:v 4 -g 10 -pix_fmt yuv420p -f mpegts"},
        {"t.mpg", "-c:v mpeg1video -q:v 4 -g 10 -pix_fmt yuv420p -r 25 -f mpeg"},
        {"t.ogv", "-c:v libtheora -q:v 5 -g 10 -pix_fmt yuv420p"},
        {"t.asf", "-c:v msmpeg4 -q:v 4 -g 10 -pix_fmt yuv420p -f asf"},
        {"t.ivf", "-c:v libvpx -deadline realtime -cpu-used 8 -b:v 300k -g 10 -pix_fmt yuv420p -f ivf"},
        {"t.gif", "-f gif"},
        {"t.apng", "-f apng -plays 0"},
        {"t.webp", "-c:v libwebp_anim -q:v 70 -loop 0"},
    };
    for (size_t f = 0; f < sizeof k / sizeof *k; f++) {
        char *p = tmp(k[f].file);
        if (make_clip(p, "", k[f].args, "5", 1, 0)) {
            t_fail(__FILE__, __LINE__, "could not make %s", k[f].file);
            free(p);
            continue;
        }
        size_t len = 0;
        uint8_t *b = t_read_file(p, &len);
        free(p);
        if (!b || len < 2000) { t_fail(__FILE__, __LINE__, "%s: %zu bytes", k[f].file, len); free(b); continue; }
        pe_video *v = NULL;
        int rc = pe_video_open_buffer(b, len, k[f].file, NULL, &v);
        if (rc) t_fail(__FILE__, __LINE__, "%s whole: %s", k[f].file, perr_msg());
        else if (pe_video_info_get(v)->truncated)
            t_fail(__FILE__, __LINE__, "%s whole: called truncated: %s", k[f].file, pe_video_info_get(v)->truncated_why);
        pe_video_close(v);
        const size_t cuts[] = {len / 3, len / 2, len * 2 / 3, len - 7};
        int opened = 0;
        for (int i = 0; i < 4; i++) {
            /* not at a TS (188) or PS pack (2048) boundary: see docs/video.md */
            size_t cut = cuts[i] % 188 && cuts[i] % 2048 ? cuts[i] : cuts[i] - 1;
            char label[64];
            snprintf(label, sizeof label, "cut_%zu_of_%zu_%s", cut, len, k[f].file);
            v = NULL;
            rc = pe_video_open_buffer(b, cut, label, NULL, &v);
            if (rc == 0) {
                opened++;
                const pe_video_info *in = pe_video_info_get(v);
                if (!in->truncated) t_fail(__FILE__, __LINE__, "%s: opened, not seen as truncated (%.2f s)", label, in->duration);
                else if (!in->truncated_why[0]) t_fail(__FILE__, __LINE__, "%s: truncated without a reason", label);
            } else if (rc != PERR_FORMAT && rc != PERR_DECODE) {
                t_fail(__FILE__, __LINE__, "%s: %s (%s)", label, perr_name(rc), perr_msg());
            } else if (!strstr(perr_msg(), label)) {
                t_fail(__FILE__, __LINE__, "%s: message does not name it: %s", label, perr_msg());
            }
            pe_video_close(v);
        }
        printf("  %-8s %7zu bytes: %d of 4 cuts open (marked truncated), the rest refused\n", k[f].file, len, opened);
        free(b);
    }
}

/* A GIF whose LZW data is garbage (headers intact): FFmpeg's decoder logs
 * "LZW decode failed" and still returns (garbage) frames; such frames are
 * corrupt and the file is refused, as libvips refuses the image. */
static void test_corrupt_gif_lzw(void) {
    REQUIRE(g_ready);
    char *p = tmp("clip.gif");
    size_t len = 0;
    uint8_t *b = t_read_file(p, &len);
    free(p);
    REQUIRE(b && len > 800);
    size_t off = 13 + ((b[10] & 0x80) ? 3u * (2u << (b[10] & 7)) : 0);
    uint32_t x = 12345;
    int images = 0;
    while (off < len && b[off] != 0x3B) {
        int image = b[off] == 0x2C;
        if (image) off += 10 + ((b[off + 9] & 0x80) ? 3u * (2u << (b[off + 9] & 7)) : 0) + 1;
        else if (b[off] == 0x21) off += 2;
        else break;
        while (off < len && b[off]) { /* sub-blocks: garbage inside, sizes kept */
            size_t n = b[off++];
            for (size_t i = 0; image && i < n && off + i < len; i++) { x = x * 1103515245u + 12345u; b[off + i] = (uint8_t)(x >> 16); }
            off += n;
        }
        off++;
        images += image;
    }
    CHECK(images >= 10);
    char *c = write_copy("garbage-lzw.gif", b, len);
    REQUIRE(c);
    expect_refused(c, PERR_DECODE, "GIF with garbage LZW data");
    pe_video *v = NULL;
    CHECK_ERR(pe_video_open(c, NULL, &v), PERR_DECODE);
    CHECK(strstr(perr_msg(), "corrupt") != NULL);
    printf("  %s\n", perr_msg());
    free(c);
    free(b);
}

/* mvhd, tkhd and mdhd claim 10 hours for 1 s of frames. */
static void test_lying_duration(void) {
    REQUIRE(g_ready);
    char *p = tmp("short.mp4");
    size_t len = 0;
    uint8_t *b = t_read_file(p, &len);
    free(p);
    REQUIRE(b);
    long mvhd = find_box(b, len, "mvhd", 0), tkhd = find_box(b, len, "tkhd", 0),
         mdhd = find_box(b, len, "mdhd", 0);
    REQUIRE(mvhd > 0 && tkhd > 0 && mdhd > 0);
    REQUIRE(b[mvhd + 8] == 0 && b[tkhd + 8] == 0 && b[mdhd + 8] == 0); /* version 0 */
    uint32_t mts = rd32(b + mvhd + 20), dts = rd32(b + mdhd + 20);
    wr32(b + mvhd + 24, mts * 36000);
    wr32(b + tkhd + 28, mts * 36000);
    wr32(b + mdhd + 24, dts * 36000);
    long elst = find_box(b, len, "elst", 0);
    if (elst > 0 && b[elst + 8] == 0) wr32(b + elst + 16, mts * 36000);
    char *c = write_copy("liar.mp4", b, len);
    free(b);
    REQUIRE(c);
    pe_video *v = NULL;
    int printed = 0;
    CHECK_OK(open_quiet(c, &v, &printed));
    CHECK_EQ_INT(printed, 0);
    if (v) {
        const pe_video_info *in = pe_video_info_get(v);
        CHECK(in->container_duration > 35000);
        if (fabs(in->duration - 1.0) > 1e-6) t_fail(__FILE__, __LINE__, "duration %.3f", in->duration);
        CHECK(fabs(in->fps - 25) < 0.01);
        CHECK(in->frames_decoded <= 50);
        pe_video_close(v);
    }
    free(c);
}

/* The second of two frames "lasts" 10 hours (its stts delta). */
static void test_last_frame_lasts_hours(void) {
    REQUIRE(g_ready);
    char *p = tmp("twoframes.mp4");
    size_t len = 0;
    uint8_t *b = t_read_file(p, &len);
    free(p);
    REQUIRE(b);
    long stts = find_box(b, len, "stts", 0), mdhd = find_box(b, len, "mdhd", 0),
         mvhd = find_box(b, len, "mvhd", 0), tkhd = find_box(b, len, "tkhd", 0),
         elst = find_box(b, len, "elst", 0);
    REQUIRE(stts > 0 && mdhd > 0 && mvhd > 0 && tkhd > 0 && elst > 0);
    uint32_t ts = rd32(b + mdhd + 20), mts = rd32(b + mvhd + 20), n = rd32(b + stts + 12);
    REQUIRE(n == 2 && rd32(b + stts + 16 + 8) == 1);
    /* The second sample lasts 36000 s and every header agrees: ffprobe
     * reports 10:00:01 and a 36000 s packet. */
    wr32(b + stts + 16 + 12, ts * 36000);
    wr32(b + mdhd + 24, ts * 36001);
    wr32(b + mvhd + 24, mts * 36001);
    wr32(b + tkhd + 28, mts * 36001);
    wr32(b + elst + 16, mts * 36001);
    char *c = write_copy("lasting.mp4", b, len);
    free(b);
    REQUIRE(c);
    pe_video *v = NULL;
    CHECK_OK(pe_video_open(c, NULL, &v));
    free(c);
    if (!v) return;
    const pe_video_info *in = pe_video_info_get(v);
    if (fabs(in->duration - 2.0) > 1e-6)
        t_fail(__FILE__, __LINE__, "duration %.4f (claimed %.1f)", in->duration, in->container_duration);
    CHECK(in->container_duration > 36000);
    int ns = 0;
    CHECK_OK(pe_video_segment_times(in, 10, 4, NULL, 0, &ns));
    CHECK_EQ_INT(ns, 1);
    double t[8];
    pe_video_uniform_times(in, 8, t);
    got g;
    memset(&g, 0, sizeof g);
    CHECK_OK(pe_video_sample(v, t, 8, 160, collect, &g));
    CHECK_EQ_INT(g.n, 8);
    for (int k = 0; k < g.n; k++) CHECK_EQ_INT(g.photo[k], k < 4 ? 2 : 3); /* chelsea, coffee */
    CHECK(in->frames_decoded <= 4);
    pe_video_close(v);
}

int main(void) {
    g_ready = make_fixtures() == 0;
    if (!g_ready) fprintf(stderr, "could not make the test videos with the ffmpeg CLI\n");
    T_RUN(test_mp4_h264);
    T_RUN(test_webm_vp9);
    T_RUN(test_mkv_mpeg4);
    T_RUN(test_mov_rotated);
    T_RUN(test_gif);
    T_RUN(test_animated_webp);
    T_RUN(test_seek_and_forward);
    T_RUN(test_back_in_time);
    T_RUN(test_out_of_range_times);
    T_RUN(test_buffer_equals_file);
    T_RUN(test_full_size_and_threads);
    T_RUN(test_limits);
    T_RUN(test_not_videos);
    T_RUN(test_truncated_mp4);
    T_RUN(test_truncated_faststart_mp4);
    T_RUN(test_truncated_others);
    T_RUN(test_truncation_every_container);
    T_RUN(test_corrupt_gif_lzw);
    T_RUN(test_lying_duration);
    T_RUN(test_last_frame_lasts_hours);
    if (g_dir) t_rmtree(g_dir);
    free(g_dir);
    return t_done();
}
