#include "perr.h"

/* Messages are cut at PERR_MSG_MAX on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PERR_MSG_MAX 1024
static _Thread_local char perr_buf[PERR_MSG_MAX];

const char *perr_str(int code) {
    switch (code) {
#define PERR_STR_(name, val, desc) case val: return desc;
        PERR_MAP(PERR_STR_)
#undef PERR_STR_
    }
    return "unknown error";
}

const char *perr_name(int code) {
    switch (code) {
#define PERR_NAME_(name, val, desc) case val: return #name;
        PERR_MAP(PERR_NAME_)
#undef PERR_NAME_
    }
    return "UNKNOWN";
}

int perr_set(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(perr_buf, sizeof perr_buf, fmt, ap);
    va_end(ap);
    return code;
}

int perr_prefix(int code, const char *fmt, ...) {
    char ctx[PERR_MSG_MAX], old[PERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, perr_buf, sizeof old);
    if (old[0])
        snprintf(perr_buf, sizeof perr_buf, "%s: %s", ctx, old);
    else
        snprintf(perr_buf, sizeof perr_buf, "%s: %s", ctx, perr_str(code));
    return code;
}

int perr_errno(int errnum, const char *fmt, ...) {
    char ctx[PERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    snprintf(perr_buf, sizeof perr_buf, "%s: %s", ctx, strerror(errnum));
    switch (errnum) {
    case ENOMEM: return PERR_NOMEM;
    case ENOENT: return PERR_NOT_FOUND;
    case ENOSPC: case EDQUOT: return PERR_FULL;
    default: return PERR_IO;
    }
}

const char *perr_msg(void) { return perr_buf; }

void perr_clear(void) { perr_buf[0] = 0; }
