/* bench_ckpt: writes a safetensors checkpoint with the real PE_core key names
 * and shapes of a configuration and random weights, so benchmarks exercise
 * the real loader (configuration recognised from the shapes). Shared by
 * bench_encoder and bench_video_ingest. */
#define _GNU_SOURCE
#include "bench/common/bench_ckpt.h"
#include "common/perr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x243f6a8885a308d3ULL;

void bench_seed(uint64_t seed) { rng = seed; }
float bench_urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef void (*key_fn)(void *u, const char *name, int nd, const int64_t *shape, float scale, float offset);

static void emit(key_fn fn, void *u, const char *name, int nd, int64_t a, int64_t b, int64_t c, int64_t d,
                 float scale, float offset) {
    int64_t s[4] = {a, b, c, d};
    fn(u, name, nd, s, scale, offset);
}

static void block_keys(key_fn fn, void *u, const char *pre, int W, int F) {
    char k[160];
    float sw = sqrtf(3.0f / W), sf = sqrtf(3.0f / F);
#define K(suf, nd, a, b, sc, off) (snprintf(k, sizeof k, "%s.%s", pre, suf), emit(fn, u, k, nd, a, b, 0, 0, sc, off))
    K("ln_1.weight", 1, W, 0, 0.1f, 1.0f);
    K("ln_1.bias", 1, W, 0, 0.02f, 0);
    K("attn.in_proj_weight", 2, 3 * W, W, sw, 0);
    K("attn.in_proj_bias", 1, 3 * W, 0, 0.02f, 0);
    K("attn.out_proj.weight", 2, W, W, sw, 0);
    K("attn.out_proj.bias", 1, W, 0, 0.02f, 0);
    K("ln_2.weight", 1, W, 0, 0.1f, 1.0f);
    K("ln_2.bias", 1, W, 0, 0.02f, 0);
    K("mlp.c_fc.weight", 2, F, W, sw, 0);
    K("mlp.c_fc.bias", 1, F, 0, 0.02f, 0);
    K("mlp.c_proj.weight", 2, W, F, sf, 0);
    K("mlp.c_proj.bias", 1, W, 0, 0.02f, 0);
#undef K
}

/* Every key of the official layout (pe-core.md), in state_dict order. */
static void model_keys(const pe_config *c, key_fn fn, void *u) {
    int W = c->width, p = c->patch_size, g = c->image_size / p, T = g * g + c->use_cls_token, D = c->output_dim;
    float sw = sqrtf(3.0f / W);
    char k[160];
    emit(fn, u, "visual.conv1.weight", 4, W, 3, p, p, sqrtf(3.0f / (3 * p * p)), 0);
    if (c->use_cls_token) emit(fn, u, "visual.class_embedding", 1, W, 0, 0, 0, 0.5f, 0);
    emit(fn, u, "visual.positional_embedding", 2, T, W, 0, 0, 0.5f, 0);
    emit(fn, u, "visual.ln_pre.weight", 1, W, 0, 0, 0, 0.1f, 1);
    emit(fn, u, "visual.ln_pre.bias", 1, W, 0, 0, 0, 0.02f, 0);
    for (int l = 0; l < c->layers; l++) {
        snprintf(k, sizeof k, "visual.transformer.resblocks.%d", l);
        block_keys(fn, u, k, W, c->mlp_width);
    }
    emit(fn, u, "visual.ln_post.weight", 1, W, 0, 0, 0, 0.1f, 1);
    emit(fn, u, "visual.ln_post.bias", 1, W, 0, 0, 0, 0.02f, 0);
    emit(fn, u, "visual.attn_pool.probe", 3, 1, 1, W, 0, 0.5f, 0);
    emit(fn, u, "visual.attn_pool.attn.in_proj_weight", 2, 3 * W, W, 0, 0, sw, 0);
    emit(fn, u, "visual.attn_pool.attn.in_proj_bias", 1, 3 * W, 0, 0, 0, 0.02f, 0);
    emit(fn, u, "visual.attn_pool.attn.out_proj.weight", 2, W, W, 0, 0, sw, 0);
    emit(fn, u, "visual.attn_pool.attn.out_proj.bias", 1, W, 0, 0, 0, 0.02f, 0);
    emit(fn, u, "visual.attn_pool.layernorm.weight", 1, W, 0, 0, 0, 0.1f, 1);
    emit(fn, u, "visual.attn_pool.layernorm.bias", 1, W, 0, 0, 0, 0.02f, 0);
    emit(fn, u, "visual.attn_pool.mlp.c_fc.weight", 2, 4 * W, W, 0, 0, sw, 0);
    emit(fn, u, "visual.attn_pool.mlp.c_fc.bias", 1, 4 * W, 0, 0, 0, 0.02f, 0);
    emit(fn, u, "visual.attn_pool.mlp.c_proj.weight", 2, W, 4 * W, 0, 0, sqrtf(3.0f / (4 * W)), 0);
    emit(fn, u, "visual.attn_pool.mlp.c_proj.bias", 1, W, 0, 0, 0, 0.02f, 0);
    emit(fn, u, "visual.proj", 2, W, D, 0, 0, sw, 0);
    int TW = c->text_width;
    emit(fn, u, "positional_embedding", 2, c->context_length, TW, 0, 0, 0.5f, 0);
    emit(fn, u, "text_projection", 2, TW, D, 0, 0, sqrtf(3.0f / TW), 0);
    emit(fn, u, "logit_scale", 0, 0, 0, 0, 0, 0.0f, 4.6f);
    emit(fn, u, "token_embedding.weight", 2, c->vocab_size, TW, 0, 0, 0.3f, 0);
    for (int l = 0; l < c->text_layers; l++) {
        snprintf(k, sizeof k, "transformer.resblocks.%d", l);
        block_keys(fn, u, k, TW, c->text_mlp_width);
    }
    emit(fn, u, "ln_final.weight", 1, TW, 0, 0, 0, 0.1f, 1);
    emit(fn, u, "ln_final.bias", 1, TW, 0, 0, 0, 0.02f, 0);
}

typedef struct writer {
    FILE *f;
    char *hdr;
    size_t hlen, hcap, off;
    int first;
} writer;

static void hdr_append(writer *w, const char *s) {
    size_t n = strlen(s);
    if (w->hlen + n + 1 > w->hcap) {
        w->hcap = (w->hlen + n + 1) * 2;
        w->hdr = realloc(w->hdr, w->hcap);
    }
    memcpy(w->hdr + w->hlen, s, n + 1);
    w->hlen += n;
}

static int64_t numel(int nd, const int64_t *s) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

static void header_key(void *u, const char *name, int nd, const int64_t *s, float scale, float offset) {
    writer *w = u;
    char buf[512];
    int64_t n = numel(nd, s);
    int len = snprintf(buf, sizeof buf, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", w->first ? "" : ",", name);
    for (int i = 0; i < nd; i++) len += snprintf(buf + len, sizeof buf - len, i ? ",%lld" : "%lld", (long long)s[i]);
    snprintf(buf + len, sizeof buf - len, "],\"data_offsets\":[%zu,%zu]}", w->off, w->off + (size_t)n * 4);
    hdr_append(w, buf);
    w->off += (size_t)n * 4;
    w->first = 0;
}

static void data_key(void *u, const char *name, int nd, const int64_t *s, float scale, float offset) {
    writer *w = u;
    static float buf[1 << 16];
    int64_t n = numel(nd, s);
    for (int64_t done = 0; done < n;) {
        int64_t c = n - done < (int64_t)(sizeof buf / 4) ? n - done : (int64_t)(sizeof buf / 4);
        for (int64_t i = 0; i < c; i++) buf[i] = offset + scale * bench_urand();
        fwrite(buf, 4, c, w->f);
        done += c;
    }
}

int bench_write_model(const pe_config *c, const char *path) {
    writer w = {.first = 1};
    hdr_append(&w, "{");
    model_keys(c, header_key, &w);
    hdr_append(&w, "}");
    while (w.hlen % 8) hdr_append(&w, " ");
    w.f = fopen(path, "wb");
    if (!w.f) { free(w.hdr); return perr_errno(errno, "create %s", path); }
    uint64_t hl = w.hlen;
    fwrite(&hl, 8, 1, w.f);
    fwrite(w.hdr, 1, w.hlen, w.f);
    free(w.hdr);
    model_keys(c, data_key, &w);
    if (fclose(w.f)) return perr_errno(errno, "write %s", path);
    return PERR_OK;
}

