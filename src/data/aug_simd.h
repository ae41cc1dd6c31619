/* The per-pixel loops of the augmentations, one table per instruction-set path. Every path
 * compiles the same portable C (aug_simd_body.inc) under its own target attributes, so the
 * compiler vectorises it as wide as the path allows while each value comes from the same
 * integer or IEEE float steps (no FMA: -ffp-contract=off): the paths agree byte for byte,
 * and with Pillow (tests/test_aug_simd.c holds every path against the generic one,
 * tests/test_augment.c every path against torchvision). */
#ifndef BARLOW_AUG_SIMD_H
#define BARLOW_AUG_SIMD_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/cpu.h"

typedef struct {
    /* torchvision's PIL adjust_hue on n RGB pixels (shift: np.uint8(hue * 255)). */
    void (*hue)(uint8_t *px, size_t n, int shift);
    /* ImageEnhance.Color blend with the pixel's luma, factor not 0 or 1. */
    void (*saturation)(uint8_t *px, size_t n, float factor);
    /* convert('L') replicated to three channels. */
    void (*grayscale)(uint8_t *px, size_t n);
    /* Sum of the L values of n pixels (ImageStat of the L image). */
    uint64_t (*luma_sum)(const uint8_t *px, size_t n);
    /* Blend.c with a constant image deg: px = blend(deg, px, alpha) on n bytes. */
    void (*blend_const)(uint8_t *px, size_t n, int deg, float alpha);
    /* ImageOps.solarize(img, 128) on n bytes. */
    void (*solarize)(uint8_t *px, size_t n);
    /* Resample.c's fixed-point pass along the rows axis, every byte of a row independent
     * (a channel): out (rows_out, len) from in (row of source index y at in + (y - roff) *
     * stride), taps kk (rows_out, ksize), bounds (rows_out, 2); acc (len) scratch. */
    void (*resample_rows)(uint8_t *out, const uint8_t *in, size_t stride, int roff,
                          int rows_out, int len, const int32_t *kk, const int *bounds,
                          int ksize, int32_t *acc);
    /* One BoxBlur.c pass along the rows axis of a (rows, len) array; acc (len) scratch. */
    void (*box_blur_rows)(uint8_t *out, const uint8_t *in, int rows, int len, int radius,
                          uint32_t ww, uint32_t fw, uint32_t *acc);
    /* ToTensor + Normalize of n RGB pixels into three planes o0, o1, o2. */
    void (*normalize)(float *o0, float *o1, float *o2, const uint8_t *px, size_t n,
                      const float mean[3], const float std[3]);
} bt_aug_kernels;

extern const bt_aug_kernels bt_aug_kernels_generic;
#if defined(__x86_64__) || defined(__i386__)
extern const bt_aug_kernels bt_aug_kernels_avx2, bt_aug_kernels_avx512;
#endif

/* The table of path isa (the generic one off x86). */
const bt_aug_kernels *bt_aug_kernels_for(bt_isa isa);
/* The table of the path in use (bt_isa_current). */
static inline const bt_aug_kernels *bt_aug_kernels_cur(void) {
    return bt_aug_kernels_for(bt_isa_current());
}

#endif
