/* pe_video_vector and the sampling-time rules: pure math, against the
 * official encode_video goldens of tiny-a. */
#include "common/perr.h"
#include "encoder/pe_video.h"
#include "tests/common/testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_vector_matches_golden(void) {
    size_t nf = 0, nr = 0, nn = 0;
    float *frames = t_golden_f32("tiny-a", "video_frame_emb", &nf);
    float *renorm = t_golden_f32("tiny-a", "video_emb_renorm", &nr);
    float *norm = t_golden_f32("tiny-a", "video_emb_norm", &nn);
    REQUIRE(frames && renorm && norm);
    REQUIRE(nf == 8 * 32 && nr == 32 && nn == 32);
    float out[32];
    pe_video_vector(frames, 8, 32, out);
    CHECK(t_rel_maxdiff(out, renorm, 32) <= 1e-5);
    CHECK(t_cosine(out, renorm, 32) >= 0.999999);
    double ss = 0;
    for (int i = 0; i < 32; i++) ss += (double)out[i] * out[i];
    CHECK(fabs(sqrt(ss) - 1) < 1e-6);
    /* The official (not re-normalized) output has the same direction. */
    CHECK(t_cosine(out, norm, 32) >= 0.999999);
    free(frames);
    free(renorm);
    free(norm);
}

static void test_vector_properties(void) {
    /* Frame scale does not matter: each frame is normalized first. */
    float e[3 * 4] = {1, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0.001f, 0};
    float out[4];
    pe_video_vector(e, 3, 4, out);
    float s = 1.0f / sqrtf(3);
    CHECK(fabsf(out[0] - s) < 1e-6 && fabsf(out[1] - s) < 1e-6 && fabsf(out[2] - s) < 1e-6);
    CHECK(out[3] == 0);
    /* A zero frame contributes nothing and divides nothing by zero. */
    float z[2 * 2] = {0, 0, 3, 4};
    pe_video_vector(z, 2, 2, out);
    CHECK(fabsf(out[0] - 0.6f) < 1e-6 && fabsf(out[1] - 0.8f) < 1e-6);
    /* Opposite frames cancel: the result is zero, not NaN. */
    float o[2 * 2] = {1, 0, -1, 0};
    pe_video_vector(o, 2, 2, out);
    CHECK(out[0] == 0 && out[1] == 0);
    pe_video_vector(o, 0, 2, out);
    CHECK(out[0] == 0 && out[1] == 0);
}

static void test_uniform_times(void) {
    pe_video_info info;
    memset(&info, 0, sizeof info);
    info.duration = 10;
    double t[8];
    CHECK_OK(pe_video_uniform_times(&info, 8, t));
    for (int i = 0; i < 8; i++) CHECK(fabs(t[i] - (i + 0.5) * 1.25) < 1e-12);
    double one;
    CHECK_OK(pe_video_uniform_times(&info, 1, &one));
    CHECK(one == 5);
    info.duration = 0;
    CHECK_OK(pe_video_uniform_times(&info, 8, t));
    for (int i = 0; i < 8; i++) CHECK(t[i] == 0);
    CHECK_ERR(pe_video_uniform_times(&info, -1, t), PERR_INVALID);
}

static void test_segment_times(void) {
    pe_video_info info;
    memset(&info, 0, sizeof info);
    info.duration = 25;
    int ns = 0;
    CHECK_OK(pe_video_segment_times(&info, 10, 2, NULL, 0, &ns));
    CHECK_EQ_INT(ns, 3);
    double t[6];
    CHECK_OK(pe_video_segment_times(&info, 10, 2, t, 6, &ns));
    const double want[6] = {2.5, 7.5, 12.5, 17.5, 21.25, 23.75};
    for (int i = 0; i < 6; i++) CHECK(fabs(t[i] - want[i]) < 1e-12);
    CHECK_ERR(pe_video_segment_times(&info, 10, 2, t, 5, &ns), PERR_TOO_LARGE);
    info.duration = 20; /* exact multiple: no empty trailing segment */
    CHECK_OK(pe_video_segment_times(&info, 10, 1, NULL, 0, &ns));
    CHECK_EQ_INT(ns, 2);
    CHECK_ERR(pe_video_segment_times(&info, 0, 1, NULL, 0, &ns), PERR_INVALID);
}

int main(void) {
    T_RUN(test_vector_matches_golden);
    T_RUN(test_vector_properties);
    T_RUN(test_uniform_times);
    T_RUN(test_segment_times);
    return t_done();
}
