/* bench/ab_tu.c - one side of bench/ab.sh: the library from the header AB_HEADER, all static
   (FLASHATTN_STATIC), behind three functions named with the suffix AB_SIDE (a or b), so that two
   versions of flashattn.h link into one program. */
#define FLASHATTN_STATIC
#define FLASHATTN_IMPLEMENTATION
#include AB_HEADER
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AB_CAT2(x, y) x##y
#define AB_CAT(x, y) AB_CAT2(x, y)
#define AB_STR2(x) #x
#define AB_STR(x) AB_STR2(x)

int AB_CAT(ab_forward_, AB_SIDE)(const fa_attn_desc *d);
void *AB_CAT(ab_pool_, AB_SIDE)(int threads);
size_t AB_CAT(ab_workspace_, AB_SIDE)(const fa_attn_desc *d);

int AB_CAT(ab_forward_, AB_SIDE)(const fa_attn_desc *d)
{
    fa_status st = fa_attn_forward(d);
    if (st != FA_OK) fprintf(stderr, "side " AB_STR(AB_SIDE) ": %s\n", fa_last_error());
    return (int)st;
}

/* the pool of this side's library (the pool type is private to each version); threads - 1
   workers, the caller being the last thread; NULL for one thread. Its threads sleep as soon as
   they are idle, so both sides pay the same wake-up on every call. */
void *AB_CAT(ab_pool_, AB_SIDE)(int threads)
{
    fa_pool *p = (fa_pool *)0;
    fa_pool_desc pd;
    const char *isa = getenv("AB_ISA");
    if (isa && !strcmp(isa, "avx2")) /* AB_ISA=avx2: the AVX2 kernels on an AVX-512 machine */
        fa_cpu_features_override(FA_CPU_SSE2 | FA_CPU_AVX | FA_CPU_AVX2 | FA_CPU_FMA | FA_CPU_F16C);
    if (threads < 2) return (void *)0;
    memset(&pd, 0, sizeof pd);
    pd.threads = threads - 1;
#ifdef FA_POOL_DEFAULT_SPIN_NS
    pd.spin_ns = -1; /* idle threads of one side must not poll on the CPUs the other side uses */
#endif
    if (fa_pool_create(&p, &pd) != FA_OK) return (void *)0;
    return p;
}

size_t AB_CAT(ab_workspace_, AB_SIDE)(const fa_attn_desc *d)
{
    size_t n = 0;
    if (fa_attn_workspace_size(d, &n) != FA_OK) return 0;
    return n;
}
