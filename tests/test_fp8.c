/* tests/test_fp8.c - fp8 section: f16/bf16/E4M3/E5M2/E8M0 conversion, bulk conversion on every
   path, amax, scaling recipes, stochastic rounding, bad input.

   The reference for every narrowing conversion is written from the format definitions alone
   (OCP OFP8 v1.0, IEEE 754), with integers only: the positive finite values of a format are
   enumerated from (exponent, mantissa) fields, the midpoints between neighbours are computed
   exactly, and round-to-nearest-even means "below the midpoint: the lower code, above: the
   upper code, on it: the even code". The last midpoint is the one towards the first value
   past the largest finite one; beyond it lies overflow. This shares no code or trick with the
   library's shift-and-add encoders.

   The exhaustive pass walks all 2^32 f32 bit patterns through fa_convert on the best path and
   checks E4M3 and E5M2 (saturating and not), f16 and bf16 against that reference. Because
   the reference is monotone in the input bits it is checked run by run (a run of inputs
   between two midpoints must all give the same code), which keeps the whole pass to a few
   seconds on two threads. Sanitizer builds check a strided subset plus every edge region. */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <float.h>
#include <pthread.h>
#include <string.h>

#ifndef FA_TEST_SANITIZED
#define FA_TEST_SANITIZED 0
#endif

static uint32_t bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float flt(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---- the independent reference ---------------------------------------------------------- */

/* Exact f32 bit pattern of sig * 2^exp (sig < 2^24 after normalisation, in f32 range). */
static uint32_t ref_f32_bits(uint64_t sig, int exp)
{
    int p = 63;
    if (sig == 0) return 0;
    while (!((sig >> p) & 1)) p--;
    while (p > 23 && !(sig & 1)) { sig >>= 1; exp++; p--; } /* drop trailing zeros */
    if (p > 23) return 0xffffffffu;                          /* not exact: a bug in the table */
    if (p + exp >= -126) {
        uint32_t be = (uint32_t)(p + exp + 127);
        if (be >= 255) return 0xffffffffu;
        return (be << 23) | (uint32_t)((sig << (23 - p)) & 0x7fffffu);
    }
    if (exp + 149 < 0) return 0xffffffffu;
    return (uint32_t)(sig << (exp + 149)); /* f32 subnormal */
}

typedef struct ref_fmt {
    const char *name;
    int mbits, bias;
    uint32_t maxcode;  /* largest finite positive code */
    uint32_t satcode;  /* what saturation gives on overflow (= maxcode) */
    uint32_t *mid;     /* mid[k]: f32 bits of the midpoint between codes k and k+1 */
    uint32_t nmid;     /* maxcode + 1 */
} ref_fmt;

static void ref_value(const ref_fmt *f, uint32_t code, uint64_t *sig, int *exp)
{
    uint32_t e = code >> f->mbits, m = code & ((1u << f->mbits) - 1);
    if (e == 0) { *sig = m; *exp = 1 - f->bias - f->mbits; }
    else { *sig = (1u << f->mbits) | m; *exp = (int)e - f->bias - f->mbits; }
}

static int ref_build(ref_fmt *f)
{
    uint32_t k;
    f->nmid = f->maxcode + 1;
    f->mid = (uint32_t *)malloc(sizeof(uint32_t) * f->nmid);
    if (!f->mid) return 0;
    for (k = 0; k < f->nmid; k++) {
        uint64_t s0, s1;
        int e0, e1, e;
        ref_value(f, k, &s0, &e0);
        ref_value(f, k + 1, &s1, &e1); /* code maxcode+1 extends the pattern past the max */
        e = e0 < e1 ? e0 : e1; /* (v0 + v1) / 2 = (sum at a common exponent e) * 2^(e-1) */
        f->mid[k] = ref_f32_bits((s0 << (e0 - e)) + (s1 << (e1 - e)), e - 1);
        if (f->mid[k] == 0xffffffffu) return 0;
    }
    return 1;
}

/* Code for a positive magnitude a (f32 bits, not NaN), RNE, overflow -> maxcode+1 (or
   maxcode when saturating). Binary search; the exhaustive walk uses runs instead. */
static uint32_t ref_round(const ref_fmt *f, uint32_t a, int sat)
{
    uint32_t lo = 0, hi = f->nmid, k;
    while (lo < hi) { /* first midpoint >= a */
        uint32_t m = (lo + hi) / 2;
        if (f->mid[m] < a) lo = m + 1; else hi = m;
    }
    k = lo;
    if (k < f->nmid && f->mid[k] == a && (k & 1)) k++; /* tie: the even code */
    if (k > f->maxcode && sat) k = f->satcode;
    return k;
}

static ref_fmt R_E4M3 = {"e4m3", 3, 7, 0x7e, 0x7e, NULL, 0};
static ref_fmt R_E5M2 = {"e5m2", 2, 15, 0x7b, 0x7b, NULL, 0};
static ref_fmt R_F16 = {"f16", 10, 15, 0x7bff, 0x7bff, NULL, 0};
static ref_fmt R_BF16 = {"bf16", 7, 127, 0x7f7f, 0x7f7f, NULL, 0};

/* Full expected output of f32 bits u for a format (sign, NaN rules added). */
static uint32_t ref_fp8(const ref_fmt *f, uint32_t u, int sat)
{
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return 0x7f; /* cuda_fp8.h: canonical NaN, sign dropped */
    return ((u >> 24) & 0x80u) | ref_round(f, a, sat);
}
static uint32_t ref_f16(uint32_t u)
{
    uint32_t a = u & 0x7fffffffu, s = (u >> 16) & 0x8000u;
    if (a > 0x7f800000u) return s | 0x7e00u | ((a >> 13) & 0x3ffu); /* quiet, top payload */
    return s | ref_round(&R_F16, a, 0);
}
static uint32_t ref_bf16(uint32_t u)
{
    uint32_t a = u & 0x7fffffffu, s = (u >> 16) & 0x8000u;
    if (a > 0x7f800000u) return (u >> 16) | 0x40u;
    return s | ref_round(&R_BF16, a, 0);
}

/* Exact f32 value of a code, from the definition (used for decodes). */
static uint32_t ref_decode(const ref_fmt *f, uint32_t code)
{
    uint64_t sig;
    int exp;
    ref_value(f, code, &sig, &exp);
    return ref_f32_bits(sig, exp);
}

TEST(reference_tables_match_known_values)
{
    /* a few hand-known midpoints and values keep the reference itself honest */
    CHECK(R_E4M3.mid[0x7e] == bits(464.0f));      /* between 448 and the virtual 480 */
    CHECK(R_E4M3.mid[0x7d] == bits(432.0f));      /* 416 | 448 */
    CHECK(R_E4M3.mid[0] == bits(0.0009765625f));  /* 2^-10: half the smallest subnormal */
    CHECK(R_E5M2.mid[0x7b] == bits(61440.0f));    /* 57344 | 65536 */
    CHECK(R_E5M2.mid[0] == bits(7.62939453125e-06f)); /* 2^-17 */
    CHECK(R_F16.mid[0x7bff] == bits(65520.0f));
    CHECK(R_BF16.mid[0x7f7f] == 0x7f7f8000u);
    CHECK(ref_decode(&R_E4M3, 0x7e) == bits(448.0f));
    CHECK(ref_decode(&R_E4M3, 0x01) == bits(0.001953125f));
    CHECK(ref_decode(&R_E5M2, 0x7b) == bits(57344.0f));
    CHECK(ref_decode(&R_E5M2, 0x01) == bits(1.52587890625e-05f));
    CHECK(ref_decode(&R_F16, 0x3c00) == bits(1.0f));
}

/* ---- decodes ---------------------------------------------------------------------------- */

TEST(all_256_fp8_decodes_are_exact)
{
    uint32_t v;
    for (v = 0; v < 256; v++) {
        uint32_t s = (v & 0x80u) << 24, m = v & 0x7f;
        uint32_t e4 = m == 0x7f ? 0x7fffffffu : s | ref_decode(&R_E4M3, m);
        uint32_t e5 = m > 0x7c ? 0x7fffffffu : m == 0x7c ? s | 0x7f800000u : s | ref_decode(&R_E5M2, m);
        CHECKF(bits(fa_e4m3_to_f32((uint8_t)v)) == e4, "e4m3 %02x -> %08x, want %08x", v,
               bits(fa_e4m3_to_f32((uint8_t)v)), e4);
        CHECKF(bits(fa_e5m2_to_f32((uint8_t)v)) == e5, "e5m2 %02x -> %08x, want %08x", v,
               bits(fa_e5m2_to_f32((uint8_t)v)), e5);
    }
}

TEST(all_65536_f16_and_bf16_decodes_are_exact)
{
    uint32_t h;
    for (h = 0; h < 65536; h++) {
        uint32_t s = (h & 0x8000u) << 16, m = h & 0x7fffu, want16;
        if (m > 0x7c00u) want16 = s | 0x7fc00000u | ((m & 0x3ffu) << 13); /* quieted NaN */
        else if (m == 0x7c00u) want16 = s | 0x7f800000u;
        else want16 = s | ref_decode(&R_F16, m);
        CHECKF(bits(fa_f16_to_f32((uint16_t)h)) == want16, "f16 %04x -> %08x want %08x", h,
               bits(fa_f16_to_f32((uint16_t)h)), want16);
        CHECKF(bits(fa_bf16_to_f32((uint16_t)h)) == h << 16, "bf16 %04x", h);
    }
}

TEST(all_256_e8m0_decodes)
{
    uint32_t e;
    for (e = 0; e < 255; e++)
        CHECKF(bits(fa_e8m0_to_f32((uint8_t)e)) == ref_f32_bits(1, (int)e - 127), "e8m0 %02x", e);
    CHECK(fa_e8m0_to_f32(0xff) != fa_e8m0_to_f32(0xff));
}

/* ---- explicit edge cases (each documents one rule) ---------------------------------------- */

TEST(e4m3_edges_448_464_480)
{
    CHECK(fa_f32_to_e4m3(448.0f, 0) == 0x7e);
    CHECK(fa_f32_to_e4m3(448.0f, 1) == 0x7e);
    CHECK(fa_f32_to_e4m3(456.0f, 0) == 0x7e);             /* below the midpoint */
    CHECK(fa_f32_to_e4m3(464.0f, 0) == 0x7e);             /* tie: 448 is even */
    CHECK(fa_f32_to_e4m3(nextafterf(464.0f, 1e9f), 0) == 0x7f); /* past it: NaN (no Inf) */
    CHECK(fa_f32_to_e4m3(nextafterf(464.0f, 1e9f), 1) == 0x7e); /* saturating: max */
    CHECK(fa_f32_to_e4m3(480.0f, 0) == 0x7f);
    CHECK(fa_f32_to_e4m3(480.0f, 1) == 0x7e);
    CHECK(fa_f32_to_e4m3(-480.0f, 0) == 0xff);
    CHECK(fa_f32_to_e4m3(-480.0f, 1) == 0xfe);
    CHECK(fa_f32_to_e4m3(-464.0f, 0) == 0xfe);
    CHECK(fa_f32_to_e4m3(432.0f, 0) == 0x7e);             /* 416|448 tie: 448 (110) is even */
    CHECK(fa_f32_to_e4m3(424.0f, 0) == 0x7d);
    CHECK(fa_f32_to_e4m3(1e30f, 1) == 0x7e && fa_f32_to_e4m3(1e30f, 0) == 0x7f);
}

TEST(e5m2_edges_57344_61440)
{
    CHECK(fa_f32_to_e5m2(57344.0f, 0) == 0x7b);
    CHECK(fa_f32_to_e5m2(nextafterf(61440.0f, 0.0f), 0) == 0x7b);
    CHECK(fa_f32_to_e5m2(61440.0f, 0) == 0x7c);            /* tie goes to even 65536: Inf */
    CHECK(fa_f32_to_e5m2(61440.0f, 1) == 0x7b);
    CHECK(fa_f32_to_e5m2(-61440.0f, 0) == 0xfc);
    CHECK(fa_f32_to_e5m2(-61440.0f, 1) == 0xfb);
    CHECK(fa_f32_to_e5m2(65536.0f, 0) == 0x7c);
    CHECK(fa_f32_to_e5m2(53248.0f, 0) == 0x7a);            /* 49152|57344 tie: 49152 even */
}

TEST(subnormal_edges_2em9_2em10_2em16_2em17)
{
    const float e9 = 0.001953125f, e10 = 0.0009765625f;          /* 2^-9, 2^-10 */
    const float e16 = 1.52587890625e-05f, e17 = 7.62939453125e-06f; /* 2^-16, 2^-17 */
    CHECK(fa_f32_to_e4m3(e9, 0) == 0x01);                  /* smallest E4M3 subnormal */
    CHECK(fa_f32_to_e4m3(e10, 0) == 0x00);                 /* tie with 0: 0 is even */
    CHECK(fa_f32_to_e4m3(nextafterf(e10, 1.0f), 0) == 0x01);
    CHECK(fa_f32_to_e4m3(-e10, 0) == 0x80);                /* underflow keeps the sign */
    CHECK(fa_f32_to_e4m3(3 * e10, 0) == 0x02);             /* 1.5 ulp ties to 2 */
    CHECK(fa_f32_to_e4m3(7.5f * e9, 0) == 0x08);           /* carries into the first normal */
    CHECK(fa_f32_to_e5m2(e16, 0) == 0x01);
    CHECK(fa_f32_to_e5m2(e17, 0) == 0x00);
    CHECK(fa_f32_to_e5m2(nextafterf(e17, 1.0f), 0) == 0x01);
    CHECK(fa_f32_to_e5m2(-e17, 1) == 0x80);
    CHECK(fa_f32_to_e5m2(3 * e17, 0) == 0x02);
    CHECK(fa_f32_to_e4m3(FLT_MIN / 4, 0) == 0x00);          /* f32 subnormal input */
    CHECK(fa_f32_to_e4m3(-FLT_MIN / 4, 1) == 0x80);
    CHECK(bits(fa_e4m3_to_f32(0x01)) == bits(e9));
    CHECK(bits(fa_e5m2_to_f32(0x01)) == bits(e16));
}

TEST(zero_inf_nan_payloads)
{
    uint32_t nans[] = {0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xffc00000u, 0xff800001u,
                       0x7fa5a5a5u};
    size_t i;
    CHECK(fa_f32_to_e4m3(0.0f, 0) == 0x00 && fa_f32_to_e4m3(-0.0f, 0) == 0x80);
    CHECK(fa_f32_to_e5m2(0.0f, 1) == 0x00 && fa_f32_to_e5m2(-0.0f, 1) == 0x80);
    CHECK(fa_f32_to_e4m3(INFINITY, 1) == 0x7e && fa_f32_to_e4m3(-INFINITY, 1) == 0xfe);
    CHECK(fa_f32_to_e4m3(INFINITY, 0) == 0x7f && fa_f32_to_e4m3(-INFINITY, 0) == 0xff);
    CHECK(fa_f32_to_e5m2(INFINITY, 1) == 0x7b && fa_f32_to_e5m2(-INFINITY, 1) == 0xfb);
    CHECK(fa_f32_to_e5m2(INFINITY, 0) == 0x7c && fa_f32_to_e5m2(-INFINITY, 0) == 0xfc);
    for (i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float x = flt(nans[i]);
        uint32_t want16 = ((nans[i] >> 16) & 0x8000u) | 0x7e00u | ((nans[i] >> 13) & 0x3ffu);
        CHECKF(fa_f32_to_e4m3(x, 0) == 0x7f && fa_f32_to_e4m3(x, 1) == 0x7f, "%08x", nans[i]);
        CHECKF(fa_f32_to_e5m2(x, 0) == 0x7f && fa_f32_to_e5m2(x, 1) == 0x7f, "%08x", nans[i]);
        CHECKF(fa_f32_to_f16(x) == want16, "f16 of %08x = %04x", nans[i], fa_f32_to_f16(x));
        CHECKF(fa_f32_to_bf16(x) == ((nans[i] >> 16) | 0x40u), "bf16 of %08x", nans[i]);
    }
    CHECK(bits(fa_e4m3_to_f32(0xff)) == 0x7fffffffu && bits(fa_e5m2_to_f32(0xfd)) == 0x7fffffffu);
    CHECK(bits(fa_e5m2_to_f32(0xfc)) == 0xff800000u);
    CHECK(bits(fa_e4m3_to_f32(0x80)) == 0x80000000u);
    CHECK(bits(fa_f16_to_f32(0x7c01)) == 0x7fc02000u);   /* sNaN quieted, payload kept */
    CHECK(fa_f32_to_f16(65520.0f) == 0x7c00 && fa_f32_to_f16(nextafterf(65520.0f, 0)) == 0x7bff);
    CHECK(fa_f32_to_bf16(flt(0x7f7f8000u)) == 0x7f80);   /* rounds to Inf */
}

TEST(e8m0_conversion_rules)
{
    CHECK(fa_f32_to_e8m0(1.0f, 1, 1) == 127 && fa_f32_to_e8m0(1.0f, 0, 1) == 127);
    CHECK(fa_f32_to_e8m0(1.5f, 1, 1) == 128 && fa_f32_to_e8m0(1.5f, 0, 1) == 127);
    CHECK(fa_f32_to_e8m0(nextafterf(1.0f, 2.0f), 1, 1) == 128);
    CHECK(fa_f32_to_e8m0(-3.0f, 1, 1) == 129 && fa_f32_to_e8m0(-3.0f, 0, 1) == 128);
    CHECK(fa_f32_to_e8m0(0.0f, 1, 1) == 0 && fa_f32_to_e8m0(0.0f, 0, 0) == 0);
    CHECK(fa_f32_to_e8m0(INFINITY, 1, 1) == 0xfe && fa_f32_to_e8m0(INFINITY, 1, 0) == 0xff);
    CHECK(fa_f32_to_e8m0(FLT_MAX, 1, 0) == 0xff && fa_f32_to_e8m0(FLT_MAX, 0, 0) == 0xfe);
    CHECK(fa_f32_to_e8m0(NAN, 0, 1) == 0xff && fa_f32_to_e8m0(NAN, 1, 1) == 0xff);
}

TEST(f16_and_bf16_to_fp8_round_once)
{
    uint32_t h;
    int sat;
    for (h = 0; h < 65536; h++) {
        for (sat = 0; sat < 2; sat++) {
            uint32_t u16 = bits(fa_f16_to_f32((uint16_t)h)), ub = h << 16;
            uint32_t a = fa_f16_to_e4m3((uint16_t)h, sat), b = fa_f16_to_e5m2((uint16_t)h, sat);
            uint32_t c = fa_bf16_to_e4m3((uint16_t)h, sat), d = fa_bf16_to_e5m2((uint16_t)h, sat);
            CHECKF(a == ref_fp8(&R_E4M3, u16, sat), "f16 %04x sat %d -> %02x", h, sat, a);
            CHECKF(b == ref_fp8(&R_E5M2, u16, sat), "f16 %04x sat %d -> %02x", h, sat, b);
            CHECKF(c == ref_fp8(&R_E4M3, ub, sat), "bf16 %04x sat %d -> %02x", h, sat, c);
            CHECKF(d == ref_fp8(&R_E5M2, ub, sat), "bf16 %04x sat %d -> %02x", h, sat, d);
        }
    }
    /* a double rounding would send this f16 (just above an E4M3 midpoint) down */
    CHECK(fa_f16_to_e4m3(fa_f32_to_f16(17.0f + 1.0f / 64.0f), 0) == fa_f32_to_e4m3(17.015625f, 0));
}

/* ---- the exhaustive walk --------------------------------------------------------------- */

typedef struct walk_fmt {
    const ref_fmt *f;
    fa_dtype dt;
    int sat;
    uint32_t k; /* walking midpoint index */
} walk_fmt;

/* Expected code for positive magnitude `a`, advancing w->k (a only increases). */
static uint32_t walk_code(walk_fmt *w, uint32_t a, uint32_t *run_end)
{
    const ref_fmt *f = w->f;
    uint32_t k;
    while (w->k < f->nmid && a > f->mid[w->k]) w->k++;
    k = w->k;
    if (k < f->nmid && a == f->mid[k]) { /* the tie point alone */
        *run_end = a + 1;
        if (k & 1) k++;
    } else {
        *run_end = k < f->nmid ? f->mid[k] : 0x7f800001u; /* up to and including Inf */
    }
    if (k > f->maxcode && w->sat) k = f->satcode;
    return k;
}

static long check_run8(const uint8_t *p, size_t n, uint8_t c)
{
    uint64_t cc = 0x0101010101010101ull * c, acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        acc |= v ^ cc;
    }
    for (; i < n; i++) acc |= (uint64_t)(p[i] ^ c);
    return acc != 0;
}
static long check_run16(const uint16_t *p, size_t n, uint16_t c)
{
    uint64_t cc = 0x0001000100010001ull * c, acc = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        acc |= v ^ cc;
    }
    for (; i < n; i++) acc |= (uint64_t)(p[i] ^ c);
    return acc != 0;
}

#define WALK_CHUNK 65536u
#define NWALK 6

typedef struct walk_job {
    uint32_t lo, hi;      /* magnitudes [lo, hi) */
    uint32_t sign;        /* 0 or 0x80000000 */
    long bad;
    uint32_t first_bad;   /* first failing input */
    int which_bad;
} walk_job;

/* Checks all inputs sign | [lo, hi) (magnitudes up to 0x7fffffff) through fa_convert. */
static void *walk_thread(void *arg)
{
    walk_job *j = (walk_job *)arg;
    walk_fmt w[NWALK] = {{&R_E4M3, FA_E4M3, 1, 0}, {&R_E4M3, FA_E4M3, 0, 0},
                         {&R_E5M2, FA_E5M2, 1, 0}, {&R_E5M2, FA_E5M2, 0, 0},
                         {&R_F16, FA_F16, 0, 0},   {&R_BF16, FA_BF16, 0, 0}};
    uint32_t *in = (uint32_t *)malloc(WALK_CHUNK * 4);
    uint8_t *o8 = (uint8_t *)malloc(WALK_CHUNK);
    uint16_t *o16 = (uint16_t *)malloc(WALK_CHUNK * 2);
    uint64_t base;
    if (!in || !o8 || !o16) { j->bad = -1; goto done; }
    for (base = j->lo; base < j->hi; base += WALK_CHUNK) {
        uint32_t n = (uint32_t)(j->hi - base < WALK_CHUNK ? j->hi - base : WALK_CHUNK), i;
        int fi;
        for (i = 0; i < n; i++) in[i] = j->sign | (uint32_t)(base + i);
        for (fi = 0; fi < NWALK; fi++) {
            walk_fmt *wf = &w[fi];
            int wide = wf->dt == FA_F16 || wf->dt == FA_BF16;
            uint32_t a = (uint32_t)base, end = (uint32_t)(base + n);
            fa_convert(wide ? (void *)o16 : (void *)o8, wf->dt, in, FA_F32, n, 1.0f, wf->sat);
            while (a < end) {
                uint32_t run_end, c, stop;
                long bad;
                if (a > 0x7f800000u) { /* NaN block: pointwise */
                    for (; a < end; a++) {
                        uint32_t u = j->sign | a, want = wf->dt == FA_F16 ? ref_f16(u)
                                                         : wf->dt == FA_BF16 ? ref_bf16(u) : 0x7f;
                        uint32_t got = wide ? o16[a - base] : o8[a - base];
                        if (got != want && j->bad++ == 0) { j->first_bad = u; j->which_bad = fi; }
                    }
                    break;
                }
                c = walk_code(wf, a, &run_end);
                if (j->sign) c |= wide ? 0x8000u : 0x80u;
                stop = run_end < end ? run_end : end;
                bad = wide ? check_run16(o16 + (a - base), stop - a, (uint16_t)c)
                           : check_run8(o8 + (a - base), stop - a, (uint8_t)c);
                if (bad && j->bad++ == 0) { j->first_bad = j->sign | a; j->which_bad = fi; }
                a = stop;
            }
        }
    }
done:
    free(in); free(o8); free(o16);
    return NULL;
}

static const char *walk_name(int i)
{
    static const char *const n[NWALK] = {"e4m3 sat", "e4m3 nosat", "e5m2 sat", "e5m2 nosat",
                                         "f16", "bf16"};
    return n[i];
}

TEST(exhaustive_all_2p32_inputs_on_best_path)
{
    /* positive half on one thread, negative half on the other */
    walk_job jobs[2] = {{0, 0x80000000u, 0, 0, 0, 0}, {0, 0x80000000u, 0x80000000u, 0, 0, 0}};
    pthread_t th[2];
    int k, started[2] = {0, 0};
    if (FA_TEST_SANITIZED) return; /* the strided test below runs instead */
    printf("     (path %s)\n", fa_convert_path());
    /* hi is exclusive and 0x80000000 is one past the largest magnitude */
    for (k = 0; k < 2; k++) started[k] = pthread_create(&th[k], NULL, walk_thread, &jobs[k]) == 0;
    for (k = 0; k < 2; k++) {
        if (started[k]) pthread_join(th[k], NULL);
        else walk_thread(&jobs[k]);
    }
    for (k = 0; k < 2; k++)
        CHECKF(jobs[k].bad == 0, "%ld failing runs; first input %08x (%s)", jobs[k].bad,
               jobs[k].first_bad, walk_name(jobs[k].which_bad));
}

/* Pointwise check of one input through every scalar entry point and fa_convert. */
static int check_point(uint32_t u, int *which)
{
    float x = flt(u);
    uint8_t b[4];
    uint16_t h[2];
    int s;
    for (s = 0; s < 2; s++) {
        if (fa_f32_to_e4m3(x, s) != ref_fp8(&R_E4M3, u, s)) { *which = s; return 0; }
        if (fa_f32_to_e5m2(x, s) != ref_fp8(&R_E5M2, u, s)) { *which = 2 + s; return 0; }
    }
    if (fa_f32_to_f16(x) != ref_f16(u)) { *which = 4; return 0; }
    if (fa_f32_to_bf16(x) != ref_bf16(u)) { *which = 5; return 0; }
    fa_convert(&b[0], FA_E4M3, &x, FA_F32, 1, 1.0f, 1);
    fa_convert(&b[1], FA_E4M3, &x, FA_F32, 1, 1.0f, 0);
    fa_convert(&b[2], FA_E5M2, &x, FA_F32, 1, 1.0f, 1);
    fa_convert(&b[3], FA_E5M2, &x, FA_F32, 1, 1.0f, 0);
    fa_convert(&h[0], FA_F16, &x, FA_F32, 1, 1.0f, 0);
    fa_convert(&h[1], FA_BF16, &x, FA_F32, 1, 1.0f, 0);
    if (b[0] != ref_fp8(&R_E4M3, u, 1) || b[1] != ref_fp8(&R_E4M3, u, 0) ||
        b[2] != ref_fp8(&R_E5M2, u, 1) || b[3] != ref_fp8(&R_E5M2, u, 0) || h[0] != ref_f16(u) ||
        h[1] != ref_bf16(u)) {
        *which = 6;
        return 0;
    }
    return 1;
}

/* Checks n <= 4096 inputs through fa_convert on the current path, pointwise. */
static long check_array_vec(const uint32_t *in, uint32_t n, uint32_t *first)
{
    static uint8_t o8[4][4096];
    static uint16_t o16[2][4096];
    uint32_t i;
    long bad = 0;
    if (n > 4096) n = 4096;
    fa_convert(o8[0], FA_E4M3, in, FA_F32, n, 1.0f, 1);
    fa_convert(o8[1], FA_E4M3, in, FA_F32, n, 1.0f, 0);
    fa_convert(o8[2], FA_E5M2, in, FA_F32, n, 1.0f, 1);
    fa_convert(o8[3], FA_E5M2, in, FA_F32, n, 1.0f, 0);
    fa_convert(o16[0], FA_F16, in, FA_F32, n, 1.0f, 0);
    fa_convert(o16[1], FA_BF16, in, FA_F32, n, 1.0f, 0);
    for (i = 0; i < n; i++) {
        uint32_t u = in[i];
        if (o8[0][i] != ref_fp8(&R_E4M3, u, 1) || o8[1][i] != ref_fp8(&R_E4M3, u, 0) ||
            o8[2][i] != ref_fp8(&R_E5M2, u, 1) || o8[3][i] != ref_fp8(&R_E5M2, u, 0) ||
            o16[0][i] != ref_f16(u) || o16[1][i] != ref_bf16(u)) {
            if (bad++ == 0) *first = u;
        }
    }
    return bad;
}

static long check_range_vec(uint32_t lo, uint32_t n, uint32_t *first)
{
    static uint32_t in[4096];
    uint32_t i;
    if (n > 4096) n = 4096;
    for (i = 0; i < n; i++) in[i] = lo + i;
    return check_array_vec(in, n, first);
}

/* Every path: a stride through all 2^32 inputs plus windows around every midpoint of every
   format (where rounding decides), zero, Inf and the NaN boundary, both signs. */
TEST(every_path_matches_reference_on_strided_and_edge_inputs)
{
    unsigned masks[3] = {~0u, FA_CPU_AVX2 | FA_CPU_F16C | FA_CPU_AVX | FA_CPU_FMA | FA_CPU_SSE2, 0};
    const ref_fmt *fs[4] = {&R_E4M3, &R_E5M2, &R_F16, &R_BF16};
    int p;
    uint32_t stride = 4099u;
    for (p = 0; p < 3; p++) {
        uint64_t u;
        long bad = 0;
        uint32_t first = 0;
        int which = -1, fi;
        uint32_t k, sg;
        fa_cpu_features_override(masks[p]);
        /* scalar entry points + single-element fa_convert at strided inputs */
        for (u = 0; u < 0x100000000ull; u += stride * (p == 0 ? 1u : 4u))
            if (!check_point((uint32_t)u, &which) && bad++ == 0) first = (uint32_t)u;
        CHECKF(bad == 0, "path %s strided: %ld bad, first %08x (check %d)", fa_convert_path(),
               bad, first, which);
        bad = 0;
        /* the same stride through the vector loops, 4096 inputs per call */
        {
            static uint32_t in[4096];
            uint32_t m = 0;
            for (u = 0; u < 0x100000000ull; u += stride) {
                in[m++] = (uint32_t)u;
                if (m == 4096) { bad += check_array_vec(in, m, &first); m = 0; }
            }
            bad += check_array_vec(in, m, &first);
        }
        /* vector windows around midpoints */
        for (fi = 0; fi < 4; fi++) {
            uint32_t step = fs[fi]->nmid > 1000 ? (FA_TEST_SANITIZED ? 97u : 13u) : 1u;
            for (sg = 0; sg < 2; sg++)
                for (k = 0; k < fs[fi]->nmid; k += step) {
                    uint32_t m = fs[fi]->mid[k] | (sg << 31);
                    bad += check_range_vec(m - 40, 80, &first);
                }
        }
        for (sg = 0; sg < 2; sg++) {
            uint32_t s = sg << 31;
            bad += check_range_vec(s, 4096, &first);                 /* zero, f32 subnormals */
            bad += check_range_vec(s | (0x7f800000u - 2048), 4096, &first); /* FLT_MAX..NaN */
            bad += check_range_vec(s | (0x7fffffffu - 4095), 4096, &first);  /* last NaNs */
            bad += check_range_vec(s | (0x00800000u - 2048), 4096, &first);   /* FLT_MIN */
        }
        CHECKF(bad == 0, "path %s windows: %ld bad, first %08x", fa_convert_path(), bad, first);
    }
    fa_cpu_features_override(~0u);
}

/* ---- bulk conversion: all pairs, all paths identical to scalar -------------------------- */

static void fill_random_bits(void *p, size_t bytes)
{
    unsigned char *c = (unsigned char *)p;
    size_t i;
    for (i = 0; i < bytes; i++) c[i] = (unsigned char)fa_t_rand();
}

/* Random source data that exercises every region: raw bit patterns, and values near each
   destination's limits. */
static void fill_source(void *p, fa_dtype t, size_t n)
{
    size_t i;
    fill_random_bits(p, n * fa_dtype_size(t));
    if (t != FA_F32) return;
    for (i = 0; i < n; i += 3) {
        static const float lim[] = {448.0f, 464.0f, 480.0f, 57344.0f, 61440.0f, 65504.0f,
                                    65520.0f, 0.0009765625f, 7.62939453125e-06f, 1.0f};
        float v = lim[fa_t_randint(10)] * (float)fa_t_uniform(0.97, 1.03);
        if (fa_t_rand() & 1) v = -v;
        memcpy((unsigned char *)p + 4 * i, &v, 4);
    }
}

static float decode_any(fa_dtype t, const unsigned char *p, size_t i)
{
    uint16_t h;
    switch (t) {
    case FA_F32: { float x; memcpy(&x, p + 4 * i, 4); return x; }
    case FA_F16: memcpy(&h, p + 2 * i, 2); return fa_f16_to_f32(h);
    case FA_BF16: memcpy(&h, p + 2 * i, 2); return fa_bf16_to_f32(h);
    case FA_E4M3: return fa_e4m3_to_f32(p[i]);
    default: return fa_e5m2_to_f32(p[i]);
    }
}

/* What fa_convert must produce for one element, from the public scalar functions. */
static void expect_one(fa_dtype dt, unsigned char *d, size_t i, fa_dtype st,
                       const unsigned char *s, float scale, int sat)
{
    float x = decode_any(st, s, i);
    uint16_t h;
    /* scale == 1 must not multiply (x * 1 quiets a signalling NaN); compared as bits so the
       compiler cannot fold the branch into an unconditional multiply, as clang does */
    if (bits(scale) != bits(1.0f)) x *= scale;
    switch (dt) {
    case FA_F32:
        if (bits(scale) == bits(1.0f)) { /* a pure copy of the decoded bits */
            uint32_t u = st == FA_F32 ? 0 : bits(x);
            if (st == FA_F32) memcpy(&u, s + 4 * i, 4);
            else if (st == FA_BF16) { uint16_t b; memcpy(&b, s + 2 * i, 2); u = (uint32_t)b << 16; }
            memcpy(d + 4 * i, &u, 4);
        } else {
            memcpy(d + 4 * i, &x, 4);
        }
        break;
    case FA_F16: h = fa_f32_to_f16(x); memcpy(d + 2 * i, &h, 2); break;
    case FA_BF16: h = fa_f32_to_bf16(x); memcpy(d + 2 * i, &h, 2); break;
    case FA_E4M3: d[i] = fa_f32_to_e4m3(x, sat); break;
    default: d[i] = fa_f32_to_e5m2(x, sat); break;
    }
}

TEST(convert_all_pairs_all_paths_bit_identical_to_scalar)
{
    unsigned masks[3] = {~0u, FA_CPU_AVX2 | FA_CPU_F16C | FA_CPU_AVX | FA_CPU_FMA | FA_CPU_SSE2, 0};
    enum { N = 1000 };
    static unsigned char src[N * 4 + 64], dst[N * 4 + 64], want[N * 4 + 64];
    int st, dt, p, rep;
    for (rep = 0; rep < (FA_TEST_SANITIZED ? 2 : 6); rep++) {
        for (st = 0; st < FA_DTYPE_COUNT_; st++) {
            for (dt = 0; dt < FA_DTYPE_COUNT_; dt++) {
                size_t n = (size_t)fa_t_randint(N) + 1, off = (size_t)fa_t_randint(8), i;
                size_t es = fa_dtype_size((fa_dtype)st);
                float scale = (rep & 1) ? 1.0f : (float)fa_t_uniform(0.01, 100.0);
                int sat = rep & 2 ? 1 : 0;
                fill_source(src + off * es, (fa_dtype)st, n);
                for (i = 0; i < n; i++)
                    expect_one((fa_dtype)dt, want, i, (fa_dtype)st, src + off * es, scale, sat);
                for (p = 0; p < 3; p++) {
                    fa_status s;
                    fa_cpu_features_override(masks[p]);
                    memset(dst, 0xcd, sizeof dst);
                    s = fa_convert(dst, (fa_dtype)dt, src + off * es, (fa_dtype)st, n, scale, sat);
                    CHECK(s == FA_OK);
                    CHECKF(memcmp(dst, want, n * fa_dtype_size((fa_dtype)dt)) == 0,
                           "%s -> %s n %zu scale %g sat %d path %s", fa_dtype_name((fa_dtype)st),
                           fa_dtype_name((fa_dtype)dt), n, (double)scale, sat, fa_convert_path());
                    CHECKF(dst[n * fa_dtype_size((fa_dtype)dt)] == 0xcd, "wrote past the end");
                }
            }
        }
    }
    fa_cpu_features_override(~0u);
}

/* Outputs of FA__NT_BYTES or more take the streaming-store loop (with an unaligned head). */
TEST(convert_large_widening_outputs_match_scalar)
{
    const size_t n = ((size_t)8 << 20) / 4 + 1001;
    unsigned masks[3] = {~0u, FA_CPU_AVX2 | FA_CPU_F16C | FA_CPU_AVX | FA_CPU_FMA | FA_CPU_SSE2, 0};
    uint8_t *src = (uint8_t *)malloc(n);
    float *want = (float *)malloc((n + 1) * 4), *got = (float *)malloc((n + 1) * 4);
    int p, t;
    if (!src || !want || !got) { CHECK(0); free(src); free(want); free(got); return; }
    fill_random_bits(src, n);
    for (t = FA_E4M3; t <= FA_E5M2; t++) {
        fa_cpu_features_override(0);
        CHECK(fa_convert(want + 1, FA_F32, src, (fa_dtype)t, n, 0.5f, 0) == FA_OK);
        for (p = 0; p < 2; p++) {
            fa_cpu_features_override(masks[p]);
            CHECK(fa_convert(got + 1, FA_F32, src, (fa_dtype)t, n, 0.5f, 0) == FA_OK);
            CHECKF(memcmp(got + 1, want + 1, n * 4) == 0, "%s path %s",
                   fa_dtype_name((fa_dtype)t), fa_convert_path());
        }
    }
    fa_cpu_features_override(~0u);
    free(src); free(want); free(got);
}

TEST(convert_in_place_narrowing_and_same_size)
{
    float buf[100], ref[100];
    uint8_t want[100];
    int i;
    for (i = 0; i < 100; i++) buf[i] = ref[i] = (float)fa_t_uniform(-500, 500);
    for (i = 0; i < 100; i++) want[i] = fa_f32_to_e4m3(ref[i], 1);
    CHECK(fa_convert(buf, FA_E4M3, buf, FA_F32, 100, 1.0f, 1) == FA_OK);
    CHECK(memcmp(buf, want, 100) == 0);
    for (i = 0; i < 100; i++) buf[i] = ref[i];
    CHECK(fa_convert(buf, FA_F32, buf, FA_F32, 100, 2.0f, 0) == FA_OK);
    for (i = 0; i < 100; i++) CHECK(buf[i] == ref[i] * 2.0f);
}

TEST(convert_f32_copy_keeps_nan_payloads_and_scale_multiplies_in_f32)
{
    uint32_t in[3] = {0x7f800001u, 0xffc12345u, 0x3f800001u}, out[3];
    float x = 3.0f, y;
    CHECK(fa_convert(out, FA_F32, in, FA_F32, 3, 1.0f, 0) == FA_OK);
    CHECK(memcmp(in, out, sizeof in) == 0);
    /* 3 * (1/3 rounded) is not 1: the product is rounded to f32 before the fp8 rounding */
    CHECK(fa_convert(&y, FA_F32, &x, FA_F32, 1, 1.0f / 3.0f, 0) == FA_OK);
    CHECK(y == 3.0f * (1.0f / 3.0f));
}

/* ---- bad input ----------------------------------------------------------------------------- */

TEST(bad_input_is_rejected_and_nothing_is_written)
{
    float src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    unsigned char dst[64];
    unsigned char *mis = dst + 1;
    float amax;
    memset(dst, 0xab, sizeof dst);
    CHECK(fa_convert(NULL, FA_E4M3, src, FA_F32, 8, 1.0f, 1) == FA_ERR_NULL);
    CHECK(strstr(fa_last_error(), "dst") != NULL);
    CHECK(fa_convert(dst, FA_E4M3, NULL, FA_F32, 8, 1.0f, 1) == FA_ERR_NULL);
    CHECK(fa_convert(NULL, FA_E4M3, NULL, FA_F32, 0, 1.0f, 1) == FA_OK); /* n == 0 */
    CHECK(fa_convert(dst, (fa_dtype)7, src, FA_F32, 8, 1.0f, 1) == FA_ERR_DTYPE);
    CHECK(fa_convert(dst, FA_E4M3, src, (fa_dtype)-1, 8, 1.0f, 1) == FA_ERR_DTYPE);
    CHECK(fa_convert(dst, FA_E4M3, src, FA_F32, 8, 0.0f, 1) == FA_ERR_INVALID);
    CHECK(fa_convert(dst, FA_E4M3, src, FA_F32, 8, INFINITY, 1) == FA_ERR_INVALID);
    CHECK(fa_convert(dst, FA_E4M3, src, FA_F32, 8, NAN, 1) == FA_ERR_INVALID);
    CHECK(strstr(fa_last_error(), "scale") != NULL);
    CHECK(fa_convert(mis, FA_F16, src, FA_F32, 4, 1.0f, 1) == FA_ERR_ALIGN);
    CHECK(fa_convert(dst, FA_E4M3, (const unsigned char *)src + 2, FA_F32, 4, 1.0f, 1) ==
          FA_ERR_ALIGN);
    CHECK(fa_convert(dst, FA_E4M3, src, FA_F32, SIZE_MAX / 2, 1.0f, 1) == FA_ERR_OVERFLOW);
    CHECK(fa_convert(src + 1, FA_F32, src, FA_F32, 4, 1.0f, 1) == FA_ERR_INVALID); /* overlap */
    CHECK(fa_convert(src, FA_F32, src, FA_F16, 4, 1.0f, 1) == FA_ERR_INVALID); /* widening */
    {
        size_t i;
        int untouched = 1;
        for (i = 0; i < sizeof dst; i++) untouched &= dst[i] == 0xab;
        CHECK(untouched);
        CHECK(src[0] == 1 && src[7] == 8);
    }
    CHECK(fa_convert_sr(dst, FA_F32, src, FA_F32, 8, 1.0f, 1, 1, 0) == FA_ERR_DTYPE);
    CHECK(fa_convert_sr(dst, FA_E4M3, src, FA_F32, 8, NAN, 1, 1, 0) == FA_ERR_INVALID);
    CHECK(fa_amax(NULL, FA_F32, 4, &amax) == FA_ERR_NULL);
    CHECK(fa_amax(src, FA_F32, 4, NULL) == FA_ERR_NULL);
    CHECK(fa_amax(src, (fa_dtype)9, 4, &amax) == FA_ERR_DTYPE);
    CHECK(fa_amax(NULL, FA_F32, 0, &amax) == FA_OK && amax == 0.0f);
}

TEST(recipe_bad_input)
{
    float src[64] = {0}, si[4] = {1, 1, 1, 1};
    unsigned char dst[64];
    uint8_t sc[4] = {127, 127, 127, 255};
    fa_fp8_scaling s = {FA_E4M3, 0, 0, 0.0f};
    fa_fp8_blocks b = {2, 32, 0, 1, 16};
    fa_mx_blocks mx = {2, 32, 0, FA_MX_SCALE_UP};
    fa_fp8_delayed d;
    float f;
    size_t c;
    CHECK(fa_fp8_scale_from_amax(NULL, 1.0f, &f) == FA_ERR_NULL);
    s.fp8_type = FA_BF16;
    CHECK(fa_fp8_scale_from_amax(&s, 1.0f, &f) == FA_ERR_DTYPE);
    s.fp8_type = FA_E4M3;
    s.margin = -1;
    CHECK(fa_fp8_quantize_tensor(&s, dst, src, FA_F32, 8, &f, NULL) == FA_ERR_INVALID);
    s.margin = 0;
    CHECK(fa_fp8_quantize_tensor(&s, dst, src, FA_F32, 8, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_fp8_dequantize(src, FA_F32, dst, FA_F16, 8, 1.0f) == FA_ERR_DTYPE);
    CHECK(fa_fp8_dequantize(src, FA_F32, dst, FA_E4M3, 8, 0.0f) == FA_ERR_INVALID);
    b.block_cols = -3;
    CHECK(fa_fp8_block_scale_count(&b, &c) == FA_ERR_INVALID);
    b.block_cols = 16;
    b.ld = 8;
    CHECK(fa_fp8_quantize_blocks(&s, &b, dst, src, FA_F32, si) == FA_ERR_SHAPE);
    b.ld = 0;
    CHECK(fa_fp8_block_scale_count(&b, &c) == FA_OK && c == 4);
    si[2] = 0.0f;
    memset(src, 0, sizeof src);
    CHECK(fa_fp8_dequantize_blocks(&b, src, FA_F32, dst, FA_E4M3, si) == FA_ERR_INVALID);
    CHECK(fa_mx_scale_count(&mx, &c) == FA_OK && c == 2);
    CHECK(fa_mx_dequantize(&mx, src, FA_F32, dst, FA_E4M3, sc + 2) == FA_ERR_INVALID); /* 0xFF */
    mx.rule = (fa_mx_scale_rule)9;
    CHECK(fa_mx_quantize(&mx, FA_E4M3, dst, src, FA_F32, sc) == FA_ERR_INVALID);
    CHECK(fa_fp8_delayed_init(&d, FA_E4M3, 0, FA_AMAX_MAX, 0) == FA_ERR_INVALID);
    CHECK(fa_fp8_delayed_init(&d, FA_E4M3, FA_FP8_HISTORY_MAX + 1, FA_AMAX_MAX, 0) ==
          FA_ERR_INVALID);
    CHECK(fa_fp8_delayed_init(&d, FA_F32, 4, FA_AMAX_MAX, 0) == FA_ERR_DTYPE);
    memset(&d, 0, sizeof d);
    CHECK(fa_fp8_delayed_update(&d) == FA_ERR_INVALID); /* never initialised */
    {
        int untouched = 1, i;
        for (i = 0; i < 64; i++) untouched &= src[i] == 0.0f;
        CHECK(untouched);
    }
}

/* ---- amax ---------------------------------------------------------------------------------- */

TEST(amax_all_types_all_paths_ignore_nan)
{
    unsigned masks[3] = {~0u, FA_CPU_AVX2 | FA_CPU_F16C | FA_CPU_AVX | FA_CPU_FMA | FA_CPU_SSE2, 0};
    static unsigned char buf[4 * 777];
    int t, p, rep;
    for (rep = 0; rep < 20; rep++) {
        for (t = 0; t < FA_DTYPE_COUNT_; t++) {
            size_t n = (size_t)fa_t_randint(777) + 1, i;
            float want = 0.0f;
            fill_random_bits(buf, sizeof buf);
            for (i = 0; i < n; i++) {
                float a = fabsf(decode_any((fa_dtype)t, buf, i));
                if (a > want) want = a; /* NaN compares false: skipped */
            }
            for (p = 0; p < 3; p++) {
                float got = -1;
                fa_cpu_features_override(masks[p]);
                CHECK(fa_amax(buf, (fa_dtype)t, n, &got) == FA_OK);
                CHECKF(bits(got) == bits(want), "%s n %zu path %s: %g vs %g",
                       fa_dtype_name((fa_dtype)t), n, fa_convert_path(), (double)got,
                       (double)want);
            }
        }
    }
    fa_cpu_features_override(~0u);
    {
        float v[3] = {NAN, -INFINITY, 2.0f}, a;
        CHECK(fa_amax(v, FA_F32, 3, &a) == FA_OK && a == INFINITY);
        v[1] = -5.0f;
        CHECK(fa_amax(v, FA_F32, 3, &a) == FA_OK && a == 5.0f);
    }
}

/* ---- scaling recipes ----------------------------------------------------------------------- */

/* |deq - x| bound for one E4M3/E5M2 rounding of x*scale, mapped back by 1/scale: half an ulp
   relative (2^-4 E4M3, 2^-3 E5M2) plus half the smallest subnormal. */
static int within_fp8_error(float x, float deq, fa_dtype t, float scale)
{
    double rel = t == FA_E4M3 ? 0.0625 : 0.125;
    double sub = t == FA_E4M3 ? 0.0009765625 : 7.62939453125e-06;
    double err = fabs((double)deq - (double)x);
    return err <= rel * fabs((double)x) + sub / scale + 1e-30;
}

TEST(per_tensor_scale_values_and_round_trip)
{
    fa_fp8_scaling s = {FA_E4M3, 0, 0, 0.0f};
    enum { N = 3000 };
    static float x[N], y[N];
    static uint8_t q[N];
    float sc, si, amax;
    int i;
    CHECK(fa_fp8_scale_from_amax(&s, 2.0f, &sc) == FA_OK && sc == 224.0f);
    s.margin = 2;
    CHECK(fa_fp8_scale_from_amax(&s, 2.0f, &sc) == FA_OK && sc == 56.0f);
    s.margin = 0;
    s.pow2_scale = 1;
    CHECK(fa_fp8_scale_from_amax(&s, 3.0f, &sc) == FA_OK && sc == 128.0f); /* 149.33 -> 128 */
    s.pow2_scale = 0;
    CHECK(fa_fp8_scale_from_amax(&s, 0.0f, &sc) == FA_OK && sc == 1.0f);
    CHECK(fa_fp8_scale_from_amax(&s, INFINITY, &sc) == FA_OK && sc == 1.0f);
    CHECK(fa_fp8_scale_from_amax(&s, NAN, &sc) == FA_OK && sc == 1.0f);
    CHECK(fa_fp8_scale_from_amax(&s, 1e-44f, &sc) == FA_OK && sc == FLT_MAX);
    s.epsilon = 1.0f;
    CHECK(fa_fp8_scale_from_amax(&s, 0.5f, &sc) == FA_OK && sc == 448.0f);
    s.epsilon = 0.0f;
    s.fp8_type = FA_E5M2;
    CHECK(fa_fp8_scale_from_amax(&s, 2.0f, &sc) == FA_OK && sc == 28672.0f);
    for (s.fp8_type = FA_E4M3; s.fp8_type <= FA_E5M2; s.fp8_type = (fa_dtype)(s.fp8_type + 1)) {
        for (i = 0; i < N; i++) x[i] = (float)(fa_t_normal() * 0.03);
        x[17] = -0.3f; /* the amax */
        CHECK(fa_fp8_quantize_tensor(&s, q, x, FA_F32, N, &si, &amax) == FA_OK);
        CHECK(amax == 0.3f);
        CHECK(si == 1.0f / (fa_fp8_max(s.fp8_type) / 0.3f));
        CHECK(q[17] == (s.fp8_type == FA_E4M3 ? 0xfe : 0xfb)); /* amax lands on -max */
        CHECK(fa_fp8_dequantize(y, FA_F32, q, s.fp8_type, N, si) == FA_OK);
        for (i = 0; i < N; i++)
            CHECKF(within_fp8_error(x[i], y[i], s.fp8_type, 1.0f / si), "%d: %g -> %g", i,
                   (double)x[i], (double)y[i]);
    }
}

TEST(per_block_1xN_and_NxN_scales_and_round_trip)
{
    fa_fp8_scaling s = {FA_E4M3, 0, 0, 0.0f};
    enum { R = 70, C = 300, LD = 310 };
    static float x[R * LD], y[R * LD];
    static uint8_t q[R * LD];
    float si[64 * 8];
    int shape, i, j;
    for (i = 0; i < R * LD; i++) x[i] = (float)(fa_t_normal() * (1 + i % 7) * 0.1);
    for (shape = 0; shape < 2; shape++) {
        fa_fp8_blocks b = {R, C, LD, shape ? 32 : 1, shape ? 32 : 128};
        size_t cnt;
        int64_t br = b.block_rows, bc = b.block_cols, nbr = (R - 1) / br + 1, nbc = (C - 1) / bc + 1;
        CHECK(fa_fp8_block_scale_count(&b, &cnt) == FA_OK && cnt == (size_t)(nbr * nbc));
        memset(y, 0, sizeof y);
        CHECK(fa_fp8_quantize_blocks(&s, &b, q, x, FA_F32, si) == FA_OK);
        for (i = 0; i < nbr; i++)
            for (j = 0; j < nbc; j++) {
                float amax = 0, want;
                int r, c;
                for (r = (int)(i * br); r < (int)((i + 1) * br) && r < R; r++)
                    for (c = (int)(j * bc); c < (int)((j + 1) * bc) && c < C; c++)
                        if (fabsf(x[r * LD + c]) > amax) amax = fabsf(x[r * LD + c]);
                want = 1.0f / (448.0f / amax);
                CHECKF(si[i * nbc + j] == want, "block %d,%d: %g vs %g", i, j,
                       (double)si[i * nbc + j], (double)want);
            }
        CHECK(fa_fp8_dequantize_blocks(&b, y, FA_F32, q, FA_E4M3, si) == FA_OK);
        for (i = 0; i < R; i++)
            for (j = 0; j < LD; j++) {
                if (j >= C) { CHECK(y[i * LD + j] == 0.0f); continue; } /* padding untouched */
                {
                    float scl = 1.0f / si[(i / br) * nbc + j / bc];
                    CHECKF(within_fp8_error(x[i * LD + j], y[i * LD + j], FA_E4M3, scl),
                           "%d,%d", i, j);
                }
            }
    }
}

TEST(mxfp8_scale_rules_and_round_trip)
{
    enum { R = 5, C = 100 };
    static float x[R * C], y[R * C];
    static uint8_t q[R * C], sc[R * 4];
    int rule, t, i, j;
    for (t = FA_E4M3; t <= FA_E5M2; t++) {
        for (rule = 0; rule < 3; rule++) {
            fa_mx_blocks b = {R, C, 0, (fa_mx_scale_rule)rule};
            for (i = 0; i < R * C; i++)
                x[i] = (float)(fa_t_normal() * ldexp(1.0, (int)fa_t_randint(40) - 20));
            x[3] = 0.0f; /* rows 1.. get an all-zero block */
            for (i = 32; i < 64; i++) x[C + i] = 0.0f;
            CHECK(fa_mx_quantize(&b, (fa_dtype)t, q, x, FA_F32, sc) == FA_OK);
            CHECK(sc[1 * 4 + 1] == 0); /* all-zero block: 2^-127 */
            for (i = 0; i < R; i++)
                for (j = 0; j < 4; j++) {
                    float amax = 0, mx = fa_fp8_max((fa_dtype)t);
                    int c, e, want;
                    for (c = j * 32; c < j * 32 + 32 && c < C; c++)
                        if (fabsf(x[i * C + c]) > amax) amax = fabsf(x[i * C + c]);
                    if (amax == 0) continue;
                    if (rule == FA_MX_SCALE_OCP) {
                        frexpf(amax, &e); /* amax = f * 2^e, f in [0.5, 1): floor(log2) = e-1 */
                        want = e - 1 - (t == FA_E4M3 ? 8 : 15) + 127;
                    } else {
                        frexpf(amax / mx, &e);
                        want = (rule == FA_MX_SCALE_UP && ldexpf(1.0f, e - 1) != amax / mx)
                                   ? e + 127 : e - 1 + 127;
                    }
                    CHECKF(sc[i * 4 + j] == want, "type %d rule %d block %d,%d: %d vs %d", t,
                           rule, i, j, sc[i * 4 + j], want);
                    if (rule == FA_MX_SCALE_UP) /* rounding the scale up never clips */
                        CHECK(amax / fa_e8m0_to_f32(sc[i * 4 + j]) <= mx);
                }
            CHECK(fa_mx_dequantize(&b, y, FA_F32, q, (fa_dtype)t, sc) == FA_OK);
            for (i = 0; i < R * C; i++) {
                float X = fa_e8m0_to_f32(sc[(i / C) * 4 + (i % C) / 32]);
                float mx = fa_fp8_max((fa_dtype)t) * X;
                float xc = fabsf(x[i]) > mx ? copysignf(mx, x[i]) : x[i]; /* clipped */
                CHECKF(within_fp8_error(xc, y[i], (fa_dtype)t, 1.0f / X), "rule %d %d: %g -> %g",
                       rule, i, (double)x[i], (double)y[i]);
                /* elements are exactly the FP8 rounding of x / X */
                CHECK(q[i] == (t == FA_E4M3 ? fa_f32_to_e4m3(x[i] / X, 1)
                                            : fa_f32_to_e5m2(x[i] / X, 1)));
            }
        }
    }
}

/* Transformer Engine's delayed scaling, replayed by hand for a few steps. */
TEST(delayed_scaling_follows_transformer_engine)
{
    fa_fp8_delayed d;
    float x[4], si;
    uint8_t q[4];
    int step;
    float amaxes[6] = {2.0f, 8.0f, 1.0f, 0.5f, 0.25f, 0.0f};
    CHECK(fa_fp8_delayed_init(&d, FA_E4M3, 3, FA_AMAX_MAX, 1) == FA_OK);
    CHECK(d.scale == 1.0f && d.scale_inv == 1.0f);
    for (step = 0; step < 6; step++) {
        float want_scale_used = d.scale, expect_amax = 0;
        int k;
        x[0] = amaxes[step]; x[1] = -amaxes[step] / 2; x[2] = 0; x[3] = NAN;
        CHECK(fa_fp8_delayed_quantize(&d, q, x, FA_F32, 4, &si) == FA_OK);
        CHECK(si == 1.0f / want_scale_used);
        CHECK(q[0] == fa_f32_to_e4m3(x[0] * want_scale_used, 1));
        CHECK(d.amax_history[0] == amaxes[step]); /* NaN ignored */
        CHECK(fa_fp8_delayed_update(&d) == FA_OK);
        /* the window covers this step and the two before it */
        for (k = step - 2; k <= step; k++)
            if (k >= 0 && amaxes[k] > expect_amax) expect_amax = amaxes[k];
        if (expect_amax > 0)
            CHECKF(d.scale == 224.0f / expect_amax, "step %d scale %g", step, (double)d.scale);
        CHECK(d.amax_history[0] == 0.0f && d.amax_history[2] == amaxes[step]);
    }
    /* step 5 saw amax 0 but the window max (0.5) still drives the scale */
    CHECK(d.scale == 224.0f / 0.5f);
    /* most_recent: zero amax keeps the previous scale */
    CHECK(fa_fp8_delayed_init(&d, FA_E5M2, 1, FA_AMAX_MOST_RECENT, 0) == FA_OK);
    x[0] = 4.0f;
    CHECK(fa_fp8_delayed_quantize(&d, q, x, FA_F32, 1, &si) == FA_OK);
    CHECK(fa_fp8_delayed_update(&d) == FA_OK && d.scale == 57344.0f / 4.0f);
    x[0] = 0.0f;
    CHECK(fa_fp8_delayed_quantize(&d, q, x, FA_F32, 1, &si) == FA_OK && si == 4.0f / 57344.0f);
    CHECK(fa_fp8_delayed_update(&d) == FA_OK && d.scale == 57344.0f / 4.0f);
}

/* ---- stochastic rounding ------------------------------------------------------------------- */

TEST(stochastic_rounding_is_unbiased_and_reproducible)
{
    enum { N = 40000 };
    static float x[N];
    static uint8_t q[N], q2[N];
    static uint16_t h[N];
    const float vals[] = {1.1f, -3.3f, 0.0013f, 300.0f, 1e-5f, 440.0f};
    size_t vi;
    int i;
    for (vi = 0; vi < sizeof vals / sizeof vals[0]; vi++) {
        double sum = 0, lo, hi, p, sd;
        float v = vals[vi];
        for (i = 0; i < N; i++) x[i] = v;
        CHECK(fa_convert_sr(q, FA_E4M3, x, FA_F32, N, 1.0f, 1, 1234 + vi, 0) == FA_OK);
        /* neighbours of v */
        lo = fa_e4m3_to_f32(fa_f32_to_e4m3(v, 1));
        for (i = 0; i < N; i++) sum += fa_e4m3_to_f32(q[i]);
        {
            double a = fabs((double)v), l = fabs(lo), u;
            uint8_t c = fa_f32_to_e4m3(fabsf(v), 1);
            if (l > a) c--; /* RNE went up: the lower neighbour is one code below */
            l = fa_e4m3_to_f32(c);
            u = c == 0x7e ? 448.0 : fa_e4m3_to_f32((uint8_t)(c + 1));
            hi = u;
            lo = l;
            p = (a - lo) / (hi - lo);
            sd = (hi - lo) * sqrt(p * (1 - p) / N) + 1e-12;
            for (i = 0; i < N; i++)
                CHECK(fabsf(fa_e4m3_to_f32(q[i])) == (float)lo ||
                      fabsf(fa_e4m3_to_f32(q[i])) == (float)hi);
            CHECKF(fabs(fabs(sum / N) - a) <= 5 * sd, "v %g mean %g sd %g", (double)v,
                   sum / N, sd);
        }
        /* same seed, pieces with advancing offsets: identical */
        CHECK(fa_convert_sr(q2, FA_E4M3, x, FA_F32, 1000, 1.0f, 1, 1234 + vi, 0) == FA_OK);
        CHECK(fa_convert_sr(q2 + 1000, FA_E4M3, x + 1000, FA_F32, N - 1000, 1.0f, 1, 1234 + vi,
                            1000) == FA_OK);
        CHECK(memcmp(q, q2, N) == 0);
    }
    /* another seed gives another draw; representable values never move */
    CHECK(fa_convert_sr(q2, FA_E4M3, x, FA_F32, N, 1.0f, 1, 99, 0) == FA_OK);
    CHECK(memcmp(q, q2, N) != 0);
    for (i = 0; i < N; i++) x[i] = fa_e4m3_to_f32((uint8_t)(i % 0x7e));
    CHECK(fa_convert_sr(q, FA_E4M3, x, FA_F32, N, 1.0f, 1, 7, 0) == FA_OK);
    for (i = 0; i < N; i++) CHECK(q[i] == (uint8_t)(i % 0x7e));
    /* bf16 and f16: unbiased too */
    for (i = 0; i < N; i++) x[i] = 1.0f + 1.0f / 1024.0f; /* 1/8 ulp of bf16 above 1 */
    CHECK(fa_convert_sr(h, FA_BF16, x, FA_F32, N, 1.0f, 0, 5, 0) == FA_OK);
    {
        double sum = 0, sd = (1.0 / 128) * sqrt(0.125 * 0.875 / N);
        for (i = 0; i < N; i++) sum += fa_bf16_to_f32(h[i]);
        CHECK(fabs(sum / N - (1.0 + 1.0 / 1024)) <= 5 * sd);
    }
    CHECK(fa_convert_sr(h, FA_F16, x, FA_F32, N, 1.0f, 0, 5, 0) == FA_OK);
    for (i = 0; i < N; i++) CHECK(h[i] == 0x3c01); /* exactly representable in f16 */
    /* overflow handling matches the format */
    x[0] = 470.0f;
    x[1] = INFINITY;
    CHECK(fa_convert_sr(q, FA_E4M3, x, FA_F32, 2, 1.0f, 1, 5, 0) == FA_OK);
    CHECK(q[0] == 0x7e && q[1] == 0x7e);
    CHECK(fa_convert_sr(q, FA_E5M2, x + 1, FA_F32, 1, 1.0f, 0, 5, 0) == FA_OK && q[0] == 0x7c);
}

int main(void)
{
    fa_test_init();
    if (!ref_build(&R_E4M3) || !ref_build(&R_E5M2) || !ref_build(&R_F16) || !ref_build(&R_BF16)) {
        printf("reference tables could not be built\n");
        return 1;
    }
    RUN(reference_tables_match_known_values);
    RUN(all_256_fp8_decodes_are_exact);
    RUN(all_65536_f16_and_bf16_decodes_are_exact);
    RUN(all_256_e8m0_decodes);
    RUN(e4m3_edges_448_464_480);
    RUN(e5m2_edges_57344_61440);
    RUN(subnormal_edges_2em9_2em10_2em16_2em17);
    RUN(zero_inf_nan_payloads);
    RUN(e8m0_conversion_rules);
    RUN(f16_and_bf16_to_fp8_round_once);
    RUN(every_path_matches_reference_on_strided_and_edge_inputs);
    RUN(exhaustive_all_2p32_inputs_on_best_path);
    RUN(convert_all_pairs_all_paths_bit_identical_to_scalar);
    RUN(convert_large_widening_outputs_match_scalar);
    RUN(convert_in_place_narrowing_and_same_size);
    RUN(convert_f32_copy_keeps_nan_payloads_and_scale_multiplies_in_f32);
    RUN(bad_input_is_rejected_and_nothing_is_written);
    RUN(recipe_bad_input);
    RUN(amax_all_types_all_paths_ignore_nan);
    RUN(per_tensor_scale_values_and_round_trip);
    RUN(per_block_1xN_and_NxN_scales_and_round_trip);
    RUN(mxfp8_scale_rules_and_round_trip);
    RUN(delayed_scaling_follows_transformer_engine);
    RUN(stochastic_rounding_is_unbiased_and_reproducible);
    free(R_E4M3.mid); free(R_E5M2.mid); free(R_F16.mid); free(R_BF16.mid);
    return fa_test_summary();
}
