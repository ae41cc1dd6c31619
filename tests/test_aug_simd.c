/* Every instruction-set path of the per-pixel augmentation loops (src/data/aug_simd.h)
 * against the generic one, byte for byte (float for Normalize, bit for bit), on every path
 * this CPU can run: exhaustively over all 2^24 RGB colours for hue, saturation and
 * grayscale, over all 256 values for the constant blends and solarize, and on random data
 * with odd lengths (vector tails) for the resampling and blur passes, the luma sum and
 * Normalize. test_augment holds the generic path (and the one in use) against torchvision. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/cpu.h"
#include "data/aug_simd.h"
#include "testutil.h"

static const bt_aug_kernels *gen(void) { return bt_aug_kernels_for(BT_ISA_GENERIC); }

/* The paths other than generic that this CPU runs (none: the case is skipped). */
static int wide_paths(bt_isa out[BT_ISA_COUNT]) {
    int n = 0;
    for (int i = BT_ISA_GENERIC + 1; i < BT_ISA_COUNT; i++)
        if (bt_isa_supported((bt_isa)i)) out[n++] = (bt_isa)i;
    if (!n) tu_skip("this CPU runs only the generic path");
    return n;
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return n;
}

static void check_same(const char *what, bt_isa isa, const uint8_t *ref, const uint8_t *got,
                       size_t n) {
    size_t i = first_diff(ref, got, n);
    CHECK(i == n, "%s on %s: byte %zu is %d, generic %d", what, bt_isa_name(isa), i,
          i < n ? got[i] : 0, i < n ? ref[i] : 0);
}

static uint8_t *all_colours(void) {
    const size_t n = (size_t)1 << 24;
    uint8_t *px = malloc(3 * n);
    for (size_t i = 0; i < n; i++) {
        px[3 * i] = (uint8_t)(i >> 16);
        px[3 * i + 1] = (uint8_t)(i >> 8);
        px[3 * i + 2] = (uint8_t)i;
    }
    return px;
}

static void test_colour_ops_exhaustive(void) {
    bt_isa paths[BT_ISA_COUNT];
    int np = wide_paths(paths);
    if (!np) return;
    const size_t n = (size_t)1 << 24;
    uint8_t *src = all_colours(), *ref = malloc(3 * n), *got = malloc(3 * n);
    static const int shifts[] = {0, 13, 128, 243};
    for (int s = 0; s < 4; s++) {
        /* all colours at two shifts, a sixteenth of them (every 16th) at the others */
        size_t m = s < 2 ? n : n / 16;
        memcpy(ref, src, 3 * m);
        gen()->hue(ref, m, shifts[s]);
        for (int p = 0; p < np; p++) {
            memcpy(got, src, 3 * m);
            bt_aug_kernels_for(paths[p])->hue(got, m, shifts[s]);
            char what[64];
            snprintf(what, sizeof what, "hue shift %d", shifts[s]);
            check_same(what, paths[p], ref, got, 3 * m);
        }
    }
    static const float factors[] = {0.6f, 1.3999f, 0.87654f};
    for (int f = 0; f < 3; f++) {
        size_t m = f == 0 ? n : n / 16;
        memcpy(ref, src, 3 * m);
        gen()->saturation(ref, m, factors[f]);
        for (int p = 0; p < np; p++) {
            memcpy(got, src, 3 * m);
            bt_aug_kernels_for(paths[p])->saturation(got, m, factors[f]);
            check_same("saturation", paths[p], ref, got, 3 * m);
        }
    }
    memcpy(ref, src, 3 * n);
    gen()->grayscale(ref, n);
    uint64_t sum_ref = gen()->luma_sum(src, n);
    for (int p = 0; p < np; p++) {
        memcpy(got, src, 3 * n);
        bt_aug_kernels_for(paths[p])->grayscale(got, n);
        check_same("grayscale", paths[p], ref, got, 3 * n);
        uint64_t s = bt_aug_kernels_for(paths[p])->luma_sum(src, n);
        CHECK(s == sum_ref, "luma sum on %s: %llu, generic %llu", bt_isa_name(paths[p]),
              (unsigned long long)s, (unsigned long long)sum_ref);
    }
    free(src);
    free(ref);
    free(got);
}

static void fill(uint8_t *p, size_t n, tu_rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)tu_next(r);
}

static void test_pointwise_tails(void) {
    bt_isa paths[BT_ISA_COUNT];
    int np = wide_paths(paths);
    if (!np) return;
    tu_rng r = {7};
    enum { N = 4099 };
    uint8_t src[3 * N], ref[3 * N], got[3 * N];
    for (int k = 0; k < 40; k++) {
        size_t n = k < 20 ? (size_t)k + 1 : 1 + tu_next(&r) % N; /* every short tail */
        fill(src, 3 * n, &r);
        if (k % 3 == 0) /* every byte value in the blends and solarize */
            for (size_t i = 0; i < 3 * n; i++) src[i] = (uint8_t)(i + k);
        int deg = (int)(tu_next(&r) % 256);
        float alpha = (float)(tu_uniform(&r) * 2.0);
        float sat = (float)(0.6 + 0.8 * tu_uniform(&r));
        float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
        float fr[3 * N], fg[3 * N];
        gen()->normalize(fr, fr + n, fr + 2 * n, src, n, mean, sd);
        for (int p = 0; p < np; p++) {
            const bt_aug_kernels *kp = bt_aug_kernels_for(paths[p]);
            memcpy(ref, src, 3 * n);
            memcpy(got, src, 3 * n);
            gen()->blend_const(ref, 3 * n, deg, alpha);
            kp->blend_const(got, 3 * n, deg, alpha);
            check_same("blend_const", paths[p], ref, got, 3 * n);
            memcpy(ref, src, 3 * n);
            memcpy(got, src, 3 * n);
            gen()->solarize(ref, 3 * n);
            kp->solarize(got, 3 * n);
            check_same("solarize", paths[p], ref, got, 3 * n);
            memcpy(ref, src, 3 * n);
            memcpy(got, src, 3 * n);
            gen()->saturation(ref, n, sat);
            kp->saturation(got, n, sat);
            check_same("saturation", paths[p], ref, got, 3 * n);
            memcpy(ref, src, 3 * n);
            memcpy(got, src, 3 * n);
            gen()->hue(ref, n, deg);
            kp->hue(got, n, deg);
            check_same("hue", paths[p], ref, got, 3 * n);
            CHECK(gen()->luma_sum(src, n) == kp->luma_sum(src, n), "luma sum on %s, n %zu",
                  bt_isa_name(paths[p]), n);
            kp->normalize(fg, fg + n, fg + 2 * n, src, n, mean, sd);
            CHECK(memcmp(fr, fg, 3 * n * sizeof(float)) == 0, "normalize on %s, n %zu",
                  bt_isa_name(paths[p]), n);
        }
    }
}

/* Resample.c's pass with coefficient rows like the resampler's (each row sums to 2^22,
 * some taps negative as bicubic's are), random bounds and row lengths. */
static void test_resample_rows(void) {
    bt_isa paths[BT_ISA_COUNT];
    int np = wide_paths(paths);
    if (!np) return;
    tu_rng r = {11};
    for (int k = 0; k < 60; k++) {
        int in_rows = 1 + (int)(tu_next(&r) % 300), n = 1 + (int)(tu_next(&r) % 260);
        int ksize = 1 + (int)(tu_next(&r) % 13), rows_out = 1 + (int)(tu_next(&r) % 40);
        if (ksize > in_rows) ksize = in_rows;
        size_t stride = (size_t)n * 3 + tu_next(&r) % 5;
        uint8_t *in = malloc(stride * in_rows);
        fill(in, stride * in_rows, &r);
        int32_t *kk = malloc(sizeof(int32_t) * rows_out * ksize), *acc = malloc(sizeof(int32_t) * n * 3);
        int *bounds = malloc(sizeof(int) * 2 * rows_out);
        for (int i = 0; i < rows_out; i++) {
            int cnt = 1 + (int)(tu_next(&r) % ksize);
            bounds[2 * i] = (int)(tu_next(&r) % (in_rows - cnt + 1));
            bounds[2 * i + 1] = cnt;
            int32_t left = 1 << 22;
            for (int t = 0; t < ksize; t++) {
                int32_t v = 0;
                /* small negative lobes and positive taps, their absolute sum (< 2^23)
                 * times 255 within int32, as the resampler's own coefficients are */
                if (t < cnt - 1) v = (int32_t)(tu_next(&r) % ((1u << 18) + (1u << 15))) - (1 << 15);
                else if (t == cnt - 1) v = left;
                left -= v;
                kk[i * ksize + t] = v;
            }
        }
        uint8_t *ref = malloc((size_t)rows_out * n * 3), *got = malloc((size_t)rows_out * n * 3);
        gen()->resample_rows(ref, in, stride, 0, rows_out, n * 3, kk, bounds, ksize, acc);
        for (int p = 0; p < np; p++) {
            memset(got, 0xa5, (size_t)rows_out * n * 3);
            bt_aug_kernels_for(paths[p])->resample_rows(got, in, stride, 0, rows_out, n * 3, kk,
                                                        bounds, ksize, acc);
            check_same("resample_rows", paths[p], ref, got, (size_t)rows_out * n * 3);
        }
        free(in), free(kk), free(acc), free(bounds), free(ref), free(got);
    }
}

/* BoxBlur.c's pass with the weights bt_aug_gaussian_blur derives from a radius. */
static void test_box_blur_rows(void) {
    bt_isa paths[BT_ISA_COUNT];
    int np = wide_paths(paths);
    if (!np) return;
    tu_rng r = {13};
    for (int k = 0; k < 60; k++) {
        int rows = 1 + (int)(tu_next(&r) % 120), len = 1 + (int)(tu_next(&r) % 700);
        float fr = (float)(tu_uniform(&r) * 8.0);
        int radius = (int)fr;
        uint32_t ww = (uint32_t)((float)(1u << 24) / (fr * 2 + 1));
        uint32_t fw = ((1u << 24) - (uint32_t)(radius * 2 + 1) * ww) / 2;
        size_t n = (size_t)rows * len;
        uint8_t *in = malloc(n), *ref = malloc(n), *got = malloc(n);
        uint32_t *acc = malloc(sizeof(uint32_t) * len);
        fill(in, n, &r);
        gen()->box_blur_rows(ref, in, rows, len, radius, ww, fw, acc);
        for (int p = 0; p < np; p++) {
            memset(got, 0x5a, n);
            bt_aug_kernels_for(paths[p])->box_blur_rows(got, in, rows, len, radius, ww, fw, acc);
            check_same("box_blur_rows", paths[p], ref, got, n);
        }
        free(in), free(ref), free(got), free(acc);
    }
}

/* The dispatch follows the path in use. */
static void test_dispatch(void) {
    CHECK(bt_aug_kernels_cur() == bt_aug_kernels_for(bt_isa_current()), "current table");
    CHECK(bt_aug_kernels_for(BT_ISA_GENERIC) == &bt_aug_kernels_generic, "generic table");
}

int main(void) {
    TEST_RUN(test_dispatch);
    TEST_RUN(test_colour_ops_exhaustive);
    TEST_RUN(test_pointwise_tails);
    TEST_RUN(test_resample_rows);
    TEST_RUN(test_box_blur_rows);
    return tu_finish();
}
