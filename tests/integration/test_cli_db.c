/* test_cli_db: the embedded-mode commands end to end (the `percept` binary
 * on real photos with the tiny-a model): --json shapes, exit codes, and
 * the answers known by construction. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "photos.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static photo_set P;
static char *exe, *model, *db, *tmp;

/* Runs a shell command; *out gets stdout (caller frees). Exit status. */
#define run(out, ...) t_cmd(out, NULL, __VA_ARGS__)

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void test_ingest_search(void) {
    char *out = NULL;
    /* the list comes on stdin ("-") */
    char *list = t_path("%s/list.txt", tmp);
    FILE *f = fopen(list, "w");
    for (int i = 0; i < P.n; i++) fprintf(f, "%s\n", P.paths[i]);
    fclose(f);
    int code = run(&out, "%s ingest --db %s --model %s --label photo --meta src=debian --json - < %s",
                   exe, db, model, list);
    CHECK_EQ_INT(code, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)num(j, "added"), P.n);
    CHECK_EQ_INT((int)num(j, "failed"), 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    free(out);
    /* again, without --model: everything already present */
    code = run(&out, "%s ingest --db %s --json %s", exe, db, P.dir);
    CHECK_EQ_INT(code, 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)num(j, "present"), P.n);
    cJSON_Delete(j);
    free(out);
    /* each image finds itself first with score 1 */
    for (int i = 0; i < P.n; i += 5) {
        cJSON *r;
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "%s search --db %s --json -k 3 --image %s", exe, db, P.paths[i]);
        code = run(&out, "%s", cmd);
        CHECK_EQ_INT(code, 0);
        r = cJSON_Parse(out);
        free(out);
        REQUIRE(r);
        cJSON *res = cJSON_GetObjectItem(r, "results");
        REQUIRE(cJSON_GetArraySize(res) == 3);
        cJSON *h = cJSON_GetArrayItem(res, 0);
        CHECK_STR(cJSON_GetObjectItem(h, "uri")->valuestring, P.paths[i]);
        CHECK(fabs(num(h, "score") - 1) < 1e-5);
        CHECK_STR(cJSON_GetObjectItem(h, "collection")->valuestring, "default");
        CHECK_STR(cJSON_GetObjectItem(h, "media")->valuestring, "image");
        CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(h, "labels"), 0)->valuestring, "photo");
        cJSON_Delete(r);
    }
    code = run(&out, "%s search --db %s --json --text 'a snowy mountain' -k 5", exe, db);
    CHECK_EQ_INT(code, 0);
    j = cJSON_Parse(out);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")) == 5);
    cJSON_Delete(j);
    free(out);
    /* a file name that is not UTF-8 (names are bytes): --json stays valid
     * UTF-8, the name printed lossy with its exact bytes in uri_hex */
    char *latin = t_path("%s/caf\xe9.jpg", tmp);
    CHECK_EQ_INT(photos_make_variant(P.paths[2], latin, PV_FLIP), 0);
    CHECK_EQ_INT(run(NULL, "%s ingest --db %s/latin --model %s -q %s", exe, tmp, model, latin), 0);
    CHECK_EQ_INT(run(NULL, "%s search --db %s/latin --json -k 1 --image %s | iconv -f UTF-8 -t UTF-8 >/dev/null 2>&1",
                     exe, tmp, latin), 0);
    code = run(&out, "%s search --db %s/latin --json -k 1 --image %s", exe, tmp, latin);
    CHECK_EQ_INT(code, 0);
    j = cJSON_Parse(out);
    free(out);
    if (j) {
        cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
        char *want = t_path("%s/caf\xef\xbf\xbd.jpg", tmp), hex[8192] = "";
        for (const char *c = latin; *c; c++) snprintf(hex + strlen(hex), 3, "%02x", (unsigned char)*c);
        CHECK_STR(cJSON_GetObjectItem(h, "uri")->valuestring, want);
        CHECK(cJSON_IsString(cJSON_GetObjectItem(h, "uri_hex")));
        if (cJSON_IsString(cJSON_GetObjectItem(h, "uri_hex"))) CHECK_STR(cJSON_GetObjectItem(h, "uri_hex")->valuestring, hex);
        free(want);
    } else CHECK(j);
    cJSON_Delete(j);
    free(latin);
    /* a bad file: skipped with exit 0 (a line naming it and why); with
     * --strict exit 2 and ok false; the good file of the run is kept */
    char *junk = t_path("%s/junk.jpg", tmp);
    t_write_file(junk, "not an image at all", 19);
    code = run(&out, "%s ingest --db %s/strictdb --model %s %s %s 2>&1", exe, tmp, model, junk, P.paths[0]);
    CHECK_EQ_INT(code, 0);
    CHECK(strstr(out, "skipped") && strstr(out, junk));
    free(out);
    code = run(&out, "%s ingest --db %s/strictdb --strict --json %s %s 2>/dev/null", exe, tmp, junk, P.paths[1]);
    CHECK_EQ_INT(code, 2);
    j = cJSON_Parse(out);
    CHECK(j && cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")) && (int)num(j, "failed") == 1 && (int)num(j, "added") == 1);
    cJSON_Delete(j);
    free(out);
    code = run(&out, "%s ingest --db %s/strictdb --strict %s 2>&1", exe, tmp, P.paths[1]);
    CHECK_EQ_INT(code, 0); /* nothing failed: already present is fine */
    free(out);
    free(junk);
    /* errors: exit 2 with a message */
    CHECK_EQ_INT(run(NULL, "%s search --db %s --text x --image y 2>/dev/null", exe, db), 2);
    CHECK_EQ_INT(run(NULL, "%s search --db %s/nope --text x 2>/dev/null", exe, tmp), 2);
    CHECK_EQ_INT(run(NULL, "%s search --db %s --id 999999 2>/dev/null", exe, db), 2);
    free(list);
}

static void test_get_label_rm(void) {
    char *out = NULL;
    int code = run(&out, "%s get --db %s 3", exe, db);
    CHECK_EQ_INT(code, 0);
    cJSON *j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)num(j, "id"), 3);
    CHECK(strlen(cJSON_GetObjectItem(j, "sha256")->valuestring) == 64);
    CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "meta"), "src")->valuestring, "debian");
    cJSON_Delete(j);
    CHECK_EQ_INT(run(NULL, "%s label --db %s add special 3 4", exe, db), 0);
    code = run(&out, "%s search --db %s --json --text x -k 50 --label special", exe, db);
    j = cJSON_Parse(out);
    free(out);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")) == 2);
    cJSON_Delete(j);
    code = run(&out, "%s search --db %s --json --text x -k 50 --where src=debian", exe, db);
    j = cJSON_Parse(out);
    free(out);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")) == (P.n < 50 ? P.n : 50));
    cJSON_Delete(j);
    /* remove the last photo (ids follow commit order, not list order) */
    code = run(&out, "%s search --db %s --json -k 1 --image %s", exe, db, P.paths[P.n - 1]);
    j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    int victim = (int)num(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0), "id");
    cJSON_Delete(j);
    CHECK_EQ_INT(run(NULL, "%s rm --db %s %d", exe, db, victim), 0);
    code = run(&out, "%s search --db %s --json --id 3 -k 50 --include-self", exe, db);
    j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    cJSON *h;
    int has3 = 0;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(j, "results")) {
        CHECK((int)num(h, "id") != victim);
        has3 |= (int)num(h, "id") == 3;
    }
    CHECK(has3);
    cJSON_Delete(j);
    CHECK_EQ_INT(run(NULL, "%s get --db %s %d 2>/dev/null", exe, db, victim), 2);
}

static void test_moderate_collections(void) {
    char *out = NULL;
    CHECK_EQ_INT(run(NULL, "%s collection --db %s create banned --index HNSW16", exe, db), 0);
    CHECK_EQ_INT(run(NULL, "%s collection --db %s create banned 2>/dev/null", exe, db), 2);
    CHECK_EQ_INT(run(NULL, "%s ingest --db %s --collection banned --set-threshold 0.999 -q %s %s",
                     exe, db, P.paths[0], P.paths[1]), 0);
    /* matched: exit 1; clean: exit 0 */
    int code = run(&out, "%s moderate --db %s --set banned --json %s", exe, db, P.paths[1]);
    CHECK_EQ_INT(code, 1);
    cJSON *j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "matched")));
    cJSON *r0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
    cJSON *n0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r0, "nearest"), 0);
    CHECK(fabs(num(n0, "score") - 1) < 1e-5);
    CHECK(fabs(num(cJSON_GetArrayItem(cJSON_GetObjectItem(r0, "sets"), 0), "threshold") - 0.999) < 1e-6);
    cJSON_Delete(j);
    CHECK_EQ_INT(run(NULL, "%s moderate --db %s --set banned %s >/dev/null", exe, db, P.paths[7]), 0);
    CHECK_EQ_INT(run(NULL, "%s moderate --db %s --set nope %s 2>/dev/null >/dev/null", exe, db, P.paths[7]), 2);
    /* multi-collection search merges by score */
    code = run(&out, "%s search --db %s --json --image %s --collection default --collection banned -k 4",
               exe, db, P.paths[0]);
    j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    double prev = 2;
    int colls = 0;
    cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(j, "results")) {
        CHECK(num(h, "score") <= prev + 1e-7);
        prev = num(h, "score");
        colls |= !strcmp(cJSON_GetObjectItem(h, "collection")->valuestring, "banned") ? 2 : 1;
    }
    CHECK_EQ_INT(colls, 3); /* the photo is in both: both score 1 */
    cJSON_Delete(j);
    code = run(&out, "%s collection --db %s list --json", exe, db);
    j = cJSON_Parse(out);
    free(out);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "collections")) == 2);
    cJSON_Delete(j);
    /* exact duplicates across collections */
    code = run(&out, "%s dups --db %s --tier exact --json", exe, db);
    j = cJSON_Parse(out);
    if (!j || cJSON_GetArraySize(cJSON_GetObjectItem(j, "groups")) != 2) t_fail(__FILE__, __LINE__, "dups: %s", out);
    free(out);
    cJSON_Delete(j);
    CHECK_EQ_INT(run(NULL, "%s collection --db %s drop banned", exe, db), 0);
    code = run(&out, "%s stats --db %s --json", exe, db);
    j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)num(j, "items"), P.n - 1);
    CHECK_EQ_INT((int)num(cJSON_GetObjectItem(j, "model"), "dim"), 32);
    cJSON_Delete(j);
    code = run(&out, "%s export --db %s | wc -l", exe, db);
    CHECK_EQ_INT(atoi(out), P.n - 1);
    free(out);
}

static void test_classify_and_mismatch(void) {
    char *out = NULL;
    int code = run(&out, "%s classify --model %s --labels 'cat, dog,car' --json %s", exe, model, P.paths[2]);
    CHECK_EQ_INT(code, 0);
    cJSON *j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    cJSON *l = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0), "labels");
    CHECK_EQ_INT(cJSON_GetArraySize(l), 3);
    double s = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, l) s += num(e, "prob");
    CHECK(fabs(s - 1) < 1e-4);
    cJSON_Delete(j);
    /* another model: refused, exit 2, both named */
    size_t len;
    unsigned char *w = t_read_file(model, &len);
    REQUIRE(w);
    uint64_t hl;
    memcpy(&hl, w, 8);
    w[8 + hl] ^= 1;
    char *other = t_path("%s/other.safetensors", tmp);
    t_write_file(other, w, len);
    free(w);
    code = run(&out, "%s search --db %s --model %s --text x 2>&1", exe, db, other);
    CHECK_EQ_INT(code, 2);
    CHECK(strstr(out, "other.safetensors") && strstr(out, "tiny-a.safetensors"));
    free(out);
    free(other);
}


/* A few hundred files: every real photo the Debian packages give (scaled
 * once to 160 px, so the 4K wallpapers' decode does not dominate) plus
 * three variants each made by libvips (JPEG q60 re-encode, PNG of the same
 * pixels, 70 % resize). Known answers: `dups --tier near` finds exactly one
 * group per photo, holding the photo and its three variants (cosine >=
 * 0.999 with tiny-a, while different photos stay <= 0.986: docs/design.md),
 * and an image query with a variant finds the photo's group first. */
static void test_few_hundred_files(void) {
    photo_set all;
    int n = photos_gather(&all, 0, 160);
    printf("  many: %d distinct photos\n", n);
    REQUIRE(n >= 50);
    /* files are named after the gather number p<N> */
    int *gnum = calloc((size_t)n, sizeof *gnum);
    for (int i = 0; i < n; i++) sscanf(strrchr(all.paths[i], '/'), "/p%d", &gnum[i]);
    static const photo_variant vs[] = {PV_REENCODE_Q60, PV_REENCODE_PNG, PV_RESIZE_70};
    char *list = t_path("%s/many.txt", tmp);
    FILE *f = fopen(list, "w");
    REQUIRE(f);
    int files = 0;
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n", all.paths[i]);
        files++;
        for (int v = 0; v < 3; v++) {
            char *dst = t_path("%s/p%03d-v%d.%s", all.dir, gnum[i], v, vs[v] == PV_REENCODE_PNG ? "png" : "jpg");
            if (photos_make_variant(all.paths[i], dst, vs[v]) == 0) { fprintf(f, "%s\n", dst); files++; }
            else t_fail(__FILE__, __LINE__, "variant %s of %s", photos_variant_name(vs[v]), all.paths[i]);
            free(dst);
        }
    }
    fclose(f);
    printf("  many: %d photos + variants = %d files\n", n, files);
    char *out = NULL;
    int code = run(&out, "%s ingest --db %s/many --model %s --strict --json -q - < %s", exe, tmp, model, list);
    CHECK_EQ_INT(code, 0);
    cJSON *j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)num(j, "added"), files);
    cJSON_Delete(j);
    /* id -> photo number, from export */
    int *photo_of = calloc((size_t)files * 4 + 16, sizeof *photo_of);
    code = run(&out, "%s export --db %s/many", exe, tmp);
    CHECK_EQ_INT(code, 0);
    int max_id = files * 4 + 15, seen = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *it = cJSON_Parse(line);
        if (!it) continue;
        int id = (int)num(it, "id");
        const char *uri = cJSON_GetObjectItem(it, "uri")->valuestring;
        const char *b = strrchr(uri, '/');
        int ph = -1;
        if (b && sscanf(b, "/p%d", &ph) == 1 && id > 0 && id <= max_id) { photo_of[id] = ph + 1; seen++; }
        cJSON_Delete(it);
    }
    free(out);
    CHECK_EQ_INT(seen, files);
    /* near duplicates: each photo's 4 files fall in one group, and groups
     * hold whole photos (the random-weight tiny model puts a few different
     * but similar-looking wallpapers above 0.995 too: reported, allowed) */
    code = run(&out, "%s dups --db %s/many --tier near --json", exe, tmp);
    CHECK_EQ_INT(code, 0);
    j = cJSON_Parse(out);
    free(out);
    REQUIRE(j);
    int *group_of = calloc((size_t)n + 1, sizeof *group_of), *files_in = calloc((size_t)n + 1, sizeof *files_in);
    int gno = 0, merged = 0;
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(j, "groups")) {
        gno++;
        int photos_here = 0;
        cJSON *id;
        cJSON_ArrayForEach(id, cJSON_GetObjectItem(g, "ids")) {
            int x = (int)id->valuedouble;
            int ph = x > 0 && x <= max_id ? photo_of[x] : 0;
            if (!ph) { t_fail(__FILE__, __LINE__, "near group: unknown id %d", x); continue; }
            if (group_of[ph - 1] && group_of[ph - 1] != gno)
                t_fail(__FILE__, __LINE__, "photo %d split over near groups %d and %d", ph - 1, group_of[ph - 1], gno);
            if (!group_of[ph - 1]) photos_here++;
            group_of[ph - 1] = gno;
            files_in[ph - 1]++;
        }
        if (photos_here > 1) merged += photos_here;
    }
    for (int i = 0; i < n; i++)
        if (files_in[gnum[i]] != 4) t_fail(__FILE__, __LINE__, "photo %d: %d of its 4 files in near groups", gnum[i], files_in[gnum[i]]);
    printf("  many: %d near groups for %d photos (%d photos share a group with a look-alike)\n", gno, n, merged);
    CHECK(gno >= n * 3 / 4);
    cJSON_Delete(j);
    free(group_of);
    free(files_in);
    /* a sample of variant (70 % resize) queries: the first hit is the same
     * photo (its original or another variant) */
    for (int i = 0; i < n; i += 7) {
        code = run(&out, "%s search --db %s/many --json -k 4 --image %s/p%03d-v2.jpg", exe, tmp, all.dir, gnum[i]);
        CHECK_EQ_INT(code, 0);
        j = cJSON_Parse(out);
        free(out);
        if (!j) { CHECK(j); continue; }
        cJSON *res = cJSON_GetObjectItem(j, "results");
        CHECK_EQ_INT(cJSON_GetArraySize(res), 4);
        int x = (int)num(cJSON_GetArrayItem(res, 0), "id");
        if (x <= 0 || x > max_id || photo_of[x] != gnum[i] + 1)
            t_fail(__FILE__, __LINE__, "query p%03d-v2: first hit %d is photo %d", gnum[i], x, x > 0 && x <= max_id ? photo_of[x] - 1 : -1);
        cJSON_Delete(j);
    }
    free(photo_of);
    free(gnum);
    free(list);
    photos_free(&all);
}

int main(void) {
    exe = getenv("PERCEPT_EXE");
    if (!exe) { fprintf(stderr, "PERCEPT_EXE not set (run through ctest)\n"); return 1; }
    model = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    char *vocab = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    setenv("PERCEPT_VOCAB", vocab, 1);
    if (photos_gather(&P, 30, 192) < 20) { fprintf(stderr, "need real photos (scripts/deps.sh)\n"); return 1; }
    tmp = t_tmpdir("cli-db");
    db = t_path("%s/db", tmp);
    T_RUN(test_ingest_search);
    T_RUN(test_get_label_rm);
    T_RUN(test_moderate_collections);
    T_RUN(test_classify_and_mismatch);
    T_RUN(test_few_hundred_files);
    t_rmtree(tmp);
    photos_free(&P);
    free(tmp); free(db); free(model); free(vocab);
    return t_done();
}
