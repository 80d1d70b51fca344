/* bench_ckpt: random-weight PE_core checkpoints in the real shapes, for
 * benchmarks (see bench_ckpt.c). Not thread-safe (one global generator). */
#ifndef PERCEPT_BENCH_CKPT_H
#define PERCEPT_BENCH_CKPT_H

#include "encoder/pe.h"

#include <stdint.h>

/* Uniform in [-1, 1) from a xorshift generator; bench_seed() restarts it. */
float bench_urand(void);
void bench_seed(uint64_t seed);
/* Writes c's tensors (real key names and shapes, random values) as a
 * safetensors file at path. */
int bench_write_model(const pe_config *c, const char *path);

#endif
