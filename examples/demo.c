/* examples/demo.c - attention on a default problem, and what it saves.

   Computes causal self-attention for batch 1, 8 heads, 2048 tokens, head_dim 64 (f32, BSHD)
   with fa_attn_forward, then the same with the naive method (materialise each head's
   2048 x 2048 score matrix, softmax, multiply by V), and prints the time, the extra memory and
   the largest difference between the two.

   Run:  make demo        (or: cc -O2 -I. examples/demo.c -lm && ./a.out [seqlen] [heads]) */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The naive method, one head at a time: S = Q K^T / sqrt(d), causal mask, softmax, O = S V.
   q/k/v/o are BSHD with `heads` heads; s is a seqlen x seqlen scratch matrix. */
static void naive_head(const float *q, const float *k, const float *v, float *o, float *s,
                       int64_t n, int64_t heads, int64_t d, int64_t h)
{
    int64_t i, j, e, row = heads * d;
    float scale = 1.0f / sqrtf((float)d);
    for (i = 0; i < n; i++) {
        float mx = -INFINITY, sum = 0;
        for (j = 0; j <= i; j++) {
            float acc = 0;
            for (e = 0; e < d; e++) acc += q[i * row + h * d + e] * k[j * row + h * d + e];
            s[i * n + j] = acc * scale;
            if (s[i * n + j] > mx) mx = s[i * n + j];
        }
        for (j = 0; j <= i; j++) { s[i * n + j] = expf(s[i * n + j] - mx); sum += s[i * n + j]; }
        for (e = 0; e < d; e++) o[i * row + h * d + e] = 0;
        for (j = 0; j <= i; j++) {
            float p = s[i * n + j] / sum;
            for (e = 0; e < d; e++) o[i * row + h * d + e] += p * v[j * row + h * d + e];
        }
    }
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 2048, heads = argc > 2 ? atoll(argv[2]) : 8, d = 64;
    int64_t total = n * heads * d, i, h;
    float *q = (float *)malloc((size_t)total * 4), *k = (float *)malloc((size_t)total * 4);
    float *v = (float *)malloc((size_t)total * 4), *o = (float *)malloc((size_t)total * 4);
    float *o_naive = (float *)malloc((size_t)total * 4), *s;
    double t0, t_flash, t_naive, maxdiff = 0, gflop;
    fa_attn_desc desc;
    fa_attn_memory_info mem;
    fa_status st;
    if (!q || !k || !v || !o || !o_naive || n < 1 || heads < 1) { fprintf(stderr, "bad size\n"); return 1; }
    srand(1);
    for (i = 0; i < total; i++) {
        q[i] = (float)rand() / RAND_MAX * 2 - 1;
        k[i] = (float)rand() / RAND_MAX * 2 - 1;
        v[i] = (float)rand() / RAND_MAX * 2 - 1;
    }

    memset(&desc, 0, sizeof desc);  /* zero = default/off for every optional field */
    desc.batch = 1;
    desc.seqlen_q = desc.seqlen_k = n;
    desc.heads_q = desc.heads_kv = heads;
    desc.head_dim = d;
    desc.q = q; desc.k = k; desc.v = v; desc.o = o;  /* f32, packed [batch][seq][heads][dim] */
    desc.causal = 1;

    if ((st = fa_attn_memory(&desc, &mem)) != FA_OK) {
        fprintf(stderr, "%s: %s\n", fa_status_str(st), fa_last_error());
        return 1;
    }
    t0 = now();
    st = fa_attn_forward(&desc);
    t_flash = now() - t0;
    if (st != FA_OK) {
        fprintf(stderr, "fa_attn_forward: %s: %s\n", fa_status_str(st), fa_last_error());
        return 1;
    }

    s = (float *)malloc((size_t)(n * n) * 4);
    if (!s) { fprintf(stderr, "naive: cannot allocate the %lld x %lld score matrix\n", (long long)n, (long long)n); return 1; }
    t0 = now();
    for (h = 0; h < heads; h++) naive_head(q, k, v, o_naive, s, n, heads, d, h);
    t_naive = now() - t0;
    for (i = 0; i < total; i++) {
        double diff = fabs((double)o[i] - o_naive[i]);
        if (diff > maxdiff) maxdiff = diff;
    }

    gflop = 4.0 * (double)n * (double)n * (double)d * (double)heads * 0.5 * 1e-9;
    printf("flashattn.h %s demo: causal self-attention, batch 1, %lld heads, %lld tokens, head_dim %lld, f32\n\n",
           FLASHATTN_VERSION_STRING, (long long)heads, (long long)n, (long long)d);
    printf("%-28s %10s %10s %16s\n", "method", "time", "GFLOP/s", "extra memory");
    printf("%-28s %9.3fs %10.2f %13.1f KiB\n", "tiled (fa_attn_forward)", t_flash, gflop / t_flash,
           (double)mem.flash_bytes / 1024);
    printf("%-28s %9.3fs %10.2f %13.1f MiB\n", "naive (full score matrix)", t_naive, gflop / t_naive,
           (double)(n * n) * 4 / (1 << 20));
    printf("\nspeed-up %.2fx; the naive method needs %.0fx the extra memory for one head at a time,\n"
           "%.1f MiB for all heads at once (fa_attn_memory: %zu bytes).\n",
           t_naive / t_flash, (double)(n * n) * 4 / (double)mem.flash_bytes,
           (double)mem.naive_bytes / (1 << 20), mem.naive_bytes);
    printf("largest difference between the two outputs: %.2e\n", maxdiff);
    free(q); free(k); free(v); free(o); free(o_naive); free(s);
    return maxdiff < 1e-4 ? 0 : 1;
}
