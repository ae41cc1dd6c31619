/* Drawing one view's augmentation parameters, in the order the reference Compose consumes
 * randomness, with torchvision's RandomResizedCrop.get_params geometry (10 attempts, then a
 * centre crop with the ratio clamped) and Python's round-half-to-even. */
#include <math.h>
#include "barlow/augment.h"

static double uniform(bt_rng *r, double lo, double hi) {
    return lo + (hi - lo) * bt_rng_uniform(r);
}

static void sample_crop(bt_aug_params *pr, const bt_aug_view_cfg *c, int W, int H, bt_rng *rng) {
    const double area = (double)H * W;
    /* torchvision takes log(ratio) in float32. */
    const double lr0 = logf(c->ratio_min), lr1 = logf(c->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (float)uniform(rng, c->scale_min, c->scale_max);
        double aspect = expf((float)uniform(rng, lr0, lr1));
        int w = (int)nearbyint(sqrt(target * aspect));
        int h = (int)nearbyint(sqrt(target / aspect));
        if (0 < w && w <= W && 0 < h && h <= H) {
            pr->crop_top = (int)bt_rng_below(rng, (uint64_t)(H - h + 1));
            pr->crop_left = (int)bt_rng_below(rng, (uint64_t)(W - w + 1));
            pr->crop_h = h;
            pr->crop_w = w;
            return;
        }
    }
    double in_ratio = (double)W / (double)H;
    double rmin = fmin(c->ratio_min, c->ratio_max), rmax = fmax(c->ratio_min, c->ratio_max);
    int w = W, h = H;
    if (in_ratio < rmin) h = (int)nearbyint(w / rmin);
    else if (in_ratio > rmax) w = (int)nearbyint(h * rmax);
    pr->crop_top = (H - h) / 2;
    pr->crop_left = (W - w) / 2;
    pr->crop_h = h;
    pr->crop_w = w;
}

void bt_aug_sample(bt_aug_params *pr, const bt_aug_view_cfg *c, int src_w, int src_h,
                   bt_rng *rng) {
    sample_crop(pr, c, src_w, src_h, rng);
    pr->flip = bt_rng_uniform(rng) < c->flip_p;
    pr->jitter = bt_rng_uniform(rng) < c->jitter_p;
    for (int i = 0; i < 4; i++) pr->jitter_order[i] = i;
    pr->brightness = pr->contrast = pr->saturation = 1.0f;
    pr->hue = 0.0f;
    if (pr->jitter) {
        for (int i = 3; i > 0; i--) { /* Fisher-Yates: a uniform random permutation */
            int j = (int)bt_rng_below(rng, (uint64_t)i + 1);
            int t = pr->jitter_order[i];
            pr->jitter_order[i] = pr->jitter_order[j];
            pr->jitter_order[j] = t;
        }
        pr->brightness = (float)uniform(rng, fmax(0.0, 1.0 - c->brightness), 1.0 + c->brightness);
        pr->contrast = (float)uniform(rng, fmax(0.0, 1.0 - c->contrast), 1.0 + c->contrast);
        pr->saturation = (float)uniform(rng, fmax(0.0, 1.0 - c->saturation), 1.0 + c->saturation);
        pr->hue = (float)uniform(rng, -c->hue, c->hue);
    }
    pr->gray = bt_rng_uniform(rng) < c->gray_p;
    pr->blur = bt_rng_uniform(rng) < c->blur_p;
    pr->sigma = 0.0f;
    if (pr->blur) pr->sigma = (float)uniform(rng, c->blur_sigma_min, c->blur_sigma_max);
    pr->solarize = bt_rng_uniform(rng) < c->solarize_p;
}
