/* examples/mask_layouts.c - building sparse attention masks and looking at them.

   Shows: the mask geometry descriptor, a few built-in patterns (causal, sliding window,
   Longformer, BigBird), combining masks with fa_mask_and, the density report, and a dynamic
   top-k selection from Q/K with its cost. Each layout is printed one query block per line:
   'F' full tile (no per-element test), 'P' partial tile (tested element by element), '.'
   empty tile (skipped by the kernel).

   Build and run:  make examples && ./build/ex_mask_layouts */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <stdio.h>
#include <stdlib.h>

static void show(const char *name, const fa_mask *m)
{
    fa_mask_info in;
    fa_mask_density_info di;
    int64_t I, J;
    fa_mask_get_info(m, &in);
    fa_mask_density(m, &di);
    printf("%s: %lld x %lld tiles of %lld x %lld, %.1f%% of elements kept, %.1f%% of tiles computed\n",
           name, (long long)in.blocks_q, (long long)in.blocks_k, (long long)in.block_q,
           (long long)in.block_k, 100.0 * di.elements, 100.0 * di.tiles);
    for (I = 0; I < in.blocks_q; I++) {
        printf("  ");
        for (J = 0; J < in.blocks_k; J++) {
            int s = fa_mask_tile(m, 0, 0, I, J);
            putchar(s == FA_MASK_FULL ? 'F' : s == FA_MASK_PARTIAL ? 'P' : '.');
        }
        putchar('\n');
    }
}

#define TRY(call)                                                                       \
    do {                                                                                \
        fa_status st_ = (call);                                                         \
        if (st_ != FA_OK) {                                                             \
            fprintf(stderr, "%s: %s (%s)\n", #call, fa_status_str(st_), fa_last_error());  \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

int main(void)
{
    /* 1024 x 1024 tokens in 64 x 64 tiles (the defaults), one layout for every head */
    fa_mask_desc g = {0};
    fa_mask *causal, *window, *longformer, *bigbird, *local, *topk;
    int64_t globals[2] = {0, 1};
    g.seqlen_q = g.seqlen_k = 1024;

    TRY(fa_mask_causal(&causal, &g));
    show("causal", causal);
    TRY(fa_mask_sliding_window(&window, &g, 256, 0, 0)); /* the last 257 keys */
    show("sliding window 256 (causal side)", window);
    TRY(fa_mask_longformer(&longformer, &g, 128, 128, 0, globals, 2));
    show("Longformer: window +-128, global tokens 0 and 1", longformer);
    TRY(fa_mask_bigbird(&bigbird, &g, 1, 1, 2, 0, 2024));
    show("BigBird: 3-block window, 1 global block, 2 random blocks (seed 2024)", bigbird);
    TRY(fa_mask_and(&local, causal, longformer));
    show("causal AND Longformer", local);

    {
        /* dynamic selection: keep the 4 best key blocks per query block (sink and local
           blocks included) from mean-pooled Q and K */
        enum { S = 1024, H = 4, D = 64 };
        float *q = (float *)malloc(sizeof(float) * S * H * D), *k = (float *)malloc(sizeof(float) * S * H * D);
        fa_attn_desc d = {0};
        fa_mask_topk_desc t = {0};
        fa_mask_topk_stats stats;
        int64_t i;
        if (!q || !k) return 1;
        for (i = 0; i < S * H * D; i++) {
            q[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
            k[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f + (float)((i / (H * D * 64)) % 3);
        }
        d.batch = 1; d.seqlen_q = d.seqlen_k = S; d.heads_q = d.heads_kv = H; d.head_dim = D;
        d.q = q; d.k = k; d.v = k; d.o = q; d.causal = 1;
        t.attn = &d;
        t.top_k = 4;
        t.keep_sink = t.keep_local = 1;
        TRY(fa_mask_topk(&topk, &t, &stats));
        show("top-4 key blocks per query block (head 0), causal", topk);
        printf("  selection: %.3f ms, %.2g flop, %lld of %lld candidate tiles kept\n",
               stats.seconds * 1e3, stats.flops, (long long)stats.tiles_selected,
               (long long)stats.tiles_candidate);
        fa_mask_destroy(topk);
        free(q);
        free(k);
    }
    fa_mask_destroy(causal);
    fa_mask_destroy(window);
    fa_mask_destroy(longformer);
    fa_mask_destroy(bigbird);
    fa_mask_destroy(local);
    return 0;
}
