/* http_multipart: multipart/form-data bodies (multipart.h).
 *
 * DESIGN: the body is complete in memory (H2O buffers it, bounded by the
 * server's max frame), so parsing is a scan: find "--boundary", read the
 * part's header lines up to the blank line (bounded), then the data runs to
 * the next "\r\n--boundary". The closing delimiter "--boundary--" ends the
 * body; anything else where a delimiter must be is an error with its
 * offset. Header values are copied truncated into fixed fields.
 */
#define _GNU_SOURCE
#include "http/multipart.h"
#include "common/perr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADER_BLOCK 8192

int http_mp_boundary(const char *ct, char *out, size_t cap) {
    const char *p = ct;
    while ((p = strcasestr(p, "boundary=")) != NULL) {
        if (p == ct || p[-1] == ';' || p[-1] == ' ' || p[-1] == '\t') break;
        p += 9;
    }
    if (!p) return perr_set(PERR_INVALID, "multipart/form-data without a boundary parameter");
    p += 9;
    size_t n;
    if (*p == '"') {
        p++;
        const char *q = strchr(p, '"');
        if (!q) return perr_set(PERR_INVALID, "multipart boundary: unterminated quoted string");
        n = (size_t)(q - p);
    } else n = strcspn(p, "; \t");
    if (n == 0 || n > 70 || n >= cap) return perr_set(PERR_INVALID, "multipart boundary: %zu characters (1 to 70)", n);
    memcpy(out, p, n);
    out[n] = 0;
    return PERR_OK;
}

/* A parameter (name="..." or name=token) of a header value, copied. */
static void header_param(const char *v, size_t vn, const char *param, char *out, size_t cap, int *found) {
    size_t pl = strlen(param);
    for (size_t i = 0; i + pl < vn; i++) {
        if (strncasecmp(v + i, param, pl) || v[i + pl] != '=') continue;
        if (i && v[i - 1] != ';' && v[i - 1] != ' ' && v[i - 1] != '\t') continue;
        const char *s = v + i + pl + 1, *end = v + vn;
        size_t o = 0;
        if (s < end && *s == '"') {
            s++;
            while (s < end && *s != '"') {
                if (*s == '\\' && s + 1 < end) s++;
                if (o + 1 < cap) out[o++] = *s;
                s++;
            }
        } else {
            while (s < end && *s != ';' && *s != ' ' && *s != '\t') { if (o + 1 < cap) out[o++] = *s; s++; }
        }
        out[o] = 0;
        if (found) *found = 1;
        return;
    }
}

static int parse_headers(const uint8_t *h, size_t n, http_part *p) {
    size_t i = 0;
    while (i < n) {
        const uint8_t *eol = memmem(h + i, n - i, "\r\n", 2);
        size_t ln = eol ? (size_t)(eol - (h + i)) : n - i;
        const char *line = (const char *)h + i;
        const char *colon = memchr(line, ':', ln);
        if (colon) {
            size_t nn = (size_t)(colon - line);
            const char *v = colon + 1;
            size_t vn = ln - nn - 1;
            while (vn && (*v == ' ' || *v == '\t')) { v++; vn--; }
            if (nn == 19 && !strncasecmp(line, "Content-Disposition", 19)) {
                header_param(v, vn, "name", p->name, sizeof p->name, NULL);
                header_param(v, vn, "filename", p->filename, sizeof p->filename, &p->has_filename);
            } else if (nn == 12 && !strncasecmp(line, "Content-Type", 12)) {
                size_t c = vn < sizeof p->content_type - 1 ? vn : sizeof p->content_type - 1;
                memcpy(p->content_type, v, c);
                p->content_type[c] = 0;
            }
        }
        i += ln + 2;
    }
    return PERR_OK;
}

int http_mp_parse(const uint8_t *body, size_t len, const char *boundary, http_part **parts, int *np) {
    *parts = NULL;
    *np = 0;
    char delim[80];
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > 70) return perr_set(PERR_INVALID, "multipart boundary: %zu characters (1 to 70)", bl);
    delim[0] = '\r'; delim[1] = '\n'; delim[2] = '-'; delim[3] = '-';
    memcpy(delim + 4, boundary, bl);
    size_t dl = bl + 4;
    /* The first delimiter may start the body (no CRLF before it); a preamble is skipped. */
    size_t pos;
    if (len >= dl - 2 && !memcmp(body, delim + 2, dl - 2)) pos = dl - 2;
    else {
        const uint8_t *d = memmem(body, len, delim, dl);
        if (!d) return perr_set(PERR_FORMAT, "multipart body: no boundary \"%s\" found", boundary);
        pos = (size_t)(d - body) + dl;
    }
    http_part *v = NULL;
    int n = 0, cap = 0;
    for (;;) {
        /* after a delimiter: "--" (end) or CRLF then the part */
        if (len - pos >= 2 && body[pos] == '-' && body[pos + 1] == '-') break;
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t')) pos++; /* transport padding */
        if (len - pos < 2 || body[pos] != '\r' || body[pos + 1] != '\n') {
            free(v);
            return perr_set(PERR_FORMAT, "multipart body: byte %zu: expected CRLF or \"--\" after the boundary", pos);
        }
        pos += 2;
        size_t hl_max = len - pos < MAX_HEADER_BLOCK ? len - pos : MAX_HEADER_BLOCK;
        const uint8_t *hend;
        if (hl_max >= 2 && body[pos] == '\r' && body[pos + 1] == '\n') hend = body + pos; /* no headers */
        else {
            hend = memmem(body + pos, hl_max, "\r\n\r\n", 4);
            if (!hend) {
                free(v);
                return perr_set(len - pos > MAX_HEADER_BLOCK ? PERR_TOO_LARGE : PERR_FORMAT,
                                "multipart body: byte %zu: part headers not terminated within %d bytes", pos, MAX_HEADER_BLOCK);
            }
            hend += 2; /* points at the blank line's CRLF */
        }
        if (n == HTTP_MP_MAX_PARTS) { free(v); return perr_set(PERR_TOO_LARGE, "multipart body: more than %d parts", HTTP_MP_MAX_PARTS); }
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            http_part *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) { free(v); return perr_set(PERR_NOMEM, "multipart parts"); }
            v = nv;
        }
        http_part *p = &v[n];
        memset(p, 0, sizeof *p);
        parse_headers(body + pos, (size_t)(hend - (body + pos)), p);
        size_t data = (size_t)(hend - body) + 2;
        const uint8_t *d = memmem(body + data, len - data, delim, dl);
        if (!d) { free(v); return perr_set(PERR_FORMAT, "multipart body: byte %zu: part %d has no closing boundary", data, n); }
        p->data = body + data;
        p->len = (size_t)(d - (body + data));
        n++;
        pos = (size_t)(d - body) + dl;
    }
    *parts = v;
    *np = n;
    return PERR_OK;
}
