/* pe_config: configuration resolution (explicit JSON, safetensors metadata,
 * <model>.json, official shapes) and key/shape validation; and the
 * `percept model info` command on the same files. */
#define _GNU_SOURCE
#include "ckpt_writer.h"
#include "common/perr.h"
#include "encoder/pe_config.h"
#include "encoder/pe_weights.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *tmp;   /* this run's scratch directory */

static char *fixture(const char *name) { return t_path("%s/tiny-a/%s", t_fixtures(), name); }

static const char tiny_vision[] =
    "{\"image_size\": 64, \"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, "
    "\"output_dim\": 32, \"use_cls_token\": true, \"pool_type\": \"attn\", \"attn_pooler_heads\": 8, "
    "\"use_abs_posemb\": true, \"use_rope2d\": true, \"ls_init_value\": null}";
static const char tiny_text[] =
    "{\"context_length\": 32, \"width\": 64, \"heads\": 2, \"layers\": 2, \"output_dim\": 32, \"vocab_size\": 49408}";

static char *write_config(const char *name, const char *vision, const char *text) {
    char *p = t_path("%s/%s", tmp, name);
    char *s = t_path("{\"vision\": %s, \"text\": %s}", vision, text);
    t_write_file(p, s, strlen(s));
    free(s);
    return p;
}

static void check_tiny(const pe_config *c) {
    CHECK_STR(c->name, "custom");
    CHECK_EQ_INT(c->image_size, 64);
    CHECK_EQ_INT(c->patch_size, 16);
    CHECK_EQ_INT(c->width, 64);
    CHECK_EQ_INT(c->layers, 2);
    CHECK_EQ_INT(c->heads, 2);
    CHECK_EQ_INT(c->mlp_width, 256);
    CHECK_EQ_INT(c->use_cls_token, 1);
    CHECK_EQ_INT(c->pool_heads, 8);
    CHECK_EQ_INT(c->pool_mlp_width, 256);
    CHECK_EQ_INT(c->has_layerscale, 0);
    CHECK_EQ_INT(c->output_dim, 32);
    CHECK_EQ_INT(c->context_length, 32);
    CHECK_EQ_INT(c->text_width, 64);
    CHECK_EQ_INT(c->text_layers, 2);
    CHECK_EQ_INT(c->text_heads, 2);
    CHECK_EQ_INT(c->text_mlp_width, 256);
    CHECK_EQ_INT(c->vocab_size, 49408);
}

/* tiny-a: from its metadata; the .pt from the fixture's config.json, and
 * not at all without one (heads are not in the shapes). */
static void test_tiny_a(void) {
    char *st = fixture("tiny-a.safetensors"), *pt = fixture("tiny-a.pt"), *cj = fixture("config.json");
    pe_weights *w = NULL;
    pe_config c;
    pe_config_report rep;
    CHECK_OK(pe_weights_open(st, &w));
    if (w) {
        CHECK_OK(pe_config_resolve_report(w, NULL, st, &c, &rep));
        check_tiny(&c);
        CHECK_STR(rep.source, "safetensors metadata");
        CHECK_EQ_INT(rep.n_unexpected, 0);
        /* config.json's derived.num_parameters */
        CHECK_EQ_INT(pe_config_param_count(w, &c), 3468801);
        CHECK_STR(pe_config_dtype(w, &c), "float32");
    }
    pe_weights_close(w);
    CHECK_OK(pe_weights_open(pt, &w));
    if (w) {
        CHECK_ERR(pe_config_resolve(w, NULL, pt, &c), PERR_MODEL);
        CHECK(strstr(perr_msg(), "heads cannot be read from shapes") != NULL);
        CHECK(strstr(perr_msg(), "width 64, 2 layers, patch 16, image 64") != NULL);
        CHECK_OK(pe_config_resolve_report(w, cj, pt, &c, &rep));
        check_tiny(&c);
        CHECK(strstr(rep.source, "--config ") == rep.source);
        CHECK_EQ_INT(pe_config_param_count(w, &c), 3468801);
    }
    pe_weights_close(w);
    free(st);
    free(pt);
    free(cj);
}

/* "<model>.json" next to the model file (a symlink to the fixture). */
static void test_sibling_json(void) {
    char *pt = fixture("tiny-a.pt"), *link = t_path("%s/mine.pt", tmp);
    REQUIRE(symlink(pt, link) == 0);
    char *cfg = write_config("mine.json", tiny_vision, tiny_text);
    pe_weights *w = NULL;
    pe_config c;
    pe_config_report rep;
    CHECK_OK(pe_weights_open(link, &w));
    if (w) {
        CHECK_OK(pe_config_resolve_report(w, NULL, link, &c, &rep));
        check_tiny(&c);
        CHECK_STR(rep.source, cfg);
        /* a malformed sibling is an error, not a silent fallback */
        t_write_file(cfg, "{\"vision\": ", 11);
        CHECK_ERR(pe_config_resolve(w, NULL, link, &c), PERR_FORMAT);
        CHECK(strstr(perr_msg(), "mine.json") != NULL);
    }
    pe_weights_close(w);
    unlink(link);
    unlink(cfg);
    free(pt);
    free(link);
    free(cfg);
}

/* Shapes that do not fit the configuration name the first such key. */
static void test_shapes_do_not_fit(void) {
    char *st = fixture("tiny-a.safetensors");
    pe_weights *w = NULL;
    pe_config c;
    REQUIRE_OK(pe_weights_open(st, &w));
    static const struct { const char *vision, *text; int code; const char *needle; } cases[] = {
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 2.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 64}",
         NULL, PERR_MODEL, "key 'visual.transformer.resblocks.0.mlp.c_fc.weight' has shape [256, 64], configuration custom expects [128, 64]"},
        {"{\"patch_size\": 16, \"width\": 32, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 64}",
         NULL, PERR_MODEL, "key 'visual.conv1.weight' has shape [64, 3, 16, 16], configuration custom expects [32, 3, 16, 16]"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 128}",
         NULL, PERR_MODEL, "key 'visual.positional_embedding' has shape [17, 64], configuration custom expects [65, 64]"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"image_size\": 64}",
         NULL, PERR_MODEL, "key 'visual.positional_embedding' has shape [17, 64], configuration custom expects [16, 64]"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 3, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 64}",
         NULL, PERR_MODEL, "missing key 'visual.transformer.resblocks.2.ln_1.weight' (expected shape [64]"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 1, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 64}",
         NULL, PERR_MODEL, "more vision layers than the configuration's 1"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 64, \"ls_init_value\": 0.1}",
         NULL, PERR_MODEL, "missing key 'visual.transformer.resblocks.0.ls_1.gamma'"},
        {NULL, "{\"context_length\": 77, \"width\": 64, \"heads\": 2, \"layers\": 2, \"output_dim\": 32}",
         PERR_MODEL, "key 'positional_embedding' has shape [32, 64], configuration custom expects [77, 64]"},
        /* the configuration itself */
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 3, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_cls_token\": true, \"image_size\": 64}",
         NULL, PERR_UNSUPPORTED, "heads 3"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32}",
         NULL, PERR_FORMAT, "lacks the required key \"heads\""},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"pool_type\": \"avg\"}",
         NULL, PERR_UNSUPPORTED, "pool_type"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"use_rope2d\": false}",
         NULL, PERR_UNSUPPORTED, "use_rope2d"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32, \"image_size\": 72}",
         NULL, PERR_UNSUPPORTED, "not a multiple of patch_size"},
        {"{\"patch_size\": 16, \"width\": 64, \"layers\": 2.5, \"heads\": 2, \"mlp_ratio\": 4.0, \"output_dim\": 32}",
         NULL, PERR_FORMAT, "\"layers\" is not an integer"},
        {NULL, "{\"context_length\": 32, \"width\": 64, \"heads\": 2, \"layers\": 2, \"output_dim\": 32, \"vocab_size\": 32000}",
         PERR_UNSUPPORTED, "vocab_size 32000"},
        {NULL, "{\"context_length\": 32, \"width\": 64, \"heads\": 2, \"layers\": 2, \"output_dim\": 16}",
         PERR_UNSUPPORTED, "text output_dim 16 differs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *cfg = write_config("bad.json", cases[i].vision ? cases[i].vision : tiny_vision,
                                 cases[i].text ? cases[i].text : tiny_text);
        int rc = pe_config_resolve(w, cfg, st, &c);
        if (rc != cases[i].code || !strstr(perr_msg(), cases[i].needle))
            t_fail(__FILE__, __LINE__, "case %zu: %s \"%s\", expected %s \"%s\"", i, perr_name(rc), perr_msg(),
                   perr_name(cases[i].code), cases[i].needle);
        free(cfg);
    }
    CHECK_ERR(pe_config_resolve(w, "/nonexistent/cfg.json", st, &c), PERR_NOT_FOUND);
    pe_weights_close(w);
    free(st);
}

/* tiny-a's tensors rewritten with changes: a key dropped, one added. */
static void rewrite_tiny(const char *out, const char *drop, const char *add, int with_meta) {
    char *st = fixture("tiny-a.safetensors");
    pe_weights *w = NULL;
    if (pe_weights_open(st, &w)) { t_fail(__FILE__, __LINE__, "%s", perr_msg()); free(st); return; }
    int n = pe_weights_count(w), k = 0;
    ck_tensor *t = calloc((size_t)n + 1, sizeof *t);
    for (int i = 0; i < n; i++) {
        const pe_tensor *x = pe_weights_at(w, i);
        if (drop && !strcmp(x->name, drop)) continue;
        t[k] = (ck_tensor){.name = x->name, .dtype = x->dtype, .ndim = x->ndim, .data = x->data};
        memcpy(t[k].shape, x->shape, sizeof x->shape);
        k++;
    }
    if (add) t[k++] = (ck_tensor){.name = add, .dtype = PE_DT_F32, .ndim = 1, .shape = {64}};
    const char *meta[] = {"vision_config", pe_weights_metadata(w, "vision_config"), "text_config",
                          pe_weights_metadata(w, "text_config"), NULL};
    CHECK_EQ_INT(ck_safetensors_file(out, t, k, with_meta ? meta : NULL, 0), 0);
    free(t);
    pe_weights_close(w);
    free(st);
}

static int resolve_file(const char *path, const char *cfg, pe_config *c, pe_config_report *rep) {
    pe_weights *w = NULL;
    int rc = pe_weights_open(path, &w);
    if (!rc) rc = pe_config_resolve_report(w, cfg, path, c, rep);
    pe_weights_close(w);
    return rc;
}

static void test_missing_and_extra_keys(void) {
    char *p = t_path("%s/edited.safetensors", tmp);
    pe_config c;
    pe_config_report rep;
    const char *drops[] = {"visual.ln_post.bias", "visual.attn_pool.probe", "visual.class_embedding", "logit_scale",
                           "transformer.resblocks.1.mlp.c_proj.bias", "visual.proj"};
    for (size_t i = 0; i < sizeof drops / sizeof *drops; i++) {
        rewrite_tiny(p, drops[i], NULL, 1);
        int rc = resolve_file(p, NULL, &c, &rep);
        char want[200];
        snprintf(want, sizeof want, "missing key '%s'", drops[i]);
        if (rc != PERR_MODEL || !strstr(perr_msg(), want))
            t_fail(__FILE__, __LINE__, "drop %s: %s \"%s\"", drops[i], perr_name(rc), perr_msg());
    }
    /* an unused key is ignored and reported */
    rewrite_tiny(p, NULL, "visual.head.extra", 1);
    CHECK_OK(resolve_file(p, NULL, &c, &rep));
    CHECK_EQ_INT(rep.n_unexpected, 1);
    CHECK_STR(rep.first_unexpected, "visual.head.extra");
    /* but a third text layer or a stray LayerScale gamma is a wrong config */
    rewrite_tiny(p, NULL, "transformer.resblocks.2.ln_1.weight", 1);
    CHECK_ERR(resolve_file(p, NULL, &c, &rep), PERR_MODEL);
    CHECK(strstr(perr_msg(), "'transformer.resblocks.2.ln_1.weight': the checkpoint has more text layers") != NULL);
    rewrite_tiny(p, NULL, "visual.transformer.resblocks.1.ls_2.gamma", 1);
    CHECK_ERR(resolve_file(p, NULL, &c, &rep), PERR_MODEL);
    CHECK(strstr(perr_msg(), "LayerScale present") != NULL);
    /* without the metadata: shapes only, which are not an official model */
    rewrite_tiny(p, NULL, NULL, 0);
    CHECK_ERR(resolve_file(p, NULL, &c, &rep), PERR_MODEL);
    unlink(p);
    free(p);
}

/* A small custom model with LayerScale in every vision block. */
static void test_layerscale(void) {
    ck_model m = {.image = 32, .patch = 16, .width = 32, .layers = 2, .mlp = 64, .cls = 0, .out = 16,
                  .ctx = 8, .twidth = 8, .tlayers = 1, .tmlp = 32, .vocab = 49408, .layerscale = 1};
    ck_tensor *t;
    int n = ck_model_keys(&m, &t);
    const char *vis = "{\"image_size\": 32, \"patch_size\": 16, \"width\": 32, \"layers\": 2, \"heads\": 2, "
                      "\"mlp_ratio\": 2.0, \"output_dim\": 16, \"ls_init_value\": 0.1}";
    const char *txt = "{\"context_length\": 8, \"width\": 8, \"heads\": 2, \"layers\": 1, \"output_dim\": 16}";
    const char *meta[] = {"vision_config", vis, "text_config", txt, NULL};
    char *p = t_path("%s/ls.safetensors", tmp);
    CHECK_EQ_INT(ck_safetensors_file(p, t, n, meta, 0), 0);
    pe_config c;
    pe_config_report rep;
    CHECK_OK(resolve_file(p, NULL, &c, &rep));
    CHECK_EQ_INT(c.has_layerscale, 1);
    CHECK_EQ_INT(c.use_cls_token, 0);
    CHECK_EQ_INT(c.mlp_width, 64);
    CHECK_EQ_INT(c.text_mlp_width, 32);
    int64_t params = 0;
    for (int i = 0; i < n; i++) {
        int64_t e = 1;
        for (int d = 0; d < t[i].ndim; d++) e *= t[i].shape[d];
        params += e;
    }
    pe_weights *w = NULL;
    CHECK_OK(pe_weights_open(p, &w));
    if (w) CHECK_EQ_INT(pe_config_param_count(w, &c), params);
    pe_weights_close(w);
    /* one block without its ls_2 gamma */
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, "visual.transformer.resblocks.1.ls_2.gamma")) t[k++] = t[i];
        else free((char *)t[i].name);
    CHECK_EQ_INT(ck_safetensors_file(p, t, k, meta, 0), 0);
    CHECK_ERR(resolve_file(p, NULL, &c, &rep), PERR_MODEL);
    CHECK(strstr(perr_msg(), "missing key 'visual.transformer.resblocks.1.ls_2.gamma'") != NULL);
    ck_keys_free(t, k);
    unlink(p);
    free(p);
}

/* The five official configurations, recognised from shapes alone: zero
 * data in sparse files (up to 10 GB apparent size, no disk used). */
static void test_official_shapes(void) {
    for (int i = 0; i < pe_config_official_count(); i++) {
        const char *name;
        int heads;
        ck_model m = ck_official(i, &name, &heads);
        ck_tensor *t;
        int n = ck_model_keys(&m, &t);
        int64_t params = 0;
        for (int k = 0; k < n; k++) {
            int64_t e = 1;
            for (int d = 0; d < t[k].ndim; d++) e *= t[k].shape[d];
            params += e;
        }
        char *p = t_path("%s/%s.safetensors", tmp, name);
        REQUIRE(ck_safetensors_file(p, t, n, NULL, 1) == 0);
        pe_weights *w = NULL;
        pe_config c;
        pe_config_report rep;
        CHECK_OK(pe_weights_open(p, &w));
        if (w) {
            CHECK_OK(pe_config_resolve_report(w, NULL, p, &c, &rep));
            CHECK_STR(c.name, name);
            CHECK_STR(rep.source, "shapes");
            CHECK_EQ_INT(c.heads, heads);
            CHECK_EQ_INT(c.width, m.width);
            CHECK_EQ_INT(c.layers, m.layers);
            CHECK_EQ_INT(c.use_cls_token, m.cls);
            CHECK_EQ_INT(c.context_length, m.ctx);
            CHECK_EQ_INT(pe_config_param_count(w, &c), params);
            CHECK(*pe_config_official(i)->name && !strcmp(pe_config_official(i)->name, name));
        }
        pe_weights_close(w);
        if (i == 0) {
            /* the same shapes with one vision layer fewer are not official */
            int k = 0;
            for (int j = 0; j < n; j++)
                if (!strstr(t[j].name, "visual.transformer.resblocks.11.")) t[k++] = t[j];
                else free((char *)t[j].name);
            n = k;
            REQUIRE(ck_safetensors_file(p, t, n, NULL, 1) == 0);
            CHECK_ERR(resolve_file(p, NULL, &c, &rep), PERR_MODEL);
            CHECK(strstr(perr_msg(), "width 192, 11 layers") != NULL);
            /* ... unless a config says what they are: heads 4 */
            char *cfg = t_path("%s/%s.json", tmp, name);
            char *s = t_path("{\"vision\": {\"image_size\": 384, \"patch_size\": 16, \"width\": 192, \"layers\": 11, "
                             "\"heads\": 4, \"mlp_ratio\": 4.0, \"output_dim\": 512, \"use_cls_token\": true}, "
                             "\"text\": {\"context_length\": 32, \"width\": 512, \"heads\": 8, \"layers\": 12, "
                             "\"output_dim\": 512}}");
            t_write_file(cfg, s, strlen(s));
            CHECK_OK(resolve_file(p, NULL, &c, &rep));
            CHECK_STR(c.name, "custom");
            CHECK_EQ_INT(c.heads, 4);
            CHECK_STR(rep.source, cfg);
            unlink(cfg);
            free(cfg);
            free(s);
        }
        unlink(p);
        free(p);
        ck_keys_free(t, n);
    }
}

/* Runs `percept model info ARGS`; returns the exit status, stdout in *out. */
static int run_info(const char *args, char **out, char **err) {
    const char *exe = getenv("PERCEPT_EXE");
    if (!exe) return -1;
    char *o = t_path("%s/info.out", tmp), *e = t_path("%s/info.err", tmp);
    char *cmd = t_path("'%s' model info %s >'%s' 2>'%s'", exe, args, o, e);
    int st = system(cmd);
    *out = t_read_file(o, NULL);
    *err = t_read_file(e, NULL);
    free(o);
    free(e);
    free(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_model_info_cli(void) {
    REQUIRE(getenv("PERCEPT_EXE") != NULL);
    char *st = fixture("tiny-a.safetensors"), *pt = fixture("tiny-a.pt"), *cj = fixture("config.json");
    char *out = NULL, *err = NULL, *args = t_path("'%s'", st);
    CHECK_EQ_INT(run_info(args, &out, &err), 0);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    REQUIRE(j);
    static const struct { const char *k; double v; } nums[] = {
        {"image_size", 64}, {"patch_size", 16}, {"width", 64}, {"layers", 2}, {"heads", 2}, {"mlp_width", 256},
        {"pool_heads", 8}, {"output_dim", 32}, {"context_length", 32}, {"text_width", 64}, {"text_layers", 2},
        {"text_heads", 2}, {"vocab_size", 49408}, {"parameters", 3468801}};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        const cJSON *v = cJSON_GetObjectItem(j, nums[i].k);
        if (!cJSON_IsNumber(v) || v->valuedouble != nums[i].v)
            t_fail(__FILE__, __LINE__, "model info %s: expected %g in %s", nums[i].k, nums[i].v, out);
    }
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "name")), "custom");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "format")), "safetensors");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "dtype")), "float32");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "use_cls_token")));
    cJSON_Delete(j);
    free(out);
    free(err);
    free(args);
    /* .pt without a configuration: exit 2 and a message saying what to do */
    args = t_path("'%s'", pt);
    CHECK_EQ_INT(run_info(args, &out, &err), 2);
    CHECK(err && strstr(err, "--config") && strstr(err, "tiny-a.pt"));
    CHECK(out && !out[0]);
    free(out);
    free(err);
    free(args);
    args = t_path("'%s' --config '%s'", pt, cj);
    CHECK_EQ_INT(run_info(args, &out, &err), 0);
    j = out ? cJSON_Parse(out) : NULL;
    CHECK(j && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "format")), "pt"));
    cJSON_Delete(j);
    free(out);
    free(err);
    free(args);
    /* not a model */
    args = t_path("'%s'", cj);
    CHECK_EQ_INT(run_info(args, &out, &err), 2);
    CHECK(err && strstr(err, "not a PyTorch checkpoint"));
    free(out);
    free(err);
    free(args);
    args = t_path("/nonexistent/model.pt");
    CHECK_EQ_INT(run_info(args, &out, &err), 2);
    CHECK(err && strstr(err, "/nonexistent/model.pt"));
    free(out);
    free(err);
    free(args);
    /* an official model (sparse T16) by name */
    const char *name;
    ck_model m = ck_official(0, &name, NULL);
    ck_tensor *t;
    int n = ck_model_keys(&m, &t);
    char *p = t_path("%s/t16.safetensors", tmp);
    REQUIRE(ck_safetensors_file(p, t, n, NULL, 1) == 0);
    ck_keys_free(t, n);
    args = t_path("'%s'", p);
    CHECK_EQ_INT(run_info(args, &out, &err), 0);
    j = out ? cJSON_Parse(out) : NULL;
    CHECK(j && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "name")), "PE-Core-T16-384"));
    CHECK(j && cJSON_GetObjectItem(j, "heads")->valueint == 3);
    cJSON_Delete(j);
    unlink(p);
    free(p);
    free(out);
    free(err);
    free(args);
    free(st);
    free(pt);
    free(cj);
}

int main(void) {
    tmp = t_tmpdir("weights-config");
    T_RUN(test_tiny_a);
    T_RUN(test_sibling_json);
    T_RUN(test_shapes_do_not_fit);
    T_RUN(test_missing_and_extra_keys);
    T_RUN(test_layerscale);
    T_RUN(test_official_shapes);
    T_RUN(test_model_info_cli);
    t_rmtree(tmp);
    free(tmp);
    return t_done();
}
