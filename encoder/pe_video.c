/* pe_video: probing and seek-based frame sampling of untrusted videos.
 *
 * DESIGN
 * Owns one input (a file descriptor or caller's bytes) behind our own
 * AVIOContext, FFmpeg's demuxer and decoder for the chosen video stream,
 * two decoded frames (the last one at or before the current target and the
 * first one after it), and the RGB buffers handed to the caller.
 *
 * It must never: open anything but the given input (no URL protocols, no
 * nested opens: io_open refuses, demuxers are allow-listed), trust a
 * declared duration (we measure what the stream delivers), decode without
 * a bound (frames, packets and wall-clock per video, checked in every
 * loop and in FFmpeg's interrupt callback), or print (FFmpeg's log goes to
 * a thread-local buffer that error messages quote).
 *
 * Sampling keeps the decoder state between targets: a target before the
 * next keyframe is reached by decoding on, a target past it by a keyframe
 * seek; a seek that yields nothing falls back to a sequential run from the
 * start. Animated WebP (FFmpeg 5.1 has no decoder for it) is decoded by
 * libvips in pe_video_webp.c behind the same handle.
 */
#define _GNU_SOURCE
#include "encoder/pe_video.h"
#include "encoder/pe_video_int.h"

#include "common/perr.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libavutil/time.h>
#include <libswscale/swscale.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Containers we open (AVInputFormat names). Raw elementary streams and
 * playlists (hls, concat, ...) are not among them. */
static const char *const k_formats[] = {
    "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "gif", "apng", "flv",
    "mpegts", "mpeg", "ogg", "asf", "ivf", NULL,
};

/* Video codecs we decode: the common camera, web and editing codecs. */
static const enum AVCodecID k_codecs[] = {
    AV_CODEC_ID_H264,  AV_CODEC_ID_HEVC,       AV_CODEC_ID_VP8,
    AV_CODEC_ID_VP9,   AV_CODEC_ID_AV1,        AV_CODEC_ID_MPEG4,
    AV_CODEC_ID_MPEG2VIDEO, AV_CODEC_ID_MPEG1VIDEO, AV_CODEC_ID_MJPEG,
    AV_CODEC_ID_GIF,   AV_CODEC_ID_APNG,       AV_CODEC_ID_PNG,
    AV_CODEC_ID_PRORES, AV_CODEC_ID_THEORA,    AV_CODEC_ID_H263,
    AV_CODEC_ID_FLV1,  AV_CODEC_ID_VC1,        AV_CODEC_ID_WMV3,
    AV_CODEC_ID_MSMPEG4V3, AV_CODEC_ID_DNXHD,  AV_CODEC_ID_NONE,
};

#define IO_BUF_SIZE (64 * 1024)
#define PROBE_BYTES (1 << 20)
#define TIME_EPS 1e-4          /* seconds: a frame at t - eps is "at t" */
#define MAX_DECODE_ERRORS 64   /* corrupt packets tolerated per video */
#define SEEK_GAP_NO_INDEX 4.0  /* without an index, seek when this far ahead */

/* ---- FFmpeg log capture ------------------------------------------------ */

static _Thread_local char tls_avmsg[256];
/* Errors the decoder being watched (next_frame, this thread) logged: a
 * decoder can log "LZW decode failed" and still return the frame (GIF:
 * garbage filled), so a logged error marks the frame corrupt. */
static _Thread_local pe_video *tls_watch;
static int g_log_print;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void av_log_capture(void *avcl, int level, const char *fmt, va_list vl) {
    if (g_log_print) {
        va_list c;
        va_copy(c, vl);
        av_log_default_callback(avcl, level, fmt, c);
        va_end(c);
    }
    if (level > AV_LOG_WARNING) return;
    char line[sizeof tls_avmsg];
    int n = vsnprintf(line, sizeof line, fmt, vl);
    if (n <= 0) return;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == ' ')) line[--len] = 0;
    if (!len) return;
    const char *who = "";
    if (avcl) {
        const AVClass *cls = *(const AVClass *const *)avcl;
        if (cls && cls->item_name) who = cls->item_name(avcl);
    }
    snprintf(tls_avmsg, sizeof tls_avmsg, "%s%s%s", who, *who ? ": " : "", line);
    if (avcl && tls_watch && avcl == (void *)tls_watch->dec && level <= AV_LOG_ERROR) {
        tls_watch->dec_errors++;
        snprintf(tls_watch->dec_msg, sizeof tls_watch->dec_msg, "%s", tls_avmsg);
    }
}

static void global_init(void) {
    const char *e = getenv("PERCEPT_FFMPEG_LOG");
    g_log_print = e && *e && strcmp(e, "0") != 0;
    av_log_set_callback(av_log_capture);
}

void pe_video_ffmpeg_init(void) { pthread_once(&g_once, global_init); }

/* Error for v's input, quoting FFmpeg's last message when there is one. */
int pe_video_fail(const pe_video *v, int code, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (v->io_errno && (code == PERR_FORMAT || code == PERR_DECODE))
        return perr_set(PERR_IO, "%s: %s: read error: %s", v->label, what, strerror(v->io_errno));
    if (tls_avmsg[0])
        return perr_set(code, "%s: %s (ffmpeg: %s)", v->label, what, tls_avmsg);
    return perr_set(code, "%s: %s", v->label, what);
}

static int av_to_perr(int r) {
    switch (r) {
    case AVERROR(ENOMEM): return PERR_NOMEM;
    case AVERROR_EXIT: return PERR_TOO_LARGE;           /* our deadline */
    case AVERROR_DECODER_NOT_FOUND:
    case AVERROR_DEMUXER_NOT_FOUND:
    case AVERROR_PATCHWELCOME: return PERR_UNSUPPORTED;
    case AVERROR_INVALIDDATA:
    case AVERROR_EOF:
    case AVERROR(EIO): return PERR_FORMAT; /* demuxers say EIO for short data;
                                             our real read errors are kept apart */
    default: return PERR_DECODE;
    }
}

static const char *av_err(int r, char *buf, size_t n) {
    av_strerror(r, buf, n);
    return buf;
}

/* ---- limits and input ---------------------------------------------------- */

void pe_video_limits_default(pe_video_limits *l) {
    l->max_frames_decoded = 2000;
    l->max_seconds_decoding = 60.0;
    l->max_pixels_per_frame = (int64_t)4096 * 4096;
    l->max_duration = 6 * 3600.0;
    l->max_file_bytes = (size_t)8 << 30;
    l->threads = 1;
}

static int io_read(void *opaque, uint8_t *buf, int size) {
    pe_video *v = opaque;
    if (v->pos >= v->size) return AVERROR_EOF;
    int64_t want = v->size - v->pos < size ? v->size - v->pos : size;
    if (v->mem) {
        memcpy(buf, v->mem + v->pos, (size_t)want);
        v->pos += want;
        return (int)want;
    }
    ssize_t r;
    do r = pread(v->fd, buf, (size_t)want, v->pos);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        v->io_errno = errno;
        return AVERROR(errno);
    }
    if (r == 0) return AVERROR_EOF; /* shrank under us */
    v->pos += r;
    return (int)r;
}

static int64_t io_seek(void *opaque, int64_t off, int whence) {
    pe_video *v = opaque;
    if (whence & AVSEEK_SIZE) return v->size;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = v->pos; break;
    case SEEK_END: base = v->size; break;
    default: return AVERROR(EINVAL);
    }
    if (off > INT64_MAX - base || base + off < 0) return AVERROR(EINVAL);
    v->pos = base + off;
    return v->pos;
}

static int interrupt_cb(void *opaque) {
    const pe_video *v = opaque;
    return av_gettime_relative() > v->deadline_us;
}

/* No demuxer may open anything beside our input (mov drefs, playlists). */
static int io_open_refuse(AVFormatContext *s, AVIOContext **pb, const char *url,
                          int flags, AVDictionary **opts) {
    av_log(s, AV_LOG_ERROR, "refused to open a reference to '%.64s'\n", url);
    return AVERROR(EPERM);
}

/* Reads up to n bytes at offset 0 without disturbing FFmpeg's position. */
static size_t peek_head(pe_video *v, uint8_t *buf, size_t n) {
    if ((int64_t)n > v->size) n = (size_t)v->size;
    if (v->mem) {
        memcpy(buf, v->mem, n);
        return n;
    }
    ssize_t r;
    do r = pread(v->fd, buf, n, 0);
    while (r < 0 && errno == EINTR);
    return r < 0 ? 0 : (size_t)r;
}

/* ---- demuxer and decoder ----------------------------------------------- */

static int budget_fail(const pe_video *v);

/* 0 while within the wall-clock budget, else the error. */
static int time_left(const pe_video *v) {
    return av_gettime_relative() <= v->deadline_us ? 0 : budget_fail(v);
}

static int budget_fail(const pe_video *v) {
    return pe_video_fail(v, PERR_TOO_LARGE, "decoding took longer than max_seconds_decoding (%g s)",
                         v->lim.max_seconds_decoding);
}

static void demux_close(pe_video *v) {
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    v->st = NULL;
    v->vidx = -1;
}

static int allowed_format(const char *name) {
    for (int i = 0; k_formats[i]; i++)
        if (!strcmp(k_formats[i], name)) return 1;
    return 0;
}

static int allowed_codec(enum AVCodecID id) {
    for (int i = 0; k_codecs[i] != AV_CODEC_ID_NONE; i++)
        if (k_codecs[i] == id) return 1;
    return 0;
}

/* Opens the demuxer on v->pb (rewound to 0) and the decoder of the video
 * stream. First open (v->vidx_want < 0) also chooses the stream. */
static int demux_open(pe_video *v) {
    char eb[128];
    int r;
    if (avio_seek(v->pb, 0, SEEK_SET) < 0)
        return pe_video_fail(v, PERR_IO, "cannot rewind the input");

    const AVInputFormat *ifmt = NULL;
    r = av_probe_input_buffer2(v->pb, &ifmt, v->label, NULL, 0, PROBE_BYTES);
    if (r < 0 || !ifmt)
        return pe_video_fail(v, PERR_FORMAT, "not a recognised video container");
    const char *fname = ifmt->name;
    size_t fl = strlen(fname);
    if (!strcmp(fname, "png_pipe")) {
        /* FFmpeg 5.1's APNG probe gives up on any chunk before acTL that is
         * longer than its first probe window (a 2.6 kB iCCP profile is
         * enough), and on a chunk cut short: check the chunks ourselves. */
        pe_video_check_truncated(v, "apng");
        if (v->info.truncated) return pe_video_fail(v, PERR_FORMAT, "truncated PNG (%s)", v->info.truncated_why);
        if (pe_video_png_is_animated(v)) {
            ifmt = av_find_input_format("apng");
            if (!ifmt) return pe_video_fail(v, PERR_UNSUPPORTED, "no APNG demuxer in this FFmpeg");
            fname = ifmt->name;
            fl = strlen(fname);
        }
    }
    if (fl > 5 && !strcmp(fname + fl - 5, "_pipe"))
        return pe_video_fail(v, PERR_UNSUPPORTED, "is a still image (%.*s), not a video",
                             (int)(fl - 5), fname);
    if (!allowed_format(fname))
        return pe_video_fail(v, PERR_UNSUPPORTED, "container '%s' is not accepted as video", fname);

    v->fmt = avformat_alloc_context();
    if (!v->fmt) return perr_set(PERR_NOMEM, "%s: avformat_alloc_context", v->label);
    v->fmt->pb = v->pb;
    v->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    v->fmt->interrupt_callback.callback = interrupt_cb;
    v->fmt->interrupt_callback.opaque = v;
    v->fmt->io_open = io_open_refuse;
    v->fmt->opaque = v;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "probesize", "5000000", 0);
    av_dict_set(&opts, "analyzeduration", "5000000", 0);
    av_dict_set(&opts, "max_streams", "64", 0);
    av_dict_set(&opts, "protocol_whitelist", "none", 0);
    r = avformat_open_input(&v->fmt, v->label, ifmt, &opts);
    av_dict_free(&opts);
    if (r < 0) { /* avformat_open_input freed v->fmt */
        if (r == AVERROR_EXIT) return budget_fail(v);
        return pe_video_fail(v, av_to_perr(r), "cannot open %s container: %s", fname,
                             av_err(r, eb, sizeof eb));
    }

    /* The video stream: attached pictures (cover art of audio files) are
     * not video. */
    /* Demuxers that make their streams from the first packets (FLV) have
     * none yet: read them now. */
    int have_info = 0;
    if (v->fmt->nb_streams == 0 && (v->fmt->ctx_flags & AVFMTCTX_NOHEADER)) {
        r = avformat_find_stream_info(v->fmt, NULL);
        if (r < 0) {
            if (r == AVERROR_EXIT) return budget_fail(v);
            return pe_video_fail(v, av_to_perr(r), "cannot read stream parameters: %s",
                                 av_err(r, eb, sizeof eb));
        }
        have_info = 1;
    }
    int vidx = v->vidx_want;
    if (vidx < 0) {
        int best = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
        if (best >= 0 && !(v->fmt->streams[best]->disposition & AV_DISPOSITION_ATTACHED_PIC))
            vidx = best;
        for (unsigned i = 0; vidx < 0 && i < v->fmt->nb_streams; i++) {
            const AVStream *s = v->fmt->streams[i];
            if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
                !(s->disposition & AV_DISPOSITION_ATTACHED_PIC))
                vidx = (int)i;
        }
        if (vidx < 0 && v->fmt->nb_streams == 0)
            return pe_video_fail(v, PERR_FORMAT, "no streams (truncated or corrupt header)");
        if (vidx < 0) {
            int audio = 0;
            for (unsigned i = 0; i < v->fmt->nb_streams; i++)
                audio |= v->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO;
            return pe_video_fail(v, PERR_UNSUPPORTED, "no video stream%s",
                                 audio ? " (audio only)" : "");
        }
    } else if ((unsigned)vidx >= v->fmt->nb_streams) {
        return pe_video_fail(v, PERR_FORMAT, "stream %d vanished on reopen", vidx);
    }
    for (unsigned i = 0; i < v->fmt->nb_streams; i++)
        v->fmt->streams[i]->discard = (int)i == vidx ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    v->vidx = vidx;
    v->st = v->fmt->streams[vidx];

    enum AVCodecID cid = v->st->codecpar->codec_id;
    if (!allowed_codec(cid))
        return pe_video_fail(v, PERR_UNSUPPORTED, "video codec '%s' is not accepted",
                             avcodec_get_name(cid));
    /* Sizes from the header are checked before any frame is decoded; the
     * decoder's max_pixels checks every later frame. */
    int64_t px = (int64_t)v->st->codecpar->width * v->st->codecpar->height;
    if (px > v->lim.max_pixels_per_frame)
        return pe_video_fail(v, PERR_TOO_LARGE, "frame size %dx%d exceeds max_pixels_per_frame %lld",
                             v->st->codecpar->width, v->st->codecpar->height,
                             (long long)v->lim.max_pixels_per_frame);

    r = have_info ? 0 : avformat_find_stream_info(v->fmt, NULL);
    if (r < 0) {
        if (r == AVERROR_EXIT) return budget_fail(v);
        return pe_video_fail(v, av_to_perr(r), "cannot read stream parameters: %s",
                             av_err(r, eb, sizeof eb));
    }
    px = (int64_t)v->st->codecpar->width * v->st->codecpar->height;
    if (px > v->lim.max_pixels_per_frame)
        return pe_video_fail(v, PERR_TOO_LARGE, "frame size %dx%d exceeds max_pixels_per_frame %lld",
                             v->st->codecpar->width, v->st->codecpar->height,
                             (long long)v->lim.max_pixels_per_frame);

    const AVCodec *codec = avcodec_find_decoder(cid);
    if (!codec)
        return pe_video_fail(v, PERR_UNSUPPORTED, "no decoder for video codec '%s'",
                             avcodec_get_name(cid));
    v->dec = avcodec_alloc_context3(codec);
    if (!v->dec) return perr_set(PERR_NOMEM, "%s: avcodec_alloc_context3", v->label);
    r = avcodec_parameters_to_context(v->dec, v->st->codecpar);
    if (r < 0) return pe_video_fail(v, av_to_perr(r), "bad codec parameters");
    v->dec->pkt_timebase = v->st->time_base;
    v->dec->thread_count = v->lim.threads > 0 ? v->lim.threads : 1;
    v->dec->max_pixels = v->lim.max_pixels_per_frame;
    v->dec->opaque = v;
    r = avcodec_open2(v->dec, codec, NULL);
    if (r < 0)
        return pe_video_fail(v, av_to_perr(r), "cannot open %s decoder: %s", codec->name,
                             av_err(r, eb, sizeof eb));
    v->dec_eof = v->demux_eof = v->flush_sent = 0;
    return PERR_OK;
}

/* ---- frames ------------------------------------------------------------- */

static double ts_seconds(const pe_video *v, int64_t ts) {
    return (double)(ts - v->origin_ts) * av_q2d(v->st->time_base);
}

static int64_t seconds_ts(const pe_video *v, double t) {
    double q = av_q2d(v->st->time_base);
    double ts = t / q;
    if (ts > 9e18) ts = 9e18;
    return v->origin_ts + (int64_t)floor(ts + 0.5);
}

static double frame_time(pe_video *v, const AVFrame *f) {
    int64_t ts = f->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE) ts = f->pts;
    double t = ts == AV_NOPTS_VALUE ? v->last_frame_t + v->frame_dur : ts_seconds(v, ts);
    v->last_frame_t = t;
    return t;
}

/* Decodes the next frame into f: 1 frame, 0 end of stream, < 0 error.
 * v->frame_corrupt says whether f is corrupt: flagged by the decoder, or
 * the decoder logged an error since the previous frame (with one decoder
 * thread, the engine's setting, every message comes through this thread). */
static int next_frame_watched(pe_video *v, AVFrame *f);

static int next_frame(pe_video *v, AVFrame *f) {
    tls_watch = v;
    int r = next_frame_watched(v, f);
    tls_watch = NULL;
    return r;
}

static int next_frame_watched(pe_video *v, AVFrame *f) {
    char eb[128];
    for (;;) {
        int rc = time_left(v);
        if (rc) return rc;
        int r = avcodec_receive_frame(v->dec, f);
        if (r == 0) {
            if (++v->info.frames_decoded > v->lim.max_frames_decoded)
                return pe_video_fail(v, PERR_TOO_LARGE, "decoded more than max_frames_decoded (%d) frames",
                                     v->lim.max_frames_decoded);
            v->frame_corrupt = (f->flags & AV_FRAME_FLAG_CORRUPT) || f->decode_error_flags ||
                               v->dec_errors != v->dec_errors_seen;
            if (v->frame_corrupt) {
                v->info.frames_corrupt++;
                snprintf(v->corrupt_msg, sizeof v->corrupt_msg, "%s",
                         v->dec_errors != v->dec_errors_seen ? v->dec_msg : "flagged corrupt by the decoder");
            }
            v->dec_errors_seen = v->dec_errors;
            return 1;
        }
        if (r == AVERROR_EOF) {
            v->dec_eof = 1;
            return 0;
        }
        if (r != AVERROR(EAGAIN)) {
            if (r == AVERROR(ENOMEM)) return perr_set(PERR_NOMEM, "%s: decoding", v->label);
            if (++v->decode_errors > MAX_DECODE_ERRORS)
                return pe_video_fail(v, PERR_DECODE, "too many corrupt frames: %s",
                                     av_err(r, eb, sizeof eb));
            continue;
        }
        if (v->demux_eof) {
            if (v->flush_sent) { /* a decoder that never says EOF */
                v->dec_eof = 1;
                return 0;
            }
            avcodec_send_packet(v->dec, NULL);
            v->flush_sent = 1;
            continue;
        }
        r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r == AVERROR_EXIT) return budget_fail(v);
            if (r == AVERROR(ENOMEM)) return perr_set(PERR_NOMEM, "%s: demuxing", v->label);
            /* EOF, or a truncated or corrupt tail: what decoded so far stands. */
            if (r != AVERROR_EOF) v->read_error = r;
            v->demux_eof = 1;
            continue;
        }
        if (v->pkt->stream_index != v->vidx) {
            av_packet_unref(v->pkt);
            continue;
        }
        if (++v->packets_sent > 2 * (int64_t)v->lim.max_frames_decoded + 256) {
            av_packet_unref(v->pkt);
            return pe_video_fail(v, PERR_TOO_LARGE, "read more than %lld video packets",
                                 (long long)v->packets_sent - 1);
        }
        r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) {
            if (r == AVERROR(ENOMEM)) return perr_set(PERR_NOMEM, "%s: decoding", v->label);
            if (++v->decode_errors > MAX_DECODE_ERRORS)
                return pe_video_fail(v, PERR_DECODE, "too many corrupt packets: %s",
                                     av_err(r, eb, sizeof eb));
        }
    }
}

static void drop_frames(pe_video *v) {
    av_frame_unref(v->prev);
    av_frame_unref(v->pending);
    v->have_prev = v->have_pending = 0;
}

/* Keyframe seek to at or before t; the decoder restarts there. */
static int seek_to(pe_video *v, double t) {
    int r = av_seek_frame(v->fmt, v->vidx, seconds_ts(v, t), AVSEEK_FLAG_BACKWARD);
    if (r < 0) {
        v->seekable = 0;
        return r;
    }
    avcodec_flush_buffers(v->dec);
    drop_frames(v);
    v->dec_eof = v->demux_eof = v->flush_sent = 0;
    v->floor_t = t;
    v->seeks++;
    return 0;
}

/* Back to the first frame: a seek where the container allows, else the
 * demuxer and decoder are opened again on the same input. */
static int rewind_start(pe_video *v) {
    if (v->seekable && seek_to(v, 0) == 0) {
        v->floor_t = -INFINITY;
        return PERR_OK;
    }
    demux_close(v);
    drop_frames(v);
    int rc = demux_open(v);
    if (rc) return perr_prefix(rc, "reopening");
    v->floor_t = -INFINITY;
    v->reopens++;
    return PERR_OK;
}

/* Decodes until pending holds the first frame after t (or the stream
 * ended); prev then holds the frame shown at t, if any. */
static int decode_until(pe_video *v, double t) {
    for (;;) {
        if (v->have_pending) {
            if (v->pending_t > t + TIME_EPS) return PERR_OK;
            av_frame_unref(v->prev);
            av_frame_move_ref(v->prev, v->pending);
            v->prev_t = v->pending_t;
            v->prev_corrupt = v->pending_corrupt;
            v->have_prev = 1;
            v->have_pending = 0;
        }
        if (v->dec_eof) return PERR_OK;
        int r = next_frame(v, v->pending);
        if (r < 0) return r;
        if (r == 0) return PERR_OK;
        v->pending_t = frame_time(v, v->pending);
        v->pending_corrupt = v->frame_corrupt;
        v->have_pending = 1;
    }
}

/* Time of the last keyframe at or before t from the demuxer's index, or
 * NAN when there is no index. */
static double keyframe_before(pe_video *v, double t) {
    if (avformat_index_get_entries_count(v->st) <= 0) return NAN;
    int i = av_index_search_timestamp(v->st, seconds_ts(v, t), AVSEEK_FLAG_BACKWARD);
    if (i < 0) return NAN;
    const AVIndexEntry *e = avformat_index_get_entry(v->st, i);
    return e ? ts_seconds(v, e->timestamp) : NAN;
}

static int need_seek(pe_video *v, double t) {
    if (v->have_prev && t + TIME_EPS < v->prev_t) return 1; /* behind us */
    if (!v->have_prev) {
        if (!v->have_pending) return !v->dec_eof || v->floor_t > t;
        /* Only a frame after t: seeking helps if we started after t. */
        if (t + TIME_EPS < v->pending_t) return v->floor_t > t + TIME_EPS;
    }
    double pos = v->have_pending ? v->pending_t : v->prev_t;
    if (t <= pos || v->dec_eof || !v->seekable) return 0;
    double kf = keyframe_before(v, t);
    if (!isnan(kf)) return kf > pos + TIME_EPS;
    return t - pos > SEEK_GAP_NO_INDEX;
}

/* Brings prev/pending to target t (see decode_until). */
static int advance_to(pe_video *v, double t) {
    int rc;
    if (need_seek(v, t)) {
        int back = v->have_prev ? t < v->prev_t : (v->have_pending && t < v->pending_t);
        if (!v->seekable || seek_to(v, t) < 0) {
            if (back || (!v->have_prev && !v->have_pending)) {
                if ((rc = rewind_start(v))) return rc;
            }
        }
    }
    if ((rc = decode_until(v, t))) return rc;
    if (v->have_prev || v->have_pending) return PERR_OK;
    /* The seek yielded nothing (a lying index or a truncated tail): run
     * sequentially from the start, within the budget. */
    v->fallbacks++;
    if ((rc = rewind_start(v))) return rc;
    if ((rc = decode_until(v, t))) return rc;
    if (v->have_prev || v->have_pending) return PERR_OK;
    return pe_video_fail(v, PERR_DECODE, "no frame could be decoded near t=%.3f s", t);
}

/* ---- RGB conversion ------------------------------------------------------ */

static int grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    uint8_t *p = realloc(*buf, need);
    if (!p) return -1;
    *buf = p;
    *cap = need;
    return 0;
}

/* Rotates a w x h RGB image clockwise by rot degrees into dst. */
void pe_video_rotate_rgb(const uint8_t *src, int w, int h, size_t sstride, int rot,
                         uint8_t *dst) {
    int dw = rot % 180 ? h : w, dh = rot % 180 ? w : h;
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src + (size_t)y * sstride;
        for (int x = 0; x < w; x++, s += 3) {
            int dx, dy;
            switch (rot) {
            case 90: dx = h - 1 - y; dy = x; break;
            case 180: dx = w - 1 - x; dy = h - 1 - y; break;
            case 270: dx = y; dy = w - 1 - x; break;
            default: dx = x; dy = y; break;
            }
            uint8_t *d = dst + ((size_t)dy * dw + dx) * 3;
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
    (void)dh;
}

/* Displayed size of a w x h frame: pixel aspect and rotation applied,
 * then scaled so the longest side is at most max_side. */
void pe_video_display_size(int w, int h, AVRational sar, int rot, int max_side,
                           int *ow, int *oh) {
    double dw = w, dh = h;
    if (sar.num > 0 && sar.den > 0 && sar.num != sar.den) {
        double a = (double)sar.num / sar.den;
        if (a > 0.1 && a < 10) dw = w * a;
    }
    if (rot % 180) {
        double t = dw;
        dw = dh;
        dh = t;
    }
    double longest = dw > dh ? dw : dh;
    double s = max_side > 0 && longest > max_side ? max_side / longest : 1.0;
    *ow = (int)lround(dw * s);
    *oh = (int)lround(dh * s);
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

static int is_full_range(const AVFrame *f) {
    switch (f->format) {
    case AV_PIX_FMT_YUVJ420P: case AV_PIX_FMT_YUVJ422P: case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P: case AV_PIX_FMT_YUVJ411P: return 1;
    default: return f->color_range == AVCOL_RANGE_JPEG;
    }
}

static int deliver(pe_video *v, const AVFrame *f, double t, int index, int max_side,
                   pe_frame_fn fn, void *user) {
    AVRational sar = f->sample_aspect_ratio.num ? f->sample_aspect_ratio
                                                : v->st->codecpar->sample_aspect_ratio;
    int ow, oh;
    pe_video_display_size(f->width, f->height, sar, v->info.rotation, max_side, &ow, &oh);
    int rot = v->info.rotation;
    int sw = rot % 180 ? oh : ow, sh = rot % 180 ? ow : oh; /* scaler output */
    v->sws = sws_getCachedContext(v->sws, f->width, f->height, f->format, sw, sh,
                                  AV_PIX_FMT_RGB24,
                                  SWS_AREA | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL,
                                  NULL);
    if (!v->sws)
        return pe_video_fail(v, PERR_UNSUPPORTED, "cannot convert %s %dx%d frames to RGB",
                             av_get_pix_fmt_name(f->format) ? av_get_pix_fmt_name(f->format) : "?",
                             f->width, f->height);
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    if (d && !(d->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL))) {
        int cs = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : (int)f->colorspace;
        sws_setColorspaceDetails(v->sws, sws_getCoefficients(cs), is_full_range(f),
                                 sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    }
    size_t stride = (size_t)sw * 3;
    if (grow(&v->rgb, &v->rgb_cap, stride * sh + 64))
        return perr_set(PERR_NOMEM, "%s: RGB buffer %dx%d", v->label, sw, sh);
    uint8_t *dst[4] = {v->rgb, NULL, NULL, NULL};
    int dst_stride[4] = {(int)stride, 0, 0, 0};
    int r = sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst,
                      dst_stride);
    if (r <= 0) return pe_video_fail(v, PERR_DECODE, "scaling failed");
    const uint8_t *out = v->rgb;
    size_t out_stride = stride;
    if (rot) {
        if (grow(&v->rot, &v->rot_cap, (size_t)ow * oh * 3))
            return perr_set(PERR_NOMEM, "%s: RGB buffer %dx%d", v->label, ow, oh);
        pe_video_rotate_rgb(v->rgb, sw, sh, stride, rot, v->rot);
        out = v->rot;
        out_stride = (size_t)ow * 3;
    }
    return fn(user, index, t, out, ow, oh, out_stride);
}

/* ---- probing: what the stream delivers ------------------------------- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median gap between sorted distinct timestamps; 0 if fewer than two. */
static int64_t median_gap(int64_t *ts, size_t n) {
    if (n < 2) return 0;
    qsort(ts, n, sizeof *ts, cmp_i64);
    size_t m = 0;
    for (size_t i = 1; i < n; i++)
        if (ts[i] > ts[i - 1]) ts[m++] = ts[i] - ts[i - 1];
    if (!m) return 0;
    qsort(ts, m, sizeof *ts, cmp_i64);
    return ts[m / 2];
}

/* Last frame and typical frame gap from a complete index (mov and avi
 * list every frame; their timestamps are decoding times): entries whose
 * bytes lie past the end of the input are a truncation. Returns 1 if
 * measured, 0 if there is no such index. */
static int measure_from_index(pe_video *v, int64_t *last, int64_t *gap) {
    const char *n = v->fmt->iformat->name;
    if (strcmp(n, "mov,mp4,m4a,3gp,3g2,mj2") && strcmp(n, "avi")) return 0;
    int cnt = avformat_index_get_entries_count(v->st);
    if (cnt <= 0) return 0;
    int64_t *ts = malloc(sizeof *ts * (size_t)cnt);
    if (!ts) return perr_set(PERR_NOMEM, "%s: index of %d entries", v->label, cnt);
    size_t m = 0;
    int64_t mx = INT64_MIN;
    for (int i = 0; i < cnt; i++) {
        const AVIndexEntry *e = avformat_index_get_entry(v->st, i);
        if (!e || (e->flags & AVINDEX_DISCARD_FRAME)) continue;
        if (e->pos < 0 || e->pos + e->size > v->size) {
            if (!v->info.truncated)
                snprintf(v->info.truncated_why, sizeof v->info.truncated_why,
                         "its index lists a frame at byte %lld, past the end of the data (%lld bytes)",
                         (long long)e->pos, (long long)v->size);
            v->info.truncated = 1;
            continue;
        }
        ts[m++] = e->timestamp;
        if (e->timestamp > mx) mx = e->timestamp;
    }
    if (m == 0) {
        free(ts);
        return pe_video_fail(v, v->info.truncated ? PERR_FORMAT : PERR_DECODE,
                             v->info.truncated ? "truncated before the first video frame"
                                               : "video stream has no frames");
    }
    *last = mx;
    *gap = median_gap(ts, m);
    free(ts);
    return 1;
}

/* Demuxes (no decoding) from the current position to the end, bounded:
 * the largest timestamp and the typical gap. Returns 1 if the end was
 * reached, 0 if the bound was hit first, < 0 on error. */
static int scan_packets(pe_video *v, int64_t *last, int64_t *gap, int64_t *count) {
    int64_t cap = 16 * (int64_t)v->lim.max_frames_decoded + 256;
    int64_t *ts = malloc(sizeof *ts * (size_t)(cap < 4096 ? cap : 4096));
    size_t n = 0, ncap = cap < 4096 ? (size_t)cap : 4096;
    if (!ts) return perr_set(PERR_NOMEM, "%s: scanning", v->label);
    int64_t mx = INT64_MIN, seen = 0;
    int done = 0, rc = 0;
    while (seen < cap) {
        if ((rc = time_left(v))) break;
        int r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r == AVERROR_EXIT) { rc = budget_fail(v); break; }
            if (r == AVERROR(ENOMEM)) { rc = perr_set(PERR_NOMEM, "%s: demuxing", v->label); break; }
            done = 1; /* EOF or a corrupt tail: the end of what is delivered */
            break;
        }
        if (v->pkt->stream_index == v->vidx) {
            int64_t t = v->pkt->pts != AV_NOPTS_VALUE ? v->pkt->pts : v->pkt->dts;
            seen++;
            if (t != AV_NOPTS_VALUE) {
                if (t > mx) mx = t;
                if (n == ncap) { /* keep the latest window for the gap */
                    memmove(ts, ts + ncap / 2, sizeof *ts * (ncap - ncap / 2));
                    n = ncap - ncap / 2;
                }
                ts[n++] = t;
            }
        }
        av_packet_unref(v->pkt);
    }
    if (!rc) {
        *last = mx;
        *gap = median_gap(ts, n);
        *count = seen;
    }
    free(ts);
    return rc ? rc : done;
}

/* Sets origin, info.duration, frame_dur and last_t from what the stream
 * delivers, then leaves the demuxer at the start. */
static int measure(pe_video *v) {
    AVStream *st = v->st;
    double tb = av_q2d(st->time_base);
    v->origin_ts = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;

    /* The stream's claim; the container's (which may be any stream's)
     * is reported when larger. */
    double claimed = 0;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0) claimed = st->duration * tb;
    else if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0)
        claimed = v->fmt->duration / (double)AV_TIME_BASE;
    v->info.container_duration = claimed;
    if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration / (double)AV_TIME_BASE > claimed)
        v->info.container_duration = v->fmt->duration / (double)AV_TIME_BASE;

    /* The index (decoding times) bounds the data and gives the frame gap;
     * the packets from the last keyframe to the end give presentation
     * times. Without an index, seek near the claimed end (or past
     * anything) and read to EOF; where seeking fails, read from the start. */
    int64_t last = INT64_MIN, gap = 0, count = 0, idx_last = INT64_MIN, idx_gap = 0;
    int rc = measure_from_index(v, &idx_last, &idx_gap);
    if (rc < 0) return rc;
    int have_index = rc == 1;
    int scanned = 0;
    if (v->seekable) {
        int64_t target = have_index ? idx_last : claimed > 0 ? seconds_ts(v, claimed) : INT64_MAX / 2;
        if (av_seek_frame(v->fmt, v->vidx, target, AVSEEK_FLAG_BACKWARD) >= 0) {
            rc = scan_packets(v, &last, &gap, &count);
            if (rc < 0) return rc;
            scanned = count > 0;
        }
    }
    if (!scanned) {
        if ((rc = rewind_start(v))) return rc;
        rc = scan_packets(v, &last, &gap, &count);
        if (rc < 0) return rc;
        if (rc == 0 && claimed > 0 && seconds_ts(v, claimed) > last)
            last = INT64_MIN; /* bound hit: the claim stands */
    }
    if ((rc = rewind_start(v))) return rc;
    st = v->st; /* a rewind may have reopened the demuxer */
    if (have_index) {
        if (idx_gap > 0) gap = idx_gap;
        if (last == INT64_MIN) last = idx_last;
    }

    double fr = 0;
    if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0) fr = av_q2d(st->avg_frame_rate);
    double rfr = st->r_frame_rate.num > 0 && st->r_frame_rate.den > 0 ? av_q2d(st->r_frame_rate) : 0;
    double g = gap > 0 ? gap * tb : 0;
    if (g > 0) {
        /* Prefer the container's exact rational when it agrees. */
        if (fr > 0 && fabs(1 / fr - g) < 0.25 * g) v->info.fps = fr;
        else if (rfr > 0 && fabs(1 / rfr - g) < 0.25 * g) v->info.fps = rfr;
        else v->info.fps = 1 / g;
    } else {
        v->info.fps = rfr > 0 && rfr < 1000 ? rfr : (fr > 0 && fr < 1000 ? fr : 0);
    }
    v->frame_dur = g > 0 ? g : (v->info.fps > 0 ? 1 / v->info.fps : 0);

    if (last != INT64_MIN) {
        double lt = ts_seconds(v, last);
        if (lt < 0) lt = 0;
        v->last_t = lt;
        double d = lt + v->frame_dur;
        /* A claim within one frame of the delivered end is more exact. */
        if (claimed > lt && claimed <= d + 1e-6) d = claimed;
        v->info.duration = d;
    } else {
        v->info.duration = claimed;
        v->last_t = claimed > v->frame_dur ? claimed - v->frame_dur : claimed;
    }
    if (v->info.duration > v->lim.max_duration)
        return pe_video_fail(v, PERR_TOO_LARGE, "duration %.0f s exceeds max_duration %.0f s",
                             v->info.duration, v->lim.max_duration);
    return PERR_OK;
}

static int display_rotation(const AVStream *st) {
    size_t sz = 0;
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &sz);
    if (!m || sz < 9 * sizeof(int32_t)) return 0;
    double a = av_display_rotation_get((const int32_t *)m); /* counterclockwise */
    if (isnan(a)) return 0;
    long r = lround(-a / 90.0) * 90; /* clockwise, to a quarter turn */
    r %= 360;
    if (r < 0) r += 360;
    return (int)r;
}

static void name_container(pe_video *v, const uint8_t *head, size_t n) {
    const char *f = v->fmt->iformat->name;
    const char *name = f;
    if (!strcmp(f, "mov,mp4,m4a,3gp,3g2,mj2")) {
        const AVDictionaryEntry *e = av_dict_get(v->fmt->metadata, "major_brand", NULL, 0);
        name = e && !strncmp(e->value, "qt", 2) ? "mov" : "mp4";
    } else if (!strcmp(f, "matroska,webm")) {
        name = memmem(head, n, "webm", 4) ? "webm" : "matroska";
    }
    snprintf(v->info.container, sizeof v->info.container, "%s", name);
}

/* ---- open / close ------------------------------------------------------ */

static int open_common(pe_video *v) {
    uint8_t head[64];
    size_t hn = peek_head(v, head, sizeof head);
    if (pe_video_is_webp(head, hn)) {
        int rc = pe_video_webp_open(v);
        if (rc == PERR_OK) pe_video_check_truncated(v, "webp");
        return rc;
    }

    unsigned char *iobuf = av_malloc(IO_BUF_SIZE);
    if (!iobuf) return perr_set(PERR_NOMEM, "%s: I/O buffer", v->label);
    v->pb = avio_alloc_context(iobuf, IO_BUF_SIZE, 0, v, io_read, NULL, io_seek);
    if (!v->pb) {
        av_free(iobuf);
        return perr_set(PERR_NOMEM, "%s: AVIOContext", v->label);
    }
    v->pkt = av_packet_alloc();
    v->prev = av_frame_alloc();
    v->pending = av_frame_alloc();
    if (!v->pkt || !v->prev || !v->pending) return perr_set(PERR_NOMEM, "%s: frames", v->label);

    int rc = demux_open(v);
    if (rc) return rc;
    v->vidx_want = v->vidx;
    v->seekable = 1; /* until a seek fails */
    snprintf(v->info.codec, sizeof v->info.codec, "%s", avcodec_get_name(v->st->codecpar->codec_id));
    name_container(v, head, hn);
    v->info.rotation = display_rotation(v->st);
    pe_video_check_truncated(v, v->fmt->iformat->name);

    if ((rc = measure(v))) return rc;

    /* The first frame proves the stream decodes; it stays pending. */
    v->floor_t = -INFINITY;
    if ((rc = decode_until(v, -INFINITY))) return rc;
    if (!v->have_pending)
        return pe_video_fail(v, v->read_error ? PERR_FORMAT : PERR_DECODE,
                             "no video frame could be decoded");
    if (v->pending_corrupt)
        return perr_set(PERR_DECODE, "%s: corrupt video: the first frame did not decode cleanly (ffmpeg: %s)",
                        v->label, v->corrupt_msg);
    AVRational sar = v->pending->sample_aspect_ratio.num ? v->pending->sample_aspect_ratio
                                                         : v->st->codecpar->sample_aspect_ratio;
    pe_video_display_size(v->pending->width, v->pending->height, sar, v->info.rotation, 0,
                          &v->info.width, &v->info.height);
    if (v->pending_t > v->last_t) v->last_t = v->pending_t;
    v->seeks = v->reopens = v->fallbacks = 0; /* count sampling only */
    return PERR_OK;
}

static pe_video *video_new(const char *label, const pe_video_limits *lim) {
    pe_video *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->fd = -1;
    v->vidx = v->vidx_want = -1;
    v->label = strdup(label);
    if (!v->label) {
        free(v);
        return NULL;
    }
    if (lim) v->lim = *lim;
    else pe_video_limits_default(&v->lim);
    if (v->lim.max_frames_decoded < 1) v->lim.max_frames_decoded = 1;
    double secs = v->lim.max_seconds_decoding > 0 ? v->lim.max_seconds_decoding : 1e9;
    v->deadline_us = av_gettime_relative() + (int64_t)(secs * 1e6);
    return v;
}

static int finish_open(pe_video *v, int rc, pe_video **out) {
    if (rc) {
        pe_video_close(v);
        return rc;
    }
    *out = v;
    return PERR_OK;
}

int pe_video_open(const char *path, const pe_video_limits *lim, pe_video **out) {
    *out = NULL;
    if (!path) return perr_set(PERR_INVALID, "pe_video_open: NULL path");
    pe_video_ffmpeg_init();
    tls_avmsg[0] = 0;
    pe_video *v = video_new(path, lim);
    if (!v) return perr_set(PERR_NOMEM, "%s: opening video", path);
    /* O_NONBLOCK: a FIFO named like a video must not block the open. */
    v->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (v->fd < 0) return finish_open(v, perr_errno(errno, "%s", path), out);
    struct stat sb;
    if (fstat(v->fd, &sb) != 0) return finish_open(v, perr_errno(errno, "%s: stat", path), out);
    if (S_ISDIR(sb.st_mode)) return finish_open(v, perr_set(PERR_INVALID, "%s: is a directory", path), out);
    if (!S_ISREG(sb.st_mode))
        return finish_open(v, perr_set(PERR_UNSUPPORTED, "%s: not a regular file", path), out);
    if (sb.st_size == 0) return finish_open(v, perr_set(PERR_FORMAT, "%s: empty file", path), out);
    if ((uint64_t)sb.st_size > v->lim.max_file_bytes)
        return finish_open(v, perr_set(PERR_TOO_LARGE, "%s: %lld bytes exceeds max_file_bytes %zu", path,
                                       (long long)sb.st_size, v->lim.max_file_bytes), out);
    v->size = sb.st_size;
    return finish_open(v, open_common(v), out);
}

int pe_video_open_buffer(const void *buf, size_t len, const char *label,
                         const pe_video_limits *lim, pe_video **out) {
    *out = NULL;
    if (!label) label = "<buffer>";
    if (!buf && len) return perr_set(PERR_INVALID, "%s: NULL buffer", label);
    pe_video_ffmpeg_init();
    tls_avmsg[0] = 0;
    pe_video *v = video_new(label, lim);
    if (!v) return perr_set(PERR_NOMEM, "%s: opening video", label);
    if (len == 0) return finish_open(v, perr_set(PERR_FORMAT, "%s: empty input", label), out);
    if (len > v->lim.max_file_bytes)
        return finish_open(v, perr_set(PERR_TOO_LARGE, "%s: %zu bytes exceeds max_file_bytes %zu", label,
                                       len, v->lim.max_file_bytes), out);
    if (len > INT64_MAX) return finish_open(v, perr_set(PERR_TOO_LARGE, "%s: too large", label), out);
    v->mem = buf;
    v->size = (int64_t)len;
    return finish_open(v, open_common(v), out);
}

const pe_video_info *pe_video_info_get(const pe_video *v) { return &v->info; }

void pe_video_close(pe_video *v) {
    if (!v) return;
    pe_video_webp_free(v);
    demux_close(v);
    if (v->pb) {
        av_freep(&v->pb->buffer);
        avio_context_free(&v->pb);
    }
    av_packet_free(&v->pkt);
    av_frame_free(&v->prev);
    av_frame_free(&v->pending);
    sws_freeContext(v->sws);
    free(v->rgb);
    free(v->rot);
    if (v->fd >= 0) close(v->fd);
    free(v->label);
    free(v);
}

/* ---- sampling ----------------------------------------------------------- */

/* qsort has no context argument. */
static _Thread_local const double *tls_sort_times;

static int cmp_by_time(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double x = tls_sort_times[i], y = tls_sort_times[j];
    if (x < y) return -1;
    if (x > y) return 1;
    return (i > j) - (i < j);
}

int pe_video_sample(pe_video *v, const double *times, int n, int max_side, pe_frame_fn fn,
                    void *user) {
    if (!v || !fn || n < 0 || (n > 0 && !times))
        return perr_set(PERR_INVALID, "pe_video_sample: bad arguments");
    for (int i = 0; i < n; i++)
        if (isnan(times[i])) return perr_set(PERR_INVALID, "%s: time %d is NaN", v->label, i);
    if (n == 0) return PERR_OK;
    if (!v->webp && (!v->fmt || !v->dec))
        return perr_set(PERR_INVALID, "%s: handle unusable after an earlier error", v->label);
    tls_avmsg[0] = 0;
    int *order = malloc(sizeof *order * (size_t)n);
    if (!order) return perr_set(PERR_NOMEM, "%s: sampling %d times", v->label, n);
    for (int i = 0; i < n; i++) order[i] = i;
    tls_sort_times = times;
    qsort(order, (size_t)n, sizeof *order, cmp_by_time);
    tls_sort_times = NULL;

    int rc = PERR_OK;
    for (int k = 0; k < n && !rc; k++) {
        int i = order[k];
        double t = times[i];
        if (v->webp) {
            rc = pe_video_webp_sample(v, t, i, max_side, fn, user);
            continue;
        }
        /* Past the last frame the last frame is shown; no decoding needed
         * beyond it, however long the container says it lasts. */
        if (t > v->last_t) t = v->last_t;
        if (t < 0) t = 0;
        if ((rc = advance_to(v, t))) break;
        const AVFrame *f = v->have_prev ? v->prev : v->pending;
        double ft = v->have_prev ? v->prev_t : v->pending_t;
        /* A corrupt frame (garbage or concealment filled) would give a
         * vector of garbage: refused, as a corrupt image is. */
        if (v->have_prev ? v->prev_corrupt : v->pending_corrupt) {
            rc = perr_set(PERR_DECODE, "%s: corrupt video: the frame at %.3f s did not decode cleanly (ffmpeg: %s)",
                          v->label, ft, v->corrupt_msg);
            break;
        }
        rc = deliver(v, f, ft, i, max_side, fn, user);
    }
    free(order);
    return rc;
}

/* ---- times and vectors ------------------------------------------------- */

int pe_video_uniform_times(const pe_video_info *info, int n, double *times) {
    if (!info || n < 0 || (n > 0 && !times))
        return perr_set(PERR_INVALID, "pe_video_uniform_times: bad arguments");
    double d = info->duration > 0 ? info->duration : 0;
    for (int i = 0; i < n; i++) times[i] = (i + 0.5) * d / n;
    return PERR_OK;
}

int pe_video_segment_times(const pe_video_info *info, double seconds, int frames_per_segment,
                           double *times, int max_times, int *n_segments) {
    if (!info || !(seconds > 0) || frames_per_segment < 1 || !n_segments)
        return perr_set(PERR_INVALID, "pe_video_segment_times: bad arguments");
    double d = info->duration > 0 ? info->duration : 0;
    double segs = d > 0 ? ceil(d / seconds - 1e-9) : 1;
    if (segs < 1) segs = 1;
    if (segs * frames_per_segment > INT32_MAX)
        return perr_set(PERR_TOO_LARGE, "%.0f segments of %g s is too many", segs, seconds);
    int ns = (int)segs;
    *n_segments = ns;
    if (!times) return PERR_OK;
    if ((int64_t)ns * frames_per_segment > max_times)
        return perr_set(PERR_TOO_LARGE, "%d segments x %d frames exceed %d times", ns,
                        frames_per_segment, max_times);
    for (int s = 0; s < ns; s++) {
        double a = s * seconds, b = (s + 1) * seconds;
        if (b > d) b = d;
        if (b < a) b = a;
        for (int j = 0; j < frames_per_segment; j++)
            times[s * frames_per_segment + j] = a + (j + 0.5) * (b - a) / frames_per_segment;
    }
    return PERR_OK;
}

void pe_video_vector(const float *frame_emb, int n, int d, float *out) {
    for (int j = 0; j < d; j++) out[j] = 0;
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
        const float *e = frame_emb + (size_t)i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)e[j] * e[j];
        float w = (float)(1.0 / (n * fmax(sqrt(ss), 1e-12)));
        for (int j = 0; j < d; j++) out[j] += e[j] * w;
    }
    double ss = 0;
    for (int j = 0; j < d; j++) ss += (double)out[j] * out[j];
    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
    for (int j = 0; j < d; j++) out[j] *= inv;
}

void pe_video_counters(const pe_video *v, int *seeks, int *reopens, int *fallbacks) {
    *seeks = v->seeks;
    *reopens = v->reopens;
    *fallbacks = v->fallbacks;
}
