/* ingest_remote: uploads files to a percept server, one INGEST each.
 *
 * DESIGN: the walk is eng_ingest_paths's own (eng_walk), so --db and
 * --server ingest the same files in the same order and report the same
 * failures and skipped directories. Owns only
 * the bytes of the file in flight; never reads a whole directory's files
 * into memory. Not thread-safe (one pc_client).
 */
#define _GNU_SOURCE
#include "cli/ingest_remote.h"
#include "common/perr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct up {
    pc_client *pc;
    const eng_ingest_opts *o;
    pc_ingest_opts po;
    eng_progress p;
    double t0, last_prog;
    int fatal;
    char fatal_msg[1024];
} up;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int stopping(const up *u) { return u->fatal || (u->o->cancel && *u->o->cancel); }

static void progress(up *u, int force) {
    double t = now_s();
    u->p.elapsed_s = t - u->t0;
    if (u->o->on_progress && (force || t - u->last_prog >= 0.2)) {
        u->last_prog = t;
        u->o->on_progress(u->o->user, &u->p);
    }
}

/* Errors that say the connection or the database cannot go on (the rest
 * belong to the file). */
static int is_fatal(int rc) {
    switch (rc) {
    case PERR_NET: case PERR_PROTOCOL: case PERR_AUTH: case PERR_FULL: case PERR_DB:
    case PERR_INDEX: case PERR_MODEL: case PERR_VERSION: case PERR_TIMEOUT:
    case PERR_CANCELLED: case PERR_INTERNAL: case PERR_NOMEM:
        return 1;
    default:
        return 0;
    }
}

static void upload(up *u, const char *path) {
    u->p.seen++;
    void *data = NULL;
    size_t len = 0;
    uint64_t id = 0;
    eng_outcome outcome = ENG_FAILED;
    int rc = pc_read_file(path, NET_MAX_FRAME_DEFAULT - 65536, &data, &len);
    if (rc == PERR_OK) {
        u->p.bytes += len;
        u->po.uri = path;
        for (int tries = 0;; tries++) {
            rc = pc_ingest_bytes(u->pc, data, len, &u->po, &id, &outcome);
            if (rc != PERR_BUSY || tries == 100) break;
            usleep(20000); /* the server's queue is full: wait for room */
        }
        /* The server saw bytes, not a file: name it as embedded mode does. */
        if (rc && !is_fatal(rc) && !strstr(perr_msg(), path)) rc = perr_prefix(rc, "%s", path);
    }
    free(data);
    if (rc && is_fatal(rc)) {
        u->fatal = rc;
        snprintf(u->fatal_msg, sizeof u->fatal_msg, "%s", perr_msg());
        return;
    }
    u->p.done++;
    if (rc) u->p.failed++;
    else if (outcome == ENG_PRESENT) u->p.present++;
    else u->p.added++;
    if (u->o->on_result && (rc || outcome == ENG_PRESENT)) {
        eng_file_result fr = {path, rc ? ENG_FAILED : outcome, rc, rc ? perr_msg() : NULL, id};
        u->o->on_result(u->o->user, &fr);
    }
    progress(u, 0);
}

static void walk_file(void *user, const char *path) { upload(user, path); }
static int walk_stop(void *user) { return stopping(user); }

static void walk_skip(void *user, const char *path, int code, const char *reason) {
    up *u = user;
    u->p.seen++;
    u->p.done++;
    u->p.skipped++;
    if (u->o->on_result) {
        eng_file_result fr = {path, ENG_SKIPPED, code, reason, 0};
        u->o->on_result(u->o->user, &fr);
    }
}

int ingest_remote(pc_client *pc, const char *const *paths, int n, const eng_ingest_opts *o,
                  eng_progress *out) {
    up *u = calloc(1, sizeof *u);
    if (!u) return perr_set(PERR_NOMEM, "ingest");
    u->pc = pc;
    u->o = o;
    u->po = (pc_ingest_opts){o->collection, NULL, o->labels, o->n_labels, o->meta, o->n_meta, o->video};
    u->t0 = u->last_prog = now_s();
    u->p.walking = 1;
    eng_walk_opts wo = {o->recursive, walk_file, walk_skip, walk_stop, u};
    eng_walk(paths, n, &wo);
    u->p.walking = 0;
    progress(u, 1);
    *out = u->p;
    int rc = PERR_OK;
    if (u->fatal) rc = perr_set(u->fatal, "%s", u->fatal_msg);
    else if (o->cancel && *o->cancel) rc = perr_set(PERR_CANCELLED, "ingest cancelled");
    free(u);
    return rc;
}
