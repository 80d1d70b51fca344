/* Helpers shared by the storage tests: deterministic items derived from a
 * seed, so that any process can check an item it did not write. */
#ifndef PERCEPT_ST_TESTUTIL_H
#define PERCEPT_ST_TESTUTIL_H

#include "common/perr.h"
#include "storage/st.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t tu_mix(uint64_t x) {
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* A normalized vector of dim floats from (seed, salt). */
static inline void tu_vec(float *v, int dim, uint64_t seed, uint64_t salt) {
    double n = 0;
    for (int i = 0; i < dim; i++) {
        uint64_t r = tu_mix(seed * 1000003u + salt * 7919u + (uint64_t)i);
        v[i] = (float)((double)(r >> 11) / (double)(UINT64_C(1) << 53) - 0.5);
        n += (double)v[i] * v[i];
    }
    n = sqrt(n);
    for (int i = 0; i < dim; i++) v[i] = (float)(v[i] / n);
}

static inline void tu_hash(uint8_t *h, uint64_t seed) {
    for (int i = 0; i < ST_HASH_LEN; i += 8) {
        uint64_t r = tu_mix(seed ^ (uint64_t)i << 56);
        memcpy(h + i, &r, 8);
    }
}

/* Everything a seeded item holds; strings live in the struct. */
typedef struct tu_item {
    st_item it;
    char uri[128];
    char lab[3][32];
    const char *labels[3];
    char mk[2][16], mv[2][32];
    st_kv meta[2];
    float vec[64];
    float segvec[4][64];
    st_segment segs[4];
    size_t n_segs;
} tu_item;

static inline void tu_item_make(tu_item *t, uint64_t seed, int dim) {
    memset(t, 0, sizeof *t);
    int video = seed % 3 == 0;
    snprintf(t->uri, sizeof t->uri, "/data/фото/%llu-ü.jpg", (unsigned long long)seed);
    snprintf(t->lab[0], 32, "seed-%llu", (unsigned long long)seed);
    snprintf(t->lab[1], 32, "mod-%llu", (unsigned long long)(seed % 5));
    snprintf(t->lab[2], 32, "猫");
    for (int i = 0; i < 3; i++) t->labels[i] = t->lab[i];
    snprintf(t->mk[0], 16, "camera");
    snprintf(t->mv[0], 32, "cam-%llu", (unsigned long long)(seed % 7));
    snprintf(t->mk[1], 16, "seed");
    snprintf(t->mv[1], 32, "%llu", (unsigned long long)seed);
    for (int i = 0; i < 2; i++) { t->meta[i].key = t->mk[i]; t->meta[i].value = t->mv[i]; }
    t->it.media = video ? ST_MEDIA_VIDEO : ST_MEDIA_IMAGE;
    t->it.uri = t->uri;
    tu_hash(t->it.hash, seed);
    t->it.size_bytes = 1000 + seed;
    t->it.width = (int32_t)(100 + seed % 1000);
    t->it.height = (int32_t)(50 + seed % 500);
    if (video) {
        t->it.duration_s = 1.5 * (double)(seed % 10 + 1);
        t->it.fps = 29.97;
        t->it.codec = "h264";
        t->n_segs = 1 + seed % 4;
        for (size_t s = 0; s < t->n_segs; s++) {
            tu_vec(t->segvec[s], dim, seed, 100 + s);
            t->segs[s].start_s = (double)s * 2.0;
            t->segs[s].end_s = (double)s * 2.0 + 2.0;
            t->segs[s].vec = t->segvec[s];
        }
    }
    t->it.created_ms = 1700000000000LL + (int64_t)seed;
    t->it.labels = t->labels;
    t->it.n_labels = 3;
    t->it.meta = t->meta;
    t->it.n_meta = 2;
    tu_vec(t->vec, dim, seed, 0);
}

/* Compares a stored item (with its vector and segments, read through txn)
 * with the seeded one; returns a description of the first difference or
 * NULL. */
static inline const char *tu_item_check(st_txn *txn, uint64_t id, uint64_t seed, int dim) {
    static __thread char why[256];
    tu_item t;
    tu_item_make(&t, seed, dim);
    st_item *it = NULL;
    int rc = st_item_get(txn, id, &it);
    if (rc) { snprintf(why, sizeof why, "get %llu: %s", (unsigned long long)id, perr_msg()); return why; }
    const char *bad = NULL;
    if (it->id != id) bad = "id";
    else if (it->media != t.it.media) bad = "media";
    else if (strcmp(it->uri, t.uri)) bad = "uri";
    else if (memcmp(it->hash, t.it.hash, ST_HASH_LEN)) bad = "hash";
    else if (it->size_bytes != t.it.size_bytes) bad = "size";
    else if (it->width != t.it.width || it->height != t.it.height) bad = "wh";
    else if (it->duration_s != t.it.duration_s || it->fps != t.it.fps) bad = "duration/fps";
    else if (strcmp(it->codec, t.it.codec ? t.it.codec : "")) bad = "codec";
    else if (it->created_ms != t.it.created_ms) bad = "created";
    else if (it->n_segments != t.n_segs) bad = "n_segments";
    else if (it->n_labels != 3 || it->n_meta != 2) bad = "label/meta counts";
    else {
        int found = 0;
        for (size_t i = 0; i < 3; i++)
            for (size_t j = 0; j < 3; j++) found += !strcmp(it->labels[i], t.lab[j]);
        if (found != 3) bad = "labels";
        for (size_t i = 0; i < 2 && !bad; i++)
            if (strcmp(it->meta[i].key, t.mk[i]) || strcmp(it->meta[i].value, t.mv[i])) bad = "meta";
    }
    st_item_free(it);
    if (!bad) {
        const float *v;
        int d;
        if (st_item_vector(txn, id, &v, &d) || d != dim || memcmp(v, t.vec, (size_t)dim * 4))
            bad = "vector";
    }
    if (!bad) {
        st_segment *s = NULL;
        size_t n = 0;
        if (st_item_segments(txn, id, &s, &n) || n != t.n_segs) bad = "segments";
        for (size_t i = 0; i < n && !bad; i++)
            if (s[i].start_s != t.segs[i].start_s || s[i].end_s != t.segs[i].end_s ||
                memcmp(s[i].vec, t.segvec[i], (size_t)dim * 4))
                bad = "segment content";
        free(s);
    }
    if (!bad) return NULL;
    snprintf(why, sizeof why, "item %llu (seed %llu): %s differs", (unsigned long long)id,
             (unsigned long long)seed, bad);
    return why;
}

#endif
