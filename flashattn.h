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
