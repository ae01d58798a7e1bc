/* bench/probe_causal/probe_causal.c - where causal prefill's time goes, against non-causal, per
   pair of (query, key) that attention needs, on one thread (f32, one head, d=128).
   usage (through run.sh): probe_causal [seqlen [calls]]
   Five calls alternate, `calls` times: non-causal; causal; causal with only the keys left of each
   unit's diagonal block (full tiles); causal with only the diagonal block (512 x 512 keys of
   which half are visible: the partial tiles); and units with no key at all (zeroing, the output
   write: what every unit pays whatever its length). Medians, in ns per needed pair. */
#include "../bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

extern int fa_pc_mode;

int main(int argc, char **argv)
{
    int64_t s = argc > 1 ? atoll(argv[1]) : 2048, d = 128, n, rows = 512, nu, u;
    int calls = argc > 2 ? atoi(argv[2]) : 31, c, m;
    static double t[5][1001];
    const char *name[5] = {"non-causal", "causal", "  left of diagonal blocks", "  diagonal blocks", "  units, no keys"};
    double pairs[5], med[5];
    float *q, *k, *v, *o;
    fa_attn_desc desc;
    size_t wsb = 0;
    if (s < 1024 || s % 512 || calls < 1 || calls > 1001) { /* at least 2 units: see fa__attn_schedule */
        fprintf(stderr, "usage: probe_causal [seqlen, a multiple of 512 from 1024 [calls, 1..1001]]\n");
        return 2;
    }
    n = s * d;
    q = malloc((size_t)n * 4); k = malloc((size_t)n * 4); v = malloc((size_t)n * 4); o = malloc((size_t)n * 4);
    srand(1);
    bench_fill(q, (size_t)n); bench_fill(k, (size_t)n); bench_fill(v, (size_t)n);
    memset(&desc, 0, sizeof desc);
    desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = 1; desc.head_dim = d;
    desc.q = q; desc.k = k; desc.v = v; desc.o = o;
    if (fa_attn_workspace_size(&desc, &wsb) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); return 1; }
    desc.workspace = fa_aligned_alloc(wsb, 64);
    desc.workspace_size = wsb;
    nu = s / rows; /* units of 512 queries (FA__ROWS), one head */
    pairs[0] = (double)s * (double)s;
    pairs[1] = (double)s * (double)(s + 1) / 2;
    pairs[2] = 0;
    for (u = 0; u < nu; u++) pairs[2] += (double)rows * (double)(u * rows);
    pairs[3] = pairs[1] - pairs[2];
    pairs[4] = pairs[1]; /* charged per causal pair */
    for (c = 0; c < calls; c++)
        for (m = 0; m < 5; m++) {
            double t0;
            desc.causal = m > 0;
            fa_pc_mode = m >= 2 ? m - 1 : 0;
            t0 = bench_now();
            if (fa_attn_forward(&desc) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); return 1; }
            t[m][c] = bench_now() - t0;
        }
    for (m = 0; m < 5; m++) med[m] = bench_median(t[m], calls);
    bench_print_machine();
    printf("seqlen %lld, d %lld, 1 thread, %d calls each; per pair: time / pairs it needs\n", (long long)s, (long long)d, calls);
    printf("%-28s %10s %12s %10s\n", "", "us", "pairs", "ns/pair");
    for (m = 0; m < 5; m++)
        printf("%-28s %10.1f %12.0f %10.4f\n", name[m], med[m] * 1e6, pairs[m], med[m] * 1e9 / pairs[m]);
    printf("causal per useful FLOP against non-causal: %.3f\n", (med[0] / pairs[0]) / (med[1] / pairs[1]));
    printf("(the part runs each pay the units' own cost, the last line's, again)\n");
    fa_aligned_free(desc.workspace);
    free(q); free(k); free(v); free(o);
    return 0;
}
