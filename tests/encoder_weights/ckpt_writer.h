/* ckpt_writer: builds checkpoint bytes for tests and fuzz seeds.
 *
 * Writes safetensors files and torch.save-style zip archives (hand-assembled
 * protocol-2 pickle, stored or deflated members, optional zip64 records,
 * torch's 64-byte member alignment or a deliberate misalignment), plus the
 * low-level pieces (pickle opcodes, zip members) that the negative tests
 * combine into hostile files. Independent of the reader it tests: it shares
 * no code with encoder/pe_weights.c. Test-only; aborts on out-of-memory.
 */
#ifndef PERCEPT_CKPT_WRITER_H
#define PERCEPT_CKPT_WRITER_H

#include "encoder/pe_weights.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ckbuf {
    uint8_t *p;
    size_t n, cap;
} ckbuf;

void ck_free(ckbuf *b);
void ck_put(ckbuf *b, const void *p, size_t n);
void ck_u8(ckbuf *b, unsigned v);
void ck_u16(ckbuf *b, unsigned v);
void ck_u32(ckbuf *b, uint32_t v);
void ck_u64(ckbuf *b, uint64_t v);
void ck_str(ckbuf *b, const char *s);     /* bytes of s, no NUL */

typedef struct ck_tensor {
    const char *name;
    pe_dtype dtype;
    int ndim;
    int64_t shape[PE_TENSOR_MAX_DIMS];
    const void *data;     /* numel * element size bytes; NULL = zeros */
} ck_tensor;

size_t ck_tensor_bytes(const ck_tensor *t);

/* safetensors: meta = key, value, key, value, ..., NULL (NULL for none). */
void ck_safetensors(ckbuf *out, const ck_tensor *t, int n, const char *const *meta);
/* Same into a file; sparse: writes the header only and extends the file to
 * its full size (zero data, no disk used). 0 on success. */
int ck_safetensors_file(const char *path, const ck_tensor *t, int n, const char *const *meta, int sparse);

/* ---- pickle pieces (protocol 2, as torch.save writes) ---- */
void ck_pk_proto(ckbuf *b, int proto);
void ck_pk_global(ckbuf *b, const char *mod, const char *name);  /* GLOBAL */
void ck_pk_unicode(ckbuf *b, const char *s);                     /* BINUNICODE */
void ck_pk_int(ckbuf *b, int64_t v);                             /* BININT1/2/BININT/LONG1 */
void ck_pk_op(ckbuf *b, uint8_t op);
/* _rebuild_tensor_v2(('storage', torch.<storage_cls>, key, 'cpu', numel),
 *                    offset, size, stride, False, OrderedDict()) */
void ck_pk_tensor(ckbuf *b, const char *storage_cls, const char *key, int64_t storage_numel, int64_t offset,
                  int ndim, const int64_t *size, const int64_t *stride);
const char *ck_storage_class(pe_dtype d);                         /* "FloatStorage" ... */

/* ---- zip ---- */
typedef struct ck_member {
    const char *name;
    const void *data;
    size_t len;
    int deflate;          /* 1: store deflated (method 8) */
} ck_member;

typedef struct ck_zip_opts {
    int align;            /* data offset alignment (torch: 64); 0 = none */
    int skew;             /* data offset = skew (mod align): misalignment */
    int zip64;            /* write zip64 extra fields and end records */
} ck_zip_opts;

void ck_zip(ckbuf *out, const ck_member *m, int n, const ck_zip_opts *o);

/* ---- a whole torch.save checkpoint ---- */
typedef struct ck_pt_opts {
    const char *root;       /* archive folder, default "archive" */
    const char *wrap;       /* NULL, or "state_dict" / "weights": {wrap: sd} */
    const char *byteorder;  /* NULL: no byteorder member */
    int deflate_pkl;        /* data.pkl deflated */
    int deflate_data;       /* data/0 deflated */
    ck_zip_opts zip;        /* align defaults to 64 when zip.align == 0 && !zip.skew */
} ck_pt_opts;

void ck_pt(ckbuf *out, const ck_tensor *t, int n, const ck_pt_opts *o);
/* The pickle alone ({key: tensor} with storages "0", "1", ...). */
void ck_pt_pickle(ckbuf *out, const ck_tensor *t, int n, const char *wrap);
/* Zips a given data.pkl with data/<i> members for t[i] (pickle may be
 * hand-made to refer to them). */
void ck_pt_zip(ckbuf *out, const ckbuf *pkl, const ck_tensor *t, int n, const ck_pt_opts *o);

/* ---- PE_core key layout (independent of encoder/pe_config.c) ---- */
typedef struct ck_model {
    int image, patch, width, layers, mlp, cls, out;
    int ctx, twidth, tlayers, tmlp, vocab;
    int layerscale;
} ck_model;

/* All keys of m in state-dict order; names are malloc'd (ck_keys_free).
 * data NULL (zeros). Returns the count. */
int ck_model_keys(const ck_model *m, ck_tensor **out);
void ck_keys_free(ck_tensor *t, int n);
/* The official configurations (0..4: T16, S16, B16, L14, G14). */
ck_model ck_official(int i, const char **name, int *heads);

#endif
