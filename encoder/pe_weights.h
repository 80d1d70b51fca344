/* pe_weights: reading PE_core checkpoints without Python (encoder-internal).
 *
 * Two formats, chosen by content, never by file name:
 *  - PyTorch `torch.save` zip archives (`PE-Core-*.pt`): a zip reader plus a
 *    restricted pickle machine that honours only what torch.save writes for a
 *    plain dict of tensors (OrderedDict, torch._utils._rebuild_tensor_v2,
 *    torch.{Float,Half,BFloat16}Storage, persistent ids); anything else is
 *    refused with a message naming the global or opcode and its byte offset.
 *  - safetensors (8-byte LE header length, JSON header, raw data).
 * The file is memory-mapped; tensor data points into the mapping (stored
 * zip members are never compressed by torch.save). The official loader's
 * conventions apply: a dict wrapped under "state_dict" or "weights" is
 * unwrapped and "module." is removed from key names.
 * A pe_weights is immutable after open and may be read from any thread.
 */
#ifndef PERCEPT_PE_WEIGHTS_H
#define PERCEPT_PE_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PE_DT_F32 = 0, PE_DT_F16 = 1, PE_DT_BF16 = 2 } pe_dtype;

#define PE_TENSOR_MAX_DIMS 4

typedef struct pe_tensor {
    const char *name;          /* key after unwrapping / "module." removal */
    pe_dtype dtype;
    int ndim;                  /* 0 for a scalar ([]) */
    int64_t shape[PE_TENSOR_MAX_DIMS];
    int64_t numel;
    const void *data;          /* into the mapping; contiguous, C order */
    size_t nbytes;
} pe_tensor;

typedef struct pe_weights pe_weights;

/* Opens and validates a checkpoint. Every size, offset and stride is checked
 * against the file; non-contiguous tensors are refused. On failure *out is
 * NULL and perr_msg() names the file and the problem. */
int pe_weights_open(const char *path, pe_weights **out);
/* Same, on a caller-owned buffer that must outlive the pe_weights (used by
 * the fuzz targets). */
int pe_weights_open_buffer(const void *buf, size_t len, const char *label, pe_weights **out);
void pe_weights_close(pe_weights *w);
/* The caller will not read [p, p+bytes) again: when it lies in the file
 * mapping, its whole pages are dropped from this process (MADV_DONTNEED;
 * the page cache keeps them, a later read maps them again). No-op
 * otherwise. Used after the encoder packed a matrix into its own copy. */
void pe_weights_release(pe_weights *w, const void *p, size_t bytes);

/* "pt" or "safetensors". */
const char *pe_weights_format(const pe_weights *w);
int pe_weights_count(const pe_weights *w);
const pe_tensor *pe_weights_at(const pe_weights *w, int i);
/* NULL when absent. */
const pe_tensor *pe_weights_find(const pe_weights *w, const char *name);
/* safetensors __metadata__ value for key, NULL when absent (or for .pt). */
const char *pe_weights_metadata(const pe_weights *w, const char *key);

/* Copies a tensor to float32 (converting f16/bf16). dst holds t->numel. */
void pe_tensor_to_f32(const pe_tensor *t, float *dst);

#endif
