/* PIL's Image.resize for 8-bit RGB (Pillow libImaging/Resample.c): separable convolution
 * with the filter's support widened by the downscale factor (antialiasing), coefficients
 * normalised per output pixel in double then rounded to 22-bit fixed point, a horizontal pass
 * clipped to 8 bits, then a vertical pass. Reproducing these steps (including the
 * intermediate clip and the pass order) makes the output equal to PIL's byte for byte. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL is built without FMA; a fused multiply-add rounds differently */
#endif
#include <math.h>
#include <string.h>
#include "barlow/error.h"
#include "data/aug_internal.h"
#include "data/aug_simd.h"

#define PRECISION_BITS (32 - 8 - 2)

int bt_aug_grow(void **buf, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return BT_OK;
    bt_free(*buf);
    *buf = bt_alloc(bytes);
    if (!*buf) {
        *cap = 0;
        return BT_ENOMEM;
    }
    *cap = bytes;
    return BT_OK;
}

static inline double filter_eval(double x, int interp) {
    if (x < 0.0) x = -x;
    if (interp == BT_INTERP_BICUBIC) {
        const double a = -0.5;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the n outputs o0..o0+n-1 of an
 * in_size -> out_size axis. kk: (n, ksize) fixed point, bounds: (n, 2) first tap, count. */
static int precompute(int in_size, float in0, float in1, int out_size, int o0, int n,
                      int interp, int32_t **kk, size_t *kk_cap, int **bounds, size_t *b_cap,
                      bt_aug_work *w) {
    /* in0, in1: PIL's box along this axis, as floats (0, in_size without a box) */
    double filterscale, scale;
    filterscale = scale = (double)(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = (interp == BT_INTERP_BICUBIC ? 2.0 : 1.0) * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (bt_aug_grow((void **)kk, kk_cap, (size_t)n * ksize * sizeof(int32_t)) ||
        bt_aug_grow((void **)bounds, b_cap, (size_t)n * 2 * sizeof(int)) ||
        bt_aug_grow((void **)&w->kd, &w->kd_cap, (size_t)ksize * sizeof(double)))
        return BT_ENOMEM;
    double *kd = w->kd; /* (ksize) */
    for (int i = 0; i < n; i++) {
        int xx = o0 + i;
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double v = filter_eval((x + xmin - center + 0.5) * ss, interp);
            kd[x] = v;
            ww += v;
        }
        int32_t *k = *kk + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = 0.0;
            if (x < xmax) {
                v = kd[x];
                if (ww != 0.0) v /= ww;
            }
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        (*bounds)[2 * i] = xmin;
        (*bounds)[2 * i + 1] = xmax;
    }
    return ksize;
}

/* The horizontal pass works on transposed rows of 4-byte pixels (RGB and a fourth byte
 * that is computed and thrown away): a pixel then moves as one 32-bit word in both
 * transposes, and each real channel's sums are PIL's. */

/* (rows, cols, 3) with row stride `stride` bytes -> (cols, rows) words, in cache-sized
 * tiles. The last column is read byte by byte: a word there would read past the row (and,
 * on the last row, past the image). */
static void transpose_in(uint32_t *dst, const uint8_t *src, size_t stride, int rows, int cols) {
    enum { T = 32 };
    for (int y0 = 0; y0 < rows; y0 += T)
        for (int x0 = 0; x0 < cols; x0 += T) {
            int y1 = y0 + T < rows ? y0 + T : rows, x1 = x0 + T < cols ? x0 + T : cols;
            int xw = x1 < cols ? x1 : cols - 1; /* columns read as words */
            for (int y = y0; y < y1; y++) {
                const uint8_t *s = src + (size_t)y * stride;
                for (int x = x0; x < xw; x++) {
                    uint32_t v;
                    memcpy(&v, s + 3 * x, 4);
                    dst[(size_t)x * rows + y] = v;
                }
                if (xw < x1) {
                    const uint8_t *p = s + 3 * xw;
                    dst[(size_t)xw * rows + y] =
                        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
                }
            }
        }
}

/* (cols, rows) words -> (rows, cols, 3). A word written at pixel x also writes pixel x+1's
 * first byte, which pixel x+1 (written later: x ascends within a row across the tiles)
 * overwrites; the last column is written byte by byte. */
static void transpose_out(uint8_t *dst, const uint32_t *src, int rows, int cols) {
    enum { T = 32 };
    for (int y0 = 0; y0 < rows; y0 += T)
        for (int x0 = 0; x0 < cols; x0 += T) {
            int y1 = y0 + T < rows ? y0 + T : rows, x1 = x0 + T < cols ? x0 + T : cols;
            int xw = x1 < cols ? x1 : cols - 1;
            for (int y = y0; y < y1; y++) {
                uint8_t *d = dst + (size_t)y * cols * 3;
                for (int x = x0; x < xw; x++) memcpy(d + 3 * x, &src[(size_t)x * rows + y], 4);
                if (xw < x1) {
                    uint32_t v = src[(size_t)xw * rows + y];
                    d[3 * xw] = (uint8_t)v;
                    d[3 * xw + 1] = (uint8_t)(v >> 8);
                    d[3 * xw + 2] = (uint8_t)(v >> 16);
                }
            }
        }
}

/* box: PIL's resize box (x0, y0, x1, y1) in source pixels, or NULL for the whole image. */
static int resample(uint8_t *dst, const uint8_t *src, size_t src_stride, int in_w, int in_h,
                    const float *box, int out_w, int out_h, int x0, int y0, int wnd_w,
                    int wnd_h, int interp, bt_aug_work *w) {
    if (in_w <= 0 || in_h <= 0 || out_w <= 0 || out_h <= 0 || wnd_w <= 0 || wnd_h <= 0 ||
        x0 < 0 || y0 < 0 || x0 + wnd_w > out_w || y0 + wnd_h > out_h)
        return bt_fail(BT_EINVAL, "resample: bad sizes %dx%d -> %dx%d window %dx%d at (%d,%d)",
                       in_w, in_h, out_w, out_h, wnd_w, wnd_h, x0, y0);
    if (interp != BT_INTERP_BILINEAR && interp != BT_INTERP_BICUBIC)
        return bt_fail(BT_EINVAL, "resample: unknown interpolation %d", interp);
    const float bx0 = box ? box[0] : 0.0f, by0 = box ? box[1] : 0.0f,
                bx1 = box ? box[2] : (float)in_w, by1 = box ? box[3] : (float)in_h;
    /* PIL skips a pass whose axis keeps its size over the whole image. */
    const int need_h = box || out_w != in_w, need_v = box || out_h != in_h;
    if (!need_h && !need_v) {
        for (int r = 0; r < wnd_h; r++)
            memcpy(dst + (size_t)r * wnd_w * 3, src + (size_t)(y0 + r) * src_stride + x0 * 3,
                   (size_t)wnd_w * 3);
        return BT_OK;
    }
    int ksv = 0, ksh = 0;
    if (need_v) {
        ksv = precompute(in_h, by0, by1, out_h, y0, wnd_h, interp, &w->ky, &w->ky_cap, &w->by,
                         &w->by_cap, w);
        if (ksv < 0) return ksv;
    }
    if (need_h) {
        ksh = precompute(in_w, bx0, bx1, out_w, x0, wnd_w, interp, &w->kx, &w->kx_cap, &w->bx,
                         &w->bx_cap, w);
        if (ksh < 0) return ksh;
    }
    const uint8_t *vin = src + (size_t)x0 * 3;
    size_t vstride = src_stride;
    int roff = 0;
    if (need_h) {
        /* Only the source rows the vertical pass reads are resampled horizontally. */
        int r0 = y0, r1 = y0 + wnd_h;
        if (need_v) {
            r0 = w->by[0];
            r1 = w->by[2 * (wnd_h - 1)] + w->by[2 * (wnd_h - 1) + 1];
        }
        uint8_t *hout = dst;
        if (need_v) {
            if (bt_aug_grow((void **)&w->tmp, &w->tmp_cap, (size_t)(r1 - r0) * wnd_w * 3))
                return BT_ENOMEM;
            hout = w->tmp;
        }
        /* The x pass runs as a y pass on the transposed rows (PIL's per-pixel sums, but
         * vectorised along memory), then is transposed back. */
        const int rows = r1 - r0;
        const int c0 = w->bx[0], c1 = w->bx[2 * (wnd_w - 1)] + w->bx[2 * (wnd_w - 1) + 1];
        if (bt_aug_grow((void **)&w->tr1, &w->tr1_cap, (size_t)(c1 - c0) * rows * 4) ||
            bt_aug_grow((void **)&w->tr2, &w->tr2_cap, (size_t)wnd_w * rows * 4) ||
            bt_aug_grow((void **)&w->acc, &w->acc_cap, (size_t)rows * 4 * sizeof(int32_t)))
            return BT_ENOMEM;
        uint32_t *t1 = (uint32_t *)(void *)w->tr1, *t2 = (uint32_t *)(void *)w->tr2;
        transpose_in(t1, src + (size_t)r0 * src_stride + (size_t)c0 * 3, src_stride, rows,
                     c1 - c0);
        bt_aug_kernels_cur()->resample_rows(w->tr2, w->tr1, (size_t)rows * 4, c0, wnd_w,
                                            rows * 4, w->kx, w->bx, ksh, w->acc);
        transpose_out(hout, t2, rows, wnd_w);
        if (!need_v) return BT_OK;
        vin = w->tmp;
        vstride = (size_t)wnd_w * 3;
        roff = r0;
    }
    if (bt_aug_grow((void **)&w->acc, &w->acc_cap, (size_t)wnd_w * 3 * sizeof(int32_t)))
        return BT_ENOMEM;
    bt_aug_kernels_cur()->resample_rows(dst, vin, vstride, roff, wnd_h, wnd_w * 3, w->ky, w->by,
                                        ksv, w->acc);
    return BT_OK;
}

int bt_aug_resample(uint8_t *dst, const uint8_t *src, size_t src_stride, int in_w, int in_h,
                    int out_w, int out_h, int x0, int y0, int wnd_w, int wnd_h, int interp,
                    bt_aug_work *w) {
    return resample(dst, src, src_stride, in_w, in_h, NULL, out_w, out_h, x0, y0, wnd_w, wnd_h,
                    interp, w);
}

int bt_aug_resample_box(uint8_t *dst, const bt_image *src, const float box[4], int out_w,
                        int out_h, int interp, bt_aug_work *w) {
    if (!src->px || !(box[0] >= 0 && box[1] >= 0 && box[2] <= (float)src->w &&
                      box[3] <= (float)src->h && box[0] < box[2] && box[1] < box[3]))
        return bt_fail(BT_EINVAL, "resample: box (%g,%g,%g,%g) outside the %dx%d image",
                       (double)box[0], (double)box[1], (double)box[2], (double)box[3], src->w,
                       src->h);
    return resample(dst, src->px, (size_t)src->w * 3, src->w, src->h, box, out_w, out_h, 0, 0,
                    out_w, out_h, interp, w);
}

int bt_aug_resized_crop(bt_image *dst, const bt_image *src, int top, int left, int h, int w,
                        int interp, bt_aug_work *wk) {
    if (!dst->px || !src->px || top < 0 || left < 0 || h <= 0 || w <= 0 ||
        top + h > src->h || left + w > src->w)
        return bt_fail(BT_EINVAL, "resized_crop: crop (%d,%d) %dx%d outside the %dx%d image",
                       top, left, w, h, src->w, src->h);
    const size_t stride = (size_t)src->w * 3;
    return bt_aug_resample(dst->px, src->px + (size_t)top * stride + (size_t)left * 3, stride,
                           w, h, dst->w, dst->h, 0, 0, dst->w, dst->h, interp, wk);
}
