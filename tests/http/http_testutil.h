/* Helpers of the http tests: a server (binary + HTTP door) in a thread on
 * free loopback ports, and a keep-alive HTTP client (libcurl). */
#ifndef PERCEPT_HTTP_TESTUTIL_H
#define PERCEPT_HTTP_TESTUTIL_H

#include "engine/eng.h"
#include "http/http.h"
#include "net/server.h"
#include "../net/net_testutil.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>

typedef struct ht_server {
    nt_server n;        /* the binary door (n.addr, n.port) and the loop thread */
    http_server *http;
    int http_port;
    eng_db *db;
} ht_server;

/* o may be NULL (defaults); listens on 127.0.0.1:0 for both doors. */
int ht_start(ht_server *s, eng_db *db, net_server_opts *o);
void ht_stop(ht_server *s);

typedef struct ht_resp {
    long status;
    int version;                 /* 1 or 2 */
    char *body;                  /* NUL-terminated */
    size_t len;
    char ctype[128], allow[128], www_auth[64], retry_after[16];
    cJSON *json;                 /* parsed body when it is JSON, else NULL */
} ht_resp;

/* One request on a kept-alive connection to port. ctype NULL: none (and no
 * body unless body != NULL); token NULL: no Authorization. Returns 0 when
 * an answer came. */
int ht_req(int port, const char *method, const char *path, const char *ctype, const void *body, size_t len,
           const char *token, ht_resp *r);
void ht_resp_free(ht_resp *r);
/* Set: ht_req speaks HTTP/2 with prior knowledge (h2c). */
extern int ht_h2;
/* The "error" name of a JSON error body ("" when none). */
const char *ht_error(const ht_resp *r);
void ht_fini(void);
/* Frees the calling thread's connection (threads other than main). */
void ht_thread_fini(void);

#endif
