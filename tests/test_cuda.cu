/* tests/test_cuda.cu - flashattn_cuda.cuh against the CPU reference (fa_attn_reference).

   Every configuration draws fresh random inputs (seed printed; replay with FA_TEST_SEED), runs
   fa_cuda_attn_forward on the GPU into outputs poisoned with NaN bit patterns, and compares
   each visible row with the double-precision reference:
     - relative L2 error over all rows <= 1e-2 (bf16) / 2e-3 (f16), and every element within
       an absolute+relative bound, so one wrong row cannot hide in the norm;
     - NaN never passes: a finite reference needs a finite result, a NaN reference (a NaN
       logit) needs NaN;
     - rows that see no key are exactly 0 with LSE -inf; LSE within 5e-4 (1 + |lse|);
     - padding inside the output view (a padded head stride) is never written.
   Build and run: make test-cuda (needs nvcc and an sm_80+ GPU). */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn_cuda.cuh"
#include "harness.h"

#include <string.h>

#define CK(x)                                                                            \
    do {                                                                                 \
        cudaError_t e_ = (x);                                                            \
        if (e_ != cudaSuccess) {                                                         \
            fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__,  \
                    __LINE__);                                                           \
            exit(2);                                                                     \
        }                                                                                \
    } while (0)

/* ---- one configuration ---- */
typedef struct cfg {
    fa_dtype t;
    int b, sq, sk, hq, hkv, d, dv;
    int causal, use_window, wl, wr;
    float softcap, scale;
    int alibi, alibi_per_batch;
    int varlen_q, varlen_k, seqused, page_size; /* page_size 0 = not paged */
    int lse, splits, o_f32, bhsd, pad_o, nan_k, user_ws;
    int k8, v8;   /* K / V stored as FP8: 0 = no, 1 = e4m3, 2 = e5m2 */
    int kv_scale; /* 0 = none, 1 = per-tensor k_scale/v_scale, 2 = per-head arrays */
    int check_path; /* 1: check that the decode kernel runs exactly when it should */
    int repeat;     /* 1: call the forward twice on the same workspace, outputs re-poisoned
                       between the calls; the second call's results are checked */
} cfg;

static void describe(const cfg *c, char *buf, size_t n)
{
    snprintf(buf, n,
             "%s b=%d sq=%d sk=%d hq=%d hkv=%d d=%d dv=%d causal=%d win=%d(%d,%d) cap=%g "
             "alibi=%d/%d varlen=%d/%d used=%d page=%d lse=%d splits=%d of32=%d bhsd=%d pad=%d "
             "nan=%d ws=%d fp8=%d/%d scale=%d",
             fa_dtype_name(c->t), c->b, c->sq, c->sk, c->hq, c->hkv, c->d, c->dv, c->causal,
             c->use_window, c->wl, c->wr, (double)c->softcap, c->alibi, c->alibi_per_batch,
             c->varlen_q, c->varlen_k, c->seqused, c->page_size, c->lse, c->splits, c->o_f32,
             c->bhsd, c->pad_o, c->nan_k, c->user_ws, c->k8, c->v8, c->kv_scale);
}

static cfg base_cfg(fa_dtype t, int b, int sq, int sk, int hq, int hkv, int d)
{
    cfg c;
    memset(&c, 0, sizeof c);
    c.t = t; c.b = b; c.sq = sq; c.sk = sk; c.hq = hq; c.hkv = hkv; c.d = d; c.dv = d;
    c.lse = 1;
    return c;
}

/* A [nb][nt][nh][dim(+pad)] (BSHD) or [nb][nh][nt][dim(+pad)] (BHSD) tensor view. */
typedef struct view {
    fa_strides st;
    size_t elems;
} view;
static view make_view(int64_t nb, int64_t nt, int64_t nh, int64_t dim, int bhsd, int pad,
                      int explicit_strides)
{
    view v;
    int64_t dd = dim + pad;
    memset(&v, 0, sizeof v);
    if (bhsd) {
        v.st.seq = dd; v.st.head = nt * dd; v.st.batch = nh * nt * dd;
    } else {
        v.st.head = dd; v.st.seq = nh * dd; v.st.batch = nt * nh * dd;
    }
    if (!explicit_strides) memset(&v.st, 0, sizeof v.st);
    v.elems = (size_t)(nb * nt * nh * dd);
    if (v.elems == 0) v.elems = 1;
    return v;
}

static uint16_t to_bits(fa_dtype t, float x) { return t == FA_BF16 ? fa_f32_to_bf16(x) : fa_f32_to_f16(x); }
static float from_bits(fa_dtype t, uint16_t h) { return t == FA_BF16 ? fa_bf16_to_f32(h) : fa_f16_to_f32(h); }

static void *dev_copy(const void *h, size_t bytes)
{
    void *p = NULL;
    CK(cudaMalloc(&p, bytes ? bytes : 16));
    if (bytes) CK(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
    return p;
}

static int64_t g_cases, g_dec_cases;
/* >= 0: the kernel run_case must see taken (fa__cu_last_path: 0 mma.sync, 1 sm_90a wgmma). */
static int g_expect_path = -1;
static int g_hopper; /* the device is sm_90 (H100/H200): eligible prefill takes the wgmma kernel */

/* A random finite FP8 byte of magnitude <= ~7.5 (e4m3: exponent field <= 9; e5m2: <= 17). */
static unsigned char fp8_rand(int kind)
{
    unsigned sign = (unsigned)fa_t_randint(2) << 7;
    if (kind == 1) return (unsigned char)(sign | (unsigned)fa_t_randint(10) << 3 | (unsigned)fa_t_randint(8));
    return (unsigned char)(sign | (unsigned)fa_t_randint(18) << 2 | (unsigned)fa_t_randint(4));
}

/* Runs one configuration; failures are reported through CHECKF with the description. */
static void run_case(const cfg *c)
{
    char desc[512];
    fa_attn_desc hd, dd;
    int planned_dec = 0;
    int64_t b, i, h, e;
    int32_t *cu_q = NULL, *cu_k = NULL, *used = NULL, *table = NULL;
    int64_t total_q, total_k, nbq, ntq, nbk, ntk, num_pages = 0, bt_stride = 0, lse_n;
    int64_t *sq_b, *sk_cap;
    uint16_t *q;
    unsigned char *k, *v;
    float *khs = NULL, *vhs = NULL;
    void *dkhs = NULL, *dvhs = NULL;
    const size_t kes = c->k8 ? 1 : 2, ves = c->v8 ? 1 : 2;
    float *slopes = NULL, *ref_o, *ref_lse, *got_lse;
    void *got_o;
    size_t oes = c->o_f32 ? 4 : 2;
    view qv, kv, vv, ov;
    double err2 = 0, ref2 = 0, max_excess = 0;
    long bad_nan = 0, bad_elem = 0, bad_lse = 0, bad_empty = 0, bad_pad = 0;
    void *dq, *dk, *dv_, *do_, *dlse = NULL, *dcu_q = NULL, *dcu_k = NULL, *dused = NULL,
         *dtable = NULL, *dslopes = NULL, *dws = NULL;
    fa_status st;
    const double tol_rel = c->t == FA_BF16 ? 1e-2 : 2e-3;
    const double atol = c->t == FA_BF16 ? 2e-2 : 4e-3;

    describe(c, desc, sizeof desc);
    g_cases++;
    sq_b = (int64_t *)malloc(sizeof(int64_t) * (size_t)c->b);
    sk_cap = (int64_t *)malloc(sizeof(int64_t) * (size_t)c->b);

    /* ---- sequence geometry ---- */
    total_q = 0;
    if (c->varlen_q) {
        cu_q = (int32_t *)malloc(sizeof(int32_t) * (size_t)(c->b + 1));
        cu_q[0] = 0;
        for (b = 0; b < c->b; b++) {
            sq_b[b] = fa_t_randint(5) == 0 ? 0 : 1 + fa_t_randint(c->sq);
            if (b == 0) sq_b[b] = c->sq; /* the declared maximum is reached */
            cu_q[b + 1] = cu_q[b] + (int32_t)sq_b[b];
        }
        total_q = cu_q[c->b];
        nbq = 1; ntq = total_q;
    } else {
        for (b = 0; b < c->b; b++) sq_b[b] = c->sq;
        nbq = c->b; ntq = c->sq;
        total_q = c->sq;
    }
    total_k = c->sk;
    if (c->varlen_k) {
        cu_k = (int32_t *)malloc(sizeof(int32_t) * (size_t)(c->b + 1));
        cu_k[0] = 0;
        for (b = 0; b < c->b; b++) {
            sk_cap[b] = fa_t_randint(c->sk + 1);
            cu_k[b + 1] = cu_k[b] + (int32_t)sk_cap[b];
        }
        total_k = cu_k[c->b];
        nbk = 1; ntk = total_k;
    } else if (c->page_size) {
        int64_t pps = (c->sk + c->page_size - 1) / c->page_size, *perm;
        for (b = 0; b < c->b; b++) sk_cap[b] = c->sk;
        bt_stride = pps + fa_t_randint(2);
        num_pages = c->b * bt_stride + 1 + fa_t_randint(3);
        perm = (int64_t *)malloc(sizeof(int64_t) * (size_t)num_pages);
        for (i = 0; i < num_pages; i++) perm[i] = i;
        for (i = num_pages - 1; i > 0; i--) {
            int64_t j = fa_t_randint(i + 1), tmp = perm[i];
            perm[i] = perm[j]; perm[j] = tmp;
        }
        table = (int32_t *)malloc(sizeof(int32_t) * (size_t)(c->b * bt_stride + 1));
        for (i = 0; i < c->b * bt_stride; i++) table[i] = (int32_t)perm[i];
        free(perm);
        nbk = num_pages; ntk = c->page_size;
    } else {
        for (b = 0; b < c->b; b++) sk_cap[b] = c->sk;
        nbk = c->b; ntk = c->sk;
    }
    if (c->seqused) {
        used = (int32_t *)malloc(sizeof(int32_t) * (size_t)c->b);
        for (b = 0; b < c->b; b++) used[b] = (int32_t)fa_t_randint(sk_cap[b] + 1);
    }

    /* ---- tensors ---- */
    {
        int expl = c->bhsd || c->pad_o;
        qv = make_view(nbq, ntq, c->hq, c->d, c->bhsd, 0, expl);
        kv = make_view(nbk, ntk, c->hkv, c->d, c->bhsd, 0, expl);
        vv = make_view(nbk, ntk, c->hkv, c->dv, c->bhsd, 0, expl);
        ov = make_view(nbq, ntq, c->hq, c->dv, c->bhsd, c->pad_o ? 8 : 0, expl);
    }
    q = (uint16_t *)malloc(qv.elems * 2);
    k = (unsigned char *)malloc(kv.elems * kes);
    v = (unsigned char *)malloc(vv.elems * ves);
    {
        float qamp = c->softcap > 0 ? 3.0f : 1.0f;
        for (size_t n = 0; n < qv.elems; n++) q[n] = to_bits(c->t, qamp * (float)fa_t_normal());
        for (size_t n = 0; n < kv.elems; n++) {
            if (c->k8) k[n] = fp8_rand(c->k8);
            else ((uint16_t *)k)[n] = to_bits(c->t, (float)fa_t_normal());
        }
        for (size_t n = 0; n < vv.elems; n++) {
            if (c->v8) v[n] = fp8_rand(c->v8);
            else ((uint16_t *)v)[n] = to_bits(c->t, (float)fa_t_normal());
        }
        if (c->nan_k && !c->k8) ((uint16_t *)k)[fa_t_randint((int64_t)kv.elems)] = to_bits(c->t, NAN);
        if (c->kv_scale == 2) {
            khs = (float *)malloc(sizeof(float) * (size_t)c->hkv);
            vhs = (float *)malloc(sizeof(float) * (size_t)c->hkv);
            for (i = 0; i < c->hkv; i++) {
                khs[i] = (float)fa_t_uniform(0.1, 0.6);
                vhs[i] = i == 0 ? 0.0f : (float)fa_t_uniform(-1.2, 1.2); /* 0 means 1 */
            }
        }
    }
    if (c->alibi) {
        int64_t n = c->alibi_per_batch ? (int64_t)c->b * c->hq : c->hq;
        slopes = (float *)malloc(sizeof(float) * (size_t)n);
        for (i = 0; i < n; i++) slopes[i] = (float)fa_t_uniform(0.0, 0.3);
    }
    lse_n = c->varlen_q ? c->hq * total_q : (int64_t)c->b * c->hq * c->sq;
    if (lse_n < 1) lse_n = 1;
    ref_o = (float *)malloc(ov.elems * sizeof(float));
    ref_lse = (float *)malloc((size_t)lse_n * sizeof(float));
    got_o = malloc(ov.elems * oes);
    got_lse = (float *)malloc((size_t)lse_n * sizeof(float));

    /* ---- the host descriptor (reference) ---- */
    memset(&hd, 0, sizeof hd);
    hd.batch = c->b; hd.seqlen_q = c->sq; hd.seqlen_k = c->sk;
    hd.heads_q = c->hq; hd.heads_kv = c->hkv; hd.head_dim = c->d;
    hd.head_dim_v = c->dv == c->d ? 0 : c->dv;
    hd.q = q; hd.q_type = c->t; hd.q_stride = qv.st;
    hd.k = k; hd.k_type = c->k8 ? (c->k8 == 1 ? FA_E4M3 : FA_E5M2) : c->t; hd.k_stride = kv.st;
    hd.v = v; hd.v_type = c->v8 ? (c->v8 == 1 ? FA_E4M3 : FA_E5M2) : c->t; hd.v_stride = vv.st;
    if (c->kv_scale == 1) { hd.k_scale = 0.25f; hd.v_scale = -1.25f; }
    hd.k_head_scale = khs; hd.v_head_scale = vhs;
    hd.o = ref_o; hd.o_type = FA_F32; hd.o_stride = ov.st;
    hd.lse = ref_lse;
    hd.softmax_scale = c->scale;
    hd.softcap = c->softcap;
    hd.alibi_slopes = slopes;
    hd.alibi_batch_stride = c->alibi_per_batch ? c->hq : 0;
    hd.causal = c->causal;
    hd.use_window = c->use_window; hd.window_left = c->wl; hd.window_right = c->wr;
    hd.cu_seqlens_q = cu_q; hd.cu_seqlens_k = cu_k; hd.seqused_k = used;
    hd.block_table = table; hd.block_table_stride = table ? bt_stride : 0;
    hd.page_size = table ? c->page_size : 0; hd.num_pages = num_pages;
    hd.num_splits = c->splits;
    for (size_t n = 0; n < ov.elems; n++) ref_o[n] = NAN;
    st = fa_attn_reference(&hd);
    CHECKF(st == FA_OK, "reference failed: %s (%s) [%s]", fa_status_str(st), fa_last_error(), desc);
    if (st != FA_OK) goto done;

    /* ---- the device descriptor ---- */
    dq = dev_copy(q, qv.elems * 2);
    dk = dev_copy(k, kv.elems * kes);
    dv_ = dev_copy(v, vv.elems * ves);
    if (khs) dkhs = dev_copy(khs, sizeof(float) * (size_t)c->hkv);
    if (vhs) dvhs = dev_copy(vhs, sizeof(float) * (size_t)c->hkv);
    CK(cudaMalloc(&do_, ov.elems * oes));
    CK(cudaMemset(do_, 0xff, ov.elems * oes)); /* NaN in every output type */
    if (c->lse) {
        CK(cudaMalloc(&dlse, (size_t)lse_n * sizeof(float)));
        CK(cudaMemset(dlse, 0xff, (size_t)lse_n * sizeof(float)));
    }
    if (cu_q) dcu_q = dev_copy(cu_q, sizeof(int32_t) * (size_t)(c->b + 1));
    if (cu_k) dcu_k = dev_copy(cu_k, sizeof(int32_t) * (size_t)(c->b + 1));
    if (used) dused = dev_copy(used, sizeof(int32_t) * (size_t)c->b);
    if (table) dtable = dev_copy(table, sizeof(int32_t) * (size_t)(c->b * bt_stride));
    if (slopes) dslopes = dev_copy(slopes, sizeof(float) * (size_t)(c->alibi_per_batch ? c->b * c->hq : c->hq));
    dd = hd;
    dd.q = dq; dd.k = dk; dd.v = dv_; dd.o = do_;
    dd.o_type = c->o_f32 ? FA_F32 : c->t;
    dd.lse = (float *)dlse;
    dd.cu_seqlens_q = (const int32_t *)dcu_q; dd.cu_seqlens_k = (const int32_t *)dcu_k;
    dd.seqused_k = (const int32_t *)dused; dd.block_table = (const int32_t *)dtable;
    dd.alibi_slopes = (const float *)dslopes;
    dd.k_head_scale = (const float *)dkhs; dd.v_head_scale = (const float *)dvhs;
    if (c->user_ws) {
        size_t ws = 0;
        st = fa_cuda_attn_workspace_size(&dd, &ws);
        CHECKF(st == FA_OK, "workspace_size: %s [%s]", fa_last_error(), desc);
        CK(cudaMalloc(&dws, ws ? ws : 16));
        CK(cudaMemset(dws, 0xff, ws ? ws : 16));
        dd.workspace = dws; dd.workspace_size = ws;
    }
    {
        /* Which kernel runs: the decode kernel for at most 16 packed query rows (K and V both
           FP8 with 16-byte stride multiples or neither, pages of a multiple of 16 keys, shared
           memory that fits: D <= 128 here), else the tile kernel. */
        fa__cu_plan pl;
        st = fa__cu_make_plan(&dd, &pl);
        CHECKF(st == FA_OK, "plan: %s [%s]", fa_last_error(), desc);
        if (st == FA_OK && pl.dec) g_dec_cases++;
        planned_dec = st == FA_OK && pl.dec;
        if (st == FA_OK && c->check_path) {
            int g = c->hq / c->hkv, want = (g > 1 ? c->sq * g : c->sq) <= 16;
            if ((c->k8 != 0) != (c->v8 != 0)) want = 0;
            if (pl.p.k8 && (pl.p.k_sb % 16 || pl.p.k_ss % 16 || pl.p.k_sh % 16)) want = 0;
            if (pl.p.v8 && (pl.p.v_sb % 16 || pl.p.v_ss % 16 || pl.p.v_sh % 16)) want = 0;
            if (c->page_size % 16) want = 0;
            if (pl.dpad <= 128)
                CHECKF(pl.dec == want, "decode kernel planned %d, want %d [%s]", pl.dec, want, desc);
        }
    }
    st = fa_cuda_attn_forward(&dd, 0);
    CHECKF(st == FA_OK, "fa_cuda_attn_forward: %s (%s) [%s]", fa_status_str(st), fa_last_error(), desc);
    if (c->repeat && st == FA_OK) { /* the same workspace again: state left by the first call */
        CK(cudaMemsetAsync(do_, 0xff, ov.elems * oes, 0));
        if (dlse) CK(cudaMemsetAsync(dlse, 0xff, (size_t)lse_n * sizeof(float), 0));
        st = fa_cuda_attn_forward(&dd, 0);
        CHECKF(st == FA_OK, "second fa_cuda_attn_forward: %s (%s) [%s]", fa_status_str(st), fa_last_error(), desc);
    }
    if (g_expect_path >= 0) { /* decode-shaped problems take the decode kernel, not wgmma */
        int want = planned_dec ? 0 : g_expect_path;
        CHECKF(fa__cu_last_path == want, "took kernel %d, expected %d [%s]", fa__cu_last_path, want, desc);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(got_o, do_, ov.elems * oes, cudaMemcpyDeviceToHost));
    if (c->lse) CK(cudaMemcpy(got_lse, dlse, (size_t)lse_n * sizeof(float), cudaMemcpyDeviceToHost));

    /* ---- compare every visible row ---- */
    {
        char *touched = (char *)calloc(ov.elems, 1);
        fa_strides os = ov.st;
        int64_t os_h = os.head ? os.head : c->dv, os_s = os.seq ? os.seq : (int64_t)c->hq * c->dv;
        int64_t os_b = os.batch ? os.batch : (int64_t)c->sq * os_s;
        for (b = 0; b < c->b; b++)
            for (h = 0; h < c->hq; h++)
                for (i = 0; i < sq_b[b]; i++) {
                    int64_t tok = c->varlen_q ? cu_q[b] + i : i;
                    int64_t base = (c->varlen_q ? 0 : b * os_b) + tok * os_s + h * os_h;
                    int64_t li = c->varlen_q ? h * total_q + tok : (b * c->hq + h) * c->sq + i;
                    float rl = ref_lse[li];
                    for (e = 0; e < c->dv; e++) {
                        float r = ref_o[base + e], g;
                        touched[base + e] = 1;
                        g = c->o_f32 ? ((float *)got_o)[base + e]
                                     : from_bits(c->t, ((uint16_t *)got_o)[base + e]);
                        if (r != r) {
                            if (g == g) bad_nan++;
                            continue;
                        }
                        if (!(g - g == 0.0f)) { bad_nan++; continue; }
                        if (rl == -INFINITY && g != 0.0f) bad_empty++;
                        err2 += ((double)g - r) * ((double)g - r);
                        ref2 += (double)r * r;
                        {
                            double ex = fabs((double)g - r) - (atol + atol * fabs((double)r));
                            if (ex > 0) { bad_elem++; if (ex > max_excess) max_excess = ex; }
                        }
                    }
                    if (c->lse) {
                        float gl = got_lse[li];
                        if (rl != rl) { if (gl == gl) bad_lse++; }
                        else if (rl == -INFINITY) { if (gl != -INFINITY) bad_lse++; }
                        else if (!(fabs((double)gl - rl) <= 5e-4 * (1.0 + fabs((double)rl)))) bad_lse++;
                    }
                }
        /* Elements of the output buffer outside every row's view stay poisoned. */
        for (size_t n = 0; n < ov.elems; n++) {
            if (touched[n]) continue;
            if (c->o_f32 ? ((uint32_t *)got_o)[n] != 0xffffffffu : ((uint16_t *)got_o)[n] != 0xffffu)
                bad_pad++;
        }
        free(touched);
    }
    {
        double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
        CHECKF(rel <= tol_rel, "relative L2 error %.3g > %.3g [%s]", rel, tol_rel, desc);
        CHECKF(bad_nan == 0, "%ld elements non-finite where the reference is finite, or finite where it is NaN [%s]", bad_nan, desc);
        CHECKF(bad_elem == 0, "%ld elements outside the element bound (worst excess %.3g) [%s]", bad_elem, max_excess, desc);
        CHECKF(bad_empty == 0, "%ld elements of rows that see no key are not 0 [%s]", bad_empty, desc);
        CHECKF(bad_lse == 0, "%ld LSE values off [%s]", bad_lse, desc);
        CHECKF(bad_pad == 0, "%ld elements outside the output view were written [%s]", bad_pad, desc);
    }
    cudaFree(dq); cudaFree(dk); cudaFree(dv_); cudaFree(do_);
    if (dlse) cudaFree(dlse);
    if (dcu_q) cudaFree(dcu_q);
    if (dcu_k) cudaFree(dcu_k);
    if (dused) cudaFree(dused);
    if (dtable) cudaFree(dtable);
    if (dslopes) cudaFree(dslopes);
    if (dws) cudaFree(dws);
    if (dkhs) cudaFree(dkhs);
    if (dvhs) cudaFree(dvhs);
done:
    free(q); free(k); free(v); free(slopes); free(ref_o); free(ref_lse); free(got_o); free(got_lse);
    free(cu_q); free(cu_k); free(used); free(table); free(sq_b); free(sk_cap); free(khs); free(vhs);
}

/* ---- tests ---- */

/* FA_TEST_ONLY=a,b runs only the tests whose names contain one of the comma-separated parts
   (a device run that checks one change need not pay for the whole suite). */
static int test_wanted(const char *name)
{
    const char *only = getenv("FA_TEST_ONLY"), *p;
    if (!only || !*only) return 1;
    for (p = only; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char part[64];
        if (n > 0 && n < sizeof part) {
            memcpy(part, p, n);
            part[n] = 0;
            if (strstr(name, part)) return 1;
        }
        if (!e) break;
        p = e + 1;
    }
    return 0;
}
#define RUN_IF(name)                             \
    do {                                         \
        if (test_wanted(#name)) RUN(name);       \
    } while (0)

TEST(forward_matches_reference_for_each_head_dim_type_and_causal)
{
    static const int dims[] = {64, 96, 128, 256};
    fa_dtype types[] = {FA_BF16, FA_F16};
    for (int t = 0; t < 2; t++)
        for (int di = 0; di < 4; di++)
            for (int causal = 0; causal < 2; causal++) {
                int s = 65 + (int)fa_t_randint(160);
                cfg c = base_cfg(types[t], 2, s, s, 4, 2, dims[di]);
                c.causal = causal;
                run_case(&c);
            }
}

TEST(other_head_dims_run_zero_padded)
{
    static const int dk[] = {8, 16, 40, 72, 80, 104, 136, 160, 200, 248, 128, 64};
    static const int dv[] = {8, 16, 40, 72, 80, 104, 136, 160, 200, 248, 64, 256};
    for (int n = 0; n < 12; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 1, 90, 130, 2, 1, dk[n]);
        c.dv = dv[n];
        c.causal = n % 3 == 0;
        run_case(&c);
    }
}

TEST(causal_is_bottom_right_aligned_for_any_shape)
{
    static const int shapes[][2] = {{1, 1}, {1, 300}, {7, 300}, {100, 37}, {300, 100},
                                    {64, 64}, {65, 129}, {128, 1}, {200, 0}};
    for (int n = 0; n < 9; n++) {
        cfg c = base_cfg(FA_BF16, 2, shapes[n][0], shapes[n][1], 3, 3, 64);
        c.causal = 1;
        run_case(&c);
    }
}

TEST(window_softcap_alibi_and_scale)
{
    for (int n = 0; n < 12; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 2, 40 + (int)fa_t_randint(200),
                         40 + (int)fa_t_randint(300), 4, 2, n % 3 == 0 ? 64 : 128);
        c.causal = n % 4 == 0;
        c.use_window = n % 2 == 0 || n % 3 == 0;
        c.wl = (int)fa_t_randint(80) - 10;
        c.wr = (int)fa_t_randint(30) - 10;
        c.softcap = n % 3 == 1 ? 5.0f + (float)fa_t_randint(30) : 0.0f;
        c.alibi = n % 4 >= 2;
        c.alibi_per_batch = n % 8 >= 6;
        c.scale = n % 5 == 4 ? 0.05f : (n == 7 ? -0.08f : 0.0f); /* negative: the generic path */
        run_case(&c);
    }
}

TEST(gqa_mqa_and_decode_with_split_kv)
{
    static const int hkvs[] = {1, 2, 8};
    static const int sqs[] = {1, 3, 17};
    static const int sks[] = {1, 100, 2500};
    for (int a = 0; a < 3; a++)
        for (int s = 0; s < 3; s++)
            for (int k2 = 0; k2 < 3; k2++) {
                cfg c = base_cfg(FA_BF16, 2, sqs[s], sks[k2], 8, hkvs[a], 128);
                c.causal = (a + s + k2) & 1;
                run_case(&c);
            }
}

TEST(forced_splits_match_and_take_a_user_workspace)
{
    static const int splits[] = {1, 2, 3, 7, 64};
    for (int n = 0; n < 5; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 2, 1 + (int)fa_t_randint(80), 700, 4, 1, 128);
        c.splits = splits[n];
        c.causal = n & 1;
        c.user_ws = n >= 3;
        c.o_f32 = n == 2;
        run_case(&c);
    }
}

TEST(varlen_seqused_and_paged_kv)
{
    for (int n = 0; n < 12; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 3, 1 + (int)fa_t_randint(150),
                         1 + (int)fa_t_randint(400), 4, n % 3 == 0 ? 1 : 2, n % 4 == 3 ? 256 : 128);
        c.varlen_q = n % 2 == 0;
        c.varlen_k = n % 4 == 1;
        c.page_size = c.varlen_k ? 0 : (n % 4 == 0 ? 16 : n % 4 == 2 ? 7 : 0);
        c.seqused = n % 3 != 2;
        c.causal = n % 5 < 2;
        if (n == 11) c.splits = 5;
        run_case(&c);
    }
}

TEST(strided_layouts_padded_output_and_f32_output)
{
    for (int n = 0; n < 8; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 2, 50 + (int)fa_t_randint(100), 80 + (int)fa_t_randint(100),
                         4, 2, n & 2 ? 64 : 128);
        c.bhsd = n & 1;
        c.pad_o = (n >> 1) & 1;
        c.o_f32 = (n >> 2) & 1;
        c.lse = n != 5;
        c.varlen_q = n == 6;
        c.page_size = n == 7 ? 32 : 0;
        run_case(&c);
    }
}

TEST(nan_in_k_reaches_exactly_the_rows_that_see_it)
{
    for (int n = 0; n < 6; n++) {
        cfg c = base_cfg(FA_BF16, 1, 100, 160, 2, 1, 64);
        c.causal = 1;
        c.use_window = n >= 3;
        c.wl = 20; c.wr = 0;
        c.nan_k = 1;
        c.splits = n % 2 ? 3 : 0;
        run_case(&c);
    }
}

TEST(empty_key_ranges_give_zero_and_minus_inf)
{
    cfg c = base_cfg(FA_BF16, 2, 30, 0, 2, 2, 64);
    run_case(&c);
    c = base_cfg(FA_F16, 3, 40, 50, 2, 1, 128);
    c.varlen_k = 1; c.seqused = 1; /* some sequences get 0 keys */
    run_case(&c);
    c = base_cfg(FA_BF16, 1, 100, 100, 2, 2, 64);
    c.use_window = 1; c.wl = -1; c.wr = -1; c.causal = 0;
    run_case(&c);
    c = base_cfg(FA_BF16, 1, 200, 100, 2, 2, 64); /* causal with sq > sk: first 100 rows empty */
    c.causal = 1; c.splits = 4;
    run_case(&c);
}

TEST(fp8_kv_and_dequant_scales)
{
    for (int n = 0; n < 12; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 2, n % 3 == 0 ? 1 : 1 + (int)fa_t_randint(120),
                         1 + (int)fa_t_randint(600), 8, n % 2 ? 2 : 8, n % 4 == 3 ? 64 : 128);
        c.k8 = n % 3 == 2 ? 0 : 1 + (n % 2);
        c.v8 = n % 4 == 1 ? 0 : 1 + ((n / 2) % 2);
        c.kv_scale = n % 3;
        c.causal = n % 2;
        c.page_size = n % 5 == 4 ? 16 : 0;
        c.varlen_k = n == 5;
        c.softcap = n == 7 ? 20.0f : 0.0f;
        run_case(&c);
    }
}

TEST(random_configurations)
{
    static const int dims[] = {64, 96, 128, 256, 40, 80, 136, 200, 32};
#ifdef FA_TEST_SANITIZED
    const int count = 10;
#else
    const int count = 60;
#endif
    for (int n = 0; n < count; n++) {
        int d = dims[fa_t_randint(9)];
        int hkv = 1 + (int)fa_t_randint(3);
        cfg c = base_cfg(fa_t_randint(2) ? FA_BF16 : FA_F16, 1 + (int)fa_t_randint(3),
                         1 + (int)fa_t_randint(d > 128 ? 100 : 180), (int)fa_t_randint(d > 128 ? 200 : 400),
                         hkv * (1 + (int)fa_t_randint(4)), hkv, d);
        if (fa_t_randint(5) == 0) c.dv = 8 * (1 + (int)fa_t_randint(32));
        c.causal = (int)fa_t_randint(2);
        c.use_window = fa_t_randint(4) == 0;
        c.wl = (int)fa_t_randint(100) - 20;
        c.wr = (int)fa_t_randint(50) - 20;
        c.softcap = fa_t_randint(5) == 0 ? 3.0f + (float)fa_t_randint(40) : 0.0f;
        c.alibi = fa_t_randint(5) == 0;
        c.alibi_per_batch = (int)fa_t_randint(2);
        c.varlen_q = fa_t_randint(4) == 0;
        c.varlen_k = fa_t_randint(5) == 0;
        c.page_size = !c.varlen_k && fa_t_randint(5) == 0 ? (int)(1 + fa_t_randint(70)) : 0;
        c.seqused = fa_t_randint(5) == 0;
        c.lse = (int)fa_t_randint(2);
        c.splits = fa_t_randint(3) == 0 ? (int)(1 + fa_t_randint(9)) : 0;
        c.o_f32 = fa_t_randint(5) == 0;
        c.bhsd = fa_t_randint(5) == 0;
        c.pad_o = fa_t_randint(5) == 0;
        c.user_ws = fa_t_randint(4) == 0;
        run_case(&c);
    }
}

/* ---- the decode kernel (at most 16 packed query rows per KV head) ---- */

/* A random decode-shaped configuration: group * sq <= 16, every feature drawn at random. */
static cfg decode_cfg(int sk)
{
    static const int groups[] = {1, 2, 4, 8, 16, 4, 4};
    static const int dims[] = {64, 96, 128, 256, 40, 80, 136, 200, 32, 128, 128};
    int g = groups[fa_t_randint(7)], hkv = 1 + (int)fa_t_randint(g >= 8 ? 2 : 4);
    int d = dims[fa_t_randint(11)];
    int sq = fa_t_randint(3) ? 1 : 1 + (int)fa_t_randint(16 / g);
    cfg c = base_cfg(fa_t_randint(2) ? FA_BF16 : FA_F16, 1 + (int)fa_t_randint(3), sq, sk, hkv * g, hkv, d);
    if (fa_t_randint(6) == 0) c.dv = 8 * (1 + (int)fa_t_randint(32));
    c.check_path = 1;
    c.causal = (int)fa_t_randint(2);
    c.use_window = fa_t_randint(4) == 0;
    c.wl = (int)fa_t_randint(sk / 2 + 40) - 10;
    c.wr = (int)fa_t_randint(30) - 10;
    c.softcap = fa_t_randint(5) == 0 ? 3.0f + (float)fa_t_randint(40) : 0.0f;
    c.alibi = fa_t_randint(5) == 0;
    c.alibi_per_batch = (int)fa_t_randint(2);
    c.scale = fa_t_randint(8) == 0 ? -0.07f : 0.0f;
    c.varlen_q = fa_t_randint(5) == 0;
    c.varlen_k = fa_t_randint(6) == 0;
    if (!c.varlen_k && fa_t_randint(4) == 0) { /* page sizes the decode kernel takes, and others */
        int r = (int)fa_t_randint(3);
        c.page_size = r == 0 ? (int)(1 + fa_t_randint(80)) : r == 1 ? 64 : 16 * (int)(1 + fa_t_randint(4));
    }
    c.seqused = fa_t_randint(4) == 0;
    c.lse = (int)fa_t_randint(3) != 0;
    c.splits = fa_t_randint(4) == 0 ? (int)(1 + fa_t_randint(40)) : 0;
    c.o_f32 = fa_t_randint(5) == 0;
    c.bhsd = fa_t_randint(6) == 0;
    c.pad_o = fa_t_randint(6) == 0;
    c.user_ws = fa_t_randint(3) == 0;
    c.nan_k = fa_t_randint(10) == 0;
    if (fa_t_randint(3) == 0) { /* mostly both FP8 (the decode kernel), sometimes mixed */
        c.k8 = 1 + (int)fa_t_randint(2);
        c.v8 = fa_t_randint(4) ? 1 + (int)fa_t_randint(2) : 0;
        c.kv_scale = (int)fa_t_randint(3);
    }
    return c;
}

TEST(decode_kernel_random_features_and_odd_key_lengths)
{
    static const int sks[] = {1, 7, 63, 65, 1000, 0, 16, 17, 300, 2049};
#ifdef FA_TEST_SANITIZED
    const int count = 20;
#else
    const int count = 120;
#endif
    for (int n = 0; n < count; n++) {
        cfg c = decode_cfg(sks[n % 10] ? sks[n % 10] : (int)fa_t_randint(5000));
        run_case(&c);
    }
}

TEST(decode_kernel_long_cache_32771_keys)
{
    for (int n = 0; n < 6; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 1 + (n == 2), n == 3 ? 2 : 1, 32771, 8, 2, n == 4 ? 64 : 128);
        c.check_path = 1;
        c.causal = n & 1;
        c.page_size = n == 1 ? 64 : (n == 5 ? 16 : 0);
        c.k8 = n >= 4 ? 1 : 0;
        c.v8 = n == 4 ? 2 : (n == 5 ? 1 : 0);
        c.kv_scale = n == 5 ? 2 : 0;
        c.use_window = n == 3;
        c.wl = 20000; c.wr = -1;
        c.softcap = n == 2 ? 30.0f : 0.0f;
        c.user_ws = n & 1;
        run_case(&c);
    }
}

TEST(decode_kernel_shapes_and_fp8_formats)
{
    /* Every A/B shape of the D = 128 decode kernel, and each K/V storage pair. */
    for (int v = 0; v <= 4; v++) {
        fa__cu_dec_variant = v;
        for (int n = 0; n < 9; n++) {
            cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 2, 1 + (n % 4 == 3), 100 + (int)fa_t_randint(3000), 8, 2, 128);
            c.check_path = 1;
            c.k8 = n % 3;
            c.v8 = n / 3;
            c.kv_scale = n % 3;
            c.causal = n & 1;
            c.page_size = n == 4 ? 32 : 0;
            run_case(&c);
        }
    }
    fa__cu_dec_variant = 0;
}

/* The decode kernel's split-KV path: forced split counts 1, 2, 3, 16, 33, the plan's own and
   more splits than key tiles, odd key counts, two batches x several KV heads, every output
   type; a poisoned (0xff) user workspace, used by two calls in a row (outputs re-poisoned
   between them: the second call must not depend on what the first left there). Then the
   32-key-tile shape (v4) the same way, with pages of 16 keys (16-key tiles then), 32 keys,
   and FP8. */
TEST(decode_forced_splits_and_reused_workspace)
{
    static const int splits[] = {1, 2, 3, 16, 33, 0, 500};
    static const int sks[] = {1, 17, 333, 1001, 4099, 65, 2050};
    for (int n = 0; n < 7; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 1 + (n % 3 == 1), 1 + (n == 3), sks[n] + (int)fa_t_randint(3), 8, n == 4 ? 8 : 2, n == 5 ? 64 : 128);
        c.check_path = 1;
        c.splits = splits[n];
        c.causal = n == 4;
        c.user_ws = 1;
        c.repeat = 1;
        c.o_f32 = n == 2;
        c.lse = n != 6;
        c.k8 = c.v8 = n == 6 ? 1 : 0;
        c.seqused = n == 1;
        run_case(&c);
    }
    fa__cu_dec_variant = 4;
    for (int n = 0; n < 5; n++) {
        cfg c = base_cfg(n & 1 ? FA_F16 : FA_BF16, 2, 1, 1000 + (int)fa_t_randint(3000), 16, 4, 128);
        c.check_path = 1;
        c.splits = n == 0 ? 0 : 5 * n;
        c.user_ws = 1;
        c.repeat = 1;
        c.page_size = n == 2 ? 16 : (n == 3 ? 32 : 0);
        c.k8 = c.v8 = n == 4 ? 2 : 0;
        c.causal = n & 1;
        run_case(&c);
    }
    fa__cu_dec_variant = 0;
}

/* The sm_90a wgmma prefill kernel (taken on an sm_90 GPU for head_dim 64/128/256 without
   window, softcap, ALiBi, varlen, paged or FP8 K/V, one split): random shapes with partial
   tiles at both ends, GQA, causal, LSE, strided/padded/f32 outputs; each configuration must
   take the expected kernel, and half of them run again with the wgmma path switched off
   (fa__wg_off), so the mma.sync kernels keep their coverage on Hopper. */
TEST(hopper_wgmma_prefill)
{
    static const int lens[] = {1, 7, 63, 65, 128, 129, 1000, 300};
    static const int dims[] = {64, 128, 256};
#ifdef FA_TEST_SANITIZED
    const int count = 8;
#else
    const int count = 48;
#endif
    for (int n = 0; n < count; n++) {
        int d = dims[fa_t_randint(3)], hkv = 1 + (int)fa_t_randint(2);
        int sq = lens[fa_t_randint(8)], sk = lens[fa_t_randint(8)], b = 1 + (int)fa_t_randint(3);
        int hq = hkv * (1 + (int)fa_t_randint(3));
        if (n % 24 == 5) { sq = 16384 + 3; sk = 65 + (int)fa_t_randint(70); hkv = 1; }
        if (n % 24 == 17) { sq = 1 + (int)fa_t_randint(130); sk = 16384 + 3; hkv = 1; }
        if ((double)b * hq * sq * (double)sk * d > 4e8) { b = 1; hq = hkv; }
        cfg c = base_cfg(fa_t_randint(2) ? FA_BF16 : FA_F16, b, sq, sk, hq, hkv, d);
        c.causal = (int)fa_t_randint(2);
        c.lse = fa_t_randint(4) != 0;
        c.splits = 1; /* the split heuristic would send small grids to the split-KV kernel */
        c.o_f32 = fa_t_randint(5) == 0;
        c.bhsd = fa_t_randint(5) == 0;
        c.pad_o = fa_t_randint(5) == 0;
        if (n % 7 == 3) c.scale = 0.05f + (float)fa_t_uniform(0.0, 0.2);
        /* GQA with fewer query rows than an mma.sync tile keeps the packed-GQA kernel. */
        g_expect_path = g_hopper && !(hq != hkv && sq < (d == 128 ? 128 : 64)) ? 1 : 0;
        fa__wg_variant = n % 3 != 0; /* a third of the shapes run the simple variant */
        run_case(&c);
        fa__wg_variant = 1;
        if (n & 1) {
            int saved = fa__wg_off;
            fa__wg_off = 1;
            g_expect_path = 0;
            run_case(&c);
            fa__wg_off = saved;
        }
    }
    { /* what the wgmma kernel does not cover goes to mma.sync */
        cfg c = base_cfg(FA_BF16, 1, 200, 300, 2, 1, 128);
        c.splits = 1;
        g_expect_path = 0;
        c.use_window = 1; c.wl = 40; c.wr = 0;
        run_case(&c);
        c.use_window = 0; c.softcap = 20.0f;
        run_case(&c);
        c.softcap = 0.0f; c.d = c.dv = 96;
        run_case(&c);
        c.d = c.dv = 128; c.varlen_q = 1;
        run_case(&c);
        c.varlen_q = 0; c.splits = 4;
        run_case(&c);
    }
    g_expect_path = -1;
}

/* ---- errors: reported before any launch, nothing written ---- */
TEST(errors_are_reported_before_any_launch)
{
    fa_attn_desc d;
    uint16_t *buf;
    uint16_t host[64];
    CK(cudaMalloc((void **)&buf, 1 << 20));
    CK(cudaMemset(buf, 0xff, 1 << 20));
    memset(&d, 0, sizeof d);
    d.batch = 1; d.seqlen_q = 4; d.seqlen_k = 4; d.heads_q = 2; d.heads_kv = 2; d.head_dim = 64;
    d.q = buf; d.k = buf; d.v = buf; d.o = buf + 4096;
    d.q_type = d.k_type = d.v_type = d.o_type = FA_BF16;
#define EXPECT(s_, mutate)                                                                 \
    do {                                                                                   \
        fa_attn_desc e_ = d;                                                               \
        fa_status got_;                                                                    \
        mutate;                                                                            \
        got_ = fa_cuda_attn_forward(&e_, 0);                                               \
        CHECKF(got_ == (s_), "%s: got %s (%s), want %s", #mutate, fa_status_str(got_),     \
               fa_last_error(), fa_status_str(s_));                                        \
        CHECKF(got_ == FA_OK || fa_last_error()[0] != '\0', "%s: no detail message", #mutate); \
    } while (0)
    CHECK(fa_cuda_attn_forward(NULL, 0) == FA_ERR_NULL);
    EXPECT(FA_ERR_INVALID, e_.batch = 0);
    EXPECT(FA_ERR_SHAPE, e_.heads_kv = 3);
    EXPECT(FA_ERR_SHAPE, e_.head_dim = 300);
    EXPECT(FA_ERR_NULL, e_.o = NULL);
    EXPECT(FA_ERR_INVALID, e_.softcap = -1.0f);
    EXPECT(FA_ERR_INVALID, e_.num_splits = -2);
    EXPECT(FA_ERR_UNSUPPORTED, e_.q_type = e_.k_type = e_.v_type = FA_F32);
    EXPECT(FA_ERR_UNSUPPORTED, e_.k_type = FA_F32);
    EXPECT(FA_ERR_UNSUPPORTED, e_.head_dim = 20);
    EXPECT(FA_ERR_UNSUPPORTED, e_.q = buf + 1);
    EXPECT(FA_ERR_UNSUPPORTED, e_.k_stride.seq = 132);
    EXPECT(FA_ERR_UNSUPPORTED, e_.mask = (const fa_mask *)buf);
    EXPECT(FA_ERR_UNSUPPORTED, (e_.cu_seqlens_q = (const int32_t *)buf, e_.seqlen_q = 0));
    EXPECT(FA_ERR_INVALID, (e_.block_table = (const int32_t *)buf, e_.page_size = 0));
    EXPECT(FA_OK, (void)0);
#undef EXPECT
    CK(cudaDeviceSynchronize());
    /* Only the final valid call wrote o; the failed calls before it wrote nothing, which we
       check on a fresh buffer with one more failing call. */
    CK(cudaMemset(buf + 4096, 0xff, 1024));
    d.head_dim = 20;
    CHECK(fa_cuda_attn_forward(&d, 0) == FA_ERR_UNSUPPORTED);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(host, buf + 4096, sizeof host, cudaMemcpyDeviceToHost));
    for (int n = 0; n < 64; n++) CHECK(host[n] == 0xffff);
    cudaFree(buf);
}

/* ---- the GPU merge against fa_attn_merge ---- */
TEST(merge_matches_cpu_merge)
{
    for (int n = 0; n < 6; n++) {
        fa_merge_desc m;
        int S = 1 + (int)fa_t_randint(40), B = 1 + (int)fa_t_randint(3), L = 1 + (int)fa_t_randint(20);
        int H = 1 + (int)fa_t_randint(8), DV = 8 * (1 + (int)fa_t_randint(32));
        fa_dtype pt = n % 3 == 0 ? FA_F32 : (n % 3 == 1 ? FA_BF16 : FA_F16);
        fa_dtype ot = n % 2 ? FA_F32 : FA_BF16;
        size_t rows = (size_t)B * L * H, pe = (size_t)S * rows * DV, ps = pt == FA_F32 ? 4 : 2;
        size_t os = ot == FA_F32 ? 4 : 2;
        void *parts = malloc(pe * ps), *ref = malloc(rows * DV * os), *got = malloc(rows * DV * os);
        float *lses = (float *)malloc(S * rows * 4), *ref_l = (float *)malloc(rows * 4), *got_l = (float *)malloc(rows * 4);
        void *dparts, *dout;
        float *dl, *dlo;
        long bad = 0;
        for (size_t e = 0; e < pe; e++) {
            float x = (float)fa_t_normal();
            if (pt == FA_F32) ((float *)parts)[e] = x;
            else ((uint16_t *)parts)[e] = to_bits(pt, x);
        }
        for (size_t e = 0; e < S * rows; e++)
            lses[e] = fa_t_randint(6) == 0 ? -INFINITY : (float)fa_t_uniform(-5, 5);
        if (n == 5) lses[0] = NAN;
        memset(&m, 0, sizeof m);
        m.num_splits = S; m.batch = B; m.seqlen = L; m.heads = H; m.head_dim_v = DV;
        m.o_parts = parts; m.o_parts_type = pt; m.lse_parts = lses;
        m.o = ref; m.o_type = ot; m.lse = ref_l;
        CHECK(fa_attn_merge(&m) == FA_OK);
        dparts = dev_copy(parts, pe * ps);
        dl = (float *)dev_copy(lses, S * rows * 4);
        CK(cudaMalloc(&dout, rows * DV * os));
        CK(cudaMalloc((void **)&dlo, rows * 4));
        CK(cudaMemset(dout, 0xff, rows * DV * os));
        m.o_parts = dparts; m.lse_parts = dl; m.o = dout; m.lse = dlo;
        CHECK(fa_cuda_attn_merge(&m, 0) == FA_OK);
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dout, rows * DV * os, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(got_l, dlo, rows * 4, cudaMemcpyDeviceToHost));
        for (size_t e = 0; e < rows * DV; e++) {
            float r = ot == FA_F32 ? ((float *)ref)[e] : fa_bf16_to_f32(((uint16_t *)ref)[e]);
            float g = ot == FA_F32 ? ((float *)got)[e] : fa_bf16_to_f32(((uint16_t *)got)[e]);
            if (r != r ? g == g : !(fabsf(g - r) <= 1e-5f + (ot == FA_F32 ? 1e-5f : 8e-3f) * fabsf(r))) bad++;
        }
        for (size_t e = 0; e < rows; e++) {
            float r = ref_l[e], g = got_l[e];
            if (r != r ? g == g : (r == -INFINITY ? g != r : !(fabsf(g - r) <= 1e-5f * (1 + fabsf(r))))) bad++;
        }
        CHECKF(bad == 0, "%ld merged values differ (S=%d B=%d L=%d H=%d DV=%d %s->%s)", bad, S, B, L, H,
               DV, fa_dtype_name(pt), fa_dtype_name(ot));
        cudaFree(dparts); cudaFree(dl); cudaFree(dout); cudaFree(dlo);
        free(parts); free(ref); free(got); free(lses); free(ref_l); free(got_l);
    }
}

int main(void)
{
    int ndev = 0;
    cudaDeviceProp prop;
    fa_test_init();
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        printf("test_cuda: no CUDA device found; nothing was tested\n");
        return 2;
    }
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    g_hopper = prop.major == 9 && prop.minor == 0;
    if (getenv("FLASHATTN_CUDA_NO_WGMMA") && getenv("FLASHATTN_CUDA_NO_WGMMA")[0] == '1') g_hopper = 0;
    RUN_IF(hopper_wgmma_prefill);
    RUN_IF(forward_matches_reference_for_each_head_dim_type_and_causal);
    RUN_IF(other_head_dims_run_zero_padded);
    RUN_IF(causal_is_bottom_right_aligned_for_any_shape);
    RUN_IF(window_softcap_alibi_and_scale);
    RUN_IF(gqa_mqa_and_decode_with_split_kv);
    RUN_IF(forced_splits_match_and_take_a_user_workspace);
    RUN_IF(varlen_seqused_and_paged_kv);
    RUN_IF(strided_layouts_padded_output_and_f32_output);
    RUN_IF(nan_in_k_reaches_exactly_the_rows_that_see_it);
    RUN_IF(empty_key_ranges_give_zero_and_minus_inf);
    RUN_IF(fp8_kv_and_dequant_scales);
    RUN_IF(decode_kernel_random_features_and_odd_key_lengths);
    RUN_IF(decode_kernel_long_cache_32771_keys);
    RUN_IF(decode_kernel_shapes_and_fp8_formats);
    RUN_IF(decode_forced_splits_and_reused_workspace);
    RUN_IF(random_configurations);
    RUN_IF(errors_are_reported_before_any_launch);
    RUN_IF(merge_matches_cpu_merge);
    printf("%lld GPU configurations compared with fa_attn_reference (%lld on the decode kernel)\n",
           (long long)g_cases, (long long)g_dec_cases);
    return fa_test_summary();
}
