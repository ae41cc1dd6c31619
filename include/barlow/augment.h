/* The two-view augmentation pipeline of the reference's Transform (torchvision + PIL
 * semantics): RandomResizedCrop, RandomHorizontalFlip, ColorJitter (p), RandomGrayscale,
 * GaussianBlur (PIL), Solarization, ToTensor + Normalize; and the evaluation transform.
 * Sampling and applying are separate so tests can feed the same parameters to torchvision. */
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

#endif
