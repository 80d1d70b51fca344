/* bench_shrink: how far shrink-on-load moves embeddings. For every image
 * under the given files/directories, the embedding of the exact path (full
 * decode, shrink_on_load 0) against the embedding with shrink-on-load at
 * k = 1, 2 and 4 (pe_image_opts.shrink_on_load), with the model given:
 * cosine min / median / mean, images shrunk, and preprocessing ms per image
 * (median of the per-image times; one thread; noisy on a shared machine).
 *
 *   bench_shrink --model M.safetensors [--threads N] DIR|FILE...
 */
#define _GNU_SOURCE
#include "bench/common/bench_util.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_image.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int threads = 2;
    bench_files l = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else bench_files_add(&l, argv[i]);
    }
    if (!model || !l.n) {
        fprintf(stderr, "usage: bench_shrink --model M [--threads N] DIR|FILE...\n");
        return 2;
    }
    pe_model *m = NULL;
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    if (pe_model_load(model, &lo, &m)) { fprintf(stderr, "model: %s\n", perr_msg()); return 1; }
    const pe_config *c = pe_model_config(m);
    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = 1;
    co.n_threads = threads;
    pe_ctx *ctx = NULL;
    if (pe_ctx_new(m, &co, &ctx)) { fprintf(stderr, "ctx: %s\n", perr_msg()); return 1; }
    int S = c->image_size, D = c->output_dim;
    enum { NK = 3 };
    const int ks[NK] = {1, 2, 4};
    float *px = malloc(sizeof(float) * 3 * S * S), *e0 = malloc(sizeof(float) * D),
          *e1 = malloc(sizeof(float) * D);
    double *cs[NK], *tm[NK + 1];
    int nsh[NK] = {0};
    for (int k = 0; k < NK; k++) cs[k] = malloc(sizeof(double) * l.n);
    for (int k = 0; k <= NK; k++) tm[k] = malloc(sizeof(double) * l.n);
    double worst[NK];
    const char *worst_name[NK];
    for (int k = 0; k < NK; k++) worst[k] = 2, worst_name[k] = "";
    int n = 0;
    for (int i = 0; i < l.n; i++) {
        pe_image_opts o;
        pe_image_opts_default(&o, S);
        o.shrink_on_load = 0;
        pe_image_info info;
        double t0 = bench_now();
        if (pe_image_preprocess_ex(l.v[i], NULL, 0, NULL, &o, px, &info)) continue;
        tm[0][n] = (bench_now() - t0) * 1e3;
        if (pe_encode_pixels(ctx, px, 1, e0)) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
        for (int k = 0; k < NK; k++) {
            o.shrink_on_load = ks[k];
            t0 = bench_now();
            if (pe_image_preprocess_ex(l.v[i], NULL, 0, NULL, &o, px, NULL)) {
                fprintf(stderr, "%s\n", perr_msg());
                return 1;
            }
            tm[k + 1][n] = (bench_now() - t0) * 1e3;
            if (pe_encode_pixels(ctx, px, 1, e1)) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
            cs[k][n] = cosine(e0, e1, D);
            if (cs[k][n] < 1.0 - 1e-7) nsh[k]++;
            if (cs[k][n] < worst[k]) worst[k] = cs[k][n], worst_name[k] = l.v[i];
        }
        n++;
    }
    printf("bench_shrink: model %s (%s, %d px, dim %d), %d images of %d files, min side %d\n", model,
           c->name, S, D, n, l.n, 1024);
    printf("| shrink_on_load | images changed | cosine min | cosine median | cosine mean | preprocess ms median | worst file |\n");
    printf("|---|---|---|---|---|---|---|\n");
    qsort(tm[0], n, sizeof(double), bench_cmp_double);
    printf("| 0 (exact) | 0 | 1 | 1 | 1 | %.1f | |\n", n ? tm[0][n / 2] : 0);
    for (int k = 0; k < NK; k++) {
        double mean = 0;
        for (int i = 0; i < n; i++) mean += cs[k][i];
        qsort(cs[k], n, sizeof(double), bench_cmp_double);
        qsort(tm[k + 1], n, sizeof(double), bench_cmp_double);
        printf("| %d | %d | %.7f | %.7f | %.7f | %.1f | %s |\n", ks[k], nsh[k], n ? cs[k][0] : 0,
               n ? cs[k][n / 2] : 0, n ? mean / n : 0, n ? tm[k + 1][n / 2] : 0, worst_name[k]);
    }
    printf("(cosine median over all images, unchanged ones included: see 'images changed')\n");
    pe_ctx_free(ctx);
    pe_model_free(m);
    for (int k = 0; k < NK; k++) free(cs[k]);
    for (int k = 0; k <= NK; k++) free(tm[k]);
    bench_files_free(&l);
    free(px); free(e0); free(e1);
    return 0;
}
