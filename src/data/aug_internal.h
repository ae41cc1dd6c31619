/* Internals shared by the augmentation files (aug_*.c, augment.c): the per-thread work area
 * and the windowed PIL resampler that both the training crops and the eval transform use. */
#ifndef BARLOW_AUG_INTERNAL_H
#define BARLOW_AUG_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/augment.h"

/* Grow-only buffers: after the first images of the largest shape nothing is allocated. */
struct bt_aug_work {
    uint8_t *img;    size_t img_cap;   /* the view being built, (size, size, 3) */
    uint8_t *tmp;    size_t tmp_cap;   /* horizontal-pass output, (rows, out_w, 3) */
    int32_t *kx;     size_t kx_cap;    /* fixed-point coefficients, (out_w, ksize) */
    int32_t *ky;     size_t ky_cap;    /* (out_h, ksize) */
    int *bx;         size_t bx_cap;    /* (out_w, 2) first tap, tap count */
    int *by;         size_t by_cap;    /* (out_h, 2) */
    double *kd;      size_t kd_cap;    /* (ksize) one output's float coefficients */
    int32_t *acc;    size_t acc_cap;   /* (out_w * 3) vertical-pass accumulators */
    uint8_t *line;   size_t line_cap;  /* (2, h, w, 3) blur ping-pong images */
    uint8_t *tr1;    size_t tr1_cap;   /* (cols, rows, 4) transposed source for the x pass */
    uint8_t *tr2;    size_t tr2_cap;   /* (out_w, rows, 4) its result, before transposing back */
};

/* Ensures *buf holds at least `bytes`; contents are not kept. */
int bt_aug_grow(void **buf, size_t *cap, size_t bytes);

/* Image.resize((out_w, out_h), filter) of the in_w x in_h image at src (row stride
 * src_stride bytes, RGB interleaved), computing only the output window of wnd_w x wnd_h
 * pixels at (x0, y0) into dst (wnd_h, wnd_w, 3), row stride wnd_w * 3. Each output pixel
 * is exactly what the full resize gives there. */
int bt_aug_resample(uint8_t *dst, const uint8_t *src, size_t src_stride, int in_w, int in_h,
                    int out_w, int out_h, int x0, int y0, int wnd_w, int wnd_h, int interp,
                    bt_aug_work *w);

/* Image.resize((out_w, out_h), filter, box=box) of the whole of src: box (x0, y0, x1, y1) is
 * a float region of src (PIL's semantics: the filter is centred on the box's own grid and
 * clipped at the image's edges, so pixels just outside the box contribute). dst (out_h,
 * out_w, 3). Used by decode-time scaling, whose crop boxes fall between pixels. */
int bt_aug_resample_box(uint8_t *dst, const bt_image *src, const float box[4], int out_w,
                        int out_h, int interp, bt_aug_work *w);

#endif
