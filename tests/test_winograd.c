/* Tests of the Winograd F(2x2, 3x3) conv (src/ops/conv_winograd.c): forward, input gradient
 * and weight gradient against the double-precision reference and against the im2col path, on
 * odd and even maps (partial edge tiles), maps wider than one transform block, C != K, with
 * and without bias, several thread counts and chunk sizes; the += contract of both gradients;
 * the weight gradient's reproducibility; the dispatch from bt_conv2d_* (BT_CONV_WINOGRAD);
 * and which shapes it accepts. */
#include "barlow/backend.h"
#include "barlow/error.h"
#include "barlow/ops.h"
#include "barlow/ops_ref.h"
#include "barlow/scratch.h"
#include "ops/winograd_internal.h"
#include "testutil.h"
#include <stdlib.h>
#include <string.h>

/* F(2,3) in float differs from the exact result by a few ulps of the largest terms (the
 * transforms add at most 4 terms with weights 1/2): at most 2.4e-7 relative to max|out| on
 * these shapes. A wrong transform entry, a tile shifted by one pixel, a partial tile or a
 * transform block handled wrongly give errors of 1e-3 to 1 (tried: each such change fails
 * this test), so this bound separates the two by orders of magnitude. */
#define WINO_TOL 2e-6
/* F(4,3) (opt-in, BT_CONV_WINOGRAD=4) adds up to 6 terms with weights up to 8 (output) and 5
 * (input) and divides by 15 in the weights: 1.7e-6 at most on these shapes with the points
 * 0, 1, -1, 1/2, -2 (5.8e-6 with the symmetric 0, +-1, +-2 used before), so a bound of 2e-5,
 * still two orders of magnitude below the errors of a wrong entry or tile. */
#define WINO_TOL4 2e-5

/* The tolerance of the tile in use (bt_conv2d_* use F(4x4) only on maps of 8 x 8 and more,
 * 4 x 4 for the weight gradient, F(2x2) below: the bound of the current setting covers both). */
static double wino_tol(void) { return bt_wino_tile() == BT_WINO_F2 ? WINO_TOL : WINO_TOL4; }

/* The four settings of bt_wino_set_tile: F(2x2) for all three passes, F(4x4) for all three,
 * F(2x2) forward and weight gradient with an F(4x4) input gradient, and the default: F(2x2)
 * forward, F(4x4) input and weight gradients. */
#define NTILES 4
static const int tiles_all[NTILES] = {BT_WINO_F2, BT_WINO_F4, BT_WINO_F2_DX4, BT_WINO_F2_DX4_DW4};
static const char *const tile_names[NTILES] = {"F(2x2)", "F(4x4)", "24", "default (244)"};
static int tile_index(int tile) {
    for (int i = 0; i < NTILES; i++)
        if (tiles_all[i] == tile) return i;
    return 0;
}

typedef struct {
    int N, C, H, W, K, bias;
} wshape;

static double *to_f64(const float *a, size_t n) {
    double *d = tu_xcalloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}

/* max |a - ref| / max |ref| (float result against a double reference). */
static double rel64(const float *a, const double *ref, size_t n) {
    double m = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        double r = ref[i] < 0 ? -ref[i] : ref[i], d = a[i] - ref[i];
        if (r > m) m = r;
        if (d < 0) d = -d;
        if (d > e) e = d;
    }
    return e / (m > 1e-30 ? m : 1e-30);
}

static double rel32(const float *a, const float *ref, size_t n) {
    double m = tu_maxabs_f32(ref, n);
    return tu_maxabsdiff_f32(a, ref, n) / (m > 1e-30 ? m : 1e-30);
}

static double worst[NTILES]; /* largest error seen per tile setting (tile_index), printed at the end */

/* Forward, input and weight gradients of one shape: Winograd against the f64 reference and against
 * the im2col path (bt_conv2d_* with Winograd switched off). Returns 0 if all matched. */
static int wino_vs_ref(const wshape *s, tu_rng *rng) {
    bt_conv2d_desc d;
    int rc = bt_conv2d_desc_init(&d, s->N, s->C, s->H, s->W, s->K, 3, 3, 1, 1);
    CHECK(rc == BT_OK, "%s", bt_error());
    if (rc) return 1;
    const size_t ni = (size_t)s->N * s->C * s->H * s->W, nw = (size_t)s->K * s->C * 9;
    const size_t no = (size_t)s->N * s->K * s->H * s->W;
    float *x = tu_xcalloc(ni, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(s->K, 4); /* inputs */
    float *y = tu_xcalloc(no, 4), *y2 = tu_xcalloc(no, 4), *dy = tu_xcalloc(no, 4); /* (N,K,H,W) */
    float *dx = tu_xcalloc(ni, 4), *dx2 = tu_xcalloc(ni, 4);                       /* (N,C,H,W) */
    float *dw = tu_xcalloc(nw, 4), *dw2 = tu_xcalloc(nw, 4);                       /* (K,C,3,3) */
    tu_fill_f32(x, ni, rng, 1.0);
    tu_fill_f32(w, nw, rng, 0.5);
    tu_fill_f32(b, s->K, rng, 1.0);
    tu_fill_f32(dy, no, rng, 1.0);
    tu_fill_f32(dx, ni, rng, 1.0); /* the input gradient must add to this */
    memcpy(dx2, dx, ni * 4);
    tu_fill_f32(dw, nw, rng, 1.0); /* and the weight gradient to this */
    memcpy(dw2, dw, nw * 4);
    const float *bb = s->bias ? b : NULL;
    /* Poison the output: every element must be overwritten, edge tiles included. */
    for (size_t i = 0; i < no; i++) y[i] = 1e30f;

    double *x64 = to_f64(x, ni), *w64 = to_f64(w, nw), *b64 = to_f64(b, s->K);
    double *dy64 = to_f64(dy, no), *dx64 = to_f64(dx, ni), *y64 = tu_xcalloc(no, 8);
    double *dw64 = to_f64(dw, nw);
    bt_conv2d_forward_ref_f64(y64, x64, w64, s->bias ? b64 : NULL, &d);
    bt_conv2d_backward_ref_f64(dx64, dw64, NULL, dy64, x64, w64, &d);

    rc = bt_wino_forward(y, x, w, bb, &d);
    CHECK(rc == BT_OK, "forward: %s", bt_error());
    rc = bt_wino_backward_data(dx, dy, w, &d);
    CHECK(rc == BT_OK, "backward: %s", bt_error());
    rc = bt_wino_backward_weights(dw, dy, x, &d);
    CHECK(rc == BT_OK, "backward weights: %s", bt_error());
    bt_wino_set_enabled(0);
    rc = bt_conv2d_forward(y2, x, w, bb, &d) | bt_conv2d_backward(dx2, dw2, NULL, dy, x, w, &d);
    CHECK(rc == BT_OK, "im2col: %s", bt_error());
    bt_wino_set_enabled(1);

    double ey = rel64(y, y64, no), ex = rel64(dx, dx64, ni), ew = rel64(dw, dw64, nw);
    double ey2 = rel32(y, y2, no), ex2 = rel32(dx, dx2, ni), ew2 = rel32(dw, dw2, nw);
    double m = ey > ex ? ey : ex;
    if (ew > m) m = ew;
    if (m > worst[tile_index(bt_wino_tile())]) worst[tile_index(bt_wino_tile())] = m;
    const double tol = wino_tol();
    int bad = !(ey < tol && ex < tol && ew < tol && ey2 < tol && ex2 < tol && ew2 < tol);
    CHECK(!bad,
          "F(%d) N%d C%d %dx%d K%d bias%d threads%d: vs f64 y %.2e dx %.2e dw %.2e; vs im2col y %.2e "
          "dx %.2e dw %.2e",
          bt_wino_tile(), s->N, s->C, s->H, s->W, s->K, s->bias, bt_threads(), ey, ex, ew, ey2,
          ex2, ew2);
    free(x), free(w), free(b), free(y), free(y2), free(dy), free(dx), free(dx2), free(dw);
    free(dw2), free(x64), free(w64), free(b64), free(dy64), free(dx64), free(y64), free(dw64);
    return bad;
}

static const wshape fixed[] = {
    {1, 8, 1, 1, 8, 1},   /* one partial tile: only its top-left output exists */
    {2, 3, 3, 3, 5, 0},   /* odd 3x3: a full and a partial tile per row */
    {3, 5, 5, 7, 4, 1},   /* H != W, both odd */
    {1, 9, 8, 8, 12, 0},  /* even: whole tiles only */
    {2, 8, 9, 9, 8, 1},   /* odd, square */
    {3, 4, 7, 5, 6, 0},   /* C < K */
    {2, 12, 4, 4, 3, 1},  /* C > K, the late-ResNet 4x4 map */
    {1, 6, 6, 1, 7, 1},   /* one column */
    {1, 2, 1, 9, 3, 0},   /* one row */
    {2, 3, 5, 67, 4, 1},  /* 34 tiles per row: crosses the 32-tile transform block */
    {1, 4, 3, 130, 5, 0}, /* 65 tiles per row, even width */
    {1, 4, 9, 70, 5, 1},  /* F(4x4): 18 tiles per row (crosses the block), partial tiles */
    {2, 5, 8, 8, 6, 0},   /* F(4x4): the smallest map it takes, 4 whole tiles */
    {1, 7, 11, 8, 9, 1},  /* F(4x4): H odd, 3 tile rows, the last one partial */
};

static void test_wino_fixed_shapes(void) {
    tu_rng rng = {101};
    int saved = bt_threads();
    static const int threads[] = {1, 2, 3};
    for (int tile = 0; tile < NTILES; tile++) {
        bt_wino_set_tile(tiles_all[tile]);
        for (size_t ti = 0; ti < 3; ti++) {
            bt_set_threads(threads[ti]);
            for (size_t t = 0; t < sizeof fixed / sizeof fixed[0]; t++)
                wino_vs_ref(&fixed[t], &rng);
        }
    }
    bt_wino_set_tile(BT_WINO_F2_DX4_DW4);
    bt_set_threads(saved);
}

static void test_wino_random_shapes(void) {
    tu_rng rng = {102};
    for (int t = 0; t < 60; t++) {
        wshape s = {1 + (int)(tu_next(&rng) % 3),  1 + (int)(tu_next(&rng) % 20),
                    1 + (int)(tu_next(&rng) % 13), 1 + (int)(tu_next(&rng) % 13),
                    1 + (int)(tu_next(&rng) % 20), (int)(tu_next(&rng) % 2)};
        bt_wino_set_tile(tiles_all[t % NTILES]);
        wino_vs_ref(&s, &rng);
    }
    bt_wino_set_tile(BT_WINO_F2_DX4_DW4);
}

/* The work is cut into chunks: whole images, or bands of tile rows when an image has more
 * tiles than a chunk. This map (7x9) has 4 rows of 5 tiles. */
static void test_wino_chunks(void) {
    tu_rng rng = {103};
    const wshape s = {3, 6, 7, 9, 5, 1};
    static const size_t tiles[] = {1,  /* bands of one tile row (a chunk holds a row at least) */
                                   15, /* bands of 3 tile rows: 3 + 1, the last one partial */
                                   40, /* 2 images per chunk: 2 + 1 */
                                   0}; /* the default rule: everything in one chunk */
    /* F(4x4) on a 13x9 map: 4 rows of 3 tiles, the last row and column partial. */
    const wshape s4 = {3, 6, 13, 9, 5, 1};
    static const size_t tiles4[] = {1, 7 /* bands of 2 rows: 2 + 2 */, 30, 0};
    int saved = bt_threads();
    for (int th = 1; th <= 3; th += 2) {
        bt_set_threads(th);
        for (size_t i = 0; i < sizeof tiles / sizeof tiles[0]; i++) {
            bt_wino_set_tile(2);
            bt_wino_set_chunk_tiles(tiles[i]);
            wino_vs_ref(&s, &rng);
            bt_wino_set_tile(4);
            bt_wino_set_chunk_tiles(tiles4[i]);
            wino_vs_ref(&s4, &rng);
        }
    }
    bt_wino_set_tile(BT_WINO_F2_DX4_DW4);
    bt_wino_set_chunk_tiles(0);
    bt_set_threads(saved);
}

/* The forward and the input gradient give the same bits whatever the chunk size (a tile's
 * products do not depend on its chunk), for both tiles: the chunk floors may be tuned for
 * speed without changing the numbers. */
static void test_wino_chunk_bits(void) {
    tu_rng rng = {106};
    const wshape s = {3, 16, 13, 9, 17, 1};
    bt_conv2d_desc d;
    CHECK(bt_conv2d_desc_init(&d, s.N, s.C, s.H, s.W, s.K, 3, 3, 1, 1) == BT_OK, "%s",
          bt_error());
    const size_t ni = (size_t)s.N * s.C * s.H * s.W, nw = (size_t)s.K * s.C * 9;
    const size_t no = (size_t)s.N * s.K * s.H * s.W;
    float *x = tu_xcalloc(ni, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(s.K, 4);
    float *dy = tu_xcalloc(no, 4), *y0 = tu_xcalloc(no, 4), *y = tu_xcalloc(no, 4);
    float *dx0 = tu_xcalloc(ni, 4), *dx = tu_xcalloc(ni, 4);
    tu_fill_f32(x, ni, &rng, 1.0);
    tu_fill_f32(w, nw, &rng, 0.5);
    tu_fill_f32(b, s.K, &rng, 1.0);
    tu_fill_f32(dy, no, &rng, 1.0);
    static const size_t chunks[] = {1, 3, 7, 30, 1000};
    int saved = bt_threads();
    for (int tile = 2; tile <= 4; tile += 2) {
        bt_wino_set_tile(tile);
        bt_wino_set_chunk_tiles(0);
        memset(dx0, 0, ni * 4);
        CHECK(bt_wino_forward(y0, x, w, b, &d) == BT_OK &&
                  bt_wino_backward_data(dx0, dy, w, &d) == BT_OK,
              "%s", bt_error());
        for (int th = 1; th <= 2; th++) {
            bt_set_threads(th);
            for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
                bt_wino_set_chunk_tiles(chunks[i]);
                memset(dx, 0, ni * 4);
                CHECK(bt_wino_forward(y, x, w, b, &d) == BT_OK &&
                          bt_wino_backward_data(dx, dy, w, &d) == BT_OK,
                      "%s", bt_error());
                CHECK(memcmp(y, y0, no * 4) == 0 && memcmp(dx, dx0, ni * 4) == 0,
                      "F(%dx%d), %d thread(s), chunks of %zu tiles: other bits than the default "
                      "chunks'", tile, tile, th, chunks[i]);
            }
        }
        bt_set_threads(saved);
    }
    bt_wino_set_chunk_tiles(0);
    bt_wino_set_tile(BT_WINO_F2_DX4_DW4);
    free(x), free(w), free(b), free(dy), free(y0), free(y), free(dx0), free(dx);
}

/* bt_conv2d_* take the Winograd path on an applicable shape (bit-identical results), and the
 * weight and bias gradients computed beside it are still right. */
static void test_wino_dispatch(void) {
    tu_rng rng = {104};
    bt_conv2d_desc d;
    CHECK(bt_conv2d_desc_init(&d, 2, 16, 9, 8, 17, 3, 3, 1, 1) == BT_OK, "%s", bt_error());
    CHECK(bt_wino_applicable(&d), "16->17 channels 3x3 s1 p1 should be applicable");
    const size_t ni = (size_t)2 * 16 * 9 * 8, nw = (size_t)17 * 16 * 9;
    const size_t no = (size_t)2 * 17 * 9 * 8;
    float *x = tu_xcalloc(ni, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(17, 4), *dy = tu_xcalloc(no, 4);
    float *y = tu_xcalloc(no, 4), *yw = tu_xcalloc(no, 4);
    float *dx = tu_xcalloc(ni, 4), *dxw = tu_xcalloc(ni, 4), *dxr = tu_xcalloc(ni, 4);
    float *dw = tu_xcalloc(nw, 4), *dwr = tu_xcalloc(nw, 4), *db = tu_xcalloc(17, 4);
    float *dbr = tu_xcalloc(17, 4);
    tu_fill_f32(x, ni, &rng, 1.0);
    tu_fill_f32(w, nw, &rng, 0.5);
    tu_fill_f32(b, 17, &rng, 1.0);
    tu_fill_f32(dy, no, &rng, 1.0);
    tu_fill_f32(dx, ni, &rng, 1.0);
    tu_fill_f32(dw, nw, &rng, 1.0);
    tu_fill_f32(db, 17, &rng, 1.0);
    memcpy(dxw, dx, ni * 4), memcpy(dxr, dx, ni * 4), memcpy(dwr, dw, nw * 4);
    memcpy(dbr, db, 17 * 4);
    CHECK(bt_conv2d_forward(y, x, w, b, &d) == BT_OK, "%s", bt_error());
    CHECK(bt_wino_forward(yw, x, w, b, &d) == BT_OK, "%s", bt_error());
    CHECK(memcmp(y, yw, no * 4) == 0, "bt_conv2d_forward did not take the Winograd path");
    CHECK(bt_conv2d_backward(dx, dw, db, dy, x, w, &d) == BT_OK, "%s", bt_error());
    CHECK(bt_wino_backward_data(dxw, dy, w, &d) == BT_OK, "%s", bt_error());
    CHECK(memcmp(dx, dxw, ni * 4) == 0, "bt_conv2d_backward dinp did not take the Winograd path");
    bt_conv2d_backward_ref_f32(dxr, dwr, dbr, dy, x, w, &d);
    double ex = rel32(dx, dxr, ni), ew = rel32(dw, dwr, nw), eb = rel32(db, dbr, 17);
    CHECK(ex < wino_tol() && ew < 1e-5 && eb < 1e-5, "backward: dx %.2e dw %.2e db %.2e", ex, ew,
          eb);
    /* dinp NULL: weight gradient only, input gradient untouched. */
    memcpy(dxw, dx, ni * 4);
    CHECK(bt_conv2d_backward(NULL, dw, NULL, dy, x, w, &d) == BT_OK, "%s", bt_error());
    bt_conv2d_backward_ref_f32(NULL, dwr, NULL, dy, x, w, &d);
    CHECK(rel32(dw, dwr, nw) < 1e-5, "dw alone: %.2e", rel32(dw, dwr, nw));
    CHECK(memcmp(dx, dxw, ni * 4) == 0, "dx changed though NULL was passed");
    free(x), free(w), free(b), free(dy), free(y), free(yw), free(dx), free(dxw), free(dxr);
    free(dw), free(dwr), free(db), free(dbr);
}

/* Each setting gives, pass by pass, the bits of the tile it names: on maps of 8x8 and more the
 * forward is F(4x4)'s under BT_WINO_F4 only, the input gradient F(2x2)'s under BT_WINO_F2
 * only; on maps of 4x4 and more the weight gradient is F(4x4)'s under BT_WINO_F4 and the
 * default BT_WINO_F2_DX4_DW4; on smaller maps everything is F(2x2)'s. On the larger maps the two tiles' bits differ (so
 * F(4x4) did run where named). The workspace forms of bt_conv2d_* given a setting agree with
 * the process setting. */
static void test_wino_mixed_bits(void) {
    static const wshape shapes[] = {{2, 16, 9, 8, 17, 1}, {3, 16, 16, 16, 16, 0},
                                    {8, 16, 4, 4, 24, 1}, {2, 16, 7, 12, 16, 0},
                                    {8, 16, 3, 8, 16, 1}};
    /* Per setting (tiles_all order): 4 where the pass uses F(4x4) on a large map. */
    static const int fwd4[NTILES] = {0, 1, 0, 0}, dx4[NTILES] = {0, 1, 1, 1},
                     dw4[NTILES] = {0, 1, 0, 1};
    tu_rng rng = {105};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const wshape *s = &shapes[t];
        bt_conv2d_desc d;
        CHECK(bt_conv2d_desc_init(&d, s->N, s->C, s->H, s->W, s->K, 3, 3, 1, 1) == BT_OK, "%s",
              bt_error());
        const size_t ni = (size_t)s->N * s->C * s->H * s->W, nw = (size_t)s->K * s->C * 9;
        const size_t no = (size_t)s->N * s->K * s->H * s->W;
        float *x = tu_xcalloc(ni, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(s->K, 4);
        float *dy = tu_xcalloc(no, 4), *y[NTILES], *dx[NTILES], *dw[NTILES];
        float *yc = tu_xcalloc(no, 4), *dxc = tu_xcalloc(ni, 4), *dwc = tu_xcalloc(nw, 4);
        tu_fill_f32(x, ni, &rng, 1.0);
        tu_fill_f32(w, nw, &rng, 0.5);
        tu_fill_f32(b, s->K, &rng, 1.0);
        tu_fill_f32(dy, no, &rng, 1.0);
        for (int i = 0; i < NTILES; i++) {
            y[i] = tu_xcalloc(no, 4), dx[i] = tu_xcalloc(ni, 4), dw[i] = tu_xcalloc(nw, 4);
            bt_wino_set_tile(tiles_all[i]);
            CHECK(bt_wino_forward(y[i], x, w, s->bias ? b : NULL, &d) == BT_OK, "%s", bt_error());
            CHECK(bt_wino_backward_data(dx[i], dy, w, &d) == BT_OK, "%s", bt_error());
            CHECK(bt_wino_backward_weights(dw[i], dy, x, &d) == BT_OK, "%s", bt_error());
        }
        const int big = s->H >= 8 && s->W >= 8, big_dw = s->H >= 4 && s->W >= 4;
        /* tiles_all[0] is F(2x2) everywhere, tiles_all[1] F(4x4) everywhere (on big maps). */
        for (int i = 2; i < NTILES; i++) {
            CHECK(memcmp(y[i], y[big && fwd4[i]], no * 4) == 0,
                  "shape %zu: the forward of setting %s is not F(%d)'s", t, tile_names[i],
                  big && fwd4[i] ? 4 : 2);
            CHECK(memcmp(dx[i], dx[big && dx4[i]], ni * 4) == 0,
                  "shape %zu: the input gradient of setting %s is not F(%d)'s", t,
                  tile_names[i], big && dx4[i] ? 4 : 2);
            CHECK(memcmp(dw[i], dw[big_dw && dw4[i]], nw * 4) == 0,
                  "shape %zu: the weight gradient of setting %s is not F(%d)'s", t,
                  tile_names[i], big_dw && dw4[i] ? 4 : 2);
        }
        CHECK(!big || (memcmp(y[1], y[0], no * 4) != 0 && memcmp(dx[1], dx[0], ni * 4) != 0),
              "shape %zu: F(4x4) gave F(2x2)'s bits in the forward or input gradient (did it "
              "run?)", t);
        CHECK(!big_dw || memcmp(dw[1], dw[0], nw * 4) != 0,
              "shape %zu: F(4x4) gave F(2x2)'s bits in the weight gradient (did it run?)", t);
        CHECK(big || (memcmp(y[1], y[0], no * 4) == 0 && memcmp(dx[1], dx[0], ni * 4) == 0),
              "shape %zu (%dx%d): F(4x4) ran on a map below 8x8 in the forward or input "
              "gradient", t, s->H, s->W);
        CHECK(big_dw || memcmp(dw[1], dw[0], nw * 4) == 0,
              "shape %zu (%dx%d): F(4x4) ran on a map below 4x4 in the weight gradient", t, s->H,
              s->W);
        /* bt_conv2d_*_ws given each setting while the process setting is another: that
         * setting's bits. */
        for (int i = 0; i < NTILES; i++) {
            bt_wino_set_tile(tiles_all[(i + 1) % NTILES]);
            memset(dxc, 0, ni * 4), memset(dwc, 0, nw * 4);
            CHECK(bt_conv2d_forward_ws(bt_default_arena(), tiles_all[i], yc, x, w,
                                       s->bias ? b : NULL, &d) == BT_OK &&
                      bt_conv2d_backward_ws(bt_default_arena(), tiles_all[i], dxc, dwc, NULL, dy,
                                            x, w, &d, 0) == BT_OK,
                  "%s", bt_error());
            CHECK(memcmp(yc, y[i], no * 4) == 0 && memcmp(dxc, dx[i], ni * 4) == 0 &&
                      memcmp(dwc, dw[i], nw * 4) == 0,
                  "shape %zu: bt_conv2d_*_ws(winograd %d) differs from that process setting", t,
                  tiles_all[i]);
        }
        bt_wino_set_tile(BT_WINO_F2_DX4_DW4);
        for (int i = 0; i < NTILES; i++) free(y[i]), free(dx[i]), free(dw[i]);
        free(x), free(w), free(b), free(dy), free(yc), free(dxc), free(dwc);
    }
}

/* The weight gradient sums each thread's chunks in that thread's dU, then the threads' dU in
 * thread order: with the same thread count, two calls give the same bits, however the OpenMP
 * runtime schedules them. */
static void test_wino_dw_reproducible(void) {
    tu_rng rng = {105};
    bt_conv2d_desc d;
    CHECK(bt_conv2d_desc_init(&d, 5, 24, 9, 11, 20, 3, 3, 1, 1) == BT_OK, "%s", bt_error());
    const size_t ni = (size_t)5 * 24 * 9 * 11, no = (size_t)5 * 20 * 9 * 11, nw = (size_t)20 * 24 * 9;
    float *x = tu_xcalloc(ni, 4), *dy = tu_xcalloc(no, 4);
    float *dw1 = tu_xcalloc(nw, 4), *dw2 = tu_xcalloc(nw, 4);
    tu_fill_f32(x, ni, &rng, 1.0);
    tu_fill_f32(dy, no, &rng, 1.0);
    int saved = bt_threads();
    bt_set_threads(3);
    for (int tile = 2; tile <= 4; tile += 2) {
        bt_wino_set_tile(tile);
        /* F(2x2): 14 chunks of one or two tile rows, F(4x4): 9 chunks of one tile row;
         * several per thread either way */
        bt_wino_set_chunk_tiles(tile == 2 ? 6 : 3);
        for (int r = 0; r < 3; r++) {
            float *dw = r == 0 ? dw1 : dw2;
            memset(dw, 0, nw * 4);
            CHECK(bt_wino_backward_weights(dw, dy, x, &d) == BT_OK, "%s", bt_error());
            if (r > 0)
                CHECK(memcmp(dw1, dw2, nw * 4) == 0, "F(%dx%d): call %d differs from the first",
                      tile, tile, r + 1);
        }
    }
    bt_wino_set_tile(BT_WINO_F2_DX4_DW4);
    bt_wino_set_chunk_tiles(0);
    bt_set_threads(saved);
    free(x), free(dy), free(dw1), free(dw2);
}

static void test_wino_applicable(void) {
    bt_conv2d_desc d;
    CHECK(!bt_wino_applicable(NULL), "NULL accepted");
    static const struct {
        int N, C, H, W, K, R, stride, pad, want;
        const char *what;
    } cases[] = {
        {2, 64, 32, 32, 64, 3, 1, 1, 1, "ResNet layer1 3x3"},
        {8, 512, 4, 4, 512, 3, 1, 1, 1, "ResNet layer4 3x3 (N = 8)"},
        {4, 512, 4, 4, 512, 3, 1, 1, 0, "64 output pixels (the weight transform would not pay)"},
        {64, 8, 32, 32, 64, 3, 1, 1, 0, "C = 8"},
        {64, 64, 32, 32, 8, 3, 1, 1, 0, "K = 8"},
        {2, 64, 32, 32, 128, 3, 2, 1, 0, "stride 2"},
        {2, 64, 32, 32, 128, 1, 1, 0, 0, "1x1"},
        {2, 64, 32, 32, 64, 3, 1, 0, 0, "pad 0"},
        {2, 64, 32, 32, 64, 5, 1, 2, 0, "5x5"},
        {2, 3, 32, 32, 64, 3, 1, 1, 0, "CIFAR stem (C = 3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int ok = bt_conv2d_desc_init(&d, cases[i].N, cases[i].C, cases[i].H, cases[i].W,
                                     cases[i].K, cases[i].R, cases[i].R, cases[i].stride,
                                     cases[i].pad) == BT_OK;
        CHECK(ok && bt_wino_applicable(&d) == cases[i].want, "%s %s", cases[i].what,
              cases[i].want ? "rejected" : "accepted");
    }
    /* The functions themselves refuse shapes they cannot compute, and bad buffers. */
    float buf[64] = {0};
    CHECK(bt_conv2d_desc_init(&d, 1, 2, 4, 4, 2, 3, 3, 2, 1) == BT_OK, "%s", bt_error());
    CHECK(bt_wino_forward(buf, buf, buf, NULL, &d) == BT_EINVAL && strstr(bt_error(), "stride"),
          "stride 2 forward: '%s'", bt_error());
    CHECK(bt_conv2d_desc_init(&d, 1, 2, 4, 4, 2, 3, 3, 1, 0) == BT_OK, "%s", bt_error());
    CHECK(bt_wino_backward_data(buf, buf, buf, &d) == BT_EINVAL, "pad 0 backward accepted");
    CHECK(bt_conv2d_desc_init(&d, 1, 2, 4, 4, 2, 3, 3, 1, 1) == BT_OK, "%s", bt_error());
    CHECK(bt_wino_forward(NULL, buf, buf, NULL, &d) == BT_EINVAL, "NULL out accepted");
    CHECK(bt_wino_backward_data(buf, buf, buf, NULL) == BT_EINVAL, "NULL desc accepted");
    CHECK(bt_wino_backward_weights(NULL, buf, buf, &d) == BT_EINVAL, "NULL dw accepted");
    CHECK(bt_wino_backward_weights(buf, buf, buf, NULL) == BT_EINVAL, "NULL desc accepted (dw)");
    d.OH = 3;
    CHECK(bt_wino_forward(buf, buf, buf, NULL, &d) == BT_EINVAL &&
              strstr(bt_error(), "does not match"),
          "inconsistent descriptor: '%s'", bt_error());
    bt_clear_error();
}

/* What main saw before any conv ran. The library reads no environment (issue 17): with
 * BT_CONV_WINOGRAD=0 set, Winograd stays on by default; the program maps the variable onto
 * the CPU backend's setting, which turns it off ("0") and back. */
static int env_enabled = -1, forced_enabled = -1, env_tile = -1, cfg_off = -1;

static void test_wino_env_switch(void) {
    CHECK(env_enabled == 1, "the library read BT_CONV_WINOGRAD=0 from the environment");
    CHECK(cfg_off == 0, "the backend setting winograd=0 left Winograd on");
    CHECK(forced_enabled == 1, "bt_wino_set_enabled(1) did not override the setting");
    CHECK(env_tile == BT_WINO_F2_DX4_DW4,
          "the default tile setting is %d, not %d (F(2x2) forward, F(4x4) input and weight "
          "gradients)",
          env_tile, BT_WINO_F2_DX4_DW4);
}

int main(void) {
    setenv("BT_CONV_WINOGRAD", "0", 1);
    env_enabled = bt_wino_enabled();
    env_tile = bt_wino_tile();
    unsetenv("BT_CONV_WINOGRAD");
    bt_backend_cfg off;
    bt_backend_cfg_default(&off);
    off.winograd = 0;
    bt_backend_cpu_settings(&off);
    cfg_off = bt_wino_enabled();
    bt_wino_set_enabled(1);
    forced_enabled = bt_wino_enabled();
    TEST_RUN(test_wino_env_switch);
    TEST_RUN(test_wino_fixed_shapes);
    TEST_RUN(test_wino_random_shapes);
    TEST_RUN(test_wino_chunks);
    TEST_RUN(test_wino_chunk_bits);
    TEST_RUN(test_wino_dispatch);
    TEST_RUN(test_wino_mixed_bits);
    TEST_RUN(test_wino_dw_reproducible);
    TEST_RUN(test_wino_applicable);
    printf("largest Winograd error relative to max|out|: F(2x2) %.2e (tolerance %.0e), "
           "F(4x4) setting %.2e, setting 24 %.2e, default setting (244) %.2e (tolerance %.0e)\n",
           worst[0], WINO_TOL, worst[1], worst[2], worst[3], WINO_TOL4);
    bt_scratch_release();
    return tu_finish();
}
