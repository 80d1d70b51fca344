/* pe_text: the PE_core text tower forward pass (pe-core.md, "Text tower").
 *
 * DESIGN: the mask is causal and the output is the row at the first
 * end-of-text token (the first maximum id), so rows after it can never
 * influence the result: each item is computed only up to that position,
 * and the items of a batch are packed back to back (no padding rows).
 * A typical query is 5-15 of 32 positions: the GEMMs have a handful of
 * rows and are bound by streaming the weights, so they are split over
 * output columns (pe_par_linear: a fixed partition of the packed weights
 * into PE_PARTS column slices, each thread streaming its slices).
 * With a trace hook the full context is computed so that every golden
 * row can be compared; the pooled result is the same either way.
 * Never does: allocate or write to the model (pe_mm's first-use primitive
 * cache aside).
 */
#include "encoder/pe_kernels.h"
#include "encoder/pe_model_impl.h"

#include "common/perr.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct tjob {
    pe_ctx *c;
    const pe_model *m;
    int layer;
    int n;
    const int *len;          /* rows per item */
    const int *off;          /* first row of each item */
} tjob;

/* One (item, head): causal softmax(q k^T / sqrt(hd)) v. */
static void text_attn_task(void *arg, int task, int thread) {
    tjob *j = arg;
    const pe_config *cfg = &j->m->cfg;
    int W = cfg->text_width, H = cfg->text_heads, hd = W / H;
    int b = task / H, hh = task % H;
    int L = j->len[b];
    const float *base = j->c->tqkv + (size_t)j->off[b] * 3 * W;
    const float *Q = base + hh * hd, *K = base + W + hh * hd, *V = base + 2 * W + hh * hd;
    float *S = j->c->ts[thread].s;
    pe_gemm_nt(L, L, hd, Q, 3 * W, K, 3 * W, 0.0f, S, L);
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < L; i++) {
        float *row = S + (size_t)i * L;
        for (int k = 0; k <= i; k++) row[k] *= scale;
        float inv = 1.0f / pe_softmax_exp(row, i + 1);
        for (int k = 0; k <= i; k++) row[k] *= inv;
        for (int k = i + 1; k < L; k++) row[k] = 0.0f;
    }
    float *O = j->c->tattn + (size_t)j->off[b] * W + hh * hd;
    pe_gemm_nn(L, hd, L, S, L, V, 3 * W, 0.0f, O, W);
}

static void ln_rows(float *x, float *y, int rows, int d, const pe_ln *ln) {
    for (int r = 0; r < rows; r++) pe_layernorm(x + (size_t)r * d, y + (size_t)r * d, d, ln->g, ln->b, PE_LN_EPS);
}

static void add_rows(float *x, const float *y, const float *gamma, size_t rows, int d) {
    for (size_t r = 0; r < rows; r++) pe_residual(x + r * d, y + r * d, gamma, d);
}

int pe_text_forward(pe_ctx *c, const int32_t *ids, int n, float *out) {
    const pe_model *m = c->m;
    const pe_config *cfg = &m->cfg;
    int L = cfg->context_length, W = cfg->text_width, D = cfg->output_dim;
    int *len = c->tmeta, *off = c->tmeta + c->max_batch, *eot = c->tmeta + 2 * c->max_batch;
    int tracing = c->trace != NULL;
    int R = 0;
    for (int b = 0; b < n; b++) {
        const int32_t *row = ids + (size_t)b * L;
        int best = 0;
        for (int i = 1; i < L; i++)
            if (row[i] > row[best]) best = i;
        eot[b] = best;
        len[b] = tracing ? L : best + 1;
        off[b] = R;
        R += len[b];
    }

    /* token + position embeddings */
    float *x = c->tx;
    for (int b = 0; b < n; b++)
        for (int i = 0; i < len[b]; i++)
            memcpy(x + (size_t)(off[b] + i) * W, m->t.tok_emb + (size_t)ids[(size_t)b * L + i] * W, W * sizeof(float));
    pe_trace_emit(c, "t_tok", x, (size_t)L * W);
    for (int b = 0; b < n; b++)
        for (int i = 0; i < len[b]; i++) {
            float *r = x + (size_t)(off[b] + i) * W;
            const float *p = m->t.pos_emb + (size_t)i * W;
            for (int k = 0; k < W; k++) r[k] += p[k];
        }
    pe_trace_emit(c, "t_embed", x, (size_t)L * W);

    tjob j = {.c = c, .m = m, .n = n, .len = len, .off = off};
    char name[48];
    for (int l = 0; l < cfg->text_layers; l++) {
        const pe_block *bl = &m->t.blocks[l];
        j.layer = l;
        ln_rows(x, c->th, R, W, &bl->ln1);
        if (tracing) { snprintf(name, sizeof name, "t_block%d_ln1", l); pe_trace_emit(c, name, c->th, (size_t)L * W); }
        pe_par_linear(c, R, c->th, W, &bl->qkv, c->tqkv, 3 * W, 0);
        pe_pool_run(c->pool, n * cfg->text_heads, text_attn_task, &j);
        pe_par_linear(c, R, c->tattn, W, &bl->out, c->th, W, 0);
        if (tracing) { snprintf(name, sizeof name, "t_block%d_attn", l); pe_trace_emit(c, name, c->th, (size_t)L * W); }
        add_rows(x, c->th, bl->ls1, R, W);
        ln_rows(x, c->th, R, W, &bl->ln2);
        pe_par_linear(c, R, c->th, W, &bl->fc, c->tm, bl->fc.out, 1);
        pe_par_linear(c, R, c->tm, bl->fc.out, &bl->proj, c->th, W, 0);
        if (tracing) { snprintf(name, sizeof name, "t_block%d_mlp", l); pe_trace_emit(c, name, c->th, (size_t)L * W); }
        add_rows(x, c->th, bl->ls2, R, W);
        if (tracing) { snprintf(name, sizeof name, "t_block%d", l); pe_trace_emit(c, name, x, (size_t)L * W); }
    }
    if (tracing) {
        ln_rows(x, c->th, L, W, &m->t.ln_final);
        pe_trace_emit(c, "t_ln_final", c->th, (size_t)L * W);
    }
    /* ln_final on the pooled rows only, then @ text_projection */
    float *pooled = c->th;
    for (int b = 0; b < n; b++)
        pe_layernorm(x + (size_t)(off[b] + eot[b]) * W, pooled + (size_t)b * W, W, m->t.ln_final.g, m->t.ln_final.b,
                     PE_LN_EPS);
    pe_trace_emit(c, "t_pooled", pooled, W);
    pe_ctx_mm(c, 0, m->t.proj_mm, 0, n, pooled, W, out, D);
    pe_trace_emit(c, "t_final", out, D);
    return pe_ctx_take_err(c);
}
