/* bench_util: what several benchmarks share: a monotonic clock, a double
 * comparator for medians, and the list of files under some paths. */
#ifndef PERCEPT_BENCH_UTIL_H
#define PERCEPT_BENCH_UTIL_H

double bench_now(void);                          /* seconds, CLOCK_MONOTONIC */
int bench_cmp_double(const void *a, const void *b); /* for qsort */

/* Files named by paths: a file itself, a directory walked recursively in
 * name order (dot entries skipped). */
typedef struct bench_files { char **v; int n, cap; } bench_files;
void bench_files_add(bench_files *l, const char *path);
void bench_files_free(bench_files *l);

#endif
