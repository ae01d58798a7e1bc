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

/* Hash tables for an inference engine's bookkeeping: a prefix cache (hash of a token block ->
   KV-cache page), request tables, dedup sets.

   fa_map   single-threaded open-addressing map, Swiss-table style. Slots sit in groups of 16
            with one control byte each: 0x80 empty, 0xFE deleted (tombstone), 0x00-0x7F "full"
            holding 7 bits of the key's hash. A lookup compares the 16 control bytes of a group
            against the 7-bit tag at once (SSE2 on x86-64, NEON on ARM, a portable SWAR twin
            elsewhere or when fa_cpu_features_override() clears FA_CPU_SSE2/FA_CPU_NEON), so
            on average it touches one control group and one slot; iteration scans 32 control
            bytes per step with AVX2 when the CPU has it. fa_map_find_batch hashes and
            prefetches a batch of keys before probing, overlapping their cache misses. The control array is 64-byte
            aligned, so a group never straddles a cache line; slots are aligned to their own
            size (up to 8). Keys and values have any fixed size chosen at init; 8-byte keys
            without a user eq take a fast path. Without a user hash the table uses a built-in
            hash with a per-table random seed (hostile keys cannot aim at one probe chain);
            a user hash is re-mixed with the seed, so a weak hash (even identity) is fine.
            Max load 7/8; the table doubles when it is reached.
            Tombstone policy: erase marks a slot empty when its group still has an empty slot
            (no probe ever passed through such a group), else deleted. Tombstones are never
            counted as free space: when an insert finds no room and at most 25/32 of the slots
            are live (the rule Abseil uses), the table is rehashed in place (no allocation,
            tombstones dropped) instead of grown, so erase-heavy workloads neither lose lookup
            speed nor grow memory; each in-place rehash frees at least 3/32 of the slots, so it
            costs amortised O(1) per insert.
            Stability: a pointer from find/insert is valid until the next insert, reserve or
            clear (erase never moves other entries). Iteration order is unspecified and unstable
            across inserts; erasing the entry just returned by fa_map_next is allowed.
            Errors leave the table unchanged (allocation failure included).
   fa_lru   fixed-capacity LRU cache: fa_map index + intrusive recency list, O(1) get/put/evict,
            eviction callback, hit/miss/eviction counters. All memory is allocated by init;
            nothing is allocated afterwards (its index never grows, it rehashes in place).
   fa_cmap  concurrent map (opaque). Sharded by the top bits of the hash; each shard's lock,
            sequence number and metadata sit on their own cache line. Writers (insert, assign,
            erase, update) take the shard's lock, so writers on one shard are serialised and
            writers on different shards run in parallel. Readers (get) never write shared memory
            and never wait for each other: they read the shard optimistically and validate with
            the shard's sequence number (seqlock), retrying only when a writer ran on that shard
            meanwhile. Every operation is linearizable (per key and per shard): a get returns the
            value of the last completed write of that key, never a torn mix of two writes.
            Iteration (fa_cmap_foreach) holds one shard's writer lock at a time: it sees each
            shard as a consistent snapshot (readers go on meanwhile, writers of that shard
            wait), but not the whole map at one instant. Tables replaced by growth
            stay allocated (readers may still be inside them) until fa_cmap_reclaim() or destroy;
            growth doubles, so the retired memory is less than the live table.
            Keys and values are stored as 8-byte words read with relaxed/acquire atomics, which
            is what keeps the optimistic readers free of data races (ThreadSanitizer-clean).
   fa_clru  sharded concurrent LRU (opaque): one fa_lru per shard, each behind its own spinlock
            on its own cache line. Capacity is split evenly over the shards (rounded up to a
            multiple of the shard count; fewer shards when that would leave < 8 entries each),
            so eviction is LRU per shard (approximately LRU overall). get takes the shard lock
            too (it reorders), so fa_clru scales with the shard count, not with readers.
            Counters are summed over shards.

   Keys are compared by bytes (memcmp) unless an eq callback is given. Hash callbacks receive
   the key and the table's user pointer. None of these functions print or abort. */

/* Hash of a key_size-byte key; any quality (the table re-mixes it with a per-table seed). */
typedef uint64_t (*fa_hash_fn)(const void *key, size_t key_size, void *user);
/* Nonzero when the two keys are equal. Must agree with the hash. */
typedef int (*fa_eq_fn)(const void *a, const void *b, size_t key_size, void *user);

/* Seeded hash of n bytes (the built-in hash the tables use). Not cryptographic. */
FLASHATTN_DEF uint64_t fa_hash_bytes(const void *data, size_t n, uint64_t seed);

typedef struct fa_map_desc {
    size_t key_size;            /* bytes per key; required (> 0) */
    size_t value_size;          /* bytes per value; 0 = a set (find returns the stored key) */
    size_t capacity;            /* entries to hold without growing; 0 = allocate on first insert */
    fa_hash_fn hash;            /* NULL = built-in seeded hash of the key bytes */
    fa_eq_fn eq;                /* NULL = memcmp of the key bytes */
    void *user;                 /* passed to hash and eq */
    uint64_t seed;              /* hash seed; 0 = a fresh random seed per table */
    const fa_allocator *allocator; /* NULL = FLASHATTN_MALLOC; copied at init */
} fa_map_desc;

/* A map the caller owns (stack, static, arena). All fields are private. */
typedef struct fa_map {
    uint8_t *ctrl_;             /* slot_count_ control bytes, 64-byte aligned */
    uint8_t *slots_;            /* slot_count_ * slot_size_ bytes, directly after ctrl_ */
    size_t slot_count_;         /* 0 or a power of two >= 16 */
    size_t count_, tombstones_, growth_left_;
    size_t key_size_, value_size_, value_offset_, slot_size_;
    fa_hash_fn hash_;
    fa_eq_fn eq_;
    void *user_;
    uint64_t seed_;
    fa_allocator allocator_;
    size_t find_off_;           /* offset of what find returns within a slot */
    int has_allocator_, path_, fixed_, fast8_, fast_find_;
} fa_map;

FLASHATTN_DEF fa_status fa_map_init(fa_map *m, const fa_map_desc *d);
FLASHATTN_DEF void      fa_map_destroy(fa_map *m);   /* NULL or a zeroed map: no-op */
/* Insert key -> value (value NULL = zero bytes). FA_ERR_EXISTS (table unchanged) if the key is
   present. *value_out (optional) receives the stored value (the existing one on EXISTS). */
FLASHATTN_DEF fa_status fa_map_insert(fa_map *m, const void *key, const void *value,
                                      void **value_out);
/* Insert, or overwrite the value of a present key. */
FLASHATTN_DEF fa_status fa_map_insert_or_assign(fa_map *m, const void *key, const void *value,
                                                void **value_out);
/* Pointer to the stored value (the stored key for a set), or NULL when absent or on bad
   arguments. Valid until the next insert/reserve/clear/destroy. */
FLASHATTN_DEF void     *fa_map_find(const fa_map *m, const void *key);
/* Copy the value out; FA_ERR_NOT_FOUND leaves value_out untouched. */
FLASHATTN_DEF fa_status fa_map_get(const fa_map *m, const void *key, void *value_out);
/* Look up n keys stored back to back (n * key_size bytes): values_out[i] = what fa_map_find
   would return for key i. Hashes and prefetches a batch before probing it, so the cache
   misses of many lookups overlap (useful for a prefix cache probing a sequence of blocks).
   Returns how many were found; 0 with values_out untouched on NULL arguments. */
FLASHATTN_DEF size_t    fa_map_find_batch(const fa_map *m, const void *keys, size_t n,
                                          void **values_out);
/* Remove key; copies its value to value_out (optional) first. FA_ERR_NOT_FOUND if absent. */
FLASHATTN_DEF fa_status fa_map_erase(fa_map *m, const void *key, void *value_out);
/* Make room for n entries in total without further allocation (drops tombstones too). */
FLASHATTN_DEF fa_status fa_map_reserve(fa_map *m, size_t n);
FLASHATTN_DEF void      fa_map_clear(fa_map *m);     /* remove all; keeps the memory */
FLASHATTN_DEF size_t    fa_map_count(const fa_map *m);
FLASHATTN_DEF size_t    fa_map_capacity(const fa_map *m); /* entries before the next growth */
FLASHATTN_DEF size_t    fa_map_memory(const fa_map *m);   /* bytes allocated */
/* Iterate: size_t it = 0; const void *k; void *v; while (fa_map_next(m, &it, &k, &v)) {...}
   Returns 1 with the next entry (value NULL for a set), 0 at the end. */
FLASHATTN_DEF int       fa_map_next(const fa_map *m, size_t *it, const void **key, void **value);

/* ---- LRU cache ---- */
typedef void (*fa_lru_evict_fn)(const void *key, void *value, void *user);

typedef struct fa_lru_desc {
    size_t key_size;            /* bytes per key; required (> 0) */
    size_t value_size;          /* bytes per value; may be 0 */
    size_t capacity;            /* entries; required (> 0, < 2^32 - 1) */
    fa_hash_fn hash;            /* NULL = built-in seeded hash */
    fa_eq_fn eq;                /* NULL = memcmp */
    void *user;                 /* passed to hash and eq */
    uint64_t seed;              /* 0 = random */
    fa_lru_evict_fn on_evict;   /* called when put pushes out the least recent entry; NULL =
                                   none. Runs inside put (under the shard lock for fa_clru): it
                                   must not call back into the same cache. */
    void *evict_user;           /* passed to on_evict */
    size_t shards;              /* fa_clru only: shard count, rounded up to a power of two;
                                   0 = 4 x CPUs (at most 256). Ignored by fa_lru. */
    const fa_allocator *allocator; /* NULL = FLASHATTN_MALLOC */
} fa_lru_desc;

typedef struct fa_lru_stats {
    uint64_t hits, misses;      /* fa_lru_get / fa_clru_get outcomes */
    uint64_t evictions;         /* entries pushed out by put */
    uint64_t count, capacity;   /* entries now / at most */
} fa_lru_stats;

typedef struct fa_lru {        /* all fields private */
    fa_map index_;              /* key -> entry number (uint32_t) */
    uint8_t *entries_;          /* capacity_ entries: prev, next (uint32_t), key, value */
    size_t entry_size_, key_off_, value_off_, value_size_, capacity_, count_;
    uint32_t head_, tail_, free_;   /* most recent, least recent, free list */
    fa_lru_evict_fn on_evict_;
    void *evict_user_;
    uint64_t hits_, misses_, evictions_;
    fa_allocator allocator_;
    int has_allocator_;
} fa_lru;

FLASHATTN_DEF fa_status fa_lru_init(fa_lru *c, const fa_lru_desc *d);
FLASHATTN_DEF void      fa_lru_destroy(fa_lru *c);
/* Value pointer of key, marked most recent; NULL when absent. Counts a hit or a miss. The
   pointer is valid until the next put/erase/clear. */
FLASHATTN_DEF void     *fa_lru_get(fa_lru *c, const void *key);
/* Like fa_lru_get but neither reorders nor counts. */
FLASHATTN_DEF void     *fa_lru_peek(const fa_lru *c, const void *key);
/* Insert or assign key -> value (NULL = zeros), marked most recent. When the cache is full the
   least recent entry is evicted first (on_evict is called with it). *value_out (optional)
   receives the stored value. Never allocates. */
FLASHATTN_DEF fa_status fa_lru_put(fa_lru *c, const void *key, const void *value,
                                   void **value_out);
/* Remove key (no callback); value copied to value_out when not NULL. */
FLASHATTN_DEF fa_status fa_lru_erase(fa_lru *c, const void *key, void *value_out);
/* Remove the least recent entry (no callback), copying it out; FA_ERR_EMPTY if none. */
FLASHATTN_DEF fa_status fa_lru_pop(fa_lru *c, void *key_out, void *value_out);
FLASHATTN_DEF void      fa_lru_clear(fa_lru *c);     /* remove all (no callbacks; counters kept) */
FLASHATTN_DEF size_t    fa_lru_count(const fa_lru *c);
FLASHATTN_DEF void      fa_lru_get_stats(const fa_lru *c, fa_lru_stats *out);

/* ---- concurrent map ---- */
#define FA_CMAP_MAX_ITEM 512    /* bytes: largest key_size and value_size of fa_cmap */

typedef struct fa_cmap fa_cmap;
typedef struct fa_cmap_desc {
    size_t key_size;            /* bytes per key; required, 1..FA_CMAP_MAX_ITEM */
    size_t value_size;          /* bytes per value; 0..FA_CMAP_MAX_ITEM */
    size_t capacity;            /* entries to hold without growing (spread over shards) */
    size_t shards;              /* rounded up to a power of two; 0 = 4 x CPUs (at most 256) */
    fa_hash_fn hash;            /* NULL = built-in seeded hash */
    fa_eq_fn eq;                /* NULL = memcmp; called on private copies, never on shared
                                   memory */
    void *user;
    uint64_t seed;              /* 0 = random */
    const fa_allocator *allocator; /* NULL = FLASHATTN_MALLOC */
} fa_cmap_desc;

/* Called under the shard lock with a private copy of the value; changes are stored back. */
typedef void (*fa_cmap_update_fn)(void *value, void *user);
/* Called per entry under its shard's lock; return nonzero to stop. Must not call the map. */
typedef int (*fa_cmap_visit_fn)(const void *key, const void *value, void *user);

FLASHATTN_DEF fa_status fa_cmap_create(fa_cmap **out, const fa_cmap_desc *d);
/* Destroy: no other thread may be using the map. */
FLASHATTN_DEF void      fa_cmap_destroy(fa_cmap *cm);
/* Copy key's value to value_out (may be NULL to test presence). Never blocks other readers;
   retries while a writer is inside the key's shard. FA_ERR_NOT_FOUND leaves value_out as is. */
FLASHATTN_DEF fa_status fa_cmap_get(fa_cmap *cm, const void *key, void *value_out);
FLASHATTN_DEF fa_status fa_cmap_insert(fa_cmap *cm, const void *key, const void *value);
FLASHATTN_DEF fa_status fa_cmap_insert_or_assign(fa_cmap *cm, const void *key,
                                                 const void *value);
FLASHATTN_DEF fa_status fa_cmap_erase(fa_cmap *cm, const void *key, void *value_out);
/* Atomic read-modify-write of one value: if key is absent, insert init first (FA_ERR_NOT_FOUND
   when init is NULL); then fn(value, user) runs on it under the shard lock (fn may be NULL). */
FLASHATTN_DEF fa_status fa_cmap_update(fa_cmap *cm, const void *key, const void *init,
                                       fa_cmap_update_fn fn, void *user);
FLASHATTN_DEF size_t    fa_cmap_count(fa_cmap *cm);  /* sum over shards; exact when quiet */
FLASHATTN_DEF fa_status fa_cmap_foreach(fa_cmap *cm, fa_cmap_visit_fn fn, void *user);
/* Free tables retired by growth. Only when no thread is inside any fa_cmap call on cm. */
FLASHATTN_DEF void      fa_cmap_reclaim(fa_cmap *cm);
FLASHATTN_DEF size_t    fa_cmap_memory(fa_cmap *cm); /* bytes allocated, retired included */

/* ---- concurrent (sharded) LRU ---- */
typedef struct fa_clru fa_clru;
FLASHATTN_DEF fa_status fa_clru_create(fa_clru **out, const fa_lru_desc *d);
FLASHATTN_DEF void      fa_clru_destroy(fa_clru *c);
/* Copy the value out and mark it most recent (counts a hit or a miss). */
FLASHATTN_DEF fa_status fa_clru_get(fa_clru *c, const void *key, void *value_out);
FLASHATTN_DEF fa_status fa_clru_put(fa_clru *c, const void *key, const void *value);
FLASHATTN_DEF fa_status fa_clru_erase(fa_clru *c, const void *key, void *value_out);
FLASHATTN_DEF size_t    fa_clru_count(fa_clru *c);
FLASHATTN_DEF void      fa_clru_get_stats(fa_clru *c, fa_lru_stats *out);

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

/* ---- portable atomics (hash section) ----
   C11 <stdatomic.h> when compiling C11 or later, GCC/clang __atomic builtins otherwise (C99 and
   C++). Only 64-bit lock-free words are used. No standalone fences: ThreadSanitizer does not
   model them (gcc warns with -Wtsan), so every ordering is carried by the access itself. */
#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
typedef _Atomic(uint64_t) fa__h_a64;
#define FA__H_RELAXED memory_order_relaxed
#define FA__H_ACQUIRE memory_order_acquire
#define FA__H_RELEASE memory_order_release
#define fa__h_ld(p, mo) atomic_load_explicit((p), mo)
#define fa__h_st(p, v, mo) atomic_store_explicit((p), (v), mo)
#define fa__h_cas(p, expp, des, mo_ok, mo_fail) \
    atomic_compare_exchange_weak_explicit((p), (expp), (des), mo_ok, mo_fail)
#define fa__h_xchg(p, v, mo) atomic_exchange_explicit((p), (v), mo)
#define fa__h_add(p, v, mo) atomic_fetch_add_explicit((p), (v), mo)
#else
typedef uint64_t fa__h_a64;
#define FA__H_RELAXED __ATOMIC_RELAXED
#define FA__H_ACQUIRE __ATOMIC_ACQUIRE
#define FA__H_RELEASE __ATOMIC_RELEASE
#define fa__h_ld(p, mo) __atomic_load_n((p), mo)
#define fa__h_st(p, v, mo) __atomic_store_n((p), (v), mo)
#define fa__h_cas(p, expp, des, mo_ok, mo_fail) \
    __atomic_compare_exchange_n((p), (expp), (des), 1, mo_ok, mo_fail)
#define fa__h_xchg(p, v, mo) __atomic_exchange_n((p), (v), mo)
#define fa__h_add(p, v, mo) __atomic_fetch_add((p), (v), mo)
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#endif
#include <time.h>

#if defined(__GNUC__) || defined(__clang__)
#define FA__H_INLINE static inline __attribute__((always_inline))
#define FA__H_NOINLINE __attribute__((noinline))
#else
#define FA__H_INLINE static inline
#define FA__H_NOINLINE
#endif

/* Spin-wait step: a CPU pause hint, and every 64 spins a yield so that a preempted lock holder
   can run (matters when threads outnumber cores). */
static FA__UNUSED void fa__h_backoff(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(FA__X86)
        _mm_pause();
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
        return;
    }
    *spins = 0;
#if defined(_WIN32)
    SwitchToThread();
#elif defined(__unix__) || defined(__APPLE__)
    sched_yield();
#endif
}

/* ---- hashing ----
   The mixing step is the "multiply, then fold the 128-bit product" (lo ^ hi) used by wyhash and
   rapidhash: one multiply spreads every input bit over the whole word. */
#define FA__HK0 0x9e3779b97f4a7c15ull
#define FA__HK1 0xbf58476d1ce4e5b9ull
#define FA__HK2 0x94d049bb133111ebull
#define FA__HK3 0xd6e8feb86659fd93ull

#if defined(__SIZEOF_INT128__)
__extension__ typedef unsigned __int128 fa__h_u128;
FA__H_INLINE uint64_t fa__mum(uint64_t a, uint64_t b)
{
    fa__h_u128 r = (fa__h_u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}
#else
static uint64_t fa__mum(uint64_t a, uint64_t b)
{
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
}
#endif

/* Native-endian 64-bit read of unaligned bytes; fa__h_le64 turns it into "byte i at bits 8i". */
FA__H_INLINE uint64_t fa__h_rd64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define fa__h_le64(x) __builtin_bswap64(x)
#define FA__H_BIG_ENDIAN 1
#else
#define fa__h_le64(x) (x)
#endif

FLASHATTN_DEF uint64_t fa_hash_bytes(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *)data;
    uint64_t s = seed ^ FA__HK1, h = seed ^ ((uint64_t)n * FA__HK0);
    if (!p) n = 0;
    while (n >= 16) {
        h = fa__mum(fa__h_le64(fa__h_rd64(p)) ^ s, fa__h_le64(fa__h_rd64(p + 8)) ^ h ^ FA__HK2);
        p += 16;
        n -= 16;
    }
    if (n >= 8) {
        h = fa__mum(fa__h_le64(fa__h_rd64(p)) ^ s, h ^ FA__HK2);
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t t = 0;
        size_t i;
        for (i = 0; i < n; i++) t |= (uint64_t)p[i] << (8 * i);
        h = fa__mum(t ^ s, h ^ FA__HK3);
    }
    return fa__mum(h ^ FA__HK3, seed ^ FA__HK0);
}

/* The 8-byte-key fast path: a single seeded multiply-fold. */
FA__H_INLINE uint64_t fa__hash8(uint64_t k, uint64_t seed) { return fa__mum(k ^ seed, FA__HK1); }

static fa__h_a64 fa__h_seed_counter;

/* A per-table seed that differs between tables, runs and processes (time, clock, addresses
   under ASLR, a counter), finished with splitmix64. Unpredictable enough to stop blind
   collision flooding; not a cryptographic secret. */
static uint64_t fa__h_random_seed(const void *obj)
{
    uint64_t x = (uint64_t)time(NULL) * FA__HK2;
    x ^= (uint64_t)clock() << 20;
    x ^= (uint64_t)(uintptr_t)obj;
    x ^= (uint64_t)(uintptr_t)&x << 32;
    x += fa__h_add(&fa__h_seed_counter, FA__HK0, FA__H_RELAXED);
    x = (x ^ (x >> 30)) * FA__HK1;
    x = (x ^ (x >> 27)) * FA__HK2;
    x ^= x >> 31;
    return x ? x : FA__HK3;
}

/* ---- control bytes and group matching ----
   A group is 16 consecutive control bytes (16-byte aligned; 4 per cache line). EMPTY (0x80)
   and DELETED (0xFE) have the top bit set, FULL bytes hold a 7-bit tag. A match returns a bit
   mask over the group's slots: bit i (SSE2, SWAR) or bit 4i+3 (NEON, whose narrowing trick
   gives 4 bits per byte); fa__g_idx turns the lowest set bit into a slot number. */
#define FA__GROUP 16
#define FA__CT_EMPTY 0x80u
#define FA__CT_DELETED 0xFEu
#define FA__H_NPOS ((size_t)-1)
enum { FA__PATH_SWAR = 0, FA__PATH_SSE2 = 1, FA__PATH_NEON = 2, FA__PATH_AVX2_SCAN = 16 };

#if defined(FA__X86) && defined(__SSE2__)
#define FA__H_SSE2 1
#endif
#if defined(FA__NEON) && defined(__aarch64__) && !defined(FA__H_BIG_ENDIAN)
#define FA__H_NEON 1
#endif

#define FA__H_LSB 0x0101010101010101ull
#define FA__H_MSB 0x8080808080808080ull
#define FA__H_LOW7 0x7f7f7f7f7f7f7f7full

/* Top bit of each byte (bits 8i+7 only) -> 8-bit mask, byte i -> bit i. The multiply sends bit
   8i+7 of x>>7 (= bit 8i) to bit 49+i with no two partial products overlapping. */
FA__H_INLINE uint64_t fa__swar_pack(uint64_t x) { return ((x >> 7) * 0x0002040810204081ull) >> 49 & 0xffu; }
/* Exact zero-byte test: top bit set in each byte of x that is 0 (no borrow between bytes). */
FA__H_INLINE uint64_t fa__swar_zero(uint64_t x) { return ~(((x & FA__H_LOW7) + FA__H_LOW7) | x | FA__H_LOW7); }

/* SWAR twins on two little-endian-ordered words (bytes 0-7 and 8-15). */
FA__H_INLINE uint64_t fa__gw_match_swar(uint64_t w0, uint64_t w1, unsigned tag)
{
    uint64_t t = FA__H_LSB * tag;
    return fa__swar_pack(fa__swar_zero(w0 ^ t)) | fa__swar_pack(fa__swar_zero(w1 ^ t)) << 8;
}
/* EMPTY = 1000 0000 and DELETED = 1111 1110 differ in bit 1: w << 6 moves each byte's bit 1
   to its bit 7. */
FA__H_INLINE uint64_t fa__gw_empty_swar(uint64_t w0, uint64_t w1)
{
    return fa__swar_pack(w0 & ~(w0 << 6) & FA__H_MSB) |
           fa__swar_pack(w1 & ~(w1 << 6) & FA__H_MSB) << 8;
}
FA__H_INLINE uint64_t fa__gw_free_swar(uint64_t w0, uint64_t w1)
{
    return fa__swar_pack(w0 & FA__H_MSB) | fa__swar_pack(w1 & FA__H_MSB) << 8;
}

#if defined(FA__H_NEON)
FA__H_INLINE uint64_t fa__neon_mask(uint8x16_t eq)
{
    return vget_lane_u64(vreinterpret_u64_u8(vshrn_n_u16(vreinterpretq_u16_u8(eq), 4)), 0) &
           0x8888888888888888ull;
}
#endif

FA__H_INLINE unsigned fa__g_idx(uint64_t mask, int path)
{
#if defined(__GNUC__) || defined(__clang__)
    unsigned i = (unsigned)__builtin_ctzll(mask);
#else
    unsigned i = 0;
    while (!((mask >> i) & 1)) i++;
#endif
    return path == FA__PATH_NEON ? i >> 2 : i;
}

/* Group primitives on memory (fa_map). path is a constant at every call site. */
FA__H_INLINE uint64_t fa__g_match(const uint8_t *g, unsigned tag, int path)
{
#if defined(FA__H_SSE2)
    if (path == FA__PATH_SSE2)
        return (uint32_t)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_load_si128((const __m128i *)(const void *)g), _mm_set1_epi8((char)tag)));
#endif
#if defined(FA__H_NEON)
    if (path == FA__PATH_NEON) return fa__neon_mask(vceqq_u8(vld1q_u8(g), vdupq_n_u8((uint8_t)tag)));
#endif
    (void)path;
    return fa__gw_match_swar(fa__h_le64(fa__h_rd64(g)), fa__h_le64(fa__h_rd64(g + 8)), tag);
}
FA__H_INLINE uint64_t fa__g_empty(const uint8_t *g, int path)
{
#if defined(FA__H_SSE2)
    if (path == FA__PATH_SSE2)
        return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(
            _mm_load_si128((const __m128i *)(const void *)g), _mm_set1_epi8((char)FA__CT_EMPTY)));
#endif
#if defined(FA__H_NEON)
    if (path == FA__PATH_NEON) return fa__neon_mask(vceqq_u8(vld1q_u8(g), vdupq_n_u8(FA__CT_EMPTY)));
#endif
    (void)path;
    return fa__gw_empty_swar(fa__h_le64(fa__h_rd64(g)), fa__h_le64(fa__h_rd64(g + 8)));
}
FA__H_INLINE uint64_t fa__g_free(const uint8_t *g, int path) /* EMPTY or DELETED */
{
#if defined(FA__H_SSE2)
    if (path == FA__PATH_SSE2)
        return (uint32_t)_mm_movemask_epi8(_mm_load_si128((const __m128i *)(const void *)g));
#endif
#if defined(FA__H_NEON)
    if (path == FA__PATH_NEON)
        return fa__neon_mask(vreinterpretq_u8_s8(vshrq_n_s8(vreinterpretq_s8_u8(vld1q_u8(g)), 7)));
#endif
    (void)path;
    return fa__gw_free_swar(fa__h_le64(fa__h_rd64(g)), fa__h_le64(fa__h_rd64(g + 8)));
}

/* The same on two words already loaded (fa_cmap reads control words atomically). */
FA__H_INLINE uint64_t fa__gw_match(uint64_t w0, uint64_t w1, unsigned tag, int path)
{
#if defined(FA__H_SSE2)
    if (path == FA__PATH_SSE2)
        return (uint32_t)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_set_epi64x((long long)w1, (long long)w0), _mm_set1_epi8((char)tag)));
#endif
#if defined(FA__H_NEON)
    if (path == FA__PATH_NEON)
        return fa__neon_mask(vceqq_u8(vreinterpretq_u8_u64(vcombine_u64(vcreate_u64(w0), vcreate_u64(w1))),
                                      vdupq_n_u8((uint8_t)tag)));
#endif
    (void)path;
    return fa__gw_match_swar(fa__h_le64(w0), fa__h_le64(w1), tag);
}
FA__H_INLINE uint64_t fa__gw_empty(uint64_t w0, uint64_t w1, int path)
{
#if defined(FA__H_SSE2)
    if (path == FA__PATH_SSE2)
        return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(
            _mm_set_epi64x((long long)w1, (long long)w0), _mm_set1_epi8((char)FA__CT_EMPTY)));
#endif
    (void)path;
    return fa__gw_empty_swar(fa__h_le64(w0), fa__h_le64(w1));
}

static int fa__h_pick_path(void)
{
    unsigned f = fa_cpu_features();
    int scan = (f & FA_CPU_AVX2) ? FA__PATH_AVX2_SCAN : 0;
#if defined(FA__H_SSE2)
    if (f & FA_CPU_SSE2) return FA__PATH_SSE2 | scan;
#endif
#if defined(FA__H_NEON)
    if (f & FA_CPU_NEON) return FA__PATH_NEON;
#endif
    (void)f;
    return FA__PATH_SWAR | scan;
}

/* Next full slot at or after i (< n), or n. Used by iteration. The AVX2 twin scans 32 control
   bytes per step; the others go a group at a time. */
static size_t fa__ctrl_next_full(const uint8_t *ctrl, size_t i, size_t n, int path)
{
    while (i < n && (i & (FA__GROUP - 1))) {
        if (!(ctrl[i] & 0x80)) return i;
        i++;
    }
    for (; i < n; i += FA__GROUP) {
        uint64_t f;
        if (path == FA__PATH_SSE2) f = fa__g_free(ctrl + i, FA__PATH_SSE2) ^ 0xffffu;
        else if (path == FA__PATH_NEON) f = fa__g_free(ctrl + i, FA__PATH_NEON) ^ 0x8888888888888888ull;
        else f = fa__g_free(ctrl + i, FA__PATH_SWAR) ^ 0xffffu;
        if (f) return i + fa__g_idx(f, path);
    }
    return n;
}
#if defined(FA__X86)
__attribute__((target("avx2"))) static size_t fa__ctrl_next_full_avx2(const uint8_t *ctrl,
                                                                       size_t i, size_t n)
{
    while (i < n && (i & 31)) {
        if (!(ctrl[i] & 0x80)) return i;
        i++;
    }
    for (; i + 32 <= n; i += 32) {
        uint32_t f = ~(uint32_t)_mm256_movemask_epi8(_mm256_load_si256((const __m256i *)(const void *)(ctrl + i)));
        if (f) return i + (size_t)__builtin_ctz(f);
    }
    for (; i < n; i++)
        if (!(ctrl[i] & 0x80)) return i;
    return n;
}
#endif

/* ---- fa_map ---- */
static size_t fa__h_align_of(size_t n) /* largest power of two dividing n, at most 8 */
{
    size_t a = 1;
    if (n == 0) return 1;
    while (a < 8 && n % (a * 2) == 0) a *= 2;
    return a;
}
static size_t fa__h_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
static size_t fa__map_max_load(size_t slots) { return slots - slots / 8; } /* 7/8 */

static const fa_allocator *fa__map_alloc(const fa_map *m)
{
    return m->has_allocator_ ? &m->allocator_ : NULL;
}

/* fast8_: bit 0 = 8-byte key compared as one word (no user eq), bit 1 = built-in hash. */
#define FA__FAST8_EQ 1
#define FA__FAST8_HASH 2

FA__H_INLINE uint64_t fa__map_hash(const fa_map *m, const void *key)
{
    if (FA__LIKELY(m->fast8_ == (FA__FAST8_EQ | FA__FAST8_HASH))) return fa__hash8(fa__h_rd64(key), m->seed_);
    if (m->hash_) return fa__mum(m->hash_(key, m->key_size_, m->user_) ^ m->seed_, FA__HK2);
    return fa_hash_bytes(key, m->key_size_, m->seed_);
}

/* fast8 is a constant at each call site: the 8-byte path compiles to one compare. */
FA__H_INLINE int fa__map_keyeq(const fa_map *m, const uint8_t *slot, const void *key, int fast8)
{
    if (fast8) return fa__h_rd64(slot) == fa__h_rd64(key);
    if (m->eq_) return m->eq_(slot, key, m->key_size_, m->user_) != 0;
    return memcmp(slot, key, m->key_size_) == 0;
}

/* Probe sequence: groups g0, g0+1, g0+3, g0+6, ... (triangular numbers), which visits every
   group exactly once when the group count is a power of two. The tag is the low 7 bits of the
   hash, the first group comes from the bits above. */
FA__H_INLINE size_t fa__map_lookup_p(const fa_map *m, const void *key, uint64_t h, int path,
                                    int fast8)
{
    size_t gmask = (m->slot_count_ / FA__GROUP) - 1, g = (size_t)(h >> 7) & gmask, step = 0;
    unsigned tag = (unsigned)(h & 0x7f);
    for (;;) {
        const uint8_t *gc = m->ctrl_ + g * FA__GROUP;
        uint64_t mm = fa__g_match(gc, tag, path);
        while (mm) {
            size_t i = g * FA__GROUP + fa__g_idx(mm, path);
            if (FA__LIKELY(fa__map_keyeq(m, m->slots_ + i * m->slot_size_, key, fast8))) return i;
            mm &= mm - 1;
        }
        if (FA__LIKELY(fa__g_empty(gc, path) != 0) || ++step > gmask) return FA__H_NPOS;
        g = (g + step) & gmask;
    }
}

/* Generic lookup, out of line. */
static size_t fa__map_lookup_any(const fa_map *m, const void *key, uint64_t h)
{
    if (m->count_ == 0) return FA__H_NPOS;
#if defined(FA__H_SSE2)
    if ((m->path_ & 15) == FA__PATH_SSE2) return fa__map_lookup_p(m, key, h, FA__PATH_SSE2, 0);
#endif
#if defined(FA__H_NEON)
    if ((m->path_ & 15) == FA__PATH_NEON) return fa__map_lookup_p(m, key, h, FA__PATH_NEON, 0);
#endif
    return fa__map_lookup_p(m, key, h, FA__PATH_SWAR, 0);
}

/* Lookup with the 8-byte-key path inlined at the caller. A short hot path matters beyond
   its instruction count: the fewer instructions per lookup, the more independent lookups the
   CPU keeps in flight, each waiting on its own cache miss. */
FA__H_INLINE size_t fa__map_lookup(const fa_map *m, const void *key, uint64_t h)
{
    if (FA__LIKELY(m->fast8_ & FA__FAST8_EQ) && FA__LIKELY(m->count_ != 0)) {
#if defined(FA__H_SSE2)
        if (FA__LIKELY((m->path_ & 15) == FA__PATH_SSE2)) return fa__map_lookup_p(m, key, h, FA__PATH_SSE2, 1);
#endif
#if defined(FA__H_NEON)
        if (FA__LIKELY((m->path_ & 15) == FA__PATH_NEON)) return fa__map_lookup_p(m, key, h, FA__PATH_NEON, 1);
#endif
        return fa__map_lookup_p(m, key, h, FA__PATH_SWAR, 1);
    }
    return fa__map_lookup_any(m, key, h);
}

/* First EMPTY or DELETED slot on h's probe sequence; FA__H_NPOS if none (cannot happen while
   growth_left accounting holds: at least 1/8 of the slots are EMPTY). */
static size_t fa__map_find_free(const uint8_t *ctrl, size_t slots, uint64_t h, int path)
{
    size_t gmask = slots / FA__GROUP - 1, g = (size_t)(h >> 7) & gmask, step = 0;
    path &= 15;
    for (;;) {
        uint64_t mm;
#if defined(FA__H_SSE2)
        if (path == FA__PATH_SSE2) mm = fa__g_free(ctrl + g * FA__GROUP, FA__PATH_SSE2);
        else
#endif
#if defined(FA__H_NEON)
        if (path == FA__PATH_NEON) mm = fa__g_free(ctrl + g * FA__GROUP, FA__PATH_NEON);
        else
#endif
            mm = fa__g_free(ctrl + g * FA__GROUP, FA__PATH_SWAR);
        if (mm) return g * FA__GROUP + fa__g_idx(mm, path);
        if (++step > gmask) return FA__H_NPOS;
        g = (g + step) & gmask;
    }
}

/* Slots needed so that n entries stay within the 7/8 load; 0 on overflow. */
static size_t fa__map_slots_for(size_t n)
{
    size_t slots = FA__GROUP;
    while (fa__map_max_load(slots) < n) {
        if (slots > SIZE_MAX / 4) return 0;
        slots *= 2;
    }
    return slots;
}

static fa_status fa__map_block_bytes(const fa_map *m, size_t slots, size_t *bytes)
{
    size_t data;
    if (fa__mul_size(slots, m->slot_size_, &data) || fa__add_size(data, fa__h_round_up(slots, 64), bytes))
        return fa__fail(FA_ERR_OVERFLOW, "fa_map: %zu slots of %zu bytes overflow size_t", slots,
                        m->slot_size_);
    return FA_OK;
}

/* Move every entry into a fresh table of new_slots slots. On failure nothing changes. */
static fa_status fa__map_resize(fa_map *m, size_t new_slots)
{
    size_t bytes = 0, old_bytes = 0, i;
    uint8_t *block, *slots;
    fa_status st = fa__map_block_bytes(m, new_slots, &bytes);
    if (st) return st;
    block = (uint8_t *)fa__alloc(fa__map_alloc(m), bytes, 64);
    if (!block) return fa__fail(FA_ERR_NOMEM, "fa_map: cannot allocate %zu bytes", bytes);
    slots = block + fa__h_round_up(new_slots, 64);
    memset(block, FA__CT_EMPTY, new_slots);
    for (i = 0; i < m->slot_count_; i++) {
        if (!(m->ctrl_[i] & 0x80)) {
            const uint8_t *src = m->slots_ + i * m->slot_size_;
            uint64_t h = fa__map_hash(m, src);
            size_t j = fa__map_find_free(block, new_slots, h, m->path_);
            FLASHATTN_ASSERT(j != FA__H_NPOS);
            block[j] = (uint8_t)(h & 0x7f);
            memcpy(slots + j * m->slot_size_, src, m->slot_size_);
        }
    }
    if (m->ctrl_) {
        fa__map_block_bytes(m, m->slot_count_, &old_bytes);
        fa__free(fa__map_alloc(m), m->ctrl_, old_bytes);
    }
    m->ctrl_ = block;
    m->slots_ = slots;
    m->slot_count_ = new_slots;
    m->tombstones_ = 0;
    m->growth_left_ = fa__map_max_load(new_slots) - m->count_;
    return FA_OK;
}

static void fa__h_swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
    uint8_t tmp[64];
    while (n) {
        size_t k = n < sizeof tmp ? n : sizeof tmp;
        memcpy(tmp, a, k);
        memcpy(a, b, k);
        memcpy(b, tmp, k);
        a += k;
        b += k;
        n -= k;
    }
}

/* Drop tombstones without allocating (the in-place rehash of Abseil's
   raw_hash_set::drop_deletes_without_resize, on aligned groups): mark live entries DELETED
   ("still to place") and tombstones EMPTY, then place each marked entry at the first free slot
   of its probe sequence -- staying put when that is in its own group, moving into an EMPTY
   slot, or swapping with a not-yet-placed entry and continuing with the one swapped in. */
static void fa__map_rehash_in_place(fa_map *m)
{
    size_t i, n = m->slot_count_;
    for (i = 0; i < n; i++) m->ctrl_[i] = (m->ctrl_[i] & 0x80) ? FA__CT_EMPTY : FA__CT_DELETED;
    for (i = 0; i < n; i++) {
        while (m->ctrl_[i] == FA__CT_DELETED) {
            uint8_t *si = m->slots_ + i * m->slot_size_;
            uint64_t h = fa__map_hash(m, si);
            size_t t = fa__map_find_free(m->ctrl_, n, h, m->path_);
            FLASHATTN_ASSERT(t != FA__H_NPOS);
            if (t / FA__GROUP == i / FA__GROUP) {
                m->ctrl_[i] = (uint8_t)(h & 0x7f);
            } else if (m->ctrl_[t] == FA__CT_EMPTY) {
                m->ctrl_[t] = (uint8_t)(h & 0x7f);
                memcpy(m->slots_ + t * m->slot_size_, si, m->slot_size_);
                m->ctrl_[i] = FA__CT_EMPTY;
            } else {
                m->ctrl_[t] = (uint8_t)(h & 0x7f);
                fa__h_swap_bytes(m->slots_ + t * m->slot_size_, si, m->slot_size_);
            }
        }
    }
    m->tombstones_ = 0;
    m->growth_left_ = fa__map_max_load(n) - m->count_;
}

/* Called when an insert would consume an EMPTY slot but growth_left is 0. */
static fa_status fa__map_make_room(fa_map *m)
{
    size_t slots;
    if (m->slot_count_ == 0) return fa__map_resize(m, FA__GROUP);
    if (m->tombstones_ > 0 && (m->fixed_ || m->count_ <= m->slot_count_ / 32 * 25)) {
        fa__map_rehash_in_place(m);
        return FA_OK;
    }
    if (m->fixed_) return fa__fail(FA_ERR_FULL, "fa_map: fixed-size table is full");
    if (m->slot_count_ > SIZE_MAX / 4) return fa__fail(FA_ERR_OVERFLOW, "fa_map: cannot grow");
    slots = m->slot_count_ * 2;
    return fa__map_resize(m, slots);
}

/* Insert a key known to be absent; *pos_out = its slot. On failure the table is unchanged. */
static fa_status fa__map_insert_new(fa_map *m, const void *key, uint64_t h, size_t *pos_out)
{
    size_t i = FA__H_NPOS;
    uint8_t *s;
    if (m->slot_count_) i = fa__map_find_free(m->ctrl_, m->slot_count_, h, m->path_);
    if (i == FA__H_NPOS || (m->ctrl_[i] == FA__CT_EMPTY && m->growth_left_ == 0)) {
        fa_status st = fa__map_make_room(m);
        if (st) return st;
        i = fa__map_find_free(m->ctrl_, m->slot_count_, h, m->path_);
        if (i == FA__H_NPOS) return fa__fail(FA_ERR_INTERNAL, "fa_map: no free slot after growth");
    }
    if (m->ctrl_[i] == FA__CT_EMPTY) m->growth_left_--;
    else m->tombstones_--;
    m->ctrl_[i] = (uint8_t)(h & 0x7f);
    s = m->slots_ + i * m->slot_size_;
    memcpy(s, key, m->key_size_);
    m->count_++;
    *pos_out = i;
    return FA_OK;
}

static void fa__map_erase_at(fa_map *m, size_t i)
{
    /* A group that still has an EMPTY slot was never full, so no probe sequence continues past
       it: the slot can become EMPTY again. Otherwise leave a tombstone. */
    if (fa__g_empty(m->ctrl_ + (i & ~(size_t)(FA__GROUP - 1)), FA__PATH_SWAR)) {
        m->ctrl_[i] = FA__CT_EMPTY;
        m->growth_left_++;
    } else {
        m->ctrl_[i] = FA__CT_DELETED;
        m->tombstones_++;
    }
    m->count_--;
}

static fa_status fa__map_init_ex(fa_map *m, const fa_map_desc *d, int fixed)
{
    fa_map t;
    size_t voff, slot_size, a;
    if (!m) return fa__fail(FA_ERR_NULL, "fa_map_init: map is NULL");
    memset(m, 0, sizeof *m);
    if (!d) return fa__fail(FA_ERR_NULL, "fa_map_init: desc is NULL");
    if (d->key_size == 0) return fa__fail(FA_ERR_INVALID, "fa_map_init: key_size is 0");
    if (d->key_size > SIZE_MAX / 8 || d->value_size > SIZE_MAX / 8)
        return fa__fail(FA_ERR_OVERFLOW, "fa_map_init: key_size/value_size too large");
    memset(&t, 0, sizeof t);
    voff = fa__h_round_up(d->key_size, fa__h_align_of(d->value_size));
    a = fa__h_align_of(d->key_size);
    if (fa__h_align_of(d->value_size) > a && d->value_size) a = fa__h_align_of(d->value_size);
    slot_size = fa__h_round_up(voff + d->value_size, a);
    t.key_size_ = d->key_size;
    t.value_size_ = d->value_size;
    t.value_offset_ = voff;
    t.slot_size_ = slot_size;
    t.hash_ = d->hash;
    t.eq_ = d->eq;
    t.user_ = d->user;
    t.seed_ = d->seed ? d->seed : fa__h_random_seed(m);
    if (d->allocator && d->allocator->alloc) {
        t.allocator_ = *d->allocator;
        t.has_allocator_ = 1;
    }
    t.path_ = fa__h_pick_path();
    t.find_off_ = d->value_size ? voff : 0;
    t.fixed_ = fixed;
    t.fast8_ = (d->key_size == 8 && !d->eq ? FA__FAST8_EQ : 0) | (d->hash ? 0 : FA__FAST8_HASH);
#if defined(FA__H_SSE2)
    t.fast_find_ = t.fast8_ == (FA__FAST8_EQ | FA__FAST8_HASH) && (t.path_ & 15) == FA__PATH_SSE2;
#endif
    if (d->capacity) {
        size_t slots = fa__map_slots_for(d->capacity);
        fa_status st;
        if (!slots) return fa__fail(FA_ERR_OVERFLOW, "fa_map_init: capacity %zu too large", d->capacity);
        st = fa__map_resize(&t, slots);
        if (st) return st;
    }
    *m = t;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_map_init(fa_map *m, const fa_map_desc *d) { return fa__map_init_ex(m, d, 0); }

FLASHATTN_DEF void fa_map_destroy(fa_map *m)
{
    size_t bytes = 0;
    if (!m) return;
    if (m->ctrl_) {
        fa__map_block_bytes(m, m->slot_count_, &bytes);
        fa__free(fa__map_alloc(m), m->ctrl_, bytes);
    }
    memset(m, 0, sizeof *m);
}

static fa_status fa__map_check(const fa_map *m, const void *key, const char *fn)
{
    if (!m || !key) return fa__fail(FA_ERR_NULL, "%s: map or key is NULL", fn);
    if (m->key_size_ == 0) return fa__fail(FA_ERR_INVALID, "%s: map is not initialised", fn);
    return FA_OK;
}

static fa_status fa__map_put(fa_map *m, const void *key, const void *value, void **value_out,
                             int assign, const char *fn)
{
    uint64_t h;
    size_t i;
    uint8_t *v;
    fa_status st = fa__map_check(m, key, fn);
    if (st) return st;
    h = fa__map_hash(m, key);
    i = fa__map_lookup(m, key, h);
    if (i != FA__H_NPOS) {
        v = m->slots_ + i * m->slot_size_ + m->value_offset_;
        if (!assign) {
            if (value_out) *value_out = m->value_size_ ? (void *)v : (void *)(v - m->value_offset_);
            return FA_ERR_EXISTS;
        }
    } else {
        st = fa__map_insert_new(m, key, h, &i);
        if (st) return st;
        v = m->slots_ + i * m->slot_size_ + m->value_offset_;
        if (!value && m->value_size_) memset(v, 0, m->value_size_);
    }
    if (value && m->value_size_) memmove(v, value, m->value_size_);
    if (value_out) *value_out = m->value_size_ ? (void *)v : (void *)(v - m->value_offset_);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_map_insert(fa_map *m, const void *key, const void *value, void **value_out)
{
    return fa__map_put(m, key, value, value_out, 0, "fa_map_insert");
}
FLASHATTN_DEF fa_status fa_map_insert_or_assign(fa_map *m, const void *key, const void *value,
                                                void **value_out)
{
    return fa__map_put(m, key, value, value_out, 1, "fa_map_insert_or_assign");
}

static FA__H_NOINLINE void *fa__map_find_generic(const fa_map *m, const void *key)
{
    size_t i;
    if (!m || !key || m->count_ == 0) return NULL; /* count_ is 0 when not initialised */
    i = fa__map_lookup(m, key, fa__map_hash(m, key));
    if (i == FA__H_NPOS) return NULL;
    return m->slots_ + i * m->slot_size_ + (m->value_size_ ? m->value_offset_ : 0);
}

#if defined(FA__H_SSE2)
/* The common case -- 8-byte key, built-in hash, SSE2 -- as a loop that needs no stack frame:
   the same probe as fa__map_lookup_p, ~25 instructions per hit. */
FA__H_INLINE uint8_t *fa__map_find8_sse2(const fa_map *m, uint64_t k)
{
    uint64_t h = fa__hash8(k, m->seed_);
    size_t gmask = (m->slot_count_ / FA__GROUP) - 1, g = (size_t)(h >> 7) & gmask, step = 0;
    const __m128i tag = _mm_set1_epi8((char)(h & 0x7f));
    for (;;) {
        __m128i c = _mm_load_si128((const __m128i *)(const void *)(m->ctrl_ + g * FA__GROUP));
        unsigned mm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(c, tag));
        while (mm) {
            uint8_t *sl = m->slots_ + (g * FA__GROUP + (unsigned)__builtin_ctz(mm)) * m->slot_size_;
            if (FA__LIKELY(fa__h_rd64(sl) == k)) return sl;
            mm &= mm - 1;
        }
        if (FA__LIKELY(_mm_movemask_epi8(_mm_cmpeq_epi8(c, _mm_set1_epi8((char)FA__CT_EMPTY))) != 0) ||
            ++step > gmask)
            return NULL;
        g = (g + step) & gmask;
    }
}
#endif

FLASHATTN_DEF void *fa_map_find(const fa_map *m, const void *key)
{
#if defined(FA__H_SSE2)
    if (FA__LIKELY(m && key && m->fast_find_)) {
        uint8_t *sl;
        if (FA__UNLIKELY(m->count_ == 0)) return NULL;
        sl = fa__map_find8_sse2(m, fa__h_rd64(key));
        return sl ? sl + m->find_off_ : NULL;
    }
#endif
    return fa__map_find_generic(m, key);
}

#if defined(__GNUC__) || defined(__clang__)
#define FA__H_PREFETCH(p) __builtin_prefetch(p)
#else
#define FA__H_PREFETCH(p) ((void)(p))
#endif
#define FA__H_BATCH 16

FLASHATTN_DEF size_t fa_map_find_batch(const fa_map *m, const void *keys, size_t n, void **values_out)
{
    const uint8_t *kp = (const uint8_t *)keys;
    uint64_t h[FA__H_BATCH];
    size_t i, j, found = 0;
    if (!m || !keys || !values_out) return 0;
    for (i = 0; i < n; i += FA__H_BATCH) {
        size_t nb = n - i < FA__H_BATCH ? n - i : FA__H_BATCH;
        if (m->count_ == 0) {
            for (j = 0; j < nb; j++) values_out[i + j] = NULL;
            continue;
        }
        /* 1: hash and prefetch each first control group; 2: prefetch each first candidate
           slot; 3: probe (now mostly cache hits). */
        for (j = 0; j < nb; j++) {
            h[j] = fa__map_hash(m, kp + (i + j) * m->key_size_);
            FA__H_PREFETCH(m->ctrl_ + ((size_t)(h[j] >> 7) & (m->slot_count_ / FA__GROUP - 1)) * FA__GROUP);
        }
        for (j = 0; j < nb; j++) {
            size_t g = (size_t)(h[j] >> 7) & (m->slot_count_ / FA__GROUP - 1);
            uint64_t mm = fa__g_match(m->ctrl_ + g * FA__GROUP, (unsigned)(h[j] & 0x7f), FA__PATH_SWAR);
            if (mm) FA__H_PREFETCH(m->slots_ + (g * FA__GROUP + fa__g_idx(mm, FA__PATH_SWAR)) * m->slot_size_);
        }
        for (j = 0; j < nb; j++) {
            size_t s = fa__map_lookup(m, kp + (i + j) * m->key_size_, h[j]);
            values_out[i + j] = s == FA__H_NPOS ? NULL
                                : m->slots_ + s * m->slot_size_ + (m->value_size_ ? m->value_offset_ : 0);
            found += s != FA__H_NPOS;
        }
    }
    return found;
}

FLASHATTN_DEF fa_status fa_map_get(const fa_map *m, const void *key, void *value_out)
{
    size_t i;
    fa_status st = fa__map_check(m, key, "fa_map_get");
    if (st) return st;
    i = fa__map_lookup(m, key, fa__map_hash(m, key));
    if (i == FA__H_NPOS) return FA_ERR_NOT_FOUND;
    if (value_out && m->value_size_)
        memcpy(value_out, m->slots_ + i * m->slot_size_ + m->value_offset_, m->value_size_);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_map_erase(fa_map *m, const void *key, void *value_out)
{
    size_t i;
    fa_status st = fa__map_check(m, key, "fa_map_erase");
    if (st) return st;
    i = fa__map_lookup(m, key, fa__map_hash(m, key));
    if (i == FA__H_NPOS) return FA_ERR_NOT_FOUND;
    if (value_out && m->value_size_)
        memcpy(value_out, m->slots_ + i * m->slot_size_ + m->value_offset_, m->value_size_);
    fa__map_erase_at(m, i);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_map_reserve(fa_map *m, size_t n)
{
    size_t slots;
    if (!m) return fa__fail(FA_ERR_NULL, "fa_map_reserve: map is NULL");
    if (!m->key_size_) return fa__fail(FA_ERR_INVALID, "fa_map_reserve: map is not initialised");
    if (n < m->count_) n = m->count_;
    if (n == 0 || (m->slot_count_ && n - m->count_ <= m->growth_left_)) return FA_OK;
    slots = fa__map_slots_for(n);
    if (!slots) return fa__fail(FA_ERR_OVERFLOW, "fa_map_reserve: %zu entries too many", n);
    if (slots <= m->slot_count_) {
        fa__map_rehash_in_place(m);
        return FA_OK;
    }
    if (m->fixed_) return fa__fail(FA_ERR_FULL, "fa_map_reserve: fixed-size table");
    return fa__map_resize(m, slots);
}

FLASHATTN_DEF void fa_map_clear(fa_map *m)
{
    if (!m || !m->slot_count_) return;
    memset(m->ctrl_, FA__CT_EMPTY, m->slot_count_);
    m->count_ = 0;
    m->tombstones_ = 0;
    m->growth_left_ = fa__map_max_load(m->slot_count_);
}

FLASHATTN_DEF size_t fa_map_count(const fa_map *m) { return m ? m->count_ : 0; }
FLASHATTN_DEF size_t fa_map_capacity(const fa_map *m)
{
    return m ? m->count_ + m->growth_left_ : 0;
}
FLASHATTN_DEF size_t fa_map_memory(const fa_map *m)
{
    size_t b = 0;
    if (m && m->slot_count_) fa__map_block_bytes(m, m->slot_count_, &b);
    return b;
}

FLASHATTN_DEF int fa_map_next(const fa_map *m, size_t *it, const void **key, void **value)
{
    size_t i;
    uint8_t *s;
    if (!m || !it || !m->slot_count_ || *it >= m->slot_count_) return 0;
#if defined(FA__X86)
    if (m->path_ & FA__PATH_AVX2_SCAN) i = fa__ctrl_next_full_avx2(m->ctrl_, *it, m->slot_count_);
    else
#endif
        i = fa__ctrl_next_full(m->ctrl_, *it, m->slot_count_, m->path_ & 15);
    if (i >= m->slot_count_) {
        *it = m->slot_count_;
        return 0;
    }
    *it = i + 1;
    s = m->slots_ + i * m->slot_size_;
    if (key) *key = s;
    if (value) *value = m->value_size_ ? (void *)(s + m->value_offset_) : NULL;
    return 1;
}

/* ---- fa_lru ----
   Entries live in one array allocated by init: [prev u32][next u32][key][value]. A doubly
   linked list orders them from most recent (head) to least recent (tail); unused entries form
   a free list through next. The index is a fixed fa_map (key -> entry number) with at least
   16/7 slots per entry, so it holds the cache at <= 7/16 load and, when tombstones use up its
   room, rehashes in place (amortised O(1), never allocating). */
#define FA__LRU_NIL 0xffffffffu

static uint8_t *fa__lru_entry(const fa_lru *c, uint32_t e) { return c->entries_ + (size_t)e * c->entry_size_; }
static uint32_t fa__lru_prev(const fa_lru *c, uint32_t e) { uint32_t v; memcpy(&v, fa__lru_entry(c, e), 4); return v; }
static uint32_t fa__lru_next(const fa_lru *c, uint32_t e) { uint32_t v; memcpy(&v, fa__lru_entry(c, e) + 4, 4); return v; }
static void fa__lru_set_prev(fa_lru *c, uint32_t e, uint32_t v) { memcpy(fa__lru_entry(c, e), &v, 4); }
static void fa__lru_set_next(fa_lru *c, uint32_t e, uint32_t v) { memcpy(fa__lru_entry(c, e) + 4, &v, 4); }

static void fa__lru_unlink(fa_lru *c, uint32_t e)
{
    uint32_t p = fa__lru_prev(c, e), n = fa__lru_next(c, e);
    if (p != FA__LRU_NIL) fa__lru_set_next(c, p, n);
    else c->head_ = n;
    if (n != FA__LRU_NIL) fa__lru_set_prev(c, n, p);
    else c->tail_ = p;
}
static void fa__lru_push_front(fa_lru *c, uint32_t e)
{
    fa__lru_set_prev(c, e, FA__LRU_NIL);
    fa__lru_set_next(c, e, c->head_);
    if (c->head_ != FA__LRU_NIL) fa__lru_set_prev(c, c->head_, e);
    else c->tail_ = e;
    c->head_ = e;
}
static void fa__lru_free_entry(fa_lru *c, uint32_t e)
{
    fa__lru_set_next(c, e, c->free_);
    c->free_ = e;
}
static uint32_t fa__lru_index_value(const fa_lru *c, size_t slot)
{
    uint32_t e;
    memcpy(&e, c->index_.slots_ + slot * c->index_.slot_size_ + c->index_.value_offset_, 4);
    return e;
}

FLASHATTN_DEF fa_status fa_lru_init(fa_lru *c, const fa_lru_desc *d)
{
    fa_map_desc md;
    fa_status st;
    size_t bytes, i, a;
    if (!c) return fa__fail(FA_ERR_NULL, "fa_lru_init: cache is NULL");
    memset(c, 0, sizeof *c);
    if (!d) return fa__fail(FA_ERR_NULL, "fa_lru_init: desc is NULL");
    if (d->key_size == 0) return fa__fail(FA_ERR_INVALID, "fa_lru_init: key_size is 0");
    if (d->capacity == 0) return fa__fail(FA_ERR_INVALID, "fa_lru_init: capacity is 0");
    if (d->capacity >= FA__LRU_NIL || d->capacity > SIZE_MAX / 4)
        return fa__fail(FA_ERR_OVERFLOW, "fa_lru_init: capacity %zu too large", d->capacity);
    if (d->key_size > SIZE_MAX / 8 || d->value_size > SIZE_MAX / 8)
        return fa__fail(FA_ERR_OVERFLOW, "fa_lru_init: key_size/value_size too large");
    c->key_off_ = 8;
    a = fa__h_align_of(d->value_size);
    c->value_off_ = fa__h_round_up(8 + d->key_size, a);
    c->entry_size_ = fa__h_round_up(c->value_off_ + d->value_size, 8);
    c->value_size_ = d->value_size;
    if (fa__mul_size(c->entry_size_, d->capacity, &bytes)) {
        memset(c, 0, sizeof *c);
        return fa__fail(FA_ERR_OVERFLOW, "fa_lru_init: %zu entries overflow size_t", d->capacity);
    }
    memset(&md, 0, sizeof md);
    md.key_size = d->key_size;
    md.value_size = 4;
    md.capacity = d->capacity * 2; /* slots >= 16/7 entries: the index stays below 7/16 load */
    md.hash = d->hash;
    md.eq = d->eq;
    md.user = d->user;
    md.seed = d->seed;
    md.allocator = d->allocator;
    st = fa__map_init_ex(&c->index_, &md, 1);
    if (st) {
        memset(c, 0, sizeof *c);
        return st;
    }
    if (d->allocator && d->allocator->alloc) {
        c->allocator_ = *d->allocator;
        c->has_allocator_ = 1;
    }
    c->entries_ = (uint8_t *)fa__alloc(c->has_allocator_ ? &c->allocator_ : NULL, bytes, 64);
    if (!c->entries_) {
        fa_map_destroy(&c->index_);
        memset(c, 0, sizeof *c);
        return fa__fail(FA_ERR_NOMEM, "fa_lru_init: cannot allocate %zu bytes", bytes);
    }
    c->capacity_ = d->capacity;
    c->on_evict_ = d->on_evict;
    c->evict_user_ = d->evict_user;
    c->head_ = c->tail_ = FA__LRU_NIL;
    c->free_ = FA__LRU_NIL;
    for (i = d->capacity; i-- > 0;) fa__lru_free_entry(c, (uint32_t)i);
    return FA_OK;
}

FLASHATTN_DEF void fa_lru_destroy(fa_lru *c)
{
    if (!c) return;
    if (c->entries_) fa__free(c->has_allocator_ ? &c->allocator_ : NULL, c->entries_, c->entry_size_ * c->capacity_);
    fa_map_destroy(&c->index_);
    memset(c, 0, sizeof *c);
}

static void *fa__lru_get_h(fa_lru *c, const void *key, uint64_t h, int touch)
{
    size_t i = fa__map_lookup(&c->index_, key, h);
    uint32_t e;
    if (i == FA__H_NPOS) {
        if (touch) c->misses_++;
        return NULL;
    }
    e = fa__lru_index_value(c, i);
    if (touch) {
        c->hits_++;
        if (c->head_ != e) {
            fa__lru_unlink(c, e);
            fa__lru_push_front(c, e);
        }
    }
    return fa__lru_entry(c, e) + c->value_off_;
}

/* Remove the least recent entry from index and list; its bytes stay readable until reuse. */
static uint32_t fa__lru_remove_tail(fa_lru *c)
{
    uint32_t e = c->tail_;
    uint8_t *ent = fa__lru_entry(c, e);
    size_t i = fa__map_lookup(&c->index_, ent + c->key_off_, fa__map_hash(&c->index_, ent + c->key_off_));
    FLASHATTN_ASSERT(i != FA__H_NPOS);
    if (i != FA__H_NPOS) fa__map_erase_at(&c->index_, i);
    fa__lru_unlink(c, e);
    c->count_--;
    return e;
}

static fa_status fa__lru_put_h(fa_lru *c, const void *key, const void *value, uint64_t h,
                               void **value_out)
{
    size_t i = fa__map_lookup(&c->index_, key, h), pos;
    uint32_t e;
    uint8_t *ent;
    fa_status st;
    if (i != FA__H_NPOS) {
        e = fa__lru_index_value(c, i);
        ent = fa__lru_entry(c, e);
        if (c->head_ != e) {
            fa__lru_unlink(c, e);
            fa__lru_push_front(c, e);
        }
        if (value && c->value_size_) memmove(ent + c->value_off_, value, c->value_size_);
    } else {
        if (c->count_ == c->capacity_) {
            e = fa__lru_remove_tail(c);
            c->evictions_++;
            ent = fa__lru_entry(c, e);
            if (c->on_evict_) c->on_evict_(ent + c->key_off_, ent + c->value_off_, c->evict_user_);
            fa__lru_free_entry(c, e);
        }
        st = fa__map_insert_new(&c->index_, key, h, &pos);
        if (st) return st; /* cannot happen: the index is sized for the capacity */
        e = c->free_;
        ent = fa__lru_entry(c, e);
        c->free_ = fa__lru_next(c, e);
        memcpy(c->index_.slots_ + pos * c->index_.slot_size_ + c->index_.value_offset_, &e, 4);
        memcpy(ent + c->key_off_, key, c->index_.key_size_);
        if (c->value_size_) {
            if (value) memcpy(ent + c->value_off_, value, c->value_size_);
            else memset(ent + c->value_off_, 0, c->value_size_);
        }
        fa__lru_push_front(c, e);
        c->count_++;
    }
    if (value_out) *value_out = ent + c->value_off_;
    return FA_OK;
}

static fa_status fa__lru_erase_h(fa_lru *c, const void *key, uint64_t h, void *value_out)
{
    size_t i = fa__map_lookup(&c->index_, key, h);
    uint32_t e;
    if (i == FA__H_NPOS) return FA_ERR_NOT_FOUND;
    e = fa__lru_index_value(c, i);
    if (value_out && c->value_size_) memcpy(value_out, fa__lru_entry(c, e) + c->value_off_, c->value_size_);
    fa__map_erase_at(&c->index_, i);
    fa__lru_unlink(c, e);
    fa__lru_free_entry(c, e);
    c->count_--;
    return FA_OK;
}

static fa_status fa__lru_check(const fa_lru *c, const void *key, const char *fn)
{
    if (!c || !key) return fa__fail(FA_ERR_NULL, "%s: cache or key is NULL", fn);
    if (!c->entries_) return fa__fail(FA_ERR_INVALID, "%s: cache is not initialised", fn);
    return FA_OK;
}

FLASHATTN_DEF void *fa_lru_get(fa_lru *c, const void *key)
{
    if (fa__lru_check(c, key, "fa_lru_get")) return NULL;
    return fa__lru_get_h(c, key, fa__map_hash(&c->index_, key), 1);
}
FLASHATTN_DEF void *fa_lru_peek(const fa_lru *c, const void *key)
{
    size_t i;
    if (fa__lru_check(c, key, "fa_lru_peek")) return NULL;
    i = fa__map_lookup(&c->index_, key, fa__map_hash(&c->index_, key));
    return i == FA__H_NPOS ? NULL : fa__lru_entry(c, fa__lru_index_value(c, i)) + c->value_off_;
}
FLASHATTN_DEF fa_status fa_lru_put(fa_lru *c, const void *key, const void *value, void **value_out)
{
    fa_status st = fa__lru_check(c, key, "fa_lru_put");
    if (st) return st;
    return fa__lru_put_h(c, key, value, fa__map_hash(&c->index_, key), value_out);
}
FLASHATTN_DEF fa_status fa_lru_erase(fa_lru *c, const void *key, void *value_out)
{
    fa_status st = fa__lru_check(c, key, "fa_lru_erase");
    if (st) return st;
    return fa__lru_erase_h(c, key, fa__map_hash(&c->index_, key), value_out);
}
FLASHATTN_DEF fa_status fa_lru_pop(fa_lru *c, void *key_out, void *value_out)
{
    uint32_t e;
    uint8_t *ent;
    if (!c) return fa__fail(FA_ERR_NULL, "fa_lru_pop: cache is NULL");
    if (!c->entries_) return fa__fail(FA_ERR_INVALID, "fa_lru_pop: cache is not initialised");
    if (c->count_ == 0) return FA_ERR_EMPTY;
    e = fa__lru_remove_tail(c);
    ent = fa__lru_entry(c, e);
    if (key_out) memcpy(key_out, ent + c->key_off_, c->index_.key_size_);
    if (value_out && c->value_size_) memcpy(value_out, ent + c->value_off_, c->value_size_);
    fa__lru_free_entry(c, e);
    return FA_OK;
}
FLASHATTN_DEF void fa_lru_clear(fa_lru *c)
{
    size_t i;
    if (!c || !c->entries_) return;
    fa_map_clear(&c->index_);
    c->head_ = c->tail_ = c->free_ = FA__LRU_NIL;
    for (i = c->capacity_; i-- > 0;) fa__lru_free_entry(c, (uint32_t)i);
    c->count_ = 0;
}
FLASHATTN_DEF size_t fa_lru_count(const fa_lru *c) { return c ? c->count_ : 0; }
FLASHATTN_DEF void fa_lru_get_stats(const fa_lru *c, fa_lru_stats *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    out->hits = c->hits_;
    out->misses = c->misses_;
    out->evictions = c->evictions_;
    out->count = c->count_;
    out->capacity = c->capacity_;
}

/* ---- fa_cmap ----
   Shard = { lock, seq, table, count, tombstones, growth_left, retired } on its own cache line.
   A table keeps control bytes in 64-bit words (8 per word, memory order) and each slot as
   key_words + value_words 64-bit words (key zero-padded). Shared words are only ever accessed
   atomically, so the optimistic readers race with nothing.

   Seqlock protocol (H.-J. Boehm, "Can seqlocks get along with programming language memory
   models?", MSPC 2012), without standalone fences:
     writer: lock; seq = s+1 (odd); data stores with release; seq = s+2 with release; unlock.
     reader: s1 = seq (acquire), retry while odd; data loads with acquire; s2 = seq (relaxed);
             the read is valid iff s1 == s2.
   If a reader's acquire load sees any store of a writer, it synchronises with that release
   store, which comes after the writer's odd seq store, so s2 != s1 and the reader retries.
   Acquire loads also keep the s2 load after the data loads. On x86 all of these are plain
   moves. Tables replaced by growth are retired, not freed, because a reader may still be
   probing them; in-place rehashes only rewrite words, which readers detect as above. */
typedef struct fa__cmap_table {
    size_t slot_count;                  /* power of two >= 16; immutable */
    size_t bytes;                       /* allocation size */
    struct fa__cmap_table *retired;     /* next older retired table (writers only) */
    fa__h_a64 *ctrl;                    /* slot_count / 8 words */
    fa__h_a64 *words;                   /* slot_count * slot words */
} fa__cmap_table;

typedef struct fa__cmap_shard {
    fa__h_a64 lock;                     /* 0 free, 1 held: serialises writers and foreach */
    fa__h_a64 seq;                      /* even: stable; odd: a writer is changing the shard */
    fa__h_a64 table;                    /* (uintptr_t) current table; published with release */
    fa__h_a64 count;                    /* live entries; written under lock, read relaxed */
    size_t tombstones, growth_left;     /* writers only */
    fa__cmap_table *retired;            /* writers only */
} fa__cmap_shard;

struct fa_cmap {
    uint8_t *shard_mem;                 /* nshards shards, shard_stride bytes apart */
    size_t shard_stride, nshards, shard_mem_bytes;
    unsigned shard_bits;
    size_t key_size, value_size, kw, vw, sw; /* sizes; key/value/slot in 64-bit words */
    fa_hash_fn hash;
    fa_eq_fn eq;
    void *user;
    uint64_t seed;
    fa_allocator allocator;
    int has_allocator, path, fast8;
};

#define FA__CMAP_WORDS (FA_CMAP_MAX_ITEM / 8)

static const fa_allocator *fa__cmap_alloc(const fa_cmap *cm) { return cm->has_allocator ? &cm->allocator : NULL; }

static void fa__h_lock(fa__h_a64 *l)
{
    unsigned spins = 0;
    for (;;) {
        /* test before test-and-set: waiting threads spin on a shared (read) line */
        if (fa__h_ld(l, FA__H_RELAXED) == 0 && fa__h_xchg(l, 1, FA__H_ACQUIRE) == 0) return;
        fa__h_backoff(&spins);
    }
}
static void fa__h_unlock(fa__h_a64 *l) { fa__h_st(l, 0, FA__H_RELEASE); /* publishes the critical section */ }

static fa__cmap_shard *fa__cmap_shard_of(const fa_cmap *cm, uint64_t h)
{
    size_t s = cm->shard_bits ? (size_t)(h >> (64 - cm->shard_bits)) : 0;
    return (fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride);
}

static uint64_t fa__cmap_hash(const fa_cmap *cm, const void *key)
{
    if (cm->hash) return fa__mum(cm->hash(key, cm->key_size, cm->user) ^ cm->seed, FA__HK2);
    if (cm->fast8) return fa__hash8(fa__h_rd64(key), cm->seed);
    return fa_hash_bytes(key, cm->key_size, cm->seed);
}

/* Control byte i of a word array (bytes in memory order, whatever the endianness). */
static unsigned fa__ct_get(fa__h_a64 *ctrl, size_t i)
{
    uint64_t w = fa__h_ld(&ctrl[i >> 3], FA__H_RELAXED); /* writer-only: the lock orders it */
    uint8_t b[8];
    memcpy(b, &w, 8);
    return b[i & 7];
}
static void fa__ct_set(fa__h_a64 *ctrl, size_t i, unsigned c)
{
    uint64_t w = fa__h_ld(&ctrl[i >> 3], FA__H_RELAXED);
    uint8_t b[8];
    memcpy(b, &w, 8);
    b[i & 7] = (uint8_t)c;
    memcpy(&w, b, 8);
    fa__h_st(&ctrl[i >> 3], w, FA__H_RELEASE); /* seqlock: see the protocol above */
}

FA__H_INLINE int fa__cmap_keyeq(const fa_cmap *cm, const fa__h_a64 *slot, const uint64_t *kbuf,
                                const void *key)
{
    size_t k;
    if (cm->eq) {
        uint64_t loc[FA__CMAP_WORDS];
        for (k = 0; k < cm->kw; k++) loc[k] = fa__h_ld(&slot[k], FA__H_ACQUIRE);
        return cm->eq(loc, key, cm->key_size, cm->user) != 0; /* on a private copy */
    }
    for (k = 0; k < cm->kw; k++)
        if (fa__h_ld(&slot[k], FA__H_ACQUIRE) != kbuf[k]) return 0;
    return 1;
}

FA__H_INLINE size_t fa__cmap_probe_p(const fa_cmap *cm, const fa__cmap_table *t,
                                     const uint64_t *kbuf, const void *key, uint64_t h, int path)
{
    size_t gmask = t->slot_count / FA__GROUP - 1, g = (size_t)(h >> 7) & gmask, step = 0;
    unsigned tag = (unsigned)(h & 0x7f);
    for (;;) {
        uint64_t w0 = fa__h_ld(&t->ctrl[2 * g], FA__H_ACQUIRE);
        uint64_t w1 = fa__h_ld(&t->ctrl[2 * g + 1], FA__H_ACQUIRE);
        uint64_t mm = fa__gw_match(w0, w1, tag, path);
        while (mm) {
            size_t i = g * FA__GROUP + fa__g_idx(mm, path);
            if (fa__cmap_keyeq(cm, t->words + i * cm->sw, kbuf, key)) return i;
            mm &= mm - 1;
        }
        if (fa__gw_empty(w0, w1, path == FA__PATH_NEON ? FA__PATH_SWAR : path) || ++step > gmask)
            return FA__H_NPOS;
        g = (g + step) & gmask;
    }
}
static size_t fa__cmap_probe(const fa_cmap *cm, const fa__cmap_table *t, const uint64_t *kbuf,
                             const void *key, uint64_t h)
{
#if defined(FA__H_SSE2)
    if (cm->path == FA__PATH_SSE2) return fa__cmap_probe_p(cm, t, kbuf, key, h, FA__PATH_SSE2);
#endif
#if defined(FA__H_NEON)
    if (cm->path == FA__PATH_NEON) return fa__cmap_probe_p(cm, t, kbuf, key, h, FA__PATH_NEON);
#endif
    return fa__cmap_probe_p(cm, t, kbuf, key, h, FA__PATH_SWAR);
}

/* First EMPTY/DELETED slot on h's probe sequence (writers only). */
static size_t fa__cmap_find_free(const fa__cmap_table *t, uint64_t h)
{
    size_t gmask = t->slot_count / FA__GROUP - 1, g = (size_t)(h >> 7) & gmask, step = 0;
    for (;;) {
        uint64_t mm = fa__gw_free_swar(fa__h_le64(fa__h_ld(&t->ctrl[2 * g], FA__H_RELAXED)),
                                       fa__h_le64(fa__h_ld(&t->ctrl[2 * g + 1], FA__H_RELAXED)));
        if (mm) return g * FA__GROUP + fa__g_idx(mm, FA__PATH_SWAR);
        if (++step > gmask) return FA__H_NPOS;
        g = (g + step) & gmask;
    }
}

static fa_status fa__cmap_table_new(fa_cmap *cm, size_t slots, fa__cmap_table **out)
{
    size_t hdr = fa__h_round_up(sizeof(fa__cmap_table), 64), data, bytes = 0, i;
    uint8_t *p;
    fa__cmap_table *t;
    if (fa__mul_size(slots, cm->sw * 8, &data) || fa__add_size(data, hdr + fa__h_round_up(slots, 64), &bytes))
        return fa__fail(FA_ERR_OVERFLOW, "fa_cmap: %zu slots overflow size_t", slots);
    p = (uint8_t *)fa__alloc(fa__cmap_alloc(cm), bytes, 64);
    if (!p) return fa__fail(FA_ERR_NOMEM, "fa_cmap: cannot allocate %zu bytes", bytes);
    t = (fa__cmap_table *)(void *)p;
    t->slot_count = slots;
    t->bytes = bytes;
    t->retired = NULL;
    t->ctrl = (fa__h_a64 *)(void *)(p + hdr);
    t->words = (fa__h_a64 *)(void *)(p + hdr + fa__h_round_up(slots, 64));
    /* not yet visible to readers: relaxed; the table pointer is published with release */
    for (i = 0; i < slots / 8; i++) fa__h_st(&t->ctrl[i], FA__H_MSB, FA__H_RELAXED);
    *out = t;
    return FA_OK;
}

static void fa__cmap_copy_slot(const fa_cmap *cm, fa__cmap_table *dst, size_t j,
                               const fa__cmap_table *src, size_t i)
{
    size_t k;
    for (k = 0; k < cm->sw; k++)
        fa__h_st(&dst->words[j * cm->sw + k], fa__h_ld(&src->words[i * cm->sw + k], FA__H_RELAXED),
                 FA__H_RELEASE);
}

static uint64_t fa__cmap_slot_hash(const fa_cmap *cm, const fa__cmap_table *t, size_t i)
{
    uint64_t loc[FA__CMAP_WORDS];
    size_t k;
    for (k = 0; k < cm->kw; k++) loc[k] = fa__h_ld(&t->words[i * cm->sw + k], FA__H_RELAXED);
    return fa__cmap_hash(cm, loc);
}

/* Same algorithm as fa__map_rehash_in_place, on atomic words (the shard's seq is odd). */
static void fa__cmap_rehash_in_place(fa_cmap *cm, fa__cmap_shard *sh, fa__cmap_table *t)
{
    size_t i, k, n = t->slot_count;
    for (i = 0; i < n; i++)
        fa__ct_set(t->ctrl, i, (fa__ct_get(t->ctrl, i) & 0x80) ? FA__CT_EMPTY : FA__CT_DELETED);
    for (i = 0; i < n; i++) {
        while (fa__ct_get(t->ctrl, i) == FA__CT_DELETED) {
            uint64_t h = fa__cmap_slot_hash(cm, t, i);
            size_t j = fa__cmap_find_free(t, h);
            FLASHATTN_ASSERT(j != FA__H_NPOS);
            if (j / FA__GROUP == i / FA__GROUP) {
                fa__ct_set(t->ctrl, i, (unsigned)(h & 0x7f));
            } else if (fa__ct_get(t->ctrl, j) == FA__CT_EMPTY) {
                fa__cmap_copy_slot(cm, t, j, t, i);
                fa__ct_set(t->ctrl, j, (unsigned)(h & 0x7f));
                fa__ct_set(t->ctrl, i, FA__CT_EMPTY);
            } else {
                for (k = 0; k < cm->sw; k++) {
                    uint64_t a = fa__h_ld(&t->words[i * cm->sw + k], FA__H_RELAXED);
                    uint64_t b = fa__h_ld(&t->words[j * cm->sw + k], FA__H_RELAXED);
                    fa__h_st(&t->words[i * cm->sw + k], b, FA__H_RELEASE);
                    fa__h_st(&t->words[j * cm->sw + k], a, FA__H_RELEASE);
                }
                fa__ct_set(t->ctrl, j, (unsigned)(h & 0x7f));
            }
        }
    }
    sh->tombstones = 0;
    sh->growth_left = fa__map_max_load(n) - (size_t)fa__h_ld(&sh->count, FA__H_RELAXED);
}

static fa_status fa__cmap_make_room(fa_cmap *cm, fa__cmap_shard *sh)
{
    fa__cmap_table *t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED), *nt;
    size_t count = (size_t)fa__h_ld(&sh->count, FA__H_RELAXED), i;
    fa_status st;
    if (sh->tombstones > 0 && count <= t->slot_count / 32 * 25) {
        fa__cmap_rehash_in_place(cm, sh, t);
        return FA_OK;
    }
    if (t->slot_count > SIZE_MAX / 4) return fa__fail(FA_ERR_OVERFLOW, "fa_cmap: cannot grow");
    st = fa__cmap_table_new(cm, t->slot_count * 2, &nt);
    if (st) return st;
    for (i = 0; i < t->slot_count; i++) {
        if (!(fa__ct_get(t->ctrl, i) & 0x80)) {
            uint64_t h = fa__cmap_slot_hash(cm, t, i);
            size_t j = fa__cmap_find_free(nt, h);
            fa__cmap_copy_slot(cm, nt, j, t, i);
            fa__ct_set(nt->ctrl, j, (unsigned)(h & 0x7f));
        }
    }
    t->retired = sh->retired;
    sh->retired = t;
    fa__h_st(&sh->table, (uint64_t)(uintptr_t)nt, FA__H_RELEASE); /* publish the filled table */
    sh->tombstones = 0;
    sh->growth_left = fa__map_max_load(nt->slot_count) - count;
    return FA_OK;
}

static fa_status fa__cmap_insert_new(fa_cmap *cm, fa__cmap_shard *sh, const uint64_t *kbuf,
                                     const uint64_t *vbuf, uint64_t h)
{
    fa__cmap_table *t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED);
    size_t i = fa__cmap_find_free(t, h), k;
    unsigned c;
    if (i == FA__H_NPOS || (fa__ct_get(t->ctrl, i) == FA__CT_EMPTY && sh->growth_left == 0)) {
        fa_status st = fa__cmap_make_room(cm, sh);
        if (st) return st;
        t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED);
        i = fa__cmap_find_free(t, h);
        if (i == FA__H_NPOS) return fa__fail(FA_ERR_INTERNAL, "fa_cmap: no free slot after growth");
    }
    c = fa__ct_get(t->ctrl, i);
    if (c == FA__CT_EMPTY) sh->growth_left--;
    else sh->tombstones--;
    for (k = 0; k < cm->kw; k++) fa__h_st(&t->words[i * cm->sw + k], kbuf[k], FA__H_RELEASE);
    for (k = 0; k < cm->vw; k++) fa__h_st(&t->words[i * cm->sw + cm->kw + k], vbuf[k], FA__H_RELEASE);
    fa__ct_set(t->ctrl, i, (unsigned)(h & 0x7f));
    fa__h_st(&sh->count, fa__h_ld(&sh->count, FA__H_RELAXED) + 1, FA__H_RELAXED);
    return FA_OK;
}

static void fa__cmap_pad(uint64_t *buf, size_t words, const void *src, size_t n)
{
    if (words) buf[words - 1] = 0;
    if (src && n) memcpy(buf, src, n);
    else if (words) memset(buf, 0, words * 8);
}

enum { FA__CMAP_INSERT, FA__CMAP_ASSIGN, FA__CMAP_ERASE, FA__CMAP_UPDATE };

static fa_status fa__cmap_write(fa_cmap *cm, const void *key, const void *value, int op,
                                fa_cmap_update_fn fn, void *user, void *value_out)
{
    static const char *const names[] = {"fa_cmap_insert", "fa_cmap_insert_or_assign",
                                        "fa_cmap_erase", "fa_cmap_update"};
    uint64_t kbuf[FA__CMAP_WORDS], vbuf[FA__CMAP_WORDS], h, s;
    fa__cmap_shard *sh;
    fa__cmap_table *t;
    size_t i, k;
    fa_status st = FA_OK;
    if (!cm || !key) return fa__fail(FA_ERR_NULL, "%s: map or key is NULL", names[op]);
    fa__cmap_pad(kbuf, cm->kw, key, cm->key_size);
    h = fa__cmap_hash(cm, key);
    sh = fa__cmap_shard_of(cm, h);
    fa__h_lock(&sh->lock);
    s = fa__h_ld(&sh->seq, FA__H_RELAXED);
    fa__h_st(&sh->seq, s + 1, FA__H_RELAXED); /* ordered before the data by their release */
    t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED);
    i = fa__cmap_probe(cm, t, kbuf, key, h);
    switch (op) {
    case FA__CMAP_INSERT:
    case FA__CMAP_ASSIGN:
        fa__cmap_pad(vbuf, cm->vw, value, cm->value_size);
        if (i == FA__H_NPOS) st = fa__cmap_insert_new(cm, sh, kbuf, vbuf, h);
        else if (op == FA__CMAP_INSERT) st = FA_ERR_EXISTS;
        else
            for (k = 0; k < cm->vw; k++)
                fa__h_st(&t->words[i * cm->sw + cm->kw + k], vbuf[k], FA__H_RELEASE);
        break;
    case FA__CMAP_ERASE:
        if (i == FA__H_NPOS) {
            st = FA_ERR_NOT_FOUND;
            break;
        }
        for (k = 0; k < cm->vw; k++) vbuf[k] = fa__h_ld(&t->words[i * cm->sw + cm->kw + k], FA__H_RELAXED);
        if (value_out && cm->value_size) memcpy(value_out, vbuf, cm->value_size);
        {
            size_t g = i / FA__GROUP * 2;
            uint64_t w0 = fa__h_le64(fa__h_ld(&t->ctrl[g], FA__H_RELAXED));
            uint64_t w1 = fa__h_le64(fa__h_ld(&t->ctrl[g + 1], FA__H_RELAXED));
            if (fa__gw_empty_swar(w0, w1)) { /* same tombstone rule as fa_map */
                fa__ct_set(t->ctrl, i, FA__CT_EMPTY);
                sh->growth_left++;
            } else {
                fa__ct_set(t->ctrl, i, FA__CT_DELETED);
                sh->tombstones++;
            }
        }
        fa__h_st(&sh->count, fa__h_ld(&sh->count, FA__H_RELAXED) - 1, FA__H_RELAXED);
        break;
    default: /* FA__CMAP_UPDATE */
        if (i == FA__H_NPOS) {
            if (!value) {
                st = FA_ERR_NOT_FOUND;
                break;
            }
            fa__cmap_pad(vbuf, cm->vw, value, cm->value_size);
            st = fa__cmap_insert_new(cm, sh, kbuf, vbuf, h);
            if (st) break;
            t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED);
            i = fa__cmap_probe(cm, t, kbuf, key, h);
        }
        if (fn) {
            for (k = 0; k < cm->vw; k++) vbuf[k] = fa__h_ld(&t->words[i * cm->sw + cm->kw + k], FA__H_RELAXED);
            fn(vbuf, user);
            for (k = 0; k < cm->vw; k++) fa__h_st(&t->words[i * cm->sw + cm->kw + k], vbuf[k], FA__H_RELEASE);
        }
        break;
    }
    fa__h_st(&sh->seq, s + 2, FA__H_RELEASE); /* readers that saw s validate against s + 2 */
    fa__h_unlock(&sh->lock);
    return st;
}

FLASHATTN_DEF fa_status fa_cmap_get(fa_cmap *cm, const void *key, void *value_out)
{
    uint64_t kbuf[FA__CMAP_WORDS], vbuf[FA__CMAP_WORDS], h;
    fa__cmap_shard *sh;
    unsigned spins = 0;
    size_t i, k;
    if (!cm || !key) return fa__fail(FA_ERR_NULL, "fa_cmap_get: map or key is NULL");
    fa__cmap_pad(kbuf, cm->kw, key, cm->key_size);
    h = fa__cmap_hash(cm, key);
    sh = fa__cmap_shard_of(cm, h);
    for (;;) {
        uint64_t s1 = fa__h_ld(&sh->seq, FA__H_ACQUIRE), s2;
        const fa__cmap_table *t;
        if (s1 & 1) {
            fa__h_backoff(&spins);
            continue;
        }
        t = (const fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_ACQUIRE);
        i = fa__cmap_probe(cm, t, kbuf, key, h);
        if (i != FA__H_NPOS && value_out)
            for (k = 0; k < cm->vw; k++) vbuf[k] = fa__h_ld(&t->words[i * cm->sw + cm->kw + k], FA__H_ACQUIRE);
        s2 = fa__h_ld(&sh->seq, FA__H_RELAXED); /* kept after the data loads by their acquire */
        if (s1 == s2) break;
    }
    if (i == FA__H_NPOS) return FA_ERR_NOT_FOUND;
    if (value_out && cm->value_size) memcpy(value_out, vbuf, cm->value_size);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_cmap_insert(fa_cmap *cm, const void *key, const void *value)
{
    return fa__cmap_write(cm, key, value, FA__CMAP_INSERT, NULL, NULL, NULL);
}
FLASHATTN_DEF fa_status fa_cmap_insert_or_assign(fa_cmap *cm, const void *key, const void *value)
{
    return fa__cmap_write(cm, key, value, FA__CMAP_ASSIGN, NULL, NULL, NULL);
}
FLASHATTN_DEF fa_status fa_cmap_erase(fa_cmap *cm, const void *key, void *value_out)
{
    return fa__cmap_write(cm, key, NULL, FA__CMAP_ERASE, NULL, NULL, value_out);
}
FLASHATTN_DEF fa_status fa_cmap_update(fa_cmap *cm, const void *key, const void *init,
                                       fa_cmap_update_fn fn, void *user)
{
    return fa__cmap_write(cm, key, init, FA__CMAP_UPDATE, fn, user, NULL);
}

static unsigned fa__h_shard_bits(size_t want, size_t *n)
{
    unsigned bits = 0;
    if (want == 0) {
        want = (size_t)fa_cpu_count() * 4;
        if (want > 256) want = 256;
    }
    while (((size_t)1 << bits) < want) bits++;
    *n = (size_t)1 << bits;
    return bits;
}

static void fa__cmap_free_all(fa_cmap *cm)
{
    size_t s;
    const fa_allocator *a = fa__cmap_alloc(cm);
    if (cm->shard_mem) {
        for (s = 0; s < cm->nshards; s++) {
            fa__cmap_shard *sh = (fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride);
            fa__cmap_table *t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED), *r;
            if (t) fa__free(a, t, t->bytes);
            for (r = sh->retired; r;) {
                fa__cmap_table *nx = r->retired;
                fa__free(a, r, r->bytes);
                r = nx;
            }
        }
        fa__free(a, cm->shard_mem, cm->shard_mem_bytes);
    }
    {
        fa_allocator copy = cm->allocator;
        int has = cm->has_allocator;
        fa__free(has ? &copy : NULL, cm, sizeof *cm);
    }
}

FLASHATTN_DEF fa_status fa_cmap_create(fa_cmap **out, const fa_cmap_desc *d)
{
    fa_cmap tmp, *cm;
    size_t s, per, slots;
    fa_status st;
    if (!out || !d) return fa__fail(FA_ERR_NULL, "fa_cmap_create: out or desc is NULL");
    if (d->key_size == 0 || d->key_size > FA_CMAP_MAX_ITEM || d->value_size > FA_CMAP_MAX_ITEM)
        return fa__fail(FA_ERR_INVALID, "fa_cmap_create: key_size %zu / value_size %zu not in "
                        "1..%d / 0..%d", d->key_size, d->value_size, FA_CMAP_MAX_ITEM, FA_CMAP_MAX_ITEM);
    if (d->shards > 65536) return fa__fail(FA_ERR_INVALID, "fa_cmap_create: %zu shards (max 65536)", d->shards);
    memset(&tmp, 0, sizeof tmp);
    tmp.shard_bits = fa__h_shard_bits(d->shards, &tmp.nshards);
    per = d->capacity / tmp.nshards + (d->capacity % tmp.nshards != 0);
    slots = fa__map_slots_for(per);
    if (!slots) return fa__fail(FA_ERR_OVERFLOW, "fa_cmap_create: capacity %zu too large", d->capacity);
    tmp.key_size = d->key_size;
    tmp.value_size = d->value_size;
    tmp.kw = (d->key_size + 7) / 8;
    tmp.vw = (d->value_size + 7) / 8;
    tmp.sw = tmp.kw + tmp.vw;
    tmp.hash = d->hash;
    tmp.eq = d->eq;
    tmp.user = d->user;
    tmp.fast8 = d->key_size == 8 && !d->eq;
    tmp.path = fa__h_pick_path() & 15;
    if (d->allocator && d->allocator->alloc) {
        tmp.allocator = *d->allocator;
        tmp.has_allocator = 1;
    }
    cm = (fa_cmap *)fa__alloc(tmp.has_allocator ? &tmp.allocator : NULL, sizeof *cm, 64);
    if (!cm) return fa__fail(FA_ERR_NOMEM, "fa_cmap_create: out of memory");
    tmp.seed = d->seed ? d->seed : fa__h_random_seed(cm);
    *cm = tmp;
    cm->shard_stride = fa__h_round_up(sizeof(fa__cmap_shard), FA_CACHELINE);
    if (fa__mul_size(cm->shard_stride, cm->nshards, &cm->shard_mem_bytes)) {
        fa__cmap_free_all(cm);
        return fa__fail(FA_ERR_OVERFLOW, "fa_cmap_create: too many shards");
    }
    cm->shard_mem = (uint8_t *)fa__alloc(fa__cmap_alloc(cm), cm->shard_mem_bytes, FA_CACHELINE);
    if (!cm->shard_mem) {
        fa__cmap_free_all(cm);
        return fa__fail(FA_ERR_NOMEM, "fa_cmap_create: out of memory");
    }
    memset(cm->shard_mem, 0, cm->shard_mem_bytes);
    for (s = 0; s < cm->nshards; s++) {
        fa__cmap_shard *sh = (fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride);
        fa__cmap_table *t = NULL;
        st = fa__cmap_table_new(cm, slots, &t);
        if (st) {
            fa__cmap_free_all(cm);
            return st;
        }
        fa__h_st(&sh->table, (uint64_t)(uintptr_t)t, FA__H_RELAXED); /* published by the caller's
                                                                    hand-off of *out */
        sh->growth_left = fa__map_max_load(slots);
    }
    *out = cm;
    return FA_OK;
}

FLASHATTN_DEF void fa_cmap_destroy(fa_cmap *cm)
{
    if (cm) fa__cmap_free_all(cm);
}

FLASHATTN_DEF size_t fa_cmap_count(fa_cmap *cm)
{
    size_t s, n = 0;
    if (!cm) return 0;
    for (s = 0; s < cm->nshards; s++)
        n += (size_t)fa__h_ld(&((fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride))->count,
                              FA__H_RELAXED);
    return n;
}

FLASHATTN_DEF fa_status fa_cmap_foreach(fa_cmap *cm, fa_cmap_visit_fn fn, void *user)
{
    uint64_t kbuf[FA__CMAP_WORDS], vbuf[FA__CMAP_WORDS];
    size_t s, i, k;
    int stop = 0;
    if (!cm || !fn) return fa__fail(FA_ERR_NULL, "fa_cmap_foreach: map or fn is NULL");
    for (s = 0; s < cm->nshards && !stop; s++) {
        fa__cmap_shard *sh = (fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride);
        fa__cmap_table *t;
        fa__h_lock(&sh->lock); /* excludes writers only: readers go on */
        t = (fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED);
        for (i = 0; i < t->slot_count && !stop; i++) {
            if (fa__ct_get(t->ctrl, i) & 0x80) continue;
            for (k = 0; k < cm->kw; k++) kbuf[k] = fa__h_ld(&t->words[i * cm->sw + k], FA__H_RELAXED);
            for (k = 0; k < cm->vw; k++) vbuf[k] = fa__h_ld(&t->words[i * cm->sw + cm->kw + k], FA__H_RELAXED);
            stop = fn(kbuf, vbuf, user);
        }
        fa__h_unlock(&sh->lock);
    }
    return FA_OK;
}

FLASHATTN_DEF void fa_cmap_reclaim(fa_cmap *cm)
{
    size_t s;
    if (!cm) return;
    for (s = 0; s < cm->nshards; s++) {
        fa__cmap_shard *sh = (fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride);
        fa__cmap_table *r;
        fa__h_lock(&sh->lock);
        for (r = sh->retired; r;) {
            fa__cmap_table *nx = r->retired;
            fa__free(fa__cmap_alloc(cm), r, r->bytes);
            r = nx;
        }
        sh->retired = NULL;
        fa__h_unlock(&sh->lock);
    }
}

FLASHATTN_DEF size_t fa_cmap_memory(fa_cmap *cm)
{
    size_t s, n;
    if (!cm) return 0;
    n = sizeof *cm + cm->shard_mem_bytes;
    for (s = 0; s < cm->nshards; s++) {
        fa__cmap_shard *sh = (fa__cmap_shard *)(void *)(cm->shard_mem + s * cm->shard_stride);
        fa__cmap_table *r;
        fa__h_lock(&sh->lock);
        n += ((fa__cmap_table *)(uintptr_t)fa__h_ld(&sh->table, FA__H_RELAXED))->bytes;
        for (r = sh->retired; r; r = r->retired) n += r->bytes;
        fa__h_unlock(&sh->lock);
    }
    return n;
}

/* ---- fa_clru ----
   One fa_lru per shard behind a test-and-test-and-set spinlock; the lock and the LRU's
   metadata start a cache line of their own. Every shard's index uses the same seed, so one
   hash picks the shard (top bits) and the slot (low bits). */
typedef struct fa__clru_shard {
    fa__h_a64 lock;
    fa_lru lru;
} fa__clru_shard;

struct fa_clru {
    uint8_t *shard_mem;
    size_t shard_stride, nshards, shard_mem_bytes;
    unsigned shard_bits;
    fa_allocator allocator;
    int has_allocator;
};

static fa__clru_shard *fa__clru_shard_at(const fa_clru *c, size_t s)
{
    return (fa__clru_shard *)(void *)(c->shard_mem + s * c->shard_stride);
}
static fa__clru_shard *fa__clru_shard_of(const fa_clru *c, uint64_t h)
{
    return fa__clru_shard_at(c, c->shard_bits ? (size_t)(h >> (64 - c->shard_bits)) : 0);
}
/* Shard 0's index holds the hash parameters shared by all shards; they never change after
   create, so reading them without the lock races with nothing. */
static uint64_t fa__clru_hash(const fa_clru *c, const void *key)
{
    return fa__map_hash(&fa__clru_shard_at(c, 0)->lru.index_, key);
}

static void fa__clru_free_all(fa_clru *c)
{
    size_t s;
    if (c->shard_mem) {
        for (s = 0; s < c->nshards; s++) fa_lru_destroy(&fa__clru_shard_at(c, s)->lru);
        fa__free(c->has_allocator ? &c->allocator : NULL, c->shard_mem, c->shard_mem_bytes);
    }
    {
        fa_allocator copy = c->allocator;
        int has = c->has_allocator;
        fa__free(has ? &copy : NULL, c, sizeof *c);
    }
}

FLASHATTN_DEF fa_status fa_clru_create(fa_clru **out, const fa_lru_desc *d)
{
    fa_clru *c;
    fa_lru_desc sd;
    fa_allocator al;
    size_t s, n;
    unsigned bits;
    int has = 0;
    fa_status st;
    if (!out || !d) return fa__fail(FA_ERR_NULL, "fa_clru_create: out or desc is NULL");
    if (d->key_size == 0 || d->capacity == 0)
        return fa__fail(FA_ERR_INVALID, "fa_clru_create: key_size and capacity must be > 0");
    if (d->shards > 65536) return fa__fail(FA_ERR_INVALID, "fa_clru_create: %zu shards (max 65536)", d->shards);
    bits = fa__h_shard_bits(d->shards, &n);
    while (n > 1 && d->capacity / n < 8) { /* keep at least 8 entries per shard */
        n /= 2;
        bits--;
    }
    if (d->allocator && d->allocator->alloc) {
        al = *d->allocator;
        has = 1;
    }
    c = (fa_clru *)fa__alloc(has ? &al : NULL, sizeof *c, 64);
    if (!c) return fa__fail(FA_ERR_NOMEM, "fa_clru_create: out of memory");
    memset(c, 0, sizeof *c);
    if (has) c->allocator = al;
    c->has_allocator = has;
    c->nshards = n;
    c->shard_bits = bits;
    c->shard_stride = fa__h_round_up(sizeof(fa__clru_shard), FA_CACHELINE);
    c->shard_mem_bytes = c->shard_stride * n;
    c->shard_mem = (uint8_t *)fa__alloc(has ? &c->allocator : NULL, c->shard_mem_bytes, FA_CACHELINE);
    if (!c->shard_mem) {
        fa__clru_free_all(c);
        return fa__fail(FA_ERR_NOMEM, "fa_clru_create: out of memory");
    }
    memset(c->shard_mem, 0, c->shard_mem_bytes);
    sd = *d;
    sd.capacity = d->capacity / n + (d->capacity % n != 0);
    if (!sd.seed) sd.seed = fa__h_random_seed(c);
    for (s = 0; s < n; s++) {
        st = fa_lru_init(&fa__clru_shard_at(c, s)->lru, &sd);
        if (st) {
            fa__clru_free_all(c);
            return st;
        }
    }
    *out = c;
    return FA_OK;
}

FLASHATTN_DEF void fa_clru_destroy(fa_clru *c)
{
    if (c) fa__clru_free_all(c);
}

FLASHATTN_DEF fa_status fa_clru_get(fa_clru *c, const void *key, void *value_out)
{
    fa__clru_shard *sh;
    uint64_t h;
    void *v;
    if (!c || !key) return fa__fail(FA_ERR_NULL, "fa_clru_get: cache or key is NULL");
    h = fa__clru_hash(c, key);
    sh = fa__clru_shard_of(c, h);
    fa__h_lock(&sh->lock);
    v = fa__lru_get_h(&sh->lru, key, h, 1);
    if (v && value_out && sh->lru.value_size_) memcpy(value_out, v, sh->lru.value_size_);
    fa__h_unlock(&sh->lock);
    return v ? FA_OK : FA_ERR_NOT_FOUND;
}

FLASHATTN_DEF fa_status fa_clru_put(fa_clru *c, const void *key, const void *value)
{
    fa__clru_shard *sh;
    uint64_t h;
    fa_status st;
    if (!c || !key) return fa__fail(FA_ERR_NULL, "fa_clru_put: cache or key is NULL");
    h = fa__clru_hash(c, key);
    sh = fa__clru_shard_of(c, h);
    fa__h_lock(&sh->lock);
    st = fa__lru_put_h(&sh->lru, key, value, h, NULL);
    fa__h_unlock(&sh->lock);
    return st;
}

FLASHATTN_DEF fa_status fa_clru_erase(fa_clru *c, const void *key, void *value_out)
{
    fa__clru_shard *sh;
    uint64_t h;
    fa_status st;
    if (!c || !key) return fa__fail(FA_ERR_NULL, "fa_clru_erase: cache or key is NULL");
    h = fa__clru_hash(c, key);
    sh = fa__clru_shard_of(c, h);
    fa__h_lock(&sh->lock);
    st = fa__lru_erase_h(&sh->lru, key, h, value_out);
    fa__h_unlock(&sh->lock);
    return st;
}

FLASHATTN_DEF size_t fa_clru_count(fa_clru *c)
{
    fa_lru_stats st;
    fa_clru_get_stats(c, &st);
    return (size_t)st.count;
}

FLASHATTN_DEF void fa_clru_get_stats(fa_clru *c, fa_lru_stats *out)
{
    size_t s;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    for (s = 0; s < c->nshards; s++) {
        fa__clru_shard *sh = fa__clru_shard_at(c, s);
        fa__h_lock(&sh->lock);
        out->hits += sh->lru.hits_;
        out->misses += sh->lru.misses_;
        out->evictions += sh->lru.evictions_;
        out->count += sh->lru.count_;
        out->capacity += sh->lru.capacity_;
        fa__h_unlock(&sh->lock);
    }
}

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
