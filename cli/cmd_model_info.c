/* percept model info: what a checkpoint is, as one JSON object on stdout.
 * The field names are a stable interface (scripts and outside checks read
 * them); add fields, never rename or remove them. */
#include "cli/cli.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_config.h"
#include "encoder/pe_weights.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: percept model info [FILE] [--config JSON]\n"
            "Prints the configuration of a PE_core checkpoint (.pt or .safetensors) as JSON:\n"
            "name, format, image_size, patch_size, width, layers, heads, mlp_width, use_cls_token,\n"
            "pool_heads, output_dim, context_length, text_width, text_layers, text_heads,\n"
            "vocab_size, parameters, dtype, layerscale, config_source, unexpected_keys,\n"
            "encoder_isa (the instruction set the matrix products use on this CPU) and\n"
            "precisions (those this CPU runs natively: fp32, and bf16 with AVX512_BF16/AMX).\n"
            "FILE defaults to --model / $PERCEPT_MODEL / the installed default model.\n"
            "--config JSON  configuration for a checkpoint that is not an official one\n"
            "               ({\"vision\": {...}, \"text\": {...}}, as the fixtures' config.json).\n");
}

static int model_info(int argc, char **argv) {
    const char *file = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return CLI_OK; }
        if (!strcmp(a, "--config") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) { fprintf(stderr, "percept model info: %s needs a value\n", a); return CLI_ERROR; }
            if (!strcmp(a, "--config")) config = argv[++i]; else file = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) config = a + 9;
        else if (!strncmp(a, "--model=", 8)) file = a + 8;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "percept model info: unknown option '%s'\n", a); usage(stderr); return CLI_ERROR; }
        else if (!file) file = a;
        else { fprintf(stderr, "percept model info: one model file only ('%s')\n", a); return CLI_ERROR; }
    }
    char *path = NULL;
    int rc = cli_find_model(file, &path);
    if (rc) return cli_fail("model info", rc);
    pe_weights *w = NULL;
    pe_config c;
    pe_config_report rep;
    rc = pe_weights_open(path, &w);
    if (!rc) rc = pe_config_resolve_report(w, config, path, &c, &rep);
    if (rc) {
        if (w) perr_prefix(rc, "%s", path);
        pe_weights_close(w);
        free(path);
        return cli_fail("model info", rc);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", c.name);
    cJSON_AddStringToObject(o, "format", pe_weights_format(w));
    cJSON_AddNumberToObject(o, "image_size", c.image_size);
    cJSON_AddNumberToObject(o, "patch_size", c.patch_size);
    cJSON_AddNumberToObject(o, "width", c.width);
    cJSON_AddNumberToObject(o, "layers", c.layers);
    cJSON_AddNumberToObject(o, "heads", c.heads);
    cJSON_AddNumberToObject(o, "mlp_width", c.mlp_width);
    cJSON_AddBoolToObject(o, "use_cls_token", c.use_cls_token);
    cJSON_AddNumberToObject(o, "pool_heads", c.pool_heads);
    cJSON_AddNumberToObject(o, "output_dim", c.output_dim);
    cJSON_AddNumberToObject(o, "context_length", c.context_length);
    cJSON_AddNumberToObject(o, "text_width", c.text_width);
    cJSON_AddNumberToObject(o, "text_layers", c.text_layers);
    cJSON_AddNumberToObject(o, "text_heads", c.text_heads);
    cJSON_AddNumberToObject(o, "vocab_size", c.vocab_size);
    cJSON_AddNumberToObject(o, "parameters", (double)pe_config_param_count(w, &c));
    cJSON_AddStringToObject(o, "dtype", pe_config_dtype(w, &c));
    cJSON_AddBoolToObject(o, "layerscale", c.has_layerscale);
    cJSON_AddStringToObject(o, "config_source", rep.source);
    cJSON_AddNumberToObject(o, "unexpected_keys", rep.n_unexpected);
    cJSON_AddStringToObject(o, "encoder_isa", pe_cpu_isa());
    cJSON *pr = cJSON_AddArrayToObject(o, "precisions");
    cJSON_AddItemToArray(pr, cJSON_CreateString("fp32"));
    if (pe_precision_supported(PE_PRECISION_BF16, NULL, 0)) cJSON_AddItemToArray(pr, cJSON_CreateString("bf16"));
    char *s = cJSON_PrintUnformatted(o);
    int ret = CLI_OK;
    if (s) printf("%s\n", s);
    else ret = cli_fail("model info", perr_set(PERR_NOMEM, "printing JSON"));
    if (rep.n_unexpected)
        fprintf(stderr, "percept model info: note: %d tensor(s) not used by the model, e.g. '%s' (ignored, as the "
                        "official loader's strict=False does)\n", rep.n_unexpected, rep.first_unexpected);
    cJSON_free(s);
    cJSON_Delete(o);
    pe_weights_close(w);
    free(path);
    return ret;
}

CLI_COMMAND(model_info, "model info", "describe a model file (configuration, parameters, dtype) as JSON", model_info)
