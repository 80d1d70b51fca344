/* fetch: resumable HTTP(S) downloads with a SHA-256 of what arrived
 * (libcurl + OpenSSL). Used by `percept model fetch`. */
#ifndef PERCEPT_CLI_FETCH_H
#define PERCEPT_CLI_FETCH_H

#include <stdint.h>

typedef struct fetch_result {
    uint64_t bytes;           /* size of the complete file */
    char sha256[65];          /* hex */
    int resumed;              /* a .part file was continued */
} fetch_result;

/* Downloads url to dest: bytes go to dest.part, which a later call resumes
 * (HTTP Range); on completion dest.part is renamed to dest. Progress on
 * stderr: a bar on a terminal, a line every few seconds otherwise; label
 * names the download. */
int fetch_url(const char *url, const char *dest, const char *label, fetch_result *res);

/* SHA-256 of a whole file, hex. */
int fetch_sha256_file(const char *path, char hex[65], uint64_t *size);

#endif
