/* examples/kv_cache_decode.c - decoding against a paged bf16 KV cache, on a thread pool, and the
   "attention on a KV chunk + LSE merge" step that ring / context-parallel attention is built on.

   A batch of 4 sequences of different lengths keeps its keys and values in pages of 16 tokens
   (a vLLM-style block table), GQA with 32 query heads and 8 KV heads, head_dim 128. Each decode
   step appends one token per sequence and attends its single new query to the whole cache.
   At the end the last step is recomputed in two halves of the cache, as two ranks would,
   and the halves are merged with fa_attn_merge: the result matches the one-pass output.

   Run:  make examples && build/ex_kv_cache_decode */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 4, HQ = 32, HKV = 8, D = 128, PAGE = 16, MAX_LEN = 2048, STEPS = 8 };
#define PAGES_PER_SEQ (MAX_LEN / PAGE)
#define NUM_PAGES (BATCH * PAGES_PER_SEQ)

static float frand(void) { return (float)rand() / RAND_MAX - 0.5f; }

/* Writes token t of sequence b (K and V rows for every KV head) into its page. */
static void append_token(uint16_t *k_pool, uint16_t *v_pool, const int32_t *table, int b, int t)
{
    int page = table[b * PAGES_PER_SEQ + t / PAGE], slot = t % PAGE, h, e;
    for (h = 0; h < HKV; h++)
        for (e = 0; e < D; e++) {
            size_t at = (((size_t)page * PAGE + slot) * HKV + h) * D + e;
            k_pool[at] = fa_f32_to_bf16(frand());
            v_pool[at] = fa_f32_to_bf16(frand());
        }
}

int main(void)
{
    size_t pool_elems = (size_t)NUM_PAGES * PAGE * HKV * D;
    uint16_t *k_pool = (uint16_t *)malloc(pool_elems * 2), *v_pool = (uint16_t *)malloc(pool_elems * 2);
    float *q = (float *)malloc(sizeof(float) * BATCH * HQ * D), *o = (float *)malloc(sizeof(float) * BATCH * HQ * D);
    float *lse = (float *)malloc(sizeof(float) * BATCH * HQ);
    int32_t table[BATCH * PAGES_PER_SEQ], lens[BATCH] = {300, 1000, 57, 1500};
    fa_pool *pool = NULL;
    fa_attn_desc d;
    void *ws;
    size_t ws_bytes;
    fa_status st;
    int b, i, t, step;

    if (!k_pool || !v_pool || !q || !o || !lse) return 1;
    /* pages handed out in a scrambled order, as an allocator of a real cache would */
    for (i = 0; i < BATCH * PAGES_PER_SEQ; i++) table[i] = (i * 37) % NUM_PAGES;
    for (b = 0; b < BATCH; b++)
        for (t = 0; t < lens[b]; t++) append_token(k_pool, v_pool, table, b, t);
    if (fa_pool_create(&pool, NULL) != FA_OK) pool = NULL; /* without threads: runs serially */

    memset(&d, 0, sizeof d);
    d.batch = BATCH; d.seqlen_q = 1; d.seqlen_k = MAX_LEN;     /* capacity per sequence */
    d.heads_q = HQ; d.heads_kv = HKV; d.head_dim = D;
    d.q = q; d.o = o; d.lse = lse;                              /* q, o: [batch][1][HQ][D] f32 */
    d.k = k_pool; d.v = v_pool; d.k_type = d.v_type = FA_BF16; /* [page][PAGE][HKV][D] */
    d.block_table = table; d.block_table_stride = PAGES_PER_SEQ;
    d.page_size = PAGE; d.num_pages = NUM_PAGES;
    d.seqused_k = lens;                                         /* valid keys per sequence */
    d.causal = 1;                                               /* the new query sees everything */
    d.pool = pool;
    /* one workspace for every step: no allocation inside the decode loop */
    if ((st = fa_attn_workspace_size(&d, &ws_bytes)) != FA_OK) goto fail;
    ws = fa_aligned_alloc(ws_bytes, 64);
    if (!ws) return 1;
    d.workspace = ws; d.workspace_size = ws_bytes;

    for (step = 0; step < STEPS; step++) {
        for (b = 0; b < BATCH; b++) append_token(k_pool, v_pool, table, b, lens[b]++);
        for (i = 0; i < BATCH * HQ * D; i++) q[i] = frand();
        if ((st = fa_attn_forward(&d)) != FA_OK) goto fail;
    }
    printf("decoded %d steps for %d sequences (lengths now %d, %d, %d, %d), %d threads, workspace %zu KiB\n",
           STEPS, BATCH, lens[0], lens[1], lens[2], lens[3], fa_pool_size(pool) + 1, ws_bytes / 1024);

    {
        /* The same last step on two halves of every cache, as two ranks of a context-parallel
           group would compute it, then merged by LSE. */
        int32_t first[BATCH], second_used[BATCH], second_table[BATCH * PAGES_PER_SEQ];
        float *parts = (float *)malloc(sizeof(float) * 2 * BATCH * HQ * D), *plse = (float *)malloc(sizeof(float) * 2 * BATCH * HQ);
        float *merged = (float *)malloc(sizeof(float) * BATCH * HQ * D), maxdiff = 0;
        fa_attn_desc h = d;
        fa_merge_desc m;
        if (!parts || !plse || !merged) return 1;
        for (b = 0; b < BATCH; b++) {
            /* split on a page boundary: half A = pages [0, np/2), half B = the rest */
            int np = (lens[b] + PAGE - 1) / PAGE, cut = np / 2;
            first[b] = cut * PAGE;
            second_used[b] = lens[b] - cut * PAGE;
            for (i = 0; i < PAGES_PER_SEQ; i++)
                second_table[b * PAGES_PER_SEQ + i] = i + cut < PAGES_PER_SEQ ? table[b * PAGES_PER_SEQ + i + cut] : 0;
        }
        /* without causal: each half holds keys the query may all see */
        h.causal = 0;
        h.seqused_k = first; h.o = parts; h.lse = plse;
        if ((st = fa_attn_forward(&h)) != FA_OK) goto fail;
        h.seqused_k = second_used; h.block_table = second_table;
        h.o = parts + BATCH * HQ * D; h.lse = plse + BATCH * HQ;
        if ((st = fa_attn_forward(&h)) != FA_OK) goto fail;
        memset(&m, 0, sizeof m);
        m.num_splits = 2; m.batch = BATCH; m.seqlen = 1; m.heads = HQ; m.head_dim_v = D;
        m.o_parts = parts; m.lse_parts = plse; m.o = merged;
        if ((st = fa_attn_merge(&m)) != FA_OK) goto fail;
        for (i = 0; i < BATCH * HQ * D; i++) {
            float diff = fabsf(merged[i] - o[i]);
            if (diff > maxdiff) maxdiff = diff;
        }
        printf("two cache halves merged by LSE vs one pass: largest difference %.2e\n", maxdiff);
        free(parts); free(plse); free(merged);
        if (maxdiff > 1e-5f) return 1;
    }
    fa_aligned_free(ws);
    fa_pool_destroy(pool, FA_POOL_FINISH);
    free(k_pool); free(v_pool); free(q); free(o); free(lse);
    return 0;
fail:
    fprintf(stderr, "%s: %s\n", fa_status_str(st), fa_last_error());
    return 1;
}
