/* percept serve: the binary-protocol server (net/server.h, docs/protocol.md). */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/db_common.h"
#include "common/perr.h"
#include "net/proto.h"
#include "net/server.h"
#include "http/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: percept serve --db DIR [--listen HOST:PORT | --listen unix:/path]...\n"
    "                     [--token-file FILE] [--insecure] [--metrics HOST:PORT]\n"
    "                     [--workers N] [--max-frame BYTES] [--max-inflight N]\n"
    "                     [--max-conns N] [--max-queue N] [--idle-timeout MS] [--verbose]\n"
    "                     [--batch-max N] [--batch-wait-us US] [--index-threads N]\n"
    "                     [--http HOST:PORT]\n"
    "Listens on 127.0.0.1:7700 by default. Without a token only loopback addresses\n"
    "are accepted (unless --insecure). SIGTERM/SIGINT: finish in-flight requests,\n"
    "save indexes and exit 0; SIGHUP: save a snapshot. Protocol: docs/protocol.md.\n"
    "--http also answers HTTP/JSON on HOST:PORT (same loop, workers, token and\n"
    "limits; routes in docs/http.md, /openapi.json).\n";

/* The token: the file's first line, surrounding whitespace removed. */
static int read_token(const char *path, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return perr_errno(errno, "--token-file %s", path);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *s = buf;
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s + strcspn(s, "\r\n");
    while (e > s && isspace((unsigned char)e[-1])) e--;
    *e = 0;
    if (!*s) return perr_set(PERR_INVALID, "--token-file %s: empty token", path);
    *out = strdup(s);
    return *out ? PERR_OK : perr_set(PERR_NOMEM, "token");
}

static int cmd_serve(int argc, char **argv) {
    db_args a = {0};
    a.local_only = 1;  /* its --token-file is the server's own */
    a.no_json = 1;
    net_server_opts so;
    net_server_opts_default(&so);
    so.handle_signals = 1;
    db_list listen = {0};
    const char *token_file = NULL, *http_listen = NULL;
    int rc = PERR_OK;
    for (int i = 1; i < argc && rc == PERR_OK; i++) {
        int t = db_take_opt(&a, argc, argv, &i);
        if (t < 0) { rc = PERR_INVALID; break; }
        if (t) continue;
        const char *s = argv[i];
        int has = i + 1 < argc;
        uint64_t u = 0;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(usage_text, stdout); db_list_free(&listen); return CLI_OK; }
        else if (!strcmp(s, "--listen") && has) rc = db_list_push(&listen, argv[++i]);
        else if (!strcmp(s, "--token-file") && has) token_file = argv[++i];
        else if (!strcmp(s, "--http") && has) http_listen = argv[++i];
        else if (!strcmp(s, "--insecure")) so.insecure = 1;
        else if (!strcmp(s, "--verbose")) so.verbose = 1;
        else if (!strcmp(s, "--metrics") && has) so.metrics = argv[++i];
        else if (!strcmp(s, "--workers") && has) rc = db_parse_int(argv[++i], "--workers", &so.workers);
        else if (!strcmp(s, "--max-inflight") && has) rc = db_parse_int(argv[++i], "--max-inflight", &so.max_inflight);
        else if (!strcmp(s, "--max-conns") && has) rc = db_parse_int(argv[++i], "--max-conns", &so.max_conns);
        else if (!strcmp(s, "--max-queue") && has) rc = db_parse_int(argv[++i], "--max-queue", &so.max_queue);
        else if (!strcmp(s, "--batch-max") && has) rc = db_parse_int(argv[++i], "--batch-max", &so.batch_max);
        else if (!strcmp(s, "--batch-wait-us") && has) rc = db_parse_int(argv[++i], "--batch-wait-us", &so.batch_wait_us);
        else if (!strcmp(s, "--index-threads") && has) rc = db_parse_int(argv[++i], "--index-threads", &so.index_threads);
        else if (!strcmp(s, "--idle-timeout") && has) rc = db_parse_int(argv[++i], "--idle-timeout", &so.idle_timeout_ms);
        else if (!strcmp(s, "--max-frame") && has) {
            rc = db_parse_u64(argv[++i], "--max-frame", &u);
            if (!rc && (u < 1024 || u > 0xFFFFFFFFull)) rc = perr_set(PERR_INVALID, "--max-frame: between 1024 and 4294967295 bytes");
            so.max_frame = (uint32_t)u;
        } else rc = perr_set(PERR_INVALID, "unknown option %s (or missing value)\n%s", s, usage_text);
    }
    if (!rc && (so.workers < 1 || so.workers > 256)) rc = perr_set(PERR_INVALID, "--workers: between 1 and 256");
    if (!rc && (so.batch_max < 1 || so.batch_max > 1024)) rc = perr_set(PERR_INVALID, "--batch-max: between 1 (off) and 1024");
    if (!rc && (so.batch_wait_us < 0 || so.batch_wait_us > 100000)) rc = perr_set(PERR_INVALID, "--batch-wait-us: between 0 and 100000");
    if (!rc && (so.index_threads < 0 || so.index_threads > 256)) rc = perr_set(PERR_INVALID, "--index-threads: between 0 (leave as is) and 256");
    char *token = NULL;
    if (!rc && token_file) rc = read_token(token_file, &token);
    so.token = token;
    so.listen = listen.v;
    so.n_listen = listen.n;
    eng_db *db = NULL;
    if (!rc && !a.db) rc = perr_set(PERR_INVALID, "no database: pass --db DIR\n%s", usage_text);
    if (!rc) {
        eng_open_opts o;
        eng_open_opts_default(&o);
        o.model_path = a.model;
        o.precision = a.precision;
        const char *ev = getenv("PERCEPT_VOCAB");
        o.vocab_path = a.vocab ? a.vocab : (ev && *ev ? ev : NULL);
        o.map_size = a.map_size;
        o.n_encoders = so.workers;  /* one encoder context per worker thread */
        o.encoder_threads = 1;
        rc = eng_open(a.db, &o, &db);
        if (rc == PERR_NOT_FOUND && a.model) { /* a new database for this model */
            o.create = 1;
            rc = eng_open(a.db, &o, &db);
        }
    }
    net_server *srv = NULL;
    if (!rc) rc = net_server_new(db, &so, &srv);
    http_server *hs = NULL;
    if (!rc && http_listen) rc = http_server_new(srv, db, http_listen, &hs);
    if (!rc) {
        fprintf(stderr, "percept serve: %s: listening on", a.db);
        for (int i = 0; i < (listen.n ? listen.n : 1); i++)
            fprintf(stderr, " %s", listen.n ? listen.v[i] : "127.0.0.1:7700");
        if (so.metrics) fprintf(stderr, " (metrics on http://%s/metrics)", so.metrics);
        if (hs) fprintf(stderr, " (HTTP on %s)", http_listen);
        fprintf(stderr, "%s\n", token ? ", token required" : "");
        for (int i = 0; i < (listen.n ? listen.n : 1); i++) {
            int port = net_server_port(srv, i);
            if (port) fprintf(stderr, "percept serve: port %d\n", port);
        }
        if (hs) fprintf(stderr, "percept serve: http port %d\n", http_server_port(hs));
        rc = net_server_run(srv);
    }
    http_server_free(hs);
    net_server_free(srv);
    int crc = eng_close(db); /* saves the indexes */
    if (!rc && crc) rc = crc;
    free(token);
    db_list_free(&listen);
    if (rc) return cli_fail("serve", rc);
    fprintf(stderr, "percept serve: stopped; indexes saved\n");
    return CLI_OK;
}

CLI_COMMAND(serve, "serve", "serve a database over the binary protocol (docs/protocol.md)", cmd_serve)
