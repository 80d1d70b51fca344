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
#include "bench/common/bench_ckpt.h"
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


/* The random-weight checkpoint writer lives in bench/common/bench_ckpt.c. */

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
    if (bench_write_model(oc, model)) { fprintf(stderr, "%s\n", perr_msg()); return 1; }

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
