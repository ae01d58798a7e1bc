/* bench/bench_cuda.cu - GPU attention throughput of flashattn_cuda.cuh.

   Shapes (the issue's): bf16 forward, 16k tokens per batch, hidden 2048 (heads = 2048 / d),
   batch = 16384 / seqlen, head_dim 128 / 64 / 256, causal and not; FLOPs = 4*b*h*s^2*d, halved
   for causal. Decode: 1 query, 32 query heads / 8 KV heads, d 128, 32768 keys, in GB/s of K+V
   (+Q+O) read once. A device-to-device copy is timed in the same run (bytes read + written).
   Every figure is the median of CUDA-event timings after warm-up; inputs are random (never
   zeros). Usage: bench_cuda [out.csv] */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn_cuda.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                            \
    do {                                                                                 \
        cudaError_t e_ = (x);                                                            \
        if (e_ != cudaSuccess) {                                                         \
            fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__,  \
                    __LINE__);                                                           \
            exit(2);                                                                     \
        }                                                                                \
    } while (0)
#define FK(x)                                                                            \
    do {                                                                                 \
        fa_status s_ = (x);                                                              \
        if (s_ != FA_OK) {                                                               \
            fprintf(stderr, "%s: %s at %s:%d\n", fa_status_str(s_), fa_last_error(),     \
                    __FILE__, __LINE__);                                                 \
            exit(2);                                                                     \
        }                                                                                \
    } while (0)

/* Uniform [-1, 1) bf16 from a hash of the index: random-looking, reproducible, never zero. */
__global__ void fill_bf16(__nv_bfloat16 *p, size_t n, uint32_t seed)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
        p[i] = __float2bfloat16((float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f + 1e-3f);
    }
}
static void fill(void *p, size_t n, uint32_t seed)
{
    fill_bf16<<<1024, 256>>>((__nv_bfloat16 *)p, n, seed);
    CK(cudaGetLastError());
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median milliseconds of `reps` runs of fn(arg) after `warm` warm-up runs. */
typedef void (*run_fn)(void *);
static float time_median(run_fn fn, void *arg, int warm, int reps)
{
    cudaEvent_t a, b;
    float *t = (float *)malloc(sizeof(float) * (size_t)reps), med;
    int i;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (i = 0; i < warm; i++) fn(arg);
    CK(cudaDeviceSynchronize());
    for (i = 0; i < reps; i++) {
        CK(cudaEventRecord(a));
        fn(arg);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&t[i], a, b));
    }
    qsort(t, (size_t)reps, sizeof(float), cmp_f);
    med = t[reps / 2];
    free(t);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return med;
}

static int g_batch_calls = 1; /* decode: calls per timed sample (the figure is per call) */
static void run_attn(void *arg) { FK(fa_cuda_attn_forward((const fa_attn_desc *)arg, 0)); }
static void run_attn_n(void *arg)
{
    for (int i = 0; i < g_batch_calls; i++) FK(fa_cuda_attn_forward((const fa_attn_desc *)arg, 0));
}

typedef struct copy_arg { void *dst; const void *src; size_t bytes; } copy_arg;
static void run_copy(void *arg)
{
    copy_arg *c = (copy_arg *)arg;
    CK(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, 0));
}

static FILE *g_csv;
static int g_reps = 10;
static void emit(const char *name, const char *unit, double value, double ms)
{
    printf("%-44s %10.1f %-8s (%.3f ms)\n", name, value, unit, ms);
    if (g_csv) fprintf(g_csv, "%s,%s,%.2f,%.4f\n", name, unit, value, ms);
    fflush(stdout);
}

static const char *g_fwd_label = ""; /* suffix of the forward rows' names */
static void bench_fwd(int d, int seqlen, int causal)
{
    int64_t heads = 2048 / d, batch = 16384 / seqlen;
    size_t n = (size_t)batch * seqlen * heads * d;
    void *q, *k, *v, *o;
    fa_attn_desc ad;
    char name[96];
    double flops;
    float ms;
    CK(cudaMalloc(&q, n * 2)); CK(cudaMalloc(&k, n * 2)); CK(cudaMalloc(&v, n * 2)); CK(cudaMalloc(&o, n * 2));
    fill(q, n, 1); fill(k, n, 2); fill(v, n, 3);
    memset(&ad, 0, sizeof ad);
    ad.batch = batch; ad.seqlen_q = ad.seqlen_k = seqlen; ad.heads_q = ad.heads_kv = heads;
    ad.head_dim = d; ad.q = q; ad.k = k; ad.v = v; ad.o = o;
    ad.q_type = ad.k_type = ad.v_type = ad.o_type = FA_BF16;
    ad.causal = causal;
    ms = time_median(run_attn, &ad, 2, g_reps);
    flops = 4.0 * batch * heads * (double)seqlen * seqlen * d * (causal ? 0.5 : 1.0);
    snprintf(name, sizeof name, "fwd bf16 d%d s%d %s%s", d, seqlen, causal ? "causal" : "non-causal",
             g_fwd_label);
    emit(name, "TFLOP/s", flops / (ms * 1e-3) / 1e12, ms);
    cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o);
}

/* Decode: 1 query, 32/8 heads, d 128, 32768 keys; page_size > 0 reads a paged cache. */
static fa_dtype g_kv_type = FA_BF16; /* FA_E4M3: the FP8 cache read path */
static void bench_decode(int splits, int page_size, int with_ws, const char *label)
{
    const int64_t hq = 32, hkv = 8, d = 128, sk = 32768, batch = 1;
    size_t kvn = (size_t)batch * sk * hkv * d;
    void *q, *k, *v, *o;
    int32_t *table = NULL;
    fa_attn_desc ad;
    char name[96];
    double bytes;
    float ms;
    int64_t used_splits = 0;
    CK(cudaMalloc(&q, hq * d * 2)); CK(cudaMalloc(&o, hq * d * 2));
    CK(cudaMalloc(&k, kvn * 2)); CK(cudaMalloc(&v, kvn * 2));
    fill(q, (size_t)(hq * d), 4); fill(k, kvn, 5); fill(v, kvn, 6);
    memset(&ad, 0, sizeof ad);
    ad.batch = batch; ad.seqlen_q = 1; ad.seqlen_k = sk; ad.heads_q = hq; ad.heads_kv = hkv;
    ad.head_dim = d; ad.q = q; ad.k = k; ad.v = v; ad.o = o;
    ad.q_type = ad.k_type = ad.v_type = ad.o_type = FA_BF16;
    ad.k_type = ad.v_type = g_kv_type; /* FP8: the first half of each buffer, as bytes */
    ad.num_splits = splits;
    if (page_size) {
        int64_t np = sk / page_size, i;
        int32_t *h = (int32_t *)malloc(sizeof(int32_t) * (size_t)np);
        for (i = 0; i < np; i++) h[i] = (int32_t)((i * 7919) % np); /* scattered pages */
        CK(cudaMalloc((void **)&table, sizeof(int32_t) * (size_t)np));
        CK(cudaMemcpy(table, h, sizeof(int32_t) * (size_t)np, cudaMemcpyHostToDevice));
        free(h);
        ad.block_table = table; ad.page_size = page_size; ad.num_pages = np;
    }
    FK(fa_cuda_attn_num_splits(&ad, &used_splits));
    if (with_ws) { /* what an engine does: one workspace, reused every step */
        FK(fa_cuda_attn_workspace_size(&ad, &ad.workspace_size));
        CK(cudaMalloc(&ad.workspace, ad.workspace_size ? ad.workspace_size : 16));
        CK(cudaMemset(ad.workspace, 0, ad.workspace_size ? ad.workspace_size : 16));
    }
    ms = time_median(run_attn_n, &ad, 5, g_batch_calls > 1 ? 30 : 100) / (float)g_batch_calls;
    if (ad.workspace) cudaFree(ad.workspace);
    bytes = 2.0 * (double)kvn * (double)fa_dtype_size(g_kv_type) + 2.0 * hq * d * 2;
    snprintf(name, sizeof name, "decode %s (splits %lld)", label, (long long)used_splits);
    emit(name, "GB/s", bytes / (ms * 1e-3) / 1e9, ms);
    cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o);
    if (table) cudaFree(table);
}

int main(int argc, char **argv)
{
    cudaDeviceProp prop;
    copy_arg c;
    float ms;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize / 1e6);
    if (argc > 1 && strcmp(argv[1], "--profile") == 0) { /* one shape, for ncu */
        g_reps = 1;
        bench_fwd(128, 16384, 0);
        bench_fwd(128, 16384, 1);
        bench_decode(16, 0, 1, "b1 q32/kv8 d128 k32768");
        return 0;
    }
    if (argc > 1 && !(g_csv = fopen(argv[1], "w"))) {
        perror(argv[1]);
        return 1;
    }
    if (g_csv) fprintf(g_csv, "# device: %s\nname,unit,value,ms\n", prop.name);

    c.bytes = (size_t)1 << 30;
    CK(cudaMalloc(&c.dst, c.bytes));
    CK(cudaMalloc((void **)&c.src, c.bytes));
    fill((void *)c.src, c.bytes / 2, 7);
    ms = time_median(run_copy, &c, 3, 20);
    emit("copy d2d 1 GiB (read+write)", "GB/s", 2.0 * c.bytes / (ms * 1e-3) / 1e9, ms);
    cudaFree(c.dst);
    cudaFree((void *)c.src);

    bench_fwd(128, 16384, 0);
    bench_fwd(128, 16384, 1);
    bench_fwd(64, 16384, 0);
    bench_fwd(64, 16384, 1);
    bench_fwd(256, 16384, 0);
    bench_fwd(256, 16384, 1);
    /* The same d128 shapes on the mma.sync kernels (on Hopper the rows above ran wgmma). */
    fa__wg_off = 1;
    g_fwd_label = " mma.sync";
    bench_fwd(128, 16384, 0);
    bench_fwd(128, 16384, 1);
    fa__wg_off = -1;
    /* The simple wgmma variant (MODE 0: no overlap, no ping-pong), for the notes' A/B. */
    fa__wg_variant = 0;
    g_fwd_label = " wg-simple";
    bench_fwd(128, 16384, 0);
    bench_fwd(128, 16384, 1);
    bench_fwd(64, 16384, 0);
    bench_fwd(256, 16384, 0);
    fa__wg_variant = 1;
    g_fwd_label = "";
    bench_decode(0, 0, 1, "b1 q32/kv8 d128 k32768");
    bench_decode(16, 0, 1, "b1 q32/kv8 d128 k32768");
    bench_decode(66, 0, 1, "b1 q32/kv8 d128 k32768");
    bench_decode(128, 0, 1, "b1 q32/kv8 d128 k32768");
    bench_decode(0, 64, 1, "paged64 b1 q32/kv8 d128 k32768");
    bench_decode(0, 0, 0, "no-workspace b1 q32/kv8 d128 k32768");
    /* The decode kernel's A/B shapes (warps x stages: v0 = default 4x4, v1 4x3, v2 8x2, v3 8x3,
       v4 4x3 with 32-key warp tiles) and the tile kernel it replaced, on the same shape.
       Three rounds of the shapes side by side (one sample each is within the run-to-run
       spread), then the same calls 20 at a time between two events: the GPU time per call
       without the host's launch latency. */
    for (int round = 0; round < 3; round++) {
        for (int v = 0; v <= 4; v++) {
            char label[64];
            snprintf(label, sizeof label, "r%d shape-v%d b1 q32/kv8 d128 k32768", round, v);
            fa__cu_dec_variant = v;
            bench_decode(0, 0, 1, label);
        }
    }
    fa__cu_dec_variant = 1;
    bench_decode(33, 0, 1, "shape-v1 two blocks/SM b1 q32/kv8 d128 k32768");
    g_batch_calls = 20;
    for (int v = 0; v <= 4; v++) {
        char label[64];
        snprintf(label, sizeof label, "x20 shape-v%d b1 q32/kv8 d128 k32768", v);
        fa__cu_dec_variant = v;
        bench_decode(0, 0, 1, label);
    }
    fa__cu_dec_variant = 0;
    g_batch_calls = 1;
    g_kv_type = FA_E4M3;
    for (int round = 0; round < 2; round++) {
        fa__cu_dec_variant = 0;
        bench_decode(0, 0, 1, "fp8-e4m3 shape-v0 b1 q32/kv8 d128 k32768");
        fa__cu_dec_variant = 4;
        bench_decode(0, 0, 1, "fp8-e4m3 shape-v4 b1 q32/kv8 d128 k32768");
    }
    g_kv_type = FA_BF16;
    fa__cu_dec_variant = 4;
    bench_decode(0, 64, 1, "paged64 shape-v4 b1 q32/kv8 d128 k32768");
    fa__cu_dec_variant = -1;
    bench_decode(0, 0, 1, "tile-kernel b1 q32/kv8 d128 k32768");
    fa__cu_dec_variant = 0;
    bench_decode(0, 0, 1, "again b1 q32/kv8 d128 k32768");
    g_kv_type = FA_E4M3;
    bench_decode(0, 0, 1, "fp8-e4m3 b1 q32/kv8 d128 k32768");
    bench_decode(0, 64, 1, "fp8-e4m3 paged64 b1 q32/kv8 d128 k32768");
    g_kv_type = FA_E5M2;
    bench_decode(0, 0, 1, "fp8-e5m2 b1 q32/kv8 d128 k32768");
    fa__cu_dec_variant = -1;
    g_kv_type = FA_E4M3;
    bench_decode(0, 0, 1, "fp8-e4m3 tile-kernel b1 q32/kv8 d128 k32768");
    fa__cu_dec_variant = 0;
    if (g_csv) fclose(g_csv);
    return 0;
}
