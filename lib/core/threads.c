/* threads.c — the thread-count setting and a small persistent pool.
 * Workers wait on a condition variable (passive), so they do not spin against
 * the BLAS's own threads on small machines (an OpenMP pool and OpenBLAS threads on 2 cores halve sgemm throughput). */
#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define ALIGN__MAX_THREADS 256

static atomic_int n_threads_setting; /* 0 = not yet set */

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > ALIGN__MAX_THREADS ? ALIGN__MAX_THREADS : (int)n;
}

int align__threads(void)
{
    int n = atomic_load(&n_threads_setting);
    return n > 0 ? n : online_cpus();
}

/* Weak default: a build without the nn layer has no BLAS to tell. */
__attribute__((weak)) void align__blas_set_threads(int n) { (void)n; }

ALIGN_API int align_threads_set(int n_threads)
{
    if (n_threads > ALIGN__MAX_THREADS)
        return align__error(NULL, ALIGN_EINVAL, "align_threads_set: %d threads is more than %d",
                            n_threads, ALIGN__MAX_THREADS);
    int n = n_threads > 0 ? n_threads : online_cpus();
    atomic_store(&n_threads_setting, n);
    align__blas_set_threads(n);
    return ALIGN_OK;
}

ALIGN_API int align_threads_get(void)
{
    return align__threads();
}

/* ---- pool ------------------------------------------------------------------- */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
/* One job in the pool at a time. Host threads may run model calls at once
 * (a frozen model shared between threads): a caller that finds the pool busy
 * runs its chunks itself, in order, with the same bounds, so the result is
 * the same bits as through the pool and nobody waits for another's job. */
static pthread_mutex_t pool_call_mu = PTHREAD_MUTEX_INITIALIZER;
static int pool_started;              /* workers alive */
static uint64_t pool_generation;      /* bumped per job */
static int pool_pending;              /* chunks not yet finished */
static struct {
    align__range_fn fn;
    void *ctx;
    int64_t n;
    int chunks;
} job;

static void chunk_bounds(int64_t n, int chunks, int c, int64_t *b, int64_t *e)
{
    *b = n * c / chunks;
    *e = n * (c + 1) / chunks;
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg; /* 1.. */
    uint64_t seen = 0;
    pthread_mutex_lock(&pool_mu);
    for (;;) {
        while (pool_generation == seen)
            pthread_cond_wait(&pool_work, &pool_mu);
        seen = pool_generation;
        if (id < job.chunks) {
            align__range_fn fn = job.fn;
            void *ctx = job.ctx;
            int64_t b, e;
            chunk_bounds(job.n, job.chunks, id, &b, &e);
            pthread_mutex_unlock(&pool_mu);
            if (e > b)
                fn(ctx, b, e, id);
            pthread_mutex_lock(&pool_mu);
            if (--pool_pending == 0)
                pthread_cond_signal(&pool_done);
        }
    }
    return NULL;
}

static void ensure_workers(int want)
{
    /* called with pool_mu held */
    while (pool_started < want - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, worker_main, (void *)(intptr_t)(pool_started + 1)) != 0) {
            pthread_attr_destroy(&attr);
            break;
        }
        pthread_attr_destroy(&attr);
        pool_started++;
    }
}

/* Every chunk on the calling thread, in order (same bounds as the pool's). */
static void run_inline(int64_t n, int chunks, align__range_fn fn, void *ctx)
{
    for (int c = 0; c < chunks; c++) {
        int64_t b, e;
        chunk_bounds(n, chunks, c, &b, &e);
        if (e > b)
            fn(ctx, b, e, c);
    }
}

void align__parallel_for(int64_t n, align__range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    int chunks = align__threads();
    if (chunks > n)
        chunks = (int)n;
    if (chunks <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    if (pthread_mutex_trylock(&pool_call_mu) != 0) { /* pool busy: run inline */
        run_inline(n, chunks, fn, ctx);
        return;
    }
    pthread_mutex_lock(&pool_mu);
    ensure_workers(chunks);
    if (pool_started < chunks - 1) { /* could not start threads: run serially, same chunking */
        pthread_mutex_unlock(&pool_mu);
        run_inline(n, chunks, fn, ctx);
        pthread_mutex_unlock(&pool_call_mu);
        return;
    }
    job.fn = fn;
    job.ctx = ctx;
    job.n = n;
    job.chunks = chunks;
    pool_pending = chunks - 1;
    pool_generation++;
    pthread_cond_broadcast(&pool_work);
    pthread_mutex_unlock(&pool_mu);

    int64_t b, e;
    chunk_bounds(n, chunks, 0, &b, &e);
    if (e > b)
        fn(ctx, b, e, 0);

    pthread_mutex_lock(&pool_mu);
    while (pool_pending > 0)
        pthread_cond_wait(&pool_done, &pool_mu);
    pthread_mutex_unlock(&pool_mu);
    pthread_mutex_unlock(&pool_call_mu);
}

double align__now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
