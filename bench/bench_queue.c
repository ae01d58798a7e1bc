/* bench/bench_queue.c - ring queue throughput and latency, side by side with a mutex+condvar
   queue and (when installed) Concurrency Kit's ck_ring (Debian: libck-dev).

   Usage: build/bench_queue [max_threads [sections]]
          max_threads: default all logical CPUs; sections: letters s (SPSC), m (MPMC),
          p (ping-pong), default "smp". FA_BENCH_RUN_S=<seconds> sets the length of one run.

   1. SPSC throughput: 8-byte items, capacity 1024, producer and consumer pinned to different
      physical cores (never two SMT siblings); items/s, median of several runs.
   2. MPMC throughput: k producers and k consumers (k = 1, 2, 4, ... while 2k <= max_threads),
      threads pinned round-robin; items/s, median of runs.
   3. Ping-pong round trip: two pinned threads bounce one item through two SPSC queues;
      median and p99 of single round trips (each timed with clock_gettime, ~20 ns included).
   Threads that find a queue full/empty spin briefly, then yield; the same policy for every
   queue (the mutex queue sleeps on its condition variables instead, as such queues do). */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#ifdef FA_HAVE_CK
#include <ck_ring.h>
#endif

#define CAP 1024
#define PP_ROUNDS 50000
#define RUNS 7

static int ncpu;

static void pin(int core)
{
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core % ncpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
#else
    (void)core;
#endif
}

/* The CPU for the second thread of a pair: the first one that is not an SMT sibling of CPU 0
   (from /sys topology), so the pair runs on two different physical cores. */
static int other_core = 1;
static void find_other_core(void)
{
    char buf[256];
    int c;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "r");
    if (!f) return;
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    for (c = 1; c < ncpu; c++) {
        /* the list looks like "0,8" or "0-1": test membership of c */
        char *q = buf;
        int in = 0;
        while (*q) {
            long a = strtol(q, &q, 10), b = a;
            if (*q == '-') b = strtol(q + 1, &q, 10);
            if (c >= a && c <= b) in = 1;
            if (*q == ',') q++;
            else break;
        }
        if (!in) { other_core = c; return; }
    }
}

static void relax(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        *spins = 0;
        sched_yield();
    }
}

/* ---- the mutex + condition variable queue (the classic baseline) ---- */
typedef struct mq {
    pthread_mutex_t m;
    pthread_cond_t not_empty, not_full;
    uint64_t *buf;
    size_t cap, head, count;
    int wait_empty, wait_full;
} mq;

static void mq_init(mq *q, size_t cap)
{
    pthread_mutex_init(&q->m, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->buf = (uint64_t *)malloc(cap * sizeof(uint64_t));
    q->cap = cap;
    q->head = q->count = 0;
    q->wait_empty = q->wait_full = 0;
}
static void mq_destroy(mq *q)
{
    pthread_mutex_destroy(&q->m);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->buf);
}
static void mq_push(mq *q, uint64_t v)
{
    pthread_mutex_lock(&q->m);
    while (q->count == q->cap) {
        q->wait_full++;
        pthread_cond_wait(&q->not_full, &q->m);
        q->wait_full--;
    }
    q->buf[(q->head + q->count++) % q->cap] = v;
    if (q->wait_empty) pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->m);
}
static uint64_t mq_pop(mq *q)
{
    uint64_t v;
    pthread_mutex_lock(&q->m);
    while (q->count == 0) {
        q->wait_empty++;
        pthread_cond_wait(&q->not_empty, &q->m);
        q->wait_empty--;
    }
    v = q->buf[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    if (q->wait_full) pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->m);
    return v;
}

/* ---- one interface for the benchmark loops ---- */
enum { IMPL_FA, IMPL_CK, IMPL_MUTEX, IMPL_FA_WAIT, IMPL_COUNT };
static const char *impl_name[IMPL_COUNT] = {"flashattn", "ck_ring", "mutex+condvar", "flashattn (futex wait)"};

typedef struct anyq {
    int impl, mpmc;
    fa_spsc spsc;
    fa_mpmc mpmcq;
    mq m;
#ifdef FA_HAVE_CK
    ck_ring_t ck;
    ck_ring_buffer_t *ckbuf;
#endif
} anyq;

static anyq *q_new(int impl, int mpmc, size_t cap)
{
    anyq *q = (anyq *)fa_aligned_alloc(sizeof(anyq), 128);
    fa_queue_desc d;
    memset(q, 0, sizeof *q);
    q->impl = impl;
    q->mpmc = mpmc;
    memset(&d, 0, sizeof d);
    d.capacity = cap;
    d.elem_size = 8;
    d.blocking = impl == IMPL_FA_WAIT;
    if (impl == IMPL_FA || impl == IMPL_FA_WAIT) {
        if (mpmc) fa_mpmc_init(&q->mpmcq, &d);
        else fa_spsc_init(&q->spsc, &d);
    } else if (impl == IMPL_MUTEX) {
        mq_init(&q->m, cap);
    }
#ifdef FA_HAVE_CK
    else {
        /* ck_ring keeps one slot empty: a ring of 2*cap slots holds >= cap items */
        unsigned slots = (unsigned)(cap * 2);
        q->ckbuf = (ck_ring_buffer_t *)fa_aligned_alloc(slots * sizeof(ck_ring_buffer_t), 128);
        ck_ring_init(&q->ck, slots);
    }
#endif
    return q;
}
static void q_free(anyq *q)
{
    if (q->impl == IMPL_FA || q->impl == IMPL_FA_WAIT) {
        if (q->mpmc) fa_mpmc_destroy(&q->mpmcq);
        else fa_spsc_destroy(&q->spsc);
    } else if (q->impl == IMPL_MUTEX) {
        mq_destroy(&q->m);
    }
#ifdef FA_HAVE_CK
    else fa_aligned_free(q->ckbuf);
#endif
    fa_aligned_free(q);
}

static inline void q_push(anyq *q, uint64_t v)
{
    unsigned spins = 0;
    switch (q->impl) {
    case IMPL_FA:
        if (q->mpmc) while (fa_mpmc_push(&q->mpmcq, &v) != FA_OK) relax(&spins);
        else while (fa_spsc_push(&q->spsc, &v) != FA_OK) relax(&spins);
        break;
    case IMPL_FA_WAIT:
        if (q->mpmc) fa_mpmc_push_wait(&q->mpmcq, &v, FA_WAIT_FOREVER);
        else fa_spsc_push_wait(&q->spsc, &v, FA_WAIT_FOREVER);
        break;
    case IMPL_MUTEX: mq_push(&q->m, v); break;
#ifdef FA_HAVE_CK
    default:
        if (q->mpmc) while (!ck_ring_enqueue_mpmc(&q->ck, q->ckbuf, (void *)(uintptr_t)v)) relax(&spins);
        else while (!ck_ring_enqueue_spsc(&q->ck, q->ckbuf, (void *)(uintptr_t)v)) relax(&spins);
        break;
#else
    default: break;
#endif
    }
}
static inline uint64_t q_pop(anyq *q)
{
    unsigned spins = 0;
    uint64_t v = 0;
    switch (q->impl) {
    case IMPL_FA:
        if (q->mpmc) while (fa_mpmc_pop(&q->mpmcq, &v) != FA_OK) relax(&spins);
        else while (fa_spsc_pop(&q->spsc, &v) != FA_OK) relax(&spins);
        break;
    case IMPL_FA_WAIT:
        if (q->mpmc) fa_mpmc_pop_wait(&q->mpmcq, &v, FA_WAIT_FOREVER);
        else fa_spsc_pop_wait(&q->spsc, &v, FA_WAIT_FOREVER);
        break;
    case IMPL_MUTEX: v = mq_pop(&q->m); break;
#ifdef FA_HAVE_CK
    default: {
        void *p;
        if (q->mpmc) while (!ck_ring_dequeue_mpmc(&q->ck, q->ckbuf, &p)) relax(&spins);
        else while (!ck_ring_dequeue_spsc(&q->ck, q->ckbuf, &p)) relax(&spins);
        v = (uint64_t)(uintptr_t)p;
        break;
    }
#else
    default: break;
#endif
    }
    return v;
}

/* ---- throughput ---- */
typedef struct tp {
    anyq *q;
    uint64_t items;      /* per thread */
    int core;
    int *start;          /* released together */
    uint64_t sum;
} tp;

static void wait_start(int *start)
{
    while (!__atomic_load_n(start, __ATOMIC_ACQUIRE)) sched_yield();
}
static void *prod_main(void *arg)
{
    tp *t = (tp *)arg;
    uint64_t i;
    pin(t->core);
    wait_start(t->start);
    for (i = 1; i <= t->items; i++) q_push(t->q, i);
    return NULL;
}
static void *cons_main(void *arg)
{
    tp *t = (tp *)arg;
    uint64_t i, s = 0;
    pin(t->core);
    wait_start(t->start);
    for (i = 0; i < t->items; i++) s += q_pop(t->q);
    t->sum = s;
    return NULL;
}

/* k producers, k consumers; returns items/s (0 on a checksum error). */
static double throughput(int impl, int mpmc, int k, uint64_t total)
{
    anyq *q = q_new(impl, mpmc, CAP);
    pthread_t th[256];
    tp args[256];
    int i, start = 0;
    uint64_t per = total / (uint64_t)k, sum = 0, want;
    double t0, t1;
    for (i = 0; i < 2 * k; i++) {
        args[i].q = q;
        args[i].items = per;
        args[i].core = k == 1 ? (i == 0 ? 0 : other_core) : i;
        args[i].start = &start;
        args[i].sum = 0;
        pthread_create(&th[i], NULL, i < k ? prod_main : cons_main, &args[i]);
    }
    sched_yield();
    t0 = bench_now();
    __atomic_store_n(&start, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 2 * k; i++) pthread_join(th[i], NULL);
    t1 = bench_now();
    for (i = k; i < 2 * k; i++) sum += args[i].sum;
    want = (uint64_t)k * (per * (per + 1) / 2);
    q_free(q);
    if (sum != want) {
        printf("  !! %s: checksum mismatch\n", impl_name[impl]);
        return 0;
    }
    return (double)(per * (uint64_t)k) / (t1 - t0);
}

/* Measures the given implementations interleaved, run by run (A B C A B C ...), so that
   they see the same background load; each run is sized by a short calibration run to last
   about RUN_SECONDS. med[i] is the median rate of impls[i]; ratio[i] the median over rounds of
   rate(impls[0]) / rate(impls[i]). */
static double RUN_SECONDS = 0.2;
static void measure(const int *impls, int m, int mpmc, int k, int runs, double *med, double *ratio)
{
    double v[8][16], rr[8][16];
    uint64_t n[8];
    int i, r;
    for (i = 0; i < m; i++) {
        double rate = throughput(impls[i], mpmc, k, 20000 * (uint64_t)k);
        n[i] = (uint64_t)(rate * RUN_SECONDS);
        if (n[i] < 50000) n[i] = 50000;
        if (n[i] > 100000000) n[i] = 100000000;
    }
    for (r = 0; r < runs; r++)
        for (i = 0; i < m; i++) v[i][r] = throughput(impls[i], mpmc, k, n[i]);
    for (i = 0; i < m; i++)
        for (r = 0; r < runs; r++) rr[i][r] = v[i][r] > 0 ? v[0][r] / v[i][r] : 0;
    for (i = 0; i < m; i++) {
        med[i] = bench_median(v[i], runs);
        ratio[i] = bench_median(rr[i], runs);
    }
}

/* ---- ping-pong ---- */
typedef struct pp { anyq *a, *b; int rounds; int *start; } pp;
static void *pong_main(void *arg)
{
    pp *p = (pp *)arg;
    int i;
    pin(other_core);
    wait_start(p->start);
    for (i = 0; i < p->rounds; i++) q_push(p->b, q_pop(p->a));
    return NULL;
}
static void pingpong(int impl, int rounds, double *med_ns, double *p99_ns)
{
    pp p;
    pthread_t t;
    int i, start = 0;
    double *rtt = (double *)malloc((size_t)rounds * sizeof(double));
    p.a = q_new(impl, 0, CAP);
    p.b = q_new(impl, 0, CAP);
    p.rounds = rounds;
    p.start = &start;
    pthread_create(&t, NULL, pong_main, &p);
    pin(0);
    __atomic_store_n(&start, 1, __ATOMIC_RELEASE);
    for (i = 0; i < rounds; i++) {
        double t0 = bench_now();
        q_push(p.a, (uint64_t)i);
        (void)q_pop(p.b);
        rtt[i] = (bench_now() - t0) * 1e9;
    }
    pthread_join(t, NULL);
    /* the first rounds include thread start-up: drop 1% */
    *med_ns = bench_median(rtt + rounds / 100, rounds - rounds / 100);
    *p99_ns = bench_quantile(rtt + rounds / 100, rounds - rounds / 100, 0.99);
    q_free(p.a);
    q_free(p.b);
    free(rtt);
}

static int have(int impl)
{
#ifdef FA_HAVE_CK
    (void)impl;
    return 1;
#else
    return impl != IMPL_CK;
#endif
}

int main(int argc, char **argv)
{
    int maxt, k, i;
    double t_begin = bench_now();
    const char *sections = argc > 2 ? argv[2] : "smp";
    ncpu = fa_cpu_count();
    find_other_core();
    if (getenv("FA_BENCH_RUN_S")) RUN_SECONDS = atof(getenv("FA_BENCH_RUN_S"));
    maxt = argc > 1 ? atoi(argv[1]) : ncpu;
    if (maxt < 2) maxt = 2;
    if (maxt > 256) maxt = 256;
    bench_print_machine();
    printf("threads: up to %d (pinned round-robin over %d CPUs; pairs on CPUs 0 and %d)%s\n",
           maxt, ncpu, other_core, maxt > ncpu ? "  [oversubscribed: more threads than CPUs]" : "");
#if defined(FA__MPMC_REMAP) && defined(FA__MPMC_BACKOFF)
    printf("flashattn queue design: SPSC slot sequences; MPMC slot remap %d, CAS backoff up to %d\n",
           FA__MPMC_REMAP, FA__MPMC_BACKOFF);
#else
    printf("flashattn queue design: before remap/backoff (index-polling SPSC, plain Vyukov MPMC)\n");
#endif
#ifdef FA_HAVE_CK
    printf("baselines: mutex+condvar queue, Concurrency Kit ck_ring\n");
#else
    printf("baselines: mutex+condvar queue; ck_ring ABSENT (apt-get install libck-dev, then "
           "rebuild: make bench)\n");
#endif
    if (strchr(sections, 's')) {
    printf("\n1. SPSC throughput, 8-byte items, capacity %d, median of %d interleaved runs of ~%.2f s\n", CAP,
           RUNS, RUN_SECONDS);
    printf("   %-24s %14s %12s\n", "queue", "Mitems/s", "fa / this");
    {
        int impls[3], m = 0;
        double med[3], ratio[3];
        impls[m++] = IMPL_FA;
        if (have(IMPL_CK)) impls[m++] = IMPL_CK;
        impls[m++] = IMPL_MUTEX;
        measure(impls, m, 0, 1, RUNS, med, ratio);
        for (i = 0; i < m; i++)
            printf("   %-24s %14.1f %11.2fx\n", impl_name[impls[i]], med[i] / 1e6, ratio[i]);
        if (!have(IMPL_CK)) printf("   %-24s %14s\n", impl_name[IMPL_CK], "absent");
        fflush(stdout);
    }
    }

    if (strchr(sections, 'm')) {
    printf("\n2. MPMC throughput, 8-byte items, capacity %d, k producers + k consumers, "
           "median of 3 interleaved runs of ~%.2f s\n", CAP, RUN_SECONDS);
    printf("   %-6s %14s %14s %14s %10s %10s\n", "k", "flashattn", "ck_ring", "mutex+condvar",
           "fa/ck", "fa/mutex");  /* ratios: median over rounds */
    printf("   %-6s %14s %14s %14s\n", "", "Mitems/s", "Mitems/s", "Mitems/s");
    for (k = 1; 2 * k <= maxt; k *= 2) {
        int impls[3] = {IMPL_FA, IMPL_MUTEX, IMPL_CK};
        double med[3], ratio[3];
        measure(impls, have(IMPL_CK) ? 3 : 2, 1, k, 3, med, ratio);
        if (have(IMPL_CK))
            printf("   %-6d %14.1f %14.1f %14.1f %9.2fx %9.1fx\n", k, med[0] / 1e6, med[2] / 1e6,
                   med[1] / 1e6, ratio[2], ratio[1]);
        else
            printf("   %-6d %14.1f %14s %14.1f %10s %9.1fx\n", k, med[0] / 1e6, "absent",
                   med[1] / 1e6, "-", ratio[1]);
        fflush(stdout);
    }
    if (maxt < 4) printf("   (pass a larger max_threads to measure k > 1 on a bigger machine)\n");
    }

    if (strchr(sections, 'p')) {
    printf("\n3. Ping-pong round trip between two pinned threads (two SPSC queues), %d rounds "
           "(%d for the sleeping queues)\n", PP_ROUNDS, PP_ROUNDS / 10);
    printf("   %-24s %12s %12s\n", "queue", "median ns", "p99 ns");
    {
        int order[4] = {IMPL_FA, IMPL_CK, IMPL_FA_WAIT, IMPL_MUTEX};
        for (i = 0; i < 4; i++) {
            double med, p99;
            int im = order[i];
            if (!have(im)) { printf("   %-24s %12s\n", impl_name[im], "absent"); continue; }
            pingpong(im, im == IMPL_MUTEX || im == IMPL_FA_WAIT ? PP_ROUNDS / 10 : PP_ROUNDS, &med, &p99);
            printf("   %-24s %12.0f %12.0f\n", impl_name[im], med, p99);
            fflush(stdout);
        }
    }
    }
    printf("\nspin-polling queues: flashattn and ck_ring; sleeping: flashattn (futex wait) and "
           "mutex+condvar.\ntotal bench time %.1f s\n", bench_now() - t_begin);
    return 0;
}
