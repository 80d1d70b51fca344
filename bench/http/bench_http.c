/* bench_http: the HTTP/JSON door vs the binary protocol, same server, same
 * database, same queries, in the same run.
 *
 *   bench_http [N_VECTORS]      (default 100000)
 *
 * A database of N random unit vectors (tiny-a's dim) in a Flat collection,
 * served by one `percept serve` equivalent (net_server + http_server, 2
 * workers). Vector search (k=10) through the binary protocol (pc_search_vector)
 * and through POST /search with a JSON vector (a keep-alive socket per
 * connection; responses parsed by picohttpparser, which libh2o exports; a
 * libcurl client measured 1-3 ms of its own per request), with
 * 1, 8 and 64 connections (one client thread each, synchronous requests),
 * then text search with 8 connections. QPS, p50, p99. Each cell runs
 * BENCH_SECONDS (default 3).
 * Client threads share the machine with the server: compare the two doors,
 * not absolute numbers. */
#define _GNU_SOURCE
#include "bench/common/bench_util.h"
#include "common/perr.h"
#include "engine/eng.h"
#include "http/http.h"
#include "net/client.h"
#include "net/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { NQ = 1024 };
static double seconds = 3;
static int dim;
static float *queries;
static char **bodies; /* the JSON of each query */
static char bin_addr[64];
static int http_port;

typedef struct run {
    int http, text;
    double *lat; long n, cap;
    uint64_t checksum;
    int err;
} run;

/* picohttpparser (bundled in libh2o, which exports it; no header of its own here) */
struct phr_header { const char *name; size_t name_len; const char *value; size_t value_len; };
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status, const char **msg,
                       size_t *msg_len, struct phr_header *headers, size_t *num_headers, size_t last_len);

typedef struct hconn { int fd; char *buf; size_t cap; } hconn;

static int hconn_open(hconn *h) {
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    h->cap = 1 << 20;
    h->buf = malloc(h->cap);
    return connect(h->fd, (struct sockaddr *)&sa, sizeof sa);
}

/* One POST /search on the kept-alive connection; *body points into h->buf. */
static int hconn_post(hconn *h, const char *json, const char **body, size_t *blen) {
    char head[256];
    size_t jl = strlen(json);
    int hl = snprintf(head, sizeof head, "POST /search HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n", jl);
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)json, jl}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(h->fd, &mh, MSG_NOSIGNAL) != (ssize_t)(hl + jl)) return -1;
    size_t got = 0, prev = 0;
    for (;;) {
        ssize_t r = recv(h->fd, h->buf + got, h->cap - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
        int minor, status;
        const char *msg;
        size_t msg_len, nh = 32;
        struct phr_header hd[32];
        int n = phr_parse_response(h->buf, got, &minor, &status, &msg, &msg_len, hd, &nh, prev);
        prev = got;
        if (n == -2) continue;
        if (n < 0 || status != 200) return -1;
        size_t cl = 0;
        for (size_t i = 0; i < nh; i++)
            if (hd[i].name_len == 14 && !strncasecmp(hd[i].name, "content-length", 14)) cl = strtoul(hd[i].value, NULL, 10);
        while (got < (size_t)n + cl) {
            r = recv(h->fd, h->buf + got, h->cap - got, 0);
            if (r <= 0) return -1;
            got += (size_t)r;
        }
        *body = h->buf + n;
        *blen = cl;
        return 0;
    }
}

static uint64_t sum_hits_json(const char *body, size_t len, int *err) {
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *hits = cJSON_GetObjectItemCaseSensitive(j, "hits");
    uint64_t s = 0;
    int i = 0;
    if (!cJSON_IsArray(hits)) *err = 1;
    for (const cJSON *h = hits ? hits->child : NULL; h; h = h->next, i++)
        s += (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "id")) * (uint64_t)(i + 1);
    cJSON_Delete(j);
    return s;
}

static void *runner(void *p) {
    run *r = p;
    pc_client *c = NULL;
    hconn hc = {-1, NULL, 0};
    if (r->http) {
        if (hconn_open(&hc)) { r->err = 1; close(hc.fd); free(hc.buf); return NULL; }
    } else if (pc_connect(bin_addr, NULL, &c)) { r->err = 1; return NULL; }
    eng_query q;
    eng_query_default(&q);
    q.k = 10;
    static const char text_body[] = "{\"text\":\"a photo of a cat\",\"k\":10}";
    double end = bench_now() + seconds;
    for (long i = 0; bench_now() < end && r->n < r->cap; i++) {
        double t0 = bench_now();
        if (r->http) {
            const char *b = r->text ? text_body : bodies[i % NQ], *body = NULL;
            size_t blen = 0;
            if (hconn_post(&hc, b, &body, &blen)) { r->err = 1; break; }
            r->lat[r->n++] = bench_now() - t0;
            r->checksum += sum_hits_json(body, blen, &r->err);
        } else {
            eng_results *res = NULL;
            int rc = r->text ? pc_search_text(c, "a photo of a cat", &q, &res)
                             : pc_search_vector(c, queries + (size_t)(i % NQ) * dim, dim, &q, &res);
            if (rc) { r->err = 1; break; }
            r->lat[r->n++] = bench_now() - t0;
            for (int j = 0; j < res->n; j++) r->checksum += res->hits[j].id * (uint64_t)(j + 1);
            eng_results_free(res);
        }
    }
    pc_close(c);
    if (hc.fd >= 0) close(hc.fd);
    free(hc.buf);
    return NULL;
}

/* One row; returns the QPS. A failed request or an answer without hits
 * marks the row ERR. */
static double cell(const char *what, int http, int conns, int text) {
    run *r = calloc((size_t)conns, sizeof *r);
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    double t0 = bench_now();
    for (int i = 0; i < conns; i++) {
        r[i].http = http; r[i].text = text;
        r[i].cap = 2000000; r[i].lat = malloc(sizeof(double) * (size_t)r[i].cap);
        pthread_create(&th[i], NULL, runner, &r[i]);
    }
    long n = 0;
    int err = 0;
    for (int i = 0; i < conns; i++) { pthread_join(th[i], NULL); n += r[i].n; err |= r[i].err; }
    double el = bench_now() - t0;
    double *all = malloc(sizeof(double) * (size_t)(n ? n : 1));
    long k = 0;
    for (int i = 0; i < conns; i++) { memcpy(all + k, r[i].lat, sizeof(double) * (size_t)r[i].n); k += r[i].n; free(r[i].lat); }
    qsort(all, (size_t)n, sizeof *all, bench_cmp_double);
    double qps = n / el;
    printf("| %-26s | %5d | %9.0f | %8.3f | %8.3f |%s\n", what, conns, qps, n ? all[n / 2] * 1e3 : 0,
           n ? all[(long)(n * 0.99)] * 1e3 : 0, err ? " ERR" : "");
    free(all); free(r); free(th);
    return qps;
}

static void *serve_thread(void *srv) {
    net_server_run(srv);
    return NULL;
}

static void cpu_header(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096], model[256] = "?";
    int avx2 = 0, avx512 = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10) && model[0] == '?') {
            char *c = strchr(line, ':');
            if (c) { snprintf(model, sizeof model, "%s", c + 2); model[strcspn(model, "\n")] = 0; }
        }
        if (!strncmp(line, "flags", 5)) { avx2 = strstr(line, " avx2") != NULL; avx512 = strstr(line, " avx512f") != NULL; }
    }
    if (f) fclose(f);
    double la[3] = {0};
    if (getloadavg(la, 3) < 0) la[0] = -1;
    printf("bench_http: %s (%s%s), %ld cores, load %.2f %.2f %.2f, %.1f s per cell, k=10, Flat, server: 2 workers\n",
           model, avx2 ? "AVX2" : "no AVX2", avx512 ? ", AVX-512F" : "", sysconf(_SC_NPROCESSORS_ONLN), la[0], la[1], la[2], seconds);
}

int main(int argc, char **argv) {
    const char *fx = getenv("PERCEPT_FIXTURES");
    if (!fx || !*fx) fx = PERCEPT_DEFAULT_FIXTURES;
    if (getenv("BENCH_SECONDS")) seconds = atof(getenv("BENCH_SECONDS"));
    long nvec = argc > 1 ? atol(argv[1]) : 100000;
    char model[4096], vocab[4096];
    snprintf(model, sizeof model, "%s/tiny-a/tiny-a.safetensors", fx);
    snprintf(vocab, sizeof vocab, "%s/bpe_simple_vocab_16e6.txt.gz", fx);
    cpu_header();
    char dir[] = "/tmp/bench_http_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model; o.vocab_path = vocab; o.create = 1; o.n_encoders = 2;
    o.map_size = (size_t)nvec * 8192 + ((size_t)1 << 30);
    eng_db *db = NULL;
    if (eng_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return 1; }
    dim = eng_dim(db);
    srand(42);
    enum { CHUNK = 10000 };
    float *v = malloc(sizeof(float) * (size_t)CHUNK * dim);
    for (long done = 0; done < nvec; done += CHUNK) {
        int n = (int)(nvec - done < CHUNK ? nvec - done : CHUNK);
        for (long i = 0; i < (long)n * dim; i++) v[i] = (float)rand() / RAND_MAX - 0.5f;
        if (eng_add_vectors(db, v, n, NULL, NULL, NULL)) { fprintf(stderr, "add: %s\n", perr_msg()); return 1; }
    }
    free(v);
    queries = malloc(sizeof(float) * (size_t)NQ * dim);
    bodies = malloc(sizeof(char *) * NQ);
    for (long i = 0; i < (long)NQ * dim; i++) queries[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < NQ; i++) {
        size_t cap = (size_t)dim * 20 + 64, n = 0;
        bodies[i] = malloc(cap);
        n += (size_t)snprintf(bodies[i] + n, cap - n, "{\"k\":10,\"vector\":[");
        for (int d = 0; d < dim; d++) n += (size_t)snprintf(bodies[i] + n, cap - n, d ? ",%.9g" : "%.9g", (double)queries[(size_t)i * dim + d]);
        snprintf(bodies[i] + n, cap - n, "]}");
    }
    net_server_opts so;
    net_server_opts_default(&so);
    static const char *const lis[] = {"127.0.0.1:0"};
    so.listen = lis; so.n_listen = 1; so.max_conns = 256;
    net_server *srv = NULL;
    http_server *hs = NULL;
    if (net_server_new(db, &so, &srv) || http_server_new(srv, db, "127.0.0.1:0", &hs)) { fprintf(stderr, "server: %s\n", perr_msg()); return 1; }
    snprintf(bin_addr, sizeof bin_addr, "127.0.0.1:%d", net_server_port(srv, 0));
    http_port = http_server_port(hs);
    pthread_t th;
    pthread_create(&th, NULL, serve_thread, srv);
    printf("\n%ld vectors x %d dims\n", nvec, dim);
    printf("| %-26s | %5s | %9s | %8s | %8s |\n", "what", "conns", "QPS", "p50 ms", "p99 ms");
    printf("|----------------------------|-------|-----------|----------|----------|\n");
    double s0 = seconds;
    seconds = 1; /* warm-up: page cache, encoder load */
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    cell("warm-up", 0, 1, 0); cell("warm-up", 1, 1, 0); cell("warm-up", 0, 1, 1);
    fclose(stdout);
    stdout = saved;
    seconds = s0;
    double b[3], h[3];
    int conns[3] = {1, 8, 64};
    for (int i = 0; i < 3; i++) {
        b[i] = cell("binary SEARCH vector", 0, conns[i], 0);
        h[i] = cell("HTTP POST /search vector", 1, conns[i], 0);
    }
    double bt = cell("binary SEARCH text", 0, 8, 1);
    double ht = cell("HTTP POST /search text", 1, 8, 1);
    printf("HTTP / binary QPS: vector 1 conn %.0f %%, 8 conns %.0f %% (target >= 80 %%), 64 conns %.0f %%; text 8 conns %.0f %%\n",
           100 * h[0] / b[0], 100 * h[1] / b[1], 100 * h[2] / b[2], 100 * ht / bt);
    double la[3] = {0};
    if (getloadavg(la, 3) == 3) printf("load at the end: %.2f %.2f %.2f\n", la[0], la[1], la[2]);
    net_server_stop(srv);
    pthread_join(th, NULL);
    http_server_free(hs);
    net_server_free(srv);
    eng_close(db);
    for (int i = 0; i < NQ; i++) free(bodies[i]);
    free(bodies);
    free(queries);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return 0;
}
