/* bench/probe_causal/probe_phases.c - where a prefill tile's time goes, phase by phase, for the
   tiles left of each causal unit's diagonal block, for the diagonal blocks, and for non-causal
   tiles (f32, one head, d=128, 1 thread): time-stamp-counter ticks per needed (query, key) pair
   in each phase of fa__attn_tile, averaged over the calls. The TSC's rate is printed first.
   x86-64 only. usage (through phases.sh): probe_phases [seqlen [calls]]
   AB_ISA=avx2 in the environment: the AVX2 kernels on an AVX-512 machine. */
#include "../bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "probe_common.h"
extern int fa_pc_mode;
extern unsigned long long fa_ph[8];
int main(int argc, char **argv)
{
    int64_t s = argc > 1 ? atoll(argv[1]) : 2048;
    int calls = argc > 2 ? atoi(argv[2]) : 20, c, m, i;
    const char *nm[3] = {"non-causal", "left tiles", "diagonal"};
    const char *ph[6] = {"ranges", "kvload", "ktrans", "qk", "softmax", "pv"};
    double pairs[3], res[3][6];
    fa_attn_desc desc;
    if (!pc_seqlen_ok(s) || calls < 1) {
        fprintf(stderr, "usage: probe_phases [seqlen, a multiple of 512 from 1024 [calls]]\n");
        return 2;
    }
    if (getenv("AB_ISA")) fa_cpu_features_override(~(unsigned)(FA_CPU_AVX512F | FA_CPU_AVX512BW));
    if (pc_setup(s, &desc)) return 1;
    pairs[0] = (double)s * s;
    pairs[1] = pc_left_pairs(s);
    pairs[2] = (double)s * (s + 1) / 2 - pairs[1];
    memset(res, 0, sizeof res);
    for (c = 0; c < calls; c++)
        for (m = 0; m < 3; m++) {
            memset(fa_ph, 0, sizeof fa_ph);
            desc.causal = m > 0; fa_pc_mode = m;
            if (fa_attn_forward(&desc) != FA_OK) { fprintf(stderr, "%s\n", fa_last_error()); return 1; }
            for (i = 0; i < 6; i++) res[m][i] += fa_ph[i] / pairs[m] / calls;
        }
    bench_print_machine();
    printf("TSC %.3f GHz\n", bench_tsc_hz() / 1e9);
    printf("s=%lld d=128 1 thread, %d calls: TSC ticks per needed pair in each phase of fa__attn_tile\n%-12s", (long long)s, calls, "");
    for (i = 0; i < 6; i++) printf("%9s", ph[i]);
    printf("%9s\n", "sum");
    for (m = 0; m < 3; m++) {
        double t = 0;
        printf("%-12s", nm[m]);
        for (i = 0; i < 6; i++) { printf("%9.3f", res[m][i]); t += res[m][i]; }
        printf("%9.3f\n", t);
    }
    pc_free(&desc);
    return 0;
}
