/* The two halves of a view and decode-time scaling:
 *  - bt_aug_geometric + bt_aug_pixel equal bt_aug_apply bit for bit (float32), for the
 *    draws of both presets' views on several image shapes, and bt_aug_geometric_scaled of a
 *    full-size image equals bt_aug_geometric;
 *  - the scaled path's error against the exact one is bounded: JPEGs decoded at 1/2, 1/4,
 *    1/8 and cropped through the mapped box, against the full decode and exact crop (the
 *    bounds are the README's, "Decode-time scaling");
 *  - the loader with decode-scale=1 gives the exact path's batches for every item whose
 *    crops do not allow scaling, and close ones for the others. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include "barlow/augment.h"
#include "barlow/error.h"
#include "barlow/loader.h"
#include "data/data_internal.h"
#include "testutil.h"

/* Smooth colour waves with a little texture noise and one sharp saturated block: a
 * photograph's mix of flat and detailed regions. */
static void make_image(bt_image *im, int w, int h, uint64_t seed) {
    if (bt_image_alloc(im, w, h)) {
        fprintf(stderr, "alloc: %s\n", bt_error());
        exit(1);
    }
    tu_rng r = {seed};
    double f[3], ph[3];
    for (int c = 0; c < 3; c++) {
        f[c] = 1 + 4 * tu_uniform(&r);
        ph[c] = 6.283 * tu_uniform(&r);
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im->px + ((size_t)y * w + x) * 3;
            for (int c = 0; c < 3; c++) {
                double v = 128 + 100 * sin(f[c] * 6.283 * x / w + ph[c]) *
                                     cos(f[(c + 1) % 3] * 6.283 * y / h) + 6 * tu_normal(&r);
                p[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            if (x > w / 2 && x < w / 2 + w / 8 && y > h / 2 && y < h / 2 + h / 8) {
                p[0] = 255;
                p[1] = (uint8_t)(((x / 3) & 1) ? 255 : 0);
                p[2] = 0;
            }
        }
}

static void fail_exit(const char *what) {
    fprintf(stderr, "%s: %s\n", what, bt_error());
    exit(1);
}

static void test_halves_equal_apply(void) {
    static const int shapes[][2] = {{500, 375}, {37, 29}, {300, 40}, {64, 64}};
    const char *presets[] = {"imagenet", "cifar"};
    bt_aug_work *w = bt_aug_work_new();
    for (int p = 0; p < 2; p++) {
        bt_aug_preset pr;
        if (bt_aug_preset_init(&pr, presets[p])) fail_exit("preset");
        if (p == 0) bt_aug_preset_set(&pr, "size", "96"); /* quicker, same steps */
        for (int s = 0; s < 4; s++) {
            bt_image src = {0};
            make_image(&src, shapes[s][0], shapes[s][1], 100 + s);
            for (int k = 0; k < 24; k++) {
                const int v = k & 1;
                const bt_aug_view_cfg *c = &pr.view[v];
                bt_rng rng = bt_rng_key(5, (uint64_t)p, (uint64_t)(s * 100 + k), (uint64_t)v);
                bt_aug_params prm;
                bt_aug_sample(&prm, c, src.w, src.h, &rng);
                size_t n = (size_t)3 * c->size * c->size;
                float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
                bt_image crop = {0}, crop2 = {0};
                int rc = bt_aug_apply(a, &src, &prm, c, pr.mean, pr.std, w);
                CHECK(rc == 0, "apply: %s", bt_error());
                rc = bt_aug_geometric(&crop, &src, &prm, c, w);
                CHECK(rc == 0, "geometric: %s", bt_error());
                rc = bt_aug_geometric_scaled(&crop2, &src, src.w, src.h, &prm, c, w);
                CHECK(rc == 0 && memcmp(crop.px, crop2.px, n) == 0,
                      "%s %dx%d draw %d: the scaled geometric half of a full-size image differs",
                      presets[p], src.w, src.h, k);
                rc = bt_aug_pixel(b, &crop, &prm, pr.mean, pr.std, w);
                CHECK(rc == 0, "pixel: %s", bt_error());
                CHECK(memcmp(a, b, n * sizeof(float)) == 0,
                      "%s %dx%d draw %d (view %d, jitter %d, gray %d, blur %d, solarize %d): "
                      "the two halves differ from bt_aug_apply", presets[p], src.w, src.h, k, v,
                      prm.jitter, prm.gray, prm.blur, prm.solarize);
                bt_image_free(&crop);
                bt_image_free(&crop2);
                free(a);
                free(b);
            }
            bt_image_free(&src);
        }
    }
    /* errors name themselves */
    bt_image src = {0}, crop = {0};
    make_image(&src, 20, 20, 1);
    bt_aug_preset pr;
    bt_aug_preset_init(&pr, "cifar");
    bt_aug_params prm = {.crop_top = 0, .crop_left = 0, .crop_h = 40, .crop_w = 40};
    CHECK(bt_aug_geometric_scaled(&crop, &src, 20, 20, &prm, &pr.view[0], w) == BT_EINVAL,
          "a crop outside the original is refused");
    CHECK(bt_aug_geometric_scaled(&crop, &src, 10, 10, &prm, &pr.view[0], w) == BT_EINVAL,
          "a 'scaled' image larger than its original is refused");
    CHECK(bt_aug_pixel(NULL, &crop, &prm, pr.mean, pr.std, w) == BT_EINVAL, "empty crop");
    bt_image_free(&src);
    bt_aug_work_free(w);
}

static uint8_t *encode_jpeg(const bt_image *im, unsigned long *len) {
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    if (!tj || tjCompress2(tj, im->px, im->w, 0, im->h, TJPF_RGB, &buf, len, TJSAMP_420, 90,
                           TJFLAG_ACCURATEDCT) != 0) {
        fprintf(stderr, "encode: %s\n", tjGetErrorStr2(tj));
        exit(1);
    }
    tjDestroy(tj);
    return buf;
}

static int fixed_den;
static int fixed_scale(void *ctx, int w, int h) {
    (void)ctx, (void)w, (void)h;
    return fixed_den;
}

/* The README's bounds, per denominator, over the 224-px crops that allow it: mean |d| of
 * the uint8 crops, and the share of samples off by more than 16 (seen on this machine: 1/2
 * 1.05 and 0.018, 1/4 1.24 and 0.023, most of the far ones in the sharp 3-px stripes). */
static const double k_mean_bound[4] = {0, 2.0, 2.5, 3.0};   /* den 2, 4, 8 at [1], [2], [3] */
static const double k_far_bound[4] = {0, 0.04, 0.05, 0.06};

static void test_decode_scale_error(void) {
    bt_aug_preset pr;
    bt_aug_preset_init(&pr, "imagenet");
    bt_aug_work *w = bt_aug_work_new();
    double sum[4] = {0}, far[4] = {0}, cnt[4] = {0};
    int maxd[4] = {0}, views[4] = {0};
    for (int s = 0; s < 3; s++) {
        const int W = s == 2 ? 1999 : 1600 + 200 * s, H = s == 2 ? 1501 : 1200;
        bt_image src = {0}, full = {0}, small = {0}, a = {0}, b = {0};
        make_image(&src, W, H, 40 + s);
        unsigned long len = 0;
        uint8_t *jpg = encode_jpeg(&src, &len);
        bt_decoder dc;
        bt_decoder_init(&dc);
        if (bt_decoder_decode(&dc, &full, jpg, len, "full")) fail_exit("decode");
        CHECK(dc.full_w == W && dc.full_h == H, "full size recorded");
        dc.scale_cb = fixed_scale;
        for (int k = 0; k < 40; k++) {
            bt_rng rng = bt_rng_key(9, (uint64_t)s, (uint64_t)k, 0);
            bt_aug_params prm;
            bt_aug_sample(&prm, &pr.view[k & 1], W, H, &rng);
            int den = bt_aug_decode_denominator(&prm, &pr.view[k & 1]);
            int li = den == 2 ? 1 : den == 4 ? 2 : den == 8 ? 3 : 0;
            CHECK(prm.crop_w >= den * 224 && prm.crop_h >= den * 224 &&
                      (den == 8 || prm.crop_w < 2 * den * 224 || prm.crop_h < 2 * den * 224),
                  "denominator %d for a %dx%d crop", den, prm.crop_w, prm.crop_h);
            fixed_den = den;
            if (bt_decoder_decode(&dc, &small, jpg, len, "scaled")) fail_exit("decode scaled");
            CHECK(small.w == (W + den - 1) / den && small.h == (H + den - 1) / den &&
                      dc.full_w == W && dc.full_h == H,
                  "1/%d of %dx%d decoded as %dx%d", den, W, H, small.w, small.h);
            if (bt_aug_geometric(&a, &full, &prm, &pr.view[0], w) ||
                bt_aug_geometric_scaled(&b, &small, W, H, &prm, &pr.view[0], w))
                fail_exit("geometric");
            size_t n = (size_t)3 * 224 * 224;
            if (den == 1) {
                CHECK(memcmp(a.px, b.px, n) == 0, "denominator 1 must be the exact path");
                continue;
            }
            views[li]++;
            for (size_t i = 0; i < n; i++) {
                int d = abs((int)a.px[i] - (int)b.px[i]);
                sum[li] += d;
                far[li] += d > 16;
                if (d > maxd[li]) maxd[li] = d;
            }
            cnt[li] += (double)n;
        }
        tjFree(jpg);
        bt_decoder_free(&dc);
        bt_image_free(&src), bt_image_free(&full), bt_image_free(&small);
        bt_image_free(&a), bt_image_free(&b);
    }
    for (int li = 1; li < 4; li++) {
        if (!views[li]) continue;
        double mean = sum[li] / cnt[li], fr = far[li] / cnt[li];
        printf("  1/%d: %d crops, mean |d| %.3f, max %d, share |d| > 16 %.4f (bounds %.1f, "
               "%.2f)\n", 1 << li, views[li], mean, maxd[li], fr, k_mean_bound[li],
               k_far_bound[li]);
        CHECK(mean <= k_mean_bound[li], "1/%d: mean error %.3f", 1 << li, mean);
        CHECK(fr <= k_far_bound[li], "1/%d: share off by more than 16: %.4f", 1 << li, fr);
    }
    CHECK(views[1] > 0 && views[2] > 0, "the draws reach the 1/2 and 1/4 scales (%d, %d)",
          views[1], views[2]);
    /* a decompression bomb stays refused at 1/8 scale (its full size is what counts) */
    size_t blen = 0;
    uint8_t *bomb = (uint8_t *)tu_slurp("fuzz/crashes/image/oom-jpeg-60000x60000.jpg", &blen);
    CHECK(bomb != NULL, "fuzz/crashes/image/oom-jpeg-60000x60000.jpg missing");
    if (bomb) {
        bt_decoder dc;
        bt_decoder_init(&dc);
        dc.scale_cb = fixed_scale;
        fixed_den = 8;
        bt_image im = {0};
        int rc = bt_decoder_decode(&dc, &im, bomb, blen, "bomb");
        CHECK(rc == BT_EFORMAT && strstr(bt_error(), "pixel limit") && !im.px,
              "a 60000x60000 JPEG at 1/8 scale: rc %d '%s'", rc, bt_error());
        bt_image_free(&im);
        bt_decoder_free(&dc);
        free(bomb);
    }
    bt_aug_work_free(w);
}

/* The loader with decode-scale=1 against decode-scale=0 on a folder of large JPEGs. */
static void test_loader_decode_scale(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/big", tu_tmpdir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/train", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/train/c0", dir);
    mkdir(path, 0755);
    const int N = 8;
    for (int i = 0; i < N; i++) {
        bt_image im = {0};
        make_image(&im, 1200 + 40 * i, 900, 70 + i);
        unsigned long len = 0;
        uint8_t *jpg = encode_jpeg(&im, &len);
        snprintf(path, sizeof path, "%s/train/c0/%02d.jpg", dir, i);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(jpg, 1, len, f) == len, "write %s", path);
        if (f) fclose(f);
        tjFree(jpg);
        bt_image_free(&im);
    }
    bt_dataset *ds = NULL;
    if (bt_dataset_open(&ds, dir, "train")) fail_exit("open");
    bt_aug_preset p0, p1;
    bt_aug_preset_init(&p0, "imagenet");
    bt_aug_preset_set(&p0, "size", "160");
    p1 = p0;
    CHECK(bt_aug_preset_set(&p1, "decode-scale", "1") == 0 && p1.decode_scale == 1 &&
              p0.decode_scale == 0, "decode-scale key");
    CHECK(bt_aug_preset_set(&p1, "decode-scale", "2") == BT_EINVAL, "decode-scale 2 refused");
    bt_loader_cfg c = {.batch = N, .threads = 2, .ring = 2, .seed = 3,
                       .mode = BT_LOAD_TWO_VIEWS, .shuffle = 0, .drop_last = 1, .world = 1};
    bt_loader *l0 = NULL, *l1 = NULL;
    if (bt_loader_new(&l0, ds, &p0, &c) || bt_loader_new(&l1, ds, &p1, &c)) fail_exit("loader");
    int exact = 0, scaled = 0;
    for (int e = 0; e < 3; e++) {
        const bt_batch *b0, *b1;
        if (bt_loader_start_epoch(l0, e, 0) || bt_loader_start_epoch(l1, e, 0)) fail_exit("epoch");
        CHECK(bt_loader_next(l0, &b0) == 1 && bt_loader_next(l1, &b1) == 1, "batches");
        const size_t per = (size_t)3 * 160 * 160;
        for (int j = 0; j < N; j++) {
            int64_t i = b0->index[j];
            CHECK(b1->index[j] == i, "same items");
            int den = 8, W = 1200 + 40 * (int)i, H = 900;
            for (int v = 0; v < 2; v++) {
                bt_rng rng = bt_rng_key(3, (uint64_t)e, (uint64_t)i, (uint64_t)v);
                bt_aug_params prm;
                bt_aug_sample(&prm, &p0.view[v], W, H, &rng);
                int d = bt_aug_decode_denominator(&prm, &p0.view[v]);
                den = d < den ? d : den;
            }
            double sad = 0;
            int same = 1;
            for (int v = 0; v < 2; v++) {
                const float *x0 = b0->x[v] + j * per, *x1 = b1->x[v] + j * per;
                same &= memcmp(x0, x1, per * sizeof(float)) == 0;
                for (size_t q = 0; q < per; q++) sad += fabs(x0[q] - x1[q]);
            }
            if (den == 1) {
                exact++;
                CHECK(same, "epoch %d item %lld: no view allows scaling, yet the views differ",
                      e, (long long)i);
            } else {
                scaled++;
                /* normalised units: |d| / 255 / std, std ~ 0.225; the uint8 bound above
                 * (mean 4 at worst) and the per-pixel ops keep it under 0.1 */
                double mean = sad / (2.0 * per);
                CHECK(mean < 0.1, "epoch %d item %lld (1/%d): mean |d| %.4f", e, (long long)i,
                      den, mean);
            }
        }
    }
    printf("  %d items exact, %d decoded at reduced scale\n", exact, scaled);
    CHECK(scaled > 0 && exact > 0, "both kinds of item seen (%d exact, %d scaled)", exact,
          scaled);
    bt_loader_free(l0);
    bt_loader_free(l1);
    bt_dataset_close(ds);
}

int main(void) {
    TEST_RUN(test_halves_equal_apply);
    TEST_RUN(test_decode_scale_error);
    TEST_RUN(test_loader_decode_scale);
    return tu_finish();
}
