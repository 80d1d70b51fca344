/* pc: the synchronous C client of the percept server (docs/protocol.md).
 *
 * One pc_client is one connection; calls block until the response arrives.
 * Errors use the same perr codes as the engine: a server error response
 * returns its code with its message in perr_msg(); network failures are
 * PERR_NET, a malformed response PERR_PROTOCOL. Results use the engine's
 * result types (eng_results, eng_item) and are freed with their engine
 * functions, so code written against embedded mode prints identically.
 *
 * Thread safety: a pc_client is used by one thread at a time; use one
 * client per thread (or pipeline with pc_send / pc_recv).
 */
#ifndef PERCEPT_NET_CLIENT_H
#define PERCEPT_NET_CLIENT_H

#include "engine/eng.h"
#include "net/proto.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pc_client pc_client;

/* addr: "HOST:PORT", "[V6]:PORT" or "unix:/path". token: NULL when the
 * server needs none. Connects and sends HELLO (version negotiation, auth). */
int pc_connect(const char *addr, const char *token, pc_client **out);
void pc_close(pc_client *c);
/* For the CLI's --server: the token from token_file (first line, trimmed)
 * when given, else $PERCEPT_TOKEN when set, else none. */
int pc_connect_cli(const char *addr, const char *token_file, pc_client **out);
/* Reads a whole (media) file for upload, at most max bytes; caller frees. */
int pc_read_file(const char *path, size_t max, void **data, size_t *len);
/* Model dimension and name announced by HELLO. */
int pc_dim(pc_client *c);
const char *pc_model(pc_client *c);
/* Seconds to wait for a response (default 0: forever). */
void pc_set_timeout(pc_client *c, int seconds);

/* Raw frames (pipelining): pc_send queues one request and returns its id;
 * pc_recv reads the next response, whichever it is. *payload is malloc'd
 * (caller frees); flags tell an error response (NET_F_ERROR). */
int pc_send(pc_client *c, int op, const void *payload, size_t len, uint64_t *id);
int pc_recv(pc_client *c, net_header *h, uint8_t **payload);
/* Send + receive the matching response; an error response becomes its
 * code and message. *resp may be NULL when the caller ignores it. */
int pc_call(pc_client *c, int op, const void *payload, size_t len, uint8_t **resp, size_t *resp_len);

int pc_ping(pc_client *c);

/* Searches: q as for the engine (collections, labels, where, k, min_score,
 * include_self). *out freed with eng_results_free. */
int pc_search_text(pc_client *c, const char *text, const eng_query *q, eng_results **out);
int pc_search_vector(pc_client *c, const float *v, int dim, const eng_query *q, eng_results **out);
int pc_search_image(pc_client *c, const void *data, size_t len, const eng_query *q, eng_results **out);
int pc_search_id(pc_client *c, uint64_t id, const eng_query *q, eng_results **out);

typedef struct pc_ingest_opts {
    const char *collection;     /* NULL: "default" */
    const char *uri;            /* recorded source name (bytes only) */
    const char *const *labels; int n_labels;
    const eng_kv *meta; int n_meta;
    const eng_video_opts *video;/* NULL: the server's; else its frames,
                                   segment_s and segment_frames are sent */
} pc_ingest_opts;

/* Media bytes uploaded, or a path the server reads itself. */
int pc_ingest_bytes(pc_client *c, const void *data, size_t len, const pc_ingest_opts *o,
                    uint64_t *id, eng_outcome *outcome);
int pc_ingest_path(pc_client *c, const char *path, const pc_ingest_opts *o, uint64_t *id,
                   eng_outcome *outcome);

/* *out freed with eng_item_free. */
int pc_get(pc_client *c, uint64_t id, int with_vector, eng_item **out);
/* The item's thumbnail (segment < 0) or its video segment's, as
 * eng_get_thumbnail gives it on the server (GET with "thumbnail"): out
 * cleared with eng_thumb_clear. PERR_NOT_FOUND when there is none. */
int pc_get_thumbnail(pc_client *c, uint64_t id, int segment, eng_thumb *out);
int pc_delete(pc_client *c, const uint64_t *ids, int n, int *n_removed);
int pc_label(pc_client *c, const char *label, const uint64_t *ids, int n, int remove);

/* out: pc_dim(c) floats. */
int pc_embed_text(pc_client *c, const char *text, float *out);
int pc_embed_image(pc_client *c, const void *data, size_t len, float *out);

/* probs: n floats. */
int pc_classify(pc_client *c, const void *data, size_t len, const char *const *labels, int n,
                const char *prompt, float *probs);
/* threshold NAN: each set's stored one. *out freed with eng_mod_result_free. */
int pc_moderate_image(pc_client *c, const void *data, size_t len, const char *const *sets, int n_sets,
                      float threshold, int k, eng_mod_result **out);

/* Collections: *out malloc'd (caller frees). */
int pc_collection_list(pc_client *c, eng_collection_info **out, int *n);
int pc_collection_create(pc_client *c, const char *name, const char *factory);
int pc_collection_drop(pc_client *c, const char *name);
/* A moderation set's stored threshold ("collection" or "collection:label"). */
int pc_set_threshold(pc_client *c, const char *set, float threshold);

int pc_stats(pc_client *c, eng_stats *out, eng_info *info);

/* Every item of a collection (NULL: all), in eng_foreach's order, paged
 * through EXPORT; fn's non-zero return stops and is returned. */
typedef int (*pc_item_fn)(void *user, const eng_item *it);
int pc_export(pc_client *c, const char *collection, int with_vector, pc_item_fn fn, void *user);
/* *out freed with eng_dups_free. */
int pc_dups(pc_client *c, const char *collection, eng_dup_tier tier, float threshold, eng_dups **out);
int pc_snapshot(pc_client *c);

#endif
