/* pe_textclean: the text cleaning of the official CLIP tokenizer, in C.
 *
 * DESIGN. The reference (Python) does, for clean="lower":
 *   ftfy.fix_text(text)            (ftfy 6.3.1, default TextFixerConfig)
 *   html.unescape(html.unescape(.)), strip
 *   re.sub(r"\s+", " ", .), strip
 *   str.lower()
 * Everything works on arrays of code points (ustr), like Python's str.
 * Tables come from Python itself (scripts/gen_unidata.py -> pe_unidata.c);
 * general categories and normalization from utf8proc. Which parts of ftfy
 * are reproduced is listed in docs/tokenizer.md; in short: everything of
 * fix_text's default configuration, including the mojibake repair
 * (fix_encoding with its badness heuristic, the ten single-byte encodings,
 * restore_byte_a0, replace_lossy_sequences, utf-8-variants and
 * decode_inconsistent_utf8).
 * Pure functions: no global state, safe from any thread. Must never read
 * outside its buffers; every loop is bounded by the text length (the repair
 * loops end because ftfy's fixes converge; an iteration cap guards that).
 */
#define _GNU_SOURCE
#include "encoder/pe_tokenizer.h"
#include "encoder/pe_unidata.h"
#include "common/perr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------ */
/* Code point strings                                                    */

typedef struct ustr { uint32_t *c; size_t n, cap; int oom; } ustr;

static void us_free(ustr *s) { free(s->c); s->c = NULL; s->n = s->cap = 0; }

static int us_reserve(ustr *s, size_t n) {
    if (n <= s->cap) return 1;
    size_t cap = s->cap ? s->cap : 16;
    while (cap < n) cap *= 2;
    uint32_t *c = realloc(s->c, cap * sizeof *c);
    if (!c) { s->oom = 1; return 0; }
    s->c = c;
    s->cap = cap;
    return 1;
}

static inline void us_push(ustr *s, uint32_t c) {
    if (s->n == s->cap && !us_reserve(s, s->n + 1)) return;
    s->c[s->n++] = c;
}

static void us_append(ustr *s, const uint32_t *c, size_t n) {
    if (!n || !us_reserve(s, s->n + n)) return;
    memcpy(s->c + s->n, c, n * sizeof *c);
    s->n += n;
}

static void us_append_utf8(ustr *s, const char *u) {
    const uint8_t *p = (const uint8_t *)u;
    while (*p) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p, -1, &c);
        if (k <= 0) return;   /* tables are valid UTF-8 */
        us_push(s, (uint32_t)c);
        p += k;
    }
}

static int us_eq(const ustr *a, const ustr *b) {
    return a->n == b->n && (!a->n || !memcmp(a->c, b->c, a->n * sizeof *a->c));
}

static void us_swap(ustr *a, ustr *b) { ustr t = *a; *a = *b; *b = t; }

/* Python's bytes.decode("utf-8", "replace"): each maximal subpart of an
 * ill-formed sequence becomes one U+FFFD. */
static void utf8_decode_replace(const uint8_t *p, size_t n, ustr *out) {
    us_reserve(out, out->n + n);
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) { us_push(out, b); i++; continue; }
        int need;
        uint32_t c;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) { need = 1; c = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2; c = b & 0x0F;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3; c = b & 0x07;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else { us_push(out, 0xFFFD); i++; continue; }
        size_t j = i + 1;
        int ok = 1;
        for (int k = 0; k < need; k++, j++) {
            uint8_t lo_k = k == 0 ? lo : 0x80, hi_k = k == 0 ? hi : 0xBF;
            if (j >= n || p[j] < lo_k || p[j] > hi_k) { ok = 0; break; }
            c = (c << 6) | (p[j] & 0x3F);
        }
        if (ok) { us_push(out, c); i = j; }
        else { us_push(out, 0xFFFD); i = j; }   /* j = first byte not in the subpart */
    }
}

static char *utf8_encode(const ustr *s) {
    char *o = malloc(s->n * 4 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += (size_t)utf8proc_encode_char((utf8proc_int32_t)s->c[i], (utf8proc_uint8_t *)o + k);
    o[k] = 0;
    return o;
}

/* ------------------------------------------------------------------ */
/* Character properties                                                   */

static int in_ranges(const pe_range *r, int n, uint32_t c) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid - 1;
        else if (c > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static uint32_t mb_bits(uint32_t c) {
    if (c < 0x80) return 0;
    int lo = 0, hi = pe_n_mojibake_bits - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < pe_mojibake_bits[mid].cp) hi = mid - 1;
        else if (c > pe_mojibake_bits[mid].cp) lo = mid + 1;
        else return pe_mojibake_bits[mid].bits;
    }
    return 0;
}

/* Python's str.isspace() (= re's \s on str). */
static int py_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static int cat_major(uint32_t c, char major) {
    const char *s = utf8proc_category_string((utf8proc_int32_t)c);
    return s && s[0] == major;
}

/* re's \w on str: alphanumeric (letters and numbers) or '_'. */
static int py_isword(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
    return cat_major(c, 'L') || cat_major(c, 'N');
}

static int is_ascii_letter(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_ascii_lower(uint32_t c) { return c >= 'a' && c <= 'z'; }

/* ------------------------------------------------------------------ */
/* html.unescape (Python 3, HTML5 rules)                                  */

static const char *entity_find(const pe_entity *t, int n, const char *name) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, t[mid].name);
        if (!c) return t[mid].value;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

static int is_hex(uint32_t c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }
static int hex_val(uint32_t c) { return c <= '9' ? (int)(c - '0') : (int)((c | 0x20) - 'a' + 10); }

static void numeric_charref(uint32_t num, ustr *out) {
    if (num < 256 && pe_html_invalid_charref[num] != 0xFFFFFFFFu) { us_push(out, pe_html_invalid_charref[num]); return; }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) { us_push(out, 0xFFFD); return; }
    for (int i = 0; i < pe_html_n_invalid_codepoints; i++)
        if (pe_html_invalid_codepoints[i] == num) return;
    us_push(out, num);
}

/* Matches Python's _charref at s[i] == '&'; appends the replacement and
 * returns the number of code points consumed, or 0 when nothing matches. */
static size_t charref_at(const uint32_t *s, size_t n, size_t i, ustr *out) {
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
        size_t k = j + 1;
        int hex = 0;
        if (k < n && s[k] >= '0' && s[k] <= '9') hex = 0;
        else if (k + 1 < n && (s[k] == 'x' || s[k] == 'X') && is_hex(s[k + 1])) { hex = 1; k++; }
        else return 0;
        uint32_t num = 0;
        size_t e = k;
        for (; e < n && (hex ? is_hex(s[e]) : (s[e] >= '0' && s[e] <= '9')); e++) {
            uint32_t d = hex ? (uint32_t)hex_val(s[e]) : s[e] - '0';
            num = num > 0x110000 ? 0x110001 : num * (hex ? 16 : 10) + d;   /* saturates */
        }
        if (e < n && s[e] == ';') e++;
        numeric_charref(num, out);
        return e - i;
    }
    /* named: [^\t\n\f <&#;]{1,32};? */
    size_t e = j;
    while (e < n && e - j < 32) {
        uint32_t c = s[e];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
        e++;
    }
    if (e == j) return 0;
    if (e < n && s[e] == ';') e++;
    size_t len = e - j;           /* the name, with its ';' if any */
    char name[40];
    size_t ascii = 0;
    while (ascii < len && s[j + ascii] < 0x80) { name[ascii] = (char)s[j + ascii]; ascii++; }
    if (ascii == len) {
        name[len] = 0;
        const char *v = entity_find(pe_html5_entities, pe_html5_n_entities, name);
        if (v) { us_append_utf8(out, v); return e - i; }
    }
    /* the longest prefix (at least 2 characters) that is an entity */
    for (size_t x = len - 1; x >= 2; x--) {
        if (x > ascii) continue;
        name[x] = 0;
        const char *v = entity_find(pe_html5_entities, pe_html5_n_entities, name);
        if (v) {
            us_append_utf8(out, v);
            us_append(out, s + j + x, len - x);
            return e - i;
        }
        name[x] = s[j + x] < 0x80 ? (char)s[j + x] : 0;
    }
    us_push(out, '&');
    us_append(out, s + j, len);
    return e - i;
}

static void html_unescape(const ustr *in, ustr *out) {
    out->n = 0;
    us_reserve(out, in->n);
    for (size_t i = 0; i < in->n;) {
        if (in->c[i] == '&') {
            size_t k = charref_at(in->c, in->n, i, out);
            if (k) { i += k; continue; }
        }
        us_push(out, in->c[i++]);
    }
}

/* ------------------------------------------------------------------ */
/* ftfy: the fixes other than mojibake                                    */

/* ftfy.fixes.unescape_html: "&#?[0-9A-Za-z]{1,24};" matches; names from
 * its own table (html5 names with ';' and some all-caps spellings);
 * numeric references through html.unescape, kept only when that consumed
 * the ';'. */
static void ftfy_unescape_html(const ustr *in, ustr *out) {
    out->n = 0;
    us_reserve(out, in->n);
    ustr tmp = {0}, dec = {0};
    for (size_t i = 0; i < in->n;) {
        const uint32_t *s = in->c;
        if (s[i] == '&') {
            size_t k = i + 1;
            int num = k < in->n && s[k] == '#';
            if (num) k++;
            size_t e = k;
            while (e < in->n && e - k <= 24 && s[e] < 0x80 && isalnum((int)s[e])) e++;
            if (e > k && e - k <= 24 && e < in->n && s[e] == ';') {
                size_t mlen = e + 1 - i;   /* the whole match */
                char m[32];
                for (size_t t = 0; t < mlen; t++) m[t] = (char)s[i + t];
                m[mlen] = 0;
                const char *v = entity_find(pe_ftfy_entities, pe_ftfy_n_entities, m);
                if (v) { us_append_utf8(out, v); i += mlen; continue; }
                if (num) {
                    tmp.n = 0;
                    us_append(&tmp, s + i, mlen);
                    html_unescape(&tmp, &dec);
                    int has_semi = 0;
                    for (size_t t = 0; t < dec.n; t++) has_semi |= dec.c[t] == ';';
                    if (has_semi) us_append(out, s + i, mlen);
                    else us_append(out, dec.c, dec.n);
                    i += mlen;
                    continue;
                }
                us_append(out, s + i, mlen);
                i += mlen;
                continue;
            }
        }
        us_push(out, s[i++]);
    }
    if (tmp.oom || dec.oom) out->oom = 1;
    us_free(&tmp);
    us_free(&dec);
}

static void fix_c1_controls(ustr *s) {
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i] >= 0x80 && s->c[i] <= 0x9F) s->c[i] = pe_charmaps[1].decode[s->c[i]];
}

static const struct { uint32_t cp; const char *to; } LIGATURES[] = {
    {0x0132, "IJ"}, {0x0133, "ij"}, {0x0149, "\xca\xbcn"}, {0x01F1, "DZ"}, {0x01F2, "Dz"},
    {0x01F3, "dz"}, {0x01C4, "D\xc5\xbd"}, {0x01C5, "D\xc5\xbe"}, {0x01C6, "d\xc5\xbe"},
    {0x01C7, "LJ"}, {0x01C8, "Lj"}, {0x01C9, "lj"}, {0x01CA, "NJ"}, {0x01CB, "Nj"},
    {0x01CC, "nj"}, {0xFB00, "ff"}, {0xFB01, "fi"}, {0xFB02, "fl"}, {0xFB03, "ffi"},
    {0xFB04, "ffl"}, {0xFB05, "\xc5\xbft"}, {0xFB06, "st"},
};

static void fix_latin_ligatures(const ustr *in, ustr *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->c[i];
        const char *to = NULL;
        if ((c >= 0x0132 && c <= 0x01F3) || (c >= 0xFB00 && c <= 0xFB06))
            for (size_t k = 0; k < sizeof LIGATURES / sizeof *LIGATURES; k++)
                if (LIGATURES[k].cp == c) { to = LIGATURES[k].to; break; }
        if (to) us_append_utf8(out, to); else us_push(out, c);
    }
}

/* U+3000 -> space; U+FF01..U+FFEF -> NFKC of the character alone. */
static void fix_character_width(const ustr *in, ustr *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->c[i];
        if (c == 0x3000) { us_push(out, ' '); continue; }
        if (c >= 0xFF01 && c <= 0xFFEF) {
            utf8proc_int32_t buf[8];
            int last = 0;
            utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)c, buf, 8,
                                                         UTF8PROC_COMPAT | UTF8PROC_DECOMPOSE | UTF8PROC_STABLE, &last);
            if (k > 0 && k <= 8) {
                k = utf8proc_reencode(buf, k, UTF8PROC_COMPAT | UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                if (k > 0) {
                    /* reencode wrote UTF-8 into buf's bytes */
                    const uint8_t *p = (const uint8_t *)buf;
                    utf8proc_ssize_t off = 0;
                    while (off < k) {
                        utf8proc_int32_t d;
                        utf8proc_ssize_t m = utf8proc_iterate(p + off, k - off, &d);
                        if (m <= 0) break;
                        us_push(out, (uint32_t)d);
                        off += m;
                    }
                    continue;
                }
            }
        }
        us_push(out, c);
    }
}

static void uncurl_quotes(ustr *s) {
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->c[i];
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) s->c[i] = '\'';
        else if (c >= 0x201C && c <= 0x201F) s->c[i] = '"';
    }
}

static void fix_line_breaks(const ustr *in, ustr *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->c[i];
        if (c == '\r') { us_push(out, '\n'); if (i + 1 < in->n && in->c[i + 1] == '\n') i++; }
        else if (c == 0x2028 || c == 0x2029 || c == 0x85) us_push(out, '\n');
        else us_push(out, c);
    }
}

/* "\033\[((?:\d|;)*)([a-zA-Z])" removed; \d is any Unicode decimal digit. */
static void remove_terminal_escapes(const ustr *in, ustr *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n;) {
        if (in->c[i] == 0x1B && i + 1 < in->n && in->c[i + 1] == '[') {
            size_t k = i + 2;
            while (k < in->n && (in->c[k] == ';' ||
                   utf8proc_category((utf8proc_int32_t)in->c[k]) == UTF8PROC_CATEGORY_ND)) k++;
            if (k < in->n && is_ascii_letter(in->c[k])) { i = k + 1; continue; }
        }
        us_push(out, in->c[i++]);
    }
}

static void remove_control_chars(ustr *s) {
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->c[i];
        int drop = c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
                   (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
        if (!drop) s->c[k++] = c;
    }
    s->n = k;
}

static void nfc(const ustr *in, ustr *out) {
    out->n = 0;
    int ascii = 1;
    for (size_t i = 0; i < in->n && ascii; i++) ascii = in->c[i] < 0x80;
    if (ascii) { us_append(out, in->c, in->n); return; }
    char *u8 = utf8_encode(in);
    if (!u8) { out->oom = 1; return; }
    utf8proc_uint8_t *r = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)u8, (utf8proc_ssize_t)strlen(u8), &r,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(u8);
    if (k < 0) { /* cannot happen for valid scalar values; keep the text */ us_append(out, in->c, in->n); return; }
    utf8_decode_replace(r, (size_t)k, out);
    free(r);
}

/* ------------------------------------------------------------------ */
/* ftfy: mojibake detection (badness)                                     */

#define B(x) PE_MB_##x
/* Shorthands for the unions used by the heuristic's patterns. */
#define MB_MANY (B(LOWER_ACCENTED) | B(UPPER_ACCENTED) | B(BOX) | B(START_PUNCT) | \
                 B(END_PUNCT) | B(CURRENCY) | B(NUMERIC) | B(LAW))

typedef struct badctx { const uint32_t *s; size_t n; const uint32_t *bits; } badctx;

static inline uint32_t bat(const badctx *x, size_t i) { return i < x->n ? x->bits[i] : 0; }
static inline uint32_t cat(const badctx *x, size_t i) { return i < x->n ? x->s[i] : 0xFFFFFFFFu; }
static int in_str(uint32_t c, const uint32_t *set) { for (; *set; set++) if (*set == c) return 1; return 0; }

/* Whether any of the badness patterns matches at position i. */
static int bad_at(const badctx *x, size_t i) {
    uint32_t c0 = cat(x, i), c1 = cat(x, i + 1), c2 = cat(x, i + 2);
    uint32_t b0 = bat(x, i), b1 = bat(x, i + 1), b2 = bat(x, i + 2);
    if (b0 & B(C1)) return 1;
    if ((b0 & (B(BAD) | MB_MANY)) && (b1 & B(BAD))) return 1;
    if (i + 2 < x->n && is_ascii_letter(c0) && (b1 & (B(LOWER_COMMON) | B(UPPER_COMMON))) && (b2 & B(BAD))) return 1;
    if ((b0 & B(BAD)) && (b1 & MB_MANY)) return 1;
    if ((b0 & (B(LOWER_ACCENTED) | B(LOWER_COMMON) | B(BOX) | B(END_PUNCT) | B(CURRENCY) | B(NUMERIC))) &&
        (b1 & B(UPPER_ACCENTED))) return 1;
    if ((b0 & (B(BOX) | B(END_PUNCT) | B(CURRENCY) | B(NUMERIC))) && (b1 & B(LOWER_ACCENTED))) return 1;
    if ((b0 & (B(LOWER_ACCENTED) | B(BOX) | B(END_PUNCT))) && (b1 & B(CURRENCY))) return 1;
    if (i + 2 < x->n && py_isspace(c0) && (b1 & B(UPPER_ACCENTED)) && (b2 & B(CURRENCY))) return 1;
    if ((b0 & (B(UPPER_ACCENTED) | B(BOX))) && (b1 & (B(NUMERIC) | B(LAW)))) return 1;
    if ((b0 & (B(LOWER_ACCENTED) | B(UPPER_ACCENTED) | B(BOX) | B(CURRENCY) | B(END_PUNCT))) &&
        (b1 & B(START_PUNCT)) && (b2 & B(NUMERIC))) return 1;
    if ((b0 & (B(LOWER_ACCENTED) | B(UPPER_ACCENTED) | B(CURRENCY) | B(NUMERIC) | B(BOX) | B(LAW))) &&
        (b1 & B(END_PUNCT)) && (b2 & B(START_PUNCT))) return 1;
    if ((b0 & (B(CURRENCY) | B(NUMERIC) | B(BOX))) && (b1 & B(START_PUNCT))) return 1;
    if (i + 2 < x->n && is_ascii_lower(c0) && (b1 & B(UPPER_ACCENTED)) && (b2 & (B(START_PUNCT) | B(CURRENCY)))) return 1;
    if ((b0 & B(BOX)) && (b1 & B(KAOMOJI))) return 1;
    if ((b0 & (B(LOWER_ACCENTED) | B(UPPER_ACCENTED) | B(CURRENCY) | B(NUMERIC) | B(START_PUNCT) |
               B(END_PUNCT) | B(LAW))) && (b1 & B(BOX))) return 1;
    if ((b0 & B(BOX)) && (b1 & B(END_PUNCT))) return 1;
    if ((b0 & (B(LOWER_ACCENTED) | B(UPPER_ACCENTED))) && (b1 & (B(START_PUNCT) | B(END_PUNCT))) &&
        i + 2 < x->n && py_isword(c2)) return 1;
    if ((c0 == 0x152 || c0 == 0x153) && i + 1 < x->n && !is_ascii_letter(c1)) return 1;
    if ((b0 & B(UPPER_ACCENTED)) && c1 == 0xB0) return 1;
    {
        static const uint32_t after_a[] = {0x20AC, 0x153, 0x160, 0x161, 0xA2, 0xA3, 0x178, 0x17E,
                                           0xA0, 0xAD, 0xAE, 0xA9, 0xB0, 0xB7, 0xBB, 0x2013, 0x2014, 0xB4, 0};
        if ((c0 == 0xC2 || c0 == 0xC3 || c0 == 0xCE || c0 == 0xD0) && i + 1 < x->n &&
            (in_str(c1, after_a) || (b1 & (B(START_PUNCT) | B(END_PUNCT))))) return 1;
    }
    if (c0 == 0xD7 && (c1 == 0xB2 || c1 == 0xB3)) return 1;
    {
        static const uint32_t arab[] = {0x178, 0x160, 0xAE, 0xB0, 0xB5, 0xBB, 0};
        uint32_t m = B(COMMON) | B(CURRENCY) | B(BAD) | B(NUMERIC) | B(START_PUNCT);
        if ((c0 == 0xD8 || c0 == 0xD9) && i + 3 < x->n && ((b1 & m) || in_str(c1, arab)) &&
            (c2 == 0xD8 || c2 == 0xD9) && ((bat(x, i + 3) & m) || in_str(cat(x, i + 3), arab))) return 1;
    }
    {
        static const uint32_t s1[] = {0xB2, 0xB5, 0xB9, 0xBC, 0xBD, 0xBE, 0};
        if (c0 == 0xE0 && i + 1 < x->n && in_str(c1, s1)) return 1;
    }
    {
        static const uint32_t s1[] = {0xB1, 0x2202, 0x2020, 0x2260, 0xAE, 0x2122, 0xB4, 0x2264, 0x2265, 0xA5, 0xB5, 0xF8, 0};
        if (c0 == 0x221A && i + 1 < x->n && in_str(c1, s1)) return 1;
        if (c0 == 0x2248 && (c1 == 0xB0 || c1 == 0xA2)) return 1;
    }
    if (c0 == 0x201A) {
        static const uint32_t s2[] = {0xEC, 0xEE, 0xEF, 0xF2, 0xF4, 0xFA, 0xF9, 0xFB, 0x2020, 0xB0, 0xA2, 0x3C0, 0};
        static const uint32_t s3[] = {0xE0, 0xE4, 0xB0, 0xEA, 0};
        if (c1 == 0xC4 && i + 2 < x->n && in_str(c2, s2)) return 1;
        if ((c1 == 0xE2 || c1 == 0xF3) && i + 2 < x->n && in_str(c2, s3)) return 1;
    }
    if (c0 == 0x432 && c1 == 0x402) return 1;
    {
        uint32_t m = B(C1) | B(BAD) | B(START_PUNCT) | B(END_PUNCT) | B(CURRENCY);
        int cyr0 = c0 == 0x412 || c0 == 0x413 || c0 == 0x420 || c0 == 0x421;
        int cyr2 = c2 == 0x412 || c2 == 0x413 || c2 == 0x420 || c2 == 0x421;
        if (cyr0 && i + 2 < x->n && ((b1 & m) || c1 == 0xB0 || c1 == 0xB5) && cyr2) return 1;
    }
    if (c0 == 0x413 && c1 == 0x45E && c2 == 0x412 && cat(x, i + 3) == 0x402 && cat(x, i + 4) == 0x412 &&
        i + 6 < x->n && x->s[i + 5] != '\n' && (is_ascii_letter(x->s[i + 6]) || x->s[i + 6] == ' ')) return 1;
    if (c0 == 0xC3 && (c1 == 0xA0 || c1 == 0xA1)) return 1;
    if (is_ascii_lower(c0)) {
        size_t k = i + 1;
        if (k < x->n && py_isspace(x->s[k]) && k + 2 < x->n && (x->s[k + 1] == 0xC3 || x->s[k + 1] == 0xC2) &&
            x->s[k + 2] == ' ') return 1;
        if (k + 1 < x->n && (x->s[k] == 0xC3 || x->s[k] == 0xC2) && x->s[k + 1] == ' ') return 1;
    }
    if (i == 0 && (c0 == 0xC3 || c0 == 0xC2) && c1 == ' ') return 1;
    if ((is_ascii_lower(c0) || c0 == '.' || c0 == ',' || c0 == '?' || c0 == '!' || (b0 & B(END_PUNCT))) &&
        c1 == 0xC2 && i + 2 < x->n && (c2 == ' ' || (b2 & (B(START_PUNCT) | B(END_PUNCT))))) return 1;
    if (c0 == 0x3B2 && c1 == 0x20AC && i + 2 < x->n &&
        (c2 == 0x2122 || c2 == 0xA0 || c2 == 0x386 || c2 == 0xAD || c2 == 0xAE || c2 == 0xB0)) return 1;
    {
        uint32_t m = B(C1) | B(BAD) | B(START_PUNCT) | B(END_PUNCT) | B(CURRENCY);
        int g0 = c0 == 0x392 || c0 == 0x393 || c0 == 0x39E || c0 == 0x39F;
        int g2 = c2 == 0x392 || c2 == 0x393 || c2 == 0x39E || c2 == 0x39F;
        if (g0 && i + 2 < x->n && ((b1 & m) || c1 == 0xB0) && g2) return 1;
    }
    if (c0 == 0x101 && c1 == 0x20AC) return 1;
    return 0;
}

/* ftfy.badness.is_bad on s[0..n) (a whole string: '^' is position 0). */
static int is_bad_range(const uint32_t *s, size_t n, ustr *bitbuf) {
    bitbuf->n = 0;
    if (!us_reserve(bitbuf, n + 1)) return 0;
    int any = 0;
    for (size_t i = 0; i < n; i++) { bitbuf->c[i] = mb_bits(s[i]); any |= bitbuf->c[i] != 0; }
    if (!any) return 0;   /* every pattern needs a classed character */
    badctx x = {s, n, bitbuf->c};
    for (size_t i = 0; i < n; i++)
        if (bad_at(&x, i)) return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* ftfy: fix_encoding                                                      */

typedef struct bytes_t { uint8_t *b; size_t n, cap; int oom; } bytes_t;

static void by_push(bytes_t *o, uint8_t v) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        uint8_t *nb = realloc(o->b, cap);
        if (!nb) { o->oom = 1; return; }
        o->b = nb;
        o->cap = cap;
    }
    o->b[o->n++] = v;
}

/* Can text be encoded (possibly sloppily) in charmap e? Then fills out. */
static int charmap_encode(const pe_charmap *e, const ustr *s, bytes_t *out) {
    out->n = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->c[i];
        if (c < 0x80 && c != 0x1A) { by_push(out, (uint8_t)c); continue; }
        int b = -1;
        if (e->decode[0x1A] == c) b = 0x1A;
        else for (int k = 0x80; k < 0x100; k++) if (e->decode[k] == c) { b = k; break; }
        if (b < 0) return 0;
        by_push(out, (uint8_t)b);
    }
    return !out->oom;
}

static int in_x(uint8_t b) { return (b >= 0x80 && b <= 0x84) || (b >= 0x86 && b <= 0x9F) || (b >= 0xA1 && b <= 0xBF); }
static int is_cont(uint8_t b) { return b >= 0x80 && b <= 0xBF; }

/* Length of the ALTERED_UTF8_RE match at i (0 = none). */
static size_t altered_at(const uint8_t *p, size_t n, size_t i) {
    uint8_t b0 = p[i];
    size_t r = n - i;
    if (r >= 2 && (b0 == 0xC2 || b0 == 0xC3 || b0 == 0xC5 || b0 == 0xCE || b0 == 0xD0 || b0 == 0xD9) && p[i + 1] == ' ') return 2;
    if (r >= 3 && (b0 == 0xE2 || b0 == 0xE3) && p[i + 1] == ' ' && in_x(p[i + 2])) return 3;
    if (r >= 3 && b0 >= 0xE0 && b0 <= 0xE3 && in_x(p[i + 1]) && p[i + 2] == ' ') return 3;
    if (r >= 4 && b0 == 0xF0) {
        if (p[i + 1] == ' ' && is_cont(p[i + 2]) && is_cont(p[i + 3])) return 4;
        if (is_cont(p[i + 1]) && p[i + 2] == ' ' && is_cont(p[i + 3])) return 4;
        if (is_cont(p[i + 1]) && is_cont(p[i + 2]) && p[i + 3] == ' ') return 4;
    }
    return 0;
}

static void restore_byte_a0(bytes_t *bt) {
    bytes_t t = {0};
    const uint8_t *p = bt->b;
    size_t n = bt->n;
    /* "\xc3 (?! |quele|quela|quilo|s )" -> "\xc3\xa0 " */
    for (size_t i = 0; i < n;) {
        if (p[i] == 0xC3 && i + 1 < n && p[i + 1] == ' ') {
            const uint8_t *q = p + i + 2;
            size_t r = n - i - 2;
            int neg = (r >= 1 && q[0] == ' ') ||
                      (r >= 5 && (!memcmp(q, "quele", 5) || !memcmp(q, "quela", 5) || !memcmp(q, "quilo", 5))) ||
                      (r >= 2 && q[0] == 's' && q[1] == ' ');
            if (!neg) { by_push(&t, 0xC3); by_push(&t, 0xA0); by_push(&t, ' '); i += 2; continue; }
        }
        by_push(&t, p[i++]);
    }
    bytes_t u = {0};
    for (size_t i = 0; i < t.n;) {
        size_t m = altered_at(t.b, t.n, i);
        if (m) {
            for (size_t k = 0; k < m; k++) by_push(&u, t.b[i + k] == ' ' ? 0xA0 : t.b[i + k]);
            i += m;
        } else by_push(&u, t.b[i++]);
    }
    free(t.b);
    if (t.oom || u.oom) { free(u.b); bt->oom = 1; return; }
    free(bt->b);
    *bt = u;
}

static int lz(uint8_t b) { return b == 0x1A || b == '?'; }             /* [\x1a?] */
static int lzc(uint8_t b) { return b == 0x1A || is_cont(b); }           /* [\x1a\x80-\xbf] */
static int lzqc(uint8_t b) { return b == 0x1A || b == '?' || is_cont(b); }

/* Length of the LOSSY_UTF8_RE match at i (0 = none). */
static size_t lossy_at(const uint8_t *p, size_t n, size_t i) {
    uint8_t b0 = p[i];
    size_t r = n - i;
    const uint8_t *q = p + i;
    if (r >= 2 && b0 >= 0xC2 && b0 <= 0xDF && q[1] == 0x1A) return 2;
    if (r >= 2 && (b0 == 0xC2 || b0 == 0xC3) && q[1] == '?') return 2;
    if (r >= 6 && b0 == 0xED && q[1] >= 0xA0 && q[1] <= 0xAF && q[3] == 0xED && q[4] >= 0xB0 && q[4] <= 0xBF) {
        if (lz(q[2]) && lzqc(q[5])) return 6;
        if (lzqc(q[2]) && lz(q[5])) return 6;
    }
    if (r >= 3 && b0 >= 0xE0 && b0 <= 0xEF) {
        if (lz(q[1]) && lzc(q[2])) return 3;
        if (lzc(q[1]) && lz(q[2])) return 3;
    }
    if (r >= 4 && b0 >= 0xF0 && b0 <= 0xF4) {
        if (lz(q[1]) && lzc(q[2]) && lzc(q[3])) return 4;
        if (lzc(q[1]) && lz(q[2]) && lzc(q[3])) return 4;
        if (lzc(q[1]) && lzc(q[2]) && lz(q[3])) return 4;
    }
    if (b0 == 0x1A) return 1;
    return 0;
}

static void replace_lossy_sequences(bytes_t *bt) {
    bytes_t u = {0};
    for (size_t i = 0; i < bt->n;) {
        size_t m = lossy_at(bt->b, bt->n, i);
        if (m) { by_push(&u, 0xEF); by_push(&u, 0xBF); by_push(&u, 0xBD); i += m; }
        else by_push(&u, bt->b[i++]);
    }
    if (u.oom) { free(u.b); bt->oom = 1; return; }
    free(bt->b);
    *bt = u;
}

/* Strict UTF-8 (Python's codec), or ftfy's "utf-8-variants" which also
 * takes CESU-8 surrogate pairs and the Java null C0 80. 0 on failure. */
static int utf8_decode_strict(const uint8_t *p, size_t n, int variants, ustr *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        if (b < 0x80) { us_push(out, b); i++; continue; }
        if (variants) {
            if (b == 0xC0 && i + 1 < n && p[i + 1] == 0x80) { us_push(out, 0); i += 2; continue; }
            if (b == 0xED && i + 5 < n && p[i + 1] >= 0xA0 && p[i + 1] <= 0xAF && is_cont(p[i + 2]) &&
                p[i + 3] == 0xED && p[i + 4] >= 0xB0 && p[i + 4] <= 0xBF && is_cont(p[i + 5])) {
                uint32_t hi = 0xD000 | ((uint32_t)(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
                uint32_t lo = 0xD000 | ((uint32_t)(p[i + 4] & 0x3F) << 6) | (p[i + 5] & 0x3F);
                us_push(out, 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
                i += 6;
                continue;
            }
        }
        int need;
        uint32_t c;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) { need = 1; c = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) { need = 2; c = b & 0x0F; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
        else if (b >= 0xF0 && b <= 0xF4) { need = 3; c = b & 0x07; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
        else return 0;
        if (i + (size_t)need >= n) return 0;   /* truncated sequence */
        for (int k = 1; k <= need; k++) {
            uint8_t v = p[i + k];
            if (v < (k == 1 ? lo : 0x80) || v > (k == 1 ? hi : 0xBF)) return 0;
            c = (c << 6) | (v & 0x3F);
        }
        us_push(out, c);
        i += (size_t)need + 1;
    }
    return !out->oom;
}

typedef struct fixer { ustr bits, tmp, tmp2; bytes_t enc; int depth; } fixer;

static int fix_encoding_step(fixer *f, const ustr *text, ustr *out);

/* ftfy.fix_encoding: steps until nothing changes. */
static void fix_encoding(fixer *f, ustr *text) {
    ustr next = {0};
    for (int iter = 0; iter < 64; iter++) {
        if (!fix_encoding_step(f, text, &next)) break;
        us_swap(text, &next);
    }
    if (next.oom) text->oom = 1;
    us_free(&next);
}

/* decode_inconsistent_utf8: runs of UTF-8-looking mojibake, not preceded by
 * a strict continuation character, fixed on their own when they look bad
 * and are shorter than the whole text. */
static void decode_inconsistent_utf8(fixer *f, const ustr *text, ustr *out) {
    out->n = 0;
    const uint32_t *s = text->c;
    size_t n = text->n;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        if (i == 0 || !(mb_bits(s[i - 1]) & B(UTF8_CONT_STRICT))) {
            for (;;) {
                uint32_t b = e < n ? mb_bits(s[e]) : 0;
                size_t need = 0;
                if (e < n && (b & B(UTF8_FIRST2)) && e + 1 < n && (mb_bits(s[e + 1]) & B(UTF8_CONT)) ) need = 1;
                else if (e < n && (b & B(UTF8_FIRST3)) && e + 2 < n && (mb_bits(s[e + 1]) & B(UTF8_CONT)) &&
                         (mb_bits(s[e + 2]) & B(UTF8_CONT))) need = 2;
                else if (e < n && (b & B(UTF8_FIRST4)) && e + 3 < n && (mb_bits(s[e + 1]) & B(UTF8_CONT)) &&
                         (mb_bits(s[e + 2]) & B(UTF8_CONT)) && (mb_bits(s[e + 3]) & B(UTF8_CONT))) need = 3;
                if (!need) break;
                e += need + 1;
            }
        }
        if (e == i) { us_push(out, s[i++]); continue; }
        size_t len = e - i;
        if (len < n && f->depth < 8 && is_bad_range(s + i, len, &f->bits)) {
            ustr sub = {0};
            us_append(&sub, s + i, len);
            f->depth++;
            fix_encoding(f, &sub);
            f->depth--;
            us_append(out, sub.c, sub.n);
            if (sub.oom) out->oom = 1;
            us_free(&sub);
        } else {
            us_append(out, s + i, len);
        }
        i = e;
    }
}

/* One step of ftfy's fix_encoding; returns 1 and fills out when the text
 * changed. */
static int fix_encoding_step(fixer *f, const ustr *text, ustr *out) {
    if (!text->n) return 0;
    int ascii = 1;
    for (size_t i = 0; i < text->n && ascii; i++) ascii = text->c[i] < 0x80;
    if (ascii || !is_bad_range(text->c, text->n, &f->bits)) return 0;

    int latin1_possible = 0;
    for (int e = 0; e < PE_N_CHARMAPS; e++) {
        const pe_charmap *cm = &pe_charmaps[e];
        if (!charmap_encode(cm, text, &f->enc)) continue;
        if (e == 0) latin1_possible = 1;
        if (strcmp(cm->name, "macroman") != 0) {
            int any = 0;
            for (size_t i = 0; i < f->enc.n && !any; i++) any = altered_at(f->enc.b, f->enc.n, i) != 0;
            if (any) restore_byte_a0(&f->enc);
        }
        if (cm->sloppy) replace_lossy_sequences(&f->enc);
        if (f->enc.oom) return 0;
        int variants = memchr(f->enc.b, 0xED, f->enc.n) || memchr(f->enc.b, 0xC0, f->enc.n);
        if (utf8_decode_strict(f->enc.b, f->enc.n, variants, out)) return !us_eq(out, text);
    }

    /* UTF8_DETECTOR_RE present: fix the embedded pieces. */
    decode_inconsistent_utf8(f, text, out);
    if (!us_eq(out, text)) return 1;

    if (latin1_possible) {
        /* Latin-1 read where windows-1252 was meant (strict: fails on the
         * five bytes windows-1252 leaves undefined). */
        out->n = 0;
        int ok = 1;
        for (size_t i = 0; i < text->n && ok; i++) {
            uint32_t c = text->c[i];
            uint32_t d = c < 0x100 ? pe_cp1252_strict[c] : 0xFFFFFFFFu;
            if (c == 0x1A) d = 0x1A;
            if (d == 0xFFFFFFFFu) ok = 0; else us_push(out, d);
        }
        if (ok && !us_eq(out, text)) return 1;
    }
    int c1 = 0;
    for (size_t i = 0; i < text->n && !c1; i++) c1 = text->c[i] >= 0x80 && text->c[i] <= 0x9F;
    if (c1) {
        out->n = 0;
        us_append(out, text->c, text->n);
        fix_c1_controls(out);
        return !us_eq(out, text);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* ftfy.fix_text                                                           */

/* fix_and_explain on one segment: all fixes, repeated until stable. */
static void fix_segment(fixer *f, ustr *s, int unescape) {
    ustr orig = {0}, t = {0};
    for (int iter = 0; iter < 32; iter++) {
        orig.n = 0;
        us_append(&orig, s->c, s->n);
        if (unescape) { ftfy_unescape_html(s, &t); us_swap(s, &t); }
        fix_encoding(f, s);
        fix_c1_controls(s);
        fix_latin_ligatures(s, &t); us_swap(s, &t);
        fix_character_width(s, &t); us_swap(s, &t);
        uncurl_quotes(s);
        fix_line_breaks(s, &t); us_swap(s, &t);
        remove_terminal_escapes(s, &t); us_swap(s, &t);
        remove_control_chars(s);
        nfc(s, &t); us_swap(s, &t);
        if (s->oom || t.oom || orig.oom) { s->oom = 1; break; }
        if (us_eq(s, &orig)) break;
    }
    us_free(&orig);
    us_free(&t);
}

#define FTFY_MAX_DECODE_LENGTH 1000000

/* Plain ASCII without '&', ESC, CR or other control characters is left
 * unchanged by every fix: the common case, answered without copying. */
static int ftfy_identity(const ustr *t) {
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->c[i];
        if (c >= 0x7F || c == '&' || (c < 0x20 && c != '\t' && c != '\n' && c != '\f')) return 0;
    }
    return 1;
}

static void fix_text(ustr *text) {
    if (ftfy_identity(text)) return;
    fixer f = {0};
    ustr out = {0}, seg = {0};
    int unescape = 1;   /* "auto": off from the first segment with '<' */
    for (size_t pos = 0; pos < text->n;) {
        size_t end = pos;
        while (end < text->n && text->c[end] != '\n') end++;
        end = end < text->n ? end + 1 : text->n;
        if (end - pos > FTFY_MAX_DECODE_LENGTH) end = pos + FTFY_MAX_DECODE_LENGTH;
        seg.n = 0;
        us_append(&seg, text->c + pos, end - pos);
        for (size_t i = 0; i < seg.n && unescape; i++) if (seg.c[i] == '<') unescape = 0;
        fix_segment(&f, &seg, unescape);
        us_append(&out, seg.c, seg.n);
        if (seg.oom) out.oom = 1;
        pos = end;
    }
    int oom = out.oom || text->oom || f.bits.oom || f.enc.oom;
    us_swap(text, &out);
    text->oom = oom;
    us_free(&out);
    us_free(&seg);
    us_free(&f.bits);
    us_free(&f.tmp);
    us_free(&f.tmp2);
    free(f.enc.b);
}

/* ------------------------------------------------------------------ */
/* The rest of the official cleaning                                       */

/* re.sub(r"\s+", " ", text).strip() */
static void collapse_whitespace(const ustr *in, ustr *out) {
    out->n = 0;
    int pending = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (py_isspace(in->c[i])) { pending = out->n > 0; continue; }
        if (pending) { us_push(out, ' '); pending = 0; }
        us_push(out, in->c[i]);
    }
}

static int is_cased(uint32_t c) { return in_ranges(pe_cased_ranges, pe_n_cased_ranges, c); }
static int is_case_ignorable(uint32_t c) { return in_ranges(pe_case_ignorable_ranges, pe_n_case_ignorable_ranges, c); }

/* CPython's rule for U+03A3: final form when preceded by a cased letter and
 * not followed by one, skipping case-ignorable characters both ways. */
static int final_sigma(const ustr *s, size_t i) {
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) {
        c = s->c[--j];
        if (!is_case_ignorable(c)) { found = 1; break; }
    }
    if (!found || !is_cased(c)) return 0;
    for (j = i + 1; j < s->n; j++) {
        c = s->c[j];
        if (!is_case_ignorable(c)) return !is_cased(c);
    }
    return 1;
}

/* Python's str.lower(): full lowercase mapping. */
static void py_lower(const ustr *in, ustr *out) {
    out->n = 0;
    us_reserve(out, in->n);
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->c[i];
        if (c < 0x80) { us_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c); continue; }
        if (c == 0x130) { us_push(out, 'i'); us_push(out, 0x307); continue; }
        if (c == 0x3A3) { us_push(out, final_sigma(in, i) ? 0x3C2 : 0x3C3); continue; }
        us_push(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
    }
}

int pe_text_clean_ex(const char *utf8, size_t len, int flags, char **out) {
    *out = NULL;
    if (!utf8 && len) return perr_set(PERR_INVALID, "pe_text_clean: NULL text");
    if (len > PE_TOK_MAX_TEXT)
        return perr_set(PERR_TOO_LARGE, "text of %zu bytes exceeds the tokenizer limit of %u bytes",
                        len, PE_TOK_MAX_TEXT);
    ustr a = {0}, b = {0};
    utf8_decode_replace((const uint8_t *)(utf8 ? utf8 : ""), len, &a);
    if (flags & PE_CLEAN_FTFY) fix_text(&a);
    if (flags & PE_CLEAN_BASIC) {
        int has_amp = 0;
        for (size_t i = 0; i < a.n && !has_amp; i++) has_amp = a.c[i] == '&';
        if (has_amp) {
            html_unescape(&a, &b); us_swap(&a, &b);
            html_unescape(&a, &b); us_swap(&a, &b);
        }
        collapse_whitespace(&a, &b); us_swap(&a, &b);
        py_lower(&a, &b); us_swap(&a, &b);
    }
    int oom = a.oom || b.oom;
    char *s = oom ? NULL : utf8_encode(&a);
    us_free(&a);
    us_free(&b);
    if (!s) return perr_set(PERR_NOMEM, "cleaning %zu bytes of text", len);
    *out = s;
    return PERR_OK;
}

int pe_text_clean(const char *utf8, size_t len, char **out) {
    return pe_text_clean_ex(utf8, len, PE_CLEAN_ALL, out);
}

int pe_ftfy_fix_text(const char *utf8, size_t len, char **out) {
    return pe_text_clean_ex(utf8, len, PE_CLEAN_FTFY, out);
}
