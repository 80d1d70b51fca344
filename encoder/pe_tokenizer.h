/* pe_tokenizer: the CLIP byte-level BPE tokenizer of PE_core's text tower.
 *
 * Spec: ../shared/docs/pe-core.md "Tokenizer"; what is covered of ftfy's
 * text repair is listed in docs/tokenizer.md. Given the same vocabulary
 * (bpe_simple_vocab_16e6.txt.gz) the ids equal those of the official
 * SimpleTokenizer(clean="lower").
 *
 * A pe_tokenizer is immutable after pe_tokenizer_load and may be used from
 * any number of threads at once; pe_tokenize and pe_text_clean keep no
 * state between calls. Input text is UTF-8; invalid bytes are replaced by
 * U+FFFD, one per maximal invalid subpart, exactly as Python's
 * bytes.decode("utf-8", errors="replace") does.
 */
#ifndef PERCEPT_PE_TOKENIZER_H
#define PERCEPT_PE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define PE_TOK_VOCAB_SIZE 49408
#define PE_TOK_N_MERGES   48894
#define PE_TOK_SOT        49406   /* <start_of_text> */
#define PE_TOK_EOT        49407   /* <end_of_text> */
/* Longest accepted input text in bytes (a query, a caption, a label). */
#define PE_TOK_MAX_TEXT   (1u << 20)
#define PE_TOK_MAX_CONTEXT 65536

typedef struct pe_tokenizer pe_tokenizer;

/* Loads the merges file: gzip (bpe_simple_vocab_16e6.txt.gz) or plain
 * text. Checks the header line, the 48894 merges used (lines 2..48895) and
 * that every merge is made of earlier symbols; names the file and line of
 * the first problem. */
int pe_tokenizer_load(const char *vocab_path, pe_tokenizer **out);
void pe_tokenizer_free(pe_tokenizer *t);

/* Cleans and tokenizes one text. ids_out gets exactly `context` ids:
 * [49406] + bpe + [49407], zero-padded; when longer than context, cut to
 * context ids with the last one set to 49407. *n_bpe (optional) gets the
 * number of BPE ids before truncation. len > PE_TOK_MAX_TEXT is refused. */
int pe_tokenize(const pe_tokenizer *t, const char *utf8, size_t len, int context,
                int32_t *ids_out, int *n_bpe);

/* BPE ids of already-cleaned text (no ftfy, unescape, whitespace or case
 * handling): the pre-tokenizer and the merges alone. *ids is malloc'd
 * (caller frees), *n gets the count. Input must be valid UTF-8. */
int pe_tokenize_bpe(const pe_tokenizer *t, const char *utf8, size_t len,
                    int32_t **ids, int *n);

/* The cleaning step alone, as the official tokenizer does it: ftfy.fix_text
 * (6.3.1, default configuration; see docs/tokenizer.md), html.unescape
 * twice, strip, runs of white space to one space, strip, str.lower().
 * *out is a malloc'd NUL-terminated UTF-8 string (caller frees). */
int pe_text_clean(const char *utf8, size_t len, char **out);

/* Flags for pe_text_clean_ex (pe_text_clean = PE_CLEAN_ALL). */
enum {
    PE_CLEAN_FTFY  = 1,   /* ftfy.fix_text */
    PE_CLEAN_BASIC = 2,   /* html.unescape x2, white space, lower */
    PE_CLEAN_ALL   = 3
};
int pe_text_clean_ex(const char *utf8, size_t len, int flags, char **out);
/* ftfy.fix_text alone (6.3.1 defaults, as covered; see docs/tokenizer.md). */
int pe_ftfy_fix_text(const char *utf8, size_t len, char **out);

#endif
