/* Unit tests of the cleaning rules (ftfy 6.3.1 fix_text defaults, then
 * html.unescape x2, white space, str.lower), of the vocabulary loader's
 * errors, of invalid UTF-8 and of concurrent use. Expected ftfy results
 * are the ones ftfy's own documentation gives, or follow from its rules as
 * docs/tokenizer.md states them. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "encoder/pe_tokenizer.h"
#include "tests/common/testlib.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void check_ftfy(const char *in, const char *want, int line) {
    char *out = NULL;
    int rc = pe_ftfy_fix_text(in, strlen(in), &out);
    if (rc) t_fail(__FILE__, line, "ftfy(\"%s\") -> %s", in, perr_msg());
    else if (strcmp(out, want)) t_fail(__FILE__, line, "ftfy(\"%s\") = \"%s\", want \"%s\"", in, out, want);
    free(out);
}
#define FTFY(in, want) check_ftfy(in, want, __LINE__)

static void check_clean(const char *in, size_t len, const char *want, int line) {
    char *out = NULL;
    int rc = pe_text_clean(in, len, &out);
    if (rc) t_fail(__FILE__, line, "clean -> %s", perr_msg());
    else if (strcmp(out, want)) t_fail(__FILE__, line, "clean(\"%s\") = \"%s\", want \"%s\"", in, out, want);
    free(out);
}
#define CLEAN(in, want) check_clean(in, strlen(in), want, __LINE__)

static void test_ftfy_simple_fixes(void) {
    FTFY("\xef\xac\x82u\xef\xac\x83" "e\xef\xac\x86", "fluffiest");                 /* ligatures */
    FTFY("\xef\xac\x81sh", "fish");
    FTFY("\xc4\xb3s", "ijs");
    FTFY("\xc5\x89", "'n");     /* U+0149 -> U+02BC n -> ' n (quotes uncurled next round) */
    FTFY("\xef\xbc\xac\xef\xbc\xaf\xef\xbc\xb5\xef\xbc\xa4\xe3\x80\x80\xef\xbc\xae\xef\xbc\xaf\xef\xbc\xa9\xef\xbc\xb3\xef\xbc\xa5\xef\xbc\xb3",
         "LOUD NOISES");                                                         /* full width, U+3000 */
    FTFY("\xef\xbc\xb5\xef\xbe\x80\xef\xbd\xb0\xef\xbe\x9d", "U\xe3\x82\xbf\xe3\x83\xbc\xe3\x83\xb3"); /* Uターン */
    FTFY("\xe2\x80\x9chere\xe2\x80\x99s a test\xe2\x80\x9d", "\"here's a test\"");  /* curly quotes */
    FTFY("\xe2\x80\x98x\xe2\x80\x9b \xca\xbc \xe2\x80\x9f", "'x' ' \"");
    FTFY("one\r\ntwo\rthree\xe2\x80\xa8" "four\xe2\x80\xa9" "five", "one\ntwo\nthree\nfour\nfive");
    FTFY("\x1b[36;44mblue\x1b[0m", "blue");                                       /* terminal escapes */
    FTFY("a\x01" "b\x07" "c\x0b" "d\x7f" "e\xe2\x81\xaa" "f\xef\xbb\xbf" "g\xef\xbf\xbc" "h", "abcdefgh");
    FTFY("tab\there\x0c" "ff", "tab\there\x0c" "ff");                               /* kept */
    FTFY("e\xcc\x81", "\xc3\xa9");                                               /* NFC */
    FTFY("\xe2\x84\xab", "\xc3\x85");                                            /* NFC: Angstrom sign */
    FTFY("x\xc2\xb2 \xe2\x80\xa6", "x\xc2\xb2 \xe2\x80\xa6");                     /* not NFKC */
    FTFY("plain ascii text", "plain ascii text");
    FTFY("", "");
}

static void test_ftfy_entities(void) {
    FTFY("Broken text&hellip; it&#x2019;s \xef\xac\x82ubberi\xef\xac\x81" "c!",
         "Broken text\xe2\x80\xa6 it's flubberific!");
    FTFY("HTML entities &lt;3", "HTML entities <3");
    FTFY("<em>HTML entities &lt;3</em>", "<em>HTML entities &lt;3</em>");       /* a '<': off */
    FTFY("P&EACUTE;REZ", "P\xc3\x89REZ");
    FTFY("BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE");
    FTFY("&ntilde; &Ntilde; &NTILDE; &nTILDE;", "\xc3\xb1 \xc3\x91 \xc3\x91 &nTILDE;");
    FTFY("this&not that &amp", "this&not that &amp");                           /* needs ';' */
    FTFY("&amp;amp;", "&");                                                      /* repeated until stable */
    FTFY("&#65;&#x42;&#99999999;&#abc;&#12ab;", "AB\xef\xbf\xbd&#abc;&#12ab;");  /* html.unescape must eat the ';' */
    FTFY("&#x92;s", "'s");                                                       /* C1 reference as cp1252 */
    /* off from the first line containing '<' to the end of the text */
    FTFY("a &lt; b\n<p>&lt;</p>\n&gt;", "a < b\n<p>&lt;</p>\n&gt;");
    FTFY("\x01\x1b[36;44mI&#x92;m blue, da ba dee da ba doo&#133;\x1b[0m",
         "I'm blue, da ba dee da ba doo\xe2\x80\xa6");
}

static void test_ftfy_mojibake(void) {
    FTFY("\xc3\xa2\xc5\x93\xe2\x80\x9d No problems", "\xe2\x9c\x94 No problems");  /* âœ” */
    FTFY("s\xc3\x83\xc2\xb3", "s\xc3\xb3");                                          /* sÃ³ */
    FTFY("sch\xc3\x83\xc2\xb6n", "sch\xc3\xb6n");
    FTFY("voil\xc3\x83 le travail", "voil\xc3\xa0 le travail");                     /* restore_byte_a0 */
    FTFY("This \xc3\xa2\xe2\x82\xac\xe2\x80\x9d should be an em dash", "This \xe2\x80\x94 should be an em dash");
    FTFY("This text should be in \xc3\xa2\xe2\x82\xac\xc5\x93quotes\xc3\xa2\xe2\x82\xac\xc2\x9d.",
         "This text should be in \"quotes\".");
    FTFY("\xc3\x83\xc2\xa0\xc3\x82\xc2\xb2\xc3\x82\xc2\xa0_\xc3\x83\xc2\xa0\xc3\x82\xc2\xb2\xc3\x82\xc2\xa0",
         "\xe0\xb2\xa0_\xe0\xb2\xa0");                                               /* two levels: ಠ_ಠ */
    FTFY("&macr;\\_(\xc3\xa3\xc2\x83\xc2\x84)_/&macr;", "\xc2\xaf\\_(\xe3\x83\x84)_/\xc2\xaf");
    /* C1 controls: Latin-1 read where windows-1252 was meant */
    FTFY("This text was never UTF-8 at all\xc2\x85", "This text was never UTF-8 at all\xe2\x80\xa6");
    FTFY("\xc2\x85", "\xe2\x80\xa6");
    FTFY("\xe4\xb8\xad\xc2\x93x\xc2\x94", "\xe4\xb8\xad\"x\"");     /* not Latin-1 at all: per character */
    /* left alone: legitimate text */
    FTFY("not such a fan of Charlotte Bront\xc3\xab\xe2\x80\xa6\xe2\x80\x9d",
         "not such a fan of Charlotte Bront\xc3\xab\xe2\x80\xa6\"");
    FTFY("caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e", "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e");
    FTFY("Z\xc3\xbcrich, S\xc3\xa3o Paulo", "Z\xc3\xbcrich, S\xc3\xa3o Paulo");
    FTFY("\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
}

static void test_basic_clean_and_lower(void) {
    CLEAN("  A  Photo\tOF\n\na CAT  ", "a photo of a cat");
    CLEAN("salt &amp;amp; pepper", "salt & pepper");
    CLEAN("&lt;b&gt;", "<b>");
    CLEAN("x\xc2\xa0y\xe3\x80\x80z\xe2\x80\x83w", "x y z w");
    /* final sigma (Python's rule) */
    CLEAN("\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82");            /* ΟΔΟΣ -> οδος */
    CLEAN("\xce\xa3", "\xcf\x83");                                                             /* Σ alone */
    CLEAN("\xce\xa3\xce\x91", "\xcf\x83\xce\xb1");                                             /* ΣΑ */
    CLEAN("\xce\x91\xce\xa3 \xce\x92", "\xce\xb1\xcf\x82 \xce\xb2");                           /* ΑΣ Β */
    CLEAN("\xce\x91\xce\xa3'", "\xce\xb1\xcf\x82'");                                           /* ' is case-ignorable */
    CLEAN("\xce\x91\xce\xa3'\xce\x91", "\xce\xb1\xcf\x83'\xce\xb1");
    CLEAN("\xce\x91\xce\xa3\xcc\x81", "\xce\xb1\xcf\x82\xcc\x81");                             /* mark after */
    /* dotted capital I -> i + U+0307 */
    CLEAN("\xc4\xb0stanbul", "i\xcc\x87stanbul");
    CLEAN("\xe1\xba\x9e", "\xc3\x9f");   /* capital sharp s */
}

static void test_invalid_utf8(void) {
    /* Replaced like bytes.decode("utf-8", "replace"): one U+FFFD per
     * maximal invalid subpart. */
    static const char in1[] = "a\xff" "b";
    check_clean(in1, 3, "a\xef\xbf\xbd" "b", __LINE__);
    static const char in2[] = "\xe2\x82" "x";          /* truncated 3-byte sequence: one U+FFFD */
    check_clean(in2, 3, "\xef\xbf\xbdx", __LINE__);
    static const char in3[] = "\xed\xa0\x80";          /* a surrogate: three */
    check_clean(in3, 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", __LINE__);
    static const char in4[] = "\xc0\xaf";              /* overlong: two */
    check_clean(in4, 2, "\xef\xbf\xbd\xef\xbf\xbd", __LINE__);
    static const char in5[] = "x\0y";                   /* NUL is a control character: removed */
    check_clean(in5, 3, "xy", __LINE__);
}

static char *vocab_path(void) { return t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures()); }

static void test_special_tokens(void) {
    char *vp = vocab_path();
    pe_tokenizer *t = NULL;
    REQUIRE_OK(pe_tokenizer_load(vp, &t));
    int32_t ids[16];
    int nb;
    CHECK_OK(pe_tokenize(t, "x<END_OF_TEXT>y", 15, 16, ids, &nb));
    CHECK_EQ_INT(nb, 3);
    CHECK_EQ_INT(ids[2], PE_TOK_EOT);
    CHECK_EQ_INT(ids[4], PE_TOK_EOT);
    CHECK_OK(pe_tokenize(t, "&lt;start_of_text&gt;", 21, 16, ids, &nb));   /* after unescaping too */
    CHECK_EQ_INT(nb, 1);
    CHECK_EQ_INT(ids[1], PE_TOK_SOT);
    CHECK_OK(pe_tokenize(t, "!<end_of_text>", 14, 16, ids, &nb));   /* inside a punctuation run: not special */
    CHECK(nb > 1);
    for (int k = 1; k <= nb; k++) CHECK(ids[k] != PE_TOK_EOT);
    pe_tokenizer_free(t);
    free(vp);
}

static void expect_load_error(const char *dir, const char *name, const void *data, size_t len,
                              int gz, int code, const char *needle, int line) {
    char *p = t_path("%s/%s", dir, name);
    if (gz) {
        gzFile g = gzopen(p, "wb");
        gzwrite(g, data, (unsigned)len);
        gzclose(g);
    } else {
        t_write_file(p, data, len);
    }
    pe_tokenizer *t = NULL;
    int rc = pe_tokenizer_load(p, &t);
    if (rc != code) t_fail(__FILE__, line, "%s: got %s (%s), want %s", name, perr_name(rc), perr_msg(), perr_name(code));
    else if (!strstr(perr_msg(), name) || (needle && !strstr(perr_msg(), needle)))
        t_fail(__FILE__, line, "%s: message \"%s\" lacks the file name or \"%s\"", name, perr_msg(), needle ? needle : "");
    CHECK(t == NULL);
    free(p);
}

static void test_vocab_errors(void) {
    char *dir = t_tmpdir("tokvocab");
    REQUIRE(dir);
    pe_tokenizer *t = NULL;
    char *missing = t_path("%s/nope.txt.gz", dir);
    CHECK_ERR(pe_tokenizer_load(missing, &t), PERR_NOT_FOUND);
    free(missing);
    expect_load_error(dir, "empty.txt", "", 0, 0, PERR_FORMAT, "line 1", __LINE__);
    static const char few[] = "#version: 0.2\ni n\nt h\n";
    expect_load_error(dir, "few.txt", few, sizeof few - 1, 0, PERR_FORMAT, "only 2 merges", __LINE__);
    static const char bad3[] = "#version: 0.2\ni n\nt h e\n";
    expect_load_error(dir, "bad3.txt.gz", bad3, sizeof bad3 - 1, 1, PERR_FORMAT, "line 3", __LINE__);
    static const char unknown[] = "#version: 0.2\ni n\nxyz q\n";
    expect_load_error(dir, "unknown.txt", unknown, sizeof unknown - 1, 0, PERR_FORMAT, "line 3", __LINE__);
    static const char binary[] = "\x00\x01\x02garbage";
    expect_load_error(dir, "binary.bin", binary, sizeof binary - 1, 0, PERR_FORMAT, NULL, __LINE__);
    /* a gzip file cut in the middle */
    char *vp = vocab_path();
    size_t len = 0;
    char *gz = t_read_file(vp, &len);
    REQUIRE(gz && len > 1000);
    expect_load_error(dir, "cut.txt.gz", gz, len / 2, 0, PERR_FORMAT, NULL, __LINE__);
    /* corrupt deflate data */
    for (size_t k = 200; k < 400; k++) gz[k] ^= 0x5A;
    expect_load_error(dir, "corrupt.txt.gz", gz, len, 0, PERR_FORMAT, NULL, __LINE__);
    free(gz);
    /* the plain-text vocabulary loads too */
    gzFile g = gzopen(vp, "rb");
    size_t cap = 4u << 20, n = 0;
    char *txt = malloc(cap);
    int got;
    while ((got = gzread(g, txt + n, (unsigned)(cap - n))) > 0) n += (size_t)got;
    gzclose(g);
    char *plain = t_path("%s/vocab.txt", dir);
    CHECK_EQ_INT(t_write_file(plain, txt, n), 0);
    CHECK_OK(pe_tokenizer_load(plain, &t));
    int32_t ids[8];
    if (t) { CHECK_OK(pe_tokenize(t, "a photo", 7, 8, ids, NULL)); CHECK_EQ_INT(ids[2], 1125); }
    pe_tokenizer_free(t);
    free(plain);
    free(txt);
    free(vp);
    t_rmtree(dir);
    free(dir);
}

static void test_limits(void) {
    char *vp = vocab_path();
    pe_tokenizer *t = NULL;
    REQUIRE_OK(pe_tokenizer_load(vp, &t));
    int32_t ids[32];
    size_t big = (size_t)PE_TOK_MAX_TEXT + 1;
    char *s = malloc(big);
    memset(s, 'a', big);
    CHECK_ERR(pe_tokenize(t, s, big, 32, ids, NULL), PERR_TOO_LARGE);
    /* a long single word still tokenizes quickly (heap-ordered merges) */
    size_t n = 200000;
    int nb = 0;
    CHECK_OK(pe_tokenize(t, s, n, 32, ids, &nb));
    CHECK(nb > 0 && nb < 200000);
    CHECK_EQ_INT(ids[31], PE_TOK_EOT);
    free(s);
    CHECK_ERR(pe_tokenize(t, "x", 1, PE_TOK_MAX_CONTEXT + 1, ids, NULL), PERR_INVALID);
    pe_tokenizer_free(t);
    free(vp);
}

/* Many threads on one tokenizer give the same ids as one thread. */
typedef struct { const pe_tokenizer *t; int fails; } thr_arg;
static const char *const THR_TEXTS[] = {
    "a photo of a cat", "\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xc3\xa9t\xc3\xa9", "sch\xc3\x83\xc2\xb6n &amp; co",
    "\xe4\xb8\x80\xe5\x8f\xaa\xe7\x8c\xab\xe7\x9a\x84\xe7\x85\xa7\xe7\x89\x87", "\xf0\x9f\x9a\x80 launch 2024!",
};
static int32_t thr_want[5][32];

static void *thr_main(void *p) {
    thr_arg *a = p;
    for (int it = 0; it < 300; it++) {
        int k = it % 5;
        int32_t ids[32];
        if (pe_tokenize(a->t, THR_TEXTS[k], strlen(THR_TEXTS[k]), 32, ids, NULL) ||
            memcmp(ids, thr_want[k], sizeof ids)) a->fails++;
    }
    return NULL;
}

static void test_threads(void) {
    char *vp = vocab_path();
    pe_tokenizer *t = NULL;
    REQUIRE_OK(pe_tokenizer_load(vp, &t));
    for (int k = 0; k < 5; k++) CHECK_OK(pe_tokenize(t, THR_TEXTS[k], strlen(THR_TEXTS[k]), 32, thr_want[k], NULL));
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) { args[i] = (thr_arg){t, 0}; pthread_create(&th[i], NULL, thr_main, &args[i]); }
    for (int i = 0; i < 4; i++) { pthread_join(th[i], NULL); CHECK_EQ_INT(args[i].fails, 0); }
    pe_tokenizer_free(t);
    free(vp);
}

int main(void) {
    T_RUN(test_ftfy_simple_fixes);
    T_RUN(test_ftfy_entities);
    T_RUN(test_ftfy_mojibake);
    T_RUN(test_basic_clean_and_lower);
    T_RUN(test_invalid_utf8);
    T_RUN(test_special_tokens);
    T_RUN(test_vocab_errors);
    T_RUN(test_limits);
    T_RUN(test_threads);
    return t_done();
}
