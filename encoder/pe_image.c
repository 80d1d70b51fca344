/* pe_image: still-image decoding and PE preprocessing (see pe_image.h,
 * docs/media.md).
 *
 * DESIGN
 * - Owns: the libvips set-up (once), the choice of loader (by content, from
 *   pe_media_sniff_format; never libvips' own sniffing, which sends an MP4 to
 *   ImageMagick), the header checks, the colour step, and the resize.
 * - Must never: read a pixel before width x height x bands and the page
 *   count passed the limits (a 22-byte GIF claiming 65535x65535 makes GLib
 *   abort the process when its pixels are read); hold a whole decoded image
 *   on the preprocessing path; call libvips with random access (sequential
 *   only, so truncated files fail with fail_on=truncated instead of decoding
 *   grey); let a libvips operation be cached (files change, memory grows).
 * - The resize is a port of Pillow's ImagingResample (Resample.c) for 8-bit
 *   images with the bilinear filter: separable, antialiased (support scales
 *   with the shrink factor), horizontal pass first, 8-bit intermediate,
 *   22-bit fixed-point weights. The reference (PE's get_image_transform =
 *   PIL resize) is reproduced bit for bit on its fixtures, which libvips'
 *   vips_resize is not (different kernel placement and rounding). It runs
 *   streamed: decoded rows arrive top to bottom and are folded into integer
 *   accumulators of the output rows; integer sums do not depend on order,
 *   so the result equals Pillow's two-pass result exactly.
 * - EXIF orientation is applied after resizing: squash-resizing the upright
 *   image equals resizing the stored image (passes swapped for transposing
 *   orientations, so Pillow's horizontal-first rounding happens along the
 *   upright image's rows) and then flipping/transposing the small result.
 */
#define _GNU_SOURCE
#include "encoder/pe_image.h"
#include "encoder/pe_cpu.h"

#include "common/perr.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <lcms2.h>
#include <unistd.h>
#include <vips/vips.h>

/* ---- set-up -------------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_rc = PERR_OK;
static char g_init_msg[256];

static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {
    /* libvips warnings (e.g. "premature end of JPEG file") become errors
     * through fail_on where they matter; printing them per file would flood
     * a bulk ingest's stderr. */
    (void)domain, (void)level, (void)msg, (void)data;
}

static void init_once(void) {
    if (VIPS_INIT("percept")) {
        char *m = vips_error_buffer_copy();
        snprintf(g_init_msg, sizeof g_init_msg, "libvips initialisation failed: %s", m ? m : "");
        g_free(m);
        g_init_rc = PERR_INTERNAL;
        return;
    }
    /* No operation cache: a bulk ingest opens each file once, the cache
     * would only keep decoders and file descriptors alive. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    /* Loaders marked untrusted (ImageMagick, librsvg, poppler, FITS, ...)
     * are never reachable, whatever a file claims to be. */
    vips_block_untrusted_set(TRUE);
    /* percept decodes files in parallel itself; libvips' own pools would
     * oversubscribe the cores. $VIPS_CONCURRENCY (read by vips_init) wins. */
    if (!getenv("VIPS_CONCURRENCY")) vips_concurrency_set(1);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      quiet_log, NULL);
}

int pe_image_init(void) {
    pthread_once(&g_once, init_once);
    if (g_init_rc) return perr_set(g_init_rc, "%s", g_init_msg);
    return PERR_OK;
}

void pe_image_set_vips_threads(int n) {
    if (pe_image_init()) return;
    vips_concurrency_set(n < 1 ? 1 : n);
}

void pe_image_limits_default(pe_image_limits *l) {
    l->max_pixels = 100000000;
    l->max_side = 32768;
    l->max_file_bytes = (size_t)256 << 20;
    l->max_pages = 10000;
}

void pe_image_opts_default(pe_image_opts *o, int size) {
    memset(o, 0, sizeof *o);
    pe_image_limits_default(&o->limits);
    o->out_w = o->out_h = size;
    o->autorotate = 1;
    /* Off by default: PE was trained on, and its reference decodes, pixel
     * values as stored (Pillow ignores ICC profiles); converting an Adobe
     * RGB photo moves it away from what the model expects (cosine 0.996 vs
     * 1.0000 to the reference on tiny-a's rocket.jpg). CMYK still converts. */
    o->icc = 0;
    /* Measured on 58 wallpapers (bench/image/bench_shrink; docs/media.md):
     * k = 2 keeps every embedding within cosine 0.999 of the full decode
     * while a 5640x3172 JPEG decodes ~3x faster. */
    o->shrink_on_load = 2;
    o->shrink_min_side = 1024;
}

/* ---- libvips errors ------------------------------------------------------ */

static const char *fmt_upper(const char *fmt) {
    if (!strcmp(fmt, "jpeg")) return "JPEG";
    if (!strcmp(fmt, "png")) return "PNG";
    if (!strcmp(fmt, "gif")) return "GIF";
    if (!strcmp(fmt, "webp")) return "WebP";
    if (!strcmp(fmt, "tiff")) return "TIFF";
    if (!strcmp(fmt, "heif")) return "HEIF";
    if (!strcmp(fmt, "avif")) return "AVIF";
    return fmt;
}

/* Takes libvips' error text (its buffer is process-wide: taken and cleared
 * at once) and turns it into "<label>: truncated JPEG (<text>)" or
 * "<label>: corrupt PNG (<text>)". */
static int vips_fail(int code, const char *label, const char *fmt, const char *what) {
    char *m = vips_error_buffer_copy();
    char text[512];
    size_t n = 0;
    text[0] = 0;
    if (m) {
        /* one line: newlines become "; ", trailing ones dropped */
        for (const char *p = m; *p && n + 3 < sizeof text; p++) {
            if (*p == '\n') {
                if (p[1] && n + 3 < sizeof text) { text[n++] = ';'; text[n++] = ' '; }
            } else {
                text[n++] = *p;
            }
        }
        text[n] = 0;
        g_free(m);
    }
    const char *t = text[0] ? text : "no detail from libvips";
    if (what) return perr_set(code, "%s: %s %s (%s)", label, what, fmt_upper(fmt), t);
    static const char *trunc[] = {"runcated", "remature end", "nexpected end", "not enough data",
                                  "end of file", "EOF", "short read", "out of data", "Read error",
                                  "read error", "unable to read"};
    for (size_t i = 0; i < sizeof trunc / sizeof trunc[0]; i++)
        if (strstr(text, trunc[i]))
            return perr_set(code, "%s: truncated %s (%s)", label, fmt_upper(fmt), t);
    return perr_set(code, "%s: corrupt %s (%s)", label, fmt_upper(fmt), t);
}

/* ---- opening: sniff, loader, header checks --------------------------------- */

typedef struct src_ctx src_ctx;
typedef struct src_ctx {
    VipsSource *src;
    const char *fmt;    /* sniffed */
    const char *label;  /* path or caller's label */
    void *mem;          /* file contents, for loaders that want all of it */
    cmsHTRANSFORM xf;   /* 8-bit RGB(A) ICC profile -> sRGB, applied per row */
} src_ctx;

static void src_close(src_ctx *s);

static int check_dims(const src_ctx *s, int w, int h, const pe_image_limits *lim) {
    if (w <= 0 || h <= 0)
        return perr_set(PERR_FORMAT, "%s: %s header declares %dx%d pixels", s->label,
                        fmt_upper(s->fmt), w, h);
    if (lim->max_pixels > 0 && (int64_t)w * h > lim->max_pixels) {
        if (lim->max_pixels % 1000000 == 0)
            return perr_set(PERR_TOO_LARGE, "%s: %dx%d exceeds the %lld MP limit", s->label, w, h,
                            (long long)(lim->max_pixels / 1000000));
        return perr_set(PERR_TOO_LARGE, "%s: %dx%d exceeds the %lld-pixel limit", s->label, w, h,
                        (long long)lim->max_pixels);
    }
    if (lim->max_side > 0 && (w > lim->max_side || h > lim->max_side))
        return perr_set(PERR_TOO_LARGE, "%s: %dx%d exceeds the %d-pixel side limit", s->label, w,
                        h, lim->max_side);
    return PERR_OK;
}

static int accepted_image(const char *fmt) {
    return !strcmp(fmt, "jpeg") || !strcmp(fmt, "png") || !strcmp(fmt, "gif") ||
           !strcmp(fmt, "webp") || !strcmp(fmt, "tiff") || !strcmp(fmt, "heif") ||
           !strcmp(fmt, "avif");
}

static int refuse_kind(const char *label, pe_media_kind kind, const char *fmt, const uint8_t *h,
                       size_t n) {
    if (kind == PE_MEDIA_VIDEO)
        return perr_set(PERR_UNSUPPORTED, "%s: %s video, not a still image", label, fmt);
    if (!strcmp(fmt, "html"))
        return perr_set(PERR_UNSUPPORTED, "%s: HTML document, not an image", label);
    if (!strcmp(fmt, "svg") || !strcmp(fmt, "pdf"))
        return perr_set(PERR_UNSUPPORTED,
                        "%s: %s is not accepted (vector documents are not rendered)", label,
                        !strcmp(fmt, "svg") ? "SVG" : "PDF");
    if (strcmp(fmt, "unknown"))
        return perr_set(PERR_UNSUPPORTED, "%s: %s is not an accepted image format", label, fmt);
    char hex[3 * 8 + 1];
    size_t k = 0;
    for (size_t i = 0; i < n && i < 8; i++) k += snprintf(hex + k, sizeof hex - k, "%02x ", h[i]);
    if (k) hex[k - 1] = 0;
    else hex[0] = 0;
    return perr_set(PERR_UNSUPPORTED, "%s: not an image (unrecognised content, first bytes %s)",
                    label, hex);
}

/* Opens the bytes of path (or buf/len) as a libvips source after sniffing
 * them. Refusals name the file and say why. */
static int src_open(const char *path, const void *buf, size_t len, const char *label,
                    const pe_image_limits *lim, src_ctx *s) {
    memset(s, 0, sizeof *s);
    int rc = pe_image_init();
    if (rc) return rc;
    uint8_t head[4096];
    size_t hn;
    s->label = label ? label : path ? path : "(buffer)";
    if (path) {
        int fd;
        size_t size;
        rc = pe_media_open(path, lim->max_file_bytes, &fd, &size);
        if (rc) return rc;
        ssize_t r;
        do r = pread(fd, head, sizeof head, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            int e = errno;
            close(fd);
            return perr_errno(e, "%s: read", s->label);
        }
        hn = (size_t)r;
        pe_media_kind kind = pe_media_sniff_format(head, hn, &s->fmt);
        if ((kind != PE_MEDIA_IMAGE && kind != PE_MEDIA_ANIMATION) || !accepted_image(s->fmt)) {
            close(fd);
            return refuse_kind(s->label, kind, s->fmt, head, hn);
        }
        if (!strcmp(s->fmt, "webp") || !strcmp(s->fmt, "heif") || !strcmp(s->fmt, "avif")) {
            /* libwebp and libheif decode from one buffer; libvips would
             * mmap the file for them, and a file truncated meanwhile by
             * another process would then raise SIGBUS. Read it (its size
             * is within max_file_bytes). */
            s->mem = malloc(size);
            if (!s->mem) {
                close(fd);
                return perr_set(PERR_NOMEM, "%s: %zu bytes", s->label, size);
            }
            size_t got = 0;
            while (got < size) {
                ssize_t k = pread(fd, (char *)s->mem + got, size - got, (off_t)got);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) break;
                got += (size_t)k;
            }
            close(fd);
            s->src = vips_source_new_from_memory(s->mem, got);
        } else {
            s->src = vips_source_new_from_descriptor(fd); /* dups fd */
            close(fd);
        }
    } else {
        if (!buf || len == 0) return perr_set(PERR_FORMAT, "%s: empty input", s->label);
        if (lim->max_file_bytes && len > lim->max_file_bytes)
            return perr_set(PERR_TOO_LARGE, "%s: %zu bytes exceeds the %zu-byte file limit",
                            s->label, len, lim->max_file_bytes);
        hn = len < sizeof head ? len : sizeof head;
        pe_media_kind kind = pe_media_sniff_format(buf, hn, &s->fmt);
        if ((kind != PE_MEDIA_IMAGE && kind != PE_MEDIA_ANIMATION) || !accepted_image(s->fmt))
            return refuse_kind(s->label, kind, s->fmt, buf, hn);
        s->src = vips_source_new_from_memory(buf, len);
    }
    if (!s->src) {
        free(s->mem);
        s->mem = NULL;
        return vips_fail(PERR_IO, s->label, s->fmt, "cannot open");
    }
    /* GIF: libnsgif sizes its canvas from the logical screen; refuse a
     * huge one before libvips scans the frames. */
    if (!strcmp(s->fmt, "gif") && hn >= 10) {
        const uint8_t *h = path ? head : buf;
        int w = h[6] | h[7] << 8, hh = h[8] | h[9] << 8;
        if (w > 0 && hh > 0 && (rc = check_dims(s, w, hh, lim))) {
            src_close(s);
            return rc;
        }
    }
    return PERR_OK;
}

/* After the images made from it are unreferenced. */
static void src_close(src_ctx *s) {
    if (s->src) g_object_unref(s->src);
    s->src = NULL;
    free(s->mem);
    s->mem = NULL;
    if (s->xf) cmsDeleteTransform(s->xf);
    s->xf = NULL;
}

/* The loader for the sniffed format, header only: sequential access,
 * truncation is an error, page/frame 0. JPEG and WebP may be shrunk on load
 * by a factor 2, 4 or 8 (1 = full size; other formats ignore it). */
static int load_header(src_ctx *s, int shrink, VipsImage **out) {
    const VipsAccess acc = VIPS_ACCESS_SEQUENTIAL;
    const VipsFailOn fail = VIPS_FAIL_ON_TRUNCATED;
    int r;
    *out = NULL;
    if (!strcmp(s->fmt, "jpeg"))
        r = vips_jpegload_source(s->src, out, "access", acc, "fail_on", fail, "shrink",
                                 shrink, NULL);
    else if (!strcmp(s->fmt, "png"))
        r = vips_pngload_source(s->src, out, "access", acc, "fail_on", fail, NULL);
    else if (!strcmp(s->fmt, "gif"))
        r = vips_gifload_source(s->src, out, "access", acc, "fail_on", fail, NULL);
    else if (!strcmp(s->fmt, "webp") && shrink > 1)
        r = vips_webpload_source(s->src, out, "access", acc, "fail_on", fail, "scale",
                                 1.0 / shrink, NULL);
    else if (!strcmp(s->fmt, "webp"))
        r = vips_webpload_source(s->src, out, "access", acc, "fail_on", fail, NULL);
    else if (!strcmp(s->fmt, "tiff"))
        r = vips_tiffload_source(s->src, out, "access", acc, "fail_on", fail, NULL);
    else /* heif, avif */
        r = vips_heifload_source(s->src, out, "access", acc, "fail_on", fail, NULL);
    if (r) {
        *out = NULL;
        return vips_fail(PERR_DECODE, s->label, s->fmt, NULL);
    }
    return PERR_OK;
}

static void fill_info(const src_ctx *s, VipsImage *im, pe_image_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    info->width = im->Xsize;
    info->height = im->Ysize;
    info->bands = im->Bands;
    int o = vips_image_get_orientation(im);
    info->orientation = (o >= 1 && o <= 8) ? o : 1;
    snprintf(info->format, sizeof info->format, "%s", s->fmt);
    info->has_alpha = vips_image_hasalpha(im);
    info->pages = vips_image_get_n_pages(im);
    info->shrink = 1;
}

/* The limits, from the header alone. */
static int check_header(const src_ctx *s, VipsImage *im, const pe_image_limits *lim) {
    int rc = check_dims(s, im->Xsize, im->Ysize, lim);
    if (rc) return rc;
    if (im->Bands < 1 || im->Bands > 8)
        return perr_set(PERR_UNSUPPORTED, "%s: %d bands per pixel", s->label, im->Bands);
    if (im->Coding != VIPS_CODING_NONE)
        return perr_set(PERR_UNSUPPORTED, "%s: coded pixels (%d) not supported", s->label,
                        (int)im->Coding);
    int pages = vips_image_get_n_pages(im);
    if (lim->max_pages > 0 && pages > lim->max_pages)
        return perr_set(PERR_TOO_LARGE, "%s: %d pages/frames exceeds the limit of %d", s->label,
                        pages, lim->max_pages);
    return PERR_OK;
}

/* ---- colour: to 8-bit sRGB or grey, alpha kept -------------------------- */

/* Replaces *im (reference stolen) by its 8-bit sRGB (3 bands) or grey (1
 * band) version, plus an alpha band when there is one. *nc gets the colour
 * band count, *alpha whether band nc is alpha. Lazy: no pixel is read. */
/* The common case, an 8-bit RGB(A) image with an RGB profile (sRGB, Display
 * P3, Adobe RGB): one lcms transform straight to sRGB, 8 bits in and out,
 * applied to each row as it streams. lcms precomputes an 8-bit device link
 * for it: ~25x faster than vips_icc_transform's float Lab path (measured
 * 12 MP: 800 ms -> 30 ms) and within a level of it. */
/* Does xf leave every colour of an 18-level RGB grid and every grey and
 * pure-channel ramp as it is, give or take one level? An sRGB-tagged image
 * (most photos) does, and its transform is skipped: lcms' 8-bit device link
 * moves 0.15% of values by one level there (the HP sRGB profile against
 * lcms' own), where libvips' float path is an exact identity. */
static int xf_is_identity(cmsHTRANSFORM xf, int b) {
    enum { L = 18, NP = L * L * L + 4 * 256 };
    uint8_t *in = malloc((size_t)NP * b), *out = malloc((size_t)NP * b);
    int same = 0;
    if (in && out) {
        size_t i = 0;
        for (int r = 0; r < L; r++)
            for (int g = 0; g < L; g++)
                for (int bl = 0; bl < L; bl++, i++) {
                    uint8_t *q = in + i * b;
                    q[0] = (uint8_t)(r * 15), q[1] = (uint8_t)(g * 15), q[2] = (uint8_t)(bl * 15);
                    if (b == 4) q[3] = 255;
                }
        for (int v = 0; v < 256; v++)
            for (int k = 0; k < 4; k++, i++) {
                uint8_t *q = in + i * b;
                q[0] = (uint8_t)(k == 0 || k == 3 ? v : 0);
                q[1] = (uint8_t)(k == 1 || k == 3 ? v : 0);
                q[2] = (uint8_t)(k == 2 || k == 3 ? v : 0);
                if (b == 4) q[3] = 255;
            }
        cmsDoTransform(xf, in, out, NP);
        same = 1;
        for (size_t j = 0; j < (size_t)NP * b && same; j++)
            same = abs((int)in[j] - (int)out[j]) <= 1;
    }
    free(in);
    free(out);
    return same;
}

/* The common case, an 8-bit RGB(A) image with an RGB profile (sRGB, Display
 * P3, Adobe RGB): one lcms transform straight to sRGB, 8 bits in and out,
 * applied to each row as it streams (lcms precomputes an 8-bit device link,
 * within a level of vips_icc_transform's float Lab path and faster); none at
 * all when the profile maps sRGB to itself (measured, 12 MP sRGB-tagged JPEG:
 * +0.8 s per image through vips_icc_transform, +0 now). Returns 1 when handled (*xf set, or NULL for identity), 0 when
 * the image needs vips_icc_transform. */
static int rgb8_transform(VipsImage *t, cmsHTRANSFORM *xf_out) {
    const void *data;
    size_t len;
    *xf_out = NULL;
    if (t->BandFmt != VIPS_FORMAT_UCHAR || (t->Bands != 3 && t->Bands != 4)) return 0;
    VipsInterpretation it = vips_image_guess_interpretation(t);
    if (it != VIPS_INTERPRETATION_sRGB && it != VIPS_INTERPRETATION_RGB) return 0;
    if (vips_image_get_blob(t, VIPS_META_ICC_NAME, &data, &len) || len < 132 || len > 64u << 20) {
        vips_error_clear();
        return 0;
    }
    cmsHPROFILE in = cmsOpenProfileFromMem(data, (cmsUInt32Number)len);
    if (!in) return 0;
    cmsHTRANSFORM xf = NULL;
    if (cmsGetColorSpace(in) == cmsSigRgbData) {
        cmsHPROFILE out = cmsCreate_sRGBProfile();
        cmsUInt32Number f = t->Bands == 4 ? TYPE_RGBA_8 : TYPE_RGB_8;
        if (out)
            xf = cmsCreateTransform(in, f, out, f, INTENT_RELATIVE_COLORIMETRIC,
                                    cmsFLAGS_NOCACHE | (t->Bands == 4 ? cmsFLAGS_COPY_ALPHA : 0));
        if (out) cmsCloseProfile(out);
    }
    cmsCloseProfile(in);
    if (!xf) return 0;
    if (xf_is_identity(xf, t->Bands)) {
        cmsDeleteTransform(xf);
        return 1;
    }
    *xf_out = xf;
    return 1;
}

static int to_srgb8(src_ctx *s, VipsImage **im, int use_icc, int *nc, int *alpha) {
    VipsImage *t = *im, *x = NULL;
    if (use_icc && vips_image_get_typeof(t, VIPS_META_ICC_NAME) && rgb8_transform(t, &s->xf))
        use_icc = 0; /* done per row in stream_rows, or nothing to do */
    if (use_icc && vips_image_get_typeof(t, VIPS_META_ICC_NAME)) {
        if (!vips_icc_transform(t, &x, "srgb", "embedded", TRUE, "intent", VIPS_INTENT_RELATIVE,
                                "depth", 8, NULL)) {
            g_object_unref(t);
            t = x;
        } else {
            /* An unusable or mismatched profile (an RGB profile on a grey
             * JPEG, say) is ignored: the pixels are still good. */
            vips_error_clear();
        }
    }
    VipsInterpretation it = vips_image_guess_interpretation(t);
    int grey = 0;
    switch (it) {
    case VIPS_INTERPRETATION_B_W:
        grey = 1;
        break;
    case VIPS_INTERPRETATION_GREY16:
        grey = 1;
        if (vips_colourspace(t, &x, VIPS_INTERPRETATION_B_W, NULL)) goto fail;
        g_object_unref(t);
        t = x;
        break;
    case VIPS_INTERPRETATION_sRGB:
    case VIPS_INTERPRETATION_RGB:
        break;
    default:
        if (vips_colourspace_issupported(t)) {
            if (vips_colourspace(t, &x, VIPS_INTERPRETATION_sRGB, NULL)) goto fail;
            g_object_unref(t);
            t = x;
        } else {
            grey = t->Bands < 3;
        }
        break;
    }
    if (t->BandFmt != VIPS_FORMAT_UCHAR) {
        if (t->BandFmt == VIPS_FORMAT_USHORT) { /* 16 -> 8 bit: high byte, like Pillow */
            if (vips_rshift_const1(t, &x, 8, NULL)) goto fail;
            g_object_unref(t);
            t = x;
        }
        if (vips_cast_uchar(t, &x, NULL)) goto fail;
        g_object_unref(t);
        t = x;
    }
    int n = grey ? 1 : 3;
    if (t->Bands < n) { /* 2-band non-grey oddities: use band 0 as grey */
        grey = 1;
        n = 1;
    }
    int a = vips_image_hasalpha(t) && t->Bands > n;
    int want = n + a;
    if (t->Bands != want) {
        if (vips_extract_band(t, &x, 0, "n", want, NULL)) goto fail;
        g_object_unref(t);
        t = x;
    }
    *im = t;
    *nc = n;
    *alpha = a;
    return PERR_OK;
fail:
    g_object_unref(t);
    *im = NULL;
    return vips_fail(PERR_DECODE, s->label, s->fmt, "cannot convert colours of");
}

/* ---- Pillow's bilinear resample, 8 bits per channel ----------------------- */

#define PREC_BITS 22 /* Pillow: 32 - 8 - 2 */

typedef struct axis {
    int in, out, ksize;
    int *lo, *n;     /* first source index and tap count per output index */
    int32_t *k;      /* out x ksize fixed-point weights */
} axis;

static void axis_free(axis *a) {
    free(a->lo);
    free(a->n);
    free(a->k);
    memset(a, 0, sizeof *a);
}

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc, box = [0, in). */
static int axis_init(axis *a, int in, int out) {
    memset(a, 0, sizeof *a);
    double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    a->in = in, a->out = out, a->ksize = ksize;
    a->lo = malloc(sizeof(int) * out);
    a->n = malloc(sizeof(int) * out);
    a->k = calloc((size_t)out * ksize, sizeof(int32_t));
    double *w = malloc(sizeof(double) * ksize);
    if (!a->lo || !a->n || !a->k || !w) {
        free(w);
        axis_free(a);
        return perr_set(PERR_NOMEM, "resize coefficients (%d -> %d)", in, out);
    }
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in) xmax = in;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bilinear((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; x++) {
            if (ww != 0.0) w[x] /= ww;
            double v = w[x] * (1 << PREC_BITS);
            a->k[(size_t)xx * ksize + x] = (int32_t)(w[x] < 0 ? -0.5 + v : 0.5 + v);
        }
        a->lo[xx] = xmin;
        a->n[xx] = xmax < 0 ? 0 : xmax;
    }
    free(w);
    return PERR_OK;
}

static inline uint8_t clip8(int32_t v) {
    if (v >= (1 << PREC_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PREC_BITS);
}

/* One row, b interleaved bands: in[a->in * b] -> out[a->out * b]. An AVX2
 * copy is picked at run time on CPUs that have it (PE_CLONES_AVX2). */
PE_CLONES_AVX2 static void hpass(const axis *a, const uint8_t *in, uint8_t *out, int b) {
    for (int xx = 0; xx < a->out; xx++) {
        const int32_t *k = a->k + (size_t)xx * a->ksize;
        const uint8_t *p = in + (size_t)a->lo[xx] * b;
        int n = a->n[xx];
        int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0, s3 = s0;
        switch (b) {
        case 1:
            for (int x = 0; x < n; x++) s0 += p[x] * k[x];
            out[xx] = clip8(s0);
            break;
        case 2:
            for (int x = 0; x < n; x++) s0 += p[2 * x] * k[x], s1 += p[2 * x + 1] * k[x];
            out[2 * xx] = clip8(s0), out[2 * xx + 1] = clip8(s1);
            break;
        case 3:
            for (int x = 0; x < n; x++)
                s0 += p[3 * x] * k[x], s1 += p[3 * x + 1] * k[x], s2 += p[3 * x + 2] * k[x];
            out[3 * xx] = clip8(s0), out[3 * xx + 1] = clip8(s1), out[3 * xx + 2] = clip8(s2);
            break;
        default:
            for (int x = 0; x < n; x++)
                s0 += p[4 * x] * k[x], s1 += p[4 * x + 1] * k[x], s2 += p[4 * x + 2] * k[x],
                    s3 += p[4 * x + 3] * k[x];
            out[4 * xx] = clip8(s0), out[4 * xx + 1] = clip8(s1), out[4 * xx + 2] = clip8(s2),
                     out[4 * xx + 3] = clip8(s3);
            break;
        }
    }
}

/* Streamed two-pass resize of a W x H, b-band u8 image to OW x OH (stored
 * orientation). Rows are fed top to bottom with rs_feed.
 *   h_first: Pillow's order (horizontal pass, round to 8 bits, vertical).
 *   !h_first: vertical first (Pillow's order on the transposed image).
 * The vertical pass keeps integer accumulators for the output rows whose
 * source window is open: they are done when the window's last row is in. */
typedef struct resizer {
    int W, H, OW, OH, b, h_first;
    axis hx, vy;
    int row_len;        /* accumulator row length: (h_first ? OW : W) * b */
    int nslot;          /* ring of open output rows */
    int32_t *acc;       /* nslot x row_len */
    uint8_t *tmp;       /* one row: OW*b (h_first) or W*b (clipped vertical result) */
    uint8_t *out;       /* OW x OH x b */
    int next_open;      /* first output row not yet opened */
    int next_done;      /* first output row not yet finished */
} resizer;

static void rs_free(resizer *r) {
    axis_free(&r->hx);
    axis_free(&r->vy);
    free(r->acc);
    free(r->tmp);
    free(r->out);
    memset(r, 0, sizeof *r);
}

static int rs_init(resizer *r, int W, int H, int b, int OW, int OH, int h_first) {
    memset(r, 0, sizeof *r);
    r->W = W, r->H = H, r->OW = OW, r->OH = OH, r->b = b, r->h_first = h_first;
    int rc = axis_init(&r->hx, W, OW);
    if (!rc) rc = axis_init(&r->vy, H, OH);
    if (rc) { rs_free(r); return rc; }
    /* Most output rows open at once: windows are monotonic, so count, for
     * each source row, the output rows whose window holds it. */
    int maxopen = 1, lo = 0;
    for (int yy = 0; yy < OH; yy++) {
        while (lo < yy && r->vy.lo[lo] + r->vy.n[lo] <= r->vy.lo[yy]) lo++;
        if (yy - lo + 1 > maxopen) maxopen = yy - lo + 1;
    }
    r->nslot = maxopen + 1;
    r->row_len = (h_first ? OW : W) * b;
    r->acc = malloc(sizeof(int32_t) * (size_t)r->nslot * r->row_len);
    r->tmp = malloc((size_t)(h_first ? OW : W) * b);
    r->out = malloc((size_t)OW * OH * b);
    if (!r->acc || !r->tmp || !r->out) {
        rs_free(r);
        return perr_set(PERR_NOMEM, "resize buffers (%dx%d -> %dx%d)", W, H, OW, OH);
    }
    return PERR_OK;
}

static void rs_finish_row(resizer *r, int yy) {
    int32_t *a = r->acc + (size_t)(yy % r->nslot) * r->row_len;
    uint8_t *o = r->out + (size_t)yy * r->OW * r->b;
    if (r->h_first) {
        for (int j = 0; j < r->row_len; j++) o[j] = clip8(a[j]);
    } else {
        for (int j = 0; j < r->row_len; j++) r->tmp[j] = clip8(a[j]);
        hpass(&r->hx, r->tmp, o, r->b);
    }
}

/* Feeds source row y (rows must come in order 0..H-1). */
PE_CLONES_AVX2 static void rs_feed(resizer *r, int y, const uint8_t *row) {
    /* open output rows whose window starts at or before y */
    while (r->next_open < r->OH && r->vy.lo[r->next_open] <= y) {
        int32_t *a = r->acc + (size_t)(r->next_open % r->nslot) * r->row_len;
        for (int j = 0; j < r->row_len; j++) a[j] = 1 << (PREC_BITS - 1);
        r->next_open++;
    }
    const uint8_t *src = row;
    if (r->h_first) {
        hpass(&r->hx, row, r->tmp, r->b);
        src = r->tmp;
    }
    for (int yy = r->next_done; yy < r->next_open; yy++) {
        int off = y - r->vy.lo[yy];
        if (off < 0 || off >= r->vy.n[yy]) continue;
        int32_t k = r->vy.k[(size_t)yy * r->vy.ksize + off];
        if (!k) continue;
        int32_t *a = r->acc + (size_t)(yy % r->nslot) * r->row_len;
        for (int j = 0; j < r->row_len; j++) a[j] += src[j] * k;
    }
    /* close output rows whose window ends here */
    while (r->next_done < r->next_open &&
           r->vy.lo[r->next_done] + r->vy.n[r->next_done] <= y + 1) {
        rs_finish_row(r, r->next_done);
        r->next_done++;
    }
}

/* After the last row: rows with empty windows (none for valid sizes). */
static void rs_end(resizer *r) {
    while (r->next_open < r->OH) {
        int32_t *a = r->acc + (size_t)(r->next_open % r->nslot) * r->row_len;
        for (int j = 0; j < r->row_len; j++) a[j] = 1 << (PREC_BITS - 1);
        r->next_open++;
    }
    while (r->next_done < r->OH) rs_finish_row(r, r->next_done++);
}

/* Pillow's rgbA2rgba / lA2la: c * a / 255 rounded, in place. */
static void premultiply(uint8_t *p, int n, int b) {
    int ai = b - 1;
    for (int i = 0; i < n; i++, p += b) {
        unsigned a = p[ai], t;
        for (int c = 0; c < ai; c++) {
            t = p[c] * a + 128;
            p[c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
    }
}

/* Pillow's rgba2rgbA / la2lA: 255 * c / a, truncated and clipped; alpha 0
 * and 255 leave the colour as it is. */
static void unpremultiply(uint8_t *p, size_t n, int b) {
    int ai = b - 1;
    for (size_t i = 0; i < n; i++, p += b) {
        unsigned a = p[ai];
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < ai; c++) {
            unsigned v = 255u * p[c] / a;
            p[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

/* ---- orientation and output ------------------------------------------------ */

/* Display pixel (dx, dy) of an image stored W x H with EXIF orientation o
 * comes from stored pixel (*sx, *sy). */
static inline void orient_src(int o, int W, int H, int dx, int dy, int *sx, int *sy) {
    switch (o) {
    default:
    case 1: *sx = dx, *sy = dy; break;
    case 2: *sx = W - 1 - dx, *sy = dy; break;
    case 3: *sx = W - 1 - dx, *sy = H - 1 - dy; break;
    case 4: *sx = dx, *sy = H - 1 - dy; break;
    case 5: *sx = dy, *sy = dx; break;
    case 6: *sx = dy, *sy = H - 1 - dx; break;
    case 7: *sx = W - 1 - dy, *sy = H - 1 - dx; break;
    case 8: *sx = W - 1 - dy, *sy = dx; break;
    }
}

static inline int orient_swaps(int o) { return o >= 5 && o <= 8; }

/* Stored-orientation u8 result (SW x SH, b bands, nc colour) -> planar
 * float [3, out_h, out_w], (v/255 - 0.5)/0.5 exactly as torchvision's
 * ToTensor + Normalize(0.5, 0.5) compute it in float32. */
static void emit_planar(const uint8_t *px, int SW, int SH, int b, int nc, int o, int out_w,
                        int out_h, float *out) {
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - 0.5f) / 0.5f;
    size_t plane = (size_t)out_w * out_h;
    for (int dy = 0; dy < out_h; dy++)
        for (int dx = 0; dx < out_w; dx++) {
            int sx, sy;
            orient_src(o, SW, SH, dx, dy, &sx, &sy);
            const uint8_t *p = px + ((size_t)sy * SW + sx) * b;
            size_t i = (size_t)dy * out_w + dx;
            if (nc == 1) {
                out[i] = out[plane + i] = out[2 * plane + i] = lut[p[0]];
            } else {
                out[i] = lut[p[0]];
                out[plane + i] = lut[p[1]];
                out[2 * plane + i] = lut[p[2]];
            }
        }
}

/* ---- streaming the decoded rows ---------------------------------------------- */

typedef void (*row_fn)(void *ctx, int y, const uint8_t *row);

/* Reads im top to bottom in strips (sequential access) and hands every row
 * to fn. Decode errors (truncation with fail_on) surface here. */
static int stream_rows(const src_ctx *s, VipsImage *im, int premul, row_fn fn, void *ctx) {
    VipsRegion *reg = vips_region_new(im);
    if (!reg) return vips_fail(PERR_NOMEM, s->label, s->fmt, "cannot read");
    int W = im->Xsize, H = im->Ysize, b = im->Bands;
    int copy = premul || s->xf;
    uint8_t *row = copy ? malloc((size_t)W * b) : NULL;
    if (copy && !row) {
        g_object_unref(reg);
        return perr_set(PERR_NOMEM, "%s: row buffer", s->label);
    }
    int strip = 16, rc = PERR_OK;
    for (int y0 = 0; y0 < H && !rc; y0 += strip) {
        VipsRect r = {0, y0, W, y0 + strip <= H ? strip : H - y0};
        if (vips_region_prepare(reg, &r)) {
            rc = vips_fail(PERR_DECODE, s->label, s->fmt, NULL);
            break;
        }
        for (int y = y0; y < y0 + r.height; y++) {
            const uint8_t *p = (const uint8_t *)VIPS_REGION_ADDR(reg, 0, y);
            if (copy) {
                if (s->xf) cmsDoTransform(s->xf, p, row, (cmsUInt32Number)W);
                else memcpy(row, p, (size_t)W * b);
                if (premul) premultiply(row, W, b);
                p = row;
            }
            fn(ctx, y, p);
        }
    }
    free(row);
    g_object_unref(reg);
    return rc;
}

static void feed_resizer(void *ctx, int y, const uint8_t *row) { rs_feed(ctx, y, row); }

/* One decoded row to two resizers: the model's input and a thumbnail. */
static void feed_two(void *ctx, int y, const uint8_t *row) {
    resizer *r = ctx;
    rs_feed(&r[0], y, row);
    rs_feed(&r[1], y, row);
}

/* Resizes the converted image (nc colour bands + alpha) to the display size
 * out_w x out_h with orientation o; result in stored orientation in r->out,
 * alpha un-premultiplied. r[1], when two, is an initialised thumbnail
 * resizer fed the same rows (premultiplied alpha, finished, not freed). */
static int resize_image(const src_ctx *s, VipsImage *im, int alpha, int o, int out_w, int out_h,
                        resizer *r, int two) {
    int sw = orient_swaps(o);
    int rc = rs_init(r, im->Xsize, im->Ysize, im->Bands, sw ? out_h : out_w, sw ? out_w : out_h,
                     !sw);
    if (rc) return perr_prefix(rc, "%s", s->label);
    rc = stream_rows(s, im, alpha, two ? feed_two : feed_resizer, r);
    if (rc) { rs_free(r); return rc; }
    rs_end(r);
    if (two) rs_end(&r[1]);
    if (alpha) unpremultiply(r->out, (size_t)r->OW * r->OH, r->b);
    return PERR_OK;
}

/* ---- shrink-on-load --------------------------------------------------------- */

/* The shrink-on-load factor for a stored W x H image (pe_image_opts): 1, 2,
 * 4 or 8. The shrunk image keeps its shorter side >= k x the longer output
 * side, so the antialiased resize that follows still averages >= k x k
 * decoded pixels per output pixel; what the scaled decode changes is then
 * below the resize's own rounding for most pixels (docs/media.md). */
static int shrink_factor(const char *fmt, int W, int H, int out_w, int out_h,
                         const pe_image_opts *o) {
    if (o->shrink_on_load <= 0 || (strcmp(fmt, "jpeg") && strcmp(fmt, "webp"))) return 1;
    int shorter = W < H ? W : H, out = out_w > out_h ? out_w : out_h;
    if (shorter < o->shrink_min_side) return 1;
    int64_t need = (int64_t)o->shrink_on_load * out;
    int f = 1;
    while (f < 8 && shorter / (f * 2) >= need) f *= 2;
    return f;
}

/* Replaces *im (the full-size header just checked) by the same file's
 * header at 1/f scale: the source is opened again (a memory source costs
 * nothing; a file is read again from the page cache) and the new header is
 * checked against the limits too, in case the file changed meanwhile. */
static int reload_shrunk(src_ctx *s, const char *path, const void *buf, size_t len,
                         const char *label, const pe_image_limits *lim, int f, VipsImage **im) {
    g_object_unref(*im);
    *im = NULL;
    src_close(s);
    int rc = src_open(path, buf, len, label, lim, s);
    if (!rc) rc = load_header(s, f, im);
    if (!rc) rc = check_header(s, *im, lim);
    return rc;
}

/* ---- thumbnails (helpers) ---------------------------------------------------- */

void pe_thumb_opts_default(pe_thumb_opts *o) {
    o->max_side = 256;
    o->format = PE_THUMB_WEBP;
    o->quality = 75;
}

void pe_thumb_clear(pe_thumb *t) {
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

const char *pe_thumb_mime(int format) {
    return format == PE_THUMB_JPEG ? "image/jpeg" : "image/webp";
}

static int check_thumb_opts(const pe_thumb_opts *o) {
    if (o->max_side < 1 || o->max_side > 8192)
        return perr_set(PERR_INVALID, "thumbnail size %d out of range (1..8192)", o->max_side);
    if (o->format != PE_THUMB_JPEG && o->format != PE_THUMB_WEBP)
        return perr_set(PERR_INVALID, "thumbnail format %d unknown", o->format);
    if (o->quality < 1 || o->quality > 100)
        return perr_set(PERR_INVALID, "thumbnail quality %d out of range (1..100)", o->quality);
    return PERR_OK;
}

/* Thumbnail size of a DW x DH (display) picture: longest side max_side,
 * aspect kept, never enlarged. */
static void thumb_dims(int DW, int DH, int max_side, int *tw, int *th) {
    *tw = DW, *th = DH;
    if (DW > max_side || DH > max_side) {
        if (DW >= DH) *tw = max_side, *th = (int)((double)DH * max_side / DW + 0.5);
        else *th = max_side, *tw = (int)((double)DW * max_side / DH + 0.5);
    }
    if (*tw < 1) *tw = 1;
    if (*th < 1) *th = 1;
}

/* A resizer from the converted image im (stored orientation) to the
 * thumbnail's size in stored orientation. */
static int thumb_resizer_init(const src_ctx *s, VipsImage *im, int orient, const pe_thumb_opts *to,
                              resizer *t) {
    int W = im->Xsize, H = im->Ysize, sw = orient_swaps(orient);
    int tw, th;
    thumb_dims(sw ? H : W, sw ? W : H, to->max_side, &tw, &th);
    int rc = rs_init(t, W, H, im->Bands, sw ? th : tw, sw ? tw : th, !sw);
    return rc ? perr_prefix(rc, "%s: thumbnail", s->label) : PERR_OK;
}

/* A finished thumbnail resizer (stored orientation, premultiplied alpha as
 * thumb_finish wants) of size ow x oh from the encoder's finished resize m
 * (stored orientation, alpha un-premultiplied). */
static int thumb_from_model(const resizer *m, int alpha, int ow, int oh, const char *label,
                            resizer *t) {
    int rc = rs_init(t, m->OW, m->OH, m->b, ow, oh, 1);
    if (rc) return perr_prefix(rc, "%s: thumbnail", label);
    size_t rl = (size_t)m->OW * m->b;
    uint8_t *row = alpha ? malloc(rl) : NULL;
    if (alpha && !row) { rs_free(t); return perr_set(PERR_NOMEM, "%s: thumbnail", label); }
    for (int y = 0; y < m->OH; y++) {
        const uint8_t *p = m->out + (size_t)y * rl;
        if (alpha) {
            memcpy(row, p, rl);
            premultiply(row, m->OW, m->b);
            p = row;
        }
        rs_feed(t, y, p);
    }
    rs_end(t);
    free(row);
    return PERR_OK;
}

/* Encodes tw x th packed RGB. */
static int thumb_encode(const uint8_t *rgb, int tw, int th, const pe_thumb_opts *to,
                        const char *label, pe_thumb *out) {
    VipsImage *t = vips_image_new_from_memory(rgb, (size_t)tw * th * 3, tw, th, 3,
                                              VIPS_FORMAT_UCHAR);
    void *b = NULL;
    size_t n = 0;
    int bad = !t;
    if (!bad && to->format == PE_THUMB_JPEG)
        bad = vips_jpegsave_buffer(t, &b, &n, "Q", to->quality, "strip", TRUE, NULL);
    else if (!bad)
        /* effort 2 of 0..6: ~3x faster than the default 4 at 256 px, a few % larger */
        bad = vips_webpsave_buffer(t, &b, &n, "Q", to->quality, "strip", TRUE, "effort", 2, NULL);
    int rc = PERR_OK;
    if (bad) {
        rc = vips_fail(PERR_INTERNAL, label, to->format == PE_THUMB_JPEG ? "jpeg" : "webp",
                       "cannot encode thumbnail of");
    } else if (!(out->data = malloc(n))) {
        rc = perr_set(PERR_NOMEM, "%s: thumbnail", label);
    } else {
        memcpy(out->data, b, n);
        out->len = n;
        out->width = tw, out->height = th;
        out->format = to->format;
    }
    g_free(b);
    if (t) g_object_unref(t);
    return rc;
}

/* A finished thumbnail resizer (stored orientation, premultiplied alpha)
 * -> upright RGB with alpha flattened on white (c + 255 - a) -> encoded. */
static int thumb_finish(const resizer *r, int orient, int nc, int alpha, const pe_thumb_opts *to,
                        const char *label, pe_thumb *out) {
    int sw = orient_swaps(orient);
    int tw = sw ? r->OH : r->OW, th = sw ? r->OW : r->OH;
    uint8_t *rgb = malloc((size_t)tw * th * 3);
    if (!rgb) return perr_set(PERR_NOMEM, "%s: thumbnail", label);
    for (int dy = 0; dy < th; dy++)
        for (int dx = 0; dx < tw; dx++) {
            int sx, sy;
            orient_src(orient, r->OW, r->OH, dx, dy, &sx, &sy);
            const uint8_t *p = r->out + ((size_t)sy * r->OW + sx) * r->b;
            uint8_t *q = rgb + ((size_t)dy * tw + dx) * 3;
            for (int c = 0; c < 3; c++) {
                unsigned v = p[nc == 1 ? 0 : c];
                if (alpha) v += 255u - p[r->b - 1];
                q[c] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    int rc = thumb_encode(rgb, tw, th, to, label, out);
    free(rgb);
    return rc;
}

/* ---- public: preprocessing ------------------------------------------------ */

static int check_out_size(int w, int h) {
    if (w < 1 || h < 1 || w > 8192 || h > 8192)
        return perr_set(PERR_INVALID, "output size %dx%d out of range", w, h);
    return PERR_OK;
}

int pe_image_preprocess_thumb(const char *path, const void *buf, size_t len, const char *label,
                              const pe_image_opts *o, float *out, pe_image_info *info,
                              const pe_thumb_opts *to, pe_thumb *thumb) {
    pe_image_opts def;
    if (!o) { pe_image_opts_default(&def, 0); o = &def; }
    pe_thumb_opts tdef;
    if (thumb) {
        memset(thumb, 0, sizeof *thumb);
        if (!to) { pe_thumb_opts_default(&tdef); to = &tdef; }
    }
    int rc = check_out_size(o->out_w, o->out_h);
    if (!rc && thumb) rc = check_thumb_opts(to);
    if (rc) return rc;
    if (!out) return perr_set(PERR_INVALID, "no output buffer");
    src_ctx s;
    rc = src_open(path, buf, len, label, &o->limits, &s);
    if (rc) return rc;
    VipsImage *im = NULL;
    rc = load_header(&s, 1, &im);
    if (!rc) {
        fill_info(&s, im, info);
        rc = check_header(&s, im, &o->limits);
    }
    int orient = 1;
    if (!rc && o->autorotate) {
        orient = vips_image_get_orientation(im);
        if (orient < 1 || orient > 8) orient = 1;
    }
    if (!rc) {
        int sw = orient_swaps(orient);
        int f = shrink_factor(s.fmt, im->Xsize, im->Ysize, sw ? o->out_h : o->out_w,
                              sw ? o->out_w : o->out_h, o);
        if (f > 1) rc = reload_shrunk(&s, path, buf, len, label, &o->limits, f, &im);
        if (!rc && info) info->shrink = f;
    }
    int nc = 3, alpha = 0;
    if (!rc) rc = to_srgb8(&s, &im, o->icc, &nc, &alpha);
    resizer r[2];
    memset(r, 0, sizeof r);
    /* The thumbnail is a downscale of the encoder's input when that is at
     * least as large on both axes (a 256 px thumbnail of a 384 px model:
     * a resize of 384 x 384 pixels, ~1 ms); else a second resizer is fed
     * the decoded rows. */
    int tw = 0, th = 0, tee = 0, sw = orient_swaps(orient);
    if (!rc && thumb) {
        thumb_dims(sw ? im->Ysize : im->Xsize, sw ? im->Xsize : im->Ysize, to->max_side, &tw, &th);
        tee = tw > o->out_w || th > o->out_h;
        if (tee) rc = thumb_resizer_init(&s, im, orient, to, &r[1]);
    }
    if (!rc) rc = resize_image(&s, im, alpha, orient, o->out_w, o->out_h, r, tee);
    if (!rc) {
        emit_planar(r[0].out, r[0].OW, r[0].OH, r[0].b, nc, orient, o->out_w, o->out_h, out);
        if (thumb && !tee) rc = thumb_from_model(&r[0], alpha, sw ? th : tw, sw ? tw : th, s.label, &r[1]);
        rs_free(&r[0]);
        if (thumb && !rc) rc = thumb_finish(&r[1], orient, nc, alpha, to, s.label, thumb);
    }
    rs_free(&r[1]);
    if (im) g_object_unref(im);
    src_close(&s);
    return rc;
}

int pe_image_preprocess_ex(const char *path, const void *buf, size_t len, const char *label,
                           const pe_image_opts *o, float *out, pe_image_info *info) {
    return pe_image_preprocess_thumb(path, buf, len, label, o, out, info, NULL, NULL);
}

int pe_image_preprocess_file(const char *path, int size, const pe_image_limits *lim, float *out,
                             pe_image_info *info) {
    pe_image_opts o;
    pe_image_opts_default(&o, size);
    if (lim) o.limits = *lim;
    return pe_image_preprocess_ex(path, NULL, 0, path, &o, out, info);
}

int pe_image_preprocess_buffer(const void *buf, size_t len, const char *label, int size,
                               const pe_image_limits *lim, float *out, pe_image_info *info) {
    pe_image_opts o;
    pe_image_opts_default(&o, size);
    if (lim) o.limits = *lim;
    return pe_image_preprocess_ex(NULL, buf, len, label ? label : "(buffer)", &o, out, info);
}

int pe_image_preprocess_rgb_wh(const uint8_t *rgb, int w, int h, size_t stride, int out_w,
                               int out_h, float *out) {
    int rc = check_out_size(out_w, out_h);
    if (rc) return rc;
    if (!rgb || !out || w < 1 || h < 1 || stride < (size_t)w * 3)
        return perr_set(PERR_INVALID, "RGB frame %dx%d with stride %zu", w, h, stride);
    resizer r;
    rc = rs_init(&r, w, h, 3, out_w, out_h, 1);
    if (rc) return rc;
    for (int y = 0; y < h; y++) rs_feed(&r, y, rgb + (size_t)y * stride);
    rs_end(&r);
    emit_planar(r.out, out_w, out_h, 3, 3, 1, out_w, out_h, out);
    rs_free(&r);
    return PERR_OK;
}

int pe_image_preprocess_rgb(const uint8_t *rgb, int w, int h, size_t stride, int size,
                            float *out) {
    return pe_image_preprocess_rgb_wh(rgb, w, h, stride, size, size, out);
}

/* ---- public: full decode (tools, conformance tests) --------------------------- */

typedef struct collect_ctx {
    uint8_t *pix;
    size_t row_bytes;
} collect_ctx;

static void collect_row(void *ctx, int y, const uint8_t *row) {
    collect_ctx *c = ctx;
    memcpy(c->pix + (size_t)y * c->row_bytes, row, c->row_bytes);
}

int pe_image_decode_u8(const char *path, const pe_image_opts *o, uint8_t **pix, int *w, int *h,
                       int *bands, pe_image_info *info) {
    pe_image_opts def;
    if (!o) { pe_image_opts_default(&def, 1); o = &def; }
    *pix = NULL;
    src_ctx s;
    int rc = src_open(path, NULL, 0, path, &o->limits, &s);
    if (rc) return rc;
    VipsImage *im = NULL;
    rc = load_header(&s, 1, &im);
    if (!rc) {
        fill_info(&s, im, info);
        rc = check_header(&s, im, &o->limits);
    }
    int orient = 1, nc = 3, alpha = 0;
    if (!rc && o->autorotate) {
        orient = vips_image_get_orientation(im);
        if (orient < 1 || orient > 8) orient = 1;
    }
    if (!rc) rc = to_srgb8(&s, &im, o->icc, &nc, &alpha);
    uint8_t *stored = NULL;
    int W = 0, H = 0, b = 0;
    if (!rc) {
        W = im->Xsize, H = im->Ysize, b = im->Bands;
        stored = malloc((size_t)W * H * b);
        if (!stored) rc = perr_set(PERR_NOMEM, "%s: %dx%d pixels", s.label, W, H);
    }
    if (!rc) {
        collect_ctx c = {stored, (size_t)W * b};
        rc = stream_rows(&s, im, 0, collect_row, &c);
    }
    if (!rc && orient != 1) {
        int DW = orient_swaps(orient) ? H : W, DH = orient_swaps(orient) ? W : H;
        uint8_t *d = malloc((size_t)W * H * b);
        if (!d) {
            rc = perr_set(PERR_NOMEM, "%s: %dx%d pixels", s.label, W, H);
        } else {
            for (int dy = 0; dy < DH; dy++)
                for (int dx = 0; dx < DW; dx++) {
                    int sx, sy;
                    orient_src(orient, W, H, dx, dy, &sx, &sy);
                    memcpy(d + ((size_t)dy * DW + dx) * b, stored + ((size_t)sy * W + sx) * b, b);
                }
            free(stored);
            stored = d;
            W = DW, H = DH;
        }
    }
    if (im) g_object_unref(im);
    src_close(&s);
    if (rc) { free(stored); return rc; }
    *pix = stored;
    *w = W, *h = H, *bands = b;
    return PERR_OK;
}

/* ---- public: thumbnails ------------------------------------------------------ */

int pe_image_thumbnail(const char *path, const void *buf, size_t len, const char *label,
                       const pe_thumb_opts *to, pe_thumb *out) {
    memset(out, 0, sizeof *out);
    pe_thumb_opts tdef;
    if (!to) { pe_thumb_opts_default(&tdef); to = &tdef; }
    int rc = check_thumb_opts(to);
    if (rc) return rc;
    if (!label) label = path ? path : "(buffer)";
    pe_image_limits lim;
    pe_image_limits_default(&lim);
    src_ctx s;
    rc = src_open(path, buf, len, label, &lim, &s);
    if (rc) return rc;
    VipsImage *im = NULL;
    rc = load_header(&s, 1, &im);
    if (!rc) rc = check_header(&s, im, &lim);
    if (!rc && (!strcmp(s.fmt, "jpeg") || !strcmp(s.fmt, "webp"))) {
        /* shrink-on-load: the largest 2^k keeping at least 2 x max_side */
        int longest = im->Xsize > im->Ysize ? im->Xsize : im->Ysize, shrink = 1;
        while (shrink < 8 && longest / (shrink * 2) >= 2 * to->max_side) shrink *= 2;
        if (shrink > 1) rc = reload_shrunk(&s, path, buf, len, label, &lim, shrink, &im);
    }
    int orient = 1, nc = 3, alpha = 0;
    if (!rc) {
        orient = vips_image_get_orientation(im);
        if (orient < 1 || orient > 8) orient = 1;
        rc = to_srgb8(&s, &im, 1, &nc, &alpha);
    }
    resizer r;
    memset(&r, 0, sizeof r);
    if (!rc) rc = thumb_resizer_init(&s, im, orient, to, &r);
    if (!rc) rc = stream_rows(&s, im, alpha, feed_resizer, &r);
    if (!rc) {
        rs_end(&r);
        rc = thumb_finish(&r, orient, nc, alpha, to, s.label, out);
    }
    rs_free(&r);
    if (im) g_object_unref(im);
    src_close(&s);
    return rc;
}

int pe_image_thumbnail_rgb(const uint8_t *rgb, int w, int h, size_t stride,
                           const pe_thumb_opts *to, pe_thumb *out) {
    memset(out, 0, sizeof *out);
    pe_thumb_opts tdef;
    if (!to) { pe_thumb_opts_default(&tdef); to = &tdef; }
    int rc = check_thumb_opts(to);
    if (rc) return rc;
    if (!rgb || w < 1 || h < 1 || stride < (size_t)w * 3)
        return perr_set(PERR_INVALID, "RGB frame %dx%d with stride %zu", w, h, stride);
    /* A video's frames may be the process's first use of libvips, from
     * several decoder threads at once: its lazy start is not thread-safe. */
    if ((rc = pe_image_init())) return rc;
    int tw, th;
    thumb_dims(w, h, to->max_side, &tw, &th);
    resizer r;
    rc = rs_init(&r, w, h, 3, tw, th, 1);
    if (rc) return perr_prefix(rc, "frame thumbnail");
    for (int y = 0; y < h; y++) rs_feed(&r, y, rgb + (size_t)y * stride);
    rs_end(&r);
    rc = thumb_encode(r.out, tw, th, to, "frame", out);
    rs_free(&r);
    return rc;
}

int pe_image_thumbnail_jpeg(const char *path, int max_side, void **jpeg, size_t *len) {
    *jpeg = NULL;
    *len = 0;
    pe_thumb_opts to = {max_side, PE_THUMB_JPEG, 85};
    pe_thumb t;
    int rc = pe_image_thumbnail(path, NULL, 0, path, &to, &t);
    if (rc) return rc;
    *jpeg = t.data;
    *len = t.len;
    return PERR_OK;
}
