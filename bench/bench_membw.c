/* bench/bench_membw.c - the machine's memory bandwidth, the ceiling that bench_attn's decode
   section measures against, taken several ways on the library's pool: a copy with streaming
   stores (read + write counted, as STREAM's copy) of 256 MiB and of 1 GiB, its source either just
   read (a last-level cache as large as the 16-core host's 300 MiB may still hold part of it) or
   evicted first by a read of a separate buffer of `evict` MiB; plain reads of 1 GiB, 256 MiB and
   16 MiB (a 4096-key bf16 decode step of 8 kv heads, d=128) after that eviction.

   usage: build/bench_membw [threads [reps [evict_mib]]]
          defaults: all logical CPUs, 5, 2048 */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

typedef struct job { const unsigned char *src; unsigned char *dst; size_t n; int64_t parts; uint64_t sink[4096]; } job;
static void copy_part(void *ctx, int64_t i, int worker)
{
    job *j = (job *)ctx;
    size_t a = j->n * (size_t)i / (size_t)j->parts, b = j->n * (size_t)(i + 1) / (size_t)j->parts;
    (void)worker;
    bench_stream_copy(j->dst + a, j->src + a, b - a);
}
static void read_part(void *ctx, int64_t i, int worker)
{
    job *j = (job *)ctx;
    const uint64_t *w = (const uint64_t *)(const void *)j->src;
    size_t a = j->n / 8 * (size_t)i / (size_t)j->parts, b = j->n / 8 * (size_t)(i + 1) / (size_t)j->parts, o;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    (void)worker;
    for (o = a; o + 4 <= b; o += 4) { s0 += w[o]; s1 += w[o + 1]; s2 += w[o + 2]; s3 += w[o + 3]; }
    j->sink[i % 4096] = s0 + s1 + s2 + s3;
}
static double run(fa_pool *pool, void (*fn)(void *, int64_t, int), job *j)
{
    double t0 = bench_now();
    fa_pool_parallel_for(pool, j->parts, fn, j);
    return bench_now() - t0;
}
int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN), reps = argc > 2 ? atoi(argv[2]) : 5, r;
    long evict_mib = argc > 3 ? atol(argv[3]) : 2048;
    size_t big = (size_t)1 << 30, ev, small = (size_t)256 << 20, tiny = (size_t)16 << 20;
    unsigned char *src, *dst, *evb;
    fa_pool *pool = NULL;
    fa_pool_desc pd;
    static job j, e;
    double t[6][64];
    if (threads < 1 || threads > 1024 || reps < 1 || reps > 64 || evict_mib < 1) {
        fprintf(stderr, "usage: bench_membw [threads 1-1024 [reps 1-64 [evict_mib >= 1]]]\n");
        return 2;
    }
    ev = (size_t)evict_mib << 20;
    { /* malloc may overcommit and the first touch then meet the OOM killer: ask the machine first */
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0 && (double)(2 * big + ev) > 0.5 * (double)pages * (double)psz) {
            printf("bench_membw: needs %zu MiB, more than half of this machine's memory; skipped\n", (2 * big + ev) >> 20);
            return 0;
        }
    }
    src = (unsigned char *)malloc(big);
    dst = (unsigned char *)malloc(big);
    evb = (unsigned char *)malloc(ev);
    if (!src || !dst || !evb) {
        printf("bench_membw: could not allocate %zu MiB; skipped\n", (2 * big + ev) >> 20);
        free(src); free(dst); free(evb);
        return 0;
    }
    memset(&pd, 0, sizeof pd);
    pd.threads = threads - 1;
    if (threads > 1 && fa_pool_create(&pool, &pd) != FA_OK) {
        fprintf(stderr, "pool: %s\n", fa_last_error());
        return 1;
    }
    memset(src, 1, big); memset(dst, 2, big); memset(evb, 3, ev);
    bench_print_machine();
    e.src = evb; e.n = ev; e.parts = (int64_t)(ev >> 18);
    for (r = 0; r < reps; r++) {
        j.src = src; j.dst = dst; j.n = small; j.parts = (int64_t)(small >> 18);
        run(pool, read_part, &j);                       /* source just read */
        t[0][r] = run(pool, copy_part, &j);
        run(pool, read_part, &e);                       /* source evicted */
        t[1][r] = run(pool, copy_part, &j);
        j.n = big; j.parts = (int64_t)(big >> 18);
        run(pool, read_part, &e);
        t[2][r] = run(pool, copy_part, &j);
        run(pool, read_part, &e);
        t[3][r] = run(pool, read_part, &j);             /* plain read, 1 GiB */
        j.n = tiny; j.parts = 2 * threads;
        run(pool, read_part, &e);
        t[4][r] = run(pool, read_part, &j);             /* plain read, 16 MiB (a 4096-key bf16 step) */
        j.n = small; j.parts = (int64_t)(small >> 18);
        run(pool, read_part, &e);
        t[5][r] = run(pool, read_part, &j);             /* plain read, 256 MiB */
    }
    printf("%d threads, medians of %d (GB/s; copies count read + write; evicted = after a read of %ld MiB elsewhere)\n",
           threads, reps, evict_mib);
    printf("copy 256 MiB, source just read:   %7.1f\n", 2.0 * small / bench_median(t[0], reps) * 1e-9);
    printf("copy 256 MiB, source evicted:     %7.1f\n", 2.0 * small / bench_median(t[1], reps) * 1e-9);
    printf("copy 1 GiB, source evicted:       %7.1f\n", 2.0 * big / bench_median(t[2], reps) * 1e-9);
    printf("read 1 GiB, evicted:              %7.1f\n", 1.0 * big / bench_median(t[3], reps) * 1e-9);
    printf("read 256 MiB, evicted:            %7.1f\n", 1.0 * small / bench_median(t[5], reps) * 1e-9);
    printf("read 16 MiB, evicted:             %7.1f\n", 1.0 * tiny / bench_median(t[4], reps) * 1e-9);
    fa_pool_destroy(pool, FA_POOL_FINISH);
    free(src); free(dst); free(evb);
    return 0;
}
