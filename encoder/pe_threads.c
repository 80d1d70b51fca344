/* pe_threads: persistent worker pool for the encoder's forward passes.
 *
 * DESIGN: a job is (fn, arg, n_tasks); tasks are claimed with an atomic
 * counter so uneven tasks balance themselves. A generation counter
 * publishes a job; workers spin on it for a few microseconds, then sleep.
 * The caller takes part in every job and waits until every worker has
 * left it (a worker never touches the job fields after decrementing
 * `active`), so the next job can be published safely.
 * Never does: allocate per job, run tasks after pe_pool_free returns.
 */
#define _GNU_SOURCE
#include "encoder/pe_threads.h"

#include "common/perr.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PE_PAUSE() _mm_pause()
#else
#define PE_PAUSE() ((void)0)
#endif

enum { PE_SPIN = 4000 }; /* pause iterations before sleeping (~10-50 us) */

struct pe_pool {
    int n;                       /* threads including the caller */
    pthread_t *threads;          /* n-1 workers */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    /* current job (written by the caller before bumping gen) */
    pe_task_fn fn;
    void *arg;
    int n_tasks;
    atomic_int next;             /* next unclaimed task */
    atomic_int active;           /* workers still inside the job */
    atomic_uint gen;             /* job generation */
    atomic_int stop;
};

typedef struct { pe_pool *p; int idx; } worker_arg;

static void run_tasks(pe_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->arg, t, thread);
    }
}

static void *worker_main(void *a) {
    worker_arg *wa = a;
    pe_pool *p = wa->p;
    int idx = wa->idx;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < PE_SPIN; i++) {
            PE_PAUSE();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        run_tasks(p, idx);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int pe_pool_new(int n_threads, pe_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 256)
        return perr_set(PERR_INVALID, "thread pool: %d threads (1..256)", n_threads);
    pe_pool *p = calloc(1, sizeof *p);
    if (!p) return perr_set(PERR_NOMEM, "thread pool");
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (n_threads > 1) {
        p->threads = calloc(n_threads - 1, sizeof *p->threads);
        if (!p->threads) { pe_pool_free(p); return perr_set(PERR_NOMEM, "thread pool"); }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) { wa->p = p; wa->idx = i; }
            int rc = wa ? pthread_create(&p->threads[i - 1], NULL, worker_main, wa) : ENOMEM;
            if (rc) {
                free(wa);
                pe_pool_free(p);
                return perr_errno(rc, "thread pool: starting thread %d of %d", i + 1, n_threads);
            }
            p->n++;
        }
    }
    *out = p;
    return PERR_OK;
}

void pe_pool_free(pe_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int pe_pool_size(const pe_pool *p) { return p ? p->n : 1; }

void pe_pool_run(pe_pool *p, int n_tasks, pe_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    for (int i = 0; atomic_load_explicit(&p->active, memory_order_acquire) && i < PE_SPIN; i++)
        PE_PAUSE();
    if (atomic_load_explicit(&p->active, memory_order_acquire)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active)) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
