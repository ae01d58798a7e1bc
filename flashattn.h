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
   ============================================================================================
   Block-sparse attention masks. A mask describes, for every sequence b, query head h, query q
   and key k (0-based within the sequence, exactly as in the attn section), whether key k is
   visible to query q. It is stored as a layout of tiles of block_q queries x block_k keys, and
   every tile is one of
       empty    no element kept: the kernel skips the tile, it costs nothing;
       full     every element kept: no per-element test;
       partial  some kept: the element rule decides (a keep callback, a built-in rule, or
                stored bits, whichever the builder produced).
   Per query block, the key blocks of its full tiles and of its partial tiles are kept in two
   ascending lists (counts + indices, as FlexAttention's BlockMask), so the kernel finds the
   tiles of a query block in O(1). Tiles are classified exactly: "full" only if every element
   of the tile (inside seqlen_q x seqlen_k) is kept, "empty" only if none is.

   Geometry (fa_mask_desc): the mask covers seqlen_q x seqlen_k elements and may be shared or
   distinct along the batch and the heads:
       batch 1 (or 0)  one layout for every sequence; otherwise one per sequence (= attn batch)
       heads 1 (or 0)  one layout for every head; otherwise query head h uses layout
                       h / (heads_q / heads): heads = heads_q is per query head, heads =
                       heads_kv is one layout per GQA group.
   A mask applies to an attention call whose seqlen_q/seqlen_k (maxima, for varlen) it covers;
   it is combined with the descriptor's causal flag, window, sequence lengths and KV cache by
   intersection: a key is visible iff the descriptor allows it AND the mask keeps it.

   Positions in the built-in patterns are aligned bottom-right like the attn section's causal
   mask: with off = seqlen_k - seqlen_q, query q sits at key position p = q + off, and the
   "diagonal distance" of an element is d = k - p (d <= 0: the key is at or before the query).

   Callbacks. keep(user, b, h, q, k) returns nonzero to keep an element; it is evaluated when
   the mask is built (to classify tiles) and by the kernel on partial tiles only. It receives
   the MASK's coordinates: b in 0..batch-1 and h in 0..heads-1 of the mask (0 when shared),
   and must be a pure function of its arguments. score(user, s, b, h, q, k) (FlexAttention's
   score_mod) receives the attention's real batch index and query head and returns a new
   logit; the kernel applies it to EVERY visible element's logit after scaling, softcap and
   ALiBi, before the softmax. Both may be called from several threads at once.

   Masks are immutable once built (fa_mask_set_score aside), so any number of threads may use
   one mask concurrently. Every builder allocates through desc->alloc (NULL = FLASHATTN_MALLOC)
   and returns a new mask in *out, which fa_mask_destroy frees; on failure *out is left
   untouched and nothing is leaked. Builders are reentrant. Memory: two int64 offsets per
   (layout, query block) and one int32 per non-empty tile; besides, fa_mask_longformer keeps 9
   bytes per position, fa_mask_document 4 bytes per position and 32 per document, and masks
   made by fa_mask_and/fa_mask_or block_q*block_k/8 bytes per partial tile. Building costs
   O(tiles) for the built-in patterns (a few tiles on pattern edges are classified element by
   element), one callback call per element for fa_mask_from_fn, and one evaluation per element
   of the operands' partial tiles for fa_mask_and/fa_mask_or. */

typedef int (*fa_mask_keep_fn)(void *user, int64_t b, int64_t h, int64_t q, int64_t k);
typedef float (*fa_mask_score_fn)(void *user, float s, int64_t b, int64_t h, int64_t q, int64_t k);

typedef struct fa_mask_desc {
    int64_t seqlen_q;   /* queries covered, >= 1 (fa_mask_document: 0 = cu_seqlens_q[ndocs]) */
    int64_t seqlen_k;   /* keys covered, >= 1 (fa_mask_document: 0 = cu_seqlens_k[ndocs]) */
    int64_t batch;      /* layouts along the batch: 0 or 1 = shared, else the attention's batch */
    int64_t heads;      /* layouts along the heads: 0 or 1 = shared, else a divisor of heads_q */
    int64_t heads_q;    /* the attention's query heads when heads > 1; 0 = heads */
    int64_t block_q;    /* queries per tile, 1..FA_MASK_MAX_BLOCK; 0 = FA_ATTN_BLOCK_Q */
    int64_t block_k;    /* keys per tile, 1..FA_MASK_MAX_BLOCK; 0 = FA_ATTN_BLOCK_K */
    const fa_allocator *alloc; /* NULL = FLASHATTN_MALLOC/FREE; the struct is copied, its user
                                  pointer must stay valid while the mask lives */
} fa_mask_desc;

#define FA_MASK_MAX_BLOCK 4096

/* Tile states returned by fa_mask_tile. */
enum { FA_MASK_EMPTY = 0, FA_MASK_FULL = 1, FA_MASK_PARTIAL = 2 };

FLASHATTN_DEF void fa_mask_destroy(fa_mask *m);   /* NULL is a no-op */

/* Every tile full: dense attention, useful to attach a score callback alone. */
FLASHATTN_DEF fa_status fa_mask_dense(fa_mask **out, const fa_mask_desc *g);

/* From a keep callback. Every element of every tile is evaluated once to classify the tiles
   (exactly), so building costs batch*heads*seqlen_q*seqlen_k calls; the kernel calls keep
   again on partial tiles, so `user` must stay valid as long as the mask is used. */
FLASHATTN_DEF fa_status fa_mask_from_fn(fa_mask **out, const fa_mask_desc *g,
                                        fa_mask_keep_fn keep, void *user);

/* Causal, bottom-right aligned: keep iff d <= 0, i.e. k <= q + seqlen_k - seqlen_q. */
FLASHATTN_DEF fa_status fa_mask_causal(fa_mask **out, const fa_mask_desc *g);

/* Sliding window: keep iff -left <= d <= right (a negative side is unbounded) and, when
   dilation > 1, d is a multiple of dilation (dilated window, Longformer §3.1). dilation 0 or
   1 = contiguous. right = 0 gives a causal local window of left + 1 keys. */
FLASHATTN_DEF fa_status fa_mask_sliding_window(fa_mask **out, const fa_mask_desc *g,
                                               int64_t left, int64_t right, int64_t dilation);

/* Longformer (Beltagy et al. 2020): the sliding window above, plus global positions: every
   query listed in global[] sees all keys and every key listed is seen by all queries.
   Positions >= seqlen_q (for queries) or >= seqlen_k (for keys) are ignored; order and
   duplicates do not matter; nglobal may be 0 (global may then be NULL). */
FLASHATTN_DEF fa_status fa_mask_longformer(fa_mask **out, const fa_mask_desc *g, int64_t left,
                                           int64_t right, int64_t dilation,
                                           const int64_t *global, int64_t nglobal);

/* BigBird (Zaheer et al. 2020, block-sparse ITC form), decided per tile, so every tile is
   empty or full. Let diag(I) be the key block holding the diagonal position of the last query
   of query block I. Query block I keeps key block J iff
       |J - diag(I)| <= window_blocks                        (sliding window of blocks)
    or J < global_blocks or I < global_blocks                (global blocks, both ways)
    or J is one of random_blocks blocks drawn uniformly without replacement from the blocks
       not already kept (fewer if fewer remain)              (random blocks)
   With causal nonzero only blocks J <= diag(I) are considered by all three parts. The random
   draw depends only on (seed, mask b, mask h, I): the same seed gives the same layout on every
   platform; distinct layouts along batch/heads draw independently. */
FLASHATTN_DEF fa_status fa_mask_bigbird(fa_mask **out, const fa_mask_desc *g,
                                        int64_t window_blocks, int64_t global_blocks,
                                        int64_t random_blocks, int causal, uint64_t seed);

/* Sparse Transformer (Child et al. 2019, §4.2) "strided" pattern with stride l >= 1: keep iff
   |d| < l or d is a multiple of l; with causal nonzero also d <= 0. */
FLASHATTN_DEF fa_status fa_mask_strided(fa_mask **out, const fa_mask_desc *g, int64_t stride,
                                        int causal);

/* Sparse Transformer "fixed" pattern with stride l >= 1 and c summary keys (1 <= c <= l):
   keep iff floor(k/l) == floor(p/l) (same block) or k mod l >= l - c (the block's last c keys
   summarise it); with causal nonzero also d <= 0. */
FLASHATTN_DEF fa_status fa_mask_fixed(fa_mask **out, const fa_mask_desc *g, int64_t stride,
                                      int64_t summary, int causal);

/* Document mask for sequences packed into one (FlexAttention's document masking): document
   i owns queries cu_seqlens_q[i] .. cu_seqlens_q[i+1]-1 and keys cu_seqlens_k[i] ..
   cu_seqlens_k[i+1]-1 (cu_seqlens_k NULL = the same offsets). A query sees the keys of its own
   document only; with causal nonzero, within the document, aligned bottom-right as in the attn
   section. Positions outside every document see / are seen by nothing. int32 offsets as in
   fa_attn_desc; non-decreasing, >= 0, last <= seqlen. */
FLASHATTN_DEF fa_status fa_mask_document(fa_mask **out, const fa_mask_desc *g,
                                         const int32_t *cu_seqlens_q,
                                         const int32_t *cu_seqlens_k, int64_t ndocs, int causal);

/* Prefix-LM: keep iff k < prefix_len[b] (the prefix is seen bidirectionally) or d <= 0
   (causal after it). prefix_len has one entry per mask batch layout (g->batch, or 1 when
   shared), each in 0..seqlen_k. */
FLASHATTN_DEF fa_status fa_mask_prefix_lm(fa_mask **out, const fa_mask_desc *g,
                                          const int64_t *prefix_len);

/* Element-wise AND / OR of two masks with the same seqlen_q, seqlen_k, block_q and block_k.
   Along batch and heads each operand is either shared or matches the other (heads: the
   layout counts must divide one another and heads_q agree). The result's partial tiles store
   their bits (callbacks of the operands are evaluated now, once), tiles whose bits turn out
   all set or all clear are made full or empty, and the result has no score callback. The
   result is allocated through a's allocator; a and b may be destroyed afterwards. */
FLASHATTN_DEF fa_status fa_mask_and(fa_mask **out, const fa_mask *a, const fa_mask *b);
FLASHATTN_DEF fa_status fa_mask_or(fa_mask **out, const fa_mask *a, const fa_mask *b);

/* Attaches (or with fn NULL removes) a score callback. Not thread-safe against concurrent use
   of the mask. */
FLASHATTN_DEF fa_status fa_mask_set_score(fa_mask *m, fa_mask_score_fn fn, void *user);

typedef struct fa_mask_info {
    int64_t seqlen_q, seqlen_k, batch, heads, heads_q, block_q, block_k;
    int64_t blocks_q, blocks_k;   /* tiles per layout: blocks_q x blocks_k */
    int64_t tiles_full, tiles_partial; /* over all layouts */
    size_t  bytes;                /* memory held by the mask */
} fa_mask_info;
FLASHATTN_DEF fa_status fa_mask_get_info(const fa_mask *m, fa_mask_info *info);

/* Over all layouts, counting only elements inside seqlen_q x seqlen_k. Evaluates the element
   rule on partial tiles (callbacks included), so it costs as much as one pass over them. */
typedef struct fa_mask_density_info {
    double  elements;             /* kept elements / all elements, 0..1 */
    double  tiles;                /* non-empty tiles / all tiles, 0..1: the kernel's work */
    int64_t elements_total, elements_kept;
    int64_t tiles_total, tiles_full, tiles_partial;
} fa_mask_density_info;
FLASHATTN_DEF fa_status fa_mask_density(const fa_mask *m, fa_mask_density_info *info);

/* Inspection. b and h are the attention's batch index and query head (broadcast when the mask
   is shared). fa_mask_tile returns FA_MASK_EMPTY/FULL/PARTIAL, or -1 for out-of-range
   arguments; fa_mask_visible returns 1 if the element is kept, 0 if not or out of range;
   fa_mask_row gives the ascending key-block lists of one query block (pointers into the mask). */
FLASHATTN_DEF int fa_mask_tile(const fa_mask *m, int64_t b, int64_t h, int64_t qblk, int64_t kblk);
FLASHATTN_DEF int fa_mask_visible(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k);
FLASHATTN_DEF fa_status fa_mask_row(const fa_mask *m, int64_t b, int64_t h, int64_t qblk,
                                    const int32_t **full, int64_t *nfull,
                                    const int32_t **partial, int64_t *npartial);

/* Dynamic, content-aware block selection (MoBA, Lu et al. 2025; SpargeAttn, Zhang et al. 2025;
   Quest, Tang et al. 2024). Q and K are read through an attention descriptor (shape, views,
   dtypes, varlen, KV cache and paging are honoured; its mask field is ignored). Every query
   block I and key block J get a pooled score
       FA_MASK_POOL_MEAN    scale * dot(mean of I's queries, mean of J's keys)
       FA_MASK_POOL_MINMAX  scale * sum_d max(qlo*klo, qlo*khi, qhi*klo, qhi*khi)
                            over per-dimension min (lo) / max (hi) of I's queries and J's keys:
                            an upper bound on every logit of the tile (Quest's criterion)
   (scale = the descriptor's softmax scale; keys dequantised by k_scale; softcap, ALiBi and
   score callbacks are not applied). With heads < heads_q the scores of the query heads that
   share a layout are averaged. Candidates are the key blocks holding at least one key visible
   to some query of I under the descriptor's sequence lengths, causal flag and window. Then:
       forced    the sink block J = 0 (keep_sink) and the local blocks holding the diagonal
                 positions of I's queries (keep_local), when they are candidates;
       top_k     the forced blocks plus the best others by score (ties: lower J first; NaN
                 ranks last) up to top_k blocks in all (all forced blocks are kept even if
                 they alone exceed top_k); 0 = no count limit;
       threshold 0 = off; in (0, 1]: after the forced blocks, add blocks best first until the
                 kept blocks hold at least this fraction of the candidates' estimated softmax
                 mass (block J weighs keys_in_J * exp(score_J)), within the top_k limit.
   At least one of top_k and threshold must be set. Kept tiles are full, the rest empty: the
   kernel still applies causal/window inside them. The result is deterministic. Cost: Q and K
   are read once, O((seqlen_q*heads_q + seqlen_k*heads_kv) * head_dim), then
   O(candidate tiles * heads_q * head_dim) for the scores and a sort per query block. */
typedef enum fa_mask_pooling {
    FA_MASK_POOL_MEAN = 0,    /* mean-pooled Q and K (MoBA, SpargeAttn) */
    FA_MASK_POOL_MINMAX = 1   /* per-block min/max bounds (Quest) */
} fa_mask_pooling;

typedef struct fa_mask_topk_desc {
    const fa_attn_desc *attn; /* Q, K, shapes, causal/window (required) */
    int64_t heads;            /* layouts along heads, a divisor of heads_q; 0 = heads_q */
    int64_t block_q, block_k; /* 0 = FA_ATTN_BLOCK_Q / FA_ATTN_BLOCK_K */
    int64_t top_k;            /* key blocks kept per query block (forced ones count); 0 = off */
    float   threshold;        /* cumulative softmax-mass threshold in (0, 1]; 0 = off */
    fa_mask_pooling pooling;  /* 0 = FA_MASK_POOL_MEAN */
    int     keep_sink;        /* nonzero: always keep key block 0 */
    int     keep_local;       /* nonzero: always keep the diagonal key blocks */
    const fa_allocator *alloc;/* NULL = FLASHATTN_MALLOC/FREE (mask and scratch) */
} fa_mask_topk_desc;

typedef struct fa_mask_topk_stats {
    double  seconds;          /* wall time of the whole selection (pooling, scoring, choice) */
    double  flops;            /* floating-point operations of pooling and scoring (estimate) */
    int64_t tiles_candidate;  /* candidate tiles over all layouts: the dense work */
    int64_t tiles_selected;   /* tiles kept over all layouts */
} fa_mask_topk_stats;

/* Builds the selection as a new mask (batch = the attention's batch, seqlen_q/k = its
   maxima). stats may be NULL. */
FLASHATTN_DEF fa_status fa_mask_topk(fa_mask **out, const fa_mask_topk_desc *t,
                                     fa_mask_topk_stats *stats);


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

/* Workspace layout of one worker (floats): Q tile, K tile, V tile, S row, O accumulators,
   row max m and row sum l, each block 64-byte aligned. */
#define FA__ROWS FA_ATTN_BLOCK_Q
#define FA__BK FA_ATTN_BLOCK_K
static size_t fa__round64(size_t x) { return (x + 63) & ~(size_t)63; }
static size_t fa__attn_ws_bytes(int64_t dk, int64_t dv)
{
    size_t f = sizeof(float);
    return fa__round64((size_t)(FA__ROWS * dk) * f) + fa__round64((size_t)(FA__BK * dk) * f) +
           fa__round64((size_t)(FA__BK * dv) * f) + fa__round64((size_t)FA__BK * f) +
           fa__round64((size_t)(FA__ROWS * dv) * f) + 2 * fa__round64((size_t)FA__ROWS * f) +
           fa__round64((size_t)FA__ROWS);
}

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

    p->ws_bytes = fa__attn_ws_bytes(p->dk, p->dv);
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
   loaded once serves every query head of the GQA group. For each tile of FA__BK keys, each row
   runs the online softmax update (FlashAttention-2, Algorithm 1, lines 8-10):
       m' = max(m, max_j s_j);  l' = l*exp(m-m') + sum_j exp(s_j-m');  O' = O*exp(m-m') + P V
   and at the end O /= l, lse = m + log(l). Keys outside a row's visible interval are never
   touched, and key tiles outside the union of the rows' intervals are never loaded. */
typedef struct fa__attn_ws {
    float *q, *k, *v, *s, *o, *m, *l;
    unsigned char *seen;
} fa__attn_ws;

static void fa__attn_ws_carve(fa__attn_ws *w, void *base, int64_t dk, int64_t dv)
{
    unsigned char *p = (unsigned char *)base;
    size_t f = sizeof(float);
    w->q = (float *)p; p += fa__round64((size_t)(FA__ROWS * dk) * f);
    w->k = (float *)p; p += fa__round64((size_t)(FA__BK * dk) * f);
    w->v = (float *)p; p += fa__round64((size_t)(FA__BK * dv) * f);
    w->s = (float *)p; p += fa__round64((size_t)FA__BK * f);
    w->o = (float *)p; p += fa__round64((size_t)(FA__ROWS * dv) * f);
    w->m = (float *)p; p += fa__round64((size_t)FA__ROWS * f);
    w->l = (float *)p; p += fa__round64((size_t)FA__ROWS * f);
    w->seen = p;
}

static float fa__dot_f32(const float *a, const float *b, int64_t n)
{
    /* eight partial sums: shorter dependency chains and rounding error that grows with n/8
       rather than n; the compiler may map them onto one vector register */
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    int k;
    for (; i + 8 <= n; i += 8)
        for (k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    for (k = 0; i < n; i++, k++) acc[k] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

typedef struct fa__unit {
    int64_t b, hk, h0, nh, i0, nq; /* sequence, kv head, first q head and count, queries */
} fa__unit;

static void fa__attn_unit(const fa__attn_plan *p, const fa__unit *u, const fa__attn_ws *w)
{
    const fa_attn_desc *d = p->d;
    fa__seq s;
    int64_t nrows = u->nh * u->nq, r, j0, kmin, kmax, tmp;
    const int64_t dk = p->dk, dv = p->dv;
    float kmul = fa__kv_scale(d->k_scale, d->k_head_scale, u->hk);
    float vmul = fa__kv_scale(d->v_scale, d->v_head_scale, u->hk);
    fa__attn_seq(p, u->b, &s);

    /* rows are query-major: row r = (query u->i0 + r / nh, head u->h0 + r % nh) */
    for (r = 0; r < nrows; r++) {
        int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh;
        const void *src = fa__elem_ptr(d->q, d->q_type, s.q_base + (s.q_tok0 + i) * p->qs.seq + h * p->qs.head);
        fa__load_row(w->q + r * dk, src, d->q_type, dk, 1.0f);
        memset(w->o + r * dv, 0, (size_t)dv * sizeof(float));
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
        w->seen[r] = 0;
    }
    /* the rows' intervals are monotone in the query index: the union is [lo(first), hi(last)) */
    fa__row_range(p, &s, u->i0, &kmin, &tmp);
    fa__row_range(p, &s, u->i0 + u->nq - 1, &tmp, &kmax);

    for (j0 = kmin; j0 < kmax; j0 += FA__BK) {
        int64_t j1 = j0 + FA__BK < kmax ? j0 + FA__BK : kmax, j;
        for (j = j0; j < j1; j++) {
            int64_t ko, vo;
            fa__kv_offsets(p, &s, u->b, j, u->hk, &ko, &vo);
            fa__load_row(w->k + (j - j0) * dk, fa__elem_ptr(d->k, d->k_type, ko), d->k_type, dk, kmul);
            fa__load_row(w->v + (j - j0) * dv, fa__elem_ptr(d->v, d->v_type, vo), d->v_type, dv, vmul);
        }
        for (r = 0; r < nrows; r++) {
            int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh, lo, hi, c, c0, c1;
            float mx, mnew, corr, sum = 0.0f, *o = w->o + r * dv, slope = 0.0f;
            fa__row_range(p, &s, i, &lo, &hi);
            c0 = (lo > j0 ? lo : j0) - j0;
            c1 = (hi < j1 ? hi : j1) - j0;
            if (c0 >= c1) continue;
            if (d->alibi_slopes) slope = d->alibi_slopes[u->b * d->alibi_batch_stride + h];
            mx = w->m[r];
            for (c = c0; c < c1; c++) {
                float sc = p->scale * fa__dot_f32(w->q + r * dk, w->k + c * dk, dk);
                if (p->softcap > 0.0f) sc = p->softcap * tanhf(sc / p->softcap);
                if (slope != 0.0f) {
                    int64_t dist = i + s.off - (j0 + c);
                    sc -= slope * (float)(dist < 0 ? -dist : dist);
                }
                w->s[c] = sc;
                if (sc > mx || sc != sc) mx = sc; /* NaN-propagating max: a NaN logit poisons the row */
            }
            mnew = mx;
            corr = expf(w->m[r] - mnew); /* 0 on the first visible tile (m = -inf) */
            if (w->seen[r] && corr != 1.0f)
                for (c = 0; c < dv; c++) o[c] *= corr;
            for (c = c0; c < c1; c++) {
                float pr = expf(w->s[c] - mnew);
                const float *vr = w->v + c * dv;
                int64_t e;
                sum += pr;
                for (e = 0; e < dv; e++) o[e] += pr * vr[e];
            }
            w->l[r] = (w->seen[r] ? w->l[r] * corr : 0.0f) + sum;
            w->m[r] = mnew;
            w->seen[r] = 1;
        }
    }

    for (r = 0; r < nrows; r++) {
        int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh, e;
        float *o = w->o + r * dv, lse;
        if (w->seen[r]) {
            float inv = 1.0f / w->l[r];
            for (e = 0; e < dv; e++) o[e] *= inv;
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
    int64_t b, hk, hc, i0, heads_per_unit, q_per_unit;
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    ws = d->workspace;
    if (!ws) {
        ws = fa_aligned_alloc(p.ws_bytes, 64);
        if (!ws) return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of attention workspace", p.ws_bytes);
    }
    fa__attn_ws_carve(&w, ws, p.dk, p.dv);
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
                    fa__attn_unit(&p, &u, &w);
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
   ============================================================================================
   Layout. Rows are (layout b, layout h, query block I), row = (b*heads + h)*blocks_q + I.
   full_idx[full_off[row] .. full_off[row+1]) are the key blocks of the row's full tiles and
   part_idx[part_off[row] .. part_off[row+1]) those of its partial tiles, both ascending. The
   element rule of partial tiles is one of: the user's keep callback, a built-in rule (a few
   parameters, evaluated in O(1)), or stored bits (one bit per element of each partial tile,
   in part_idx order, bit (q - I*block_q)*block_k + (k - J*block_k)).

   Interface used by the attention kernel (declare these prototypes before use; b and h are
   the attention's batch index and query head, broadcast when the mask is shared):
     static int64_t fa__mask_block_q(const fa_mask *m);     queries per tile
     static int64_t fa__mask_block_k(const fa_mask *m);     keys per tile
     static void fa__mask_blocks(const fa_mask *m, int64_t b, int64_t h, int64_t qblk,
                                 const int32_t **full, int64_t *nfull,
                                 const int32_t **partial, int64_t *npartial);
         O(1): the ascending key blocks of query block qblk's full tiles (keep every element,
         no test) and partial tiles (test each element); other blocks are empty (skip).
     static int fa__mask_keep(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k);
         element truth inside a PARTIAL tile: O(1) for callback and built-in rules, a binary
         search of the row's partial list for stored bits. (It is also correct on other tiles.)
     static int fa__mask_keep_partial(const fa_mask *m, int64_t b, int64_t h, int64_t q,
                                      int64_t k, int64_t pos);
         the same in O(1) when the caller knows pos, the index of the tile in the partial list
         fa__mask_blocks returned for q's block.
     static int fa__mask_visible(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k);
         the dense truth anywhere: empty tile 0, full 1, partial fa__mask_keep; 0 outside the
         mask (for the reference).
     static int fa__mask_same_layout(const fa_mask *m, int64_t h0, int64_t h1);
         nonzero when query heads h0 and h1 use the same layout, so one block list (and one
         element rule) serves both: always for shared masks, within a GQA group for masks
         with heads = heads_kv, never across heads of a per-query-head mask.
     static int fa__mask_has_score(const fa_mask *m);
     static float fa__mask_score(const fa_mask *m, float s, int64_t b, int64_t h, int64_t q,
                                 int64_t k);
         the score callback, to be applied to EVERY visible element's logit after scaling,
         softcap and ALiBi (only the keep rule is restricted to partial tiles).
     static fa_status fa__mask_check(const fa_mask *m, int64_t batch, int64_t heads_q,
                                     int64_t seqlen_q_max, int64_t seqlen_k_max);
         validation for fa_attn_forward: the mask must cover the problem or broadcast. */

#ifdef __cplusplus
}
#endif
#include <time.h>
#ifdef __cplusplus
extern "C" {
#endif

#define FA__MASK_MAGIC 0x6d61736bu /* "mask": catches use of an uninitialised handle */

enum { FA__MK_TILES, FA__MK_USER, FA__MK_RULE, FA__MK_BITS };   /* element rule kinds */
enum { FA__R_BAND, FA__R_LONGFORMER, FA__R_STRIDED, FA__R_FIXED, FA__R_DOC, FA__R_PREFIX };
enum { FA__T_EMPTY = FA_MASK_EMPTY, FA__T_FULL = FA_MASK_FULL, FA__T_PARTIAL = FA_MASK_PARTIAL,
       FA__T_UNKNOWN = 3 };

/* Parameters of a built-in rule, all in diagonal-distance terms d = k - (q + off). */
typedef struct fa__mask_rule {
    int kind, causal;
    int64_t off;              /* seqlen_k - seqlen_q */
    int64_t lo, hi;           /* band: lo <= d <= hi (sentinels beyond any d when unbounded) */
    int64_t dil;              /* band dilation, >= 1 */
    int64_t stride, summary;  /* strided / fixed */
    int64_t ndocs;
    const unsigned char *gq, *gk;        /* Longformer: 1 = global query / key */
    const int64_t *cq, *ck;              /* prefix counts of gq / gk ([n+1]) */
    const int32_t *doc_q, *doc_k;        /* document of each position, -1 = none */
    const int64_t *dq0, *dk0, *dqn, *dkn;/* per document: first query/key, counts */
    const int64_t *prefix;               /* prefix-LM length per layout batch */
} fa__mask_rule;

struct fa_mask {
    uint32_t magic;
    int kind;
    int64_t batch, heads, heads_q, group;  /* layouts; query head h -> layout h / group */
    int64_t sq, sk, bq, bk, nqb, nkb, rows;
    int64_t *full_off, *part_off;          /* [rows + 1] */
    int32_t *full_idx, *part_idx;
    uint64_t *bits;                        /* FA__MK_BITS: tile_words per partial tile */
    int64_t tile_words;
    size_t full_cap, part_cap, bits_cap;   /* elements allocated */
    size_t nfull, npart, nbits;            /* elements used (while building: running) */
    fa_mask_keep_fn keep;
    void *keep_user;
    fa_mask_score_fn score;
    void *score_user;
    fa__mask_rule rule;
    void *blob;                            /* the rule's arrays, one allocation */
    size_t blob_bytes;
    fa_allocator alloc;
    int has_alloc;
};

static const fa_allocator *fa__mask_al(const fa_mask *m) { return m->has_alloc ? &m->alloc : NULL; }

static int64_t fa__floordiv(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
static int64_t fa__mod(int64_t a, int64_t b) { int64_t r = a % b; return r < 0 ? r + b : r; }
static int64_t fa__min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t fa__max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- coordinates ---- */
static int64_t fa__mask_bm(const fa_mask *m, int64_t b) { return m->batch == 1 ? 0 : b; }
static int64_t fa__mask_hm(const fa_mask *m, int64_t h) { return m->heads == 1 ? 0 : h / m->group; }
static int64_t fa__mask_rowid(const fa_mask *m, int64_t bm, int64_t hm, int64_t qblk)
{
    return (bm * m->heads + hm) * m->nqb + qblk;
}

/* ---- element rules ---- */
static int fa__band_keep(const fa__mask_rule *r, int64_t d)
{
    return d >= r->lo && d <= r->hi && (r->dil <= 1 || fa__mod(d, r->dil) == 0);
}

static int fa__rule_keep(const fa__mask_rule *r, int64_t bm, int64_t q, int64_t k)
{
    int64_t p = q + r->off, d = k - p;
    switch (r->kind) {
    case FA__R_BAND: return fa__band_keep(r, d);
    case FA__R_LONGFORMER: return r->gq[q] || r->gk[k] || fa__band_keep(r, d);
    case FA__R_STRIDED: {
        int64_t a = d < 0 ? -d : d;
        if (r->causal && d > 0) return 0;
        return a < r->stride || a % r->stride == 0;
    }
    case FA__R_FIXED:
        if (r->causal && d > 0) return 0;
        return k / r->stride == fa__floordiv(p, r->stride) || k % r->stride >= r->stride - r->summary;
    case FA__R_DOC: {
        int32_t dq = r->doc_q[q];
        if (dq < 0 || dq != r->doc_k[k]) return 0;
        return !r->causal || (k - r->dk0[dq]) <= (q - r->dq0[dq]) + (r->dkn[dq] - r->dqn[dq]);
    }
    case FA__R_PREFIX: return k < r->prefix[bm] || d <= 0;
    default: return 0;
    }
}

/* The element rule in mask coordinates (bm, hm); pos = index of the tile in its row's partial
   list (only read for stored bits). */
static int fa__mask_rule_at(const fa_mask *m, int64_t bm, int64_t hm, int64_t row, int64_t pos,
                            int64_t q, int64_t k)
{
    switch (m->kind) {
    case FA__MK_USER: return m->keep(m->keep_user, bm, hm, q, k) != 0;
    case FA__MK_RULE: return fa__rule_keep(&m->rule, bm, q, k);
    case FA__MK_BITS: {
        int64_t bit = (q % m->bq) * m->bk + (k % m->bk);
        const uint64_t *t = m->bits + (m->part_off[row] + pos) * m->tile_words;
        return (int)((t[bit >> 6] >> (bit & 63)) & 1u);
    }
    default: return 1; /* FA__MK_TILES has no partial tiles */
    }
}

/* Index of x in the ascending list a[0..n), or -1. */
static int64_t fa__find_i32(const int32_t *a, int64_t n, int64_t x)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return (lo < n && a[lo] == x) ? lo : -1;
}

/* State of tile (row, kblk) and, when partial, its position in the partial list. */
static int fa__mask_tile_state(const fa_mask *m, int64_t row, int64_t kblk, int64_t *pos)
{
    int64_t f0 = m->full_off[row], p0 = m->part_off[row], i;
    if (fa__find_i32(m->full_idx + f0, m->full_off[row + 1] - f0, kblk) >= 0) return FA__T_FULL;
    i = fa__find_i32(m->part_idx + p0, m->part_off[row + 1] - p0, kblk);
    if (i < 0) return FA__T_EMPTY;
    if (pos) *pos = i;
    return FA__T_PARTIAL;
}

/* ---- interface used by the attention kernel ---- */
static FA__UNUSED int64_t fa__mask_block_q(const fa_mask *m) { return m->bq; }
static FA__UNUSED int64_t fa__mask_block_k(const fa_mask *m) { return m->bk; }

static FA__UNUSED void fa__mask_blocks(const fa_mask *m, int64_t b, int64_t h, int64_t qblk,
                                       const int32_t **full, int64_t *nfull,
                                       const int32_t **partial, int64_t *npartial)
{
    int64_t row = fa__mask_rowid(m, fa__mask_bm(m, b), fa__mask_hm(m, h), qblk);
    *full = m->full_idx + m->full_off[row];
    *nfull = m->full_off[row + 1] - m->full_off[row];
    *partial = m->part_idx + m->part_off[row];
    *npartial = m->part_off[row + 1] - m->part_off[row];
}

static FA__UNUSED int fa__mask_keep_partial(const fa_mask *m, int64_t b, int64_t h, int64_t q,
                                            int64_t k, int64_t pos)
{
    int64_t bm = fa__mask_bm(m, b), hm = fa__mask_hm(m, h);
    return fa__mask_rule_at(m, bm, hm, fa__mask_rowid(m, bm, hm, q / m->bq), pos, q, k);
}

static FA__UNUSED int fa__mask_keep(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k)
{
    int64_t bm = fa__mask_bm(m, b), hm = fa__mask_hm(m, h), row, pos = 0;
    if (m->kind == FA__MK_USER || m->kind == FA__MK_RULE) /* exact everywhere: no lookup */
        return fa__mask_rule_at(m, bm, hm, 0, 0, q, k);
    row = fa__mask_rowid(m, bm, hm, q / m->bq);
    switch (fa__mask_tile_state(m, row, k / m->bk, &pos)) {
    case FA__T_FULL: return 1;
    case FA__T_PARTIAL: return fa__mask_rule_at(m, bm, hm, row, pos, q, k);
    default: return 0;
    }
}

static FA__UNUSED int fa__mask_visible(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k)
{
    int64_t bm = fa__mask_bm(m, b), hm = fa__mask_hm(m, h), row, pos = 0;
    if (q < 0 || k < 0 || q >= m->sq || k >= m->sk) return 0;
    row = fa__mask_rowid(m, bm, hm, q / m->bq);
    switch (fa__mask_tile_state(m, row, k / m->bk, &pos)) {
    case FA__T_FULL: return 1;
    case FA__T_PARTIAL: return fa__mask_rule_at(m, bm, hm, row, pos, q, k);
    default: return 0;
    }
}

static FA__UNUSED int fa__mask_same_layout(const fa_mask *m, int64_t h0, int64_t h1)
{
    return fa__mask_hm(m, h0) == fa__mask_hm(m, h1);
}

static FA__UNUSED int fa__mask_has_score(const fa_mask *m) { return m->score != NULL; }

static FA__UNUSED float fa__mask_score(const fa_mask *m, float s, int64_t b, int64_t h, int64_t q,
                                       int64_t k)
{
    return m->score ? m->score(m->score_user, s, b, h, q, k) : s;
}

static FA__UNUSED fa_status fa__mask_check(const fa_mask *m, int64_t batch, int64_t heads_q,
                                           int64_t seqlen_q_max, int64_t seqlen_k_max)
{
    if (!m) return fa__fail(FA_ERR_NULL, "mask is NULL");
    if (m->magic != FA__MASK_MAGIC) return fa__fail(FA_ERR_INVALID, "mask is not a built fa_mask (or was destroyed)");
    if (m->batch != 1 && m->batch != batch)
        return fa__fail(FA_ERR_SHAPE, "mask has %lld batch layouts; the attention has batch %lld (need 1 or equal)",
                        (long long)m->batch, (long long)batch);
    if (m->heads != 1 && m->heads_q != heads_q)
        return fa__fail(FA_ERR_SHAPE, "mask was built for heads_q %lld; the attention has heads_q %lld",
                        (long long)m->heads_q, (long long)heads_q);
    if (seqlen_q_max > m->sq)
        return fa__fail(FA_ERR_SHAPE, "mask covers %lld queries, fewer than seqlen_q %lld",
                        (long long)m->sq, (long long)seqlen_q_max);
    if (seqlen_k_max > m->sk)
        return fa__fail(FA_ERR_SHAPE, "mask covers %lld keys, fewer than seqlen_k %lld",
                        (long long)m->sk, (long long)seqlen_k_max);
    return FA_OK;
}

/* ---- construction ----
   A builder makes an empty mask (fa__mask_new), then emits its rows in order, each as a
   sequence of (key block, state[, bits]) in ascending key-block order (fa__mask_emit) closed
   by fa__mask_end_row. The index arrays grow geometrically through the mask's allocator. */
static void fa__mask_free_all(fa_mask *m)
{
    const fa_allocator *a = fa__mask_al(m);
    fa_allocator copy = m->alloc;
    int has = m->has_alloc;
    size_t offs = (size_t)(m->rows + 1) * sizeof(int64_t);
    fa__free(a, m->full_off, offs);
    fa__free(a, m->part_off, offs);
    fa__free(a, m->full_idx, m->full_cap * sizeof(int32_t));
    fa__free(a, m->part_idx, m->part_cap * sizeof(int32_t));
    fa__free(a, m->bits, m->bits_cap * sizeof(uint64_t));
    fa__free(a, m->blob, m->blob_bytes);
    m->magic = 0;
    fa__free(has ? &copy : NULL, m, sizeof *m);
}

FLASHATTN_DEF void fa_mask_destroy(fa_mask *m)
{
    if (!m) return;
    fa__mask_free_all(m);
}

static fa_status fa__mask_geometry(const fa_mask_desc *g, int allow_zero_len)
{
    int64_t bq, bk;
    if (!g) return fa__fail(FA_ERR_NULL, "mask desc is NULL");
    if (g->seqlen_q < (allow_zero_len ? 0 : 1))
        return fa__fail(FA_ERR_INVALID, "mask seqlen_q (%lld) must be >= 1", (long long)g->seqlen_q);
    if (g->seqlen_k < (allow_zero_len ? 0 : 1))
        return fa__fail(FA_ERR_INVALID, "mask seqlen_k (%lld) must be >= 1", (long long)g->seqlen_k);
    if (g->batch < 0) return fa__fail(FA_ERR_INVALID, "mask batch (%lld) must be >= 0", (long long)g->batch);
    if (g->heads < 0) return fa__fail(FA_ERR_INVALID, "mask heads (%lld) must be >= 0", (long long)g->heads);
    if (g->heads_q < 0) return fa__fail(FA_ERR_INVALID, "mask heads_q (%lld) must be >= 0", (long long)g->heads_q);
    if (g->heads > 1 && g->heads_q && g->heads_q % g->heads != 0)
        return fa__fail(FA_ERR_SHAPE, "mask heads (%lld) does not divide heads_q (%lld)",
                        (long long)g->heads, (long long)g->heads_q);
    bq = g->block_q ? g->block_q : FA_ATTN_BLOCK_Q;
    bk = g->block_k ? g->block_k : FA_ATTN_BLOCK_K;
    if (bq < 1 || bq > FA_MASK_MAX_BLOCK || bk < 1 || bk > FA_MASK_MAX_BLOCK)
        return fa__fail(FA_ERR_INVALID, "mask block sizes (%lld x %lld) must be in 1..%d",
                        (long long)g->block_q, (long long)g->block_k, FA_MASK_MAX_BLOCK);
    return FA_OK;
}

/* Allocates a mask of geometry g with empty lists. */
static fa_status fa__mask_new(const fa_mask_desc *g, int kind, fa_mask **out)
{
    fa_mask *m;
    const fa_allocator *a = g->alloc;
    int64_t batch = g->batch > 1 ? g->batch : 1, heads = g->heads > 1 ? g->heads : 1;
    int64_t bq = g->block_q ? g->block_q : FA_ATTN_BLOCK_Q, bk = g->block_k ? g->block_k : FA_ATTN_BLOCK_K;
    int64_t nqb = g->seqlen_q > 0 ? (g->seqlen_q - 1) / bq + 1 : 0;
    int64_t nkb = g->seqlen_k > 0 ? (g->seqlen_k - 1) / bk + 1 : 0;
    int64_t rows, t;
    size_t offs;
    if (nkb > INT32_MAX) return fa__fail(FA_ERR_OVERFLOW, "mask has %lld key blocks, more than int32 indices hold", (long long)nkb);
    if (fa__mul_i64(batch, heads, &rows) || fa__mul_i64(rows, nqb, &rows) || fa__add_i64(rows, 1, &t) ||
        (uint64_t)t > (uint64_t)(SIZE_MAX / sizeof(int64_t)))
        return fa__fail(FA_ERR_OVERFLOW, "mask rows (batch x heads x query blocks) overflow");
    offs = (size_t)t * sizeof(int64_t);
    m = (fa_mask *)fa__alloc(a, sizeof *m, 64);
    if (!m) return fa__fail(FA_ERR_NOMEM, "cannot allocate a mask");
    memset(m, 0, sizeof *m);
    if (a) { m->alloc = *a; m->has_alloc = 1; }
    m->kind = kind;
    m->batch = batch;
    m->heads = heads;
    m->heads_q = heads > 1 ? (g->heads_q ? g->heads_q : heads) : (g->heads_q ? g->heads_q : 1);
    m->group = m->heads_q / heads;
    m->sq = g->seqlen_q;
    m->sk = g->seqlen_k;
    m->bq = bq;
    m->bk = bk;
    m->nqb = nqb;
    m->nkb = nkb;
    m->rows = rows;
    m->tile_words = (bq * bk + 63) / 64;
    m->full_off = (int64_t *)fa__alloc(a, offs, 64);
    m->part_off = (int64_t *)fa__alloc(a, offs, 64);
    if (!m->full_off || !m->part_off) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of mask offsets", 2 * offs);
    }
    m->full_off[0] = m->part_off[0] = 0;
    *out = m;
    return FA_OK;
}

/* Grows *p (cap elements of esz bytes) to hold at least need elements. */
static int fa__mask_grow(const fa_allocator *a, void **p, size_t *cap, size_t need, size_t esz)
{
    size_t ncap = *cap ? *cap : 64, bytes;
    void *np;
    if (need <= *cap) return 0;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return 1;
        ncap *= 2;
    }
    if (fa__mul_size(ncap, esz, &bytes)) return 1;
    np = fa__alloc(a, bytes, 64);
    if (!np) return 1;
    if (*p) memcpy(np, *p, *cap * esz);
    fa__free(a, *p, *cap * esz);
    *p = np;
    *cap = ncap;
    return 0;
}

static fa_status fa__mask_emit(fa_mask *m, int64_t kblk, int state, const uint64_t *bits)
{
    const fa_allocator *a = fa__mask_al(m);
    if (state == FA__T_FULL) {
        if (fa__mask_grow(a, (void **)&m->full_idx, &m->full_cap, m->nfull + 1, sizeof(int32_t)))
            return fa__fail(FA_ERR_NOMEM, "cannot grow the mask's full-tile list");
        m->full_idx[m->nfull++] = (int32_t)kblk;
    } else if (state == FA__T_PARTIAL) {
        if (fa__mask_grow(a, (void **)&m->part_idx, &m->part_cap, m->npart + 1, sizeof(int32_t)))
            return fa__fail(FA_ERR_NOMEM, "cannot grow the mask's partial-tile list");
        if (bits) {
            if (fa__mask_grow(a, (void **)&m->bits, &m->bits_cap, m->nbits + (size_t)m->tile_words, sizeof(uint64_t)))
                return fa__fail(FA_ERR_NOMEM, "cannot grow the mask's tile bits");
            memcpy(m->bits + m->nbits, bits, (size_t)m->tile_words * sizeof(uint64_t));
            m->nbits += (size_t)m->tile_words;
        }
        m->part_idx[m->npart++] = (int32_t)kblk;
    }
    return FA_OK;
}

static void fa__mask_end_row(fa_mask *m, int64_t row)
{
    m->full_off[row + 1] = (int64_t)m->nfull;
    m->part_off[row + 1] = (int64_t)m->npart;
}

/* Finishes a built mask: an empty mask still gets valid (non-NULL) index pointers. */
static fa_status fa__mask_finish(fa_mask *m, fa_mask **out)
{
    const fa_allocator *a = fa__mask_al(m);
    if (fa__mask_grow(a, (void **)&m->full_idx, &m->full_cap, 1, sizeof(int32_t)) ||
        fa__mask_grow(a, (void **)&m->part_idx, &m->part_cap, 1, sizeof(int32_t))) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate mask lists");
    }
    if (m->kind != FA__MK_RULE && m->blob) { /* builder scratch, not part of the mask */
        fa__free(a, m->blob, m->blob_bytes);
        m->blob = NULL;
        m->blob_bytes = 0;
    }
    m->magic = FA__MASK_MAGIC;
    *out = m;
    return FA_OK;
}

/* Clipped element range of tile (qblk, kblk). */
static void fa__mask_tile_range(const fa_mask *m, int64_t qblk, int64_t kblk, int64_t *q0,
                                int64_t *q1, int64_t *k0, int64_t *k1)
{
    *q0 = qblk * m->bq;
    *q1 = fa__min64(m->sq, *q0 + m->bq);
    *k0 = kblk * m->bk;
    *k1 = fa__min64(m->sk, *k0 + m->bk);
}

/* Exact classification by evaluating the element rule on every element of the tile. */
static int fa__mask_classify_brute(const fa_mask *m, int64_t bm, int64_t hm, int64_t q0,
                                   int64_t q1, int64_t k0, int64_t k1)
{
    int any = 0, all = 1;
    int64_t q, k;
    if (m->kind == FA__MK_USER) { /* the same loop, calling the user's function directly */
        for (q = q0; q < q1; q++)
            for (k = k0; k < k1; k++) {
                if (m->keep(m->keep_user, bm, hm, q, k)) any = 1;
                else all = 0;
                if (any && !all) return FA__T_PARTIAL;
            }
        return all ? FA__T_FULL : FA__T_EMPTY;
    }
    for (q = q0; q < q1; q++)
        for (k = k0; k < k1; k++) {
            if (fa__mask_rule_at(m, bm, hm, 0, 0, q, k)) any = 1;
            else all = 0;
            if (any && !all) return FA__T_PARTIAL;
        }
    return all ? FA__T_FULL : FA__T_EMPTY;
}

/* ---- analytic tile classification of the built-in rules ----
   Over a tile q in [q0,q1), k in [k0,k1) the diagonal distance d = k - q - off takes every
   integer value of [k0-(q1-1)-off, (k1-1)-q0-off], so rules that depend on d alone are
   classified from that range. */
static int fa__band_classify(const fa__mask_rule *r, int64_t dmin, int64_t dmax)
{
    int64_t a, c, first;
    if (dmax < r->lo || dmin > r->hi) return FA__T_EMPTY;
    if (r->dil <= 1) return (dmin >= r->lo && dmax <= r->hi) ? FA__T_FULL : FA__T_PARTIAL;
    a = fa__max64(dmin, r->lo);
    c = fa__min64(dmax, r->hi);
    first = -fa__floordiv(-a, r->dil) * r->dil; /* smallest multiple of dil >= a */
    if (first > c) return FA__T_EMPTY;
    return dmin == dmax ? FA__T_FULL : FA__T_PARTIAL; /* consecutive d cannot all be multiples */
}

static int fa__rule_classify(const fa_mask *m, int64_t bm, int64_t q0, int64_t q1, int64_t k0,
                             int64_t k1)
{
    const fa__mask_rule *r = &m->rule;
    int64_t dmin = k0 - (q1 - 1) - r->off, dmax = (k1 - 1) - q0 - r->off;
    switch (r->kind) {
    case FA__R_BAND: return fa__band_classify(r, dmin, dmax);
    case FA__R_LONGFORMER: {
        int cb = fa__band_classify(r, dmin, dmax);
        int64_t ngq = r->cq[q1] - r->cq[q0], ngk = r->ck[k1] - r->ck[k0];
        if (cb == FA__T_FULL || ngq == q1 - q0 || ngk == k1 - k0) return FA__T_FULL;
        if (ngq == 0 && ngk == 0) return cb;
        /* some kept (a global row/column), and a non-global element exists: */
        return cb == FA__T_EMPTY ? FA__T_PARTIAL : FA__T_UNKNOWN;
    }
    case FA__R_STRIDED: {
        int any = 0, all = 1;
        int64_t d;
        if (r->causal && dmin > 0) return FA__T_EMPTY;
        for (d = dmin; d <= dmax; d++) {
            int64_t a = d < 0 ? -d : d;
            int keep = !(r->causal && d > 0) && (a < r->stride || a % r->stride == 0);
            if (keep) any = 1;
            else all = 0;
            if (any && !all) return FA__T_PARTIAL;
        }
        return all ? FA__T_FULL : FA__T_EMPTY;
    }
    case FA__R_FIXED: {
        int64_t l = r->stride, c = r->summary, nsum, w = k1 - k0;
        int64_t pb0 = fa__floordiv(q0 + r->off, l), pb1 = fa__floordiv(q1 - 1 + r->off, l);
        int cc = r->causal ? (dmin > 0 ? FA__T_EMPTY : dmax <= 0 ? FA__T_FULL : FA__T_PARTIAL) : FA__T_FULL;
        if (cc == FA__T_EMPTY) return FA__T_EMPTY;
        /* summary keys in [k0, k1): per whole block c, plus the tail of the last one */
        nsum = ((k1 / l) * c + fa__max64(0, k1 % l - (l - c))) - ((k0 / l) * c + fa__max64(0, k0 % l - (l - c)));
        if (nsum == w && cc == FA__T_FULL) return FA__T_FULL;
        if (pb1 < k0 / l || pb0 > (k1 - 1) / l) { /* no same-block element */
            if (nsum == 0) return FA__T_EMPTY;
            if (cc == FA__T_FULL) return FA__T_PARTIAL; /* a non-summary column is dropped */
        }
        return FA__T_UNKNOWN;
    }
    case FA__R_DOC: {
        int64_t qe = r->dq0[0], qend, ke = r->dk0[0], kend;
        int32_t a0, a1, b0, b1;
        qend = r->dq0[r->ndocs - 1] + r->dqn[r->ndocs - 1];
        kend = r->dk0[r->ndocs - 1] + r->dkn[r->ndocs - 1];
        if (q1 <= qe || q0 >= qend || k1 <= ke || k0 >= kend) return FA__T_EMPTY;
        if (q0 < qe || q1 > qend || k0 < ke || k1 > kend) return FA__T_UNKNOWN;
        a0 = r->doc_q[q0];
        a1 = r->doc_q[q1 - 1];
        b0 = r->doc_k[k0];
        b1 = r->doc_k[k1 - 1];
        if (a1 < b0 || b1 < a0) return FA__T_EMPTY; /* ids are non-decreasing inside */
        if (a0 == a1 && b0 == b1 && a0 == b0) {
            int64_t lim;
            if (!r->causal) return FA__T_FULL;
            lim = r->dk0[a0] - r->dq0[a0] + r->dkn[a0] - r->dqn[a0]; /* keep iff k - q <= lim */
            if ((k1 - 1) - q0 <= lim) return FA__T_FULL;
            if (k0 - (q1 - 1) > lim) return FA__T_EMPTY;
            return FA__T_PARTIAL;
        }
        return FA__T_UNKNOWN;
    }
    case FA__R_PREFIX: {
        int64_t pl = r->prefix[bm];
        int cc = dmin > 0 ? FA__T_EMPTY : dmax <= 0 ? FA__T_FULL : FA__T_PARTIAL;
        if (k1 <= pl) return FA__T_FULL;
        if (k0 >= pl) return cc;
        /* straddles the prefix: kept elements exist; a causally dropped one lies right of
           the prefix (it would drop key k1-1 >= pl too) */
        return cc == FA__T_FULL ? FA__T_FULL : FA__T_PARTIAL;
    }
    default: return FA__T_UNKNOWN;
    }
}

/* Fills every row of m by classifying each tile: analytically for built-in rules when the
   rule allows, otherwise element by element. */
static fa_status fa__mask_fill_classified(fa_mask *m)
{
    int64_t bm, hm, qb, kb, row = 0;
    fa_status st;
    for (bm = 0; bm < m->batch; bm++)
        for (hm = 0; hm < m->heads; hm++)
            for (qb = 0; qb < m->nqb; qb++, row++) {
                for (kb = 0; kb < m->nkb; kb++) {
                    int64_t q0, q1, k0, k1;
                    int s = FA__T_UNKNOWN;
                    fa__mask_tile_range(m, qb, kb, &q0, &q1, &k0, &k1);
                    if (m->kind == FA__MK_RULE) s = fa__rule_classify(m, bm, q0, q1, k0, k1);
                    else if (m->kind == FA__MK_TILES) s = FA__T_FULL;
                    if (s == FA__T_UNKNOWN) s = fa__mask_classify_brute(m, bm, hm, q0, q1, k0, k1);
                    if ((st = fa__mask_emit(m, kb, s, NULL)) != FA_OK) return st;
                }
                fa__mask_end_row(m, row);
            }
    return FA_OK;
}

/* Allocates one blob for the rule's arrays. */
static void *fa__mask_blob(fa_mask *m, size_t bytes)
{
    m->blob = fa__alloc(fa__mask_al(m), bytes ? bytes : 1, 64);
    if (m->blob) m->blob_bytes = bytes ? bytes : 1;
    return m->blob;
}

/* Builds a built-in rule mask: m already has its rule set up. */
static fa_status fa__mask_build(fa_mask *m, fa_mask **out)
{
    fa_status st = fa__mask_fill_classified(m);
    if (st != FA_OK) {
        fa__mask_free_all(m);
        return st;
    }
    return fa__mask_finish(m, out);
}

/* A band rule's limits; a negative side is unbounded, large sides are clamped so that
   d (|d| <= seqlen_q + seqlen_k) arithmetic stays far from int64 limits. */
static void fa__mask_band(fa_mask *m, int64_t left, int64_t right, int64_t dilation)
{
    int64_t big = m->sq + m->sk + 1;
    m->rule.off = m->sk - m->sq;
    m->rule.lo = (left < 0 || left > big) ? -big : -left;
    m->rule.hi = (right < 0 || right > big) ? big : right;
    m->rule.dil = dilation > 1 ? dilation : 1;
}

FLASHATTN_DEF fa_status fa_mask_dense(fa_mask **out, const fa_mask_desc *g)
{
    fa_mask *m;
    fa_status st;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if ((st = fa__mask_geometry(g, 0)) != FA_OK || (st = fa__mask_new(g, FA__MK_TILES, &m)) != FA_OK) return st;
    return fa__mask_build(m, out);
}

FLASHATTN_DEF fa_status fa_mask_from_fn(fa_mask **out, const fa_mask_desc *g, fa_mask_keep_fn keep,
                                        void *user)
{
    fa_mask *m;
    fa_status st;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (!keep) return fa__fail(FA_ERR_NULL, "keep callback is NULL");
    if ((st = fa__mask_geometry(g, 0)) != FA_OK || (st = fa__mask_new(g, FA__MK_USER, &m)) != FA_OK) return st;
    m->keep = keep;
    m->keep_user = user;
    return fa__mask_build(m, out);
}

FLASHATTN_DEF fa_status fa_mask_causal(fa_mask **out, const fa_mask_desc *g)
{
    return fa_mask_sliding_window(out, g, -1, 0, 1);
}

FLASHATTN_DEF fa_status fa_mask_sliding_window(fa_mask **out, const fa_mask_desc *g, int64_t left,
                                               int64_t right, int64_t dilation)
{
    fa_mask *m;
    fa_status st;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (dilation < 0) return fa__fail(FA_ERR_INVALID, "dilation (%lld) must be >= 0", (long long)dilation);
    if ((st = fa__mask_geometry(g, 0)) != FA_OK || (st = fa__mask_new(g, FA__MK_RULE, &m)) != FA_OK) return st;
    m->rule.kind = FA__R_BAND;
    fa__mask_band(m, left, right, dilation);
    return fa__mask_build(m, out);
}

FLASHATTN_DEF fa_status fa_mask_longformer(fa_mask **out, const fa_mask_desc *g, int64_t left,
                                           int64_t right, int64_t dilation,
                                           const int64_t *global, int64_t nglobal)
{
    fa_mask *m;
    fa_status st;
    unsigned char *gq, *gk;
    int64_t *cq, *ck, i;
    size_t bytes;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (dilation < 0) return fa__fail(FA_ERR_INVALID, "dilation (%lld) must be >= 0", (long long)dilation);
    if (nglobal < 0) return fa__fail(FA_ERR_INVALID, "nglobal (%lld) must be >= 0", (long long)nglobal);
    if (nglobal > 0 && !global) return fa__fail(FA_ERR_NULL, "global is NULL with nglobal %lld", (long long)nglobal);
    if ((st = fa__mask_geometry(g, 0)) != FA_OK) return st;
    for (i = 0; i < nglobal; i++)
        if (global[i] < 0) return fa__fail(FA_ERR_RANGE, "global[%lld] (%lld) is negative", (long long)i, (long long)global[i]);
    /* blob: cq[sq+1], ck[sk+1] (int64), gq[sq], gk[sk] (bytes) */
    if ((uint64_t)g->seqlen_q > (uint64_t)(SIZE_MAX / 32) || (uint64_t)g->seqlen_k > (uint64_t)(SIZE_MAX / 32))
        return fa__fail(FA_ERR_OVERFLOW, "Longformer flags overflow size_t");
    if ((st = fa__mask_new(g, FA__MK_RULE, &m)) != FA_OK) return st;
    bytes = ((size_t)g->seqlen_q + (size_t)g->seqlen_k + 2) * sizeof(int64_t) + (size_t)g->seqlen_q + (size_t)g->seqlen_k;
    if (!fa__mask_blob(m, bytes)) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of Longformer flags", bytes);
    }
    cq = (int64_t *)m->blob;
    ck = cq + g->seqlen_q + 1;
    gq = (unsigned char *)(ck + g->seqlen_k + 1);
    gk = gq + g->seqlen_q;
    memset(gq, 0, (size_t)(g->seqlen_q + g->seqlen_k));
    for (i = 0; i < nglobal; i++) {
        if (global[i] < g->seqlen_q) gq[global[i]] = 1;
        if (global[i] < g->seqlen_k) gk[global[i]] = 1;
    }
    cq[0] = ck[0] = 0;
    for (i = 0; i < g->seqlen_q; i++) cq[i + 1] = cq[i] + gq[i];
    for (i = 0; i < g->seqlen_k; i++) ck[i + 1] = ck[i] + gk[i];
    m->rule.kind = FA__R_LONGFORMER;
    fa__mask_band(m, left, right, dilation);
    m->rule.gq = gq; m->rule.gk = gk; m->rule.cq = cq; m->rule.ck = ck;
    return fa__mask_build(m, out);
}

FLASHATTN_DEF fa_status fa_mask_strided(fa_mask **out, const fa_mask_desc *g, int64_t stride, int causal)
{
    fa_mask *m;
    fa_status st;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (stride < 1) return fa__fail(FA_ERR_INVALID, "stride (%lld) must be >= 1", (long long)stride);
    if ((st = fa__mask_geometry(g, 0)) != FA_OK || (st = fa__mask_new(g, FA__MK_RULE, &m)) != FA_OK) return st;
    m->rule.kind = FA__R_STRIDED;
    m->rule.off = m->sk - m->sq;
    m->rule.stride = stride;
    m->rule.causal = causal != 0;
    return fa__mask_build(m, out);
}

FLASHATTN_DEF fa_status fa_mask_fixed(fa_mask **out, const fa_mask_desc *g, int64_t stride,
                                      int64_t summary, int causal)
{
    fa_mask *m;
    fa_status st;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (stride < 1) return fa__fail(FA_ERR_INVALID, "stride (%lld) must be >= 1", (long long)stride);
    if (summary < 1 || summary > stride)
        return fa__fail(FA_ERR_INVALID, "summary (%lld) must be in 1..stride (%lld)", (long long)summary, (long long)stride);
    if ((st = fa__mask_geometry(g, 0)) != FA_OK || (st = fa__mask_new(g, FA__MK_RULE, &m)) != FA_OK) return st;
    m->rule.kind = FA__R_FIXED;
    m->rule.off = m->sk - m->sq;
    m->rule.stride = stride;
    m->rule.summary = summary;
    m->rule.causal = causal != 0;
    return fa__mask_build(m, out);
}

static fa_status fa__check_offsets(const int32_t *cu, int64_t n, const char *name)
{
    int64_t i;
    if (cu[0] < 0) return fa__fail(FA_ERR_RANGE, "%s[0] (%ld) is negative", name, (long)cu[0]);
    for (i = 0; i < n; i++)
        if (cu[i + 1] < cu[i])
            return fa__fail(FA_ERR_RANGE, "%s is not monotonic at [%lld]: %ld > %ld", name,
                            (long long)i, (long)cu[i], (long)cu[i + 1]);
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mask_document(fa_mask **out, const fa_mask_desc *g,
                                         const int32_t *cu_seqlens_q,
                                         const int32_t *cu_seqlens_k, int64_t ndocs, int causal)
{
    fa_mask *m;
    fa_status st;
    fa_mask_desc gg;
    const int32_t *cuk = cu_seqlens_k ? cu_seqlens_k : cu_seqlens_q;
    int32_t *doc_q, *doc_k;
    int64_t *dq0, *dk0, *dqn, *dkn, i, t;
    size_t bytes;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (!g) return fa__fail(FA_ERR_NULL, "mask desc is NULL");
    if (!cu_seqlens_q) return fa__fail(FA_ERR_NULL, "cu_seqlens_q is NULL");
    if (ndocs < 1) return fa__fail(FA_ERR_INVALID, "ndocs (%lld) must be >= 1", (long long)ndocs);
    if (ndocs > INT32_MAX) return fa__fail(FA_ERR_OVERFLOW, "ndocs (%lld) exceeds int32 document ids", (long long)ndocs);
    if ((st = fa__check_offsets(cu_seqlens_q, ndocs, "cu_seqlens_q")) != FA_OK) return st;
    if (cu_seqlens_k && (st = fa__check_offsets(cu_seqlens_k, ndocs, "cu_seqlens_k")) != FA_OK) return st;
    gg = *g;
    if (gg.seqlen_q == 0) gg.seqlen_q = cu_seqlens_q[ndocs];
    if (gg.seqlen_k == 0) gg.seqlen_k = cuk[ndocs];
    if ((st = fa__mask_geometry(&gg, 0)) != FA_OK) return st;
    if (cu_seqlens_q[ndocs] > gg.seqlen_q)
        return fa__fail(FA_ERR_RANGE, "cu_seqlens_q[%lld] (%ld) exceeds seqlen_q (%lld)", (long long)ndocs, (long)cu_seqlens_q[ndocs], (long long)gg.seqlen_q);
    if (cuk[ndocs] > gg.seqlen_k)
        return fa__fail(FA_ERR_RANGE, "cu_seqlens_k[%lld] (%ld) exceeds seqlen_k (%lld)", (long long)ndocs, (long)cuk[ndocs], (long long)gg.seqlen_k);
    if ((uint64_t)ndocs > (uint64_t)(SIZE_MAX / 64) || (uint64_t)gg.seqlen_q > (uint64_t)(SIZE_MAX / 16) ||
        (uint64_t)gg.seqlen_k > (uint64_t)(SIZE_MAX / 16))
        return fa__fail(FA_ERR_OVERFLOW, "document tables overflow size_t");
    bytes = (size_t)ndocs * 4 * sizeof(int64_t) + ((size_t)gg.seqlen_q + (size_t)gg.seqlen_k) * sizeof(int32_t);
    if ((st = fa__mask_new(&gg, FA__MK_RULE, &m)) != FA_OK) return st;
    if (!fa__mask_blob(m, bytes)) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of document tables", bytes);
    }
    dq0 = (int64_t *)m->blob;
    dk0 = dq0 + ndocs;
    dqn = dk0 + ndocs;
    dkn = dqn + ndocs;
    doc_q = (int32_t *)(dkn + ndocs);
    doc_k = doc_q + gg.seqlen_q;
    for (t = 0; t < gg.seqlen_q; t++) doc_q[t] = -1;
    for (t = 0; t < gg.seqlen_k; t++) doc_k[t] = -1;
    for (i = 0; i < ndocs; i++) {
        dq0[i] = cu_seqlens_q[i];
        dqn[i] = (int64_t)cu_seqlens_q[i + 1] - cu_seqlens_q[i];
        dk0[i] = cuk[i];
        dkn[i] = (int64_t)cuk[i + 1] - cuk[i];
        for (t = dq0[i]; t < dq0[i] + dqn[i]; t++) doc_q[t] = (int32_t)i;
        for (t = dk0[i]; t < dk0[i] + dkn[i]; t++) doc_k[t] = (int32_t)i;
    }
    m->rule.kind = FA__R_DOC;
    m->rule.causal = causal != 0;
    m->rule.ndocs = ndocs;
    m->rule.doc_q = doc_q; m->rule.doc_k = doc_k;
    m->rule.dq0 = dq0; m->rule.dk0 = dk0; m->rule.dqn = dqn; m->rule.dkn = dkn;
    return fa__mask_build(m, out);
}

FLASHATTN_DEF fa_status fa_mask_prefix_lm(fa_mask **out, const fa_mask_desc *g, const int64_t *prefix_len)
{
    fa_mask *m;
    fa_status st;
    int64_t nb, i;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (!prefix_len) return fa__fail(FA_ERR_NULL, "prefix_len is NULL");
    if ((st = fa__mask_geometry(g, 0)) != FA_OK) return st;
    nb = g->batch > 1 ? g->batch : 1;
    for (i = 0; i < nb; i++)
        if (prefix_len[i] < 0 || prefix_len[i] > g->seqlen_k)
            return fa__fail(FA_ERR_RANGE, "prefix_len[%lld] (%lld) is outside 0..seqlen_k (%lld)",
                            (long long)i, (long long)prefix_len[i], (long long)g->seqlen_k);
    if ((uint64_t)nb > (uint64_t)(SIZE_MAX / sizeof(int64_t))) return fa__fail(FA_ERR_OVERFLOW, "batch overflows size_t");
    if ((st = fa__mask_new(g, FA__MK_RULE, &m)) != FA_OK) return st;
    if (!fa__mask_blob(m, (size_t)nb * sizeof(int64_t))) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate prefix lengths");
    }
    memcpy(m->blob, prefix_len, (size_t)nb * sizeof(int64_t));
    m->rule.kind = FA__R_PREFIX;
    m->rule.off = m->sk - m->sq;
    m->rule.prefix = (const int64_t *)m->blob;
    return fa__mask_build(m, out);
}

/* ---- BigBird ---- */

/* splitmix64 (Steele, Lea, Flood 2014): a fixed, portable generator for the random blocks. */
static uint64_t fa__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Key block of the diagonal position of query block I's last query, clamped to the keys. */
static int64_t fa__mask_diag_block(const fa_mask *m, int64_t I)
{
    int64_t qlast = fa__min64(m->sq, (I + 1) * m->bq) - 1;
    int64_t p = qlast + m->sk - m->sq;
    return fa__max64(0, fa__min64(m->sk - 1, p)) / m->bk;
}

FLASHATTN_DEF fa_status fa_mask_bigbird(fa_mask **out, const fa_mask_desc *g, int64_t window_blocks,
                                        int64_t global_blocks, int64_t random_blocks, int causal,
                                        uint64_t seed)
{
    fa_mask *m;
    fa_status st = FA_OK;
    unsigned char *sel;
    int32_t *avail;
    int64_t bm, hm, I, J, row = 0;
    size_t bytes;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (window_blocks < 0 || global_blocks < 0 || random_blocks < 0)
        return fa__fail(FA_ERR_INVALID, "BigBird block counts (window %lld, global %lld, random %lld) must be >= 0",
                        (long long)window_blocks, (long long)global_blocks, (long long)random_blocks);
    if ((st = fa__mask_geometry(g, 0)) != FA_OK || (st = fa__mask_new(g, FA__MK_TILES, &m)) != FA_OK) return st;
    bytes = (size_t)m->nkb * (sizeof(int32_t) + 1);
    if (!fa__mask_blob(m, bytes)) { /* per-row scratch; freed with the mask */
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate BigBird scratch");
    }
    avail = (int32_t *)m->blob;
    sel = (unsigned char *)(avail + m->nkb);
    for (bm = 0; bm < m->batch && st == FA_OK; bm++)
        for (hm = 0; hm < m->heads && st == FA_OK; hm++)
            for (I = 0; I < m->nqb && st == FA_OK; I++, row++) {
                int64_t dg = fa__mask_diag_block(m, I), lim = causal ? dg : m->nkb - 1, na = 0, r;
                /* one stream per (b, h, I): odd 64-bit multipliers (splitmix/xxhash constants)
                   spread the coordinates over the state before splitmix64 mixes it */
                uint64_t rng = seed ^ (0x632be59bd9b4e019ull * (uint64_t)(bm + 1)) ^
                               (0xd6e8feb86659fd93ull * (uint64_t)(hm + 1)) ^ (0x9e3779b97f4a7c15ull * (uint64_t)I);
                for (J = 0; J < m->nkb; J++) {
                    int64_t dist = J > dg ? J - dg : dg - J;
                    sel[J] = (unsigned char)(J <= lim && (dist <= window_blocks || J < global_blocks || I < global_blocks));
                    if (J <= lim && !sel[J]) avail[na++] = (int32_t)J;
                }
                /* partial Fisher-Yates: the first r slots become a draw without replacement,
                   uniform up to the modulo bias of a 64-bit draw (< 2^-40 here) */
                for (r = 0; r < random_blocks && r < na; r++) {
                    int64_t pick = r + (int64_t)(fa__splitmix64(&rng) % (uint64_t)(na - r));
                    int32_t tmp = avail[r];
                    avail[r] = avail[pick];
                    avail[pick] = tmp;
                    sel[avail[r]] = 1;
                }
                for (J = 0; J < m->nkb && st == FA_OK; J++)
                    if (sel[J]) st = fa__mask_emit(m, J, FA__T_FULL, NULL);
                fa__mask_end_row(m, row);
            }
    if (st != FA_OK) {
        fa__mask_free_all(m);
        return st;
    }
    return fa__mask_finish(m, out);
}

/* ---- combinators ---- */

/* Operand layout for a result layout index: shared operands use layout 0, per-batch ones the
   same batch, and per-head ones the layout holding the result layout's first query head. */
static int64_t fa__mask_op_head(const fa_mask *x, const fa_mask *res, int64_t hr)
{
    if (x->heads == 1) return 0;
    return (hr * res->group) / x->group;
}

static fa_status fa__mask_combine(fa_mask **out, const fa_mask *a, const fa_mask *b, int is_and)
{
    fa_mask_desc g;
    fa_mask *m;
    fa_status st = FA_OK;
    unsigned char *sa, *sb;
    int64_t *pa, *pb, bm, hm, I, J, row = 0, q, k, words;
    uint64_t *tile;
    size_t bytes;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (!a || !b) return fa__fail(FA_ERR_NULL, "mask operand is NULL");
    if (a->magic != FA__MASK_MAGIC || b->magic != FA__MASK_MAGIC)
        return fa__fail(FA_ERR_INVALID, "mask operand is not a built fa_mask");
    if (a->sq != b->sq || a->sk != b->sk || a->bq != b->bq || a->bk != b->bk)
        return fa__fail(FA_ERR_SHAPE, "masks differ in shape: %lldx%lld blocks %lldx%lld vs %lldx%lld blocks %lldx%lld",
                        (long long)a->sq, (long long)a->sk, (long long)a->bq, (long long)a->bk,
                        (long long)b->sq, (long long)b->sk, (long long)b->bq, (long long)b->bk);
    if (a->batch != 1 && b->batch != 1 && a->batch != b->batch)
        return fa__fail(FA_ERR_SHAPE, "mask batch layouts differ (%lld vs %lld)", (long long)a->batch, (long long)b->batch);
    if (a->heads != 1 && b->heads != 1 &&
        (a->heads_q != b->heads_q || (a->heads % b->heads != 0 && b->heads % a->heads != 0)))
        return fa__fail(FA_ERR_SHAPE, "mask head layouts are incompatible (%lld of heads_q %lld vs %lld of %lld)",
                        (long long)a->heads, (long long)a->heads_q, (long long)b->heads, (long long)b->heads_q);
    memset(&g, 0, sizeof g);
    g.seqlen_q = a->sq;
    g.seqlen_k = a->sk;
    g.batch = a->batch > b->batch ? a->batch : b->batch;
    g.heads = a->heads > b->heads ? a->heads : b->heads;
    g.heads_q = a->heads > b->heads ? a->heads_q : b->heads_q;
    g.block_q = a->bq;
    g.block_k = a->bk;
    g.alloc = a->has_alloc ? &a->alloc : NULL;
    if ((st = fa__mask_new(&g, FA__MK_BITS, &m)) != FA_OK) return st;
    words = m->tile_words;
    /* scratch: states and partial positions of both operands for one row, one tile of bits */
    bytes = (size_t)m->nkb * 2 * (1 + sizeof(int64_t)) + (size_t)words * sizeof(uint64_t);
    if (!fa__mask_blob(m, bytes)) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate combinator scratch");
    }
    tile = (uint64_t *)m->blob;
    pa = (int64_t *)(tile + words);
    pb = pa + m->nkb;
    sa = (unsigned char *)(pb + m->nkb);
    sb = sa + m->nkb;
    for (bm = 0; bm < m->batch && st == FA_OK; bm++)
        for (hm = 0; hm < m->heads && st == FA_OK; hm++)
            for (I = 0; I < m->nqb && st == FA_OK; I++, row++) {
                int64_t ba = a->batch == 1 ? 0 : bm, bb = b->batch == 1 ? 0 : bm;
                int64_t ha = fa__mask_op_head(a, m, hm), hb = fa__mask_op_head(b, m, hm);
                int64_t ra = fa__mask_rowid(a, ba, ha, I), rb = fa__mask_rowid(b, bb, hb, I), t;
                memset(sa, FA__T_EMPTY, (size_t)m->nkb);
                memset(sb, FA__T_EMPTY, (size_t)m->nkb);
                for (t = a->full_off[ra]; t < a->full_off[ra + 1]; t++) sa[a->full_idx[t]] = FA__T_FULL;
                for (t = a->part_off[ra]; t < a->part_off[ra + 1]; t++) {
                    sa[a->part_idx[t]] = FA__T_PARTIAL;
                    pa[a->part_idx[t]] = t - a->part_off[ra];
                }
                for (t = b->full_off[rb]; t < b->full_off[rb + 1]; t++) sb[b->full_idx[t]] = FA__T_FULL;
                for (t = b->part_off[rb]; t < b->part_off[rb + 1]; t++) {
                    sb[b->part_idx[t]] = FA__T_PARTIAL;
                    pb[b->part_idx[t]] = t - b->part_off[rb];
                }
                for (J = 0; J < m->nkb && st == FA_OK; J++) {
                    int x = sa[J], y = sb[J], s;
                    if (is_and) s = (x == FA__T_EMPTY || y == FA__T_EMPTY) ? FA__T_EMPTY
                                    : (x == FA__T_FULL && y == FA__T_FULL) ? FA__T_FULL : FA__T_UNKNOWN;
                    else s = (x == FA__T_FULL || y == FA__T_FULL) ? FA__T_FULL
                             : (x == FA__T_EMPTY && y == FA__T_EMPTY) ? FA__T_EMPTY : FA__T_UNKNOWN;
                    if (s == FA__T_UNKNOWN) {
                        int64_t q0, q1, k0, k1, nset = 0, ntot;
                        fa__mask_tile_range(m, I, J, &q0, &q1, &k0, &k1);
                        ntot = (q1 - q0) * (k1 - k0);
                        memset(tile, 0, (size_t)words * sizeof(uint64_t));
                        for (q = q0; q < q1; q++)
                            for (k = k0; k < k1; k++) {
                                int va = x == FA__T_PARTIAL ? fa__mask_rule_at(a, ba, ha, ra, pa[J], q, k) : x == FA__T_FULL;
                                int vb = y == FA__T_PARTIAL ? fa__mask_rule_at(b, bb, hb, rb, pb[J], q, k) : y == FA__T_FULL;
                                if (is_and ? (va && vb) : (va || vb)) {
                                    int64_t bit = (q - q0) * m->bk + (k - k0);
                                    tile[bit >> 6] |= (uint64_t)1 << (bit & 63);
                                    nset++;
                                }
                            }
                        s = nset == 0 ? FA__T_EMPTY : nset == ntot ? FA__T_FULL : FA__T_PARTIAL;
                    }
                    st = fa__mask_emit(m, J, s, s == FA__T_PARTIAL ? tile : NULL);
                }
                fa__mask_end_row(m, row);
            }
    if (st != FA_OK) {
        fa__mask_free_all(m);
        return st;
    }
    return fa__mask_finish(m, out);
}

FLASHATTN_DEF fa_status fa_mask_and(fa_mask **out, const fa_mask *a, const fa_mask *b)
{
    return fa__mask_combine(out, a, b, 1);
}
FLASHATTN_DEF fa_status fa_mask_or(fa_mask **out, const fa_mask *a, const fa_mask *b)
{
    return fa__mask_combine(out, a, b, 0);
}

FLASHATTN_DEF fa_status fa_mask_set_score(fa_mask *m, fa_mask_score_fn fn, void *user)
{
    if (!m) return fa__fail(FA_ERR_NULL, "mask is NULL");
    if (m->magic != FA__MASK_MAGIC) return fa__fail(FA_ERR_INVALID, "mask is not a built fa_mask");
    m->score = fn;
    m->score_user = fn ? user : NULL;
    return FA_OK;
}

/* ---- inspection ---- */
static fa_status fa__mask_valid(const fa_mask *m)
{
    if (!m) return fa__fail(FA_ERR_NULL, "mask is NULL");
    if (m->magic != FA__MASK_MAGIC) return fa__fail(FA_ERR_INVALID, "mask is not a built fa_mask");
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mask_get_info(const fa_mask *m, fa_mask_info *info)
{
    fa_status st;
    if ((st = fa__mask_valid(m)) != FA_OK) return st;
    if (!info) return fa__fail(FA_ERR_NULL, "info is NULL");
    info->seqlen_q = m->sq;
    info->seqlen_k = m->sk;
    info->batch = m->batch;
    info->heads = m->heads;
    info->heads_q = m->heads_q;
    info->block_q = m->bq;
    info->block_k = m->bk;
    info->blocks_q = m->nqb;
    info->blocks_k = m->nkb;
    info->tiles_full = (int64_t)m->nfull;
    info->tiles_partial = (int64_t)m->npart;
    info->bytes = sizeof *m + 2 * (size_t)(m->rows + 1) * sizeof(int64_t) +
                  (m->full_cap + m->part_cap) * sizeof(int32_t) + m->bits_cap * sizeof(uint64_t) + m->blob_bytes;
    return FA_OK;
}

FLASHATTN_DEF fa_status fa_mask_density(const fa_mask *m, fa_mask_density_info *info)
{
    fa_status st;
    int64_t bm, hm, I, row = 0, t, q, k, kept = 0, total, tiles;
    if ((st = fa__mask_valid(m)) != FA_OK) return st;
    if (!info) return fa__fail(FA_ERR_NULL, "info is NULL");
    for (bm = 0; bm < m->batch; bm++)
        for (hm = 0; hm < m->heads; hm++)
            for (I = 0; I < m->nqb; I++, row++) {
                int64_t q0, q1, k0, k1;
                for (t = m->full_off[row]; t < m->full_off[row + 1]; t++) {
                    fa__mask_tile_range(m, I, m->full_idx[t], &q0, &q1, &k0, &k1);
                    kept += (q1 - q0) * (k1 - k0);
                }
                for (t = m->part_off[row]; t < m->part_off[row + 1]; t++) {
                    fa__mask_tile_range(m, I, m->part_idx[t], &q0, &q1, &k0, &k1);
                    for (q = q0; q < q1; q++)
                        for (k = k0; k < k1; k++)
                            kept += fa__mask_rule_at(m, bm, hm, row, t - m->part_off[row], q, k);
                }
            }
    if (fa__mul_i64(m->batch * m->heads, m->sq, &total) || fa__mul_i64(total, m->sk, &total) ||
        fa__mul_i64(m->rows, m->nkb, &tiles))
        return fa__fail(FA_ERR_OVERFLOW, "mask element count overflows int64");
    info->elements_total = total;
    info->elements_kept = kept;
    info->tiles_total = tiles;
    info->tiles_full = (int64_t)m->nfull;
    info->tiles_partial = (int64_t)m->npart;
    info->elements = total ? (double)kept / (double)total : 0.0;
    info->tiles = tiles ? (double)(m->nfull + m->npart) / (double)tiles : 0.0;
    return FA_OK;
}

FLASHATTN_DEF int fa_mask_tile(const fa_mask *m, int64_t b, int64_t h, int64_t qblk, int64_t kblk)
{
    if (!m || m->magic != FA__MASK_MAGIC || b < 0 || h < 0 || qblk < 0 || kblk < 0 ||
        qblk >= m->nqb || kblk >= m->nkb || (m->batch > 1 && b >= m->batch) ||
        (m->heads > 1 && h >= m->heads_q))
        return -1;
    return fa__mask_tile_state(m, fa__mask_rowid(m, fa__mask_bm(m, b), fa__mask_hm(m, h), qblk), kblk, NULL);
}

FLASHATTN_DEF int fa_mask_visible(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k)
{
    if (!m || m->magic != FA__MASK_MAGIC || b < 0 || h < 0 || (m->batch > 1 && b >= m->batch) ||
        (m->heads > 1 && h >= m->heads_q))
        return 0;
    return fa__mask_visible(m, b, h, q, k);
}

FLASHATTN_DEF fa_status fa_mask_row(const fa_mask *m, int64_t b, int64_t h, int64_t qblk,
                                    const int32_t **full, int64_t *nfull,
                                    const int32_t **partial, int64_t *npartial)
{
    fa_status st;
    if ((st = fa__mask_valid(m)) != FA_OK) return st;
    if (!full || !nfull || !partial || !npartial) return fa__fail(FA_ERR_NULL, "an output pointer is NULL");
    if (b < 0 || (m->batch > 1 && b >= m->batch))
        return fa__fail(FA_ERR_RANGE, "b (%lld) is outside the mask's %lld batch layouts", (long long)b, (long long)m->batch);
    if (h < 0 || (m->heads > 1 && h >= m->heads_q))
        return fa__fail(FA_ERR_RANGE, "h (%lld) is outside the mask's %lld query heads", (long long)h, (long long)m->heads_q);
    if (qblk < 0 || qblk >= m->nqb)
        return fa__fail(FA_ERR_RANGE, "qblk (%lld) is outside 0..%lld", (long long)qblk, (long long)(m->nqb - 1));
    fa__mask_blocks(m, b, h, qblk, full, nfull, partial, npartial);
    return FA_OK;
}

/* ---- dynamic top-k selection ---- */
static double fa__mask_now(void)
{
#if defined(_WIN32)
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#elif defined(CLOCK_MONOTONIC)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#elif defined(TIME_UTC)
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / (double)CLOCKS_PER_SEC;
#endif
}

typedef struct fa__topk_cand {
    float score;
    int32_t j;
} fa__topk_cand;

/* Best first: higher score, then lower block; NaN was mapped to -inf before sorting. */
static int fa__topk_cmp(const void *x, const void *y)
{
    const fa__topk_cand *a = (const fa__topk_cand *)x, *b = (const fa__topk_cand *)y;
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* Adds one f32 row to a block summary (first = the block's first row):
   mean: dst[0..n) accumulates the sum (the caller divides by the count);
   minmax: dst[0..n) the per-dimension minimum, dst[n..2n) the maximum. */
static void fa__pool_add(float *dst, const float *row, int64_t n, int minmax, int first)
{
    int64_t e;
    if (!minmax) {
        if (first) memcpy(dst, row, (size_t)n * sizeof(float));
        else for (e = 0; e < n; e++) dst[e] += row[e];
        return;
    }
    if (first) {
        memcpy(dst, row, (size_t)n * sizeof(float));
        memcpy(dst + n, row, (size_t)n * sizeof(float));
        return;
    }
    for (e = 0; e < n; e++) {
        if (row[e] < dst[e]) dst[e] = row[e];
        if (row[e] > dst[n + e]) dst[n + e] = row[e];
    }
}

static float fa__pool_score(const float *qp, const float *kp, int64_t n, int minmax)
{
    int64_t e;
    float acc = 0.0f;
    if (!minmax) return fa__dot_f32(qp, kp, n);
    for (e = 0; e < n; e++) {
        float a = qp[e] * kp[e], b = qp[e] * kp[n + e], c = qp[n + e] * kp[e], d = qp[n + e] * kp[n + e];
        float mx = a > b ? a : b;
        if (c > mx) mx = c;
        if (d > mx) mx = d;
        acc += mx;
    }
    return acc;
}

/* Estimated softmax mass of a block of nkeys keys with pooled score sc, relative to the best
   score wmax (infinite extremes share the mass among the blocks that reach them). */
static double fa__topk_weight(float sc, double wmax, int64_t nkeys)
{
    if (wmax == -INFINITY || wmax == INFINITY) return (double)sc == wmax ? (double)nkeys : 0.0;
    return (double)nkeys * exp((double)sc - wmax);
}

FLASHATTN_DEF fa_status fa_mask_topk(fa_mask **out, const fa_mask_topk_desc *t, fa_mask_topk_stats *stats)
{
    fa__attn_plan p;
    fa_mask_desc g;
    fa_mask *m;
    fa_status st;
    const fa_attn_desc *d;
    fa_attn_desc dcopy;
    int minmax, pw;
    int64_t hm_n, grp, dk, b, hm, I, J, row = 0, ncand_total = 0, nsel_total = 0;
    float *kpool, *qpool, *buf;
    fa__topk_cand *cand;
    unsigned char *flag;
    size_t bytes, kpool_n, qpool_n;
    double t0 = fa__mask_now(), flops = 0.0;
    if (!out) return fa__fail(FA_ERR_NULL, "out is NULL");
    if (!t) return fa__fail(FA_ERR_NULL, "top-k desc is NULL");
    if (!t->attn) return fa__fail(FA_ERR_NULL, "top-k desc has no attention desc");
    if (t->top_k < 0) return fa__fail(FA_ERR_INVALID, "top_k (%lld) must be >= 0", (long long)t->top_k);
    if (!(t->threshold >= 0.0f && t->threshold <= 1.0f))
        return fa__fail(FA_ERR_INVALID, "threshold (%g) must be in [0, 1]", (double)t->threshold);
    if (t->top_k == 0 && t->threshold == 0.0f)
        return fa__fail(FA_ERR_INVALID, "top-k selection needs top_k > 0 or threshold > 0");
    if (t->pooling != FA_MASK_POOL_MEAN && t->pooling != FA_MASK_POOL_MINMAX)
        return fa__fail(FA_ERR_INVALID, "pooling (%d) is not a fa_mask_pooling", (int)t->pooling);
    if (t->heads < 0) return fa__fail(FA_ERR_INVALID, "heads (%lld) must be >= 0", (long long)t->heads);
    dcopy = *t->attn;
    dcopy.mask = NULL; /* the selection reads Q and K only */
    d = &dcopy;
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    hm_n = t->heads ? t->heads : p.hq;
    if (p.hq % hm_n != 0)
        return fa__fail(FA_ERR_SHAPE, "heads (%lld) does not divide heads_q (%lld)", (long long)hm_n, (long long)p.hq);
    grp = p.hq / hm_n;
    dk = p.dk;
    minmax = t->pooling == FA_MASK_POOL_MINMAX;
    pw = minmax ? 2 : 1;
    memset(&g, 0, sizeof g);
    g.seqlen_q = p.sq_max > 0 ? p.sq_max : 1;
    g.seqlen_k = p.sk_max > 0 ? p.sk_max : 1;
    g.batch = p.batch;
    g.heads = hm_n;
    g.heads_q = p.hq;
    g.block_q = t->block_q;
    g.block_k = t->block_k;
    g.alloc = t->alloc;
    if ((st = fa__mask_geometry(&g, 0)) != FA_OK || (st = fa__mask_new(&g, FA__MK_TILES, &m)) != FA_OK) return st;
    /* scratch: pooled K of every kv head [hkv][nkb][pw*dk], pooled Q of one layout's heads
       [grp][pw*dk], a row buffer, and the candidate list and flags of one query block */
    kpool_n = (size_t)p.hkv * (size_t)m->nkb * (size_t)(pw * dk);
    qpool_n = (size_t)grp * (size_t)(pw * dk);
    if ((uint64_t)kpool_n > (uint64_t)(SIZE_MAX / 16) / sizeof(float) || (uint64_t)m->nkb > (uint64_t)(SIZE_MAX / 64)) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_OVERFLOW, "top-k scratch overflows size_t");
    }
    bytes = (kpool_n + qpool_n + (size_t)dk) * sizeof(float) + (size_t)m->nkb * (sizeof(fa__topk_cand) + 1);
    if (!fa__mask_blob(m, bytes)) {
        fa__mask_free_all(m);
        return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of top-k scratch", bytes);
    }
    kpool = (float *)m->blob;
    qpool = kpool + kpool_n;
    buf = qpool + qpool_n;
    cand = (fa__topk_cand *)(buf + dk);
    flag = (unsigned char *)(cand + m->nkb);

    for (b = 0; b < p.batch; b++) {
        fa__seq s;
        int64_t hk, nkb_b, nqb_b;
        fa__attn_seq(&p, b, &s);
        nkb_b = (s.sk + m->bk - 1) / m->bk;
        nqb_b = (s.sq + m->bq - 1) / m->bq;
        /* pooled K of every kv head and key block of this sequence */
        for (hk = 0; hk < p.hkv; hk++) {
            float kmul = fa__kv_scale(d->k_scale, d->k_head_scale, hk);
            for (J = 0; J < nkb_b; J++) {
                float *kp = kpool + ((size_t)hk * (size_t)m->nkb + (size_t)J) * (size_t)(pw * dk);
                int64_t j0 = J * m->bk, j1 = fa__min64(s.sk, j0 + m->bk), j, e;
                for (j = j0; j < j1; j++) {
                    int64_t ko, vo;
                    const void *src;
                    fa__kv_offsets(&p, &s, b, j, hk, &ko, &vo);
                    src = fa__elem_ptr(d->k, d->k_type, ko);
                    if (d->k_type != FA_F32 || kmul != 1.0f) { /* f32 rows are pooled in place */
                        fa__load_row(buf, src, d->k_type, dk, kmul);
                        src = buf;
                    }
                    fa__pool_add(kp, (const float *)src, dk, minmax, j == j0);
                }
                if (!minmax)
                    for (e = 0; e < dk; e++) kp[e] /= (float)(j1 - j0);
                flops += (double)((j1 - j0) * dk * pw);
            }
        }
        for (hm = 0; hm < m->heads; hm++)
            for (I = 0; I < m->nqb; I++, row++) {
                int64_t i0 = I * m->bq, i1, i, gq, nc = 0, nforced = 0, nsel, lim, jl0, jl1, lo, hi, tmp, jmark = -1;
                double wsum = 0.0, wkept = 0.0, wmax = -INFINITY;
                if (I >= nqb_b) { /* no queries of this sequence here */
                    fa__mask_end_row(m, row);
                    continue;
                }
                i1 = fa__min64(s.sq, i0 + m->bq);
                /* candidates: blocks touched by some row's visible interval (monotone in i) */
                memset(flag, 0, (size_t)m->nkb);
                for (i = i0; i < i1; i++) {
                    int64_t ja, jb;
                    fa__row_range(&p, &s, i, &lo, &hi);
                    if (lo >= hi) continue;
                    ja = fa__max64(lo / m->bk, jmark + 1);
                    jb = (hi - 1) / m->bk;
                    for (J = ja; J <= jb; J++) flag[J] = 1;
                    if (jb > jmark) jmark = jb;
                }
                /* pooled Q of the layout's query heads */
                for (gq = 0; gq < grp; gq++) {
                    int64_t h = hm * grp + gq, e;
                    float *qp = qpool + (size_t)gq * (size_t)(pw * dk);
                    for (i = i0; i < i1; i++) {
                        const void *src = fa__elem_ptr(d->q, d->q_type, s.q_base + (s.q_tok0 + i) * p.qs.seq + h * p.qs.head);
                        if (d->q_type != FA_F32) {
                            fa__load_row(buf, src, d->q_type, dk, 1.0f);
                            src = buf;
                        }
                        fa__pool_add(qp, (const float *)src, dk, minmax, i == i0);
                    }
                    if (!minmax)
                        for (e = 0; e < dk; e++) qp[e] /= (float)(i1 - i0);
                    flops += (double)((i1 - i0) * dk * pw);
                }
                /* forced blocks: flag 2 */
                if (t->keep_sink && flag[0]) flag[0] = 2;
                jl0 = fa__max64(0, i0 + s.off);
                jl1 = fa__min64(s.sk - 1, i1 - 1 + s.off);
                if (t->keep_local && jl0 <= jl1)
                    for (J = jl0 / m->bk; J <= jl1 / m->bk; J++)
                        if (flag[J]) flag[J] = 2;
                for (J = 0; J < nkb_b; J++) {
                    float sc = 0.0f;
                    if (!flag[J]) continue;
                    for (gq = 0; gq < grp; gq++) {
                        int64_t h = hm * grp + gq;
                        const float *kp = kpool + ((size_t)(h / p.group) * (size_t)m->nkb + (size_t)J) * (size_t)(pw * dk);
                        sc += fa__pool_score(qpool + (size_t)gq * (size_t)(pw * dk), kp, dk, minmax);
                    }
                    sc = sc * p.scale / (float)grp;
                    if (sc != sc) sc = -INFINITY;
                    flops += (double)(grp * dk * (minmax ? 8 : 2));
                    cand[nc].score = sc;
                    cand[nc].j = (int32_t)J;
                    nc++;
                    if (sc > wmax) wmax = sc;
                    if (flag[J] == 2) nforced++;
                }
                ncand_total += nc;
                if (nc == 0) {
                    fa__mask_end_row(m, row);
                    continue;
                }
                /* estimated softmax mass: keys_in_J * exp(score - max) */
                if (t->threshold > 0.0f)
                    for (tmp = 0; tmp < nc; tmp++) {
                        int64_t cj = cand[tmp].j, nkeys = fa__min64(s.sk, (cj + 1) * m->bk) - cj * m->bk;
                        double w = fa__topk_weight(cand[tmp].score, wmax, nkeys);
                        wsum += w;
                        if (flag[cj] == 2) wkept += w;
                    }
                qsort(cand, (size_t)nc, sizeof *cand, fa__topk_cmp);
                lim = t->top_k > 0 ? t->top_k : nc;
                nsel = nforced;
                for (tmp = 0; tmp < nc; tmp++) {
                    int64_t cj = cand[tmp].j;
                    if (flag[cj] == 2) continue;
                    if (nsel >= lim) break;
                    if (t->threshold > 0.0f && wkept >= (double)t->threshold * wsum && nsel > 0) break;
                    if (t->threshold > 0.0f) {
                        int64_t nkeys = fa__min64(s.sk, (cj + 1) * m->bk) - cj * m->bk;
                        wkept += fa__topk_weight(cand[tmp].score, wmax, nkeys);
                    }
                    flag[cj] = 2;
                    nsel++;
                }
                for (J = 0; J < nkb_b && st == FA_OK; J++)
                    if (flag[J] == 2) st = fa__mask_emit(m, J, FA__T_FULL, NULL);
                if (st != FA_OK) {
                    fa__mask_free_all(m);
                    return st;
                }
                nsel_total += nsel;
                fa__mask_end_row(m, row);
            }
    }
    if ((st = fa__mask_finish(m, out)) != FA_OK) return st;
    if (stats) {
        stats->seconds = fa__mask_now() - t0;
        stats->flops = flops;
        stats->tiles_candidate = ncand_total;
        stats->tiles_selected = nsel_total;
    }
    return FA_OK;
}


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
