/* net_server: libuv event loop, connections, worker pool, limits, auth,
 * metrics and graceful shutdown (server.h; wire format in docs/protocol.md).
 *
 * DESIGN
 * - The loop thread owns every uv handle and every connection field except
 *   the job queue. It reads, frames (net_frame_parse, bounded before any
 *   allocation), answers PING/HELLO and protocol errors itself, and hands
 *   every other request to the workers as a job. It never decodes a payload
 *   of a real request, never calls the engine, never blocks.
 * - Workers take jobs round-robin over the connections that have some (one
 *   job per connection per turn), so a client with 60 queued requests, or
 *   one huge one, does not starve the others. Results come back through a
 *   completion list and uv_async_send; the async callback drains the whole
 *   list (wakeups coalesce).
 * - Back-pressure instead of unbounded memory: a connection stops being read
 *   when it has max_inflight requests unanswered or max_write_queue bytes
 *   unsent (slow reader); a request arriving while max_queue jobs already
 *   wait is answered BUSY at once, unless its connection has none waiting.
 * - Lifetimes: a connection is freed in the loop thread only when its handle
 *   is closed and no job refers to it (refs). Jobs of a connection that went
 *   away are dropped from the queue, or, when already running, their result
 *   is discarded.
 * - Shutdown (stop or SIGTERM/SIGINT): listeners close, no connection is read
 *   any more, requests already accepted complete and their responses are
 *   written; then everything closes and net_server_run returns, and the
 *   caller closes the database (saving indexes).
 */
#define _GNU_SOURCE
#include "net/server.h"
#include "net/mp.h"
#include "net/ops.h"
#include "net/proto.h"
#include "common/perr.h"
#include "index/idx.h"

#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int num_threads); /* OpenBLAS (no header of its own here) */

#define MAX_LISTENERS 16
#define HELLO_MAX_PAYLOAD (64u << 10)
#define READ_CHUNK (64u << 10)
#define STEAL_MIN (256u << 10)  /* payloads this big take the read buffer instead of a copy */
#define N_BUCKETS 15

static const double bucket_le[N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1, 0.25, 0.5, 1, 2.5, 5, 10, 1e300};

typedef struct conn conn;

typedef struct job {
    struct job *next;
    conn *c;                    /* NULL: internal (SIGHUP snapshot) */
    uint8_t op;
    uint64_t id;
    uint8_t *buf;               /* owned memory holding the payload */
    const uint8_t *payload;
    size_t len;
    uint64_t t_recv;            /* uv_hrtime at arrival */
    net_task_fn run;            /* a task of a front end (c NULL): run on a worker */
    net_task_done_fn done;      /* then done on the loop thread */
    net_op_post_fn post;        /* an operation of a front end (c NULL): gets the response payload */
    void *arg;
    uint8_t *out;               /* response frame (header + payload) */
    size_t out_len;
    int rc;
} job;

struct conn {
    union { uv_handle_t handle; uv_stream_t stream; uv_tcp_t tcp; uv_pipe_t pipe; } h;
    net_server *s;
    conn *prev, *next;          /* s->conns list (loop thread) */
    uint8_t *rbuf;
    size_t rlen, rcap, need;
    int inflight;               /* frames accepted, response not yet written */
    int refs;                   /* 1 for the open handle + 1 per job */
    int authed, closing, reading, eof, failing;
    uint64_t last_ns;
    uint64_t cid;
    /* Protected by s->mu: */
    job *qh, *qt;
    int queued;
    conn *rnext;
    int in_ring;
};

typedef struct write_req {
    uv_write_t req;
    conn *c;
    uint8_t *buf;
    size_t len;
    int counts;                 /* decrements inflight when done */
} write_req;

typedef struct listener {
    union { uv_handle_t handle; uv_stream_t stream; uv_tcp_t tcp; uv_pipe_t pipe; } h;
    net_server *s;
    int is_metrics;
    int port;
    char unix_path[256];
} listener;

typedef struct op_metrics {
    uint64_t requests, errors;
    uint64_t buckets[N_BUCKETS];
    double sum_s;
} op_metrics;

struct net_server {
    net_server_opts o;
    eng_db *db;
    eng_info info;
    char *dirs[2];              /* the database directory as given and resolved */
    char *token;
    uv_loop_t loop;
    uv_async_t async;           /* completions and stop requests */
    uv_timer_t sweep;           /* idle timeouts */
    uv_signal_t sig[3];
    int n_sig;
    listener lis[MAX_LISTENERS + 1];
    int n_lis;
    conn *conns;
    int n_conns;
    uint64_t next_cid;
    int draining, stopped;
    int extra_signals;          /* SIGTERM/SIGINT received while draining */
    volatile sig_atomic_t stop_requested;

    /* Worker pool. */
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn *ring_h, *ring_t;      /* connections with queued jobs */
    job *internal;              /* jobs without a connection */
    job *task_h, *task_t;       /* front ends' tasks (FIFO), counted in queued_total */
    int task_turn;              /* workers alternate between connections and tasks */
    int queued_total, running;
    int pool_stop;
    /* INGEST uploads handed to the engine's group committer whose
     * completion has not finished yet (mu; net_server_free waits for 0). */
    int deferred;
    pthread_cond_t deferred_cv;

    pthread_mutex_t dmu;        /* completions */
    job *done_h, *done_t;

    /* Metrics (metrics_mu; written by the loop, read by STATS and /metrics). */
    pthread_mutex_t metrics_mu;
    op_metrics ops[256];
    uint64_t conns_total, conns_refused, busy, protocol_errors, bytes_in, bytes_out;
    uint64_t unsent;            /* response bytes queued, not yet taken by the kernel */
    uint64_t snapshots;
    uint64_t batches, batched;  /* coalesced vector searches: engine calls, queries */

    net_frontend fronts[4];     /* other front doors on this loop (http/) */
    int n_fronts;
};

static void conn_close(conn *c);
static void conn_process(conn *c);
static void conn_update_reading(conn *c);
static void check_drained(net_server *s);
static void drain(net_server *s);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void logf_(net_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(net_server *s, const char *fmt, ...) {
    if (!s->o.verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("percept serve: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void net_server_opts_default(net_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_frame = NET_MAX_FRAME_DEFAULT;
    o->max_inflight = 64;
    o->max_conns = 1024;
    o->idle_timeout_ms = 300000;
    o->workers = 2;
    o->max_queue = 1024;
    o->max_write_queue = (size_t)64 << 20;
    o->batch_max = 64;
    o->index_threads = 1;
}

/* ---- response frames ---------------------------------------------------- */

/* A response frame from a packed payload (sbuffer data after a 20-byte gap). */
static void frame_finish(msgpack_sbuffer *sb, int op, uint64_t id, int is_err) {
    net_header h = {NET_MAGIC, NET_VERSION, (uint8_t)op,
                    (uint16_t)(NET_F_RESPONSE | (is_err ? NET_F_ERROR : 0)), id,
                    (uint32_t)(sb->size - NET_HEADER_SIZE)};
    net_header_encode(&h, (uint8_t *)sb->data);
}

static int sbuf_init(msgpack_sbuffer *sb) {
    msgpack_sbuffer_init(sb);
    static const char gap[NET_HEADER_SIZE];
    return msgpack_sbuffer_write(sb, gap, sizeof gap);
}

/* An error response frame; NULL only when out of memory. */
static uint8_t *error_frame(int op, uint64_t id, int code, const char *msg, size_t *len) {
    msgpack_sbuffer sb;
    if (sbuf_init(&sb)) { msgpack_sbuffer_destroy(&sb); return NULL; }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    net_pack_error(&pk, code, msg);
    frame_finish(&sb, op, id, 1);
    *len = sb.size;
    return (uint8_t *)msgpack_sbuffer_release(&sb);
}

/* ---- metrics ------------------------------------------------------------- */

static void metrics_record(net_server *s, int op, int rc, uint64_t t_recv) {
    double dt = (double)(uv_hrtime() - t_recv) * 1e-9;
    pthread_mutex_lock(&s->metrics_mu);
    op_metrics *m = &s->ops[op & 0xff];
    m->requests++;
    if (rc) m->errors++;
    int b = 0;
    while (b < N_BUCKETS - 1 && dt > bucket_le[b]) b++;
    m->buckets[b]++;
    m->sum_s += dt;
    pthread_mutex_unlock(&s->metrics_mu);
}

/* The queue refuses (BUSY) a connection only when it is full and this
 * connection has a request waiting already: one client's backlog never
 * locks out a client that has nothing queued (the queue holds at most
 * max_queue + connections jobs). */
static int queue_full_for(net_server *s, const conn *c) {
    pthread_mutex_lock(&s->mu);
    int full = s->queued_total >= s->o.max_queue && c->queued > 0;
    pthread_mutex_unlock(&s->mu);
    return full;
}

static int queue_depth(net_server *s) {
    pthread_mutex_lock(&s->mu);
    int q = s->queued_total;
    pthread_mutex_unlock(&s->mu);
    return q;
}

/* Quantile estimate from the histogram (upper bound of its bucket). */
static double hist_quantile(const op_metrics *m, double q) {
    uint64_t n = 0;
    for (int b = 0; b < N_BUCKETS; b++) n += m->buckets[b];
    if (!n) return 0;
    uint64_t want = (uint64_t)(q * (double)n + 0.999999), acc = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        acc += m->buckets[b];
        if (acc >= want) return b == N_BUCKETS - 1 ? 60 : bucket_le[b];
    }
    return 60;
}

static void pack_server_stats(void *user, msgpack_packer *pk) {
    net_server *s = user;
    int depth = queue_depth(s);
    pthread_mutex_lock(&s->metrics_mu);
    int n_ops = 0;
    for (int i = 0; i < 256; i++) n_ops += s->ops[i].requests > 0 && net_op_name(i);
    msgpack_pack_map(pk, 11);
    net_mp_pack_key(pk, "connections"); msgpack_pack_int(pk, s->n_conns);
    net_mp_pack_key(pk, "unsent_bytes"); msgpack_pack_uint64(pk, s->unsent);
    net_mp_pack_key(pk, "search_batches"); msgpack_pack_uint64(pk, s->batches);
    net_mp_pack_key(pk, "batched_searches"); msgpack_pack_uint64(pk, s->batched);
    net_mp_pack_key(pk, "connections_total"); msgpack_pack_uint64(pk, s->conns_total);
    net_mp_pack_key(pk, "queue_depth"); msgpack_pack_int(pk, depth);
    net_mp_pack_key(pk, "workers"); msgpack_pack_int(pk, s->n_threads);
    net_mp_pack_key(pk, "busy_rejections"); msgpack_pack_uint64(pk, s->busy);
    net_mp_pack_key(pk, "protocol_errors"); msgpack_pack_uint64(pk, s->protocol_errors);
    net_mp_pack_key(pk, "snapshots"); msgpack_pack_uint64(pk, s->snapshots);
    net_mp_pack_key(pk, "ops");
    msgpack_pack_map(pk, (size_t)n_ops);
    for (int i = 0; i < 256; i++) {
        const op_metrics *m = &s->ops[i];
        if (!m->requests || !net_op_name(i)) continue;
        net_mp_pack_cstr(pk, net_op_name(i));
        msgpack_pack_map(pk, 5);
        net_mp_pack_key(pk, "requests"); msgpack_pack_uint64(pk, m->requests);
        net_mp_pack_key(pk, "errors"); msgpack_pack_uint64(pk, m->errors);
        net_mp_pack_key(pk, "mean_ms"); msgpack_pack_double(pk, m->sum_s * 1e3 / (double)m->requests);
        net_mp_pack_key(pk, "p50_ms_le"); msgpack_pack_double(pk, hist_quantile(m, 0.5) * 1e3);
        net_mp_pack_key(pk, "p99_ms_le"); msgpack_pack_double(pk, hist_quantile(m, 0.99) * 1e3);
    }
    pthread_mutex_unlock(&s->metrics_mu);
}

/* Prometheus text exposition format 0.0.4. Caller frees. */
static char *prometheus_text(net_server *s, size_t *len) {
    char *buf = NULL;
    size_t cap = 0;
    FILE *f = open_memstream(&buf, &cap);
    if (!f) return NULL;
    int depth = queue_depth(s);
    pthread_mutex_lock(&s->metrics_mu);
    fprintf(f, "# HELP percept_requests_total Requests answered, by opcode.\n# TYPE percept_requests_total counter\n");
    for (int i = 0; i < 256; i++)
        if (s->ops[i].requests && net_op_name(i))
            fprintf(f, "percept_requests_total{op=\"%s\"} %" PRIu64 "\n", net_op_name(i), s->ops[i].requests);
    fprintf(f, "# HELP percept_request_errors_total Requests answered with an error, by opcode.\n# TYPE percept_request_errors_total counter\n");
    for (int i = 0; i < 256; i++)
        if (s->ops[i].requests && net_op_name(i))
            fprintf(f, "percept_request_errors_total{op=\"%s\"} %" PRIu64 "\n", net_op_name(i), s->ops[i].errors);
    fprintf(f, "# HELP percept_request_duration_seconds Time from a request's arrival to its response being queued.\n"
               "# TYPE percept_request_duration_seconds histogram\n");
    for (int i = 0; i < 256; i++) {
        const op_metrics *m = &s->ops[i];
        if (!m->requests || !net_op_name(i)) continue;
        uint64_t acc = 0;
        for (int b = 0; b < N_BUCKETS; b++) {
            acc += m->buckets[b];
            if (b == N_BUCKETS - 1)
                fprintf(f, "percept_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", net_op_name(i), acc);
            else
                fprintf(f, "percept_request_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %" PRIu64 "\n", net_op_name(i), bucket_le[b], acc);
        }
        fprintf(f, "percept_request_duration_seconds_sum{op=\"%s\"} %.9f\n", net_op_name(i), m->sum_s);
        fprintf(f, "percept_request_duration_seconds_count{op=\"%s\"} %" PRIu64 "\n", net_op_name(i), m->requests);
    }
    fprintf(f, "# TYPE percept_queue_depth gauge\npercept_queue_depth %d\n", depth);
    fprintf(f, "# TYPE percept_connections gauge\npercept_connections %d\n", s->n_conns);
    fprintf(f, "# TYPE percept_connections_total counter\npercept_connections_total %" PRIu64 "\n", s->conns_total);
    fprintf(f, "# TYPE percept_connections_refused_total counter\npercept_connections_refused_total %" PRIu64 "\n", s->conns_refused);
    fprintf(f, "# TYPE percept_busy_rejections_total counter\npercept_busy_rejections_total %" PRIu64 "\n", s->busy);
    fprintf(f, "# TYPE percept_protocol_errors_total counter\npercept_protocol_errors_total %" PRIu64 "\n", s->protocol_errors);
    fprintf(f, "# TYPE percept_bytes_received_total counter\npercept_bytes_received_total %" PRIu64 "\n", s->bytes_in);
    fprintf(f, "# TYPE percept_bytes_sent_total counter\npercept_bytes_sent_total %" PRIu64 "\n", s->bytes_out);
    fprintf(f, "# HELP percept_unsent_response_bytes Responses written by the server, not yet taken by the kernel (slow readers).\n"
               "# TYPE percept_unsent_response_bytes gauge\npercept_unsent_response_bytes %" PRIu64 "\n", s->unsent);
    fprintf(f, "# TYPE percept_workers gauge\npercept_workers %d\n", s->n_threads);
    fprintf(f, "# HELP percept_search_batches_total Engine calls answering coalesced vector searches.\n"
               "# TYPE percept_search_batches_total counter\npercept_search_batches_total %" PRIu64 "\n", s->batches);
    fprintf(f, "# HELP percept_batched_searches_total Vector searches answered within a coalesced batch.\n"
               "# TYPE percept_batched_searches_total counter\npercept_batched_searches_total %" PRIu64 "\n", s->batched);
    pthread_mutex_unlock(&s->metrics_mu);
    fclose(f);
    *len = cap;
    return buf;
}

/* ---- worker pool --------------------------------------------------------- */

static void job_free(job *j) {
    if (!j) return;
    free(j->buf);
    free(j->out);
    free(j);
}

/* Every occurrence of the database directory becomes "<db>": clients learn
 * ids and names, not the server's file layout. */
void net_server_scrub(const net_server *s, const char *msg, char *out, size_t cap) {
    size_t o = 0;
    while (*msg && o + 1 < cap) {
        size_t skip = 0;
        for (int i = 0; i < 2 && !skip; i++) {
            size_t n = s->dirs[i] ? strlen(s->dirs[i]) : 0;
            if (n > 1 && !strncmp(msg, s->dirs[i], n)) skip = n;
        }
        if (skip) {
            int w = snprintf(out + o, cap - o, "<db>");
            o += w > 0 && (size_t)w < cap - o ? (size_t)w : cap - o - 1;
            msg += skip;
        } else out[o++] = *msg++;
    }
    out[o] = 0;
}

/* Turns a packed payload (or an error) into the job's response frame. */
static void job_respond(const net_server *s, job *j, int rc, msgpack_sbuffer *sb) {
    j->rc = rc;
    free(j->buf); /* the request is done with: free it before the response goes out */
    j->buf = NULL;
    j->payload = NULL;
    if (j->post) { /* a front end's operation: it formats the answer itself */
        j->post(j->arg, rc, rc ? NULL : (const uint8_t *)sb->data + NET_HEADER_SIZE, rc ? 0 : sb->size - NET_HEADER_SIZE);
        msgpack_sbuffer_destroy(sb);
        return;
    }
    if (rc) {
        char msg[1024];
        net_server_scrub(s, perr_msg(), msg, sizeof msg);
        msgpack_sbuffer_destroy(sb);
        j->out = error_frame(j->op, j->id, rc, msg, &j->out_len);
    } else if (sb->size - NET_HEADER_SIZE > UINT32_MAX) {
        msgpack_sbuffer_destroy(sb);
        j->rc = PERR_TOO_LARGE;
        j->out = error_frame(j->op, j->id, PERR_TOO_LARGE, "response exceeds 4 GiB", &j->out_len);
    } else {
        frame_finish(sb, j->op, j->id, 0);
        j->out_len = sb->size;
        j->out = (uint8_t *)msgpack_sbuffer_release(sb);
    }
}

static void complete(net_server *s, job *j);
static void ingest_done(void *user, int rc, uint64_t id, eng_outcome outcome);

/* Runs a job and fills its response; 0 when the job is answered later (an
 * INGEST upload waiting for its group commit: ingest_done completes it). */
static int run_job(net_server *s, job *j) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc = sbuf_init(&sb) ? perr_set(PERR_NOMEM, "response") : PERR_OK;
    if (!rc) {
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        net_op_ctx ctx = {s->db, pack_server_stats, s, NULL, NULL};
        if (j->op == NET_OP_INGEST && j->c) {
            ctx.ingest_done = ingest_done;
            ctx.ingest_user = j;
            pthread_mutex_lock(&s->mu);
            s->deferred++;
            pthread_mutex_unlock(&s->mu);
        }
        perr_clear();
        rc = net_op_run(&ctx, j->op, j->payload, j->len, &pk);
        if (rc == NET_OP_DEFERRED) { msgpack_sbuffer_destroy(&sb); return 0; }
        if (ctx.ingest_done) { /* answered here: no completion will come */
            pthread_mutex_lock(&s->mu);
            s->deferred--;
            pthread_mutex_unlock(&s->mu);
        }
    }
    job_respond(s, j, rc, &sb);
    return 1;
}

/* An INGEST upload's group commit finished (the engine's committer thread,
 * or the worker when the upload needed no commit): answer it like any job. */
static void ingest_done(void *user, int rc, uint64_t id, eng_outcome outcome) {
    job *j = user;
    net_server *s = j->c->s;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int r = sbuf_init(&sb) ? perr_set(PERR_NOMEM, "response") : PERR_OK;
    if (!rc && !r) {
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        net_pack_ingest(&pk, id, outcome);
    }
    job_respond(s, j, rc ? rc : r, &sb);
    complete(s, j);
    uv_async_send(&s->async);
    pthread_mutex_lock(&s->mu);
    if (--s->deferred == 0) pthread_cond_broadcast(&s->deferred_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Pops the next job round-robin (caller holds s->mu; s->ring_h set). */
static job *ring_pop(net_server *s) {
    conn *c = s->ring_h;
    s->ring_h = c->rnext;
    if (!s->ring_h) s->ring_t = NULL;
    job *j = c->qh;
    c->qh = j->next;
    if (!c->qh) c->qt = NULL;
    c->queued--;
    s->queued_total--;
    if (c->qh) { /* back of the ring: one job per connection per turn */
        c->rnext = NULL;
        if (s->ring_t) s->ring_t->rnext = c; else s->ring_h = c;
        s->ring_t = c;
    } else c->in_ring = 0;
    j->next = NULL;
    return j;
}

/* Takes up to max queued SEARCH jobs, round-robin over the connections
 * (a connection whose next job is something else is passed over). Caller
 * holds s->mu; the jobs count as running. */
static int take_searches(net_server *s, job **out, int max) {
    int n = 0, len = 0, misses = 0;
    for (conn *c = s->ring_h; c; c = c->rnext) len++;
    while (n < max && s->ring_h && misses < len) {
        conn *c = s->ring_h;
        if (c->qh->op == NET_OP_SEARCH) {
            int last = c->queued == 1;
            out[n++] = ring_pop(s);
            if (last) len--;
            misses = 0;
        } else { /* rotate */
            misses++;
            if (s->ring_h != s->ring_t) {
                s->ring_h = c->rnext;
                c->rnext = NULL;
                s->ring_t->rnext = c;
                s->ring_t = c;
            }
        }
    }
    /* front ends' SEARCH operations (FIFO), the others keep their place */
    for (job **pp = &s->task_h, *prev = NULL; n < max && *pp;) {
        job *j = *pp;
        if (j->post && j->op == NET_OP_SEARCH) {
            *pp = j->next;
            if (s->task_t == j) s->task_t = prev;
            j->next = NULL;
            s->queued_total--;
            out[n++] = j;
        } else { prev = j; pp = &j->next; }
    }
    s->running += n;
    return n;
}

/* Puts a job taken by take_searches back at the head of its connection's
 * queue (it is not batchable: another worker may run it meanwhile). */
static void requeue(net_server *s, job *j) {
    conn *c = j->c;
    pthread_mutex_lock(&s->mu);
    if (!c) { /* a front end's operation: back to the head of the task FIFO */
        j->next = s->task_h;
        s->task_h = j;
        if (!s->task_t) s->task_t = j;
        s->queued_total++;
        s->running--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    j->next = c->qh;
    c->qh = j;
    if (!c->qt) c->qt = j;
    c->queued++;
    s->queued_total++;
    s->running--;
    if (!c->in_ring) {
        c->in_ring = 1;
        c->rnext = s->ring_h;
        s->ring_h = c;
        if (!s->ring_t) s->ring_t = c;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void complete(net_server *s, job *j) {
    pthread_mutex_lock(&s->dmu);
    if (s->done_t) s->done_t->next = j; else s->done_h = j;
    s->done_t = j;
    pthread_mutex_unlock(&s->dmu);
    pthread_mutex_lock(&s->mu);
    s->running--;
    pthread_mutex_unlock(&s->mu);
}

/* Answers n vector searches of one shape with one engine call; when the
 * batch fails each runs alone (so every answer, error or not, is the one
 * it would get alone). */
static void run_group(net_server *s, job **jobs, net_vsearch **vs, int n) {
    eng_results **res = NULL;
    int rc = n > 1 && (res = calloc((size_t)n, sizeof *res)) ? PERR_OK : PERR_NOMEM;
    if (!rc) {
        perr_clear();
        rc = net_vsearch_batch(s->db, vs, n, res);
    }
    if (rc) {
        for (int i = 0; i < n; i++) run_job(s, jobs[i]);
    } else {
        pthread_mutex_lock(&s->metrics_mu);
        s->batches++;
        s->batched += (uint64_t)n;
        pthread_mutex_unlock(&s->metrics_mu);
        for (int i = 0; i < n; i++) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            int r = sbuf_init(&sb) ? perr_set(PERR_NOMEM, "response") : PERR_OK;
            if (!r) {
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                net_pack_search(&pk, res[i]);
            }
            job_respond(s, jobs[i], r, &sb);
            eng_results_free(res[i]);
        }
    }
    free(res);
}

/* j is a SEARCH by vector (decoded as lead): takes every SEARCH queued
 * now (up to batch_max), groups the vector ones by shape and answers each
 * group with one batched search; other searches go back to the queue. */
static void run_batch(net_server *s, job *lead, net_vsearch *lv) {
    int max = s->o.batch_max;
    job **jobs = malloc(sizeof(job *) * (size_t)max);
    net_vsearch **vs = malloc(sizeof(net_vsearch *) * (size_t)max);
    int *grp = malloc(sizeof(int) * (size_t)max);
    if (!jobs || !vs || !grp) {
        free(jobs); free(vs); free(grp);
        net_vsearch_free(lv);
        run_job(s, lead);
        complete(s, lead);
        return;
    }
    jobs[0] = lead;
    vs[0] = lv;
    int n = 1;
    pthread_mutex_lock(&s->mu);
    n += take_searches(s, jobs + 1, max - 1);
    pthread_mutex_unlock(&s->mu);
    if (n < max && s->o.batch_wait_us > 0) {
        struct timespec ts = {0, (long)s->o.batch_wait_us * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&s->mu);
        n += take_searches(s, jobs + n, max - n);
        pthread_mutex_unlock(&s->mu);
    }
    /* decode; group by shape (groups are numbered by their first member) */
    int m = 1;
    grp[0] = 0;
    for (int i = 1; i < n; i++) {
        if (!net_vsearch_decode(s->db, jobs[i]->payload, jobs[i]->len, &vs[m])) {
            requeue(s, jobs[i]); /* text/image/id search or a bad request */
            continue;
        }
        jobs[m] = jobs[i];
        grp[m] = m;
        for (int g = 0; g < m; g++)
            if (grp[g] == g && net_vsearch_same_shape(vs[g], vs[m])) { grp[m] = g; break; }
        m++;
    }
    job **gj = malloc(sizeof(job *) * (size_t)m);
    net_vsearch **gv = malloc(sizeof(net_vsearch *) * (size_t)m);
    for (int g = 0; g < m; g++) {
        if (grp[g] != g) continue;
        int k = 0;
        for (int i = g; i < m; i++)
            if (grp[i] == g) {
                if (gj && gv) { gj[k] = jobs[i]; gv[k] = vs[i]; k++; }
                else run_job(s, jobs[i]);
            }
        if (k) run_group(s, gj, gv, k);
    }
    for (int i = 0; i < m; i++) { net_vsearch_free(vs[i]); complete(s, jobs[i]); }
    free(gj); free(gv);
    free(jobs); free(vs); free(grp);
}

static void *worker_main(void *arg) {
    net_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->pool_stop && !s->ring_h && !s->internal && !s->task_h) pthread_cond_wait(&s->cv, &s->mu);
        job *j = NULL;
        if (s->internal) {
            j = s->internal;
            s->internal = j->next;
            j->next = NULL;
        } else if (s->task_h && (!s->ring_h || (s->task_turn ^= 1))) {
            /* alternate with the connections so neither door starves the other */
            j = s->task_h;
            s->task_h = j->next;
            if (!s->task_h) s->task_t = NULL;
            j->next = NULL;
            s->queued_total--;
        } else if (s->ring_h) {
            j = ring_pop(s);
        } else { /* pool_stop and nothing left */
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->running++;
        pthread_mutex_unlock(&s->mu);
        net_vsearch *v = NULL;
        if (j->run) {
            perr_clear();
            j->rc = j->run(j->arg);
            complete(s, j);
        } else if ((j->c || j->post) && j->op == NET_OP_SEARCH && s->o.batch_max > 1 &&
            net_vsearch_decode(s->db, j->payload, j->len, &v)) {
            run_batch(s, j, v);
        } else if (run_job(s, j)) {
            complete(s, j);
        }
        uv_async_send(&s->async);
    }
    return NULL;
}

/* Queues a job (loop thread). */
static void pool_push(net_server *s, job *j) {
    pthread_mutex_lock(&s->mu);
    conn *c = j->c;
    if (!c) {
        j->next = s->internal;
        s->internal = j;
    } else {
        j->next = NULL;
        if (c->qt) c->qt->next = j; else c->qh = j;
        c->qt = j;
        c->queued++;
        s->queued_total++;
        if (!c->in_ring) {
            c->in_ring = 1;
            c->rnext = NULL;
            if (s->ring_t) s->ring_t->rnext = c; else s->ring_h = c;
            s->ring_t = c;
        }
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Drops the queued jobs of a closing connection; returns how many. */
static int pool_cancel(net_server *s, conn *c) {
    pthread_mutex_lock(&s->mu);
    job *j = c->qh;
    int n = c->queued;
    c->qh = c->qt = NULL;
    s->queued_total -= c->queued;
    c->queued = 0;
    if (c->in_ring) {
        conn **pp = &s->ring_h;
        conn *prev = NULL;
        while (*pp && *pp != c) { prev = *pp; pp = &(*pp)->rnext; }
        if (*pp) {
            *pp = c->rnext;
            if (s->ring_t == c) s->ring_t = prev;
        }
        c->in_ring = 0;
    }
    pthread_mutex_unlock(&s->mu);
    while (j) {
        job *next = j->next;
        job_free(j);
        j = next;
    }
    return n;
}

/* ---- connections --------------------------------------------------------- */

static void conn_unref(conn *c) {
    if (--c->refs > 0) return;
    free(c->rbuf);
    free(c);
}

static void on_conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    conn_unref(c);
}

static void conn_close(conn *c) {
    if (c->closing) return;
    net_server *s = c->s;
    c->closing = 1;
    int dropped = pool_cancel(s, c);
    c->refs -= dropped;  /* those jobs held a reference each; at least the handle's stays */
    c->inflight -= dropped;
    if (c->prev) c->prev->next = c->next; else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    logf_(s, "connection %" PRIu64 " closed", c->cid);
    uv_close(&c->h.handle, on_conn_closed);
    check_drained(s);
}

static void on_write(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    conn *c = w->c;
    pthread_mutex_lock(&c->s->metrics_mu);
    c->s->unsent -= w->len;
    pthread_mutex_unlock(&c->s->metrics_mu);
    free(w->buf);
    if (w->counts) c->inflight--;
    free(w);
    if (c->closing) { conn_unref(c); return; }
    if (status < 0 && status != UV_ECANCELED) {
        logf_(c->s, "connection %" PRIu64 ": write failed: %s", c->cid, uv_strerror(status));
        conn_close(c);
        conn_unref(c);
        return;
    }
    if (c->eof && c->inflight == 0) conn_close(c);
    else { conn_process(c); conn_update_reading(c); }
    net_server *s = c->s;
    conn_unref(c);
    check_drained(s);
}

/* Sends a frame (takes buf). counts: it answers an accepted request. */
static void conn_send(conn *c, uint8_t *buf, size_t len, int counts) {
    if (!buf) { /* out of memory building it: the client can't be answered */
        if (counts) c->inflight--;
        conn_close(c);
        return;
    }
    if (c->closing) { free(buf); if (counts) c->inflight--; return; }
    write_req *w = calloc(1, sizeof *w);
    if (!w) { free(buf); if (counts) c->inflight--; conn_close(c); return; }
    w->c = c;
    w->buf = buf;
    w->len = len;
    w->counts = counts;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    c->refs++;
    pthread_mutex_lock(&c->s->metrics_mu);
    c->s->bytes_out += len;
    c->s->unsent += len;
    pthread_mutex_unlock(&c->s->metrics_mu);
    int r = uv_write(&w->req, &c->h.stream, &b, 1, on_write);
    if (r < 0) {
        pthread_mutex_lock(&c->s->metrics_mu);
        c->s->unsent -= len;
        pthread_mutex_unlock(&c->s->metrics_mu);
        c->refs--;
        free(buf);
        free(w);
        if (counts) c->inflight--;
        conn_close(c);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn *c = req->data;
    free(req);
    conn_close(c);
    conn_unref(c);
}

/* A fatal error for this connection: one error frame (id 0), then close
 * once it is written. */
static void conn_fail(conn *c, int op, uint64_t id, int code, const char *msg) {
    if (c->closing || c->failing) return;
    c->failing = 1;
    if (c->reading) { uv_read_stop(&c->h.stream); c->reading = 0; }
    size_t len = 0;
    uint8_t *f = error_frame(op, id, code, msg, &len);
    conn_send(c, f, len, 0);
    if (c->closing) return;
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (!sd || (sd->data = c, c->refs++, uv_shutdown(sd, &c->h.stream, on_shutdown) < 0)) {
        if (sd) c->refs--;
        free(sd);
        conn_close(c);
    }
}

static void reply_error(conn *c, const net_header *h, int code, const char *msg) {
    size_t len = 0;
    uint8_t *f = error_frame(h->opcode, h->id, code, msg, &len);
    metrics_record(c->s, h->opcode, code, uv_hrtime());
    conn_send(c, f, len, 1);
}

static int token_equal(const char *a, const char *b, size_t blen) {
    size_t alen = strlen(a);
    unsigned char d = alen != blen;
    for (size_t i = 0; i < blen; i++) d |= (unsigned char)(a[i % (alen ? alen : 1)] ^ b[i]);
    return d == 0 && alen == blen;
}

/* HELLO, in the loop: small and bounded, no engine call. */
static void handle_hello(conn *c, const net_header *h, const uint8_t *p, size_t len) {
    net_server *s = c->s;
    if (len > HELLO_MAX_PAYLOAD) { reply_error(c, h, PERR_TOO_LARGE, "HELLO payload over 64 KiB"); return; }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *req = NULL;
    net_arena a = {0};
    uint64_t *vs = NULL;
    int n_vs = 0, version = -1;
    int v1 = -1;
    const char *tok = NULL, *client = NULL;
    char msg[512];
    /* The same payload and field rules as every request (net_mp_request,
     * the typed getters). */
    int rc = net_mp_request(p, len, &u, &req);
    if (!rc) rc = net_mp_u64s(req, "versions", &a, 64, &vs, &n_vs);
    if (!rc) rc = net_mp_int(req, "version", &v1);
    if (!rc) rc = net_mp_str(req, "token", &a, &tok);
    if (!rc) rc = net_mp_str(req, "client", &a, &client);
    if (rc) { snprintf(msg, sizeof msg, "HELLO: %s", perr_msg()); goto fail; }
    /* versions: [int...] or version: int; neither: 1. */
    if (net_mp_get(req, "versions")) {
        for (int i = 0; i < n_vs; i++)
            if (vs[i] == NET_VERSION) version = NET_VERSION;
    } else if (net_mp_get(req, "version")) {
        if (v1 >= NET_VERSION) version = NET_VERSION;
    } else version = NET_VERSION;
    if (version < 0) {
        rc = PERR_VERSION;
        snprintf(msg, sizeof msg, "HELLO: no protocol version in common (this server speaks version %d)", NET_VERSION);
        goto fail;
    }
    if (s->token && tok) {
        c->authed = token_equal(s->token, tok, strlen(tok));
        if (!c->authed) {
            rc = PERR_AUTH;
            snprintf(msg, sizeof msg, "HELLO: invalid token");
            goto fail;
        }
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (sbuf_init(&sb)) { msgpack_sbuffer_destroy(&sb); rc = PERR_NOMEM; snprintf(msg, sizeof msg, "HELLO"); goto fail; }
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 12);
    net_mp_pack_key(&pk, "version"); msgpack_pack_int(&pk, version);
    net_mp_pack_key(&pk, "server"); net_mp_pack_cstr(&pk, "percept/0.1.0");
    net_mp_pack_key(&pk, "authenticated"); msgpack_pack_int(&pk, c->authed);
    net_mp_pack_key(&pk, "auth_required"); msgpack_pack_int(&pk, s->token != NULL);
    net_mp_pack_key(&pk, "model"); net_mp_pack_cstr(&pk, s->info.model_name);
    net_mp_pack_key(&pk, "dim"); msgpack_pack_int(&pk, s->info.dim);
    net_mp_pack_key(&pk, "precision"); net_mp_pack_cstr(&pk, s->info.precision);
    net_mp_pack_key(&pk, "encoder_isa"); net_mp_pack_cstr(&pk, s->info.encoder_isa);
    net_mp_pack_key(&pk, "max_frame"); msgpack_pack_uint32(&pk, s->o.max_frame);
    net_mp_pack_key(&pk, "max_inflight"); msgpack_pack_int(&pk, s->o.max_inflight);
    net_mp_pack_key(&pk, "idle_timeout_ms"); msgpack_pack_int(&pk, s->o.idle_timeout_ms);
    net_mp_pack_key(&pk, "max_k"); msgpack_pack_int(&pk, NET_MAX_K);
    frame_finish(&sb, NET_OP_HELLO, h->id, 0);
    size_t flen = sb.size;
    metrics_record(s, NET_OP_HELLO, 0, uv_hrtime());
    conn_send(c, (uint8_t *)msgpack_sbuffer_release(&sb), flen, 1);
    net_arena_free(&a);
    msgpack_unpacked_destroy(&u);
    return;
fail:
    net_arena_free(&a);
    msgpack_unpacked_destroy(&u);
    reply_error(c, h, rc, msg);
}

/* PING's payload follows the rules of every request (a map, or empty),
 * bounded like HELLO's since the loop decodes it. */
static int ping_check(const uint8_t *p, size_t len, char *msg, size_t cap) {
    if (len > HELLO_MAX_PAYLOAD) {
        snprintf(msg, cap, "PING payload over 64 KiB");
        return PERR_TOO_LARGE;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *req = NULL;
    int rc = net_mp_request(p, len, &u, &req);
    if (rc) snprintf(msg, cap, "PING: %s", perr_msg());
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* One complete frame (loop thread). owned: a malloc'd buffer holding the
 * payload that the job may take, else NULL (payload is copied). */
static void handle_frame(conn *c, const net_header *h, const uint8_t *payload, uint8_t *owned) {
    net_server *s = c->s;
    c->inflight++;
    char msg[512];
    int rc;
    if (h->version != NET_VERSION) {
        snprintf(msg, sizeof msg, "frame version %u; this server speaks version %d", h->version, NET_VERSION);
        reply_error(c, h, PERR_VERSION, msg);
    } else if (h->flags & ~(uint16_t)0) {
        snprintf(msg, sizeof msg, "request flags 0x%04x: must be 0", h->flags);
        reply_error(c, h, PERR_PROTOCOL, msg);
    } else if (!net_op_name(h->opcode)) {
        snprintf(msg, sizeof msg, "unknown opcode 0x%02x", h->opcode);
        reply_error(c, h, PERR_UNSUPPORTED, msg);
    } else if (h->opcode == NET_OP_PING && (rc = ping_check(payload, h->length, msg, sizeof msg))) {
        reply_error(c, h, rc, msg);
    } else if (h->opcode == NET_OP_PING) {
        msgpack_sbuffer sb;
        if (sbuf_init(&sb) || msgpack_sbuffer_write(&sb, "\x80", 1)) {
            msgpack_sbuffer_destroy(&sb);
            c->inflight--;
            conn_close(c);
        } else {
            frame_finish(&sb, NET_OP_PING, h->id, 0);
            size_t flen = sb.size;
            metrics_record(s, NET_OP_PING, 0, uv_hrtime());
            conn_send(c, (uint8_t *)msgpack_sbuffer_release(&sb), flen, 1);
        }
    } else if (h->opcode == NET_OP_HELLO) {
        handle_hello(c, h, payload, h->length);
    } else if (s->token && !c->authed) {
        snprintf(msg, sizeof msg, "%s: not authenticated (send HELLO with the server's token first)", net_op_name(h->opcode));
        reply_error(c, h, PERR_AUTH, msg);
    } else if (queue_full_for(s, c)) {
        pthread_mutex_lock(&s->metrics_mu);
        s->busy++;
        pthread_mutex_unlock(&s->metrics_mu);
        snprintf(msg, sizeof msg, "%s: server busy (%d requests waiting), try again", net_op_name(h->opcode), s->o.max_queue);
        reply_error(c, h, PERR_BUSY, msg);
    } else {
        job *j = calloc(1, sizeof *j);
        if (j && owned) {
            j->buf = owned;
            owned = NULL;
        } else if (j && (j->buf = malloc(h->length ? h->length : 1))) {
            memcpy(j->buf, payload, h->length);
            payload = j->buf;
        } else {
            free(j);
            reply_error(c, h, PERR_NOMEM, "out of memory queueing the request");
            free(owned);
            return;
        }
        j->c = c;
        j->op = h->opcode;
        j->id = h->id;
        j->payload = payload;
        j->len = h->length;
        j->t_recv = uv_hrtime();
        c->refs++;
        pool_push(s, j);
    }
    free(owned);
}

static void conn_update_reading(conn *c) {
    if (c->closing || c->failing) return;
    net_server *s = c->s;
    int want = !s->draining && !c->eof && c->inflight < s->o.max_inflight &&
               uv_stream_get_write_queue_size(&c->h.stream) <= s->o.max_write_queue;
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = 0;
    }
}

/* Parses and dispatches the complete frames in the read buffer while this
 * connection may take more requests. */
static void conn_process(conn *c) {
    net_server *s = c->s;
    size_t off = 0;
    while (!c->closing && !c->failing && !s->draining && c->inflight < s->o.max_inflight && off < c->rlen) {
        net_header h;
        size_t need = 0;
        long n = net_frame_parse(c->rbuf + off, c->rlen - off, s->o.max_frame, &h, &need);
        if (n < 0) {
            pthread_mutex_lock(&s->metrics_mu);
            s->protocol_errors++;
            pthread_mutex_unlock(&s->metrics_mu);
            char msg[512];
            snprintf(msg, sizeof msg, "%s; closing the connection", perr_msg());
            /* Only an oversized frame has a header of its own to answer
             * with; a bad magic is answered with opcode 0, id 0 (h holds
             * nothing of this frame then: reading it once leaked the header
             * last parsed on this stack, another client's). */
            int has_hdr = n == PERR_TOO_LARGE;
            conn_fail(c, has_hdr ? h.opcode : 0, has_hdr ? h.id : 0, (int)n, msg);
            return;
        }
        if (n == 0) { c->need = need; break; }
        uint8_t *owned = NULL;
        if (off == 0 && (size_t)n == c->rlen && h.length >= STEAL_MIN) {
            owned = c->rbuf; /* hand the whole buffer to the job, no copy */
            c->rbuf = NULL;
            c->rcap = c->rlen = 0;
            handle_frame(c, &h, owned + NET_HEADER_SIZE, owned);
            c->need = NET_HEADER_SIZE;
            return;
        }
        handle_frame(c, &h, c->rbuf + off + NET_HEADER_SIZE, NULL);
        off += (size_t)n;
        c->need = NET_HEADER_SIZE;
    }
    if (off && !c->closing) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn *c = h->data;
    size_t want = c->rlen + READ_CHUNK;
    if (c->need > want) want = c->need; /* need is bounded: header checked against max_frame */
    if (want > c->rcap) {
        uint8_t *n = realloc(c->rbuf, want);
        if (!n) { *buf = uv_buf_init(NULL, 0); return; }
        c->rbuf = n;
        c->rcap = want;
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    conn *c = st->data;
    net_server *s = c->s;
    if (nread == 0) return;
    if (nread == UV_ENOBUFS) { conn_close(c); return; }
    if (nread < 0) {
        if (nread == UV_EOF) {
            /* The client is done sending; answer what it asked, then close. */
            c->eof = 1;
            if (c->reading) { uv_read_stop(st); c->reading = 0; }
            conn_process(c);
            if (c->inflight == 0) conn_close(c);
        } else conn_close(c);
        return;
    }
    c->rlen += (size_t)nread;
    c->last_ns = uv_hrtime();
    pthread_mutex_lock(&s->metrics_mu);
    s->bytes_in += (uint64_t)nread;
    pthread_mutex_unlock(&s->metrics_mu);
    conn_process(c);
    conn_update_reading(c);
}

static void on_connection(uv_stream_t *server, int status) {
    listener *l = server->data;
    net_server *s = l->s;
    if (status < 0 || s->draining) return;
    conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->s = s;
    c->refs = 1;
    c->need = NET_HEADER_SIZE;
    c->authed = s->token == NULL;
    c->cid = ++s->next_cid;
    int r = server->type == UV_TCP ? uv_tcp_init(&s->loop, &c->h.tcp) : uv_pipe_init(&s->loop, &c->h.pipe, 0);
    if (r < 0) { free(c); return; }
    c->h.handle.data = c;
    if (uv_accept(server, &c->h.stream) < 0) { uv_close(&c->h.handle, on_conn_closed); return; }
    if (server->type == UV_TCP) uv_tcp_nodelay(&c->h.tcp, 1);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    c->last_ns = uv_hrtime();
    pthread_mutex_lock(&s->metrics_mu);
    s->conns_total++;
    pthread_mutex_unlock(&s->metrics_mu);
    if (s->n_conns > s->o.max_conns) {
        pthread_mutex_lock(&s->metrics_mu);
        s->conns_refused++;
        pthread_mutex_unlock(&s->metrics_mu);
        char msg[128];
        snprintf(msg, sizeof msg, "too many connections (limit %d)", s->o.max_conns);
        conn_fail(c, 0, 0, PERR_BUSY, msg);
        return;
    }
    logf_(s, "connection %" PRIu64 " accepted", c->cid);
    conn_update_reading(c);
}

/* ---- completions, timers, signals ---------------------------------------- */

static void on_async(uv_async_t *a) {
    net_server *s = a->data;
    pthread_mutex_lock(&s->dmu);
    job *j = s->done_h;
    s->done_h = s->done_t = NULL;
    pthread_mutex_unlock(&s->dmu);
    while (j) { /* drain in full: wakeups coalesce */
        job *next = j->next;
        if (j->done) {
            j->done(j->arg, j->rc);
        } else if (!j->c) {
            if (j->rc) fprintf(stderr, "percept serve: snapshot failed: %s\n", perr_name(j->rc));
            else logf_(s, "snapshot saved");
        } else {
            conn *c = j->c;
            metrics_record(s, j->op, j->rc, j->t_recv);
            if (j->op == NET_OP_SNAPSHOT && !j->rc) {
                pthread_mutex_lock(&s->metrics_mu);
                s->snapshots++;
                pthread_mutex_unlock(&s->metrics_mu);
            }
            if (c->closing) c->inflight--;
            else {
                conn_send(c, j->out, j->out_len, 1);
                j->out = NULL;
                if (!c->closing) { conn_process(c); conn_update_reading(c); }
            }
            conn_unref(c);
        }
        job_free(j);
        j = next;
    }
    if (s->stop_requested && !s->draining) drain(s);
    check_drained(s);
}

static void on_sweep(uv_timer_t *t) {
    net_server *s = t->data;
    if (s->o.idle_timeout_ms <= 0) return;
    uint64_t now = uv_hrtime(), lim = (uint64_t)s->o.idle_timeout_ms * 1000000ull;
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->inflight == 0 && !c->closing && !c->failing && now - c->last_ns > lim) {
            char msg[128];
            snprintf(msg, sizeof msg, "idle for more than %d ms; closing the connection", s->o.idle_timeout_ms);
            conn_fail(c, 0, 0, PERR_TIMEOUT, msg);
        }
    }
}

static void on_handle_closed_noop(uv_handle_t *h) { (void)h; }

static void drain(net_server *s) {
    if (s->draining) return;
    s->draining = 1;
    logf_(s, "draining: %d connections", s->n_conns);
    for (int i = 0; i < s->n_fronts; i++)
        if (s->fronts[i].drain) s->fronts[i].drain(s->fronts[i].user);
    for (int i = 0; i < s->n_lis; i++)
        if (!uv_is_closing(&s->lis[i].h.handle)) uv_close(&s->lis[i].h.handle, on_handle_closed_noop);
    for (conn *c = s->conns; c; c = c->next)
        if (c->reading) { uv_read_stop(&c->h.stream); c->reading = 0; }
    check_drained(s);
}

static void check_drained(net_server *s) {
    if (!s->draining || s->stopped) return;
    for (conn *c = s->conns; c; c = c->next)
        if (c->inflight > 0) return;
    pthread_mutex_lock(&s->mu);
    int busy = s->running || s->internal || s->task_h;
    pthread_mutex_unlock(&s->mu);
    if (busy) return;
    s->stopped = 1;
    for (int i = 0; i < s->n_fronts; i++)
        if (s->fronts[i].stop) s->fronts[i].stop(s->fronts[i].user);
    while (s->conns) conn_close(s->conns);
    uv_close((uv_handle_t *)&s->async, on_handle_closed_noop);
    uv_close((uv_handle_t *)&s->sweep, on_handle_closed_noop);
    /* The signal handles stay installed (unreferenced, so the loop can end)
     * until net_server_free: a SIGTERM during what follows, the caller's
     * index save included, must not find the default action (death, 143). */
    for (int i = 0; i < s->n_sig; i++) uv_unref((uv_handle_t *)&s->sig[i]);
}

static void on_signal(uv_signal_t *h, int signum) {
    net_server *s = h->data;
    if (signum == SIGHUP) {
        job *j = calloc(1, sizeof *j);
        if (!j) return;
        j->op = NET_OP_SNAPSHOT;
        j->t_recv = uv_hrtime();
        pool_push(s, j);
        return;
    }
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (s->draining) { /* a second one changes nothing: the drain finishes */
        if (s->extra_signals++) return;
        fprintf(stderr, "percept serve: %s: already stopping (answering accepted requests, then saving)\n", name);
        return;
    }
    fprintf(stderr, "percept serve: %s: finishing in-flight requests, then saving and exiting\n", name);
    drain(s);
}

/* ---- metrics HTTP listener ---------------------------------------------- */

typedef struct http_conn {
    uv_tcp_t tcp;
    char buf[8192];
    size_t len;
    int done;
} http_conn;

static void http_closed(uv_handle_t *h) { free(h->data); }

static void http_written(uv_write_t *req, int status) {
    http_conn *hc = req->data;
    free(((char **)(req + 1))[0]);
    free(req);
    uv_close((uv_handle_t *)&hc->tcp, http_closed);
}

static void http_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    http_conn *hc = h->data;
    *b = uv_buf_init(hc->buf + hc->len, (unsigned)(sizeof hc->buf - 1 - hc->len));
}

static void http_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    http_conn *hc = st->data;
    if (n < 0 || hc->done) {
        if (!hc->done) { hc->done = 1; uv_close((uv_handle_t *)st, http_closed); }
        return;
    }
    hc->len += (size_t)n;
    hc->buf[hc->len] = 0;
    if (!strstr(hc->buf, "\r\n\r\n") && !strstr(hc->buf, "\n\n")) {
        if (hc->len >= sizeof hc->buf - 1) { hc->done = 1; uv_close((uv_handle_t *)st, http_closed); }
        return;
    }
    hc->done = 1;
    uv_read_stop(st);
    net_server *srv = *(net_server **)((char *)hc + sizeof *hc);
    size_t blen = 0;
    char *body = NULL;
    int ok = !strncmp(hc->buf, "GET ", 4);
    if (ok) body = prometheus_text(srv, &blen);
    char *resp = NULL;
    int rlen = body ? asprintf(&resp, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", blen, body)
                    : asprintf(&resp, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                               ok ? "500 Internal Server Error" : "405 Method Not Allowed");
    free(body);
    uv_write_t *w = malloc(sizeof *w + sizeof(char *));
    if (rlen < 0 || !w) { free(w); if (rlen >= 0) free(resp); uv_close((uv_handle_t *)st, http_closed); return; }
    ((char **)(w + 1))[0] = resp;
    w->data = hc;
    uv_buf_t ub = uv_buf_init(resp, (unsigned)rlen);
    if (uv_write(w, st, &ub, 1, http_written) < 0) { free(resp); free(w); uv_close((uv_handle_t *)st, http_closed); }
}

static void on_http_connection(uv_stream_t *server, int status) {
    listener *l = server->data;
    net_server *s = l->s;
    if (status < 0) return;
    /* http_conn followed by a back pointer to the server. */
    http_conn *hc = calloc(1, sizeof *hc + sizeof(net_server *));
    if (!hc) return;
    *(net_server **)((char *)hc + sizeof *hc) = s;
    uv_tcp_init(&s->loop, &hc->tcp);
    hc->tcp.data = hc;
    if (uv_accept(server, (uv_stream_t *)&hc->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&hc->tcp, http_alloc, http_read) < 0)
        uv_close((uv_handle_t *)&hc->tcp, http_closed);
}

/* ---- setup --------------------------------------------------------------- */

int net_addr_is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a);
    }
    return 0;
}

int net_parse_addr(const char *spec, struct sockaddr_storage *ss) {
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) return perr_set(PERR_INVALID, "address \"%s\": expected HOST:PORT or unix:/path", spec);
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host) return perr_set(PERR_INVALID, "address \"%s\": host too long", spec);
    memcpy(host, spec, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) return perr_set(PERR_INVALID, "address \"%s\": bad port", spec);
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) == 0) return PERR_OK;
    } else {
        if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
        if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return PERR_OK;
    }
    return perr_set(PERR_INVALID, "address \"%s\": \"%s\" is not a numeric IPv4/IPv6 address", spec, host);
}

static int add_listener(net_server *s, const char *spec, int is_metrics) {
    if (s->n_lis >= MAX_LISTENERS + 1) return perr_set(PERR_TOO_LARGE, "more than %d listeners", MAX_LISTENERS);
    listener *l = &s->lis[s->n_lis];
    memset(l, 0, sizeof *l);
    l->s = s;
    l->is_metrics = is_metrics;
    int r;
    if (!strncmp(spec, "unix:", 5)) {
        if (is_metrics) return perr_set(PERR_INVALID, "--metrics: a TCP HOST:PORT");
        const char *path = spec + 5;
        if (!*path || strlen(path) >= sizeof l->unix_path) return perr_set(PERR_INVALID, "listen \"%s\": bad socket path", spec);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path); /* a stale socket of a previous run */
        if ((r = uv_pipe_init(&s->loop, &l->h.pipe, 0)) < 0) return perr_set(PERR_NET, "%s: %s", spec, uv_strerror(r));
        s->n_lis++;
        l->h.handle.data = l;
        if ((r = uv_pipe_bind(&l->h.pipe, path)) < 0) return perr_set(PERR_NET, "bind %s: %s", spec, uv_strerror(r));
        snprintf(l->unix_path, sizeof l->unix_path, "%s", path);
    } else {
        struct sockaddr_storage ss;
        int rc = net_parse_addr(spec, &ss);
        if (rc) return rc;
        if (!is_metrics && !net_addr_is_loopback(&ss) && !s->token && !s->o.insecure)
            return perr_set(PERR_AUTH, "refusing to listen on non-loopback %s without a token: "
                                       "give --token-file FILE (or --insecure to accept anyone)", spec);
        if ((r = uv_tcp_init(&s->loop, &l->h.tcp)) < 0) return perr_set(PERR_NET, "%s: %s", spec, uv_strerror(r));
        s->n_lis++;
        l->h.handle.data = l;
        if ((r = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0)) < 0) return perr_set(PERR_NET, "bind %s: %s", spec, uv_strerror(r));
    }
    r = uv_listen(&l->h.stream, 511, is_metrics ? on_http_connection : on_connection);
    if (r < 0) return perr_set(PERR_NET, "listen on %s: %s", spec, uv_strerror(r));
    if (l->h.handle.type == UV_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) == 0)
            l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return PERR_OK;
}

int net_server_new(eng_db *db, const net_server_opts *o, net_server **out) {
    *out = NULL;
    net_server *s = calloc(1, sizeof *s);
    if (!s) return perr_set(PERR_NOMEM, "server");
    if (o) s->o = *o; else net_server_opts_default(&s->o);
    net_server_opts d;
    net_server_opts_default(&d);
    if (!s->o.max_frame) s->o.max_frame = d.max_frame;
    if (s->o.max_inflight <= 0) s->o.max_inflight = d.max_inflight;
    if (s->o.max_conns <= 0) s->o.max_conns = d.max_conns;
    if (s->o.workers <= 0) s->o.workers = d.workers;
    if (s->o.max_queue <= 0) s->o.max_queue = d.max_queue;
    if (!s->o.max_write_queue) s->o.max_write_queue = d.max_write_queue;
    if (s->o.batch_max <= 0) s->o.batch_max = d.batch_max;
    if (s->o.batch_wait_us < 0) s->o.batch_wait_us = 0;
    if (s->o.batch_wait_us > 100000) s->o.batch_wait_us = 100000;
    /* Threads (docs/design.md, "Server threads"): the workers are the
     * parallelism. FAISS's OpenMP teams and OpenBLAS's threads on top of
     * them oversubscribe the cores, and idle OpenMP threads spin-wait
     * (observed: 50 ms stalls at batch 1 on 2 cores); with one thread per
     * index call no team is ever created, and a batched search's sgemm runs
     * on the worker's own thread. */
    if (s->o.index_threads > 0) {
        idx_set_threads(s->o.index_threads);
        openblas_set_num_threads(s->o.index_threads);
    }
    s->o.listen = NULL; /* not kept */
    s->db = db;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->deferred_cv, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->dmu, NULL);
    pthread_mutex_init(&s->metrics_mu, NULL);
    int rc = eng_get_info(db, &s->info);
    if (rc) { free(s); return rc; }
    if (eng_dir(db)) {
        s->dirs[0] = strdup(eng_dir(db));
        s->dirs[1] = realpath(eng_dir(db), NULL);
    }
    if (o && o->token) {
        if (!o->token[0]) { free(s); return perr_set(PERR_INVALID, "empty token"); }
        s->token = strdup(o->token);
    }
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->async, on_async);
    s->async.data = s;
    uv_timer_init(&s->loop, &s->sweep);
    s->sweep.data = s;
    *out = s; /* from here net_server_free cleans up */
    static const char *const def[] = {"127.0.0.1:7700"};
    const char *const *ls = o && o->n_listen ? o->listen : def;
    int nl = o && o->n_listen ? o->n_listen : 1;
    for (int i = 0; i < nl && !rc; i++) rc = add_listener(s, ls[i], 0);
    if (!rc && o && o->metrics) rc = add_listener(s, o->metrics, 1);
    if (!rc && s->o.handle_signals) {
        int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
        for (int i = 0; i < 3; i++) {
            uv_signal_init(&s->loop, &s->sig[i]);
            s->sig[i].data = s;
            s->n_sig++;
            uv_signal_start(&s->sig[i], on_signal, sigs[i]);
        }
        signal(SIGPIPE, SIG_IGN);
    }
    if (!rc) {
        s->threads = calloc((size_t)s->o.workers, sizeof *s->threads);
        if (!s->threads) rc = perr_set(PERR_NOMEM, "workers");
        for (int i = 0; !rc && i < s->o.workers; i++) {
            int e = pthread_create(&s->threads[i], NULL, worker_main, s);
            if (e) rc = perr_errno(e, "starting worker %d", i);
            else s->n_threads++;
        }
    }
    if (rc) {
        net_server_free(s);
        *out = NULL;
    }
    return rc;
}

int net_server_port(net_server *s, int i) {
    int k = 0;
    for (int j = 0; j < s->n_lis; j++) {
        if (s->lis[j].is_metrics) { if (i == -1) return s->lis[j].port; continue; }
        if (k++ == i) return s->lis[j].port;
    }
    return 0;
}

int net_server_run(net_server *s) {
    if (s->o.idle_timeout_ms > 0) {
        uint64_t every = (uint64_t)s->o.idle_timeout_ms / 4;
        if (every < 10) every = 10;
        if (every > 1000) every = 1000;
        uv_timer_start(&s->sweep, on_sweep, every, every);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return PERR_OK;
}

void net_server_stop(net_server *s) {
    s->stop_requested = 1;
    uv_async_send(&s->async);
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void net_server_free(net_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->pool_stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
    free(s->threads);
    /* Uploads still in the engine's committer hold jobs of this server. */
    pthread_mutex_lock(&s->mu);
    while (s->deferred > 0) pthread_cond_wait(&s->deferred_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    /* Closing a uv signal handle restores the default action: SIGTERM and
     * SIGINT are ignored from then on (the process is stopping; the caller
     * still saves the indexes, docs/protocol.md §4). */
    for (int i = 0; i < s->n_sig; i++) {
        int signum = s->sig[i].signum;
        uv_close((uv_handle_t *)&s->sig[i], on_handle_closed_noop);
        if (s->draining && signum != SIGHUP) signal(signum, SIG_IGN);
    }
    /* Handles still open (a run that never started or a failed setup). */
    while (s->conns) conn_close(s->conns);
    uv_walk(&s->loop, close_any, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* Completions never delivered. */
    for (job *j = s->done_h, *n; j; j = n) {
        n = j->next;
        if (j->done) j->done(j->arg, PERR_CANCELLED);
        if (j->c) conn_unref(j->c);
        job_free(j);
    }
    s->done_h = s->done_t = NULL;
    for (job *j = s->internal, *n; j; j = n) { n = j->next; job_free(j); }
    /* Tasks never run or never delivered: their owners are told (rc CANCELLED). */
    for (job *j = s->task_h, *n; j; j = n) { n = j->next; j->done(j->arg, PERR_CANCELLED); job_free(j); }
    uv_loop_close(&s->loop);
    for (int i = 0; i < s->n_lis; i++)
        if (s->lis[i].unix_path[0]) unlink(s->lis[i].unix_path);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->deferred_cv);
    pthread_mutex_destroy(&s->dmu);
    pthread_mutex_destroy(&s->metrics_mu);
    free(s->dirs[0]);
    free(s->dirs[1]);
    free(s->token);
    free(s);
}

/* ---- front ends (http/) --------------------------------------------------- */

struct uv_loop_s *net_server_loop(net_server *s) { return &s->loop; }

const net_server_opts *net_server_get_opts(net_server *s) { return &s->o; }

int net_server_add_frontend(net_server *s, const net_frontend *f) {
    if (s->n_fronts >= (int)(sizeof s->fronts / sizeof s->fronts[0]))
        return perr_set(PERR_TOO_LARGE, "more than %d front ends", (int)(sizeof s->fronts / sizeof s->fronts[0]));
    s->fronts[s->n_fronts++] = *f;
    return PERR_OK;
}

/* Queues a front end's job at the tail of the task FIFO (loop thread). */
static int task_push(net_server *s, job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->task_t) s->task_t->next = j; else s->task_h = j;
    s->task_t = j;
    s->queued_total++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return PERR_OK;
}

static int task_admit(net_server *s) {
    if (s->draining) return perr_set(PERR_BUSY, "server shutting down");
    if (queue_depth(s) >= s->o.max_queue) {
        pthread_mutex_lock(&s->metrics_mu);
        s->busy++;
        pthread_mutex_unlock(&s->metrics_mu);
        return perr_set(PERR_BUSY, "server busy (%d requests waiting), try again", s->o.max_queue);
    }
    return PERR_OK;
}

int net_server_submit_op(net_server *s, int op, uint8_t *payload, size_t len, net_op_post_fn post,
                         net_task_done_fn done, void *arg) {
    int rc = task_admit(s);
    job *j = rc ? NULL : calloc(1, sizeof *j);
    if (!rc && !j) rc = perr_set(PERR_NOMEM, "queueing a request");
    if (rc) { free(payload); return rc; }
    j->op = (uint8_t)op;
    j->buf = payload;
    j->payload = payload;
    j->len = len;
    j->post = post;
    j->done = done;
    j->arg = arg;
    j->t_recv = uv_hrtime();
    return task_push(s, j);
}

int net_server_submit(net_server *s, net_task_fn run, net_task_done_fn done, void *arg) {
    int rc = task_admit(s);
    if (rc) return rc;
    job *j = calloc(1, sizeof *j);
    if (!j) return perr_set(PERR_NOMEM, "queueing a task");
    j->run = run;
    j->done = done;
    j->arg = arg;
    j->t_recv = uv_hrtime();
    return task_push(s, j);
}

int net_server_token_ok(net_server *s, const char *tok, size_t len) {
    if (!s->token) return 1;
    return tok && token_equal(s->token, tok, len);
}

int net_server_has_token(net_server *s) { return s->token != NULL; }

int net_server_draining(net_server *s) { return s->draining; }

void net_server_record(net_server *s, int op, int rc, uint64_t t_start_ns) {
    metrics_record(s, op, rc, t_start_ns);
}

char *net_server_metrics_text(net_server *s, size_t *len) { return prometheus_text(s, len); }

void net_server_stats_packer(net_server *s, net_op_ctx *ctx) {
    ctx->db = s->db;
    ctx->pack_server_stats = pack_server_stats;
    ctx->user = s;
}
