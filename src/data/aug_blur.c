/* PIL's GaussianBlur (Pillow libImaging/BoxBlur.c): three passes of an "extended" box blur
 * whose fractional radius comes from sigma (Gwosdek et al. 2011), rows then columns, with
 * edge pixels repeated and 24-bit fixed-point weights. Same integer steps as Pillow, so the
 * output is identical to img.filter(ImageFilter.GaussianBlur(sigma)). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL is built without FMA; a fused multiply-add rounds differently */
#endif
#include <math.h>
#include <string.h>
#include "barlow/error.h"
#include "data/aug_internal.h"
#include "data/aug_simd.h"

/* _gaussian_blur_radius: every step in float except the sqrt/floor lines, as in Pillow. */
static float box_radius(float radius, int passes) {
    float r2 = radius * radius;
    float sigma2 = r2 / (float)passes;
    float L = (float)sqrt(12.0 * sigma2 + 1.0);
    float l = (float)floor((L - 1.0) / 2.0);
    float l1 = l + 1.0f;
    float t1 = 2.0f * l;
    t1 = t1 + 1.0f;
    float t2 = l * l1;
    float t3 = 3.0f * sigma2;
    float a = t1 * (t2 - t3);
    float u = l1 * l1;
    float d = sigma2 - u;
    d = 6.0f * d;
    a /= d;
    return l + a;
}

/* (rows, cols, 3) -> (cols, rows, 3). */
static void transpose3(uint8_t *dst, const uint8_t *src, int rows, int cols) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)y * cols * 3;
        for (int x = 0; x < cols; x++) {
            uint8_t *d = dst + ((size_t)x * rows + y) * 3;
            d[0] = s[3 * x];
            d[1] = s[3 * x + 1];
            d[2] = s[3 * x + 2];
        }
    }
}

int bt_aug_gaussian_blur(bt_image *im, float sigma, bt_aug_work *wk) {
    if (!(sigma >= 0.0f) || !im->px)
        return bt_fail(BT_EINVAL, "gaussian_blur: sigma %g must be >= 0", (double)sigma);
    const int passes = 3;
    float fr = box_radius(sigma, passes);
    int radius = (int)fr;
    uint32_t ww = (uint32_t)((float)(1u << 24) / (fr * 2 + 1));
    uint32_t fw = ((1u << 24) - (uint32_t)(radius * 2 + 1) * ww) / 2;
    const int W = im->w, H = im->h;
    const size_t n = (size_t)W * H * 3;
    if (bt_aug_grow((void **)&wk->line, &wk->line_cap, 2 * n) ||
        bt_aug_grow((void **)&wk->acc, &wk->acc_cap,
                    (size_t)(W > H ? W : H) * 3 * sizeof(uint32_t)))
        return BT_ENOMEM;
    uint8_t *a = wk->line, *b = wk->line + n; /* (n) each */
    uint32_t *acc = (uint32_t *)wk->acc;
    /* Rows first, as Pillow: blur the transposed image along its rows axis (= x). */
    transpose3(a, im->px, H, W);
    for (int p = 0; p < passes; p++) {
        bt_aug_kernels_cur()->box_blur_rows(b, a, W, H * 3, radius, ww, fw, acc);
        uint8_t *t = a; a = b; b = t;
    }
    transpose3(b, a, W, H);
    for (int p = 0; p < passes; p++) {
        uint8_t *dst = p == passes - 1 ? im->px : a;
        bt_aug_kernels_cur()->box_blur_rows(dst, b, H, W * 3, radius, ww, fw, acc);
        uint8_t *t = a; a = b; b = t;
    }
    return BT_OK;
}
