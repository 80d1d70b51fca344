/* perr: the one error space of percept.
 *
 * Every function that can fail returns an int: PERR_OK (0) or a negative
 * PERR_* code. The detailed, human-readable message (which file, which key,
 * which byte offset) is kept in a thread-local buffer set by perr_set() and
 * read with perr_msg(); callers add context with perr_prefix(). Foreign
 * errors (errno, LMDB, FAISS, libvips, FFmpeg) are translated where they
 * happen, their own text copied into the message.
 */
#ifndef PERCEPT_PERR_H
#define PERCEPT_PERR_H

#include <stddef.h>

/* X(name, value, short description) */
#define PERR_MAP(X)                                                        \
    X(OK,          0,   "success")                                        \
    X(NOMEM,      -1,   "out of memory")                                  \
    X(IO,         -2,   "input/output error")                             \
    X(NOT_FOUND,  -3,   "not found")                                      \
    X(INVALID,    -4,   "invalid argument")                               \
    X(FORMAT,     -5,   "malformed or corrupt data")                      \
    X(UNSUPPORTED,-6,   "unsupported")                                    \
    X(TOO_LARGE,  -7,   "exceeds a configured limit")                     \
    X(MODEL,      -8,   "model mismatch")                                 \
    X(EXISTS,     -9,   "already exists")                                 \
    X(DECODE,    -10,   "media could not be decoded")                     \
    X(DB,        -11,   "storage error")                                  \
    X(INDEX,     -12,   "index error")                                    \
    X(FULL,      -13,   "storage full")                                   \
    X(VERSION,   -14,   "version mismatch")                               \
    X(BUSY,      -15,   "busy, try again")                                \
    X(AUTH,      -16,   "not authorized")                                 \
    X(PROTOCOL,  -17,   "protocol error")                                 \
    X(TIMEOUT,   -18,   "timed out")                                      \
    X(CANCELLED, -19,   "cancelled")                                      \
    X(NET,       -20,   "network error")                                  \
    X(INTERNAL,  -21,   "internal error")

enum {
#define PERR_ENUM_(name, val, desc) PERR_##name = (val),
    PERR_MAP(PERR_ENUM_)
#undef PERR_ENUM_
};

/* Short description of a code ("out of memory"); never NULL. */
const char *perr_str(int code);
/* Symbolic name of a code ("NOMEM"); never NULL. */
const char *perr_name(int code);

/* Stores a formatted message for this thread and returns code, so that
 * `return perr_set(PERR_FORMAT, "%s: bad magic at byte %zu", path, off);`
 * reports and fails in one line. */
int perr_set(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends context to the current message: "<context>: <old message>".
 * Returns code unchanged. */
int perr_prefix(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Stores errno's text: "<context>: <strerror(errnum)>"; returns PERR_IO
 * (PERR_NOMEM for ENOMEM, PERR_NOT_FOUND for ENOENT, PERR_FULL for ENOSPC). */
int perr_errno(int errnum, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The current thread's last message; "" when none. Valid until the next
 * perr_* call on this thread. */
const char *perr_msg(void);
/* Clears this thread's message. */
void perr_clear(void);

#endif
