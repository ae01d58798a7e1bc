/* examples/queue_pipeline.c - the queue and pool sections in one small program.

   A reader thread feeds work items into a blocking MPMC queue; two consumer threads take them
   out (sleeping when the queue is empty) and close-down is signalled with fa_mpmc_close. Then
   a task pool squares a vector with parallel_for (per-worker partial sums, no locks), runs an
   asynchronous task that fails twice with FA_ERR_AGAIN before succeeding (retried with
   backoff), and prints its metrics.

   Build and run:  make examples && build/ex_queue_pipeline */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

typedef struct item { int64_t id; double value; } item; /* any fixed size works */

static fa_mpmc queue;
static double totals[2];

static void *consumer(void *arg)
{
    int me = (int)(intptr_t)arg;
    item it;
    /* sleeps while empty; returns FA_ERR_CLOSED once closed and drained */
    while (fa_mpmc_pop_wait(&queue, &it, FA_WAIT_FOREVER) == FA_OK) totals[me] += it.value;
    return NULL;
}

static double *partial; /* one slot per worker index: no sharing, no atomics */
static void square_tile(void *ctx, int64_t i, int worker)
{
    double *v = (double *)ctx;
    int64_t k;
    for (k = i * 1000; k < (i + 1) * 1000; k++) partial[worker] += v[k] * v[k];
}

static int attempts;
static fa_status flaky(void *arg)
{
    (void)arg;
    return ++attempts < 3 ? FA_ERR_AGAIN : FA_OK; /* transient failure twice */
}
static void flaky_done(void *arg, fa_status s)
{
    (void)arg;
    printf("flaky task finished: %s after %d attempts\n", fa_status_str(s), attempts);
}

int main(void)
{
    fa_queue_desc qd;
    pthread_t t[2];
    fa_pool *pool;
    fa_pool_desc pd;
    fa_task task;
    fa_pool_stats st;
    static double v[64000];
    double sum = 0;
    int64_t i;
    int w;

    memset(&qd, 0, sizeof qd);
    qd.capacity = 100;            /* rounded up to 128 for the MPMC queue */
    qd.elem_size = sizeof(item);
    qd.blocking = 1;              /* sleepers are woken at once */
    if (fa_mpmc_init(&queue, &qd) != FA_OK) return 1;
    for (w = 0; w < 2; w++) pthread_create(&t[w], NULL, consumer, (void *)(intptr_t)w);
    for (i = 1; i <= 10000; i++) {
        item it;
        it.id = i;
        it.value = (double)i;
        fa_mpmc_push_wait(&queue, &it, FA_WAIT_FOREVER); /* sleeps while full */
    }
    fa_mpmc_close(&queue); /* consumers drain what is left, then stop */
    for (w = 0; w < 2; w++) pthread_join(t[w], NULL);
    printf("pipeline: consumers got %.0f + %.0f = %.0f (want 50005000)\n", totals[0], totals[1],
           totals[0] + totals[1]);
    fa_mpmc_destroy(&queue);

    memset(&pd, 0, sizeof pd); /* zero: fa_cpu_count() - 1 workers */
    if (fa_pool_create(&pool, &pd) != FA_OK) {
        printf("no pool: %s\n", fa_last_error());
        return 1;
    }
    for (i = 0; i < 64000; i++) v[i] = 1.0;
    /* worker indices run from 0 to fa_pool_size(pool) inclusive (the caller's) */
    partial = (double *)calloc((size_t)fa_pool_size(pool) + 1, sizeof *partial);
    if (!partial) return 1;
    fa_pool_parallel_for(pool, 64, square_tile, v);
    for (w = 0; w <= fa_pool_size(pool); w++) sum += partial[w];
    printf("parallel_for on %d workers + caller: sum of squares %.0f (want 64000)\n",
           fa_pool_size(pool), sum);

    memset(&task, 0, sizeof task);
    task.fn = flaky;
    task.done = flaky_done;
    task.priority = FA_PRIO_HIGH;
    task.max_retries = 5;
    task.retry_delay_ns = 1000000; /* 1 ms, then 2 ms, ... */
    fa_pool_submit_task(pool, &task);
    fa_pool_wait_idle(pool, FA_WAIT_FOREVER);
    fa_pool_get_stats(pool, &st);
    printf("pool metrics: %llu runs, %llu retries, run time p50 %lld ns\n",
           (unsigned long long)st.runs, (unsigned long long)st.retries, (long long)st.run_p50_ns);
    fa_pool_destroy(pool, FA_POOL_FINISH);
    free(partial);
    return 0;
}
