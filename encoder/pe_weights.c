/* pe_weights: PE_core checkpoint readers (safetensors, torch.save zip).
 *
 * DESIGN
 * Owns: the read-only mapping of one checkpoint file (or borrows a caller's
 * buffer), the tensor table that points into it, and the few copies made for
 * tensors whose data is not aligned to their element size.
 * Must never: execute or import anything a file names (the pickle reader is a
 * closed list of constructors, see pe_pickle below), trust any size, offset,
 * count or stride before checking it against the bytes actually present, or
 * allocate from a declared size that was not bounded first. Every error names
 * the file (label), the key or member, and the byte offset where it applies.
 *
 * Formats are recognised by content: "PK\3\4" -> torch.save zip; an 8-byte
 * little-endian length followed by '{' -> safetensors; the pre-1.6 legacy
 * torch pickle (starts with a pickle PROTO opcode) is recognised only to be
 * refused with a useful message.
 *
 * Byte order: both formats are little-endian, and so are the hosts we build
 * for (x86-64, aarch64); a big-endian build is refused at compile time.
 */
#define _GNU_SOURCE
#include "encoder/pe_weights.h"
#include "common/perr.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pe_weights reads little-endian checkpoints in place: big-endian hosts are not supported"
#endif

/* A safetensors JSON header larger than this is refused before parsing
 * (the real PE-Core-G14 header is ~100 KiB). */
#define PE_ST_MAX_HEADER   (100u << 20)
/* data.pkl larger than this is refused (G14's is a few hundred KiB). */
#define PE_PKL_MAX         (256u << 20)
/* At most this many tensors in one checkpoint. */
#define PE_MAX_TENSORS     1000000

struct pe_weights {
    char *label;                 /* file path or caller label, for messages */
    const uint8_t *base;         /* whole file */
    size_t size;
    void *map;                   /* mmap'd region (NULL for a caller buffer) */
    size_t map_len;
    const char *format;          /* "pt" / "safetensors" */
    pe_tensor *t;
    int n, cap;
    int *by_name;                /* indices of t sorted by name */
    void **copies;               /* realigned tensor copies we own */
    int n_copies, cap_copies;
    char **meta_k, **meta_v;     /* safetensors __metadata__ */
    int n_meta;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static size_t dtype_size(pe_dtype d) { return d == PE_DT_F32 ? 4 : 2; }

static const char *dtype_name(pe_dtype d) {
    switch (d) {
    case PE_DT_F32: return "float32";
    case PE_DT_F16: return "float16";
    case PE_DT_BF16: return "bfloat16";
    }
    return "?";
}

/* "module." removed everywhere in the key, as the official loader does with
 * k.replace('module.', ''). Returns a malloc'd string or NULL. */
static char *strip_module(const char *s, size_t len) {
    static const char pat[] = "module.";
    const size_t pl = sizeof pat - 1;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i + pl <= len && !memcmp(s + i, pat, pl)) { i += pl; continue; }
        out[o++] = s[i++];
    }
    out[o] = 0;
    return out;
}

/* numel of a shape with overflow check against the bytes a size_t and an
 * int64 can hold; dtype size included. 0 on overflow (negative dims are
 * refused by callers before). */
static bool shape_bytes(const int64_t *shape, int ndim, size_t esize, int64_t *numel, size_t *nbytes) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d && n > (uint64_t)INT64_MAX / d) return false;
        n *= d;
    }
    if (n > SIZE_MAX / esize || n > (uint64_t)INT64_MAX / esize) return false;
    *numel = (int64_t)n;
    *nbytes = (size_t)(n * esize);
    return true;
}

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = -1; i <= ndim && o < cap; i++) {
        int k = i < 0 ? snprintf(buf + o, cap - o, "[")
              : i == ndim ? snprintf(buf + o, cap - o, "]")
              : snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (k < 0) break;
        o += (size_t)k;
    }
}

/* Appends a tensor; takes ownership of name (freed on failure). data must
 * lie inside the file; it is copied when not aligned to the element size. */
static int add_tensor(pe_weights *w, char *name, pe_dtype dt, int ndim, const int64_t *shape,
                      int64_t numel, const void *data, size_t nbytes) {
    if (w->n >= PE_MAX_TENSORS) {
        free(name);
        return perr_set(PERR_TOO_LARGE, "more than %d tensors", PE_MAX_TENSORS);
    }
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 64;
        pe_tensor *t = realloc(w->t, (size_t)nc * sizeof *t);
        if (!t) { free(name); return perr_set(PERR_NOMEM, "tensor table"); }
        w->t = t;
        w->cap = nc;
    }
    if (((uintptr_t)data % dtype_size(dt)) != 0 && nbytes) {
        if (w->n_copies == w->cap_copies) {
            int nc = w->cap_copies ? w->cap_copies * 2 : 16;
            void **c = realloc(w->copies, (size_t)nc * sizeof *c);
            if (!c) { free(name); return perr_set(PERR_NOMEM, "tensor copies"); }
            w->copies = c;
            w->cap_copies = nc;
        }
        void *copy = malloc(nbytes);
        if (!copy) {
            int rc = perr_set(PERR_NOMEM, "copying unaligned tensor %s (%zu bytes)", name, nbytes);
            free(name);
            return rc;
        }
        memcpy(copy, data, nbytes);
        w->copies[w->n_copies++] = copy;
        data = copy;
    }
    pe_tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->data = data;
    t->nbytes = nbytes;
    return PERR_OK;
}

static _Thread_local const pe_weights *sort_ctx; /* qsort has no context arg */
static int cmp_by_name(const void *a, const void *b) {
    return strcmp(sort_ctx->t[*(const int *)a].name, sort_ctx->t[*(const int *)b].name);
}

/* Builds the name index and refuses duplicate names (two keys that become
 * equal after "module." removal, or a repeated JSON key). */
static int finish_index(pe_weights *w) {
    w->by_name = malloc((size_t)(w->n ? w->n : 1) * sizeof *w->by_name);
    if (!w->by_name) return perr_set(PERR_NOMEM, "tensor index");
    for (int i = 0; i < w->n; i++) w->by_name[i] = i;
    sort_ctx = w;
    qsort(w->by_name, (size_t)w->n, sizeof *w->by_name, cmp_by_name);
    sort_ctx = NULL;
    for (int i = 1; i < w->n; i++)
        if (!strcmp(w->t[w->by_name[i]].name, w->t[w->by_name[i - 1]].name))
            return perr_set(PERR_FORMAT, "duplicate tensor name '%s'", w->t[w->by_name[i]].name);
    return PERR_OK;
}

/* ------------------------------------------------------------------------ */
/* safetensors                                                               */
/* ------------------------------------------------------------------------ */

/* A JSON number that is an exact non-negative integer <= 2^53. */
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static int st_tensor(pe_weights *w, const cJSON *e, const uint8_t *data, size_t data_len) {
    const char *key = e->string;
    if (!cJSON_IsObject(e))
        return perr_set(PERR_FORMAT, "header entry '%s' is not an object", key);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return perr_set(PERR_FORMAT, "tensor '%s': needs string \"dtype\", array \"shape\" and array \"data_offsets\"", key);
    pe_dtype dt;
    if (!strcmp(jd->valuestring, "F32")) dt = PE_DT_F32;
    else if (!strcmp(jd->valuestring, "F16")) dt = PE_DT_F16;
    else if (!strcmp(jd->valuestring, "BF16")) dt = PE_DT_BF16;
    else return perr_set(PERR_UNSUPPORTED, "tensor '%s': dtype %.32s not supported (F32, F16, BF16 only)", key, jd->valuestring);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > PE_TENSOR_MAX_DIMS)
        return perr_set(PERR_UNSUPPORTED, "tensor '%s': %d dimensions (at most %d)", key, ndim, PE_TENSOR_MAX_DIMS);
    int64_t shape[PE_TENSOR_MAX_DIMS] = {0};
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, js) {
        uint64_t v;
        if (!json_uint(it, &v))
            return perr_set(PERR_FORMAT, "tensor '%s': shape[%d] is not a non-negative integer", key, i);
        shape[i++] = (int64_t)v;
    }
    uint64_t off[2];
    if (cJSON_GetArraySize(jo) != 2 || !json_uint(cJSON_GetArrayItem(jo, 0), &off[0]) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &off[1]))
        return perr_set(PERR_FORMAT, "tensor '%s': data_offsets must be two non-negative integers", key);
    int64_t numel;
    size_t nbytes;
    char sh[128];
    fmt_shape(sh, sizeof sh, shape, ndim);
    if (!shape_bytes(shape, ndim, dtype_size(dt), &numel, &nbytes))
        return perr_set(PERR_FORMAT, "tensor '%s': shape %s overflows", key, sh);
    if (off[0] > off[1] || off[1] > data_len)
        return perr_set(PERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] outside the data section of %zu bytes",
                        key, (unsigned long long)off[0], (unsigned long long)off[1], data_len);
    if (off[1] - off[0] != nbytes)
        return perr_set(PERR_FORMAT, "tensor '%s': shape %s of %s needs %zu bytes, data_offsets [%llu, %llu] give %llu",
                        key, sh, dtype_name(dt), nbytes, (unsigned long long)off[0],
                        (unsigned long long)off[1], (unsigned long long)(off[1] - off[0]));
    char *name = strip_module(key, strlen(key));
    if (!name) return perr_set(PERR_NOMEM, "tensor name");
    return add_tensor(w, name, dt, ndim, shape, numel, data + off[0], nbytes);
}

static int st_metadata(pe_weights *w, const cJSON *m) {
    /* cJSON keeps repeated keys: a second __metadata__ (found by fuzzing)
     * would otherwise be appended past the first one's arrays. */
    if (w->meta_k) return perr_set(PERR_FORMAT, "__metadata__ appears more than once");
    if (!cJSON_IsObject(m)) return perr_set(PERR_FORMAT, "__metadata__ is not an object");
    int n = cJSON_GetArraySize(m);
    w->meta_k = calloc((size_t)(n ? n : 1), sizeof *w->meta_k);
    w->meta_v = calloc((size_t)(n ? n : 1), sizeof *w->meta_v);
    if (!w->meta_k || !w->meta_v) return perr_set(PERR_NOMEM, "__metadata__");
    const cJSON *it;
    cJSON_ArrayForEach(it, m) {
        if (!cJSON_IsString(it))
            return perr_set(PERR_FORMAT, "__metadata__ value of '%s' is not a string", it->string);
        w->meta_k[w->n_meta] = strdup(it->string);
        w->meta_v[w->n_meta] = strdup(it->valuestring);
        w->n_meta++;
        if (!w->meta_k[w->n_meta - 1] || !w->meta_v[w->n_meta - 1]) return perr_set(PERR_NOMEM, "__metadata__");
    }
    return PERR_OK;
}

static int st_parse(pe_weights *w) {
    if (w->size < 8)
        return perr_set(PERR_FORMAT, "truncated: %zu bytes, a safetensors file starts with an 8-byte header length", w->size);
    uint64_t hlen = rd64(w->base);
    if (hlen > PE_ST_MAX_HEADER)
        return perr_set(PERR_TOO_LARGE, "safetensors header of %llu bytes exceeds the limit of %u",
                        (unsigned long long)hlen, PE_ST_MAX_HEADER);
    if (hlen > w->size - 8)
        return perr_set(PERR_FORMAT, "truncated: safetensors header of %llu bytes at offset 8, file has %zu bytes",
                        (unsigned long long)hlen, w->size);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)w->base + 8, (size_t)hlen, &end, false);
    if (!root) {
        size_t at = end ? (size_t)(end - (const char *)w->base) : 8;
        const char *ep = cJSON_GetErrorPtr();
        if (ep && ep >= (const char *)w->base && ep <= (const char *)w->base + 8 + hlen) at = (size_t)(ep - (const char *)w->base);
        return perr_set(PERR_FORMAT, "safetensors header is not valid JSON (error near byte %zu)", at);
    }
    int rc = PERR_OK;
    /* Only white-space padding may follow the JSON value. */
    for (const char *p = end, *e = (const char *)w->base + 8 + hlen; p && p < e; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = perr_set(PERR_FORMAT, "safetensors header: bytes after the JSON object at byte %zu",
                          (size_t)(p - (const char *)w->base));
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) { rc = perr_set(PERR_FORMAT, "safetensors header is not a JSON object"); goto out; }
    const uint8_t *data = w->base + 8 + hlen;
    size_t data_len = w->size - 8 - (size_t)hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!e->string) { rc = perr_set(PERR_FORMAT, "safetensors header entry without a name"); goto out; }
        if (!strcmp(e->string, "__metadata__")) rc = st_metadata(w, e);
        else rc = st_tensor(w, e, data, data_len);
        if (rc) goto out;
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* torch.save zip + restricted pickle                                        */
/* ------------------------------------------------------------------------ */

/* ---- zip (central directory, stored members, zip64) -------------------- */

typedef struct zip_entry {
    const char *name;        /* into the mapping, not NUL-terminated */
    size_t name_len;
    uint64_t comp_size, size, local_off;
    uint16_t method, flags;
} zip_entry;

typedef struct zip_archive {
    zip_entry *e;
    size_t n;
    const char *root;        /* "<root>/" prefix of data.pkl (into the mapping) */
    size_t root_len;
} zip_archive;

static int zip_cmp_entry(const void *a, const void *b) {
    const zip_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Reads the zip64 extended-information extra field of a central entry:
 * the 8-byte values appear only for the fields that are 0xFFFFFFFF. */
static int zip64_extra(const uint8_t *x, size_t xlen, zip_entry *e, uint32_t csz32, uint32_t usz32,
                       uint32_t off32, size_t at) {
    size_t p = 0;
    while (p + 4 <= xlen) {
        uint16_t id = rd16(x + p), len = rd16(x + p + 2);
        if (p + 4 + len > xlen) break;
        if (id == 0x0001) {
            const uint8_t *f = x + p + 4;
            size_t q = 0;
            if (usz32 == 0xFFFFFFFFu) { if (q + 8 > len) goto bad; e->size = rd64(f + q); q += 8; }
            if (csz32 == 0xFFFFFFFFu) { if (q + 8 > len) goto bad; e->comp_size = rd64(f + q); q += 8; }
            if (off32 == 0xFFFFFFFFu) { if (q + 8 > len) goto bad; e->local_off = rd64(f + q); q += 8; }
            return PERR_OK;
        }
        p += 4 + (size_t)len;
    }
    if (usz32 == 0xFFFFFFFFu || csz32 == 0xFFFFFFFFu || off32 == 0xFFFFFFFFu) goto bad;
    return PERR_OK;
bad:
    return perr_set(PERR_FORMAT, "zip: central directory entry at byte %zu lacks its zip64 sizes", at);
}

static int zip_open(const uint8_t *b, size_t size, zip_archive *z) {
    memset(z, 0, sizeof *z);
    if (size < 22) return perr_set(PERR_FORMAT, "truncated zip: %zu bytes, no end of central directory", size);
    /* End of central directory: the last "PK\5\6" whose comment ends the file. */
    size_t eocd = SIZE_MAX;
    size_t lo = size - 22 > 65535 ? size - 22 - 65535 : 0;
    for (size_t p = size - 22 + 1; p-- > lo;) {
        if (!memcmp(b + p, "PK\5\6", 4) && p + 22 + rd16(b + p + 20) == size) { eocd = p; break; }
    }
    if (eocd == SIZE_MAX)
        return perr_set(PERR_FORMAT, "zip end of central directory not found (truncated file?)");
    uint64_t n_entries = rd16(b + eocd + 10);
    uint64_t cd_size = rd32(b + eocd + 12), cd_off = rd32(b + eocd + 16);
    size_t cd_limit = eocd;
    if (rd16(b + eocd + 4) != 0 && rd16(b + eocd + 4) != 0xFFFF)
        return perr_set(PERR_UNSUPPORTED, "zip: multi-disk archives are not supported");
    if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (eocd < 20 || memcmp(b + eocd - 20, "PK\6\7", 4))
            return perr_set(PERR_FORMAT, "zip: zip64 end of central directory locator missing before byte %zu", eocd);
        uint64_t r = rd64(b + eocd - 20 + 8);
        if (r > eocd - 20 || eocd - 20 - r < 56 || memcmp(b + r, "PK\6\6", 4))
            return perr_set(PERR_FORMAT, "zip: bad zip64 end of central directory record offset %llu",
                            (unsigned long long)r);
        n_entries = rd64(b + r + 32);
        cd_size = rd64(b + r + 40);
        cd_off = rd64(b + r + 48);
        cd_limit = (size_t)r;
    }
    if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
        return perr_set(PERR_FORMAT, "zip: central directory [%llu, +%llu) outside the file (%zu bytes before its end record)",
                        (unsigned long long)cd_off, (unsigned long long)cd_size, cd_limit);
    if (n_entries > cd_size / 46)
        return perr_set(PERR_FORMAT, "zip: %llu entries cannot fit a central directory of %llu bytes",
                        (unsigned long long)n_entries, (unsigned long long)cd_size);
    z->e = calloc(n_entries ? (size_t)n_entries : 1, sizeof *z->e);
    if (!z->e) return perr_set(PERR_NOMEM, "zip directory");
    size_t p = (size_t)cd_off, end = (size_t)(cd_off + cd_size);
    for (uint64_t i = 0; i < n_entries; i++) {
        if (end - p < 46 || memcmp(b + p, "PK\1\2", 4))
            return perr_set(PERR_FORMAT, "zip: bad central directory entry %llu at byte %zu", (unsigned long long)i, p);
        zip_entry *e = &z->e[z->n];
        e->flags = rd16(b + p + 8);
        e->method = rd16(b + p + 10);
        uint32_t csz = rd32(b + p + 20), usz = rd32(b + p + 24), off = rd32(b + p + 42);
        size_t nl = rd16(b + p + 28), xl = rd16(b + p + 30), cl = rd16(b + p + 32);
        if (end - p - 46 < nl + xl + cl)
            return perr_set(PERR_FORMAT, "zip: central directory entry at byte %zu runs past the directory", p);
        e->name = (const char *)b + p + 46;
        e->name_len = nl;
        e->comp_size = csz;
        e->size = usz;
        e->local_off = off;
        int rc = zip64_extra(b + p + 46 + nl, xl, e, csz, usz, off, p);
        if (rc) return rc;
        z->n++;
        p += 46 + nl + xl + cl;
    }
    qsort(z->e, z->n, sizeof *z->e, zip_cmp_entry);
    /* The archive root: the one "<root>/data.pkl" (root without '/'). */
    for (size_t i = 0; i < z->n; i++) {
        const zip_entry *e = &z->e[i];
        static const char tail[] = "/data.pkl";
        size_t tl = sizeof tail - 1;
        if (e->name_len <= tl || memcmp(e->name + e->name_len - tl, tail, tl)) continue;
        if (memchr(e->name, '/', e->name_len - tl)) continue;
        if (z->root)
            return perr_set(PERR_FORMAT, "zip: several data.pkl members ('%.*s/', '%.*s/')", (int)z->root_len - 1,
                            z->root, (int)(e->name_len - tl), e->name);
        z->root = e->name;
        z->root_len = e->name_len - tl + 1;
    }
    if (!z->root)
        return perr_set(PERR_FORMAT, "zip archive without a <root>/data.pkl member: not a torch.save checkpoint");
    return PERR_OK;
}

/* Finds "<root>/<rel>" and returns its bytes (stored members only). */
static int zip_member(const uint8_t *b, size_t size, const zip_archive *z, const char *rel, size_t rel_len,
                      bool required, const uint8_t **data, uint64_t *len) {
    *data = NULL;
    *len = 0;
    char name[1024];
    if (z->root_len + rel_len >= sizeof name)
        return perr_set(PERR_FORMAT, "zip: member name '%.*s' too long", (int)(rel_len > 64 ? 64 : rel_len), rel);
    memcpy(name, z->root, z->root_len);
    memcpy(name + z->root_len, rel, rel_len);
    zip_entry key = {.name = name, .name_len = z->root_len + rel_len};
    const zip_entry *e = bsearch(&key, z->e, z->n, sizeof *z->e, zip_cmp_entry);
    int nl = (int)key.name_len;
    if (!e) {
        if (!required) return PERR_OK;
        return perr_set(PERR_FORMAT, "zip: member '%.*s' missing", nl, name);
    }
    if (e->flags & 1) return perr_set(PERR_UNSUPPORTED, "zip: member '%.*s' is encrypted", nl, name);
    if (e->method != 0)
        return perr_set(PERR_UNSUPPORTED,
                        "zip: member '%.*s' is compressed (method %u%s); torch.save stores members uncompressed "
                        "so they can be memory-mapped: re-save with torch.save or convert to safetensors",
                        nl, name, e->method, e->method == 8 ? ", deflate" : "");
    if (e->comp_size != e->size)
        return perr_set(PERR_FORMAT, "zip: stored member '%.*s' has compressed size %llu != size %llu", nl, name,
                        (unsigned long long)e->comp_size, (unsigned long long)e->size);
    uint64_t lo = e->local_off;
    if (lo > size || size - lo < 30 || memcmp(b + lo, "PK\3\4", 4))
        return perr_set(PERR_FORMAT, "zip: local header of '%.*s' at byte %llu is missing or truncated", nl, name,
                        (unsigned long long)lo);
    uint64_t start = lo + 30 + rd16(b + lo + 26) + rd16(b + lo + 28);
    if (start > size || e->size > size - start)
        return perr_set(PERR_FORMAT, "zip: member '%.*s' data [%llu, +%llu) runs past the end of the file (%zu bytes)",
                        nl, name, (unsigned long long)start, (unsigned long long)e->size, size);
    *data = b + start;
    *len = e->size;
    return PERR_OK;
}

/* ---- restricted pickle machine -------------------------------------------
 *
 * Objects live in one pool and are referred to by index, so that the memo
 * and containers share them without ownership questions; the pool is freed
 * at once. The pool grows by realloc: a pk_obj pointer is never used after
 * a pk_new/pk_push_new (found by fuzz_weights_pickle). No object graph is
 * ever walked recursively. Only the constructors
 * of the allow-list below can be called; nothing is imported or executed.
 */

enum { O_NONE, O_BOOL, O_INT, O_FLOAT, O_STR, O_BYTES, O_TUPLE, O_LIST, O_DICT, O_GLOBAL, O_STORAGE, O_TENSOR };
static const char *const okind_name[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                         "list", "dict", "global", "storage", "tensor"};

enum { G_ODICT, G_REBUILD_V2, G_REBUILD_PARAM, G_STORAGE };

typedef struct pk_obj {
    uint8_t kind;
    uint8_t sub;             /* GLOBAL: G_*; STORAGE/TENSOR/GLOBAL storage: pe_dtype */
    int64_t i;               /* INT/BOOL value; STORAGE numel; TENSOR: index in pk->tens */
    const char *s;           /* STR/BYTES (into data.pkl); STORAGE key */
    size_t slen;
    int *items;              /* TUPLE/LIST elements; DICT: key, value, key, value ... */
    int n, cap;
    const uint8_t *data;     /* STORAGE: member bytes */
} pk_obj;

typedef struct pk_tensor {
    int storage;             /* pool index */
    pe_dtype dtype;
    int ndim;
    int64_t shape[PE_TENSOR_MAX_DIMS];
    int64_t numel;
    const uint8_t *data;
    size_t nbytes;
} pk_tensor;

/* Bounds on what one data.pkl may create (G14's has ~30k objects). */
#define PK_MAX_OBJECTS (4 << 20)

typedef struct pk {
    const uint8_t *p;        /* data.pkl */
    size_t len, pos, op_at;  /* op_at: offset of the current opcode */
    pk_obj *o;
    int n_o, cap_o;
    int *stack;
    int n_st, cap_st;
    int *marks;
    int n_mk, cap_mk;
    int *memo;               /* -1 = unset */
    size_t n_memo;
    pk_tensor *tens;
    int n_t, cap_t;
    /* for storages */
    const uint8_t *zb;
    size_t zsize;
    const zip_archive *z;
} pk;

static int grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > INT32_MAX / 2) return -1;
        nc *= 2;
    }
    void *a = realloc(*arr, (size_t)nc * elem);
    if (!a) return -1;
    *arr = a;
    *cap = nc;
    return 0;
}

#define PK_ERR(k, code, ...) perr_prefix(perr_set((code), __VA_ARGS__), "data.pkl byte %zu", (k)->op_at)

static int pk_new(pk *k, int kind, int *out) {
    if (k->n_o >= PK_MAX_OBJECTS) return PK_ERR(k, PERR_TOO_LARGE, "more than %d pickle objects", PK_MAX_OBJECTS);
    if (grow((void **)&k->o, &k->cap_o, k->n_o + 1, sizeof *k->o)) return perr_set(PERR_NOMEM, "pickle objects");
    pk_obj *o = &k->o[k->n_o];
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)kind;
    *out = k->n_o++;
    return PERR_OK;
}

static int pk_push(pk *k, int idx) {
    if (grow((void **)&k->stack, &k->cap_st, k->n_st + 1, sizeof *k->stack)) return perr_set(PERR_NOMEM, "pickle stack");
    k->stack[k->n_st++] = idx;
    return PERR_OK;
}

static int pk_push_new(pk *k, int kind, int64_t i, const char *s, size_t slen) {
    int idx, rc = pk_new(k, kind, &idx);
    if (rc) return rc;
    k->o[idx].i = i;
    k->o[idx].s = s;
    k->o[idx].slen = slen;
    return pk_push(k, idx);
}

static int pk_pop(pk *k, int *out) {
    int floor = k->n_mk ? k->marks[k->n_mk - 1] : 0;
    if (k->n_st <= floor) return PK_ERR(k, PERR_FORMAT, "pickle stack underflow");
    *out = k->stack[--k->n_st];
    return PERR_OK;
}

static int pk_top(pk *k, int *out) {
    int floor = k->n_mk ? k->marks[k->n_mk - 1] : 0;
    if (k->n_st <= floor) return PK_ERR(k, PERR_FORMAT, "pickle stack underflow");
    *out = k->stack[k->n_st - 1];
    return PERR_OK;
}

/* Pops the last MARK; the items above it are stack[*first .. n_st). */
static int pk_pop_mark(pk *k, int *first) {
    *first = 0;
    if (!k->n_mk) return PK_ERR(k, PERR_FORMAT, "pickle: no MARK on the stack");
    *first = k->marks[--k->n_mk];
    return PERR_OK;
}

/* The object just below the items of a popped MARK (the container that
 * APPENDS/SETITEMS fill). */
static int pk_below(pk *k, int first, int *out) {
    int floor = k->n_mk ? k->marks[k->n_mk - 1] : 0;
    if (first <= floor) return PK_ERR(k, PERR_FORMAT, "pickle stack underflow");
    *out = k->stack[first - 1];
    return PERR_OK;
}

static int pk_append(pk *k, int container, int item) {
    pk_obj *c = &k->o[container];
    if (grow((void **)&c->items, &c->cap, c->n + 1, sizeof *c->items)) return perr_set(PERR_NOMEM, "pickle container");
    c->items[c->n++] = item;
    return PERR_OK;
}

static int pk_tuple_from(pk *k, int first) {
    int t, rc = pk_new(k, O_TUPLE, &t);
    if (rc) return rc;
    for (int i = first; i < k->n_st; i++)
        if ((rc = pk_append(k, t, k->stack[i]))) return rc;
    k->n_st = first;
    return pk_push(k, t);
}

static int pk_need(pk *k, size_t n) {
    if (k->len - k->pos < n) return PK_ERR(k, PERR_FORMAT, "truncated pickle (needs %zu more bytes)", n);
    return PERR_OK;
}

static bool pk_streq(const pk_obj *o, const char *s) {
    return o->kind == O_STR && o->slen == strlen(s) && !memcmp(o->s, s, o->slen);
}

/* The allow-list of globals. Anything else is refused right here. */
static int pk_global(pk *k, const char *mod, size_t ml, const char *name, size_t nl) {
    static const struct { const char *mod, *name; int g; int dt; } allow[] = {
        {"collections", "OrderedDict", G_ODICT, 0},
        {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, 0},
        {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, 0},
        {"torch", "FloatStorage", G_STORAGE, PE_DT_F32},
        {"torch", "HalfStorage", G_STORAGE, PE_DT_F16},
        {"torch", "BFloat16Storage", G_STORAGE, PE_DT_BF16},
    };
    for (size_t i = 0; i < sizeof allow / sizeof *allow; i++) {
        if (strlen(allow[i].mod) == ml && !memcmp(allow[i].mod, mod, ml) && strlen(allow[i].name) == nl &&
            !memcmp(allow[i].name, name, nl)) {
            int idx, rc = pk_new(k, O_GLOBAL, &idx);
            if (rc) return rc;
            k->o[idx].i = allow[i].g;
            k->o[idx].sub = (uint8_t)allow[i].dt;
            return pk_push(k, idx);
        }
    }
    int mlp = (int)(ml > 80 ? 80 : ml), nlp = (int)(nl > 80 ? 80 : nl);
    bool storage = ml == 5 && !memcmp(mod, "torch", 5) && nl > 7 && !memcmp(name + nl - 7, "Storage", 7);
    return PK_ERR(k, PERR_UNSUPPORTED, "global %.*s.%.*s is not allowed (%s)", mlp, mod, nlp, name,
                  storage ? "only float32, float16 and bfloat16 storages are supported"
                          : "a weights file may only use collections.OrderedDict, torch._utils._rebuild_tensor_v2 "
                            "and torch float storages; nothing else is ever imported or executed");
}

static int pk_int(const pk *k, int idx, int64_t *v) {
    if (k->o[idx].kind != O_INT && k->o[idx].kind != O_BOOL) return -1;
    *v = k->o[idx].i;
    return 0;
}

/* ('storage', <storage class>, key, location, numel) -> STORAGE object. */
static int pk_persid(pk *k, int pid) {
    const pk_obj *t = &k->o[pid];
    if (t->kind != O_TUPLE || t->n != 5 || !pk_streq(&k->o[t->items[0]], "storage"))
        return PK_ERR(k, PERR_FORMAT, "persistent id is not ('storage', type, key, location, numel)");
    const pk_obj *ty = &k->o[t->items[1]], *key = &k->o[t->items[2]];
    int64_t numel;
    if (ty->kind != O_GLOBAL || ty->i != G_STORAGE)
        return PK_ERR(k, PERR_FORMAT, "persistent id: storage type is a %s, not a torch storage class", okind_name[ty->kind]);
    if (key->kind != O_STR || key->slen == 0 || key->slen > 256 || memchr(key->s, '/', key->slen))
        return PK_ERR(k, PERR_FORMAT, "persistent id: bad storage key");
    if (k->o[t->items[3]].kind != O_STR) return PK_ERR(k, PERR_FORMAT, "persistent id: location is not a string");
    if (pk_int(k, t->items[4], &numel) || numel < 0)
        return PK_ERR(k, PERR_FORMAT, "persistent id: numel is not a non-negative integer");
    pe_dtype dt = (pe_dtype)ty->sub;
    char rel[300];
    int rl = snprintf(rel, sizeof rel, "data/%.*s", (int)key->slen, key->s);
    const uint8_t *d;
    uint64_t dlen;
    int rc = zip_member(k->zb, k->zsize, k->z, rel, (size_t)rl, true, &d, &dlen);
    if (rc) return perr_prefix(rc, "data.pkl byte %zu: storage '%.*s'", k->op_at, (int)key->slen, key->s);
    if ((uint64_t)numel > UINT64_MAX / dtype_size(dt) || (uint64_t)numel * dtype_size(dt) != dlen)
        return PK_ERR(k, PERR_FORMAT, "storage '%.*s': %lld %s elements need %llu bytes, its member has %llu",
                      (int)key->slen, key->s, (long long)numel, dtype_name(dt),
                      (unsigned long long)((uint64_t)numel * dtype_size(dt)), (unsigned long long)dlen);
    const char *ks = key->s;
    size_t kl = key->slen;
    int idx; /* pk_new may move the pool: no pk_obj pointer survives it */
    if ((rc = pk_new(k, O_STORAGE, &idx))) return rc;
    pk_obj *s = &k->o[idx];
    s->sub = (uint8_t)dt;
    s->i = numel;
    s->s = ks;
    s->slen = kl;
    s->data = d;
    return pk_push(k, idx);
}

/* Reads an int tuple (size or stride) of at most PE_TENSOR_MAX_DIMS. */
static int pk_dims(pk *k, int idx, const char *what, int64_t *v, int *n) {
    const pk_obj *t = &k->o[idx];
    if (t->kind != O_TUPLE) return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: %s is a %s, not a tuple", what, okind_name[t->kind]);
    if (t->n > PE_TENSOR_MAX_DIMS)
        return PK_ERR(k, PERR_UNSUPPORTED, "_rebuild_tensor_v2: %d dimensions (at most %d)", t->n, PE_TENSOR_MAX_DIMS);
    for (int i = 0; i < t->n; i++)
        if (pk_int(k, t->items[i], &v[i]) || v[i] < 0)
            return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: %s[%d] is not a non-negative integer", what, i);
    *n = t->n;
    return PERR_OK;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int pk_rebuild(pk *k, int args) {
    const pk_obj *a = &k->o[args];
    if (a->kind != O_TUPLE || a->n < 6 || a->n > 7)
        return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2 expects 6 or 7 arguments");
    const pk_obj *st = &k->o[a->items[0]];
    if (st->kind != O_STORAGE)
        return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: first argument is a %s, not a storage", okind_name[st->kind]);
    int64_t off, shape[PE_TENSOR_MAX_DIMS], stride[PE_TENSOR_MAX_DIMS];
    int nd, ns, rc;
    if (pk_int(k, a->items[1], &off) || off < 0)
        return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: storage offset is not a non-negative integer");
    if ((rc = pk_dims(k, a->items[2], "size", shape, &nd))) return rc;
    if ((rc = pk_dims(k, a->items[3], "stride", stride, &ns))) return rc;
    if (nd != ns) return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: %d sizes but %d strides", nd, ns);
    if (k->o[a->items[5]].kind != O_DICT)
        return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: backward hooks are not a dict");
    if (a->n == 7 && (k->o[a->items[6]].kind != O_DICT || k->o[a->items[6]].n))
        return PK_ERR(k, PERR_UNSUPPORTED, "_rebuild_tensor_v2: tensor metadata (not a plain dense tensor)");
    pe_dtype dt = (pe_dtype)st->sub;
    int64_t numel;
    size_t nbytes;
    if (!shape_bytes(shape, nd, dtype_size(dt), &numel, &nbytes))
        return PK_ERR(k, PERR_FORMAT, "_rebuild_tensor_v2: size overflows");
    if (numel > 0) {
        int64_t expect = 1;
        for (int i = nd - 1; i >= 0; i--) {
            if (shape[i] != 1 && stride[i] != expect) {
                char sh[96], sr[96];
                fmt_shape(sh, sizeof sh, shape, nd);
                fmt_shape(sr, sizeof sr, stride, nd);
                return PK_ERR(k, PERR_UNSUPPORTED,
                              "tensor of size %s has non-contiguous strides %s (only C-contiguous tensors are supported)",
                              sh, sr);
            }
            expect *= shape[i];
        }
    }
    if (numel > st->i || off > st->i - numel)
        return PK_ERR(k, PERR_FORMAT, "tensor [offset %lld, +%lld elements) outside storage '%.*s' of %lld elements",
                      (long long)off, (long long)numel, (int)st->slen, st->s, (long long)st->i);
    if (grow((void **)&k->tens, &k->cap_t, k->n_t + 1, sizeof *k->tens)) return perr_set(PERR_NOMEM, "tensors");
    pk_tensor *t = &k->tens[k->n_t];
    t->storage = a->items[0];
    t->dtype = dt;
    t->ndim = nd;
    memcpy(t->shape, shape, sizeof shape);
    t->numel = numel;
    t->data = st->data + (size_t)off * dtype_size(dt);
    t->nbytes = nbytes;
    int idx;
    if ((rc = pk_new(k, O_TENSOR, &idx))) return rc;
    k->o[idx].i = k->n_t++;
    return pk_push(k, idx);
}

static int pk_reduce(pk *k) {
    int args, fn, rc;
    if ((rc = pk_pop(k, &args)) || (rc = pk_pop(k, &fn))) return rc;
    const pk_obj *f = &k->o[fn], *a = &k->o[args];
    if (f->kind != O_GLOBAL) return PK_ERR(k, PERR_UNSUPPORTED, "REDUCE on a %s", okind_name[f->kind]);
    if (a->kind != O_TUPLE) return PK_ERR(k, PERR_FORMAT, "REDUCE arguments are not a tuple");
    switch (f->i) {
    case G_ODICT:
        if (a->n) return PK_ERR(k, PERR_UNSUPPORTED, "OrderedDict called with arguments");
        return pk_push_new(k, O_DICT, 0, NULL, 0);
    case G_REBUILD_V2:
        return pk_rebuild(k, args);
    case G_REBUILD_PARAM: /* (data, requires_grad, hooks): the tensor itself */
        if (a->n != 3 || k->o[a->items[0]].kind != O_TENSOR)
            return PK_ERR(k, PERR_FORMAT, "_rebuild_parameter expects (tensor, requires_grad, hooks)");
        return pk_push(k, a->items[0]);
    default:
        return PK_ERR(k, PERR_UNSUPPORTED, "calling a storage class is not allowed");
    }
}

static int pk_memo_put(pk *k, uint64_t at) {
    int top, rc;
    if ((rc = pk_top(k, &top))) return rc;
    /* Writers number memo entries 0, 1, 2 ...; each PUT costs >= 1 byte,
     * so an index beyond the current offset is refused (bounds the table). */
    if (at > k->pos) return PK_ERR(k, PERR_FORMAT, "memo index %llu out of range", (unsigned long long)at);
    if (at >= k->n_memo) {
        size_t nn = k->n_memo ? k->n_memo : 64;
        while (nn <= at) nn *= 2;
        int *m = realloc(k->memo, nn * sizeof *m);
        if (!m) return perr_set(PERR_NOMEM, "pickle memo");
        for (size_t i = k->n_memo; i < nn; i++) m[i] = -1;
        k->memo = m;
        k->n_memo = nn;
    }
    k->memo[at] = top;
    return PERR_OK;
}

static int pk_memo_get(pk *k, uint64_t at) {
    if (at >= k->n_memo || k->memo[at] < 0)
        return PK_ERR(k, PERR_FORMAT, "memo index %llu was never stored", (unsigned long long)at);
    return pk_push(k, k->memo[at]);
}

static int pk_setitems(pk *k, int dict, int first) {
    if (k->o[dict].kind != O_DICT) return PK_ERR(k, PERR_FORMAT, "SETITEM(S) on a %s", okind_name[k->o[dict].kind]);
    if ((k->n_st - first) % 2) return PK_ERR(k, PERR_FORMAT, "SETITEMS with an odd number of items");
    for (int i = first; i < k->n_st; i++) {
        int rc = pk_append(k, dict, k->stack[i]);
        if (rc) return rc;
    }
    k->n_st = first;
    return PERR_OK;
}

static int pk_str_op(pk *k, size_t lenbytes, int kind) {
    int rc = pk_need(k, lenbytes);
    if (rc) return rc;
    uint64_t n = lenbytes == 1 ? k->p[k->pos] : lenbytes == 4 ? rd32(k->p + k->pos) : rd64(k->p + k->pos);
    k->pos += lenbytes;
    if (n > k->len - k->pos) return PK_ERR(k, PERR_FORMAT, "truncated pickle: string of %llu bytes", (unsigned long long)n);
    const char *s = (const char *)k->p + k->pos;
    k->pos += (size_t)n;
    return pk_push_new(k, kind, 0, s, (size_t)n);
}

/* Runs data.pkl to STOP; *result = the pool index of the unpickled object. */
static int pk_run(pk *k, int *result) {
    int rc = PERR_OK, a = 0, b = 0, first = 0;
    while (!rc) {
        if (k->pos >= k->len) return PK_ERR(k, PERR_FORMAT, "truncated pickle: no STOP opcode");
        k->op_at = k->pos;
        uint8_t op = k->p[k->pos++];
        switch (op) {
        case 0x80: /* PROTO */
            if ((rc = pk_need(k, 1))) break;
            if (k->p[k->pos] < 2 || k->p[k->pos] > 5)
                rc = PK_ERR(k, PERR_UNSUPPORTED, "pickle protocol %u (2 to 5 supported)", k->p[k->pos]);
            k->pos++;
            break;
        case 0x95: /* FRAME: a length hint, the opcodes follow inline */
            if (!(rc = pk_need(k, 8))) k->pos += 8;
            break;
        case '.': /* STOP */
            if (k->n_st < 1 || k->n_mk) return PK_ERR(k, PERR_FORMAT, "STOP with %s", k->n_mk ? "an open MARK" : "an empty stack");
            *result = k->stack[k->n_st - 1];
            return PERR_OK;
        case '(': /* MARK */
            if (grow((void **)&k->marks, &k->cap_mk, k->n_mk + 1, sizeof *k->marks)) return perr_set(PERR_NOMEM, "pickle marks");
            k->marks[k->n_mk++] = k->n_st;
            break;
        case '0': rc = pk_pop(k, &a); break;                       /* POP */
        case '1': if (!(rc = pk_pop_mark(k, &first))) k->n_st = first; break; /* POP_MARK */
        case '2': if (!(rc = pk_top(k, &a))) rc = pk_push(k, a); break; /* DUP */
        case 'N': rc = pk_push_new(k, O_NONE, 0, NULL, 0); break;
        case 0x88: rc = pk_push_new(k, O_BOOL, 1, NULL, 0); break; /* NEWTRUE */
        case 0x89: rc = pk_push_new(k, O_BOOL, 0, NULL, 0); break; /* NEWFALSE */
        case 'J': /* BININT */
            if (!(rc = pk_need(k, 4))) { rc = pk_push_new(k, O_INT, (int32_t)rd32(k->p + k->pos), NULL, 0); k->pos += 4; }
            break;
        case 'K': /* BININT1 */
            if (!(rc = pk_need(k, 1))) { rc = pk_push_new(k, O_INT, k->p[k->pos], NULL, 0); k->pos += 1; }
            break;
        case 'M': /* BININT2 */
            if (!(rc = pk_need(k, 2))) { rc = pk_push_new(k, O_INT, rd16(k->p + k->pos), NULL, 0); k->pos += 2; }
            break;
        case 0x8a: { /* LONG1: little-endian two's complement of n bytes */
            if ((rc = pk_need(k, 1))) break;
            size_t n = k->p[k->pos++];
            if (n > 8) { rc = PK_ERR(k, PERR_FORMAT, "integer of %zu bytes is too large", n); break; }
            if ((rc = pk_need(k, n))) break;
            uint64_t v = 0;
            for (size_t i = 0; i < n; i++) v |= (uint64_t)k->p[k->pos + i] << (8 * i);
            if (n && n < 8 && (k->p[k->pos + n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n);
            k->pos += n;
            rc = pk_push_new(k, O_INT, (int64_t)v, NULL, 0);
            break;
        }
        case 'G': /* BINFLOAT (big-endian double): value not needed */
            if (!(rc = pk_need(k, 8))) { k->pos += 8; rc = pk_push_new(k, O_FLOAT, 0, NULL, 0); }
            break;
        case 0x8c: rc = pk_str_op(k, 1, O_STR); break;   /* SHORT_BINUNICODE */
        case 'X': rc = pk_str_op(k, 4, O_STR); break;    /* BINUNICODE */
        case 0x8d: rc = pk_str_op(k, 8, O_STR); break;   /* BINUNICODE8 */
        case 'U': rc = pk_str_op(k, 1, O_STR); break;    /* SHORT_BINSTRING */
        case 'T': rc = pk_str_op(k, 4, O_STR); break;    /* BINSTRING */
        case 'C': rc = pk_str_op(k, 1, O_BYTES); break;  /* SHORT_BINBYTES */
        case 'B': rc = pk_str_op(k, 4, O_BYTES); break;  /* BINBYTES */
        case 0x8e: rc = pk_str_op(k, 8, O_BYTES); break; /* BINBYTES8 */
        case ')': rc = pk_push_new(k, O_TUPLE, 0, NULL, 0); break;
        case 't': if (!(rc = pk_pop_mark(k, &first))) rc = pk_tuple_from(k, first); break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int n = op - 0x84;
            int floor = k->n_mk ? k->marks[k->n_mk - 1] : 0;
            if (k->n_st - floor < n) { rc = PK_ERR(k, PERR_FORMAT, "pickle stack underflow"); break; }
            rc = pk_tuple_from(k, k->n_st - n);
            break;
        }
        case ']': rc = pk_push_new(k, O_LIST, 0, NULL, 0); break;
        case 'l': /* LIST */
            if (!(rc = pk_pop_mark(k, &first)) && !(rc = pk_tuple_from(k, first))) k->o[k->stack[k->n_st - 1]].kind = O_LIST;
            break;
        case 'a': /* APPEND */
            if ((rc = pk_pop(k, &a)) || (rc = pk_top(k, &b))) break;
            if (k->o[b].kind != O_LIST) { rc = PK_ERR(k, PERR_FORMAT, "APPEND to a %s", okind_name[k->o[b].kind]); break; }
            rc = pk_append(k, b, a);
            break;
        case 'e': /* APPENDS */
            if ((rc = pk_pop_mark(k, &first))) break;
            if ((rc = pk_below(k, first, &b))) break;
            if (k->o[b].kind != O_LIST) { rc = PK_ERR(k, PERR_FORMAT, "APPENDS to a %s", okind_name[k->o[b].kind]); break; }
            for (int i = first; i < k->n_st && !rc; i++) rc = pk_append(k, b, k->stack[i]);
            k->n_st = first;
            break;
        case '}': rc = pk_push_new(k, O_DICT, 0, NULL, 0); break;
        case 'd': /* DICT */
            if ((rc = pk_pop_mark(k, &first))) break;
            if ((rc = pk_new(k, O_DICT, &b))) break;
            if ((rc = pk_setitems(k, b, first))) break;
            rc = pk_push(k, b);
            break;
        case 's': /* SETITEM */
            if (k->n_st - (k->n_mk ? k->marks[k->n_mk - 1] : 0) < 3) { rc = PK_ERR(k, PERR_FORMAT, "pickle stack underflow"); break; }
            rc = pk_setitems(k, k->stack[k->n_st - 3], k->n_st - 2);
            break;
        case 'u': /* SETITEMS */
            if ((rc = pk_pop_mark(k, &first))) break;
            if ((rc = pk_below(k, first, &b))) break;
            rc = pk_setitems(k, b, first);
            break;
        case 'c': { /* GLOBAL "module\nname\n" */
            const uint8_t *s = k->p + k->pos, *e = k->p + k->len;
            const uint8_t *nl1 = memchr(s, '\n', (size_t)(e - s));
            const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(e - nl1 - 1)) : NULL;
            if (!nl2) { rc = PK_ERR(k, PERR_FORMAT, "truncated GLOBAL"); break; }
            k->pos = (size_t)(nl2 + 1 - k->p);
            rc = pk_global(k, (const char *)s, (size_t)(nl1 - s), (const char *)nl1 + 1, (size_t)(nl2 - nl1 - 1));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((rc = pk_pop(k, &b)) || (rc = pk_pop(k, &a))) break;
            if (k->o[a].kind != O_STR || k->o[b].kind != O_STR) { rc = PK_ERR(k, PERR_FORMAT, "STACK_GLOBAL needs two strings"); break; }
            rc = pk_global(k, k->o[a].s, k->o[a].slen, k->o[b].s, k->o[b].slen);
            break;
        case 'R': rc = pk_reduce(k); break;
        case 'b': /* BUILD: only the state_dict's _metadata, ignored */
            if ((rc = pk_pop(k, &a)) || (rc = pk_top(k, &b))) break;
            if (k->o[b].kind != O_DICT) rc = PK_ERR(k, PERR_UNSUPPORTED, "BUILD on a %s (only on the OrderedDict)", okind_name[k->o[b].kind]);
            break;
        case 'Q': /* BINPERSID */
            if (!(rc = pk_pop(k, &a))) rc = pk_persid(k, a);
            break;
        case 'q': if (!(rc = pk_need(k, 1))) { k->pos += 1; rc = pk_memo_put(k, k->p[k->pos - 1]); } break;
        case 'r': if (!(rc = pk_need(k, 4))) { k->pos += 4; rc = pk_memo_put(k, rd32(k->p + k->pos - 4)); } break;
        case 0x94: { /* MEMOIZE: next index = number of entries set so far */
            size_t at = 0;
            for (size_t i = k->n_memo; i-- > 0;) if (k->memo[i] >= 0) { at = i + 1; break; }
            rc = pk_memo_put(k, at);
            break;
        }
        case 'h': if (!(rc = pk_need(k, 1))) { k->pos += 1; rc = pk_memo_get(k, k->p[k->pos - 1]); } break;
        case 'j': if (!(rc = pk_need(k, 4))) { k->pos += 4; rc = pk_memo_get(k, rd32(k->p + k->pos - 4)); } break;
        default: {
            static const struct { uint8_t op; const char *name; } names[] = {
                {'i', "INST"}, {'o', "OBJ"}, {0x81, "NEWOBJ"}, {0x92, "NEWOBJ_EX"}, {'P', "PERSID"},
                {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {'I', "INT"}, {'L', "LONG"}, {'F', "FLOAT"},
                {'S', "STRING"}, {'V', "UNICODE"}, {'g', "GET"}, {'p', "PUT"}, {0x8b, "LONG4"},
                {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x96, "BYTEARRAY8"},
                {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"}};
            const char *nm = "unknown";
            for (size_t i = 0; i < sizeof names / sizeof *names; i++) if (names[i].op == op) nm = names[i].name;
            return PK_ERR(k, PERR_UNSUPPORTED, "pickle opcode 0x%02x (%s) is not allowed in a weights file", op, nm);
        }
        }
    }
    return rc;
}

static void pk_free(pk *k) {
    for (int i = 0; i < k->n_o; i++) free(k->o[i].items);
    free(k->o);
    free(k->stack);
    free(k->marks);
    free(k->memo);
    free(k->tens);
}

/* Last value stored under a string key (Python dict semantics), or -1. */
static int pk_dict_get(const pk *k, int dict, const char *key) {
    const pk_obj *d = &k->o[dict];
    for (int i = d->n - 2; i >= 0; i -= 2)
        if (pk_streq(&k->o[d->items[i]], key)) return d->items[i + 1];
    return -1;
}

static int pt_collect(pe_weights *w, pk *k, int top) {
    if (k->o[top].kind != O_DICT)
        return perr_set(PERR_FORMAT, "data.pkl holds a %s, not a dict of tensors", okind_name[k->o[top].kind]);
    int inner = pk_dict_get(k, top, "state_dict");
    if (inner < 0) inner = pk_dict_get(k, top, "weights");
    if (inner >= 0) {
        if (k->o[inner].kind != O_DICT)
            return perr_set(PERR_FORMAT, "data.pkl: the wrapped state dict is a %s, not a dict", okind_name[k->o[inner].kind]);
        top = inner;
    }
    const pk_obj *d = &k->o[top];
    for (int i = 0; i + 1 < d->n; i += 2) {
        const pk_obj *key = &k->o[d->items[i]], *val = &k->o[d->items[i + 1]];
        if (key->kind != O_STR) return perr_set(PERR_FORMAT, "data.pkl: state dict key #%d is a %s, not a string", i / 2, okind_name[key->kind]);
        if (val->kind != O_TENSOR)
            return perr_set(PERR_FORMAT, "data.pkl: value of '%.*s' is a %s, not a tensor", (int)(key->slen > 200 ? 200 : key->slen),
                            key->s, okind_name[val->kind]);
        if (memchr(key->s, 0, key->slen)) return perr_set(PERR_FORMAT, "data.pkl: key #%d contains a NUL byte", i / 2);
        const pk_tensor *t = &k->tens[val->i];
        char *name = strip_module(key->s, key->slen);
        if (!name) return perr_set(PERR_NOMEM, "tensor name");
        int rc = add_tensor(w, name, t->dtype, t->ndim, t->shape, t->numel, t->data, t->nbytes);
        if (rc) return rc;
    }
    return PERR_OK;
}

static int pt_parse(pe_weights *w) {
    zip_archive z;
    int rc = zip_open(w->base, w->size, &z);
    const uint8_t *d;
    uint64_t dlen;
    if (!rc) rc = zip_member(w->base, w->size, &z, "byteorder", 9, false, &d, &dlen);
    if (!rc && d && !(dlen == 6 && !memcmp(d, "little", 6)))
        rc = perr_set(PERR_UNSUPPORTED, "byteorder member says '%.*s': only little-endian checkpoints are supported",
                      (int)(dlen > 16 ? 16 : dlen), (const char *)d);
    if (!rc) rc = zip_member(w->base, w->size, &z, "data.pkl", 8, true, &d, &dlen);
    if (!rc && dlen > PE_PKL_MAX)
        rc = perr_set(PERR_TOO_LARGE, "data.pkl of %llu bytes exceeds the limit of %u", (unsigned long long)dlen, PE_PKL_MAX);
    if (!rc) {
        pk k = {.p = d, .len = (size_t)dlen, .zb = w->base, .zsize = w->size, .z = &z};
        int top = -1;
        rc = pk_run(&k, &top);
        if (!rc) rc = pt_collect(w, &k, top);
        pk_free(&k);
    }
    free(z.e);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Open / close / queries                                                    */
/* ------------------------------------------------------------------------ */

static int parse_any(pe_weights *w) {
    const uint8_t *b = w->base;
    if (w->size == 0) return perr_set(PERR_FORMAT, "empty file");
    if (w->size >= 4 && !memcmp(b, "PK\3\4", 4)) {
        w->format = "pt";
        return pt_parse(w);
    }
    if (w->size >= 2 && b[0] == 0x80 && b[1] <= 5)
        return perr_set(PERR_UNSUPPORTED,
                        "legacy (pre-1.6, non-zip) torch.save file: not supported; re-save it with torch >= 1.6 "
                        "or convert it to safetensors");
    if (w->size >= 9 && rd64(b) >= 2 && b[8] == '{') {
        w->format = "safetensors";
        return st_parse(w);
    }
    if (w->size < 9 && w->size >= 4 && !memcmp(b, "PK", 2))
        return perr_set(PERR_FORMAT, "truncated zip file (%zu bytes)", w->size);
    return perr_set(PERR_FORMAT, "not a PyTorch checkpoint (zip) nor a safetensors file (first bytes %02x %02x %02x %02x)",
                    b[0], w->size > 1 ? b[1] : 0, w->size > 2 ? b[2] : 0, w->size > 3 ? b[3] : 0);
}

static int finish_open(pe_weights *w, pe_weights **out) {
    int rc = parse_any(w);
    if (!rc) rc = finish_index(w);
    if (rc) {
        perr_prefix(rc, "%s", w->label);
        pe_weights_close(w);
        return rc;
    }
    *out = w;
    return PERR_OK;
}

int pe_weights_open_buffer(const void *buf, size_t len, const char *label, pe_weights **out) {
    *out = NULL;
    pe_weights *w = calloc(1, sizeof *w);
    if (!w) return perr_set(PERR_NOMEM, "pe_weights");
    w->label = strdup(label ? label : "(buffer)");
    if (!w->label) { free(w); return perr_set(PERR_NOMEM, "pe_weights"); }
    w->base = buf;
    w->size = len;
    return finish_open(w, out);
}

int pe_weights_open(const char *path, pe_weights **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return perr_errno(errno, "%s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) { int e = errno; close(fd); return perr_errno(e, "%s", path); }
    if (!S_ISREG(st.st_mode)) { close(fd); return perr_set(PERR_INVALID, "%s: not a regular file", path); }
    if ((uint64_t)st.st_size > SIZE_MAX) { close(fd); return perr_set(PERR_TOO_LARGE, "%s: file too large", path); }
    pe_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->label = strdup(path))) { free(w); close(fd); return perr_set(PERR_NOMEM, "pe_weights"); }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(w->label);
            free(w);
            return perr_errno(e, "%s: mmap", path);
        }
        w->map = m;
        w->map_len = (size_t)st.st_size;
        w->base = m;
        w->size = (size_t)st.st_size;
    }
    close(fd);
    return finish_open(w, out);
}

void pe_weights_release(pe_weights *w, const void *p, size_t bytes) {
    if (!w || !w->map || !p) return;
    uintptr_t a = (uintptr_t)p, e = a + bytes, m0 = (uintptr_t)w->map, m1 = m0 + w->map_len;
    if (a < m0 || e > m1) return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    a = (a + pg - 1) / pg * pg;
    e = e / pg * pg;
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

void pe_weights_close(pe_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free((char *)w->t[i].name);
    free(w->t);
    free(w->by_name);
    for (int i = 0; i < w->n_copies; i++) free(w->copies[i]);
    free(w->copies);
    for (int i = 0; i < w->n_meta; i++) { free(w->meta_k[i]); free(w->meta_v[i]); }
    free(w->meta_k);
    free(w->meta_v);
    if (w->map) munmap(w->map, w->map_len);
    free(w->label);
    free(w);
}

const char *pe_weights_format(const pe_weights *w) { return w->format; }
int pe_weights_count(const pe_weights *w) { return w->n; }

const pe_tensor *pe_weights_at(const pe_weights *w, int i) {
    return (i >= 0 && i < w->n) ? &w->t[i] : NULL;
}

const pe_tensor *pe_weights_find(const pe_weights *w, const char *name) {
    int lo = 0, hi = w->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, w->t[w->by_name[mid]].name);
        if (!c) return &w->t[w->by_name[mid]];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

const char *pe_weights_metadata(const pe_weights *w, const char *key) {
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_k[i], key)) return w->meta_v[i];
    return NULL;
}

/* IEEE half -> float, exact for every value (subnormals, inf, NaN payload). */
static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 0x1f) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp + 112) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void pe_tensor_to_f32(const pe_tensor *t, float *dst) {
    const uint8_t *s = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case PE_DT_F32:
        memcpy(dst, s, n * 4);
        break;
    case PE_DT_F16:
        for (size_t i = 0; i < n; i++) dst[i] = half_to_f32(rd16(s + 2 * i));
        break;
    case PE_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)rd16(s + 2 * i) << 16;
            memcpy(&dst[i], &bits, 4);
        }
        break;
    }
}
