/* test_cli_hardening: issue 9's ingest-walk and small-thing defects, end
 * to end through the `percept` binary (tiny-a model, real photos):
 * directory links back into the tree, a truncated WebM, a database whose
 * creation was interrupted, and which commands re-execute themselves. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "photos.h"
#include "storage/st.h"
#include "tests/common/testlib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static photo_set P;
static char *exe, *model, *tmp;

#define run t_cmd

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* photos/{a.jpg, alias -> sub, self -> ., sub/{b.jpg, up -> .., deeper/{c.jpg,
 * again -> ../../sub}}}. Name order: alias enters sub's directory first
 * (as photos/alias); then alias/up, alias/deeper/again, self and sub all
 * lead to directories already walked: each reported once, none entered.
 * Before the fix the walk went on to its depth limit (the loops multiply:
 * minutes of walking), so it runs under a time limit. */
static void test_walk_links(void) {
    char *root = t_path("%s/photos", tmp);
    REQUIRE(run(NULL, NULL, "mkdir -p %s/sub/deeper && cp %s %s/a.jpg && cp %s %s/sub/b.jpg && cp %s %s/sub/deeper/c.jpg"
                " && ln -s .. %s/sub/up && ln -s . %s/self && ln -s sub %s/alias && ln -s ../../sub %s/sub/deeper/again",
                root, P.paths[0], root, P.paths[1], root, P.paths[2], root, root, root, root, root) == 0);
    char *out = NULL, *err = NULL;
    int code = run(&out, &err, "timeout 60 %s ingest --db %s/walkdb --model %s --json %s", exe, tmp, model, root);
    CHECK_EQ_INT(code, 0);
    cJSON *j = cJSON_Parse(out);
    if (!j) t_fail(__FILE__, __LINE__, "not JSON: %.300s", out);
    CHECK_EQ_INT((int)num(j, "added"), 3);
    CHECK_EQ_INT((int)num(j, "failed"), 0);
    CHECK_EQ_INT((int)num(j, "files"), 3);
    CHECK_EQ_INT((int)num(j, "skipped"), 4);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "skipped_dirs")), 4);
    cJSON_Delete(j);
    /* one line each, naming the link and the path walked first */
    const char *links[] = {"photos/alias/up:", "photos/alias/deeper/again:", "photos/self:", "photos/sub:"};
    for (int i = 0; i < 4; i++)
        if (count(err, links[i]) != 1) t_fail(__FILE__, __LINE__, "'%s' reported %d times:\n%.600s", links[i], count(err, links[i]), err);
    CHECK_EQ_INT(count(err, "already walked"), 4);
    free(out);
    free(err);
    /* plain output: skipped directories are not failures, --strict passes */
    code = run(&out, &err, "timeout 60 %s ingest --db %s/walkdb --strict %s", exe, tmp, root);
    CHECK_EQ_INT(code, 0);
    CHECK(strstr(out, "failed 0, 4 directories walked already (3 files") != NULL);
    free(out);
    free(err);
    free(root);
}

/* A WebM/VP9 whose header says 12 s, cut at half its bytes: reported and
 * not stored (it used to be stored as a 6 s video). */
static void test_truncated_webm(void) {
    char *full = t_path("%s/full.webm", tmp), *half = t_path("%s/half.webm", tmp);
    REQUIRE(run(NULL, NULL, "ffmpeg -hide_banner -loglevel error -nostdin -y -threads 1 -loop 1 -framerate 5 -t 12 -i %s"
                " -vf scale=160:120,format=yuv420p -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 200k %s",
                P.paths[3], full) == 0);
    size_t len = 0;
    void *b = t_read_file(full, &len);
    REQUIRE(b && len > 1000);
    REQUIRE(t_write_file(half, b, len / 2) == 0);
    free(b);
    char *out = NULL, *err = NULL;
    int code = run(&out, &err, "%s ingest --db %s/viddb --model %s --json %s", exe, tmp, model, half);
    CHECK_EQ_INT(code, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)num(j, "added"), 0);
    CHECK_EQ_INT((int)num(j, "failed"), 1);
    const cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "failures"), 0);
    const char *why = f ? cJSON_GetObjectItem(f, "reason")->valuestring : "";
    if (!strstr(why, "truncated") || !strstr(why, half)) t_fail(__FILE__, __LINE__, "reason: %s", why);
    printf("  %s\n", why);
    cJSON_Delete(j);
    free(out);
    free(err);
    /* the whole file is stored, 12 s */
    code = run(&out, &err, "%s ingest --db %s/viddb --json %s && %s get --db %s/viddb 1", exe, tmp, full, exe, tmp);
    CHECK_EQ_INT(code, 0);
    if (!strstr(out, "\"added\":1") || !strstr(out, "\"duration\":12")) t_fail(__FILE__, __LINE__, "%s%s", out, err);
    free(out);
    free(err);
    free(full);
    free(half);
}

/* A kill during the first ingest, after the database environment was
 * created and before the model was recorded (made here directly with the
 * storage layer, the state such a kill leaves): read commands and a writer
 * without --model say creation was interrupted and how to finish it;
 * finishing it works. */
static void test_interrupted_creation(void) {
    char *dir = t_path("%s/halfmade", tmp);
    st_opts so;
    st_opts_default(&so);
    so.create = 1;
    st_db *st = NULL;
    REQUIRE_OK(st_open(dir, &so, &st));
    st_close(st);
    char *err = NULL;
    CHECK_EQ_INT(run(NULL, &err, "%s stats --db %s", exe, dir), 2);
    if (!strstr(err, "interrupted") || !strstr(err, "--model")) t_fail(__FILE__, __LINE__, "stats: %s", err);
    printf("  %s", err);
    free(err);
    CHECK_EQ_INT(run(NULL, &err, "%s search --db %s --text cat", exe, dir), 2);
    CHECK(strstr(err, "interrupted") != NULL);
    free(err);
    CHECK_EQ_INT(run(NULL, &err, "env -u PERCEPT_MODEL %s ingest --db %s %s", exe, dir, P.paths[0]), 2);
    CHECK(strstr(err, "interrupted") != NULL);
    free(err);
    char *out = NULL;
    CHECK_EQ_INT(run(&out, NULL, "%s ingest --db %s --model %s --json %s", exe, dir, model, P.paths[0]), 0);
    CHECK(strstr(out, "\"added\":1") != NULL);
    free(out);
    CHECK_EQ_INT(run(NULL, NULL, "%s stats --db %s", exe, dir), 0);
    free(dir);
}

/* The malloc-THP re-exec only where a FAISS-layout index is read. */
static void test_reexec_only_for_read_indexes(void) {
    char *err = NULL;
    CHECK_EQ_INT(run(NULL, &err, "PERCEPT_REEXEC_LOG=1 %s --version", exe), 0);
    CHECK(strstr(err, "no re-exec") && !strstr(err, "re-exec with"));
    free(err);
    run(NULL, &err, "PERCEPT_REEXEC_LOG=1 %s search --server 127.0.0.1:1 --text cat", exe);
    CHECK(strstr(err, "no re-exec (--server)") && !strstr(err, "re-exec with"));
    free(err);
    /* a Flat index is used in place: no re-exec whatever its size */
    CHECK_EQ_INT(run(NULL, &err, "PERCEPT_REEXEC_LOG=1 PERCEPT_THP_MIN_BYTES=1 %s stats --db %s/walkdb", exe, tmp), 0);
    CHECK(strstr(err, "no re-exec") && !strstr(err, "re-exec with"));
    free(err);
    /* an HNSW index is read into memory: re-exec above the threshold,
     * exactly once, and the command still works */
    char *out = NULL;
    REQUIRE(run(NULL, NULL, "%s collection --db %s/walkdb create h --index HNSW32 && %s ingest --db %s/walkdb -q --collection h %s %s",
                exe, tmp, exe, tmp, P.paths[0], P.paths[1]) == 0);
    CHECK_EQ_INT(run(&out, &err, "PERCEPT_REEXEC_LOG=1 PERCEPT_THP_MIN_BYTES=1 %s search --db %s/walkdb --collection h --json -k 1 --image %s",
                     exe, tmp, P.paths[1]), 0);
    CHECK_EQ_INT(count(err, "re-exec with glibc.malloc.hugetlb=1"), 1);
    CHECK(strstr(out, P.paths[1]) != NULL);
    free(out);
    free(err);
    CHECK_EQ_INT(run(NULL, &err, "PERCEPT_REEXEC_LOG=1 %s stats --db %s/walkdb", exe, tmp), 0);
    CHECK(strstr(err, "no re-exec") && !strstr(err, "re-exec with")); /* under the default 32 MiB */
    free(err);
}

int main(void) {
    exe = getenv("PERCEPT_EXE");
    if (!exe) { fprintf(stderr, "PERCEPT_EXE not set (run through ctest)\n"); return 1; }
    model = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    char *vocab = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
    setenv("PERCEPT_VOCAB", vocab, 1);
    unsetenv("GLIBC_TUNABLES");
    unsetenv("PERCEPT_NO_REEXEC");
    if (photos_gather(&P, 4, 160) < 4) { fprintf(stderr, "need real photos (scripts/deps.sh)\n"); return 1; }
    tmp = t_tmpdir("cli-hardening");
    T_RUN(test_walk_links);
    T_RUN(test_truncated_webm);
    T_RUN(test_interrupted_creation);
    T_RUN(test_reexec_only_for_read_indexes);
    t_rmtree(tmp);
    photos_free(&P);
    free(tmp); free(model); free(vocab);
    return t_done();
}
