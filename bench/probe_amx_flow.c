/* bench/probe_amx_flow.c - the AMX decode kernels in the decode's own rhythm (S of a 64-key
   tile for 8 kv heads, then P V of it), against the AVX-512 kernels, one thread, with the K/V
   rows of 4096 keys (8 MiB each: L3) or of the same 64 keys over and over (L2). ns per key
   and kv head:
     S:avx S:amx          S alone
     S+PV: avx/avx amx/avx amx/amx   S then P V (which kernel computes each)
   usage: probe_amx_flow [passes] */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "../flashattn.h"

#include <stdio.h>
#include <stdlib.h>

#define NH 8
#define D 128
#define NKEYS 4096

int main(int argc, char **argv)
{
#if defined(FA__AMX)
    int passes = argc > 1 ? atoi(argv[1]) : 20, rep, pass, mode, l2;
    uint16_t *k = (uint16_t *)fa_aligned_alloc((size_t)NKEYS * NH * D * 2, 64);
    uint16_t *v = (uint16_t *)fa_aligned_alloc((size_t)NKEYS * NH * D * 2, 64);
    static float q[NH * 4 * D + 4 * D] __attribute__((aligned(64))), s[NH * 4 * FA__BK + 4 * FA__BK] __attribute__((aligned(64)));
    static float o[NH * 4 * D] __attribute__((aligned(64)));
    static int32_t c0[NH * 4], c1[NH * 4];
    static const void *krow[NKEYS + FA__AHEAD], *vrow[NKEYS + FA__AHEAD];
    static const char *names[5] = {"S:avx", "S:amx", "S+PV:avx/avx", "S+PV:amx/avx", "S+PV:amx/amx"};
    size_t i;
    if (!(fa_cpu_features() & FA_CPU_AMX_BF16)) {
        printf("no AMX here\n");
        return 0;
    }
    for (i = 0; i < (size_t)NKEYS * NH * D; i++) {
        k[i] = fa_f32_to_bf16((float)rand() / RAND_MAX - 0.5f);
        v[i] = fa_f32_to_bf16((float)rand() / RAND_MAX - 0.5f);
    }
    for (i = 0; i < NH * 4 * D; i++) q[i] = (float)rand() / RAND_MAX - 0.5f;
    for (i = 0; i < NH * 4; i++) { c0[i] = 0; c1[i] = 64; }
    for (i = 0; i < NKEYS + FA__AHEAD; i++) {
        krow[i] = i < NKEYS ? (const void *)(k + i * NH * D) : NULL;
        vrow[i] = i < NKEYS ? (const void *)(v + i * NH * D) : NULL;
    }
    for (rep = 0; rep < 3; rep++)
        for (l2 = 0; l2 < 2; l2++) {
            printf("%s:", l2 ? "L2 (64 keys again)" : "L3 (4096 keys)");
            for (mode = 0; mode < 5; mode++) {
                double t0 = bench_now(), t;
                int64_t tiles = 0, j0;
                for (pass = 0; pass < passes; pass++)
                    for (j0 = 0; j0 < NKEYS; j0 += 64) {
                        const int64_t jb = l2 ? 0 : j0;
                        const size_t kpf = D * 2;
                        if (mode == 0 || mode == 2)
                            fa__dec_qk_avx512(q, D, krow + jb, vrow + jb, FA_BF16, 64, s, 4, NH, D * 2, D * 2, kpf, kpf);
                        else
                            fa__dec_qk_amx(q, D, krow + jb, vrow + jb, FA_BF16, 64, s, 4, NH, D * 2, D * 2, kpf, kpf);
                        if (mode == 2 || mode == 3)
                            fa__dec_pv_avx512(o, D, s, vrow + jb, FA_BF16, D, 4, NH, D * 2, kpf, c0, c1);
                        else if (mode == 4)
                            fa__dec_pv_amx(o, D, s, vrow + jb, FA_BF16, D, 4, NH, D * 2, kpf, c0, c1);
                        tiles++;
                    }
                t = bench_now() - t0;
                printf("  %s %.2f", names[mode], t / ((double)tiles * 64 * NH) * 1e9);
            }
            printf("\n");
        }
    printf("(%g %g)\n", s[0], o[0]);
    fa_aligned_free(k);
    fa_aligned_free(v);
#else
    (void)argc;
    (void)argv;
    printf("no AMX build\n");
#endif
    return 0;
}
