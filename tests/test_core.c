/* tests/test_core.c - core section: status strings, last-error detail, aligned allocation,
   dtypes, CPU feature detection and override. */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"
#include "harness.h"

#include <string.h>

TEST(status_strings_are_distinct_and_named)
{
    int i, j;
    CHECK(strcmp(fa_status_str(FA_OK), "FA_OK") == 0);
    CHECK(strcmp(fa_status_str(FA_ERR_NOMEM), "FA_ERR_NOMEM") == 0);
    for (i = 0; i < (int)FA_STATUS_COUNT_; i++) {
        const char *a = fa_status_str((fa_status)i);
        CHECKF(a && strncmp(a, "FA_", 3) == 0, "status %d -> %s", i, a ? a : "(null)");
        for (j = 0; j < i; j++) CHECKF(strcmp(a, fa_status_str((fa_status)j)) != 0, "%d vs %d", i, j);
    }
    CHECK(strcmp(fa_status_str((fa_status)-1), "FA_ERR_UNKNOWN") == 0);
    CHECK(strcmp(fa_status_str(FA_STATUS_COUNT_), "FA_ERR_UNKNOWN") == 0);
}

TEST(last_error_holds_the_detail_and_clears)
{
    fa_clear_error();
    CHECK(fa_last_error()[0] == '\0');
    CHECK(fa__fail(FA_ERR_SHAPE, "heads_q (%d) is not a multiple of heads_kv (%d)", 12, 5) ==
          FA_ERR_SHAPE);
    CHECKF(strcmp(fa_last_error(), "heads_q (12) is not a multiple of heads_kv (5)") == 0,
           "got '%s'", fa_last_error());
    fa_clear_error();
    CHECK(fa_last_error()[0] == '\0');
}

TEST(aligned_alloc_honours_alignment_and_rejects_bad_requests)
{
    size_t aligns[] = {0, 1, 2, 8, 16, 64, 128, 4096};
    size_t i;
    for (i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        size_t a = aligns[i] ? aligns[i] : 64;
        unsigned char *p = (unsigned char *)fa_aligned_alloc(1000, aligns[i]);
        CHECKF(p != NULL, "align %zu", aligns[i]);
        if (!p) continue;
        CHECKF(((uintptr_t)p % a) == 0, "align %zu -> %p", a, (void *)p);
        memset(p, 0xab, 1000); /* ASan checks the whole block is ours */
        fa_aligned_free(p);
    }
    CHECK(fa_aligned_alloc(16, 3) == NULL);   /* not a power of two */
    CHECK(fa_aligned_alloc(SIZE_MAX - 8, 64) == NULL); /* overflow in the padding */
    fa_aligned_free(NULL);
}

TEST(dtype_sizes_and_names)
{
    CHECK(fa_dtype_size(FA_F32) == 4);
    CHECK(fa_dtype_size(FA_F16) == 2);
    CHECK(fa_dtype_size(FA_BF16) == 2);
    CHECK(fa_dtype_size(FA_E4M3) == 1);
    CHECK(fa_dtype_size(FA_E5M2) == 1);
    CHECK(fa_dtype_size((fa_dtype)99) == 0);
    CHECK(strcmp(fa_dtype_name(FA_BF16), "bf16") == 0);
    CHECK(strcmp(fa_dtype_name((fa_dtype)-3), "?") == 0);
}

TEST(cpu_feature_override_restricts_and_restores)
{
    unsigned det = fa_cpu_features_detected();
    CHECK(fa_cpu_features() == det);
    fa_cpu_features_override(0);
    CHECK(fa_cpu_features() == 0);
    fa_cpu_features_override(FA_CPU_AVX2 | FA_CPU_NEON);
    CHECK((fa_cpu_features() & ~(unsigned)(FA_CPU_AVX2 | FA_CPU_NEON)) == 0);
    CHECK(fa_cpu_features() == (det & (FA_CPU_AVX2 | FA_CPU_NEON)));
    fa_cpu_features_override(~0u);
    CHECK(fa_cpu_features() == det);
    /* implied features: AVX-512 paths assume AVX2 and FMA are there */
    if (det & FA_CPU_AVX512F) CHECK((det & FA_CPU_AVX2) && (det & FA_CPU_FMA));
    CHECK(fa_cpu_count() >= 1);
    printf("     detected features 0x%x, %d cpus\n", det, fa_cpu_count());
}

TEST(version_macros_agree)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", FLASHATTN_VERSION_MAJOR, FLASHATTN_VERSION_MINOR,
             FLASHATTN_VERSION_PATCH);
    CHECK(strcmp(buf, FLASHATTN_VERSION_STRING) == 0);
    CHECK(FLASHATTN_VERSION == FLASHATTN_VERSION_MAJOR * 10000 + FLASHATTN_VERSION_MINOR * 100 +
                                   FLASHATTN_VERSION_PATCH);
}

int main(void)
{
    fa_test_init();
    RUN(status_strings_are_distinct_and_named);
    RUN(last_error_holds_the_detail_and_clears);
    RUN(aligned_alloc_honours_alignment_and_rejects_bad_requests);
    RUN(dtype_sizes_and_names);
    RUN(cpu_feature_override_restricts_and_restores);
    RUN(version_macros_agree);
    return fa_test_summary();
}
