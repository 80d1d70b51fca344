/* pe_image: decoding and preprocessing of still images for the PE encoder,
 * hardened against hostile files (docs/media.md).
 *
 * Pipeline: content sniffing (never the file name) -> libvips loader chosen
 * by us (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF) -> header check against
 * pe_image_limits before any pixel is read -> embedded ICC profile to sRGB,
 * CMYK/16-bit/Lab to 8-bit sRGB -> streamed, row by row, through a faithful
 * port of Pillow's antialiased bilinear resize (horizontal pass first, 8-bit
 * intermediate, 22-bit fixed-point weights; RGBA resized premultiplied) ->
 * EXIF orientation applied to the result -> (v/255 - 0.5)/0.5, planar RGB.
 * Peak memory does not grow with the image for JPEG/PNG/WebP/TIFF strips.
 * Large JPEG/WebP photos are decoded at a reduced scale first (shrink-on-load,
 * pe_image_opts.shrink_on_load; on by default, off = exact reference path).
 *
 * Thread safety: every function may be called from several threads at once.
 * pe_image_init() runs once (pthread_once); it disables the libvips
 * operation cache, blocks libvips' "untrusted" loaders and sets libvips'
 * own thread count to 1 unless $VIPS_CONCURRENCY says otherwise.
 */
#ifndef PERCEPT_PE_IMAGE_H
#define PERCEPT_PE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pe_image_limits {
    int64_t max_pixels;    /* width * height, as stored (default 100 MP) */
    int max_side;          /* width and height (default 32768) */
    size_t max_file_bytes; /* encoded size (default 256 MiB) */
    int max_pages;         /* pages/frames declared by the header (default 10000) */
} pe_image_limits;

void pe_image_limits_default(pe_image_limits *l);

typedef struct pe_image_info {
    int width, height, bands; /* as stored, before rotation */
    int orientation;          /* EXIF orientation 1..8 (1 when absent) */
    char format[16];          /* "jpeg", "png", "webp", "gif", "tiff", "heif" */
    int has_alpha;
    int pages;                /* pages/frames in the file (page 0 is used) */
    int shrink;               /* preprocessing: decoded at 1/shrink scale (1, 2, 4, 8;
                                 pe_image_opts.shrink_on_load) */
} pe_image_info;

/* libvips initialisation; once per process, thread-safe. Every other call
 * of this module calls it. */
int pe_image_init(void);
/* libvips' own worker threads (default 1: percept parallelises per file). */
void pe_image_set_vips_threads(int n);

/* Options of the _ex calls; pe_image_opts_default() gives what the plain
 * calls use. */
typedef struct pe_image_opts {
    pe_image_limits limits;
    int out_w, out_h;   /* output size (the plain calls: size x size) */
    int autorotate;     /* apply EXIF orientation (default 1) */
    int icc;            /* import embedded RGB/grey ICC profiles to sRGB (default 0:
                           the model's reference ignores them; CMYK always converts) */
    /* Shrink-on-load (docs/media.md): a large JPEG is decoded at 1/2, 1/4 or
     * 1/8 scale by libjpeg's scaled IDCT, a large WebP by libwebp's scaler,
     * and the exact resize then runs from that smaller image. 0 = off: the
     * reference path, full decode, bit-exact to PIL. k >= 1 (default 2):
     * the largest factor 2^j <= 8 keeping the shrunk image's shorter side
     * >= k x the longer output side, and only for images whose shorter side
     * is >= shrink_min_side (default 1024: smaller ones decode in a few ms,
     * and so always take the exact path). Embeddings of shrunk photos
     * stay within cosine 0.999 of the exact path (tests/encoder_image/
     * test_image_shrink). Orientation, colour, alpha and the info reported
     * (stored size) do not change. */
    int shrink_on_load;
    int shrink_min_side;
} pe_image_opts;

void pe_image_opts_default(pe_image_opts *o, int size);

/* Decode + EXIF orientation + sRGB + premultiplied squash-resize to
 * size x size + normalize to [-1,1]: out is planar [3, size, size] float32
 * RGB. info (may be NULL) describes the file. Errors name the file: "x.jpg:
 * truncated JPEG", "y.gif: 65535x65535 exceeds the 100 MP limit". */
int pe_image_preprocess_file(const char *path, int size, const pe_image_limits *lim,
                             float *out, pe_image_info *info);
int pe_image_preprocess_buffer(const void *buf, size_t len, const char *label, int size,
                               const pe_image_limits *lim, float *out, pe_image_info *info);
/* Either path, or buf/len (label names it in messages). out: [3, out_h, out_w]. */
int pe_image_preprocess_ex(const char *path, const void *buf, size_t len, const char *label,
                           const pe_image_opts *o, float *out, pe_image_info *info);

/* Already-decoded 8-bit RGB (video frames), rows stride bytes apart: same
 * resize + normalize. */
int pe_image_preprocess_rgb(const uint8_t *rgb, int w, int h, size_t stride, int size,
                            float *out);
int pe_image_preprocess_rgb_wh(const uint8_t *rgb, int w, int h, size_t stride,
                               int out_w, int out_h, float *out);

/* Decoded 8-bit pixels before any resize, interleaved, in the file's own
 * layout after the colour step: 1 (grey), 2 (grey+alpha), 3 (RGB) or 4
 * (RGBA) bands (*bands). Orientation and ICC per o (out_w/out_h ignored).
 * For tools and conformance tests: the whole image is held in memory.
 * Caller frees *pix with free(). */
int pe_image_decode_u8(const char *path, const pe_image_opts *o, uint8_t **pix, int *w,
                       int *h, int *bands, pe_image_info *info);

/* Content sniffing, never by file name. */
typedef enum {
    PE_MEDIA_UNKNOWN = 0,
    PE_MEDIA_IMAGE,
    PE_MEDIA_VIDEO,
    PE_MEDIA_ANIMATION /* animated GIF/WebP */
} pe_media_kind;

/* Kind of the bytes in head[0..len): 64 bytes decide images and videos
 * (an MPEG-TS needs 377). An animated WebP says so in its header; a GIF is
 * an animation only if head reaches its second frame (pe_media_sniff_file
 * walks the whole GIF block structure for that). */
pe_media_kind pe_media_sniff(const void *head, size_t len);
/* Finer result: a short lower-case format name ("jpeg", "png", "gif",
 * "webp", "tiff", "heif", "avif", "bmp", "svg", "pdf", "html", "mp4",
 * "quicktime", "matroska", "avi", ...; "unknown"). */
pe_media_kind pe_media_sniff_format(const void *head, size_t len, const char **format);
/* Opens a regular file for reading: O_NONBLOCK|O_NOCTTY|O_CLOEXEC, so a
 * FIFO or a device never blocks; refuses anything that is not a regular
 * file (PERR_UNSUPPORTED), an empty file (PERR_FORMAT) and a file larger
 * than max_bytes (PERR_TOO_LARGE; 0 = no limit). *size gets its size. */
int pe_media_open(const char *path, size_t max_bytes, int *fd, size_t *size);
/* Opens path with O_NONBLOCK and refuses FIFOs, directories, devices and
 * sockets with a clear error (never blocks); reads the first 4 KiB (GIFs:
 * up to their second frame). */
int pe_media_sniff_file(const char *path, pe_media_kind *kind);
int pe_media_sniff_file_format(const char *path, pe_media_kind *kind, const char **format);

/* ---- thumbnails --------------------------------------------------------
 * Small previews kept with stored items and shown on result pages:
 * longest side <= max_side (never enlarged), upright, sRGB, alpha
 * flattened on white, metadata stripped. */
typedef enum { PE_THUMB_JPEG = 1, PE_THUMB_WEBP = 2 } pe_thumb_format;

typedef struct pe_thumb_opts {
    int max_side;   /* longest side in pixels (default 256; 1..8192) */
    int format;     /* pe_thumb_format (default WebP: ~2-5 KB at 256 px, a
                       third to half of JPEG's size at the same look) */
    int quality;    /* encoder quality 1..100 (default 75) */
} pe_thumb_opts;

void pe_thumb_opts_default(pe_thumb_opts *o);

typedef struct pe_thumb {
    void *data;     /* encoded bytes, malloc'd; pe_thumb_clear frees */
    size_t len;
    int width, height;
    int format;     /* pe_thumb_format */
} pe_thumb;

/* Frees t->data and zeroes t. NULL-safe. */
void pe_thumb_clear(pe_thumb *t);
/* "image/webp" or "image/jpeg". */
const char *pe_thumb_mime(int format);

/* pe_image_preprocess_ex that also makes a thumbnail from the same decode:
 * the decoded rows feed the model's resizer and a second, thumbnail-sized
 * one, so the file is read and decoded once (for a large JPEG at its
 * shrink-on-load scale). thumb NULL: exactly pe_image_preprocess_ex. On
 * failure nothing is returned in *thumb. */
int pe_image_preprocess_thumb(const char *path, const void *buf, size_t len, const char *label,
                              const pe_image_opts *o, float *out, pe_image_info *info,
                              const pe_thumb_opts *to, pe_thumb *thumb);
/* A thumbnail on its own, of a file (path) or bytes (buf/len; label names
 * them in messages), with the default limits and shrink-on-load. to NULL:
 * defaults. */
int pe_image_thumbnail(const char *path, const void *buf, size_t len, const char *label,
                       const pe_thumb_opts *to, pe_thumb *out);
/* A thumbnail of an already-decoded upright 8-bit RGB picture (a video
 * frame), rows stride bytes apart. */
int pe_image_thumbnail_rgb(const uint8_t *rgb, int w, int h, size_t stride,
                           const pe_thumb_opts *to, pe_thumb *out);

/* A JPEG thumbnail of a file for self-contained result pages (quality 85).
 * Caller frees *jpeg with free(). */
int pe_image_thumbnail_jpeg(const char *path, int max_side, void **jpeg, size_t *len);

#endif
