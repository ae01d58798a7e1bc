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
void *AB_CAT(ab_pool_, AB_SIDE)(int threads, int awake);
void AB_CAT(ab_sweep_, AB_SIDE)(void *pool, const unsigned char *buf, size_t n, unsigned char *copy_to);
size_t AB_CAT(ab_workspace_, AB_SIDE)(const fa_attn_desc *d);
int AB_CAT(ab_mask_, AB_SIDE)(fa_attn_desc *d, double density);

int AB_CAT(ab_forward_, AB_SIDE)(const fa_attn_desc *d)
{
    fa_status st = fa_attn_forward(d);
    if (st != FA_OK) fprintf(stderr, "side " AB_STR(AB_SIDE) ": %s\n", fa_last_error());
    return (int)st;
}

/* the pool of this side's library (the pool type is private to each version); threads - 1
   workers, the caller being the last thread; NULL for one thread. Its threads sleep as soon as
   they are idle, so both sides pay the same wake-up on every call; with awake, they poll as by
   default (the sweep below then leaves them awake for the call). */
void *AB_CAT(ab_pool_, AB_SIDE)(int threads, int awake)
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
    pd.spin_ns = awake ? 0 : -1; /* idle threads of one side must not poll on the CPUs the other side uses */
#endif
    if (fa_pool_create(&p, &pd) != FA_OK) return (void *)0;
    return p;
}

/* AB_MASK=density: a BigBird-style mask of this side's library (random full key blocks, the
   same seed on both sides), about that fraction of each query block's key blocks kept */
int AB_CAT(ab_mask_, AB_SIDE)(fa_attn_desc *d, double density)
{
    fa_mask *m = (fa_mask *)0;
    fa_mask_desc g;
    int64_t nblk = (d->seqlen_k + FA_ATTN_BLOCK_K - 1) / FA_ATTN_BLOCK_K, rb = (int64_t)(density * (double)nblk + 0.5);
    memset(&g, 0, sizeof g);
    g.seqlen_q = d->seqlen_q;
    g.seqlen_k = d->seqlen_k;
    if (fa_mask_bigbird(&m, &g, 0, 0, rb > 1 ? rb - 1 : 0, d->causal, 42) != FA_OK) {
        fprintf(stderr, "side " AB_STR(AB_SIDE) ": mask: %s\n", fa_last_error());
        return 1;
    }
    d->mask = m;
    return 0;
}

size_t AB_CAT(ab_workspace_, AB_SIDE)(const fa_attn_desc *d)
{
    size_t n = 0;
    if (fa_attn_workspace_size(d, &n) != FA_OK) return 0;
    return n;
}

/* reads every line of buf on the pool's threads in 256 KiB parts (they finish within tens of us
   of each other, as after a balanced GEMM), so that they are awake when the next call comes */
typedef struct ab_sweep_job { const unsigned char *buf; unsigned char *to; size_t n; unsigned sink[64]; } ab_sweep_job;
static void ab_sweep_part(void *ctx, int64_t i, int worker)
{
    ab_sweep_job *j = (ab_sweep_job *)ctx;
    size_t o = (size_t)i << 18, e = o + ((size_t)1 << 18) < j->n ? o + ((size_t)1 << 18) : j->n;
    unsigned acc = 0;
    if (j->to) { memcpy(j->to + o, j->buf + o, e - o); return; }
    for (; o < e; o += 64) acc += j->buf[o];
    j->sink[worker & 63] += acc;
}
/* copy_to: first a copy of buf to copy_to (as bench_attn's section d does before its read) */
void AB_CAT(ab_sweep_, AB_SIDE)(void *pool, const unsigned char *buf, size_t n, unsigned char *copy_to)
{
    static ab_sweep_job j;
    int64_t parts = (int64_t)((n + ((size_t)1 << 18) - 1) >> 18);
    j.buf = buf;
    j.n = n;
    j.to = copy_to;
    if (copy_to) fa_pool_parallel_for((fa_pool *)pool, parts, ab_sweep_part, &j);
    j.to = NULL;
    fa_pool_parallel_for((fa_pool *)pool, parts, ab_sweep_part, &j);
}
