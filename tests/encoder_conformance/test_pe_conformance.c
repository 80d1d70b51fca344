/* Conformance of the PE_core forward passes with the official model's
 * outputs (fixtures tiny-a/golden): every layer trace, image, batch, video
 * frame and text embedding, from the model file named by PE_TEST_MODEL
 * (tiny-a.safetensors or tiny-a.pt). Tolerance (pe-core.md):
 * max |ours - ref| <= 1e-4 * max(1, max |ref|). Prints every measured
 * difference.
 */
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_cpu.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef PE_TEST_MODEL
#define PE_TEST_MODEL "tiny-a.safetensors"
#endif

#define TOL 1e-4
#define FIX "tiny-a"

static pe_model *model;

/* A .pt holds no configuration: the fixture's config.json is given
 * explicitly (as `--config` would). */
static pe_model *load(const char *file) {
    char *path = t_path("%s/%s/%s", t_fixtures(), FIX, file);
    char *cfg = t_path("%s/%s/config.json", t_fixtures(), FIX);
    pe_load_opts o;
    pe_load_opts_default(&o);
    if (strstr(file, ".pt")) o.config_path = cfg;
    pe_model *m = NULL;
    if (pe_model_load(path, &o, &m)) fprintf(stderr, "cannot load %s: %s\n", path, perr_msg());
    else printf("model %s\n", path);
    free(path);
    free(cfg);
    return m;
}
static double worst;

static double report(const char *what, const float *ours, const float *ref, size_t n) {
    double d = t_rel_maxdiff(ours, ref, n);
    printf("  %-34s max rel diff %.3g\n", what, d);
    if (!(d <= worst)) worst = d;
    return d;
}

#define CHECK_CLOSE(what, ours, ref, n) do { double d_ = report(what, ours, ref, n); \
    if (!(d_ <= TOL)) t_fail(__FILE__, __LINE__, "%s: max rel diff %.3g > %.0e", what, d_, TOL); } while (0)

static pe_ctx *new_ctx(int max_batch, int threads) {
    pe_ctx_opts o;
    pe_ctx_opts_default(&o);
    o.max_batch = max_batch;
    o.n_threads = threads;
    pe_ctx *c = NULL;
    CHECK_OK(pe_ctx_new(model, &o, &c));
    return c;
}

static float *golden(const char *name, size_t n_expected) {
    size_t n = 0;
    float *g = t_golden_f32(FIX, name, &n);
    if (g && n_expected && n != n_expected) {
        t_fail(__FILE__, __LINE__, "golden %s: %zu values, expected %zu", name, n, n_expected);
        free(g);
        return NULL;
    }
    return g;
}

/* ------------------------------------------------------------ traces */

typedef struct capture {
    int n;
    char names[128][48];
    float *data[128];
    size_t len[128];
} capture;

static void on_trace(void *user, const char *name, const float *data, size_t n) {
    capture *c = user;
    if (c->n >= 128) return;
    snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
    c->data[c->n] = malloc(n * sizeof(float));
    memcpy(c->data[c->n], data, n * sizeof(float));
    c->len[c->n] = n;
    c->n++;
}

static const float *captured(capture *c, const char *name, size_t *n) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name)) { *n = c->len[i]; return c->data[i]; }
    return NULL;
}

static void capture_free(capture *c) {
    for (int i = 0; i < c->n; i++) free(c->data[i]);
    c->n = 0;
}

static void compare_trace(capture *cap, const char *golden_name, const char *ours_name) {
    size_t ng = 0, no = 0;
    float *g = t_golden_f32(FIX, golden_name, &ng);
    const float *o = captured(cap, ours_name, &no);
    if (!g) { t_fail(__FILE__, __LINE__, "no golden %s", golden_name); return; }
    if (!o) { t_fail(__FILE__, __LINE__, "trace hook never emitted %s", ours_name); free(g); return; }
    if (no != ng) t_fail(__FILE__, __LINE__, "%s: %zu values, golden has %zu", ours_name, no, ng);
    else CHECK_CLOSE(golden_name, o, g, ng);
    free(g);
}

static void test_vision_trace(void) {
    const pe_config *cfg = pe_model_config(model);
    pe_ctx *c = new_ctx(1, 1);
    REQUIRE(c);
    capture cap = {0};
    pe_ctx_set_trace(c, on_trace, &cap);
    size_t S = cfg->image_size;
    float *px = golden("trace_img_pixels", 3 * S * S);
    float out[4096];
    REQUIRE(px);
    CHECK_OK(pe_encode_pixels(c, px, 1, out));
    static const char *pairs[][2] = {
        {"trace_img_rope_freq", "rope_freq"},
        {"trace_img_v_conv1", "v_conv1"},
        {"trace_img_v_embed", "v_embed"},
        {"trace_img_v_ln_pre", "v_ln_pre"},
        {"trace_img_v_block0_ln1", "v_block0_ln1"},
        {"trace_img_v_block0_attn", "v_block0_attn"},
        {"trace_img_v_block0_mlp", "v_block0_mlp"},
        {"trace_img_v_block0", "v_block0"},
        {"trace_img_v_block1", "v_block1"},
        {"trace_img_v_ln_post", "v_ln_post"},
        {"trace_img_v_pool_attn", "v_pool_attn"},
        {"trace_img_v_pool", "v_pool"},
        {"trace_img_final", "v_final"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) compare_trace(&cap, pairs[i][0], pairs[i][1]);
    float *fin = golden("trace_img_final", cfg->output_dim);
    if (fin) CHECK_CLOSE("trace_img_final (output)", out, fin, cfg->output_dim);
    /* Switching the hook off stops it. */
    pe_ctx_set_trace(c, NULL, NULL);
    int before = cap.n;
    CHECK_OK(pe_encode_pixels(c, px, 1, out));
    CHECK_EQ_INT(cap.n, before);
    capture_free(&cap);
    free(fin);
    free(px);
    pe_ctx_free(c);
}

static void test_text_trace(void) {
    const pe_config *cfg = pe_model_config(model);
    pe_ctx *c = new_ctx(1, 1);
    REQUIRE(c);
    capture cap = {0};
    pe_ctx_set_trace(c, on_trace, &cap);
    size_t n = 0;
    int32_t *ids = t_golden_i32(FIX, "trace_txt_ids", &n);
    REQUIRE(ids && n == (size_t)cfg->context_length);
    float out[4096];
    CHECK_OK(pe_encode_ids(c, ids, 1, out));
    static const char *pairs[][2] = {
        {"trace_txt_t_tok", "t_tok"},
        {"trace_txt_t_embed", "t_embed"},
        {"trace_txt_t_block0_ln1", "t_block0_ln1"},
        {"trace_txt_t_block0_attn", "t_block0_attn"},
        {"trace_txt_t_block0", "t_block0"},
        {"trace_txt_t_block1", "t_block1"},
        {"trace_txt_t_ln_final", "t_ln_final"},
        {"trace_txt_pooled", "t_pooled"},
        {"trace_txt_final", "t_final"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) compare_trace(&cap, pairs[i][0], pairs[i][1]);
    /* The traced run computes all positions; the normal run stops at the
     * end-of-text token. Both must give the same vector. */
    pe_ctx_set_trace(c, NULL, NULL);
    float out2[4096];
    CHECK_OK(pe_encode_ids(c, ids, 1, out2));
    CHECK_CLOSE("text: stop at eot vs full context", out2, out, cfg->output_dim);
    capture_free(&cap);
    free(ids);
    pe_ctx_free(c);
}

/* ------------------------------------------------------------ images */

static int image_stems(char stems[][32], int max) {
    char *p = t_path("%s/%s/golden/inputs.json", t_fixtures(), FIX);
    char *txt = t_read_file(p, NULL);
    free(p);
    if (!txt) return 0;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "images")) {
        cJSON *s = cJSON_GetObjectItem(it, "stem");
        if (n < max && cJSON_IsString(s)) snprintf(stems[n++], 32, "%s", s->valuestring);
    }
    cJSON_Delete(root);
    return n;
}

static void test_images(void) {
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim;
    size_t S = cfg->image_size, per = 3 * S * S;
    char stems[16][32];
    int n = image_stems(stems, 16);
    REQUIRE(n == 6);
    float *all = calloc(n * per, sizeof(float));
    float *single = calloc((size_t)n * D, sizeof(float));
    pe_ctx *c1 = new_ctx(1, 1), *c8 = new_ctx(8, 2);
    REQUIRE(all && single && c1 && c8);
    char name[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "img_%.31s_pixels", stems[i]);
        float *px = golden(name, per);
        snprintf(name, sizeof name, "img_%.31s_emb", stems[i]);
        float *emb = golden(name, D);
        snprintf(name, sizeof name, "img_%.31s_emb_norm", stems[i]);
        float *embn = golden(name, D);
        if (!px || !emb || !embn) { t_fail(__FILE__, __LINE__, "goldens of %s", stems[i]); goto next; }
        memcpy(all + i * per, px, per * sizeof(float));
        CHECK_OK(pe_encode_pixels(c1, px, 1, single + (size_t)i * D));
        snprintf(name, sizeof name, "img_%.31s_emb", stems[i]);
        CHECK_CLOSE(name, single + (size_t)i * D, emb, D);
        float v[4096];
        memcpy(v, single + (size_t)i * D, D * sizeof(float));
        pe_l2_normalize(v, D);
        snprintf(name, sizeof name, "img_%.31s_emb_norm", stems[i]);
        CHECK_CLOSE(name, v, embn, D);
    next:
        free(px);
        free(emb);
        free(embn);
    }
    /* One batch of all six (2 threads), against the golden batch and
     * against our own single runs. */
    float *batch = calloc((size_t)n * D, sizeof(float));
    float *gb = golden("images_batch_emb", (size_t)n * D);
    CHECK_OK(pe_encode_pixels(c8, all, n, batch));
    if (gb) CHECK_CLOSE("images_batch_emb (one batch, 2 thr)", batch, gb, (size_t)n * D);
    CHECK_CLOSE("batch vs single", batch, single, (size_t)n * D);
    free(gb);
    free(batch);
    free(all);
    free(single);
    pe_ctx_free(c1);
    pe_ctx_free(c8);
}

/* Our own decode and resize, end to end: cosine >= 0.999 with the official
 * embedding (pe-core.md), both in the reference's mode (no ICC import, no
 * EXIF rotation) and in pe_image's default mode. */
static void test_image_files(void) {
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim, S = cfg->image_size;
    char stems[16][32];
    int n = image_stems(stems, 16);
    REQUIRE(n == 6);
    pe_ctx *c = new_ctx(1, 1);
    REQUIRE(c);
    float *px = malloc((size_t)3 * S * S * sizeof(float));
    float out[4096];
    pe_image_opts ref_mode;
    pe_image_opts_default(&ref_mode, S);
    ref_mode.icc = 0;
    ref_mode.autorotate = 0;
    char *p = t_path("%s/%s/golden/inputs.json", t_fixtures(), FIX);
    char *txt = t_read_file(p, NULL);
    free(p);
    cJSON *root = cJSON_Parse(txt ? txt : "");
    free(txt);
    for (int i = 0; i < n; i++) {
        const char *file = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "images"), i), "file")->valuestring;
        char *path = t_path("%s/%s/%s", t_fixtures(), FIX, file);
        char name[128];
        snprintf(name, sizeof name, "img_%.31s_emb_norm", stems[i]);
        float *ref = golden(name, D);
        for (int mode = 0; mode < 2 && ref; mode++) {
            int rc = mode ? pe_image_preprocess_file(path, S, NULL, px, NULL)
                          : pe_image_preprocess_ex(path, NULL, 0, NULL, &ref_mode, px, NULL);
            CHECK_OK(rc);
            if (rc) continue;
            CHECK_OK(pe_encode_pixels(c, px, 1, out));
            pe_l2_normalize(out, D);
            double cs = t_cosine(out, ref, D);
            double bound = 0.999;
            printf("  %-14s file, %s mode: cosine %.7f (bound %.3f)\n", stems[i], mode ? "default" : "reference", cs,
                   bound);
            if (!(cs >= bound)) t_fail(__FILE__, __LINE__, "%s (%s mode): cosine %.6f < %.3f", file, mode ? "default" : "reference", cs, bound);
        }
        free(ref);
        free(path);
    }
    cJSON_Delete(root);
    free(px);
    pe_ctx_free(c);
}

/* Non-native size (96x48 -> 6x3 grid): interpolated position embedding
 * and RoPE on the actual grid; also as a batch of two and with a native
 * image in the same context. */
static void test_nonnative(void) {
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim;
    float *px = golden("nonnative_astronaut_96x48_pixels", 3 * 96 * 48);
    float *ref = golden("nonnative_astronaut_96x48_emb", D);
    float *pos = golden("nonnative_astronaut_96x48_posemb", 19 * 64);
    REQUIRE(px && ref && pos);
    pe_ctx *c = new_ctx(2, 2);
    REQUIRE(c);
    capture cap = {0};
    pe_ctx_set_trace(c, on_trace, &cap);
    float out[2 * 4096];
    CHECK_OK(pe_encode_pixels_hw(c, px, 1, 96, 48, out));
    size_t n = 0;
    const float *p = captured(&cap, "v_posemb", &n);
    CHECK(p && n == 19 * 64);
    if (p && n == 19 * 64) CHECK_CLOSE("nonnative_astronaut_96x48_posemb", p, pos, n);
    CHECK_CLOSE("nonnative_astronaut_96x48_emb", out, ref, D);
    pe_ctx_set_trace(c, NULL, NULL);
    capture_free(&cap);
    /* two copies in one batch: 2 x 19 tokens fit 2 x 17 x ... no: the
     * context holds 2 x 17 = 34 tokens, 38 do not -> TOO_LARGE */
    float *two = malloc(2 * 3 * 96 * 48 * sizeof(float));
    memcpy(two, px, 3 * 96 * 48 * sizeof(float));
    memcpy(two + 3 * 96 * 48, px, 3 * 96 * 48 * sizeof(float));
    CHECK_ERR(pe_encode_pixels_hw(c, two, 2, 96, 48, out), PERR_TOO_LARGE);
    pe_ctx *c4 = new_ctx(4, 1);
    if (c4) {
        CHECK_OK(pe_encode_pixels_hw(c4, two, 2, 96, 48, out));
        CHECK_CLOSE("nonnative batch of 2 (item 1)", out + D, ref, D);
    }
    /* a native pass afterwards is unaffected */
    float *nat = golden("img_astronaut_pixels", 3 * 64 * 64), *nref = golden("img_astronaut_emb", D);
    if (nat && nref) {
        CHECK_OK(pe_encode_pixels(c, nat, 1, out));
        CHECK_CLOSE("native after non-native", out, nref, D);
        CHECK_OK(pe_encode_pixels_hw(c, nat, 1, 64, 64, out));
        CHECK_CLOSE("native through _hw", out, nref, D);
    }
    CHECK_ERR(pe_encode_pixels_hw(c, px, 1, 96, 40, out), PERR_INVALID); /* not a patch multiple */
    CHECK_ERR(pe_encode_pixels_hw(c, px, 1, 0, 48, out), PERR_INVALID);
    float *big = calloc((size_t)3 * 160 * 160, sizeof(float));   /* 101 tokens > 4 x 17 */
    CHECK_ERR(pe_encode_pixels_hw(c4, big, 1, 160, 160, out), PERR_TOO_LARGE);
    free(big);
    free(nat);
    free(nref);
    free(two);
    pe_ctx_free(c4);
    free(px);
    free(ref);
    free(pos);
    pe_ctx_free(c);
}

static void test_video_frames(void) {
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim;
    size_t S = cfg->image_size, per = 3 * S * S;
    float *frames = golden("video_frames", 8 * per);
    float *ref = golden("video_frame_emb", 8 * (size_t)D);
    float *ref_norm = golden("video_emb_norm", D);
    REQUIRE(frames && ref && ref_norm);
    pe_ctx *c = new_ctx(8, 1);
    REQUIRE(c);
    float *out = calloc(8 * (size_t)D, sizeof(float));
    CHECK_OK(pe_encode_pixels(c, frames, 8, out));
    CHECK_CLOSE("video_frame_emb (batch of 8)", out, ref, 8 * (size_t)D);
    /* encode_video(normalize=True): mean of normalized frames */
    float mean[4096] = {0};
    for (int f = 0; f < 8; f++) {
        pe_l2_normalize(out + (size_t)f * D, D);
        for (int i = 0; i < D; i++) mean[i] += out[(size_t)f * D + i] / 8;
    }
    CHECK_CLOSE("video_emb_norm", mean, ref_norm, D);
    free(out);
    free(frames);
    free(ref);
    free(ref_norm);
    pe_ctx_free(c);
}

/* -------------------------------------------------------------- text */

static void test_texts(void) {
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim, L = cfg->context_length;
    size_t n_ids = 0;
    int32_t *ids = t_golden_i32(FIX, "text_ids", &n_ids);
    REQUIRE(ids && n_ids % L == 0);
    int n = (int)(n_ids / L);
    float *ref = golden("text_emb", (size_t)n * D), *refb = golden("text_emb_batch", (size_t)n * D),
          *refn = golden("text_emb_norm", (size_t)n * D);
    REQUIRE(ref && refb && refn);
    float *single = calloc((size_t)n * D, sizeof(float)), *batch = calloc((size_t)n * D, sizeof(float)),
          *batch2 = calloc((size_t)n * D, sizeof(float));
    pe_ctx *c1 = new_ctx(1, 1), *cn = new_ctx(n, 1), *cn2 = new_ctx(n, 2);
    REQUIRE(c1 && cn && cn2);
    for (int i = 0; i < n; i++) CHECK_OK(pe_encode_ids(c1, ids + (size_t)i * L, 1, single + (size_t)i * D));
    CHECK_CLOSE("text_emb (one string per call)", single, ref, (size_t)n * D);
    CHECK_OK(pe_encode_ids(cn, ids, n, batch));
    CHECK_CLOSE("text_emb_batch (one batch)", batch, refb, (size_t)n * D);
    CHECK_OK(pe_encode_ids(cn2, ids, n, batch2));
    CHECK_CLOSE("text_emb_batch (2 threads)", batch2, refb, (size_t)n * D);
    for (int i = 0; i < n; i++) pe_l2_normalize(batch + (size_t)i * D, D);
    CHECK_CLOSE("text_emb_norm", batch, refn, (size_t)n * D);
    /* Per string, so that a failure names it. */
    for (int i = 0; i < n; i++) {
        double d = t_rel_maxdiff(single + (size_t)i * D, ref + (size_t)i * D, D);
        if (!(d <= TOL)) t_fail(__FILE__, __LINE__, "text %d: max rel diff %.3g", i, d);
    }
    free(single);
    free(batch);
    free(batch2);
    free(ref);
    free(refb);
    free(refn);
    free(ids);
    pe_ctx_free(c1);
    pe_ctx_free(cn);
    pe_ctx_free(cn2);
}

/* ------------------------------------------------- concurrent contexts */

typedef struct worker {
    int id;
    double worst;
    int failures;
} worker;

/* Each thread: its own 2-thread context on the shared model, alternating
 * image and text passes; every result must equal the golden. */
static void *worker_main(void *arg) {
    worker *w = arg;
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim, L = cfg->context_length;
    size_t S = cfg->image_size;
    pe_ctx_opts o;
    pe_ctx_opts_default(&o);
    o.max_batch = 2;
    o.n_threads = 2;
    pe_ctx *c = NULL;
    if (pe_ctx_new(model, &o, &c)) { w->failures++; return NULL; }
    float *px = t_golden_f32(FIX, w->id ? "img_coffee_pixels" : "img_camera_pixels", NULL);
    float *ref = t_golden_f32(FIX, w->id ? "img_coffee_emb" : "img_camera_emb", NULL);
    int32_t *ids = t_golden_i32(FIX, "text_ids", NULL);
    float *tref = t_golden_f32(FIX, "text_emb", NULL);
    float out[4096];
    for (int rep = 0; px && ref && ids && tref && rep < 20; rep++) {
        if (pe_encode_pixels(c, px, 1, out)) w->failures++;
        double d = t_rel_maxdiff(out, ref, D);
        if (!(d <= TOL)) w->failures++;
        if (d > w->worst) w->worst = d;
        int ti = (rep * 7 + w->id) % 60;
        if (pe_encode_ids(c, ids + (size_t)ti * L, 1, out)) w->failures++;
        d = t_rel_maxdiff(out, tref + (size_t)ti * D, D);
        if (!(d <= TOL)) w->failures++;
        if (d > w->worst) w->worst = d;
    }
    (void)S;
    free(px);
    free(ref);
    free(ids);
    free(tref);
    pe_ctx_free(c);
    return NULL;
}

static void test_concurrent_contexts(void) {
    pthread_t th[2];
    worker w[2] = {{.id = 0}, {.id = 1}};
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(w[i].failures, 0);
        printf("  concurrent context %d: 40 passes, max rel diff %.3g\n", i, w[i].worst);
    }
}

/* ---------------------------------------------------- model and misuse */

static void test_model_info(void) {
    const pe_config *cfg = pe_model_config(model);
    CHECK_EQ_INT(cfg->image_size, 64);
    CHECK_EQ_INT(cfg->width, 64);
    CHECK_EQ_INT(cfg->heads, 2);
    CHECK_EQ_INT(cfg->output_dim, 32);
    CHECK_EQ_INT(pe_model_param_count(model), 3468801);
    CHECK_STR(pe_model_dtype(model), "float32");
    /* logit_scale is stored as a log */
    float ls = pe_model_logit_scale(model);
    CHECK(ls > 1 && isfinite(ls));
    printf("  logit scale %.6g, fingerprint %016llx\n", ls, (unsigned long long)pe_model_fingerprint(model));
    /* The fingerprint is the same for the .pt and the .safetensors file
     * and differs between models. */
    pe_model *m2 = load(strstr(PE_TEST_MODEL, ".pt") ? "tiny-a.safetensors" : "tiny-a.pt");
    REQUIRE(m2);
    CHECK(pe_model_fingerprint(m2) == pe_model_fingerprint(model));
    CHECK(pe_model_logit_scale(m2) == ls);
    pe_model_free(m2);
}

static void test_misuse(void) {
    const pe_config *cfg = pe_model_config(model);
    int D = cfg->output_dim, L = cfg->context_length;
    size_t S = cfg->image_size, per = 3 * S * S;
    pe_ctx *c = new_ctx(2, 1);
    REQUIRE(c);
    float *px = calloc(3 * per, sizeof(float));
    int32_t *ids = calloc(3 * (size_t)L, sizeof(int32_t));
    float out[3 * 4096];
    CHECK_ERR(pe_encode_pixels(c, px, 3, out), PERR_INVALID);
    CHECK_ERR(pe_encode_ids(c, ids, 3, out), PERR_INVALID);
    CHECK_ERR(pe_encode_pixels(c, px, -1, out), PERR_INVALID);
    ids[5] = cfg->vocab_size;
    CHECK_ERR(pe_encode_ids(c, ids, 1, out), PERR_INVALID);
    ids[5] = -1;
    CHECK_ERR(pe_encode_ids(c, ids, 1, out), PERR_INVALID);
    px[per + 17] = NAN;
    CHECK_ERR(pe_encode_pixels(c, px, 2, out), PERR_INVALID);
    CHECK_OK(pe_encode_pixels(c, px, 0, out));
    /* all-zero ids (no end-of-text at all): pools position 0, no crash */
    ids[5] = 0;
    CHECK_OK(pe_encode_ids(c, ids, 2, out));
    for (int i = 0; i < 2 * D; i++) CHECK(isfinite(out[i]));
    pe_ctx_opts o;
    pe_ctx_opts_default(&o);
    o.max_batch = 0;
    pe_ctx *bad = NULL;
    CHECK_ERR(pe_ctx_new(model, &o, &bad), PERR_INVALID);
    CHECK(bad == NULL);
    pe_ctx_opts_default(&o);
    o.n_threads = 0;
    CHECK_ERR(pe_ctx_new(model, &o, &bad), PERR_INVALID);
    pe_ctx_free(NULL);
    pe_model_free(NULL);
    free(px);
    free(ids);
    pe_ctx_free(c);
}

/* After every pass above (all the shapes this model meets), no product
 * ran on oneDNN's reference code: a shape its fast kernels refuse (a
 * strided output did, in 2.6) would pass conformance at a tenth the speed. */
static void test_kernels(void) {
    int n_slow = -1;
    const char *k = pe_model_kernel(model, &n_slow);
    printf("  instruction set %s, kernel %s, precision %s, matrices on reference code: %d\n", pe_cpu_isa(), k,
           pe_precision_name(pe_model_precision(model)), n_slow);
    CHECK(k && *k && strncmp(k, "ref", 3) != 0);
    CHECK_EQ_INT(n_slow, 0);
    CHECK_STR(pe_precision_name(pe_model_precision(model)), "fp32");
    /* One setting caps both: PERCEPT_MAX_ISA reached oneDNN (pe_cpu.h). */
    const char *cap = getenv("PERCEPT_MAX_ISA"), *dnnl = getenv("ONEDNN_MAX_CPU_ISA");
    if (cap && !(dnnl && *dnnl) && !strcmp(cap, "avx2")) CHECK_STR(pe_cpu_isa(), "avx2");
    if (cap && !(dnnl && *dnnl) && !strcmp(cap, "scalar")) CHECK_STR(pe_cpu_isa(), "sse41");
}

static void test_missing_file(void) {
    pe_model *m = NULL;
    int rc = pe_model_load("/nonexistent/model.safetensors", NULL, &m);
    CHECK(rc != PERR_OK);
    CHECK(m == NULL);
    CHECK(strstr(perr_msg(), "/nonexistent/model.safetensors") != NULL);
}

int main(void) {
    printf("encoder kernels at %s (PERCEPT_MAX_ISA=%s)\n", pe_cpu_describe(),
           getenv("PERCEPT_MAX_ISA") ? getenv("PERCEPT_MAX_ISA") : "unset");
    model = load(PE_TEST_MODEL);
    if (!model) return 1;
    T_RUN(test_model_info);
    T_RUN(test_vision_trace);
    T_RUN(test_text_trace);
    T_RUN(test_images);
    T_RUN(test_image_files);
    T_RUN(test_nonnative);
    T_RUN(test_video_frames);
    T_RUN(test_texts);
    T_RUN(test_concurrent_contexts);
    T_RUN(test_misuse);
    T_RUN(test_kernels);
    T_RUN(test_missing_file);
    printf("worst max rel diff over all comparisons: %.3g (tolerance %.0e)\n", worst, TOL);
    pe_model_free(model);
    return t_done();
}
