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

/* One box-blur pass along the rows axis of a (rows, len) array: out[y][c] from in[.][c],
 * for every column c at once. The per-line steps are ImagingLineBoxBlur's (running sum with
 * the edge pixel repeated, fractional end weights fw, 24-bit fixed point); the taps that
 * enter and leave depend only on y, so each step is one loop along a contiguous row. */
static void blur_pass(uint8_t *out, const uint8_t *in, int rows, int len, int radius,
                      uint32_t ww, uint32_t fw, uint32_t *acc /* (len) */) {
    const int lastx = rows - 1;
    const int edgeA = radius + 1 < rows ? radius + 1 : rows;
    const int edgeB = rows - radius - 1 > 0 ? rows - radius - 1 : 0;
#define ROW(i) (in + (size_t)(i) * len)
    {
        const uint8_t *r0 = ROW(0), *rl = ROW(lastx);
        const uint32_t m0 = (uint32_t)(radius + 1), ml = (uint32_t)(radius - edgeA + 1);
        for (int c = 0; c < len; c++) acc[c] = r0[c] * m0;
        for (int x = 0; x < edgeA - 1; x++) {
            const uint8_t *r = ROW(x);
            for (int c = 0; c < len; c++) acc[c] += r[c];
        }
        for (int c = 0; c < len; c++) acc[c] += rl[c] * ml;
    }
    for (int y = 0; y <= lastx; y++) {
        int sub, add, right; /* the left far pixel is always `sub` */
        if (edgeA <= edgeB) {
            if (y < edgeA) sub = 0, add = y + radius, right = y + radius + 1;
            else if (y < edgeB) sub = y - radius - 1, add = y + radius, right = y + radius + 1;
            else sub = y - radius - 1, add = lastx, right = lastx;
        } else {
            if (y < edgeB) sub = 0, add = y + radius, right = y + radius + 1;
            else if (y < edgeA) sub = 0, add = lastx, right = lastx;
            else sub = y - radius - 1, add = lastx, right = lastx;
        }
        const uint8_t *rs = ROW(sub), *ra = ROW(add), *rr = ROW(right);
        uint8_t *o = out + (size_t)y * len;
        for (int c = 0; c < len; c++) {
            uint32_t a = acc[c] + ra[c] - rs[c];
            acc[c] = a;
            uint32_t bulk = a * ww + (uint32_t)(rs[c] + rr[c]) * fw;
            o[c] = (uint8_t)((bulk + (1u << 23)) >> 24);
        }
    }
#undef ROW
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
        blur_pass(b, a, W, H * 3, radius, ww, fw, acc);
        uint8_t *t = a; a = b; b = t;
    }
    transpose3(b, a, W, H);
    for (int p = 0; p < passes; p++) {
        uint8_t *dst = p == passes - 1 ? im->px : a;
        blur_pass(dst, b, H, W * 3, radius, ww, fw, acc);
        uint8_t *t = a; a = b; b = t;
    }
    return BT_OK;
}
