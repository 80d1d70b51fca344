/* http_ops: route handlers (routes.c names them; docs/http.md documents
 * them). Each follows http_handler_fn (route.h). */
#ifndef PERCEPT_HTTP_OPS_H
#define PERCEPT_HTTP_OPS_H

#include "http/route.h"

#include <cjson/cJSON.h>

/* Any binary-protocol operation (route->op) from JSON / multipart / raw
 * upload / query fields; the answer is the operation's payload as JSON. */
int http_h_op(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_healthz(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_readyz(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_metrics(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_openapi(const http_env *e, const http_req *rq, http_resp *rs);
/* Hugging Face TEI: POST /embed. */
int http_h_tei_embed(const http_env *e, const http_req *rq, http_resp *rs);
/* Weaviate multi2vec-clip: POST /vectorize, GET /meta, /.well-known/live|ready. */
int http_h_wv_vectorize(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_wv_meta(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_wv_live(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_wv_ready(const http_env *e, const http_req *rq, http_resp *rs);

/* Shared by handlers: a JSON body (PERR_INVALID with the byte offset), and
 * one operation's MessagePack payload run and answered as JSON. */
int http_parse_json(const uint8_t *body, size_t len, cJSON **out);
/* A decimal item id of a path segment (PERR_INVALID naming it). */
int http_parse_id(const char *s, uint64_t *out);
/* The search page (web.c): GET /, /app.js, /app.css (compiled in), and
 * GET /items/{id}/thumbnail[?segment=N]. */
int http_h_page(const http_env *e, const http_req *rq, http_resp *rs);
int http_h_thumbnail(const http_env *e, const http_req *rq, http_resp *rs);
int http_run_op(const http_env *e, int op, const uint8_t *payload, size_t len, http_resp *rs);
/* The generic op handler in two halves: the request's fields as the
 * operation's payload (*payload malloc'd), and a MessagePack answer as the
 * JSON response. */
int http_op_payload(const http_req *rq, uint8_t **payload, size_t *len);
int http_resp_of_payload(int op, const uint8_t *resp, size_t len, http_resp *rs);

#endif
