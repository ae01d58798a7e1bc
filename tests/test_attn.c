/* tests/test_attn.c - attention section: fa_attn_forward against fa_attn_reference on random
   configurations covering every feature and their combinations, the reference against hand
   and direct computations, numerical robustness, fa_attn_merge, validation and allocation
   failure.

   Accuracy metric. The output is a convex combination of V rows, so the natural scale of its
   rounding error is sum_j p_j |v_j|: we run the reference a second time with |V| and require
       |o - ref| <= tol * ref(|V|)  (+ the output dtype's own rounding of ref)
   with tol = 1e-5 + 2*FLT_EPSILON*L for f32 accumulation, where L bounds the magnitude of the
   terms that make up a logit (Cauchy-Schwarz: scale * max|q| * max|k| + the largest ALiBi bias):
   a logit computed in f32 carries an absolute error of order eps*L, and every weight inherits it
   as a relative error, so no f32 implementation can do better on peaked inputs. For unit-variance
   inputs the second term is a few 1e-6. This is a max relative error that stays meaningful when
   an output element is a cancelling sum close to 0.

   Every configuration runs on each dispatch path, and once more on a task pool with a random
   number of KV splits; the file is also built under ThreadSanitizer (FA_TEST_TSAN). */

/* Allocation is counted (and can be made to fail at the n-th call) through the library's
   FLASHATTN_MALLOC hooks. */
#include <stdlib.h>
static long t_alloc_calls, t_live_allocs;
static long t_fail_at = -1; /* fail the allocation with this index (0-based); -1 = never */
static void *t_malloc(size_t n)
{
    long idx = t_alloc_calls++;
    void *p;
    if (t_fail_at >= 0 && idx == t_fail_at) return NULL;
    p = malloc(n);
    if (p) t_live_allocs++;
    return p;
}
static void t_free(void *p)
{
    if (p) t_live_allocs--;
    free(p);
}
#define FLASHATTN_MALLOC(n) t_malloc(n)
#define FLASHATTN_REALLOC(p, n) realloc(p, n)
#define FLASHATTN_FREE(p) t_free(p)

#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
   Test tensors: a buffer plus the view the descriptor sees.
   ------------------------------------------------------------------------------------------ */
typedef struct tview {
    unsigned char *buf;   /* allocation */
    size_t bytes;
    fa_dtype t;
    int64_t n0, n1, n2, dim;  /* extents: batch (or pages), tokens, heads, dim */
    fa_strides st;            /* resolved strides (what the library will use) */
    fa_strides given;         /* what the descriptor gets (zeros where default) */
    int64_t base;             /* element offset of the view's first element in buf */
} tview;

static size_t esz(fa_dtype t) { return fa_dtype_size(t); }

static double get_elem(const tview *v, int64_t off)
{
    const unsigned char *p = v->buf + (size_t)(v->base + off) * esz(v->t);
    uint16_t h;
    switch (v->t) {
    case FA_F32: { float f; memcpy(&f, p, 4); return f; }
    case FA_F16: memcpy(&h, p, 2); return fa_f16_to_f32(h);
    case FA_BF16: memcpy(&h, p, 2); return fa_bf16_to_f32(h);
    case FA_E4M3: return fa_e4m3_to_f32(*p);
    case FA_E5M2: return fa_e5m2_to_f32(*p);
    default: return 0;
    }
}

static void set_elem(tview *v, int64_t off, double x)
{
    unsigned char *p = v->buf + (size_t)(v->base + off) * esz(v->t);
    uint16_t h;
    switch (v->t) {
    case FA_F32: { float f = (float)x; memcpy(p, &f, 4); break; }
    case FA_F16: h = fa_f32_to_f16((float)x); memcpy(p, &h, 2); break;
    case FA_BF16: h = fa_f32_to_bf16((float)x); memcpy(p, &h, 2); break;
    case FA_E4M3: case FA_E5M2: {
        /* nearest finite FP8 value, by search over all 256 codes (test-only encoder, independent
           of the library's) */
        int c, best = 0;
        double bd = INFINITY;
        for (c = 0; c < 256; c++) {
            double y = v->t == FA_E4M3 ? fa_e4m3_to_f32((uint8_t)c) : fa_e5m2_to_f32((uint8_t)c);
            if (isfinite(y) && fabs(y - x) < bd) { bd = fabs(y - x); best = c; }
        }
        *p = (uint8_t)best;
        break;
    }
    default: break;
    }
}

static void *view_ptr(const tview *v) { return v->buf + (size_t)v->base * esz(v->t); }

/* Layouts: 0 packed BSHD (strides left 0), 1 BHSD, 2 padded/non-contiguous BSHD,
   3 reversed heads (negative head stride). */
static void view_make(tview *v, fa_dtype t, int64_t n0, int64_t n1, int64_t n2, int64_t dim, int layout)
{
    int64_t ph = 0, ps = 0, pb = 0, total;
    memset(v, 0, sizeof *v);
    v->t = t; v->n0 = n0; v->n1 = n1; v->n2 = n2; v->dim = dim;
    switch (layout) {
    case 1:
        v->st.head = n1 * dim; v->st.seq = dim; v->st.batch = n2 * n1 * dim;
        v->given = v->st;
        break;
    case 2:
        ph = fa_t_randint(5); ps = fa_t_randint(9); pb = fa_t_randint(17);
        v->st.head = dim + ph; v->st.seq = n2 * (dim + ph) + ps; v->st.batch = n1 * v->st.seq + pb;
        v->given = v->st;
        break;
    case 3:
        v->st.head = -dim; v->st.seq = n2 * dim; v->st.batch = n1 * n2 * dim;
        v->given = v->st;
        v->base = (n2 - 1) * dim;
        break;
    default:
        v->st.head = dim; v->st.seq = n2 * dim; v->st.batch = n1 * n2 * dim;
        break; /* given stays zero: the library's packed default */
    }
    total = v->base + (n0 - 1) * v->st.batch + (n1 - 1) * v->st.seq +
            (v->st.head > 0 ? (n2 - 1) * v->st.head : 0) + dim + 1;
    v->bytes = (size_t)total * esz(t);
    v->buf = (unsigned char *)malloc(v->bytes ? v->bytes : 1);
    memset(v->buf, 0xa5, v->bytes); /* padding holds a recognisable pattern */
}

static void view_free(tview *v) { free(v->buf); v->buf = NULL; }

static int64_t voff(const tview *v, int64_t i0, int64_t i1, int64_t i2)
{
    return i0 * v->st.batch + i1 * v->st.seq + i2 * v->st.head;
}

static void view_fill(tview *v, double mag)
{
    int64_t a, b, c, e;
    for (a = 0; a < v->n0; a++)
        for (b = 0; b < v->n1; b++)
            for (c = 0; c < v->n2; c++)
                for (e = 0; e < v->dim; e++) set_elem(v, voff(v, a, b, c) + e, mag * fa_t_normal());
}

/* Replace every element of the view by its absolute value (sign bit cleared). */
static void view_abs(tview *v)
{
    int64_t a, b, c, e;
    for (a = 0; a < v->n0; a++)
        for (b = 0; b < v->n1; b++)
            for (c = 0; c < v->n2; c++)
                for (e = 0; e < v->dim; e++) {
                    unsigned char *p = v->buf + (size_t)(v->base + voff(v, a, b, c) + e) * esz(v->t);
                    p[esz(v->t) - 1] &= 0x7f; /* little-endian: the sign is the top bit */
                }
}

/* ------------------------------------------------------------------------------------------
   A random problem.
   ------------------------------------------------------------------------------------------ */
typedef struct problem {
    fa_attn_desc d;
    tview q, k, v, o;
    int64_t hq, hkv, dk, dv, batch, sq, sk;
    int32_t *cu_q, *cu_k, *used_k, *bt;
    float *alibi, *ks, *vs;
    float *lse;
    int64_t total_q, lse_n;
    int packed_qkv;
    unsigned char *qkv_buf;
    fa_mask *mask;
    int mask_kind;
    char what[256];
} problem;

static int64_t pick(const int64_t *xs, int n) { return xs[fa_t_randint(n)]; }

static fa_dtype rand_float_dtype(void)
{
    static const fa_dtype ts[] = {FA_F32, FA_F32, FA_F16, FA_BF16};
    return ts[fa_t_randint(4)];
}

static void problem_free(problem *p)
{
    if (p->packed_qkv) {
        free(p->qkv_buf);
        p->q.buf = p->k.buf = p->v.buf = NULL;
    } else {
        view_free(&p->q); view_free(&p->k); view_free(&p->v);
    }
    view_free(&p->o);
    free(p->cu_q); free(p->cu_k); free(p->used_k); free(p->bt);
    free(p->alibi); free(p->ks); free(p->vs); free(p->lse);
    fa_mask_destroy(p->mask);
    memset(p, 0, sizeof *p);
}

/* Sparse masks for random problems: a random builder with random block sizes, shared or per
   head, sometimes combined with a second one and given a score callback. */
static int keep_hash(void *user, int64_t b, int64_t h, int64_t q, int64_t k)
{
    uint64_t x = (uint64_t)(uintptr_t)user ^ ((uint64_t)b << 48) ^ ((uint64_t)h << 40) ^ ((uint64_t)q << 20) ^ (uint64_t)k;
    x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    /* mostly dense near the diagonal, sparse far from it: partial and empty tiles both occur */
    return (int)((x % 100) < (uint64_t)(llabs((long long)(q - k)) < 40 ? 90 : 15));
}
static float score_bias(void *user, float s, int64_t b, int64_t h, int64_t q, int64_t k)
{
    (void)user;
    return s + 0.25f * (float)((b + h + q - k) % 5) - 0.5f;
}

static fa_status random_mask_one(fa_mask **m, const fa_mask_desc *g, int kind, int64_t sq, int64_t sk)
{
    switch (kind) {
    case 0: return fa_mask_causal(m, g);
    case 1: return fa_mask_sliding_window(m, g, fa_t_randint(sk + 2) - 1, fa_t_randint(40) - 1, fa_t_randint(3));
    case 2: {
        int64_t glob[3];
        glob[0] = fa_t_randint(sq + 1); glob[1] = fa_t_randint(sk + 1); glob[2] = 0;
        return fa_mask_longformer(m, g, fa_t_randint(64), fa_t_randint(64), 1, glob, 1 + fa_t_randint(3));
    }
    case 3: return fa_mask_bigbird(m, g, fa_t_randint(2), fa_t_randint(2), fa_t_randint(3), (int)fa_t_randint(2), fa_t_rand());
    case 4: return fa_mask_strided(m, g, 1 + fa_t_randint(40), (int)fa_t_randint(2));
    case 5: { int64_t l = 1 + fa_t_randint(40); return fa_mask_fixed(m, g, l, 1 + fa_t_randint(l), (int)fa_t_randint(2)); }
    case 6: {
        int64_t pre[4], i;
        for (i = 0; i < 4; i++) pre[i] = fa_t_randint(sk + 1);
        return fa_mask_prefix_lm(m, g, pre);
    }
    default: return fa_mask_from_fn(m, g, keep_hash, (void *)(uintptr_t)fa_t_rand());
    }
}

static void random_mask(problem *p)
{
    static const int64_t blocks[] = {0, 16, 32, 64, 128, 7, 100};
    fa_mask_desc g;
    fa_mask *a = NULL, *b = NULL;
    int64_t sk = p->sk > 0 ? p->sk : 1;
    memset(&g, 0, sizeof g);
    g.seqlen_q = p->sq;
    g.seqlen_k = sk;
    g.block_q = blocks[fa_t_randint(7)];
    g.block_k = blocks[fa_t_randint(7)];
    g.heads_q = p->hq;
    switch (fa_t_randint(3)) {
    case 0: g.heads = 1; break;
    case 1: g.heads = p->hkv; break;
    default: g.heads = p->hq; break;
    }
    g.heads_q = g.heads > 1 ? p->hq : 0;
    p->mask_kind = (int)fa_t_randint(8);
    if (random_mask_one(&a, &g, p->mask_kind, p->sq, sk) != FA_OK) { CHECKF(0, "mask %d: %s", p->mask_kind, fa_last_error()); return; }
    if (fa_t_randint(4) == 0) { /* and/or with a second mask */
        int k2 = (int)fa_t_randint(8), use_or = (int)fa_t_randint(2);
        if (random_mask_one(&b, &g, k2, p->sq, sk) == FA_OK) {
            fa_mask *c = NULL;
            if ((use_or ? fa_mask_or(&c, a, b) : fa_mask_and(&c, a, b)) == FA_OK) {
                fa_mask_destroy(a);
                a = c;
                p->mask_kind = 10 + p->mask_kind * 10 + k2;
            }
            fa_mask_destroy(b);
        }
    }
    if (fa_t_randint(3) == 0) {
        fa_mask_set_score(a, score_bias, NULL);
        p->mask_kind += 1000;
    }
    p->mask = a;
    p->d.mask = a;
}

/* Work budget of one random problem in multiply-adds of the reference. */
#ifdef FA_TEST_SANITIZED
#define WORK_CAP 1500000
#else
#define WORK_CAP 6000000
#endif

static void problem_random(problem *p)
{
    static const int64_t odd[] = {1, 2, 7, 16, 31, 63, 64, 65, 100, 129, 200};
    static const int64_t dims[] = {1, 3, 8, 16, 32, 48, 63, 64, 65, 80, 96, 128, 160, 256};
    static const int64_t groups[] = {1, 1, 2, 3, 4, 8, 16};
    fa_attn_desc *d = &p->d;
    int64_t b, group, cap, layout_q, layout_kv, layout_o, work;
    int varlen_q, varlen_k, paged, used;
    memset(p, 0, sizeof *p);

    p->batch = 1 + fa_t_randint(3);
    p->hkv = 1 + fa_t_randint(3);
    group = pick(groups, 7);
    p->hq = p->hkv * group;
    p->dk = pick(dims, 14);
    p->dv = fa_t_randint(3) == 0 ? pick(dims, 14) : p->dk;
    p->sq = fa_t_randint(3) == 0 ? 1 + fa_t_randint(150) : pick(odd, 11);
    p->sk = fa_t_randint(3) == 0 ? fa_t_randint(200) : pick(odd, 11);
    if (fa_t_randint(4) == 0) p->sq = 1; /* decode (a quarter: the decode paths need their share) */
    /* keep the reference affordable */
    for (;;) {
        work = p->batch * p->hq * p->sq * (p->sk + 1) * (p->dk + p->dv);
        if (work <= WORK_CAP) break;
        if (p->sk > 16) p->sk = p->sk * 2 / 3;
        else if (p->sq > 16) p->sq = p->sq * 2 / 3;
        else if (p->hq > p->hkv) { p->hq = p->hkv; }
        else if (p->dk > 32) { p->dk /= 2; p->dv = p->dk; }
        else break;
    }
    group = p->hq / p->hkv;

    /* one buffer holding q, k and v (self-attention): needs sq == sk and dv == dk */
    p->packed_qkv = fa_t_randint(8) == 0;
    if (p->packed_qkv) {
        p->sq = p->sk = p->sq < p->sk ? p->sq : (p->sk ? p->sk : 1);
        p->dv = p->dk;
    }
    varlen_q = !p->packed_qkv && fa_t_randint(4) == 0;
    paged = !p->packed_qkv && fa_t_randint(4) == 0;
    varlen_k = !p->packed_qkv && !paged && fa_t_randint(4) == 0;
    used = fa_t_randint(4) == 0;

    d->batch = p->batch;
    d->heads_q = p->hq;
    d->heads_kv = (group == 1 && fa_t_randint(2)) ? 0 : p->hkv; /* 0 = heads_q */
    d->head_dim = p->dk;
    d->head_dim_v = p->dv == p->dk && fa_t_randint(2) ? 0 : p->dv;
    d->q_type = rand_float_dtype();
    d->o_type = rand_float_dtype();
    if (fa_t_randint(5) == 0) {
        d->k_type = fa_t_randint(2) ? FA_E4M3 : FA_E5M2;
        d->v_type = fa_t_randint(2) ? FA_E4M3 : FA_E5M2;
    } else {
        d->k_type = rand_float_dtype();
        d->v_type = fa_t_randint(3) ? d->k_type : rand_float_dtype();
    }
    if (p->packed_qkv) d->k_type = d->v_type = d->q_type;

    /* sequence lengths */
    p->total_q = p->sq;
    if (varlen_q) {
        p->cu_q = (int32_t *)malloc((size_t)(p->batch + 1) * sizeof(int32_t));
        p->cu_q[0] = (int32_t)fa_t_randint(3); /* the packed axis may start past 0 */
        for (b = 0; b < p->batch; b++) p->cu_q[b + 1] = p->cu_q[b] + (int32_t)fa_t_randint(p->sq + 1);
        p->total_q = p->cu_q[p->batch];
        d->cu_seqlens_q = p->cu_q;
        d->seqlen_q = fa_t_randint(2) ? 0 : p->sq;
    } else {
        d->seqlen_q = p->sq;
    }
    if (varlen_k) {
        p->cu_k = (int32_t *)malloc((size_t)(p->batch + 1) * sizeof(int32_t));
        p->cu_k[0] = (int32_t)fa_t_randint(3);
        for (b = 0; b < p->batch; b++) p->cu_k[b + 1] = p->cu_k[b] + (int32_t)fa_t_randint(p->sk + 1);
        d->cu_seqlens_k = p->cu_k;
        d->seqlen_k = fa_t_randint(2) ? 0 : p->sk;
    } else {
        d->seqlen_k = p->sk;
    }
    if (used) {
        p->used_k = (int32_t *)malloc((size_t)p->batch * sizeof(int32_t));
        for (b = 0; b < p->batch; b++) {
            cap = varlen_k ? p->cu_k[b + 1] - p->cu_k[b] : p->sk;
            p->used_k[b] = (int32_t)fa_t_randint(cap + 1);
        }
        d->seqused_k = p->used_k;
    }

    /* tensors */
    layout_q = fa_t_randint(4);
    layout_kv = fa_t_randint(4);
    layout_o = fa_t_randint(4);
    if (p->packed_qkv) {
        /* one buffer [b][s][hq + 2*hkv][d]: q, k and v are views into it */
        int64_t row = (p->hq + 2 * p->hkv) * p->dk, n = p->batch * p->sq * row;
        size_t es = esz(d->q_type);
        p->qkv_buf = (unsigned char *)malloc((size_t)n * es + 16);
        memset(p->qkv_buf, 0xa5, (size_t)n * es + 16);
        p->q.buf = p->k.buf = p->v.buf = p->qkv_buf;
        p->q.t = d->q_type; p->k.t = d->k_type; p->v.t = d->v_type;
        p->q.n0 = p->k.n0 = p->v.n0 = p->batch;
        p->q.n1 = p->k.n1 = p->v.n1 = p->sq;
        p->q.n2 = p->hq; p->k.n2 = p->v.n2 = p->hkv;
        p->q.dim = p->k.dim = p->v.dim = p->dk;
        p->q.st.head = p->k.st.head = p->v.st.head = p->dk;
        p->q.st.seq = p->k.st.seq = p->v.st.seq = row;
        p->q.st.batch = p->k.st.batch = p->v.st.batch = p->sq * row;
        p->q.given = p->q.st; p->k.given = p->k.st; p->v.given = p->v.st;
        p->q.base = 0; p->k.base = p->hq * p->dk; p->v.base = (p->hq + p->hkv) * p->dk;
    } else {
        view_make(&p->q, d->q_type, varlen_q ? 1 : p->batch, varlen_q ? (p->total_q ? p->total_q : 1) : p->sq, p->hq, p->dk, (int)layout_q);
        if (paged) {
            int64_t np = 0, ps = 1 + fa_t_randint(17), per_seq, i;
            per_seq = (p->sk + ps - 1) / ps;
            d->page_size = ps;
            d->block_table_stride = fa_t_randint(2) ? 0 : per_seq + fa_t_randint(3);
            {
                int64_t bts = d->block_table_stride ? d->block_table_stride : per_seq;
                int64_t *perm;
                np = p->batch * bts + fa_t_randint(4);
                if (np < 1) np = 1;
                /* distinct pages in shuffled order: reads from the wrong page would show */
                perm = (int64_t *)malloc((size_t)np * sizeof(int64_t));
                for (i = 0; i < np; i++) perm[i] = i;
                for (i = np - 1; i > 0; i--) {
                    int64_t j = fa_t_randint(i + 1), t = perm[i];
                    perm[i] = perm[j]; perm[j] = t;
                }
                p->bt = (int32_t *)malloc((size_t)(p->batch * bts + 1) * sizeof(int32_t));
                for (i = 0; i < p->batch * bts; i++) p->bt[i] = (int32_t)perm[i];
                free(perm);
            }
            d->block_table = p->bt;
            d->num_pages = np;
            view_make(&p->k, d->k_type, np, ps, p->hkv, p->dk, (int)layout_kv);
            view_make(&p->v, d->v_type, np, ps, p->hkv, p->dv, (int)layout_kv);
        } else {
            int64_t nb = varlen_k ? 1 : p->batch;
            int64_t nt = varlen_k ? (p->cu_k[p->batch] ? p->cu_k[p->batch] : 1) : (p->sk ? p->sk : 1);
            view_make(&p->k, d->k_type, nb, nt, p->hkv, p->dk, (int)layout_kv);
            view_make(&p->v, d->v_type, nb, nt, p->hkv, p->dv, (int)layout_kv);
        }
    }
    view_make(&p->o, d->o_type, varlen_q ? 1 : p->batch, varlen_q ? (p->total_q ? p->total_q : 1) : p->sq, p->hq, p->dv, (int)layout_o);
    {
        double qmag = fa_t_randint(4) == 0 ? 4.0 : 1.0; /* sometimes peaked softmax */
        view_fill(&p->q, qmag);
        view_fill(&p->k, 1.0);
        view_fill(&p->v, 1.0);
    }
    d->q = view_ptr(&p->q); d->q_stride = p->q.given;
    d->k = view_ptr(&p->k); d->k_stride = p->k.given;
    d->v = view_ptr(&p->v); d->v_stride = p->v.given;
    d->o = view_ptr(&p->o); d->o_stride = p->o.given;
    if (varlen_q) { d->q_stride.batch = 12345; d->o_stride.batch = -777; } /* must be ignored */

    /* FP8 dequant scales */
    if (d->k_type == FA_E4M3 || d->k_type == FA_E5M2 || fa_t_randint(8) == 0) {
        d->k_scale = (float)fa_t_uniform(0.05, 2.0);
        d->v_scale = fa_t_randint(3) ? (float)fa_t_uniform(0.05, 2.0) : 0.0f;
        if (fa_t_randint(2)) {
            int64_t h;
            p->ks = (float *)malloc((size_t)p->hkv * sizeof(float));
            p->vs = (float *)malloc((size_t)p->hkv * sizeof(float));
            for (h = 0; h < p->hkv; h++) {
                p->ks[h] = (float)fa_t_uniform(0.05, 2.0);
                p->vs[h] = (float)fa_t_uniform(0.05, 2.0);
            }
            d->k_head_scale = p->ks;
            d->v_head_scale = fa_t_randint(2) ? p->vs : NULL;
        }
    }

    /* scores */
    d->softmax_scale = fa_t_randint(3) == 0 ? (float)fa_t_uniform(0.01, 0.5) : 0.0f;
    if (fa_t_randint(4) == 0) d->softcap = (float)fa_t_uniform(1.0, 30.0);
    if (fa_t_randint(4) == 0) {
        int64_t i, n;
        d->alibi_batch_stride = fa_t_randint(2) ? p->hq : 0;
        n = d->alibi_batch_stride ? p->batch * p->hq : p->hq;
        p->alibi = (float *)malloc((size_t)n * sizeof(float));
        for (i = 0; i < n; i++) p->alibi[i] = (float)fa_t_uniform(0.0, 0.5);
        d->alibi_slopes = p->alibi;
    }
    d->causal = fa_t_randint(2);
    if (fa_t_randint(3) == 0) {
        d->use_window = 1;
        d->window_left = fa_t_randint(4) == 0 ? -1 : fa_t_randint(p->sk + 2);
        d->window_right = fa_t_randint(4) == 0 ? -1 : fa_t_randint(p->sk + 2);
    }
    /* LSE, sometimes with explicit strides */
    if (fa_t_randint(3)) {
        int64_t nrows = varlen_q ? p->total_q : p->batch * p->sq;
        p->lse_n = nrows * p->hq + 8;
        p->lse = (float *)malloc((size_t)p->lse_n * sizeof(float));
        d->lse = p->lse;
        if (!varlen_q && fa_t_randint(2)) { /* [b][s][h] instead of [b][h][s] */
            d->lse_stride.head = 1;
            d->lse_stride.seq = p->hq;
            d->lse_stride.batch = p->hq * p->sq;
        }
    }
    if (fa_t_randint(4) == 0) random_mask(p);
    snprintf(p->what, sizeof p->what,
             "b=%lld hq=%lld hkv=%lld sq=%lld sk=%lld dk=%lld dv=%lld q=%s k=%s v=%s o=%s lay=%lld/%lld/%lld "
             "varq=%d vark=%d paged=%d used=%d qkv=%d causal=%d win=%d(%lld,%lld) cap=%g alibi=%d lse=%d mask=%d",
             (long long)p->batch, (long long)p->hq, (long long)p->hkv, (long long)p->sq, (long long)p->sk,
             (long long)p->dk, (long long)p->dv, fa_dtype_name(d->q_type), fa_dtype_name(d->k_type),
             fa_dtype_name(d->v_type), fa_dtype_name(d->o_type), (long long)layout_q, (long long)layout_kv,
             (long long)layout_o, varlen_q, varlen_k, paged, used, p->packed_qkv, d->causal, d->use_window,
             (long long)d->window_left, (long long)d->window_right, (double)d->softcap, d->alibi_slopes != NULL,
             d->lse != NULL, p->mask ? p->mask_kind : -1);
}

/* Half an ulp of dtype t at magnitude x: the rounding a correct store may add. */
static double half_ulp(fa_dtype t, double x)
{
    x = fabs(x);
    switch (t) {
    case FA_F16: return x * ldexp(1.0, -11) + ldexp(1.0, -25);
    case FA_BF16: return x * ldexp(1.0, -8) + ldexp(1.0, -134);
    default: return x * ldexp(1.0, -24) + ldexp(1.0, -150);
    }
}

/* Runs the reference with f32 output into packed buffers. abs_v: use |V| instead of V. */
static fa_status run_reference(const problem *p, int abs_v, float *o, float *lse)
{
    fa_attn_desc r = p->d;
    tview vv = p->v;
    fa_status st;
    if (abs_v) {
        /* packed QKV: copy the shared buffer, but take |.| of the V elements only */
        size_t n = p->packed_qkv ? (size_t)(p->batch * p->sq * (p->hq + 2 * p->hkv) * p->dk) * esz(p->d.q_type) + 16
                                 : p->v.bytes;
        vv.buf = (unsigned char *)malloc(n);
        memcpy(vv.buf, p->packed_qkv ? p->qkv_buf : p->v.buf, n);
        view_abs(&vv);
        r.v = view_ptr(&vv);
    }
    r.o = o;
    r.o_type = FA_F32;
    memset(&r.o_stride, 0, sizeof r.o_stride);
    r.o_stride.batch = r.cu_seqlens_q ? 999 : 0;
    r.lse = lse;
    memset(&r.lse_stride, 0, sizeof r.lse_stride);
    st = fa_attn_reference(&r);
    if (abs_v) free(vv.buf);
    return st;
}

/* Compares the problem's output (and LSE) with the reference; returns the number of bad
   elements and reports the worst relative error in *worst. */
static long compare_with_reference(problem *p, double tol, double *worst)
{
    int64_t nrows = p->total_q > 0 ? (p->d.cu_seqlens_q ? p->total_q : p->batch * p->sq) : 1;
    size_t n = (size_t)(nrows * p->hq * p->dv);
    float *ro = (float *)malloc(n * sizeof(float)), *ra = (float *)malloc(n * sizeof(float));
    float *rl = (float *)malloc((size_t)(nrows * p->hq) * sizeof(float));
    long bad = 0;
    int64_t b, i, h, e;
    *worst = 0;
    if (run_reference(p, 0, ro, rl) != FA_OK || run_reference(p, 1, ra, NULL) != FA_OK) {
        free(ro); free(ra); free(rl);
        return -1;
    }
    for (b = 0; b < p->batch; b++) {
        int64_t sq = p->d.cu_seqlens_q ? p->cu_q[b + 1] - p->cu_q[b] : p->sq;
        int64_t t0 = p->d.cu_seqlens_q ? p->cu_q[b] : 0, ob = p->d.cu_seqlens_q ? 0 : b;
        for (i = 0; i < sq; i++)
            for (h = 0; h < p->hq; h++) {
                int64_t ridx = ((p->d.cu_seqlens_q ? 0 : b * p->sq) + t0 + i) * p->hq + h;
                for (e = 0; e < p->dv; e++) {
                    double got = get_elem(&p->o, voff(&p->o, ob, t0 + i, h) + e);
                    double ref = ro[ridx * p->dv + e], mag = ra[ridx * p->dv + e];
                    /* + an absolute 1e-32: weights below FLT_MIN times the row's largest are
                       flushed to 0 by design (see the kernel comment), an error of at most
                       FLT_MIN * sk * max|v| */
                    double err = fabs(got - ref), lim = tol * mag + half_ulp(p->d.o_type, fabs(ref) + tol * mag) + 1e-32;
                    double rel = mag > 0 ? err / mag : err;
                    if (!(err <= lim)) {
                        if (bad < 3)
                            fprintf(stderr, "    o[b=%lld i=%lld h=%lld e=%lld] = %.9g, ref %.9g (|v| scale %.3g)\n",
                                    (long long)b, (long long)i, (long long)h, (long long)e, got, ref, mag);
                        bad++;
                    }
                    if (p->d.o_type == FA_F32 && rel > *worst) *worst = rel;
                }
                if (p->d.lse) {
                    int64_t lidx;
                    double got, ref;
                    if (p->d.cu_seqlens_q) lidx = h * p->total_q + t0 + i;
                    else if (p->d.lse_stride.head == 1) lidx = b * p->hq * p->sq + i * p->hq + h;
                    else lidx = (b * p->hq + h) * p->sq + i;
                    got = p->lse[lidx];
                    /* the reference LSE is packed [b][h][s] (varlen: [h][total]) */
                    ref = p->d.cu_seqlens_q ? rl[h * p->total_q + t0 + i] : rl[(b * p->hq + h) * p->sq + i];
                    if (isinf(ref) ? got != ref : !(fabs(got - ref) <= tol * (1.0 + fabs(ref)))) { /* tol carries the logit term */
                        if (bad < 3)
                            fprintf(stderr, "    lse[b=%lld i=%lld h=%lld] = %.9g, ref %.9g\n", (long long)b,
                                    (long long)i, (long long)h, got, ref);
                        bad++;
                    }
                }
            }
    }
    free(ro); free(ra); free(rl);
    return bad;
}

/* Largest L2 norm of a row of the view (times mul). */
static double view_max_norm(const tview *v)
{
    int64_t a, b, c, e;
    double best = 0;
    for (a = 0; a < v->n0; a++)
        for (b = 0; b < v->n1; b++)
            for (c = 0; c < v->n2; c++) {
                double s = 0;
                for (e = 0; e < v->dim; e++) {
                    double x = get_elem(v, voff(v, a, b, c) + e);
                    s += x * x;
                }
                if (s > best) best = s;
            }
    return sqrt(best);
}

/* The logit magnitude bound L of the file comment. */
static double logit_bound(const problem *p)
{
    const fa_attn_desc *d = &p->d;
    double scale = d->softmax_scale != 0 ? d->softmax_scale : 1.0 / sqrt((double)p->dk);
    double kmul = d->k_scale != 0 ? fabs(d->k_scale) : 1.0, amax = 0;
    int64_t i, n;
    if (d->k_head_scale)
        for (kmul = 0, i = 0; i < p->hkv; i++) kmul = fabs(d->k_head_scale[i]) > kmul ? fabs(d->k_head_scale[i]) : kmul;
    if (d->alibi_slopes) {
        n = d->alibi_batch_stride ? p->batch * p->hq : p->hq;
        for (i = 0; i < n; i++) amax = fabs(d->alibi_slopes[i]) > amax ? fabs(d->alibi_slopes[i]) : amax;
    }
    return fabs(scale) * view_max_norm(&p->q) * view_max_norm(&p->k) * kmul + amax * (double)(p->sq + p->sk + 4);
}

/* Every byte of O's buffer outside the view still holds the fill pattern. */
static long count_stray_writes(const problem *p)
{
    unsigned char *mark = (unsigned char *)calloc(p->o.bytes, 1);
    int64_t a, b, c, e;
    size_t i, es = esz(p->o.t);
    long stray = 0;
    for (a = 0; a < p->o.n0; a++)
        for (b = 0; b < p->o.n1; b++)
            for (c = 0; c < p->o.n2; c++)
                for (e = 0; e < p->o.dim; e++)
                    memset(mark + (size_t)(p->o.base + voff(&p->o, a, b, c) + e) * es, 1, es);
    for (i = 0; i < p->o.bytes; i++)
        if (!mark[i] && p->o.buf[i] != 0xa5) stray++;
    free(mark);
    return stray;
}

/* How often each feature occurred: the test insists every one was exercised. */
enum { C_VARQ, C_VARK, C_PAGED, C_USED, C_QKV, C_CAUSAL, C_WINDOW, C_SOFTCAP, C_ALIBI, C_LSE, C_FP8,
       C_F16, C_BF16, C_GQA, C_DV, C_DECODE, C_STRIDED, C_SCALE, C_MASK, C_DEC_TILE, C_KV_UNIT, C_COUNT };
static const char *const cov_names[C_COUNT] = {"varlen_q", "varlen_k", "paged", "seqused_k", "packed_qkv",
    "causal", "window", "softcap", "alibi", "lse", "fp8", "f16", "bf16", "gqa", "dv!=dk", "decode", "strided",
    "kv_scale", "mask", "dec_tile", "kv_heads_unit"};

static void coverage_add(int *cov, const problem *p)
{
    const fa_attn_desc *d = &p->d;
    cov[C_VARQ] += d->cu_seqlens_q != NULL;
    cov[C_VARK] += d->cu_seqlens_k != NULL;
    cov[C_PAGED] += d->block_table != NULL;
    cov[C_USED] += d->seqused_k != NULL;
    cov[C_QKV] += p->packed_qkv;
    cov[C_CAUSAL] += d->causal != 0;
    cov[C_WINDOW] += d->use_window != 0;
    cov[C_SOFTCAP] += d->softcap > 0;
    cov[C_ALIBI] += d->alibi_slopes != NULL;
    cov[C_LSE] += d->lse != NULL;
    cov[C_FP8] += d->k_type == FA_E4M3 || d->k_type == FA_E5M2;
    cov[C_F16] += d->q_type == FA_F16 || d->o_type == FA_F16;
    cov[C_BF16] += d->q_type == FA_BF16 || d->o_type == FA_BF16;
    cov[C_GQA] += p->hq > p->hkv;
    cov[C_DV] += p->dv != p->dk;
    cov[C_DECODE] += p->sq == 1;
    cov[C_STRIDED] += d->q_stride.seq != 0 || d->k_stride.head != 0;
    cov[C_SCALE] += d->k_scale != 0 || d->k_head_scale != NULL;
    cov[C_MASK] += d->mask != NULL;
    { /* a unit of at most 8 rows with head dims in 16s: the AVX-512 in-place decode tiles */
        int64_t g = p->hq / p->hkv, hpu = g < FA__ROWS ? g : FA__ROWS, qpu = FA__ROWS / hpu;
        int64_t last = p->sq > 0 ? (p->sq - 1) % qpu + 1 : 0;
        /* one query: a unit takes every kv head (fa__attn_schedule) */
        cov[C_KV_UNIT] += p->sq == 1 && !d->mask && p->hkv > 1 && 2 * (p->hq / p->hkv) <= FA__ROWS;
        cov[C_DEC_TILE] += p->dk % 16 == 0 && p->dv % 16 == 0 && last > 0 && last * hpu <= 8 && !d->cu_seqlens_q;
    }
}

/* The dispatch paths the machine offers, forced one at a time through the feature override. */
static const struct { const char *name; unsigned mask; } paths[] = {
    {"scalar", 0u},
    {"avx2", FA_CPU_AVX | FA_CPU_AVX2 | FA_CPU_FMA | FA_CPU_F16C | FA_CPU_SSE2},
    {"no-bf16", ~(unsigned)FA_CPU_AVX512_BF16}, /* AVX-512 without the bf16 dot kernel */
    {"best", ~0u},
    {"pool+splits", ~0u},
};
#define NPATHS ((int)(sizeof paths / sizeof paths[0]))
static fa_pool *test_pool; /* 3 workers + the caller */

#if defined(FA_TEST_TSAN_BUILD)
#define N_RANDOM_CONFIGS 120 /* ThreadSanitizer is slow; the other builds run 500 */
#else
#define N_RANDOM_CONFIGS 500
#endif

TEST(forward_matches_reference_on_random_configurations)
{
    int iter, n = N_RANDOM_CONFIGS, cov[C_COUNT] = {0}, c, path;
    double worst_all[NPATHS] = {0};
    for (iter = 0; iter < n; iter++) {
        problem p;
        problem_random(&p);
        coverage_add(cov, &p);
        for (path = 0; path < NPATHS; path++) {
            double worst = 0, tol = 1e-5 + 2 * FLT_EPSILON * logit_bound(&p);
            long bad;
            fa_status st;
            memset(p.o.buf, 0xa5, p.o.bytes);
            fa_cpu_features_override(paths[path].mask);
            if (path == NPATHS - 1) {
                p.d.pool = test_pool;
                p.d.num_splits = fa_t_randint(3) ? 0 : 1 + fa_t_randint(5); /* 0 = choose */
            }
            st = fa_attn_forward(&p.d);
            p.d.pool = NULL;
            p.d.num_splits = 0;
            fa_cpu_features_override(~0u);
            CHECKF(st == FA_OK, "forward: %s: %s [%s]", fa_status_str(st), fa_last_error(), p.what);
            if (st != FA_OK) continue;
            bad = compare_with_reference(&p, tol, &worst);
            CHECKF(bad == 0, "%s: %ld bad elements, worst rel %.3g [%s]", paths[path].name, bad, worst, p.what);
            CHECKF(count_stray_writes(&p) == 0, "%s: write outside the O view [%s]", paths[path].name, p.what);
            if (worst > worst_all[path]) worst_all[path] = worst;
        }
        problem_free(&p);
    }
    printf("     %d configurations x %d paths; worst error relative to sum p|v|:", n, NPATHS);
    for (path = 0; path < NPATHS; path++) printf(" %s %.3g", paths[path].name, worst_all[path]);
    printf("\n     coverage:");
    for (c = 0; c < C_COUNT; c++) {
        printf(" %s %d", cov_names[c], cov[c]);
        CHECKF(cov[c] >= 5, "feature %s exercised only %d times", cov_names[c], cov[c]);
    }
    printf("\n");
}

/* ------------------------------------------------------------------------------------------
   The reference itself.
   ------------------------------------------------------------------------------------------ */

TEST(reference_matches_a_hand_computed_case)
{
    /* one head, d = 2, two queries, three keys, scale 1:
         q0 = (1, 0), q1 = (0, 1); k0 = (0, 0), k1 = (1, 0), k2 = (0, 2)
         s0 = (0, 1, 0)  -> p0 = (1, e, 1) / (2 + e)
         s1 = (0, 0, 2)  -> p1 = (1, 1, e^2) / (2 + e^2)
         v0 = (1, 0), v1 = (0, 1), v2 = (1, 1)
         o0 = ((1 + 1), (e + 1)) / (2 + e)   o1 = ((1 + e^2), (1 + e^2)) / (2 + e^2)
       causal (bottom-right, sq = 2, sk = 3): query 0 sees keys 0..1, query 1 sees 0..2:
         o0c = (1, e) / (1 + e), lse0c = log(1 + e) */
    float q[] = {1, 0, 0, 1}, k[] = {0, 0, 1, 0, 0, 2}, v[] = {1, 0, 0, 1, 1, 1}, o[4], lse[2];
    double e1 = exp(1.0), e2 = exp(2.0);
    fa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1; d.seqlen_q = 2; d.seqlen_k = 3; d.heads_q = 1; d.head_dim = 2;
    d.q = q; d.k = k; d.v = v; d.o = o; d.lse = lse; d.softmax_scale = 1.0f;
    CHECK(fa_attn_reference(&d) == FA_OK);
    CHECK(fabs(o[0] - 2 / (2 + e1)) < 1e-7 && fabs(o[1] - (e1 + 1) / (2 + e1)) < 1e-7);
    CHECK(fabs(o[2] - (1 + e2) / (2 + e2)) < 1e-7 && fabs(o[3] - (1 + e2) / (2 + e2)) < 1e-7);
    CHECK(fabs(lse[0] - log(2 + e1)) < 1e-6 && fabs(lse[1] - log(2 + e2)) < 1e-6);
    d.causal = 1;
    CHECK(fa_attn_reference(&d) == FA_OK);
    CHECK(fabs(o[0] - 1 / (1 + e1)) < 1e-7 && fabs(o[1] - e1 / (1 + e1)) < 1e-7);
    CHECK(fabs(lse[0] - log(1 + e1)) < 1e-6);
    CHECK(fabs(o[2] - (1 + e2) / (2 + e2)) < 1e-7);
    /* the tiled path agrees */
    CHECK(fa_attn_forward(&d) == FA_OK);
    CHECK(fabs(o[0] - 1 / (1 + e1)) < 1e-6 && fabs(o[3] - (1 + e2) / (2 + e2)) < 1e-6);
}

/* softmax(Q K^T * scale + mask) V computed the textbook way, with the full score matrix, on
   packed BSHD tensors with GQA: this also pins the library's default strides. */
TEST(reference_matches_the_direct_formula)
{
    int iter;
    for (iter = 0; iter < 20; iter++) {
        int64_t nb = 1 + fa_t_randint(3), hkv = 1 + fa_t_randint(2), hq = hkv * (1 + fa_t_randint(3));
        int64_t sq = 1 + fa_t_randint(40), sk = 1 + fa_t_randint(40), dd = 1 + fa_t_randint(20);
        int64_t i, j, e, b, h, causal = fa_t_randint(2);
        int64_t nq = nb * sq * hq * dd, nk = nb * sk * hkv * dd;
        float *q = (float *)malloc((size_t)nq * 4), *k = (float *)malloc((size_t)nk * 4);
        float *v = (float *)malloc((size_t)nk * 4), *o = (float *)malloc((size_t)nq * 4);
        double *S = (double *)malloc((size_t)(sq * sk) * 8), scale = (double)(float)(1.0 / sqrt((double)dd));
        fa_attn_desc d;
        for (i = 0; i < nq; i++) q[i] = (float)fa_t_normal();
        for (i = 0; i < nk; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
        memset(&d, 0, sizeof d);
        d.batch = nb; d.seqlen_q = sq; d.seqlen_k = sk; d.heads_q = hq; d.heads_kv = hkv; d.head_dim = dd;
        d.q = q; d.k = k; d.v = v; d.o = o; d.causal = (int)causal;
        CHECK(fa_attn_reference(&d) == FA_OK);
        for (b = 0; b < nb; b++)
            for (h = 0; h < hq; h++) {
                int64_t g = h / (hq / hkv);
#define QX(i_, e_) q[((b * sq + (i_)) * hq + h) * dd + (e_)]
#define KX(j_, e_) k[((b * sk + (j_)) * hkv + g) * dd + (e_)]
#define VX(j_, e_) v[((b * sk + (j_)) * hkv + g) * dd + (e_)]
#define OX(i_, e_) o[((b * sq + (i_)) * hq + h) * dd + (e_)]
                for (i = 0; i < sq; i++)
                    for (j = 0; j < sk; j++) {
                        double sc = 0;
                        for (e = 0; e < dd; e++) sc += (double)QX(i, e) * KX(j, e);
                        S[i * sk + j] = (causal && j > i + sk - sq) ? -INFINITY : sc * scale;
                    }
                for (i = 0; i < sq; i++) {
                    double mx = -INFINITY;
                    for (j = 0; j < sk; j++) if (S[i * sk + j] > mx) mx = S[i * sk + j];
                    for (e = 0; e < dd; e++) {
                        double acc = 0, sum = 0;
                        if (mx == -INFINITY) { CHECK(OX(i, e) == 0.0f); continue; }
                        for (j = 0; j < sk; j++) {
                            double w = exp(S[i * sk + j] - mx);
                            sum += w;
                            acc += w * VX(j, e);
                        }
                        CHECKF(fabs(OX(i, e) - acc / sum) <= 1e-6 * (1 + fabs(acc / sum)), "%g vs %g", OX(i, e), acc / sum);
                    }
                }
#undef QX
#undef KX
#undef VX
#undef OX
            }
        free(q); free(k); free(v); free(o); free(S);
    }
}

/* ------------------------------------------------------------------------------------------
   Numerical robustness.
   ------------------------------------------------------------------------------------------ */

static void simple_desc(fa_attn_desc *d, int64_t sq, int64_t sk, int64_t dd, float *q, float *k, float *v,
                        float *o, float *lse)
{
    memset(d, 0, sizeof *d);
    d->batch = 1; d->seqlen_q = sq; d->seqlen_k = sk; d->heads_q = 1; d->head_dim = dd;
    d->q = q; d->k = k; d->v = v; d->o = o; d->lse = lse;
}

TEST(large_logits_do_not_overflow)
{
    /* logits around +-1e4: exp would overflow without the running max */
    int64_t sq = 65, sk = 130, dd = 16, i;
    float *q = (float *)malloc((size_t)(sq * dd) * 4), *k = (float *)malloc((size_t)(sk * dd) * 4);
    float *v = (float *)malloc((size_t)(sk * dd) * 4), *o = (float *)malloc((size_t)(sq * dd) * 4);
    float *r = (float *)malloc((size_t)(sq * dd) * 4), lse[65], rl[65];
    fa_attn_desc d;
    for (i = 0; i < sq * dd; i++) q[i] = (float)(fa_t_normal() * 50.0);
    for (i = 0; i < sk * dd; i++) { k[i] = (float)(fa_t_normal() * 50.0); v[i] = (float)fa_t_normal(); }
    simple_desc(&d, sq, sk, dd, q, k, v, o, lse);
    d.softmax_scale = 1.0f; /* |s| ~ 50*50*4 = 1e4 */
    CHECK(fa_attn_forward(&d) == FA_OK);
    d.o = r; d.lse = rl;
    CHECK(fa_attn_reference(&d) == FA_OK);
    for (i = 0; i < sq * dd; i++) {
        CHECKF(isfinite(o[i]), "o[%lld] = %g", (long long)i, o[i]);
        /* f32 logits of magnitude 1e4 carry absolute error ~1e-3; the weights inherit it */
        CHECKF(fabs(o[i] - r[i]) <= 2e-2 * (1 + fabs(r[i])), "o[%lld] %g vs %g", (long long)i, o[i], r[i]);
    }
    for (i = 0; i < sq; i++) CHECK(isfinite(lse[i]) && fabs(lse[i] - rl[i]) <= 1e-5 * fabs(rl[i]) + 1e-2);
    free(q); free(k); free(v); free(o); free(r);
}

TEST(logits_rising_tile_after_tile_match_reference)
{
    /* Each key's logit a little above the last, so every tile raises a row's maximum: by less
       than the lazy-rescaling slack (the stale reference stays and p grows to ~e^8), by about
       it, and past it, for rows whose q scales the rise differently. */
    int64_t sq = 7, sk = 1000, dd = 16, i, j;
    float *q = (float *)malloc((size_t)(sq * dd) * 4), *k = (float *)malloc((size_t)(sk * dd) * 4);
    float *v = (float *)malloc((size_t)(sk * dd) * 4), *o = (float *)malloc((size_t)(sq * dd) * 4);
    float *r = (float *)malloc((size_t)(sq * dd) * 4), lse[7], rl[7];
    static const float rise[7] = {0.02f, 0.11f, 0.124f, 0.125f, 0.126f, 0.2f, 1.0f}; /* per key: x 64 per tile */
    fa_attn_desc d;
    memset(q, 0, (size_t)(sq * dd) * 4);
    for (i = 0; i < sq; i++) q[i * dd] = rise[i];
    for (j = 0; j < sk; j++)
        for (i = 0; i < dd; i++) {
            k[j * dd + i] = i == 0 ? (float)j + (float)fa_t_uniform(-0.3, 0.3) : (float)fa_t_normal();
            v[j * dd + i] = (float)fa_t_normal();
        }
    simple_desc(&d, sq, sk, dd, q, k, v, o, lse);
    d.softmax_scale = 1.0f;
    CHECK(fa_attn_forward(&d) == FA_OK);
    d.o = r; d.lse = rl;
    CHECK(fa_attn_reference(&d) == FA_OK);
    for (i = 0; i < sq * dd; i++)
        CHECKF(fabs(o[i] - r[i]) <= 1e-5 * (1 + fabs(r[i])), "o[%lld] %.9g vs %.9g", (long long)i, o[i], r[i]);
    for (i = 0; i < sq; i++) CHECKF(fabs(lse[i] - rl[i]) <= 1e-5 * (1 + fabs(rl[i])), "lse[%lld] %.9g vs %.9g", (long long)i, lse[i], rl[i]);
    free(q); free(k); free(v); free(o); free(r);
}

TEST(equal_scores_average_the_values)
{
    /* q = 0 gives equal scores: o must be the plain mean of V, lse = log(sk) */
    int64_t sk = 1000, dd = 7, i, e;
    float q[7] = {0}, *k = (float *)malloc((size_t)(sk * dd) * 4), *v = (float *)malloc((size_t)(sk * dd) * 4);
    float o[7], lse;
    fa_attn_desc d;
    for (i = 0; i < sk * dd; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
    simple_desc(&d, 1, sk, dd, q, k, v, o, &lse);
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (e = 0; e < dd; e++) {
        double m = 0;
        for (i = 0; i < sk; i++) m += v[i * dd + e];
        m /= (double)sk;
        CHECKF(fabs(o[e] - m) < 1e-5, "%g vs %g", o[e], m);
    }
    CHECK(fabs(lse - log(1000.0)) < 1e-5);
    free(k); free(v);
}

TEST(fully_masked_rows_give_zero_and_minus_inf)
{
    /* causal with sq > sk: the first sq - sk queries see no key (bottom-right alignment) */
    int64_t sq = 9, sk = 4, dd = 5, i, e;
    float q[45], k[20], v[20], o[45], lse[9], r[45], rl[9];
    fa_attn_desc d;
    for (i = 0; i < 45; i++) q[i] = (float)fa_t_normal();
    for (i = 0; i < 20; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
    simple_desc(&d, sq, sk, dd, q, k, v, o, lse);
    d.causal = 1;
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (i = 0; i < sq - sk; i++) {
        for (e = 0; e < dd; e++) CHECK(o[i * dd + e] == 0.0f && !signbit(o[i * dd + e]));
        CHECK(isinf(lse[i]) && lse[i] < 0);
    }
    for (; i < sq; i++) CHECK(isfinite(lse[i]));
    d.o = r; d.lse = rl;
    CHECK(fa_attn_reference(&d) == FA_OK);
    for (i = 0; i < sq - sk; i++) CHECK(isinf(rl[i]) && r[i * dd] == 0.0f);
    /* a window that excludes everything */
    d.o = o; d.lse = lse; d.causal = 0; d.use_window = 1; d.window_left = -1; d.window_right = 0;
    d.seqlen_q = 4; d.seqlen_k = 4;
    CHECK(fa_attn_forward(&d) == FA_OK);
    d.window_left = 0; d.window_right = -1; /* each query sees keys >= its diagonal */
    CHECK(fa_attn_forward(&d) == FA_OK);
    CHECK(isfinite(lse[0]) && isfinite(lse[3]));
}

TEST(empty_and_single_key_sequences)
{
    float q[8], k[8], v[8], o[8], lse[2];
    fa_attn_desc d;
    int i;
    for (i = 0; i < 8; i++) { q[i] = (float)fa_t_normal(); k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
    /* seqlen_k = 0: no key at all */
    simple_desc(&d, 2, 0, 4, q, k, v, o, lse);
    memset(o, 0x7f, sizeof o);
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (i = 0; i < 8; i++) CHECK(o[i] == 0.0f);
    CHECK(isinf(lse[0]) && lse[0] < 0 && isinf(lse[1]));
    /* seqlen_k = 1: the only key gets weight 1, o = v exactly, lse = its logit */
    d.seqlen_k = 1;
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (i = 0; i < 4; i++) CHECK(o[i] == v[i] && o[4 + i] == v[i]);
    {
        double s = 0;
        for (i = 0; i < 4; i++) s += (double)q[i] * k[i];
        CHECK(fabs(lse[0] - s * 0.5) < 1e-5 * (1 + fabs(s)));
    }
}

TEST(non_finite_inputs_stay_in_their_rows)
{
    int64_t sq = 6, sk = 70, dd = 4, i, e;
    float *q = (float *)malloc((size_t)(sq * dd) * 4), *k = (float *)malloc((size_t)(sk * dd) * 4);
    float *v = (float *)malloc((size_t)(sk * dd) * 4), *o = (float *)malloc((size_t)(sq * dd) * 4), lse[6];
    float *r = (float *)malloc((size_t)(sq * dd) * 4), rl[6];
    fa_attn_desc d;
    for (i = 0; i < sq * dd; i++) q[i] = (float)fa_t_normal();
    for (i = 0; i < sk * dd; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
    simple_desc(&d, sq, sk, dd, q, k, v, o, lse);
    /* NaN in query row 2: only row 2 is NaN */
    q[2 * dd + 1] = NAN;
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (i = 0; i < sq; i++)
        for (e = 0; e < dd; e++) CHECKF((i == 2) == (isnan(o[i * dd + e]) != 0), "row %lld", (long long)i);
    CHECK(isnan(lse[2]) && !isnan(lse[1]));
    d.o = r; d.lse = rl;
    CHECK(fa_attn_reference(&d) == FA_OK);
    CHECK(isnan(r[2 * dd]) && isnan(rl[2]) && !isnan(r[0]));
    q[2 * dd + 1] = 0.5f;
    /* NaN in key 69, causal with sk > sq: queries 0..sq-2 do not see key 69 (their diagonal is
       64..68), the last query does */
    d.o = o; d.lse = lse; d.causal = 1;
    k[69 * dd] = NAN;
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (i = 0; i < sq - 1; i++) CHECKF(!isnan(o[i * dd]) && !isnan(lse[i]), "row %lld", (long long)i);
    CHECK(isnan(o[(sq - 1) * dd]) && isnan(lse[sq - 1]));
    k[69 * dd] = 0.25f;
    /* Inf in V[3]: rows that give key 3 positive weight come out non-finite, the rest finite */
    d.causal = 0;
    v[3 * dd] = INFINITY;
    CHECK(fa_attn_forward(&d) == FA_OK);
    for (i = 0; i < sq; i++) CHECK(!isfinite(o[i * dd]) && isfinite(o[i * dd + 1]));
    v[3 * dd] = 1.0f;
    /* +Inf logit (Inf in K): no crash, that row's output is NaN or Inf, others untouched */
    k[0] = INFINITY;
    CHECK(fa_attn_forward(&d) == FA_OK);
    d.o = r; d.lse = rl;
    CHECK(fa_attn_reference(&d) == FA_OK);
    for (i = 0; i < sq * dd; i++) CHECK(isnan(o[i]) == isnan(r[i]));
    free(q); free(k); free(v); free(o); free(r);
}

/* ------------------------------------------------------------------------------------------
   Merge.
   ------------------------------------------------------------------------------------------ */

TEST(merge_of_random_kv_splits_equals_the_unsplit_result)
{
    int iter;
    for (iter = 0; iter < 40; iter++) {
        int64_t b = 1 + fa_t_randint(2), sq = 1 + fa_t_randint(20), sk = 1 + fa_t_randint(300);
        int64_t hq = 1 + fa_t_randint(4), dd = 1 + fa_t_randint(70), ns = 1 + fa_t_randint(6);
        int64_t i, s, *cut = (int64_t *)malloc((size_t)(ns + 1) * sizeof(int64_t));
        int64_t nq = b * sq * hq * dd, nk = b * sk * hq * dd;
        float *q = (float *)malloc((size_t)nq * 4), *k = (float *)malloc((size_t)nk * 4), *v = (float *)malloc((size_t)nk * 4);
        float *o = (float *)malloc((size_t)nq * 4), *lse = (float *)malloc((size_t)(b * hq * sq) * 4);
        float *parts = (float *)malloc((size_t)(ns * nq) * 4), *plse = (float *)malloc((size_t)(ns * b * hq * sq) * 4);
        float *mo = (float *)malloc((size_t)nq * 4), *mlse = (float *)malloc((size_t)(b * hq * sq) * 4);
        fa_attn_desc d;
        fa_merge_desc m;
        for (i = 0; i < nq; i++) q[i] = (float)fa_t_normal();
        for (i = 0; i < nk; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
        /* random cut points, empty chunks allowed */
        cut[0] = 0; cut[ns] = sk;
        for (s = 1; s < ns; s++) cut[s] = fa_t_randint(sk + 1);
        for (s = 1; s < ns; s++) { /* sort */
            int64_t t = cut[s], j = s;
            while (j > 1 && cut[j - 1] > t) { cut[j] = cut[j - 1]; j--; }
            cut[j] = t;
        }
        memset(&d, 0, sizeof d);
        d.batch = b; d.seqlen_q = sq; d.seqlen_k = sk; d.heads_q = hq; d.head_dim = dd;
        d.q = q; d.k = k; d.v = v; d.o = o; d.lse = lse;
        CHECK(fa_attn_forward(&d) == FA_OK);
        for (s = 0; s < ns; s++) {
            fa_attn_desc c = d;
            c.seqlen_k = cut[s + 1] - cut[s];
            c.k = k + cut[s] * hq * dd;
            c.v = v + cut[s] * hq * dd;
            c.k_stride.batch = c.v_stride.batch = sk * hq * dd; /* chunk of the full K/V */
            c.o = parts + s * nq;
            c.lse = plse + s * b * hq * sq;
            CHECK(fa_attn_forward(&c) == FA_OK);
        }
        memset(&m, 0, sizeof m);
        m.num_splits = ns; m.batch = b; m.seqlen = sq; m.heads = hq; m.head_dim_v = dd;
        m.o_parts = parts; m.lse_parts = plse; m.o = mo; m.lse = mlse;
        CHECK(fa_attn_merge(&m) == FA_OK);
        for (i = 0; i < nq; i++) CHECKF(fabs(mo[i] - o[i]) <= 2e-5 * (1 + fabs(o[i])), "%g vs %g (ns=%lld)", mo[i], o[i], (long long)ns);
        for (i = 0; i < b * hq * sq; i++) CHECK(fabs(mlse[i] - lse[i]) <= 1e-5 * (1 + fabs(lse[i])));
        free(cut); free(q); free(k); free(v); free(o); free(lse); free(parts); free(plse); free(mo); free(mlse);
    }
}

TEST(merge_of_empty_parts_is_empty_and_nan_propagates)
{
    float parts[2 * 3] = {1, 2, 3, 4, 5, 6}, plse[2] = {-INFINITY, -INFINITY}, o[3], lse;
    fa_merge_desc m;
    memset(&m, 0, sizeof m);
    m.num_splits = 2; m.batch = 1; m.seqlen = 1; m.heads = 1; m.head_dim_v = 3;
    m.o_parts = parts; m.lse_parts = plse; m.o = o; m.lse = &lse;
    CHECK(fa_attn_merge(&m) == FA_OK);
    CHECK(o[0] == 0 && o[1] == 0 && o[2] == 0 && isinf(lse) && lse < 0);
    plse[1] = 0.5f; /* one empty part drops out, even if its o is garbage */
    parts[0] = NAN;
    CHECK(fa_attn_merge(&m) == FA_OK);
    CHECK(o[0] == 4 && o[1] == 5 && o[2] == 6 && fabs(lse - 0.5f) < 1e-7);
    plse[0] = NAN;
    CHECK(fa_attn_merge(&m) == FA_OK);
    CHECK(isnan(o[0]) && isnan(lse));
    /* bad input */
    CHECK(fa_attn_merge(NULL) == FA_ERR_NULL);
    m.num_splits = 0;
    CHECK(fa_attn_merge(&m) == FA_ERR_INVALID);
    m.num_splits = 2; m.o = NULL;
    CHECK(fa_attn_merge(&m) == FA_ERR_NULL);
    m.o = o; m.o_type = FA_E4M3;
    CHECK(fa_attn_merge(&m) == FA_ERR_DTYPE);
    m.o_type = FA_F32; m.heads = INT64_MAX / 2;
    CHECK(fa_attn_merge(&m) == FA_ERR_OVERFLOW);
}

/* ------------------------------------------------------------------------------------------
   Validation: every check has its own error and message, and outputs stay untouched.
   ------------------------------------------------------------------------------------------ */

static float vq[64], vk[64], vv[64], vo[64];
static int32_t vcu[4], vbt[8], vused[4];

static void valid_desc(fa_attn_desc *d)
{
    memset(d, 0, sizeof *d);
    d->batch = 2; d->seqlen_q = 2; d->seqlen_k = 2; d->heads_q = 2; d->heads_kv = 1; d->head_dim = 4;
    d->q = vq; d->k = vk; d->v = vv; d->o = vo;
}

#define EXPECT_ERR(mutate, code, needle)                                                     \
    do {                                                                                     \
        fa_attn_desc d_;                                                                     \
        fa_status s_;                                                                        \
        valid_desc(&d_);                                                                     \
        mutate;                                                                              \
        memset(vo, 0x5a, sizeof vo);                                                         \
        fa_clear_error();                                                                    \
        s_ = fa_attn_forward(&d_);                                                           \
        CHECKF(s_ == (code), "%s: got %s (%s), want %s", #mutate, fa_status_str(s_),         \
               fa_last_error(), #code);                                                      \
        CHECKF(strstr(fa_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'",       \
               #mutate, fa_last_error(), needle);                                            \
        CHECKF(((unsigned char *)vo)[0] == 0x5a && ((unsigned char *)vo)[255] == 0x5a,       \
               "%s: output touched", #mutate);                                               \
        CHECK(fa_attn_reference(&d_) == (code));                                             \
        CHECK(fa_attn_validate(&d_) == (code));                                              \
    } while (0)

TEST(every_validation_error_is_specific)
{
    fa_attn_desc ok;
    valid_desc(&ok);
    CHECK(fa_attn_validate(&ok) == FA_OK);
    CHECK(fa_attn_forward(NULL) == FA_ERR_NULL && strstr(fa_last_error(), "desc"));
    EXPECT_ERR(d_.batch = 0, FA_ERR_INVALID, "batch");
    EXPECT_ERR(d_.batch = -3, FA_ERR_INVALID, "batch");
    EXPECT_ERR(d_.seqlen_q = 0, FA_ERR_INVALID, "seqlen_q");
    EXPECT_ERR(d_.seqlen_q = -1, FA_ERR_INVALID, "seqlen_q");
    EXPECT_ERR(d_.seqlen_k = -1, FA_ERR_INVALID, "seqlen_k");
    EXPECT_ERR(d_.heads_q = 0, FA_ERR_INVALID, "heads_q");
    EXPECT_ERR(d_.heads_kv = -1, FA_ERR_INVALID, "heads_kv");
    EXPECT_ERR((d_.heads_q = 12, d_.heads_kv = 5), FA_ERR_SHAPE, "heads_q (12) is not a multiple of heads_kv (5)");
    EXPECT_ERR(d_.head_dim = 0, FA_ERR_SHAPE, "head_dim");
    EXPECT_ERR(d_.head_dim = 257, FA_ERR_SHAPE, "head_dim");
    EXPECT_ERR(d_.head_dim_v = 300, FA_ERR_SHAPE, "head_dim_v");
    EXPECT_ERR(d_.head_dim_v = -2, FA_ERR_SHAPE, "head_dim_v");
    EXPECT_ERR(d_.q = NULL, FA_ERR_NULL, "q is NULL");
    EXPECT_ERR(d_.k = NULL, FA_ERR_NULL, "k is NULL");
    EXPECT_ERR(d_.v = NULL, FA_ERR_NULL, "v is NULL");
    EXPECT_ERR(d_.o = NULL, FA_ERR_NULL, "o is NULL");
    EXPECT_ERR(d_.q_type = FA_E4M3, FA_ERR_DTYPE, "q_type");
    EXPECT_ERR(d_.o_type = FA_E5M2, FA_ERR_DTYPE, "o_type");
    EXPECT_ERR(d_.k_type = (fa_dtype)42, FA_ERR_DTYPE, "k_type");
    EXPECT_ERR(d_.v_type = (fa_dtype)-1, FA_ERR_DTYPE, "v_type");
    EXPECT_ERR(d_.softmax_scale = NAN, FA_ERR_INVALID, "softmax_scale");
    EXPECT_ERR(d_.softmax_scale = INFINITY, FA_ERR_INVALID, "softmax_scale");
    EXPECT_ERR(d_.softcap = -1.0f, FA_ERR_INVALID, "softcap");
    EXPECT_ERR(d_.k_scale = NAN, FA_ERR_INVALID, "k_scale");
    {
        static float bad_hs[1] = {INFINITY};
        EXPECT_ERR(d_.k_head_scale = bad_hs, FA_ERR_INVALID, "k_head_scale");
        EXPECT_ERR(d_.v_head_scale = bad_hs, FA_ERR_INVALID, "v_head_scale");
    }
    {
        static float slopes[4] = {0.1f, NAN, 0.2f, 0.3f};
        EXPECT_ERR(d_.alibi_slopes = slopes, FA_ERR_INVALID, "alibi slope");
        EXPECT_ERR((d_.alibi_slopes = slopes, d_.alibi_batch_stride = -2), FA_ERR_INVALID, "alibi_batch_stride");
    }
    EXPECT_ERR(d_.num_splits = -1, FA_ERR_INVALID, "num_splits");
    memset(vq, 0, sizeof vq);
    EXPECT_ERR(d_.mask = (const fa_mask *)vq, FA_ERR_INVALID, "fa_mask"); /* not a mask */
    {
        fa_mask *small = NULL;
        fa_mask_desc g;
        memset(&g, 0, sizeof g);
        g.seqlen_q = 1; g.seqlen_k = 1;
        CHECK(fa_mask_causal(&small, &g) == FA_OK);
        EXPECT_ERR(d_.mask = small, FA_ERR_SHAPE, "mask"); /* covers fewer queries than the problem */
        fa_mask_destroy(small);
    }
    /* varlen */
    vcu[0] = 0; vcu[1] = 2; vcu[2] = 1;
    EXPECT_ERR(d_.cu_seqlens_q = vcu, FA_ERR_RANGE, "not monotonic");
    vcu[0] = -1; vcu[1] = 0; vcu[2] = 1;
    EXPECT_ERR(d_.cu_seqlens_q = vcu, FA_ERR_RANGE, "negative");
    vcu[0] = 0; vcu[1] = 1; vcu[2] = 4;
    EXPECT_ERR(d_.cu_seqlens_q = vcu, FA_ERR_RANGE, "maximum");
    EXPECT_ERR(d_.cu_seqlens_k = vcu, FA_ERR_RANGE, "cu_seqlens_k");
    vused[0] = 1; vused[1] = 3;
    EXPECT_ERR(d_.seqused_k = vused, FA_ERR_RANGE, "seqused_k[1]");
    vused[1] = -1;
    EXPECT_ERR(d_.seqused_k = vused, FA_ERR_RANGE, "seqused_k[1]");
    /* paged */
    vbt[0] = 0; vbt[1] = 1; vbt[2] = 2; vbt[3] = 3;
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 0, d_.num_pages = 4), FA_ERR_INVALID, "page_size");
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 1, d_.num_pages = 0), FA_ERR_INVALID, "num_pages");
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 1, d_.num_pages = 3), FA_ERR_RANGE, "block_table[1][1] = 3");
    vbt[2] = -1;
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 1, d_.num_pages = 4), FA_ERR_RANGE, "block_table[1][0]");
    vbt[2] = 2;
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 1, d_.num_pages = 4, d_.block_table_stride = 1), FA_ERR_SHAPE, "block_table_stride");
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 1, d_.num_pages = 4, d_.block_table_stride = -1), FA_ERR_INVALID, "block_table_stride");
    EXPECT_ERR((d_.block_table = vbt, d_.page_size = 1, d_.num_pages = 4, d_.cu_seqlens_k = vcu), FA_ERR_INVALID, "cannot be combined");
    /* overflow of sizes and offsets */
    EXPECT_ERR((d_.seqlen_q = INT64_MAX / 4), FA_ERR_OVERFLOW, "overflow");
    EXPECT_ERR((d_.heads_q = INT64_MAX / 2, d_.heads_kv = 1), FA_ERR_OVERFLOW, "overflow");
    EXPECT_ERR((d_.q_stride.batch = INT64_MAX / 2), FA_ERR_OVERFLOW, "q view");
    EXPECT_ERR((d_.k_stride.seq = INT64_MIN / 2), FA_ERR_OVERFLOW, "k view");
    EXPECT_ERR((d_.v_stride.seq = INT64_MAX / 2 + 1), FA_ERR_OVERFLOW, "v view");
    EXPECT_ERR((d_.o_stride.seq = INT64_MAX / 3), FA_ERR_OVERFLOW, "o view");
    /* workspace */
    {
        void *ws = fa_aligned_alloc(4096, 64);
        EXPECT_ERR((d_.workspace = ws, d_.workspace_size = 4096), FA_ERR_INVALID, "workspace_size");
        fa_aligned_free(ws);
    }
}

TEST(workspace_query_caller_workspace_and_memory_estimate)
{
    fa_attn_desc d;
    size_t need = 0, need_big = 0;
    unsigned char *raw;
    float o2[64];
    fa_attn_memory_info mi;
    int i;
    for (i = 0; i < 64; i++) { vq[i] = (float)fa_t_normal(); vk[i] = (float)fa_t_normal(); vv[i] = (float)fa_t_normal(); }
    valid_desc(&d);
    CHECK(fa_attn_workspace_size(&d, &need) == FA_OK && need > 0);
    CHECK(fa_attn_workspace_size(&d, NULL) == FA_ERR_NULL);
    CHECK(fa_attn_workspace_size(NULL, &need) == FA_ERR_NULL);
    /* O(tile): the scratch does not grow with the sequence length */
    d.seqlen_q = d.seqlen_k = 1000000;
    CHECK(fa_attn_workspace_size(&d, &need_big) == FA_OK && need_big == need);
    CHECK(fa_attn_memory(&d, &mi) == FA_OK);
    CHECK(mi.flash_bytes == need);
    CHECK(mi.naive_bytes == (size_t)2 * 2 * 1000000 * 1000000 * 4);
    CHECK(mi.io_bytes == (size_t)2 * 1000000 * (2 * 4 + 4 + 4 + 2 * 4) * 4);
    CHECK(fa_attn_memory(&d, NULL) == FA_ERR_NULL);
    d.seqlen_q = d.seqlen_k = 2;
    /* a caller workspace gives bit-identical results; a misaligned one is refused */
    raw = (unsigned char *)malloc(need + 64);
    d.workspace = raw + ((64 - ((uintptr_t)raw & 63)) & 63);
    d.workspace_size = need;
    CHECK(fa_attn_forward(&d) == FA_OK);
    memcpy(o2, vo, sizeof o2);
    d.workspace = NULL;
    CHECK(fa_attn_forward(&d) == FA_OK);
    CHECK(memcmp(o2, vo, sizeof(float) * 16) == 0);
    d.workspace = raw + ((64 - ((uintptr_t)raw & 63)) & 63) + 4;
    d.workspace_size = need;
    CHECK(fa_attn_forward(&d) == FA_ERR_ALIGN);
    free(raw);
}

TEST(allocation_failure_returns_nomem_and_leaks_nothing)
{
    fa_attn_desc d;
    long live0, k, calls;
    fa_status st;
    valid_desc(&d);
    /* count the allocations of one call, then fail each of them in turn */
    for (k = 0; k < 2; k++) {
        int reference = (int)k;
        long c0 = t_alloc_calls;
        st = reference ? fa_attn_reference(&d) : fa_attn_forward(&d);
        CHECK(st == FA_OK);
        calls = t_alloc_calls - c0;
        CHECK(calls >= 1);
        {
            long f;
            for (f = 0; f < calls; f++) {
                live0 = t_live_allocs;
                t_fail_at = t_alloc_calls + f;
                memset(vo, 0x5a, sizeof vo);
                st = reference ? fa_attn_reference(&d) : fa_attn_forward(&d);
                t_fail_at = -1;
                CHECKF(st == FA_ERR_NOMEM, "%s: fail alloc %ld -> %s", reference ? "reference" : "forward", f, fa_status_str(st));
                CHECK(t_live_allocs == live0);
                CHECK(((unsigned char *)vo)[0] == 0x5a);
            }
        }
    }
}

/* The vector exp of each kernel path: <= 2 ulp from the true value on [-87.3, 88.7], 0 below
   ln(FLT_MIN), +inf above ln(FLT_MAX), NaN for NaN; the sum it returns matches the elements. */
static void check_exp_kernel(const fa__attn_kernels *K)
{
    enum { N = 1000 };
    float x[N], y[N];
    int i, rep;
    double worst = 0;
    for (rep = 0; rep < 200; rep++) {
        double sum = 0;
        float got;
        for (i = 0; i < N; i++) x[i] = rep == 0 ? (float)(-87.3 + 167.3 * i / (N - 1)) : (float)fa_t_uniform(-87.3, 80.0);
        memcpy(y, x, sizeof x);
        got = K->exp_sum(y, N - rep % 17, 0.0f); /* odd lengths exercise the tails */
        for (i = 0; i < N - rep % 17; i++) {
            double t = exp((double)x[i]), ulp = ldexp(1.0, ilogb(t) - 23);
            double e = fabs((double)y[i] - t) / ulp;
            sum += y[i];
            if (e > worst) worst = e;
        }
        CHECKF(fabs(got - sum) <= 1e-5 * sum, "%s: sum %g vs %g", K->name, got, sum);
    }
    CHECKF(worst <= 2.0, "%s: exp error %.2f ulp", K->name, worst);
    x[0] = -87.5f; x[1] = -INFINITY; x[2] = NAN; x[3] = 0.0f; x[4] = -1e30f; x[5] = 88.7f; x[6] = 89.0f;
    K->exp_sum(x, 7, 0.0f);
    CHECK(x[0] == 0.0f && x[1] == 0.0f && isnan(x[2]) && x[3] == 1.0f && x[4] == 0.0f);
    CHECKF(fabs(x[5] - exp((double)88.7f)) <= 2 * ldexp(1.0, 127 - 23) && isinf(x[6]), "%s: %g %g", K->name, x[5], x[6]);
    printf("     %s exp: worst %.2f ulp\n", K->name, worst);
}

/* Every path's row loader equals the scalar decode for every FP8 code (NaN codes: NaN), every
   f16/bf16 pattern sampled, with and without a scale, and odd lengths for the tails. */
static void check_load_kernel(const fa__attn_kernels *K)
{
    static const fa_dtype ts[] = {FA_E4M3, FA_E5M2, FA_F16, FA_BF16, FA_F32};
    unsigned char src[4 * 300];
    float got[300], want[300];
    int ti, i, n, rep;
    for (ti = 0; ti < 5; ti++)
        for (rep = 0; rep < 40; rep++) {
            size_t es = fa_dtype_size(ts[ti]);
            float mul = rep % 2 ? (float)fa_t_uniform(0.1, 3.0) : 1.0f;
            n = rep < 2 ? 256 : 1 + (int)fa_t_randint(299);
            for (i = 0; i < n * (int)es; i++) src[i] = (unsigned char)(rep < 2 && es == 1 ? (uint64_t)i : fa_t_rand());
            if (ts[ti] == FA_F32) /* finite f32 patterns */
                for (i = 0; i < n; i++) { float f = (float)fa_t_normal(); memcpy(src + 4 * i, &f, 4); }
            K->load(got, src, ts[ti], n, mul);
            fa__load_row(want, src, ts[ti], n, mul);
            for (i = 0; i < n; i++)
                CHECKF(isnan(want[i]) ? isnan(got[i]) : memcmp(&got[i], &want[i], 4) == 0, "%s load %s [%d] = %g, want %g",
                       K->name, fa_dtype_name(ts[ti]), i, got[i], want[i]);
        }
}

/* Runs check on every kernel table this machine can execute. */
static void on_every_kernel_table(void (*check)(const fa__attn_kernels *K))
{
    check(&fa__kernels_scalar);
#if defined(FA__X86)
    if ((fa_cpu_features() & (FA_CPU_AVX2 | FA_CPU_FMA | FA_CPU_F16C)) == (FA_CPU_AVX2 | FA_CPU_FMA | FA_CPU_F16C))
        check(&fa__kernels_avx2);
    if ((fa_cpu_features() & FA_CPU_AVX512F) && (fa_cpu_features() & FA_CPU_AVX512BW)) check(&fa__kernels_avx512);
#elif defined(FA__NEON) && defined(__aarch64__)
    if (fa_cpu_features() & FA_CPU_NEON) check(&fa__kernels_neon);
#endif
}

TEST(row_loads_match_the_scalar_decode_on_every_path)
{
    on_every_kernel_table(check_load_kernel);
}

/* A kernel table's fused softmax_row gives, bit for bit, what scale_max then exp_sum give: rows of
   every length 1..64, scales, running maxima below, above and equal to the row's, -inf and NaN
   scores. The scores past the row's end (NaN, +inf or huge here) are neither read into it nor
   written: the tile keeps other rows' keys there. */
static void check_softmax_row_kernel(const fa__attn_kernels *K)
{
    float a[64], b[64], c[64], sa, sb, ma, mb;
    int n, rep, i, bad = 0, past = 0;
    if (!K->softmax_row) return;
    for (rep = 0; rep < 400; rep++)
        for (n = 1; n <= 64; n++) {
            float scale = (float)fa_t_uniform(0.05, 2.0), m_old, poison = rep % 3 == 0 ? NAN : rep % 3 == 1 ? INFINITY : 3e38f;
            for (i = 0; i < 64; i++) a[i] = i < n ? (float)fa_t_normal() * 4.0f : poison;
            if (rep % 7 == 1) a[fa_t_randint(n)] = -INFINITY;
            if (rep % 11 == 2) a[fa_t_randint(n)] = NAN;
            if (rep % 13 == 3) for (i = 0; i < n; i++) a[i] = -INFINITY;
            m_old = rep % 4 == 0 ? -INFINITY : rep % 4 == 1 ? (float)fa_t_normal() * 8.0f : rep % 4 == 2 ? 1e30f : a[0] * scale;
            memcpy(b, a, sizeof a);
            memcpy(c, a, sizeof a);
            ma = K->softmax_row(a, n, scale, m_old, &sa);
            mb = K->scale_max(b, n, scale);
            mb = fa__softmax_ref(m_old, mb); /* as the tile does (lazy rescaling) */
            sb = K->exp_sum(b, n, mb);
            if (memcmp(&ma, &mb, 4) || memcmp(&sa, &sb, 4) || memcmp(a, b, (size_t)n * 4)) bad++;
            for (i = n; i < 64; i++)
                if (memcmp(&a[i], &poison, 4) || memcmp(&b[i], &poison, 4)) past++;
            if (m_old == -INFINITY) { /* then the reference is the row's own max: the scores past
                                         its end (larger, or NaN) must not have come in */
                float mx = -INFINITY;
                int nan = 0;
                for (i = 0; i < n; i++) {
                    float x = c[i] * scale;
                    nan |= x != x;
                    mx = x > mx ? x : mx;
                }
                if (nan ? ma == ma : ma != mx) past++;
                if (!nan && mx > -INFINITY && !(sa >= 1.0f)) past++; /* the max's own exp(0) = 1 */
            }
        }
    CHECKF(bad == 0, "%s: %d rows differ", K->name, bad);
    CHECKF(past == 0, "%s: %d rows read or wrote scores past their end", K->name, past);
}

TEST(fused_softmax_row_matches_scale_max_then_exp_sum)
{
    on_every_kernel_table(check_softmax_row_kernel);
}

TEST(vector_exp_is_accurate_on_every_path)
{
    on_every_kernel_table(check_exp_kernel);
}

/* Decode with few units on a pool: the KV range is split and merged (FlashDecoding), and the
   result equals the reference whatever the number of splits. */
/* Decode units take several kv heads (all that fit in FA__ROWS = 128 rows, dividing heads_kv): shapes past
   64 query heads, head counts with awkward divisors, MHA, bf16 token-major K/V, two sequences
   of different cached lengths, with and without the pool. */
TEST(decode_units_of_several_kv_heads_match_reference)
{
    static const int64_t shapes[][2] = {{128, 8}, {80, 5}, {96, 3}, {128, 128}, {48, 6}, {64, 2}};
    int si, use_pool;
    for (si = 0; si < 6; si++) {
        int64_t hq = shapes[si][0], hkv = shapes[si][1], dd = 128, sk = 200 + fa_t_randint(300), i, n;
        int32_t used[2];
        float *q = (float *)malloc((size_t)(2 * hq * dd) * 4), *o = (float *)malloc((size_t)(2 * hq * dd) * 4);
        float *r = (float *)malloc((size_t)(2 * hq * dd) * 4);
        uint16_t *k = (uint16_t *)malloc((size_t)(2 * sk * hkv * dd) * 2), *v = (uint16_t *)malloc((size_t)(2 * sk * hkv * dd) * 2);
        fa_attn_desc d;
        for (i = 0; i < 2 * hq * dd; i++) q[i] = (float)fa_t_normal();
        for (i = 0; i < 2 * sk * hkv * dd; i++) {
            k[i] = fa_f32_to_bf16((float)fa_t_normal());
            v[i] = fa_f32_to_bf16((float)fa_t_normal());
        }
        used[0] = (int32_t)sk;
        used[1] = (int32_t)(1 + fa_t_randint((int)sk));
        memset(&d, 0, sizeof d);
        d.batch = 2; d.seqlen_q = 1; d.seqlen_k = sk; d.heads_q = hq; d.heads_kv = hkv; d.head_dim = dd;
        d.q = q; d.k = k; d.v = v; d.k_type = d.v_type = FA_BF16; d.o = r; d.causal = 1; d.seqused_k = used;
        CHECK(fa_attn_reference(&d) == FA_OK);
        d.o = o;
        for (use_pool = 0; use_pool < 2; use_pool++) {
            double worst = 0;
            d.pool = use_pool ? test_pool : NULL;
            for (i = 0; i < 2 * hq * dd; i++) o[i] = NAN;
            CHECK(fa_attn_forward(&d) == FA_OK);
            for (n = 0; n < 2 * hq * dd; n++) {
                double err = fabs(o[n] - r[n]);
                if (!(err <= 1e30)) err = INFINITY; /* NaN: unwritten or wrong */
                if (err > worst) worst = err;
            }
            CHECKF(worst <= 1e-5, "hq %lld hkv %lld pool %d: max error %g", (long long)hq, (long long)hkv, use_pool, worst);
        }
        free(q); free(o); free(r); free(k); free(v);
    }
}

/* fa_attn_forward on dispatch path `path` (the last one on the pool, with a random split
   count), o's n elements first set to a sentinel */
static fa_status forward_on_path(fa_attn_desc *d, int path, float *o, int64_t n)
{
    fa_status st;
    int64_t i;
    for (i = 0; i < n; i++) o[i] = -12345.0f;
    fa_cpu_features_override(paths[path].mask);
    d->pool = path == NPATHS - 1 ? test_pool : NULL;
    d->num_splits = path == NPATHS - 1 ? fa_t_randint(4) : 0;
    st = fa_attn_forward(d);
    fa_cpu_features_override(~0u);
    return st;
}

/* bf16 queries against bf16 keys take the vdpbf16ps decode kernel where the CPU has AVX512_BF16
   (head dims in blocks of 128, the last block 8-64 pairs, masked). Every head dim in 16s up to
   256, GQA groups 1-8, key counts around the 16-key and 64-key blocks, K scales, V of each float
   type, a NaN key that must poison exactly its kv head's rows; on every dispatch path, alone and
   on the pool. */
TEST(bf16_query_decode_matches_reference_for_every_head_dim_and_group)
{
    static const int64_t dims[] = {16, 32, 48, 64, 80, 112, 128, 144, 192, 256};
    static const int64_t groups[] = {1, 2, 3, 4, 8};
    static const int64_t lens[] = {1, 7, 16, 63, 65, 130};
    static const fa_dtype vts[] = {FA_BF16, FA_F16, FA_F32};
    int di, path, cases = 0;
    for (di = 0; di < 10; di++) {
        int64_t dd = dims[di], g = groups[fa_t_randint(5)], hkv = 1 + fa_t_randint(3), hq = g * hkv;
        int64_t sk = fa_t_randint(3) ? lens[fa_t_randint(6)] : 200 + fa_t_randint(400), i, n;
        fa_dtype vt = vts[fa_t_randint(3)];
        int nan_key = fa_t_randint(3) == 0 && sk > 3;
        size_t ves = fa_dtype_size(vt);
        uint16_t *q = (uint16_t *)malloc((size_t)(hq * dd) * 2), *k = (uint16_t *)malloc((size_t)(sk * hkv * dd) * 2);
        unsigned char *v = (unsigned char *)malloc((size_t)(sk * hkv * dd) * ves);
        float *o = (float *)malloc((size_t)(hq * dd) * 4), *r = (float *)malloc((size_t)(hq * dd) * 4);
        fa_attn_desc d;
        for (i = 0; i < hq * dd; i++) q[i] = fa_f32_to_bf16((float)fa_t_normal());
        for (i = 0; i < sk * hkv * dd; i++) {
            float x = (float)fa_t_normal();
            k[i] = fa_f32_to_bf16((float)fa_t_normal());
            if (vt == FA_BF16) ((uint16_t *)v)[i] = fa_f32_to_bf16(x);
            else if (vt == FA_F16) ((uint16_t *)v)[i] = fa_f32_to_f16(x);
            else ((float *)v)[i] = x;
        }
        if (nan_key) k[(3 * hkv + 0) * dd + dd - 1] = 0x7fc0; /* key 3, kv head 0, last dim */
        memset(&d, 0, sizeof d);
        d.batch = 1; d.seqlen_q = 1; d.seqlen_k = sk; d.heads_q = hq; d.heads_kv = hkv; d.head_dim = dd;
        d.q = q; d.k = k; d.v = v; d.q_type = d.k_type = FA_BF16; d.v_type = vt; d.o = r; d.causal = 1;
        if (fa_t_randint(2)) d.k_scale = (float)fa_t_uniform(0.25, 2.0);
        CHECK(fa_attn_reference(&d) == FA_OK);
        d.o = o;
        for (path = 0; path < NPATHS; path++) {
            double worst = 0;
            fa_status st = forward_on_path(&d, path, o, hq * dd);
            CHECKF(st == FA_OK, "%s: %s", paths[path].name, fa_last_error());
            for (n = 0; n < hq * dd; n++) {
                /* a NaN key reaches every query head of kv head 0 and no other */
                int poisoned = nan_key && n / dd < g;
                double err = poisoned ? (isnan(o[n]) ? 0 : INFINITY) : fabs((double)o[n] - r[n]);
                if (!(err <= 1e30)) err = INFINITY;
                if (err > worst) worst = err;
            }
            CHECKF(worst <= 1e-5, "%s: d %lld, %lld/%lld heads, %lld keys, v %s, nan %d: max error %g", paths[path].name,
                   (long long)dd, (long long)hq, (long long)hkv, (long long)sk, fa_dtype_name(vt), nan_key, worst);
            cases++;
        }
        free(q); free(k); free(v); free(o); free(r);
    }
    CHECK(cases == 10 * NPATHS);
}

/* An FP8 KV cache in decode (the kernels read E4M3 / E5M2 rows in place, decoding through IEEE
   halves): against the reference on every dispatch path, alone and on the pool, head dims
   multiples of 16 (in place) and not (staged), GQA groups 1-8; NaN codes (E4M3 0x7f / 0xff,
   E5M2 0x7d-0x7f / 0xfd-0xff) in a K row must poison exactly its kv head's rows, and in a V row
   exactly that dim of them. */
TEST(fp8_kv_decode_matches_reference_and_nan_codes_stay_in_their_heads)
{
    static const int64_t dims[] = {16, 32, 64, 72, 96, 128, 200, 256};
    static const int64_t groups[] = {1, 2, 4, 8};
    static const uint8_t nans[2][4] = {{0x7f, 0xff, 0x7f, 0xff}, {0x7d, 0x7e, 0xfe, 0xff}};
    int di, path, cases = 0;
    for (di = 0; di < 32; di++) {
        int64_t dd = dims[di % 8], g = groups[fa_t_randint(4)], hkv = 2 + fa_t_randint(2), hq = g * hkv;
        int64_t sk = fa_t_randint(2) ? 1 + fa_t_randint(140) : 200 + fa_t_randint(500), i, n;
        int e4 = di % 2 == 0, knan = sk > 3 && fa_t_randint(2), vnan = sk > 5 && (di & 4 || fa_t_randint(2));
        int64_t vdim = fa_t_randint((int)dd);
        fa_dtype t = e4 ? FA_E4M3 : FA_E5M2;
        unsigned char *k, *v;
        float *q = (float *)malloc((size_t)(hq * dd) * 4), *o = (float *)malloc((size_t)(hq * dd) * 4);
        float *r = (float *)malloc((size_t)(hq * dd) * 4);
        fa_attn_desc d;
        /* the poisoned V dim in either half of a 32-code block (the AVX-512 decode converts 32
           codes at a time) */
        if (dd >= 32) {
            vdim = (vdim & ~(int64_t)31) + (di & 8 ? 16 : 0) + vdim % 16;
            if (vdim >= dd) vdim = (di & 8 ? 16 : 0) + vdim % 16;
        }
        k = (unsigned char *)malloc((size_t)(sk * hkv * dd));
        v = (unsigned char *)malloc((size_t)(sk * hkv * dd));
        for (i = 0; i < hq * dd; i++) q[i] = (float)fa_t_normal();
        for (i = 0; i < sk * hkv * dd; i++) {
            float a = (float)fa_t_normal(), b = (float)fa_t_normal();
            k[i] = e4 ? fa_f32_to_e4m3(a, 1) : fa_f32_to_e5m2(a, 1);
            v[i] = e4 ? fa_f32_to_e4m3(b, 1) : fa_f32_to_e5m2(b, 1);
        }
        if (knan) k[(3 * hkv + 0) * dd + fa_t_randint((int)dd)] = nans[!e4][fa_t_randint(4)]; /* key 3, kv head 0 */
        if (vnan) v[(5 * hkv + 1) * dd + vdim] = nans[!e4][fa_t_randint(4)];              /* key 5, kv head 1 */
        memset(&d, 0, sizeof d);
        d.batch = 1; d.seqlen_q = 1; d.seqlen_k = sk; d.heads_q = hq; d.heads_kv = hkv; d.head_dim = dd;
        d.q = q; d.k = k; d.v = v; d.k_type = d.v_type = t; d.o = r; d.causal = 1;
        d.k_scale = (float)fa_t_uniform(0.5, 2.0) * 0.25f;
        d.v_scale = (float)fa_t_uniform(0.5, 2.0);
        CHECK(fa_attn_reference(&d) == FA_OK);
        d.o = o;
        for (path = 0; path < NPATHS; path++) {
            double worst = 0;
            fa_status st = forward_on_path(&d, path, o, hq * dd);
            CHECKF(st == FA_OK, "%s: %s", paths[path].name, fa_last_error());
            for (n = 0; n < hq * dd; n++) {
                int64_t head = n / dd, kvh = head / g;
                int poisoned = (knan && kvh == 0) || (vnan && kvh == 1 && n % dd == vdim);
                double err = poisoned ? (isnan(o[n]) ? 0 : INFINITY) : fabs((double)o[n] - r[n]);
                if (!(err <= 1e30)) err = INFINITY;
                if (err > worst) worst = err;
            }
            CHECKF(worst <= 1e-5 * d.v_scale * 4, "%s: %s d %lld, %lld/%lld heads, %lld keys, nan k %d v %d: max error %g",
                   paths[path].name, fa_dtype_name(t), (long long)dd, (long long)hq, (long long)hkv, (long long)sk, knan,
                   vnan, worst);
            cases++;
        }
        free(q); free(k); free(v); free(o); free(r);
    }
    CHECK(cases == 32 * NPATHS);
}

/* Decode units of several kv heads compute S for every kv head per block of keys, and P V
   likewise (the K and V rows in address order), each head's rows found at a head offset from
   one pointer per key, GQA groups of 1-8 (groups that are not multiples of 4 run each head's
   last 4-row group into the next head's rows): K/V of each type, per-head K and V scales,
   paged K/V with pages that split the 16-key blocks, a sliding window whose edge falls inside a
   block, key counts around the block sizes, token- and head-major layouts; a NaN in a K row
   must poison exactly its kv head's rows, a NaN in a V row exactly that dim of its kv head's
   rows. On every dispatch path. */
TEST(decode_of_several_kv_heads_in_key_blocks_matches_reference)
{
    static const int64_t groups[] = {1, 4, 8, 2, 3, 5, 6, 7};
    static const int64_t lens[] = {1, 15, 16, 17, 63, 64, 65, 130, 1000};
    static const int64_t dims[] = {16, 48, 64, 128, 80};
    static const fa_dtype kts[] = {FA_F32, FA_BF16, FA_F16, FA_E4M3};
    int ci, path, cases = 0;
    for (ci = 0; ci < 32; ci++) {
        int64_t g = groups[ci % 8], hkv = 2 + fa_t_randint(4), hq = g * hkv, dd = dims[fa_t_randint(5)];
        int64_t sk = lens[fa_t_randint(9)], i, n, e, ps = 0, npages = 0, per_seq = 0;
        fa_dtype kt = kts[fa_t_randint(4)];
        size_t es = fa_dtype_size(kt);
        int paged = fa_t_randint(3) == 0, headmajor = !paged && fa_t_randint(3) == 0, window = fa_t_randint(3) == 0;
        int bfq = kt == FA_BF16 && fa_t_randint(2);
        int64_t knan_key = sk > 2 && fa_t_randint(2) ? fa_t_randint((int)sk) : -1, knan_head = fa_t_randint((int)hkv);
        int64_t vnan_key = sk > 2 && fa_t_randint(2) ? fa_t_randint((int)sk) : -1, vnan_head = (knan_head + 1) % hkv;
        int64_t vnan_dim = fa_t_randint((int)dd), slots;
        float *q = (float *)malloc((size_t)(hq * dd) * 4), *o = (float *)malloc((size_t)(hq * dd) * 4);
        float *r = (float *)malloc((size_t)(hq * dd) * 4), ks[8], vs[8];
        unsigned char *k, *v;
        int32_t *bt = NULL;
        fa_attn_desc d;
        memset(&d, 0, sizeof d);
        if (paged) { /* shuffled pages of 1-50 keys (7 and 50 split the 16-key blocks) */
            static const int64_t pss[] = {7, 16, 50, 1};
            int64_t *perm;
            ps = pss[fa_t_randint(4)];
            per_seq = (sk + ps - 1) / ps;
            npages = per_seq + 1 + fa_t_randint(3);
            perm = (int64_t *)malloc((size_t)npages * sizeof(int64_t));
            for (i = 0; i < npages; i++) perm[i] = i;
            for (i = npages - 1; i > 0; i--) {
                int64_t j = fa_t_randint((int)i + 1), t = perm[i];
                perm[i] = perm[j]; perm[j] = t;
            }
            bt = (int32_t *)malloc((size_t)per_seq * sizeof(int32_t));
            for (i = 0; i < per_seq; i++) bt[i] = (int32_t)perm[i];
            free(perm);
            d.block_table = bt; d.page_size = ps; d.num_pages = npages;
        }
        slots = paged ? npages * ps : sk;
        k = (unsigned char *)malloc((size_t)(slots * hkv * dd) * es);
        v = (unsigned char *)malloc((size_t)(slots * hkv * dd) * es);
        for (i = 0; i < slots * hkv * dd; i++) {
            float a = (float)fa_t_normal(), b = (float)fa_t_normal();
            switch (kt) {
            case FA_F32: ((float *)k)[i] = a; ((float *)v)[i] = b; break;
            case FA_BF16: ((uint16_t *)k)[i] = fa_f32_to_bf16(a); ((uint16_t *)v)[i] = fa_f32_to_bf16(b); break;
            case FA_F16: ((uint16_t *)k)[i] = fa_f32_to_f16(a); ((uint16_t *)v)[i] = fa_f32_to_f16(b); break;
            default: k[i] = fa_f32_to_e4m3(a, 1); v[i] = fa_f32_to_e4m3(b, 1); break;
            }
        }
        for (i = 0; i < hq * dd; i++) q[i] = (float)fa_t_normal();
        if (bfq)
            for (i = 0; i < hq * dd; i++) ((uint16_t *)q)[i] = fa_f32_to_bf16(q[i]); /* bf16 rows, first half */
        d.batch = 1; d.seqlen_q = 1; d.seqlen_k = sk; d.heads_q = hq; d.heads_kv = hkv; d.head_dim = dd;
        d.q = q; d.k = k; d.v = v; d.q_type = bfq ? FA_BF16 : FA_F32; d.k_type = d.v_type = kt; d.o = r; d.causal = 1;
        if (headmajor) { /* [head][seq][d] */
            d.k_stride.seq = d.v_stride.seq = dd;
            d.k_stride.head = d.v_stride.head = sk * dd;
        }
        for (i = 0; i < hkv; i++) {
            ks[i] = (float)fa_t_uniform(0.25, 2.0);
            vs[i] = (float)fa_t_uniform(0.25, 2.0);
        }
        if (fa_t_randint(2)) { d.k_head_scale = ks; d.v_head_scale = vs; }
        if (window) {
            d.use_window = 1;
            d.window_left = 1 + fa_t_randint((int)(sk > 40 ? 40 : sk));
            d.window_right = 0;
        }
        /* a NaN at (key, kv head, dim), wherever the layout and paging put it */
#define SLOT(KEY, H, E) ((paged ? (int64_t)bt[(KEY) / ps] * ps + (KEY) % ps : (KEY)) * (headmajor ? dd : hkv * dd) + \
                         (H) * (headmajor ? sk * dd : dd) + (E))
        if (knan_key >= 0) {
            e = SLOT(knan_key, knan_head, fa_t_randint((int)dd));
            if (kt == FA_F32) ((float *)k)[e] = NAN;
            else if (kt == FA_E4M3) k[e] = 0x7f;
            else ((uint16_t *)k)[e] = kt == FA_BF16 ? 0x7fc0 : 0x7e00;
        }
        if (vnan_key >= 0) {
            e = SLOT(vnan_key, vnan_head, vnan_dim);
            if (kt == FA_F32) ((float *)v)[e] = NAN;
            else if (kt == FA_E4M3) v[e] = 0xff;
            else ((uint16_t *)v)[e] = kt == FA_BF16 ? 0x7fc0 : 0x7e00;
        }
#undef SLOT
        /* a NaN outside the window is never read */
        if (window && knan_key >= 0 && knan_key < sk - 1 - d.window_left) knan_key = -1;
        if (window && vnan_key >= 0 && vnan_key < sk - 1 - d.window_left) vnan_key = -1;
        CHECK(fa_attn_reference(&d) == FA_OK);
        d.o = o;
        for (path = 0; path < NPATHS; path++) {
            double worst = 0;
            fa_status st = forward_on_path(&d, path, o, hq * dd);
            CHECKF(st == FA_OK, "%s: %s", paths[path].name, fa_last_error());
            for (n = 0; n < hq * dd; n++) {
                int64_t kvh = n / dd / g;
                int poisoned = (knan_key >= 0 && kvh == knan_head) || (vnan_key >= 0 && kvh == vnan_head && n % dd == vnan_dim);
                double err = poisoned ? (isnan(o[n]) ? 0 : INFINITY) : fabs((double)o[n] - r[n]) / (1.0 + fabs((double)r[n]));
                if (!(err <= 1e30)) err = INFINITY;
                if (err > worst) worst = err;
            }
            CHECKF(worst <= 2e-5, "%s: %s%s d %lld, %lld/%lld heads, %lld keys, paged %lld, head-major %d, window %d, nan k %lld/%lld v %lld/%lld: max error %g",
                   paths[path].name, fa_dtype_name(kt), bfq ? " (bf16 Q)" : "", (long long)dd, (long long)hq, (long long)hkv,
                   (long long)sk, (long long)ps, headmajor, window, (long long)knan_key, (long long)knan_head,
                   (long long)vnan_key, (long long)vnan_head, worst);
            cases++;
        }
        free(q); free(o); free(r); free(k); free(v); free(bt);
    }
    CHECK(cases == 32 * NPATHS);
}

/* Auto-chosen splits shrink as they go (fa__split_tiles): they tile the keys exactly, in
   pieces that never grow, none below the minimum but the last, as many as fa__split_count
   says and within the workspace's split count for every cache length; decode on a pool with
   them matches the reference, with shorter sequences of a batch leaving trailing splits
   empty, and repeated calls give the same bits whichever thread ran what. */
TEST(guided_splits_tile_the_keys_and_decode_matches_reference)
{
    static const int64_t tiles_c[] = {1, 2, 7, 63, 64, 65, 128, 1000, 4096};
    static const int64_t workers_c[] = {1, 2, 4, 16, 64};
    size_t a, b;
    int64_t m, k, f, hq = 8, hkv = 2, dd = 64, skmax = 2100, i, e, bi;
    fa_pool *big = NULL;
    fa_pool_desc pd;
    for (a = 0; a < sizeof tiles_c / sizeof *tiles_c; a++)
        for (b = 0; b < sizeof workers_c / sizeof *workers_c; b++)
            for (m = 1; m <= 5; m++)
                for (f = 1; f <= 2; f++) { /* 1/W of what is left (decode) and 1/(2W) */
                    int64_t T = tiles_c[a], W = workers_c[b], n = fa__split_count(T, f * W, m), pos = 0, prev = T + 1,
                            t0, t1;
                    for (k = 0; k < n; k++) {
                        fa__split_tiles(T, f * W, m, k, &t0, &t1);
                        CHECKF(t0 == pos && t1 > t0 && t1 - t0 <= prev, "T %lld W %lld m %lld split %lld: [%lld, %lld)",
                               (long long)T, (long long)W, (long long)m, (long long)k, (long long)t0, (long long)t1);
                        CHECK(t1 - t0 >= m || t1 == T);
                        prev = t1 - t0;
                        pos = t1;
                    }
                    CHECK(pos == T);
                    CHECK(m == 1 || n <= fa__split_count(T, f * W, m - 1)); /* the count never grows with m */
                    fa__split_tiles(T, f * W, m, n, &t0, &t1);
                    CHECK(t0 == T && t1 == T);
                    /* the first split takes about 1/(fW) of the keys: no more than an equal split */
                    fa__split_tiles(T, f * W, m, 0, &t0, &t1);
                    CHECK(t1 - t0 <= (T + W - 1) / W || t1 - t0 <= m);
                }
    memset(&pd, 0, sizeof pd);
    pd.threads = 15; /* more threads than this machine has: splits land on threads at random */
    CHECK(fa_pool_create(&big, &pd) == FA_OK);
    {
        float *q = (float *)malloc((size_t)(3 * hq * dd) * 4), *k_ = (float *)malloc((size_t)(3 * skmax * hkv * dd) * 4);
        float *v = (float *)malloc((size_t)(3 * skmax * hkv * dd) * 4), *o = (float *)malloc((size_t)(3 * hq * dd) * 4);
        float *o2 = (float *)malloc((size_t)(3 * hq * dd) * 4), *r = (float *)malloc((size_t)(3 * hq * dd) * 4);
        static const int64_t sks[] = {1, 65, 1000, 2100};
        int32_t used[3];
        fa_attn_desc d;
        fa__attn_plan p;
        int rep;
        for (i = 0; i < 3 * hq * dd; i++) q[i] = (float)fa_t_normal();
        for (i = 0; i < 3 * skmax * hkv * dd; i++) { k_[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
        for (a = 0; a < sizeof sks / sizeof *sks; a++)
            for (b = 0; b < 2; b++) {
                memset(&d, 0, sizeof d);
                d.batch = b ? 3 : 1; d.seqlen_q = 1; d.seqlen_k = b ? skmax : sks[a]; d.heads_q = hq; d.heads_kv = hkv;
                d.head_dim = dd; d.q = q; d.k = k_; d.v = v; d.causal = 1;
                if (b) { /* a batch whose sequences are shorter than the longest: trailing splits empty */
                    used[0] = (int32_t)sks[a]; used[1] = 7; used[2] = (int32_t)(skmax - sks[a] / 2);
                    d.seqused_k = used;
                }
                d.o = r;
                CHECK(fa_attn_reference(&d) == FA_OK);
                d.pool = big;
                CHECK(fa__attn_prepare(&d, &p) == FA_OK);
                if (p.splits > 1) CHECK(p.split_min >= 1 && p.splits <= (4 * p.workers + p.units - 1) / p.units);
                for (rep = 0; rep < 4; rep++) {
                    float *out = rep ? o2 : o;
                    d.o = out;
                    CHECK(fa_attn_forward(&d) == FA_OK);
                    for (bi = 0; bi < d.batch; bi++)
                        for (i = 0; i < hq * dd; i++) {
                            e = bi * hq * dd + i;
                            CHECKF(fabs(out[e] - r[e]) <= 1e-5, "sk %lld batch %lld: %g vs %g", (long long)d.seqlen_k,
                                   (long long)d.batch, out[e], r[e]);
                        }
                    if (rep) CHECK(memcmp(o, o2, (size_t)(d.batch * hq * dd) * 4) == 0);
                }
            }
        free(q); free(k_); free(v); free(o); free(o2); free(r);
    }
    fa_pool_destroy(big, FA_POOL_FINISH);
}

TEST(split_kv_decode_on_a_pool_matches_reference)
{
    int64_t hq = 8, hkv = 2, dd = 64, sk = 3000, i, e, ns;
    float *q = (float *)malloc((size_t)(hq * dd) * 4), *k = (float *)malloc((size_t)(sk * hkv * dd) * 4);
    float *v = (float *)malloc((size_t)(sk * hkv * dd) * 4), o[8 * 64], r[8 * 64], lse[8], rl[8];
    fa_attn_desc d;
    size_t ws1 = 0, ws4 = 0;
    for (i = 0; i < hq * dd; i++) q[i] = (float)fa_t_normal();
    for (i = 0; i < sk * hkv * dd; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
    memset(&d, 0, sizeof d);
    d.batch = 1; d.seqlen_q = 1; d.seqlen_k = sk; d.heads_q = hq; d.heads_kv = hkv; d.head_dim = dd;
    d.q = q; d.k = k; d.v = v; d.o = r; d.lse = rl; d.causal = 1;
    CHECK(fa_attn_reference(&d) == FA_OK);
    d.o = o; d.lse = lse;
    for (ns = 0; ns <= 60; ns += (ns < 8 ? 1 : 13)) {
        d.pool = test_pool;
        d.num_splits = ns;
        CHECK(fa_attn_forward(&d) == FA_OK);
        for (i = 0; i < hq; i++) {
            CHECKF(fabs(lse[i] - rl[i]) <= 1e-5 * (1 + fabs(rl[i])), "splits %lld: lse %g vs %g", (long long)ns, lse[i], rl[i]);
            for (e = 0; e < dd; e++)
                CHECKF(fabs(o[i * dd + e] - r[i * dd + e]) <= 1e-5, "splits %lld: %g vs %g", (long long)ns, o[i * dd + e], r[i * dd + e]);
        }
    }
    /* the workspace covers every worker and the partials, and does not grow with seqlen_k */
    d.num_splits = 0;
    CHECK(fa_attn_workspace_size(&d, &ws4) == FA_OK);
    { /* with a caller workspace, a call on the pool allocates nothing */
        void *ws = fa_aligned_alloc(ws4, 64);
        long calls0;
        d.workspace = ws;
        d.workspace_size = ws4;
        calls0 = t_alloc_calls;
        CHECK(fa_attn_forward(&d) == FA_OK);
        CHECKF(t_alloc_calls == calls0, "%ld allocations inside fa_attn_forward", t_alloc_calls - calls0);
        for (i = 0; i < hq * dd; i++) CHECK(fabs(o[i] - r[i]) <= 1e-5);
        d.workspace = NULL;
        d.workspace_size = 0;
        fa_aligned_free(ws);
    }
    d.seqlen_k = 300000;
    CHECK(fa_attn_workspace_size(&d, &ws1) == FA_OK && ws1 == ws4);
    d.pool = NULL;
    CHECK(fa_attn_workspace_size(&d, &ws1) == FA_OK && ws1 < ws4);
    free(q); free(k); free(v);
}

/* The tile's run of queries and their key ranges come from the two diagonal edges of
   fa__row_range (fa__row_edges, fa__tile_queries) instead of a call per query: on random causal
   and window settings, diagonal offsets (sk - sq, negative too) and tiles, every query's
   edges equal fa__row_range's, [qa, qb) is what the two binary searches it replaced found, and
   no query outside it sees a key of the tile. */
TEST(tile_query_runs_match_each_query_range)
{
    int rep;
    for (rep = 0; rep < 3000; rep++) {
        fa_attn_desc d;
        fa__attn_plan p;
        fa__seq s;
        int64_t sq = 1 + fa_t_randint(2000), sk = 1 + fa_t_randint(2000), lo_off, hi_off, i0, nq, j0, j1, m;
        int64_t qa, qb, ra = -1, rb = -1;
        memset(&d, 0, sizeof d);
        memset(&p, 0, sizeof p);
        memset(&s, 0, sizeof s);
        d.causal = fa_t_randint(2);
        p.d = &d;
        p.win_left = fa_t_randint(3) == 0 ? -1 : fa_t_randint(sq + sk + 1);
        p.win_right = fa_t_randint(3) == 0 ? -1 : fa_t_randint(sq + sk + 1);
        s.sq = sq;
        s.sk = sk;
        s.off = sk - sq;
        i0 = fa_t_randint(sq);
        nq = 1 + fa_t_randint(sq - i0);
        j0 = fa_t_randint(sk);
        j1 = j0 + 1 + fa_t_randint(sk - j0 < 64 ? sk - j0 : 64);
        fa__row_edges(&p, &s, &lo_off, &hi_off);
        fa__tile_queries(lo_off, hi_off, i0, nq, j0, j1, &qa, &qb);
        for (m = 0; m < nq; m++) {
            int64_t i = i0 + m, lo, hi, elo = i + lo_off, ehi = i + hi_off;
            fa__row_range(&p, &s, i, &lo, &hi);
            elo = elo < 0 ? 0 : elo;
            ehi = ehi > sk ? sk : ehi;
            CHECKF(elo == lo && ehi == hi, "query %lld (sq %lld sk %lld causal %d window %lld/%lld): edges [%lld, %lld), "
                   "fa__row_range [%lld, %lld)", (long long)i, (long long)sq, (long long)sk, d.causal,
                   (long long)p.win_left, (long long)p.win_right, (long long)elo, (long long)ehi, (long long)lo,
                   (long long)hi);
            if (ra < 0 && hi > j0) ra = m; /* the binary searches' answers, by a scan */
            if (ra >= 0 && rb < 0 && lo >= j1) rb = m;
            if (m < qa || m >= qb) { /* outside the run: no key of the tile */
                lo = lo < j0 ? j0 : lo > j1 ? j1 : lo;
                hi = hi > j1 ? j1 : hi < j0 ? j0 : hi;
                CHECKF(lo >= hi, "query %lld outside [%lld, %lld) sees keys [%lld, %lld) of tile [%lld, %lld)",
                       (long long)i, (long long)(i0 + qa), (long long)(i0 + qb), (long long)lo, (long long)hi,
                       (long long)j0, (long long)j1);
            }
        }
        if (ra < 0) ra = nq;
        if (rb < 0) rb = nq;
        CHECKF(qa == ra && qb == rb, "run [%lld, %lld), scan [%lld, %lld) (sq %lld sk %lld causal %d window %lld/%lld tile "
               "[%lld, %lld))", (long long)qa, (long long)qb, (long long)ra, (long long)rb, (long long)sq, (long long)sk,
               d.causal, (long long)p.win_left, (long long)p.win_right, (long long)j0, (long long)j1);
    }
}

/* Prefill units hold 512 (query, head) rows, or 256 where 512 would leave fewer than two units per
   thread (fa__attn_schedule). On one thread these shapes take 512-row units; on the 4-thread pool
   256-row ones (without splits in the first three), and a row's tiles run the same operations in
   either, so the outputs must agree bit for bit; all must match the reference. */
TEST(prefill_units_of_512_and_256_rows_give_the_same_bits)
{
    static const int64_t shapes[][6] = {/* hq, hkv, sq, sk, d, causal */
                                        {8, 2, 256, 256, 32, 0}, {8, 2, 256, 256, 32, 1}, {8, 2, 255, 300, 40, 1},
                                        {1, 1, 1000, 1000, 16, 1}};
    int si;
    for (si = 0; si < (int)(sizeof shapes / sizeof shapes[0]); si++) {
        const int64_t hq = shapes[si][0], hkv = shapes[si][1], sq = shapes[si][2], sk = shapes[si][3];
        const int64_t dd = shapes[si][4], nq = sq * hq * dd, nkv = sk * hkv * dd;
        const int bitwise = si < 3; /* the last one splits its keys on the pool */
        float *q = (float *)malloc((size_t)nq * 4), *k = (float *)malloc((size_t)nkv * 4);
        float *v = (float *)malloc((size_t)nkv * 4), *o1 = (float *)malloc((size_t)nq * 4);
        float *o4 = (float *)malloc((size_t)nq * 4), *r = (float *)malloc((size_t)nq * 4);
        fa_attn_desc d;
        int64_t i, diff = 0, bad = 0;
        for (i = 0; i < nq; i++) q[i] = (float)fa_t_normal();
        for (i = 0; i < nkv; i++) { k[i] = (float)fa_t_normal(); v[i] = (float)fa_t_normal(); }
        simple_desc(&d, sq, sk, dd, q, k, v, r, NULL);
        d.heads_q = hq; d.heads_kv = hkv; d.causal = (int)shapes[si][5];
        CHECK(fa_attn_reference(&d) == FA_OK);
        d.o = o1;
        CHECK(fa_attn_forward(&d) == FA_OK);
        d.o = o4;
        d.pool = test_pool;
        CHECK(fa_attn_forward(&d) == FA_OK);
        for (i = 0; i < nq; i++) {
            diff += memcmp(&o1[i], &o4[i], 4) != 0;
            bad += !(fabs(o1[i] - r[i]) <= 1e-5 * (1 + fabs(r[i])) && fabs(o4[i] - r[i]) <= 1e-5 * (1 + fabs(r[i])));
        }
        CHECKF(bad == 0, "shape %d: %lld outputs off the reference", si, (long long)bad);
        if (bitwise) CHECKF(diff == 0, "shape %d: %lld outputs differ between 1 and 4 threads", si, (long long)diff);
        free(q); free(k); free(v); free(o1); free(o4); free(r);
    }
}

int main(void)
{
    int rc;
    fa_test_init();
    {
        fa_pool_desc pd;
        memset(&pd, 0, sizeof pd);
        pd.threads = 3;
        if (fa_pool_create(&test_pool, &pd) != FA_OK) {
            fprintf(stderr, "cannot create the test pool: %s\n", fa_last_error());
            return 1;
        }
    }
    RUN(split_kv_decode_on_a_pool_matches_reference);
    RUN(prefill_units_of_512_and_256_rows_give_the_same_bits);
    RUN(tile_query_runs_match_each_query_range);
    RUN(guided_splits_tile_the_keys_and_decode_matches_reference);
    RUN(decode_units_of_several_kv_heads_match_reference);
    RUN(decode_of_several_kv_heads_in_key_blocks_matches_reference);
    RUN(bf16_query_decode_matches_reference_for_every_head_dim_and_group);
    RUN(fp8_kv_decode_matches_reference_and_nan_codes_stay_in_their_heads);
    RUN(vector_exp_is_accurate_on_every_path);
    RUN(fused_softmax_row_matches_scale_max_then_exp_sum);
    RUN(row_loads_match_the_scalar_decode_on_every_path);
    RUN(reference_matches_a_hand_computed_case);
    RUN(reference_matches_the_direct_formula);
    RUN(forward_matches_reference_on_random_configurations);
    RUN(large_logits_do_not_overflow);
    RUN(logits_rising_tile_after_tile_match_reference);
    RUN(equal_scores_average_the_values);
    RUN(fully_masked_rows_give_zero_and_minus_inf);
    RUN(empty_and_single_key_sequences);
    RUN(non_finite_inputs_stay_in_their_rows);
    RUN(merge_of_random_kv_splits_equals_the_unsplit_result);
    RUN(merge_of_empty_parts_is_empty_and_nan_propagates);
    RUN(every_validation_error_is_specific);
    RUN(workspace_query_caller_workspace_and_memory_estimate);
    RUN(allocation_failure_returns_nomem_and_leaks_nothing);
    rc = fa_test_summary();
    fa_pool_destroy(test_pool, FA_POOL_FINISH);
    return rc;
}
