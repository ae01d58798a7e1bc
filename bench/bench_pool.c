/* bench/bench_pool.c - the task pool: parallel_for call overhead and speed-up, and
   asynchronous submit throughput with the pool's own latency metrics.

   Usage: build/bench_pool [threads]     (workers; default fa_cpu_count() - 1)

   parallel_for is compared with running the same tiles serially and with the naive
   alternative of creating one thread per tile-share for every call (pthread_create/join). */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <pthread.h>

static volatile double sink;

/* About `us` microseconds of arithmetic (calibrated once). */
static double iters_per_us = 100.0;
static void burn(double us)
{
    long i, n = (long)(us * iters_per_us);
    double x = 1.0;
    for (i = 0; i < n; i++) x = x * 1.0000001 + 1e-9;
    sink = x;
}
static void calibrate(void)
{
    double t0 = bench_now(), t;
    long n = 20000000, i;
    double x = 1.0;
    for (i = 0; i < n; i++) x = x * 1.0000001 + 1e-9;
    sink = x;
    t = bench_now() - t0;
    iters_per_us = (double)n / (t * 1e6);
}

typedef struct job { double us; } job;
static void tile(void *ctx, int64_t i, int w)
{
    (void)i; (void)w;
    burn(((job *)ctx)->us);
}

/* naive: spawn `threads` threads per call, each runs an equal share of the tiles */
typedef struct share { job *j; int64_t lo, hi; } share;
static void *share_main(void *arg)
{
    share *s = (share *)arg;
    int64_t i;
    for (i = s->lo; i < s->hi; i++) tile(s->j, i, 0);
    return NULL;
}
static void spawn_for(int threads, int64_t n, job *j)
{
    pthread_t t[256];
    share s[256];
    int k;
    for (k = 0; k < threads; k++) {
        s[k].j = j;
        s[k].lo = n * k / threads;
        s[k].hi = n * (k + 1) / threads;
        pthread_create(&t[k], NULL, share_main, &s[k]);
    }
    for (k = 0; k < threads; k++) pthread_join(t[k], NULL);
}

static fa_status tiny_task(void *arg)
{
    (void)arg;
    return FA_OK;
}

int main(int argc, char **argv)
{
    fa_pool *p = NULL;
    fa_pool_desc d;
    fa_pool_stats st;
    int threads, reps, r, wi;
    double t_begin = bench_now();
    static const double work_us[3] = {0.0, 5.0, 50.0};
    memset(&d, 0, sizeof d);
    d.threads = argc > 1 ? atoi(argv[1]) : 0;
    if (fa_pool_create(&p, &d) != FA_OK) {
        printf("fa_pool_create failed: %s\n", fa_last_error());
        return 1;
    }
    threads = fa_pool_size(p);
    calibrate();
    bench_print_machine();
    printf("pool: %d workers + the calling thread\n\n", threads);

    printf("1. parallel_for: n = 16 x (workers + 1) tiles per call, median per call (us)\n");
    printf("   %-12s %12s %12s %14s %10s\n", "tile (us)", "serial", "parallel_for",
           "spawn threads", "speed-up");
    for (wi = 0; wi < 3; wi++) {
        job j;
        int64_t n = 16 * (int64_t)(threads + 1), i;
        double ser[64], par[64], spw[64];
        j.us = work_us[wi];
        reps = wi == 2 ? 21 : 61;
        for (r = 0; r < reps; r++) {
            double t0 = bench_now();
            for (i = 0; i < n; i++) tile(&j, i, 0);
            ser[r] = (bench_now() - t0) * 1e6;
            t0 = bench_now();
            fa_pool_parallel_for(p, n, tile, &j);
            par[r] = (bench_now() - t0) * 1e6;
            t0 = bench_now();
            spawn_for(threads + 1, n, &j);
            spw[r] = (bench_now() - t0) * 1e6;
        }
        {
            double s = bench_median(ser, reps), q = bench_median(par, reps), w = bench_median(spw, reps);
            printf("   %12.1f %12.1f %12.1f %14.1f %9.2fx\n", s / (double)n, s, q, w,
                   q > 0 ? s / q : 0);
        }
    }

    printf("\n2. submit: a burst of tiny tasks from one outside thread, until idle\n");
    {
        int n = 200000, i, rejected = 0;
        double t0 = bench_now(), dt;
        for (i = 0; i < n; i++)
            while (fa_pool_submit(p, tiny_task, NULL, (fa_priority)(i % 3)) == FA_ERR_FULL) rejected++;
        fa_pool_wait_idle(p, FA_WAIT_FOREVER);
        dt = bench_now() - t0;
        fa_pool_get_stats(p, &st);
        printf("   %d tasks in %.3f s: %.2f M tasks/s (%d full-queue retries by the submitter)\n", n,
               dt, n / dt / 1e6, rejected);
        printf("   queue wait p50 %.1f us, p99 %.1f us (the backlog of the burst)\n",
               st.wait_p50_ns / 1e3, st.wait_p99_ns / 1e3);
    }
    fa_pool_destroy(p, FA_POOL_FINISH);

    printf("\n3. submit latency: one task at a time, submit -> done -> next (idle workers sleep)\n");
    {
        int n = 2000, i;
        double rt[2000];
        p = NULL;
        fa_pool_create(&p, &d);
        for (i = 0; i < n; i++) {
            double t0 = bench_now();
            fa_pool_submit(p, tiny_task, NULL, FA_PRIO_NORMAL);
            fa_pool_wait_idle(p, FA_WAIT_FOREVER);
            rt[i] = (bench_now() - t0) * 1e6;
        }
        fa_pool_get_stats(p, &st);
        printf("   round trip p50 %.1f us, p99 %.1f us; pool metrics: queue wait p50 %.1f us, "
               "p99 %.1f us, run p50 %lld ns\n", bench_median(rt, n), bench_quantile(rt, n, 0.99),
               st.wait_p50_ns / 1e3, st.wait_p99_ns / 1e3, (long long)st.run_p50_ns);
    }
    fa_pool_destroy(p, FA_POOL_FINISH);
    printf("\ntotal bench time %.1f s\n", bench_now() - t_begin);
    return 0;
}
