/* bench_encoder: speed of the PE_core forward passes.
 *
 * Builds checkpoints with the real shapes and key names of official
 * configurations (default PE-Core-T16-384 and PE-Core-B16-224) and random
 * weights, writes them as .safetensors without metadata (so the real loader
 * recognises the configuration from the shapes, as for a released file),
 * loads them through pe_model_load and times:
 *   - vision forward passes (images/s) at batch 1 and 8,
 *   - text forward passes of a typical short query (10 positions up to the
 *     end-of-text token, context 32) at batch 1 and 8,
 * at 1 and 2 threads, with warm-up, repetitions, median and spread, the
 * effective GFLOP/s (matrix-product FLOPs of the pass / time), that as a
 * fraction of this CPU's fp32 peak measured in the same run by
 * bench/common/bench_peak (FMA loops at the widest vectors the CPU has:
 * AVX-512 here), peak RSS, and a checksum of the outputs (a fast but wrong
 * build shows). Records CPU, instruction sets, the level the encoder's own
 * kernels run at, commit, OpenBLAS version/config (whose 1024^3 sgemm rate
 * is printed in the header for reference).
 *
 * usage: bench_encoder [--models T16,B16,...] [--reps N] [--threads 1,2]
 *                      [--batches 1,8] [--towers vision,text] [--tmp DIR] [--keep]
 *                      [--precisions fp32,bf16] (bf16 rows only where the CPU has native bf16)
 *                      [--blas-threads N]   (experiment: OpenBLAS threads inside the passes)
 */
#define _GNU_SOURCE
#include "bench/common/bench_ckpt.h"
#include "bench/common/bench_peak.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_config.h"
#include "encoder/pe_cpu.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats { double median, min, max; } stats;
static stats summarize(double *t, int n) {
    qsort(t, n, sizeof *t, cmp_d);
    stats s = {n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]), t[0], t[n - 1]};
    return s;
}

static long peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

/* The random-weight checkpoint writer lives in bench/common/bench_ckpt.c. */

/* -------------------------------------------------------------- FLOPs */

static double vision_flops(const pe_config *c) {
    double W = c->width, p = c->patch_size, g = c->image_size / c->patch_size, P = g * g, T = P + c->use_cls_token,
           F = c->mlp_width;
    double f = 2 * P * 3 * p * p * W;
    f += c->layers * (2 * T * W * 3 * W + 2 * 2 * T * T * W + 2 * T * W * W + 2 * 2 * T * W * F);
    f += 2 * T * W * 2 * W + 2 * 2 * T * W + 2 * W * W + 2 * 2 * W * c->pool_mlp_width + 2 * W * c->output_dim;
    return f;
}

static double text_flops(const pe_config *c, int rows) {
    double W = c->text_width, n = rows, F = c->text_mlp_width;
    return c->text_layers * (2 * n * W * 3 * W + 2 * 2 * n * n * W + 2 * n * W * W + 2 * 2 * n * W * F) +
           2 * W * c->output_dim;
}

/* --------------------------------------------------------------- sgemm */

/* The machine's own sgemm rate: OpenBLAS with `threads` threads on a
 * square problem, and on the shape of the model's biggest GEMM. */
static double sgemm_gflops(int threads, int M, int N, int K, double min_time, double *cpu_best) {
    float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = bench_urand();
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = bench_urand();
    openblas_set_num_threads(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
    double best = 1e30, t0 = now();
    int reps = 0;
    while (reps < 3 || now() - t0 < min_time) {
        double t = now(), c = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
        t = now() - t;
        c = cpu_now() - c;
        if (cpu_best && c / threads < *cpu_best) *cpu_best = c / threads;
        if (t < best) best = t;
        reps++;
    }
    openblas_set_num_threads(1);
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K / best * 1e-9;
}

/* ---------------------------------------------------------------- main */

static void print_env(void) {
    char line[512], cpu[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) snprintf(cpu, sizeof cpu, "%s", c + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    char commit[64] = "?";
    FILE *g = popen("git -C " PERCEPT_SRC_DIR " describe --always --dirty 2>/dev/null", "r");
    if (g) {
        if (fgets(commit, sizeof commit, g)) commit[strcspn(commit, "\n")] = 0;
        pclose(g);
    }
    double load[3] = {0};
    getloadavg(load, 3);
    printf("# bench_encoder  commit %s\n", commit);
    printf("# cpu: %s, %ld online cores, load average %.2f %.2f %.2f\n", cpu, sysconf(_SC_NPROCESSORS_ONLN), load[0],
           load[1], load[2]);
    printf("# OpenBLAS: %s (core %s)\n", openblas_get_config(), openblas_get_corename());
    printf("# encoder matrix products: oneDNN, instruction set %s (ONEDNN_MAX_CPU_ISA=%s)\n", pe_cpu_isa(),
           getenv("ONEDNN_MAX_CPU_ISA") ? getenv("ONEDNN_MAX_CPU_ISA") : "unset");
    printf("# threading: oneDNN and OpenBLAS sequential inside the encoder; each pe_ctx runs its own pool of n threads\n");
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *models = "T16,B16", *towers = "vision,text", *tmp = getenv("TMPDIR"), *precs = "fp32,bf16";
    int reps = 5, keep = 0, blas_threads = 0, threads[8] = {1, 2}, nthr = 2, batches[8] = {1, 8}, nbat = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nthr = parse_list(argv[++i], threads, 8);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) nbat = parse_list(argv[++i], batches, 8);
        else if (!strcmp(argv[i], "--tmp") && i + 1 < argc) tmp = argv[++i];
        else if (!strcmp(argv[i], "--towers") && i + 1 < argc) towers = argv[++i];
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else if (!strcmp(argv[i], "--precisions") && i + 1 < argc) precs = argv[++i];
        else if (!strcmp(argv[i], "--blas-threads") && i + 1 < argc) blas_threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--models T16,B16,...] [--reps N] [--threads 1,2] [--batches 1,8] [--towers vision,text] [--tmp DIR] [--keep] [--precisions fp32,bf16] [--blas-threads N]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (!tmp || !*tmp) tmp = "/tmp";
    print_env();

    int maxthr = 1;
    for (int i = 0; i < nthr; i++) maxthr = threads[i] > maxthr ? threads[i] : maxthr;
    double gemm_sq[9] = {0};
    bench_peak peak;
    bench_peak_measure(&peak, maxthr, 0.05, 5);
    printf("# CPU peaks (bench_peak, per CPU-second): instruction sets %s;", peak.flags);
    for (int k = 0; k < BENCH_PEAK_KINDS; k++)
        if (peak.rate[k][1] > 0) printf(" %s %.0f (1 thr)%s", bench_peak_name(k), peak.rate[k][1], k + 1 < BENCH_PEAK_KINDS ? "," : "");
    printf("\n# encoder kernels (attention, elementwise) at %s; %% of peak: fp32 rows of the fp32 %s peak, bf16 rows of the bf16 peak\n",
           pe_cpu_describe(), peak.rate[BENCH_PEAK_FP32_AVX512][1] > 0 ? "AVX-512" : "AVX2");
    printf("# machine sgemm (OpenBLAS, best of >= 0.5 s):");
    for (int t = 1; t <= maxthr && t < 9; t++) {
        double cb = 1e30;
        gemm_sq[t] = sgemm_gflops(t, 1024, 1024, 1024, 0.5, &cb);
        printf("  1024^3 %d thr %.1f GFLOP/s (per-thread CPU time: %.1f);", t, gemm_sq[t], 2.0 * 1024 * 1024 * 1024 / cb * 1e-9 / t);
    }
    printf("\n\n");

    printf("| model | prec | tower | thr | batch | items/s | ms/batch (median) | spread min-max ms | CPU ms/batch | GFLOP/s | %% of peak | %% of peak, CPU time | checksum |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int status = 0;
    for (int mi = 0; mi < pe_config_official_count(); mi++) {
        const pe_config *oc = pe_config_official(mi);
        /* "PE-Core-T16-384" matches "T16" */
        char tag[16];
        snprintf(tag, sizeof tag, "%.3s", oc->name + 8);
        if (!strstr(models, tag)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/bench-%s-%d.safetensors", tmp, oc->name, (int)getpid());
        double tw = now();
        bench_seed(0x243f6a8885a308d3ULL + (uint64_t)mi); /* same weights and inputs every run */
        int rc = bench_write_model(oc, path);
        if (rc) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
        tw = now() - tw;
        double tl = now();
        pe_model *m = NULL;
        rc = pe_model_load(path, NULL, &m);
        tl = now() - tl;
        if (rc) { fprintf(stderr, "load: %s\n", perr_msg()); return 1; }
        /* the other precisions, same file (alternated below, same run) */
        pe_model *mp[2] = {strstr(precs, "fp32") ? m : NULL, NULL};
        char why[200];
        if (strstr(precs, "bf16")) {
            if (!pe_precision_supported(PE_PRECISION_BF16, why, sizeof why)) {
                printf("# bf16 rows skipped: %s\n", why);
            } else {
                pe_load_opts lo;
                pe_load_opts_default(&lo);
                lo.precision = PE_PRECISION_BF16;
                if ((rc = pe_model_load(path, &lo, &mp[1]))) { fprintf(stderr, "load bf16: %s\n", perr_msg()); return 1; }
            }
        }
        if (!keep) unlink(path); /* the mappings stay valid */
        const pe_config *c = pe_model_config(m);
        fprintf(stderr, "# %s: %.1f M parameters, written in %.1f s, loaded in %.3f s\n", c->name,
                pe_model_param_count(m) / 1e6, tw, tl);
        int S = c->image_size, D = c->output_dim, L = c->context_length;
        int maxb = 1;
        for (int i = 0; i < nbat; i++) maxb = batches[i] > maxb ? batches[i] : maxb;
        size_t per = (size_t)3 * S * S;
        float *px = malloc(maxb * per * sizeof(float)), *out = malloc((size_t)maxb * D * sizeof(float));
        int32_t *ids = calloc((size_t)maxb * L, sizeof(int32_t));
        for (size_t i = 0; i < maxb * per; i++) px[i] = bench_urand();
        /* A typical query: start, 8 BPE tokens, end ("a photo of a small brown dog" is 7). */
        const int qlen = 10;
        for (int b = 0; b < maxb; b++) {
            ids[(size_t)b * L] = 49406;
            for (int i = 1; i < qlen - 1; i++) ids[(size_t)b * L + i] = 320 + (b * 131 + i * 977) % 40000;
            ids[(size_t)b * L + qlen - 1] = 49407;
        }
        for (int ti = 0; ti < nthr; ti++)
            for (int bi = 0; bi < nbat; bi++)
                for (int tower = 0; tower < 2; tower++)
                  for (int pi = 0; pi < 2; pi++) {
                    if (!strstr(towers, tower ? "text" : "vision") || !mp[pi]) continue;
                    const pe_model *pm = mp[pi];
                    int B = batches[bi], nt = threads[ti];
                    pe_ctx_opts o;
                    pe_ctx_opts_default(&o);
                    o.max_batch = B;
                    o.n_threads = nt;
                    pe_ctx *ctx = NULL;
                    if ((rc = pe_ctx_new(pm, &o, &ctx))) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
                    /* experiment: OpenBLAS threads inside the passes instead
                     * of (or on top of) the context's pool */
                    if (blas_threads > 0) openblas_set_num_threads(blas_threads);
                    double sum = 0;
                    int n_rep = tower ? reps * 4 : reps; /* text passes are short */
                    double *t = malloc((n_rep + 1) * sizeof(double)), *tc = malloc((n_rep + 1) * sizeof(double));
                    for (int r = -1; r < n_rep; r++) { /* r = -1: warm-up */
                        double t0 = now(), c0 = cpu_now();
                        rc = tower ? pe_encode_ids(ctx, ids, B, out) : pe_encode_pixels(ctx, px, B, out);
                        double dt = now() - t0, dc = cpu_now() - c0;
                        if (rc) { fprintf(stderr, "%s\n", perr_msg()); return 1; }
                        if (r >= 0) { t[r] = dt; tc[r] = dc; }
                    }
                    for (int i = 0; i < B * D; i++) sum += out[i];
                    if (!isfinite(sum)) status = 1;
                    stats s = summarize(t, n_rep), sc = summarize(tc, n_rep);
                    double fl = tower ? B * text_flops(c, qlen) : B * vision_flops(c);
                    double gf = fl / s.median * 1e-9;
                    /* the peak of nt threads for the precision in use */
                    double ref = pi ? peak.rate[BENCH_PEAK_BF16][nt] : bench_peak_fp32(&peak, nt);
                    /* CPU-time efficiency: FLOPs per CPU-second of the whole
                     * process (pool spinning and barriers included) over one
                     * core's peak FLOPs per CPU-second; robust to time
                     * slicing on a shared machine, not to cache contention. */
                    double pk1 = pi ? peak.rate[BENCH_PEAK_BF16][1] : bench_peak_fp32(&peak, 1);
                    double eff_cpu = pk1 > 0 ? 100 * fl / sc.median * 1e-9 / pk1 : 0;
                    printf("| %s | %s | %s | %d | %d | %.2f | %.2f | %.2f-%.2f | %.1f | %.1f | %.0f%% | %.0f%% | %.6g |\n",
                           c->name, pi ? "bf16" : "fp32", tower ? "text (10 tok)" : "vision", nt, B, B / s.median, s.median * 1e3,
                           s.min * 1e3, s.max * 1e3, sc.median * 1e3, gf, ref > 0 ? 100 * gf / ref : 0, eff_cpu, sum);
                    fflush(stdout);
                    free(t);
                    free(tc);
                    pe_ctx_free(ctx);
                }
        printf("| %s | | peak RSS so far %ld MB | | | | | | | | | | |\n", c->name, peak_rss_mb());
        free(px);
        free(out);
        free(ids);
        if (mp[1]) pe_model_free(mp[1]);
        pe_model_free(m);
    }
    printf("\n(timings on a shared machine are noisy; GFLOP/s counts matrix-product FLOPs only)\n");
    return status;
}
