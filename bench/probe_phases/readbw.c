/* bench/probe_phases/readbw.c - the fastest a cold read of a decode call's K/V can be: T threads
   (pthreads spinning on a barrier, no pool, no dispatch) each read their share of a buffer right
   after a sweep that evicts the caches, as two streams (K and V halves) the way a split of a
   decode call reads them; several ways of reading (plain loads, software prefetch into L1 or L2
   at several distances). Prints, per way and size, the median over reps of total bytes / (last
   thread's end - barrier release) as a % of a streaming-store copy's bandwidth (read + write,
   STREAM's count) measured in the same run. x86-64 with AVX-512 or AVX2 (-march=x86-64-v3 is
   enough). Not part of the build: cc -O2 -mavx2 -pthread readbw.c -o readbw.
   usage: readbw [threads [reps]] */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int T = 16, REPS = 9;
static unsigned char *buf, *ev_src, *ev_dst;
static size_t ev_n = (size_t)512 << 20;
static volatile int gen, arrived, mode, pfd;
static volatile size_t total_bytes;
static unsigned long long t_start[64], t_end[64];
static volatile unsigned long long sink[64 * 8];
static double ghz_;

static unsigned long long rd(void) { return __rdtsc(); }
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void barrier(int self)
{
    int g = gen;
    (void)self;
    if (__atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL) == T) {
        arrived = 0;
        __atomic_store_n(&gen, g + 1, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&gen, __ATOMIC_ACQUIRE) == g) _mm_pause();
    }
}

/* reads [p, p + n) as 32-byte loads of every line; prefetch kind k at distance dist bytes */
static unsigned long long read_range(const unsigned char *p, const unsigned char *q, size_t n, int k, size_t dist)
{
    __m256i a = _mm256_setzero_si256(), b = a;
    size_t i;
    for (i = 0; i < n; i += 64) {
        if (k == 1) { _mm_prefetch((const char *)p + i + dist, _MM_HINT_T0); _mm_prefetch((const char *)q + i + dist, _MM_HINT_T0); }
        if (k == 2) { _mm_prefetch((const char *)p + i + dist, _MM_HINT_T1); _mm_prefetch((const char *)q + i + dist, _MM_HINT_T1); }
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i)));
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i + 32)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(q + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(q + i + 32)));
    }
    a = _mm256_xor_si256(a, b);
    return (unsigned long long)_mm256_extract_epi64(a, 0);
}

static void copy_share(int self)
{
    size_t per = ev_n / T, i;
    for (i = self * per; i < (self + 1) * per; i += 64) {
        _mm256_stream_si256((__m256i *)(ev_dst + i), _mm256_load_si256((const __m256i *)(ev_src + i)));
        _mm256_stream_si256((__m256i *)(ev_dst + i + 32), _mm256_load_si256((const __m256i *)(ev_src + i + 32)));
    }
    _mm_sfence();
}

/* one round, on every thread (self 0 is main): evict (a streaming copy and a read of its
   source), then the timed step, then wait for all */
static void round_(int self)
{
    size_t per = ev_n / T, i, e = 0;
    copy_share(self);
    for (i = self * per; i < (self + 1) * per; i += 64) e += ev_src[i];
    sink[self * 8] += e;
    barrier(self);
    t_start[self] = rd();
    if (mode == 9) {
        copy_share(self);
    } else {
        size_t n = total_bytes, p = n / 2 / T; /* K half and V half, each split in T parts */
        sink[self * 8] += read_range(buf + self * p, buf + n / 2 + self * p, p, mode, pfd);
    }
    t_end[self] = rd();
    barrier(self);
}

static void *worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    for (;;) {
        barrier(self); /* main has set the round's parameters */
        if (mode < 0) return NULL;
        round_(self);
    }
}

/* bytes / (last end - first start) in GB/s for one round of mode m */
static double run_round(int m, size_t d, size_t bytes)
{
    unsigned long long mn = ~0ull, mx = 0;
    int k;
    mode = m;
    pfd = (int)d;
    total_bytes = bytes;
    barrier(0);
    round_(0);
    for (k = 0; k < T; k++) {
        if (t_start[k] < mn) mn = t_start[k];
        if (t_end[k] > mx) mx = t_end[k];
    }
    return (double)bytes / ((double)(mx - mn) / ghz_);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    pthread_t th[64];
    double copy_gbs, g[64];
    int i, r;
    size_t w, sizes[] = {(size_t)16 << 20, (size_t)32 << 20, (size_t)128 << 20};
    struct { int k; size_t d; const char *name; } ways[] = {
        {0, 0, "plain loads"},       {1, 512, "prefetcht0 +512 B"}, {1, 2048, "prefetcht0 +2 KiB"},
        {2, 2048, "prefetcht1 +2 KiB"}, {2, 8192, "prefetcht1 +8 KiB"}, {2, 32768, "prefetcht1 +32 KiB"}};
    if (argc > 1) T = atoi(argv[1]);
    if (argc > 2) REPS = atoi(argv[2]);
    if (T < 1 || T > 64 || REPS < 1 || REPS > 64) return 1;
    {
        double t0 = now();
        unsigned long long c0 = rd();
        while (now() - t0 < 0.2) {}
        ghz_ = (rd() - c0) / (now() - t0) / 1e9;
    }
    buf = aligned_alloc(4096, (size_t)128 << 20);
    ev_src = aligned_alloc(4096, ev_n);
    ev_dst = aligned_alloc(4096, ev_n);
    memset(buf, 3, (size_t)128 << 20);
    memset(ev_src, 1, ev_n);
    memset(ev_dst, 2, ev_n);
    for (i = 1; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (r = 0; r < REPS; r++) g[r] = run_round(9, 0, 2 * ev_n);
    qsort(g, REPS, sizeof g[0], cmpd);
    copy_gbs = g[REPS / 2];
    printf("TSC %.2f GHz, %d threads, %d reps; streaming copy (read+write) %.1f GB/s\n", ghz_, T, REPS, copy_gbs);
    printf("cold read of K+V (two halves, a share of each per thread), %% of the copy: median (min..max)\n");
    printf("%-20s", "way \\ K+V size");
    for (i = 0; i < 3; i++) printf(" %14zu MiB", sizes[i] >> 20);
    printf("\n");
    for (w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        printf("%-20s", ways[w].name);
        for (i = 0; i < 3; i++) {
            for (r = 0; r < REPS; r++) g[r] = 100.0 * run_round(ways[w].k, ways[w].d, sizes[i]) / copy_gbs;
            qsort(g, REPS, sizeof g[0], cmpd);
            printf("    %3.0f (%3.0f..%3.0f)", g[REPS / 2], g[0], g[REPS - 1]);
        }
        printf("\n");
    }
    mode = -1;
    barrier(0);
    for (i = 1; i < T; i++) pthread_join(th[i], NULL);
    return 0;
}
