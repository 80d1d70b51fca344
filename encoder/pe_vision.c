/* pe_vision: the PE_core vision tower forward pass (pe-core.md, "Vision
 * tower").
 *
 * DESIGN: activations of the whole batch live as one row-major matrix
 * [n*T, W] in the context's scratch (planned at pe_ctx_new). Each layer is
 * three parallel regions over the context's pool:
 *   A  row blocks:  ln_1 -> qkv GEMM -> RoPE on q, k (q pre-scaled)
 *   B  (item, head, query block): softmax(q k^T) v with two sgemm calls,
 *      the score block staying in the thread's cache-sized scratch
 *   C  row blocks:  out_proj -> +residual -> ln_2 -> c_fc -> GELU ->
 *      c_proj -> +residual, the MLP hidden rows never leaving the thread
 * Row tasks are independent, so no barrier is needed inside A or C.
 * Never does: allocate (pe_mm aside: first-use primitives), write the model
 * (pe_mm's primitive cache aside), or call the trace
 * hook from a worker thread (item-0 rows are copied to the trace buffer
 * and emitted by the caller thread between regions).
 */
#include "encoder/pe_kernels.h"
#include "encoder/pe_model_impl.h"

#include "common/perr.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct vjob {
    pe_ctx *c;
    const pe_model *m;
    int n;                   /* items */
    int T, W, R;             /* tokens per item, width, rows = n*T */
    int gh, gw;              /* patch grid of this pass */
    int ih, iw;              /* pixel size */
    const float *posemb;     /* [T, W] */
    const float *rope_ang, *rope_cos, *rope_sin; /* [T, hd/2] */
    int layer;
    int rb;                  /* rows per row task, <= c->rows_blk */
    int nqb;                 /* query blocks per head */
    const float *pixels;
    /* trace buffers (item 0), NULL when not tracing */
    float *tr_ln1, *tr_attn, *tr_mlp;
    float *out;
} vjob;

static int row_tasks(const vjob *j) { return (j->R + j->rb - 1) / j->rb; }

/* Rows per task for `rows` rows: at most rows_blk (OpenBLAS re-packs the
 * weights for every call, so blocks must not be too small; measured ~4%
 * going from 64 to 256), and a task count that is a multiple of PE_PARTS
 * (not of the thread count: results must not depend on it) so that no
 * thread idles at the end of a region. */
static int pick_rb(const pe_ctx *c, int rows) {
    int nt = PE_PARTS;
    int tasks = nt * ((rows + nt * c->rows_blk - 1) / (nt * c->rows_blk));
    if (tasks < 1) tasks = 1;
    return (rows + tasks - 1) / tasks;
}

/* ------------------------------------------------------ patch embedding */

/* Task = one row block of the n*P patch rows: im2col then one GEMM. */
static void patch_task(void *arg, int task, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    const pe_config *cfg = &m->cfg;
    int p = cfg->patch_size, gw = j->gw, P = j->gh * gw, IH = j->ih, IW = j->iw, W = j->W;
    int K = 3 * p * p;
    int total = j->n * P;
    int r0 = task * j->rb, r1 = r0 + j->rb;
    if (r1 > total) r1 = total;
    float *col = j->c->ts[thread].b; /* rows_blk x 3p^2, see pe_ctx_new */
    for (int r = r0; r < r1; r++) {
        int b = r / P, pi = r % P, py = pi / gw, px = pi % gw;
        const float *img = j->pixels + (size_t)b * 3 * IH * IW;
        float *dst = col + (size_t)(r - r0) * K;
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < p; ky++) {
                memcpy(dst, img + ((size_t)ch * IH + py * p + ky) * IW + px * p, p * sizeof(float));
                dst += p;
            }
    }
    /* Destination rows are not contiguous across items (cls row), so the
     * GEMM is done per item segment of this block. */
    int off = cfg->use_cls_token ? 1 : 0;
    for (int r = r0; r < r1;) {
        int b = r / P, pi = r % P;
        int seg = P - pi < r1 - r ? P - pi : r1 - r;
        float *dst = j->c->vx + ((size_t)b * j->T + off + pi) * W;
        pe_ctx_mm(j->c, thread, m->v.conv1_mm, 0, seg, col + (size_t)(r - r0) * K, K, dst, W);
        r += seg;
    }
}

/* Task = one item: cls token, position embedding, ln_pre. */
static void embed_task(void *arg, int b, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    int W = j->W;
    float *x = j->c->vx + (size_t)b * j->T * W;
    if (m->v.cls) memcpy(x, m->v.cls, W * sizeof(float));
    for (int t = 0; t < j->T; t++) pe_residual(x + (size_t)t * W, j->posemb + (size_t)t * W, NULL, W);
}

static void ln_rows_task(void *arg, int task, int thread) {
    vjob *j = arg;
    const pe_ln *ln = (j->layer < 0) ? &j->m->v.ln_pre : &j->m->v.ln_post;
    int r0 = task * j->rb, r1 = r0 + j->rb;
    if (r1 > j->R) r1 = j->R;
    for (int r = r0; r < r1; r++) {
        float *x = j->c->vx + (size_t)r * j->W;
        pe_layernorm(x, x, j->W, ln->g, ln->b, PE_LN_EPS);
    }
}

/* ------------------------------------------------------------- blocks */

static void copy_item0_rows(float *tr, const float *src, int r0, int r1, int T, int W, int ld) {
    if (!tr || r0 >= T) return;
    for (int r = r0; r < r1 && r < T; r++) memcpy(tr + (size_t)r * W, src + (size_t)(r - r0) * ld, W * sizeof(float));
}

/* A: ln_1 -> qkv -> RoPE(q, k), q scaled by 1/sqrt(hd). */
static void qkv_task(void *arg, int task, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    const pe_block *bl = &m->v.blocks[j->layer];
    pe_tscratch *ts = &j->c->ts[thread];
    int W = j->W, T = j->T, H = m->cfg.heads, hd = W / H, half = hd / 2;
    int r0 = task * j->rb, r1 = r0 + j->rb;
    if (r1 > j->R) r1 = j->R;
    int rb = r1 - r0;
    float *h = ts->a;
    for (int r = 0; r < rb; r++)
        pe_layernorm(j->c->vx + (size_t)(r0 + r) * W, h + (size_t)r * W, W, bl->ln1.g, bl->ln1.b, PE_LN_EPS);
    copy_item0_rows(j->tr_ln1, h, r0, r1, T, W, W);
    float *qkv = j->c->vqkv + (size_t)r0 * 3 * W;
    pe_ctx_mm(j->c, thread, bl->qkv.mm, 0, rb, h, W, qkv, 3 * W);
    float scale = 1.0f / sqrtf((float)hd);
    int first = m->cfg.use_cls_token ? 1 : 0;
    for (int r = r0; r < r1; r++) {
        int t = r % T;
        float *q = j->c->vqkv + (size_t)r * 3 * W, *k = q + W;
        if (t >= first) {
            const float *cs = j->rope_cos + (size_t)t * half, *sn = j->rope_sin + (size_t)t * half;
            pe_rope_heads(q, H, hd, cs, sn, scale);
            pe_rope_heads(k, H, hd, cs, sn, 1.0f);
        } else {
            pe_scale(q, W, scale);
        }
    }
}

/* B: one (item, head, query block). */
static void attn_task(void *arg, int task, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    int W = j->W, T = j->T, H = m->cfg.heads, hd = W / H, nqb = j->nqb, qb = (T + nqb - 1) / nqb;
    int b = task / (H * nqb), rem = task % (H * nqb), hh = rem / nqb, q0 = (rem % nqb) * qb;
    int nq = T - q0 < qb ? T - q0 : qb;
    if (nq <= 0) return;
    const float *base = j->c->vqkv + (size_t)b * T * 3 * W;
    const float *Q = base + (size_t)q0 * 3 * W + hh * hd;
    const float *K = base + W + hh * hd;
    const float *V = base + 2 * W + hh * hd;
    float *O = j->c->vattn + ((size_t)b * T + q0) * W + hh * hd;
    float *S = j->c->ts[thread].s;
    if (m->prec == PE_PRECISION_BF16 && pe_attn_bf16_ok(hd)) {
        /* the bf16 precision: attention's products in bf16 too (vdpbf16ps) */
        pe_attn_pack_bf16(T, hd, K, 3 * W, V, 3 * W, S);
        pe_attn_rows_bf16(nq, T, hd, Q, 3 * W, S, O, W);
        return;
    }
    if (pe_attn_fast_ok(hd)) {
        pe_attn_pack(T, hd, K, 3 * W, V, 3 * W, S);
        pe_attn_rows(nq, T, hd, Q, 3 * W, S, O, W);
        return;
    }
    /* other head dims: sgemm on blocks of q_blk queries */
    for (int i0 = 0; i0 < nq; i0 += j->c->q_blk) {
        int ni = nq - i0 < j->c->q_blk ? nq - i0 : j->c->q_blk;
        float *sums = S + (size_t)j->c->q_blk * T;
        pe_gemm_nt(ni, T, hd, Q + (size_t)i0 * 3 * W, 3 * W, K, 3 * W, 0.0f, S, T);
        for (int i = 0; i < ni; i++) sums[i] = pe_softmax_exp(S + (size_t)i * T, T);
        pe_gemm_nn(ni, hd, T, S, T, V, 3 * W, 0.0f, O + (size_t)i0 * W, W);
        for (int i = 0; i < ni; i++) pe_scale(O + (size_t)(i0 + i) * W, hd, 1.0f / sums[i]);
    }
}

/* C: out_proj, residual, ln_2, MLP, residual. */
static void mlp_task(void *arg, int task, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    const pe_block *bl = &m->v.blocks[j->layer];
    pe_tscratch *ts = &j->c->ts[thread];
    int W = j->W, T = j->T, F = bl->fc.out;
    int r0 = task * j->rb, r1 = r0 + j->rb;
    if (r1 > j->R) r1 = j->R;
    int rb = r1 - r0;
    float *a = ts->a, *hid = ts->b;
    float *x = j->c->vx + (size_t)r0 * W;
    pe_ctx_mm(j->c, thread, bl->out.mm, 0, rb, j->c->vattn + (size_t)r0 * W, W, a, W);
    copy_item0_rows(j->tr_attn, a, r0, r1, T, W, W);
    for (int r = 0; r < rb; r++) pe_residual(x + (size_t)r * W, a + (size_t)r * W, bl->ls1, W);
    for (int r = 0; r < rb; r++)
        pe_layernorm(x + (size_t)r * W, a + (size_t)r * W, W, bl->ln2.g, bl->ln2.b, PE_LN_EPS);
    pe_ctx_mm(j->c, thread, bl->fc.mm, 0, rb, a, W, hid, F);
    pe_gelu(hid, (size_t)rb * F);
    pe_ctx_mm(j->c, thread, bl->proj.mm, 0, rb, hid, F, a, W);
    copy_item0_rows(j->tr_mlp, a, r0, r1, T, W, W);
    for (int r = 0; r < rb; r++) pe_residual(x + (size_t)r * W, a + (size_t)r * W, bl->ls2, W);
}

/* ------------------------------------------------------ attention pool */

/* ln_post, then k and v of the pool for these rows (into vqkv cols W..3W). */
static void pool_kv_task(void *arg, int task, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    int W = j->W;
    int r0 = task * j->rb, r1 = r0 + j->rb;
    if (r1 > j->R) r1 = j->R;
    int rb = r1 - r0;
    float *x = j->c->vx + (size_t)r0 * W;
    for (int r = 0; r < rb; r++)
        pe_layernorm(x + (size_t)r * W, x + (size_t)r * W, W, m->v.ln_post.g, m->v.ln_post.b, PE_LN_EPS);
    float *kv = j->c->vqkv + (size_t)r0 * 3 * W + W;
    pe_ctx_mm(j->c, thread, m->v.pool_kv_mm, 0, rb, x, W, kv, 3 * W);
}

/* One item: probe attention over its T tokens, out_proj, + MLP, @ proj. */
static void pool_item_task(void *arg, int b, int thread) {
    vjob *j = arg;
    const pe_model *m = j->m;
    const pe_config *cfg = &m->cfg;
    int W = j->W, T = j->T, H = cfg->pool_heads, hd = W / H, D = cfg->output_dim;
    pe_tscratch *ts = &j->c->ts[thread];
    float *s = ts->s;                 /* [T] scores */
    float *att = ts->a;               /* [W] */
    float *y = ts->a + W;             /* [W] */
    float *h = ts->a + 2 * W;         /* [W] */
    float *hid = ts->b;               /* [pool mlp] */
    const float *kv = j->c->vqkv + (size_t)b * T * 3 * W;
    for (int hh = 0; hh < H; hh++) {
        const float *q = m->v.probe_q + hh * hd;
        for (int t = 0; t < T; t++) {
            const float *k = kv + (size_t)t * 3 * W + W + hh * hd;
            float acc = 0;
            for (int i = 0; i < hd; i++) acc += q[i] * k[i];
            s[t] = acc;
        }
        float inv = 1.0f / pe_softmax_exp(s, T);
        float *o = att + hh * hd;
        for (int i = 0; i < hd; i++) o[i] = 0;
        for (int t = 0; t < T; t++) {
            const float *v = kv + (size_t)t * 3 * W + 2 * W + hh * hd;
            float p = s[t] * inv;
            for (int i = 0; i < hd; i++) o[i] += p * v[i];
        }
    }
    pe_ctx_mm(j->c, thread, m->v.pool_out.mm, 0, 1, att, W, y, W);
    if (b == 0 && j->tr_attn) memcpy(j->tr_attn, y, W * sizeof(float));
    pe_layernorm(y, h, W, m->v.pool_ln.g, m->v.pool_ln.b, PE_LN_EPS);
    int F = m->v.pool_fc.out;
    pe_ctx_mm(j->c, thread, m->v.pool_fc.mm, 0, 1, h, W, hid, F);
    pe_gelu(hid, F);
    pe_ctx_mm(j->c, thread, m->v.pool_proj.mm, 0, 1, hid, F, h, W);
    for (int i = 0; i < W; i++) y[i] += h[i];
    if (b == 0 && j->tr_mlp) memcpy(j->tr_mlp, y, W * sizeof(float));
    pe_ctx_mm(j->c, thread, m->v.proj_mm, 0, 1, y, W, j->out + (size_t)b * D, D);
}

/* ---------------------------------------------------------- the tower */

/* The grid part of the position embedding resized to gh x gw like
 * F.interpolate(mode="bilinear", align_corners=False) (no antialias), the
 * cls row kept in front. */
static void resize_posemb(const pe_model *m, int gh, int gw, float *out) {
    int W = m->cfg.width, g = m->grid, cls = m->cfg.use_cls_token ? 1 : 0;
    const float *src = m->v.posemb + (size_t)cls * W;
    if (cls) memcpy(out, m->v.posemb, W * sizeof(float));
    float sy = (float)g / gh, sx = (float)g / gw;
    for (int y = 0; y < gh; y++) {
        float fy = ((float)y + 0.5f) * sy - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < g ? y0 + 1 : g - 1;
        float ly = fy - y0;
        for (int x = 0; x < gw; x++) {
            float fx = ((float)x + 0.5f) * sx - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < g ? x0 + 1 : g - 1;
            float lx = fx - x0;
            const float *a = src + ((size_t)y0 * g + x0) * W, *b = src + ((size_t)y0 * g + x1) * W,
                        *cc = src + ((size_t)y1 * g + x0) * W, *d = src + ((size_t)y1 * g + x1) * W;
            float *o = out + ((size_t)cls + (size_t)y * gw + x) * W;
            for (int i = 0; i < W; i++)
                o[i] = (1 - ly) * ((1 - lx) * a[i] + lx * b[i]) + ly * ((1 - lx) * cc[i] + lx * d[i]);
        }
    }
}

int pe_vision_forward(pe_ctx *c, const float *pixels, int n, int ih, int iw, float *out) {
    const pe_model *m = c->m;
    const pe_config *cfg = &m->cfg;
    int p = cfg->patch_size, cls = cfg->use_cls_token ? 1 : 0;
    vjob j = {.c = c, .m = m, .n = n, .W = cfg->width, .pixels = pixels, .out = out, .ih = ih, .iw = iw,
              .gh = ih / p, .gw = iw / p};
    j.T = j.gh * j.gw + cls;
    j.R = n * j.T;
    int W = j.W, T = j.T, P = j.gh * j.gw, hd = W / cfg->heads;
    if (j.gh == m->grid && j.gw == m->grid) {
        j.posemb = m->v.posemb;
        j.rope_ang = m->v.rope_ang;
        j.rope_cos = m->v.rope_cos;
        j.rope_sin = m->v.rope_sin;
    } else {
        size_t nr = (size_t)T * (hd / 2);
        resize_posemb(m, j.gh, j.gw, c->vposemb);
        pe_rope_tables(j.gh, j.gw, cls, hd, c->vrope, c->vrope + nr, c->vrope + 2 * nr);
        j.posemb = c->vposemb;
        j.rope_ang = c->vrope;
        j.rope_cos = c->vrope + nr;
        j.rope_sin = c->vrope + 2 * nr;
        pe_trace_emit(c, "v_posemb", j.posemb, (size_t)T * W);
    }
    int tracing = c->trace != NULL;
    if (tracing) {
        j.tr_ln1 = c->trbuf;
        j.tr_attn = c->trbuf + (size_t)T * W;
        j.tr_mlp = c->trbuf + 2 * (size_t)T * W;
        /* angle table in the golden's layout: both dims of a pair */
        float *ang = c->trbuf;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < hd; i++) ang[(size_t)t * hd + i] = j.rope_ang[(size_t)t * (hd / 2) + i / 2];
        pe_trace_emit(c, "rope_freq", ang, (size_t)T * hd);
    }

    j.rb = pick_rb(c, n * P);
    int patch_tasks = (n * P + j.rb - 1) / j.rb;
    pe_pool_run(c->pool, patch_tasks, patch_task, &j);
    j.rb = pick_rb(c, j.R);
    if (tracing) {
        int off = cfg->use_cls_token ? 1 : 0;
        for (int ch = 0; ch < W; ch++)
            for (int pi = 0; pi < P; pi++) c->trbuf[(size_t)ch * P + pi] = c->vx[(size_t)(off + pi) * W + ch];
        pe_trace_emit(c, "v_conv1", c->trbuf, (size_t)W * P);
    }
    pe_pool_run(c->pool, n, embed_task, &j);
    pe_trace_emit(c, "v_embed", c->vx, (size_t)T * W);
    j.layer = -1;
    pe_pool_run(c->pool, row_tasks(&j), ln_rows_task, &j);
    pe_trace_emit(c, "v_ln_pre", c->vx, (size_t)T * W);

    /* Whole heads per attention task, split further only as much as
     * needed for a multiple of PE_PARTS tasks. */
    j.nqb = 1;
    while ((n * cfg->heads * j.nqb) % PE_PARTS && j.nqb < PE_PARTS * 4 && j.nqb < T) j.nqb++;
    int nqb = j.nqb;
    char name[48];
    for (int l = 0; l < cfg->layers; l++) {
        j.layer = l;
        pe_pool_run(c->pool, row_tasks(&j), qkv_task, &j);
        pe_pool_run(c->pool, n * cfg->heads * nqb, attn_task, &j);
        pe_pool_run(c->pool, row_tasks(&j), mlp_task, &j);
        if (tracing) {
            snprintf(name, sizeof name, "v_block%d_ln1", l);
            pe_trace_emit(c, name, j.tr_ln1, (size_t)T * W);
            snprintf(name, sizeof name, "v_block%d_attn", l);
            pe_trace_emit(c, name, j.tr_attn, (size_t)T * W);
            snprintf(name, sizeof name, "v_block%d_mlp", l);
            pe_trace_emit(c, name, j.tr_mlp, (size_t)T * W);
            snprintf(name, sizeof name, "v_block%d", l);
            pe_trace_emit(c, name, c->vx, (size_t)T * W);
        }
    }
    pe_pool_run(c->pool, row_tasks(&j), pool_kv_task, &j);
    pe_trace_emit(c, "v_ln_post", c->vx, (size_t)T * W);
    pe_pool_run(c->pool, n, pool_item_task, &j);
    if (tracing) {
        pe_trace_emit(c, "v_pool_attn", j.tr_attn, W);
        pe_trace_emit(c, "v_pool", j.tr_mlp, W);
        pe_trace_emit(c, "v_final", out, cfg->output_dim);
    }
    return pe_ctx_take_err(c);
}
