/* pe_cpu: which vector instructions the encoder's own kernels use, chosen
 * at run time (encoder-internal).
 *
 * Detected once from cpuid and the OS's saved register state (xgetbv), so
 * one binary runs AVX-512 kernels on Zen 4/5 and Intel servers, AVX2 on
 * Zen 3 / Haswell, plain C elsewhere. PERCEPT_MAX_ISA=scalar|avx2|avx512
 * in the environment caps the level (to test or bench a lower level on a
 * bigger CPU); it cannot raise it. One setting caps everything: without
 * PERCEPT_MAX_ISA, oneDNN's own ONEDNN_MAX_CPU_ISA caps these kernels too,
 * and PERCEPT_MAX_ISA caps oneDNN (pe_mm.c) unless that one is set.
 */
#ifndef PERCEPT_PE_CPU_H
#define PERCEPT_PE_CPU_H

typedef enum pe_isa {
    PE_ISA_SCALAR = 0, /* C only (compiler's baseline: SSE2 on x86-64) */
    PE_ISA_AVX2 = 1,   /* AVX2 + FMA */
    PE_ISA_AVX512 = 2, /* AVX-512 F, BW, VL, DQ */
} pe_isa;

typedef struct pe_cpu_info {
    pe_isa hw;         /* what the CPU and OS support */
    pe_isa isa;        /* hw capped by PERCEPT_MAX_ISA: what the kernels use */
    int bf16;          /* AVX512_BF16 (vdpbf16ps) usable at the current level */
    int vnni;          /* AVX512_VNNI (vpdpbusd) usable at the current level */
    int hw_bf16, hw_vnni; /* present in hardware */
} pe_cpu_info;

/* Detected once (thread-safe); the level in force for the encoder's kernels. */
const pe_cpu_info *pe_cpu(void);
/* pe_cpu()->isa without the pthread_once call: the kernels ask on every
 * call, some of which handle 32 values (measured: pthread_once per call
 * cost more than AVX-512 saved on RoPE and the residual adds). */
extern int pe_cpu_isa_cache; /* -1 until detected; __atomic builtins only */
static inline pe_isa pe_cpu_level(void) {
    int v = __atomic_load_n(&pe_cpu_isa_cache, __ATOMIC_RELAXED);
    return v >= 0 ? (pe_isa)v : pe_cpu()->isa;
}
/* "scalar", "avx2", "avx512" */
const char *pe_isa_name(pe_isa isa);
/* A short description of the level in force, e.g. "avx512+bf16+vnni". */
const char *pe_cpu_describe(void);

/* Tests and benchmarks only: run the kernels at `isa` (capped to the
 * hardware, not to PERCEPT_MAX_ISA); returns the level actually set. Not
 * safe while a forward pass is running. */
pe_isa pe_cpu_force_isa(pe_isa isa);

/* For plain C hot loops (not hand-written kernels) that the compiler
 * vectorizes well with AVX2: an AVX2 and a baseline copy of the function,
 * picked by the loader on the running CPU (GNU ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define PE_CLONES_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define PE_CLONES_AVX2
#endif

#endif
