/* pc: synchronous client (client.h) over blocking sockets.
 *
 * DESIGN: every response is read with the same bounded frame parser as the
 * server uses (net_frame_parse, NET_CLIENT_MAX_RESPONSE) and decoded with the
 * bounded MessagePack reader; results are rebuilt in the engine's own types
 * so that eng_results_free / eng_item_free free them.
 */
#define _GNU_SOURCE
#include "net/client.h"
#include "net/mp.h"
#include "net/ops.h"
#include "common/perr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define NET_CLIENT_MAX_RESPONSE ((uint32_t)1 << 30)

struct pc_client {
    int fd;
    uint64_t next_id;
    int dim;
    char model[64];
    int timeout_s;
};

/* ---- socket I/O ---------------------------------------------------------- */

static int write_all(pc_client *c, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return perr_set(PERR_NET, "send: %s", strerror(errno));
        }
        b += w;
        n -= (size_t)w;
    }
    return PERR_OK;
}

static int read_all(pc_client *c, void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        if (c->timeout_s > 0) {
            struct pollfd pf = {c->fd, POLLIN, 0};
            int r = poll(&pf, 1, c->timeout_s * 1000);
            if (r == 0) return perr_set(PERR_TIMEOUT, "no response within %d s", c->timeout_s);
            if (r < 0 && errno != EINTR) return perr_set(PERR_NET, "poll: %s", strerror(errno));
            if (r < 0) continue;
        }
        ssize_t r = recv(c->fd, b, n, 0);
        if (r == 0) return perr_set(PERR_NET, "connection closed by the server");
        if (r < 0) {
            if (errno == EINTR) continue;
            return perr_set(PERR_NET, "recv: %s", strerror(errno));
        }
        b += r;
        n -= (size_t)r;
    }
    return PERR_OK;
}

int pc_send(pc_client *c, int op, const void *payload, size_t len, uint64_t *id) {
    if (len > UINT32_MAX) return perr_set(PERR_TOO_LARGE, "request payload of %zu bytes", len);
    net_header h = {NET_MAGIC, NET_VERSION, (uint8_t)op, 0, ++c->next_id, (uint32_t)len};
    uint8_t hdr[NET_HEADER_SIZE];
    net_header_encode(&h, hdr);
    if (id) *id = h.id;
    int rc = write_all(c, hdr, sizeof hdr);
    if (!rc && len) rc = write_all(c, payload, len);
    return rc;
}

int pc_recv(pc_client *c, net_header *h, uint8_t **payload) {
    *payload = NULL;
    uint8_t hdr[NET_HEADER_SIZE];
    int rc = read_all(c, hdr, sizeof hdr);
    if (rc) return rc;
    long n = net_frame_parse(hdr, sizeof hdr, NET_CLIENT_MAX_RESPONSE, h, NULL);
    if (n < 0) return perr_prefix(PERR_PROTOCOL, "response");
    if (!(h->flags & NET_F_RESPONSE)) return perr_set(PERR_PROTOCOL, "frame from the server is not a response");
    uint8_t *p = malloc(h->length ? h->length : 1);
    if (!p) return perr_set(PERR_NOMEM, "response of %u bytes", h->length);
    rc = read_all(c, p, h->length);
    if (rc) { free(p); return rc; }
    *payload = p;
    return PERR_OK;
}

/* An error response payload -> its code and message. */
static int error_from(const uint8_t *p, size_t len) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    int code = PERR_PROTOCOL;
    char msg[1024] = "malformed error response";
    if (net_mp_unpack(p, len, &u, &o) == PERR_OK) {
        const msgpack_object *cd = net_mp_get(o, "code"), *m = net_mp_get(o, "message");
        if (cd && cd->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && cd->via.i64 >= PERR_INTERNAL) code = (int)cd->via.i64;
        else if (cd) code = PERR_INTERNAL;
        if (m && m->type == MSGPACK_OBJECT_STR)
            snprintf(msg, sizeof msg, "%.*s", (int)m->via.str.size, m->via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    return perr_set(code, "%s", msg);
}

int pc_call(pc_client *c, int op, const void *payload, size_t len, uint8_t **resp, size_t *resp_len) {
    if (resp) *resp = NULL;
    uint64_t id;
    int rc = pc_send(c, op, payload, len, &id);
    if (rc) return rc;
    net_header h;
    uint8_t *p = NULL;
    rc = pc_recv(c, &h, &p);
    if (rc) return rc;
    if (h.id != id && h.id != 0) { free(p); return perr_set(PERR_PROTOCOL, "response id %llu, expected %llu", (unsigned long long)h.id, (unsigned long long)id); }
    if (h.flags & NET_F_ERROR) { rc = error_from(p, h.length); free(p); return rc; }
    if (h.id == 0) { free(p); return perr_set(PERR_PROTOCOL, "response without a request id"); }
    if (resp) { *resp = p; *resp_len = h.length; } else free(p);
    return PERR_OK;
}

/* Packs a request with fn, calls, unpacks the response map for parse. */
typedef struct req { msgpack_sbuffer sb; msgpack_packer pk; } req;
static void req_init(req *r) {
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

typedef int (*parse_fn)(const msgpack_object *o, void *user);

static int req_call(pc_client *c, int op, req *r, parse_fn parse, void *user) {
    uint8_t *p = NULL;
    size_t len = 0;
    int rc = pc_call(c, op, r->sb.data, r->sb.size, &p, &len);
    msgpack_sbuffer_destroy(&r->sb);
    if (rc) return rc;
    if (parse) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        const msgpack_object *o = NULL;
        rc = net_mp_unpack(p, len, &u, &o);
        if (rc) rc = perr_prefix(PERR_PROTOCOL, "%s response", net_op_name(op));
        else if (o->type != MSGPACK_OBJECT_MAP) rc = perr_set(PERR_PROTOCOL, "%s response is not a map", net_op_name(op));
        else rc = parse(o, user);
        msgpack_unpacked_destroy(&u);
    }
    free(p);
    return rc;
}

/* ---- connect ------------------------------------------------------------- */

static int parse_hello(const msgpack_object *o, void *user) {
    pc_client *c = user;
    net_arena a = {0};
    const char *model = NULL;
    int rc = net_mp_int(o, "dim", &c->dim);
    if (!rc) rc = net_mp_str(o, "model", &a, &model);
    if (!rc && model) snprintf(c->model, sizeof c->model, "%s", model);
    net_arena_free(&a);
    return rc;
}

int pc_connect(const char *addr, const char *token, pc_client **out) {
    *out = NULL;
    int fd = -1;
    if (!strncmp(addr, "unix:", 5)) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof sa.sun_path) return perr_set(PERR_INVALID, "%s: socket path too long", addr);
        strcpy(sa.sun_path, addr + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            return perr_set(PERR_NET, "connect %s: %s", addr, strerror(e));
        }
    } else {
        char host[256];
        const char *colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= sizeof host) return perr_set(PERR_INVALID, "server address \"%s\": expected HOST:PORT or unix:/path", addr);
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port <= 0 || port > 65535) return perr_set(PERR_INVALID, "server address \"%s\": bad port", addr);
        struct sockaddr_storage ss;
        socklen_t sl;
        memset(&ss, 0, sizeof ss);
        char *h = host;
        if (h[0] == '[') { h++; h[strlen(h) - 1] = 0; }
        if (!strcmp(h, "localhost")) h = "127.0.0.1";
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) { s4->sin_family = AF_INET; s4->sin_port = htons((uint16_t)port); sl = sizeof *s4; }
        else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) { s6->sin6_family = AF_INET6; s6->sin6_port = htons((uint16_t)port); sl = sizeof *s6; }
        else return perr_set(PERR_INVALID, "server address \"%s\": \"%s\" is not a numeric address", addr, h);
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            return perr_set(PERR_NET, "connect %s: %s", addr, strerror(e));
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    pc_client *c = calloc(1, sizeof *c);
    if (!c) { close(fd); return perr_set(PERR_NOMEM, "client"); }
    c->fd = fd;
    req r;
    req_init(&r);
    msgpack_pack_map(&r.pk, token ? 2 : 1);
    net_mp_pack_key(&r.pk, "versions");
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_int(&r.pk, NET_VERSION);
    if (token) { net_mp_pack_key(&r.pk, "token"); net_mp_pack_cstr(&r.pk, token); }
    int rc = req_call(c, NET_OP_HELLO, &r, parse_hello, c);
    if (rc) { pc_close(c); return perr_prefix(rc, "%s", addr); }
    *out = c;
    return PERR_OK;
}

void pc_close(pc_client *c) {
    if (!c) return;
    close(c->fd);
    free(c);
}

int pc_read_file(const char *path, size_t max, void **data, size_t *len) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return perr_errno(errno, "%s", path);
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = PERR_OK;
    for (;;) {
        if (n == cap) {
            if (cap >= max) { rc = perr_set(PERR_TOO_LARGE, "%s: larger than %zu bytes", path, max); break; }
            cap = cap ? cap * 2 : 65536;
            if (cap > max) cap = max;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) { rc = perr_set(PERR_NOMEM, "%s", path); break; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) rc = perr_errno(errno, "%s", path);
            break;
        }
    }
    fclose(f);
    if (rc) { free(buf); return rc; }
    *data = buf;
    *len = n;
    return PERR_OK;
}

int pc_connect_cli(const char *addr, const char *token_file, pc_client **out) {
    *out = NULL;
    char tok[4096] = "";
    if (token_file) {
        FILE *f = fopen(token_file, "rb");
        if (!f) return perr_errno(errno, "--token-file %s", token_file);
        size_t n = fread(tok, 1, sizeof tok - 1, f);
        fclose(f);
        tok[n] = 0;
        tok[strcspn(tok, "\r\n")] = 0;
    } else {
        const char *e = getenv("PERCEPT_TOKEN");
        if (e) snprintf(tok, sizeof tok, "%s", e);
    }
    char *s = tok;
    while (*s == ' ' || *s == '\t') s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t')) s[--l] = 0;
    return pc_connect(addr, *s ? s : NULL, out);
}

int pc_dim(pc_client *c) { return c->dim; }
const char *pc_model(pc_client *c) { return c->model; }
void pc_set_timeout(pc_client *c, int seconds) { c->timeout_s = seconds; }

int pc_ping(pc_client *c) { return pc_call(c, NET_OP_PING, NULL, 0, NULL, NULL); }

/* ---- decoding engine types --------------------------------------------- */

static char *dup_str(const msgpack_object *o) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return strdup("");
    return strndup(o->via.str.ptr, o->via.str.size);
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o) {
    if (o && o->type == MSGPACK_OBJECT_STR) snprintf(dst, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    else dst[0] = 0;
}

static double num(const msgpack_object *o, double def) {
    if (!o) return def;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return o->via.f64;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (double)o->via.i64;
    case MSGPACK_OBJECT_BOOLEAN: return o->via.boolean;
    default: return def;
    }
}

static int str_array(const msgpack_object *o, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0) return PERR_OK;
    char **v = calloc(o->via.array.size, sizeof *v);
    if (!v) return perr_set(PERR_NOMEM, "labels");
    for (uint32_t i = 0; i < o->via.array.size; i++) v[i] = dup_str(&o->via.array.ptr[i]);
    *out = v;
    *n = (int)o->via.array.size;
    return PERR_OK;
}

static int parse_hits(const msgpack_object *arr, eng_results **out) {
    *out = NULL;
    if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) return perr_set(PERR_PROTOCOL, "response without \"hits\"");
    eng_results *r = calloc(1, sizeof *r);
    if (!r || !(r->hits = calloc(arr->via.array.size + 1, sizeof *r->hits))) { free(r); return perr_set(PERR_NOMEM, "results"); }
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *o = &arr->via.array.ptr[i];
        eng_hit *h = &r->hits[r->n++];
        h->id = (uint64_t)num(net_mp_get(o, "id"), 0);
        const msgpack_object *ido = net_mp_get(o, "id");
        if (ido && ido->type == MSGPACK_OBJECT_POSITIVE_INTEGER) h->id = ido->via.u64;
        h->score = (float)num(net_mp_get(o, "score"), 0);
        copy_str(h->collection, sizeof h->collection, net_mp_get(o, "collection"));
        h->uri = dup_str(net_mp_get(o, "uri"));
        copy_str(h->media, sizeof h->media, net_mp_get(o, "media"));
        str_array(net_mp_get(o, "labels"), &h->labels, &h->n_labels);
        h->start_s = num(net_mp_get(o, "start_s"), -1);
        h->end_s = num(net_mp_get(o, "end_s"), -1);
        h->width = (int)num(net_mp_get(o, "width"), 0);
        h->height = (int)num(net_mp_get(o, "height"), 0);
        h->duration_s = num(net_mp_get(o, "duration_s"), 0);
        h->fps = num(net_mp_get(o, "fps"), 0);
        copy_str(h->codec, sizeof h->codec, net_mp_get(o, "codec"));
    }
    *out = r;
    return PERR_OK;
}

static int parse_search(const msgpack_object *o, void *user) {
    return parse_hits(net_mp_get(o, "hits"), user);
}

static void pack_strs(msgpack_packer *pk, const char *key, const char *const *v, int n) {
    net_mp_pack_key(pk, key);
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) net_mp_pack_cstr(pk, v[i]);
}

/* Query fields + one mode field packed by the caller (extra = its count). */
static void pack_query(msgpack_packer *pk, const eng_query *q, int extra) {
    eng_query d;
    if (!q) { eng_query_default(&d); q = &d; }
    int n = extra + 2 + (q->has_min_score ? 1 : 0) + (q->n_collections > 0) + (q->n_labels > 0) + (q->n_where > 0) +
            (q->segments != 0);
    msgpack_pack_map(pk, (size_t)n);
    net_mp_pack_key(pk, "k"); msgpack_pack_int(pk, q->k);
    net_mp_pack_key(pk, "include_self"); msgpack_pack_int(pk, q->include_self ? 1 : 0);
    if (q->segments) { net_mp_pack_key(pk, "segments"); msgpack_pack_true(pk); } /* absent: old servers still answer */
    if (q->has_min_score) { net_mp_pack_key(pk, "min_score"); msgpack_pack_float(pk, q->min_score); }
    if (q->n_collections > 0) pack_strs(pk, "collections", q->collections, q->n_collections);
    if (q->n_labels > 0) pack_strs(pk, "labels", q->labels, q->n_labels);
    if (q->n_where > 0) {
        net_mp_pack_key(pk, "where");
        msgpack_pack_map(pk, (size_t)q->n_where);
        for (int i = 0; i < q->n_where; i++) { net_mp_pack_cstr(pk, q->where[i].key); net_mp_pack_cstr(pk, q->where[i].value); }
    }
}

int pc_search_text(pc_client *c, const char *text, const eng_query *q, eng_results **out) {
    req r; req_init(&r);
    pack_query(&r.pk, q, 1);
    net_mp_pack_key(&r.pk, "text"); net_mp_pack_cstr(&r.pk, text);
    return req_call(c, NET_OP_SEARCH, &r, parse_search, out);
}

int pc_search_vector(pc_client *c, const float *v, int dim, const eng_query *q, eng_results **out) {
    req r; req_init(&r);
    pack_query(&r.pk, q, 1);
    net_mp_pack_key(&r.pk, "vector"); net_mp_pack_bin(&r.pk, v, sizeof(float) * (size_t)dim);
    return req_call(c, NET_OP_SEARCH, &r, parse_search, out);
}

int pc_search_image(pc_client *c, const void *data, size_t len, const eng_query *q, eng_results **out) {
    req r; req_init(&r);
    pack_query(&r.pk, q, 1);
    net_mp_pack_key(&r.pk, "image"); net_mp_pack_bin(&r.pk, data, len);
    return req_call(c, NET_OP_SEARCH, &r, parse_search, out);
}

int pc_search_id(pc_client *c, uint64_t id, const eng_query *q, eng_results **out) {
    req r; req_init(&r);
    pack_query(&r.pk, q, 1);
    net_mp_pack_key(&r.pk, "id"); msgpack_pack_uint64(&r.pk, id);
    return req_call(c, NET_OP_SEARCH, &r, parse_search, out);
}

typedef struct ingest_out { uint64_t *id; eng_outcome *outcome; } ingest_out;

static int parse_ingest(const msgpack_object *o, void *user) {
    ingest_out *io = user;
    const msgpack_object *id = net_mp_get(o, "id"), *oc = net_mp_get(o, "outcome");
    if (!id || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return perr_set(PERR_PROTOCOL, "INGEST response without \"id\"");
    if (io->id) *io->id = id->via.u64;
    if (io->outcome)
        *io->outcome = (oc && oc->type == MSGPACK_OBJECT_STR && oc->via.str.size == 7 &&
                        !memcmp(oc->via.str.ptr, "present", 7)) ? ENG_PRESENT : ENG_ADDED;
    return PERR_OK;
}

static int ingest(pc_client *c, const char *key, const void *data, size_t len, const char *path,
                  const pc_ingest_opts *o, uint64_t *id, eng_outcome *outcome) {
    pc_ingest_opts d = {0};
    if (!o) o = &d;
    req r; req_init(&r);
    int n = 1 + !!o->collection + !!o->uri + (o->n_labels > 0) + (o->n_meta > 0) + (o->video ? 3 : 0);
    msgpack_pack_map(&r.pk, (size_t)n);
    net_mp_pack_key(&r.pk, key);
    if (path) net_mp_pack_cstr(&r.pk, path); else net_mp_pack_bin(&r.pk, data, len);
    if (o->collection) { net_mp_pack_key(&r.pk, "collection"); net_mp_pack_cstr(&r.pk, o->collection); }
    if (o->uri) { net_mp_pack_key(&r.pk, "uri"); net_mp_pack_cstr(&r.pk, o->uri); }
    if (o->n_labels > 0) pack_strs(&r.pk, "labels", o->labels, o->n_labels);
    if (o->n_meta > 0) {
        net_mp_pack_key(&r.pk, "meta");
        msgpack_pack_map(&r.pk, (size_t)o->n_meta);
        for (int i = 0; i < o->n_meta; i++) { net_mp_pack_cstr(&r.pk, o->meta[i].key); net_mp_pack_cstr(&r.pk, o->meta[i].value); }
    }
    if (o->video) {
        net_mp_pack_key(&r.pk, "frames"); msgpack_pack_int(&r.pk, o->video->frames);
        net_mp_pack_key(&r.pk, "segment_seconds"); msgpack_pack_double(&r.pk, o->video->segment_s);
        net_mp_pack_key(&r.pk, "segment_frames"); msgpack_pack_int(&r.pk, o->video->segment_frames);
    }
    ingest_out io = {id, outcome};
    return req_call(c, NET_OP_INGEST, &r, parse_ingest, &io);
}

int pc_ingest_bytes(pc_client *c, const void *data, size_t len, const pc_ingest_opts *o,
                    uint64_t *id, eng_outcome *outcome) {
    return ingest(c, "data", data, len, NULL, o, id, outcome);
}

int pc_ingest_path(pc_client *c, const char *path, const pc_ingest_opts *o, uint64_t *id,
                   eng_outcome *outcome) {
    return ingest(c, "path", NULL, 0, path, o, id, outcome);
}

static int parse_item(const msgpack_object *o, void *user) {
    eng_item **out = user;
    eng_item *it = calloc(1, sizeof *it);
    if (!it) return perr_set(PERR_NOMEM, "item");
    const msgpack_object *ido = net_mp_get(o, "id");
    if (ido && ido->type == MSGPACK_OBJECT_POSITIVE_INTEGER) it->id = ido->via.u64;
    copy_str(it->collection, sizeof it->collection, net_mp_get(o, "collection"));
    it->uri = dup_str(net_mp_get(o, "uri"));
    copy_str(it->media, sizeof it->media, net_mp_get(o, "media"));
    const msgpack_object *sha = net_mp_get(o, "sha256");
    if (sha && sha->type == MSGPACK_OBJECT_BIN && sha->via.bin.size == 32) memcpy(it->sha256, sha->via.bin.ptr, 32);
    it->size = (uint64_t)num(net_mp_get(o, "size"), 0);
    it->width = (int)num(net_mp_get(o, "width"), 0);
    it->height = (int)num(net_mp_get(o, "height"), 0);
    it->created_ms = (int64_t)num(net_mp_get(o, "created_ms"), 0);
    it->duration_s = num(net_mp_get(o, "duration_s"), 0);
    it->fps = num(net_mp_get(o, "fps"), 0);
    copy_str(it->codec, sizeof it->codec, net_mp_get(o, "codec"));
    it->n_segments = (uint32_t)num(net_mp_get(o, "n_segments"), 0);
    str_array(net_mp_get(o, "labels"), &it->labels, &it->n_labels);
    const msgpack_object *m = net_mp_get(o, "meta");
    if (m && m->type == MSGPACK_OBJECT_MAP && m->via.map.size) {
        it->meta = calloc(m->via.map.size, sizeof *it->meta);
        if (it->meta)
            for (uint32_t i = 0; i < m->via.map.size; i++, it->n_meta++) {
                it->meta[i].key = dup_str(&m->via.map.ptr[i].key);
                it->meta[i].value = dup_str(&m->via.map.ptr[i].val);
            }
    }
    const msgpack_object *v = net_mp_get(o, "vector");
    if (v && v->type == MSGPACK_OBJECT_BIN && v->via.bin.size % 4 == 0 && v->via.bin.size) {
        it->vector = malloc(v->via.bin.size);
        if (it->vector) { memcpy(it->vector, v->via.bin.ptr, v->via.bin.size); it->dim = (int)(v->via.bin.size / 4); }
    }
    *out = it;
    return PERR_OK;
}

int pc_get(pc_client *c, uint64_t id, int with_vector, eng_item **out) {
    *out = NULL;
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 2);
    net_mp_pack_key(&r.pk, "id"); msgpack_pack_uint64(&r.pk, id);
    net_mp_pack_key(&r.pk, "vector"); msgpack_pack_int(&r.pk, with_vector ? 1 : 0);
    return req_call(c, NET_OP_GET, &r, parse_item, out);
}

static int parse_thumb(const msgpack_object *o, void *user) {
    eng_thumb *t = user;
    const msgpack_object *m = net_mp_get(o, "thumbnail");
    if (!m || m->type == MSGPACK_OBJECT_NIL)
        return perr_set(PERR_NOT_FOUND, "item %llu: no thumbnail on the server",
                        (unsigned long long)num(net_mp_get(o, "id"), 0));
    const msgpack_object *d = m->type == MSGPACK_OBJECT_MAP ? net_mp_get(m, "data") : NULL;
    if (!d || d->type != MSGPACK_OBJECT_BIN || !d->via.bin.size)
        return perr_set(PERR_PROTOCOL, "GET response: \"thumbnail\" is not a map with \"data\" bytes");
    if (!(t->data = malloc(d->via.bin.size))) return perr_set(PERR_NOMEM, "thumbnail");
    memcpy(t->data, d->via.bin.ptr, d->via.bin.size);
    t->len = d->via.bin.size;
    t->width = (int)num(net_mp_get(m, "width"), 0);
    t->height = (int)num(net_mp_get(m, "height"), 0);
    t->stored = (int)num(net_mp_get(m, "stored"), 0);
    copy_str(t->mime, sizeof t->mime, net_mp_get(m, "mime"));
    return PERR_OK;
}

int pc_get_thumbnail(pc_client *c, uint64_t id, int segment, eng_thumb *out) {
    memset(out, 0, sizeof *out);
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 3);
    net_mp_pack_key(&r.pk, "id"); msgpack_pack_uint64(&r.pk, id);
    net_mp_pack_key(&r.pk, "thumbnail"); msgpack_pack_true(&r.pk);
    net_mp_pack_key(&r.pk, "segment"); msgpack_pack_int(&r.pk, segment < 0 ? -1 : segment);
    int rc = req_call(c, NET_OP_GET, &r, parse_thumb, out);
    if (rc) eng_thumb_clear(out);
    return rc;
}

static int parse_removed(const msgpack_object *o, void *user) {
    int *n = user;
    if (n) *n = (int)num(net_mp_get(o, "removed"), 0);
    return PERR_OK;
}

static void pack_ids(msgpack_packer *pk, const uint64_t *ids, int n) {
    net_mp_pack_key(pk, "ids");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_uint64(pk, ids[i]);
}

int pc_delete(pc_client *c, const uint64_t *ids, int n, int *n_removed) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 1);
    pack_ids(&r.pk, ids, n);
    return req_call(c, NET_OP_DELETE, &r, parse_removed, n_removed);
}

int pc_label(pc_client *c, const char *label, const uint64_t *ids, int n, int remove) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 3);
    net_mp_pack_key(&r.pk, "label"); net_mp_pack_cstr(&r.pk, label);
    pack_ids(&r.pk, ids, n);
    net_mp_pack_key(&r.pk, "remove"); msgpack_pack_int(&r.pk, remove ? 1 : 0);
    return req_call(c, NET_OP_LABEL, &r, NULL, NULL);
}

typedef struct vec_out { float *v; int dim; } vec_out;

static int parse_vector(const msgpack_object *o, void *user) {
    vec_out *vo = user;
    const msgpack_object *v = net_mp_get(o, "vector");
    if (!v || v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != sizeof(float) * (size_t)vo->dim)
        return perr_set(PERR_PROTOCOL, "EMBED response: vector is not %d float32", vo->dim);
    memcpy(vo->v, v->via.bin.ptr, v->via.bin.size);
    return PERR_OK;
}

int pc_embed_text(pc_client *c, const char *text, float *out) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 1);
    net_mp_pack_key(&r.pk, "text"); net_mp_pack_cstr(&r.pk, text);
    vec_out vo = {out, c->dim};
    return req_call(c, NET_OP_EMBED, &r, parse_vector, &vo);
}

int pc_embed_image(pc_client *c, const void *data, size_t len, float *out) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 1);
    net_mp_pack_key(&r.pk, "image"); net_mp_pack_bin(&r.pk, data, len);
    vec_out vo = {out, c->dim};
    return req_call(c, NET_OP_EMBED, &r, parse_vector, &vo);
}

typedef struct probs_out { float *p; int n; } probs_out;

static int parse_probs(const msgpack_object *o, void *user) {
    probs_out *po = user;
    const msgpack_object *p = net_mp_get(o, "probs");
    if (!p || p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != (uint32_t)po->n)
        return perr_set(PERR_PROTOCOL, "CLASSIFY response: expected %d probabilities", po->n);
    for (int i = 0; i < po->n; i++) po->p[i] = (float)num(&p->via.array.ptr[i], NAN);
    return PERR_OK;
}

int pc_classify(pc_client *c, const void *data, size_t len, const char *const *labels, int n,
                const char *prompt, float *probs) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, prompt ? 3 : 2);
    net_mp_pack_key(&r.pk, "image"); net_mp_pack_bin(&r.pk, data, len);
    pack_strs(&r.pk, "labels", labels, n);
    if (prompt) { net_mp_pack_key(&r.pk, "prompt"); net_mp_pack_cstr(&r.pk, prompt); }
    probs_out po = {probs, n};
    return req_call(c, NET_OP_CLASSIFY, &r, parse_probs, &po);
}

static int parse_moderate(const msgpack_object *o, void *user) {
    eng_mod_result **out = user;
    eng_mod_result *m = calloc(1, sizeof *m);
    if (!m) return perr_set(PERR_NOMEM, "moderation result");
    m->matched = num(net_mp_get(o, "matched"), 0) != 0;
    const msgpack_object *sets = net_mp_get(o, "sets");
    int rc = PERR_OK;
    if (sets && sets->type == MSGPACK_OBJECT_ARRAY && sets->via.array.size) {
        uint32_t n = sets->via.array.size;
        m->thresholds = calloc(n, sizeof *m->thresholds);
        m->set_matched = calloc(n, sizeof *m->set_matched);
        if (!m->thresholds || !m->set_matched) rc = perr_set(PERR_NOMEM, "moderation result");
        for (uint32_t i = 0; !rc && i < n; i++) {
            m->thresholds[i] = (float)num(net_mp_get(&sets->via.array.ptr[i], "threshold"), NAN);
            m->set_matched[i] = num(net_mp_get(&sets->via.array.ptr[i], "matched"), 0) != 0;
        }
        m->n_sets = (int)n;
    }
    if (!rc) rc = parse_hits(net_mp_get(o, "nearest"), &m->nearest);
    if (rc) { eng_mod_result_free(m); return rc; }
    *out = m;
    return PERR_OK;
}

int pc_moderate_image(pc_client *c, const void *data, size_t len, const char *const *sets, int n_sets,
                      float threshold, int k, eng_mod_result **out) {
    *out = NULL;
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 3 + !isnan(threshold));
    net_mp_pack_key(&r.pk, "image"); net_mp_pack_bin(&r.pk, data, len);
    pack_strs(&r.pk, "sets", sets, n_sets);
    net_mp_pack_key(&r.pk, "k"); msgpack_pack_int(&r.pk, k);
    if (!isnan(threshold)) { net_mp_pack_key(&r.pk, "threshold"); msgpack_pack_float(&r.pk, threshold); }
    return req_call(c, NET_OP_MODERATE, &r, parse_moderate, out);
}

typedef struct coll_out { eng_collection_info **v; int *n; } coll_out;

static int parse_collections(const msgpack_object *o, void *user) {
    coll_out *co = user;
    if (!co->v) return PERR_OK;
    const msgpack_object *a = net_mp_get(o, "collections");
    if (!a || a->type != MSGPACK_OBJECT_ARRAY) return perr_set(PERR_PROTOCOL, "COLLECTIONS response without \"collections\"");
    eng_collection_info *v = calloc(a->via.array.size + 1, sizeof *v);
    if (!v) return perr_set(PERR_NOMEM, "collections");
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *e = &a->via.array.ptr[i];
        copy_str(v[i].name, sizeof v[i].name, net_mp_get(e, "name"));
        copy_str(v[i].factory, sizeof v[i].factory, net_mp_get(e, "factory"));
        v[i].n_items = (uint64_t)num(net_mp_get(e, "n_items"), 0);
        v[i].n_index = (uint64_t)num(net_mp_get(e, "n_index"), 0);
        v[i].seq = (uint64_t)num(net_mp_get(e, "seq"), 0);
        v[i].index_seq = (uint64_t)num(net_mp_get(e, "index_seq"), 0);
        v[i].threshold = (float)num(net_mp_get(e, "threshold"), NAN);
        v[i].trained = num(net_mp_get(e, "trained"), 0) != 0;
    }
    *co->v = v;
    *co->n = (int)a->via.array.size;
    return PERR_OK;
}

static int collections(pc_client *c, const char *action, const char *name, const char *factory,
                       eng_collection_info **out, int *n) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 1 + !!name + !!factory);
    net_mp_pack_key(&r.pk, "action"); net_mp_pack_cstr(&r.pk, action);
    if (name) { net_mp_pack_key(&r.pk, "name"); net_mp_pack_cstr(&r.pk, name); }
    if (factory) { net_mp_pack_key(&r.pk, "factory"); net_mp_pack_cstr(&r.pk, factory); }
    coll_out co = {out, n};
    return req_call(c, NET_OP_COLLECTIONS, &r, parse_collections, &co);
}

int pc_collection_list(pc_client *c, eng_collection_info **out, int *n) {
    *out = NULL;
    *n = 0;
    return collections(c, "list", NULL, NULL, out, n);
}
int pc_collection_create(pc_client *c, const char *name, const char *factory) {
    return collections(c, "create", name, factory, NULL, NULL);
}
int pc_collection_drop(pc_client *c, const char *name) {
    return collections(c, "drop", name, NULL, NULL, NULL);
}
int pc_set_threshold(pc_client *c, const char *set, float threshold) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 3);
    net_mp_pack_key(&r.pk, "action"); net_mp_pack_cstr(&r.pk, "threshold");
    net_mp_pack_key(&r.pk, "name"); net_mp_pack_cstr(&r.pk, set);
    net_mp_pack_key(&r.pk, "threshold"); msgpack_pack_float(&r.pk, threshold);
    coll_out co = {NULL, NULL};
    return req_call(c, NET_OP_COLLECTIONS, &r, parse_collections, &co);
}

typedef struct stats_out { eng_stats *st; eng_info *info; } stats_out;

static int parse_stats(const msgpack_object *o, void *user) {
    stats_out *so = user;
    const msgpack_object *db = net_mp_get(o, "db"), *m = net_mp_get(o, "model");
    if (!db || !m) return perr_set(PERR_PROTOCOL, "STATS response without \"db\" / \"model\"");
    if (so->st) {
        memset(so->st, 0, sizeof *so->st);
        so->st->n_items = (uint64_t)num(net_mp_get(db, "n_items"), 0);
        so->st->n_collections = (int)num(net_mp_get(db, "n_collections"), 0);
        so->st->lmdb_bytes = (uint64_t)num(net_mp_get(db, "lmdb_bytes"), 0);
        so->st->index_bytes = (uint64_t)num(net_mp_get(db, "index_bytes"), 0);
        so->st->map_size = (uint64_t)num(net_mp_get(db, "map_size"), 0);
    }
    if (so->info) {
        memset(so->info, 0, sizeof *so->info);
        copy_str(so->info->model_name, sizeof so->info->model_name, net_mp_get(m, "name"));
        copy_str(so->info->model_path, sizeof so->info->model_path, net_mp_get(m, "path"));
        copy_str(so->info->precision, sizeof so->info->precision, net_mp_get(m, "precision"));
        copy_str(so->info->encoder_isa, sizeof so->info->encoder_isa, net_mp_get(m, "encoder_isa"));
        const msgpack_object *fp = net_mp_get(m, "fingerprint");
        if (fp && fp->type == MSGPACK_OBJECT_POSITIVE_INTEGER) so->info->model_fingerprint = fp->via.u64;
        so->info->dim = (int)num(net_mp_get(m, "dim"), 0);
        so->info->layout_version = (uint32_t)num(net_mp_get(m, "layout_version"), 0);
    }
    return PERR_OK;
}

int pc_stats(pc_client *c, eng_stats *out, eng_info *info) {
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 0);
    stats_out so = {out, info};
    return req_call(c, NET_OP_STATS, &r, parse_stats, &so);
}

int pc_snapshot(pc_client *c) { return pc_call(c, NET_OP_SNAPSHOT, NULL, 0, NULL, NULL); }

/* ---- export / dups --------------------------------------------------------- */

typedef struct export_out {
    pc_item_fn fn; void *user;
    int more; char *after_coll; uint64_t after;
    int fn_rc;
} export_out;

static int parse_export(const msgpack_object *o, void *user) {
    export_out *e = user;
    const msgpack_object *items = net_mp_get(o, "items");
    if (!items || items->type != MSGPACK_OBJECT_ARRAY) return perr_set(PERR_PROTOCOL, "EXPORT response without \"items\"");
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        if (items->via.array.ptr[i].type != MSGPACK_OBJECT_MAP) return perr_set(PERR_PROTOCOL, "EXPORT item %u is not a map", i);
        eng_item *it = NULL;
        int rc = parse_item(&items->via.array.ptr[i], &it);
        if (rc) return rc;
        rc = e->fn(e->user, it);
        eng_item_free(it);
        if (rc) { e->fn_rc = rc; return PERR_OK; }
    }
    const msgpack_object *next = net_mp_get(o, "next");
    e->more = next && next->type == MSGPACK_OBJECT_MAP;
    free(e->after_coll);
    e->after_coll = NULL;
    if (e->more) {
        const msgpack_object *ac = net_mp_get(next, "after_collection"), *af = net_mp_get(next, "after");
        if (!ac || ac->type != MSGPACK_OBJECT_STR || !af || af->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return perr_set(PERR_PROTOCOL, "EXPORT response: malformed \"next\"");
        e->after_coll = dup_str(ac);
        if (!e->after_coll) return perr_set(PERR_NOMEM, "EXPORT");
        e->after = af->via.u64;
    }
    return PERR_OK;
}

int pc_export(pc_client *c, const char *collection, int with_vector, pc_item_fn fn, void *user) {
    export_out e = {fn, user, 0, NULL, 0, 0};
    int rc = PERR_OK;
    do {
        req r; req_init(&r);
        msgpack_pack_map(&r.pk, 2 + !!collection + (e.after_coll ? 2 : 0));
        net_mp_pack_key(&r.pk, "limit"); msgpack_pack_int(&r.pk, 256);
        net_mp_pack_key(&r.pk, "vector");
        if (with_vector) msgpack_pack_true(&r.pk); else msgpack_pack_false(&r.pk);
        if (collection) { net_mp_pack_key(&r.pk, "collection"); net_mp_pack_cstr(&r.pk, collection); }
        if (e.after_coll) {
            net_mp_pack_key(&r.pk, "after_collection"); net_mp_pack_cstr(&r.pk, e.after_coll);
            net_mp_pack_key(&r.pk, "after"); msgpack_pack_uint64(&r.pk, e.after);
        }
        e.more = 0;
        rc = req_call(c, NET_OP_EXPORT, &r, parse_export, &e);
    } while (rc == PERR_OK && !e.fn_rc && e.more);
    free(e.after_coll);
    return rc ? rc : e.fn_rc;
}

static int parse_dups(const msgpack_object *o, void *user) {
    eng_dups **out = user;
    const msgpack_object *g = net_mp_get(o, "groups");
    if (!g || g->type != MSGPACK_OBJECT_ARRAY) return perr_set(PERR_PROTOCOL, "DUPS response without \"groups\"");
    eng_dups *d = calloc(1, sizeof *d);
    if (!d || !(d->groups = calloc(g->via.array.size + 1, sizeof *d->groups))) { free(d); return perr_set(PERR_NOMEM, "DUPS"); }
    for (uint32_t i = 0; i < g->via.array.size; i++) {
        const msgpack_object *e = &g->via.array.ptr[i];
        const msgpack_object *ids = e->type == MSGPACK_OBJECT_MAP ? net_mp_get(e, "ids") : NULL;
        if (!ids || ids->type != MSGPACK_OBJECT_ARRAY) { eng_dups_free(d); return perr_set(PERR_PROTOCOL, "DUPS group %u without \"ids\"", i); }
        eng_dup_group *dg = &d->groups[d->n++];
        dg->ids = calloc(ids->via.array.size + 1, sizeof *dg->ids);
        if (!dg->ids) { eng_dups_free(d); return perr_set(PERR_NOMEM, "DUPS"); }
        for (uint32_t k = 0; k < ids->via.array.size; k++)
            if (ids->via.array.ptr[k].type == MSGPACK_OBJECT_POSITIVE_INTEGER) dg->ids[dg->n++] = ids->via.array.ptr[k].via.u64;
        dg->min_score = (float)num(net_mp_get(e, "min_score"), 0);
    }
    *out = d;
    return PERR_OK;
}

int pc_dups(pc_client *c, const char *collection, eng_dup_tier tier, float threshold, eng_dups **out) {
    static const char *names[] = {"exact", "near", "similar"};
    *out = NULL;
    req r; req_init(&r);
    msgpack_pack_map(&r.pk, 2 + !!collection);
    net_mp_pack_key(&r.pk, "tier"); net_mp_pack_cstr(&r.pk, names[tier]);
    net_mp_pack_key(&r.pk, "threshold"); msgpack_pack_float(&r.pk, threshold);
    if (collection) { net_mp_pack_key(&r.pk, "collection"); net_mp_pack_cstr(&r.pk, collection); }
    return req_call(c, NET_OP_DUPS, &r, parse_dups, out);
}
