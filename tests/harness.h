/* tests/harness.h - the tiny test harness shared by every tests/test_*.c.

   TEST(name) { ... CHECK(cond); CHECKF(cond, "fmt", ...); ... }
   int main(void) { fa_test_init(); RUN(name); ...; return fa_test_summary(); }

   A test passes when none of its checks failed. The summary line is exactly
   "N passed, M failed" and the exit status is nonzero when M > 0. Random inputs are fresh on
   every run: the seed comes from FA_TEST_SEED (decimal) or the clock and is printed so a
   failure can be replayed. */
#ifndef FA_TEST_HARNESS_H
#define FA_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int fa_t_passed, fa_t_failed, fa_t_cur_failed;
static long fa_t_cur_checks_failed_printed;
static const char *fa_t_cur_name = "";
static uint64_t fa_t_seed;

/* Print at most this many failing checks per test, then count silently. */
#define FA_T_MAX_PRINTS 8

#if defined(__GNUC__) || defined(__clang__)
#define FA_T_UNUSED __attribute__((unused))
#else
#define FA_T_UNUSED
#endif

#define TEST(name) static void name(void)

#define CHECKF(cond, ...)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fa_t_cur_failed++;                                                         \
            if (fa_t_cur_checks_failed_printed++ < FA_T_MAX_PRINTS) {                   \
                fprintf(stderr, "  FAIL %s (%s:%d): %s: ", fa_t_cur_name, __FILE__,    \
                        __LINE__, #cond);                                              \
                fprintf(stderr, __VA_ARGS__);                                          \
                fputc('\n', stderr);                                                   \
            }                                                                          \
        }                                                                              \
    } while (0)
#define CHECK(cond) CHECKF(cond, "%s", "")

#define RUN(name)                                                                      \
    do {                                                                               \
        clock_t t0_ = clock();                                                         \
        fa_t_cur_name = #name;                                                         \
        fa_t_cur_failed = 0;                                                           \
        fa_t_cur_checks_failed_printed = 0;                                            \
        name();                                                                        \
        if (fa_t_cur_failed) {                                                         \
            fa_t_failed++;                                                             \
            fprintf(stderr, "FAIL %s (%d checks failed)\n", #name, fa_t_cur_failed);   \
        } else {                                                                       \
            fa_t_passed++;                                                             \
            printf("ok   %s (%.2fs)\n", #name, (double)(clock() - t0_) / CLOCKS_PER_SEC); \
        }                                                                              \
        fflush(stdout);                                                                \
    } while (0)

/* xoshiro256** seeded by splitmix64: fast, good enough for test data. */
static uint64_t fa_t_rng_s[4];
static FA_T_UNUSED uint64_t fa_t_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static FA_T_UNUSED void fa_t_srand(uint64_t seed)
{
    int i;
    for (i = 0; i < 4; i++) fa_t_rng_s[i] = fa_t_splitmix(&seed);
}
static FA_T_UNUSED uint64_t fa_t_rand(void)
{
    uint64_t *s = fa_t_rng_s, r = s[1] * 5, t = s[1] << 17;
    r = ((r << 7) | (r >> 57)) * 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return r;
}
/* uniform in [0, n) for n >= 1 */
static FA_T_UNUSED int64_t fa_t_randint(int64_t n) { return (int64_t)(fa_t_rand() % (uint64_t)n); }
/* uniform in [lo, hi) */
static FA_T_UNUSED double fa_t_uniform(double lo, double hi)
{
    return lo + (hi - lo) * (double)(fa_t_rand() >> 11) * (1.0 / 9007199254740992.0);
}
/* standard normal (Box-Muller) */
static FA_T_UNUSED double fa_t_normal(void)
{
    double u = fa_t_uniform(1e-300, 1.0), v = fa_t_uniform(0.0, 1.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static FA_T_UNUSED void fa_t_init(const char *suite)
{
    const char *env = getenv("FA_TEST_SEED");
    fa_t_seed = env ? (uint64_t)strtoull(env, NULL, 10)
                    : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)clock();
    fa_t_srand(fa_t_seed);
    printf("%s: seed %" PRIu64 " (replay with FA_TEST_SEED=%" PRIu64 ")\n", suite, fa_t_seed,
           fa_t_seed);
}
#define fa_test_init() fa_t_init(__FILE__)

static int fa_test_summary(void)
{
    printf("%d passed, %d failed\n", fa_t_passed, fa_t_failed);
    return fa_t_failed ? 1 : 0;
}

#endif
