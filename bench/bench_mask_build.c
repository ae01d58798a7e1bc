/* bench/bench_mask_build.c - what building a sparse mask costs, next to the attention it
   describes: every builder at one sequence length, and the dynamic top-k selection from Q/K
   (mean-pooled and min/max-bounded) at head_dim 128.

   usage: build/bench_mask_build [seqlen] [reps]      (defaults 16384 and 3)

   Times are medians of `reps` builds, wall clock. "elements" and "tiles" are the mask's
   density (fa_mask_density); "bytes" is the memory the mask holds (fa_mask_get_info). For
   top-k (one layout per query head), "attn GFLOP saved" is 4 * bq * bk * head_dim FLOPs for
   every candidate tile not selected, summed over the heads: the causal attention work the
   selection removes, to set its own cost ("selection GFLOP", and the time) against. The
   machine is shared during CI and development: compare rows of one run, not runs. */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <stdlib.h>

#define MAXREPS 15

typedef struct bcase {
    const char *name;
    int kind;
    int64_t a, b, c;
} bcase;

static int64_t g_n;
static fa_mask_topk_desc g_topk;
static fa_mask_topk_stats g_stats;
static fa_mask *g_ops[2];

static int keep_window(void *u, int64_t b, int64_t h, int64_t q, int64_t k)
{
    (void)u; (void)b; (void)h;
    return k <= q && q - k <= 1024;
}

static fa_status build(const bcase *c, fa_mask **m)
{
    fa_mask_desc g = {0};
    static int64_t glob[4] = {0, 1, 2, 3};
    static int32_t cu[5];
    int64_t pre = g_n / 8;
    g.seqlen_q = g.seqlen_k = g_n;
    cu[0] = 0; cu[1] = (int32_t)(g_n / 4); cu[2] = (int32_t)(g_n / 2); cu[3] = (int32_t)(3 * g_n / 4); cu[4] = (int32_t)g_n;
    switch (c->kind) {
    case 0: return fa_mask_causal(m, &g);
    case 1: return fa_mask_sliding_window(m, &g, c->a, c->b, c->c);
    case 2: return fa_mask_longformer(m, &g, c->a, c->b, 0, glob, 4);
    case 3: return fa_mask_bigbird(m, &g, c->a, c->b, c->c, 0, 1);
    case 4: return fa_mask_strided(m, &g, c->a, 1);
    case 5: return fa_mask_fixed(m, &g, c->a, c->b, 1);
    case 6: return fa_mask_document(m, &g, cu, NULL, 4, 1);
    case 7: return fa_mask_prefix_lm(m, &g, &pre);
    case 8: return fa_mask_from_fn(m, &g, keep_window, NULL);
    case 9: return fa_mask_and(m, g_ops[0], g_ops[1]);
    case 10:
        g_topk.pooling = (fa_mask_pooling)c->a;
        g_topk.top_k = c->b;
        g_topk.threshold = (float)c->c / 100.0f;
        return fa_mask_topk(m, &g_topk, &g_stats);
    default: return FA_ERR_INTERNAL;
    }
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 16384, H = 8, D = 128, i;
    int reps = argc > 2 ? atoi(argv[2]) : 3, r;
    size_t ci;
    float *q, *k;
    fa_attn_desc d = {0};
    fa_mask_desc g = {0};
    const bcase cases[] = {
        {"causal", 0, 0, 0, 0},
        {"sliding window 1024", 1, 1024, 0, 0},
        {"dilated window 2048/2", 1, 2048, 0, 2},
        {"Longformer +-512, 4 global", 2, 512, 512, 0},
        {"BigBird w1 g1 r3", 3, 1, 1, 3},
        {"strided 128 (causal)", 4, 128, 0, 0},
        {"fixed 128/8 (causal)", 5, 128, 8, 0},
        {"document x4 (causal)", 6, 0, 0, 0},
        {"prefix-LM n/8", 7, 0, 0, 0},
        {"from_fn window 1024", 8, 0, 0, 0},
        {"and(causal, strided 128)", 9, 0, 0, 0},
        {"top-k mean k=16, 8 heads", 10, FA_MASK_POOL_MEAN, 16, 0},
        {"top-k minmax k=16, 8 heads", 10, FA_MASK_POOL_MINMAX, 16, 0},
        {"top-k mean thr=0.5, 8 heads", 10, FA_MASK_POOL_MEAN, 0, 50},
    };
    if (n < 1 || reps < 1) return 1;
    if (reps > MAXREPS) reps = MAXREPS;
    g_n = n;
    bench_print_machine();
    printf("mask build cost, seqlen %lld, 64 x 64 tiles, median of %d\n\n", (long long)n, reps);
    q = (float *)malloc(sizeof(float) * (size_t)(n * H * D));
    k = (float *)malloc(sizeof(float) * (size_t)(n * H * D));
    if (!q || !k) return 1;
    srand(1);
    for (i = 0; i < n * H * D; i++) {
        q[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        k[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    d.batch = 1; d.seqlen_q = d.seqlen_k = n; d.heads_q = d.heads_kv = H; d.head_dim = D;
    d.q = q; d.k = k; d.v = k; d.o = q; d.causal = 1;
    g_topk.attn = &d;
    g_topk.keep_sink = g_topk.keep_local = 1;
    g.seqlen_q = g.seqlen_k = n;
    if (fa_mask_causal(&g_ops[0], &g) != FA_OK || fa_mask_strided(&g_ops[1], &g, 128, 0) != FA_OK) return 1;

    printf("%-28s %10s %9s %9s %10s  %s\n", "builder", "ms", "elements", "tiles", "bytes", "notes");
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        double t[MAXREPS];
        fa_mask *m = NULL;
        fa_mask_density_info di;
        fa_mask_info in;
        int nr = cases[ci].kind == 8 || cases[ci].kind == 9 ? 1 : reps; /* the slow ones once */
        for (r = 0; r < nr; r++) {
            double t0 = bench_now();
            fa_status st = build(&cases[ci], &m);
            t[r] = bench_now() - t0;
            if (st != FA_OK) {
                printf("%s: %s (%s)\n", cases[ci].name, fa_status_str(st), fa_last_error());
                return 1;
            }
            if (r + 1 < nr) fa_mask_destroy(m);
        }
        fa_mask_density(m, &di);
        fa_mask_get_info(m, &in);
        printf("%-28s %10.2f %8.2f%% %8.2f%% %10zu", cases[ci].name, 1e3 * bench_median(t, nr),
               100.0 * di.elements, 100.0 * di.tiles, in.bytes);
        if (cases[ci].kind == 10) {
            double saved = 4.0 * 64 * 64 * (double)D * (double)(g_stats.tiles_candidate - g_stats.tiles_selected);
            printf("  selection %.3g GFLOP, attn GFLOP saved %.0f", g_stats.flops * 1e-9, saved * 1e-9);
        }
        if (nr == 1) printf("  (1 run)");
        printf("\n");
        fa_mask_destroy(m);
    }
    fa_mask_destroy(g_ops[0]);
    fa_mask_destroy(g_ops[1]);
    free(q);
    free(k);
    return 0;
}
