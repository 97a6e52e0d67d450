/* mlpx experiment (BSD-3-Clause): one thread pool for OpenBLAS's jobs and mlpx's
 * element-wise work, through OpenBLAS's threads-callback hook. Two threads: the
 * caller and one worker that spins for a while after each task, then sleeps on a
 * futex. A measurement prototype, not part of the library (see README.md here). */
#define _GNU_SOURCE
#include <immintrin.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void (*dojob_fn)(int, void *, int);
typedef void (*task_fn)(void *);

static _Atomic unsigned seq = 0;  /* bumped once per posted task */
static _Atomic int done = 1;
static _Atomic int sleeping = 0;
static int mode;                  /* 0: task, 1: an OpenBLAS job */
static task_fn t_fn;
static void *t_arg;
static dojob_fn j_fn;
static void *j_data;
static int j_int;
static long spin_limit = 100000;  /* pause loops before the worker sleeps */
static int started = 0;
static pthread_t worker_thread;
static _Atomic long jobs_run = 0;

static unsigned first_seen;  /* seq when the worker was made (before any post) */

static void *worker(void *unused) {
    (void)unused;
    unsigned seen = first_seen;
    for (;;) {
        long n = 0;
        unsigned s;
        while ((s = atomic_load_explicit(&seq, memory_order_acquire)) == seen) {
            if (++n < spin_limit) {
                _mm_pause();
                continue;
            }
            atomic_store(&sleeping, 1);
            if (atomic_load(&seq) == seen)
                syscall(SYS_futex, &seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            atomic_store(&sleeping, 0);
            n = 0;
        }
        seen = s;
        if (mode == 1)
            j_fn(1, j_data, j_int);
        else
            t_fn(t_arg);
        atomic_store_explicit(&done, 1, memory_order_release);
    }
    return NULL;
}

static void start(void) {
    if (!started) {
        started = 1;
        first_seen = atomic_load(&seq);
        pthread_create(&worker_thread, NULL, worker, NULL);
    }
}

static void post(void) {
    atomic_store(&done, 0);
    atomic_fetch_add_explicit(&seq, 1, memory_order_seq_cst);
    if (atomic_load(&sleeping))
        syscall(SYS_futex, &seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void wait_done(void) {
    while (!atomic_load_explicit(&done, memory_order_acquire))
        _mm_pause();
}

void pool_set_spin(long n) { spin_limit = n; }
long pool_jobs_run(void) { return atomic_load(&jobs_run); }

/* OpenBLAS's callback: job i is dojob(i, jobdata + i * elsize, dojob_data); all jobs
 * of a call must run at the same time. This pool has two threads. */
void pool_blas_callback(int sync, dojob_fn dojob, int numjobs, size_t elsize,
                        void *jobdata, int dojob_data) {
    (void)sync;
    atomic_fetch_add(&jobs_run, numjobs);
    if (numjobs <= 1) {
        dojob(0, jobdata, dojob_data);
        return;
    }
    if (numjobs > 2) {  /* the jobs must run at once, and this pool has two threads */
        fprintf(stderr, "pool.c: OpenBLAS asked for %d threads; run with "
                        "OPENBLAS_NUM_THREADS=2 or fewer\n", numjobs);
        abort();
    }
    start();
    mode = 1;
    j_fn = dojob;
    j_data = (char *)jobdata + elsize;
    j_int = dojob_data;
    post();
    dojob(0, jobdata, dojob_data);
    wait_done();
}

/* The fused Adam kernel of mlpx/_fast/_numba.py (mode 0: no decay), the same float32
 * operations in the same order (compile without contraction into FMAs). */
typedef struct {
    float *p, *g, *m, *v;
    long n;
    float b1, b2, c, eps_b, step;
} adam_args;

static void adam_f32(void *arg) {
    adam_args *a = arg;
    for (long i = 0; i < a->n; i++) {
        float g = a->g[i];
        float mi = a->m[i] * a->b1;
        mi = mi + g;
        float vi = a->v[i] * a->b2;
        float g2 = g * g;
        g2 = g2 * a->c;
        vi = vi + g2;
        float d = sqrtf(vi);
        d = d + a->eps_b;
        d = mi / d;
        d = d * a->step;
        a->m[i] = mi;
        a->v[i] = vi;
        a->p[i] = a->p[i] - d;
    }
}

void pool_adam(float *p, float *g, float *m, float *v, long n, float b1, float b2,
               float c, float eps_b, float step, int split) {
    adam_args a0 = {p, g, m, v, n, b1, b2, c, eps_b, step};
    if (!split || n < 4096) {
        adam_f32(&a0);
        return;
    }
    long h = (n / 2) & ~15L;
    adam_args a1 = {p + h, g + h, m + h, v + h, n - h, b1, b2, c, eps_b, step};
    a0.n = h;
    start();
    mode = 0;
    t_fn = adam_f32;
    t_arg = &a1;
    post();
    adam_f32(&a0);
    wait_done();
}
