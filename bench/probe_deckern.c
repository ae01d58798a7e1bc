/* bench/probe_deckern.c - a diagnostic, not part of make bench: the decode kernels alone (S, the
   row softmax, P V; bf16 K/V, f32 Q, 4 query rows per kv head, d 128, token-major rows of nh kv
   heads) streaming their own buffers on T threads at once, against a plain read of the same
   buffers. Tells a machine's per-thread kernel speed from its memory system.
     usage: probe_deckern T keys nh mode reps     mode: r (read), a (all heads per 16-key block,
            as the library), h (head by head per 64-key tile)
   Build: cc -O3 -I. bench/probe_deckern.c -lm -lpthread (x86-64 with AVX-512; make
   compile-check builds it). It found the decode prefetch policy of 0.1.10 (see FA__DEC_PREFETCH). */
#define _POSIX_C_SOURCE 200809L
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include <stdio.h>
#include <time.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <pthread.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef struct job {
    int64_t nkeys, nh;
    char mode;
    uint16_t *k, *v;
    const void **kr, **vr, **krg, **vrg;
    float *q, *s, *o, sink;
} job;

static pthread_barrier_t bar;
static int reps;
static double times[1024];

__attribute__((target("avx512f,avx512bw"))) static void run_once(job *J)
{
    const fa__attn_kernels *K = &fa__kernels_avx512;
    int64_t d = 128, j, g, r, nh = J->nh, nk = J->nkeys;
    int32_t c0[64], c1[64];
    for (j = 0; j < 64; j++) { c0[j] = 0; c1[j] = 64; }
    if (J->mode == 'r') {
        __m512i acc = _mm512_setzero_si512();
        size_t n = (size_t)nk * nh * 256 / 64, i;
        const __m512i *a = (const __m512i *)(void *)J->k, *b = (const __m512i *)(void *)J->v;
        for (i = 0; i < n; i += 4)
            acc = _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_add_epi32(a[i], a[i + 1]), _mm512_add_epi32(a[i + 2], a[i + 3])));
        for (i = 0; i < n; i += 4)
            acc = _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_add_epi32(b[i], b[i + 1]), _mm512_add_epi32(b[i + 2], b[i + 3])));
        J->sink += (float)_mm512_reduce_add_epi32(acc);
        return;
    }
    for (j = 0; j < nk; j += 64) {
        if (J->mode == 'a') {
            float sum;
            K->dec_qk(J->q, d, J->kr + j, J->vr + j, FA_BF16, 64, J->s, 4, nh, 256, 256, 256, 256);
            for (r = 0; r < 4 * nh; r++) K->softmax_row(J->s + r * 64, 64, 0.088f, 0.0f, &sum);
            K->dec_pv(J->o, 128, J->s, J->vr + j, FA_BF16, 128, 4, nh, 256, 256, c0, c1);
        } else {
            for (g = 0; g < nh; g++) {
                const void **a = J->krg + g * (nk + 200) + j, **b = J->vrg + g * (nk + 200) + j;
                float sum;
                K->dec_qk(J->q + g * 4 * d, d, a, b, FA_BF16, 64, J->s + g * 4 * 64, 4, 1, 0, 0, 256, 256);
                for (r = 0; r < 4; r++) K->softmax_row(J->s + (g * 4 + r) * 64, 64, 0.088f, 0.0f, &sum);
                K->dec_pv(J->o + g * 4 * 128, 128, J->s + g * 4 * 64, b, FA_BF16, 128, 4, 1, 0, 256, c0, c1);
            }
        }
    }
}

static int passes;
static void *worker(void *arg)
{
    job *J = (job *)arg;
    int i, p;
    for (i = 0; i < reps + 1; i++) {
        pthread_barrier_wait(&bar);
        for (p = 0; p < passes; p++) run_once(J);
        pthread_barrier_wait(&bar);
    }
    return NULL;
}

static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv)
{
    int T = argc > 1 ? atoi(argv[1]) : 1, t, i;
    int64_t nk = argc > 2 ? atoll(argv[2]) : 4096, nh = argc > 3 ? atoll(argv[3]) : 8, j, g;
    char mode = argc > 4 ? argv[4][0] : 'a';
    if ((fa_cpu_features() & (FA_CPU_AVX512F | FA_CPU_AVX512BW)) != (FA_CPU_AVX512F | FA_CPU_AVX512BW)) {
        fprintf(stderr, "probe_deckern: needs AVX-512 (F and BW)\n");
        return 1;
    }
    if (nk < 1 || nh < 1 || nh > 64 || (mode != 'r' && mode != 'a' && mode != 'h')) {
        fprintf(stderr, "usage: probe_deckern T keys nh r|a|h reps\n");
        return 1;
    }
    job *J = (job *)calloc((size_t)T, sizeof *J);
    pthread_t th[64];
    double med;
    reps = argc > 5 ? atoi(argv[5]) : 9;
    if (reps < 1 || reps > 1000 || T < 1 || T > 64) { fprintf(stderr, "reps 1..1000, T 1..64\n"); return 1; }
    nk = (nk + 63) / 64 * 64;
    passes = (int)(4096 * 8 / (nk * nh)); /* at least ~16 MiB per timed pass: the barriers' cost vanishes */
    if (passes < 1) passes = 1;
    for (t = 0; t < T; t++) {
        size_t rowb = (size_t)256 * nh;
        J[t].nkeys = nk; J[t].nh = nh; J[t].mode = mode;
        J[t].k = (uint16_t *)fa_aligned_alloc((size_t)nk * rowb + 4096, 4096);
        J[t].v = (uint16_t *)fa_aligned_alloc((size_t)nk * rowb + 4096, 4096);
        for (j = 0; j < nk * 128 * nh; j++) { J[t].k[j] = (uint16_t)(0x3c00 + j % 97); J[t].v[j] = (uint16_t)(0x3c00 + j % 89); }
        J[t].kr = (const void **)malloc(sizeof(void *) * (size_t)(nk + 200));
        J[t].vr = (const void **)malloc(sizeof(void *) * (size_t)(nk + 200));
        J[t].krg = (const void **)malloc(sizeof(void *) * (size_t)(nk + 200) * nh);
        J[t].vrg = (const void **)malloc(sizeof(void *) * (size_t)(nk + 200) * nh);
        for (j = 0; j < nk + 200; j++) {
            J[t].kr[j] = j < nk ? (const char *)J[t].k + j * rowb : NULL;
            J[t].vr[j] = j < nk ? (const char *)J[t].v + j * rowb : NULL;
        }
        for (g = 0; g < nh; g++)
            for (j = 0; j < nk + 200; j++) {
                J[t].krg[g * (nk + 200) + j] = j < nk ? (const char *)J[t].kr[j] + g * 256 : NULL;
                J[t].vrg[g * (nk + 200) + j] = j < nk ? (const char *)J[t].vr[j] + g * 256 : NULL;
            }
        J[t].q = (float *)fa_aligned_alloc((size_t)4 * nh * 128 * 4, 64);
        J[t].s = (float *)fa_aligned_alloc((size_t)4 * nh * 64 * 4, 64);
        J[t].o = (float *)fa_aligned_alloc((size_t)4 * nh * 128 * 4, 64);
        for (j = 0; j < 4 * nh * 128; j++) { J[t].q[j] = 0.01f * (float)(j % 13); J[t].o[j] = 0; }
    }
    pthread_barrier_init(&bar, NULL, (unsigned)T + 1);
    for (t = 0; t < T; t++) pthread_create(&th[t], NULL, worker, &J[t]);
    for (i = 0; i < reps + 1; i++) {
        double t0;
        pthread_barrier_wait(&bar);
        t0 = now();
        pthread_barrier_wait(&bar);
        if (i) times[i - 1] = now() - t0;
    }
    for (t = 0; t < T; t++) pthread_join(th[t], NULL);
    qsort(times, (size_t)reps, sizeof(double), cmpd);
    med = times[reps / 2];
    printf("T %2d keys %6lld nh %lld mode %c: %7.1f GB/s total, %5.2f per thread, %6.1f ns per key-head (%.1f MiB per thread)\n",
           T, (long long)nk, (long long)nh, mode, (double)T * nk * nh * 512 * passes / med * 1e-9, (double)nk * nh * 512 * passes / med * 1e-9,
           med / ((double)nk * nh * passes) * 1e9, (double)nk * nh * 512 / 1048576.0);
    return 0;
}
#else
int main(void)
{
    fprintf(stderr, "probe_deckern: x86-64 only\n");
    return 1;
}
#endif
