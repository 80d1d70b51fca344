/* http_route: the route table of the HTTP door and what a handler sees.
 *
 * A route is one entry of http_routes[] (routes.c): method, path pattern
 * ("/items/{id}" — a {name} segment matches one non-empty segment), handler,
 * flags. Handlers run on a worker thread (they may call the engine and
 * block) unless HTTP_R_LOOP says the handler is cheap and never blocks
 * (static bytes, health). A handler fills http_resp and returns PERR_OK, or
 * returns a perr code with the message set (perr_set): the server then
 * answers {"error": NAME, "message": ...} with the status of
 * http_status_of(code).
 */
#ifndef PERCEPT_HTTP_ROUTE_H
#define PERCEPT_HTTP_ROUTE_H

#include "engine/eng.h"
#include "net/server.h"

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_HEADERS 8

typedef struct http_route http_route;

typedef struct http_req {
    const http_route *route;
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* percent-decoded, without the query */
    const char *query;           /* raw, after '?'; "" when none */
    const char *content_type;    /* "" when none */
    const char *accept;          /* "" when none */
    const uint8_t *body;         /* the whole request body (bounded by max_frame) */
    size_t body_len;
    const char *params[HTTP_MAX_PARAMS]; /* {name} segments, in pattern order */
    int n_params;
} http_req;

typedef struct http_resp {
    int status;                  /* 0: 200 */
    const char *content_type;    /* static string; NULL: application/json */
    char *body;                  /* malloc'd, taken by the server */
    size_t len;
    const char *hdr_name[HTTP_MAX_HEADERS]; /* static names */
    char *hdr_value[HTTP_MAX_HEADERS];      /* malloc'd, taken */
    int n_hdr;
} http_resp;

typedef struct http_env {
    eng_db *db;
    net_server *ns;
} http_env;

typedef int (*http_handler_fn)(const http_env *e, const http_req *rq, http_resp *rs);

enum {
    HTTP_R_LOOP = 1,             /* run on the loop thread (must not block) */
    HTTP_R_PUBLIC = 2,           /* no token needed (health probes, the OpenAPI file) */
};

struct http_route {
    const char *method;
    const char *pattern;
    http_handler_fn fn;
    unsigned flags;
    int op;                      /* NET_OP_* it runs (metrics, the generic op handler); 0: none */
    const char *media;           /* the op's media field for raw/multipart bodies ("image", "data"); NULL: none */
};

extern const http_route http_routes[];
extern const int http_n_routes;

/* Response helpers: each returns PERR_OK or PERR_NOMEM. */
int http_resp_set(http_resp *rs, int status, const char *content_type, const void *body, size_t len);
int http_resp_take(http_resp *rs, int status, const char *content_type, char *body, size_t len);
int http_resp_header(http_resp *rs, const char *name, const char *value);
void http_resp_clear(http_resp *rs);

/* perr code -> HTTP status (docs/http.md, "Errors"). */
int http_status_of(int code);
const char *http_reason(int status);

#endif
