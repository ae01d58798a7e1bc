/* flashattn.h - exact tiled ("flash") attention and the pieces around it, in one C header.

   Exact FlashAttention-style attention on the CPU (online softmax, O(N) extra memory) with the
   features inference engines expect (GQA/MQA, causal, sliding window, softcap, ALiBi, varlen,
   KV cache, paged KV, FP8 K/V, LSE output, split-KV decode, sparse masks), vectorised (AVX-512,
   AVX2, NEON) and multi-threaded, plus the building blocks it is made of: bit-exact FP8/f16/bf16
   conversion, lock-free ring queues, a task pool and cache-line-aligned hash tables. No
   dependencies beyond the C standard library (and pthreads where threads are used). The same
   descriptor runs on NVIDIA GPUs (sm_80+) through the optional flashattn_cuda.cuh (on H100/H200
   prefill takes a wgmma/TMA kernel, decode a kernel of its own).

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
   FLASHATTN_NO_THREADS       no task pool (fa_pool_create returns FA_ERR_UNSUPPORTED, parallel_for
                              runs serially on the caller); queues stay, a wait that would sleep
                              returns FA_ERR_UNSUPPORTED
   FLASHATTN_NO_FUTEX         Linux: blocking queue waits sleep on pthread condvars, not futexes

   SECTIONS (declarations first, implementation after FLASHATTN_IMPLEMENTATION, same order)
   --------
   core   status codes, last-error detail, allocator hooks, aligned allocation, dtypes, CPU features
   fp8    f16/bf16/FP8 (OCP E4M3FN, E5M2) and E8M0 conversion, bit-exact with cuda_fp8.h;
          fa_convert (AVX-512/AVX2/NEON/scalar); amax; scaling recipes (per tensor, 1xN/NxN
          blocks, MXFP8, delayed scaling); stochastic rounding
   attn   fa_attn_desc, fa_attn_forward (tiled, SIMD micro-kernels, threads, split-KV),
          fa_attn_reference, fa_attn_merge, workspace and memory estimates
   mask   block-sparse masks: tile layouts (FlexAttention BlockMask), builders (causal, window,
          Longformer, BigBird, strided/fixed, document, prefix-LM, callback), and/or, density,
          dynamic top-k selection
   queue  lock-free SPSC (per-slot sequences) and Vyukov MPMC (CAS backoff) ring queues: any item size,
          try/bulk/blocking operations, close
   pool   workers on MPMC queues: parallel_for, prioritised tasks with retry/backoff, metrics,
          finish/cancel shutdown
   hash   fa_map (Swiss-style aligned open addressing, SSE2/NEON/SWAR probing), fa_lru
          (fixed-capacity LRU), fa_cmap (sharded seqlock concurrent map), fa_clru (sharded
          concurrent LRU), fa_hash_bytes

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
   - Accuracy: attention accumulates in f32; against the double-precision reference the output
     error stays within 1e-5 of sum_j p_j |v_j| plus the rounding of f32 logits (tests/test_attn.c
     states the bound). The vector exp is a polynomial with <= 1 ulp measured error that flushes
     results below FLT_MIN to 0 on every path.
   - Decode (one query per sequence, no sparse mask): a work unit takes as many kv heads as fit
     in its 512 rows (FA__ROWS) and does each 64-key tile for those heads in turn, so
     token-major (BSHD or vLLM-paged) K/V is read a token at a time rather than a head's
     256-byte slice per token;
     tiles of at most 8 rows read K and V where they lie (no transpose, no f32 staging), on
     AVX-512 and AVX2. A tile's K/V row pointers step by the token stride (one page lookup per
     run of keys when paged). The split-KV merge runs on every thread.
   - Causal and windows: on a diagonal tile or a window's edge each group of 4 rows computes S
     only over the 16-key blocks one of its rows can see (qk's ncols pairs), and rows that see
     none of a tile's keys are skipped altogether.
   - Builds: the micro-kernels keep their accumulators in named variables (or loops under
     FA__UNROLL), because gcc -O2 leaves a small loop-indexed array of vectors in memory; -O2
     and -O3 builds run within a few percent of each other. In C++ with g++, the
     implementation turns off -W(maybe-)uninitialized, which g++ 12 raises inside its own
     AVX-512 intrinsics (GCC bug 105593).
   - Sparse masks are intersected with the descriptor's causal, window and length limits; a
     keep callback is evaluated only on partial tiles, a score callback on every visible logit
     (after scale, softcap and ALiBi). BigBird and top-k are decided per tile; and/or store the
     bits of partial tiles.
   - FP8: f16 -> f32 quiets signalling NaNs (as F16C does), FP8 NaN decodes to the canonical
     0x7FFFFFFF (as cuda_fp8.h); fa_convert multiplies by its scale in f32 (Transformer Engine's
     cast), skipped when the scale is 1; amax ignores NaN; f32 outputs of 8 MiB or more use
     streaming stores.
   - Queues: SPSC capacity is exact, MPMC capacity is rounded up to a power of two (>= 2); slots
     carry a sequence word, so caller storage is sized with fa_spsc/fa_mpmc_storage_size. The
     queues and the pool need GCC or Clang builtins (MinGW included); threads need pthreads. A
     task that submits into its own pool's full queue runs the new task inline rather than
     deadlock. Idle workers, and a parallel_for caller waiting for its helpers, poll for
     fa_pool_desc.spin_ns (default 100 us, only when the threads fit the CPUs) before they
     sleep: on the 16-core host (a VM) waking sleeping threads cost 6-13% of a 512-16384-key
     decode step (bench_attn section f), as OpenMP runtimes' spin-wait before blocking does.
     One futex call wakes every helper a parallel_for wants: a wake-up tree (the caller wakes
     2 and each helper that joins wakes 2 more) ran 0.82-0.98x there (decode, 16 threads,
     cold), since the delay is the woken vCPU's (helpers start 20-40 us late), not the
     waker's. Polling workers do not wait for a token: each call is announced on a cache line
     of its own, which they watch, so all of them start within ~1 us (popping the tokens one
     at a time from the shared queue took ~7 us for 15 helpers on that host).
   - Attention work order: causal and windowed units go in groups of as many heads as threads,
     query tile first within a group (every head's longest tile before any shorter one, so no
     thread is left with a long unit at the end), while each thread keeps to about one head,
     whose K/V stay in its cache; others head first. Auto-chosen decode splits shrink as they
     go (guided self-scheduling on fixed boundaries, so the bits do not depend on timing):
     each takes 1/(2 threads) of the key tiles left, down to the smallest size that keeps the
     count within the workspace's (4 per thread), so a thread that runs slow (a shared VM) or
     wakes late holds up the call by one small split, not by its equal share (16-core Xeon
     VM, 16 threads, cold: 1.01-1.12x). Unscaled f32 K
     is transposed from where it lies (no copy into the workspace first). A unit holds 256
     (query, head) rows, four times the mask's default query block, so that each K/V tile's load
     and transpose serve four times the rows; a tile's loops run only over the rows that see
     one of its keys (a causal diagonal, a window's edge), found by binary search. Decode with
     bf16 Q and bf16 K on AVX512_BF16 computes the scores by vdpbf16ps on the K rows as they
     lie (products of bf16 values are exact in f32, so nothing is lost against converting K
     first); f32 Q keeps the f32 kernel, since splitting it into bf16 parts would either lose
     bits or cost more than the conversion it saves. A decode unit of several kv heads takes
     each key tile's S in blocks of 16 keys for every head in turn, then each head's softmax,
     then P V in the same blocks: with the usual token-major K/V the rows are read in address
     order, which the hardware prefetchers stream, where one head at a time read one row out of
     every hkv and needed software prefetches a tile ahead (16-core Xeon host, 16 threads, cold:
     4096-32768 keys 1.08-1.29x; Zen 5, one thread: 1.12-1.21x). With GQA groups that are not
     multiples of 4 a head's last group of 4 rows runs into the next head's rows, which that
     head then computes again (the same waste as padding each head's rows to 4; groups 2, 3,
     5, 7 on Zen 5, one thread: 1.10-1.20x).
   - Hash: erase leaves a tombstone only where a group is full; a table that runs out of room
     with at most 25/32 live slots is rehashed in place (no allocation), otherwise it doubles.
     fa_cmap keeps replaced tables until fa_cmap_reclaim or destroy.

   VERSION HISTORY
   ---------------
   0.1.0  core; fp8 (exact FP8/E8M0 conversion, bulk conversion, scaling recipes); exact tiled
          attention (forward, SIMD, threads, split-KV, FP8 K/V, sparse masks), reference, merge;
          masks; queues and pool; hash tables; CUDA forward/merge (mma.sync, sm_90a wgmma/TMA
          prefill, decode kernel); CPU decode tiles that read K/V in place, decode units over
          several kv heads
   0.1.1  attn: -O2 builds as fast as -O3 (named accumulators), causal diagonal tiles skip
          masked S blocks, decode row pointers by stride (1.15-1.26x), FP8 K/V loads through
          IEEE halves (AVX-512, AVX2); g++ -Wall -Werror clean
   0.1.2  pool: fa_pool_desc.spin_ns (idle threads poll before they sleep; default 100 us);
          attn: causal/windowed units claimed query tile first within groups of heads; short
          decode caches split across every thread (16-core Xeon, 512-1024 keys: 2.4-2.7x);
          f32 K transposed in place (prefill 1.02-1.04x); 128-row units (prefill 1.02-1.13x)
   0.1.3  attn: decode scores for bf16 Q and K by vdpbf16ps (AVX512_BF16); 256-row units whose
          tiles skip the rows that see none of their keys (prefill 1.01-1.09x); f32 V rows
          read in place when they are dvp apart (1.01-1.03x); S skips the key blocks left of
          a row group's window (windows of 128-256 keys: 1.03-1.06x)
   0.1.4  attn, AVX2: S and P V kernels in blocks of 4 rows x 24 or 16 keys / dims, which fit
          the 16 registers (the 4 x 32 S block spilled), and the K transpose by 8 x 8 register
          blocks: prefill 1.09-1.16x on an Intel Xeon, 1.13-1.16x on a Zen 1 EPYC; FP8 K/V read
          in place by the AVX2 decode kernels (e4m3 decode 1.8-2.1x)
   0.1.5  attn, AVX-512 and AVX2: the exp clamps to [ln FLT_MIN, 89] with NaN passing through
          (operand order); one fix-up instead of three (prefill 1.01-1.02x, bit-identical);
          the AVX-512 kernels need AVX512BW as well as F, and the decode kernels convert FP8 K/V
          rows 32 codes at a time (e4m3 decode 1.05-1.07x, bit-identical); the decode
          prefetch of 128/256/512-byte rows without a loop (cold decode 1.04-1.23x); AVX-512
          scale_max and exp_sum fused per row (causal and windowed prefill 1.01-1.02x)
   0.1.6  attn: decode units of several kv heads (any GQA group) compute S
          and P V in blocks of 16 keys (8 on AVX2), each for every kv head in turn, so that the
          token-major K and V rows are read in address order and the hardware prefetchers
          stream them (cold decode 1.04-1.29x, bit-identical); the decode kernels read E4M3
          as value / 256 and the 256 rides on the logits' and P's scales (e4m3 decode
          1.05-1.17x, bit-identical); f16 / bf16 outputs stored through the fp8 section's
          vectorized conversion (f16 out 1.04x, bit-identical)
   0.1.7  attn: auto-chosen decode splits shrink as they go (guided self-scheduling on fixed
          boundaries), so slow or late threads hold a call up by one small split; the split-KV
          merge goes a row per task with an FMA kernel and prefetches (16-core Xeon VM, 16
          threads, cold, against 0.1.6: bf16 1.02-1.15x, f16 1.03-1.12x, f32 1.05-1.12x)
   0.1.8  pool: parallel_for announces each call on a cache line that polling workers watch,
          so they join at once (the 15th of 15 started 1.2 us after the first, was ~7 us);
          attn: f32 output rows are normalised as they are stored (one pass less, same bits);
          bench d: the bandwidth copy uses streaming stores (see README)
   0.1.9  attn: f32 Q rows that lie head_dim apart (one head of packed tokens, or all heads of a
          unit) are read in place by the prefill kernels, not copied per unit (causal 1T
          1.005-1.008x, bit-identical); bench_membw: the machine's memory bandwidth several ways
   0.1.10 attn: on Intel cores the decode kernels prefetch the K rows ahead into L2, not L1
          (16-core Xeon, 16 threads, bf16, cold: 1.05x at 32768 keys; AMD keeps L1);
          bench/probe_deckern.c: the decode kernels alone against a plain read; lazy rescaling:
          a row's softmax reference moves only when a tile's max passes it by more than 8
          (no rescale of O and l otherwise; Zen 5, 1 thread, s=2048: non-causal 1.035x,
          causal 1.023x, decode 1.027x; results within 1e-7 of 0.1.9's)
   0.1.11 attn: the f32 prefill kernels pin each loaded K/V vector to a register, so compilers
          tuning for Zen (gcc 12 -march=native) no longer fold it into four FMAs (Zen 5, 1
          thread, -march=native: 1.73x AVX-512, 1.57x AVX2; tests/check_codegen.sh guards it);
          tiles that every row sees whole skip the per-row ranges, and unpaged K/V rows are
          found by a stride (1.004-1.014x, bit-identical)
   0.1.12 attn: decode's shrinking KV splits are cut in 16-key pieces, each 1/workers of what is
          left (the last splits of a 4096-key call read 64 KiB, not 256); split partials lie
          [unit][row][split] so a row's merge streams them, and the merge sums in registers
          (dev VM, 2 threads, 4096 keys, cold: 1.034-1.057x); bench/probe_phases: where a cold
          decode call's time goes, and readbw.c, the fastest cold read of its bytes
   0.1.13 attn: prefill P V takes a 4-row block's staircase edge (a causal diagonal, a window's
          edge) in the block, each row masked to its own keys, not row by row; the AVX2 and
          NEON row kernels skip empty ranges (AVX2, 1 thread: causal 1.05-1.09x, non-causal
          1.05x on Zen 5, causal 1.055x on the 16-core Xeon; AVX-512 1.00x; bit-identical)
   0.1.14 attn: a prefill tile that every row of the unit sees whole skips the per-group column
          ranges of S (Zen 5, 1 thread, s=2048: 1.002-1.008x, bit-identical);
          bench/probe_causal splits causal prefill's time per needed pair into the full tiles,
          the diagonal blocks and the units' own cost
   0.1.15 attn: the AVX-512 and AVX2 decode kernels' S runs unrolled for head_dim 128 (one
          thread, 4096 keys, warm: Zen 5 bf16 1.07-1.09x, f16 1.06x, e4m3 1.05x, AVX2 1.03x;
          16-core Xeon 1.08x; 16 threads cold 0.98-1.03x, median 1.01x; bit-identical)
   0.1.16 attn: on Intel cores, prefill with bf16 Q and K computes S with the f32 kernels
          (K and Q widened) instead of AVX512_BF16 pairs (16-core Xeon, s=2048: 1 thread
          1.22-1.36x, 16 threads 1.30x; AMD unchanged; see FA__BF16_PAIRS_PAY)
   0.1.17 attn: the AVX2 kernels fuse a row's softmax (scale, max, exp, sum in one pass, the
          row in registers) with an exp for x <= 88 that scales by one factor (Zen 3, one
          thread, s=2048: non-causal 1.037-1.041x, causal 1.037-1.057x, bf16 decode 1.02-1.04x
          warm; bit-identical)
   0.1.18 attn: prefill units of 512 (query, head) rows, 256 where that would leave fewer
          than two units per thread (16-core Xeon, one thread, f32 d=128: 1.07-1.14x; 16
          threads 1.00-1.03x; Zen 3 1.01-1.08x; bit-identical; workspace 746 KiB per thread
          at d=128)
   0.1.19 attn: prefill tiles prefetch the next tile's K/V rows into L2 during their softmax
          (16-core Xeon, one thread, f32 d=128 s=2048: 1.057-1.074x; 16 threads 1.02-1.04x;
          Zen 3 0.99-1.01x; bit-identical; see FA__PREFETCH_NEXT); under a block-sparse mask
          the tile that comes next is the next kept block's, not the keys after this one
   0.1.20 attn: the AVX2 row softmax takes a row's partial last block through lane masks,
          with its padding lanes zeroed before the exp (a -inf there made the exp's
          2^n scaling produce denormals, which Zen 3 runs slowly), instead of a scalar loop
          and two store-forwarding stalls; rows shorter than a tile take no branch on their
          length and no masked store (microcoded on AMD). Partial rows 64.5 -> 47 ns on Zen 3
          (full rows 38); sliding windows 1.024-1.070x, s=1000 1.026x, causal 1.004x;
          bit-identical
   0.1.21 attn: a tile's run of visible queries and each one's key range come from the two
          diagonal edges of the query's range (fa__row_edges, fa__tile_queries) instead of
          two binary searches and a call per query: a causal diagonal block's row ranges
          0.17 -> 0.065 TSC ticks per pair (Zen 3, bench/probe_causal/phases.sh); sliding
          windows, where every tile is partial, 1.014-1.035x; bit-identical

   LICENSE: MIT or public domain, your choice; see the end of this file.
*/
#ifndef FLASHATTN_H
#define FLASHATTN_H

#define FLASHATTN_VERSION_MAJOR 0
#define FLASHATTN_VERSION_MINOR 1
#define FLASHATTN_VERSION_PATCH 21
#define FLASHATTN_VERSION_STRING "0.1.21"
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
    int64_t num_splits;               /* KV splits per query tile (split-KV), equal in size; 0 =
                                         choose (splits that shrink as they go, for balance) */
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

/* Bounded lock-free ring queues of fixed-size items.

   fa_spsc  single producer, single consumer. One thread pushes, one thread pops (each side may
            change threads only with outside synchronisation). The try and bulk operations are
            wait-free: a bounded number of steps, no loops on contention. Each slot carries a
            sequence word that publishes its item, so the consumer reads the slot itself and
            never the producer's position; the producer keeps a cached copy of the consumer's
            position and reads the shared one only when the cache says full.
   fa_mpmc  any number of producers and consumers: Dmitry Vyukov's bounded MPMC queue (a ring of
            slots, each with its own sequence number that says whose turn the slot is), with
            consecutive positions spread over different cache lines. The try operations never
            wait and never take a lock: each is a few atomic loads and a CAS that is retried
            only when another thread made progress (or spuriously, on LL/SC machines), after a
            short bounded backoff. As in every array queue of this
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
   fa_mpmc_storage_size() bytes, 8-byte aligned; FA_CACHELINE-aligned memory keeps the MPMC
   slots from straddling lines), else the ring comes from
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
    unsigned char *ring;            /* mask+1 slots of slot_size bytes: [sequence][item] */
    size_t mask;                    /* ring slots - 1 (slots are a power of two >= capacity) */
    size_t capacity;                /* items the queue holds */
    size_t elem_size;               /* bytes per item */
    size_t slot_size;               /* bytes per slot (a sequence word + the item, 8-aligned) */
    size_t ring_bytes;              /* bytes allocated (0 = caller storage) */
    fa_allocator alloc;             /* copy of the allocator (zero = default) */
    int blocking;                   /* fa_queue_desc.blocking */
    FA__ATOMIC(uint32_t) closed;    /* set once by close */
    FA__QPAD(pad0_, 0);            /* read-mostly fields above, hot counters below */
    FA__ATOMIC(size_t) prod_pos;    /* items ever pushed; written by the producer only, read
                                       by the size queries (pops read the slots' sequences) */
    size_t cons_cache;              /* producer's last view of cons_pos */
    FA__QPAD(pad1_, 2 * sizeof(size_t));
    FA__ATOMIC(size_t) cons_pos;    /* items ever popped; written by the consumer only */
    FA__QPAD(pad2_, sizeof(size_t));
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
    size_t rmask, lmask;            /* position -> slot remap (see fa__mpmc_index): lines - 1, */
    unsigned rshift, lshift;        /* slots per line - 1, log2(lines), log2(slots per line) */
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
    /* How long an idle worker, and a parallel_for caller waiting for its helpers, keep polling
       before they sleep. Waking a sleeping thread costs 5-100+ us (most in virtual machines),
       which is the whole of a short decode step; a model's next call usually comes sooner.
       0 = FA_POOL_DEFAULT_SPIN_NS when the workers and the caller fit the CPUs, else a few
       polls only; < 0 = a few polls only; at most FA_POOL_MAX_SPIN_NS (1 s). */
    int64_t spin_ns;
} fa_pool_desc;
#define FA_POOL_DEFAULT_SPIN_NS 100000
#define FA_POOL_MAX_SPIN_NS 1000000000

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
/* g++ 12 with optimisation flags the AVX-512 intrinsics' own placeholder (_mm512_undefined_*, a
   self-initialised variable) as uninitialised wherever they are inlined (GCC bug 105593). In
   C++ the implementation is compiled with those two warnings off, so -Wall -Werror builds pass;
   C builds (and this project's tests) keep them. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__cplusplus)
#define FA__GXX_DIAG 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

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

/* Unrolls the loop that follows completely, so a small array of vectors it indexes can live in
   registers: gcc -O2 does not unroll such loops by itself and keeps the array in memory. */
#if defined(__CUDACC__) /* nvcc's front end and its host compiler agree on no spelling */
#define FA__UNROLL
#elif defined(__clang__)
#define FA__UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && __GNUC__ >= 8
#define FA__UNROLL _Pragma("GCC unroll 16")
#else
#define FA__UNROLL
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
/* An Intel core (set with the detected features, before any kernel runs). It steers the
   decode kernels' prefetch (see FA__DEC_PREFETCH) and which kernels compute S for bf16 prefill
   (FA__BF16_PAIRS_PAY: the last bits of those results differ between Intel and AMD). */
static int fa__cpu_intel;

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
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    fa__cpu_intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu; /* "GenuineIntel" */
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

/* The mask section's interface to the kernel (defined in the mask implementation below). */
static int64_t fa__mask_block_q(const fa_mask *m);
static int64_t fa__mask_block_k(const fa_mask *m);
static void fa__mask_blocks(const fa_mask *m, int64_t b, int64_t h, int64_t qblk, const int32_t **full,
                            int64_t *nfull, const int32_t **partial, int64_t *npartial);
static int fa__mask_keep_partial(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k, int64_t pos);
static int fa__mask_visible(const fa_mask *m, int64_t b, int64_t h, int64_t q, int64_t k);
static int fa__mask_same_layout(const fa_mask *m, int64_t h0, int64_t h1);
static int fa__mask_has_score(const fa_mask *m);
static float fa__mask_score(const fa_mask *m, float s, int64_t b, int64_t h, int64_t q, int64_t k);
static fa_status fa__mask_check(const fa_mask *m, int64_t batch, int64_t heads_q, int64_t seqlen_q_max,
                                int64_t seqlen_k_max);

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
    default: /* FP8: the fp8 section's vectorised decode, scaled in f32 */
        fa__convert(dst, FA_F32, src, t, (size_t)n, mul, 0);
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

/* fa__store_row for the fast paths: f16 / bf16 rows through the vectorized conversion of the
   fp8 section (bit for bit the scalar one); the reference keeps the scalar loop. */
static void fa__store_row_fast(void *dst, fa_dtype t, const float *src, int64_t n)
{
    if ((t == FA_F16 || t == FA_BF16) && n > 0) fa__convert(dst, t, src, FA_F32, (size_t)n, 1.0f, 0);
    else fa__store_row(dst, t, src, n);
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
    size_t ws_bytes;          /* whole workspace: workers' scratch, split partials, unit index */
    size_t ws_worker;         /* scratch of one worker */
    int64_t workers;          /* pool workers + the calling thread (1 without a pool) */
    int64_t heads_per_unit, q_per_unit, n_hchunks; /* unit shape: see fa__attn_unit */
    int64_t unit_rows;        /* rows of the largest unit, heads_per_unit * q_per_unit <= FA__ROWS */
    int64_t kv_per_unit;      /* kv heads per unit: 1, or all of them for decode (see schedule) */
    int64_t units;            /* work units before KV splitting */
    int64_t splits;           /* KV splits per unit (split-KV / FlashDecoding); 1 = none */
    int64_t split_min;        /* > 0: splits shrink as they go (fa__split_tiles), none below this many pieces */
    int64_t split_keys;       /* keys per piece of the shrinking splits: FA__BK, or FA__DEC_SPLIT_KEYS (decode) */
    int64_t split_div;        /* each shrinking split takes 1/split_div of the pieces left */
    size_t parts_off, prefix_off; /* workspace offsets of split partials and the varlen index */
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

/* Key j's K and V rows for head h of batch b, as byte pointers (see fa__kv_offsets). */
static void fa__kv_rows(const fa__attn_plan *p, const fa__seq *s, int64_t b, int64_t j, int64_t h,
                        const unsigned char **kr, const unsigned char **vr)
{
    int64_t ko, vo;
    fa__kv_offsets(p, s, b, j, h, &ko, &vo);
    *kr = (const unsigned char *)fa__elem_ptr(p->d->k, p->d->k_type, ko);
    *vr = (const unsigned char *)fa__elem_ptr(p->d->v, p->d->v_type, vo);
}

/* Where row (query i, head h) of sequence s goes: its output row and its LSE slot. */
static void *fa__out_row(const fa__attn_plan *p, const fa__seq *s, int64_t i, int64_t h)
{
    return (unsigned char *)p->d->o +
           (s->o_base + (s->q_tok0 + i) * p->os.seq + h * p->os.head) * (int64_t)fa_dtype_size(p->d->o_type);
}
static void fa__put_lse(const fa__attn_plan *p, const fa__seq *s, int64_t i, int64_t h, float lse)
{
    if (p->d->lse) p->d->lse[s->l_base + h * p->ls.head + (s->q_tok0 + i) * p->ls.seq] = lse;
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

/* fa__row_range's two edges as diagonals: lo(i) = max(0, i + *lo_off), hi(i) = min(sk, i +
   *hi_off), with offsets far out of range (but safe to add a row index to) where an edge is
   absent. The tile code takes a run of queries' ranges from these without a call per query. */
static void fa__row_edges(const fa__attn_plan *p, const fa__seq *s, int64_t *lo_off, int64_t *hi_off)
{
    *lo_off = p->win_left >= 0 ? s->off - p->win_left : INT64_MIN / 4;
    *hi_off = INT64_MAX / 4;
    if (p->d->causal) *hi_off = s->off + 1;
    if (p->win_right >= 0 && s->off + p->win_right + 1 < *hi_off) *hi_off = s->off + p->win_right + 1;
}

/* Of queries i0 .. i0 + nq - 1 (offsets 0 .. nq - 1), the run [*qa, *qb) whose ranges meet the
   key tile [j0, j1) (0 <= j0 < j1 <= sk): *qa is the first whose range ends past j0 (i + hi_off >
   j0, as j0 < sk), *qb the first from *qa on whose range starts at or past j1 (i + lo_off >= j1,
   as j1 > 0); both nq when there is none. */
static void fa__tile_queries(int64_t lo_off, int64_t hi_off, int64_t i0, int64_t nq, int64_t j0, int64_t j1,
                             int64_t *qa, int64_t *qb)
{
    int64_t a = j0 - hi_off + 1 - i0, b = j1 - lo_off - i0;
    a = a < 0 ? 0 : a > nq ? nq : a;
    *qa = a;
    *qb = b < a ? a : b > nq ? nq : b;
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

/* (query, head) rows of a work unit. Each K/V tile is loaded, converted and transposed once for
   all of a unit's rows: 128 rows gave 1.02-1.13x against 64, and 256 another 1.01-1.09x against
   128 (dev, f32/bf16/f16 prefill, 1-2 threads, bit-identical results), for 422 KiB of workspace
   per thread at d=128 (246 at d=64). A tile skips the rows that see none of its keys, so the
   larger diagonal block of a causal unit costs no more (without that, 2 threads at s=512 ran
   0.90-0.96x). Masked units keep to the mask's query blocks (FA_ATTN_BLOCK_Q).
   512 rows: K/V streamed from L3 half as often and each tile's fixed work (K transpose, row
   search, prefetch) spread over twice the rows: 1.07-1.14x against 256 on one thread of the
   16-core Xeon host (f32 d=128 s=2048 non-causal 1.09-1.14x, causal 1.07-1.08x, s=4096 causal
   1.10x, bf16 1.03x; 16 threads 1.00-1.03x), 0.996-1.014x on the 2-core Zen 3 VM, the same
   results to the bit; 746 KiB of workspace per thread at d=128 (442 at d=64). Where 512-row
   units would leave fewer than two units per thread, units of half the queries (down to
   FA__ROWS_FEW rows) keep the threads fed as before. */
#define FA__ROWS 512
#define FA__ROWS_FEW 256
#define FA__BK FA_ATTN_BLOCK_K
/* Decode's shrinking KV splits (fa__attn_schedule) are cut in pieces of this many keys, and each
   takes 1/workers of what is left: the last splits of a call are 16 keys (64 KiB of bf16 K and V
   at 32 q-heads / 8 kv-heads, d=128), where whole 64-key tiles left a thread up to a 256 KiB
   split behind the others at the end of a cold 4096-key call, for about as many splits. */
#define FA__DEC_SPLIT_KEYS 16
static size_t fa__round64(size_t x) { return (x + 63) & ~(size_t)63; }
static int64_t fa__dvp(int64_t dv) { return (dv + 15) & ~(int64_t)15; }
/* floats per split-KV partial row: head_dim_v outputs padded to 16, then the LSE in a line of
   its own (see fa__part_o) */
static int64_t fa__part_stride(int64_t dv) { return fa__dvp(dv) + 16; }
struct fa__attn_ws;
static size_t fa__attn_ws_layout(struct fa__attn_ws *w, unsigned char *base, int64_t dk, int64_t dv);

/* Guided splits of `tiles` pieces of keys: each split takes 1/div of the pieces still left, at
   least `minsz` (and at most what is left). fa__split_tiles gives split `k`'s pieces [*t0, *t1)
   (empty past the last), walking no further than split k; with k < 0 it walks them all and
   returns their number (fa__split_count), which never grows with minsz. */
static int64_t fa__split_tiles(int64_t tiles, int64_t div, int64_t minsz, int64_t k, int64_t *t0, int64_t *t1)
{
    int64_t pos = 0, n = 0, c;
    *t0 = *t1 = tiles;
    for (; pos < tiles; n++, pos += c) {
        c = (tiles - pos + div - 1) / div;
        if (c < minsz) c = minsz;
        if (c > tiles - pos) c = tiles - pos;
        if (n == k) {
            *t0 = pos;
            *t1 = pos + c;
            return n + 1;
        }
    }
    return n;
}
static int64_t fa__split_count(int64_t tiles, int64_t div, int64_t minsz)
{
    int64_t t0, t1;
    return fa__split_tiles(tiles, div, minsz, -1, &t0, &t1);
}

/* Work decomposition and workspace size. A unit is (sequence, kv head, chunk of the query heads
   of its group, tile of queries) with at most FA__ROWS (query, head) rows: whole GQA groups
   when they fit, so one K/V tile serves every head that reads it. When there are fewer units
   than twice the threads and the keys are many (decode), each unit's keys are split in
   `splits` ranges (about four pieces per thread, whole key tiles each) whose partial results
   are merged by LSE afterwards (FlashDecoding). */
static fa_status fa__attn_schedule(fa__attn_plan *p)
{
    const fa_attn_desc *d = p->d;
    int64_t b, units = 0, per_b_fixed, ksum = 0, t, ws_splits;
    size_t bytes, parts = 0, prefix = 0;
    p->workers = 1;
    if (d->pool && fa_pool_size(d->pool) > 0) p->workers = (int64_t)fa_pool_size(d->pool) + 1;
    p->heads_per_unit = p->group < FA__ROWS ? p->group : FA__ROWS;
    if (d->mask && p->group > 1 && !fa__mask_same_layout(d->mask, 0, p->group - 1))
        p->heads_per_unit = 1; /* per-query-head layouts: a unit must read one block list */
    /* Decode (one query per sequence) with several kv heads: one unit takes every head, and
       each key tile is done for all kv heads in turn. With the usual token-major K/V layout a
       head's rows are a whole token apart, so a one-head unit touches a new page every token or
       two; taking the heads together reads each token's rows as one run, and the TLB entries
       and prefetched lines serve every head. */
    p->kv_per_unit = 1;
    if (p->sq_max == 1 && !d->mask && p->hkv > 1 && 2 * p->group <= FA__ROWS) {
        int64_t k; /* as many kv heads as fit in FA__ROWS rows, dividing heads_kv evenly */
        for (k = FA__ROWS / p->group; k > 1 && p->hkv % k; k--) {}
        p->kv_per_unit = k;
        p->heads_per_unit = p->group * k;
    }
    p->q_per_unit = FA__ROWS / p->heads_per_unit;
    if (d->mask) { /* a unit's queries must lie in one query block of the mask */
        int64_t a = p->q_per_unit, bq = fa__mask_block_q(d->mask);
        while (bq) { int64_t t2 = a % bq; a = bq; bq = t2; } /* gcd */
        p->q_per_unit = a;
    }
    p->n_hchunks = (p->group * p->kv_per_unit + p->heads_per_unit - 1) / p->heads_per_unit;
    per_b_fixed = p->hkv / p->kv_per_unit * p->n_hchunks;
    for (;;) {
        units = 0;
        if (!d->cu_seqlens_q) {
            if (fa__mul_i64(per_b_fixed, (p->sq_max + p->q_per_unit - 1) / p->q_per_unit, &t) ||
                fa__mul_i64(t, p->batch, &units))
                return fa__fail(FA_ERR_OVERFLOW, "the number of work units overflows int64");
        } else {
            for (b = 0; b < p->batch; b++) {
                int64_t sq = (int64_t)d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
                if (fa__mul_i64(per_b_fixed, (sq + p->q_per_unit - 1) / p->q_per_unit, &t) ||
                    fa__add_i64(units, t, &units))
                    return fa__fail(FA_ERR_OVERFLOW, "the number of work units overflows int64");
            }
        }
        /* too few units of FA__ROWS rows for the threads: units of half as many queries, as
           long as they stay at FA__ROWS_FEW rows or more (see FA__ROWS) */
        if (units >= 2 * p->workers || p->sq_max <= 1 || p->q_per_unit % 2 ||
            p->heads_per_unit * (p->q_per_unit / 2) < FA__ROWS_FEW)
            break;
        p->q_per_unit /= 2;
    }
    p->unit_rows = p->heads_per_unit * (p->sq_max < 1 ? 1 : p->sq_max < p->q_per_unit ? p->sq_max : p->q_per_unit);
    /* the longest key range decides whether splitting pays */
    ksum = p->sk_max;
    if (d->seqused_k || d->cu_seqlens_k)
        for (ksum = 0, b = 0; b < p->batch; b++) {
            int64_t sk = d->seqused_k ? d->seqused_k[b] : (int64_t)d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
            if (sk > ksum) ksum = sk;
        }
    p->units = units;
    if (d->num_splits > 0) p->splits = d->num_splits;
    else if (units > 0 && units < 2 * p->workers && ksum >= 4 * FA__BK)
        p->splits = (4 * p->workers + units - 1) / units; /* ~4 pieces per thread: balance */
    else p->splits = 1;
    if (p->splits > 1 && p->splits > (ksum + FA__BK - 1) / FA__BK) p->splits = (ksum + FA__BK - 1) / FA__BK;
    if (p->splits < 1) p->splits = 1;
    /* the workspace holds this many splits' partials: the same for any longer key range, so a
       workspace sized once serves a growing KV cache */
    ws_splits = p->splits;
    if (!d->num_splits && p->splits > 1 && p->splits > ksum / (4 * FA__BK)) {
        /* at least 4 key tiles per split: each split costs a Q load, a partial row write and
           its share of the merge (16-core Xeon, 4096-key decode: 16 splits 66 GB/s, 64: 48);
           but a short cache still gets a split per thread, down to one tile each (16-core Xeon,
           512 keys: 2 splits of 4 tiles took 141 us, all on 2 threads). Both stay within
           ws_splits. */
        int64_t per_thread = (p->workers + units - 1) / units, tiles = (ksum + FA__BK - 1) / FA__BK;
        p->splits = ksum / (4 * FA__BK);
        if (per_thread > tiles) per_thread = tiles;
        if (p->splits < per_thread) p->splits = per_thread;
        if (p->splits < 1) p->splits = 1;
    }
    p->split_min = 0;
    p->split_keys = FA__BK; /* equal splits (num_splits) are whole tiles */
    p->split_div = 2 * p->workers;
    if (!d->num_splits && p->splits > 1) { /* the count above only decides whether to split */
        /* Splits that shrink as they go (guided self-scheduling, with fixed boundaries so the
           result does not depend on timing): equal splits end when the slowest thread ends its
           last one, and on a shared machine some threads run far slower than others (16-core
           Xeon VM, 8192-key decode: 4 of 16 threads took 1.6x as long for the same split, and
           with 2 splits each the call ended ~110 us after most threads were idle). The smallest
           split that keeps the count within ws_splits. */
        int64_t tiles, lo = 1, hi, m;
        if (p->sq_max == 1) { /* decode: see FA__DEC_SPLIT_KEYS */
            p->split_keys = FA__DEC_SPLIT_KEYS;
            p->split_div = p->workers;
        }
        tiles = (ksum + p->split_keys - 1) / p->split_keys;
        p->splits = fa__split_count(tiles, p->split_div, 1);
        if (p->splits > ws_splits) { /* the smallest minimum whose count fits (the count never grows with it) */
            lo = 2;
            hi = tiles; /* one split of everything */
            while (lo < hi) {
                m = lo + (hi - lo) / 2;
                if (fa__split_count(tiles, p->split_div, m) > ws_splits) lo = m + 1;
                else hi = m;
            }
            p->splits = fa__split_count(tiles, p->split_div, lo);
        }
        p->split_min = lo;
    }
    p->ws_worker = fa__attn_ws_layout(NULL, NULL, p->dk, p->dv);
    if (fa__mul_size(p->ws_worker, (size_t)p->workers, &bytes))
        return fa__fail(FA_ERR_OVERFLOW, "workspace size overflows size_t");
    if (ws_splits > 1) {
        /* per (unit, split): unit_rows rows of head_dim_v outputs and one LSE each (fa__part_o) */
        if (fa__mul_size((size_t)units, (size_t)ws_splits, &parts) ||
            fa__mul_size(parts, (size_t)(p->unit_rows * fa__part_stride(p->dv)) * sizeof(float), &parts))
            return fa__fail(FA_ERR_OVERFLOW, "split-KV workspace size overflows size_t");
    }
    if (d->cu_seqlens_q) prefix = (size_t)(p->batch + 1) * sizeof(int64_t);
    p->parts_off = bytes;
    if (fa__add_size(bytes, fa__round64(parts), &bytes)) return fa__fail(FA_ERR_OVERFLOW, "workspace size overflows size_t");
    p->prefix_off = bytes;
    if (fa__add_size(bytes, fa__round64(prefix), &bytes)) return fa__fail(FA_ERR_OVERFLOW, "workspace size overflows size_t");
    p->ws_bytes = bytes;
    return FA_OK;
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
    if (d->mask && (st = fa__mask_check(d->mask, p->batch, p->hq, p->sq_max, p->sk_max)) != FA_OK) return st;
    /* A window side larger than any distance is the same as unbounded; clamping keeps the
       diagonal arithmetic far from int64 limits. */
    if (p->win_left > p->sq_max + p->sk_max) p->win_left = p->sq_max + p->sk_max;
    if (p->win_right > p->sq_max + p->sk_max) p->win_right = p->sq_max + p->sk_max;

    if ((st = fa__attn_schedule(p)) != FA_OK) return st;
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

   Layouts in the workspace (f32): q [FA__ROWS][dk] (pad rows zero), krows [FA__BK][dk] (the K
   tile as loaded), kt [dk][FA__BK] (transposed, missing keys zero), v [FA__BK][dvp] and
   o [FA__ROWS][dvp] with dvp = dv rounded up to 16 (pad columns zero), s [FA__ROWS][FA__BK].
   With bf16 Q and K on AVX512_BF16, q, krows and kt hold raw bf16 pairs in 32-bit words
   instead, and S comes from vdpbf16ps (two exact products per lane, f32 sums).

   The micro-kernels exist as scalar, AVX2+FMA, AVX-512 (F and BW; + AVX512_BF16) and NEON
   versions, chosen once per call from fa_cpu_features(). The K tile is transposed with 16x16
   in-register transposes on AVX-512 (element-wise elsewhere, where decode-sized units dot each
   K row with the few queries instead). K/V rows are prefetched FA__PREFETCH keys ahead. The exp used by the
   vector versions is a Cephes-style degree-6 polynomial on [-ln2/2, ln2/2] with exact 2^n
   scaling: <= 1 ulp measured on [ln FLT_MIN, ln FLT_MAX] (tests/test_attn.c checks <= 2 against
   double exp), +inf above, exactly 0 below ln FLT_MIN (where the true value is at least 2^-126
   times smaller than the row's largest term, which is 1), NaN for NaN; the scalar path flushes
   the same way. */

#define FA__MR 4 /* rows per micro-kernel block */
#define FA__FEW_ROWS 4 /* up to this many rows (decode), S is computed by dots as K streams in */
#define FA__DEC_ROWS 8 /* up to this many rows, kernels with dec_qk read K and V in place */
/* K/V rows this many keys ahead are prefetched: a row of one head is a few cache lines, and the
   next is a whole token (all heads) further on, so the hardware's stream prefetcher sees only
   short runs. */
#ifndef FA__PREFETCH
#define FA__PREFETCH 16
#endif
/* Decode tiles of one kv head also ask for each K/V row this many keys ahead into L2 (a tile
   ahead): a decode tile is short, so the 16-key L1 prefetch alone leaves the next tile's first rows in flight
   (dev, 2 threads, bf16, 32768 keys, token-major: 12.0 -> 18.1 GB/s against 25.9 for a copy). */
#ifndef FA__AHEAD
#define FA__AHEAD 64
#endif
/* Prefill tiles (not paged) ask for the next tile's K and V rows into L2 a few lines
   at a time during their rows' softmax, so that the next tile's K transpose and P V find them
   there rather than in L3: on one thread of the 16-core Xeon host (0.1.18 against this,
   bench/ab.sh) f32 d=128 s=2048 non-causal 1.066-1.074x, causal 1.057-1.074x, 8 heads s=1024
   1.087x, f16 1.029x, bf16 causal 1.011x, AVX2 kernels 1.046x; 16 threads 1.02-1.04x (and
   1.24x on a noisy pair); 0.99-1.01x on the Zen 3 VM, whose L3 answers sooner; bit-identical.
   The caller names the tile that comes next (fa__unit_ctx.knext): under a block-sparse mask it
   is the next kept block's first, which the keys after this tile often are not (Zen 3, s=4096,
   BigBird-style masks at 10% / 25% density, against prefetching the keys after: 1.009x, 1.030x). */
#ifndef FA__PREFETCH_NEXT
#define FA__PREFETCH_NEXT 1
#endif
/* Prefetches the cache lines of [p, p + bytes): LOC is __builtin_prefetch's locality (3: into L1,
   2: into L2, 0: non-temporal); a constant, hence a macro. The decode kernels issue it four
   times per key, so the usual row sizes (128, 256, 512 bytes) go without the loop: on the Zen 5
   dev VM the loop's compares and adds cost 6-12 cycles per key in L1, and dropping them gave
   f16 decode 1.08-1.10x, bf16 1.05x, bf16 Q and K/V 1.23x, f32 1.04x (2 threads, 32768 keys,
   cold), bit-identical. */
#if defined(__GNUC__) || defined(__clang__)
#define FA__PREFETCH_LINES(p, bytes, LOC)                                                       \
    do {                                                                                       \
        const char *c_ = (const char *)(p);                                                    \
        size_t off_, n_ = (bytes);                                                             \
        if (n_ == 128 || n_ == 256 || n_ == 512) { /* d=64/128 rows: no loop */                 \
            __builtin_prefetch(c_, 0, LOC);                                                    \
            __builtin_prefetch(c_ + 64, 0, LOC);                                               \
            if (n_ >= 256) {                                                                   \
                __builtin_prefetch(c_ + 128, 0, LOC);                                          \
                __builtin_prefetch(c_ + 192, 0, LOC);                                          \
            }                                                                                  \
            if (n_ == 512) {                                                                   \
                __builtin_prefetch(c_ + 256, 0, LOC);                                          \
                __builtin_prefetch(c_ + 320, 0, LOC);                                          \
                __builtin_prefetch(c_ + 384, 0, LOC);                                          \
                __builtin_prefetch(c_ + 448, 0, LOC);                                          \
            }                                                                                  \
        } else {                                                                               \
            for (off_ = 0; off_ < n_; off_ += 64) __builtin_prefetch(c_ + off_, 0, LOC);       \
        }                                                                                      \
    } while (0)
#else
#define FA__PREFETCH_LINES(p, bytes, LOC) ((void)(p), (void)(bytes))
#endif

/* The decode kernels' prefetch for key j of krow / vrow, the rows ko / vo bytes on (see dec_qk's
   contract). mh (FA__DEC_MH): bit 0, a unit of several kv heads read in key order; bit 1, K
   ahead into L2 rather than L1. K FA__PREFETCH keys ahead; one kv head: this key's V into L1
   and both FA__AHEAD keys ahead into L2; several heads: this key's V into L2 only.
   K's locality follows the core. On Intel a software prefetch holds one of the core's few L1
   fill buffers until its line arrives, so L1 prefetches a block ahead stall the loads behind
   them: on the 16-core Xeon host, 32/8 heads, d 128, bf16, K ahead into L2 gave 16 threads
   113 GB/s from L3 (66 into L1) and 122 from memory (96), and the full call 1.05x at 32768
   keys cold (1.01x at 4096). On Zen 5 the same change lost 8-10% (2 threads, cold): AMD
   keeps L1 prefetches. */
#define FA__DEC_MH(nh) (((nh) > 1 ? 1 : 0) | (fa__cpu_intel ? 2 : 0))
/* Prefill with bf16 Q and K: S from bf16 pairs (K->qk_bf16, AVX512_BF16 dot products, no
   widening) where that pays, else from the f32 kernels on Q and K widened to f32 (exactly) as
   for any other type. The pairs pay on AMD (Zen 5: bf16 about 1.3x f32) but not on Intel: on the
   16-core Xeon host (AVX512_BF16) the f32 kernels ran 1.22-1.36x faster on bf16 (one thread,
   s=2048, causal and not) and 1.30x on 16 threads, where the pairs had run below f32 inputs. */
#if defined(FA__X86)
#define FA__BF16_PAIRS_PAY (!fa__cpu_intel)
#else
#define FA__BF16_PAIRS_PAY 1
#endif
/* FA__PREFETCH_LINES into L2 when l2 is true, else into L1 (the locality must be a constant) */
#define FA__PREFETCH_L1_OR_L2(p, bytes, l2)                                                       \
    do {                                                                                       \
        if (l2) FA__PREFETCH_LINES(p, bytes, 2);                                               \
        else FA__PREFETCH_LINES(p, bytes, 3);                                                  \
    } while (0)
#define FA__DEC_PREFETCH(krow, vrow, j, ko, vo, kbytes, vbytes, mh)                              \
    do {                                                                                       \
        if ((krow)[(j) + FA__PREFETCH])                                                        \
            FA__PREFETCH_L1_OR_L2((const char *)(krow)[(j) + FA__PREFETCH] + (ko), kbytes, (mh) & 2); \
        FA__PREFETCH_L1_OR_L2((const char *)(vrow)[j] + (vo), vbytes, (mh) & 1);                \
        if (!((mh) & 1) && (krow)[(j) + FA__AHEAD]) {                                           \
            FA__PREFETCH_LINES((const char *)(krow)[(j) + FA__AHEAD] + (ko), kbytes, 2);        \
            FA__PREFETCH_LINES((const char *)(vrow)[(j) + FA__AHEAD] + (vo), vbytes, 2);        \
        }                                                                                      \
    } while (0)

#define FA__QK_CHUNK 32 /* head dims summed before adding into S: error grows with chunk + dk/chunk, not dk */
#define FA__EXP_LO (-87.3365478515625f) /* ln(FLT_MIN): below it exp() flushes to 0 */
#define FA__EXP_HI 88.72283935546875f     /* ln(FLT_MAX), rounded down: above it exp() is +inf */


/* max that propagates NaN: once a NaN logit is seen the row's max, and so its output, is NaN */
static float fa__nanmax(float a, float b)
{
    if (a != a) return a;
    if (b != b) return b;
    return a > b ? a : b;
}

/* The reference a row's exponentials are taken against, after a tile whose largest logit is mx
   (NaN if any is), the row's reference so far being m_old. Lazy rescaling: while mx stays within
   FA__RESCALE_SLACK of the old reference the reference stays (the tile's p = exp(s - m_old) are
   at most e^8, far from overflow, and O / l does not depend on the reference), so the row's
   outputs and sum need no rescale (an expf and a pass over dv floats) at most of the tiles
   where the max rises (Zen 5, one thread, s=2048: non-causal 1.035x, causal 1.023x; decode
   1.027x). */
#define FA__RESCALE_SLACK 8.0f
static float fa__softmax_ref(float m_old, float mx)
{
    if (m_old > -INFINITY && mx <= m_old + FA__RESCALE_SLACK) return m_old; /* false for NaN */
    return fa__nanmax(m_old, mx);
}

typedef struct fa__attn_kernels {
    const char *name;
    /* s[r][0..FA__BK) = sum_d q[r][d] * kt[d][.] for r < rows (rows a multiple of FA__MR). ncols
       (NULL = all): row group g (rows g*FA__MR..) needs only keys [ncols[2g], ncols[2g+1]),
       multiples of 16 (a causal diagonal tile, a window's left edge); the kernel may leave the
       rest of its rows unwritten. */
    void (*qk)(const float *q, int64_t dk, const float *kt, float *s, int64_t rows, const int32_t *ncols);
    /* s[0..n) *= scale; returns the NaN-propagating max (or -inf for n = 0) */
    float (*scale_max)(float *s, int64_t n, float scale);
    /* s[i] = exp(s[i] - m) in place; returns the sum */
    float (*exp_sum)(float *s, int64_t n, float m);
    /* o[0..n) *= c */
    void (*scale)(float *o, int64_t n, float c);
    /* o[r][0..dvp) += sum_{c0[r] <= c < c1[r]} s[r][c] * v[c][0..dvp) for r < nrows */
    void (*pv)(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows, const int32_t *c0,
               const int32_t *c1);
    /* dst[0..n) = src[0..n) * mul converted to f32 (fa__load_row, vectorised) */
    void (*load)(float *dst, const void *src, fa_dtype t, int64_t n, float mul);
    /* sum_i a[i] * b[i] */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* kt[e][c] = kr[c * krs + e] for c < nk, 0 for nk <= c < FA__BK (kt has FA__BK columns) */
    void (*ktrans)(float *kt, const float *kr, int64_t krs, int64_t nk, int64_t dk);
    /* units of at most this many rows (decode) compute S by dots as K streams in, instead of
       transposing the tile; 0 = always transpose (where the transpose is in registers) */
    int dot_rows;
    /* bf16 Q and K (AVX512_BF16): S from pairs of bf16 products summed in f32, no conversion.
       q: [rows][np] and kt: [np][FA__BK] hold bf16 pairs (dims 2p, 2p+1) in 32-bit words;
       ktrans32 builds kt from kr [nk][np] as ktrans does. NULL where unavailable. */
    void (*qk_bf16)(const uint32_t *q, int64_t np, const uint32_t *kt, float *s, int64_t rows);
    void (*ktrans32)(uint32_t *kt, const uint32_t *kr, int64_t nk, int64_t np);
    /* decode tiles (at most FA__DEC_ROWS rows, head dims multiples of 16): S and P V straight
       from the K and V rows where they lie (krow[j], vrow[j]: key j's rows; entries up to
       nk + FA__AHEAD, NULL past the keys, drive the prefetch of kpf / vpf bytes per K / V row:
       krow[j + FA__PREFETCH] and vrow[j] into L1, both FA__AHEAD keys ahead into L2).
       dec_qk: s[r][j] = q[r] . k_j for r < nrows (q padded to a multiple of 4 rows). dec_pv: as pv, from vrow. NULL where unavailable.
       nh > 1: nh kv heads of nrows rows each, head g's rows after g * nrows, its K / V row of
       key j at krow[j] + g * khs / vrow[j] + g * vhs bytes. dec_qk takes a head's rows in
       groups of 4: with nrows not a multiple of 4 the last group runs into the next head's
       first rows, which that head then writes again, and past the last head's rows by up to 3
       (q and s must have them; zero queries). Blocks
       of keys go through every head in turn, V is prefetched into L2 by dec_qk and a block
       ahead into L1 by dec_pv (vpf bytes per row; 0 = none), and nothing FA__AHEAD keys ahead
       (the rows are read in address order, which the hardware prefetchers stream). E4M3 K/V
       are read as value / 256 (the IEEE half their bits make, without the exact scale by 256:
       the caller puts the 256 into the logits' scale and P's, with the same bits). */
    void (*dec_qk)(const float *q, int64_t dk, const void *const *krow, const void *const *vrow, fa_dtype kt,
                   int64_t nk, float *s, int64_t nrows, int64_t nh, size_t khs, size_t vhs, size_t kpf, size_t vpf);
    void (*dec_pv)(float *o, int64_t dvp, const float *p, const void *const *vrow, fa_dtype vt, int64_t dv,
                   int64_t nrows, int64_t nh, size_t vhs, size_t vpf, const int32_t *c0, const int32_t *c1);
    int dec_fp8; /* dec_qk / dec_pv also read FP8 K/V */
    /* dec_qk for bf16 Q and bf16 K (AVX512_BF16): q holds each row's bf16 pairs (np 32-bit
       words per row, as qk_bf16's); the same S, prefetch and padding contract. NULL where
       unavailable. */
    void (*dec_qk_bf16)(const uint32_t *q, int64_t np, const void *const *krow, const void *const *vrow,
                        int64_t nk, float *s, int64_t nrows, int64_t nh, size_t khs, size_t vhs, size_t kpf, size_t vpf);
    /* scale_max then exp_sum on one row of n <= FA__BK scores, fused: s[0..n) = exp(s * scale -
       m) with m = fa__softmax_ref(m_old, max of s * scale), returned, and the sum in *sum; the same
       values bit for bit as the two calls. NULL where unavailable (the two calls then). */
    float (*softmax_row)(float *s, int64_t n, float scale, float m_old, float *sum);
    /* the split-KV merge: for k = 0, 1, .. nk-1 in turn, with w[k] != 0, acc[0..n) += w[k] *
       x[k * xs + 0..n) by fused multiply-adds (the last bit may differ from the scalar loop's;
       skipped parts are never read: an empty part's values may be anything). The
       accumulators stay in registers across the parts, and the parts a few ahead are
       prefetched. NULL: the scalar loop. */
    void (*wsum_rows)(float *acc, const float *x, int64_t xs, const float *w, int64_t nk, int64_t n);
} fa__attn_kernels;

/* ---- scalar ---- */
static float fa__dot_f32(const float *a, const float *b, int64_t n)
{
    /* eight partial sums: shorter dependency chains, rounding error that grows with n/8 */
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    int k;
    for (; i + 8 <= n; i += 8)
        for (k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    for (k = 0; i < n; i++, k++) acc[k] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void fa__qk_scalar(const float *q, int64_t dk, const float *kt, float *s, int64_t rows, const int32_t *ncols)
{
    int64_t r, d, c, d0;
    float acc[FA__BK];
    for (r = 0; r < rows; r++) {
        float *sr = s + r * FA__BK;
        int64_t c0 = ncols ? ncols[2 * (r / FA__MR)] : 0, nc = ncols ? ncols[2 * (r / FA__MR) + 1] : FA__BK;
        for (c = c0; c < nc; c++) sr[c] = 0.0f;
        for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
            int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
            for (c = c0; c < nc; c++) acc[c] = 0.0f;
            for (d = d0; d < d1; d++) {
                float qv = q[r * dk + d];
                const float *kr = kt + d * FA__BK;
                for (c = c0; c < nc; c++) acc[c] += qv * kr[c];
            }
            for (c = c0; c < nc; c++) sr[c] += acc[c];
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

static void fa__ktrans_scalar(float *kt, const float *kr, int64_t krs, int64_t nk, int64_t dk)
{
    int64_t c, e;
    for (e = 0; e < dk; e++) {
        float *dst = kt + e * FA__BK;
        for (c = 0; c < nk; c++) dst[c] = kr[c * krs + e];
        for (; c < FA__BK; c++) dst[c] = 0.0f;
    }
}

static const fa__attn_kernels fa__kernels_scalar = {
    "scalar", fa__qk_scalar, fa__scale_max_scalar, fa__exp_sum_scalar, fa__scale_scalar, fa__pv_scalar,
    fa__load_row, fa__dot_f32, fa__ktrans_scalar, FA__FEW_ROWS, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL};

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

/* The union of the non-empty intervals of a block's rows, [*a, *b) (empty: *a >= *b): the
   prefill P V kernels take the keys in it outside the intersection with each row masked. */
static FA__UNUSED void fa__pv_union(int64_t nr, const int32_t *c0, const int32_t *c1, int64_t *a, int64_t *b)
{
    int64_t r;
    *a = FA__BK;
    *b = 0;
    for (r = 0; r < nr; r++)
        if (c0[r] < c1[r]) {
            if (c0[r] < *a) *a = c0[r];
            if (c1[r] > *b) *b = c1[r];
        }
}

#if defined(FA__X86)
/* Bit i set when byte i of b is an E4M3 NaN code (0x7f or 0xff); SSE2, shared by the AVX2 and
   AVX-512 FP8 loads, which decode the other codes through IEEE halves. */
static inline __attribute__((target("sse2"))) int fa__e4m3_nan_bits(__m128i b)
{
    return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(b, _mm_set1_epi8(0x7f)), _mm_set1_epi8(0x7f)));
}

/* A vector the register-blocked kernels load once and use for several rows' FMAs is pinned to
   a register here. Left alone, gcc 12 with -march=native on Zen (tuning for znver3) folds the
   load into each FMA as a memory operand: four loads where one was written, the load ports
   saturate, and prefill f32 ran at 0.53x of the same code built without -march (Zen 5, 1
   thread, s=2048, d=128). An empty asm that claims to change the value keeps it in a register;
   it emits no instruction. */
#define FA__KEEP_YMM(x) __asm__("" : "+x"(x))
#define FA__KEEP_ZMM(x) __asm__("" : "+v"(x))

/* ---- AVX2 + FMA ---- */
#define FA__AVX2 __attribute__((target("avx2,fma,f16c"))) /* chosen only when all three exist */
#define FA__AVX2_AI static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* The part of fa__exp256 and fa__exp256_le88 after the clamp: xc = n ln2 + r, |r| <= ln2 / 2
   (ln2 in two parts), and the degree-6 polynomial; returns y = e^r, n in *n. */
FA__AVX2_AI __m256 fa__exp256_poly(__m256 xc, __m256 *n_out)
{
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    __m256 p, r2;
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    *n_out = n;
    return _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
}

static FA__AVX2 __m256 fa__exp256(__m256 x)
{
    /* clamped to [lo, 89] with NaN passing through, as in fa__exp512 (n = 128 overflows the
       product of the two factors below to +inf; a NaN's garbage exponent meets a NaN y) */
    const __m256 lo = _mm256_set1_ps(FA__EXP_LO), top = _mm256_set1_ps(89.0f);
    __m256 n, res, y = fa__exp256_poly(_mm256_min_ps(top, _mm256_max_ps(lo, x)), &n);
    /* n in [-126, 128]: split 2^n into two factors so n = 128 does not overflow the exponent */
    __m256i e = _mm256_cvtps_epi32(n);
    {
        __m256i e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
        __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, _mm256_set1_epi32(127)), 23));
        __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, _mm256_set1_epi32(127)), 23));
        res = _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
    }
    return _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ)); /* below lo: 0 */
}

/* The rank-1 step of the AVX2 S and P V blocks: accumulators A<I>0..A<I>2 (the third when NV > 2)
   += the broadcast *SRC times W0..W2 */
#define FA__AVX2_FMA3(A, I, SRC, W0, W1, W2, NV)                                                  \
    do {                                                                                          \
        __m256 b_ = _mm256_broadcast_ss(SRC);                                                     \
        A##I##0 = _mm256_fmadd_ps(b_, W0, A##I##0);                                               \
        A##I##1 = _mm256_fmadd_ps(b_, W1, A##I##1);                                               \
        if ((NV) > 2) A##I##2 = _mm256_fmadd_ps(b_, W2, A##I##2);                                 \
    } while (0)

/* The width, in vectors of 8, of the next AVX2 block over rem (a multiple of 16) keys or dims:
   24 where the rest stays a multiple of 8 that splits into 24s and 16s (64 = 24 + 16 + 24,
   48 = 24 + 24, 32 = 16 + 16) */
static int fa__avx2_nv(int64_t rem) { return rem >= 48 || rem == 24 ? 3 : 2; }

/* S for 4 rows x 8*NV keys from key h (NV 2 or 3): 4*NV accumulators, NV K vectors and the
   broadcast Q value fit the 16 registers (4 x 32 keys needs 17, and the compiler then spills
   accumulators and reloads each K vector for every row: Zen 1, 1 thread, d=128 s=2048, QK at 70%
   of the FMA rate) */
FA__AVX2_AI void fa__qk_block_avx2(const float *q, int64_t dk, const float *kt, float *s, int64_t r, int64_t h,
                                   int NV)
{
    int64_t d, d0;
    for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
        int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
        /* named accumulators: gcc -O2 keeps a loop-indexed array of them in memory */
        __m256 z = _mm256_setzero_ps();
        __m256 a00 = z, a01 = z, a02 = z, a10 = z, a11 = z, a12 = z;
        __m256 a20 = z, a21 = z, a22 = z, a30 = z, a31 = z, a32 = z;
        for (d = d0; d < d1; d++) {
            const float *kr = kt + d * FA__BK + h;
            __m256 k0 = _mm256_loadu_ps(kr), k1 = _mm256_loadu_ps(kr + 8);
            __m256 k2 = NV > 2 ? _mm256_loadu_ps(kr + 16) : z;
            FA__KEEP_YMM(k0);
            FA__KEEP_YMM(k1);
            if (NV > 2) FA__KEEP_YMM(k2);
            FA__AVX2_FMA3(a, 0, q + r * dk + d, k0, k1, k2, NV);
            FA__AVX2_FMA3(a, 1, q + (r + 1) * dk + d, k0, k1, k2, NV);
            FA__AVX2_FMA3(a, 2, q + (r + 2) * dk + d, k0, k1, k2, NV);
            FA__AVX2_FMA3(a, 3, q + (r + 3) * dk + d, k0, k1, k2, NV);
        }
#define FA__QK_ST(I, J)                                                                           \
    do {                                                                                          \
        float *dst = s + (r + I) * FA__BK + h + 8 * J;                                            \
        _mm256_storeu_ps(dst, d0 ? _mm256_add_ps(_mm256_loadu_ps(dst), a##I##J) : a##I##J);       \
    } while (0)
#define FA__QK_ST_ROW(I)                                                                          \
    do {                                                                                          \
        FA__QK_ST(I, 0); FA__QK_ST(I, 1);                                                         \
        if (NV > 2) FA__QK_ST(I, 2);                                                              \
    } while (0)
        FA__QK_ST_ROW(0);
        FA__QK_ST_ROW(1);
        FA__QK_ST_ROW(2);
        FA__QK_ST_ROW(3);
#undef FA__QK_ST_ROW
#undef FA__QK_ST
    }
}

static FA__AVX2 void fa__qk_avx2(const float *q, int64_t dk, const float *kt, float *s, int64_t rows,
                                 const int32_t *ncols)
{
    int64_t r, h, end;
    for (r = 0; r < rows; r += FA__MR) { /* each group of 4 rows: its keys in blocks of 24 and 16 */
        h = ncols ? ncols[2 * (r / FA__MR)] : 0;
        end = ncols ? ncols[2 * (r / FA__MR) + 1] : FA__BK;
        while (h < end) {
            if (fa__avx2_nv(end - h) == 3) fa__qk_block_avx2(q, dk, kt, s, r, h, 3);
            else fa__qk_block_avx2(q, dk, kt, s, r, h, 2);
            h += 8 * fa__avx2_nv(end - h);
        }
    }
}

/* The pieces of a row's softmax that scale_max, exp_sum and the fused softmax_row share, so the
   fused row runs the same operations in the same order as the two calls. */
/* the largest of the 8 lanes of vm (lane 0 first); NaN if a lane of nan is set */
FA__AVX2_AI float fa__row_max_avx2(__m256 vm, __m256 nan)
{
    float mx, buf[8];
    int k;
    _mm256_storeu_ps(buf, vm);
    mx = buf[0];
    for (k = 1; k < 8; k++) mx = buf[k] > mx ? buf[k] : mx;
    return _mm256_movemask_ps(nan) ? NAN : mx;
}

/* The lanes of an 8-lane block that hold `left` (<= 0: none, >= 8: all) of a row's scores. A
   row's last, partial block goes through these masks, so a tail costs no scalar loop and no
   store-to-load forwarding stall (a causal diagonal tile has a different tail in each row: with
   the scalar tail its rows took 1.7x a full row's time on Zen 3). */
FA__AVX2_AI __m256i fa__lanes_avx2(int64_t left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 0 ? 0 : left > 8 ? 8 : left)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* the block at s times vs in the lanes of k, -inf in the others (which no max and no exp then
   sees) */
FA__AVX2_AI __m256 fa__masked_in_avx2(const float *s, __m256i k, __m256 vs)
{
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_mul_ps(_mm256_maskload_ps(s, k), vs), _mm256_castsi256_ps(k));
}

FA__AVX2_AI float fa__row_sum_avx2(__m256 acc)
{
    float buf[8];
    _mm256_storeu_ps(buf, acc);
    return ((buf[0] + buf[4]) + (buf[1] + buf[5])) + ((buf[2] + buf[6]) + (buf[3] + buf[7]));
}

static FA__AVX2 float fa__scale_max_avx2(float *s, int64_t n, float scale)
{
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + i), vs);
        _mm256_storeu_ps(s + i, x);
        vm = _mm256_max_ps(vm, x);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    }
    if (i < n) { /* the tail, masked */
        const __m256i k = fa__lanes_avx2(n - i);
        __m256 x = fa__masked_in_avx2(s + i, k, vs);
        _mm256_maskstore_ps(s + i, k, x);
        vm = _mm256_max_ps(vm, x);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    }
    return fa__row_max_avx2(vm, nan);
}

static FA__AVX2 float fa__exp_sum_avx2(float *s, int64_t n, float m)
{
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = fa__exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, p);
        acc = _mm256_add_ps(acc, p);
    }
    if (i < n) { /* the tail, masked: same polynomial as the body, padding lanes 0 in the sum */
        const __m256i k = fa__lanes_avx2(n - i);
        __m256 p = _mm256_and_ps(_mm256_castsi256_ps(k),
                                 fa__exp256(_mm256_and_ps(_mm256_castsi256_ps(k), _mm256_sub_ps(_mm256_maskload_ps(s + i, k), vm))));
        _mm256_maskstore_ps(s + i, k, p);
        acc = _mm256_add_ps(acc, p);
    }
    return fa__row_sum_avx2(acc);
}

/* fa__exp256 for x <= 88 (or NaN), which is all a row's softmax meets (x = s - m <= the rescale
   slack): 2^n has no overflow to guard against there (n <= 127), so it is one factor instead of
   two. y 2^n rounds once either way, so the results are fa__exp256's bit for bit. */
FA__AVX2_AI __m256 fa__exp256_le88(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(FA__EXP_LO);
    __m256 n, y = fa__exp256_poly(_mm256_max_ps(lo, x), &n); /* (lo, x): a NaN goes through */
    __m256 f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), _mm256_mul_ps(y, f)); /* below lo: 0 */
}

/* scale_max then exp_sum on a row of n <= FA__BK scores, fused as fa__softmax_row_avx512: the
   row's 8-lane blocks stay in registers between the two passes, and the same operations run in
   the same order (the max over the blocks, its lanes; the exps' sum in the same order), so the
   results are the two calls' bit for bit. A full row takes the blocks as they are; a shorter
   one takes all FA__BK / 8 blocks through lane masks (fa__lanes_avx2), without a branch on its
   length: the blocks past its end are -inf in the max and 0 in the sum, which changes neither.
   The exps use fa__exp256_le88: x = s * scale - m is at most FA__RESCALE_SLACK (m is at least
   the row's max less the slack), or NaN. */
static FA__AVX2 float fa__softmax_row_avx2(float *s, int64_t n, float scale, float m_old, float *sum)
{
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 x[FA__BK / 8], vm = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps(), mv, acc = _mm256_setzero_ps();
    __m256i k[FA__BK / 8];
    float m;
    int64_t i;
    if (n == FA__BK) {
        FA__UNROLL
        for (i = 0; i < FA__BK / 8; i++) {
            x[i] = _mm256_mul_ps(_mm256_loadu_ps(s + 8 * i), vs);
            vm = _mm256_max_ps(vm, x[i]);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(x[i], x[i], _CMP_UNORD_Q));
        }
        m = fa__softmax_ref(m_old, fa__row_max_avx2(vm, nan));
        mv = _mm256_set1_ps(m);
        FA__UNROLL
        for (i = 0; i < FA__BK / 8; i++) {
            __m256 p = fa__exp256_le88(_mm256_sub_ps(x[i], mv));
            _mm256_storeu_ps(s + 8 * i, p);
            acc = _mm256_add_ps(acc, p);
        }
        *sum = fa__row_sum_avx2(acc);
        return m;
    }
    FA__UNROLL
    for (i = 0; i < FA__BK / 8; i++) { /* a block wholly past the row reads no memory: its mask is 0 */
        k[i] = fa__lanes_avx2(n - 8 * i);
        x[i] = fa__masked_in_avx2(s + (8 * i < n ? 8 * i : 0), k[i], vs);
        vm = _mm256_max_ps(vm, x[i]);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(x[i], x[i], _CMP_UNORD_Q));
    }
    m = fa__softmax_ref(m_old, fa__row_max_avx2(vm, nan));
    mv = _mm256_set1_ps(m);
    {
        /* whole blocks to s, the partial one to tail, those past the row to dump: no branch on
           n, and no masked store (microcoded on AMD cores: with them these rows took 2.8x the
           scalar tail's time on Zen 3) */
        float tail[8], dump[8], *td;
        const int64_t nb = n / 8, t = n - 8 * nb;
        FA__UNROLL
        for (i = 0; i < FA__BK / 8; i++) {
            __m256 p = _mm256_and_ps(_mm256_castsi256_ps(k[i]), fa__exp256_le88(_mm256_and_ps(_mm256_castsi256_ps(k[i]), _mm256_sub_ps(x[i], mv))));
            _mm256_storeu_ps(8 * i + 8 <= n ? s + 8 * i : i == nb ? tail : dump, p);
            acc = _mm256_add_ps(acc, p);
        }
        td = t ? s + 8 * nb : dump; /* the tail's t lanes, the last one repeated (no branch on t) */
        FA__UNROLL
        for (i = 0; i < 8; i++) {
            const int64_t e = i < t ? i : t > 0 ? t - 1 : 0;
            td[e] = tail[e];
        }
    }
    *sum = fa__row_sum_avx2(acc);
    return m;
}

static FA__AVX2 void fa__wsum_rows_avx2(float *acc, const float *x, int64_t xs, const float *w, int64_t nk, int64_t n)
{
    int64_t e = 0, k;
    for (; e + 64 <= n; e += 64) { /* 8 accumulators through every part */
        __m256 a0 = _mm256_loadu_ps(acc + e), a1 = _mm256_loadu_ps(acc + e + 8), a2 = _mm256_loadu_ps(acc + e + 16);
        __m256 a3 = _mm256_loadu_ps(acc + e + 24), a4 = _mm256_loadu_ps(acc + e + 32), a5 = _mm256_loadu_ps(acc + e + 40);
        __m256 a6 = _mm256_loadu_ps(acc + e + 48), a7 = _mm256_loadu_ps(acc + e + 56);
        for (k = 0; k < nk; k++) {
            const float *r = x + k * xs + e;
            __m256 vw;
            if (k + 4 < nk) FA__PREFETCH_LINES(r + 4 * xs, 256, 3);
            if (w[k] == 0.0f) continue;
            vw = _mm256_set1_ps(w[k]);
            a0 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r), a0);
            a1 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 8), a1);
            a2 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 16), a2);
            a3 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 24), a3);
            a4 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 32), a4);
            a5 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 40), a5);
            a6 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 48), a6);
            a7 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(r + 56), a7);
        }
        _mm256_storeu_ps(acc + e, a0); _mm256_storeu_ps(acc + e + 8, a1); _mm256_storeu_ps(acc + e + 16, a2);
        _mm256_storeu_ps(acc + e + 24, a3); _mm256_storeu_ps(acc + e + 32, a4); _mm256_storeu_ps(acc + e + 40, a5);
        _mm256_storeu_ps(acc + e + 48, a6); _mm256_storeu_ps(acc + e + 56, a7);
    }
    for (; e < n; e++) {
        float a = acc[e];
        for (k = 0; k < nk; k++)
            if (w[k] != 0.0f) a = fmaf(w[k], x[k * xs + e], a);
        acc[e] = a;
    }
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
    if (a >= b) return; /* no keys: no pass over the row */
    for (e = 0; e < dvp; e += 8) {
        __m256 acc = _mm256_loadu_ps(o + e);
        for (c = a; c < b; c++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(sr + c), _mm256_loadu_ps(v + c * dvp + e), acc);
        _mm256_storeu_ps(o + e, acc);
    }
}

/* O += P V for 4 rows x 8*NV dims from dim e (NV 2 or 3) over keys [a, b): 4*NV accumulators,
   NV V vectors and the broadcast P value, at most the 16 registers. Named accumulators: gcc -O2
   keeps a loop-indexed array of them in memory. */
FA__AVX2_AI void fa__pv_block_avx2(float *o, const float *s, const float *v, int64_t dvp, int64_t r, int64_t e,
                                   int64_t a, int64_t b, const int32_t *r0, const int32_t *r1, int64_t ua, int64_t ub,
                                   int NV)
{
    float *o0 = o + r * dvp + e, *o1 = o0 + dvp, *o2 = o1 + dvp, *o3 = o2 + dvp;
    const float *s0 = s + r * FA__BK;
    __m256 z = _mm256_setzero_ps();
    __m256 x00 = _mm256_loadu_ps(o0), x01 = _mm256_loadu_ps(o0 + 8), x02 = NV > 2 ? _mm256_loadu_ps(o0 + 16) : z;
    __m256 x10 = _mm256_loadu_ps(o1), x11 = _mm256_loadu_ps(o1 + 8), x12 = NV > 2 ? _mm256_loadu_ps(o1 + 16) : z;
    __m256 x20 = _mm256_loadu_ps(o2), x21 = _mm256_loadu_ps(o2 + 8), x22 = NV > 2 ? _mm256_loadu_ps(o2 + 16) : z;
    __m256 x30 = _mm256_loadu_ps(o3), x31 = _mm256_loadu_ps(o3 + 8), x32 = NV > 2 ? _mm256_loadu_ps(o3 + 16) : z;
    int64_t c;
    for (c = a; c < b; c++) {
        const float *vr = v + c * dvp + e;
        __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8), v2 = NV > 2 ? _mm256_loadu_ps(vr + 16) : z;
        FA__KEEP_YMM(v0);
        FA__KEEP_YMM(v1);
        if (NV > 2) FA__KEEP_YMM(v2);
        FA__AVX2_FMA3(x, 0, s0 + c, v0, v1, v2, NV);
        FA__AVX2_FMA3(x, 1, s0 + FA__BK + c, v0, v1, v2, NV);
        FA__AVX2_FMA3(x, 2, s0 + 2 * FA__BK + c, v0, v1, v2, NV);
        FA__AVX2_FMA3(x, 3, s0 + 3 * FA__BK + c, v0, v1, v2, NV);
    }
    /* the keys outside [a, b) that some of the rows see (a staircase edge), after the common
       ones as the rows' own loops took them; a row adds only the keys it sees (no blend: the 16
       registers are taken) */
    for (c = ua; c < ub; c++) {
        const float *vr = v + c * dvp + e;
        __m256 v0, v1, v2;
        if (c == a && a < b) {
            c = b - 1;
            continue;
        }
        v0 = _mm256_loadu_ps(vr);
        v1 = _mm256_loadu_ps(vr + 8);
        v2 = NV > 2 ? _mm256_loadu_ps(vr + 16) : z;
        if (c >= r0[0] && c < r1[0]) FA__AVX2_FMA3(x, 0, s0 + c, v0, v1, v2, NV);
        if (c >= r0[1] && c < r1[1]) FA__AVX2_FMA3(x, 1, s0 + FA__BK + c, v0, v1, v2, NV);
        if (c >= r0[2] && c < r1[2]) FA__AVX2_FMA3(x, 2, s0 + 2 * FA__BK + c, v0, v1, v2, NV);
        if (c >= r0[3] && c < r1[3]) FA__AVX2_FMA3(x, 3, s0 + 3 * FA__BK + c, v0, v1, v2, NV);
    }
    _mm256_storeu_ps(o0, x00); _mm256_storeu_ps(o0 + 8, x01);
    _mm256_storeu_ps(o1, x10); _mm256_storeu_ps(o1 + 8, x11);
    _mm256_storeu_ps(o2, x20); _mm256_storeu_ps(o2 + 8, x21);
    _mm256_storeu_ps(o3, x30); _mm256_storeu_ps(o3 + 8, x31);
    if (NV > 2) {
        _mm256_storeu_ps(o0 + 16, x02); _mm256_storeu_ps(o1 + 16, x12);
        _mm256_storeu_ps(o2 + 16, x22); _mm256_storeu_ps(o3 + 16, x32);
    }
}

static FA__AVX2 void fa__pv_avx2(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows,
                                 const int32_t *c0, const int32_t *c1)
{
    int64_t r, e, i, a, b, ua, ub;
    for (r = 0; r < nrows; r += FA__MR) {
        int64_t nr = nrows - r < FA__MR ? nrows - r : FA__MR;
        if (nr < FA__MR) { /* the last rows, fewer than a block: row by row */
            for (i = 0; i < nr; i++)
                fa__pv_row_avx2(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, c0[r + i], c1[r + i]);
            continue;
        }
        /* the 4 rows at once over the union of their keys, the dims in blocks of 24 and 16, as
           fa__qk_avx2's keys: 12 independent sums where they fit, for cores that need 10 to
           cover the FMA latency */
        fa__pv_common(nr, c0 + r, c1 + r, &a, &b);
        fa__pv_union(nr, c0 + r, c1 + r, &ua, &ub);
        if (ua >= ub) continue; /* no row sees a key */
        for (e = 0; e < dvp; e += 8 * fa__avx2_nv(dvp - e)) {
            if (fa__avx2_nv(dvp - e) == 3) fa__pv_block_avx2(o, s, v, dvp, r, e, a, b, c0 + r, c1 + r, ua, ub, 3);
            else fa__pv_block_avx2(o, s, v, dvp, r, e, a, b, c0 + r, c1 + r, ua, ub, 2);
        }
    }
}

/* kt[e][c] = kr[c * krs + e] (see fa__ktrans_scalar) by 8 x 8 blocks transposed in registers;
   the dims past a multiple of 8 and the keys past one go element by element */
static FA__AVX2 void fa__ktrans_avx2(float *kt, const float *kr, int64_t krs, int64_t nk, int64_t dk)
{
    int64_t c, e, c8 = nk & ~(int64_t)7, e8 = dk & ~(int64_t)7;
    int i;
    for (c = 0; c < c8; c += 8)
        for (e = 0; e < e8; e += 8) {
            __m256 x[8], t[8];
            for (i = 0; i < 8; i++) x[i] = _mm256_loadu_ps(kr + (c + i) * krs + e);
            for (i = 0; i < 4; i++) {
                t[2 * i] = _mm256_unpacklo_ps(x[2 * i], x[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(x[2 * i], x[2 * i + 1]);
            }
            for (i = 0; i < 2; i++) { /* t[0..3] rows 0-3, t[4..7] rows 4-7 */
                x[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
                x[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
                x[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
                x[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
            }
            for (i = 0; i < 4; i++) { /* x[i]: dims i and 4 + i of rows 0-3; x[4 + i]: of rows 4-7 */
                _mm256_storeu_ps(kt + (e + i) * FA__BK + c, _mm256_permute2f128_ps(x[i], x[4 + i], 0x20));
                _mm256_storeu_ps(kt + (e + 4 + i) * FA__BK + c, _mm256_permute2f128_ps(x[i], x[4 + i], 0x31));
            }
        }
    for (e = 0; e < dk; e++) {
        float *dst = kt + e * FA__BK;
        for (c = e < e8 ? c8 : 0; c < nk; c++) dst[c] = kr[c * krs + e];
        for (c = nk; c < FA__BK; c++) dst[c] = 0.0f;
    }
}

/* f16 (F16C), bf16 (a 16-bit shift) and FP8 rows to f32, 8 at a time */
static FA__AVX2 void fa__load_avx2(float *dst, const void *src, fa_dtype t,
                                   int64_t n, float mul)
{
    __m256 vm = _mm256_set1_ps(mul);
    int64_t i = 0;
    if (t == FA_BF16) {
        const uint16_t *s16 = (const uint16_t *)src;
        for (; i + 8 <= n; i += 8) {
            __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s16 + i)));
            _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x, 16)), vm));
        }
    } else if (t == FA_F16) {
        const uint16_t *s16 = (const uint16_t *)src;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s16 + i))), vm));
    } else if (t == FA_F32) {
        const float *s32 = (const float *)src;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_loadu_ps(s32 + i), vm));
    } else if (t == FA_E4M3) {
        /* through an IEEE half worth value / 256 (see fa__e4m3x16_avx512); mul * 256 is exact, so
           each element is rounded once, as in the scalar decode. 8 codes with a NaN go scalar. */
        const uint8_t *s8 = (const uint8_t *)src;
        const __m256 vm256 = _mm256_set1_ps(mul * 256.0f);
        for (; i + 8 <= n; i += 8) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(s8 + i)), x = _mm_cvtepu8_epi16(b);
            __m128i h = _mm_and_si128(_mm_srai_epi16(_mm_slli_epi16(x, 8), 1), _mm_set1_epi16((short)0xbf80));
            if (FA__UNLIKELY(fa__e4m3_nan_bits(b) & 0xff)) { /* the upper 8 bytes are zero */
                fa__load_row(dst + i, s8 + i, t, 8, mul);
                continue;
            }
            _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(h), vm256));
        }
    } else if (t == FA_E5M2) { /* the top byte of an IEEE half */
        const uint8_t *s8 = (const uint8_t *)src;
        for (; i + 8 <= n; i += 8) {
            __m128i h = _mm_slli_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(s8 + i))), 8);
            _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(h), vm));
        }
    }
    if (i < n) fa__load_row(dst + i, fa__elem_ptr(src, t, i), t, n - i, mul);
}

static FA__AVX2 float fa__dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    float buf[8], r;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    _mm256_storeu_ps(buf, _mm256_add_ps(s0, s1));
    r = ((buf[0] + buf[4]) + (buf[1] + buf[5])) + ((buf[2] + buf[6]) + (buf[3] + buf[7]));
    return i < n ? r + fa__dot_f32(a + i, b + i, n - i) : r;
}

/* The rows of a decode P V, shared by the SIMD variants: in each group of 4 rows, the keys all
   four see take one 4-row body, the rest of each row's keys a 1-row body. CALL(NR, A, B, ROW)
   runs the body for NR rows from ROW over keys [A, B); nrows, c0 and c1 are the caller's. */
/* The block loop of dec_qk: blocks of BL keys, each for every head in turn (the K rows in
   address order), each head's rows in groups of 4 (or one row); the first group of a head's
   rows issues the prefetch. BODY is the ISA's body for one block, instantiated per K type. */
#define FA__DEC_QK_HEADS(BODY, BL)                                                                \
    do {                                                                                          \
        int64_t j0_, g_, r_;                                                                      \
        const int mh_ = FA__DEC_MH(nh);                                                           \
        switch (kt) {                                                                             \
            FA__DEC_QK_HEADS_T(BODY, BL, FA_F32) FA__DEC_QK_HEADS_T(BODY, BL, FA_F16)             \
            FA__DEC_QK_HEADS_T(BODY, BL, FA_BF16) FA__DEC_QK_HEADS_T(BODY, BL, FA_E4M3)           \
            FA__DEC_QK_HEADS_T(BODY, BL, FA_E5M2)                                                 \
        default: break;                                                                           \
        }                                                                                         \
    } while (0)
#define FA__DEC_QK_HEADS_T(BODY, BL, T)                                                           \
    case T:                                                                                       \
        for (j0_ = 0; j0_ < nk; j0_ += (BL))                                                      \
            for (g_ = 0; g_ < nh; g_++)                                                           \
                for (r_ = 0; r_ < nrows; r_ += 4) {                                               \
                    const float *qr_ = q + (g_ * nrows + r_) * dk;                                \
                    float *sr_ = s + (g_ * nrows + r_) * FA__BK + j0_;                            \
                    int64_t n_ = nk - j0_ < (BL) ? nk - j0_ : (BL);                               \
                    size_t k1_ = r_ ? 0 : kb, v1_ = r_ ? 0 : vb;                                  \
                    if (nrows - r_ == 1)                                                          \
                        BODY(qr_, dk, krow + j0_, vrow + j0_, n_, sr_, T, 1, k1_, v1_, (size_t)g_ * khs, \
                             (size_t)g_ * vhs, mh_);                                              \
                    else                                                                          \
                        BODY(qr_, dk, krow + j0_, vrow + j0_, n_, sr_, T, 4, k1_, v1_, (size_t)g_ * khs, \
                             (size_t)g_ * vhs, mh_);                                              \
                }                                                                                 \
        break;

/* The decode P V calls of rows [R0, R0 + nrows) over keys [J0, J1): groups of 4 rows over the
   keys all of them see, single rows over the rest */
#define FA__DEC_PV_ROWS(CALL, R0, J0, J1)                                                         \
    do {                                                                                          \
        int64_t r_, i_, a_, b_;                                                                   \
        for (r_ = (R0); r_ < (R0) + nrows; r_ += 4) {                                             \
            int64_t nr_ = (R0) + nrows - r_ < 4 ? (R0) + nrows - r_ : 4;                          \
            fa__pv_common(nr_, c0 + r_, c1 + r_, &a_, &b_);                                       \
            if (a_ < (J0)) a_ = (J0);                                                             \
            if (b_ > (J1)) b_ = (J1);                                                             \
            if (nr_ == 4 && a_ < b_) {                                                            \
                CALL(4, a_, b_, r_)                                                               \
            } else {                                                                              \
                a_ = b_ = 0;                                                                      \
            }                                                                                     \
            for (i_ = r_; i_ < r_ + nr_; i_++) {                                                  \
                int64_t lo_ = c0[i_] > (J0) ? c0[i_] : (J0), hi_ = c1[i_] < (J1) ? c1[i_] : (J1); \
                if (a_ >= b_) {                                                                   \
                    if (lo_ < hi_) CALL(1, lo_, hi_, i_)                                          \
                    continue;                                                                     \
                }                                                                                 \
                if (lo_ < a_) CALL(1, lo_, a_, i_)                                                \
                if (b_ < hi_) CALL(1, b_, hi_, i_)                                                \
            }                                                                                     \
        }                                                                                         \
    } while (0)

/* The block loop of dec_pv: one head, the whole tile; several heads, blocks of 16 keys each for
   every head in turn (the V rows in address order), the next block's V rows into L1 first */
#define FA__DEC_PV_HEADS(CALL)                                                                    \
    do {                                                                                          \
        int64_t g_, jb_, nk_ = 0, i_, bl_ = nh > 1 ? 16 : FA__BK;                                 \
        for (i_ = 0; i_ < nh * nrows; i_++)                                                       \
            if (c1[i_] > nk_) nk_ = c1[i_];                                                       \
        for (jb_ = 0; jb_ < nk_; jb_ += bl_)                                                      \
            for (g_ = 0; g_ < nh; g_++) {                                                         \
                const size_t vo = (size_t)g_ * vhs;                                               \
                int64_t jp_;                                                                      \
                for (jp_ = jb_ + bl_; vpf && jp_ < jb_ + 2 * bl_ && jp_ < nk_; jp_++)             \
                    FA__PREFETCH_LINES((const char *)vrow[jp_] + vo, vpf, 3);                     \
                FA__DEC_PV_ROWS(CALL, g_ * nrows, jb_, jb_ + bl_);                                \
            }                                                                                     \
    } while (0)

/* ---- AVX2 decode kernels: the AVX-512 design (see there) in 8 lanes, for K/V of every type
   (FP8 decoded as the AVX-512 kernels do) ---- */
FA__AVX2_AI __m256 fa__ld8_avx2(const void *src, int64_t i, fa_dtype t)
{
    switch (t) {
    case FA_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i))), 16));
    case FA_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i)));
    case FA_E4M3: { /* as fa__e4m3x16_avx512: an IEEE half worth the value / 256, left so (the
                       decode kernels' contract: the caller's scales carry the 256) */
        const __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)((const uint8_t *)src + i));
        const __m128i x = _mm_cvtepu8_epi16(b);
        const __m128i h = _mm_and_si128(_mm_srai_epi16(_mm_slli_epi16(x, 8), 1), _mm_set1_epi16((short)0xbf80));
        __m256 f = _mm256_cvtph_ps(h);
        if (FA__UNLIKELY(fa__e4m3_nan_bits(b) & 0xff)) /* 0x7f / 0xff: NaN in those lanes */
            f = _mm256_blendv_ps(f, _mm256_set1_ps(NAN),
                                 _mm256_castsi256_ps(_mm256_cvtepi8_epi32(
                                     _mm_cmpeq_epi8(_mm_and_si128(b, _mm_set1_epi8(0x7f)), _mm_set1_epi8(0x7f)))));
        return f;
    }
    case FA_E5M2: /* E5M2 is the top byte of an IEEE half */
        return _mm256_cvtph_ps(_mm_slli_epi16(
            _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)((const uint8_t *)src + i))), 8));
    default: return _mm256_loadu_ps((const float *)src + i);
    }
}

/* lane j of the result = sum of the 8 lanes of a[j] */
FA__AVX2_AI __m256 fa__hsum8x8_avx2(const __m256 *a)
{
    __m256 b[4], c0, c1;
    int i;
    FA__UNROLL
    for (i = 0; i < 4; i++)
        b[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    c0 = _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], 0x44), _mm256_shuffle_ps(b[0], b[1], 0xee));
    c1 = _mm256_add_ps(_mm256_shuffle_ps(b[2], b[3], 0x44), _mm256_shuffle_ps(b[2], b[3], 0xee));
    return _mm256_add_ps(_mm256_permute2f128_ps(c0, c1, 0x20), _mm256_permute2f128_ps(c0, c1, 0x31));
}

FA__AVX2_AI void fa__dec_qk_body_avx2(const float *q, int64_t dk, const void *const *krow, const void *const *vrow,
                                      int64_t nk, float *s, fa_dtype t, int nr, size_t kbytes, size_t vbytes, size_t ko,
                                      size_t vo, int mh)
{
    __m256 acc[4][8];
    float tmp[8];
    int64_t j, e;
    int r;
    { /* one block: the caller passes at most 8 keys */
        const int64_t n = nk;
        for (j = 0; j < n; j++) {
            const void *kr = (const char *)krow[j] + ko;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            if (kbytes) FA__DEC_PREFETCH(krow, vrow, j, ko, vo, kbytes, vbytes, mh);
            for (e = 0; e < dk; e += 16) { /* dk is a multiple of 16 */
                __m256 k0 = fa__ld8_avx2(kr, e, t), k1 = fa__ld8_avx2(kr, e + 8, t);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), k0, a0);
                b0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e + 8), k1, b0);
                if (nr > 1) {
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + dk + e), k0, a1);
                    b1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + dk + e + 8), k1, b1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 2 * dk + e), k0, a2);
                    b2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 2 * dk + e + 8), k1, b2);
                    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 3 * dk + e), k0, a3);
                    b3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 3 * dk + e + 8), k1, b3);
                }
            }
            acc[0][j] = _mm256_add_ps(a0, b0);
            if (nr > 1) {
                acc[1][j] = _mm256_add_ps(a1, b1);
                acc[2][j] = _mm256_add_ps(a2, b2);
                acc[3][j] = _mm256_add_ps(a3, b3);
            }
        }
        for (; j < 8; j++)
            for (r = 0; r < nr; r++) acc[r][j] = _mm256_setzero_ps();
        for (r = 0; r < nr; r++) {
            if (n == 8) {
                _mm256_storeu_ps(s + r * FA__BK, fa__hsum8x8_avx2(acc[r]));
            } else {
                _mm256_storeu_ps(tmp, fa__hsum8x8_avx2(acc[r]));
                memcpy(s + r * FA__BK, tmp, (size_t)n * sizeof(float));
            }
        }
    }
}

FA__AVX2_AI void fa__dec_pv_body_avx2(float *o, int64_t dvp, const float *p, const void *const *vrow, int64_t a,
                                      int64_t b, int64_t dv, fa_dtype t, int nr, size_t vo)
{
    int64_t e0 = 0, j;
    float *o1 = o + dvp, *o2 = o + 2 * dvp, *o3 = o + 3 * dvp;
    const float *p1 = p + FA__BK, *p2 = p + 2 * FA__BK, *p3 = p + 3 * FA__BK;
    if (nr == 1) {
        for (; e0 + 64 <= dv; e0 += 64) {
            __m256 c0 = _mm256_loadu_ps(o + e0), c1 = _mm256_loadu_ps(o + e0 + 8);
            __m256 c2 = _mm256_loadu_ps(o + e0 + 16), c3 = _mm256_loadu_ps(o + e0 + 24);
            __m256 c4 = _mm256_loadu_ps(o + e0 + 32), c5 = _mm256_loadu_ps(o + e0 + 40);
            __m256 c6 = _mm256_loadu_ps(o + e0 + 48), c7 = _mm256_loadu_ps(o + e0 + 56);
            for (j = a; j < b; j++) {
                const void *vr = (const char *)vrow[j] + vo;
                __m256 pr = _mm256_set1_ps(p[j]);
                c0 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0, t), c0);
                c1 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 8, t), c1);
                c2 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 16, t), c2);
                c3 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 24, t), c3);
                c4 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 32, t), c4);
                c5 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 40, t), c5);
                c6 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 48, t), c6);
                c7 = _mm256_fmadd_ps(pr, fa__ld8_avx2(vr, e0 + 56, t), c7);
            }
            _mm256_storeu_ps(o + e0, c0); _mm256_storeu_ps(o + e0 + 8, c1);
            _mm256_storeu_ps(o + e0 + 16, c2); _mm256_storeu_ps(o + e0 + 24, c3);
            _mm256_storeu_ps(o + e0 + 32, c4); _mm256_storeu_ps(o + e0 + 40, c5);
            _mm256_storeu_ps(o + e0 + 48, c6); _mm256_storeu_ps(o + e0 + 56, c7);
        }
    }
    for (; e0 < dv; e0 += 16) { /* 4 rows (or one row's last dims), 16 dims at a time */
        __m256 x0 = _mm256_loadu_ps(o + e0), x1 = _mm256_loadu_ps(o + e0 + 8);
        __m256 y0 = x0, y1 = x1, z0 = x0, z1 = x1, w0 = x0, w1 = x1;
        if (nr > 1) {
            y0 = _mm256_loadu_ps(o1 + e0); y1 = _mm256_loadu_ps(o1 + e0 + 8);
            z0 = _mm256_loadu_ps(o2 + e0); z1 = _mm256_loadu_ps(o2 + e0 + 8);
            w0 = _mm256_loadu_ps(o3 + e0); w1 = _mm256_loadu_ps(o3 + e0 + 8);
        }
        for (j = a; j < b; j++) {
            const void *vr = (const char *)vrow[j] + vo;
            __m256 v0 = fa__ld8_avx2(vr, e0, t), v1 = fa__ld8_avx2(vr, e0 + 8, t), pb;
            pb = _mm256_set1_ps(p[j]);
            x0 = _mm256_fmadd_ps(pb, v0, x0); x1 = _mm256_fmadd_ps(pb, v1, x1);
            if (nr > 1) {
                pb = _mm256_set1_ps(p1[j]);
                y0 = _mm256_fmadd_ps(pb, v0, y0); y1 = _mm256_fmadd_ps(pb, v1, y1);
                pb = _mm256_set1_ps(p2[j]);
                z0 = _mm256_fmadd_ps(pb, v0, z0); z1 = _mm256_fmadd_ps(pb, v1, z1);
                pb = _mm256_set1_ps(p3[j]);
                w0 = _mm256_fmadd_ps(pb, v0, w0); w1 = _mm256_fmadd_ps(pb, v1, w1);
            }
        }
        _mm256_storeu_ps(o + e0, x0); _mm256_storeu_ps(o + e0 + 8, x1);
        if (nr > 1) {
            _mm256_storeu_ps(o1 + e0, y0); _mm256_storeu_ps(o1 + e0 + 8, y1);
            _mm256_storeu_ps(o2 + e0, z0); _mm256_storeu_ps(o2 + e0 + 8, z1);
            _mm256_storeu_ps(o3 + e0, w0); _mm256_storeu_ps(o3 + e0 + 8, w1);
        }
    }
}

FA__AVX2_AI void fa__dec_qk_body128_avx2(const float *q, int64_t dk, const void *const *krow, const void *const *vrow,
                                         int64_t nk, float *s, fa_dtype t, int nr, size_t kbytes, size_t vbytes,
                                         size_t ko, size_t vo, int mh)
{
    (void)dk;
    fa__dec_qk_body_avx2(q, 128, krow, vrow, nk, s, t, nr, kbytes, vbytes, ko, vo, mh);
}

static FA__AVX2 void fa__dec_qk_avx2(const float *q, int64_t dk, const void *const *krow, const void *const *vrow,
                                     fa_dtype kt, int64_t nk, float *s, int64_t nrows, int64_t nh, size_t khs,
                                     size_t vhs, size_t kb, size_t vb)
{
    if (dk == 128) /* the usual head size, unrolled (see fa__dec_qk_avx512) */
        FA__DEC_QK_HEADS(fa__dec_qk_body128_avx2, 8);
    else
        FA__DEC_QK_HEADS(fa__dec_qk_body_avx2, 8);
}

static FA__AVX2 void fa__dec_pv_avx2(float *o, int64_t dvp, const float *p, const void *const *vrow, fa_dtype vt,
                                     int64_t dv, int64_t nrows, int64_t nh, size_t vhs, size_t vpf, const int32_t *c0,
                                     const int32_t *c1)
{
#define FA__DEC_PV(NR, A, B, ROW)                                                                     \
    switch (vt) {                                                                                     \
    case FA_F32: fa__dec_pv_body_avx2(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_F32, NR, vo); break; \
    case FA_F16: fa__dec_pv_body_avx2(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_F16, NR, vo); break; \
    case FA_BF16: fa__dec_pv_body_avx2(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_BF16, NR, vo); break; \
    case FA_E4M3: fa__dec_pv_body_avx2(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_E4M3, NR, vo); break; \
    case FA_E5M2: fa__dec_pv_body_avx2(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_E5M2, NR, vo); break; \
    default: break;                                                                                   \
    }
    FA__DEC_PV_HEADS(FA__DEC_PV);
#undef FA__DEC_PV
}

static const fa__attn_kernels fa__kernels_avx2 = {
    "avx2", fa__qk_avx2, fa__scale_max_avx2, fa__exp_sum_avx2, fa__scale_avx2, fa__pv_avx2,
    fa__load_avx2, fa__dot_avx2, fa__ktrans_avx2, FA__FEW_ROWS, NULL, NULL, fa__dec_qk_avx2, fa__dec_pv_avx2,
    1, NULL, fa__softmax_row_avx2, fa__wsum_rows_avx2};

/* ---- AVX-512 ---- */
/* AVX512F and BW (the FP8 decode loads convert 32 codes in 16-bit lanes): every AVX-512 x86
   but Xeon Phi, which takes the AVX2 kernels */
#define FA__AVX512 __attribute__((target("avx512f,avx512bw")))
#define FA__AVX512_AI static inline __attribute__((always_inline, target("avx512f,avx512bw")))

static FA__AVX512 __m512 fa__exp512(__m512 x)
{
    /* Clamped to [lo, 89]: above ln FLT_MAX (88.72) n is 128 and the scaling overflows to +inf
       by itself, so only the low end needs a fix-up. (lo, x) and (top, .) in this order:
       vmaxps / vminps return their second operand when one is NaN, so a NaN goes through the
       clamp, the polynomial and the scaling as a NaN. */
    const __m512 lo = _mm512_set1_ps(FA__EXP_LO), top = _mm512_set1_ps(89.0f);
    __m512 xc = _mm512_min_ps(top, _mm512_max_ps(lo, x));
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
    /* below lo: exactly 0 (NaN compares false and stays) */
    return _mm512_mask_mov_ps(res, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), _mm512_setzero_ps());
}

/* One group of 4 rows over the first nb (1-4, a constant once inlined) 16-key blocks of the
   tile. The accumulators are named variables: gcc keeps an array indexed by a loop whose bound
   is a parameter in memory, even when the loop unrolls. */
FA__AVX512_AI void fa__qk_rows_avx512(const float *q, int64_t dk, const float *kt, float *s, int nb)
{
    int64_t d, d0;
    for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
        int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
        __m512 z = _mm512_setzero_ps();
        __m512 a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
        __m512 a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
        for (d = d0; d < d1; d++) {
            const float *kr = kt + d * FA__BK;
            __m512 k0 = _mm512_loadu_ps(kr), k1 = z, k2 = z, k3 = z;
            if (nb > 1) k1 = _mm512_loadu_ps(kr + 16);
            if (nb > 2) k2 = _mm512_loadu_ps(kr + 32);
            if (nb > 3) k3 = _mm512_loadu_ps(kr + 48);
            FA__KEEP_ZMM(k0);
            if (nb > 1) FA__KEEP_ZMM(k1);
            if (nb > 2) FA__KEEP_ZMM(k2);
            if (nb > 3) FA__KEEP_ZMM(k3);
#define FA__QK_ROW(I)                                                                             \
    do {                                                                                          \
        __m512 qv = _mm512_set1_ps(q[I * dk + d]);                                                \
        a##I##0 = _mm512_fmadd_ps(qv, k0, a##I##0);                                               \
        if (nb > 1) a##I##1 = _mm512_fmadd_ps(qv, k1, a##I##1);                                   \
        if (nb > 2) a##I##2 = _mm512_fmadd_ps(qv, k2, a##I##2);                                   \
        if (nb > 3) a##I##3 = _mm512_fmadd_ps(qv, k3, a##I##3);                                   \
    } while (0)
            FA__QK_ROW(0);
            FA__QK_ROW(1);
            FA__QK_ROW(2);
            FA__QK_ROW(3);
#undef FA__QK_ROW
        }
#define FA__QK_ST(I, J)                                                                           \
    do {                                                                                          \
        float *dst = s + I * FA__BK + 16 * J;                                                     \
        _mm512_storeu_ps(dst, d0 ? _mm512_add_ps(_mm512_loadu_ps(dst), a##I##J) : a##I##J);       \
    } while (0)
#define FA__QK_ST_ROW(I)                                                                          \
    do {                                                                                          \
        FA__QK_ST(I, 0);                                                                          \
        if (nb > 1) FA__QK_ST(I, 1);                                                              \
        if (nb > 2) FA__QK_ST(I, 2);                                                              \
        if (nb > 3) FA__QK_ST(I, 3);                                                              \
    } while (0)
        FA__QK_ST_ROW(0);
        FA__QK_ST_ROW(1);
        FA__QK_ST_ROW(2);
        FA__QK_ST_ROW(3);
#undef FA__QK_ST_ROW
#undef FA__QK_ST
    }
}

static FA__AVX512 void fa__qk_avx512(const float *q, int64_t dk, const float *kt, float *s, int64_t rows,
                                     const int32_t *ncols)
{
    int64_t r;
    for (r = 0; r < rows; r += FA__MR) {
        const float *qr = q + r * dk;
        int64_t b0 = ncols ? ncols[2 * (r / FA__MR)] / 16 : 0, b1 = ncols ? ncols[2 * (r / FA__MR) + 1] / 16 : 4;
        float *sr = s + r * FA__BK + 16 * b0;
        const float *kb = kt + 16 * b0; /* blocks [b0, b1) */
        switch (b1 - b0) { /* a constant block count for each body */
        case 1: fa__qk_rows_avx512(qr, dk, kb, sr, 1); break;
        case 2: fa__qk_rows_avx512(qr, dk, kb, sr, 2); break;
        case 3: fa__qk_rows_avx512(qr, dk, kb, sr, 3); break;
        case 4: fa__qk_rows_avx512(qr, dk, kb, sr, 4); break;
        default: break;
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

/* scale_max and exp_sum in one pass over a row of at most FA__BK = 64 scores, which stay in four
   registers in between: the same operations in the same order (bit-identical), without the
   store and reload of the scaled row. A partial row's masked store followed by a masked load
   of it does not forward on the Zen 5 dev VM and cost about 60 cycles a row, which the rows of
   causal diagonal tiles and window edges paid. */
static FA__AVX512 float fa__softmax_row_avx512(float *s, int64_t n, float scale, float m_old, float *sum)
{
    const __m512 vs = _mm512_set1_ps(scale);
    __m512 x[4], vm = _mm512_set1_ps(-INFINITY), acc = _mm512_setzero_ps(), mv;
    __mmask16 k[4], nan = 0;
    int i;
    float mx, m;
    FA__UNROLL
    for (i = 0; i < 4; i++) {
        int64_t left = n - 16 * i;
        k[i] = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
        x[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(k[i], s + 16 * i), vs);
        vm = _mm512_mask_max_ps(vm, k[i], vm, x[i]);
        nan |= _mm512_mask_cmp_ps_mask(k[i], x[i], x[i], _CMP_UNORD_Q);
    }
    mx = _mm512_reduce_max_ps(vm);
    m = fa__softmax_ref(m_old, nan ? NAN : mx);
    mv = _mm512_set1_ps(m);
    FA__UNROLL
    for (i = 0; i < 4; i++) {
        if (k[i]) {
            __m512 p = fa__exp512(_mm512_sub_ps(x[i], mv));
            _mm512_mask_storeu_ps(s + 16 * i, k[i], p);
            acc = _mm512_mask_add_ps(acc, k[i], acc, p);
        }
    }
    *sum = _mm512_reduce_add_ps(acc);
    return m;
}

static FA__AVX512 void fa__wsum_rows_avx512(float *acc, const float *x, int64_t xs, const float *w, int64_t nk, int64_t n)
{
    int64_t e = 0, k;
    for (; e + 128 <= n; e += 128) { /* 8 accumulators through every part */
        __m512 a0 = _mm512_loadu_ps(acc + e), a1 = _mm512_loadu_ps(acc + e + 16), a2 = _mm512_loadu_ps(acc + e + 32);
        __m512 a3 = _mm512_loadu_ps(acc + e + 48), a4 = _mm512_loadu_ps(acc + e + 64), a5 = _mm512_loadu_ps(acc + e + 80);
        __m512 a6 = _mm512_loadu_ps(acc + e + 96), a7 = _mm512_loadu_ps(acc + e + 112);
        for (k = 0; k < nk; k++) {
            const float *r = x + k * xs + e;
            __m512 vw;
            if (k + 4 < nk) FA__PREFETCH_LINES(r + 4 * xs, 512, 3);
            if (w[k] == 0.0f) continue;
            vw = _mm512_set1_ps(w[k]);
            a0 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r), a0);
            a1 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 16), a1);
            a2 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 32), a2);
            a3 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 48), a3);
            a4 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 64), a4);
            a5 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 80), a5);
            a6 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 96), a6);
            a7 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(r + 112), a7);
        }
        _mm512_storeu_ps(acc + e, a0); _mm512_storeu_ps(acc + e + 16, a1); _mm512_storeu_ps(acc + e + 32, a2);
        _mm512_storeu_ps(acc + e + 48, a3); _mm512_storeu_ps(acc + e + 64, a4); _mm512_storeu_ps(acc + e + 80, a5);
        _mm512_storeu_ps(acc + e + 96, a6); _mm512_storeu_ps(acc + e + 112, a7);
    }
    for (; e < n; e += 16) { /* 16 at a time, the last masked */
        __mmask16 m = n - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - e)) - 1);
        __m512 a = _mm512_maskz_loadu_ps(m, acc + e);
        for (k = 0; k < nk; k++)
            if (w[k] != 0.0f) a = _mm512_fmadd_ps(_mm512_set1_ps(w[k]), _mm512_maskz_loadu_ps(m, x + k * xs + e), a);
        _mm512_mask_storeu_ps(acc + e, m, a);
    }
}

static FA__AVX512 void fa__scale_avx512(float *o, int64_t n, float c)
{
    __m512 vc = _mm512_set1_ps(c);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), vc));
    for (; i < n; i++) o[i] *= c;
}

/* one row, keys [a, b): four independent accumulators per 64 columns, so consecutive keys do
   not wait on each other's FMA latency */
static FA__AVX512 void fa__pv_row_avx512(float *o, const float *sr, const float *v, int64_t dvp, int64_t a, int64_t b)
{
    int64_t e, c;
    if (a >= b) return;
    for (e = 0; e + 64 <= dvp; e += 64) {
        __m512 c0 = _mm512_loadu_ps(o + e), c1 = _mm512_loadu_ps(o + e + 16);
        __m512 c2 = _mm512_loadu_ps(o + e + 32), c3 = _mm512_loadu_ps(o + e + 48);
        for (c = a; c < b; c++) {
            const float *vr = v + c * dvp + e;
            __m512 pr = _mm512_set1_ps(sr[c]);
            c0 = _mm512_fmadd_ps(pr, _mm512_loadu_ps(vr), c0);
            c1 = _mm512_fmadd_ps(pr, _mm512_loadu_ps(vr + 16), c1);
            c2 = _mm512_fmadd_ps(pr, _mm512_loadu_ps(vr + 32), c2);
            c3 = _mm512_fmadd_ps(pr, _mm512_loadu_ps(vr + 48), c3);
        }
        _mm512_storeu_ps(o + e, c0);
        _mm512_storeu_ps(o + e + 16, c1);
        _mm512_storeu_ps(o + e + 32, c2);
        _mm512_storeu_ps(o + e + 48, c3);
    }
    for (; e < dvp; e += 16) {
        __m512 acc = _mm512_loadu_ps(o + e);
        for (c = a; c < b; c++) acc = _mm512_fmadd_ps(_mm512_set1_ps(sr[c]), _mm512_loadu_ps(v + c * dvp + e), acc);
        _mm512_storeu_ps(o + e, acc);
    }
}

/* 4 rows x 64 columns of O += P V over keys [a, b): 16 accumulators in registers, named so no
   compiler keeps them in memory; per key 4 loads of V, 4 broadcasts of P, 16 FMAs. */
static FA__AVX512 void fa__pv4x64_avx512(float *o, int64_t dvp, const float *s, const float *v, int64_t a, int64_t b,
                                         const int32_t *c0, const int32_t *c1, int64_t ua, int64_t ub)
{
    float *o0 = o, *o1 = o + dvp, *o2 = o + 2 * dvp, *o3 = o + 3 * dvp;
    __m512 c00 = _mm512_loadu_ps(o0), c01 = _mm512_loadu_ps(o0 + 16), c02 = _mm512_loadu_ps(o0 + 32), c03 = _mm512_loadu_ps(o0 + 48);
    __m512 c10 = _mm512_loadu_ps(o1), c11 = _mm512_loadu_ps(o1 + 16), c12 = _mm512_loadu_ps(o1 + 32), c13 = _mm512_loadu_ps(o1 + 48);
    __m512 c20 = _mm512_loadu_ps(o2), c21 = _mm512_loadu_ps(o2 + 16), c22 = _mm512_loadu_ps(o2 + 32), c23 = _mm512_loadu_ps(o2 + 48);
    __m512 c30 = _mm512_loadu_ps(o3), c31 = _mm512_loadu_ps(o3 + 16), c32 = _mm512_loadu_ps(o3 + 32), c33 = _mm512_loadu_ps(o3 + 48);
    int64_t c;
    /* keys some rows of the group see and others do not (a causal diagonal's or a window
       edge's staircase), before and after the common range: a row's sum moves only where its
       mask is set, so whatever lies in S or V at the keys it does not see stays out */
#define FA__PV4X64_MASKED(C)                                                                      \
    do {                                                                                          \
        const float *vr = v + (C) * dvp;                                                          \
        const __mmask16 k0 = (C) >= c0[0] && (C) < c1[0] ? 0xffff : 0, k1 = (C) >= c0[1] && (C) < c1[1] ? 0xffff : 0; \
        const __mmask16 k2 = (C) >= c0[2] && (C) < c1[2] ? 0xffff : 0, k3 = (C) >= c0[3] && (C) < c1[3] ? 0xffff : 0; \
        __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16), v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48); \
        __m512 p0, p1, p2, p3;                                                                    \
        FA__KEEP_ZMM(v0);                                                                         \
        FA__KEEP_ZMM(v1);                                                                         \
        FA__KEEP_ZMM(v2);                                                                         \
        FA__KEEP_ZMM(v3);                                                                         \
        p0 = _mm512_set1_ps(s[C]);                                                                \
        p1 = _mm512_set1_ps(s[FA__BK + (C)]);                                                     \
        p2 = _mm512_set1_ps(s[2 * FA__BK + (C)]);                                                 \
        p3 = _mm512_set1_ps(s[3 * FA__BK + (C)]);                                                 \
        c00 = _mm512_mask3_fmadd_ps(p0, v0, c00, k0); c01 = _mm512_mask3_fmadd_ps(p0, v1, c01, k0); \
        c02 = _mm512_mask3_fmadd_ps(p0, v2, c02, k0); c03 = _mm512_mask3_fmadd_ps(p0, v3, c03, k0); \
        c10 = _mm512_mask3_fmadd_ps(p1, v0, c10, k1); c11 = _mm512_mask3_fmadd_ps(p1, v1, c11, k1); \
        c12 = _mm512_mask3_fmadd_ps(p1, v2, c12, k1); c13 = _mm512_mask3_fmadd_ps(p1, v3, c13, k1); \
        c20 = _mm512_mask3_fmadd_ps(p2, v0, c20, k2); c21 = _mm512_mask3_fmadd_ps(p2, v1, c21, k2); \
        c22 = _mm512_mask3_fmadd_ps(p2, v2, c22, k2); c23 = _mm512_mask3_fmadd_ps(p2, v3, c23, k2); \
        c30 = _mm512_mask3_fmadd_ps(p3, v0, c30, k3); c31 = _mm512_mask3_fmadd_ps(p3, v1, c31, k3); \
        c32 = _mm512_mask3_fmadd_ps(p3, v2, c32, k3); c33 = _mm512_mask3_fmadd_ps(p3, v3, c33, k3); \
    } while (0)
    for (c = a; c < b; c++) {
        const float *vr = v + c * dvp;
        __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16), v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
        FA__KEEP_ZMM(v0);
        FA__KEEP_ZMM(v1);
        FA__KEEP_ZMM(v2);
        FA__KEEP_ZMM(v3);
        __m512 p0 = _mm512_set1_ps(s[c]), p1 = _mm512_set1_ps(s[FA__BK + c]);
        __m512 p2 = _mm512_set1_ps(s[2 * FA__BK + c]), p3 = _mm512_set1_ps(s[3 * FA__BK + c]);
        c00 = _mm512_fmadd_ps(p0, v0, c00); c01 = _mm512_fmadd_ps(p0, v1, c01);
        c02 = _mm512_fmadd_ps(p0, v2, c02); c03 = _mm512_fmadd_ps(p0, v3, c03);
        c10 = _mm512_fmadd_ps(p1, v0, c10); c11 = _mm512_fmadd_ps(p1, v1, c11);
        c12 = _mm512_fmadd_ps(p1, v2, c12); c13 = _mm512_fmadd_ps(p1, v3, c13);
        c20 = _mm512_fmadd_ps(p2, v0, c20); c21 = _mm512_fmadd_ps(p2, v1, c21);
        c22 = _mm512_fmadd_ps(p2, v2, c22); c23 = _mm512_fmadd_ps(p2, v3, c23);
        c30 = _mm512_fmadd_ps(p3, v0, c30); c31 = _mm512_fmadd_ps(p3, v1, c31);
        c32 = _mm512_fmadd_ps(p3, v2, c32); c33 = _mm512_fmadd_ps(p3, v3, c33);
    }
    /* in the order the rows' own loops took them: the common keys, those before, those after */
    for (c = ua; c < (a < b ? a : ub); c++) FA__PV4X64_MASKED(c);
    for (c = a < b ? b : ub; c < ub; c++) FA__PV4X64_MASKED(c);
#undef FA__PV4X64_MASKED
    _mm512_storeu_ps(o0, c00); _mm512_storeu_ps(o0 + 16, c01); _mm512_storeu_ps(o0 + 32, c02); _mm512_storeu_ps(o0 + 48, c03);
    _mm512_storeu_ps(o1, c10); _mm512_storeu_ps(o1 + 16, c11); _mm512_storeu_ps(o1 + 32, c12); _mm512_storeu_ps(o1 + 48, c13);
    _mm512_storeu_ps(o2, c20); _mm512_storeu_ps(o2 + 16, c21); _mm512_storeu_ps(o2 + 32, c22); _mm512_storeu_ps(o2 + 48, c23);
    _mm512_storeu_ps(o3, c30); _mm512_storeu_ps(o3 + 16, c31); _mm512_storeu_ps(o3 + 32, c32); _mm512_storeu_ps(o3 + 48, c33);
}

/* 4 rows x 16 columns, for the dvp % 64 columns left over */
static FA__AVX512 void fa__pv4x16_avx512(float *o, int64_t dvp, const float *s, const float *v, int64_t a, int64_t b,
                                         const int32_t *r0, const int32_t *r1, int64_t ua, int64_t ub)
{
    __m512 c0 = _mm512_loadu_ps(o), c1 = _mm512_loadu_ps(o + dvp);
    __m512 c2 = _mm512_loadu_ps(o + 2 * dvp), c3 = _mm512_loadu_ps(o + 3 * dvp);
    int64_t c;
    for (c = a; c < b; c++) {
        __m512 vv = _mm512_loadu_ps(v + c * dvp);
        FA__KEEP_ZMM(vv);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(s[c]), vv, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(s[FA__BK + c]), vv, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(s[2 * FA__BK + c]), vv, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(s[3 * FA__BK + c]), vv, c3);
    }
    for (c = ua; c < ub; c++) { /* the keys outside [a, b), as in fa__pv4x64_avx512 */
        __m512 vv;
        if (c == a && a < b) {
            c = b - 1;
            continue;
        }
        vv = _mm512_loadu_ps(v + c * dvp);
        c0 = _mm512_mask3_fmadd_ps(_mm512_set1_ps(s[c]), vv, c0, c >= r0[0] && c < r1[0] ? 0xffff : 0);
        c1 = _mm512_mask3_fmadd_ps(_mm512_set1_ps(s[FA__BK + c]), vv, c1, c >= r0[1] && c < r1[1] ? 0xffff : 0);
        c2 = _mm512_mask3_fmadd_ps(_mm512_set1_ps(s[2 * FA__BK + c]), vv, c2, c >= r0[2] && c < r1[2] ? 0xffff : 0);
        c3 = _mm512_mask3_fmadd_ps(_mm512_set1_ps(s[3 * FA__BK + c]), vv, c3, c >= r0[3] && c < r1[3] ? 0xffff : 0);
    }
    _mm512_storeu_ps(o, c0);
    _mm512_storeu_ps(o + dvp, c1);
    _mm512_storeu_ps(o + 2 * dvp, c2);
    _mm512_storeu_ps(o + 3 * dvp, c3);
}

static FA__AVX512 void fa__pv_avx512(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows,
                                     const int32_t *c0, const int32_t *c1)
{
    int64_t r, e, i, a, b, ua, ub;
    for (r = 0; r < nrows; r += FA__MR) {
        int64_t nr = nrows - r < FA__MR ? nrows - r : FA__MR;
        if (nr < FA__MR) { /* the last rows, fewer than a block: row by row */
            for (i = 0; i < nr; i++)
                fa__pv_row_avx512(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, c0[r + i], c1[r + i]);
            continue;
        }
        /* the 4 rows at once, their staircase edges masked */
        fa__pv_common(nr, c0 + r, c1 + r, &a, &b);
        fa__pv_union(nr, c0 + r, c1 + r, &ua, &ub);
        if (ua >= ub) continue; /* no row sees a key */
        for (e = 0; e + 64 <= dvp; e += 64)
            fa__pv4x64_avx512(o + r * dvp + e, dvp, s + r * FA__BK, v + e, a, b, c0 + r, c1 + r, ua, ub);
        for (; e < dvp; e += 16)
            fa__pv4x16_avx512(o + r * dvp + e, dvp, s + r * FA__BK, v + e, a, b, c0 + r, c1 + r, ua, ub);
    }
}

/* 16 elements of type t at src (element index i) as f32. Inlined where t is a constant, so each
   kernel below gets a loop with one conversion and no switch. */
FA__AVX512_AI __m512 fa__e4m3x16_avx512(__m128i bytes, int raw)
{
    /* An E4M3 code's sign and 7 magnitude bits, placed at bits 15 and 13..7 of an IEEE half,
       give a half worth the E4M3 value / 256 (the exponent biases differ by 8; subnormals and
       zeros included): a widening, two shifts and a mask, the half -> f32 conversion, and an
       exact scale by 256 (left out with raw: the decode kernels' contract). The NaN codes (0x7f,
       0xff) are patched after a byte compare. */
    const __m256i x = _mm256_cvtepu8_epi16(bytes); /* code in the low byte of each 16-bit lane */
    const __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(x, 8), 1), _mm256_set1_epi16((short)0xbf80));
    __m512 f = raw ? _mm512_cvtph_ps(h) : _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
    const int nan = fa__e4m3_nan_bits(bytes);
    if (FA__UNLIKELY(nan)) f = _mm512_mask_mov_ps(f, (__mmask16)nan, _mm512_set1_ps(NAN));
    return f;
}
FA__AVX512_AI __m512 fa__ld16r_avx512(const void *src, int64_t i, fa_dtype t, int raw)
{
    switch (t) {
    case FA_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + i))), 16));
    case FA_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + i)));
    case FA_E4M3: return fa__e4m3x16_avx512(_mm_loadu_si128((const __m128i *)((const uint8_t *)src + i)), raw);
    case FA_E5M2: /* E5M2 is the top byte of an IEEE half */
        return _mm512_cvtph_ps(
            _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)((const uint8_t *)src + i))), 8));
    default: return _mm512_loadu_ps((const float *)src + i);
    }
}
/* the same, E4M3 at its value (the row loads) */
FA__AVX512_AI __m512 fa__ld16_avx512(const void *src, int64_t i, fa_dtype t) { return fa__ld16r_avx512(src, i, t, 0); }

/* 32 elements of type t at src (element index i) as f32, codes i..i+15 in *lo and the next 16
   in *hi. FP8 codes become IEEE halves 32 at a time in 16-bit lanes, by the same bit moves as
   fa__e4m3x16_avx512 (the same values, bit for bit) in about half the instructions per code;
   the decode kernels read FP8 K and V rows through this, E4M3 as its value / 256 (their
   contract: the caller's scales carry the 256). Other types: two fa__ld16_avx512. */
FA__AVX512_AI void fa__ld32_avx512(const void *src, int64_t i, fa_dtype t, __m512 *lo, __m512 *hi)
{
    if (t == FA_E4M3 || t == FA_E5M2) {
        const __m512i x = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)((const uint8_t *)src + i)));
        __m512i h;
        __m512 f0, f1;
        if (t == FA_E4M3)
            h = _mm512_and_si512(_mm512_srai_epi16(_mm512_slli_epi16(x, 8), 1), _mm512_set1_epi16((short)0xbf80));
        else
            h = _mm512_slli_epi16(x, 8); /* E5M2 is the top byte of an IEEE half */
        f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
        f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
        if (t == FA_E4M3) {
            const __m512i m7f = _mm512_set1_epi16(0x7f);
            const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(x, m7f), m7f);
            if (FA__UNLIKELY(nan)) { /* 0x7f and 0xff */
                f0 = _mm512_mask_mov_ps(f0, (__mmask16)nan, _mm512_set1_ps(NAN));
                f1 = _mm512_mask_mov_ps(f1, (__mmask16)(nan >> 16), _mm512_set1_ps(NAN));
            }
        }
        *lo = f0;
        *hi = f1;
        return;
    }
    *lo = fa__ld16_avx512(src, i, t);
    *hi = fa__ld16_avx512(src, i + 16, t);
}

static FA__AVX512 void fa__load_avx512(float *dst, const void *src, fa_dtype t, int64_t n, float mul)
{
    __m512 vm = _mm512_set1_ps(mul);
    int64_t i = 0;
#define FA__LOAD_CASE(T)                                                                         \
    case T:                                                                                      \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_mul_ps(fa__ld16_avx512(src, i, T), vm)); \
        break;
    switch (t) {
        FA__LOAD_CASE(FA_F32) FA__LOAD_CASE(FA_F16) FA__LOAD_CASE(FA_BF16) FA__LOAD_CASE(FA_E4M3) FA__LOAD_CASE(FA_E5M2)
    default: break;
    }
#undef FA__LOAD_CASE
    if (i < n) fa__load_row(dst + i, fa__elem_ptr(src, t, i), t, n - i, mul);
}

static FA__AVX512 float fa__dot_avx512(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* ---- AVX-512 decode kernels: few rows (a GQA group of one query), K and V read in place ----
   A decode tile has 1-8 rows, so transposing K or staging V in f32 (the prefill path) would
   cost more than the products themselves. S is computed key by key from the K rows where they
   lie, converted in registers; the 16-lane partial sums of 16 keys are reduced together by a
   transpose-add tree (3 shuffles per key and row instead of a full horizontal sum each). P V
   reads the V rows in place too. Rows go in groups of 4 (a group of 2-3 pads with the zero
   rows the workspace keeps past the last row); head_dim and head_dim_v must be multiples of 16. */

/* lane j of the result = sum of the 16 lanes of a[j] */
FA__AVX512_AI __m512 fa__hsum16x16_avx512(const __m512 *a)
{
    __m512 b[8], c[4], d0, d1;
    int i;
    FA__UNROLL
    for (i = 0; i < 8; i++) /* per 128-bit lane: [a0 a1 a0 a1] partials */
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    FA__UNROLL
    for (i = 0; i < 4; i++) /* per 128-bit lane: one partial of each of keys 4i..4i+3 */
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xee));
    d0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xdd));
    d1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88), _mm512_shuffle_f32x4(c[2], c[3], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88), _mm512_shuffle_f32x4(d0, d1, 0xdd));
}

/* s[r][j] = q[r] . k_j for NR (1 or 4) rows and keys j < nk <= 16; krow[j] for j < nk + FA__AHEAD
   (NULL past the end) also drives the prefetch of the K and V rows ahead. */
FA__AVX512_AI void fa__dec_qk_body_avx512(const float *q, int64_t dk, const void *const *krow,
                                          const void *const *vrow, int64_t nk, float *s, fa_dtype t,
                                          int nr, size_t kbytes, size_t vbytes, size_t ko, size_t vo, int mh)
{
    __m512 acc[4][16];
    int64_t j, e;
    int r;
    { /* one block: the caller passes at most 16 keys */
        const int64_t n = nk;
        for (j = 0; j < n; j++) {
            const void *kr = (const char *)krow[j] + ko;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            /* K a few keys ahead; this key's V row, which P V reads once the tile's S is done */
            if (kbytes) FA__DEC_PREFETCH(krow, vrow, j, ko, vo, kbytes, vbytes, mh);
            for (e = 0; e + 32 <= dk; e += 32) {
                __m512 k0, k1;
                fa__ld32_avx512(kr, e, t, &k0, &k1);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + e), k0, a0);
                b0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + e + 16), k1, b0);
                if (nr > 1) {
                    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + dk + e), k0, a1);
                    b1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + dk + e + 16), k1, b1);
                    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 2 * dk + e), k0, a2);
                    b2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 2 * dk + e + 16), k1, b2);
                    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 3 * dk + e), k0, a3);
                    b3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 3 * dk + e + 16), k1, b3);
                }
            }
            if (e < dk) { /* dk = 16 mod 32 */
                __m512 k0 = fa__ld16r_avx512(kr, e, t, 1);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + e), k0, a0);
                if (nr > 1) {
                    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + dk + e), k0, a1);
                    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 2 * dk + e), k0, a2);
                    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + 3 * dk + e), k0, a3);
                }
            }
            acc[0][j] = _mm512_add_ps(a0, b0);
            if (nr > 1) {
                acc[1][j] = _mm512_add_ps(a1, b1);
                acc[2][j] = _mm512_add_ps(a2, b2);
                acc[3][j] = _mm512_add_ps(a3, b3);
            }
        }
        for (; j < 16; j++)
            for (r = 0; r < nr; r++) acc[r][j] = _mm512_setzero_ps();
        for (r = 0; r < nr; r++)
            _mm512_mask_storeu_ps(s + r * FA__BK, (__mmask16)((1u << n) - 1), fa__hsum16x16_avx512(acc[r]));
    }
}

/* o[r][0..dv) += sum_{a <= j < b} p[r][j] v_j for NR (1 or 4) rows; o rows dvp apart. The
   accumulators are named variables: an array indexed in loops ends up in memory. */
FA__AVX512_AI void fa__dec_pv_body_avx512(float *o, int64_t dvp, const float *p, const void *const *vrow,
                                          int64_t a, int64_t b, int64_t dv, fa_dtype t, int nr, size_t vo)
{
    int64_t e0 = 0, j;
    float *o1 = o + dvp, *o2 = o + 2 * dvp, *o3 = o + 3 * dvp;
    const float *p1 = p + FA__BK, *p2 = p + 2 * FA__BK, *p3 = p + 3 * FA__BK;
    if (nr == 1) {
        for (; e0 + 128 <= dv; e0 += 128) {
            __m512 c0 = _mm512_loadu_ps(o + e0), c1 = _mm512_loadu_ps(o + e0 + 16);
            __m512 c2 = _mm512_loadu_ps(o + e0 + 32), c3 = _mm512_loadu_ps(o + e0 + 48);
            __m512 c4 = _mm512_loadu_ps(o + e0 + 64), c5 = _mm512_loadu_ps(o + e0 + 80);
            __m512 c6 = _mm512_loadu_ps(o + e0 + 96), c7 = _mm512_loadu_ps(o + e0 + 112);
            for (j = a; j < b; j++) {
                const void *vr = (const char *)vrow[j] + vo;
                __m512 pr = _mm512_set1_ps(p[j]), v0, v1, v2, v3, v4, v5, v6, v7;
                fa__ld32_avx512(vr, e0, t, &v0, &v1);
                fa__ld32_avx512(vr, e0 + 32, t, &v2, &v3);
                fa__ld32_avx512(vr, e0 + 64, t, &v4, &v5);
                fa__ld32_avx512(vr, e0 + 96, t, &v6, &v7);
                c0 = _mm512_fmadd_ps(pr, v0, c0);
                c1 = _mm512_fmadd_ps(pr, v1, c1);
                c2 = _mm512_fmadd_ps(pr, v2, c2);
                c3 = _mm512_fmadd_ps(pr, v3, c3);
                c4 = _mm512_fmadd_ps(pr, v4, c4);
                c5 = _mm512_fmadd_ps(pr, v5, c5);
                c6 = _mm512_fmadd_ps(pr, v6, c6);
                c7 = _mm512_fmadd_ps(pr, v7, c7);
            }
            _mm512_storeu_ps(o + e0, c0); _mm512_storeu_ps(o + e0 + 16, c1);
            _mm512_storeu_ps(o + e0 + 32, c2); _mm512_storeu_ps(o + e0 + 48, c3);
            _mm512_storeu_ps(o + e0 + 64, c4); _mm512_storeu_ps(o + e0 + 80, c5);
            _mm512_storeu_ps(o + e0 + 96, c6); _mm512_storeu_ps(o + e0 + 112, c7);
        }
    } else {
        for (; e0 + 64 <= dv; e0 += 64) {
#define FA__PV_LD(R, OR)                                                                          \
    __m512 R##0 = _mm512_loadu_ps(OR + e0), R##1 = _mm512_loadu_ps(OR + e0 + 16),                 \
           R##2 = _mm512_loadu_ps(OR + e0 + 32), R##3 = _mm512_loadu_ps(OR + e0 + 48)
#define FA__PV_FMA(R, PR)                                                                         \
    do {                                                                                          \
        __m512 pb = _mm512_set1_ps(PR[j]);                                                        \
        R##0 = _mm512_fmadd_ps(pb, v0, R##0);                                                     \
        R##1 = _mm512_fmadd_ps(pb, v1, R##1);                                                     \
        R##2 = _mm512_fmadd_ps(pb, v2, R##2);                                                     \
        R##3 = _mm512_fmadd_ps(pb, v3, R##3);                                                     \
    } while (0)
#define FA__PV_ST(R, OR)                                                                          \
    do {                                                                                          \
        _mm512_storeu_ps(OR + e0, R##0); _mm512_storeu_ps(OR + e0 + 16, R##1);                    \
        _mm512_storeu_ps(OR + e0 + 32, R##2); _mm512_storeu_ps(OR + e0 + 48, R##3);               \
    } while (0)
            FA__PV_LD(x, o);
            FA__PV_LD(y, o1);
            FA__PV_LD(z, o2);
            FA__PV_LD(w, o3);
            for (j = a; j < b; j++) {
                const void *vr = (const char *)vrow[j] + vo;
                __m512 v0, v1, v2, v3;
                fa__ld32_avx512(vr, e0, t, &v0, &v1);
                fa__ld32_avx512(vr, e0 + 32, t, &v2, &v3);
                FA__PV_FMA(x, p);
                FA__PV_FMA(y, p1);
                FA__PV_FMA(z, p2);
                FA__PV_FMA(w, p3);
            }
            FA__PV_ST(x, o);
            FA__PV_ST(y, o1);
            FA__PV_ST(z, o2);
            FA__PV_ST(w, o3);
#undef FA__PV_LD
#undef FA__PV_FMA
#undef FA__PV_ST
        }
    }
    for (; e0 < dv; e0 += 16) { /* the last dims: dv = 16..48 mod 64 (mod 128 for one row) */
        __m512 x0 = _mm512_loadu_ps(o + e0), y0 = x0, z0 = x0, w0 = x0;
        if (nr > 1) {
            y0 = _mm512_loadu_ps(o1 + e0);
            z0 = _mm512_loadu_ps(o2 + e0);
            w0 = _mm512_loadu_ps(o3 + e0);
        }
        for (j = a; j < b; j++) {
            __m512 v0 = fa__ld16r_avx512((const char *)vrow[j] + vo, e0, t, 1);
            x0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), v0, x0);
            if (nr > 1) {
                y0 = _mm512_fmadd_ps(_mm512_set1_ps(p1[j]), v0, y0);
                z0 = _mm512_fmadd_ps(_mm512_set1_ps(p2[j]), v0, z0);
                w0 = _mm512_fmadd_ps(_mm512_set1_ps(p3[j]), v0, w0);
            }
        }
        _mm512_storeu_ps(o + e0, x0);
        if (nr > 1) {
            _mm512_storeu_ps(o1 + e0, y0);
            _mm512_storeu_ps(o2 + e0, z0);
            _mm512_storeu_ps(o3 + e0, w0);
        }
    }
}

/* The body with head_dim 128 as a constant: the compiler unrolls the loop over dims (with dk
   known only at run time it keeps a loop of 32 dims per pass, and its compare and branch, per
   key and row group). Same sums in the same order. */
FA__AVX512_AI void fa__dec_qk_body128_avx512(const float *q, int64_t dk, const void *const *krow,
                                             const void *const *vrow, int64_t nk, float *s, fa_dtype t,
                                             int nr, size_t kbytes, size_t vbytes, size_t ko, size_t vo, int mh)
{
    (void)dk;
    fa__dec_qk_body_avx512(q, 128, krow, vrow, nk, s, t, nr, kbytes, vbytes, ko, vo, mh);
}

static FA__AVX512 void fa__dec_qk_avx512(const float *q, int64_t dk, const void *const *krow, const void *const *vrow,
                                         fa_dtype kt, int64_t nk, float *s, int64_t nrows, int64_t nh, size_t khs,
                                         size_t vhs, size_t kb, size_t vb)
{
    if (dk == 128) /* the usual head size, unrolled */
        FA__DEC_QK_HEADS(fa__dec_qk_body128_avx512, 16);
    else
        FA__DEC_QK_HEADS(fa__dec_qk_body_avx512, 16);
}

static FA__AVX512 void fa__dec_pv_avx512(float *o, int64_t dvp, const float *p, const void *const *vrow, fa_dtype vt,
                                         int64_t dv, int64_t nrows, int64_t nh, size_t vhs, size_t vpf,
                                         const int32_t *c0, const int32_t *c1)
{
#define FA__DEC_PV(NR, A, B, ROW)                                                                   \
    switch (vt) {                                                                                   \
    case FA_F32: fa__dec_pv_body_avx512(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_F32, NR, vo); break; \
    case FA_F16: fa__dec_pv_body_avx512(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_F16, NR, vo); break; \
    case FA_BF16: fa__dec_pv_body_avx512(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_BF16, NR, vo); break; \
    case FA_E4M3: fa__dec_pv_body_avx512(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_E4M3, NR, vo); break; \
    case FA_E5M2: fa__dec_pv_body_avx512(o + (ROW) * dvp, dvp, p + (ROW) * FA__BK, vrow, A, B, dv, FA_E5M2, NR, vo); break; \
    default: break;                                                                                 \
    }
    FA__DEC_PV_HEADS(FA__DEC_PV);
#undef FA__DEC_PV
}

/* 16x16 transpose in registers: unpack pairs of rows, shuffle quads, then exchange 128-bit
   lanes twice; out[c] holds column c of the 16 input rows. */
static FA__AVX512 void fa__tr16_avx512(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m512 r[16], t[16];
    int i, j;
    FA__UNROLL
    for (i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    FA__UNROLL
    for (i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    FA__UNROLL
    for (i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    FA__UNROLL
    for (j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    }
    FA__UNROLL
    for (j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd);
    }
    FA__UNROLL
    for (i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ldd, r[i]);
}

static FA__AVX512 void fa__ktrans_avx512(float *kt, const float *kr, int64_t krs, int64_t nk, int64_t dk)
{
    int64_t c0, e0, c, e, nk16 = nk & ~(int64_t)15, dk16 = dk & ~(int64_t)15;
    for (c0 = 0; c0 < nk16; c0 += 16)
        for (e0 = 0; e0 < dk16; e0 += 16) fa__tr16_avx512(kr + c0 * krs + e0, krs, kt + e0 * FA__BK + c0, FA__BK);
    for (e = dk16; e < dk; e++) /* dims past the last full block */
        for (c = 0; c < nk16; c++) kt[e * FA__BK + c] = kr[c * krs + e];
    for (e = 0; e < dk; e++) { /* keys past the last full block, then the zero padding */
        float *dst = kt + e * FA__BK;
        for (c = nk16; c < nk; c++) dst[c] = kr[c * krs + e];
        for (; c < FA__BK; c++) dst[c] = 0.0f;
    }
}

static const fa__attn_kernels fa__kernels_avx512 = {
    "avx512", fa__qk_avx512, fa__scale_max_avx512, fa__exp_sum_avx512, fa__scale_avx512, fa__pv_avx512,
    fa__load_avx512, fa__dot_avx512, fa__ktrans_avx512, 0, NULL, NULL, fa__dec_qk_avx512, fa__dec_pv_avx512, 1, NULL,
    fa__softmax_row_avx512, fa__wsum_rows_avx512};

/* ---- AVX-512 with AVX512_BF16: S = Q K^T on bf16 pairs (vdpbf16ps) ---- */
#define FA__AVX512BF16 __attribute__((target("avx512f,avx512bf16")))

static FA__AVX512 void fa__ktrans32_avx512(uint32_t *kt, const uint32_t *kr, int64_t nk, int64_t np)
{
    int64_t c0, e0, c, e, nk16 = nk & ~(int64_t)15, np16 = np & ~(int64_t)15;
    for (c0 = 0; c0 < nk16; c0 += 16) /* the 16x16 transpose only moves 32-bit lanes */
        for (e0 = 0; e0 < np16; e0 += 16)
            fa__tr16_avx512((const float *)(const void *)(kr + c0 * np + e0), np,
                            (float *)(void *)(kt + e0 * FA__BK + c0), FA__BK);
    for (e = np16; e < np; e++)
        for (c = 0; c < nk16; c++) kt[e * FA__BK + c] = kr[c * np + e];
    for (e = 0; e < np; e++) {
        uint32_t *dst = kt + e * FA__BK;
        for (c = nk16; c < nk; c++) dst[c] = kr[c * np + e];
        for (; c < FA__BK; c++) dst[c] = 0;
    }
}

/* 4 rows x 64 keys per step, each vdpbf16ps adding two bf16 products per lane; pairs summed in
   chunks of FA__QK_CHUNK/2 before adding into S, as in the f32 kernel */
static FA__AVX512BF16 void fa__qk_bf16_avx512(const uint32_t *q, int64_t np, const uint32_t *kt, float *s, int64_t rows)
{
    int64_t r, pp, p0;
    for (r = 0; r < rows; r += FA__MR)
        for (p0 = 0; p0 < np; p0 += FA__QK_CHUNK / 2) {
            int64_t p1 = p0 + FA__QK_CHUNK / 2 < np ? p0 + FA__QK_CHUNK / 2 : np;
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            for (pp = p0; pp < p1; pp++) {
                const uint32_t *kr = kt + pp * FA__BK;
                __m512bh k0 = (__m512bh)_mm512_loadu_si512((const void *)kr);
                __m512bh k1 = (__m512bh)_mm512_loadu_si512((const void *)(kr + 16));
                __m512bh k2 = (__m512bh)_mm512_loadu_si512((const void *)(kr + 32));
                __m512bh k3 = (__m512bh)_mm512_loadu_si512((const void *)(kr + 48));
                __m512bh q0 = (__m512bh)_mm512_set1_epi32((int)q[r * np + pp]);
                __m512bh q1 = (__m512bh)_mm512_set1_epi32((int)q[(r + 1) * np + pp]);
                __m512bh q2 = (__m512bh)_mm512_set1_epi32((int)q[(r + 2) * np + pp]);
                __m512bh q3 = (__m512bh)_mm512_set1_epi32((int)q[(r + 3) * np + pp]);
                a00 = _mm512_dpbf16_ps(a00, q0, k0); a01 = _mm512_dpbf16_ps(a01, q0, k1);
                a02 = _mm512_dpbf16_ps(a02, q0, k2); a03 = _mm512_dpbf16_ps(a03, q0, k3);
                a10 = _mm512_dpbf16_ps(a10, q1, k0); a11 = _mm512_dpbf16_ps(a11, q1, k1);
                a12 = _mm512_dpbf16_ps(a12, q1, k2); a13 = _mm512_dpbf16_ps(a13, q1, k3);
                a20 = _mm512_dpbf16_ps(a20, q2, k0); a21 = _mm512_dpbf16_ps(a21, q2, k1);
                a22 = _mm512_dpbf16_ps(a22, q2, k2); a23 = _mm512_dpbf16_ps(a23, q2, k3);
                a30 = _mm512_dpbf16_ps(a30, q3, k0); a31 = _mm512_dpbf16_ps(a31, q3, k1);
                a32 = _mm512_dpbf16_ps(a32, q3, k2); a33 = _mm512_dpbf16_ps(a33, q3, k3);
            }
#define FA__QKB_STORE(i, j, acc)                                                            \
            do {                                                                            \
                float *dst_ = s + (r + (i)) * FA__BK + 16 * (j);                            \
                _mm512_storeu_ps(dst_, p0 ? _mm512_add_ps(_mm512_loadu_ps(dst_), acc) : acc); \
            } while (0)
            FA__QKB_STORE(0, 0, a00); FA__QKB_STORE(0, 1, a01); FA__QKB_STORE(0, 2, a02); FA__QKB_STORE(0, 3, a03);
            FA__QKB_STORE(1, 0, a10); FA__QKB_STORE(1, 1, a11); FA__QKB_STORE(1, 2, a12); FA__QKB_STORE(1, 3, a13);
            FA__QKB_STORE(2, 0, a20); FA__QKB_STORE(2, 1, a21); FA__QKB_STORE(2, 2, a22); FA__QKB_STORE(2, 3, a23);
            FA__QKB_STORE(3, 0, a30); FA__QKB_STORE(3, 1, a31); FA__QKB_STORE(3, 2, a32); FA__QKB_STORE(3, 3, a33);
#undef FA__QKB_STORE
        }
}

/* Decode S for bf16 Q and bf16 K: each vdpbf16ps lane adds two exact bf16 products in f32, read
   from the K row as it lies (no conversion, half the loads of f32). A block of up to 64 pairs
   (128 dims) of each of the NR (1 or 4) rows stays in registers while the keys go by; NC (1-4)
   chunks of 16 pairs, the last one masked to its ml pairs. Partial dots go to acc[r][j]
   (added when the block is not the first). */
#define FA__AVX512BF16_AI static inline __attribute__((always_inline, target("avx512f,avx512bf16")))
FA__AVX512BF16_AI void fa__dec_qkb_block(const uint32_t *q, int64_t np, int64_t p0, const void *const *krow,
                                         const void *const *vrow, int64_t n, __m512 (*acc)[16], int nr, int nc,
                                         __mmask16 ml, size_t kbytes, size_t vbytes, size_t ko, size_t vo, int mh)
{
    const __m512i z = _mm512_setzero_si512();
    const __mmask16 m0 = nc == 1 ? ml : 0xffff, m1 = nc == 2 ? ml : 0xffff, m2 = nc == 3 ? ml : 0xffff, m3 = ml;
    const uint32_t *q0 = q + p0, *q1 = q0 + np, *q2 = q1 + np, *q3 = q2 + np;
    int64_t j;
#define FA__DQB_Q(R, ON)                                                                          \
    const __m512i q##R##a = ON ? _mm512_maskz_loadu_epi32(m0, q##R) : z,                          \
                  q##R##b = ON && nc > 1 ? _mm512_maskz_loadu_epi32(m1, q##R + 16) : z,           \
                  q##R##c = ON && nc > 2 ? _mm512_maskz_loadu_epi32(m2, q##R + 32) : z,           \
                  q##R##d = ON && nc > 3 ? _mm512_maskz_loadu_epi32(m3, q##R + 48) : z
    FA__DQB_Q(0, 1);
    FA__DQB_Q(1, nr > 1); /* one row: the rows after it may lie past the workspace's rows */
    FA__DQB_Q(2, nr > 1);
    FA__DQB_Q(3, nr > 1);
#undef FA__DQB_Q
    (void)q1a; (void)q1b; (void)q1c; (void)q1d; (void)q2a; (void)q2b; (void)q2c; (void)q2d;
    (void)q3a; (void)q3b; (void)q3c; (void)q3d;
    for (j = 0; j < n; j++) {
        const uint32_t *kr = (const uint32_t *)(const void *)((const char *)krow[j] + ko) + p0;
        __m512i k0, k1 = z, k2 = z, k3 = z;
        if (kbytes) FA__DEC_PREFETCH(krow, vrow, j, ko, vo, kbytes, vbytes, mh);
        k0 = _mm512_maskz_loadu_epi32(m0, kr);
        if (nc > 1) k1 = _mm512_maskz_loadu_epi32(m1, kr + 16);
        if (nc > 2) k2 = _mm512_maskz_loadu_epi32(m2, kr + 32);
        if (nc > 3) k3 = _mm512_maskz_loadu_epi32(m3, kr + 48);
#define FA__DQB_ROW(R)                                                                            \
    do {                                                                                          \
        __m512 a = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)q##R##a, (__m512bh)k0);        \
        __m512 b = _mm512_setzero_ps();                                                           \
        if (nc > 1) b = _mm512_dpbf16_ps(b, (__m512bh)q##R##b, (__m512bh)k1);                     \
        if (nc > 2) a = _mm512_dpbf16_ps(a, (__m512bh)q##R##c, (__m512bh)k2);                     \
        if (nc > 3) b = _mm512_dpbf16_ps(b, (__m512bh)q##R##d, (__m512bh)k3);                     \
        a = _mm512_add_ps(a, b);                                                                  \
        acc[R][j] = p0 ? _mm512_add_ps(acc[R][j], a) : a;                                         \
    } while (0)
        FA__DQB_ROW(0);
        if (nr > 1) {
            FA__DQB_ROW(1);
            FA__DQB_ROW(2);
            FA__DQB_ROW(3);
        }
#undef FA__DQB_ROW
    }
}

static FA__AVX512BF16 void fa__dec_qk_bf16_avx512(const uint32_t *q, int64_t np, const void *const *krow,
                                                  const void *const *vrow, int64_t nk, float *s, int64_t nrows,
                                                  int64_t nh, size_t khs, size_t vhs, size_t kb, size_t vb)
{
    __m512 acc[4][16];
    int64_t r, j0, j, p0, g;
    const int mh = FA__DEC_MH(nh);
    /* blocks of 16 keys, each for every head in turn: the K rows are read in address order */
    for (j0 = 0; j0 < nk; j0 += 16)
        for (g = 0; g < nh; g++)
            for (r = 0; r < nrows; r += 4) {
                const uint32_t *qr = q + (g * nrows + r) * np;
                float *sr = s + (g * nrows + r) * FA__BK;
                int nr = nrows - r == 1 ? 1 : 4, i;
                size_t ko = (size_t)g * khs, vo = (size_t)g * vhs;
                int64_t n = nk - j0 < 16 ? nk - j0 : 16;
                for (p0 = 0; p0 < np; p0 += 64) {
                    int64_t left = np - p0 < 64 ? np - p0 : 64;
                    int nc = (int)((left + 15) / 16);
                    __mmask16 ml = (__mmask16)(left % 16 ? (1u << (left % 16)) - 1 : 0xffffu);
                    /* the prefetch rides on the first row group's first block */
                    size_t kpf = r == 0 && p0 == 0 ? kb : 0, vpf = r == 0 && p0 == 0 ? vb : 0;
#define FA__DQB_CALL(NR, NC) fa__dec_qkb_block(qr, np, p0, krow + j0, vrow + j0, n, acc, NR, NC, ml, kpf, vpf, ko, vo, mh)
                    if (nr == 1) {
                        switch (nc) {
                        case 1: FA__DQB_CALL(1, 1); break;
                        case 2: FA__DQB_CALL(1, 2); break;
                        case 3: FA__DQB_CALL(1, 3); break;
                        default: FA__DQB_CALL(1, 4); break;
                        }
                    } else {
                        switch (nc) {
                        case 1: FA__DQB_CALL(4, 1); break;
                        case 2: FA__DQB_CALL(4, 2); break;
                        case 3: FA__DQB_CALL(4, 3); break;
                        default: FA__DQB_CALL(4, 4); break;
                        }
                    }
#undef FA__DQB_CALL
                }
                for (j = n; j < 16; j++)
                    for (i = 0; i < nr; i++) acc[i][j] = _mm512_setzero_ps();
                for (i = 0; i < nr; i++)
                    _mm512_mask_storeu_ps(sr + i * FA__BK + j0, (__mmask16)((1u << n) - 1), fa__hsum16x16_avx512(acc[i]));
            }
}

static const fa__attn_kernels fa__kernels_avx512_bf16 = {
    "avx512_bf16", fa__qk_avx512, fa__scale_max_avx512, fa__exp_sum_avx512, fa__scale_avx512, fa__pv_avx512,
    fa__load_avx512, fa__dot_avx512, fa__ktrans_avx512, 0, fa__qk_bf16_avx512, fa__ktrans32_avx512,
    fa__dec_qk_avx512, fa__dec_pv_avx512, 1, fa__dec_qk_bf16_avx512, fa__softmax_row_avx512, fa__wsum_rows_avx512};
#endif /* FA__X86 */

#if defined(FA__NEON) && defined(__aarch64__)
/* ---- NEON (AArch64) ---- */
static float32x4_t fa__exp128(float32x4_t x)
{
    const float32x4_t lo = vdupq_n_f32(FA__EXP_LO), hi = vdupq_n_f32(FA__EXP_HI);
    float32x4_t xc = vminq_f32(vmaxq_f32(x, lo), hi);
    float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f)), p, y, res;
    int32x4_t e, e1, e2;
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), r, vdupq_n_f32(1.9875691500e-4f));
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    y = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    e = vcvtq_s32_f32(n); /* n in [-126, 128]: two factors keep 2^128 representable */
    e1 = vshrq_n_s32(e, 1);
    e2 = vsubq_s32(e, e1);
    res = vmulq_f32(vmulq_f32(y, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(e1, vdupq_n_s32(127)), 23))),
                    vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(e2, vdupq_n_s32(127)), 23)));
    res = vbslq_f32(vcltq_f32(x, lo), vdupq_n_f32(0.0f), res);
    res = vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), res);
    return vbslq_f32(vceqq_f32(x, x), res, x); /* NaN stays NaN */
}

static void fa__qk_neon(const float *q, int64_t dk, const float *kt, float *s, int64_t rows, const int32_t *ncols)
{
    int64_t r, d, d0;
    int h;
    /* 4 rows x 16 keys: 16 accumulators of 4 floats */
    for (r = 0; r < rows; r += FA__MR)
        for (h = ncols ? ncols[2 * (r / FA__MR)] : 0; h < (ncols ? ncols[2 * (r / FA__MR) + 1] : FA__BK); h += 16)
            for (d0 = 0; d0 < dk; d0 += FA__QK_CHUNK) {
                int64_t d1 = d0 + FA__QK_CHUNK < dk ? d0 + FA__QK_CHUNK : dk;
                /* named accumulators: gcc -O2 keeps a loop-indexed array of them in memory */
                float32x4_t z = vdupq_n_f32(0.0f);
                float32x4_t a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
                float32x4_t a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
                for (d = d0; d < d1; d++) {
                    const float *kr = kt + d * FA__BK + h;
                    float32x4_t k0 = vld1q_f32(kr), k1 = vld1q_f32(kr + 4), k2 = vld1q_f32(kr + 8), k3 = vld1q_f32(kr + 12);
#define FA__QK_ROW(I)                                                                             \
    do {                                                                                          \
        float qv = q[(r + I) * dk + d];                                                           \
        a##I##0 = vfmaq_n_f32(a##I##0, k0, qv);                                                   \
        a##I##1 = vfmaq_n_f32(a##I##1, k1, qv);                                                   \
        a##I##2 = vfmaq_n_f32(a##I##2, k2, qv);                                                   \
        a##I##3 = vfmaq_n_f32(a##I##3, k3, qv);                                                   \
    } while (0)
                    FA__QK_ROW(0);
                    FA__QK_ROW(1);
                    FA__QK_ROW(2);
                    FA__QK_ROW(3);
#undef FA__QK_ROW
                }
#define FA__QK_ST(I, J)                                                                           \
    do {                                                                                          \
        float *dst = s + (r + I) * FA__BK + h + 4 * J;                                            \
        vst1q_f32(dst, d0 ? vaddq_f32(vld1q_f32(dst), a##I##J) : a##I##J);                        \
    } while (0)
#define FA__QK_ST_ROW(I)                                                                          \
    do {                                                                                          \
        FA__QK_ST(I, 0); FA__QK_ST(I, 1); FA__QK_ST(I, 2); FA__QK_ST(I, 3);                       \
    } while (0)
                FA__QK_ST_ROW(0);
                FA__QK_ST_ROW(1);
                FA__QK_ST_ROW(2);
                FA__QK_ST_ROW(3);
#undef FA__QK_ST_ROW
#undef FA__QK_ST
            }
}

static float fa__scale_max_neon(float *s, int64_t n, float scale)
{
    float32x4_t vm = vdupq_n_f32(-INFINITY);
    uint32x4_t nan = vdupq_n_u32(0);
    float mx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = vmulq_n_f32(vld1q_f32(s + i), scale);
        vst1q_f32(s + i, x);
        vm = vmaxq_f32(vm, x); /* vmaxq propagates NaN */
        nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(x, x)));
    }
    mx = vmaxvq_f32(vm);
    if (vmaxvq_u32(nan)) mx = NAN;
    for (; i < n; i++) {
        s[i] *= scale;
        mx = fa__nanmax(mx, s[i]);
    }
    return mx;
}

static float fa__exp_sum_neon(float *s, int64_t n, float m)
{
    float32x4_t vm = vdupq_n_f32(m), acc = vdupq_n_f32(0.0f);
    float buf[4];
    int64_t i = 0, k;
    for (; i + 4 <= n; i += 4) {
        float32x4_t p = fa__exp128(vsubq_f32(vld1q_f32(s + i), vm));
        vst1q_f32(s + i, p);
        acc = vaddq_f32(acc, p);
    }
    if (i < n) { /* tail through a padded buffer: same polynomial as the body */
        for (k = 0; k < 4; k++) buf[k] = i + k < n ? s[i + k] : -INFINITY;
        vst1q_f32(buf, fa__exp128(vsubq_f32(vld1q_f32(buf), vm)));
        for (k = 0; i + k < n; k++) s[i + k] = buf[k];
        for (; k < 4; k++) buf[k] = 0.0f;
        acc = vaddq_f32(acc, vld1q_f32(buf));
    }
    return vaddvq_f32(acc);
}

static void fa__scale_neon(float *o, int64_t n, float c)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(o + i, vmulq_n_f32(vld1q_f32(o + i), c));
    for (; i < n; i++) o[i] *= c;
}

static void fa__pv_row_neon(float *o, const float *sr, const float *v, int64_t dvp, int64_t a, int64_t b)
{
    int64_t e, c;
    if (a >= b) return; /* no keys: no pass over the row */
    for (e = 0; e < dvp; e += 4) {
        float32x4_t acc = vld1q_f32(o + e);
        for (c = a; c < b; c++) acc = vfmaq_n_f32(acc, vld1q_f32(v + c * dvp + e), sr[c]);
        vst1q_f32(o + e, acc);
    }
}

static void fa__pv_neon(float *o, const float *s, const float *v, int64_t dvp, int64_t nrows, const int32_t *c0,
                        const int32_t *c1)
{
    int64_t r, e, c, i, a, b, ua, ub;
    for (r = 0; r < nrows; r += FA__MR) {
        int64_t nr = nrows - r < FA__MR ? nrows - r : FA__MR;
        if (nr < FA__MR) { /* the last rows, fewer than a block: row by row */
            for (i = 0; i < nr; i++)
                fa__pv_row_neon(o + (r + i) * dvp, s + (r + i) * FA__BK, v, dvp, c0[r + i], c1[r + i]);
            continue;
        }
        fa__pv_common(nr, c0 + r, c1 + r, &a, &b);
        fa__pv_union(nr, c0 + r, c1 + r, &ua, &ub);
        if (ua >= ub) continue; /* no row sees a key */
        for (e = 0; e < dvp; e += 16) { /* 4 rows x 16 columns */
            float32x4_t acc[4][4];
            int j;
            for (i = 0; i < 4; i++)
                for (j = 0; j < 4; j++) acc[i][j] = vld1q_f32(o + (r + i) * dvp + e + 4 * j);
            for (c = a; c < b; c++) {
                const float *vr = v + c * dvp + e;
                float32x4_t v0 = vld1q_f32(vr), v1 = vld1q_f32(vr + 4), v2 = vld1q_f32(vr + 8), v3 = vld1q_f32(vr + 12);
                for (i = 0; i < 4; i++) {
                    float pr = s[(r + i) * FA__BK + c];
                    acc[i][0] = vfmaq_n_f32(acc[i][0], v0, pr);
                    acc[i][1] = vfmaq_n_f32(acc[i][1], v1, pr);
                    acc[i][2] = vfmaq_n_f32(acc[i][2], v2, pr);
                    acc[i][3] = vfmaq_n_f32(acc[i][3], v3, pr);
                }
            }
            /* the keys outside [a, b) that some rows see (a staircase edge), after the
               common ones as the rows' own loops took them; each row adds only its own */
            for (c = ua; c < ub; c++) {
                const float *vr = v + c * dvp + e;
                float32x4_t v0, v1, v2, v3;
                if (c == a && a < b) {
                    c = b - 1;
                    continue;
                }
                v0 = vld1q_f32(vr);
                v1 = vld1q_f32(vr + 4);
                v2 = vld1q_f32(vr + 8);
                v3 = vld1q_f32(vr + 12);
                for (i = 0; i < 4; i++) {
                    float pr = s[(r + i) * FA__BK + c];
                    if (c < c0[r + i] || c >= c1[r + i]) continue;
                    acc[i][0] = vfmaq_n_f32(acc[i][0], v0, pr);
                    acc[i][1] = vfmaq_n_f32(acc[i][1], v1, pr);
                    acc[i][2] = vfmaq_n_f32(acc[i][2], v2, pr);
                    acc[i][3] = vfmaq_n_f32(acc[i][3], v3, pr);
                }
            }
            for (i = 0; i < 4; i++)
                for (j = 0; j < 4; j++) vst1q_f32(o + (r + i) * dvp + e + 4 * j, acc[i][j]);
        }
    }
}

static void fa__load_neon(float *dst, const void *src, fa_dtype t, int64_t n, float mul)
{
    int64_t i = 0;
    if (t == FA_BF16) {
        const uint16_t *s16 = (const uint16_t *)src;
        for (; i + 4 <= n; i += 4)
            vst1q_f32(dst + i, vmulq_n_f32(vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(s16 + i), 16)), mul));
    } else if (t == FA_F16) {
        const uint16_t *s16 = (const uint16_t *)src;
        for (; i + 4 <= n; i += 4)
            vst1q_f32(dst + i, vmulq_n_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s16 + i))), mul));
    } else if (t == FA_F32) {
        const float *s32 = (const float *)src;
        for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vmulq_n_f32(vld1q_f32(s32 + i), mul));
    } else if (t == FA_E4M3 || t == FA_E5M2) {
        /* 8 codes through IEEE halves: E5M2 is a half's top byte; E4M3's sign and magnitude at
           bits 15 and 13..7 make a half worth value / 256 (see fa__e4m3x16_avx512), and
           mul * 256 is exact. E4M3 groups holding a NaN code go scalar. */
        const uint8_t *s8 = (const uint8_t *)src;
        const float m = t == FA_E4M3 ? mul * 256.0f : mul;
        for (; i + 8 <= n; i += 8) {
            uint8x8_t b = vld1_u8(s8 + i);
            uint16x8_t h = vshlq_n_u16(vmovl_u8(b), 8);
            float16x8_t f;
            if (t == FA_E4M3) {
                if (FA__UNLIKELY(vmaxv_u8(vceq_u8(vand_u8(b, vdup_n_u8(0x7f)), vdup_n_u8(0x7f))))) {
                    fa__load_row(dst + i, s8 + i, t, 8, mul);
                    continue;
                }
                h = vandq_u16(vreinterpretq_u16_s16(vshrq_n_s16(vreinterpretq_s16_u16(h), 1)), vdupq_n_u16(0xbf80));
            }
            f = vreinterpretq_f16_u16(h);
            vst1q_f32(dst + i, vmulq_n_f32(vcvt_f32_f16(vget_low_f16(f)), m));
            vst1q_f32(dst + i + 4, vmulq_n_f32(vcvt_f32_f16(vget_high_f16(f)), m));
        }
    }
    if (i < n) fa__load_row(dst + i, fa__elem_ptr(src, t, i), t, n - i, mul);
}

static float fa__dot_neon(const float *a, const float *b, int64_t n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    float r;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    r = vaddvq_f32(vaddq_f32(s0, s1));
    return i < n ? r + fa__dot_f32(a + i, b + i, n - i) : r;
}

static const fa__attn_kernels fa__kernels_neon = {
    "neon", fa__qk_neon, fa__scale_max_neon, fa__exp_sum_neon, fa__scale_neon, fa__pv_neon,
    fa__load_neon, fa__dot_neon, fa__ktrans_scalar, FA__FEW_ROWS, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL};
#endif /* FA__NEON && __aarch64__ */

/* The best kernels the CPU (and fa_cpu_features_override) allows. */
static const fa__attn_kernels *fa__attn_pick_kernels(void)
{
#if defined(FA__X86)
    unsigned f = fa_cpu_features();
    if ((f & FA_CPU_AVX512F) && (f & FA_CPU_AVX512BW) && (f & FA_CPU_AVX512_BF16)) return &fa__kernels_avx512_bf16;
    if ((f & FA_CPU_AVX512F) && (f & FA_CPU_AVX512BW)) return &fa__kernels_avx512;
    if ((f & FA_CPU_AVX2) && (f & FA_CPU_FMA) && (f & FA_CPU_F16C)) return &fa__kernels_avx2;
#elif defined(FA__NEON) && defined(__aarch64__)
    if (fa_cpu_features() & FA_CPU_NEON) return &fa__kernels_neon;
#endif
    return &fa__kernels_scalar;
}

typedef struct fa__attn_ws {
    float *q, *kt, *v, *s, *o, *m, *l, *krows;
    const void **kp, **vp; /* decode tiles: the K and V rows of the tile's keys, then FA__AHEAD more */
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
    FA__CARVE(krows, float, (size_t)(FA__BK * dk) * f);
    FA__CARVE(kp, const void *, (size_t)(FA__BK + FA__AHEAD) * sizeof(void *));
    FA__CARVE(vp, const void *, (size_t)(FA__BK + FA__AHEAD) * sizeof(void *));
    FA__CARVE(c0, int32_t, (size_t)FA__ROWS * sizeof(int32_t));
    FA__CARVE(c1, int32_t, (size_t)FA__ROWS * sizeof(int32_t));
    FA__CARVE(seen, unsigned char, (size_t)FA__ROWS);
#undef FA__CARVE
    return off;
}

typedef struct fa__unit {
    int64_t b, hk, h0, nh, i0, nq; /* sequence, first kv head, first q head and count, queries */
    int64_t nhk;                   /* kv heads: 1, or (decode) several, whose groups of q heads
                                      are the unit's rows in order */
} fa__unit;
/* A bf16 row copied as it is into 32-bit pairs (dims 2p, 2p+1); an odd last dim pairs with 0. */
static void fa__bf16_pairs(uint16_t *dst, const void *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * 2);
    if (n & 1) dst[n] = 0;
}

/* Everything one unit's tiles share. */
typedef struct fa__unit_ctx {
    const fa__attn_plan *p;
    const fa__attn_kernels *K;
    const fa__unit *u;
    const fa__attn_ws *w;
    fa__seq s;
    int64_t nrows, rows_pad, dvp;
    size_t kpf, vpf; /* decode tiles: bytes of each K / V row to prefetch */
    float kmul, vmul;
    int post;      /* per-element score terms: softcap, ALiBi, a score callback (partial mask
                      tiles add their element test) */
    int few_rows;  /* decode-sized unit: S by dots while K streams in */
    int dec;       /* decode-sized unit with K->dec_qk: unmasked tiles read K and V in place */
    int bf16;      /* bf16 Q and K on AVX512_BF16: S from bf16 pairs (K->qk_bf16) */
    int dec_bf16;  /* a decode tile of bf16 Q and K on AVX512_BF16: S by K->dec_qk_bf16 */
    int64_t np;    /* bf16 pairs per row: ceil(head_dim / 2) */
    const float *qf; /* the rows K->qk reads, dk apart: w->q, or f32 Q where it lies */
    int64_t knext, knext_end; /* the keys of the tile that comes next, [knext, knext_end) (up to
                                 FA__BK of them are prefetched); knext < 0: none or unknown */
} fa__unit_ctx;

/* One key tile [j0, j1) of a unit. mask_pos >= 0: the tile is a PARTIAL tile of the sparse mask
   (at that position of its query block's partial list) and each element is tested. phase: the
   whole tile (FA__TILE_ALL); or, for a decode unit of several kv heads, S of every head at once
   (FA__TILE_S_HEADS: x is the unit), per head the softmax (FA__TILE_AFTER_S: x a sub-unit), and
   P V of every head at once (FA__TILE_PV_HEADS: x the unit). */
#define FA__TILE_ALL 0
#define FA__TILE_S_HEADS 1
#define FA__TILE_AFTER_S 2
#define FA__TILE_PV_HEADS 3
static void fa__attn_tile(const fa__unit_ctx *x, int64_t j0, int64_t j1, int64_t mask_pos, int phase)
{
    const fa__attn_plan *p = x->p;
    const fa_attn_desc *d = p->d;
    const fa__attn_kernels *K = x->K;
    const fa__unit *u = x->u;
    const fa__attn_ws *w = x->w;
    const int64_t dk = p->dk, dv = p->dv, dvp = x->dvp, nk = j1 - j0;
    /* bytes from one key's K (V) row to the next's, within a page */
    const int64_t ksb = p->ks.seq * (int64_t)fa_dtype_size(d->k_type), vsb = p->vs.seq * (int64_t)fa_dtype_size(d->v_type);
    int64_t r, j, e, qi, ra, rb, nra, lo_off, hi_off;
    int any = 0, masked = mask_pos >= 0, dec = x->dec && !masked, kdirect, vdirect, whole;
    const float *ksrc = NULL, *vsrc = w->v;
    const unsigned char *pfk = NULL, *pfv = NULL; /* the next tile's prefetch (see below) */
    int64_t pfkeys = 0, pfkey = 0, pfln = 0, pfl = 0, pfkl = 0, pfper = 0;
    /* the logits' scale; a decode tile's K rows are not scaled by k_scale on the way in, and
       the decode kernels read E4M3 as its value / 256 (times 256: the same bits) */
    const float sscale = dec ? (p->scale * x->kmul) * (d->k_type == FA_E4M3 ? 256.0f : 1.0f) : p->scale;
    const float pscale = dec ? x->vmul * (d->v_type == FA_E4M3 ? 256.0f : 1.0f) : 1.0f; /* P's, for raw V */

    /* The rows that can see a key of the tile, [ra, rb): rows are query-major and a query's
       visible interval moves right with the query index (fa__row_range), so they are one run,
       found from the interval's two diagonal edges (fa__row_edges). On a causal diagonal tile
       or a window's edge the others cost nothing below (up to seven eighths of a 512-row unit's
       rows). Rounded out to groups of FA__MR for the kernels; a decode tile keeps all its (at
       most 8) rows. */
    if (phase == FA__TILE_PV_HEADS) { /* w->vp: kv head u->hk's rows, from FA__TILE_S_HEADS */
        K->dec_pv(w->o, dvp, w->s, w->vp, d->v_type, dv, p->group, u->nhk,
                  (size_t)p->vs.head * fa_dtype_size(d->v_type), x->vpf, w->c0, w->c1);
        return;
    }
    ra = 0;
    rb = x->rows_pad;
    /* every row sees the whole tile (the usual case): the last query's range starts at or
       before j0 and the first's ends at or past j1 (0 <= j0, j1 <= sk: the clips to 0 and sk
       decide nothing) */
    fa__row_edges(p, &x->s, &lo_off, &hi_off);
    whole = u->i0 + u->nq - 1 + lo_off <= j0 && u->i0 + hi_off >= j1;
    if (!whole && !x->few_rows && !dec) {
        int64_t qa, qb;
        fa__tile_queries(lo_off, hi_off, u->i0, u->nq, j0, j1, &qa, &qb);
        ra = qa * u->nh / FA__MR * FA__MR;
        rb = qb > qa ? (qb * u->nh + FA__MR - 1) / FA__MR * FA__MR : ra;
        if (rb > x->rows_pad) rb = x->rows_pad;
        if (ra >= rb) return; /* no row sees the tile */
    }
    nra = rb - ra;
    /* each row's visible keys: [c0, c1) (S of every head needs none: each head's softmax sets them) */
    if (phase != FA__TILE_S_HEADS && whole) {
        for (r = 0; r < x->nrows; r++) {
            w->c0[r] = 0;
            w->c1[r] = (int32_t)nk;
        }
    } else if (phase != FA__TILE_S_HEADS) {
        /* fa__row_range of each query, clipped to the tile (so the offsets fit), from its
           edges (fa__row_edges: the clip to j0 >= 0 covers lo's max with 0); a call per
           query, and two binary searches for [qa, qb) above, were 1% of a causal diagonal
           block's time (0.161 TSC ticks per pair, now 0.066: bench/probe_causal/phases.sh,
           Zen 3) */
        const int64_t q0 = ra / u->nh, q1 = (rb + u->nh - 1) / u->nh < u->nq ? (rb + u->nh - 1) / u->nh : u->nq;
        int64_t h;
        for (qi = q0; qi < q1; qi++) { /* head 0's row of each query, then the other heads' */
            int64_t lo = u->i0 + qi + lo_off, hi = u->i0 + qi + hi_off;
            lo = lo < j0 ? j0 : lo > j1 ? j1 : lo;
            hi = hi > j1 ? j1 : hi < j0 ? j0 : hi; /* j1 <= sk: hi's clip to sk is in this one */
            w->c0[qi * u->nh] = (int32_t)(lo - j0);
            w->c1[qi * u->nh] = (int32_t)(hi - j0);
        }
        for (qi = q0; u->nh > 1 && qi < q1; qi++)
            for (h = 1; h < u->nh; h++) {
                w->c0[qi * u->nh + h] = w->c0[qi * u->nh];
                w->c1[qi * u->nh + h] = w->c1[qi * u->nh];
            }
    }
    if (dec && phase != FA__TILE_AFTER_S) { /* the tile's K and V rows, and the next FA__AHEAD keys' for the prefetch */
        int64_t nptr = x->s.sk - j0 < nk + FA__AHEAD ? x->s.sk - j0 : nk + FA__AHEAD;
        for (j = 0; j < nptr;) { /* runs of keys a fixed stride apart: the whole range, or a page */
            int64_t t, run = nptr - j;
            const unsigned char *kb, *vb;
            if (d->block_table && d->page_size - (j0 + j) % d->page_size < run)
                run = d->page_size - (j0 + j) % d->page_size; /* to the end of the page */
            fa__kv_rows(p, &x->s, u->b, j0 + j, u->hk, &kb, &vb);
            for (t = 0; t < run; t++) {
                w->kp[j + t] = kb + t * ksb;
                w->vp[j + t] = vb + t * vsb;
            }
            j += run;
        }
        for (j = nptr; j < nk + FA__AHEAD; j++) w->kp[j] = w->vp[j] = NULL;
        if (phase == FA__TILE_S_HEADS) { /* every kv head of the unit, p->group rows each */
            size_t khs = (size_t)p->ks.head * fa_dtype_size(d->k_type), vhs = (size_t)p->vs.head * fa_dtype_size(d->v_type);
            if (x->dec_bf16)
                K->dec_qk_bf16((const uint32_t *)(const void *)w->q, x->np, w->kp, w->vp, nk, w->s, p->group, u->nhk, khs,
                               vhs, x->kpf, x->vpf);
            else
                K->dec_qk(w->q, dk, w->kp, w->vp, d->k_type, nk, w->s, p->group, u->nhk, khs, vhs, x->kpf, x->vpf);
            return;
        }
        if (phase == FA__TILE_ALL) {
            if (x->dec_bf16)
                K->dec_qk_bf16((const uint32_t *)(const void *)w->q, x->np, w->kp, w->vp, nk, w->s, x->nrows, 1, 0, 0,
                               x->kpf, x->vpf);
            else
                K->dec_qk(w->q, dk, w->kp, w->vp, d->k_type, nk, w->s, x->nrows, 1, 0, 0, x->kpf, x->vpf);
        }
    }
    /* V tile, padded; K tile transposed for the register-blocked S = Q K^T, or with few rows
       (decode) each K row dotted with the queries as it streams in. Unscaled f32 K rows a fixed
       stride apart (not across a page boundary) are transposed from where they lie. */
    {
        const int one_page = !d->block_table || j0 % d->page_size + nk <= d->page_size;
        int64_t ko, vo;
        kdirect = !dec && !x->bf16 && !x->few_rows && d->k_type == FA_F32 && x->kmul == 1.0f && one_page;
        /* unscaled f32 V rows exactly dvp apart (one head, or a head-major layout) are already
           the tile P V reads: no copy. (Reading rows further apart in place was slower than the
           copy: 4 token-major heads at d=64 0.95x.) */
        vdirect = !dec && !masked && d->v_type == FA_F32 && x->vmul == 1.0f && dv == dvp && p->vs.seq == dvp &&
                  one_page;
        if (kdirect || vdirect) {
            fa__kv_offsets(p, &x->s, u->b, j0, u->hk, &ko, &vo);
            if (kdirect) ksrc = (const float *)d->k + ko;
            if (vdirect) vsrc = (const float *)d->v + vo;
        }
    }
    /* K and V rows: without a block table a fixed stride apart, found by adding (a call of
       fa__kv_offsets per row and per prefetch cost about 1.5% of a prefill tile) */
    {
        const int paged = d->block_table != NULL;
        const unsigned char *kb = NULL, *vb = NULL, *kr, *vr;
        if (!paged && !dec) fa__kv_rows(p, &x->s, u->b, j0, u->hk, &kb, &vb);
        for (j = 0; j < (dec ? 0 : nk); j++) {
            if (j0 + j + FA__PREFETCH < x->s.sk) { /* rows are strided: ask for the ones ahead */
                if (paged) {
                    fa__kv_rows(p, &x->s, u->b, j0 + j + FA__PREFETCH, u->hk, &kr, &vr);
                } else {
                    kr = kb + (j + FA__PREFETCH) * ksb;
                    vr = vb + (j + FA__PREFETCH) * vsb;
                }
                FA__PREFETCH_LINES(kr, x->kpf, 0);
                FA__PREFETCH_LINES(vr, x->vpf, 0);
            }
            if (paged) {
                fa__kv_rows(p, &x->s, u->b, j0 + j, u->hk, &kr, &vr);
            } else {
                kr = kb + j * ksb;
                vr = vb + j * vsb;
            }
            if (x->bf16) {
                fa__bf16_pairs((uint16_t *)(void *)w->krows + j * 2 * x->np, kr, dk);
            } else if (!kdirect) {
                K->load(w->krows + j * dk, kr, d->k_type, dk, x->kmul);
            }
            if (x->few_rows)
                for (r = 0; r < x->nrows; r++) w->s[r * FA__BK + j] = K->dot(w->q + r * dk, w->krows + j * dk, dk);
            if (vdirect) continue;
            K->load(w->v + j * dvp, vr, d->v_type, dv, x->vmul);
            for (e = dv; e < dvp; e++) w->v[j * dvp + e] = 0.0f;
        }
    }
    if (dec) {
        /* S is done */
    } else if (x->bf16) {
        K->ktrans32((uint32_t *)(void *)w->kt, (const uint32_t *)(const void *)w->krows, nk, x->np);
        K->qk_bf16((const uint32_t *)(const void *)w->q + ra * x->np, x->np, (const uint32_t *)(const void *)w->kt,
                   w->s + ra * FA__BK, nra);
    } else if (!x->few_rows) {
        /* a row group needs the keys from its rows' first visible one to their last: on a
           causal diagonal tile the first groups skip most of the tile, on a window's left
           edge the last groups */
        int32_t ncols[2 * (FA__ROWS / FA__MR)];
        int cut = 0;
        if (!whole || nk < FA__BK) /* else every group needs all 64 columns: cut stays 0 */
            for (r = ra; r < rb; r += FA__MR) {
                int64_t rr, first = FA__BK, need = 0;
                for (rr = r; rr < r + FA__MR && rr < x->nrows; rr++)
                    if (w->c0[rr] < w->c1[rr]) {
                        if (w->c1[rr] > need) need = w->c1[rr];
                        if (w->c0[rr] < first) first = w->c0[rr];
                    }
                need = (need + 15) & ~(int64_t)15;
                first = first >= need ? need : first & ~(int64_t)15; /* no visible row: empty */
                ncols[2 * ((r - ra) / FA__MR)] = (int32_t)first;
                ncols[2 * ((r - ra) / FA__MR) + 1] = (int32_t)need;
                cut |= first > 0 || need < FA__BK;
            }
        if (kdirect) K->ktrans(w->kt, ksrc, p->ks.seq, nk, dk);
        else K->ktrans(w->kt, w->krows, dk, nk, dk);
        K->qk(x->qf + ra * dk, dk, w->kt, w->s + ra * FA__BK, nra, cut ? ncols : NULL);
    }

    if (rb > x->nrows) rb = x->nrows; /* past here: the padding rows of the kernels */
    if (FA__PREFETCH_NEXT && !dec && !x->few_rows && !d->block_table && x->knext >= 0 && rb > ra) {
        /* the next tile's K and V rows into L2, their lines spread over the rows' softmax below
           (see FA__PREFETCH_NEXT) */
        pfkeys = x->knext_end - x->knext < FA__BK ? x->knext_end - x->knext : FA__BK;
        fa__kv_rows(p, &x->s, u->b, x->knext, u->hk, &pfk, &pfv);
        pfkl = (int64_t)(x->kpf + 63) / 64;
        pfl = pfkl + (int64_t)(x->vpf + 63) / 64;
        pfper = (pfkeys * pfl + (rb - ra) - 1) / (rb - ra);
    }
    for (r = ra; r < rb; r++) {
        int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh, c0 = w->c0[r], c1 = w->c1[r], c, t;
        float *sr = w->s + r * FA__BK, mx, mnew, corr, sum = 0.0f;
        int fused = 0; /* softmax_row gave mnew and sum (and the exps) at once */
        for (t = 0; t < pfper && pfkey < pfkeys; t++) { /* line pfln of key knext + pfkey: K's, then V's */
            FA__PREFETCH_LINES(pfln < pfkl ? pfk + pfkey * ksb + pfln * 64 : pfv + pfkey * vsb + (pfln - pfkl) * 64,
                               64, 2);
            if (++pfln == pfl) {
                pfln = 0;
                pfkey++;
            }
        }
        w->c0[r] = w->c1[r] = 0; /* set again below once the row takes part in the tile */
        if (c0 >= c1) continue;
        if (x->post || masked) { /* full tiles of a plain mask take the vector path below */
            float slope = d->alibi_slopes ? d->alibi_slopes[u->b * d->alibi_batch_stride + h] : 0.0f;
            int64_t kept = 0;
            mx = -INFINITY;
            for (c = c0; c < c1; c++) {
                float sc = sscale * sr[c];
                if (masked && !fa__mask_keep_partial(d->mask, u->b, h, i, j0 + c, mask_pos)) {
                    sr[c] = -INFINITY; /* weight exactly 0; P V skips it */
                    continue;
                }
                kept++;
                if (p->softcap > 0.0f) sc = p->softcap * tanhf(sc / p->softcap);
                if (slope != 0.0f) {
                    int64_t dist = i + x->s.off - (j0 + c);
                    sc -= slope * (float)(dist < 0 ? -dist : dist);
                }
                if (d->mask && fa__mask_has_score(d->mask)) sc = fa__mask_score(d->mask, sc, u->b, h, i, j0 + c);
                sr[c] = sc;
                mx = fa__nanmax(mx, sc);
            }
            if (!kept) continue; /* the mask hides this whole tile from the row */
        } else if (K->softmax_row) {
            mnew = K->softmax_row(sr + c0, c1 - c0, sscale, w->m[r], &sum);
            fused = 1;
        } else {
            mx = K->scale_max(sr + c0, c1 - c0, sscale);
        }
        w->c0[r] = (int32_t)c0;
        w->c1[r] = (int32_t)c1;
        any = 1;
        if (!fused) mnew = fa__softmax_ref(w->m[r], mx);
        /* 0 on a row's first visible tile (m = -inf); exactly 1 while a finite max holds, which
           after the first tiles is most of them (expf(0) is 1 too: the shortcut changes no bit,
           and -inf or NaN maxima still take expf) */
        corr = w->m[r] == mnew && mnew > -INFINITY ? 1.0f : expf(w->m[r] - mnew);
        if (w->seen[r] && corr != 1.0f) K->scale(w->o + r * dvp, dvp, corr);
        if (!fused) sum = K->exp_sum(sr + c0, c1 - c0, mnew);
        if (pscale != 1.0f) K->scale(sr + c0, c1 - c0, pscale); /* v_scale, as P V reads raw V */
        w->l[r] = (w->seen[r] ? w->l[r] * corr : 0.0f) + sum;
        w->m[r] = mnew;
        w->seen[r] = 1;
    }
    if (!any) return;
    if (dec) {
        if (phase == FA__TILE_ALL) K->dec_pv(w->o, dvp, w->s, w->vp, d->v_type, dv, x->nrows, 1, 0, 0, w->c0, w->c1);
    } else if (!masked) {
        K->pv(w->o + ra * dvp, w->s + ra * FA__BK, vsrc, dvp, rb - ra, w->c0 + ra, w->c1 + ra);
    } else {
        /* partial tile: rows skip the keys the mask hides, so a NaN there cannot leak in */
        for (r = ra; r < rb; r++) {
            const float *sr = w->s + r * FA__BK;
            float *orow = w->o + r * dvp;
            int64_t c;
            for (c = w->c0[r]; c < w->c1[r]; c++) {
                const float *vr = w->v + c * dvp;
                float pr = sr[c];
                if (pr == 0.0f) continue;
                for (e = 0; e < dvp; e++) orow[e] += pr * vr[e];
            }
        }
    }
}

/* The part of a several-kv-head unit that reads kv head u->hk + g: its group of rows (one
   query), the workspace rows of that group, the head's K/V scales. */
static void fa__sub_unit(const fa__unit_ctx *x, int64_t g, fa__unit_ctx *xs, fa__unit *us, fa__attn_ws *ws)
{
    const fa__attn_plan *p = x->p;
    const fa_attn_desc *d = p->d;
    int64_t r0 = g * p->group, hk = x->u->hk + g;
    *xs = *x;
    *us = *x->u;
    *ws = *x->w;
    us->hk = hk;
    us->h0 = x->u->h0 + r0;
    us->nh = p->group;
    us->nhk = 1;
    ws->q += r0 * (x->bf16 || x->dec_bf16 ? x->np : p->dk); /* bf16 rows hold np 32-bit pairs */
    ws->s += r0 * FA__BK;
    ws->o += r0 * x->dvp;
    ws->m += r0;
    ws->l += r0;
    ws->c0 += r0;
    ws->c1 += r0;
    ws->seen += r0;
    xs->u = us;
    xs->w = ws;
    xs->qf = x->qf + r0 * p->dk; /* f32 rows (in place or copied) are dk apart */
    xs->nrows = p->group;
    xs->rows_pad = (p->group + FA__MR - 1) / FA__MR * FA__MR;
    xs->kmul = fa__kv_scale(d->k_scale, d->k_head_scale, hk);
    xs->vmul = fa__kv_scale(d->v_scale, d->v_head_scale, hk);
}

/* The next key block of a query block's two ascending lists (full and partial blocks) merged,
   from positions a and b (one of them not at its end); *is_part: it is the partial list's. */
static int64_t fa__merged_next(const int32_t *full, int64_t nfull, const int32_t *part, int64_t npart, int64_t a,
                               int64_t b, int *is_part)
{
    *is_part = a >= nfull || (b < npart && part[b] < full[a]);
    return *is_part ? part[b] : full[a];
}

/* Runs unit u; with splits > 1 only the key tiles of share `split` of its visible union. With
   part_o set, row r's normalised output and LSE go to part_o + r * part_rs and to the float
   fa__dvp(dv) after it (a split-KV partial, fa__part_o) instead of the output view. With a
   sparse mask only the mask's non-empty key blocks of the unit's query block are visited:
   empty tiles cost nothing. */
static void fa__attn_unit(const fa__attn_plan *p, const fa__attn_kernels *K, const fa__unit *u,
                          const fa__attn_ws *w, int64_t split, float *part_o, int64_t part_rs)
{
    const fa_attn_desc *d = p->d;
    fa__unit_ctx x;
    const int64_t dk = p->dk, dv = p->dv;
    int64_t r, j0, kmin, kmax, tmp, tile_rows, g;
    int heads_s;
    x.p = p;
    x.K = K;
    x.u = u;
    x.w = w;
    x.dvp = fa__dvp(dv);
    x.nrows = u->nh * u->nq;
    x.rows_pad = (x.nrows + FA__MR - 1) / FA__MR * FA__MR;
    x.kmul = fa__kv_scale(d->k_scale, d->k_head_scale, u->hk);
    x.vmul = fa__kv_scale(d->v_scale, d->v_head_scale, u->hk);
    x.post = p->softcap > 0.0f || d->alibi_slopes != NULL || (d->mask && fa__mask_has_score(d->mask));
    /* a tile's rows: the unit's, or one kv head's group when the unit spans several */
    tile_rows = u->nhk > 1 ? p->group : x.nrows;
    x.few_rows = tile_rows <= K->dot_rows;
    x.dec = K->dec_qk && tile_rows <= FA__DEC_ROWS && dk % 16 == 0 && dv % 16 == 0 &&
            (K->dec_fp8 || (!fa__is_fp8(d->k_type) && !fa__is_fp8(d->v_type)));
    x.kpf = (size_t)dk * fa_dtype_size(d->k_type);
    x.vpf = (size_t)dv * fa_dtype_size(d->v_type);
    x.bf16 = FA__BF16_PAIRS_PAY && K->qk_bf16 && d->q_type == FA_BF16 && d->k_type == FA_BF16 && x.kmul == 1.0f && !x.few_rows && !x.dec &&
             (u->nhk == 1 || !d->k_head_scale); /* bf16 pairs take no scale: every head's must be 1 */
    x.dec_bf16 = x.dec && K->dec_qk_bf16 && d->q_type == FA_BF16 && d->k_type == FA_BF16 && !d->mask; /* masked tiles dot f32 rows */
    x.np = (dk + 1) / 2;
    fa__attn_seq(p, u->b, &x.s);

    /* rows are query-major: row r = (query u->i0 + r / nh, head u->h0 + r % nh). f32 rows
       that lie dk apart with no padding row, in the unit or in any kv head's group of it (one
       head with packed tokens, or every head of packed tokens), are read where they lie by
       K->qk: the copy was a pass over Q per unit, which causal units, half the work of full
       ones on average, paid twice as often per FLOP. (A padding row would read past the rows:
       the copies keep zero rows there.) */
    x.qf = w->q;
    if (d->q_type == FA_F32 && !x.few_rows && !x.dec && !x.bf16 && tile_rows % FA__MR == 0 &&
        ((u->nh == 1 && p->qs.seq == dk) || (p->qs.head == dk && p->qs.seq == u->nh * dk)))
        x.qf = (const float *)d->q + x.s.q_base + (x.s.q_tok0 + u->i0) * p->qs.seq + u->h0 * p->qs.head;
    for (r = 0; x.qf == w->q && r < x.rows_pad; r++) {
        if (r < x.nrows) {
            int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh;
            const void *src = fa__elem_ptr(d->q, d->q_type, x.s.q_base + (x.s.q_tok0 + i) * p->qs.seq + h * p->qs.head);
            if (x.bf16 || x.dec_bf16) {
                fa__bf16_pairs((uint16_t *)(void *)w->q + r * 2 * x.np, src, dk);
            } else {
                K->load(w->q + r * dk, src, d->q_type, dk, 1.0f);
            }
        } else if (x.bf16 || x.dec_bf16) {
            memset((uint16_t *)(void *)w->q + r * 2 * x.np, 0, (size_t)x.np * 4);
        } else {
            memset(w->q + r * dk, 0, (size_t)dk * sizeof(float));
        }
    }
    /* decode over several kv heads, the kv heads' S at once: the last head's last group of 4
       rows may run up to 3 rows past the unit's (see dec_qk), which then read zero queries */
    heads_s = !d->mask && u->nhk > 1 && x.dec && x.nrows + 3 <= FA__ROWS;
    for (r = x.rows_pad; heads_s && r < x.nrows + 3; r++) {
        if (x.dec_bf16) memset((uint16_t *)(void *)w->q + r * 2 * x.np, 0, (size_t)x.np * 4);
        else memset(w->q + r * dk, 0, (size_t)dk * sizeof(float));
    }
    memset(w->o, 0, (size_t)(x.nrows * x.dvp) * sizeof(float));
    for (r = 0; r < x.nrows; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
        w->seen[r] = 0;
    }
    /* the rows' intervals are monotone in the query index: the union is [lo(first), hi(last)) */
    fa__row_range(p, &x.s, u->i0, &kmin, &tmp);
    fa__row_range(p, &x.s, u->i0 + u->nq - 1, &tmp, &kmax);
    if (p->splits > 1 && kmax > kmin) { /* this split's share: whole pieces of piece keys */
        const int64_t piece = p->split_keys;
        int64_t tiles = (kmax - kmin + piece - 1) / piece, t0, t1;
        if (p->split_min > 0) {
            fa__split_tiles(tiles, p->split_div, p->split_min, split, &t0, &t1);
        } else {
            int64_t per = (tiles + p->splits - 1) / p->splits;
            t0 = split * per;
            t1 = t0 + per;
        }
        kmax = kmin + t1 * piece < kmax ? kmin + t1 * piece : kmax;
        kmin += t0 * piece;
    }
    x.knext = -1;

    if (heads_s) {
        /* S of each key tile for every kv head at once (the K rows in address order), then
           each head's softmax and P V */
        for (j0 = kmin; j0 < kmax; j0 += FA__BK) {
            int64_t j1 = j0 + FA__BK < kmax ? j0 + FA__BK : kmax;
            fa__attn_tile(&x, j0, j1, -1, FA__TILE_S_HEADS); /* decode: no next-tile prefetch */
            for (g = 0; g < u->nhk; g++) {
                fa__unit_ctx xs;
                fa__unit us;
                fa__attn_ws ws;
                fa__sub_unit(&x, g, &xs, &us, &ws);
                fa__attn_tile(&xs, j0, j1, -1, FA__TILE_AFTER_S);
            }
            fa__attn_tile(&x, j0, j1, -1, FA__TILE_PV_HEADS);
        }
    } else if (!d->mask && u->nhk > 1) { /* each key tile for every kv head in turn (no mask here) */
        for (j0 = kmin; j0 < kmax; j0 += FA__BK)
            for (g = 0; g < u->nhk; g++) {
                fa__unit_ctx xs;
                fa__unit us;
                fa__attn_ws ws;
                const int64_t j1 = j0 + FA__BK < kmax ? j0 + FA__BK : kmax;
                fa__sub_unit(&x, g, &xs, &us, &ws);
                xs.knext = j1 < kmax ? j1 : -1; /* the head's own next tile */
                xs.knext_end = kmax;
                fa__attn_tile(&xs, j0, j1, -1, FA__TILE_ALL);
            }
    } else if (!d->mask) {
        for (j0 = kmin; j0 < kmax; j0 += FA__BK) {
            const int64_t j1 = j0 + FA__BK < kmax ? j0 + FA__BK : kmax;
            x.knext = j1 < kmax ? j1 : -1;
            x.knext_end = kmax;
            fa__attn_tile(&x, j0, j1, -1, FA__TILE_ALL);
        }
    } else {
        /* the two ascending lists of the unit's query block, merged; each block in tiles of
           at most FA__BK keys, clipped to [kmin, kmax) */
        const int32_t *full, *part;
        int64_t nfull, npart, a = 0, b = 0, bk = fa__mask_block_k(d->mask);
        fa__mask_blocks(d->mask, u->b, u->h0, u->i0 / fa__mask_block_q(d->mask), &full, &nfull, &part, &npart);
        while (a < nfull || b < npart) {
            int is_part;
            int64_t blk = fa__merged_next(full, nfull, part, npart, a, b, &is_part), pos = is_part ? b : -1;
            int64_t k0 = blk * bk > kmin ? blk * bk : kmin, k1 = (blk + 1) * bk < kmax ? (blk + 1) * bk : kmax;
            if (is_part) b++;
            else a++;
            for (j0 = k0; j0 < k1; j0 += FA__BK) {
                const int64_t j1 = j0 + FA__BK < k1 ? j0 + FA__BK : k1;
                if (j1 < k1) { /* the next tile: this block's, or the next block's first */
                    x.knext = j1;
                    x.knext_end = k1;
                } else if (a < nfull || b < npart) {
                    int next_part;
                    int64_t nb = fa__merged_next(full, nfull, part, npart, a, b, &next_part);
                    x.knext = nb * bk > kmin ? nb * bk : kmin;
                    x.knext_end = (nb + 1) * bk < kmax ? (nb + 1) * bk : kmax;
                    if (x.knext >= x.knext_end) x.knext = -1;
                } else {
                    x.knext = -1;
                }
                fa__attn_tile(&x, j0, j1, pos, FA__TILE_ALL);
            }
        }
    }

    for (r = 0; r < x.nrows; r++) {
        int64_t i = u->i0 + r / u->nh, h = u->h0 + r % u->nh;
        float *o = w->o + r * x.dvp, lse, inv = 1.0f;
        if (w->seen[r]) {
            inv = 1.0f / w->l[r];
            lse = part_o || d->lse ? w->m[r] + logf(w->l[r]) : 0.0f; /* only where it is kept */
        } else {
            lse = -INFINITY; /* nothing visible: o stays 0 */
        }
        /* f32 rows are normalised on their way out (load multiplies as scale would: the same
           bits, one pass less over the unit's rows) */
        if (part_o) {
            K->load(part_o + r * part_rs, o, FA_F32, dv, inv);
            part_o[r * part_rs + x.dvp] = lse;
            continue;
        }
        if (d->o_type == FA_F32) {
            K->load((float *)fa__out_row(p, &x.s, i, h), o, FA_F32, dv, inv);
        } else {
            if (inv != 1.0f) K->scale(o, dv, inv);
            fa__store_row_fast(fa__out_row(p, &x.s, i, h), d->o_type, o, dv);
        }
        fa__put_lse(p, &x.s, i, h, lse);
    }
}

/* Merges n partial results of one row (the LSE combination of fa_attn_merge): part k is dv
   elements of type pt at parts + k*pstride, its LSE at lse[k*lstride]. Writes dv elements of
   type ot to out and returns the merged LSE. Empty parts (LSE -inf) drop out. */
static float fa__merge_row(const fa__attn_kernels *K, void *out, fa_dtype ot, const void *parts, fa_dtype pt,
                           int64_t pstride, const float *lse, int64_t lstride, int64_t n, int64_t dv)
{
    /* each part's weight is computed once per block of 64 parts (not once per element), and
       the row goes out in blocks of 256 elements; the sums run in the same order as one
       element at a time would */
    float mx = -INFINITY, wsum = 0.0f, w[64], acc[256];
    int64_t k, k0, e, e0, oes = (int64_t)fa_dtype_size(ot);
    for (k = 0; k < n; k++) mx = fa__nanmax(mx, lse[k * lstride]);
    if (mx != -INFINITY)
        for (k = 0; k < n; k++) {
            float wk = expf(lse[k * lstride] - mx);
            if (k < 64) w[k] = wk; /* kept for the first block below */
            wsum += wk;
        }
    for (e0 = 0; e0 < dv; e0 += 256) {
        int64_t ne = dv - e0 < 256 ? dv - e0 : 256;
        for (e = 0; e < ne; e++) acc[e] = 0.0f;
        for (k0 = 0; k0 < n && mx != -INFINITY; k0 += 64) { /* every part empty: zeros */
            int64_t nk = n - k0 < 64 ? n - k0 : 64;
            if (k0 > 0 || (e0 > 0 && n > 64)) /* w holds parts [0, 64) but for this block */
                for (k = 0; k < nk; k++) w[k] = expf(lse[(k0 + k) * lstride] - mx);
            if (pt == FA_F32 && K->wsum_rows) {
                /* the parts were written by other threads: the kernel asks for a few ahead
                   (16-core Xeon, a 32-row decode step of 51 splits: 1.00-1.07x, cold) */
                K->wsum_rows(acc, (const float *)parts + k0 * pstride + e0, pstride, w, nk, ne);
                continue;
            }
            for (k = 0; k < nk; k++) {
                int64_t base = (k0 + k) * pstride + e0;
                if (w[k] == 0.0f) continue; /* an empty part's o may be anything */
                if (pt == FA_F32) {
                    const float *pr = (const float *)parts + base;
                    for (e = 0; e < ne; e++) acc[e] += w[k] * pr[e];
                } else {
                    for (e = 0; e < ne; e++) acc[e] += w[k] * fa__elem_f32(parts, pt, base + e);
                }
            }
        }
        if (mx != -INFINITY)
            for (e = 0; e < ne; e++) acc[e] /= wsum;
        fa__store_row_fast((unsigned char *)out + e0 * oes, ot, acc, ne);
    }
    return mx == -INFINITY ? -INFINITY : mx + logf(wsum);
}

/* ---- scheduling over the pool ---- */
typedef struct fa__attn_job {
    const fa__attn_plan *p;
    const fa__attn_kernels *K;
    unsigned char *ws;        /* workspace: one scratch block per worker first */
    const int64_t *prefix;    /* varlen: first unit of each sequence [batch+1]; NULL otherwise */
    float *parts;             /* split-KV partials: see fa__part_o */
} fa__attn_job;

/* Flat unit index -> unit. A sequence's units are numbered kv head, head chunk, query tile. */
static void fa__attn_unit_at(const fa__attn_job *job, int64_t idx, fa__unit *u)
{
    const fa__attn_plan *p = job->p;
    int64_t b, sq, nqt, rest, hc, tile;
    if (job->prefix) { /* binary search for the sequence that owns idx */
        int64_t lo = 0, hi = p->batch;
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (job->prefix[mid] <= idx) lo = mid;
            else hi = mid;
        }
        b = lo;
        idx -= job->prefix[b];
        sq = (int64_t)p->d->cu_seqlens_q[b + 1] - p->d->cu_seqlens_q[b];
    } else {
        int64_t per_b = p->units / p->batch;
        b = idx / per_b;
        idx -= b * per_b;
        sq = p->sq_max;
    }
    nqt = (sq + p->q_per_unit - 1) / p->q_per_unit;
    /* Query tiles last to first: with causal masking the last tiles see the most keys, so the
       pool's dynamic claiming starts the longest units first and ends on short ones. When units
       are unequal (causal, window), heads go in groups of as many as there are threads, and
       within a group the tile is the outer index: every head of the group starts its longest
       tile before any shorter one (no thread is left with a long unit at the end), while each
       thread keeps to about one head at a time, whose K/V stay in its cache (one thread, 16
       heads, s=1024: tile-first across all heads ran at 0.91x). Otherwise heads go first. */
    if (p->d->causal || p->d->use_window) {
        int64_t nhc = p->hkv / p->kv_per_unit * p->n_hchunks, g = p->workers < nhc ? p->workers : nhc;
        int64_t grp = idx / (g * nqt), base = grp * g, gsize = nhc - base < g ? nhc - base : g;
        int64_t within = idx - grp * g * nqt;
        tile = within / gsize;
        rest = base + within % gsize;
    } else {
        tile = idx % nqt;
        rest = idx / nqt;
    }
    hc = rest % p->n_hchunks;
    u->b = b;
    u->nhk = p->kv_per_unit;
    u->hk = rest / p->n_hchunks * p->kv_per_unit;
    u->h0 = u->hk * p->group + hc * p->heads_per_unit;
    u->nh = p->group * u->nhk - hc * p->heads_per_unit < p->heads_per_unit
                ? p->group * u->nhk - hc * p->heads_per_unit
                : p->heads_per_unit;
    u->i0 = (nqt - 1 - tile) * p->q_per_unit;
    u->nq = sq - u->i0 < p->q_per_unit ? sq - u->i0 : p->q_per_unit;
}

/* Split `split`'s partial of row 0 of unit `unit`; row r's is splits * fa__part_stride(dv) floats
   further on. Partials are [unit][row][split]: a row's partials, written by many threads, lie
   one after another for its merge to stream through (split-major, the merge read 512-byte
   pieces 16 KiB apart, each from another core's cache, and took 11 us a thread on the 16-core
   Xeon host for a 4096-key decode call of 48 splits), and each partial row is whole cache lines
   of its own, so splits running at once share none. A row's LSE follows its outputs. */
static float *fa__part_o(const fa__attn_job *job, int64_t unit, int64_t split)
{
    return job->parts + (unit * job->p->unit_rows * job->p->splits + split) * fa__part_stride(job->p->dv);
}

static void fa__attn_task(void *ctx, int64_t i, int worker)
{
    const fa__attn_job *job = (const fa__attn_job *)ctx;
    const fa__attn_plan *p = job->p;
    fa__attn_ws w;
    fa__unit u;
    int64_t unit = i / p->splits, split = i % p->splits;
    fa__attn_ws_layout(&w, job->ws + (size_t)worker * p->ws_worker, p->dk, p->dv);
    fa__attn_unit_at(job, unit, &u);
    if (p->splits > 1)
        fa__attn_unit(p, job->K, &u, &w, split, fa__part_o(job, unit, split), p->splits * fa__part_stride(p->dv));
    else
        fa__attn_unit(p, job->K, &u, &w, 0, NULL, 0);
}

/* Second phase of split-KV: merge each unit's partial rows into the output view. Task i is
   rows [FA__MERGE_ROWS (i % FA__MERGE_TASKS), +FA__MERGE_ROWS) of unit i / FA__MERGE_TASKS, so
   that a decode step's single unit still merges on every thread (a row reads every split's
   partial, written by other threads: 4 rows a task took 28 us for 32 splits on 16 threads). */
#define FA__MERGE_ROWS 1
#define FA__MERGE_TASKS(p) (((p)->unit_rows + FA__MERGE_ROWS - 1) / FA__MERGE_ROWS)
static void fa__attn_merge_task(void *ctx, int64_t i, int worker)
{
    const fa__attn_job *job = (const fa__attn_job *)ctx;
    const fa__attn_plan *p = job->p;
    const fa_attn_desc *d = p->d;
    int64_t unit = i / FA__MERGE_TASKS(p), r, r1;
    fa__unit u;
    fa__seq s;
    (void)worker;
    fa__attn_unit_at(job, unit, &u);
    fa__attn_seq(p, u.b, &s);
    r = FA__MERGE_ROWS * (i % FA__MERGE_TASKS(p));
    r1 = r + FA__MERGE_ROWS < u.nh * u.nq ? r + FA__MERGE_ROWS : u.nh * u.nq;
    for (; r < r1; r++) {
        int64_t qi = u.i0 + r / u.nh, h = u.h0 + r % u.nh;
        const int64_t ps = fa__part_stride(p->dv);
        const float *part = fa__part_o(job, unit, 0) + r * p->splits * ps;
        float lse = fa__merge_row(job->K, fa__out_row(p, &s, qi, h), d->o_type, part, FA_F32, ps, part + fa__dvp(p->dv), ps,
                                  p->splits, p->dv);
        fa__put_lse(p, &s, qi, h, lse);
    }
}

FLASHATTN_DEF fa_status fa_attn_forward(const fa_attn_desc *d)
{
    fa__attn_plan p;
    fa__attn_job job;
    fa_status st;
    fa_pool *pool;
    void *ws;
    int64_t b;
    if ((st = fa__attn_prepare(d, &p)) != FA_OK) return st;
    ws = d->workspace;
    if (!ws) {
        ws = fa_aligned_alloc(p.ws_bytes, 64);
        if (!ws) return fa__fail(FA_ERR_NOMEM, "cannot allocate %zu bytes of attention workspace", p.ws_bytes);
    }
    job.p = &p;
    job.K = fa__attn_pick_kernels();
    job.ws = (unsigned char *)ws;
    job.parts = p.splits > 1 ? (float *)(job.ws + p.parts_off) : NULL;
    job.prefix = NULL;
    if (d->cu_seqlens_q) {
        int64_t *prefix = (int64_t *)(job.ws + p.prefix_off);
        prefix[0] = 0;
        for (b = 0; b < p.batch; b++) {
            int64_t sq = (int64_t)d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
            prefix[b + 1] = prefix[b] + p.hkv / p.kv_per_unit * p.n_hchunks * ((sq + p.q_per_unit - 1) / p.q_per_unit);
        }
        job.prefix = prefix;
    }
    /* the pool runs units on its workers and the calling thread; without one, all run here */
    pool = p.workers > 1 ? d->pool : NULL;
    st = fa_pool_parallel_for(pool, p.units * p.splits, fa__attn_task, &job);
    if (st == FA_OK && p.splits > 1) st = fa_pool_parallel_for(pool, p.units * FA__MERGE_TASKS(&p), fa__attn_merge_task, &job);
    if (!d->workspace) fa_aligned_free(ws);
    return st;
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
                    if (d->mask && !fa__mask_visible(d->mask, b, h, i, j)) vis = 0;
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
                    if (d->mask && fa__mask_has_score(d->mask)) dot = fa__mask_score(d->mask, (float)dot, b, h, i, j);
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
                        if (d->mask && !fa__mask_visible(d->mask, b, h, i, j)) continue;
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
    int64_t psplit, lsplit, b, t, h, rowv, hs, t2;
    size_t oes;
    const fa__attn_kernels *K = fa__attn_pick_kernels();
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
                void *out = (unsigned char *)m->o + (b * os.batch + t * os.seq + h * os.head) * (int64_t)oes;
                const void *part = fa__elem_ptr(m->o_parts, m->o_parts_type, b * ps.batch + t * ps.seq + h * ps.head);
                float lse = fa__merge_row(K, out, m->o_type, part, m->o_parts_type, psplit,
                                          m->lse_parts + b * ls.batch + t * ls.seq + h * ls.head, lsplit,
                                          m->num_splits, m->head_dim_v);
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

/* ---------------------------------------- SPSC ----------------------------------------
   Each slot is [sequence][item]. The producer of position p writes the item, then publishes it
   by storing seq = p + 1 (release); the consumer of position c takes the slot when it reads
   seq == c + 1 (acquire). So the consumer never polls the producer's position: when the queue
   runs near empty, a pop misses on the one line that holds the item and its flag, instead of
   on the producer's index line and then the item's line (the two misses an index-polling ring
   such as ck_ring or a Lamport queue pays). Sequences of one slot grow by `slots` each lap, so
   a stale one never equals c + 1.
   Fullness is index-based: the producer may write position p once p - cons_pos < capacity
   (capacity <= slots, so the consumer of the slot's previous lap is done with it). It reads
   cons_pos only when its cached copy says full. prod_pos is kept for the size queries; it
   sits on the producer's own line, which the consumer never reads on its fast path. */

static size_t fa__slot_size(size_t elem_size)
{
    size_t s = sizeof(size_t) + elem_size; /* caller checked it does not overflow */
    return (s + sizeof(size_t) - 1) / sizeof(size_t) * sizeof(size_t);
}

FLASHATTN_DEF fa_status fa_spsc_storage_size(size_t capacity, size_t elem_size, size_t *bytes)
{
    size_t b;
    if (!bytes) return fa__fail(FA_ERR_NULL, "fa_spsc_storage_size: bytes is NULL");
    if (capacity == 0 || elem_size == 0)
        return fa__fail(FA_ERR_INVALID, "fa_spsc_storage_size: capacity and elem_size must be >= 1");
    if (capacity > FA__QUEUE_MAX_CAP || elem_size > SIZE_MAX / 2 ||
        fa__mul_size(fa__pow2_ceil(capacity), fa__slot_size(elem_size), &b))
        return fa__fail(FA_ERR_OVERFLOW, "fa_spsc_storage_size: %zu x %zu bytes overflows",
                        capacity, elem_size);
    *bytes = b;
    return FA_OK;
}

static FA__ATOMIC(size_t) *fa__spsc_seq(const fa_spsc *q, size_t pos)
{
    return (FA__ATOMIC(size_t) *)(void *)(q->ring + (pos & q->mask) * q->slot_size);
}
static unsigned char *fa__spsc_item(const fa_spsc *q, size_t pos)
{
    return q->ring + (pos & q->mask) * q->slot_size + sizeof(size_t);
}

FLASHATTN_DEF fa_status fa_spsc_init(fa_spsc *q, const fa_queue_desc *d)
{
    size_t bytes = 0, owned = 0, i;
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
    q->slot_size = fa__slot_size(d->elem_size);
    q->ring_bytes = owned;
    if (d->allocator) q->alloc = *d->allocator;
    q->blocking = d->blocking != 0;
    /* Plain initial values: the queue reaches other threads through whatever the caller uses
       to hand it over (thread creation, a release store), which orders these stores. Slot i
       starts at seq = i: not c + 1 for its first position c = i, so nothing looks published. */
    for (i = 0; i <= q->mask; i++) fa__st(fa__spsc_seq(q, i), i, FA__RELAXED);
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

/* Is the item of position c published? */
static int fa__spsc_ready(fa_spsc *q, size_t c)
{
    /* acquire: pairs with the producer's release store of seq, so the item's bytes are visible */
    return fa__ld(fa__spsc_seq(q, c), FA__ACQUIRE) == c + 1;
}

FA__QINLINE fa_status fa__spsc_push1(fa_spsc *q, const void *item)
{
    size_t p = fa__ld(&q->prod_pos, FA__RELAXED); /* relaxed: only this thread writes it */
    /* relaxed: close is a one-way flag; a push racing with it may still land */
    if (FA__UNLIKELY(fa__ld(&q->closed, FA__RELAXED))) return FA_ERR_CLOSED;
    if (p - q->cons_cache >= q->capacity && fa__spsc_room(q, p, 1) == 0) return FA_ERR_FULL;
    fa__qcopy(fa__spsc_item(q, p), item, q->elem_size);
    fa__st(fa__spsc_seq(q, p), p + 1, FA__RELEASE); /* release: publishes the item's bytes */
    /* release: size queries that see p + 1 also see the item (nobody else depends on it) */
    fa__st(&q->prod_pos, p + 1, FA__RELEASE);
    if (q->blocking) fa__event_notify(&q->not_empty, 1);
    return FA_OK;
}

/* The empty case of a pop: FA_ERR_CLOSED once closed and drained, else FA_ERR_EMPTY. The
   flag is read first (acquire) and the slot after it, so every push that preceded the
   close is seen before the queue is declared finished. */
static fa_status fa__spsc_empty_status(fa_spsc *q, size_t c)
{
    /* acquire: pairs with close; pushes before it are visible to the re-check below */
    if (!fa__ld(&q->closed, FA__ACQUIRE)) return FA_ERR_EMPTY;
    return fa__spsc_ready(q, c) ? FA_ERR_AGAIN : FA_ERR_CLOSED;
}

FA__QINLINE fa_status fa__spsc_pop1(fa_spsc *q, void *item)
{
    size_t c = fa__ld(&q->cons_pos, FA__RELAXED); /* relaxed: only this thread writes it */
    if (!fa__spsc_ready(q, c)) {
        fa_status s = fa__spsc_empty_status(q, c);
        if (s != FA_ERR_AGAIN) return s;
    }
    fa__qcopy(item, fa__spsc_item(q, c), q->elem_size);
    fa__st(&q->cons_pos, c + 1, FA__RELEASE); /* release: our read of the slot is done */
    if (q->blocking) fa__event_notify(&q->not_full, 1);
    return FA_OK;
}

static fa_status fa__spsc_push_bulk(fa_spsc *q, const void *items, size_t n, int exact,
                                    size_t *done)
{
    const unsigned char *src = (const unsigned char *)items;
    size_t p = fa__ld(&q->prod_pos, FA__RELAXED), k, i; /* relaxed: only this thread writes it */
    *done = 0;
    if (fa__ld(&q->closed, FA__RELAXED)) return FA_ERR_CLOSED; /* relaxed: see push1 */
    if (n == 0) return FA_OK;
    k = fa__spsc_room(q, p, n);
    if (k > n) k = n;
    if (k == 0 || (exact && k < n)) return FA_ERR_FULL;
    for (i = 0; i < k; i++) {
        fa__qcopy(fa__spsc_item(q, p + i), src + i * q->elem_size, q->elem_size);
        fa__st(fa__spsc_seq(q, p + i), p + i + 1, FA__RELEASE); /* release: publishes item i */
    }
    fa__st(&q->prod_pos, p + k, FA__RELEASE); /* release: as in push1 */
    if (q->blocking) fa__event_notify(&q->not_empty, 1);
    *done = k;
    return FA_OK;
}

static fa_status fa__spsc_pop_bulk(fa_spsc *q, void *items, size_t n, int exact, size_t *done)
{
    unsigned char *dst = (unsigned char *)items;
    size_t c = fa__ld(&q->cons_pos, FA__RELAXED), k, i; /* relaxed: only this thread writes it */
    *done = 0;
    if (n == 0) return FA_OK;
    if (n > q->capacity) n = q->capacity;
    /* published items are a prefix from c on: the producer publishes in position order */
    for (k = 0; k < n && fa__spsc_ready(q, c + k); k++) {}
    if (k == 0) {
        fa_status s = fa__spsc_empty_status(q, c);
        if (s != FA_ERR_AGAIN) return s;
        for (k = 0; k < n && fa__spsc_ready(q, c + k); k++) {}
    }
    if (exact && k < n) return FA_ERR_EMPTY;
    for (i = 0; i < k; i++)
        fa__qcopy(dst + i * q->elem_size, fa__spsc_item(q, c + i), q->elem_size);
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
   check still holds when the CAS succeeds.

   Two changes against contention:
   - Slot remap (as the "cache_remap" of Nikolaev's SCQ, DISC 2019): consecutive positions go
     to different cache lines. Without it, the 2-4 small slots of one line belong to neighbouring
     positions that different producers and consumers work on at the same moment, and the line
     ping-pongs between them (false sharing). With slots = lines * per_line (both powers of
     two), position pos goes to line pos mod lines, entry (pos / lines) mod per_line: a
     bijection of pos mod slots, so the sequence rules above hold unchanged. Slots shorter
     than a line are padded to a power of two so whole slots tile each line.
   - Bounded exponential backoff: a thread that lost a CAS (or found its position taken) spins
     1, 2, 4 ... FA__MPMC_BACKOFF pauses before it looks again, instead of stealing the
     contended line straight back from the winner. Still lock-free: a thread only backs off
     after another thread made progress.
   Measured with bench_queue on the 16-core Xeon host (8-byte items, k producers + k consumers,
   M items/s, before -> after): k=2 5.4-6.0 -> 14.6-15.1, k=4 4.6-5.0 -> 8.4-9.2, k=8 3.6-3.9
   -> 4.8-4.9; the price is k=1, 27-29 -> 16.3-16.5, where one producer and one consumer now
   miss once per item instead of once per line of slots. A backoff of at most 8 pauses gained
   far less (k=2 8.6, k=4 3.7-4.5), and a fetch-and-add design (SCQ, two index rings) reached
   only 3.2-5.3 at k=1..8. A later run of the backoff WITHOUT the remap, beside the remap build
   in the same call, measured k=1/2/4/8 26.4 / 17.2 / 8.8 / 3.6 against 16.1 / 14.2 / 8.0 / 4.6:
   the backoff does the work at k >= 2 and the remap only costs k=1, so the remap is off by
   default (FA__MPMC_REMAP=1 turns it on; its tests run either way). */

#ifndef FA__MPMC_REMAP
#define FA__MPMC_REMAP 0     /* private tuning switch: nonzero = consecutive positions on different lines */
#endif
#ifndef FA__MPMC_BACKOFF
#define FA__MPMC_BACKOFF 64  /* private tuning switch: longest backoff after a lost race, in
                                fa__cpu_relax() steps; 0 = none */
#endif

/* Slot of position pos: see "Slot remap" above (identity when remapping is off). */
static size_t fa__mpmc_index(const fa_mpmc *q, size_t pos)
{
    return ((pos & q->rmask) << q->lshift) | ((pos >> q->rshift) & q->lmask);
}
/* Backoff after a lost race; *spins starts at 1. */
FA__QINLINE void fa__mpmc_backoff(unsigned *spins)
{
#if FA__MPMC_BACKOFF > 0
    unsigned i;
    for (i = 0; i < *spins; i++) fa__cpu_relax();
    if (*spins < FA__MPMC_BACKOFF) *spins *= 2;
#else
    (void)spins;
#endif
}

/* Bytes per slot: the sequence word and the item, 8-aligned; with the remap, a slot smaller
   than a cache line is padded to a power of two so that whole slots tile each line. */
static size_t fa__mpmc_slot_size(size_t elem_size)
{
    size_t s = fa__slot_size(elem_size);
#if FA__MPMC_REMAP
    size_t p = 8;
    if (s >= FA_CACHELINE) return s;
    while (p < s) p *= 2;
    return p;
#else
    return s;
#endif
}

static FA__ATOMIC(size_t) *fa__mpmc_seq(const fa_mpmc *q, size_t pos)
{
    return (FA__ATOMIC(size_t) *)(void *)(q->ring + fa__mpmc_index(q, pos) * q->slot_size);
}
static unsigned char *fa__mpmc_item(const fa_mpmc *q, size_t pos)
{
    return q->ring + fa__mpmc_index(q, pos) * q->slot_size + sizeof(size_t);
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
    {
        size_t per_line = 1; /* slots per cache line: a power of two, at most all the slots */
        unsigned lb = 0, rb = 0;
#if FA__MPMC_REMAP
        while (per_line * 2 * q->slot_size <= FA_CACHELINE && per_line * 2 <= q->capacity) {
            per_line *= 2;
            lb++;
        }
#endif
        while (((size_t)1 << rb) < q->capacity / per_line) rb++;
        q->lmask = per_line - 1;
        q->lshift = lb;
        q->rmask = q->capacity / per_line - 1;
        q->rshift = rb;
    }
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
    unsigned spins = 1;
    if (FA__UNLIKELY(fa__ld(&q->closed, FA__RELAXED))) return FA_ERR_CLOSED; /* see spsc */
    for (;;) {
        /* acquire: the consumer that freed this slot has finished reading it */
        size_t seq = fa__ld(fa__mpmc_seq(q, pos), FA__ACQUIRE);
        ptrdiff_t dif = (ptrdiff_t)(seq - pos);
        if (dif == 0) {
            /* relaxed: the CAS only decides who owns pos; the sequence carries the data */
            if (fa__cas(&q->prod_pos, &pos, pos + 1, FA__RELAXED, FA__RELAXED)) break;
            fa__mpmc_backoff(&spins); /* lost to another producer (pos now holds the new value) */
        } else if (dif < 0) {
            return FA_ERR_FULL; /* the slot still holds the item of pos - slots */
        } else {
            fa__mpmc_backoff(&spins);
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
    unsigned spins = 1;
    for (;;) {
        /* acquire: pairs with the producer's release, so the item's bytes are visible */
        size_t seq = fa__ld(fa__mpmc_seq(q, pos), FA__ACQUIRE);
        ptrdiff_t dif = (ptrdiff_t)(seq - (pos + 1));
        if (dif == 0) {
            /* relaxed: ownership only, as in push */
            if (fa__cas(&q->cons_pos, &pos, pos + 1, FA__RELAXED, FA__RELAXED)) break;
            fa__mpmc_backoff(&spins); /* lost to another consumer */
        } else if (dif < 0) {
            fa_status s = fa__mpmc_empty_status(q, pos);
            if (s != FA_ERR_AGAIN) return s;
        } else {
            fa__mpmc_backoff(&spins);
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
    unsigned spins = 1;
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
            fa__mpmc_backoff(&spins);
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
    unsigned spins = 1;
    *done = 0;
    if (n == 0) return FA_OK;
    if (n > q->capacity) n = q->capacity;
    for (;;) {
        for (k = 0; k < n; k++) /* acquire: as in pop1, for each item we may read */
            if (fa__ld(fa__mpmc_seq(q, pos + k), FA__ACQUIRE) != pos + k + 1) break;
        if (k == n || (!exact && k > 0)) {
            if (fa__cas(&q->cons_pos, &pos, pos + k, FA__RELAXED, FA__RELAXED)) break; /* ownership */
            fa__mpmc_backoff(&spins);
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
    uint64_t seen_job;              /* the last fa_pool.announce this worker acted on */
    unsigned char pad_[2 * FA_CACHELINE];
} fa__worker;

struct fa_pool {
    fa_allocator alloc;             /* copy of the caller's allocator; zero = default */
    int has_alloc;
    int nthreads;
    int64_t spin_ns;                /* polling time of idle waits before they sleep; 0 = none */
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
    FA__QPAD(pad3_, 0);
    /* the latest parallel_for call (generation << 8 | slot): polling workers watch this line and
       join at once, where the helper tokens are popped one at a time from a shared queue (16-core
       host: the 15th poller started ~7 us after the first) */
    FA__ATOMIC(uint64_t) announce;
    FA__QPAD(pad4_, 8);
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

/* Joins the parallel_for call last announced, once: 1 when this worker had not seen it yet
   (the call may be over: fa__job_help then returns at once). */
static int fa__pool_join_announced(fa_pool *p, fa__worker *w)
{
    /* acquire: the job's fields, written before the caller's release store */
    uint64_t a = fa__ld(&p->announce, FA__ACQUIRE);
    if (a == w->seen_job) return 0;
    w->seen_job = a;
    fa__job_help(p, (int)(a & 0xffu), a >> 8, w->id);
    return 1;
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

/* The polling phase of an idle wait, called after its i-th fa__cpu_relax() step (i from 0):
   returns 1 when the wait should stop polling and sleep. The first FA__WAIT_SPINS steps always
   poll; then the clock is read every 64 steps and polling goes on for the pool's spin_ns, or
   until the pool is told to exit. *end starts at -1. */
static int fa__spin_over(fa_pool *p, int i, int64_t *end)
{
    int64_t now;
    if (i < FA__WAIT_SPINS) return 0;
    if (p->spin_ns <= 0 || fa__ld(&p->exit_now, FA__RELAXED)) return 1; /* relaxed: a hint */
    if (i & 63) return 0;
    now = fa__now_ns();
    if (*end < 0) *end = now + p->spin_ns;
    return now >= *end;
}

static void *fa__worker_main(void *arg)
{
    fa__worker *w = (fa__worker *)arg;
    fa_pool *p = w->pool;
    fa__ptask t;
    fa__tls_pool = p;
    fa__tls_worker = w->id;
    for (;;) {
        int i, found = 0, joined = 0;
        int64_t spin_end;
        if (fa__pool_join_announced(p, w)) continue;
        if (fa__pool_take(p, &t)) { fa__pool_dispatch(p, w, &t); continue; }
        if (fa__pool_move_due(p)) continue;
        if (fa__ld(&p->exit_now, FA__ACQUIRE)) break; /* acquire: pairs with destroy's release */
        for (i = 0, spin_end = -1; !found && !joined; i++) {
            fa__cpu_relax();
            joined = fa__pool_join_announced(p, w);
            found = !joined && fa__pool_take(p, &t);
            if (!found && !joined && fa__spin_over(p, i, &spin_end)) break;
        }
        if (joined) continue;
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
    if (d.spin_ns > FA_POOL_MAX_SPIN_NS)
        return fa__fail(FA_ERR_INVALID, "fa_pool_create: spin_ns (%lld) must be at most %lld", (long long)d.spin_ns,
                        (long long)FA_POOL_MAX_SPIN_NS);
    if (d.threads == 0) d.threads = fa_cpu_count() > 1 ? fa_cpu_count() - 1 : 1;
    if (d.queue_capacity == 0) d.queue_capacity = FA__POOL_DEFAULT_QCAP;
    p = (fa_pool *)fa__alloc(d.allocator, sizeof *p, FA_CACHELINE);
    if (!p) return fa__fail(FA_ERR_NOMEM, "fa_pool_create: cannot allocate the pool");
    memset(p, 0, sizeof *p);
    if (d.allocator) { p->alloc = *d.allocator; p->has_alloc = 1; }
    p->nthreads = d.threads;
    /* default polling only when every worker and the caller can have a CPU of their own: a
       poller on a shared CPU takes time from the thread it waits for */
    p->spin_ns = d.spin_ns > 0                                      ? d.spin_ns
                 : d.spin_ns == 0 && d.threads + 1 <= fa_cpu_count() ? FA_POOL_DEFAULT_SPIN_NS
                                                                     : 0;
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
    /* release: polling workers join through this line first; the tokens below wake sleepers
       (a token of a call a worker already joined finds it over or joins it again) */
    fa__st(&p->announce, gen << 8 | (uint64_t)(j - p->jobs), FA__RELEASE);
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
        int64_t spin_end = -1;
        /* acquire: as above, the helpers' results are visible once left reads 0 */
        for (s = 0; fa__ld(&j->left, FA__ACQUIRE) != 0 && !fa__spin_over(p, s, &spin_end); s++)
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
       then make the generation even so stale tokens cannot join and the slot is free. A
       helper leaves within a few hundred cycles unless it was preempted: poll first, yield the
       CPU only after that (a yield is a system call, a microsecond or more in a VM). */
    for (i = 0;; i++) {
        uint64_t st = fa__ld(&j->state, FA__ACQUIRE); /* acquire: helpers' release on leaving */
        if ((st & FA__JOB_HELPERS) == 0 &&
            fa__cas(&j->state, &st, st + ((uint64_t)1 << FA__JOB_GEN_SHIFT), FA__ACQ_REL,
                    FA__RELAXED)) /* acq_rel: hands the slot to its next caller */
            break;
        if (i < FA__WAIT_SPINS) fa__cpu_relax();
        else sched_yield();
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
#ifdef FA__GXX_DIAG
#pragma GCC diagnostic pop
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
