/* pe_model: loading a PE_core checkpoint into an immutable pe_model, and
 * the per-caller contexts (pe_ctx) that run forward passes on it.
 *
 * DESIGN: pe_model_load opens the weights (pe_weights), resolves and
 * validates the configuration (pe_config_resolve), then binds every tensor
 * the towers read to a float32 pointer: float32 tensors point straight into
 * the file mapping (no copy), float16/bfloat16 ones are converted once
 * here. RoPE tables and the (constant) attention-pool query are computed
 * here too. After load nothing in the model is written again, so any
 * number of threads may share it.
 * A pe_ctx owns everything a forward pass writes: the activation buffers
 * for max_batch items, per-thread scratch, and its thread pool. Nothing is
 * allocated during a forward pass (the matrix products' first-use
 * primitives and staging aside, pe_mm.h).
 * OpenBLAS runs single-threaded (set at pe_ctx_new; process-global): the
 * context's own pool supplies the parallelism, so n_threads is the number
 * of cores a pass uses and concurrent contexts never oversubscribe through
 * hidden BLAS threads. See docs/encoder.md.
 * Never does: abort on a bad file or input, allocate its own buffers in
 * pe_encode_*.
 */
#define _GNU_SOURCE
#include "encoder/pe.h"
#include "encoder/pe_config.h"
#include "encoder/pe_kernels.h"
#include "encoder/pe_model_impl.h"

#include "common/perr.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Declared by OpenBLAS's cblas.h; repeated for other CBLAS headers. */
void openblas_set_num_threads(int num_threads);

/* ------------------------------------------------------------- binding */

static int own(pe_model *m, float *p) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **o = realloc(m->owned, cap * sizeof *o);
        if (!o) { free(p); return perr_set(PERR_NOMEM, "model: tensor list"); }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return PERR_OK;
}

static float *own_alloc(pe_model *m, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return NULL;
    if (own(m, p)) return NULL;
    return p;
}

typedef struct binder {
    pe_model *m;
    int n_f32, n_f16, n_bf16;
    uint64_t fp;             /* FNV-1a state */
} binder;

static void fnv(uint64_t *h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) { *h ^= p[i]; *h *= 0x100000001b3ULL; }
}
static void fnv_i64(uint64_t *h, int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    fnv(h, b, 8);
}

/* Binds `name` (numel elements) to a float32 pointer; optional tensors
 * leave *out NULL when absent. */
static int bind_opt(binder *bd, const char *name, int64_t numel, const float **out, int optional) {
    pe_model *m = bd->m;
    *out = NULL;
    const pe_tensor *t = pe_weights_find(m->w, name);
    if (!t) {
        if (optional) return PERR_OK;
        return perr_set(PERR_MODEL, "missing tensor %s", name);
    }
    if (t->numel != numel)
        return perr_set(PERR_MODEL, "tensor %s has %lld elements, the configuration needs %lld", name,
                        (long long)t->numel, (long long)numel);
    if (t->dtype == PE_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        bd->n_f32++;
    } else {
        float *p = own_alloc(m, (size_t)numel);
        if (!p) return perr_set(PERR_NOMEM, "converting %s (%lld elements)", name, (long long)numel);
        pe_tensor_to_f32(t, p);
        *out = p;
        if (t->dtype == PE_DT_F16) bd->n_f16++;
        else if (t->dtype == PE_DT_BF16) bd->n_bf16++;
        else bd->n_f32++;
    }
    m->n_params += numel;
    /* Fingerprint: name, size and up to 67 sampled values of what we
     * compute with (float32 bits), in this fixed binding order, so the
     * .pt and .safetensors files of one model agree. */
    fnv(&bd->fp, name, strlen(name) + 1);
    fnv_i64(&bd->fp, numel);
    int64_t step = numel > 64 ? numel / 64 : 1;
    for (int64_t i = 0; i < numel; i += step) fnv(&bd->fp, &(*out)[i], 4);
    fnv(&bd->fp, &(*out)[numel - 1], 4);
    return PERR_OK;
}

static int bind(binder *bd, const char *name, int64_t numel, const float **out) {
    return bind_opt(bd, name, numel, out, 0);
}

static int bind_ln(binder *bd, const char *prefix, int d, pe_ln *ln) {
    char k[256];
    int rc;
    snprintf(k, sizeof k, "%s.weight", prefix);
    if ((rc = bind(bd, k, d, &ln->g))) return rc;
    snprintf(k, sizeof k, "%s.bias", prefix);
    return bind(bd, k, d, &ln->b);
}

static int bind_lin(binder *bd, const char *wname, const char *bname, int out, int in, pe_lin *l) {
    int rc;
    l->out = out;
    l->in = in;
    if ((rc = bind(bd, wname, (int64_t)out * in, &l->w))) return rc;
    return bind(bd, bname, out, &l->b);
}

static int bind_block(binder *bd, const char *prefix, int W, int F, pe_block *b) {
    char k[256], k2[256];
    int rc;
    snprintf(k, sizeof k, "%s.ln_1", prefix);
    if ((rc = bind_ln(bd, k, W, &b->ln1))) return rc;
    snprintf(k, sizeof k, "%s.attn.in_proj_weight", prefix);
    snprintf(k2, sizeof k2, "%s.attn.in_proj_bias", prefix);
    if ((rc = bind_lin(bd, k, k2, 3 * W, W, &b->qkv))) return rc;
    snprintf(k, sizeof k, "%s.attn.out_proj.weight", prefix);
    snprintf(k2, sizeof k2, "%s.attn.out_proj.bias", prefix);
    if ((rc = bind_lin(bd, k, k2, W, W, &b->out))) return rc;
    snprintf(k, sizeof k, "%s.ln_2", prefix);
    if ((rc = bind_ln(bd, k, W, &b->ln2))) return rc;
    snprintf(k, sizeof k, "%s.mlp.c_fc.weight", prefix);
    snprintf(k2, sizeof k2, "%s.mlp.c_fc.bias", prefix);
    if ((rc = bind_lin(bd, k, k2, F, W, &b->fc))) return rc;
    snprintf(k, sizeof k, "%s.mlp.c_proj.weight", prefix);
    snprintf(k2, sizeof k2, "%s.mlp.c_proj.bias", prefix);
    if ((rc = bind_lin(bd, k, k2, W, F, &b->proj))) return rc;
    snprintf(k, sizeof k, "%s.ls_1.gamma", prefix);
    if ((rc = bind_opt(bd, k, W, &b->ls1, 1))) return rc;
    snprintf(k, sizeof k, "%s.ls_2.gamma", prefix);
    if ((rc = bind_opt(bd, k, W, &b->ls2, 1))) return rc;
    if (!b->ls1 != !b->ls2)
        return perr_set(PERR_MODEL, "%s: only one of ls_1.gamma / ls_2.gamma is present", prefix);
    return PERR_OK;
}

/* ------------------------------------------------------------ RoPE */

/* Angles as the official Rope2D computes them, in float32: per axis r =
 * hd/2 dims, freq_j = 1 / 10000^(2j / r), angle = pos * freq_j; pairs
 * [0, r/2) use the column, [r/2, r) the row; with a cls token patch
 * positions start at 1 and token 0 stays unrotated. */
void pe_rope_tables(int gh, int gw, int cls, int hd, float *ang, float *cs, float *sn) {
    int half = hd / 2, r = hd / 2, nf = r / 2, T = gh * gw + cls;
    for (int t = 0; t < T; t++) {
        int row = 0, col = 0;
        if (t >= cls) {
            int pi = t - cls;
            row = pi / gw + cls;
            col = pi % gw + cls;
        }
        for (int i = 0; i < half; i++) {
            int j = i % nf;
            float e = (float)(2 * j) / (float)r;
            float freq = 1.0f / powf(10000.0f, e);
            float a = (float)(i < nf ? col : row) * freq;
            size_t at = (size_t)t * half + i;
            ang[at] = a;
            cs[at] = (float)cos((double)a);
            sn[at] = (float)sin((double)a);
        }
    }
}

static int build_rope(pe_model *m) {
    const pe_config *cfg = &m->cfg;
    int hd = cfg->width / cfg->heads;
    size_t n = (size_t)m->v_tokens * (hd / 2);
    m->v.rope_ang = own_alloc(m, n);
    m->v.rope_cos = own_alloc(m, n);
    m->v.rope_sin = own_alloc(m, n);
    if (!m->v.rope_ang || !m->v.rope_cos || !m->v.rope_sin) return perr_set(PERR_NOMEM, "RoPE tables");
    pe_rope_tables(m->grid, m->grid, cfg->use_cls_token ? 1 : 0, hd, m->v.rope_ang, m->v.rope_cos, m->v.rope_sin);
    return PERR_OK;
}

/* ------------------------------------------------------------- load */

static int bind_all(pe_model *m, binder *bd) {
    const pe_config *cfg = &m->cfg;
    int W = cfg->width, p = cfg->patch_size, D = cfg->output_dim, rc;
    char k[256];
    pe_vision_w *v = &m->v;
    if ((rc = bind(bd, "visual.conv1.weight", (int64_t)W * 3 * p * p, &v->conv1))) return rc;
    if (cfg->use_cls_token && (rc = bind(bd, "visual.class_embedding", W, &v->cls))) return rc;
    if ((rc = bind(bd, "visual.positional_embedding", (int64_t)m->v_tokens * W, &v->posemb))) return rc;
    if ((rc = bind_ln(bd, "visual.ln_pre", W, &v->ln_pre))) return rc;
    v->blocks = calloc(cfg->layers, sizeof *v->blocks);
    if (!v->blocks) return perr_set(PERR_NOMEM, "vision blocks");
    for (int l = 0; l < cfg->layers; l++) {
        snprintf(k, sizeof k, "visual.transformer.resblocks.%d", l);
        if ((rc = bind_block(bd, k, W, cfg->mlp_width, &v->blocks[l]))) return rc;
        if (!!v->blocks[l].ls1 != !!cfg->has_layerscale)
            return perr_set(PERR_MODEL, "%s: LayerScale gammas %s, but the configuration says %s", k,
                            v->blocks[l].ls1 ? "present" : "absent", cfg->has_layerscale ? "present" : "absent");
    }
    if ((rc = bind_ln(bd, "visual.ln_post", W, &v->ln_post))) return rc;
    if ((rc = bind(bd, "visual.attn_pool.probe", W, &v->probe))) return rc;
    if ((rc = bind_lin(bd, "visual.attn_pool.attn.in_proj_weight", "visual.attn_pool.attn.in_proj_bias", 3 * W, W,
                       &v->pool_qkv)))
        return rc;
    if ((rc = bind_lin(bd, "visual.attn_pool.attn.out_proj.weight", "visual.attn_pool.attn.out_proj.bias", W, W,
                       &v->pool_out)))
        return rc;
    if ((rc = bind_ln(bd, "visual.attn_pool.layernorm", W, &v->pool_ln))) return rc;
    if ((rc = bind_lin(bd, "visual.attn_pool.mlp.c_fc.weight", "visual.attn_pool.mlp.c_fc.bias", cfg->pool_mlp_width,
                       W, &v->pool_fc)))
        return rc;
    if ((rc = bind_lin(bd, "visual.attn_pool.mlp.c_proj.weight", "visual.attn_pool.mlp.c_proj.bias", W,
                       cfg->pool_mlp_width, &v->pool_proj)))
        return rc;
    if ((rc = bind(bd, "visual.proj", (int64_t)W * D, &v->proj))) return rc;

    int TW = cfg->text_width;
    pe_text_w *t = &m->t;
    if ((rc = bind(bd, "token_embedding.weight", (int64_t)cfg->vocab_size * TW, &t->tok_emb))) return rc;
    if ((rc = bind(bd, "positional_embedding", (int64_t)cfg->context_length * TW, &t->pos_emb))) return rc;
    t->blocks = calloc(cfg->text_layers, sizeof *t->blocks);
    if (!t->blocks) return perr_set(PERR_NOMEM, "text blocks");
    for (int l = 0; l < cfg->text_layers; l++) {
        snprintf(k, sizeof k, "transformer.resblocks.%d", l);
        if ((rc = bind_block(bd, k, TW, cfg->text_mlp_width, &t->blocks[l]))) return rc;
    }
    if ((rc = bind_ln(bd, "ln_final", TW, &t->ln_final))) return rc;
    if ((rc = bind(bd, "text_projection", (int64_t)TW * D, &t->proj))) return rc;
    const float *ls;
    if ((rc = bind(bd, "logit_scale", 1, &ls))) return rc;
    m->logit_scale = expf(ls[0]);
    return PERR_OK;
}

/* Every matrix product's weights packed once for the chosen precision
 * (pe_mm.h). Vision products run on row blocks (one part); the text
 * tower's few-row products are split by output columns (PE_PARTS parts,
 * a fixed partition: vectors do not depend on the thread count). */
static int pack_lin(pe_model *m, pe_lin *l, int parts) {
    int rc = pe_mm_new(l->out, l->in, l->w, l->in, 1, l->b, m->prec, parts, &l->mm);
    /* never read again: keep the mapped float32 copy out of our RSS */
    if (!rc) pe_weights_release(m->w, l->w, (size_t)l->out * l->in * sizeof(float));
    return rc;
}

static int pack_block(pe_model *m, pe_block *b, int parts) {
    int rc;
    if ((rc = pack_lin(m, &b->qkv, parts)) || (rc = pack_lin(m, &b->out, parts)) ||
        (rc = pack_lin(m, &b->fc, parts)) || (rc = pack_lin(m, &b->proj, parts)))
        return rc;
    return PERR_OK;
}

static int pack_all(pe_model *m) {
    const pe_config *cfg = &m->cfg;
    pe_precision pr = m->prec;
    int W = cfg->width, p = cfg->patch_size, D = cfg->output_dim, rc;
    pe_vision_w *v = &m->v;
    if ((rc = pe_mm_new(W, 3 * p * p, v->conv1, 3 * p * p, 1, NULL, pr, 1, &v->conv1_mm))) return rc;
    for (int l = 0; l < cfg->layers; l++)
        if ((rc = pack_block(m, &v->blocks[l], 1))) return perr_prefix(rc, "vision block %d", l);
    if ((rc = pe_mm_new(2 * W, W, v->pool_qkv.w + (size_t)W * W, W, 1, v->pool_qkv.b + W, pr, 1, &v->pool_kv_mm)) ||
        (rc = pack_lin(m, &v->pool_out, 1)) || (rc = pack_lin(m, &v->pool_fc, 1)) ||
        (rc = pack_lin(m, &v->pool_proj, 1)) || (rc = pe_mm_new(D, W, v->proj, D, 0, NULL, pr, 1, &v->proj_mm)))
        return perr_prefix(rc, "vision attention pool");
    for (int l = 0; l < cfg->text_layers; l++)
        if ((rc = pack_block(m, &m->t.blocks[l], PE_PARTS))) return perr_prefix(rc, "text block %d", l);
    if ((rc = pe_mm_new(D, cfg->text_width, m->t.proj, D, 0, NULL, pr, 1, &m->t.proj_mm)))
        return perr_prefix(rc, "text projection");
    return PERR_OK;
}

static void free_block(pe_block *b) {
    pe_mm_free(b->qkv.mm);
    pe_mm_free(b->out.mm);
    pe_mm_free(b->fc.mm);
    pe_mm_free(b->proj.mm);
}

static int check_config(const pe_config *c) {
    /* pe_config_resolve validated the file against the configuration; here
     * only what the forward pass itself relies on. */
    if (c->image_size <= 0 || c->patch_size <= 0 || c->image_size % c->patch_size)
        return perr_set(PERR_MODEL, "image_size %d is not a multiple of patch_size %d", c->image_size, c->patch_size);
    if (c->width <= 0 || c->heads <= 0 || c->width % c->heads || (c->width / c->heads) % 4)
        return perr_set(PERR_MODEL, "vision width %d / heads %d: head dim must be a multiple of 4 (2D RoPE)",
                        c->width, c->heads);
    if (c->pool_heads <= 0 || c->width % c->pool_heads)
        return perr_set(PERR_MODEL, "vision width %d not divisible by %d pool heads", c->width, c->pool_heads);
    if (c->text_width <= 0 || c->text_heads <= 0 || c->text_width % c->text_heads)
        return perr_set(PERR_MODEL, "text width %d not divisible by %d heads", c->text_width, c->text_heads);
    if (c->layers < 0 || c->text_layers < 0 || c->mlp_width <= 0 || c->text_mlp_width <= 0 ||
        c->pool_mlp_width <= 0 || c->output_dim <= 0 || c->context_length <= 0 || c->vocab_size <= 0)
        return perr_set(PERR_MODEL, "configuration has a non-positive size");
    return PERR_OK;
}

void pe_load_opts_default(pe_load_opts *o) { memset(o, 0, sizeof *o); }

int pe_model_load(const char *path, const pe_load_opts *opts, pe_model **out) {
    *out = NULL;
    pe_load_opts def;
    if (!opts) { pe_load_opts_default(&def); opts = &def; }
    char why[160];
    if (opts->precision != PE_PRECISION_FP32 && opts->precision != PE_PRECISION_BF16)
        return perr_set(PERR_INVALID, "%s: precision %d (fp32 or bf16)", path, (int)opts->precision);
    if (!pe_precision_supported(opts->precision, why, sizeof why))
        return perr_set(PERR_UNSUPPORTED, "%s: %s", path, why);
    pe_model *m = calloc(1, sizeof *m);
    if (!m) return perr_set(PERR_NOMEM, "model");
    m->prec = opts->precision;
    int rc = pe_weights_open(path, &m->w);
    if (rc) goto fail;
    if ((rc = pe_config_resolve(m->w, opts->config_path, path, &m->cfg))) goto fail;
    if ((rc = check_config(&m->cfg))) goto fail;
    m->grid = m->cfg.image_size / m->cfg.patch_size;
    m->v_tokens = m->grid * m->grid + (m->cfg.use_cls_token ? 1 : 0);

    binder bd = {.m = m, .fp = 0xcbf29ce484222325ULL};
    const pe_config *c = &m->cfg;
    int64_t cf[] = {c->image_size, c->patch_size, c->width, c->layers, c->heads, c->mlp_width,
                    c->use_cls_token, c->pool_heads, c->pool_mlp_width, c->has_layerscale, c->output_dim,
                    c->context_length, c->text_width, c->text_layers, c->text_heads, c->text_mlp_width,
                    c->vocab_size};
    fnv(&bd.fp, "pe-core-v1", 10);
    for (size_t i = 0; i < sizeof cf / sizeof cf[0]; i++) fnv_i64(&bd.fp, cf[i]);
    if ((rc = bind_all(m, &bd))) goto fail;
    m->fingerprint = bd.fp;
    int kinds = (bd.n_f32 > 0) + (bd.n_f16 > 0) + (bd.n_bf16 > 0);
    m->dtype = kinds > 1 ? "mixed" : bd.n_f16 ? "float16" : bd.n_bf16 ? "bfloat16" : "float32";
    if ((rc = build_rope(m))) goto fail;

    /* The pool's query does not depend on the image: probe @ Wq^T + bq,
     * pre-scaled by 1/sqrt(pool head dim). */
    int W = c->width;
    float *pq = own_alloc(m, W);
    if (!pq) { rc = perr_set(PERR_NOMEM, "pool query"); goto fail; }
    pe_gemm_nt_ref(1, W, W, m->v.probe, W, m->v.pool_qkv.w, W, 0.0f, pq, W);
    float sc = 1.0f / sqrtf((float)(W / c->pool_heads));
    for (int i = 0; i < W; i++) pq[i] = (pq[i] + m->v.pool_qkv.b[i]) * sc;
    m->v.probe_q = pq;
    if ((rc = pack_all(m))) goto fail;
    *out = m;
    return PERR_OK;
fail:
    perr_prefix(rc, "%s", path);
    pe_model_free(m);
    return rc;
}

void pe_model_free(pe_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    if (m->v.blocks)
        for (int l = 0; l < m->cfg.layers; l++) free_block(&m->v.blocks[l]);
    if (m->t.blocks)
        for (int l = 0; l < m->cfg.text_layers; l++) free_block(&m->t.blocks[l]);
    pe_mm_free(m->v.conv1_mm);
    pe_mm_free(m->v.pool_kv_mm);
    pe_mm_free(m->v.pool_out.mm);
    pe_mm_free(m->v.pool_fc.mm);
    pe_mm_free(m->v.pool_proj.mm);
    pe_mm_free(m->v.proj_mm);
    pe_mm_free(m->t.proj_mm);
    free(m->v.blocks);
    free(m->t.blocks);
    pe_weights_close(m->w);
    free(m);
}

const pe_config *pe_model_config(const pe_model *m) { return &m->cfg; }
int64_t pe_model_param_count(const pe_model *m) { return m->n_params; }
const char *pe_model_dtype(const pe_model *m) { return m->dtype; }
pe_precision pe_model_precision(const pe_model *m) { return m->prec; }

static int slow(const pe_mm *mm) {
    int r = 0;
    if (mm) pe_mm_impl(mm, &r);
    return r;
}

const char *pe_model_kernel(const pe_model *m, int *n_slow) {
    if (n_slow) {
        int n = slow(m->v.conv1_mm) + slow(m->v.pool_kv_mm) + slow(m->v.pool_out.mm) + slow(m->v.pool_fc.mm) +
                slow(m->v.pool_proj.mm) + slow(m->v.proj_mm) + slow(m->t.proj_mm);
        for (int l = 0; l < m->cfg.layers; l++) {
            const pe_block *b = &m->v.blocks[l];
            n += slow(b->qkv.mm) + slow(b->out.mm) + slow(b->fc.mm) + slow(b->proj.mm);
        }
        for (int l = 0; l < m->cfg.text_layers; l++) {
            const pe_block *b = &m->t.blocks[l];
            n += slow(b->qkv.mm) + slow(b->out.mm) + slow(b->fc.mm) + slow(b->proj.mm);
        }
        *n_slow = n;
    }
    return pe_mm_impl(m->v.conv1_mm, NULL);
}

const char *pe_precision_name(pe_precision p) { return p == PE_PRECISION_BF16 ? "bf16" : "fp32"; }

int pe_precision_parse(const char *s, pe_precision *out) {
    if (s && !strcmp(s, "fp32")) { *out = PE_PRECISION_FP32; return PERR_OK; }
    if (s && !strcmp(s, "bf16")) { *out = PE_PRECISION_BF16; return PERR_OK; }
    return perr_set(PERR_INVALID, "precision \"%s\": expected fp32 or bf16", s ? s : "");
}

int pe_precision_supported(pe_precision p, char *why, size_t n) {
    if (p != PE_PRECISION_BF16 || pe_mm_native_bf16()) return 1;
    snprintf(why, n, "bf16 needs a CPU with native bf16 dot products (AVX512_BF16 or AMX); this one runs %s: use fp32",
             pe_mm_isa());
    return 0;
}

const char *pe_cpu_isa(void) { return pe_mm_isa(); }
float pe_model_logit_scale(const pe_model *m) { return m->logit_scale; }
uint64_t pe_model_fingerprint(const pe_model *m) { return m->fingerprint; }

/* -------------------------------------------------------------- ctx */

void pe_ctx_opts_default(pe_ctx_opts *o) {
    o->max_batch = 8;
    o->n_threads = 1;
}

#define PE_MAX_THREADS 64
#define PE_MAX_BATCH 4096

/* Zeroed, 64-byte aligned (a cache line: with calloc's 16-byte alignment
 * every zmm load and store of a row split across two lines). */
static float *zalloc(size_t n, size_t *total) {
    *total += n * sizeof(float);
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

int pe_ctx_new(const pe_model *m, const pe_ctx_opts *opts, pe_ctx **out) {
    *out = NULL;
    pe_ctx_opts def;
    if (!opts) { pe_ctx_opts_default(&def); opts = &def; }
    if (opts->max_batch < 1 || opts->max_batch > PE_MAX_BATCH)
        return perr_set(PERR_INVALID, "encoder context: max_batch %d (1..%d)", opts->max_batch, PE_MAX_BATCH);
    if (opts->n_threads < 1 || opts->n_threads > PE_MAX_THREADS)
        return perr_set(PERR_INVALID, "encoder context: n_threads %d (1..%d)", opts->n_threads, PE_MAX_THREADS);
    /* Our pools are the parallelism; BLAS threads would oversubscribe. */
    openblas_set_num_threads(1);

    const pe_config *cfg = &m->cfg;
    pe_ctx *c = calloc(1, sizeof *c);
    if (!c) return perr_set(PERR_NOMEM, "encoder context");
    c->m = m;
    c->max_batch = opts->max_batch;
    c->n_threads = opts->n_threads;
    pthread_mutex_init(&c->err_mu, NULL);
    int rc = pe_pool_new(opts->n_threads, &c->pool);
    if (rc) { pe_ctx_free(c); return rc; }

    size_t B = (size_t)opts->max_batch, T = m->v_tokens, W = cfg->width, L = cfg->context_length,
           TW = cfg->text_width, p = cfg->patch_size;
    c->rows_blk = 256;
    c->q_blk = 64; /* query rows per sgemm in the attention fallback */
    size_t total = 0;
    c->vx = zalloc(B * T * W, &total);
    c->vqkv = zalloc(B * T * 3 * W, &total);
    c->vattn = zalloc(B * T * W, &total);
    c->tx = zalloc(B * L * TW, &total);
    c->tqkv = zalloc(B * L * 3 * TW, &total);
    c->tattn = zalloc(B * L * TW, &total);
    c->th = zalloc(B * L * TW, &total);
    c->tm = zalloc(B * L * cfg->text_mlp_width, &total);
    c->tmeta = calloc(3 * B, sizeof(int));
    c->ts = calloc(opts->n_threads, sizeof *c->ts);
    int ok = c->vx && c->vqkv && c->vattn && c->tx && c->tqkv && c->tattn && c->th && c->tm && c->tmeta && c->ts;
    size_t na = maxz((size_t)c->rows_blk * W, 3 * W);
    size_t nb = maxz(maxz((size_t)c->rows_blk * cfg->mlp_width, cfg->pool_mlp_width), (size_t)c->rows_blk * 3 * p * p);
    size_t hd = W / cfg->heads;
    /* non-native image sizes: up to PE_NONNATIVE_TOKENS x the native tokens
     * per image (pe_encode_pixels_hw) */
    size_t Tx = PE_NONNATIVE_TOKENS * T;
    size_t ns = maxz(maxz((size_t)c->q_blk * Tx + c->q_blk, pe_attn_scratch((int)Tx, (int)hd)), maxz(Tx, L * L));
    c->vposemb = zalloc(Tx * W, &total);
    c->vrope = zalloc(3 * Tx * (hd / 2), &total);
    ok = ok && c->vposemb && c->vrope;
    for (int i = 0; ok && i < opts->n_threads; i++) {
        c->ts[i].a = zalloc(na, &total);
        c->ts[i].b = zalloc(nb, &total);
        c->ts[i].s = zalloc(ns, &total);
        ok = c->ts[i].a && c->ts[i].b && c->ts[i].s;
        if (ok && (rc = pe_mm_tls_new(&c->ts[i].mm))) {
            pe_ctx_free(c);
            return rc;
        }
    }
    if (!ok) {
        pe_ctx_free(c);
        return perr_set(PERR_NOMEM, "encoder context: %zu MB of scratch for batch %zu", total >> 20, B);
    }
    *out = c;
    return PERR_OK;
}

void pe_ctx_free(pe_ctx *c) {
    if (!c) return;
    pe_pool_free(c->pool);
    free(c->vx);
    free(c->vqkv);
    free(c->vattn);
    free(c->vposemb);
    free(c->vrope);
    free(c->tx);
    free(c->tqkv);
    free(c->tattn);
    free(c->th);
    free(c->tm);
    free(c->tmeta);
    if (c->ts)
        for (int i = 0; i < c->n_threads; i++) {
            free(c->ts[i].a);
            free(c->ts[i].b);
            free(c->ts[i].s);
            pe_mm_tls_free(c->ts[i].mm);
        }
    free(c->ts);
    free(c->trbuf);
    pthread_mutex_destroy(&c->err_mu);
    free(c);
}

void pe_ctx_fail(pe_ctx *c, int rc) {
    if (!rc) return;
    pthread_mutex_lock(&c->err_mu);
    if (!c->err) {
        c->err = rc;
        snprintf(c->err_msg, sizeof c->err_msg, "%s", perr_msg());
    }
    pthread_mutex_unlock(&c->err_mu);
}

int pe_ctx_take_err(pe_ctx *c) {
    pthread_mutex_lock(&c->err_mu);
    int rc = c->err;
    c->err = 0;
    pthread_mutex_unlock(&c->err_mu);
    return rc ? perr_set(rc, "encoder: %s", c->err_msg) : PERR_OK;
}

void pe_ctx_mm(pe_ctx *c, int thread, const pe_mm *mm, int part, int M, const float *A, int lda, float *C, int ldc) {
    int rc = pe_mm_run(mm, part, c->ts[thread].mm, M, A, lda, C, ldc);
    if (rc) pe_ctx_fail(c, rc);
}

void pe_ctx_set_trace(pe_ctx *c, pe_trace_fn fn, void *user) {
    const pe_config *cfg = &c->m->cfg;
    size_t T = c->m->v_tokens, W = cfg->width;
    size_t need = 3 * PE_NONNATIVE_TOKENS * T * W;
    if (fn && !c->trbuf) {
        c->trbuf = malloc(need * sizeof(float));
        if (!c->trbuf) fn = NULL; /* debugging aid only: silently off */
        c->trbuf_n = need;
    }
    c->trace = fn;
    c->trace_user = user;
}

void pe_trace_emit(pe_ctx *c, const char *name, const float *data, size_t n) {
    if (c->trace) c->trace(c->trace_user, name, data, n);
}

/* ------------------------------------------------------ parallel linear */

typedef struct linjob {
    pe_ctx *c;
    int M, lda, ldc, gelu;
    const float *A;
    const pe_lin *L;
    float *C;
} linjob;

/* Task = one column part of the packed weights, all rows. */
static void lin_task(void *arg, int part, int thread) {
    linjob *j = arg;
    int c0, n;
    pe_mm_part_cols(j->L->mm, part, &c0, &n);
    pe_ctx_mm(j->c, thread, j->L->mm, part, j->M, j->A, j->lda, j->C + c0, j->ldc);
    if (j->gelu)
        for (int r = 0; r < j->M; r++) pe_gelu(j->C + (size_t)r * j->ldc + c0, n);
}

void pe_par_linear(pe_ctx *c, int M, const float *A, int lda, const pe_lin *L, float *C, int ldc, int gelu) {
    linjob j = {.c = c, .M = M, .lda = lda, .ldc = ldc, .gelu = gelu, .A = A, .L = L, .C = C};
    pe_pool_run(c->pool, pe_mm_parts(L->mm), lin_task, &j);
}

/* ----------------------------------------------------------- encode */

static int check_batch(pe_ctx *c, int n, const void *in, const float *out, const char *what) {
    if (n < 0 || n > c->max_batch)
        return perr_set(PERR_INVALID, "%s: batch of %d, this context holds at most %d", what, n, c->max_batch);
    if (n > 0 && (!in || !out)) return perr_set(PERR_INVALID, "%s: NULL input or output", what);
    return PERR_OK;
}

int pe_encode_pixels_hw(pe_ctx *c, const float *pixels, int n, int h, int w, float *out) {
    int rc = check_batch(c, n, pixels, out, "encode pixels");
    if (rc || n == 0) return rc;
    const pe_config *cfg = &c->m->cfg;
    int p = cfg->patch_size;
    if (h <= 0 || w <= 0 || h % p || w % p)
        return perr_set(PERR_INVALID, "encode pixels: %dx%d is not a positive multiple of the patch size %d", h, w, p);
    int64_t T = (int64_t)(h / p) * (w / p) + (cfg->use_cls_token ? 1 : 0), Tn = c->m->v_tokens;
    if (T > PE_NONNATIVE_TOKENS * Tn || T * n > Tn * c->max_batch)
        return perr_set(PERR_TOO_LARGE,
                        "encode pixels: %d images of %dx%d (%lld tokens each) exceed this context (%d x %lld tokens, "
                        "at most %d x %lld per image)",
                        n, h, w, (long long)T, c->max_batch, (long long)Tn, PE_NONNATIVE_TOKENS, (long long)Tn);
    size_t per = (size_t)3 * h * w;
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < per; i++)
            if (!isfinite(pixels[b * per + i]))
                return perr_set(PERR_INVALID, "encode pixels: item %d has a non-finite value at index %zu", b, i);
    return pe_vision_forward(c, pixels, n, h, w, out);
}

int pe_encode_pixels(pe_ctx *c, const float *pixels, int n, float *out) {
    int S = c->m->cfg.image_size;
    return pe_encode_pixels_hw(c, pixels, n, S, S, out);
}

int pe_encode_ids(pe_ctx *c, const int32_t *ids, int n, float *out) {
    int rc = check_batch(c, n, ids, out, "encode text");
    if (rc || n == 0) return rc;
    int L = c->m->cfg.context_length, V = c->m->cfg.vocab_size;
    for (int b = 0; b < n; b++)
        for (int i = 0; i < L; i++) {
            int32_t id = ids[(size_t)b * L + i];
            if (id < 0 || id >= V)
                return perr_set(PERR_INVALID, "encode text: item %d position %d: token id %d outside [0, %d)", b, i,
                                id, V);
        }
    return pe_text_forward(c, ids, n, out);
}
