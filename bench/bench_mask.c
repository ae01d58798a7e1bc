/* bench/bench_mask.c - sparse attention: time against tile density.

   usage: build/bench_mask [max_seqlen [reps [threads]]]     (defaults 16384, 3, all CPUs)

   f32, batch 1, d=128, one head per thread. Masks whose tiles are all empty or full at a chosen
   density (BigBird's random blocks: no per-element test at all) show that skipped tiles cost
   nothing: time should track density. Then a sliding window of 1024 against dense causal, and
   the cost of dynamic top-k selection against the attention work it saves. */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <math.h>

static double time_forward(fa_attn_desc *d, int reps)
{
    double t[16];
    int r;
    fa_attn_forward(d);
    for (r = 0; r < reps; r++) {
        double t0 = bench_now();
        fa_attn_forward(d);
        t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

int main(int argc, char **argv)
{
    int64_t max_s = argc > 1 ? atoll(argv[1]) : 16384, s, d = 128;
    int reps = argc > 2 ? atoi(argv[2]) : 3, threads = argc > 3 ? atoi(argv[3]) : fa_cpu_count();
    static const double dens[] = {1.0, 0.5, 0.25, 0.10, 0.05};
    fa_pool *pool = NULL;
    fa_pool_desc pd;
    if (reps < 1) reps = 1;
    if (reps > 16) reps = 16;
    if (threads < 1) threads = 1;
    memset(&pd, 0, sizeof pd);
    pd.threads = threads - 1;
    if (threads > 1 && fa_pool_create(&pool, &pd) != FA_OK) pool = NULL;
    double speedup[2][5] = {{0}};
    int si = 0;
    bench_print_machine();
    printf("sparse attention, f32, d=%lld, %d heads on %d threads, median of %d runs\n\n", (long long)d, threads,
           threads, reps);
    for (s = 8192; s <= max_s; s *= 2) {
        int64_t heads = threads, n = s * heads * d, nblk = s / FA_ATTN_BLOCK_K, di;
        float *q = (float *)malloc((size_t)n * 4), *k = (float *)malloc((size_t)n * 4);
        float *v = (float *)malloc((size_t)n * 4), *o = (float *)malloc((size_t)n * 4);
        fa_attn_desc desc;
        fa_mask_desc g;
        double t_dense = 0;
        bench_fill(q, (size_t)n); bench_fill(k, (size_t)n); bench_fill(v, (size_t)n);
        memset(&desc, 0, sizeof desc);
        desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = heads; desc.head_dim = d;
        desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.pool = pool;
        memset(&g, 0, sizeof g);
        g.seqlen_q = g.seqlen_k = s;
        printf("seqlen %lld: time vs density (random full tiles, BigBird-style)\n", (long long)s);
        printf("%10s %12s %10s %12s %14s\n", "density", "tiles kept", "time", "vs dense", "speed-up");
        for (di = 0; di < 5; di++) {
            fa_mask *m = NULL;
            fa_mask_density_info info;
            double t;
            if (dens[di] < 1.0) {
                int64_t rb = (int64_t)(dens[di] * (double)nblk + 0.5);
                if (fa_mask_bigbird(&m, &g, 0, 0, rb > 1 ? rb - 1 : 0, 0, 42) != FA_OK) {
                    fprintf(stderr, "mask: %s\n", fa_last_error());
                    return 1;
                }
            }
            desc.mask = m;
            t = time_forward(&desc, reps);
            if (di == 0) t_dense = t;
            if (si < 2) speedup[si][di] = t_dense / t;
            if (m) fa_mask_density(m, &info);
            printf("%9.0f%% %11.1f%% %9.3fs %11.2fx %13.2fx\n", dens[di] * 100, m ? 100 * info.tiles : 100.0, t,
                   t / t_dense, t_dense / t);
            fflush(stdout);
            fa_mask_destroy(m);
        }
        desc.mask = NULL;
        if (s == max_s) {
            fa_mask *m = NULL, *sel = NULL;
            fa_mask_topk_desc td;
            fa_mask_topk_stats st;
            double tc, tw, tk;
            desc.causal = 1;
            tc = time_forward(&desc, reps);
            fa_mask_sliding_window(&m, &g, 1023, 0, 0);
            desc.causal = 0;
            desc.mask = m;
            tw = time_forward(&desc, reps);
            printf("\nseqlen %lld: dense causal %.3fs, sliding window 1024 (mask) %.3fs: %.1fx faster\n", (long long)s, tc, tw,
                   tc / tw);
            fa_mask_destroy(m);
            desc.causal = 1;
            desc.use_window = 1; desc.window_left = 1023; desc.window_right = 0;
            desc.mask = NULL;
            tw = time_forward(&desc, reps);
            printf("seqlen %lld: sliding window 1024 (descriptor window) %.3fs: %.1fx faster than dense causal\n", (long long)s, tw,
                   tc / tw);
            desc.use_window = 0;
            memset(&td, 0, sizeof td);
            td.attn = &desc;
            td.top_k = nblk / 10;
            td.keep_sink = td.keep_local = 1;
            if (fa_mask_topk(&sel, &td, &st) == FA_OK) {
                desc.mask = sel;
                tk = time_forward(&desc, reps);
                printf("seqlen %lld: top-%lld of %lld key blocks (causal, mean pooling): selection %.3fs + attention %.3fs = "
                       "%.3fs vs dense causal %.3fs (%.1fx); %.1f%% of candidate tiles kept\n",
                       (long long)s, (long long)td.top_k, (long long)nblk, st.seconds, tk, st.seconds + tk, tc,
                       tc / (st.seconds + tk), 100.0 * (double)st.tiles_selected / (double)st.tiles_candidate);
                fa_mask_destroy(sel);
            }
            desc.mask = NULL;
            desc.causal = 0;
        }
        printf("\n");
        free(q); free(k); free(v); free(o);
        si++;
    }
    fa_pool_destroy(pool, FA_POOL_FINISH);
    {
        FILE *csv = fopen("build/bench_mask.csv", "w");
        int di;
        if (csv) {
            fprintf(csv, "tiles kept (%%),speed-up s=8192,speed-up s=16384,ideal (1/density)\n");
            for (di = 0; di < 5; di++)
                fprintf(csv, "%.0f,%.3f,%.3f,%.3f\n", dens[di] * 100, speedup[0][di], si > 1 ? speedup[1][di] : NAN,
                        1.0 / dens[di]);
            fclose(csv);
            bench_plot("build/bench_mask.csv", "build/bench_mask.png", "sparse attention: speed-up over dense vs tile density",
                       "tiles kept (%)", "speed-up over dense", 0);
        }
    }
    return 0;
}
