/* pe_mm: packed-weight matrix products on oneDNN (see pe_mm.h).
 *
 * DESIGN: oneDNN picks its kernels by CPU feature at run time (brgemm
 * AVX-512 / AVX512_BF16 / AMX; its jit sgemm on AVX2; SSE4.1 below), so one
 * binary uses what the machine has. A weight matrix is reordered once into
 * the layout the primitive asks for (format_tag_any at a representative M);
 * later primitives for other row counts are created with that exact layout,
 * so the packed copy is never redone. Primitives use a user scratchpad (the
 * thread's), so one primitive may run in several threads at once.
 * Debian's libdnnl is built with OpenMP: every call here runs with the
 * calling thread's OpenMP team size set to 1 (saved and restored), so
 * oneDNN never starts or waits on OpenMP threads (seen stalling ~8 ms at a
 * time on a loaded machine) and the encoder's own pool, with its fixed
 * partition of the work, stays the only parallelism.
 * Never does: write the caller's weights, run a product on another thread.
 */
#include "encoder/pe_mm.h"

#include "common/perr.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Rows of the primitive that chooses the packed layout. The layout does
 * not depend on M for brgemm (checked for 1..1000 rows at the T16/B16
 * shapes); a larger M is the shape most calls have. */
#define PE_MM_PACK_M 128
#define PE_MM_PANEL 64

typedef struct mm_prim {
    int M;
    dnnl_primitive_t p;
    dnnl_memory_desc_t amd, cmd;
    size_t scratch;
} mm_prim;

typedef struct mm_part {
    int c0, n;
    dnnl_memory_desc_t wmd;          /* packed layout */
    dnnl_memory_t wmem;              /* owns the packed weights */
    dnnl_memory_t bmem;              /* owns a copy of the bias, or NULL */
    dnnl_memory_desc_t bmd;
    pthread_mutex_t mu;
    mm_prim **prims;
    int np, cap;
} mm_part;

struct pe_mm {
    int N, K;
    pe_precision prec;
    int nparts;
    size_t bytes;
    mm_part *part;
    char impl[48];                   /* oneDNN's kernel at packing */
    atomic_int ref_used;             /* some primitive fell back to reference code */
};

struct pe_mm_tls {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_n;
    void *stage;                     /* A in bf16, or A made dense */
    size_t stage_n;
    float *cbuf;                     /* dense C when the caller's is strided */
    size_t cbuf_n;
};

/* ------------------------------------------------------------ engine */

static dnnl_engine_t g_eng;
static dnnl_status_t g_eng_st;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* PERCEPT_MAX_ISA caps oneDNN too (pe_cpu.h), unless ONEDNN_MAX_CPU_ISA
 * says otherwise; oneDNN takes the cap only before its first ISA query. */
static pthread_once_t g_isa_once = PTHREAD_ONCE_INIT;
static void isa_init(void) {
    const char *env = getenv("PERCEPT_MAX_ISA"), *dnnl = getenv("ONEDNN_MAX_CPU_ISA");
    if (!env || !*env || (dnnl && *dnnl)) return;
    if (!strcasecmp(env, "scalar")) dnnl_set_max_cpu_isa(dnnl_cpu_isa_sse41);
    else if (!strcasecmp(env, "avx2")) dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2);
}

static void eng_init(void) {
    pthread_once(&g_isa_once, isa_init);
    g_eng_st = dnnl_engine_create(&g_eng, dnnl_cpu, 0);
}

static int dnnl_err(dnnl_status_t st, const char *what) {
    if (st == dnnl_success) return PERR_OK;
    if (st == dnnl_out_of_memory) return perr_set(PERR_NOMEM, "oneDNN: %s: out of memory", what);
    if (st == dnnl_unimplemented)
        return perr_set(PERR_UNSUPPORTED, "oneDNN: %s: no implementation on this CPU (%s)", what, pe_mm_isa());
    return perr_set(PERR_INTERNAL, "oneDNN: %s: status %d", what, (int)st);
}

static int engine(dnnl_engine_t *e) {
    pthread_once(&g_once, eng_init);
    *e = g_eng;
    return dnnl_err(g_eng_st, "CPU engine");
}

/* OpenMP team of one around every oneDNN call (see DESIGN). */
static int omp_one(void) {
    int prev = omp_get_max_threads();
    if (prev != 1) omp_set_num_threads(1);
    return prev;
}
static void omp_restore(int prev) {
    if (prev != 1) omp_set_num_threads(prev);
}

const char *pe_mm_isa(void) {
    pthread_once(&g_isa_once, isa_init);
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "generic";
    }
}

int pe_mm_native_bf16(void) {
    pthread_once(&g_isa_once, isa_init);
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & bf16) == bf16;
}

/* ------------------------------------------------------------ packing */

static dnnl_data_type_t wtype(pe_precision p) { return p == PE_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32; }

/* matmul descriptor for M rows against part p (weights md given). */
/* A and C are always dense: oneDNN 2.6's brgemm matmul takes no strided
 * destination (it falls back to gemm, which cannot read packed weights,
 * then to the reference code), so pe_mm_run stages strided operands. */
static int make_pd(const pe_mm *mm, const mm_part *p, int M, const dnnl_memory_desc_t *wmd,
                   dnnl_primitive_desc_t *pd, dnnl_memory_desc_t *amd, dnnl_memory_desc_t *cmd) {
    dnnl_engine_t eng;
    int rc = engine(&eng);
    if (rc) return rc;
    dnnl_dims_t ad = {M, mm->K}, cd = {M, p->n};
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(amd, 2, ad, wtype(mm->prec), dnnl_ab);
    if (!st) st = dnnl_memory_desc_init_by_tag(cmd, 2, cd, dnnl_f32, dnnl_ab);
    if (st) return dnnl_err(st, "matmul memory descriptors");
    dnnl_matmul_desc_t md;
    st = dnnl_matmul_desc_init(&md, amd, wmd, p->bmem ? &p->bmd : NULL, cmd);
    if (st) return dnnl_err(st, "matmul descriptor");
    dnnl_primitive_attr_t attr;
    if ((st = dnnl_primitive_attr_create(&attr))) return dnnl_err(st, "matmul attributes");
    st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (!st) st = dnnl_primitive_desc_create(pd, &md, attr, eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st) return perr_prefix(dnnl_err(st, "matmul"), "%d x %d x %d product", M, p->n, mm->K);
    return PERR_OK;
}

static int pack_part(pe_mm *mm, mm_part *p, const float *w, int ldw, int w_nk, const float *bias) {
    dnnl_engine_t eng;
    int rc = engine(&eng);
    if (rc) return rc;
    dnnl_status_t st;
    if (bias) {
        dnnl_dims_t bd = {1, p->n};
        if ((st = dnnl_memory_desc_init_by_tag(&p->bmd, 2, bd, dnnl_f32, dnnl_ab)) ||
            (st = dnnl_memory_create(&p->bmem, &p->bmd, eng, DNNL_MEMORY_ALLOCATE)))
            return dnnl_err(st, "bias");
        void *h;
        if ((st = dnnl_memory_get_data_handle(p->bmem, &h))) return dnnl_err(st, "bias");
        memcpy(h, bias + p->c0, (size_t)p->n * sizeof(float));
    }
    /* the layout oneDNN wants */
    dnnl_memory_desc_t any, amd, cmd;
    dnnl_dims_t wd = {mm->K, p->n};
    if ((st = dnnl_memory_desc_init_by_tag(&any, 2, wd, wtype(mm->prec), dnnl_format_tag_any)))
        return dnnl_err(st, "weights descriptor");
    dnnl_primitive_desc_t pd;
    if ((rc = make_pd(mm, p, PE_MM_PACK_M, &any, &pd, &amd, &cmd))) return rc;
    p->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(mm->impl, sizeof mm->impl, "%s", impl);
    dnnl_primitive_desc_destroy(pd);
    if ((st = dnnl_memory_create(&p->wmem, &p->wmd, eng, DNNL_MEMORY_ALLOCATE))) return dnnl_err(st, "packed weights");
    mm->bytes += dnnl_memory_desc_get_size(&p->wmd);

    /* the caller's float32 matrix seen as weights [K, n] */
    dnnl_memory_desc_t src;
    dnnl_dims_t ss = {w_nk ? 1 : ldw, w_nk ? ldw : 1};
    const float *base = w_nk ? w + (size_t)p->c0 * ldw : w + p->c0;
    if ((st = dnnl_memory_desc_init_by_strides(&src, 2, wd, dnnl_f32, ss))) return dnnl_err(st, "weights source");
    dnnl_memory_t smem = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t rp = NULL;
    dnnl_stream_t s = NULL;
    /* oneDNN only reads a reorder's source */
    st = dnnl_memory_create(&smem, &src, eng, (void *)base);
    if (!st) st = dnnl_reorder_primitive_desc_create(&rpd, &src, eng, &p->wmd, eng, NULL);
    if (!st) st = dnnl_primitive_create(&rp, rpd);
    if (!st) st = dnnl_stream_create(&s, eng, dnnl_stream_default_flags);
    if (!st) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, smem}, {DNNL_ARG_TO, p->wmem}};
        st = dnnl_primitive_execute(rp, s, 2, args);
        if (!st) st = dnnl_stream_wait(s);
    }
    if (s) dnnl_stream_destroy(s);
    if (rp) dnnl_primitive_destroy(rp);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (smem) dnnl_memory_destroy(smem);
    return dnnl_err(st, "packing weights");
}

int pe_mm_new(int N, int K, const float *w, int ldw, int w_nk, const float *bias, pe_precision prec, int parts,
              pe_mm **out) {
    *out = NULL;
    if (N <= 0 || K <= 0 || parts < 1) return perr_set(PERR_INVALID, "matrix product: %d x %d, %d parts", N, K, parts);
    if (prec == PE_PRECISION_BF16 && !pe_mm_native_bf16())
        return perr_set(PERR_UNSUPPORTED, "bf16 needs a CPU with AVX512_BF16 or AMX; this one runs %s", pe_mm_isa());
    pe_mm *mm = calloc(1, sizeof *mm);
    if (!mm) return perr_set(PERR_NOMEM, "matrix product");
    mm->N = N;
    mm->K = K;
    mm->prec = prec;
    /* whole panels per part, as equal as they go */
    int panels = (N + PE_MM_PANEL - 1) / PE_MM_PANEL;
    if (parts > panels) parts = panels;
    mm->part = calloc(parts, sizeof *mm->part);
    if (!mm->part) { free(mm); return perr_set(PERR_NOMEM, "matrix product"); }
    int prev = omp_one(), rc = PERR_OK;
    for (int i = 0; i < parts; i++) {
        mm_part *p = &mm->part[i];
        int pa = panels * i / parts, pb = panels * (i + 1) / parts;
        p->c0 = pa * PE_MM_PANEL;
        p->n = (pb * PE_MM_PANEL < N ? pb * PE_MM_PANEL : N) - p->c0;
        pthread_mutex_init(&p->mu, NULL);
        mm->nparts++;
        if ((rc = pack_part(mm, p, w, ldw, w_nk, bias))) break;
    }
    omp_restore(prev);
    if (rc) { pe_mm_free(mm); return rc; }
    *out = mm;
    return PERR_OK;
}

void pe_mm_free(pe_mm *mm) {
    if (!mm) return;
    for (int i = 0; i < mm->nparts; i++) {
        mm_part *p = &mm->part[i];
        for (int k = 0; k < p->np; k++) {
            dnnl_primitive_destroy(p->prims[k]->p);
            free(p->prims[k]);
        }
        free(p->prims);
        if (p->wmem) dnnl_memory_destroy(p->wmem);
        if (p->bmem) dnnl_memory_destroy(p->bmem);
        pthread_mutex_destroy(&p->mu);
    }
    free(mm->part);
    free(mm);
}

int pe_mm_parts(const pe_mm *mm) { return mm->nparts; }

void pe_mm_part_cols(const pe_mm *mm, int part, int *c0, int *n) {
    *c0 = mm->part[part].c0;
    *n = mm->part[part].n;
}

size_t pe_mm_bytes(const pe_mm *mm) { return mm ? mm->bytes : 0; }

const char *pe_mm_impl(const pe_mm *mm, int *ref_used) {
    if (ref_used) *ref_used = atomic_load_explicit(&((pe_mm *)mm)->ref_used, memory_order_relaxed);
    return mm->impl;
}

/* ------------------------------------------------------------ running */

static mm_prim *find_prim(mm_part *p, int M) {
    for (int i = 0; i < p->np; i++)
        if (p->prims[i]->M == M) return p->prims[i];
    return NULL;
}

static int get_prim(const pe_mm *mm, mm_part *p, int M, mm_prim **out) {
    pthread_mutex_lock(&p->mu);
    mm_prim *q = find_prim(p, M);
    pthread_mutex_unlock(&p->mu);
    if (q) { *out = q; return PERR_OK; }
    q = calloc(1, sizeof *q);
    if (!q) return perr_set(PERR_NOMEM, "matmul primitive");
    q->M = M;
    dnnl_primitive_desc_t pd;
    int rc = make_pd(mm, p, M, &p->wmd, &pd, &q->amd, &q->cmd);
    if (rc) { free(q); return rc; }
    q->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
        !strncmp(impl, "ref", 3))
        atomic_store_explicit(&((pe_mm *)mm)->ref_used, 1, memory_order_relaxed); /* reported, not fatal */
    dnnl_status_t st = dnnl_primitive_create(&q->p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st) { free(q); return dnnl_err(st, "matmul primitive"); }
    pthread_mutex_lock(&p->mu);
    mm_prim *again = find_prim(p, M);
    int kept = 0;
    if (!again) {
        if (p->np == p->cap) {
            int cap = p->cap ? 2 * p->cap : 8;
            mm_prim **np = realloc(p->prims, cap * sizeof *np);
            if (np) { p->prims = np; p->cap = cap; }
        }
        if (p->np < p->cap) { p->prims[p->np++] = q; kept = 1; }
    }
    pthread_mutex_unlock(&p->mu);
    if (!kept) {
        /* another thread made the same one meanwhile, or no room to keep it */
        dnnl_primitive_destroy(q->p);
        free(q);
        if (!again) return perr_set(PERR_NOMEM, "matmul primitive cache");
        q = again;
    }
    *out = q;
    return PERR_OK;
}

static void *grow(void **buf, size_t *have, size_t need) {
    if (need <= *have) return *buf;
    void *p = NULL;
    if (posix_memalign(&p, 64, need ? need : 64)) return NULL;
    free(*buf);
    *buf = p;
    *have = need;
    return p;
}

/* float32 -> bf16, round to nearest even (inputs are finite). */
static void to_bf16(int M, int K, const float *A, int lda, void *outv) {
    uint16_t *out = outv;
    for (int m = 0; m < M; m++) {
        const uint32_t *a = (const uint32_t *)(const void *)(A + (size_t)m * lda);
        uint16_t *o = out + (size_t)m * K;
        for (int k = 0; k < K; k++) {
            uint32_t u = a[k];
            o[k] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
}

int pe_mm_run(const pe_mm *mm, int part, pe_mm_tls *t, int M, const float *A, int lda, float *C, int ldc) {
    if (M <= 0) return PERR_OK;
    mm_part *p = &mm->part[part];
    int K = mm->K, n = p->n;
    const void *src = A;
    if (mm->prec == PE_PRECISION_BF16) {
        if (!grow(&t->stage, &t->stage_n, (size_t)M * K * sizeof(uint16_t)))
            return perr_set(PERR_NOMEM, "bf16 staging of %d x %d", M, K);
        to_bf16(M, K, A, lda, t->stage);
        src = t->stage;
    } else if (lda != K) {
        if (!grow(&t->stage, &t->stage_n, (size_t)M * K * sizeof(float)))
            return perr_set(PERR_NOMEM, "staging of %d x %d", M, K);
        for (int m = 0; m < M; m++) memcpy((float *)t->stage + (size_t)m * K, A + (size_t)m * lda, K * sizeof(float));
        src = t->stage;
    }
    float *dst = C;
    if (ldc != n) {
        if (!grow((void **)&t->cbuf, &t->cbuf_n, (size_t)M * n * sizeof(float)))
            return perr_set(PERR_NOMEM, "staging of %d x %d", M, n);
        dst = t->cbuf;
    }
    int prev = omp_one();
    mm_prim *q = NULL;
    int rc = get_prim(mm, p, M, &q);
    if (rc) goto out;
    if (q->scratch && !grow(&t->scratch, &t->scratch_n, q->scratch)) {
        rc = perr_set(PERR_NOMEM, "matmul scratchpad of %zu bytes", q->scratch);
        goto out;
    }
    dnnl_engine_t eng = g_eng;
    dnnl_memory_t am = NULL, cm = NULL, sm = NULL;
    dnnl_status_t st = dnnl_memory_create(&am, &q->amd, eng, (void *)src);
    if (!st) st = dnnl_memory_create(&cm, &q->cmd, eng, dst);
    if (!st && q->scratch) {
        dnnl_memory_desc_t sd;
        dnnl_dims_t sdims = {(dnnl_dim_t)q->scratch};
        st = dnnl_memory_desc_init_by_tag(&sd, 1, sdims, dnnl_u8, dnnl_a);
        if (!st) st = dnnl_memory_create(&sm, &sd, eng, t->scratch);
    }
    if (!st) {
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, p->wmem}, {DNNL_ARG_DST, cm}};
        int na = 3;
        if (p->bmem) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bmem};
        if (sm) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sm};
        st = dnnl_primitive_execute(q->p, t->stream, na, args);
        if (!st) st = dnnl_stream_wait(t->stream);
    }
    if (am) dnnl_memory_destroy(am);
    if (cm) dnnl_memory_destroy(cm);
    if (sm) dnnl_memory_destroy(sm);
    rc = dnnl_err(st, "matmul");
    if (!rc && dst != C)
        for (int m = 0; m < M; m++) memcpy(C + (size_t)m * ldc, dst + (size_t)m * n, n * sizeof(float));
out:
    omp_restore(prev);
    return rc;
}

int pe_mm_tls_new(pe_mm_tls **out) {
    *out = NULL;
    dnnl_engine_t eng;
    int rc = engine(&eng);
    if (rc) return rc;
    pe_mm_tls *t = calloc(1, sizeof *t);
    if (!t) return perr_set(PERR_NOMEM, "matmul thread state");
    dnnl_status_t st = dnnl_stream_create(&t->stream, eng, dnnl_stream_default_flags);
    if (st) { free(t); return dnnl_err(st, "stream"); }
    *out = t;
    return PERR_OK;
}

void pe_mm_tls_free(pe_mm_tls *t) {
    if (!t) return;
    if (t->stream) dnnl_stream_destroy(t->stream);
    free(t->scratch);
    free(t->stage);
    free(t->cbuf);
    free(t);
}
