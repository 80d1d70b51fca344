/* net_ops: one request against the engine, on a worker thread.
 *
 * Decodes a request payload (bounded MessagePack, net/mp.h), calls the
 * engine (engine/eng.h, unchanged) and packs the response payload. The
 * event loop never calls this. Thread-safe as the engine is.
 */
#ifndef PERCEPT_NET_OPS_H
#define PERCEPT_NET_OPS_H

#include "engine/eng.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on request fields (docs/protocol.md, "Limits"). */
#define NET_MAX_K 4096
#define NET_MAX_LIST 1024          /* collections, labels, where, sets, ids per DELETE/LABEL */
#define NET_MAX_IDS 100000         /* ids in one DELETE or LABEL */
#define NET_MAX_CLASSES 1024       /* labels of one CLASSIFY */
#define NET_EXPORT_PAGE_BYTES ((size_t)16 << 20) /* an EXPORT page stops growing past this */

typedef struct net_op_ctx {
    eng_db *db;
    /* STATS: packs the server's own metrics as the value of "server"
     * (called on the worker thread; must lock what it reads). */
    void (*pack_server_stats)(void *user, msgpack_packer *pk);
    void *user;
    /* INGEST of uploaded bytes with group commit (eng_upload_commit): when
     * set, net_op_run decodes and encodes the upload on the calling thread,
     * queues it for the engine's committer and returns NET_OP_DEFERRED;
     * ingest_done(ingest_user, ...) then runs exactly once, from the
     * committer thread once the item's transaction committed (or from this
     * thread before net_op_run returns), and answers with net_pack_ingest
     * or the error. NULL: INGEST waits for its commit and packs into pk. */
    eng_upload_fn ingest_done;
    void *ingest_user;
} net_op_ctx;

#define NET_OP_DEFERRED 1

/* Runs op with its payload; on success the response payload is packed into
 * pk. On failure returns the perr code with the message set, and whatever
 * was packed must be discarded. NET_OP_DEFERRED: see ingest_done. */
int net_op_run(const net_op_ctx *c, int op, const uint8_t *payload, size_t len, msgpack_packer *pk);
/* The INGEST response payload {id, outcome}. */
void net_pack_ingest(msgpack_packer *pk, uint64_t id, eng_outcome outcome);

/* ---- coalescing (the server's batcher) -----------------------------------
 * A SEARCH by vector decoded once; searches of one shape (same collections,
 * k, min_score, labels, where) are answered together by eng_search_vectors,
 * each with exactly the payload net_op_run would have packed. */
typedef struct net_vsearch net_vsearch;

/* 1 and *out set when the payload is a well-formed SEARCH by vector; 0 for
 * anything else (which net_op_run then runs and answers, errors included). */
int net_vsearch_decode(eng_db *db, const uint8_t *payload, size_t len, net_vsearch **out);
int net_vsearch_same_shape(const net_vsearch *a, const net_vsearch *b);
/* Searches v[0..n) (one shape) as one batch; on success res[i] gets each
 * result (eng_results_free). On error nothing is set: run them one by one. */
int net_vsearch_batch(eng_db *db, net_vsearch *const *v, int n, eng_results **res);
/* The SEARCH response payload {hits: [...]}. */
void net_pack_search(msgpack_packer *pk, const eng_results *r);
void net_vsearch_free(net_vsearch *v);

/* Packs an error payload {code, name, message}. */
void net_pack_error(msgpack_packer *pk, int code, const char *message);

/* Shared with the client: how hits and items are laid out. */
void net_pack_hit(msgpack_packer *pk, const eng_hit *h);
void net_pack_results(msgpack_packer *pk, const eng_results *r);
void net_pack_item(msgpack_packer *pk, const eng_item *it);

#endif
