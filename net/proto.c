/* net_proto: frame header codec, incremental frame parser and the bounded
 * MessagePack pre-check (see proto.h and docs/protocol.md).
 *
 * DESIGN: nothing here allocates or trusts a length before comparing it with
 * the bytes actually present and the configured maximum; these functions
 * are what the fuzz target (tests/fuzz/fuzz_net_frame.c) exercises.
 */
#include "net/proto.h"
#include "common/perr.h"

#include <string.h>

const char *net_op_name(int op) {
    switch (op) {
#define NET_OP_NAME_(n, v) case v: return #n;
        NET_OP_MAP(NET_OP_NAME_)
#undef NET_OP_NAME_
    default: return NULL;
    }
}

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get_le64(const uint8_t *p) { return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32); }

void net_header_encode(const net_header *h, uint8_t out[NET_HEADER_SIZE]) {
    put_le32(out, NET_MAGIC);
    out[4] = h->version;
    out[5] = h->opcode;
    put_le16(out + 6, h->flags);
    put_le64(out + 8, h->id);
    put_le32(out + 16, h->length);
}

long net_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, net_header *h,
                     size_t *need) {
    if (need) *need = NET_HEADER_SIZE;
    memset(h, 0, sizeof *h); /* never left holding an earlier frame's header */
    /* Reject a bad magic as soon as its bytes arrive, not after 20. */
    static const uint8_t magic[4] = {'P', 'C', 'P', 'T'};
    size_t m = len < 4 ? len : 4;
    if (memcmp(buf, magic, m) != 0)
        return perr_set(PERR_PROTOCOL, "bad frame magic (expected \"PCPT\")");
    if (len < NET_HEADER_SIZE) return 0;
    h->magic = NET_MAGIC;
    h->version = buf[4];
    h->opcode = buf[5];
    h->flags = get_le16(buf + 6);
    h->id = get_le64(buf + 8);
    h->length = get_le32(buf + 16);
    if (h->length > max_payload)
        return perr_set(PERR_TOO_LARGE, "frame payload of %u bytes exceeds the limit of %u bytes",
                        h->length, max_payload);
    size_t total = NET_HEADER_SIZE + (size_t)h->length;
    if (need) *need = total;
    if (len < total) return 0;
    return (long)total;
}

/* ---- MessagePack pre-check ---------------------------------------------- */

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

int net_mp_check(const uint8_t *buf, size_t len, int max_depth, size_t max_objects) {
    /* pending[d]: objects still to read at depth d (a map counts 2 per entry). */
    uint64_t pending[64];
    if (max_depth > 63) max_depth = 63;
    int depth = 0;
    pending[0] = 1;
    size_t off = 0, objects = 0;
    while (depth >= 0) {
        if (pending[depth] == 0) { depth--; continue; }
        pending[depth]--;
        if (off >= len) return perr_set(PERR_FORMAT, "MessagePack truncated at byte %zu", off);
        if (++objects > max_objects)
            return perr_set(PERR_TOO_LARGE, "MessagePack payload has more than %zu objects", max_objects);
        uint8_t b = buf[off];
        size_t at = off++;
        uint64_t skip = 0, children = 0;  /* bytes to skip, children to read */
        int lenbytes = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) children = 2u * (b & 0x0f);
        else if (b >= 0x90 && b <= 0x9f) children = b & 0x0f;
        else if (b >= 0xa0 && b <= 0xbf) skip = b & 0x1f;
        else switch (b) {
        case 0xc4: case 0xd9: lenbytes = 1; break;   /* bin8, str8 */
        case 0xc5: case 0xda: lenbytes = 2; break;
        case 0xc6: case 0xdb: lenbytes = 4; break;
        case 0xc7: lenbytes = 1; skip = 1; break;    /* ext8: len, type */
        case 0xc8: lenbytes = 2; skip = 1; break;
        case 0xc9: lenbytes = 4; skip = 1; break;
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break;                  /* fixext: type + data */
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: case 0xdd: case 0xde: case 0xdf: {
            int n = (b == 0xdc || b == 0xde) ? 2 : 4;
            if (len - off < (size_t)n) return perr_set(PERR_FORMAT, "MessagePack truncated at byte %zu", off);
            children = be(buf + off, n) * ((b >= 0xde) ? 2 : 1);
            off += (size_t)n;
            break;
        }
        default:
            return perr_set(PERR_FORMAT, "MessagePack: invalid type byte 0x%02x at byte %zu", b, at);
        }
        if (lenbytes) {
            if (len - off < (size_t)lenbytes) return perr_set(PERR_FORMAT, "MessagePack truncated at byte %zu", off);
            skip += be(buf + off, lenbytes);
            off += (size_t)lenbytes;
        }
        if (skip > len - off)
            return perr_set(PERR_FORMAT, "MessagePack: object at byte %zu declares %llu bytes, %zu remain",
                            at, (unsigned long long)skip, len - off);
        off += skip;
        if (children) {
            /* Each child takes at least one byte: a count larger than what
             * remains is a lie, refused before anyone allocates for it. */
            if (children > len - off)
                return perr_set(PERR_FORMAT, "MessagePack: container at byte %zu declares %llu objects, %zu bytes remain",
                                at, (unsigned long long)children, len - off);
            if (depth + 1 > max_depth)
                return perr_set(PERR_FORMAT, "MessagePack nested deeper than %d at byte %zu", max_depth, at);
            pending[++depth] = children;
        }
    }
    if (off != len)
        return perr_set(PERR_FORMAT, "MessagePack: %zu trailing bytes after the object", len - off);
    return PERR_OK;
}
