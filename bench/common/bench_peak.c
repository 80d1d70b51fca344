/* bench_peak: see bench_peak.h.
 *
 * DESIGN: each kernel runs NACC independent accumulator chains (more than
 * latency x issue width on any current core: FMA latency 4 x 2 pipes = 8
 * chains for fp32), all operands in registers, so the loop is bound by the
 * execution units alone. The instructions are written as inline asm: GCC
 * 12 spills the accumulators of the vpdpbusd intrinsic to the stack
 * (measured 326 instead of ~900 GOP/s). The accumulators are summed into a volatile sink
 * at the end so the compiler keeps every operation; without -ffast-math it
 * cannot reassociate the chains. Threads start together on a barrier and
 * each thread's own CPU time is what counts (robust to time slicing on a
 * shared machine: a core's rate while it runs); the wall-clock rate from
 * release to the last join is kept beside it (only meaningful when the
 * cores are free).
 */
#define _GNU_SOURCE
#include "bench/common/bench_peak.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEAK_X86 1
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile float g_sink_f;
static volatile int g_sink_i;

#ifdef PEAK_X86
#define R4(X) X(0) X(1) X(2) X(3)
#define R12(X) R4(X) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define R24(X) R12(X) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)

/* 12 chains of ymm FMAs (16 ymm registers: 12 + 2 operands). */
__attribute__((target("avx2,fma"))) static double loop_fp32_avx2(long iters) {
    __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-6f);
#define D(i) __m256 c##i = _mm256_set1_ps((float)(i));
    R12(D)
#undef D
    for (long it = 0; it < iters; it++) {
#define F(i) __asm__("vfmadd231ps %1, %2, %0" : "+x"(c##i) : "x"(a), "x"(b));
        R12(F)
#undef F
    }
    __m256 s = _mm256_setzero_ps();
#define S(i) s = _mm256_add_ps(s, c##i);
    R12(S)
#undef S
    g_sink_f = _mm256_cvtss_f32(s);
    return 12.0 * 8 * 2 * iters;
}

/* 24 chains of zmm FMAs (32 zmm registers). */
__attribute__((target("avx512f,fma"))) static double loop_fp32_avx512(long iters) {
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
#define D(i) __m512 c##i = _mm512_set1_ps((float)(i));
    R24(D)
#undef D
    for (long it = 0; it < iters; it++) {
#define F(i) __asm__("vfmadd231ps %1, %2, %0" : "+v"(c##i) : "v"(a), "v"(b));
        R24(F)
#undef F
    }
    __m512 s = _mm512_setzero_ps();
#define S(i) s = _mm512_add_ps(s, c##i);
    R24(S)
#undef S
    g_sink_f = _mm512_reduce_add_ps(s);
    return 24.0 * 16 * 2 * iters;
}

/* 24 chains of vdpbf16ps: 16 lanes x (2 products + 2 adds). */
__attribute__((target("avx512f,avx512bf16"))) static double loop_bf16(long iters) {
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);
#define D(i) __m512 c##i = _mm512_set1_ps((float)(i));
    R24(D)
#undef D
    for (long it = 0; it < iters; it++) {
#define F(i) __asm__("vdpbf16ps %1, %2, %0" : "+v"(c##i) : "v"(a), "v"(b));
        R24(F)
#undef F
    }
    __m512 s = _mm512_setzero_ps();
#define S(i) s = _mm512_add_ps(s, c##i);
    R24(S)
#undef S
    g_sink_f = _mm512_reduce_add_ps(s);
    return 24.0 * 16 * 4 * iters;
}

/* 24 chains of vpdpbusd: 16 lanes x (4 products + 4 adds). */
__attribute__((target("avx512f,avx512vnni"))) static double loop_int8(long iters) {
    __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01ff01ff);
#define D(i) __m512i c##i = _mm512_set1_epi32(i);
    R24(D)
#undef D
    for (long it = 0; it < iters; it++) {
#define F(i) __asm__("vpdpbusd %1, %2, %0" : "+v"(c##i) : "v"(a), "v"(b));
        R24(F)
#undef F
    }
    __m512i s = _mm512_setzero_si512();
#define S(i) s = _mm512_add_epi32(s, c##i);
    R24(S)
#undef S
    g_sink_i = _mm512_reduce_add_epi32(s);
    return 24.0 * 16 * 8 * iters;
}
#endif

typedef double (*loop_fn)(long);

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct run {
    loop_fn fn;
    long iters;
    pthread_barrier_t *bar;
    double ops, cpu; /* out: this thread's operations and CPU seconds */
} run;

static void *thread_main(void *arg) {
    run *r = arg;
    pthread_barrier_wait(r->bar);
    double c = cpu_now();
    r->ops = r->fn(r->iters);
    r->cpu = cpu_now() - c;
    return NULL;
}

/* nt threads each run fn(iters) at once. *wall: all operations over the
 * wall time from release to the last join; returns the sum over threads
 * of operations per CPU-second of that thread. */
static double run_threads(loop_fn fn, long iters, int nt, double *wall) {
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, nt);
    pthread_t th[BENCH_PEAK_MAXT];
    run r[BENCH_PEAK_MAXT];
    for (int i = 0; i < nt; i++) r[i] = (run){fn, iters, &bar, 0, 0};
    for (int i = 1; i < nt; i++) pthread_create(&th[i], NULL, thread_main, &r[i]);
    double t0 = now();
    thread_main(&r[0]);
    for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
    double dt = now() - t0, ops = 0, per_cpu = 0;
    for (int i = 0; i < nt; i++) {
        ops += r[i].ops;
        per_cpu += r[i].ops / (r[i].cpu > 0 ? r[i].cpu : 1e-9);
    }
    pthread_barrier_destroy(&bar);
    *wall = ops / dt;
    return per_cpu;
}

static void measure(loop_fn fn, int nt, double seconds, int reps, double *cpu_rate, double *wall_rate) {
    long iters = 1000;
    for (;;) { /* calibrate on one thread */
        double c = cpu_now();
        fn(iters);
        double dt = cpu_now() - c;
        if (dt >= seconds / 4 || iters > (1L << 40)) {
            iters = (long)(iters * (seconds / (dt > 0 ? dt : 1e-9)));
            break;
        }
        iters *= 4;
    }
    if (iters < 1000) iters = 1000;
    double best = 0, best_wall = 0;
    for (int r = 0; r < reps; r++) {
        double w, v = run_threads(fn, iters, nt, &w);
        if (v > best) best = v;
        if (w > best_wall) best_wall = w;
    }
    *cpu_rate = best * 1e-9;
    *wall_rate = best_wall * 1e-9;
}

void bench_peak_measure(bench_peak *p, int max_threads, double seconds, int reps) {
    memset(p, 0, sizeof *p);
    if (max_threads < 1) max_threads = 1;
    if (max_threads > BENCH_PEAK_MAXT) max_threads = BENCH_PEAK_MAXT;
    p->max_threads = max_threads;
#ifdef PEAK_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = __builtin_cpu_supports("avx512f");
    int bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
    int vnni = avx512 && __builtin_cpu_supports("avx512vnni");
    snprintf(p->flags, sizeof p->flags, "%s%s%s%s", avx2 ? "avx2 fma" : "sse2", avx512 ? " avx512f" : "",
             bf16 ? " avx512_bf16" : "", vnni ? " avx512_vnni" : "");
    loop_fn fns[BENCH_PEAK_KINDS] = {avx2 ? loop_fp32_avx2 : NULL, avx512 ? loop_fp32_avx512 : NULL,
                                     bf16 ? loop_bf16 : NULL, vnni ? loop_int8 : NULL};
    for (int k = 0; k < BENCH_PEAK_KINDS; k++)
        for (int t = 1; t <= max_threads; t++)
            if (fns[k]) measure(fns[k], t, seconds, reps, &p->rate[k][t], &p->wall[k][t]);
#else
    snprintf(p->flags, sizeof p->flags, "not x86");
    (void)seconds;
    (void)reps;
#endif
}

const char *bench_peak_name(bench_peak_kind k) {
    static const char *n[] = {"fp32 FMA, AVX2 (ymm)", "fp32 FMA, AVX-512 (zmm)", "bf16 dot, vdpbf16ps (zmm)",
                              "int8 dot, vpdpbusd (zmm)"};
    return k < BENCH_PEAK_KINDS ? n[k] : "?";
}

double bench_peak_fp32(const bench_peak *p, int threads) {
    if (threads < 1) threads = 1;
    if (threads > p->max_threads) threads = p->max_threads;
    double v = p->rate[BENCH_PEAK_FP32_AVX512][threads];
    return v > 0 ? v : p->rate[BENCH_PEAK_FP32_AVX2][threads];
}
