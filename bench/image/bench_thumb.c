/* bench_thumb: what keeping a thumbnail costs at ingest. For every image
 * under the given files/directories, one thread, interleaved (each round
 * runs the three on the same file, page cache warm):
 *   prep        pe_image_preprocess_ex: the encoder's input only
 *   prep+thumb  pe_image_preprocess_thumb: the same decode feeds a 256 px
 *               WebP thumbnail (what ingest does)
 *   prep, thumb pe_image_preprocess_ex then pe_image_thumbnail: a second
 *               decode (what it would cost without sharing the decode)
 * Prints the median over files of each file's median ms, the ratio to
 * prep, and the thumbnails' sizes. Medians of medians on a shared machine:
 * read the ratios, with the load average in the header.
 *
 *   bench_thumb [--rounds N] [--size S] DIR|FILE...
 */
#define _GNU_SOURCE
#include "bench/common/bench_util.h"
#include "common/perr.h"
#include "encoder/pe_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
}

static void header(int n, int rounds, int size) {
    char line[512], cpu[256] = "?", flags[64] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10) && cpu[0] == '?') {
            char *c = strchr(line, ':');
            if (c) snprintf(cpu, sizeof cpu, "%s", c + 2);
            cpu[strcspn(cpu, "\n")] = 0;
        }
        if (!strncmp(line, "flags", 5) && !flags[0])
            snprintf(flags, sizeof flags, "%s%s", strstr(line, " avx2") ? "avx2" : "no-avx2",
                     strstr(line, " avx512f") ? " avx512f" : "");
    }
    if (f) fclose(f);
    double load[3] = {0};
    getloadavg(load, 3);
    printf("# bench_thumb: %d images, %d rounds, encoder input %dx%d, thumbnail 256 px WebP Q75, 1 thread\n",
           n, rounds, size, size);
    printf("# cpu: %s (%s), %ld online cores, load average %.2f %.2f %.2f\n", cpu, flags,
           sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
}

int main(int argc, char **argv) {
    int rounds = 3, size = 384;
    bench_files l = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else bench_files_add(&l, argv[i]);
    }
    if (!l.n || rounds < 1 || size < 16) {
        fprintf(stderr, "usage: bench_thumb [--rounds N] [--size S] DIR|FILE...\n");
        return 2;
    }
    pe_image_set_vips_threads(1);
    float *px = malloc(sizeof(float) * 3 * (size_t)size * size);
    double *med[3], *r = malloc(sizeof(double) * (size_t)rounds), *bytes = malloc(sizeof(double) * l.n);
    for (int k = 0; k < 3; k++) med[k] = malloc(sizeof(double) * l.n);
    int n = 0;
    pe_image_opts o;
    pe_image_opts_default(&o, size);
    pe_thumb_opts to;
    pe_thumb_opts_default(&to);
    for (int i = 0; i < l.n; i++) {
        double t[3][64];
        int ok = 1, R = rounds > 64 ? 64 : rounds;
        size_t tb = 0;
        for (int k = 0; k < R && ok; k++) {
            pe_thumb th;
            double t0 = bench_now();
            ok &= pe_image_preprocess_ex(l.v[i], NULL, 0, NULL, &o, px, NULL) == 0;
            t[0][k] = bench_now() - t0;
            t0 = bench_now();
            ok &= pe_image_preprocess_thumb(l.v[i], NULL, 0, NULL, &o, px, NULL, &to, &th) == 0;
            t[1][k] = bench_now() - t0;
            tb = th.len;
            pe_thumb_clear(&th);
            t0 = bench_now();
            ok &= pe_image_preprocess_ex(l.v[i], NULL, 0, NULL, &o, px, NULL) == 0;
            ok &= pe_image_thumbnail(l.v[i], NULL, 0, NULL, &to, &th) == 0;
            t[2][k] = bench_now() - t0;
            pe_thumb_clear(&th);
        }
        if (!ok) { perr_clear(); continue; } /* not an image */
        for (int k = 0; k < 3; k++) {
            for (int j = 0; j < R; j++) r[j] = t[k][j];
            med[k][n] = median(r, R) * 1e3;
        }
        bytes[n++] = (double)tb;
    }
    header(n, rounds, size);
    if (!n) { fprintf(stderr, "no image decoded\n"); return 1; }
    const char *name[3] = {"prep", "prep+thumb (shared decode)", "prep, thumb (second decode)"};
    double m0 = median(med[0], n);
    printf("%-30s %12s %10s\n", "", "median ms", "x prep");
    for (int k = 0; k < 3; k++) {
        double m = k ? median(med[k], n) : m0;
        printf("%-30s %12.2f %10.2f\n", name[k], m, m / m0);
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += bytes[i];
    double mb = median(bytes, n);
    printf("thumbnail bytes: median %.0f, mean %.0f, max %.0f\n", mb, sum / n, bytes[n - 1]);
    for (int k = 0; k < 3; k++) free(med[k]);
    free(r); free(bytes); free(px);
    bench_files_free(&l);
    return 0;
}
