/* pe_config: which PE_core configuration a checkpoint holds (encoder-internal).
 *
 * Resolution order (the first that applies wins):
 *   1. an explicit JSON file (config_path),
 *   2. safetensors __metadata__ "vision_config" / "text_config" (JSON strings),
 *   3. "<model path without extension>.json" next to the model file,
 *   4. the five official PE-Core configurations, recognised from tensor shapes
 *      (heads cannot be read from shapes, so nothing else can be guessed).
 * JSON configs have the format of the fixtures' config.json:
 *   {"vision": {PEConfig kwargs}, "text": {PETextConfig kwargs}}
 * Then every key the configuration implies is checked to exist with exactly
 * the expected shape; the first missing or mis-shaped key is named in a
 * PERR_MODEL error. Keys the model does not use are ignored (the official
 * loader uses load_state_dict(strict=False)) and reported in the report.
 * All functions are pure and thread-safe.
 */
#ifndef PERCEPT_PE_CONFIG_H
#define PERCEPT_PE_CONFIG_H

#include "encoder/pe.h"
#include "encoder/pe_weights.h"

#include <stdint.h>

typedef struct pe_config_report {
    char source[320];            /* "--config <file>", "safetensors metadata", "<file>", "shapes" */
    int n_unexpected;            /* tensors the configuration does not use */
    char first_unexpected[160];  /* the first of them (file order), "" if none */
} pe_config_report;

/* Resolves and validates; see above. out is valid only on success.
 * model_path may be NULL (no "<model>.json" lookup), config_path may be NULL.
 * Errors: PERR_MODEL (shapes/keys do not fit, config not recognised),
 * PERR_FORMAT (config JSON malformed), PERR_UNSUPPORTED (config asks for a
 * variant we do not implement), PERR_IO / PERR_NOT_FOUND (config file). */
int pe_config_resolve(const pe_weights *w, const char *config_path, const char *model_path, pe_config *out);
/* Same, also filling rep (may be NULL). */
int pe_config_resolve_report(const pe_weights *w, const char *config_path, const char *model_path,
                             pe_config *out, pe_config_report *rep);

/* Parses a config JSON text ({"vision": {...}, "text": {...}}); label names
 * its origin in messages. Does not look at any weights. */
int pe_config_parse_json(const char *text, size_t len, const char *label, pe_config *out);

/* Recognises one of the official configurations from the shapes. */
int pe_config_from_shapes(const pe_weights *w, pe_config *out);

/* Checks every expected key and shape (and the configuration's own
 * consistency: head dims, RoPE pairs, vocabulary). */
int pe_config_check(const pe_weights *w, const pe_config *c, pe_config_report *rep);

/* The official configurations: count and i-th (NULL past the end). */
int pe_config_official_count(void);
const pe_config *pe_config_official(int i);

/* Number of parameters in the keys the configuration uses. */
int64_t pe_config_param_count(const pe_weights *w, const pe_config *c);
/* dtype of those keys: "float32", "float16", "bfloat16" or "mixed". */
const char *pe_config_dtype(const pe_weights *w, const pe_config *c);

#endif
