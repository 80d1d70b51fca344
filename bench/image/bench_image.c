/* bench_image: still-image preprocessing cost (decode + colour + Pillow
 * bilinear + normalize) per file, against libvips decoding alone.
 *
 * Makes its inputs from the tiny-a photos (12 MP JPEG sRGB-tagged, 12 MP
 * JPEG with a Display P3 profile, 12 MP PNG, 24 MP JPEG) in $TMPDIR, runs each case `reps` times after a warm-up, prints the
 * median and spread, and a checksum of the pixels so a fast but wrong build
 * shows. One thread; libvips concurrency 1 (as percept runs it).
 *   bench_image [reps=7] [size=384]
 *
 * With files or directories after reps and size (real photos, e.g.
 * /usr/share/backgrounds), prints per file the preprocessing time on the
 * exact path (full decode, shrink_on_load 0) and with shrink-on-load
 * (default options) and the factor used, then the mean per image:
 *   bench_image 3 384 /usr/share/backgrounds
 */
#define _GNU_SOURCE
#include "bench/common/bench_util.h"
#include "common/perr.h"
#include "encoder/pe_image.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

static double decode_only(const char *path) {
    VipsImage *im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    double avg = 0;
    if (!im || vips_avg(im, &avg, NULL)) fprintf(stderr, "%s: %s\n", path, vips_error_buffer());
    if (im) g_object_unref(im);
    return avg;
}

static double median_ms(const char *path, const pe_image_opts *o, int reps, float *out, int *ok) {
    double t[64];
    if (reps > 64) reps = 64;
    *ok = pe_image_preprocess_ex(path, NULL, 0, NULL, o, out, NULL) == PERR_OK; /* warm-up */
    if (!*ok) return 0;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        pe_image_preprocess_ex(path, NULL, 0, NULL, o, out, NULL);
        t[r] = (bench_now() - t0) * 1e3;
    }
    qsort(t, reps, sizeof t[0], bench_cmp_double);
    return t[reps / 2];
}

/* Per-file table over real photos: exact path against shrink-on-load. */
static int time_files(int reps, int size, char **paths, int np) {
    bench_files l = {0};
    for (int i = 0; i < np; i++) bench_files_add(&l, paths[i]);
    pe_image_opts ex, sh;
    pe_image_opts_default(&ex, size);
    ex.shrink_on_load = 0;
    pe_image_opts_default(&sh, size);
    float *a = malloc(sizeof(float) * 3 * size * size), *b = malloc(sizeof(float) * 3 * size * size);
    printf("bench_image: size %d, %d reps (median), 1 thread, libvips %s, shrink_on_load %d, "
           "min side %d (times on a shared machine are noisy)\n",
           size, reps, vips_version_string(), sh.shrink_on_load, sh.shrink_min_side);
    printf("| file | format | size | shrink | exact ms | shrink-on-load ms | max u8 diff |\n");
    printf("|---|---|---|---|---|---|---|\n");
    double se = 0, ss = 0;
    int n = 0;
    for (int i = 0; i < l.n; i++) {
        pe_image_info info;
        if (pe_image_preprocess_ex(l.v[i], NULL, 0, NULL, &ex, a, &info)) {
            printf("| %s | refused: %s |||||\n", l.v[i], perr_msg());
            continue;
        }
        int oka, okb;
        double te = median_ms(l.v[i], &ex, reps, a, &oka), ts = median_ms(l.v[i], &sh, reps, b, &okb);
        if (!oka || !okb) continue;
        int shorter = info.width < info.height ? info.width : info.height, f = 1;
        if (sh.shrink_on_load > 0 && shorter >= sh.shrink_min_side &&
            (!strcmp(info.format, "jpeg") || !strcmp(info.format, "webp")))
            while (f < 8 && shorter / (f * 2) >= sh.shrink_on_load * size) f *= 2;
        double md = 0;
        for (int k = 0; k < 3 * size * size; k++) {
            double d = fabs((double)a[k] - b[k]) * 127.5;
            if (d > md) md = d;
        }
        const char *nm = strrchr(l.v[i], '/');
        printf("| %s | %s | %dx%d | 1/%d | %.1f | %.1f | %.0f |\n", nm ? nm + 1 : l.v[i], info.format,
               info.width, info.height, f, te, ts, md);
        se += te, ss += ts, n++;
    }
    if (n) printf("| mean of %d images | | | | %.1f | %.1f | |\n", n, se / n, ss / n);
    bench_files_free(&l);
    free(a); free(b);
    return 0;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7, size = argc > 2 ? atoi(argv[2]) : 384;
    if (reps < 1) reps = 1;
    if (pe_image_init()) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
    if (argc > 3) return time_files(reps, size, argv + 3, argc - 3);
    const char *fx = getenv("PERCEPT_FIXTURES");
    char src[1024], dir[] = "/tmp/bench_image_XXXXXX";
    snprintf(src, sizeof src, "%s/tiny-a/images/astronaut.png", fx && *fx ? fx : "../shared/pe-fixtures");
    if (!mkdtemp(dir)) return 1;
    VipsImage *a = vips_image_new_from_file(src, NULL), *b12 = NULL, *b24 = NULL;
    if (!a) { fprintf(stderr, "%s: %s\n(set PERCEPT_FIXTURES)\n", src, vips_error_buffer()); return 1; }
    vips_resize(a, &b12, 4000.0 / 512, "vscale", 3000.0 / 512, NULL);
    vips_resize(a, &b24, 6000.0 / 512, "vscale", 4000.0 / 512, NULL);
    char p12j[1100], p12p[1100], p24j[1100];
    snprintf(p12j, sizeof p12j, "%s/12mp.jpg", dir);
    snprintf(p12p, sizeof p12p, "%s/12mp.png", dir);
    snprintf(p24j, sizeof p24j, "%s/24mp.jpg", dir);
    vips_jpegsave(b12, p12j, "Q", 90, NULL);
    vips_pngsave(b12, p12p, "compression", 1, NULL);
    vips_jpegsave(b24, p24j, "Q", 90, NULL);
    char p12p3[1100];
    snprintf(p12p3, sizeof p12p3, "%s/12mp_p3.jpg", dir);
    VipsImage *p3 = NULL;
    if (!vips_icc_transform(b12, &p3, "p3", "input_profile", "srgb", NULL)) {
        vips_jpegsave(p3, p12p3, "Q", 90, NULL);
        g_object_unref(p3);
    }
    const char *cases[][2] = {{"astronaut.png 512x512", src}, {"4000x3000 JPEG Q90", p12j},
                              {"4000x3000 JPEG P3 ICC", p12p3}, {"4000x3000 PNG", p12p},
                              {"6000x4000 JPEG Q90", p24j}};
    float *out = malloc(sizeof(float) * 3 * size * size);
    printf("bench_image: size %d, %d reps, 1 thread, libvips %s (times on a shared machine are noisy)\n",
           size, reps, vips_version_string());
    printf("%-24s %12s %12s %12s %14s\n", "input", "preproc ms", "spread ms", "decode ms", "checksum");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double t[64], d[64], sum = 0;
        if (reps > 64) reps = 64;
        pe_image_preprocess_file(cases[c][1], size, NULL, out, NULL); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double t0 = bench_now();
            if (pe_image_preprocess_file(cases[c][1], size, NULL, out, NULL)) {
                fprintf(stderr, "%s\n", perr_msg());
                return 1;
            }
            t[r] = (bench_now() - t0) * 1e3;
            t0 = bench_now();
            decode_only(cases[c][1]);
            d[r] = (bench_now() - t0) * 1e3;
        }
        for (int i = 0; i < 3 * size * size; i++) sum += out[i] * (1 + i % 7);
        qsort(t, reps, sizeof t[0], bench_cmp_double);
        qsort(d, reps, sizeof d[0], bench_cmp_double);
        printf("%-24s %12.1f %12.1f %12.1f %14.4f\n", cases[c][0], t[reps / 2], t[reps - 1] - t[0], d[reps / 2], sum);
    }
    free(out);
    unlink(p12j), unlink(p12p), unlink(p24j), unlink(p12p3), rmdir(dir);
    g_object_unref(a), g_object_unref(b12), g_object_unref(b24);
    return 0;
}
