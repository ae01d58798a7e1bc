/* bench/bench_util.h - shared helpers of the benchmarks: a monotonic clock, medians, a line
   describing the machine, and a peak-tracking allocator the benchmarks install through
   FLASHATTN_MALLOC/FREE so "extra memory" is measured, not estimated. */
#ifndef FA_BENCH_UTIL_H
#define FA_BENCH_UTIL_H

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BENCH_UNUSED __attribute__((unused))
#else
#define BENCH_UNUSED
#endif

/* x[0..n) = uniform random values in [-0.5, 0.5] (rand(): seed with srand for a fixed input) */
static BENCH_UNUSED void bench_fill(float *x, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
}

static BENCH_UNUSED double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* the time-stamp counter's ticks per second, against bench_now over 0.2 s (for the phase
   probes, which count TSC ticks) */
static BENCH_UNUSED double bench_tsc_hz(void)
{
    double a = bench_now(), b;
    unsigned long long t0 = __builtin_ia32_rdtsc();
    while ((b = bench_now()) - a < 0.2) {}
    return (double)(__builtin_ia32_rdtsc() - t0) / (b - a);
}
#endif

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them in place). */
static BENCH_UNUSED double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Value at quantile q in [0, 1] (sorts in place). */
static BENCH_UNUSED double bench_quantile(double *v, int n, double q)
{
    int i;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    i = (int)(q * (n - 1) + 0.5);
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

/* "AMD EPYC ... , 2 logical CPUs" */
static BENCH_UNUSED void bench_print_machine(void)
{
    char line[512], model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    printf("machine: %s, %ld logical CPUs\n", model, sysconf(_SC_NPROCESSORS_ONLN));
}

/* Copies n bytes with streaming stores where SSE2 has them (what STREAM's copy measures: cached
   stores would also read each destination line first and leave it dirty), memcpy elsewhere.
   Whole 64-byte lines of 16-byte-aligned buffers. */
static BENCH_UNUSED void bench_stream_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
#if defined(__SSE2__)
    const __m128i *sp = (const __m128i *)(const void *)src;
    __m128i *dp = (__m128i *)(void *)dst;
    size_t k, n16 = n / 16;
    for (k = 0; k + 4 <= n16; k += 4) {
        __m128i x0 = _mm_load_si128(sp + k), x1 = _mm_load_si128(sp + k + 1);
        __m128i x2 = _mm_load_si128(sp + k + 2), x3 = _mm_load_si128(sp + k + 3);
        _mm_stream_si128(dp + k, x0); _mm_stream_si128(dp + k + 1, x1);
        _mm_stream_si128(dp + k + 2, x2); _mm_stream_si128(dp + k + 3, x3);
    }
    _mm_sfence();
#else
    memcpy(dst, src, n);
#endif
}

/* Peak-tracking allocator: every block carries its size in a 64-byte header. */
static size_t bench_mem_cur, bench_mem_peak;
static BENCH_UNUSED void *bench_malloc(size_t n)
{
    unsigned char *p = (unsigned char *)malloc(n + 64);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    bench_mem_cur += n;
    if (bench_mem_cur > bench_mem_peak) bench_mem_peak = bench_mem_cur;
    return p + 64;
}
static BENCH_UNUSED void bench_free(void *q)
{
    size_t n;
    unsigned char *p = (unsigned char *)q;
    if (!p) return;
    memcpy(&n, p - 64, sizeof n);
    bench_mem_cur -= n;
    free(p - 64);
}
static BENCH_UNUSED void *bench_realloc(void *q, size_t n)
{
    void *r = bench_malloc(n);
    size_t old;
    if (!r || !q) return r;
    memcpy(&old, (unsigned char *)q - 64, sizeof old);
    memcpy(r, q, old < n ? old : n);
    bench_free(q);
    return r;
}
/* Writes a PNG line plot of a CSV file (first column x, one series per further column, header
   row with the names) when gnuplot is installed; says so either way. */
static BENCH_UNUSED void bench_plot(const char *csv, const char *png, const char *title, const char *xlabel,
                                    const char *ylabel, int logx)
{
    FILE *g;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("(gnuplot not installed: no plot; data in %s)\n", csv);
        return;
    }
    g = popen("gnuplot 2>/dev/null", "w");
    if (!g) return;
    fprintf(g, "set terminal pngcairo size 900,560 noenhanced\nset output '%s'\nset datafile separator ','\n", png);
    fprintf(g, "set key autotitle columnhead left top\nset grid\nset title '%s'\nset xlabel '%s'\nset ylabel '%s'\n",
            title, xlabel, ylabel);
    if (logx) fprintf(g, "set logscale x 2\n");
    fprintf(g, "stats '%s' skip 1 nooutput\nplot for [i=2:STATS_columns] '%s' using 1:i with linespoints lw 2\n", csv, csv);
    if (pclose(g) == 0) printf("plot written to %s (data in %s)\n", png, csv);
}

/* Resets the peak to the current level; returns nothing. Read bench_mem_peak afterwards. */
static BENCH_UNUSED void bench_mem_reset_peak(void) { bench_mem_peak = bench_mem_cur; }

#endif
