/* idx.c: placeholder bodies so that the engine links against the real header
 * (index/idx.h) while the implementation is written. Every call that would
 * do work fails with PERR_UNSUPPORTED. */
#include "index/idx.h"

#include "common/perr.h"

#include <stdlib.h>

static int not_yet(void) { return perr_set(PERR_UNSUPPORTED, "idx: not implemented yet"); }

idx_opts idx_opts_default(void) {
    idx_opts o = {.auto_train = 1, .train_size = 0, .train_max = 262144,
                  .filter_scan_max = 32768, .check_norm = 1};
    return o;
}
int idx_create(const char *f, int d, const idx_opts *o, idx **out) { *out = NULL; return not_yet(); }
void idx_free(idx *ix) { (void)ix; }
int idx_needs_training(const idx *ix) { return 0; }
size_t idx_train_size(const idx *ix) { return 0; }
int idx_train(idx *ix, const float *x, size_t n) { return not_yet(); }
int idx_add(idx *ix, const float *x, const int64_t *ids, size_t n) { return not_yet(); }
int idx_remove(idx *ix, const int64_t *ids, size_t n, size_t *r) { return not_yet(); }
int idx_contains(const idx *ix, int64_t id) { return 0; }
size_t idx_count(const idx *ix) { return 0; }
int idx_dim(const idx *ix) { return 0; }
const char *idx_factory(const idx *ix) { return ""; }
int idx_search(const idx *ix, const float *q, size_t nq, int k, float *s, int64_t *ids) { return not_yet(); }
int idx_search_filtered(const idx *ix, const float *q, size_t nq, int k, const int64_t *a,
                        size_t na, float *s, int64_t *ids) { return not_yet(); }
int idx_range_search(const idx *ix, const float *q, float m, size_t mx, idx_hits *out) { return not_yet(); }
void idx_hits_clear(idx_hits *h) { (void)h; }
int idx_set_param(idx *ix, const char *name, double v) { return not_yet(); }
void idx_set_threads(int n) { (void)n; }
int idx_get_threads(void) { return 0; }
void idx_get_stats(const idx *ix, idx_stats *st) { (void)ix; (void)st; }
int idx_save(const idx *ix, const char *p, uint64_t s) { return not_yet(); }
int idx_load(const char *p, const idx_opts *o, idx **out, uint64_t *s) { *out = NULL; return not_yet(); }
int idx_normalize(float *x, size_t n, int dim) { return not_yet(); }
