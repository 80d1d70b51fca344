/* DESIGN: fetch_url streams into "<dest>.part" and renames on success, so
 * an interrupted download never leaves a file that looks complete. A second
 * call asks for the remaining bytes (Range); a server that ignores Range
 * (200 instead of 206) restarts the file from zero. The SHA-256 is computed
 * over the finished file, not while streaming, so resumed downloads are
 * hashed the same way as fresh ones. */
#define _GNU_SOURCE
#include "cli/fetch.h"
#include "common/perr.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct dl {
    FILE *f;
    const char *label;
    curl_off_t start;         /* bytes already on disk when this request began */
    int tty;
    time_t last_print;
    long http_code_checked;   /* 0 until the first body byte */
    CURL *curl;
} dl;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    dl *d = ud;
    if (!d->http_code_checked) {
        long code = 0;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
        d->http_code_checked = code;
        if (d->start > 0 && code == 200) {
            /* No Range support: start over. */
            if (ftruncate(fileno(d->f), 0) != 0 || fseek(d->f, 0, SEEK_SET) != 0) return 0;
            d->start = 0;
        }
    }
    return fwrite(p, sz, n, d->f);
}

static void human(double b, char *out, size_t len) {
    const char *u[] = {"B", "KiB", "MiB", "GiB"};
    int i = 0;
    while (b >= 1024 && i < 3) { b /= 1024; i++; }
    snprintf(out, len, "%.1f %s", b, u[i]);
}

static int on_progress(void *ud, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un) {
    (void)ut; (void)un;
    dl *d = ud;
    time_t t = time(NULL);
    if (!d->tty && t - d->last_print < 5) return 0;
    if (d->tty && t == d->last_print && now != total) return 0;
    d->last_print = t;
    char a[32], b[32];
    human((double)(d->start + now), a, sizeof a);
    if (total > 0) {
        human((double)(d->start + total), b, sizeof b);
        double frac = (double)(d->start + now) / (double)(d->start + total);
        if (d->tty) {
            int w = 30, fill = (int)(frac * w);
            fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %s / %s", d->label, fill,
                    "##############################", w - fill, "", frac * 100, a, b);
        } else {
            fprintf(stderr, "%s: %.1f%% (%s of %s)\n", d->label, frac * 100, a, b);
        }
    } else if (now > 0) {
        fprintf(stderr, d->tty ? "\r%s %s" : "%s: %s\n", d->label, a);
    }
    return 0;
}

int fetch_sha256_file(const char *path, char hex[65], uint64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return perr_errno(errno, "%s", path);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        fclose(f);
        EVP_MD_CTX_free(ctx);
        return perr_set(PERR_INTERNAL, "sha256: OpenSSL digest unavailable");
    }
    static _Thread_local unsigned char buf[1 << 16];
    uint64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        EVP_DigestUpdate(ctx, buf, n);
        total += n;
    }
    int err = ferror(f);
    fclose(f);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (err) return perr_set(PERR_IO, "%s: read error", path);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (size) *size = total;
    return PERR_OK;
}

int fetch_url(const char *url, const char *dest, const char *label, fetch_result *res) {
    memset(res, 0, sizeof *res);
    char part[4096];
    snprintf(part, sizeof part, "%s.part", dest);
    struct stat st;
    curl_off_t have = (stat(part, &st) == 0) ? st.st_size : 0;
    FILE *f = fopen(part, have ? "ab" : "wb");
    if (!f) return perr_errno(errno, "%s", part);

    curl_global_init(CURL_GLOBAL_DEFAULT); /* the CLI is single-threaded here */
    CURL *c = curl_easy_init();
    if (!c) { fclose(f); return perr_set(PERR_INTERNAL, "libcurl: cannot initialise"); }
    dl d = {.f = f, .label = label, .start = have, .tty = isatty(2), .curl = c};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    /* Abort a stalled transfer (< 1 KiB/s for 60 s); resumable later. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "percept/0.1");
    if (have > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, have);
    CURLcode cr = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    int close_err = fclose(f);
    if (d.tty) fputc('\n', stderr);
    if (cr == CURLE_HTTP_RETURNED_ERROR && code == 416 && have > 0) {
        /* Range past the end: the .part is already complete. */
    } else if (cr != CURLE_OK) {
        int rc = (cr == CURLE_COULDNT_RESOLVE_HOST || cr == CURLE_COULDNT_CONNECT ||
                  cr == CURLE_OPERATION_TIMEDOUT || cr == CURLE_COULDNT_RESOLVE_PROXY)
                     ? PERR_NET : PERR_IO;
        return perr_set(rc, "%s: %s%s%s (partial data kept in %s; run again to resume)",
                        url, curl_easy_strerror(cr), errbuf[0] ? ": " : "", errbuf, part);
    }
    if (close_err != 0) return perr_errno(errno, "%s", part);
    res->resumed = d.start > 0;
    int rc = fetch_sha256_file(part, res->sha256, &res->bytes);
    if (rc) return rc;
    if (rename(part, dest) != 0) return perr_errno(errno, "rename %s -> %s", part, dest);
    return PERR_OK;
}
