/* bench_video: how fast pe_video delivers frames.
 *
 * Generates (once, into $TMPDIR or /tmp, never committed) a 1-minute 1080p
 * H.264 file and a 10-minute 480p H.264 file from ffmpeg's testsrc2, then
 * prints, per file and mode, the median of 3 runs: wall time, frames
 * decoded per second and seconds of video per second.
 *   uniform8    open + the 8 uniform frames (keyframe seeks)
 *   segments    open + 2 frames per 10 s segment (seeks or decode on)
 *   sequential  open + every frame in order (what sampling without seeking
 *               costs; the frame budget is lifted for it)
 * Frames are delivered at max_side 448 (PE-Core-L input), decoder threads
 * from argv[1] (default 1). A checksum of all delivered pixels is printed
 * so a fast but wrong build shows. `bench_video [threads] [quick]`: quick
 * uses 6 s and 60 s files (a smoke run; numbers not comparable).
 */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_video.h"

#include <libavutil/avutil.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct acc {
    uint64_t sum;
    int frames;
} acc;

static int on_frame(void *user, int index, double t, const uint8_t *rgb, int w, int h,
                    size_t stride) {
    acc *a = user;
    for (int y = 0; y < h; y += 7)
        for (int x = 0; x < w * 3; x += 5) a->sum = a->sum * 31 + rgb[(size_t)y * stride + x];
    a->frames++;
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *make_file(const char *name, const char *size, int seconds) {
    static char path[3][512];
    static int k;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = path[k++ % 3];
    snprintf(p, 512, "%s/percept-bench-%s", dir, name);
    struct stat sb;
    if (stat(p, &sb) == 0 && sb.st_size > 0) return p;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=%s:rate=30 "
             "-t %d -c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p %s.tmp.mp4 && mv %s.tmp.mp4 %s",
             size, seconds, p, p, p);
    fprintf(stderr, "generating %s (%s, %d s)...\n", p, size, seconds);
    if (system(cmd) != 0) return NULL;
    return p;
}

enum { UNIFORM, SEGMENTS, SEQUENTIAL };
static const char *const mode_name[] = {"uniform8", "segments", "sequential"};

static int run(const char *path, int mode, int threads, double *wall, int64_t *decoded,
               double *duration, acc *a) {
    pe_video_limits lim;
    pe_video_limits_default(&lim);
    lim.threads = threads;
    if (mode == SEQUENTIAL) {
        lim.max_frames_decoded = 10000000;
        lim.max_seconds_decoding = 3600;
    }
    double t0 = now();
    pe_video *v = NULL;
    int rc = pe_video_open(path, &lim, &v);
    if (rc) return rc;
    const pe_video_info *in = pe_video_info_get(v);
    double *times = NULL;
    int n = 0;
    if (mode == UNIFORM) {
        n = 8;
        times = malloc(sizeof *times * n);
        pe_video_uniform_times(in, n, times);
    } else if (mode == SEGMENTS) {
        int ns = 0;
        pe_video_segment_times(in, 10, 2, NULL, 0, &ns);
        n = ns * 2;
        times = malloc(sizeof *times * n);
        pe_video_segment_times(in, 10, 2, times, n, &ns);
    } else {
        n = (int)floor(in->duration * in->fps + 0.5);
        times = malloc(sizeof *times * n);
        for (int i = 0; i < n; i++) times[i] = i / in->fps;
    }
    rc = pe_video_sample(v, times, n, 448, on_frame, a);
    *wall = now() - t0;
    *decoded = in->frames_decoded;
    *duration = in->duration;
    free(times);
    pe_video_close(v);
    return rc;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1) threads = 1;
    int quick = argc > 2 && !strcmp(argv[2], "quick");
    const char *files[2] = {quick ? make_file("1080p-6s.mp4", "1920x1080", 6)
                                  : make_file("1080p-60s.mp4", "1920x1080", 60),
                            quick ? make_file("480p-60s.mp4", "854x480", 60)
                                  : make_file("480p-600s.mp4", "854x480", 600)};
    if (!files[0] || !files[1]) {
        fprintf(stderr, "bench_video: ffmpeg could not generate the inputs\n");
        return 1;
    }
    char cpu[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                snprintf(cpu, sizeof cpu, "%.200s", c ? c + 2 : line);
                cpu[strcspn(cpu, "\n")] = 0;
                break;
            }
        fclose(f);
    }
    const char *commit = getenv("PERCEPT_COMMIT");
    printf("# bench_video  commit=%s  cpu=%s  decoder threads=%d  ffmpeg=%s  max_side=448  median of 3\n",
           commit ? commit : "?", cpu, threads, av_version_info());
    printf("%-18s %-11s %9s %9s %9s %12s %12s %18s\n", "file", "mode", "frames", "decoded", "wall_s",
           "decoded/s", "video_s/s", "checksum");
    for (int fi = 0; fi < 2; fi++) {
        for (int m = 0; m < 3; m++) {
            double walls[3];
            int64_t decoded = 0;
            double dur = 0;
            acc a = {0, 0};
            int rc = 0;
            for (int r = 0; r < 3 && !rc; r++) {
                acc ar = {0, 0};
                rc = run(files[fi], m, threads, &walls[r], &decoded, &dur, &ar);
                a = ar;
            }
            const char *base = strrchr(files[fi], '-') ? strstr(files[fi], "bench-") + 6 : files[fi];
            if (rc) {
                printf("%-18s %-11s error: %s\n", base, mode_name[m], perr_msg());
                continue;
            }
            qsort(walls, 3, sizeof *walls, cmp_d);
            double w = walls[1];
            printf("%-18s %-11s %9d %9lld %9.3f %12.1f %12.1f %18llx\n", base, mode_name[m], a.frames,
                   (long long)decoded, w, decoded / w, dur / w, (unsigned long long)a.sum);
        }
    }
    return 0;
}
