/* pe_model_impl: the layout of pe_model and pe_ctx shared by pe_model.c,
 * pe_vision.c and pe_text.c (encoder-internal; nothing outside encoder/
 * includes this).
 *
 * Weights are float32 pointers: straight into the checkpoint's mapping
 * for float32 tensors, into buffers converted once at load for
 * float16/bfloat16 ones. Nothing here changes after pe_model_load.
 */
#ifndef PERCEPT_PE_MODEL_IMPL_H
#define PERCEPT_PE_MODEL_IMPL_H

#include "encoder/pe.h"
#include "encoder/pe_mm.h"
#include "encoder/pe_threads.h"
#include "encoder/pe_weights.h"

#include <pthread.h>

#define PE_LN_EPS 1e-5f
/* A non-native image may have up to this many times the native tokens. */
#define PE_NONNATIVE_TOKENS 4
/* Work is split into a multiple of PE_PARTS tasks whatever the thread count:
 * OpenBLAS rounds a row differently depending on where a block starts, so a
 * split by thread count made the vectors of a 1-thread and a 2-thread
 * context differ in the last bits (a file ingested locally vs through a
 * server). Balanced for 1, 2 and 4 threads. */
#define PE_PARTS 4

typedef struct pe_lin {      /* y = x W^T + b */
    const float *w;          /* [out, in] */
    const float *b;          /* [out] */
    int out, in;
    pe_mm *mm;               /* W and b packed at load (pe_mm.h) */
} pe_lin;

typedef struct pe_ln {
    const float *g, *b;
} pe_ln;

typedef struct pe_block {
    pe_ln ln1, ln2;
    pe_lin qkv, out, fc, proj;
    const float *ls1, *ls2;  /* LayerScale gammas [width], NULL when absent */
} pe_block;

typedef struct pe_vision_w {
    const float *conv1;      /* [W, 3*p*p]: rows in (c, ky, kx) order */
    const float *cls;        /* [W] or NULL */
    const float *posemb;     /* [T, W] */
    pe_ln ln_pre, ln_post;
    pe_block *blocks;
    const float *probe;      /* [W] */
    pe_lin pool_qkv;         /* [3W, W] */
    pe_lin pool_out, pool_fc, pool_proj;
    pe_ln pool_ln;
    const float *proj;       /* [W, D] */
    pe_mm *conv1_mm;         /* conv1 packed, no bias */
    pe_mm *pool_kv_mm;       /* rows W..3W of pool_qkv (keys, values) */
    pe_mm *proj_mm;          /* proj packed */
    /* 2D RoPE at the native grid: per token, hd/2 pair angles. */
    float *rope_cos, *rope_sin; /* [T, hd/2] */
    float *rope_ang;         /* [T, hd/2] the angles themselves (trace) */
    float *probe_q;          /* [W] probe @ Wq^T + bq, times 1/sqrt(pool hd) */
} pe_vision_w;

typedef struct pe_text_w {
    const float *tok_emb;    /* [vocab, TW] */
    const float *pos_emb;    /* [context, TW] */
    pe_block *blocks;
    pe_ln ln_final;
    const float *proj;       /* [TW, D] */
    pe_mm *proj_mm;
} pe_text_w;

struct pe_model {
    pe_config cfg;
    pe_weights *w;
    pe_vision_w v;
    pe_text_w t;
    int grid;                /* image_size / patch_size */
    int v_tokens;            /* grid*grid (+1 with cls) */
    float **owned;           /* converted tensors and tables, freed at the end */
    int n_owned, cap_owned;
    int64_t n_params;
    const char *dtype;
    pe_precision prec;       /* of the packed weights */
    float logit_scale;       /* exp(logit_scale) */
    uint64_t fingerprint;
};

/* Per-thread scratch of a context (one slot per pool thread). */
typedef struct pe_tscratch {
    float *a;                /* rows x max(W, TW) */
    float *b;                /* rows x max(mlp widths, 3*p*p): MLP hidden, im2col */
    float *s;                /* attention scores: qblock x tokens */
    pe_mm_tls *mm;           /* oneDNN stream, scratchpad, bf16 staging */
} pe_tscratch;

struct pe_ctx {
    const pe_model *m;
    int max_batch;
    int n_threads;
    pe_pool *pool;
    /* vision */
    float *vx;               /* [B*T, W] residual stream */
    float *vqkv;             /* [B*T, 3W] */
    float *vattn;            /* [B*T, W] concatenated heads */
    float *vposemb;          /* [4T, W] position embedding resized to a non-native grid */
    float *vrope;            /* [3][4T, hd/2] angles, cos, sin of a non-native grid */
    /* text */
    float *tx, *tqkv, *tattn, *th, *tm; /* [B*L, ...] */
    int *tmeta;              /* [3*B]: rows, first row, eot position per item */
    pe_tscratch *ts;         /* [n_threads] */
    int rows_blk;            /* rows per row task (sizing of ts) */
    int q_blk;               /* query rows per attention task */
    /* first failure inside a parallel region (pe_ctx_fail) */
    int err;
    char err_msg[256];
    pthread_mutex_t err_mu;
    /* trace */
    pe_trace_fn trace;
    void *trace_user;
    float *trbuf;            /* item-0 activations for the hook */
    size_t trbuf_n;
};

/* Parallel linear layer over the context's pool: C[M, L->out] =
 * A[M, L->in] W^T + b, then GELU when gelu != 0. Splits rows when M is
 * large, output columns otherwise (a few rows: each thread streams its
 * part of W). */
void pe_par_linear(pe_ctx *c, int M, const float *A, int lda, const pe_lin *L, float *C, int ldc,
                   int gelu);
/* y = A W^T + b through the packed weights, on the thread's state; a
 * failure is recorded in the context (pe_ctx_fail). */
void pe_ctx_mm(pe_ctx *c, int thread, const pe_mm *mm, int part, int M, const float *A, int lda, float *C, int ldc);
/* Records the first failure of a task (rc and this thread's message);
 * pe_ctx_take_err returns it on the caller's thread and clears it. */
void pe_ctx_fail(pe_ctx *c, int rc);
int pe_ctx_take_err(pe_ctx *c);
/* Calls the trace hook (no-op without one). */
void pe_trace_emit(pe_ctx *c, const char *name, const float *data, size_t n);

/* 2D RoPE tables for a gh x gw grid (+ cls token first when cls): per
 * token hd/2 pair angles, their cosines and sines. */
void pe_rope_tables(int gh, int gw, int cls, int hd, float *ang, float *cs, float *sn);

/* h, w: pixel size, multiples of the patch; checked by the caller. */
int pe_vision_forward(pe_ctx *c, const float *pixels, int n, int h, int w, float *out);
int pe_text_forward(pe_ctx *c, const int32_t *ids, int n, float *out);

#endif
