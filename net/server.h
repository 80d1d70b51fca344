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

#endif
