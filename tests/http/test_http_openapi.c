/* /openapi.json matches what the server does: every route of the table is
 * in the document and every documented operation is a route; then each
 * documented operation is called with its documented example (path and
 * query parameters, JSON request body) and the answer must have a
 * documented status and validate against the documented schema ($ref,
 * type, nullable, required, properties, items, oneOf, enum). */
#define _GNU_SOURCE
#include "common/perr.h"
#include "http/route.h"
#include "http_testutil.h"
#include "../net/net_testutil.h"
#include "tests/common/testlib.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *doc;

static const cJSON *resolve(const cJSON *s) {
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (!cJSON_IsString(ref)) return s;
    const char *pre = "#/components/schemas/";
    if (strncmp(ref->valuestring, pre, strlen(pre))) return NULL;
    return cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "components"), "schemas"),
        ref->valuestring + strlen(pre));
}

/* 1 when v validates against schema s; else prints where and returns 0. */
static int valid(const cJSON *s, const cJSON *v, const char *at) {
    s = resolve(s);
    if (!s) { fprintf(stderr, "%s: unresolvable $ref\n", at); return 0; }
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    if (cJSON_IsArray(one)) {
        for (const cJSON *o = one->child; o; o = o->next)
            if (valid(o, v, at)) return 1;
        return 0;
    }
    if (cJSON_IsNull(v)) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "nullable"))) return 1;
        fprintf(stderr, "%s: null where not nullable\n", at);
        return 0;
    }
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "type"));
    if (!t) return 1;
    int ok = !strcmp(t, "object") ? cJSON_IsObject(v) : !strcmp(t, "array") ? cJSON_IsArray(v)
           : !strcmp(t, "string") ? cJSON_IsString(v) : !strcmp(t, "boolean") ? cJSON_IsBool(v)
           : !strcmp(t, "number") ? cJSON_IsNumber(v)
           : !strcmp(t, "integer") ? cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble : 0;
    if (!ok) { fprintf(stderr, "%s: not of type %s\n", at, t); return 0; }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (cJSON_IsArray(en) && cJSON_IsString(v)) {
        int found = 0;
        for (const cJSON *e = en->child; e; e = e->next) found |= cJSON_IsString(e) && !strcmp(e->valuestring, v->valuestring);
        if (!found) { fprintf(stderr, "%s: \"%s\" not in enum\n", at, v->valuestring); return 0; }
    }
    char sub[512];
    if (cJSON_IsObject(v)) {
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) { fprintf(stderr, "%s: required \"%s\" missing\n", at, r->valuestring); return 0; }
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
        for (const cJSON *p = props ? props->child : NULL; p; p = p->next) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(v, p->string);
            snprintf(sub, sizeof sub, "%s.%s", at, p->string);
            if (x && !valid(p, x, sub)) return 0;
        }
    }
    if (cJSON_IsArray(v)) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        int i = 0;
        for (const cJSON *x = v->child; x && items; x = x->next, i++) {
            snprintf(sub, sizeof sub, "%s[%d]", at, i);
            if (!valid(items, x, sub)) return 0;
        }
    }
    return 1;
}

static void upper(char *d, const char *s) { while ((*d++ = (char)toupper((unsigned char)*s++))) {} }

/* One documented operation, called with its examples. */
static void walk_op(int port, const char *path, const char *method, const cJSON *op) {
    char url[2048], m[16];
    upper(m, method);
    size_t n = 0;
    /* path parameters from their examples */
    for (const char *p = path; *p && n < sizeof url - 32;) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            const cJSON *ex = NULL;
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(op, "parameters");
            for (const cJSON *pr = params ? params->child : NULL; pr; pr = pr->next)
                if (!strncmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pr, "name")), p + 1, (size_t)(e - p - 1)))
                    ex = cJSON_GetObjectItemCaseSensitive(pr, "example");
            n += (size_t)snprintf(url + n, sizeof url - n, "%.0f", ex ? ex->valuedouble : 0);
            p = e + 1;
        } else url[n++] = *p++;
    }
    url[n] = 0;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(op, "parameters");
    char sep = '?';
    for (const cJSON *pr = params ? params->child : NULL; pr; pr = pr->next) {
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(pr, "example");
        if (!ex || strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pr, "in")), "query")) continue;
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pr, "name"));
        if (cJSON_IsBool(ex)) n += (size_t)snprintf(url + n, sizeof url - n, "%c%s=%s", sep, name, cJSON_IsTrue(ex) ? "true" : "false");
        else if (cJSON_IsNumber(ex)) n += (size_t)snprintf(url + n, sizeof url - n, "%c%s=%g", sep, name, ex->valuedouble);
        else n += (size_t)snprintf(url + n, sizeof url - n, "%c%s=%s", sep, name, cJSON_GetStringValue(ex));
        sep = '&';
    }
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(op, "requestBody"), "content"),
                                         "application/json"), "example");
    char *body = ex ? cJSON_PrintUnformatted(ex) : NULL;
    ht_resp r;
    if (ht_req(port, m, url, body ? "application/json" : NULL, body, body ? strlen(body) : 0, NULL, &r)) {
        t_fail(__FILE__, __LINE__, "%s %s: no answer", m, url);
        free(body);
        return;
    }
    char status[8];
    snprintf(status, sizeof status, "%ld", r.status);
    const cJSON *resps = cJSON_GetObjectItemCaseSensitive(op, "responses");
    const cJSON *doc_r = cJSON_GetObjectItemCaseSensitive(resps, status);
    if (!doc_r && r.status >= 400) doc_r = cJSON_GetObjectItemCaseSensitive(resps, "default");
    if (!doc_r) t_fail(__FILE__, __LINE__, "%s %s: status %ld is not documented (body %.300s)", m, url, r.status, r.body);
    else {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(doc_r, "content");
        if (!content) CHECK_EQ_INT(r.len, 0);
        else {
            const cJSON *mt = content->child; /* the one documented media type */
            if (strncmp(r.ctype, mt->string, strlen(mt->string)))
                t_fail(__FILE__, __LINE__, "%s %s: Content-Type \"%s\", documented \"%s\"", m, url, r.ctype, mt->string);
            else if (!strcmp(mt->string, "application/json")) {
                char at[2100];
                snprintf(at, sizeof at, "%s %s", m, url);
                if (!r.json || !valid(cJSON_GetObjectItemCaseSensitive(mt, "schema"), r.json, at))
                    t_fail(__FILE__, __LINE__, "%s %s: answer does not match its schema: %.300s", m, url, r.body);
            }
        }
        /* the examples are meant to work (the one exception documents an error on purpose) */
        if (r.status >= 400 && strcmp(path, "/delete"))
            t_fail(__FILE__, __LINE__, "%s %s: the documented example fails: %ld %.300s", m, url, r.status, r.body);
    }
    ht_resp_free(&r);
    free(body);
}

static int port;

static void test_routes_documented(void) {
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    REQUIRE(cJSON_IsObject(paths));
    int n_doc = 0;
    for (int i = 0; i < http_n_routes; i++) {
        char m[16];
        snprintf(m, sizeof m, "%s", http_routes[i].method);
        for (char *c = m; *c; c++) *c = (char)tolower((unsigned char)*c);
        if (!cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(paths, http_routes[i].pattern), m))
            t_fail(__FILE__, __LINE__, "route %s %s is not in /openapi.json", http_routes[i].method, http_routes[i].pattern);
    }
    for (const cJSON *p = paths->child; p; p = p->next)
        for (const cJSON *op = p->child; op; op = op->next) {
            n_doc++;
            int found = 0;
            for (int i = 0; i < http_n_routes && !found; i++)
                found = !strcmp(http_routes[i].pattern, p->string) && !strcasecmp(http_routes[i].method, op->string);
            if (!found) t_fail(__FILE__, __LINE__, "/openapi.json documents %s %s, which is no route", op->string, p->string);
        }
    CHECK_EQ_INT(n_doc, http_n_routes);
}

static void test_walk(void) {
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    int walked = 0;
    for (int pass = 0; pass < 2; pass++) /* deletes last */
        for (const cJSON *p = paths->child; p; p = p->next)
            for (const cJSON *op = p->child; op; op = op->next) {
                if ((pass == 1) != !strcmp(op->string, "delete")) continue;
                walk_op(port, p->string, op->string, op);
                walked++;
            }
    CHECK_EQ_INT(walked, http_n_routes);
}

int main(void) {
    nt_init();
    char *dir = t_tmpdir("http_openapi");
    eng_db *db = NULL;
    ht_server s;
    if (nt_open_db(dir, 2, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return 1; }
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    for (int i = 0; i < 3; i++) { /* the examples name item 1 */
        size_t len;
        void *img = nt_image(nt_images[i], &len);
        uint64_t id;
        eng_outcome out;
        if (!img || eng_add_buffer(db, img, len, nt_images[i], &io, &id, &out) || (i == 0 && id != 1)) {
            fprintf(stderr, "ingest: %s (id %llu)\n", perr_msg(), (unsigned long long)id);
            return 1;
        }
        free(img);
    }
    if (ht_start(&s, db, NULL)) { fprintf(stderr, "server: %s\n", perr_msg()); return 1; }
    port = s.http_port;
    ht_resp r;
    if (ht_req(port, "GET", "/openapi.json", NULL, NULL, 0, NULL, &r) || r.status != 200 || !r.json) {
        fprintf(stderr, "GET /openapi.json: %ld\n", r.status);
        return 1;
    }
    doc = r.json;
    r.json = NULL;
    ht_resp_free(&r);
    T_RUN(test_routes_documented);
    T_RUN(test_walk);
    cJSON_Delete(doc);
    ht_stop(&s);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
    ht_fini();
    nt_fini();
    return t_done();
}
