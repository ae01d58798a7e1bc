/* tests/test_queue.c - queue section: SPSC and MPMC ring queues.

   Also built and run under ThreadSanitizer (the Makefile looks for the word FA_TEST_TSAN).
   Stress sizes shrink under sanitizers (FA_TEST_SANITIZED) to keep the suite quick. */
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
#define SCALE 12
#endif

static double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void t_sleep_ms(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* ---- one interface over both queue kinds, so every property is checked on each ---- */
typedef struct qops {
    const char *name;
    size_t size; /* sizeof the queue struct */
    fa_status (*init)(void *, const fa_queue_desc *);
    fa_status (*destroy)(void *);
    fa_status (*push)(void *, const void *);
    fa_status (*pop)(void *, void *);
    fa_status (*push_n)(void *, const void *, size_t);
    fa_status (*pop_n)(void *, void *, size_t);
    fa_status (*push_upto)(void *, const void *, size_t, size_t *);
    fa_status (*pop_upto)(void *, void *, size_t, size_t *);
    fa_status (*push_wait)(void *, const void *, int64_t);
    fa_status (*pop_wait)(void *, void *, int64_t);
    fa_status (*close)(void *);
    size_t (*qsize)(const void *);
    size_t (*capacity)(const void *);
    int (*full)(const void *);
    int (*empty)(const void *);
} qops;

#define WRAP(K)                                                                                   \
    static fa_status K##_init_(void *q, const fa_queue_desc *d) { return fa_##K##_init((fa_##K *)q, d); } \
    static fa_status K##_destroy_(void *q) { return fa_##K##_destroy((fa_##K *)q); }             \
    static fa_status K##_push_(void *q, const void *x) { return fa_##K##_push((fa_##K *)q, x); } \
    static fa_status K##_pop_(void *q, void *x) { return fa_##K##_pop((fa_##K *)q, x); }         \
    static fa_status K##_push_n_(void *q, const void *x, size_t n) { return fa_##K##_push_n((fa_##K *)q, x, n); } \
    static fa_status K##_pop_n_(void *q, void *x, size_t n) { return fa_##K##_pop_n((fa_##K *)q, x, n); } \
    static fa_status K##_push_upto_(void *q, const void *x, size_t n, size_t *d) { return fa_##K##_push_upto((fa_##K *)q, x, n, d); } \
    static fa_status K##_pop_upto_(void *q, void *x, size_t n, size_t *d) { return fa_##K##_pop_upto((fa_##K *)q, x, n, d); } \
    static fa_status K##_push_wait_(void *q, const void *x, int64_t t) { return fa_##K##_push_wait((fa_##K *)q, x, t); } \
    static fa_status K##_pop_wait_(void *q, void *x, int64_t t) { return fa_##K##_pop_wait((fa_##K *)q, x, t); } \
    static fa_status K##_close_(void *q) { return fa_##K##_close((fa_##K *)q); }                 \
    static size_t K##_size_(const void *q) { return fa_##K##_size((const fa_##K *)q); }         \
    static size_t K##_cap_(const void *q) { return fa_##K##_capacity((const fa_##K *)q); }      \
    static int K##_full_(const void *q) { return fa_##K##_full((const fa_##K *)q); }            \
    static int K##_empty_(const void *q) { return fa_##K##_empty((const fa_##K *)q); }          \
    static const qops K##_ops = {#K, sizeof(fa_##K), K##_init_, K##_destroy_, K##_push_, K##_pop_, \
                                 K##_push_n_, K##_pop_n_, K##_push_upto_, K##_pop_upto_,         \
                                 K##_push_wait_, K##_pop_wait_, K##_close_, K##_size_, K##_cap_, \
                                 K##_full_, K##_empty_};
WRAP(spsc)
WRAP(mpmc)
static const qops *const kinds[2] = {&spsc_ops, &mpmc_ops};

static fa_queue_desc qdesc(size_t cap, size_t esz, int blocking)
{
    fa_queue_desc d;
    memset(&d, 0, sizeof d);
    d.capacity = cap;
    d.elem_size = esz;
    d.blocking = blocking;
    return d;
}

/* Queue structs are big-ish and want cache-line alignment. */
static void *qalloc(const qops *k)
{
    void *q = fa_aligned_alloc(k->size, 128);
    memset(q, 0xcd, k->size); /* init must not rely on zeroed memory */
    return q;
}

TEST(bad_input_is_rejected_with_clear_status)
{
    int ki;
    for (ki = 0; ki < 2; ki++) {
        const qops *k = kinds[ki];
        void *q = qalloc(k);
        fa_queue_desc d = qdesc(8, 8, 0);
        uint64_t x = 1, buf[16];
        unsigned char small[8];
        CHECK(k->init(NULL, &d) == FA_ERR_NULL);
        CHECK(k->init(q, NULL) == FA_ERR_NULL);
        d.capacity = 0;
        CHECKF(k->init(q, &d) == FA_ERR_INVALID, "%s capacity 0", k->name);
        CHECK(strstr(fa_last_error(), "capacity") != NULL);
        d = qdesc(8, 0, 0);
        CHECKF(k->init(q, &d) == FA_ERR_INVALID, "%s elem 0", k->name);
        d = qdesc(SIZE_MAX / 2, 8, 0);
        CHECKF(k->init(q, &d) == FA_ERR_OVERFLOW, "%s huge capacity", k->name);
        d = qdesc(1000, SIZE_MAX / 64, 0);
        CHECKF(k->init(q, &d) == FA_ERR_OVERFLOW, "%s huge bytes", k->name);
        d = qdesc(8, 8, 0);
        d.storage = small;
        d.storage_size = sizeof small;
        CHECKF(k->init(q, &d) == FA_ERR_INVALID, "%s storage too small", k->name);
        d.storage = (unsigned char *)buf + 1;
        d.storage_size = sizeof buf;
        d.capacity = 2;
        CHECKF(k->init(q, &d) == FA_ERR_ALIGN, "%s misaligned storage", k->name);

        d = qdesc(4, 8, 0);
        CHECK(k->init(q, &d) == FA_OK);
        CHECK(k->push(NULL, &x) == FA_ERR_NULL);
        CHECK(k->push(q, NULL) == FA_ERR_NULL);
        CHECK(k->pop(q, NULL) == FA_ERR_NULL);
        CHECK(k->pop_n(q, NULL, 1) == FA_ERR_NULL);
        CHECKF(k->pop(q, &x) == FA_ERR_EMPTY, "%s pop on empty", k->name);
        CHECK(k->pop_n(q, buf, 1) == FA_ERR_EMPTY);
        {
            size_t got = 7;
            CHECK(k->pop_upto(q, buf, 3, &got) == FA_ERR_EMPTY && got == 0);
        }
        CHECK(k->pop_wait(q, &x, 0) == FA_ERR_EMPTY);
        while (k->push(q, &x) == FA_OK) x++;
        CHECKF(k->push(q, &x) == FA_ERR_FULL, "%s push on full", k->name);
        CHECK(k->push_n(q, buf, 1) == FA_ERR_FULL);
        CHECK(k->push_wait(q, &x, 0) == FA_ERR_FULL);
        CHECK(k->push_n(q, buf, k->capacity(q) + 1) == FA_ERR_INVALID);
        CHECK(k->pop_n(q, buf, k->capacity(q) + 1) == FA_ERR_INVALID);
        CHECK(k->full(q) && !k->empty(q) && k->qsize(q) == k->capacity(q));
        /* nothing was lost by the failed calls */
        {
            uint64_t y, want = 1;
            while (k->pop(q, &y) == FA_OK) CHECK(y == want++);
            CHECK(want - 1 == k->capacity(q));
        }
        CHECK(k->push_n(q, buf, 0) == FA_OK && k->pop_n(q, buf, 0) == FA_OK);
        CHECK(k->destroy(q) == FA_OK);
        CHECK(k->destroy(q) == FA_OK); /* a destroyed queue is inert */
        CHECK(k->destroy(NULL) == FA_ERR_NULL);
        CHECK(k->close(NULL) == FA_ERR_NULL);
        CHECK(k->qsize(NULL) == 0 && k->capacity(NULL) == 0 && k->empty(NULL) && !k->full(NULL));
        fa_aligned_free(q);
    }
    {
        size_t b;
        CHECK(fa_spsc_storage_size(0, 8, &b) == FA_ERR_INVALID);
        CHECK(fa_mpmc_storage_size(8, 0, &b) == FA_ERR_INVALID);
        CHECK(fa_mpmc_storage_size(8, 8, NULL) == FA_ERR_NULL);
        /* 8 slots of [8-byte sequence][3-byte item, padded to 8] */
        CHECK(fa_spsc_storage_size(5, 3, &b) == FA_OK && b == 8 * 16);
        CHECK(fa_mpmc_storage_size(1, 8, &b) == FA_OK && b == 2 * 16);
    }
}

TEST(capacity_is_exact_for_spsc_and_a_power_of_two_for_mpmc)
{
    size_t caps[] = {1, 2, 3, 5, 64, 100, 1000};
    size_t i;
    for (i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        int ki;
        for (ki = 0; ki < 2; ki++) {
            const qops *k = kinds[ki];
            void *q = qalloc(k);
            fa_queue_desc d = qdesc(caps[i], 4, 0);
            uint32_t v = 0;
            size_t want = caps[i], n = 0;
            if (ki == 1) { want = 2; while (want < caps[i]) want *= 2; }
            CHECK(k->init(q, &d) == FA_OK);
            CHECKF(k->capacity(q) == want, "%s cap %zu -> %zu", k->name, caps[i], k->capacity(q));
            while (k->push(q, &v) == FA_OK) { n++; v++; }
            CHECKF(n == want, "%s cap %zu held %zu", k->name, caps[i], n);
            CHECK(k->full(q));
            k->destroy(q);
            fa_aligned_free(q);
        }
    }
}

/* A reference deque the random operation sequences are checked against. */
typedef struct model { unsigned char *buf; size_t head, count, cap, esz; } model;

static void fill_item(unsigned char *p, size_t esz, uint64_t id)
{
    size_t b;
    for (b = 0; b < esz; b++) p[b] = (unsigned char)((id * 0x9e3779b97f4a7c15ull) >> ((b % 8) * 8)) ^ (unsigned char)b;
}

/* White-box: moves an empty, fresh queue's positions to `start` (as if `start` items had
   passed through it), so a test can cross the wrap of the size_t position counters. Each slot
   gets the sequence it would have there: free for its next position, nothing published. */
static void rebase(int ki, void *q, size_t start)
{
    size_t i;
    if (ki == 0) {
        fa_spsc *sq = (fa_spsc *)q;
        for (i = 0; i <= sq->mask; i++) fa__st(fa__spsc_seq(sq, start + i), start + i, FA__RELAXED);
        fa__st(&sq->prod_pos, start, FA__RELAXED);
        fa__st(&sq->cons_pos, start, FA__RELAXED);
        sq->cons_cache = start;
    } else {
        fa_mpmc *mq = (fa_mpmc *)q;
        for (i = 0; i <= mq->mask; i++) fa__st(fa__mpmc_seq(mq, start + i), start + i, FA__RELAXED);
        fa__st(&mq->prod_pos, start, FA__RELAXED);
        fa__st(&mq->cons_pos, start, FA__RELAXED);
    }
}

/* Random single and bulk operations on one queue (kind ki) checked against the model after
   every step; the queue's positions start at `start`. */
static void random_ops_vs_model(int ki, size_t cap, size_t esz, int iters, size_t start)
{
    {
        {
            const qops *k = kinds[ki];
            void *q = qalloc(k);
            fa_queue_desc d = qdesc(cap, esz, (int)fa_t_randint(2));
            model m;
            unsigned char *tmp, *got;
            uint64_t next_id = 0;
            int it, bad = 0;
            CHECK(k->init(q, &d) == FA_OK);
            rebase(ki, q, start);
            cap = k->capacity(q);
            m.cap = cap; m.esz = esz; m.head = 0; m.count = 0;
            m.buf = (unsigned char *)malloc(cap * esz);
            tmp = (unsigned char *)malloc((cap + 1) * esz);
            got = (unsigned char *)malloc((cap + 1) * esz);
            for (it = 0; it < iters && !bad; it++) {
                int op = (int)fa_t_randint(6);
                size_t n = (size_t)fa_t_randint((int64_t)cap + 1), j, done = 0;
                fa_status s, want;
                if (op == 0 || op == 2 || op == 3) { /* pushes */
                    size_t can = cap - m.count, todo;
                    if (op == 0) n = 1;
                    todo = op == 2 ? (n <= can ? n : 0) : (n < can ? n : can);
                    for (j = 0; j < n; j++) fill_item(tmp + j * esz, esz, next_id + j);
                    if (op == 0) s = k->push(q, tmp);
                    else if (op == 2) s = k->push_n(q, tmp, n);
                    else s = k->push_upto(q, tmp, n, &done);
                    want = (todo == 0 && n > 0) ? FA_ERR_FULL : FA_OK;
                    if (s != want || (op == 3 && done != todo)) {
                        CHECKF(0, "%s esz %zu op %d n %zu: %s (want %s), done %zu want %zu", k->name,
                               esz, op, n, fa_status_str(s), fa_status_str(want), done, todo);
                        bad = 1;
                    }
                    for (j = 0; j < todo; j++)
                        memcpy(m.buf + ((m.head + m.count + j) % cap) * esz, tmp + j * esz, esz);
                    m.count += todo;
                    next_id += todo;
                } else { /* pops */
                    size_t todo;
                    if (op == 1) n = 1;
                    todo = op == 4 ? (n <= m.count ? n : 0) : (n < m.count ? n : m.count);
                    if (op == 1) s = k->pop(q, got);
                    else if (op == 4) s = k->pop_n(q, got, n);
                    else s = k->pop_upto(q, got, n, &done);
                    want = (todo == 0 && n > 0) ? FA_ERR_EMPTY : FA_OK;
                    if (s != want || (op == 5 && done != todo)) {
                        CHECKF(0, "%s esz %zu op %d n %zu: %s (want %s)", k->name, esz, op, n,
                               fa_status_str(s), fa_status_str(want));
                        bad = 1;
                    }
                    for (j = 0; j < todo && !bad; j++) {
                        if (memcmp(got + j * esz, m.buf + ((m.head + j) % cap) * esz, esz) != 0) {
                            CHECKF(0, "%s esz %zu: item %zu of a pop differs", k->name, esz, j);
                            bad = 1;
                        }
                    }
                    m.head = (m.head + todo) % cap;
                    m.count -= todo;
                }
                if (k->qsize(q) != m.count || k->empty(q) != (m.count == 0) ||
                    k->full(q) != (m.count == cap)) {
                    CHECKF(0, "%s size %zu want %zu", k->name, k->qsize(q), m.count);
                    bad = 1;
                }
            }
            CHECKF(!bad, "%s cap %zu esz %zu start %zu", k->name, cap, esz, start);
            k->destroy(q);
            fa_aligned_free(q);
            free(m.buf); free(tmp); free(got);
        }
    }
}

TEST(random_operations_match_a_reference_deque_for_any_item_size)
{
    size_t sizes[] = {1, 3, 8, 12, 13, 64, 100};
    size_t si;
    int ki;
    for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (ki = 0; ki < 2; ki++)
            random_ops_vs_model(ki, 1 + (size_t)fa_t_randint(40), sizes[si], 4000 * SCALE / 4, 0);
}

/* The position counters wrap around SIZE_MAX; tiny rings (1-5 items) wrap their slots every
   few operations and exercise every case of the slot remap (one line, several lines). */
TEST(positions_wrap_around_size_max_with_tiny_and_small_capacities)
{
    size_t caps[] = {1, 2, 3, 4, 5, 8, 33, 64};
    size_t sizes[] = {8, 3, 24};
    size_t ci, si;
    int ki;
    for (ci = 0; ci < sizeof caps / sizeof caps[0]; ci++)
        for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (ki = 0; ki < 2; ki++)
                random_ops_vs_model(ki, caps[ci], sizes[si], 300 * SCALE / 4,
                                    SIZE_MAX - 3 * caps[ci] - (size_t)fa_t_randint(8));
}

/* The MPMC slot remap is a bijection on every ring size and puts neighbouring positions on
   different cache lines whenever the ring spans several lines (slots up to a line long are
   padded to a power of two so they tile the lines of the line-aligned ring). */
TEST(mpmc_slot_remap_is_a_bijection_that_spreads_neighbours_over_lines)
{
    size_t sizes[] = {1, 8, 16, 24, 56, 64, 100};
    size_t si, cap;
    for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (cap = 1; cap <= 4096; cap *= 2) {
            fa_mpmc q;
            fa_queue_desc d = qdesc(cap, sizes[si], 0);
            size_t slots, i, lines, bad = 0, spread_bad = 0;
            unsigned char *hit;
            CHECK(fa_mpmc_init(&q, &d) == FA_OK);
            slots = q.mask + 1;
            lines = (slots * q.slot_size + FA_CACHELINE - 1) / FA_CACHELINE;
            hit = (unsigned char *)calloc(slots, 1);
            for (i = 0; i < 3 * slots; i++) { /* three laps, starting near the wrap */
                size_t pos = SIZE_MAX - slots + i, j = fa__mpmc_index(&q, pos);
                size_t line = j * q.slot_size / FA_CACHELINE;
                size_t line2 = fa__mpmc_index(&q, pos + 1) * q.slot_size / FA_CACHELINE;
                if (j >= slots) bad++;
                else if (i < slots) hit[j]++;
                else if (fa__mpmc_index(&q, pos - slots) != j) bad++; /* period = slots */
                if (lines >= 2 && FA__MPMC_REMAP && q.slot_size <= FA_CACHELINE && line == line2)
                    spread_bad++;
            }
            for (i = 0; i < slots; i++) bad += hit[i] != 1;
            CHECKF(bad == 0, "esz %zu cap %zu: remap is not a bijection (%zu)", sizes[si], cap, bad);
            CHECKF(spread_bad == 0, "esz %zu cap %zu: %zu neighbours share a line", sizes[si], cap,
                   spread_bad);
            free(hit);
            fa_mpmc_destroy(&q);
        }
    }
}

/* ---- allocator and storage ---- */
typedef struct counting { long allocs, frees; size_t live; } counting;
static void *c_alloc(void *u, size_t bytes, size_t align)
{
    counting *c = (counting *)u;
    c->allocs++;
    c->live += bytes;
    return fa_aligned_alloc(bytes, align);
}
static void c_free(void *u, void *p, size_t bytes)
{
    counting *c = (counting *)u;
    c->frees++;
    c->live -= bytes;
    fa_aligned_free(p);
}

TEST(caller_storage_and_custom_allocator_are_used_and_balanced)
{
    int ki;
    for (ki = 0; ki < 2; ki++) {
        const qops *k = kinds[ki];
        void *q = qalloc(k);
        counting c = {0, 0, 0};
        fa_allocator a;
        fa_queue_desc d = qdesc(100, 24, 1);
        size_t bytes = 0;
        uint64_t *store;
        unsigned char item[24];
        a.alloc = c_alloc; a.free = c_free; a.user = &c;
        d.allocator = &a;
        CHECK(k->init(q, &d) == FA_OK);
        CHECK(c.allocs == 1 && c.live > 0);
        memset(item, 7, sizeof item);
        CHECK(k->push(q, item) == FA_OK);
        CHECK(k->destroy(q) == FA_OK);
        CHECKF(c.allocs == 1 && c.frees == 1 && c.live == 0, "%s allocs %ld frees %ld", k->name,
               c.allocs, c.frees);
        /* caller storage: nothing allocated, the ring lives in our buffer */
        CHECK((ki == 0 ? fa_spsc_storage_size(100, 24, &bytes) : fa_mpmc_storage_size(100, 24, &bytes)) == FA_OK);
        store = (uint64_t *)malloc(bytes);
        d.storage = store;
        d.storage_size = bytes;
        c.allocs = 0;
        CHECK(k->init(q, &d) == FA_OK);
        CHECK(c.allocs == 0);
        {
            int i, n = 0;
            for (i = 0; i < 100; i++) { item[0] = (unsigned char)i; if (k->push(q, item) == FA_OK) n++; }
            for (i = 0; i < n; i++) { CHECK(k->pop(q, item) == FA_OK && item[0] == (unsigned char)i); }
        }
        CHECK(k->destroy(q) == FA_OK);
        CHECK(c.frees == 1);
        free(store);
        fa_aligned_free(q);
    }
}

TEST(close_refuses_pushes_and_drains_pops)
{
    int ki;
    for (ki = 0; ki < 2; ki++) {
        const qops *k = kinds[ki];
        void *q = qalloc(k);
        fa_queue_desc d = qdesc(8, 8, 1);
        uint64_t x = 5, y = 0, buf[4] = {1, 2, 3, 4};
        size_t done = 9;
        CHECK(k->init(q, &d) == FA_OK);
        CHECK(k->push(q, &x) == FA_OK && k->push_n(q, buf, 2) == FA_OK);
        CHECK(k->close(q) == FA_OK);
        CHECK(k->push(q, &x) == FA_ERR_CLOSED);
        CHECK(k->push_n(q, buf, 1) == FA_ERR_CLOSED);
        CHECK(k->push_upto(q, buf, 1, &done) == FA_ERR_CLOSED && done == 0);
        CHECK(k->push_wait(q, &x, FA_WAIT_FOREVER) == FA_ERR_CLOSED);
        CHECK(k->pop(q, &y) == FA_OK && y == 5);
        CHECK(k->pop_wait(q, &y, FA_WAIT_FOREVER) == FA_OK && y == 1);
        CHECK(k->pop_upto(q, buf, 4, &done) == FA_OK && done == 1 && buf[0] == 2);
        CHECK(k->pop(q, &y) == FA_ERR_CLOSED);
        CHECK(k->pop_n(q, buf, 1) == FA_ERR_CLOSED);
        CHECK(k->pop_wait(q, &y, FA_WAIT_FOREVER) == FA_ERR_CLOSED);
        CHECK(k->destroy(q) == FA_OK);
        fa_aligned_free(q);
    }
}

/* ---- multi-threaded stress: every item exactly once, each producer's items in order ---- */
#define MAXP 4
typedef struct stress {
    const qops *k;
    void *q;
    int producers, consumers;
    uint64_t per_producer;
    unsigned char *seen[MAXP];   /* seen[p][seq]: times item (p, seq) was popped */
    int order_errors, dup_errors;
    int producers_left;          /* atomic */
    int blocking_ops;            /* use the *_wait calls */
} stress;

typedef struct sarg { stress *s; int id; uint64_t rng; } sarg;

static uint64_t lrand(uint64_t *s)
{
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

#define ITEM(p, i) (((uint64_t)(p) << 48) | (uint64_t)(i))
#define TIMEOUT_NS ((int64_t)20 * 1000000000) /* a wait that takes this long has lost a wake-up */

static void *producer_main(void *arg)
{
    sarg *a = (sarg *)arg;
    stress *s = a->s;
    uint64_t i = 0, buf[16];
    while (i < s->per_producer) {
        uint64_t r = lrand(&a->rng), n = 1 + r % 16, j;
        size_t done = 0;
        fa_status st;
        if (n > s->per_producer - i) n = s->per_producer - i;
        for (j = 0; j < n; j++) buf[j] = ITEM(a->id, i + j);
        switch ((r >> 8) % 4) {
        case 0: st = s->blocking_ops ? s->k->push_wait(s->q, buf, TIMEOUT_NS) : s->k->push(s->q, buf); done = st == FA_OK; break;
        case 1: st = s->k->push_n(s->q, buf, (size_t)n); done = st == FA_OK ? n : 0; break;
        default: st = s->k->push_upto(s->q, buf, (size_t)n, &done); break;
        }
        if (st == FA_ERR_TIMEOUT) { __atomic_add_fetch(&s->order_errors, 1000, __ATOMIC_RELAXED); break; }
        if (done == 0) sched_yield();
        i += done;
    }
    __atomic_sub_fetch(&s->producers_left, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void consume(stress *s, uint64_t *last, const uint64_t *items, size_t n)
{
    size_t j;
    for (j = 0; j < n; j++) {
        uint64_t p = items[j] >> 48, i = items[j] & 0xffffffffffffull;
        if (p >= (uint64_t)s->producers || i >= s->per_producer) { s->dup_errors++; continue; }
        if (last[p] != UINT64_MAX && i <= last[p]) __atomic_add_fetch(&s->order_errors, 1, __ATOMIC_RELAXED);
        last[p] = i;
        __atomic_add_fetch(&s->seen[p][i], 1, __ATOMIC_RELAXED);
    }
}

static void *consumer_main(void *arg)
{
    sarg *a = (sarg *)arg;
    stress *s = a->s;
    uint64_t last[MAXP], buf[16];
    int p;
    for (p = 0; p < MAXP; p++) last[p] = UINT64_MAX;
    for (;;) {
        uint64_t r = lrand(&a->rng), n = 1 + r % 16;
        size_t done = 0;
        fa_status st;
        switch ((r >> 8) % 4) {
        case 0: st = s->blocking_ops ? s->k->pop_wait(s->q, buf, TIMEOUT_NS) : s->k->pop(s->q, buf); done = st == FA_OK; break;
        case 1: st = s->k->pop_n(s->q, buf, (size_t)n); done = st == FA_OK ? n : 0; break;
        default: st = s->k->pop_upto(s->q, buf, (size_t)n, &done); break;
        }
        if (st == FA_ERR_CLOSED) break;
        if (st == FA_ERR_TIMEOUT) { __atomic_add_fetch(&s->order_errors, 1000, __ATOMIC_RELAXED); break; }
        consume(s, last, buf, done);
        if (done == 0) sched_yield();
    }
    return NULL;
}

static void run_stress(const qops *k, int producers, int consumers, uint64_t per, size_t cap,
                       int blocking)
{
    stress s;
    sarg pa[MAXP], ca[MAXP];
    pthread_t pt[MAXP], ct[MAXP];
    fa_queue_desc d = qdesc(cap, 8, blocking);
    int i;
    uint64_t j, missing = 0, dups = 0;
    double t0 = t_now();
    memset(&s, 0, sizeof s);
    s.k = k;
    s.q = qalloc(k);
    s.producers = producers;
    s.consumers = consumers;
    s.per_producer = per;
    s.producers_left = producers;
    s.blocking_ops = blocking;
    CHECK(k->init(s.q, &d) == FA_OK);
    for (i = 0; i < producers; i++) s.seen[i] = (unsigned char *)calloc(per, 1);
    for (i = 0; i < consumers; i++) {
        ca[i].s = &s; ca[i].id = i; ca[i].rng = fa_t_rand() | 1;
        pthread_create(&ct[i], NULL, consumer_main, &ca[i]);
    }
    for (i = 0; i < producers; i++) {
        pa[i].s = &s; pa[i].id = i; pa[i].rng = fa_t_rand() | 1;
        pthread_create(&pt[i], NULL, producer_main, &pa[i]);
    }
    for (i = 0; i < producers; i++) pthread_join(pt[i], NULL);
    k->close(s.q); /* every push has returned: consumers drain, then see FA_ERR_CLOSED */
    for (i = 0; i < consumers; i++) pthread_join(ct[i], NULL);
    for (i = 0; i < producers; i++) {
        for (j = 0; j < per; j++) {
            missing += s.seen[i][j] == 0;
            dups += s.seen[i][j] > 1;
        }
        free(s.seen[i]);
    }
    CHECKF(missing == 0 && dups == 0 && s.dup_errors == 0,
           "%s %dP/%dC: %llu missing, %llu duplicated, %d corrupt", k->name, producers, consumers,
           (unsigned long long)missing, (unsigned long long)dups, s.dup_errors);
    CHECKF(s.order_errors == 0, "%s %dP/%dC: %d order errors (>= 1000: a wait timed out)", k->name,
           producers, consumers, s.order_errors);
    CHECK(k->empty(s.q));
    CHECK(k->destroy(s.q) == FA_OK);
    fa_aligned_free(s.q);
    printf("     %s %dP/%dC cap %zu%s: %llu items in %.2fs\n", k->name, producers, consumers, cap,
           blocking ? " blocking" : "", (unsigned long long)(per * (uint64_t)producers),
           t_now() - t0);
}

TEST(spsc_stress_moves_millions_in_order_exactly_once)
{
    run_stress(&spsc_ops, 1, 1, 250000 * SCALE, 1024, 0);
    run_stress(&spsc_ops, 1, 1, 10000 * SCALE, 7, 1);
    run_stress(&spsc_ops, 1, 1, 4000 * SCALE, 1, 0);
    run_stress(&spsc_ops, 1, 1, 8000 * SCALE, 3, 0);
}

TEST(mpmc_stress_many_producers_and_consumers_exactly_once_in_order)
{
    run_stress(&mpmc_ops, 4, 4, 80000 * SCALE, 1024, 0);
    run_stress(&mpmc_ops, 3, 2, 30000 * SCALE, 16, 0);
    run_stress(&mpmc_ops, 2, 3, 6000 * SCALE, 4, 1);
    run_stress(&mpmc_ops, 1, 4, 8000 * SCALE, 2, 1);
}

/* ---- blocking waits ---- */
typedef struct pingpong { const qops *k; void *a, *b; int rounds, errors; } pingpong;

static void *pong_main(void *arg)
{
    pingpong *pp = (pingpong *)arg;
    int i;
    for (i = 0; i < pp->rounds; i++) {
        uint64_t x;
        if (pp->k->pop_wait(pp->a, &x, TIMEOUT_NS) != FA_OK || x != (uint64_t)i) { pp->errors++; break; }
        if (pp->k->push_wait(pp->b, &x, TIMEOUT_NS) != FA_OK) { pp->errors++; break; }
    }
    return NULL;
}

/* Two threads hand one item back and forth, sleeping in the waits every time. A lost wake-up
   leaves both asleep: the wait then times out (TIMEOUT_NS) and the test fails, not hangs. */
TEST(blocking_ping_pong_never_loses_a_wake_up)
{
    int ki;
    for (ki = 0; ki < 2; ki++) {
        const qops *k = kinds[ki];
        pingpong pp;
        pthread_t t;
        fa_queue_desc d = qdesc(1, 8, 1);
        int i;
        double t0 = t_now();
        pp.k = k; pp.a = qalloc(k); pp.b = qalloc(k);
        pp.rounds = 4000 * SCALE / 4; pp.errors = 0;
        CHECK(k->init(pp.a, &d) == FA_OK && k->init(pp.b, &d) == FA_OK);
        pthread_create(&t, NULL, pong_main, &pp);
        for (i = 0; i < pp.rounds; i++) {
            uint64_t x = (uint64_t)i, y = 0;
            fa_status s1 = k->push_wait(pp.a, &x, TIMEOUT_NS), s2 = k->pop_wait(pp.b, &y, TIMEOUT_NS);
            if (s1 != FA_OK || s2 != FA_OK || y != x) {
                CHECKF(0, "%s round %d: %s %s", k->name, i, fa_status_str(s1), fa_status_str(s2));
                break;
            }
        }
        pthread_join(t, NULL);
        CHECK(pp.errors == 0);
        CHECKF(t_now() - t0 < 20.0, "%s ping-pong too slow: %.1fs", k->name, t_now() - t0);
        k->destroy(pp.a); k->destroy(pp.b);
        fa_aligned_free(pp.a); fa_aligned_free(pp.b);
    }
}

typedef struct sleeper { const qops *k; void *q; fa_status st; uint64_t got; int64_t timeout; } sleeper;
static void *sleeper_main(void *arg)
{
    sleeper *s = (sleeper *)arg;
    s->st = s->k->pop_wait(s->q, &s->got, s->timeout);
    return NULL;
}

/* Consumers asleep in the kernel (not spinning) are woken by later pushes, one item each. */
TEST(sleeping_consumers_each_get_woken_by_a_push)
{
    int ki, blocking;
    for (ki = 0; ki < 2; ki++) {
        for (blocking = 0; blocking < 2; blocking++) {
            const qops *k = kinds[ki];
            int nw = ki == 0 ? 1 : 3, i;
            sleeper s[3];
            pthread_t t[3];
            void *q = qalloc(k);
            fa_queue_desc d = qdesc(8, 8, blocking);
            uint64_t sum = 0;
            CHECK(k->init(q, &d) == FA_OK);
            for (i = 0; i < nw; i++) {
                s[i].k = k; s[i].q = q; s[i].st = FA_ERR_INTERNAL; s[i].timeout = TIMEOUT_NS;
                pthread_create(&t[i], NULL, sleeper_main, &s[i]);
            }
            t_sleep_ms(30); /* long enough to be past the spin phase and asleep */
            for (i = 0; i < nw; i++) {
                uint64_t x = 100 + (uint64_t)i;
                CHECK(k->push(q, &x) == FA_OK);
                t_sleep_ms(2);
            }
            for (i = 0; i < nw; i++) {
                pthread_join(t[i], NULL);
                CHECKF(s[i].st == FA_OK, "%s blocking=%d sleeper %d: %s", k->name, blocking, i,
                       fa_status_str(s[i].st));
                sum += s[i].got;
            }
            CHECK(sum == (uint64_t)(100 * nw + nw * (nw - 1) / 2));
            CHECK(k->destroy(q) == FA_OK);
            fa_aligned_free(q);
        }
    }
}

TEST(wait_times_out_and_push_wait_resumes_when_space_frees)
{
    int ki;
    for (ki = 0; ki < 2; ki++) {
        const qops *k = kinds[ki];
        void *q = qalloc(k);
        fa_queue_desc d = qdesc(2, 8, 1);
        uint64_t x = 1;
        double t0;
        fa_status st;
        CHECK(k->init(q, &d) == FA_OK);
        t0 = t_now();
        st = k->pop_wait(q, &x, 30 * 1000000);
        CHECKF(st == FA_ERR_TIMEOUT, "%s: %s", k->name, fa_status_str(st));
        CHECKF(t_now() - t0 >= 0.029 && t_now() - t0 < 5.0, "%s waited %.3fs", k->name, t_now() - t0);
        while (k->push(q, &x) == FA_OK) x++;
        t0 = t_now();
        CHECK(k->push_wait(q, &x, 20 * 1000000) == FA_ERR_TIMEOUT);
        CHECK(t_now() - t0 >= 0.019);
        {
            /* a consumer frees a slot after ~20 ms; the sleeping producer then succeeds */
            sleeper s;
            pthread_t t;
            uint64_t v = 999;
            s.k = k; s.q = q; s.timeout = TIMEOUT_NS;
            t0 = t_now();
            pthread_create(&t, NULL, sleeper_main, &s); /* pops once (no wait: queue is full) */
            pthread_join(t, NULL);
            CHECK(s.st == FA_OK && s.got == 1);
            CHECK(k->push(q, &v) == FA_OK);
            CHECK(k->push_wait(q, &v, 0) == FA_ERR_FULL);
        }
        k->destroy(q);
        fa_aligned_free(q);
    }
}

static uint32_t waiters_of(int ki, void *q)
{
    fa__event *e = ki == 0 ? &((fa_spsc *)q)->not_empty : &((fa_mpmc *)q)->not_empty;
    return fa__ld(&e->waiters, FA__ACQUIRE);
}

/* destroy refuses while a thread sleeps in a wait; close wakes it with FA_ERR_CLOSED. */
TEST(destroy_with_a_waiter_is_refused_until_close_releases_it)
{
    int ki;
    for (ki = 0; ki < 2; ki++) {
        const qops *k = kinds[ki];
        void *q = qalloc(k);
        fa_queue_desc d = qdesc(4, 8, ki);
        sleeper s;
        pthread_t t;
        int tries = 0;
        fa_status st = FA_OK;
        CHECK(k->init(q, &d) == FA_OK);
        s.k = k; s.q = q; s.st = FA_ERR_INTERNAL; s.timeout = FA_WAIT_FOREVER;
        pthread_create(&t, NULL, sleeper_main, &s);
        /* wait until the waiter has registered (it spins first; peeks at a private field) */
        while (tries++ < 5000 && waiters_of(ki, q) == 0) t_sleep_ms(1);
        st = k->destroy(q);
        CHECKF(st == FA_ERR_BUSY, "%s destroy with waiter: %s", k->name, fa_status_str(st));
        CHECK(k->close(q) == FA_OK);
        pthread_join(t, NULL);
        CHECKF(s.st == FA_ERR_CLOSED, "%s waiter got %s", k->name, fa_status_str(s.st));
        CHECK(k->destroy(q) == FA_OK);
        fa_aligned_free(q);
    }
}

int main(void)
{
    fa_test_init();
    RUN(bad_input_is_rejected_with_clear_status);
    RUN(capacity_is_exact_for_spsc_and_a_power_of_two_for_mpmc);
    RUN(random_operations_match_a_reference_deque_for_any_item_size);
    RUN(positions_wrap_around_size_max_with_tiny_and_small_capacities);
    RUN(mpmc_slot_remap_is_a_bijection_that_spreads_neighbours_over_lines);
    RUN(caller_storage_and_custom_allocator_are_used_and_balanced);
    RUN(close_refuses_pushes_and_drains_pops);
    RUN(spsc_stress_moves_millions_in_order_exactly_once);
    RUN(mpmc_stress_many_producers_and_consumers_exactly_once_in_order);
    RUN(blocking_ping_pong_never_loses_a_wake_up);
    RUN(sleeping_consumers_each_get_woken_by_a_push);
    RUN(wait_times_out_and_push_wait_resumes_when_space_frees);
    RUN(destroy_with_a_waiter_is_refused_until_close_releases_it);
    return fa_test_summary();
}
