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
#include "probe_common.h"

extern int fa_pc_mode;

int main(int argc, char **argv)
{
    int64_t s = argc > 1 ? atoll(argv[1]) : 2048;
    int calls = argc > 2 ? atoi(argv[2]) : 31, c, m;
    static double t[5][1001];
    const char *name[5] = {"non-causal", "causal", "  left of diagonal blocks", "  diagonal blocks", "  units, no keys"};
    double pairs[5], med[5];
    fa_attn_desc desc;
    if (!pc_seqlen_ok(s) || calls < 1 || calls > 1001) {
        fprintf(stderr, "usage: probe_causal [seqlen, a multiple of 512 from 1024 [calls, 1..1001]]\n");
        return 2;
    }
    if (pc_setup(s, &desc)) return 1;
    pairs[0] = (double)s * (double)s;
    pairs[1] = (double)s * (double)(s + 1) / 2;
    pairs[2] = pc_left_pairs(s);
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
    printf("seqlen %lld, d 128, 1 thread, %d calls each; per pair: time / pairs it needs\n", (long long)s, calls);
    printf("%-28s %10s %12s %10s\n", "", "us", "pairs", "ns/pair");
    for (m = 0; m < 5; m++)
        printf("%-28s %10.1f %12.0f %10.4f\n", name[m], med[m] * 1e6, pairs[m], med[m] * 1e9 / pairs[m]);
    printf("causal per useful FLOP against non-causal: %.3f\n", (med[0] / pairs[0]) / (med[1] / pairs[1]));
    printf("(the part runs each pay the units' own cost, the last line's, again)\n");
    pc_free(&desc);
    return 0;
}
