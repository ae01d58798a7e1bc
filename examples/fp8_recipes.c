/* examples/fp8_recipes.c - quantize one tensor to FP8 with each scaling recipe and compare.

   Makes a 256 x 512 "activation" matrix with a few outlier rows (the case per-tensor scaling
   handles badly), quantizes it to E4M3 with per-tensor current scaling, 1 x 128 blocks
   (DeepSeek-V3's activations), 128 x 128 blocks (its weights) and MXFP8 (32-element blocks,
   E8M0 scales), dequantizes each, and prints the relative RMS error and the bytes of scales.
   Then runs three steps of delayed scaling (Transformer Engine's default recipe) and shows
   how its scale follows the amax history.

   Run:  make examples && build/ex_fp8_recipes     (or: cc -O2 -I. examples/fp8_recipes.c -lm) */
#define FLASHATTN_IMPLEMENTATION
#include "flashattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define ROWS 256
#define COLS 512

static int outlier_row(size_t row) { return row == 7 || row == 100; }

/* RMS of the error over RMS of x, over all rows (all = 1) or the ordinary rows only. */
static double rel_rms(const float *x, const float *y, size_t n, int all)
{
    double e = 0, s = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (!all && outlier_row(i / COLS)) continue;
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

#define CHECK_OK(call)                                                                      \
    do {                                                                                    \
        fa_status s_ = (call);                                                              \
        if (s_ != FA_OK) {                                                                  \
            fprintf(stderr, "%s: %s (%s)\n", #call, fa_status_str(s_), fa_last_error());     \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

int main(void)
{
    static float x[ROWS * COLS], y[ROWS * COLS], si[ROWS * COLS / 128];
    static uint8_t q[ROWS * COLS], mx_scales[ROWS * COLS / FA_MX_BLOCK];
    fa_fp8_scaling recipe = {FA_E4M3, 0, 0, 0.0f}; /* E4M3, no margin, any scale */
    fa_fp8_blocks rows_1x128 = {ROWS, COLS, 0, 1, 128};
    fa_fp8_blocks tiles_128 = {ROWS, COLS, 0, 128, 128};
    fa_mx_blocks mx = {ROWS, COLS, 0, FA_MX_SCALE_UP};
    fa_fp8_delayed delayed;
    float scale_inv, amax;
    size_t i, nscales;
    int step;
    unsigned r = 12345;

    for (i = 0; i < ROWS * COLS; i++) { /* roughly normal values, rows 7 and 100 are 20000x */
        double u1, u2;
        r = r * 1664525u + 1013904223u; u1 = (r >> 8) / 16777216.0 + 1e-9;
        r = r * 1664525u + 1013904223u; u2 = (r >> 8) / 16777216.0;
        x[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307 * u2));
        if (outlier_row(i / COLS)) x[i] *= 20000.0f;
    }
    printf("E4M3, %d x %d f32 tensor with two outlier rows; fa_convert path: %s\n\n", ROWS, COLS,
           fa_convert_path());
    printf("%-24s %14s %14s %12s\n", "recipe", "rel.RMS all", "ordinary rows", "scale bytes");

    CHECK_OK(fa_fp8_quantize_tensor(&recipe, q, x, FA_F32, ROWS * COLS, &scale_inv, &amax));
    CHECK_OK(fa_fp8_dequantize(y, FA_F32, q, FA_E4M3, ROWS * COLS, scale_inv));
    printf("%-24s %14.5f %14.5f %12d   (amax %.1f, scale %.4g)\n", "per tensor (current)",
           rel_rms(x, y, ROWS * COLS, 1), rel_rms(x, y, ROWS * COLS, 0), 4, (double)amax,
           1.0 / scale_inv);

    CHECK_OK(fa_fp8_block_scale_count(&rows_1x128, &nscales));
    CHECK_OK(fa_fp8_quantize_blocks(&recipe, &rows_1x128, q, x, FA_F32, si));
    CHECK_OK(fa_fp8_dequantize_blocks(&rows_1x128, y, FA_F32, q, FA_E4M3, si));
    printf("%-24s %14.5f %14.5f %12zu\n", "1 x 128 blocks", rel_rms(x, y, ROWS * COLS, 1),
           rel_rms(x, y, ROWS * COLS, 0), nscales * 4);

    CHECK_OK(fa_fp8_block_scale_count(&tiles_128, &nscales));
    CHECK_OK(fa_fp8_quantize_blocks(&recipe, &tiles_128, q, x, FA_F32, si));
    CHECK_OK(fa_fp8_dequantize_blocks(&tiles_128, y, FA_F32, q, FA_E4M3, si));
    printf("%-24s %14.5f %14.5f %12zu\n", "128 x 128 blocks", rel_rms(x, y, ROWS * COLS, 1),
           rel_rms(x, y, ROWS * COLS, 0), nscales * 4);

    CHECK_OK(fa_mx_scale_count(&mx, &nscales));
    CHECK_OK(fa_mx_quantize(&mx, FA_E4M3, q, x, FA_F32, mx_scales));
    CHECK_OK(fa_mx_dequantize(&mx, y, FA_F32, q, FA_E4M3, mx_scales));
    printf("%-24s %14.5f %14.5f %12zu\n", "MXFP8 (32, E8M0, up)", rel_rms(x, y, ROWS * COLS, 1),
           rel_rms(x, y, ROWS * COLS, 0), nscales);

    /* Delayed scaling: step s quantizes with the scale the history gave after step s-1; the
       first step uses the initial scale 1, as Transformer Engine does, and clips. */
    printf("\ndelayed scaling, history 4, \"max\", margin 0 (the tensor grows 4x per step):\n");
    CHECK_OK(fa_fp8_delayed_init(&delayed, FA_E4M3, 4, FA_AMAX_MAX, 0));
    for (step = 0; step < 3; step++) {
        CHECK_OK(fa_fp8_delayed_quantize(&delayed, q, x, FA_F32, ROWS * COLS, &scale_inv));
        CHECK_OK(fa_fp8_dequantize(y, FA_F32, q, FA_E4M3, ROWS * COLS, scale_inv));
        printf("  step %d: quantized with scale %-10.4g rel. RMS err %.5f; ", step,
               1.0 / scale_inv, rel_rms(x, y, ROWS * COLS, 1));
        CHECK_OK(fa_fp8_delayed_update(&delayed));
        printf("next scale %.4g\n", (double)delayed.scale);
        for (i = 0; i < ROWS * COLS; i++) x[i] *= 4.0f; /* the next step's tensor */
    }
    return 0;
}
