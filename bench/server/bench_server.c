/* bench_server: search QPS and latency through the server on loopback vs
 * in-process engine search on the same data, in the same run.
 *
 *   bench_server [N_VECTORS...]      (default: 100000 1000000)
 *
 * For each size: a database of N random unit vectors (tiny-a's dim) in a
 * Flat collection; in-process eng_search_vector batch-1 QPS (1 thread) and
 * eng_search_vectors batch-64 QPS (1 thread); the same queries through
 * `net_server` with 1, 8 and 64 connections (one thread each, synchronous
 * requests; with 64 the server coalesces them, its batch counters are
 * printed), also with coalescing off; then text-query QPS and the process
 * RSS. Then ingest: images/s of real photos (tests/engine/photos.c, env
 * BENCH_PHOTOS = how many, default 200) through the server (bytes uploaded
 * by 1 and 4 connections, group commit; and 4 connections with one
 * transaction per upload) vs embedded eng_ingest_paths (what `percept
 * ingest` runs) on the same files, each a fresh database, cells interleaved,
 * medians of BENCH_REPS (default 3). `bench_server 0`: ingest only.
 * BENCH_DIM=512: a vectors-only database of that dimension instead of
 * tiny-a's 32 (no text rows). Slow readers (sizes up to 200 000): 64
 * connections each pipeline 64 SEARCHes with k = 1000 and read nothing
 * while one client searches (its QPS and latency next to the same client
 * without them), with the server's unsent answer bytes and the RSS against
 * the bound of docs/protocol.md §4; then they read, and every answer must
 * arrive. Bounded: each search cell runs for SECONDS
 * (env BENCH_SECONDS, default 3). Prints a table
 * and a checksum of the hit ids so a fast but wrong run is visible. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "engine/eng.h"
#include "net/client.h"
#include "net/mp.h"
#include "net/proto.h"
#include "photos.h"
#include "net/server.h"
#include "net_testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (every thread), user + system. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *serve_thread(void *srv);
static void bench_stalled(eng_db *db, const net_server_opts *base);
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
    int batch;              /* in-process: eng_search_vectors of this many */
} run;

static void *runner(void *p) {
    run *r = p;
    pc_client *c = NULL;
    if (!r->db && pc_connect(r->addr, NULL, &c)) { r->err = 1; return NULL; }
    eng_query q;
    eng_query_default(&q);
    q.k = 10;
    double end = now() + seconds;
    if (r->batch > 1) { /* in-process batches; one latency entry per query */
        eng_results **res = calloc((size_t)r->batch, sizeof *res);
        for (long i = 0; now() < end && r->n + r->batch <= r->cap; i++) {
            double t0 = now();
            const float *v = queries + (size_t)((i * r->batch) % NQ) * dim;
            if (eng_search_vectors(r->db, v, r->batch, dim, &q, res)) { r->err = 1; break; }
            double dt = now() - t0;
            for (int b = 0; b < r->batch; b++) {
                r->lat[r->n++] = dt;
                for (int j = 0; j < res[b]->n; j++) r->checksum += res[b]->hits[j].id * (uint64_t)(j + 1);
                eng_results_free(res[b]);
            }
        }
        free(res);
        return NULL;
    }
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

static void cell_b(const char *what, const char *addr, eng_db *db, int conns, int text, int batch, double *qps_out);
static void cell(const char *what, const char *addr, eng_db *db, int conns, int text, double *qps_out) {
    cell_b(what, addr, db, conns, text, 1, qps_out);
}

static void cell_b(const char *what, const char *addr, eng_db *db, int conns, int text, int batch, double *qps_out) {
    run *r = calloc((size_t)conns, sizeof *r);
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    double t0 = now();
    for (int i = 0; i < conns; i++) {
        r[i].addr = addr; r[i].db = db; r[i].text = text; r[i].batch = batch;
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

/* The server's coalescing counters (STATS server.search_batches, .batched_searches). */
static void batch_counters(const char *addr, uint64_t *batches, uint64_t *batched) {
    *batches = *batched = 0;
    pc_client *c = NULL;
    uint8_t *p = NULL;
    size_t len = 0;
    if (pc_connect(addr, NULL, &c) || pc_call(c, NET_OP_STATS, "\x80", 1, &p, &len)) { pc_close(c); return; }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    if (net_mp_unpack(p, len, &u, &o) == PERR_OK) {
        const msgpack_object *srv = net_mp_get(o, "server");
        const msgpack_object *a = srv ? net_mp_get(srv, "search_batches") : NULL;
        const msgpack_object *b = srv ? net_mp_get(srv, "batched_searches") : NULL;
        if (a && a->type == MSGPACK_OBJECT_POSITIVE_INTEGER) *batches = a->via.u64;
        if (b && b->type == MSGPACK_OBJECT_POSITIVE_INTEGER) *batched = b->via.u64;
    }
    msgpack_unpacked_destroy(&u);
    free(p);
    pc_close(c);
}

typedef struct ing { const char *addr; photo_set *ps; int from, step; long n; int err; } ing;

static void *ingest_runner(void *p) {
    ing *g = p;
    pc_client *c = NULL;
    if (pc_connect(g->addr, NULL, &c)) { g->err = 1; return NULL; }
    for (int i = g->from; i < g->ps->n; i += g->step) {
        void *data = NULL;
        size_t len = 0;
        uint64_t id;
        eng_outcome oc;
        pc_ingest_opts io = {.uri = g->ps->paths[i]};
        if (pc_read_file(g->ps->paths[i], (size_t)1 << 28, &data, &len) ||
            pc_ingest_bytes(c, data, len, &io, &id, &oc)) { g->err = 1; free(data); break; }
        free(data);
        g->n++;
    }
    pc_close(c);
    return NULL;
}

static eng_db *open_db(const char *dir, const char *model, const char *vocab, size_t map, int group_max) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model; o.vocab_path = vocab; o.create = 1; o.n_encoders = 2;
    o.map_size = map;
    o.upload_group_max = group_max;
    eng_db *db = NULL;
    if (eng_open(dir, &o, &db)) { fprintf(stderr, "open %s: %s\n", dir, perr_msg()); return NULL; }
    return db;
}

static void rm_rf(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

/* Embedded eng_ingest_paths of every photo into a fresh database: images/s
 * (< 0 on error). */
static double ingest_embedded(photo_set *ps, const char *model, const char *vocab) {
    char dir[] = "/tmp/bench_server_ing_XXXXXX";
    if (!mkdtemp(dir)) return -1;
    eng_db *db = open_db(dir, model, vocab, (size_t)1 << 30, 0);
    if (!db) return -1;
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    eng_progress pr;
    double t0 = now();
    int rc = eng_ingest_paths(db, (const char *const *)ps->paths, ps->n, &io, &pr);
    double el = now() - t0;
    eng_close(db);
    rm_rf(dir);
    return rc || pr.failed || (int)pr.added != ps->n ? -1 : pr.added / el;
}

/* The same photos uploaded through a fresh server by conns connections:
 * images/s (< 0 on error); *groups, *grouped: the engine's group-commit
 * counters. group_max 1: a transaction per upload. */
static double ingest_server(photo_set *ps, const char *model, const char *vocab, int conns, int group_max,
                            uint64_t *groups, uint64_t *grouped) {
    char dir[] = "/tmp/bench_server_ing_XXXXXX";
    eng_db *db;
    if (!mkdtemp(dir) || !(db = open_db(dir, model, vocab, (size_t)1 << 30, group_max))) return -1;
    net_server_opts so;
    net_server_opts_default(&so);
    static const char *const lis[] = {"127.0.0.1:0"};
    so.listen = lis; so.n_listen = 1;
    net_server *srv = NULL;
    if (net_server_new(db, &so, &srv)) { fprintf(stderr, "server: %s\n", perr_msg()); return -1; }
    pthread_t th;
    pthread_create(&th, NULL, serve_thread, srv);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(srv, 0));
    ing g[8];
    pthread_t gt[8];
    double t0 = now();
    for (int i = 0; i < conns; i++) {
        g[i] = (ing){addr, ps, i, conns, 0, 0};
        pthread_create(&gt[i], NULL, ingest_runner, &g[i]);
    }
    long done = 0;
    int err = 0;
    for (int i = 0; i < conns; i++) { pthread_join(gt[i], NULL); done += g[i].n; err |= g[i].err; }
    double el = now() - t0;
    eng_stats st;
    if (eng_get_stats(db, &st) == PERR_OK) { *groups = st.upload_groups; *grouped = st.uploads_grouped; }
    net_server_stop(srv);
    pthread_join(th, NULL);
    net_server_free(srv);
    eng_close(db);
    rm_rf(dir);
    return err || done != ps->n ? -1 : done / el;
}

/* Ingest images/s: embedded eng_ingest_paths vs uploads through the server
 * (group commit; and a transaction per upload), the same files, the cells
 * interleaved over BENCH_REPS repetitions (default 3), medians. */
static void bench_ingest(const char *model, const char *vocab) {
    int want = getenv("BENCH_PHOTOS") ? atoi(getenv("BENCH_PHOTOS")) : 200;
    int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 3;
    if (reps < 1) reps = 1;
    if (reps > 15) reps = 15;
    photo_set ps;
    int n = photos_gather(&ps, want, 1024);
    if (n <= 0) { printf("\ningest: no photos found (scripts/deps.sh installs the wallpaper packages)\n"); return; }
    enum { NCELL = 4 };
    static const char *what[NCELL] = {"embedded eng_ingest_paths (percept ingest)", "server INGEST, group commit",
                                      "server INGEST, group commit", "server INGEST, 1 upload per txn"};
    static const int conns[NCELL] = {0, 1, 4, 4};
    double rate[NCELL][15], cpu_img[NCELL][15], busy[NCELL][15];
    uint64_t groups[NCELL] = {0}, grouped[NCELL] = {0};
    int err[NCELL] = {0};
    for (int r = 0; r < reps; r++)
        for (int c = 0; c < NCELL; c++) {
            uint64_t gs = 0, gd = 0;
            double c0 = cpu_s(), t0 = now();
            rate[c][r] = c == 0 ? ingest_embedded(&ps, model, vocab)
                                : ingest_server(&ps, model, vocab, conns[c], c == 3 ? 1 : 0, &gs, &gd);
            /* the whole cell (open, ingest, close; clients included): CPU
             * per image and cores kept busy, which a loaded machine
             * distorts less than images/s */
            double dc = cpu_s() - c0, dt = now() - t0;
            cpu_img[c][r] = 1e3 * dc / n;
            busy[c][r] = dt > 0 ? dc / dt : 0;
            if (rate[c][r] < 0) err[c] = 1;
            groups[c] += gs;
            grouped[c] += gd;
        }
    printf("\ningest of %d real photos (JPEG, longest side <= 1024), tiny-a, median of %d runs (cells interleaved)\n", n, reps);
    printf("| %-42s | %5s | %9s | %8s | %10s | %10s | %11s |\n", "what", "conns", "images/s", "% embed",
           "CPU ms/img", "cores busy", "uploads/txn");
    printf("|--------------------------------------------|-------|-----------|----------|------------|------------|-------------|\n");
    double med[NCELL];
    for (int c = 0; c < NCELL; c++) {
        qsort(rate[c], (size_t)reps, sizeof(double), cmp_d);
        qsort(cpu_img[c], (size_t)reps, sizeof(double), cmp_d);
        qsort(busy[c], (size_t)reps, sizeof(double), cmp_d);
        med[c] = rate[c][reps / 2];
        char cs[8] = "-", gs[16] = "-";
        if (conns[c]) snprintf(cs, sizeof cs, "%d", conns[c]);
        if (groups[c]) snprintf(gs, sizeof gs, "%.2f", (double)grouped[c] / (double)groups[c]);
        printf("| %-42s | %5s | %9.1f | %7.1f%% | %10.2f | %10.2f | %11s |%s\n", what[c], cs, med[c],
               med[0] > 0 ? 100 * med[c] / med[0] : 0, cpu_img[c][reps / 2], busy[c][reps / 2], gs,
               err[c] ? " ERR" : "");
    }
    printf("server, 4 connections, group commit: %.0f %% of embedded (target >= 90 %%)\n",
           med[0] > 0 ? 100 * med[2] / med[0] : 0);
    photos_free(&ps);
}

static void *serve_thread(void *srv) {
    net_server_run(srv);
    return NULL;
}

/* 64 stalled readers (tests/net/test_net_slow.c does the same with a
 * check): one client's search QPS while they hold their answers. */
static void bench_stalled(eng_db *db, const net_server_opts *base) {
    enum { CONNS = 64, K = 1000 };
    net_server_opts so = *base;
    so.batch_max = 64;
    so.max_queue = CONNS * so.max_inflight; /* every request searched, none BUSY */
    net_server *srv = NULL;
    if (net_server_new(db, &so, &srv)) { fprintf(stderr, "server: %s\n", perr_msg()); return; }
    pthread_t th;
    pthread_create(&th, NULL, serve_thread, srv);
    int port = net_server_port(srv, 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    msgpack_sbuffer sb;
    nt_pack_vsearch(&sb, queries, dim, K);
    pc_client *c = NULL;
    uint8_t *p = NULL;
    size_t plen = 0;
    if (pc_connect(addr, NULL, &c) || pc_call(c, NET_OP_SEARCH, sb.data, sb.size, &p, &plen)) { pc_close(c); plen = 0; }
    pc_close(c);
    free(p);
    size_t answer = NET_HEADER_SIZE + plen;
    cell("server SEARCH vector, no stall", addr, NULL, 1, 0, NULL);
    long rss0 = nt_rss_kb();
    int *fds = NULL;
    if (nt_stall_start(port, CONNS, so.max_inflight, NET_OP_SEARCH, sb.data, (uint32_t)sb.size, &fds)) {
        printf("stalled readers: could not connect\n");
    } else {
        cell("server SEARCH vector, 64 stalled", addr, NULL, 1, 0, NULL);
        for (int i = 0; i < 1200 && nt_server_stat(port, "queue_depth") != 0; i++) usleep(100000);
        long long unsent = nt_server_stat(port, "unsent_bytes");
        long rss = nt_rss_kb();
        long got = nt_stall_drain(fds, CONNS, so.max_inflight, 60000);
        double bound = (double)CONNS * so.max_inflight * (double)answer;
        printf("64 stalled readers x %d SEARCH k=%d (answer %zu B): server holds %.1f MiB unsent (bound %d x %d x answer = %.1f MiB), "
               "RSS +%.1f MiB; after reading: %ld of %d answers%s\n", so.max_inflight, K, answer, unsent / 1048576.0,
               CONNS, so.max_inflight, bound / 1048576.0, (rss - rss0) / 1024.0, got, CONNS * so.max_inflight,
               got == (long)CONNS * so.max_inflight && unsent <= bound ? "" : " ERR");
    }
    net_server_stop(srv);
    pthread_join(th, NULL);
    net_server_free(srv);
    msgpack_sbuffer_destroy(&sb);
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
    if (argc > 1) { /* a size <= 0 skips the search part (bench_server 0: ingest only) */
        n_sizes = 0;
        for (int i = 1; i < argc && n_sizes < 8; i++) if (atol(argv[i]) > 0) sizes[n_sizes++] = atol(argv[i]);
    }
    char host[256] = "";
    gethostname(host, sizeof host);
    char cpu[256] = "?";
    FILE *cf = fopen("/proc/cpuinfo", "r");
    char line[1024];
    while (cf && fgets(line, sizeof line, cf))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (cf) fclose(cf);
    printf("bench_server: host %s, %s, %ld cores, %.1f s per cell, %s, k=10, Flat\n", host, cpu,
           sysconf(_SC_NPROCESSORS_ONLN), seconds, getenv("BENCH_DIM") ? "vectors only (BENCH_DIM)" : "model tiny-a");
    for (int si = 0; si < n_sizes; si++) {
        char dir[] = "/tmp/bench_server_XXXXXX";
        if (!mkdtemp(dir)) return 1;
        eng_open_opts o;
        eng_open_opts_default(&o);
        o.model_path = model; o.vocab_path = vocab; o.create = 1; o.n_encoders = 2;
        int vdim = getenv("BENCH_DIM") ? atoi(getenv("BENCH_DIM")) : 0;
        if (vdim > 0) { o.model_path = NULL; o.vocab_path = NULL; o.vector_dim = vdim; } /* vectors only: no text rows */
        o.map_size = (size_t)sizes[si] * (4096 + 4 * (size_t)(vdim > 0 ? vdim : 512)) * 2 + ((size_t)1 << 30);
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
        long rss_rest = nt_rss_kb();
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
        if (vdim <= 0) cell("warm-up", NULL, db, 1, 1, NULL);
        fclose(stdout);
        stdout = saved;
        seconds = s0;
        double b64 = 0;
        uint64_t nb0, nq0, nb1, nq1;
        cell("in-process eng_search_vector", NULL, db, 1, 0, &base);
        cell_b("in-process eng_search_vectors x64", NULL, db, 1, 0, 64, &b64);
        cell("server SEARCH vector", addr, NULL, 1, 0, NULL);
        cell("server SEARCH vector", addr, NULL, 8, 0, &q8);
        batch_counters(addr, &nb0, &nq0);
        cell("server SEARCH vector (coalesced)", addr, NULL, 64, 0, &q64);
        batch_counters(addr, &nb1, &nq1);
        long rss_load = nt_rss_kb();
        if (vdim <= 0) {
            cell("in-process eng_search_text", NULL, db, 1, 1, NULL);
            cell("server SEARCH text", addr, NULL, 8, 1, NULL);
        }
        printf("in-process: batch-1 %.0f QPS, batch-64 %.0f QPS (%.1fx); server 8 conns: %.0f %% of batch-1 (target >= 90 %%); "
               "64 conns coalesced: %.0f %% of batch-1 (%.1f searches per batch)\n",
               base, b64, base > 0 ? b64 / base : 0, base > 0 ? 100 * q8 / base : 0, base > 0 ? 100 * q64 / base : 0,
               nb1 > nb0 ? (double)(nq1 - nq0) / (double)(nb1 - nb0) : 0);
        printf("RSS under load %ld MiB\n", rss_load / 1024);
        net_server_stop(srv);
        pthread_join(th, NULL);
        net_server_free(srv);
        /* the same 64 connections without coalescing */
        so.batch_max = 1;
        if (net_server_new(db, &so, &srv)) { fprintf(stderr, "server: %s\n", perr_msg()); return 1; }
        pthread_create(&th, NULL, serve_thread, srv);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(srv, 0));
        cell("server SEARCH vector (batch-max 1)", addr, NULL, 64, 0, NULL);
        net_server_stop(srv);
        pthread_join(th, NULL);
        net_server_free(srv);
        if (sizes[si] <= 200000) bench_stalled(db, &so);
        free(queries);
        eng_close(db);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd)) {}
    }
    bench_ingest(model, vocab);
    return 0;
}
