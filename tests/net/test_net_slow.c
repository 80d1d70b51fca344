/* 64 clients that send SEARCHes and do not read their answers (issue 9,
 * "Bounded under slow clients"): the memory the server holds for them stays
 * under the bound of docs/protocol.md §5 (per connection, max_inflight
 * answers: unsent responses <= conns x max_inflight x response size), a
 * fast client is answered meanwhile, and once the slow ones read, every
 * request has exactly one successful answer. */
#define _GNU_SOURCE
#include "common/perr.h"
#include "net/client.h"
#include "net/mp.h"
#include "net_testutil.h"
#include "tests/common/testlib.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* k = 1000: an answer of about 60 KiB, so 64 of them (about 4 MiB) are more
 * than a loopback socket's send buffer takes and the rest waits in the
 * server, which is what is measured. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { CONNS = 64, PER_CONN = 100, K = 1000, N_VEC = 2000 };

static void test_slow_readers_bounded(void) {
    char *dir = t_tmpdir("net_slow");
    eng_db *db = NULL;
    REQUIRE_OK(nt_open_db(dir, 2, &db));
    int dim = eng_dim(db);
    float *v = malloc(sizeof(float) * (size_t)N_VEC * (size_t)dim);
    srand(7);
    for (long i = 0; i < (long)N_VEC * dim; i++) v[i] = (float)rand() / RAND_MAX - 0.5f;
    REQUIRE_OK(eng_add_vectors(db, v, N_VEC, NULL, NULL, NULL));
    net_server_opts o;
    net_server_opts_default(&o);
    /* Room for every in-flight request, so that each is searched (BUSY
     * under a full queue is test_net_server's) and the stall is the
     * largest the in-flight limit allows. */
    o.max_queue = CONNS * o.max_inflight;
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    /* One SEARCH by vector, k = 1000: its answer's size. */
    msgpack_sbuffer sb;
    nt_pack_vsearch(&sb, v, dim, K);
    int fd = nt_connect(s.port);
    net_header h;
    uint8_t *p = NULL;
    REQUIRE(nt_send_frame(fd, 1, NET_OP_SEARCH, 0, 1, sb.data, (uint32_t)sb.size) == 0);
    REQUIRE(nt_recv_frame(fd, &h, &p, 30000) == 0 && !(h.flags & NET_F_ERROR));
    size_t resp = NET_HEADER_SIZE + h.length;
    free(p);
    close(fd);
    long rss0 = nt_rss_kb();
    int *fds = NULL;
    REQUIRE(nt_stall_start(s.port, CONNS, PER_CONN, NET_OP_SEARCH, sb.data, (uint32_t)sb.size, &fds) == 0);
    /* A fast client meanwhile: every search answered. */
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    pc_set_timeout(c, 120);
    eng_query q;
    eng_query_default(&q);
    int fast_ok = 0;
    long long unsent_max = 0;
    long rss_max = 0;
    double fast_max = 0, t_start = now_s();
    for (int i = 0; i < 50; i++) {
        eng_results *r = NULL;
        double t0 = now_s();
        if (pc_search_vector(c, v + (size_t)(i % N_VEC) * dim, dim, &q, &r) == 0 && r->n == 10) fast_ok++;
        if (now_s() - t0 > fast_max) fast_max = now_s() - t0;
        eng_results_free(r);
        long long u = nt_server_stat(s.port, "unsent_bytes");
        if (u > unsent_max) unsent_max = u;
        long rss = nt_rss_kb();
        if (rss > rss_max) rss_max = rss;
        usleep(20000);
    }
    pc_close(c);
    CHECK_EQ_INT(fast_ok, 50);
    /* Every accepted request done (queue empty): the stall at its largest. */
    for (int i = 0; i < 1200 && nt_server_stat(s.port, "queue_depth") != 0; i++) usleep(100000);
    printf("fast client: 50 searches, slowest %.3f s; the stalled clients' %d searches done after %.1f s\n",
           fast_max, CONNS * o.max_inflight, now_s() - t_start);
    usleep(200000);
    long long u = nt_server_stat(s.port, "unsent_bytes");
    if (u > unsent_max) unsent_max = u;
    long rss = nt_rss_kb();
    if (rss > rss_max) rss_max = rss;
    /* The bound: max_inflight answers per connection (docs/protocol.md §5). */
    long long bound = (long long)CONNS * o.max_inflight * (long long)resp;
    long grow_kb = rss_max - rss0;
    /* RSS: the answers' buffers (capacity, not size), the read buffers
     * (<= 128 KiB a connection) and 32 MiB for the allocator's slack; under
     * ASan also its quarantine of freed blocks (256 MiB by default). */
    size_t cap = 8192; /* an answer is held in its msgpack_sbuffer: 8 KiB doubled until it fits */
    while (cap < resp) cap *= 2;
    long long rss_bound = (long long)CONNS * o.max_inflight * (long long)cap + (long long)CONNS * (128 << 10) + (32ll << 20);
#if defined(__SANITIZE_ADDRESS__)
    rss_bound += 320ll << 20;
#endif
    printf("answer %zu bytes; unsent responses peak %.1f MiB (bound %.1f MiB = %d conns x %d in flight x answer); "
           "RSS +%.1f MiB (bound %.1f MiB)\n", resp, unsent_max / 1048576.0, bound / 1048576.0, CONNS, o.max_inflight,
           grow_kb / 1024.0, rss_bound / 1048576.0);
    CHECK(unsent_max <= bound);
    /* The stall is real: answers wait in the server (not only in kernel buffers). */
    CHECK(unsent_max >= bound / 8);
    CHECK(grow_kb * 1024ll <= rss_bound);
    /* Nothing lost: each slow client reads all of its answers. */
    long got = nt_stall_drain(fds, CONNS, PER_CONN, 60000);
    CHECK_EQ_INT(got, (long)CONNS * PER_CONN);
    CHECK_EQ_INT(nt_server_stat(s.port, "unsent_bytes"), 0);
    msgpack_sbuffer_destroy(&sb);
    free(v);
    nt_server_stop(&s);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
}

/* A client that keeps the queue full (max_queue 2, one worker) gets BUSY
 * for its backlog, but a client with nothing waiting is always admitted:
 * every one of its 30 requests is answered, none BUSY. */
typedef struct flood { int port; volatile int stop; long sent, busy, ok; } flood;

static void *flooder(void *p) {
    flood *f = p;
    int fd = nt_connect(f->port);
    if (fd < 0) return NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    net_mp_pack_key(&pk, "text"); net_mp_pack_cstr(&pk, "a photo of a flood");
    while (!f->stop) {
        for (int i = 0; i < 32; i++) nt_send_frame(fd, 1, NET_OP_EMBED, 0, (uint64_t)f->sent++, sb.data, (uint32_t)sb.size);
        for (int i = 0; i < 32; i++) {
            net_header h;
            uint8_t *r = NULL;
            if (nt_recv_frame(fd, &h, &r, 30000)) { f->stop = 1; break; }
            if (h.flags & NET_F_ERROR) f->busy += nt_error_code(r, h.length, NULL, 0) == PERR_BUSY;
            else f->ok++;
            free(r);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    close(fd);
    return NULL;
}

static void test_full_queue_admits_idle_connection(void) {
    char *dir = t_tmpdir("net_busy");
    eng_db *db = NULL;
    REQUIRE_OK(nt_open_db(dir, 1, &db));
    net_server_opts o;
    net_server_opts_default(&o);
    o.workers = 1;
    o.max_queue = 2;
    o.batch_max = 1;
    nt_server s;
    REQUIRE_OK(nt_server_start(&s, db, &o));
    flood f = {.port = s.port};
    pthread_t th;
    pthread_create(&th, NULL, flooder, &f);
    while (__atomic_load_n(&f.busy, __ATOMIC_RELAXED) == 0 && !f.stop) usleep(1000); /* the queue is full */
    pc_client *c = NULL;
    REQUIRE_OK(pc_connect(s.addr, NULL, &c));
    float *v = malloc(sizeof(float) * (size_t)eng_dim(db));
    int ok = 0, busy = 0;
    for (int i = 0; i < 30; i++) {
        int rc = pc_embed_text(c, "a quiet client", v);
        ok += rc == PERR_OK;
        busy += rc == PERR_BUSY;
    }
    f.stop = 1;
    pthread_join(th, NULL);
    printf("flooder: %ld sent, %ld answered, %ld BUSY; quiet client: %d of 30 answered, %d BUSY\n",
           f.sent, f.ok, f.busy, ok, busy);
    CHECK(f.busy > 0);
    CHECK_EQ_INT(busy, 0);
    CHECK_EQ_INT(ok, 30);
    free(v);
    pc_close(c);
    nt_server_stop(&s);
    eng_close(db);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    nt_init();
    T_RUN(test_full_queue_admits_idle_connection);
    T_RUN(test_slow_readers_bounded);
    nt_fini();
    return t_done();
}
