/* pe: the PE_core encoder (Meta's Perception Encoder, CLIP-style), in C.
 *
 * Spec: ../shared/docs/pe-core.md (docs/encoder.md summarises ours).
 * A pe_model holds weights and configuration; it is immutable once loaded
 * and shared by all threads. A pe_ctx holds one caller's scratch memory,
 * planned once for its maximum batch; use one pe_ctx per thread.
 */
#ifndef PERCEPT_PE_H
#define PERCEPT_PE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pe_model pe_model;
typedef struct pe_ctx pe_ctx;

typedef struct pe_config {
    char name[32];        /* "PE-Core-T16-384", ... or "custom" */
    /* vision tower */
    int image_size;       /* native input size S (square) */
    int patch_size;
    int width;
    int layers;
    int heads;
    int mlp_width;        /* rows of c_fc.weight */
    int use_cls_token;
    int pool_heads;       /* attention-pool heads (8 for all released) */
    int pool_mlp_width;   /* attn_pool MLP width (4 x width) */
    int has_layerscale;   /* ls_1/ls_2 gammas present */
    int output_dim;       /* embedding size D (vision and text) */
    /* text tower */
    int context_length;
    int text_width;
    int text_layers;
    int text_heads;
    int text_mlp_width;
    int vocab_size;
} pe_config;

/* Precision of the encoder's matrix products (docs/encoder.md,
 * "Precision"). FP32 is exact (the conformance tolerance against the
 * official model); BF16 packs the weights in bfloat16 and multiplies in
 * bf16 with float32 accumulation, on CPUs with native bf16 dot products
 * (AVX512_BF16 or AMX) only: pe_model_load refuses it elsewhere. */
typedef enum pe_precision { PE_PRECISION_FP32 = 0, PE_PRECISION_BF16 = 1 } pe_precision;

/* "fp32", "bf16". */
const char *pe_precision_name(pe_precision p);
/* Parses "fp32"/"bf16" (PERR_INVALID naming the choices otherwise). */
int pe_precision_parse(const char *s, pe_precision *out);
/* 1 when this CPU runs p natively; else 0 with the reason in why. */
int pe_precision_supported(pe_precision p, char *why, size_t n);
/* The instruction set the matrix products use on this CPU, as oneDNN
 * names it ("avx512_core_bf16", "avx2", ...; ONEDNN_MAX_CPU_ISA caps it). */
const char *pe_cpu_isa(void);

typedef struct pe_load_opts {
    /* Explicit configuration (JSON file with pe-core.md config names), for
     * checkpoints that are not one of the five official ones. NULL: taken
     * from safetensors __metadata__, else "<model>.json" next to the file,
     * else recognised from the shapes of the official configurations. */
    const char *config_path;
    /* Precision of the matrix products; the weights are packed for it once
     * at load (default PE_PRECISION_FP32). */
    pe_precision precision;
} pe_load_opts;

void pe_load_opts_default(pe_load_opts *o);

/* Loads .pt or .safetensors; checks every key and shape against the
 * configuration and names the first one that does not fit. */
int pe_model_load(const char *path, const pe_load_opts *opts, pe_model **out);
void pe_model_free(pe_model *m);

const pe_config *pe_model_config(const pe_model *m);
int64_t pe_model_param_count(const pe_model *m);
/* dtype of the stored weights: "float32", "float16", "bfloat16", "mixed". */
const char *pe_model_dtype(const pe_model *m);
/* The precision the model was loaded with (pe_load_opts.precision). */
pe_precision pe_model_precision(const pe_model *m);
/* oneDNN's kernel for the model's matrix products ("brg:avx512_core",
 * "brg:avx512_core_bf16", "gemm:jit", ...); *n_slow (if not NULL): how many
 * packed matrices have run a product on oneDNN's reference code so far (0
 * when every shape met a fast kernel). */
const char *pe_model_kernel(const pe_model *m, int *n_slow);
/* exp(logit_scale): the softmax temperature for zero-shot classification. */
float pe_model_logit_scale(const pe_model *m);
/* A stable 64-bit identity of the weights (config + sampled tensor bytes),
 * recorded by databases built with this model. */
uint64_t pe_model_fingerprint(const pe_model *m);

typedef struct pe_ctx_opts {
    int max_batch;        /* largest n passed to pe_encode_* (default 8) */
    int n_threads;        /* threads for this context's forward passes (default 1);
                             the context owns a pool of n_threads-1 workers.
                             Vectors do not depend on it (bit for bit).
                             pe_ctx_new sets OpenBLAS to one thread (process-
                             wide): size n_threads x concurrent contexts to
                             the cores (docs/encoder.md). */
} pe_ctx_opts;

void pe_ctx_opts_default(pe_ctx_opts *o);
int pe_ctx_new(const pe_model *m, const pe_ctx_opts *opts, pe_ctx **out);
void pe_ctx_free(pe_ctx *c);

/* pixels: n x [3, S, S] float32, preprocessed (see pe_image.h), S =
 * image_size. out: n x output_dim, unnormalized. n <= max_batch. */
int pe_encode_pixels(pe_ctx *c, const float *pixels, int n, float *out);
/* Same at a non-native size: n x [3, h, w], h and w multiples of the patch
 * size. As the official model: the grid part of the absolute position
 * embedding is resized bilinearly (align_corners=False), RoPE uses the
 * (h/p) x (w/p) grid. Per image at most 4x the native token count, and
 * n x tokens at most max_batch x native tokens (else PERR_TOO_LARGE). */
int pe_encode_pixels_hw(pe_ctx *c, const float *pixels, int n, int h, int w, float *out);
/* ids: n x [context_length] token ids (pe_tokenizer.h). out: n x output_dim,
 * unnormalized. */
int pe_encode_ids(pe_ctx *c, const int32_t *ids, int n, float *out);

/* Debug hook: called with every intermediate activation of the next
 * forward passes, named as in the fixtures' traces without the "trace_img_"/
 * "trace_txt_" prefix ("v_conv1", "v_embed", "v_ln_pre", "v_block0_ln1",
 * "v_block0_attn", "v_block0_mlp", "v_block0", ..., "v_ln_post",
 * "v_pool_attn", "v_pool", "v_final", "rope_freq", "v_posemb" (non-native
 * sizes only), "t_tok", "t_embed",
 * "t_block0_ln1", "t_block0_attn", "t_block0_mlp", "t_block0", ...,
 * "t_ln_final", "t_pooled", "t_final"), for batch item 0, in the layout of
 * those goldens. While a hook is set, text passes compute all context
 * positions (normally they stop at the end-of-text token). Called on the
 * thread that called pe_encode_*. NULL switches it off. */
typedef void (*pe_trace_fn)(void *user, const char *name, const float *data, size_t n);
void pe_ctx_set_trace(pe_ctx *c, pe_trace_fn fn, void *user);

/* v /= max(||v||, 1e-12) */
void pe_l2_normalize(float *v, int d);

#endif
