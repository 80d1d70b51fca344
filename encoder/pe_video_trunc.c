/* pe_video_trunc: is a video's input cut short? (docs/video.md "Truncation")
 *
 * DESIGN. Demuxers read a truncated file up to where it ends and report
 * plain end of file: a WebM cut at half its bytes plays as a 6 s video
 * although its header says 12 s. Durations lie, so the claim alone cannot
 * tell a cut file from a lying one; sizes can: every accepted container
 * declares how long its top-level units are (MP4 boxes, EBML elements, RIFF
 * chunks, Ogg pages, FLV tags, IVF frames, MPEG pack and PES packets, PNG
 * chunks, ASF objects, GIF blocks up to the trailer, transport packets of a
 * fixed size). This walks those units over the input (headers only, read
 * through a 64 KiB window) and reports the first one that extends past the
 * end of the data, or a stream that ends without its terminator where the
 * format has one (GIF trailer, PNG IEND, Ogg end-of-stream page).
 *
 * Never: judge from what it does not understand. A unit it cannot parse
 * (a writer's padding, junk after the end) ends the walk with "not
 * truncated": the demuxer and decoder still judge the content; a unit of
 * unknown size (live Matroska, MP4 mdat to end of file) ends it too.
 * Bounded: at most PE_TRUNC_MAX_UNITS units per input.
 */
#define _GNU_SOURCE
#include "encoder/pe_video_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WIN (64 * 1024)
#define PE_TRUNC_MAX_UNITS 4000000

typedef struct rd {
    const pe_video *v;
    uint8_t *win;
    int64_t win_off;   /* offset of win[0] */
    size_t win_len;    /* valid bytes in win */
} rd;

/* Copies n bytes at off into out; 0 when all of them exist, -1 otherwise. */
static int get(rd *r, int64_t off, void *out, size_t n) {
    const pe_video *v = r->v;
    if (off < 0 || n > WIN || off > v->size - (int64_t)n) return -1;
    if (v->mem) { memcpy(out, v->mem + off, n); return 0; }
    if (off < r->win_off || off + (int64_t)n > r->win_off + (int64_t)r->win_len) {
        ssize_t got;
        do got = pread(v->fd, r->win, WIN, off);
        while (got < 0 && errno == EINTR);
        if (got < (ssize_t)n) return -1;
        r->win_off = off;
        r->win_len = (size_t)got;
    }
    memcpy(out, r->win + (off - r->win_off), n);
    return 0;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | p[2] << 16 | p[1] << 8 | p[0]; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p + 4) << 32 | le32(p); }
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

typedef struct verdict { int cut; char why[160]; } verdict;

static int cut_at(verdict *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cut_at(verdict *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->why, sizeof o->why, fmt, ap);
    va_end(ap);
    o->cut = 1;
    return 1;
}

/* Reports a unit [off, off+len) that runs past the end of size bytes. */
static int past_end(verdict *o, const char *unit, int64_t off, uint64_t len, int64_t size) {
    if (len <= (uint64_t)(size - off)) return 0;
    return cut_at(o, "%s at byte %" PRId64 " declares %" PRIu64 " bytes, the data ends at byte %" PRId64,
                  unit, off, len, size);
}

/* ---- ISO BMFF (MP4, MOV, 3GP): top-level boxes ---------------------------- */

static void walk_mp4(rd *r, verdict *o) {
    int64_t off = 0, size = r->v->size;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && size - off >= 8; n++) {
        uint8_t h[16];
        if (get(r, off, h, 8)) return;
        uint64_t len = be32(h);
        char type[5] = {(char)h[4], (char)h[5], (char)h[6], (char)h[7], 0};
        if (len == 0) return;                 /* to the end of the file */
        if (len == 1) {
            if (get(r, off, h, 16)) { cut_at(o, "box '%s' at byte %" PRId64 " cut in its header", type, off); return; }
            len = be64(h + 8);
            if (len < 16) return;
        } else if (len < 8) {
            return;                           /* not a box: not ours to judge */
        }
        char unit[32];
        snprintf(unit, sizeof unit, "box '%.4s'", type);
        if (past_end(o, unit, off, len, size)) return;
        off += (int64_t)len;
    }
}

/* ---- Matroska / WebM: EBML elements ---------------------------------------- */

/* An EBML variable-length number at off: its length in *w, the value with
 * the marker bit removed in *val (*unknown when all value bits are set). */
static int ebml_vint(rd *r, int64_t off, int *w, uint64_t *val, int *unknown) {
    uint8_t b[8];
    if (get(r, off, b, 1)) return -1;
    int len = 1;
    while (len <= 8 && !(b[0] & (0x80 >> (len - 1)))) len++;
    if (len > 8) return -2;
    if (get(r, off, b, (size_t)len)) return -1;
    uint64_t x = b[0] & (0xFF >> len);
    int all = x == (uint64_t)(0xFF >> len);
    for (int i = 1; i < len; i++) { x = x << 8 | b[i]; all &= b[i] == 0xFF; }
    *w = len;
    *val = x;
    *unknown = all;
    return 0;
}

/* One element header at off: total header bytes, id (with its marker) and
 * data size. -1: the data ends inside it; -2: not an element. */
static int ebml_elem(rd *r, int64_t off, int *hdr, uint32_t *id, uint64_t *size, int *unknown) {
    int iw, sw, u;
    uint64_t idv;
    int rc = ebml_vint(r, off, &iw, &idv, &u);
    if (rc) return rc;
    if (iw > 4) return -2;
    uint8_t b[4];
    if (get(r, off, b, (size_t)iw)) return -1;
    uint32_t raw = 0;
    for (int i = 0; i < iw; i++) raw = raw << 8 | b[i];
    rc = ebml_vint(r, off + iw, &sw, size, unknown);
    if (rc) return rc;
    *hdr = iw + sw;
    *id = raw;
    return 0;
}

#define EBML_SEGMENT 0x18538067u

static void walk_mkv(rd *r, verdict *o) {
    int64_t off = 0, size = r->v->size;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && off < size; n++) {
        int hdr, unknown;
        uint32_t id;
        uint64_t len;
        int rc = ebml_elem(r, off, &hdr, &id, &len, &unknown);
        if (rc == -1) { cut_at(o, "EBML element at byte %" PRId64 " cut in its header", off); return; }
        if (rc) return;
        if (id == EBML_SEGMENT && unknown) {
            /* A live recording: the Segment's size was never written. Its
             * children (clusters) may still have sizes. */
            off += hdr;
            continue;
        }
        if (unknown) return; /* an unknown-size cluster: cannot tell */
        char unit[48];
        snprintf(unit, sizeof unit, "EBML element 0x%X", id);
        if (past_end(o, unit, off, (uint64_t)hdr + len, size)) return;
        off += hdr + (int64_t)len;
    }
}

/* ---- RIFF (AVI; WebP): top-level chunks ------------------------------------ */

static void walk_riff(rd *r, verdict *o) {
    int64_t off = 0, size = r->v->size;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && size - off >= 8; n++) {
        uint8_t h[8];
        if (get(r, off, h, 8) || memcmp(h, "RIFF", 4)) return;
        uint64_t len = le32(h + 4);
        if (len == 0) return; /* a writer that never filled it in */
        len += 8 + (len & 1);
        if (past_end(o, "RIFF chunk", off, len - (len & 1), size)) return;
        off += (int64_t)len;
    }
}

/* ---- Ogg: pages, and an end-of-stream page per stream ------------------------ */

static void walk_ogg(rd *r, verdict *o) {
    int64_t off = 0, size = r->v->size;
    uint32_t serial[64];
    int eos[64], ns = 0;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && off < size; n++) {
        uint8_t h[27], seg[255];
        if (get(r, off, h, 27)) { cut_at(o, "Ogg page at byte %" PRId64 " cut in its header", off); return; }
        if (memcmp(h, "OggS", 4)) return;
        int nseg = h[26];
        if (get(r, off + 27, seg, (size_t)nseg)) { cut_at(o, "Ogg page at byte %" PRId64 " cut in its header", off); return; }
        uint64_t body = 0;
        for (int i = 0; i < nseg; i++) body += seg[i];
        if (past_end(o, "Ogg page", off, 27 + (uint64_t)nseg + body, size)) return;
        uint32_t s = le32(h + 14);
        int i;
        for (i = 0; i < ns && serial[i] != s; i++) {}
        if (i == ns && ns < 64) { serial[ns] = s; eos[ns++] = 0; }
        if (i < ns && (h[5] & 4)) eos[i] = 1;
        off += 27 + nseg + (int64_t)body;
    }
    if (off < size) return;
    for (int i = 0; i < ns; i++)
        if (!eos[i]) {
            cut_at(o, "Ogg stream %08x ends without its end-of-stream page (the data ends at byte %" PRId64 ")",
                   serial[i], size);
            return;
        }
}

/* ---- FLV: tags ------------------------------------------------------------------ */

static void walk_flv(rd *r, verdict *o) {
    int64_t size = r->v->size;
    uint8_t h[11];
    if (get(r, 0, h, 9)) return;
    int64_t off = (int64_t)be32(h + 5) + 4; /* header, then PreviousTagSize0 */
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && off < size; n++) {
        if (get(r, off, h, 11)) { cut_at(o, "FLV tag at byte %" PRId64 " cut in its header", off); return; }
        uint64_t len = 11 + ((uint64_t)h[1] << 16 | h[2] << 8 | h[3]);
        if (past_end(o, "FLV tag", off, len, size)) return;
        off += (int64_t)len + 4; /* PreviousTagSize; a missing last one is harmless */
    }
}

/* ---- IVF: frames ------------------------------------------------------------------ */

static void walk_ivf(rd *r, verdict *o) {
    int64_t size = r->v->size;
    uint8_t h[32];
    if (get(r, 0, h, 32)) return;
    int64_t off = h[6] | h[7] << 8;
    if (off < 32) off = 32;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && off < size; n++) {
        if (get(r, off, h, 12)) { cut_at(o, "IVF frame at byte %" PRId64 " cut in its header", off); return; }
        uint64_t len = 12 + (uint64_t)le32(h);
        if (past_end(o, "IVF frame", off, len, size)) return;
        off += (int64_t)len;
    }
}

/* ---- MPEG program stream: packs and PES packets ---------------------------- */

static void walk_mpegps(rd *r, verdict *o) {
    int64_t off = 0, size = r->v->size;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && size - off >= 4; n++) {
        uint8_t h[14];
        if (get(r, off, h, 4) || h[0] || h[1] || h[2] != 1) return;
        uint8_t code = h[3];
        uint64_t len;
        if (code == 0xB9) return; /* program end code */
        if (code == 0xBA) {       /* pack header: MPEG-2 (14 + stuffing) or MPEG-1 (12) */
            if (get(r, off, h, 5)) { cut_at(o, "MPEG pack header at byte %" PRId64 " cut", off); return; }
            if ((h[4] & 0xC0) == 0x40) {
                if (get(r, off, h, 14)) { cut_at(o, "MPEG pack header at byte %" PRId64 " cut", off); return; }
                len = 14 + (h[13] & 7);
            } else {
                len = 12;
            }
        } else if (code >= 0xBB) { /* system header, PES packets: 16-bit length */
            if (get(r, off, h, 6)) { cut_at(o, "MPEG packet at byte %" PRId64 " cut in its header", off); return; }
            len = 6 + ((uint64_t)h[4] << 8 | h[5]);
        } else {
            return;
        }
        if (past_end(o, "MPEG packet", off, len, size)) return;
        off += (int64_t)len;
    }
    /* The program end code is not required in practice (FFmpeg's muxer
     * never writes it), so a cut between two packs (often 2048 bytes each)
     * cannot be told from a shorter stream; a cut inside one can. */
    if (size - off > 0 && size - off < 4)
        cut_at(o, "MPEG start code at byte %" PRId64 " cut (the data ends at byte %" PRId64 ")", off, size);
}

/* ---- MPEG transport stream: fixed-size packets ----------------------------- */

static void check_mpegts(rd *r, verdict *o) {
    int64_t size = r->v->size;
    static const int sizes[] = {188, 192, 204};
    uint8_t a[1], b[1];
    for (int i = 0; i < 3; i++) {
        int sync = sizes[i] == 192 ? 4 : 0;
        if (get(r, sync, a, 1) || a[0] != 0x47) continue;
        if (size > sizes[i] + sync && (get(r, sizes[i] + sync, b, 1) || b[0] != 0x47)) continue;
        if (size % sizes[i])
            cut_at(o, "the data (%" PRId64 " bytes) ends inside a %d-byte transport packet", size, sizes[i]);
        return;
    }
}

/* ---- ASF: top-level objects ------------------------------------------------------ */

static void walk_asf(rd *r, verdict *o) {
    int64_t off = 0, size = r->v->size;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && size - off >= 24; n++) {
        uint8_t h[24];
        if (get(r, off, h, 24)) return;
        uint64_t len = le64(h + 16);
        if (len < 24) return; /* a broadcast writer's 0: unknown */
        if (past_end(o, "ASF object", off, len, size)) return;
        off += (int64_t)len;
    }
}

/* ---- GIF: blocks up to the trailer ------------------------------------------ */

/* Skips data sub-blocks from off; the offset after the terminator, or -1
 * when the data ends first. */
static int64_t gif_subblocks(rd *r, int64_t off) {
    for (int n = 0; n < PE_TRUNC_MAX_UNITS; n++) {
        uint8_t b[1];
        if (get(r, off, b, 1)) return -1;
        off += 1 + b[0];
        if (!b[0]) return off;
    }
    return -2;
}

static void walk_gif(rd *r, verdict *o) {
    int64_t size = r->v->size;
    uint8_t h[13];
    if (get(r, 0, h, 13)) { cut_at(o, "the GIF header is cut"); return; }
    int64_t off = 13 + ((h[10] & 0x80) ? 3 * (2 << (h[10] & 7)) : 0);
    for (int n = 0; n < PE_TRUNC_MAX_UNITS; n++) {
        uint8_t b[10];
        if (get(r, off, b, 1)) break;
        if (b[0] == 0x3B) return; /* trailer */
        int64_t start = off;
        if (b[0] == 0x21) {
            off = gif_subblocks(r, off + 2);
        } else if (b[0] == 0x2C) {
            if (get(r, off, b, 10)) { off = -1; }
            else off = gif_subblocks(r, off + 10 + ((b[9] & 0x80) ? 3 * (2 << (b[9] & 7)) : 0) + 1);
        } else {
            return; /* not a block: junk after the images, the decoder judges */
        }
        if (off == -2) return;
        if (off < 0 || off > size) {
            cut_at(o, "GIF %s at byte %" PRId64 " is cut (the data ends at byte %" PRId64 ")",
                   b[0] == 0x2C ? "image" : "extension", start, size);
            return;
        }
    }
    cut_at(o, "the GIF ends without its trailer (the data ends at byte %" PRId64 ")", size);
}

/* ---- APNG: chunks up to IEND ------------------------------------------------- */

static void walk_png(rd *r, verdict *o) {
    int64_t off = 8, size = r->v->size;
    for (int n = 0; n < PE_TRUNC_MAX_UNITS && off < size; n++) {
        uint8_t h[8];
        if (get(r, off, h, 8)) { cut_at(o, "PNG chunk at byte %" PRId64 " cut in its header", off); return; }
        uint64_t len = 12 + (uint64_t)be32(h);
        char unit[24];
        snprintf(unit, sizeof unit, "PNG chunk '%.4s'", (const char *)h + 4);
        if (past_end(o, unit, off, len, size)) return;
        if (!memcmp(h + 4, "IEND", 4)) return;
        off += (int64_t)len;
    }
    cut_at(o, "the PNG ends without its IEND chunk (the data ends at byte %" PRId64 ")", size);
}

int pe_video_png_is_animated(pe_video *v) {
    rd r = {v, NULL, 0, 0};
    if (!v->mem && !(r.win = malloc(WIN))) return 0;
    int64_t off = 8;
    int anim = 0;
    for (int n = 0; n < 1000 && off < v->size; n++) {
        uint8_t h[8];
        if (get(&r, off, h, 8) || !memcmp(h + 4, "IDAT", 4)) break;
        if (!memcmp(h + 4, "acTL", 4)) { anim = 1; break; }
        off += 12 + (int64_t)be32(h);
    }
    free(r.win);
    return anim;
}

/* ---- entry ---------------------------------------------------------------------- */

void pe_video_check_truncated(pe_video *v, const char *format) {
    rd r = {v, NULL, 0, 0};
    if (!v->mem && !(r.win = malloc(WIN))) return; /* no verdict without memory */
    verdict o = {0, ""};
    if (!strcmp(format, "mov,mp4,m4a,3gp,3g2,mj2")) walk_mp4(&r, &o);
    else if (!strcmp(format, "matroska,webm")) walk_mkv(&r, &o);
    else if (!strcmp(format, "avi") || !strcmp(format, "webp")) walk_riff(&r, &o);
    else if (!strcmp(format, "ogg")) walk_ogg(&r, &o);
    else if (!strcmp(format, "flv")) walk_flv(&r, &o);
    else if (!strcmp(format, "ivf")) walk_ivf(&r, &o);
    else if (!strcmp(format, "mpeg")) walk_mpegps(&r, &o);
    else if (!strcmp(format, "mpegts")) check_mpegts(&r, &o);
    else if (!strcmp(format, "asf")) walk_asf(&r, &o);
    else if (!strcmp(format, "gif")) walk_gif(&r, &o);
    else if (!strcmp(format, "apng")) walk_png(&r, &o);
    free(r.win);
    if (o.cut && !v->info.truncated) {
        v->info.truncated = 1;
        snprintf(v->info.truncated_why, sizeof v->info.truncated_why, "%s", o.why);
    }
}
