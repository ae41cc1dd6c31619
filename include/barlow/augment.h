/* The two-view augmentation pipeline of the reference's Transform (torchvision + PIL
 * semantics): RandomResizedCrop, RandomHorizontalFlip, ColorJitter (p), RandomGrayscale,
 * GaussianBlur (PIL), Solarization, ToTensor + Normalize; and the evaluation transform.
 * Sampling and applying are separate so tests can feed the same parameters to torchvision.
 *
 * Every op reproduces Pillow's 8-bit arithmetic (Resample.c fixed-point two-pass resampling,
 * BoxBlur.c extended box blur, Blend.c float blend, Convert.c L/HSV conversions), so for the
 * same parameters the output equals torchvision on PIL images byte for byte. */
#ifndef BARLOW_AUGMENT_H
#define BARLOW_AUGMENT_H
#include "barlow/image.h"
#include "barlow/rng.h"

enum { BT_INTERP_BILINEAR = 0, BT_INTERP_BICUBIC = 1 };

/* One view's augmentation settings. */
typedef struct {
    int size;                                   /* output side (crop is resized to size x size) */
    float scale_min, scale_max;                 /* RandomResizedCrop scale, default (0.08, 1) */
    float ratio_min, ratio_max;                 /* ... ratio, default (3/4, 4/3) */
    int interp;                                 /* BT_INTERP_* */
    float flip_p;                               /* 0.5 */
    float jitter_p;                             /* 0.8 */
    float brightness, contrast, saturation, hue;/* 0.4, 0.4, 0.2, 0.1 */
    float gray_p;                               /* 0.2 */
    float blur_p, blur_sigma_min, blur_sigma_max; /* PIL GaussianBlur, sigma ~ U[min, max] */
    float solarize_p;                           /* threshold 128 */
} bt_aug_view_cfg;

typedef struct {
    char name[32];
    bt_aug_view_cfg view[2];
    float mean[3], std[3];                      /* Normalize */
    int eval_resize;                            /* eval: resize shorter side to this (0: none) */
    int eval_crop;                              /* eval: centre crop (0: none) */
    int eval_interp;
    /* Decode-time scaling (opt-in, 0 by default): a JPEG whose crops all cover at least
     * twice the output side is decoded at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's scaled
     * IDCT, as PIL's draft mode) and the crops are resampled from that. Faster; no longer
     * bit-identical to torchvision (README, "Decode-time scaling"). The draws are unchanged. */
    int decode_scale;
} bt_aug_preset;

/* Parameters drawn for one view of one image. */
typedef struct {
    int crop_top, crop_left, crop_h, crop_w;    /* RandomResizedCrop box in source pixels */
    int flip;
    int jitter;                                 /* ColorJitter applied at all */
    int jitter_order[4];                        /* permutation of 0 brightness,1 contrast,2 saturation,3 hue */
    float brightness, contrast, saturation, hue;/* sampled factors (hue: shift in [-0.5, 0.5]) */
    int gray;
    int blur;
    float sigma;
    int solarize;
} bt_aug_params;

typedef struct bt_aug_work bt_aug_work;         /* per-thread scratch images, grow-only */

/* ---- presets ---------------------------------------------------------------------------- */

/* Fills p with a named preset:
 *  "imagenet": 224 px, bicubic crops, blur p 1.0 / 0.1 with sigma in [0.1, 2], solarize
 *              0.0 / 0.2, ImageNet mean/std; eval: Resize(256) bilinear + CenterCrop(224).
 *  "cifar":    32 px, bilinear crops, scale (0.08, 1), no blur, solarize 0.0 / 0.2, CIFAR-10
 *              mean/std; eval: identity + normalise.
 * Both: ratio (3/4, 4/3), flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, gray 0.2.
 * Unknown name: BT_EINVAL with a message listing the presets. */
int bt_aug_preset_init(bt_aug_preset *p, const char *name);

/* Overrides one setting from text (command line). Per-view keys set both views, or one
 * view with a ".0" / ".1" suffix ("blur-p.1 0.5"):
 *   size INT (1..4096)            scale-min, scale-max FLOAT (0 < min <= max <= 1)
 *   ratio-min, ratio-max FLOAT (0 < min <= max)
 *   interp bilinear|bicubic       flip-p, jitter-p, gray-p, blur-p, solarize-p FLOAT in [0,1]
 *   brightness, contrast, saturation FLOAT >= 0     hue FLOAT in [0, 0.5]
 *   blur-sigma-min, blur-sigma-max FLOAT (0 <= min <= max <= 100)
 *   scale, ratio, blur-sigma MIN,MAX   (both ends at once)
 * Whole-preset keys:
 *   mean R,G,B   std R,G,B (each > 0)
 *   eval-resize INT (0: none)   eval-crop INT (0: none; an image smaller than the crop after
 *   the resize is refused by bt_aug_eval_size)
 *   eval-interp bilinear|bicubic
 *   decode-scale 0|1 (decode-time scaling, see bt_aug_preset.decode_scale)
 * Returns BT_EINVAL naming the key on an unknown key, a malformed value or one out of range
 * (including a min above its max: move both ends with the pair keys); p is unchanged then. */
int bt_aug_preset_set(bt_aug_preset *p, const char *key, const char *value);

/* ---- sampling ---------------------------------------------------------------------------- */

/* Draws one view's parameters for a src_w x src_h image in the order the reference Compose
 * consumes randomness: RandomResizedCrop.get_params (10 attempts, then the centre fallback),
 * flip, RandomApply(ColorJitter) and, if applied, the order (Fisher-Yates randperm(4)) and
 * the four factors, grayscale, blur (p, then sigma), solarize. */
void bt_aug_sample(bt_aug_params *pr, const bt_aug_view_cfg *c, int src_w, int src_h,
                   bt_rng *rng);

/* ---- applying ---------------------------------------------------------------------------- */

bt_aug_work *bt_aug_work_new(void);
void bt_aug_work_free(bt_aug_work *w);

/* The augmented, normalised view: out (3, c->size, c->size), (v/255 - mean) / std in float32
 * as ToTensor + Normalize compute it. w is the calling thread's work area (not shared). */
int bt_aug_apply(float *out, const bt_image *src, const bt_aug_params *pr,
                 const bt_aug_view_cfg *c, const float mean[3], const float std[3],
                 bt_aug_work *w);
/* The same augmented view as 8-bit RGB (the PIL image before ToTensor). dst is allocated
 * (c->size square) when dst->px is NULL; otherwise it must already be c->size square. */
int bt_aug_apply_u8(bt_image *dst, const bt_image *src, const bt_aug_params *pr,
                    const bt_aug_view_cfg *c, bt_aug_work *w);

/* ---- the two halves of a view ------------------------------------------------------
 * bt_aug_apply is bt_aug_geometric (decode side: RandomResizedCrop + flip, giving a uint8
 * crop) followed by bt_aug_pixel (ColorJitter, grayscale, blur, solarize, ToTensor +
 * Normalize), with the same output; the halves can run in different places (a backend's
 * per-pixel op), since both read only the drawn parameters. */

/* The geometric half: crop (c->size square) from src; allocated when crop->px is NULL,
 * otherwise it must already be c->size square. */
int bt_aug_geometric(bt_image *crop, const bt_image *src, const bt_aug_params *pr,
                     const bt_aug_view_cfg *c, bt_aug_work *w);
/* The largest JPEG scale denominator (1, 2, 4 or 8) at which view pr's crop box still
 * covers at least c->size pixels along both axes: 2 once the box is twice the output. */
int bt_aug_decode_denominator(const bt_aug_params *pr, const bt_aug_view_cfg *c);
/* The geometric half from src, an image decoded at reduced scale from a full_w x full_h
 * original (pr drawn for the original): the crop box is mapped onto src along each axis by
 * src->w / full_w and src->h / full_h, and resampled with PIL's float-box resize. Equals
 * bt_aug_geometric when src is full size. */
int bt_aug_geometric_scaled(bt_image *crop, const bt_image *src, int full_w, int full_h,
                            const bt_aug_params *pr, const bt_aug_view_cfg *c, bt_aug_work *w);
/* The per-pixel half: modifies crop (the geometric half's output) in place and writes the
 * normalised view out (3, crop->h, crop->w); w is the calling thread's work area. */
int bt_aug_pixel(float *out, bt_image *crop, const bt_aug_params *pr, const float mean[3],
                 const float std[3], bt_aug_work *w);

/* Side of the eval transform's (square) output for a src_w x src_h image: eval_crop if set,
 * else the resized or original side when that is square. BT_EINVAL (message set) when the
 * output would not be square or the image is smaller than the crop. */
int bt_aug_eval_size(const bt_aug_preset *p, int src_w, int src_h);
/* Eval transform: Resize(eval_resize) (shorter side, torchvision's rounding), CenterCrop
 * (eval_crop), ToTensor, Normalize. out (3, S, S), S = bt_aug_eval_size(p, src->w, src->h). */
int bt_aug_eval(float *out, const bt_image *src, const bt_aug_preset *p, bt_aug_work *w);

/* ---- single ops (PIL semantics; used by the pipeline, exposed for tests and tools) ------ */

/* F.resized_crop on a PIL image: crop (top, left, h, w) of src, then Image.resize to
 * out_w x out_h with PIL's antialiasing filter (BT_INTERP_*). dst must be allocated
 * out_w x out_h. The crop must lie inside src. */
int bt_aug_resized_crop(bt_image *dst, const bt_image *src, int top, int left, int h, int w,
                        int interp, bt_aug_work *wk);
void bt_aug_hflip(bt_image *im);
/* ImageEnhance.Brightness / Contrast / Color and torchvision's PIL adjust_hue, in place. */
void bt_aug_brightness(bt_image *im, float factor);
void bt_aug_contrast(bt_image *im, float factor);
void bt_aug_saturation(bt_image *im, float factor);
void bt_aug_hue(bt_image *im, float hue);
/* convert('L') replicated to three channels. */
void bt_aug_grayscale(bt_image *im);
/* img.filter(ImageFilter.GaussianBlur(sigma)), in place (sigma is taken as PIL's float). */
int bt_aug_gaussian_blur(bt_image *im, float sigma, bt_aug_work *wk);
/* ImageOps.solarize(img, 128). */
void bt_aug_solarize(bt_image *im);

#endif
