/* net_proto: the percept wire protocol (docs/protocol.md), shared by the
 * server (net/server.c) and the client library (net/client.c).
 *
 * A frame is a fixed 20-byte little-endian header followed by a MessagePack
 * payload:
 *
 *   offset size field
 *   0      4    magic        "PCPT" (bytes 0x50 0x43 0x50 0x54)
 *   4      1    version      protocol version of this frame (1)
 *   5      1    opcode       NET_OP_*
 *   6      2    flags        NET_F_* (bit 0: response, bit 1: error)
 *   8      8    request id   chosen by the client; echoed in the response
 *   16     4    length       payload bytes that follow
 *
 * Everything here is pure (no I/O, no globals) and thread-safe.
 */
#ifndef PERCEPT_NET_PROTO_H
#define PERCEPT_NET_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define NET_MAGIC 0x54504350u           /* "PCPT" read as a little-endian u32 */
#define NET_VERSION 1
#define NET_HEADER_SIZE 20
#define NET_MAX_FRAME_DEFAULT ((uint32_t)64 << 20)  /* payload bytes */
#define NET_DEFAULT_PORT 7700

/* Flags. */
#define NET_F_RESPONSE 0x0001
#define NET_F_ERROR 0x0002

/* X(name, value) */
#define NET_OP_MAP(X)      \
    X(HELLO, 0x01)         \
    X(PING, 0x02)          \
    X(INGEST, 0x10)        \
    X(SEARCH, 0x11)        \
    X(CLASSIFY, 0x12)      \
    X(MODERATE, 0x13)      \
    X(GET, 0x14)           \
    X(DELETE, 0x15)        \
    X(LABEL, 0x16)         \
    X(EMBED, 0x17)         \
    X(COLLECTIONS, 0x18)   \
    X(STATS, 0x19)         \
    X(SNAPSHOT, 0x1A)      \
    X(EXPORT, 0x1B)        \
    X(DUPS, 0x1C)

enum {
#define NET_OP_ENUM_(n, v) NET_OP_##n = v,
    NET_OP_MAP(NET_OP_ENUM_)
#undef NET_OP_ENUM_
};
#define NET_OP_MAX 0x1C

/* "SEARCH"; NULL for an unknown opcode. */
const char *net_op_name(int op);

typedef struct net_header {
    uint32_t magic;
    uint8_t version;
    uint8_t opcode;
    uint16_t flags;
    uint64_t id;
    uint32_t length;
} net_header;

void net_header_encode(const net_header *h, uint8_t out[NET_HEADER_SIZE]);

/* Incremental frame parser (picohttpparser style): looks at the bytes
 * received so far. Returns
 *   > 0  a whole frame is there: *h is filled and the return value is the
 *        frame size (header + payload), the payload at buf + NET_HEADER_SIZE;
 *   0    need more bytes (*need, when not NULL, gets the total frame size
 *        once the header is complete, else NET_HEADER_SIZE);
 *   < 0  a framing error: PERR_PROTOCOL (bad magic; *h all zero) or
 *        PERR_TOO_LARGE (length over max_payload; *h is the frame's
 *        header), message set. The stream cannot be resynchronised after it.
 * The declared length is checked against max_payload before anything is
 * allocated by the caller. An unknown opcode or version is not a framing
 * error: the frame is returned and the caller answers it with an error. */
long net_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, net_header *h,
                     size_t *need);

/* Checks that buf[0..len) holds exactly one well-formed MessagePack object
 * whose every declared length (str, bin, array, map, ext) fits in the bytes
 * that are there, nested at most max_depth deep, with at most max_objects
 * objects in all. Run before msgpack-c's unpacker so that a 5-byte "array
 * of 4 billion" cannot make it allocate (it spends 24 bytes per object).
 * PERR_FORMAT (PERR_TOO_LARGE for the object count) with the byte offset. */
int net_mp_check(const uint8_t *buf, size_t len, int max_depth, size_t max_objects);

#define NET_MP_MAX_DEPTH 16
#define NET_MP_MAX_OBJECTS ((size_t)1 << 20)

#endif
