/* Decode on the AMX kernels (bf16 K and V through tile products, f32 queries and P split in
   three bf16 parts) against the reference and against the AVX-512 kernels.

   Built as it is, the tile instructions are emulated in C (FLASHATTN_AMX_EMULATE), so every
   machine with AVX512_BF16 runs the kernel's own code: the splits, the tile layouts, the
   strided and staged K loads, V laid out in key pairs, the reduction of the parts and the
   fallbacks on non-finite blocks. Built with -DFA_TEST_AMX_REAL it runs the real instructions (an Intel Xeon with AMX,
   Linux); without AMX (or AVX512_BF16 for the emulation) it says so and checks nothing. */
#if !defined(FA_TEST_AMX_REAL)
#define FLASHATTN_AMX_EMULATE 1
#endif
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int have_amx(void) { return (fa_cpu_features_detected() & FA_CPU_AMX_BF16) != 0; }

/* the AMX kernels (every feature) and the AVX-512 ones (AMX off) */
static const struct { const char *name; unsigned mask; } paths[] = {
    {"amx", ~0u},
    {"no-amx", ~(unsigned)FA_CPU_AMX_BF16},
};

typedef struct dcase {
    int64_t dd, g, hkv, sk, page; /* page 0: contiguous, token-major */
    fa_dtype qt, vt;
    int pool;
} dcase;

static fa_pool *pool;

#ifdef FA_TEST_SANITIZED
#define N_RANDOM 60 /* the emulated tiles are slow under the sanitizers */
#else
#define N_RANDOM 200
#endif

/* q values: normal, scaled by 2^e per element for e in [-spread, spread] */
static float qval(int spread)
{
    return (float)(fa_t_normal() * ldexp(1.0, spread ? (int)fa_t_randint(2 * spread + 1) - spread : 0));
}

static void put(void *buf, fa_dtype t, int64_t i, float x)
{
    if (t == FA_BF16) ((uint16_t *)buf)[i] = fa_f32_to_bf16(x);
    else if (t == FA_F16) ((uint16_t *)buf)[i] = fa_f32_to_f16(x);
    else ((float *)buf)[i] = x;
}

/* Runs one decode case on both paths and the reference. k_poison: called on K after the fill
   (non-finite or tiny values). Returns the worst error relative to max(1, |reference|), in units
   of the tolerance 1e-5 + 2 FLT_EPSILON x the logits' bound (as tests/test_attn.c); NaN
   positions must agree exactly (counted in *nan_bad). */
static double run_case(const dcase *c, int spread, void (*k_poison)(uint16_t *k, void *v, fa_dtype vt, int64_t n, int64_t dd),
                       long *nan_bad)
{
    const int64_t hq = c->g * c->hkv, npages = c->page ? (c->sk + c->page - 1) / c->page : 0;
    const int64_t slots = c->page ? npages * c->page : c->sk, nkv = slots * c->hkv * c->dd;
    size_t qes = fa_dtype_size(c->qt), ves = fa_dtype_size(c->vt);
    void *q = malloc((size_t)(hq * c->dd) * qes), *v = malloc((size_t)nkv * ves);
    uint16_t *k = (uint16_t *)malloc((size_t)nkv * 2);
    float *o = (float *)malloc((size_t)(hq * c->dd) * 4), *r = (float *)malloc((size_t)(hq * c->dd) * 4);
    int32_t *bt = NULL;
    double worst = 0, tol;
    int64_t i, n;
    int path;
    fa_attn_desc d;
    for (i = 0; i < hq * c->dd; i++) put(q, c->qt, i, qval(spread));
    for (i = 0; i < nkv; i++) {
        k[i] = fa_f32_to_bf16((float)fa_t_normal());
        put(v, c->vt, i, (float)fa_t_normal());
    }
    if (k_poison) k_poison(k, v, c->vt, nkv, c->dd);
    { /* the logits' bound: scale x largest |q row| x largest |k row| (finite values) */
        double qn = 0, kn = 0, t;
        int64_t e;
        for (i = 0; i < hq; i++) {
            for (t = 0, e = 0; e < c->dd; e++) {
                double x = c->qt == FA_F32 ? ((float *)q)[i * c->dd + e] : fa_bf16_to_f32(((uint16_t *)q)[i * c->dd + e]);
                t += x * x;
            }
            qn = t > qn ? t : qn;
        }
        for (i = 0; i < slots * c->hkv; i++) {
            for (t = 0, e = 0; e < c->dd; e++) {
                double x = fa_bf16_to_f32(k[i * c->dd + e]);
                if (isfinite(x)) t += x * x;
            }
            kn = t > kn ? t : kn;
        }
        tol = 1e-5 + 2 * FLT_EPSILON * sqrt(qn * kn / (double)c->dd);
    }
    memset(&d, 0, sizeof d);
    d.batch = 1; d.seqlen_q = 1; d.seqlen_k = c->sk; d.heads_q = hq; d.heads_kv = c->hkv; d.head_dim = c->dd;
    d.q = q; d.k = k; d.v = v; d.q_type = c->qt; d.k_type = FA_BF16; d.v_type = c->vt; d.causal = 1;
    if (c->page) { /* pages in a shuffled order, so blocks of 16 keys straddle unevenly spaced rows */
        bt = (int32_t *)malloc((size_t)npages * 4);
        for (i = 0; i < npages; i++) bt[i] = (int32_t)i;
        for (i = npages - 1; i > 0; i--) {
            int64_t j = fa_t_randint(i + 1);
            int32_t t = bt[i];
            bt[i] = bt[j];
            bt[j] = t;
        }
        d.block_table = bt; d.page_size = c->page; d.num_pages = npages;
    }
    d.o = r;
    CHECK(fa_attn_reference(&d) == FA_OK);
    d.o = o;
    d.pool = c->pool ? pool : NULL;
    for (path = 0; path < 2; path++) {
        fa_status st;
#if !defined(FA_TEST_AMX_REAL)
        long calls0 = __atomic_load_n(&fa__emu_tdp_calls, __ATOMIC_RELAXED), calls;
#endif
        fa_cpu_features_override(paths[path].mask);
        st = fa_attn_forward(&d);
        fa_cpu_features_override(~0u);
        CHECKF(st == FA_OK, "%s: %s", paths[path].name, fa_last_error());
#if !defined(FA_TEST_AMX_REAL)
        /* the tiles ran exactly when they should: head dims in 32s up to 256, on the AMX path */
        calls = __atomic_load_n(&fa__emu_tdp_calls, __ATOMIC_RELAXED) - calls0;
        CHECKF((calls > 0) == (path == 0 && c->dd % 32 == 0), "%s: %ld tile products, d %lld", paths[path].name, calls,
               (long long)c->dd);
#endif
        for (n = 0; n < hq * c->dd; n++) {
            double err;
            if (isnan(r[n]) || isnan(o[n]) || isinf(r[n]) || isinf(o[n])) {
                if (isnan(r[n]) != isnan(o[n]) || (!isnan(r[n]) && r[n] != o[n])) {
                    if (!*nan_bad)
                        printf("     %s: output %lld is %g, the reference's %g (d %lld, group %lld, %lld kv heads, %lld keys)\n",
                               paths[path].name, (long long)n, o[n], r[n], (long long)c->dd, (long long)c->g,
                               (long long)c->hkv, (long long)c->sk);
                    (*nan_bad)++;
                }
                continue;
            }
            /* in units of the tolerance */
            err = fabs((double)o[n] - r[n]) / (fabs((double)r[n]) > 1 ? fabs((double)r[n]) : 1) / tol;
            if (err > worst) worst = err;
        }
    }
    free(q); free(k); free(v); free(o); free(r); free(bt);
    return worst;
}

static void random_case(dcase *c)
{
    static const int64_t dims[] = {32, 64, 96, 128, 128, 128, 160, 192, 256, 48, 80}; /* 48, 80: not AMX */
    static const int64_t groups[] = {1, 2, 3, 4, 4, 5, 8};
    static const int64_t lens[] = {1, 7, 15, 16, 17, 63, 64, 65, 130, 1000};
    static const int64_t pages[] = {0, 0, 0, 16, 7, 64, 1};
    static const fa_dtype vts[] = {FA_BF16, FA_F16, FA_F32};
    c->dd = dims[fa_t_randint(11)];
    c->g = groups[fa_t_randint(7)];
    c->hkv = fa_t_randint(3) ? 1 + fa_t_randint(4) : 8;
    c->sk = fa_t_randint(4) ? lens[fa_t_randint(10)] : 1 + fa_t_randint(3000);
    c->page = pages[fa_t_randint(7)];
    c->qt = fa_t_randint(3) ? FA_F32 : FA_BF16;
    c->vt = vts[fa_t_randint(3)];
    c->pool = (int)fa_t_randint(2);
}

TEST(amx_decode_matches_reference_on_random_shapes)
{
    int iter, n = N_RANDOM;
    double worst = 0;
    long nan_bad = 0;
    if (!have_amx()) {
        printf("     skipped: no AMX here%s\n", "");
        return;
    }
    for (iter = 0; iter < n; iter++) {
        dcase c;
        double w;
        random_case(&c);
        w = run_case(&c, fa_t_randint(2) ? 0 : 12, NULL, &nan_bad);
        CHECKF(w <= 1, "d %lld, group %lld, %lld kv heads, %lld keys, page %lld, q %s, v %s, pool %d: error %g",
               (long long)c.dd, (long long)c.g, (long long)c.hkv, (long long)c.sk, (long long)c.page,
               fa_dtype_name(c.qt), fa_dtype_name(c.vt), c.pool, w);
        if (w > worst) worst = w;
    }
    CHECKF(nan_bad == 0, "%ld outputs NaN or Inf on one side only", nan_bad);
    printf("     %d cases x 2 paths, worst error %.3g of the tolerance\n", n, worst);
}

/* non-finite values in one key's K row (kinds 0-3) or V row (kinds 4-6) */
static int64_t poison_key;
static int poison_kind;
static void poison(uint16_t *k, void *v, fa_dtype vt, int64_t n, int64_t dd)
{
    static const float vals[] = {INFINITY, -INFINITY, NAN};
    int64_t i;
    (void)n;
    if (poison_kind < 4) {
        for (i = 0; i < (poison_kind == 3 ? dd : 1); i++) k[poison_key + i] = fa_f32_to_bf16(vals[poison_kind % 3]);
    } else {
        put(v, vt, poison_key, vals[poison_kind - 4]);
    }
}

TEST(amx_decode_non_finite_keys_give_what_the_reference_gives)
{
    int iter, reported = 0;
    long nan_bad = 0;
    double worst = 0;
    if (!have_amx()) {
        printf("     skipped: no AMX here%s\n", "");
        return;
    }
    for (iter = 0; iter < 56; iter++) {
        dcase c;
        double w;
        random_case(&c);
        c.page = 0;
        if (c.dd % 32) c.dd = 128;
        if (c.sk < 20) c.sk = 20 + fa_t_randint(200);
        poison_kind = iter % 7; /* K: +Inf, -Inf, NaN in one dim, a whole row of +Inf; V: +Inf, -Inf, NaN */
        poison_key = fa_t_randint(c.sk) * c.hkv * c.dd + fa_t_randint(c.dd);
        if (poison_kind == 3) poison_key -= poison_key % c.dd;
        if (poison_kind >= 4) c.vt = FA_BF16;
        /* V poisoned: unscaled queries, so that no weight underflows to 0 in f32 (0 x Inf is NaN
           where the reference's double weight is tiny but not 0) */
        w = run_case(&c, iter % 2 || poison_kind >= 4 ? 0 : 6, poison, &nan_bad);
        if (nan_bad && !reported) {
            printf("     (poison kind %d)\n", poison_kind);
            reported = 1;
        }
        CHECKF(w <= 1, "kind %d, d %lld, group %lld, %lld keys: error %g", poison_kind, (long long)c.dd,
               (long long)c.g, (long long)c.sk, w);
        if (w > worst) worst = w;
    }
    CHECKF(nan_bad == 0, "%ld outputs NaN or Inf on one side only", nan_bad);
    printf("     56 cases x 2 paths, worst error %.3g of the tolerance\n", worst);
}

/* tiny keys (bf16 denormals among them, which the tile unit reads as zero) and queries over a
   wide range of magnitudes */
static void tiny(uint16_t *k, void *v, fa_dtype vt, int64_t n, int64_t dd)
{
    int64_t i;
    (void)dd;
    (void)v;
    (void)vt;
    for (i = 0; i < n; i++)
        if (fa_t_randint(4) == 0) k[i] = (uint16_t)((k[i] & 0x8000) | (1 + fa_t_randint(0x7f))); /* denormal */
}

TEST(amx_decode_denormal_keys_and_wide_queries)
{
    int iter;
    long nan_bad = 0;
    double worst = 0;
    if (!have_amx()) {
        printf("     skipped: no AMX here%s\n", "");
        return;
    }
    for (iter = 0; iter < 30; iter++) {
        dcase c;
        double w;
        random_case(&c);
        w = run_case(&c, 8, tiny, &nan_bad);
        CHECKF(w <= 1, "d %lld, group %lld, %lld keys: error %g", (long long)c.dd, (long long)c.g, (long long)c.sk, w);
        if (w > worst) worst = w;
    }
    CHECKF(nan_bad == 0, "%ld outputs NaN or Inf on one side only", nan_bad);
    printf("     30 cases x 2 paths, worst error %.3g of the tolerance\n", worst);
}

int main(void)
{
    fa_test_init();
    printf("     AMX: %s\n", have_amx() ? (
#if defined(FA_TEST_AMX_REAL)
                                                 "the hardware's"
#else
                                                 "emulated"
#endif
                                                 )
                                           : "none");
    {
        fa_pool_desc pd;
        memset(&pd, 0, sizeof pd);
        pd.threads = 3;
        if (fa_pool_create(&pool, &pd) != FA_OK) {
            fprintf(stderr, "cannot create the test pool: %s\n", fa_last_error());
            return 1;
        }
    }
    RUN(amx_decode_matches_reference_on_random_shapes);
    RUN(amx_decode_non_finite_keys_give_what_the_reference_gives);
    RUN(amx_decode_denormal_keys_and_wide_queries);
    fa_pool_destroy(pool, FA_POOL_FINISH);
    return fa_test_summary();
}
