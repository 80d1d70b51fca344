/* The forward passes on synthetic models covering what tiny-a does not:
 * no cls token (G14 style: RoPE positions from 0), LayerScale gammas,
 * head dims and widths that are not multiples of the SIMD width, a
 * different number of pool heads, and bfloat16 storage. Each model is
 * written as a .safetensors with its config in __metadata__, loaded
 * through the real loader, and compared with an independent float64
 * reference of pe-core.md written plainly below.
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_cpu.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4
#define VOCAB 49408

/* ------------------------------------------------------ synthetic model */

typedef struct syn_cfg {
    int image, patch, width, layers, heads, mlp, cls, pool_heads, out;
    double ls;                  /* 0: no LayerScale */
    int ctx, twidth, tlayers, theads;
} syn_cfg;

typedef struct tensor {
    char name[96];
    int ndim;
    int shape[4];
    size_t n;
    float *d;
} tensor;

typedef struct model {
    syn_cfg c;
    tensor t[400];
    int nt;
} model;

static uint64_t rng_state;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}
/* Values exactly representable in bfloat16, so the F32 and BF16 files
 * hold the same numbers. */
static float bf16_round(double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static tensor *add(model *m, const char *name, int ndim, int s0, int s1, int s2, int s3, double scale,
                   double offset) {
    tensor *t = &m->t[m->nt++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    int s[4] = {s0, s1, s2, s3};
    t->n = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = s[i]; t->n *= s[i]; }
    t->d = malloc(t->n * sizeof(float));
    for (size_t i = 0; i < t->n; i++) t->d[i] = bf16_round(offset + scale * urand());
    return t;
}

static const float *get(const model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const float *get(const model *m, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, name)) return m->t[i].d;
    return NULL;
}

static void add_block(model *m, const char *pre, int W, int F, double ls) {
    char k[128];
#define B(suffix, nd, a, b, sc, off) snprintf(k, sizeof k, "%s.%s", pre, suffix), add(m, k, nd, a, b, 0, 0, sc, off)
    B("ln_1.weight", 1, W, 0, 0.2, 1.0);
    B("ln_1.bias", 1, W, 0, 0.05, 0);
    B("attn.in_proj_weight", 2, 3 * W, W, 1.7 / sqrt(W), 0);
    B("attn.in_proj_bias", 1, 3 * W, 0, 0.05, 0);
    B("attn.out_proj.weight", 2, W, W, 1.7 / sqrt(W), 0);
    B("attn.out_proj.bias", 1, W, 0, 0.05, 0);
    B("ln_2.weight", 1, W, 0, 0.2, 1.0);
    B("ln_2.bias", 1, W, 0, 0.05, 0);
    B("mlp.c_fc.weight", 2, F, W, 1.7 / sqrt(W), 0);
    B("mlp.c_fc.bias", 1, F, 0, 0.05, 0);
    B("mlp.c_proj.weight", 2, W, F, 1.7 / sqrt(F), 0);
    B("mlp.c_proj.bias", 1, W, 0, 0.05, 0);
    if (ls) {
        B("ls_1.gamma", 1, W, 0, ls / 2, ls);
        B("ls_2.gamma", 1, W, 0, ls / 2, ls);
    }
#undef B
}

static void build(model *m, const syn_cfg *c, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    rng_state = seed;
    int W = c->width, g = c->image / c->patch, T = g * g + c->cls, p = c->patch;
    add(m, "visual.conv1.weight", 4, W, 3, p, p, 1.7 / sqrt(3 * p * p), 0);
    if (c->cls) add(m, "visual.class_embedding", 1, W, 0, 0, 0, 0.5, 0);
    add(m, "visual.positional_embedding", 2, T, W, 0, 0, 0.5, 0);
    add(m, "visual.ln_pre.weight", 1, W, 0, 0, 0, 0.2, 1);
    add(m, "visual.ln_pre.bias", 1, W, 0, 0, 0, 0.05, 0);
    char k[128];
    for (int l = 0; l < c->layers; l++) {
        snprintf(k, sizeof k, "visual.transformer.resblocks.%d", l);
        add_block(m, k, W, c->mlp, c->ls);
    }
    add(m, "visual.ln_post.weight", 1, W, 0, 0, 0, 0.2, 1);
    add(m, "visual.ln_post.bias", 1, W, 0, 0, 0, 0.05, 0);
    add(m, "visual.attn_pool.probe", 3, 1, 1, W, 0, 0.5, 0);
    add(m, "visual.attn_pool.attn.in_proj_weight", 2, 3 * W, W, 0, 0, 1.7 / sqrt(W), 0);
    add(m, "visual.attn_pool.attn.in_proj_bias", 1, 3 * W, 0, 0, 0, 0.05, 0);
    add(m, "visual.attn_pool.attn.out_proj.weight", 2, W, W, 0, 0, 1.7 / sqrt(W), 0);
    add(m, "visual.attn_pool.attn.out_proj.bias", 1, W, 0, 0, 0, 0.05, 0);
    add(m, "visual.attn_pool.layernorm.weight", 1, W, 0, 0, 0, 0.2, 1);
    add(m, "visual.attn_pool.layernorm.bias", 1, W, 0, 0, 0, 0.05, 0);
    add(m, "visual.attn_pool.mlp.c_fc.weight", 2, 4 * W, W, 0, 0, 1.7 / sqrt(W), 0);
    add(m, "visual.attn_pool.mlp.c_fc.bias", 1, 4 * W, 0, 0, 0, 0.05, 0);
    add(m, "visual.attn_pool.mlp.c_proj.weight", 2, W, 4 * W, 0, 0, 1.7 / sqrt(4 * W), 0);
    add(m, "visual.attn_pool.mlp.c_proj.bias", 1, W, 0, 0, 0, 0.05, 0);
    add(m, "visual.proj", 2, W, c->out, 0, 0, 1.7 / sqrt(W), 0);
    int TW = c->twidth;
    add(m, "token_embedding.weight", 2, VOCAB, TW, 0, 0, 0.3, 0);
    add(m, "positional_embedding", 2, c->ctx, TW, 0, 0, 0.5, 0);
    for (int l = 0; l < c->tlayers; l++) {
        snprintf(k, sizeof k, "transformer.resblocks.%d", l);
        add_block(m, k, TW, 4 * TW, 0);
    }
    add(m, "ln_final.weight", 1, TW, 0, 0, 0, 0.2, 1);
    add(m, "ln_final.bias", 1, TW, 0, 0, 0, 0.05, 0);
    add(m, "text_projection", 2, TW, c->out, 0, 0, 1.7 / sqrt(TW), 0);
    add(m, "logit_scale", 0, 0, 0, 0, 0, 0.1, 2.6);
}

static void model_free(model *m) {
    for (int i = 0; i < m->nt; i++) free(m->t[i].d);
}

/* safetensors: 8-byte LE header size, JSON header, data (8-aligned). */
static int write_safetensors(const model *m, const char *path, int bf16) {
    const syn_cfg *c = &m->c;
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    char vc[512], tc[256], ls[32];
    if (c->ls) snprintf(ls, sizeof ls, "%g", c->ls);
    else snprintf(ls, sizeof ls, "null");
    snprintf(vc, sizeof vc,
             "{\"image_size\": %d, \"patch_size\": %d, \"width\": %d, \"layers\": %d, \"heads\": %d, "
             "\"mlp_ratio\": %.17g, \"output_dim\": %d, \"use_cls_token\": %s, \"pool_type\": \"attn\", "
             "\"attn_pooler_heads\": %d, \"use_abs_posemb\": true, \"use_rope2d\": true, \"ls_init_value\": %s}",
             c->image, c->patch, c->width, c->layers, c->heads, (double)c->mlp / c->width, c->out,
             c->cls ? "true" : "false", c->pool_heads, ls);
    snprintf(tc, sizeof tc,
             "{\"context_length\": %d, \"width\": %d, \"heads\": %d, \"layers\": %d, \"output_dim\": %d, "
             "\"vocab_size\": %d}",
             c->ctx, c->twidth, c->theads, c->tlayers, c->out, VOCAB);
    cJSON_AddStringToObject(meta, "vision_config", vc);
    cJSON_AddStringToObject(meta, "text_config", tc);
    size_t off = 0;
    for (int i = 0; i < m->nt; i++) {
        const tensor *t = &m->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        int is_bf = bf16 && t->ndim >= 1;
        cJSON_AddStringToObject(e, "dtype", is_bf ? "BF16" : "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber(t->shape[d]));
        size_t nb = t->n * (is_bf ? 2 : 4);
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += (nb + 7) / 8 * 8;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = (strlen(js) + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    if (!f) { free(js); return -1; }
    uint64_t hl64 = hl;
    fwrite(&hl64, 8, 1, f);
    fwrite(js, 1, strlen(js), f);
    for (size_t i = strlen(js); i < hl; i++) fputc(' ', f);
    free(js);
    for (int i = 0; i < m->nt; i++) {
        const tensor *t = &m->t[i];
        size_t nb;
        if (bf16 && t->ndim >= 1) {
            for (size_t k = 0; k < t->n; k++) {
                uint32_t u;
                memcpy(&u, &t->d[k], 4);
                uint16_t b = (uint16_t)(u >> 16);
                fwrite(&b, 2, 1, f);
            }
            nb = t->n * 2;
        } else {
            fwrite(t->d, 4, t->n, f);
            nb = t->n * 4;
        }
        for (size_t k = nb; k % 8; k++) fputc(0, f);
    }
    return fclose(f);
}

/* ------------------------------------------------- float64 reference */

static void ln(const double *x, double *y, int d, const float *g, const float *b) {
    double mu = 0, var = 0;
    for (int i = 0; i < d; i++) mu += x[i];
    mu /= d;
    for (int i = 0; i < d; i++) var += (x[i] - mu) * (x[i] - mu);
    var /= d;
    for (int i = 0; i < d; i++) y[i] = (x[i] - mu) / sqrt(var + 1e-5) * g[i] + b[i];
}

/* y[rows, out] = x[rows, in] W^T + b */
static void linear(const double *x, int rows, int in, const float *W, const float *b, int out, double *y) {
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < in; i++) s += x[(size_t)r * in + i] * W[(size_t)o * in + i];
            y[(size_t)r * out + o] = s;
        }
}

static double gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

/* Multi-head attention; q rows nq, k/v rows nk, all [*, W] (already
 * projected); causal: query i sees keys 0..i. */
static void mha(const double *q, int nq, const double *k, const double *v, int nk, int W, int H, int causal,
                double *out) {
    int hd = W / H;
    double *s = malloc(nk * sizeof(double));
    for (int h = 0; h < H; h++)
        for (int i = 0; i < nq; i++) {
            int lim = causal ? i + 1 : nk;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < lim; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++) d += q[(size_t)i * W + h * hd + e] * k[(size_t)j * W + h * hd + e];
                s[j] = d / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < lim; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
            for (int e = 0; e < hd; e++) {
                double o = 0;
                for (int j = 0; j < lim; j++) o += s[j] * v[(size_t)j * W + h * hd + e];
                out[(size_t)i * W + h * hd + e] = o / sum;
            }
        }
    free(s);
}

/* 2D RoPE on one head vector (hd dims) at grid position (row, col). */
static void rope(double *v, int hd, int row, int col) {
    int r = hd / 2, nf = r / 2;
    for (int i = 0; i < r; i++) {
        int j = i % nf;
        double a = (i < nf ? col : row) * pow(10000.0, -2.0 * j / r);
        double u = v[2 * i], w = v[2 * i + 1];
        v[2 * i] = u * cos(a) - w * sin(a);
        v[2 * i + 1] = w * cos(a) + u * sin(a);
    }
}

static void block(const model *m, const char *pre, double *x, int T, int W, int H, int F, int causal,
                  int rope_grid, int cls) {
    double *h = calloc((size_t)T * W, sizeof(double)), *qkv = calloc((size_t)T * 3 * W, sizeof(double));
    double *q = calloc((size_t)T * W, sizeof(double)), *k = calloc((size_t)T * W, sizeof(double));
    double *v = calloc((size_t)T * W, sizeof(double)), *a = calloc((size_t)T * W, sizeof(double));
    double *o = calloc((size_t)T * W, sizeof(double)), *f = calloc((size_t)T * F, sizeof(double));
    const float *ls1 = get(m, "%s.ls_1.gamma", pre), *ls2 = get(m, "%s.ls_2.gamma", pre);
    for (int t = 0; t < T; t++) ln(x + (size_t)t * W, h + (size_t)t * W, W, get(m, "%s.ln_1.weight", pre), get(m, "%s.ln_1.bias", pre));
    linear(h, T, W, get(m, "%s.attn.in_proj_weight", pre), get(m, "%s.attn.in_proj_bias", pre), 3 * W, qkv);
    int hd = W / H;
    for (int t = 0; t < T; t++) {
        memcpy(q + (size_t)t * W, qkv + (size_t)t * 3 * W, W * sizeof(double));
        memcpy(k + (size_t)t * W, qkv + (size_t)t * 3 * W + W, W * sizeof(double));
        memcpy(v + (size_t)t * W, qkv + (size_t)t * 3 * W + 2 * W, W * sizeof(double));
        if (rope_grid && !(cls && t == 0)) {
            int pi = t - cls, row = pi / rope_grid + cls, col = pi % rope_grid + cls;
            for (int hh = 0; hh < H; hh++) {
                rope(q + (size_t)t * W + hh * hd, hd, row, col);
                rope(k + (size_t)t * W + hh * hd, hd, row, col);
            }
        }
    }
    mha(q, T, k, v, T, W, H, causal, a);
    linear(a, T, W, get(m, "%s.attn.out_proj.weight", pre), get(m, "%s.attn.out_proj.bias", pre), W, o);
    for (size_t i = 0; i < (size_t)T * W; i++) x[i] += (ls1 ? ls1[i % W] : 1.0) * o[i];
    for (int t = 0; t < T; t++) ln(x + (size_t)t * W, h + (size_t)t * W, W, get(m, "%s.ln_2.weight", pre), get(m, "%s.ln_2.bias", pre));
    linear(h, T, W, get(m, "%s.mlp.c_fc.weight", pre), get(m, "%s.mlp.c_fc.bias", pre), F, f);
    for (size_t i = 0; i < (size_t)T * F; i++) f[i] = gelu(f[i]);
    linear(f, T, F, get(m, "%s.mlp.c_proj.weight", pre), get(m, "%s.mlp.c_proj.bias", pre), W, o);
    for (size_t i = 0; i < (size_t)T * W; i++) x[i] += (ls2 ? ls2[i % W] : 1.0) * o[i];
    free(h); free(qkv); free(q); free(k); free(v); free(a); free(o); free(f);
}

static void ref_image(const model *m, const float *px, double *out) {
    const syn_cfg *c = &m->c;
    int W = c->width, p = c->patch, S = c->image, g = S / p, T = g * g + c->cls;
    double *x = calloc((size_t)T * W, sizeof(double));
    const float *conv = get(m, "visual.conv1.weight");
    for (int y = 0; y < g; y++)
        for (int xx = 0; xx < g; xx++)
            for (int o = 0; o < W; o++) {
                double s = 0;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            s += conv[(((size_t)o * 3 + ch) * p + ky) * p + kx] *
                                 px[((size_t)ch * S + y * p + ky) * S + xx * p + kx];
                x[(size_t)(c->cls + y * g + xx) * W + o] = s;
            }
    if (c->cls)
        for (int o = 0; o < W; o++) x[o] = get(m, "visual.class_embedding")[o];
    const float *pos = get(m, "visual.positional_embedding");
    for (size_t i = 0; i < (size_t)T * W; i++) x[i] += pos[i];
    for (int t = 0; t < T; t++) ln(x + (size_t)t * W, x + (size_t)t * W, W, get(m, "visual.ln_pre.weight"), get(m, "visual.ln_pre.bias"));
    char pre[96];
    for (int l = 0; l < c->layers; l++) {
        snprintf(pre, sizeof pre, "visual.transformer.resblocks.%d", l);
        block(m, pre, x, T, W, c->heads, c->mlp, 0, g, c->cls);
    }
    for (int t = 0; t < T; t++) ln(x + (size_t)t * W, x + (size_t)t * W, W, get(m, "visual.ln_post.weight"), get(m, "visual.ln_post.bias"));
    /* attention pool: q from the probe, k/v from the tokens, no residual */
    const float *Wi = get(m, "visual.attn_pool.attn.in_proj_weight"), *bi = get(m, "visual.attn_pool.attn.in_proj_bias");
    double probe[4096], q[4096], a[4096], y[4096], h[4096], f[16384];
    for (int i = 0; i < W; i++) probe[i] = get(m, "visual.attn_pool.probe")[i];
    linear(probe, 1, W, Wi, bi, W, q);
    double *k = malloc((size_t)T * W * sizeof(double)), *v = malloc((size_t)T * W * sizeof(double));
    linear(x, T, W, Wi + (size_t)W * W, bi + W, W, k);
    linear(x, T, W, Wi + (size_t)2 * W * W, bi + 2 * W, W, v);
    mha(q, 1, k, v, T, W, c->pool_heads, 0, a);
    linear(a, 1, W, get(m, "visual.attn_pool.attn.out_proj.weight"), get(m, "visual.attn_pool.attn.out_proj.bias"), W, y);
    ln(y, h, W, get(m, "visual.attn_pool.layernorm.weight"), get(m, "visual.attn_pool.layernorm.bias"));
    linear(h, 1, W, get(m, "visual.attn_pool.mlp.c_fc.weight"), get(m, "visual.attn_pool.mlp.c_fc.bias"), 4 * W, f);
    for (int i = 0; i < 4 * W; i++) f[i] = gelu(f[i]);
    linear(f, 1, 4 * W, get(m, "visual.attn_pool.mlp.c_proj.weight"), get(m, "visual.attn_pool.mlp.c_proj.bias"), W, h);
    for (int i = 0; i < W; i++) y[i] += h[i];
    const float *proj = get(m, "visual.proj");
    for (int d = 0; d < c->out; d++) {
        double s = 0;
        for (int i = 0; i < W; i++) s += y[i] * proj[(size_t)i * c->out + d];
        out[d] = s;
    }
    free(x); free(k); free(v);
}

static void ref_text(const model *m, const int32_t *ids, double *out) {
    const syn_cfg *c = &m->c;
    int L = c->ctx, W = c->twidth;
    double *x = malloc((size_t)L * W * sizeof(double));
    const float *tok = get(m, "token_embedding.weight"), *pos = get(m, "positional_embedding");
    for (int i = 0; i < L; i++)
        for (int e = 0; e < W; e++) x[(size_t)i * W + e] = tok[(size_t)ids[i] * W + e] + pos[(size_t)i * W + e];
    char pre[96];
    for (int l = 0; l < c->tlayers; l++) {
        snprintf(pre, sizeof pre, "transformer.resblocks.%d", l);
        block(m, pre, x, L, W, c->theads, 4 * W, 1, 0, 0);
    }
    int best = 0;
    for (int i = 1; i < L; i++)
        if (ids[i] > ids[best]) best = i;
    double h[4096];
    ln(x + (size_t)best * W, h, W, get(m, "ln_final.weight"), get(m, "ln_final.bias"));
    const float *proj = get(m, "text_projection");
    for (int d = 0; d < c->out; d++) {
        double s = 0;
        for (int i = 0; i < W; i++) s += h[i] * proj[(size_t)i * c->out + d];
        out[d] = s;
    }
    free(x);
}

/* ----------------------------------------------------------- the cases */

static double compare(const char *what, const float *ours, const double *ref, int n) {
    float *rf = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) rf[i] = (float)ref[i];
    double d = t_rel_maxdiff(ours, rf, n);
    free(rf);
    printf("  %-44s max rel diff %.3g\n", what, d);
    if (!(d <= TOL)) t_fail(__FILE__, __LINE__, "%s: %.3g > %.0e", what, d, TOL);
    return d;
}

static void run_case(const char *label, const syn_cfg *c, uint64_t seed) {
    model *m = malloc(sizeof *m);
    build(m, c, seed);
    char *dir = t_tmpdir("pe-syn");
    REQUIRE(dir);
    char *p32 = t_path("%s/m32.safetensors", dir), *p16 = t_path("%s/mbf16.safetensors", dir);
    REQUIRE(write_safetensors(m, p32, 0) == 0 && write_safetensors(m, p16, 1) == 0);
    pe_model *pm = NULL, *pb = NULL;
    CHECK_OK(pe_model_load(p32, NULL, &pm));
    CHECK_OK(pe_model_load(p16, NULL, &pb));
    if (!pm || !pb) goto done;
    CHECK_STR(pe_model_dtype(pm), "float32");
    CHECK_STR(pe_model_dtype(pb), "mixed"); /* logit_scale stays F32 */
    CHECK_EQ_INT(pe_model_config(pm)->has_layerscale, c->ls != 0);
    CHECK_EQ_INT(pe_model_config(pm)->use_cls_token, c->cls);
    CHECK(pe_model_fingerprint(pm) == pe_model_fingerprint(pb)); /* same numbers */

    int S = c->image, D = c->out, L = c->ctx, n = 3;
    size_t per = (size_t)3 * S * S;
    float *px = malloc(n * per * sizeof(float));
    for (size_t i = 0; i < n * per; i++) px[i] = (float)urand();
    int32_t *ids = calloc((size_t)n * L, sizeof(int32_t));
    int eots[3] = {4, L - 1, 1};
    for (int b = 0; b < n; b++) {
        ids[(size_t)b * L] = 49406;
        for (int i = 1; i < eots[b]; i++) ids[(size_t)b * L + i] = (int32_t)((urand() + 1) * 24000);
        ids[(size_t)b * L + eots[b]] = 49407;
    }
    ids[(size_t)2 * L + 3] = 49407; /* a second eot: the first one counts */
    double ref[3][512];
    for (int b = 0; b < n; b++) ref_image(m, px + b * per, ref[b]);
    char what[128];
    /* vectors do not depend on the thread count, bit for bit (pe.h) */
    float img1[3 * 512], txt1[3 * 512];
    for (int threads = 1; threads <= 3; threads++) {
        pe_ctx_opts o;
        pe_ctx_opts_default(&o);
        o.max_batch = n;
        o.n_threads = threads;
        pe_ctx *cm = NULL, *cb = NULL;
        CHECK_OK(pe_ctx_new(pm, &o, &cm));
        CHECK_OK(pe_ctx_new(pb, &o, &cb));
        if (!cm || !cb) { pe_ctx_free(cm); pe_ctx_free(cb); break; }
        float out[3 * 512], outb[3 * 512];
        CHECK_OK(pe_encode_pixels(cm, px, n, out));
        CHECK_OK(pe_encode_pixels(cb, px, n, outb));
        for (int b = 0; b < n; b++) {
            snprintf(what, sizeof what, "%s image %d (%d thr)", label, b, threads);
            compare(what, out + b * D, ref[b], D);
        }
        CHECK(memcmp(out, outb, n * D * sizeof(float)) == 0); /* bf16 file = same numbers */
        if (threads == 1) memcpy(img1, out, n * D * sizeof(float));
        else CHECK(memcmp(out, img1, n * D * sizeof(float)) == 0);
        double tref[3][512];
        CHECK_OK(pe_encode_ids(cm, ids, n, out));
        for (int b = 0; b < n; b++) {
            ref_text(m, ids + (size_t)b * L, tref[b]);
            snprintf(what, sizeof what, "%s text %d, eot at %d (%d thr)", label, b, eots[b] < 3 ? eots[b] : eots[b], threads);
            compare(what, out + b * D, tref[b], D);
        }
        if (threads == 1) memcpy(txt1, out, n * D * sizeof(float));
        else CHECK(memcmp(out, txt1, n * D * sizeof(float)) == 0);
        pe_ctx_free(cm);
        pe_ctx_free(cb);
    }
    free(px);
    free(ids);
done:
    pe_model_free(pm);
    pe_model_free(pb);
    t_rmtree(dir);
    free(dir);
    free(p32);
    free(p16);
    model_free(m);
    free(m);
}

/* G14 style: no cls token (positions from 0), LayerScale, odd sizes. */
static void test_no_cls_layerscale(void) {
    syn_cfg c = {.image = 48, .patch = 8, .width = 60, .layers = 2, .heads = 5, .mlp = 150, .cls = 0,
                 .pool_heads = 6, .out = 24, .ls = 0.5, .ctx = 20, .twidth = 36, .tlayers = 2, .theads = 4};
    run_case("no-cls+ls", &c, 11);
}

/* cls token, no LayerScale, a larger head dim, 8 pool heads. */
static void test_cls_plain(void) {
    syn_cfg c = {.image = 40, .patch = 8, .width = 48, .layers = 3, .heads = 2, .mlp = 192, .cls = 1,
                 .pool_heads = 8, .out = 20, .ls = 0, .ctx = 12, .twidth = 40, .tlayers = 1, .theads = 5};
    run_case("cls", &c, 12);
}

/* A file that does not fit its declared configuration is refused at load
 * with PERR_MODEL and a message naming the key; nothing is half-loaded. */
static void expect_load_error(model *m, const char *needle) {
    char *dir = t_tmpdir("pe-syn-bad");
    char *p = t_path("%s/bad.safetensors", dir);
    REQUIRE(write_safetensors(m, p, 0) == 0);
    pe_model *pm = NULL;
    int rc = pe_model_load(p, NULL, &pm);
    CHECK(rc == PERR_MODEL);
    CHECK(pm == NULL);
    if (!strstr(perr_msg(), needle)) t_fail(__FILE__, __LINE__, "message lacks \"%s\": %s", needle, perr_msg());
    else printf("  refused as expected: %s\n", perr_msg());
    t_rmtree(dir);
    free(dir);
    free(p);
}

static void test_mismatched_files(void) {
    syn_cfg c = {.image = 32, .patch = 8, .width = 32, .layers = 2, .heads = 2, .mlp = 64, .cls = 1,
                 .pool_heads = 8, .out = 16, .ls = 0.5, .ctx = 8, .twidth = 16, .tlayers = 1, .theads = 2};
    model *m = malloc(sizeof *m);
    /* 1: the configuration says 3 layers, the file has 2 */
    build(m, &c, 21);
    m->c.layers = 3;
    expect_load_error(m, "visual.transformer.resblocks.2");
    model_free(m);
    /* 2: a LayerScale gamma missing in one block */
    build(m, &c, 22);
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, "visual.transformer.resblocks.1.ls_2.gamma"))
            snprintf(m->t[i].name, sizeof m->t[i].name, "visual.transformer.resblocks.1.ls_2.gamma_renamed");
    expect_load_error(m, "resblocks.1.ls_2.gamma");
    model_free(m);
    /* 3: a weight of the wrong shape */
    build(m, &c, 23);
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, "visual.attn_pool.mlp.c_fc.weight")) m->t[i].shape[0] = 3 * c.width,
            m->t[i].n = (size_t)3 * c.width * c.width;
    expect_load_error(m, "visual.attn_pool.mlp.c_fc.weight");
    model_free(m);
    free(m);
}

int main(void) {
    printf("encoder kernels at %s (PERCEPT_MAX_ISA=%s)\n", pe_cpu_describe(),
           getenv("PERCEPT_MAX_ISA") ? getenv("PERCEPT_MAX_ISA") : "unset");
    T_RUN(test_no_cls_layerscale);
    T_RUN(test_cls_plain);
    T_RUN(test_mismatched_files);
    return t_done();
}
