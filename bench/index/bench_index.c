/* bench_index: search latency and throughput of percept's index module.
 *
 * For each collection size (default 100k and 1M normalized random vectors,
 * dim 512) and each index type, it measures batch-1 and batch-64 search
 * through idx_search() beside
 *   (a) raw FAISS on the very same index (the FAISS blob of the file
 *       idx_save() wrote, read back with faiss_read_index; for Flat, whose
 *       file holds raw rows, FAISS's knn_inner_product on the rows idx_load
 *       mapped (idxf_base), the memory idx_search reads), so the difference
 *       is our overhead (target <= 5 %), and
 *   (b) a plain AVX2 dot-product scan keeping the top 10 over the float32
 *       vectors in a heap array (not the mapping: indicative only; the
 *       honest floor for exact search, on the same mapping, with a pure
 *       read beside it, is bench_flat).
 * It also prints recall@10 against the exact scan, build/train time, file
 * size and load time, with warm-up, repetitions, median and p99, the CPU,
 * the thread counts and a checksum of the results.
 *
 * Usage: bench_index [--quick] [--n 100000,1000000] [--dim 512]
 *          [--types "Flat;SQ8;IVF1024,Flat"] [--queries 256] [--reps 3] [--threads 1]
 *          [--nprobe 16] [--ef 64] [--dir /tmp] [--clusters 0] [--spread 1.0]
 * --clusters C: data and queries drawn around C random centers (closer to
 * real embeddings than the default uniform data, the worst case for IVF and
 * HNSW recall); --spread: noise relative to the center (cosine ~0.7 at 1).
 * Builds use every core (idx_set_threads(0)); searches --threads.
 * (types separated by ";"; PQ as "PQ32np": FAISS's polysemous training is slow)
 * --quick: n = 20000, queries 64, types Flat;SQfp16;SQ8;HNSW32;IVF64,Flat.
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "index/idx.h"
#include "bench/index/bench_dot.h"
#include "bench/index/idx_file_raw.h"
#include "index/idx_flat.h"

#include <c_api/Index_c.h>
#include <c_api/index_io_c.h>

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int openblas_get_num_threads(void);

#define K 10
#define BATCH 64

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ data */

static uint64_t rng = 0x243f6a8885a308d3ULL;
static double uni(void) {
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return ((rng * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0) + 1e-17;
}

/* n unit vectors; with centers (nc of them), each is a random center plus
 * gaussian noise of relative scale `spread` (cosine to its center about
 * 1/sqrt(1 + spread^2)), else uniform on the sphere. */
static float *unit_vectors_around(size_t n, int d, const float *centers, size_t nc, double spread) {
    float *x = malloc(n * d * sizeof *x);
    if (!x) { fprintf(stderr, "out of memory for %zu x %d\n", n, d); exit(1); }
    for (size_t i = 0; i < n; i++) {
        float *v = x + i * d;
        double s = 0;
        for (int j = 0; j < d; j += 2) {
            double r = sqrt(-2 * log(uni())), t = 6.283185307179586 * uni();
            v[j] = (float)(r * cos(t));
            if (j + 1 < d) v[j + 1] = (float)(r * sin(t));
        }
        if (centers) {
            const float *c = centers + (size_t)(uni() * nc) % nc * d;
            for (int j = 0; j < d; j++) v[j] = (float)(c[j] + spread * v[j] / sqrt((double)d));
        }
        for (int j = 0; j < d; j++) s += (double)v[j] * v[j];
        for (int j = 0; j < d; j++) v[j] = (float)(v[j] / sqrt(s));
    }
    return x;
}

static float *unit_vectors(size_t n, int d) { return unit_vectors_around(n, d, NULL, 0, 0); }

/* -------------------------------------------------------------- the floor */

static inline void top_insert(float *ts, int64_t *ti, float s, int64_t id) {
    if (s <= ts[K - 1]) return;
    int j = K - 1;
    while (j > 0 && ts[j - 1] < s) { ts[j] = ts[j - 1]; ti[j] = ti[j - 1]; j--; }
    ts[j] = s; ti[j] = id;
}

/* Exact top-K of nq queries by one pass over x in blocks (batch > 1 reuses
 * each block from cache). Single-threaded: the floor of one core. */
__attribute__((target("avx2,fma")))
static void scan(const float *x, size_t n, int d, const float *q, size_t nq, float *ts, int64_t *ti) {
    for (size_t i = 0; i < nq * K; i++) { ts[i] = -INFINITY; ti[i] = -1; }
    const size_t blk = nq == 1 ? n : 128;
    for (size_t b = 0; b < n; b += blk) {
        size_t e = b + blk < n ? b + blk : n;
        for (size_t qi = 0; qi < nq; qi++)
            for (size_t i = b; i < e; i++)
                top_insert(ts + qi * K, ti + qi * K, bench_dot_avx2(q + qi * d, x + i * d, d), (int64_t)i);
    }
}

/* ------------------------------------------------------------- timing */

typedef struct { double p50, p99, qps; } lat;

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static lat summarize(double *t, size_t n, size_t per_call) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += t[i];
    qsort(t, n, sizeof *t, cmpd);
    lat l = {t[n / 2] * 1e3, t[(size_t)ceil(0.99 * n) - 1 < n ? (size_t)ceil(0.99 * n) - 1 : n - 1] * 1e3,
             (double)(n * per_call) / sum};
    return l;
}

typedef int (*search_fn)(void *ctx, const float *q, size_t nq, float *s, int64_t *id);

static int via_idx(void *ctx, const float *q, size_t nq, float *s, int64_t *id) {
    return idx_search(ctx, q, nq, K, s, id);
}
static int via_faiss(void *ctx, const float *q, size_t nq, float *s, int64_t *id) {
    return faiss_Index_search(ctx, (idx_t)nq, q, K, s, id);
}
typedef struct { const float *x; const int64_t *ids; size_t n; int d; } mapped_ctx;
static int via_faiss_mapped(void *ctx, const float *q, size_t nq, float *s, int64_t *id) {
    mapped_ctx *c = ctx;
    int rc = idxf_knn_faiss(q, nq, c->x, c->n, c->d, K, NULL, s, id);
    for (size_t i = 0; i < nq * K; i++) id[i] = id[i] >= 0 ? c->ids[id[i]] : -1;
    return rc;
}
typedef struct { const float *x; size_t n; int d; } scan_ctx;
static int via_scan(void *ctx, const float *q, size_t nq, float *s, int64_t *id) {
    scan_ctx *c = ctx;
    scan(c->x, c->n, c->d, q, nq, s, id);
    return 0;
}

/* Times fn over the queries in calls of `batch`, after a warm-up, reps
 * times; results of the last rep land in s/id (nq x K). */
static lat run(search_fn fn, void *ctx, const float *q, size_t nq, int d, size_t batch, int reps,
               float *s, int64_t *id) {
    size_t calls = nq / batch;
    double *t = malloc(calls * reps * sizeof *t);
    for (size_t w = 0; w < 2 && w < calls; w++) fn(ctx, q + w * batch * d, batch, s, id); /* warm-up */
    size_t m = 0;
    for (int r = 0; r < reps; r++)
        for (size_t c = 0; c < calls; c++) {
            double t0 = now();
            if (fn(ctx, q + c * batch * d, batch, s + c * batch * K, id + c * batch * K)) {
                fprintf(stderr, "search failed: %s\n", perr_msg());
                exit(1);
            }
            t[m++] = now() - t0;
        }
    lat l = summarize(t, m, batch);
    free(t);
    return l;
}

static double recall(const int64_t *found, const int64_t *truth, size_t nq) {
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                if (found[i * K + b] == truth[i * K + a]) { hit++; break; }
    return (double)hit / (double)(nq * K);
}

static uint64_t checksum(const int64_t *id, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint64_t)id[i]) * 1099511628211ULL;
    return h;
}

/* --------------------------------------------------------------- main */

static void cpu_name(char *out, size_t len) {
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) { snprintf(out, len, "%s", c + 2); out[strcspn(out, "\n")] = 0; }
            break;
        }
    fclose(f);
}

static void git_commit(char *out, size_t len) {
    snprintf(out, len, "unknown");
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (!p) return;
    if (fgets(out, (int)len, p)) out[strcspn(out, "\n")] = 0;
    pclose(p);
}

int main(int argc, char **argv) {
    const char *ns = "100000,1000000";
    const char *types = "Flat;SQfp16;SQ8;HNSW32;IVF1024,Flat;IVF256,SQ8;IVF1024,PQ32np";
    int dim = 512, reps = 3, threads = 1, nprobe = 16, ef = 64;
    size_t nq = 256, clusters = 0;
    double spread = 1.0;
    const char *dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) { ns = "20000"; nq = 64; types = "Flat;SQfp16;SQ8;HNSW32;IVF64,Flat"; continue; }
        if (!v) { fprintf(stderr, "%s needs a value\n", a); return 2; }
        if (!strcmp(a, "--n")) ns = v;
        else if (!strcmp(a, "--dim")) dim = atoi(v);
        else if (!strcmp(a, "--types")) types = v;
        else if (!strcmp(a, "--queries")) nq = (size_t)atol(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--nprobe")) nprobe = atoi(v);
        else if (!strcmp(a, "--ef")) ef = atoi(v);
        else if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--clusters")) clusters = (size_t)atol(v);
        else if (!strcmp(a, "--spread")) spread = atof(v);
        else { fprintf(stderr, "unknown option %s (see the comment at the top of bench_index.c)\n", a); return 2; }
        i++;
    }
    if (nq < BATCH) nq = BATCH;
    nq -= nq % BATCH;

    char cpu[128], commit[64];
    cpu_name(cpu, sizeof cpu);
    git_commit(commit, sizeof commit);
    printf("bench_index  commit %s  FAISS 1.7.3 (C API)  CPU %s (%ld online)\n", commit, cpu,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("threads: idx/OpenMP %d, OpenBLAS %d  dim %d  queries %zu  reps %d  k %d  nprobe %d  efSearch %d\n",
           threads, openblas_get_num_threads(), dim, nq, reps, K, nprobe, ef);
    if (clusters) printf("unit vectors around %zu random centers, spread %.2f", clusters, spread);
    else printf("uniform random unit vectors");
    printf("; latency in ms per call (batch 64: per batch), QPS in queries/s; build with all cores\n\n");
    printf("%-8s %-15s %7s %8s %7s | %5s %8s %8s %9s | %8s %6s | %7s %6s %7s | %s\n", "n", "type", "build_s",
           "file_MB", "load_s", "batch", "p50_ms", "p99_ms", "QPS", "raw_p50", "ovh%", "scan_ms", "x_scan",
           "recall", "chk");

    float *centers = clusters ? unit_vectors(clusters, dim) : NULL;
    float *q = unit_vectors_around(nq, dim, centers, clusters, spread);
    char *nlist = strdup(ns);
    for (char *sp, *tok = strtok_r(nlist, ",", &sp); tok; tok = strtok_r(NULL, ",", &sp)) {
        size_t n = (size_t)atol(tok);
        double t0 = now();
        float *x = unit_vectors_around(n, dim, centers, clusters, spread);
        int64_t *ids = malloc(n * sizeof *ids);
        for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i;
        fprintf(stderr, "[n=%zu: data in %.1f s]\n", n, now() - t0);

        /* floor and ground truth */
        float *ts = malloc(nq * K * sizeof *ts), *s = malloc(nq * K * sizeof *s);
        int64_t *ti = malloc(nq * K * sizeof *ti), *id = malloc(nq * K * sizeof *id);
        scan_ctx sc = {x, n, dim};
        lat floor1 = run(via_scan, &sc, q, nq, dim, 1, reps, ts, ti);
        lat floor64 = run(via_scan, &sc, q, nq, dim, BATCH, reps, s, id);
        printf("%-8zu %-15s %7s %8s %7s | %5d %8.2f %8.2f %9.1f | %8s %6s | %7s %6s %7s | %016llx\n", n,
               "scan(AVX2)", "-", "-", "-", 1, floor1.p50, floor1.p99, floor1.qps, "-", "-", "-", "-", "1.000",
               (unsigned long long)checksum(ti, nq * K));
        printf("%-8zu %-15s %7s %8s %7s | %5d %8.2f %8.2f %9.1f | %8s %6s | %7s %6s %7s | %016llx\n", n,
               "scan(AVX2)", "-", "-", "-", BATCH, floor64.p50, floor64.p99, floor64.qps, "-", "-", "-", "-",
               "1.000", (unsigned long long)checksum(id, nq * K));
        fflush(stdout);

        char *tl = strdup(types);
        for (char *sp2, *factory = strtok_r(tl, ";", &sp2); factory; factory = strtok_r(NULL, ";", &sp2)) {
            idx_opts o = idx_opts_default();
            o.train_max = 262144;
            idx *ix;
            if (idx_create(factory, dim, &o, &ix)) { fprintf(stderr, "%s: %s\n", factory, perr_msg()); continue; }
            if (!strncmp(factory, "IVF", 3)) idx_set_param(ix, "nprobe", nprobe);
            if (!strncmp(factory, "HNSW", 4)) idx_set_param(ix, "efSearch", ef);
            idx_set_threads(0); /* build with every core */
            double b0 = now();
            int rc = PERR_OK;
            for (size_t off = 0; off < n && !rc; off += 50000)
                rc = idx_add(ix, x + off * dim, ids + off, n - off < 50000 ? n - off : 50000);
            if (!rc && idx_needs_training(ix)) rc = idx_train(ix, NULL, 0); /* n below train_size */
            double build = now() - b0;
            if (rc) { fprintf(stderr, "%s: build: %s\n", factory, perr_msg()); idx_free(ix); continue; }

            char path[512];
            snprintf(path, sizeof path, "%s/bench_index_%d.idx", dir, (int)getpid());
            if (idx_save(ix, path, 1)) { fprintf(stderr, "save: %s\n", perr_msg()); exit(1); }
            struct stat st;
            stat(path, &st);
            idx_free(ix);
            double l0 = now();
            if (idx_load(path, NULL, &ix, NULL)) { fprintf(stderr, "load: %s\n", perr_msg()); exit(1); }
            double load = now() - l0;
            mapped_ctx mc = {NULL, NULL, 0, dim};
            int mapped = !idxf_base(ix, &mc.x, &mc.ids, &mc.n); /* Flat: FAISS on the engine's rows */
            FaissIndex *raw = mapped ? NULL : bench_raw_faiss(path);
            idx_set_threads(threads);
            omp_set_num_threads(threads); /* the raw FAISS calls made from this thread */
            unlink(path);

            for (int bi = 0; bi < 2; bi++) {
                size_t batch = bi ? BATCH : 1;
                lat mine = run(via_idx, ix, q, nq, dim, batch, reps, s, id);
                double rec = recall(id, ti, nq);
                uint64_t chk = checksum(id, nq * K);
                lat rawl = mapped ? run(via_faiss_mapped, &mc, q, nq, dim, batch, reps, s, id)
                                  : run(via_faiss, raw, q, nq, dim, batch, reps, s, id);
                lat fl_ = bi ? floor64 : floor1;
                printf("%-8zu %-15s %7.1f %8.1f %7.2f | %5zu %8.2f %8.2f %9.1f | %8.2f %+6.1f | %7.2f %6.2f %7.3f | %016llx\n",
                       n, factory, build, st.st_size / 1048576.0, load, batch, mine.p50, mine.p99, mine.qps, rawl.p50,
                       100.0 * (mine.p50 - rawl.p50) / rawl.p50, fl_.p50, mine.p50 / fl_.p50, rec,
                       (unsigned long long)chk);
                fflush(stdout);
            }
            if (raw) faiss_Index_free(raw);
            idx_free(ix);
        }
        free(tl);
        free(x); free(ids); free(ts); free(s); free(ti); free(id);
        printf("\n");
    }
    printf("targets: exact types (Flat) x_scan <= 1.3 at batch 1; ovh%% (idx over raw FAISS) <= 5\n");
    free(nlist);
    free(q);
    free(centers);
    return 0;
}
