/* pe_unidata: data tables of the tokenizer's text cleaning, generated from
 * Python's standard library by scripts/gen_unidata.py into pe_unidata.c
 * (see that script for what each table is). Internal to encoder/. */
#ifndef PERCEPT_PE_UNIDATA_H
#define PERCEPT_PE_UNIDATA_H

#include <stdint.h>

typedef struct pe_entity { const char *name, *value; } pe_entity; /* UTF-8 */
typedef struct pe_range { uint32_t lo, hi; } pe_range;            /* inclusive */

#define PE_N_CHARMAPS 10
typedef struct pe_charmap {
    const char *name;
    int sloppy;             /* undefined bytes as Latin-1, 0x1A = U+FFFD */
    uint16_t decode[256];   /* byte -> code point */
} pe_charmap;

/* html.entities.html5, sorted by name bytes (names with and without ';'). */
extern const pe_entity pe_html5_entities[];
extern const int pe_html5_n_entities;
extern const uint32_t pe_html_invalid_codepoints[];
extern const int pe_html_n_invalid_codepoints;
extern const uint32_t pe_html_invalid_charref[256];
/* ftfy's entities, "&name;" sorted by bytes. */
extern const pe_entity pe_ftfy_entities[];
extern const int pe_ftfy_n_entities;
/* In ftfy's order of trial. */
extern const pe_charmap pe_charmaps[PE_N_CHARMAPS];
extern const uint32_t pe_cp1252_strict[256];
extern const pe_range pe_cased_ranges[];
extern const int pe_n_cased_ranges;
extern const pe_range pe_case_ignorable_ranges[];
extern const int pe_n_case_ignorable_ranges;

/* ftfy's character classes for its mojibake heuristics, sorted by cp. */
enum {
    PE_MB_COMMON = 1u << 0, PE_MB_C1 = 1u << 1, PE_MB_BAD = 1u << 2,
    PE_MB_LAW = 1u << 3, PE_MB_CURRENCY = 1u << 4, PE_MB_START_PUNCT = 1u << 5,
    PE_MB_END_PUNCT = 1u << 6, PE_MB_NUMERIC = 1u << 7, PE_MB_KAOMOJI = 1u << 8,
    PE_MB_UPPER_ACCENTED = 1u << 9, PE_MB_LOWER_ACCENTED = 1u << 10,
    PE_MB_UPPER_COMMON = 1u << 11, PE_MB_LOWER_COMMON = 1u << 12,
    PE_MB_BOX = 1u << 13, PE_MB_UTF8_FIRST2 = 1u << 14,
    PE_MB_UTF8_FIRST3 = 1u << 15, PE_MB_UTF8_FIRST4 = 1u << 16,
    PE_MB_UTF8_CONT = 1u << 17, PE_MB_UTF8_CONT_STRICT = 1u << 18
};
typedef struct pe_cpbits { uint32_t cp, bits; } pe_cpbits;
extern const pe_cpbits pe_mojibake_bits[];
extern const int pe_n_mojibake_bits;

#endif
