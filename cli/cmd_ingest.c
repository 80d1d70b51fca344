/* percept ingest: bulk ingest of files and directories into a database. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "cli/ingest_remote.h"
#include "common/perr.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: percept ingest --db DIR [--collection C] [--label L]... [--meta k=v]...\n"
    "                      [--jobs N] [--model M] [--vocab V] [--set-threshold X]\n"
    "                      [--frames N] [--segment-seconds S] [--segment-frames N]\n"
    "                      [--strict] [--json] [--quiet] PATH...\n"
    "       percept ingest --server HOST:PORT [--token-file F] ... (the files' bytes are uploaded)\n"
    "Ingests images and videos (by content; directories recursively; '-' reads\n"
    "paths from stdin). A video's vector averages --frames frames (default 8);\n"
    "its segments of --segment-seconds (default 2; 0: none) get vectors from\n"
    "--segment-frames frames each (default 2) for `search --segments`.\n"
    "Already stored bytes are skipped (\"already present\"); bad files are\n"
    "reported and skipped (exit 0; with --strict exit 2 when any file failed).\n"
    "--model is needed only to create the database.\n";

typedef struct ing_ui {
    int tty, quiet, json;
    double last_line;
    cJSON *failures, *skips;
} ing_ui;

static volatile int g_cancel;
static void on_sigint(int s) { (void)s; g_cancel = 1; }

static void on_result(void *user, const eng_file_result *r) {
    ing_ui *ui = user;
    if (r->outcome == ENG_SKIPPED) { /* a directory already walked: a note, not a failure */
        if (!ui->quiet) {
            if (ui->tty) fputs("\r\033[K", stderr);
            fprintf(stderr, "percept ingest: skipped %s\n", r->reason ? r->reason : r->path);
        }
        if (cJSON_GetArraySize(ui->skips) < 10000) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "path", r->path);
            cJSON_AddStringToObject(f, "reason", r->reason ? r->reason : "");
            cJSON_AddItemToArray(ui->skips, f);
        }
        return;
    }
    if (r->outcome != ENG_FAILED) return;
    if (!ui->quiet) {
        if (ui->tty) fputs("\r\033[K", stderr);
        /* every line names the file and the reason (most reasons already
         * start with the path; the others get it in front) */
        const char *why = r->reason && *r->reason ? r->reason : perr_str(r->code);
        if (strstr(why, r->path)) fprintf(stderr, "percept ingest: skipped %s\n", why);
        else fprintf(stderr, "percept ingest: skipped %s: %s\n", r->path, why);
    }
    if (cJSON_GetArraySize(ui->failures) < 10000) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", r->path);
        cJSON_AddStringToObject(f, "error", perr_name(r->code));
        cJSON_AddStringToObject(f, "reason", r->reason ? r->reason : "");
        cJSON_AddItemToArray(ui->failures, f);
    }
}

static void fmt_eta(double s, char *out, size_t cap) {
    if (!isfinite(s) || s < 0) { snprintf(out, cap, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

static void on_progress(void *user, const eng_progress *p) {
    ing_ui *ui = user;
    if (ui->quiet) return;
    double rate = p->elapsed_s > 0 ? p->done / p->elapsed_s : 0;
    char eta[32];
    fmt_eta(!p->walking && rate > 0 ? (p->seen - p->done) / rate : NAN, eta, sizeof eta);
    if (ui->tty) {
        int width = 30, fill = p->seen && !p->walking ? (int)(width * (double)p->done / p->seen) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[K[%s] %llu/%llu%s  %.1f files/s  ETA %s  added %llu  present %llu  failed %llu",
                bar, (unsigned long long)p->done, (unsigned long long)p->seen, p->walking ? "+" : "",
                rate, eta, (unsigned long long)p->added, (unsigned long long)p->present,
                (unsigned long long)p->failed);
        fflush(stderr);
    } else if (p->elapsed_s - ui->last_line >= 5.0) {
        ui->last_line = p->elapsed_s;
        fprintf(stderr, "percept ingest: %llu/%llu%s files, %.1f files/s, ETA %s, added %llu, present %llu, failed %llu\n",
                (unsigned long long)p->done, (unsigned long long)p->seen, p->walking ? "+" : "", rate, eta,
                (unsigned long long)p->added, (unsigned long long)p->present, (unsigned long long)p->failed);
    }
}

static int cmd_ingest(int argc, char **argv) {
    db_args a = {0};
    eng_ingest_opts o;
    eng_ingest_opts_default(&o);
    eng_video_opts vo;
    eng_video_opts_default(&vo);
    o.video = &vo;
    db_list labels = {0}, paths = {0};
    eng_kv meta[256];
    int n_meta = 0, quiet = 0, strict = 0;
    float set_thr = NAN;
    int rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(usage_text, stdout); return CLI_OK; }
        else if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) quiet = 1;
        else if (!strcmp(s, "--strict")) strict = 1;
        else if (!strcmp(s, "--collection") && has) o.collection = argv[++i];
        else if (!strcmp(s, "--label") && has) rc = db_list_push(&labels, argv[++i]);
        else if (!strcmp(s, "--meta") && has) {
            if (n_meta == 256) rc = perr_set(PERR_TOO_LARGE, "more than 256 --meta");
            else rc = db_parse_kv(argv[++i], "--meta", &meta[n_meta++]);
        }
        else if (!strcmp(s, "--jobs") && has) rc = db_parse_int(argv[++i], "--jobs", &o.jobs);
        else if (!strcmp(s, "--batch") && has) rc = db_parse_int(argv[++i], "--batch", &o.batch);
        else if (!strcmp(s, "--frames") && has) rc = db_parse_int(argv[++i], "--frames", &vo.frames);
        else if (!strcmp(s, "--segment-frames") && has) rc = db_parse_int(argv[++i], "--segment-frames", &vo.segment_frames);
        else if (!strcmp(s, "--segment-seconds") && has) {
            float f = 0;
            rc = db_parse_float(argv[++i], "--segment-seconds", &f);
            vo.segment_s = f;
        }
        else if (!strcmp(s, "--set-threshold") && has) rc = db_parse_float(argv[++i], "--set-threshold", &set_thr);
        else if (s[0] == '-' && s[1]) rc = perr_set(PERR_INVALID, "unknown option %s (or missing value)\n%s", s, usage_text);
        else rc = db_list_push(&paths, s);
    }
    if (rc == PERR_OK && paths.n == 0) rc = perr_set(PERR_INVALID, "nothing to ingest\n%s", usage_text);
    if (rc == PERR_OK && (o.jobs < 1 || o.jobs > 256)) rc = perr_set(PERR_INVALID, "--jobs %d: between 1 and 256", o.jobs);
    if (rc == PERR_OK && (o.batch < 1 || o.batch > 256)) rc = perr_set(PERR_INVALID, "--batch %d: between 1 and 256", o.batch);
    if (rc == PERR_OK && (vo.frames < 1 || vo.frames > 256)) rc = perr_set(PERR_INVALID, "--frames %d: between 1 and 256", vo.frames);
    if (rc == PERR_OK && (vo.segment_frames < 1 || vo.segment_frames > 16))
        rc = perr_set(PERR_INVALID, "--segment-frames %d: between 1 and 16", vo.segment_frames);
    if (rc == PERR_OK && !(vo.segment_s == 0 || (vo.segment_s >= 0.1 && vo.segment_s <= 86400)))
        rc = perr_set(PERR_INVALID, "--segment-seconds %g: 0 (no segments) or 0.1 to 86400", vo.segment_s);
    if (rc) { db_list_free(&labels); db_list_free(&paths); return cli_fail("ingest", rc); }

    eng_db *db = NULL;
    pc_client *pc = NULL;
    rc = a.server ? pc_connect_cli(a.server, a.token_file, &pc) : db_open(&a, 1, 0, &db);
    if (rc) { db_list_free(&labels); db_list_free(&paths); return cli_fail("ingest", rc); }
    ing_ui ui = {.tty = isatty(2), .quiet = quiet, .json = a.json, .failures = cJSON_CreateArray(),
                 .skips = cJSON_CreateArray()};
    o.labels = labels.v;
    o.n_labels = labels.n;
    o.meta = meta;
    o.n_meta = n_meta;
    o.on_result = on_result;
    o.on_progress = on_progress;
    o.user = &ui;
    o.cancel = &g_cancel;
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    eng_progress p;
    rc = pc ? ingest_remote(pc, paths.v, paths.n, &o, &p) : eng_ingest_paths(db, paths.v, paths.n, &o, &p);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    char errmsg[2048] = "";
    if (rc) snprintf(errmsg, sizeof errmsg, "%s", perr_msg());
    if (rc == PERR_OK && !isnan(set_thr)) {
        const char *set = o.collection ? o.collection : ENG_DEFAULT_COLLECTION;
        rc = pc ? pc_set_threshold(pc, set, set_thr) : eng_set_threshold(db, set, set_thr);
        if (rc) snprintf(errmsg, sizeof errmsg, "%s", perr_msg());
    }
    pc_close(pc);
    int crc = eng_close(db);
    if (crc && !rc) { rc = crc; snprintf(errmsg, sizeof errmsg, "%s", perr_msg()); }
    if (ui.tty && !quiet) fputs("\r\033[K", stderr);
    int strict_failed = rc == PERR_OK && strict && p.failed;
    if (strict_failed)
        snprintf(errmsg, sizeof errmsg, "--strict: %llu file%s failed", (unsigned long long)p.failed,
                 p.failed == 1 ? "" : "s");
    double rate = p.elapsed_s > 0 ? p.done / p.elapsed_s : 0;
    if (a.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", rc == PERR_OK && !strict_failed);
        cJSON_AddNumberToObject(j, "files", (double)(p.done - p.skipped));
        cJSON_AddNumberToObject(j, "added", (double)p.added);
        cJSON_AddNumberToObject(j, "present", (double)p.present);
        cJSON_AddNumberToObject(j, "failed", (double)p.failed);
        cJSON_AddNumberToObject(j, "elapsed_s", p.elapsed_s);
        cJSON_AddNumberToObject(j, "files_per_s", rate);
        cJSON_AddNumberToObject(j, "videos", (double)p.videos);
        cJSON_AddNumberToObject(j, "video_seconds", p.video_s);
        cJSON_AddNumberToObject(j, "frames", (double)p.frames);
        cJSON_AddItemToObject(j, "failures", ui.failures);
        cJSON_AddNumberToObject(j, "skipped", (double)p.skipped);
        cJSON_AddItemToObject(j, "skipped_dirs", ui.skips);
        if (rc || strict_failed) cJSON_AddStringToObject(j, "error", errmsg);
        db_print_json(j);
    } else {
        cJSON_Delete(ui.failures);
        cJSON_Delete(ui.skips);
        char sk[64] = "";
        if (p.skipped)
            snprintf(sk, sizeof sk, ", %llu director%s walked already", (unsigned long long)p.skipped,
                     p.skipped == 1 ? "y" : "ies");
        printf("added %llu, already present %llu, failed %llu%s (%llu files in %.1f s, %.1f files/s)\n",
               (unsigned long long)p.added, (unsigned long long)p.present, (unsigned long long)p.failed, sk,
               (unsigned long long)p.done - p.skipped, p.elapsed_s, rate);
    }
    db_list_free(&labels);
    db_list_free(&paths);
    if (rc) { fprintf(stderr, "percept ingest: %s\n", errmsg); return CLI_ERROR; }
    if (strict_failed) { fprintf(stderr, "percept ingest: %s\n", errmsg); return CLI_ERROR; }
    return CLI_OK;
}

CLI_COMMAND(ingest, "ingest", "add images and videos to a database (directories, '-' for stdin)", cmd_ingest)
