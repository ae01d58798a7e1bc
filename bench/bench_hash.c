/* bench/bench_hash.c - fa_map against a plain chained hash table, uthash and Concurrency Kit's
   ck_ht (when installed) for 8-byte keys and values; then fa_cmap / fa_clru read scaling.

   usage: bench_hash [--no-16m] [--threads N] [--seconds S] [--runs R]
     --no-16m     skip the 16M-entry tables (about 3 GB of memory with uthash)
     --threads N  largest thread count of the concurrent part (default: CPUs)
     --seconds S  duration of each concurrent measurement (default 0.5)
     --runs R     repetitions of the single-threaded part, median reported (default 3)

   Single-threaded: each table starts empty (no reserve) and inserts N random keys; lookups
   (hits in shuffled order, misses), iteration, and erase of every key follow. Memory is the
   heap growth reported by mallinfo2 (glibc), i.e. what the allocator really handed out.
   Latency: individually timed lookups of random present keys, timer overhead subtracted.
   Concurrent: 95% get / 5% insert-or-assign on random keys of a 1M-entry table, for 1, 2, 4,
   ... N threads; fa_cmap against one pthread rwlock around an fa_map. */
#define _GNU_SOURCE
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "bench/bench_util.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>

#if defined(FA_HAVE_UTHASH)
#include <uthash.h>
#endif
#if defined(FA_HAVE_CK)
#include <ck_ht.h>
#endif

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* ---------------- fa_map ---------------- */
static void *fam_create(void)
{
    fa_map *m = (fa_map *)malloc(sizeof *m);
    fa_map_desc d;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = 8;
    if (fa_map_init(m, &d) != FA_OK) abort();
    return m;
}
static inline void fam_insert(void *t, uint64_t k, uint64_t v) { fa_map_insert((fa_map *)t, &k, &v, NULL); }
static inline int fam_find(void *t, uint64_t k, uint64_t *v)
{
    const uint64_t *p = (const uint64_t *)fa_map_find((fa_map *)t, &k);
    if (!p) return 0;
    *v = *p;
    return 1;
}
static inline int fam_erase(void *t, uint64_t k) { return fa_map_erase((fa_map *)t, &k, NULL) == FA_OK; }
static uint64_t fam_iterate(void *t)
{
    size_t it = 0;
    void *v;
    uint64_t s = 0;
    while (fa_map_next((fa_map *)t, &it, NULL, &v)) s += *(uint64_t *)v;
    return s;
}
/* fa_map_find_batch over the shuffled keys, 64 at a time; Mops/s */
static uint64_t *g_batch_keys;
static double fam_batch(void *t, size_t n, uint64_t *sink);
static double none_batch(void *t, size_t n, uint64_t *sink)
{
    (void)t; (void)n; (void)sink;
    return 0.0;
}
#define ch_batch none_batch
#define ut_batch none_batch
#define ck_batch none_batch
static void fam_destroy(void *t)
{
    fa_map_destroy((fa_map *)t);
    free(t);
}

/* ---------------- chained: what a user writes in an afternoon ---------------- */
typedef struct cnode {
    uint64_t key, val;
    struct cnode *next;
} cnode;
typedef struct chain {
    cnode **b;
    size_t bits, count;
} chain;
static inline size_t ch_idx(const chain *c, uint64_t k) { return (size_t)((k * 0x9e3779b97f4a7c15ull) >> (64 - c->bits)); }
static void *ch_create(void)
{
    chain *c = (chain *)calloc(1, sizeof *c);
    c->bits = 4;
    c->b = (cnode **)calloc((size_t)1 << c->bits, sizeof(cnode *));
    return c;
}
static void ch_grow(chain *c)
{
    size_t n = (size_t)1 << c->bits, i;
    cnode **old = c->b;
    c->bits++;
    c->b = (cnode **)calloc(n * 2, sizeof(cnode *));
    for (i = 0; i < n; i++) {
        cnode *e = old[i];
        while (e) {
            cnode *nx = e->next;
            size_t j = ch_idx(c, e->key);
            e->next = c->b[j];
            c->b[j] = e;
            e = nx;
        }
    }
    free(old);
}
static inline void ch_insert(void *t, uint64_t k, uint64_t v)
{
    chain *c = (chain *)t;
    cnode *e;
    size_t i = ch_idx(c, k);
    for (e = c->b[i]; e; e = e->next)
        if (e->key == k) { e->val = v; return; }
    if (c->count >= ((size_t)1 << c->bits)) { ch_grow(c); i = ch_idx(c, k); }
    e = (cnode *)malloc(sizeof *e);
    e->key = k;
    e->val = v;
    e->next = c->b[i];
    c->b[i] = e;
    c->count++;
}
static inline int ch_find(void *t, uint64_t k, uint64_t *v)
{
    chain *c = (chain *)t;
    cnode *e;
    for (e = c->b[ch_idx(c, k)]; e; e = e->next)
        if (e->key == k) { *v = e->val; return 1; }
    return 0;
}
static inline int ch_erase(void *t, uint64_t k)
{
    chain *c = (chain *)t;
    cnode **pp = &c->b[ch_idx(c, k)], *e;
    for (; (e = *pp); pp = &e->next)
        if (e->key == k) { *pp = e->next; free(e); c->count--; return 1; }
    return 0;
}
static uint64_t ch_iterate(void *t)
{
    chain *c = (chain *)t;
    size_t i, n = (size_t)1 << c->bits;
    uint64_t s = 0;
    cnode *e;
    for (i = 0; i < n; i++)
        for (e = c->b[i]; e; e = e->next) s += e->val;
    return s;
}
static void ch_destroy(void *t)
{
    chain *c = (chain *)t;
    size_t i, n = (size_t)1 << c->bits;
    for (i = 0; i < n; i++) {
        cnode *e = c->b[i];
        while (e) { cnode *nx = e->next; free(e); e = nx; }
    }
    free(c->b);
    free(c);
}

/* ---------------- uthash ---------------- */
#if defined(FA_HAVE_UTHASH)
typedef struct ut_ent {
    uint64_t key, val;
    UT_hash_handle hh;
} ut_ent;
typedef struct ut_tab { ut_ent *head; } ut_tab;
static void *ut_create(void) { return calloc(1, sizeof(ut_tab)); }
static inline void ut_insert(void *t, uint64_t k, uint64_t v)
{
    ut_tab *u = (ut_tab *)t;
    ut_ent *e = (ut_ent *)malloc(sizeof *e);
    e->key = k;
    e->val = v;
    HASH_ADD(hh, u->head, key, sizeof(uint64_t), e);
}
static inline int ut_find(void *t, uint64_t k, uint64_t *v)
{
    ut_tab *u = (ut_tab *)t;
    ut_ent *e;
    HASH_FIND(hh, u->head, &k, sizeof(uint64_t), e);
    if (!e) return 0;
    *v = e->val;
    return 1;
}
static inline int ut_erase(void *t, uint64_t k)
{
    ut_tab *u = (ut_tab *)t;
    ut_ent *e;
    HASH_FIND(hh, u->head, &k, sizeof(uint64_t), e);
    if (!e) return 0;
    HASH_DEL(u->head, e);
    free(e);
    return 1;
}
static uint64_t ut_iterate(void *t)
{
    ut_tab *u = (ut_tab *)t;
    ut_ent *e, *tmp;
    uint64_t s = 0;
    HASH_ITER(hh, u->head, e, tmp) { s += e->val; }
    return s;
}
static void ut_destroy(void *t)
{
    ut_tab *u = (ut_tab *)t;
    ut_ent *e, *tmp;
    HASH_ITER(hh, u->head, e, tmp)
    {
        HASH_DEL(u->head, e);
        free(e);
    }
    free(u);
}
#endif

/* ---------------- ck_ht (direct mode: 8-byte keys and values stored inline) ---------------- */
#if defined(FA_HAVE_CK)
static void *ck_m_malloc(size_t n) { return malloc(n); }
static void *ck_m_realloc(void *p, size_t o, size_t n, bool d) { (void)o; (void)d; return realloc(p, n); }
static void ck_m_free(void *p, size_t n, bool d) { (void)n; (void)d; free(p); }
static struct ck_malloc ck_alloc = {ck_m_malloc, ck_m_realloc, ck_m_free};
static void *ck_create(void)
{
    ck_ht_t *h = (ck_ht_t *)malloc(sizeof *h);
    if (!ck_ht_init(h, CK_HT_MODE_DIRECT | CK_HT_WORKLOAD_DELETE, NULL, &ck_alloc, 16, 12345)) abort();
    return h;
}
static inline void ck_insert(void *t, uint64_t k, uint64_t v)
{
    ck_ht_entry_t e;
    ck_ht_hash_t h;
    ck_ht_hash_direct(&h, (ck_ht_t *)t, (uintptr_t)k);
    ck_ht_entry_set_direct(&e, h, (uintptr_t)k, (uintptr_t)v);
    ck_ht_put_spmc((ck_ht_t *)t, h, &e);
}
static inline int ck_find(void *t, uint64_t k, uint64_t *v)
{
    ck_ht_entry_t e;
    ck_ht_hash_t h;
    ck_ht_hash_direct(&h, (ck_ht_t *)t, (uintptr_t)k);
    ck_ht_entry_key_set_direct(&e, (uintptr_t)k);
    if (!ck_ht_get_spmc((ck_ht_t *)t, h, &e)) return 0;
    *v = ck_ht_entry_value_direct(&e);
    return 1;
}
static inline int ck_erase(void *t, uint64_t k)
{
    ck_ht_entry_t e;
    ck_ht_hash_t h;
    ck_ht_hash_direct(&h, (ck_ht_t *)t, (uintptr_t)k);
    ck_ht_entry_key_set_direct(&e, (uintptr_t)k);
    return ck_ht_remove_spmc((ck_ht_t *)t, h, &e);
}
static uint64_t ck_iterate(void *t)
{
    ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
    ck_ht_entry_t *e;
    uint64_t s = 0;
    while (ck_ht_next((ck_ht_t *)t, &it, &e)) s += ck_ht_entry_value_direct(e);
    return s;
}
static void ck_destroy(void *t)
{
    ck_ht_destroy((ck_ht_t *)t);
    free(t);
}
#endif

/* ---------------- the single-threaded runner ---------------- */
static double fam_batch(void *t, size_t n, uint64_t *sink)
{
    void *out[64];
    size_t i, j;
    double t0 = bench_now();
    for (i = 0; i < n; i += 64) {
        size_t nb = n - i < 64 ? n - i : 64;
        if (fa_map_find_batch((fa_map *)t, g_batch_keys + i, nb, out) != nb) abort();
        for (j = 0; j < nb; j++) *sink += *(uint64_t *)out[j];
    }
    return n / (bench_now() - t0) * 1e-6;
}
enum { OP_INSERT, OP_HIT, OP_HIT_BATCH, OP_MISS, OP_ITER, OP_ERASE, OP_BYTES, OP_P50, OP_P99, OP_COUNT };
static const char *const op_names[OP_COUNT] = {
    "insert (Mops/s)", "lookup hit (Mops/s)", "hit, batch API (Mops/s)", "lookup miss (Mops/s)",
    "iterate (M entries/s)", "erase (Mops/s)", "bytes / entry", "lookup p50 (ns)", "lookup p99 (ns)"};

static const uint64_t *g_keys, *g_miss;
static const uint32_t *g_perm;
static double g_timer_ns;
static volatile uint64_t g_sink;
#define LAT_SAMPLES 200000

static double lat_pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[(int)(p * (n - 1))];
}

/* Instantiates run_<p>(n, out[OP_COUNT]) with p's operations inlined into the loops. */
#define DEFINE_RUNNER(p)                                                                       \
    static void run_##p(size_t n, double *out)                                                 \
    {                                                                                          \
        size_t i, h0 = heap_bytes();                                                           \
        uint64_t s = 0, v = 0;                                                                 \
        double t0;                                                                             \
        static double lat[LAT_SAMPLES];                                                        \
        void *t = p##_create();                                                                \
        t0 = bench_now();                                                                      \
        for (i = 0; i < n; i++) p##_insert(t, g_keys[i], g_keys[i] ^ 1);                       \
        out[OP_INSERT] = n / (bench_now() - t0) * 1e-6;                                        \
        out[OP_BYTES] = (double)(heap_bytes() - h0) / (double)n;                               \
        t0 = bench_now();                                                                      \
        for (i = 0; i < n; i++) {                                                              \
            uint64_t k = g_keys[g_perm[i]];                                                    \
            if (!p##_find(t, k, &v) || v != (k ^ 1)) abort();                                  \
            s += v;                                                                            \
        }                                                                                      \
        out[OP_HIT] = n / (bench_now() - t0) * 1e-6;                                           \
        out[OP_HIT_BATCH] = p##_batch(t, n, &s);                                               \
        t0 = bench_now();                                                                      \
        for (i = 0; i < n; i++) s += (uint64_t)p##_find(t, g_miss[i], &v);                     \
        out[OP_MISS] = n / (bench_now() - t0) * 1e-6;                                          \
        t0 = bench_now();                                                                      \
        s += p##_iterate(t);                                                                   \
        out[OP_ITER] = n / (bench_now() - t0) * 1e-6;                                          \
        for (i = 0; i < LAT_SAMPLES; i++) {                                                    \
            uint64_t k = g_keys[g_perm[(i * 7919u) % n]];                                      \
            double a = bench_now();                                                            \
            p##_find(t, k, &v);                                                                \
            lat[i] = (bench_now() - a) * 1e9 - g_timer_ns;                                     \
            s += v;                                                                            \
        }                                                                                      \
        out[OP_P50] = lat_pct(lat, LAT_SAMPLES, 0.50);                                         \
        out[OP_P99] = lat_pct(lat, LAT_SAMPLES, 0.99);                                         \
        t0 = bench_now();                                                                      \
        for (i = 0; i < n; i++)                                                                \
            if (!p##_erase(t, g_keys[g_perm[i]])) abort();                                     \
        out[OP_ERASE] = n / (bench_now() - t0) * 1e-6;                                         \
        p##_destroy(t);                                                                        \
        g_sink += s;                                                                           \
    }

DEFINE_RUNNER(fam)
DEFINE_RUNNER(ch)
#if defined(FA_HAVE_UTHASH)
DEFINE_RUNNER(ut)
#endif
#if defined(FA_HAVE_CK)
DEFINE_RUNNER(ck)
#endif

typedef struct table_kind {
    const char *name;
    void (*run)(size_t, double *);
} table_kind;

static void bench_size(size_t n, int runs)
{
    table_kind kinds[4];
    int nk = 0, k, r, o;
    double res[4][OP_COUNT], samples[16][OP_COUNT];
    uint64_t *keys = (uint64_t *)malloc(n * 8), *miss = (uint64_t *)malloc(n * 8), x = 42;
    uint32_t *perm = (uint32_t *)malloc(n * 4);
    size_t i;
    /* random keys, never 0 or ~0 (ck_ht's empty/tombstone markers); misses are disjoint */
    for (i = 0; i < n; i++) keys[i] = (splitmix(&x) | 2) & ~(uint64_t)1;
    for (i = 0; i < n; i++) miss[i] = splitmix(&x) | 1;
    for (i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (i = n - 1; i > 0; i--) {
        size_t j = (size_t)(splitmix(&x) % (i + 1));
        uint32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    g_keys = keys;
    g_miss = miss;
    g_perm = perm;
    g_batch_keys = (uint64_t *)malloc(n * 8);
    for (i = 0; i < n; i++) g_batch_keys[i] = keys[perm[i]];
    kinds[nk].name = "fa_map"; kinds[nk++].run = run_fam;
    kinds[nk].name = "chained"; kinds[nk++].run = run_ch;
#if defined(FA_HAVE_UTHASH)
    kinds[nk].name = "uthash"; kinds[nk++].run = run_ut;
#endif
#if defined(FA_HAVE_CK)
    kinds[nk].name = "ck_ht"; kinds[nk++].run = run_ck;
#endif
    if (runs > 16) runs = 16;
    for (k = 0; k < nk; k++) {
        for (r = 0; r < runs; r++) kinds[k].run(n, samples[r]);
        for (o = 0; o < OP_COUNT; o++) {
            double v[16];
            for (r = 0; r < runs; r++) v[r] = samples[r][o];
            res[k][o] = bench_median(v, runs);
        }
    }
    printf("\n%zu entries, 8-byte keys and values (median of %d runs)\n", n, runs);
    printf("%-24s", "");
    for (k = 0; k < nk; k++) printf("%12s", kinds[k].name);
    printf("\n");
    for (o = 0; o < OP_COUNT; o++) {
        printf("%-24s", op_names[o]);
        for (k = 0; k < nk; k++) {
            if (o == OP_HIT_BATCH && k > 0) printf("%12s", "-");
            else printf("%12.1f", res[k][o]);
        }
        printf("\n");
    }
    for (k = 1; k < nk; k++)
        printf("fa_map / %-8s lookup hit %.2fx, miss %.2fx, insert %.2fx, memory %.2fx\n", kinds[k].name,
               res[0][OP_HIT] / res[k][OP_HIT], res[0][OP_MISS] / res[k][OP_MISS],
               res[0][OP_INSERT] / res[k][OP_INSERT], res[0][OP_BYTES] / res[k][OP_BYTES]);
    free(keys);
    free(miss);
    free(perm);
    free(g_batch_keys);
}

/* Memory at the maximum load: fill 2^20 slots to exactly 7/8. */
static void bench_memory_at_max_load(void)
{
    fa_map m;
    fa_map_desc d;
    size_t n = ((size_t)1 << 20) / 8 * 7, i;
    uint64_t x = 7;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = 8;
    d.capacity = n;
    fa_map_init(&m, &d);
    for (i = 0; i < n; i++) {
        uint64_t k = splitmix(&x);
        fa_map_insert(&m, &k, &k, NULL);
    }
    printf("\nfa_map memory at load 7/8 (%zu entries): %.2f bytes/entry = %.3fx the 16 raw bytes "
           "(target <= 1.3x)\n", fa_map_count(&m), (double)fa_map_memory(&m) / (double)fa_map_count(&m),
           (double)fa_map_memory(&m) / (double)fa_map_count(&m) / 16.0);
    fa_map_destroy(&m);
}

/* Erase-heavy steady state: sliding window of n live keys at ~76% load. */
static void bench_churn(size_t n)
{
    fa_map m;
    fa_map_desc d;
    uint64_t next = 0, oldest = 0, x = 99, found = 0;
    size_t i, rounds = 10 * n;
    double t0, t_ins;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = 8;
    d.capacity = n;
    fa_map_init(&m, &d);
    (void)x;
    t0 = bench_now();
    for (i = 0; i < n; i++, next++) fa_map_insert(&m, &next, &next, NULL);
    t_ins = (bench_now() - t0) / (double)n;
    t0 = bench_now();
    for (i = 0; i < rounds; i++, next++, oldest++) {
        fa_map_insert(&m, &next, &next, NULL);
        fa_map_erase(&m, &oldest, NULL);
    }
    printf("erase-heavy churn at %.0f%% load: insert+erase pair %.1f ns (plain insert %.1f ns), "
           "memory %zu -> %zu bytes\n", 100.0 * (double)n / (double)m.slot_count_,
           (bench_now() - t0) / (double)rounds * 1e9, t_ins * 1e9, fa_map_memory(&m), fa_map_memory(&m));
    t0 = bench_now();
    for (i = 0; i < n; i++) {
        uint64_t k = oldest + (i * 7919u) % n;
        found += fa_map_find(&m, &k) != NULL;
    }
    printf("lookup hit after churn: %.1f Mops/s (%llu found)\n", (double)n / (bench_now() - t0) * 1e-6,
           (unsigned long long)found);
    fa_map_destroy(&m);
}

/* ---------------- concurrent read scaling ---------------- */
enum { C_CMAP, C_RWLOCK, C_CLRU, C_KINDS };
static const char *const c_names[C_KINDS] = {"fa_cmap", "rwlock+fa_map", "fa_clru"};
typedef struct cshared {
    int kind;
    fa_cmap *cm;
    fa_clru *lru;
    fa_map *map;
    pthread_rwlock_t rw;
    uint64_t nkeys;
    double seconds;
    pthread_barrier_t bar;
} cshared;
typedef struct cthread {
    cshared *sh;
    int id;
    uint64_t ops;
} cthread;

static void *c_worker(void *arg)
{
    cthread *ct = (cthread *)arg;
    cshared *sh = ct->sh;
    uint64_t x = 1234567u * (uint64_t)(ct->id + 1), ops = 0, v, s = 0;
    double end;
    pthread_barrier_wait(&sh->bar);
    end = bench_now() + sh->seconds;
    do {
        int j;
        for (j = 0; j < 1024; j++) {
            uint64_t r = splitmix(&x), k = (r >> 8) % sh->nkeys;
            int write = (r & 255) < 13; /* 13/256 = 5.1% writes */
            switch (sh->kind) {
            case C_CMAP:
                if (write) fa_cmap_insert_or_assign(sh->cm, &k, &r);
                else if (fa_cmap_get(sh->cm, &k, &v) == FA_OK) s += v;
                break;
            case C_RWLOCK:
                if (write) {
                    pthread_rwlock_wrlock(&sh->rw);
                    fa_map_insert_or_assign(sh->map, &k, &r, NULL);
                    pthread_rwlock_unlock(&sh->rw);
                } else {
                    const uint64_t *p;
                    pthread_rwlock_rdlock(&sh->rw);
                    p = (const uint64_t *)fa_map_find(sh->map, &k);
                    if (p) s += *p;
                    pthread_rwlock_unlock(&sh->rw);
                }
                break;
            default:
                if (write) fa_clru_put(sh->lru, &k, &r);
                else if (fa_clru_get(sh->lru, &k, &v) == FA_OK) s += v;
                break;
            }
        }
        ops += 1024;
    } while (bench_now() < end);
    ct->ops = ops;
    g_sink += s;
    return NULL;
}

static double c_run(cshared *sh, int threads)
{
    pthread_t th[1024];
    cthread ct[1024];
    int i;
    uint64_t total = 0;
    double t0;
    pthread_barrier_init(&sh->bar, NULL, (unsigned)threads);
    t0 = bench_now();
    for (i = 0; i < threads; i++) {
        ct[i].sh = sh;
        ct[i].id = i;
        ct[i].ops = 0;
        pthread_create(&th[i], NULL, c_worker, &ct[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += ct[i].ops;
    }
    pthread_barrier_destroy(&sh->bar);
    return (double)total / (bench_now() - t0) * 1e-6;
}

static void bench_concurrent(int max_threads, double seconds)
{
    cshared sh;
    fa_cmap_desc cd;
    fa_lru_desc ld;
    fa_map_desc md;
    fa_map map;
    uint64_t k;
    int counts[32], nc = 0, t, c, i;
    double base[C_KINDS];
    memset(&sh, 0, sizeof sh);
    sh.nkeys = 1u << 20;
    sh.seconds = seconds;
    memset(&cd, 0, sizeof cd);
    cd.key_size = cd.value_size = 8;
    cd.capacity = sh.nkeys;
    memset(&ld, 0, sizeof ld);
    ld.key_size = ld.value_size = 8;
    ld.capacity = sh.nkeys;
    memset(&md, 0, sizeof md);
    md.key_size = md.value_size = 8;
    md.capacity = sh.nkeys;
    if (fa_cmap_create(&sh.cm, &cd) || fa_clru_create(&sh.lru, &ld) || fa_map_init(&map, &md)) abort();
    sh.map = &map;
    pthread_rwlock_init(&sh.rw, NULL);
    for (k = 0; k < sh.nkeys; k++) {
        fa_cmap_insert(sh.cm, &k, &k);
        fa_clru_put(sh.lru, &k, &k);
        fa_map_insert(&map, &k, &k, NULL);
    }
    for (t = 1; t < max_threads && nc < 30; t *= 2) counts[nc++] = t;
    counts[nc++] = max_threads;
    printf("\nconcurrent: 1M keys, 95%% get / 5%% insert-or-assign, %.1f s per point, Mops/s "
           "(speedup over 1 thread)\n%-10s", seconds, "threads");
    for (c = 0; c < C_KINDS; c++) printf("%22s", c_names[c]);
    printf("\n");
    for (i = 0; i < nc; i++) {
        printf("%-10d", counts[i]);
        for (c = 0; c < C_KINDS; c++) {
            double r;
            sh.kind = c;
            r = c_run(&sh, counts[i]);
            if (i == 0) base[c] = r;
            printf("%14.1f (%4.1fx)", r, r / base[c]);
        }
        printf("\n");
        fflush(stdout);
    }
    fa_cmap_destroy(sh.cm);
    fa_clru_destroy(sh.lru);
    fa_map_destroy(&map);
    pthread_rwlock_destroy(&sh.rw);
}

int main(int argc, char **argv)
{
    int i, big = 1, threads = fa_cpu_count(), runs = 3;
    double seconds = 0.5, tv[101];
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-16m")) big = 0;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--no-16m] [--threads N] [--seconds S] [--runs R]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (threads > 1024) threads = 1024;
    if (runs < 1) runs = 1;
    printf("bench_hash: fa_map vs baselines, flashattn.h %s\n", FLASHATTN_VERSION_STRING);
    bench_print_machine();
    printf("group probing: %s\n", (fa_cpu_features() & FA_CPU_SSE2) ? "SSE2 (16 control bytes per step)" :
                                  (fa_cpu_features() & FA_CPU_NEON) ? "NEON" : "SWAR (portable)");
#if !defined(FA_HAVE_UTHASH)
    printf("uthash: not installed (apt-get install uthash-dev), column omitted\n");
#endif
#if !defined(FA_HAVE_CK)
    printf("ck_ht: Concurrency Kit not installed (apt-get install libck-dev), column omitted\n");
#endif
    for (i = 0; i < 101; i++) {
        double a = bench_now();
        tv[i] = (bench_now() - a) * 1e9;
    }
    g_timer_ns = bench_median(tv, 101);
    printf("timer overhead %.1f ns (subtracted from latencies)\n", g_timer_ns);
    bench_size((size_t)1 << 20, runs);
    if (big) bench_size((size_t)1 << 24, 1);
    else printf("\n16M entries: skipped (--no-16m)\n");
    bench_memory_at_max_load();
    bench_churn(800000);
    bench_concurrent(threads, seconds);
    return 0;
}
