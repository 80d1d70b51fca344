/* bench_flat: exact (Flat) search against the memory floor, every side on
 * the same memory.
 *
 * A Flat index of N random unit vectors is saved and loaded with idx_load
 * (the engine's path: rows used in place from the file mapping). The same
 * file is mapped once more here; both mappings share the page-cache pages,
 * so every method below reads the same physical memory:
 *   read      the floor: a pure read of the rows with the widest loads the
 *             CPU has (AVX-512 or AVX2), 8 independent accumulators (sum of
 *             all floats; no compute to wait for)
 *   scan      the best scan we know: 4-accumulator AVX-512 (else AVX2) dot
 *             products, sum reordered (scores differ from FAISS in the last
 *             bits), top-10 by insertion: the floor of a search
 *   faiss     FAISS 1.7.3's own knn_inner_product (idxf_knn_faiss) on the
 *             mapping: what the engine called before
 *   kern-X    our FAISS-identical kernel at ISA X (idxk_ip_ny_isa, blocks of
 *             256 rows) + the same top-10 insertion: the kernel alone
 *   engine    idx_search(): the whole path (dispatched kernel, FAISS's heap,
 *             id translation, locks)
 * Each query runs every method in turn (round robin, rotated: all see the
 * same machine load); the table has median and p90 per call, GB/s of rows
 * read, and median ratios to read, to scan and to the floor (the faster of
 * the two: on an EPYC Zen 5 VM the scan beat the pure read by 10-15 %). "same" checks that engine and faiss
 * returned the same ids in the same order with bit-identical scores for
 * every query; a checksum of the engine's ids guards against a fast but
 * wrong build. Batch 8 (below FAISS's BLAS switch at 20): FAISS scans the
 * rows once per query, the engine once per batch.
 *
 * usage: bench_flat [--n 100000,1000000] [--dim 512] [--queries 200] [--dir /tmp]
 * Single thread (idx_set_threads(1)). Report the machine load with it: the
 * header and footer print /proc/loadavg. */
#define _GNU_SOURCE
#include "bench/common/bench_util.h"
#include "bench/index/bench_dot.h"
#include "bench/index/idx_file_raw.h"
#include "common/perr.h"
#include "index/idx.h"
#include "index/idx_flat.h"
#include "index/idx_kern.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define K 10
#define BATCH 8

static uint64_t rng = 0x243f6a8885a308d3ULL;
static float frand(void) {
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (float)(((rng * 0x2545F4914F6CDD1DULL) >> 40) * (1.0 / 16777216.0)) * 2 - 1;
}
static void unit_vectors(float *v, size_t n, int d) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) { v[i * d + j] = frand(); s += (double)v[i * d + j] * v[i * d + j]; }
        for (int j = 0; j < d; j++) v[i * d + j] = (float)(v[i * d + j] / sqrt(s));
    }
}

static int g_avx512;

/* CPU time of this thread: the machine is shared (other processes take
 * turns on the cores), and a memory stall is CPU time while a wait for the
 * scheduler is not. Wall-clock medians are printed beside it. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------- the floors */

__attribute__((target("avx512f")))
static float read512(const float *x, size_t nf) {
    __m512 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 128 <= nf; i += 128)
        for (int r = 0; r < 8; r++) a[r] = _mm512_add_ps(a[r], _mm512_loadu_ps(x + i + 16 * r));
    for (int r = 1; r < 8; r++) a[0] = _mm512_add_ps(a[0], a[r]);
    float s = _mm512_reduce_add_ps(a[0]);
    for (; i < nf; i++) s += x[i];
    return s;
}

__attribute__((target("avx2")))
static float read256(const float *x, size_t nf) {
    __m256 a[8];
    for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= nf; i += 64)
        for (int r = 0; r < 8; r++) a[r] = _mm256_add_ps(a[r], _mm256_loadu_ps(x + i + 8 * r));
    for (int r = 1; r < 8; r++) a[0] = _mm256_add_ps(a[0], a[r]);
    float t[8], s = 0;
    _mm256_storeu_ps(t, a[0]);
    for (int l = 0; l < 8; l++) s += t[l];
    for (; i < nf; i++) s += x[i];
    return s;
}

static inline void top_insert(float *ts, int64_t *ti, float s, int64_t id) {
    if (s <= ts[K - 1]) return;
    int j = K - 1;
    while (j > 0 && ts[j - 1] < s) { ts[j] = ts[j - 1]; ti[j] = ti[j - 1]; j--; }
    ts[j] = s; ti[j] = id;
}

static void top_init(float *ts, int64_t *ti) { for (int j = 0; j < K; j++) { ts[j] = -INFINITY; ti[j] = -1; } }

__attribute__((target("avx512f")))
static void scan512(const float *x, size_t n, int d, const float *q, float *ts, int64_t *ti) {
    top_init(ts, ti);
    for (size_t r = 0; r < n; r++, x += d) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 64 <= d; i += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(x + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(x + i + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 32), _mm512_loadu_ps(x + i + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 48), _mm512_loadu_ps(x + i + 48), a3);
        }
        for (; i + 16 <= d; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(x + i), a0);
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        for (; i < d; i++) s += q[i] * x[i];
        top_insert(ts, ti, s, (int64_t)r);
    }
}

__attribute__((target("avx2,fma")))
static void scan256(const float *x, size_t n, int d, const float *q, float *ts, int64_t *ti) {
    top_init(ts, ti);
    for (size_t r = 0; r < n; r++, x += d) top_insert(ts, ti, bench_dot_avx2(q, x, d), (int64_t)r);
}

static void kern_scan(idxk_isa isa, const float *x, size_t n, int d, const float *q, float *ts, int64_t *ti) {
    float ip[256];
    top_init(ts, ti);
    for (size_t b = 0; b < n; b += 256) {
        size_t m = n - b < 256 ? n - b : 256;
        idxk_ip_ny_isa(isa, ip, q, x + b * d, (size_t)d, m);
        for (size_t j = 0; j < m; j++) top_insert(ts, ti, ip[j], (int64_t)(b + j));
    }
}

/* ------------------------------------------------------------ methods */

enum { M_READ, M_SCAN, M_FAISS, M_K2, M_K512, M_OURS, M_ENGINE, M_N };
static const char *m_name[M_N] = {"read", "scan", "faiss", "kern-avx2", "kern-avx512", "idxf_knn", "engine"};

typedef struct ctx {
    const bench_flat *f;
    idx *ix;
    int d;
    float sink;
} ctx;

/* Runs method m for nq queries at q; scores/ids (nq x K) out. */
static void run_method(ctx *c, int m, const float *q, size_t nq, float *s, int64_t *id) {
    const bench_flat *f = c->f;
    int d = c->d;
    switch (m) {
    case M_READ:
        c->sink += g_avx512 ? read512(f->x, f->n * d) : read256(f->x, f->n * d);
        break;
    case M_SCAN:
        for (size_t i = 0; i < nq; i++)
            (g_avx512 ? scan512 : scan256)(f->x, f->n, d, q + i * d, s + i * K, id + i * K);
        break;
    case M_FAISS:
        if (idxf_knn_faiss(q, nq, f->x, f->n, d, K, NULL, s, id)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
        for (size_t i = 0; i < nq * K; i++) id[i] = id[i] >= 0 ? f->ids[id[i]] : -1;
        break;
    case M_K2:
    case M_K512:
        for (size_t i = 0; i < nq; i++)
            kern_scan(m == M_K2 ? IDXK_AVX2 : IDXK_AVX512, f->x, f->n, d, q + i * d, s + i * K, id + i * K);
        break;
    case M_OURS:
        if (idxf_knn(q, nq, f->x, f->n, d, K, NULL, s, id)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
        for (size_t i = 0; i < nq * K; i++) id[i] = id[i] >= 0 ? f->ids[id[i]] : -1;
        break;
    case M_ENGINE:
        if (idx_search(c->ix, q, nq, K, s, id)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
        break;
    }
}

static void loadavg(char *out, size_t len) {
    FILE *f = fopen("/proc/loadavg", "r");
    snprintf(out, len, "?");
    if (f) { if (fgets(out, (int)len, f)) out[strcspn(out, "\n")] = 0; fclose(f); }
}

static void cpu_name(char *out, size_t len) {
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) { snprintf(out, len, "%s", c + 2); out[strcspn(out, "\n")] = 0; }
            break;
        }
    if (f) fclose(f);
}

static uint64_t checksum(const int64_t *id, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint64_t)id[i]) * 1099511628211ULL;
    return h;
}

static double pct(double *t, size_t n, double p) {
    qsort(t, n, sizeof *t, bench_cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return t[i];
}

static void bench_n(size_t n, int d, size_t nq, const char *dir) {
    float *x = malloc(n * d * sizeof *x), *q = malloc(nq * d * sizeof *q);
    int64_t *ids = malloc(n * sizeof *ids);
    if (!x || !q || !ids) { fprintf(stderr, "out of memory\n"); exit(1); }
    unit_vectors(x, n, d);
    unit_vectors(q, nq, d);
    for (size_t i = 0; i < n; i++) ids[i] = 3 * (int64_t)i + 1;
    idx *ix;
    idx_set_threads(0);
    if (idx_create("Flat", d, NULL, &ix) || idx_add(ix, x, ids, n)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_flat_%d.idx", dir, (int)getpid());
    if (idx_save(ix, path, 1)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
    idx_free(ix);
    free(x);
    free(ids);
    if (idx_load(path, NULL, &ix, NULL)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
    bench_flat f = {0};
    f.dim = d;
    if (idxf_base(ix, &f.x, &f.ids, &f.n)) { fprintf(stderr, "%s\n", perr_msg()); exit(1); }
    unlink(path);
    idx_set_threads(1);
    omp_set_num_threads(1);

    ctx c = {&f, ix, d, 0};
    int have[M_N];
    for (int m = 0; m < M_N; m++) have[m] = m != M_K512 || idxk_isa_supported(IDXK_AVX512);
    if (!idxk_isa_supported(IDXK_AVX2)) have[M_K2] = 0;
    double *t[M_N], *tw[M_N];
    for (int m = 0; m < M_N; m++) { t[m] = malloc(nq * sizeof(double)); tw[m] = malloc(nq * sizeof(double)); }
    float *s = malloc(BATCH * K * sizeof *s), *s2 = malloc(BATCH * K * sizeof *s2);
    int64_t *id = malloc(BATCH * K * sizeof *id), *id2 = malloc(BATCH * K * sizeof *id2);
    int64_t *eng_ids = malloc(nq * K * sizeof *eng_ids);
    size_t same = 0;
    for (int w = 0; w < 2; w++) /* warm-up: page tables, caches, CPU clocks */
        for (int m = 0; m < M_N; m++) if (have[m]) run_method(&c, m, q, 1, s, id);
    for (size_t i = 0; i < nq; i++)
        for (int mm = 0; mm < M_N; mm++) {
            int m = (int)((mm + i) % M_N); /* rotated: no method always follows the same one */
            if (!have[m]) continue;
            double w0 = bench_now(), t0 = cpu_now();
            run_method(&c, m, q + i * d, 1, m == M_ENGINE ? s2 : s, m == M_ENGINE ? id2 : id);
            t[m][i] = cpu_now() - t0;
            tw[m][i] = bench_now() - w0;
            if (m == M_ENGINE) {
                float fs[K]; int64_t fi[K];
                run_method(&c, M_FAISS, q + i * d, 1, fs, fi); /* untimed reference */
                same += !memcmp(fs, s2, sizeof fs) && !memcmp(fi, id2, sizeof fi);
                memcpy(eng_ids + i * K, id2, K * sizeof *id2);
            }
        }
    double bytes = (double)n * d * 4, med[M_N], p90[M_N], wmed[M_N];
    for (int m = 0; m < M_N; m++)
        if (have[m]) { p90[m] = pct(t[m], nq, 0.9); med[m] = pct(t[m], nq, 0.5); wmed[m] = pct(tw[m], nq, 0.5); }
    printf("\n%zu x %d (%.0f MiB of rows), batch 1, %zu queries; CPU time per call (wall p50 beside)\n", n, d,
           bytes / 1048576, nq);
    double fl = med[M_READ] < med[M_SCAN] ? med[M_READ] : med[M_SCAN]; /* the floor: the faster of the two */
    printf("| method      | p50 ms  | p90 ms  | GB/s  | x read | x scan | x floor | wall p50 ms | wall x read |\n");
    printf("|-------------|---------|---------|-------|--------|--------|---------|-------------|-------------|\n");
    for (int m = 0; m < M_N; m++) {
        if (!have[m]) continue;
        printf("| %-11s | %7.3f | %7.3f | %5.1f | %6.3f | %6.3f | %7.3f | %11.3f | %11.3f |\n", m_name[m],
               med[m] * 1e3, p90[m] * 1e3, bytes / med[m] / 1e9, med[m] / med[M_READ], med[m] / med[M_SCAN],
               med[m] / fl, wmed[m] * 1e3, wmed[m] / wmed[M_READ]);
    }
    printf("engine == faiss (ids, order, score bits) on %zu of %zu queries; engine ids checksum %016llx\n",
           same, nq, (unsigned long long)checksum(eng_ids, nq * K));

    /* batch 8: FAISS one pass per query, the engine one pass per batch */
    size_t nb = nq / BATCH;
    double *tf = malloc(nb * sizeof *tf), *te = malloc(nb * sizeof *te);
    size_t bsame = 0;
    for (size_t b = 0; b < nb; b++) {
        const float *qb = q + b * BATCH * d;
        double t0 = cpu_now();
        run_method(&c, M_FAISS, qb, BATCH, s, id);
        double t1 = cpu_now();
        run_method(&c, M_ENGINE, qb, BATCH, s2, id2);
        te[b] = cpu_now() - t1;
        tf[b] = t1 - t0;
        bsame += !memcmp(s, s2, BATCH * K * sizeof *s) && !memcmp(id, id2, BATCH * K * sizeof *id);
    }
    if (nb) {
        double mf = pct(tf, nb, 0.5), me = pct(te, nb, 0.5);
        printf("batch %d: faiss p50 %.2f ms, engine p50 %.2f ms (%.2fx faster; read floor x %d = %.2f ms); "
               "identical on %zu of %zu batches\n",
               BATCH, mf * 1e3, me * 1e3, mf / me, BATCH, med[M_READ] * BATCH * 1e3, bsame, nb);
    }
    fprintf(stderr, "(sink %g)\n", c.sink);
    free(tf); free(te);
    for (int m = 0; m < M_N; m++) { free(t[m]); free(tw[m]); }
    free(s); free(s2); free(id); free(id2); free(eng_ids); free(q);
    idx_free(ix);
}

int main(int argc, char **argv) {
    const char *ns = "100000,1000000", *dir = "/tmp";
    int d = 512;
    size_t nq = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n")) ns = argv[i + 1];
        else if (!strcmp(argv[i], "--dim")) d = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--queries")) nq = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else { fprintf(stderr, "usage: bench_flat [--n 100000,1000000] [--dim 512] [--queries 200] [--dir /tmp]\n"); return 2; }
    }
    if (argc % 2 == 0) { fprintf(stderr, "usage: bench_flat [--n N,...] [--dim D] [--queries Q] [--dir DIR]\n"); return 2; }
    g_avx512 = !!__builtin_cpu_supports("avx512f");
    char cpu[128], la[128];
    cpu_name(cpu, sizeof cpu);
    loadavg(la, sizeof la);
    printf("bench_flat  CPU %s (%ld online)  avx2 %d avx512f %d  engine kernel %s  threads 1\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), idxk_isa_supported(IDXK_AVX2), g_avx512, idxk_isa_name(idxk_isa_active()));
    printf("floor loads: %s; loadavg at start: %s\n", g_avx512 ? "AVX-512" : "AVX2", la);
    char *list = strdup(ns);
    for (char *sp, *tok = strtok_r(list, ",", &sp); tok; tok = strtok_r(NULL, ",", &sp))
        bench_n((size_t)atol(tok), d, nq < BATCH ? BATCH : nq, dir);
    free(list);
    loadavg(la, sizeof la);
    printf("loadavg at end: %s\n", la);
    return 0;
}
