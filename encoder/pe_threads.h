/* pe_threads: the encoder's own small thread pool (encoder-internal).
 *
 * One pool per pe_ctx, sized by the caller (pe_ctx_opts.n_threads): the
 * calling thread is worker 0 and n-1 persistent threads join it for each
 * parallel region. OpenBLAS itself runs single-threaded inside the tasks
 * (see docs/encoder.md), so the pool is the only source of parallelism and
 * n_threads is exactly the number of cores a forward pass occupies.
 * Idle workers spin briefly, then sleep on a condition variable: on a
 * shared 2-core machine a spinning idle pool would steal the other
 * workers' CPU.
 * A pool is used by one caller thread at a time (its pe_ctx's owner).
 */
#ifndef PERCEPT_PE_THREADS_H
#define PERCEPT_PE_THREADS_H

typedef struct pe_pool pe_pool;

/* task in [0, n_tasks); thread in [0, pool size) identifies the worker so
 * that it can use its own scratch memory. */
typedef void (*pe_task_fn)(void *arg, int task, int thread);

/* n_threads >= 1 (total, caller included). */
int pe_pool_new(int n_threads, pe_pool **out);
void pe_pool_free(pe_pool *p);
/* 1 for NULL. */
int pe_pool_size(const pe_pool *p);
/* Runs fn for every task and returns when all are done. With a NULL pool,
 * a pool of one, or one task, runs inline on the caller. */
void pe_pool_run(pe_pool *p, int n_tasks, pe_task_fn fn, void *arg);

#endif
