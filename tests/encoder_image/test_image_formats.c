/* pe_image on every accepted format and colour layout, EXIF orientation,
 * alpha, ICC, 16-bit, CMYK, multi-page/animated files, thumbnails, content
 * sniffing and concurrent use. Variants are made here with libvips itself
 * from the tiny-a photos. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#define S 64
#define N (3 * S * S)

static char *g_dir;

static char *fixture(const char *name) { return t_path("%s/tiny-a/images/%s", t_fixtures(), name); }
static char *tmp(const char *name) { return t_path("%s/%s", g_dir, name); }

static VipsImage *load(const char *name) {
    char *p = fixture(name);
    VipsImage *im = vips_image_new_from_file(p, "access", VIPS_ACCESS_RANDOM, NULL);
    free(p);
    if (!im) t_fail(__FILE__, __LINE__, "vips load %s: %s", name, vips_error_buffer());
    return im;
}

/* Preprocessed pixels of a file (ICC import and EXIF on, or ref = both off). */
static float *pre(const char *path, int ref) {
    float *out = malloc(sizeof(float) * N);
    pe_image_opts o;
    pe_image_opts_default(&o, S);
    if (ref) o.icc = 0, o.autorotate = 0;
    else o.icc = 1;
    int rc = pe_image_preprocess_ex(path, NULL, 0, NULL, &o, out, NULL);
    if (rc) {
        t_fail(__FILE__, __LINE__, "%s: %s %s", path, perr_name(rc), perr_msg());
        free(out);
        return NULL;
    }
    return out;
}

static double max_u8(const float *a, const float *b, double *mean) {
    double mx = 0, sum = 0;
    for (int i = 0; i < N; i++) {
        double e = fabs((double)a[i] - b[i]) * 127.5;
        sum += e;
        if (e > mx) mx = e;
    }
    if (mean) *mean = sum / N;
    return mx;
}

static void save(VipsImage *im, const char *path, const char *opts) {
    char *p = t_path("%s%s", path, opts ? opts : "");
    if (vips_image_write_to_file(im, p, NULL)) t_fail(__FILE__, __LINE__, "save %s: %s", p, vips_error_buffer());
    vips_error_clear();
    free(p);
}

/* ---- orientation ---- */

/* Stored image for orientation o whose upright version is u: stored pixel
 * (sx, sy) = upright pixel given by the EXIF definition. */
static VipsImage *unrotate(VipsImage *u, int o) {
    VipsImage *r = NULL;
    switch (o) {
    case 1: vips_copy(u, &r, NULL); break;
    case 2: vips_flip(u, &r, VIPS_DIRECTION_HORIZONTAL, NULL); break;
    case 3: vips_rot(u, &r, VIPS_ANGLE_D180, NULL); break;
    case 4: vips_flip(u, &r, VIPS_DIRECTION_VERTICAL, NULL); break;
    case 6: vips_rot(u, &r, VIPS_ANGLE_D270, NULL); break;
    case 8: vips_rot(u, &r, VIPS_ANGLE_D90, NULL); break;
    case 5: case 7: {
        VipsImage *t = NULL;
        vips_rot(u, &t, o == 5 ? VIPS_ANGLE_D90 : VIPS_ANGLE_D270, NULL);
        vips_flip(t, &r, VIPS_DIRECTION_HORIZONTAL, NULL);
        g_object_unref(t);
        break;
    }
    }
    VipsImage *c = NULL;
    vips_copy(r, &c, NULL);
    g_object_unref(r);
    vips_image_set_int(c, VIPS_META_ORIENTATION, o);
    return c;
}

static void test_orientation(void) {
    VipsImage *u = load("chelsea.png"); /* 451x300: orientation visible */
    REQUIRE(u);
    char *up = tmp("upright.tif");
    save(u, up, NULL);
    float *want = pre(up, 0);
    REQUIRE(want);
    for (int o = 1; o <= 8; o++) {
        VipsImage *st = unrotate(u, o);
        /* our convention is libvips' own: autorot of the stored image is u */
        VipsImage *back = NULL;
        double d = -1;
        if (!vips_autorot(st, &back, NULL)) {
            VipsImage *df = NULL, *ab = NULL;
            if (back->Xsize == u->Xsize && !vips_subtract(back, u, &df, NULL) && !vips_abs(df, &ab, NULL))
                vips_max(ab, &d, NULL);
            if (df) g_object_unref(df);
            if (ab) g_object_unref(ab);
            g_object_unref(back);
        }
        if (d != 0) t_fail(__FILE__, __LINE__, "orientation %d: vips_autorot does not restore it", o);

        /* TIFF keeps pixels exact: the output must equal the upright one */
        char *p = t_path("%s/o%d.tif", g_dir, o);
        save(st, p, NULL);
        pe_image_info info;
        float *got = malloc(sizeof(float) * N);
        CHECK_OK(pe_image_preprocess_file(p, S, NULL, got, &info));
        CHECK_EQ_INT(info.orientation, o);
        CHECK_EQ_INT(info.width, (o >= 5 ? 300 : 451));
        double mx = max_u8(got, want, NULL);
        if (mx != 0) t_fail(__FILE__, __LINE__, "orientation %d (TIFF): max diff %.1f u8 levels", o, mx);
        /* with autorotate off it differs (so the check above can fail) */
        pe_image_opts no;
        pe_image_opts_default(&no, S);
        no.autorotate = 0;
        CHECK_OK(pe_image_preprocess_ex(p, NULL, 0, NULL, &no, got, NULL));
        if (o != 1) CHECK(max_u8(got, want, NULL) > 50);

        /* JPEG (lossy): close to the upright JPEG */
        char *pj = t_path("%s/o%d.jpg", g_dir, o);
        save(st, pj, "[Q=95]");
        CHECK_OK(pe_image_preprocess_file(pj, S, NULL, got, &info));
        CHECK_EQ_INT(info.orientation, o);
        double mean;
        mx = max_u8(got, want, &mean);
        if (mean > 1.5 || mx > 16) t_fail(__FILE__, __LINE__, "orientation %d (JPEG): max %.1f mean %.2f", o, mx, mean);
        free(got);
        free(p);
        free(pj);
        g_object_unref(st);
    }
    free(want);
    free(up);
    g_object_unref(u);
}

/* ---- alpha and grey ---- */

static void test_alpha_and_grey(void) {
    VipsImage *rgba = load("chelsea_rgba.png");
    REQUIRE(rgba);
    /* grey+alpha (LA) must give what the RGBA path (checked bit-exact against
     * Pillow) gives for R=G=B=grey with the same alpha */
    VipsImage *g = NULL, *a = NULL, *la = NULL, *ggg = NULL, *gggga = NULL;
    vips_extract_band(rgba, &g, 1, NULL);
    vips_extract_band(rgba, &a, 3, NULL);
    VipsImage *in2[2] = {g, a};
    vips_bandjoin(in2, &la, 2, NULL);
    VipsImage *in4[4] = {g, g, g, a};
    vips_bandjoin(in4, &gggga, 4, NULL);
    la->Type = VIPS_INTERPRETATION_B_W;
    gggga->Type = VIPS_INTERPRETATION_sRGB;
    char *pla = tmp("la.png"), *prgba = tmp("gggga.png");
    save(la, pla, NULL);
    save(gggga, prgba, NULL);
    float *fla = pre(pla, 0), *frgba = pre(prgba, 0);
    REQUIRE(fla && frgba);
    CHECK(max_u8(fla, frgba, NULL) == 0);
    pe_image_info info;
    float *t = malloc(sizeof(float) * N);
    CHECK_OK(pe_image_preprocess_file(pla, S, NULL, t, &info));
    CHECK_EQ_INT(info.bands, 2);
    CHECK(info.has_alpha);
    /* premultiplied: fully transparent regions are black, not the colour */
    int black = 0;
    for (int i = 0; i < N; i++) black += fla[i] == -1.0f;
    CHECK(black > 0);

    /* grey alone: the three planes are equal */
    char *pg = tmp("g.png");
    save(g, pg, NULL);
    float *fg = pre(pg, 0);
    REQUIRE(fg);
    CHECK(memcmp(fg, fg + S * S, sizeof(float) * S * S) == 0);
    CHECK(memcmp(fg, fg + 2 * S * S, sizeof(float) * S * S) == 0);

    /* alpha 255 everywhere = no alpha */
    VipsImage *opaque = NULL, *rgb = NULL, *withff = NULL;
    vips_extract_band(rgba, &rgb, 0, "n", 3, NULL);
    vips_bandjoin_const1(rgb, &withff, 255, NULL);
    (void)opaque;
    char *p3 = tmp("rgb.png"), *p4 = tmp("rgbff.png");
    save(rgb, p3, NULL);
    save(withff, p4, NULL);
    float *f3 = pre(p3, 0), *f4 = pre(p4, 0);
    REQUIRE(f3 && f4);
    CHECK(max_u8(f3, f4, NULL) == 0);

    /* alpha 0 everywhere: all black (-1) */
    VipsImage *zero = NULL;
    vips_bandjoin_const1(rgb, &zero, 0, NULL);
    char *p0 = tmp("rgb00.png");
    save(zero, p0, NULL);
    float *f0 = pre(p0, 0);
    REQUIRE(f0);
    int all = 1;
    for (int i = 0; i < N; i++) all &= f0[i] == -1.0f;
    CHECK(all);

    free(t), free(fla), free(frgba), free(fg), free(f3), free(f4), free(f0);
    free(pla), free(prgba), free(pg), free(p3), free(p4), free(p0);
    g_object_unref(g), g_object_unref(a), g_object_unref(la), g_object_unref(gggga);
    g_object_unref(rgb), g_object_unref(withff), g_object_unref(zero), g_object_unref(rgba);
    if (ggg) g_object_unref(ggg);
}

/* ---- colour: 16 bit, CMYK, ICC ---- */

static void test_16bit(void) {
    const char *names[] = {"coffee.png", "camera.png"};
    for (int i = 0; i < 2; i++) {
        VipsImage *im = load(names[i]), *w = NULL, *u16 = NULL;
        REQUIRE(im);
        vips_linear1(im, &w, 257, 0, NULL); /* v * 257: high byte is v */
        vips_cast_ushort(w, &u16, NULL);
        u16->Type = im->Bands == 1 ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_RGB16;
        char *p = t_path("%s/16_%s", g_dir, names[i]);
        save(u16, p, NULL);
        char *orig = fixture(names[i]);
        float *a = pre(p, 0), *b = pre(orig, 0);
        pe_image_info info;
        float *t = malloc(sizeof(float) * N);
        CHECK_OK(pe_image_preprocess_file(p, S, NULL, t, &info));
        if (a && b) CHECK(max_u8(a, b, NULL) == 0);
        free(a), free(b), free(t), free(p), free(orig);
        g_object_unref(im), g_object_unref(w), g_object_unref(u16);
    }
}

static void test_cmyk_jpeg(void) {
    /* sRGB -> CMYK loses gamut (~17 u8 levels on coffee, libvips' own
     * round trip too), so the reference is libvips' CMYK -> sRGB of the
     * same file, saved losslessly */
    VipsImage *im = load("coffee.png"), *c = NULL;
    REQUIRE(im);
    REQUIRE(!vips_colourspace(im, &c, VIPS_INTERPRETATION_CMYK, NULL));
    const char *variants[] = {"cmyk.jpg[Q=95]", "cmyk_noprofile.jpg[Q=95,strip]"};
    for (int v = 0; v < 2; v++) {
        char *p = tmp(variants[v]);
        save(c, p, NULL);
        *strchr(p + strlen(g_dir), '[') = 0;
        VipsImage *j = vips_image_new_from_file(p, NULL), *back = NULL;
        REQUIRE(j);
        CHECK_EQ_INT(j->Type, VIPS_INTERPRETATION_CMYK);
        CHECK((vips_image_get_typeof(j, VIPS_META_ICC_NAME) != 0) == (v == 0));
        REQUIRE(!vips_colourspace(j, &back, VIPS_INTERPRETATION_sRGB, NULL));
        char *pr = tmp("cmyk_ref.png");
        save(back, pr, "[strip]");
        pe_image_info info;
        float *got = malloc(sizeof(float) * N);
        CHECK_OK(pe_image_preprocess_file(p, S, NULL, got, &info));
        CHECK_EQ_INT(info.bands, 4);
        CHECK(!info.has_alpha);
        float *want = pre(pr, 0);
        double mean = 0, mx = want ? max_u8(got, want, &mean) : 999;
        fprintf(stderr, "  %-30s vs libvips CMYK->sRGB: max %.1f mean %.3f u8 levels\n", variants[v], mx, mean);
        /* with the embedded (LUT) profile our 8-bit lcms transform and
         * libvips' float Lab path differ by ~1.4 levels on average */
        CHECK(mean < 2 && mx <= 10);
        free(got), free(want), free(p), free(pr);
        g_object_unref(j), g_object_unref(back);
    }
    g_object_unref(im), g_object_unref(c);
}

static void test_icc_profile(void) {
    /* coffee converted to Display P3 pixels with the P3 profile embedded:
     * importing the profile gets close to the sRGB original; ignoring it
     * does not */
    VipsImage *im = load("coffee.png"), *p3 = NULL;
    REQUIRE(im);
    if (vips_icc_transform(im, &p3, "p3", "input_profile", "srgb", NULL)) {
        t_fail(__FILE__, __LINE__, "vips has no built-in p3 profile: %s", vips_error_buffer());
        g_object_unref(im);
        return;
    }
    char *p = tmp("p3.png");
    save(p3, p, NULL);
    char *orig = fixture("coffee.png");
    float *want = pre(orig, 0), *icc = pre(p, 0), *raw = pre(p, 1);
    REQUIRE(want && icc && raw);
    double m1, m2, x1 = max_u8(icc, want, &m1), x2 = max_u8(raw, want, &m2);
    fprintf(stderr, "  P3-tagged PNG: with ICC max %.1f mean %.2f; ignoring it max %.1f mean %.2f\n", x1, m1, x2, m2);
    CHECK(m1 < 1.0 && x1 <= 4);
    CHECK(m2 > 2 * m1 && x2 > x1);
    free(want), free(icc), free(raw), free(p), free(orig);
    g_object_unref(im), g_object_unref(p3);

    /* the same with alpha (the per-row lcms path copies alpha through) */
    VipsImage *ra = load("chelsea_rgba.png"), *ra3 = NULL;
    REQUIRE(ra);
    REQUIRE(!vips_icc_transform(ra, &ra3, "p3", "input_profile", "srgb", NULL));
    CHECK_EQ_INT(ra3->Bands, 4);
    p = tmp("p3_rgba.png");
    save(ra3, p, NULL);
    orig = fixture("chelsea_rgba.png");
    want = pre(orig, 0), icc = pre(p, 0);
    REQUIRE(want && icc);
    x1 = max_u8(icc, want, &m1);
    int far = 0;
    for (int i = 0; i < N; i++) far += fabs((double)icc[i] - want[i]) * 127.5 > 4;
    /* un-premultiplying a nearly transparent pixel (255 c / a) turns a
     * one-level colour difference into many: count them, they must be few */
    fprintf(stderr, "  P3-tagged RGBA PNG: with ICC max %.1f mean %.2f, %d of %d values off by > 4\n", x1, m1, far, N);
    CHECK(m1 < 1.0 && far < N / 100);
    free(want), free(icc), free(p), free(orig);
    g_object_unref(ra), g_object_unref(ra3);
}

/* ---- other formats ---- */

static void roundtrip(const char *fmt, const char *opts, double max_ok, double mean_ok, const char *kind) {
    char *orig = fixture("coffee.png");
    VipsImage *im = load("coffee.png");
    char *p = t_path("%s/coffee_%s", g_dir, fmt);
    char *ps = t_path("%s%s", p, opts ? opts : "");
    int saved = !vips_image_write_to_file(im, ps, NULL);
    if (!saved) {
        /* only HEIF/AVIF encoders may be missing from a system */
        fprintf(stderr, "  (cannot write %s on this system: %s)\n", fmt, vips_error_buffer());
        vips_error_clear();
        CHECK(strstr(fmt, "heic") || strstr(fmt, "avif"));
    } else {
        float *a = pre(p, 0), *b = pre(orig, 0);
        pe_image_info info;
        float *t = malloc(sizeof(float) * N);
        CHECK_OK(pe_image_preprocess_file(p, S, NULL, t, &info));
        CHECK_STR(info.format, kind);
        double mean = 0, mx = (a && b) ? max_u8(a, b, &mean) : 999;
        fprintf(stderr, "  %-10s vs PNG: max %.1f mean %.3f u8 levels\n", fmt, mx, mean);
        CHECK(mx <= max_ok && mean <= mean_ok);
        free(a), free(b), free(t);
    }
    g_object_unref(im);
    free(orig), free(p), free(ps);
}

static void test_formats(void) {
    roundtrip("x.webp", "[lossless]", 0, 0, "webp");
    roundtrip("x.tif", NULL, 0, 0, "tiff");
    roundtrip("x.tif", "[compression=deflate,tile]", 0, 0, "tiff");
    roundtrip("x.gif", NULL, 40, 4, "gif");
    roundtrip("x.webp", "[Q=90]", 24, 2, "webp");
    roundtrip("x.avif", "[Q=90]", 32, 3, "avif");
    roundtrip("x.heic", "[Q=90]", 32, 3, "heif");
}

static void test_pages_and_animation(void) {
    VipsImage *a = load("coffee.png"), *b = NULL, *stack = NULL;
    REQUIRE(a);
    vips_invert(a, &b, NULL);
    VipsImage *in[2] = {a, b};
    vips_arrayjoin(in, &stack, 2, "across", 1, NULL);
    VipsImage *st = NULL;
    vips_copy(stack, &st, NULL);
    vips_image_set_int(st, "page-height", a->Ysize);
    char *orig = fixture("coffee.png");
    float *want = pre(orig, 0);

    /* multi-page TIFF: page 0 */
    char *pt = tmp("pages.tif");
    save(st, pt, NULL);
    pe_image_info info;
    float *got = malloc(sizeof(float) * N);
    CHECK_OK(pe_image_preprocess_file(pt, S, NULL, got, &info));
    CHECK_EQ_INT(info.pages, 2);
    CHECK_EQ_INT(info.height, a->Ysize);
    if (want) CHECK(max_u8(got, want, NULL) == 0);
    /* the page limit */
    pe_image_limits lim;
    pe_image_limits_default(&lim);
    lim.max_pages = 1;
    CHECK_ERR(pe_image_preprocess_file(pt, S, &lim, got, NULL), PERR_TOO_LARGE);

    /* animated WebP and GIF: sniffed as animations, first frame used */
    const char *anim[] = {"anim.webp[lossless]", "anim.gif"};
    for (int i = 0; i < 2; i++) {
        char *p = tmp(anim[i]);
        save(st, p, NULL);
        char *br = strchr(p + strlen(g_dir), '[');
        if (br) *br = 0;
        pe_media_kind k;
        CHECK_OK(pe_media_sniff_file(p, &k));
        CHECK_EQ_INT(k, PE_MEDIA_ANIMATION);
        CHECK_OK(pe_image_preprocess_file(p, S, NULL, got, &info));
        CHECK_EQ_INT(info.pages, 2);
        double mean = 0, mx = want ? max_u8(got, want, &mean) : 999;
        fprintf(stderr, "  %-20s frame 0 vs PNG: max %.1f mean %.3f\n", anim[i], mx, mean);
        CHECK(mean < 4);
        free(p);
    }
    /* a still GIF is an image */
    char *p = tmp("still.gif");
    save(a, p, NULL);
    pe_media_kind k;
    CHECK_OK(pe_media_sniff_file(p, &k));
    CHECK_EQ_INT(k, PE_MEDIA_IMAGE);
    free(p);
    free(got), free(want), free(orig), free(pt);
    g_object_unref(a), g_object_unref(b), g_object_unref(stack), g_object_unref(st);
}

/* ---- sniffing ---- */

#define B(lit) lit, sizeof(lit) - 1
static void test_sniff(void) {
    struct { const char *bytes; size_t n; pe_media_kind kind; const char *fmt; } c[] = {
        {B("\xFF\xD8\xFF\xE0\0\x10JFIF"), PE_MEDIA_IMAGE, "jpeg"},
        {B("\x89PNG\r\n\x1A\n\0\0\0\x0DIHDR"), PE_MEDIA_IMAGE, "png"},
        {B("GIF87a\1\0\1\0\0\0\0"), PE_MEDIA_IMAGE, "gif"},
        {B("RIFF\0\0\0\0WEBPVP8 "), PE_MEDIA_IMAGE, "webp"},
        {B("RIFF\0\0\0\0WEBPVP8X\x0A\0\0\0\x02\0\0\0"), PE_MEDIA_ANIMATION, "webp"},
        {B("II*\0\x08\0\0\0"), PE_MEDIA_IMAGE, "tiff"},
        {B("MM\0*\0\0\0\x08"), PE_MEDIA_IMAGE, "tiff"},
        {B("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic"), PE_MEDIA_IMAGE, "heif"},
        {B("\0\0\0\x1C" "ftypavif\0\0\0\0avifmif1miaf"), PE_MEDIA_IMAGE, "avif"},
        {B("\0\0\0\x1C" "ftypmif1\0\0\0\0mif1avifmiaf"), PE_MEDIA_IMAGE, "avif"},
        {B("\0\0\0\x18" "ftypmp42\0\0\0\0mp42isom"), PE_MEDIA_VIDEO, "mp4"},
        {B("\0\0\0\x14" "ftypqt  \0\0\0\0qt  "), PE_MEDIA_VIDEO, "quicktime"},
        {B("\0\0\0\x08wide\0\0\0\0mdat"), PE_MEDIA_VIDEO, "quicktime"},
        {B("\x1A\x45\xDF\xA3\x01\0\0\0\0\0\0\x1F\x42\x86\x81\x01\x42\x82\x88matroska"), PE_MEDIA_VIDEO, "matroska"},
        {B("RIFF\0\0\0\0AVI LIST"), PE_MEDIA_VIDEO, "avi"},
        {B("FLV\x01\x05\0\0\0\x09"), PE_MEDIA_VIDEO, "flv"},
        {B("OggS\0\x02"), PE_MEDIA_VIDEO, "ogg"},
        {B("\0\0\1\xBA\x44"), PE_MEDIA_VIDEO, "mpeg"},
        {B("\x30\x26\xB2\x75\x8E\x66\xCF\x11\xA6\xD9"), PE_MEDIA_VIDEO, "asf"},
        {B("BM\x3A\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0"), PE_MEDIA_UNKNOWN, "bmp"},
        {B("\xEF\xBB\xBF  <svg xmlns="), PE_MEDIA_UNKNOWN, "svg"},
        {B("%PDF-1.7"), PE_MEDIA_UNKNOWN, "pdf"},
        {B("\n<!doctype HTML><html>"), PE_MEDIA_UNKNOWN, "html"},
        {B("\xFF\x0A\xFA"), PE_MEDIA_UNKNOWN, "jxl"},
        {B("hello world"), PE_MEDIA_UNKNOWN, "unknown"},
        {B("\xFF\xD8"), PE_MEDIA_UNKNOWN, "unknown"}, /* too short to be sure */
        {B(""), PE_MEDIA_UNKNOWN, "empty"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const char *f = NULL;
        pe_media_kind k = pe_media_sniff_format(c[i].bytes, c[i].n, &f);
        if (k != c[i].kind || strcmp(f, c[i].fmt))
            t_fail(__FILE__, __LINE__, "case %zu: kind %d fmt %s, expected %d %s", i, k, f, c[i].kind, c[i].fmt);
    }
    /* a JPEG without extension is an image; bytes decide, not names */
    char *src = fixture("rocket.jpg");
    size_t n;
    void *d = t_read_file(src, &n);
    char *p = tmp("no_extension");
    CHECK(t_write_file(p, d, n) == 0);
    float *out = malloc(sizeof(float) * N);
    pe_image_info info;
    CHECK_OK(pe_image_preprocess_file(p, S, NULL, out, &info));
    CHECK_STR(info.format, "jpeg");
    /* the buffer API gives the same pixels as the file API */
    float *out2 = malloc(sizeof(float) * N);
    CHECK_OK(pe_image_preprocess_buffer(d, n, "rocket", S, NULL, out2, NULL));
    CHECK(memcmp(out, out2, sizeof(float) * N) == 0);
    free(out), free(out2), free(p), free(d), free(src);
}

/* ---- thumbnails ---- */

static void test_thumbnail(void) {
    char *src = fixture("chelsea_rgba.png");
    void *j = NULL;
    size_t n = 0;
    CHECK_OK(pe_image_thumbnail_jpeg(src, 128, &j, &n));
    REQUIRE(j && n > 100);
    VipsImage *t = vips_image_new_from_buffer(j, n, "", NULL);
    REQUIRE(t);
    CHECK_EQ_INT(t->Xsize, 128);
    CHECK_EQ_INT(t->Ysize, 85);
    CHECK_EQ_INT(t->Bands, 3);
    g_object_unref(t);
    free(j);
    free(src);
    /* upright: orientation 6 stored 300x451 gives a 128x85 thumbnail */
    VipsImage *u = load("chelsea.png");
    VipsImage *st = unrotate(u, 6);
    char *p = tmp("thumb_o6.jpg");
    save(st, p, NULL);
    CHECK_OK(pe_image_thumbnail_jpeg(p, 128, &j, &n));
    t = j ? vips_image_new_from_buffer(j, n, "", NULL) : NULL;
    if (t) {
        CHECK_EQ_INT(t->Xsize, 128);
        CHECK_EQ_INT(t->Ysize, 85);
        g_object_unref(t);
    }
    free(j);
    /* a big JPEG goes through shrink-on-load */
    VipsImage *big = NULL;
    vips_resize(u, &big, 6.0, NULL);
    char *pb = tmp("big.jpg");
    save(big, pb, NULL);
    CHECK_OK(pe_image_thumbnail_jpeg(pb, 100, &j, &n));
    t = j ? vips_image_new_from_buffer(j, n, "", NULL) : NULL;
    if (t) {
        CHECK_EQ_INT(t->Xsize, 100);
        g_object_unref(t);
    }
    free(j);
    /* hostile input: same refusals as preprocessing */
    char *ph = tmp("thumb.html");
    CHECK(t_write_file(ph, "<html></html>", 13) == 0);
    CHECK_ERR(pe_image_thumbnail_jpeg(ph, 64, &j, &n), PERR_UNSUPPORTED);
    free(ph), free(p), free(pb);
    g_object_unref(u), g_object_unref(st), g_object_unref(big);
}

/* ---- concurrency ---- */

static const char *g_thread_files[] = {"astronaut.png", "chelsea.png", "camera.png",
                                       "rocket.jpg", "coffee.png", "chelsea_rgba.png"};
static float *g_expect[6];

static void *worker(void *arg) {
    long id = (long)arg;
    float *out = malloc(sizeof(float) * N);
    long bad = 0;
    for (int it = 0; it < 12; it++) {
        int f = (int)((id + it) % 6);
        char *p = fixture(g_thread_files[f]);
        if (pe_image_preprocess_file(p, S, NULL, out, NULL) || memcmp(out, g_expect[f], sizeof(float) * N)) bad++;
        free(p);
    }
    free(out);
    return (void *)bad;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_threads(void) {
    for (int f = 0; f < 6; f++) {
        char *p = fixture(g_thread_files[f]);
        /* Expectations from a single-threaded run of the same plain call. */
        g_expect[f] = malloc(sizeof(float) * N);
        CHECK_OK(pe_image_preprocess_file(p, S, NULL, g_expect[f], NULL));
        free(p);
    }
    long before = rss_kb();
    for (int round = 0; round < 3; round++) {
        pthread_t th[4];
        for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, (void *)i);
        for (int i = 0; i < 4; i++) {
            void *bad;
            pthread_join(th[i], &bad);
            CHECK_EQ_INT((long)bad, 0);
        }
    }
    long after = rss_kb();
    fprintf(stderr, "  RSS %ld -> %ld KB over 144 threaded decodes\n", before, after);
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(after - before < 64 * 1024);
#endif
    for (int f = 0; f < 6; f++) free(g_expect[f]);
}

static void test_rgb_frames(void) {
    /* preprocess_rgb with a stride equals the file path on the same pixels */
    char *p = fixture("chelsea.png");
    uint8_t *pix;
    int w, h, b;
    pe_image_opts o;
    pe_image_opts_default(&o, S);
    REQUIRE_OK(pe_image_decode_u8(p, &o, &pix, &w, &h, &b, NULL));
    CHECK_EQ_INT(b, 3);
    size_t stride = (size_t)w * 3 + 13;
    uint8_t *padded = malloc(stride * h);
    for (int y = 0; y < h; y++) memcpy(padded + y * stride, pix + (size_t)y * w * 3, (size_t)w * 3);
    float *a = malloc(sizeof(float) * N), *f = pre(p, 0);
    CHECK_OK(pe_image_preprocess_rgb(padded, w, h, stride, S, a));
    if (f) CHECK(memcmp(a, f, sizeof(float) * N) == 0);
    CHECK_ERR(pe_image_preprocess_rgb(padded, w, h, 10, S, a), PERR_INVALID);
    free(a), free(f), free(pix), free(padded), free(p);
}

int main(void) {
    if (pe_image_init()) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
    g_dir = t_tmpdir("image_formats");
    if (!g_dir) return 1;
    T_RUN(test_sniff);
    T_RUN(test_orientation);
    T_RUN(test_alpha_and_grey);
    T_RUN(test_16bit);
    T_RUN(test_cmyk_jpeg);
    T_RUN(test_icc_profile);
    T_RUN(test_formats);
    T_RUN(test_pages_and_animation);
    T_RUN(test_thumbnail);
    T_RUN(test_rgb_frames);
    T_RUN(test_threads);
    t_rmtree(g_dir);
    free(g_dir);
    return t_done();
}
