/* Conformance of pe_image against the PE reference preprocessing (PIL
 * resize, tiny-a goldens): decoded pixels (sha256), resized u8 (sha256),
 * float pixels, video-frame crops and the non-native size. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *g_inputs;

static char *sha256_hex(const void *d, size_t n) {
    gchar *h = g_compute_checksum_for_data(G_CHECKSUM_SHA256, d, n);
    char *r = strdup(h);
    g_free(h);
    return r;
}

/* golden float -> the u8 it came from */
static int to_u8(float x) { return (int)lrintf((x * 0.5f + 0.5f) * 255.0f); }

typedef struct diff { double max, mean; size_t exact; } diff;

static diff diff_u8(const float *a, const float *g, size_t n) {
    diff d = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)to_u8(a[i]) - to_u8(g[i]));
        if (e > d.max) d.max = e;
        d.mean += e;
        if (a[i] == g[i]) d.exact++;
    }
    d.mean /= n;
    return d;
}

static void check_image(cJSON *img) {
    const char *stem = cJSON_GetObjectItem(img, "stem")->valuestring;
    const char *file = cJSON_GetObjectItem(img, "file")->valuestring;
    char *path = t_path("%s/tiny-a/%s", t_fixtures(), file);
    char *gname = t_path("img_%s_pixels", stem);
    size_t n = 0;
    float *g = t_golden_f32("tiny-a", gname, &n);
    if (!g || n != 3 * 64 * 64) { t_fail(__FILE__, __LINE__, "golden %s", gname); goto out; }

    /* 1. Decode exactly as Pillow (ICC and EXIF off: the reference ignores both). */
    pe_image_opts ref;
    pe_image_opts_default(&ref, 64);
    ref.icc = 0, ref.autorotate = 0;
    uint8_t *pix = NULL;
    int w, h, b;
    pe_image_info info;
    CHECK_OK(pe_image_decode_u8(path, &ref, &pix, &w, &h, &b, &info));
    if (pix) {
        CHECK_EQ_INT(w, cJSON_GetObjectItem(img, "width")->valueint);
        CHECK_EQ_INT(h, cJSON_GetObjectItem(img, "height")->valueint);
        char *s = sha256_hex(pix, (size_t)w * h * b);
        const char *want = cJSON_GetObjectItem(img, "decoded_sha256")->valuestring;
        if (strcmp(s, want)) t_fail(__FILE__, __LINE__, "%s: decoded sha256 %s != %s", stem, s, want);
        free(s);
        free(pix);
    }

    /* 2. Reference mode: resized u8 and float pixels bit-exact. */
    float *out = malloc(sizeof(float) * n);
    CHECK_OK(pe_image_preprocess_ex(path, NULL, 0, NULL, &ref, out, &info));
    diff d = diff_u8(out, g, n);
    uint8_t u8[3 * 64 * 64]; /* HWC for the hash */
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 64 * 64; i++) u8[i * 3 + c] = (uint8_t)to_u8(out[c * 4096 + i]);
    char *s = sha256_hex(u8, sizeof u8);
    const char *want = cJSON_GetObjectItem(img, "resized_u8_sha256")->valuestring;
    fprintf(stderr, "  %-13s ref mode:     max %.0f mean %.4f u8 levels, %zu/%zu floats bit-exact, resized sha256 %s\n",
            stem, d.max, d.mean, d.exact, n, strcmp(s, want) ? "DIFFERS" : "equal");
    CHECK(strcmp(s, want) == 0);
    CHECK(d.exact == n);
    free(s);

    /* 3. Default mode (ICC imported, EXIF applied): same unless the file
     * carries a non-sRGB profile (rocket.jpg: Adobe RGB). */
    CHECK_OK(pe_image_preprocess_file(path, 64, NULL, out, &info));
    d = diff_u8(out, g, n);
    fprintf(stderr, "  %-13s default mode: max %.0f mean %.4f u8 levels\n", stem, d.max, d.mean);
    if (!strcmp(stem, "rocket")) CHECK(d.mean < 8 && d.max < 64);
    else CHECK(d.max == 0);
    free(out);
out:
    free(g);
    free(gname);
    free(path);
}

static void test_fixture_pixels(void) {
    cJSON *imgs = cJSON_GetObjectItem(g_inputs, "images");
    REQUIRE(imgs && cJSON_GetArraySize(imgs) == 6);
    cJSON *img;
    cJSON_ArrayForEach(img, imgs) check_image(img);
}

/* video_frames: astronaut.png cropped with PIL Image.crop(box), each crop
 * preprocessed like an image; ours go through pe_image_preprocess_rgb with
 * the crop's offset and the full image's stride (what the video path does
 * with a decoded frame). */
static void test_video_frames(void) {
    cJSON *boxes = cJSON_GetObjectItem(cJSON_GetObjectItem(g_inputs, "video"), "boxes_ltrb");
    REQUIRE(boxes && cJSON_GetArraySize(boxes) == 8);
    char *path = t_path("%s/tiny-a/images/astronaut.png", t_fixtures());
    pe_image_opts ref;
    pe_image_opts_default(&ref, 64);
    ref.icc = 0, ref.autorotate = 0;
    uint8_t *pix = NULL;
    int w, h, b;
    REQUIRE_OK(pe_image_decode_u8(path, &ref, &pix, &w, &h, &b, NULL));
    REQUIRE(b == 3);
    size_t n = 0;
    float *g = t_golden_f32("tiny-a", "video_frames", &n);
    REQUIRE(g && n == 8 * 3 * 64 * 64);
    float out[3 * 64 * 64];
    for (int i = 0; i < 8; i++) {
        cJSON *bx = cJSON_GetArrayItem(boxes, i);
        int l = cJSON_GetArrayItem(bx, 0)->valueint, t = cJSON_GetArrayItem(bx, 1)->valueint;
        int r = cJSON_GetArrayItem(bx, 2)->valueint, btm = cJSON_GetArrayItem(bx, 3)->valueint;
        CHECK_OK(pe_image_preprocess_rgb(pix + ((size_t)t * w + l) * 3, r - l, btm - t, (size_t)w * 3, 64, out));
        diff d = diff_u8(out, g + (size_t)i * 3 * 64 * 64, 3 * 64 * 64);
        fprintf(stderr, "  frame %d crop %dx%d: max %.0f mean %.4f, %zu/12288 bit-exact\n", i, r - l, btm - t, d.max, d.mean, d.exact);
        CHECK(d.exact == 3 * 64 * 64);
    }
    free(g);
    free(pix);
    free(path);
}

/* nonnative_astronaut_96x48_pixels: Resize((96, 48)) = 48 wide, 96 high. */
static void test_nonnative_size(void) {
    char *path = t_path("%s/tiny-a/images/astronaut.png", t_fixtures());
    size_t n = 0;
    float *g = t_golden_f32("tiny-a", "nonnative_astronaut_96x48_pixels", &n);
    REQUIRE(g && n == 3 * 96 * 48);
    pe_image_opts o;
    pe_image_opts_default(&o, 0);
    o.out_w = 48, o.out_h = 96;
    float *out = malloc(sizeof(float) * n);
    CHECK_OK(pe_image_preprocess_ex(path, NULL, 0, NULL, &o, out, NULL));
    diff d = diff_u8(out, g, n);
    fprintf(stderr, "  96x48: max %.0f mean %.4f, %zu/%zu bit-exact\n", d.max, d.mean, d.exact, n);
    CHECK(d.exact == n);
    free(out);
    free(g);
    free(path);
}

int main(void) {
    char *p = t_path("%s/tiny-a/golden/inputs.json", t_fixtures());
    char *txt = t_read_file(p, NULL);
    free(p);
    g_inputs = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    if (!g_inputs) { fprintf(stderr, "cannot read inputs.json\n"); return 1; }
    T_RUN(test_fixture_pixels);
    T_RUN(test_video_frames);
    T_RUN(test_nonnative_size);
    cJSON_Delete(g_inputs);
    return t_done();
}
