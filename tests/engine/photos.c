/* photos: see photos.h. */
#define _GNU_SOURCE
#include "photos.h"
#include "tests/common/testlib.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

static const char *const photo_dirs[] = {
    "/usr/share/backgrounds",                        /* gnome, mate, ukui */
    NULL,
};

static int is_photo_name(const char *n) {
    const char *dot = strrchr(n, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png") ||
                   !strcasecmp(dot, ".webp"));
}

typedef struct plist { char **v; int n, cap; } plist;

static void plist_push(plist *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    l->v[l->n++] = strdup(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void walk(const char *dir, plist *out, int depth) {
    DIR *d = opendir(dir);
    if (!d || depth > 4) { if (d) closedir(d); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) walk(p, out, depth + 1);
        else if (S_ISREG(sb.st_mode) && sb.st_size > 20000 && is_photo_name(e->d_name)) plist_push(out, p);
    }
    closedir(d);
}

static void quiet_log(const gchar *d, GLogLevelFlags l, const gchar *m, gpointer u) {
    (void)d; (void)l; (void)m; (void)u;
}

static int grey32(const char *path, unsigned char out[32 * 32]);

/* Same picture as one of sig[0..n): packages ship one wallpaper at several
 * resolutions, and the fixture photos are copies of python3-skimage's data
 * (and sort first or last depending on where the checkout lives). */
static int seen_before(unsigned char (*sig)[32 * 32], int n, const unsigned char *s) {
    for (int k = 0; k < n; k++) {
        long d = 0;
        for (int x = 0; x < 32 * 32; x++) d += abs((int)sig[k][x] - (int)s[x]);
        if (d < 6L * 32 * 32) return 1;
    }
    return 0;
}

int photos_gather(photo_set *ps, int max, int max_side) {
    memset(ps, 0, sizeof *ps);
    if (VIPS_INIT("percept-tests")) { fprintf(stderr, "photos: vips init failed\n"); return -1; }
    /* some packaged PNGs carry odd ICC chunks: libpng's warnings are noise here */
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet_log, NULL);
    plist src = {0};
    for (int i = 0; photo_dirs[i]; i++) walk(photo_dirs[i], &src, 0);
    char fx[4096];
    snprintf(fx, sizeof fx, "%s/tiny-a/images", t_fixtures());
    walk(fx, &src, 0);
    qsort(src.v, (size_t)src.n, sizeof *src.v, cmp_str);
    ps->dir = t_tmpdir("photos");
    plist out = {0};
    unsigned char (*sig)[32 * 32] = calloc((size_t)src.n + 1, sizeof *sig);
    for (int i = 0; i < src.n && (max <= 0 || out.n < max); i++) {
        VipsImage *im = NULL;
        if (vips_thumbnail(src.v[i], &im, max_side, "size", VIPS_SIZE_DOWN, NULL)) {
            vips_error_clear();
            continue;
        }
        /* flatten alpha, force 3-band sRGB 8-bit */
        VipsImage *flat = NULL;
        if (vips_image_hasalpha(im)) {
            if (vips_flatten(im, &flat, NULL)) { g_object_unref(im); vips_error_clear(); continue; }
            g_object_unref(im);
            im = flat;
        }
        VipsImage *srgb = NULL;
        if (vips_colourspace(im, &srgb, VIPS_INTERPRETATION_sRGB, NULL)) { g_object_unref(im); vips_error_clear(); continue; }
        g_object_unref(im);
        char p[4096];
        snprintf(p, sizeof p, "%s/p%03d.jpg", ps->dir, out.n);
        int bad = vips_jpegsave(srgb, p, "Q", 92, NULL);
        g_object_unref(srgb);
        if (bad) { vips_error_clear(); continue; }
        if (grey32(p, sig[out.n]) != 0 || seen_before(sig, out.n, sig[out.n])) { unlink(p); continue; }
        plist_push(&out, p);
    }
    free(sig);
    for (int i = 0; i < src.n; i++) free(src.v[i]);
    free(src.v);
    ps->paths = out.v;
    ps->n = out.n;
    return out.n;
}

static int grey32(const char *path, unsigned char out[32 * 32]) {
    VipsImage *im = NULL, *g = NULL, *sq = NULL;
    if (vips_thumbnail(path, &im, 32, "height", 32, "size", VIPS_SIZE_FORCE, NULL)) { vips_error_clear(); return -1; }
    int bad = vips_colourspace(im, &g, VIPS_INTERPRETATION_B_W, NULL);
    g_object_unref(im);
    if (bad) { vips_error_clear(); return -1; }
    bad = vips_extract_band(g, &sq, 0, NULL);
    g_object_unref(g);
    if (bad) { vips_error_clear(); return -1; }
    size_t len = 0;
    unsigned char *px = vips_image_write_to_memory(sq, &len);
    g_object_unref(sq);
    if (!px || len != 32 * 32) { g_free(px); return -1; }
    memcpy(out, px, 32 * 32);
    g_free(px);
    return 0;
}

void photos_free(photo_set *ps) {
    for (int i = 0; i < ps->n; i++) free(ps->paths[i]);
    free(ps->paths);
    if (ps->dir) { t_rmtree(ps->dir); free(ps->dir); }
    memset(ps, 0, sizeof *ps);
}

const char *photos_variant_name(photo_variant v) {
    static const char *n[] = {"reencode-q60", "reencode-png", "resize-70", "crop-90", "rot90", "flip"};
    return n[v];
}

int photos_make_variant(const char *src, const char *dst, photo_variant v) {
    VipsImage *in = vips_image_new_from_file(src, NULL);
    if (!in) { vips_error_clear(); return -1; }
    VipsImage *out = NULL;
    int bad = 0;
    int w = vips_image_get_width(in), h = vips_image_get_height(in);
    switch (v) {
    case PV_REENCODE_Q60: case PV_REENCODE_PNG: out = in; g_object_ref(in); break;
    case PV_RESIZE_70: bad = vips_resize(in, &out, 0.7, NULL); break;
    case PV_CROP_90: bad = vips_crop(in, &out, w / 20, h / 20, w - w / 10, h - h / 10, NULL); break;
    case PV_ROT90: bad = vips_rot(in, &out, VIPS_ANGLE_D90, NULL); break;
    case PV_FLIP: bad = vips_flip(in, &out, VIPS_DIRECTION_HORIZONTAL, NULL); break;
    }
    if (!bad) {
        if (v == PV_REENCODE_PNG) bad = vips_pngsave(out, dst, NULL);
        else bad = vips_jpegsave(out, dst, "Q", v == PV_REENCODE_Q60 ? 60 : 85, NULL);
    }
    if (out) g_object_unref(out);
    g_object_unref(in);
    if (bad) vips_error_clear();
    return bad ? -1 : 0;
}
