/* tests/test_pool.c - pool section: parallel_for, async tasks with priorities, retries with
   backoff, metrics, shutdown. Also built and run under ThreadSanitizer (FA_TEST_TSAN). */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime in the test itself */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#ifdef FA_TEST_SANITIZED
#define SCALE 3
#else
#define SCALE 8
#endif

static double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void t_sleep_us(long us)
{
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000L;
    nanosleep(&ts, NULL);
}
#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)

static fa_pool *make_pool(int threads, size_t qcap)
{
    fa_pool *p = NULL;
    fa_pool_desc d;
    memset(&d, 0, sizeof d);
    d.threads = threads;
    d.queue_capacity = qcap;
    if (fa_pool_create(&p, &d) != FA_OK) return NULL;
    return p;
}

static fa_status nop_task(void *arg) { (void)arg; return FA_OK; }
static void nop_tile(void *ctx, int64_t i, int w) { (void)ctx; (void)i; (void)w; }

TEST(bad_input_is_rejected_with_clear_status)
{
    fa_pool *p = NULL;
    fa_pool_desc d;
    fa_task t;
    fa_pool_stats st;
    memset(&d, 0, sizeof d);
    CHECK(fa_pool_create(NULL, &d) == FA_ERR_NULL);
    d.threads = -1;
    CHECK(fa_pool_create(&p, &d) == FA_ERR_INVALID && p == NULL);
    d.threads = 100000;
    CHECK(fa_pool_create(&p, &d) == FA_ERR_INVALID && p == NULL);
    CHECK(strstr(fa_last_error(), "threads") != NULL);
    CHECK(fa_pool_destroy(NULL, FA_POOL_FINISH) == FA_OK);
    CHECK(fa_pool_size(NULL) == 0);
    p = make_pool(2, 0);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(fa_pool_size(p) == 2);
    CHECK(fa_pool_submit(NULL, nop_task, NULL, FA_PRIO_NORMAL) == FA_ERR_NULL);
    CHECK(fa_pool_submit(p, NULL, NULL, FA_PRIO_NORMAL) == FA_ERR_NULL);
    CHECK(fa_pool_submit(p, nop_task, NULL, (fa_priority)7) == FA_ERR_INVALID);
    CHECK(fa_pool_submit_task(p, NULL) == FA_ERR_NULL);
    memset(&t, 0, sizeof t);
    t.fn = nop_task;
    t.max_retries = -1;
    CHECK(fa_pool_submit_task(p, &t) == FA_ERR_INVALID);
    CHECK(fa_pool_parallel_for(p, 5, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_pool_parallel_for(p, -1, nop_tile, NULL) == FA_ERR_INVALID);
    CHECK(fa_pool_parallel_for(p, 0, nop_tile, NULL) == FA_OK);
    CHECK(fa_pool_get_stats(p, NULL) == FA_ERR_NULL);
    CHECK(fa_pool_get_stats(NULL, &st) == FA_ERR_NULL);
    CHECK(fa_pool_wait_idle(NULL, 0) == FA_ERR_NULL);
    CHECK(fa_pool_destroy(p, (fa_pool_shutdown)9) == FA_ERR_INVALID);
    CHECK(fa_pool_destroy(p, FA_POOL_FINISH) == FA_OK);
    p = make_pool(0, 0); /* default: cpu count - 1, at least 1 */
    CHECK(p && fa_pool_size(p) >= 1);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

/* ---- parallel_for ---- */
#define MAXW 64
typedef struct pf {
    int64_t n;
    int *hits;           /* times index i ran */
    int busy[MAXW];      /* a worker index in use right now */
    int clashes;         /* two threads ran with one worker index at once */
    int bad_worker;
    int limit;           /* fa_pool_size + 1 */
    fa_pool *pool;
    int nested;          /* run an inner parallel_for inside each tile */
} pf;

static void pf_tile(void *ctx, int64_t i, int w);
static void pf_inner(void *ctx, int64_t i, int w) { (void)i; (void)w; INC((int *)ctx); }

static void pf_tile(void *ctx, int64_t i, int w)
{
    pf *s = (pf *)ctx;
    int zero = 0;
    if (w < 0 || w >= s->limit) { INC(&s->bad_worker); return; }
    if (!__atomic_compare_exchange_n(&s->busy[w], &zero, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        INC(&s->clashes);
    INC(&s->hits[i]);
    if (s->nested) {
        int inner = 0;
        fa_pool_parallel_for(s->pool, 5, pf_inner, &inner);
        if (LD(&inner) != 5) INC(&s->bad_worker);
    } else if ((i & 7) == 0) {
        t_sleep_us(5); /* uneven tiles so several threads overlap */
    }
    ST(&s->busy[w], 0);
}

static void run_pf(fa_pool *p, int64_t n, int nested)
{
    pf s;
    int64_t i, wrong = 0;
    memset(&s, 0, sizeof s);
    s.n = n;
    s.hits = (int *)calloc((size_t)(n ? n : 1), sizeof(int));
    s.limit = fa_pool_size(p) + 1;
    s.pool = p;
    s.nested = nested;
    CHECK(fa_pool_parallel_for(p, n, pf_tile, &s) == FA_OK);
    for (i = 0; i < n; i++) wrong += s.hits[i] != 1;
    CHECKF(wrong == 0, "n %lld: %lld indices not run exactly once", (long long)n, (long long)wrong);
    CHECKF(s.clashes == 0, "n %lld: %d worker-index clashes", (long long)n, s.clashes);
    CHECK(s.bad_worker == 0);
    free(s.hits);
}

TEST(parallel_for_runs_every_index_once_with_distinct_worker_indices)
{
    int64_t ns[] = {0, 1, 2, 3, 7, 64, 1000, 20000};
    size_t k;
    int threads;
    for (threads = 1; threads <= 4; threads += 3) {
        fa_pool *p = make_pool(threads, 0);
        CHECK(p != NULL);
        if (!p) return;
        for (k = 0; k < sizeof ns / sizeof ns[0]; k++) run_pf(p, ns[k], 0);
        for (k = 0; k < (size_t)(20 * SCALE); k++) run_pf(p, 1 + fa_t_randint(50), 0);
        fa_pool_destroy(p, FA_POOL_FINISH);
    }
    run_pf(NULL, 100, 0); /* no pool: serial, worker 0 */
}

/* spin_ns: bounds checked; any polling time leaves parallel_for exact and destroy prompt
   (workers polling for work still see the exit) */
TEST(spin_ns_is_checked_and_any_polling_time_keeps_results_and_shutdown)
{
    static const int64_t spins[] = {-1, 0, 1, 2000000, FA_POOL_MAX_SPIN_NS};
    fa_pool *p = NULL;
    fa_pool_desc d;
    size_t k;
    int r;
    memset(&d, 0, sizeof d);
    d.threads = 2;
    d.spin_ns = FA_POOL_MAX_SPIN_NS + 1;
    CHECK(fa_pool_create(&p, &d) == FA_ERR_INVALID && p == NULL);
    CHECK(strstr(fa_last_error(), "spin_ns") != NULL);
    for (k = 0; k < sizeof spins / sizeof spins[0]; k++) {
        double t0;
        d.spin_ns = spins[k];
        p = NULL;
        CHECK(fa_pool_create(&p, &d) == FA_OK && p != NULL);
        if (!p) continue;
        for (r = 0; r < 10 * SCALE; r++) run_pf(p, 1 + fa_t_randint(40), 0);
        run_pf(p, 1000, 0);
        CHECK(fa_pool_submit(p, nop_task, NULL, FA_PRIO_NORMAL) == FA_OK);
        CHECK(fa_pool_wait_idle(p, (int64_t)30 * 1000000000) == FA_OK);
        t0 = t_now();
        CHECK(fa_pool_destroy(p, FA_POOL_FINISH) == FA_OK);
        /* a 1 s polling time must not hold the shutdown: exit_now ends the polling */
        CHECKF(t_now() - t0 < 0.5, "spin_ns %lld: destroy took %.3f s", (long long)spins[k], t_now() - t0);
    }
}

TEST(nested_parallel_for_inside_tiles_does_not_deadlock)
{
    fa_pool *p = make_pool(2, 0);
    int r;
    CHECK(p != NULL);
    if (!p) return;
    for (r = 0; r < 5 * SCALE; r++) run_pf(p, 40, 1);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

/* Every worker busy in a task that itself calls parallel_for: each caller runs its own tiles
   when nobody is free to help, so all complete. */
typedef struct pftask { fa_pool *p; int ok; } pftask;
static fa_status pf_task(void *arg)
{
    pftask *t = (pftask *)arg;
    pf s;
    int64_t i, wrong = 0;
    memset(&s, 0, sizeof s);
    s.n = 50;
    s.hits = (int *)calloc(50, sizeof(int));
    s.limit = fa_pool_size(t->p) + 1;
    s.pool = t->p;
    if (fa_pool_parallel_for(t->p, 50, pf_tile, &s) != FA_OK) wrong++;
    for (i = 0; i < 50; i++) wrong += s.hits[i] != 1;
    t->ok = wrong == 0 && s.clashes == 0 && s.bad_worker == 0;
    free(s.hits);
    return FA_OK;
}

TEST(parallel_for_from_inside_submitted_tasks_completes)
{
    fa_pool *p = make_pool(2, 0);
    pftask t[8];
    int i, r;
    CHECK(p != NULL);
    if (!p) return;
    for (r = 0; r < 2 * SCALE; r++) {
        for (i = 0; i < 8; i++) {
            t[i].p = p;
            t[i].ok = 0;
            CHECK(fa_pool_submit(p, pf_task, &t[i], (fa_priority)(i % 3)) == FA_OK);
        }
        CHECK(fa_pool_wait_idle(p, (int64_t)30 * 1000000000) == FA_OK);
        for (i = 0; i < 8; i++) CHECKF(t[i].ok, "task %d", i);
    }
    fa_pool_destroy(p, FA_POOL_FINISH);
}

/* Several outside threads call parallel_for on one pool at once: slots, stale tokens. */
typedef struct ext { fa_pool *p; int rounds; } ext;
static void *ext_main(void *arg)
{
    ext *e = (ext *)arg;
    int r;
    for (r = 0; r < e->rounds; r++) run_pf(e->p, 1 + (r * 7) % 60, 0);
    return NULL;
}

TEST(concurrent_parallel_for_callers_share_the_pool)
{
    fa_pool *p = make_pool(2, 0);
    pthread_t t[3];
    ext e;
    int i;
    CHECK(p != NULL);
    if (!p) return;
    e.p = p;
    e.rounds = 40 * SCALE;
    for (i = 0; i < 3; i++) pthread_create(&t[i], NULL, ext_main, &e);
    for (i = 0; i < 3; i++) pthread_join(t[i], NULL);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

/* Polling workers join a call through the pool's announcement line before its tokens reach
   them (and may meet those tokens later, for a call that is over or still running): every
   index still runs once, on distinct workers, with outside callers and nested calls at once,
   and the workers do take part. */
static void who_tile(void *ctx, int64_t i, int w)
{
    int *by = (int *)ctx;
    (void)i;
    if (w >= 0 && w < 8) INC(&by[w]);
    t_sleep_us(20);
}

TEST(polling_workers_join_announced_calls_exactly_once)
{
    fa_pool *p = NULL;
    fa_pool_desc d;
    pthread_t t[2];
    ext e;
    int by[8], r, i, helped = 0;
    memset(&d, 0, sizeof d);
    d.threads = 2;
    d.spin_ns = 5000000; /* 5 ms: the workers poll between the calls below */
    CHECK(fa_pool_create(&p, &d) == FA_OK && p != NULL);
    if (!p) return;
    for (r = 0; r < 40 * SCALE; r++) {
        memset(by, 0, sizeof by);
        CHECK(fa_pool_parallel_for(p, 8, who_tile, by) == FA_OK);
        CHECK(by[0] + by[1] + by[2] == 8);
        helped += by[0] + by[1] > 0; /* workers 0 and 1; the caller is 2 */
        run_pf(p, 1 + fa_t_randint(30), r & 1);
    }
    CHECKF(helped > 0, "no call of %d had a worker's help", 40 * SCALE);
    e.p = p;
    e.rounds = 20 * SCALE;
    for (i = 0; i < 2; i++) pthread_create(&t[i], NULL, ext_main, &e);
    for (r = 0; r < 10 * SCALE; r++) run_pf(p, 40, 1);
    for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(fa_pool_destroy(p, FA_POOL_FINISH) == FA_OK);
}

/* ---- asynchronous tasks ---- */
typedef struct gate { int open; } gate;
static fa_status gate_task(void *arg)
{
    gate *g = (gate *)arg;
    while (!LD(&g->open)) t_sleep_us(200);
    return FA_OK;
}

typedef struct order { int seq[64]; int n; } order;
typedef struct otask { order *o; int tag; } otask;
static fa_status order_task(void *arg)
{
    otask *t = (otask *)arg;
    int k = INC(&t->o->n) - 1;
    if (k < 64) t->o->seq[k] = t->tag;
    return FA_OK;
}

TEST(priorities_are_strict_high_then_normal_then_low)
{
    fa_pool *p = make_pool(1, 0);
    gate g = {0};
    order o;
    otask ts[15];
    int i, inversions = 0;
    static const fa_priority pr[3] = {FA_PRIO_LOW, FA_PRIO_NORMAL, FA_PRIO_HIGH};
    CHECK(p != NULL);
    if (!p) return;
    memset(&o, 0, sizeof o);
    CHECK(fa_pool_submit(p, gate_task, &g, FA_PRIO_HIGH) == FA_OK);
    t_sleep_us(20000); /* the only worker is now held by the gate task */
    for (i = 0; i < 15; i++) { /* interleaved: low, normal, high, low, ... */
        ts[i].o = &o;
        ts[i].tag = (int)pr[i % 3];
        CHECK(fa_pool_submit(p, order_task, &ts[i], pr[i % 3]) == FA_OK);
    }
    ST(&g.open, 1);
    CHECK(fa_pool_wait_idle(p, (int64_t)10 * 1000000000) == FA_OK);
    CHECK(o.n == 15);
    /* rank: high 0, normal 1, low 2; must never decrease along the run order */
    for (i = 1; i < 15; i++) {
        int a = o.seq[i - 1] == FA_PRIO_HIGH ? 0 : o.seq[i - 1] == FA_PRIO_NORMAL ? 1 : 2;
        int b = o.seq[i] == FA_PRIO_HIGH ? 0 : o.seq[i] == FA_PRIO_NORMAL ? 1 : 2;
        inversions += b < a;
    }
    CHECKF(inversions == 0, "%d priority inversions", inversions);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

typedef struct flaky {
    int fail_times;      /* return FA_ERR_AGAIN this many times */
    int calls;
    double when[8];
    int done_calls;
    fa_status final;
} flaky;
static fa_status flaky_task(void *arg)
{
    flaky *f = (flaky *)arg;
    int c = INC(&f->calls) - 1;
    if (c < 8) f->when[c] = t_now();
    return c < f->fail_times ? FA_ERR_AGAIN : FA_OK;
}
static void flaky_done(void *arg, fa_status s)
{
    flaky *f = (flaky *)arg;
    f->final = s;
    INC(&f->done_calls);
}

TEST(retries_back_off_exponentially_and_report_the_final_status)
{
    fa_pool *p = make_pool(2, 0);
    flaky a, b;
    fa_task t;
    fa_pool_stats st;
    int i;
    CHECK(p != NULL);
    if (!p) return;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.fail_times = 3;   /* succeeds on the 4th attempt */
    b.fail_times = 100; /* never succeeds: gives up after 1 + 2 attempts */
    memset(&t, 0, sizeof t);
    t.fn = flaky_task;
    t.done = flaky_done;
    t.max_retries = 5;
    t.retry_delay_ns = 2000000;      /* 2 ms, 4 ms, 8 ms */
    t.retry_max_delay_ns = 6000000;  /* capped at 6 ms */
    t.arg = &a;
    CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    t.arg = &b;
    t.max_retries = 2;
    CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    CHECK(fa_pool_wait_idle(p, (int64_t)10 * 1000000000) == FA_OK);
    CHECK(a.calls == 4 && a.done_calls == 1 && a.final == FA_OK);
    CHECK(b.calls == 3 && b.done_calls == 1 && b.final == FA_ERR_AGAIN);
    for (i = 1; i < 4; i++) {
        double want = (i == 1 ? 2e-3 : i == 2 ? 4e-3 : 6e-3), got = a.when[i] - a.when[i - 1];
        CHECKF(got >= want * 0.95, "retry %d after %.2f ms, want >= %.2f ms", i, got * 1e3, want * 1e3);
    }
    CHECK(fa_pool_get_stats(p, &st) == FA_OK);
    CHECKF(st.retries == 5 && st.runs == 7 && st.succeeded == 1 && st.failed == 1,
           "retries %llu runs %llu ok %llu failed %llu", (unsigned long long)st.retries,
           (unsigned long long)st.runs, (unsigned long long)st.succeeded,
           (unsigned long long)st.failed);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

/* Tasks that submit tasks: a binary tree of depth D, from inside the workers. */
typedef struct tree { fa_pool *p; int count; int full; } tree;
typedef struct node { tree *t; int depth; } node;
static node nodes[1 << 12];
static int node_next;
static fa_status tree_task(void *arg)
{
    node *n = (node *)arg;
    int c;
    INC(&n->t->count);
    if (n->depth == 0) return FA_OK;
    for (c = 0; c < 2; c++) {
        node *k = &nodes[INC(&node_next) - 1];
        k->t = n->t;
        k->depth = n->depth - 1;
        while (fa_pool_submit(n->t->p, tree_task, k, FA_PRIO_NORMAL) == FA_ERR_FULL) {
            INC(&n->t->full);
            t_sleep_us(50);
        }
    }
    return FA_OK;
}

TEST(tasks_submitting_tasks_do_not_deadlock_even_with_a_tiny_queue)
{
    int depth = 10;
    size_t caps[2] = {4, 0};
    int c;
    for (c = 0; c < 2; c++) {
        fa_pool *p = make_pool(3, caps[c]);
        tree t;
        CHECK(p != NULL);
        if (!p) return;
        t.p = p; t.count = 0; t.full = 0;
        node_next = 1;
        nodes[0].t = &t;
        nodes[0].depth = depth;
        CHECK(fa_pool_submit(p, tree_task, &nodes[0], FA_PRIO_HIGH) == FA_OK);
        CHECK(fa_pool_wait_idle(p, (int64_t)30 * 1000000000) == FA_OK);
        CHECKF(t.count == (1 << (depth + 1)) - 1, "ran %d of %d", t.count, (1 << (depth + 1)) - 1);
        fa_pool_destroy(p, FA_POOL_FINISH);
    }
}

TEST(submit_on_a_full_queue_fails_fast_and_loses_nothing)
{
    fa_pool *p = make_pool(1, 4);
    gate g = {0};
    int i, ok = 0, full = 0;
    fa_pool_stats st;
    CHECK(p != NULL);
    if (!p) return;
    CHECK(fa_pool_submit(p, gate_task, &g, FA_PRIO_NORMAL) == FA_OK);
    t_sleep_us(20000);
    for (i = 0; i < 10; i++) {
        fa_status s = fa_pool_submit(p, nop_task, NULL, FA_PRIO_LOW);
        ok += s == FA_OK;
        full += s == FA_ERR_FULL;
    }
    CHECKF(ok == 4 && full == 6, "ok %d full %d", ok, full);
    ST(&g.open, 1);
    CHECK(fa_pool_wait_idle(p, (int64_t)10 * 1000000000) == FA_OK);
    CHECK(fa_pool_get_stats(p, &st) == FA_OK && st.succeeded == 5 && st.submitted == 5);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

/* A task that calls back into its own pool gets FA_ERR_BUSY instead of deadlocking. */
typedef struct selfcall { fa_pool *p; fa_status idle, destroy; } selfcall;
static fa_status selfcall_task(void *arg)
{
    selfcall *s = (selfcall *)arg;
    s->idle = fa_pool_wait_idle(s->p, 0);
    s->destroy = fa_pool_destroy(s->p, FA_POOL_FINISH);
    return FA_OK;
}

TEST(wait_idle_and_destroy_from_inside_a_task_are_refused)
{
    fa_pool *p = make_pool(1, 0);
    selfcall s;
    gate g = {0};
    double t0;
    CHECK(p != NULL);
    if (!p) return;
    s.p = p;
    CHECK(fa_pool_submit(p, selfcall_task, &s, FA_PRIO_NORMAL) == FA_OK);
    CHECK(fa_pool_wait_idle(p, FA_WAIT_FOREVER) == FA_OK);
    CHECK(s.idle == FA_ERR_BUSY && s.destroy == FA_ERR_BUSY);
    CHECK(fa_pool_submit(p, gate_task, &g, FA_PRIO_NORMAL) == FA_OK);
    t0 = t_now();
    CHECK(fa_pool_wait_idle(p, 20000000) == FA_ERR_TIMEOUT);
    CHECK(t_now() - t0 >= 0.019);
    ST(&g.open, 1);
    CHECK(fa_pool_destroy(p, FA_POOL_FINISH) == FA_OK);
}

/* ---- shutdown ---- */
typedef struct counted { int runs, done_ok, done_closed, done_other; } counted;
static fa_status counted_task(void *arg)
{
    counted *c = (counted *)arg;
    INC(&c->runs);
    t_sleep_us(100);
    return FA_OK;
}
static void counted_done(void *arg, fa_status s)
{
    counted *c = (counted *)arg;
    if (s == FA_OK) INC(&c->done_ok);
    else if (s == FA_ERR_CLOSED) INC(&c->done_closed);
    else INC(&c->done_other);
}
static fa_status again_task(void *arg) { (void)arg; return FA_ERR_AGAIN; }

TEST(shutdown_finish_runs_everything_queued_including_retries)
{
    fa_pool *p = make_pool(2, 0);
    counted c = {0, 0, 0, 0}, r = {0, 0, 0, 0};
    fa_task t;
    int i, n = 200;
    CHECK(p != NULL);
    if (!p) return;
    memset(&t, 0, sizeof t);
    t.fn = counted_task;
    t.done = counted_done;
    t.arg = &c;
    for (i = 0; i < n; i++) {
        t.priority = (fa_priority)(i % 3);
        CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    }
    t.fn = again_task; /* always retryable: 3 runs 1 ms apart, then final FA_ERR_AGAIN */
    t.arg = &r;
    t.max_retries = 2;
    t.retry_delay_ns = 1000000;
    CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    CHECK(fa_pool_destroy(p, FA_POOL_FINISH) == FA_OK);
    CHECKF(c.runs == n && c.done_ok == n && c.done_closed == 0, "runs %d ok %d closed %d", c.runs,
           c.done_ok, c.done_closed);
    CHECK(r.done_other == 1 && r.done_ok == 0 && r.done_closed == 0);
}

typedef struct releaser { gate *g; long us; } releaser;
static void *releaser_main(void *arg)
{
    releaser *r = (releaser *)arg;
    t_sleep_us(r->us);
    ST(&r->g->open, 1);
    return NULL;
}

TEST(shutdown_cancel_completes_queued_tasks_with_closed_exactly_once)
{
    fa_pool *p = make_pool(1, 0);
    gate g = {0};
    counted c = {0, 0, 0, 0}, r = {0, 0, 0, 0};
    fa_task t;
    releaser rel;
    pthread_t th;
    fa_pool_stats st;
    int i, n = 50;
    CHECK(p != NULL);
    if (!p) return;
    memset(&t, 0, sizeof t);
    t.fn = gate_task; t.arg = &g;
    CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    t.done = counted_done;
    t.fn = again_task; t.arg = &r; t.max_retries = 5; t.retry_delay_ns = 500000000; /* parked */
    CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    t_sleep_us(20000);
    t.fn = counted_task; t.arg = &c; t.max_retries = 0;
    for (i = 0; i < n; i++) CHECK(fa_pool_submit_task(p, &t) == FA_OK);
    rel.g = &g; rel.us = 30000;
    pthread_create(&th, NULL, releaser_main, &rel);
    CHECK(fa_pool_get_stats(p, &st) == FA_OK);
    CHECK(fa_pool_destroy(p, FA_POOL_CANCEL) == FA_OK);
    pthread_join(th, NULL);
    CHECKF(c.runs == 0 && c.done_closed == n && c.done_ok == 0, "runs %d closed %d ok %d", c.runs,
           c.done_closed, c.done_ok);
    CHECK(r.done_closed == 1 && r.done_other == 0); /* the parked retry was cancelled */
}

TEST(metrics_report_counts_and_latency_percentiles)
{
    fa_pool *p = make_pool(2, 0);
    counted c = {0, 0, 0, 0};
    fa_pool_stats st;
    int i, n = 40;
    CHECK(p != NULL);
    if (!p) return;
    CHECK(fa_pool_get_stats(p, &st) == FA_OK && st.runs == 0 && st.run_p50_ns == 0);
    for (i = 0; i < n; i++) CHECK(fa_pool_submit(p, counted_task, &c, FA_PRIO_NORMAL) == FA_OK);
    CHECK(fa_pool_wait_idle(p, (int64_t)10 * 1000000000) == FA_OK);
    CHECK(fa_pool_parallel_for(p, 10, nop_tile, NULL) == FA_OK);
    CHECK(fa_pool_get_stats(p, &st) == FA_OK);
    CHECK(st.submitted == (uint64_t)n && st.runs == (uint64_t)n && st.succeeded == (uint64_t)n);
    CHECK(st.parallel_for_calls == 1 && st.tiles == 10);
    /* each task sleeps 100 us: the run-time median is at least that, and below a second */
    CHECKF(st.run_p50_ns >= 90000 && st.run_p50_ns < 1000000000, "run p50 %lld ns",
           (long long)st.run_p50_ns);
    CHECK(st.run_p99_ns >= st.run_p50_ns && st.wait_p99_ns >= st.wait_p50_ns);
    CHECK(st.wait_p50_ns >= 0);
    fa_pool_destroy(p, FA_POOL_FINISH);
}

TEST(histogram_buckets_stay_within_seven_percent)
{
    int64_t v;
    int bad = 0;
    for (v = 0; v < ((int64_t)1 << 40); v = v * 9 / 8 + 1 + (int64_t)fa_t_randint(3)) {
        int64_t got = fa__hist_value(fa__hist_bucket(v));
        double err = v ? (double)(got > v ? got - v : v - got) / (double)v : (double)got;
        if (err > 0.0625 + 1e-9) bad++;
    }
    CHECK(bad == 0);
}


/* Several outside threads submit at once while tasks also submit follow-ups: every task runs
   exactly once and its done callback fires exactly once. */
#define SUBMITTERS 3
typedef struct sstress { fa_pool *p; int per; unsigned char *runs, *dones; int errors; } sstress;
typedef struct sarg { sstress *s; int id; } sarg;
static fa_status ss_task(void *arg);
static sstress *ss_global;
static fa_status ss_task(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    sstress *s = ss_global;
    __atomic_add_fetch(&s->runs[id], 1, __ATOMIC_RELAXED);
    /* every 16th task spawns a follow-up with id + half, from inside the pool */
    if (id < (uintptr_t)(SUBMITTERS * s->per) && id % 16 == 0) {
        if (fa_pool_submit(s->p, ss_task, (void *)(id + (uintptr_t)(SUBMITTERS * s->per)),
                           FA_PRIO_HIGH) != FA_OK)
            INC(&s->errors);
    }
    return FA_OK;
}
static void ss_done2(void *arg, fa_status st)
{
    uintptr_t id = (uintptr_t)arg;
    if (st != FA_OK) INC(&ss_global->errors);
    __atomic_add_fetch(&ss_global->dones[id], 1, __ATOMIC_RELAXED);
}
static void *submitter_main(void *arg)
{
    sarg *a = (sarg *)arg;
    sstress *s = a->s;
    fa_task t;
    int i;
    memset(&t, 0, sizeof t);
    t.fn = ss_task;
    t.done = ss_done2;
    for (i = 0; i < s->per; i++) {
        fa_status st;
        t.arg = (void *)(uintptr_t)(a->id * s->per + i);
        t.priority = (fa_priority)(i % 3);
        while ((st = fa_pool_submit_task(s->p, &t)) == FA_ERR_FULL) sched_yield();
        if (st != FA_OK) INC(&s->errors);
    }
    return NULL;
}

TEST(concurrent_submitters_and_follow_up_tasks_run_exactly_once)
{
    sstress s;
    sarg a[SUBMITTERS];
    pthread_t t[SUBMITTERS];
    int i, total, bad = 0;
    fa_pool_stats st;
    memset(&s, 0, sizeof s);
    s.p = make_pool(2, 256);
    CHECK(s.p != NULL);
    if (!s.p) return;
    s.per = 4000 * SCALE;
    total = 2 * SUBMITTERS * s.per; /* ids of follow-ups live in the upper half */
    s.runs = (unsigned char *)calloc((size_t)total, 1);
    s.dones = (unsigned char *)calloc((size_t)total, 1);
    ss_global = &s;
    for (i = 0; i < SUBMITTERS; i++) {
        a[i].s = &s; a[i].id = i;
        pthread_create(&t[i], NULL, submitter_main, &a[i]);
    }
    for (i = 0; i < SUBMITTERS; i++) pthread_join(t[i], NULL);
    CHECK(fa_pool_wait_idle(s.p, (int64_t)60 * 1000000000) == FA_OK);
    for (i = 0; i < total; i++) {
        int outside = i < SUBMITTERS * s.per; /* follow-ups have no done callback */
        int want = outside || (i - SUBMITTERS * s.per) % 16 == 0;
        bad += s.runs[i] != want || s.dones[i] != outside;
    }
    CHECKF(bad == 0 && s.errors == 0, "%d tasks ran/completed the wrong number of times, %d errors",
           bad, s.errors);
    CHECK(fa_pool_get_stats(s.p, &st) == FA_OK);
    CHECK(st.runs == st.submitted && st.succeeded == st.submitted);
    fa_pool_destroy(s.p, FA_POOL_FINISH);
    free(s.runs);
    free(s.dones);
}

int main(void)
{
    fa_test_init();
    RUN(bad_input_is_rejected_with_clear_status);
    RUN(parallel_for_runs_every_index_once_with_distinct_worker_indices);
    RUN(spin_ns_is_checked_and_any_polling_time_keeps_results_and_shutdown);
    RUN(nested_parallel_for_inside_tiles_does_not_deadlock);
    RUN(concurrent_parallel_for_callers_share_the_pool);
    RUN(polling_workers_join_announced_calls_exactly_once);
    RUN(parallel_for_from_inside_submitted_tasks_completes);
    RUN(priorities_are_strict_high_then_normal_then_low);
    RUN(retries_back_off_exponentially_and_report_the_final_status);
    RUN(tasks_submitting_tasks_do_not_deadlock_even_with_a_tiny_queue);
    RUN(submit_on_a_full_queue_fails_fast_and_loses_nothing);
    RUN(wait_idle_and_destroy_from_inside_a_task_are_refused);
    RUN(concurrent_submitters_and_follow_up_tasks_run_exactly_once);
    RUN(shutdown_finish_runs_everything_queued_including_retries);
    RUN(shutdown_cancel_completes_queued_tasks_with_closed_exactly_once);
    RUN(metrics_report_counts_and_latency_percentiles);
    RUN(histogram_buckets_stay_within_seven_percent);
    return fa_test_summary();
}
