/* html: result pages (see html.h).
 *
 * DESIGN: the page is written in one pass to FILE.tmp and renamed over FILE.
 * Everything that comes from the database or the command line goes through
 * put_text/put_attr, which escape HTML metacharacters and replace bytes that
 * are not valid UTF-8 (paths are arbitrary bytes) or are control characters
 * with U+FFFD, so the page is always well-formed UTF-8. Thumbnails are the
 * only binary content: JPEG from pe_image_thumbnail_jpeg, base64 through
 * OpenSSL's EVP_EncodeBlock. Never references anything outside the file
 * (no URLs, no file:// links, no scripts), so the page can be mailed or
 * opened anywhere and still shows everything. Thumbnails are made first, in
 * parallel (one thread per core, at most 8: decoding a 4K wallpaper takes
 * about a second), then the page is written in hit order. */
#define _GNU_SOURCE
#include "cli/html.h"
#include "common/perr.h"
#include "encoder/pe_image.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One picture to make: the data URI, or why there is none. */
typedef struct thumb {
    const char *path;
    char *uri;
    char why[512];
} thumb;

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Escaped text: valid for element content and for quoted attribute values. */
static void put_text(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t n = strlen((const char *)s);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        switch (c) {
        case '&': fputs("&amp;", f); i++; continue;
        case '<': fputs("&lt;", f); i++; continue;
        case '>': fputs("&gt;", f); i++; continue;
        case '"': fputs("&quot;", f); i++; continue;
        case '\'': fputs("&#39;", f); i++; continue;
        default: break;
        }
        if (c < 0x20 || c == 0x7F) {
            fputs(c == '\t' ? " " : "\xEF\xBF\xBD", f);
            i++;
            continue;
        }
        size_t len = utf8_len(s + i, n - i);
        if (len == 0) { fputs("\xEF\xBF\xBD", f); i++; continue; }
        fwrite(s + i, 1, len, f);
        i += len;
    }
}

/* A data: URI with a JPEG thumbnail of path, or the reason there is none
 * (*why, static or perr text copied into why_buf). */
static char *thumb_uri(const char *path, char *why_buf, size_t why_cap) {
    void *jpeg = NULL;
    size_t len = 0;
    int rc = pe_image_thumbnail_jpeg(path, HTML_THUMB_SIDE, &jpeg, &len);
    if (rc) {
        snprintf(why_buf, why_cap, "%s", perr_msg()[0] ? perr_msg() : perr_str(rc));
        return NULL;
    }
    static const char prefix[] = "data:image/jpeg;base64,";
    size_t b64 = 4 * ((len + 2) / 3);
    char *uri = malloc(sizeof prefix + b64 + 1);
    if (!uri) {
        free(jpeg);
        snprintf(why_buf, why_cap, "out of memory for a thumbnail");
        return NULL;
    }
    memcpy(uri, prefix, sizeof prefix - 1);
    EVP_EncodeBlock((unsigned char *)uri + sizeof prefix - 1, jpeg, (int)len);
    free(jpeg);
    return uri;
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}"
    "h1{font-size:1.3em;margin:0 0 .3em}"
    ".meta{color:#666;margin:0 0 1em}"
    ".query .thumb{width:272px;margin-bottom:1em}"
    "ol.results{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:14px}"
    "li.hit{width:272px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}"
    "li.hit figure{margin:0}"
    ".thumb{height:256px;display:flex;align-items:center;justify-content:center;background:#eee}"
    ".thumb img{max-width:256px;max-height:256px}"
    ".nothumb{color:#a33;font-size:12px;padding:1em;overflow-wrap:anywhere}"
    "figcaption{margin-top:6px}"
    ".rank{font-weight:bold;margin-right:.4em}"
    ".score{font-family:monospace;font-size:1.1em}"
    ".id,.coll{color:#555;margin-left:.6em}"
    ".uri{font-family:monospace;font-size:12px;overflow-wrap:anywhere;color:#333}"
    ".labels span{display:inline-block;background:#e6eefc;border-radius:3px;padding:0 4px;margin:2px 2px 0 0;font-size:12px}"
    ".time{color:#555;font-size:12px}";

static void make_thumb(thumb *t) {
    if (!t->path || !*t->path) snprintf(t->why, sizeof t->why, "no file path stored");
    else t->uri = thumb_uri(t->path, t->why, sizeof t->why);
}

typedef struct thumb_job {
    thumb *t;
    int n;
    atomic_int next;
} thumb_job;

static void *thumb_worker(void *arg) {
    thumb_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) make_thumb(&j->t[i]);
    return NULL;
}

/* Fills every t[i]; falls back to this thread when threads cannot start. */
static void make_thumbs(thumb *t, int n) {
    thumb_job j = {t, n, 0};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = (int)(cores < 1 ? 1 : cores > 8 ? 8 : cores);
    if (nt > n) nt = n;
    pthread_t th[8];
    int started = 0;
    for (int i = 1; i < nt; i++) {
        if (pthread_create(&th[started], NULL, thumb_worker, &j) != 0) break;
        started++;
    }
    thumb_worker(&j);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

static void put_thumb(FILE *f, const thumb *t, const char *alt) {
    fputs("<div class=\"thumb\">", f);
    if (t->uri) {
        fprintf(f, "<img alt=\"");
        put_text(f, alt);
        fprintf(f, "\" src=\"%s\">", t->uri);
    } else {
        fputs("<div class=\"nothumb\">no preview: ", f);
        put_text(f, t->why);
        fputs("</div>", f);
    }
    fputs("</div>", f);
}

/* t: n hits' thumbnails, then the query image's when it is an image query. */
static void put_page(FILE *f, const html_query *q, const eng_results *res, const thumb *t) {
    const char *kind = q && q->kind ? q->kind : "query";
    const char *value = q && q->value ? q->value : "";
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
    fputs("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n", f);
    fputs("<meta name=\"generator\" content=\"percept search --html\">\n<title>percept: ", f);
    put_text(f, kind);
    fputs(" ", f);
    put_text(f, value);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n", style);
    fputs("<h1 class=\"query\" data-kind=\"", f);
    put_text(f, kind);
    fputs("\">", f);
    put_text(f, kind);
    fputs(": <q>", f);
    put_text(f, value);
    fputs("</q></h1>\n", f);
    int n = res ? res->n : 0;
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(f, "<p class=\"meta\" id=\"summary\" data-count=\"%d\">%d result%s, cosine scores, best first", n, n,
            n == 1 ? "" : "s");
    if (q && q->source) {
        fputs(" &middot; ", f);
        put_text(f, q->source);
    }
    fprintf(f, " &middot; %s</p>\n", when);
    if (q && q->kind && !strcmp(q->kind, "image") && q->value) {
        fputs("<div class=\"query\">", f);
        put_thumb(f, &t[n], "query image");
        fputs("</div>\n", f);
    }
    if (n == 0) fputs("<p class=\"empty\">no results</p>\n", f);
    fputs("<ol class=\"results\">\n", f);
    for (int i = 0; i < n; i++) {
        const eng_hit *h = &res->hits[i];
        fprintf(f, "<li class=\"hit\" id=\"hit-%llu\" data-id=\"%llu\" data-rank=\"%d\" data-score=\"%.6f\">"
                   "<figure>",
                (unsigned long long)h->id, (unsigned long long)h->id, i + 1, (double)h->score);
        put_thumb(f, &t[i], h->uri ? h->uri : "");
        fprintf(f, "<figcaption><span class=\"rank\">%d.</span><span class=\"score\">%.4f</span>"
                   "<span class=\"id\">id %llu</span><span class=\"coll\">",
                i + 1, (double)h->score, (unsigned long long)h->id);
        put_text(f, h->collection);
        fputs("</span>", f);
        if (h->start_s >= 0) fprintf(f, "<div class=\"time\">%.2f s &ndash; %.2f s</div>", h->start_s, h->end_s);
        fputs("<div class=\"uri\">", f);
        put_text(f, h->uri);
        fputs("</div>", f);
        if (h->n_labels > 0) {
            fputs("<div class=\"labels\">", f);
            for (int l = 0; l < h->n_labels; l++) {
                fputs("<span>", f);
                put_text(f, h->labels[l]);
                fputs("</span>", f);
            }
            fputs("</div>", f);
        }
        fputs("</figcaption></figure></li>\n", f);
    }
    fputs("</ol>\n</body>\n</html>\n", f);
}

int html_write_results(const char *path, const html_query *q, const eng_results *res) {
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) return perr_set(PERR_NOMEM, "%s", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = perr_errno(errno, "%s", tmp);
        free(tmp);
        return rc;
    }
    int n = res ? res->n : 0;
    thumb *t = calloc((size_t)n + 1, sizeof *t);
    if (!t) {
        fclose(f);
        unlink(tmp);
        free(tmp);
        return perr_set(PERR_NOMEM, "%s: thumbnails", path);
    }
    for (int i = 0; i < n; i++) t[i].path = res->hits[i].uri;
    int with_query = q && q->kind && !strcmp(q->kind, "image") && q->value;
    if (with_query) t[n].path = q->value;
    make_thumbs(t, n + with_query);
    put_page(f, q, res, t);
    for (int i = 0; i <= n; i++) free(t[i].uri);
    free(t);
    perr_clear();
    int rc = PERR_OK;
    if (ferror(f)) rc = perr_set(PERR_IO, "%s: write failed", tmp);
    if (fclose(f) != 0 && rc == PERR_OK) rc = perr_errno(errno, "%s", tmp);
    if (rc == PERR_OK && rename(tmp, path) != 0) rc = perr_errno(errno, "%s -> %s", tmp, path);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}
