/* pe_tokenizer: vocabulary loading, pre-tokenization and BPE merges.
 *
 * DESIGN. Owns the merge table, built once by pe_tokenizer_load and never
 * written again, so any number of threads may tokenize at once; each call
 * allocates its own scratch. Symbols are vocabulary ids, never strings: the
 * 256 byte symbols (0..255), the same with "</w>" (256..511), then one id
 * per merge (512 + rank). A merge "a b" is stored as the pair (id(a), id(b))
 * -> rank in an open-addressing hash table (1.5 MB, one probe per cache line); its result has id 512 + rank.
 * This is exact because the loader checks that all 49408 vocabulary strings
 * are distinct and that every merge is made of earlier symbols (so a pair
 * created by a merge always ranks after that merge, which makes the
 * lowest-rank-first heap below give the same result as the reference's
 * round-by-round "merge every occurrence of the best pair").
 * Cleaning (ftfy, HTML entities, white space, case) is in pe_textclean.c.
 * Must never: read past the text, allocate from an unchecked size, or keep
 * state between calls.
 */
#define _GNU_SOURCE
#include "encoder/pe_tokenizer.h"
#include "common/perr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zlib.h>

#define VOCAB_MAX_BYTES (64u << 20)   /* the real file is 1.3 MB unpacked */
#define PAIR_TABLE_BITS 17            /* 131072 slots for 48894 merges */
#define PAIR_TABLE_SIZE (1u << PAIR_TABLE_BITS)

/* One slot holds key and value so that a lookup touches one cache line. */
typedef struct pair_slot { int32_t a, b, rank; } pair_slot;

struct pe_tokenizer {
    uint8_t byte_id[256];            /* byte -> id of its symbol (0..255) */
    pair_slot *pairs;                /* PAIR_TABLE_SIZE slots, rank -1 = empty */
};

/* ------------------------------------------------------------------ */
/* Byte symbols                                                         */

/* CLIP's bytes_to_unicode: printable bytes keep their code point, the 68
 * others get 256, 257, ... in byte order; ids follow that list order. */
static void byte_symbols(uint32_t cp_of_byte[256], uint8_t id_of_byte[256]) {
    int id = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) { cp_of_byte[b] = (uint32_t)b; id_of_byte[b] = (uint8_t)id++; }
    }
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!printable) { cp_of_byte[b] = 256u + (uint32_t)n++; id_of_byte[b] = (uint8_t)id++; }
    }
}

/* ------------------------------------------------------------------ */
/* Pair table                                                            */

static inline uint32_t pair_hash(int32_t a, int32_t b) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33;
    return (uint32_t)k & (PAIR_TABLE_SIZE - 1);
}

static inline int pair_rank(const pe_tokenizer *t, int32_t a, int32_t b) {
    for (uint32_t h = pair_hash(a, b);; h = (h + 1) & (PAIR_TABLE_SIZE - 1)) {
        const pair_slot *s = &t->pairs[h];
        if (s->rank < 0) return -1;
        if (s->a == a && s->b == b) return s->rank;
    }
}

/* The loader checks that the pair is new before inserting. */
static void pair_insert(pe_tokenizer *t, int32_t a, int32_t b, int32_t rank) {
    uint32_t h = pair_hash(a, b);
    while (t->pairs[h].rank >= 0) h = (h + 1) & (PAIR_TABLE_SIZE - 1);
    t->pairs[h] = (pair_slot){a, b, rank};
}

/* ------------------------------------------------------------------ */
/* Loading                                                               */

/* String -> id map used only while loading. */
typedef struct strmap {
    char **key;
    int32_t *val;
    uint32_t cap;
} strmap;

static uint32_t str_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 16777619u; }
    return h;
}

/* Returns the id stored for s, or -1. */
static int32_t strmap_get(const strmap *m, const char *s, size_t n) {
    for (uint32_t h = str_hash(s, n) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (!m->key[h]) return -1;
        if (strlen(m->key[h]) == n && !memcmp(m->key[h], s, n)) return m->val[h];
    }
}

/* Takes ownership of key. Returns 0, 1 if already present, or PERR_NOMEM. */
static int strmap_put(strmap *m, char *key, int32_t val) {
    size_t n = strlen(key);
    uint32_t h = str_hash(key, n) & (m->cap - 1);
    for (; m->key[h]; h = (h + 1) & (m->cap - 1))
        if (!strcmp(m->key[h], key)) { free(key); return 1; }
    m->key[h] = key;
    m->val[h] = val;
    return 0;
}

static void strmap_free(strmap *m) {
    if (m->key) for (uint32_t i = 0; i < m->cap; i++) free(m->key[i]);
    free(m->key);
    free(m->val);
}

static char *concat(const char *a, size_t na, const char *b, size_t nb) {
    char *s = malloc(na + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    s[na + nb] = 0;
    return s;
}

/* Reads the whole (possibly gzip'd) file, bounded. */
static int read_vocab_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *probe = fopen(path, "rb");
    if (!probe) return perr_errno(errno, "vocabulary %s", path);
    fclose(probe);
    gzFile gz = gzopen(path, "rb");
    if (!gz) return perr_set(PERR_NOMEM, "vocabulary %s: cannot open for decompression", path);
    size_t cap = 2u << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { gzclose(gz); return perr_set(PERR_NOMEM, "vocabulary %s", path); }
    for (;;) {
        if (n == cap) {
            if (cap >= VOCAB_MAX_BYTES) {
                free(buf); gzclose(gz);
                return perr_set(PERR_TOO_LARGE, "vocabulary %s: more than %u MiB of text; "
                                "not a BPE merges file", path, VOCAB_MAX_BYTES >> 20);
            }
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) { free(buf); gzclose(gz); return perr_set(PERR_NOMEM, "vocabulary %s", path); }
            buf = nb;
            cap = ncap;
        }
        unsigned want = (unsigned)((cap - n) > (1u << 30) ? (1u << 30) : (cap - n));
        int got = gzread(gz, buf + n, want);
        if (got < 0) {
            int zerr = 0;
            const char *msg = gzerror(gz, &zerr);
            int rc = perr_set(PERR_FORMAT, "vocabulary %s: corrupt gzip data after %zu bytes (%s)",
                              path, n, msg ? msg : "zlib error");
            free(buf); gzclose(gz);
            return rc;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    int zerr = 0;
    const char *msg = gzerror(gz, &zerr);
    if (zerr != Z_OK) {   /* Z_BUF_ERROR: the gzip stream ends early */
        int rc = perr_set(PERR_FORMAT, "vocabulary %s: corrupt gzip data (%s)", path, msg);
        free(buf); gzclose(gz);
        return rc;
    }
    gzclose(gz);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return PERR_OK;
}

int pe_tokenizer_load(const char *vocab_path, pe_tokenizer **out) {
    *out = NULL;
    if (!vocab_path) return perr_set(PERR_INVALID, "no vocabulary path");
    char *data = NULL;
    size_t len = 0;
    int rc = read_vocab_file(vocab_path, &data, &len);
    if (rc) return rc;
    if (memchr(data, 0, len))
        { free(data); return perr_set(PERR_FORMAT, "vocabulary %s: binary data (NUL byte); not a BPE merges file", vocab_path); }

    pe_tokenizer *t = calloc(1, sizeof *t);
    strmap m = {0};
    m.cap = 1u << 17;
    m.key = calloc(m.cap, sizeof *m.key);
    m.val = calloc(m.cap, sizeof *m.val);
    if (t && (t->pairs = malloc(PAIR_TABLE_SIZE * sizeof *t->pairs)))
        for (uint32_t i = 0; i < PAIR_TABLE_SIZE; i++) t->pairs[i] = (pair_slot){0, 0, -1};
    if (!t || !m.key || !m.val || !t->pairs) {
        rc = perr_set(PERR_NOMEM, "vocabulary %s", vocab_path);
        goto fail;
    }

    /* The 512 byte symbols. */
    uint32_t cp_of_byte[256];
    byte_symbols(cp_of_byte, t->byte_id);
    for (int b = 0; b < 256; b++) {
        char u[8];
        int n = (int)utf8proc_encode_char((utf8proc_int32_t)cp_of_byte[b], (utf8proc_uint8_t *)u);
        int id = t->byte_id[b];
        char *k1 = concat(u, (size_t)n, "", 0), *k2 = concat(u, (size_t)n, "</w>", 4);
        if (!k1 || !k2) { free(k1); free(k2); rc = perr_set(PERR_NOMEM, "vocabulary"); goto fail; }
        strmap_put(&m, k1, id);
        strmap_put(&m, k2, 256 + id);
    }

    /* Header, then the merges in rank order. */
    const char *p = data, *end = data + len;
    /* Line 1 is a header comment ("bpe_simple_vocab_16e6.txt#version: 0.2). */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) { rc = perr_set(PERR_FORMAT, "vocabulary %s: line 1: no merges follow the header line", vocab_path); goto fail; }
    p = nl + 1;
    for (int r = 0; r < PE_TOK_N_MERGES; r++) {
        int line = r + 2;
        if (p >= end) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: only %d merges, %d needed (ends at line %d)",
                          vocab_path, r, PE_TOK_N_MERGES, line);
            goto fail;
        }
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        size_t ll = (size_t)(e - p);
        if (ll && p[ll - 1] == '\r') ll--;
        if (utf8proc_decompose((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)ll, NULL, 0, 0) < 0) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: line %d: invalid UTF-8", vocab_path, line);
            goto fail;
        }
        const char *sp = memchr(p, ' ', ll);
        if (!sp || sp == p || sp == p + ll - 1 || memchr(sp + 1, ' ', (size_t)(p + ll - sp - 1))) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: line %d: expected two symbols separated by one space, got \"%.*s\"",
                          vocab_path, line, (int)(ll > 80 ? 80 : ll), p);
            goto fail;
        }
        size_t na = (size_t)(sp - p), nb = ll - na - 1;
        int32_t a = strmap_get(&m, p, na), b = strmap_get(&m, sp + 1, nb);
        if (a < 0 || b < 0) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: line %d: symbol \"%.*s\" is not made by an earlier merge",
                          vocab_path, line, (int)(a < 0 ? na : nb), a < 0 ? p : sp + 1);
            goto fail;
        }
        if (pair_rank(t, a, b) >= 0) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: line %d: merge \"%.*s\" repeats an earlier one",
                          vocab_path, line, (int)ll, p);
            goto fail;
        }
        char *merged = concat(p, na, sp + 1, nb);
        if (!merged) { rc = perr_set(PERR_NOMEM, "vocabulary"); goto fail; }
        if (strmap_put(&m, merged, 512 + r)) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: line %d: merge result \"%.*s%.*s\" is already a symbol",
                          vocab_path, line, (int)na, p, (int)nb, sp + 1);
            goto fail;
        }
        pair_insert(t, a, b, r);
        p = e < end ? e + 1 : end;
    }
    /* 256 bytes + 256 with </w> + 48894 merges + 2 specials. */
    if (512 + PE_TOK_N_MERGES + 2 != PE_TOK_VOCAB_SIZE) { rc = perr_set(PERR_INTERNAL, "vocabulary size"); goto fail; }
    for (int s = 0; s < 2; s++) {
        char *k = strdup(s ? "<end_of_text>" : "<start_of_text>");
        if (!k) { rc = perr_set(PERR_NOMEM, "vocabulary"); goto fail; }
        if (strmap_put(&m, k, s ? PE_TOK_EOT : PE_TOK_SOT)) {
            rc = perr_set(PERR_FORMAT, "vocabulary %s: a merge builds the special token %s",
                          vocab_path, s ? "<end_of_text>" : "<start_of_text>");
            goto fail;
        }
    }
    strmap_free(&m);
    free(data);
    *out = t;
    return PERR_OK;
fail:
    strmap_free(&m);
    free(data);
    pe_tokenizer_free(t);
    return rc;
}

void pe_tokenizer_free(pe_tokenizer *t) {
    if (!t) return;
    free(t->pairs);
    free(t);
}

/* ------------------------------------------------------------------ */
/* BPE of one pre-token                                                  */

typedef struct bpe_scratch {
    int32_t *sym;      /* symbol id per position (-1 = merged away) */
    int32_t *next, *prev;
    uint64_t *heap;    /* (rank << 32) | left position */
    size_t cap, heap_n;
} bpe_scratch;

static int scratch_reserve(bpe_scratch *s, size_t n) {
    if (n <= s->cap) return PERR_OK;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(s->sym, cap * sizeof *a);
    if (a) s->sym = a;
    int32_t *b = realloc(s->next, cap * sizeof *b);
    if (b) s->next = b;
    int32_t *c = realloc(s->prev, cap * sizeof *c);
    if (c) s->prev = c;
    uint64_t *d = realloc(s->heap, cap * sizeof *d);
    if (d) s->heap = d;
    if (!a || !b || !c || !d) return perr_set(PERR_NOMEM, "tokenizer scratch (%zu symbols)", n);
    s->cap = cap;
    return PERR_OK;
}

static void scratch_free(bpe_scratch *s) {
    free(s->sym); free(s->next); free(s->prev); free(s->heap);
}

static void heap_push(bpe_scratch *s, uint64_t v) {
    size_t i = s->heap_n++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (s->heap[p] <= v) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = v;
}

static uint64_t heap_pop(bpe_scratch *s) {
    uint64_t top = s->heap[0], v = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && s->heap[c + 1] < s->heap[c]) c++;
        if (s->heap[c] >= v) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = v;
    return top;
}

static void push_pair(const pe_tokenizer *t, bpe_scratch *s, int32_t i) {
    int32_t j = s->next[i];
    if (j < 0) return;
    int r = pair_rank(t, s->sym[i], s->sym[j]);
    if (r >= 0) heap_push(s, ((uint64_t)(uint32_t)r << 32) | (uint32_t)i);
}

typedef struct idvec { int32_t *v; size_t n, cap; } idvec;

static int idvec_push(idvec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *nv = realloc(o->v, cap * sizeof *nv);
        if (!nv) return perr_set(PERR_NOMEM, "token ids (%zu)", cap);
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return PERR_OK;
}

/* Merges the bytes of one pre-token and appends the resulting ids. Pairs
 * are taken lowest rank first, equal ranks leftmost first: the reference's
 * order (see the DESIGN note). Each position is pushed when its right
 * neighbour changes; stale heap entries are recognised by re-checking. */
static int bpe_piece(const pe_tokenizer *t, bpe_scratch *s, const uint8_t *bytes, size_t n, idvec *out) {
    int rc = scratch_reserve(s, n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        s->sym[i] = t->byte_id[bytes[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    s->sym[n - 1] += 256;   /* the last symbol carries </w> */
    s->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, s, (int32_t)i);
    while (s->heap_n) {
        uint64_t top = heap_pop(s);
        int32_t i = (int32_t)(top & 0xffffffffu), r = (int32_t)(top >> 32);
        if (s->sym[i] < 0) continue;
        int32_t j = s->next[i];
        if (j < 0 || pair_rank(t, s->sym[i], s->sym[j]) != r) continue;
        s->sym[i] = 512 + r;
        s->sym[j] = -1;
        s->next[i] = s->next[j];
        if (s->next[j] >= 0) s->prev[s->next[j]] = i;
        if (s->prev[i] >= 0) push_pair(t, s, s->prev[i]);
        push_pair(t, s, i);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i])
        if ((rc = idvec_push(out, s->sym[i]))) return rc;
    return PERR_OK;
}

/* ------------------------------------------------------------------ */
/* Pre-tokenizer                                                          */

/* The reference pattern, case-insensitive:
 *   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * tried alternative by alternative at each position; positions where
 * nothing matches (white space) are skipped. The text is already
 * lowercased; the only case-insensitive match left is U+017F LATIN SMALL
 * LETTER LONG S, which simple case folding equates with 's'. */

enum { CLS_OTHER = 0, CLS_LETTER = 1, CLS_NUMBER = 2, CLS_SPACE = 3 };

static int is_space_cp(uint32_t c) {
    /* Python's str.isspace (a superset of the regex module's \s; after the
     * cleaning only U+0020 is left anyway). */
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static int char_class(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CLS_LETTER;
        if (c >= '0' && c <= '9') return CLS_NUMBER;
        return is_space_cp(c) ? CLS_SPACE : CLS_OTHER;
    }
    /* U+0345 COMBINING GREEK YPOGEGRAMMENI matches no alternative: under
     * IGNORECASE the regex module's [^\s\p{L}\p{N}] rejects it because its
     * case variants (U+0399, U+03B9) are letters. Skipped like a space. */
    if (is_space_cp(c) || c == 0x345) return CLS_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return CLS_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return CLS_NUMBER;
    default:
        return CLS_OTHER;
    }
}

typedef struct cpbuf { uint32_t *cp; uint32_t *off; size_t n; } cpbuf; /* off: byte offset of each cp (+1 sentinel) */

static inline uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    if (c == 0x212A) return 'k';
    return c;
}

/* Length in code points of `lit` matched case-insensitively at i, or 0. */
static size_t match_lit(const cpbuf *b, size_t i, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++)
        if (i + k >= b->n || fold(b->cp[i + k]) != (uint32_t)(uint8_t)lit[k]) return 0;
    return k;
}

static int tokenize_cleaned(const pe_tokenizer *t, const char *text, size_t len, idvec *out) {
    cpbuf b = {0};
    b.cp = malloc((len + 1) * sizeof *b.cp);
    b.off = malloc((len + 1) * sizeof *b.off);
    bpe_scratch s = {0};
    int rc = PERR_OK;
    if (!b.cp || !b.off) { rc = perr_set(PERR_NOMEM, "tokenizer: %zu bytes of text", len); goto done; }
    for (size_t p = 0; p < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + p, (utf8proc_ssize_t)(len - p), &c);
        if (k <= 0) { rc = perr_set(PERR_INVALID, "tokenizer: invalid UTF-8 at byte %zu", p); goto done; }
        b.off[b.n] = (uint32_t)p;
        b.cp[b.n++] = (uint32_t)c;
        p += (size_t)k;
    }
    b.off[b.n] = (uint32_t)len;

    static const char *const specials[2] = {"<start_of_text>", "<end_of_text>"};
    static const char *const contractions[7] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = 0; i < b.n;) {
        size_t m = 0;
        int special = -1;
        for (int k = 0; k < 2 && !m; k++)
            if ((m = match_lit(&b, i, specials[k]))) special = k;
        for (int k = 0; k < 7 && !m; k++) m = match_lit(&b, i, contractions[k]);
        if (!m) {
            int cls = char_class(b.cp[i]);
            if (cls == CLS_SPACE) { i++; continue; }
            if (cls == CLS_NUMBER) m = 1;
            else {
                m = 1;
                while (i + m < b.n && char_class(b.cp[i + m]) == cls) m++;
            }
        }
        const uint8_t *pb = (const uint8_t *)text + b.off[i];
        size_t nb = b.off[i + m] - b.off[i];
        /* The reference's bpe() returns the special tokens unchanged only
         * when spelled exactly; a folded spelling (long s) is BPE'd. */
        if (special >= 0 && nb == strlen(specials[special]) && !memcmp(pb, specials[special], nb))
            rc = idvec_push(out, special ? PE_TOK_EOT : PE_TOK_SOT);
        else
            rc = bpe_piece(t, &s, pb, nb, out);
        if (rc) goto done;
        i += m;
    }
done:
    free(b.cp);
    free(b.off);
    scratch_free(&s);
    return rc;
}

int pe_tokenize_bpe(const pe_tokenizer *t, const char *utf8, size_t len, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (!t || (!utf8 && len)) return perr_set(PERR_INVALID, "pe_tokenize_bpe: NULL argument");
    if (len > PE_TOK_MAX_TEXT)
        return perr_set(PERR_TOO_LARGE, "text of %zu bytes exceeds the tokenizer limit of %u bytes",
                        len, PE_TOK_MAX_TEXT);
    idvec o = {0};
    int rc = tokenize_cleaned(t, utf8 ? utf8 : "", len, &o);
    if (rc) { free(o.v); return rc; }
    *ids = o.v;
    *n = (int)o.n;
    return PERR_OK;
}

int pe_tokenize(const pe_tokenizer *t, const char *utf8, size_t len, int context,
                int32_t *ids_out, int *n_bpe) {
    if (n_bpe) *n_bpe = 0;
    if (!t || !ids_out || (!utf8 && len)) return perr_set(PERR_INVALID, "pe_tokenize: NULL argument");
    if (context < 1 || context > PE_TOK_MAX_CONTEXT)
        return perr_set(PERR_INVALID, "context length %d outside 1..%d", context, PE_TOK_MAX_CONTEXT);
    if (len > PE_TOK_MAX_TEXT)
        return perr_set(PERR_TOO_LARGE, "text of %zu bytes exceeds the tokenizer limit of %u bytes",
                        len, PE_TOK_MAX_TEXT);
    char *clean = NULL;
    int rc = pe_text_clean(utf8 ? utf8 : "", len, &clean);
    if (rc) return rc;
    idvec o = {0};
    rc = tokenize_cleaned(t, clean, strlen(clean), &o);
    free(clean);
    if (rc) { free(o.v); return rc; }
    memset(ids_out, 0, (size_t)context * sizeof *ids_out);
    ids_out[0] = PE_TOK_SOT;
    size_t keep = o.n < (size_t)context - 1 ? o.n : (size_t)context - 1;
    if (keep) memcpy(ids_out + 1, o.v, keep * sizeof *o.v);
    if (o.n + 2 <= (size_t)context) ids_out[o.n + 1] = PE_TOK_EOT;
    else ids_out[context - 1] = PE_TOK_EOT;
    if (n_bpe) *n_bpe = o.n > (size_t)INT32_MAX ? INT32_MAX : (int)o.n;
    free(o.v);
    return PERR_OK;
}
