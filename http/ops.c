/* http_ops: the handlers of the route table (routes.c).
 *
 * DESIGN: every binary-protocol operation has one generic handler,
 * http_h_op: it gathers the request's fields (JSON body, multipart parts,
 * raw upload, query string, {id} path segment) into the operation's
 * MessagePack payload (json.h), runs net_op_run — the binary door's own
 * validation and engine calls — and prints the MessagePack answer as JSON.
 * So both doors accept the same fields, give the same errors and return the
 * same numbers. The outside-contract routes (TEI, Weaviate multi2vec-clip)
 * call the engine's encoders directly in their published shapes.
 */
#define _GNU_SOURCE
#include "http/ops.h"
#include "http/json.h"
#include "http/multipart.h"
#include "common/perr.h"
#include "net/ops.h"
#include "net/mp.h"
#include "net/proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int ct_is(const char *ct, const char *type) {
    size_t n = strlen(type);
    return !strncasecmp(ct, type, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* JSON text -> parsed object, with the byte offset of a syntax error. */
int http_parse_json(const uint8_t *body, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts((const char *)body, len, &end, 0);
    if (*out) return PERR_OK;
    size_t off = end && end >= (const char *)body ? (size_t)(end - (const char *)body) : 0;
    return perr_set(PERR_INVALID, "request body: invalid JSON at byte %zu", off);
}

/* The request's body into f, by its Content-Type. */
static int body_fields(const http_req *rq, const char *media, http_fields *f) {
    if (!rq->body_len) return PERR_OK;
    const char *ct = rq->content_type;
    if (ct_is(ct, "application/json") || (!*ct && rq->body[0] == '{')) {
        cJSON *j = NULL;
        int rc = http_parse_json(rq->body, rq->body_len, &j);
        if (!rc) rc = http_fields_from_json(f, j);
        cJSON_Delete(j);
        return rc;
    }
    if (ct_is(ct, "multipart/form-data")) {
        char boundary[80];
        http_part *parts = NULL;
        int n = 0;
        int rc = http_mp_boundary(ct, boundary, sizeof boundary);
        if (!rc) rc = http_mp_parse(rq->body, rq->body_len, boundary, &parts, &n);
        int files = 0;
        for (int i = 0; !rc && i < n; i++) {
            http_part *p = &parts[i];
            if (p->has_filename || (media && !strcmp(p->name, media))) {
                if (!media) rc = perr_set(PERR_UNSUPPORTED, "%s %s takes no file upload (part \"%s\")", rq->method, rq->path, p->name);
                else if (files++) rc = perr_set(PERR_INVALID, "one file per request (part %d \"%s\" is a second one)", i, p->filename);
                else rc = http_fields_add_bin(f, media, p->data, p->len);
            } else if (p->name[0]) rc = http_fields_add_text(f, p->name, (const char *)p->data, p->len);
        }
        free(parts);
        return rc;
    }
    if (ct_is(ct, "application/x-www-form-urlencoded")) {
        char *q = strndup((const char *)rq->body, rq->body_len);
        if (!q) return perr_set(PERR_NOMEM, "form body");
        int rc = http_fields_from_query(f, q);
        free(q);
        return rc;
    }
    if (!media)
        return perr_set(PERR_UNSUPPORTED, "%s %s: Content-Type \"%s\": send application/json", rq->method, rq->path, ct);
    return http_fields_add_bin(f, media, rq->body, rq->body_len); /* a raw upload */
}

int http_resp_of_payload(int op, const uint8_t *resp, size_t len, http_resp *rs) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = PERR_OK;
    if (msgpack_unpack_next(&u, (const char *)resp, len, &off) != MSGPACK_UNPACK_SUCCESS)
        rc = perr_set(PERR_INTERNAL, "%s: response did not unpack", net_op_name(op));
    else {
        http_buf b = {0};
        http_mp_to_json(&u.data, NULL, &b);
        if (b.oom) { http_buf_free(&b); rc = perr_set(PERR_NOMEM, "%s: JSON response", net_op_name(op)); }
        else http_resp_take(rs, 200, "application/json", b.p, b.len);
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

int http_run_op(const http_env *e, int op, const uint8_t *payload, size_t len, http_resp *rs) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    net_op_ctx ctx;
    memset(&ctx, 0, sizeof ctx); /* no ingest_done: an INGEST waits for its commit here */
    ctx.db = e->db;
    if (e->ns) net_server_stats_packer(e->ns, &ctx);
    int rc = net_op_run(&ctx, op, payload, len, &pk);
    if (!rc) rc = http_resp_of_payload(op, (const uint8_t *)sb.data, sb.size, rs);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int http_parse_id(const char *s, uint64_t *out) {
    char *end = NULL;
    if (!*s || *s == '-') return perr_set(PERR_INVALID, "item id \"%s\": not an unsigned integer", s);
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return perr_set(PERR_INVALID, "item id \"%s\": not an unsigned integer", s);
    *out = v;
    return PERR_OK;
}

int http_op_payload(const http_req *rq, uint8_t **payload, size_t *len) {
    const http_route *r = rq->route;
    *payload = NULL;
    *len = 0;
    http_fields f;
    http_fields_init(&f);
    int rc = body_fields(rq, r->media, &f);
    if (!rc && rq->n_params) { /* {id}: the item of the path */
        uint64_t id = 0;
        rc = http_parse_id(rq->params[0], &id);
        if (!rc) rc = r->op == NET_OP_DELETE ? http_fields_add_u64s(&f, "ids", &id, 1) : http_fields_add_u64(&f, "id", id);
    }
    if (!rc) rc = http_fields_from_query(&f, rq->query);
    if (!rc) rc = http_fields_pack(&f, payload, len);
    http_fields_free(&f);
    return rc;
}

int http_h_op(const http_env *e, const http_req *rq, http_resp *rs) {
    uint8_t *payload = NULL;
    size_t len = 0;
    int rc = http_op_payload(rq, &payload, &len);
    if (!rc) rc = http_run_op(e, rq->route->op, payload, len, rs);
    free(payload);
    return rc;
}

/* ---- health, metrics ----------------------------------------------------------- */

int http_h_healthz(const http_env *e, const http_req *rq, http_resp *rs) {
    static const char ok[] = "{\"status\":\"ok\"}";
    return http_resp_set(rs, 200, "application/json", ok, sizeof ok - 1);
}

/* Ready: not draining, and the model answers (eng_dim loads it on first use,
 * which is why this runs on a worker). */
int http_h_readyz(const http_env *e, const http_req *rq, http_resp *rs) {
    if (e->ns && net_server_draining(e->ns)) return perr_set(PERR_BUSY, "shutting down");
    int dim = eng_dim(e->db);
    if (dim <= 0) return perr_set(PERR_BUSY, "the model is not loaded: %s", perr_msg());
    char body[64];
    int n = snprintf(body, sizeof body, "{\"status\":\"ready\",\"dim\":%d}", dim);
    return http_resp_set(rs, 200, "application/json", body, (size_t)n);
}

int http_h_metrics(const http_env *e, const http_req *rq, http_resp *rs) {
    size_t len = 0;
    char *t = e->ns ? net_server_metrics_text(e->ns, &len) : NULL;
    if (!t) return perr_set(PERR_NOMEM, "metrics");
    return http_resp_take(rs, 200, "text/plain; version=0.0.4", t, len);
}

extern const unsigned char http_openapi_json[];
extern const size_t http_openapi_json_len;

int http_h_openapi(const http_env *e, const http_req *rq, http_resp *rs) {
    return http_resp_set(rs, 200, "application/json", http_openapi_json, http_openapi_json_len);
}
