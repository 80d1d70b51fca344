/* test_video_engine: videos in the database, with the tiny-a model.
 *
 * Videos are made here with the ffmpeg CLI from real photos (the wallpapers
 * tests/engine gathers): cuts every 2 s and one pan, as MP4/H.264,
 * WebM/VP9, MKV/H.264, MOV/H.264 and animated GIF, so the segment that
 * shows each photo is known. Checks: a photo finds its video first among
 * the videos and its segment within one window; text finds videos and says
 * so, with the scores of the stored vectors; the video vector matches the
 * tiny-a golden; bad video files in a bulk ingest are reported and skipped
 * with nothing stored; a deleted video's segments never come back (reopen,
 * rebuild); moderation of a video names the matching segment; `percept
 * embed --video` prints the engine's video vector. */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "common/perr.h"
#include "encoder/pe.h"
#include "encoder/pe_video.h"
#include "photos.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static photo_set P;
static char *model_path, *vocab_path, *work;

/* A video: which photo each 2 s window shows (-1: none in particular). */
typedef struct vid {
    char *path;
    int photo[8];
    int n_seg;          /* windows with a known photo */
    int stored_seg;     /* segments stored (the last window may be a sliver) */
    uint64_t id;
} vid;

enum { NV = 5 };
static vid V[NV];

/* Cuts: photos[i] shown during [2i, 2i+2), 160x120 (or the pan). */
static int make_cuts(vid *v, const char *name, const int *photos, int n, const char *codec_args) {
    char inputs[4096] = "", filter[4096] = "", cat[512] = "";
    size_t il = 0, fl = 0, cl = 0;
    for (int i = 0; i < n; i++) {
        il += (size_t)snprintf(inputs + il, sizeof inputs - il, " -loop 1 -t 2 -r 10 -i '%s'", P.paths[photos[i]]);
        fl += (size_t)snprintf(filter + fl, sizeof filter - fl,
                               "[%d]scale=160:120,setsar=1,fps=10[v%d];", i, i);
        cl += (size_t)snprintf(cat + cl, sizeof cat - cl, "[v%d]", i);
        v->photo[i] = photos[i];
    }
    v->n_seg = n;
    v->path = t_path("%s/%s", work, name);
    return t_sh("ffmpeg -nostdin -loglevel error -y%s -filter_complex '%s%sconcat=n=%d:v=1,format=yuv420p' %s '%s'",
              inputs, filter, cat, n, codec_args, v->path);
}

static int make_videos(void) {
    int a[] = {0, 1, 2, 3}, b[] = {4, 5, 6}, d[] = {9, 10}, e[] = {11, 12};
    if (make_cuts(&V[0], "a.mp4", a, 4, "-c:v libx264 -g 20 -bf 2")) return -1;
    if (make_cuts(&V[1], "b.webm", b, 3, "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 300k -g 20")) return -1;
    if (make_cuts(&V[3], "d.gif", d, 2, "-r 5")) return -1;
    if (make_cuts(&V[4], "e.mov", e, 2, "-c:v libx264 -g 30")) return -1;
    /* A pan across photo 7 for 4 s (a 160x120 window moving over a 320x120
     * scaled copy), then a cut to photo 8 for 2 s. */
    V[2].path = t_path("%s/c.mkv", work);
    V[2].photo[0] = 7; V[2].photo[1] = 7; V[2].photo[2] = 8;
    V[2].n_seg = 3;
    return t_sh("ffmpeg -nostdin -loglevel error -y -loop 1 -t 4 -r 10 -i '%s' -loop 1 -t 2 -r 10 -i '%s' "
              "-filter_complex '[0]scale=240:120,setsar=1,crop=160:120:x=t*20:y=0,fps=10[p];"
              "[1]scale=160:120,setsar=1,fps=10[q];[p][q]concat=n=2:v=1,format=yuv420p' "
              "-c:v libx264 -g 15 '%s'", P.paths[7], P.paths[8], V[2].path);
}

static int open_db(const char *dir, eng_db **db) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model_path;
    o.vocab_path = vocab_path;
    o.create = 1;
    return eng_open(dir, &o, db);
}

typedef struct collect { char *paths[64]; uint64_t ids[64]; int n; char *failed[64]; int codes[64]; int nf; } collect;

static void on_result(void *u, const eng_file_result *r) {
    collect *c = u;
    if (r->outcome == ENG_FAILED) {
        if (c->nf < 64) { c->codes[c->nf] = r->code; c->failed[c->nf++] = strdup(r->path); }
        if (!r->reason || !strstr(r->reason, r->path))
            t_fail(__FILE__, __LINE__, "failure of %s does not name it: %s", r->path, r->reason ? r->reason : "(null)");
        return;
    }
    if (c->n < 64) { c->ids[c->n] = r->id; c->paths[c->n++] = strdup(r->path); }
}

static void collect_free(collect *c) {
    for (int i = 0; i < c->n; i++) free(c->paths[i]);
    for (int i = 0; i < c->nf; i++) free(c->failed[i]);
    memset(c, 0, sizeof *c);
}

static uint64_t id_of(const collect *c, const char *path) {
    for (int i = 0; i < c->n; i++) if (!strcmp(c->paths[i], path)) return c->ids[i];
    return 0;
}

static int ingest_videos(eng_db *db, const char *coll, collect *c) {
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.collection = coll;
    o.on_result = on_result;
    o.user = c;
    o.jobs = 2;
    o.batch = 4;
    const char *paths[NV];
    for (int i = 0; i < NV; i++) paths[i] = V[i].path;
    eng_progress p;
    int rc = eng_ingest_paths(db, paths, NV, &o, &p);
    if (rc) return rc;
    if ((int)p.added != NV || p.videos != NV || p.failed)
        t_fail(__FILE__, __LINE__, "ingest: added %llu videos %llu failed %llu", (unsigned long long)p.added,
               (unsigned long long)p.videos, (unsigned long long)p.failed);
    for (int i = 0; i < NV; i++) {
        V[i].id = id_of(c, V[i].path);
        eng_item *it = NULL;
        if (eng_get(db, V[i].id, 0, &it) == PERR_OK) {
            V[i].stored_seg = (int)it->n_segments;
            printf("  %s: %.3f s, %.2f fps, %s, %u segments\n", V[i].path, it->duration_s, it->fps, it->codec,
                   it->n_segments);
            /* segments of 2 s cover the duration, the last one maybe shorter */
            CHECK_EQ_INT(it->n_segments, (int)ceil(it->duration_s / 2.0 - 1e-9));
        }
        eng_item_free(it);
    }
    return PERR_OK;
}

/* ---------------------------------------------------------------- golden */

static void test_golden_video_vector(void) {
    size_t nf = 0, nr = 0;
    float *frames = t_golden_f32("tiny-a", "video_frames", &nf);
    float *ref = t_golden_f32("tiny-a", "video_emb_renorm", &nr);
    REQUIRE(frames && ref);
    pe_load_opts lo;
    pe_load_opts_default(&lo);
    pe_model *m = NULL;
    REQUIRE_OK(pe_model_load(model_path, &lo, &m));
    const pe_config *cfg = pe_model_config(m);
    int s = cfg->image_size, d = cfg->output_dim;
    CHECK_EQ_INT(nf, (size_t)8 * 3 * s * s);
    CHECK_EQ_INT(nr, (size_t)d);
    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = 8;
    pe_ctx *c = NULL;
    CHECK_OK(pe_ctx_new(m, &co, &c));
    float *emb = malloc(sizeof(float) * 8 * (size_t)d), *vec = malloc(sizeof(float) * (size_t)d);
    if (c && nf == (size_t)8 * 3 * s * s) {
        CHECK_OK(pe_encode_pixels(c, frames, 8, emb));
        pe_video_vector(emb, 8, d, vec);
        double diff = t_rel_maxdiff(vec, ref, (size_t)d);
        printf("  video vector vs video_emb_renorm: rel max diff %.3g\n", diff);
        CHECK(diff <= 1e-4);
    }
    free(emb); free(vec); free(frames); free(ref);
    pe_ctx_free(c);
    pe_model_free(m);
}

/* ------------------------------------------------- photo -> video/segment */

static void test_photo_finds_video_and_segment(void) {
    char *dir = t_tmpdir("vid-seg");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, &db));
    collect c = {0};
    CHECK_OK(ingest_videos(db, "videos", &c));
    const char *colls[] = {"videos"};
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "videos", &ci));
    int want_segs = 0;
    for (int v = 0; v < NV; v++) want_segs += V[v].stored_seg;
    CHECK_EQ_INT(ci.n_segments, want_segs);
    CHECK_EQ_INT(ci.n_seg_index, want_segs);
    /* metadata */
    for (int v = 0; v < NV; v++) {
        eng_item *it = NULL;
        CHECK_OK(eng_get(db, V[v].id, 0, &it));
        if (!it) continue;
        CHECK_STR(it->media, "video");
        CHECK(fabs(it->duration_s - 2.0 * V[v].n_seg) < 0.25);
        CHECK(V[v].stored_seg >= V[v].n_seg && V[v].stored_seg <= V[v].n_seg + 1);
        CHECK(it->fps > 4 && it->fps < 11);
        CHECK_EQ_INT(it->width, 160);
        CHECK_EQ_INT(it->height, 120);
        CHECK(it->codec[0] != 0);
        eng_item_free(it);
    }
    eng_item *it = NULL;
    CHECK_OK(eng_get(db, V[1].id, 0, &it));
    if (it) CHECK_STR(it->codec, "vp9");
    eng_item_free(it);

    int photos_checked = 0, seg_exact = 0;
    for (int v = 0; v < NV; v++) {
        for (int s = 0; s < V[v].n_seg; s++) {
            if (s > 0 && V[v].photo[s] == V[v].photo[s - 1]) continue; /* the pan: first window */
            const char *photo = P.paths[V[v].photo[s]];
            eng_query q;
            eng_query_default(&q);
            q.collections = colls;
            q.n_collections = 1;
            q.k = 3;
            eng_results *r = NULL;
            q.segments = 1;
            CHECK_OK(eng_search_image_file(db, photo, &q, &r));
            if (r && r->n) {
                eng_hit *h = &r->hits[0];
                double want = 2.0 * s;
                if (h->id != V[v].id || fabs(h->start_s - want) > 2.0 + 1e-6)
                    t_fail(__FILE__, __LINE__, "photo %s: first segment %s [%.2f, %.2f), expected %s [%.2f, %.2f)",
                           photo, h->uri, h->start_s, h->end_s, V[v].path, want, want + 2);
                if (h->id == V[v].id && fabs(h->start_s - want) < 1e-6) seg_exact++;
                CHECK(h->end_s > h->start_s);
                CHECK(h->end_s - h->start_s <= 2.0 + 1e-9);
                CHECK_STR(h->media, "video");
                CHECK(h->duration_s > 0);
            } else CHECK(r && r->n);
            eng_results_free(r);
            photos_checked++;
        }
    }
    printf("  %d photos: video first, segment within one window (%d in exactly their window)\n",
           photos_checked, seg_exact);
    CHECK(photos_checked == 13);

    /* The video vector is the normalized mean of its sampled frames: with
     * cuts, the photos shown at the 8 uniform times (through H.264/VP9/GIF
     * and a 160x120 scale, so not exactly). It must be closer to that mean
     * of photo vectors than any other video's vector is. */
    int dim = eng_dim(db);
    float *pv = malloc(sizeof(float) * (size_t)dim * 16), *mean = malloc(sizeof(float) * (size_t)dim);
    for (int v = 0; v < NV; v++) {
        if (v == 2) continue; /* the pan: frames are crops */
        eng_item *it = NULL;
        CHECK_OK(eng_get(db, V[v].id, 0, &it));
        if (!it) continue;
        for (int i = 0; i < 8; i++) {
            double t = (i + 0.5) * it->duration_s / 8;
            int w = (int)(t / 2.0);
            if (w >= V[v].n_seg) w = V[v].n_seg - 1;
            CHECK_OK(eng_encode_image_file(db, P.paths[V[v].photo[w]], pv + (size_t)i * dim));
        }
        eng_item_free(it);
        pe_video_vector(pv, 8, dim, mean);
        double best_other = -2, own = -2;
        for (int u = 0; u < NV; u++) {
            eng_item *iu = NULL;
            CHECK_OK(eng_get(db, V[u].id, 1, &iu));
            if (!iu) continue;
            double cs = t_cosine(mean, iu->vector, (size_t)dim);
            if (u == v) own = cs;
            else if (cs > best_other) best_other = cs;
            eng_item_free(iu);
        }
        printf("  %s: cos(video vector, mean of its photos) %.5f; best other video %.5f\n", V[v].path, own, best_other);
        CHECK(own > best_other);
        CHECK(own > 0.99);
    }
    free(pv);
    free(mean);

    /* video -> video: each video finds itself first with cosine 1 */
    for (int v = 0; v < NV; v++) {
        eng_query q;
        eng_query_default(&q);
        q.collections = colls;
        q.n_collections = 1;
        q.k = 2;
        eng_results *r = NULL;
        CHECK_OK(eng_search_image_file(db, V[v].path, &q, &r));
        if (r && r->n) {
            CHECK(r->hits[0].id == V[v].id);
            CHECK(fabsf(r->hits[0].score - 1.0f) < 1e-4f);
        }
        eng_results_free(r);
    }

    /* text -> video: results say "video"; scores are the stored vectors' cosines */
    float *t = malloc(sizeof(float) * (size_t)eng_dim(db));
    CHECK_OK(eng_encode_text(db, "a photo of a mountain lake", t));
    eng_query q;
    eng_query_default(&q);
    q.collections = colls;
    q.n_collections = 1;
    q.k = NV;
    eng_results *r = NULL;
    CHECK_OK(eng_search_text(db, "a photo of a mountain lake", &q, &r));
    CHECK(r && r->n == NV);
    for (int i = 0; r && i < r->n; i++) {
        CHECK_STR(r->hits[i].media, "video");
        eng_item *iv = NULL;
        CHECK_OK(eng_get(db, r->hits[i].id, 1, &iv));
        if (iv) {
            double cos = 0;
            for (int k = 0; k < iv->dim; k++) cos += (double)iv->vector[k] * t[k];
            CHECK(fabs(cos - r->hits[i].score) < 1e-4);
        }
        eng_item_free(iv);
        if (i) CHECK(r->hits[i - 1].score >= r->hits[i].score);
    }
    eng_results_free(r);
    q.segments = 1;
    q.k = 50;
    CHECK_OK(eng_search_text(db, "a photo of a mountain lake", &q, &r));
    CHECK(r && r->n == want_segs);
    for (int i = 0; r && i < r->n; i++) CHECK(r->hits[i].start_s >= 0);
    eng_results_free(r);
    free(t);
    CHECK_OK(eng_close(db));
    collect_free(&c);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------ bad files, delete, rebuild */

static char *cut_file(const char *src, const char *name, double frac) {
    size_t len = 0;
    void *d = t_read_file(src, &len);
    char *p = t_path("%s/%s", work, name);
    if (d) t_write_file(p, d, (size_t)(len * frac));
    free(d);
    return p;
}

static void test_bad_files_delete_rebuild(void) {
    char *dir = t_tmpdir("vid-bad");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, &db));
    /* bad inputs among good ones */
    char *trunc = cut_file(V[0].path, "trunc.mp4", 0.5);      /* moov at the end: gone */
    char *fast = t_path("%s/fast.mp4", work);
    t_sh("ffmpeg -nostdin -loglevel error -y -i '%s' -c copy -movflags +faststart '%s'", V[0].path, fast);
    char *fastcut = cut_file(fast, "fastcut.mp4", 0.6);        /* index past the data */
    char *webmcut = cut_file(V[1].path, "webmcut.webm", 0.02); /* header only */
    char *empty = t_path("%s/empty.mp4", work);
    t_write_file(empty, "", 0);
    char *garbage = t_path("%s/garbage.mkv", work);
    {
        unsigned char g[4096];
        memcpy(g, "\x1a\x45\xdf\xa3", 4);
        for (size_t i = 4; i < sizeof g; i++) g[i] = (unsigned char)(i * 2654435761u >> 13);
        t_write_file(garbage, g, sizeof g);
    }
    char *hours = t_path("%s/hours.mp4", work);
    t_sh("ffmpeg -nostdin -loglevel error -y -loop 1 -t 1 -i '%s' -vf \"scale=160:120,setpts='if(eq(N\\,5),36000/TB,PTS)',format=yuv420p\" "
       "-r 5 -fps_mode passthrough -c:v libx264 '%s'", P.paths[0], hours);
    const char *paths[] = {V[0].path, trunc, fastcut, V[1].path, webmcut, empty, garbage, hours, V[3].path};
    int n = 9;
    collect c = {0};
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.on_result = on_result;
    o.user = &c;
    o.jobs = 2;
    eng_progress p;
    CHECK_OK(eng_ingest_paths(db, paths, n, &o, &p));
    CHECK_EQ_INT(p.added, 3);
    CHECK_EQ_INT(p.failed, 6);
    CHECK_EQ_INT(c.nf, 6);
    for (int i = 0; i < c.nf; i++) printf("  skipped %s (%s)\n", c.failed[i], perr_name(c.codes[i]));
    eng_collection_info ci;
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_items, 3);
    CHECK_EQ_INT(ci.n_segments, V[0].stored_seg + V[1].stored_seg + V[3].stored_seg);
    CHECK_EQ_INT(ci.n_seg_index, ci.n_segments);
    uint64_t a = id_of(&c, V[0].path), b = id_of(&c, V[1].path);
    CHECK(a && b);

    /* delete video a: its segments go, and stay gone after reopen and rebuild */
    int removed = 0;
    CHECK_OK(eng_remove(db, &a, 1, &removed));
    CHECK_EQ_INT(removed, 1);
    int want = V[1].stored_seg + V[3].stored_seg;
    for (int round = 0; round < 3; round++) {
        CHECK_OK(eng_collection_get(db, "default", &ci));
        CHECK_EQ_INT(ci.n_segments, want);
        CHECK_EQ_INT(ci.n_seg_index, want);
        eng_query q;
        eng_query_default(&q);
        q.segments = 1;
        q.k = 100;
        eng_results *r = NULL;
        CHECK_OK(eng_search_image_file(db, P.paths[1], &q, &r));
        CHECK(r && r->n == want);
        for (int i = 0; r && i < r->n; i++) CHECK(r->hits[i].id != a);
        eng_results_free(r);
        /* filters apply to the video item */
        const char *one_label[] = {"keep"};
        CHECK_OK(eng_label_add(db, "keep", &b, 1));
        q.labels = one_label;
        q.n_labels = 1;
        CHECK_OK(eng_search_image_file(db, P.paths[4], &q, &r));
        CHECK(r && r->n == V[1].stored_seg);
        for (int i = 0; r && i < r->n; i++) CHECK(r->hits[i].id == b);
        if (r && r->n) CHECK(fabs(r->hits[0].start_s - 0.0) < 1e-9);
        eng_results_free(r);
        CHECK_OK(eng_close(db));
        db = NULL;
        if (round == 1) {
            /* the segment index file lost: rebuilt from storage */
            char *idxdir = t_path("%s/index", dir);
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "rm -f '%s'/*.seg.faiss", idxdir);
            CHECK(system(cmd) == 0);
            free(idxdir);
        }
        REQUIRE_OK(open_db(dir, &db));
    }
    /* a new item after reopen gets new ids: a's segments do not come back */
    collect c2 = {0};
    o.user = &c2;
    const char *again[] = {V[4].path};
    CHECK_OK(eng_ingest_paths(db, again, 1, &o, &p));
    CHECK_EQ_INT(p.added, 1);
    CHECK_OK(eng_collection_get(db, "default", &ci));
    CHECK_EQ_INT(ci.n_seg_index, want + V[4].stored_seg);
    CHECK_OK(eng_close(db));
    collect_free(&c);
    collect_free(&c2);
    free(trunc); free(fast); free(fastcut); free(webmcut); free(empty); free(garbage); free(hours);
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------- moderation */

static void test_moderate_video(void) {
    char *dir = t_tmpdir("vid-mod");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, &db));
    /* the banned set: photo 2 (shown in a.mp4 during [4, 6)) and photo 9 */
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.collection = "banned";
    const char *banned[] = {P.paths[2], P.paths[9]};
    eng_progress p;
    CHECK_OK(eng_ingest_paths(db, banned, 2, &o, &p));
    CHECK_EQ_INT(p.added, 2);
    const char *sets[] = {"banned"};
    eng_mod_result *m = NULL;
    CHECK_OK(eng_moderate_file(db, V[0].path, sets, 1, 0.99f, 3, &m));
    if (m) {
        CHECK(m->matched);
        CHECK(m->nearest && m->nearest->n >= 1);
        if (m->nearest && m->nearest->n) {
            eng_hit *h = &m->nearest->hits[0];
            CHECK_STR(h->uri, P.paths[2]);
            CHECK(h->score >= 0.99f);
            if (fabs(h->start_s - 4.0) > 1e-6 || fabs(h->end_s - 6.0) > 1e-6)
                t_fail(__FILE__, __LINE__, "matching segment [%.2f, %.2f), expected [4, 6)", h->start_s, h->end_s);
        }
    }
    eng_mod_result_free(m);
    /* a video without banned content does not match at that threshold */
    m = NULL;
    CHECK_OK(eng_moderate_file(db, V[4].path, sets, 1, 0.99f, 3, &m));
    if (m) CHECK(!m->matched);
    eng_mod_result_free(m);
    CHECK_OK(eng_close(db));
    t_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------- embed CLI */

static void test_embed_cli(void) {
    const char *exe = getenv("PERCEPT_EXE");
    REQUIRE(exe);
    char *out = t_path("%s/embed.json", work);
    REQUIRE(t_sh("'%s' embed --model '%s' --video '%s' --frames 8 > '%s'", exe, model_path, V[0].path, out) == 0);
    size_t len = 0;
    char *txt = t_read_file(out, &len);
    REQUIRE(txt);
    txt = realloc(txt, len + 1);
    txt[len] = 0;
    cJSON *j = cJSON_Parse(txt);
    REQUIRE(j);
    eng_db *db = NULL;
    REQUIRE_OK(eng_open_model(model_path, vocab_path, &db));
    int d = eng_dim(db);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "dim")->valueint, d);
    cJSON *arr = cJSON_GetObjectItem(j, "vector");
    CHECK(cJSON_GetArraySize(arr) == d);
    float *cli = malloc(sizeof(float) * (size_t)d), *eng = malloc(sizeof(float) * (size_t)d);
    for (int i = 0; i < d; i++) cli[i] = (float)cJSON_GetArrayItem(arr, i)->valuedouble;
    eng_video_meta meta;
    int isv = 0;
    CHECK_OK(eng_encode_media_file(db, V[0].path, NULL, eng, &meta, &isv));
    CHECK(isv);
    CHECK_EQ_INT(meta.n_frames, 8);
    CHECK(t_rel_maxdiff(cli, eng, (size_t)d) < 1e-6);
    /* the photos of the video, averaged as pe-core.md says, give the same direction */
    CHECK(t_cosine(cli, eng, (size_t)d) > 0.99999);
    /* --frames changes the sampling; an image is refused by --video */
    CHECK(t_sh("'%s' embed --model '%s' --video '%s' --frames 2 > '%s'", exe, model_path, V[0].path, out) == 0);
    CHECK(t_sh("'%s' embed --model '%s' --video '%s' > /dev/null 2>&1", exe, model_path, P.paths[0]) != 0);
    cJSON_Delete(j);
    free(txt); free(cli); free(eng); free(out);
    eng_close(db);
}

int main(void) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    int n = photos_gather(&P, 13, 320);
    printf("photos: %d real photos gathered\n", n);
    if (n < 13) {
        fprintf(stderr, "need 13 real photos (install gnome-backgrounds, mate-backgrounds, ukui-wallpapers: scripts/deps.sh)\n");
        return 1;
    }
    work = t_tmpdir("vid-work");
    if (make_videos() != 0) { fprintf(stderr, "could not make the test videos with ffmpeg\n"); return 1; }
    T_RUN(test_golden_video_vector);
    T_RUN(test_photo_finds_video_and_segment);
    T_RUN(test_bad_files_delete_rebuild);
    T_RUN(test_moderate_video);
    T_RUN(test_embed_cli);
    t_rmtree(work);
    free(work);
    photos_free(&P);
    for (int i = 0; i < NV; i++) free(V[i].path);
    free(model_path);
    free(vocab_path);
    return t_done();
}
