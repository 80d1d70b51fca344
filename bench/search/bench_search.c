/* bench_search: engine search latency/QPS at batch 1 beside raw FAISS on
 * the same vectors ("raw": FAISS itself, not idx_search: for Flat FAISS's
 * knn_inner_product on the very rows the engine scans, the collection's
 * mapped index file (idxf_base), so both read the same memory; for other
 * types the FAISS index read from the file through its C API), time to
 * open a database and answer the first query, RSS after opening, disk bytes
 * per item.
 *
 * usage: bench_search [--n N]... [--dim D] [--queries Q] [--index F]... [--dir DIR]
 * default: --n 100000 --n 1000000 --dim 512 --queries 2000 --index Flat
 *          --index HNSW32 --index IVF1024,Flat
 * A database of N random normalized vectors is built through the engine
 * (eng_add_vectors, 10k per transaction: encoding is not the point). */
#define _GNU_SOURCE
#include "engine/eng_internal.h"
#include "common/perr.h"
#include "bench/index/idx_file_raw.h"
#include "index/idx_flat.h"

#include <omp.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(void) { /* xorshift + Box-Muller-free: uniform [-1,1) is fine for normalized randoms */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 24))) * 2 - 1;
}

static void randvecs(float *v, size_t n, int dim) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < dim; d++) { v[i * dim + d] = frand(); s += v[i * dim + d] * v[i * dim + d]; }
        float inv = (float)(1 / sqrt(s));
        for (int d = 0; d < dim; d++) v[i * dim + d] *= inv;
    }
}

static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

static int die(const char *what) { fprintf(stderr, "bench_search: %s: %s\n", what, perr_msg()); return 1; }

static uint64_t dir_bytes(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "du -sb '%s' 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    unsigned long long b = 0;
    if (p) { if (fscanf(p, "%llu", &b) != 1) b = 0; pclose(p); }
    return b;
}

static int bench_one(const char *root, long n, int dim, int nq, const char *factory) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/db-%ld-%s", root, n, factory);
    for (char *p = dir + strlen(root); *p; p++) if (*p == ',') *p = '_';
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.create = 1;
    o.vector_dim = dim;
    o.save_every = 0;
    eng_db *db = NULL;
    struct stat sb;
    int exists = stat(dir, &sb) == 0;
    if (eng_open(dir, &o, &db)) return die("open");
    double t_build = 0;
    if (!exists) {
        if (eng_collection_create(db, "bench", factory)) return die("collection");
        eng_ingest_opts io;
        eng_ingest_opts_default(&io);
        io.collection = "bench";
        const long chunk = 10000;
        float *v = malloc(sizeof(float) * (size_t)chunk * dim);
        double t0 = now();
        for (long done = 0; done < n; done += chunk) {
            long m = n - done < chunk ? n - done : chunk;
            randvecs(v, (size_t)m, dim);
            if (eng_add_vectors(db, v, (int)m, NULL, &io, NULL)) return die("add");
        }
        t_build = now() - t0;
        free(v);
    }
    if (eng_close(db)) return die("close");

    /* open + first query */
    float *q = malloc(sizeof(float) * (size_t)nq * dim);
    randvecs(q, (size_t)nq, dim);
    long rss0 = rss_kib();
    double t0 = now();
    o.read_only = 1;
    if (eng_open(dir, &o, &db)) return die("reopen");
    eng_query eq;
    eng_query_default(&eq);
    const char *cn[] = {"bench"};
    eq.collections = cn;
    eq.n_collections = 1;
    eq.k = 10;
    eng_results *r = NULL;
    if (eng_search_vector(db, q, dim, &eq, &r)) return die("first query");
    double t_open = now() - t0;
    long rss1 = rss_kib();
    eng_results_free(r);

    idx_set_threads(1);
    omp_set_num_threads(1); /* the raw FAISS calls made from this thread */
    pthread_rwlock_rdlock(&db->coll_lock);
    char ipath[4400];
    snprintf(ipath, sizeof ipath, "%s/%u.faiss", st_index_dir(db->st), eng_coll_find(db, "bench")->id);
    const float *bx = NULL;
    const int64_t *bids = NULL;
    size_t bn = 0;
    int mapped = !strcmp(factory, "Flat") && !idxf_base(eng_coll_find(db, "bench")->ix, &bx, &bids, &bn);
    pthread_rwlock_unlock(&db->coll_lock);
    if (!strcmp(factory, "Flat") && !mapped) fprintf(stderr, "  (Flat index not mapped: raw FAISS on a heap copy)\n");
    FaissIndex *raw = mapped ? NULL : bench_raw_faiss(ipath);
    double *le = malloc(sizeof(double) * nq), *lr = malloc(sizeof(double) * nq);
    float sc[10];
    int64_t ids[10];
    uint64_t check_e = 0, check_r = 0;
    for (int rep = 0; rep < 2; rep++) /* rep 0: warm-up */
        for (int i = 0; i < nq; i++) {
            double a = now();
            if (mapped) {
                if (idxf_knn_faiss(q + (size_t)i * dim, 1, bx, bn, dim, 10, NULL, sc, ids)) return die("raw FAISS search");
                for (int j = 0; j < 10; j++) ids[j] = ids[j] >= 0 ? bids[ids[j]] : -1;
            } else if (faiss_Index_search(raw, 1, q + (size_t)i * dim, 10, sc, ids)) return die("raw FAISS search");
            double b = now();
            if (eng_search_vector(db, q + (size_t)i * dim, dim, &eq, &r)) return die("search");
            double c = now();
            if (rep) { lr[i] = b - a; le[i] = c - b; check_r += (uint64_t)ids[0]; check_e += r->n ? r->hits[0].id : 0; }
            eng_results_free(r);
        }
    double se = 0, sr = 0;
    for (int i = 0; i < nq; i++) { se += le[i]; sr += lr[i]; }
    qsort(le, nq, sizeof *le, cmpd);
    qsort(lr, nq, sizeof *lr, cmpd);
    uint64_t disk = dir_bytes(dir);
    printf("| %-14s | %8ld | %9.1f | %9.1f | %7.0f | %7.0f | %+6.1f%% | %8.3f | %7.1f | %9.0f | %s |\n",
           factory, n, lr[nq / 2] * 1e6, le[nq / 2] * 1e6, nq / sr, nq / se, (se / sr - 1) * 100, t_open,
           (rss1 - rss0) / 1024.0, n ? (double)disk / n : 0, check_e == check_r ? "same top-1" : "TOP-1 DIFFERS");
    if (t_build > 0) fprintf(stderr, "  (built %ld items in %.1f s, %.0f items/s)\n", n, t_build, n / t_build);
    free(le); free(lr); free(q);
    if (raw) faiss_Index_free(raw);
    eng_close(db);
    return 0;
}

int main(int argc, char **argv) {
    long ns[8];
    int nn = 0, dim = 512, nq = 2000, nf = 0;
    const char *fs[8];
    const char *root = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc && nn < 8) ns[nn++] = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc) nq = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--index") && i + 1 < argc && nf < 8) fs[nf++] = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) root = argv[++i];
        else { fprintf(stderr, "usage: bench_search [--n N]... [--dim D] [--queries Q] [--index F]... [--dir DIR]\n"); return 2; }
    }
    if (!nn) { ns[nn++] = 100000; ns[nn++] = 1000000; }
    if (!nf) { fs[nf++] = "Flat"; fs[nf++] = "HNSW32"; fs[nf++] = "IVF1024,Flat"; }
    char tmpl[] = "/tmp/percept-bench-search-XXXXXX";
    if (!root && !(root = mkdtemp(tmpl))) { perror("mkdtemp"); return 1; }
    char host[256] = "";
    gethostname(host, sizeof host);
    printf("bench_search: dim %d, %d queries at batch 1, k=10, FAISS OpenMP threads 1, host %s, %ld cores\n",
           dim, nq, host, sysconf(_SC_NPROCESSORS_ONLN));
    printf("| index          |    items | raw p50us | eng p50us | raw QPS | eng QPS | overhd  | open+q1 s | RSS MiB | disk B/it | check |\n");
    printf("|----------------|----------|-----------|-----------|---------|---------|---------|-----------|---------|-----------|-------|\n");
    for (int i = 0; i < nn; i++)
        for (int f = 0; f < nf; f++)
            if (bench_one(root, ns[i], dim, nq, fs[f])) return 1;
    printf("(databases kept in %s)\n", root);
    return 0;
}
