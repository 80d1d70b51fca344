/* pe_weights on checkpoints built by the test itself (ckpt_writer): dtype
 * conversion, torch.save variants, and hostile or broken files, each of
 * which must fail with the expected perr code and a message naming the
 * problem. Buffers are copied to exact-size allocations so that ASan sees
 * any read past the end. */
#define _GNU_SOURCE
#include "ckpt_writer.h"
#include "common/perr.h"
#include "encoder/pe_weights.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Opens an exact-size copy; *keep must be freed after closing. */
static int open_copy(const void *p, size_t n, pe_weights **w, void **keep) {
    *keep = malloc(n ? n : 1);
    if (n) memcpy(*keep, p, n);
    return pe_weights_open_buffer(*keep, n, "synthetic", w);
}

/* The open must fail with code and a message containing needle. */
static void expect_fail(int line, const void *p, size_t n, int code, const char *needle) {
    pe_weights *w = NULL;
    void *keep;
    int rc = open_copy(p, n, &w, &keep);
    if (rc != code)
        t_fail(__FILE__, line, "expected %s, got %s (%s)", perr_name(code), perr_name(rc), perr_msg());
    else if (needle && !strstr(perr_msg(), needle))
        t_fail(__FILE__, line, "message \"%s\" does not mention \"%s\"", perr_msg(), needle);
    if (w && code != PERR_OK) t_fail(__FILE__, line, "failed open left a handle");
    pe_weights_close(w);
    free(keep);
}
#define EXPECT_FAIL(buf, code, needle) expect_fail(__LINE__, (buf)->p, (buf)->n, code, needle)

static float f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(1024 + m), e - 25);
    return s ? -v : v;
}

/* Every half and every bfloat16 value converts exactly, from both formats. */
static void test_f16_bf16_exact(void) {
    uint16_t *all = malloc(65536 * 2);
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    ck_tensor t[2] = {
        {.name = "half", .dtype = PE_DT_F16, .ndim = 2, .shape = {256, 256}, .data = all},
        {.name = "brain", .dtype = PE_DT_BF16, .ndim = 1, .shape = {65536}, .data = all},
    };
    float *out = malloc(65536 * 4);
    for (int fmt = 0; fmt < 2; fmt++) {
        ckbuf b = {0};
        if (fmt) ck_pt(&b, t, 2, NULL); else ck_safetensors(&b, t, 2, NULL);
        pe_weights *w;
        void *keep;
        CHECK_OK(open_copy(b.p, b.n, &w, &keep));
        if (w) {
            const pe_tensor *h = pe_weights_find(w, "half"), *bf = pe_weights_find(w, "brain");
            REQUIRE(h && bf);
            CHECK_EQ_INT(h->dtype, PE_DT_F16);
            CHECK_EQ_INT(bf->dtype, PE_DT_BF16);
            CHECK_EQ_INT(h->numel, 65536);
            CHECK_EQ_INT(h->nbytes, 131072);
            pe_tensor_to_f32(h, out);
            int bad = 0;
            for (int i = 0; i < 65536; i++) {
                float r = f16_ref((uint16_t)i);
                if (isnan(r) ? !isnan(out[i]) : memcmp(&r, &out[i], 4)) bad++;
            }
            CHECK_EQ_INT(bad, 0);
            pe_tensor_to_f32(bf, out);
            bad = 0;
            for (int i = 0; i < 65536; i++) {
                uint32_t bits;
                memcpy(&bits, &out[i], 4);
                if (bits != (uint32_t)i << 16) bad++;
            }
            CHECK_EQ_INT(bad, 0);
        }
        pe_weights_close(w);
        free(keep);
        ck_free(&b);
    }
    free(out);
    free(all);
}

static float pattern[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};

/* {'state_dict': sd} and {'weights': sd} unwrap; "module." is removed. */
static void test_wrapped_and_module_prefix(void) {
    const char *wraps[] = {NULL, "state_dict", "weights"};
    ck_tensor t[3] = {
        {.name = "module.visual.proj", .dtype = PE_DT_F32, .ndim = 2, .shape = {4, 6}, .data = pattern},
        {.name = "a.module.b", .dtype = PE_DT_F32, .ndim = 1, .shape = {3}, .data = pattern + 5},
        {.name = "logit_scale", .dtype = PE_DT_F32, .ndim = 0, .data = pattern + 23},
    };
    for (int i = 0; i < 3; i++) {
        ckbuf b = {0};
        ck_pt_opts o = {.wrap = wraps[i]};
        ck_pt(&b, t, 3, &o);
        pe_weights *w;
        void *keep;
        CHECK_OK(open_copy(b.p, b.n, &w, &keep));
        if (w) {
            CHECK_EQ_INT(pe_weights_count(w), 3);
            CHECK(pe_weights_find(w, "module.visual.proj") == NULL);
            const pe_tensor *p = pe_weights_find(w, "visual.proj"), *ab = pe_weights_find(w, "a.b"),
                            *ls = pe_weights_find(w, "logit_scale");
            REQUIRE(p && ab && ls);
            CHECK(!memcmp(p->data, pattern, 24 * 4));
            CHECK(!memcmp(ab->data, pattern + 5, 12));
            CHECK_EQ_INT(ls->ndim, 0);
            CHECK(*(const float *)ls->data == 24.0f);
            CHECK_STR(pe_weights_format(w), "pt");
            CHECK(pe_weights_metadata(w, "name") == NULL);
        }
        pe_weights_close(w);
        free(keep);
        ck_free(&b);
    }
    /* safetensors keys get the same treatment */
    ckbuf b = {0};
    ck_safetensors(&b, t, 3, NULL);
    pe_weights *w;
    void *keep;
    CHECK_OK(open_copy(b.p, b.n, &w, &keep));
    if (w) CHECK(pe_weights_find(w, "visual.proj") != NULL);
    pe_weights_close(w);
    free(keep);
    ck_free(&b);
    /* two keys that collide after the removal are refused */
    ck_tensor dup[2] = {t[0], t[0]};
    dup[1].name = "visual.proj";
    ck_pt(&b, dup, 2, NULL);
    EXPECT_FAIL(&b, PERR_FORMAT, "duplicate tensor name 'visual.proj'");
    ck_free(&b);
}

/* Root name, zip64 records, torch 2.x extra members, misaligned members
 * (copied so that float data stays aligned), byteorder. */
static void test_zip_variants(void) {
    ck_tensor t[2] = {
        {.name = "x", .dtype = PE_DT_F32, .ndim = 2, .shape = {2, 3}, .data = pattern},
        {.name = "y", .dtype = PE_DT_F16, .ndim = 1, .shape = {5}, .data = pattern},
    };
    struct { ck_pt_opts o; } v[] = {
        {{.root = "PE-Core-T16-384 (copy)"}},
        {{.root = "r", .zip = {.zip64 = 1}}},
        {{.byteorder = "little", .zip = {.align = 64, .skew = 2}}},
        {{.zip = {.align = 0, .skew = 1, .zip64 = 1}}},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        ckbuf b = {0};
        ck_pt(&b, t, 2, &v[i].o);
        pe_weights *w;
        void *keep;
        CHECK_OK(open_copy(b.p, b.n, &w, &keep));
        if (w) {
            const pe_tensor *x = pe_weights_find(w, "x"), *y = pe_weights_find(w, "y");
            REQUIRE(x && y);
            CHECK((uintptr_t)x->data % 4 == 0);
            CHECK((uintptr_t)y->data % 2 == 0);
            CHECK(!memcmp(x->data, pattern, 24));
            CHECK(!memcmp(y->data, pattern, 10));
            CHECK_EQ_INT(pe_weights_count(w), 2);
        }
        pe_weights_close(w);
        free(keep);
        ck_free(&b);
    }
    ckbuf b = {0};
    ck_pt_opts big = {.byteorder = "big"};
    ck_pt(&b, t, 2, &big);
    EXPECT_FAIL(&b, PERR_UNSUPPORTED, "little-endian");
    ck_free(&b);
}

/* Cutting a checkpoint anywhere gives PERR_FORMAT, never a crash. */
static void cut_at(int line, const ckbuf *b, size_t cut, int *wrong) {
    pe_weights *w = NULL;
    void *keep;
    int rc = open_copy(b->p, cut, &w, &keep);
    if (rc != PERR_FORMAT && (*wrong)++ < 5)
        t_fail(__FILE__, line, "cut at %zu of %zu: %s (%s)", cut, b->n, perr_name(rc), perr_msg());
    pe_weights_close(w);
    free(keep);
}

/* Every offset of a small file. */
static void truncations(int line, const ckbuf *b) {
    int wrong = 0;
    for (size_t cut = 0; cut < b->n; cut++) cut_at(line, b, cut, &wrong);
}

/* A large file (each cut is an exact-size copy of the prefix): densely in
 * the first 9 KiB (headers, pickle), a few cuts in the middle and in the
 * last 12 KiB (zip directory). */
static void truncations_sparse(int line, const ckbuf *b) {
    int wrong = 0;
    for (size_t cut = 0; cut < 9000 && cut < b->n; cut += 37) cut_at(line, b, cut, &wrong);
    for (size_t cut = 9000; cut < b->n; cut += b->n / 7) cut_at(line, b, cut, &wrong);
    for (size_t back = 12033; back > 0; back -= 1337) /* 9 steps */
        if (back < b->n) cut_at(line, b, b->n - back, &wrong);
    cut_at(line, b, b->n - 1, &wrong);
}

static void test_truncated(void) {
    ck_tensor t[3] = {
        {.name = "module.a", .dtype = PE_DT_F32, .ndim = 2, .shape = {2, 3}, .data = pattern},
        {.name = "b", .dtype = PE_DT_BF16, .ndim = 1, .shape = {4}, .data = pattern},
        {.name = "c", .dtype = PE_DT_F32, .ndim = 0, .data = pattern},
    };
    ckbuf b = {0};
    ck_safetensors(&b, t, 3, (const char *const[]){"k", "v", NULL});
    truncations(__LINE__, &b);
    ck_free(&b);
    ck_pt(&b, t, 3, NULL);
    truncations(__LINE__, &b);
    ck_free(&b);
    ck_pt_opts o = {.wrap = "state_dict", .zip = {.zip64 = 1}};
    ck_pt(&b, t, 3, &o);
    truncations(__LINE__, &b);
    ck_free(&b);
    /* the fixtures, at a few hundred offsets each (exact-size copies) */
    const char *names[] = {"tiny-a.safetensors", "tiny-a.pt"};
    for (int i = 0; i < 2; i++) {
        char *p = t_path("%s/tiny-a/%s", t_fixtures(), names[i]);
        size_t n = 0;
        b.p = t_read_file(p, &n);
        b.n = n;
        free(p);
        REQUIRE(b.p);
        truncations_sparse(__LINE__, &b);
        free(b.p);
        b.p = NULL;
    }
}

static void test_wrong_magic(void) {
    ckbuf b = {0};
    ck_str(&b, "GIF89a this is not a checkpoint at all");
    EXPECT_FAIL(&b, PERR_FORMAT, "not a PyTorch checkpoint");
    ck_free(&b);
    /* pre-1.6 torch.save: a bare pickle */
    ck_pk_proto(&b, 2);
    ck_pk_int(&b, 0x1950a86a); /* torch's legacy magic number */
    ck_pk_op(&b, '.');
    EXPECT_FAIL(&b, PERR_UNSUPPORTED, "legacy");
    ck_free(&b);
    /* safetensors-looking but invalid JSON */
    const char hdr[] = "{\"a\": [1, 2,, }  ";
    ck_u64(&b, sizeof hdr - 1);
    ck_str(&b, hdr);
    EXPECT_FAIL(&b, PERR_FORMAT, "not valid JSON");
    ck_free(&b);
    /* a zip that is not a torch archive */
    ck_member m = {"notes/readme.txt", "hello", 5, 0};
    ck_zip(&b, &m, 1, NULL);
    EXPECT_FAIL(&b, PERR_FORMAT, "data.pkl");
    ck_free(&b);
    /* two archive roots */
    ck_member two[2] = {{"a/data.pkl", "\x80\x02}.", 4, 0}, {"b/data.pkl", "\x80\x02}.", 4, 0}};
    ck_zip(&b, two, 2, NULL);
    EXPECT_FAIL(&b, PERR_FORMAT, "several data.pkl");
    ck_free(&b);
    /* empty */
    EXPECT_FAIL(&b, PERR_FORMAT, "empty");
}

/* Wraps a hand-made data.pkl into a torch archive with t's storages. */
static void zip_pickle(ckbuf *out, const ckbuf *pkl, const ck_tensor *t, int n) {
    ck_pt_zip(out, pkl, t, n, NULL);
}

/* A pickle that asks for os.system, eval, exec ... is refused at that
 * opcode; nothing runs. */
static void test_malicious_pickle(void) {
    char *dir = t_tmpdir("weights-pwn");
    char *marker = t_path("%s/pwned", dir), *cmd = t_path("touch %s", marker);
    ckbuf p = {0}, z = {0};

    ck_pk_proto(&p, 2);
    ck_pk_global(&p, "os", "system");
    ck_pk_unicode(&p, cmd);
    ck_pk_op(&p, 0x85);
    ck_pk_op(&p, 'R');
    ck_pk_op(&p, '.');
    zip_pickle(&z, &p, NULL, 0);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "global os.system is not allowed");
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "data.pkl byte 2:");
    ck_free(&p);
    ck_free(&z);

    ck_pk_proto(&p, 2);
    ck_pk_global(&p, "builtins", "eval");
    ck_pk_unicode(&p, "__import__('os').system('touch /tmp/never')");
    ck_pk_op(&p, 0x85);
    ck_pk_op(&p, 'R');
    ck_pk_op(&p, '.');
    zip_pickle(&z, &p, NULL, 0);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "builtins.eval");
    ck_free(&p);
    ck_free(&z);

    /* protocol 4 STACK_GLOBAL, inside an otherwise valid state dict */
    ck_tensor t = {.name = "x", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = pattern};
    ck_pk_proto(&p, 4);
    ck_pk_op(&p, '}');
    ck_pk_unicode(&p, "x");
    ck_pk_tensor(&p, "FloatStorage", "0", 6, 0, 1, (int64_t[]){6}, (int64_t[]){1});
    ck_pk_op(&p, 's');
    ck_pk_unicode(&p, "builtins");
    ck_pk_unicode(&p, "exec");
    ck_pk_op(&p, 0x93);
    ck_pk_op(&p, '.');
    zip_pickle(&z, &p, &t, 1);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "builtins.exec");
    ck_free(&p);
    ck_free(&z);

    /* INST, NEWOBJ, EXT1: opcodes that instantiate or look up classes */
    const struct { uint8_t op; const char *name; } ops[] = {{'i', "INST"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {'o', "OBJ"}};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        ck_pk_proto(&p, 2);
        ck_pk_op(&p, '(');
        ck_pk_op(&p, ops[i].op);
        ck_str(&p, "os\nsystem\n");
        ck_pk_op(&p, '.');
        zip_pickle(&z, &p, NULL, 0);
        EXPECT_FAIL(&z, PERR_UNSUPPORTED, ops[i].name);
        ck_free(&p);
        ck_free(&z);
    }

    /* a torch storage class of a dtype we do not read */
    ck_pk_proto(&p, 2);
    ck_pk_op(&p, '}');
    ck_pk_unicode(&p, "x");
    ck_pk_tensor(&p, "LongStorage", "0", 3, 0, 1, (int64_t[]){3}, (int64_t[]){1});
    ck_pk_op(&p, 's');
    ck_pk_op(&p, '.');
    zip_pickle(&z, &p, &t, 1);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "torch.LongStorage");
    ck_free(&p);
    ck_free(&z);

    /* REDUCE of an allowed global with a non-tensor (pid naming OrderedDict) */
    ck_pk_proto(&p, 2);
    ck_pk_op(&p, '(');
    ck_pk_unicode(&p, "storage");
    ck_pk_global(&p, "collections", "OrderedDict");
    ck_pk_unicode(&p, "0");
    ck_pk_unicode(&p, "cpu");
    ck_pk_int(&p, 6);
    ck_pk_op(&p, 't');
    ck_pk_op(&p, 'Q');
    ck_pk_op(&p, '.');
    zip_pickle(&z, &p, &t, 1);
    EXPECT_FAIL(&z, PERR_FORMAT, "not a torch storage class");
    ck_free(&p);
    ck_free(&z);

    CHECK(access(marker, F_OK) != 0);
    CHECK(access("/tmp/never", F_OK) != 0);
    t_rmtree(dir);
    free(dir);
    free(marker);
    free(cmd);
}

/* One tensor over storage "0" with the given geometry. */
static void one_tensor(ckbuf *z, const char *cls, int64_t snumel, int64_t off, int nd, const int64_t *size,
                       const int64_t *stride, const ck_tensor *storage) {
    ckbuf p = {0};
    ck_pk_proto(&p, 2);
    ck_pk_op(&p, '}');
    ck_pk_unicode(&p, "w");
    ck_pk_tensor(&p, cls, "0", snumel, off, nd, size, stride);
    ck_pk_op(&p, 's');
    ck_pk_op(&p, '.');
    ck_pt_zip(z, &p, storage, 1, NULL);
    ck_free(&p);
}

static void test_storage_geometry(void) {
    ck_tensor st = {.name = "s", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = pattern};
    ckbuf z = {0};
    /* a valid view with an offset */
    one_tensor(&z, "FloatStorage", 6, 2, 2, (int64_t[]){2, 2}, (int64_t[]){2, 1}, &st);
    pe_weights *w;
    void *keep;
    CHECK_OK(open_copy(z.p, z.n, &w, &keep));
    if (w) CHECK(!memcmp(pe_weights_find(w, "w")->data, pattern + 2, 16));
    pe_weights_close(w);
    free(keep);
    ck_free(&z);
    /* size-1 dimensions may have any stride (torch writes such) */
    one_tensor(&z, "FloatStorage", 6, 0, 2, (int64_t[]){1, 6}, (int64_t[]){7, 1}, &st);
    CHECK_OK(open_copy(z.p, z.n, &w, &keep));
    pe_weights_close(w);
    free(keep);
    ck_free(&z);

    one_tensor(&z, "FloatStorage", 6, 3, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1}, &st);
    EXPECT_FAIL(&z, PERR_FORMAT, "outside storage '0' of 6 elements");
    ck_free(&z);
    one_tensor(&z, "FloatStorage", 6, INT64_MAX, 1, (int64_t[]){1}, (int64_t[]){1}, &st);
    EXPECT_FAIL(&z, PERR_FORMAT, "outside storage");
    ck_free(&z);
    one_tensor(&z, "FloatStorage", 6, 0, 3, (int64_t[]){1LL << 40, 1LL << 40, 1LL << 40}, (int64_t[]){1LL << 40, 1LL << 40, 1}, &st);
    EXPECT_FAIL(&z, PERR_FORMAT, "overflow");
    ck_free(&z);
    one_tensor(&z, "FloatStorage", 6, 0, 2, (int64_t[]){2, 3}, (int64_t[]){1, 2}, &st);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "non-contiguous strides [1, 2]");
    ck_free(&z);
    one_tensor(&z, "FloatStorage", 6, 0, 1, (int64_t[]){3}, (int64_t[]){2}, &st);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "non-contiguous");
    ck_free(&z);
    /* the storage says more elements than its member holds */
    one_tensor(&z, "FloatStorage", 7, 0, 1, (int64_t[]){7}, (int64_t[]){1}, &st);
    EXPECT_FAIL(&z, PERR_FORMAT, "its member has 24");
    ck_free(&z);
    /* a half storage over the 24 bytes has 12 elements, not 6 */
    one_tensor(&z, "HalfStorage", 6, 0, 1, (int64_t[]){6}, (int64_t[]){1}, &st);
    EXPECT_FAIL(&z, PERR_FORMAT, "storage '0'");
    ck_free(&z);
    /* the storage member is missing */
    ckbuf p = {0};
    ck_pk_proto(&p, 2);
    ck_pk_op(&p, '}');
    ck_pk_unicode(&p, "w");
    ck_pk_tensor(&p, "FloatStorage", "17", 6, 0, 1, (int64_t[]){6}, (int64_t[]){1});
    ck_pk_op(&p, 's');
    ck_pk_op(&p, '.');
    ck_pt_zip(&z, &p, &st, 1, NULL);
    EXPECT_FAIL(&z, PERR_FORMAT, "archive/data/17' missing");
    ck_free(&z);
    ck_free(&p);
    /* a 5-dimensional tensor */
    ck_tensor big = {.name = "s", .dtype = PE_DT_F32, .ndim = 1, .shape = {32}};
    one_tensor(&z, "FloatStorage", 32, 0, 5, (int64_t[]){2, 2, 2, 2, 2}, (int64_t[]){16, 8, 4, 2, 1}, &big);
    EXPECT_FAIL(&z, PERR_UNSUPPORTED, "5 dimensions");
    ck_free(&z);
}

static void test_pickle_structure(void) {
    ck_tensor st = {.name = "s", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = pattern};
    ckbuf p = {0}, z = {0};
    /* state dict value that is not a tensor */
    ck_pk_proto(&p, 2);
    ck_pk_op(&p, '}');
    ck_pk_unicode(&p, "visual.proj");
    ck_pk_int(&p, 5);
    ck_pk_op(&p, 's');
    ck_pk_op(&p, '.');
    ck_pt_zip(&z, &p, &st, 1, NULL);
    EXPECT_FAIL(&z, PERR_FORMAT, "value of 'visual.proj' is a int");
    ck_free(&p);
    ck_free(&z);
    /* a list at the top */
    ck_pk_proto(&p, 2);
    ck_pk_op(&p, ']');
    ck_pk_op(&p, '.');
    ck_pt_zip(&z, &p, &st, 1, NULL);
    EXPECT_FAIL(&z, PERR_FORMAT, "not a dict of tensors");
    ck_free(&p);
    ck_free(&z);
    /* stack underflow, memo miss, no STOP, protocol 1 */
    const char *bad[] = {"\x80\x02s.", "\x80\x02h\x05.", "\x80\x02}", "\x80\x01}.", "\x80\x02}(."};
    const char *why[] = {"underflow", "memo index 5", "no STOP", "protocol 1", "open MARK"};
    for (int i = 0; i < 5; i++) {
        ck_put(&p, bad[i], strlen(bad[i]));
        ck_pt_zip(&z, &p, &st, 1, NULL);
        EXPECT_FAIL(&z, i == 3 ? PERR_UNSUPPORTED : PERR_FORMAT, why[i]);
        ck_free(&p);
        ck_free(&z);
    }
}

/* Regression (fuzz_weights_pickle): the object pool moved under a storage
 * being created. Padding with objects puts that creation at every pool
 * growth boundary; ASan checks the reads. */
static void test_pool_growth_at_storage(void) {
    ck_tensor st = {.name = "s", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = pattern};
    for (int pad = 0; pad < 80; pad++) {
        ckbuf p = {0}, z = {0};
        ck_pk_proto(&p, 2);
        for (int i = 0; i < pad; i++) { ck_pk_op(&p, 'N'); ck_pk_op(&p, '0'); }
        ck_pk_op(&p, '}');
        ck_pk_unicode(&p, "w");
        ck_pk_tensor(&p, "FloatStorage", "0", 6, 0, 1, (int64_t[]){6}, (int64_t[]){1});
        ck_pk_op(&p, 's');
        ck_pk_op(&p, '.');
        ck_pt_zip(&z, &p, &st, 1, NULL);
        pe_weights *w;
        void *keep;
        CHECK_OK(open_copy(z.p, z.n, &w, &keep));
        if (w) CHECK(!memcmp(pe_weights_find(w, "w")->data, pattern, 24));
        pe_weights_close(w);
        free(keep);
        ck_free(&p);
        ck_free(&z);
    }
}

static void test_compressed_member(void) {
    ck_tensor t = {.name = "x", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = pattern};
    ckbuf b = {0};
    ck_pt_opts o = {.deflate_pkl = 1};
    ck_pt(&b, &t, 1, &o);
    EXPECT_FAIL(&b, PERR_UNSUPPORTED, "member 'archive/data.pkl' is compressed (method 8, deflate)");
    ck_free(&b);
    ck_pt_opts o2 = {.deflate_data = 1};
    ck_pt(&b, &t, 1, &o2);
    EXPECT_FAIL(&b, PERR_UNSUPPORTED, "member 'archive/data/0' is compressed");
    ck_free(&b);
}

/* safetensors with a header that lies. */
static void st_raw(ckbuf *b, const char *json, size_t data_len) {
    ck_u64(b, strlen(json));
    ck_str(b, json);
    for (size_t i = 0; i < data_len; i++) ck_u8(b, (unsigned)i);
}

static void test_lying_header(void) {
    static const struct { const char *json; size_t data; int code; const char *needle; } c[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, PERR_FORMAT, "outside the data section of 4 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, PERR_FORMAT, "needs 12 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, PERR_FORMAT, "data_offsets [8, 0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, PERR_FORMAT, "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8.5]}}", 9, PERR_FORMAT, "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, PERR_FORMAT, "data_offsets must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8, PERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,1099511627776],\"data_offsets\":[0,8]}}", 8, PERR_FORMAT, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, PERR_FORMAT, "shape[0]"},
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, PERR_UNSUPPORTED, "dtype I64"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, PERR_UNSUPPORTED, "5 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, PERR_FORMAT, "data_offsets"},
        {"{\"a\":5}", 8, PERR_FORMAT, "'a' is not an object"},
        {"{\"__metadata__\":{\"k\":5}}", 0, PERR_FORMAT, "value of 'k' is not a string"},
        {"{\"__metadata__\":{\"a\":\"b\",\"c\":\"d\"},\"__metadata__\":{\"a\":\"b\",\"c\":\"d\",\"e\":\"f\"}}", 0,
         PERR_FORMAT, "__metadata__ appears more than once"},
        {"[1,2,3]", 0, PERR_FORMAT, "not a PyTorch checkpoint"},
        {"{}", 0, PERR_OK, NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}      []", 8, PERR_FORMAT, "bytes after the JSON object at byte 68"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"module.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, PERR_FORMAT, "duplicate tensor name 'a'"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        ckbuf b = {0};
        st_raw(&b, c[i].json, c[i].data);
        expect_fail(__LINE__, b.p, b.n, c[i].code, c[i].needle);
        ck_free(&b);
    }
    /* header length beyond the file, and beyond the limit */
    ckbuf b = {0};
    ck_u64(&b, 1000);
    ck_str(&b, "{\"a\":1}");
    EXPECT_FAIL(&b, PERR_FORMAT, "truncated");
    ck_free(&b);
    ck_u64(&b, 1ULL << 40);
    ck_str(&b, "{\"a\":1}");
    EXPECT_FAIL(&b, PERR_TOO_LARGE, "exceeds the limit");
    ck_free(&b);
}

/* The file path API: mmap, errors for directories and missing files. */
static void test_open_path(void) {
    char *dir = t_tmpdir("weights-open");
    pe_weights *w = NULL;
    CHECK_ERR(pe_weights_open(dir, &w), PERR_INVALID);
    char *p = t_path("%s/empty.safetensors", dir);
    t_write_file(p, "", 0);
    CHECK_ERR(pe_weights_open(p, &w), PERR_FORMAT);
    CHECK(strstr(perr_msg(), "empty.safetensors: empty file") != NULL);
    free(p);
    ck_tensor t = {.name = "x", .dtype = PE_DT_F32, .ndim = 1, .shape = {6}, .data = pattern};
    ckbuf b = {0};
    ck_pt(&b, &t, 1, NULL);
    p = t_path("%s/x.pt", dir);
    t_write_file(p, b.p, b.n);
    CHECK_OK(pe_weights_open(p, &w));
    if (w) CHECK(!memcmp(pe_weights_find(w, "x")->data, pattern, 24));
    pe_weights_close(w);
    free(p);
    ck_free(&b);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    T_RUN(test_f16_bf16_exact);
    T_RUN(test_wrapped_and_module_prefix);
    T_RUN(test_zip_variants);
    T_RUN(test_truncated);
    T_RUN(test_wrong_magic);
    T_RUN(test_malicious_pickle);
    T_RUN(test_storage_geometry);
    T_RUN(test_pickle_structure);
    T_RUN(test_pool_growth_at_storage);
    T_RUN(test_compressed_member);
    T_RUN(test_lying_header);
    T_RUN(test_open_path);
    return t_done();
}
