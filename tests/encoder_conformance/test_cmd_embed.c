/* `percept embed` end to end against the official outputs (tiny-a): image
 * files (our decode + resize: cosine >= 0.999), golden pixel tensors and
 * the 60 golden strings (tokenizer + text tower: 1e-4), interleaved in one
 * call so that batching must keep the input order; raw vectors with
 * --no-normalize; and the errors (wrong pixel file size, missing file,
 * unknown flag) exit 2 with a message naming the input and print nothing.
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tiny-a"
#define D 32
#define MAXARGS 512

typedef struct run_result {
    int status;              /* exit code, -1 if it did not exit */
    char *out, *err;
} run_result;

static char *slurp_fd(int fd) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && (r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += r;
        if (cap - len < 1024) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[len] = 0;
    return buf;
}

/* Runs argv (argv[0] = the percept binary) capturing stdout and stderr. */
static run_result run(char **argv) {
    run_result r = {-1, NULL, NULL};
    char *errpath = t_path("%s/percept-embed-err-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    int po[2];
    if (pipe(po)) { free(errpath); return r; }
    pid_t pid = fork();
    if (pid == 0) {
        int fe = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(po[1], 1);
        dup2(fe, 2);
        close(po[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    r.out = slurp_fd(po[0]);
    close(po[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.err = t_read_file(errpath, NULL);
    unlink(errpath);
    free(errpath);
    return r;
}

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* Parses "{"dim": D, "vector": [...]}" lines; returns the count. */
static int parse_lines(const char *out, float *vecs, int max) {
    int n = 0;
    const char *p = out;
    while (p && *p && n < max) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        cJSON *o = cJSON_ParseWithLength(p, len);
        cJSON *dim = cJSON_GetObjectItem(o, "dim"), *v = cJSON_GetObjectItem(o, "vector");
        if (!o || !cJSON_IsNumber(dim) || dim->valueint != D || cJSON_GetArraySize(v) != D) {
            t_fail(__FILE__, __LINE__, "output line %d is not {\"dim\": %d, \"vector\": [...]}: %.80s", n + 1, D, p);
            cJSON_Delete(o);
            return -1;
        }
        for (int i = 0; i < D; i++) vecs[(size_t)n * D + i] = (float)cJSON_GetArrayItem(v, i)->valuedouble;
        cJSON_Delete(o);
        n++;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static char *exe(void) {
    const char *e = getenv("PERCEPT_EXE");
    return (char *)(e && *e ? e : "percept");
}

static char *model_path(void) { return t_path("%s/%s/%s.safetensors", t_fixtures(), FIX, FIX); }
static char *vocab_path(void) { return t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures()); }

static void test_all_inputs_in_order(void) {
    char *args[MAXARGS];
    int na = 0;
    char *model = model_path(), *vocab = vocab_path();
    args[na++] = exe();
    args[na++] = "embed";
    args[na++] = "--model";
    args[na++] = model;
    args[na++] = "--vocab";
    args[na++] = vocab;
    args[na++] = "--threads";
    args[na++] = "2";
    /* inputs.json: image files and their goldens */
    char *ip = t_path("%s/%s/golden/inputs.json", t_fixtures(), FIX);
    char *ij = t_read_file(ip, NULL);
    char *tp = t_path("%s/%s/golden/texts.json", t_fixtures(), FIX);
    char *tj = t_read_file(tp, NULL);
    free(ip);
    free(tp);
    cJSON *inputs = cJSON_Parse(ij ? ij : ""), *texts = cJSON_Parse(tj ? tj : "");
    free(ij);
    free(tj);
    REQUIRE(inputs && texts);
    cJSON *imgs = cJSON_GetObjectItem(inputs, "images"), *txts = cJSON_GetObjectItem(texts, "texts");
    int n_img = cJSON_GetArraySize(imgs), n_txt = cJSON_GetArraySize(txts);
    REQUIRE(n_img == 6 && n_txt == 60);
    /* expected kinds per output line: 'i' file, 'p' pixels, 't' text */
    char kind[MAXARGS];
    int ref_idx[MAXARGS], n_out = 0;
    char *owned[MAXARGS];
    int n_owned = 0;
    int ti = 0;
    for (int i = 0; i < n_img; i++) {
        const char *file = cJSON_GetObjectItem(cJSON_GetArrayItem(imgs, i), "file")->valuestring;
        const char *stem = cJSON_GetObjectItem(cJSON_GetArrayItem(imgs, i), "stem")->valuestring;
        args[na++] = "--image";
        args[na++] = owned[n_owned++] = t_path("%s/%s/%s", t_fixtures(), FIX, file);
        kind[n_out] = 'i', ref_idx[n_out++] = i;
        args[na++] = "--pixels";
        args[na++] = owned[n_owned++] = t_path("%s/%s/golden/img_%s_pixels.f32", t_fixtures(), FIX, stem);
        kind[n_out] = 'p', ref_idx[n_out++] = i;
        /* ten texts after each image pair: batches of mixed kinds */
        for (int k = 0; k < 10 && ti < n_txt; k++, ti++) {
            args[na++] = "--text";
            args[na++] = cJSON_GetObjectItem(cJSON_GetArrayItem(txts, ti), "text")->valuestring;
            kind[n_out] = 't', ref_idx[n_out++] = ti;
        }
    }
    args[na] = NULL;
    run_result r = run(args);
    CHECK_EQ_INT(r.status, 0);
    if (r.status) fprintf(stderr, "stderr: %s\n", r.err ? r.err : "");
    float *got = calloc(MAXARGS * D, sizeof(float));
    int n = parse_lines(r.out ? r.out : "", got, MAXARGS);
    CHECK_EQ_INT(n, n_out);
    float *text_norm = t_golden_f32(FIX, "text_emb_norm", NULL);
    double worst_cos = 1, worst_diff = 0;
    char name[160];
    for (int o = 0; o < n && o < n_out; o++) {
        const float *v = got + (size_t)o * D;
        if (kind[o] == 't') {
            double d = t_rel_maxdiff(v, text_norm + (size_t)ref_idx[o] * D, D);
            if (d > worst_diff) worst_diff = d;
            if (!(d <= 1e-4)) t_fail(__FILE__, __LINE__, "text %d: max rel diff %.3g", ref_idx[o], d);
            continue;
        }
        const char *stem = cJSON_GetObjectItem(cJSON_GetArrayItem(imgs, ref_idx[o]), "stem")->valuestring;
        snprintf(name, sizeof name, "img_%s_emb_norm", stem);
        float *ref = t_golden_f32(FIX, name, NULL);
        if (!ref) { t_fail(__FILE__, __LINE__, "golden %s", name); continue; }
        if (kind[o] == 'p') {
            double d = t_rel_maxdiff(v, ref, D);
            if (d > worst_diff) worst_diff = d;
            if (!(d <= 1e-4)) t_fail(__FILE__, __LINE__, "%s from pixels: max rel diff %.3g", stem, d);
        } else {
            double bound = 0.999; /* pe-core.md: our decode + resize vs the reference */
            double c = t_cosine(v, ref, D);
            printf("  %-14s from the image file: cosine %.7f (bound %.3f)\n", stem, c, bound);
            if (c < worst_cos) worst_cos = c;
            if (!(c >= bound)) t_fail(__FILE__, __LINE__, "%s from the image file: cosine %.6f < %.3f", stem, c, bound);
        }
        free(ref);
    }
    printf("  %d outputs; worst cosine (files) %.7f, worst max rel diff (pixels, texts) %.3g\n", n, worst_cos,
           worst_diff);
    free(text_norm);
    free(got);
    run_free(&r);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    cJSON_Delete(inputs);
    cJSON_Delete(texts);
    free(model);
    free(vocab);
}

static void test_no_normalize(void) {
    char *model = model_path(), *px = t_path("%s/%s/golden/img_camera_pixels.f32", t_fixtures(), FIX);
    char *args[] = {exe(), "embed", "--model", model, "--pixels", px, "--no-normalize", "--threads", "1", NULL};
    run_result r = run(args);
    CHECK_EQ_INT(r.status, 0);
    float got[D];
    CHECK_EQ_INT(parse_lines(r.out ? r.out : "", got, 1), 1);
    float *ref = t_golden_f32(FIX, "img_camera_emb", NULL);
    if (ref) CHECK(t_rel_maxdiff(got, ref, D) <= 1e-4);
    free(ref);
    run_free(&r);
    free(model);
    free(px);
}

/* A photo large enough for shrink-on-load (2048 px, made with the vips
 * CLI): embed takes the exact reference path anyway, so --image prints
 * exactly what --pixels prints for the exactly preprocessed tensor. */
static void test_large_image_exact(void) {
    char *dir = t_tmpdir("embed-big");
    char *big = t_path("%s/big.jpg", dir), *px = t_path("%s/big.f32", dir), *model = model_path();
    char *cmd = t_path("vips resize '%s/%s/images/rocket.jpg' '%s[Q=95]' 3.2", t_fixtures(), FIX, big);
    REQUIRE(system(cmd) == 0);
    const int S = 64; /* tiny-a's input size */
    float *pix = malloc(sizeof(float) * 3 * S * S);
    pe_image_opts o;
    pe_image_opts_default(&o, S);
    pe_image_info info;
    REQUIRE_OK(pe_image_preprocess_ex(big, NULL, 0, big, &o, pix, &info));
    CHECK(info.shrink > 1); /* the default path would shrink this one */
    o.shrink_on_load = 0;
    REQUIRE_OK(pe_image_preprocess_ex(big, NULL, 0, big, &o, pix, &info));
    CHECK_EQ_INT(info.shrink, 1);
    t_write_file(px, pix, sizeof(float) * 3 * S * S);
    char *a1[] = {exe(), "embed", "--model", model, "--image", big, NULL};
    char *a2[] = {exe(), "embed", "--model", model, "--pixels", px, NULL};
    run_result r1 = run(a1), r2 = run(a2);
    CHECK_EQ_INT(r1.status, 0);
    CHECK_EQ_INT(r2.status, 0);
    CHECK(r1.out && r2.out && r1.out[0] && !strcmp(r1.out, r2.out));
    run_free(&r1);
    run_free(&r2);
    free(pix);
    free(cmd);
    free(model);
    free(px);
    free(big);
    t_rmtree(dir);
    free(dir);
}

static void expect_failure(char **args, const char *needle) {
    run_result r = run(args);
    CHECK_EQ_INT(r.status, 2);
    CHECK(r.out && r.out[0] == 0); /* nothing printed */
    if (!(r.err && strstr(r.err, needle)))
        t_fail(__FILE__, __LINE__, "stderr lacks \"%s\": %s", needle, r.err ? r.err : "(none)");
    run_free(&r);
}

static void test_errors(void) {
    char *model = model_path(), *vocab = vocab_path();
    /* a pixel file of the wrong size: the video frames (8 frames) */
    char *frames = t_path("%s/%s/golden/video_frames.f32", t_fixtures(), FIX);
    char *good = t_path("%s/%s/golden/img_camera_pixels.f32", t_fixtures(), FIX);
    char *a1[] = {exe(), "embed", "--model", model, "--pixels", good, "--pixels", frames, NULL};
    expect_failure(a1, "input 2 (--pixels)");
    expect_failure(a1, "expected 49152");
    char *a2[] = {exe(), "embed", "--model", model, "--image", "/nonexistent/x.jpg", NULL};
    expect_failure(a2, "/nonexistent/x.jpg");
    char *a3[] = {exe(), "embed", "--model", model, "--bogus", NULL};
    expect_failure(a3, "--bogus");
    char *a4[] = {exe(), "embed", "--model", model, NULL};
    expect_failure(a4, "no input");
    char *a5[] = {exe(), "embed", "--model", "/nonexistent/model.pt", "--text", "x", "--vocab", vocab, NULL};
    expect_failure(a5, "/nonexistent/model.pt");
    char *a6[] = {exe(), "embed", "--model", model, "--text", "x", "--threads", "0", NULL};
    expect_failure(a6, "--threads");
    /* a text-format file as an image */
    char *a7[] = {exe(), "embed", "--model", model, "--image", vocab, NULL};
    expect_failure(a7, "input 1 (--image)");
    free(model);
    free(vocab);
    free(frames);
    free(good);
}

int main(void) {
    T_RUN(test_all_inputs_in_order);
    T_RUN(test_no_normalize);
    T_RUN(test_errors);
    T_RUN(test_large_image_exact);
    return t_done();
}
