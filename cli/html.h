/* html: self-contained result pages for `percept search --html FILE`.
 *
 * One HTML file per query: every hit as a thumbnail (JPEG, base64 data URI,
 * made from the item's local file with pe_image_thumbnail_jpeg) with its
 * rank, score, id, collection, path and labels. No external resources, no
 * scripts; every string from the database is HTML-escaped. A hit whose file
 * cannot be thumbnailed here (moved, a video, on another machine) gets a
 * placeholder naming the reason instead of an image. Not thread-safe
 * (perr messages). */
#ifndef PERCEPT_CLI_HTML_H
#define PERCEPT_CLI_HTML_H

#include "engine/eng.h"

/* What was asked, for the page heading. kind: "text", "image", "id" or
 * "vector"; value: the text, image path, id or vector file. For "image" the
 * query image itself is shown too. source: "--db DIR" or "--server H:P"
 * (may be NULL). */
typedef struct html_query {
    const char *kind;
    const char *value;
    const char *source;
} html_query;

/* Thumbnails' longest side in pixels. */
enum { HTML_THUMB_SIDE = 256 };

/* Writes the page to path (through path.tmp + rename, so a reader never
 * sees half a page). Returns a perr code naming the file on failure. */
int html_write_results(const char *path, const html_query *q, const eng_results *res);

#endif
