/* eng_walk: expands the paths given to ingest into the files to read.
 *
 * DESIGN. Used by the embedded ingest (eng_ingest.c) and by the CLI's
 * upload to a server (cli/ingest_remote.c), so both take the same files in
 * the same order. A directory is read with scandir in name order and
 * walked depth first, at most 64 deep; anything else (a file, a broken
 * link, a FIFO, a path that is not there) goes to the file callback, whose
 * reader says what is wrong with it. Links are followed, but each
 * directory is entered once, by device + inode: a link back up the tree
 * (`ln -s .. up`, `ln -s . self`) or a second link to a directory already
 * walked is reported once through the skip callback and not entered (two
 * such links used to make the walk exponential). Memory: the current
 * chain of directory listings plus one path per directory entered.
 *
 * Never: enter a directory twice; stop the walk for one bad entry.
 */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define WALK_MAX_DEPTH 64

/* Directories entered so far: open addressing on (dev, ino). */
typedef struct dir_seen {
    dev_t dev;
    ino_t ino;
    char *path;             /* the path it was first entered by; NULL = empty slot */
} dir_seen;

typedef struct walker {
    const eng_walk_opts *o;
    dir_seen *v;
    size_t cap, n;
} walker;

static size_t slot(const dir_seen *v, size_t cap, dev_t dev, ino_t ino) {
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    size_t i = (size_t)(h >> 17) & (cap - 1);
    while (v[i].path && !(v[i].dev == dev && v[i].ino == ino)) i = (i + 1) & (cap - 1);
    return i;
}

/* The path (dev, ino) was entered by, or NULL after recording it as path.
 * PERR_NOMEM in *rc when it could not be recorded. */
static const char *visit(walker *w, dev_t dev, ino_t ino, const char *path, int *rc) {
    *rc = PERR_OK;
    if (w->cap) {
        size_t i = slot(w->v, w->cap, dev, ino);
        if (w->v[i].path) return w->v[i].path;
    }
    if (2 * (w->n + 1) > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        dir_seen *v = calloc(cap, sizeof *v);
        if (!v) { *rc = PERR_NOMEM; return NULL; }
        for (size_t i = 0; i < w->cap; i++)
            if (w->v[i].path) v[slot(v, cap, w->v[i].dev, w->v[i].ino)] = w->v[i];
        free(w->v);
        w->v = v;
        w->cap = cap;
    }
    char *p = strdup(path);
    if (!p) { *rc = PERR_NOMEM; return NULL; }
    w->v[slot(w->v, w->cap, dev, ino)] = (dir_seen){dev, ino, p};
    w->n++;
    return NULL;
}

static int stopped(const walker *w) { return w->o->stop && w->o->stop(w->o->user); }

static int name_cmp(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void skip(walker *w, const char *path, int code, const char *fmt, const char *arg) {
    char msg[8192];
    snprintf(msg, sizeof msg, fmt, path, arg);
    if (w->o->skip) w->o->skip(w->o->user, path, code, msg);
}

static void walk(walker *w, const char *path, int depth) {
    if (stopped(w)) return;
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || !w->o->recursive || depth > WALK_MAX_DEPTH) {
        w->o->file(w->o->user, path); /* its reader says what is wrong with it */
        return;
    }
    int rc;
    const char *first = visit(w, sb.st_dev, sb.st_ino, path, &rc);
    if (first) {
        skip(w, path, PERR_EXISTS, "%s: not entered: the same directory as %s, already walked (a link back into the tree?)",
             first);
        return;
    }
    if (rc) {
        skip(w, path, rc, "%s: not entered: %s", "out of memory recording the directories walked");
        return;
    }
    struct dirent **ents = NULL;
    int n = scandir(path, &ents, NULL, name_cmp);
    if (n < 0) { w->o->file(w->o->user, path); return; }
    size_t plen = strlen(path);
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        if (strcmp(nm, ".") && strcmp(nm, "..") && !stopped(w)) {
            size_t len = plen + strlen(nm) + 2;
            char *child = malloc(len);
            if (child) {
                snprintf(child, len, "%s%s%s", path, plen && path[plen - 1] == '/' ? "" : "/", nm);
                walk(w, child, depth + 1);
                free(child);
            }
        }
        free(ents[i]);
    }
    free(ents);
}

void eng_walk(const char *const *paths, int n, const eng_walk_opts *o) {
    walker w = {o, NULL, 0, 0};
    for (int i = 0; i < n && !stopped(&w); i++) {
        if (!strcmp(paths[i], "-")) {
            char *line = NULL;
            size_t cap = 0;
            ssize_t len;
            while (!stopped(&w) && (len = getline(&line, &cap, stdin)) >= 0) {
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
                if (len > 0) walk(&w, line, 0);
            }
            free(line);
        } else {
            walk(&w, paths[i], 0);
        }
    }
    for (size_t i = 0; i < w.cap; i++) free(w.v[i].path);
    free(w.v);
}
