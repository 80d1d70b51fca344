/* Helpers of the net tests: a database on tiny-a, an in-process server on a
 * free loopback port, raw frames over a socket. */
#ifndef PERCEPT_NET_TESTUTIL_H
#define PERCEPT_NET_TESTUTIL_H

#include "engine/eng.h"
#include "net/proto.h"
#include "net/server.h"

#include <msgpack.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

extern char *nt_model, *nt_vocab;
void nt_init(void);   /* model/vocab paths from the fixtures */
void nt_fini(void);
/* A new database in a fresh temp dir (*dir freed by caller after t_rmtree). */
int nt_open_db(const char *dir, int n_encoders, eng_db **db);

/* Reads fixture image name (tiny-a/images/NAME); caller frees. */
void *nt_image(const char *name, size_t *len);
extern const char *const nt_images[6];

typedef struct nt_server {
    net_server *srv;
    pthread_t th;
    int port;
    char addr[64];
} nt_server;
/* Starts a server on 127.0.0.1:0 (o may be NULL for defaults). */
int nt_server_start(nt_server *s, eng_db *db, net_server_opts *o);
/* The same with a step between creating the server and starting its loop
 * thread (the HTTP tests attach their door there); when it fails, the
 * server is freed and its code returned. */
int nt_server_start_with(nt_server *s, eng_db *db, net_server_opts *o,
                         int (*before_run)(net_server *srv, void *arg), void *arg);
void nt_server_stop(nt_server *s);

/* Raw sockets. */
int nt_connect(int port);           /* -1 on failure */
int nt_send_frame(int fd, int version, int op, uint16_t flags, uint64_t id, const void *p, uint32_t len);
int nt_send_raw(int fd, const void *p, size_t len);
/* Reads one frame (timeout ms); 0 ok, -1 EOF/error/timeout. *p malloc'd. */
int nt_recv_frame(int fd, net_header *h, uint8_t **p, int timeout_ms);
/* 1 when the peer closed (EOF) within timeout_ms. */
int nt_wait_eof(int fd, int timeout_ms);
/* The perr code of an error payload (0 if none). */
int nt_error_code(const uint8_t *p, size_t len, char *msg, size_t cap);
int nt_free_port(void);

/* Stalled readers: n connections (receive buffer 4 KiB) that each send
 * per_conn copies of one request frame (op, payload; ids c * 1000000 + i)
 * and read nothing. *fds (malloc'd) gets the sockets; -1 on failure. */
int nt_stall_start(int port, int n, int per_conn, int op, const void *payload, uint32_t len, int **fds);
/* Reads every stalled connection's answers; returns how many successful
 * answers carried an id that was sent and not answered before. Closes the
 * sockets and frees fds. */
long nt_stall_drain(int *fds, int n, int per_conn, int timeout_ms);
/* The server's STATS server.<key> (an unsigned integer), -1 on failure. */
long long nt_server_stat(int port, const char *key);
/* sb (initialised here) gets the SEARCH payload {vector: v, k: k}. */
void nt_pack_vsearch(msgpack_sbuffer *sb, const float *v, int dim, int k);
/* This process's VmRSS in KiB. */
long nt_rss_kb(void);

#endif
