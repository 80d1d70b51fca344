/* Writes the seed corpora of the fuzz targets (small files, generated at
 * build time so that no binary seeds are committed):
 *   <out>/safetensors/  small valid safetensors + the tiny-a header
 *   <out>/zip/          small torch.save archives (plain, wrapped, zip64, f16)
 *   <out>/pickle/       data.pkl streams over storages 0 (16 f32), 1 (6), 2 (1),
 *                       plus tiny-a's own data.pkl
 * usage: fuzz_seedgen OUTDIR FIXTURES */
#define _GNU_SOURCE
#include "tests/encoder_weights/ckpt_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out;

static void put(const char *sub, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) { perror(path); exit(1); }
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)len);
    if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) { fclose(f); free(p); return NULL; }
    fclose(f);
    *n = (size_t)len;
    return p;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: fuzz_seedgen OUTDIR FIXTURES\n"); return 2; }
    out = argv[1];
    mkdir(out, 0755);
    static const float v[16] = {1, -2, 3.5f, 0, 1e-8f, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    ck_tensor t[4] = {
        {.name = "visual.proj", .dtype = PE_DT_F32, .ndim = 2, .shape = {4, 4}, .data = v},
        {.name = "module.ln.weight", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = v},
        {.name = "logit_scale", .dtype = PE_DT_F32, .ndim = 0, .data = v},
        {.name = "h", .dtype = PE_DT_F16, .ndim = 3, .shape = {2, 2, 2}, .data = v},
    };
    ckbuf b = {0};
    ck_safetensors(&b, t, 3, NULL);
    put("safetensors", "plain", b.p, b.n);
    ck_free(&b);
    ck_safetensors(&b, t, 4, (const char *const[]){"vision_config", "{\"width\": 4}", "text_config", "{}", NULL});
    put("safetensors", "meta_f16", b.p, b.n);
    ck_free(&b);

    ck_pt(&b, t, 3, NULL);
    put("zip", "plain", b.p, b.n);
    ck_free(&b);
    ck_pt_opts o1 = {.wrap = "state_dict", .root = "x", .zip = {.zip64 = 1}};
    ck_pt(&b, t, 4, &o1);
    put("zip", "wrapped_zip64", b.p, b.n);
    ck_free(&b);
    ck_pt_opts o2 = {.byteorder = "little", .zip = {.align = 64, .skew = 2}};
    ck_pt(&b, t + 3, 1, &o2);
    put("zip", "skewed_f16", b.p, b.n);
    ck_free(&b);

    /* pickles over the fixed storages of fuzz_pickle.c */
    ck_tensor ps[3] = {
        {.name = "a", .dtype = PE_DT_F32, .ndim = 2, .shape = {4, 4}},
        {.name = "module.b", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}},
        {.name = "c", .dtype = PE_DT_F32, .ndim = 0},
    };
    ck_pt_pickle(&b, ps, 3, NULL);
    put("pickle", "plain", b.p, b.n);
    ck_free(&b);
    ck_pt_pickle(&b, ps, 3, "weights");
    put("pickle", "wrapped", b.p, b.n);
    ck_free(&b);
    ck_pk_proto(&b, 2);
    ck_pk_op(&b, '}');
    ck_pk_unicode(&b, "v");
    ck_pk_tensor(&b, "FloatStorage", "0", 16, 4, 2, (int64_t[]){3, 4}, (int64_t[]){4, 1});
    ck_pk_op(&b, 's');
    ck_pk_unicode(&b, "h");
    ck_pk_tensor(&b, "HalfStorage", "1", 12, 2, 1, (int64_t[]){10}, (int64_t[]){1});
    ck_pk_op(&b, 's');
    ck_pk_op(&b, '.');
    put("pickle", "views", b.p, b.n);
    ck_free(&b);

    /* the fixtures: tiny-a's safetensors header (cut after it) and data.pkl */
    char path[4096];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/tiny-a/tiny-a.safetensors", argv[2]);
    uint8_t *f = slurp(path, &n);
    if (f && n > 8) {
        uint64_t h = 0;
        for (int i = 0; i < 8; i++) h |= (uint64_t)f[i] << (8 * i);
        if (h < n - 8) put("safetensors", "tiny_a_header", f, (size_t)(8 + h + 64));
    }
    free(f);
    snprintf(path, sizeof path, "%s/tiny-a/tiny-a.pt", argv[2]);
    f = slurp(path, &n);
    /* data.pkl is the first member: local header at 0 */
    if (f && n > 30 && !memcmp(f, "PK\3\4", 4)) {
        size_t sz = f[22] | f[23] << 8 | (size_t)f[24] << 16 | (size_t)f[25] << 24;
        size_t at = 30 + (f[26] | f[27] << 8) + (f[28] | f[29] << 8);
        if (at + sz <= n) put("pickle", "tiny_a_data_pkl", f + at, sz);
    }
    free(f);
    return 0;
}
