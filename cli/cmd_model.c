/* `percept model fetch|list|default`: installing PE_core checkpoints and the
 * CLIP vocabulary under $PERCEPT_HOME/models.
 *
 * Files: models/<NAME>.pt, models/<NAME>.pt.sha256 ("<sha256> <bytes>",
 * recorded at first download and checked on every later fetch),
 * models/bpe_simple_vocab_16e6.txt.gz, models/default -> <NAME>.pt (the model
 * every command uses when none is given). Sources can be redirected with
 * PERCEPT_HUB_URL and PERCEPT_VOCAB_URL (mirrors; the tests use a local
 * server). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "cli/fetch.h"
#include "common/perr.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const MODELS[] = {
    "PE-Core-T16-384", "PE-Core-S16-384", "PE-Core-B16-224",
    "PE-Core-L14-336", "PE-Core-G14-448",
};
#define N_MODELS (sizeof MODELS / sizeof MODELS[0])
#define DEFAULT_MODEL "PE-Core-T16-384"
#define VOCAB_NAME "bpe_simple_vocab_16e6.txt.gz"
/* The CLIP vocabulary is the same file everywhere; its hash is fixed. */
#define VOCAB_SHA256 "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

static const char *hub_url(void) {
    const char *e = getenv("PERCEPT_HUB_URL");
    return (e && *e) ? e : "https://huggingface.co";
}
static const char *vocab_url(void) {
    const char *e = getenv("PERCEPT_VOCAB_URL");
    return (e && *e) ? e : "https://github.com/openai/CLIP/raw/main/clip/" VOCAB_NAME;
}

static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return perr_errno(errno, "mkdir %s", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return perr_errno(errno, "mkdir %s", tmp);
    return PERR_OK;
}

static const char *canonical_name(const char *name) {
    for (size_t i = 0; i < N_MODELS; i++)
        if (!strcasecmp(name, MODELS[i])) return MODELS[i];
    return NULL;
}

/* Reads "<sha> <bytes>" from path; 1 if present, 0 if absent. */
static int read_record(const char *path, char sha[65], unsigned long long *bytes) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%64s %llu", sha, bytes) == 2;
    fclose(f);
    return ok;
}

static int write_record(const char *path, const char *sha, unsigned long long bytes) {
    FILE *f = fopen(path, "w");
    if (!f) return perr_errno(errno, "%s", path);
    fprintf(f, "%s %llu\n", sha, bytes);
    if (fclose(f) != 0) return perr_errno(errno, "%s", path);
    return PERR_OK;
}

static void offline_help(const char *url, const char *dest) {
    fprintf(stderr,
            "\nCould not download. On a machine with internet, download\n  %s\n"
            "and put it at\n  %s\n(then run this command again to verify and register it), "
            "or pass --model FILE / set PERCEPT_MODEL to any local PE-Core .pt or .safetensors.\n",
            url, dest);
}

/* Installs one file: verifies an existing copy against its record (or the
 * fixed hash), else downloads (resuming) and records or checks the hash. */
static int install(const char *url, const char *dest, const char *label, const char *fixed_sha) {
    char recpath[4200], sha[65] = "";
    unsigned long long rec_bytes = 0;
    snprintf(recpath, sizeof recpath, "%s.sha256", dest);
    int have_rec = read_record(recpath, sha, &rec_bytes);
    if (access(dest, F_OK) == 0) {
        char got[65];
        uint64_t size = 0;
        int rc = fetch_sha256_file(dest, got, &size);
        if (rc) return rc;
        const char *want = fixed_sha ? fixed_sha : (have_rec ? sha : NULL);
        if (want && strcmp(got, want) != 0)
            return perr_set(PERR_FORMAT, "%s: SHA-256 %s does not match the recorded %s "
                            "(file damaged or replaced; delete it to download again)", dest, got, want);
        if (!want) { /* placed by hand: record it now */
            rc = write_record(recpath, got, size);
            if (rc) return rc;
        }
        fprintf(stderr, "%s: present, %llu bytes, sha256 %s\n", label, (unsigned long long)size, got);
        return PERR_OK;
    }
    fprintf(stderr, "%s: downloading %s\n", label, url);
    fetch_result r;
    int rc = fetch_url(url, dest, label, &r);
    if (rc) {
        if (rc == PERR_NET || rc == PERR_IO) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", perr_msg());
            offline_help(url, dest);
            perr_set(rc, "%s", msg);
        }
        return rc;
    }
    const char *want = fixed_sha ? fixed_sha : (have_rec ? sha : NULL);
    if (want && strcmp(r.sha256, want) != 0) {
        char bad[4200];
        snprintf(bad, sizeof bad, "%s.bad", dest);
        rename(dest, bad);
        return perr_set(PERR_FORMAT, "%s: downloaded file has SHA-256 %s, expected %s (kept as %s)",
                        url, r.sha256, want, bad);
    }
    rc = write_record(recpath, r.sha256, r.bytes);
    if (rc) return rc;
    fprintf(stderr, "%s: %llu bytes, sha256 %s%s\n", label, (unsigned long long)r.bytes, r.sha256,
            r.resumed ? " (resumed)" : "");
    return PERR_OK;
}

static int set_default(const char *models_dir, const char *file) {
    char link[4200], tmp[4300];
    snprintf(link, sizeof link, "%s/default", models_dir);
    snprintf(tmp, sizeof tmp, "%s/.default.tmp", models_dir);
    unlink(tmp);
    if (symlink(file, tmp) != 0) return perr_errno(errno, "symlink %s", tmp);
    if (rename(tmp, link) != 0) return perr_errno(errno, "rename %s", link);
    return PERR_OK;
}

static int cmd_model_fetch(int argc, char **argv) {
    int make_default = -1; /* -1: only if there is none yet */
    static const struct option opts[] = {
        {"default", no_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "dh", opts, NULL)) != -1) {
        if (c == 'd') make_default = 1;
        else {
            printf("usage: percept model fetch [NAME] [--default]\n"
                   "NAME: one of PE-Core-T16-384 (default), -S16-384, -B16-224, -L14-336, -G14-448.\n"
                   "Downloads into %s/models; PERCEPT_HUB_URL / PERCEPT_VOCAB_URL select mirrors.\n",
                   cli_home());
            return c == 'h' ? CLI_OK : CLI_ERROR;
        }
    }
    const char *req = optind < argc ? argv[optind] : DEFAULT_MODEL;
    const char *name = canonical_name(req);
    if (!name) {
        perr_set(PERR_NOT_FOUND, "unknown model '%s' (known: PE-Core-T16-384, PE-Core-S16-384, "
                 "PE-Core-B16-224, PE-Core-L14-336, PE-Core-G14-448)", req);
        return cli_fail("model fetch", PERR_NOT_FOUND);
    }
    char dir[4096], dest[4200], url[4200], vdest[4200];
    snprintf(dir, sizeof dir, "%s/models", cli_home());
    int rc = mkdirs(dir);
    if (rc) return cli_fail("model fetch", rc);
    snprintf(vdest, sizeof vdest, "%s/%s", dir, VOCAB_NAME);
    rc = install(vocab_url(), vdest, "vocabulary", VOCAB_SHA256);
    if (rc) return cli_fail("model fetch", rc);
    snprintf(dest, sizeof dest, "%s/%s.pt", dir, name);
    snprintf(url, sizeof url, "%s/facebook/%s/resolve/main/%s.pt", hub_url(), name, name);
    rc = install(url, dest, name, NULL);
    if (rc) return cli_fail("model fetch", rc);
    char link[4200];
    snprintf(link, sizeof link, "%s/default", dir);
    struct stat st;
    if (make_default == 1 || lstat(link, &st) != 0) {
        char file[300];
        snprintf(file, sizeof file, "%s.pt", name);
        rc = set_default(dir, file);
        if (rc) return cli_fail("model fetch", rc);
        fprintf(stderr, "default model: %s\n", name);
    }
    printf("%s\n", dest);
    return CLI_OK;
}

static int cmd_model_list(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    char dir[4096], link[4200], target[4096] = "";
    snprintf(dir, sizeof dir, "%s/models", cli_home());
    snprintf(link, sizeof link, "%s/default", dir);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) target[n] = 0;
    const char *def = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
    DIR *d = opendir(dir);
    cJSON *jo = json ? cJSON_CreateObject() : NULL, *jm = NULL;
    if (json) {
        cJSON_AddStringToObject(jo, "home", dir);
        jm = cJSON_AddArrayToObject(jo, "models");
    } else printf("models in %s:\n", dir);
    int count = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *nm = e->d_name;
            size_t l = strlen(nm);
            int is_model = (l > 3 && !strcmp(nm + l - 3, ".pt")) ||
                           (l > 12 && !strcmp(nm + l - 12, ".safetensors"));
            if (!is_model) continue;
            char path[8400], rec[8500], sha[65] = "";
            unsigned long long bytes = 0;
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            snprintf(rec, sizeof rec, "%s.sha256", path);
            int has_rec = read_record(rec, sha, &bytes);
            struct stat st;
            if (stat(path, &st) != 0) continue;
            int is_def = !strcmp(def, nm);
            if (json) {
                cJSON *m = cJSON_CreateObject();
                cJSON_AddStringToObject(m, "file", path);
                cJSON_AddNumberToObject(m, "bytes", (double)st.st_size);
                if (has_rec) cJSON_AddStringToObject(m, "sha256", sha);
                else cJSON_AddNullToObject(m, "sha256");
                cJSON_AddBoolToObject(m, "default", is_def);
                cJSON_AddItemToArray(jm, m);
            } else
                printf("  %c %-28s %10.1f MiB  %s\n", is_def ? '*' : ' ', nm,
                       st.st_size / 1048576.0, has_rec ? "sha256 recorded" : "not verified");
            count++;
        }
        closedir(d);
    }
    if (json) db_print_json(jo);
    else if (!count) printf("  (none: run `percept model fetch`, or pass --model FILE)\n");
    else printf("(* = default, used when no --model is given)\n");
    return CLI_OK;
}

static int cmd_model_default(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: percept model default NAME|FILE\n");
        return CLI_ERROR;
    }
    char dir[4096], file[4200];
    snprintf(dir, sizeof dir, "%s/models", cli_home());
    int rc = mkdirs(dir);
    if (rc) return cli_fail("model default", rc);
    const char *name = canonical_name(argv[1]);
    if (name) snprintf(file, sizeof file, "%s.pt", name);
    else {
        char *abs = realpath(argv[1], NULL);
        if (!abs) return cli_fail("model default", perr_errno(errno, "%s", argv[1]));
        snprintf(file, sizeof file, "%s", abs);
        free(abs);
    }
    char check[8400];
    snprintf(check, sizeof check, file[0] == '/' ? "%s%s" : "%s/%s", file[0] == '/' ? "" : dir, file);
    if (access(check, R_OK) != 0)
        return cli_fail("model default", perr_errno(errno, "%s (fetch it first)", check));
    rc = set_default(dir, file);
    if (rc) return cli_fail("model default", rc);
    printf("%s\n", check);
    return CLI_OK;
}

CLI_COMMAND(model_fetch, "model fetch", "download a PE-Core checkpoint and the vocabulary", cmd_model_fetch)
CLI_COMMAND(model_list, "model list", "list installed models and the default", cmd_model_list)
CLI_COMMAND(model_default, "model default", "choose the model used when none is given", cmd_model_default)
