/* Fuzz target: what the HTTP door parses itself (H2O parses HTTP). The
 * first input byte picks the parser: multipart/form-data bodies (boundary
 * "zz"), query strings, or JSON bodies into a request's fields, each then
 * packed as the binary payload a route would run; the rest of the input is
 * the body. Parts must lie inside the body. */
#include "common/perr.h"
#include "http/json.h"
#include "http/multipart.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 3;
    const uint8_t *b = data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        http_part *p = NULL;
        int np = 0;
        if (http_mp_parse(b, n, "zz", &p, &np) == PERR_OK)
            for (int i = 0; i < np; i++)
                if (p[i].data < b || p[i].data + p[i].len > b + n) abort();
        free(p);
        return 0;
    }
    char *s = malloc(n + 1);
    if (!s) return 0;
    memcpy(s, b, n);
    s[n] = 0;
    http_fields f;
    http_fields_init(&f);
    int rc;
    if (mode == 1) rc = http_fields_from_query(&f, s);
    else {
        cJSON *j = cJSON_ParseWithLength(s, n);
        rc = j ? http_fields_from_json(&f, j) : PERR_INVALID;
        cJSON_Delete(j);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    if (rc == PERR_OK && http_fields_pack(&f, &out, &len) == PERR_OK) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, (const char *)out, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) abort();
        http_buf jb = {0};
        http_mp_to_json(&u.data, NULL, &jb);
        http_buf_free(&jb);
        msgpack_unpacked_destroy(&u);
    }
    free(out);
    http_fields_free(&f);
    free(s);
    return 0;
}
