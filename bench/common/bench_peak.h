/* bench_peak: this CPU's arithmetic peaks, measured by tight loops of
 * independent multiply-adds (the ceiling a matrix-product kernel can
 * reach), so that benchmarks can print "% of this CPU's peak" instead of
 * a fraction of some library's rate.
 *
 * Per precision: fp32 FMA with AVX2 (vfmadd231ps ymm) and AVX-512 (zmm),
 * bf16 dot products (vdpbf16ps zmm, AVX512_BF16), int8 dot products
 * (vpdpbusd zmm, AVX512_VNNI); each at 1..max_threads threads running at
 * once. An entry the CPU lacks is 0. Instruction sets are chosen at run
 * time (function target attributes + cpuid), never at build time.
 */
#ifndef PERCEPT_BENCH_PEAK_H
#define PERCEPT_BENCH_PEAK_H

enum { BENCH_PEAK_MAXT = 8 };

typedef enum bench_peak_kind {
    BENCH_PEAK_FP32_AVX2, /* GFLOP/s: 2 per lane per FMA */
    BENCH_PEAK_FP32_AVX512,
    BENCH_PEAK_BF16,      /* GFLOP/s: vdpbf16ps = 2 products + 2 adds per fp32 lane */
    BENCH_PEAK_INT8,      /* GOP/s: vpdpbusd = 4 products + 4 adds per int32 lane */
    BENCH_PEAK_KINDS
} bench_peak_kind;

typedef struct bench_peak {
    int max_threads;
    /* rate[kind][t]: t threads at once (t = 1..max_threads), the sum of
     * each thread's operations per CPU-second of its own; 0 = absent.
     * wall[kind][t]: all operations over the wall time (free cores only). */
    double rate[BENCH_PEAK_KINDS][BENCH_PEAK_MAXT + 1];
    double wall[BENCH_PEAK_KINDS][BENCH_PEAK_MAXT + 1];
    char flags[96];       /* "avx2 fma avx512f avx512_bf16 avx512_vnni" as present */
} bench_peak;

/* Measures every kind at 1..max_threads threads (best of `reps` runs of
 * ~`seconds` each; 0.05 s and 5 are plenty). */
void bench_peak_measure(bench_peak *p, int max_threads, double seconds, int reps);
const char *bench_peak_name(bench_peak_kind k);
/* The fp32 figure of the widest vectors this CPU has (AVX-512, else AVX2). */
double bench_peak_fp32(const bench_peak *p, int threads);

#endif
