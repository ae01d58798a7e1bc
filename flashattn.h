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

/* Bounded lock-free ring queues of fixed-size items.

   fa_spsc  single producer, single consumer. One thread pushes, one thread pops (each side may
            change threads only with outside synchronisation). The try and bulk operations are
            wait-free: a bounded number of steps, no loops on contention. Each side keeps a
            cached copy of the other side's position and reads the shared one only when the
            cache says full (producer) or empty (consumer).
   fa_mpmc  any number of producers and consumers: Dmitry Vyukov's bounded MPMC queue (a ring of
            slots, each with its own sequence number that says whose turn the slot is). The try
            operations never wait and never take a lock: each is a few atomic loads and a CAS
            that is retried only when another thread made progress (or spuriously, on LL/SC
            machines). As in every array queue of this
            family, a thread preempted between claiming a slot and publishing it holds up that
            one slot: consumers see "empty" there until it resumes (nothing is lost or reordered).

   Items are copied in and out by value (elem_size bytes each, any size; 8-byte items such as
   pointers take a fast path). capacity is any value >= 1: the SPSC queue holds exactly
   `capacity` items (its ring is rounded up to a power of two internally); the MPMC queue rounds
   capacity up to a power of two, at least 2 (fa_mpmc_capacity() tells). "Full" means a push
   would exceed that capacity; "empty" means no published item is left.

   Ordering: a push's release store publishes the item; the pop's acquire load that finds it
   sees the whole item. Items of one producer are popped in the order they were pushed (with
   several consumers: each consumer sees them in that order). Every atomic operation in the
   implementation carries its memory order and the reason next to it.

   Storage: fa_queue_desc.storage gives caller memory (fa_spsc_storage_size() /
   fa_mpmc_storage_size() bytes, 8-byte aligned), else the ring comes from
   fa_queue_desc.allocator (NULL = FLASHATTN_MALLOC). The queue struct itself is a plain struct
   the caller places anywhere; its hot fields are 2*FA_CACHELINE apart (no false sharing).

   Bulk: *_push_n / *_pop_n move exactly n items or none (FA_ERR_FULL / FA_ERR_EMPTY);
   *_push_upto / *_pop_upto move as many as possible up to n and say how many.
   Sizes (*_size, *_empty, *_full) are snapshots that may be stale by the time they return.

   Blocking: *_push_wait / *_pop_wait retry until done, closed or timed out (timeout in
   nanoseconds; 0 = try once; FA_WAIT_FOREVER = no limit). They spin briefly, then sleep: on a
   futex (Linux) or a condition variable (elsewhere, or on Linux with FLASHATTN_NO_FUTEX);
   timeouts use the monotonic clock. With fa_queue_desc.blocking set, every
   push and pop checks for sleepers (one full fence) and wakes them at once: no lost wake-ups.
   Without it the try operations stay fence-free and sleepers poll with a backoff of at most
   1 ms instead. *_close makes later pushes fail with FA_ERR_CLOSED, lets pops drain what is
   left (then FA_ERR_CLOSED) and wakes every sleeper; a push racing with close may still land,
   so close after the last push has returned. *_destroy refuses (FA_ERR_BUSY) while a
   thread sleeps in a wait: close first, let the waiters leave, then destroy.

   FLASHATTN_NO_THREADS: the queues are all there (the caller may run its own threads); only a
   *_wait that would have to sleep returns FA_ERR_UNSUPPORTED instead. */

#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#define FA__STDATOMIC 1
#define FA__ATOMIC(T) _Atomic(T) /* C11: <stdatomic.h> */
#else
#define FA__ATOMIC(T) T          /* C99 and C++: plain fields used through __atomic builtins */
#endif

#define FA_WAIT_FOREVER ((int64_t)-1)

/* Padding that keeps the fields after it 2*FA_CACHELINE away from the fields before it, which
   also defeats adjacent-line prefetching (used bytes = size of the fields before it). */
#define FA__QPAD(name, used) unsigned char name[2 * FA_CACHELINE - (used)]

typedef struct fa_queue_desc {
    size_t capacity;                /* items, >= 1 (required) */
    size_t elem_size;               /* bytes per item, >= 1 (required) */
    void  *storage;                 /* caller memory for the ring (8-byte aligned); NULL = allocate */
    size_t storage_size;            /* bytes at storage (>= fa_*_storage_size()) */
    const fa_allocator *allocator;  /* used when storage is NULL; NULL = FLASHATTN_MALLOC; copied */
    int    blocking;                /* nonzero: pushes/pops wake sleeping *_wait callers at once
                                       (one full fence per operation); 0 = fence-free, sleepers poll */
} fa_queue_desc;

/* Sleep/wake word pair used by the blocking waits (private; here only because it is embedded). */
typedef struct fa__event {
    FA__ATOMIC(uint32_t) seq;       /* futex word: bumped by every wake */
    FA__ATOMIC(uint32_t) waiters;   /* threads inside a wait on this event */
} fa__event;

typedef struct fa_spsc {
    unsigned char *ring;            /* mask+1 slots of elem_size bytes */
    size_t mask;                    /* ring slots - 1 (slots are a power of two >= capacity) */
    size_t capacity;                /* items the queue holds */
    size_t elem_size;               /* bytes per item */
    size_t ring_bytes;              /* bytes allocated (0 = caller storage) */
    fa_allocator alloc;             /* copy of the allocator (zero = default) */
    int blocking;                   /* fa_queue_desc.blocking */
    FA__ATOMIC(uint32_t) closed;    /* set once by close */
    FA__QPAD(pad0_, 0);            /* read-mostly fields above, hot counters below */
    FA__ATOMIC(size_t) prod_pos;    /* items ever pushed; written by the producer only */
    size_t cons_cache;              /* producer's last view of cons_pos */
    FA__QPAD(pad1_, 2 * sizeof(size_t));
    FA__ATOMIC(size_t) cons_pos;    /* items ever popped; written by the consumer only */
    size_t prod_cache;              /* consumer's last view of prod_pos */
    FA__QPAD(pad2_, 2 * sizeof(size_t));
    fa__event not_empty;            /* the consumer sleeps here */
    FA__QPAD(pad3_, sizeof(fa__event));
    fa__event not_full;             /* the producer sleeps here */
    FA__QPAD(pad4_, sizeof(fa__event));
} fa_spsc;

typedef struct fa_mpmc {
    unsigned char *ring;            /* mask+1 slots: [sequence (size_t)][item], slot_size bytes */
    size_t mask;                    /* slots - 1; slots = capacity (a power of two >= 2) */
    size_t capacity;
    size_t elem_size;
    size_t slot_size;               /* bytes per slot: sizeof(size_t) + elem_size, rounded up */
    size_t ring_bytes;              /* bytes allocated (0 = caller storage) */
    fa_allocator alloc;
    int blocking;
    FA__ATOMIC(uint32_t) closed;
    FA__QPAD(pad0_, 0);            /* read-mostly fields above, hot counters below */
    FA__ATOMIC(size_t) prod_pos;    /* next position to push; CAS by producers */
    FA__QPAD(pad1_, sizeof(size_t));
    FA__ATOMIC(size_t) cons_pos;    /* next position to pop; CAS by consumers */
    FA__QPAD(pad2_, sizeof(size_t));
    fa__event not_empty;
    FA__QPAD(pad3_, sizeof(fa__event));
    fa__event not_full;
    FA__QPAD(pad4_, sizeof(fa__event));
} fa_mpmc;

/* Bytes of ring storage for a queue of this capacity and item size (FA_ERR_OVERFLOW if too big). */
FLASHATTN_DEF fa_status fa_spsc_storage_size(size_t capacity, size_t elem_size, size_t *bytes);
FLASHATTN_DEF fa_status fa_spsc_init(fa_spsc *q, const fa_queue_desc *d);
FLASHATTN_DEF fa_status fa_spsc_destroy(fa_spsc *q);   /* FA_ERR_BUSY while a waiter sleeps */
FLASHATTN_DEF fa_status fa_spsc_push(fa_spsc *q, const void *item);     /* FA_ERR_FULL */
FLASHATTN_DEF fa_status fa_spsc_pop(fa_spsc *q, void *item);            /* FA_ERR_EMPTY */
FLASHATTN_DEF fa_status fa_spsc_push_n(fa_spsc *q, const void *items, size_t n);  /* all or none */
FLASHATTN_DEF fa_status fa_spsc_pop_n(fa_spsc *q, void *items, size_t n);         /* all or none */
FLASHATTN_DEF fa_status fa_spsc_push_upto(fa_spsc *q, const void *items, size_t n, size_t *pushed);
FLASHATTN_DEF fa_status fa_spsc_pop_upto(fa_spsc *q, void *items, size_t n, size_t *popped);
FLASHATTN_DEF fa_status fa_spsc_push_wait(fa_spsc *q, const void *item, int64_t timeout_ns);
FLASHATTN_DEF fa_status fa_spsc_pop_wait(fa_spsc *q, void *item, int64_t timeout_ns);
FLASHATTN_DEF fa_status fa_spsc_close(fa_spsc *q);
FLASHATTN_DEF size_t    fa_spsc_size(const fa_spsc *q);      /* approximate; 0 for NULL */
FLASHATTN_DEF int       fa_spsc_empty(const fa_spsc *q);
FLASHATTN_DEF int       fa_spsc_full(const fa_spsc *q);
FLASHATTN_DEF size_t    fa_spsc_capacity(const fa_spsc *q);

FLASHATTN_DEF fa_status fa_mpmc_storage_size(size_t capacity, size_t elem_size, size_t *bytes);
FLASHATTN_DEF fa_status fa_mpmc_init(fa_mpmc *q, const fa_queue_desc *d);
FLASHATTN_DEF fa_status fa_mpmc_destroy(fa_mpmc *q);
FLASHATTN_DEF fa_status fa_mpmc_push(fa_mpmc *q, const void *item);
FLASHATTN_DEF fa_status fa_mpmc_pop(fa_mpmc *q, void *item);
FLASHATTN_DEF fa_status fa_mpmc_push_n(fa_mpmc *q, const void *items, size_t n);
FLASHATTN_DEF fa_status fa_mpmc_pop_n(fa_mpmc *q, void *items, size_t n);
FLASHATTN_DEF fa_status fa_mpmc_push_upto(fa_mpmc *q, const void *items, size_t n, size_t *pushed);
FLASHATTN_DEF fa_status fa_mpmc_pop_upto(fa_mpmc *q, void *items, size_t n, size_t *popped);
FLASHATTN_DEF fa_status fa_mpmc_push_wait(fa_mpmc *q, const void *item, int64_t timeout_ns);
FLASHATTN_DEF fa_status fa_mpmc_pop_wait(fa_mpmc *q, void *item, int64_t timeout_ns);
FLASHATTN_DEF fa_status fa_mpmc_close(fa_mpmc *q);
FLASHATTN_DEF size_t    fa_mpmc_size(const fa_mpmc *q);
FLASHATTN_DEF int       fa_mpmc_empty(const fa_mpmc *q);
FLASHATTN_DEF int       fa_mpmc_full(const fa_mpmc *q);
FLASHATTN_DEF size_t    fa_mpmc_capacity(const fa_mpmc *q);


/* ============================================================================================
   pool
   ============================================================================================ */

/* A fixed set of worker threads fed by MPMC queues (fa_mpmc, one per priority).

   fa_pool_parallel_for(p, n, fn, ctx) calls fn(ctx, i, worker) once for every i in [0, n) and
   returns when all calls have returned. The calling thread takes part. `worker` is a stable
   index in [0, fa_pool_size(p) + 1): pool workers are 0 .. size-1, any other thread is `size`;
   within one call no two threads running fn at the same time share an index, so per-worker
   scratch indexed by `worker` is safe. It may be called from inside a pool task or from inside
   fn (nested): a thread that waits never runs other work, and idle workers only join, so it
   cannot deadlock; if no worker is free the caller simply runs every index itself. p == NULL
   (or FLASHATTN_NO_THREADS) runs everything on the caller with worker 0.

   fa_pool_submit / fa_pool_submit_task queue an asynchronous task. Priorities are strict: a
   worker takes a high task before any normal one, a normal one before any low one. Submission
   never blocks: from outside the pool it returns FA_ERR_FULL when that priority's queue is
   full; from a task of the same pool it then runs the new task at once on the submitting
   worker (caller-runs), so tasks that submit tasks always make progress. A
   task returning FA_ERR_AGAIN is retried up to max_retries more times, after a delay that starts
   at retry_delay_ns and doubles each time (capped at retry_max_delay_ns); a waiting retry does
   not occupy a worker. The optional done callback receives the final status exactly once:
   the task's own result, or FA_ERR_CLOSED if the pool cancelled it.

   Shutdown: fa_pool_destroy(p, FA_POOL_FINISH) runs everything queued, including delayed
   retries and tasks submitted by tasks while it drains, then joins the workers.
   fa_pool_destroy(p, FA_POOL_CANCEL) lets running tasks finish, completes every queued or
   delayed task with done(arg, FA_ERR_CLOSED) without running it, refuses new submissions with
   FA_ERR_CLOSED, then joins. Either way nothing leaks and every done callback runs once.
   Calling destroy or fa_pool_wait_idle from a task of the same pool returns FA_ERR_BUSY.

   Metrics (fa_pool_get_stats): task counts, and the queue wait (submit to start) and run time
   (start to return) of asynchronous tasks as p50/p99 from a log-linear histogram (within 7%).

   FLASHATTN_NO_THREADS: fa_pool_create returns FA_ERR_UNSUPPORTED, fa_pool_size(NULL) is 0 and
   fa_pool_parallel_for runs serially on the caller, so code written for a pool still works. */

typedef enum fa_priority {
    FA_PRIO_NORMAL = 0,  /* the zero default */
    FA_PRIO_HIGH,
    FA_PRIO_LOW,
    FA_PRIO_COUNT_
} fa_priority;

typedef enum fa_pool_shutdown {
    FA_POOL_FINISH = 0,  /* run everything queued, then stop */
    FA_POOL_CANCEL       /* finish running tasks, cancel queued ones (done gets FA_ERR_CLOSED) */
} fa_pool_shutdown;

typedef struct fa_pool_desc {
    int    threads;                  /* worker threads; 0 = fa_cpu_count() - 1, at least 1 */
    size_t queue_capacity;           /* tasks per priority queue; 0 = 4096 */
    const fa_allocator *allocator;   /* NULL = FLASHATTN_MALLOC; copied */
} fa_pool_desc;

typedef fa_status (*fa_task_fn)(void *arg);

typedef struct fa_task {
    fa_task_fn  fn;                          /* required */
    void       *arg;                         /* passed to fn and done */
    void      (*done)(void *arg, fa_status result); /* optional; final status, called once */
    fa_priority priority;                    /* 0 = FA_PRIO_NORMAL */
    int         max_retries;                 /* extra attempts after FA_ERR_AGAIN; 0 = none */
    int64_t     retry_delay_ns;              /* first backoff; 0 = 1 ms; doubles per retry */
    int64_t     retry_max_delay_ns;          /* backoff cap; 0 = 1 s */
} fa_task;

typedef struct fa_pool_stats {
    uint64_t submitted;          /* tasks accepted by submit */
    uint64_t runs;               /* task executions (a retried task counts each attempt) */
    uint64_t succeeded;          /* tasks whose final status was FA_OK */
    uint64_t failed;             /* tasks whose final status was another error */
    uint64_t retries;            /* re-executions scheduled after FA_ERR_AGAIN */
    uint64_t cancelled;          /* tasks completed with FA_ERR_CLOSED without running */
    uint64_t parallel_for_calls; /* fa_pool_parallel_for calls */
    uint64_t tiles;              /* fn calls made by parallel_for */
    int64_t  wait_p50_ns, wait_p99_ns;   /* queue wait of task runs; 0 if none */
    int64_t  run_p50_ns, run_p99_ns;     /* run time of task runs; 0 if none */
} fa_pool_stats;

FLASHATTN_DEF fa_status fa_pool_create(fa_pool **out, const fa_pool_desc *desc); /* desc may be NULL */
FLASHATTN_DEF fa_status fa_pool_destroy(fa_pool *p, fa_pool_shutdown how);       /* NULL: no-op */
FLASHATTN_DEF int       fa_pool_size(const fa_pool *p);                          /* workers; 0 for NULL */
FLASHATTN_DEF fa_status fa_pool_parallel_for(fa_pool *p, int64_t n,
                                             void (*fn)(void *ctx, int64_t i, int worker),
                                             void *ctx);
FLASHATTN_DEF fa_status fa_pool_submit(fa_pool *p, fa_task_fn fn, void *arg, fa_priority prio);
FLASHATTN_DEF fa_status fa_pool_submit_task(fa_pool *p, const fa_task *task);
/* Waits until every submitted task (and its retries) has completed. */
FLASHATTN_DEF fa_status fa_pool_wait_idle(fa_pool *p, int64_t timeout_ns);
FLASHATTN_DEF fa_status fa_pool_get_stats(const fa_pool *p, fa_pool_stats *out);


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

/* ---- portable atomics: <stdatomic.h> in C11, the GCC/Clang __atomic builtins in C99/C++ ---- */
#ifdef FA__STDATOMIC
#define FA__RELAXED memory_order_relaxed
#define FA__ACQUIRE memory_order_acquire
#define FA__RELEASE memory_order_release
#define FA__ACQ_REL memory_order_acq_rel
#define FA__SEQ_CST memory_order_seq_cst
#define fa__ld(p, mo) atomic_load_explicit((p), mo)
#define fa__st(p, v, mo) atomic_store_explicit((p), (v), mo)
#define fa__add(p, v, mo) atomic_fetch_add_explicit((p), (v), mo)
#define fa__sub(p, v, mo) atomic_fetch_sub_explicit((p), (v), mo)
#define fa__cas(p, e, d, ok, ko) atomic_compare_exchange_weak_explicit((p), (e), (d), ok, ko)
#define fa__fence(mo) atomic_thread_fence(mo)
#else
#define FA__RELAXED __ATOMIC_RELAXED
#define FA__ACQUIRE __ATOMIC_ACQUIRE
#define FA__RELEASE __ATOMIC_RELEASE
#define FA__ACQ_REL __ATOMIC_ACQ_REL
#define FA__SEQ_CST __ATOMIC_SEQ_CST
#define fa__ld(p, mo) __atomic_load_n((p), mo)
#define fa__st(p, v, mo) __atomic_store_n((p), (v), mo)
#define fa__add(p, v, mo) __atomic_fetch_add((p), (v), mo)
#define fa__sub(p, v, mo) __atomic_fetch_sub((p), (v), mo)
#define fa__cas(p, e, d, ok, ko) __atomic_compare_exchange_n((p), (e), (d), 1, ok, ko)
#define fa__fence(mo) __atomic_thread_fence(mo)
#endif

/* ThreadSanitizer does not model stand-alone fences; under it the sleeper/waker handshake uses
   read-modify-writes on one word instead (also correct, just slower). */
#if defined(__SANITIZE_THREAD__)
#define FA__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FA__TSAN 1
#endif
#endif

#if !defined(FLASHATTN_NO_THREADS) && !defined(_MSC_VER)
#define FA__THREADS 1
#include <pthread.h>
#include <sched.h>
#if defined(__linux__) && !defined(FLASHATTN_NO_FUTEX) /* NO_FUTEX forces the condvar path */
#include <sys/syscall.h>
#ifdef SYS_futex
#define FA__FUTEX 1
#endif
#endif
#endif

#if defined(__x86_64__) || defined(__i386__)
#define fa__cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define fa__cpu_relax() __asm__ __volatile__("yield")
#else
#define fa__cpu_relax() ((void)0)
#endif

#ifdef FA__THREADS
/* Monotonic and wall clocks. On Linux the header may be compiled in strict ISO mode (-std=c99),
   where <time.h> hides clock_gettime and syscall, so they are declared here under private names
   bound to the C library's symbols, with the kernel's {long, long} timespec. */
#if defined(__linux__)
struct fa__ts { long tv_sec; long tv_nsec; };
extern int fa__clock_gettime(int clock_id, struct fa__ts *ts) __asm__("clock_gettime");
#define FA__CLOCK_REALTIME 0
#define FA__CLOCK_MONOTONIC 1
#ifdef FA__FUTEX
extern long fa__syscall(long number, ...) __asm__("syscall");
#endif
#else
#include <time.h>
#define fa__ts timespec
#define fa__clock_gettime clock_gettime
#define FA__CLOCK_REALTIME CLOCK_REALTIME
#define FA__CLOCK_MONOTONIC CLOCK_MONOTONIC
#endif

static FA__UNUSED int64_t fa__now_ns(void)
{
    struct fa__ts ts;
    fa__clock_gettime(FA__CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

/* ---- events: sleep until woken, without lost wake-ups ----
   A sleeper announces itself in `waiters`, then (after a full fence) reads `seq` as its key,
   re-checks its condition, and sleeps only while seq still equals the key. A waker changes the
   condition, fences, and if it sees a waiter bumps `seq` and wakes. The two fences order
   "announce, then check" against "change, then look for sleepers": at least one side sees the
   other, so either the sleeper finds the change or the waker finds the sleeper; and a bump that
   lands between the key read and the sleep makes the sleep return at once (the futex compares
   seq with the key atomically in the kernel; the condvar path compares under its mutex). */

/* The handshake's fence, returning the waiter count it orders against. */
static FA__UNUSED uint32_t fa__event_sync(fa__event *e)
{
#ifdef FA__TSAN
    /* acq_rel RMW on the one word both sides touch: totally ordered, TSan-visible */
    return fa__add(&e->waiters, 0u, FA__ACQ_REL);
#else
    fa__fence(FA__SEQ_CST); /* seq_cst: orders our earlier stores before the load below */
    return fa__ld(&e->waiters, FA__RELAXED); /* relaxed: the fence above gives the ordering */
#endif
}

#ifdef FA__FUTEX
#define FA__FUTEX_WAIT_PRIVATE 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */
#define FA__FUTEX_WAKE_PRIVATE 129 /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */
static void fa__event_wake(fa__event *e, uint32_t n)
{
    /* release: a sleeper that reads the new seq as its key also sees what we changed */
    fa__add(&e->seq, 1u, FA__RELEASE);
    fa__syscall((long)SYS_futex, (void *)&e->seq, (long)FA__FUTEX_WAKE_PRIVATE,
                (long)(n > 0x7fffffffu ? 0x7fffffffu : n), (void *)0, (void *)0, 0L);
}
/* Sleeps while e->seq == key, at most timeout_ns (< 0: no limit). Spurious returns are fine. */
static void fa__event_sleep(fa__event *e, uint32_t key, int64_t timeout_ns)
{
    struct fa__ts ts, *tp = (struct fa__ts *)0;
    if (timeout_ns >= 0) {
        ts.tv_sec = (long)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    fa__syscall((long)SYS_futex, (void *)&e->seq, (long)FA__FUTEX_WAIT_PRIVATE, (long)key,
                (void *)tp, (void *)0, 0L);
}
#else
/* Condition-variable fallback: a small static "parking lot" of mutex/condvar pairs chosen by
   the event's address, so events need no per-object initialisation. */
typedef struct fa__park { pthread_mutex_t m; pthread_cond_t c; } fa__park;
#define FA__PARK1 {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER}
#define FA__PARK_COUNT 8
static fa__park fa__parks[FA__PARK_COUNT] = {FA__PARK1, FA__PARK1, FA__PARK1, FA__PARK1,
                                             FA__PARK1, FA__PARK1, FA__PARK1, FA__PARK1};
static fa__park *fa__park_of(const fa__event *e)
{
    return &fa__parks[((uintptr_t)e / sizeof(fa__event)) % FA__PARK_COUNT];
}
static void fa__event_wake(fa__event *e, uint32_t n)
{
    fa__park *pk = fa__park_of(e);
    (void)n;
    fa__add(&e->seq, 1u, FA__RELEASE); /* release: as in the futex version */
    pthread_mutex_lock(&pk->m);        /* a sleeper between its check and its wait holds m */
    pthread_cond_broadcast(&pk->c);
    pthread_mutex_unlock(&pk->m);
}
static void fa__event_sleep(fa__event *e, uint32_t key, int64_t timeout_ns)
{
    fa__park *pk = fa__park_of(e);
    pthread_mutex_lock(&pk->m);
    /* acquire: pairs with the release bump in fa__event_wake */
    if (fa__ld(&e->seq, FA__ACQUIRE) == key) {
        if (timeout_ns < 0) {
            pthread_cond_wait(&pk->c, &pk->m);
        } else {
            struct fa__ts now;
            struct timespec dl;
            int64_t t;
            fa__clock_gettime(FA__CLOCK_REALTIME, &now); /* condvars time out on the wall clock */
            t = (int64_t)now.tv_nsec + timeout_ns % 1000000000;
            dl.tv_sec = (time_t)(now.tv_sec + timeout_ns / 1000000000 + t / 1000000000);
            dl.tv_nsec = (long)(t % 1000000000);
            pthread_cond_timedwait(&pk->c, &pk->m, &dl);
        }
    }
    pthread_mutex_unlock(&pk->m);
}
#endif

/* Wakes up to n sleepers if there may be any (the waker's half of the handshake). */
static FA__UNUSED void fa__event_notify(fa__event *e, uint32_t n)
{
    if (fa__event_sync(e) != 0) fa__event_wake(e, n);
}
#else /* no threads: nobody can sleep, so nobody needs waking */
static FA__UNUSED void fa__event_notify(fa__event *e, uint32_t n) { (void)e; (void)n; }
static FA__UNUSED void fa__event_wake(fa__event *e, uint32_t n) { (void)e; (void)n; }
#endif /* FA__THREADS */

/* The single-item fast paths are inlined into their public wrappers (saves a call per item). */
#if defined(__GNUC__) || defined(__clang__)
#define FA__QINLINE static inline __attribute__((always_inline))
#else
#define FA__QINLINE static inline
#endif

/* Spins before a wait sleeps, in fa__cpu_relax() steps (~1-5 us in all). */
#define FA__WAIT_SPINS 256
/* Longest sleep of a poller on a queue made without fa_queue_desc.blocking. */
#define FA__POLL_MAX_NS 1000000
#define FA__POLL_MIN_NS 2000

typedef fa_status (*fa__try_op)(void *q, void *item);

/* The blocking loop shared by every *_wait: `op` is the try operation; `busy` is the status
   that means "would block" (FA_ERR_FULL for pushes, FA_ERR_EMPTY for pops). */
static fa_status fa__wait_op(fa__event *ev, int blocking, fa__try_op op, void *q, void *item,
                             int64_t timeout_ns, fa_status busy)
{
    fa_status st = op(q, item);
#ifdef FA__THREADS
    int64_t deadline = -1, backoff = FA__POLL_MIN_NS;
    int i;
    if (st != busy || timeout_ns == 0) return st;
    if (fa_cpu_count() > 1) {
        for (i = 0; i < FA__WAIT_SPINS; i++) {
            fa__cpu_relax();
            st = op(q, item);
            if (st != busy) return st;
        }
    }
    if (timeout_ns > 0) deadline = fa__now_ns() + timeout_ns;
    fa__add(&ev->waiters, 1u, FA__RELAXED); /* relaxed: fa__event_sync below orders it */
    for (;;) {
        uint32_t key;
        int64_t nap = -1;
        fa__event_sync(ev);
        key = fa__ld(&ev->seq, FA__ACQUIRE); /* acquire: pairs with the waker's release bump */
        st = op(q, item);
        if (st != busy) break;
        if (deadline >= 0) {
            int64_t now = fa__now_ns();
            if (now >= deadline) { st = FA_ERR_TIMEOUT; break; }
            nap = deadline - now;
        }
        if (!blocking) { /* nobody will wake us for items: poll with a growing nap */
            if (nap < 0 || nap > backoff) nap = backoff;
            backoff = backoff * 2 > FA__POLL_MAX_NS ? FA__POLL_MAX_NS : backoff * 2;
        }
        fa__event_sleep(ev, key, nap);
    }
    /* release: our last touch of the queue; destroy (acquire) may free it once this is 0 */
    fa__sub(&ev->waiters, 1u, FA__RELEASE);
    return st;
#else
    (void)ev; (void)blocking;
    if (st != busy || timeout_ns == 0) return st;
    return fa__fail(FA_ERR_UNSUPPORTED, "blocking queue waits need threads (FLASHATTN_NO_THREADS)");
#endif
}

static FA__UNUSED void fa__qcopy(void *dst, const void *src, size_t esz)
{
    if (esz == 8) memcpy(dst, src, 8); /* the common pointer/u64 case: one load, one store */
    else memcpy(dst, src, esz);
}

static size_t fa__pow2_ceil(size_t x)
{
    size_t p = 1;
    while (p < x) p <<= 1;
    return p;
}

/* Largest capacity accepted: positions are size_t counters that wrap, and the sequence test
   compares them as signed differences, so a ring must stay well below half their range. */
#define FA__QUEUE_MAX_CAP ((size_t)1 << (sizeof(size_t) * 8 - 3))

static fa_status fa__queue_check(const void *q, const fa_queue_desc *d, const char *who)
{
    if (!q || !d) return fa__fail(FA_ERR_NULL, "%s: queue or descriptor is NULL", who);
    if (d->capacity == 0) return fa__fail(FA_ERR_INVALID, "%s: capacity is 0", who);
    if (d->elem_size == 0) return fa__fail(FA_ERR_INVALID, "%s: elem_size is 0", who);
    if (d->capacity > FA__QUEUE_MAX_CAP)
        return fa__fail(FA_ERR_OVERFLOW, "%s: capacity %zu is too large", who, d->capacity);
    return FA_OK;
}

/* Takes the ring from caller storage or the allocator. */
static fa_status fa__queue_ring(const fa_queue_desc *d, size_t bytes, unsigned char **ring,
                                size_t *owned, const char *who)
{
    if (d->storage) {
        if (d->storage_size < bytes)
            return fa__fail(FA_ERR_INVALID, "%s: storage_size %zu < %zu bytes needed", who,
                            d->storage_size, bytes);
        if ((uintptr_t)d->storage % 8 != 0)
            return fa__fail(FA_ERR_ALIGN, "%s: storage is not 8-byte aligned", who);
        *ring = (unsigned char *)d->storage;
        *owned = 0;
        return FA_OK;
    }
    *ring = (unsigned char *)fa__alloc(d->allocator, bytes, FA_CACHELINE);
    if (!*ring) return fa__fail(FA_ERR_NOMEM, "%s: cannot allocate %zu bytes", who, bytes);
    *owned = bytes;
    return FA_OK;
}

/* ---------------------------------------- SPSC ---------------------------------------- */

FLASHATTN_DEF fa_status fa_spsc_storage_size(size_t capacity, size_t elem_size, size_t *bytes)
{
    size_t b;
    if (!bytes) return fa__fail(FA_ERR_NULL, "fa_spsc_storage_size: bytes is NULL");
    if (capacity == 0 || elem_size == 0)
        return fa__fail(FA_ERR_INVALID, "fa_spsc_storage_size: capacity and elem_size must be >= 1");
    if (capacity > FA__QUEUE_MAX_CAP || fa__mul_size(fa__pow2_ceil(capacity), elem_size, &b))
        return fa__fail(FA_ERR_OVERFLOW, "fa_spsc_storage_size: %zu x %zu bytes overflows",
                        capacity, elem_size);
    *bytes = b;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_spsc_init(fa_spsc *q, const fa_queue_desc *d)
{
    size_t bytes = 0, owned = 0;
    unsigned char *ring;
    fa_status s = fa__queue_check(q, d, "fa_spsc_init");
    if (s) return s;
    if ((s = fa_spsc_storage_size(d->capacity, d->elem_size, &bytes)) != FA_OK) return s;
    if ((s = fa__queue_ring(d, bytes, &ring, &owned, "fa_spsc_init")) != FA_OK) return s;
    memset(q, 0, sizeof *q);
    q->ring = ring;
    q->mask = fa__pow2_ceil(d->capacity) - 1;
    q->capacity = d->capacity;
    q->elem_size = d->elem_size;
    q->ring_bytes = owned;
    if (d->allocator) q->alloc = *d->allocator;
    q->blocking = d->blocking != 0;
    /* Plain initial values: the queue reaches other threads through whatever the caller uses
       to hand it over (thread creation, a release store), which orders these stores. */
    fa__st(&q->closed, 0u, FA__RELAXED);
    fa__st(&q->prod_pos, (size_t)0, FA__RELAXED);
    fa__st(&q->cons_pos, (size_t)0, FA__RELAXED);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_spsc_destroy(fa_spsc *q)
{
    if (!q) return fa__fail(FA_ERR_NULL, "fa_spsc_destroy: queue is NULL");
    /* acquire: pairs with a leaving waiter's release decrement, its last touch of q */
    if (fa__ld(&q->not_empty.waiters, FA__ACQUIRE) || fa__ld(&q->not_full.waiters, FA__ACQUIRE))
        return fa__fail(FA_ERR_BUSY, "fa_spsc_destroy: threads are waiting; close it first");
    if (q->ring_bytes) fa__free(q->alloc.alloc ? &q->alloc : (const fa_allocator *)0, q->ring,
                                q->ring_bytes);
    memset(q, 0, sizeof *q);
    return FA_OK;
}

/* Free slots as the producer sees them, refreshing its cached consumer position if fewer
   than `want` look free. */
static size_t fa__spsc_room(fa_spsc *q, size_t p, size_t want)
{
    size_t room = q->capacity - (p - q->cons_cache);
    if (room < want) {
        /* acquire: the consumer finished reading the slots it released before we reuse them */
        q->cons_cache = fa__ld(&q->cons_pos, FA__ACQUIRE);
        room = q->capacity - (p - q->cons_cache);
    }
    return room;
}

/* Items the consumer sees, refreshing its cached producer position if fewer than `want`. */
static size_t fa__spsc_avail(fa_spsc *q, size_t c, size_t want)
{
    size_t avail = q->prod_cache - c;
    if (avail < want) {
        /* acquire: pairs with the producer's release store, so the items' bytes are visible */
        q->prod_cache = fa__ld(&q->prod_pos, FA__ACQUIRE);
        avail = q->prod_cache - c;
    }
    return avail;
}

FA__QINLINE fa_status fa__spsc_push1(fa_spsc *q, const void *item)
{
    size_t p = fa__ld(&q->prod_pos, FA__RELAXED); /* relaxed: only this thread writes it */
    /* relaxed: close is a one-way flag; a push racing with it may still land */
    if (FA__UNLIKELY(fa__ld(&q->closed, FA__RELAXED))) return FA_ERR_CLOSED;
    if (p - q->cons_cache >= q->capacity && fa__spsc_room(q, p, 1) == 0) return FA_ERR_FULL;
    fa__qcopy(q->ring + (p & q->mask) * q->elem_size, item, q->elem_size);
    fa__st(&q->prod_pos, p + 1, FA__RELEASE); /* release: publishes the item's bytes */
    if (q->blocking) fa__event_notify(&q->not_empty, 1);
    return FA_OK;
}

/* The empty case of a pop: FA_ERR_CLOSED once closed and drained, else FA_ERR_EMPTY. The
   flag is read first (acquire) and the position after it, so every push that preceded the
   close is seen before the queue is declared finished. */
static fa_status fa__spsc_empty_status(fa_spsc *q, size_t c)
{
    /* acquire: pairs with close; pushes before it are visible to the re-check below */
    if (!fa__ld(&q->closed, FA__ACQUIRE)) return FA_ERR_EMPTY;
    return fa__spsc_avail(q, c, 1) ? FA_ERR_AGAIN : FA_ERR_CLOSED;
}

FA__QINLINE fa_status fa__spsc_pop1(fa_spsc *q, void *item)
{
    size_t c = fa__ld(&q->cons_pos, FA__RELAXED); /* relaxed: only this thread writes it */
    if (q->prod_cache == c && fa__spsc_avail(q, c, 1) == 0) {
        fa_status s = fa__spsc_empty_status(q, c);
        if (s != FA_ERR_AGAIN) return s;
    }
    fa__qcopy(item, q->ring + (c & q->mask) * q->elem_size, q->elem_size);
    fa__st(&q->cons_pos, c + 1, FA__RELEASE); /* release: our read of the slot is done */
    if (q->blocking) fa__event_notify(&q->not_full, 1);
    return FA_OK;
}

/* Copies n items into the ring at position pos (wrapping) or out of it. */
static void fa__ring_put(unsigned char *ring, size_t mask, size_t esz, size_t pos,
                         const unsigned char *src, size_t n)
{
    size_t i0 = pos & mask, first = mask + 1 - i0;
    if (first > n) first = n;
    memcpy(ring + i0 * esz, src, first * esz);
    if (n > first) memcpy(ring, src + first * esz, (n - first) * esz);
}
static void fa__ring_get(const unsigned char *ring, size_t mask, size_t esz, size_t pos,
                         unsigned char *dst, size_t n)
{
    size_t i0 = pos & mask, first = mask + 1 - i0;
    if (first > n) first = n;
    memcpy(dst, ring + i0 * esz, first * esz);
    if (n > first) memcpy(dst + first * esz, ring, (n - first) * esz);
}

static fa_status fa__spsc_push_bulk(fa_spsc *q, const void *items, size_t n, int exact,
                                    size_t *done)
{
    size_t p = fa__ld(&q->prod_pos, FA__RELAXED), k; /* relaxed: only this thread writes it */
    *done = 0;
    if (fa__ld(&q->closed, FA__RELAXED)) return FA_ERR_CLOSED; /* relaxed: see push1 */
    if (n == 0) return FA_OK;
    k = fa__spsc_room(q, p, n);
    if (k > n) k = n;
    if (k == 0 || (exact && k < n)) return FA_ERR_FULL;
    fa__ring_put(q->ring, q->mask, q->elem_size, p, (const unsigned char *)items, k);
    fa__st(&q->prod_pos, p + k, FA__RELEASE); /* release: publishes all k items at once */
    if (q->blocking) fa__event_notify(&q->not_empty, 1);
    *done = k;
    return FA_OK;
}

static fa_status fa__spsc_pop_bulk(fa_spsc *q, void *items, size_t n, int exact, size_t *done)
{
    size_t c = fa__ld(&q->cons_pos, FA__RELAXED), k; /* relaxed: only this thread writes it */
    *done = 0;
    if (n == 0) return FA_OK;
    k = fa__spsc_avail(q, c, n);
    if (k == 0) {
        fa_status s = fa__spsc_empty_status(q, c);
        if (s != FA_ERR_AGAIN) return s;
        k = fa__spsc_avail(q, c, n);
    }
    if (k > n) k = n;
    if (exact && k < n) return FA_ERR_EMPTY;
    fa__ring_get(q->ring, q->mask, q->elem_size, c, (unsigned char *)items, k);
    fa__st(&q->cons_pos, c + k, FA__RELEASE); /* release: our reads of the k slots are done */
    if (q->blocking) fa__event_notify(&q->not_full, 1);
    *done = k;
    return FA_OK;
}

#define FA__QNULL(q, x, who) \
    if (!(q) || !(x)) return fa__fail(FA_ERR_NULL, "%s: NULL queue or item pointer", who)

FLASHATTN_DEF fa_status fa_spsc_push(fa_spsc *q, const void *item)
{
    FA__QNULL(q, item, "fa_spsc_push");
    return fa__spsc_push1(q, item);
}
FLASHATTN_DEF fa_status fa_spsc_pop(fa_spsc *q, void *item)
{
    FA__QNULL(q, item, "fa_spsc_pop");
    return fa__spsc_pop1(q, item);
}
FLASHATTN_DEF fa_status fa_spsc_push_n(fa_spsc *q, const void *items, size_t n)
{
    size_t done;
    FA__QNULL(q, items, "fa_spsc_push_n");
    if (n > q->capacity)
        return fa__fail(FA_ERR_INVALID, "fa_spsc_push_n: n (%zu) > capacity (%zu)", n, q->capacity);
    return fa__spsc_push_bulk(q, items, n, 1, &done);
}
FLASHATTN_DEF fa_status fa_spsc_pop_n(fa_spsc *q, void *items, size_t n)
{
    size_t done;
    FA__QNULL(q, items, "fa_spsc_pop_n");
    if (n > q->capacity)
        return fa__fail(FA_ERR_INVALID, "fa_spsc_pop_n: n (%zu) > capacity (%zu)", n, q->capacity);
    return fa__spsc_pop_bulk(q, items, n, 1, &done);
}
FLASHATTN_DEF fa_status fa_spsc_push_upto(fa_spsc *q, const void *items, size_t n, size_t *pushed)
{
    size_t done = 0;
    fa_status s;
    FA__QNULL(q, items, "fa_spsc_push_upto");
    s = fa__spsc_push_bulk(q, items, n, 0, &done);
    if (pushed) *pushed = done;
    return s;
}
FLASHATTN_DEF fa_status fa_spsc_pop_upto(fa_spsc *q, void *items, size_t n, size_t *popped)
{
    size_t done = 0;
    fa_status s;
    FA__QNULL(q, items, "fa_spsc_pop_upto");
    s = fa__spsc_pop_bulk(q, items, n, 0, &done);
    if (popped) *popped = done;
    return s;
}

static fa_status fa__spsc_push_op(void *q, void *item) { return fa__spsc_push1((fa_spsc *)q, item); }
static fa_status fa__spsc_pop_op(void *q, void *item) { return fa__spsc_pop1((fa_spsc *)q, item); }

FLASHATTN_DEF fa_status fa_spsc_push_wait(fa_spsc *q, const void *item, int64_t timeout_ns)
{
    FA__QNULL(q, item, "fa_spsc_push_wait");
    return fa__wait_op(&q->not_full, q->blocking, fa__spsc_push_op, q, (void *)(uintptr_t)item,
                       timeout_ns, FA_ERR_FULL);
}
FLASHATTN_DEF fa_status fa_spsc_pop_wait(fa_spsc *q, void *item, int64_t timeout_ns)
{
    FA__QNULL(q, item, "fa_spsc_pop_wait");
    return fa__wait_op(&q->not_empty, q->blocking, fa__spsc_pop_op, q, item, timeout_ns,
                       FA_ERR_EMPTY);
}

FLASHATTN_DEF fa_status fa_spsc_close(fa_spsc *q)
{
    if (!q) return fa__fail(FA_ERR_NULL, "fa_spsc_close: queue is NULL");
    fa__st(&q->closed, 1u, FA__SEQ_CST); /* seq_cst: ordered before the wakes below */
    fa__event_wake(&q->not_empty, 0x7fffffffu);
    fa__event_wake(&q->not_full, 0x7fffffffu);
    return FA_OK;
}

FLASHATTN_DEF size_t fa_spsc_size(const fa_spsc *q)
{
    fa_spsc *m = (fa_spsc *)(uintptr_t)q; /* atomics are loaded through a non-const pointer */
    size_t c, p;
    if (!q) return 0;
    /* acquire, consumer first: a later producer position is never behind it, so p - c >= 0 */
    c = fa__ld(&m->cons_pos, FA__ACQUIRE);
    p = fa__ld(&m->prod_pos, FA__ACQUIRE);
    p -= c;
    return p > q->capacity ? q->capacity : p;
}
FLASHATTN_DEF int fa_spsc_empty(const fa_spsc *q) { return fa_spsc_size(q) == 0; }
FLASHATTN_DEF int fa_spsc_full(const fa_spsc *q) { return q && fa_spsc_size(q) == q->capacity; }
FLASHATTN_DEF size_t fa_spsc_capacity(const fa_spsc *q) { return q ? q->capacity : 0; }

/* ---------------------------------------- MPMC ----------------------------------------
   Vyukov's bounded MPMC queue (1024cores.net, "Bounded MPMC queue", 2010). Slot i carries a
   sequence number seq, initially i. For position pos (slot pos & mask):
     seq == pos          the slot is free for the producer of pos;
     seq == pos + 1      it holds the item of pos, ready for the consumer of pos;
     seq == pos + slots  the consumer is done; free for the producer of pos + slots.
   A producer claims pos by CAS on prod_pos only when it saw seq == pos, writes the item, then
   publishes seq = pos + 1; a consumer likewise claims by CAS on cons_pos when seq == pos + 1,
   copies the item out, then stores seq = pos + slots. Positions only grow, so a stale view
   cannot be mistaken for a current one (no ABA). A slot is only ever touched by the one thread
   whose CAS claimed its position, and the sequence store/load pairs (release/acquire) order
   the item bytes between them. Bulk operations claim k consecutive positions with one CAS
   after checking all k slots; a free slot can only be taken by claiming its position, so the
   check still holds when the CAS succeeds. */

static FA__ATOMIC(size_t) *fa__mpmc_seq(const fa_mpmc *q, size_t pos)
{
    return (FA__ATOMIC(size_t) *)(void *)(q->ring + (pos & q->mask) * q->slot_size);
}
static unsigned char *fa__mpmc_item(const fa_mpmc *q, size_t pos)
{
    return q->ring + (pos & q->mask) * q->slot_size + sizeof(size_t);
}

static size_t fa__mpmc_slot_size(size_t elem_size)
{
    size_t s = sizeof(size_t) + elem_size; /* caller checked it does not overflow */
    return (s + sizeof(size_t) - 1) / sizeof(size_t) * sizeof(size_t);
}

FLASHATTN_DEF fa_status fa_mpmc_storage_size(size_t capacity, size_t elem_size, size_t *bytes)
{
    size_t slots, b;
    if (!bytes) return fa__fail(FA_ERR_NULL, "fa_mpmc_storage_size: bytes is NULL");
    if (capacity == 0 || elem_size == 0)
        return fa__fail(FA_ERR_INVALID, "fa_mpmc_storage_size: capacity and elem_size must be >= 1");
    slots = fa__pow2_ceil(capacity < 2 ? 2 : capacity);
    if (capacity > FA__QUEUE_MAX_CAP || elem_size > SIZE_MAX / 2 ||
        fa__mul_size(slots, fa__mpmc_slot_size(elem_size), &b))
        return fa__fail(FA_ERR_OVERFLOW, "fa_mpmc_storage_size: %zu x %zu bytes overflows",
                        capacity, elem_size);
    *bytes = b;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mpmc_init(fa_mpmc *q, const fa_queue_desc *d)
{
    size_t bytes = 0, owned = 0, i;
    unsigned char *ring;
    fa_status s = fa__queue_check(q, d, "fa_mpmc_init");
    if (s) return s;
    if ((s = fa_mpmc_storage_size(d->capacity, d->elem_size, &bytes)) != FA_OK) return s;
    if ((s = fa__queue_ring(d, bytes, &ring, &owned, "fa_mpmc_init")) != FA_OK) return s;
    memset(q, 0, sizeof *q);
    q->ring = ring;
    q->capacity = fa__pow2_ceil(d->capacity < 2 ? 2 : d->capacity);
    q->mask = q->capacity - 1;
    q->elem_size = d->elem_size;
    q->slot_size = fa__mpmc_slot_size(d->elem_size);
    q->ring_bytes = owned;
    if (d->allocator) q->alloc = *d->allocator;
    q->blocking = d->blocking != 0;
    /* relaxed: see fa_spsc_init, the hand-over to other threads orders these */
    for (i = 0; i <= q->mask; i++) fa__st(fa__mpmc_seq(q, i), i, FA__RELAXED);
    fa__st(&q->closed, 0u, FA__RELAXED);
    fa__st(&q->prod_pos, (size_t)0, FA__RELAXED);
    fa__st(&q->cons_pos, (size_t)0, FA__RELAXED);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mpmc_destroy(fa_mpmc *q)
{
    if (!q) return fa__fail(FA_ERR_NULL, "fa_mpmc_destroy: queue is NULL");
    /* acquire: pairs with a leaving waiter's release decrement, its last touch of q */
    if (fa__ld(&q->not_empty.waiters, FA__ACQUIRE) || fa__ld(&q->not_full.waiters, FA__ACQUIRE))
        return fa__fail(FA_ERR_BUSY, "fa_mpmc_destroy: threads are waiting; close it first");
    if (q->ring_bytes) fa__free(q->alloc.alloc ? &q->alloc : (const fa_allocator *)0, q->ring,
                                q->ring_bytes);
    memset(q, 0, sizeof *q);
    return FA_OK;
}

FA__QINLINE fa_status fa__mpmc_push1(fa_mpmc *q, const void *item)
{
    /* relaxed: prod_pos is only a hint of where to try; the slot's sequence decides */
    size_t pos = fa__ld(&q->prod_pos, FA__RELAXED);
    if (FA__UNLIKELY(fa__ld(&q->closed, FA__RELAXED))) return FA_ERR_CLOSED; /* see spsc */
    for (;;) {
        /* acquire: the consumer that freed this slot has finished reading it */
        size_t seq = fa__ld(fa__mpmc_seq(q, pos), FA__ACQUIRE);
        ptrdiff_t dif = (ptrdiff_t)(seq - pos);
        if (dif == 0) {
            /* relaxed: the CAS only decides who owns pos; the sequence carries the data */
            if (fa__cas(&q->prod_pos, &pos, pos + 1, FA__RELAXED, FA__RELAXED)) break;
        } else if (dif < 0) {
            return FA_ERR_FULL; /* the slot still holds the item of pos - slots */
        } else {
            pos = fa__ld(&q->prod_pos, FA__RELAXED); /* someone took pos; relaxed: a hint */
        }
    }
    fa__qcopy(fa__mpmc_item(q, pos), item, q->elem_size);
    fa__st(fa__mpmc_seq(q, pos), pos + 1, FA__RELEASE); /* release: publishes the item */
    if (q->blocking) fa__event_notify(&q->not_empty, 1);
    return FA_OK;
}

/* Empty at pos: FA_ERR_CLOSED when closed and nothing is published there, else FA_ERR_EMPTY;
   FA_ERR_AGAIN asks the caller to look again. */
static fa_status fa__mpmc_empty_status(fa_mpmc *q, size_t pos)
{
    /* acquire: every push published before close is visible to the re-check below */
    if (!fa__ld(&q->closed, FA__ACQUIRE)) return FA_ERR_EMPTY;
    /* acquire: as in pop */
    return (ptrdiff_t)(fa__ld(fa__mpmc_seq(q, pos), FA__ACQUIRE) - (pos + 1)) < 0 ? FA_ERR_CLOSED
                                                                                    : FA_ERR_AGAIN;
}

FA__QINLINE fa_status fa__mpmc_pop1(fa_mpmc *q, void *item)
{
    size_t pos = fa__ld(&q->cons_pos, FA__RELAXED); /* relaxed: a hint, as in push */
    for (;;) {
        /* acquire: pairs with the producer's release, so the item's bytes are visible */
        size_t seq = fa__ld(fa__mpmc_seq(q, pos), FA__ACQUIRE);
        ptrdiff_t dif = (ptrdiff_t)(seq - (pos + 1));
        if (dif == 0) {
            /* relaxed: ownership only, as in push */
            if (fa__cas(&q->cons_pos, &pos, pos + 1, FA__RELAXED, FA__RELAXED)) break;
        } else if (dif < 0) {
            fa_status s = fa__mpmc_empty_status(q, pos);
            if (s != FA_ERR_AGAIN) return s;
        } else {
            pos = fa__ld(&q->cons_pos, FA__RELAXED); /* someone took pos; relaxed: a hint */
        }
    }
    fa__qcopy(item, fa__mpmc_item(q, pos), q->elem_size);
    /* release: our read of the slot is done before the next lap's producer may write it */
    fa__st(fa__mpmc_seq(q, pos), pos + q->mask + 1, FA__RELEASE);
    if (q->blocking) fa__event_notify(&q->not_full, 1);
    return FA_OK;
}

static fa_status fa__mpmc_push_bulk(fa_mpmc *q, const void *items, size_t n, int exact,
                                    size_t *done)
{
    const unsigned char *src = (const unsigned char *)items;
    size_t pos = fa__ld(&q->prod_pos, FA__RELAXED), k, i; /* relaxed: a hint */
    *done = 0;
    if (fa__ld(&q->closed, FA__RELAXED)) return FA_ERR_CLOSED; /* relaxed: see spsc */
    if (n == 0) return FA_OK;
    if (n > q->capacity) n = q->capacity;
    for (;;) {
        for (k = 0; k < n; k++) /* acquire: as in push1, for each slot we may write */
            if (fa__ld(fa__mpmc_seq(q, pos + k), FA__ACQUIRE) != pos + k) break;
        if (k == n || (!exact && k > 0)) {
            /* relaxed: ownership of pos .. pos+k-1 only */
            if (fa__cas(&q->prod_pos, &pos, pos + k, FA__RELAXED, FA__RELAXED)) break;
        } else {
            size_t now = fa__ld(&q->prod_pos, FA__RELAXED); /* relaxed: a hint, as in push1 */
            if (now == pos) return FA_ERR_FULL; /* nobody moved: the slots really are taken */
            pos = now;
        }
    }
    for (i = 0; i < k; i++) {
        fa__qcopy(fa__mpmc_item(q, pos + i), src + i * q->elem_size, q->elem_size);
        fa__st(fa__mpmc_seq(q, pos + i), pos + i + 1, FA__RELEASE); /* release: publishes it */
    }
    if (q->blocking) fa__event_notify(&q->not_empty, (uint32_t)(k > 0x7fffffff ? 0x7fffffff : k));
    *done = k;
    return FA_OK;
}

static fa_status fa__mpmc_pop_bulk(fa_mpmc *q, void *items, size_t n, int exact, size_t *done)
{
    unsigned char *dst = (unsigned char *)items;
    size_t pos = fa__ld(&q->cons_pos, FA__RELAXED), k, i; /* relaxed: a hint */
    *done = 0;
    if (n == 0) return FA_OK;
    if (n > q->capacity) n = q->capacity;
    for (;;) {
        for (k = 0; k < n; k++) /* acquire: as in pop1, for each item we may read */
            if (fa__ld(fa__mpmc_seq(q, pos + k), FA__ACQUIRE) != pos + k + 1) break;
        if (k == n || (!exact && k > 0)) {
            if (fa__cas(&q->cons_pos, &pos, pos + k, FA__RELAXED, FA__RELAXED)) break; /* ownership */
        } else {
            size_t now = fa__ld(&q->cons_pos, FA__RELAXED); /* relaxed: a hint, as in pop1 */
            if (now == pos) {
                if (k == 0) {
                    fa_status s = fa__mpmc_empty_status(q, pos);
                    if (s != FA_ERR_AGAIN) return s;
                    continue;
                }
                return FA_ERR_EMPTY;
            }
            pos = now;
        }
    }
    for (i = 0; i < k; i++) {
        fa__qcopy(dst + i * q->elem_size, fa__mpmc_item(q, pos + i), q->elem_size);
        /* release: our read is done before the next lap's producer may write the slot */
        fa__st(fa__mpmc_seq(q, pos + i), pos + i + q->mask + 1, FA__RELEASE);
    }
    if (q->blocking) fa__event_notify(&q->not_full, (uint32_t)(k > 0x7fffffff ? 0x7fffffff : k));
    *done = k;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mpmc_push(fa_mpmc *q, const void *item)
{
    FA__QNULL(q, item, "fa_mpmc_push");
    return fa__mpmc_push1(q, item);
}
FLASHATTN_DEF fa_status fa_mpmc_pop(fa_mpmc *q, void *item)
{
    FA__QNULL(q, item, "fa_mpmc_pop");
    return fa__mpmc_pop1(q, item);
}
FLASHATTN_DEF fa_status fa_mpmc_push_n(fa_mpmc *q, const void *items, size_t n)
{
    size_t done;
    FA__QNULL(q, items, "fa_mpmc_push_n");
    if (n > q->capacity)
        return fa__fail(FA_ERR_INVALID, "fa_mpmc_push_n: n (%zu) > capacity (%zu)", n, q->capacity);
    return fa__mpmc_push_bulk(q, items, n, 1, &done);
}
FLASHATTN_DEF fa_status fa_mpmc_pop_n(fa_mpmc *q, void *items, size_t n)
{
    size_t done;
    FA__QNULL(q, items, "fa_mpmc_pop_n");
    if (n > q->capacity)
        return fa__fail(FA_ERR_INVALID, "fa_mpmc_pop_n: n (%zu) > capacity (%zu)", n, q->capacity);
    return fa__mpmc_pop_bulk(q, items, n, 1, &done);
}
FLASHATTN_DEF fa_status fa_mpmc_push_upto(fa_mpmc *q, const void *items, size_t n, size_t *pushed)
{
    size_t done = 0;
    fa_status s;
    FA__QNULL(q, items, "fa_mpmc_push_upto");
    s = fa__mpmc_push_bulk(q, items, n, 0, &done);
    if (pushed) *pushed = done;
    return s;
}
FLASHATTN_DEF fa_status fa_mpmc_pop_upto(fa_mpmc *q, void *items, size_t n, size_t *popped)
{
    size_t done = 0;
    fa_status s;
    FA__QNULL(q, items, "fa_mpmc_pop_upto");
    s = fa__mpmc_pop_bulk(q, items, n, 0, &done);
    if (popped) *popped = done;
    return s;
}

static fa_status fa__mpmc_push_op(void *q, void *item) { return fa__mpmc_push1((fa_mpmc *)q, item); }
static fa_status fa__mpmc_pop_op(void *q, void *item) { return fa__mpmc_pop1((fa_mpmc *)q, item); }

FLASHATTN_DEF fa_status fa_mpmc_push_wait(fa_mpmc *q, const void *item, int64_t timeout_ns)
{
    FA__QNULL(q, item, "fa_mpmc_push_wait");
    return fa__wait_op(&q->not_full, q->blocking, fa__mpmc_push_op, q, (void *)(uintptr_t)item,
                       timeout_ns, FA_ERR_FULL);
}
FLASHATTN_DEF fa_status fa_mpmc_pop_wait(fa_mpmc *q, void *item, int64_t timeout_ns)
{
    FA__QNULL(q, item, "fa_mpmc_pop_wait");
    return fa__wait_op(&q->not_empty, q->blocking, fa__mpmc_pop_op, q, item, timeout_ns,
                       FA_ERR_EMPTY);
}

FLASHATTN_DEF fa_status fa_mpmc_close(fa_mpmc *q)
{
    if (!q) return fa__fail(FA_ERR_NULL, "fa_mpmc_close: queue is NULL");
    fa__st(&q->closed, 1u, FA__SEQ_CST); /* seq_cst: ordered before the wakes below */
    fa__event_wake(&q->not_empty, 0x7fffffffu);
    fa__event_wake(&q->not_full, 0x7fffffffu);
    return FA_OK;
}

FLASHATTN_DEF size_t fa_mpmc_size(const fa_mpmc *q)
{
    fa_mpmc *m = (fa_mpmc *)(uintptr_t)q; /* atomics are loaded through a non-const pointer */
    size_t c, p;
    if (!q) return 0;
    c = fa__ld(&m->cons_pos, FA__ACQUIRE); /* acquire, consumers first: see fa_spsc_size */
    p = fa__ld(&m->prod_pos, FA__ACQUIRE);
    p -= c;
    return p > q->capacity ? q->capacity : p;
}
FLASHATTN_DEF int fa_mpmc_empty(const fa_mpmc *q) { return fa_mpmc_size(q) == 0; }
FLASHATTN_DEF int fa_mpmc_full(const fa_mpmc *q) { return q && fa_mpmc_size(q) == q->capacity; }
FLASHATTN_DEF size_t fa_mpmc_capacity(const fa_mpmc *q) { return q ? q->capacity : 0; }


/* ============================================================================================
   pool (implementation)
   ============================================================================================ */

#ifdef FA__THREADS

#define FA__POOL_MAX_THREADS 1024      /* fits the 16-bit helper count of a job slot */
#define FA__POOL_JOBS 64               /* parallel_for calls workers can join at once */
#define FA__POOL_DEFAULT_QCAP 4096
#define FA__RETRY_DELAY_NS 1000000     /* default first retry delay: 1 ms */
#define FA__RETRY_MAX_NS 1000000000    /* default retry delay cap: 1 s */
#define FA__JOB_GEN_SHIFT 16           /* job state: generation << 16 | helpers inside */
#define FA__JOB_HELPERS 0xffffu
/* Log-linear histogram: values 0..15 exactly, then 8 buckets per power of two (each 1/8 of
   its octave wide, so a bucket's midpoint is within 6.25% of any value in it) up to 2^48 ns. */
#define FA__HIST_SUB 8
#define FA__HIST_BUCKETS (16 + (48 - 4) * FA__HIST_SUB)

enum { FA__TASK_USER = 0, FA__TASK_JOB = 1 };
enum { FA__STOP_NONE = 0, FA__STOP_FINISH = 1, FA__STOP_CANCEL = 2 };

/* One queue item: an asynchronous task, or a token inviting a worker to a parallel_for. */
typedef struct fa__ptask {
    fa_task_fn fn;
    void *arg;
    void (*done)(void *arg, fa_status result);
    int64_t enq_ns;        /* when it became runnable (submit, or a retry's due time) */
    int64_t delay_ns;      /* delay before its next retry */
    int64_t max_delay_ns;
    uint64_t gen;          /* JOB: generation of the job slot it invites to */
    int32_t retries_left;
    int16_t kind;          /* FA__TASK_USER or FA__TASK_JOB */
    int16_t rank;          /* queue index: 0 high, 1 normal, 2 low; JOB: the slot */
} fa__ptask;

/* A parallel_for in progress. The caller claims a free slot (even generation, no helpers) by
   making its generation odd, fills in the call, and queues tokens naming slot + generation.
   A worker joins only if the generation still matches (so a token that outlived its call is
   ignored), takes indices from `next` until none are left, and leaves. The caller waits until
   every index has finished and every helper has left, then makes the generation even again. */
typedef struct fa__job {
    FA__ATOMIC(uint64_t) state;     /* generation << 16 | helpers inside */
    FA__ATOMIC(int64_t) next;       /* next index to hand out */
    FA__ATOMIC(int64_t) left;       /* indices not finished yet */
    void (*fn)(void *ctx, int64_t i, int worker);
    void *ctx;
    int64_t n;
    fa__event done_ev;              /* the caller sleeps here until left == 0 */
    FA__QPAD(pad_, 3 * 8 + 3 * sizeof(void *) + sizeof(fa__event));
} fa__job;

/* Per-worker metrics: written by that worker only (plain relaxed load + store, no RMW). */
typedef struct fa__worker {
    fa_pool *pool;
    pthread_t thread;
    int id;
    int started;
    FA__ATOMIC(uint64_t) runs, succeeded, failed, retries;
    FA__ATOMIC(uint64_t) wait_hist[FA__HIST_BUCKETS];
    FA__ATOMIC(uint64_t) run_hist[FA__HIST_BUCKETS];
    unsigned char pad_[2 * FA_CACHELINE];
} fa__worker;

struct fa_pool {
    fa_allocator alloc;             /* copy of the caller's allocator; zero = default */
    int has_alloc;
    int nthreads;
    fa__worker *workers;
    fa_mpmc queues[FA_PRIO_COUNT_]; /* by rank: 0 high, 1 normal, 2 low */
    fa__event work_ev;              /* idle workers sleep here */
    FA__QPAD(pad0_, sizeof(fa__event));
    fa__event idle_ev;              /* wait_idle and destroy sleep here */
    FA__QPAD(pad1_, sizeof(fa__event));
    FA__ATOMIC(int64_t) pending;    /* submitted tasks not yet final (queued, delayed, running) */
    FA__QPAD(pad2_, 8);
    FA__ATOMIC(uint32_t) stopping;  /* FA__STOP_* */
    FA__ATOMIC(uint32_t) exit_now;  /* workers leave their loop */
    FA__ATOMIC(int64_t) next_due;   /* earliest due time of a delayed retry; INT64_MAX = none */
    FA__ATOMIC(uint64_t) submitted, pf_calls, tiles, cancelled;
    pthread_mutex_t delay_mu;       /* guards the delayed-retry list */
    fa__ptask *delayed;
    size_t ndelayed, delayed_cap;
    fa__job jobs[FA__POOL_JOBS];
};

static FA__TLS fa_pool *fa__tls_pool;  /* the pool whose worker this thread is, if any */
static FA__TLS int fa__tls_worker;

static const fa_allocator *fa__pool_allocator(const fa_pool *p)
{
    return p->has_alloc ? &p->alloc : (const fa_allocator *)0;
}

/* Single-writer counter bump: relaxed, since only readers of statistics race with it. */
static void fa__bump(FA__ATOMIC(uint64_t) *c, uint64_t v)
{
    fa__st(c, fa__ld(c, FA__RELAXED) + v, FA__RELAXED);
}

static int fa__hist_bucket(int64_t v)
{
    uint64_t x = v < 0 ? 0u : (uint64_t)v;
    int e = 0, idx;
    if (x < 16) return (int)x;
    while ((x >> e) > 1) e++; /* e = floor(log2 x) >= 4 */
    idx = 16 + (e - 4) * FA__HIST_SUB + (int)((x >> (e - 3)) & (FA__HIST_SUB - 1));
    return idx < FA__HIST_BUCKETS ? idx : FA__HIST_BUCKETS - 1;
}
static int64_t fa__hist_value(int idx)
{
    int e, sub;
    if (idx < 16) return idx;
    e = (idx - 16) / FA__HIST_SUB + 4;
    sub = (idx - 16) % FA__HIST_SUB;
    return ((int64_t)(FA__HIST_SUB + sub) << (e - 3)) + ((int64_t)1 << (e - 3)) / 2;
}

/* The task reached its final status: tell its owner, count it, release wait_idle. */
static void fa__pool_finish(fa_pool *p, fa__ptask *t, fa_status st)
{
    if (t->done) t->done(t->arg, st);
    /* acq_rel: the task's effects happen before a waiter sees pending reach 0 */
    if (fa__sub(&p->pending, 1, FA__ACQ_REL) == 1) fa__event_notify(&p->idle_ev, 0x7fffffffu);
}

static void fa__pool_cancel(fa_pool *p, fa__ptask *t)
{
    fa__add(&p->cancelled, 1u, FA__RELAXED); /* relaxed: a statistic */
    fa__pool_finish(p, t, FA_ERR_CLOSED);
}

/* Parks a retry until `due`. FA_ERR_CLOSED when the pool is cancelling, FA_ERR_NOMEM if the
   list cannot grow. The cancel check happens under the lock destroy takes to flush the list,
   so no retry slips in after the flush. */
static fa_status fa__pool_delay(fa_pool *p, const fa__ptask *t, int64_t due)
{
    fa_status st = FA_OK;
    pthread_mutex_lock(&p->delay_mu);
    if (fa__ld(&p->stopping, FA__RELAXED) == FA__STOP_CANCEL) { /* relaxed: under the lock */
        st = FA_ERR_CLOSED;
    } else {
        if (p->ndelayed == p->delayed_cap) {
            size_t cap = p->delayed_cap ? p->delayed_cap * 2 : 16;
            fa__ptask *nd = (fa__ptask *)fa__alloc(fa__pool_allocator(p), cap * sizeof *nd, 0);
            if (!nd) {
                st = FA_ERR_NOMEM;
            } else {
                if (p->ndelayed) memcpy(nd, p->delayed, p->ndelayed * sizeof *nd);
                fa__free(fa__pool_allocator(p), p->delayed, p->delayed_cap * sizeof *nd);
                p->delayed = nd;
                p->delayed_cap = cap;
            }
        }
        if (st == FA_OK) {
            p->delayed[p->ndelayed] = *t;
            p->delayed[p->ndelayed].enq_ns = due;
            p->ndelayed++;
            /* relaxed: a hint for idle workers; the list itself is read under the lock */
            if (due < fa__ld(&p->next_due, FA__RELAXED)) fa__st(&p->next_due, due, FA__RELAXED);
        }
    }
    pthread_mutex_unlock(&p->delay_mu);
    /* a worker asleep without a deadline must learn the new due time */
    if (st == FA_OK) fa__event_notify(&p->work_ev, 1);
    return st;
}

/* Moves retries whose time has come back to their queues. Returns how many moved. */
static int fa__pool_move_due(fa_pool *p)
{
    int64_t now;
    int moved = 0;
    size_t i = 0;
    if (fa__ld(&p->next_due, FA__RELAXED) == INT64_MAX) return 0; /* relaxed: a hint */
    now = fa__now_ns();
    if (fa__ld(&p->next_due, FA__RELAXED) > now) return 0;
    pthread_mutex_lock(&p->delay_mu);
    {
        int64_t next = INT64_MAX;
        while (i < p->ndelayed) {
            fa__ptask *t = &p->delayed[i];
            if (t->enq_ns <= now && fa__mpmc_push1(&p->queues[t->rank], t) == FA_OK) {
                *t = p->delayed[--p->ndelayed]; /* unordered list: fill the hole from the end */
                moved++;
                continue;
            }
            if (t->enq_ns <= now) t->enq_ns = now + FA__RETRY_DELAY_NS; /* queue full: later */
            if (t->enq_ns < next) next = t->enq_ns;
            i++;
        }
        fa__st(&p->next_due, next, FA__RELAXED); /* relaxed: under the lock, a hint outside */
    }
    pthread_mutex_unlock(&p->delay_mu);
    if (moved) fa__event_notify(&p->work_ev, (uint32_t)moved);
    return moved;
}

static void fa__pool_run_task(fa_pool *p, fa__worker *w, fa__ptask *t)
{
    int64_t t0, t1;
    fa_status st;
    /* relaxed: cancellation is best effort for a task already dequeued */
    if (fa__ld(&p->stopping, FA__RELAXED) == FA__STOP_CANCEL) {
        fa__pool_cancel(p, t);
        return;
    }
    t0 = fa__now_ns();
    st = t->fn(t->arg);
    t1 = fa__now_ns();
    fa__bump(&w->runs, 1);
    fa__bump(&w->wait_hist[fa__hist_bucket(t0 - t->enq_ns)], 1);
    fa__bump(&w->run_hist[fa__hist_bucket(t1 - t0)], 1);
    if (st == FA_ERR_AGAIN && t->retries_left > 0) {
        int64_t due = t1 + t->delay_ns;
        t->retries_left--;
        t->delay_ns = t->delay_ns * 2 > t->max_delay_ns ? t->max_delay_ns : t->delay_ns * 2;
        st = fa__pool_delay(p, t, due);
        if (st == FA_OK) {
            fa__bump(&w->retries, 1);
            return;
        }
    }
    fa__bump(st == FA_OK ? &w->succeeded : &w->failed, 1);
    fa__pool_finish(p, t, st);
}

/* A worker (or nobody, when the token is stale) joins parallel_for slot `slot`. */
static void fa__job_help(fa_pool *p, int slot, uint64_t gen, int wid)
{
    fa__job *j = &p->jobs[slot];
    uint64_t st = fa__ld(&j->state, FA__RELAXED); /* relaxed: the CAS below re-checks it */
    int64_t i, cnt = 0, n;
    void (*fn)(void *, int64_t, int);
    void *ctx;
    do {
        if ((st >> FA__JOB_GEN_SHIFT) != gen) return; /* the call is over: a stale token */
        /* acquire: see the fields of this generation; pairs with the caller's claim */
    } while (!fa__cas(&j->state, &st, st + 1, FA__ACQUIRE, FA__RELAXED));
    fn = j->fn;
    ctx = j->ctx;
    n = j->n;
    /* relaxed: next only hands out distinct indices; `left` below orders the results */
    while ((i = fa__add(&j->next, 1, FA__RELAXED)) < n) {
        fn(ctx, i, wid);
        cnt++;
    }
    /* acq_rel: our fn calls happen before the caller sees left == 0 */
    if (cnt && fa__sub(&j->left, cnt, FA__ACQ_REL) == cnt) fa__event_notify(&j->done_ev, 1);
    fa__sub(&j->state, 1, FA__RELEASE); /* release: our last touch of the slot */
}

static int fa__pool_take(fa_pool *p, fa__ptask *t)
{
    int r;
    for (r = 0; r < FA_PRIO_COUNT_; r++)
        if (fa__mpmc_pop1(&p->queues[r], t) == FA_OK) return 1;
    return 0;
}

static void fa__pool_dispatch(fa_pool *p, fa__worker *w, fa__ptask *t)
{
    if (t->kind == FA__TASK_JOB) fa__job_help(p, t->rank, t->gen, w->id);
    else fa__pool_run_task(p, w, t);
}

static int fa__pool_has_work(fa_pool *p)
{
    int r;
    for (r = 0; r < FA_PRIO_COUNT_; r++)
        if (fa_mpmc_size(&p->queues[r]) != 0) return 1;
    return 0;
}

static void *fa__worker_main(void *arg)
{
    fa__worker *w = (fa__worker *)arg;
    fa_pool *p = w->pool;
    fa__ptask t;
    fa__tls_pool = p;
    fa__tls_worker = w->id;
    for (;;) {
        int i, found = 0;
        if (fa__pool_take(p, &t)) { fa__pool_dispatch(p, w, &t); continue; }
        if (fa__pool_move_due(p)) continue;
        if (fa__ld(&p->exit_now, FA__ACQUIRE)) break; /* acquire: pairs with destroy's release */
        for (i = 0; i < FA__WAIT_SPINS && !found; i++) {
            fa__cpu_relax();
            found = fa__pool_take(p, &t);
        }
        if (found) { fa__pool_dispatch(p, w, &t); continue; }
        /* Sleep until work arrives (see "events" in the queue implementation). */
        fa__add(&p->work_ev.waiters, 1u, FA__RELAXED); /* relaxed: ordered by the sync */
        for (;;) {
            uint32_t key;
            int64_t due, nap = -1;
            fa__event_sync(&p->work_ev);
            key = fa__ld(&p->work_ev.seq, FA__ACQUIRE); /* acquire: pairs with the wake */
            if (fa__pool_has_work(p) || fa__ld(&p->exit_now, FA__ACQUIRE)) break;
            due = fa__ld(&p->next_due, FA__RELAXED); /* relaxed: a hint, re-read under lock */
            if (due != INT64_MAX) {
                nap = due - fa__now_ns();
                if (nap <= 0) break;
            }
            fa__event_sleep(&p->work_ev, key, nap);
        }
        fa__sub(&p->work_ev.waiters, 1u, FA__RELAXED); /* relaxed: the pool outlives workers */
    }
    return (void *)0;
}

/* Waits until pending == 0 or the deadline (< 0: none) passes. */
static fa_status fa__pool_wait_pending(fa_pool *p, int64_t deadline)
{
    fa_status st = FA_OK;
    /* acquire: pairs with fa__pool_finish, so completed tasks' effects are visible */
    if (fa__ld(&p->pending, FA__ACQUIRE) == 0) return FA_OK;
    fa__add(&p->idle_ev.waiters, 1u, FA__RELAXED); /* relaxed: ordered by the sync */
    for (;;) {
        uint32_t key;
        int64_t nap = -1;
        fa__event_sync(&p->idle_ev);
        key = fa__ld(&p->idle_ev.seq, FA__ACQUIRE); /* acquire: pairs with the wake */
        if (fa__ld(&p->pending, FA__ACQUIRE) == 0) break; /* acquire: as above */
        if (deadline >= 0) {
            nap = deadline - fa__now_ns();
            if (nap <= 0) { st = FA_ERR_TIMEOUT; break; }
        }
        fa__event_sleep(&p->idle_ev, key, nap);
    }
    fa__sub(&p->idle_ev.waiters, 1u, FA__RELEASE); /* release: last touch, as in fa__wait_op */
    return st;
}

static void fa__pool_free(fa_pool *p)
{
    const fa_allocator *a = fa__pool_allocator(p);
    fa_allocator copy = p->alloc;
    int r, has = p->has_alloc;
    for (r = 0; r < FA_PRIO_COUNT_; r++) fa_mpmc_destroy(&p->queues[r]);
    pthread_mutex_destroy(&p->delay_mu);
    fa__free(a, p->delayed, p->delayed_cap * sizeof(fa__ptask));
    fa__free(a, p->workers, (size_t)p->nthreads * sizeof(fa__worker));
    fa__free(has ? &copy : (const fa_allocator *)0, p, sizeof *p);
}

/* Stops and joins the started workers (used by destroy and by a failed create). */
static void fa__pool_join(fa_pool *p)
{
    int i;
    fa__st(&p->exit_now, 1u, FA__RELEASE); /* release: workers see everything before it */
    fa__event_wake(&p->work_ev, 0x7fffffffu);
    for (i = 0; i < p->nthreads; i++)
        if (p->workers[i].started) pthread_join(p->workers[i].thread, (void **)0);
}

FLASHATTN_DEF fa_status fa_pool_create(fa_pool **out, const fa_pool_desc *desc)
{
    fa_pool_desc d;
    fa_pool *p;
    fa_queue_desc qd;
    size_t wbytes;
    int i, r;
    fa_status st;
    if (!out) return fa__fail(FA_ERR_NULL, "fa_pool_create: out is NULL");
    memset(&d, 0, sizeof d);
    if (desc) d = *desc;
    if (d.threads < 0 || d.threads > FA__POOL_MAX_THREADS)
        return fa__fail(FA_ERR_INVALID, "fa_pool_create: threads (%d) must be 0..%d", d.threads,
                        FA__POOL_MAX_THREADS);
    if (d.threads == 0) d.threads = fa_cpu_count() > 1 ? fa_cpu_count() - 1 : 1;
    if (d.queue_capacity == 0) d.queue_capacity = FA__POOL_DEFAULT_QCAP;
    p = (fa_pool *)fa__alloc(d.allocator, sizeof *p, FA_CACHELINE);
    if (!p) return fa__fail(FA_ERR_NOMEM, "fa_pool_create: cannot allocate the pool");
    memset(p, 0, sizeof *p);
    if (d.allocator) { p->alloc = *d.allocator; p->has_alloc = 1; }
    p->nthreads = d.threads;
    fa__st(&p->next_due, INT64_MAX, FA__RELAXED); /* relaxed: published by pthread_create */
    if (pthread_mutex_init(&p->delay_mu, (const pthread_mutexattr_t *)0) != 0) {
        fa__free(d.allocator, p, sizeof *p);
        return fa__fail(FA_ERR_THREAD, "fa_pool_create: pthread_mutex_init failed");
    }
    memset(&qd, 0, sizeof qd);
    qd.capacity = d.queue_capacity;
    qd.elem_size = sizeof(fa__ptask);
    qd.allocator = d.allocator;
    wbytes = (size_t)d.threads * sizeof(fa__worker);
    p->workers = (fa__worker *)fa__alloc(d.allocator, wbytes, FA_CACHELINE);
    st = p->workers ? FA_OK : fa__fail(FA_ERR_NOMEM, "fa_pool_create: cannot allocate workers");
    for (r = 0; r < FA_PRIO_COUNT_ && st == FA_OK; r++) st = fa_mpmc_init(&p->queues[r], &qd);
    if (st != FA_OK) {
        if (!p->workers) p->nthreads = 0;
        fa__pool_free(p);
        return st;
    }
    memset(p->workers, 0, wbytes);
    for (i = 0; i < d.threads; i++) {
        p->workers[i].pool = p;
        p->workers[i].id = i;
        if (pthread_create(&p->workers[i].thread, (const pthread_attr_t *)0, fa__worker_main,
                           &p->workers[i]) != 0) {
            fa__pool_join(p);
            fa__pool_free(p);
            return fa__fail(FA_ERR_THREAD, "fa_pool_create: cannot start worker %d", i);
        }
        p->workers[i].started = 1;
    }
    *out = p;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_pool_destroy(fa_pool *p, fa_pool_shutdown how)
{
    fa__ptask t;
    int r;
    if (!p) return FA_OK;
    if (how != FA_POOL_FINISH && how != FA_POOL_CANCEL)
        return fa__fail(FA_ERR_INVALID, "fa_pool_destroy: unknown shutdown mode %d", (int)how);
    if (fa__tls_pool == p)
        return fa__fail(FA_ERR_BUSY, "fa_pool_destroy: called from a task of the same pool");
    if (how == FA_POOL_CANCEL) {
        size_t i, n, cap;
        fa__ptask *list;
        pthread_mutex_lock(&p->delay_mu);
        fa__st(&p->stopping, (uint32_t)FA__STOP_CANCEL, FA__SEQ_CST); /* seq_cst: a one-way flag
                                                                          seen by every worker */
        list = p->delayed;
        n = p->ndelayed;
        cap = p->delayed_cap;
        p->delayed = (fa__ptask *)0;
        p->ndelayed = p->delayed_cap = 0;
        fa__st(&p->next_due, INT64_MAX, FA__RELAXED); /* relaxed: under the lock */
        pthread_mutex_unlock(&p->delay_mu);
        for (i = 0; i < n; i++) fa__pool_cancel(p, &list[i]);
        fa__free(fa__pool_allocator(p), list, cap * sizeof(fa__ptask));
    } else {
        fa__st(&p->stopping, (uint32_t)FA__STOP_FINISH, FA__SEQ_CST); /* seq_cst: as above */
    }
    fa__event_wake(&p->work_ev, 0x7fffffffu);
    fa__pool_wait_pending(p, -1);
    fa__pool_join(p);
    /* Anything left (parallel_for tokens, or a task submitted while the workers left). */
    for (r = 0; r < FA_PRIO_COUNT_; r++)
        while (fa__mpmc_pop1(&p->queues[r], &t) == FA_OK)
            if (t.kind == FA__TASK_USER) fa__pool_cancel(p, &t);
    fa__pool_free(p);
    return FA_OK;
}

FLASHATTN_DEF int fa_pool_size(const fa_pool *p) { return p ? p->nthreads : 0; }

FLASHATTN_DEF fa_status fa_pool_submit_task(fa_pool *p, const fa_task *task)
{
    fa__ptask t;
    static const int16_t rank_of[FA_PRIO_COUNT_] = {1, 0, 2}; /* NORMAL, HIGH, LOW */
    fa_status st;
    if (!p || !task || !task->fn)
        return fa__fail(FA_ERR_NULL, "fa_pool_submit: NULL pool, task or task function");
    if ((int)task->priority < 0 || (int)task->priority >= (int)FA_PRIO_COUNT_)
        return fa__fail(FA_ERR_INVALID, "fa_pool_submit: unknown priority %d", (int)task->priority);
    if (task->max_retries < 0 || task->retry_delay_ns < 0 || task->retry_max_delay_ns < 0)
        return fa__fail(FA_ERR_INVALID, "fa_pool_submit: negative retry settings");
    /* relaxed: refusing a racing submission is best effort; destroy drains what slips in */
    if (fa__ld(&p->stopping, FA__RELAXED) == FA__STOP_CANCEL || fa__ld(&p->exit_now, FA__RELAXED))
        return fa__fail(FA_ERR_CLOSED, "fa_pool_submit: the pool is shutting down");
    memset(&t, 0, sizeof t);
    t.fn = task->fn;
    t.arg = task->arg;
    t.done = task->done;
    t.kind = FA__TASK_USER;
    t.rank = rank_of[task->priority];
    t.retries_left = task->max_retries;
    t.delay_ns = task->retry_delay_ns ? task->retry_delay_ns : FA__RETRY_DELAY_NS;
    t.max_delay_ns = task->retry_max_delay_ns ? task->retry_max_delay_ns : FA__RETRY_MAX_NS;
    if (t.max_delay_ns < t.delay_ns) t.max_delay_ns = t.delay_ns;
    t.enq_ns = fa__now_ns();
    /* relaxed: the push below (release) carries it to the worker that will decrement it */
    fa__add(&p->pending, 1, FA__RELAXED);
    st = fa__mpmc_push1(&p->queues[t.rank], &t);
    if (st == FA_ERR_FULL && fa__tls_pool == p) {
        /* A task of this pool met a full queue: run the new task right here (caller-runs), so
           task trees make progress even when every worker is busy submitting. */
        fa__add(&p->submitted, 1u, FA__RELAXED); /* relaxed: a statistic */
        fa__pool_run_task(p, &p->workers[fa__tls_worker], &t);
        return FA_OK;
    }
    if (st != FA_OK) {
        if (fa__sub(&p->pending, 1, FA__ACQ_REL) == 1) /* acq_rel: as in fa__pool_finish */
            fa__event_notify(&p->idle_ev, 0x7fffffffu);
        return fa__fail(st, "fa_pool_submit: the %s-priority queue is %s",
                        task->priority == FA_PRIO_HIGH ? "high"
                        : task->priority == FA_PRIO_LOW ? "low" : "normal",
                        st == FA_ERR_FULL ? "full" : "closed");
    }
    fa__add(&p->submitted, 1u, FA__RELAXED); /* relaxed: a statistic */
    fa__event_notify(&p->work_ev, 1);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_pool_submit(fa_pool *p, fa_task_fn fn, void *arg, fa_priority prio)
{
    fa_task t;
    memset(&t, 0, sizeof t);
    t.fn = fn;
    t.arg = arg;
    t.priority = prio;
    return fa_pool_submit_task(p, &t);
}

FLASHATTN_DEF fa_status fa_pool_wait_idle(fa_pool *p, int64_t timeout_ns)
{
    if (!p) return fa__fail(FA_ERR_NULL, "fa_pool_wait_idle: pool is NULL");
    if (fa__tls_pool == p)
        return fa__fail(FA_ERR_BUSY, "fa_pool_wait_idle: called from a task of the same pool");
    if (fa__pool_wait_pending(p, timeout_ns < 0 ? -1 : fa__now_ns() + timeout_ns) != FA_OK)
        return fa__fail(FA_ERR_TIMEOUT, "fa_pool_wait_idle: tasks still pending");
    return FA_OK;
}

/* Claims a free job slot; NULL when all are busy. */
static fa__job *fa__job_claim(fa_pool *p, uint64_t *gen)
{
    int k, start = (int)(((uintptr_t)&k >> 10) % FA__POOL_JOBS); /* spread threads over slots */
    for (k = 0; k < FA__POOL_JOBS; k++) {
        fa__job *j = &p->jobs[(start + k) % FA__POOL_JOBS];
        uint64_t st = fa__ld(&j->state, FA__RELAXED); /* relaxed: the CAS re-checks */
        if (((st >> FA__JOB_GEN_SHIFT) & 1u) == 0 && (st & FA__JOB_HELPERS) == 0 &&
            /* acq_rel: after the last helper of the previous call left (its release) */
            fa__cas(&j->state, &st, st + ((uint64_t)1 << FA__JOB_GEN_SHIFT), FA__ACQ_REL,
                    FA__RELAXED)) {
            *gen = (st >> FA__JOB_GEN_SHIFT) + 1;
            return j;
        }
    }
    return (fa__job *)0;
}

FLASHATTN_DEF fa_status fa_pool_parallel_for(fa_pool *p, int64_t n,
                                             void (*fn)(void *ctx, int64_t i, int worker),
                                             void *ctx)
{
    fa__job *j = (fa__job *)0;
    uint64_t gen = 0;
    int64_t i, cnt = 0, helpers;
    int wid;
    if (!fn) return fa__fail(FA_ERR_NULL, "fa_pool_parallel_for: fn is NULL");
    if (n < 0) return fa__fail(FA_ERR_INVALID, "fa_pool_parallel_for: n (%lld) < 0", (long long)n);
    if (!p) {
        for (i = 0; i < n; i++) fn(ctx, i, 0);
        return FA_OK;
    }
    wid = fa__tls_pool == p ? fa__tls_worker : p->nthreads;
    fa__add(&p->pf_calls, 1u, FA__RELAXED); /* relaxed: statistics */
    fa__add(&p->tiles, (uint64_t)n, FA__RELAXED);
    helpers = n - 1 < p->nthreads ? n - 1 : p->nthreads;
    /* relaxed: a late start only costs speed */
    if (helpers > 0 && !fa__ld(&p->exit_now, FA__RELAXED)) j = fa__job_claim(p, &gen);
    if (!j) { /* one tile, no free slot or no workers: run it all here */
        for (i = 0; i < n; i++) fn(ctx, i, wid);
        return FA_OK;
    }
    j->fn = fn;
    j->ctx = ctx;
    j->n = n;
    /* relaxed: published to helpers by the token push (release) below */
    fa__st(&j->next, 0, FA__RELAXED);
    fa__st(&j->left, n, FA__RELAXED);
    {
        fa__ptask t;
        int64_t h, pushed = 0;
        memset(&t, 0, sizeof t);
        t.kind = FA__TASK_JOB;
        t.rank = (int16_t)(j - p->jobs);
        t.gen = gen;
        for (h = 0; h < helpers; h++)
            if (fa__mpmc_push1(&p->queues[0], &t) == FA_OK) pushed++;
        if (pushed) fa__event_notify(&p->work_ev, (uint32_t)pushed);
    }
    while ((i = fa__add(&j->next, 1, FA__RELAXED)) < n) { /* relaxed: see fa__job_help */
        fn(ctx, i, wid);
        cnt++;
    }
    /* acq_rel: we see the helpers' results once left reaches 0 (they release into it) */
    if (fa__sub(&j->left, cnt, FA__ACQ_REL) != cnt) {
        int s;
        /* acquire: as above, the helpers' results are visible once left reads 0 */
        for (s = 0; s < FA__WAIT_SPINS && fa__ld(&j->left, FA__ACQUIRE) != 0; s++)
            fa__cpu_relax();
        if (fa__ld(&j->left, FA__ACQUIRE) != 0) {
            fa__add(&j->done_ev.waiters, 1u, FA__RELAXED); /* relaxed: ordered by the sync */
            for (;;) {
                uint32_t key;
                fa__event_sync(&j->done_ev);
                key = fa__ld(&j->done_ev.seq, FA__ACQUIRE); /* acquire: pairs with the wake */
                if (fa__ld(&j->left, FA__ACQUIRE) == 0) break;
                fa__event_sleep(&j->done_ev, key, -1);
            }
            fa__sub(&j->done_ev.waiters, 1u, FA__RELAXED); /* relaxed: the slot stays ours */
        }
    }
    /* Retire: wait for helpers still inside (they only have their final `next` probe left),
       then make the generation even so stale tokens cannot join and the slot is free. */
    for (;;) {
        uint64_t st = fa__ld(&j->state, FA__ACQUIRE); /* acquire: helpers' release on leaving */
        if ((st & FA__JOB_HELPERS) == 0 &&
            fa__cas(&j->state, &st, st + ((uint64_t)1 << FA__JOB_GEN_SHIFT), FA__ACQ_REL,
                    FA__RELAXED)) /* acq_rel: hands the slot to its next caller */
            break;
        sched_yield();
    }
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_pool_get_stats(const fa_pool *cp, fa_pool_stats *out)
{
    fa_pool *p = (fa_pool *)(uintptr_t)cp; /* atomics are loaded through a non-const pointer */
    uint64_t wh[FA__HIST_BUCKETS], rh[FA__HIST_BUCKETS], total = 0;
    int i, b;
    if (!p || !out) return fa__fail(FA_ERR_NULL, "fa_pool_get_stats: NULL argument");
    memset(out, 0, sizeof *out);
    memset(wh, 0, sizeof wh);
    memset(rh, 0, sizeof rh);
    /* relaxed everywhere: statistics are a snapshot, not a synchronisation point */
    for (i = 0; i < p->nthreads; i++) {
        fa__worker *w = &p->workers[i];
        out->runs += fa__ld(&w->runs, FA__RELAXED);
        out->succeeded += fa__ld(&w->succeeded, FA__RELAXED);
        out->failed += fa__ld(&w->failed, FA__RELAXED);
        out->retries += fa__ld(&w->retries, FA__RELAXED);
        for (b = 0; b < FA__HIST_BUCKETS; b++) {
            wh[b] += fa__ld(&w->wait_hist[b], FA__RELAXED);
            rh[b] += fa__ld(&w->run_hist[b], FA__RELAXED);
        }
    }
    out->submitted = fa__ld(&p->submitted, FA__RELAXED);
    out->cancelled = fa__ld(&p->cancelled, FA__RELAXED);
    out->parallel_for_calls = fa__ld(&p->pf_calls, FA__RELAXED);
    out->tiles = fa__ld(&p->tiles, FA__RELAXED);
    for (b = 0; b < FA__HIST_BUCKETS; b++) total += wh[b];
    if (total) {
        const double qs[2] = {0.50, 0.99};
        int64_t *wv[2], *rv[2];
        int k;
        wv[0] = &out->wait_p50_ns; wv[1] = &out->wait_p99_ns;
        rv[0] = &out->run_p50_ns; rv[1] = &out->run_p99_ns;
        for (k = 0; k < 2; k++) {
            uint64_t rank = (uint64_t)(qs[k] * (double)total + 0.999999), cw = 0, cr = 0;
            int bw = -1, br = -1;
            if (rank < 1) rank = 1;
            for (b = 0; b < FA__HIST_BUCKETS; b++) {
                cw += wh[b];
                cr += rh[b];
                if (bw < 0 && cw >= rank) bw = b;
                if (br < 0 && cr >= rank) br = b;
            }
            *wv[k] = fa__hist_value(bw < 0 ? FA__HIST_BUCKETS - 1 : bw);
            *rv[k] = fa__hist_value(br < 0 ? FA__HIST_BUCKETS - 1 : br);
        }
    }
    return FA_OK;
}

#else /* FLASHATTN_NO_THREADS: no workers; parallel_for runs on the caller */

FLASHATTN_DEF fa_status fa_pool_create(fa_pool **out, const fa_pool_desc *desc)
{
    (void)desc;
    if (out) *out = (fa_pool *)0;
    return fa__fail(FA_ERR_UNSUPPORTED, "fa_pool_create: built with FLASHATTN_NO_THREADS");
}
FLASHATTN_DEF fa_status fa_pool_destroy(fa_pool *p, fa_pool_shutdown how)
{
    (void)p; (void)how;
    return FA_OK;
}
FLASHATTN_DEF int fa_pool_size(const fa_pool *p) { (void)p; return 0; }
FLASHATTN_DEF fa_status fa_pool_parallel_for(fa_pool *p, int64_t n,
                                             void (*fn)(void *ctx, int64_t i, int worker),
                                             void *ctx)
{
    int64_t i;
    (void)p;
    if (!fn) return fa__fail(FA_ERR_NULL, "fa_pool_parallel_for: fn is NULL");
    if (n < 0) return fa__fail(FA_ERR_INVALID, "fa_pool_parallel_for: n (%lld) < 0", (long long)n);
    for (i = 0; i < n; i++) fn(ctx, i, 0);
    return FA_OK;
}
FLASHATTN_DEF fa_status fa_pool_submit_task(fa_pool *p, const fa_task *task)
{
    (void)p; (void)task;
    return fa__fail(FA_ERR_UNSUPPORTED, "fa_pool_submit: built with FLASHATTN_NO_THREADS");
}
FLASHATTN_DEF fa_status fa_pool_submit(fa_pool *p, fa_task_fn fn, void *arg, fa_priority prio)
{
    (void)p; (void)fn; (void)arg; (void)prio;
    return fa__fail(FA_ERR_UNSUPPORTED, "fa_pool_submit: built with FLASHATTN_NO_THREADS");
}
FLASHATTN_DEF fa_status fa_pool_wait_idle(fa_pool *p, int64_t timeout_ns)
{
    (void)p; (void)timeout_ns;
    return fa__fail(FA_ERR_UNSUPPORTED, "fa_pool_wait_idle: built with FLASHATTN_NO_THREADS");
}
FLASHATTN_DEF fa_status fa_pool_get_stats(const fa_pool *p, fa_pool_stats *out)
{
    (void)p;
    if (!out) return fa__fail(FA_ERR_NULL, "fa_pool_get_stats: out is NULL");
    memset(out, 0, sizeof *out);
    return fa__fail(FA_ERR_UNSUPPORTED, "fa_pool_get_stats: built with FLASHATTN_NO_THREADS");
}
#endif /* FA__THREADS */


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
