/* bench_util: see bench_util.h. */
#define _GNU_SOURCE
#include "bench/common/bench_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void bench_files_add(bench_files *l, const char *p) {
    struct stat sb;
    if (stat(p, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        struct dirent **e = NULL;
        int n = scandir(p, &e, NULL, alphasort);
        for (int i = 0; i < n; i++) {
            if (e[i]->d_name[0] != '.') {
                char c[4096];
                snprintf(c, sizeof c, "%s/%s", p, e[i]->d_name);
                bench_files_add(l, c);
            }
            free(e[i]);
        }
        free(e);
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = strdup(p);
}

void bench_files_free(bench_files *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}
