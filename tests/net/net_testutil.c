/* Helpers of the net tests (net_testutil.h). */
#define _GNU_SOURCE
#include "net_testutil.h"
#include "common/perr.h"
#include "net/mp.h"
#include "tests/common/testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

char *nt_model, *nt_vocab;
const char *const nt_images[6] = {"astronaut.png", "camera.png", "chelsea.png",
                                  "chelsea_rgba.png", "coffee.png", "rocket.jpg"};

void nt_init(void) {
    nt_model = t_path("%s/tiny-a/tiny-a.safetensors", t_fixtures());
    nt_vocab = t_path("%s/bpe_simple_vocab_16e6.txt.gz", t_fixtures());
}

void nt_fini(void) {
    free(nt_model);
    free(nt_vocab);
}

int nt_open_db(const char *dir, int n_encoders, eng_db **db) {
    eng_open_opts o;
    eng_open_opts_default(&o);
    o.model_path = nt_model;
    o.vocab_path = nt_vocab;
    o.create = 1;
    o.n_encoders = n_encoders;
    return eng_open(dir, &o, db);
}

void *nt_image(const char *name, size_t *len) {
    char *p = t_path("%s/tiny-a/images/%s", t_fixtures(), name);
    void *d = t_read_file(p, len);
    free(p);
    return d;
}

static void *run_thread(void *arg) {
    nt_server *s = arg;
    net_server_run(s->srv);
    return NULL;
}

int nt_server_start_with(nt_server *s, eng_db *db, net_server_opts *o,
                         int (*before_run)(net_server *srv, void *arg), void *arg) {
    net_server_opts d;
    if (!o) { net_server_opts_default(&d); o = &d; }
    static const char *const lis[] = {"127.0.0.1:0"};
    if (!o->n_listen) { o->listen = lis; o->n_listen = 1; }
    memset(s, 0, sizeof *s);
    int rc = net_server_new(db, o, &s->srv);
    if (!rc && before_run) rc = before_run(s->srv, arg);
    if (rc) {
        net_server_free(s->srv);
        s->srv = NULL;
        return rc;
    }
    s->port = net_server_port(s->srv, 0);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
    pthread_create(&s->th, NULL, run_thread, s);
    return PERR_OK;
}

int nt_server_start(nt_server *s, eng_db *db, net_server_opts *o) {
    return nt_server_start_with(s, db, o, NULL, NULL);
}

void nt_server_stop(nt_server *s) {
    if (!s->srv) return;
    net_server_stop(s->srv);
    pthread_join(s->th, NULL);
    net_server_free(s->srv);
    s->srv = NULL;
}

int nt_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int nt_send_raw(int fd, const void *p, size_t len) {
    const uint8_t *b = p;
    while (len) {
        ssize_t w = send(fd, b, len, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        b += w;
        len -= (size_t)w;
    }
    return 0;
}

int nt_send_frame(int fd, int version, int op, uint16_t flags, uint64_t id, const void *p, uint32_t len) {
    uint8_t h[NET_HEADER_SIZE];
    net_header hd = {NET_MAGIC, (uint8_t)version, (uint8_t)op, flags, id, len};
    net_header_encode(&hd, h);
    if (nt_send_raw(fd, h, sizeof h)) return -1;
    return len ? nt_send_raw(fd, p, len) : 0;
}

static int read_n(int fd, void *p, size_t n, int timeout_ms) {
    uint8_t *b = p;
    while (n) {
        struct pollfd pf = {fd, POLLIN, 0};
        int r = poll(&pf, 1, timeout_ms);
        if (r <= 0) return -1;
        ssize_t k = recv(fd, b, n, 0);
        if (k <= 0) return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int nt_recv_frame(int fd, net_header *h, uint8_t **p, int timeout_ms) {
    *p = NULL;
    uint8_t hdr[NET_HEADER_SIZE];
    if (read_n(fd, hdr, sizeof hdr, timeout_ms)) return -1;
    if (net_frame_parse(hdr, sizeof hdr, 1u << 30, h, NULL) < 0) return -1;
    *p = malloc(h->length + 1);
    if (read_n(fd, *p, h->length, timeout_ms)) { free(*p); *p = NULL; return -1; }
    return 0;
}

int nt_wait_eof(int fd, int timeout_ms) {
    char b[4096];
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, timeout_ms) <= 0) return 0;
        ssize_t k = recv(fd, b, sizeof b, 0);
        if (k == 0) return 1;
        if (k < 0) return errno == ECONNRESET;
    }
}

int nt_error_code(const uint8_t *p, size_t len, char *msg, size_t cap) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    int code = 0;
    if (net_mp_unpack(p, len, &u, &o) == 0) {
        const msgpack_object *c = net_mp_get(o, "code"), *m = net_mp_get(o, "message");
        if (c && c->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) code = (int)c->via.i64;
        if (msg && m && m->type == MSGPACK_OBJECT_STR) snprintf(msg, cap, "%.*s", (int)m->via.str.size, m->via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    return code;
}

int nt_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) { close(fd); return -1; }
    close(fd);
    return ntohs(sa.sin_port);
}

int nt_stall_start(int port, int n, int per_conn, int op, const void *payload, uint32_t len, int **fds) {
    int *v = malloc(sizeof *v * (size_t)n);
    if (!v) return -1;
    for (int c = 0; c < n; c++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int small = 4096; /* before connect: the window the server sees stays small */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            if (fd >= 0) close(fd);
            while (c--) close(v[c]);
            free(v);
            return -1;
        }
        v[c] = fd;
        for (int i = 0; i < per_conn; i++)
            if (nt_send_frame(fd, 1, op, 0, (uint64_t)c * 1000000 + (uint64_t)i, payload, len)) {
                for (int k = 0; k <= c; k++) close(v[k]);
                free(v);
                return -1;
            }
    }
    *fds = v;
    return 0;
}

long nt_stall_drain(int *fds, int n, int per_conn, int timeout_ms) {
    long ok = 0;
    char *seen = calloc((size_t)per_conn, 1);
    for (int c = 0; c < n; c++) {
        memset(seen, 0, (size_t)per_conn);
        for (int i = 0; i < per_conn; i++) {
            net_header h;
            uint8_t *p = NULL;
            if (nt_recv_frame(fds[c], &h, &p, timeout_ms)) break;
            uint64_t k = h.id - (uint64_t)c * 1000000;
            if (!(h.flags & NET_F_ERROR) && h.id >= (uint64_t)c * 1000000 && k < (uint64_t)per_conn && !seen[k]) {
                seen[k] = 1;
                ok++;
            }
            free(p);
        }
        close(fds[c]);
    }
    free(seen);
    free(fds);
    return ok;
}

long long nt_server_stat(int port, const char *key) {
    int fd = nt_connect(port);
    if (fd < 0) return -1;
    long long v = -1;
    net_header h;
    uint8_t *p = NULL;
    if (nt_send_frame(fd, 1, NET_OP_STATS, 0, 1, NULL, 0) == 0 && nt_recv_frame(fd, &h, &p, 30000) == 0 &&
        !(h.flags & NET_F_ERROR)) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        const msgpack_object *o = NULL;
        if (net_mp_unpack(p, h.length, &u, &o) == 0) {
            const msgpack_object *srv = net_mp_get(o, "server");
            const msgpack_object *x = srv ? net_mp_get(srv, key) : NULL;
            if (x && x->type == MSGPACK_OBJECT_POSITIVE_INTEGER) v = (long long)x->via.u64;
        }
        msgpack_unpacked_destroy(&u);
    }
    free(p);
    close(fd);
    return v;
}

long nt_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

void nt_pack_vsearch(msgpack_sbuffer *sb, const float *v, int dim, int k) {
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    net_mp_pack_key(&pk, "vector"); net_mp_pack_bin(&pk, v, sizeof(float) * (size_t)dim);
    net_mp_pack_key(&pk, "k"); msgpack_pack_int(&pk, k);
}
