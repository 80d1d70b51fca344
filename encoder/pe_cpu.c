/* pe_cpu: run-time detection of the instruction set for the encoder's
 * kernels (see pe_cpu.h).
 *
 * DESIGN: cpuid gives what the CPU implements; xgetbv says whether the OS
 * saves the ymm/zmm registers (without that, AVX instructions fault even
 * when cpuid lists them). Computed once under pthread_once; the kernels
 * read pe_cpu()->isa on each call (one load, negligible next to a row).
 */
#include "encoder/pe_cpu.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PE_X86 1
#endif

static pe_cpu_info g_cpu;
int pe_cpu_isa_cache = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_desc[48];

#ifdef PE_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static void apply_level(pe_isa isa) {
    g_cpu.isa = isa < g_cpu.hw ? isa : g_cpu.hw;
    g_cpu.bf16 = g_cpu.isa >= PE_ISA_AVX512 && g_cpu.hw_bf16;
    g_cpu.vnni = g_cpu.isa >= PE_ISA_AVX512 && g_cpu.hw_vnni;
    snprintf(g_desc, sizeof g_desc, "%s%s%s", pe_isa_name(g_cpu.isa), g_cpu.bf16 ? "+bf16" : "",
             g_cpu.vnni ? "+vnni" : "");
    __atomic_store_n(&pe_cpu_isa_cache, (int)g_cpu.isa, __ATOMIC_RELAXED);
}

static void detect(void) {
    pe_isa hw = PE_ISA_SCALAR;
#ifdef PE_X86
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        if (osxsave && avx) {
            uint64_t xcr0 = xgetbv0();
            int ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
            unsigned max7 = 0, b7 = 0, c7 = 0, a71 = 0; /* a71: leaf 7 subleaf 1, eax */
            if (__get_cpuid_count(7, 0, &max7, &b7, &c7, &d) && max7 >= 1) __get_cpuid_count(7, 1, &a71, &b, &c, &d);
            int avx2 = ymm && fma && ((b7 >> 5) & 1);
            int avx512 = avx2 && zmm && ((b7 >> 16) & 1) /* F */ && ((b7 >> 17) & 1) /* DQ */ &&
                         ((b7 >> 30) & 1) /* BW */ && ((b7 >> 31) & 1) /* VL */;
            hw = avx512 ? PE_ISA_AVX512 : avx2 ? PE_ISA_AVX2 : PE_ISA_SCALAR;
            g_cpu.hw_vnni = avx512 && ((c7 >> 11) & 1);
            g_cpu.hw_bf16 = avx512 && ((a71 >> 5) & 1);
        }
    }
#endif
    g_cpu.hw = hw;
    pe_isa cap = PE_ISA_AVX512;
    const char *env = getenv("PERCEPT_MAX_ISA"), *dnnl = getenv("ONEDNN_MAX_CPU_ISA");
    if (env && *env) {
        if (!strcasecmp(env, "scalar")) cap = PE_ISA_SCALAR;
        else if (!strcasecmp(env, "avx2")) cap = PE_ISA_AVX2;
        else if (!strcasecmp(env, "avx512")) cap = PE_ISA_AVX512;
        else
            fprintf(stderr, "percept: PERCEPT_MAX_ISA=%s not recognised (scalar, avx2, avx512); ignored\n", env);
    } else if (dnnl && *dnnl) {
        /* oneDNN's names: SSE41, AVX, AVX2[_VNNI], AVX512_CORE[_VNNI|_BF16|_AMX], ALL */
        if (!strcasecmp(dnnl, "SSE41") || !strcasecmp(dnnl, "AVX")) cap = PE_ISA_SCALAR;
        else if (!strncasecmp(dnnl, "AVX2", 4)) cap = PE_ISA_AVX2;
        else if (!strcasecmp(dnnl, "AVX512_CORE")) g_cpu.hw_bf16 = g_cpu.hw_vnni = 0;
        else if (!strcasecmp(dnnl, "AVX512_CORE_VNNI")) g_cpu.hw_bf16 = 0;
    }
    apply_level(cap);
}

const pe_cpu_info *pe_cpu(void) {
    pthread_once(&g_once, detect);
    return &g_cpu;
}

const char *pe_isa_name(pe_isa isa) {
    switch (isa) {
    case PE_ISA_AVX512: return "avx512";
    case PE_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

const char *pe_cpu_describe(void) {
    pe_cpu();
    return g_desc;
}

pe_isa pe_cpu_force_isa(pe_isa isa) {
    pe_cpu();
    apply_level(isa);
    return g_cpu.isa;
}
