/* bench_video_ingest: video ingest speed through the engine's pipeline.
 *
 * Generates its inputs at run time with the ffmpeg CLI (never committed):
 * a 1-minute 1080p30 H.264 file and a 10-minute 480p30 H.264 file (testsrc2
 * pattern with moving content, GOP 2 s), writes a model with the real
 * PE-Core-T16-384 shapes and random weights (the checkpoint writer of
 * bench/encoder), and ingests each file into a fresh database with the
 * default video options (video vector of 8 frames + 2 s segments of 2
 * frames). Prints seconds of video ingested per second of wall time,
 * frames decoded per second (of decoding time), frames encoded, and the
 * share of time in decoding vs encoding (they overlap: decoders run in
 * parallel with the encoder thread, so decode + encode can exceed wall).
 *
 * usage: bench_video_ingest [--quick] [--jobs N] [--encoder-threads N] [--tmp DIR] [--keep]
 *   --quick: 6 s 1080p and 30 s 480p inputs (a smoke run).
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_config.h"
#include "engine/eng.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


/* ---------------------------------------------------- checkpoint writer */

static uint64_t rng = 0x243f6a8885a308d3ULL;
static inline float urand(void) {
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
        for (int64_t i = 0; i < c; i++) buf[i] = offset + scale * urand();
        fwrite(buf, 4, c, w->f);
        done += c;
    }
}

static int write_model(const pe_config *c, const char *path) {
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

/* -------------------------------------------------------------- FLOPs */

typedef struct input { const char *name; int w, h, seconds; } input;

static int make_input(const input *in, const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > 0) return 0; /* kept from an earlier run */
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=%dx%d:rate=30 -t %d "
             "-c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p '%s'",
             in->w, in->h, in->seconds, path);
    fprintf(stderr, "# generating %s (%d s %dx%d)\n", path, in->seconds, in->w, in->h);
    return system(cmd);
}

static void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "# could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    int quick = 0, keep = 0, jobs = 2, enc_threads = 0;
    const char *tmp = getenv("TMPDIR");
    if (!tmp) tmp = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) jobs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--encoder-threads") && i + 1 < argc) enc_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tmp") && i + 1 < argc) tmp = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--jobs N] [--encoder-threads N] [--tmp DIR] [--keep]\n", argv[0]);
            return 2;
        }
    }
    input inputs[2] = {{"1080p H.264", 1920, 1080, quick ? 6 : 60}, {"480p H.264", 854, 480, quick ? 30 : 600}};

    const pe_config *oc = NULL;
    for (int mi = 0; mi < pe_config_official_count(); mi++)
        if (strstr(pe_config_official(mi)->name, "T16")) oc = pe_config_official(mi);
    if (!oc) { fprintf(stderr, "no T16 configuration\n"); return 1; }
    char model[4096];
    snprintf(model, sizeof model, "%s/bench-video-ingest-%s-%d.safetensors", tmp, oc->name, (int)getpid());
    if (write_model(oc, model)) { fprintf(stderr, "%s\n", perr_msg()); return 1; }

    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("# bench_video_ingest: %s (random weights), %ld cores, decode jobs %d, encoder threads %d%s\n",
           oc->name, nc, jobs, enc_threads > 0 ? enc_threads : (int)nc, quick ? ", QUICK inputs" : "");
    printf("# video options: defaults (8 frames for the video vector, 2 s segments x 2 frames, full-size frames)\n\n");
    printf("| input | video s | wall s | video s / s | frames decoded | decoded frames/s (decode time) | frames encoded | encoded frames/s (encode time) | decode s | encode s | decode share | encode share | peak RSS MB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int status = 0;
    for (int k = 0; k < 2; k++) {
        char path[4096], dir[4200];
        snprintf(path, sizeof path, "%s/bench-video-ingest-%dx%d-%ds.mp4", tmp, inputs[k].w, inputs[k].h, inputs[k].seconds);
        if (make_input(&inputs[k], path)) { fprintf(stderr, "ffmpeg failed for %s\n", path); status = 1; continue; }
        snprintf(dir, sizeof dir, "%s/bench-video-ingest-db-%d", tmp, (int)getpid());
        rm_rf(dir);
        eng_open_opts oo;
        eng_open_opts_default(&oo);
        oo.model_path = model;
        oo.create = 1;
        oo.encoder_threads = enc_threads;
        eng_db *db = NULL;
        if (eng_open(dir, &oo, &db)) { fprintf(stderr, "%s\n", perr_msg()); status = 1; continue; }
        eng_ingest_opts io;
        eng_ingest_opts_default(&io);
        io.jobs = jobs;
        const char *one[] = {path};
        eng_progress p;
        int rc = eng_ingest_paths(db, one, 1, &io, &p);
        eng_close(db);
        rm_rf(dir);
        if (rc || p.added != 1) {
            fprintf(stderr, "ingest of %s failed: %s\n", path, rc ? perr_msg() : "not added");
            status = 1;
            continue;
        }
        double busy = p.decode_s + p.encode_s;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("| %s | %.1f | %.2f | %.2f | %llu | %.0f | %llu | %.1f | %.2f | %.2f | %.0f %% | %.0f %% | %ld |\n",
               inputs[k].name, p.video_s, p.elapsed_s, p.video_s / p.elapsed_s,
               (unsigned long long)p.frames_decoded, p.decode_s > 0 ? p.frames_decoded / p.decode_s : 0,
               (unsigned long long)p.frames, p.encode_s > 0 ? p.frames / p.encode_s : 0, p.decode_s, p.encode_s,
               busy > 0 ? 100 * p.decode_s / busy : 0, busy > 0 ? 100 * p.encode_s / busy : 0, ru.ru_maxrss / 1024);
        fflush(stdout);
        if (!keep) unlink(path);
    }
    unlink(model);
    return status;
}
