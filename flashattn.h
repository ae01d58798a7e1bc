/* flashattn.h - exact tiled ("flash") attention and the pieces around it, in one C header.

   Exact FlashAttention-style attention on the CPU (online softmax, O(N) extra memory) with the
   features inference engines expect (GQA/MQA, causal, sliding window, softcap, ALiBi, varlen,
   KV cache, paged KV, LSE output, split-KV merge), plus the building blocks it is made of:
   bit-exact FP8/f16/bf16 conversion, sparse masks, lock-free ring queues, a task pool and
   cache-line-aligned hash tables. No dependencies beyond the C standard library (and pthreads
   where threads are used). An optional CUDA companion lives in flashattn_cuda.cuh.

   QUICK START
   -----------
   In exactly one C or C++ file:

       #define FLASHATTN_IMPLEMENTATION
       #include "flashattn.h"

   everywhere else just #include "flashattn.h". Then:

       fa_attn_desc d = {0};                     // zero = default/off for every optional field
       d.batch = 1; d.seqlen_q = d.seqlen_k = 1024;
       d.heads_q = 8; d.heads_kv = 8; d.head_dim = 64;
       d.q = q; d.k = k; d.v = v; d.o = o;        // float [batch][seq][heads][dim] (BSHD)
       d.causal = 1;
       fa_status s = fa_attn_forward(&d);
       if (s != FA_OK) fprintf(stderr, "%s: %s\n", fa_status_str(s), fa_last_error());

   CONFIGURATION (define before including the header)
   -------------
   FLASHATTN_IMPLEMENTATION   compile the implementation into this translation unit (one TU only)
   FLASHATTN_STATIC           make every function static (a private copy per TU)
   FLASHATTN_DEF              linkage prefix of public functions (default: extern, or static)
   FLASHATTN_MALLOC(sz)       allocator used for every allocation (default malloc)
   FLASHATTN_REALLOC(p,sz)    (default realloc)
   FLASHATTN_FREE(p)          (default free)
   FLASHATTN_ASSERT(x)        internal invariant checks (default assert); never used for input checks
   FLASHATTN_NO_SIMD          use only the portable scalar paths
   FLASHATTN_NO_THREADS       build without threads (queues/pool unavailable, attention runs serially)

   SECTIONS (declarations first, implementation after FLASHATTN_IMPLEMENTATION, same order)
   --------
   core   status codes, last-error detail, allocator hooks, aligned allocation, dtypes, CPU features
   fp8    f16/bf16/FP8 (OCP E4M3FN, E5M2) conversion, bulk conversion, scaling recipes
   attn   fa_attn_desc, fa_attn_forward, fa_attn_reference, fa_attn_merge, memory estimates
   mask   block-sparse masks (filled in by the mask work)
   queue  lock-free SPSC/MPMC ring queues (filled in by the queue work)
   pool   task pool on the MPMC queue (filled in by the pool work)
   hash   aligned open-addressing map, LRU, concurrent map (filled in by the hash work)

   DESIGN NOTES (where this header departs from or sharpens the DESIGN.md sketch)
   ------------
   - Index arrays handed to attention (cu_seqlens_q/k, seqused_k, block_table) are int32_t, as in
     FlashAttention, FlashInfer and vLLM, so an engine can pass its tensors without a copy.
     Extents and strides are int64_t.
   - Strides are in elements. A zero stride means "packed" (the default layout), so a
     zero-initialised descriptor describes contiguous BSHD tensors; broadcasting through a zero
     stride is therefore not expressible.
   - A query row that sees no key (fully masked, or a sequence with no keys) produces an output
     of exactly 0 and an LSE of -inf: the log of an empty sum. This is what fa_attn_merge expects
     of an empty partial result, so merging it with anything leaves the other part unchanged.
     (FlashAttention 2 writes +inf there; we prefer the mathematically consistent value.)
   - Non-finite inputs never crash and never touch rows that do not see them: a NaN logit makes
     its row's output and LSE NaN; an infinite logit gives NaN or Inf in its row (inf - inf).

   VERSION HISTORY
   ---------------
   0.1.0  core, f16/bf16 conversion, exact tiled attention (forward), reference, merge

   LICENSE: MIT or public domain, your choice; see the end of this file.
*/
#ifndef FLASHATTN_H
#define FLASHATTN_H

#define FLASHATTN_VERSION_MAJOR 0
#define FLASHATTN_VERSION_MINOR 1
#define FLASHATTN_VERSION_PATCH 0
#define FLASHATTN_VERSION_STRING "0.1.0"
/* One number for comparisons: major*10000 + minor*100 + patch. */
#define FLASHATTN_VERSION (FLASHATTN_VERSION_MAJOR * 10000 + FLASHATTN_VERSION_MINOR * 100 + \
                           FLASHATTN_VERSION_PATCH)

#include <stddef.h>
#include <stdint.h>

#ifndef FLASHATTN_DEF
#ifdef FLASHATTN_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define FLASHATTN_DEF static __attribute__((unused)) /* a private copy need not use it all */
#else
#define FLASHATTN_DEF static
#endif
#else
#define FLASHATTN_DEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================
   core
   ============================================================================================
   Every fallible call returns fa_status; FA_OK is 0. fa_status_str() names a status and
   fa_last_error() returns a human-readable detail for the most recent failure on the calling
   thread (e.g. "heads_q (12) is not a multiple of heads_kv (5)"). Nothing in the library prints,
   exits or aborts on bad input. */

typedef enum fa_status {
    FA_OK = 0,
    FA_ERR_NULL,          /* a required pointer is NULL */
    FA_ERR_INVALID,       /* a value is out of its allowed range (negative/zero size, bad flag) */
    FA_ERR_SHAPE,         /* sizes are inconsistent with each other (heads_q % heads_kv, dims) */
    FA_ERR_DTYPE,         /* a dtype is unknown or not allowed in this position */
    FA_ERR_RANGE,         /* an offset or index points outside its tensor (cu_seqlens, pages) */
    FA_ERR_OVERFLOW,      /* a size product overflows int64_t / size_t */
    FA_ERR_NOMEM,         /* an allocation failed; nothing leaked, outputs untouched */
    FA_ERR_ALIGN,         /* a buffer is not aligned as required */
    FA_ERR_UNSUPPORTED,   /* valid input this build or backend does not implement */
    FA_ERR_FULL,          /* a bounded container is full */
    FA_ERR_EMPTY,         /* a container is empty */
    FA_ERR_TIMEOUT,       /* a blocking call ran out of time */
    FA_ERR_CLOSED,        /* the object was shut down / closed */
    FA_ERR_NOT_FOUND,     /* a key is not present */
    FA_ERR_EXISTS,        /* a key is already present */
    FA_ERR_BUSY,          /* the object is in use (e.g. destroy with waiters) */
    FA_ERR_AGAIN,         /* transient failure; retrying may succeed */
    FA_ERR_THREAD,        /* creating a thread or a sync primitive failed */
    FA_ERR_CUDA,          /* a CUDA runtime call failed (flashattn_cuda.cuh) */
    FA_ERR_INTERNAL,      /* an internal invariant failed: a bug, please report */
    FA_STATUS_COUNT_
} fa_status;

FLASHATTN_DEF const char *fa_status_str(fa_status s);  /* "FA_ERR_SHAPE", never NULL */
FLASHATTN_DEF const char *fa_last_error(void);         /* detail of this thread's last failure */
FLASHATTN_DEF void        fa_clear_error(void);

/* Allocation. Every allocation the library makes goes through FLASHATTN_MALLOC/REALLOC/FREE
   (compile time) or, where a function takes one, a caller's fa_allocator (run time). */
typedef struct fa_allocator {
    void *(*alloc)(void *user, size_t bytes, size_t align); /* NULL on failure */
    void  (*free)(void *user, void *ptr, size_t bytes);     /* bytes as passed to alloc */
    void   *user;
} fa_allocator;

/* Aligned allocation through FLASHATTN_MALLOC. align must be a power of two (0 = 64).
   Returns NULL on failure or bad arguments. fa_aligned_free(NULL) is a no-op. */
FLASHATTN_DEF void *fa_aligned_alloc(size_t bytes, size_t align);
FLASHATTN_DEF void  fa_aligned_free(void *p);

#ifndef FA_CACHELINE
#if defined(__APPLE__) && defined(__aarch64__)
#define FA_CACHELINE 128
#else
#define FA_CACHELINE 64
#endif
#endif

/* Element types. Binding names; more may follow at the end. */
typedef enum fa_dtype {
    FA_F32 = 0,   /* IEEE binary32 */
    FA_F16,       /* IEEE binary16 */
    FA_BF16,      /* bfloat16 (top half of binary32) */
    FA_E4M3,      /* OCP OFP8 E4M3FN: no infinities, 0x7f/0xff are NaN, max 448 */
    FA_E5M2,      /* OCP OFP8 E5M2: IEEE-like, max 57344 */
    FA_DTYPE_COUNT_
} fa_dtype;

FLASHATTN_DEF size_t      fa_dtype_size(fa_dtype t);   /* bytes per element; 0 if unknown */
FLASHATTN_DEF const char *fa_dtype_name(fa_dtype t);   /* "f32", ...; "?" if unknown */

/* CPU features, detected once at run time. The SIMD paths of every section dispatch on these.
   fa_cpu_features_override() restricts the set (mask & detected) so tests and benchmarks can
   force each path; pass ~0u to restore. FLASHATTN_NO_SIMD makes the detected set empty. */
enum {
    FA_CPU_SSE2        = 1u << 0,
    FA_CPU_AVX         = 1u << 1,
    FA_CPU_AVX2        = 1u << 2,
    FA_CPU_FMA         = 1u << 3,
    FA_CPU_F16C        = 1u << 4,
    FA_CPU_AVX512F     = 1u << 5,
    FA_CPU_AVX512BW    = 1u << 6,
    FA_CPU_AVX512VL    = 1u << 7,
    FA_CPU_AVX512DQ    = 1u << 8,
    FA_CPU_AVX512_BF16 = 1u << 9,
    FA_CPU_AVX512_FP16 = 1u << 10,
    FA_CPU_NEON        = 1u << 16,
    FA_CPU_NEON_FP16   = 1u << 17,
    FA_CPU_NEON_BF16   = 1u << 18
};
FLASHATTN_DEF unsigned fa_cpu_features(void);          /* detected & override mask */
FLASHATTN_DEF unsigned fa_cpu_features_detected(void); /* what the hardware + OS offer */
FLASHATTN_DEF void     fa_cpu_features_override(unsigned mask);
FLASHATTN_DEF int      fa_cpu_count(void);             /* online logical CPUs, >= 1 */

/* Forward declarations of objects owned by later sections. */
typedef struct fa_mask fa_mask;
typedef struct fa_pool fa_pool;

/* ============================================================================================
   fp8
   ============================================================================================
   Conversions among f32, f16, bf16 and OCP OFP8 v1.0 (E4M3FN, E5M2), bulk conversion, amax
   reductions and the FP8 scaling recipes used to train and serve in FP8.

   Guarantees
   - Narrowing conversions round to nearest, ties to even (RNE), on the exact input value.
   - f32 -> E4M3/E5M2 is bit-for-bit NVIDIA cuda_fp8.h's __nv_cvt_float_to_fp8 (host path):
     RNE first, then overflow. saturate != 0 is __NV_SATFINITE: overflow and +-Inf give +-max
     (448 / 57344). saturate == 0 is __NV_NOSAT: overflow gives NaN (E4M3 has no Inf) or +-Inf
     (E5M2). Any NaN input gives the canonical 0x7F (sign dropped, as cuda_fp8.h does). Zero and
     underflow keep the sign. Tested on all 2^32 inputs in both formats and both modes.
   - E4M3/E5M2 -> f32 is exact; NaN codes decode to the canonical 0x7FFFFFFF (as cuda_fp8.h).
   - f16/bf16 -> FP8 decode exactly to f32 first, so they round once (no double rounding).
   - f32 -> f16 matches x86 F16C (vcvtps2ph, RNE): overflow -> Inf, NaN -> quiet NaN keeping the
     top payload bits. f16 -> f32 is exact and quiets a signalling NaN (as vcvtph2ps).
     f32 -> bf16 is RNE with NaN -> quiet NaN (bit 6 set); bf16 -> f32 is exact (a shift).
   - fa_convert computes dst[i] = convert(src[i] * scale): src[i] is decoded exactly to f32,
     multiplied by scale in f32 (RNE; skipped when scale == 1, so NaN payloads survive an
     f32 -> f32 copy), then rounded once to dst_type. That is Transformer Engine's cast. The
     vectorized paths (AVX-512, AVX2+F16C, NEON) are bit-identical to the scalar path, assuming
     the default floating-point environment (round-to-nearest, no FTZ/DAZ).
   - amax reductions ignore NaN (as fmaxf and Transformer Engine's amax kernels do); Inf counts.
   - Scaling-recipe convention (Transformer Engine's): quantize multiplies by `scale` and
     saturates; dequantize multiplies by `scale_inv` = 1/scale, which is what gets stored. */

FLASHATTN_DEF uint16_t fa_f32_to_f16(float x);    /* RNE; overflow -> inf; NaN stays NaN */
FLASHATTN_DEF float    fa_f16_to_f32(uint16_t h); /* exact; sNaN is quieted */
FLASHATTN_DEF uint16_t fa_f32_to_bf16(float x);   /* RNE; NaN stays NaN (quiet) */
FLASHATTN_DEF float    fa_bf16_to_f32(uint16_t h);/* exact */
FLASHATTN_DEF float    fa_e4m3_to_f32(uint8_t v); /* exact; 0x7f/0xff -> NaN */
FLASHATTN_DEF float    fa_e5m2_to_f32(uint8_t v); /* exact; 0x7c/0xfc -> +-inf, 0x7d.. -> NaN */
FLASHATTN_DEF uint8_t  fa_f32_to_e4m3(float x, int saturate);  /* cuda_fp8.h, see above */
FLASHATTN_DEF uint8_t  fa_f32_to_e5m2(float x, int saturate);
FLASHATTN_DEF uint8_t  fa_f16_to_e4m3(uint16_t h, int saturate); /* one rounding */
FLASHATTN_DEF uint8_t  fa_f16_to_e5m2(uint16_t h, int saturate);
FLASHATTN_DEF uint8_t  fa_bf16_to_e4m3(uint16_t h, int saturate);
FLASHATTN_DEF uint8_t  fa_bf16_to_e5m2(uint16_t h, int saturate);

#define FA_E4M3_MAX 448.0f    /* largest finite E4M3FN */
#define FA_E5M2_MAX 57344.0f  /* largest finite E5M2 */
FLASHATTN_DEF float fa_fp8_max(fa_dtype t);       /* 448, 57344; 0 for other types */

/* E8M0 (OCP MX shared scale): an 8-bit biased exponent, value 2^(e-127), 0xFF = NaN, no sign,
   no zero. Conversion from f32 is cuda_fp8.h's __nv_cvt_float_to_e8m0: round_up != 0 rounds
   |x| up to a power of two (cudaRoundPosInf), round_up == 0 truncates toward zero
   (cudaRoundZero); saturate != 0 turns overflow and Inf into 0xFE (2^127); NaN -> 0xFF;
   zero and tiny inputs -> 0x00 (2^-127). */
FLASHATTN_DEF uint8_t fa_f32_to_e8m0(float x, int round_up, int saturate);
FLASHATTN_DEF float   fa_e8m0_to_f32(uint8_t e);  /* exact 2^(e-127); 0xFF -> NaN (0x7FFF0000) */

/* Bulk conversion: dst[i] = src[i] * scale rounded to dst_type, for any pair of the five
   dtypes. saturate applies to E4M3/E5M2 destinations (f16/bf16 overflow to Inf).
   Errors (nothing written): FA_ERR_DTYPE unknown dtype; FA_ERR_NULL dst/src NULL with n > 0;
   FA_ERR_INVALID scale zero or not finite, or buffers that overlap (except dst == src with
   dst elements no larger than src elements: in-place conversion works); FA_ERR_ALIGN a buffer
   not aligned to its element size; FA_ERR_OVERFLOW n * element size overflows size_t.
   n == 0 is FA_OK and touches nothing (pointers may then be NULL). f32 outputs of 8 MiB or
   more are written with streaming (cache-bypassing) stores on x86. */
FLASHATTN_DEF fa_status fa_convert(void *dst, fa_dtype dst_type, const void *src,
                                   fa_dtype src_type, size_t n, float scale, int saturate);

/* Stochastic rounding (for gradients): like fa_convert, but dst_type (F16, BF16, E4M3, E5M2)
   gets the neighbour above |x| with probability (|x|-lo)/(hi-lo) and the one below otherwise,
   so E[result] = x. Element i draws 32 random bits from a counter-based hash of
   (seed, offset + i): results are reproducible, independent of path, thread count or chunking
   (convert a tensor in pieces by advancing offset). Below the destination's subnormal range the
   probability is resolved to 2^-32. Scalar code. Same errors as fa_convert, plus
   FA_ERR_DTYPE for an f32 destination. */
FLASHATTN_DEF fa_status fa_convert_sr(void *dst, fa_dtype dst_type, const void *src,
                                      fa_dtype src_type, size_t n, float scale, int saturate,
                                      uint64_t seed, uint64_t offset);

/* Largest |x| over src[0..n), NaN ignored; 0 when n == 0 or all NaN. Errors: FA_ERR_NULL,
   FA_ERR_DTYPE, FA_ERR_ALIGN, FA_ERR_OVERFLOW. */
FLASHATTN_DEF fa_status fa_amax(const void *src, fa_dtype src_type, size_t n, float *amax);

/* Name of the path fa_convert and fa_amax use now: "avx512", "avx2", "neon" or "scalar". */
FLASHATTN_DEF const char *fa_convert_path(void);

/* ---- scaling recipes ---------------------------------------------------------------------
   Per-tensor ("current") scaling, Transformer Engine's Float8CurrentScaling:
       scale = fp8_max * 2^-margin / max(amax, epsilon)   (f32 division, RNE)
   with TE's special cases: amax zero or Inf -> scale 1; scale overflowing to Inf -> FLT_MAX;
   NaN -> 1; pow2_scale rounds the scale down to a power of two (clears its mantissa).
   Per-block scaling (1 x N for activations, N x N for weights, as DeepSeek-V3's 1x128 and
   128x128): the same rule per block of a row-major matrix; one scale_inv per block. */
typedef struct fa_fp8_scaling {
    fa_dtype fp8_type;    /* FA_E4M3 or FA_E5M2 (required) */
    int      margin;      /* headroom in powers of two, >= 0; 0 = none */
    int      pow2_scale;  /* nonzero: power-of-two scales (TE force_pow_2_scales); 0 = off */
    float    epsilon;     /* lower bound applied to amax (TE amax_epsilon), >= 0; 0 = none */
} fa_fp8_scaling;

/* The quantization multiplier for a given amax (rules above). */
FLASHATTN_DEF fa_status fa_fp8_scale_from_amax(const fa_fp8_scaling *s, float amax, float *scale);

/* Per tensor: amax of src, scale from it, dst (fp8_type, n bytes) = sat(src * scale).
   Writes *scale_inv (= 1/scale, the dequantization multiplier) and, if amax_out is not NULL,
   the amax. */
FLASHATTN_DEF fa_status fa_fp8_quantize_tensor(const fa_fp8_scaling *s, void *dst,
                                               const void *src, fa_dtype src_type, size_t n,
                                               float *scale_inv, float *amax_out);
/* dst (dst_type) = decode(src) * scale_inv; for every per-tensor recipe (current, delayed). */
FLASHATTN_DEF fa_status fa_fp8_dequantize(void *dst, fa_dtype dst_type, const void *src,
                                          fa_dtype fp8_type, size_t n, float scale_inv);

/* A row-major matrix cut into blocks; the FP8 matrix uses the same ld as the source. Block
   (i, j) covers rows i*block_rows .. and columns j*block_cols ..; edge blocks may be smaller.
   scale_inv arrays are [ceil(rows/block_rows)][ceil(cols/block_cols)], row-major. */
typedef struct fa_fp8_blocks {
    int64_t rows, cols;   /* matrix extents, >= 1 */
    int64_t ld;           /* elements between consecutive rows, >= cols; 0 = cols */
    int64_t block_rows;   /* 1 = 1 x N blocks; 128 = 128 x 128 (with block_cols 128); 0 = 1 */
    int64_t block_cols;   /* 0 = 128 */
} fa_fp8_blocks;

FLASHATTN_DEF fa_status fa_fp8_block_scale_count(const fa_fp8_blocks *b, size_t *count);
FLASHATTN_DEF fa_status fa_fp8_quantize_blocks(const fa_fp8_scaling *s, const fa_fp8_blocks *b,
                                               void *dst, const void *src, fa_dtype src_type,
                                               float *scale_inv);
FLASHATTN_DEF fa_status fa_fp8_dequantize_blocks(const fa_fp8_blocks *b, void *dst,
                                                 fa_dtype dst_type, const void *src,
                                                 fa_dtype fp8_type, const float *scale_inv);

/* MXFP8 (OCP Microscaling v1.0): blocks of FA_MX_BLOCK consecutive elements along each row
   share one E8M0 scale X; element = sat(x / X) in E4M3 or E5M2 (x / X is exact: X is a power
   of two). The choice of X from the block's amax:
     FA_MX_SCALE_UP    X = e8m0(amax / fp8_max) rounded up (cudaRoundPosInf): nothing clips.
                       NVIDIA's MXFP8 recipe (Transformer Engine, cuBLAS). The default.
     FA_MX_SCALE_ZERO  X = e8m0(amax / fp8_max) rounded toward zero (cudaRoundZero): a finer
                       scale, the block's largest values may clip to fp8_max.
     FA_MX_SCALE_OCP   X = 2^(floor(log2(amax)) - emax), emax = 8 (E4M3) or 15 (E5M2): the OCP
                       spec's rule (section 6.3), clipping above fp8_max.
   An all-zero block gets X = 2^-127 (code 0). Scales are [rows][ceil(cols/32)] bytes. */
#define FA_MX_BLOCK 32
typedef enum fa_mx_scale_rule { FA_MX_SCALE_UP = 0, FA_MX_SCALE_ZERO, FA_MX_SCALE_OCP } fa_mx_scale_rule;
typedef struct fa_mx_blocks {
    int64_t rows, cols;     /* extents, >= 1 */
    int64_t ld;             /* elements between rows (source and FP8 matrix); 0 = cols */
    fa_mx_scale_rule rule;  /* 0 = FA_MX_SCALE_UP */
} fa_mx_blocks;

FLASHATTN_DEF fa_status fa_mx_scale_count(const fa_mx_blocks *b, size_t *count);
FLASHATTN_DEF fa_status fa_mx_quantize(const fa_mx_blocks *b, fa_dtype fp8_type, void *dst,
                                       const void *src, fa_dtype src_type, uint8_t *scales);
FLASHATTN_DEF fa_status fa_mx_dequantize(const fa_mx_blocks *b, void *dst, fa_dtype dst_type,
                                         const void *src, fa_dtype fp8_type,
                                         const uint8_t *scales);

/* Delayed scaling (Transformer Engine's DelayedScaling): a tensor is quantized with a scale
   computed from the amaxes of earlier steps. Each step:
     1. fa_fp8_delayed_quantize: dst = sat(src * scale) with the current scale; the step's amax
        is max-ed into amax_history[0]; *scale_inv gets the 1/scale that dequantizes dst.
     2. fa_fp8_delayed_update (once per step, after the quantizations):
          amax = max(amax_history[0..len))      algo FA_AMAX_MAX ("max", NaN ignored)
               = amax_history[0]                algo FA_AMAX_MOST_RECENT
          scale = fp8_max * 2^-margin / amax if amax is finite and > 0, else unchanged
          the history rolls by one (entry i+1 -> i, entry 0 -> len-1) and entry 0 is zeroed.
   The struct is plain data: init it, keep it with the tensor, save/restore it freely. */
#define FA_FP8_HISTORY_MAX 1024
typedef enum fa_amax_algo { FA_AMAX_MAX = 0, FA_AMAX_MOST_RECENT } fa_amax_algo;
typedef struct fa_fp8_delayed {
    fa_dtype     fp8_type;     /* FA_E4M3 or FA_E5M2 */
    int          history_len;  /* 1 .. FA_FP8_HISTORY_MAX (TE default 1024) */
    fa_amax_algo algo;         /* how amax is taken from the history */
    int          margin;       /* powers of two of headroom, >= 0 */
    float        scale;        /* current quantization multiplier; 1 after init */
    float        scale_inv;    /* 1 / scale */
    float        amax_history[FA_FP8_HISTORY_MAX]; /* [0] = this step; [1..len) older steps */
} fa_fp8_delayed;

FLASHATTN_DEF fa_status fa_fp8_delayed_init(fa_fp8_delayed *d, fa_dtype fp8_type,
                                            int history_len, fa_amax_algo algo, int margin);
FLASHATTN_DEF fa_status fa_fp8_delayed_quantize(fa_fp8_delayed *d, void *dst, const void *src,
                                                fa_dtype src_type, size_t n, float *scale_inv);
FLASHATTN_DEF fa_status fa_fp8_delayed_update(fa_fp8_delayed *d);

/* ============================================================================================
   attn
   ============================================================================================
   Exact attention, computed tile by tile with an online softmax (FlashAttention-2, Dao 2023,
   Algorithm 1): extra memory is O(tile), never O(seqlen_q x seqlen_k).

   For every batch b, query head h, query i (0-based within its sequence) and key j:
       s   = softmax_scale * dot(q[b,i,h,:], k[b,j,h/group,:])      group = heads_q / heads_kv
       s   = softcap * tanh(s / softcap)                             if softcap > 0
       s  -= alibi_slope[b,h] * |i + sk - sq - j|                    if alibi_slopes
       key j is visible iff j < sk and
           j <= i + sk - sq                                          if causal
           i + sk - sq - window_left <= j <= i + sk - sq + window_right   if use_window
                                                   (a negative window side is unbounded)
       o[b,i,h,:] = sum_j softmax_j(s) * v[b,j,h/group,:]   over visible j
       lse[b,h,i] = log(sum_j exp(s))                       (natural log; -inf if none visible)
   sq and sk are the query and key counts of sequence b, so causal and window masks are aligned
   to the bottom-right corner as in FlashAttention >= 2.1 (the last query sees the last key).

   Tensor views: element (b, t, h, d) of a view lives at
       data + b*stride.batch + t*stride.seq + h*stride.head + d       (elements, head_dim contiguous)
   Zero strides mean packed BSHD: head = dim, seq = heads*dim, batch = seqlen*heads*dim. BHSD
   and packed QKV buffers are described by setting the strides; nothing is copied.

   Variable lengths: with cu_seqlens_q (and/or cu_seqlens_k) the sequences are packed one after
   another along the token axis: sequence b owns tokens cu[b] .. cu[b+1]-1, the batch stride is
   ignored, and seqlen_q (seqlen_k) is the maximum length, 0 = derive it from the offsets.
   KV cache: seqused_k[b] keys of sequence b are valid (the rest of its capacity is ignored).
   Paged KV: block_table[b*block_table_stride + t/page_size] names the page holding key t of
   sequence b, at slot t % page_size; K/V are then [num_pages][page_size][heads_kv][dim] views
   whose batch stride steps from page to page. */

/* Tile shape of the CPU kernel: queries x keys. Masks default to the same block size. */
#define FA_ATTN_BLOCK_Q 64
#define FA_ATTN_BLOCK_K 64
#define FA_ATTN_MAX_HEAD_DIM 256

typedef struct fa_strides {
    int64_t batch;  /* elements between sequences (pages when paged); 0 = packed */
    int64_t seq;    /* elements between tokens; 0 = packed */
    int64_t head;   /* elements between heads; 0 = packed (head_dim) */
} fa_strides;

typedef struct fa_attn_desc {
    /* ---- shape (required unless noted) ---- */
    int64_t batch;        /* sequences, >= 1 */
    int64_t seqlen_q;     /* queries per sequence (>= 1); varlen: the maximum, 0 = derive */
    int64_t seqlen_k;     /* keys per sequence (>= 0); varlen: the maximum, 0 = derive;
                             paged: capacity per sequence in keys */
    int64_t heads_q;      /* query heads, >= 1 */
    int64_t heads_kv;     /* key/value heads; heads_q % heads_kv == 0; 0 = heads_q */
    int64_t head_dim;     /* 1 .. FA_ATTN_MAX_HEAD_DIM */
    int64_t head_dim_v;   /* value/output dim, 1 .. FA_ATTN_MAX_HEAD_DIM; 0 = head_dim */

    /* ---- tensors ---- */
    const void *q;  fa_dtype q_type;  fa_strides q_stride;   /* [b][sq][heads_q][head_dim] */
    const void *k;  fa_dtype k_type;  fa_strides k_stride;   /* [b][sk][heads_kv][head_dim] */
    const void *v;  fa_dtype v_type;  fa_strides v_stride;   /* [b][sk][heads_kv][head_dim_v] */
    void       *o;  fa_dtype o_type;  fa_strides o_stride;   /* [b][sq][heads_q][head_dim_v] */
    float      *lse;                  /* optional; NULL = not written */
    fa_strides  lse_stride;           /* 0 = packed [b][heads_q][sq]; varlen: [heads_q][total_q] */

    /* FP8 K/V (k_type/v_type FA_E4M3 or FA_E5M2): value = decoded * scale.
       The per-head arrays, when given, override the per-tensor value. */
    float        k_scale, v_scale;    /* dequant multipliers; 0 = 1 */
    const float *k_head_scale;        /* [heads_kv] or NULL */
    const float *v_head_scale;        /* [heads_kv] or NULL */

    /* ---- scores ---- */
    float        softmax_scale;       /* 0 = 1/sqrt(head_dim) */
    float        softcap;             /* > 0 enables s = softcap*tanh(s/softcap); 0 = off */
    const float *alibi_slopes;        /* [heads_q] or [batch][heads_q]; NULL = off */
    int64_t      alibi_batch_stride;  /* elements between batches' slopes; 0 = shared */
    int          causal;              /* nonzero: bottom-right aligned causal mask */
    int          use_window;          /* nonzero: sliding window (window_left, window_right) */
    int64_t      window_left;         /* keys visible left of the diagonal; < 0 = unbounded */
    int64_t      window_right;        /* keys visible right of the diagonal; < 0 = unbounded */

    /* ---- variable lengths, KV cache, paged KV ---- */
    const int32_t *cu_seqlens_q;      /* [batch+1] token offsets; NULL = fixed seqlen_q */
    const int32_t *cu_seqlens_k;      /* [batch+1] token offsets; NULL = fixed seqlen_k */
    const int32_t *seqused_k;         /* [batch] valid keys per sequence; NULL = all */
    const int32_t *block_table;       /* [batch][block_table_stride] page ids; NULL = not paged */
    int64_t        block_table_stride;/* entries per sequence; 0 = ceil(seqlen_k/page_size) */
    int64_t        page_size;         /* keys per page, >= 1 when paged */
    int64_t        num_pages;         /* pages in the K/V pools, >= 1 when paged */

    /* ---- sparse mask (mask section) ---- */
    const fa_mask *mask;              /* NULL = dense */

    /* ---- execution ---- */
    int64_t num_splits;               /* KV splits per query tile (split-KV); 0 = choose */
    fa_pool *pool;                    /* worker threads; NULL = the calling thread only */
    void    *workspace;               /* scratch of fa_attn_workspace_size() bytes, 64-byte
                                         aligned; NULL = allocate and free inside the call */
    size_t   workspace_size;          /* bytes at workspace */
} fa_attn_desc;

/* ============================================================================================
   mask
   ============================================================================================ */

/* ============================================================================================
   queue
   ============================================================================================ */

/* ============================================================================================
   pool
   ============================================================================================ */

/* ============================================================================================
   hash
   ============================================================================================ */

#ifdef __cplusplus
}
#endif
#endif /* FLASHATTN_H */

/* ********************************************************************************************
   IMPLEMENTATION
   ******************************************************************************************** */
#ifdef FLASHATTN_IMPLEMENTATION
#ifndef FLASHATTN_IMPLEMENTATION_DONE
#define FLASHATTN_IMPLEMENTATION_DONE

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef FLASHATTN_MALLOC
#include <stdlib.h>
#define FLASHATTN_MALLOC(sz) malloc(sz)
#define FLASHATTN_REALLOC(p, sz) realloc(p, sz)
#define FLASHATTN_FREE(p) free(p)
#endif
#ifndef FLASHATTN_ASSERT
#include <assert.h>
#define FLASHATTN_ASSERT(x) assert(x)
#endif

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#elif !defined(FLASHATTN_NO_THREADS) || defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#if !defined(FLASHATTN_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define FA__X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif
#if !defined(FLASHATTN_NO_SIMD) && (defined(__aarch64__) || defined(__ARM_NEON))
#define FA__NEON 1
#include <arm_neon.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================
   core (implementation)
   ============================================================================================ */

#if defined(__cplusplus)
#define FA__TLS thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define FA__TLS _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define FA__TLS __thread
#elif defined(_MSC_VER)
#define FA__TLS __declspec(thread)
#else
#define FA__TLS /* no TLS: the last-error detail is shared between threads */
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FA__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define FA__UNUSED __attribute__((unused))
#define FA__LIKELY(x) __builtin_expect(!!(x), 1)
#define FA__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define FA__PRINTF(f, a)
#define FA__UNUSED
#define FA__LIKELY(x) (x)
#define FA__UNLIKELY(x) (x)
#endif

#define FA__ERRMSG_CAP 256
static FA__TLS char fa__errmsg[FA__ERRMSG_CAP];

FLASHATTN_DEF const char *fa_status_str(fa_status s)
{
    static const char *const names[FA_STATUS_COUNT_] = {
        "FA_OK", "FA_ERR_NULL", "FA_ERR_INVALID", "FA_ERR_SHAPE", "FA_ERR_DTYPE",
        "FA_ERR_RANGE", "FA_ERR_OVERFLOW", "FA_ERR_NOMEM", "FA_ERR_ALIGN", "FA_ERR_UNSUPPORTED",
        "FA_ERR_FULL", "FA_ERR_EMPTY", "FA_ERR_TIMEOUT", "FA_ERR_CLOSED", "FA_ERR_NOT_FOUND",
        "FA_ERR_EXISTS", "FA_ERR_BUSY", "FA_ERR_AGAIN", "FA_ERR_THREAD", "FA_ERR_CUDA",
        "FA_ERR_INTERNAL"};
    if ((int)s < 0 || (int)s >= (int)FA_STATUS_COUNT_) return "FA_ERR_UNKNOWN";
    return names[s];
}

FLASHATTN_DEF const char *fa_last_error(void) { return fa__errmsg; }
FLASHATTN_DEF void fa_clear_error(void) { fa__errmsg[0] = '\0'; }

/* Records a detail message for this thread and returns s, so a check reads
   `if (bad) return fa__fail(FA_ERR_X, "what (%lld)", v);`. */
static FA__UNUSED FA__PRINTF(2, 3) fa_status fa__fail(fa_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fa__errmsg, sizeof fa__errmsg, fmt, ap);
    va_end(ap);
    return s;
}

/* Overflow-checked size arithmetic. Each returns 1 on overflow. */
static FA__UNUSED int fa__mul_i64(int64_t a, int64_t b, int64_t *r)
{
    if (a < 0 || b < 0) return 1;
    if (a != 0 && b > INT64_MAX / a) return 1;
    *r = a * b;
    return 0;
}
static FA__UNUSED int fa__add_i64(int64_t a, int64_t b, int64_t *r)
{
    if (a < 0 || b < 0 || a > INT64_MAX - b) return 1;
    *r = a + b;
    return 0;
}
static FA__UNUSED int fa__mul_size(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *r = a * b;
    return 0;
}
static FA__UNUSED int fa__add_size(size_t a, size_t b, size_t *r)
{
    if (a > SIZE_MAX - b) return 1;
    *r = a + b;
    return 0;
}

/* Aligned allocation: over-allocate by align + one pointer and store the original pointer just
   below the returned block. */
FLASHATTN_DEF void *fa_aligned_alloc(size_t bytes, size_t align)
{
    size_t total;
    unsigned char *raw, *p;
    if (align == 0) align = 64;
    if ((align & (align - 1)) != 0) return NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (fa__add_size(bytes, align + sizeof(void *), &total)) return NULL;
    raw = (unsigned char *)FLASHATTN_MALLOC(total);
    if (!raw) return NULL;
    p = raw + sizeof(void *);
    p += (align - (size_t)((uintptr_t)p & (align - 1))) & (align - 1);
    memcpy(p - sizeof(void *), &raw, sizeof(void *));
    return p;
}

FLASHATTN_DEF void fa_aligned_free(void *p)
{
    void *raw;
    if (!p) return;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof(void *));
    FLASHATTN_FREE(raw);
}

/* Allocation through an optional run-time allocator (NULL = fa_aligned_alloc). */
static FA__UNUSED void *fa__alloc(const fa_allocator *a, size_t bytes, size_t align)
{
    if (a && a->alloc) return a->alloc(a->user, bytes, align ? align : 64);
    return fa_aligned_alloc(bytes, align);
}
static FA__UNUSED void fa__free(const fa_allocator *a, void *p, size_t bytes)
{
    if (!p) return;
    if (a && a->alloc) {
        if (a->free) a->free(a->user, p, bytes);
        return;
    }
    fa_aligned_free(p);
}

FLASHATTN_DEF size_t fa_dtype_size(fa_dtype t)
{
    switch (t) {
    case FA_F32: return 4;
    case FA_F16: case FA_BF16: return 2;
    case FA_E4M3: case FA_E5M2: return 1;
    default: return 0;
    }
}

FLASHATTN_DEF const char *fa_dtype_name(fa_dtype t)
{
    switch (t) {
    case FA_F32: return "f32";
    case FA_F16: return "f16";
    case FA_BF16: return "bf16";
    case FA_E4M3: return "e4m3";
    case FA_E5M2: return "e5m2";
    default: return "?";
    }
}

/* ---- CPU features ---- */
static unsigned fa__cpu_detected_cache;
static int fa__cpu_detected_done;
static unsigned fa__cpu_mask = ~0u;

#if defined(FA__X86)
static uint64_t fa__xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static unsigned fa__cpu_detect(void)
{
    unsigned f = 0;
#if defined(FA__X86)
    unsigned a, b, c, d;
    uint64_t xcr0 = 0;
    int os_avx = 0, os_avx512 = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (d & (1u << 26)) f |= FA_CPU_SSE2;
    if (c & (1u << 27)) { /* OSXSAVE: the OS saves extended state, xgetbv is usable */
        xcr0 = fa__xgetbv0();
        os_avx = (xcr0 & 0x6) == 0x6;            /* XMM and YMM state */
        os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (os_avx && (c & (1u << 28))) f |= FA_CPU_AVX;
    if (os_avx && (c & (1u << 12))) f |= FA_CPU_FMA;
    if (os_avx && (c & (1u << 29))) f |= FA_CPU_F16C;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (os_avx && (b & (1u << 5))) f |= FA_CPU_AVX2;
        if (os_avx512 && (b & (1u << 16))) f |= FA_CPU_AVX512F;
        if (os_avx512 && (b & (1u << 17))) f |= FA_CPU_AVX512DQ;
        if (os_avx512 && (b & (1u << 30))) f |= FA_CPU_AVX512BW;
        if (os_avx512 && (b & (1u << 31))) f |= FA_CPU_AVX512VL;
        if (os_avx512 && (d & (1u << 23))) f |= FA_CPU_AVX512_FP16;
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && os_avx512 && (a & (1u << 5)))
            f |= FA_CPU_AVX512_BF16;
    }
#elif defined(FA__NEON)
    f |= FA_CPU_NEON;
#if defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC)
    f |= FA_CPU_NEON_FP16;
#endif
#if defined(__ARM_FEATURE_BF16)
    f |= FA_CPU_NEON_BF16;
#endif
#endif
    return f;
}

FLASHATTN_DEF unsigned fa_cpu_features_detected(void)
{
    /* Racing first calls compute the same value; the flag is written after the value. */
    if (!fa__cpu_detected_done) {
        fa__cpu_detected_cache = fa__cpu_detect();
        fa__cpu_detected_done = 1;
    }
    return fa__cpu_detected_cache;
}
FLASHATTN_DEF unsigned fa_cpu_features(void) { return fa_cpu_features_detected() & fa__cpu_mask; }
FLASHATTN_DEF void fa_cpu_features_override(unsigned mask) { fa__cpu_mask = mask; }

FLASHATTN_DEF int fa_cpu_count(void)
{
#if defined(_WIN32)
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors > 0 ? (int)si.dwNumberOfProcessors : 1;
#elif defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#else
    return 1;
#endif
}

/* ============================================================================================
   fp8 (implementation)
   ============================================================================================
   Layout of this section: scalar element conversions (the reference every SIMD path must match
   bit for bit), scalar bulk loops, the AVX-512 / AVX2 / NEON bulk loops, dispatch and argument
   checks, stochastic rounding, amax, then the scaling recipes.

   All encoders work on the f32 bit pattern with integer arithmetic, so results do not depend on
   the FPU's rounding mode or FTZ/DAZ. RNE of a magnitude `a` dropping `d` low bits is
       (a + (2^(d-1) - 1) + ((a >> d) & 1)) >> d
   (add just under half an ulp, plus one when the kept part is odd: exact ties go to even). */

static FA__UNUSED uint32_t fa__f32_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static FA__UNUSED float fa__bits_f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

#if defined(__GNUC__) || defined(__clang__)
#define FA__FP8_AI inline __attribute__((always_inline))
#else
#define FA__FP8_AI inline
#endif

/* f32 bit patterns of the limits (OCP OFP8 v1.0 Table 1; cuda_fp8.h thresholds). */
#define FA__F32_ABS      0x7fffffffu
#define FA__F32_INF      0x7f800000u
#define FA__F32_QNAN     0x7fffffffu /* cuda_fp8.h's canonical NaN (decode of any FP8 NaN) */
#define FA__E4M3_OVF     0x43e80000u /* 464 = 448 + half an ulp: larger rounds past max */
#define FA__E5M2_OVF     0x476fffffu /* just below 61440 = 57344 + half an ulp; the tie at
                                        61440 rounds to even, which is 65536: overflow */
#define FA__E4M3_MINNORM 0x3c800000u /* 2^-6 */
#define FA__E5M2_MINNORM 0x38800000u /* 2^-14 */
#define FA__E4M3_REBIAS  (120u << 23)/* f32 bias 127 - E4M3 bias 7, in the exponent field */
#define FA__E5M2_REBIAS  (112u << 23)/* 127 - 15 */
/* Subnormal results are round(|x| / 2^-9) (E4M3) or round(|x| / 2^-16) (E5M2). With
   |x| = m * 2^(e-150) (m the 24-bit significand, e the f32 exponent field) that is m shifted
   right by SUB - e. */
#define FA__E4M3_SUB     141u
#define FA__E5M2_SUB     134u
#define FA__E4M3_MAXC    0x7eu       /* 448 */
#define FA__E5M2_MAXC    0x7bu       /* 57344 */
#define FA__E4M3_NAN     0x7fu
#define FA__E5M2_INF     0x7cu

/* f32 bits -> E4M3 (e4m3 != 0) or E5M2: cuda_fp8.h __nv_cvt_float_to_fp8, host path. */
static FA__FP8_AI uint8_t fa__enc_fp8(uint32_t u, int e4m3, int sat)
{
    const uint32_t drop = e4m3 ? 20u : 21u; /* 23 - mantissa bits */
    const uint32_t sign = (u >> 24) & 0x80u, a = u & FA__F32_ABS;
    uint32_t r;
    if (a > FA__F32_INF) return FA__E4M3_NAN; /* both formats: canonical 0x7F, sign dropped */
    if (a > (e4m3 ? FA__E4M3_OVF : FA__E5M2_OVF))
        return (uint8_t)(sign | (sat ? (e4m3 ? FA__E4M3_MAXC : FA__E5M2_MAXC)
                                     : (e4m3 ? FA__E4M3_NAN : FA__E5M2_INF)));
    if (a >= (e4m3 ? FA__E4M3_MINNORM : FA__E5M2_MINNORM)) {
        uint32_t v = a - (e4m3 ? FA__E4M3_REBIAS : FA__E5M2_REBIAS); /* E:M with FP8 bias */
        r = (v + ((1u << (drop - 1)) - 1u) + ((v >> drop) & 1u)) >> drop;
    } else {
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t sh = (e4m3 ? FA__E4M3_SUB : FA__E5M2_SUB) - (a >> 23);
        if (sh > 31) return (uint8_t)sign; /* below half the smallest subnormal: +-0 */
        r = (m + ((1u << (sh - 1)) - 1u) + ((m >> sh) & 1u)) >> sh; /* may carry to normal */
    }
    return (uint8_t)(sign | r);
}

static FA__FP8_AI float fa__dec_e4m3(uint32_t v)
{
    uint32_t sign = (v & 0x80u) << 24, mag = v & 0x7fu;
    if (mag == 0x7fu) return fa__bits_f32(FA__F32_QNAN);
    if (mag < 8u) { /* subnormal: mag * 2^-9 */
        float f = (float)mag * 0.001953125f;
        return fa__bits_f32(fa__f32_bits(f) | sign);
    }
    return fa__bits_f32(sign | ((mag << 20) + FA__E4M3_REBIAS));
}

static FA__FP8_AI float fa__dec_e5m2(uint32_t v)
{
    uint32_t sign = (v & 0x80u) << 24, mag = v & 0x7fu;
    if (mag > FA__E5M2_INF) return fa__bits_f32(FA__F32_QNAN);
    if (mag == FA__E5M2_INF) return fa__bits_f32(sign | FA__F32_INF);
    if (mag < 4u) { /* subnormal: mag * 2^-16 */
        float f = (float)mag * 0.0000152587890625f;
        return fa__bits_f32(fa__f32_bits(f) | sign);
    }
    return fa__bits_f32(sign | ((mag << 21) + FA__E5M2_REBIAS));
}

static FA__FP8_AI float fa__dec_f16(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1fu) /* inf, or NaN made quiet (bit 22) with its payload, as vcvtph2ps */
        return fa__bits_f32(sign | FA__F32_INF | (man << 13) | (man ? 0x400000u : 0u));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return fa__bits_f32(fa__f32_bits(v) | sign);
    }
    return fa__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static FA__FP8_AI uint16_t fa__enc_f16(uint32_t u)
{
    uint32_t sign = (u >> 16) & 0x8000u, a = u & FA__F32_ABS;
    if (a >= FA__F32_INF) /* inf, or NaN made quiet keeping its top payload bits (vcvtps2ph) */
        return (uint16_t)(sign | 0x7c00u | (a > FA__F32_INF ? 0x200u | ((a >> 13) & 0x3ffu) : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65536: inf */
    if (a < 0x38800000u) {
        /* subnormal or zero result: round(|x| / 2^-24); |x| = m * 2^(e-150) */
        uint32_t e = a >> 23, sh = 126u - e, m = (a & 0x7fffffu) | 0x800000u;
        if (sh > 31) return (uint16_t)sign;
        return (uint16_t)(sign | ((m + ((1u << (sh - 1)) - 1u) + ((m >> sh) & 1u)) >> sh));
    }
    {
        uint32_t v = a - (112u << 23); /* exponent bias 127 -> 15; a carry may reach inf */
        return (uint16_t)(sign | ((v + 0xfffu + ((v >> 13) & 1u)) >> 13));
    }
}

static FA__FP8_AI float fa__dec_bf16(uint32_t h) { return fa__bits_f32(h << 16); }

static FA__FP8_AI uint16_t fa__enc_bf16(uint32_t u)
{
    if ((u & FA__F32_ABS) > FA__F32_INF) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); /* a carry may reach inf */
}

FLASHATTN_DEF float fa_f16_to_f32(uint16_t h) { return fa__dec_f16(h); }
FLASHATTN_DEF uint16_t fa_f32_to_f16(float x) { return fa__enc_f16(fa__f32_bits(x)); }
FLASHATTN_DEF float fa_bf16_to_f32(uint16_t h) { return fa__dec_bf16(h); }
FLASHATTN_DEF uint16_t fa_f32_to_bf16(float x) { return fa__enc_bf16(fa__f32_bits(x)); }
FLASHATTN_DEF float fa_e4m3_to_f32(uint8_t v) { return fa__dec_e4m3(v); }
FLASHATTN_DEF float fa_e5m2_to_f32(uint8_t v) { return fa__dec_e5m2(v); }
FLASHATTN_DEF uint8_t fa_f32_to_e4m3(float x, int saturate)
{
    return fa__enc_fp8(fa__f32_bits(x), 1, saturate != 0);
}
FLASHATTN_DEF uint8_t fa_f32_to_e5m2(float x, int saturate)
{
    return fa__enc_fp8(fa__f32_bits(x), 0, saturate != 0);
}
/* f16 and bf16 decode exactly to f32, so these round once. */
FLASHATTN_DEF uint8_t fa_f16_to_e4m3(uint16_t h, int saturate)
{
    return fa__enc_fp8(fa__f32_bits(fa__dec_f16(h)), 1, saturate != 0);
}
FLASHATTN_DEF uint8_t fa_f16_to_e5m2(uint16_t h, int saturate)
{
    return fa__enc_fp8(fa__f32_bits(fa__dec_f16(h)), 0, saturate != 0);
}
FLASHATTN_DEF uint8_t fa_bf16_to_e4m3(uint16_t h, int saturate)
{
    return fa__enc_fp8((uint32_t)h << 16, 1, saturate != 0);
}
FLASHATTN_DEF uint8_t fa_bf16_to_e5m2(uint16_t h, int saturate)
{
    return fa__enc_fp8((uint32_t)h << 16, 0, saturate != 0);
}

FLASHATTN_DEF float fa_fp8_max(fa_dtype t)
{
    return t == FA_E4M3 ? FA_E4M3_MAX : t == FA_E5M2 ? FA_E5M2_MAX : 0.0f;
}

/* cuda_fp8.h __nv_cvt_float_to_e8m0, host path: the f32 is first cut to bf16 (toward zero, or
   up for |x| when rounding up), the exponent field is the result, bumped by one when rounding
   up a value that is not a power of two (and is finite, above 2^-127). */
FLASHATTN_DEF uint8_t fa_f32_to_e8m0(float x, int round_up, int saturate)
{
    uint32_t u = fa__f32_bits(x), b, r;
    if ((u & FA__F32_ABS) > FA__F32_INF) {
        b = 0x7fffu;
    } else if (round_up) {
        uint32_t a = u & FA__F32_ABS;
        b = (a >> 16) + ((a < FA__F32_INF && (a & 0xffffu)) ? 1u : 0u);
    } else {
        b = u >> 16;
    }
    r = (b >> 7) & 0xffu;
    if (round_up && (b & 0x7fu) && (b & 0x7fffu) > 0x40u && (b & 0x7fffu) < 0x7f80u) r++;
    if (saturate && (b & 0x7fffu) <= 0x7f80u && r == 0xffu) r = 0xfeu;
    return (uint8_t)r;
}

FLASHATTN_DEF float fa_e8m0_to_f32(uint8_t e)
{
    if (e == 0xffu) return fa__bits_f32(0x7fff0000u); /* cuda_fp8.h: via the bf16 NaN 0x7FFF */
    if (e == 0) return fa__bits_f32(0x00400000u); /* 2^-127, an f32 subnormal */
    return fa__bits_f32((uint32_t)e << 23);
}

/* ---- scalar bulk loops ---- */

static FA__FP8_AI float fa__load1(fa_dtype t, const unsigned char *p, size_t i)
{
    switch (t) {
    case FA_F32: { float x; memcpy(&x, p + 4 * i, 4); return x; }
    case FA_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return fa__dec_f16(h); }
    case FA_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return fa__dec_bf16(h); }
    case FA_E4M3: return fa__dec_e4m3(p[i]);
    default: return fa__dec_e5m2(p[i]);
    }
}

static FA__FP8_AI void fa__store1(fa_dtype t, unsigned char *p, size_t i, float x, int sat)
{
    switch (t) {
    case FA_F32: memcpy(p + 4 * i, &x, 4); break;
    case FA_F16: { uint16_t h = fa__enc_f16(fa__f32_bits(x)); memcpy(p + 2 * i, &h, 2); break; }
    case FA_BF16: { uint16_t h = fa__enc_bf16(fa__f32_bits(x)); memcpy(p + 2 * i, &h, 2); break; }
    case FA_E4M3: p[i] = fa__enc_fp8(fa__f32_bits(x), 1, sat); break;
    default: p[i] = fa__enc_fp8(fa__f32_bits(x), 0, sat); break;
    }
}

static FA__FP8_AI void fa__cvt_body_scalar(unsigned char *d, fa_dtype dt, const unsigned char *s,
                                       fa_dtype st, size_t n, float scale, int use_scale,
                                       int sat)
{
    size_t i;
    for (i = 0; i < n; i++) {
        float x = fa__load1(st, s, i);
        if (use_scale) x *= scale;
        fa__store1(dt, d, i, x, sat);
    }
}

/* The bulk loops are written for pairs with f32 on one side ("direct" kernels: 14 loops
   compiled with constant types per path). Two narrow types meet in an f32 buffer on the stack,
   a chunk at a time, so it stays in L1. An f32 -> narrow loop always multiplies: x * 1 is x
   bit for bit except that it quiets a signalling NaN, which no narrow encoder can tell apart. */
#define FA__CVT_CHUNK 512
#define FA__DIRECT_SWITCH(BODY)                                                             \
    if (st == FA_F32) {                                                                     \
        switch (dt) {                                                                       \
        case FA_F32:                                                                        \
            if (scale != 1.0f) BODY(FA_F32, FA_F32, 1);                                     \
            else BODY(FA_F32, FA_F32, 0);                                                   \
            break;                                                                          \
        case FA_F16: BODY(FA_F32, FA_F16, 1); break;                                        \
        case FA_BF16: BODY(FA_F32, FA_BF16, 1); break;                                      \
        case FA_E4M3: BODY(FA_F32, FA_E4M3, 1); break;                                      \
        default: BODY(FA_F32, FA_E5M2, 1); break;                                           \
        }                                                                                   \
    } else if (scale != 1.0f) {                                                             \
        switch (st) {                                                                       \
        case FA_F16: BODY(FA_F16, FA_F32, 1); break;                                        \
        case FA_BF16: BODY(FA_BF16, FA_F32, 1); break;                                      \
        case FA_E4M3: BODY(FA_E4M3, FA_F32, 1); break;                                      \
        default: BODY(FA_E5M2, FA_F32, 1); break;                                           \
        }                                                                                   \
    } else {                                                                                \
        switch (st) {                                                                       \
        case FA_F16: BODY(FA_F16, FA_F32, 0); break;                                        \
        case FA_BF16: BODY(FA_BF16, FA_F32, 0); break;                                      \
        case FA_E4M3: BODY(FA_E4M3, FA_F32, 0); break;                                      \
        default: BODY(FA_E5M2, FA_F32, 0); break;                                           \
        }                                                                                   \
    }

typedef void (*fa__direct_fn)(unsigned char *d, fa_dtype dt, const unsigned char *s,
                              fa_dtype st, size_t n, float scale, int sat);

static void fa__cvt_route(fa__direct_fn direct, void *dst, fa_dtype dt, const void *src,
                          fa_dtype st, size_t n, float scale, int sat)
{
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    float buf[FA__CVT_CHUNK];
    size_t i, ss = fa_dtype_size(st), ds = fa_dtype_size(dt);
    if (st == FA_F32 || dt == FA_F32) {
        direct(d, dt, s, st, n, scale, sat);
        return;
    }
    for (i = 0; i < n; i += FA__CVT_CHUNK) {
        size_t m = n - i < FA__CVT_CHUNK ? n - i : FA__CVT_CHUNK;
        direct((unsigned char *)buf, FA_F32, s + i * ss, st, m, 1.0f, 0);
        direct(d + i * ds, dt, (const unsigned char *)buf, FA_F32, m, scale, sat);
    }
}

static void fa__direct_scalar(unsigned char *d, fa_dtype dt, const unsigned char *s,
                              fa_dtype st, size_t n, float scale, int sat)
{
#define FA__DIRECT_SCALAR_BODY(S, D, U) fa__cvt_body_scalar(d, D, s, S, n, scale, U, sat)
    FA__DIRECT_SWITCH(FA__DIRECT_SCALAR_BODY)
#undef FA__DIRECT_SCALAR_BODY
}

static void fa__cvt_scalar(void *dst, fa_dtype dt, const void *src, fa_dtype st, size_t n,
                           float scale, int sat)
{
    fa__cvt_route(fa__direct_scalar, dst, dt, src, st, n, scale, sat);
}

/* amax on magnitude bits: for every format the magnitude bit pattern orders like the value,
   so the max is taken on integers (NaN patterns excluded) and decoded once. */
static float fa__amax_scalar(const void *src, fa_dtype t, size_t n)
{
    const unsigned char *p = (const unsigned char *)src;
    uint32_t m = 0;
    size_t i;
    switch (t) {
    case FA_F32:
        for (i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            u &= FA__F32_ABS;
            if (u <= FA__F32_INF && u > m) m = u;
        }
        return fa__bits_f32(m);
    case FA_F16: case FA_BF16: {
        uint32_t lim = t == FA_F16 ? 0x7c00u : 0x7f80u;
        for (i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            h &= 0x7fffu;
            if (h <= lim && h > m) m = h;
        }
        return t == FA_F16 ? fa__dec_f16(m) : fa__dec_bf16(m);
    }
    case FA_E4M3:
        for (i = 0; i < n; i++) {
            uint32_t b = p[i] & 0x7fu;
            if (b != FA__E4M3_NAN && b > m) m = b;
        }
        return fa__dec_e4m3(m);
    default:
        for (i = 0; i < n; i++) {
            uint32_t b = p[i] & 0x7fu;
            if (b <= FA__E5M2_INF && b > m) m = b;
        }
        return fa__dec_e5m2(m);
    }
}

/* ---- x86 bulk loops: the scalar algorithm above, lane by lane ----
   AVX-512 needs AVX512F+BW (16 lanes), AVX2 needs AVX2+F16C (8 lanes). f16 uses the F16C
   instructions (vcvtph2ps / vcvtps2ph with RNE), which the exhaustive tests show equal
   fa__dec_f16 / fa__enc_f16. bf16 is not converted with AVX512_BF16's vcvtneps2bf16: it
   flushes subnormals to zero. */
#if defined(FA__X86)
/* f32 outputs at least this large are written with streaming stores: they would flush the
   caches anyway, and skipping the read-for-ownership of each line cuts the memory traffic of a
   widening conversion by about a third. Smaller outputs stay in cache for their consumer. */
#define FA__NT_BYTES ((size_t)8 << 20)
#define FA__T512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))
#define FA__T256 __attribute__((target("avx2,fma,f16c")))

FA__T512 static FA__FP8_AI __m512i fa__enc_fp8_512(__m512 x, int e4m3, __m512i ovf_code)
{
    const __m512i one = _mm512_set1_epi32(1);
    const uint32_t drop = e4m3 ? 20u : 21u;
    __m512i u = _mm512_castps_si512(x);
    __m512i a = _mm512_and_si512(u, _mm512_set1_epi32((int)FA__F32_ABS));
    __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
    /* normal result */
    __m512i v = _mm512_sub_epi32(a, _mm512_set1_epi32((int)(e4m3 ? FA__E4M3_REBIAS
                                                                   : FA__E5M2_REBIAS)));
    __m512i nr = _mm512_add_epi32(v, _mm512_set1_epi32((int)((1u << (drop - 1)) - 1u)));
    __m512i r, m, sh, sr;
    nr = _mm512_srli_epi32(_mm512_add_epi32(nr, _mm512_and_si512(_mm512_srli_epi32(v, (int)drop),
                                                                 one)), (int)drop);
    /* subnormal result; variable shifts by >= 32 give 0, matching the scalar early return */
    m = _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi32(0x7fffff)),
                        _mm512_set1_epi32(0x800000));
    sh = _mm512_sub_epi32(_mm512_set1_epi32((int)(e4m3 ? FA__E4M3_SUB : FA__E5M2_SUB)),
                          _mm512_srli_epi32(a, 23));
    sr = _mm512_add_epi32(m, _mm512_sub_epi32(_mm512_sllv_epi32(one, _mm512_sub_epi32(sh, one)),
                                              one));
    sr = _mm512_srlv_epi32(_mm512_add_epi32(sr, _mm512_and_si512(_mm512_srlv_epi32(m, sh), one)),
                           sh);
    r = _mm512_mask_blend_epi32(
        _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32((int)(e4m3 ? FA__E4M3_MINNORM
                                                                  : FA__E5M2_MINNORM))),
        nr, sr);
    r = _mm512_or_si512(r, sign);
    r = _mm512_mask_mov_epi32(
        r, _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32((int)(e4m3 ? FA__E4M3_OVF
                                                                   : FA__E5M2_OVF))),
        _mm512_or_si512(ovf_code, sign));
    return _mm512_mask_mov_epi32(r, _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32((int)FA__F32_INF)),
                                 _mm512_set1_epi32((int)FA__E4M3_NAN));
}

/* FP8 -> f32: normals by rebiasing the fields; the 7 (E4M3) or 3 (E5M2) subnormal values
   from a 16-entry table indexed by the low bits (vpermd); then sign, Inf and NaN. */
FA__T512 static FA__FP8_AI __m512 fa__dec_fp8_512(__m128i bytes, int e4m3)
{
    const __m512i sub_tab = e4m3 ? _mm512_setr_epi32(0, 0x3b000000, 0x3b800000, 0x3bc00000,
                                                      0x3c000000, 0x3c200000, 0x3c400000,
                                                      0x3c600000, 0, 0, 0, 0, 0, 0, 0, 0)
                                 : _mm512_setr_epi32(0, 0x37800000, 0x38000000, 0x38400000,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512i b = _mm512_cvtepu8_epi32(bytes);
    __m512i nrm = _mm512_add_epi32( /* the 7 magnitude bits moved under the f32 fields */
        _mm512_and_si512(_mm512_slli_epi32(b, e4m3 ? 20 : 21),
                         _mm512_set1_epi32(e4m3 ? 0x07f00000 : 0x0fe00000)),
        _mm512_set1_epi32((int)(e4m3 ? FA__E4M3_REBIAS : FA__E5M2_REBIAS)));
    __m512i r = _mm512_mask_blend_epi32(
        _mm512_testn_epi32_mask(b, _mm512_set1_epi32(e4m3 ? 0x78 : 0x7c)), nrm,
        _mm512_permutexvar_epi32(b, sub_tab));
    __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7f));
    /* r | (b << 24 & sign bit) */
    r = _mm512_ternarylogic_epi32(r, _mm512_slli_epi32(b, 24), _mm512_set1_epi32((int)0x80000000u),
                                  0xf8);
    if (e4m3) {
        r = _mm512_mask_mov_epi32(r, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)),
                                  _mm512_set1_epi32((int)FA__F32_QNAN));
    } else {
        __m512i inf = _mm512_ternarylogic_epi32(_mm512_slli_epi32(b, 24),
                                                _mm512_set1_epi32((int)0x80000000u),
                                                _mm512_set1_epi32((int)FA__F32_INF), 0xea);
        r = _mm512_mask_mov_epi32(r, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7c)), inf);
        r = _mm512_mask_mov_epi32(r, _mm512_cmpgt_epi32_mask(mag, _mm512_set1_epi32(0x7c)),
                                  _mm512_set1_epi32((int)FA__F32_QNAN));
    }
    return _mm512_castsi512_ps(r);
}

FA__T512 static FA__FP8_AI __m512 fa__ld512(fa_dtype t, const unsigned char *p)
{
    switch (t) {
    case FA_F32: return _mm512_loadu_ps((const float *)(const void *)p);
    case FA_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
    case FA_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p)), 16));
    case FA_E4M3: return fa__dec_fp8_512(_mm_loadu_si128((const __m128i *)(const void *)p), 1);
    default: return fa__dec_fp8_512(_mm_loadu_si128((const __m128i *)(const void *)p), 0);
    }
}

FA__T512 static FA__FP8_AI void fa__st512(fa_dtype t, unsigned char *p, __m512 x, __m512i ovf4,
                                      __m512i ovf5)
{
    switch (t) {
    case FA_F32: _mm512_storeu_ps((float *)(void *)p, x); break;
    case FA_F16:
        _mm256_storeu_si256((__m256i *)(void *)p,
                            _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
    case FA_BF16: {
        __m512i u = _mm512_castps_si512(x);
        __m512i r = _mm512_add_epi32(u, _mm512_set1_epi32(0x7fff));
        r = _mm512_srli_epi32(_mm512_add_epi32(r, _mm512_and_si512(_mm512_srli_epi32(u, 16),
                                                                   _mm512_set1_epi32(1))), 16);
        r = _mm512_mask_mov_epi32(
            r, _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32((int)FA__F32_ABS)),
                                       _mm512_set1_epi32((int)FA__F32_INF)),
            _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
        _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtepi32_epi16(r));
        break;
    }
    case FA_E4M3:
        _mm_storeu_si128((__m128i *)(void *)p, _mm512_cvtepi32_epi8(fa__enc_fp8_512(x, 1, ovf4)));
        break;
    default:
        _mm_storeu_si128((__m128i *)(void *)p, _mm512_cvtepi32_epi8(fa__enc_fp8_512(x, 0, ovf5)));
        break;
    }
}

FA__T512 static FA__FP8_AI void fa__cvt_body_512(unsigned char *d, fa_dtype dt, const unsigned char *s,
                                             fa_dtype st, size_t n, float scale, int use_scale,
                                             int sat)
{
    const size_t ss = fa_dtype_size(st), ds = fa_dtype_size(dt);
    const __m512 sc = _mm512_set1_ps(scale);
    const __m512i ovf4 = _mm512_set1_epi32(sat ? FA__E4M3_MAXC : FA__E4M3_NAN);
    const __m512i ovf5 = _mm512_set1_epi32(sat ? FA__E5M2_MAXC : FA__E5M2_INF);
    size_t i = 0;
    if (dt == FA_F32 && n * 4 >= FA__NT_BYTES) { /* streaming stores, 64-byte aligned */
        size_t head = ((64u - ((uintptr_t)d & 63u)) & 63u) / 4u;
        fa__cvt_body_scalar(d, dt, s, st, head, scale, use_scale, sat);
        for (i = head; i + 16 <= n; i += 16) {
            __m512 x = fa__ld512(st, s + i * ss);
            if (use_scale) x = _mm512_mul_ps(x, sc);
            _mm512_stream_ps((float *)(void *)(d + i * 4), x);
        }
        _mm_sfence(); /* order the weakly-ordered stores before anything that follows */
    }
    for (; i + 32 <= n; i += 32) { /* two vectors per trip: independent chains overlap */
        __m512 x0 = fa__ld512(st, s + i * ss), x1 = fa__ld512(st, s + (i + 16) * ss);
        if (use_scale) { x0 = _mm512_mul_ps(x0, sc); x1 = _mm512_mul_ps(x1, sc); }
        fa__st512(dt, d + i * ds, x0, ovf4, ovf5);
        fa__st512(dt, d + (i + 16) * ds, x1, ovf4, ovf5);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 x = fa__ld512(st, s + i * ss);
        if (use_scale) x = _mm512_mul_ps(x, sc);
        fa__st512(dt, d + i * ds, x, ovf4, ovf5);
    }
    if (i < n) fa__cvt_body_scalar(d + i * ds, dt, s + i * ss, st, n - i, scale, use_scale, sat);
}

FA__T512 static void fa__direct_avx512(unsigned char *d, fa_dtype dt, const unsigned char *s,
                                       fa_dtype st, size_t n, float scale, int sat)
{
#define FA__DIRECT_512_BODY(S, D, U) fa__cvt_body_512(d, D, s, S, n, scale, U, sat)
    FA__DIRECT_SWITCH(FA__DIRECT_512_BODY)
#undef FA__DIRECT_512_BODY
}

/* amax: max of magnitude patterns with NaN patterns zeroed, then one decode. */
FA__T512 static float fa__amax_avx512(const void *src, fa_dtype t, size_t n)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0, per = 64 / fa_dtype_size(t);
    float head, tail;
    __m512i acc = _mm512_setzero_si512();
    for (; i + per <= n; i += per) {
        __m512i v = _mm512_loadu_si512((const void *)(p + i * fa_dtype_size(t)));
        switch (t) {
        case FA_F32: {
            __m512i a = _mm512_and_si512(v, _mm512_set1_epi32((int)FA__F32_ABS));
            acc = _mm512_max_epu32(acc, _mm512_maskz_mov_epi32(
                _mm512_cmple_epu32_mask(a, _mm512_set1_epi32((int)FA__F32_INF)), a));
            break;
        }
        case FA_F16: case FA_BF16: {
            __m512i a = _mm512_and_si512(v, _mm512_set1_epi16(0x7fff));
            acc = _mm512_max_epu16(acc, _mm512_maskz_mov_epi16(
                _mm512_cmple_epu16_mask(a, _mm512_set1_epi16(t == FA_F16 ? 0x7c00 : 0x7f80)), a));
            break;
        }
        default: {
            __m512i a = _mm512_and_si512(v, _mm512_set1_epi8(0x7f));
            acc = _mm512_max_epu8(acc, _mm512_maskz_mov_epi8(
                _mm512_cmple_epu8_mask(a, _mm512_set1_epi8(t == FA_E4M3 ? 0x7e : 0x7c)), a));
            break;
        }
        }
    }
    {
        unsigned char lanes[64];
        _mm512_storeu_si512((void *)lanes, acc);
        head = fa__amax_scalar(lanes, t, per); /* the accumulator holds valid magnitudes */
    }
    tail = fa__amax_scalar(p + i * fa_dtype_size(t), t, n - i);
    return tail > head ? tail : head;
}

/* ---- AVX2 ---- */
FA__T256 static FA__FP8_AI __m256i fa__enc_fp8_256(__m256 x, int e4m3, __m256i ovf_code)
{
    const __m256i one = _mm256_set1_epi32(1);
    const int drop = e4m3 ? 20 : 21;
    __m256i u = _mm256_castps_si256(x);
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32((int)FA__F32_ABS));
    __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
    __m256i v = _mm256_sub_epi32(a, _mm256_set1_epi32((int)(e4m3 ? FA__E4M3_REBIAS
                                                                   : FA__E5M2_REBIAS)));
    __m256i nr = _mm256_add_epi32(v, _mm256_set1_epi32((1 << (drop - 1)) - 1));
    __m256i r, m, sh, sr;
    nr = _mm256_srli_epi32(_mm256_add_epi32(nr, _mm256_and_si256(_mm256_srli_epi32(v, drop), one)),
                           drop);
    m = _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7fffff)),
                        _mm256_set1_epi32(0x800000));
    sh = _mm256_sub_epi32(_mm256_set1_epi32((int)(e4m3 ? FA__E4M3_SUB : FA__E5M2_SUB)),
                          _mm256_srli_epi32(a, 23));
    sr = _mm256_add_epi32(m, _mm256_sub_epi32(_mm256_sllv_epi32(one, _mm256_sub_epi32(sh, one)),
                                              one));
    sr = _mm256_srlv_epi32(_mm256_add_epi32(sr, _mm256_and_si256(_mm256_srlv_epi32(m, sh), one)),
                           sh);
    r = _mm256_blendv_epi8(nr, sr,
                           _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(e4m3 ? FA__E4M3_MINNORM
                                                                          : FA__E5M2_MINNORM)),
                                              a));
    r = _mm256_or_si256(r, sign);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(ovf_code, sign),
                           _mm256_cmpgt_epi32(a, _mm256_set1_epi32((int)(e4m3 ? FA__E4M3_OVF
                                                                               : FA__E5M2_OVF))));
    return _mm256_blendv_epi8(r, _mm256_set1_epi32((int)FA__E4M3_NAN),
                              _mm256_cmpgt_epi32(a, _mm256_set1_epi32((int)FA__F32_INF)));
}

FA__T256 static FA__FP8_AI __m256 fa__dec_fp8_256(__m128i bytes, int e4m3)
{
    const __m256i sub_tab = e4m3 ? _mm256_setr_epi32(0, 0x3b000000, 0x3b800000, 0x3bc00000,
                                                      0x3c000000, 0x3c200000, 0x3c400000,
                                                      0x3c600000)
                                 : _mm256_setr_epi32(0, 0x37800000, 0x38000000, 0x38400000,
                                                     0, 0, 0, 0);
    __m256i b = _mm256_cvtepu8_epi32(bytes);
    __m256i mag = _mm256_and_si256(b, _mm256_set1_epi32(0x7f));
    __m256i nrm = _mm256_add_epi32(_mm256_slli_epi32(mag, e4m3 ? 20 : 21),
                                   _mm256_set1_epi32((int)(e4m3 ? FA__E4M3_REBIAS
                                                                : FA__E5M2_REBIAS)));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
    __m256i r = _mm256_blendv_epi8(
        nrm, _mm256_permutevar8x32_epi32(sub_tab, mag),
        _mm256_cmpeq_epi32(_mm256_and_si256(b, _mm256_set1_epi32(e4m3 ? 0x78 : 0x7c)),
                           _mm256_setzero_si256()));
    r = _mm256_or_si256(r, sign);
    if (e4m3) {
        r = _mm256_blendv_epi8(r, _mm256_set1_epi32((int)FA__F32_QNAN),
                               _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f)));
    } else {
        r = _mm256_blendv_epi8(r, _mm256_or_si256(sign, _mm256_set1_epi32((int)FA__F32_INF)),
                               _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7c)));
        r = _mm256_blendv_epi8(r, _mm256_set1_epi32((int)FA__F32_QNAN),
                               _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7c)));
    }
    return _mm256_castsi256_ps(r);
}

FA__T256 static FA__FP8_AI __m256 fa__ld256(fa_dtype t, const unsigned char *p)
{
    switch (t) {
    case FA_F32: return _mm256_loadu_ps((const float *)(const void *)p);
    case FA_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
    case FA_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)), 16));
    case FA_E4M3: return fa__dec_fp8_256(_mm_loadl_epi64((const __m128i *)(const void *)p), 1);
    default: return fa__dec_fp8_256(_mm_loadl_epi64((const __m128i *)(const void *)p), 0);
    }
}

/* Low byte of each 32-bit lane -> 8 consecutive bytes. */
FA__T256 static FA__FP8_AI void fa__st256_bytes(unsigned char *p, __m256i r)
{
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, -1, -1);
    __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(r, pick),
                                            _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm_storel_epi64((__m128i *)(void *)p, _mm256_castsi256_si128(b));
}

FA__T256 static FA__FP8_AI void fa__st256(fa_dtype t, unsigned char *p, __m256 x, __m256i ovf4,
                                      __m256i ovf5)
{
    switch (t) {
    case FA_F32: _mm256_storeu_ps((float *)(void *)p, x); break;
    case FA_F16:
        _mm_storeu_si128((__m128i *)(void *)p,
                         _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
    case FA_BF16: {
        __m256i u = _mm256_castps_si256(x);
        __m256i r = _mm256_add_epi32(u, _mm256_set1_epi32(0x7fff));
        r = _mm256_srli_epi32(_mm256_add_epi32(r, _mm256_and_si256(_mm256_srli_epi32(u, 16),
                                                                   _mm256_set1_epi32(1))), 16);
        r = _mm256_blendv_epi8(
            r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)),
            _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32((int)FA__F32_ABS)),
                               _mm256_set1_epi32((int)FA__F32_INF)));
        r = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(void *)p, _mm256_castsi256_si128(r));
        break;
    }
    case FA_E4M3: fa__st256_bytes(p, fa__enc_fp8_256(x, 1, ovf4)); break;
    default: fa__st256_bytes(p, fa__enc_fp8_256(x, 0, ovf5)); break;
    }
}

FA__T256 static FA__FP8_AI void fa__cvt_body_256(unsigned char *d, fa_dtype dt, const unsigned char *s,
                                             fa_dtype st, size_t n, float scale, int use_scale,
                                             int sat)
{
    const size_t ss = fa_dtype_size(st), ds = fa_dtype_size(dt);
    const __m256 sc = _mm256_set1_ps(scale);
    const __m256i ovf4 = _mm256_set1_epi32(sat ? FA__E4M3_MAXC : FA__E4M3_NAN);
    const __m256i ovf5 = _mm256_set1_epi32(sat ? FA__E5M2_MAXC : FA__E5M2_INF);
    size_t i = 0;
    if (dt == FA_F32 && n * 4 >= FA__NT_BYTES) { /* streaming stores, 32-byte aligned */
        size_t head = ((32u - ((uintptr_t)d & 31u)) & 31u) / 4u;
        fa__cvt_body_scalar(d, dt, s, st, head, scale, use_scale, sat);
        for (i = head; i + 8 <= n; i += 8) {
            __m256 x = fa__ld256(st, s + i * ss);
            if (use_scale) x = _mm256_mul_ps(x, sc);
            _mm256_stream_ps((float *)(void *)(d + i * 4), x);
        }
        _mm_sfence();
    }
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = fa__ld256(st, s + i * ss), x1 = fa__ld256(st, s + (i + 8) * ss);
        if (use_scale) { x0 = _mm256_mul_ps(x0, sc); x1 = _mm256_mul_ps(x1, sc); }
        fa__st256(dt, d + i * ds, x0, ovf4, ovf5);
        fa__st256(dt, d + (i + 8) * ds, x1, ovf4, ovf5);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 x = fa__ld256(st, s + i * ss);
        if (use_scale) x = _mm256_mul_ps(x, sc);
        fa__st256(dt, d + i * ds, x, ovf4, ovf5);
    }
    if (i < n) fa__cvt_body_scalar(d + i * ds, dt, s + i * ss, st, n - i, scale, use_scale, sat);
}

FA__T256 static void fa__direct_avx2(unsigned char *d, fa_dtype dt, const unsigned char *s,
                                     fa_dtype st, size_t n, float scale, int sat)
{
#define FA__DIRECT_256_BODY(S, D, U) fa__cvt_body_256(d, D, s, S, n, scale, U, sat)
    FA__DIRECT_SWITCH(FA__DIRECT_256_BODY)
#undef FA__DIRECT_256_BODY
}

FA__T256 static float fa__amax_avx2(const void *src, fa_dtype t, size_t n)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0, per = 32 / fa_dtype_size(t);
    float head, tail;
    __m256i acc = _mm256_setzero_si256();
    for (; i + per <= n; i += per) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + i * fa_dtype_size(t)));
        switch (t) {
        case FA_F32: {
            __m256i a = _mm256_and_si256(v, _mm256_set1_epi32((int)FA__F32_ABS));
            acc = _mm256_max_epu32(acc, _mm256_andnot_si256(
                _mm256_cmpgt_epi32(a, _mm256_set1_epi32((int)FA__F32_INF)), a));
            break;
        }
        case FA_F16: case FA_BF16: {
            __m256i a = _mm256_and_si256(v, _mm256_set1_epi16(0x7fff));
            __m256i ok = _mm256_cmpeq_epi16(
                _mm256_min_epu16(a, _mm256_set1_epi16(t == FA_F16 ? 0x7c00 : 0x7f80)), a);
            acc = _mm256_max_epu16(acc, _mm256_and_si256(ok, a));
            break;
        }
        default: {
            __m256i a = _mm256_and_si256(v, _mm256_set1_epi8(0x7f));
            __m256i ok = _mm256_cmpeq_epi8(
                _mm256_min_epu8(a, _mm256_set1_epi8(t == FA_E4M3 ? 0x7e : 0x7c)), a);
            acc = _mm256_max_epu8(acc, _mm256_and_si256(ok, a));
            break;
        }
        }
    }
    {
        unsigned char lanes[32];
        _mm256_storeu_si256((__m256i *)(void *)lanes, acc);
        head = fa__amax_scalar(lanes, t, per);
    }
    tail = fa__amax_scalar(p + i * fa_dtype_size(t), t, n - i);
    return tail > head ? tail : head;
}
#endif /* FA__X86 */

/* ---- NEON (AArch64) bulk loops: 4 lanes; vshlq_u32 by a negative count shifts right, and
   by -32 or less gives 0, like the x86 variable shifts. f16 goes through FCVT, which rounds
   to nearest even and quiets NaNs keeping the top payload bits, as F16C does. */
#if defined(FA__NEON) && defined(__aarch64__)
static FA__FP8_AI uint32x4_t fa__enc_fp8_neon(float32x4_t x, int e4m3, uint32x4_t ovf_code)
{
    const uint32x4_t one = vdupq_n_u32(1);
    const int drop = e4m3 ? 20 : 21;
    uint32x4_t u = vreinterpretq_u32_f32(x);
    uint32x4_t a = vandq_u32(u, vdupq_n_u32(FA__F32_ABS));
    uint32x4_t sign = vandq_u32(vshrq_n_u32(u, 24), vdupq_n_u32(0x80));
    uint32x4_t v = vsubq_u32(a, vdupq_n_u32(e4m3 ? FA__E4M3_REBIAS : FA__E5M2_REBIAS));
    int32x4_t nsh = vdupq_n_s32(-drop);
    uint32x4_t nr = vaddq_u32(v, vdupq_n_u32((1u << (drop - 1)) - 1u));
    uint32x4_t m, r;
    int32x4_t sh;
    nr = vshlq_u32(vaddq_u32(nr, vandq_u32(vshlq_u32(v, nsh), one)), nsh);
    m = vorrq_u32(vandq_u32(a, vdupq_n_u32(0x7fffffu)), vdupq_n_u32(0x800000u));
    sh = vsubq_s32(vdupq_n_s32((int)(e4m3 ? FA__E4M3_SUB : FA__E5M2_SUB)),
                   vreinterpretq_s32_u32(vshrq_n_u32(a, 23)));
    {
        /* counts outside [-255, 255] are taken mod 256 by USHL: clamp to 64 first */
        int32x4_t shc = vminq_s32(sh, vdupq_n_s32(64));
        int32x4_t neg = vnegq_s32(shc);
        uint32x4_t half = vshlq_u32(one, vsubq_s32(shc, vdupq_n_s32(1)));
        uint32x4_t sr = vaddq_u32(m, vsubq_u32(half, one));
        sr = vshlq_u32(vaddq_u32(sr, vandq_u32(vshlq_u32(m, neg), one)), neg);
        r = vbslq_u32(vcltq_u32(a, vdupq_n_u32(e4m3 ? FA__E4M3_MINNORM : FA__E5M2_MINNORM)),
                      sr, nr);
    }
    r = vorrq_u32(r, sign);
    r = vbslq_u32(vcgtq_u32(a, vdupq_n_u32(e4m3 ? FA__E4M3_OVF : FA__E5M2_OVF)),
                  vorrq_u32(ovf_code, sign), r);
    return vbslq_u32(vcgtq_u32(a, vdupq_n_u32(FA__F32_INF)), vdupq_n_u32(FA__E4M3_NAN), r);
}

static FA__FP8_AI float32x4_t fa__dec_fp8_neon(uint32x4_t b, int e4m3)
{
    uint32x4_t sign = vshlq_n_u32(vandq_u32(b, vdupq_n_u32(0x80)), 24);
    uint32x4_t mag = vandq_u32(b, vdupq_n_u32(0x7f));
    uint32x4_t nrm = vaddq_u32(e4m3 ? vshlq_n_u32(mag, 20) : vshlq_n_u32(mag, 21),
                               vdupq_n_u32(e4m3 ? FA__E4M3_REBIAS : FA__E5M2_REBIAS));
    uint32x4_t sub = vreinterpretq_u32_f32(vmulq_f32(
        vcvtq_f32_u32(mag), vdupq_n_f32(e4m3 ? 0.001953125f : 0.0000152587890625f)));
    uint32x4_t r = vbslq_u32(vcltq_u32(mag, vdupq_n_u32(e4m3 ? 8u : 4u)), sub, nrm);
    r = vorrq_u32(r, sign);
    if (e4m3) {
        r = vbslq_u32(vceqq_u32(mag, vdupq_n_u32(0x7f)), vdupq_n_u32(FA__F32_QNAN), r);
    } else {
        r = vbslq_u32(vceqq_u32(mag, vdupq_n_u32(0x7c)), vorrq_u32(sign, vdupq_n_u32(FA__F32_INF)),
                      r);
        r = vbslq_u32(vcgtq_u32(mag, vdupq_n_u32(0x7c)), vdupq_n_u32(FA__F32_QNAN), r);
    }
    return vreinterpretq_f32_u32(r);
}

static FA__FP8_AI float32x4_t fa__ld_neon(fa_dtype t, const unsigned char *p)
{
    switch (t) {
    case FA_F32: { float32x4_t x; memcpy(&x, p, 16); return x; }
    case FA_F16: { float16x4_t h; memcpy(&h, p, 8); return vcvt_f32_f16(h); }
    case FA_BF16: {
        uint16x4_t h;
        memcpy(&h, p, 8);
        return vreinterpretq_f32_u32(vshlq_n_u32(vmovl_u16(h), 16));
    }
    default: {
        uint32_t w;
        uint32x4_t b;
        memcpy(&w, p, 4);
        b = vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(w)))));
        return fa__dec_fp8_neon(b, t == FA_E4M3);
    }
    }
}

static FA__FP8_AI void fa__st_neon(fa_dtype t, unsigned char *p, float32x4_t x, uint32x4_t ovf4,
                               uint32x4_t ovf5)
{
    switch (t) {
    case FA_F32: memcpy(p, &x, 16); break;
    case FA_F16: { float16x4_t h = vcvt_f16_f32(x); memcpy(p, &h, 8); break; }
    case FA_BF16: {
        uint32x4_t u = vreinterpretq_u32_f32(x);
        uint32x4_t r = vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)),
                                 vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1)));
        uint16x4_t h;
        r = vbslq_u32(vcgtq_u32(vandq_u32(u, vdupq_n_u32(FA__F32_ABS)), vdupq_n_u32(FA__F32_INF)),
                      vorrq_u32(u, vdupq_n_u32(0x400000)), r);
        h = vshrn_n_u32(r, 16);
        memcpy(p, &h, 8);
        break;
    }
    default: {
        uint32x4_t r = t == FA_E4M3 ? fa__enc_fp8_neon(x, 1, ovf4) : fa__enc_fp8_neon(x, 0, ovf5);
        uint8x8_t b = vmovn_u16(vcombine_u16(vmovn_u32(r), vmovn_u32(r)));
        uint32_t w = vget_lane_u32(vreinterpret_u32_u8(b), 0);
        memcpy(p, &w, 4);
        break;
    }
    }
}

static FA__FP8_AI void fa__cvt_body_neon(unsigned char *d, fa_dtype dt, const unsigned char *s,
                                     fa_dtype st, size_t n, float scale, int use_scale, int sat)
{
    const size_t ss = fa_dtype_size(st), ds = fa_dtype_size(dt);
    const float32x4_t sc = vdupq_n_f32(scale);
    const uint32x4_t ovf4 = vdupq_n_u32(sat ? FA__E4M3_MAXC : FA__E4M3_NAN);
    const uint32x4_t ovf5 = vdupq_n_u32(sat ? FA__E5M2_MAXC : FA__E5M2_INF);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = fa__ld_neon(st, s + i * ss);
        if (use_scale) x = vmulq_f32(x, sc);
        fa__st_neon(dt, d + i * ds, x, ovf4, ovf5);
    }
    if (i < n) fa__cvt_body_scalar(d + i * ds, dt, s + i * ss, st, n - i, scale, use_scale, sat);
}

static void fa__direct_neon(unsigned char *d, fa_dtype dt, const unsigned char *s, fa_dtype st,
                            size_t n, float scale, int sat)
{
#define FA__DIRECT_NEON_BODY(S, D, U) fa__cvt_body_neon(d, D, s, S, n, scale, U, sat)
    FA__DIRECT_SWITCH(FA__DIRECT_NEON_BODY)
#undef FA__DIRECT_NEON_BODY
}

static float fa__amax_neon(const void *src, fa_dtype t, size_t n)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0, per = 16 / fa_dtype_size(t);
    float head, tail;
    uint8x16_t acc = vdupq_n_u8(0);
    for (; i + per <= n; i += per) {
        uint8x16_t v = vld1q_u8(p + i * fa_dtype_size(t));
        switch (t) {
        case FA_F32: {
            uint32x4_t a = vandq_u32(vreinterpretq_u32_u8(v), vdupq_n_u32(FA__F32_ABS));
            a = vandq_u32(a, vcleq_u32(a, vdupq_n_u32(FA__F32_INF))); /* NaN -> 0 */
            acc = vreinterpretq_u8_u32(vmaxq_u32(vreinterpretq_u32_u8(acc), a));
            break;
        }
        case FA_F16: case FA_BF16: {
            uint16x8_t a = vandq_u16(vreinterpretq_u16_u8(v), vdupq_n_u16(0x7fff));
            a = vandq_u16(a, vcleq_u16(a, vdupq_n_u16(t == FA_F16 ? 0x7c00 : 0x7f80)));
            acc = vreinterpretq_u8_u16(vmaxq_u16(vreinterpretq_u16_u8(acc), a));
            break;
        }
        default: {
            uint8x16_t a = vandq_u8(v, vdupq_n_u8(0x7f));
            a = vandq_u8(a, vcleq_u8(a, vdupq_n_u8(t == FA_E4M3 ? 0x7e : 0x7c)));
            acc = vmaxq_u8(acc, a);
            break;
        }
        }
    }
    {
        unsigned char lanes[16];
        vst1q_u8(lanes, acc);
        head = fa__amax_scalar(lanes, t, per); /* the accumulator holds valid magnitudes */
    }
    tail = fa__amax_scalar(p + i * fa_dtype_size(t), t, n - i);
    return tail > head ? tail : head;
}
#endif /* FA__NEON && __aarch64__ */

/* ---- dispatch ---- */
typedef void (*fa__cvt_fn)(void *, fa_dtype, const void *, fa_dtype, size_t, float, int);
typedef float (*fa__amax_fn)(const void *, fa_dtype, size_t);

static int fa__fp8_path(void)
{
    unsigned f = fa_cpu_features();
    (void)f;
#if defined(FA__X86)
    if ((f & (FA_CPU_AVX512F | FA_CPU_AVX512BW)) == (FA_CPU_AVX512F | FA_CPU_AVX512BW)) return 3;
    if ((f & (FA_CPU_AVX2 | FA_CPU_F16C)) == (FA_CPU_AVX2 | FA_CPU_F16C)) return 2;
#endif
#if defined(FA__NEON) && defined(__aarch64__)
    if (f & FA_CPU_NEON) return 1;
#endif
    return 0;
}

FLASHATTN_DEF const char *fa_convert_path(void)
{
    static const char *const names[4] = {"scalar", "neon", "avx2", "avx512"};
    return names[fa__fp8_path()];
}

/* Unchecked bulk conversion on the best path (the recipes call this per block). */
static void fa__convert(void *dst, fa_dtype dt, const void *src, fa_dtype st, size_t n,
                        float scale, int sat)
{
    switch (fa__fp8_path()) {
#if defined(FA__X86)
    case 3: fa__cvt_route(fa__direct_avx512, dst, dt, src, st, n, scale, sat); return;
    case 2: fa__cvt_route(fa__direct_avx2, dst, dt, src, st, n, scale, sat); return;
#endif
#if defined(FA__NEON) && defined(__aarch64__)
    case 1: fa__cvt_route(fa__direct_neon, dst, dt, src, st, n, scale, sat); return;
#endif
    default: fa__cvt_scalar(dst, dt, src, st, n, scale, sat); return;
    }
}

static float fa__amax(const void *src, fa_dtype t, size_t n)
{
    switch (fa__fp8_path()) {
#if defined(FA__X86)
    case 3: return fa__amax_avx512(src, t, n);
    case 2: return fa__amax_avx2(src, t, n);
#endif
#if defined(FA__NEON) && defined(__aarch64__)
    case 1: return fa__amax_neon(src, t, n);
#endif
    default: return fa__amax_scalar(src, t, n);
    }
}

static int fa__fp8_dtype_ok(fa_dtype t) { return (int)t >= 0 && (int)t < (int)FA_DTYPE_COUNT_; }
static int fa__is_fp8(fa_dtype t) { return t == FA_E4M3 || t == FA_E5M2; }
static int fa__fp8_finite(float x) { return (fa__f32_bits(x) & FA__F32_ABS) < FA__F32_INF; }

/* Checks one buffer of n elements of type t; `what` names it in the message. */
static fa_status fa__fp8_check_buf(const void *p, fa_dtype t, size_t n, const char *what,
                               size_t *bytes)
{
    size_t es;
    if (!fa__fp8_dtype_ok(t)) return fa__fail(FA_ERR_DTYPE, "%s dtype %d is unknown", what, (int)t);
    es = fa_dtype_size(t);
    if (n && !p) return fa__fail(FA_ERR_NULL, "%s is NULL", what);
    if (fa__mul_size(n, es, bytes))
        return fa__fail(FA_ERR_OVERFLOW, "%s: %zu elements of %zu bytes overflow size_t", what,
                        n, es);
    if (((uintptr_t)p & (es - 1)) != 0)
        return fa__fail(FA_ERR_ALIGN, "%s (%p) is not aligned to its %zu-byte elements", what,
                        p, es);
    return FA_OK;
}

static fa_status fa__check_convert(void *dst, fa_dtype dt, const void *src, fa_dtype st,
                                   size_t n, float scale)
{
    size_t db = 0, sb = 0;
    fa_status s;
    if ((s = fa__fp8_check_buf(dst, dt, n, "dst", &db)) != FA_OK) return s;
    if ((s = fa__fp8_check_buf(src, st, n, "src", &sb)) != FA_OK) return s;
    if (!fa__fp8_finite(scale) || scale == 0.0f)
        return fa__fail(FA_ERR_INVALID, "scale (%g) must be finite and nonzero", (double)scale);
    if (n) {
        uintptr_t d0 = (uintptr_t)dst, s0 = (uintptr_t)src;
        int overlap = d0 < s0 + sb && s0 < d0 + db;
        if (overlap && !(d0 == s0 && db <= sb))
            return fa__fail(FA_ERR_INVALID, "dst and src overlap (only dst == src with a "
                                            "destination type no wider than the source works)");
    }
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_convert(void *dst, fa_dtype dst_type, const void *src,
                                   fa_dtype src_type, size_t n, float scale, int saturate)
{
    fa_status s = fa__check_convert(dst, dst_type, src, src_type, n, scale);
    if (s != FA_OK || n == 0) return s;
    fa__convert(dst, dst_type, src, src_type, n, scale, saturate != 0);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_amax(const void *src, fa_dtype src_type, size_t n, float *amax)
{
    size_t b;
    fa_status s = fa__fp8_check_buf(src, src_type, n, "src", &b);
    if (s != FA_OK) return s;
    if (!amax) return fa__fail(FA_ERR_NULL, "amax is NULL");
    *amax = n ? fa__amax(src, src_type, n) : 0.0f;
    return FA_OK;
}

/* ---- stochastic rounding ----
   The magnitude is cut to the destination's precision and the dropped bits D (a fraction
   D / 2^d of an ulp) decide: adding a uniform d-bit random number R carries into the kept part
   exactly when R >= 2^d - D, which happens with probability D / 2^d. */
static uint64_t fa__sr_hash(uint64_t seed, uint64_t i)
{
    /* splitmix64's finalizer over a Weyl sequence keyed by the seed */
    uint64_t z = seed * 0xd1342543de82ef95ull + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct fa__sr_fmt {
    uint32_t mbits;   /* mantissa bits */
    uint32_t bias;    /* exponent bias */
    uint32_t signbit; /* the sign bit of the destination code */
    uint32_t maxmag;  /* largest finite magnitude code */
    uint32_t ovfmag;  /* non-saturating overflow: Inf code, or NaN code (E4M3) */
} fa__sr_fmt;

static uint32_t fa__enc_sr(uint32_t u, fa_dtype t, const fa__sr_fmt *f, int sat, uint32_t rnd)
{
    const uint32_t sign = (u >> 31) ? f->signbit : 0u, a = u & FA__F32_ABS;
    const uint32_t drop = 23u - f->mbits, minnorm_e = 128u - f->bias; /* f32 field of 2^(1-bias) */
    uint32_t r;
    if (a > FA__F32_INF) /* NaN: as the round-to-nearest conversions */
        return t == FA_F16 ? fa__enc_f16(u) : t == FA_BF16 ? fa__enc_bf16(u) : FA__E4M3_NAN;
    if (a == FA__F32_INF) return sign | (sat ? f->maxmag : f->ovfmag);
    if ((a >> 23) >= minnorm_e) {
        uint32_t v = a - ((127u - f->bias) << 23);
        r = (uint32_t)(((uint64_t)v + (rnd & ((1u << drop) - 1u))) >> drop);
    } else {
        /* |x| = m * 2^(e-150), counted in units of the smallest subnormal 2^(1-bias-mbits) */
        uint32_t e = a >> 23, m = e ? (a & 0x7fffffu) | 0x800000u : a;
        uint32_t sh = (150u - (f->bias - 1u + f->mbits)) - (e ? e : 1u);
        if (sh < 32)
            r = (uint32_t)(((uint64_t)m + (rnd & ((1u << sh) - 1u))) >> sh);
        else if (sh < 56) /* probability m / 2^sh, resolved to 2^-32 */
            r = (uint32_t)((((uint64_t)m >> (sh - 32)) + rnd) >> 32);
        else
            r = 0;
    }
    if (r > f->maxmag) r = sat ? f->maxmag : f->ovfmag;
    return sign | r;
}

FLASHATTN_DEF fa_status fa_convert_sr(void *dst, fa_dtype dst_type, const void *src,
                                      fa_dtype src_type, size_t n, float scale, int saturate,
                                      uint64_t seed, uint64_t offset)
{
    static const fa__sr_fmt fmts[FA_DTYPE_COUNT_] = {
        {0, 0, 0, 0, 0}, {10, 15, 0x8000u, 0x7bffu, 0x7c00u}, {7, 127, 0x8000u, 0x7f7fu, 0x7f80u},
        {3, 7, 0x80u, FA__E4M3_MAXC, FA__E4M3_NAN}, {2, 15, 0x80u, FA__E5M2_MAXC, FA__E5M2_INF}};
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    size_t i;
    fa_status st = fa__check_convert(dst, dst_type, src, src_type, n, scale);
    if (st != FA_OK) return st;
    if (dst_type == FA_F32)
        return fa__fail(FA_ERR_DTYPE, "stochastic rounding needs a narrower destination than f32");
    for (i = 0; i < n; i++) {
        float x = fa__load1(src_type, s, i);
        uint32_t r, rnd = (uint32_t)(fa__sr_hash(seed, offset + i) >> 32);
        if (scale != 1.0f) x *= scale;
        r = fa__enc_sr(fa__f32_bits(x), dst_type, &fmts[dst_type], saturate != 0, rnd);
        if (dst_type == FA_F16 || dst_type == FA_BF16) {
            uint16_t h = (uint16_t)r;
            memcpy(d + 2 * i, &h, 2);
        } else {
            d[i] = (uint8_t)r;
        }
    }
    return FA_OK;
}

/* ---- scaling recipes ---- */

static fa_status fa__check_scaling(const fa_fp8_scaling *s)
{
    if (!s) return fa__fail(FA_ERR_NULL, "scaling recipe is NULL");
    if (!fa__is_fp8(s->fp8_type))
        return fa__fail(FA_ERR_DTYPE, "fp8_type (%d) must be FA_E4M3 or FA_E5M2", (int)s->fp8_type);
    if (s->margin < 0 || s->margin > 64)
        return fa__fail(FA_ERR_INVALID, "margin (%d) must be in 0..64", s->margin);
    if (!(s->epsilon >= 0.0f) || !fa__fp8_finite(s->epsilon))
        return fa__fail(FA_ERR_INVALID, "epsilon (%g) must be finite and >= 0", (double)s->epsilon);
    return FA_OK;
}

/* Transformer Engine's compute_scale_from_amax, with the margin of its delayed recipe. */
static float fa__scale_from_amax(const fa_fp8_scaling *s, float amax)
{
    float scaled_max = ldexpf(fa_fp8_max(s->fp8_type), -s->margin), scale;
    if (amax < s->epsilon) amax = s->epsilon;
    if (!fa__fp8_finite(amax) || amax == 0.0f) return 1.0f; /* Inf, NaN or 0: scale 1 */
    scale = scaled_max / amax;
    if (!fa__fp8_finite(scale)) scale = FLT_MAX; /* amax so small the scale overflows */
    if (s->pow2_scale) scale = fa__bits_f32(fa__f32_bits(scale) & 0xff800000u);
    return scale;
}

FLASHATTN_DEF fa_status fa_fp8_scale_from_amax(const fa_fp8_scaling *s, float amax, float *scale)
{
    fa_status st = fa__check_scaling(s);
    if (st != FA_OK) return st;
    if (!scale) return fa__fail(FA_ERR_NULL, "scale is NULL");
    *scale = fa__scale_from_amax(s, amax);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_quantize_tensor(const fa_fp8_scaling *s, void *dst,
                                               const void *src, fa_dtype src_type, size_t n,
                                               float *scale_inv, float *amax_out)
{
    float amax, scale;
    fa_status st = fa__check_scaling(s);
    if (st != FA_OK) return st;
    if (!scale_inv) return fa__fail(FA_ERR_NULL, "scale_inv is NULL");
    if ((st = fa__check_convert(dst, s->fp8_type, src, src_type, n, 1.0f)) != FA_OK) return st;
    amax = n ? fa__amax(src, src_type, n) : 0.0f;
    scale = fa__scale_from_amax(s, amax);
    if (n) fa__convert(dst, s->fp8_type, src, src_type, n, scale, 1);
    *scale_inv = 1.0f / scale;
    if (amax_out) *amax_out = amax;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_dequantize(void *dst, fa_dtype dst_type, const void *src,
                                          fa_dtype fp8_type, size_t n, float scale_inv)
{
    if (!fa__is_fp8(fp8_type))
        return fa__fail(FA_ERR_DTYPE, "fp8_type (%d) must be FA_E4M3 or FA_E5M2", (int)fp8_type);
    return fa_convert(dst, dst_type, src, fp8_type, n, scale_inv, 0);
}

/* Checks a row-major matrix view: extents, ld, and the byte span of both matrices. */
static fa_status fa__fp8_check_matrix(int64_t rows, int64_t cols, int64_t ld, const void *a,
                                  fa_dtype at, const char *an, const void *b, fa_dtype bt,
                                  const char *bn)
{
    int64_t span;
    size_t bytes;
    fa_status s;
    if (rows < 1 || cols < 1)
        return fa__fail(FA_ERR_SHAPE, "rows (%lld) and cols (%lld) must be >= 1",
                        (long long)rows, (long long)cols);
    if (ld < cols)
        return fa__fail(FA_ERR_SHAPE, "ld (%lld) is smaller than cols (%lld)", (long long)ld,
                        (long long)cols);
    if (fa__mul_i64(rows - 1, ld, &span) || fa__add_i64(span, cols, &span) ||
        (uint64_t)span > (uint64_t)SIZE_MAX)
        return fa__fail(FA_ERR_OVERFLOW, "matrix of %lld x %lld (ld %lld) is too large",
                        (long long)rows, (long long)cols, (long long)ld);
    if ((s = fa__fp8_check_buf(a, at, (size_t)span, an, &bytes)) != FA_OK) return s;
    if ((s = fa__fp8_check_buf(b, bt, (size_t)span, bn, &bytes)) != FA_OK) return s;
    return FA_OK;
}

static fa_status fa__blocks_geom(const fa_fp8_blocks *b, int64_t *ld, int64_t *br, int64_t *bc,
                                 int64_t *nbr, int64_t *nbc)
{
    if (!b) return fa__fail(FA_ERR_NULL, "block layout is NULL");
    *ld = b->ld ? b->ld : b->cols;
    *br = b->block_rows ? b->block_rows : 1;
    *bc = b->block_cols ? b->block_cols : 128;
    if (b->rows < 1 || b->cols < 1)
        return fa__fail(FA_ERR_SHAPE, "rows (%lld) and cols (%lld) must be >= 1",
                        (long long)b->rows, (long long)b->cols);
    if (*br < 1 || *bc < 1)
        return fa__fail(FA_ERR_INVALID, "block_rows (%lld) and block_cols (%lld) must be >= 1",
                        (long long)*br, (long long)*bc);
    *nbr = (b->rows - 1) / *br + 1;
    *nbc = (b->cols - 1) / *bc + 1;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_block_scale_count(const fa_fp8_blocks *b, size_t *count)
{
    int64_t ld = 0, br = 0, bc = 0, nbr = 0, nbc = 0, c;
    fa_status s = fa__blocks_geom(b, &ld, &br, &bc, &nbr, &nbc);
    if (s != FA_OK) return s;
    if (!count) return fa__fail(FA_ERR_NULL, "count is NULL");
    if (fa__mul_i64(nbr, nbc, &c)) return fa__fail(FA_ERR_OVERFLOW, "too many blocks");
    *count = (size_t)c;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_quantize_blocks(const fa_fp8_scaling *sc, const fa_fp8_blocks *b,
                                               void *dst, const void *src, fa_dtype src_type,
                                               float *scale_inv)
{
    int64_t ld = 0, br = 0, bc = 0, nbr = 0, nbc = 0, i, j, r;
    size_t ss, ds;
    fa_status s;
    if ((s = fa__check_scaling(sc)) != FA_OK) return s;
    if ((s = fa__blocks_geom(b, &ld, &br, &bc, &nbr, &nbc)) != FA_OK) return s;
    if ((s = fa__fp8_check_matrix(b->rows, b->cols, ld, dst, sc->fp8_type, "dst", src, src_type,
                              "src")) != FA_OK)
        return s;
    if (!scale_inv) return fa__fail(FA_ERR_NULL, "scale_inv is NULL");
    ss = fa_dtype_size(src_type);
    ds = 1;
    for (i = 0; i < nbr; i++) {
        int64_t r0 = i * br, r1 = r0 + br < b->rows ? r0 + br : b->rows;
        for (j = 0; j < nbc; j++) {
            int64_t c0 = j * bc, w = c0 + bc < b->cols ? bc : b->cols - c0;
            float amax = 0.0f, scale;
            for (r = r0; r < r1; r++) {
                float a = fa__amax((const unsigned char *)src + (size_t)(r * ld + c0) * ss,
                                   src_type, (size_t)w);
                if (a > amax) amax = a;
            }
            scale = fa__scale_from_amax(sc, amax);
            for (r = r0; r < r1; r++)
                fa__convert((unsigned char *)dst + (size_t)(r * ld + c0) * ds, sc->fp8_type,
                            (const unsigned char *)src + (size_t)(r * ld + c0) * ss, src_type,
                            (size_t)w, scale, 1);
            scale_inv[i * nbc + j] = 1.0f / scale;
        }
    }
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_dequantize_blocks(const fa_fp8_blocks *b, void *dst,
                                                 fa_dtype dst_type, const void *src,
                                                 fa_dtype fp8_type, const float *scale_inv)
{
    int64_t ld = 0, br = 0, bc = 0, nbr = 0, nbc = 0, i, j, r;
    size_t ds;
    fa_status s;
    if ((s = fa__blocks_geom(b, &ld, &br, &bc, &nbr, &nbc)) != FA_OK) return s;
    if (!fa__is_fp8(fp8_type))
        return fa__fail(FA_ERR_DTYPE, "fp8_type (%d) must be FA_E4M3 or FA_E5M2", (int)fp8_type);
    if ((s = fa__fp8_check_matrix(b->rows, b->cols, ld, dst, dst_type, "dst", src, fp8_type,
                              "src")) != FA_OK)
        return s;
    if (!scale_inv) return fa__fail(FA_ERR_NULL, "scale_inv is NULL");
    ds = fa_dtype_size(dst_type);
    for (i = 0; i < nbr * nbc; i++) /* all checked before anything is written */
        if (!fa__fp8_finite(scale_inv[i]) || scale_inv[i] == 0.0f)
            return fa__fail(FA_ERR_INVALID, "scale_inv[%lld] (%g) must be finite and nonzero",
                            (long long)i, (double)scale_inv[i]);
    for (i = 0; i < nbr; i++) {
        for (j = 0; j < nbc; j++) {
            float si = scale_inv[i * nbc + j];
            int64_t c0 = j * bc, w = c0 + bc < b->cols ? bc : b->cols - c0;
            for (r = i * br; r < (i + 1) * br && r < b->rows; r++)
                fa__convert((unsigned char *)dst + (size_t)(r * ld + c0) * ds, dst_type,
                            (const unsigned char *)src + (size_t)(r * ld + c0), fp8_type,
                            (size_t)w, si, 0);
        }
    }
    return FA_OK;
}

/* ---- MXFP8 ---- */

static fa_status fa__mx_geom(const fa_mx_blocks *b, int64_t *ld, int64_t *nb)
{
    if (!b) return fa__fail(FA_ERR_NULL, "MX layout is NULL");
    if (b->rows < 1 || b->cols < 1)
        return fa__fail(FA_ERR_SHAPE, "rows (%lld) and cols (%lld) must be >= 1",
                        (long long)b->rows, (long long)b->cols);
    if ((int)b->rule < 0 || (int)b->rule > (int)FA_MX_SCALE_OCP)
        return fa__fail(FA_ERR_INVALID, "MX scale rule (%d) is unknown", (int)b->rule);
    *ld = b->ld ? b->ld : b->cols;
    *nb = (b->cols - 1) / FA_MX_BLOCK + 1;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mx_scale_count(const fa_mx_blocks *b, size_t *count)
{
    int64_t ld = 0, nb = 0, c;
    fa_status s = fa__mx_geom(b, &ld, &nb);
    if (s != FA_OK) return s;
    if (!count) return fa__fail(FA_ERR_NULL, "count is NULL");
    if (fa__mul_i64(b->rows, nb, &c)) return fa__fail(FA_ERR_OVERFLOW, "too many blocks");
    *count = (size_t)c;
    return FA_OK;
}

/* The E8M0 shared scale of a block with this amax (rules in the declaration). */
static uint8_t fa__mx_scale(float amax, fa_dtype fp8_type, fa_mx_scale_rule rule)
{
    if (rule == FA_MX_SCALE_OCP) {
        /* 2^(floor(log2(amax)) - emax): the exponent of amax, read from its bits */
        uint32_t a = fa__f32_bits(amax) & FA__F32_ABS;
        int e, emax = fp8_type == FA_E4M3 ? 8 : 15;
        if (a == 0) return 0;
        if (a >= FA__F32_INF) return 0xfe;
        if (a < 0x800000u) { /* f32 subnormal: floor(log2) from the top set bit */
            e = -127;
            while (!(a & 0x400000u)) { a <<= 1; e--; }
        } else {
            e = (int)(a >> 23) - 127;
        }
        e -= emax;
        if (e < -127) e = -127;
        if (e > 127) e = 127;
        return (uint8_t)(e + 127);
    }
    return fa_f32_to_e8m0(amax / fa_fp8_max(fp8_type), rule == FA_MX_SCALE_UP, 1);
}

/* 2^(127 - e) as f32: the exact reciprocal of an E8M0 scale (e < 255). */
static float fa__e8m0_recip(uint8_t e)
{
    return e == 254 ? fa__bits_f32(0x00400000u) : fa__bits_f32((uint32_t)(254 - e) << 23);
}

FLASHATTN_DEF fa_status fa_mx_quantize(const fa_mx_blocks *b, fa_dtype fp8_type, void *dst,
                                       const void *src, fa_dtype src_type, uint8_t *scales)
{
    int64_t ld = 0, nb = 0, r, j;
    size_t ss;
    fa_status s;
    if ((s = fa__mx_geom(b, &ld, &nb)) != FA_OK) return s;
    if (!fa__is_fp8(fp8_type))
        return fa__fail(FA_ERR_DTYPE, "fp8_type (%d) must be FA_E4M3 or FA_E5M2", (int)fp8_type);
    if ((s = fa__fp8_check_matrix(b->rows, b->cols, ld, dst, fp8_type, "dst", src, src_type, "src")) !=
        FA_OK)
        return s;
    if (!scales) return fa__fail(FA_ERR_NULL, "scales is NULL");
    ss = fa_dtype_size(src_type);
    for (r = 0; r < b->rows; r++) {
        for (j = 0; j < nb; j++) {
            int64_t c0 = j * FA_MX_BLOCK;
            size_t w = (size_t)(c0 + FA_MX_BLOCK < b->cols ? FA_MX_BLOCK : b->cols - c0);
            const unsigned char *sp = (const unsigned char *)src + (size_t)(r * ld + c0) * ss;
            uint8_t e = fa__mx_scale(fa__amax(sp, src_type, w), fp8_type, b->rule);
            fa__convert((unsigned char *)dst + (size_t)(r * ld + c0), fp8_type, sp, src_type, w,
                        fa__e8m0_recip(e), 1);
            scales[r * nb + j] = e;
        }
    }
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mx_dequantize(const fa_mx_blocks *b, void *dst, fa_dtype dst_type,
                                         const void *src, fa_dtype fp8_type,
                                         const uint8_t *scales)
{
    int64_t ld = 0, nb = 0, r, j;
    size_t ds;
    fa_status s;
    if ((s = fa__mx_geom(b, &ld, &nb)) != FA_OK) return s;
    if (!fa__is_fp8(fp8_type))
        return fa__fail(FA_ERR_DTYPE, "fp8_type (%d) must be FA_E4M3 or FA_E5M2", (int)fp8_type);
    if ((s = fa__fp8_check_matrix(b->rows, b->cols, ld, dst, dst_type, "dst", src, fp8_type, "src")) !=
        FA_OK)
        return s;
    if (!scales) return fa__fail(FA_ERR_NULL, "scales is NULL");
    ds = fa_dtype_size(dst_type);
    for (r = 0; r < b->rows * nb; r++) /* all checked before anything is written */
        if (scales[r] == 0xffu)
            return fa__fail(FA_ERR_INVALID, "scales[%lld] is the E8M0 NaN (0xFF)", (long long)r);
    for (r = 0; r < b->rows; r++) {
        for (j = 0; j < nb; j++) {
            int64_t c0 = j * FA_MX_BLOCK;
            size_t w = (size_t)(c0 + FA_MX_BLOCK < b->cols ? FA_MX_BLOCK : b->cols - c0);
            uint8_t e = scales[r * nb + j];
            fa__convert((unsigned char *)dst + (size_t)(r * ld + c0) * ds, dst_type,
                        (const unsigned char *)src + (size_t)(r * ld + c0), fp8_type, w,
                        fa_e8m0_to_f32(e), 0);
        }
    }
    return FA_OK;
}

/* ---- delayed scaling ---- */

FLASHATTN_DEF fa_status fa_fp8_delayed_init(fa_fp8_delayed *d, fa_dtype fp8_type,
                                            int history_len, fa_amax_algo algo, int margin)
{
    if (!d) return fa__fail(FA_ERR_NULL, "delayed-scaling state is NULL");
    if (!fa__is_fp8(fp8_type))
        return fa__fail(FA_ERR_DTYPE, "fp8_type (%d) must be FA_E4M3 or FA_E5M2", (int)fp8_type);
    if (history_len < 1 || history_len > FA_FP8_HISTORY_MAX)
        return fa__fail(FA_ERR_INVALID, "history_len (%d) must be in 1..%d", history_len,
                        FA_FP8_HISTORY_MAX);
    if (algo != FA_AMAX_MAX && algo != FA_AMAX_MOST_RECENT)
        return fa__fail(FA_ERR_INVALID, "amax algo (%d) is unknown", (int)algo);
    if (margin < 0 || margin > 64)
        return fa__fail(FA_ERR_INVALID, "margin (%d) must be in 0..64", margin);
    memset(d, 0, sizeof *d);
    d->fp8_type = fp8_type;
    d->history_len = history_len;
    d->algo = algo;
    d->margin = margin;
    d->scale = 1.0f;
    d->scale_inv = 1.0f;
    return FA_OK;
}

static fa_status fa__check_delayed(const fa_fp8_delayed *d)
{
    if (!d) return fa__fail(FA_ERR_NULL, "delayed-scaling state is NULL");
    if (!fa__is_fp8(d->fp8_type) || d->history_len < 1 || d->history_len > FA_FP8_HISTORY_MAX ||
        !fa__fp8_finite(d->scale) || d->scale == 0.0f)
        return fa__fail(FA_ERR_INVALID, "delayed-scaling state is not initialised "
                                        "(call fa_fp8_delayed_init)");
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_delayed_quantize(fa_fp8_delayed *d, void *dst, const void *src,
                                                fa_dtype src_type, size_t n, float *scale_inv)
{
    fa_status s = fa__check_delayed(d);
    float amax;
    if (s != FA_OK) return s;
    if (!scale_inv) return fa__fail(FA_ERR_NULL, "scale_inv is NULL");
    if ((s = fa__check_convert(dst, d->fp8_type, src, src_type, n, d->scale)) != FA_OK) return s;
    amax = n ? fa__amax(src, src_type, n) : 0.0f;
    if (n) fa__convert(dst, d->fp8_type, src, src_type, n, d->scale, 1);
    if (amax > d->amax_history[0]) d->amax_history[0] = amax;
    *scale_inv = d->scale_inv;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_fp8_delayed_update(fa_fp8_delayed *d)
{
    fa_status s = fa__check_delayed(d);
    float amax, last;
    int i, len;
    if (s != FA_OK) return s;
    len = d->history_len;
    last = d->amax_history[0];
    if (d->algo == FA_AMAX_MOST_RECENT) {
        amax = last;
    } else {
        amax = 0.0f;
        for (i = 0; i < len; i++) /* fmaxf semantics: a NaN entry is skipped */
            if (d->amax_history[i] > amax) amax = d->amax_history[i];
    }
    if (fa__fp8_finite(amax) && amax > 0.0f) {
        d->scale = ldexpf(fa_fp8_max(d->fp8_type), -d->margin) / amax;
        if (!fa__fp8_finite(d->scale)) d->scale = FLT_MAX; /* TE would store Inf here */
        d->scale_inv = 1.0f / d->scale;
    }
    /* roll: entry i+1 -> i, the newest (entry 0) -> len-1, then entry 0 starts the next step */
    for (i = 0; i + 1 < len; i++) d->amax_history[i] = d->amax_history[i + 1];
    d->amax_history[len - 1] = last;
    d->amax_history[0] = 0.0f;
    return FA_OK;
}

/* ============================================================================================
   attn (implementation)
   ============================================================================================ */

/* ============================================================================================
   mask (implementation)
   ============================================================================================ */

/* ============================================================================================
   queue (implementation)
   ============================================================================================ */

/* ============================================================================================
   pool (implementation)
   ============================================================================================ */

/* ============================================================================================
   hash (implementation)
   ============================================================================================ */

#ifdef __cplusplus
}
#endif
#endif /* FLASHATTN_IMPLEMENTATION_DONE */
#endif /* FLASHATTN_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the flashattn.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication in the public domain in the hope that it will
be useful, but WITHOUT ANY WARRANTY; without even the implied warranty of
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE and NONINFRINGEMENT. See the
UNLICENSE at http://unlicense.org for more details.
------------------------------------------------------------------------------
*/
