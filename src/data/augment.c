/* The augmentation pipeline: applies one view's drawn parameters in the reference Compose
 * order (crop+resize, flip, ColorJitter in its drawn order, grayscale, blur, solarize) on an
 * 8-bit image, then ToTensor + Normalize; and the evaluation transform. */
#include <math.h>
#include <string.h>
#include "barlow/error.h"
#include "data/aug_internal.h"
#include "data/aug_simd.h"

bt_aug_work *bt_aug_work_new(void) { return bt_calloc(sizeof(bt_aug_work)); }

void bt_aug_work_free(bt_aug_work *w) {
    if (!w) return;
    bt_free(w->img);
    bt_free(w->tmp);
    bt_free(w->kx);
    bt_free(w->ky);
    bt_free(w->bx);
    bt_free(w->by);
    bt_free(w->kd);
    bt_free(w->acc);
    bt_free(w->line);
    bt_free(w->tr1);
    bt_free(w->tr2);
    bt_free(w);
}

/* The crop box against a src_w x src_h image (the original's size). */
static int check_crop(int src_w, int src_h, const bt_aug_params *pr, const bt_aug_view_cfg *c) {
    if (c->size <= 0 || c->size > 4096)
        return bt_fail(BT_EINVAL, "augment: output size %d out of range", c->size);
    if (pr->crop_top < 0 || pr->crop_left < 0 || pr->crop_h <= 0 || pr->crop_w <= 0 ||
        pr->crop_top + pr->crop_h > src_h || pr->crop_left + pr->crop_w > src_w)
        return bt_fail(BT_EINVAL, "augment: crop (%d,%d) %dx%d outside the %dx%d image",
                       pr->crop_top, pr->crop_left, pr->crop_w, pr->crop_h, src_w, src_h);
    return BT_OK;
}

static int check_pixel(const bt_aug_params *pr) {
    if (pr->jitter) {
        int seen = 0;
        for (int i = 0; i < 4; i++) {
            if (pr->jitter_order[i] < 0 || pr->jitter_order[i] > 3)
                return bt_fail(BT_EINVAL, "augment: jitter order entry %d", pr->jitter_order[i]);
            seen |= 1 << pr->jitter_order[i];
        }
        if (seen != 15) return bt_fail(BT_EINVAL, "augment: jitter order is not a permutation");
        if (!(pr->hue >= -0.5f && pr->hue <= 0.5f))
            return bt_fail(BT_EINVAL, "augment: hue %g not in [-0.5, 0.5]", (double)pr->hue);
        if (!(pr->brightness >= 0 && pr->contrast >= 0 && pr->saturation >= 0))
            return bt_fail(BT_EINVAL, "augment: negative jitter factor");
    }
    if (pr->blur && !(pr->sigma >= 0.0f))
        return bt_fail(BT_EINVAL, "augment: blur sigma %g", (double)pr->sigma);
    return BT_OK;
}

static int check_params(const bt_image *src, const bt_aug_params *pr, const bt_aug_view_cfg *c) {
    if (!src || !src->px || src->w <= 0 || src->h <= 0)
        return bt_fail(BT_EINVAL, "augment: empty source image");
    int rc = check_crop(src->w, src->h, pr, c);
    return rc ? rc : check_pixel(pr);
}

/* The crop image: dst allocated (c->size square) when dst->px is NULL, else checked. */
static int crop_image(bt_image *dst, const bt_aug_view_cfg *c) {
    if (!dst->px) return bt_image_alloc(dst, c->size, c->size);
    if (dst->w != c->size || dst->h != c->size)
        return bt_fail(BT_EINVAL, "augment: destination is %dx%d, view size %d", dst->w, dst->h,
                       c->size);
    return BT_OK;
}

/* The geometric half, into im (c->size square, allocated): crop + resize, flip. */
static int geometric(bt_image *im, const bt_image *src, const bt_aug_params *pr,
                     const bt_aug_view_cfg *c, bt_aug_work *w) {
    int rc = bt_aug_resized_crop(im, src, pr->crop_top, pr->crop_left, pr->crop_h, pr->crop_w,
                                 c->interp, w);
    if (rc) return rc;
    if (pr->flip) bt_aug_hflip(im);
    return BT_OK;
}

/* The per-pixel half before ToTensor, in place on the crop: ColorJitter in its drawn order,
 * grayscale, blur, solarize. */
static int pixel_u8(bt_image *im, const bt_aug_params *pr, bt_aug_work *w) {
    if (pr->jitter) {
        for (int i = 0; i < 4; i++) {
            switch (pr->jitter_order[i]) {
            case 0: bt_aug_brightness(im, pr->brightness); break;
            case 1: bt_aug_contrast(im, pr->contrast); break;
            case 2: bt_aug_saturation(im, pr->saturation); break;
            default: bt_aug_hue(im, pr->hue); break;
            }
        }
    }
    if (pr->gray) bt_aug_grayscale(im);
    int rc;
    if (pr->blur && (rc = bt_aug_gaussian_blur(im, pr->sigma, w))) return rc;
    if (pr->solarize) bt_aug_solarize(im);
    return BT_OK;
}

/* ToTensor + Normalize: ((float)v / 255 - mean) / std in float32, HWC -> CHW. */
static void normalize(float *out, const uint8_t *px, int w, int h, const float mean[3],
                      const float std[3]) {
    const size_t n = (size_t)w * h;
    bt_aug_kernels_cur()->normalize(out, out + n, out + 2 * n, px, n, mean, std);
}

int bt_aug_geometric(bt_image *crop, const bt_image *src, const bt_aug_params *pr,
                     const bt_aug_view_cfg *c, bt_aug_work *w) {
    if (!src || !src->px || src->w <= 0 || src->h <= 0)
        return bt_fail(BT_EINVAL, "augment: empty source image");
    int rc = check_crop(src->w, src->h, pr, c);
    if (rc || (rc = crop_image(crop, c))) return rc;
    return geometric(crop, src, pr, c, w);
}

int bt_aug_decode_denominator(const bt_aug_params *pr, const bt_aug_view_cfg *c) {
    int d = 1;
    while (d < 8 && pr->crop_w >= 2 * d * c->size && pr->crop_h >= 2 * d * c->size) d *= 2;
    return d;
}

int bt_aug_geometric_scaled(bt_image *crop, const bt_image *src, int full_w, int full_h,
                            const bt_aug_params *pr, const bt_aug_view_cfg *c, bt_aug_work *w) {
    if (!src || !src->px || src->w <= 0 || src->h <= 0 || src->w > full_w || src->h > full_h)
        return bt_fail(BT_EINVAL, "augment: scaled image %dx%d of a %dx%d original",
                       src ? src->w : 0, src ? src->h : 0, full_w, full_h);
    int rc = check_crop(full_w, full_h, pr, c);
    if (rc || (rc = crop_image(crop, c))) return rc;
    if (src->w == full_w && src->h == full_h) return geometric(crop, src, pr, c, w);
    /* The box in the scaled image's pixels: each axis scaled by its own ratio (a scaled
     * JPEG's side is the original's divided and rounded up). */
    const double sx = (double)src->w / full_w, sy = (double)src->h / full_h;
    float box[4] = {(float)(pr->crop_left * sx), (float)(pr->crop_top * sy),
                    (float)((pr->crop_left + pr->crop_w) * sx),
                    (float)((pr->crop_top + pr->crop_h) * sy)};
    if (box[2] > (float)src->w) box[2] = (float)src->w;
    if (box[3] > (float)src->h) box[3] = (float)src->h;
    if ((rc = bt_aug_resample_box(crop->px, src, box, c->size, c->size, c->interp, w))) return rc;
    if (pr->flip) bt_aug_hflip(crop);
    return BT_OK;
}

int bt_aug_pixel(float *out, bt_image *crop, const bt_aug_params *pr, const float mean[3],
                 const float std[3], bt_aug_work *w) {
    if (!crop || !crop->px) return bt_fail(BT_EINVAL, "augment: empty crop");
    int rc = check_pixel(pr);
    if (rc || (rc = pixel_u8(crop, pr, w))) return rc;
    normalize(out, crop->px, crop->w, crop->h, mean, std);
    return BT_OK;
}

int bt_aug_apply_u8(bt_image *dst, const bt_image *src, const bt_aug_params *pr,
                    const bt_aug_view_cfg *c, bt_aug_work *w) {
    int rc = check_params(src, pr, c);
    if (rc || (rc = crop_image(dst, c)) || (rc = geometric(dst, src, pr, c, w))) return rc;
    return pixel_u8(dst, pr, w);
}

int bt_aug_apply(float *out, const bt_image *src, const bt_aug_params *pr,
                 const bt_aug_view_cfg *c, const float mean[3], const float std[3],
                 bt_aug_work *w) {
    int rc = check_params(src, pr, c);
    if (rc) return rc;
    if (bt_aug_grow((void **)&w->img, &w->img_cap, (size_t)c->size * c->size * 3))
        return BT_ENOMEM;
    bt_image im = {c->size, c->size, w->img}; /* a view of the work buffer, not owned */
    if ((rc = geometric(&im, src, pr, c, w)) || (rc = pixel_u8(&im, pr, w))) return rc;
    normalize(out, im.px, im.w, im.h, mean, std);
    return BT_OK;
}

/* torchvision Resize(int): shorter side to `size`, longer int(size * long / short). */
static void eval_resized(const bt_aug_preset *p, int sw, int sh, int *rw, int *rh) {
    *rw = sw;
    *rh = sh;
    if (p->eval_resize <= 0) return;
    int s = p->eval_resize;
    if (sw <= sh) {
        *rw = s;
        *rh = (int)((double)s * sh / sw);
    } else {
        *rh = s;
        *rw = (int)((double)s * sw / sh);
    }
}

int bt_aug_eval_size(const bt_aug_preset *p, int src_w, int src_h) {
    if (src_w <= 0 || src_h <= 0)
        return bt_fail(BT_EINVAL, "eval transform: empty image %dx%d", src_w, src_h);
    int rw, rh;
    eval_resized(p, src_w, src_h, &rw, &rh);
    if (p->eval_crop > 0) {
        if (p->eval_crop > rw || p->eval_crop > rh)
            return bt_fail(BT_EINVAL, "eval transform: %dx%d image smaller than the %d crop", rw,
                           rh, p->eval_crop);
        return p->eval_crop;
    }
    if (rw != rh)
        return bt_fail(BT_EINVAL, "eval transform of preset '%s' gives a non-square %dx%d image "
                       "(set eval-crop)", p->name, rw, rh);
    return rw;
}

int bt_aug_eval(float *out, const bt_image *src, const bt_aug_preset *p, bt_aug_work *w) {
    if (!src || !src->px) return bt_fail(BT_EINVAL, "eval transform: empty source image");
    int S = bt_aug_eval_size(p, src->w, src->h);
    if (S < 0) return S;
    int rw, rh;
    eval_resized(p, src->w, src->h, &rw, &rh);
    /* CenterCrop: int(round((H - S) / 2.0)), Python rounding (half to even). */
    int top = (int)nearbyint((rh - S) / 2.0), left = (int)nearbyint((rw - S) / 2.0);
    if (bt_aug_grow((void **)&w->img, &w->img_cap, (size_t)S * S * 3)) return BT_ENOMEM;
    /* Resizing then cropping equals resampling only the crop's window of the resized image. */
    int rc = bt_aug_resample(w->img, src->px, (size_t)src->w * 3, src->w, src->h, rw, rh, left,
                             top, S, S, p->eval_interp, w);
    if (rc) return rc;
    normalize(out, w->img, S, S, p->mean, p->std);
    return BT_OK;
}
