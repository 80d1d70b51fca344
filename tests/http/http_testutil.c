/* Helpers of the http tests (http_testutil.h). */
#define _GNU_SOURCE
#include "http_testutil.h"
#include "common/perr.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* nt_server_start's step before the loop runs: the HTTP door on it. */
static int attach_http(net_server *srv, void *arg) {
    ht_server *s = arg;
    return http_server_new(srv, s->db, "127.0.0.1:0", &s->http);
}

int ht_start(ht_server *s, eng_db *db, net_server_opts *o) {
    memset(s, 0, sizeof *s);
    s->db = db;
    int rc = nt_server_start_with(&s->n, db, o, attach_http, s);
    if (rc) {
        http_server_free(s->http);
        s->http = NULL;
        return rc;
    }
    s->http_port = http_server_port(s->http);
    return PERR_OK;
}

void ht_stop(ht_server *s) {
    if (!s->n.srv) return;
    net_server_stop(s->n.srv);
    pthread_join(s->n.th, NULL);
    http_server_free(s->http);
    net_server_free(s->n.srv);
    s->n.srv = NULL;
}

static __thread CURL *curl; /* one kept-alive handle per thread */
int ht_h2;

static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
    ht_resp *r = u;
    size_t k = sz * n;
    char *b = realloc(r->body, r->len + k + 1);
    if (!b) return 0;
    memcpy(b + r->len, p, k);
    r->body = b;
    r->len += k;
    b[r->len] = 0;
    return k;
}

static void hdr_copy(const char *line, size_t n, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) || line[nl] != ':') return;
    const char *v = line + nl + 1;
    size_t vn = n - nl - 1;
    while (vn && (*v == ' ')) { v++; vn--; }
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n')) vn--;
    if (vn >= cap) vn = cap - 1;
    memcpy(out, v, vn);
    out[vn] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u) {
    ht_resp *r = u;
    hdr_copy(p, sz * n, "content-type", r->ctype, sizeof r->ctype);
    hdr_copy(p, sz * n, "allow", r->allow, sizeof r->allow);
    hdr_copy(p, sz * n, "www-authenticate", r->www_auth, sizeof r->www_auth);
    hdr_copy(p, sz * n, "retry-after", r->retry_after, sizeof r->retry_after);
    return sz * n;
}

int ht_req(int port, const char *method, const char *path, const char *ctype, const void *body, size_t len,
           const char *token, ht_resp *r) {
    memset(r, 0, sizeof *r);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, global_init);
    if (!curl) curl = curl_easy_init();
    curl_easy_reset(curl);
    char url[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD")) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    struct curl_slist *h = NULL;
    char tmp[512];
    if (ctype) { snprintf(tmp, sizeof tmp, "Content-Type: %s", ctype); h = curl_slist_append(h, tmp); }
    if (token) { snprintf(tmp, sizeof tmp, "Authorization: Bearer %s", token); h = curl_slist_append(h, tmp); }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
    if (ht_h2) curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    CURLcode c = curl_easy_perform(curl);
    curl_slist_free_all(h);
    if (c != CURLE_OK) { fprintf(stderr, "curl %s %s: %s\n", method, path, curl_easy_strerror(c)); return -1; }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
    long v = 0;
    curl_easy_getinfo(curl, CURLINFO_HTTP_VERSION, &v);
    r->version = v == CURL_HTTP_VERSION_2_0 ? 2 : 1;
    if (!r->body) r->body = calloc(1, 1);
    if (!strncmp(r->ctype, "application/json", 16)) r->json = cJSON_ParseWithLength(r->body, r->len);
    return 0;
}

void ht_resp_free(ht_resp *r) {
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

const char *ht_error(const ht_resp *r) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    return cJSON_IsString(e) ? e->valuestring : "";
}

void ht_thread_fini(void) {
    if (curl) { curl_easy_cleanup(curl); curl = NULL; }
}

void ht_fini(void) {
    ht_thread_fini();
    curl_global_cleanup();
}
