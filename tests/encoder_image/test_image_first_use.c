/* First use of libvips from several threads at once.
 *
 * A bulk ingest of a folder of videos touches libvips first from its
 * decoder threads (frame thumbnails), not from an image load. libvips'
 * lazy start is not thread-safe: two threads racing through it crashed
 * `percept ingest` (segfault in CI, "cannot register existing type" under
 * emulation). Each round here is a fresh process (fork, libvips untouched)
 * whose threads are released together at a barrier into
 * pe_image_thumbnail_rgb; every thumbnail must come back as a WebP of the
 * expected size that libvips decodes to the frame's colour. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_image.h"
#include "tests/common/testlib.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vips/vips.h>

enum { THREADS = 8, ROUNDS = 24, W = 320, H = 180 };

static pthread_barrier_t g_start;

typedef struct worker { int index, rc; pe_thumb thumb; char msg[256]; } worker;

static void *worker_main(void *arg) {
    worker *wk = arg;
    uint8_t *rgb = malloc((size_t)W * H * 3);
    if (!rgb) { wk->rc = PERR_NOMEM; return NULL; }
    for (size_t i = 0; i < (size_t)W * H; i++) { /* one flat colour per thread */
        rgb[3 * i] = (uint8_t)(30 * wk->index);
        rgb[3 * i + 1] = 200;
        rgb[3 * i + 2] = (uint8_t)(255 - 30 * wk->index);
    }
    pthread_barrier_wait(&g_start);
    wk->rc = pe_image_thumbnail_rgb(rgb, W, H, (size_t)W * 3, NULL, &wk->thumb);
    if (wk->rc) snprintf(wk->msg, sizeof wk->msg, "%s", perr_msg());
    free(rgb);
    return NULL;
}

/* One fresh process: 0 when every thread got a correct thumbnail. */
static int round_child(void) {
    worker wk[THREADS];
    pthread_t th[THREADS];
    pthread_barrier_init(&g_start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        memset(&wk[i], 0, sizeof wk[i]);
        wk[i].index = i;
        if (pthread_create(&th[i], NULL, worker_main, &wk[i])) return 2;
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        if (wk[i].rc) { fprintf(stderr, "thread %d: %s\n", i, wk[i].msg); bad = 1; continue; }
        if (wk[i].thumb.format != PE_THUMB_WEBP || wk[i].thumb.width != 256 ||
            wk[i].thumb.height != 144) {
            fprintf(stderr, "thread %d: thumbnail %dx%d format %d\n", i, wk[i].thumb.width,
                    wk[i].thumb.height, wk[i].thumb.format);
            bad = 1;
            continue;
        }
        VipsImage *im = vips_image_new_from_buffer(wk[i].thumb.data, wk[i].thumb.len, "", NULL);
        double px[3] = {0};
        double *v = NULL;
        int nv = 0;
        if (!im || vips_getpoint(im, &v, &nv, 128, 72, NULL) || nv < 3) {
            fprintf(stderr, "thread %d: thumbnail does not decode\n", i);
            bad = 1;
        } else {
            double want[3] = {30.0 * i, 200, 255 - 30.0 * i};
            for (int c = 0; c < 3; c++) px[c] = v[c];
            for (int c = 0; c < 3; c++)
                if (px[c] < want[c] - 6 || px[c] > want[c] + 6) {
                    fprintf(stderr, "thread %d: centre %.0f,%.0f,%.0f, wanted %.0f,%.0f,%.0f\n", i,
                            px[0], px[1], px[2], want[0], want[1], want[2]);
                    bad = 1;
                    break;
                }
        }
        g_free(v);
        if (im) g_object_unref(im);
        pe_thumb_clear(&wk[i].thumb);
    }
    return bad;
}

static void test_threads_at_once(void) {
    int ok = 0;
    for (int r = 0; r < ROUNDS; r++) {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) _exit(round_child());
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) { ok++; continue; }
        if (WIFSIGNALED(st)) t_fail(__FILE__, __LINE__, "round %d: killed by signal %d", r, WTERMSIG(st));
        else t_fail(__FILE__, __LINE__, "round %d: exit %d", r, WEXITSTATUS(st));
    }
    printf("%d of %d fresh processes: %d threads' first libvips use at once, all thumbnails right\n",
           ok, ROUNDS, THREADS);
    CHECK_EQ_INT(ok, ROUNDS);
}

int main(void) {
    T_RUN(test_threads_at_once);
    return t_done();
}
