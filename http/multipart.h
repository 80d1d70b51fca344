/* http_multipart: a bounded multipart/form-data reader (RFC 7578) over a
 * complete body in memory. Not HTTP parsing (H2O does that): only the body
 * of a form upload, split at its boundary into parts with their
 * Content-Disposition name and filename. Every length is checked against
 * the body; at most HTTP_MP_MAX_PARTS parts, each header block at most
 * 8 KiB. Parts point into the body. Pure, thread-safe.
 */
#ifndef PERCEPT_HTTP_MULTIPART_H
#define PERCEPT_HTTP_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MP_MAX_PARTS 1024

typedef struct http_part {
    char name[256];              /* form field name ("" when absent) */
    char filename[256];          /* "" when not a file */
    int has_filename;
    char content_type[128];
    const uint8_t *data;
    size_t len;
} http_part;

/* The boundary parameter of a Content-Type header value (copied into out);
 * PERR_INVALID when absent or longer than 70 characters (RFC 2046). */
int http_mp_boundary(const char *content_type, char *out, size_t cap);
/* Splits body into parts (*parts malloc'd, *n entries). PERR_FORMAT with
 * the byte offset on a malformed body, PERR_TOO_LARGE over the limits. */
int http_mp_parse(const uint8_t *body, size_t len, const char *boundary, http_part **parts, int *n);

#endif
