/* Colour ops with PIL's arithmetic: ImageEnhance (Brightness, Contrast, Color) are
 * Image.blend(degenerate, image, factor) computed in float32 and truncated to 8 bits
 * (Blend.c); 'L' is the ITU-R 601-2 luma in 16-bit fixed point (Convert.c L24); hue goes
 * through PIL's 8-bit HSV (Convert.c rgb2hsv_row / hsv2rgb) with a uint8 wrap-around shift,
 * as torchvision's adjust_hue does with numpy. Also flip, grayscale and solarize. The
 * per-pixel loops are in aug_simd_body.inc, one copy per ISA path (aug_simd.h). */
#include <math.h>
#include <string.h>
#include "barlow/augment.h"
#include "data/aug_simd.h"

/* Applies out = blend(deg, v, alpha) for a constant degenerate value (Blend.c copies an
 * input at alpha 0 or 1). */
static void blend_const(bt_image *im, int deg, float alpha) {
    size_t n = (size_t)im->w * im->h * 3;
    if (alpha == 1.0f) return;
    if (alpha == 0.0f) {
        memset(im->px, deg, n);
        return;
    }
    bt_aug_kernels_cur()->blend_const(im->px, n, deg, alpha);
}

void bt_aug_brightness(bt_image *im, float factor) { blend_const(im, 0, factor); }

void bt_aug_contrast(bt_image *im, float factor) {
    /* ImageStat mean of the L image, summed as PIL does (exact in double), rounded half up. */
    size_t n = (size_t)im->w * im->h;
    uint64_t sum = bt_aug_kernels_cur()->luma_sum(im->px, n);
    double mean = (double)sum / (double)n;
    blend_const(im, (int)(mean + 0.5), factor);
}

void bt_aug_saturation(bt_image *im, float factor) {
    if (factor == 1.0f) return; /* Blend.c copies im2 */
    size_t n = (size_t)im->w * im->h;
    if (factor == 0.0f) { /* Blend.c copies im1, the L image */
        bt_aug_kernels_cur()->grayscale(im->px, n);
        return;
    }
    bt_aug_kernels_cur()->saturation(im->px, n, factor);
}

/* The hue loop is in aug_simd_body.inc (branch-free, so it vectorises). */
void bt_aug_hue(bt_image *im, float hue) {
    /* np.uint8(hue * 255): truncation toward zero, then modulo 256. */
    int shift = ((int)((double)hue * 255.0)) & 255;
    bt_aug_kernels_cur()->hue(im->px, (size_t)im->w * im->h, shift);
}

void bt_aug_grayscale(bt_image *im) {
    bt_aug_kernels_cur()->grayscale(im->px, (size_t)im->w * im->h);
}

void bt_aug_solarize(bt_image *im) {
    bt_aug_kernels_cur()->solarize(im->px, (size_t)im->w * im->h * 3);
}

void bt_aug_hflip(bt_image *im) {
    for (int y = 0; y < im->h; y++) {
        uint8_t *row = im->px + (size_t)y * im->w * 3;
        for (int a = 0, b = im->w - 1; a < b; a++, b--) {
            uint8_t t[3];
            memcpy(t, row + 3 * a, 3);
            memcpy(row + 3 * a, row + 3 * b, 3);
            memcpy(row + 3 * b, t, 3);
        }
    }
}
