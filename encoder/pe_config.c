/* pe_config: resolve and validate the configuration of a PE_core checkpoint.
 *
 * DESIGN
 * Owns: the table of official configurations, the config JSON reader and the
 * list of state-dict keys (with shapes) that a configuration implies
 * (each_key below, the one place that knows the key layout of pe-core.md).
 * Must never: guess what the shapes cannot tell (attention heads), accept a
 * checkpoint whose keys do not all fit the configuration, or read a config
 * file without bounding its size.
 */
#define _GNU_SOURCE
#include "encoder/pe_config.h"
#include "common/perr.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PE_CONFIG_MAX_FILE (1u << 20)
#define PE_VOCAB 49408

/* Upper bounds that keep every later size computation far from overflow
 * (G14 is width 1536, 50 layers, image 448). */
#define MAX_WIDTH   16384
#define MAX_LAYERS  512
#define MAX_IMAGE   8192
#define MAX_CONTEXT 4096
#define MAX_MLP     (8 * MAX_WIDTH)

#define OFFICIAL(nm, img, p, w, l, h, mlp, cls, out, tw, tl, th, ctx)                                  \
    {.name = nm, .image_size = img, .patch_size = p, .width = w, .layers = l, .heads = h,            \
     .mlp_width = mlp, .use_cls_token = cls, .pool_heads = 8, .pool_mlp_width = 4 * (w),            \
     .has_layerscale = 0, .output_dim = out, .context_length = ctx, .text_width = tw,                \
     .text_layers = tl, .text_heads = th, .text_mlp_width = 4 * (tw), .vocab_size = PE_VOCAB}

static const pe_config official[] = {
    OFFICIAL("PE-Core-T16-384", 384, 16, 192, 12, 3, 768, 1, 512, 512, 12, 8, 32),
    OFFICIAL("PE-Core-S16-384", 384, 16, 384, 12, 6, 1536, 1, 512, 512, 12, 8, 32),
    OFFICIAL("PE-Core-B16-224", 224, 16, 768, 12, 12, 3072, 1, 1024, 1024, 24, 16, 32),
    OFFICIAL("PE-Core-L14-336", 336, 14, 1024, 24, 16, 4096, 1, 1024, 1024, 24, 16, 32),
    OFFICIAL("PE-Core-G14-448", 448, 14, 1536, 50, 16, 8960, 0, 1280, 1280, 24, 20, 72),
};

int pe_config_official_count(void) { return (int)(sizeof official / sizeof *official); }
const pe_config *pe_config_official(int i) {
    return (i >= 0 && i < pe_config_official_count()) ? &official[i] : NULL;
}

/* All fields but the name. */
static bool same_config(const pe_config *a, const pe_config *b) {
    return a->image_size == b->image_size && a->patch_size == b->patch_size && a->width == b->width &&
           a->layers == b->layers && a->heads == b->heads && a->mlp_width == b->mlp_width &&
           a->use_cls_token == b->use_cls_token && a->pool_heads == b->pool_heads &&
           a->pool_mlp_width == b->pool_mlp_width && a->has_layerscale == b->has_layerscale &&
           a->output_dim == b->output_dim && a->context_length == b->context_length &&
           a->text_width == b->text_width && a->text_layers == b->text_layers &&
           a->text_heads == b->text_heads && a->text_mlp_width == b->text_mlp_width &&
           a->vocab_size == b->vocab_size;
}

static void set_name(pe_config *c) {
    snprintf(c->name, sizeof c->name, "custom");
    for (int i = 0; i < pe_config_official_count(); i++)
        if (same_config(c, &official[i])) memcpy(c->name, official[i].name, sizeof c->name);
}

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = -1; i <= ndim && o < cap; i++) {
        int k = i < 0 ? snprintf(buf + o, cap - o, "[")
              : i == ndim ? snprintf(buf + o, cap - o, "]")
              : snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (k < 0) break;
        o += (size_t)k;
    }
}

/* ------------------------------------------------------------------------ */
/* The expected keys                                                         */
/* ------------------------------------------------------------------------ */

typedef int (*key_fn)(void *u, const char *name, int ndim, const int64_t *shape);

#define KEY(fmt_name, ...)                                                                  \
    do {                                                                                    \
        int64_t s_[] = {__VA_ARGS__};                                                       \
        snprintf(k, sizeof k, "%s%s", pre, fmt_name);                                       \
        int r_ = fn(u, k, (int)(sizeof s_ / sizeof *s_), s_);                               \
        if (r_) return r_;                                                                  \
    } while (0)

static int block_keys(const char *pre, int64_t W, int64_t M, bool ls, key_fn fn, void *u) {
    char k[192];
    KEY("ln_1.weight", W);
    KEY("ln_1.bias", W);
    KEY("attn.in_proj_weight", 3 * W, W);
    KEY("attn.in_proj_bias", 3 * W);
    KEY("attn.out_proj.weight", W, W);
    KEY("attn.out_proj.bias", W);
    KEY("ln_2.weight", W);
    KEY("ln_2.bias", W);
    KEY("mlp.c_fc.weight", M, W);
    KEY("mlp.c_fc.bias", M);
    KEY("mlp.c_proj.weight", W, M);
    KEY("mlp.c_proj.bias", W);
    if (ls) {
        KEY("ls_1.gamma", W);
        KEY("ls_2.gamma", W);
    }
    return 0;
}

/* Calls fn for every key of c, in the order of pe-core.md. */
static int each_key(const pe_config *c, key_fn fn, void *u) {
    char k[192], pre[96];
    int64_t W = c->width, p = c->patch_size, g = c->image_size / c->patch_size;
    int64_t T = g * g + (c->use_cls_token ? 1 : 0), D = c->output_dim, PM = c->pool_mlp_width;
    int64_t TW = c->text_width;
    int r;
    snprintf(pre, sizeof pre, "visual.");
    KEY("conv1.weight", W, 3, p, p);
    if (c->use_cls_token) KEY("class_embedding", W);
    KEY("positional_embedding", T, W);
    KEY("ln_pre.weight", W);
    KEY("ln_pre.bias", W);
    for (int i = 0; i < c->layers; i++) {
        snprintf(pre, sizeof pre, "visual.transformer.resblocks.%d.", i);
        if ((r = block_keys(pre, W, c->mlp_width, c->has_layerscale, fn, u))) return r;
    }
    snprintf(pre, sizeof pre, "visual.");
    KEY("ln_post.weight", W);
    KEY("ln_post.bias", W);
    KEY("attn_pool.probe", 1, 1, W);
    KEY("attn_pool.attn.in_proj_weight", 3 * W, W);
    KEY("attn_pool.attn.in_proj_bias", 3 * W);
    KEY("attn_pool.attn.out_proj.weight", W, W);
    KEY("attn_pool.attn.out_proj.bias", W);
    KEY("attn_pool.layernorm.weight", W);
    KEY("attn_pool.layernorm.bias", W);
    KEY("attn_pool.mlp.c_fc.weight", PM, W);
    KEY("attn_pool.mlp.c_fc.bias", PM);
    KEY("attn_pool.mlp.c_proj.weight", W, PM);
    KEY("attn_pool.mlp.c_proj.bias", W);
    KEY("proj", W, D);
    pre[0] = 0;
    KEY("token_embedding.weight", c->vocab_size, TW);
    KEY("positional_embedding", c->context_length, TW);
    for (int i = 0; i < c->text_layers; i++) {
        snprintf(pre, sizeof pre, "transformer.resblocks.%d.", i);
        if ((r = block_keys(pre, TW, c->text_mlp_width, false, fn, u))) return r;
    }
    pre[0] = 0;
    KEY("ln_final.weight", TW);
    KEY("ln_final.bias", TW);
    KEY("text_projection", TW, D);
    r = fn(u, "logit_scale", 0, NULL);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Checking                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct check_ctx {
    const pe_weights *w;
    const pe_config *c;
    bool *used;              /* per tensor index */
    int64_t params;
    int dtypes;              /* bit set of pe_dtype */
} check_ctx;

static int check_one(void *u, const char *name, int ndim, const int64_t *shape) {
    check_ctx *x = u;
    const pe_tensor *t = pe_weights_find(x->w, name);
    char want[96], got[96];
    fmt_shape(want, sizeof want, shape, ndim);
    if (!t)
        return perr_set(PERR_MODEL, "missing key '%s' (expected shape %s for configuration %s)", name, want, x->c->name);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        fmt_shape(got, sizeof got, t->shape, t->ndim);
        return perr_set(PERR_MODEL, "key '%s' has shape %s, configuration %s expects %s", name, got, x->c->name, want);
    }
    if (x->used) x->used[t - pe_weights_at(x->w, 0)] = true;
    x->params += t->numel;
    x->dtypes |= 1 << t->dtype;
    return 0;
}

/* Checks the configuration itself: positive sizes within bounds, and the
 * divisibility the forward pass relies on. */
static int check_config_values(const pe_config *c) {
#define RANGE(f, lo, hi)                                                                                   \
    if (c->f < (lo) || c->f > (hi))                                                                        \
        return perr_set(PERR_MODEL, "configuration: %s = %d outside [%d, %d]", #f, c->f, (int)(lo), (int)(hi));
    RANGE(image_size, 1, MAX_IMAGE);
    RANGE(patch_size, 1, MAX_IMAGE);
    RANGE(width, 1, MAX_WIDTH);
    RANGE(layers, 1, MAX_LAYERS);
    RANGE(heads, 1, MAX_WIDTH);
    RANGE(mlp_width, 1, MAX_MLP);
    RANGE(pool_heads, 1, MAX_WIDTH);
    RANGE(pool_mlp_width, 1, MAX_MLP);
    RANGE(output_dim, 1, MAX_WIDTH);
    RANGE(context_length, 2, MAX_CONTEXT);
    RANGE(text_width, 1, MAX_WIDTH);
    RANGE(text_layers, 1, MAX_LAYERS);
    RANGE(text_heads, 1, MAX_WIDTH);
    RANGE(text_mlp_width, 1, MAX_MLP);
#undef RANGE
    if (c->image_size % c->patch_size)
        return perr_set(PERR_UNSUPPORTED, "configuration: image_size %d is not a multiple of patch_size %d", c->image_size, c->patch_size);
    if (c->width % c->heads || (c->width / c->heads) % 4)
        return perr_set(PERR_UNSUPPORTED, "configuration: width %d / heads %d must give a head dim that is a multiple of 4 (2D RoPE pairs)",
                        c->width, c->heads);
    if (c->width % c->pool_heads)
        return perr_set(PERR_UNSUPPORTED, "configuration: width %d is not divisible by attn_pooler_heads %d", c->width, c->pool_heads);
    if (c->text_width % c->text_heads)
        return perr_set(PERR_UNSUPPORTED, "configuration: text width %d is not divisible by text heads %d", c->text_width, c->text_heads);
    if (c->vocab_size != PE_VOCAB)
        return perr_set(PERR_UNSUPPORTED, "configuration: vocab_size %d (the CLIP BPE tokenizer has %d)", c->vocab_size, PE_VOCAB);
    return PERR_OK;
}

/* Block index of "<prefix>N.<rest>", or -1. */
static int block_index(const char *name, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return -1;
    const char *s = name + pl;
    if (*s < '0' || *s > '9') return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 1000000) v = v * 10 + (*s++ - '0');
    return *s == '.' ? (int)v : -1;
}

int pe_config_check(const pe_weights *w, const pe_config *c, pe_config_report *rep) {
    int rc = check_config_values(c);
    if (rc) return rc;
    int n = pe_weights_count(w);
    /* Layers beyond the configuration's and LayerScale gammas it does not
     * expect mean the configuration is wrong, not that keys are spare. */
    for (int i = 0; i < n; i++) {
        const char *nm = pe_weights_at(w, i)->name;
        int vb = block_index(nm, "visual.transformer.resblocks."), tb = block_index(nm, "transformer.resblocks.");
        if (vb >= c->layers)
            return perr_set(PERR_MODEL, "key '%s': the checkpoint has more vision layers than the configuration's %d", nm, c->layers);
        if (tb >= c->text_layers)
            return perr_set(PERR_MODEL, "key '%s': the checkpoint has more text layers than the configuration's %d", nm, c->text_layers);
        if (vb >= 0 && !c->has_layerscale && (strstr(nm, ".ls_1.") || strstr(nm, ".ls_2.")))
            return perr_set(PERR_MODEL, "key '%s': LayerScale present but the configuration has none (ls_init_value null)", nm);
    }
    check_ctx x = {.w = w, .c = c};
    x.used = calloc((size_t)(n ? n : 1), sizeof *x.used);
    if (!x.used) return perr_set(PERR_NOMEM, "config check");
    rc = each_key(c, check_one, &x);
    if (!rc && rep) {
        rep->n_unexpected = 0;
        rep->first_unexpected[0] = 0;
        for (int i = 0; i < n; i++) {
            if (x.used[i]) continue;
            if (!rep->n_unexpected++)
                snprintf(rep->first_unexpected, sizeof rep->first_unexpected, "%s", pe_weights_at(w, i)->name);
        }
    }
    free(x.used);
    return rc;
}

int64_t pe_config_param_count(const pe_weights *w, const pe_config *c) {
    check_ctx x = {.w = w, .c = c};
    if (each_key(c, check_one, &x)) return -1;
    return x.params;
}

const char *pe_config_dtype(const pe_weights *w, const pe_config *c) {
    check_ctx x = {.w = w, .c = c};
    if (each_key(c, check_one, &x)) return "unknown";
    switch (x.dtypes) {
    case 1 << PE_DT_F32: return "float32";
    case 1 << PE_DT_F16: return "float16";
    case 1 << PE_DT_BF16: return "bfloat16";
    default: return "mixed";
    }
}

/* ------------------------------------------------------------------------ */
/* Recognition from shapes                                                   */
/* ------------------------------------------------------------------------ */

static int need(const pe_weights *w, const char *name, int ndim, const pe_tensor **t) {
    *t = pe_weights_find(w, name);
    if (!*t) return perr_set(PERR_MODEL, "cannot recognise the configuration: missing key '%s'", name);
    if ((*t)->ndim != ndim) {
        char got[96];
        fmt_shape(got, sizeof got, (*t)->shape, (*t)->ndim);
        return perr_set(PERR_MODEL, "cannot recognise the configuration: key '%s' has shape %s (%d dimensions expected)",
                        name, got, ndim);
    }
    return PERR_OK;
}

static int count_blocks(const pe_weights *w, const char *prefix) {
    char k[160];
    int n = 0;
    while (n <= MAX_LAYERS) {
        snprintf(k, sizeof k, "%s%d.attn.in_proj_weight", prefix, n);
        if (!pe_weights_find(w, k)) break;
        n++;
    }
    return n;
}

int pe_config_from_shapes(const pe_weights *w, pe_config *out) {
    const pe_tensor *conv, *pos, *fc, *proj, *tok, *tpos, *tfc, *pfc;
    int rc;
    if ((rc = need(w, "visual.conv1.weight", 4, &conv)) || (rc = need(w, "visual.positional_embedding", 2, &pos)) ||
        (rc = need(w, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, &fc)) ||
        (rc = need(w, "visual.proj", 2, &proj)) || (rc = need(w, "token_embedding.weight", 2, &tok)) ||
        (rc = need(w, "positional_embedding", 2, &tpos)) ||
        (rc = need(w, "transformer.resblocks.0.mlp.c_fc.weight", 2, &tfc)) ||
        (rc = need(w, "visual.attn_pool.mlp.c_fc.weight", 2, &pfc)))
        return rc;
    pe_config s;
    memset(&s, 0, sizeof s);
    s.width = (int)(conv->shape[0] > MAX_WIDTH ? -1 : conv->shape[0]);
    s.patch_size = (int)(conv->shape[2] > MAX_IMAGE ? -1 : conv->shape[2]);
    s.use_cls_token = pe_weights_find(w, "visual.class_embedding") != NULL;
    int64_t gg = pos->shape[0] - s.use_cls_token, g = (int64_t)llround(sqrt((double)(gg > 0 ? gg : 0)));
    s.image_size = (g * g == gg && g * s.patch_size <= MAX_IMAGE) ? (int)(g * s.patch_size) : -1;
    s.layers = count_blocks(w, "visual.transformer.resblocks.");
    s.mlp_width = (int)(fc->shape[0] > MAX_MLP ? -1 : fc->shape[0]);
    s.output_dim = (int)(proj->shape[1] > MAX_WIDTH ? -1 : proj->shape[1]);
    s.vocab_size = (int)(tok->shape[0] > INT32_MAX ? -1 : tok->shape[0]);
    s.text_width = (int)(tok->shape[1] > MAX_WIDTH ? -1 : tok->shape[1]);
    s.context_length = (int)(tpos->shape[0] > MAX_CONTEXT ? -1 : tpos->shape[0]);
    s.text_layers = count_blocks(w, "transformer.resblocks.");
    s.text_mlp_width = (int)(tfc->shape[0] > MAX_MLP ? -1 : tfc->shape[0]);
    for (int i = 0; i < pe_config_official_count(); i++) {
        const pe_config *o = &official[i];
        if (o->width == s.width && o->patch_size == s.patch_size && o->use_cls_token == s.use_cls_token &&
            o->image_size == s.image_size && o->layers == s.layers && o->mlp_width == s.mlp_width &&
            o->output_dim == s.output_dim && o->vocab_size == s.vocab_size && o->text_width == s.text_width &&
            o->context_length == s.context_length && o->text_layers == s.text_layers &&
            o->text_mlp_width == s.text_mlp_width) {
            *out = *o;
            /* Other PE checkpoints carry LayerScale; the check makes sure
             * every block then has both gammas. */
            out->has_layerscale = pe_weights_find(w, "visual.transformer.resblocks.0.ls_1.gamma") != NULL;
            out->pool_mlp_width = (int)(pfc->shape[0] > MAX_MLP ? -1 : pfc->shape[0]);
            set_name(out);
            return PERR_OK;
        }
    }
    return perr_set(PERR_MODEL,
                    "the tensor shapes (vision: width %d, %d layers, patch %d, image %d, mlp %d, %s cls token, "
                    "output %d; text: width %d, %d layers, context %d) are not one of the official PE-Core "
                    "configurations, and attention heads cannot be read from shapes: give the configuration "
                    "(--config FILE, safetensors __metadata__ vision_config/text_config, or <model>.json)",
                    s.width, s.layers, s.patch_size, s.image_size, s.mlp_width, s.use_cls_token ? "with" : "no",
                    s.output_dim, s.text_width, s.text_layers, s.context_length);
}

/* ------------------------------------------------------------------------ */
/* Config JSON                                                               */
/* ------------------------------------------------------------------------ */

/* Integer field: absent -> def (or an error when required). */
static int j_int(const cJSON *o, const char *sect, const char *key, bool required, int def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (required) return perr_set(PERR_FORMAT, "\"%s\" lacks the required key \"%s\"", sect, key);
        *out = def;
        return PERR_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return perr_set(PERR_FORMAT, "\"%s\".\"%s\" is not an integer", sect, key);
    *out = (int)v->valuedouble;
    return PERR_OK;
}

static int j_bool(const cJSON *o, const char *sect, const char *key, bool def, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) { *out = def; return PERR_OK; }
    if (!cJSON_IsBool(v)) return perr_set(PERR_FORMAT, "\"%s\".\"%s\" is not true/false", sect, key);
    *out = cJSON_IsTrue(v);
    return PERR_OK;
}

static int j_ratio(const cJSON *o, const char *sect, int width, bool required, double def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "mlp_ratio");
    double r = def;
    if (!v && required) return perr_set(PERR_FORMAT, "\"%s\" lacks the required key \"mlp_ratio\"", sect);
    if (v) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 64)
            return perr_set(PERR_FORMAT, "\"%s\".\"mlp_ratio\" is not a positive number", sect);
        r = v->valuedouble;
    }
    /* int(width * mlp_ratio), as the official code computes it */
    *out = (int)((double)width * r);
    return PERR_OK;
}

static int j_must(const cJSON *o, const char *sect, const char *key, bool want, bool def) {
    bool v;
    int rc = j_bool(o, sect, key, def, &v);
    if (rc) return rc;
    if (v != want)
        return perr_set(PERR_UNSUPPORTED, "\"%s\".\"%s\" = %s is not supported (PE_core uses %s)", sect, key,
                        v ? "true" : "false", want ? "true" : "false");
    return PERR_OK;
}

static int parse_vision(const cJSON *v, pe_config *c) {
    const char *S = "vision";
    if (!cJSON_IsObject(v)) return perr_set(PERR_FORMAT, "\"vision\" is not an object");
    int rc;
    bool cls;
    if ((rc = j_int(v, S, "image_size", false, 224, &c->image_size)) || (rc = j_int(v, S, "patch_size", true, 0, &c->patch_size)) ||
        (rc = j_int(v, S, "width", true, 0, &c->width)) || (rc = j_int(v, S, "layers", true, 0, &c->layers)) ||
        (rc = j_int(v, S, "heads", true, 0, &c->heads)) || (rc = j_ratio(v, S, c->width, true, 0, &c->mlp_width)) ||
        (rc = j_bool(v, S, "use_cls_token", false, &cls)) ||
        (rc = j_int(v, S, "attn_pooler_heads", false, 8, &c->pool_heads)) ||
        (rc = j_must(v, S, "use_abs_posemb", true, true)) || (rc = j_must(v, S, "use_rope2d", true, true)) ||
        (rc = j_must(v, S, "use_ln_pre", true, true)) || (rc = j_must(v, S, "use_ln_post", true, true)))
        return rc;
    const cJSON *od = cJSON_GetObjectItemCaseSensitive(v, "output_dim");
    if (!od || cJSON_IsNull(od))
        return perr_set(PERR_UNSUPPORTED, "\"vision\".\"output_dim\" missing or null: a CLIP model needs the projection");
    if ((rc = j_int(v, S, "output_dim", true, 0, &c->output_dim))) return rc;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(v, "pool_type");
    if (pt && !(cJSON_IsString(pt) && !strcmp(pt->valuestring, "attn")))
        return perr_set(PERR_UNSUPPORTED, "\"vision\".\"pool_type\" must be \"attn\" (attention pooling)");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(v, "ls_init_value");
    if (ls && !cJSON_IsNull(ls) && !cJSON_IsNumber(ls))
        return perr_set(PERR_FORMAT, "\"vision\".\"ls_init_value\" is neither null nor a number");
    c->has_layerscale = ls && cJSON_IsNumber(ls);
    c->use_cls_token = cls;
    c->pool_mlp_width = c->width * 4;
    return PERR_OK;
}

static int parse_text(const cJSON *t, pe_config *c) {
    const char *S = "text";
    if (!cJSON_IsObject(t)) return perr_set(PERR_FORMAT, "\"text\" is not an object");
    int rc, out;
    if ((rc = j_int(t, S, "context_length", true, 0, &c->context_length)) ||
        (rc = j_int(t, S, "width", true, 0, &c->text_width)) || (rc = j_int(t, S, "heads", true, 0, &c->text_heads)) ||
        (rc = j_int(t, S, "layers", true, 0, &c->text_layers)) || (rc = j_int(t, S, "output_dim", true, 0, &out)) ||
        (rc = j_ratio(t, S, c->text_width, false, 4.0, &c->text_mlp_width)) ||
        (rc = j_int(t, S, "vocab_size", false, PE_VOCAB, &c->vocab_size)))
        return rc;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(t, "pool_type");
    if (pt && !(cJSON_IsString(pt) && !strcmp(pt->valuestring, "argmax")))
        return perr_set(PERR_UNSUPPORTED, "\"text\".\"pool_type\" must be \"argmax\" (end-of-text pooling)");
    if (out != c->output_dim)
        return perr_set(PERR_UNSUPPORTED, "text output_dim %d differs from vision output_dim %d", out, c->output_dim);
    return PERR_OK;
}

static int parse_sections(const char *vtext, size_t vlen, const char *ttext, size_t tlen, pe_config *out) {
    memset(out, 0, sizeof *out);
    cJSON *v = cJSON_ParseWithLength(vtext, vlen);
    if (!v) return perr_set(PERR_FORMAT, "vision_config is not valid JSON");
    cJSON *t = cJSON_ParseWithLength(ttext, tlen);
    int rc = t ? PERR_OK : perr_set(PERR_FORMAT, "text_config is not valid JSON");
    if (!rc) rc = parse_vision(v, out);
    if (!rc) rc = parse_text(t, out);
    cJSON_Delete(v);
    cJSON_Delete(t);
    if (!rc) set_name(out);
    return rc;
}

int pe_config_parse_json(const char *text, size_t len, const char *label, pe_config *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(text, len);
    int rc = PERR_OK;
    if (!root) rc = perr_set(PERR_FORMAT, "not valid JSON");
    else if (!cJSON_IsObject(root)) rc = perr_set(PERR_FORMAT, "not a JSON object");
    else {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text");
        if (!v || !t) rc = perr_set(PERR_FORMAT, "needs both \"vision\" and \"text\" objects");
        if (!rc) rc = parse_vision(v, out);
        if (!rc) rc = parse_text(t, out);
    }
    cJSON_Delete(root);
    if (rc) return perr_prefix(rc, "config %s", label ? label : "(json)");
    set_name(out);
    return PERR_OK;
}

/* Reads a config file (bounded). *found = false when it does not exist and
 * missing_ok. */
static int parse_file(const char *path, bool missing_ok, bool *found, pe_config *out) {
    *found = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT) return PERR_OK;
        return perr_errno(errno, "config %s", path);
    }
    *found = true;
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return perr_set(PERR_INVALID, "config %s: not a regular file", path);
    }
    if (st.st_size > PE_CONFIG_MAX_FILE) {
        fclose(f);
        return perr_set(PERR_TOO_LARGE, "config %s: %lld bytes (at most %u)", path, (long long)st.st_size, PE_CONFIG_MAX_FILE);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) { fclose(f); return perr_set(PERR_NOMEM, "config %s", path); }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return perr_set(PERR_IO, "config %s: read error", path); }
    int rc = pe_config_parse_json(buf, n, path, out);
    free(buf);
    return rc;
}

int pe_config_resolve_report(const pe_weights *w, const char *config_path, const char *model_path,
                             pe_config *out, pe_config_report *rep) {
    pe_config_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    memset(out, 0, sizeof *out);
    int rc;
    bool found = false;
    const char *mv = pe_weights_metadata(w, "vision_config"), *mt = pe_weights_metadata(w, "text_config");
    if (config_path) {
        rc = parse_file(config_path, false, &found, out);
        snprintf(rep->source, sizeof rep->source, "--config %.300s", config_path);
    } else if (mv || mt) {
        if (!mv || !mt) rc = perr_set(PERR_FORMAT, "safetensors __metadata__ has %s but not %s", mv ? "vision_config" : "text_config",
                                      mv ? "text_config" : "vision_config");
        else rc = parse_sections(mv, strlen(mv), mt, strlen(mt), out);
        if (rc) perr_prefix(rc, "safetensors __metadata__");
        snprintf(rep->source, sizeof rep->source, "safetensors metadata");
    } else {
        rc = PERR_OK;
        if (model_path) {
            /* "<model without extension>.json" */
            char p[4096];
            const char *slash = strrchr(model_path, '/'), *dot = strrchr(model_path, '.');
            size_t stem = (dot && (!slash || dot > slash + 1)) ? (size_t)(dot - model_path) : strlen(model_path);
            if (stem + 6 <= sizeof p && strcmp(model_path + stem, ".json")) {
                snprintf(p, sizeof p, "%.*s.json", (int)stem, model_path);
                rc = parse_file(p, true, &found, out);
                snprintf(rep->source, sizeof rep->source, "%.300s", p);
            }
        }
        if (!rc && !found) {
            rc = pe_config_from_shapes(w, out);
            snprintf(rep->source, sizeof rep->source, "shapes");
        }
    }
    if (!rc) rc = pe_config_check(w, out, rep);
    /* An official name only for an exact match (LayerScale included). */
    if (!rc) set_name(out);
    return rc;
}

int pe_config_resolve(const pe_weights *w, const char *config_path, const char *model_path, pe_config *out) {
    return pe_config_resolve_report(w, config_path, model_path, out, NULL);
}
