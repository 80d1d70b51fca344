/* http_web: the search page and item thumbnails over HTTP.
 *
 * DESIGN. The page is three static files (web/index.html, app.js, app.css)
 * compiled into the binary (http_embed in CMakeLists.txt) and served from
 * the loop thread; everything it shows comes from the JSON routes through
 * fetch() with the user's token, and every value lands in the DOM through
 * textContent / attributes, never as markup. The Content-Security-Policy
 * allows scripts, styles, requests and images from this origin only (plus
 * blob: images, the thumbnails fetched with the token), no inline script or
 * style, no frames, no forms posting elsewhere. Thumbnails are the stored
 * ones (eng_get_thumbnail: made from the item's file when none is stored);
 * a missing one is a 404 the page draws as an empty tile.
 */
#define _GNU_SOURCE
#include "http/ops.h"
#include "common/perr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const unsigned char http_web_index_html[], http_web_app_js[], http_web_app_css[];
extern const size_t http_web_index_html_len, http_web_app_js_len, http_web_app_css_len;

#define WEB_CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " \
                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static int security_headers(http_resp *rs) {
    int rc = http_resp_header(rs, "content-security-policy", WEB_CSP);
    if (!rc) rc = http_resp_header(rs, "x-content-type-options", "nosniff");
    if (!rc) rc = http_resp_header(rs, "referrer-policy", "no-referrer");
    return rc;
}

int http_h_page(const http_env *e, const http_req *rq, http_resp *rs) {
    (void)e;
    const unsigned char *b = http_web_index_html;
    size_t n = http_web_index_html_len;
    const char *ct = "text/html; charset=utf-8";
    if (!strcmp(rq->path, "/app.js")) b = http_web_app_js, n = http_web_app_js_len, ct = "text/javascript; charset=utf-8";
    else if (!strcmp(rq->path, "/app.css")) b = http_web_app_css, n = http_web_app_css_len, ct = "text/css; charset=utf-8";
    int rc = http_resp_set(rs, 200, ct, b, n);
    if (!rc) rc = security_headers(rs);
    if (!rc) rc = http_resp_header(rs, "cache-control", "no-cache");
    return rc;
}

/* ?segment=N (a video segment's thumbnail); anything else is ignored. */
static int query_segment(const char *q, int *seg) {
    *seg = -1;
    for (const char *p = q; p && *p;) {
        if (!strncmp(p, "segment=", 8)) {
            char *end = NULL;
            long v = strtol(p + 8, &end, 10);
            if (end == p + 8 || (*end && *end != '&') || v < 0 || v > 65535)
                return perr_set(PERR_INVALID, "segment: \"%.20s\" is not 0..65535", p + 8);
            *seg = (int)v;
        }
        p = strchr(p, '&');
        if (p) p++;
    }
    return PERR_OK;
}

int http_h_thumbnail(const http_env *e, const http_req *rq, http_resp *rs) {
    uint64_t id = 0;
    int seg = -1;
    int rc = http_parse_id(rq->params[0], &id);
    if (!rc) rc = query_segment(rq->query, &seg);
    if (rc) return rc;
    eng_thumb t;
    rc = eng_get_thumbnail(e->db, id, seg, &t);
    if (rc) return rc;
    /* the bytes are taken by the response; content type: a static string */
    const char *ct = !strcmp(t.mime, "image/jpeg") ? "image/jpeg" : "image/webp";
    rc = http_resp_take(rs, 200, ct, t.data, t.len);
    t.data = NULL;
    if (!rc) rc = http_resp_header(rs, "x-content-type-options", "nosniff");
    /* ids are never reused and a stored thumbnail never changes */
    if (!rc) rc = http_resp_header(rs, "cache-control", t.stored ? "private, max-age=86400" : "private, no-cache");
    eng_thumb_clear(&t);
    return rc;
}
