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

static int pt_parse(pe_weights *w) {
    return perr_set(PERR_UNSUPPORTED, "PyTorch .pt reading is not implemented yet; convert to safetensors");
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
