/* Tests for batch norm, ReLU, residual add (and the fused batch norm + ReLU and add + ReLU),
 * max/avg pooling and softmax cross-entropy:
 *  1. finite differences in double on the _ref_f64 versions (the backward matches the
 *     forward's derivative);
 *  2. the optimised float32 ops against _ref_f32 on random odd shapes, with gradients
 *     pre-filled to check accumulation;
 *  3. live PyTorch parity (tests/py/parity_norm.py) for forward, backward and running stats;
 *  4. invalid inputs return an error and set a message. */
#include "barlow/error.h"
#include "barlow/ops.h"
#include "barlow/ops_ref.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DALLOC(n) ((double *)tu_xcalloc((n), sizeof(double)))
#define FALLOC(n) ((float *)tu_xcalloc((n), sizeof(float)))
#define IALLOC(n) ((int32_t *)tu_xcalloc((n), sizeof(int32_t)))

static int randint(tu_rng *r, int lo, int hi) { /* [lo, hi] */
    return lo + (int)(tu_next(r) % (uint64_t)(hi - lo + 1));
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* max|a-b| <= tol * max|ref| (plus a floor for all-zero refs) */
static int close_f32(const char *what, const float *a, const float *ref, size_t n, double tol) {
    double d = tu_maxabsdiff_f32(a, ref, n), m = tu_maxabs_f32(ref, n);
    int ok = d <= tol * m + 1e-30;
    if (getenv("TU_VERBOSE")) /* to see the margins behind each tolerance */
        printf("    %-22s rel err %.2g (tol %.1g)\n", what, d / (m > 0 ? m : 1), tol);
    CHECK(ok, "%s: max|diff| %.3g vs max|ref| %.3g (rel %.3g > tol %.1g)", what, d, m,
          d / (m > 0 ? m : 1), tol);
    return ok;
}

static const double FD_TOL = 1e-6, FD_H = 1e-5;

/* ---- 1. finite differences on the f64 references ------------------------------------ */

typedef struct {
    int N, C, HW, training, affine;
    double *x, *g, *b, *rm, *rv, *w; /* x, w (N,C,HW); g, b, rm, rv (C) */
    double *y, *mean, *rstd;         /* y (N,C,HW); mean, rstd (C) */
    int relu;                        /* batch norm + ReLU */
} bn_ctx;

static double bn_loss(void *p) {
    bn_ctx *c = p;
    /* running stats only in eval: in training they would drift between FD evaluations */
    int rc = (c->relu ? bt_batchnorm_relu_forward_ref_f64 : bt_batchnorm_forward_ref_f64)(c->y, c->mean, c->rstd, c->x, c->affine ? c->g : NULL,
                                          c->affine ? c->b : NULL, c->training ? NULL : c->rm,
                                          c->training ? NULL : c->rv, c->N, c->C, c->HW,
                                          c->training, 0.1, 1e-5);
    if (rc) return NAN;
    return dot(c->y, c->w, (size_t)c->N * c->C * c->HW);
}

/* relu: batch norm + ReLU, with every pre-activation moved at least 0.05 from the kink (the
 * FD steps then never cross it: each moves a pre-activation by < 1e-4). */
static void fd_bn_case(int N, int C, int HW, int training, int affine, uint64_t seed, int relu) {
    tu_rng r = {seed};
    size_t n = (size_t)N * C * HW;
    bn_ctx c = {N, C, HW, training, affine, DALLOC(n), DALLOC(C), DALLOC(C), DALLOC(C),
                DALLOC(C), DALLOC(n), DALLOC(n), DALLOC(C), DALLOC(C), 0};
    tu_fill_f64(c.x, n, &r, 1.5);
    for (size_t i = 0; i < n; i++) c.x[i] += 0.3 * (double)((i / HW) % C); /* channel offsets */
    for (int i = 0; i < C; i++) {
        c.g[i] = 1 + 0.3 * tu_normal(&r);
        c.b[i] = tu_normal(&r);
        c.rm[i] = 0.2 * tu_normal(&r);
        c.rv[i] = 0.5 + tu_uniform(&r);
    }
    tu_fill_f64(c.w, n, &r, 1.0);
    double *dx = DALLOC(n), *dg = DALLOC(C), *db = DALLOC(C);
    for (int it = 0, near = relu; near && it < 50; it++) { /* clear of the kink (BN output) */
        CHECK(!isnan(bn_loss(&c)), "forward failed: %s", bt_error());
        near = 0;
        for (size_t i = 0; i < n; i++)
            if (fabs(c.y[i]) < 0.05) {
                int ch = (int)(i / HW) % C;
                double k = (affine ? c.g[ch] : 1) * c.rstd[ch]; /* dy/dx, holding the stats */
                c.x[i] += (c.y[i] < 0 ? -0.1 : 0.1) / k;
                near = 1;
            }
        CHECK(!near || it < 49, "BN + ReLU: inputs still near the kink after 50 rounds");
    }
    c.relu = relu;
    CHECK(!isnan(bn_loss(&c)), "forward failed: %s", bt_error());
    int masked = 0;
    for (size_t i = 0; i < n && relu; i++) masked += c.y[i] <= 0;
    CHECK(!relu || (masked > 0 && masked < (int)n), "BN + ReLU N=%d C=%d HW=%d: %d of %zu masked",
          N, C, HW, masked, n);
    if (relu)
        bt_batchnorm_relu_backward_ref_f64(dx, affine ? dg : NULL, affine ? db : NULL, c.w, c.y,
                                           c.x, affine ? c.g : NULL, c.mean, c.rstd, N, C, HW,
                                           training);
    else
        bt_batchnorm_backward_ref_f64(dx, affine ? dg : NULL, affine ? db : NULL, c.w, c.x,
                                      affine ? c.g : NULL, c.mean, c.rstd, N, C, HW, training);
    double ex = tu_fd_check(bn_loss, &c, c.x, dx, n, FD_H, 1000);
    CHECK(ex < FD_TOL, "BN%s N=%d C=%d HW=%d train=%d affine=%d: dx rel err %.3g",
          relu ? " + ReLU" : "", N, C, HW, training, affine, ex);
    if (affine) {
        double eg = tu_fd_check(bn_loss, &c, c.g, dg, C, FD_H, 1000);
        double eb = tu_fd_check(bn_loss, &c, c.b, db, C, FD_H, 1000);
        CHECK(eg < FD_TOL && eb < FD_TOL, "BN%s N=%d C=%d HW=%d train=%d: dgamma %.3g dbeta %.3g",
              relu ? " + ReLU" : "", N, C, HW, training, eg, eb);
    }
    free(c.x), free(c.g), free(c.b), free(c.rm), free(c.rv), free(c.w), free(c.y);
    free(c.mean), free(c.rstd), free(dx), free(dg), free(db);
}

static void test_fd_batchnorm(void) {
    for (int training = 0; training <= 1; training++)
        for (int affine = 0; affine <= 1; affine++) {
            fd_bn_case(3, 4, 5 * 7, training, affine, 11 + training * 2 + affine, 0); /* 2-D */
            fd_bn_case(7, 5, 1, training, affine, 21 + training * 2 + affine, 0);     /* 1-D */
        }
    fd_bn_case(1, 3, 1, 0, 1, 31, 0); /* eval allows one value per channel */
    fd_bn_case(2, 3, 1, 1, 1, 32, 0); /* smallest training batch */
}

/* Batch norm + ReLU: the batch norm's cases, with the ReLU's mask on the gradient. */
static void test_fd_batchnorm_relu(void) {
    for (int training = 0; training <= 1; training++)
        for (int affine = 0; affine <= 1; affine++) {
            fd_bn_case(3, 4, 5 * 7, training, affine, 41 + training * 2 + affine, 1); /* 2-D */
            fd_bn_case(7, 5, 1, training, affine, 51 + training * 2 + affine, 1);     /* 1-D */
        }
    fd_bn_case(4, 3, 1, 1, 1, 61, 1); /* a small training batch */
}

typedef struct {
    int N, C, H, W, OH, OW;
    double *x, *y, *w; /* x (N,C,H,W); y, w (N,C,OH,OW) */
    int32_t *am;       /* (N,C,OH,OW) */
} mp_ctx;

static double mp_loss(void *p) {
    mp_ctx *c = p;
    if (bt_maxpool2d_forward_ref_f64(c->y, c->am, c->x, c->N, c->C, c->H, c->W, 3, 2, 1))
        return NAN;
    return dot(c->y, c->w, (size_t)c->N * c->C * c->OH * c->OW);
}

static void test_fd_maxpool(void) {
    const int sizes[][2] = {{7, 7}, {9, 9}, {7, 9}};
    for (int t = 0; t < 3; t++) {
        tu_rng r = {100 + t};
        int N = 2, C = 3, H = sizes[t][0], W = sizes[t][1];
        mp_ctx c = {N, C, H, W, (H - 1) / 2 + 1, (W - 1) / 2 + 1, 0, 0, 0, 0};
        size_t n = (size_t)N * C * H * W, no = (size_t)N * C * c.OH * c.OW;
        c.x = DALLOC(n), c.y = DALLOC(no), c.w = DALLOC(no), c.am = IALLOC(no);
        /* distinct values 0.01 apart (a shuffled ramp): no ties, so no FD step crosses a kink */
        for (size_t i = 0; i < n; i++) c.x[i] = 0.01 * (double)i - 0.005 * (double)n;
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = tu_next(&r) % (i + 1);
            double s = c.x[i];
            c.x[i] = c.x[j], c.x[j] = s;
        }
        tu_fill_f64(c.w, no, &r, 1.0);
        double *dx = DALLOC(n);
        CHECK(!isnan(mp_loss(&c)), "forward failed: %s", bt_error());
        bt_maxpool2d_backward_ref_f64(dx, c.w, c.am, N, C, H, W, c.OH, c.OW);
        double e = tu_fd_check(mp_loss, &c, c.x, dx, n, FD_H, 1000);
        CHECK(e < FD_TOL, "maxpool %dx%d: rel err %.3g", H, W, e);
        free(c.x), free(c.y), free(c.w), free(c.am), free(dx);
    }
}

typedef struct {
    int op; /* 0 relu, 1 add, 2 avgpool, 3 add + ReLU */
    int N, C, HW;
    size_t n;
    double *x, *x2, *y, *w;
} ew_ctx;

static double ew_loss(void *p) {
    ew_ctx *c = p;
    size_t ny = c->n;
    if (c->op == 0) bt_relu_forward_ref_f64(c->y, c->x, c->n);
    if (c->op == 1) bt_add_forward_ref_f64(c->y, c->x, c->x2, c->n);
    if (c->op == 3) bt_add_relu_forward_ref_f64(c->y, c->x, c->x2, c->n);
    if (c->op == 2) {
        bt_avgpool_forward_ref_f64(c->y, c->x, c->N, c->C, c->HW);
        ny = (size_t)c->N * c->C;
    }
    return dot(c->y, c->w, ny);
}

static void test_fd_elementwise(void) {
    tu_rng r = {200};
    const int N = 3, C = 5, HW = 7 * 7;
    size_t n = (size_t)N * C * HW;
    ew_ctx c = {0, N, C, HW, n, DALLOC(n), DALLOC(n), DALLOC(n), DALLOC(n)};
    double *d1 = DALLOC(n), *d2 = DALLOC(n);
    /* ReLU: keep |x| >= 0.1 so the FD step never crosses the kink at 0 */
    for (size_t i = 0; i < n; i++) {
        double v = tu_normal(&r);
        c.x[i] = v < 0 ? v - 0.1 : v + 0.1;
    }
    tu_fill_f64(c.w, n, &r, 1.0);
    ew_loss(&c);
    bt_relu_backward_ref_f64(d1, c.w, c.y, n);
    double e = tu_fd_check(ew_loss, &c, c.x, d1, n, FD_H, 1000);
    CHECK(e < FD_TOL, "relu: rel err %.3g", e);

    c.op = 1;
    tu_fill_f64(c.x, n, &r, 1.0);
    tu_fill_f64(c.x2, n, &r, 1.0);
    memset(d1, 0, n * sizeof *d1);
    bt_add_backward_ref_f64(d1, d2, c.w, n);
    double ea = tu_fd_check(ew_loss, &c, c.x, d1, n, FD_H, 300);
    double eb = tu_fd_check(ew_loss, &c, c.x2, d2, n, FD_H, 300);
    CHECK(ea < FD_TOL && eb < FD_TOL, "add: rel err %.3g %.3g", ea, eb);

    c.op = 2;
    memset(d1, 0, n * sizeof *d1);
    bt_avgpool_backward_ref_f64(d1, c.w, N, C, HW); /* w (N,C) = first N*C entries */
    e = tu_fd_check(ew_loss, &c, c.x, d1, n, FD_H, 1000);
    CHECK(e < FD_TOL, "avgpool: rel err %.3g", e);

    /* add + ReLU: sums kept >= 0.1 from the kink, about half of them masked */
    c.op = 3;
    tu_fill_f64(c.x, n, &r, 1.0);
    for (size_t i = 0; i < n; i++) {
        double v = tu_normal(&r);
        c.x2[i] = (v < 0 ? v - 0.1 : v + 0.1) - c.x[i];
    }
    memset(d1, 0, n * sizeof *d1), memset(d2, 0, n * sizeof *d2);
    ew_loss(&c);
    bt_add_relu_backward_ref_f64(d1, d2, c.w, c.y, n);
    ea = tu_fd_check(ew_loss, &c, c.x, d1, n, FD_H, 300);
    eb = tu_fd_check(ew_loss, &c, c.x2, d2, n, FD_H, 300);
    CHECK(ea < FD_TOL && eb < FD_TOL, "add + ReLU: rel err %.3g %.3g", ea, eb);
    free(c.x), free(c.x2), free(c.y), free(c.w), free(d1), free(d2);
}

typedef struct {
    int N, K;
    double *z, *p, dloss; /* z, p (N,K) */
    int32_t *lab;         /* (N) */
} xe_ctx;

static double xe_loss(void *p) {
    xe_ctx *c = p;
    double l;
    if (bt_xent_forward_ref_f64(&l, c->p, c->z, c->lab, c->N, c->K)) return NAN;
    return c->dloss * l;
}

static void test_fd_xent(void) {
    tu_rng r = {300};
    xe_ctx c = {5, 7, DALLOC(35), DALLOC(35), 0.7, IALLOC(5)};
    tu_fill_f64(c.z, 35, &r, 2.0);
    c.z[3] += 40; /* a large logit: the max subtraction must keep this finite and exact */
    for (int i = 0; i < 5; i++) c.lab[i] = randint(&r, 0, 6);
    double *dz = DALLOC(35);
    CHECK(!isnan(xe_loss(&c)), "forward failed: %s", bt_error());
    bt_xent_backward_ref_f64(dz, c.p, c.lab, c.dloss, 5, 7);
    double e = tu_fd_check(xe_loss, &c, c.z, dz, 35, FD_H, 100);
    CHECK(e < FD_TOL, "xent: rel err %.3g", e);
    /* independent value: row 0 by the textbook formula */
    double s = 0, l;
    for (int j = 0; j < 7; j++) s += exp(c.z[j]);
    bt_xent_forward_ref_f64(&l, c.p, c.z, c.lab, 1, 7);
    CHECK(fabs(l - (log(s) - c.z[c.lab[0]])) < 1e-12, "xent row 0: %.17g vs %.17g", l,
          log(s) - c.z[c.lab[0]]);
    free(c.z), free(c.p), free(c.lab), free(dz);
}

/* ---- 2. optimised f32 vs _ref_f32 ----------------------------------------------------- */

/* relu: bt_batchnorm_relu_* against the _ref_f32 batch norm + ReLU, whose backward takes the
 * optimised op's output as its mask (an output within rounding of 0 may fall on either side
 * in two float runs; the mask itself is checked bit for bit in test_bn_kernels). */
static void opt_batchnorm(uint64_t seed, int relu) {
    tu_rng r = {seed};
    for (int t = 0; t < 24; t++) {
        int N = randint(&r, 1, 6), C = randint(&r, 1, 9);
        int HW = t % 3 == 0 ? 1 : randint(&r, 1, 9) * randint(&r, 1, 9);
        int training = t % 2, affine = (t / 2) % 2, track = t % 5 != 0 || !training;
        if (training && N * HW == 1) N = 2;
        size_t n = (size_t)N * C * HW;
        float *x = FALLOC(n), *dy = FALLOC(n), *g = FALLOC(C), *b = FALLOC(C);
        float *y[2] = {FALLOC(n), FALLOC(n)}, *dx[2] = {FALLOC(n), FALLOC(n)};
        float *mean[2] = {FALLOC(C), FALLOC(C)}, *rstd[2] = {FALLOC(C), FALLOC(C)};
        float *rm[2] = {FALLOC(C), FALLOC(C)}, *rv[2] = {FALLOC(C), FALLOC(C)};
        float *dg[2] = {FALLOC(C), FALLOC(C)}, *db[2] = {FALLOC(C), FALLOC(C)};
        tu_fill_f32(x, n, &r, 2.0);
        for (size_t i = 0; i < n; i++) x[i] += (float)((i / HW) % C) - 2.0f;
        tu_fill_f32(dy, n, &r, 1.0);
        tu_fill_f32(g, C, &r, 1.0);
        tu_fill_f32(b, C, &r, 1.0);
        tu_fill_f32(rm[0], C, &r, 0.5);
        tu_fill_f32(dx[0], n, &r, 0.5); /* pre-filled: the backward must accumulate */
        tu_fill_f32(dg[0], C, &r, 0.5);
        tu_fill_f32(db[0], C, &r, 0.5);
        for (int i = 0; i < C; i++) rv[0][i] = 0.5f + (float)tu_uniform(&r);
        memcpy(rm[1], rm[0], C * sizeof(float)), memcpy(rv[1], rv[0], C * sizeof(float));
        memcpy(dx[1], dx[0], n * sizeof(float)), memcpy(dg[1], dg[0], C * sizeof(float));
        memcpy(db[1], db[0], C * sizeof(float));
        const float *gg = affine ? g : NULL, *bb = affine ? b : NULL;
        int rc0 = (relu ? bt_batchnorm_relu_forward : bt_batchnorm_forward)(
            y[0], mean[0], rstd[0], x, gg, bb, track ? rm[0] : NULL, track ? rv[0] : NULL, N, C,
            HW, training, 0.1f, 1e-5f);
        int rc1 = (relu ? bt_batchnorm_relu_forward_ref_f32 : bt_batchnorm_forward_ref_f32)(
            y[1], mean[1], rstd[1], x, gg, bb, track ? rm[1] : NULL, track ? rv[1] : NULL, N, C,
            HW, training, 0.1f, 1e-5f);
        CHECK(rc0 == BT_OK && rc1 == BT_OK, "forward failed: %s", bt_error());
        if (relu) {
            bt_batchnorm_relu_backward(dx[0], affine ? dg[0] : NULL, affine ? db[0] : NULL, dy,
                                       y[0], x, gg, mean[0], rstd[0], N, C, HW, training);
            bt_batchnorm_relu_backward_ref_f32(dx[1], affine ? dg[1] : NULL,
                                               affine ? db[1] : NULL, dy, y[0], x, gg, mean[1],
                                               rstd[1], N, C, HW, training);
        } else {
            bt_batchnorm_backward(dx[0], affine ? dg[0] : NULL, affine ? db[0] : NULL, dy, x, gg,
                                  mean[0], rstd[0], N, C, HW, training);
            bt_batchnorm_backward_ref_f32(dx[1], affine ? dg[1] : NULL, affine ? db[1] : NULL, dy,
                                          x, gg, mean[1], rstd[1], N, C, HW, training);
        }
        /* the reference sums in float over up to ~500 values per channel; 3e-5 covers its
         * rounding, while any formula error shows up at O(1) */
        int ok = close_f32("y", y[0], y[1], n, 3e-5) && close_f32("mean", mean[0], mean[1], C, 3e-5) &&
                 close_f32("rstd", rstd[0], rstd[1], C, 3e-5) &&
                 close_f32("running_mean", rm[0], rm[1], C, 3e-5) &&
                 close_f32("running_var", rv[0], rv[1], C, 3e-5) &&
                 close_f32("dx", dx[0], dx[1], n, 3e-5) && close_f32("dgamma", dg[0], dg[1], C, 3e-5) &&
                 close_f32("dbeta", db[0], db[1], C, 3e-5);
        if (!ok)
            fprintf(stderr, "  (case %d%s: N=%d C=%d HW=%d training=%d affine=%d track=%d)\n", t,
                    relu ? " + ReLU" : "", N, C, HW, training, affine, track);
        free(x), free(dy), free(g), free(b);
        for (int k = 0; k < 2; k++)
            free(y[k]), free(dx[k]), free(mean[k]), free(rstd[k]), free(rm[k]), free(rv[k]),
                free(dg[k]), free(db[k]);
    }
}

static void test_opt_batchnorm(void) { opt_batchnorm(400, 0); }
static void test_opt_batchnorm_relu(void) { opt_batchnorm(401, 1); }

/* A larger channel with a big mean, against the f64 reference run on the same float inputs:
 * the optimised op's double sums and two-pass variance must keep full float accuracy. */
static void test_opt_batchnorm_accuracy(void) {
    tu_rng r = {450};
    const int N = 8, C = 3, HW = 33 * 33;
    size_t n = (size_t)N * C * HW;
    float *x = FALLOC(n), *dy = FALLOC(n), *y = FALLOC(n), *dx = FALLOC(n), *mean = FALLOC(C),
          *rstd = FALLOC(C), *rm = FALLOC(C), *rv = FALLOC(C), *dg = FALLOC(C), *db = FALLOC(C);
    double *xd = DALLOC(n), *dyd = DALLOC(n), *yd = DALLOC(n), *dxd = DALLOC(n),
           *meand = DALLOC(C), *rstdd = DALLOC(C), *rmd = DALLOC(C), *rvd = DALLOC(C),
           *dgd = DALLOC(C), *dbd = DALLOC(C), *gd = DALLOC(C), *bd = DALLOC(C);
    float g[3] = {0.5f, 1.5f, -1.0f}, b[3] = {0.1f, -0.2f, 0.3f};
    tu_fill_f32(x, n, &r, 0.5);
    for (size_t i = 0; i < n; i++) x[i] += 100.0f; /* mean/std = 200 */
    tu_fill_f32(dy, n, &r, 1.0);
    for (int i = 0; i < C; i++) rv[i] = 1, rvd[i] = 1, gd[i] = g[i], bd[i] = b[i];
    for (size_t i = 0; i < n; i++) xd[i] = x[i], dyd[i] = dy[i];
    CHECK(bt_batchnorm_forward(y, mean, rstd, x, g, b, rm, rv, N, C, HW, 1, 0.1f, 1e-5f) == 0,
          "%s", bt_error());
    bt_batchnorm_forward_ref_f64(yd, meand, rstdd, xd, gd, bd, rmd, rvd, N, C, HW, 1, 0.1, 1e-5);
    bt_batchnorm_backward(dx, dg, db, dy, x, g, mean, rstd, N, C, HW, 1);
    bt_batchnorm_backward_ref_f64(dxd, dgd, dbd, dyd, xd, gd, meand, rstdd, N, C, HW, 1);
    float *t = FALLOC(n);
#define CMP64(name, a, ad, cnt, tol)                                                           \
    do {                                                                                       \
        for (size_t i = 0; i < (size_t)(cnt); i++) t[i] = (float)(ad)[i];                     \
        close_f32(name, a, t, cnt, tol);                                                       \
    } while (0)
    CMP64("y", y, yd, n, 5e-7);
    CMP64("rstd", rstd, rstdd, C, 2e-6);
    CMP64("running_var", rv, rvd, C, 2e-6);
    /* mean is stored as float (ops.h): at mean/std = 200 its rounding shifts every xhat by
     * ~1e-5, which dgamma = sum(dy*xhat) picks up times sum(dy); PyTorch stores a float mean
     * too. 4e-5 covers that; a formula error is O(1). */
    CMP64("dgamma", dg, dgd, C, 4e-5);
    CMP64("dbeta", db, dbd, C, 1e-5);
    /* dx: the (x - mean) inside float xhat carries the float rounding of x itself */
    CMP64("dx", dx, dxd, n, 1e-5);
#undef CMP64
    free(x), free(dy), free(y), free(dx), free(mean), free(rstd), free(rm), free(rv), free(dg),
        free(db), free(t);
    free(xd), free(dyd), free(yd), free(dxd), free(meand), free(rstdd), free(rmd), free(rvd),
        free(dgd), free(dbd), free(gd), free(bd);
}

static void test_opt_maxpool(void) {
    tu_rng r = {500};
    for (int t = 0; t < 30; t++) {
        int N = randint(&r, 1, 3), C = randint(&r, 1, 5), H = 2 * randint(&r, 1, 6) + 1,
            W = 2 * randint(&r, 1, 6) + 1, k = randint(&r, 1, 4), s = randint(&r, 1, 3),
            p = randint(&r, 0, k / 2);
        if (H + 2 * p < k || W + 2 * p < k) continue;
        int OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
        size_t n = (size_t)N * C * H * W, no = (size_t)N * C * OH * OW;
        float *x = FALLOC(n), *dy = FALLOC(no), *y[2] = {FALLOC(no), FALLOC(no)},
              *dx[2] = {FALLOC(n), FALLOC(n)};
        int32_t *am[2] = {IALLOC(no), IALLOC(no)};
        tu_fill_f32(x, n, &r, 1.0);
        if (t % 2) /* quantised: many ties, which must resolve to the same index */
            for (size_t i = 0; i < n; i++) x[i] = roundf(x[i] * 2) / 2;
        if (t % 7 == 3) x[n / 2] = NAN, x[n / 3] = -INFINITY;
        tu_fill_f32(dy, no, &r, 1.0);
        tu_fill_f32(dx[0], n, &r, 0.5);
        memcpy(dx[1], dx[0], n * sizeof(float));
        int rc0 = bt_maxpool2d_forward(y[0], am[0], x, N, C, H, W, k, s, p);
        int rc1 = bt_maxpool2d_forward_ref_f32(y[1], am[1], x, N, C, H, W, k, s, p);
        CHECK(rc0 == 0 && rc1 == 0, "%s", bt_error());
        bt_maxpool2d_backward(dx[0], dy, am[0], N, C, H, W, OH, OW);
        bt_maxpool2d_backward_ref_f32(dx[1], dy, am[1], N, C, H, W, OH, OW);
        /* no arithmetic in the forward and the same summation order in the backward:
         * bitwise equal (memcmp also equates the NaNs) */
        CHECK(!memcmp(y[0], y[1], no * sizeof(float)) &&
                  !memcmp(am[0], am[1], no * sizeof(int32_t)) &&
                  !memcmp(dx[0], dx[1], n * sizeof(float)),
              "case %d: N=%d C=%d %dx%d k=%d s=%d p=%d differs", t, N, C, H, W, k, s, p);
        free(x), free(dy);
        for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(am[i]);
    }
}

/* Ties, checked against PyTorch's rule computed here by hand: on a constant plane every
 * window's first in-bounds cell wins. */
static void test_maxpool_ties(void) {
    const int H = 7, W = 9, OH = 4, OW = 5;
    float x[7 * 9], y[4 * 5];
    int32_t am[4 * 5];
    for (int i = 0; i < H * W; i++) x[i] = 1.0f;
    CHECK(bt_maxpool2d_forward(y, am, x, 1, 1, H, W, 3, 2, 1) == 0, "%s", bt_error());
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            int h0 = oh * 2 - 1 < 0 ? 0 : oh * 2 - 1, w0 = ow * 2 - 1 < 0 ? 0 : ow * 2 - 1;
            CHECK(am[oh * OW + ow] == h0 * W + w0 && y[oh * OW + ow] == 1.0f,
                  "(%d,%d): argmax %d, expected %d", oh, ow, am[oh * OW + ow], h0 * W + w0);
        }
}

static void test_opt_elementwise(void) {
    tu_rng r = {600};
    const size_t sizes[] = {37, 100003}; /* one below and one above the threading threshold */
    for (int t = 0; t < 2; t++) {
        size_t n = sizes[t];
        float *x = FALLOC(n), *x2 = FALLOC(n), *dy = FALLOC(n), *y[2] = {FALLOC(n), FALLOC(n)},
              *d1[2] = {FALLOC(n), FALLOC(n)}, *d2[2] = {FALLOC(n), FALLOC(n)};
        tu_fill_f32(x, n, &r, 1.0);
        x[0] = 0.0f, x[1] = -0.0f, x[2] = NAN;
        tu_fill_f32(x2, n, &r, 1.0);
        tu_fill_f32(dy, n, &r, 1.0);
        tu_fill_f32(d1[0], n, &r, 0.5);
        tu_fill_f32(d2[0], n, &r, 0.5);
        memcpy(d1[1], d1[0], n * sizeof(float)), memcpy(d2[1], d2[0], n * sizeof(float));
        bt_relu_forward(y[0], x, n);
        bt_relu_forward_ref_f32(y[1], x, n);
        CHECK(!memcmp(y[0], y[1], n * sizeof(float)), "relu forward n=%zu", n);
        CHECK(isnan(y[0][2]) && y[0][0] == 0 && !signbit(y[0][1]), "relu NaN/zero handling");
        bt_relu_backward(d1[0], dy, y[0], n);
        bt_relu_backward_ref_f32(d1[1], dy, y[1], n);
        CHECK(!memcmp(d1[0], d1[1], n * sizeof(float)), "relu backward n=%zu", n);
        bt_relu_forward(x2, x2, n); /* in place is allowed */
        bt_relu_forward_ref_f32(y[1], y[1], n);

        bt_add_forward(y[0], x, x2, n);
        bt_add_forward_ref_f32(y[1], x, x2, n);
        CHECK(!memcmp(y[0], y[1], n * sizeof(float)), "add forward n=%zu", n);
        bt_add_backward(d1[0], d2[0], dy, n);
        bt_add_backward_ref_f32(d1[1], d2[1], dy, n);
        bt_add_backward(NULL, d2[0], dy, n);
        bt_add_backward_ref_f32(NULL, d2[1], dy, n);
        CHECK(!memcmp(d1[0], d1[1], n * sizeof(float)) && !memcmp(d2[0], d2[1], n * sizeof(float)),
              "add backward n=%zu", n);

        /* add + ReLU: the same float operations as the reference, so bitwise equal (memcmp
         * also equates the NaNs: x[2] is one); x2[3] = -x[3] gives a sum of exactly 0 */
        x2[3] = -x[3];
        bt_add_relu_forward(y[0], x, x2, n);
        bt_add_relu_forward_ref_f32(y[1], x, x2, n);
        CHECK(!memcmp(y[0], y[1], n * sizeof(float)) && y[0][3] == 0 && isnan(y[0][2]),
              "add + ReLU forward n=%zu", n);
        bt_add_relu_backward(d1[0], d2[0], dy, y[0], n);
        bt_add_relu_backward_ref_f32(d1[1], d2[1], dy, y[1], n);
        bt_add_relu_backward(NULL, d2[0], dy, y[0], n);
        bt_add_relu_backward_ref_f32(NULL, d2[1], dy, y[1], n);
        CHECK(!memcmp(d1[0], d1[1], n * sizeof(float)) && !memcmp(d2[0], d2[1], n * sizeof(float)),
              "add + ReLU backward n=%zu", n);
        memcpy(d1[1], dy, n * sizeof(float)); /* in place: d = mask(d), then db += d */
        bt_add_relu_backward_inplace(d1[1], d2[0], y[0], n);
        bt_add_relu_backward_ref_f32(d2[1], NULL, dy, y[1], n);
        memset(d1[0], 0, n * sizeof(float));
        bt_add_relu_backward_ref_f32(d1[0], NULL, dy, y[1], n);
        CHECK(!memcmp(d1[0], d1[1], n * sizeof(float)) && !memcmp(d2[0], d2[1], n * sizeof(float)),
              "add + ReLU backward in place n=%zu", n);
        free(x), free(x2), free(dy);
        for (int i = 0; i < 2; i++) free(y[i]), free(d1[i]), free(d2[i]);
    }
}

static void test_opt_avgpool_xent(void) {
    tu_rng r = {700};
    for (int t = 0; t < 8; t++) {
        int N = randint(&r, 1, 5), C = randint(&r, 1, 7), HW = randint(&r, 1, 13) * randint(&r, 1, 13);
        size_t n = (size_t)N * C * HW, no = (size_t)N * C;
        float *x = FALLOC(n), *dy = FALLOC(no), *y[2] = {FALLOC(no), FALLOC(no)},
              *dx[2] = {FALLOC(n), FALLOC(n)};
        tu_fill_f32(x, n, &r, 1.0);
        tu_fill_f32(dy, no, &r, 1.0);
        tu_fill_f32(dx[0], n, &r, 0.5);
        memcpy(dx[1], dx[0], n * sizeof(float));
        bt_avgpool_forward(y[0], x, N, C, HW);
        bt_avgpool_forward_ref_f32(y[1], x, N, C, HW);
        bt_avgpool_backward(dx[0], dy, N, C, HW);
        bt_avgpool_backward_ref_f32(dx[1], dy, N, C, HW);
        close_f32("avgpool y", y[0], y[1], no, 1e-5);
        close_f32("avgpool dx", dx[0], dx[1], n, 1e-6);
        free(x), free(dy);
        for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]);

        int K = randint(&r, 1, 23);
        size_t nz = (size_t)N * K;
        float *z = FALLOC(nz), *p[2] = {FALLOC(nz), FALLOC(nz)}, *dz[2] = {FALLOC(nz), FALLOC(nz)},
              loss[2];
        int32_t *lab = IALLOC(N);
        tu_fill_f32(z, nz, &r, 3.0);
        z[0] += 100; /* expf(100) overflows float without the max subtraction */
        for (int i = 0; i < N; i++) lab[i] = randint(&r, 0, K - 1);
        tu_fill_f32(dz[0], nz, &r, 0.5);
        memcpy(dz[1], dz[0], nz * sizeof(float));
        CHECK(bt_xent_forward(&loss[0], p[0], z, lab, N, K) == 0, "%s", bt_error());
        CHECK(bt_xent_forward_ref_f32(&loss[1], p[1], z, lab, N, K) == 0, "%s", bt_error());
        bt_xent_backward(dz[0], p[0], lab, 1.3f, N, K);
        bt_xent_backward_ref_f32(dz[1], p[1], lab, 1.3f, N, K);
        CHECK(isfinite(loss[0]) && fabs(loss[0] - loss[1]) <= 1e-5 * fabs(loss[1]) + 1e-6,
              "xent loss %.9g vs %.9g", loss[0], loss[1]);
        close_f32("xent probs", p[0], p[1], nz, 1e-5);
        close_f32("xent dlogits", dz[0], dz[1], nz, 1e-5);
        free(z), free(lab);
        for (int i = 0; i < 2; i++) free(p[i]), free(dz[i]);
    }
}

/* ---- 3. PyTorch parity ---------------------------------------------------------------- */

static void wr_bin(const char *name, const void *p, size_t bytes) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s.bin", tu_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, bytes, f) == bytes, "cannot write %s", path);
    if (f) fclose(f);
}

/* Reads exactly `bytes` from DIR/t_NAME.bin into p; returns 0 on failure (marks the test). */
static int rd_bin(const char *name, void *p, size_t bytes) {
    char path[700];
    snprintf(path, sizeof path, "%s/t_%s.bin", tu_tmpdir(), name);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(p, 1, bytes, f) : 0;
    int extra = f ? fgetc(f) != EOF : 0;
    if (f) fclose(f);
    CHECK(got == bytes && !extra, "%s: expected %zu bytes, read %zu%s", path, bytes, got,
          extra ? " (file longer)" : "");
    return got == bytes && !extra;
}

/* Compares our float buffer with torch's float32 t_NAME.bin: exactly (ops without rounding:
 * max-pool, ReLU). */
static void vs_torch_exact(const char *name, const float *ours, size_t n) {
    float *t = FALLOC(n);
    if (rd_bin(name, t, n * sizeof(float))) close_f32(name, ours, t, n, 0);
    free(t);
}

/* Judges our float buffer against torch's float64 r_NAME.bin by torch's own float32 error
 * (t_NAME.bin): tu_parity_check, groups g(i) = (i / inner) % ngroups. */
static double vs_ref_worst; /* the largest ratio seen, printed by test_torch_parity */
static void vs_ref(const char *name, const float *ours, size_t n, size_t inner, size_t ngroups) {
    float *t = FALLOC(n);
    double *r = calloc(n ? n : 1, sizeof(double));
    int ok = rd_bin(name, t, n * sizeof(float));
    char path[700];
    snprintf(path, sizeof path, "%s/r_%s.bin", tu_tmpdir(), name);
    FILE *f = fopen(path, "rb");
    size_t got = f && r ? fread(r, sizeof(double), n, f) : 0;
    if (f) fclose(f);
    CHECK(got == n, "%s: expected %zu doubles, read %zu", path, n, got);
    if (ok && got == n) {
        double q = tu_parity_check(name, ours, r, t, n, inner, ngroups, TU_PARITY_K);
        if (getenv("TU_VERBOSE")) printf("    %-22s %.2f x PyTorch's float32 error\n", name, q);
        if (q > vs_ref_worst) vs_ref_worst = q;
    }
    free(t);
    free(r);
}

typedef struct {
    const char *tag;
    int N, C, HW;
    float *x, *dy, *g, *b, *rm, *rv; /* x, dy (N,C,HW); g, b, rm, rv (C) */
} bn_in;

static void bn_parity_inputs(bn_in *s, tu_rng *r) {
    size_t n = (size_t)s->N * s->C * s->HW;
    char nm[64];
    s->x = FALLOC(n), s->dy = FALLOC(n), s->g = FALLOC(s->C), s->b = FALLOC(s->C);
    s->rm = FALLOC(s->C), s->rv = FALLOC(s->C);
    tu_fill_f32(s->x, n, r, 2.0);
    for (size_t i = 0; i < n; i++) s->x[i] += 0.5f * (float)((i / s->HW) % s->C);
    tu_fill_f32(s->dy, n, r, 1.0);
    tu_fill_f32(s->g, s->C, r, 1.0);
    tu_fill_f32(s->b, s->C, r, 1.0);
    tu_fill_f32(s->rm, s->C, r, 0.5);
    for (int i = 0; i < s->C; i++) s->rv[i] = 0.5f + (float)tu_uniform(r);
#define W(k, p, cnt)                                                                           \
    snprintf(nm, sizeof nm, "%s_%s", s->tag, k), wr_bin(nm, p, (cnt) * sizeof(float))
    W("x", s->x, n), W("dy", s->dy, n), W("g", s->g, s->C), W("b", s->b, s->C);
    W("rm", s->rm, s->C), W("rv", s->rv, s->C);
#undef W
}

/* Our BN in the three modes parity_norm.py runs, each judged against torch in float64 by
 * torch's own float32 error (tu_parity_check), per channel for y and dx. The training backward
 * k*(dy - mean(dy) - xhat*mean(dy*xhat)) cancels; both sides keep the channel sums in double
 * (torch's CPU accumulate type for float). TU_VERBOSE=1 prints the ratios. */
static void bn_parity_check(const bn_in *s) {
    size_t n = (size_t)s->N * s->C * s->HW;
    int C = s->C;
    float *y = FALLOC(n), *dx = FALLOC(n), *mean = FALLOC(C), *rstd = FALLOC(C),
          *rm = FALLOC(C), *rv = FALLOC(C), *dg = FALLOC(C), *db = FALLOC(C);
    /* train_relu, eval_relu: batch norm + ReLU against the module and nn.ReLU */
    const char *modes[] = {"train", "eval", "train_na", "train_relu", "eval_relu"};
    char nm[64];
    for (int m = 0; m < 5; m++) {
        int training = m != 1 && m != 4, affine = m != 2, relu = m >= 3;
        memcpy(rm, s->rm, C * sizeof(float)), memcpy(rv, s->rv, C * sizeof(float));
        memset(dx, 0, n * sizeof(float)), memset(dg, 0, C * sizeof(float));
        memset(db, 0, C * sizeof(float));
        int rc = (relu ? bt_batchnorm_relu_forward : bt_batchnorm_forward)(
            y, mean, rstd, s->x, affine ? s->g : NULL, affine ? s->b : NULL, affine ? rm : NULL,
            affine ? rv : NULL, s->N, C, s->HW, training, 0.1f, 1e-5f);
        CHECK(rc == 0, "%s %s: %s", s->tag, modes[m], bt_error());
        if (relu)
            bt_batchnorm_relu_backward(dx, dg, db, s->dy, y, s->x, s->g, mean, rstd, s->N, C,
                                       s->HW, training);
        else
            bt_batchnorm_backward(dx, affine ? dg : NULL, affine ? db : NULL, s->dy, s->x,
                                  affine ? s->g : NULL, mean, rstd, s->N, C, s->HW, training);
#define V(k, p, cnt, inner, ng) snprintf(nm, sizeof nm, "%s_%s_%s", s->tag, modes[m], k), vs_ref(nm, p, cnt, inner, ng)
        V("y", y, n, s->HW, C);
        V("dx", dx, n, s->HW, C);
        if (affine) {
            V("dg", dg, C, C, 1), V("db", db, C, C, 1);
            V("rm", rm, C, C, 1), V("rv", rv, C, C, 1);
        }
        if (training) V("mean", mean, C, C, 1), V("rstd", rstd, C, C, 1);
#undef V
    }
    free(y), free(dx), free(mean), free(rstd), free(rm), free(rv), free(dg), free(db);
    free(s->x), free(s->dy), free(s->g), free(s->b), free(s->rm), free(s->rv);
}

static void test_torch_parity(void) {
    if (tu_skip_without_torch()) return;
    tu_rng r = {800};
    bn_in bn2 = {"bn2d", 3, 5, 7 * 9, 0, 0, 0, 0, 0, 0}, bn1 = {"bn1d", 6, 11, 1, 0, 0, 0, 0, 0, 0};
    bn_parity_inputs(&bn2, &r);
    bn_parity_inputs(&bn1, &r);

    const int PN = 2, PC = 3, PH = 9, PW = 7, OH = 5, OW = 4;
    size_t np = (size_t)PN * PC * PH * PW, no = (size_t)PN * PC * OH * OW;
    float *px = FALLOC(np), *pq = FALLOC(np), *pdy = FALLOC(no), *pqdy = FALLOC(no),
          *ady = FALLOC(PN * PC);
    tu_fill_f32(px, np, &r, 1.0);
    for (size_t i = 0; i < np; i++) pq[i] = roundf(px[i] * 2) / 2; /* ties */
    tu_fill_f32(pdy, no, &r, 1.0);
    tu_fill_f32(pqdy, no, &r, 1.0);
    tu_fill_f32(ady, PN * PC, &r, 1.0);
    wr_bin("pool_x", px, np * 4), wr_bin("poolq_x", pq, np * 4);
    wr_bin("pool_dy", pdy, no * 4), wr_bin("poolq_dy", pqdy, no * 4);
    wr_bin("avg_dy", ady, PN * PC * 4);

    const size_t nr = 301;
    float *rx = FALLOC(nr), *rdy = FALLOC(nr);
    tu_fill_f32(rx, nr, &r, 1.0);
    rx[5] = 0.0f; /* the kink: torch's gradient there is 0 */
    tu_fill_f32(rdy, nr, &r, 1.0);
    wr_bin("relu_x", rx, nr * 4), wr_bin("relu_dy", rdy, nr * 4);
    /* add + ReLU on the same length: a = -b at one element (the kink: gradient 0) */
    float *aa = FALLOC(nr), *ab = FALLOC(nr), *ady2 = FALLOC(nr);
    tu_fill_f32(aa, nr, &r, 1.0);
    tu_fill_f32(ab, nr, &r, 1.0);
    tu_fill_f32(ady2, nr, &r, 1.0);
    ab[7] = -aa[7];
    wr_bin("addrelu_a", aa, nr * 4), wr_bin("addrelu_b", ab, nr * 4);
    wr_bin("addrelu_dy", ady2, nr * 4);

    const int XN = 9, XK = 13;
    float *z = FALLOC(XN * XK), dloss = 0.8f;
    int32_t lab[9];
    tu_fill_f32(z, XN * XK, &r, 3.0);
    z[2] += 100;
    for (int i = 0; i < XN; i++) lab[i] = randint(&r, 0, XK - 1);
    lab[0] = 0, lab[1] = XK - 1;
    wr_bin("xent_z", z, XN * XK * 4), wr_bin("xent_lab", lab, sizeof lab);
    wr_bin("xent_dloss", &dloss, 4);

    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s tests/py/parity_norm.py '%s' bn2d=%d,%d,7,9 bn1d=%d,%d pool=%d,%d,%d,%d "
             "relu=%zu xent=%d,%d mom=0.1 eps=1e-5 addrelu=%zu",
             tu_python(), tu_tmpdir(), bn2.N, bn2.C, bn1.N, bn1.C, PN, PC, PH, PW, nr, XN, XK, nr);
    int rc = system(cmd);
    CHECK(rc == 0, "python parity script failed (rc %d): %s", rc, cmd);
    if (rc == 0) {
        bn_parity_check(&bn2);
        bn_parity_check(&bn1);

        const char *tags[2] = {"pool", "poolq"};
        float *xs[2] = {px, pq}, *dys[2] = {pdy, pqdy};
        float *y = FALLOC(no), *dx = FALLOC(np);
        int32_t *am = IALLOC(no), *tam = IALLOC(no);
        char nm[64];
        for (int t = 0; t < 2; t++) {
            memset(dx, 0, np * 4);
            CHECK(bt_maxpool2d_forward(y, am, xs[t], PN, PC, PH, PW, 3, 2, 1) == 0, "%s",
                  bt_error());
            bt_maxpool2d_backward(dx, dys[t], am, PN, PC, PH, PW, OH, OW);
            snprintf(nm, sizeof nm, "%s_y", tags[t]), vs_torch_exact(nm, y, no);
            snprintf(nm, sizeof nm, "%s_dx", tags[t]), vs_torch_exact(nm, dx, np);
            snprintf(nm, sizeof nm, "%s_idx", tags[t]);
            if (rd_bin(nm, tam, no * 4))
                CHECK(!memcmp(am, tam, no * 4), "%s: argmax differs from torch's indices",
                      tags[t]);
        }
        memset(dx, 0, np * 4);
        bt_avgpool_forward(y, px, PN, PC, PH * PW);
        bt_avgpool_backward(dx, ady, PN, PC, PH * PW);
        vs_ref("avg_y", y, PN * PC, PN * PC, 1), vs_ref("avg_dx", dx, np, np, 1);
        free(y), free(dx), free(am), free(tam);

        float *ry = FALLOC(nr), *rdx = FALLOC(nr);
        bt_relu_forward(ry, rx, nr);
        bt_relu_backward(rdx, rdy, ry, nr);
        vs_torch_exact("relu_y", ry, nr), vs_torch_exact("relu_dx", rdx, nr);
        /* add + ReLU: one float add and a selection, exactly torch's float32 */
        float *ay = FALLOC(nr), *ada = FALLOC(nr), *adb = FALLOC(nr);
        bt_add_relu_forward(ay, aa, ab, nr);
        bt_add_relu_backward(ada, adb, ady2, ay, nr);
        vs_torch_exact("addrelu_y", ay, nr), vs_torch_exact("addrelu_da", ada, nr);
        vs_torch_exact("addrelu_db", adb, nr);
        free(ay), free(ada), free(adb);
        free(ry), free(rdx);

        float loss, *p = FALLOC(XN * XK), *dz = FALLOC(XN * XK);
        CHECK(bt_xent_forward(&loss, p, z, lab, XN, XK) == 0, "%s", bt_error());
        bt_xent_backward(dz, p, lab, dloss, XN, XK);
        vs_ref("xent_loss", &loss, 1, 1, 1);
        vs_ref("xent_probs", p, XN * XK, XK, XN), vs_ref("xent_dz", dz, XN * XK, XK, XN);
        free(p), free(dz);
        printf("  batch norm (and + ReLU), average pool, cross-entropy: error %.2f x PyTorch's "
               "float32 error (max-pool, ReLU, add + ReLU: exact)\n", vs_ref_worst);
    }
    free(px), free(pq), free(pdy), free(pqdy), free(ady), free(rx), free(rdy), free(z);
    free(aa), free(ab), free(ady2);
}

/* ---- 4. errors ------------------------------------------------------------------------ */

static void test_errors(void) {
    float x[12] = {0}, y[12], mean[3], rstd[3], rm[3] = {0}, rv[3] = {1, 1, 1}, p[12], loss;
    double xd[12] = {0}, yd[12], md[3], rd[3];
    int32_t am[12];

    bt_clear_error();
    int rc = bt_batchnorm_forward(y, mean, rstd, x, NULL, NULL, rm, rv, 1, 3, 1, 1, 0.1f, 1e-5f);
    CHECK(rc == BT_EINVAL && strstr(bt_error(), "Expected more than 1 value per channel when training"),
          "BN one value: rc %d, '%s'", rc, bt_error());
    bt_clear_error();
    rc = bt_batchnorm_forward_ref_f64(yd, md, rd, xd, NULL, NULL, NULL, NULL, 1, 3, 1, 1, 0.1, 1e-5);
    CHECK(rc == BT_EINVAL && strstr(bt_error(), "Expected more than 1 value per channel"),
          "BN ref one value: rc %d, '%s'", rc, bt_error());
    bt_clear_error();
    rc = bt_batchnorm_relu_forward(y, mean, rstd, x, NULL, NULL, rm, rv, 1, 3, 1, 1, 0.1f, 1e-5f);
    CHECK(rc == BT_EINVAL && strstr(bt_error(), "Expected more than 1 value per channel when training"),
          "BN + ReLU one value: rc %d, '%s'", rc, bt_error());
    bt_clear_error();
    rc = bt_batchnorm_relu_forward(y, mean, rstd, x, NULL, NULL, NULL, NULL, 2, 3, 2, 0, 0.1f, 1e-5f);
    CHECK(rc == BT_EINVAL && bt_error()[0], "BN + ReLU eval without running stats: rc %d", rc);
    rc = bt_batchnorm_forward(y, mean, rstd, x, NULL, NULL, rm, rv, 1, 3, 1, 0, 0.1f, 1e-5f);
    CHECK(rc == BT_OK, "BN eval with one value per channel is allowed: %s", bt_error());
    bt_clear_error();
    rc = bt_batchnorm_forward(y, mean, rstd, x, NULL, NULL, NULL, NULL, 2, 3, 2, 0, 0.1f, 1e-5f);
    CHECK(rc == BT_EINVAL && bt_error()[0], "BN eval without running stats: rc %d", rc);

    int32_t lab[2] = {1, 4};
    bt_clear_error();
    rc = bt_xent_forward(&loss, p, x, lab, 2, 4);
    CHECK(rc == BT_EINVAL && strstr(bt_error(), "label 4") && strstr(bt_error(), "row 1"),
          "xent label 4 of K=4: rc %d, '%s'", rc, bt_error());
    lab[0] = -1;
    bt_clear_error();
    rc = bt_xent_forward_ref_f32(&loss, p, x, lab, 2, 4);
    CHECK(rc == BT_EINVAL && strstr(bt_error(), "label -1") && strstr(bt_error(), "row 0"),
          "xent ref label -1: rc %d, '%s'", rc, bt_error());

    /* kernel larger than the padded input; pad > k/2; stride 0; negative pad */
    const int bad[][4] = {{2, 5, 1, 1}, {3, 3, 1, 2}, {3, 3, 0, 1}, {3, 2, 1, -1}};
    const char *why[] = {"does not fit", "at most half", "stride", "pad >= 0"};
    for (int i = 0; i < 4; i++) {
        bt_clear_error();
        rc = bt_maxpool2d_forward(y, am, x, 1, 1, 3, bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
        CHECK(rc == BT_EINVAL && strstr(bt_error(), why[i]), "maxpool W=%d k=%d s=%d p=%d: rc %d '%s'",
              bad[i][0], bad[i][1], bad[i][2], bad[i][3], rc, bt_error());
        bt_clear_error();
        rc = bt_maxpool2d_forward_ref_f64(yd, am, xd, 1, 1, 3, bad[i][0], bad[i][1], bad[i][2],
                                          bad[i][3]);
        CHECK(rc == BT_EINVAL && bt_error()[0], "maxpool ref case %d: rc %d", i, rc);
    }
    rc = bt_maxpool2d_forward(y, am, x, 1, 1, 3, 4, 3, 2, 1);
    CHECK(rc == BT_OK, "valid maxpool rejected: %s", bt_error());
}

int main(void) {
    TEST_RUN(test_fd_batchnorm);
    TEST_RUN(test_fd_batchnorm_relu);
    TEST_RUN(test_fd_maxpool);
    TEST_RUN(test_fd_elementwise);
    TEST_RUN(test_fd_xent);
    TEST_RUN(test_opt_batchnorm);
    TEST_RUN(test_opt_batchnorm_relu);
    TEST_RUN(test_opt_batchnorm_accuracy);
    TEST_RUN(test_opt_maxpool);
    TEST_RUN(test_maxpool_ties);
    TEST_RUN(test_opt_elementwise);
    TEST_RUN(test_opt_avgpool_xent);
    TEST_RUN(test_torch_parity);
    TEST_RUN(test_errors);
    return tu_finish();
}
