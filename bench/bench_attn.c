/* bench/bench_attn.c - attention forward: the tiled path (fa_attn_forward), the naive method
   (materialise S = QK^T, softmax, S V, in f32) and the double-precision reference, side by side.

   usage: build/bench_attn [max_seqlen] [reps]      (defaults 8192 and 3)

   FLOPs = 4*b*h*sq*sk*d (halved when causal). Times are medians of `reps` runs. "extra mem" is
   the peak of the library's (or the naive method's) own allocations during the call, measured
   through FLASHATTN_MALLOC, on top of Q/K/V/O. The reference is skipped where it would run for
   more than ~20 s. */
#include "bench_util.h"
#define FLASHATTN_MALLOC(n) bench_malloc(n)
#define FLASHATTN_REALLOC(p, n) bench_realloc(p, n)
#define FLASHATTN_FREE(p) bench_free(p)
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <math.h>

/* What a user would write without a fused kernel: the whole score matrix of one head. */
static int naive_attention(const float *q, const float *k, const float *v, float *o, int64_t sq,
                           int64_t sk, int64_t d, int causal)
{
    float *s = (float *)bench_malloc((size_t)(sq * sk) * sizeof(float));
    float scale = 1.0f / sqrtf((float)d);
    int64_t i, j, e;
    if (!s) return -1;
    for (i = 0; i < sq; i++) {
        float mx = -INFINITY, sum = 0;
        float *row = s + i * sk;
        int64_t lim = causal ? i + sk - sq + 1 : sk;
        for (j = 0; j < sk; j++) {
            float acc = 0;
            if (j >= lim) { row[j] = -INFINITY; continue; }
            for (e = 0; e < d; e++) acc += q[i * d + e] * k[j * d + e];
            row[j] = acc * scale;
            if (row[j] > mx) mx = row[j];
        }
        for (j = 0; j < sk; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
        for (j = 0; j < sk; j++) row[j] /= sum;
        for (e = 0; e < d; e++) o[i * d + e] = 0;
        for (j = 0; j < sk; j++) {
            float p = row[j];
            if (p == 0) continue;
            for (e = 0; e < d; e++) o[i * d + e] += p * v[j * d + e];
        }
    }
    bench_free(s);
    return 0;
}

typedef struct result { double sec; size_t mem; } result;

static result time_it(int which, fa_attn_desc *d, int reps)
{
    double t[16];
    int r;
    result res;
    res.mem = 0;
    for (r = 0; r < reps; r++) {
        double t0;
        bench_mem_reset_peak();
        {
            size_t base = bench_mem_cur;
            t0 = bench_now();
            if (which == 0) fa_attn_forward(d);
            else if (which == 1) naive_attention((const float *)d->q, (const float *)d->k, (const float *)d->v,
                                                  (float *)d->o, d->seqlen_q, d->seqlen_k, d->head_dim, d->causal);
            else fa_attn_reference(d);
            t[r] = bench_now() - t0;
            res.mem = bench_mem_peak - base;
        }
    }
    res.sec = bench_median(t, reps);
    return res;
}

static void fmt_mem(char *buf, size_t n, size_t bytes)
{
    if (bytes >= (1u << 20)) snprintf(buf, n, "%.1f MiB", (double)bytes / (1 << 20));
    else snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
}

int main(int argc, char **argv)
{
    int64_t max_s = argc > 1 ? atoll(argv[1]) : 8192;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    int64_t dims[2] = {64, 128}, s, di;
    int causal;
    if (reps < 1) reps = 1;
    if (reps > 16) reps = 16;
    bench_print_machine();
    printf("fa_attn_forward (tiled) vs naive f32 (full score matrix) vs fa_attn_reference (double);\n"
           "batch 1, 1 head, f32, median of %d runs; simd features 0x%x\n\n", reps, fa_cpu_features());
    printf("%-24s | %9s %9s %10s | %9s %9s %10s | %9s %9s %10s\n", "shape", "tiled GF/s", "time", "extra mem",
           "naive GF/s", "time", "extra mem", "ref GF/s", "time", "extra mem");
    for (causal = 0; causal < 2; causal++)
        for (di = 0; di < 2; di++)
            for (s = 512; s <= max_s; s *= 2) {
                int64_t d = dims[di], n = s * d, i;
                float *q = (float *)malloc((size_t)n * 4), *k = (float *)malloc((size_t)n * 4);
                float *v = (float *)malloc((size_t)n * 4), *o = (float *)malloc((size_t)n * 4);
                double flops = 4.0 * (double)s * (double)s * (double)d * (causal ? 0.5 : 1.0);
                fa_attn_desc desc;
                result rt, rn, rr;
                char label[64], m1[32], m2[32], m3[32];
                int ref_ok;
                for (i = 0; i < n; i++) {
                    q[i] = (float)rand() / RAND_MAX - 0.5f;
                    k[i] = (float)rand() / RAND_MAX - 0.5f;
                    v[i] = (float)rand() / RAND_MAX - 0.5f;
                }
                memset(&desc, 0, sizeof desc);
                desc.batch = 1; desc.seqlen_q = desc.seqlen_k = s; desc.heads_q = 1; desc.head_dim = d;
                desc.q = q; desc.k = k; desc.v = v; desc.o = o; desc.causal = causal;
                rt = time_it(0, &desc, reps);
                rn = time_it(1, &desc, reps);
                /* the reference runs at ~0.1-0.3 GFLOP/s: only where it takes a few seconds */
                ref_ok = flops <= 4.0 * 4096.0 * 4096.0 * 64.0;
                if (ref_ok) rr = time_it(2, &desc, 1);
                snprintf(label, sizeof label, "s=%lld d=%lld%s", (long long)s, (long long)d, causal ? " causal" : "");
                fmt_mem(m1, sizeof m1, rt.mem);
                fmt_mem(m2, sizeof m2, rn.mem);
                if (ref_ok) fmt_mem(m3, sizeof m3, rr.mem);
                printf("%-24s | %9.2f %8.3fs %10s | %9.2f %8.3fs %10s | ", label, flops / rt.sec * 1e-9, rt.sec, m1,
                       flops / rn.sec * 1e-9, rn.sec, m2);
                if (ref_ok) printf("%9.2f %8.3fs %10s\n", flops / rr.sec * 1e-9, rr.sec, m3);
                else printf("%9s %9s %10s\n", "-", "skipped", "-");
                fflush(stdout);
                free(q); free(k); free(v); free(o);
            }
    return 0;
}
