/* bench_server: search QPS and latency through the server on loopback vs
 * in-process engine search on the same data, in the same run.
 *
 *   bench_server [N_VECTORS...]      (default: 100000 1000000)
 *
 * For each size: a database of N random unit vectors (tiny-a's dim) in a
 * Flat collection; in-process eng_search_vector batch-1 QPS (1 thread);
 * the same queries through `net_server` with 1, 8 and 64 connections (one
 * thread each, synchronous requests); then text-query QPS and image ingest
 * rate through the server vs eng_add_buffer, and the process RSS. Bounded:
 * each cell runs for SECONDS (env BENCH_SECONDS, default 3). Prints a table
 * and a checksum of the hit ids so a fast but wrong run is visible. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "engine/eng.h"
#include "net/client.h"
#include "net/server.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double seconds = 3;
static int dim;
static float *queries;
enum { NQ = 1024 };

typedef struct run {
    const char *addr;
    eng_db *db;             /* in-process when set */
    double *lat; long n, cap;
    uint64_t checksum;
    int err;
    int text;
} run;

static void *runner(void *p) {
    run *r = p;
    pc_client *c = NULL;
    if (!r->db && pc_connect(r->addr, NULL, &c)) { r->err = 1; return NULL; }
    eng_query q;
    eng_query_default(&q);
    q.k = 10;
    double end = now() + seconds;
    for (long i = 0; now() < end && r->n < r->cap; i++) {
        eng_results *res = NULL;
        const float *v = queries + (size_t)(i % NQ) * dim;
        double t0 = now();
        int rc;
        if (r->text) rc = r->db ? eng_search_text(r->db, "a photo of a cat", &q, &res) : pc_search_text(c, "a photo of a cat", &q, &res);
        else rc = r->db ? eng_search_vector(r->db, v, dim, &q, &res) : pc_search_vector(c, v, dim, &q, &res);
        if (rc) { r->err = 1; break; }
        r->lat[r->n++] = now() - t0;
        for (int j = 0; j < res->n; j++) r->checksum += res->hits[j].id * (uint64_t)(j + 1);
        eng_results_free(res);
    }
    pc_close(c);
    return NULL;
}

static void cell(const char *what, const char *addr, eng_db *db, int conns, int text, double *qps_out) {
    run *r = calloc((size_t)conns, sizeof *r);
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    double t0 = now();
    for (int i = 0; i < conns; i++) {
        r[i].addr = addr; r[i].db = db; r[i].text = text;
        r[i].cap = 2000000; r[i].lat = malloc(sizeof(double) * (size_t)r[i].cap);
        pthread_create(&th[i], NULL, runner, &r[i]);
    }
    long n = 0;
    int err = 0;
    uint64_t sum = 0;
    for (int i = 0; i < conns; i++) { pthread_join(th[i], NULL); n += r[i].n; err |= r[i].err; sum += r[i].checksum; }
    double el = now() - t0;
    double *all = malloc(sizeof(double) * (size_t)(n ? n : 1));
    long k = 0;
    for (int i = 0; i < conns; i++) { memcpy(all + k, r[i].lat, sizeof(double) * (size_t)r[i].n); k += r[i].n; free(r[i].lat); }
    qsort(all, (size_t)n, sizeof *all, cmp_d);
    double qps = n / el;
    if (qps_out) *qps_out = qps;
    printf("| %-34s | %5d | %9.0f | %8.3f | %8.3f | %016llx%s |\n", what, conns, qps,
           n ? all[n / 2] * 1e3 : 0, n ? all[(long)(n * 0.99)] * 1e3 : 0, (unsigned long long)sum, err ? " ERR" : "");
    free(all); free(r); free(th);
}

static void *serve_thread(void *srv) {
    net_server_run(srv);
    return NULL;
}

int main(int argc, char **argv) {
    const char *fx = getenv("PERCEPT_FIXTURES");
    if (!fx || !*fx) fx = PERCEPT_DEFAULT_FIXTURES;
    if (getenv("BENCH_SECONDS")) seconds = atof(getenv("BENCH_SECONDS"));
    char model[4096], vocab[4096];
    snprintf(model, sizeof model, "%s/tiny-a/tiny-a.safetensors", fx);
    snprintf(vocab, sizeof vocab, "%s/bpe_simple_vocab_16e6.txt.gz", fx);
    long sizes[8] = {100000, 1000000};
    int n_sizes = 2;
    if (argc > 1) { n_sizes = 0; for (int i = 1; i < argc && n_sizes < 8; i++) sizes[n_sizes++] = atol(argv[i]); }
    char host[256] = "";
    gethostname(host, sizeof host);
    printf("bench_server: host %s, %ld cores, %.1f s per cell, model tiny-a, k=10, Flat\n", host, sysconf(_SC_NPROCESSORS_ONLN), seconds);
    for (int si = 0; si < n_sizes; si++) {
        char dir[] = "/tmp/bench_server_XXXXXX";
        if (!mkdtemp(dir)) return 1;
        eng_open_opts o;
        eng_open_opts_default(&o);
        o.model_path = model; o.vocab_path = vocab; o.create = 1; o.n_encoders = 2;
        o.map_size = (size_t)sizes[si] * 4096 * 2 + ((size_t)1 << 30);
        eng_db *db = NULL;
        if (eng_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return 1; }
        dim = eng_dim(db);
        srand(42);
        enum { CHUNK = 10000 };
        float *v = malloc(sizeof(float) * (size_t)CHUNK * dim);
        for (long done = 0; done < sizes[si]; done += CHUNK) {
            int n = (int)(sizes[si] - done < CHUNK ? sizes[si] - done : CHUNK);
            for (long i = 0; i < (long)n * dim; i++) v[i] = (float)rand() / RAND_MAX - 0.5f;
            if (eng_add_vectors(db, v, n, NULL, NULL, NULL)) { fprintf(stderr, "add: %s\n", perr_msg()); return 1; }
        }
        free(v);
        queries = malloc(sizeof(float) * (size_t)NQ * dim);
        for (long i = 0; i < (long)NQ * dim; i++) queries[i] = (float)rand() / RAND_MAX - 0.5f;
        long rss_rest = rss_kb();
        net_server_opts so;
        net_server_opts_default(&so);
        static const char *const lis[] = {"127.0.0.1:0"};
        so.listen = lis; so.n_listen = 1; so.max_conns = 256;
        net_server *srv = NULL;
        if (net_server_new(db, &so, &srv)) { fprintf(stderr, "server: %s\n", perr_msg()); return 1; }
        pthread_t th;
        pthread_create(&th, NULL, serve_thread, srv);
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(srv, 0));
        printf("\n%ld vectors x %d dims (RSS at rest %ld MiB)\n", sizes[si], dim, rss_rest / 1024);
        printf("| %-34s | %5s | %9s | %8s | %8s | %-16s |\n", "what", "conns", "QPS", "p50 ms", "p99 ms", "checksum");
        printf("|%s|%s|%s|%s|%s|%s|\n", "------------------------------------", "-------", "-----------", "----------", "----------", "------------------");
        double base = 0, q8 = 0, q64 = 0, s0 = seconds;
        seconds = 1; /* warm-up (page cache, OpenMP pool, encoder load), not printed */
        FILE *saved = stdout;
        stdout = fopen("/dev/null", "w");
        cell("warm-up", NULL, db, 1, 0, NULL);
        cell("warm-up", NULL, db, 1, 1, NULL);
        fclose(stdout);
        stdout = saved;
        seconds = s0;
        cell("in-process eng_search_vector", NULL, db, 1, 0, &base);
        cell("server SEARCH vector", addr, NULL, 1, 0, NULL);
        cell("server SEARCH vector", addr, NULL, 8, 0, &q8);
        cell("server SEARCH vector", addr, NULL, 64, 0, &q64);
        long rss_load = rss_kb();
        cell("in-process eng_search_text", NULL, db, 1, 1, NULL);
        cell("server SEARCH text", addr, NULL, 8, 1, NULL);
        printf("8 conns / in-process batch-1: %.0f %% (target >= 90 %%); 64 conns: %.0f %% (no coalescing yet)\n",
               base > 0 ? 100 * q8 / base : 0, base > 0 ? 100 * q64 / base : 0);
        printf("RSS under load %ld MiB\n", rss_load / 1024);
        net_server_stop(srv);
        pthread_join(th, NULL);
        net_server_free(srv);
        free(queries);
        eng_close(db);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd)) {}
    }
    return 0;
}
