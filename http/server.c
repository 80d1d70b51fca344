/* http_server: H2O (libuv build) on the binary server's loop (http.h).
 *
 * DESIGN
 * - One h2o context on net_server_loop(); our own uv_tcp listener accepts
 *   and hands each socket to h2o_accept. H2O parses HTTP/1.1 and HTTP/2,
 *   buffers the request body (bounded by max_request_entity_size = the
 *   binary protocol's max frame) and calls on_req once per request.
 * - on_req (loop thread) routes by the table in routes.c, checks the token,
 *   and either answers at once (HTTP_R_LOOP routes) or copies the request
 *   into a call and queues it on the server's worker pool
 *   (net_server_submit: the same FIFO, max_queue and BUSY rule as binary
 *   requests). The worker runs the handler; call_done (loop thread) sends
 *   the response.
 * - A client may go away while its call runs: H2O then frees the request's
 *   pool. A small shared object linked to that pool (h2o_mem_alloc_shared)
 *   clears call->req when the pool goes, so call_done drops the response
 *   instead of touching a freed request.
 * - Limits map onto H2O's: idle timeout -> http1 req_timeout and http2
 *   idle_timeout; in-flight per connection -> http2 concurrent requests
 *   (HTTP/1.1 is one at a time); max_conns counted here.
 * - Shutdown: on drain the listener closes and h2o is asked to shut down
 *   (HTTP/2 GOAWAY); once every call finished (stop), connections still
 *   open (idle keep-alive) are shut for reading so h2o closes them itself,
 *   and the context is disposed when the last one is gone.
 */
#define _GNU_SOURCE
#include "http/http.h"
#include "http/route.h"
#include "http/json.h"
#include "http/ops.h"
#include "common/perr.h"
#include "net/proto.h"

#include <h2o.h>
#include <uv.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

typedef struct hsock {
    uv_tcp_t tcp;                /* first: h2o's close callback gets this handle */
    http_server *h;
    struct hsock *prev, *next;
} hsock;

struct http_server {
    net_server *ns;
    eng_db *db;
    h2o_globalconf_t conf;
    h2o_context_t ctx;
    h2o_accept_ctx_t actx;
    int ctx_live;
    uv_tcp_t lis;
    int lis_open;
    int port;
    hsock *socks;
    int n_socks;
    int stopping;
};

typedef struct call {
    http_server *h;
    h2o_req_t *req;              /* NULL once the client went away */
    struct call **guard;         /* shared object in req's pool pointing back here */
    const http_route *route;
    http_req rq;
    http_resp rs;
    char *strs;                  /* method, path, query, content type, accept, params */
    uint8_t *body;
    uint64_t t0;
    int rc;
    char msg[1024];
} call;

/* ---- responses -------------------------------------------------------------- */

int http_resp_take(http_resp *rs, int status, const char *ct, char *body, size_t len) {
    free(rs->body);
    rs->status = status;
    rs->content_type = ct;
    rs->body = body;
    rs->len = len;
    return PERR_OK;
}

int http_resp_set(http_resp *rs, int status, const char *ct, const void *body, size_t len) {
    char *p = malloc(len + 1);
    if (!p) return perr_set(PERR_NOMEM, "response of %zu bytes", len);
    if (len) memcpy(p, body, len);
    p[len] = 0;
    return http_resp_take(rs, status, ct, p, len);
}

int http_resp_header(http_resp *rs, const char *name, const char *value) {
    if (rs->n_hdr == HTTP_MAX_HEADERS) return perr_set(PERR_TOO_LARGE, "more than %d response headers", HTTP_MAX_HEADERS);
    char *v = strdup(value);
    if (!v) return perr_set(PERR_NOMEM, "header %s", name);
    rs->hdr_name[rs->n_hdr] = name;
    rs->hdr_value[rs->n_hdr++] = v;
    return PERR_OK;
}

void http_resp_clear(http_resp *rs) {
    free(rs->body);
    for (int i = 0; i < rs->n_hdr; i++) free(rs->hdr_value[i]);
    memset(rs, 0, sizeof *rs);
}

int http_status_of(int code) {
    switch (code) {
    case PERR_OK: return 200;
    case PERR_NOT_FOUND: return 404;
    case PERR_INVALID: case PERR_FORMAT: case PERR_PROTOCOL: return 400;
    case PERR_UNSUPPORTED: return 415;
    case PERR_TOO_LARGE: return 413;
    case PERR_MODEL: case PERR_EXISTS: case PERR_VERSION: return 409;
    case PERR_DECODE: return 422;
    case PERR_FULL: return 507;
    case PERR_BUSY: case PERR_NOMEM: case PERR_CANCELLED: return 503;
    case PERR_AUTH: return 401;
    case PERR_TIMEOUT: return 504;
    case PERR_NET: return 502;
    default: return 500; /* IO, DB, INDEX, INTERNAL */
    }
}

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 507: return "Insufficient Storage";
    default: return "Status";
    }
}

/* Fills rs with the JSON error of code (message: msg or perr_msg()). */
static void error_resp(http_resp *rs, int code, const char *msg) {
    http_resp_clear(rs);
    http_buf b = {0};
    http_json_error(&b, code, msg);
    if (b.oom) { http_buf_free(&b); rs->status = 503; return; }
    http_resp_take(rs, http_status_of(code), "application/json", b.p, b.len);
    if (code == PERR_AUTH) http_resp_header(rs, "www-authenticate", "Bearer");
    if (code == PERR_BUSY) http_resp_header(rs, "retry-after", "1");
}

static void send_resp(h2o_req_t *req, http_resp *rs) {
    int st = rs->status ? rs->status : 200;
    req->res.status = st;
    req->res.reason = http_reason(st);
    const char *ct = rs->content_type ? rs->content_type : "application/json";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
    for (int i = 0; i < rs->n_hdr; i++) {
        /* names are copied into the pool: h2o keeps the pointer */
        size_t nl = strlen(rs->hdr_name[i]);
        h2o_iovec_t n = h2o_strdup(&req->pool, rs->hdr_name[i], nl);
        h2o_iovec_t v = h2o_strdup(&req->pool, rs->hdr_value[i], strlen(rs->hdr_value[i]));
        h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, NULL, v.base, v.len);
    }
    req->res.content_length = rs->len;
    h2o_send_inline(req, rs->body ? rs->body : "", rs->len);
}

/* ---- routing ------------------------------------------------------------------ */

/* Matches path against pattern; {name} segments captured as [start,len). */
static int match(const char *pattern, const char *path, size_t plen, size_t *cap_off, size_t *cap_len, int *n_cap) {
    const char *p = pattern;
    size_t i = 0;
    *n_cap = 0;
    while (*p) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            if (!e) return 0;
            size_t s = i;
            while (i < plen && path[i] != '/') i++;
            if (i == s || *n_cap == HTTP_MAX_PARAMS) return 0;
            cap_off[*n_cap] = s;
            cap_len[*n_cap] = i - s;
            (*n_cap)++;
            p = e + 1;
        } else {
            if (i >= plen || path[i] != *p) return 0;
            i++;
            p++;
        }
    }
    return i == plen;
}

static const char *header(h2o_req_t *req, const h2o_token_t *t, size_t *len) {
    ssize_t i = h2o_find_header(&req->headers, t, -1);
    if (i < 0) { *len = 0; return NULL; }
    *len = req->headers.entries[i].value.len;
    return req->headers.entries[i].value.base;
}

static void call_free(call *c) {
    if (!c) return;
    http_resp_clear(&c->rs);
    free(c->strs);
    free(c->body);
    free(c);
}

static int call_run(void *arg) {
    call *c = arg;
    http_env e = {c->h->db, c->h->ns};
    perr_clear();
    c->rc = c->route->fn(&e, &c->rq, &c->rs);
    if (c->rc) net_server_scrub(c->h->ns, perr_msg(), c->msg, sizeof c->msg);
    return c->rc;
}

static void finish(call *c) {
    if (c->rc) error_resp(&c->rs, c->rc, c->msg);
    if (c->route->op) net_server_record(c->h->ns, c->route->op, c->rc, c->t0);
}

static void call_done(void *arg, int rc) {
    call *c = arg;
    if (rc == PERR_CANCELLED && !c->rc) { c->rc = rc; snprintf(c->msg, sizeof c->msg, "server shutting down"); }
    finish(c);
    if (c->req) {
        *c->guard = NULL;
        send_resp(c->req, &c->rs);
    }
    call_free(c);
}

/* A SEARCH run as a binary-protocol operation: its answer, on the worker. */
static void call_post(void *arg, int rc, const uint8_t *resp, size_t len) {
    call *c = arg;
    if (!rc) perr_clear(); /* else the message of the failed operation is kept */
    c->rc = rc ? rc : http_resp_of_payload(c->route->op, resp, len, &c->rs);
    if (c->rc) net_server_scrub(c->h->ns, perr_msg(), c->msg, sizeof c->msg);
}

/* SEARCH with a small JSON (or form, or empty) body: its payload is built
 * here on the loop (bounded: at most COALESCE_MAX_BODY bytes of JSON) and
 * queued as an operation, so vector searches join the binary door's
 * coalesced batches. Uploads go the task way (built on a worker). */
#define COALESCE_MAX_BODY (64u << 10)
static int as_operation(const call *c) {
    const char *ct = c->rq.content_type;
    return c->route->fn == http_h_op && c->route->op == NET_OP_SEARCH && c->rq.body_len <= COALESCE_MAX_BODY &&
           (!c->rq.body_len || !strncasecmp(ct, "application/json", 16) || !strncasecmp(ct, "application/x-www-form-urlencoded", 33));
}

static void on_req_gone(void *p) {
    call *c = *(call **)p;
    if (c) c->req = NULL;
}

/* Copies what the handler needs out of the request (h2o's memory may go
 * while a worker runs it). */
static int call_fill(call *c, h2o_req_t *req, const char *path, size_t plen, const size_t *co, const size_t *cl, int nc) {
    size_t ctl, acl;
    const char *ct = header(req, H2O_TOKEN_CONTENT_TYPE, &ctl);
    const char *ac = header(req, H2O_TOKEN_ACCEPT, &acl);
    const char *q = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : "";
    size_t ql = req->query_at != SIZE_MAX ? req->path.len - req->query_at - 1 : 0;
    size_t total = req->method.len + 1 + plen + 1 + ql + 1 + ctl + 1 + acl + 1;
    for (int i = 0; i < nc; i++) total += cl[i] + 1;
    char *s = malloc(total);
    if (!s) return perr_set(PERR_NOMEM, "request");
    c->strs = s;
#define PUT(field, src, n) do { memcpy(s, (src), (n)); s[(n)] = 0; field = s; s += (n) + 1; } while (0)
    PUT(c->rq.method, req->method.base, req->method.len);
    PUT(c->rq.path, path, plen);
    PUT(c->rq.query, q, ql);
    PUT(c->rq.content_type, ct ? ct : "", ctl);
    PUT(c->rq.accept, ac ? ac : "", acl);
    for (int i = 0; i < nc; i++) PUT(c->rq.params[i], path + co[i], cl[i]);
#undef PUT
    c->rq.n_params = nc;
    if (req->entity.base && req->entity.len) {
        c->body = malloc(req->entity.len);
        if (!c->body) return perr_set(PERR_NOMEM, "request body of %zu bytes", req->entity.len);
        memcpy(c->body, req->entity.base, req->entity.len);
        c->rq.body = c->body;
        c->rq.body_len = req->entity.len;
    } else c->rq.body = (const uint8_t *)"";
    return PERR_OK;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    http_server *h = *(http_server **)(self + 1);
    const char *path = req->path_normalized.base;
    size_t plen = req->path_normalized.len;
    size_t co[HTTP_MAX_PARAMS], cl[HTTP_MAX_PARAMS];
    int nc = 0, path_known = 0;
    const http_route *r = NULL;
    for (int i = 0; i < http_n_routes && !r; i++) {
        if (!match(http_routes[i].pattern, path, plen, co, cl, &nc)) continue;
        path_known = 1;
        size_t ml = strlen(http_routes[i].method);
        if ((req->method.len == ml && !memcmp(req->method.base, http_routes[i].method, ml)) ||
            (req->method.len == 4 && !memcmp(req->method.base, "HEAD", 4) && !strcmp(http_routes[i].method, "GET")))
            r = &http_routes[i];
    }
    http_resp rs = {0};
    if (!r) {
        char msg[300];
        snprintf(msg, sizeof msg, path_known ? "%.*s is not allowed on %.*s" : "no route %.*s %.*s (see /openapi.json)",
                 (int)req->method.len, req->method.base, (int)(plen > 200 ? 200 : plen), path);
        error_resp(&rs, PERR_NOT_FOUND, msg);
        if (path_known) {
            rs.status = 405;
            http_buf allow = {0};
            for (int i = 0; i < http_n_routes; i++)
                if (match(http_routes[i].pattern, path, plen, co, cl, &nc)) {
                    if (allow.len) http_buf_puts(&allow, ", ");
                    http_buf_puts(&allow, http_routes[i].method);
                }
            if (allow.p) http_resp_header(&rs, "allow", allow.p);
            http_buf_free(&allow);
        }
        send_resp(req, &rs);
        http_resp_clear(&rs);
        return 0;
    }
    if (!(r->flags & HTTP_R_PUBLIC) && net_server_has_token(h->ns)) {
        size_t al;
        const char *a = header(req, H2O_TOKEN_AUTHORIZATION, &al);
        int ok = a && al > 7 && !strncasecmp(a, "Bearer ", 7) && net_server_token_ok(h->ns, a + 7, al - 7);
        if (!ok) {
            error_resp(&rs, PERR_AUTH, a ? "invalid token" : "not authenticated: send \"Authorization: Bearer TOKEN\"");
            if (r->op) net_server_record(h->ns, r->op, PERR_AUTH, uv_hrtime());
            send_resp(req, &rs);
            http_resp_clear(&rs);
            return 0;
        }
    }
    call *c = calloc(1, sizeof *c);
    int rc = c ? PERR_OK : perr_set(PERR_NOMEM, "request");
    if (!rc) {
        c->h = h;
        c->route = r;
        c->rq.route = r;
        c->t0 = uv_hrtime();
        rc = call_fill(c, req, path, plen, co, cl, nc);
    }
    if (!rc && (r->flags & HTTP_R_LOOP)) {
        call_run(c);
        finish(c);
        send_resp(req, &c->rs);
        call_free(c);
        return 0;
    }
    if (!rc) {
        c->guard = h2o_mem_alloc_shared(&req->pool, sizeof *c->guard, on_req_gone);
        *c->guard = c;
        c->req = req;
        if (as_operation(c)) {
            uint8_t *payload = NULL;
            size_t len = 0;
            rc = http_op_payload(&c->rq, &payload, &len);
            if (!rc) rc = net_server_submit_op(h->ns, c->route->op, payload, len, call_post, call_done, c);
        } else rc = net_server_submit(h->ns, call_run, call_done, c);
        if (rc) *c->guard = NULL;
    }
    if (rc) {
        char msg[1024];
        net_server_scrub(h->ns, perr_msg(), msg, sizeof msg);
        error_resp(&rs, rc, msg);
        if (r->op) net_server_record(h->ns, r->op, rc, uv_hrtime());
        send_resp(req, &rs);
        http_resp_clear(&rs);
        call_free(c);
    }
    return 0;
}

/* ---- connections ---------------------------------------------------------------- */

static void maybe_dispose(http_server *h) {
    if (h->stopping && !h->n_socks && h->ctx_live) {
        /* h2o_context_request_shutdown armed HTTP/2's GOAWAY resend on the
         * one-second timeout; h2o_context_dispose asserts no timer is armed */
        if (h2o_timeout_is_linked(&h->ctx.http2._graceful_shutdown_timeout))
            h2o_timeout_unlink(&h->ctx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&h->ctx);
        h->ctx_live = 0;
    }
}

static void on_sock_closed(uv_handle_t *hd) {
    hsock *s = (hsock *)hd;
    http_server *h = s->h;
    if (s->prev) s->prev->next = s->next; else h->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    h->n_socks--;
    free(s);
    maybe_dispose(h);
}

static void on_accept(uv_stream_t *lis, int status) {
    http_server *h = lis->data;
    if (status < 0 || h->stopping) return;
    hsock *s = calloc(1, sizeof *s);
    if (!s) return;
    s->h = h;
    uv_tcp_init(lis->loop, &s->tcp);
    if (uv_accept(lis, (uv_stream_t *)&s->tcp) != 0) { uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free); return; }
    if (h->n_socks >= net_server_get_opts(h->ns)->max_conns) { /* over the limit: closed at once */
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    s->next = h->socks;
    if (h->socks) h->socks->prev = s;
    h->socks = s;
    h->n_socks++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&s->tcp, on_sock_closed);
    h2o_accept(&h->actx, sock);
}

static void on_lis_closed(uv_handle_t *hd) { (void)hd; }

static void fe_drain(void *user) {
    http_server *h = user;
    if (h->lis_open) { uv_close((uv_handle_t *)&h->lis, on_lis_closed); h->lis_open = 0; }
    if (h->ctx_live) h2o_context_request_shutdown(&h->ctx);
}

static void fe_stop(void *user) {
    http_server *h = user;
    fe_drain(h);
    h->stopping = 1;
    /* idle keep-alive connections: EOF on read makes h2o close them */
    for (hsock *s = h->socks; s; s = s->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) shutdown(fd, SHUT_RD);
    }
    maybe_dispose(h);
}

/* ---- setup ------------------------------------------------------------------------ */

int http_server_new(net_server *ns, eng_db *db, const char *listen, http_server **out) {
    *out = NULL;
    const net_server_opts *o = net_server_get_opts(ns);
    struct sockaddr_storage ss;
    if (!listen) listen = "127.0.0.1:7701";
    int rc = net_parse_addr(listen, &ss);
    if (rc) return perr_prefix(rc, "--http");
    if (!net_addr_is_loopback(&ss) && !net_server_has_token(ns) && !o->insecure)
        return perr_set(PERR_AUTH, "refusing HTTP on non-loopback %s without a token: give --token-file FILE "
                                   "(or --insecure to accept anyone)", listen);
    http_server *h = calloc(1, sizeof *h);
    if (!h) return perr_set(PERR_NOMEM, "http server");
    h->ns = ns;
    h->db = db;
    h2o_config_init(&h->conf);
    h->conf.server_name = h2o_iovec_init(H2O_STRLIT("percept"));
    h->conf.max_request_entity_size = o->max_frame;
    if (o->idle_timeout_ms > 0) {
        h->conf.http1.req_timeout = (uint64_t)o->idle_timeout_ms;
        h->conf.http2.idle_timeout = (uint64_t)o->idle_timeout_ms;
    }
    h->conf.http2.max_concurrent_requests_per_connection = (size_t)o->max_inflight;
    h2o_hostconf_t *host = h2o_config_register_host(&h->conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *hd = h2o_create_handler(pc, sizeof *hd + sizeof(http_server *));
    hd->on_req = on_req;
    *(http_server **)(hd + 1) = h;
    uv_loop_t *loop = net_server_loop(ns);
    h2o_context_init(&h->ctx, loop, &h->conf);
    h->ctx_live = 1;
    h->actx.ctx = &h->ctx;
    h->actx.hosts = h->conf.hosts;
    *out = h;
    int r;
    if ((r = uv_tcp_init(loop, &h->lis)) < 0) return perr_set(PERR_NET, "--http %s: %s", listen, uv_strerror(r));
    h->lis.data = h;
    h->lis_open = 1;
    if ((r = uv_tcp_bind(&h->lis, (struct sockaddr *)&ss, 0)) < 0 || (r = uv_listen((uv_stream_t *)&h->lis, 511, on_accept)) < 0)
        return perr_set(PERR_NET, "--http %s: %s", listen, uv_strerror(r));
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(&h->lis, (struct sockaddr *)&bound, &len) == 0)
        h->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
    net_frontend fe = {fe_drain, fe_stop, h};
    return net_server_add_frontend(ns, &fe);
}

int http_server_port(http_server *h) { return h ? h->port : 0; }

void http_server_free(http_server *h) {
    if (!h) return;
    /* Normally the loop ran to completion (net_server_run returned) and all
     * is closed; after a failed start or a run that never happened, close
     * here and let the loop finish the closes. */
    int pending = 0;
    if (h->lis_open) { uv_close((uv_handle_t *)&h->lis, on_lis_closed); h->lis_open = 0; pending = 1; }
    if (h->ctx_live && !h->n_socks) { h2o_context_dispose(&h->ctx); h->ctx_live = 0; pending = 1; }
    if (pending) uv_run(net_server_loop(h->ns), UV_RUN_NOWAIT);
    h2o_config_dispose(&h->conf);
    free(h);
}
