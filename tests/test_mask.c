/* tests/test_mask.c - mask section: exact tile layouts of every builder, element-level truth
   against independent brute-force definitions, callback classification exactness, and/or
   combinators, density, dynamic top-k selection, the kernel interface, and bad input
   (including injected allocation failures). */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <string.h>

#ifndef FA_TEST_SANITIZED
#define FA_TEST_SANITIZED 0
#endif

/* ---- a counting allocator that can fail on demand ---- */
typedef struct talloc {
    long calls, fail_at, live;   /* fail_at < 0: never fail */
    size_t live_bytes;
} talloc;
static void *ta_alloc(void *u, size_t bytes, size_t align)
{
    talloc *t = (talloc *)u;
    void *p;
    if (t->fail_at >= 0 && t->calls++ == t->fail_at) return NULL;
    p = fa_aligned_alloc(bytes, align);
    if (p) { t->live++; t->live_bytes += bytes; }
    return p;
}
static void ta_free(void *u, void *p, size_t bytes)
{
    talloc *t = (talloc *)u;
    t->live--;
    t->live_bytes -= bytes;
    fa_aligned_free(p);
}

static fa_mask_desc geom(int64_t sq, int64_t sk, int64_t bq, int64_t bk)
{
    fa_mask_desc g;
    memset(&g, 0, sizeof g);
    g.seqlen_q = sq;
    g.seqlen_k = sk;
    g.block_q = bq;
    g.block_k = bk;
    return g;
}

/* Tile layout of (b, h) as one string per query block: 'F' full, 'P' partial, '.' empty,
   rows separated by '/'. */
static void layout_str(const fa_mask *m, int64_t b, int64_t h, char *buf, size_t cap)
{
    fa_mask_info in;
    int64_t I, J;
    size_t n = 0;
    fa_mask_get_info(m, &in);
    for (I = 0; I < in.blocks_q; I++) {
        for (J = 0; J < in.blocks_k && n + 2 < cap; J++) {
            int s = fa_mask_tile(m, b, h, I, J);
            buf[n++] = s == FA_MASK_FULL ? 'F' : s == FA_MASK_PARTIAL ? 'P' : s == FA_MASK_EMPTY ? '.' : '?';
        }
        if (I + 1 < in.blocks_q && n + 2 < cap) buf[n++] = '/';
    }
    buf[n] = '\0';
}

/* Element grid of (b, h): '1' kept, '0' not, rows separated by '/'. */
static void elem_str(const fa_mask *m, int64_t b, int64_t h, char *buf, size_t cap)
{
    fa_mask_info in;
    int64_t q, k;
    size_t n = 0;
    fa_mask_get_info(m, &in);
    for (q = 0; q < in.seqlen_q; q++) {
        for (k = 0; k < in.seqlen_k && n + 2 < cap; k++) buf[n++] = fa_mask_visible(m, b, h, q, k) ? '1' : '0';
        if (q + 1 < in.seqlen_q && n + 2 < cap) buf[n++] = '/';
    }
    buf[n] = '\0';
}

#define CHECK_STR(got, want) CHECKF(strcmp((got), (want)) == 0, "\n   got  %s\n   want %s", (got), (want))

/* ---- the exhaustive checker ----
   For attention coordinates b < nb, h < nh (broadcast is exercised when the mask is shared):
   lists ascending and disjoint, every tile's state exact w.r.t. truth(), fa__mask_visible ==
   truth everywhere, fa__mask_keep / fa__mask_keep_partial == truth on partial tiles. Returns
   the number of mismatches (0 = all good). */
typedef int (*truth_fn)(void *u, int64_t b, int64_t h, int64_t q, int64_t k);

static long check_mask(const fa_mask *m, int64_t nb, int64_t nh, truth_fn truth, void *u)
{
    fa_mask_info in;
    long bad = 0;
    int64_t b, h, I, J, q, k, t;
    fa_mask_get_info(m, &in);
    for (b = 0; b < nb; b++)
        for (h = 0; h < nh; h++)
            for (I = 0; I < in.blocks_q; I++) {
                const int32_t *fl, *pl;
                int64_t nf, np;
                fa__mask_blocks(m, b, h, I, &fl, &nf, &pl, &np);
                for (t = 1; t < nf; t++) bad += fl[t - 1] >= fl[t];
                for (t = 1; t < np; t++) bad += pl[t - 1] >= pl[t];
                for (J = 0; J < in.blocks_k; J++) {
                    int64_t q0 = I * in.block_q, q1 = q0 + in.block_q < in.seqlen_q ? q0 + in.block_q : in.seqlen_q;
                    int64_t k0 = J * in.block_k, k1 = k0 + in.block_k < in.seqlen_k ? k0 + in.block_k : in.seqlen_k;
                    int64_t kept = 0, tot = (q1 - q0) * (k1 - k0), inf = 0, pos = -1, want;
                    int state;
                    for (t = 0; t < nf; t++) inf += fl[t] == J;
                    for (t = 0; t < np; t++) if (pl[t] == J) pos = t;
                    if (inf > 1 || (inf && pos >= 0)) bad++;
                    state = inf ? FA_MASK_FULL : pos >= 0 ? FA_MASK_PARTIAL : FA_MASK_EMPTY;
                    if (fa_mask_tile(m, b, h, I, J) != state) bad++;
                    for (q = q0; q < q1; q++)
                        for (k = k0; k < k1; k++) {
                            int tv = truth(u, b, h, q, k) != 0;
                            kept += tv;
                            if (fa__mask_visible(m, b, h, q, k) != tv) bad++;
                            if (state == FA_MASK_PARTIAL) {
                                if (fa__mask_keep(m, b, h, q, k) != tv) bad++;
                                if (fa__mask_keep_partial(m, b, h, q, k, pos) != tv) bad++;
                            }
                        }
                    want = kept == 0 ? FA_MASK_EMPTY : kept == tot ? FA_MASK_FULL : FA_MASK_PARTIAL;
                    if (want != state) bad++;
                }
            }
    return bad;
}

/* ---- independent definitions of the built-in patterns (from the header's comments) ---- */
enum { P_CAUSAL, P_WINDOW, P_LONGFORMER, P_STRIDED, P_FIXED, P_DOC, P_PREFIX, P_COUNT };
typedef struct pat {
    int kind, causal;
    int64_t sq, sk, left, right, dil, stride, summary, nglobal, ndocs;
    int64_t global[8];
    int32_t cuq[9], cuk[9];
    int64_t prefix[4];
    int per_batch;
} pat;

static int64_t floordiv(int64_t a, int64_t b) { return (int64_t)floor((double)a / (double)b); }

static int pat_keep(void *u, int64_t b, int64_t h, int64_t q, int64_t k)
{
    const pat *P = (const pat *)u;
    int64_t p = q + P->sk - P->sq, d = k - p, ad = d < 0 ? -d : d, i;
    (void)h;
    switch (P->kind) {
    case P_CAUSAL: return k <= q + P->sk - P->sq;
    case P_WINDOW:
    case P_LONGFORMER: {
        int w = (P->left < 0 || d >= -P->left) && (P->right < 0 || d <= P->right) && (P->dil <= 1 || d % P->dil == 0);
        if (P->kind == P_LONGFORMER)
            for (i = 0; i < P->nglobal; i++) w |= P->global[i] == q || P->global[i] == k;
        return w;
    }
    case P_STRIDED: return !(P->causal && d > 0) && (ad < P->stride || ad % P->stride == 0);
    case P_FIXED:
        return !(P->causal && d > 0) &&
               (floordiv(k, P->stride) == floordiv(p, P->stride) || k % P->stride >= P->stride - P->summary);
    case P_DOC: {
        int64_t dq = -1, dkk = -1;
        for (i = 0; i < P->ndocs; i++) {
            if (q >= P->cuq[i] && q < P->cuq[i + 1]) dq = i;
            if (k >= P->cuk[i] && k < P->cuk[i + 1]) dkk = i;
        }
        if (dq < 0 || dq != dkk) return 0;
        return !P->causal || (k - P->cuk[dq]) <= (q - P->cuq[dq]) + ((P->cuk[dq + 1] - P->cuk[dq]) - (P->cuq[dq + 1] - P->cuq[dq]));
    }
    case P_PREFIX: return k < P->prefix[P->per_batch ? b : 0] || d <= 0;
    default: return -1;
    }
}

static fa_status pat_build(const pat *P, fa_mask_desc *g, fa_mask **m)
{
    switch (P->kind) {
    case P_CAUSAL: return fa_mask_causal(m, g);
    case P_WINDOW: return fa_mask_sliding_window(m, g, P->left, P->right, P->dil);
    case P_LONGFORMER: return fa_mask_longformer(m, g, P->left, P->right, P->dil, P->global, P->nglobal);
    case P_STRIDED: return fa_mask_strided(m, g, P->stride, P->causal);
    case P_FIXED: return fa_mask_fixed(m, g, P->stride, P->summary, P->causal);
    case P_DOC: return fa_mask_document(m, g, P->cuq, P->cuk, P->ndocs, P->causal);
    case P_PREFIX: return fa_mask_prefix_lm(m, g, P->prefix);
    default: return FA_ERR_INTERNAL;
    }
}

static const int64_t odd_sizes[] = {1, 7, 63, 65, 129};
static const int64_t blocks[] = {1, 2, 3, 5, 8, 16, 64};

static int64_t pick(const int64_t *a, size_t n) { return a[fa_t_randint((int64_t)n)]; }
#define PICK(a) pick(a, sizeof a / sizeof a[0])

static void random_pat(pat *P, int kind, int64_t sq, int64_t sk)
{
    int64_t i;
    memset(P, 0, sizeof *P);
    P->kind = kind;
    P->sq = sq;
    P->sk = sk;
    P->causal = (int)fa_t_randint(2);
    P->left = fa_t_randint(4) == 0 ? -1 : fa_t_randint(40);
    P->right = fa_t_randint(4) == 0 ? -1 : fa_t_randint(3) == 0 ? 0 : fa_t_randint(40);
    P->dil = fa_t_randint(3) == 0 ? 1 + fa_t_randint(4) : 0;
    P->stride = 1 + fa_t_randint(20);
    P->summary = 1 + fa_t_randint(P->stride);
    P->nglobal = fa_t_randint(5);
    for (i = 0; i < P->nglobal; i++) P->global[i] = fa_t_randint((sq > sk ? sq : sk) + 3);
    if (kind == P_DOC) {
        int64_t n = 1 + fa_t_randint(8), a = fa_t_randint(3), c = fa_t_randint(3);
        P->ndocs = n;
        P->cuq[0] = (int32_t)(sq > 3 ? a : 0);
        P->cuk[0] = (int32_t)(sk > 3 ? c : 0);
        for (i = 1; i <= n; i++) {
            /* random split points of the available range, sorted by construction */
            int64_t lq = sq - P->cuq[0] - (sq > 3 ? fa_t_randint(2) : 0), lk = sk - P->cuk[0];
            P->cuq[i] = (int32_t)(P->cuq[0] + (i == n ? lq : lq * i / n + (fa_t_randint(3) - 1 > 0 ? 1 : 0)));
            P->cuk[i] = (int32_t)(P->cuk[0] + (i == n ? lk : lk * i / n));
            if (P->cuq[i] < P->cuq[i - 1]) P->cuq[i] = P->cuq[i - 1];
            if (P->cuk[i] < P->cuk[i - 1]) P->cuk[i] = P->cuk[i - 1];
        }
        if (P->cuq[n] > sq) P->cuq[n] = (int32_t)sq;
    }
    for (i = 0; i < 4; i++) P->prefix[i] = fa_t_randint(sk + 1);
}

/* ---- tests ---- */

TEST(pinned_causal_layouts_are_bottom_right)
{
    fa_mask_desc g = geom(8, 8, 2, 2);
    fa_mask *m = NULL;
    char s[256];
    CHECK(fa_mask_causal(&m, &g) == FA_OK);
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "P.../FP../FFP./FFFP");
    fa_mask_destroy(m);
    g = geom(4, 8, 2, 2); /* more keys than queries: the last query sees every key */
    CHECK(fa_mask_causal(&m, &g) == FA_OK);
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "FFP./FFFP");
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "11111000/11111100/11111110/11111111");
    fa_mask_destroy(m);
    g = geom(8, 4, 2, 2); /* more queries than keys: the first queries see nothing */
    CHECK(fa_mask_causal(&m, &g) == FA_OK);
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "../../P./FP");
    fa_mask_destroy(m);
}

TEST(pinned_window_strided_fixed_layouts)
{
    fa_mask_desc g = geom(8, 8, 2, 2);
    fa_mask *m = NULL;
    char s[256];
    CHECK(fa_mask_sliding_window(&m, &g, 2, 0, 0) == FA_OK);
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "P.../PP../.PP./..PP");
    fa_mask_destroy(m);
    CHECK(fa_mask_sliding_window(&m, &g, 4, 4, 2) == FA_OK); /* dilated: even distances up to 4 */
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "10101000/01010100/10101010/01010101/10101010/01010101/00101010/00010101");
    fa_mask_destroy(m);
    g = geom(6, 6, 2, 2);
    CHECK(fa_mask_strided(&m, &g, 3, 1) == FA_OK);
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "100000/110000/111000/111100/011110/001111");
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "P../FP./PFP");
    fa_mask_destroy(m);
    CHECK(fa_mask_fixed(&m, &g, 3, 1, 1) == FA_OK);
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "100000/110000/111000/001100/001110/001111");
    fa_mask_destroy(m);
}

TEST(pinned_longformer_with_global_tokens)
{
    fa_mask_desc g = geom(8, 8, 2, 2);
    fa_mask *m = NULL;
    int64_t glob[2] = {5, 0};
    char s[256];
    CHECK(fa_mask_longformer(&m, &g, 1, 1, 0, glob, 2) == FA_OK);
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "11111111/11100100/11110100/10111100/10011100/11111111/10000111/10000111");
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "FPPP/PFP./PPFP/P.PF");
    fa_mask_destroy(m);
}

TEST(pinned_document_and_prefix_lm)
{
    fa_mask_desc g = geom(0, 0, 2, 2);
    fa_mask *m = NULL;
    int32_t cu[4] = {0, 3, 5, 8};
    int64_t pre[2] = {2, 4};
    char s[256];
    CHECK(fa_mask_document(&m, &g, cu, NULL, 3, 0) == FA_OK);
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "11100000/11100000/11100000/00011000/00011000/00000111/00000111/00000111");
    layout_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "FP../PPP./.PPP/..PF");
    fa_mask_destroy(m);
    CHECK(fa_mask_document(&m, &g, cu, NULL, 3, 1) == FA_OK);
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "10000000/11000000/11100000/00010000/00011000/00000100/00000110/00000111");
    fa_mask_destroy(m);
    g = geom(6, 6, 2, 2);
    g.batch = 2;
    CHECK(fa_mask_prefix_lm(&m, &g, pre) == FA_OK);
    elem_str(m, 0, 0, s, sizeof s);
    CHECK_STR(s, "110000/110000/111000/111100/111110/111111");
    elem_str(m, 1, 0, s, sizeof s);
    CHECK_STR(s, "111100/111100/111100/111100/111110/111111");
    layout_str(m, 1, 0, s, sizeof s);
    CHECK_STR(s, "FF./FF./FFP");
    fa_mask_destroy(m);
}

/* BigBird: the rules of the header, checked row by row, and one layout pinned for a seed. */
static long bigbird_check(const fa_mask *m, int64_t nb, int64_t nh, int64_t w, int64_t gl, int64_t r, int causal)
{
    fa_mask_info in;
    long bad = 0;
    int64_t b, h, I, J;
    fa_mask_get_info(m, &in);
    for (b = 0; b < nb; b++)
        for (h = 0; h < nh; h++)
            for (I = 0; I < in.blocks_q; I++) {
                int64_t qlast = ((I + 1) * in.block_q < in.seqlen_q ? (I + 1) * in.block_q : in.seqlen_q) - 1;
                int64_t p = qlast + in.seqlen_k - in.seqlen_q, dg, lim, navail = 0, nrand = 0;
                if (p < 0) p = 0;
                if (p > in.seqlen_k - 1) p = in.seqlen_k - 1;
                dg = p / in.block_k;
                lim = causal ? dg : in.blocks_k - 1;
                for (J = 0; J < in.blocks_k; J++) {
                    int s = fa_mask_tile(m, b, h, I, J);
                    int req = J <= lim && ((J > dg ? J - dg : dg - J) <= w || J < gl || I < gl);
                    if (s == FA_MASK_PARTIAL) bad++;
                    if (req && s != FA_MASK_FULL) bad++;
                    if (J > lim && s != FA_MASK_EMPTY) bad++;
                    if (J <= lim && !req) {
                        navail++;
                        nrand += s == FA_MASK_FULL;
                    }
                }
                if (nrand != (r < navail ? r : navail)) bad++;
            }
    return bad;
}

TEST(bigbird_layout_follows_its_rules_and_is_pinned_by_seed)
{
    fa_mask_desc g = geom(16, 16, 2, 2);
    fa_mask *m = NULL, *m2 = NULL, *m3 = NULL;
    char s[256], s2[256];
    int it;
    CHECK(fa_mask_bigbird(&m, &g, 1, 1, 2, 0, 42) == FA_OK);
    CHECK(bigbird_check(m, 1, 1, 1, 1, 2, 0) == 0);
    layout_str(m, 0, 0, s, sizeof s);
    /* the rules above are verified first; this pins the draw itself (a regression check) */
    CHECK_STR(s, "FFFFFFFF/FFFF...F/FFFF.FF./FFFFF.F./FF.FFFF./FFF.FFF./FFF..FFF/FF.F..FF");
    CHECK(fa_mask_bigbird(&m2, &g, 1, 1, 2, 0, 42) == FA_OK); /* same seed, same layout */
    layout_str(m2, 0, 0, s2, sizeof s2);
    CHECK_STR(s2, s);
    fa_mask_destroy(m2);
    CHECK(fa_mask_bigbird(&m3, &g, 1, 1, 2, 0, 43) == FA_OK);
    layout_str(m3, 0, 0, s2, sizeof s2);
    CHECK(strcmp(s, s2) != 0);
    fa_mask_destroy(m3);
    fa_mask_destroy(m);
    for (it = 0; it < 30; it++) {
        int64_t w = fa_t_randint(3), gl = fa_t_randint(3), r = fa_t_randint(5);
        int causal = (int)fa_t_randint(2);
        g = geom(PICK(odd_sizes), PICK(odd_sizes), PICK(blocks), PICK(blocks));
        g.batch = 1 + fa_t_randint(2);
        g.heads = 1 + fa_t_randint(3);
        CHECK(fa_mask_bigbird(&m, &g, w, gl, r, causal, fa_t_rand()) == FA_OK);
        CHECKF(bigbird_check(m, g.batch, g.heads, w, gl, r, causal) == 0, "it %d", it);
        fa_mask_destroy(m);
    }
}

TEST(builtin_patterns_match_brute_force_on_odd_sizes)
{
    int it, kind, iters = FA_TEST_SANITIZED ? 25 : 150;
    for (kind = 0; kind < P_COUNT; kind++)
        for (it = 0; it < iters; it++) {
            pat P;
            fa_mask_desc g = geom(PICK(odd_sizes), PICK(odd_sizes), PICK(blocks), PICK(blocks));
            fa_mask *m = NULL;
            fa_status st;
            long bad;
            random_pat(&P, kind, g.seqlen_q, g.seqlen_k);
            if (kind == P_PREFIX && fa_t_randint(2)) { g.batch = 2; P.per_batch = 1; }
            st = pat_build(&P, &g, &m);
            CHECKF(st == FA_OK, "kind %d: %s %s", kind, fa_status_str(st), fa_last_error());
            if (st != FA_OK) continue;
            bad = check_mask(m, P.per_batch ? 2 : 2, 2, pat_keep, &P);
            CHECKF(bad == 0, "kind %d it %d sq %lld sk %lld blocks %lldx%lld: %ld mismatches", kind, it,
                   (long long)g.seqlen_q, (long long)g.seqlen_k, (long long)g.block_q, (long long)g.block_k, bad);
            fa_mask_destroy(m);
        }
}

TEST(builtin_patterns_match_brute_force_at_default_tile_size)
{
    /* the kernel's 64 x 64 tiles on about a thousand tokens, larger pattern parameters */
    int kind, rep, reps = FA_TEST_SANITIZED ? 1 : 3;
    for (kind = 0; kind < P_COUNT; kind++)
        for (rep = 0; rep < reps; rep++) {
            pat P;
            fa_mask_desc g = geom(960 + fa_t_randint(80), 960 + fa_t_randint(80), 0, 0);
            fa_mask *m = NULL;
            long bad;
            random_pat(&P, kind, g.seqlen_q, g.seqlen_k);
            P.left = fa_t_randint(3) == 0 ? -1 : fa_t_randint(300);
            P.right = fa_t_randint(3) == 0 ? -1 : fa_t_randint(2) ? 0 : fa_t_randint(300);
            P.stride = 1 + fa_t_randint(150);
            P.summary = 1 + fa_t_randint(P.stride);
            CHECKF(pat_build(&P, &g, &m) == FA_OK, "kind %d: %s", kind, fa_last_error());
            if (!m) continue;
            bad = check_mask(m, 1, 1, pat_keep, &P);
            CHECKF(bad == 0, "kind %d rep %d (%lld x %lld): %ld mismatches", kind, rep,
                   (long long)g.seqlen_q, (long long)g.seqlen_k, bad);
            fa_mask_destroy(m);
        }
}

/* Random callbacks with regions of all-kept, none-kept and mixed elements, per batch/head. */
typedef struct rcb {
    uint64_t salt;
    int thr[5];
    int64_t per_b, per_h, group; /* mask layouts, and query heads per layout */
    long calls;
} rcb;
static uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t x = a * 0x9e3779b97f4a7c15ull ^ b * 0xc2b2ae3d27d4eb4full ^ c * 0x165667b19e3779f9ull ^ d;
    return fa_t_splitmix(&x);
}
static int rcb_keep(void *u, int64_t b, int64_t h, int64_t q, int64_t k)
{
    rcb *r = (rcb *)u;
    int thr = r->thr[(q / 7 + k / 5 + b + 2 * h) % 5];
    r->calls++;
    return (int)(hash4(r->salt, (uint64_t)(b * 131 + h), (uint64_t)q, (uint64_t)k) % 1000) < thr;
}
/* the same truth in attention coordinates */
static int rcb_truth(void *u, int64_t b, int64_t h, int64_t q, int64_t k)
{
    rcb *r = (rcb *)u;
    return rcb_keep(u, r->per_b ? b : 0, r->per_h ? h / r->group : 0, q, k);
}

TEST(from_callback_classifies_tiles_exactly)
{
    int it, iters = FA_TEST_SANITIZED ? 25 : 150;
    for (it = 0; it < iters; it++) {
        rcb r;
        fa_mask_desc g = geom(PICK(odd_sizes), PICK(odd_sizes), PICK(blocks), PICK(blocks));
        fa_mask *m = NULL;
        int i;
        long bad;
        int64_t nh;
        memset(&r, 0, sizeof r);
        r.salt = fa_t_rand();
        for (i = 0; i < 5; i++) {
            static const int choices[] = {0, 1000, 500, 999, 3};
            r.thr[i] = choices[fa_t_randint(5)];
        }
        r.per_b = fa_t_randint(2);
        r.per_h = fa_t_randint(2);
        g.batch = r.per_b ? 2 : 0;
        g.heads = r.per_h ? 2 : 0;
        g.heads_q = r.per_h ? 2 * (1 + fa_t_randint(2)) : 0;
        r.group = r.per_h ? g.heads_q / 2 : 1;
        nh = r.per_h ? g.heads_q : 2;
        CHECK(fa_mask_from_fn(&m, &g, rcb_keep, &r) == FA_OK);
        if (!m) continue;
        bad = check_mask(m, 2, nh, rcb_truth, &r);
        CHECKF(bad == 0, "it %d: %ld mismatches", it, bad);
        fa_mask_destroy(m);
    }
}

/* Combinators: the result equals the element-wise and/or of the operands' visibility. */
typedef struct combo {
    const fa_mask *a, *b;
    int is_and;
} combo;
static int combo_truth(void *u, int64_t b, int64_t h, int64_t q, int64_t k)
{
    combo *c = (combo *)u;
    int x = fa__mask_visible(c->a, b, h, q, k), y = fa__mask_visible(c->b, b, h, q, k);
    return c->is_and ? (x && y) : (x || y);
}

static fa_status random_mask(fa_mask **m, fa_mask_desc *g, rcb *r, pat *P, int per_head)
{
    int which = (int)fa_t_randint(4);
    if (per_head) which = fa_t_randint(2) ? 0 : 3;
    if (which == 0) return fa_mask_from_fn(m, g, rcb_keep, r);
    if (which == 1) {
        random_pat(P, (int)fa_t_randint(P_PREFIX), g->seqlen_q, g->seqlen_k);
        return pat_build(P, g, m);
    }
    if (which == 2) return fa_mask_dense(m, g);
    return fa_mask_bigbird(m, g, fa_t_randint(2), fa_t_randint(2), fa_t_randint(3), (int)fa_t_randint(2), fa_t_rand());
}

TEST(and_or_combinators_equal_elementwise_logic)
{
    int it, iters = FA_TEST_SANITIZED ? 25 : 120;
    for (it = 0; it < iters; it++) {
        int64_t sq = PICK(odd_sizes), sk = PICK(odd_sizes), bq = PICK(blocks), bk = PICK(blocks);
        fa_mask_desc ga = geom(sq, sk, bq, bk), gb = geom(sq, sk, bq, bk);
        fa_mask *a = NULL, *b = NULL, *c = NULL, *c2 = NULL;
        rcb ra, rb;
        pat pa, pb;
        combo cc;
        long bad;
        int i, ha = (int)fa_t_randint(2), hb = (int)fa_t_randint(2);
        memset(&ra, 0, sizeof ra);
        memset(&rb, 0, sizeof rb);
        ra.salt = fa_t_rand();
        rb.salt = fa_t_rand();
        for (i = 0; i < 5; i++) { ra.thr[i] = (int)fa_t_randint(3) * 500; rb.thr[i] = (int)fa_t_randint(3) * 500; }
        /* a: shared or 2 layouts of 4 query heads; b: shared or 4 layouts (per head) */
        if (ha) { ga.heads = 2; ga.heads_q = 4; }
        if (hb) { gb.heads = 4; gb.heads_q = 4; }
        if (fa_t_randint(2)) ga.batch = 2;
        CHECK(random_mask(&a, &ga, &ra, &pa, ha) == FA_OK);
        CHECK(random_mask(&b, &gb, &rb, &pb, hb) == FA_OK);
        if (!a || !b) { fa_mask_destroy(a); fa_mask_destroy(b); continue; }
        cc.a = a;
        cc.b = b;
        cc.is_and = 1;
        CHECK(fa_mask_and(&c, a, b) == FA_OK);
        CHECK(fa_mask_or(&c2, a, b) == FA_OK);
        if (c) {
            bad = check_mask(c, 2, 4, combo_truth, &cc);
            CHECKF(bad == 0, "and it %d: %ld mismatches", it, bad);
        }
        cc.is_and = 0;
        if (c2) {
            bad = check_mask(c2, 2, 4, combo_truth, &cc);
            CHECKF(bad == 0, "or it %d: %ld mismatches", it, bad);
        }
        fa_mask_destroy(a);
        fa_mask_destroy(b);
        fa_mask_destroy(c);
        fa_mask_destroy(c2);
    }
}

TEST(combinator_reclassifies_tiles_and_nests)
{
    /* causal AND anti-causal (window right >= 0, left 0) = the diagonal only: every tile of
       the diagonal is partial, the rest empty; OR with itself is stable. */
    fa_mask_desc g = geom(8, 8, 2, 2);
    fa_mask *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
    char s[256];
    CHECK(fa_mask_causal(&a, &g) == FA_OK);
    CHECK(fa_mask_sliding_window(&b, &g, 0, -1, 0) == FA_OK);
    CHECK(fa_mask_and(&c, a, b) == FA_OK);
    layout_str(c, 0, 0, s, sizeof s);
    CHECK_STR(s, "P.../.P../..P./...P");
    /* causal OR anti-causal = everything: every tile becomes full, bits all set */
    CHECK(fa_mask_or(&d, a, b) == FA_OK);
    layout_str(d, 0, 0, s, sizeof s);
    CHECK_STR(s, "FFFF/FFFF/FFFF/FFFF");
    CHECK(fa_mask_or(&e, c, c) == FA_OK); /* bits operands */
    elem_str(e, 0, 0, s, sizeof s);
    CHECK_STR(s, "10000000/01000000/00100000/00010000/00001000/00000100/00000010/00000001");
    fa_mask_destroy(a); fa_mask_destroy(b); fa_mask_destroy(c); fa_mask_destroy(d); fa_mask_destroy(e);
}

TEST(density_reports_elements_and_tiles)
{
    fa_mask_desc g = geom(128, 128, 0, 0);
    fa_mask *m = NULL;
    fa_mask_density_info di;
    fa_mask_info in;
    CHECK(fa_mask_causal(&m, &g) == FA_OK);
    CHECK(fa_mask_get_info(m, &in) == FA_OK);
    CHECK(in.block_q == FA_ATTN_BLOCK_Q && in.block_k == FA_ATTN_BLOCK_K && in.blocks_q == 2 && in.blocks_k == 2);
    CHECK(fa_mask_density(m, &di) == FA_OK);
    CHECK(di.elements_total == 128 * 128 && di.elements_kept == 128 * 129 / 2);
    CHECK(di.elements == 8256.0 / 16384.0);
    CHECK(di.tiles_total == 4 && di.tiles_full == 1 && di.tiles_partial == 2 && di.tiles == 0.75);
    fa_mask_destroy(m);
    /* window of 64 + 1 keys on 1024 x 1024, 64 x 64 tiles */
    g = geom(1024, 1024, 64, 64);
    g.heads = 3;
    CHECK(fa_mask_sliding_window(&m, &g, 64, 0, 1) == FA_OK);
    CHECK(fa_mask_density(m, &di) == FA_OK);
    /* kept per query: min(q, 64) + 1; summed over q and 3 layouts */
    CHECK(di.elements_kept == 3 * (64 * 65 / 2 + (1024 - 64) * 65));
    CHECK(di.tiles_total == 3 * 16 * 16 && di.tiles_full == 0 && di.tiles_partial == 3 * (16 + 15));
    fa_mask_destroy(m);
    /* dense: everything kept */
    g = geom(65, 7, 8, 3);
    CHECK(fa_mask_dense(&m, &g) == FA_OK);
    CHECK(fa_mask_density(m, &di) == FA_OK);
    CHECK(di.elements == 1.0 && di.tiles == 1.0 && di.tiles_full == 9 * 3 && di.tiles_partial == 0);
    fa_mask_destroy(m);
}

/* ---- top-k ---- */
typedef struct tk_case {
    int64_t batch, sq, sk, hq, hkv, dk, bq, bk;
    int causal, varlen;
    int32_t cuq[4], cuk[4];
    float *q, *k;
} tk_case;

static void tk_make(tk_case *c)
{
    int64_t nq = (c->varlen ? c->cuq[c->batch] : c->batch * c->sq) * c->hq * c->dk;
    int64_t nk = (c->varlen ? c->cuk[c->batch] : c->batch * c->sk) * c->hkv * c->dk, i;
    c->q = (float *)malloc((size_t)nq * sizeof(float));
    c->k = (float *)malloc((size_t)nk * sizeof(float));
    for (i = 0; i < nq; i++) c->q[i] = (float)fa_t_normal();
    /* keys: noise plus a per (token block of 8) offset, so pooled scores spread apart */
    for (i = 0; i < nk; i++) {
        int64_t tok = i / (c->hkv * c->dk);
        c->k[i] = (float)fa_t_normal() + (float)(hash4(tok / 8, 7, 0, (uint64_t)(i % c->dk)) % 7) - 3.0f;
    }
}

static void tk_desc(const tk_case *c, fa_attn_desc *d)
{
    memset(d, 0, sizeof *d);
    d->batch = c->batch;
    d->seqlen_q = c->varlen ? 0 : c->sq;
    d->seqlen_k = c->varlen ? 0 : c->sk;
    d->heads_q = c->hq;
    d->heads_kv = c->hkv;
    d->head_dim = c->dk;
    d->q = c->q; d->k = c->k; d->v = c->k; d->o = c->q; /* v/o unused by the selection */
    d->causal = c->causal;
    if (c->varlen) { d->cu_seqlens_q = c->cuq; d->cu_seqlens_k = c->cuk; }
}

/* Brute-force pooled scores (double) of layout hm (grp query heads), query block I, key
   block J of sequence b; returns 0 if either block has no rows. */
static int tk_score(const tk_case *c, int minmax, int64_t b, int64_t hm, int64_t grp, int64_t I, int64_t J, double *out)
{
    int64_t q0 = c->varlen ? c->cuq[b] : b * c->sq, sq = c->varlen ? c->cuq[b + 1] - c->cuq[b] : c->sq;
    int64_t k0 = c->varlen ? c->cuk[b] : b * c->sk, sk = c->varlen ? c->cuk[b + 1] - c->cuk[b] : c->sk;
    int64_t i0 = I * c->bq, i1 = i0 + c->bq < sq ? i0 + c->bq : sq, j0 = J * c->bk, j1 = j0 + c->bk < sk ? j0 + c->bk : sk;
    int64_t g, e, i, j;
    double acc = 0.0, scale = 1.0 / sqrt((double)c->dk);
    if (i0 >= i1 || j0 >= j1) return 0;
    for (g = 0; g < grp; g++) {
        int64_t h = hm * grp + g, hk = h / (c->hq / c->hkv);
        for (e = 0; e < c->dk; e++) {
            double qs = 0, ks = 0, qlo = INFINITY, qhi = -INFINITY, klo = INFINITY, khi = -INFINITY;
            for (i = i0; i < i1; i++) {
                double x = c->q[((q0 + i) * c->hq + h) * c->dk + e];
                qs += x;
                qlo = x < qlo ? x : qlo;
                qhi = x > qhi ? x : qhi;
            }
            for (j = j0; j < j1; j++) {
                double x = c->k[((k0 + j) * c->hkv + hk) * c->dk + e];
                ks += x;
                klo = x < klo ? x : klo;
                khi = x > khi ? x : khi;
            }
            if (!minmax) acc += (qs / (double)(i1 - i0)) * (ks / (double)(j1 - j0));
            else {
                double a = qlo * klo, bb = qlo * khi, cc = qhi * klo, dd = qhi * khi, mx = a;
                mx = bb > mx ? bb : mx;
                mx = cc > mx ? cc : mx;
                mx = dd > mx ? dd : mx;
                acc += mx;
            }
        }
    }
    *out = acc * scale / (double)grp;
    return 1;
}

/* Checks one selection mask against the definition. Returns mismatches. */
static long tk_verify(const tk_case *c, const fa_mask *m, const fa_mask_topk_desc *t, int64_t *nsel_total)
{
    fa_mask_info in;
    long bad = 0;
    int64_t b, hm, I, J, hm_n, grp;
    fa_mask_get_info(m, &in);
    hm_n = in.heads;
    grp = c->hq / hm_n;
    for (b = 0; b < c->batch; b++) {
        int64_t sq = c->varlen ? c->cuq[b + 1] - c->cuq[b] : c->sq, sk = c->varlen ? c->cuk[b + 1] - c->cuk[b] : c->sk;
        for (hm = 0; hm < hm_n; hm++)
            for (I = 0; I < in.blocks_q; I++) {
                const int32_t *fl, *pl;
                int64_t nf, np, ncand = 0, nforced = 0, i0 = I * c->bq, i1 = i0 + c->bq < sq ? i0 + c->bq : sq;
                double sc[64], w[64], wmax = -INFINITY, wtot = 0, wsel = 0, worst_sel = INFINITY, best_unsel = -INFINITY, w_worst = 0;
                int cand[64], forced[64], sel[64];
                if (fa_mask_row(m, b, hm * grp, I, &fl, &nf, &pl, &np) != FA_OK) { bad++; continue; }
                if (np != 0) bad++;
                for (J = 0; J < in.blocks_k; J++) sel[J] = 0;
                for (J = 0; J < nf; J++) sel[fl[J]] = 1;
                for (J = 0; J < in.blocks_k; J++) {
                    int64_t j0 = J * c->bk, j1 = j0 + c->bk < sk ? j0 + c->bk : sk, i;
                    cand[J] = forced[J] = 0;
                    for (i = i0; i < i1 && !cand[J]; i++) /* a visible key of the block */
                        cand[J] = j0 < j1 && (!c->causal || j0 <= i + sk - sq);
                    if (!cand[J]) { if (sel[J]) bad++; continue; }
                    ncand++;
                    tk_score(c, t->pooling == FA_MASK_POOL_MINMAX, b, hm, grp, I, J, &sc[J]);
                    if (t->keep_sink && J == 0) forced[J] = 1;
                    if (t->keep_local) {
                        int64_t lo = i0 + sk - sq, hi = i1 - 1 + sk - sq;
                        if (lo < 0) lo = 0;
                        if (hi > sk - 1) hi = sk - 1;
                        if (lo <= hi && J >= lo / c->bk && J <= hi / c->bk) forced[J] = 1;
                    }
                    nforced += forced[J];
                    if (forced[J] && !sel[J]) bad++;
                    if (sc[J] > wmax) wmax = sc[J];
                }
                for (J = 0; J < in.blocks_k; J++) {
                    int64_t j0 = J * c->bk, j1 = j0 + c->bk < sk ? j0 + c->bk : sk;
                    if (!cand[J]) continue;
                    w[J] = (double)(j1 - j0) * exp(sc[J] - wmax);
                    wtot += w[J];
                    if (sel[J]) wsel += w[J];
                    if (forced[J]) continue;
                    if (sel[J] && sc[J] < worst_sel) { worst_sel = sc[J]; w_worst = w[J]; }
                    if (!sel[J] && sc[J] > best_unsel) best_unsel = sc[J];
                }
                *nsel_total += nf;
                /* the chosen ones beat the rest (up to float rounding of the library's scores) */
                if (worst_sel < INFINITY && best_unsel > -INFINITY &&
                    worst_sel < best_unsel - 1e-4 * (1.0 + fabs(best_unsel))) bad++;
                if (t->threshold == 0.0f) {
                    int64_t want = t->top_k < ncand ? t->top_k : ncand;
                    if (want < nforced) want = nforced;
                    if (nf != want) bad++;
                } else {
                    int64_t lim = t->top_k > 0 ? t->top_k : ncand;
                    if (nf > (lim > nforced ? lim : nforced)) bad++;
                    /* enough mass unless stopped by the count limit, and minimal */
                    if (nf < lim && ncand > 0 && wsel < t->threshold * wtot * (1 - 1e-4)) bad++;
                    if (worst_sel < INFINITY && nf > 1 && wsel - w_worst > t->threshold * wtot * (1 + 1e-4)) bad++;
                }
            }
    }
    return bad;
}

TEST(topk_picks_the_true_top_k_blocks)
{
    int it, iters = FA_TEST_SANITIZED ? 15 : 80;
    for (it = 0; it < iters; it++) {
        tk_case c;
        fa_attn_desc d;
        fa_mask_topk_desc t;
        fa_mask_topk_stats stt;
        fa_mask *m = NULL, *m2 = NULL;
        int64_t nsel = 0, b;
        long bad;
        memset(&c, 0, sizeof c);
        c.batch = 1 + fa_t_randint(3);
        c.hkv = 1 + fa_t_randint(2);
        c.hq = c.hkv * (1 + fa_t_randint(2));
        c.dk = 1 + fa_t_randint(24);
        c.bq = PICK(blocks) * 2 + 3;
        c.bk = PICK(blocks) * 2 + 3;
        c.causal = (int)fa_t_randint(2);
        c.varlen = (int)fa_t_randint(2);
        c.sq = 1 + fa_t_randint(150);
        c.sk = c.causal ? c.sq + fa_t_randint(40) : 1 + fa_t_randint(150);
        if (c.varlen) {
            c.cuq[0] = c.cuk[0] = 0;
            for (b = 0; b < c.batch; b++) {
                int64_t lq = 1 + fa_t_randint(c.sq), lk = c.causal ? lq + fa_t_randint(20) : fa_t_randint(c.sk + 1);
                c.cuq[b + 1] = c.cuq[b] + (int32_t)lq;
                c.cuk[b + 1] = c.cuk[b] + (int32_t)lk;
            }
        }
        if ((c.sk + c.bk - 1) / c.bk > 64) c.bk = (c.sk + 63) / 64 + 1;
        if (c.varlen) {
            int64_t mx = 0;
            for (b = 0; b < c.batch; b++) if (c.cuk[b + 1] - c.cuk[b] > mx) mx = c.cuk[b + 1] - c.cuk[b];
            if ((mx + c.bk - 1) / c.bk > 64) c.bk = (mx + 63) / 64 + 1;
        }
        tk_make(&c);
        tk_desc(&c, &d);
        memset(&t, 0, sizeof t);
        t.attn = &d;
        t.block_q = c.bq;
        t.block_k = c.bk;
        t.heads = fa_t_randint(2) ? c.hkv : 0;
        t.pooling = fa_t_randint(2) ? FA_MASK_POOL_MINMAX : FA_MASK_POOL_MEAN;
        t.keep_sink = (int)fa_t_randint(2);
        t.keep_local = (int)fa_t_randint(2);
        t.top_k = fa_t_randint(4) == 0 ? 0 : 1 + fa_t_randint(5);
        t.threshold = t.top_k == 0 || fa_t_randint(3) == 0 ? (float)fa_t_uniform(0.05, 1.0) : 0.0f;
        CHECKF(fa_mask_topk(&m, &t, &stt) == FA_OK, "%s", fa_last_error());
        if (!m) { free(c.q); free(c.k); continue; }
        bad = tk_verify(&c, m, &t, &nsel);
        CHECKF(bad == 0, "it %d (pool %d, k %lld, thr %g, sink %d, local %d, causal %d, varlen %d, heads %lld): %ld mismatches",
               it, (int)t.pooling, (long long)t.top_k, (double)t.threshold, t.keep_sink, t.keep_local, c.causal,
               c.varlen, (long long)t.heads, bad);
        CHECK(stt.tiles_selected == nsel && stt.tiles_candidate >= stt.tiles_selected && stt.seconds >= 0.0 && stt.flops > 0.0);
        /* deterministic: the same call gives the same layout */
        CHECK(fa_mask_topk(&m2, &t, NULL) == FA_OK);
        if (m2) {
            fa_mask_info i1, i2;
            int64_t hh, I;
            fa_mask_get_info(m, &i1);
            fa_mask_get_info(m2, &i2);
            CHECK(i1.tiles_full == i2.tiles_full);
            for (b = 0; b < c.batch; b++)
                for (hh = 0; hh < c.hq; hh++)
                    for (I = 0; I < i1.blocks_q; I++) {
                        const int32_t *f1, *f2, *p1, *p2;
                        int64_t n1, n2, np1, np2;
                        fa__mask_blocks(m, b, hh, I, &f1, &n1, &p1, &np1);
                        fa__mask_blocks(m2, b, hh, I, &f2, &n2, &p2, &np2);
                        CHECK(n1 == n2 && (n1 == 0 || memcmp(f1, f2, (size_t)n1 * sizeof(int32_t)) == 0));
                    }
        }
        fa_mask_destroy(m);
        fa_mask_destroy(m2);
        free(c.q);
        free(c.k);
    }
}

TEST(topk_exactly_k_with_sink_and_local)
{
    /* 256 x 256, 32-blocks: 8 x 8 tiles, causal. Query block I has I + 1 candidates; with
       top_k 3 + sink + local, every row keeps min(3, I + 1) blocks including 0 and I. */
    tk_case c;
    fa_attn_desc d;
    fa_mask_topk_desc t;
    fa_mask *m = NULL;
    int64_t I;
    memset(&c, 0, sizeof c);
    c.batch = 1; c.sq = c.sk = 256; c.hq = c.hkv = 2; c.dk = 16; c.bq = c.bk = 32; c.causal = 1;
    tk_make(&c);
    tk_desc(&c, &d);
    memset(&t, 0, sizeof t);
    t.attn = &d; t.block_q = t.block_k = 32; t.top_k = 3; t.keep_sink = 1; t.keep_local = 1;
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_OK);
    for (I = 0; m && I < 8; I++) {
        const int32_t *fl, *pl;
        int64_t nf, np, h;
        for (h = 0; h < 2; h++) {
            CHECK(fa_mask_row(m, 0, h, I, &fl, &nf, &pl, &np) == FA_OK);
            CHECKF(nf == (I + 1 < 3 ? I + 1 : 3) && np == 0, "I %lld nf %lld", (long long)I, (long long)nf);
            CHECK(nf > 0 && fl[0] == 0 && fl[nf - 1] == I);
        }
    }
    fa_mask_destroy(m);
    free(c.q);
    free(c.k);
}

TEST(topk_breaks_ties_toward_lower_blocks_and_ranks_nan_last)
{
    /* constant Q and K: every pooled score ties, so top_k 3 keeps blocks 0, 1, 2; with a NaN
       in key block 1 that block ranks last */
    static float q[96 * 4], k[96 * 4];
    fa_attn_desc d;
    fa_mask_topk_desc t;
    fa_mask *m = NULL;
    const int32_t *fl, *pl;
    int64_t nf, np, i, I;
    for (i = 0; i < 96 * 4; i++) q[i] = k[i] = 0.5f;
    memset(&d, 0, sizeof d);
    d.batch = 1; d.seqlen_q = d.seqlen_k = 96; d.heads_q = d.heads_kv = 1; d.head_dim = 4;
    d.q = q; d.k = k; d.v = k; d.o = q;
    memset(&t, 0, sizeof t);
    t.attn = &d; t.block_q = t.block_k = 16; t.top_k = 3;
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_OK);
    for (I = 0; m && I < 6; I++) {
        CHECK(fa_mask_row(m, 0, 0, I, &fl, &nf, &pl, &np) == FA_OK);
        CHECK(nf == 3 && fl[0] == 0 && fl[1] == 1 && fl[2] == 2);
    }
    fa_mask_destroy(m);
    m = NULL;
    k[16 * 4 + 2] = NAN;
    t.pooling = FA_MASK_POOL_MINMAX;
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_OK);
    for (I = 0; m && I < 6; I++) {
        CHECK(fa_mask_row(m, 0, 0, I, &fl, &nf, &pl, &np) == FA_OK);
        CHECK(nf == 3 && fl[0] == 0 && fl[1] == 2 && fl[2] == 3);
    }
    fa_mask_destroy(m);
}

static int same_layout(const fa_mask *a, const fa_mask *b, int64_t nb, int64_t nh)
{
    fa_mask_info ia, ib;
    int64_t x, h, I, J;
    fa_mask_get_info(a, &ia);
    fa_mask_get_info(b, &ib);
    if (ia.blocks_q != ib.blocks_q || ia.blocks_k != ib.blocks_k) return 0;
    for (x = 0; x < nb; x++)
        for (h = 0; h < nh; h++)
            for (I = 0; I < ia.blocks_q; I++)
                for (J = 0; J < ia.blocks_k; J++)
                    if (fa_mask_tile(a, x, h, I, J) != fa_mask_tile(b, x, h, I, J)) return 0;
    return 1;
}

TEST(topk_reads_paged_and_half_precision_kv)
{
    /* the same keys through a shuffled page table, and Q/K stored as f16 (values exactly
       representable), give the same selection as packed f32 */
    enum { B = 2, S = 96, H = 2, D = 8, PS = 16, NP = B * S / PS };
    static float q[B * S * H * D], k[B * S * H * D], kp[NP * PS * H * D];
    static uint16_t q16[B * S * H * D], k16[B * S * H * D];
    int32_t table[B * (S / PS)], perm[NP];
    fa_attn_desc d;
    fa_mask_topk_desc t;
    fa_mask *m0 = NULL, *m1 = NULL, *m2 = NULL;
    int64_t i, b, p, tok;
    for (i = 0; i < B * S * H * D; i++) {
        q[i] = (float)((int)fa_t_randint(64) - 32) / 8.0f;
        k[i] = (float)((int)fa_t_randint(64) - 32) / 8.0f + (float)((i / (H * D * 24)) % 5);
        q16[i] = fa_f32_to_f16(q[i]);
        k16[i] = fa_f32_to_f16(k[i]);
    }
    for (p = 0; p < NP; p++) perm[p] = (int32_t)p;
    for (p = NP - 1; p > 0; p--) {
        int64_t r = fa_t_randint(p + 1);
        int32_t tmp = perm[p]; perm[p] = perm[r]; perm[r] = tmp;
    }
    for (b = 0; b < B; b++)
        for (p = 0; p < S / PS; p++) {
            int32_t page = perm[b * (S / PS) + p];
            table[b * (S / PS) + p] = page;
            for (tok = 0; tok < PS; tok++)
                memcpy(kp + ((int64_t)page * PS + tok) * H * D, k + ((b * S) + p * PS + tok) * H * D, sizeof(float) * H * D);
        }
    memset(&d, 0, sizeof d);
    d.batch = B; d.seqlen_q = d.seqlen_k = S; d.heads_q = d.heads_kv = H; d.head_dim = D;
    d.q = q; d.k = k; d.v = k; d.o = q; d.causal = 1;
    memset(&t, 0, sizeof t);
    t.attn = &d; t.block_q = t.block_k = 8; t.top_k = 3; t.keep_local = 1;
    t.pooling = fa_t_randint(2) ? FA_MASK_POOL_MINMAX : FA_MASK_POOL_MEAN;
    CHECK(fa_mask_topk(&m0, &t, NULL) == FA_OK);
    d.k = kp; d.v = kp; d.block_table = table; d.page_size = PS; d.num_pages = NP;
    CHECK(fa_mask_topk(&m1, &t, NULL) == FA_OK);
    d.k = k16; d.v = k16; d.q = q16; d.k_type = d.v_type = d.q_type = FA_F16;
    d.block_table = NULL; d.page_size = d.num_pages = 0;
    CHECK(fa_mask_topk(&m2, &t, NULL) == FA_OK);
    if (m0 && m1 && m2) {
        CHECK(same_layout(m0, m1, B, H));
        CHECK(same_layout(m0, m2, B, H));
    }
    fa_mask_destroy(m0);
    fa_mask_destroy(m1);
    fa_mask_destroy(m2);
}

/* ---- interface used by the kernel, validation, score callbacks ---- */
static float add_qk(void *u, float s, int64_t b, int64_t h, int64_t q, int64_t k)
{
    (void)u;
    return s + (float)(1000 * b + 100 * h + 10 * q + k);
}

TEST(kernel_interface_check_and_score)
{
    fa_mask_desc g = geom(100, 80, 16, 32);
    fa_mask *m = NULL;
    int x = 0;
    g.heads = 2;
    g.heads_q = 6; /* query heads 0-2 -> layout 0, 3-5 -> layout 1 */
    CHECK(fa_mask_causal(&m, &g) == FA_OK);
    CHECK(fa__mask_block_q(m) == 16 && fa__mask_block_k(m) == 32);
    CHECK(fa__mask_same_layout(m, 0, 2) && fa__mask_same_layout(m, 3, 5) && !fa__mask_same_layout(m, 2, 3));
    CHECK(fa__mask_check(m, 5, 6, 100, 80) == FA_OK);
    CHECK(fa__mask_check(m, 1, 6, 37, 12) == FA_OK); /* covers a smaller problem */
    CHECK(fa__mask_check(m, 1, 4, 100, 80) == FA_ERR_SHAPE);
    CHECK(fa__mask_check(m, 1, 6, 101, 80) == FA_ERR_SHAPE);
    CHECK(fa__mask_check(m, 1, 6, 100, 81) == FA_ERR_SHAPE);
    CHECK(strstr(fa_last_error(), "81") != NULL);
    CHECK(fa__mask_check(NULL, 1, 6, 1, 1) == FA_ERR_NULL);
    CHECK(!fa__mask_has_score(m));
    CHECK(fa__mask_score(m, 1.5f, 0, 0, 0, 0) == 1.5f);
    CHECK(fa_mask_set_score(m, add_qk, &x) == FA_OK);
    CHECK(fa__mask_has_score(m));
    CHECK(fa__mask_score(m, 0.5f, 1, 5, 3, 2) == 0.5f + 1532.0f); /* real (b, h) reach the callback */
    CHECK(fa_mask_set_score(m, NULL, NULL) == FA_OK && !fa__mask_has_score(m));
    fa_mask_destroy(m);
    g = geom(10, 10, 4, 4);
    g.batch = 3;
    CHECK(fa_mask_causal(&m, &g) == FA_OK);
    CHECK(fa__mask_check(m, 3, 7, 10, 10) == FA_OK);
    CHECK(fa__mask_check(m, 2, 7, 10, 10) == FA_ERR_SHAPE);
    CHECK(fa_mask_tile(m, 3, 0, 0, 0) == -1 && fa_mask_tile(m, 2, 99, 0, 0) == FA_MASK_PARTIAL);
    CHECK(fa_mask_tile(m, 0, 0, 3, 0) == -1 && fa_mask_tile(m, 0, 0, 0, 3) == -1 && fa_mask_tile(NULL, 0, 0, 0, 0) == -1);
    CHECK(fa_mask_visible(m, 0, 0, 10, 0) == 0 && fa_mask_visible(m, 0, 0, 9, 9) == 1);
    fa_mask_destroy(m);
}

TEST(bad_input_returns_specific_errors)
{
    fa_mask_desc g = geom(16, 16, 0, 0);
    fa_mask *m = NULL, *a = NULL, *b = NULL;
    const int32_t *fl, *pl;
    int64_t nf, np, glob = -1, pre[2] = {3, 99};
    int32_t cu_bad[3] = {0, 5, 4}, cu_over[2] = {0, 17};
    fa_attn_desc d;
    fa_mask_topk_desc t;
    float qk[16 * 4];
    CHECK(fa_mask_causal(NULL, &g) == FA_ERR_NULL);
    CHECK(fa_mask_causal(&m, NULL) == FA_ERR_NULL);
    g.seqlen_q = 0; CHECK(fa_mask_causal(&m, &g) == FA_ERR_INVALID); g.seqlen_q = 16;
    g.seqlen_k = -3; CHECK(fa_mask_causal(&m, &g) == FA_ERR_INVALID); g.seqlen_k = 16;
    g.block_q = -1; CHECK(fa_mask_causal(&m, &g) == FA_ERR_INVALID);
    g.block_q = FA_MASK_MAX_BLOCK + 1; CHECK(fa_mask_causal(&m, &g) == FA_ERR_INVALID); g.block_q = 0;
    g.batch = -1; CHECK(fa_mask_causal(&m, &g) == FA_ERR_INVALID); g.batch = 0;
    g.heads = 3; g.heads_q = 8; CHECK(fa_mask_causal(&m, &g) == FA_ERR_SHAPE);
    g.heads = 4; g.heads_q = 2; CHECK(fa_mask_causal(&m, &g) == FA_ERR_SHAPE); g.heads = g.heads_q = 0;
    /* overflow: rows = batch * heads * blocks, and more key blocks than int32 indices */
    g.batch = INT64_MAX / 2; g.seqlen_q = INT64_MAX / 2; g.block_q = 1;
    CHECK(fa_mask_causal(&m, &g) == FA_ERR_OVERFLOW);
    g.batch = 0; g.seqlen_q = 16; g.block_q = 0;
    g.seqlen_k = (int64_t)1 << 40; g.block_k = 1;
    CHECK(fa_mask_causal(&m, &g) == FA_ERR_OVERFLOW);
    g = geom(16, 16, 0, 0);
    CHECK(fa_mask_from_fn(&m, &g, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_mask_sliding_window(&m, &g, 1, 1, -2) == FA_ERR_INVALID);
    CHECK(fa_mask_longformer(&m, &g, 1, 1, 0, NULL, 2) == FA_ERR_NULL);
    CHECK(fa_mask_longformer(&m, &g, 1, 1, 0, &glob, 1) == FA_ERR_RANGE);
    CHECK(fa_mask_longformer(&m, &g, 1, 1, 0, &glob, -1) == FA_ERR_INVALID);
    CHECK(fa_mask_bigbird(&m, &g, -1, 0, 0, 0, 1) == FA_ERR_INVALID);
    CHECK(fa_mask_strided(&m, &g, 0, 1) == FA_ERR_INVALID);
    CHECK(fa_mask_fixed(&m, &g, 4, 0, 1) == FA_ERR_INVALID);
    CHECK(fa_mask_fixed(&m, &g, 4, 5, 1) == FA_ERR_INVALID);
    CHECK(fa_mask_document(&m, &g, NULL, NULL, 1, 0) == FA_ERR_NULL);
    CHECK(fa_mask_document(&m, &g, cu_bad, NULL, 0, 0) == FA_ERR_INVALID);
    CHECK(fa_mask_document(&m, &g, cu_bad, NULL, 2, 0) == FA_ERR_RANGE);
    CHECK(fa_mask_document(&m, &g, cu_over, NULL, 1, 0) == FA_ERR_RANGE);
    CHECK(fa_mask_prefix_lm(&m, &g, NULL) == FA_ERR_NULL);
    g.batch = 2;
    CHECK(fa_mask_prefix_lm(&m, &g, pre) == FA_ERR_RANGE);
    g.batch = 0;
    CHECK(m == NULL); /* failures leave *out untouched */
    /* combinators: shapes must agree */
    CHECK(fa_mask_causal(&a, &g) == FA_OK);
    g.block_k = 8;
    CHECK(fa_mask_causal(&b, &g) == FA_OK);
    CHECK(fa_mask_and(&m, a, b) == FA_ERR_SHAPE);
    CHECK(fa_mask_or(&m, a, NULL) == FA_ERR_NULL);
    CHECK(fa_mask_or(NULL, a, a) == FA_ERR_NULL);
    fa_mask_destroy(b);
    g = geom(16, 16, 0, 0); g.batch = 2;
    CHECK(fa_mask_causal(&b, &g) == FA_OK);
    fa_mask_destroy(a);
    g.batch = 3;
    CHECK(fa_mask_causal(&a, &g) == FA_OK);
    CHECK(fa_mask_and(&m, a, b) == FA_ERR_SHAPE); /* batch 3 vs 2 */
    CHECK(fa_mask_row(a, 0, 0, 1, &fl, &nf, &pl, &np) == FA_ERR_RANGE);
    CHECK(fa_mask_row(a, 3, 0, 0, &fl, &nf, &pl, &np) == FA_ERR_RANGE);
    CHECK(fa_mask_row(a, 0, 0, 0, NULL, &nf, &pl, &np) == FA_ERR_NULL);
    CHECK(fa_mask_row(NULL, 0, 0, 0, &fl, &nf, &pl, &np) == FA_ERR_NULL);
    CHECK(fa_mask_density(a, NULL) == FA_ERR_NULL && fa_mask_get_info(NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_mask_set_score(NULL, NULL, NULL) == FA_ERR_NULL);
    fa_mask_destroy(a);
    fa_mask_destroy(b);
    fa_mask_destroy(NULL);
    /* top-k */
    memset(qk, 0, sizeof qk);
    memset(&d, 0, sizeof d);
    d.batch = 1; d.seqlen_q = d.seqlen_k = 16; d.heads_q = d.heads_kv = 1; d.head_dim = 4;
    d.q = d.k = d.v = qk; d.o = qk;
    memset(&t, 0, sizeof t);
    CHECK(fa_mask_topk(&m, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_NULL);
    t.attn = &d;
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_INVALID); /* neither top_k nor threshold */
    t.top_k = -1; CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_INVALID); t.top_k = 1;
    t.threshold = 1.5f; CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_INVALID); t.threshold = 0.0f;
    t.threshold = NAN; CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_INVALID); t.threshold = 0.0f;
    t.pooling = (fa_mask_pooling)7; CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_INVALID); t.pooling = FA_MASK_POOL_MEAN;
    d.heads_q = 2; d.heads_kv = 1; t.heads = 3;
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_SHAPE);
    d.heads_q = 1; t.heads = 0;
    d.head_dim = 0; CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_SHAPE); d.head_dim = 4; /* from attn validation */
    t.block_q = -4; CHECK(fa_mask_topk(&m, &t, NULL) == FA_ERR_INVALID); t.block_q = 0;
    CHECK(m == NULL);
    CHECK(fa_mask_topk(&m, &t, NULL) == FA_OK);
    fa_mask_destroy(m);
}

/* Every builder: fail the n-th allocation for n = 0, 1, ... until the call succeeds; each
   failure must return FA_ERR_NOMEM, leave *out alone and leak nothing. */
static int build_any(int which, fa_mask **out, const fa_allocator *al, const fa_mask *x, const fa_mask *y)
{
    fa_mask_desc g = geom(70, 90, 8, 4);
    static int64_t glob[3] = {1, 40, 77};
    static int32_t cu[4] = {0, 20, 21, 70};
    static int64_t pre[2] = {5, 60};
    static rcb r;
    g.alloc = al;
    g.heads = 2;
    g.heads_q = 4;
    switch (which) {
    case 0: return fa_mask_dense(out, &g);
    case 1: return fa_mask_from_fn(out, &g, rcb_keep, &r);
    case 2: return fa_mask_causal(out, &g);
    case 3: return fa_mask_sliding_window(out, &g, 9, 3, 2);
    case 4: return fa_mask_longformer(out, &g, 5, 5, 1, glob, 3);
    case 5: return fa_mask_bigbird(out, &g, 1, 1, 2, 0, 7);
    case 6: return fa_mask_strided(out, &g, 9, 1);
    case 7: return fa_mask_fixed(out, &g, 9, 2, 0);
    case 8: return fa_mask_document(out, &g, cu, NULL, 3, 1);
    case 9: g.batch = 2; return fa_mask_prefix_lm(out, &g, pre);
    case 10: return fa_mask_and(out, x, y);
    case 11: return fa_mask_or(out, x, y);
    default: return FA_ERR_INTERNAL;
    }
}

TEST(injected_allocation_failures_leak_nothing)
{
    int which, n;
    fa_mask *x = NULL, *y = NULL;
    fa_mask_desc g = geom(70, 90, 8, 4);
    rcb r;
    talloc tx;   /* x's allocator, which the combinators use: failures injected through it */
    fa_allocator alx;
    memset(&r, 0, sizeof r);
    memset(&tx, 0, sizeof tx);
    tx.fail_at = -1;
    alx.alloc = ta_alloc; alx.free = ta_free; alx.user = &tx;
    r.thr[0] = 500; r.thr[1] = 1000; r.thr[2] = 0;
    g.heads = 2; g.heads_q = 4;
    g.alloc = &alx;
    CHECK(fa_mask_from_fn(&x, &g, rcb_keep, &r) == FA_OK);
    CHECK(fa_mask_causal(&y, &g) == FA_OK);
    for (which = 0; which < 13; which++) {
        for (n = 0; n < 200; n++) {
            talloc ta, *tp = &ta;
            fa_allocator al;
            fa_mask *m = NULL;
            fa_status st;
            long base = 0;
            memset(&ta, 0, sizeof ta);
            ta.fail_at = n;
            al.alloc = ta_alloc; al.free = ta_free; al.user = &ta;
            if (which == 10 || which == 11) {
                tp = &tx;
                tx.calls = 0;
                tx.fail_at = n;
                base = tx.live;
            }
            if (which < 12) st = (fa_status)build_any(which, &m, &al, x, y);
            else { /* top-k through its own allocator */
                static float qk[64 * 2 * 8];
                fa_attn_desc d;
                fa_mask_topk_desc t;
                memset(&d, 0, sizeof d);
                d.batch = 1; d.seqlen_q = d.seqlen_k = 64; d.heads_q = d.heads_kv = 2; d.head_dim = 8;
                d.q = d.k = d.v = qk; d.o = qk;
                memset(&t, 0, sizeof t);
                t.attn = &d; t.top_k = 2; t.block_q = t.block_k = 4; t.alloc = &al;
                st = fa_mask_topk(&m, &t, NULL);
            }
            tx.fail_at = -1;
            if (st == FA_OK) {
                CHECK(m != NULL);
                fa_mask_destroy(m);
                CHECKF(tp->live == base, "builder %d: %ld blocks leaked after destroy", which, tp->live - base);
                CHECKF(n > 0, "builder %d never allocated through the allocator", which);
                break;
            }
            CHECKF(st == FA_ERR_NOMEM, "builder %d, failure %d: %s", which, n, fa_status_str(st));
            CHECKF(m == NULL, "builder %d wrote *out on failure", which);
            CHECKF(tp->live == base, "builder %d, failure %d: %ld blocks leaked", which, n, tp->live - base);
        }
        CHECKF(n < 200, "builder %d kept failing", which);
    }
    fa_mask_destroy(x);
    fa_mask_destroy(y);
    CHECK(tx.live == 0 && tx.live_bytes == 0);
}

int main(void)
{
    fa_test_init();
    RUN(pinned_causal_layouts_are_bottom_right);
    RUN(pinned_window_strided_fixed_layouts);
    RUN(pinned_longformer_with_global_tokens);
    RUN(pinned_document_and_prefix_lm);
    RUN(bigbird_layout_follows_its_rules_and_is_pinned_by_seed);
    RUN(builtin_patterns_match_brute_force_on_odd_sizes);
    RUN(builtin_patterns_match_brute_force_at_default_tile_size);
    RUN(from_callback_classifies_tiles_exactly);
    RUN(and_or_combinators_equal_elementwise_logic);
    RUN(combinator_reclassifies_tiles_and_nests);
    RUN(density_reports_elements_and_tiles);
    RUN(topk_picks_the_true_top_k_blocks);
    RUN(topk_exactly_k_with_sink_and_local);
    RUN(topk_breaks_ties_toward_lower_blocks_and_ranks_nan_last);
    RUN(topk_reads_paged_and_half_precision_kv);
    RUN(kernel_interface_check_and_score);
    RUN(bad_input_returns_specific_errors);
    RUN(injected_allocation_failures_leak_nothing);
    return fa_test_summary();
}
