/* pe_video: decoded RGB frames and metadata from video files, for the
 * encoder's video vectors (docs/video.md; spec ../shared/docs/pe-core.md
 * "Video").
 *
 * Decoding is FFmpeg 5.1 (libavformat/libavcodec/libswscale) behind a
 * custom AVIOContext (no URL protocols, no nested opens), a container and
 * codec allow-list, and per-video limits; animated WebP, which FFmpeg 5.1
 * cannot decode, goes through libvips behind the same API. Every bad file
 * gives a perr code and a message naming the file: PERR_FORMAT (empty,
 * garbage, truncated before any frame), PERR_UNSUPPORTED (image, audio-only,
 * codec or container not accepted), PERR_TOO_LARGE (a limit), PERR_DECODE
 * (no frame decodes), PERR_NOT_FOUND / PERR_IO (file system).
 *
 * Times are seconds from the first frame of the video stream. The duration
 * reported is what the stream delivers (last frame start + one frame), not
 * what the container claims: a header that claims 10 hours for 1 second of
 * frames, or a last frame that "lasts" 10 hours, gives about 1 second.
 *
 * Thread safety: a pe_video is used by one thread at a time; open one per
 * thread. Different handles are independent. FFmpeg's log output is
 * captured (never printed; PERCEPT_FFMPEG_LOG=1 prints it) and the last
 * message is appended to error messages.
 */
#ifndef PERCEPT_PE_VIDEO_H
#define PERCEPT_PE_VIDEO_H

#include <stddef.h>
#include <stdint.h>

typedef struct pe_video_limits {
    int max_frames_decoded;       /* frames decoded per video, open included (2000) */
    double max_seconds_decoding;  /* wall-clock budget per video from open (60 s) */
    int64_t max_pixels_per_frame; /* coded width x height (4096 x 4096) */
    double max_duration;          /* seconds of delivered video (6 h) */
    size_t max_file_bytes;        /* file or buffer size (8 GiB) */
    int threads;                  /* decoder threads (1: the engine sizes pools) */
} pe_video_limits;

void pe_video_limits_default(pe_video_limits *l);

typedef struct pe_video_info {
    double duration;           /* seconds the stream delivers (see above) */
    double container_duration; /* what the container claims; 0 if nothing */
    double fps;                /* nominal frame rate; 0 if unknown */
    int width, height;         /* displayed size: rotation and pixel aspect applied */
    char codec[32];            /* "h264", "vp9", "gif", "webp", ... */
    char container[32];        /* "mp4", "webm", "matroska", "mov", "gif", "webp", ... */
    int64_t frames_decoded;    /* so far, by this handle */
    int rotation;              /* clockwise degrees applied to frames: 0/90/180/270 */
    /* The data ends before the container says it does (an index entry, a
     * box, element, chunk, page or packet size past the end of the input;
     * see docs/video.md "Truncation"). The engine refuses such a video. */
    int truncated;
    char truncated_why[160];   /* what showed it, for messages ("" if not) */
    int64_t frames_corrupt;    /* decoded frames the decoder flagged or logged
                                  an error for; a sampled one fails sampling */
} pe_video_info;

typedef struct pe_video pe_video;

/* Opens and probes a file: checks size, container, video stream, codec and
 * limits, measures the delivered duration and decodes the first frame.
 * On failure *out is NULL and perr_msg() names the file and the problem. */
int pe_video_open(const char *path, const pe_video_limits *lim, pe_video **out);
/* The same on bytes in memory (uploads); buf must outlive the handle.
 * label names the input in messages (NULL: "<buffer>"). */
int pe_video_open_buffer(const void *buf, size_t len, const char *label,
                         const pe_video_limits *lim, pe_video **out);
const pe_video_info *pe_video_info_get(const pe_video *v);
void pe_video_close(pe_video *v);

/* Called once per requested time with the frame shown at that time (the
 * last frame starting at or before it; the first frame for times before
 * it; the last frame for times after the end). index is the position in
 * the caller's times[], t the frame's own timestamp. rgb is w x h 8-bit RGB,
 * rows stride bytes apart, valid during the call only. A non-zero return
 * stops sampling and is returned by pe_video_sample. */
typedef int (*pe_frame_fn)(void *user, int index, double t, const uint8_t *rgb,
                           int w, int h, size_t stride);

/* Decodes the frames shown at times[0..n): keyframe seek then decode
 * forward where the container allows, decoding on instead of seeking when
 * the target is before the next keyframe, sequential otherwise. Frames are
 * delivered in increasing time order (times need not be sorted), rotated
 * upright, scaled down so the longest side is at most max_side (aspect
 * kept, never enlarged; max_side <= 0: full size). Bounded by the limits:
 * exceeding one returns PERR_TOO_LARGE after the frames already delivered. */
int pe_video_sample(pe_video *v, const double *times, int n, int max_side,
                    pe_frame_fn fn, void *user);

/* n times uniformly over the duration: the centres of n equal parts
 * (t_i = (i + 0.5) * duration / n), the PE encode_video convention. */
int pe_video_uniform_times(const pe_video_info *info, int n, double *times);

/* Segments of `seconds` each (the last one shorter), frames_per_segment
 * times at the centres of equal parts of each. Writes the segment count to
 * *n_segments and n_segments * frames_per_segment times; fails with
 * PERR_TOO_LARGE if they do not fit in max_times. NULL times: count only. */
int pe_video_segment_times(const pe_video_info *info, double seconds,
                           int frames_per_segment, double *times, int max_times,
                           int *n_segments);

/* Video vector of pe-core.md: L2-normalize each of the n frame embeddings
 * (n x d, row-major), average, L2-normalize the average. out: d floats. */
void pe_video_vector(const float *frame_emb, int n, int d, float *out);

#endif
