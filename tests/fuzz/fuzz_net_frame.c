/* Fuzz target: the server's untrusted-input path without the engine.
 * The input is a byte stream as a client would send it; it is fed to the
 * incremental frame parser in chunks whose sizes come from the input
 * itself, and every complete frame's payload goes through the bounded
 * MessagePack pre-check, msgpack-c's unpacker and every field getter the
 * request decoders use. */
#include "common/perr.h"
#include "net/mp.h"
#include "net/proto.h"

#include <stdlib.h>
#include <string.h>

static void payload(const uint8_t *p, size_t len) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    if (net_mp_unpack(p, len, &u, &o) == PERR_OK) {
        net_arena a = {0};
        const char *s;
        const char **l;
        int n, i;
        uint64_t u64, *ids;
        float f;
        const void *b;
        size_t bl;
        net_kv *kv;
        static const char *const keys[] = {"text", "k", "labels", "where", "ids", "image", "vector", "min_score", "id"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            net_mp_str(o, keys[k], &a, &s);
            net_mp_int(o, keys[k], &i);
            net_mp_u64(o, keys[k], &u64);
            net_mp_float(o, keys[k], &f, NULL);
            net_mp_bool(o, keys[k], &i);
            net_mp_bin(o, keys[k], &b, &bl);
            net_mp_strs(o, keys[k], &a, 64, &l, &n);
            net_mp_u64s(o, keys[k], &a, 64, &ids, &n);
            net_mp_kvs(o, keys[k], &a, 64, &kv, &n);
        }
        net_arena_free(&a);
    }
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Reassemble like the server: a growing buffer fed in chunks. */
    uint8_t *buf = malloc(size + 1);
    size_t have = 0, fed = 0, chunk = size ? (data[0] % 7) + 1 : 1;
    while (fed < size) {
        size_t n = size - fed < chunk ? size - fed : chunk;
        memcpy(buf + have, data + fed, n);
        have += n;
        fed += n;
        for (;;) {
            net_header h;
            size_t need;
            long r = net_frame_parse(buf, have, 1 << 16, &h, &need);
            if (r < 0) { free(buf); return 0; }  /* connection closed */
            if (r == 0) break;
            payload(buf + NET_HEADER_SIZE, h.length);
            memmove(buf, buf + r, have - (size_t)r);
            have -= (size_t)r;
        }
        chunk = chunk * 3 % 61 + 1;
    }
    free(buf);
    return 0;
}
