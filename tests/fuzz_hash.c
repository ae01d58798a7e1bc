/* tests/fuzz_hash.c - libFuzzer target for the hash section.

   The input drives fa_map and fa_lru with the same operations as a trivially correct model
   (present/value arrays over a universe of 256 keys; an LRU order kept as use stamps) and
   traps on the first difference. The first byte picks the configuration (key and value sizes,
   built-in or deliberately weak hash, SWAR or SIMD probing); every following pair of bytes is
   one operation (opcode, key index). Build and run: make fuzz (needs clang with libFuzzer). */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <stdlib.h>
#include <string.h>

#define U 256
#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

static uint64_t weak_hash(const void *k, size_t ks, void *user)
{
    (void)user;
    return ((const uint8_t *)k)[ks - 1] & 3; /* four hash values: long probe chains */
}

static void make_key(uint8_t *k, size_t ks, unsigned u)
{
    size_t i;
    for (i = 0; i < ks; i++) k[i] = (uint8_t)(0x5a + i);
    k[ks - 1] = (uint8_t)u; /* distinct in the last byte */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t ksz[4] = {1, 3, 8, 13}, vsz[4] = {0, 4, 8, 5};
    uint8_t present[U], lpresent[U];
    uint32_t val[U], lval[U];
    uint64_t stamp[U], now = 1;
    size_t count = 0, lcount = 0, ks, vs, i, lcap;
    fa_map m;
    fa_map_desc d;
    fa_lru c;
    fa_lru_desc ld;
    unsigned cfg;
    if (size < 1) return 0;
    cfg = data[0];
    ks = ksz[cfg & 3];
    vs = vsz[(cfg >> 2) & 3];
    lcap = 1 + ((cfg >> 5) & 7) * 5;
    fa_cpu_features_override((cfg & 0x10) ? 0u : ~0u);
    memset(&d, 0, sizeof d);
    d.key_size = ks;
    d.value_size = vs;
    d.seed = 1 + cfg;
    if (cfg & 0x80) d.hash = weak_hash;
    memset(&ld, 0, sizeof ld);
    ld.key_size = ks;
    ld.value_size = 4;
    ld.capacity = lcap;
    ld.hash = d.hash;
    REQUIRE(fa_map_init(&m, &d) == FA_OK);
    REQUIRE(fa_lru_init(&c, &ld) == FA_OK);
    memset(present, 0, sizeof present);
    memset(lpresent, 0, sizeof lpresent);
    for (i = 1; i + 1 < size; i += 2) {
        unsigned op = data[i] & 7, u = data[i + 1];
        uint8_t key[16], out[8];
        uint32_t v = (uint32_t)(i * 2654435761u);
        uint8_t vb[8] = {0}; /* value bytes: v, zero-padded to the largest value size */
        void *p = NULL;
        if (ks == 1) u &= 0xff;
        make_key(key, ks, u);
        switch (op) {
        case 0: /* insert */
            memcpy(vb, &v, 4);
            REQUIRE(fa_map_insert(&m, key, vb, &p) == (present[u] ? FA_ERR_EXISTS : FA_OK));
            if (!present[u]) { present[u] = 1; val[u] = v; count++; }
            break;
        case 1: /* insert or assign */
            memcpy(vb, &v, 4);
            REQUIRE(fa_map_insert_or_assign(&m, key, vb, &p) == FA_OK);
            if (!present[u]) count++;
            present[u] = 1;
            val[u] = v;
            break;
        case 2: /* find */
            p = fa_map_find(&m, key);
            REQUIRE((p != NULL) == present[u]);
            if (p && vs) REQUIRE(memcmp(p, &val[u], vs < 4 ? vs : 4) == 0);
            break;
        case 3: /* erase */
            REQUIRE(fa_map_erase(&m, key, out) == (present[u] ? FA_OK : FA_ERR_NOT_FOUND));
            if (present[u]) { present[u] = 0; count--; }
            break;
        case 4: /* reserve / clear */
            if (u < 8) {
                fa_map_clear(&m);
                memset(present, 0, sizeof present);
                count = 0;
            } else REQUIRE(fa_map_reserve(&m, u) == FA_OK);
            break;
        case 5: { /* lru put */
            if (!lpresent[u] && lcount == lcap) {
                unsigned j, victim = U;
                uint64_t best = UINT64_MAX;
                for (j = 0; j < U; j++)
                    if (lpresent[j] && stamp[j] < best) { best = stamp[j]; victim = j; }
                REQUIRE(victim < U);
                lpresent[victim] = 0;
                lcount--;
            }
            REQUIRE(fa_lru_put(&c, key, &v, NULL) == FA_OK);
            if (!lpresent[u]) lcount++;
            lpresent[u] = 1;
            lval[u] = v;
            stamp[u] = now++;
            break;
        }
        case 6: { /* lru get */
            uint32_t *q = (uint32_t *)fa_lru_get(&c, key);
            REQUIRE((q != NULL) == lpresent[u]);
            if (q) { REQUIRE(*q == lval[u]); stamp[u] = now++; }
            break;
        }
        default: /* lru erase */
            REQUIRE(fa_lru_erase(&c, key, NULL) == (lpresent[u] ? FA_OK : FA_ERR_NOT_FOUND));
            if (lpresent[u]) { lpresent[u] = 0; lcount--; }
            break;
        }
        REQUIRE(fa_map_count(&m) == count && fa_lru_count(&c) == lcount);
        if (p && vs && (op == 0 || op == 1)) REQUIRE(memcmp(p, &val[u], vs < 4 ? vs : 4) == 0);
    }
    {
        /* iteration sees exactly the model's keys */
        size_t it = 0, seen = 0;
        const void *k;
        void *v;
        while (fa_map_next(&m, &it, &k, &v)) {
            unsigned u = ((const uint8_t *)k)[ks - 1];
            REQUIRE(present[u]);
            seen++;
        }
        REQUIRE(seen == count);
    }
    fa_lru_destroy(&c);
    fa_map_destroy(&m);
    fa_cpu_features_override(~0u);
    return 0;
}
