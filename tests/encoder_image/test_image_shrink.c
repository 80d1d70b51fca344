/* Shrink-on-load (pe_image_opts.shrink_on_load): large JPEG/WebP decoded at
 * 1/2..1/8 scale before the exact resize. Embeddings of real large photos
 * (the biggest JPEGs of /usr/share/backgrounds, or $PERCEPT_PHOTO_DIR) stay
 * within cosine 0.999 of the full decode with the tiny-a model; orientation,
 * alpha, grey and CMYK behave as on the exact path; small images and
 * shrink_on_load = 0 take the exact path bit for bit. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

#define S 64
#define N (3 * S * S)

static char *g_dir;

static char *fixture(const char *name) { return t_path("%s/tiny-a/images/%s", t_fixtures(), name); }
static char *tmp(const char *name) { return t_path("%s/%s", g_dir, name); }

/* out = preprocessed pixels; shrink_on_load k (0 = exact path). */
static int pre(const char *path, int k, float *out, pe_image_info *info) {
    pe_image_opts o;
    pe_image_opts_default(&o, S);
    o.shrink_on_load = k;
    int rc = pe_image_preprocess_ex(path, NULL, 0, NULL, &o, out, info);
    if (rc) t_fail(__FILE__, __LINE__, "%s: %s", path, perr_msg());
    return rc;
}

static double g_far; /* share of values more than 8 u8 levels apart (last max_u8) */

static double max_u8(const float *a, const float *b, double *mean) {
    double mx = 0, sum = 0;
    int far = 0;
    for (int i = 0; i < N; i++) {
        double e = fabs((double)a[i] - b[i]) * 127.5;
        sum += e;
        far += e > 8.5;
        if (e > mx) mx = e;
    }
    *mean = sum / N;
    g_far = (double)far / N;
    return mx;
}

/* ---- real photos: embedding deviation ---- */

typedef struct photo { char *path; long long size; } photo;

static void find_jpegs(const char *dir, photo **v, int *n, int *cap, int depth) {
    DIR *d = opendir(dir);
    if (!d || depth > 8) { if (d) closedir(d); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = t_path("%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            find_jpegs(p, v, n, cap, depth + 1);
        } else if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            pe_media_kind kind;
            const char *fmt = "";
            if (pe_media_sniff_file_format(p, &kind, &fmt) == PERR_OK && !strcmp(fmt, "jpeg")) {
                if (*n == *cap) *v = realloc(*v, sizeof **v * (size_t)(*cap = *cap ? 2 * *cap : 16));
                (*v)[(*n)++] = (photo){p, (long long)sb.st_size};
                p = NULL;
            }
        }
        free(p);
    }
    closedir(d);
}

static int by_size_desc(const void *a, const void *b) {
    long long x = ((const photo *)a)->size, y = ((const photo *)b)->size;
    return x < y ? 1 : x > y ? -1 : strcmp(((const photo *)a)->path, ((const photo *)b)->path);
}

static void test_real_photos(void) {
    const char *dir = getenv("PERCEPT_PHOTO_DIR");
    if (!dir || !*dir) dir = "/usr/share/backgrounds";
    photo *v = NULL;
    int n = 0, cap = 0;
    find_jpegs(dir, &v, &n, &cap, 0);
    if (n == 0) {
        t_fail(__FILE__, __LINE__,
               "no JPEG photo under %s: this test needs large real photos (Debian's desktop "
               "backgrounds, or set PERCEPT_PHOTO_DIR)", dir);
        return;
    }
    qsort(v, (size_t)n, sizeof *v, by_size_desc);
    char *mp = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    pe_model *m = NULL;
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    pe_ctx *ctx = NULL;
    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = 1;
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    float *ea = NULL, *eb = NULL;
    int shrunk = 0;
    if (pe_model_load(mp, &lo, &m) != PERR_OK) { t_fail(__FILE__, __LINE__, "%s: %s", mp, perr_msg()); goto out; }
    if (pe_ctx_new(m, &co, &ctx) != PERR_OK) { t_fail(__FILE__, __LINE__, "ctx: %s", perr_msg()); goto out; }
    REQUIRE(pe_model_config(m)->image_size == S);
    int D = pe_model_config(m)->output_dim;
    ea = malloc(sizeof(float) * D), eb = malloc(sizeof(float) * D);
    /* the biggest JPEGs whose shorter side reaches the shrink threshold */
    for (int i = 0; i < n && shrunk < 4; i++) {
        pe_image_info ia, ib;
        if (pre(v[i].path, 0, a, &ia) || pre(v[i].path, 2, b, &ib)) continue;
        CHECK_EQ_INT(ia.shrink, 1);
        CHECK_EQ_INT(ib.width, ia.width);
        CHECK_EQ_INT(ib.height, ia.height);
        if (ib.shrink == 1) continue; /* small: exact path, nothing to measure */
        shrunk++;
        CHECK_OK(pe_encode_pixels(ctx, a, 1, ea));
        CHECK_OK(pe_encode_pixels(ctx, b, 1, eb));
        double mean, mx = max_u8(a, b, &mean), c = t_cosine(ea, eb, (size_t)D);
        fprintf(stderr, "  %s %dx%d at 1/%d: cosine %.7f, pixels max %.0f mean %.3f u8 levels\n",
                v[i].path, ia.width, ia.height, ib.shrink, c, mx, mean);
        CHECK(c >= 0.999);
        CHECK(mean < 2.0);
    }
    if (!shrunk)
        t_fail(__FILE__, __LINE__, "no JPEG under %s has a shorter side >= 1024 px: nothing shrunk", dir);
out:
    pe_ctx_free(ctx);
    pe_model_free(m);
    for (int i = 0; i < n; i++) free(v[i].path);
    free(v), free(mp), free(a), free(b), free(ea), free(eb);
}

/* ---- synthetic large files: layouts behave as on the exact path ---- */

/* A large version (x scale) of a fixture, with EXIF orientation o. */
static VipsImage *big(const char *name, double scale, int o) {
    char *p = fixture(name);
    VipsImage *u = vips_image_new_from_file(p, "access", VIPS_ACCESS_RANDOM, NULL), *r = NULL, *c = NULL;
    free(p);
    if (!u) { t_fail(__FILE__, __LINE__, "%s: %s", name, vips_error_buffer()); return NULL; }
    vips_resize(u, &r, scale, NULL);
    g_object_unref(u);
    if (o == 6) {
        VipsImage *t = NULL;
        vips_rot(r, &t, VIPS_ANGLE_D270, NULL);
        g_object_unref(r);
        r = t;
    }
    vips_copy(r, &c, NULL);
    g_object_unref(r);
    vips_image_set_int(c, VIPS_META_ORIENTATION, o);
    return c;
}

/* Exact vs shrink-on-load of one file: the factor used, the stored size
 * reported, and pixel differences within what a scaled decode gives. */
static void compare(const char *label, const char *path, int want_shrink, double max_tol, double mean_tol) {
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    pe_image_info ia, ib;
    if (!pre(path, 0, a, &ia) && !pre(path, 2, b, &ib)) {
        double mean, mx = max_u8(a, b, &mean);
        fprintf(stderr, "  %-22s %dx%d o%d: 1/%d, max %.0f mean %.3f u8 levels, %.3f%% > 8 levels\n",
                label, ib.width, ib.height, ib.orientation, ib.shrink, mx, mean, 100 * g_far);
        CHECK(g_far < 0.01);
        CHECK_EQ_INT(ia.shrink, 1);
        CHECK_EQ_INT(ib.shrink, want_shrink);
        CHECK_EQ_INT(ib.width, ia.width);
        CHECK_EQ_INT(ib.height, ia.height);
        CHECK(mx <= max_tol);
        CHECK(mean <= mean_tol);
    }
    free(a), free(b);
}

static void test_layouts(void) {
    /* chelsea 451x300 x6 = 2706x1800: shorter side 1800 >= 1024, 1800/8 >= 2 x 64 */
    VipsImage *im = big("chelsea.png", 6.0, 1);
    REQUIRE(im);
    char *p1 = tmp("big_o1.jpg"), *p6 = tmp("big_o6.jpg"), *pg = tmp("big_grey.jpg"),
         *pc = tmp("big_cmyk.jpg"), *pw = tmp("big_rgba.webp");
    CHECK(!vips_jpegsave(im, p1, "Q", 92, NULL));
    compare("RGB JPEG", p1, 8, 24, 1.5);
    /* k = 4: 1800/4 = 450 >= 4 x 64 but 1800/8 = 225 is not */
    float *a = malloc(sizeof(float) * N);
    pe_image_info info;
    pe_image_opts o;
    pe_image_opts_default(&o, S);
    o.shrink_on_load = 4;
    CHECK_OK(pe_image_preprocess_ex(p1, NULL, 0, NULL, &o, a, &info));
    CHECK_EQ_INT(info.shrink, 4);
    /* below shrink_min_side: exact */
    o.shrink_on_load = 2, o.shrink_min_side = 2000;
    CHECK_OK(pe_image_preprocess_ex(p1, NULL, 0, NULL, &o, a, &info));
    CHECK_EQ_INT(info.shrink, 1);
    free(a);

    VipsImage *r6 = big("chelsea.png", 6.0, 6);
    CHECK(!vips_jpegsave(r6, p6, "Q", 92, NULL));
    compare("RGB JPEG, EXIF 6", p6, 8, 24, 1.5);
    /* the shrunk rotated file shows the upright cat, as the exact path of
     * the upright file does (different JPEG blocks: a few levels apart; a
     * wrong orientation is tens of levels off on average) */
    float *u = malloc(sizeof(float) * N), *r = malloc(sizeof(float) * N);
    pe_image_info iu, ir;
    if (!pre(p1, 0, u, &iu) && !pre(p6, 2, r, &ir)) {
        double mean, mx = max_u8(u, r, &mean);
        fprintf(stderr, "  EXIF 6 shrunk vs upright exact: max %.0f mean %.3f\n", mx, mean);
        CHECK(mean < 2.0);
    }
    free(u), free(r);

    VipsImage *g = NULL;
    CHECK(!vips_colourspace(im, &g, VIPS_INTERPRETATION_B_W, NULL));
    CHECK(!vips_jpegsave(g, pg, "Q", 92, NULL));
    compare("grey JPEG", pg, 8, 24, 1.5);

    VipsImage *c = NULL;
    CHECK(!vips_colourspace(im, &c, VIPS_INTERPRETATION_CMYK, NULL));
    CHECK(!vips_jpegsave(c, pc, "Q", 92, NULL));
    compare("CMYK JPEG", pc, 8, 24, 1.5);

    /* RGBA WebP, 2706x1800 -> 1/8, alpha 64..255 from the picture itself.
     * (Where alpha is 1..3 of 255 the un-premultiplied colour swings with
     * the last bit of alpha, on either path and with any decoder: such
     * pixels have no stable colour to compare.) */
    VipsImage *gb = NULL, *al = NULL, *al8 = NULL, *w = NULL;
    CHECK(!vips_extract_band(im, &gb, 1, NULL));
    CHECK(!vips_linear1(gb, &al, 0.75, 64, NULL));
    CHECK(!vips_cast_uchar(al, &al8, NULL));
    CHECK(!vips_bandjoin2(im, al8, &w, NULL));
    if (w) {
        CHECK_EQ_INT(w->Bands, 4);
        CHECK(!vips_webpsave(w, pw, "Q", 92, NULL));
        compare("RGBA WebP", pw, 8, 24, 1.5);
        g_object_unref(w);
    }
    if (gb) g_object_unref(gb);
    if (al) g_object_unref(al);
    if (al8) g_object_unref(al8);
    g_object_unref(im), g_object_unref(r6), g_object_unref(g), g_object_unref(c);
    free(p1), free(p6), free(pg), free(pc), free(pw);
}

/* shrink_on_load 0 is the full decode: the same result as resizing
 * pe_image_decode_u8's pixels; small images are bit-identical either way. */
static void test_exact_path(void) {
    VipsImage *im = big("astronaut.png", 2.5, 1); /* 1280x1280 */
    REQUIRE(im);
    char *p = tmp("big_exact.jpg");
    CHECK(!vips_jpegsave(im, p, "Q", 90, NULL));
    g_object_unref(im);
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    pe_image_info info;
    if (!pre(p, 0, a, &info)) {
        CHECK_EQ_INT(info.shrink, 1);
        pe_image_opts o;
        pe_image_opts_default(&o, S);
        uint8_t *pix = NULL;
        int w, h, bands;
        CHECK_OK(pe_image_decode_u8(p, &o, &pix, &w, &h, &bands, NULL));
        if (pix) {
            CHECK_EQ_INT(bands, 3);
            CHECK_OK(pe_image_preprocess_rgb(pix, w, h, (size_t)w * 3, S, b));
            CHECK(memcmp(a, b, sizeof(float) * N) == 0);
            free(pix);
        }
        CHECK(!pre(p, 2, b, &info));
        CHECK_EQ_INT(info.shrink, 8);
        CHECK(memcmp(a, b, sizeof(float) * N) != 0); /* the scaled decode did happen */
    }
    /* the tiny-a fixtures (<= 640 px): default options are the exact path */
    const char *small[] = {"rocket.jpg", "astronaut.png", "chelsea_rgba.png"};
    for (int i = 0; i < 3; i++) {
        char *f = fixture(small[i]);
        pe_image_info ib;
        if (!pre(f, 0, a, &info) && !pre(f, 2, b, &ib)) {
            CHECK_EQ_INT(ib.shrink, 1);
            CHECK(memcmp(a, b, sizeof(float) * N) == 0);
        }
        free(f);
    }
    free(a), free(b), free(p);
}

int main(void) {
    if (pe_image_init()) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
    g_dir = t_tmpdir("image_shrink");
    T_RUN(test_exact_path);
    T_RUN(test_layouts);
    T_RUN(test_real_photos);
    t_rmtree(g_dir);
    free(g_dir);
    return t_done();
}
