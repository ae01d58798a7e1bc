/* bench/probe_causal/probe_threads.c - where prefill time goes on 1 thread and on T threads, for
   bench_attn section c's shape (batch 1, s=2048, 32 heads, d=128, f32, non-causal): TSC ticks per
   (query, key) pair in each phase of fa__attn_tile summed over the threads, the units' own time
   (tiles plus Q load, rescale and O write), and threads x wall time. A phase that grows with the
   thread count is where the threads get in each other's way; all of them growing alike points at
   the clock (or the VM). Alternates 1 and T threads twice. x86-64 only.
   usage (through threads.sh): probe_threads [threads [calls [options]]]
     options, letters: m  K/V head-major ([head][seq][d]) instead of token-major
                       h  madvise(MADV_HUGEPAGE) on Q, K, V and O (2 MiB aligned)
                       w  no caller's workspace (fa_attn_forward allocates it every call)
                       c  causal */
#define _DEFAULT_SOURCE /* madvise */
#include "../bench_util.h"
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include <sys/mman.h>
extern unsigned long long fa_ph[8];

static float *pt_alloc(size_t n, int huge)
{
    void *m = NULL;
    if (posix_memalign(&m, (size_t)2 << 20, n * 4)) return NULL;
    if (huge) (void)madvise(m, n * 4, MADV_HUGEPAGE);
    return (float *)m;
}

int main(int argc, char **argv)
{
    const int64_t s = 2048, heads = 32, d = 128;
    const size_t n = (size_t)(s * heads * d);
    int threads = argc > 1 ? atoi(argv[1]) : 16, calls = argc > 2 ? atoi(argv[2]) : 3, r, ti, c, i;
    const char *opt = argc > 3 ? argv[3] : "";
    const int huge = strchr(opt, 'h') != NULL;
    const char *ph[8] = {"ranges", "kvload", "ktrans", "qk", "softmax", "pv", "tiles", "units"};
    float *q = pt_alloc(n, huge), *k = pt_alloc(n, huge), *v = pt_alloc(n, huge), *o = pt_alloc(n, huge);
    double tsc, pairs;
    fa_attn_desc desc;
    if (threads < 1 || calls < 1 || calls > 64) {
        fprintf(stderr, "usage: probe_threads [threads [calls (1-64) [options m h w c]]]\n");
        return 2;
    }
    if (!q || !k || !v || !o) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    srand(1);
    bench_fill(q, n); bench_fill(k, n); bench_fill(v, n); memset(o, 0, n * 4);
    memset(&desc, 0, sizeof desc);
    desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = heads; desc.head_dim = d;
    desc.q = q; desc.k = k; desc.v = v; desc.o = o;
    desc.causal = strchr(opt, 'c') != NULL;
    if (strchr(opt, 'm')) {
        desc.k_stride.seq = desc.v_stride.seq = d;
        desc.k_stride.head = desc.v_stride.head = s * d;
    }
    pairs = desc.causal ? (double)heads * s * (s + 1) / 2 : (double)heads * s * s;
    tsc = bench_tsc_hz();
    bench_print_machine();
    printf("TSC %.3f GHz; s=%lld, %lld heads, d=%lld, f32, %s, K/V %s, %s pages, %s workspace; %d calls a row\n",
           tsc * 1e-9, (long long)s, (long long)heads, (long long)d, desc.causal ? "causal" : "non-causal",
           strchr(opt, 'm') ? "head-major" : "token-major", huge ? "MADV_HUGEPAGE" : "default",
           strchr(opt, 'w') ? "library-allocated" : "caller's", calls);
    printf("TSC ticks per pair, summed over the threads (wall x T: the threads' whole time)\n");
    printf("%3s %8s %7s", "T", "ms", "GF/s");
    for (i = 0; i < 8; i++) printf(" %7s", ph[i]);
    printf(" %7s\n", "wall*T");
    for (r = 0; r < 2; r++)
        for (ti = 0; ti < 2; ti++) {
            int t = ti ? threads : 1;
            fa_pool *pool = NULL;
            double res[8] = {0}, wall[64], tot = 0;
            void *ws = NULL;
            size_t wsb = 0;
            if (t > 1) {
                fa_pool_desc pd;
                memset(&pd, 0, sizeof pd);
                pd.threads = t - 1; /* the calling thread works too */
                if (fa_pool_create(&pool, &pd) != FA_OK) {
                    fprintf(stderr, "%s\n", fa_last_error());
                    return 1;
                }
            }
            desc.pool = pool;
            desc.workspace = NULL; desc.workspace_size = 0;
            if (!strchr(opt, 'w')) {
                if (fa_attn_workspace_size(&desc, &wsb) != FA_OK || !(ws = fa_aligned_alloc(wsb, 64))) {
                    fprintf(stderr, "workspace: %s\n", fa_last_error());
                    return 1;
                }
                memset(ws, 0, wsb);
                desc.workspace = ws; desc.workspace_size = wsb;
            }
            if (fa_attn_forward(&desc) != FA_OK) { /* warm-up */
                fprintf(stderr, "%s\n", fa_last_error());
                return 1;
            }
            for (c = 0; c < calls; c++) {
                double b;
                memset(fa_ph, 0, sizeof fa_ph);
                b = bench_now();
                if (fa_attn_forward(&desc) != FA_OK) {
                    fprintf(stderr, "%s\n", fa_last_error());
                    return 1;
                }
                wall[c] = bench_now() - b;
                for (i = 0; i < 6; i++) res[i] += (double)fa_ph[i] / pairs / calls;
                res[7] += (double)fa_ph[7] / pairs / calls;
                tot += wall[c] * tsc * t / pairs / calls;
            }
            for (i = 0; i < 6; i++) res[6] += res[i];
            {
                double m = bench_median(wall, calls);
                printf("%3d %8.2f %7.1f", t, m * 1e3, 4.0 * pairs * d / m * 1e-9);
            }
            for (i = 0; i < 8; i++) printf(" %7.3f", res[i]);
            printf(" %7.3f\n", tot);
            fflush(stdout);
            fa_aligned_free(ws);
            if (pool) fa_pool_destroy(pool, FA_POOL_FINISH);
        }
    free(q); free(k); free(v); free(o);
    return 0;
}
