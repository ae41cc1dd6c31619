/* The procedural dataset builtin:shapes: split sizes and names, determinism by seed, class
 * balance, that the classes really differ (rendered areas against the shapes' geometric
 * areas, orientation of the stripe classes), option errors, and that the loader takes it.
 * A grid of samples is written as a PNG and read back; set BARLOW_KEEP_PNG=DIR to keep a
 * copy (DIR/builtin_shapes.png) for looking at. */
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/loader.h"
#include "testutil.h"
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

static bt_dataset *open_ok(const char *spec, const char *split) {
    bt_dataset *ds = NULL;
    int rc = bt_dataset_open(&ds, spec, split);
    CHECK(rc == BT_OK && ds, "open %s %s: %s", spec, split, bt_error());
    return rc == BT_OK ? ds : NULL;
}

static void test_sizes_and_names(void) {
    bt_dataset *tr = open_ok("builtin:shapes", "train"), *te = open_ok("builtin:shapes", "test");
    bt_dataset *va = open_ok("builtin:shapes", "val");
    if (!tr || !te || !va) goto out;
    CHECK(bt_dataset_size(tr) == 10000, "train size %zu", bt_dataset_size(tr));
    CHECK(bt_dataset_size(te) == 2000, "test size %zu", bt_dataset_size(te));
    CHECK(bt_dataset_size(va) == 2000, "val size %zu", bt_dataset_size(va));
    CHECK(bt_dataset_num_classes(tr) == 10, "classes %d", bt_dataset_num_classes(tr));
    CHECK(!strcmp(bt_dataset_kind(tr), "builtin"), "kind %s", bt_dataset_kind(tr));
    CHECK(!strcmp(bt_dataset_item_name(tr, 123), "builtin:shapes/train/123"), "name %s",
          bt_dataset_item_name(tr, 123));
    CHECK(!strcmp(bt_dataset_item_name(te, 7), "builtin:shapes/test/7"), "name %s",
          bt_dataset_item_name(te, 7));
    CHECK(!strcmp(bt_dataset_class_name(tr, 0), "circle") &&
          !strcmp(bt_dataset_class_name(tr, 9), "ellipse"), "class names");
    bt_image im = {0};
    CHECK(bt_dataset_load(te, 1999, &im) == BT_OK && im.w == 32 && im.h == 32, "load: %s",
          bt_error());
    CHECK(bt_dataset_load(te, 2000, &im) == BT_EINVAL, "out of range item accepted");
    bt_image_free(&im);
    bt_dataset_close(tr);
    bt_dataset_close(te);
    bt_dataset_close(va);
    va = NULL;
    tr = open_ok("builtin:shapes:train=50,test=30,seed=3", "train");
    te = open_ok("builtin:shapes:train=50,test=30,seed=3", "test");
    if (tr && te) CHECK(bt_dataset_size(tr) == 50 && bt_dataset_size(te) == 30, "sizes %zu %zu",
                        bt_dataset_size(tr), bt_dataset_size(te));
    /* --train-limit keeps working on this kind */
    if (tr) CHECK(bt_dataset_limit(tr, 20) == BT_OK && bt_dataset_size(tr) == 20, "limit");
out:
    bt_dataset_close(tr);
    bt_dataset_close(te);
    bt_dataset_close(va);
}

static int same_px(const bt_image *a, const bt_image *b) {
    return a->w == b->w && a->h == b->h && !memcmp(a->px, b->px, (size_t)a->w * a->h * 3);
}

static void test_determinism(void) {
    bt_dataset *a = open_ok("builtin:shapes:train=100", "train");
    bt_dataset *b = open_ok("builtin:shapes:train=100,seed=0", "train");
    bt_dataset *c = open_ok("builtin:shapes:train=100,seed=1", "train");
    bt_dataset *t = open_ok("builtin:shapes:test=100", "test");
    if (!a || !b || !c || !t) goto out;
    bt_image ia = {0}, ib = {0}, ic = {0}, it = {0};
    int same_seed = 1, diff_seed = 0, diff_split = 0, diff_items = 0;
    for (size_t i = 0; i < 100; i++) {
        /* load in a different order for b, so nothing carries over between items */
        size_t j = 99 - i;
        CHECK(!bt_dataset_load(a, j, &ia) && !bt_dataset_load(b, j, &ib) &&
              !bt_dataset_load(c, j, &ic) && !bt_dataset_load(t, j, &it), "load %s", bt_error());
        same_seed &= same_px(&ia, &ib);
        diff_seed += !same_px(&ia, &ic);
        diff_split += !same_px(&ia, &it);
    }
    /* a fresh load of item 5 after other items gives the same bytes again */
    bt_image again = {0};
    CHECK(!bt_dataset_load(a, 5, &again) && !bt_dataset_load(a, 5, &ia) && same_px(&again, &ia),
          "reload differs");
    CHECK(!bt_dataset_load(a, 6, &ib) && !same_px(&ia, &ib), "items 5 and 6 identical");
    diff_items = !same_px(&ia, &ib);
    CHECK(same_seed, "same seed gave different pixels");
    CHECK(diff_seed == 100, "seed 0 and 1 agree on %d of 100 items", 100 - diff_seed);
    CHECK(diff_split == 100, "train and test agree on %d of 100 items", 100 - diff_split);
    CHECK(diff_items, "neighbouring items identical");
    bt_image_free(&ia);
    bt_image_free(&ib);
    bt_image_free(&ic);
    bt_image_free(&it);
    bt_image_free(&again);
out:
    bt_dataset_close(a);
    bt_dataset_close(b);
    bt_dataset_close(c);
    bt_dataset_close(t);
}

static void test_balance(void) {
    bt_dataset *d = open_ok("builtin:shapes", "train"), *e = open_ok("builtin:shapes:train=25",
                                                                     "train");
    if (!d || !e) goto out;
    int cnt[10] = {0}, cnt2[10] = {0};
    for (size_t i = 0; i < bt_dataset_size(d); i++) {
        int l = bt_dataset_label(d, i);
        CHECK(l >= 0 && l < 10, "label %d", l);
        if (l >= 0 && l < 10) cnt[l]++;
    }
    for (size_t i = 0; i < bt_dataset_size(e); i++) cnt2[bt_dataset_label(e, i)]++;
    for (int c = 0; c < 10; c++) {
        CHECK(cnt[c] == 1000, "class %d has %d of 10000", c, cnt[c]);
        CHECK(cnt2[c] == (c < 5 ? 3 : 2), "class %d has %d of 25", c, cnt2[c]);
    }
out:
    bt_dataset_close(d);
    bt_dataset_close(e);
}

/* clean=1 draws each class centred, radius 0.35*32 = 11.2 px, white on black: the covered
 * area must match the shape's geometric area, and the classes must differ pairwise. */
static void test_classes_differ(void) {
    bt_dataset *d = open_ok("builtin:shapes:clean=1,train=10", "train");
    if (!d) return;
    const double r = 11.2, pi = 3.14159265358979;
    /* areas in units of r^2: circle pi; square 1.6^2; triangle (side sqrt3) 3sqrt3/4; cross
     * two 0.6x2 bars minus their 0.6x0.6 overlap; star with radii 1, 0.42: 10 triangles
     * 0.5*1*0.42*sin(36deg); ring pi(1-0.36); stripes: half of 1.8^2; checker: 8 of 16
     * squares of the 1.8 patch, ellipse pi*1*0.5 */
    const double area[10] = {pi, 2.56, 3 * sqrt(3.0) / 4, 2 * 1.2 - 0.36,
                             10 * 0.5 * 0.42 * sin(pi / 5), pi * 0.64, 1.62, 1.62, 1.62,
                             pi * 0.5};
    bt_image im[10] = {{0}};
    for (int c = 0; c < 10; c++) {
        CHECK(bt_dataset_label(d, (size_t)c) == c, "label");
        if (bt_dataset_load(d, (size_t)c, &im[c])) continue;
        double cov = 0;
        for (int k = 0; k < 32 * 32; k++) cov += im[c].px[3 * k] / 255.0;
        double want = area[c] * r * r;
        CHECK(fabs(cov - want) < 0.04 * want, "class %s: area %.1f px, geometric %.1f px",
              bt_dataset_class_name(d, c), cov, want);
    }
    for (int a = 0; a < 10; a++)
        for (int b = a + 1; b < 10; b++) {
            int ndiff = 0;
            for (int k = 0; k < 32 * 32; k++) ndiff += abs(im[a].px[3 * k] - im[b].px[3 * k]) > 128;
            CHECK(ndiff >= 30, "classes %d and %d differ in only %d pixels", a, b, ndiff);
        }
    for (int c = 0; c < 10; c++) bt_image_free(&im[c]);
    bt_dataset_close(d);
}

/* In the full (cluttered, coloured, rotated) images the stripe classes keep their
 * orientation: vertical intensity changes dominate for hstripes and horizontal ones for
 * vstripes, over 60 samples each. */
static void test_stripe_orientation(void) {
    bt_dataset *d = open_ok("builtin:shapes:train=600", "train");
    if (!d) return;
    double gx[10] = {0}, gy[10] = {0};
    bt_image im = {0};
    for (size_t i = 0; i < 600; i++) {
        int c = bt_dataset_label(d, i);
        if (c != 6 && c != 7) continue;
        if (bt_dataset_load(d, i, &im)) break;
        for (int y = 0; y + 1 < 32; y++)
            for (int x = 0; x + 1 < 32; x++)
                for (int k = 0; k < 3; k++) {
                    int p = im.px[3 * (y * 32 + x) + k];
                    gx[c] += abs(im.px[3 * (y * 32 + x + 1) + k] - p);
                    gy[c] += abs(im.px[3 * ((y + 1) * 32 + x) + k] - p);
                }
    }
    CHECK(gy[6] > 1.3 * gx[6], "hstripes: |dy| %.0f vs |dx| %.0f", gy[6], gx[6]);
    CHECK(gx[7] > 1.3 * gy[7], "vstripes: |dx| %.0f vs |dy| %.0f", gx[7], gy[7]);
    bt_image_free(&im);
    bt_dataset_close(d);
}

/* Rough pixels: a second difference along the row above 12 in any channel. A linear gradient
 * has none (up to rounding), so with clutter=0 only the shape (outline, stripes) is rough;
 * with the default clutter the sensor noise (up to 8% of full scale) and the lines add many
 * more (measured: 12.5% of pixels against 2.7 times as many). The same items with clutter=0
 * and =1 also differ. */
static void test_clutter_option(void) {
    bt_dataset *q = open_ok("builtin:shapes:train=40,clutter=0", "train");
    bt_dataset *c = open_ok("builtin:shapes:train=40", "train");
    if (!q || !c) goto out;
    bt_image a = {0}, b = {0};
    long rough[2] = {0, 0};
    int same = 0;
    for (size_t i = 0; i < 40; i++) {
        if (bt_dataset_load(q, i, &a) || bt_dataset_load(c, i, &b)) break;
        same += same_px(&a, &b);
        for (int v = 0; v < 2; v++) {
            const uint8_t *px = v ? b.px : a.px;
            for (int y = 0; y < 32; y++)
                for (int x = 1; x + 1 < 32; x++)
                    for (int k = 0; k < 3; k++) {
                        int d = 2 * px[3 * (y * 32 + x) + k] - px[3 * (y * 32 + x - 1) + k] -
                                px[3 * (y * 32 + x + 1) + k];
                        rough[v] += abs(d) > 12;
                    }
        }
    }
    const double total = 40.0 * 32 * 30 * 3;
    CHECK(same == 0, "clutter=0 and clutter=1 agree on %d of 40 items", same);
    CHECK(rough[0] < 0.15 * total, "clutter=0: %.1f%% rough pixels", 100.0 * rough[0] / total);
    CHECK(rough[1] > 2 * rough[0], "clutter=1: %ld rough pixels vs %ld with clutter=0", rough[1],
          rough[0]);
    bt_image_free(&a);
    bt_image_free(&b);
out:
    bt_dataset_close(q);
    bt_dataset_close(c);
}

/* colour=F scales every colour's saturation: colour=0 (without the per-channel noise of
 * clutter) gives grey pixels only; the mean channel spread max-min grows with F. */
static void test_colour_option(void) {
    const char *specs[3] = {"builtin:shapes:train=30,clutter=0,colour=0",
                            "builtin:shapes:train=30,clutter=0",
                            "builtin:shapes:train=30,clutter=0,colour=1"};
    double spread[3] = {0, 0, 0};
    for (int v = 0; v < 3; v++) {
        bt_dataset *d = open_ok(specs[v], "train");
        if (!d) return;
        bt_image im = {0};
        for (size_t i = 0; i < 30 && !bt_dataset_load(d, i, &im); i++)
            for (int k = 0; k < 32 * 32; k++) {
                const uint8_t *p = im.px + 3 * k;
                int hi = p[0] > p[1] ? p[0] : p[1], lo = p[0] < p[1] ? p[0] : p[1];
                hi = p[2] > hi ? p[2] : hi;
                lo = p[2] < lo ? p[2] : lo;
                spread[v] += (hi - lo) / (30.0 * 32 * 32);
            }
        bt_image_free(&im);
        bt_dataset_close(d);
    }
    CHECK(spread[0] == 0, "colour=0: mean channel spread %.2f, want 0 (grey)", spread[0]);
    CHECK(spread[1] > 5 && spread[2] > 2.5 * spread[1],
          "channel spread: default (0.3) %.1f, colour=1 %.1f", spread[1], spread[2]);
}

static void expect_error(const char *spec, const char *split, const char *needle) {
    bt_dataset *d = NULL;
    int rc = bt_dataset_open(&d, spec, split);
    CHECK(rc == BT_EINVAL && !d, "%s: rc %d", spec, rc);
    CHECK(strstr(bt_error(), needle) != NULL, "%s: message '%s' lacks '%s'", spec, bt_error(),
          needle);
    bt_dataset_close(d);
}

static void test_bad_options(void) {
    expect_error("builtin:shapez", "train", "unknown built-in dataset 'shapez'");
    expect_error("builtin:shapes:seed=x", "train", "bad value 'x' for seed");
    expect_error("builtin:shapes:seed=-1", "train", "bad value '-1' for seed");
    expect_error("builtin:shapes:color=1", "train", "unknown option 'color'");
    expect_error("builtin:shapes:colour=1.5", "train", "bad value '1.5' for colour");
    expect_error("builtin:shapes:colour=x", "train", "bad value 'x' for colour");
    expect_error("builtin:shapes:seed", "train", "is not KEY=VALUE");
    expect_error("builtin:shapes:train=0", "train", "split is empty");
    expect_error("builtin:shapes:train=10,", "train", "trailing ','");
    expect_error("builtin:shapes:", "train", "empty option list");
    expect_error("builtin:shapes:clean=2", "train", "out of range");
    expect_error("builtin:shapes:clutter=2", "train", "out of range");
    expect_error("builtin:shapes:train=", "train", "bad value for train");
}

static void test_loader(void) {
    bt_dataset *d = open_ok("builtin:shapes:train=40", "train");
    if (!d) return;
    bt_aug_preset p;
    CHECK(bt_aug_preset_init(&p, "cifar") == BT_OK, "preset");
    bt_loader_cfg cfg = {.batch = 16, .threads = 2, .ring = 2, .seed = 1,
                         .mode = BT_LOAD_TWO_VIEWS, .shuffle = 1, .drop_last = 1, .world = 1};
    bt_loader *ld = NULL;
    CHECK(bt_loader_new(&ld, d, &p, &cfg) == BT_OK, "loader: %s", bt_error());
    if (ld) {
        CHECK(bt_loader_batches_per_epoch(ld) == 2, "batches %ld", bt_loader_batches_per_epoch(ld));
        CHECK(bt_loader_start_epoch(ld, 0, 0) == BT_OK, "start");
        const bt_batch *b;
        int nb = 0;
        while (bt_loader_next(ld, &b) == 1) {
            nb++;
            CHECK(b->n == 16 && b->x[0] && b->x[1] && b->skipped == 0, "batch");
        }
        CHECK(nb == 2, "got %d batches", nb);
        bt_loader_free(ld);
    }
    bt_dataset_close(d);
}

static int write_png(const char *path, const uint8_t *rgb, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f);
}

/* 20 samples (two of each class, a column per class) at 4x, written and read back. */
static void test_sample_png(void) {
    bt_dataset *d = open_ok("builtin:shapes", "train");
    if (!d) return;
    enum { Z = 4, CELL = 32 * Z + 4, W = 10 * CELL, H = 2 * CELL };
    uint8_t *grid = calloc((size_t)W * H * 3, 1);
    bt_image im = {0};
    for (int s = 0; s < 20; s++) {
        int col = s % 10, row = s / 10;
        if (bt_dataset_load(d, (size_t)s, &im)) break;
        CHECK(bt_dataset_label(d, (size_t)s) == col, "label order");
        for (int y = 0; y < 32 * Z; y++)
            for (int x = 0; x < 32 * Z; x++)
                memcpy(grid + 3 * ((size_t)(row * CELL + 2 + y) * W + col * CELL + 2 + x),
                       im.px + 3 * ((y / Z) * 32 + x / Z), 3);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/builtin_shapes.png", tu_tmpdir());
    CHECK(write_png(path, grid, W, H) == 0, "write %s", path);
    const char *keep = getenv("BARLOW_KEEP_PNG");
    if (keep) {
        char kp[1024];
        snprintf(kp, sizeof kp, "%s/builtin_shapes.png", keep);
        CHECK(write_png(kp, grid, W, H) == 0, "write %s", kp);
    }
    png_image rd;
    memset(&rd, 0, sizeof rd);
    rd.version = PNG_IMAGE_VERSION;
    CHECK(png_image_begin_read_from_file(&rd, path), "read back %s", path);
    rd.format = PNG_FORMAT_RGB;
    uint8_t *back = malloc((size_t)W * H * 3);
    CHECK(rd.width == W && rd.height == H, "size %ux%u", rd.width, rd.height);
    CHECK(png_image_finish_read(&rd, NULL, back, 0, NULL) && !memcmp(back, grid, (size_t)W * H * 3),
          "PNG round trip differs");
    free(back);
    free(grid);
    bt_image_free(&im);
    bt_dataset_close(d);
}

int main(void) {
    TEST_RUN(test_sizes_and_names);
    TEST_RUN(test_determinism);
    TEST_RUN(test_balance);
    TEST_RUN(test_classes_differ);
    TEST_RUN(test_stripe_orientation);
    TEST_RUN(test_clutter_option);
    TEST_RUN(test_colour_option);
    TEST_RUN(test_bad_options);
    TEST_RUN(test_loader);
    TEST_RUN(test_sample_png);
    return tu_finish();
}
