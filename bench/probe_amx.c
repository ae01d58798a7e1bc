/* bench/probe_amx.c - where the AMX decode S kernel's time goes, against the AVX-512 one, on a
   machine with AMX (Intel Xeon since Sapphire Rapids, Linux). One thread, K in L1/L2: 64 keys x
   8 kv heads of bf16, d=128, a GQA group of 4 rows, as the decode benchmark's tiles. Prints ns
   per key and kv head for the whole kernels and for their parts:
     avx512   fa__dec_qk_avx512 (the kernel AMX replaces)
     amx      fa__dec_qk_amx
     qparts   only the queries' split into B tiles (8 heads per call)
     tdp      only the tile work per 16 keys: zero 2 accumulators, 4 x (load K, tdpbf16ps), store 2
     tdp1     the same into one accumulator (4 chained products), stored once
     tdp2x    two blocks at once in two accumulators (each 4 chained products)
     cfg      ldtilecfg + tilerelease, once per call
   and both kernels on one kv head's 64 keys, which stay in L1
   usage: probe_amx [calls] */
#include "bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "../flashattn.h"

#include <stdio.h>
#include <stdlib.h>

#define now bench_now

#define NK 64
#define NH 8
#define D 128

int main(int argc, char **argv)
{
#if defined(FA__AMX)
    int calls = argc > 1 ? atoi(argv[1]) : 20000, c, rep, g, j0;
    static uint16_t kv[NK * NH * D * 2] __attribute__((aligned(64)));
    static float q[NH * 4 * D + 4 * D] __attribute__((aligned(64))), s[NH * 4 * FA__BK + 4 * FA__BK];
    static uint32_t bq[8 * 256] __attribute__((aligned(64)));
    static float cb[4][256] __attribute__((aligned(64)));
    const void *krow[NK + FA__AHEAD], *vrow[NK + FA__AHEAD];
    fa__tilecfg cfg __attribute__((aligned(64)));
    const double per = (double)NK * NH;
    int i;
    if (!(fa_cpu_features() & FA_CPU_AMX_BF16)) {
        printf("no AMX here\n");
        return 0;
    }
    for (i = 0; i < NK * NH * D * 2; i++) kv[i] = fa_f32_to_bf16((float)rand() / RAND_MAX - 0.5f);
    for (i = 0; i < NH * 4 * D; i++) q[i] = (float)rand() / RAND_MAX - 0.5f;
    for (i = 0; i < NK + FA__AHEAD; i++) {
        krow[i] = i < NK ? (const void *)(kv + (size_t)i * NH * D) : NULL; /* token-major: heads adjacent */
        vrow[i] = i < NK ? (const void *)(kv + (size_t)NK * NH * D + (size_t)i * NH * D) : NULL;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    for (rep = 0; rep < 3; rep++) {
        double t0, t[9];
        t0 = now();
        for (c = 0; c < calls; c++) fa__dec_qk_avx512(q, D, krow, vrow, FA_BF16, NK, s, 4, NH, D * 2, D * 2, 0, 0);
        t[0] = now() - t0;
        t0 = now();
        for (c = 0; c < calls; c++) fa__dec_qk_amx(q, D, krow, vrow, FA_BF16, NK, s, 4, NH, D * 2, D * 2, 0, 0);
        t[1] = now() - t0;
        t0 = now();
        for (c = 0; c < calls; c++)
            for (g = 0; g < NH; g++) fa__amx_qparts(q + g * 4 * D, D, 4, D / 32, bq);
        t[2] = now() - t0;
        FA__TCFG(cfg);
        fa__amx_qparts(q, D, 4, D / 32, bq);
        FA__TLOAD(2, bq, 64);
        FA__TLOAD(3, bq + 256, 64);
        FA__TLOAD(4, bq + 512, 64);
        FA__TLOAD(5, bq + 768, 64);
        t0 = now();
        for (c = 0; c < calls; c++)
            for (g = 0; g < NH; g++)
                for (j0 = 0; j0 < NK; j0 += 16) {
                    const char *base = (const char *)krow[j0] + g * D * 2;
                    const long st = NH * D * 2;
                    FA__TZERO(0);
                    FA__TZERO(1);
                    FA__TLOAD(6, base, st); FA__TDP(0, 6, 2);
                    FA__TLOAD(7, base + 64, st); FA__TDP(0, 7, 3);
                    FA__TLOAD(6, base + 128, st); FA__TDP(1, 6, 4);
                    FA__TLOAD(7, base + 192, st); FA__TDP(1, 7, 5);
                    FA__TSTORE(0, cb[0]);
                    FA__TSTORE(1, cb[1]);
                }
        t[3] = now() - t0;
        t0 = now();
        for (c = 0; c < calls; c++)
            for (g = 0; g < NH; g++)
                for (j0 = 0; j0 < NK; j0 += 16) {
                    const char *base = (const char *)krow[j0] + g * D * 2;
                    const long st = NH * D * 2;
                    FA__TZERO(0);
                    FA__TLOAD(6, base, st); FA__TDP(0, 6, 2);
                    FA__TLOAD(7, base + 64, st); FA__TDP(0, 7, 3);
                    FA__TLOAD(6, base + 128, st); FA__TDP(0, 6, 4);
                    FA__TLOAD(7, base + 192, st); FA__TDP(0, 7, 5);
                    FA__TSTORE(0, cb[0]);
                }
        t[4] = now() - t0;
        t0 = now();
        for (c = 0; c < calls; c++)
            for (g = 0; g < NH; g++)
                for (j0 = 0; j0 < NK; j0 += 32) {
                    const char *base = (const char *)krow[j0] + g * D * 2, *base2 = (const char *)krow[j0 + 16] + g * D * 2;
                    const long st = NH * D * 2;
                    FA__TZERO(0);
                    FA__TZERO(1);
                    FA__TLOAD(6, base, st); FA__TDP(0, 6, 2);
                    FA__TLOAD(7, base2, st); FA__TDP(1, 7, 2);
                    FA__TLOAD(6, base + 64, st); FA__TDP(0, 6, 3);
                    FA__TLOAD(7, base2 + 64, st); FA__TDP(1, 7, 3);
                    FA__TLOAD(6, base + 128, st); FA__TDP(0, 6, 4);
                    FA__TLOAD(7, base2 + 128, st); FA__TDP(1, 7, 4);
                    FA__TLOAD(6, base + 192, st); FA__TDP(0, 6, 5);
                    FA__TLOAD(7, base2 + 192, st); FA__TDP(1, 7, 5);
                    FA__TSTORE(0, cb[0]);
                    FA__TSTORE(1, cb[1]);
                }
        t[5] = now() - t0;
        FA__TRELEASE();
        t0 = now();
        for (c = 0; c < calls; c++) {
            FA__TCFG(cfg);
            FA__TZERO(0);
            FA__TRELEASE();
        }
        t[6] = now() - t0;
        t0 = now(); /* one kv head: its 64 K rows (16 KiB) stay in L1 */
        for (c = 0; c < calls * NH; c++) fa__dec_qk_avx512(q, D, krow, vrow, FA_BF16, NK, s, 4, 1, 0, 0, 0, 0);
        t[7] = now() - t0;
        t0 = now();
        for (c = 0; c < calls * NH; c++) fa__dec_qk_amx(q, D, krow, vrow, FA_BF16, NK, s, 4, 1, 0, 0, 0, 0);
        t[8] = now() - t0;
        printf("ns per key and kv head: avx512 %.2f  amx %.2f  qparts %.2f  tdp %.2f  tdp1 %.2f  tdp2x %.2f  cfg %.2f"
               "  | 1 head (L1): avx512 %.2f  amx %.2f\n",
               t[0] / calls / per * 1e9, t[1] / calls / per * 1e9, t[2] / calls / per * 1e9, t[3] / calls / per * 1e9,
               t[4] / calls / per * 1e9, t[5] / calls / per * 1e9, t[6] / calls / per * 1e9, t[7] / calls / per * 1e9,
               t[8] / calls / per * 1e9);
    }
    printf("(s[0] %g, cb %g)\n", s[0], cb[0][0]);
#else
    (void)argc;
    (void)argv;
    printf("no AMX build\n");
#endif
    return 0;
}
