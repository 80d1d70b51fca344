/* The tiny-a fixture checkpoints load, carry exactly the keys and shapes of
 * state_dict_keys.json, and the .pt and .safetensors hold the same bits. */
#include "common/perr.h"
#include "encoder/pe_weights.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Checks w against state_dict_keys.json (names, shapes, dtype float32). */
static void check_keys(const pe_weights *w) {
    char *p = t_path("%s/tiny-a/state_dict_keys.json", t_fixtures());
    char *txt = t_read_file(p, NULL);
    free(p);
    REQUIRE(txt);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    REQUIRE(cJSON_IsArray(j));
    CHECK_EQ_INT(pe_weights_count(w), cJSON_GetArraySize(j));
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        const pe_tensor *t = pe_weights_find(w, name);
        if (!t) { t_fail(__FILE__, __LINE__, "key %s missing", name); continue; }
        CHECK_STR(t->name, name);
        CHECK_EQ_INT(t->dtype, PE_DT_F32);
        CHECK_EQ_INT(t->ndim, cJSON_GetArraySize(shape));
        int64_t numel = 1;
        for (int i = 0; i < t->ndim && i < cJSON_GetArraySize(shape); i++) {
            CHECK_EQ_INT(t->shape[i], cJSON_GetArrayItem(shape, i)->valueint);
            numel *= t->shape[i];
        }
        CHECK_EQ_INT(t->numel, numel);
        CHECK_EQ_INT(t->nbytes, numel * 4);
        CHECK((uintptr_t)t->data % 4 == 0);
    }
    cJSON_Delete(j);
}

static void test_safetensors_fixture(void) {
    char *p = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    pe_weights *w = NULL;
    CHECK_OK(pe_weights_open(p, &w));
    free(p);
    REQUIRE(w);
    CHECK_STR(pe_weights_format(w), "safetensors");
    check_keys(w);
    CHECK_STR(pe_weights_metadata(w, "name"), "tiny-a");
    CHECK(pe_weights_metadata(w, "vision_config") != NULL);
    CHECK(pe_weights_metadata(w, "nope") == NULL);
    /* logit_scale is a scalar near log(1/0.07) = 2.659 (init rule +-0.1*randn). */
    const pe_tensor *ls = pe_weights_find(w, "logit_scale");
    REQUIRE(ls);
    CHECK_EQ_INT(ls->ndim, 0);
    CHECK_EQ_INT(ls->numel, 1);
    float v;
    pe_tensor_to_f32(ls, &v);
    CHECK(v > 2.2f && v < 3.1f);
    pe_weights_close(w);
}

static void test_pt_fixture_same_bits(void) {
    char *ps = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    char *pp = t_path("%s/tiny-a/tiny-a.pt", t_fixtures());
    pe_weights *ws = NULL, *wp = NULL;
    CHECK_OK(pe_weights_open(ps, &ws));
    CHECK_OK(pe_weights_open(pp, &wp));
    free(ps);
    free(pp);
    if (ws && wp) {
        CHECK_STR(pe_weights_format(wp), "pt");
        check_keys(wp);
        CHECK_EQ_INT(pe_weights_count(wp), pe_weights_count(ws));
        int same = 0;
        for (int i = 0; i < pe_weights_count(wp); i++) {
            const pe_tensor *a = pe_weights_at(wp, i);
            const pe_tensor *b = pe_weights_find(ws, a->name);
            if (!b) { t_fail(__FILE__, __LINE__, "%s not in safetensors", a->name); continue; }
            if (a->nbytes != b->nbytes || memcmp(a->data, b->data, a->nbytes))
                t_fail(__FILE__, __LINE__, "tensor %s differs between .pt and .safetensors", a->name);
            else same++;
        }
        CHECK_EQ_INT(same, 73);
    }
    pe_weights_close(ws);
    pe_weights_close(wp);
}

static void test_missing_file(void) {
    pe_weights *w = (pe_weights *)1;
    CHECK_ERR(pe_weights_open("/nonexistent/x.pt", &w), PERR_NOT_FOUND);
    CHECK(w == NULL);
    CHECK(strstr(perr_msg(), "/nonexistent/x.pt") != NULL);
    pe_weights_close(NULL);
}

int main(void) {
    T_RUN(test_safetensors_fixture);
    T_RUN(test_pt_fixture_same_bits);
    T_RUN(test_missing_file);
    return t_done();
}
