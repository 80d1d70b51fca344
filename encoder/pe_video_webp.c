/* pe_video_webp: animated WebP behind the pe_video API, decoded by libvips.
 *
 * DESIGN
 * FFmpeg 5.1's webp decoder refuses animations ("image data not found":
 * it skips ANIM/ANMF chunks), libvips 8.14 decodes them (libwebp's
 * WebPAnimDecoder, composited frames stacked as pages). We open all pages
 * with sequential access and crop the pages we need in increasing order, so
 * a sample run decodes each frame at most once; a request for an earlier
 * page reopens. Frame times come from the per-frame "delay" metadata, with
 * the same rule as FFmpeg inputs: the last frame counts for one typical
 * frame, however long it claims to last.
 *
 * Must never: decode pixels before the canvas size is checked against
 * max_pixels_per_frame (libvips reads only the header on open), or let
 * libvips print (its error buffer is copied into our message).
 */
#include "encoder/pe_video_int.h"
#include "encoder/pe_image.h"

#include "common/perr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#define WEBP_MIN_DELAY_MS 10   /* <= this is shown as 100 ms, as browsers do */
#define WEBP_MAX_PAGES 1000000

struct pe_video_webp {
    VipsImage *img;        /* all pages, sequential access */
    int n;                 /* frames */
    int w, page_h;
    double *start;         /* frame start times, seconds */
    int next_page;         /* first page not yet read by img's pipeline */
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int pe_video_is_webp(const uint8_t *head, size_t n) {
    return n >= 12 && !memcmp(head, "RIFF", 4) && !memcmp(head + 8, "WEBP", 4);
}

static int vips_fail(const pe_video *v, int code, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", vips_error_buffer());
    vips_error_clear();
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) msg[--len] = 0;
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    if (msg[0]) return perr_set(code, "%s: %s (libvips: %s)", v->label, what, msg);
    return perr_set(code, "%s: %s", v->label, what);
}

static int load_pages(pe_video *v) {
    pe_video_webp *w = v->webp;
    VipsSource *src = v->mem ? vips_source_new_from_memory(v->mem, (size_t)v->size)
                             : vips_source_new_from_descriptor(v->fd);
    if (!src) return vips_fail(v, PERR_IO, "cannot read the input");
    if (!v->mem && vips_source_rewind(src)) {
        VIPS_UNREF(src);
        return vips_fail(v, PERR_IO, "cannot rewind the input");
    }
    if (w->img) VIPS_UNREF(w->img);
    w->img = vips_image_new_from_source(src, "", "n", -1, "access", VIPS_ACCESS_SEQUENTIAL,
                                        "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    VIPS_UNREF(src);
    if (!w->img) return vips_fail(v, PERR_FORMAT, "cannot read the animated WebP");
    w->next_page = 0;
    return PERR_OK;
}

int pe_video_webp_open(pe_video *v) {
    uint8_t head[32];
    size_t hn = 0;
    if (v->mem) {
        hn = v->size < (int64_t)sizeof head ? (size_t)v->size : sizeof head;
        memcpy(head, v->mem, hn);
    } else {
        ssize_t r = pread(v->fd, head, sizeof head, 0);
        hn = r > 0 ? (size_t)r : 0;
    }
    /* Extended format (VP8X) with the animation flag; anything else is a
     * still picture. */
    if (hn < 21 || memcmp(head + 12, "VP8X", 4) || !(head[20] & 0x02))
        return pe_video_fail(v, PERR_UNSUPPORTED, "is a still image (webp), not a video");

    /* The one start of libvips (untrusted loaders blocked, no cache). */
    int rc = pe_image_init();
    if (rc) return perr_prefix(rc, "%s", v->label);
    v->webp = calloc(1, sizeof *v->webp);
    if (!v->webp) return perr_set(PERR_NOMEM, "%s: webp state", v->label);
    pe_video_webp *w = v->webp;
    if ((rc = load_pages(v))) return rc;

    w->w = w->img->Xsize;
    w->page_h = vips_image_get_page_height(w->img);
    w->n = vips_image_get_n_pages(w->img);
    if (w->page_h <= 0 || w->n <= 0 || (int64_t)w->page_h * w->n != w->img->Ysize)
        return pe_video_fail(v, PERR_FORMAT, "inconsistent animation: %d pages of height %d",
                             w->n, w->page_h);
    if ((int64_t)w->w * w->page_h > v->lim.max_pixels_per_frame)
        return pe_video_fail(v, PERR_TOO_LARGE, "frame size %dx%d exceeds max_pixels_per_frame %lld",
                             w->w, w->page_h, (long long)v->lim.max_pixels_per_frame);
    if (w->n > WEBP_MAX_PAGES)
        return pe_video_fail(v, PERR_TOO_LARGE, "%d frames", w->n);

    int *delay = NULL, nd = 0;
    if (vips_image_get_typeof(w->img, "delay"))
        vips_image_get_array_int(w->img, "delay", &delay, &nd);
    w->start = malloc(sizeof *w->start * (size_t)w->n);
    double *gaps = calloc((size_t)w->n, sizeof *gaps);
    if (!w->start || !gaps) {
        free(gaps);
        return perr_set(PERR_NOMEM, "%s: %d frame times", v->label, w->n);
    }
    double total = 0;
    for (int i = 0; i < w->n; i++) {
        int ms = i < nd && delay ? delay[i] : 100;
        if (ms <= WEBP_MIN_DELAY_MS) ms = 100;
        w->start[i] = total;
        gaps[i] = ms / 1000.0;
        total += gaps[i];
    }
    /* Typical frame: the median of all but the last frame's delays. */
    int ng = w->n > 1 ? w->n - 1 : 1;
    qsort(gaps, (size_t)ng, sizeof *gaps, cmp_double);
    double typical = gaps[ng / 2];
    if (w->n == 1 && typical > 10) typical = 10;
    free(gaps);

    v->info.container_duration = total;
    v->info.duration = w->start[w->n - 1] + typical;
    v->info.fps = 1.0 / typical;
    v->info.width = w->w;
    v->info.height = w->page_h;
    v->info.rotation = 0;
    snprintf(v->info.codec, sizeof v->info.codec, "webp");
    snprintf(v->info.container, sizeof v->info.container, "webp");
    v->last_t = w->start[w->n - 1];
    if (v->info.duration > v->lim.max_duration)
        return pe_video_fail(v, PERR_TOO_LARGE, "duration %.0f s exceeds max_duration %.0f s",
                             v->info.duration, v->lim.max_duration);
    return PERR_OK;
}

int pe_video_webp_sample(pe_video *v, double t, int index, int max_side, pe_frame_fn fn,
                         void *user) {
    pe_video_webp *w = v->webp;
    /* The page shown at t: the last one starting at or before it. */
    int lo = 0, hi = w->n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (w->start[mid] <= t + 1e-4) lo = mid;
        else hi = mid - 1;
    }
    int k = lo;
    int rc;
    if (k < w->next_page - 1 && (rc = load_pages(v))) return rc; /* sequential: restart */
    int more = k + 1 - w->next_page;
    if (more > 0) {
        if (v->info.frames_decoded + more > v->lim.max_frames_decoded)
            return pe_video_fail(v, PERR_TOO_LARGE, "decoded more than max_frames_decoded (%d) frames",
                                 v->lim.max_frames_decoded);
        v->info.frames_decoded += more;
        w->next_page = k + 1;
    }
    int ow, oh;
    pe_video_display_size(w->w, w->page_h, (AVRational){1, 1}, 0, max_side, &ow, &oh);

    VipsImage *page = NULL, *rgb = NULL, *sized = NULL;
    rc = PERR_OK;
    if (vips_crop(w->img, &page, 0, k * w->page_h, w->w, w->page_h, NULL)) {
        rc = vips_fail(v, PERR_DECODE, "cannot crop the frame");
        goto out;
    }
    if (page->Bands == 4 || page->Bands == 2) {
        if (vips_extract_band(page, &rgb, 0, "n", page->Bands - 1, NULL)) {
            rc = vips_fail(v, PERR_DECODE, "cannot drop alpha");
            goto out;
        }
    } else {
        rgb = page;
        g_object_ref(rgb);
    }
    if (rgb->Bands == 1) {
        VipsImage *c = NULL;
        if (vips_colourspace(rgb, &c, VIPS_INTERPRETATION_sRGB, NULL)) {
            rc = vips_fail(v, PERR_DECODE, "cannot convert to RGB");
            goto out;
        }
        VIPS_UNREF(rgb);
        rgb = c;
    }
    if (ow != w->w || oh != w->page_h) {
        if (vips_resize(rgb, &sized, (double)ow / w->w, "vscale", (double)oh / w->page_h, NULL)) {
            rc = vips_fail(v, PERR_DECODE, "cannot scale the frame");
            goto out;
        }
    } else {
        sized = rgb;
        g_object_ref(sized);
    }
    if (sized->Bands != 3 || sized->BandFmt != VIPS_FORMAT_UCHAR) {
        rc = pe_video_fail(v, PERR_UNSUPPORTED, "frame has %d bands of format %d", sized->Bands,
                           sized->BandFmt);
        goto out;
    }
    size_t sz = 0;
    uint8_t *px = vips_image_write_to_memory(sized, &sz);
    if (!px) {
        rc = vips_fail(v, PERR_DECODE, "cannot decode the frame");
        goto out;
    }
    rc = fn(user, index, w->start[k], px, sized->Xsize, sized->Ysize, (size_t)sized->Xsize * 3);
    g_free(px);
out:
    VIPS_UNREF(sized);
    VIPS_UNREF(rgb);
    VIPS_UNREF(page);
    return rc;
}

void pe_video_webp_free(pe_video *v) {
    if (!v->webp) return;
    VIPS_UNREF(v->webp->img);
    free(v->webp->start);
    free(v->webp);
    v->webp = NULL;
}
