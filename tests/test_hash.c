/* tests/test_hash.c - hash section: fa_map, fa_lru, fa_cmap, fa_clru.

   Property tests drive each table and a trivially correct reference model with the same random
   operations and compare every result; the group-matching SIMD paths are compared with their
   SWAR twin; bad input and allocation failure (injected at every allocation point) must leave
   tables valid and unchanged; threaded stress tests check fa_cmap and fa_clru for lost updates
   and torn reads. This file also runs under ThreadSanitizer: FA_TEST_TSAN. */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <pthread.h>
#include <string.h>

#ifndef FA_TEST_SANITIZED
#define FA_TEST_SANITIZED 0
#endif
/* Work scale: the optimised build runs millions of operations, sanitizer builds far fewer. */
#define SCALE(n) (FA_TEST_SANITIZED ? (n) / 5 + 1 : (n))

/* ---- a counting allocator that can fail the k-th allocation ---- */
typedef struct talloc {
    long calls, live, fail_at; /* fail_at: call number to fail (0-based); -1 = never */
    size_t live_bytes;
} talloc;
static void *t_alloc(void *user, size_t bytes, size_t align)
{
    talloc *t = (talloc *)user;
    void *p;
    if (t->fail_at >= 0 && t->calls++ == t->fail_at) return NULL;
    if (t->fail_at < 0) t->calls++;
    p = fa_aligned_alloc(bytes, align);
    if (p) {
        t->live++;
        t->live_bytes += bytes;
        CHECKF(((uintptr_t)p & (align - 1)) == 0, "align %zu", align);
    }
    return p;
}
static void t_free(void *user, void *p, size_t bytes)
{
    talloc *t = (talloc *)user;
    t->live--;
    t->live_bytes -= bytes;
    fa_aligned_free(p);
}
static fa_allocator t_allocator(talloc *t)
{
    fa_allocator a;
    a.alloc = t_alloc;
    a.free = t_free;
    a.user = t;
    return a;
}

/* ---- key/value generation: universe index u -> key bytes, (u, version) -> value bytes ---- */
enum { KEY_PLAIN, KEY_HIGH_BYTES, KEY_IDENTITY_HASH, KEY_LOWBITS_HASH, KEY_FEW_HASHES };
static void make_key(uint8_t *k, size_t ks, uint64_t u, int mode)
{
    size_t i;
    uint64_t x = u * 0x9e3779b97f4a7c15ull;
    if (mode == KEY_HIGH_BYTES) {
        /* keys differ only in their last bytes; everything before is constant */
        memset(k, 0xA5, ks);
        for (i = 0; i < ks && i < 8; i++) k[ks - 1 - i] = (uint8_t)(u >> (8 * i));
        return;
    }
    for (i = 0; i < ks; i++) k[i] = (uint8_t)(x >> (8 * (i % 8))) ^ (uint8_t)(i * 17);
    for (i = 0; i < ks && i < 8; i++) k[i] = (uint8_t)(u >> (8 * i)); /* distinct per u */
}
static void make_val(uint8_t *v, size_t vs, uint64_t u, uint64_t ver)
{
    size_t i;
    uint64_t x = (u * 1000003u + ver) * 0xbf58476d1ce4e5b9ull;
    for (i = 0; i < vs; i++) v[i] = (uint8_t)(x >> (8 * (i % 8))) + (uint8_t)i;
}
static uint64_t key_u(const uint8_t *k, size_t ks, int mode)
{
    uint64_t u = 0;
    size_t i;
    if (mode == KEY_HIGH_BYTES) {
        for (i = 0; i < ks && i < 8; i++) u |= (uint64_t)k[ks - 1 - i] << (8 * i);
        return u;
    }
    for (i = 0; i < ks && i < 8; i++) u |= (uint64_t)k[i] << (8 * i);
    return u;
}
/* User hashes for adversarial runs: identity (sequential keys collide in low bits after a
   naive mask), a hash whose low 40 bits are always zero, and one with only 16 values. */
static uint64_t h_identity(const void *k, size_t ks, void *user)
{
    uint64_t u = 0;
    (void)user;
    memcpy(&u, k, ks < 8 ? ks : 8);
    return u;
}
static uint64_t h_lowbits(const void *k, size_t ks, void *user) { return h_identity(k, ks, user) << 40; }
static uint64_t h_few(const void *k, size_t ks, void *user) { return h_identity(k, ks, user) & 15; }
static int eq_bytes(const void *a, const void *b, size_t ks, void *user)
{
    (void)user;
    return memcmp(a, b, ks) == 0;
}

/* Structural invariants of an fa_map, checked against its private fields. */
static int map_invariants_ok(const fa_map *m)
{
    size_t i, full = 0, del = 0, n = m->slot_count_;
    if (n == 0) return m->count_ == 0;
    for (i = 0; i < n; i++) {
        if (m->ctrl_[i] == 0x80) continue;
        if (m->ctrl_[i] == 0xFE) del++;
        else if (m->ctrl_[i] < 0x80) {
            full++;
            if (fa_map_find(m, m->slots_ + i * m->slot_size_) == NULL) return 0;
        } else return 0;
    }
    return full == m->count_ && del == m->tombstones_ &&
           m->growth_left_ == n - n / 8 - m->count_ - m->tombstones_;
}

typedef struct model {
    uint8_t *present;
    uint64_t *ver;
    size_t count;
} model;

/* Random operations on an fa_map and the model, every result compared. */
static void map_vs_model(size_t ks, size_t vs, int mode, uint64_t universe, long ops, int use_alloc)
{
    fa_map m;
    fa_map_desc d;
    model md;
    talloc ta = {0, 0, -1, 0};
    fa_allocator al = t_allocator(&ta);
    uint8_t key[64], val[64], out[64];
    long op;
    uint64_t ver = 1;
    memset(&d, 0, sizeof d);
    d.key_size = ks;
    d.value_size = vs;
    if (mode == KEY_IDENTITY_HASH) d.hash = h_identity;
    if (mode == KEY_LOWBITS_HASH) { d.hash = h_lowbits; d.eq = eq_bytes; }
    if (mode == KEY_FEW_HASHES) d.hash = h_few;
    if (use_alloc) d.allocator = &al;
    d.capacity = (size_t)fa_t_randint(3) * 100;
    CHECK(fa_map_init(&m, &d) == FA_OK);
    md.present = (uint8_t *)calloc(universe, 1);
    md.ver = (uint64_t *)calloc(universe, sizeof(uint64_t));
    md.count = 0;
    for (op = 0; op < ops; op++) {
        uint64_t u = (uint64_t)fa_t_randint((int64_t)universe);
        int r = (int)fa_t_randint(100);
        void *vp = NULL;
        fa_status st;
        make_key(key, ks, u, mode);
        if (r < 30) { /* insert */
            make_val(val, vs, u, ver);
            st = fa_map_insert(&m, key, val, &vp);
            if (md.present[u]) {
                CHECKF(st == FA_ERR_EXISTS, "insert existing -> %s", fa_status_str(st));
                make_val(val, vs, u, md.ver[u]);
            } else {
                CHECKF(st == FA_OK, "insert -> %s", fa_status_str(st));
                md.present[u] = 1;
                md.ver[u] = ver;
                md.count++;
            }
            ver++;
            CHECK(vp != NULL && (vs == 0 ? memcmp(vp, key, ks) == 0 : memcmp(vp, val, vs) == 0));
        } else if (r < 42) { /* insert or assign */
            make_val(val, vs, u, ver);
            st = fa_map_insert_or_assign(&m, key, val, &vp);
            CHECK(st == FA_OK);
            if (!md.present[u]) md.count++;
            md.present[u] = 1;
            md.ver[u] = ver++;
        } else if (r < 65) { /* find */
            vp = fa_map_find(&m, key);
            CHECKF((vp != NULL) == (md.present[u] != 0), "find u=%llu", (unsigned long long)u);
            if (vp && md.present[u]) {
                make_val(val, vs, u, md.ver[u]);
                CHECK(vs == 0 ? memcmp(vp, key, ks) == 0 : memcmp(vp, val, vs) == 0);
            }
        } else if (r < 70) { /* get */
            memset(out, 0xEE, sizeof out);
            st = fa_map_get(&m, key, out);
            CHECK(st == (md.present[u] ? FA_OK : FA_ERR_NOT_FOUND));
            if (st == FA_OK) {
                make_val(val, vs, u, md.ver[u]);
                CHECK(memcmp(out, val, vs) == 0);
            } else CHECK(out[0] == 0xEE);
        } else if (r < 98) { /* erase */
            st = fa_map_erase(&m, key, out);
            CHECK(st == (md.present[u] ? FA_OK : FA_ERR_NOT_FOUND));
            if (st == FA_OK) {
                make_val(val, vs, u, md.ver[u]);
                CHECK(memcmp(out, val, vs) == 0);
                md.present[u] = 0;
                md.count--;
            }
        } else if (r < 99 && fa_t_randint(50) == 0) {
            CHECK(fa_map_reserve(&m, md.count + (size_t)fa_t_randint(2000)) == FA_OK);
        } else if (fa_t_randint(2000) == 0) {
            fa_map_clear(&m);
            memset(md.present, 0, universe);
            md.count = 0;
        }
        CHECK(fa_map_count(&m) == md.count);
        if (op % 20000 == 0 || op == ops - 1) {
            /* full comparison: iteration visits each live key exactly once */
            size_t it = 0, seen = 0;
            const void *k;
            void *v;
            uint8_t *mark = (uint8_t *)calloc(universe, 1);
            while (fa_map_next(&m, &it, &k, &v)) {
                uint64_t ku = key_u((const uint8_t *)k, ks, mode);
                seen++;
                CHECKF(ku < universe && md.present[ku] && !mark[ku], "iterated key %llu", (unsigned long long)ku);
                if (ku < universe) mark[ku] = 1;
                if (vs && ku < universe) {
                    make_val(val, vs, ku, md.ver[ku]);
                    CHECK(memcmp(v, val, vs) == 0);
                }
            }
            CHECK(seen == md.count);
            CHECK(map_invariants_ok(&m));
            free(mark);
        }
    }
    fa_map_destroy(&m);
    if (use_alloc) CHECKF(ta.live == 0 && ta.live_bytes == 0, "leak: %ld blocks", ta.live);
    free(md.present);
    free(md.ver);
}

TEST(map_matches_model_for_many_key_and_value_sizes)
{
    static const size_t ks[] = {1, 2, 3, 4, 7, 8, 12, 16, 24, 33, 64};
    static const size_t vs[] = {0, 1, 4, 8, 3, 24, 8, 16, 0, 5, 64};
    size_t i;
    for (i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        uint64_t uni = ks[i] == 1 ? 256 : ks[i] == 2 ? 20000 : 30000;
        map_vs_model(ks[i], vs[i], KEY_PLAIN, uni, SCALE(200000), (int)(i & 1));
        map_vs_model(ks[i], vs[(i + 3) % 11], KEY_HIGH_BYTES, uni, SCALE(60000), 0);
    }
}

TEST(map_8byte_fast_path_matches_model_millions_of_ops)
{
    map_vs_model(8, 8, KEY_PLAIN, 200000, SCALE(2000000), 0);
    map_vs_model(8, 8, KEY_HIGH_BYTES, 3000, SCALE(500000), 1);
}

TEST(map_adversarial_hashes_stay_correct)
{
    map_vs_model(8, 8, KEY_IDENTITY_HASH, 50000, SCALE(300000), 0);
    map_vs_model(16, 4, KEY_LOWBITS_HASH, 50000, SCALE(300000), 0);
    map_vs_model(8, 8, KEY_FEW_HASHES, 600, SCALE(40000), 0); /* 16 distinct hashes only */
}

TEST(map_swar_path_matches_model)
{
    fa_cpu_features_override(0); /* no SSE2/AVX2/NEON: the SWAR twin everywhere */
    map_vs_model(8, 8, KEY_PLAIN, 50000, SCALE(300000), 0);
    map_vs_model(5, 3, KEY_PLAIN, 20000, SCALE(100000), 0);
    fa_cpu_features_override(~0u);
}

/* The SIMD group primitives and the SWAR twins agree on random and edge-case control bytes. */
TEST(group_match_simd_equals_swar)
{
    long it;
    int path = fa__h_pick_path() & 15;
    FA_T_UNUSED static const uint8_t states[] = {0x80, 0xFE, 0x00, 0x7F, 0x01, 0x55};
    static uint8_t g[64];
    uint8_t *grp = g + (16 - ((uintptr_t)g & 15)) % 16;
    for (it = 0; it < SCALE(200000); it++) {
        unsigned tag = (unsigned)fa_t_randint(128), i;
        uint64_t ms, me, mf, ref_m = 0, ref_e = 0, ref_f = 0, w0, w1;
        for (i = 0; i < 16; i++) {
            grp[i] = fa_t_randint(3) ? states[fa_t_randint(6)] : (uint8_t)fa_t_randint(128);
            if (fa_t_randint(8) == 0) grp[i] = (uint8_t)tag;
            if (grp[i] == tag) ref_m |= 1u << i;
            if (grp[i] == 0x80) ref_e |= 1u << i;
            if (grp[i] & 0x80) ref_f |= 1u << i;
        }
        ms = fa__g_match(grp, tag, FA__PATH_SWAR);
        me = fa__g_empty(grp, FA__PATH_SWAR);
        mf = fa__g_free(grp, FA__PATH_SWAR);
        CHECKF(ms == ref_m && me == ref_e && mf == ref_f, "swar %llx %llx %llx", (unsigned long long)ms,
               (unsigned long long)me, (unsigned long long)mf);
        if (path != FA__PATH_SWAR) {
            uint64_t a = 0, b = 0, c = 0, x;
            for (x = fa__g_match(grp, tag, path); x; x &= x - 1) a |= 1u << fa__g_idx(x, path);
            for (x = fa__g_empty(grp, path); x; x &= x - 1) b |= 1u << fa__g_idx(x, path);
            for (x = fa__g_free(grp, path); x; x &= x - 1) c |= 1u << fa__g_idx(x, path);
            CHECK(a == ref_m && b == ref_e && c == ref_f);
        }
        memcpy(&w0, grp, 8);
        memcpy(&w1, grp + 8, 8);
        {
            uint64_t a = 0, x;
            for (x = fa__gw_match(w0, w1, tag, path); x; x &= x - 1) a |= 1u << fa__g_idx(x, path);
            CHECK(a == ref_m);
            CHECK(fa__gw_empty(w0, w1, path == FA__PATH_NEON ? FA__PATH_SWAR : path) == ref_e);
        }
        /* iteration scan: SWAR, SSE2/NEON and AVX2 find the same next full slot */
        {
            static uint8_t big[256 + 64];
            uint8_t *c = big + (64 - ((uintptr_t)big & 63)) % 64;
            size_t start = (size_t)fa_t_randint(256), j, ref = 256;
            for (j = 0; j < 256; j++) c[j] = fa_t_randint(40) ? (fa_t_randint(2) ? 0x80 : 0xFE) : 0x11;
            for (j = start; j < 256; j++)
                if (!(c[j] & 0x80)) { ref = j; break; }
            CHECK(fa__ctrl_next_full(c, start, 256, FA__PATH_SWAR) == ref);
            CHECK(fa__ctrl_next_full(c, start, 256, path) == ref);
#if defined(FA__X86)
            if (fa_cpu_features() & FA_CPU_AVX2) CHECK(fa__ctrl_next_full_avx2(c, start, 256) == ref);
#endif
        }
    }
}

TEST(map_find_batch_equals_find)
{
    static const size_t ks[] = {8, 3, 16};
    size_t c;
    for (c = 0; c < 3; c++) {
        fa_map m;
        fa_map_desc d;
        size_t n = 5000, q = 1237, i, found = 0;
        uint8_t *keys = (uint8_t *)malloc(q * ks[c]);
        void **out = (void **)malloc(q * sizeof(void *));
        memset(&d, 0, sizeof d);
        d.key_size = ks[c];
        d.value_size = 8;
        CHECK(fa_map_init(&m, &d) == FA_OK);
        CHECK(fa_map_find_batch(&m, keys, 0, out) == 0);
        for (i = 0; i < q; i++) make_key(keys + i * ks[c], ks[c], (uint64_t)fa_t_randint((int64_t)(2 * n)), KEY_PLAIN);
        CHECK(fa_map_find_batch(&m, keys, q, out) == 0); /* empty map */
        for (i = 0; i < q; i++) CHECK(out[i] == NULL);
        for (i = 0; i < n; i++) {
            uint8_t k[16];
            make_key(k, ks[c], i, KEY_PLAIN);
            CHECK(fa_map_insert(&m, k, &i, NULL) == FA_OK);
        }
        found = fa_map_find_batch(&m, keys, q, out);
        for (i = 0; i < q; i++) {
            CHECK(out[i] == fa_map_find(&m, keys + i * ks[c]));
            found -= out[i] != NULL;
        }
        CHECK(found == 0);
        CHECK(fa_map_find_batch(NULL, keys, q, out) == 0 && fa_map_find_batch(&m, NULL, q, out) == 0);
        fa_map_destroy(&m);
        free(keys);
        free(out);
    }
}

TEST(map_erase_heavy_churn_keeps_memory_and_tombstones_bounded)
{
    fa_map m;
    fa_map_desc d;
    size_t n = 50000, mem0, i, max_tomb = 0;
    uint64_t next = 0, oldest = 0;
    long it;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = 8;
    d.capacity = n;
    CHECK(fa_map_init(&m, &d) == FA_OK);
    for (i = 0; i < n; i++, next++) CHECK(fa_map_insert(&m, &next, &next, NULL) == FA_OK);
    mem0 = fa_map_memory(&m);
    /* sliding window: insert a new key, erase the oldest -- 40 x the table size */
    for (it = 0; it < (long)SCALE(40 * n); it++, next++, oldest++) {
        CHECK(fa_map_insert(&m, &next, &next, NULL) == FA_OK);
        CHECK(fa_map_erase(&m, &oldest, NULL) == FA_OK);
        if (m.tombstones_ > max_tomb) max_tomb = m.tombstones_;
    }
    CHECKF(fa_map_memory(&m) == mem0, "memory %zu -> %zu", mem0, fa_map_memory(&m));
    CHECK(fa_map_count(&m) == n);
    CHECKF(max_tomb <= m.slot_count_ / 8 + 1, "tombstones reached %zu of %zu slots", max_tomb, m.slot_count_);
    CHECK(map_invariants_ok(&m));
    for (i = 0; i < 1000; i++) {
        uint64_t k = oldest + (uint64_t)fa_t_randint((int64_t)n), gone = oldest - 1 - (uint64_t)fa_t_randint(1000);
        CHECK(fa_map_find(&m, &k) != NULL);
        CHECK(fa_map_find(&m, &gone) == NULL);
    }
    fa_map_destroy(&m);
}

TEST(map_basics_reserve_clear_iterate_erase_during_iteration)
{
    fa_map m;
    fa_map_desc d;
    uint64_t k, v, sum = 0;
    size_t it = 0, cap;
    const void *kp;
    void *vp;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = 8;
    CHECK(fa_map_init(&m, &d) == FA_OK);
    CHECK(fa_map_memory(&m) == 0 && fa_map_count(&m) == 0);
    k = 1;
    CHECK(fa_map_find(&m, &k) == NULL);
    CHECK(fa_map_erase(&m, &k, NULL) == FA_ERR_NOT_FOUND);
    CHECK(fa_map_next(&m, &it, &kp, &vp) == 0);
    CHECK(fa_map_reserve(&m, 1000) == FA_OK);
    cap = fa_map_capacity(&m);
    CHECK(cap >= 1000);
    for (k = 0; k < 1000; k++) {
        v = k * 3;
        CHECK(fa_map_insert(&m, &k, &v, NULL) == FA_OK);
    }
    CHECK(fa_map_capacity(&m) == cap); /* no growth within the reservation */
    /* erasing the entry just returned by fa_map_next is allowed */
    it = 0;
    while (fa_map_next(&m, &it, &kp, &vp)) {
        uint64_t kk;
        memcpy(&kk, kp, 8);
        CHECK(*(uint64_t *)vp == kk * 3);
        sum += kk;
        if (kk % 2) CHECK(fa_map_erase(&m, &kk, NULL) == FA_OK);
    }
    CHECK(sum == 999 * 1000 / 2);
    CHECK(fa_map_count(&m) == 500);
    fa_map_clear(&m);
    CHECK(fa_map_count(&m) == 0);
    k = 2;
    CHECK(fa_map_find(&m, &k) == NULL);
    CHECK(fa_map_insert(&m, &k, NULL, &vp) == FA_OK && *(uint64_t *)vp == 0); /* NULL value = 0 */
    fa_map_destroy(&m);
    fa_map_destroy(&m); /* twice: zeroed map is a no-op */
    fa_map_destroy(NULL);
}

TEST(map_bad_input_is_rejected_without_side_effects)
{
    fa_map m;
    fa_map_desc d;
    uint64_t k = 5, v = 6;
    memset(&d, 0, sizeof d);
    CHECK(fa_map_init(NULL, &d) == FA_ERR_NULL);
    CHECK(fa_map_init(&m, NULL) == FA_ERR_NULL);
    CHECK(fa_map_init(&m, &d) == FA_ERR_INVALID); /* key_size 0 */
    CHECK(strstr(fa_last_error(), "key_size") != NULL);
    d.key_size = SIZE_MAX;
    CHECK(fa_map_init(&m, &d) == FA_ERR_OVERFLOW);
    d.key_size = 8;
    d.value_size = 8;
    d.capacity = SIZE_MAX;
    CHECK(fa_map_init(&m, &d) == FA_ERR_OVERFLOW);
    d.value_size = 1000;
    d.capacity = SIZE_MAX / 64; /* slot count fits, bytes do not */
    CHECK(fa_map_init(&m, &d) == FA_ERR_OVERFLOW);
    d.capacity = 0;
    d.value_size = 8;
    CHECK(fa_map_init(&m, &d) == FA_OK);
    CHECK(fa_map_insert(NULL, &k, &v, NULL) == FA_ERR_NULL);
    CHECK(fa_map_insert(&m, NULL, &v, NULL) == FA_ERR_NULL);
    CHECK(fa_map_insert_or_assign(&m, NULL, &v, NULL) == FA_ERR_NULL);
    CHECK(fa_map_erase(&m, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_map_get(&m, NULL, &v) == FA_ERR_NULL);
    CHECK(fa_map_find(NULL, &k) == NULL && fa_map_find(&m, NULL) == NULL);
    CHECK(fa_map_reserve(NULL, 1) == FA_ERR_NULL);
    CHECK(fa_map_reserve(&m, SIZE_MAX) == FA_ERR_OVERFLOW);
    CHECK(fa_map_count(&m) == 0 && fa_map_memory(&m) == 0);
    CHECK(fa_map_next(NULL, NULL, NULL, NULL) == 0);
    fa_map_destroy(&m);
    CHECK(fa_map_insert(&m, &k, &v, NULL) == FA_ERR_INVALID); /* destroyed */
}

/* Snapshot of a map's contents, for "unchanged" checks. */
static uint64_t map_digest(const fa_map *m)
{
    size_t it = 0;
    const void *k;
    void *v;
    uint64_t s = fa_map_count(m) * 0x9e3779b97f4a7c15ull;
    while (fa_map_next(m, &it, &k, &v)) s += fa_hash_bytes(k, m->key_size_, 1) ^ fa_hash_bytes(v, m->value_size_, 2);
    return s;
}

TEST(map_allocation_failure_at_every_point_leaves_table_unchanged)
{
    /* Grow a map from empty to 5000 entries, failing each allocation once: the failing call
       returns FA_ERR_NOMEM, and the table keeps its exact contents and stays usable. */
    long fail_at;
    for (fail_at = 0; fail_at < 10; fail_at++) { /* growth 16 -> 8192 slots: 10 allocations */
        talloc ta = {0, 0, -1, 0};
        fa_allocator al = t_allocator(&ta);
        fa_map m;
        fa_map_desc d;
        uint64_t k, failures = 0;
        memset(&d, 0, sizeof d);
        d.key_size = 8;
        d.value_size = 24;
        d.allocator = &al;
        ta.fail_at = fail_at;
        ta.calls = 0;
        CHECK(fa_map_init(&m, &d) == FA_OK);
        for (k = 0; k < 5000; k++) {
            uint8_t val[24];
            /* digest only before inserts that must allocate (the full table case) */
            int grows = m.growth_left_ == 0;
            uint64_t before = grows ? map_digest(&m) : 0;
            size_t cnt = fa_map_count(&m), mem = fa_map_memory(&m);
            fa_status st;
            make_val(val, 24, k, 0);
            st = fa_map_insert(&m, &k, val, NULL);
            if (st == FA_ERR_NOMEM) {
                failures++;
                CHECK(grows);
                CHECK(map_digest(&m) == before && fa_map_count(&m) == cnt && fa_map_memory(&m) == mem);
                CHECK(map_invariants_ok(&m));
                st = fa_map_insert(&m, &k, val, NULL); /* the next attempt succeeds */
            }
            CHECK(st == FA_OK);
        }
        CHECK(failures == 1);
        /* reserve failing too */
        ta.fail_at = ta.calls;
        {
            uint64_t before = map_digest(&m);
            CHECK(fa_map_reserve(&m, 100000) == FA_ERR_NOMEM);
            CHECK(map_digest(&m) == before && map_invariants_ok(&m));
        }
        fa_map_destroy(&m);
        CHECK(ta.live == 0);
    }
    {
        /* init with a capacity: the only allocation fails -> NOMEM, nothing leaked */
        talloc ta = {0, 0, 0, 0};
        fa_allocator al = t_allocator(&ta);
        fa_map m;
        fa_map_desc d;
        memset(&d, 0, sizeof d);
        d.key_size = 8;
        d.capacity = 100;
        d.allocator = &al;
        CHECK(fa_map_init(&m, &d) == FA_ERR_NOMEM);
        CHECK(ta.live == 0);
        fa_map_destroy(&m); /* zeroed on failure: harmless */
    }
}

TEST(hash_bytes_depends_on_seed_length_and_every_byte)
{
    uint8_t buf[64];
    size_t n, i;
    memset(buf, 0, sizeof buf);
    for (n = 0; n <= 64; n++) {
        uint64_t h = fa_hash_bytes(buf, n, 42);
        CHECK(h != fa_hash_bytes(buf, n, 43));
        if (n < 64) CHECK(h != fa_hash_bytes(buf, n + 1, 42)); /* trailing zero changes it */
        for (i = 0; i < n; i++) {
            buf[i] ^= 1;
            CHECK(fa_hash_bytes(buf, n, 42) != h);
            buf[i] ^= 1;
        }
    }
    {
        /* sequential 8-byte keys: low 7 bits (tags) spread evenly */
        long cnt[128];
        uint64_t k;
        memset(cnt, 0, sizeof cnt);
        for (k = 0; k < 128000; k++) cnt[fa__hash8(k, 12345) & 127]++;
        for (i = 0; i < 128; i++) CHECKF(cnt[i] > 800 && cnt[i] < 1200, "tag %zu: %ld", i, cnt[i]);
    }
}

/* ---- LRU ---- */
typedef struct evict_log {
    uint64_t last_key, last_val;
    long calls;
} evict_log;
static void on_evict(const void *key, void *value, void *user)
{
    evict_log *e = (evict_log *)user;
    memcpy(&e->last_key, key, 8);
    memcpy(&e->last_val, value, 8);
    e->calls++;
}

TEST(lru_matches_reference_model_and_never_allocates_after_init)
{
    /* Reference: per-key "last use" stamps; the victim is the present key with the oldest. */
    size_t caps[] = {1, 2, 7, 64, 500};
    size_t ci;
    for (ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
        size_t cap = caps[ci], U = cap * 3 + 5, i;
        talloc ta = {0, 0, -1, 0};
        fa_allocator al = t_allocator(&ta);
        fa_lru c;
        fa_lru_desc d;
        fa_lru_stats st;
        evict_log ev = {0, 0, 0};
        uint64_t *stamp = (uint64_t *)calloc(U, 8), *val = (uint64_t *)calloc(U, 8), now = 1;
        uint8_t *present = (uint8_t *)calloc(U, 1);
        uint64_t hits = 0, misses = 0, evictions = 0;
        size_t count = 0;
        long op, calls_after_init;
        memset(&d, 0, sizeof d);
        d.key_size = 8;
        d.value_size = 8;
        d.capacity = cap;
        d.on_evict = on_evict;
        d.evict_user = &ev;
        d.allocator = &al;
        CHECK(fa_lru_init(&c, &d) == FA_OK);
        calls_after_init = ta.calls;
        for (op = 0; op < (long)SCALE(200000); op++) {
            uint64_t k = (uint64_t)fa_t_randint((int64_t)U), v;
            int r = (int)fa_t_randint(100);
            if (r < 45) { /* put */
                v = k * 1000 + (uint64_t)op;
                if (!present[k] && count == cap) {
                    size_t victim = U;
                    uint64_t best = UINT64_MAX;
                    for (i = 0; i < U; i++)
                        if (present[i] && stamp[i] < best) { best = stamp[i]; victim = i; }
                    present[victim] = 0;
                    count--;
                    evictions++;
                    CHECK(fa_lru_put(&c, &k, &v, NULL) == FA_OK);
                    CHECKF(ev.last_key == victim && ev.last_val == val[victim], "evicted %llu want %zu",
                           (unsigned long long)ev.last_key, victim);
                } else CHECK(fa_lru_put(&c, &k, &v, NULL) == FA_OK);
                if (!present[k]) count++;
                present[k] = 1;
                val[k] = v;
                stamp[k] = now++;
            } else if (r < 85) { /* get */
                uint64_t *p = (uint64_t *)fa_lru_get(&c, &k);
                CHECK((p != NULL) == (present[k] != 0));
                if (p) {
                    CHECK(*p == val[k]);
                    stamp[k] = now++;
                    hits++;
                } else misses++;
            } else if (r < 90) { /* peek: no reorder */
                uint64_t *p = (uint64_t *)fa_lru_peek(&c, &k);
                CHECK((p != NULL) == (present[k] != 0) && (!p || *p == val[k]));
            } else if (r < 98) {
                uint64_t out = 0;
                fa_status s = fa_lru_erase(&c, &k, &out);
                CHECK(s == (present[k] ? FA_OK : FA_ERR_NOT_FOUND));
                if (s == FA_OK) {
                    CHECK(out == val[k]);
                    present[k] = 0;
                    count--;
                }
            } else {
                uint64_t kk = 0, vv = 0;
                fa_status s = fa_lru_pop(&c, &kk, &vv);
                CHECK(s == (count ? FA_OK : FA_ERR_EMPTY));
                if (s == FA_OK) {
                    size_t victim = U;
                    uint64_t best = UINT64_MAX;
                    for (i = 0; i < U; i++)
                        if (present[i] && stamp[i] < best) { best = stamp[i]; victim = i; }
                    CHECK(kk == victim && vv == val[victim]);
                    present[victim] = 0;
                    count--;
                }
            }
            CHECK(fa_lru_count(&c) == count);
        }
        fa_lru_get_stats(&c, &st);
        CHECK(st.hits == hits && st.misses == misses && st.evictions == evictions && (long)evictions == ev.calls);
        CHECK(st.capacity == cap && st.count == count);
        CHECKF(ta.calls == calls_after_init, "allocated after init: %ld -> %ld", calls_after_init, ta.calls);
        CHECK(map_invariants_ok(&c.index_));
        fa_lru_clear(&c);
        CHECK(fa_lru_count(&c) == 0);
        fa_lru_destroy(&c);
        CHECK(ta.live == 0);
        free(stamp);
        free(val);
        free(present);
    }
}

TEST(lru_bad_input_and_allocation_failure)
{
    fa_lru c;
    fa_lru_desc d;
    long fail_at;
    uint64_t k = 1;
    memset(&d, 0, sizeof d);
    CHECK(fa_lru_init(NULL, &d) == FA_ERR_NULL);
    CHECK(fa_lru_init(&c, NULL) == FA_ERR_NULL);
    CHECK(fa_lru_init(&c, &d) == FA_ERR_INVALID);
    d.key_size = 8;
    CHECK(fa_lru_init(&c, &d) == FA_ERR_INVALID); /* capacity 0 */
    d.capacity = (size_t)1 << 40;
    CHECK(fa_lru_init(&c, &d) == FA_ERR_OVERFLOW);
    d.capacity = 10;
    d.value_size = SIZE_MAX / 2;
    CHECK(fa_lru_init(&c, &d) == FA_ERR_OVERFLOW);
    d.value_size = 8;
    for (fail_at = 0; fail_at < 2; fail_at++) {
        talloc ta = {0, 0, -1, 0};
        fa_allocator al = t_allocator(&ta);
        ta.fail_at = fail_at;
        d.allocator = &al;
        CHECK(fa_lru_init(&c, &d) == FA_ERR_NOMEM);
        CHECK(ta.live == 0);
    }
    d.allocator = NULL;
    CHECK(fa_lru_init(&c, &d) == FA_OK);
    CHECK(fa_lru_put(NULL, &k, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_lru_put(&c, NULL, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_lru_get(&c, NULL) == NULL && fa_lru_get(NULL, &k) == NULL);
    CHECK(fa_lru_erase(&c, &k, NULL) == FA_ERR_NOT_FOUND);
    CHECK(fa_lru_pop(&c, NULL, NULL) == FA_ERR_EMPTY);
    fa_lru_destroy(&c);
    CHECK(fa_lru_put(&c, &k, NULL, NULL) == FA_ERR_INVALID);
}

/* ---- concurrent map: single-threaded model check ---- */
static void add_one(void *value, void *user)
{
    uint64_t v;
    memcpy(&v, value, 8);
    v += user ? *(uint64_t *)user : 1;
    memcpy(value, &v, 8);
}

static void cmap_vs_model(size_t ks, size_t vs, int mode, uint64_t U, long ops, size_t shards)
{
    fa_cmap *cm = NULL;
    fa_cmap_desc d;
    model md;
    uint8_t key[64], val[64], out[64];
    uint64_t ver = 1;
    long op;
    memset(&d, 0, sizeof d);
    d.key_size = ks;
    d.value_size = vs;
    d.shards = shards;
    if (mode == KEY_IDENTITY_HASH) d.hash = h_identity;
    if (mode == KEY_LOWBITS_HASH) { d.hash = h_lowbits; d.eq = eq_bytes; }
    CHECK(fa_cmap_create(&cm, &d) == FA_OK);
    if (!cm) return;
    md.present = (uint8_t *)calloc(U, 1);
    md.ver = (uint64_t *)calloc(U, 8);
    md.count = 0;
    for (op = 0; op < ops; op++) {
        uint64_t u = (uint64_t)fa_t_randint((int64_t)U);
        int r = (int)fa_t_randint(100);
        fa_status st;
        make_key(key, ks, u, mode);
        if (r < 30) {
            make_val(val, vs, u, ver);
            st = fa_cmap_insert(cm, key, val);
            CHECK(st == (md.present[u] ? FA_ERR_EXISTS : FA_OK));
            if (st == FA_OK) { md.present[u] = 1; md.ver[u] = ver; md.count++; }
            ver++;
        } else if (r < 40) {
            make_val(val, vs, u, ver);
            CHECK(fa_cmap_insert_or_assign(cm, key, val) == FA_OK);
            if (!md.present[u]) md.count++;
            md.present[u] = 1;
            md.ver[u] = ver++;
        } else if (r < 70) {
            memset(out, 0xEE, sizeof out);
            st = fa_cmap_get(cm, key, out);
            CHECK(st == (md.present[u] ? FA_OK : FA_ERR_NOT_FOUND));
            make_val(val, vs, u, md.ver[u]);
            if (st == FA_OK) CHECK(memcmp(out, val, vs) == 0);
            else CHECK(out[0] == 0xEE);
        } else {
            st = fa_cmap_erase(cm, key, out);
            CHECK(st == (md.present[u] ? FA_OK : FA_ERR_NOT_FOUND));
            if (st == FA_OK) {
                make_val(val, vs, u, md.ver[u]);
                CHECK(memcmp(out, val, vs) == 0);
                md.present[u] = 0;
                md.count--;
            }
        }
        CHECK(fa_cmap_count(cm) == md.count);
    }
    fa_cmap_reclaim(cm);
    fa_cmap_destroy(cm);
    free(md.present);
    free(md.ver);
}

TEST(cmap_matches_model_single_threaded)
{
    cmap_vs_model(8, 8, KEY_PLAIN, 50000, SCALE(400000), 0);
    cmap_vs_model(8, 8, KEY_PLAIN, 50000, SCALE(200000), 1);
    cmap_vs_model(3, 0, KEY_PLAIN, 5000, SCALE(100000), 4);
    cmap_vs_model(20, 13, KEY_HIGH_BYTES, 20000, SCALE(200000), 8);
    cmap_vs_model(16, 4, KEY_LOWBITS_HASH, 20000, SCALE(100000), 2);
    cmap_vs_model(8, 8, KEY_IDENTITY_HASH, 20000, SCALE(100000), 16);
    fa_cpu_features_override(0);
    cmap_vs_model(8, 16, KEY_PLAIN, 20000, SCALE(100000), 4);
    fa_cpu_features_override(~0u);
}

TEST(cmap_update_foreach_bad_input_and_allocation_failure)
{
    fa_cmap *cm = NULL;
    fa_cmap_desc d;
    uint64_t k, v, zero = 0;
    long fail_at;
    memset(&d, 0, sizeof d);
    CHECK(fa_cmap_create(NULL, &d) == FA_ERR_NULL);
    CHECK(fa_cmap_create(&cm, NULL) == FA_ERR_NULL);
    CHECK(fa_cmap_create(&cm, &d) == FA_ERR_INVALID && cm == NULL);
    d.key_size = FA_CMAP_MAX_ITEM + 1;
    CHECK(fa_cmap_create(&cm, &d) == FA_ERR_INVALID);
    d.key_size = 8;
    d.value_size = 8;
    d.capacity = SIZE_MAX;
    CHECK(fa_cmap_create(&cm, &d) == FA_ERR_OVERFLOW && cm == NULL);
    d.capacity = 0;
    d.shards = 4;
    /* create fails at each of its allocations (struct, shards, 4 tables) without leaking */
    for (fail_at = 0; fail_at < 6; fail_at++) {
        talloc ta = {0, 0, -1, 0};
        fa_allocator al = t_allocator(&ta);
        ta.fail_at = fail_at;
        d.allocator = &al;
        CHECK(fa_cmap_create(&cm, &d) == FA_ERR_NOMEM && cm == NULL);
        CHECK(ta.live == 0);
    }
    {
        /* growth failing: the insert returns NOMEM, the map keeps its contents */
        talloc ta = {0, 0, -1, 0};
        fa_allocator al = t_allocator(&ta);
        int nomem = 0;
        d.allocator = &al;
        CHECK(fa_cmap_create(&cm, &d) == FA_OK);
        for (k = 0; k < 3000; k++) {
            fa_status st;
            ta.fail_at = (k % 7 == 0) ? ta.calls : -1;
            st = fa_cmap_insert(cm, &k, &k);
            if (st == FA_ERR_NOMEM) {
                nomem++;
                CHECK(fa_cmap_count(cm) == k);
                CHECK(fa_cmap_get(cm, &k, NULL) == FA_ERR_NOT_FOUND);
                ta.fail_at = -1;
                st = fa_cmap_insert(cm, &k, &k);
            }
            CHECK(st == FA_OK);
        }
        CHECK(nomem > 0);
        for (k = 0; k < 3000; k++) CHECK(fa_cmap_get(cm, &k, &v) == FA_OK && v == k);
        fa_cmap_destroy(cm);
        CHECK(ta.live == 0);
        d.allocator = NULL;
    }
    CHECK(fa_cmap_create(&cm, &d) == FA_OK);
    k = 7;
    CHECK(fa_cmap_update(cm, &k, NULL, add_one, NULL) == FA_ERR_NOT_FOUND);
    CHECK(fa_cmap_update(cm, &k, &zero, add_one, NULL) == FA_OK);
    CHECK(fa_cmap_update(cm, &k, &zero, add_one, NULL) == FA_OK);
    CHECK(fa_cmap_get(cm, &k, &v) == FA_OK && v == 2);
    CHECK(fa_cmap_get(NULL, &k, &v) == FA_ERR_NULL && fa_cmap_get(cm, NULL, &v) == FA_ERR_NULL);
    CHECK(fa_cmap_insert(cm, NULL, &v) == FA_ERR_NULL);
    CHECK(fa_cmap_foreach(cm, NULL, NULL) == FA_ERR_NULL);
    CHECK(fa_cmap_memory(cm) > 0);
    fa_cmap_destroy(cm);
    fa_cmap_destroy(NULL);
}

/* ---- concurrency stress ---- */
#define NTHREADS 4
#define WIDE 4 /* words per value: a torn read shows up as unequal words */
typedef struct stress {
    fa_cmap *cm;
    fa_clru *lru;
    int id;
    long iters;
    uint64_t nkeys;
    int *stop;
    long bad, reads, found;
} stress;

static void add_wide(void *value, void *user)
{
    uint64_t w[WIDE];
    int i;
    (void)user;
    memcpy(w, value, sizeof w);
    for (i = 0; i < WIDE; i++) w[i] += 1;
    memcpy(value, w, sizeof w);
}

/* Writers: every thread increments every counter key via update (a read-modify-write); other
   keys are inserted and erased to force growth, tombstones and in-place rehashes. */
static void *cmap_writer(void *arg)
{
    stress *s = (stress *)arg;
    long i;
    uint64_t zero[WIDE] = {0, 0, 0, 0};
    for (i = 0; i < s->iters; i++) {
        uint64_t k = (uint64_t)i % s->nkeys, ek = 1000000 + (uint64_t)s->id * 100000 + (uint64_t)(i % 3000);
        uint64_t v[WIDE] = {ek, ek, ek, ek};
        if (fa_cmap_update(s->cm, &k, zero, add_wide, NULL) != FA_OK) s->bad++;
        if (i % 3 == 0) fa_cmap_insert_or_assign(s->cm, &ek, v);
        else if (i % 3 == 1) fa_cmap_erase(s->cm, &ek, NULL);
    }
    return NULL;
}
static void *cmap_reader(void *arg)
{
    stress *s = (stress *)arg;
    uint64_t last[64];
    long i = 0;
    memset(last, 0, sizeof last);
    while (!__atomic_load_n(s->stop, __ATOMIC_ACQUIRE) || i < 1000) {
        uint64_t k = (uint64_t)i % s->nkeys, v[WIDE];
        uint64_t ek = 1000000 + (uint64_t)(i % NTHREADS) * 100000 + (uint64_t)(i % 3000);
        if (fa_cmap_get(s->cm, &k, v) == FA_OK) {
            /* all words equal (no torn read) and never decreasing (linearizable per key) */
            if (v[0] != v[1] || v[1] != v[2] || v[2] != v[3] || (k < 64 && v[0] < last[k])) s->bad++;
            if (k < 64) last[k] = v[0];
            s->found++;
        }
        if (fa_cmap_get(s->cm, &ek, v) == FA_OK && (v[0] != ek || v[3] != ek)) s->bad++;
        s->reads++;
        i++;
    }
    return NULL;
}

TEST(cmap_concurrent_no_lost_updates_no_torn_reads)
{
    fa_cmap *cm = NULL;
    fa_cmap_desc d;
    pthread_t th[2 * NTHREADS];
    stress st[2 * NTHREADS];
    int stop = 0;
    long iters = FA_TEST_SANITIZED ? 20000 : 200000, bad = 0, reads = 0;
    uint64_t nkeys = 50, k;
    int i;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = WIDE * 8;
    d.shards = 4; /* few shards: writers collide */
    CHECK(fa_cmap_create(&cm, &d) == FA_OK);
    if (!cm) return;
    for (i = 0; i < 2 * NTHREADS; i++) {
        memset(&st[i], 0, sizeof st[i]);
        st[i].cm = cm;
        st[i].id = i % NTHREADS;
        st[i].iters = iters;
        st[i].nkeys = nkeys;
        st[i].stop = &stop;
    }
    for (i = 0; i < NTHREADS; i++) CHECK(pthread_create(&th[NTHREADS + i], NULL, cmap_reader, &st[NTHREADS + i]) == 0);
    for (i = 0; i < NTHREADS; i++) CHECK(pthread_create(&th[i], NULL, cmap_writer, &st[i]) == 0);
    for (i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < NTHREADS; i++) pthread_join(th[NTHREADS + i], NULL);
    for (i = 0; i < 2 * NTHREADS; i++) {
        bad += st[i].bad;
        reads += st[i].reads;
    }
    CHECKF(bad == 0, "%ld bad results", bad);
    CHECK(reads > 0);
    /* every key was incremented iters/nkeys times by each writer */
    for (k = 0; k < nkeys; k++) {
        uint64_t v[WIDE], want = (uint64_t)NTHREADS * ((uint64_t)iters / nkeys + ((uint64_t)iters % nkeys > k));
        CHECK(fa_cmap_get(cm, &k, v) == FA_OK);
        CHECKF(v[0] == want && v[3] == want, "key %llu: %llu want %llu", (unsigned long long)k,
               (unsigned long long)v[0], (unsigned long long)want);
    }
    fa_cmap_destroy(cm);
}

static void *clru_worker(void *arg)
{
    stress *s = (stress *)arg;
    long i;
    for (i = 0; i < s->iters; i++) {
        uint64_t k = (uint64_t)fa_t_splitmix(&(uint64_t){(uint64_t)i * 7 + (uint64_t)s->id}) % s->nkeys;
        uint64_t v[WIDE] = {k * 3, k * 3 + 1, k * 3 + 2, k}, out[WIDE];
        if (i % 4 == 0) {
            if (fa_clru_put(s->lru, &k, v) != FA_OK) s->bad++;
        } else if (i % 37 == 1) {
            fa_clru_erase(s->lru, &k, NULL);
        } else {
            s->reads++;
            if (fa_clru_get(s->lru, &k, out) == FA_OK) {
                s->found++;
                if (memcmp(out, v, sizeof v) != 0) s->bad++; /* value belongs to its key */
            }
        }
    }
    return NULL;
}

TEST(clru_concurrent_consistent_values_and_counters)
{
    fa_clru *c = NULL;
    fa_lru_desc d;
    fa_lru_stats stt;
    pthread_t th[NTHREADS];
    stress st[NTHREADS];
    long reads = 0, bad = 0;
    int i;
    memset(&d, 0, sizeof d);
    d.key_size = 8;
    d.value_size = WIDE * 8;
    d.capacity = 1000;
    d.shards = 8;
    CHECK(fa_clru_create(&c, &d) == FA_OK);
    if (!c) return;
    for (i = 0; i < NTHREADS; i++) {
        memset(&st[i], 0, sizeof st[i]);
        st[i].lru = c;
        st[i].id = i;
        st[i].iters = FA_TEST_SANITIZED ? 40000 : 400000;
        st[i].nkeys = 3000;
        CHECK(pthread_create(&th[i], NULL, clru_worker, &st[i]) == 0);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        reads += st[i].reads;
        bad += st[i].bad;
    }
    fa_clru_get_stats(c, &stt);
    CHECKF(bad == 0, "%ld bad", bad);
    CHECK(stt.hits + stt.misses == (uint64_t)reads);
    CHECK(stt.count <= stt.capacity && stt.capacity >= 1000 && stt.count == fa_clru_count(c));
    CHECK(stt.evictions > 0);
    fa_clru_destroy(c);
    {
        talloc ta = {0, 0, 1, 0};
        fa_allocator al = t_allocator(&ta);
        d.allocator = &al;
        CHECK(fa_clru_create(&c, &d) == FA_ERR_NOMEM);
        CHECK(ta.live == 0);
        CHECK(fa_clru_create(NULL, &d) == FA_ERR_NULL);
        d.capacity = 0;
        CHECK(fa_clru_create(&c, &d) == FA_ERR_INVALID);
    }
}

int main(void)
{
    fa_test_init();
    RUN(group_match_simd_equals_swar);
    RUN(hash_bytes_depends_on_seed_length_and_every_byte);
    RUN(map_basics_reserve_clear_iterate_erase_during_iteration);
    RUN(map_bad_input_is_rejected_without_side_effects);
    RUN(map_allocation_failure_at_every_point_leaves_table_unchanged);
    RUN(map_matches_model_for_many_key_and_value_sizes);
    RUN(map_8byte_fast_path_matches_model_millions_of_ops);
    RUN(map_adversarial_hashes_stay_correct);
    RUN(map_swar_path_matches_model);
    RUN(map_find_batch_equals_find);
    RUN(map_erase_heavy_churn_keeps_memory_and_tombstones_bounded);
    RUN(lru_matches_reference_model_and_never_allocates_after_init);
    RUN(lru_bad_input_and_allocation_failure);
    RUN(cmap_matches_model_single_threaded);
    RUN(cmap_update_foreach_bad_input_and_allocation_failure);
    RUN(cmap_concurrent_no_lost_updates_no_torn_reads);
    RUN(clru_concurrent_consistent_values_and_counters);
    return fa_test_summary();
}
