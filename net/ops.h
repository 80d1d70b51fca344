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

typedef struct net_op_ctx {
    eng_db *db;
    /* STATS: packs the server's own metrics as the value of "server"
     * (called on the worker thread; must lock what it reads). */
    void (*pack_server_stats)(void *user, msgpack_packer *pk);
    void *user;
} net_op_ctx;

/* Runs op with its payload; on success the response payload is packed into
 * pk. On failure returns the perr code with the message set, and whatever
 * was packed must be discarded. */
int net_op_run(const net_op_ctx *c, int op, const uint8_t *payload, size_t len, msgpack_packer *pk);

/* Packs an error payload {code, name, message}. */
void net_pack_error(msgpack_packer *pk, int code, const char *message);

/* Shared with the client: how hits and items are laid out. */
void net_pack_hit(msgpack_packer *pk, const eng_hit *h);
void net_pack_results(msgpack_packer *pk, const eng_results *r);
void net_pack_item(msgpack_packer *pk, const eng_item *it);

#endif
