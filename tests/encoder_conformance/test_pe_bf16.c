/* bf16 precision (pe_load_opts.precision) against fp32 and the official
 * outputs.
 *
 *   test_pe_bf16            tiny-a: the six fixture images and 60 texts
 *                           (cosine to fp32 and to the official embeddings
 *                           >= 0.9999), every distinct real photo of the
 *                           Debian wallpapers (tests/engine/photos.h)
 *                           through our decode (cosine >= 0.9999), and the
 *                           search agreement: recall@10 of the bf16 ranking
 *                           against the fp32 ranking over ~3000 crops of
 *                           those photos (>= 0.95; 1000 of them as queries).
 *   test_pe_bf16 t16 [N]    the same photos and agreement with a T16-shaped
 *                           model (random weights in the official shapes,
 *                           384 px), N crops (default 300; label slow).
 *
 * On a CPU without native bf16 (or with ONEDNN_MAX_CPU_ISA below
 * AVX512_CORE_BF16: test_pe_bf16_refused) it checks instead that loading in
 * bf16 is refused with a message that says why.
 */
#define _GNU_SOURCE
#include "bench/common/bench_ckpt.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_config.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"
#include "tests/engine/photos.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COS_MIN 0.9999
#define RECALL_MIN 0.95
#define K_NN 10

#define MAIN_REQUIRE(cond) do { if (!(cond)) { t_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return t_done(); } } while (0)

static double cosine(const float *a, const float *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < d; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return ab / sqrt(aa * bb);
}

static pe_model *load(const char *path, pe_precision p) {
    pe_load_opts o;
    pe_load_opts_default(&o);
    o.precision = p;
    pe_model *m = NULL;
    if (pe_model_load(path, &o, &m)) t_fail(__FILE__, __LINE__, "load %s (%s): %s", path, pe_precision_name(p), perr_msg());
    return m;
}

static pe_ctx *ctx(const pe_model *m, int batch, int threads) {
    pe_ctx_opts o;
    pe_ctx_opts_default(&o);
    o.max_batch = batch;
    o.n_threads = threads;
    pe_ctx *c = NULL;
    if (pe_ctx_new(m, &o, &c)) t_fail(__FILE__, __LINE__, "context: %s", perr_msg());
    return c;
}

/* ------------------------------------------------------------ photos */

/* Distinct real photos (tests/engine/photos.h: Debian's wallpapers, one
 * per picture, scaled to max_side). */
static photo_set photos(int max_side) {
    photo_set ps = {0};
    int n = photos_gather(&ps, 0, max_side);
    if (n < 20)
        t_fail(__FILE__, __LINE__, "%d photos: this test needs real photos (Debian's desktop backgrounds, "
               "scripts/deps.sh)", n);
    return ps;
}

/* Each photo through our decode at S (cosine bf16 vs fp32), and crops
 * of it decoded at G*S (the whole photo at S is the 2x2 mean of that
 * decode): S x S windows on a grid of `grid` x `grid`
 * positions, for the agreement test. Returns the number of crops made
 * (<= max_crops) with their fp32 and bf16 embeddings (normalized). */
static int encode_photos(pe_model *m32, pe_model *m16, const photo_set *l, int grid, int max_crops, float **e32,
                         float **e16, double *worst_cos) {
    const pe_config *cfg = pe_model_config(m32);
    int S = cfg->image_size, D = cfg->output_dim, G = 2, SG = G * S;
    size_t per = (size_t)3 * S * S;
    enum { B = 8 };
    pe_ctx *c32 = ctx(m32, B, 2), *c16 = ctx(m16, B, 2);
    float *big = malloc((size_t)3 * SG * SG * sizeof(float)), *px = malloc(B * per * sizeof(float));
    float o32[B * 1024], o16[B * 1024];
    *e32 = malloc((size_t)max_crops * D * sizeof(float));
    *e16 = malloc((size_t)max_crops * D * sizeof(float));
    int n = 0, photos_seen = 0;
    *worst_cos = 1;
    /* spread the crops over all photos */
    int per_photo = (max_crops + l->n - 1) / l->n;
    if (per_photo > grid * grid) per_photo = grid * grid;
    for (int i = 0; i < l->n && n < max_crops && c32 && c16; i++) {
        /* one decode per photo (at G*S); the whole photo at S is its 2x2 mean */
        pe_image_opts o;
        pe_image_opts_default(&o, SG);
        if (pe_image_preprocess_ex(l->paths[i], NULL, 0, NULL, &o, big, NULL)) {
            printf("  skipped %s: %s\n", l->paths[i], perr_msg());
            continue;
        }
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    const float *b = big + ((size_t)ch * SG + 2 * y) * SG + 2 * x;
                    px[((size_t)ch * S + y) * S + x] = 0.25f * (b[0] + b[1] + b[SG] + b[SG + 1]);
                }
        photos_seen++;
        CHECK_OK(pe_encode_pixels(c32, px, 1, o32));
        CHECK_OK(pe_encode_pixels(c16, px, 1, o16));
        double cs = cosine(o32, o16, D);
        if (cs < *worst_cos) *worst_cos = cs;
        if (!(cs >= COS_MIN)) t_fail(__FILE__, __LINE__, "%s: cosine bf16 vs fp32 %.7f < %.4f", l->paths[i], cs, COS_MIN);
        int nb = 0;
        for (int k = 0; k < per_photo && n + nb < max_crops; k++) {
            /* crop k of a grid x grid raster, in a fixed scattered order */
            int cell = (k * 7 + i) % (grid * grid), gy = cell / grid, gx = cell % grid;
            int oy = gy * (SG - S) / (grid - 1), ox = gx * (SG - S) / (grid - 1);
            float *dst = px + (size_t)nb * per;
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < S; y++)
                    memcpy(dst + ((size_t)ch * S + y) * S, big + ((size_t)ch * SG + oy + y) * SG + ox,
                           S * sizeof(float));
            if (++nb == B || k + 1 == per_photo || n + nb == max_crops) {
                CHECK_OK(pe_encode_pixels(c32, px, nb, o32));
                CHECK_OK(pe_encode_pixels(c16, px, nb, o16));
                for (int b = 0; b < nb; b++) {
                    memcpy(*e32 + (size_t)(n + b) * D, o32 + (size_t)b * D, D * sizeof(float));
                    memcpy(*e16 + (size_t)(n + b) * D, o16 + (size_t)b * D, D * sizeof(float));
                    pe_l2_normalize(*e32 + (size_t)(n + b) * D, D);
                    pe_l2_normalize(*e16 + (size_t)(n + b) * D, D);
                }
                n += nb;
                nb = 0;
            }
        }
    }
    printf("  %d photos: worst cosine bf16 vs fp32 %.7f; %d crops\n", photos_seen, *worst_cos, n);
    free(big);
    free(px);
    pe_ctx_free(c32);
    pe_ctx_free(c16);
    return n;
}

/* top-k of q against all rows (excluding row self), by inner product */
static void topk(const float *db, int n, int D, const float *q, int self, int *out) {
    float best[K_NN];
    for (int k = 0; k < K_NN; k++) { best[k] = -INFINITY; out[k] = -1; }
    for (int i = 0; i < n; i++) {
        if (i == self) continue;
        float s = 0;
        for (int d = 0; d < D; d++) s += db[(size_t)i * D + d] * q[d];
        if (s <= best[K_NN - 1]) continue;
        int k = K_NN - 1;
        while (k > 0 && best[k - 1] < s) { best[k] = best[k - 1]; out[k] = out[k - 1]; k--; }
        best[k] = s;
        out[k] = i;
    }
}

/* Every crop as a query against all others: the bf16 ranking (bf16
 * vectors both sides, a database made in bf16) against the fp32 one. */
static double recall_at_10(const float *e32, const float *e16, int n, int D, int n_queries) {
    long hit = 0, tot = 0;
    int step = n_queries < n ? n / n_queries : 1;
    for (int q = 0; q < n; q += step) {
        int a[K_NN], b[K_NN];
        topk(e32, n, D, e32 + (size_t)q * D, q, a);
        topk(e16, n, D, e16 + (size_t)q * D, q, b);
        for (int i = 0; i < K_NN; i++)
            for (int j = 0; j < K_NN; j++) hit += a[i] >= 0 && a[i] == b[j];
        tot += K_NN;
    }
    return tot ? (double)hit / tot : 0;
}

static void agreement(pe_model *m32, pe_model *m16, int grid, int max_crops, int n_queries) {
    photo_set l = photos(2 * pe_model_config(m32)->image_size);
    if (l.n < 20) { photos_free(&l); return; }
    float *e32 = NULL, *e16 = NULL;
    double worst = 1;
    int n = encode_photos(m32, m16, &l, grid, max_crops, &e32, &e16, &worst);
    int D = pe_model_config(m32)->output_dim;
    CHECK(n >= max_crops / 2);
    double r = recall_at_10(e32, e16, n, D, n_queries);
    double cmin = 1;
    for (int i = 0; i < n; i++) {
        double c = cosine(e32 + (size_t)i * D, e16 + (size_t)i * D, D);
        if (c < cmin) cmin = c;
    }
    printf("  recall@10 of the bf16 ranking vs fp32 over %d crops (%d queries): %.4f; worst crop cosine %.7f\n", n,
           n_queries < n ? n_queries : n, r, cmin);
    if (!(r >= RECALL_MIN)) t_fail(__FILE__, __LINE__, "recall@10 %.4f < %.2f", r, RECALL_MIN);
    if (!(cmin >= COS_MIN)) t_fail(__FILE__, __LINE__, "a crop's cosine %.7f < %.4f", cmin, COS_MIN);
    free(e32);
    free(e16);
    photos_free(&l);
}

/* ------------------------------------------------------------ tiny-a */

static void check_vs(const char *what, const float *a, const float *b, int n, int D, double *worst) {
    for (int i = 0; i < n; i++) {
        double c = cosine(a + (size_t)i * D, b + (size_t)i * D, D);
        if (c < *worst) *worst = c;
        if (!(c >= COS_MIN)) t_fail(__FILE__, __LINE__, "%s %d: cosine %.7f < %.4f", what, i, c, COS_MIN);
    }
}

static void test_fixtures(pe_model *m32, pe_model *m16) {
    const pe_config *cfg = pe_model_config(m32);
    int D = cfg->output_dim, L = cfg->context_length;
    size_t n = 0;
    const char *stems[] = {"astronaut", "camera", "chelsea", "chelsea_rgba", "coffee", "rocket"};
    pe_ctx *c32 = ctx(m32, 8, 1), *c16 = ctx(m16, 8, 2);
    REQUIRE(c32 && c16);
    double w32 = 1, wref = 1;
    float o32[1024], o16[1024];
    char name[96];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "img_%s_pixels", stems[i]);
        float *px = t_golden_f32("tiny-a", name, &n);
        snprintf(name, sizeof name, "img_%s_emb", stems[i]);
        float *ref = t_golden_f32("tiny-a", name, &n);
        REQUIRE(px && ref);
        CHECK_OK(pe_encode_pixels(c32, px, 1, o32));
        CHECK_OK(pe_encode_pixels(c16, px, 1, o16));
        check_vs(stems[i], o16, o32, 1, D, &w32);
        check_vs(stems[i], o16, ref, 1, D, &wref);
        free(px);
        free(ref);
    }
    printf("  6 fixture images: worst cosine bf16 vs fp32 %.7f, vs official %.7f\n", w32, wref);
    size_t n_ids = 0;
    int32_t *ids = t_golden_i32("tiny-a", "text_ids", &n_ids);
    float *ref = t_golden_f32("tiny-a", "text_emb", &n);
    REQUIRE(ids && ref);
    int nt = (int)(n_ids / L);
    float *t32 = malloc((size_t)nt * D * sizeof(float)), *t16 = malloc((size_t)nt * D * sizeof(float));
    for (int i = 0; i < nt; i++) {
        CHECK_OK(pe_encode_ids(c32, ids + (size_t)i * L, 1, t32 + (size_t)i * D));
        CHECK_OK(pe_encode_ids(c16, ids + (size_t)i * L, 1, t16 + (size_t)i * D));
    }
    w32 = wref = 1;
    check_vs("text", t16, t32, nt, D, &w32);
    check_vs("text", t16, ref, nt, D, &wref);
    printf("  %d texts: worst cosine bf16 vs fp32 %.7f, vs official %.7f\n", nt, w32, wref);
    /* bf16 vectors are deterministic too: same with 1 and 2 threads */
    pe_ctx *c16b = ctx(m16, 8, 1);
    float one[1024];
    CHECK_OK(pe_encode_ids(c16b, ids, 1, one));
    CHECK(memcmp(one, t16, D * sizeof(float)) == 0);
    pe_ctx_free(c16b);
    free(t32);
    free(t16);
    free(ids);
    free(ref);
    pe_ctx_free(c32);
    pe_ctx_free(c16);
}

static pe_model *g32, *g16;
static char *g_path;
static int g_crops;

static void refused(void) {
    const char *path = g_path;
    char why[256];
    CHECK(!pe_precision_supported(PE_PRECISION_BF16, why, sizeof why));
    printf("  %s\n", why);
    pe_load_opts o;
    pe_load_opts_default(&o);
    o.precision = PE_PRECISION_BF16;
    pe_model *m = NULL;
    CHECK_ERR(pe_model_load(path, &o, &m), PERR_UNSUPPORTED);
    CHECK(m == NULL);
    CHECK(strstr(perr_msg(), "AVX512_BF16") != NULL);
    CHECK(strstr(perr_msg(), path) != NULL);
    /* fp32 still loads */
    o.precision = PE_PRECISION_FP32;
    CHECK_OK(pe_model_load(path, &o, &m));
    pe_model_free(m);
}

static void test_model(void) {
    CHECK_STR(pe_precision_name(pe_model_precision(g16)), "bf16");
    CHECK_STR(pe_precision_name(pe_model_precision(g32)), "fp32");
    printf("  kernels: fp32 %s, bf16 %s\n", pe_model_kernel(g32, NULL), pe_model_kernel(g16, NULL));
    const char *k = pe_model_kernel(g16, NULL);
    CHECK(strstr(k, "bf16") != NULL || strstr(k, "amx") != NULL);
    /* the identity of the weights, not of how they are multiplied */
    CHECK(pe_model_fingerprint(g16) == pe_model_fingerprint(g32));
    pe_precision p;
    CHECK_OK(pe_precision_parse("bf16", &p));
    CHECK(p == PE_PRECISION_BF16);
    CHECK_ERR(pe_precision_parse("int4", &p), PERR_INVALID);
}

static void test_tiny_fixtures(void) { test_fixtures(g32, g16); }
static void test_tiny_photos(void) { agreement(g32, g16, 8, 3000, 1000); }
static void test_t16_photos(void) {
    printf("  %s, kernels %s / %s\n", pe_model_config(g32)->name, pe_model_kernel(g32, NULL), pe_model_kernel(g16, NULL));
    agreement(g32, g16, 9, g_crops, 500);
}
static void test_no_slow_kernels(void) {
    int a = -1, b = -1;
    pe_model_kernel(g32, &a);
    pe_model_kernel(g16, &b);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 0);
}

int main(int argc, char **argv) {
    printf("instruction set %s\n", pe_cpu_isa());
    int t16 = argc >= 2 && !strcmp(argv[1], "t16");
    char dir[] = "/tmp/percept-bf16-XXXXXX";
    if (t16) {
        g_crops = argc >= 3 ? atoi(argv[2]) : 300;
        MAIN_REQUIRE(mkdtemp(dir));
        g_path = t_path("%s/t16.safetensors", dir);
        const pe_config *c = NULL;
        for (int i = 0; i < pe_config_official_count(); i++)
            if (strstr(pe_config_official(i)->name, "T16")) c = pe_config_official(i);
        MAIN_REQUIRE(c);
        bench_seed(0x243f6a8885a308d3ULL);
        MAIN_REQUIRE(bench_write_model(c, g_path) == PERR_OK);
    } else {
        g_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    }
    if (!pe_precision_supported(PE_PRECISION_BF16, NULL, 0)) {
        printf("no native bf16 here: checking the refusal\n");
        T_RUN(refused);
    } else {
        g32 = load(g_path, PE_PRECISION_FP32);
        g16 = load(g_path, PE_PRECISION_BF16);
        MAIN_REQUIRE(g32 && g16);
        T_RUN(test_model);
        if (t16) {
            T_RUN(test_t16_photos);
        } else {
            T_RUN(test_tiny_fixtures);
            T_RUN(test_tiny_photos);
        }
        T_RUN(test_no_slow_kernels);
        pe_model_free(g32);
        pe_model_free(g16);
    }
    if (t16) {
        unlink(g_path);
        rmdir(dir);
    }
    free(g_path);
    return t_done();
}
