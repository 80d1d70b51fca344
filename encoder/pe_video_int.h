/* Internals shared by pe_video.c (FFmpeg) and pe_video_webp.c (libvips);
 * not part of the public API. */
#ifndef PERCEPT_PE_VIDEO_INT_H
#define PERCEPT_PE_VIDEO_INT_H

#include "encoder/pe_video.h"

#include <libavutil/rational.h>
#include <stdint.h>

struct AVIOContext;
struct AVFormatContext;
struct AVCodecContext;
struct AVStream;
struct AVPacket;
struct AVFrame;
struct SwsContext;
typedef struct pe_video_webp pe_video_webp;

struct pe_video {
    char *label;               /* path or caller's label, for messages */
    pe_video_limits lim;
    pe_video_info info;
    int64_t deadline_us;       /* av_gettime_relative() bound of all work */

    /* input: a file descriptor or the caller's bytes */
    int fd;
    const uint8_t *mem;
    int64_t size;              /* bytes */
    int64_t pos;               /* our read position */
    int io_errno;              /* a real read error (not a short file) */

    /* FFmpeg */
    struct AVIOContext *pb;
    struct AVFormatContext *fmt;
    struct AVCodecContext *dec;
    struct AVStream *st;
    int vidx, vidx_want;       /* video stream index (wanted one on reopen) */
    int seekable;
    struct AVPacket *pkt;
    struct AVFrame *prev;      /* the last frame at or before the target */
    struct AVFrame *pending;   /* the first frame after it, already decoded */
    int have_prev, have_pending;
    int prev_corrupt, pending_corrupt; /* see next_frame */
    int frame_corrupt;         /* the frame next_frame returned last */
    unsigned dec_errors;       /* errors the decoder logged (see next_frame) */
    unsigned dec_errors_seen;  /* ... up to the last frame returned */
    char dec_msg[256];         /* the last of them */
    char corrupt_msg[256];     /* why the last corrupt frame is */
    double prev_t, pending_t;  /* their times, seconds from origin */
    double floor_t;            /* where the current decode run started */
    double last_frame_t;       /* last decoded frame's time (for NOPTS frames) */
    int dec_eof, demux_eof, flush_sent;
    int read_error;            /* last av_read_frame error before EOF */
    int64_t origin_ts;         /* stream time of t = 0 */
    double frame_dur;          /* typical frame duration, seconds */
    double last_t;             /* start of the last delivered frame */
    int64_t packets_sent;
    int decode_errors;
    int seeks, reopens, fallbacks; /* counters for tests and the bench */

    /* RGB conversion */
    struct SwsContext *sws;
    uint8_t *rgb, *rot;
    size_t rgb_cap, rot_cap;

    /* animated WebP via libvips (pe_video_webp.c); NULL otherwise */
    pe_video_webp *webp;
};

void pe_video_ffmpeg_init(void);
int pe_video_fail(const pe_video *v, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pe_video_display_size(int w, int h, AVRational sar, int rot, int max_side, int *ow,
                           int *oh);
void pe_video_rotate_rgb(const uint8_t *src, int w, int h, size_t sstride, int rot,
                         uint8_t *dst);

/* Sets info.truncated (and truncated_why) when the input's container
 * structure (format: the AVInputFormat name, or "webp") runs past its end;
 * pe_video_trunc.c. */
void pe_video_check_truncated(pe_video *v, const char *format);
/* 1 when the PNG input has an acTL chunk before its first IDAT (APNG). */
int pe_video_png_is_animated(pe_video *v);

/* RIFF....WEBP */
int pe_video_is_webp(const uint8_t *head, size_t n);
int pe_video_webp_open(pe_video *v);
int pe_video_webp_sample(pe_video *v, double t, int index, int max_side, pe_frame_fn fn,
                         void *user);
void pe_video_webp_free(pe_video *v);

/* Test hooks: how the last samples were reached. */
void pe_video_counters(const pe_video *v, int *seeks, int *reopens, int *fallbacks);

#endif
