/* The encoder's vectorized kernels against their scalar references at
 * every instruction-set level this machine has (AVX-512, AVX2, C, forced
 * through pe_cpu_force_isa), and the thread pool. Bounds are stated per
 * kernel and printed. */
#include "common/perr.h"
#include "encoder/pe_cpu.h"
#include "encoder/pe_kernels.h"
#include "encoder/pe_threads.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(float lo, float hi) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static void test_gelu(void) {
    /* Dense sweep of [-12, 12] plus the special values. */
    int n = 240001;
    float *x = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    REQUIRE(x && a && b);
    for (int i = 0; i < n; i++) x[i] = -12.0f + 24.0f * i / (n - 1);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = 1e-30f;
    x[3] = -50.0f;
    x[4] = 50.0f;
    memcpy(a, x, n * sizeof(float));
    memcpy(b, x, n * sizeof(float));
    pe_gelu(a, n);
    pe_gelu_ref(b, n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        /* erf error of A&S 7.1.26 is < 1.5e-7 absolute; GELU multiplies
         * it by |x|/2, plus float rounding of the result. */
        double err = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(x[i]));
        if (err > worst) worst = err;
        if (!(err <= 3e-7)) {
            t_fail(__FILE__, __LINE__, "gelu(%g) = %.9g, reference %.9g", x[i], a[i], b[i]);
            break;
        }
    }
    printf("  gelu: max |fast - erff| / max(1,|x|) = %.3g\n", worst);
    free(x);
    free(a);
    free(b);
}

static void test_softmax_exp(void) {
    for (int n = 1; n < 700; n += (n < 20 ? 1 : 37)) {
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        for (int i = 0; i < n; i++) a[i] = b[i] = frand(-40.0f, 40.0f);
        if (n > 3) a[2] = b[2] = -1e30f; /* underflows to 0 */
        float sa = pe_softmax_exp(a, n), sb = pe_softmax_exp_ref(b, n);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double err = fabs((double)a[i] - b[i]) / fmax(fabs(b[i]), 1e-30);
            if (b[i] > 1e-30 && err > worst) worst = err;
        }
        CHECK(fabs((double)sa - sb) <= 1e-6 * sb);
        if (!(worst <= 4e-7)) t_fail(__FILE__, __LINE__, "softmax_exp n=%d: relative error %.3g", n, worst);
        free(a);
        free(b);
    }
}

static void test_layernorm(void) {
    int dims[] = {1, 7, 8, 9, 64, 100, 192, 768, 1031};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int d = dims[t];
        float *x = malloc(d * sizeof(float)), *g = malloc(d * sizeof(float)), *bb = malloc(d * sizeof(float));
        float *y1 = malloc(d * sizeof(float)), *y2 = malloc(d * sizeof(float));
        for (int i = 0; i < d; i++) {
            x[i] = frand(-3, 3) + 20.0f; /* a large mean: two-pass variance */
            g[i] = frand(0.5f, 1.5f);
            bb[i] = frand(-0.1f, 0.1f);
        }
        pe_layernorm(x, y1, d, g, bb, 1e-5f);
        pe_layernorm_ref(x, y2, d, g, bb, 1e-5f);
        double md = t_rel_maxdiff(y1, y2, d);
        if (!(md <= 2e-6)) t_fail(__FILE__, __LINE__, "layernorm d=%d: %.3g", d, md);
        /* in place works too */
        pe_layernorm(x, x, d, g, bb, 1e-5f);
        CHECK(t_rel_maxdiff(x, y1, d) == 0);
        free(x);
        free(g);
        free(bb);
        free(y1);
        free(y2);
    }
}

static void gemm_case(int M, int N, int K, float beta, int small) {
    int lda = K + 3, ldw = K + 1, ldc = N + 2;
    float *A = malloc((size_t)M * lda * sizeof(float)), *W = malloc((size_t)N * ldw * sizeof(float));
    float *C1 = malloc((size_t)M * ldc * sizeof(float)), *C2 = malloc((size_t)M * ldc * sizeof(float));
    for (size_t i = 0; i < (size_t)M * lda; i++) A[i] = frand(-1, 1);
    for (size_t i = 0; i < (size_t)N * ldw; i++) W[i] = frand(-1, 1);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C1[i] = C2[i] = frand(-1, 1);
    if (small) pe_gemm_nt_small(M, N, K, A, lda, W, ldw, beta, C1, ldc);
    else pe_gemm_nt(M, N, K, A, lda, W, ldw, beta, C1, ldc);
    pe_gemm_nt_ref(M, N, K, A, lda, W, ldw, beta, C2, ldc);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < ldc; n++) {
            size_t i = (size_t)m * ldc + n;
            double e = fabs((double)C1[i] - C2[i]);
            if (n >= N && e != 0) t_fail(__FILE__, __LINE__, "gemm wrote outside C (m=%d n=%d)", m, n);
            if (e > worst) worst = e;
        }
    /* |sum of K products of values in [-1,1]| error ~ K * eps */
    double bound = 4e-7 * K + 1e-6;
    if (!(worst <= bound))
        t_fail(__FILE__, __LINE__, "gemm %s M=%d N=%d K=%d beta=%g: max error %.3g > %.3g", small ? "small" : "nt", M,
               N, K, beta, worst, bound);
    free(A);
    free(W);
    free(C1);
    free(C2);
}

static void test_gemm(void) {
    int Ms[] = {1, 2, 3, 5, 16, 17, 70};
    int Ns[] = {1, 3, 4, 5, 33, 64};
    int Ks[] = {1, 7, 8, 9, 64, 100, 515};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++) {
                gemm_case(Ms[a], Ns[b], Ks[c], 0.0f, 1);
                gemm_case(Ms[a], Ns[b], Ks[c], 1.0f, 0);
            }
}

static void test_rope(void) {
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, c[4], s[4];
    float ang[4] = {0, 0.5f, -1.25f, 3.0f};
    for (int i = 0; i < 4; i++) { c[i] = cosf(ang[i]); s[i] = sinf(ang[i]); }
    float w[8];
    memcpy(w, v, sizeof v);
    pe_rope(w, c, s, 4);
    for (int i = 0; i < 4; i++) {
        float u = v[2 * i], x = v[2 * i + 1];
        CHECK(fabsf(w[2 * i] - (u * c[i] - x * s[i])) < 1e-6f);
        CHECK(fabsf(w[2 * i + 1] - (x * c[i] + u * s[i])) < 1e-6f);
    }
    CHECK(w[0] == 1 && w[1] == 2); /* angle 0: unchanged */
    /* every pair count up to 40 (vector bodies and tails), against the
     * reference; one rounding of a product-sum, so a few ulp */
    float a[80], b[80], cc[40], ss[40];
    for (int n = 1; n <= 40; n++) {
        for (int i = 0; i < n; i++) {
            float t = frand(-10, 10);
            cc[i] = cosf(t);
            ss[i] = sinf(t);
        }
        for (int i = 0; i < 80; i++) a[i] = b[i] = frand(-3, 3);
        pe_rope(a, cc, ss, n);
        pe_rope_ref(b, cc, ss, n);
        for (int i = 0; i < 80; i++) {
            double e = fabs((double)a[i] - b[i]);
            if (i >= 2 * n && e != 0) t_fail(__FILE__, __LINE__, "rope n=%d wrote past the pairs at %d", n, i);
            if (!(e <= 2e-6)) { t_fail(__FILE__, __LINE__, "rope n=%d [%d]: %.9g vs %.9g", n, i, a[i], b[i]); break; }
        }
    }
}

static void test_rope_heads(void) {
    /* head dims with and without a tail of pairs, 1-5 heads, with a scale;
     * against the reference, and nothing written past the heads */
    int hds[] = {2, 8, 14, 16, 24, 64, 80};
    float a[5 * 80 + 8], b[5 * 80 + 8], cc[40], ss[40];
    for (size_t k = 0; k < sizeof hds / sizeof hds[0]; k++)
        for (int nh = 1; nh <= 5; nh++) {
            int hd = hds[k], n = nh * hd;
            float scale = nh == 2 ? 1.0f : 1.0f / sqrtf((float)hd);
            for (int i = 0; i < hd / 2; i++) {
                float t = frand(-10, 10);
                cc[i] = cosf(t);
                ss[i] = sinf(t);
            }
            for (int i = 0; i < n + 8; i++) a[i] = b[i] = frand(-3, 3);
            pe_rope_heads(a, nh, hd, cc, ss, scale);
            pe_rope_heads_ref(b, nh, hd, cc, ss, scale);
            for (int i = 0; i < n + 8; i++) {
                double e = fabs((double)a[i] - b[i]);
                if (i >= n && e != 0) t_fail(__FILE__, __LINE__, "rope_heads hd=%d nh=%d wrote past the end", hd, nh);
                if (!(e <= 2e-6)) {
                    t_fail(__FILE__, __LINE__, "rope_heads hd=%d nh=%d [%d]: %.9g vs %.9g", hd, nh, i, a[i], b[i]);
                    break;
                }
            }
        }
}

static void test_residual(void) {
    float x1[70], x2[70], y[70], g[70];
    for (int n = 1; n <= 67; n++)
        for (int with_g = 0; with_g < 2; with_g++) {
            for (int i = 0; i < 70; i++) {
                x1[i] = x2[i] = frand(-5, 5);
                y[i] = frand(-5, 5);
                g[i] = frand(-1, 1);
            }
            pe_residual(x1, y, with_g ? g : NULL, n);
            pe_residual_ref(x2, y, with_g ? g : NULL, n);
            /* x + y is exact in both; x + g*y is one fused or two rounded
             * operations: within an ulp of the result */
            for (int i = 0; i < 70; i++) {
                double e = fabs((double)x1[i] - x2[i]);
                if (i >= n && e != 0) t_fail(__FILE__, __LINE__, "residual n=%d wrote past the end at %d", n, i);
                if (!(e <= (with_g ? 1.2e-6 * fmax(1.0, fabs(x2[i])) : 0))) {
                    t_fail(__FILE__, __LINE__, "residual n=%d gamma=%d [%d]: %.9g vs %.9g", n, with_g, i, x1[i], x2[i]);
                    break;
                }
            }
        }
}

static void test_attention(void) {
    int Ts[] = {1, 5, 16, 17, 63, 64, 65, 197, 577};
    int hds[] = {16, 32, 48, 64, 80, 96, 128};
    double worst = 0, worst_bf = 0, bf_vs_fp32 = 0;
    int ran = 0, ran_bf = 0;
    for (size_t a = 0; a < sizeof Ts / sizeof Ts[0]; a++)
        for (size_t b = 0; b < sizeof hds / sizeof hds[0]; b++) {
            int T = Ts[a], hd = hds[b], ld = 3 * hd + 5; /* q|k|v interleaved like the qkv buffer */
            float *qkv = malloc((size_t)T * ld * sizeof(float));
            float *o1 = malloc((size_t)T * hd * sizeof(float)), *o2 = malloc((size_t)T * hd * sizeof(float));
            float *o3 = malloc((size_t)T * hd * sizeof(float));
            float *scr = malloc(pe_attn_scratch(T, hd) * sizeof(float));
            /* q pre-scaled by 1/sqrt(hd) as the towers do: scores of a few units */
            for (int t = 0; t < T; t++)
                for (int e = 0; e < ld; e++)
                    qkv[(size_t)t * ld + e] = frand(-1.5f, 1.5f) * (e < hd ? 1.0f / sqrtf((float)hd) : 1.0f);
            pe_attn_ref(T, T, hd, qkv, ld, qkv + hd, ld, qkv + 2 * hd, ld, o2, hd);
            /* the packed kernel of this level (the C version at the scalar
             * level, which the towers do not use but must stay correct) */
            pe_attn_pack(T, hd, qkv + hd, ld, qkv + 2 * hd, ld, scr);
            /* all rows, in two uneven calls (any query range works) */
            int split = T / 3;
            pe_attn_rows(split, T, hd, qkv, ld, scr, o1, hd);
            pe_attn_rows(T - split, T, hd, qkv + (size_t)split * ld, ld, scr, o1 + (size_t)split * hd, hd);
            double d = t_rel_maxdiff(o1, o2, (size_t)T * hd);
            if (d > worst) worst = d;
            ran++;
            if (!(d <= 2e-6)) t_fail(__FILE__, __LINE__, "attention T=%d hd=%d: max rel diff %.3g", T, hd, d);
            /* a row's result does not depend on its neighbours in the call */
            if (T >= 7) {
                float one[128];
                pe_attn_rows(1, T, hd, qkv + 4 * (size_t)ld, ld, scr, one, hd);
                if (memcmp(one, o1 + 4 * (size_t)hd, hd * sizeof(float)))
                    t_fail(__FILE__, __LINE__, "attention T=%d hd=%d: row 4 alone differs from row 4 in a block", T, hd);
            }
            /* bf16: against the same roundings in float64 (tight), and
             * against fp32 (the precision it gives up, reported) */
            if (T <= 197 || hd == 64) {
                pe_attn_pack_bf16(T, hd, qkv + hd, ld, qkv + 2 * hd, ld, scr);
                pe_attn_rows_bf16(split, T, hd, qkv, ld, scr, o1, hd);
                pe_attn_rows_bf16(T - split, T, hd, qkv + (size_t)split * ld, ld, scr, o1 + (size_t)split * hd, hd);
                pe_attn_ref_bf16(T, T, hd, qkv, ld, qkv + hd, ld, qkv + 2 * hd, ld, o3, hd);
                double db = t_rel_maxdiff(o1, o3, (size_t)T * hd), df = t_rel_maxdiff(o1, o2, (size_t)T * hd);
                if (db > worst_bf) worst_bf = db;
                if (df > bf_vs_fp32) bf_vs_fp32 = df;
                ran_bf++;
                /* a probability rounding differently (the kernel's exp is
                 * ~1 ulp from exp()) moves an output by 2^-8 of one term */
                if (!(db <= 1e-3)) t_fail(__FILE__, __LINE__, "bf16 attention T=%d hd=%d: vs bf16 reference %.3g", T, hd, db);
                if (!(df <= 3e-2)) t_fail(__FILE__, __LINE__, "bf16 attention T=%d hd=%d: vs fp32 %.3g", T, hd, df);
            }
            free(qkv);
            free(o1);
            free(o2);
            free(o3);
            free(scr);
        }
    CHECK(ran > 0 && ran_bf > 0);
    printf("  attention (%s) vs float64: max rel diff %.3g over %d shapes; bf16 (%s) vs its float64 reference %.3g, "
           "vs fp32 %.3g\n",
           pe_attn_fast_ok(64) ? "packed kernel" : "packed C, towers use sgemm", worst, ran,
           pe_attn_bf16_ok(64) ? "vdpbf16ps" : "C emulation", worst_bf, bf_vs_fp32);
}

typedef struct pool_arg {
    atomic_long sum;
    atomic_int per_thread[8];
} pool_arg;

static void pool_fn(void *arg, int task, int thread) {
    pool_arg *p = arg;
    atomic_fetch_add(&p->sum, task + 1);
    atomic_fetch_add(&p->per_thread[thread], 1);
}

static void test_pool(void) {
    for (int nt = 1; nt <= 3; nt++) {
        pe_pool *pool = NULL;
        REQUIRE_OK(pe_pool_new(nt, &pool));
        CHECK_EQ_INT(pe_pool_size(pool), nt);
        for (int rep = 0; rep < 200; rep++) {
            pool_arg a;
            memset(&a, 0, sizeof a);
            int n = 1 + rep % 37;
            pe_pool_run(pool, n, pool_fn, &a);
            CHECK_EQ_INT(atomic_load(&a.sum), (long)n * (n + 1) / 2);
            int total = 0;
            for (int t = 0; t < 8; t++) {
                total += atomic_load(&a.per_thread[t]);
                if (t >= nt) CHECK_EQ_INT(atomic_load(&a.per_thread[t]), 0);
            }
            CHECK_EQ_INT(total, n);
        }
        pe_pool_run(pool, 0, pool_fn, NULL);
        pe_pool_free(pool);
    }
    pe_pool *bad = NULL;
    CHECK_ERR(pe_pool_new(0, &bad), PERR_INVALID);
    CHECK(bad == NULL);
    pe_pool_free(NULL);
}

/* The kernels at one instruction-set level. */
static void run_level(pe_isa want) {
    pe_isa got = pe_cpu_force_isa(want);
    if (got != want) {
        printf("  level %s: not on this CPU (highest %s)\n", pe_isa_name(want), pe_isa_name(pe_cpu()->hw));
        return;
    }
    printf("level %s (%s)\n", pe_isa_name(got), pe_cpu_describe());
    T_RUN(test_gelu);
    T_RUN(test_softmax_exp);
    T_RUN(test_layernorm);
    T_RUN(test_gemm);
    T_RUN(test_rope);
    T_RUN(test_rope_heads);
    T_RUN(test_residual);
    T_RUN(test_attention);
}

int main(void) {
    const pe_cpu_info *ci = pe_cpu();
    pe_isa start = ci->isa;
    printf("cpu: highest level %s, in force %s (PERCEPT_MAX_ISA caps it)\n", pe_isa_name(ci->hw), pe_cpu_describe());
    for (int l = PE_ISA_AVX512; l >= PE_ISA_SCALAR; l--) run_level((pe_isa)l);
    pe_cpu_force_isa(start);
    T_RUN(test_pool);
    return t_done();
}
