/* bench_stages: where a vision forward pass spends its time, per
 * instruction-set level of the encoder's own kernels, in one run.
 *
 * For each model (random weights in the official shapes, written and
 * loaded as bench_encoder does) and each kernel level this CPU has
 * (pe_cpu_force_isa: scalar, AVX2, AVX-512), times on one thread, batch 1:
 *   - the whole forward pass (pe_encode_pixels),
 *   - the stages at the tower's shapes, layer by layer, each timed alone:
 *     attention (pack + pe_attn_rows over every head, or the sgemm path
 *     where the tower takes it), elementwise (2 LayerNorms, RoPE and the
 *     q scale, 2 residual adds, GELU on the MLP hidden rows), GEMM
 *     (pe_linear on the four weight matrices in PE_PARTS row blocks);
 * all timed in this thread's CPU time (CLOCK_THREAD_CPUTIME_ID: a 1-thread
 * context runs on the caller, and time slices lost to other processes on a
 * shared machine do not count), medians of --reps runs;
 * "rest" = forward - the three (patch embedding,
 * attention pool, task overheads). GEMMs are not this module's kernels
 * (OpenBLAS, or whatever pe_linear calls); they are timed so that the
 * shares add up.
 *
 * usage: bench_stages [--models T16,B16] [--reps N] [--tmp DIR]
 */
#define _GNU_SOURCE
#include "bench/common/bench_ckpt.h"
#include "bench/common/bench_util.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_config.h"
#include "encoder/pe_cpu.h"
#include "encoder/pe_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { ST_ATTN, ST_ELEM, ST_GEMM, ST_N };

/* This thread's CPU seconds (everything runs on it: 1-thread context). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct bufs {
    float *x, *h, *qkv, *att, *hid, *scr, *g, *b, *bias3, *bias, *biasf, *w3, *wo, *wf, *wp, *cs, *sn;
} bufs;

static float *rnd(size_t n, float scale) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64); /* as pe_ctx's buffers */
    for (size_t i = 0; i < n; i++) p[i] = bench_urand() * scale;
    return p;
}

/* One layer's stages at the shapes of c (T tokens, 1 image); adds the
 * seconds of each stage to t[]. */
static void layer(const pe_config *c, int T, bufs *B, double t[ST_N]) {
    int W = c->width, H = c->heads, hd = W / H, F = c->mlp_width, rb = (T + 3) / 4;
    double t0 = cpu_now();
    for (int r = 0; r < T; r++) pe_layernorm(B->x + (size_t)r * W, B->h + (size_t)r * W, W, B->g, B->b, 1e-5f);
    t[ST_ELEM] += cpu_now() - t0;
    t0 = cpu_now();
    for (int r0 = 0; r0 < T; r0 += rb) {
        int n = T - r0 < rb ? T - r0 : rb;
        pe_linear(n, 3 * W, W, B->h + (size_t)r0 * W, W, B->w3, B->bias3, B->qkv + (size_t)r0 * 3 * W, 3 * W);
    }
    t[ST_GEMM] += cpu_now() - t0;
    t0 = cpu_now();
    float scale = 1.0f / sqrtf((float)hd);
    for (int r = 1; r < T; r++) {
        float *q = B->qkv + (size_t)r * 3 * W, *k = q + W;
        pe_rope_heads(q, H, hd, B->cs, B->sn, scale); /* as pe_vision.c qkv_task */
        pe_rope_heads(k, H, hd, B->cs, B->sn, 1.0f);
    }
    t[ST_ELEM] += cpu_now() - t0;
    t0 = cpu_now();
    for (int hh = 0; hh < H; hh++) {
        const float *Q = B->qkv + hh * hd, *K = Q + W, *V = Q + 2 * W;
        float *O = B->att + hh * hd;
        if (pe_attn_fast_ok(hd)) {
            pe_attn_pack(T, hd, K, 3 * W, V, 3 * W, B->scr);
            pe_attn_rows(T, T, hd, Q, 3 * W, B->scr, O, W);
        } else { /* the tower's sgemm path (pe_vision.c attn_task) */
            for (int i0 = 0; i0 < T; i0 += 64) {
                int ni = T - i0 < 64 ? T - i0 : 64;
                float *S = B->scr, *sums = S + (size_t)64 * T;
                pe_gemm_nt(ni, T, hd, Q + (size_t)i0 * 3 * W, 3 * W, K, 3 * W, 0.0f, S, T);
                for (int i = 0; i < ni; i++) sums[i] = pe_softmax_exp(S + (size_t)i * T, T);
                pe_gemm_nn(ni, hd, T, S, T, V, 3 * W, 0.0f, O + (size_t)i0 * W, W);
                for (int i = 0; i < ni; i++) pe_scale(O + (size_t)(i0 + i) * W, hd, 1.0f / sums[i]);
            }
        }
    }
    t[ST_ATTN] += cpu_now() - t0;
    t0 = cpu_now();
    for (int r0 = 0; r0 < T; r0 += rb) {
        int n = T - r0 < rb ? T - r0 : rb;
        pe_linear(n, W, W, B->att + (size_t)r0 * W, W, B->wo, B->bias, B->h + (size_t)r0 * W, W);
    }
    t[ST_GEMM] += cpu_now() - t0;
    t0 = cpu_now();
    for (int r = 0; r < T; r++) pe_residual(B->x + (size_t)r * W, B->h + (size_t)r * W, B->g, W);
    for (int r = 0; r < T; r++) pe_layernorm(B->x + (size_t)r * W, B->h + (size_t)r * W, W, B->g, B->b, 1e-5f);
    t[ST_ELEM] += cpu_now() - t0;
    for (int r0 = 0; r0 < T; r0 += rb) { /* the tower's per-block MLP */
        int n = T - r0 < rb ? T - r0 : rb;
        t0 = cpu_now();
        pe_linear(n, F, W, B->h + (size_t)r0 * W, W, B->wf, B->biasf, B->hid, F);
        t[ST_GEMM] += cpu_now() - t0;
        t0 = cpu_now();
        pe_gelu(B->hid, (size_t)n * F);
        t[ST_ELEM] += cpu_now() - t0;
        t0 = cpu_now();
        pe_linear(n, W, F, B->hid, F, B->wp, B->bias, B->att + (size_t)r0 * W, W);
        t[ST_GEMM] += cpu_now() - t0;
    }
    t0 = cpu_now();
    for (int r = 0; r < T; r++) pe_residual(B->x + (size_t)r * W, B->att + (size_t)r * W, B->g, W);
    t[ST_ELEM] += cpu_now() - t0;
    /* keep the residual stream bounded across layers */
    for (int r = 0; r < T; r++) pe_layernorm(B->x + (size_t)r * W, B->x + (size_t)r * W, W, B->g, B->b, 1e-5f);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    const char *models = "T16,B16", *tmp = getenv("TMPDIR");
    int reps = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tmp") && i + 1 < argc) tmp = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--models T16,B16] [--reps N] [--tmp DIR]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 99) reps = 7;
    if (!tmp || !*tmp) tmp = "/tmp";
    double load[3] = {0};
    getloadavg(load, 3);
    const pe_cpu_info *ci = pe_cpu();
    pe_isa start = ci->isa;
    printf("# bench_stages: vision, 1 thread, batch 1, thread CPU time, medians of %d; kernels up to %s on this CPU "
           "(%s in force); load average %.2f %.2f %.2f\n",
           reps, pe_isa_name(ci->hw), pe_cpu_describe(), load[0], load[1], load[2]);
    printf("| model | kernel level | forward ms | attention ms | elementwise ms | GEMM ms | rest ms |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int mi = 0; mi < pe_config_official_count(); mi++) {
        const pe_config *oc = pe_config_official(mi);
        char tag[16];
        snprintf(tag, sizeof tag, "%.3s", oc->name + 8);
        if (!strstr(models, tag)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/bench-stages-%s-%d.safetensors", tmp, oc->name, (int)getpid());
        bench_seed(0x243f6a8885a308d3ULL + (uint64_t)mi);
        pe_model *m = NULL;
        if (bench_write_model(oc, path) || pe_model_load(path, NULL, &m)) {
            fprintf(stderr, "%s: %s\n", oc->name, perr_msg());
            unlink(path);
            return 1;
        }
        unlink(path);
        const pe_config *c = pe_model_config(m);
        pe_ctx_opts o;
        pe_ctx_opts_default(&o);
        pe_ctx *ctx = NULL;
        if (pe_ctx_new(m, &o, &ctx)) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
        int S = c->image_size, W = c->width, F = c->mlp_width, g = S / c->patch_size;
        int T = g * g + (c->use_cls_token ? 1 : 0), hd = W / c->heads;
        float *px = rnd((size_t)3 * S * S, 1.0f), *out = malloc(c->output_dim * sizeof(float));
        bufs B = {rnd((size_t)T * W, 1), rnd((size_t)T * W, 1), rnd((size_t)T * 3 * W, 0.3f), rnd((size_t)T * W, 1),
                  rnd((size_t)T * F, 1), NULL, rnd(W, 1), rnd(W, 0.1f), rnd(3 * W, 0.1f), rnd(W, 0.1f),
                  rnd(F, 0.1f), rnd((size_t)3 * W * W, 0.05f), rnd((size_t)W * W, 0.05f),
                  rnd((size_t)F * W, 0.05f), rnd((size_t)W * F, 0.05f), rnd(hd / 2, 1), rnd(hd / 2, 1)};
        size_t scr = pe_attn_scratch(T, hd), scr2 = (size_t)64 * T + 64;
        B.scr = malloc((scr > scr2 ? scr : scr2) * sizeof(float));
        for (int lv = PE_ISA_SCALAR; lv <= PE_ISA_AVX512; lv++) {
            if (pe_cpu_force_isa((pe_isa)lv) != (pe_isa)lv) continue;
            double fw[99], st[ST_N][99];
            pe_encode_pixels(ctx, px, 1, out); /* warm-up */
            for (int r = 0; r < reps; r++) {
                double t0 = cpu_now();
                pe_encode_pixels(ctx, px, 1, out);
                fw[r] = cpu_now() - t0;
                double t[ST_N] = {0};
                for (int l = 0; l < c->layers; l++) layer(c, T, &B, t);
                for (int k = 0; k < ST_N; k++) st[k][r] = t[k];
            }
            double f = median(fw, reps), a = median(st[ST_ATTN], reps), e = median(st[ST_ELEM], reps),
                   gm = median(st[ST_GEMM], reps);
            printf("| %s | %s | %.1f | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f |\n", c->name,
                   pe_cpu_describe(), f * 1e3, a * 1e3, 100 * a / f, e * 1e3, 100 * e / f, gm * 1e3, 100 * gm / f,
                   (f - a - e - gm) * 1e3);
            fflush(stdout);
        }
        pe_cpu_force_isa(start);
        float **all = (float **)&B;
        for (size_t i = 0; i < sizeof B / sizeof(float *); i++) free(all[i]);
        free(px);
        free(out);
        pe_ctx_free(ctx);
        pe_model_free(m);
    }
    return 0;
}
