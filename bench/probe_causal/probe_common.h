/* bench/probe_causal/probe_common.h - what probe_causal.c and probe_phases.c share: the problem
   they time (one head, d=128, f32 Q/K/V from bench_fill after srand(1), a caller's workspace) and
   the split of a causal call's pairs between the keys left of each unit's diagonal block and the
   diagonal blocks. Include after flashattn.h and bench_util.h. */
#define PC_ROWS 512 /* a unit's queries: FA__ROWS rows of one head */

/* at least two units (see fa__attn_schedule), whole ones */
static int pc_seqlen_ok(int64_t s) { return s >= 2 * PC_ROWS && s % PC_ROWS == 0; }

/* *desc: seqlen s, its tensors and workspace; 0, or 1 with the reason printed */
static int pc_setup(int64_t s, fa_attn_desc *desc)
{
    const size_t n = (size_t)(s * 128);
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4);
    size_t wsb = 0;
    if (!q || !k || !v || !o) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    srand(1);
    bench_fill(q, n); bench_fill(k, n); bench_fill(v, n);
    memset(desc, 0, sizeof *desc);
    desc->batch = 1; desc->seqlen_q = desc->seqlen_k = s; desc->heads_q = 1; desc->head_dim = 128;
    desc->q = q; desc->k = k; desc->v = v; desc->o = o;
    if (fa_attn_workspace_size(desc, &wsb) != FA_OK) {
        fprintf(stderr, "%s\n", fa_last_error());
        return 1;
    }
    desc->workspace = fa_aligned_alloc(wsb, 64);
    desc->workspace_size = wsb;
    if (!desc->workspace) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    return 0;
}

static void pc_free(fa_attn_desc *desc)
{
    fa_aligned_free(desc->workspace);
    free((void *)desc->q); free((void *)desc->k); free((void *)desc->v); free(desc->o);
}

/* the (query, key) pairs that the keys left of the units' diagonal blocks give; the rest of the
   s (s + 1) / 2 causal ones are the diagonal blocks' */
static double pc_left_pairs(int64_t s)
{
    double p = 0;
    int64_t u;
    for (u = 0; u < s / PC_ROWS; u++) p += (double)PC_ROWS * (double)(u * PC_ROWS);
    return p;
}
