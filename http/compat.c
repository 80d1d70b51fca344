/* http_compat: percept as the encoder of other engines (docs/http.md,
 * "percept as another engine's encoder"), in the shapes those engines send
 * and expect:
 *  - Hugging Face text-embeddings-inference: POST /embed
 *    {"inputs": "text" | ["text", ...], "normalize": bool, "truncate": bool,
 *     ...} -> [[f32, ...], ...] (one vector per input, always nested);
 *    errors {"error": "...", "error_type": "validation"|"backend"}.
 *  - Weaviate multi2vec-clip inference: POST /vectorize
 *    {"texts": [...], "images": [base64, ...]} ->
 *    {"textVectors": [[...]], "imageVectors": [[...]]}; GET /meta (an
 *    object); GET /.well-known/live and /.well-known/ready -> 204.
 * Vectors come from the engine's encoders (the same as EMBED), L2-normalized.
 */
#define _GNU_SOURCE
#include "http/ops.h"
#include "http/json.h"
#include "common/perr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 1024

static void put_vector(http_buf *b, const float *v, int dim) {
    http_buf_put(b, "[", 1);
    for (int i = 0; i < dim; i++) http_buf_printf(b, i ? ",%.9g" : "%.9g", (double)v[i]);
    http_buf_put(b, "]", 1);
}

/* TEI's error body: {"error": message, "error_type": kind}. */
static int tei_error(http_resp *rs, int status, const char *kind, const char *msg) {
    http_buf b = {0};
    http_buf_puts(&b, "{\"error\":");
    http_buf_json_str(&b, msg, strlen(msg));
    http_buf_puts(&b, ",\"error_type\":");
    http_buf_json_str(&b, kind, strlen(kind));
    http_buf_puts(&b, "}");
    if (b.oom) { http_buf_free(&b); return perr_set(PERR_NOMEM, "error body"); }
    return http_resp_take(rs, status, "application/json", b.p, b.len);
}

int http_h_tei_embed(const http_env *e, const http_req *rq, http_resp *rs) {
    cJSON *j = NULL;
    int rc = http_parse_json(rq->body, rq->body_len, &j);
    if (rc) return tei_error(rs, 422, "validation", perr_msg());
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    int n = cJSON_IsString(in) ? 1 : cJSON_IsArray(in) ? cJSON_GetArraySize(in) : -1;
    if (n < 1) { cJSON_Delete(j); return tei_error(rs, 422, "validation", "\"inputs\": a string or a non-empty array of strings"); }
    if (n > MAX_INPUTS) { cJSON_Delete(j); return tei_error(rs, 413, "validation", "\"inputs\": more than 1024 texts"); }
    int dim = eng_dim(e->db);
    float *v = dim > 0 ? malloc(sizeof(float) * (size_t)dim) : NULL;
    if (!v) { cJSON_Delete(j); return tei_error(rs, 424, "backend", dim > 0 ? "out of memory" : perr_msg()); }
    http_buf b = {0};
    http_buf_put(&b, "[", 1);
    const cJSON *item = cJSON_IsString(in) ? in : in->child;
    for (int i = 0; i < n && !rc; i++, item = item->next) {
        if (!cJSON_IsString(item)) {
            char m[64];
            snprintf(m, sizeof m, "\"inputs\"[%d] is not a string", i);
            rc = tei_error(rs, 422, "validation", m);
            rc = rc ? rc : 1;
            break;
        }
        if ((rc = eng_encode_text(e->db, item->valuestring, v)) != 0) {
            char m[600];
            snprintf(m, sizeof m, "\"inputs\"[%d]: %s", i, perr_msg());
            rc = tei_error(rs, 424, "backend", m);
            rc = rc ? rc : 1;
            break;
        }
        if (i) http_buf_put(&b, ",", 1);
        put_vector(&b, v, dim);
    }
    http_buf_put(&b, "]", 1);
    free(v);
    cJSON_Delete(j);
    if (rc == 1) { http_buf_free(&b); return PERR_OK; } /* the TEI error is the answer */
    if (rc) { http_buf_free(&b); return rc; }
    if (b.oom) { http_buf_free(&b); return perr_set(PERR_NOMEM, "embeddings"); }
    return http_resp_take(rs, 200, "application/json", b.p, b.len);
}

/* One "texts"/"images" array into b as an array of vectors. */
static int wv_list(eng_db *db, const cJSON *arr, const char *name, int images, float *v, int dim, http_buf *b) {
    http_buf_put(b, "[", 1);
    int i = 0;
    for (const cJSON *it = arr ? arr->child : NULL; it; it = it->next, i++) {
        if (!cJSON_IsString(it)) return perr_set(PERR_INVALID, "\"%s\"[%d] is not a string", name, i);
        int rc;
        if (images) {
            uint8_t *p = NULL;
            size_t n = 0;
            rc = http_base64_decode(it->valuestring, strlen(it->valuestring), &p, &n);
            if (!rc) rc = eng_encode_image_buffer(db, p, n, v);
            free(p);
        } else rc = eng_encode_text(db, it->valuestring, v);
        if (rc) return perr_prefix(rc, "\"%s\"[%d]", name, i);
        if (i) http_buf_put(b, ",", 1);
        put_vector(b, v, dim);
    }
    http_buf_put(b, "]", 1);
    return PERR_OK;
}

int http_h_wv_vectorize(const http_env *e, const http_req *rq, http_resp *rs) {
    cJSON *j = NULL;
    int rc = http_parse_json(rq->body, rq->body_len, &j);
    if (rc) return rc;
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(j, "texts");
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(j, "images");
    if ((texts && !cJSON_IsArray(texts) && !cJSON_IsNull(texts)) || (images && !cJSON_IsArray(images) && !cJSON_IsNull(images))) {
        cJSON_Delete(j);
        return perr_set(PERR_INVALID, "\"texts\" and \"images\" are arrays of strings");
    }
    if (cJSON_GetArraySize(texts) + cJSON_GetArraySize(images) > MAX_INPUTS) {
        cJSON_Delete(j);
        return perr_set(PERR_TOO_LARGE, "more than %d texts and images", MAX_INPUTS);
    }
    int dim = eng_dim(e->db);
    float *v = dim > 0 ? malloc(sizeof(float) * (size_t)dim) : NULL;
    if (!v) { cJSON_Delete(j); return dim > 0 ? perr_set(PERR_NOMEM, "vector") : (perr_msg()[0] ? PERR_MODEL : perr_set(PERR_MODEL, "no model")); }
    http_buf b = {0};
    http_buf_puts(&b, "{\"textVectors\":");
    rc = wv_list(e->db, cJSON_IsArray(texts) ? texts : NULL, "texts", 0, v, dim, &b);
    http_buf_puts(&b, ",\"imageVectors\":");
    if (!rc) rc = wv_list(e->db, cJSON_IsArray(images) ? images : NULL, "images", 1, v, dim, &b);
    http_buf_puts(&b, "}");
    free(v);
    cJSON_Delete(j);
    if (!rc && b.oom) rc = perr_set(PERR_NOMEM, "vectors");
    if (rc) { http_buf_free(&b); return rc; }
    return http_resp_take(rs, 200, "application/json", b.p, b.len);
}

int http_h_wv_meta(const http_env *e, const http_req *rq, http_resp *rs) {
    eng_info info;
    int rc = eng_get_info(e->db, &info);
    if (rc) return rc;
    http_buf b = {0};
    http_buf_puts(&b, "{\"model\":{\"name\":");
    http_buf_json_str(&b, info.model_name, strlen(info.model_name));
    http_buf_printf(&b, ",\"dim\":%d,\"fingerprint\":\"%016llx\",\"family\":\"PE-Core (Perception Encoder)\"}}",
                    info.dim, (unsigned long long)info.model_fingerprint);
    if (b.oom) { http_buf_free(&b); return perr_set(PERR_NOMEM, "meta"); }
    return http_resp_take(rs, 200, "application/json", b.p, b.len);
}

int http_h_wv_live(const http_env *e, const http_req *rq, http_resp *rs) {
    return http_resp_set(rs, 204, "text/plain", "", 0);
}

int http_h_wv_ready(const http_env *e, const http_req *rq, http_resp *rs) {
    if (e->ns && net_server_draining(e->ns)) return http_resp_set(rs, 503, "text/plain", "", 0);
    if (eng_dim(e->db) <= 0) return http_resp_set(rs, 503, "text/plain", "", 0);
    return http_resp_set(rs, 204, "text/plain", "", 0);
}
