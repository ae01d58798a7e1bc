/* bench/bench_attn.c - attention forward on the CPU, side by side with its baselines.

   usage: build/bench_attn [max_seqlen [reps [threads [sections]]]]
          defaults: 8192, 3, all logical CPUs, "abcde"
   sections: a  tiled vs naive f32 vs the double reference, one thread (time, extra memory)
             b  prefill f32 d=128: tiled on 1 and N threads vs OpenBLAS sgemm (the ceiling) and
                vs "what a user would write" (sgemm QK^T, row softmax, sgemm PV), when OpenBLAS
                is installed
             c  thread scaling of prefill (s=2048, d=128) over 1, 2, 4, ... N threads
             d  decode: 1 query, 32 q-heads / 8 kv-heads, d=128, KV 4k..32k in f32/bf16/f16/e4m3,
                GB/s of K+V read vs a multi-threaded copy (streaming stores) in the same run:
                "cold" calls, each after a copy and a read that evict the caches (the pool's
                threads awake, as after a balanced step), "asleep" the same with the threads
                asleep, and "warm" back-to-back calls; cold calls also against memcpy's figure
                ("% mcpy") and a plain cold read of the same K/V bytes ("% read")
             e  causal against non-causal per useful FLOP (f32, d=128): the two calls alternate
                in one process and the ratio is the median over the pairs
             f  decode latency of short KV caches (bf16, shape of d, back-to-back calls): a pool
                whose idle threads poll for FA_POOL_DEFAULT_SPIN_NS against one whose threads
                sleep at once, calls alternating between the two

   FLOPs = 4*b*h*sq*sk*d (halved when causal). Times are medians of `reps` runs. "extra mem" is
   the peak of the library's (or the naive method's) own allocations during the call, measured
   through FLASHATTN_MALLOC, on top of Q/K/V/O. The reference is skipped where it would run for
   more than ~20 s. */
#include "bench_util.h"
#define FLASHATTN_MALLOC(n) bench_malloc(n)
#define FLASHATTN_REALLOC(p, n) bench_realloc(p, n)
#define FLASHATTN_FREE(p) bench_free(p)
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <math.h>

/* What a user would write without a fused kernel: the whole score matrix of one head. */
static int naive_attention(const float *q, const float *k, const float *v, float *o, int64_t sq,
                           int64_t sk, int64_t d, int causal)
{
    float *s = (float *)bench_malloc((size_t)(sq * sk) * sizeof(float));
    float scale = 1.0f / sqrtf((float)d);
    int64_t i, j, e;
    if (!s) return -1;
    for (i = 0; i < sq; i++) {
        float mx = -INFINITY, sum = 0;
        float *row = s + i * sk;
        int64_t lim = causal ? i + sk - sq + 1 : sk;
        for (j = 0; j < sk; j++) {
            float acc = 0;
            if (j >= lim) { row[j] = -INFINITY; continue; }
            for (e = 0; e < d; e++) acc += q[i * d + e] * k[j * d + e];
            row[j] = acc * scale;
            if (row[j] > mx) mx = row[j];
        }
        for (j = 0; j < sk; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
        for (j = 0; j < sk; j++) row[j] /= sum;
        for (e = 0; e < d; e++) o[i * d + e] = 0;
        for (j = 0; j < sk; j++) {
            float p = row[j];
            if (p == 0) continue;
            for (e = 0; e < d; e++) o[i * d + e] += p * v[j * d + e];
        }
    }
    bench_free(s);
    return 0;
}

typedef struct result { double sec; size_t mem; } result;

static result time_it(int which, fa_attn_desc *d, int reps)
{
    double t[16];
    int r;
    result res;
    res.mem = 0;
    for (r = 0; r < reps; r++) {
        double t0;
        bench_mem_reset_peak();
        {
            size_t base = bench_mem_cur;
            t0 = bench_now();
            if (which == 0) fa_attn_forward(d);
            else if (which == 1) naive_attention((const float *)d->q, (const float *)d->k, (const float *)d->v,
                                                  (float *)d->o, d->seqlen_q, d->seqlen_k, d->head_dim, d->causal);
            else fa_attn_reference(d);
            t[r] = bench_now() - t0;
            res.mem = bench_mem_peak - base;
        }
    }
    res.sec = bench_median(t, reps);
    return res;
}

static void fmt_mem(char *buf, size_t n, size_t bytes)
{
    if (bytes >= (1u << 20)) snprintf(buf, n, "%.1f MiB", (double)bytes / (1 << 20));
    else snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
}

static void section_b(int64_t max_s, int reps, int threads);
static void check_cores(int threads);
static void section_c(int reps, int threads);
static void section_d(int reps, int threads);
static void section_e(int64_t max_s, int reps, int threads);
static void section_f(int reps, int threads);

int main(int argc, char **argv)
{
    int64_t max_s = argc > 1 ? atoll(argv[1]) : 8192;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    int threads = argc > 3 ? atoi(argv[3]) : fa_cpu_count();
    const char *sections = argc > 4 ? argv[4] : "abcde";
    int64_t dims[2] = {64, 128}, s, di;
    int causal;
    if (reps < 1) reps = 1;
    if (reps > 16) reps = 16;
    if (threads < 1) threads = 1;
    bench_print_machine();
    {
        unsigned cf = fa_cpu_features();
        int avx512 = (cf & FA_CPU_AVX512F) && (cf & FA_CPU_AVX512BW); /* the kernels' requirement */
        printf("attention kernels: %s\n", avx512 && (cf & FA_CPU_AVX512_BF16) ? "AVX-512 + AVX512_BF16"
                                           : avx512                                       ? "AVX-512"
                                           : (cf & FA_CPU_AVX2) && (cf & FA_CPU_FMA)       ? "AVX2+FMA"
                                           : (cf & FA_CPU_NEON)                          ? "NEON"
                                                                                         : "scalar");
    }
    if (threads > 1) check_cores(threads);
    if (strchr(sections, 'b')) section_b(max_s, reps, threads);
    if (strchr(sections, 'c')) section_c(reps, threads);
    if (strchr(sections, 'd')) section_d(reps, threads);
    if (strchr(sections, 'e')) section_e(max_s, reps, threads);
    if (strchr(sections, 'f')) section_f(reps, threads);
    if (!strchr(sections, 'a')) return 0;
    printf("\n== a: tiled vs naive vs reference\n");
    printf("fa_attn_forward (tiled) vs naive f32 (full score matrix) vs fa_attn_reference (double);\n"
           "batch 1, 1 head, f32, median of %d runs; simd features 0x%x\n\n", reps, fa_cpu_features());
    printf("%-24s | %9s %9s %10s | %9s %9s %10s | %9s %9s %10s\n", "shape", "tiled GF/s", "time", "extra mem",
           "naive GF/s", "time", "extra mem", "ref GF/s", "time", "extra mem");
    for (causal = 0; causal < 2; causal++)
        for (di = 0; di < 2; di++)
            for (s = 512; s <= max_s; s *= 2) {
                int64_t d = dims[di], n = s * d;
                float *q = (float *)malloc((size_t)n * 4), *k = (float *)malloc((size_t)n * 4);
                float *v = (float *)malloc((size_t)n * 4), *o = (float *)malloc((size_t)n * 4);
                double flops = 4.0 * (double)s * (double)s * (double)d * (causal ? 0.5 : 1.0);
                fa_attn_desc desc;
                result rt, rn, rr;
                char label[64], m1[32], m2[32], m3[32];
                int ref_ok;
                bench_fill(q, (size_t)n); bench_fill(k, (size_t)n); bench_fill(v, (size_t)n);
                memset(&desc, 0, sizeof desc);
                desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = 1; desc.head_dim = d;
                desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.causal = causal;
                rt = time_it(0, &desc, reps);
                rn = time_it(1, &desc, reps);
                /* the reference runs at ~0.1-0.3 GFLOP/s: only where it takes a few seconds */
                ref_ok = flops <= 4.0 * 4096.0 * 4096.0 * 64.0;
                if (ref_ok) rr = time_it(2, &desc, 1);
                snprintf(label, sizeof label, "s=%lld d=%lld%s", (long long)s, (long long)d, causal ? " causal" : "");
                fmt_mem(m1, sizeof m1, rt.mem);
                fmt_mem(m2, sizeof m2, rn.mem);
                if (ref_ok) fmt_mem(m3, sizeof m3, rr.mem);
                printf("%-24s | %9.2f %8.3fs %10s | %9.2f %8.3fs %10s | ", label, flops / rt.sec * 1e-9, rt.sec, m1,
                       flops / rn.sec * 1e-9, rn.sec, m2);
                if (ref_ok) printf("%9.2f %8.3fs %10s\n", flops / rr.sec * 1e-9, rr.sec, m3);
                else printf("%9s %9s %10s\n", "-", "skipped", "-");
                fflush(stdout);
                free(q); free(k); free(v); free(o);
            }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */

#ifdef FA_HAVE_OPENBLAS
#include <cblas.h>
#endif

static fa_pool *make_pool_spin(int threads, int64_t spin_ns)
{
    fa_pool *pool = NULL;
    fa_pool_desc pd;
    if (threads <= 1) return NULL;
    memset(&pd, 0, sizeof pd);
    pd.threads = threads - 1; /* the calling thread works too */
    pd.spin_ns = spin_ns;
    if (fa_pool_create(&pool, &pd) != FA_OK) {
        fprintf(stderr, "pool: %s\n", fa_last_error());
        return NULL;
    }
    return pool;
}
static fa_pool *make_pool(int threads) { return make_pool_spin(threads, 0); }

/* median seconds of fa_attn_forward(d) over reps runs (one warm-up), with the workspace
   allocated once up front as an engine would (no allocation inside the timed calls) */
static double time_forward(fa_attn_desc *d, int reps)
{
    double t[16];
    int r;
    size_t wsb = 0;
    void *ws;
    if (fa_attn_workspace_size(d, &wsb) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); exit(1); }
    ws = fa_aligned_alloc(wsb, 64);
    d->workspace = ws;
    d->workspace_size = wsb;
    fa_attn_forward(d);
    for (r = 0; r < reps; r++) {
        double t0 = bench_now();
        fa_attn_forward(d);
        t[r] = bench_now() - t0;
    }
    d->workspace = NULL;
    d->workspace_size = 0;
    fa_aligned_free(ws);
    return bench_median(t, reps);
}

#ifdef FA_HAVE_OPENBLAS
/* sgemm ceiling: C = A B with n x n x n, median GFLOP/s */
static double sgemm_gflops(int64_t n, int reps)
{
    float *a = (float *)malloc((size_t)(n * n) * 4), *b = (float *)malloc((size_t)(n * n) * 4);
    float *c = (float *)malloc((size_t)(n * n) * 4);
    double t[16];
    int r;
    bench_fill(a, (size_t)(n * n)); bench_fill(b, (size_t)(n * n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
    for (r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
        t[r] = bench_now() - t0;
    }
    free(a); free(b); free(c);
    return 2.0 * (double)n * n * n / bench_median(t, reps) * 1e-9;
}

/* "What a user would write": S = Q K^T (sgemm), softmax per row, O = P V (sgemm). One head. */
static double sgemm_attention_seconds(const float *q, const float *k, const float *v, float *o, int64_t s,
                                      int64_t d, int reps)
{
    float *sm = (float *)malloc((size_t)(s * s) * 4);
    double t[16];
    int r;
    for (r = -1; r < reps; r++) {
        double t0 = bench_now();
        int64_t i, j;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s, (int)s, (int)d, 1.0f / sqrtf((float)d), q, (int)d,
                    k, (int)d, 0.0f, sm, (int)s);
        for (i = 0; i < s; i++) {
            float *row = sm + i * s, mx = -INFINITY, sum = 0;
            for (j = 0; j < s; j++) mx = row[j] > mx ? row[j] : mx;
            for (j = 0; j < s; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
            for (j = 0; j < s; j++) row[j] /= sum;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s, (int)d, (int)s, 1.0f, sm, (int)s, v, (int)d, 0.0f,
                    o, (int)d);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    free(sm);
    return bench_median(t, reps);
}
#endif

/* One core's FMA rate: 12 independent chains of FMAs (enough to fill two pipes of 4-cycle
   latency), 16 lanes with AVX-512, 8 with AVX2+FMA; 0 where neither exists. A ceiling that,
   unlike sgemm, does not depend on how well the installed BLAS knows this CPU. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FMA_PEAK_BODY(V, SET1, FMADD, LANES)                                                    \
    {                                                                                          \
        V a0 = SET1(1.0f), a1 = SET1(1.001f), a2 = SET1(1.002f), a3 = SET1(1.003f);            \
        V a4 = SET1(1.004f), a5 = SET1(1.005f), a6 = SET1(1.006f), a7 = SET1(1.007f);          \
        V a8 = SET1(1.008f), a9 = SET1(1.009f), a10 = SET1(1.010f), a11 = SET1(1.011f);        \
        const V m = SET1(0.9999999f), c = SET1(1e-7f);                                         \
        long it, n = 20000000L;                                                                \
        double t0 = bench_now(), t;                                                            \
        float out[16];                                                                         \
        for (it = 0; it < n; it++) {                                                           \
            a0 = FMADD(a0, m, c); a1 = FMADD(a1, m, c); a2 = FMADD(a2, m, c);                  \
            a3 = FMADD(a3, m, c); a4 = FMADD(a4, m, c); a5 = FMADD(a5, m, c);                  \
            a6 = FMADD(a6, m, c); a7 = FMADD(a7, m, c); a8 = FMADD(a8, m, c);                  \
            a9 = FMADD(a9, m, c); a10 = FMADD(a10, m, c); a11 = FMADD(a11, m, c);              \
        }                                                                                      \
        t = bench_now() - t0;                                                                  \
        a0 = FMADD(a0, a1, a2); a3 = FMADD(a3, a4, a5); a6 = FMADD(a6, a7, a8);                \
        a9 = FMADD(a9, a10, a11); a0 = FMADD(a0, a3, a6); a0 = FMADD(a0, a9, c);               \
        memcpy(out, &a0, sizeof a0);                                                           \
        fma_sink = out[0];                                                                     \
        return 12.0 * LANES * 2.0 * (double)n / t * 1e-9;                                      \
    }
static volatile float fma_sink;
__attribute__((target("avx512f"))) static double fma_peak_512(void) FMA_PEAK_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)
__attribute__((target("avx2,fma"))) static double fma_peak_256(void) FMA_PEAK_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
static double fma_peak_gflops(void)
{
    unsigned f = fa_cpu_features();
    if (f & FA_CPU_AVX512F) return fma_peak_512();
    if ((f & FA_CPU_AVX2) && (f & FA_CPU_FMA)) return fma_peak_256();
    return 0.0;
}
#else
static double fma_peak_gflops(void) { return 0.0; }
#endif

static void section_b(int64_t max_s, int reps, int threads)
{
    fa_pool *pool = make_pool(threads);
    int64_t s, d = 128;
    int causal;
#ifdef FA_HAVE_OPENBLAS
    double sg1, sgn;
    openblas_set_num_threads(1);
    sg1 = sgemm_gflops(2048, reps);
    openblas_set_num_threads(threads);
    sgn = sgemm_gflops(2048, reps);
    openblas_set_num_threads(1);
    /* OpenBLAS's threads spin for a while after their last job: on a machine with no spare CPU
       they would take one from the first timings below (dev, 2 threads, s=512: 1.0x instead of
       2x). Let them go to sleep first. */
    {
        struct timespec ts;
        ts.tv_sec = 0;
        ts.tv_nsec = 500000000L;
        nanosleep(&ts, NULL);
    }
    printf("\n== b: prefill, f32, d=128, batch 1, %d heads; OpenBLAS sgemm 2048^3: %.1f GFLOP/s on 1 thread, %.1f on %d\n",
           threads, sg1, sgn, threads);
#else
    printf("\n== b: prefill, f32, d=128, batch 1, %d heads (OpenBLAS not installed: no sgemm baseline)\n", threads);
#endif
    {
        double peak = fma_peak_gflops();
        if (peak > 0) printf("one core's FMA rate (12 chains of vector FMAs): %.1f GFLOP/s\n", peak);
    }
    FILE *csv = fopen("build/bench_attn_prefill.csv", "w");
    if (!csv) csv = fopen("bench_attn_prefill.csv", "w");
    if (csv) fprintf(csv, "seqlen,tiled 1 thread,tiled %d threads,sgemm-based 1 thread,naive 1 thread,tiled bf16 1 thread\n", threads);
    printf("%-18s | %10s %8s %11s | %10s %8s %7s | %14s\n", "shape", "tiled 1T", "% sgemm", "bf16 1T", "tiled NT",
           "% sgemm", "NT/1T", "sgemm-attn 1T");
    for (causal = 0; causal < 2; causal++)
        for (s = 512; s <= max_s; s *= 2) {
            /* one head per thread keeps the N-thread run busy without more memory than needed */
            int64_t heads = threads, n = s * heads * d;
            float *q = (float *)malloc((size_t)n * 4), *k = (float *)malloc((size_t)n * 4);
            float *v = (float *)malloc((size_t)n * 4), *o = (float *)malloc((size_t)n * 4);
            fa_attn_desc desc;
            double flops1 = 4.0 * (double)s * s * d * (causal ? 0.5 : 1.0), t1, tn, g1, gn, gsa = NAN, gb1 = 0;
            char label[48];
            bench_fill(q, (size_t)n); bench_fill(k, (size_t)n); bench_fill(v, (size_t)n);
            memset(&desc, 0, sizeof desc);
            desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = 1; desc.head_dim = d;
            desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.causal = causal;
            /* one head on one thread */
            desc.q_stride.seq = desc.k_stride.seq = desc.v_stride.seq = desc.o_stride.seq = heads * d;
            t1 = time_forward(&desc, reps);
            { /* the same head with bf16 Q/K/V (f32 output): the AVX512_BF16 path where present */
                int64_t i2, nh = s * d;
                uint16_t *qb = (uint16_t *)malloc((size_t)nh * 2), *kb = (uint16_t *)malloc((size_t)nh * 2);
                uint16_t *vb = (uint16_t *)malloc((size_t)nh * 2);
                fa_attn_desc db = desc;
                for (i2 = 0; i2 < nh; i2++) {
                    qb[i2] = fa_f32_to_bf16(q[(i2 / d) * heads * d + i2 % d]);
                    kb[i2] = fa_f32_to_bf16(k[(i2 / d) * heads * d + i2 % d]);
                    vb[i2] = fa_f32_to_bf16(v[(i2 / d) * heads * d + i2 % d]);
                }
                db.q = qb; db.k = kb; db.v = vb;
                db.q_type = db.k_type = db.v_type = FA_BF16;
                memset(&db.q_stride, 0, sizeof db.q_stride);
                db.k_stride = db.v_stride = db.q_stride;
                gb1 = flops1 / time_forward(&db, reps) * 1e-9;
                free(qb); free(kb); free(vb);
            }
            /* all heads on the pool */
            memset(&desc.q_stride, 0, sizeof desc.q_stride); desc.k_stride = desc.v_stride = desc.o_stride = desc.q_stride;
            desc.heads_q = heads; desc.pool = pool;
            tn = time_forward(&desc, reps);
            g1 = flops1 / t1 * 1e-9;
            gn = flops1 * heads / tn * 1e-9;
            snprintf(label, sizeof label, "s=%lld%s", (long long)s, causal ? " causal" : "");
#ifdef FA_HAVE_OPENBLAS
            {
                double ta = causal ? 0 : sgemm_attention_seconds(q, k, v, o, s, d, reps);
                char sa[32];
                if (causal) snprintf(sa, sizeof sa, "-");
                else snprintf(sa, sizeof sa, "%.1f GF/s", (gsa = flops1 / ta * 1e-9));
                printf("%-18s | %10.1f %7.0f%% %10.1f | %10.1f %7.0f%% %6.2fx | %14s\n", label, g1, 100 * g1 / sg1, gb1, gn,
                       100 * gn / sgn, gn / g1, sa);
            }
#else
            printf("%-18s | %10.1f %8s %10.1f | %10.1f %8s %6.2fx | %14s\n", label, g1, "-", gb1, gn, "-", gn / g1, "-");
#endif
            {
                /* the naive method (full score matrix, plain loops): up to 4096, it is slow */
                double tn2 = 0, tq[16];
                int rr;
                if (!causal && s <= 4096) {
                    for (rr = 0; rr < reps; rr++) {
                        double t0 = bench_now();
                        naive_attention(q, k, v, o, s, s, d, 0);
                        tq[rr] = bench_now() - t0;
                    }
                    tn2 = bench_median(tq, reps);
                    printf("%-18s   naive 1T: %.1f GF/s\n", "", flops1 / tn2 * 1e-9);
                }
                if (csv && !causal) /* NaN: not measured (gnuplot skips it) */
                    fprintf(csv, "%lld,%.2f,%.2f,%.2f,%.2f,%.2f\n", (long long)s, g1, gn, gsa, tn2 > 0 ? flops1 / tn2 * 1e-9 : NAN, gb1);
            }
            fflush(stdout);
            free(q); free(k); free(v); free(o);
        }
    fa_pool_destroy(pool, FA_POOL_FINISH);
    if (csv) {
        fclose(csv);
        bench_plot("build/bench_attn_prefill.csv", "build/bench_attn_prefill.png",
                   "attention prefill, f32, d=128: GFLOP/s vs sequence length", "sequence length", "GFLOP/s", 1);
    }
}

static void section_c(int reps, int threads)
{
    int64_t s = 2048, d = 128, heads = threads >= 16 ? 32 : 16, n = s * heads * d;
    float *q = (float *)malloc((size_t)n * 4), *k = (float *)malloc((size_t)n * 4);
    float *v = (float *)malloc((size_t)n * 4), *o = (float *)malloc((size_t)n * 4);
    double t1 = 0, flops = 4.0 * (double)s * s * d * (double)heads;
    int t;
    fa_attn_desc desc;
    bench_fill(q, (size_t)n); bench_fill(k, (size_t)n); bench_fill(v, (size_t)n);
    memset(&desc, 0, sizeof desc);
    desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = heads; desc.head_dim = d;
    desc.q = q; desc.k = k; desc.v = v; desc.o = o;
    printf("\n== c: thread scaling, prefill f32 s=%lld d=%lld, %lld heads, non-causal\n", (long long)s, (long long)d,
           (long long)heads);
    printf("%8s %10s %10s %9s\n", "threads", "time", "GFLOP/s", "speed-up");
    for (t = 1; t <= threads; t = t * 2 > threads && t < threads ? threads : t * 2) {
        fa_pool *pool = make_pool(t);
        double tt;
        desc.pool = pool;
        tt = time_forward(&desc, reps);
        if (t == 1) t1 = tt;
        printf("%8d %9.3fs %10.1f %8.2fx\n", t, tt, flops / tt * 1e-9, t1 / tt);
        fflush(stdout);
        fa_pool_destroy(pool, FA_POOL_FINISH);
    }
    free(q); free(k); free(v); free(o);
}

/* The copy that measures the memory bandwidth. On x86 it stores with SSE2 streaming stores
   (what STREAM's copy measures): memcpy's cached stores also read each destination line before
   writing it, so they move 3 bytes for every 2 counted, and they leave the caches full of dirty
   lines that a read does not clear (the last-level cache keeps old lines against a streaming
   read), so that a call after it also paid their write-back: 213 us instead of 167 us at 4096
   bf16 keys on the 16-core host. nt 0: memcpy, printed for comparison. */
typedef struct copy_job { const unsigned char *src; unsigned char *dst; size_t n; int64_t parts; int nt; } copy_job;
static void copy_part(void *ctx, int64_t i, int worker)
{
    const copy_job *j = (const copy_job *)ctx;
    size_t a = j->n * (size_t)i / (size_t)j->parts, b = j->n * (size_t)(i + 1) / (size_t)j->parts;
    (void)worker;
    if (j->nt) { /* a and b are multiples of 64 and the buffers 16-byte aligned (malloc) */
        bench_stream_copy(j->dst + a, j->src + a, b - a);
        return;
    }
    memcpy(j->dst + a, j->src + a, b - a);
}

/* reads every line of the copy's source: evicts the caches' contents without leaving dirty lines,
   on the pool's threads, which are then awake as after any other step of a model (the parts are
   small, 256 KiB, so that all of them finish within a few tens of us of each other, as after a
   balanced GEMM: with 4 MiB parts the first threads done idled ~0.5 ms, past the pool's polling,
   and slept into the call; the "asleep" column has that case) */
static void sweep_part(void *ctx, int64_t i, int worker)
{
    const copy_job *j = (const copy_job *)ctx;
    size_t a = j->n * (size_t)i / (size_t)j->parts, b = j->n * (size_t)(i + 1) / (size_t)j->parts, o;
    volatile unsigned char sink;
    unsigned acc = 0;
    (void)worker;
    for (o = a; o < b; o += 64) acc += j->src[o];
    sink = (unsigned char)acc;
    (void)sink;
}

/* a plain read of the K and V buffers, each split in `parts` pieces: the bandwidth a burst of
   this many bytes can get, the ceiling of a decode step that reads them once */
typedef struct read_job { const uint64_t *k, *v; size_t words; int64_t parts; uint64_t sink[64]; } read_job;
static void read_part(void *ctx, int64_t i, int worker)
{
    read_job *j = (read_job *)ctx;
    const uint64_t *src = i < j->parts ? j->k : j->v;
    int64_t pi = i % j->parts;
    size_t a = j->words * (size_t)pi / (size_t)j->parts, b = j->words * (size_t)(pi + 1) / (size_t)j->parts, o;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    (void)worker;
    for (o = a; o + 4 <= b; o += 4) { s0 += src[o]; s1 += src[o + 1]; s2 += src[o + 2]; s3 += src[o + 3]; }
    j->sink[i % 64] = s0 + s1 + s2 + s3;
}

static double time_copy(fa_pool *pool, copy_job *cj)
{
    double t0 = bench_now();
    fa_pool_parallel_for(pool, cj->parts, copy_part, cj);
    return bench_now() - t0;
}

/* a timed copy, then a read of its source: the caches hold nothing of what comes next.
   Returns the copy's time. */
static double evict(fa_pool *pool, copy_job *cj)
{
    double t = time_copy(pool, cj);
    fa_pool_parallel_for(pool, cj->parts, sweep_part, cj);
    return t;
}

/* Decode is timed two ways. "cold": each call follows a copy of cbytes and then a read of it
   (both larger than any last-level cache; the copy's streaming stores leave no dirty lines for
   the call to write back), as in a model where every layer's KV cache is read once per token,
   after steps that mostly read (weights); the copy and
   the call alternate, and "% copy" is the median over those pairs of call GB/s / copy GB/s, so a
   machine whose speed drifts during the run (a shared VM) does not skew the ratio. "warm":
   back-to-back calls, where a small cache can stay in the last-level cache. */
static void section_d(int reps, int threads)
{
    fa_pool *pool = make_pool(threads);
    int64_t hq = 32, hkv = 8, d = 128, sk;
    size_t cbytes = (size_t)256 << 20;
    unsigned char *src = (unsigned char *)malloc(cbytes), *dst = (unsigned char *)malloc(cbytes);
    double copy_gbs, memcpy_gbs, t[16];
    copy_job cj;
    int r, ti;
    memset(src, 1, cbytes); memset(dst, 2, cbytes);
    cj.src = src; cj.dst = dst; cj.n = cbytes; cj.parts = (int64_t)(cbytes >> 18); /* 256 KiB parts */
    cj.nt = 0;
    time_copy(pool, &cj);
    for (r = 0; r < reps; r++) t[r] = time_copy(pool, &cj);
    memcpy_gbs = 2.0 * (double)cbytes / bench_median(t, reps) * 1e-9; /* read + write */
    cj.nt = 1;
    time_copy(pool, &cj);
    for (r = 0; r < reps; r++) t[r] = time_copy(pool, &cj);
    copy_gbs = 2.0 * (double)cbytes / bench_median(t, reps) * 1e-9;
    printf("\n== d: decode, 1 query, %lld q-heads / %lld kv-heads, d=%lld, %d threads; copy bandwidth (read+write) %.1f GB/s\n",
           (long long)hq, (long long)hkv, (long long)d, threads, copy_gbs);
#if defined(__SSE2__)
    printf("copy: streaming stores (memcpy: %.1f GB/s, counting its 2 of 3 bytes moved)\n", memcpy_gbs);
#endif
    printf("cold: each call after a %zu MiB copy and a read of it, %% copy = median over (copy, call) pairs; warm: back-to-back calls\n",
           cbytes >> 20);
    printf("Q is f32, except bf16*: Q, K and V bf16\n");
    printf("%% read: against a plain read of the same K/V bytes on the same threads, also cold (the most a burst\n"
           "of this size gets: short caches cannot reach the copy's rate, which is measured on %zu MiB)\n", cbytes >> 20);
    printf("asleep: cold, and the pool's threads idle for 1 ms first (past their polling: they sleep into the call)\n");
    printf("%% mcpy: cold GB/s against the memcpy figure above (the measure of sessions before 0.1.8)\n");
    printf("%-10s | %6s | %9s %7s %7s %7s %7s | %9s %7s | %9s %7s %7s | %10s\n", "KV length", "K/V", "cold time", "GB/s",
           "% copy", "% mcpy", "% read", "asleep", "% copy", "warm time", "GB/s", "% copy", "K/V memory");
    for (sk = 4096; sk <= 32768; sk *= 2)
        for (ti = 0; ti < 5; ti++) {
            static const fa_dtype kts[5] = {FA_F32, FA_BF16, FA_BF16, FA_F16, FA_E4M3};
            fa_dtype kt = kts[ti];
            int qbf = ti == 2; /* bf16 queries as well (an all-bf16 model) */
            size_t es = fa_dtype_size(kt), kvbytes = (size_t)(2 * sk * hkv * d) * es, wsb = 0;
            unsigned char *k = (unsigned char *)malloc(kvbytes / 2), *v = (unsigned char *)malloc(kvbytes / 2);
            float *q = (float *)malloc((size_t)(hq * d) * 4), *o = (float *)malloc((size_t)(hq * d) * 4);
            fa_attn_desc desc;
            double tc[16], ts[16], tw, ratio[16], rratio[16], sratio[16], cold_t, cold_gbs, warm_gbs, cold_pct, read_pct;
            read_job rj;
            void *ws;
            size_t i;
            /* real values of the type (random bytes would be denormals, which stall FMAs) */
            for (i = 0; i < kvbytes / 2 / es; i++) {
                float a = (float)rand() / RAND_MAX - 0.5f, b = (float)rand() / RAND_MAX - 0.5f;
                if (kt == FA_F32) { ((float *)k)[i] = a; ((float *)v)[i] = b; }
                else if (kt == FA_E4M3) { k[i] = fa_f32_to_e4m3(a * 8, 1); v[i] = fa_f32_to_e4m3(b * 8, 1); }
                else if (kt == FA_F16) { ((uint16_t *)k)[i] = fa_f32_to_f16(a); ((uint16_t *)v)[i] = fa_f32_to_f16(b); }
                else { ((uint16_t *)k)[i] = fa_f32_to_bf16(a); ((uint16_t *)v)[i] = fa_f32_to_bf16(b); }
            }
            bench_fill(q, (size_t)(hq * d));
            if (qbf) /* bf16 rows in the first half of q */
                for (i = 0; i < (size_t)(hq * d); i++) ((uint16_t *)q)[i] = fa_f32_to_bf16(q[i]);
            memset(&desc, 0, sizeof desc);
            desc.batch = 1; desc.seqlen_q = 1; desc.seqlen_k = sk; desc.heads_q = hq; desc.heads_kv = hkv; desc.head_dim = d;
            desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.k_type = desc.v_type = kt; desc.causal = 1;
            desc.q_type = qbf ? FA_BF16 : FA_F32;
            if (kt == FA_E4M3) desc.k_scale = desc.v_scale = 0.125f; /* an FP8 KV cache with its dequant scale */
            desc.pool = pool;
            if (fa_attn_workspace_size(&desc, &wsb) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); exit(1); }
            ws = fa_aligned_alloc(wsb, 64);
            desc.workspace = ws; desc.workspace_size = wsb;
            rj.k = (const uint64_t *)(const void *)k; rj.v = (const uint64_t *)(const void *)v;
            rj.words = kvbytes / 2 / 8; rj.parts = threads;
            fa_attn_forward(&desc);
            for (r = 0; r < reps; r++) {
                double t0, tcopy = evict(pool, &cj);
                t0 = bench_now();
                fa_attn_forward(&desc);
                tc[r] = bench_now() - t0;
                ratio[r] = ((double)kvbytes / tc[r]) / (2.0 * (double)cbytes / tcopy);
                evict(pool, &cj);
                t0 = bench_now();
                fa_pool_parallel_for(pool, 2 * rj.parts, read_part, &rj);
                rratio[r] = (bench_now() - t0) / tc[r];
                tcopy = evict(pool, &cj);
                {
                    struct timespec nap;
                    nap.tv_sec = 0;
                    nap.tv_nsec = 1000000L;
                    nanosleep(&nap, NULL);
                }
                t0 = bench_now();
                fa_attn_forward(&desc);
                ts[r] = bench_now() - t0;
                sratio[r] = ((double)kvbytes / ts[r]) / (2.0 * (double)cbytes / tcopy);
            }
            read_pct = 100 * bench_median(rratio, reps);
            cold_t = bench_median(tc, reps);
            cold_gbs = (double)kvbytes / cold_t * 1e-9;
            cold_pct = 100 * bench_median(ratio, reps);
            desc.workspace = NULL; desc.workspace_size = 0;
            fa_aligned_free(ws);
            tw = time_forward(&desc, reps);
            warm_gbs = (double)kvbytes / tw * 1e-9;
            printf("%-10lld | %6s | %7.3fms %7.1f %6.0f%% %6.0f%% %6.0f%% | %7.3fms %6.0f%% | %7.3fms %7.1f %6.0f%% | %6.1f MiB\n",
                   (long long)sk, qbf ? "bf16*" : fa_dtype_name(kt), cold_t * 1e3, cold_gbs, cold_pct,
                   100 * cold_gbs / memcpy_gbs, read_pct,
                   bench_median(ts, reps) * 1e3, 100 * bench_median(sratio, reps), tw * 1e3, warm_gbs, 100 * warm_gbs / copy_gbs,
                   (double)kvbytes / (1 << 20));
            fflush(stdout);
            free(k); free(v); free(q); free(o);
        }
    free(src); free(dst);
    fa_pool_destroy(pool, FA_POOL_FINISH);
}

/* Causal attention does half the FLOPs of non-causal; per useful FLOP it should be as fast. The
   calls alternate (non-causal, causal, ...) so that both see the same machine. */
static void section_e(int64_t max_s, int reps, int threads)
{
    int64_t s, d = 128;
    int nt[2], ti, r;
    nt[0] = 1; nt[1] = threads;
    printf("\n== e: causal vs non-causal per useful FLOP, f32, d=128, one head per thread, %d alternating pairs\n", reps);
    printf("%-8s %8s | %12s %12s %8s\n", "seqlen", "threads", "non-causal", "causal", "ratio");
    for (ti = 0; ti < (threads > 1 ? 2 : 1); ti++)
        for (s = 1024; s <= max_s; s *= 2) {
            int64_t heads = nt[ti], n = s * heads * d;
            float *q = (float *)malloc((size_t)n * 4), *k = (float *)malloc((size_t)n * 4);
            float *v = (float *)malloc((size_t)n * 4), *o = (float *)malloc((size_t)n * 4);
            double fl = 4.0 * (double)s * s * d * heads, tn[16], tc[16], ratio[16];
            fa_pool *pool = make_pool(nt[ti]);
            size_t wsb = 0;
            void *ws;
            fa_attn_desc desc;
            bench_fill(q, (size_t)n); bench_fill(k, (size_t)n); bench_fill(v, (size_t)n);
            memset(&desc, 0, sizeof desc);
            desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = heads; desc.head_dim = d;
            desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.pool = pool;
            if (fa_attn_workspace_size(&desc, &wsb) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); exit(1); }
            ws = fa_aligned_alloc(wsb, 64);
            desc.workspace = ws; desc.workspace_size = wsb;
            fa_attn_forward(&desc);
            for (r = 0; r < reps; r++) {
                double t0;
                desc.causal = 0;
                t0 = bench_now(); fa_attn_forward(&desc); tn[r] = bench_now() - t0;
                desc.causal = 1;
                t0 = bench_now(); fa_attn_forward(&desc); tc[r] = bench_now() - t0;
                ratio[r] = (0.5 * fl / tc[r]) / (fl / tn[r]);
            }
            printf("%-8lld %8d | %8.1f GF/s %7.1f GF/s %7.3f\n", (long long)s, nt[ti], fl / bench_median(tn, reps) * 1e-9,
                   0.5 * fl / bench_median(tc, reps) * 1e-9, bench_median(ratio, reps));
            fflush(stdout);
            fa_aligned_free(ws);
            fa_pool_destroy(pool, FA_POOL_FINISH);
            free(q); free(k); free(v); free(o);
        }
}

/* Two loops on 1 thread, then on every thread at once. A chain of scalar arithmetic (bound by
   its latency) slows down when virtual CPUs land on the hyperthreads of one physical core, as
   they can on a VM. Vector FMAs at full rate (fma_peak_gflops: bound by the FMA pipes) also
   slow down when the cores lower their clock under wide vector work, or share their vector
   units in ways the first loop cannot see: on the 16-core host of the H100 machine the first
   read 0.98-1.02x while the kernels' own per-thread rate fell to 0.5-0.75x of one thread's
   (2026-12-07). The attention kernels are FMA loops, so the second line is the one that bounds
   what N threads can do. */
typedef struct { double t[64]; } spin_job;
static void spin_part(void *ctx, int64_t i, int worker)
{
    spin_job *j = (spin_job *)ctx;
    volatile float sink;
    float a[16];
    double t0 = bench_now();
    int k, it;
    (void)worker;
    for (k = 0; k < 16; k++) a[k] = (float)k;
    for (it = 0; it < 2000000; it++)
        for (k = 0; k < 16; k++) a[k] = a[k] * 0.9999999f + 1e-7f;
    sink = a[0] + a[15];
    (void)sink;
    j->t[i] = bench_now() - t0;
}
static void fma_part(void *ctx, int64_t i, int worker)
{
    (void)worker;
    ((spin_job *)ctx)->t[i] = fma_peak_gflops();
}

static void check_cores(int threads)
{
    fa_pool *pool = make_pool(threads);
    spin_job j;
    double one, all = 0, g1, gn = 0;
    int i, n = threads < 64 ? threads : 64;
    spin_part(&j, 0, 0);
    one = j.t[0];
    fa_pool_parallel_for(pool, n, spin_part, &j);
    for (i = 0; i < n; i++) all += j.t[i];
    printf("core check: an arithmetic loop on each of %d threads at once took %.2fx its time alone%s\n", n, all / n / one,
           all / n / one > 1.3 ? " (threads share cores: N-thread figures of this run are low)" : "");
    g1 = fma_peak_gflops();
    if (g1 > 0) {
        fa_pool_parallel_for(pool, n, fma_part, &j);
        for (i = 0; i < n; i++) gn += j.t[i];
        gn /= n;
        printf("core check: full-rate FMAs on each of %d threads at once ran at %.2fx one thread's %.1f GFLOP/s%s\n", n,
               gn / g1, g1, gn / g1 < 0.8 ? " (the clock drops or cores share vector units under this load)" : "");
    }
    fa_pool_destroy(pool, FA_POOL_FINISH);
}

/* A decode step of a short cache takes tens of microseconds, about what waking a sleeping
   thread costs (more in a VM): the pool's polling time decides it. Two pools, one polling for
   the default time and one sleeping at once, run alternate calls on the same data. */
static void section_f(int reps, int threads)
{
    int64_t hq = 32, hkv = 8, d = 128, sk;
    fa_pool *pools[2];
    int r, pi;
    if (threads < 2) return;
    pools[0] = make_pool_spin(threads, 0);
    pools[1] = make_pool_spin(threads, -1);
    printf("\n== f: decode latency, bf16 K/V, 1 query, %lld q-heads / %lld kv-heads, d=%lld, %d threads, back-to-back calls\n",
           (long long)hq, (long long)hkv, (long long)d, threads);
    printf("   pool threads polling %d us (the default) against sleeping at once; medians of %d alternating calls\n",
           FA_POOL_DEFAULT_SPIN_NS / 1000, 8 * reps);
    printf("%-10s | %10s %8s | %10s %8s | %8s\n", "KV length", "polling", "GB/s", "sleeping", "GB/s", "speed-up");
    for (sk = 512; sk <= 16384; sk *= 2) {
        size_t kvbytes = (size_t)(2 * sk * hkv * d) * 2, wsb = 0, i;
        uint16_t *k = (uint16_t *)malloc(kvbytes / 2), *v = (uint16_t *)malloc(kvbytes / 2);
        float *q = (float *)malloc((size_t)(hq * d) * 4), *o = (float *)malloc((size_t)(hq * d) * 4);
        double t[2][128], med[2];
        fa_attn_desc desc;
        void *ws;
        int n = 8 * reps > 128 ? 128 : 8 * reps;
        for (i = 0; i < kvbytes / 4; i++) {
            k[i] = fa_f32_to_bf16((float)rand() / RAND_MAX - 0.5f);
            v[i] = fa_f32_to_bf16((float)rand() / RAND_MAX - 0.5f);
        }
        bench_fill(q, (size_t)(hq * d));
        memset(&desc, 0, sizeof desc);
        desc.batch = 1; desc.seqlen_q = 1; desc.seqlen_k = sk; desc.heads_q = hq; desc.heads_kv = hkv; desc.head_dim = d;
        desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.k_type = desc.v_type = FA_BF16; desc.causal = 1;
        desc.pool = pools[0];
        if (fa_attn_workspace_size(&desc, &wsb) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); exit(1); }
        ws = fa_aligned_alloc(wsb, 64);
        desc.workspace = ws; desc.workspace_size = wsb;
        for (pi = 0; pi < 2; pi++) { desc.pool = pools[pi]; fa_attn_forward(&desc); fa_attn_forward(&desc); }
        for (r = 0; r < n; r++)
            for (pi = 0; pi < 2; pi++) {
                double t0;
                desc.pool = pools[pi];
                fa_attn_forward(&desc); /* the call before, as in a model's layer loop */
                t0 = bench_now();
                fa_attn_forward(&desc);
                t[pi][r] = bench_now() - t0;
            }
        for (pi = 0; pi < 2; pi++) med[pi] = bench_median(t[pi], n);
        printf("%-10lld | %8.1fus %8.1f | %8.1fus %8.1f | %7.2fx\n", (long long)sk, med[0] * 1e6, (double)kvbytes / med[0] * 1e-9,
               med[1] * 1e6, (double)kvbytes / med[1] * 1e-9, med[1] / med[0]);
        fflush(stdout);
        fa_aligned_free(ws);
        free(k); free(v); free(q); free(o);
    }
    fa_pool_destroy(pools[0], FA_POOL_FINISH);
    fa_pool_destroy(pools[1], FA_POOL_FINISH);
}
