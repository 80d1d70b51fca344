/* pe_media: what a file is, decided by its bytes, and opening it safely.
 *
 * DESIGN: a file named .jpg can be HTML, random bytes or an MP4; a name
 * without extension can be a fine JPEG. Everything here looks at content
 * signatures only, and never reads past the bytes it was given. Opening
 * never blocks (O_NONBLOCK: a FIFO without writer returns at once) and
 * refuses anything but regular files before a byte is read. libvips must
 * never see a video: it would sniff an MP4 as TGA and hand it to
 * ImageMagick, so the image path only loads what pe_media_sniff_format
 * named.
 */
#define _GNU_SOURCE
#include "encoder/pe_image.h"

#include "common/perr.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- signatures ---------------------------------------------------------- */

static int has(const uint8_t *h, size_t len, size_t off, const char *sig, size_t n) {
    return len >= off + n && memcmp(h + off, sig, n) == 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A byte source for the GIF walk: a buffer, or a file read in chunks. */
typedef struct byte_src {
    const uint8_t *buf;
    size_t len;       /* bytes in buf */
    size_t base;      /* file offset of buf[0] */
    int fd;           /* -1: buf is everything there is */
    uint8_t *chunk;   /* fd mode: our buffer */
    size_t cap;
} byte_src;

/* Byte at offset off, or -1 past the end (or on a read error). */
static int byte_at(byte_src *s, size_t off) {
    if (off >= s->base && off < s->base + s->len) return s->buf[off - s->base];
    if (s->fd < 0) return -1;
    ssize_t n;
    do n = pread(s->fd, s->chunk, s->cap, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    s->buf = s->chunk, s->len = (size_t)n, s->base = off;
    return s->buf[0];
}

/* Walks the GIF block structure (header, colour tables, extensions, image
 * descriptors, LZW sub-blocks) until a second frame (animated: 1), the
 * trailer (still: 0) or the end of the bytes (unknown: -1). Frames count,
 * not the NETSCAPE2.0 loop block: encoders (libvips among them) write it
 * for still images too. */
static int gif_walk(byte_src *s) {
    int flags = byte_at(s, 10);
    if (flags < 0) return -1;
    size_t p = 13;
    if (flags & 0x80) p += 3u * (1u << ((flags & 7) + 1)); /* global colour table */
    int frames = 0;
    for (;;) {
        int b = byte_at(s, p);
        if (b < 0) return -1;
        if (b == 0x3B) return 0; /* trailer */
        if (b == 0x21) {         /* extension: label, sub-blocks */
            p += 2;
        } else if (b == 0x2C) {  /* image descriptor */
            if (++frames >= 2) return 1;
            int f = byte_at(s, p + 9);
            if (f < 0) return -1;
            p += 10;
            if (f & 0x80) p += 3u * (1u << ((f & 7) + 1)); /* local colour table */
            p += 1;                                          /* LZW minimum code size */
        } else {
            return -1; /* corrupt: the decoder will say so */
        }
        for (;;) { /* sub-blocks up to the 0 terminator */
            int n = byte_at(s, p);
            if (n < 0) return -1;
            p += 1u + (unsigned)n;
            if (n == 0) break;
        }
    }
}

static int gif_is_animated(const uint8_t *h, size_t len) {
    byte_src s = {h, len, 0, -1, NULL, 0};
    return gif_walk(&s) == 1;
}

/* ISO base media (ftyp box): HEIF/AVIF stills or MP4/QuickTime videos. */
static pe_media_kind sniff_ftyp(const uint8_t *h, size_t len, const char **fmt) {
    static const char *heif[] = {"heic", "heix", "hevc", "hevx", "heim", "heis",
                                 "hevm", "hevs", "mif1", "msf1", "mif2"};
    size_t box = be32(h);
    if (box < 16 || box > len) box = len < 64 ? len : 64;
    int is_heif = 0, is_avif = 0;
    for (size_t off = 8; off + 4 <= box; off += 4) {
        if (off == 12) continue; /* minor version */
        const char *b = (const char *)h + off;
        if (!memcmp(b, "avif", 4) || !memcmp(b, "avis", 4)) is_avif = 1;
        for (size_t i = 0; i < sizeof heif / sizeof heif[0]; i++)
            if (!memcmp(b, heif[i], 4)) is_heif = 1;
    }
    /* The major brand decides when it is itself an image brand. */
    if (!memcmp(h + 8, "avif", 4) || !memcmp(h + 8, "avis", 4) ||
        (is_avif && !memcmp(h + 8, "mif1", 4))) {
        *fmt = "avif";
        return PE_MEDIA_IMAGE;
    }
    if (is_heif && !memcmp(h + 8, "mif1", 4)) { *fmt = "heif"; return PE_MEDIA_IMAGE; }
    for (size_t i = 0; i < sizeof heif / sizeof heif[0]; i++)
        if (!memcmp(h + 8, heif[i], 4)) { *fmt = "heif"; return PE_MEDIA_IMAGE; }
    if (!memcmp(h + 8, "crx ", 4)) { *fmt = "cr3"; return PE_MEDIA_UNKNOWN; }
    if (!memcmp(h + 8, "jp2 ", 4) || !memcmp(h + 8, "jpx ", 4)) { *fmt = "jp2"; return PE_MEDIA_UNKNOWN; }
    if (!memcmp(h + 8, "qt  ", 4)) { *fmt = "quicktime"; return PE_MEDIA_VIDEO; }
    if (is_avif) { *fmt = "avif"; return PE_MEDIA_IMAGE; }
    if (is_heif) { *fmt = "heif"; return PE_MEDIA_IMAGE; }
    *fmt = "mp4"; /* isom, mp41, mp42, 3gp*, M4V, dash, avc1, ...: FFmpeg decides */
    return PE_MEDIA_VIDEO;
}

/* Skips a UTF-8 BOM and ASCII white space; returns the offset of the
 * first significant byte. */
static size_t text_start(const uint8_t *h, size_t len) {
    size_t p = 0;
    if (len >= 3 && h[0] == 0xEF && h[1] == 0xBB && h[2] == 0xBF) p = 3;
    while (p < len && (h[p] == ' ' || h[p] == '\t' || h[p] == '\r' || h[p] == '\n')) p++;
    return p;
}

static int has_ci(const uint8_t *h, size_t len, size_t off, const char *s) {
    size_t n = strlen(s);
    if (len < off + n) return 0;
    return strncasecmp((const char *)h + off, s, n) == 0;
}

static int contains(const uint8_t *h, size_t len, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(h + i, s, n)) return 1;
    return 0;
}

pe_media_kind pe_media_sniff_format(const void *head, size_t len, const char **format) {
    const uint8_t *h = head;
    const char *dummy;
    const char **fmt = format ? format : &dummy;
    *fmt = "unknown";
    if (!h || len == 0) { *fmt = "empty"; return PE_MEDIA_UNKNOWN; }

    /* Still images percept decodes. */
    if (has(h, len, 0, "\xFF\xD8\xFF", 3)) { *fmt = "jpeg"; return PE_MEDIA_IMAGE; }
    if (has(h, len, 0, "\x89PNG\r\n\x1A\n", 8)) { *fmt = "png"; return PE_MEDIA_IMAGE; }
    if (has(h, len, 0, "GIF87a", 6) || has(h, len, 0, "GIF89a", 6)) {
        *fmt = "gif";
        return gif_is_animated(h, len) ? PE_MEDIA_ANIMATION : PE_MEDIA_IMAGE;
    }
    if (has(h, len, 0, "RIFF", 4) && has(h, len, 8, "WEBP", 4)) {
        *fmt = "webp";
        /* VP8X chunk, flags byte: 0x02 = animation */
        if (has(h, len, 12, "VP8X", 4) && len > 20 && (h[20] & 0x02)) return PE_MEDIA_ANIMATION;
        return PE_MEDIA_IMAGE;
    }
    if (has(h, len, 0, "II*\0", 4) || has(h, len, 0, "MM\0*", 4) ||
        has(h, len, 0, "II+\0", 4) || has(h, len, 0, "MM\0+", 4)) {
        *fmt = "tiff";
        return PE_MEDIA_IMAGE;
    }
    if (has(h, len, 4, "ftyp", 4) && len >= 16) return sniff_ftyp(h, len, fmt);

    /* Videos (FFmpeg's business). */
    if (has(h, len, 0, "\x1A\x45\xDF\xA3", 4)) {
        *fmt = contains(h, len, "webm") ? "webm" : "matroska";
        return PE_MEDIA_VIDEO;
    }
    if (has(h, len, 0, "RIFF", 4) && has(h, len, 8, "AVI ", 4)) { *fmt = "avi"; return PE_MEDIA_VIDEO; }
    if (has(h, len, 0, "FLV\x01", 4)) { *fmt = "flv"; return PE_MEDIA_VIDEO; }
    if (has(h, len, 0, "\x30\x26\xB2\x75\x8E\x66\xCF\x11", 8)) { *fmt = "asf"; return PE_MEDIA_VIDEO; }
    if (has(h, len, 0, "OggS", 4)) { *fmt = "ogg"; return PE_MEDIA_VIDEO; }
    if (has(h, len, 0, "\0\0\1\xBA", 4) || has(h, len, 0, "\0\0\1\xB3", 4)) {
        *fmt = "mpeg";
        return PE_MEDIA_VIDEO;
    }
    if (len > 376 && h[0] == 0x47 && h[188] == 0x47 && h[376] == 0x47) {
        *fmt = "mpegts";
        return PE_MEDIA_VIDEO;
    }
    if (len >= 8 && (has(h, len, 4, "moov", 4) || has(h, len, 4, "mdat", 4) ||
                     has(h, len, 4, "wide", 4) || has(h, len, 4, "free", 4) ||
                     has(h, len, 4, "skip", 4) || has(h, len, 4, "pnot", 4))) {
        *fmt = "quicktime";
        return PE_MEDIA_VIDEO;
    }

    /* Recognised, and refused by the image path (named in its message). */
    if (has(h, len, 0, "BM", 2) && len >= 18) {
        uint32_t dib = h[14] | (uint32_t)h[15] << 8 | (uint32_t)h[16] << 16 | (uint32_t)h[17] << 24;
        if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124) {
            *fmt = "bmp";
            return PE_MEDIA_UNKNOWN;
        }
    }
    if (has(h, len, 0, "\xFF\x0A", 2) || has(h, len, 0, "\0\0\0\x0CJXL \r\n\x87\n", 12)) {
        *fmt = "jxl";
        return PE_MEDIA_UNKNOWN;
    }
    if (has(h, len, 0, "\0\0\0\x0CjP  ", 8) || has(h, len, 0, "\xFF\x4F\xFF\x51", 4)) {
        *fmt = "jp2";
        return PE_MEDIA_UNKNOWN;
    }
    if (has(h, len, 0, "%PDF-", 5)) { *fmt = "pdf"; return PE_MEDIA_UNKNOWN; }
    if (has(h, len, 0, "8BPS", 4)) { *fmt = "psd"; return PE_MEDIA_UNKNOWN; }
    if (has(h, len, 0, "\0\0\1\0", 4)) { *fmt = "ico"; return PE_MEDIA_UNKNOWN; }
    if (has(h, len, 0, "RIFF", 4) && has(h, len, 8, "WAVE", 4)) { *fmt = "wav"; return PE_MEDIA_UNKNOWN; }
    if (has(h, len, 0, "PK\3\4", 4)) { *fmt = "zip"; return PE_MEDIA_UNKNOWN; }
    if (has(h, len, 0, "\x1F\x8B", 2)) { *fmt = "gzip"; return PE_MEDIA_UNKNOWN; }
    if (has(h, len, 0, "\x7F" "ELF", 4)) { *fmt = "elf"; return PE_MEDIA_UNKNOWN; }
    size_t t = text_start(h, len);
    if (has_ci(h, len, t, "<svg") || (has_ci(h, len, t, "<?xml") && contains(h, len, "<svg"))) {
        *fmt = "svg";
        return PE_MEDIA_UNKNOWN;
    }
    if (has_ci(h, len, t, "<!doctype html") || has_ci(h, len, t, "<html") ||
        has_ci(h, len, t, "<head") || has_ci(h, len, t, "<body") || has_ci(h, len, t, "<!--")) {
        *fmt = "html";
        return PE_MEDIA_UNKNOWN;
    }
    if (has_ci(h, len, t, "<?xml")) { *fmt = "xml"; return PE_MEDIA_UNKNOWN; }
    return PE_MEDIA_UNKNOWN;
}

pe_media_kind pe_media_sniff(const void *head, size_t len) {
    return pe_media_sniff_format(head, len, NULL);
}

/* ---- opening ------------------------------------------------------------- */

static const char *file_type_name(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int pe_media_open(const char *path, size_t max_bytes, int *fd_out, size_t *size) {
    *fd_out = -1;
    if (!path || !*path) return perr_set(PERR_INVALID, "empty path");
    struct stat st;
    /* stat() first: opening some devices has side effects even with
     * O_NONBLOCK; fstat() after open closes the race with a swapped file. */
    if (stat(path, &st) != 0) return perr_errno(errno, "%s", path);
    if (!S_ISREG(st.st_mode))
        return perr_set(PERR_UNSUPPORTED, "%s: is %s, not a regular file", path,
                        file_type_name(st.st_mode));
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return perr_errno(errno, "%s", path);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return perr_errno(e, "%s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return perr_set(PERR_UNSUPPORTED, "%s: is %s, not a regular file", path,
                        file_type_name(st.st_mode));
    }
    if (st.st_size == 0) {
        close(fd);
        return perr_set(PERR_FORMAT, "%s: empty file", path);
    }
    if (max_bytes && (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return perr_set(PERR_TOO_LARGE, "%s: %lld bytes exceeds the %zu-byte file limit", path,
                        (long long)st.st_size, max_bytes);
    }
    *fd_out = fd;
    if (size) *size = (size_t)st.st_size;
    return PERR_OK;
}

int pe_media_sniff_file_format(const char *path, pe_media_kind *kind, const char **format) {
    *kind = PE_MEDIA_UNKNOWN;
    if (format) *format = "unknown";
    int fd;
    size_t size;
    int rc = pe_media_open(path, 0, &fd, &size);
    if (rc) return rc;
    uint8_t head[4096];
    ssize_t n;
    do n = pread(fd, head, sizeof head, 0);
    while (n < 0 && errno == EINTR);
    int e = errno;
    if (n < 0) {
        close(fd);
        return perr_errno(e, "%s: read", path);
    }
    const char *fmt;
    *kind = pe_media_sniff_format(head, (size_t)n, &fmt);
    if (format) *format = fmt;
    if (*kind == PE_MEDIA_IMAGE && !strcmp(fmt, "gif")) {
        /* the head rarely reaches a second frame: walk the file */
        uint8_t chunk[16384];
        byte_src s = {head, (size_t)n, 0, fd, chunk, sizeof chunk};
        if (gif_walk(&s) == 1) *kind = PE_MEDIA_ANIMATION;
    }
    close(fd);
    return PERR_OK;
}

int pe_media_sniff_file(const char *path, pe_media_kind *kind) {
    return pe_media_sniff_file_format(path, kind, NULL);
}
