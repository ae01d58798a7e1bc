/* bench/ab_main.c - the driver of bench/ab.sh: the same attention call through two versions of
   the library (A: a git revision, B: the working tree), alternating call by call in one process,
   so that a noisy machine (a shared VM) slows both alike. Prints each side's median time and
   rate, the median over the pairs of time(A) / time(B) (B's speed-up), and the largest
   difference between the two outputs.

   usage (through bench/ab.sh): ab threads sq sk hq hkv d dtype causal cold calls splits
     dtype: f32 | bf16 | f16 | e4m3 (K and V; Q and O stay f32) | bf16q (Q, K and V bf16)
     cold:  1 = each call after a 256 MiB read (K/V from DRAM) on the calling thread (the pool's
            threads asleep), 2 = the read on the side's pool in small parts, its threads polling
            into the call (as after another step of a model), 3 = as 2 after a 256 MiB copy on the
            pool (bench_attn section d's eviction), 0 = back to back
     splits: fa_attn_desc.num_splits (0 = the library's choice)
   environment: AB_WINDOW=w adds a sliding window (window_left w, window_right 0);
                AB_ISA=avx2 runs both sides on the AVX2 kernels (fa_cpu_features_override)
                AB_HEADMAJOR=1 lays K and V out head-major, [head][seq][d], instead of token-major
                AB_SPLITS_B=n gives B num_splits n (A keeps the splits argument): split counts
                compared on one header
                AB_OUT=bf16|f16: that output type (max |A-B| is then 1 when any element's bits
                differ)
   Both sides must share fa_attn_desc's layout: a revision from before a change of the
   descriptor cannot be compared this way. Each side has its own pool: in warm runs with more
   threads than half the CPUs, one side's workers still spin (fa_pool_desc.spin_ns) while the
   other side's call runs, so compare such thread counts cold (the 256 MiB read outlasts the
   spin). */
#define FLASHATTN_STATIC
#include "flashattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ab_forward_a(const fa_attn_desc *d);
int ab_forward_b(const fa_attn_desc *d);
void *ab_pool_a(int threads, int awake);
void *ab_pool_b(int threads, int awake);
void ab_sweep_a(void *pool, const unsigned char *buf, size_t n, unsigned char *copy_to);
void ab_sweep_b(void *pool, const unsigned char *buf, size_t n, unsigned char *copy_to);
size_t ab_workspace_a(const fa_attn_desc *d);
size_t ab_workspace_b(const fa_attn_desc *d);
int ab_mask_a(fa_attn_desc *d, double density);
int ab_mask_b(fa_attn_desc *d, double density);

static double ab_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int ab_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}
static double ab_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, ab_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static float ab_rand(void) { return (float)rand() / (float)RAND_MAX - 0.5f; }
static uint16_t ab_bf16(float f) /* round to nearest even; the inputs are finite */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static uint16_t ab_f16(float f) /* |f| < 1, normal or zero after rounding: enough for test data */
{
    uint32_t u, sign, mant;
    int e;
    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000u;
    e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (e <= 0) return (uint16_t)sign;
    mant = (u & 0x7fffffu) + 0x1000u; /* round half up at bit 13 */
    if (mant & 0x800000u) { mant = 0; e++; }
    return (uint16_t)(sign | ((uint32_t)e << 10) | (mant >> 13));
}

int main(int argc, char **argv)
{
    int threads, causal, cold, calls, r, qbf;
    int64_t sq, sk, hq, hkv, d, splits;
    fa_dtype kt;
    size_t es, nkv, nq, i, ebytes = (size_t)256 << 20;
    unsigned char *k, *v, *ev, *ev2;
    float *q, *oa, *ob;
    double *ta, *tb, *ratio, maxdiff = 0, bytes, flops;
    fa_attn_desc da, db;
    if (argc != 12) {
        fprintf(stderr, "usage: %s threads sq sk hq hkv d f32|bf16|f16|bf16q|e4m3 causal cold calls splits\n", argv[0]);
        return 2;
    }
    threads = atoi(argv[1]); sq = atoll(argv[2]); sk = atoll(argv[3]); hq = atoll(argv[4]); hkv = atoll(argv[5]);
    d = atoll(argv[6]); causal = atoi(argv[8]); cold = atoi(argv[9]); calls = atoi(argv[10]); splits = atoll(argv[11]);
    qbf = !strcmp(argv[7], "bf16q");
    kt = !strcmp(argv[7], "bf16") || qbf ? FA_BF16 : !strcmp(argv[7], "f16") ? FA_F16 : !strcmp(argv[7], "e4m3") ? FA_E4M3 : FA_F32;
    es = kt == FA_F32 ? 4 : kt == FA_E4M3 ? 1 : 2;
    if (calls < 1) calls = 1;
    nkv = (size_t)(sk * hkv * d);
    nq = (size_t)(sq * hq * d);
    k = (unsigned char *)malloc(nkv * es); v = (unsigned char *)malloc(nkv * es);
    q = (float *)malloc(nq * 4); oa = (float *)malloc(nq * 4); ob = (float *)malloc(nq * 4);
    ev = (unsigned char *)malloc(ebytes); ev2 = (unsigned char *)malloc(ebytes);
    ta = (double *)malloc((size_t)calls * sizeof(double)); tb = (double *)malloc((size_t)calls * sizeof(double));
    ratio = (double *)malloc((size_t)calls * sizeof(double));
    if (!k || !v || !q || !oa || !ob || !ev || !ev2 || !ta || !tb || !ratio) { fprintf(stderr, "out of memory\n"); return 1; }
    for (i = 0; i < nkv; i++) {
        float a = ab_rand(), b = ab_rand();
        if (kt == FA_F32) { ((float *)k)[i] = a; ((float *)v)[i] = b; }
        else if (kt == FA_BF16) { ((uint16_t *)k)[i] = ab_bf16(a); ((uint16_t *)v)[i] = ab_bf16(b); }
        else if (kt == FA_E4M3) { /* codes of magnitude 2^-9 .. 3.75 (exponent field 0..8), no NaN */
            unsigned ca = (unsigned)((a + 1.0f) * 1e6f), cb = (unsigned)((b + 1.0f) * 1e6f);
            k[i] = (unsigned char)((ca & 0x80) | ((ca >> 8) % 9) << 3 | (ca & 7));
            v[i] = (unsigned char)((cb & 0x80) | ((cb >> 8) % 9) << 3 | (cb & 7));
        }
        else { ((uint16_t *)k)[i] = ab_f16(a); ((uint16_t *)v)[i] = ab_f16(b); }
    }
    for (i = 0; i < nq; i++) q[i] = ab_rand();
    if (qbf) /* bf16 rows in the same buffer (its first half) */
        for (i = 0; i < nq; i++) ((uint16_t *)q)[i] = ab_bf16(q[i]);
    memset(ev, 1, ebytes); memset(ev2, 2, ebytes);
    memset(&da, 0, sizeof da);
    da.batch = 1; da.seqlen_q = sq; da.seqlen_k = sk; da.heads_q = hq; da.heads_kv = hkv; da.head_dim = d;
    da.q = q; da.k = k; da.v = v; da.k_type = da.v_type = kt; da.q_type = qbf ? FA_BF16 : FA_F32; da.causal = causal; da.num_splits = splits;
    if (kt == FA_E4M3) da.k_scale = da.v_scale = 0.125f; /* an FP8 KV cache with its dequant scale */
    if (getenv("AB_WINDOW")) { /* AB_WINDOW=w: a sliding window of w keys left of the diagonal */
        da.use_window = 1;
        da.window_left = atoll(getenv("AB_WINDOW"));
        da.window_right = 0;
    }
    if (getenv("AB_HEADMAJOR")) { /* AB_HEADMAJOR=1: K/V as [head][seq][d] (each head's keys contiguous) */
        da.k_stride.seq = da.v_stride.seq = d;
        da.k_stride.head = da.v_stride.head = sk * d;
    }
    db = da;
    if (getenv("AB_SPLITS_B")) db.num_splits = atoll(getenv("AB_SPLITS_B")); /* B's split count alone */
    if (getenv("AB_OUT")) /* AB_OUT=bf16|f16: O of that type (the buffers hold 4 bytes an element) */
        da.o_type = db.o_type = !strcmp(getenv("AB_OUT"), "bf16") ? FA_BF16 : !strcmp(getenv("AB_OUT"), "f16") ? FA_F16 : FA_F32;
    da.o = oa; db.o = ob;
    if (getenv("AB_MASK") && (ab_mask_a(&da, atof(getenv("AB_MASK"))) || ab_mask_b(&db, atof(getenv("AB_MASK")))))
        return 1;
    da.pool = ab_pool_a(threads, cold >= 2); db.pool = ab_pool_b(threads, cold >= 2);
    da.workspace_size = ab_workspace_a(&da); db.workspace_size = ab_workspace_b(&db);
    da.workspace = aligned_alloc(64, (da.workspace_size + 63) / 64 * 64);
    db.workspace = aligned_alloc(64, (db.workspace_size + 63) / 64 * 64);
    if (!da.workspace || !db.workspace || !da.workspace_size || !db.workspace_size) { fprintf(stderr, "workspace\n"); return 1; }
    for (r = 0; r < 3; r++)
        if (ab_forward_a(&da) || ab_forward_b(&db)) return 1;
    for (r = 0; r < calls; r++) {
        volatile unsigned char sink = 0;
        size_t o;
        double t0;
        if (cold == 1) for (o = 0; o < ebytes; o += 64) sink = (unsigned char)(sink + ev[o]);
        if (cold >= 2) ab_sweep_a(da.pool, ev, ebytes, cold == 3 ? ev2 : NULL);
        t0 = ab_now(); ab_forward_a(&da); ta[r] = ab_now() - t0;
        if (cold == 1) for (o = 0; o < ebytes; o += 64) sink = (unsigned char)(sink + ev[o]);
        if (cold >= 2) ab_sweep_b(db.pool, ev, ebytes, cold == 3 ? ev2 : NULL);
        t0 = ab_now(); ab_forward_b(&db); tb[r] = ab_now() - t0;
        ratio[r] = ta[r] / tb[r];
    }
    for (i = 0; i < nq; i++) {
        double e;
        if (da.o_type == FA_F32) e = fabs((double)oa[i] - (double)ob[i]);
        else e = ((const uint16_t *)oa)[i] == ((const uint16_t *)ob)[i] ? 0.0 : 1.0; /* 1: the bits differ */
        if (e > maxdiff || e != e) maxdiff = e;
    }
    bytes = 2.0 * (double)nkv * (double)es;
    flops = 4.0 * (double)sq * (double)sk * (double)d * (double)hq * (causal && sq == sk ? 0.5 : 1.0);
    {
        double ma = ab_median(ta, calls), mb = ab_median(tb, calls), mr = ab_median(ratio, calls);
        printf("%d threads, sq %lld, sk %lld, %lld/%lld heads, d %lld, %s, %s, %s: A %.1f us, B %.1f us", threads,
               (long long)sq, (long long)sk, (long long)hq, (long long)hkv, (long long)d, argv[7],
               causal ? "causal" : "non-causal", cold == 3 ? "cold (copy), awake" : cold == 2 ? "cold, awake" : cold ? "cold" : "warm", ma * 1e6, mb * 1e6);
        if (sq == 1) printf(" (%.1f / %.1f GB/s)", bytes / ma * 1e-9, bytes / mb * 1e-9);
        else printf(" (%.1f / %.1f GFLOP/s)", flops / ma * 1e-9, flops / mb * 1e-9);
        printf("; B speed-up %.3f (median of %d pairs); max |A-B| %.2g\n", mr, calls, maxdiff);
    }
    return 0;
}
