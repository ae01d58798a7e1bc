/* bench/bench_fp8.c - throughput of fa_convert and fa_amax on each path, side by side.

   GB/s counts the bytes of INPUT read (as the FP8 issue's target does: >= 5 GB/s of input per
   core for f32 -> e4m3 and e4m3 -> f32). One thread. Each cell is the median of 7 runs; a run
   repeats the conversion until >= 20 ms have passed. Two sizes: 32 Ki elements (source and
   destination stay in L1/L2) and 16 Mi elements (streams through DRAM).

   Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) so that a busy shared machine does
   not hide the kernels' speed; --wall uses the monotonic wall clock instead.

   make bench        (or: build/bench_fp8 [--quick] [--wall]) */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#define RUNS 7

static volatile float bench_sink; /* keeps amax results alive */

/* CPU time of this thread: on a shared, oversubscribed machine the wall clock also counts the
   time other processes held the core; this counts only ours. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double (*clock_fn)(void) = cpu_now;

typedef struct pair { fa_dtype src, dst; } pair;

static const pair pairs[] = {
    {FA_F32, FA_E4M3}, {FA_E4M3, FA_F32}, {FA_F32, FA_E5M2}, {FA_E5M2, FA_F32},
    {FA_F32, FA_F16},  {FA_F16, FA_F32},  {FA_F32, FA_BF16}, {FA_BF16, FA_F32},
    {FA_BF16, FA_E4M3}, {FA_F16, FA_E4M3}, {FA_E4M3, FA_BF16},
};

static const struct { const char *name; unsigned mask; } paths[] = {
    {"scalar", 0u},
    {"avx2", FA_CPU_SSE2 | FA_CPU_AVX | FA_CPU_AVX2 | FA_CPU_FMA | FA_CPU_F16C},
    {"avx512", ~0u},
};

/* GB/s of input for one configuration (op < 0: amax of src). */
static double measure(void *dst, fa_dtype dt, const void *src, fa_dtype st, size_t n, int amax,
                      double min_time)
{
    double r[RUNS];
    int k;
    for (k = 0; k < RUNS; k++) {
        double t0 = clock_fn(), t;
        long reps = 0;
        float a = 0;
        do {
            if (amax) fa_amax(src, st, n, &a);
            else fa_convert(dst, dt, src, st, n, 0.75f, 1);
            bench_sink = a;
            reps++;
            t = clock_fn() - t0;
        } while (t < min_time);
        r[k] = (double)reps * (double)n * (double)fa_dtype_size(st) / t / 1e9;
    }
    return bench_median(r, RUNS);
}

int main(int argc, char **argv)
{
    const size_t sizes[2] = {32u << 10, 16u << 20};
    int quick = 0, a;
    double min_time;
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--quick") == 0) quick = 1;
        if (strcmp(argv[a], "--wall") == 0) clock_fn = bench_now;
    }
    min_time = quick ? 0.005 : 0.02;
    float *src = (float *)fa_aligned_alloc((16u << 20) * 4, 64);
    float *dst = (float *)fa_aligned_alloc((16u << 20) * 4, 64);
    size_t i, si, np = sizeof paths / sizeof paths[0], pi;
    unsigned detected = fa_cpu_features_detected();
    if (!src || !dst) { fprintf(stderr, "out of memory\n"); return 1; }
    /* plausible activations (incl. some over the E4M3 range), as f32 and as bit soup for the
       narrow types: every type sees all of its codes */
    for (i = 0; i < (16u << 20); i++) {
        uint32_t h = (uint32_t)(i * 2654435761u);
        src[i] = ((float)(h >> 8) / 16777216.0f - 0.5f) * 1000.0f;
    }
    bench_print_machine();
    printf("fa_convert (scale 0.75, saturating) and fa_amax, one thread, GB/s of input "
           "(%s time), median of %d runs\n", clock_fn == cpu_now ? "thread CPU" : "wall", RUNS);
    for (si = 0; si < 2; si++) {
        size_t n = sizes[si];
        printf("\n%zu elements %s\n", n, si == 0 ? "(in cache)" : "(DRAM)");
        printf("%-14s", "op");
        for (pi = 0; pi < np; pi++) printf(" %10s", paths[pi].name);
        printf("\n");
        for (i = 0; i < sizeof pairs / sizeof pairs[0] + 3; i++) {
            int amax = i >= sizeof pairs / sizeof pairs[0];
            fa_dtype st = amax ? (i - sizeof pairs / sizeof pairs[0] == 0 ? FA_F32
                                  : i - sizeof pairs / sizeof pairs[0] == 1 ? FA_BF16 : FA_E4M3)
                               : pairs[i].src;
            fa_dtype dt = amax ? FA_F32 : pairs[i].dst;
            char name[32];
            if (amax) snprintf(name, sizeof name, "amax %s", fa_dtype_name(st));
            else snprintf(name, sizeof name, "%s->%s", fa_dtype_name(st), fa_dtype_name(dt));
            printf("%-14s", name);
            if (st != FA_F32) /* a valid source of that type: the f32 data converted once */
                fa_convert(dst, st, src, FA_F32, n, 1.0f, 1);
            for (pi = 0; pi < np; pi++) {
                const void *s = st == FA_F32 ? (const void *)src : (const void *)dst;
                void *d = st == FA_F32 ? (void *)dst : (void *)src;
                fa_cpu_features_override(paths[pi].mask);
                if ((fa_cpu_features() & paths[pi].mask) != (paths[pi].mask & detected) ||
                    strcmp(fa_convert_path(), paths[pi].name) != 0) {
                    printf(" %10s", "n/a");
                    continue;
                }
                printf(" %10.2f", measure(d, dt, s, st, n, amax, min_time));
                fflush(stdout);
            }
            fa_cpu_features_override(~0u);
            /* the f32 source was overwritten when it served as destination: restore it */
            if (st != FA_F32)
                for (size_t j = 0; j < n; j++) {
                    uint32_t h = (uint32_t)(j * 2654435761u);
                    src[j] = ((float)(h >> 8) / 16777216.0f - 0.5f) * 1000.0f;
                }
            printf("\n");
        }
    }
    fa_aligned_free(src);
    fa_aligned_free(dst);
    return 0;
}
