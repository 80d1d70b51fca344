/* percept embed: PE_core embeddings of images, texts and raw pixel tensors,
 * one JSON object per input, in the order given:
 *   {"dim": D, "vector": [...]}
 * Outside checks compare this output with the official model: keep it
 * exactly that. Every input is read, decoded or tokenized before anything
 * is printed, so a bad input fails the command without partial output;
 * the error names the input.
 */
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_image.h"
#include "encoder/pe_tokenizer.h"
#include "encoder/pe_video.h"
#include "net/client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EMBED_BATCH 8

enum { IN_IMAGE, IN_TEXT, IN_PIXELS, IN_VIDEO };

typedef struct input {
    int kind;
    const char *arg;
} input;

static void usage(FILE *f) {
    fprintf(f,
        "usage: percept embed [--model FILE] [--config FILE] [--vocab FILE]\n"
        "                     (--image PATH | --text STRING | --pixels PATH | --video PATH)...\n"
        "                     [--frames N] [--no-normalize] [--threads N] [--precision fp32|bf16]\n"
        "       percept embed --server HOST:PORT [--token-file F] (--image PATH | --text STRING)...\n"
        "\n"
        "Prints one JSON object per input, in order: {\"dim\": D, \"vector\": [...]}.\n"
        "\n"
        "  --image PATH    a photo (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF); decoded at\n"
        "                  full size (the reference; ingest and search decode large\n"
        "                  photos at a reduced scale), EXIF-oriented, squash-resized\n"
        "                  to the model's size\n"
        "  --text STRING   a text (CLIP BPE, the model's context length)\n"
        "  --pixels PATH   a preprocessed image: raw little-endian float32 [3,S,S],\n"
        "                  S = the model's image size, values as the official\n"
        "                  preprocessing gives them ((v/255 - 0.5) / 0.5)\n"
        "  --video PATH    a video or animated GIF/WebP: the video vector (pe-core.md):\n"
        "                  --frames N frames (default 8) uniformly over the duration,\n"
        "                  each preprocessed like an image, embedded, L2-normalized,\n"
        "                  averaged, L2-normalized (always normalized)\n"
        "  --model FILE    .pt or .safetensors (default: $PERCEPT_MODEL, then the\n"
        "                  installed default model)\n"
        "  --config FILE   configuration JSON for a checkpoint that is not one of\n"
        "                  the official PE-Core models\n"
        "  --vocab FILE    bpe_simple_vocab_16e6.txt.gz (needed with --text)\n"
        "  --no-normalize  print the raw embedding (default: L2-normalized)\n"
        "  --threads N     threads for the forward passes (default: all cores)\n"
        "  --precision P   fp32 (default, exact) or bf16 (CPUs with AVX512_BF16/AMX;\n"
        "                  cosine to fp32 >= 0.9999, docs/encoder.md)\n"
        "  --server HOST:PORT  embed with a running `percept serve` (its model and\n"
        "                  its preprocessing, as for stored photos; images uploaded)\n"
        "  --token-file F  the server's token (else $PERCEPT_TOKEN)\n");
}

/* Reads a raw float32 [3,S,S] file; its size must be exact. */
static int read_pixels(const char *path, int S, const char *model_name, float *out) {
    size_t want = (size_t)3 * S * S * sizeof(float);
    FILE *f = fopen(path, "rb");
    if (!f) return perr_errno(errno, "%s", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int rc = perr_errno(errno, "%s", path);
        fclose(f);
        return rc;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size != want) {
        fclose(f);
        return perr_set(PERR_INVALID,
                        "%s: %lld bytes, expected %zu (raw little-endian float32 [3,%d,%d] for %s)", path,
                        (long long)st.st_size, want, S, S, model_name);
    }
    size_t got = fread(out, 1, want, f);
    int err = ferror(f);
    fclose(f);
    if (got != want || err) return perr_set(PERR_IO, "%s: short read (%zu of %zu bytes)", path, got, want);
    return PERR_OK;
}

static const char *kind_flag(int kind) {
    return kind == IN_IMAGE ? "--image" : kind == IN_TEXT ? "--text" : kind == IN_VIDEO ? "--video" : "--pixels";
}

/* Video frames: preprocessed into consecutive [3,S,S] tensors. */
typedef struct vframes { float *px; int S; } vframes;

static int on_vframe(void *user, int index, double t, const uint8_t *rgb, int w, int h, size_t stride) {
    (void)t;
    vframes *v = user;
    return pe_image_preprocess_rgb(rgb, w, h, stride, v->S, v->px + (size_t)index * 3 * v->S * v->S);
}

static int read_video(const char *path, int S, int frames, float *out) {
    pe_video_limits lim;
    pe_video_limits_default(&lim);
    pe_video *v = NULL;
    int rc = pe_video_open(path, &lim, &v);
    if (rc) return rc;
    double *times = malloc(sizeof(double) * (size_t)frames);
    if (!times) rc = perr_set(PERR_NOMEM, "%s: times", path);
    if (rc == PERR_OK) rc = pe_video_uniform_times(pe_video_info_get(v), frames, times);
    vframes vf = {out, S};
    if (rc == PERR_OK) rc = pe_video_sample(v, times, frames, 0, on_vframe, &vf);
    free(times);
    pe_video_close(v);
    return rc;
}

/* --server: the server's EMBED (normalized vectors of its model). Every
 * image is read before the first request, as in-process. */
static int embed_remote(const input *in, int n_in, const char *server, const char *token_file) {
    void **data = calloc((size_t)n_in, sizeof *data);
    size_t *len = calloc((size_t)n_in, sizeof *len);
    float *vec = NULL;
    pc_client *pc = NULL;
    int rc = data && len ? PERR_OK : perr_set(PERR_NOMEM, "%d inputs", n_in);
    for (int i = 0; rc == PERR_OK && i < n_in; i++) {
        if (in[i].kind != IN_IMAGE && in[i].kind != IN_TEXT)
            rc = perr_set(PERR_INVALID, "input %d (%s): only --image and --text go over --server", i + 1, kind_flag(in[i].kind));
        else if (in[i].kind == IN_IMAGE &&
                 (rc = pc_read_file(in[i].arg, NET_MAX_FRAME_DEFAULT - 4096, &data[i], &len[i])))
            perr_prefix(rc, "input %d (--image)", i + 1);
    }
    if (rc == PERR_OK) rc = pc_connect_cli(server, token_file, &pc);
    int D = pc ? pc_dim(pc) : 0;
    if (rc == PERR_OK && !(vec = malloc((size_t)n_in * D * sizeof(float)))) rc = perr_set(PERR_NOMEM, "vectors");
    for (int i = 0; rc == PERR_OK && i < n_in; i++) {
        rc = in[i].kind == IN_TEXT ? pc_embed_text(pc, in[i].arg, vec + (size_t)i * D)
                                   : pc_embed_image(pc, data[i], len[i], vec + (size_t)i * D);
        if (rc && in[i].kind == IN_IMAGE) db_remote_media_error(rc, in[i].arg);
        if (rc) perr_prefix(rc, "input %d (%s)", i + 1, kind_flag(in[i].kind));
    }
    for (int i = 0; rc == PERR_OK && i < n_in; i++) {
        printf("{\"dim\": %d, \"vector\": ", D);
        cli_print_floats(stdout, vec + (size_t)i * D, D);
        fputs("}\n", stdout);
    }
    if (rc == PERR_OK && fflush(stdout) != 0) rc = perr_errno(errno, "writing the output");
    pc_close(pc);
    for (int i = 0; data && i < n_in; i++) free(data[i]);
    free(data);
    free(len);
    free(vec);
    return rc ? cli_fail("embed", rc) : CLI_OK;
}

static int cmd_embed(int argc, char **argv) {
    const char *model_flag = NULL, *vocab_flag = NULL, *config_flag = NULL, *server = NULL, *token_file = NULL,
               *precision = NULL;
    int normalize = 1, frames = 8;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 8) threads = 8;
    input *in = calloc(argc > 0 ? argc : 1, sizeof *in);
    int n_in = 0, n_text = 0, n_video = 0;
    if (!in) return cli_fail("embed", perr_set(PERR_NOMEM, "arguments"));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(in); return CLI_OK; }
        if (!strcmp(a, "--no-normalize")) { normalize = 0; continue; }
        int takes = !strcmp(a, "--model") || !strcmp(a, "--vocab") || !strcmp(a, "--config") ||
                    !strcmp(a, "--image") || !strcmp(a, "--text") || !strcmp(a, "--pixels") ||
                    !strcmp(a, "--threads") || !strcmp(a, "--video") || !strcmp(a, "--frames") ||
                    !strcmp(a, "--server") || !strcmp(a, "--token-file") || !strcmp(a, "--precision");
        if (!takes) {
            fprintf(stderr, "percept embed: unknown argument '%s'\n", a);
            usage(stderr);
            free(in);
            return CLI_ERROR;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "percept embed: %s needs a value\n", a);
            free(in);
            return CLI_ERROR;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_flag = v;
        else if (!strcmp(a, "--server")) server = v;
        else if (!strcmp(a, "--token-file")) token_file = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--vocab")) vocab_flag = v;
        else if (!strcmp(a, "--config")) config_flag = v;
        else if (!strcmp(a, "--frames")) {
            char *end = NULL;
            long f = strtol(v, &end, 10);
            if (!*v || *end || f < 1 || f > 256) {
                fprintf(stderr, "percept embed: --frames must be an integer in 1..256, got '%s'\n", v);
                free(in);
                return CLI_ERROR;
            }
            frames = (int)f;
        } else if (!strcmp(a, "--threads")) {
            char *end = NULL;
            threads = strtol(v, &end, 10);
            if (!*v || *end || threads < 1 || threads > 64) {
                fprintf(stderr, "percept embed: --threads must be an integer in 1..64, got '%s'\n", v);
                free(in);
                return CLI_ERROR;
            }
        } else {
            in[n_in].kind = !strcmp(a, "--image") ? IN_IMAGE : !strcmp(a, "--text") ? IN_TEXT
                          : !strcmp(a, "--video") ? IN_VIDEO : IN_PIXELS;
            in[n_in].arg = v;
            n_text += in[n_in].kind == IN_TEXT;
            n_video += in[n_in].kind == IN_VIDEO;
            n_in++;
        }
    }
    if (n_in == 0) {
        fprintf(stderr, "percept embed: no input (--image, --text, --pixels or --video)\n");
        usage(stderr);
        free(in);
        return CLI_ERROR;
    }

    if (server) {
        int rc = PERR_OK;
        if (model_flag || vocab_flag || config_flag || precision || !normalize)
            rc = perr_set(PERR_INVALID, "--model, --vocab, --config, --precision and --no-normalize do not go with --server "
                                        "(the server's model embeds, normalized)");
        int st = rc ? cli_fail("embed", rc) : embed_remote(in, n_in, server, token_file);
        free(in);
        return st;
    }

    char *model_path = NULL, *vocab = NULL;
    pe_model *m = NULL;
    pe_tokenizer *tok = NULL;
    pe_ctx *ctx = NULL;
    float *pix = NULL, *vec = NULL, *bout = NULL, *vpix = NULL, *vemb = NULL;
    int32_t *ids = NULL;
    int status = CLI_OK, rc;
    if ((rc = cli_find_model(model_flag, &model_path))) { status = cli_fail("embed", rc); goto done; }
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    lo.config_path = config_flag;
    if (precision && (rc = pe_precision_parse(precision, &lo.precision))) { status = cli_fail("embed", rc); goto done; }
    if ((rc = pe_model_load(model_path, &lo, &m))) { status = cli_fail("embed", rc); goto done; }
    const pe_config *cfg = pe_model_config(m);
    int S = cfg->image_size, D = cfg->output_dim, L = cfg->context_length;
    if (n_text) {
        if ((rc = cli_find_vocab(vocab_flag, model_path, &vocab)) || (rc = pe_tokenizer_load(vocab, &tok))) {
            status = cli_fail("embed", rc);
            goto done;
        }
    }

    /* embed is what outside checks compare with the official model: the
     * exact reference decode, never shrink-on-load (ingest and queries use
     * it for large photos, docs/media.md). */
    pe_image_opts exact;
    pe_image_opts_default(&exact, S);
    exact.shrink_on_load = 0;
    /* Everything is read first: a bad input fails before any output. */
    size_t per = (size_t)3 * S * S;
    int n_img = n_in - n_text - n_video;
    vpix = malloc((n_video ? (size_t)n_video * frames : 1) * per * sizeof(float));
    pix = malloc((n_img ? n_img : 1) * per * sizeof(float));
    ids = malloc((n_text ? n_text : 1) * (size_t)L * sizeof(int32_t));
    vec = malloc((size_t)n_in * D * sizeof(float));
    if (!pix || !ids || !vec || !vpix) { status = cli_fail("embed", perr_set(PERR_NOMEM, "%d inputs", n_in)); goto done; }
    for (int i = 0, ii = 0, it = 0, iv = 0; i < n_in; i++) {
        const input *x = &in[i];
        if (x->kind == IN_VIDEO) rc = read_video(x->arg, S, frames, vpix + (size_t)iv++ * frames * per);
        else if (x->kind == IN_TEXT) rc = pe_tokenize(tok, x->arg, strlen(x->arg), L, ids + (size_t)it++ * L, NULL);
        else if (x->kind == IN_IMAGE) rc = pe_image_preprocess_ex(x->arg, NULL, 0, x->arg, &exact, pix + ii++ * per, NULL);
        else rc = read_pixels(x->arg, S, cfg->name, pix + ii++ * per);
        if (rc) {
            status = cli_fail("embed", perr_prefix(rc, "input %d (%s)", i + 1, kind_flag(x->kind)));
            goto done;
        }
    }

    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = EMBED_BATCH;
    co.n_threads = (int)threads;
    if ((rc = pe_ctx_new(m, &co, &ctx))) { status = cli_fail("embed", rc); goto done; }
    /* Images and texts go in batches of their own kind; results land in
     * input order. */
    int order_img[EMBED_BATCH], order_txt[EMBED_BATCH];
    int nb_img = 0, nb_txt = 0, ii = 0, it = 0;
    bout = malloc((size_t)EMBED_BATCH * D * sizeof(float));
    if (!bout) { status = cli_fail("embed", perr_set(PERR_NOMEM, "output batch")); goto done; }
    for (int i = 0; i <= n_in; i++) {
        int last = i == n_in;
        if (!last && in[i].kind == IN_VIDEO) continue; /* below */
        if (!last) {
            if (in[i].kind == IN_TEXT) order_txt[nb_txt++] = i;
            else order_img[nb_img++] = i;
        }
        if (nb_img && (nb_img == EMBED_BATCH || last)) {
            if ((rc = pe_encode_pixels(ctx, pix + (size_t)ii * per, nb_img, bout))) {
                status = cli_fail("embed", rc);
                goto done;
            }
            for (int b = 0; b < nb_img; b++) memcpy(vec + (size_t)order_img[b] * D, bout + (size_t)b * D, D * sizeof(float));
            ii += nb_img;
            nb_img = 0;
        }
        if (nb_txt && (nb_txt == EMBED_BATCH || last)) {
            if ((rc = pe_encode_ids(ctx, ids + (size_t)it * L, nb_txt, bout))) {
                status = cli_fail("embed", rc);
                goto done;
            }
            for (int b = 0; b < nb_txt; b++) memcpy(vec + (size_t)order_txt[b] * D, bout + (size_t)b * D, D * sizeof(float));
            it += nb_txt;
            nb_txt = 0;
        }
    }
    /* Videos: frames in batches, then the video vector. */
    vemb = malloc((size_t)frames * D * sizeof(float));
    if (!vemb) { status = cli_fail("embed", perr_set(PERR_NOMEM, "video frames")); goto done; }
    for (int i = 0, iv = 0; i < n_in; i++) {
        if (in[i].kind != IN_VIDEO) continue;
        const float *fp = vpix + (size_t)iv++ * frames * per;
        for (int f = 0; f < frames; f += EMBED_BATCH) {
            int nb = frames - f < EMBED_BATCH ? frames - f : EMBED_BATCH;
            if ((rc = pe_encode_pixels(ctx, fp + (size_t)f * per, nb, vemb + (size_t)f * D))) {
                status = cli_fail("embed", perr_prefix(rc, "input %d (--video)", i + 1));
                goto done;
            }
        }
        pe_video_vector(vemb, frames, D, vec + (size_t)i * D);
    }
    for (int i = 0; i < n_in; i++) {
        float *v = vec + (size_t)i * D;
        if (normalize && in[i].kind != IN_VIDEO) pe_l2_normalize(v, D);
        printf("{\"dim\": %d, \"vector\": ", D);
        cli_print_floats(stdout, v, D);
        fputs("}\n", stdout);
    }
    if (fflush(stdout) != 0) status = cli_fail("embed", perr_errno(errno, "writing the output"));
done:
    pe_ctx_free(ctx);
    pe_tokenizer_free(tok);
    pe_model_free(m);
    free(model_path);
    free(vocab);
    free(pix);
    free(ids);
    free(vec);
    free(bout);
    free(vpix);
    free(vemb);
    free(in);
    return status;
}

CLI_COMMAND(embed, "embed", "print PE_core embeddings of images, texts, videos or pixel tensors (JSON lines)", cmd_embed)
