/* Helpers shared by the index tests: deterministic random unit vectors and
 * a brute-force reference k-NN. */
#ifndef PERCEPT_IDX_TESTUTIL_H
#define PERCEPT_IDX_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t tu_state = 0x9e3779b97f4a7c15ULL;
static inline void tu_seed(uint64_t s) { tu_state = s * 0x9e3779b97f4a7c15ULL + 1; }
static inline double tu_uniform(void) { /* xorshift64* in (0,1) */
    tu_state ^= tu_state >> 12; tu_state ^= tu_state << 25; tu_state ^= tu_state >> 27;
    return ((tu_state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0) + 1e-17;
}
static inline float tu_gauss(void) {
    return (float)(sqrt(-2 * log(tu_uniform())) * cos(6.283185307179586 * tu_uniform()));
}
/* n random unit vectors of dim d (caller frees). */
static inline float *tu_vectors(size_t n, int d) {
    float *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) { x[i * d + j] = tu_gauss(); s += (double)x[i * d + j] * x[i * d + j]; }
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] / sqrt(s));
    }
    return x;
}
static inline float tu_dot(const float *a, const float *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return (float)s;
}
/* Brute-force k best (score desc, then id asc) of q among x[i] with ids[i],
 * skipping rows where keep != NULL && !keep[i]. Missing: id -1. */
static inline void tu_knn(const float *x, const int64_t *ids, const unsigned char *keep, size_t n,
                          int d, const float *q, int k, float *os, int64_t *oi) {
    for (int j = 0; j < k; j++) { os[j] = -INFINITY; oi[j] = -1; }
    for (size_t i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        float s = tu_dot(q, x + i * d, d);
        int64_t id = ids ? ids[i] : (int64_t)i;
        int j = k;
        while (j > 0 && (oi[j - 1] < 0 || s > os[j - 1] || (s == os[j - 1] && id < oi[j - 1]))) j--;
        if (j >= k) continue;
        memmove(os + j + 1, os + j, (k - j - 1) * sizeof *os);
        memmove(oi + j + 1, oi + j, (k - j - 1) * sizeof *oi);
        os[j] = s; oi[j] = id;
    }
}
/* |found ∩ truth| / k over nq rows. */
static inline double tu_recall(const int64_t *found, const int64_t *truth, size_t nq, int k) {
    size_t hit = 0, tot = 0;
    for (size_t i = 0; i < nq; i++)
        for (int a = 0; a < k; a++) {
            if (truth[i * k + a] < 0) continue;
            tot++;
            for (int b = 0; b < k; b++) if (found[i * k + b] == truth[i * k + a]) { hit++; break; }
        }
    return tot ? (double)hit / tot : 1.0;
}
#endif
