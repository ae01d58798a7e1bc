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
   Conversions among f32, f16, bf16 and OCP OFP8 v1.0 (E4M3FN, E5M2). Narrowing conversions
   round to nearest, ties to even. */

FLASHATTN_DEF uint16_t fa_f32_to_f16(float x);    /* RNE; overflow -> inf; NaN stays NaN */
FLASHATTN_DEF float    fa_f16_to_f32(uint16_t h); /* exact */
FLASHATTN_DEF uint16_t fa_f32_to_bf16(float x);   /* RNE; NaN stays NaN (quiet) */
FLASHATTN_DEF float    fa_bf16_to_f32(uint16_t h);/* exact */
FLASHATTN_DEF float    fa_e4m3_to_f32(uint8_t v); /* exact; 0x7f/0xff -> NaN */
FLASHATTN_DEF float    fa_e5m2_to_f32(uint8_t v); /* exact */

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

/* Computes attention as described above. Validates every field first and returns a specific
   error (outputs untouched) on bad input. */
FLASHATTN_DEF fa_status fa_attn_forward(const fa_attn_desc *d);

/* The same result the slow, obvious way: one query row at a time in double precision, all
   logits materialised. For tests; O(seqlen_k) extra memory. */
FLASHATTN_DEF fa_status fa_attn_reference(const fa_attn_desc *d);

/* Checks a descriptor without computing anything. */
FLASHATTN_DEF fa_status fa_attn_validate(const fa_attn_desc *d);

/* Scratch bytes fa_attn_forward needs for this descriptor (for d->workspace). */
FLASHATTN_DEF fa_status fa_attn_workspace_size(const fa_attn_desc *d, size_t *bytes);

typedef struct fa_attn_memory_info {
    size_t io_bytes;          /* Q, K, V, O (and LSE) as described by the views */
    size_t flash_bytes;       /* extra memory of fa_attn_forward (its workspace) */
    size_t naive_bytes;       /* extra memory of the naive method: the score matrix
                                 batch*heads_q*seqlen_q*seqlen_k floats */
} fa_attn_memory_info;
FLASHATTN_DEF fa_status fa_attn_memory(const fa_attn_desc *d, fa_attn_memory_info *info);

/* Merging partial results. Attention over the union of disjoint key sets K1..Kn equals
       lse = log(sum_i exp(lse_i)),   o = sum_i exp(lse_i - lse) * o_i
   where (o_i, lse_i) is attention over K_i alone. This is the primitive behind split-KV decode
   and ring/context-parallel attention. Parts with lse_i = -inf (nothing visible) drop out; if
   every part is empty the output is 0 and lse is -inf. NaN in any part makes the row NaN. */
typedef struct fa_merge_desc {
    int64_t num_splits;       /* parts, >= 1 */
    int64_t batch, seqlen, heads, head_dim_v;   /* rows are (batch, seq, head); all >= 1 */
    const void *o_parts;      /* parts' outputs; default [split][batch][seq][heads][head_dim_v] */
    fa_dtype    o_parts_type;
    fa_strides  o_parts_stride;       /* 0 = packed */
    int64_t     o_parts_split_stride; /* elements between parts; 0 = packed */
    const float *lse_parts;   /* parts' LSE; default [split][batch][heads][seq] */
    fa_strides  lse_parts_stride;     /* 0 = packed [batch][heads][seq] */
    int64_t     lse_parts_split_stride;
    void       *o;            /* merged output; may not alias the parts */
    fa_dtype    o_type;
    fa_strides  o_stride;     /* 0 = packed BSHD */
    float      *lse;          /* merged LSE; NULL = not written */
    fa_strides  lse_stride;   /* 0 = packed [batch][heads][seq] */
} fa_merge_desc;
FLASHATTN_DEF fa_status fa_attn_merge(const fa_merge_desc *m);

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
   ============================================================================================ */

static FA__UNUSED uint32_t fa__f32_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static FA__UNUSED float fa__bits_f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

FLASHATTN_DEF float fa_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    if (exp == 0x1f) return fa__bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return fa__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

FLASHATTN_DEF uint16_t fa_f32_to_f16(float x)
{
    uint32_t u = fa__f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf, or NaN forced quiet keeping the top payload bits */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65536: inf */
    if (a < 0x38800000u) {
        /* subnormal or zero result: value / 2^-24 rounded to an integer, ties to even; the
           24-bit significand is shifted right by the exponent gap, rest bits decide. */
        uint32_t e = a >> 23, shift, m, r, half, rest;
        if (e < 102) return sign; /* < 2^-25: rounds to zero (2^-25 itself ties to even 0) */
        m = (a & 0x7fffffu) | 0x800000u;
        shift = 126 - e; /* value = m * 2^(e-150); in units of 2^-24: m >> (126 - e) */
        r = m >> shift;
        half = 1u << (shift - 1);
        rest = m & ((1u << shift) - 1);
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    {
        /* normal: rebias the exponent, round the 13 dropped bits to nearest even; a carry out
           of the mantissa correctly bumps the exponent (and may reach inf at the top). */
        uint32_t v = a - 0x38000000u; /* exponent 127 -> 15 bias */
        uint32_t r = v >> 13, rest = v & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
}

FLASHATTN_DEF float fa_bf16_to_f32(uint16_t h) { return fa__bits_f32((uint32_t)h << 16); }

FLASHATTN_DEF uint16_t fa_f32_to_bf16(float x)
{
    uint32_t u = fa__f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* RNE; a carry into the exponent is the right result */
    return (uint16_t)(u >> 16);
}

FLASHATTN_DEF float fa_e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80u) << 24;
    uint32_t exp = (v >> 3) & 0xfu, man = v & 0x7u;
    if (exp == 0xf && man == 0x7) return fa__bits_f32(sign | 0x7fc00000u); /* NaN */
    if (exp == 0) { /* subnormal: man * 2^-9 */
        float f = (float)man * 0.001953125f;
        return sign ? -f : f;
    }
    return fa__bits_f32(sign | ((exp + 120u) << 23) | (man << 20));
}

FLASHATTN_DEF float fa_e5m2_to_f32(uint8_t v)
{
    /* E5M2 is the top byte of an IEEE binary16. */
    return fa_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

/* ============================================================================================
   attn (implementation)
   ============================================================================================ */

/* ---- element access ----
   Tensors are strided views of f32/f16/bf16/e4m3/e5m2 elements. Rows (head_dim contiguous
   elements) are converted to f32 (or f64 for the reference) once per tile, so the inner loops
   only ever see floats. */

static float fa__elem_f32(const void *base, fa_dtype t, int64_t i)
{
    switch (t) {
    case FA_F32: return ((const float *)base)[i];
    case FA_F16: return fa_f16_to_f32(((const uint16_t *)base)[i]);
    case FA_BF16: return fa_bf16_to_f32(((const uint16_t *)base)[i]);
    case FA_E4M3: return fa_e4m3_to_f32(((const uint8_t *)base)[i]);
    case FA_E5M2: return fa_e5m2_to_f32(((const uint8_t *)base)[i]);
    default: return 0.0f;
    }
}

/* dst[0..n) = src[0..n) * mul, converted to f32. The dtype switch sits outside the loops. */
static void fa__load_row(float *dst, const void *src, fa_dtype t, int64_t n, float mul)
{
    int64_t i;
    switch (t) {
    case FA_F32: {
        const float *s = (const float *)src;
        if (mul == 1.0f) memcpy(dst, s, (size_t)n * sizeof(float));
        else for (i = 0; i < n; i++) dst[i] = s[i] * mul;
        break;
    }
    case FA_F16: {
        const uint16_t *s = (const uint16_t *)src;
        for (i = 0; i < n; i++) dst[i] = fa_f16_to_f32(s[i]) * mul;
        break;
    }
    case FA_BF16: {
        const uint16_t *s = (const uint16_t *)src;
        for (i = 0; i < n; i++) dst[i] = fa_bf16_to_f32(s[i]) * mul;
        break;
    }
    default:
        for (i = 0; i < n; i++) dst[i] = fa__elem_f32(src, t, i) * mul;
        break;
    }
}

static void fa__store_row(void *dst, fa_dtype t, const float *src, int64_t n)
{
    int64_t i;
    switch (t) {
    case FA_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case FA_F16:
        for (i = 0; i < n; i++) ((uint16_t *)dst)[i] = fa_f32_to_f16(src[i]);
        break;
    case FA_BF16:
        for (i = 0; i < n; i++) ((uint16_t *)dst)[i] = fa_f32_to_bf16(src[i]);
        break;
    default: break; /* rejected by validation */
    }
}

static const void *fa__elem_ptr(const void *base, fa_dtype t, int64_t off)
{
    return (const unsigned char *)base + off * (int64_t)fa_dtype_size(t);
}

/* ---- the resolved problem ----
   fa__attn_prepare() validates a descriptor and resolves every default (strides, dims,
   scales), so the kernels and the reference read one plain struct. */
typedef struct fa__attn_plan {
    const fa_attn_desc *d;
    int64_t batch, hq, hkv, group, dk, dv;
    int64_t sq_max, sk_max;   /* per-sequence maxima (sk_max: capacity when paged) */
    int64_t total_q;          /* tokens along Q's token axis (varlen: cu_seqlens_q[batch]) */
    fa_strides qs, ks, vs, os, ls;
    float scale, softcap;
    int64_t win_left, win_right; /* clamped; < 0 = unbounded */
    int64_t bt_stride;
    size_t ws_bytes;          /* workspace per worker */
} fa__attn_plan;

/* Sequence geometry of batch entry b. q_tok0/k_tok0 are the first token indices along the
   token axis (0 unless varlen); q_base/k_base add the batch stride (0 when varlen/paged). */
typedef struct fa__seq {
    int64_t sq, sk;     /* queries, visible-capacity keys of this sequence */
    int64_t q_tok0, k_tok0;
    int64_t q_base, o_base, l_base, k_base, v_base;
    int64_t off;        /* sk - sq: the bottom-right diagonal offset */
} fa__seq;

static void fa__attn_seq(const fa__attn_plan *p, int64_t b, fa__seq *s)
{
    const fa_attn_desc *d = p->d;
    if (d->cu_seqlens_q) {
        s->q_tok0 = d->cu_seqlens_q[b];
        s->sq = (int64_t)d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
        s->q_base = s->o_base = s->l_base = 0;
    } else {
        s->q_tok0 = 0;
        s->sq = p->sq_max;
        s->q_base = b * p->qs.batch;
        s->o_base = b * p->os.batch;
        s->l_base = b * p->ls.batch;
    }
    if (d->cu_seqlens_k) {
        s->k_tok0 = d->cu_seqlens_k[b];
        s->sk = (int64_t)d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
        s->k_base = s->v_base = 0;
    } else {
        s->k_tok0 = 0;
        s->sk = p->sk_max;
        s->k_base = d->block_table ? 0 : b * p->ks.batch;
        s->v_base = d->block_table ? 0 : b * p->vs.batch;
    }
    if (d->seqused_k) s->sk = d->seqused_k[b];
    s->off = s->sk - s->sq;
}

/* Element offsets of key/value row j (0-based in sequence b) for kv head h. */
static void fa__kv_offsets(const fa__attn_plan *p, const fa__seq *s, int64_t b, int64_t j,
                           int64_t h, int64_t *ko, int64_t *vo)
{
    const fa_attn_desc *d = p->d;
    if (d->block_table) {
        int64_t page = d->block_table[b * p->bt_stride + j / d->page_size];
        int64_t slot = j % d->page_size;
        *ko = page * p->ks.batch + slot * p->ks.seq + h * p->ks.head;
        *vo = page * p->vs.batch + slot * p->vs.seq + h * p->vs.head;
    } else {
        *ko = s->k_base + (s->k_tok0 + j) * p->ks.seq + h * p->ks.head;
        *vo = s->v_base + (s->k_tok0 + j) * p->vs.seq + h * p->vs.head;
    }
}

/* Visible keys of query i form one interval [lo, hi): the causal and window limits are both
   diagonals, the sequence length the right edge. Returns hi <= lo when nothing is visible. */
static void fa__row_range(const fa__attn_plan *p, const fa__seq *s, int64_t i, int64_t *lo,
                          int64_t *hi)
{
    int64_t diag = i + s->off, a = 0, e = s->sk;
    if (p->d->causal && diag + 1 < e) e = diag + 1;
    if (p->win_right >= 0 && diag + p->win_right + 1 < e) e = diag + p->win_right + 1;
    if (p->win_left >= 0 && diag - p->win_left > a) a = diag - p->win_left;
    *lo = a;
    *hi = e;
}

static float fa__kv_scale(float tensor_scale, const float *head_scale, int64_t h)
{
    float s = head_scale ? head_scale[h] : tensor_scale;
    return s == 0.0f ? 1.0f : s;
}

/* Largest element offset reachable in a view: sum (extent-1)*|stride| + (dim-1).
   Returns 1 on int64 overflow (also when the byte offset would overflow). */
static int fa__view_extent(int64_t n0, int64_t s0, int64_t n1, int64_t s1, int64_t n2,
                           int64_t s2, int64_t dim, size_t esize)
{
    int64_t t, acc = dim > 0 ? dim - 1 : 0;
    int64_t n[3], st[3];
    int i;
    n[0] = n0; n[1] = n1; n[2] = n2;
    st[0] = s0 < 0 ? -s0 : s0; st[1] = s1 < 0 ? -s1 : s1; st[2] = s2 < 0 ? -s2 : s2;
    for (i = 0; i < 3; i++) {
        if (n[i] <= 1) continue;
        if (st[i] < 0 || fa__mul_i64(n[i] - 1, st[i], &t) || fa__add_i64(acc, t, &acc)) return 1;
    }
    return fa__mul_i64(acc, (int64_t)esize, &t);
}

static int fa__dtype_is_float_io(fa_dtype t) { return t == FA_F32 || t == FA_F16 || t == FA_BF16; }
static int fa__dtype_known(fa_dtype t) { return (int)t >= 0 && (int)t < (int)FA_DTYPE_COUNT_; }

static int fa__finite(float x) { return x == x && x - x == 0.0f; }

/* Checks cu_seqlens: non-negative start, non-decreasing, each length <= max when max > 0.
   Returns the largest length in *maxlen. */
static fa_status fa__check_cu(const int32_t *cu, int64_t batch, int64_t max, const char *name,
                              int64_t *maxlen)
{
    int64_t b, m = 0;
    if (cu[0] < 0) return fa__fail(FA_ERR_RANGE, "%s[0] (%ld) is negative", name, (long)cu[0]);
    for (b = 0; b < batch; b++) {
        int64_t len = (int64_t)cu[b + 1] - cu[b];
        if (len < 0)
            return fa__fail(FA_ERR_RANGE, "%s is not monotonic: [%lld] = %ld > [%lld] = %ld",
                            name, (long long)b, (long)cu[b], (long long)(b + 1), (long)cu[b + 1]);
        if (max > 0 && len > max)
            return fa__fail(FA_ERR_RANGE, "%s: sequence %lld has %lld tokens, more than the "
                            "maximum %lld", name, (long long)b, (long long)len, (long long)max);
        if (len > m) m = len;
    }
    *maxlen = m;
    return FA_OK;
}

#define FA__ROWS FA_ATTN_BLOCK_Q
#define FA__BK FA_ATTN_BLOCK_K
static size_t fa__round64(size_t x) { return (x + 63) & ~(size_t)63; }
struct fa__attn_ws;
static size_t fa__attn_ws_layout(struct fa__attn_ws *w, unsigned char *base, int64_t dk, int64_t dv);

static fa_status fa__attn_prepare(const fa_attn_desc *d, fa__attn_plan *p)
{
    int64_t b, t, total_k = 0;
    fa_status st;
    memset(p, 0, sizeof *p);
    if (!d) return fa__fail(FA_ERR_NULL, "attention desc is NULL");
    p->d = d;

    /* ---- sizes ---- */
    if (d->batch < 1) return fa__fail(FA_ERR_INVALID, "batch (%lld) must be >= 1", (long long)d->batch);
    if (d->heads_q < 1) return fa__fail(FA_ERR_INVALID, "heads_q (%lld) must be >= 1", (long long)d->heads_q);
    if (d->heads_kv < 0) return fa__fail(FA_ERR_INVALID, "heads_kv (%lld) must be >= 0 (0 = heads_q)", (long long)d->heads_kv);
    p->batch = d->batch;
    p->hq = d->heads_q;
    p->hkv = d->heads_kv ? d->heads_kv : d->heads_q;
    if (p->hq % p->hkv != 0)
        return fa__fail(FA_ERR_SHAPE, "heads_q (%lld) is not a multiple of heads_kv (%lld)",
                        (long long)p->hq, (long long)p->hkv);
    p->group = p->hq / p->hkv;
    if (d->head_dim < 1 || d->head_dim > FA_ATTN_MAX_HEAD_DIM)
        return fa__fail(FA_ERR_SHAPE, "head_dim (%lld) must be in 1..%d", (long long)d->head_dim, FA_ATTN_MAX_HEAD_DIM);
    if (d->head_dim_v < 0 || d->head_dim_v > FA_ATTN_MAX_HEAD_DIM)
        return fa__fail(FA_ERR_SHAPE, "head_dim_v (%lld) must be in 1..%d (0 = head_dim)", (long long)d->head_dim_v, FA_ATTN_MAX_HEAD_DIM);
    p->dk = d->head_dim;
    p->dv = d->head_dim_v ? d->head_dim_v : d->head_dim;
    if (d->seqlen_q < 0 || (!d->cu_seqlens_q && d->seqlen_q < 1))
        return fa__fail(FA_ERR_INVALID, "seqlen_q (%lld) must be >= 1 (or 0 with cu_seqlens_q)", (long long)d->seqlen_q);
    if (d->seqlen_k < 0) return fa__fail(FA_ERR_INVALID, "seqlen_k (%lld) must be >= 0", (long long)d->seqlen_k);

    /* ---- pointers and dtypes ---- */
    if (!d->q) return fa__fail(FA_ERR_NULL, "q is NULL");
    if (!d->k) return fa__fail(FA_ERR_NULL, "k is NULL");
    if (!d->v) return fa__fail(FA_ERR_NULL, "v is NULL");
    if (!d->o) return fa__fail(FA_ERR_NULL, "o is NULL");
    if (!fa__dtype_is_float_io(d->q_type)) return fa__fail(FA_ERR_DTYPE, "q_type (%d) must be f32, f16 or bf16", (int)d->q_type);
    if (!fa__dtype_known(d->k_type)) return fa__fail(FA_ERR_DTYPE, "k_type (%d) is not a known dtype", (int)d->k_type);
    if (!fa__dtype_known(d->v_type)) return fa__fail(FA_ERR_DTYPE, "v_type (%d) is not a known dtype", (int)d->v_type);
    if (!fa__dtype_is_float_io(d->o_type)) return fa__fail(FA_ERR_DTYPE, "o_type (%d) must be f32, f16 or bf16", (int)d->o_type);

    /* ---- scores ---- */
    if (!fa__finite(d->softmax_scale)) return fa__fail(FA_ERR_INVALID, "softmax_scale is not finite");
    p->scale = d->softmax_scale != 0.0f ? d->softmax_scale : (float)(1.0 / sqrt((double)p->dk));
    if (!fa__finite(d->softcap) || d->softcap < 0.0f) return fa__fail(FA_ERR_INVALID, "softcap (%g) must be finite and >= 0", (double)d->softcap);
    p->softcap = d->softcap;
    if (!fa__finite(d->k_scale) || !fa__finite(d->v_scale)) return fa__fail(FA_ERR_INVALID, "k_scale/v_scale must be finite");
    if (d->alibi_batch_stride < 0) return fa__fail(FA_ERR_INVALID, "alibi_batch_stride (%lld) must be >= 0", (long long)d->alibi_batch_stride);
    p->win_left = p->win_right = -1;
    if (d->use_window) {
        p->win_left = d->window_left;
        p->win_right = d->window_right;
    }
    if (d->num_splits < 0) return fa__fail(FA_ERR_INVALID, "num_splits (%lld) must be >= 0", (long long)d->num_splits);
    if (d->mask) return fa__fail(FA_ERR_UNSUPPORTED, "sparse masks are not available in this build yet");

    /* ---- variable lengths ---- */
    p->sq_max = d->seqlen_q;
    p->sk_max = d->seqlen_k;
    if (d->cu_seqlens_q) {
        int64_t m;
        if ((st = fa__check_cu(d->cu_seqlens_q, p->batch, d->seqlen_q, "cu_seqlens_q", &m)) != FA_OK) return st;
        if (!d->seqlen_q) p->sq_max = m;
        p->total_q = d->cu_seqlens_q[p->batch];
    } else {
        p->total_q = p->sq_max;
    }
    if (d->block_table && d->cu_seqlens_k)
        return fa__fail(FA_ERR_INVALID, "paged KV (block_table) and cu_seqlens_k cannot be combined");
    if (d->cu_seqlens_k) {
        int64_t m;
        if ((st = fa__check_cu(d->cu_seqlens_k, p->batch, d->seqlen_k, "cu_seqlens_k", &m)) != FA_OK) return st;
        if (!d->seqlen_k) p->sk_max = m;
        total_k = d->cu_seqlens_k[p->batch];
    } else {
        total_k = p->sk_max;
    }
    if (d->block_table) {
        if (d->page_size < 1) return fa__fail(FA_ERR_INVALID, "page_size (%lld) must be >= 1 with a block_table", (long long)d->page_size);
        if (d->num_pages < 1) return fa__fail(FA_ERR_INVALID, "num_pages (%lld) must be >= 1 with a block_table", (long long)d->num_pages);
        if (d->block_table_stride < 0) return fa__fail(FA_ERR_INVALID, "block_table_stride (%lld) must be >= 0", (long long)d->block_table_stride);
        p->bt_stride = d->block_table_stride ? d->block_table_stride
                                             : (p->sk_max + d->page_size - 1) / d->page_size;
        if (p->bt_stride * d->page_size < p->sk_max)
            return fa__fail(FA_ERR_SHAPE, "block_table_stride (%lld) pages of %lld keys cannot hold seqlen_k (%lld)",
                            (long long)p->bt_stride, (long long)d->page_size, (long long)p->sk_max);
        if (fa__mul_i64(p->batch, p->bt_stride, &t)) return fa__fail(FA_ERR_OVERFLOW, "batch * block_table_stride overflows");
    }
    if (d->seqused_k) {
        for (b = 0; b < p->batch; b++) {
            int64_t cap = d->cu_seqlens_k ? (int64_t)d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b] : p->sk_max;
            if (d->seqused_k[b] < 0 || d->seqused_k[b] > cap)
                return fa__fail(FA_ERR_RANGE, "seqused_k[%lld] (%ld) is outside 0..%lld", (long long)b, (long)d->seqused_k[b], (long long)cap);
        }
    }
    if (d->block_table) {
        for (b = 0; b < p->batch; b++) {
            int64_t sk = d->seqused_k ? d->seqused_k[b] : p->sk_max;
            int64_t np = (sk + d->page_size - 1) / d->page_size;
            for (t = 0; t < np; t++) {
                int32_t pg = d->block_table[b * p->bt_stride + t];
                if (pg < 0 || pg >= d->num_pages)
                    return fa__fail(FA_ERR_RANGE, "block_table[%lld][%lld] = %ld is outside 0..%lld",
                                    (long long)b, (long long)t, (long)pg, (long long)(d->num_pages - 1));
            }
        }
    }

    /* ---- strides (zero = packed BSHD) and overflow of every reachable offset ---- */
    {
        int64_t qrow, krow, vrow, orow, qseq, kseq, vseq, oseq, kext, hq_total;
        if (fa__mul_i64(p->hq, p->dk, &qrow) || fa__mul_i64(p->hkv, p->dk, &krow) ||
            fa__mul_i64(p->hkv, p->dv, &vrow) || fa__mul_i64(p->hq, p->dv, &orow))
            return fa__fail(FA_ERR_OVERFLOW, "heads * head_dim overflows");
        kext = d->block_table ? d->page_size : p->sk_max;
        if (fa__mul_i64(p->sq_max, qrow, &qseq) || fa__mul_i64(kext, krow, &kseq) ||
            fa__mul_i64(kext, vrow, &vseq) || fa__mul_i64(p->sq_max, orow, &oseq) ||
            fa__mul_i64(p->hq, p->sq_max, &hq_total))
            return fa__fail(FA_ERR_OVERFLOW, "seqlen * heads * head_dim overflows");
        p->qs.head = d->q_stride.head ? d->q_stride.head : p->dk;
        p->qs.seq = d->q_stride.seq ? d->q_stride.seq : qrow;
        p->qs.batch = d->q_stride.batch ? d->q_stride.batch : qseq;
        p->ks.head = d->k_stride.head ? d->k_stride.head : p->dk;
        p->ks.seq = d->k_stride.seq ? d->k_stride.seq : krow;
        p->ks.batch = d->k_stride.batch ? d->k_stride.batch : kseq;
        p->vs.head = d->v_stride.head ? d->v_stride.head : p->dv;
        p->vs.seq = d->v_stride.seq ? d->v_stride.seq : vrow;
        p->vs.batch = d->v_stride.batch ? d->v_stride.batch : vseq;
        p->os.head = d->o_stride.head ? d->o_stride.head : p->dv;
        p->os.seq = d->o_stride.seq ? d->o_stride.seq : orow;
        p->os.batch = d->o_stride.batch ? d->o_stride.batch : oseq;
        p->ls.seq = d->lse_stride.seq ? d->lse_stride.seq : 1;
        if (d->cu_seqlens_q) {
            p->ls.head = d->lse_stride.head ? d->lse_stride.head : p->total_q;
            p->ls.batch = 0;
        } else {
            p->ls.head = d->lse_stride.head ? d->lse_stride.head : p->sq_max;
            p->ls.batch = d->lse_stride.batch ? d->lse_stride.batch : hq_total;
        }
        {
            int64_t nbq = d->cu_seqlens_q ? 1 : p->batch, ntq = p->total_q;
            int64_t nbk = d->block_table ? d->num_pages : (d->cu_seqlens_k ? 1 : p->batch);
            int64_t ntk = d->block_table ? d->page_size : total_k;
            if (fa__view_extent(nbq, p->qs.batch, ntq, p->qs.seq, p->hq, p->qs.head, p->dk, fa_dtype_size(d->q_type)))
                return fa__fail(FA_ERR_OVERFLOW, "q view offsets overflow int64");
            if (fa__view_extent(nbk, p->ks.batch, ntk, p->ks.seq, p->hkv, p->ks.head, p->dk, fa_dtype_size(d->k_type)))
                return fa__fail(FA_ERR_OVERFLOW, "k view offsets overflow int64");
            if (fa__view_extent(nbk, p->vs.batch, ntk, p->vs.seq, p->hkv, p->vs.head, p->dv, fa_dtype_size(d->v_type)))
                return fa__fail(FA_ERR_OVERFLOW, "v view offsets overflow int64");
            if (fa__view_extent(nbq, p->os.batch, ntq, p->os.seq, p->hq, p->os.head, p->dv, fa_dtype_size(d->o_type)))
                return fa__fail(FA_ERR_OVERFLOW, "o view offsets overflow int64");
            if (d->lse && fa__view_extent(nbq, p->ls.batch, ntq, p->ls.seq, p->hq, p->ls.head, 1, sizeof(float)))
                return fa__fail(FA_ERR_OVERFLOW, "lse view offsets overflow int64");
        }
    }
    /* per-head arrays are read only now that heads and batch are known not to overflow */
    for (t = 0; (d->k_head_scale || d->v_head_scale) && t < p->hkv; t++) {
        if (d->k_head_scale && !fa__finite(d->k_head_scale[t])) return fa__fail(FA_ERR_INVALID, "k_head_scale[%lld] is not finite", (long long)t);
        if (d->v_head_scale && !fa__finite(d->v_head_scale[t])) return fa__fail(FA_ERR_INVALID, "v_head_scale[%lld] is not finite", (long long)t);
    }
    if (d->alibi_slopes) {
        int64_t nb = d->alibi_batch_stride ? p->batch : 1;
        for (b = 0; b < nb; b++)
            for (t = 0; t < p->hq; t++)
                if (!fa__finite(d->alibi_slopes[b * d->alibi_batch_stride + t]))
                    return fa__fail(FA_ERR_INVALID, "alibi slope [%lld][%lld] is not finite", (long long)b, (long long)t);
    }
    /* A window side larger than any distance is the same as unbounded; clamping keeps the
       diagonal arithmetic far from int64 limits. */
    if (p->win_left > p->sq_max + p->sk_max) p->win_left = p->sq_max + p->sk_max;
    if (p->win_right > p->sq_max + p->sk_max) p->win_right = p->sq_max + p->sk_max;

    p->ws_bytes = fa__attn_ws_layout(NULL, NULL, p->dk, p->dv);
    if (d->workspace) {
        if (((uintptr_t)d->workspace & 63) != 0) return fa__fail(FA_ERR_ALIGN, "workspace must be 64-byte aligned");
        if (d->workspace_size < p->ws_bytes)
            return fa__fail(FA_ERR_INVALID, "workspace_size (%zu) is less than the %zu bytes needed",
                            d->workspace_size, p->ws_bytes);
    }
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_attn_validate(const fa_attn_desc *d)
{
    fa__attn_plan p;
    return fa__attn_prepare(d, &p);
}

FLASHATTN_DEF fa_status fa_attn_workspace_size(const fa_attn_desc *d, size_t *bytes)
{
    fa__attn_plan p;
    fa_status st;
    if (!bytes) return fa__fail(FA_ERR_NULL, "bytes is NULL");
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    *bytes = p.ws_bytes;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_attn_memory(const fa_attn_desc *d, fa_attn_memory_info *info)
{
    fa__attn_plan p;
    fa_status st;
    int64_t nq, nk, io = 0, t, naive;
    if (!info) return fa__fail(FA_ERR_NULL, "info is NULL");
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    nq = d->cu_seqlens_q ? p.total_q : p.batch * p.sq_max;
    nk = d->cu_seqlens_k ? (int64_t)d->cu_seqlens_k[p.batch] : p.batch * p.sk_max;
    if (fa__mul_i64(nq, p.hq * p.dk * (int64_t)fa_dtype_size(d->q_type), &t) || fa__add_i64(io, t, &io) ||
        fa__mul_i64(nk, p.hkv * p.dk * (int64_t)fa_dtype_size(d->k_type), &t) || fa__add_i64(io, t, &io) ||
        fa__mul_i64(nk, p.hkv * p.dv * (int64_t)fa_dtype_size(d->v_type), &t) || fa__add_i64(io, t, &io) ||
        fa__mul_i64(nq, p.hq * p.dv * (int64_t)fa_dtype_size(d->o_type), &t) || fa__add_i64(io, t, &io) ||
        (d->lse && (fa__mul_i64(nq, p.hq * 4, &t) || fa__add_i64(io, t, &io))))
        return fa__fail(FA_ERR_OVERFLOW, "tensor sizes overflow int64");
    if (fa__mul_i64(p.batch, p.hq, &naive) || fa__mul_i64(naive, p.sq_max, &naive) ||
        fa__mul_i64(naive, p.sk_max, &naive) || fa__mul_i64(naive, 4, &naive))
        return fa__fail(FA_ERR_OVERFLOW, "the naive score matrix size overflows int64");
    if ((uint64_t)io > (uint64_t)SIZE_MAX || (uint64_t)naive > (uint64_t)SIZE_MAX)
        return fa__fail(FA_ERR_OVERFLOW, "sizes exceed size_t");
    info->io_bytes = (size_t)io;
    info->flash_bytes = p.ws_bytes;
    info->naive_bytes = (size_t)naive;
    return FA_OK;
}

/* ---- the tiled kernel ----
   One unit of work is (sequence b, kv head hk, a chunk of the query heads that share it, a tile
   of queries). Its rows are (query, head) pairs, at most FA__ROWS of them, so the K/V tile
   loaded once serves every query head of the GQA group. For each tile of FA__BK keys:
       S = Q K^T                                  (fa__qk: register-blocked, 4 rows x 64 keys)
       per row: s = scale*s (+ softcap, ALiBi), keys outside the row's visible interval -inf,
       m' = max(m, max_j s_j); O *= exp(m-m'); p_j = exp(s_j-m'); l' = l*exp(m-m') + sum_j p_j
       O += P V                                   (fa__pv: 4 rows x 64 dims, visible keys only)
   (FlashAttention-2, Dao 2023, Algorithm 1) and at the end O /= l, lse = m + log(l).
   Visible keys of a row form one interval, so key tiles outside the union of the rows'
   intervals are never loaded, and P V never multiplies a key a row cannot see: a NaN in a V row
   cannot leak into rows that do not see it.

   Layouts in the workspace (f32): q [FA__ROWS][dk] (pad rows zero), kt [dk][FA__BK] (K tile
   transposed, missing keys zero), v [FA__BK][dvp] and o [FA__ROWS][dvp] with dvp = dv rounded up
   to 16 (pad columns zero), s [FA__ROWS][FA__BK].

   The micro-kernels exist as scalar, AVX2+FMA and AVX-512 versions, chosen once per call from
   fa_cpu_features(); the exp used by the vector versions is a Cephes-style degree-6 polynomial
   on [-ln2/2, ln2/2] with exact 2^n scaling: relative error <= 2 ulp on [ln FLT_MIN, ln FLT_MAX]
   (checked in tests/test_attn.c against double exp), +inf above, exactly 0 below -87.3 (where the true value is
   below FLT_MIN and at least 2^-126 times smaller than the row's largest term), NaN for NaN. */

#define FA__MR 4 /* rows per micro-kernel block */
#define FA__QK_CHUNK 32 /* head dims summed before adding into S: error grows with chunk + dk/chunk, not dk */
#define FA__EXP_LO (-87.3365478515625f) /* ln(FLT_MIN): below it exp() flushes to 0 */
#define FA__EXP_HI 88.72283935546875f     /* ln(FLT_MAX), rounded down: above it exp() is +inf */

static int64_t fa__dvp(int64_t dv) { return (dv + 15) & ~(int64_t)15; }

/* max that propagates NaN: once a NaN logit is seen the row's max, and so its output, is NaN */
static float fa__nanmax(float a, float b)
{
    if (a != a) return a;
    if (b != b) return b;
    return a > b ? a : b;
}

typedef struct fa__attn_kernels {
    const char *name;
    /* s[r][0..FA__BK) = sum_d q[r][d] * kt[d][.] for r < rows (rows a multiple of FA__MR) */
    void (*qk)(const float *q, int64_t dk, const float *kt, float *s, int64_t rows);
    /* s[0..n) *= scale; returns the NaN-propagating max (or -inf for n = 0) */
    float (*scale_max)(float *s, int64_t n, float scale);
    /* s[i] = exp(s[i] - m) in place; returns the sum */
    float (*exp_sum)(float *s, int64_t n, float m);
    /* o[0..n) *= c */
    void (*scale)(float *o, int64_t n, float c);
    /* o[r][0..dvp) += sum_{c0[r] <= c < c1[r]} s[r][c] * v[c][0..dvp) for r < nrows */
    void (*pv)(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows, const int32_t *c0,
               const int32_t *c1);
} fa__attn_kernels;

/* ---- scalar ---- */
static void fa__qk_scalar(const float *q, int64_t dk, const float *kt, float *s, int64_t rows)
{
    int64_t r, d, c, d0;
    float acc[FA__BK];
    for (r = 0; r < rows; r++) {
        float *sr = s + r * FA__BK;
        for (c = 0; c < FA__BK; c++) sr[c] = 0.0f;
        for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
            int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
            for (c = 0; c < FA__BK; c++) acc[c] = 0.0f;
            for (d = d0; d < d1; d++) {
                float qv = q[r * dk + d];
                const float *kr = kt + d * FA__BK;
                for (c = 0; c < FA__BK; c++) acc[c] += qv * kr[c];
            }
            for (c = 0; c < FA__BK; c++) sr[c] += acc[c];
        }
    }
}

static float fa__scale_max_scalar(float *s, int64_t n, float scale)
{
    float mx = -INFINITY;
    int64_t i;
    for (i = 0; i < n; i++) {
        s[i] *= scale;
        mx = fa__nanmax(mx, s[i]);
    }
    return mx;
}

static float fa__exp_sum_scalar(float *s, int64_t n, float m)
{
    float sum = 0.0f;
    int64_t i;
    for (i = 0; i < n; i++) {
        float x = s[i] - m;
        s[i] = x < FA__EXP_LO ? 0.0f : expf(x); /* flush as the vector paths do (NaN: expf) */
        sum += s[i];
    }
    return sum;
}

static void fa__scale_scalar(float *o, int64_t n, float c)
{
    int64_t i;
    for (i = 0; i < n; i++) o[i] *= c;
}

static void fa__pv_scalar(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows,
                          const int32_t *c0, const int32_t *c1)
{
    int64_t r, c, e;
    for (r = 0; r < nrows; r++) {
        float *orow = o + r * dvp;
        for (c = c0[r]; c < c1[r]; c++) {
            float p = s[r * FA__BK + c];
            const float *vr = v + c * dvp;
            for (e = 0; e < dvp; e++) orow[e] += p * vr[e];
        }
    }
}

static const fa__attn_kernels fa__kernels_scalar = {
    "scalar", fa__qk_scalar, fa__scale_max_scalar, fa__exp_sum_scalar, fa__scale_scalar, fa__pv_scalar};

/* The rows of a block share the keys in the intersection of their intervals; the keys
   outside it are done row by row. Returns the intersection [*a, *b) (empty: *a >= *b). */
static FA__UNUSED void fa__pv_common(int64_t nr, const int32_t *c0, const int32_t *c1, int64_t *a, int64_t *b)
{
    int64_t r;
    *a = c0[0];
    *b = c1[0];
    for (r = 1; r < nr; r++) {
        if (c0[r] > *a) *a = c0[r];
        if (c1[r] < *b) *b = c1[r];
    }
}

#if defined(FA__X86)
/* ---- AVX2 + FMA ---- */
#define FA__AVX2 __attribute__((target("avx2,fma")))

static FA__AVX2 __m256 fa__exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(FA__EXP_LO), hi = _mm256_set1_ps(FA__EXP_HI);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    __m256 p, r2, y, res;
    __m256i e;
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
    /* n in [-126, 128]: split 2^n into two factors so n = 128 does not overflow the exponent */
    e = _mm256_cvtps_epi32(n);
    {
        __m256i e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
        __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, _mm256_set1_epi32(127)), 23));
        __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, _mm256_set1_epi32(127)), 23));
        res = _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
    }
    res = _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return _mm256_blendv_ps(res, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN stays NaN */
}

static FA__AVX2 void fa__qk_avx2(const float *q, int64_t dk, const float *kt, float *s, int64_t rows)
{
    int64_t r, d, d0;
    int h;
    /* 4 rows x 32 keys at a time: 16 accumulators of 8 floats */
    for (r = 0; r < rows; r += FA__MR)
        for (h = 0; h < FA__BK; h += 32)
            for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
                int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
                __m256 a[4][4];
                int i, j;
                for (i = 0; i < 4; i++)
                    for (j = 0; j < 4; j++) a[i][j] = _mm256_setzero_ps();
                for (d = d0; d < d1; d++) {
                    const float *kr = kt + d * FA__BK + h;
                    __m256 k0 = _mm256_loadu_ps(kr), k1 = _mm256_loadu_ps(kr + 8);
                    __m256 k2 = _mm256_loadu_ps(kr + 16), k3 = _mm256_loadu_ps(kr + 24);
                    for (i = 0; i < 4; i++) {
                        __m256 qv = _mm256_broadcast_ss(q + (r + i) * dk + d);
                        a[i][0] = _mm256_fmadd_ps(qv, k0, a[i][0]);
                        a[i][1] = _mm256_fmadd_ps(qv, k1, a[i][1]);
                        a[i][2] = _mm256_fmadd_ps(qv, k2, a[i][2]);
                        a[i][3] = _mm256_fmadd_ps(qv, k3, a[i][3]);
                    }
                }
                for (i = 0; i < 4; i++)
                    for (j = 0; j < 4; j++) {
                        float *dst = s + (r + i) * FA__BK + h + 8 * j;
                        _mm256_storeu_ps(dst, d0 ? _mm256_add_ps(_mm256_loadu_ps(dst), a[i][j]) : a[i][j]);
                    }
            }
}

static FA__AVX2 float fa__scale_max_avx2(float *s, int64_t n, float scale)
{
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    float mx, buf[8];
    int64_t i = 0;
    int k;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + i), vs);
        _mm256_storeu_ps(s + i, x);
        vm = _mm256_max_ps(vm, x);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    }
    _mm256_storeu_ps(buf, vm);
    mx = buf[0];
    for (k = 1; k < 8; k++) mx = buf[k] > mx ? buf[k] : mx;
    if (_mm256_movemask_ps(nan)) mx = NAN;
    for (; i < n; i++) {
        s[i] *= scale;
        mx = fa__nanmax(mx, s[i]);
    }
    return mx;
}

static FA__AVX2 float fa__exp_sum_avx2(float *s, int64_t n, float m)
{
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    float buf[8], sum;
    int64_t i = 0;
    int k;
    for (; i + 8 <= n; i += 8) {
        __m256 p = fa__exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, p);
        acc = _mm256_add_ps(acc, p);
    }
    if (i < n) { /* tail through a padded buffer: same polynomial as the body */
        int64_t t = n - i;
        for (k = 0; k < 8; k++) buf[k] = k < t ? s[i + k] : -INFINITY;
        _mm256_storeu_ps(buf, fa__exp256(_mm256_sub_ps(_mm256_loadu_ps(buf), vm)));
        for (k = 0; k < t; k++) s[i + k] = buf[k];
        for (k = (int)t; k < 8; k++) buf[k] = 0.0f;
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(buf));
    }
    _mm256_storeu_ps(buf, acc);
    sum = ((buf[0] + buf[4]) + (buf[1] + buf[5])) + ((buf[2] + buf[6]) + (buf[3] + buf[7]));
    return sum;
}

static FA__AVX2 void fa__scale_avx2(float *o, int64_t n, float c)
{
    __m256 vc = _mm256_set1_ps(c);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), vc));
    for (; i < n; i++) o[i] *= c;
}

/* one row, keys [a, b), all dvp columns (dvp is a multiple of 16, hence of 8) */
static FA__AVX2 void fa__pv_row_avx2(float *o, const float *sr, const float *v, int64_t dvp, int64_t a, int64_t b)
{
    int64_t e, c;
    for (e = 0; e < dvp; e += 8) {
        __m256 acc = _mm256_loadu_ps(o + e);
        for (c = a; c < b; c++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(sr + c), _mm256_loadu_ps(v + c * dvp + e), acc);
        _mm256_storeu_ps(o + e, acc);
    }
}

static FA__AVX2 void fa__pv_avx2(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows,
                                 const int32_t *c0, const int32_t *c1)
{
    int64_t r, e, c, i, a, b;
    for (r = 0; r < nrows; r += FA__MR) {
        int64_t nr = nrows - r < FA__MR ? nrows - r : FA__MR;
        fa__pv_common(nr, c0 + r, c1 + r, &a, &b);
        if (nr == FA__MR && a < b) {
            for (e = 0; e < dvp; e += 16) {
                __m256 acc[4][2];
                for (i = 0; i < 4; i++) {
                    acc[i][0] = _mm256_loadu_ps(o + (r + i) * dvp + e);
                    acc[i][1] = _mm256_loadu_ps(o + (r + i) * dvp + e + 8);
                }
                for (c = a; c < b; c++) {
                    __m256 v0 = _mm256_loadu_ps(v + c * dvp + e), v1 = _mm256_loadu_ps(v + c * dvp + e + 8);
                    for (i = 0; i < 4; i++) {
                        __m256 p = _mm256_broadcast_ss(s + (r + i) * FA__BK + c);
                        acc[i][0] = _mm256_fmadd_ps(p, v0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(p, v1, acc[i][1]);
                    }
                }
                for (i = 0; i < 4; i++) {
                    _mm256_storeu_ps(o + (r + i) * dvp + e, acc[i][0]);
                    _mm256_storeu_ps(o + (r + i) * dvp + e + 8, acc[i][1]);
                }
            }
        } else {
            a = b = 0;
        }
        for (i = 0; i < nr; i++) { /* the keys outside the shared interval, row by row */
            int64_t lo = c0[r + i], hi = c1[r + i];
            if (a >= b) { fa__pv_row_avx2(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, lo, hi); continue; }
            fa__pv_row_avx2(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, lo, a);
            fa__pv_row_avx2(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, b, hi);
        }
    }
}

static const fa__attn_kernels fa__kernels_avx2 = {
    "avx2", fa__qk_avx2, fa__scale_max_avx2, fa__exp_sum_avx2, fa__scale_avx2, fa__pv_avx2};

/* ---- AVX-512 ---- */
#define FA__AVX512 __attribute__((target("avx512f")))

static FA__AVX512 __m512 fa__exp512(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(FA__EXP_LO), hi = _mm512_set1_ps(FA__EXP_HI);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    __m512 p, r2, y, res;
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
    res = _mm512_scalef_ps(y, n); /* y * 2^n, exact */
    res = _mm512_mask_mov_ps(res, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), _mm512_setzero_ps());
    res = _mm512_mask_mov_ps(res, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(res, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

static FA__AVX512 void fa__qk_avx512(const float *q, int64_t dk, const float *kt, float *s, int64_t rows)
{
    int64_t r, d, d0;
    for (r = 0; r < rows; r += FA__MR)
        for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
            int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
            __m512 a[4][4];
            int i, j;
            for (i = 0; i < 4; i++)
                for (j = 0; j < 4; j++) a[i][j] = _mm512_setzero_ps();
            for (d = d0; d < d1; d++) {
                const float *kr = kt + d * FA__BK;
                __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16);
                __m512 k2 = _mm512_loadu_ps(kr + 32), k3 = _mm512_loadu_ps(kr + 48);
                for (i = 0; i < 4; i++) {
                    __m512 qv = _mm512_set1_ps(q[(r + i) * dk + d]);
                    a[i][0] = _mm512_fmadd_ps(qv, k0, a[i][0]);
                    a[i][1] = _mm512_fmadd_ps(qv, k1, a[i][1]);
                    a[i][2] = _mm512_fmadd_ps(qv, k2, a[i][2]);
                    a[i][3] = _mm512_fmadd_ps(qv, k3, a[i][3]);
                }
            }
            for (i = 0; i < 4; i++)
                for (j = 0; j < 4; j++) {
                    float *dst = s + (r + i) * FA__BK + 16 * j;
                    _mm512_storeu_ps(dst, d0 ? _mm512_add_ps(_mm512_loadu_ps(dst), a[i][j]) : a[i][j]);
                }
        }
}

static FA__AVX512 float fa__scale_max_avx512(float *s, int64_t n, float scale)
{
    __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    int64_t i = 0;
    float mx;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + i), vs);
        _mm512_mask_storeu_ps(s + i, k, x);
        vm = _mm512_mask_max_ps(vm, k, vm, x);
        nan |= _mm512_mask_cmp_ps_mask(k, x, x, _CMP_UNORD_Q);
    }
    mx = _mm512_reduce_max_ps(vm);
    return nan ? NAN : mx;
}

static FA__AVX512 float fa__exp_sum_avx512(float *s, int64_t n, float m)
{
    __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 p = fa__exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), vm));
        _mm512_mask_storeu_ps(s + i, k, p);
        acc = _mm512_mask_add_ps(acc, k, acc, p);
    }
    return _mm512_reduce_add_ps(acc);
}

static FA__AVX512 void fa__scale_avx512(float *o, int64_t n, float c)
{
    __m512 vc = _mm512_set1_ps(c);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), vc));
    for (; i < n; i++) o[i] *= c;
}

static FA__AVX512 void fa__pv_row_avx512(float *o, const float *sr, const float *v, int64_t dvp, int64_t a, int64_t b)
{
    int64_t e, c;
    for (e = 0; e < dvp; e += 16) {
        __m512 acc = _mm512_loadu_ps(o + e);
        for (c = a; c < b; c++) acc = _mm512_fmadd_ps(_mm512_set1_ps(sr[c]), _mm512_loadu_ps(v + c * dvp + e), acc);
        _mm512_storeu_ps(o + e, acc);
    }
}

static FA__AVX512 void fa__pv_avx512(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows,
                                     const int32_t *c0, const int32_t *c1)
{
    int64_t r, e, c, i, a, b;
    for (r = 0; r < nrows; r += FA__MR) {
        int64_t nr = nrows - r < FA__MR ? nrows - r : FA__MR;
        fa__pv_common(nr, c0 + r, c1 + r, &a, &b);
        if (nr == FA__MR && a < b) {
            for (e = 0; e < dvp; e += 64) {
                /* up to 4 rows x 64 columns; a narrower last chunk keeps dvp % 64 columns */
                int nv = (int)((dvp - e) >= 64 ? 4 : (dvp - e) / 16), j;
                __m512 acc[4][4];
                for (i = 0; i < 4; i++)
                    for (j = 0; j < nv; j++) acc[i][j] = _mm512_loadu_ps(o + (r + i) * dvp + e + 16 * j);
                if (nv == 4) {
                    for (c = a; c < b; c++) {
                        const float *vr = v + c * dvp + e;
                        __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
                        __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
                        for (i = 0; i < 4; i++) {
                            __m512 p = _mm512_set1_ps(s[(r + i) * FA__BK + c]);
                            acc[i][0] = _mm512_fmadd_ps(p, v0, acc[i][0]);
                            acc[i][1] = _mm512_fmadd_ps(p, v1, acc[i][1]);
                            acc[i][2] = _mm512_fmadd_ps(p, v2, acc[i][2]);
                            acc[i][3] = _mm512_fmadd_ps(p, v3, acc[i][3]);
                        }
                    }
                } else {
                    for (c = a; c < b; c++)
                        for (j = 0; j < nv; j++) {
                            __m512 vv = _mm512_loadu_ps(v + c * dvp + e + 16 * j);
                            for (i = 0; i < 4; i++)
                                acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(s[(r + i) * FA__BK + c]), vv, acc[i][j]);
                        }
                }
                for (i = 0; i < 4; i++)
                    for (j = 0; j < nv; j++) _mm512_storeu_ps(o + (r + i) * dvp + e + 16 * j, acc[i][j]);
            }
        } else {
            a = b = 0;
        }
        for (i = 0; i < nr; i++) {
            int64_t lo = c0[r + i], hi = c1[r + i];
            if (a >= b) { fa__pv_row_avx512(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, lo, hi); continue; }
            fa__pv_row_avx512(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, lo, a);
            fa__pv_row_avx512(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, b, hi);
        }
    }
}

static const fa__attn_kernels fa__kernels_avx512 = {
    "avx512", fa__qk_avx512, fa__scale_max_avx512, fa__exp_sum_avx512, fa__scale_avx512, fa__pv_avx512};
#endif /* FA__X86 */

/* The best kernels the CPU (and fa_cpu_features_override) allows. */
static const fa__attn_kernels *fa__attn_pick_kernels(void)
{
#if defined(FA__X86)
    unsigned f = fa_cpu_features();
    if (f & FA_CPU_AVX512F) return &fa__kernels_avx512;
    if ((f & FA_CPU_AVX2) && (f & FA_CPU_FMA)) return &fa__kernels_avx2;
#endif
    return &fa__kernels_scalar;
}

typedef struct fa__attn_ws {
    float *q, *kt, *v, *s, *o, *m, *l, *krow;
    int32_t *c0, *c1;
    unsigned char *seen;
} fa__attn_ws;

/* Workspace of one worker, each block 64-byte aligned (see the layout comment above). */
static size_t fa__attn_ws_layout(struct fa__attn_ws *w, unsigned char *base, int64_t dk, int64_t dv)
{
    size_t f = sizeof(float), off = 0;
    int64_t dvp = fa__dvp(dv);
#define FA__CARVE(field, type, bytes)                                   \
    do {                                                                \
        if (w) w->field = (type *)(base + off);                         \
        off += fa__round64((size_t)(bytes));                            \
    } while (0)
    FA__CARVE(q, float, (size_t)(FA__ROWS * dk) * f);
    FA__CARVE(kt, float, (size_t)(dk * FA__BK) * f);
    FA__CARVE(v, float, (size_t)(FA__BK * dvp) * f);
    FA__CARVE(s, float, (size_t)(FA__ROWS * FA__BK) * f);
    FA__CARVE(o, float, (size_t)(FA__ROWS * dvp) * f);
    FA__CARVE(m, float, (size_t)FA__ROWS * f);
    FA__CARVE(l, float, (size_t)FA__ROWS * f);
    FA__CARVE(krow, float, (size_t)dk * f);
    FA__CARVE(c0, int32_t, (size_t)FA__ROWS * sizeof(int32_t));
    FA__CARVE(c1, int32_t, (size_t)FA__ROWS * sizeof(int32_t));
    FA__CARVE(seen, unsigned char, (size_t)FA__ROWS);
#undef FA__CARVE
    return off;
}

typedef struct fa__unit {
    int64_t b, hk, h0, nh, i0, nq; /* sequence, kv head, first q head and count, queries */
} fa__unit;

static void fa__attn_unit(const fa__attn_plan *p, const fa__attn_kernels *K, const fa__unit *u,
                          const fa__attn_ws *w)
{
    const fa_attn_desc *d = p->d;
    fa__seq s;
    const int64_t dk = p->dk, dv = p->dv, dvp = fa__dvp(dv);
    int64_t nrows = u->nh * u->nq, rows_pad = (nrows + FA__MR - 1) / FA__MR * FA__MR;
    int64_t r, j0, kmin, kmax, tmp;
    float kmul = fa__kv_scale(d->k_scale, d->k_head_scale, u->hk);
    float vmul = fa__kv_scale(d->v_scale, d->v_head_scale, u->hk);
    int post = p->softcap > 0.0f || d->alibi_slopes != NULL; /* per-element score terms */
    fa__attn_seq(p, u->b, &s);

    /* rows are query-major: row r = (query u->i0 + r / nh, head u->h0 + r % nh) */
    for (r = 0; r < rows_pad; r++) {
        if (r < nrows) {
            int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh;
            const void *src = fa__elem_ptr(d->q, d->q_type, s.q_base + (s.q_tok0 + i) * p->qs.seq + h * p->qs.head);
            fa__load_row(w->q + r * dk, src, d->q_type, dk, 1.0f);
        } else {
            memset(w->q + r * dk, 0, (size_t)dk * sizeof(float));
        }
    }
    memset(w->o, 0, (size_t)(nrows * dvp) * sizeof(float));
    for (r = 0; r < nrows; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
        w->seen[r] = 0;
    }
    /* the rows' intervals are monotone in the query index: the union is [lo(first), hi(last)) */
    fa__row_range(p, &s, u->i0, &kmin, &tmp);
    fa__row_range(p, &s, u->i0 + u->nq - 1, &tmp, &kmax);

    for (j0 = kmin; j0 < kmax; j0 += FA__BK) {
        int64_t j1 = j0 + FA__BK < kmax ? j0 + FA__BK : kmax, nk = j1 - j0, j, e;
        int any = 0;
        /* K tile, transposed; V tile, padded */
        for (j = 0; j < nk; j++) {
            int64_t ko, vo;
            fa__kv_offsets(p, &s, u->b, j0 + j, u->hk, &ko, &vo);
            fa__load_row(w->krow, fa__elem_ptr(d->k, d->k_type, ko), d->k_type, dk, kmul);
            for (e = 0; e < dk; e++) w->kt[e * FA__BK + j] = w->krow[e];
            fa__load_row(w->v + j * dvp, fa__elem_ptr(d->v, d->v_type, vo), d->v_type, dv, vmul);
            for (e = dv; e < dvp; e++) w->v[j * dvp + e] = 0.0f;
        }
        if (nk < FA__BK)
            for (e = 0; e < dk; e++) memset(w->kt + e * FA__BK + nk, 0, (size_t)(FA__BK - nk) * sizeof(float));

        K->qk(w->q, dk, w->kt, w->s, rows_pad);

        for (r = 0; r < nrows; r++) {
            int64_t i = u->i0 + r / u->nh, lo, hi, c0, c1, c;
            float *sr = w->s + r * FA__BK, mx, mnew, corr, sum;
            fa__row_range(p, &s, i, &lo, &hi);
            c0 = (lo > j0 ? lo : j0) - j0;
            c1 = (hi < j1 ? hi : j1) - j0;
            if (c0 >= c1) { w->c0[r] = w->c1[r] = 0; continue; }
            w->c0[r] = (int32_t)c0;
            w->c1[r] = (int32_t)c1;
            any = 1;
            if (post) {
                int64_t h = u->h0 + r % u->nh;
                float slope = d->alibi_slopes ? d->alibi_slopes[u->b * d->alibi_batch_stride + h] : 0.0f;
                mx = -INFINITY;
                for (c = c0; c < c1; c++) {
                    float sc = p->scale * sr[c];
                    if (p->softcap > 0.0f) sc = p->softcap * tanhf(sc / p->softcap);
                    if (slope != 0.0f) {
                        int64_t dist = i + s.off - (j0 + c);
                        sc -= slope * (float)(dist < 0 ? -dist : dist);
                    }
                    sr[c] = sc;
                    mx = fa__nanmax(mx, sc);
                }
            } else {
                mx = K->scale_max(sr + c0, c1 - c0, p->scale);
            }
            mnew = fa__nanmax(w->m[r], mx);
            corr = expf(w->m[r] - mnew); /* 0 on a row's first visible tile (m = -inf) */
            if (w->seen[r] && corr != 1.0f) K->scale(w->o + r * dvp, dvp, corr);
            sum = K->exp_sum(sr + c0, c1 - c0, mnew);
            w->l[r] = (w->seen[r] ? w->l[r] * corr : 0.0f) + sum;
            w->m[r] = mnew;
            w->seen[r] = 1;
        }
        if (any) K->pv(w->o, w->s, w->v, dvp, nrows, w->c0, w->c1);
    }

    for (r = 0; r < nrows; r++) {
        int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh;
        float *o = w->o + r * dvp, lse;
        if (w->seen[r]) {
            K->scale(o, dv, 1.0f / w->l[r]);
            lse = w->m[r] + logf(w->l[r]);
        } else {
            lse = -INFINITY; /* nothing visible: o stays 0 */
        }
        fa__store_row((unsigned char *)d->o + (s.o_base + (s.q_tok0 + i) * p->os.seq + h * p->os.head) *
                          (int64_t)fa_dtype_size(d->o_type),
                      d->o_type, o, dv);
        if (d->lse) d->lse[s.l_base + h * p->ls.head + (s.q_tok0 + i) * p->ls.seq] = lse;
    }
}

FLASHATTN_DEF fa_status fa_attn_forward(const fa_attn_desc *d)
{
    fa__attn_plan p;
    fa__attn_ws w;
    fa_status st;
    void *ws;
    const fa__attn_kernels *K;
    int64_t b, hk, hc, i0, heads_per_unit, q_per_unit;
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    ws = d->workspace;
    if (!ws) {
        ws = fa_aligned_alloc(p.ws_bytes, 64);
        if (!ws) return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of attention workspace", p.ws_bytes);
    }
    fa__attn_ws_layout(&w, (unsigned char *)ws, p.dk, p.dv);
    K = fa__attn_pick_kernels();
    /* a unit holds up to FA__ROWS (query, head) rows: whole GQA groups when they fit */
    heads_per_unit = p.group < FA__ROWS ? p.group : FA__ROWS;
    q_per_unit = FA__ROWS / heads_per_unit;
    for (b = 0; b < p.batch; b++) {
        fa__seq s;
        fa__attn_seq(&p, b, &s);
        for (hk = 0; hk < p.hkv; hk++)
            for (hc = 0; hc < p.group; hc += heads_per_unit)
                for (i0 = 0; i0 < s.sq; i0 += q_per_unit) {
                    fa__unit u;
                    u.b = b;
                    u.hk = hk;
                    u.h0 = hk * p.group + hc;
                    u.nh = p.group - hc < heads_per_unit ? p.group - hc : heads_per_unit;
                    u.i0 = i0;
                    u.nq = s.sq - i0 < q_per_unit ? s.sq - i0 : q_per_unit;
                    fa__attn_unit(&p, K, &u, &w);
                }
    }
    if (!d->workspace) fa_aligned_free(ws);
    return FA_OK;
}

/* ---- the reference ----
   Row by row, in double precision, every logit materialised, no tiling, no online softmax: the
   formula in the section comment written out directly. It shares only validation and stride
   defaults with the tiled path; sequence bounds, paging and masking are computed here afresh so
   that a bug in the fast path's bookkeeping cannot hide in both. */
static double fa__ref_elem(const void *base, fa_dtype t, int64_t off)
{
    return (double)fa__elem_f32(base, t, off);
}

FLASHATTN_DEF fa_status fa_attn_reference(const fa_attn_desc *d)
{
    fa__attn_plan p;
    fa_status st;
    double *sc, *acc;
    float *orow;
    int64_t b, h, i, j, e;
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    sc = (double *)FLASHATTN_MALLOC((size_t)(p.sk_max > 0 ? p.sk_max : 1) * sizeof(double));
    acc = (double *)FLASHATTN_MALLOC((size_t)p.dv * sizeof(double));
    orow = (float *)FLASHATTN_MALLOC((size_t)p.dv * sizeof(float));
    if (!sc || !acc || !orow) {
        FLASHATTN_FREE(sc);
        FLASHATTN_FREE(acc);
        FLASHATTN_FREE(orow);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate reference scratch");
    }
    for (b = 0; b < p.batch; b++) {
        /* this sequence's queries and keys */
        int64_t q0 = d->cu_seqlens_q ? d->cu_seqlens_q[b] : 0;
        int64_t sq = d->cu_seqlens_q ? d->cu_seqlens_q[b + 1] - q0 : p.sq_max;
        int64_t k0 = d->cu_seqlens_k ? d->cu_seqlens_k[b] : 0;
        int64_t sk = d->cu_seqlens_k ? d->cu_seqlens_k[b + 1] - k0 : p.sk_max;
        int64_t qb = d->cu_seqlens_q ? 0 : b, kb = (d->cu_seqlens_k || d->block_table) ? 0 : b;
        if (d->seqused_k) sk = d->seqused_k[b];
        for (h = 0; h < p.hq; h++) {
            int64_t hk = h / p.group;
            double kmul = d->k_head_scale ? d->k_head_scale[hk] : d->k_scale;
            double vmul = d->v_head_scale ? d->v_head_scale[hk] : d->v_scale;
            double slope = d->alibi_slopes ? d->alibi_slopes[b * d->alibi_batch_stride + h] : 0.0;
            if (kmul == 0.0) kmul = 1.0;
            if (vmul == 0.0) vmul = 1.0;
            for (i = 0; i < sq; i++) {
                int64_t qoff = qb * p.qs.batch + (q0 + i) * p.qs.seq + h * p.qs.head;
                int64_t diag = i + sk - sq; /* bottom-right aligned diagonal */
                double mx = -INFINITY, sum = 0.0, lse;
                int any = 0;
                for (j = 0; j < sk; j++) {
                    int64_t koff;
                    double dot = 0.0;
                    int vis = 1;
                    if (d->causal && j > diag) vis = 0;
                    if (d->use_window && d->window_left >= 0 && j < diag - d->window_left) vis = 0;
                    if (d->use_window && d->window_right >= 0 && j > diag + d->window_right) vis = 0;
                    if (!vis) continue;
                    if (d->block_table) {
                        int64_t page = d->block_table[b * p.bt_stride + j / d->page_size];
                        koff = page * p.ks.batch + (j % d->page_size) * p.ks.seq + hk * p.ks.head;
                    } else {
                        koff = kb * p.ks.batch + (k0 + j) * p.ks.seq + hk * p.ks.head;
                    }
                    for (e = 0; e < p.dk; e++)
                        dot += fa__ref_elem(d->q, d->q_type, qoff + e) * (fa__ref_elem(d->k, d->k_type, koff + e) * kmul);
                    dot *= (double)p.scale;
                    if (d->softcap > 0.0f) dot = (double)d->softcap * tanh(dot / (double)d->softcap);
                    dot -= slope * fabs((double)(diag - j));
                    sc[j] = dot;
                    if (!any || dot > mx || dot != dot) mx = dot;
                    any = 1;
                }
                for (e = 0; e < p.dv; e++) acc[e] = 0.0;
                if (any) {
                    for (j = 0; j < sk; j++) {
                        int64_t voff;
                        double w;
                        if (d->causal && j > diag) continue;
                        if (d->use_window && d->window_left >= 0 && j < diag - d->window_left) continue;
                        if (d->use_window && d->window_right >= 0 && j > diag + d->window_right) continue;
                        w = exp(sc[j] - mx);
                        sum += w;
                        if (d->block_table)
                            voff = d->block_table[b * p.bt_stride + j / d->page_size] * p.vs.batch +
                                   (j % d->page_size) * p.vs.seq + hk * p.vs.head;
                        else
                            voff = kb * p.vs.batch + (k0 + j) * p.vs.seq + hk * p.vs.head;
                        for (e = 0; e < p.dv; e++)
                            acc[e] += w * (fa__ref_elem(d->v, d->v_type, voff + e) * vmul);
                    }
                    for (e = 0; e < p.dv; e++) orow[e] = (float)(acc[e] / sum);
                    lse = mx + log(sum);
                } else {
                    for (e = 0; e < p.dv; e++) orow[e] = 0.0f;
                    lse = -INFINITY;
                }
                fa__store_row((unsigned char *)d->o + (qb * p.os.batch + (q0 + i) * p.os.seq + h * p.os.head) *
                                  (int64_t)fa_dtype_size(d->o_type),
                              d->o_type, orow, p.dv);
                if (d->lse) d->lse[qb * p.ls.batch + h * p.ls.head + (q0 + i) * p.ls.seq] = (float)lse;
            }
        }
    }
    FLASHATTN_FREE(sc);
    FLASHATTN_FREE(acc);
    FLASHATTN_FREE(orow);
    return FA_OK;
}

/* ---- merge ---- */
FLASHATTN_DEF fa_status fa_attn_merge(const fa_merge_desc *m)
{
    fa_strides ps, ls, os, lo;
    int64_t psplit, lsplit, b, t, h, e, k, rowv, hs, t2;
    size_t oes;
    if (!m) return fa__fail(FA_ERR_NULL, "merge desc is NULL");
    if (m->num_splits < 1) return fa__fail(FA_ERR_INVALID, "num_splits (%lld) must be >= 1", (long long)m->num_splits);
    if (m->batch < 1 || m->seqlen < 1 || m->heads < 1 || m->head_dim_v < 1)
        return fa__fail(FA_ERR_INVALID, "batch, seqlen, heads and head_dim_v must be >= 1");
    if (!m->o_parts) return fa__fail(FA_ERR_NULL, "o_parts is NULL");
    if (!m->lse_parts) return fa__fail(FA_ERR_NULL, "lse_parts is NULL");
    if (!m->o) return fa__fail(FA_ERR_NULL, "o is NULL");
    if (!fa__dtype_is_float_io(m->o_parts_type)) return fa__fail(FA_ERR_DTYPE, "o_parts_type must be f32, f16 or bf16");
    if (!fa__dtype_is_float_io(m->o_type)) return fa__fail(FA_ERR_DTYPE, "o_type must be f32, f16 or bf16");
    if (fa__mul_i64(m->heads, m->head_dim_v, &rowv) || fa__mul_i64(m->seqlen, rowv, &t2) ||
        fa__mul_i64(m->heads, m->seqlen, &hs))
        return fa__fail(FA_ERR_OVERFLOW, "merge sizes overflow int64");
    ps.head = m->o_parts_stride.head ? m->o_parts_stride.head : m->head_dim_v;
    ps.seq = m->o_parts_stride.seq ? m->o_parts_stride.seq : rowv;
    ps.batch = m->o_parts_stride.batch ? m->o_parts_stride.batch : t2;
    if (m->o_parts_split_stride) psplit = m->o_parts_split_stride;
    else if (fa__mul_i64(m->batch, t2, &psplit)) return fa__fail(FA_ERR_OVERFLOW, "merge sizes overflow int64");
    ls.seq = m->lse_parts_stride.seq ? m->lse_parts_stride.seq : 1;
    ls.head = m->lse_parts_stride.head ? m->lse_parts_stride.head : m->seqlen;
    ls.batch = m->lse_parts_stride.batch ? m->lse_parts_stride.batch : hs;
    if (m->lse_parts_split_stride) lsplit = m->lse_parts_split_stride;
    else if (fa__mul_i64(m->batch, hs, &lsplit)) return fa__fail(FA_ERR_OVERFLOW, "merge sizes overflow int64");
    os.head = m->o_stride.head ? m->o_stride.head : m->head_dim_v;
    os.seq = m->o_stride.seq ? m->o_stride.seq : rowv;
    os.batch = m->o_stride.batch ? m->o_stride.batch : t2;
    lo.seq = m->lse_stride.seq ? m->lse_stride.seq : 1;
    lo.head = m->lse_stride.head ? m->lse_stride.head : m->seqlen;
    lo.batch = m->lse_stride.batch ? m->lse_stride.batch : hs;
    if (fa__view_extent(m->num_splits, psplit, m->batch, ps.batch, m->seqlen, ps.seq, 0, 1) ||
        fa__view_extent(m->heads, ps.head, 1, 0, 1, 0, m->head_dim_v, fa_dtype_size(m->o_parts_type)) ||
        fa__view_extent(m->num_splits, lsplit, m->batch, ls.batch, m->seqlen, ls.seq, 0, 1) ||
        fa__view_extent(m->batch, os.batch, m->seqlen, os.seq, m->heads, os.head, m->head_dim_v, fa_dtype_size(m->o_type)))
        return fa__fail(FA_ERR_OVERFLOW, "merge view offsets overflow int64");
    oes = fa_dtype_size(m->o_type);
    for (b = 0; b < m->batch; b++)
        for (t = 0; t < m->seqlen; t++)
            for (h = 0; h < m->heads; h++) {
                float mx = -INFINITY, wsum = 0.0f, lse;
                unsigned char *out = (unsigned char *)m->o + (b * os.batch + t * os.seq + h * os.head) * (int64_t)oes;
                int64_t lrow = b * ls.batch + t * ls.seq + h * ls.head;
                int64_t prow = b * ps.batch + t * ps.seq + h * ps.head;
                for (k = 0; k < m->num_splits; k++) {
                    float x = m->lse_parts[k * lsplit + lrow];
                    if (x > mx || x != x) mx = x;
                }
                if (mx == -INFINITY) { /* every part empty */
                    float z = 0.0f;
                    for (e = 0; e < m->head_dim_v; e++) fa__store_row(out + e * (int64_t)oes, m->o_type, &z, 1);
                    lse = -INFINITY;
                } else {
                    for (k = 0; k < m->num_splits; k++) wsum += expf(m->lse_parts[k * lsplit + lrow] - mx);
                    for (e = 0; e < m->head_dim_v; e++) {
                        float acc = 0.0f, val;
                        for (k = 0; k < m->num_splits; k++) {
                            float w = expf(m->lse_parts[k * lsplit + lrow] - mx);
                            if (w == 0.0f) continue; /* empty part: its o may be anything */
                            acc += w * fa__elem_f32(m->o_parts, m->o_parts_type, k * psplit + prow + e);
                        }
                        val = acc / wsum;
                        fa__store_row(out + e * (int64_t)oes, m->o_type, &val, 1);
                    }
                    lse = mx + logf(wsum);
                }
                if (m->lse) m->lse[b * lo.batch + t * lo.seq + h * lo.head] = lse;
            }
    return FA_OK;
}

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
