/* test_thumbs: thumbnails kept at ingest (tiny-a model, real photos).
 *
 * Checks, each on real pictures: every ingested photo (files and uploads)
 * has a stored WebP thumbnail that decodes, is at most 256 px on its long
 * side with the photo's aspect (never enlarged) and small, and shows the
 * photo (its 16x16 grey signature is far closer to its own photo's than to
 * the others'); a video's thumbnail and each segment's show the photo of
 * that moment; thumbnails off per collection (none stored, made from the
 * file on demand; PERR_NOT_FOUND once the file is gone); deleting an item
 * or dropping a collection deletes its thumbnails; a layout-1 database
 * (no thumbs table) opens read-only as is and is upgraded when opened for
 * writing, its old items getting on-demand thumbnails; hostile and odd
 * inputs (truncated, garbage, 1x1, 4000x3 strip, alpha) never break
 * ingest; GET over the binary protocol returns the same bytes;
 * `percept get --thumbnail` writes them. */
#define _GNU_SOURCE
#include "engine/eng.h"
#include "storage/st.h"
#include "net/client.h"
#include "common/perr.h"
#include "photos.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <lmdb.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

static photo_set P;
static char *model_path, *vocab_path, *work;

enum { NP = 6, SIG = 16 };

static int open_db(const char *dir, int read_only, eng_db **db) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = model_path;
    o.vocab_path = vocab_path;
    o.create = !read_only;
    o.read_only = read_only;
    return eng_open(dir, &o, db);
}

/* A 16x16 grey signature of a picture (file or bytes), values 0..255. */
static int signature(const char *path, const void *buf, size_t len, double *sig) {
    VipsImage *im = NULL, *g = NULL, *s = NULL;
    int rc = -1;
    if (path) im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    else im = vips_image_new_from_buffer(buf, len, "", NULL);
    if (!im) goto out;
    if (vips_colourspace(im, &g, VIPS_INTERPRETATION_B_W, NULL)) goto out;
    if (vips_resize(g, &s, (double)SIG / g->Xsize, "vscale", (double)SIG / g->Ysize, NULL)) goto out;
    size_t n = 0;
    uint8_t *px = vips_image_write_to_memory(s, &n);
    if (!px || n < SIG * SIG * (size_t)s->Bands) { g_free(px); goto out; }
    for (int i = 0; i < SIG * SIG; i++) sig[i] = px[i * s->Bands];
    g_free(px);
    rc = 0;
out:
    if (!rc) vips_error_clear();
    if (im) g_object_unref(im);
    if (g) g_object_unref(g);
    if (s) g_object_unref(s);
    return rc;
}

static double sig_diff(const double *a, const double *b) {
    double d = 0;
    for (int i = 0; i < SIG * SIG; i++) d += fabs(a[i] - b[i]);
    return d / (SIG * SIG);
}

/* The thumbnail decodes; its size and format. */
static int decode_thumb(const eng_thumb *t, int *w, int *h) {
    VipsImage *im = vips_image_new_from_buffer(t->data, t->len, "", NULL);
    if (!im) { vips_error_clear(); return -1; }
    /* decode every pixel, not only the header */
    double avg = -1;
    int rc = vips_avg(im, &avg, NULL);
    *w = im->Xsize;
    *h = im->Ysize;
    g_object_unref(im);
    return rc || avg < 0 ? -1 : 0;
}

static int is_webp(const eng_thumb *t) {
    return t->len > 12 && !memcmp(t->data, "RIFF", 4) && !memcmp((char *)t->data + 8, "WEBP", 4) &&
           !strcmp(t->mime, "image/webp");
}

/* Index of the photo among P.paths[0..n) whose signature the thumbnail
 * matches best, and the ratio best / second best distance. */
static int best_photo(const eng_thumb *t, const double (*sigs)[SIG * SIG], int n, double *ratio) {
    double s[SIG * SIG];
    if (signature(NULL, t->data, t->len, s)) return -1;
    int best = -1;
    double d1 = 1e9, d2 = 1e9;
    for (int i = 0; i < n; i++) {
        double d = sig_diff(s, sigs[i]);
        if (d < d1) { d2 = d1; d1 = d; best = i; }
        else if (d < d2) d2 = d;
    }
    *ratio = d1 / (d2 > 0 ? d2 : 1);
    return best;
}

static double S[NP][SIG * SIG];

typedef struct collect { uint64_t ids[64]; char *paths[64]; int n, nf; } collect;

static void on_result(void *u, const eng_file_result *r) {
    collect *c = u;
    if (r->outcome == ENG_FAILED) { c->nf++; return; }
    if (c->n < 64) { c->ids[c->n] = r->id; c->paths[c->n++] = strdup(r->path); }
}

static void collect_free(collect *c) {
    for (int i = 0; i < c->n; i++) free(c->paths[i]);
    memset(c, 0, sizeof *c);
}

static uint64_t id_of(const collect *c, const char *path) {
    for (int i = 0; i < c->n; i++) if (!strcmp(c->paths[i], path)) return c->ids[i];
    return 0;
}

static int ingest(eng_db *db, const char *coll, const char *const *paths, int n, collect *c,
                  const eng_video_opts *vo) {
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    o.collection = coll;
    o.jobs = 2;
    o.on_result = on_result;
    o.user = c;
    o.video = vo;
    eng_progress p;
    return eng_ingest_paths(db, paths, n, &o, &p);
}

static uint64_t n_thumbs_stored(const char *dir) {
    st_db *st = NULL;
    st_txn *t = NULL;
    st_stats s = {0};
    if (st_open(dir, &(st_opts){.read_only = 1}, &st) || st_txn_begin(st, 0, &t) ||
        st_stats_get(t, &s))
        s.n_thumbs = UINT64_MAX;
    st_txn_abort(t);
    st_close(st);
    return s.n_thumbs;
}

/* ---- photos: stored, decoding, small, showing the photo ---- */

static void test_photos(void) {
    char *dir = t_tmpdir("thumb-photos");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, 0, &db));
    /* photos at 1024 px (thumbnail 256) and one at 200 px (not enlarged) */
    const char *paths[NP + 1];
    char *small = t_path("%s/small.jpg", work);
    REQUIRE(t_sh("vipsthumbnail '%s' -s 200 -o '%s[Q=90]'", P.paths[0], small) == 0);
    for (int i = 0; i < NP; i++) paths[i] = P.paths[i];
    paths[NP] = small;
    collect c = {0};
    REQUIRE_OK(ingest(db, NULL, paths, NP + 1, &c, NULL));
    CHECK_EQ_INT(c.n, NP + 1);
    for (int i = 0; i <= NP; i++) {
        uint64_t id = id_of(&c, paths[i]);
        eng_thumb t;
        REQUIRE_OK(eng_get_thumbnail(db, id, -1, &t));
        CHECK(t.stored == 1);
        CHECK(is_webp(&t));
        int w = 0, h = 0;
        CHECK(decode_thumb(&t, &w, &h) == 0);
        CHECK_EQ_INT(w, t.width);
        CHECK_EQ_INT(h, t.height);
        eng_item *it = NULL;
        REQUIRE_OK(eng_get(db, id, 0, &it));
        int lw = it->width > it->height ? it->width : it->height;
        int exp_long = lw > ENG_THUMB_SIDE ? ENG_THUMB_SIDE : lw;
        CHECK_EQ_INT(w > h ? w : h, exp_long);
        /* aspect within one pixel of rounding */
        double ew = (double)it->width * exp_long / lw, eh = (double)it->height * exp_long / lw;
        CHECK(fabs(w - ew) <= 1.0 && fabs(h - eh) <= 1.0);
        CHECK(t.len > 100 && t.len < 40 * 1024);
        if (i < NP) {
            double ratio = 0;
            int b = best_photo(&t, S, NP, &ratio);
            if (b != i || ratio > 0.5)
                t_fail(__FILE__, __LINE__, "thumbnail of photo %d looks most like photo %d (ratio %.2f)", i, b, ratio);
        }
        printf("  photo %d: %dx%d -> %dx%d, %zu bytes\n", i, it->width, it->height, w, h, t.len);
        eng_item_free(it);
        eng_thumb_clear(&t);
    }
    /* an upload (eng_add_buffer) gets one too */
    size_t len = 0;
    void *bytes = t_read_file(P.paths[NP], &len);
    REQUIRE(bytes);
    uint64_t id = 0;
    eng_outcome oc;
    REQUIRE_OK(eng_add_buffer(db, bytes, len, "upload.jpg", NULL, &id, &oc));
    free(bytes);
    eng_thumb t;
    REQUIRE_OK(eng_get_thumbnail(db, id, -1, &t));
    CHECK(t.stored && is_webp(&t));
    eng_thumb_clear(&t);
    /* no segment on an image; unknown id */
    CHECK_ERR(eng_get_thumbnail(db, id, 0, &t), PERR_NOT_FOUND);
    CHECK_ERR(eng_get_thumbnail(db, 999999, -1, &t), PERR_NOT_FOUND);
    /* delete: its thumbnail goes with it */
    CHECK_OK(eng_close(db));
    uint64_t before = n_thumbs_stored(dir);
    CHECK_EQ_INT(before, NP + 2);
    REQUIRE_OK(open_db(dir, 0, &db));
    int nrm = 0;
    CHECK_OK(eng_remove(db, &id, 1, &nrm));
    CHECK_ERR(eng_get_thumbnail(db, id, -1, &t), PERR_NOT_FOUND);
    CHECK_OK(eng_close(db));
    CHECK_EQ_INT(n_thumbs_stored(dir), NP + 1);
    /* the CLI writes the same bytes */
    REQUIRE_OK(open_db(dir, 1, &db));
    uint64_t id0 = id_of(&c, paths[0]);
    REQUIRE_OK(eng_get_thumbnail(db, id0, -1, &t));
    CHECK_OK(eng_close(db));
    char *out = t_path("%s/cli-thumb.webp", work);
    CHECK(t_sh("'%s' get --db '%s' --thumbnail '%s' %llu > /dev/null", getenv("PERCEPT_EXE"), dir, out,
             (unsigned long long)id0) == 0);
    size_t ol = 0;
    void *ob = t_read_file(out, &ol);
    CHECK(ob && ol == t.len && !memcmp(ob, t.data, ol));
    free(ob);
    free(out);
    eng_thumb_clear(&t);
    collect_free(&c);
    free(small);
    t_rmtree(dir);
    free(dir);
}

/* ---- videos: the video's frame and each segment's ---- */

static void test_video(void) {
    /* photo i shown during [2i, 2i + 2) */
    char *vid = t_path("%s/v.mp4", work);
    REQUIRE(t_sh("ffmpeg -nostdin -loglevel error -y -loop 1 -t 2 -r 10 -i '%s' -loop 1 -t 2 -r 10 -i '%s' "
               "-loop 1 -t 2 -r 10 -i '%s' -filter_complex "
               "'[0]scale=320:240,setsar=1,fps=10[a];[1]scale=320:240,setsar=1,fps=10[b];"
               "[2]scale=320:240,setsar=1,fps=10[c];[a][b][c]concat=n=3:v=1,format=yuv420p' "
               "-c:v libx264 -g 20 '%s'", P.paths[0], P.paths[1], P.paths[2], vid) == 0);
    char *dir = t_tmpdir("thumb-video");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, 0, &db));
    eng_video_opts vo;
    eng_video_opts_default(&vo);
    vo.segment_s = 2;
    collect c = {0};
    const char *paths[] = {vid};
    REQUIRE_OK(ingest(db, NULL, paths, 1, &c, &vo));
    REQUIRE(c.n == 1);
    uint64_t id = c.ids[0];
    eng_thumb t;
    REQUIRE_OK(eng_get_thumbnail(db, id, -1, &t));
    int w, h;
    CHECK(t.stored && is_webp(&t) && decode_thumb(&t, &w, &h) == 0);
    CHECK_EQ_INT(w, 256);
    CHECK_EQ_INT(h, 192);
    double ratio = 0;
    /* 8 uniform frames over 6 s: the middle one (index 4) is at 3.375 s: photo 1 */
    CHECK_EQ_INT(best_photo(&t, S, 3, &ratio), 1);
    eng_thumb_clear(&t);
    for (int s = 0; s < 3; s++) {
        REQUIRE_OK(eng_get_thumbnail(db, id, s, &t));
        CHECK(t.stored && is_webp(&t) && decode_thumb(&t, &w, &h) == 0);
        int b = best_photo(&t, S, 3, &ratio);
        if (b != s) t_fail(__FILE__, __LINE__, "segment %d thumbnail looks like photo %d", s, b);
        eng_thumb_clear(&t);
    }
    CHECK_ERR(eng_get_thumbnail(db, id, 3, &t), PERR_NOT_FOUND);
    CHECK_OK(eng_close(db));
    CHECK_EQ_INT(n_thumbs_stored(dir), 4);
    /* dropping the collection drops them */
    REQUIRE_OK(open_db(dir, 0, &db));
    CHECK_OK(eng_collection_drop(db, ENG_DEFAULT_COLLECTION));
    CHECK_OK(eng_close(db));
    CHECK_EQ_INT(n_thumbs_stored(dir), 0);
    collect_free(&c);
    t_rmtree(dir);
    free(dir);
    free(vid);
}

/* ---- off per collection; on demand from the file ---- */

static void test_off_per_collection(void) {
    char *dir = t_tmpdir("thumb-off");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, 0, &db));
    REQUIRE_OK(eng_collection_create(db, "plain", NULL));
    REQUIRE_OK(eng_collection_set_thumbnails(db, "plain", 0));
    eng_collection_info ci;
    REQUIRE_OK(eng_collection_get(db, "plain", &ci));
    CHECK_EQ_INT(ci.thumbnails, 0);
    char *copy = t_path("%s/moved.jpg", work);
    REQUIRE(t_sh("cp '%s' '%s'", P.paths[3], copy) == 0);
    const char *paths[] = {copy, P.paths[4]};
    collect c = {0};
    REQUIRE_OK(ingest(db, "plain", paths, 2, &c, NULL));
    REQUIRE(c.n == 2);
    CHECK_OK(eng_close(db));
    CHECK_EQ_INT(n_thumbs_stored(dir), 0);
    REQUIRE_OK(open_db(dir, 1, &db));
    eng_thumb t;
    uint64_t id = id_of(&c, copy);
    REQUIRE_OK(eng_get_thumbnail(db, id, -1, &t));
    CHECK_EQ_INT(t.stored, 0);
    int w, h;
    CHECK(decode_thumb(&t, &w, &h) == 0 && (w == 256 || h == 256));
    double ratio = 0;
    CHECK_EQ_INT(best_photo(&t, S, NP, &ratio), 3);
    eng_thumb_clear(&t);
    unlink(copy);
    CHECK_ERR(eng_get_thumbnail(db, id, -1, &t), PERR_NOT_FOUND);
    CHECK(strstr(perr_msg(), "moved.jpg") != NULL);
    CHECK_OK(eng_close(db));
    /* switched back on: new items get theirs */
    REQUIRE_OK(open_db(dir, 0, &db));
    REQUIRE_OK(eng_collection_set_thumbnails(db, "plain", 1));
    const char *p5[] = {P.paths[5]};
    collect c2 = {0};
    REQUIRE_OK(ingest(db, "plain", p5, 1, &c2, NULL));
    REQUIRE(c2.n == 1);
    REQUIRE_OK(eng_get_thumbnail(db, c2.ids[0], -1, &t));
    CHECK_EQ_INT(t.stored, 1);
    eng_thumb_clear(&t);
    CHECK_ERR(eng_collection_set_thumbnails(db, "nope", 0), PERR_NOT_FOUND);
    CHECK_OK(eng_close(db));
    collect_free(&c);
    collect_free(&c2);
    free(copy);
    t_rmtree(dir);
    free(dir);
}

/* ---- a layout-1 database (made by dropping the table, version 1) ---- */

static int make_layout1(const char *dir) {
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi info, th;
    int rc = mdb_env_create(&env);
    if (rc) return rc;
    mdb_env_set_maxdbs(env, 32);
    mdb_env_set_mapsize(env, (size_t)64 << 30);
    uint32_t v1 = 1;
    MDB_val k = {6, "layout"}, v = {4, &v1};
    if (!(rc = mdb_env_open(env, dir, 0, 0644)) && !(rc = mdb_txn_begin(env, NULL, 0, &t))) {
        if ((rc = mdb_dbi_open(t, "thumbs", 0, &th)) || (rc = mdb_drop(t, th, 1)) ||
            (rc = mdb_dbi_open(t, "info", 0, &info)) || (rc = mdb_put(t, info, &k, &v, 0)))
            mdb_txn_abort(t);
        else
            rc = mdb_txn_commit(t);
    }
    mdb_env_close(env);
    return rc;
}

static uint32_t layout_of(const char *dir) {
    st_db *st = NULL;
    st_txn *t = NULL;
    st_info in = {0};
    if (st_open(dir, &(st_opts){.read_only = 1}, &st) || st_txn_begin(st, 0, &t) || st_info_get(t, &in))
        in.layout_version = 0;
    st_txn_abort(t);
    st_close(st);
    return in.layout_version;
}

static void test_old_database(void) {
    char *dir = t_tmpdir("thumb-old");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, 0, &db));
    const char *paths[] = {P.paths[0], P.paths[1]};
    collect c = {0};
    REQUIRE_OK(ingest(db, NULL, paths, 2, &c, NULL));
    CHECK_OK(eng_close(db));
    REQUIRE(make_layout1(dir) == 0);
    CHECK_EQ_INT(layout_of(dir), 1);
    /* read-only: opens as is, thumbnails made from the files */
    REQUIRE_OK(open_db(dir, 1, &db));
    eng_thumb t;
    REQUIRE_OK(eng_get_thumbnail(db, c.ids[0], -1, &t));
    CHECK_EQ_INT(t.stored, 0);
    int w, h;
    CHECK(decode_thumb(&t, &w, &h) == 0);
    eng_thumb_clear(&t);
    eng_results *r = NULL;
    CHECK_OK(eng_search_id(db, c.ids[0], &(eng_query){.k = 5, .include_self = 1}, &r));
    CHECK(r && r->n == 2 && r->hits[0].id == c.ids[0]);
    eng_results_free(r);
    CHECK_OK(eng_close(db));
    CHECK_EQ_INT(layout_of(dir), 1);
    /* writable: upgraded to 2; old items still on demand, new ones stored */
    REQUIRE_OK(open_db(dir, 0, &db));
    const char *p2[] = {P.paths[2]};
    collect c2 = {0};
    REQUIRE_OK(ingest(db, NULL, p2, 1, &c2, NULL));
    REQUIRE(c2.n == 1);
    REQUIRE_OK(eng_get_thumbnail(db, c2.ids[0], -1, &t));
    CHECK_EQ_INT(t.stored, 1);
    eng_thumb_clear(&t);
    REQUIRE_OK(eng_get_thumbnail(db, c.ids[1], -1, &t));
    CHECK_EQ_INT(t.stored, 0);
    eng_thumb_clear(&t);
    CHECK_OK(eng_close(db));
    CHECK_EQ_INT(layout_of(dir), ST_LAYOUT_VERSION);
    collect_free(&c);
    collect_free(&c2);
    t_rmtree(dir);
    free(dir);
}

/* ---- hostile and odd inputs ---- */

static void test_hostile(void) {
    char *dir = t_tmpdir("thumb-hostile");
    char *trunc = t_path("%s/trunc.jpg", work), *garbage = t_path("%s/garbage.jpg", work);
    char *one = t_path("%s/one.png", work), *strip = t_path("%s/strip.png", work);
    char *alpha = t_path("%s/alpha.png", work);
    size_t len = 0;
    uint8_t *b = t_read_file(P.paths[0], &len);
    REQUIRE(b);
    REQUIRE(t_write_file(trunc, b, len / 3) == 0);
    for (size_t i = 0; i < 4096 && i < len; i++) b[i] = (uint8_t)(i * 131 + 7);
    REQUIRE(t_write_file(garbage, b, len < 4096 ? len : 4096) == 0);
    free(b);
    REQUIRE(t_sh("vips black '%s' 1 1", one) == 0);
    REQUIRE(t_sh("vips black '%s' 4000 3 --bands 3", strip) == 0);
    /* RGBA: the photo with a transparent hole */
    REQUIRE(t_sh("vips bandjoin_const '%s' '%s' 0", P.paths[1], alpha) == 0);
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, 0, &db));
    const char *paths[] = {trunc, garbage, one, strip, alpha, P.paths[2]};
    collect c = {0};
    REQUIRE_OK(ingest(db, NULL, paths, 6, &c, NULL));
    CHECK_EQ_INT(c.nf, 2);
    CHECK_EQ_INT(c.n, 4);
    struct { const char *p; int w, h; } exp[] = {{one, 1, 1}, {strip, 256, 1}};
    for (int i = 0; i < 2; i++) {
        eng_thumb t;
        uint64_t id = id_of(&c, exp[i].p);
        REQUIRE(id);
        REQUIRE_OK(eng_get_thumbnail(db, id, -1, &t));
        int w, h;
        CHECK(decode_thumb(&t, &w, &h) == 0);
        CHECK_EQ_INT(w, exp[i].w);
        CHECK_EQ_INT(h, exp[i].h);
        eng_thumb_clear(&t);
    }
    /* fully transparent: flattened on white */
    eng_thumb t;
    REQUIRE_OK(eng_get_thumbnail(db, id_of(&c, alpha), -1, &t));
    VipsImage *im = vips_image_new_from_buffer(t.data, t.len, "", NULL);
    REQUIRE(im);
    double avg = 0;
    CHECK(vips_avg(im, &avg, NULL) == 0 && avg > 250);
    CHECK_EQ_INT(im->Bands, 3);
    g_object_unref(im);
    eng_thumb_clear(&t);
    CHECK_OK(eng_close(db));
    collect_free(&c);
    free(trunc); free(garbage); free(one); free(strip); free(alpha);
    t_rmtree(dir);
    free(dir);
}

/* ---- the binary protocol: GET with "thumbnail" ---- */

static void test_protocol(void) {
    char *dir = t_tmpdir("thumb-net");
    eng_db *db = NULL;
    REQUIRE_OK(open_db(dir, 0, &db));
    const char *paths[] = {P.paths[0]};
    collect c = {0};
    REQUIRE_OK(ingest(db, NULL, paths, 1, &c, NULL));
    REQUIRE(c.n == 1);
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, NULL));
    pc_client *pc = NULL;
    CHECK_OK(pc_connect(s.addr, NULL, &pc));
    eng_thumb a = {0}, b = {0};
    CHECK_OK(eng_get_thumbnail(db, c.ids[0], -1, &a));
    if (pc) {
        CHECK_OK(pc_get_thumbnail(pc, c.ids[0], -1, &b));
        CHECK(a.len && a.len == b.len && !memcmp(a.data, b.data, a.len));
        CHECK_STR(b.mime, "image/webp");
        CHECK(b.stored == 1 && b.width == a.width && b.height == a.height);
        eng_thumb_clear(&b);
        CHECK_ERR(pc_get_thumbnail(pc, c.ids[0], 2, &b), PERR_NOT_FOUND);
        CHECK_ERR(pc_get_thumbnail(pc, 4242, -1, &b), PERR_NOT_FOUND);
        /* a plain GET is unchanged */
        eng_item *it = NULL;
        CHECK_OK(pc_get(pc, c.ids[0], 0, &it));
        CHECK(it && it->id == c.ids[0]);
        eng_item_free(it);
    }
    eng_thumb_clear(&a);
    pc_close(pc);
    nt_server_stop(&s);
    CHECK_OK(eng_close(db));
    collect_free(&c);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    model_path = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    vocab_path = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    if (VIPS_INIT("test_thumbs")) return 1;
    int n = photos_gather(&P, NP + 1, 1024);
    printf("photos: %d real photos gathered\n", n);
    if (n < NP + 1) {
        fprintf(stderr, "need %d real photos (install gnome-backgrounds, mate-backgrounds, ukui-wallpapers: scripts/deps.sh)\n", NP + 1);
        return 1;
    }
    for (int i = 0; i < NP; i++)
        if (signature(P.paths[i], NULL, 0, S[i])) { fprintf(stderr, "cannot read %s\n", P.paths[i]); return 1; }
    work = t_tmpdir("thumb-work");
    T_RUN(test_photos);
    T_RUN(test_video);
    T_RUN(test_off_per_collection);
    T_RUN(test_old_database);
    T_RUN(test_hostile);
    T_RUN(test_protocol);
    t_rmtree(work);
    free(work);
    photos_free(&P);
    free(model_path);
    free(vocab_path);
    return t_done();
}
