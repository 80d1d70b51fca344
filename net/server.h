/* net_server: the percept server (docs/protocol.md) on libuv.
 *
 * One event loop thread does all socket I/O and framing and never blocks;
 * requests run on the server's own worker threads (decode, encode, index
 * work through engine/eng.h) and their responses return to the loop through
 * uv_async_send and a completion queue drained in full.
 *
 * Thread safety: net_server_new / net_server_run / net_server_free on one
 * thread; net_server_stop and net_server_port from any thread.
 */
#ifndef PERCEPT_NET_SERVER_H
#define PERCEPT_NET_SERVER_H

#include "engine/eng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct net_server net_server;

typedef struct net_server_opts {
    const char *const *listen;  /* "HOST:PORT", "[::1]:PORT" or "unix:/path"; none: 127.0.0.1:7700 */
    int n_listen;
    const char *metrics;        /* HOST:PORT of the Prometheus listener, or NULL */
    const char *token;          /* shared secret; NULL: no authentication */
    int insecure;               /* allow a non-loopback TCP address without a token */
    uint32_t max_frame;         /* payload bytes (default 64 MiB) */
    int max_inflight;           /* per connection (default 64): reading pauses there */
    int max_conns;              /* default 1024 */
    int idle_timeout_ms;        /* default 300000; 0: none */
    int workers;                /* worker threads (default 2) */
    int max_queue;              /* requests waiting for a worker, all connections (default 1024) */
    size_t max_write_queue;     /* bytes unsent to one client before reading from it pauses (default 64 MiB) */
    int batch_max;              /* vector searches coalesced into one engine call (default 64; 1: off) */
    int batch_wait_us;          /* a batch leader waits this long for more (default 0) */
    /* OpenMP threads per index call and OpenBLAS threads, process-wide,
     * set by net_server_new (default 1: the workers are the parallelism;
     * 0: leave both as they are). */
    int index_threads;
    int handle_signals;         /* SIGTERM/SIGINT drain and stop; SIGHUP snapshots */
    int verbose;                /* log connections to stderr */
} net_server_opts;

void net_server_opts_default(net_server_opts *o);

/* Binds every listener (port 0: any free port) and starts the workers. The
 * server does not own db. */
int net_server_new(eng_db *db, const net_server_opts *o, net_server **out);
/* The port bound by TCP listener i (of o->listen order), or by the metrics
 * listener when i == -1; 0 when none. */
int net_server_port(net_server *s, int i);
/* Runs until net_server_stop or a signal: then stops accepting, finishes
 * in-flight requests, sends their responses, closes every connection and
 * returns. The caller then closes the database (which saves indexes). */
int net_server_run(net_server *s);
/* Asks the loop to drain and stop (thread- and signal-safe). */
void net_server_stop(net_server *s);
void net_server_free(net_server *s);

/* ---- other front doors on the same loop and workers (http/) --------------
 * A front end owns its own listeners on net_server_loop() and hands work to
 * the server's worker pool with net_server_submit; every call here is made
 * on the loop thread unless said otherwise. */
struct uv_loop_s *net_server_loop(net_server *s);
const net_server_opts *net_server_get_opts(net_server *s);

typedef int (*net_task_fn)(void *arg);                /* on a worker thread */
typedef void (*net_task_done_fn)(void *arg, int rc);  /* then on the loop thread */
/* Queues run(arg) for a worker (FIFO, alternating with the binary
 * connections' requests); done(arg, rc) follows on the loop thread with
 * run's result, or with PERR_CANCELLED when the server is freed first.
 * PERR_BUSY (nothing queued, done never called) when max_queue requests
 * already wait or the server is draining. */
int net_server_submit(net_server *s, net_task_fn run, net_task_done_fn done, void *arg);

/* An operation of the binary protocol (NET_OP_*, its MessagePack request
 * payload, malloc'd and taken in every case) queued like a connection's
 * request: a SEARCH by vector joins the coalesced batches with the binary
 * connections' searches. post(arg, rc, resp, len) runs on the worker with the
 * response payload (rc != 0: resp NULL, the message in perr_msg()); then
 * done(arg, rc) on the loop thread (PERR_CANCELLED when freed unrun).
 * PERR_BUSY as net_server_submit. An INGEST waits for its commit. */
typedef void (*net_op_post_fn)(void *arg, int rc, const uint8_t *resp, size_t len);
int net_server_submit_op(net_server *s, int op, uint8_t *payload, size_t len, net_op_post_fn post,
                         net_task_done_fn done, void *arg);

typedef struct net_frontend {
    void (*drain)(void *user);  /* stop accepting; in-flight work still completes */
    void (*stop)(void *user);   /* every task done: close what is left */
    void *user;
} net_frontend;
int net_server_add_frontend(net_server *s, const net_frontend *f);

/* "HOST:PORT", "[V6]:PORT", "localhost:PORT" (numeric hosts) -> sockaddr;
 * PERR_INVALID naming spec otherwise. */
struct sockaddr_storage;
int net_parse_addr(const char *spec, struct sockaddr_storage *ss);
int net_addr_is_loopback(const struct sockaddr_storage *ss);
/* The binary protocol's token (constant-time compare); 1 when none is set. */
int net_server_token_ok(net_server *s, const char *tok, size_t len);
int net_server_has_token(net_server *s);
/* Copies msg to out (cap bytes) with the database directory (as given and
 * resolved) shown as "<db>": what any front end does before a message
 * reaches a client. */
void net_server_scrub(const net_server *s, const char *msg, char *out, size_t cap);
int net_server_draining(net_server *s);
/* Counts a request of opcode op in the metrics (thread-safe). */
void net_server_record(net_server *s, int op, int rc, uint64_t t_start_ns);
/* The Prometheus text of /metrics (malloc'd; thread-safe). */
char *net_server_metrics_text(net_server *s, size_t *len);
/* Fills ctx for net_op_run with this server's STATS section. */
struct net_op_ctx;
void net_server_stats_packer(net_server *s, struct net_op_ctx *ctx);

#endif
