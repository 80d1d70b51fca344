/* bench_ingest: end-to-end ingest throughput (images/s) of a directory of
 * real photos, beside the encoder-only figure of the same run (time spent
 * inside pe_encode_pixels) and a pure encoder pass over the same images
 * preprocessed beforehand. Target: end-to-end >= 90 % of encoder-only.
 *
 * usage: bench_ingest --model M [--vocab V] [--jobs N] [--batch B] [--limit N]
 *                     [--enc-threads N] DIR|FILE...
 * (--enc-threads N sizes the ingest encoder, eng_ingest_opts.encoder_threads:
 * default every core, as percept runs it; the separate pass uses every core.) Times on a shared machine are noise:
 * repeat and take medians.
 */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_image.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int name_cmp(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void collect(const char *p, char **out, int *n, int max) {
    struct dirent **e = NULL;
    int k = scandir(p, &e, NULL, name_cmp);
    if (k < 0) {
        if (*n < max) out[(*n)++] = strdup(p);
        return;
    }
    for (int i = 0; i < k; i++) {
        if (strcmp(e[i]->d_name, ".") && strcmp(e[i]->d_name, "..") && *n < max) {
            char c[4096];
            snprintf(c, sizeof c, "%s/%s", p, e[i]->d_name);
            collect(c, out, n, max);
        }
        free(e[i]);
    }
    free(e);
}

typedef struct ok_list { char **v; int n, cap; } ok_list;

static void on_result(void *u, const eng_file_result *r) {
    ok_list *l = u;
    if (r->outcome != ENG_ADDED) return;
    if (l->n == l->cap) { l->cap = l->cap ? 2 * l->cap : 256; l->v = realloc(l->v, sizeof *l->v * (size_t)l->cap); }
    l->v[l->n++] = strdup(r->path);
}

int main(int argc, char **argv) {
    const char *model = NULL, *vocab = NULL;
    int jobs = 0, batch = 8, limit = 0, enc_threads = 0;
    const char *paths[64];
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) jobs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--enc-threads") && i + 1 < argc) enc_threads = atoi(argv[++i]);
        else if (np < 64) paths[np++] = argv[i];
    }
    if (!model || !np) {
        fprintf(stderr, "usage: bench_ingest --model M [--vocab V] [--jobs N] [--batch B] [--limit N] "
                        "[--enc-threads N (default 1)] DIR|FILE...\n");
        return 2;
    }
    /* --limit N: the first N files of the walk (name order), as paths */
    char **files = NULL;
    int nf = 0;
    if (limit > 0) {
        files = calloc((size_t)limit, sizeof *files);
        for (int i = 0; i < np && nf < limit; i++) collect(paths[i], files, &nf, limit);
    }
    char tmpl[] = "/tmp/percept-bench-ingest-XXXXXX";
    char *dir = mkdtemp(tmpl);
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model;
    o.vocab_path = vocab;
    o.create = 1;
    eng_db *db = NULL;
    if (eng_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", perr_msg()); return 1; }
    eng_ingest_opts io;
    eng_ingest_opts_default(&io);
    if (jobs > 0) io.jobs = jobs;
    if (enc_threads > 0) io.encoder_threads = enc_threads;
    io.batch = batch;
    ok_list ok = {0};
    io.on_result = on_result;
    io.user = &ok;
    eng_progress p;
    double t0 = now();
    if (files ? eng_ingest_paths(db, (const char *const *)files, nf, &io, &p)
              : eng_ingest_paths(db, paths, np, &io, &p)) { fprintf(stderr, "ingest: %s\n", perr_msg()); return 1; }
    double e2e = now() - t0;
    eng_close(db);

    /* pure encoder pass over the same images (preprocessed beforehand) */
    pe_model *m = NULL;
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    if (pe_model_load(model, &lo, &m)) { fprintf(stderr, "model: %s\n", perr_msg()); return 1; }
    const pe_config *c = pe_model_config(m);
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = batch;
    co.n_threads = (int)(nc > 0 ? nc : 1);
    pe_ctx *ctx = NULL;
    if (pe_ctx_new(m, &co, &ctx)) { fprintf(stderr, "ctx: %s\n", perr_msg()); return 1; }
    size_t npx = (size_t)3 * c->image_size * c->image_size;
    int n = ok.n;
    float *px = malloc(sizeof(float) * npx * (size_t)(n ? n : 1));
    float *out = malloc(sizeof(float) * (size_t)c->output_dim * batch);
    int good = 0;
    for (int i = 0; i < n; i++)
        if (pe_image_preprocess_file(ok.v[i], c->image_size, NULL, px + npx * good, NULL) == PERR_OK) good++;
    double t1 = now();
    for (int i = 0; i < good; i += batch) {
        int b = good - i < batch ? good - i : batch;
        pe_encode_pixels(ctx, px + npx * i, b, out);
    }
    double enc = now() - t1;
    printf("bench_ingest: model %s (%s, %d px, dim %d), %llu files, jobs %d, batch %d, %ld cores, "
           "ingest encoder threads %d\n",
           model, c->name, c->image_size, c->output_dim, (unsigned long long)p.done, io.jobs, batch, nc,
           enc_threads > 0 ? enc_threads : (int)nc);
    printf("| measure                         | images/s | seconds |\n");
    printf("|---------------------------------|----------|---------|\n");
    printf("| end to end (decode+encode+commit)| %8.1f | %7.2f |\n", p.added / e2e, e2e);
    printf("| encoder-only, same run          | %8.1f | %7.2f |\n", p.encode_s > 0 ? p.added / p.encode_s : 0, p.encode_s);
    printf("| encoder-only, separate pass     | %8.1f | %7.2f |\n", good / enc, enc);
    printf("| end to end / encoder-only       | %7.1f%% |         |\n", enc > 0 ? 100.0 * (p.added / e2e) / (good / enc) : 0);
    printf("added %llu, present %llu, failed %llu\n", (unsigned long long)p.added, (unsigned long long)p.present,
           (unsigned long long)p.failed);
    pe_ctx_free(ctx);
    pe_model_free(m);
    for (int i = 0; i < ok.n; i++) free(ok.v[i]);
    for (int i = 0; i < nf; i++) free(files[i]);
    free(files);
    free(ok.v); free(px); free(out);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
