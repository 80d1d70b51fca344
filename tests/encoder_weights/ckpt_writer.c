/* ckpt_writer: see ckpt_writer.h. */
#define _GNU_SOURCE
#include "ckpt_writer.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "ckpt_writer: out of memory\n"); abort(); }
    return q;
}

void ck_free(ckbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void ck_put(ckbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

void ck_u8(ckbuf *b, unsigned v) { uint8_t x = (uint8_t)v; ck_put(b, &x, 1); }
void ck_u16(ckbuf *b, unsigned v) { ck_u8(b, v & 0xff); ck_u8(b, (v >> 8) & 0xff); }
void ck_u32(ckbuf *b, uint32_t v) { ck_u16(b, v & 0xffff); ck_u16(b, v >> 16); }
void ck_u64(ckbuf *b, uint64_t v) { ck_u32(b, (uint32_t)v); ck_u32(b, (uint32_t)(v >> 32)); }
void ck_str(ckbuf *b, const char *s) { ck_put(b, s, strlen(s)); }

static size_t esize(pe_dtype d) { return d == PE_DT_F32 ? 4 : 2; }

size_t ck_tensor_bytes(const ck_tensor *t) {
    size_t n = esize(t->dtype);
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* ---- safetensors ---- */

static void st_header(ckbuf *h, const ck_tensor *t, int n, const char *const *meta) {
    static const char *dt[] = {"F32", "F16", "BF16"};
    char tmp[512];
    ck_str(h, "{");
    int first = 1;
    if (meta && meta[0]) {
        ck_str(h, "\"__metadata__\":{");
        for (int i = 0; meta[i]; i += 2) {
            ck_str(h, i ? ",\"" : "\"");
            ck_str(h, meta[i]);
            ck_str(h, "\":\"");
            for (const char *s = meta[i + 1]; *s; s++) { /* JSON-escape quotes and backslashes */
                if (*s == '"' || *s == '\\') ck_u8(h, '\\');
                ck_u8(h, (uint8_t)*s);
            }
            ck_str(h, "\"");
        }
        ck_str(h, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = ck_tensor_bytes(&t[i]);
        snprintf(tmp, sizeof tmp, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", first ? "" : ",", t[i].name, dt[t[i].dtype]);
        ck_str(h, tmp);
        for (int d = 0; d < t[i].ndim; d++) {
            snprintf(tmp, sizeof tmp, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
            ck_str(h, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nb));
        ck_str(h, tmp);
        off += nb;
        first = 0;
    }
    ck_str(h, "}");
    while (h->n % 8) ck_u8(h, ' ');
}

void ck_safetensors(ckbuf *out, const ck_tensor *t, int n, const char *const *meta) {
    ckbuf h = {0};
    st_header(&h, t, n, meta);
    ck_u64(out, h.n);
    ck_put(out, h.p, h.n);
    ck_free(&h);
    for (int i = 0; i < n; i++) {
        size_t nb = ck_tensor_bytes(&t[i]);
        if (t[i].data) ck_put(out, t[i].data, nb);
        else {
            static const uint8_t z[4096];
            for (size_t done = 0; done < nb;) {
                size_t k = nb - done < sizeof z ? nb - done : sizeof z;
                ck_put(out, z, k);
                done += k;
            }
        }
    }
}

int ck_safetensors_file(const char *path, const ck_tensor *t, int n, const char *const *meta, int sparse) {
    if (!sparse) {
        ckbuf b = {0};
        ck_safetensors(&b, t, n, meta);
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(b.p, 1, b.n, f) == b.n;
        if (f && fclose(f)) ok = 0;
        ck_free(&b);
        return ok ? 0 : -1;
    }
    ckbuf h = {0};
    st_header(&h, t, n, meta);
    uint64_t total = 8 + h.n;
    for (int i = 0; i < n; i++) total += ck_tensor_bytes(&t[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int ok = fd >= 0;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (ok) ok = write(fd, len, 8) == 8 && write(fd, h.p, h.n) == (ssize_t)h.n && ftruncate(fd, (off_t)total) == 0;
    if (fd >= 0 && close(fd)) ok = 0;
    ck_free(&h);
    return ok ? 0 : -1;
}

/* ---- pickle ---- */

void ck_pk_op(ckbuf *b, uint8_t op) { ck_u8(b, op); }
void ck_pk_proto(ckbuf *b, int proto) { ck_u8(b, 0x80); ck_u8(b, (unsigned)proto); }

void ck_pk_global(ckbuf *b, const char *mod, const char *name) {
    ck_u8(b, 'c');
    ck_str(b, mod);
    ck_u8(b, '\n');
    ck_str(b, name);
    ck_u8(b, '\n');
}

void ck_pk_unicode(ckbuf *b, const char *s) {
    ck_u8(b, 'X');
    ck_u32(b, (uint32_t)strlen(s));
    ck_str(b, s);
}

void ck_pk_int(ckbuf *b, int64_t v) {
    if (v >= 0 && v < 256) { ck_u8(b, 'K'); ck_u8(b, (unsigned)v); }
    else if (v >= 0 && v < 65536) { ck_u8(b, 'M'); ck_u16(b, (unsigned)v); }
    else if (v >= INT32_MIN && v <= INT32_MAX) { ck_u8(b, 'J'); ck_u32(b, (uint32_t)(int32_t)v); }
    else { ck_u8(b, 0x8a); ck_u8(b, 8); ck_u64(b, (uint64_t)v); }
}

const char *ck_storage_class(pe_dtype d) {
    return d == PE_DT_F32 ? "FloatStorage" : d == PE_DT_F16 ? "HalfStorage" : "BFloat16Storage";
}

void ck_pk_tensor(ckbuf *b, const char *storage_cls, const char *key, int64_t storage_numel, int64_t offset,
                  int ndim, const int64_t *size, const int64_t *stride) {
    ck_pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    ck_pk_op(b, '(');
    ck_pk_op(b, '(');
    ck_pk_unicode(b, "storage");
    ck_pk_global(b, "torch", storage_cls);
    ck_pk_unicode(b, key);
    ck_pk_unicode(b, "cpu");
    ck_pk_int(b, storage_numel);
    ck_pk_op(b, 't');
    ck_pk_op(b, 'Q'); /* BINPERSID */
    ck_pk_int(b, offset);
    ck_pk_op(b, '(');
    for (int i = 0; i < ndim; i++) ck_pk_int(b, size[i]);
    ck_pk_op(b, 't');
    ck_pk_op(b, '(');
    for (int i = 0; i < ndim; i++) ck_pk_int(b, stride[i]);
    ck_pk_op(b, 't');
    ck_pk_op(b, 0x89); /* NEWFALSE */
    ck_pk_global(b, "collections", "OrderedDict");
    ck_pk_op(b, ')');
    ck_pk_op(b, 'R');
    ck_pk_op(b, 't');
    ck_pk_op(b, 'R');
}

void ck_pt_pickle(ckbuf *out, const ck_tensor *t, int n, const char *wrap) {
    ck_pk_proto(out, 2);
    if (wrap) {
        ck_pk_op(out, '}');
        ck_pk_unicode(out, wrap);
    }
    ck_pk_global(out, "collections", "OrderedDict");
    ck_pk_op(out, ')');
    ck_pk_op(out, 'R');
    ck_pk_op(out, 'q');
    ck_u8(out, 0);
    ck_pk_op(out, '(');
    for (int i = 0; i < n; i++) {
        char key[32];
        int64_t stride[PE_TENSOR_MAX_DIMS], s = 1, numel = 1;
        for (int d = t[i].ndim - 1; d >= 0; d--) { stride[d] = s; s *= t[i].shape[d]; }
        for (int d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d];
        snprintf(key, sizeof key, "%d", i);
        ck_pk_unicode(out, t[i].name);
        ck_pk_tensor(out, ck_storage_class(t[i].dtype), key, numel, 0, t[i].ndim, t[i].shape, stride);
    }
    ck_pk_op(out, 'u'); /* SETITEMS */
    /* torch sets the OrderedDict's _metadata with one BUILD */
    ck_pk_op(out, '}');
    ck_pk_unicode(out, "_metadata");
    ck_pk_global(out, "collections", "OrderedDict");
    ck_pk_op(out, ')');
    ck_pk_op(out, 'R');
    ck_pk_op(out, 's');
    ck_pk_op(out, 'b');
    if (wrap) ck_pk_op(out, 's');
    ck_pk_op(out, '.');
}

/* ---- zip ---- */

void ck_zip(ckbuf *out, const ck_member *m, int n, const ck_zip_opts *o) {
    ck_zip_opts def = {0};
    if (!o) o = &def;
    uint64_t *local = calloc((size_t)n + 1, sizeof *local);
    uint32_t *crc = calloc((size_t)n + 1, 4);
    ckbuf *stored = calloc((size_t)n + 1, sizeof *stored);
    for (int i = 0; i < n; i++) {
        crc[i] = (uint32_t)crc32(0, m[i].data, (uInt)m[i].len);
        if (m[i].deflate) {
            z_stream zs = {0};
            deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            size_t cap = deflateBound(&zs, (uLong)m[i].len) + 16;
            stored[i].p = xrealloc(NULL, cap);
            stored[i].cap = cap;
            zs.next_in = (Bytef *)m[i].data;
            zs.avail_in = (uInt)m[i].len;
            zs.next_out = stored[i].p;
            zs.avail_out = (uInt)cap;
            deflate(&zs, Z_FINISH);
            stored[i].n = zs.total_out;
            deflateEnd(&zs);
        } else {
            ck_put(&stored[i], m[i].data, m[i].len);
        }
        local[i] = out->n;
        size_t nl = strlen(m[i].name);
        /* padding extra field 'FB' (as torch) to align the data */
        size_t base = out->n + 30 + nl, pad = 0;
        if (o->align > 1) {
            size_t need = base + 4;
            size_t want = (need + o->align - 1) / o->align * o->align + (size_t)o->skew;
            pad = want - base;
        } else if (o->skew) {
            pad = 4 + (size_t)o->skew;
        }
        ck_str(out, "PK\3\4");
        ck_u16(out, o->zip64 ? 45 : 20);
        ck_u16(out, 0);
        ck_u16(out, m[i].deflate ? 8 : 0);
        ck_u16(out, 0);
        ck_u16(out, 0x21);
        ck_u32(out, crc[i]);
        ck_u32(out, (uint32_t)stored[i].n);
        ck_u32(out, (uint32_t)m[i].len);
        ck_u16(out, (unsigned)nl);
        ck_u16(out, (unsigned)pad);
        ck_str(out, m[i].name);
        if (pad) {
            ck_u16(out, 0x4246);
            ck_u16(out, (unsigned)(pad - 4));
            for (size_t k = 4; k < pad; k++) ck_u8(out, 'Z');
        }
        ck_put(out, stored[i].p, stored[i].n);
    }
    uint64_t cd = out->n;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(m[i].name);
        ck_str(out, "PK\1\2");
        ck_u16(out, o->zip64 ? 45 : 20);
        ck_u16(out, o->zip64 ? 45 : 20);
        ck_u16(out, 0);
        ck_u16(out, m[i].deflate ? 8 : 0);
        ck_u16(out, 0);
        ck_u16(out, 0x21);
        ck_u32(out, crc[i]);
        ck_u32(out, o->zip64 ? 0xFFFFFFFFu : (uint32_t)stored[i].n);
        ck_u32(out, o->zip64 ? 0xFFFFFFFFu : (uint32_t)m[i].len);
        ck_u16(out, (unsigned)nl);
        ck_u16(out, o->zip64 ? 28 : 0);
        ck_u16(out, 0);
        ck_u16(out, 0);
        ck_u16(out, 0);
        ck_u32(out, 0);
        ck_u32(out, o->zip64 ? 0xFFFFFFFFu : (uint32_t)local[i]);
        ck_str(out, m[i].name);
        if (o->zip64) {
            ck_u16(out, 1);
            ck_u16(out, 24);
            ck_u64(out, m[i].len);
            ck_u64(out, stored[i].n);
            ck_u64(out, local[i]);
        }
    }
    uint64_t cd_size = out->n - cd;
    if (o->zip64) {
        uint64_t rec = out->n;
        ck_str(out, "PK\6\6");
        ck_u64(out, 44);
        ck_u16(out, 45);
        ck_u16(out, 45);
        ck_u32(out, 0);
        ck_u32(out, 0);
        ck_u64(out, (uint64_t)n);
        ck_u64(out, (uint64_t)n);
        ck_u64(out, cd_size);
        ck_u64(out, cd);
        ck_str(out, "PK\6\7");
        ck_u32(out, 0);
        ck_u64(out, rec);
        ck_u32(out, 1);
    }
    ck_str(out, "PK\5\6");
    ck_u16(out, 0);
    ck_u16(out, 0);
    ck_u16(out, o->zip64 ? 0xFFFF : (unsigned)n);
    ck_u16(out, o->zip64 ? 0xFFFF : (unsigned)n);
    ck_u32(out, o->zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size);
    ck_u32(out, o->zip64 ? 0xFFFFFFFFu : (uint32_t)cd);
    ck_u16(out, 0);
    for (int i = 0; i < n; i++) ck_free(&stored[i]);
    free(stored);
    free(local);
    free(crc);
}

void ck_pt_zip(ckbuf *out, const ckbuf *pkl, const ck_tensor *t, int n, const ck_pt_opts *o) {
    ck_pt_opts def = {0};
    if (!o) o = &def;
    const char *root = o->root ? o->root : "archive";
    int nm = 0;
    ck_member *m = calloc((size_t)n + 5, sizeof *m);
    char **names = calloc((size_t)n + 5, sizeof *names);
    void **zeros = calloc((size_t)n + 1, sizeof *zeros);
    if (asprintf(&names[nm], "%s/data.pkl", root) < 0) abort();
    m[nm] = (ck_member){names[nm], pkl->p, pkl->n, o->deflate_pkl};
    nm++;
    if (o->byteorder) {
        if (asprintf(&names[nm], "%s/byteorder", root) < 0) abort();
        m[nm] = (ck_member){names[nm], o->byteorder, strlen(o->byteorder), 0};
        nm++;
    }
    for (int i = 0; i < n; i++) {
        if (asprintf(&names[nm], "%s/data/%d", root, i) < 0) abort();
        size_t nb = ck_tensor_bytes(&t[i]);
        const void *d = t[i].data;
        if (!d) d = zeros[i] = calloc(1, nb ? nb : 1);
        m[nm] = (ck_member){names[nm], d, nb, i == 0 && o->deflate_data};
        nm++;
    }
    /* torch 2.x adds this record; readers must ignore it */
    if (asprintf(&names[nm], "%s/.data/serialization_id", root) < 0) abort();
    m[nm] = (ck_member){names[nm], "1234567890", 10, 0};
    nm++;
    if (asprintf(&names[nm], "%s/version", root) < 0) abort();
    m[nm] = (ck_member){names[nm], "3\n", 2, 0};
    nm++;
    ck_zip_opts zo = o->zip;
    if (!zo.align && !zo.skew) zo.align = 64;
    ck_zip(out, m, nm, &zo);
    for (int i = 0; i < nm; i++) free(names[i]);
    for (int i = 0; i < n; i++) free(zeros[i]);
    free(zeros);
    free(names);
    free(m);
}

void ck_pt(ckbuf *out, const ck_tensor *t, int n, const ck_pt_opts *o) {
    ckbuf pkl = {0};
    ck_pt_pickle(&pkl, t, n, o ? o->wrap : NULL);
    ck_pt_zip(out, &pkl, t, n, o);
    ck_free(&pkl);
}

/* ---- PE_core key layout ---- */

typedef struct keylist {
    ck_tensor *t;
    int n, cap;
} keylist;

static void add(keylist *k, int ndim, int64_t a, int64_t b, int64_t c, int64_t d, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void add(keylist *k, int ndim, int64_t a, int64_t b, int64_t c, int64_t d, const char *fmt, ...) {
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 64;
        k->t = xrealloc(k->t, (size_t)k->cap * sizeof *k->t);
    }
    ck_tensor *t = &k->t[k->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    char *name = NULL;
    if (vasprintf(&name, fmt, ap) < 0) abort();
    va_end(ap);
    t->name = name;
    t->dtype = PE_DT_F32;
    t->ndim = ndim;
    int64_t s[4] = {a, b, c, d};
    memcpy(t->shape, s, sizeof s);
}

static void block(keylist *k, const char *pre, int i, int64_t w, int64_t mlp, int ls) {
    add(k, 2, 3 * w, w, 0, 0, "%s%d.attn.in_proj_weight", pre, i);
    add(k, 1, 3 * w, 0, 0, 0, "%s%d.attn.in_proj_bias", pre, i);
    add(k, 2, w, w, 0, 0, "%s%d.attn.out_proj.weight", pre, i);
    add(k, 1, w, 0, 0, 0, "%s%d.attn.out_proj.bias", pre, i);
    add(k, 1, w, 0, 0, 0, "%s%d.ln_1.weight", pre, i);
    add(k, 1, w, 0, 0, 0, "%s%d.ln_1.bias", pre, i);
    add(k, 1, w, 0, 0, 0, "%s%d.ln_2.weight", pre, i);
    add(k, 1, w, 0, 0, 0, "%s%d.ln_2.bias", pre, i);
    add(k, 2, mlp, w, 0, 0, "%s%d.mlp.c_fc.weight", pre, i);
    add(k, 1, mlp, 0, 0, 0, "%s%d.mlp.c_fc.bias", pre, i);
    add(k, 2, w, mlp, 0, 0, "%s%d.mlp.c_proj.weight", pre, i);
    add(k, 1, w, 0, 0, 0, "%s%d.mlp.c_proj.bias", pre, i);
    if (ls) {
        add(k, 1, w, 0, 0, 0, "%s%d.ls_1.gamma", pre, i);
        add(k, 1, w, 0, 0, 0, "%s%d.ls_2.gamma", pre, i);
    }
}

int ck_model_keys(const ck_model *m, ck_tensor **out) {
    keylist k = {0};
    int64_t w = m->width, g = m->image / m->patch, tw = m->twidth;
    add(&k, 2, m->ctx, tw, 0, 0, "positional_embedding");
    add(&k, 2, tw, m->out, 0, 0, "text_projection");
    add(&k, 0, 0, 0, 0, 0, "logit_scale");
    add(&k, 2, m->vocab, tw, 0, 0, "token_embedding.weight");
    for (int i = 0; i < m->tlayers; i++) block(&k, "transformer.resblocks.", i, tw, m->tmlp, 0);
    add(&k, 1, tw, 0, 0, 0, "ln_final.weight");
    add(&k, 1, tw, 0, 0, 0, "ln_final.bias");
    if (m->cls) add(&k, 1, w, 0, 0, 0, "visual.class_embedding");
    add(&k, 2, g * g + (m->cls ? 1 : 0), w, 0, 0, "visual.positional_embedding");
    add(&k, 2, w, m->out, 0, 0, "visual.proj");
    add(&k, 4, w, 3, m->patch, m->patch, "visual.conv1.weight");
    add(&k, 1, w, 0, 0, 0, "visual.ln_pre.weight");
    add(&k, 1, w, 0, 0, 0, "visual.ln_pre.bias");
    add(&k, 1, w, 0, 0, 0, "visual.ln_post.weight");
    add(&k, 1, w, 0, 0, 0, "visual.ln_post.bias");
    for (int i = 0; i < m->layers; i++) block(&k, "visual.transformer.resblocks.", i, w, m->mlp, m->layerscale);
    add(&k, 3, 1, 1, w, 0, "visual.attn_pool.probe");
    add(&k, 2, 3 * w, w, 0, 0, "visual.attn_pool.attn.in_proj_weight");
    add(&k, 1, 3 * w, 0, 0, 0, "visual.attn_pool.attn.in_proj_bias");
    add(&k, 2, w, w, 0, 0, "visual.attn_pool.attn.out_proj.weight");
    add(&k, 1, w, 0, 0, 0, "visual.attn_pool.attn.out_proj.bias");
    add(&k, 1, w, 0, 0, 0, "visual.attn_pool.layernorm.weight");
    add(&k, 1, w, 0, 0, 0, "visual.attn_pool.layernorm.bias");
    add(&k, 2, 4 * w, w, 0, 0, "visual.attn_pool.mlp.c_fc.weight");
    add(&k, 1, 4 * w, 0, 0, 0, "visual.attn_pool.mlp.c_fc.bias");
    add(&k, 2, w, 4 * w, 0, 0, "visual.attn_pool.mlp.c_proj.weight");
    add(&k, 1, w, 0, 0, 0, "visual.attn_pool.mlp.c_proj.bias");
    *out = k.t;
    return k.n;
}

void ck_keys_free(ck_tensor *t, int n) {
    for (int i = 0; i < n; i++) free((char *)t[i].name);
    free(t);
}

ck_model ck_official(int i, const char **name, int *heads) {
    /* pe-core.md "Released configurations" */
    static const struct { const char *name; ck_model m; int heads; } tab[] = {
        {"PE-Core-T16-384", {384, 16, 192, 12, 768, 1, 512, 32, 512, 12, 2048, 49408, 0}, 3},
        {"PE-Core-S16-384", {384, 16, 384, 12, 1536, 1, 512, 32, 512, 12, 2048, 49408, 0}, 6},
        {"PE-Core-B16-224", {224, 16, 768, 12, 3072, 1, 1024, 32, 1024, 24, 4096, 49408, 0}, 12},
        {"PE-Core-L14-336", {336, 14, 1024, 24, 4096, 1, 1024, 32, 1024, 24, 4096, 49408, 0}, 16},
        {"PE-Core-G14-448", {448, 14, 1536, 50, 8960, 0, 1280, 72, 1280, 24, 5120, 49408, 0}, 16},
    };
    if (name) *name = tab[i].name;
    if (heads) *heads = tab[i].heads;
    return tab[i].m;
}
