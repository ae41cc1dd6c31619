/* Colour ops with PIL's arithmetic: ImageEnhance (Brightness, Contrast, Color) are
 * Image.blend(degenerate, image, factor) computed in float32 and truncated to 8 bits
 * (Blend.c); 'L' is the ITU-R 601-2 luma in 16-bit fixed point (Convert.c L24); hue goes
 * through PIL's 8-bit HSV (Convert.c rgb2hsv_row / hsv2rgb) with a uint8 wrap-around shift,
 * as torchvision's adjust_hue does with numpy. Also flip, grayscale and solarize. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL is built without FMA; a fused multiply-add rounds differently */
#elif defined(__GNUC__)
/* Lets GCC if-convert (and so vectorise) the branch-free float code below; it changes no
 * value, only the assumption that FP exception flags are observed. */
#pragma GCC optimize("no-trapping-math")
#endif
#include <math.h>
#include <string.h>
#include "barlow/augment.h"

static inline uint8_t luma(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

/* One blended sample: im1 + alpha * (im2 - im1) in float32 (separate statements keep the
 * product rounded before the sum), clipped, truncated. */
static inline uint8_t blend1(int a, int b, float alpha) {
    float d = (float)(b - a);
    float prod = alpha * d;
    float r = (float)a + prod;
    if (r <= 0.0f) return 0;
    if (r >= 255.0f) return 255;
    return (uint8_t)r;
}

/* Applies out = blend(deg, v, alpha) through a table, for a constant degenerate value. */
static void blend_const(bt_image *im, int deg, float alpha) {
    uint8_t lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = alpha == 0.0f ? (uint8_t)deg : alpha == 1.0f ? (uint8_t)v : blend1(deg, v, alpha);
    size_t n = (size_t)im->w * im->h * 3;
    for (size_t i = 0; i < n; i++) im->px[i] = lut[im->px[i]];
}

void bt_aug_brightness(bt_image *im, float factor) { blend_const(im, 0, factor); }

void bt_aug_contrast(bt_image *im, float factor) {
    /* ImageStat mean of the L image, summed as PIL does (exact in double), rounded half up. */
    size_t n = (size_t)im->w * im->h;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += luma(im->px + 3 * i);
    double mean = (double)sum / (double)n;
    blend_const(im, (int)(mean + 0.5), factor);
}

void bt_aug_saturation(bt_image *im, float factor) {
    if (factor == 1.0f) return; /* Blend.c copies im2 */
    size_t n = (size_t)im->w * im->h;
    uint8_t *px = im->px;
    if (factor == 0.0f) { /* Blend.c copies im1, the L image */
        for (size_t i = 0; i < n; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = luma(px + 3 * i);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int l = luma(px + 3 * i);
        px[3 * i] = blend1(l, px[3 * i], factor);
        px[3 * i + 1] = blend1(l, px[3 * i + 1], factor);
        px[3 * i + 2] = blend1(l, px[3 * i + 2], factor);
    }
}

/* Hue: Convert.c rgb2hsv_row, the uint8 shift, Convert.c hsv2rgb, per pixel, keeping
 * Pillow's mix of float and double steps (each division, product and conversion rounds where
 * Pillow's does). Written branch-free over blocks of pixels so the compiler vectorises it:
 * every candidate of a branch is computed and the taken one selected, which gives the same
 * values as the branches. Two exact rewrites: fmod(x, 1.0) for x in [5/6, 11/6) is x or
 * x - 1; round(x) for x >= 0 is trunc(x) + (x - trunc(x) >= 0.5); floor of h*6/255 >= 0 is
 * its truncation. */
enum { HUE_BLOCK = 64 };

static void hue_block(uint8_t *px, int n, int shift) {
    int hh[HUE_BLOCK], ss[HUE_BLOCK], vv[HUE_BLOCK];
    for (int j = 0; j < n; j++) { /* rgb2hsv_row + shift */
        int r = px[3 * j], g = px[3 * j + 1], b = px[3 * j + 2];
        int maxc = r > g ? r : g;
        maxc = maxc > b ? maxc : b;
        int minc = r < g ? r : g;
        minc = minc < b ? minc : b;
        int gray = maxc == minc;
        float cr = (float)(gray ? 1 : maxc - minc);
        float s = cr / (float)(maxc ? maxc : 1);
        float rc = ((float)(maxc - r)) / cr, gc = ((float)(maxc - g)) / cr,
              bc = ((float)(maxc - b)) / cr;
        float h_r = bc - gc;
        float h_g = (float)(2.0 + rc - bc);
        float h_b = (float)(4.0 + gc - rc);
        float h = r == maxc ? h_r : (g == maxc ? h_g : h_b);
        double x = h / 6.0 + 1.0;
        double xm = x - 1.0;
        float hw = (float)(x >= 1.0 ? xm : x);
        int uh = (int)(hw * 255.0), us = (int)(s * 255.0);
        uh = uh < 0 ? 0 : uh > 255 ? 255 : uh;
        us = us < 0 ? 0 : us > 255 ? 255 : us;
        hh[j] = gray ? shift : (uh + shift) & 255; /* gray: h = s = 0 before the shift */
        ss[j] = gray ? 0 : us;
        vv[j] = maxc;
    }
    for (int j = 0; j < n; j++) { /* hsv2rgb */
        int h = hh[j], s = ss[j], v = vv[j];
        double h6 = (float)h * 6.0 / 255.0;
        int i = (int)h6;
        float f = (float)(h6 - (float)i);
        float fs = (float)(((float)s) / 255.0);
        float fsf = fs * f;
        double dp = (float)v * (1.0 - fs);
        double dq = (float)v * (1.0 - fsf);
        double dt = (float)v * (1.0 - fs * (1.0 - f));
        int p = (int)dp, q = (int)dq, t = (int)dt;
        p += dp - p >= 0.5;
        q += dq - q >= 0.5;
        t += dt - t >= 0.5;
        p = p < 0 ? 0 : p > 255 ? 255 : p;
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        t = t < 0 ? 0 : t > 255 ? 255 : t;
        /* switch (i % 6) as masks; s == 0 gives (v, v, v) */
        int m0 = -((i == 0) | (i == 6)), m1 = -(i == 1), m2 = -(i == 2), m3 = -(i == 3),
            m4 = -(i == 4), m5 = -(i == 5), mg = -(s == 0);
        int ro = (v & (m0 | m5)) | (q & m1) | (t & m4) | (p & (m2 | m3));
        int go = (v & (m1 | m2)) | (t & m0) | (q & m3) | (p & (m4 | m5));
        int bo = (v & (m3 | m4)) | (t & m2) | (q & m5) | (p & (m0 | m1));
        px[3 * j] = (uint8_t)((ro & ~mg) | (v & mg));
        px[3 * j + 1] = (uint8_t)((go & ~mg) | (v & mg));
        px[3 * j + 2] = (uint8_t)((bo & ~mg) | (v & mg));
    }
}

void bt_aug_hue(bt_image *im, float hue) {
    /* np.uint8(hue * 255): truncation toward zero, then modulo 256. */
    int shift = ((int)((double)hue * 255.0)) & 255;
    size_t n = (size_t)im->w * im->h;
    for (size_t i = 0; i < n; i += HUE_BLOCK) {
        int m = n - i < HUE_BLOCK ? (int)(n - i) : HUE_BLOCK;
        hue_block(im->px + 3 * i, m, shift);
    }
}

void bt_aug_grayscale(bt_image *im) {
    size_t n = (size_t)im->w * im->h;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = im->px + 3 * i;
        p[0] = p[1] = p[2] = luma(p);
    }
}

void bt_aug_solarize(bt_image *im) {
    size_t n = (size_t)im->w * im->h * 3;
    for (size_t i = 0; i < n; i++)
        if (im->px[i] >= 128) im->px[i] = (uint8_t)(255 - im->px[i]);
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
