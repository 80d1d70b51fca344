/* A database records the precision of its vectors (engine.json
 * "precision"): created with bf16 it reopens in bf16 without asking, a
 * request for fp32 is refused with the reason (vectors of two precisions
 * would be mixed), eng_get_info reports it with the instruction set; a
 * database that records none (made before the field) is fp32. On a CPU
 * without native bf16 the creation in bf16 is refused instead. tiny-a
 * model; the encoded image must equal a direct pe_model in that precision. */
#include "common/perr.h"
#include "encoder/pe.h"
#include "engine/eng.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *model, *image;

static int open_db(const char *dir, const char *prec, int create, eng_db **db) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model;
    o.create = create;
    o.precision = prec;
    return eng_open(dir, &o, db);
}

static char *engine_json(const char *dir) {
    char *p = t_path("%s/engine.json", dir);
    char *s = t_read_file(p, NULL);
    free(p);
    return s;
}

static void test_bf16_recorded(void) {
    char *dir = t_tmpdir("eng_prec");
    eng_db *db = NULL;
    if (!pe_precision_supported(PE_PRECISION_BF16, NULL, 0)) {
        CHECK_ERR(open_db(dir, "bf16", 1, &db), PERR_UNSUPPORTED);
        CHECK(strstr(perr_msg(), "AVX512_BF16") != NULL);
        printf("  no native bf16: creation refused: %s\n", perr_msg());
        free(dir);
        return;
    }
    REQUIRE_OK(open_db(dir, "bf16", 1, &db));
    eng_info info;
    CHECK_OK(eng_get_info(db, &info));
    CHECK_STR(info.precision, "bf16");
    CHECK(info.encoder_isa[0] != 0);
    printf("  precision %s, encoder isa %s\n", info.precision, info.encoder_isa);
    float v[64];
    CHECK_OK(eng_encode_image_file(db, image, v));
    CHECK_OK(eng_close(db));
    char *js = engine_json(dir);
    CHECK(js && strstr(js, "\"precision\":\t\"bf16\"") != NULL);
    free(js);
    /* reopened without asking: bf16 again, same vector */
    db = NULL;
    REQUIRE_OK(open_db(dir, NULL, 0, &db));
    CHECK_OK(eng_get_info(db, &info));
    CHECK_STR(info.precision, "bf16");
    float w[64];
    CHECK_OK(eng_encode_image_file(db, image, w));
    CHECK(memcmp(v, w, 32 * sizeof(float)) == 0);
    CHECK_OK(eng_close(db));
    /* opened for creation (as `percept ingest` does) without asking: the
     * model loaded before the record is read is reloaded in bf16 */
    db = NULL;
    REQUIRE_OK(open_db(dir, NULL, 1, &db));
    CHECK_OK(eng_get_info(db, &info));
    CHECK_STR(info.precision, "bf16");
    CHECK_OK(eng_encode_image_file(db, image, w));
    CHECK(memcmp(v, w, 32 * sizeof(float)) == 0);
    CHECK_OK(eng_close(db));
    /* the same as the encoder in bf16, and not the fp32 vector */
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    pe_model *m16 = NULL, *m32 = NULL;
    lo.precision = PE_PRECISION_BF16;
    CHECK_OK(pe_model_load(model, &lo, &m16));
    lo.precision = PE_PRECISION_FP32;
    CHECK_OK(pe_model_load(model, &lo, &m32));
    eng_db *e32 = NULL;
    char *dir32 = t_tmpdir("eng_prec32");
    REQUIRE_OK(open_db(dir32, NULL, 1, &e32));
    CHECK_OK(eng_get_info(e32, &info));
    CHECK_STR(info.precision, "fp32");
    float x[64];
    CHECK_OK(eng_encode_image_file(e32, image, x));
    CHECK(memcmp(v, x, 32 * sizeof(float)) != 0);
    double dot = 0, vv = 0, xx = 0;
    for (int i = 0; i < 32; i++) { dot += (double)v[i] * x[i]; vv += (double)v[i] * v[i]; xx += (double)x[i] * x[i]; }
    dot /= sqrt(vv * xx);
    printf("  same image, bf16 vs fp32 database: cosine %.7f\n", dot);
    CHECK(dot > 0.9999 && dot < 1.0);
    CHECK_OK(eng_close(e32));
    pe_model_free(m16);
    pe_model_free(m32);
    /* fp32 asked of the bf16 database: refused, naming both */
    db = NULL;
    CHECK_ERR(open_db(dir, "fp32", 0, &db), PERR_MODEL);
    CHECK(db == NULL);
    CHECK(strstr(perr_msg(), "holds bf16 vectors") != NULL);
    CHECK(strstr(perr_msg(), dir) != NULL);
    CHECK_ERR(open_db(dir, "int3", 0, &db), PERR_INVALID);
    free(dir);
    free(dir32);
}

/* A database made before the field: no "precision" in engine.json -> fp32;
 * bf16 asked of it is refused. */
static void test_old_database(void) {
    char *dir = t_tmpdir("eng_prec_old");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, NULL, 1, &db));
    CHECK_OK(eng_close(db));
    char *js = engine_json(dir);
    REQUIRE(js);
    CHECK(strstr(js, "\"fp32\"") != NULL);
    /* rewrite it the way an older percept did */
    char *p = t_path("%s/engine.json", dir);
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fprintf(f, "{\"model_path\": \"%s\", \"thresholds\": {}}\n", model);
    fclose(f);
    free(js);
    db = NULL;
    REQUIRE_OK(open_db(dir, NULL, 0, &db));
    eng_info info;
    CHECK_OK(eng_get_info(db, &info));
    CHECK_STR(info.precision, "fp32");
    CHECK_OK(eng_close(db));
    db = NULL;
    CHECK_ERR(open_db(dir, "bf16", 0, &db), PERR_MODEL);
    CHECK(strstr(perr_msg(), "holds fp32 vectors") != NULL);
    free(p);
    free(dir);
}

int main(void) {
    model = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    image = t_path("%s/tiny-a/images/astronaut.png", t_fixtures());
    T_RUN(test_bf16_recorded);
    T_RUN(test_old_database);
    free(model);
    free(image);
    return t_done();
}
