/* flashattn_cuda.cuh - optional CUDA companion of flashattn.h.

   The same fa_attn_desc / fa_merge_desc as the CPU library, run on an NVIDIA GPU (sm_80 or
   newer: A100, H100, ...). All tensor pointers in the descriptor are device pointers; index
   arrays (cu_seqlens_q/k, seqused_k, block_table) and the ALiBi slope array are device pointers
   too. Calls are asynchronous on the given stream; validation errors are returned before
   anything is launched, and nothing is written then.

   Include after (or instead of) flashattn.h; define FLASHATTN_IMPLEMENTATION in one .cu file to
   compile both the CPU and the CUDA implementations there. Build with nvcc for the GPUs you run
   on, e.g.  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a

   WHAT RUNS ON THE GPU
   --------------------
   Forward attention, FlashAttention-2 style (Dao 2023, Algorithm 1 with the FA2 work split):
   each thread block owns 64 or 128 query rows (16 per warp) of one head (or, for GQA decode,
   the rows of every query head that shares one KV head: "packed GQA"), streams K/V tiles
   through shared memory with a 2- or 4-stage cp.async pipeline, computes S = QK^T and O += PV
   with mma.sync m16n8k16 tensor-core instructions (f16 or bf16 operands, f32 accumulation;
   ldmatrix for fragments), and keeps the softmax online in registers. When there are too few
   blocks to fill the GPU (decode, short prompts), the key range is split across blocks
   (split-KV, "flash decoding") and the partial results are combined by the GPU twin of
   fa_attn_merge. The same kernels run on sm_80 and sm_90.

   On an sm_90 GPU (H100, H200), when the binary carries sm_90a code, the plain prefill case
   (head_dim == head_dim_v in {64, 128, 256}, no window/softcap/ALiBi/varlen/seqused/paged/FP8,
   one split) runs a Hopper kernel instead: TMA bulk tensor copies into a shared-memory ring
   fed by a producer warpgroup, wgmma tensor-core products, two consumer warpgroups whose
   softmax overlaps each other's GEMMs (FlashAttention-3's structure). The environment
   variable FLASHATTN_CUDA_NO_WGMMA=1 (read at the first call) turns it off.

   Supported: q f16 or bf16; k and v q's type or FP8 (e4m3 / e5m2, dequantised exactly to q's
   type while loading a tile; k_scale/v_scale and the per-head arrays, which are device
   pointers, fold into the softmax scale and the output); o q's type or f32; head_dim and head_dim_v
   multiples of 8 up to 256 (64, 96, 128 and 256 have their own tile shapes, the rest run
   zero-padded on the next one); GQA/MQA; causal (bottom-right); sliding window; softcap; ALiBi;
   varlen (cu_seqlens_q/k); seqused_k; paged KV; LSE output; num_splits.
   FA_ERR_UNSUPPORTED (with a message) for: sparse masks (d->mask), f32 Q/K/V, head
   dims that are not multiples of 8, strides or pointers not 16-byte aligned, varlen without
   seqlen_q (the GPU needs the maximum to size its grid), paged KV together with cu_seqlens_k,
   GPUs older than sm_80.

   Differences from the CPU library, all documented here:
   - Index arrays live on the device, so they cannot be checked before the launch. The kernels
     clamp instead of faulting: seqused_k to the sequence's capacity, page ids to
     [0, num_pages), a varlen sequence's query count to seqlen_q.
   - P is rounded to the input type before the PV product (as in every FlashAttention), so
     results match the double-precision reference to bf16/f16 accuracy, not bit for bit.
   - A NaN or Inf in V at a key that a row does not see can still reach that row when the key
     shares a 64-key tile with keys the row does see (0 * NaN in the tensor-core product).
     Non-finite logits follow the CPU rules exactly.

   Decode: when the query rows that share one KV head number at most 16 (query heads per KV
   head x seqlen_q: decode, speculative decode, short chunks), a decode kernel runs instead of
   the tile kernel: every warp of a block streams its own 16-key tiles (32-key tiles for FP8
   K/V at head_dim 128, when pages are a multiple of 32 keys) through a private cp.async ring
   and the warps' partial softmaxes are merged in shared memory; FP8 K/V tiles are copied raw
   and converted in shared memory, so their loads stay asynchronous. It covers
   every feature above except K and V of different storage (one FP8, one not) and pages whose
   size is not a multiple of 16 keys; those, and FP8 strides that are not multiples of 16
   bytes, run on the tile kernel. The split-KV merge is launched with programmatic dependent
   launch on sm_90, so its launch overlaps the attention kernel's tail.

   Workspace: split-KV needs fa_cuda_attn_workspace_size() bytes of device memory. Pass it in
   d->workspace / d->workspace_size, or leave it NULL and the call allocates it stream-ordered
   (cudaMallocAsync / cudaFreeAsync). In a decode loop pass it: the default memory pool returns
   freed memory to the driver at every synchronisation unless its release threshold is raised,
   and re-mapping it costs more than the attention itself.
*/
#ifndef FLASHATTN_CUDA_CUH
#define FLASHATTN_CUDA_CUH

#include "flashattn.h"
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Attention forward on the GPU: the semantics of fa_attn_forward (see flashattn.h, attn). */
FLASHATTN_DEF fa_status fa_cuda_attn_forward(const fa_attn_desc *d, cudaStream_t stream);

/* Device scratch bytes fa_cuda_attn_forward needs for this descriptor on the current device
   (0 when it will not split the key range). */
FLASHATTN_DEF fa_status fa_cuda_attn_workspace_size(const fa_attn_desc *d, size_t *bytes);

/* The number of KV splits fa_cuda_attn_forward will use for this descriptor (1 = no split). */
FLASHATTN_DEF fa_status fa_cuda_attn_num_splits(const fa_attn_desc *d, int64_t *splits);

/* GPU twin of fa_attn_merge: the same descriptor, device pointers. o_parts may be f32, f16 or
   bf16; o may be f32, f16 or bf16. */
FLASHATTN_DEF fa_status fa_cuda_attn_merge(const fa_merge_desc *m, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* FLASHATTN_CUDA_CUH */

/* ============================================================================================
   implementation
   ============================================================================================ */
#if defined(FLASHATTN_IMPLEMENTATION) && !defined(FLASHATTN_CUDA_IMPLEMENTATION_DONE)
#define FLASHATTN_CUDA_IMPLEMENTATION_DONE

#include <cuda.h> /* CUtensorMap and its enums only: no -lcuda */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define FA__CU_LOG2E 1.4426950408889634f
#define FA__CU_LN2 0.6931471805599453f
/* Tile shapes per padded head dim D (warps x 16 query rows, keys per tile, pipeline stages),
   from measurements on an H100 (bench/results, docs/cuda_notes.md): at D = 128 one 8-warp
   block per SM with 4 stages and two 4-warp blocks with 2 stages tie (244 TFLOP/s); at D = 64
   and 256 two 4-warp blocks per SM win (189 vs 161, 242 vs 218: D = 256 spills with 8 warps). */
static inline int fa__cu_nwarps(int dpad) { return dpad == 128 ? 8 : 4; }
static inline int fa__cu_bn(int dpad) { return dpad == 256 ? 32 : 64; }
/* Blocks resident per SM (registers and shared memory), for the split-KV heuristic. */
static inline int fa__cu_blocks_per_sm(int dpad) { return dpad == 128 ? 1 : 2; }

/* Everything a forward kernel needs, resolved on the host (strides in elements). */
typedef struct fa__cu_fwd_params {
    const void *q, *k, *v;
    void *o;
    float *lse;
    float *o_part, *lse_part; /* split-KV partials (num_splits > 1), else NULL */
    int64_t q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh;
    int64_t lse_sb, lse_ss, lse_sh; /* lse_sh < 0: varlen default, total_q = cu_q[batch] */
    const int32_t *cu_q, *cu_k, *seqused_k, *block_table;
    int64_t bt_stride, wl, wr, alibi_sb;
    const float *alibi;
    int batch, sq, sk, hq, hkv, group, dqk, dv, page_size, num_pages, num_splits, pack_gqa;
    int o_f32, causal, use_window;
    int k8, v8; /* K / V storage: 0 = q's type, 1 = e4m3, 2 = e5m2 */
    float scale, scale_log2, softcap;
    float k_scale, v_scale; /* dequant multipliers (1 when unset) */
    const float *k_head_scale, *v_head_scale;
} fa__cu_fwd_params;

typedef struct fa__cu_merge_params {
    const void *o_parts;
    const float *lse_parts;
    void *o;
    float *lse;
    int64_t op_split, op_sb, op_ss, op_sh;
    int64_t lp_split, lp_sb, lp_ss, lp_sh;
    int64_t o_sb, o_ss, o_sh, l_sb, l_ss, l_sh; /* l_sh < 0: varlen default (total_q) */
    const int32_t *cu_q; /* varlen output rows (the forward's own merge); NULL = fixed */
    int num_splits, batch, seqlen, heads, dv, op_type, o_type;
} fa__cu_merge_params;

/* ---- device helpers -------------------------------------------------------------------- */

extern __shared__ __align__(16) unsigned char fa__cu_smem[];

template <typename T> struct fa__cu_pair;
template <> struct fa__cu_pair<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};
template <> struct fa__cu_pair<__half> {
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define FA__CU_SM80 1
#endif

static __device__ __forceinline__ uint32_t fa__cu_saddr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte global->shared copy that bypasses L1; src_bytes 0 writes zeros and reads nothing. */
static __device__ __forceinline__ void fa__cu_cp16(void *dst, const void *src, int src_bytes)
{
#ifdef FA__CU_SM80
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(fa__cu_saddr(dst)),
                 "l"(src), "r"(src_bytes));
#else
    (void)dst; (void)src; (void)src_bytes;
#endif
}
static __device__ __forceinline__ void fa__cu_cp_commit(void)
{
#ifdef FA__CU_SM80
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> static __device__ __forceinline__ void fa__cu_cp_wait(void)
{
#ifdef FA__CU_SM80
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

static __device__ __forceinline__ void fa__cu_ldsm4(uint32_t r[4], const void *p)
{
#ifdef FA__CU_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa__cu_saddr(p)));
#else
    (void)p; r[0] = r[1] = r[2] = r[3] = 0;
#endif
}
static __device__ __forceinline__ void fa__cu_ldsm4t(uint32_t r[4], const void *p)
{
#ifdef FA__CU_SM80
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fa__cu_saddr(p)));
#else
    (void)p; r[0] = r[1] = r[2] = r[3] = 0;
#endif
}

/* D(16x8, f32) += A(16x16) * B(16x8), operands f16 or bf16. */
template <typename T> struct fa__cu_mma;
template <> struct fa__cu_mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
#ifdef FA__CU_SM80
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
        (void)c; (void)a; (void)b0; (void)b1;
#endif
    }
};
template <> struct fa__cu_mma<__half> {
    static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
#ifdef FA__CU_SM80
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
        (void)c; (void)a; (void)b0; (void)b1;
#endif
    }
};

static __device__ __forceinline__ float fa__cu_exp2(float x)
{
    float y;
    asm("ex2.approx.f32 %0, %1;\n" : "=f"(y) : "f"(x)); /* ex2(-inf) = +0, NaN stays NaN */
    return y;
}

/* OCP FP8 to float, exact (e4m3: no infinities, S.1111.111 is NaN; e5m2: top byte of f16). */
static __device__ __forceinline__ float fa__cu_fp8(uint32_t v, int kind)
{
    if (kind == 2) return __half2float(__ushort_as_half((unsigned short)(v << 8)));
    uint32_t sign = (v & 0x80u) << 24, e = (v >> 3) & 0xfu, m = v & 7u;
    if (e == 15u && m == 7u) return __uint_as_float(sign | 0x7fc00000u);
    if (e == 0u) return __uint_as_float(sign) + (sign ? -1.0f : 1.0f) * (float)m * 0.001953125f;
    return __uint_as_float(sign | ((e + 120u) << 23) | (m << 20));
}

/* Visible key range [lo, hi] of query i (bottom-right aligned; hi < lo means none). */
static __device__ __forceinline__ int fa__cu_lo(const fa__cu_fwd_params &p, int i, int sq, int sk)
{
    int64_t diag = (int64_t)i + sk - sq, lo = 0;
    if (p.use_window && p.wl >= 0) lo = diag - p.wl;
    if (lo < 0) lo = 0;
    if (lo > sk) lo = sk;
    return (int)lo;
}
static __device__ __forceinline__ int fa__cu_hi(const fa__cu_fwd_params &p, int i, int sq, int sk)
{
    int64_t diag = (int64_t)i + sk - sq, hi = (int64_t)sk - 1;
    if (p.causal && diag < hi) hi = diag;
    if (p.use_window && p.wr >= 0 && diag + p.wr < hi) hi = diag + p.wr;
    if (hi < -1) hi = -1;
    return (int)hi;
}

/* Element offset of key t of sequence b (KV head 0) in a K or V view. */
static __device__ __forceinline__ int64_t fa__cu_kv_off(const fa__cu_fwd_params &p, int b,
                                                        int k_off, int t, int64_t sb, int64_t ss)
{
    if (p.block_table) {
        int page = p.block_table[(int64_t)b * p.bt_stride + t / p.page_size];
        page = page < 0 ? 0 : (page >= p.num_pages ? p.num_pages - 1 : page);
        return (int64_t)page * sb + (int64_t)(t % p.page_size) * ss;
    }
    if (p.cu_k) return (int64_t)(k_off + t) * ss;
    return (int64_t)b * sb + (int64_t)t * ss;
}

/* ---- the forward kernel ------------------------------------------------------------------
   T: __half or __nv_bfloat16. D: padded head dim (tile width, multiple of 16). BN: keys per
   tile. QREG: keep Q's fragments in registers (D <= 128) instead of re-reading shared memory.
   MOD: softcap or ALiBi present (the plain path keeps its inner loop free of them).
   Shared memory: Q [16 NW][D+8], K [STAGES][BN][D+8], V [STAGES][BN][D+8]; the 8-element row padding puts
   the 8 rows an ldmatrix reads in 8 different bank groups. */
template <typename T, int D, int NW, int BN, int STAGES, bool QREG, bool MOD>
__global__ void __launch_bounds__(NW * 32)
fa__cu_fwd_kernel(const fa__cu_fwd_params p)
{
#ifdef FA__CU_SM80
    constexpr int BM = 16 * NW, PITCH = D + 8, NT = NW * 32, CH = D / 8;
    T *sQ = reinterpret_cast<T *>(fa__cu_smem);
    T *sK = sQ + BM * PITCH;
    T *sV = sK + STAGES * BN * PITCH;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int mt = (int)gridDim.x - 1 - (int)blockIdx.x; /* heavy (causal) tiles first */
    const int hy = blockIdx.y;
    const int b = (int)blockIdx.z / p.num_splits, split = (int)blockIdx.z % p.num_splits;
    const T *qg = reinterpret_cast<const T *>(p.q);
    const T *kg = reinterpret_cast<const T *>(p.k);
    const T *vg = reinterpret_cast<const T *>(p.v);

    int q_off = 0, sq = p.sq, k_off = 0, sk = p.sk;
    if (p.cu_q) {
        q_off = p.cu_q[b];
        sq = min(max(p.cu_q[b + 1] - q_off, 0), p.sq);
    }
    if (p.cu_k) {
        k_off = p.cu_k[b];
        sk = max(p.cu_k[b + 1] - k_off, 0);
    }
    if (p.seqused_k) sk = min(sk, max(p.seqused_k[b], 0));
    const int G = p.pack_gqa ? p.group : 1;
    const int rows = sq * G;
    const int row0 = mt * BM;
    if (row0 >= rows) return;
    const int hkv = p.pack_gqa ? hy : hy / p.group;

    /* Block-wide key range, and the part of it every row of the block sees in full. */
    const int i_first = row0 / G, i_last = min((row0 + BM - 1) / G, sq - 1);
    const int lo_min = fa__cu_lo(p, i_first, sq, sk), lo_max = fa__cu_lo(p, i_last, sq, sk);
    const int hi_min = fa__cu_hi(p, i_first, sq, sk), hi_max = fa__cu_hi(p, i_last, sq, sk);
    int n_beg = 0, n_end = 0;
    if (hi_max >= lo_min) {
        n_beg = lo_min / BN;
        n_end = hi_max / BN + 1;
    }
    if (p.num_splits > 1) {
        int per = (n_end - n_beg + p.num_splits - 1) / p.num_splits;
        int a = n_beg + split * per;
        n_end = min(n_end, a + per);
        n_beg = min(a, n_end);
    }

    /* This thread's two rows (r and r + 8 of its warp's 16). */
    int r_i[2], r_h[2], r_lo[2], r_hi[2], r_diag[2];
    float r_slope[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        int R = row0 + warp * 16 + (lane >> 2) + rr * 8;
        r_i[rr] = R / G;
        r_h[rr] = p.pack_gqa ? hy * G + R % G : hy;
        r_lo[rr] = fa__cu_lo(p, r_i[rr], sq, sk);
        r_hi[rr] = fa__cu_hi(p, r_i[rr], sq, sk);
        r_diag[rr] = r_i[rr] + sk - sq;
        r_slope[rr] = (MOD && p.alibi && R < rows)
                          ? p.alibi[(int64_t)b * p.alibi_sb + r_h[rr]] : 0.0f;
    }

    /* Q tile: row R of the block is query R / G of head (packed) or query R of head hy. */
    for (int c = tid; c < BM * CH; c += NT) {
        int r = c / CH, cc = c % CH, R = row0 + r;
        bool ok = R < rows && cc * 8 < p.dqk;
        const T *src = qg;
        if (ok) {
            int i = R / G, h = p.pack_gqa ? hy * G + R % G : hy;
            int64_t off = p.cu_q ? (int64_t)(q_off + i) * p.q_ss
                                 : (int64_t)b * p.q_sb + (int64_t)i * p.q_ss;
            src = qg + off + (int64_t)h * p.q_sh + cc * 8;
        }
        fa__cu_cp16(sQ + r * PITCH + cc * 8, src, ok ? 16 : 0);
    }
    const int64_t k_head = (int64_t)hkv * p.k_sh, v_head = (int64_t)hkv * p.v_sh;
    /* K/V tile loaders. Thread tid copies the 16-byte chunks tid, tid + NT, ... of a tile.
       When NT is a multiple of the chunks per row (every tile shape but D = 96), all of a
       thread's chunks share one column and their rows step by NT / CH, so unpaged K/V need
       one base pointer per thread, advanced by a constant per tile: the first version
       recomputed a 64-bit paged/varlen address per chunk and spent ~11 instructions per MMA. */
    constexpr bool FAST = NT % CH == 0;
    constexpr int RSTEP = FAST ? NT / CH : 1, SLOTS = FAST ? BN * CH / NT : 1;
    const int l_r0 = tid / CH, l_cc = tid % CH;
    const bool l_kcol = l_cc * 8 < p.dqk, l_vcol = l_cc * 8 < p.dv;
    const T *l_kbase = kg, *l_vbase = vg;
    const int32_t *l_table = p.block_table ? p.block_table + (int64_t)b * p.bt_stride : NULL;
    if (FAST && !p.block_table) {
        if (!p.k8) l_kbase = kg + fa__cu_kv_off(p, b, k_off, l_r0, p.k_sb, p.k_ss) + k_head + l_cc * 8;
        if (!p.v8) l_vbase = vg + fa__cu_kv_off(p, b, k_off, l_r0, p.v_sb, p.v_ss) + v_head + l_cc * 8;
    }
    /* FP8 K/V: 8 bytes -> 8 elements of T per chunk, through registers (plain loads, so these
       tiles are not asynchronous; only the MOD kernels carry this path). */
    auto load_fp8 = [&](int n, T *dst, const void *g, int64_t sb, int64_t ss, int64_t head,
                        int ncols, int kind) {
        for (int c = tid; c < BN * CH; c += NT) {
            int r = c / CH, cc = c % CH, t = n * BN + r;
            uint4 out = make_uint4(0u, 0u, 0u, 0u);
            if (t < sk && cc * 8 < ncols) {
                const uint2 raw = *reinterpret_cast<const uint2 *>(
                    reinterpret_cast<const uint8_t *>(g) + fa__cu_kv_off(p, b, k_off, t, sb, ss) +
                    head + cc * 8);
                uint32_t w[4];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    uint32_t word = e < 2 ? raw.x : raw.y, sh = (e & 1) * 16;
                    w[e] = fa__cu_pair<T>::pack(fa__cu_fp8((word >> sh) & 0xffu, kind),
                                                fa__cu_fp8((word >> (sh + 8)) & 0xffu, kind));
                }
                out = make_uint4(w[0], w[1], w[2], w[3]);
            }
            *reinterpret_cast<uint4 *>(dst + r * PITCH + cc * 8) = out;
        }
    };
    auto load_kv = [&](int n, T *dst, const T *g, const T *base, int64_t sb, int64_t ss,
                       int64_t head, bool colok, int ncols) {
        if (FAST && !p.block_table) {
            const T *src = base + (int64_t)n * BN * ss;
            const int64_t step = (int64_t)RSTEP * ss;
            T *d0 = dst + l_r0 * PITCH + l_cc * 8;
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                bool ok = colok && n * BN + l_r0 + k * RSTEP < sk;
                fa__cu_cp16(d0 + k * RSTEP * PITCH, ok ? src : g, ok ? 16 : 0);
                src += step;
            }
        } else if (FAST) { /* paged: one page lookup per row */
            T *d0 = dst + l_r0 * PITCH + l_cc * 8;
            const int64_t col = head + l_cc * 8;
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                const int t = n * BN + l_r0 + k * RSTEP;
                const bool ok = colok && t < sk;
                const T *src = g;
                if (ok) {
                    int page = l_table[t / p.page_size];
                    page = page < 0 ? 0 : (page >= p.num_pages ? p.num_pages - 1 : page);
                    src = g + (int64_t)page * sb + (int64_t)(t % p.page_size) * ss + col;
                }
                fa__cu_cp16(d0 + k * RSTEP * PITCH, src, ok ? 16 : 0);
            }
        } else {
            for (int c = tid; c < BN * CH; c += NT) {
                int r = c / CH, cc = c % CH, t = n * BN + r;
                bool ok = t < sk && cc * 8 < ncols;
                const T *src = ok ? g + fa__cu_kv_off(p, b, k_off, t, sb, ss) + head + cc * 8 : g;
                fa__cu_cp16(dst + r * PITCH + cc * 8, src, ok ? 16 : 0);
            }
        }
    };
    auto load_k = [&](int n, T *dst) {
        if (MOD && p.k8) load_fp8(n, dst, p.k, p.k_sb, p.k_ss, k_head, p.dqk, p.k8);
        else load_kv(n, dst, kg, l_kbase, p.k_sb, p.k_ss, k_head, l_kcol, p.dqk);
    };
    auto load_v = [&](int n, T *dst) {
        if (MOD && p.v8) load_fp8(n, dst, p.v, p.v_sb, p.v_ss, v_head, p.dv, p.v8);
        else load_kv(n, dst, vg, l_vbase, p.v_sb, p.v_ss, v_head, l_vcol, p.dv);
    };
    /* Dequant multipliers of this block's KV head (value = stored * scale, 0 means 1, as in
       the CPU library): K's folds into the softmax scale, V's into the output. */
    float blk_scale = p.scale, blk_vscale = 1.0f;
    if (MOD) {
        float ks = p.k_head_scale ? p.k_head_scale[hkv] : p.k_scale;
        float vs = p.v_head_scale ? p.v_head_scale[hkv] : p.v_scale;
        blk_scale = p.scale * (ks == 0.0f ? 1.0f : ks);
        blk_vscale = vs == 0.0f ? 1.0f : vs;
    }
    /* Pipeline: tile n's K and V travel in one cp.async group, STAGES - 1 tiles ahead of the
       tile being computed (group 0 also carries Q). */
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (n_beg + st < n_end) {
            load_k(n_beg + st, sK + st * BN * PITCH);
            load_v(n_beg + st, sV + st * BN * PITCH);
        }
        fa__cu_cp_commit();
    }

    const bool active = row0 + warp * 16 < rows; /* warp-uniform: has at least one live row */
    const T *sQw = sQ + warp * 16 * PITCH;
    uint32_t qf[QREG ? D / 16 : 1][4];
    float acc[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};

    fa__cu_cp_wait<STAGES - 2>();
    __syncthreads();
    if (QREG && active) {
#pragma unroll
        for (int kk = 0; kk < (QREG ? D / 16 : 1); ++kk)
            fa__cu_ldsm4(qf[kk], sQw + (lane & 15) * PITCH + kk * 16 + (lane >> 4) * 8);
    }

    int buf = 0, nbuf = STAGES - 1; /* stage of tile n, stage tile n + STAGES - 1 goes to */
    for (int n = n_beg; n < n_end; ++n) {
        const T *sKb = sK + buf * BN * PITCH, *sVb = sV + buf * BN * PITCH;
        fa__cu_cp_wait<STAGES - 2>(); /* tile n has landed */
        __syncthreads(); /* ... for every thread, and every warp is done with tile n - 1 */
        if (n + STAGES - 1 < n_end) {
            load_k(n + STAGES - 1, sK + nbuf * BN * PITCH);
            load_v(n + STAGES - 1, sV + nbuf * BN * PITCH);
        }
        fa__cu_cp_commit();
        buf = buf + 1 == STAGES ? 0 : buf + 1;
        nbuf = nbuf + 1 == STAGES ? 0 : nbuf + 1;

        float s[BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
        if (active) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                uint32_t a[4];
                if (QREG) {
                    a[0] = qf[QREG ? kk : 0][0]; a[1] = qf[QREG ? kk : 0][1];
                    a[2] = qf[QREG ? kk : 0][2]; a[3] = qf[QREG ? kk : 0][3];
                } else {
                    fa__cu_ldsm4(a, sQw + (lane & 15) * PITCH + kk * 16 + (lane >> 4) * 8);
                }
#pragma unroll
                for (int np = 0; np < BN / 16; ++np) {
                    uint32_t bk[4];
                    fa__cu_ldsm4(bk, sKb + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * PITCH +
                                         kk * 16 + ((lane >> 3) & 1) * 8);
                    fa__cu_mma<T>::run(s[2 * np], a, bk[0], bk[1]);
                    fa__cu_mma<T>::run(s[2 * np + 1], a, bk[2], bk[3]);
                }
            }
        }

        uint32_t pf[BN / 16][4];
        if (active) {
            const int j0 = n * BN;
            const bool full = j0 >= lo_max && j0 + BN - 1 <= hi_min;
            /* MOD: x becomes the logit in log2 units. Plain: x stays the raw dot product
               (scale_log2 > 0 is folded into the exponent's FFMA below). */
            if (MOD) {
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const int rr = c >> 1, j = j0 + nt * 8 + (lane & 3) * 2 + (c & 1);
                        float x = s[nt][c] * blk_scale;
                        if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
                        x -= r_slope[rr] * fabsf((float)(r_diag[rr] - j));
                        s[nt][c] = x * FA__CU_LOG2E;
                    }
            }
            /* Per-element masking only on tiles that some row sees in part (a real branch:
               fused into the loop above, the compiler predicated ~150 instructions per tile
               onto every tile). */
            if (!full) {
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const int rr = c >> 1, j = j0 + nt * 8 + (lane & 3) * 2 + (c & 1);
                        if (j < r_lo[rr] || j > r_hi[rr]) s[nt][c] = -INFINITY;
                    }
            }
            float alpha[2];
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt)
                    mx = fmaxf(mx, fmaxf(s[nt][2 * rr], s[nt][2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float sc = MOD ? 1.0f : p.scale_log2;
                if (!MOD) mx *= sc;
                const float m_new = fmaxf(m_r[rr], mx);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no (-inf) - (-inf) */
                alpha[rr] = fa__cu_exp2(m_r[rr] - m_use);
                m_r[rr] = m_new;
                float sum = 0.0f;
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt) {
                    s[nt][2 * rr] = fa__cu_exp2(fmaf(s[nt][2 * rr], sc, -m_use));
                    s[nt][2 * rr + 1] = fa__cu_exp2(fmaf(s[nt][2 * rr + 1], sc, -m_use));
                    sum += s[nt][2 * rr] + s[nt][2 * rr + 1];
                }
                l_r[rr] = l_r[rr] * alpha[rr] + sum; /* per-thread partial; quad-summed at the end */
            }
            /* Once the row maxima settle, alpha is 1 for the whole warp: skip the rescale
               (exact, x * 1 == x), as FlashAttention-3 does. */
            if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt) {
                    acc[dt][0] *= alpha[0];
                    acc[dt][1] *= alpha[0];
                    acc[dt][2] *= alpha[1];
                    acc[dt][3] *= alpha[1];
                }
            }
            /* The S accumulator layout is the A-operand layout of the next product. */
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                pf[kk][0] = fa__cu_pair<T>::pack(s[2 * kk][0], s[2 * kk][1]);
                pf[kk][1] = fa__cu_pair<T>::pack(s[2 * kk][2], s[2 * kk][3]);
                pf[kk][2] = fa__cu_pair<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pf[kk][3] = fa__cu_pair<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
        }

        if (active) {
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    uint32_t bv[4];
                    fa__cu_ldsm4t(bv, sVb + (kk * 16 + (lane & 15)) * PITCH + dp * 16 +
                                          (lane >> 4) * 8);
                    fa__cu_mma<T>::run(acc[2 * dp], pf[kk], bv[0], bv[1]);
                    fa__cu_mma<T>::run(acc[2 * dp + 1], pf[kk], bv[2], bv[3]);
                }
            }
        }
    }

    /* Epilogue: O = acc / l, lse = m ln2 + ln l; a row that saw nothing gets 0 and -inf. */
    float inv[2], lse_v[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float l = l_r[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[rr] = l == 0.0f ? 0.0f : blk_vscale / l;
        lse_v[rr] = l == 0.0f ? -INFINITY : m_r[rr] * FA__CU_LN2 + logf(l);
    }
    const int col0 = (lane & 3) * 2;
    if (p.num_splits > 1) {
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            int R = row0 + warp * 16 + (lane >> 2) + rr * 8;
            if (R >= rows) continue;
            int64_t prow = (((int64_t)split * p.batch + b) * p.sq + r_i[rr]) * p.hq + r_h[rr];
            float *dst = p.o_part + prow * p.dv;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt)
                if (dt * 8 < p.dv)
                    *reinterpret_cast<float2 *>(dst + dt * 8 + col0) =
                        make_float2(acc[dt][2 * rr] * inv[rr], acc[dt][2 * rr + 1] * inv[rr]);
            if ((lane & 3) == 0)
                p.lse_part[(((int64_t)split * p.batch + b) * p.hq + r_h[rr]) * p.sq + r_i[rr]] =
                    lse_v[rr];
        }
        return;
    }
    if (p.lse && (lane & 3) == 0) {
        const int64_t lse_sh = p.lse_sh < 0 ? (int64_t)p.cu_q[p.batch] : p.lse_sh;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            int R = row0 + warp * 16 + (lane >> 2) + rr * 8;
            if (R >= rows) continue;
            int64_t off = p.cu_q ? (int64_t)(q_off + r_i[rr]) * p.lse_ss
                                 : (int64_t)b * p.lse_sb + (int64_t)r_i[rr] * p.lse_ss;
            p.lse[off + (int64_t)r_h[rr] * lse_sh] = lse_v[rr];
        }
    }
    auto o_row = [&](int i, int h) -> int64_t {
        return (p.cu_q ? (int64_t)(q_off + i) * p.o_ss : (int64_t)b * p.o_sb + (int64_t)i * p.o_ss) +
               (int64_t)h * p.o_sh;
    };
    if (p.o_f32) {
        float *og = reinterpret_cast<float *>(p.o);
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            int R = row0 + warp * 16 + (lane >> 2) + rr * 8;
            if (R >= rows) continue;
            float *dst = og + o_row(r_i[rr], r_h[rr]);
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt)
                if (dt * 8 < p.dv)
                    *reinterpret_cast<float2 *>(dst + dt * 8 + col0) =
                        make_float2(acc[dt][2 * rr] * inv[rr], acc[dt][2 * rr + 1] * inv[rr]);
        }
        return;
    }
    /* Stage the warp's 16 rows in its own (already consumed) rows of the Q tile, then write
       16-byte chunks so each row goes out in full sectors. */
    T *sO = sQ + warp * 16 * PITCH;
    __syncwarp();
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr)
            *reinterpret_cast<uint32_t *>(sO + ((lane >> 2) + rr * 8) * PITCH + dt * 8 + col0) =
                fa__cu_pair<T>::pack(acc[dt][2 * rr] * inv[rr], acc[dt][2 * rr + 1] * inv[rr]);
    __syncwarp();
    T *og = reinterpret_cast<T *>(p.o);
    for (int c = lane; c < 16 * CH; c += 32) {
        int r = c / CH, cc = c % CH, R = row0 + warp * 16 + r;
        if (R >= rows || cc * 8 >= p.dv) continue;
        int i = R / G, h = p.pack_gqa ? hy * G + R % G : hy;
        *reinterpret_cast<uint4 *>(og + o_row(i, h) + cc * 8) =
            *reinterpret_cast<const uint4 *>(sO + r * PITCH + cc * 8);
    }
#endif
}

/* ---- decode kernel -----------------------------------------------------------------------
   For at most 16 query rows per KV head (decode, speculative decode, short chunks): one block
   per (batch, KV head, key split) holds those rows (the query heads that share the KV head,
   "packed GQA", times the queries), and every warp computes. Warp w takes key tiles w, w + NW,
   w + 2 NW, ... of the block's range, each BN = 16 or 32 keys, through its own STAGES-deep
   cp.async ring (no block barrier inside the loop, so a slow warp never stalls the others),
   and keeps its own
   online softmax; at the end the warps' partial results meet in shared memory and are combined
   with the arithmetic of fa_attn_merge. The tensor-core work per 16 keys is 2 * D / 8 mma
   instructions, far below what the memory stream leaves room for: the kernel is there to keep
   enough bytes in flight (NW * (STAGES - 1) tiles per block) with every warp issuing.
   FP8 K/V: the raw bytes are copied asynchronously into the ring like any tile (half the bytes),
   and converted to T in shared memory after the wait (e4m3 with the sm_89 cvt instruction,
   e5m2 is the top byte of a half), so loads of later tiles overlap the conversion and compute. */
#define FA__CU_DEC_BN 16   /* keys per warp tile (the smallest; D = 128 may take 32) */
#define FA__CU_DEC_ROWS 16 /* query rows per block (one m16 tile) */

/* Shared memory of one warp: K and V rings (raw FP8 rows are D bytes, T rows PITCH elements)
   plus, for FP8, one converted T tile each. */
static __host__ __device__ inline int fa__cu_dec_warp_bytes(int D, int stages, int bn, int k8, int v8)
{
    const int trow = (D + 8) * 2;
    return stages * bn * ((k8 ? D : trow) + (v8 ? D : trow)) + (k8 ? bn * trow : 0) +
           (v8 ? bn * trow : 0);
}
static __host__ __device__ inline int fa__cu_dec_smem(int D, int nw, int stages, int bn, int k8, int v8)
{
    const int tiles = FA__CU_DEC_ROWS * (D + 8) * 2 + nw * fa__cu_dec_warp_bytes(D, stages, bn, k8, v8);
    const int merge = nw * FA__CU_DEC_ROWS * (D + 4) * 4 + (3 * nw + 1) * FA__CU_DEC_ROWS * 4;
    return tiles > merge ? tiles : merge;
}

/* Two FP8 values (low 16 bits of v, first value in the low byte) to a pair of T. */
static __device__ __forceinline__ uint32_t fa__cu_fp8x2_f16x2(uint32_t v, int kind)
{
    if (kind == 2) return __byte_perm(v, 0u, 0x1404u); /* e5m2 byte -> top byte of a half */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t r;
    unsigned short s = (unsigned short)(v & 0xffffu);
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(r) : "h"(s));
    return r;
#else
    __half2 h = __floats2half2_rn(fa__cu_fp8(v & 0xffu, 1), fa__cu_fp8((v >> 8) & 0xffu, 1));
    return *reinterpret_cast<uint32_t *>(&h);
#endif
}
template <typename T> struct fa__cu_fp8pair;
template <> struct fa__cu_fp8pair<__half> {
    static __device__ __forceinline__ uint32_t cvt(uint32_t v, int kind) { return fa__cu_fp8x2_f16x2(v, kind); }
};
template <> struct fa__cu_fp8pair<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t cvt(uint32_t v, int kind)
    {
        /* Every e4m3 / e5m2 value is a half, and every half of that range is a bfloat16. */
        uint32_t h = fa__cu_fp8x2_f16x2(v, kind);
        float2 f = __half22float2(*reinterpret_cast<__half2 *>(&h));
        return fa__cu_pair<__nv_bfloat16>::pack(f.x, f.y);
    }
};

/* One warp's copies of key tiles of one K or V view: ES-byte elements, rows of D elements
   (columns >= ncols and keys >= sk zero-filled), ring rows dpitch bytes. The first version
   computed a paged/varlen 64-bit address per 16-byte chunk: ~1100 instructions per 16-key
   tile, most of the kernel's time (ncu: 18 M instructions for 0.5 M HMMA, and a 175 KB loop
   that missed the instruction cache). Now a tile's base address is found once (one page
   lookup: pages hold whole tiles) and each lane adds constant offsets. */
template <int D, int ES, int BN>
struct fa__cu_dec_loader {
    static constexpr int CPR = D * ES / 16;           /* 16-byte chunks per row */
    static constexpr bool REG = 32 % CPR == 0;        /* lanes split rows evenly */
    static constexpr int RS = REG ? 32 / CPR : 1;     /* rows between a lane's chunks */
    static constexpr int NCH = BN * CPR;              /* chunks per tile */
    const unsigned char *g;
    int64_t sb, ssb, head; /* batch/page stride (elements), row stride (bytes), head offset (elements) */
    int64_t l_src;         /* this lane's first chunk, bytes from the tile's first row */
    int l_dst, l_bytes, l_row, dpitch, ncolb;

    __device__ __forceinline__ void init(const unsigned char *g_, int64_t sb_, int64_t ss_, int64_t head_,
                                         int ncols, int dpitch_, int lane)
    {
        g = g_; sb = sb_; ssb = ss_ * ES; head = head_; dpitch = dpitch_; ncolb = ncols * ES;
        const int r = REG ? lane / CPR : 0, colb = REG ? (lane % CPR) * 16 : 0;
        l_row = r;
        l_src = (int64_t)r * ssb + colb;
        l_dst = r * dpitch + colb;
        const int left = ncolb - colb;
        l_bytes = left <= 0 ? 0 : (left < 16 ? left : 16);
    }
    /* Byte address of key t0 (a multiple of BN) of sequence b. */
    __device__ __forceinline__ const unsigned char *tile(const fa__cu_fwd_params &p, const int32_t *table,
                                                         int b, int k_off, int t0) const
    {
        int64_t off;
        if (table) {
            int page = table[t0 / p.page_size];
            page = page < 0 ? 0 : (page >= p.num_pages ? p.num_pages - 1 : page);
            off = (int64_t)page * sb + (int64_t)(t0 % p.page_size) * (ssb / ES);
        } else if (p.cu_k) {
            off = (int64_t)(k_off + t0) * (ssb / ES);
        } else {
            off = (int64_t)b * sb + (int64_t)t0 * (ssb / ES);
        }
        return g + (off + head) * ES;
    }
    __device__ __forceinline__ void load(const unsigned char *tb, unsigned char *slot, int t0, int sk, int lane) const
    {
        if (REG) {
            const unsigned char *src = tb + l_src;
            unsigned char *dst = slot + l_dst;
#pragma unroll
            for (int k = 0; k < NCH / 32; ++k) {
                const bool ok = t0 + l_row + k * RS < sk;
                fa__cu_cp16(dst + k * RS * dpitch, ok ? src + (int64_t)k * RS * ssb : g, ok ? l_bytes : 0);
            }
        } else {
#pragma unroll
            for (int c0 = 0; c0 < NCH; c0 += 32) {
                const int c = c0 + lane;
                if (c < NCH) {
                    const int r = c / CPR, colb = (c % CPR) * 16, left = ncolb - colb;
                    const bool ok = t0 + r < sk && left > 0;
                    fa__cu_cp16(slot + r * dpitch + colb, ok ? tb + (int64_t)r * ssb + colb : g,
                                ok ? (left < 16 ? left : 16) : 0);
                }
            }
        }
    }
};

/* One warp converts a raw FP8 tile [BN][D] bytes into a T tile [BN][D + 8]. */
template <typename T, int D, int BN>
static __device__ __forceinline__ void fa__cu_dec_cvt(const unsigned char *raw, T *dst, int kind, int lane)
{
    constexpr int CPR = D / 16, CHUNKS = BN * CPR;
#pragma unroll
    for (int c0 = 0; c0 < CHUNKS; c0 += 32) {
        const int c = c0 + lane;
        if (CHUNKS % 32 == 0 || c < CHUNKS) {
            const int r = c / CPR, cc = c % CPR;
            const uint4 w = *reinterpret_cast<const uint4 *>(raw + r * D + cc * 16);
            uint4 o0, o1;
            o0.x = fa__cu_fp8pair<T>::cvt(w.x, kind); o0.y = fa__cu_fp8pair<T>::cvt(w.x >> 16, kind);
            o0.z = fa__cu_fp8pair<T>::cvt(w.y, kind); o0.w = fa__cu_fp8pair<T>::cvt(w.y >> 16, kind);
            o1.x = fa__cu_fp8pair<T>::cvt(w.z, kind); o1.y = fa__cu_fp8pair<T>::cvt(w.z >> 16, kind);
            o1.z = fa__cu_fp8pair<T>::cvt(w.w, kind); o1.w = fa__cu_fp8pair<T>::cvt(w.w >> 16, kind);
            uint4 *d = reinterpret_cast<uint4 *>(dst + r * (D + 8) + cc * 16);
            d[0] = o0;
            d[1] = o1;
        }
    }
}

template <typename T, int D, int NW, int STAGES, int BN, bool F8>
__global__ void __launch_bounds__(NW * 32)
fa__cu_dec_kernel(const fa__cu_fwd_params p)
{
#ifdef FA__CU_SM80
    constexpr int NB = BN / 8, PITCH = D + 8, NT = NW * 32, CH = D / 8;
    constexpr bool QREG = D <= 128;
#if __CUDA_ARCH__ >= 900
    /* The merge kernel (launched with programmatic stream serialization) may start its
       launch now; it waits for this grid's results with griddepcontrol.wait. */
    asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
    T *sQ = reinterpret_cast<T *>(fa__cu_smem);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int split = blockIdx.x, hy = blockIdx.y, b = blockIdx.z;

    int q_off = 0, sq = p.sq, k_off = 0, sk = p.sk;
    if (p.cu_q) {
        q_off = p.cu_q[b];
        sq = min(max(p.cu_q[b + 1] - q_off, 0), p.sq);
    }
    if (p.cu_k) {
        k_off = p.cu_k[b];
        sk = max(p.cu_k[b + 1] - k_off, 0);
    }
    if (p.seqused_k) sk = min(sk, max(p.seqused_k[b], 0));
    const int G = p.pack_gqa ? p.group : 1;
    const int rows = min(sq * G, FA__CU_DEC_ROWS);
    if (rows <= 0) return; /* whole block: no barrier reached */
    const int hkv = p.pack_gqa ? hy : hy / p.group;

    /* Key tiles of this split: the block's visible range cut into near-equal parts. */
    const int i_last = (rows - 1) / G;
    const int lo_min = fa__cu_lo(p, 0, sq, sk), lo_max = fa__cu_lo(p, i_last, sq, sk);
    const int hi_min = fa__cu_hi(p, 0, sq, sk), hi_max = fa__cu_hi(p, i_last, sq, sk);
    int n_beg = 0, n_end = 0;
    if (hi_max >= lo_min) {
        const int a = lo_min / BN, e = hi_max / BN + 1;
        n_beg = a + (int)((int64_t)(e - a) * split / p.num_splits);
        n_end = a + (int)((int64_t)(e - a) * (split + 1) / p.num_splits);
    }

    /* This thread's two rows (r and r + 8 of the 16); rows >= rows see nothing. */
    int r_i[2], r_h[2], r_lo[2], r_hi[2], r_diag[2];
    float r_slope[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int R = (lane >> 2) + rr * 8;
        r_i[rr] = R / G;
        r_h[rr] = p.pack_gqa ? hy * G + R % G : hy;
        r_lo[rr] = R < rows ? fa__cu_lo(p, r_i[rr], sq, sk) : 0;
        r_hi[rr] = R < rows ? fa__cu_hi(p, r_i[rr], sq, sk) : -1;
        r_diag[rr] = r_i[rr] + sk - sq;
        r_slope[rr] = (p.alibi && R < rows) ? p.alibi[(int64_t)b * p.alibi_sb + r_h[rr]] : 0.0f;
    }

    /* Q tile (all threads; travels in the first cp.async group). */
    const T *qg = reinterpret_cast<const T *>(p.q);
    for (int c = tid; c < FA__CU_DEC_ROWS * CH; c += NT) {
        const int r = c / CH, cc = c % CH;
        const bool ok = r < rows && cc * 8 < p.dqk;
        const T *src = qg;
        if (ok) {
            const int i = r / G, h = p.pack_gqa ? hy * G + r % G : hy;
            const int64_t off = p.cu_q ? (int64_t)(q_off + i) * p.q_ss
                                       : (int64_t)b * p.q_sb + (int64_t)i * p.q_ss;
            src = qg + off + (int64_t)h * p.q_sh + cc * 8;
        }
        fa__cu_cp16(sQ + r * PITCH + cc * 8, src, ok ? 16 : 0);
    }

    /* This warp's ring (F8: K and V both FP8, raw rows of D bytes; else rows of PITCH T). */
    constexpr int ES = F8 ? 1 : 2, RPB = F8 ? D : PITCH * 2; /* element size, bytes per ring row */
    unsigned char *ringK = fa__cu_smem + FA__CU_DEC_ROWS * PITCH * 2 +
                           warp * fa__cu_dec_warp_bytes(D, STAGES, BN, F8, F8);
    unsigned char *ringV = ringK + STAGES * BN * RPB;
    T *cvtK = reinterpret_cast<T *>(ringV + STAGES * BN * RPB);
    T *cvtV = cvtK + BN * PITCH;
    const int32_t *table = p.block_table ? p.block_table + (int64_t)b * p.bt_stride : NULL;
    fa__cu_dec_loader<D, ES, BN> lk, lv;
    lk.init(reinterpret_cast<const unsigned char *>(p.k), p.k_sb, p.k_ss, (int64_t)hkv * p.k_sh, p.dqk, RPB, lane);
    lv.init(reinterpret_cast<const unsigned char *>(p.v), p.v_sb, p.v_ss, (int64_t)hkv * p.v_sh, p.dv, RPB, lane);
    const int ntiles = n_end - n_beg;
    const int mine = ntiles > warp ? (ntiles - warp + NW - 1) / NW : 0;
    auto load = [&](int it, int st) {
        const int t0 = (n_beg + warp + it * NW) * BN;
        lk.load(lk.tile(p, table, b, k_off, t0), ringK + st * BN * RPB, t0, sk, lane);
        lv.load(lv.tile(p, table, b, k_off, t0), ringV + st * BN * RPB, t0, sk, lane);
    };
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < mine) load(st, st);
        fa__cu_cp_commit();
    }

    /* Dequant multipliers of this KV head (0 means 1): K's into the softmax scale, V's into
       the output. */
    float ks = p.k_head_scale ? p.k_head_scale[hkv] : p.k_scale;
    float vs = p.v_head_scale ? p.v_head_scale[hkv] : p.v_scale;
    const float blk_scale = p.scale * (ks == 0.0f ? 1.0f : ks);
    const float blk_vscale = vs == 0.0f ? 1.0f : vs;
    const float scale_l2 = blk_scale * FA__CU_LOG2E;

    uint32_t qf[QREG ? D / 16 : 1][4];
    float acc[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};

    fa__cu_cp_wait<STAGES - 2>();
    __syncthreads(); /* Q is in for every warp */
    if (QREG) {
#pragma unroll
        for (int kk = 0; kk < (QREG ? D / 16 : 1); ++kk)
            fa__cu_ldsm4(qf[kk], sQ + (lane & 15) * PITCH + kk * 16 + (lane >> 4) * 8);
    }

    int st = 0, nst = STAGES - 1;
    for (int it = 0; it < mine; ++it) {
        fa__cu_cp_wait<STAGES - 2>(); /* this lane's part of tile it has landed */
        __syncwarp();                 /* ... every lane's, and the ring slot nst is free */
        if (it + STAGES - 1 < mine) load(it + STAGES - 1, nst);
        fa__cu_cp_commit();
        const T *sKb = reinterpret_cast<const T *>(ringK + st * BN * RPB);
        const T *sVb = reinterpret_cast<const T *>(ringV + st * BN * RPB);
        if (F8) {
            fa__cu_dec_cvt<T, D, BN>(ringK + st * BN * RPB, cvtK, p.k8, lane);
            fa__cu_dec_cvt<T, D, BN>(ringV + st * BN * RPB, cvtV, p.v8, lane);
            __syncwarp();
            sKb = cvtK;
            sVb = cvtV;
        }
        st = st + 1 == STAGES ? 0 : st + 1;
        nst = nst + 1 == STAGES ? 0 : nst + 1;

        /* S = Q K^T, NB n8 tiles of keys. With 16-key tiles, even and odd k-steps go to
           separate accumulators (half the dependent HMMA chain; the warp has nothing else to
           issue meanwhile); 32-key tiles have four independent chains already. */
        float s[NB][4], s2[NB][4];
#pragma unroll
        for (int nt = 0; nt < NB; ++nt)
#pragma unroll
            for (int c = 0; c < 4; ++c) s[nt][c] = s2[nt][c] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t a[4];
            if (QREG) {
                a[0] = qf[QREG ? kk : 0][0]; a[1] = qf[QREG ? kk : 0][1];
                a[2] = qf[QREG ? kk : 0][2]; a[3] = qf[QREG ? kk : 0][3];
            } else {
                fa__cu_ldsm4(a, sQ + (lane & 15) * PITCH + kk * 16 + (lane >> 4) * 8);
            }
#pragma unroll
            for (int kg = 0; kg < BN / 16; ++kg) {
                uint32_t bk[4];
                fa__cu_ldsm4(bk, sKb + (kg * 16 + (lane & 7) + ((lane >> 4) << 3)) * PITCH + kk * 16 +
                                     ((lane >> 3) & 1) * 8);
                fa__cu_mma<T>::run(BN == 16 && (kk & 1) ? s2[2 * kg] : s[2 * kg], a, bk[0], bk[1]);
                fa__cu_mma<T>::run(BN == 16 && (kk & 1) ? s2[2 * kg + 1] : s[2 * kg + 1], a, bk[2], bk[3]);
            }
        }
        if (BN == 16) {
#pragma unroll
            for (int nt = 0; nt < NB; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] += s2[nt][c];
        }

        /* Logits in log2 units (scale, softcap, ALiBi), masking on tiles some row sees in part,
           online softmax: the generic path of the tile kernel. */
        const int j0 = (n_beg + warp + it * NW) * BN;
        if (p.softcap > 0.0f || p.alibi) {
#pragma unroll
            for (int nt = 0; nt < NB; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int rr = c >> 1, j = j0 + nt * 8 + (lane & 3) * 2 + (c & 1);
                    float x = s[nt][c] * blk_scale;
                    if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
                    if (p.alibi) x -= r_slope[rr] * fabsf((float)(r_diag[rr] - j));
                    s[nt][c] = x * FA__CU_LOG2E;
                }
        } else {
#pragma unroll
            for (int nt = 0; nt < NB; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] *= scale_l2;
        }
        if (!(j0 >= lo_max && j0 + BN - 1 <= hi_min)) { /* rows >= rows need no mask: never written */
#pragma unroll
            for (int nt = 0; nt < NB; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int rr = c >> 1, j = j0 + nt * 8 + (lane & 3) * 2 + (c & 1);
                    if (j < r_lo[rr] || j > r_hi[rr]) s[nt][c] = -INFINITY;
                }
        }
        float alpha[2];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float mx = fmaxf(s[0][2 * rr], s[0][2 * rr + 1]);
#pragma unroll
            for (int nt = 1; nt < NB; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * rr], s[nt][2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m_r[rr], mx);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no (-inf) - (-inf) */
            alpha[rr] = fa__cu_exp2(m_r[rr] - m_use);
            m_r[rr] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NB; ++nt) {
                s[nt][2 * rr] = fa__cu_exp2(s[nt][2 * rr] - m_use);
                s[nt][2 * rr + 1] = fa__cu_exp2(s[nt][2 * rr + 1] - m_use);
                sum += s[nt][2 * rr] + s[nt][2 * rr + 1];
            }
            l_r[rr] = l_r[rr] * alpha[rr] + sum;
        }
        if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                acc[dt][0] *= alpha[0];
                acc[dt][1] *= alpha[0];
                acc[dt][2] *= alpha[1];
                acc[dt][3] *= alpha[1];
            }
        }
#pragma unroll
        for (int kg = 0; kg < BN / 16; ++kg) { /* O += P V, 16 keys per k-step */
            uint32_t pf[4];
            pf[0] = fa__cu_pair<T>::pack(s[2 * kg][0], s[2 * kg][1]);
            pf[1] = fa__cu_pair<T>::pack(s[2 * kg][2], s[2 * kg][3]);
            pf[2] = fa__cu_pair<T>::pack(s[2 * kg + 1][0], s[2 * kg + 1][1]);
            pf[3] = fa__cu_pair<T>::pack(s[2 * kg + 1][2], s[2 * kg + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t bv[4];
                fa__cu_ldsm4t(bv, sVb + (kg * 16 + (lane & 15)) * PITCH + dp * 16 + (lane >> 4) * 8);
                fa__cu_mma<T>::run(acc[2 * dp], pf, bv[0], bv[1]);
                fa__cu_mma<T>::run(acc[2 * dp + 1], pf, bv[2], bv[3]);
            }
        }
    }

    /* The warps' parts meet in shared memory (over the rings): per row and warp the running
       max m (log2 units), the sum l and the unnormalised output. */
    fa__cu_cp_wait<0>();
    __syncthreads();
    constexpr int OP = D + 4; /* float pitch of a part row */
    float *sO = reinterpret_cast<float *>(fa__cu_smem);
    float *sM = sO + NW * FA__CU_DEC_ROWS * OP, *sL = sM + NW * FA__CU_DEC_ROWS;
    float *sC = sL + NW * FA__CU_DEC_ROWS, *s_lse = sC + NW * FA__CU_DEC_ROWS;
    const int col0 = (lane & 3) * 2;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int R = (lane >> 2) + rr * 8;
        float l = l_r[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        if ((lane & 3) == 0) {
            sM[warp * FA__CU_DEC_ROWS + R] = m_r[rr];
            sL[warp * FA__CU_DEC_ROWS + R] = l;
        }
        float *dst = sO + (warp * FA__CU_DEC_ROWS + R) * OP + col0;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<float2 *>(dst + dt * 8) = make_float2(acc[dt][2 * rr], acc[dt][2 * rr + 1]);
    }
    __syncthreads();
    /* Per row: each warp's part has lse_w = m_w + log2 l_w (-inf when it saw nothing, NaN
       when a logit was NaN); weights 2^(lse_w - max) as in fa_attn_merge, parts of weight 0
       skipped, NaN anywhere making the row NaN. sC[w][r] = weight_w / (l_w * sum of weights). */
    if (tid < rows) {
        float lw[NW], M = -INFINITY;
        int nan = 0;
#pragma unroll
        for (int w = 0; w < NW; ++w) {
            const float l = sL[w * FA__CU_DEC_ROWS + tid];
            lw[w] = l == 0.0f ? -INFINITY : sM[w * FA__CU_DEC_ROWS + tid] + __log2f(l);
            if (lw[w] != lw[w]) nan = 1;
            else M = fmaxf(M, lw[w]);
        }
        if (nan) M = NAN;
        float wsum = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < NW; ++w) wsum += fa__cu_exp2(lw[w] - M);
        }
#pragma unroll
        for (int w = 0; w < NW; ++w) {
            float c = M == -INFINITY ? 0.0f : fa__cu_exp2(lw[w] - M);
            if (c != 0.0f) c = c / (sL[w * FA__CU_DEC_ROWS + tid] * wsum) * blk_vscale;
            sC[w * FA__CU_DEC_ROWS + tid] = c;
        }
        s_lse[tid] = M == -INFINITY ? -INFINITY : (M + __log2f(wsum)) * FA__CU_LN2;
    }
    __syncthreads();

    const int dv = p.dv;
    /* Row r's output element d and (d == 0) its LSE, natural log units. */
    auto store = [&](int r, int d, float o, float lse) {
        const int i = r / G, h = p.pack_gqa ? hy * G + r % G : hy;
        const int64_t orow = (p.cu_q ? (int64_t)(q_off + i) * p.o_ss
                                     : (int64_t)b * p.o_sb + (int64_t)i * p.o_ss) +
                             (int64_t)h * p.o_sh;
        if (p.o_f32) reinterpret_cast<float *>(p.o)[orow + d] = o;
        else {
            const uint32_t pr = fa__cu_pair<T>::pack(o, 0.0f);
            reinterpret_cast<unsigned short *>(p.o)[orow + d] = (unsigned short)(pr & 0xffffu);
        }
        if (d == 0 && p.lse) {
            const int64_t lse_sh = p.lse_sh < 0 ? (int64_t)p.cu_q[p.batch] : p.lse_sh;
            const int64_t off = p.cu_q ? (int64_t)(q_off + i) * p.lse_ss
                                       : (int64_t)b * p.lse_sb + (int64_t)i * p.lse_ss;
            p.lse[off + (int64_t)h * lse_sh] = lse;
        }
    };
    for (int idx = tid; idx < rows * dv; idx += NT) {
        const int r = idx / dv, d = idx - r * dv;
        const int i = r / G, h = p.pack_gqa ? hy * G + r % G : hy;
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) {
            const float c = sC[w * FA__CU_DEC_ROWS + r];
            if (c != 0.0f) o += c * sO[(w * FA__CU_DEC_ROWS + r) * OP + d];
        }
        if (p.num_splits > 1) {
            const int64_t prow = (((int64_t)split * p.batch + b) * p.sq + i) * p.hq + h;
            p.o_part[prow * dv + d] = o;
            if (d == 0) p.lse_part[(((int64_t)split * p.batch + b) * p.hq + h) * p.sq + i] = s_lse[r];
            continue;
        }
        store(r, d, o, s_lse[r]);
    }
#endif
}

/* ---- merge kernel: one thread per output element ---------------------------------------- */
static __device__ __forceinline__ float fa__cu_ld(const void *p, int type, int64_t i)
{
    if (type == FA_F32) return reinterpret_cast<const float *>(p)[i];
    if (type == FA_F16) return __half2float(reinterpret_cast<const __half *>(p)[i]);
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
}
static __device__ __forceinline__ void fa__cu_st(void *p, int type, int64_t i, float x)
{
    if (type == FA_F32) reinterpret_cast<float *>(p)[i] = x;
    else if (type == FA_F16) reinterpret_cast<__half *>(p)[i] = __float2half_rn(x);
    else reinterpret_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(x);
}

/* Launched after a forward kernel with programmatic stream serialization (sm_90): its launch
   overlaps the forward's tail, and griddepcontrol.wait holds it until the forward's writes are
   visible. One thread per output element; the split loop has no data-dependent branch, so its
   loads are independent and can be in flight together (the first version, a warp per row
   skipping empty parts, waited on one L2 round trip per split). */
__global__ void __launch_bounds__(256) fa__cu_merge_kernel(const fa__cu_merge_params p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t row = idx / p.dv;
    const int d = (int)(idx - row * p.dv);
    if (row >= (int64_t)p.batch * p.seqlen * p.heads) return;
    const int h = (int)(row % p.heads);
    const int s = (int)((row / p.heads) % p.seqlen);
    const int b = (int)(row / ((int64_t)p.heads * p.seqlen));
    int64_t o_off, l_off;
    if (p.cu_q) {
        int q_off = p.cu_q[b];
        if (s >= p.cu_q[b + 1] - q_off) return;
        int64_t l_sh = p.l_sh < 0 ? (int64_t)p.cu_q[p.batch] : p.l_sh;
        o_off = (int64_t)(q_off + s) * p.o_ss + (int64_t)h * p.o_sh;
        l_off = (int64_t)(q_off + s) * p.l_ss + (int64_t)h * l_sh;
    } else {
        o_off = (int64_t)b * p.o_sb + (int64_t)s * p.o_ss + (int64_t)h * p.o_sh;
        l_off = (int64_t)b * p.l_sb + (int64_t)s * p.l_ss + (int64_t)h * p.l_sh;
    }
    const float *lp = p.lse_parts + (int64_t)b * p.lp_sb + (int64_t)s * p.lp_ss + (int64_t)h * p.lp_sh;
    const int64_t op0 = (int64_t)b * p.op_sb + (int64_t)s * p.op_ss + (int64_t)h * p.op_sh + d;

    /* The arithmetic of fa_attn_merge: weights exp(lse_i - max), parts whose weight is 0
       (empty, or negligible) skipped (their o may be anything), NaN anywhere in the LSEs
       making the row NaN. */
    float m = -INFINITY;
    int nan = 0;
#pragma unroll 8
    for (int sp = 0; sp < p.num_splits; ++sp) {
        const float x = lp[sp * p.lp_split];
        if (x != x) nan = 1;
        else m = fmaxf(m, x);
    }
    if (nan) m = NAN;
    float wsum = 0.0f, o = 0.0f;
    if (m != -INFINITY) {
#pragma unroll 8
        for (int sp = 0; sp < p.num_splits; ++sp) {
            const float w = expf(lp[sp * p.lp_split] - m);
            const float x = fa__cu_ld(p.o_parts, p.op_type, op0 + sp * p.op_split);
            wsum += w;
            o += w == 0.0f ? 0.0f : w * x;
        }
        o /= wsum;
    }
    fa__cu_st(p.o, p.o_type, o_off + d, o);
    if (p.lse && d == 0) p.lse[l_off] = m == -INFINITY ? -INFINITY : m + logf(wsum);
}

/* ---- host side ------------------------------------------------------------------------- */

static fa_status fa__cu_err(cudaError_t e, const char *what)
{
    return fa__fail(FA_ERR_CUDA, "%s: %s", what, cudaGetErrorString(e));
}

static int fa__cu_aligned(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Per-device facts read once: a decode step is ~60 us of GPU time, and the attribute queries
   plus cudaFuncSetAttribute on every call cost a third of that on the host (H100, measured
   85 us end to end against 63 us of kernel). */
#define FA__CU_MAX_DEVICES 64
static int fa__cu_dev_cc[FA__CU_MAX_DEVICES], fa__cu_dev_sms[FA__CU_MAX_DEVICES];

/* The forward's plan: resolved parameters, tile shape and grid. */
typedef struct fa__cu_plan {
    fa__cu_fwd_params p;
    int dpad, bn, bm, mod, bf16, splits;
    dim3 grid;
    size_t ws_bytes;
    int dec, dec_nw, dec_stages, dec_bn, dec_smem, cc; /* decode kernel: on, warps, stages, keys per warp tile, smem bytes */
} fa__cu_plan;

/* Decode kernel shape (warps x ring stages x keys per warp tile): 0 = the default, -1 = never
   take the decode path, 1.. = the A/B shapes below at D = 128 (for bench/bench_cuda.cu; not an
   API; 4 = 4 warps x 3 stages of 32-key tiles). 32-key tiles need pages of a multiple of 32
   keys; otherwise 16-key tiles run. On an H100, decode shape, 16 splits, three rounds in one
   run (GB/s): 4x4 2070/2085/2105, 4x3 2057/2088/2090, 8x2 2041/2055/2066, 8x3 2042/2081/2081,
   4x3 with 32-key tiles 2059/2078/2083: a tie, so bf16/f16 keep 4x4. FP8 K/V (D = 128) take
   the 32-key shape: 1183/1178 GB/s of FP8 bytes against 1040/1045 for 4x4 (half the bytes per
   key, so the per-tile work weighs double and 32-key tiles halve it per byte). */
static int fa__cu_dec_variant = 0;
static void fa__cu_dec_shape(int dpad, int allow32, int fp8, int *nw, int *stages, int *bn)
{
    *nw = 4;
    *stages = 3;
    *bn = FA__CU_DEC_BN;
    if (dpad != 128) return;
    if ((fa__cu_dec_variant == 4 || (fa__cu_dec_variant == 0 && fp8)) && allow32) {
        /* 4 warps x 3 stages of 32-key tiles */
        *bn = 32;
        return;
    }
    *stages = 4;
    if (fa__cu_dec_variant == 1) *stages = 3;
    if (fa__cu_dec_variant == 2) { *nw = 8; *stages = 2; }
    if (fa__cu_dec_variant == 3) { *nw = 8; *stages = 3; }
}
static int fa__cu_dev_smem_blk[FA__CU_MAX_DEVICES];

/* The decode kernel's plan, when it applies: at most 16 query rows per KV head (packed GQA),
   K and V both FP8 with strides that keep 16-byte copies aligned or neither FP8, pages of a
   multiple of 16 keys, and shared memory that fits. Returns 0 (the tile kernel's plan
   continues) otherwise. Split-KV aims at one block per SM. */
static int fa__cu_dec_plan(const fa_attn_desc *d, fa__cu_plan *pl, int64_t group, int64_t hkv,
                           int cc_major, int num_sm, int dev)
{
    fa__cu_fwd_params *p = &pl->p;
    int nw, stages, bn, smem, smem_blk = 0;
    int64_t hy, blocks, ktiles, splits = 1;
    pl->dec = 0;
    if (fa__cu_dec_variant < 0 || dev < 0 || dev >= FA__CU_MAX_DEVICES) return 0;
    if ((group > 1 ? d->seqlen_q * group : d->seqlen_q) > FA__CU_DEC_ROWS) return 0;
    if ((p->k8 != 0) != (p->v8 != 0)) return 0; /* K and V both FP8, or neither */
    if (p->k8 && (p->k_sb % 16 || p->k_ss % 16 || p->k_sh % 16 || p->v_sb % 16 || p->v_ss % 16 ||
                  p->v_sh % 16))
        return 0;
    if (d->block_table && d->page_size % FA__CU_DEC_BN) return 0; /* pages hold whole tiles */
    if (fa__cu_dev_smem_blk[dev] > 0) {
        smem_blk = fa__cu_dev_smem_blk[dev];
    } else {
        if (cudaDeviceGetAttribute(&smem_blk, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            return 0;
        fa__cu_dev_smem_blk[dev] = smem_blk; /* benign race, as above */
    }
    fa__cu_dec_shape(pl->dpad, !d->block_table || d->page_size % 32 == 0, p->k8 != 0, &nw, &stages, &bn);
    smem = fa__cu_dec_smem(pl->dpad, nw, stages, bn, p->k8, p->v8);
    if (smem > smem_blk && bn != FA__CU_DEC_BN) { /* smaller shared memory (A100: 163 KB) */
        fa__cu_dec_shape(pl->dpad, 0, p->k8 != 0, &nw, &stages, &bn);
        smem = fa__cu_dec_smem(pl->dpad, nw, stages, bn, p->k8, p->v8);
    }
    if (smem > smem_blk) return 0;
    p->pack_gqa = group > 1;
    hy = group > 1 ? hkv : d->heads_q;
    blocks = hy * d->batch;
    ktiles = (d->seqlen_k + bn - 1) / bn;
    if (d->num_splits > 0) splits = d->num_splits;
    else if (!d->cu_seqlens_k && blocks < (int64_t)num_sm) {
        /* One block per SM, each warp keeping at least two tiles. Filling every block slot
           instead (H100, decode shape, 4x3 kernel: 33 splits, two blocks per SM) ran 1856
           GB/s against 2028 with 16 splits: the merge's cost grows with the split count. */
        splits = (int64_t)num_sm / blocks;
        if (splits > ktiles / (2 * nw)) splits = ktiles / (2 * nw);
        if (splits > 256) splits = 256;
    }
    if (splits > ktiles) splits = ktiles;
    if (splits < 1) splits = 1;
    pl->splits = (int)splits;
    p->num_splits = (int)splits;
    pl->grid = dim3((unsigned)splits, (unsigned)hy, (unsigned)d->batch);
    pl->ws_bytes = 0;
    if (splits > 1) {
        size_t rows_all = (size_t)splits * (size_t)d->batch * (size_t)d->seqlen_q * (size_t)d->heads_q;
        pl->ws_bytes = rows_all * (size_t)p->dv * sizeof(float) + rows_all * sizeof(float) + 256;
    }
    pl->dec = 1;
    pl->dec_nw = nw;
    pl->dec_stages = stages;
    pl->dec_bn = bn;
    pl->dec_smem = smem;
    pl->cc = cc_major;
    return 1;
}

static int fa__cu_dpad(int64_t d) { return d <= 64 ? 64 : d <= 96 ? 96 : d <= 128 ? 128 : 256; }

static fa_status fa__cu_make_plan(const fa_attn_desc *d, fa__cu_plan *pl)
{
    fa__cu_fwd_params *p = &pl->p;
    int64_t hkv, dv, sq, sk, group, rows_max, mtiles, hy, ps = 0, bt_stride = 0;
    int dev = 0, cc_major = 0, num_sm = 0;
    cudaError_t e;

    /* Host-side checks, in the CPU library's order and with its status codes. */
    if (!d) return fa__fail(FA_ERR_NULL, "attention desc is NULL");
    if (d->batch < 1) return fa__fail(FA_ERR_INVALID, "batch (%lld) must be >= 1", (long long)d->batch);
    if (d->heads_q < 1) return fa__fail(FA_ERR_INVALID, "heads_q (%lld) must be >= 1", (long long)d->heads_q);
    if (d->heads_kv < 0) return fa__fail(FA_ERR_INVALID, "heads_kv (%lld) must be >= 0", (long long)d->heads_kv);
    hkv = d->heads_kv ? d->heads_kv : d->heads_q;
    if (d->heads_q % hkv)
        return fa__fail(FA_ERR_SHAPE, "heads_q (%lld) is not a multiple of heads_kv (%lld)",
                        (long long)d->heads_q, (long long)hkv);
    if (d->head_dim < 1 || d->head_dim > FA_ATTN_MAX_HEAD_DIM)
        return fa__fail(FA_ERR_SHAPE, "head_dim (%lld) must be in 1..%d", (long long)d->head_dim,
                        FA_ATTN_MAX_HEAD_DIM);
    if (d->head_dim_v < 0 || d->head_dim_v > FA_ATTN_MAX_HEAD_DIM)
        return fa__fail(FA_ERR_SHAPE, "head_dim_v (%lld) must be in 1..%d (0 = head_dim)",
                        (long long)d->head_dim_v, FA_ATTN_MAX_HEAD_DIM);
    dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    if (d->seqlen_q < 0 || (!d->cu_seqlens_q && d->seqlen_q < 1))
        return fa__fail(FA_ERR_INVALID, "seqlen_q (%lld) must be >= 1 (or 0 with cu_seqlens_q)",
                        (long long)d->seqlen_q);
    if (d->seqlen_k < 0) return fa__fail(FA_ERR_INVALID, "seqlen_k (%lld) must be >= 0", (long long)d->seqlen_k);
    if (!d->q) return fa__fail(FA_ERR_NULL, "q is NULL");
    if (!d->k) return fa__fail(FA_ERR_NULL, "k is NULL");
    if (!d->v) return fa__fail(FA_ERR_NULL, "v is NULL");
    if (!d->o) return fa__fail(FA_ERR_NULL, "o is NULL");
    if (d->q_type != FA_F32 && d->q_type != FA_F16 && d->q_type != FA_BF16)
        return fa__fail(FA_ERR_DTYPE, "q_type (%d) must be f32, f16 or bf16", (int)d->q_type);
    if ((int)d->k_type < 0 || (int)d->k_type >= (int)FA_DTYPE_COUNT_ || (int)d->v_type < 0 ||
        (int)d->v_type >= (int)FA_DTYPE_COUNT_)
        return fa__fail(FA_ERR_DTYPE, "k_type/v_type is not a known dtype");
    if (d->o_type != FA_F32 && d->o_type != FA_F16 && d->o_type != FA_BF16)
        return fa__fail(FA_ERR_DTYPE, "o_type (%d) must be f32, f16 or bf16", (int)d->o_type);
    if (!(d->softmax_scale - d->softmax_scale == 0.0f))
        return fa__fail(FA_ERR_INVALID, "softmax_scale is not finite");
    if (!(d->softcap - d->softcap == 0.0f) || d->softcap < 0.0f)
        return fa__fail(FA_ERR_INVALID, "softcap (%g) must be finite and >= 0", (double)d->softcap);
    if (!(d->k_scale - d->k_scale == 0.0f) || !(d->v_scale - d->v_scale == 0.0f))
        return fa__fail(FA_ERR_INVALID, "k_scale/v_scale must be finite");
    if (d->alibi_batch_stride < 0)
        return fa__fail(FA_ERR_INVALID, "alibi_batch_stride (%lld) must be >= 0", (long long)d->alibi_batch_stride);
    if (d->num_splits < 0) return fa__fail(FA_ERR_INVALID, "num_splits (%lld) must be >= 0", (long long)d->num_splits);
    if (d->mask)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: sparse masks run on the CPU only");
    if (d->block_table && d->cu_seqlens_k)
        return fa__fail(FA_ERR_INVALID, "paged KV (block_table) and cu_seqlens_k cannot be combined");
    if (d->block_table) {
        if (d->page_size < 1)
            return fa__fail(FA_ERR_INVALID, "page_size (%lld) must be >= 1 with a block_table", (long long)d->page_size);
        if (d->num_pages < 1)
            return fa__fail(FA_ERR_INVALID, "num_pages (%lld) must be >= 1 with a block_table", (long long)d->num_pages);
        if (d->block_table_stride < 0)
            return fa__fail(FA_ERR_INVALID, "block_table_stride (%lld) must be >= 0", (long long)d->block_table_stride);
        ps = d->page_size;
        bt_stride = d->block_table_stride ? d->block_table_stride : (d->seqlen_k + ps - 1) / ps;
        if (bt_stride > 0x7fffffff / ps || bt_stride * ps < d->seqlen_k)
            return fa__fail(FA_ERR_SHAPE, "block_table_stride (%lld) pages of %lld keys cannot hold seqlen_k (%lld)",
                            (long long)bt_stride, (long long)ps, (long long)d->seqlen_k);
    }
    /* What this GPU implementation does not cover. */
    if (d->mask)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: sparse masks run on the CPU only");
    if (d->q_type != FA_F16 && d->q_type != FA_BF16)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: q must be f16 or bf16 (got %s)",
                        fa_dtype_name(d->q_type));
    if ((d->k_type != d->q_type && d->k_type != FA_E4M3 && d->k_type != FA_E5M2) ||
        (d->v_type != d->q_type && d->v_type != FA_E4M3 && d->v_type != FA_E5M2))
        return fa__fail(FA_ERR_UNSUPPORTED,
                        "fa_cuda_attn_forward: k and v must have q's type or be e4m3/e5m2");
    if (d->o_type != d->q_type && d->o_type != FA_F32)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: o must be q's type or f32");
    if (d->head_dim % 8 || dv % 8)
        return fa__fail(FA_ERR_UNSUPPORTED,
                        "fa_cuda_attn_forward: head_dim (%lld) and head_dim_v (%lld) must be multiples of 8",
                        (long long)d->head_dim, (long long)dv);
    if (d->cu_seqlens_q && d->seqlen_q < 1)
        return fa__fail(FA_ERR_UNSUPPORTED,
                        "fa_cuda_attn_forward: varlen needs seqlen_q = the longest sequence (the "
                        "offsets live on the device)");
    if (d->block_table && d->cu_seqlens_k)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: paged KV with cu_seqlens_k");
    sq = d->seqlen_q;
    sk = d->seqlen_k;
    group = d->heads_q / hkv;
    if (sq > 0x7fffffff / group || sk > 0x7fffffff || d->heads_q > 65535 || d->batch > 65535 ||
        (d->block_table && (ps > 0x7fffffff || d->num_pages > 0x7fffffff)))
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: sizes exceed the GPU grid limits");

    memset(&pl->p, 0, sizeof pl->p);
    p->q = d->q; p->k = d->k; p->v = d->v; p->o = d->o; p->lse = d->lse;
    /* Strides: each zero field means packed BSHD (paged: [pages][page_size][heads][dim]). */
    {
        int64_t kcap = d->block_table ? ps : sk;
        p->q_sh = d->q_stride.head ? d->q_stride.head : d->head_dim;
        p->q_ss = d->q_stride.seq ? d->q_stride.seq : d->heads_q * d->head_dim;
        p->q_sb = d->q_stride.batch ? d->q_stride.batch : sq * p->q_ss;
        p->k_sh = d->k_stride.head ? d->k_stride.head : d->head_dim;
        p->k_ss = d->k_stride.seq ? d->k_stride.seq : hkv * d->head_dim;
        p->k_sb = d->k_stride.batch ? d->k_stride.batch : kcap * p->k_ss;
        p->v_sh = d->v_stride.head ? d->v_stride.head : dv;
        p->v_ss = d->v_stride.seq ? d->v_stride.seq : hkv * dv;
        p->v_sb = d->v_stride.batch ? d->v_stride.batch : kcap * p->v_ss;
        p->o_sh = d->o_stride.head ? d->o_stride.head : dv;
        p->o_ss = d->o_stride.seq ? d->o_stride.seq : d->heads_q * dv;
        p->o_sb = d->o_stride.batch ? d->o_stride.batch : sq * p->o_ss;
        p->lse_ss = d->lse_stride.seq ? d->lse_stride.seq : 1;
        p->lse_sh = d->lse_stride.head ? d->lse_stride.head : (d->cu_seqlens_q ? -1 : sq);
        p->lse_sb = d->lse_stride.batch ? d->lse_stride.batch : d->heads_q * sq;
    }
    {
        const int64_t st[] = {p->q_sh, p->q_ss, p->q_sb, p->k_sh, p->k_ss, p->k_sb,
                              p->v_sh, p->v_ss, p->v_sb, p->o_sh, p->o_ss, p->o_sb};
        size_t i;
        for (i = 0; i < sizeof st / sizeof st[0]; i++)
            if (st[i] < 0 || st[i] % 8)
                return fa__fail(FA_ERR_UNSUPPORTED,
                                "fa_cuda_attn_forward: q/k/v/o strides must be non-negative "
                                "multiples of 8 elements (16 bytes)");
        if (p->lse_ss < 0 || p->lse_sb < 0 || (d->lse_stride.head && p->lse_sh < 0))
            return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: negative LSE stride");
        if (!fa__cu_aligned(d->q) || !fa__cu_aligned(d->k) || !fa__cu_aligned(d->v) ||
            !fa__cu_aligned(d->o))
            return fa__fail(FA_ERR_UNSUPPORTED,
                            "fa_cuda_attn_forward: q, k, v and o must be 16-byte aligned");
    }
    p->cu_q = d->cu_seqlens_q; p->cu_k = d->cu_seqlens_k; p->seqused_k = d->seqused_k;
    p->block_table = d->block_table; p->bt_stride = bt_stride;
    p->page_size = (int)ps; p->num_pages = (int)d->num_pages;
    p->alibi = d->alibi_slopes; p->alibi_sb = d->alibi_batch_stride;
    p->batch = (int)d->batch; p->sq = (int)sq; p->sk = (int)sk;
    p->hq = (int)d->heads_q; p->hkv = (int)hkv; p->group = (int)group;
    p->dqk = (int)d->head_dim; p->dv = (int)dv;
    p->causal = d->causal != 0; p->use_window = d->use_window != 0;
    p->wl = d->window_left; p->wr = d->window_right;
    p->scale = d->softmax_scale != 0.0f ? d->softmax_scale : (float)(1.0 / sqrt((double)d->head_dim));
    p->scale_log2 = p->scale * FA__CU_LOG2E;
    p->softcap = d->softcap;
    p->o_f32 = d->o_type == FA_F32;
    p->k8 = d->k_type == FA_E4M3 ? 1 : d->k_type == FA_E5M2 ? 2 : 0;
    p->v8 = d->v_type == FA_E4M3 ? 1 : d->v_type == FA_E5M2 ? 2 : 0;
    p->k_scale = d->k_scale; p->v_scale = d->v_scale;
    p->k_head_scale = d->k_head_scale; p->v_head_scale = d->v_head_scale;

    pl->dpad = fa__cu_dpad(d->head_dim > dv ? d->head_dim : dv);
    pl->bn = fa__cu_bn(pl->dpad);
    /* The generic score path also carries FP8 loads and dequant scales (any sign). */
    pl->mod = d->softcap > 0.0f || d->alibi_slopes != NULL || p->scale_log2 <= 0.0f || p->k8 ||
              p->v8 || (d->k_scale != 0.0f && d->k_scale != 1.0f) ||
              (d->v_scale != 0.0f && d->v_scale != 1.0f) || d->k_head_scale || d->v_head_scale;
    pl->bf16 = d->q_type == FA_BF16;

    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return fa__cu_err(e, "cudaGetDevice");
    if (dev >= 0 && dev < FA__CU_MAX_DEVICES && fa__cu_dev_sms[dev] > 0) {
        cc_major = fa__cu_dev_cc[dev];
        num_sm = fa__cu_dev_sms[dev];
    } else {
        if ((e = cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, dev)) != cudaSuccess ||
            (e = cudaDeviceGetAttribute(&num_sm, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess)
            return fa__cu_err(e, "cudaDeviceGetAttribute");
        if (dev >= 0 && dev < FA__CU_MAX_DEVICES) {
            fa__cu_dev_cc[dev] = cc_major; /* benign race: every writer stores the same values */
            fa__cu_dev_sms[dev] = num_sm;
        }
    }
    if (cc_major < 8)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: needs an sm_80 or newer GPU");

    /* Packed GQA when the query rows of one head would not fill a tile (decode). */
    pl->bm = 16 * fa__cu_nwarps(pl->dpad);
    p->pack_gqa = group > 1 && sq < pl->bm;
    rows_max = p->pack_gqa ? sq * group : sq;
    hy = p->pack_gqa ? hkv : d->heads_q;
    mtiles = (rows_max + pl->bm - 1) / pl->bm;
    if (mtiles > 0x7fffffff) return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_forward: too many rows");

    pl->cc = cc_major;
    if (fa__cu_dec_plan(d, pl, group, hkv, cc_major, num_sm, dev)) return FA_OK;

    /* Split-KV when the grid would leave most of the GPU idle (flash decoding). Each split
       keeps at least two key tiles, so the merge stays cheap next to the attention. */
    {
        int64_t blocks = mtiles * hy * d->batch, splits = 1;
        int64_t ktiles = (sk + pl->bn - 1) / pl->bn;
        if (d->num_splits > 0) splits = d->num_splits;
        else if (blocks < (int64_t)num_sm * fa__cu_blocks_per_sm(pl->dpad) && !d->cu_seqlens_k) {
            /* Aim at one full wave: on an H100 the decode shape ran 1551 GB/s with 16 splits
               (128 blocks, one per SM), 1109 with 33 (two waves). */
            splits = (int64_t)num_sm * fa__cu_blocks_per_sm(pl->dpad) / blocks;
            if (splits > ktiles / 2) splits = ktiles / 2;
            if (splits > 128) splits = 128;
        }
        if (splits > ktiles) splits = ktiles;
        if (splits < 1) splits = 1;
        if (splits * d->batch > 65535) splits = 65535 / d->batch;
        pl->splits = (int)splits;
        p->num_splits = (int)splits;
        pl->grid = dim3((unsigned)mtiles, (unsigned)hy, (unsigned)(d->batch * splits));
        pl->ws_bytes = 0;
        if (splits > 1) {
            size_t rows_all = (size_t)splits * (size_t)d->batch * (size_t)sq * (size_t)d->heads_q;
            pl->ws_bytes = rows_all * (size_t)dv * sizeof(float) + rows_all * sizeof(float) + 256;
        }
    }
    return FA_OK;
}

template <typename T, int D, bool MOD>
static cudaError_t fa__cu_launch_fwd(const fa__cu_plan *pl, cudaStream_t st)
{
    constexpr int BN = D == 256 ? 32 : 64;
    constexpr bool QREG = D <= 128;
    /* D = 256 spills with 3 stages; 4-warp blocks fit two per SM only with 2 stages. */
    constexpr int NW = D == 128 ? 8 : 4;   /* = fa__cu_nwarps(D) */
    constexpr int STAGES = NW == 8 ? 4 : 2; /* two 4-warp blocks per SM fit only 2 stages */
    constexpr size_t smem = (size_t)(16 * NW + 2 * STAGES * BN) * (D + 8) * sizeof(T);
    void (*kern)(const fa__cu_fwd_params) = fa__cu_fwd_kernel<T, D, NW, BN, STAGES, QREG, MOD>;
    static unsigned char attr_set[FA__CU_MAX_DEVICES]; /* per instantiation and device */
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if (dev < 0 || dev >= FA__CU_MAX_DEVICES || !attr_set[dev]) {
        e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        if (dev >= 0 && dev < FA__CU_MAX_DEVICES) attr_set[dev] = 1; /* benign race */
    }
    kern<<<pl->grid, NW * 32, smem, st>>>(pl->p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t fa__cu_dispatch(const fa__cu_plan *pl, cudaStream_t st)
{
    switch (pl->dpad * 2 + pl->mod) {
    case 64 * 2: return fa__cu_launch_fwd<T, 64, false>(pl, st);
    case 64 * 2 + 1: return fa__cu_launch_fwd<T, 64, true>(pl, st);
    case 96 * 2: return fa__cu_launch_fwd<T, 96, false>(pl, st);
    case 96 * 2 + 1: return fa__cu_launch_fwd<T, 96, true>(pl, st);
    case 128 * 2: return fa__cu_launch_fwd<T, 128, false>(pl, st);
    case 128 * 2 + 1: return fa__cu_launch_fwd<T, 128, true>(pl, st);
    case 256 * 2: return fa__cu_launch_fwd<T, 256, false>(pl, st);
    default: return fa__cu_launch_fwd<T, 256, true>(pl, st);
    }
}

template <typename T, int D, int NW, int STAGES, bool F8, int BN = FA__CU_DEC_BN>
static cudaError_t fa__cu_launch_dec(const fa__cu_plan *pl, cudaStream_t st)
{
    void (*kern)(const fa__cu_fwd_params) = fa__cu_dec_kernel<T, D, NW, STAGES, BN, F8>;
    static unsigned char attr_set[FA__CU_MAX_DEVICES]; /* per instantiation and device */
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if (dev < 0 || dev >= FA__CU_MAX_DEVICES || !attr_set[dev]) {
        int smem = fa__cu_dec_smem(D, NW, STAGES, BN, F8, F8);
        e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        if (dev >= 0 && dev < FA__CU_MAX_DEVICES) attr_set[dev] = 1; /* benign race */
    }
    kern<<<pl->grid, NW * 32, (size_t)pl->dec_smem, st>>>(pl->p);
    return cudaGetLastError();
}

template <typename T, bool F8>
static cudaError_t fa__cu_dec_dispatch(const fa__cu_plan *pl, cudaStream_t st)
{
    switch (pl->dpad) {
    case 64: return fa__cu_launch_dec<T, 64, 4, 3, F8>(pl, st);
    case 96: return fa__cu_launch_dec<T, 96, 4, 3, F8>(pl, st);
    case 128:
        if (pl->dec_bn == 32) return fa__cu_launch_dec<T, 128, 4, 3, F8, 32>(pl, st);
        if (pl->dec_nw == 8)
            return pl->dec_stages == 3 ? fa__cu_launch_dec<T, 128, 8, 3, F8>(pl, st)
                                       : fa__cu_launch_dec<T, 128, 8, 2, F8>(pl, st);
        if (pl->dec_stages == 4) return fa__cu_launch_dec<T, 128, 4, 4, F8>(pl, st);
        return fa__cu_launch_dec<T, 128, 4, 3, F8>(pl, st);
    default: return fa__cu_launch_dec<T, 256, 4, 3, F8>(pl, st);
    }
}

/* pdl: launch with programmatic stream serialization (sm_90), overlapping the launch with
   the tail of the forward kernel before it on the stream. */
static cudaError_t fa__cu_launch_merge(const fa__cu_merge_params *mp, cudaStream_t st, int pdl)
{
    int64_t elems = (int64_t)mp->batch * mp->seqlen * mp->heads * mp->dv;
    int64_t blocks = (elems + 255) / 256;
    if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
    if (pdl) {
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute at[1] = {};
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.gridDim = dim3((unsigned)blocks);
        cfg.blockDim = dim3(256);
        cfg.stream = st;
        cfg.attrs = at;
        cfg.numAttrs = 1;
        return cudaLaunchKernelEx(&cfg, fa__cu_merge_kernel, *mp);
    }
    fa__cu_merge_kernel<<<(unsigned)blocks, 256, 0, st>>>(*mp);
    return cudaGetLastError();
}

/* ---- Hopper prefill: wgmma + TMA + warp specialisation (sm_90a) ---------------------------
   One block of 3 warpgroups owns 128 query rows of one head. Warpgroup 0 is the producer: one
   thread loads the Q tile once and streams K/V tiles into a STAGES-deep shared-memory ring with
   TMA bulk tensor copies (cp.async.bulk.tensor, 128-byte swizzle, rows past the end of the
   tensor arrive as zeros), completing on "full" mbarriers; the consumers give a stage back on
   its "empty" mbarrier. Warpgroups 1 and 2 each own 64 rows: S = Q K^T with wgmma (A = Q and
   B = K from shared memory, both K-major), the online softmax on the accumulator fragment,
   P rounded to T in registers, and O += P V with wgmma (A = P from registers, B = V from
   shared memory, MN-major). setmaxnreg gives the producer 24 registers and each consumer 240.
   Shared-memory tiles are stored as 64-column boxes ([rows][64] elements, 128-byte rows, the
   16-byte chunks of row r XOR-swizzled by r % 8, 1024-byte aligned), the layout both TMA and
   the wgmma descriptors call SWIZZLE_128B.
   Only the plain case runs here (no window/softcap/ALiBi/varlen/paged/FP8/split, head_dim ==
   head_dim_v in {64, 128, 256}); everything else takes the mma.sync kernels above. */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA__CU_SM90A 1
#endif

typedef struct fa__wg_params {
    CUtensorMap tq, tk, tv; /* [batch][heads][seq][dim] views of Q, K, V, boxes of 64 columns */
    fa__cu_fwd_params p;
} fa__wg_params;

/* wgmma wrappers: fa__wg_mma<T, N>::ss (A and B from shared memory) and ::rs (A from
   registers, B MN-major); acc = 0 overwrites D. */
template <typename T, int N> struct fa__wg_mma;
#ifdef FA__CU_SM90A
#define FA__WG_D64(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define FA__WG_D80(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
#define FA__WG_D128(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define FA__WG_D176(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
#define FA__WG_D256(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

template <> struct fa__wg_mma<__nv_bfloat16, 64> {
    /* D(64x64) (+)= A(64x16, shared, K-major) * B(16x64, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D64(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x64) += A(64x16, registers) * B(16x64, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                     : FA__WG_D64(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__nv_bfloat16, 80> {
    /* D(64x80) (+)= A(64x16, shared, K-major) * B(16x80, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %42, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n80k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39}, %40, %41, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D80(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x80) += A(64x16, registers) * B(16x80, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %45, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n80k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39}, {%40,%41,%42,%43}, %44, p, 1, 1, 1;\n}\n"
                     : FA__WG_D80(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__nv_bfloat16, 128> {
    /* D(64x128) (+)= A(64x16, shared, K-major) * B(16x128, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D128(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x128) += A(64x16, registers) * B(16x128, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                     : FA__WG_D128(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__nv_bfloat16, 176> {
    /* D(64x176) (+)= A(64x16, shared, K-major) * B(16x176, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87}, %88, %89, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D176(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x176) += A(64x16, registers) * B(16x176, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %93, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87}, {%88,%89,%90,%91}, %92, p, 1, 1, 1;\n}\n"
                     : FA__WG_D176(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__nv_bfloat16, 256> {
    /* D(64x256) (+)= A(64x16, shared, K-major) * B(16x256, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D256(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x256) += A(64x16, registers) * B(16x256, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, {%128,%129,%130,%131}, %132, p, 1, 1, 1;\n}\n"
                     : FA__WG_D256(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__half, 64> {
    /* D(64x64) (+)= A(64x16, shared, K-major) * B(16x64, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D64(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x64) += A(64x16, registers) * B(16x64, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                     : FA__WG_D64(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__half, 80> {
    /* D(64x80) (+)= A(64x16, shared, K-major) * B(16x80, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %42, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n80k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39}, %40, %41, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D80(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x80) += A(64x16, registers) * B(16x80, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %45, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n80k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39}, {%40,%41,%42,%43}, %44, p, 1, 1, 1;\n}\n"
                     : FA__WG_D80(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__half, 128> {
    /* D(64x128) (+)= A(64x16, shared, K-major) * B(16x128, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D128(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x128) += A(64x16, registers) * B(16x128, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                     : FA__WG_D128(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__half, 176> {
    /* D(64x176) (+)= A(64x16, shared, K-major) * B(16x176, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n176k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87}, %88, %89, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D176(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x176) += A(64x16, registers) * B(16x176, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %93, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n176k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87}, {%88,%89,%90,%91}, %92, p, 1, 1, 1;\n}\n"
                     : FA__WG_D176(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};
template <> struct fa__wg_mma<__half, 256> {
    /* D(64x256) (+)= A(64x16, shared, K-major) * B(16x256, shared, K-major) */
    static __device__ __forceinline__ void ss(float *d, uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                     : FA__WG_D256(d) : "l"(a), "l"(b), "r"(acc));
    }
    /* D(64x256) += A(64x16, registers) * B(16x256, shared, MN-major) */
    static __device__ __forceinline__ void rs(float *d, const uint32_t *a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, {%128,%129,%130,%131}, %132, p, 1, 1, 1;\n}\n"
                     : FA__WG_D256(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
    }
};

#else
template <typename T, int N> struct fa__wg_mma {
    static __device__ __forceinline__ void ss(float *, uint64_t, uint64_t, int) {}
    static __device__ __forceinline__ void rs(float *, const uint32_t *, uint64_t, int) {}
};
#endif

static __device__ __forceinline__ void fa__wg_fence(void)
{
#ifdef FA__CU_SM90A
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
static __device__ __forceinline__ void fa__wg_commit(void)
{
#ifdef FA__CU_SM90A
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> static __device__ __forceinline__ void fa__wg_wait(void)
{
#ifdef FA__CU_SM90A
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
/* 2^x flushing subnormal results to 0: one MUFU.EX2 (the non-ftz form adds a range test and
   two multiplies per element, which the softmax of this kernel cannot afford). ex2(-inf) = 0. */
static __device__ __forceinline__ float fa__wg_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
/* Pins accumulator registers at this point: the compiler must not move their uses across an
   asynchronous wgmma's issue or wait. */
template <int R> static __device__ __forceinline__ void fa__wg_keep(float *r)
{
#pragma unroll
    for (int i = 0; i < R; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
/* Shared-memory matrix descriptor, 128-byte swizzle: start address, leading byte offset (the
   next 64-column box of an MN-major operand; unused for K-major), stride byte offset (the next
   8-row group: 1024). */
static __device__ __forceinline__ uint64_t fa__wg_desc(uint32_t saddr, uint32_t lbo)
{
    return (uint64_t)((saddr & 0x3ffffu) >> 4) | (uint64_t)((lbo >> 4) & 0x3fffu) << 16 |
           (uint64_t)(1024u >> 4) << 32 | (uint64_t)1 << 62;
}

static __device__ __forceinline__ void fa__wg_bar_init(uint32_t bar, uint32_t count)
{
#ifdef FA__CU_SM90A
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}
static __device__ __forceinline__ void fa__wg_bar_expect(uint32_t bar, uint32_t bytes)
{
#ifdef FA__CU_SM90A
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
#endif
}
static __device__ __forceinline__ void fa__wg_bar_arrive(uint32_t bar)
{
#ifdef FA__CU_SM90A
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}
static __device__ __forceinline__ void fa__wg_bar_wait(uint32_t bar, uint32_t parity)
{
#ifdef FA__CU_SM90A
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
#endif
}
/* TMA: the box at element coordinates (c0 = column, c1 = row, c2 = head, c3 = batch). */
static __device__ __forceinline__ void fa__wg_tma(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                                  int c0, int c1, int c2, int c3)
{
#ifdef FA__CU_SM90A
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
                 "[%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
#endif
}

/* MODE 0: S, softmax, P V in sequence. MODE 1: the FA3 intra-warpgroup overlap: S(n) = Q K(n)^T
   and O += P(n-1) V(n-1) are issued back to back, and the softmax of S(n) runs while the tensor
   cores still work on P V. MODE 2: MODE 1 plus ping-pong: the two consumer warpgroups take
   turns issuing their GEMMs (named barriers 1 and 2), so one's softmax overlaps the other's
   GEMMs. */
template <typename T, int D, int BN, int STAGES, int MODE>
__global__ void __launch_bounds__(384, 1) fa__wg_fwd_kernel(const __grid_constant__ fa__wg_params P)
{
#ifdef FA__CU_SM90A
    constexpr int BM = 128, NBOX = D / 64;
    constexpr uint32_t QBOX = BM * 128, KBOX = BN * 128; /* bytes of one 64-column box */
    constexpr uint32_t QBYTES = NBOX * QBOX, KBYTES = NBOX * KBOX;
    const fa__cu_fwd_params &p = P.p;
    const uint32_t sQ = (fa__cu_saddr(fa__cu_smem) + 1023u) & ~1023u;
    const uint32_t sK = sQ + QBYTES, sV = sK + STAGES * KBYTES, bars = sV + STAGES * KBYTES;
    /* mbarriers: K full, V full, K empty, V empty [STAGES each], Q full. A K stage is given
       back as soon as S has been computed from it, a V stage after its P V product. */
    const uint32_t b_fk = bars, b_fv = bars + 8 * STAGES, b_ek = bars + 16 * STAGES,
                   b_ev = bars + 24 * STAGES, b_q = bars + 32 * STAGES;
    const int tid = threadIdx.x;
    const int mt = (int)gridDim.x - 1 - (int)blockIdx.x; /* heavy (causal) tiles first */
    const int h = blockIdx.y, b = blockIdx.z;
    const int sq = p.sq, sk = p.sk, row0 = mt * BM, hkv = h / p.group;
    int n_end = (sk + BN - 1) / BN;
    if (p.causal) {
        const int hi = min(sk - 1, min(row0 + BM - 1, sq - 1) + sk - sq);
        n_end = hi < 0 ? 0 : hi / BN + 1;
    }
    if (tid == 0) {
#pragma unroll
        for (int s = 0; s < STAGES; ++s) {
            fa__wg_bar_init(b_fk + 8 * s, 1);
            fa__wg_bar_init(b_fv + 8 * s, 1);
            fa__wg_bar_init(b_ek + 8 * s, 8); /* one arrival per consumer warp */
            fa__wg_bar_init(b_ev + 8 * s, 8);
        }
        fa__wg_bar_init(b_q, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (tid < 128) { /* ---- producer ---- */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
        if (tid == 0) {
            fa__wg_bar_expect(b_q, QBYTES);
#pragma unroll
            for (int j = 0; j < NBOX; ++j) fa__wg_tma(sQ + j * QBOX, &P.tq, b_q, j * 64, row0, h, b);
            for (int n = 0; n < n_end; ++n) {
                const int s = n % STAGES;
                const uint32_t par = ((n / STAGES) & 1) ^ 1;
                if (n >= STAGES) fa__wg_bar_wait(b_ek + 8 * s, par);
                fa__wg_bar_expect(b_fk + 8 * s, KBYTES);
#pragma unroll
                for (int j = 0; j < NBOX; ++j)
                    fa__wg_tma(sK + s * KBYTES + j * KBOX, &P.tk, b_fk + 8 * s, j * 64, n * BN, hkv, b);
                if (n >= STAGES) fa__wg_bar_wait(b_ev + 8 * s, par);
                fa__wg_bar_expect(b_fv + 8 * s, KBYTES);
#pragma unroll
                for (int j = 0; j < NBOX; ++j)
                    fa__wg_tma(sV + s * KBYTES + j * KBOX, &P.tv, b_fv + 8 * s, j * 64, n * BN, hkv, b);
            }
        }
        return;
    }

    /* ---- consumers ---- */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
    const int t = tid - 128, c = t >> 7, w = (t >> 5) & 3, lane = t & 31;
    const int wrow = row0 + c * 64 + w * 16;  /* first row of this warp */
    const int r_0 = wrow + (lane >> 2);        /* this thread's rows: r_0 and r_0 + 8 */
    float o[D / 2], s[BN / 2];
    uint32_t pf[BN / 16][4];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) s[i] = 0.0f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f}, alpha[2];
    const float sc = p.scale_log2;
    const uint32_t q_at = sQ + c * 64 * 128;

    auto issue_s = [&](int n) { /* S = Q K(n)^T, one commit group */
        const uint32_t k_at = sK + (n % STAGES) * KBYTES;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
            fa__wg_mma<T, BN>::ss(s, fa__wg_desc(q_at + (kk >> 2) * QBOX + (kk & 3) * 32, 16),
                                  fa__wg_desc(k_at + (kk >> 2) * KBOX + (kk & 3) * 32, 16), kk > 0);
        fa__wg_commit();
    };
    auto issue_pv = [&](int n) { /* O += P V(n), one commit group */
        const uint32_t v_at = sV + (n % STAGES) * KBYTES;
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk)
            fa__wg_mma<T, D>::rs(o, pf[kk], fa__wg_desc(v_at + kk * 16 * 128, KBOX), 1);
        fa__wg_commit();
    };
    auto release = [&](uint32_t bar) {
        __syncwarp();
        if (lane == 0) fa__wg_bar_arrive(bar);
    };
    /* Mask, online softmax of S(n) in place (S becomes P, f32), alpha = the factor O needs. */
    auto softmax = [&](int n) {
        const int j0 = n * BN;
        const bool full = j0 + BN <= sk && (!p.causal || j0 + BN - 1 <= wrow + sk - sq);
        if (!full) { /* keys past the end and, causal, past each row's diagonal (bottom-right) */
#pragma unroll
            for (int i = 0; i < BN / 8; ++i)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int j = j0 + i * 8 + (lane & 3) * 2 + (e & 1);
                    const int r = r_0 + (e >> 1) * 8;
                    const int hi = p.causal ? min(sk - 1, r + sk - sq) : sk - 1;
                    if (j > hi) s[4 * i + e] = -INFINITY;
                }
        }
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float mx = -INFINITY;
#pragma unroll
            for (int i = 0; i < BN / 8; ++i) mx = fmaxf(mx, fmaxf(s[4 * i + 2 * rr], s[4 * i + 2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx *= sc;
            const float m_new = fmaxf(m_r[rr], mx);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no (-inf) - (-inf) */
            alpha[rr] = fa__wg_exp2(m_r[rr] - m_use);
            m_r[rr] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < BN / 8; ++i) {
                s[4 * i + 2 * rr] = fa__wg_exp2(fmaf(s[4 * i + 2 * rr], sc, -m_use));
                s[4 * i + 2 * rr + 1] = fa__wg_exp2(fmaf(s[4 * i + 2 * rr + 1], sc, -m_use));
                sum += s[4 * i + 2 * rr] + s[4 * i + 2 * rr + 1];
            }
            l_r[rr] = l_r[rr] * alpha[rr] + sum; /* per-thread partial; quad-summed at the end */
        }
    };
    /* Once the row maxima settle alpha is 1 for the whole warp: skip the rescale (exact). */
    auto rescale = [&]() {
        if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
            for (int i = 0; i < D / 8; ++i) {
                o[4 * i] *= alpha[0];
                o[4 * i + 1] *= alpha[0];
                o[4 * i + 2] *= alpha[1];
                o[4 * i + 3] *= alpha[1];
            }
        }
    };
    /* The accumulator layout of S is the register A-operand layout of P. */
    auto to_p = [&]() {
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            pf[kk][0] = fa__cu_pair<T>::pack(s[8 * kk], s[8 * kk + 1]);
            pf[kk][1] = fa__cu_pair<T>::pack(s[8 * kk + 2], s[8 * kk + 3]);
            pf[kk][2] = fa__cu_pair<T>::pack(s[8 * kk + 4], s[8 * kk + 5]);
            pf[kk][3] = fa__cu_pair<T>::pack(s[8 * kk + 6], s[8 * kk + 7]);
        }
    };
#define FA__WG_PH(n) ((uint32_t)(((n) / STAGES) & 1))

    fa__wg_bar_wait(b_q, 0);
    /* Ping-pong turns: warpgroup c waits on barrier 1 + c and hands the turn over on the
       other's; warpgroup 1 opens with a hand-over so warpgroup 0 goes first. */
    auto turn_wait = [&]() {
        if (MODE == 2) asm volatile("bar.sync %0, 256;\n" ::"r"(1 + c) : "memory");
    };
    auto turn_pass = [&]() {
        if (MODE == 2) asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - c) : "memory");
    };
    if (MODE == 2 && c == 1) turn_pass();
    if (MODE == 0) {
        for (int n = 0; n < n_end; ++n) {
            const int st = n % STAGES;
            fa__wg_bar_wait(b_fk + 8 * st, FA__WG_PH(n));
            fa__wg_fence();
            issue_s(n);
            fa__wg_wait<0>();
            fa__wg_keep<BN / 2>(s);
            release(b_ek + 8 * st);
            softmax(n);
            rescale();
            to_p();
            fa__wg_bar_wait(b_fv + 8 * st, FA__WG_PH(n));
            fa__wg_fence();
            issue_pv(n);
            fa__wg_wait<0>();
            fa__wg_keep<D / 2>(o);
            release(b_ev + 8 * st);
        }
    } else if (n_end > 0) { /* MODE 1, 2 */
        fa__wg_bar_wait(b_fk, 0);
        fa__wg_fence();
        turn_wait();
        issue_s(0);
        turn_pass();
        fa__wg_wait<0>();
        fa__wg_keep<BN / 2>(s);
        release(b_ek);
        softmax(0); /* O is still 0: no rescale */
        to_p();
        for (int n = 1; n < n_end; ++n) {
            const int st = n % STAGES, pst = (n - 1) % STAGES;
            fa__wg_bar_wait(b_fk + 8 * st, FA__WG_PH(n));
            fa__wg_fence();
            fa__wg_bar_wait(b_fv + 8 * pst, FA__WG_PH(n - 1));
            turn_wait();
            issue_s(n);
            issue_pv(n - 1);
            turn_pass();
            fa__wg_wait<1>(); /* S(n) is done, P V may still run */
            fa__wg_keep<BN / 2>(s);
            release(b_ek + 8 * st);
            softmax(n);
            fa__wg_wait<0>();
            fa__wg_keep<D / 2>(o);
            release(b_ev + 8 * pst);
            rescale();
            to_p();
        }
        const int last = n_end - 1;
        fa__wg_bar_wait(b_fv + 8 * (last % STAGES), FA__WG_PH(last));
        fa__wg_fence();
        turn_wait();
        issue_pv(last);
        turn_pass();
        fa__wg_wait<0>();
        fa__wg_keep<D / 2>(o);
        release(b_ev + 8 * (last % STAGES));
    }
#undef FA__WG_PH

    /* Epilogue: O = acc / l, lse = m ln2 + ln l (a row that saw nothing: 0 and -inf). */
    float inv[2], lse_v[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float l = l_r[rr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[rr] = l == 0.0f ? 0.0f : 1.0f / l;
        lse_v[rr] = l == 0.0f ? -INFINITY : m_r[rr] * FA__CU_LN2 + logf(l);
    }
    const int col0 = (lane & 3) * 2;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int r = r_0 + rr * 8;
        if (r < sq && p.lse && (lane & 3) == 0)
            p.lse[(int64_t)b * p.lse_sb + (int64_t)r * p.lse_ss + (int64_t)h * p.lse_sh] = lse_v[rr];
    }
    if (p.o_f32) {
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const int r = r_0 + rr * 8;
            if (r >= sq) continue;
            float *og = reinterpret_cast<float *>(p.o) + (int64_t)b * p.o_sb + (int64_t)r * p.o_ss +
                        (int64_t)h * p.o_sh + col0;
#pragma unroll
            for (int i = 0; i < D / 8; ++i)
                *reinterpret_cast<float2 *>(og + i * 8) =
                    make_float2(o[4 * i + 2 * rr] * inv[rr], o[4 * i + 2 * rr + 1] * inv[rr]);
        }
        return;
    }
    /* Stage this warpgroup's 64 rows in its (consumed) part of the Q tile, same swizzled
       layout (conflict-free: the 8 rows of a store land in 8 different chunks), then write
       whole rows with 16-byte stores. */
    asm volatile("bar.sync %0, 128;\n" ::"r"(3 + c) : "memory"); /* every S GEMM has read Q */
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    unsigned char *sm = fa__cu_smem + (sQ - fa__cu_saddr(fa__cu_smem)) + c * 64 * 128;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const int rl = w * 16 + (lane >> 2) + rr * 8; /* row within the warpgroup's 64 */
#pragma unroll
        for (int i = 0; i < D / 8; ++i)
            *reinterpret_cast<uint32_t *>(sm + (i >> 3) * QBOX + rl * 128 + (((i & 7) ^ (rl & 7)) << 4) +
                                          col0 * 2) =
                fa__cu_pair<T>::pack(o[4 * i + 2 * rr] * inv[rr], o[4 * i + 2 * rr + 1] * inv[rr]);
    }
    asm volatile("bar.sync %0, 128;\n" ::"r"(3 + c) : "memory");
    T *og = reinterpret_cast<T *>(p.o) + (int64_t)b * p.o_sb + (int64_t)h * p.o_sh;
#pragma unroll
    for (int k = 0; k < D / 16; ++k) { /* 64 rows x D / 8 chunks over 128 threads */
        const int q = t - c * 128 + k * 128, rl = q / (D / 8), ch = q % (D / 8);
        const int r = row0 + c * 64 + rl;
        if (r < sq)
            *reinterpret_cast<uint4 *>(og + (int64_t)r * p.o_ss + ch * 8) = *reinterpret_cast<const uint4 *>(
                sm + (ch >> 3) * QBOX + rl * 128 + (((ch & 7) ^ (rl & 7)) << 4));
    }
#else
    (void)P;
    __trap(); /* built without sm_90a code: fa__wg_try never launches this */
#endif
}

/* ---- Hopper prefill: host side ---------------------------------------------------------- */
typedef CUresult (*fa__wg_encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                     const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                     const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                     CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
/* Which kernel the last fa_cuda_attn_forward call on this thread ran: 0 = mma.sync (or
   nothing), 1 = the sm_90a wgmma kernel. For tests. */
static FA__TLS int fa__cu_last_path;
/* 1: never take the wgmma path (tests set it to check the other path on a Hopper GPU; the
   environment variable FLASHATTN_CUDA_NO_WGMMA=1 sets it at the first call). -1: not read. */
static int fa__wg_off = -1;
static unsigned char fa__wg_dev_ok[FA__CU_MAX_DEVICES]; /* 0 unknown, 1 yes, 2 no */

/* The driver's tensor-map encoder through the runtime (no -lcuda needed); NULL if absent. */
static fa__wg_encode_fn fa__wg_encoder(void)
{
    static fa__wg_encode_fn fn;
    static int tried;
    if (!tried) { /* benign race: every thread finds the same pointer */
        void *f = NULL;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess)
            f = NULL;
#else
        if (cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q) != cudaSuccess)
            f = NULL;
#endif
        if (q != cudaDriverEntryPointSuccess) f = NULL;
        fn = (fa__wg_encode_fn)f;
        tried = 1;
    }
    return fn;
}

/* A [batch][heads][rows][dim] tensor map (strides in elements), boxes of 64 x box_rows. */
static int fa__wg_map(CUtensorMap *m, fa__wg_encode_fn enc, const void *base, int bf16, int64_t dim,
                      int64_t rows, int64_t heads, int64_t batch, int64_t s_row, int64_t s_head,
                      int64_t s_batch, int box_rows)
{
    cuuint64_t dims[4], strides[3];
    cuuint32_t box[4] = {64, (cuuint32_t)box_rows, 1, 1}, es[4] = {1, 1, 1, 1};
    const int64_t st[3] = {s_row, s_head, s_batch};
    int i;
    for (i = 0; i < 3; i++)
        if (st[i] <= 0 || st[i] % 8 || st[i] >= ((int64_t)1 << 38)) return 0;
    dims[0] = (cuuint64_t)dim; dims[1] = (cuuint64_t)rows; dims[2] = (cuuint64_t)heads;
    dims[3] = (cuuint64_t)batch;
    for (i = 0; i < 3; i++) strides[i] = (cuuint64_t)st[i] * 2u;
    return enc(m, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
               (void *)base, dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* Shared memory: Q 128 x D, STAGES x (K + V) BN x D, 1 KB for the alignment, barriers. */
template <typename T, int D, int BN, int STAGES, int MODE>
static cudaError_t fa__wg_launch(fa__wg_params *wp, dim3 grid, int dev, cudaStream_t st)
{
    constexpr size_t SMEM = 1024 + (size_t)(128 + 2 * STAGES * BN) * D * sizeof(T) + 256;
    void (*kern)(const fa__wg_params) = fa__wg_fwd_kernel<T, D, BN, STAGES, MODE>;
    static unsigned char attr_set[FA__CU_MAX_DEVICES];
    cudaError_t e;
    if (dev < 0 || dev >= FA__CU_MAX_DEVICES || !attr_set[dev]) {
        e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM);
        if (e != cudaSuccess) return e;
        if (dev >= 0 && dev < FA__CU_MAX_DEVICES) attr_set[dev] = 1;
    }
    kern<<<grid, 384, SMEM, st>>>(*wp);
    return cudaGetLastError();
}
/* Kernel variant, a hook for tests and A/B runs: 1 (default) = MODE 2 with the tile shapes
   measured best on an H100 (docs/cuda_notes.md: d64 128-key tiles x 3 stages, d128 128 x 2,
   d256 80 x 2); 0 = MODE 0 with 128/64-key tiles, kept as the simple reference. */
static int fa__wg_variant = 1;
template <typename T>
static cudaError_t fa__wg_dispatch(fa__wg_params *wp, int D, dim3 grid, int dev, cudaStream_t st)
{
    if (fa__wg_variant == 0) {
        if (D == 64) return fa__wg_launch<T, 64, 128, 3, 0>(wp, grid, dev, st);
        if (D == 128) return fa__wg_launch<T, 128, 128, 2, 0>(wp, grid, dev, st);
        return fa__wg_launch<T, 256, 64, 2, 0>(wp, grid, dev, st);
    }
    if (D == 64) return fa__wg_launch<T, 64, 128, 3, 2>(wp, grid, dev, st);
    if (D == 128) return fa__wg_launch<T, 128, 128, 2, 2>(wp, grid, dev, st);
    return fa__wg_launch<T, 256, 80, 2, 2>(wp, grid, dev, st);
}
/* Keys per tile (the K/V tensor maps' box height). */
static int fa__wg_bn(int D, int variant)
{
    return D != 256 ? 128 : variant ? 80 : 64;
}

/* Runs the forward on the wgmma kernel when the device is sm_90 with sm_90a code built in and
   the problem is one it covers; returns 0 (nothing launched) otherwise. */
static int fa__wg_try(const fa_attn_desc *d, const fa__cu_plan *pl, cudaStream_t stream, cudaError_t *err)
{
    const fa__cu_fwd_params *p = &pl->p;
    fa__wg_params wp;
    fa__wg_encode_fn enc;
    int dev = 0, D = p->dqk, ok;
    if (fa__wg_off < 0) {
        const char *env = getenv("FLASHATTN_CUDA_NO_WGMMA");
        fa__wg_off = env && env[0] == '1';
    }
    if (fa__wg_off) return 0;
    if (pl->dec || pl->splits != 1 || p->pack_gqa || pl->mod || /* decode shapes: the decode kernel */ p->use_window || p->cu_q || p->cu_k ||
        p->seqused_k || p->block_table || p->dqk != p->dv || (D != 64 && D != 128 && D != 256) ||
        p->sk < 1 || p->sq < 1 || d->k_type != d->q_type || d->v_type != d->q_type)
        return 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= FA__CU_MAX_DEVICES) return 0;
    if (!fa__wg_dev_ok[dev]) { /* sm_90 exactly, and a kernel built for it (sm_90a code) */
        int ma = 0, mi = 0;
        cudaFuncAttributes fa;
        ok = cudaDeviceGetAttribute(&ma, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&mi, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
             ma == 9 && mi == 0 &&
             cudaFuncGetAttributes(&fa, fa__wg_fwd_kernel<__nv_bfloat16, 128, 128, 2, 2>) == cudaSuccess &&
             fa.binaryVersion == 90 && fa.ptxVersion >= 90;
        fa__wg_dev_ok[dev] = ok ? 1 : 2;
    }
    if (fa__wg_dev_ok[dev] != 1 || !(enc = fa__wg_encoder())) return 0;
    memset(&wp, 0, sizeof wp);
    wp.p = *p;
    {
        const int bf16 = pl->bf16, bn = fa__wg_bn(D, fa__wg_variant);
        const int64_t kv_rows = p->sk;
        if (!fa__wg_map(&wp.tq, enc, p->q, bf16, D, p->sq, p->hq, p->batch, p->q_ss, p->q_sh, p->q_sb, 128) ||
            !fa__wg_map(&wp.tk, enc, p->k, bf16, D, kv_rows, p->hkv, p->batch, p->k_ss, p->k_sh, p->k_sb, bn) ||
            !fa__wg_map(&wp.tv, enc, p->v, bf16, D, kv_rows, p->hkv, p->batch, p->v_ss, p->v_sh, p->v_sb, bn))
            return 0;
    }
    {
        dim3 grid((unsigned)((p->sq + 127) / 128), (unsigned)p->hq, (unsigned)p->batch);
        *err = pl->bf16 ? fa__wg_dispatch<__nv_bfloat16>(&wp, D, grid, dev, stream)
                        : fa__wg_dispatch<__half>(&wp, D, grid, dev, stream);
    }
    return 1;
}

FLASHATTN_DEF fa_status fa_cuda_attn_workspace_size(const fa_attn_desc *d, size_t *bytes)
{
    fa__cu_plan pl;
    fa_status s;
    if (!bytes) return fa__fail(FA_ERR_NULL, "fa_cuda_attn_workspace_size: bytes is NULL");
    if ((s = fa__cu_make_plan(d, &pl)) != FA_OK) return s;
    *bytes = pl.ws_bytes;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_cuda_attn_num_splits(const fa_attn_desc *d, int64_t *splits)
{
    fa__cu_plan pl;
    fa_status s;
    if (!splits) return fa__fail(FA_ERR_NULL, "fa_cuda_attn_num_splits: splits is NULL");
    if ((s = fa__cu_make_plan(d, &pl)) != FA_OK) return s;
    *splits = pl.splits;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_cuda_attn_forward(const fa_attn_desc *d, cudaStream_t stream)
{
    fa__cu_plan pl;
    fa_status s;
    cudaError_t e;
    void *ws = NULL;
    int own_ws = 0;

    if ((s = fa__cu_make_plan(d, &pl)) != FA_OK) return s;
    fa__cu_last_path = 0;
    if (fa__wg_try(d, &pl, stream, &e)) { /* Hopper: the wgmma kernel took it */
        fa__cu_last_path = 1;
        if (e != cudaSuccess) return fa__cu_err(e, "fa_cuda_attn_forward launch (sm_90a)");
        return FA_OK;
    }
    if (pl.ws_bytes) {
        if (d->workspace) {
            if (d->workspace_size < pl.ws_bytes)
                return fa__fail(FA_ERR_INVALID, "workspace_size (%zu) < the %zu bytes needed",
                                d->workspace_size, pl.ws_bytes);
            ws = d->workspace;
        } else {
            if ((e = cudaMallocAsync(&ws, pl.ws_bytes, stream)) != cudaSuccess)
                return fa__cu_err(e, "cudaMallocAsync(split-KV workspace)");
            own_ws = 1;
        }
        {
            size_t rows_all = (size_t)pl.splits * (size_t)pl.p.batch * (size_t)pl.p.sq * (size_t)pl.p.hq;
            uintptr_t a = ((uintptr_t)ws + 15u) & ~(uintptr_t)15u;
            pl.p.o_part = (float *)a;
            pl.p.lse_part = pl.p.o_part + rows_all * (size_t)pl.p.dv;
        }
    }
    if (pl.dec && pl.p.k8)
        e = pl.bf16 ? fa__cu_dec_dispatch<__nv_bfloat16, true>(&pl, stream)
                    : fa__cu_dec_dispatch<__half, true>(&pl, stream);
    else if (pl.dec)
        e = pl.bf16 ? fa__cu_dec_dispatch<__nv_bfloat16, false>(&pl, stream)
                    : fa__cu_dec_dispatch<__half, false>(&pl, stream);
    else
        e = pl.bf16 ? fa__cu_dispatch<__nv_bfloat16>(&pl, stream) : fa__cu_dispatch<__half>(&pl, stream);
    if (e == cudaSuccess && pl.splits > 1) {
        fa__cu_merge_params mp;
        const fa__cu_fwd_params *p = &pl.p;
        memset(&mp, 0, sizeof mp);
        mp.o_parts = p->o_part; mp.lse_parts = p->lse_part;
        mp.op_type = FA_F32;
        mp.op_sh = p->dv; mp.op_ss = (int64_t)p->hq * p->dv; mp.op_sb = (int64_t)p->sq * mp.op_ss;
        mp.op_split = (int64_t)p->batch * mp.op_sb;
        mp.lp_ss = 1; mp.lp_sh = p->sq; mp.lp_sb = (int64_t)p->hq * p->sq;
        mp.lp_split = (int64_t)p->batch * mp.lp_sb;
        mp.o = p->o; mp.o_type = d->o_type;
        mp.o_sb = p->o_sb; mp.o_ss = p->o_ss; mp.o_sh = p->o_sh;
        mp.lse = p->lse; mp.l_sb = p->lse_sb; mp.l_ss = p->lse_ss; mp.l_sh = p->lse_sh;
        mp.cu_q = p->cu_q;
        mp.num_splits = pl.splits; mp.batch = p->batch; mp.seqlen = p->sq; mp.heads = p->hq;
        mp.dv = p->dv;
        e = fa__cu_launch_merge(&mp, stream, pl.cc >= 9);
    }
    if (own_ws) {
        cudaError_t e2 = cudaFreeAsync(ws, stream);
        if (e == cudaSuccess) e = e2;
    }
    if (e != cudaSuccess) return fa__cu_err(e, "fa_cuda_attn_forward launch");
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_cuda_attn_merge(const fa_merge_desc *m, cudaStream_t stream)
{
    fa__cu_merge_params mp;
    cudaError_t e;
    if (!m) return fa__fail(FA_ERR_NULL, "merge desc is NULL");
    if (m->num_splits < 1)
        return fa__fail(FA_ERR_INVALID, "num_splits (%lld) must be >= 1", (long long)m->num_splits);
    if (m->batch < 1 || m->seqlen < 1 || m->heads < 1 || m->head_dim_v < 1)
        return fa__fail(FA_ERR_INVALID, "batch, seqlen, heads and head_dim_v must be >= 1");
    if (!m->o_parts) return fa__fail(FA_ERR_NULL, "o_parts is NULL");
    if (!m->lse_parts) return fa__fail(FA_ERR_NULL, "lse_parts is NULL");
    if (!m->o) return fa__fail(FA_ERR_NULL, "o is NULL");
    if (m->o_parts_type != FA_F32 && m->o_parts_type != FA_F16 && m->o_parts_type != FA_BF16)
        return fa__fail(FA_ERR_DTYPE, "o_parts_type must be f32, f16 or bf16");
    if (m->o_type != FA_F32 && m->o_type != FA_F16 && m->o_type != FA_BF16)
        return fa__fail(FA_ERR_DTYPE, "o_type must be f32, f16 or bf16");
    if (m->batch > 0x7fffffff || m->seqlen > 0x7fffffff || m->heads > 0x7fffffff ||
        m->head_dim_v > 0x7fffffff || m->num_splits > 0x7fffffff)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_merge: sizes exceed int32");
    memset(&mp, 0, sizeof mp);
    mp.num_splits = (int)m->num_splits; mp.batch = (int)m->batch; mp.seqlen = (int)m->seqlen;
    mp.heads = (int)m->heads; mp.dv = (int)m->head_dim_v;
    mp.o_parts = m->o_parts; mp.op_type = (int)m->o_parts_type;
    mp.op_sh = m->o_parts_stride.head ? m->o_parts_stride.head : m->head_dim_v;
    mp.op_ss = m->o_parts_stride.seq ? m->o_parts_stride.seq : m->heads * m->head_dim_v;
    mp.op_sb = m->o_parts_stride.batch ? m->o_parts_stride.batch : m->seqlen * mp.op_ss;
    mp.op_split = m->o_parts_split_stride ? m->o_parts_split_stride : m->batch * mp.op_sb;
    mp.lse_parts = m->lse_parts;
    mp.lp_ss = m->lse_parts_stride.seq ? m->lse_parts_stride.seq : 1;
    mp.lp_sh = m->lse_parts_stride.head ? m->lse_parts_stride.head : m->seqlen;
    mp.lp_sb = m->lse_parts_stride.batch ? m->lse_parts_stride.batch : m->heads * m->seqlen;
    mp.lp_split = m->lse_parts_split_stride ? m->lse_parts_split_stride : m->batch * mp.lp_sb;
    mp.o = m->o; mp.o_type = (int)m->o_type;
    mp.o_sh = m->o_stride.head ? m->o_stride.head : m->head_dim_v;
    mp.o_ss = m->o_stride.seq ? m->o_stride.seq : m->heads * m->head_dim_v;
    mp.o_sb = m->o_stride.batch ? m->o_stride.batch : m->seqlen * mp.o_ss;
    mp.lse = m->lse;
    mp.l_ss = m->lse_stride.seq ? m->lse_stride.seq : 1;
    mp.l_sh = m->lse_stride.head ? m->lse_stride.head : m->seqlen;
    mp.l_sb = m->lse_stride.batch ? m->lse_stride.batch : m->heads * m->seqlen;
    if (mp.op_sh < 0 || mp.op_ss < 0 || mp.op_sb < 0 || mp.op_split < 0 || mp.lp_ss < 0 ||
        mp.lp_sh < 0 || mp.lp_sb < 0 || mp.lp_split < 0 || mp.o_sh < 0 || mp.o_ss < 0 ||
        mp.o_sb < 0 || mp.l_ss < 0 || mp.l_sh < 0 || mp.l_sb < 0)
        return fa__fail(FA_ERR_UNSUPPORTED, "fa_cuda_attn_merge: negative strides");
    if ((e = fa__cu_launch_merge(&mp, stream, 0)) != cudaSuccess)
        return fa__cu_err(e, "fa_cuda_attn_merge launch");
    return FA_OK;
}

#endif /* FLASHATTN_IMPLEMENTATION */
