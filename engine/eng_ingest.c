/* eng_ingest: the bulk ingest pipeline, uploads with group commit, and
 * vector adds.
 *
 * DESIGN. Four stages joined by bounded queues:
 *   walker (caller's thread, eng_walk.c): expands paths (directories
 *     recursively, in name order, each entered once; "-" reads paths from
 *     stdin) -> q_path; a directory not entered again -> q_write
 *   decoders (opts.jobs threads): read the file (regular files only, size
 *     limit), SHA-256 it, look the hash up in the collection (already
 *     present: skipped before any decoding), sniff the content, decode and
 *     preprocess with libvips -> q_enc; failures and "present" go straight
 *     to q_write so that every result is reported by one thread
 *   encoder (1 thread, one pe_ctx with opts.encoder_threads threads, default
 *     every core): batches of
 *     up to opts.batch images -> normalized vectors -> q_write
 *   writer (1 thread): commits up to opts.commit_batch items per LMDB write
 *     transaction (under db->write_mu), then adds them to the FAISS index,
 *     then acknowledges them (on_result). Nothing is reported added before
 *     its transaction committed.
 * Queues are bounded, so memory stays at O(jobs + batch + commit_batch)
 * decoded images whatever the number of files.
 * Cores: the encoder's pool is fork-join with a static split, so a worker
 * preempted by a decoder stalls the whole parallel region. A gate (dec_*)
 * therefore lets at most cores - encoder threads + 1 (>= 1) decoders start
 * an image while a batch is being encoded (one keeps decoding ahead), and
 * all jobs while the encoder waits for images, so a decode-heavy run keeps
 * every core decoding and an encode-heavy one leaves the cores to the
 * encoder (default on 2 cores: a 2-thread encoder and 1 decoder while it
 * runs). Lowering the decoders' nice value was measured too; it is
 * machine-wide: on a shared machine other processes' builds starved them.
 *
 * Uploads (eng_upload_prepare / eng_upload_commit, the server's INGEST):
 * the caller's thread does the CPU work (hash, present lookup, decode,
 * encode); one committer thread per database (group_main, started by the
 * first upload, stopped by eng_close after it drained the queue) commits
 * whatever is queued in one transaction through the same commit_jobs, then
 * calls each upload's completion. A dead transaction is retried upload by
 * upload so that one bad upload fails alone (group_commit).
 *
 * Never: stop the run for one bad file; report an item before its commit.
 */
#define _GNU_SOURCE
#include "engine/eng_internal.h"
#include "common/perr.h"
#include "encoder/pe_image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENG_MAX_FILE_BYTES ((size_t)256 << 20)

void eng_ingest_opts_default(eng_ingest_opts *o) {
    memset(o, 0, sizeof *o);
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    o->jobs = nc > 0 ? (int)nc : 1;
    o->batch = 8;
    o->commit_batch = 64;
    o->recursive = 1;
}

/* --------------------------------------------------------- bounded queue */

typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **buf;
    int cap, head, n;
    int producers;          /* open producers; closed when 0 */
} queue;

static int q_init(queue *q, int cap, int producers) {
    memset(q, 0, sizeof *q);
    q->buf = calloc((size_t)cap, sizeof(void *));
    if (!q->buf) return perr_set(PERR_NOMEM, "ingest queue");
    q->cap = cap;
    q->producers = producers;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return PERR_OK;
}

static void q_destroy(queue *q) {
    free(q->buf);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

static void q_push(queue *q, void *p) {
    pthread_mutex_lock(&q->mu);
    while (q->n == q->cap) pthread_cond_wait(&q->not_full, &q->mu);
    q->buf[(q->head + q->n++) % q->cap] = p;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* One producer is done; the queue closes when all are. */
static void q_done(queue *q) {
    pthread_mutex_lock(&q->mu);
    q->producers--;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* Waits up to wait_s (< 0: forever) for an element. NULL when closed and
 * empty, or on timeout (*timed_out set). */
static void *q_pop(queue *q, double wait_s, int *timed_out) {
    if (timed_out) *timed_out = 0;
    struct timespec dl;
    if (wait_s >= 0) {
        clock_gettime(CLOCK_REALTIME, &dl);
        long ns = dl.tv_nsec + (long)(wait_s * 1e9);
        dl.tv_sec += ns / 1000000000L;
        dl.tv_nsec = ns % 1000000000L;
    }
    pthread_mutex_lock(&q->mu);
    while (q->n == 0 && q->producers > 0) {
        if (wait_s < 0) pthread_cond_wait(&q->not_empty, &q->mu);
        else if (pthread_cond_timedwait(&q->not_empty, &q->mu, &dl) == ETIMEDOUT) {
            if (q->n == 0) { if (timed_out) *timed_out = 1; pthread_mutex_unlock(&q->mu); return NULL; }
        }
    }
    void *p = NULL;
    if (q->n) {
        p = q->buf[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return p;
}

/* ------------------------------------------------------------------ jobs */

/* Where and with what items are stored: the run's options, or an upload's
 * own copy of them (dest_own). */
typedef struct dest {
    uint32_t coll;
    const char *const *labels; int n_labels;
    const st_kv *meta; int n_meta;
} dest;

/* A file or upload on its way to LMDB. Public as eng_upload (eng.h). */
typedef struct eng_upload job;
struct eng_upload {
    char *path;
    uint8_t hash[32];
    uint64_t size;
    int width, height;
    float *pixels;          /* 3 x S x S, until encoded */
    float *vec;             /* dim, normalized, once encoded */
    eng_outcome outcome;
    int code;
    char *reason;
    uint64_t id;
    int pending;            /* 1: to be stored; 0: result already known */
    /* videos (eng_video.c): the decoder sends each frame to the encoder as
     * a frame job (parent set); the last of decoder and encoder to finish
     * with the video (outstanding reaches 0) computes its vectors and sends
     * it to the writer whole, or failed. */
    eng_vplan *vp;
    float *frame_emb;       /* n_times x dim raw frame embeddings */
    float *seg_vecs;        /* n_segs x dim, normalized */
    atomic_int outstanding; /* frame jobs in flight + 1 for the decoder */
    atomic_int vfailed;     /* first failure wins and writes the reason */
    struct eng_upload *parent; /* frame job: its video */
    int frame;              /* frame job: index in the plan's times */
    eng_video_meta vmeta;
    const dest *dst;        /* where commit_jobs stores it */
    dest *dest_own;         /* uploads: dst, with copies of labels and meta */
    /* uploads: completion (eng_upload_commit) and the committer's queue */
    eng_upload_fn done;
    void *user;
    struct eng_upload *gnext;
    pe_thumb thumb;         /* image: made with the preprocessing (eng_thumb.c) */
};

static void job_free(job *j) {
    if (!j) return;
    free(j->path);
    free(j->pixels);
    free(j->vec);
    free(j->reason);
    eng_vplan_free(j->vp);
    free(j->frame_emb);
    free(j->seg_vecs);
    free(j->dest_own);
    pe_thumb_clear(&j->thumb);
    free(j);
}

static void job_fail(job *j, int code, const char *msg) {
    j->outcome = ENG_FAILED;
    j->code = code;
    free(j->reason);
    j->reason = strdup(msg && *msg ? msg : perr_str(code));
    j->pending = 0;
}

typedef struct run {
    eng_db *db;
    const eng_ingest_opts *o;
    uint32_t coll;
    dest dst;               /* every file of the run goes here */
    st_kv *meta;            /* o->meta as storage takes it */
    int thumbs;             /* the collection keeps thumbnails */
    queue q_path, q_enc, q_write;
    atomic_ullong seen, bytes;
    atomic_int stop;        /* a fatal error: drain without work */
    int fatal;              /* the writer's fatal error code */
    char fatal_msg[1024];
    double t0;
    atomic_ullong encode_us, decode_us, frames, frames_decoded;
    eng_progress prog;
    double last_prog;
    /* decode gate (see DESIGN) */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int dec_active;         /* decoders between gate_enter and gate_leave */
    int enc_busy;           /* the encoder is inside pe_encode_pixels */
    int cap_busy, cap_idle; /* decoders allowed in while busy / idle */
} run;

static void gate_enter(run *r) {
    pthread_mutex_lock(&r->gate_mu);
    while (r->dec_active >= (r->enc_busy ? r->cap_busy : r->cap_idle))
        pthread_cond_wait(&r->gate_cv, &r->gate_mu);
    r->dec_active++;
    pthread_mutex_unlock(&r->gate_mu);
}

static void gate_leave(run *r) {
    pthread_mutex_lock(&r->gate_mu);
    r->dec_active--;
    pthread_cond_broadcast(&r->gate_cv);
    pthread_mutex_unlock(&r->gate_mu);
}

static void gate_encoder(run *r, int busy) {
    pthread_mutex_lock(&r->gate_mu);
    r->enc_busy = busy;
    if (!busy) pthread_cond_broadcast(&r->gate_cv);
    pthread_mutex_unlock(&r->gate_mu);
}

static int stopping(run *r) {
    return atomic_load(&r->stop) || (r->o->cancel && *r->o->cancel);
}

/* Reads a whole regular file without ever blocking on a FIFO or device. */
static int read_file(const char *path, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return perr_errno(errno, "%s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) { int e = errno; close(fd); return perr_errno(e, "%s", path); }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return perr_set(PERR_UNSUPPORTED, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > ENG_MAX_FILE_BYTES) {
        close(fd);
        return perr_set(PERR_TOO_LARGE, "%s: %lld bytes exceeds the %zu MiB file limit", path,
                        (long long)sb.st_size, ENG_MAX_FILE_BYTES >> 20);
    }
    if (sb.st_size == 0) { close(fd); return perr_set(PERR_FORMAT, "%s: empty file", path); }
    size_t cap = (size_t)sb.st_size;
    uint8_t *buf = malloc(cap);
    if (!buf) { close(fd); return perr_set(PERR_NOMEM, "%s: %zu bytes", path, cap); }
    size_t off = 0;
    while (off < cap) {
        ssize_t n = read(fd, buf + off, cap - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf); close(fd);
            return perr_errno(e, "%s", path);
        }
        if (n == 0) break; /* shrank meanwhile: hash what is there */
        off += (size_t)n;
    }
    close(fd);
    *data = buf;
    *len = off;
    return PERR_OK;
}

/* Hash lookup: an item with these bytes already in the collection? */
static int hash_present(eng_db *db, uint32_t coll, const uint8_t hash[32], uint64_t *id) {
    st_txn *txn;
    int rc = st_txn_begin(db->st, 0, &txn);
    if (rc) return rc;
    rc = st_hash_lookup(txn, coll, hash, id);
    st_txn_abort(txn);
    if (rc == PERR_NOT_FOUND) { perr_clear(); return 0; }
    return rc ? rc : 1;
}

/* Reads, hashes, dedupes, sniffs and preprocesses one file (or buffer when
 * data != NULL), making its thumbnail(s) from the same decode when thumbs.
 * On return j is pending (pixels set) or has its result. */
static void prepare(eng_db *db, uint32_t coll, int thumbs, job *j, const uint8_t *data, size_t len,
                    atomic_ullong *bytes, const eng_video_opts *vo) {
    uint8_t *own = NULL;
    int rc;
    if (!data) {
        rc = read_file(j->path, &own, &len);
        if (rc) { job_fail(j, rc, perr_msg()); return; }
        data = own;
    }
    if (bytes) atomic_fetch_add(bytes, len);
    j->size = len;
    eng_sha256(data, len, j->hash);
    uint64_t id = 0;
    rc = hash_present(db, coll, j->hash, &id);
    if (rc < 0) { job_fail(j, rc, perr_msg()); goto out; }
    if (rc == 1) { j->outcome = ENG_PRESENT; j->id = id; j->pending = 0; goto out; }
    const char *fmt = "unknown";
    pe_media_kind kind = pe_media_sniff_format(data, len, &fmt);
    if (kind == PE_MEDIA_VIDEO || kind == PE_MEDIA_ANIMATION) {
        /* The plan reads the bytes in place: it takes our copy of a file. */
        rc = eng_vplan_open(db, vo, j->path, own ? own : (void *)data, len, own != NULL, 1, &j->vp);
        own = NULL;
        if (rc) { job_fail(j, rc, perr_msg()); goto out; }
        j->vp->want_thumbs = thumbs;
        j->pending = 1;
        goto out;
    }
    if (kind == PE_MEDIA_UNKNOWN) {
        perr_set(PERR_UNSUPPORTED, "%s: not an image or video (content looks like: %s)", j->path, fmt);
        job_fail(j, PERR_UNSUPPORTED, perr_msg());
        goto out;
    }
    size_t np = (size_t)3 * db->image_size * db->image_size;
    j->pixels = malloc(np * sizeof(float));
    if (!j->pixels) { job_fail(j, perr_set(PERR_NOMEM, "%s: pixels", j->path), perr_msg()); goto out; }
    pe_image_info info;
    pe_image_opts io;
    pe_image_opts_default(&io, db->image_size);
    pe_thumb_opts to;
    pe_thumb_opts_default(&to);
    to.max_side = ENG_THUMB_SIDE;
    rc = pe_image_preprocess_thumb(NULL, data, len, j->path, &io, j->pixels, &info, &to,
                                   thumbs ? &j->thumb : NULL);
    if (rc) {
        /* libvips' message names the file already (label = path). */
        job_fail(j, rc, perr_msg());
        free(j->pixels);
        j->pixels = NULL;
        goto out;
    }
    j->width = info.width;
    j->height = info.height;
    j->pending = 1;
out:
    free(own);
}

/* ---------------------------------------------------------------- writer */

/* Storage's checks made before anything is written: such a failure is the
 * item's own and leaves the transaction usable (st.h). */
static int item_level_error(int rc) {
    return rc == PERR_INVALID || rc == PERR_TOO_LARGE || rc == PERR_NOT_FOUND;
}

/* Commits the pending jobs among jobs[0..n) in one transaction (each to its
 * j->dst), then adds them to their collections' indexes. An item-level
 * error fails that job only. Caller does not hold write_mu. Returns a fatal
 * error (storage full, I/O): then the transaction was aborted and every job
 * that was pending failed with it. */
static int commit_jobs(eng_db *db, job **jobs, int n) {
    int dim = db->dim;
    float *vecs = malloc(sizeof(float) * (size_t)dim * (size_t)(n ? n : 1));
    uint64_t *ids = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    uint32_t *colls = malloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    uint64_t *seqs = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!vecs || !ids || !colls || !seqs) {
        free(vecs); free(ids); free(colls); free(seqs);
        return perr_set(PERR_NOMEM, "commit batch");
    }
    pthread_mutex_lock(&db->write_mu);
    st_txn *w = NULL;
    int rc = st_txn_begin(db->st, 1, &w);
    int nadd = 0;
    for (int i = 0; rc == PERR_OK && i < n; i++) {
        job *j = jobs[i];
        if (!j->pending) continue;
        const dest *d = j->dst;
        st_item it;
        memset(&it, 0, sizeof it);
        it.media = j->vp ? ST_MEDIA_VIDEO : ST_MEDIA_IMAGE;
        it.uri = j->path;
        memcpy(it.hash, j->hash, 32);
        it.size_bytes = j->size;
        it.width = j->width;
        it.height = j->height;
        it.labels = d->labels;
        it.n_labels = (size_t)d->n_labels;
        it.meta = d->meta;
        it.n_meta = (size_t)d->n_meta;
        st_segment *segs = NULL;
        int nsegs = 0;
        if (j->vp) {
            it.duration_s = j->vmeta.duration_s;
            it.fps = j->vmeta.fps;
            it.codec = j->vmeta.codec;
            nsegs = j->vp->n_segs;
            segs = calloc((size_t)nsegs + 1, sizeof *segs);
            if (!segs) { rc = perr_set(PERR_NOMEM, "segments"); break; }
            for (int s = 0; s < nsegs; s++) {
                eng_vplan_segment(j->vp, s, &segs[s].start_s, &segs[s].end_s);
                segs[s].vec = j->seg_vecs + (size_t)s * dim;
            }
        }
        uint64_t id = 0, seq = 0;
        int r = st_item_add(w, d->coll, &it, j->vec, segs, (size_t)nsegs, &id, &seq);
        free(segs);
        if (r == PERR_OK) r = eng_thumb_store(w, id, ST_THUMB_ITEM, &j->thumb);
        for (int s = 0; r == PERR_OK && j->vp && j->vp->thumbs && s <= nsegs; s++)
            r = eng_thumb_store(w, id, (uint32_t)s, &j->vp->thumbs[s]);
        if (r == PERR_OK) {
            j->id = id;
            j->outcome = ENG_ADDED;
            memcpy(vecs + (size_t)nadd * dim, j->vec, sizeof(float) * (size_t)dim);
            colls[nadd] = d->coll;
            seqs[nadd] = seq;
            ids[nadd++] = id;
        } else if (r == PERR_EXISTS) { /* same bytes earlier in this run or group */
            perr_clear();
            j->id = id;
            j->outcome = ENG_PRESENT;
            j->pending = 0;
        } else if (item_level_error(r)) {  /* this item only; txn still alive */
            char m2[1400];
            snprintf(m2, sizeof m2, "%s: not stored: %s", j->path, perr_msg());
            job_fail(j, r, m2);
        } else {
            rc = r;
        }
    }
    if (rc == PERR_OK) rc = st_txn_commit(w);
    else st_txn_abort(w);
    if (rc == PERR_OK && nadd) {
        /* Per collection, in commit order (a group may span collections):
         * the rows of collection c gathered into the front of gv/gi. */
        int r = PERR_OK;
        float *gv = malloc(sizeof(float) * (size_t)dim * (size_t)nadd);
        uint64_t *gi = malloc(sizeof(uint64_t) * (size_t)nadd);
        if (!gv || !gi) r = perr_set(PERR_NOMEM, "index update");
        for (int i = 0; r == PERR_OK && i < nadd; i++) {
            if (colls[i] == UINT32_MAX) continue;
            uint32_t c = colls[i];
            int m = 0;
            uint64_t last = 0;
            for (int k = i; k < nadd; k++) {
                if (colls[k] != c) continue;
                memcpy(gv + (size_t)m * dim, vecs + (size_t)k * dim, sizeof(float) * (size_t)dim);
                gi[m++] = ids[k];
                last = seqs[k];
                colls[k] = UINT32_MAX;
            }
            r = eng_index_added(db, c, gi, gv, (size_t)m, last);
        }
        free(gv);
        free(gi);
        for (int i = 0; r == PERR_OK && i < n; i++)
            if (jobs[i]->pending && jobs[i]->outcome == ENG_ADDED && jobs[i]->vp)
                r = eng_seg_added(db, jobs[i]->dst->coll, jobs[i]->id, jobs[i]->seg_vecs, jobs[i]->vp->n_segs);
        /* Committed items are safe in LMDB; the index catches up on open. */
        if (r) fprintf(stderr, "percept: index update failed (%s); it is rebuilt on next open\n", perr_msg());
    }
    pthread_mutex_unlock(&db->write_mu);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", perr_msg());
        for (int i = 0; i < n; i++) {
            if (!jobs[i]->pending && jobs[i]->outcome != ENG_ADDED) continue;
            char m2[1400];
            snprintf(m2, sizeof m2, "%s: not stored: %s", jobs[i]->path, msg);
            job_fail(jobs[i], rc, m2);
        }
        perr_set(rc, "%s", msg);
    } else {
        for (int i = 0; i < n; i++) jobs[i]->pending = 0;
    }
    free(vecs);
    free(ids);
    free(colls);
    free(seqs);
    return rc;
}

static void report(run *r, job *j) {
    eng_progress *p = &r->prog;
    if (j->outcome == ENG_ADDED && j->vp) { p->videos++; p->video_s += j->vmeta.duration_s; }
    if (j->outcome == ENG_ADDED) p->added++;
    else if (j->outcome == ENG_PRESENT) p->present++;
    else if (j->outcome == ENG_SKIPPED) p->skipped++;
    else p->failed++;
    p->done++;
    if (r->o->on_result) {
        eng_file_result fr = {j->path, j->outcome, j->code, j->reason, j->id};
        r->o->on_result(r->o->user, &fr);
    }
}

static void progress(run *r, int force) {
    double now = eng_now_s();
    if (!force && now - r->last_prog < 0.2) return;
    r->last_prog = now;
    r->prog.seen = atomic_load(&r->seen);
    r->prog.bytes = atomic_load(&r->bytes);
    r->prog.elapsed_s = now - r->t0;
    r->prog.encode_s = atomic_load(&r->encode_us) * 1e-6;
    r->prog.decode_s = atomic_load(&r->decode_us) * 1e-6;
    r->prog.frames = atomic_load(&r->frames);
    r->prog.frames_decoded = atomic_load(&r->frames_decoded);
    if (r->o->on_progress) r->o->on_progress(r->o->user, &r->prog);
}

static void *writer_main(void *arg) {
    run *r = arg;
    int cb = r->o->commit_batch > 0 ? r->o->commit_batch : 64;
    job **batch = calloc((size_t)cb, sizeof *batch);
    int n = 0;
    for (;;) {
        int to = 0;
        /* Wait for work; with a partial batch, commit as soon as the queue
         * is momentarily empty (latency) rather than wait for it to fill. */
        job *j = q_pop(&r->q_write, n ? 0.02 : -1, &to);
        if (j && !batch) { job_fail(j, PERR_NOMEM, "commit batch"); report(r, j); job_free(j); continue; }
        if (j && !j->pending) { report(r, j); job_free(j); progress(r, 0); continue; }
        if (j && r->fatal) { job_fail(j, r->fatal, r->fatal_msg); report(r, j); job_free(j); continue; }
        if (j) batch[n++] = j;
        if (n && (n == cb || !j)) {
            int rc = commit_jobs(r->db, batch, n);
            if (rc && !r->fatal) {
                r->fatal = rc;
                snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s", perr_msg());
                atomic_store(&r->stop, 1);
            }
            for (int i = 0; i < n; i++) { report(r, batch[i]); job_free(batch[i]); }
            n = 0;
            progress(r, 0);
        }
        if (!j && !to) break; /* closed and drained */
    }
    free(batch);
    return NULL;
}

/* ----------------------------------------------------------------- video */

/* The video and segment vectors from the frame embeddings; metadata. */
static int video_vectors(eng_db *db, job *j, const float *emb) {
    j->vec = malloc(sizeof(float) * (size_t)db->dim);
    j->seg_vecs = malloc(sizeof(float) * (size_t)db->dim * (size_t)(j->vp->n_segs + 1));
    if (!j->vec || !j->seg_vecs) return perr_set(PERR_NOMEM, "%s: video vectors", j->path);
    eng_vplan_vectors(db, j->vp, emb, j->vec, j->seg_vecs);
    eng_vplan_meta(j->vp, &j->vmeta);
    j->width = j->vmeta.width;
    j->height = j->vmeta.height;
    return PERR_OK;
}

static void video_failed(job *j, int code, const char *msg) {
    if (atomic_exchange(&j->vfailed, 1)) return;
    job_fail(j, code, msg);
}

/* Drops one hold on a video; the last one sends it to the writer. */
static void video_release(run *r, job *j) {
    if (atomic_fetch_sub(&j->outstanding, 1) != 1) return;
    if (!atomic_load(&j->vfailed)) {
        int rc = video_vectors(r->db, j, j->frame_emb);
        if (rc) job_fail(j, rc, perr_msg());
    }
    free(j->frame_emb);
    j->frame_emb = NULL;
    q_push(&r->q_write, j);
}

static void video_frame_done(run *r, job *f, int rc, const float *emb) {
    job *v = f->parent;
    if (rc == PERR_OK) {
        memcpy(v->frame_emb + (size_t)f->frame * r->db->dim, emb, sizeof(float) * (size_t)r->db->dim);
        atomic_fetch_add(&r->frames, 1);
    } else {
        char msg[1400];
        snprintf(msg, sizeof msg, "%s: not stored: %s", v->path,
                 rc == PERR_CANCELLED ? "the run stopped before it" : perr_msg());
        video_failed(v, rc, msg);
    }
    free(f->pixels);
    free(f);
    video_release(r, v);
}

typedef struct vpush { run *r; job *v; double wait_s; } vpush;

static int video_push_frame(void *user, int index, float *pixels) {
    vpush *p = user;
    if (stopping(p->r) || atomic_load(&p->v->vfailed)) { free(pixels); return PERR_CANCELLED; }
    job *f = calloc(1, sizeof *f);
    if (!f) { free(pixels); return perr_set(PERR_NOMEM, "frame job"); }
    f->parent = p->v;
    f->frame = index;
    f->pixels = pixels;
    f->pending = 1;
    atomic_fetch_add(&p->v->outstanding, 1);
    double t = eng_now_s();
    q_push(&p->r->q_enc, f); /* blocks while the encoder is behind: bounded memory */
    p->wait_s += eng_now_s() - t;
    return PERR_OK;
}

/* Decoder side of a video: frames to the encoder as they come. */
static void video_decode(run *r, job *j) {
    atomic_init(&j->outstanding, 1);
    atomic_init(&j->vfailed, 0);
    j->frame_emb = calloc((size_t)j->vp->n_times * (size_t)r->db->dim, sizeof(float));
    int rc = j->frame_emb ? PERR_OK : perr_set(PERR_NOMEM, "%s: frame embeddings", j->path);
    vpush p = {r, j, 0};
    double t = eng_now_s();
    if (rc == PERR_OK) rc = eng_vplan_decode(r->db, j->vp, video_push_frame, &p);
    double dt = eng_now_s() - t - p.wait_s;
    atomic_fetch_add(&r->decode_us, (unsigned long long)(dt > 0 ? dt * 1e6 : 0));
    if (rc) {
        char msg[1400];
        if (rc == PERR_CANCELLED && atomic_load(&j->vfailed)) msg[0] = 0;
        else if (rc == PERR_CANCELLED)
            snprintf(msg, sizeof msg, "%s: not stored: the run stopped before it", j->path);
        else snprintf(msg, sizeof msg, "%s", perr_msg());
        video_failed(j, rc, msg);
    }
    atomic_fetch_add(&r->frames_decoded, (unsigned long long)pe_video_info_get(j->vp->v)->frames_decoded);
    /* Frees the decoder (its buffers) now; the plan's times stay. */
    pe_video_close(j->vp->v);
    j->vp->v = NULL;
    video_release(r, j);
}

/* --------------------------------------------------------------- encoder */

typedef struct enc_arg { run *r; pe_ctx *ctx; } enc_arg;

static void *encoder_main(void *arg) {
    enc_arg *ea = arg;
    run *r = ea->r;
    eng_db *db = r->db;
    int bmax = r->o->batch > 0 ? r->o->batch : 8;
    size_t np = (size_t)3 * db->image_size * db->image_size;
    float *px = malloc(sizeof(float) * np * (size_t)bmax);
    float *out = malloc(sizeof(float) * (size_t)db->dim * (size_t)bmax);
    job **b = calloc((size_t)bmax, sizeof *b);
    for (;;) {
        int n = 0, to = 0;
        job *j = q_pop(&r->q_enc, -1, NULL);
        if (!j) break;
        b[n++] = j;
        /* Fill the batch while decoders keep up; don't stall on a slow one. */
        while (n < bmax && (j = q_pop(&r->q_enc, 0.05, &to))) b[n++] = j;
        int rc = (px && out && b) ? PERR_OK : perr_set(PERR_NOMEM, "encoder batch");
        if (rc == PERR_OK && !stopping(r)) {
            for (int i = 0; i < n; i++) memcpy(px + np * i, b[i]->pixels, sizeof(float) * np);
            double t = eng_now_s();
            gate_encoder(r, 1);
            rc = pe_encode_pixels(ea->ctx, px, n, out);
            gate_encoder(r, 0);
            atomic_fetch_add(&r->encode_us, (unsigned long long)((eng_now_s() - t) * 1e6));
        } else if (rc == PERR_OK) {
            rc = PERR_CANCELLED;
        }
        for (int i = 0; i < n; i++) {
            if (b[i]->parent) { video_frame_done(r, b[i], rc, out + (size_t)db->dim * i); continue; }
            if (rc == PERR_CANCELLED) perr_set(rc, "%s: not stored: the run stopped before it", b[i]->path);
            free(b[i]->pixels);
            b[i]->pixels = NULL;
            if (rc == PERR_OK) {
                b[i]->vec = malloc(sizeof(float) * (size_t)db->dim);
                if (!b[i]->vec) job_fail(b[i], PERR_NOMEM, "vector");
                else {
                    memcpy(b[i]->vec, out + (size_t)db->dim * i, sizeof(float) * (size_t)db->dim);
                    pe_l2_normalize(b[i]->vec, db->dim);
                }
            } else {
                job_fail(b[i], rc, perr_msg());
            }
            q_push(&r->q_write, b[i]);
        }
        if (!j && !to) break;
    }
    free(px); free(out); free(b);
    q_done(&r->q_write);
    return NULL;
}

/* --------------------------------------------------------------- decoder */

static void *decoder_main(void *arg) {
    run *r = arg;
    char *path;
    while ((path = q_pop(&r->q_path, -1, NULL))) {
        job *j = calloc(1, sizeof *j);
        if (!j) { free(path); continue; }
        j->path = path;
        j->dst = &r->dst;
        if (stopping(r)) {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s: not stored: the run stopped before it (%s)", path,
                     r->fatal ? r->fatal_msg : "cancelled");
            job_fail(j, r->fatal ? r->fatal : PERR_CANCELLED, msg);
            q_push(&r->q_write, j);
            continue;
        }
        gate_enter(r);
        prepare(r->db, r->coll, r->thumbs, j, NULL, 0, &r->bytes, r->o->video);
        if (j->vp) video_decode(r, j);
        gate_leave(r);
        if (!j->vp) q_push(j->pending ? &r->q_enc : &r->q_write, j);
    }
    q_done(&r->q_enc);
    q_done(&r->q_write);
    return NULL;
}

/* ---------------------------------------------------------------- walker */

static void push_path(run *r, const char *p) {
    char *s = strdup(p);
    if (!s) return;
    atomic_fetch_add(&r->seen, 1);
    q_push(&r->q_path, s);
}

/* A directory the walk did not enter: reported by the writer like a file. */
static void walk_skip(void *user, const char *path, int code, const char *reason) {
    run *r = user;
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) { job_free(j); return; }
    job_fail(j, code, reason);
    j->outcome = ENG_SKIPPED;
    atomic_fetch_add(&r->seen, 1);
    q_push(&r->q_write, j);
}

static void walk_file(void *user, const char *path) { push_path(user, path); }
static int walk_stop(void *user) { return stopping(user); }

static uint32_t coll_id(eng_db *db, const char *name) {
    pthread_rwlock_rdlock(&db->coll_lock);
    eng_coll *c = eng_coll_find(db, name);
    uint32_t id = c ? c->id : 0;
    pthread_rwlock_unlock(&db->coll_lock);
    return id;
}

/* d points at o's labels and meta (*meta: storage's form of o->meta, freed
 * by the caller). */
static int dest_init(dest *d, uint32_t coll, const eng_ingest_opts *o, st_kv **meta) {
    memset(d, 0, sizeof *d);
    *meta = NULL;
    d->coll = coll;
    d->labels = o->labels;
    d->n_labels = o->n_labels;
    if (o->n_meta > 0) {
        *meta = calloc((size_t)o->n_meta, sizeof **meta);
        if (!*meta) return perr_set(PERR_NOMEM, "metadata");
        for (int i = 0; i < o->n_meta; i++) { (*meta)[i].key = o->meta[i].key; (*meta)[i].value = o->meta[i].value; }
        d->meta = *meta;
        d->n_meta = o->n_meta;
    }
    return PERR_OK;
}

static int ingest_prepare(eng_db *db, const eng_ingest_opts *o, uint32_t *coll) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    int rc = eng_model_ready(db);
    if (rc) return rc;
    const char *name = o->collection ? o->collection : ENG_DEFAULT_COLLECTION;
    rc = eng_coll_ensure(db, name, NULL);
    if (rc) return rc;
    *coll = coll_id(db, name);
    if (!*coll) return perr_set(PERR_NOT_FOUND, "collection %s vanished", name);
    return PERR_OK;
}

int eng_ingest_paths(eng_db *db, const char *const *paths, int n, const eng_ingest_opts *o,
                     eng_progress *out) {
    eng_ingest_opts dflt;
    if (!o) { eng_ingest_opts_default(&dflt); o = &dflt; }
    if (out) memset(out, 0, sizeof *out);
    run *r = calloc(1, sizeof *r);
    if (!r) return perr_set(PERR_NOMEM, "ingest");
    r->db = db;
    r->o = o;
    int rc = ingest_prepare(db, o, &r->coll);
    if (rc == PERR_OK) rc = dest_init(&r->dst, r->coll, o, &r->meta);
    if (rc == PERR_OK) rc = eng_coll_thumbs(db, r->coll, &r->thumbs);
    if (rc) { free(r); return rc; }
    int jobs = o->jobs > 0 ? o->jobs : 1;
    int batch = o->batch > 0 ? o->batch : 8;
    int cb = o->commit_batch > 0 ? o->commit_batch : 64;
    /* q_write's producers: the decoders and the encoder. */
    if ((rc = q_init(&r->q_path, 4 * jobs, 1)) ||
        (rc = q_init(&r->q_enc, 2 * batch + jobs, jobs)) ||
        (rc = q_init(&r->q_write, cb + 2 * batch + jobs, jobs + 1))) {
        free(r->meta);
        free(r);
        return rc;
    }
    pe_ctx_opts co;
    pe_ctx_opts_default(&co);
    co.max_batch = batch;
    /* Every core by default: the encoder partitions its work the same way
     * for any thread count (pe.h), so a file gets the same vector here as
     * through a server's one-thread query contexts. */
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    if (nc < 1) nc = 1;
    co.n_threads = o->encoder_threads > 0 ? o->encoder_threads : (int)nc;
    r->cap_idle = jobs;
    r->cap_busy = (int)nc - co.n_threads + 1;
    if (r->cap_busy < 1) r->cap_busy = 1;
    if (r->cap_busy > jobs) r->cap_busy = jobs;
    pthread_mutex_init(&r->gate_mu, NULL);
    pthread_cond_init(&r->gate_cv, NULL);
    enc_arg ea = {r, NULL};
    rc = pe_ctx_new(db->model, &co, &ea.ctx);
    if (rc) goto free_queues;

    r->t0 = r->last_prog = eng_now_s();
    r->prog.walking = 1;
    pthread_t *dec = calloc((size_t)jobs, sizeof *dec);
    pthread_t enc, wr;
    pthread_create(&wr, NULL, writer_main, r);
    pthread_create(&enc, NULL, encoder_main, &ea);
    for (int i = 0; i < jobs; i++) pthread_create(&dec[i], NULL, decoder_main, r);

    /* The walker runs on the caller's thread; q_write stays open while
     * it runs (its decoder producers wait for q_path to close). */
    eng_walk_opts wo = {o->recursive, walk_file, walk_skip, walk_stop, r};
    eng_walk(paths, n, &wo);
    r->prog.walking = 0;
    q_done(&r->q_path);
    for (int i = 0; i < jobs; i++) pthread_join(dec[i], NULL);
    pthread_join(enc, NULL);
    pthread_join(wr, NULL);
    free(dec);
    pe_ctx_free(ea.ctx);
    progress(r, 1);
    if (out) *out = r->prog;
    if (r->fatal) rc = perr_set(r->fatal, "%s", r->fatal_msg);
    else if (o->cancel && *o->cancel) rc = perr_set(PERR_CANCELLED, "ingest cancelled");
free_queues:
    pthread_mutex_destroy(&r->gate_mu);
    pthread_cond_destroy(&r->gate_cv);
    q_destroy(&r->q_path);
    q_destroy(&r->q_enc);
    q_destroy(&r->q_write);
    free(r->meta);
    free(r);
    return rc;
}

/* ------------------------------------------ uploads and the group committer */

/* An upload's own dest: labels, metadata and their strings in one block
 * (the caller's options die when eng_upload_prepare returns). */
static int dest_copy(uint32_t coll, const eng_ingest_opts *o, dest **out) {
    size_t bytes = sizeof(dest) + sizeof(char *) * (size_t)o->n_labels + sizeof(st_kv) * (size_t)o->n_meta;
    for (int i = 0; i < o->n_labels; i++) bytes += strlen(o->labels[i]) + 1;
    for (int i = 0; i < o->n_meta; i++) bytes += strlen(o->meta[i].key) + strlen(o->meta[i].value) + 2;
    dest *d = calloc(1, bytes);
    if (!d) return perr_set(PERR_NOMEM, "upload options (%zu bytes)", bytes);
    const char **labels = (const char **)(d + 1);
    st_kv *meta = (st_kv *)(labels + o->n_labels);
    char *p = (char *)(meta + o->n_meta);
    for (int i = 0; i < o->n_labels; i++) { labels[i] = strcpy(p, o->labels[i]); p += strlen(p) + 1; }
    for (int i = 0; i < o->n_meta; i++) {
        meta[i].key = strcpy(p, o->meta[i].key); p += strlen(p) + 1;
        meta[i].value = strcpy(p, o->meta[i].value); p += strlen(p) + 1;
    }
    d->coll = coll;
    d->labels = labels;
    d->n_labels = o->n_labels;
    d->meta = meta;
    d->n_meta = o->n_meta;
    *out = d;
    return PERR_OK;
}

int eng_upload_prepare(eng_db *db, const void *data, size_t len, const char *uri,
                       const eng_ingest_opts *o, eng_upload **out) {
    *out = NULL;
    eng_ingest_opts dflt;
    if (!o) { eng_ingest_opts_default(&dflt); o = &dflt; }
    uint32_t coll;
    int thumbs = 0;
    int rc = ingest_prepare(db, o, &coll);
    if (!rc) rc = eng_coll_thumbs(db, coll, &thumbs);
    if (rc) return rc;
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(uri ? uri : ""))) { job_free(j); return perr_set(PERR_NOMEM, "upload"); }
    if ((rc = dest_copy(coll, o, &j->dest_own))) { job_free(j); return rc; }
    j->dst = j->dest_own;
    prepare(db, coll, thumbs, j, data, len, NULL, o->video);
    if (j->pending && j->vp) {
        float *emb = NULL;
        rc = eng_vplan_encode(db, j->vp, &emb);
        if (rc == PERR_OK) rc = video_vectors(db, j, emb);
        free(emb);
        /* The decoder reads data in place: done with it before we return. */
        pe_video_close(j->vp->v);
        j->vp->v = NULL;
        if (rc) job_fail(j, rc, perr_msg());
    } else if (j->pending) {
        j->vec = malloc(sizeof(float) * (size_t)db->dim);
        if (!j->vec) rc = perr_set(PERR_NOMEM, "vector");
        else {
            pe_ctx *c = eng_ctx_get(db);
            rc = pe_encode_pixels(c, j->pixels, 1, j->vec);
            eng_ctx_put(db, c);
        }
        free(j->pixels);
        j->pixels = NULL;
        if (rc) job_fail(j, rc, perr_msg());
        else pe_l2_normalize(j->vec, db->dim);
    }
    if (j->outcome == ENG_FAILED) {
        rc = perr_set(j->code ? j->code : PERR_INTERNAL, "%s", j->reason ? j->reason : "upload failed");
        job_free(j);
        return rc;
    }
    *out = j;
    return PERR_OK;
}

void eng_upload_free(eng_upload *u) { job_free(u); }

/* Calls the upload's completion with its result and frees it. */
static void upload_finish(job *j) {
    if (j->outcome == ENG_FAILED) {
        int code = j->code ? j->code : PERR_INTERNAL;
        perr_set(code, "%s", j->reason ? j->reason : perr_str(code));
        j->done(j->user, code, 0, ENG_FAILED);
    } else {
        perr_clear();
        j->done(j->user, PERR_OK, j->id, j->outcome);
    }
    job_free(j);
}

/* One group: one transaction. When the transaction itself dies (storage
 * full, I/O) nothing of it was stored; then each upload is committed again
 * in its own transaction, so that the one that cannot be stored fails alone. */
static void group_commit(eng_db *db, job **g, int n) {
    unsigned char was[ENG_GROUP_MAX];
    for (int i = 0; i < n; i++) was[i] = (unsigned char)g[i]->pending;
    int rc = commit_jobs(db, g, n);
    if (rc == PERR_OK || n == 1) return;
    for (int i = 0; i < n; i++) {
        job *j = g[i];
        if (!was[i] || (j->outcome == ENG_FAILED && item_level_error(j->code))) continue;
        /* a "present" answered inside the dead transaction may name an
         * item of that transaction: retried too */
        j->outcome = ENG_ADDED;
        j->code = 0;
        free(j->reason);
        j->reason = NULL;
        j->id = 0;
        j->pending = 1;
        commit_jobs(db, &j, 1);
    }
}

static void *group_main(void *arg) {
    eng_db *db = arg;
    job *g[ENG_GROUP_MAX];
    int max = db->opts.upload_group_max;
    if (max <= 0 || max > ENG_GROUP_MAX) max = ENG_GROUP_MAX;
    for (;;) {
        pthread_mutex_lock(&db->gc_mu);
        while (!db->gc_head && !db->gc_stop) pthread_cond_wait(&db->gc_cv, &db->gc_mu);
        int n = 0;
        while (db->gc_head && n < max) {
            g[n++] = db->gc_head;
            db->gc_head = db->gc_head->gnext;
        }
        if (!db->gc_head) db->gc_tail = NULL;
        if (n) { db->gc_groups++; db->gc_items += (uint64_t)n; }
        pthread_mutex_unlock(&db->gc_mu);
        if (!n) break; /* stopping and drained */
        group_commit(db, g, n);
        for (int i = 0; i < n; i++) upload_finish(g[i]);
    }
    return NULL;
}

void eng_upload_commit(eng_db *db, eng_upload *u, eng_upload_fn done, void *user) {
    u->done = done;
    u->user = user;
    u->gnext = NULL;
    if (!u->pending) { upload_finish(u); return; } /* present: nothing to store */
    pthread_mutex_lock(&db->gc_mu);
    int rc = PERR_OK;
    if (db->gc_stop) rc = perr_set(PERR_CANCELLED, "%s: not stored: the database is closing", u->path);
    else if (!db->gc_started) {
        int e = pthread_create(&db->gc_thread, NULL, group_main, db);
        if (e) rc = perr_errno(e, "%s: not stored: starting the committer thread", u->path);
        else db->gc_started = 1;
    }
    if (rc == PERR_OK) {
        if (db->gc_tail) db->gc_tail->gnext = u; else db->gc_head = u;
        db->gc_tail = u;
        pthread_cond_signal(&db->gc_cv);
    }
    pthread_mutex_unlock(&db->gc_mu);
    if (rc) { job_fail(u, rc, perr_msg()); upload_finish(u); }
}

void eng_group_stop(eng_db *db) {
    pthread_mutex_lock(&db->gc_mu);
    db->gc_stop = 1;
    int started = db->gc_started;
    pthread_cond_signal(&db->gc_cv);
    pthread_mutex_unlock(&db->gc_mu);
    if (started) pthread_join(db->gc_thread, NULL);
}

/* eng_add_buffer: an upload whose caller waits for its commit. */
typedef struct add_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc;
    uint64_t id;
    eng_outcome outcome;
    char msg[1024];
} add_wait;

static void add_done(void *user, int rc, uint64_t id, eng_outcome outcome) {
    add_wait *w = user;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->id = id;
    w->outcome = outcome;
    if (rc) snprintf(w->msg, sizeof w->msg, "%s", perr_msg());
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int eng_add_buffer(eng_db *db, const void *data, size_t len, const char *uri,
                   const eng_ingest_opts *o, uint64_t *id, eng_outcome *outcome) {
    if (id) *id = 0;
    if (outcome) *outcome = ENG_FAILED;
    eng_upload *u = NULL;
    int rc = eng_upload_prepare(db, data, len, uri, o, &u);
    if (rc) return rc;
    add_wait w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    eng_upload_commit(db, u, add_done, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    if (id) *id = w.id;
    if (outcome) *outcome = w.outcome;
    return w.rc ? perr_set(w.rc, "%s", w.msg) : PERR_OK;
}

int eng_add_vectors(eng_db *db, const float *vectors, int n, const char *const *uris,
                    const eng_ingest_opts *o, uint64_t *ids) {
    if (!db->st) return perr_set(PERR_INVALID, "no database open (model-only handle)");
    eng_ingest_opts dflt;
    if (!o) { eng_ingest_opts_default(&dflt); o = &dflt; }
    if (db->read_only) return perr_set(PERR_INVALID, "database %s is open read-only", db->dir);
    const char *name = o->collection ? o->collection : ENG_DEFAULT_COLLECTION;
    int rc = eng_coll_ensure(db, name, NULL);
    if (rc) return rc;
    dest d;
    st_kv *meta = NULL;
    if ((rc = dest_init(&d, coll_id(db, name), o, &meta))) return rc;
    job **js = calloc((size_t)n + 1, sizeof *js);
    if (!js) { free(meta); return perr_set(PERR_NOMEM, "add vectors"); }
    for (int i = 0; rc == PERR_OK && i < n; i++) {
        job *j = calloc(1, sizeof *j);
        if (!j) { rc = perr_set(PERR_NOMEM, "add vectors"); break; }
        js[i] = j;
        j->dst = &d;
        j->path = strdup(uris && uris[i] ? uris[i] : "");
        j->vec = malloc(sizeof(float) * (size_t)db->dim);
        if (!j->path || !j->vec) { rc = perr_set(PERR_NOMEM, "add vectors"); break; }
        memcpy(j->vec, vectors + (size_t)i * db->dim, sizeof(float) * (size_t)db->dim);
        rc = idx_normalize(j->vec, 1, db->dim);
        if (rc) { perr_prefix(rc, "vector %d", i); break; }
        /* A vector item's content hash is the hash of its float bytes. */
        eng_sha256(j->vec, sizeof(float) * (size_t)db->dim, j->hash);
        j->pending = 1;
    }
    if (rc == PERR_OK) rc = commit_jobs(db, js, n);
    for (int i = 0; i < n; i++) {
        if (rc == PERR_OK && ids) ids[i] = js[i]->id;
        job_free(js[i]);
    }
    free(js);
    free(meta);
    return rc;
}
