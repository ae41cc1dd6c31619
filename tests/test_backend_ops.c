/* Every op of every compiled backend against the float64 reference, in the spirit of ggml's
 * test-backend-ops: seeded random shapes (odd sizes, stride 2, padding, the Winograd shapes),
 * forward and backward, in backend memory reached only through the backend's own copies.
 *
 * - The `+=` contract: every gradient output starts from random values g0 and must end at
 *   g0 + gradient.
 * - The first-writer flag of conv2d_backward and the batch-norm backwards: their input
 *   gradient over NaN with the flag 1 must come back with the bits of the same call over
 *   zeros with the flag 0 (the parameter gradients accumulating the same bits either way).
 * - Stray writes: every buffer an op gets has GUARD floats of a NaN pattern before and after
 *   it, which must come back untouched (inputs too: an op must not write them).
 * - An entry of the table that is NULL is a failure, not a skip: the model and trainer use
 *   every one of them.
 * - Tolerance, per element: |got - ref| <= F * (K + c) * u * M + 1e-30, where u = 2^-24 is
 *   float32's unit roundoff, K the length of the longest sum behind the element, and M the
 *   sum of the absolute values of its terms (the float64 op run on |inputs| where the op is
 *   linear in them; for batch norm, the loss and LARS the magnitudes written beside them).
 *   (K + c) * u * M is the classical worst-case bound of a float32 sum (Higham's gamma_K
 *   times the sum of |terms|); c counts the few roundings after the sum. F = 2 covers the
 *   Winograd F(2x2,3x3) path, whose transforms add and subtract up to 4 terms with
 *   coefficients <= 1 on each of the input, weight and output tiles. Selections (ReLU,
 *   max pool) must be exact. Nothing here is tuned to one machine: the bound holds for any
 *   summation order.
 * TU_VERBOSE=1 prints the worst error/tolerance ratio of every check. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/backend.h"
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/loss.h"
#include "barlow/ops_ref.h"
#include "barlow/optim.h"
#include "testutil.h"

#define GUARD 16
#define U 5.9604644775390625e-8 /* 2^-24 */
static const uint32_t guard_bits = 0x7fc0beefu;

static bt_backend *be; /* the backend under test */
static const char *bname;

/* A buffer of n 4-byte elements in backend memory with guards, and its host image. */
typedef struct {
    size_t n;
    float *h;  /* (n + 2*GUARD) host image; h + GUARD is the data */
    void *d;   /* (n + 2*GUARD) backend memory */
} buf;

static buf bnew(size_t n) {
    buf b = {n, tu_xcalloc(n + 2 * GUARD, sizeof(float)), NULL};
    b.d = be->ops->alloc(be, (n + 2 * GUARD) * sizeof(float));
    if (!b.d) {
        fprintf(stderr, "  %s: alloc of %zu floats failed: %s\n", bname, n, bt_error());
        exit(2);
    }
    for (size_t i = 0; i < GUARD; i++) {
        memcpy(b.h + i, &guard_bits, 4);
        memcpy(b.h + GUARD + n + i, &guard_bits, 4);
    }
    return b;
}
static void bfree(buf *b) {
    be->ops->free(be, b->d);
    free(b->h);
}
static float *H(const buf *b) { return b->h + GUARD; }
static float *D(const buf *b) { return (float *)b->d + GUARD; }
static int32_t *DI(const buf *b) { return (int32_t *)b->d + GUARD; }
static void up(buf *b) {
    CHECK(be->ops->to_device(be, b->d, b->h, (b->n + 2 * GUARD) * 4) == BT_OK, "%s to_device", bname);
}
static void down(buf *b) {
    CHECK(be->ops->to_host(be, b->h, b->d, (b->n + 2 * GUARD) * 4) == BT_OK, "%s to_host", bname);
}
static buf brand(size_t n, tu_rng *r, double scale) {
    buf b = bnew(n);
    tu_fill_f32(H(&b), n, r, scale);
    up(&b);
    return b;
}
static int guards_ok(const char *op, const char *what, const buf *b) {
    for (size_t i = 0; i < GUARD; i++)
        if (memcmp(b->h + i, &guard_bits, 4) || memcmp(b->h + GUARD + b->n + i, &guard_bits, 4)) {
            CHECK(0, "%s %s %s: write outside the buffer (guard %s %zu)", bname, op, what,
                  memcmp(b->h + i, &guard_bits, 4) ? "before" : "after", i);
            return 0;
        }
    return 1;
}
/* An input must come back exactly as it went in (and its guards intact). */
static void unchanged(const char *op, const char *what, buf *b) {
    float *keep = tu_xcalloc(b->n, sizeof(float));
    memcpy(keep, H(b), b->n * 4);
    down(b);
    guards_ok(op, what, b);
    CHECK(!memcmp(keep, H(b), b->n * 4), "%s %s: input %s was written", bname, op, what);
    free(keep);
}

static double *f64(const float *x, size_t n) {
    double *y = tu_xcalloc(n ? n : 1, sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}
static double *f64abs(const float *x, size_t n) {
    double *y = f64(x, n);
    for (size_t i = 0; i < n; i++) y[i] = fabs(y[i]);
    return y;
}

/* Downloads b and checks every element against ref within F*(K+c)*u*mag (see the top). */
static void check(const char *op, const char *what, buf *b, const double *ref, const double *mag,
                  double K, double F) {
    down(b);
    if (!guards_ok(op, what, b)) return;
    double worst = 0;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < b->n; i++) {
        double got = H(b)[i], tol = F * K * U * mag[i] + 1e-30, d = fabs(got - ref[i]);
        if (!(d <= tol)) {
            if (!bad++) first = i;
        }
        if (d / tol > worst) worst = d / tol;
    }
    if (getenv("TU_VERBOSE")) printf("    %s %-28s %-10s worst |d|/tol %.3g\n", bname, op, what, worst);
    CHECK(!bad, "%s %s %s: %zu of %zu elements out of tolerance; first [%zu] got %.9g ref %.9g "
          "tol %.3g", bname, op, what, bad, b->n, first, H(b)[first], ref[first],
          F * K * U * mag[first]);
}
/* Exact results (selections): got must equal ref rounded to float. */
static void check_exact(const char *op, const char *what, buf *b, const double *ref) {
    down(b);
    if (!guards_ok(op, what, b)) return;
    size_t bad = 0;
    for (size_t i = 0; i < b->n; i++) bad += H(b)[i] != (float)ref[i];
    CHECK(!bad, "%s %s %s: %zu of %zu elements differ from the exact result", bname, op, what,
          bad, b->n);
}

static int irand(tu_rng *r, int lo, int hi) { return lo + (int)(tu_next(r) % (uint64_t)(hi - lo + 1)); }

/* ---- the table is complete ---- */

static void test_table_complete(void) {
    const bt_backend_ops *o = be->ops;
    const void *const entries[] = {
        (const void *)o->destroy, (const void *)o->alloc, (const void *)o->free,
        (const void *)o->host_alloc, (const void *)o->host_free, (const void *)o->to_device,
        (const void *)o->to_host, (const void *)o->copy, (const void *)o->zero,
        (const void *)o->sync, (const void *)o->scratch, (const void *)o->plan_new,
        (const void *)o->plan_free, (const void *)o->conv2d_forward,
        (const void *)o->conv2d_backward, (const void *)o->batchnorm_forward,
        (const void *)o->batchnorm_backward, (const void *)o->batchnorm_forward_sync,
        (const void *)o->batchnorm_backward_sync, (const void *)o->relu_forward,
        (const void *)o->relu_backward, (const void *)o->relu_backward_inplace,
        (const void *)o->add_forward, (const void *)o->add_backward,
        (const void *)o->maxpool2d_forward, (const void *)o->maxpool2d_backward,
        (const void *)o->avgpool_forward, (const void *)o->avgpool_backward,
        (const void *)o->linear_forward, (const void *)o->linear_backward,
        (const void *)o->xent_forward, (const void *)o->xent_backward, (const void *)o->bt_loss,
        (const void *)o->bt_loss_sync, (const void *)o->lars_step,
        (const void *)o->aug_pixel, (const void *)o->batchnorm_relu_forward_sync,
        (const void *)o->batchnorm_relu_backward_sync, (const void *)o->add_relu_forward,
        (const void *)o->add_relu_backward, (const void *)o->add_relu_backward_inplace,
    };
    int n = (int)(sizeof entries / sizeof *entries);
    CHECK(n * sizeof(void *) == sizeof(bt_backend_ops) - sizeof(const char *),
          "bt_backend_ops has entries this test does not list: add them");
    for (int i = 0; i < n; i++) CHECK(entries[i] != NULL, "%s: table entry %d is missing", bname, i);
    CHECK(o->name && *o->name, "backend without a name");
}

/* ---- memory: copies, zero, scratch, host memory ---- */

static void test_memory(void) {
    tu_rng r = {11};
    buf a = brand(1001, &r, 1), b = bnew(1001);
    up(&b);
    CHECK(be->ops->copy(be, D(&b), D(&a), a.n * 4) == BT_OK, "copy");
    down(&b);
    guards_ok("copy", "dst", &b);
    CHECK(!memcmp(H(&a), H(&b), a.n * 4), "%s copy: contents differ", bname);
    CHECK(be->ops->zero(be, D(&b) + 100, 37 * 4) == BT_OK, "zero");
    down(&b);
    int ok = 1;
    for (size_t i = 0; i < b.n; i++) ok &= H(&b)[i] == (i >= 100 && i < 137 ? 0.0f : H(&a)[i]);
    CHECK(ok, "%s zero: wrong range zeroed", bname);
    /* Large copies and fills (split over threads on the CPU, in pieces that need not divide
     * the length): every byte, nothing outside the range, on 1, 2 and 3 threads. */
    const int saved = bt_threads();
    for (int nt = 1; nt <= 3; nt++) {
        bt_set_threads(nt);
        buf la = brand(700003, &r, 1), lb = bnew(700003);
        up(&lb);
        CHECK(be->ops->copy(be, D(&lb), D(&la), la.n * 4) == BT_OK, "large copy");
        down(&lb);
        guards_ok("large copy", "dst", &lb);
        CHECK(!memcmp(H(&la), H(&lb), la.n * 4), "%s large copy, %d threads: contents differ",
              bname, nt);
        const size_t z0 = 1001, zn = 600011;
        CHECK(be->ops->zero(be, D(&lb) + z0, zn * 4) == BT_OK, "large zero");
        down(&lb);
        guards_ok("large zero", "dst", &lb);
        size_t wrong = 0;
        for (size_t i = 0; i < lb.n; i++)
            wrong += H(&lb)[i] != (i >= z0 && i < z0 + zn ? 0.0f : H(&la)[i]);
        CHECK(!wrong, "%s large zero, %d threads: %zu elements wrong", bname, nt, wrong);
        bfree(&la);
        bfree(&lb);
    }
    bt_set_threads(saved);
    CHECK(be->ops->sync(be) == BT_OK, "sync");
    void *s = be->ops->scratch(be, 12345);
    CHECK(s != NULL && ((uintptr_t)s & 63) == 0, "%s scratch: %p not 64-byte aligned", bname, s);
    float *hm = be->ops->host_alloc(be, 64 * sizeof(float));
    CHECK(hm != NULL, "host_alloc");
    if (hm) {
        for (int i = 0; i < 64; i++) hm[i] = (float)i; /* host memory: writable from here */
        CHECK(be->ops->to_device(be, D(&b), hm, 64 * 4) == BT_OK, "to_device from host_alloc");
        down(&b);
        CHECK(H(&b)[63] == 63.0f && H(&b)[64] == H(&a)[64], "%s to_device from host_alloc", bname);
        be->ops->host_free(be, hm);
    }
    bt_op_desc d = {.op = BT_OP_CONV2D, .N = 2, .C = 3, .H = 8, .W = 8, .K = 4, .k = 3,
                    .stride = 1, .pad = 1};
    bt_plan *pl = (bt_plan *)&d;
    CHECK(be->ops->plan_new(be, &d, &pl) == BT_OK, "plan_new: %s", bt_error());
    be->ops->plan_free(be, pl);
    bfree(&a);
    bfree(&b);
}

/* ---- conv2d ---- */

static void conv_case(tu_rng *r, int N, int C, int Hh, int W, int K, int k, int stride, int pad,
                      int bias) {
    bt_conv2d_desc d;
    if (bt_conv2d_desc_init(&d, N, C, Hh, W, K, k, k, stride, pad) != BT_OK) return;
    char op[96];
    snprintf(op, sizeof op, "conv %dx%dx%dx%d K%d k%d s%d p%d", N, C, Hh, W, K, k, stride, pad);
    size_t ni = (size_t)N * C * Hh * W, nw = (size_t)K * C * k * k, no = (size_t)N * K * d.OH * d.OW;
    buf x = brand(ni, r, 1), w = brand(nw, r, 0.5), b = brand(K, r, 0.5), y = bnew(no);
    up(&y);
    bt_op_desc od = {.op = BT_OP_CONV2D, .N = N, .C = C, .H = Hh, .W = W, .K = K, .k = k,
                     .stride = stride, .pad = pad};
    bt_plan *pl = NULL;
    CHECK(be->ops->plan_new(be, &od, &pl) == BT_OK, "%s plan: %s", op, bt_error());
    CHECK(be->ops->conv2d_forward(be, pl, D(&y), D(&x), D(&w), bias ? D(&b) : NULL, &d) == BT_OK,
          "%s forward: %s", op, bt_error());
    double *xd = f64(H(&x), ni), *wd = f64(H(&w), nw), *bd = f64(H(&b), K);
    double *xa = f64abs(H(&x), ni), *wa = f64abs(H(&w), nw), *ba = f64abs(H(&b), K);
    double *ref = tu_xcalloc(no, 8), *mag = tu_xcalloc(no, 8);
    bt_conv2d_forward_ref_f64(ref, xd, wd, bias ? bd : NULL, &d);
    bt_conv2d_forward_ref_f64(mag, xa, wa, bias ? ba : NULL, &d);
    check(op, "forward", &y, ref, mag, (double)C * k * k + 2, 2);
    unchanged(op, "x", &x);
    unchanged(op, "w", &w);

    /* backward, accumulating into random g0 */
    buf dy = brand(no, r, 1), dx = brand(ni, r, 1), dw = brand(nw, r, 1), db = brand(K, r, 1);
    double *dyd = f64(H(&dy), no), *dya = f64abs(H(&dy), no);
    double *rdx = f64(H(&dx), ni), *rdw = f64(H(&dw), nw), *rdb = f64(H(&db), K);
    double *mdx = f64abs(H(&dx), ni), *mdw = f64abs(H(&dw), nw), *mdb = f64abs(H(&db), K);
    CHECK(be->ops->conv2d_backward(be, pl, D(&dx), D(&dw), bias ? D(&db) : NULL, D(&dy), D(&x),
                                   D(&w), &d, 0) == BT_OK, "%s backward: %s", op, bt_error());
    bt_conv2d_backward_ref_f64(rdx, rdw, bias ? rdb : NULL, dyd, xd, wd, &d);
    bt_conv2d_backward_ref_f64(mdx, mdw, bias ? mdb : NULL, dya, xa, wa, &d);
    check(op, "dx", &dx, rdx, mdx, (double)K * k * k + 2, 2);
    check(op, "dw", &dw, rdw, mdw, (double)N * d.OH * d.OW + 2, 2);
    check(op, "db", &db, rdb, mdb, (double)N * d.OH * d.OW + 2, 1);
    unchanged(op, "dy", &dy);
    /* dinp NULL (the first layer): only dw */
    buf dw2 = brand(nw, r, 1);
    double *rdw2 = f64(H(&dw2), nw), *mdw2 = f64abs(H(&dw2), nw);
    CHECK(be->ops->conv2d_backward(be, pl, NULL, D(&dw2), NULL, D(&dy), D(&x), D(&w), &d, 0) ==
              BT_OK, "%s backward (dw only): %s", op, bt_error());
    bt_conv2d_backward_ref_f64(NULL, rdw2, NULL, dyd, xd, wd, &d);
    bt_conv2d_backward_ref_f64(NULL, mdw2, NULL, dya, xa, wa, &d);
    check(op, "dw only", &dw2, rdw2, mdw2, (double)N * d.OH * d.OW + 2, 2);
    be->ops->plan_free(be, pl);
    buf *bs[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db, &dw2};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
    double *ds[] = {xd, wd, bd, xa, wa, ba, ref, mag, dyd, dya, rdx, rdw, rdb, mdx, mdw, mdb, rdw2, mdw2};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) free(ds[i]);
}

static void test_conv2d(void) {
    tu_rng r = {1701};
    for (int t = 0; t < 10; t++) { /* small odd shapes, stride 1 or 2, padding 0..3 */
        int k = (int[]){1, 3, 5, 7}[irand(&r, 0, 3)];
        conv_case(&r, irand(&r, 1, 3), irand(&r, 1, 7), irand(&r, k, 13), irand(&r, k, 11),
                  irand(&r, 1, 9), k, irand(&r, 1, 2), irand(&r, 0, k / 2 + 1), t & 1);
    }
    /* the layers of the model: stems, 3x3 stride 1 (the Winograd path), 1x1 and 3x3 stride 2 */
    conv_case(&r, 2, 3, 17, 15, 16, 7, 2, 3, 0);
    conv_case(&r, 2, 3, 9, 11, 16, 3, 1, 1, 0);
    conv_case(&r, 2, 16, 9, 7, 17, 3, 1, 1, 0);
    conv_case(&r, 3, 24, 8, 8, 32, 3, 1, 1, 1);
    conv_case(&r, 2, 17, 9, 9, 33, 1, 2, 0, 0);
    conv_case(&r, 2, 16, 9, 9, 32, 3, 2, 1, 0);
}

/* ---- linear ---- */

static void linear_case(tu_rng *r, int N, int In, int O, int bias) {
    char op[64];
    snprintf(op, sizeof op, "linear %dx%d->%d%s", N, In, O, bias ? " +b" : "");
    size_t nx = (size_t)N * In, nw = (size_t)O * In, ny = (size_t)N * O;
    buf x = brand(nx, r, 1), w = brand(nw, r, 0.3), b = brand(O, r, 1), y = bnew(ny);
    up(&y);
    bt_op_desc od = {.op = BT_OP_LINEAR, .N = N, .C = In, .H = 1, .W = 1, .K = O};
    bt_plan *pl = NULL;
    CHECK(be->ops->plan_new(be, &od, &pl) == BT_OK, "%s plan", op);
    CHECK(be->ops->linear_forward(be, pl, D(&y), D(&x), D(&w), bias ? D(&b) : NULL, N, In, O) == BT_OK,
          "%s forward", op);
    double *xd = f64(H(&x), nx), *wd = f64(H(&w), nw), *bd = f64(H(&b), O);
    double *xa = f64abs(H(&x), nx), *wa = f64abs(H(&w), nw), *ba = f64abs(H(&b), O);
    double *ref = tu_xcalloc(ny, 8), *mag = tu_xcalloc(ny, 8);
    bt_linear_forward_ref_f64(ref, xd, wd, bias ? bd : NULL, N, In, O);
    bt_linear_forward_ref_f64(mag, xa, wa, bias ? ba : NULL, N, In, O);
    check(op, "forward", &y, ref, mag, In + 2, 1);
    unchanged(op, "x", &x);
    buf dy = brand(ny, r, 1), dx = brand(nx, r, 1), dw = brand(nw, r, 1), db = brand(O, r, 1);
    double *dyd = f64(H(&dy), ny), *dya = f64abs(H(&dy), ny);
    double *rdx = f64(H(&dx), nx), *rdw = f64(H(&dw), nw), *rdb = f64(H(&db), O);
    double *mdx = f64abs(H(&dx), nx), *mdw = f64abs(H(&dw), nw), *mdb = f64abs(H(&db), O);
    CHECK(be->ops->linear_backward(be, pl, D(&dx), D(&dw), bias ? D(&db) : NULL, D(&dy), D(&x),
                                   D(&w), N, In, O) == BT_OK, "%s backward", op);
    bt_linear_backward_ref_f64(rdx, rdw, bias ? rdb : NULL, dyd, xd, wd, N, In, O);
    bt_linear_backward_ref_f64(mdx, mdw, bias ? mdb : NULL, dya, xa, wa, N, In, O);
    check(op, "dx", &dx, rdx, mdx, O + 2, 1);
    check(op, "dw", &dw, rdw, mdw, N + 2, 1);
    check(op, "db", &db, rdb, mdb, N + 2, 1);
    be->ops->plan_free(be, pl);
    buf *bs[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
    double *ds[] = {xd, wd, bd, xa, wa, ba, ref, mag, dyd, dya, rdx, rdw, rdb, mdx, mdw, mdb};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) free(ds[i]);
}

static void test_linear(void) {
    tu_rng r = {2203};
    for (int t = 0; t < 6; t++)
        linear_case(&r, irand(&r, 1, 19), irand(&r, 1, 77), irand(&r, 1, 53), t & 1);
    linear_case(&r, 16, 64, 129, 0); /* projector-like */
}

/* ---- batch norm (plain and synchronised with no communicator), and batch norm + ReLU ---- */

/* relu: the fused batchnorm_relu_*_sync entries (sync ignored: they have only that form). Its
 * output is within the batch norm's bound of the reference (the ReLU is 1-Lipschitz); its
 * backward is judged against the reference run with the op's own output as the mask, as the
 * plain one is with the statistics the op saved (a float32 and a float64 output on either
 * side of 0 would otherwise be an O(dy) difference that says nothing about the op). */
static size_t bn_relu_seen[2]; /* the fused cases' outputs: masked (<= 0), passed */
static void bn_case(tu_rng *r, int N, int C, int HW, int training, int sync, int relu) {
    char op[80];
    snprintf(op, sizeof op, "batchnorm%s %dx%dx%d %s", relu ? "_relu_sync" : sync ? "_sync" : "",
             N, C, HW, training ? "train" : "eval");
    size_t n = (size_t)N * C * HW;
    const float mom = 0.1f, eps = 1e-5f;
    buf x = brand(n, r, 1.5), g = brand(C, r, 1), b = brand(C, r, 1), y = bnew(n);
    buf mean = bnew(C), rstd = bnew(C), rm = brand(C, r, 0.5), rv = bnew(C);
    for (int c = 0; c < C; c++) H(&rv)[c] = 0.5f + (float)tu_uniform(r);
    up(&rv);
    up(&y), up(&mean), up(&rstd);
    double *x64 = f64(H(&x), n), *g64 = f64(H(&g), C), *b64 = f64(H(&b), C);
    double *rm64 = f64(H(&rm), C), *rv64 = f64(H(&rv), C), *rm0 = f64(H(&rm), C), *rv0 = f64(H(&rv), C);
    double *yr = tu_xcalloc(n, 8), *mr = tu_xcalloc(C, 8), *sr = tu_xcalloc(C, 8);
    bt_op_desc od = {.op = relu ? BT_OP_BATCHNORM_RELU : BT_OP_BATCHNORM, .N = N, .C = C,
                     .H = HW, .W = 1, .sync = sync || relu};
    bt_plan *pl = NULL;
    CHECK(be->ops->plan_new(be, &od, &pl) == BT_OK, "%s plan", op);
    int rc = relu ? be->ops->batchnorm_relu_forward_sync(be, pl, D(&y), D(&mean), D(&rstd), D(&x),
                                                         D(&g), D(&b), D(&rm), D(&rv), N, C, HW,
                                                         training, mom, eps, NULL)
           : sync ? be->ops->batchnorm_forward_sync(be, pl, D(&y), D(&mean), D(&rstd), D(&x), D(&g),
                                                    D(&b), D(&rm), D(&rv), N, C, HW, training, mom,
                                                    eps, NULL)
                  : be->ops->batchnorm_forward(be, pl, D(&y), D(&mean), D(&rstd), D(&x), D(&g),
                                               D(&b), D(&rm), D(&rv), N, C, HW, training, mom, eps);
    CHECK(rc == BT_OK, "%s forward: %s", op, bt_error());
    (relu ? bt_batchnorm_relu_forward_ref_f64 : bt_batchnorm_forward_ref_f64)(
        yr, mr, sr, x64, g64, b64, rm64, rv64, N, C, HW, training, mom, eps);
    /* Magnitudes: y = (x - mean) * rstd * gamma + beta; the statistics are sums over M = N*HW
     * terms, so an element's error is within (M + c) u of |gamma| rstd (|x| + |mean|) +
     * |beta| (the variance's relative error reaches y halved through the square root). */
    double K = (double)N * HW + 8;
    double *ym = tu_xcalloc(n, 8), *mm = tu_xcalloc(C, 8), *sm = tu_xcalloc(C, 8);
    double *rmm = tu_xcalloc(C, 8), *rvm = tu_xcalloc(C, 8);
    for (int c = 0; c < C; c++) {
        double ax = 0, x2 = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < HW; j++) {
                double v = x64[((size_t)i * C + c) * HW + j];
                ax += fabs(v);
                x2 += v * v;
            }
        ax /= N * HW;
        x2 /= N * HW;
        mm[c] = ax;
        sm[c] = sr[c] * 2; /* rstd: relative error of the variance (terms >= 0) */
        rmm[c] = (1 - mom) * fabs(rm0[c]) + mom * ax;
        rvm[c] = (1 - mom) * fabs(rv0[c]) + mom * x2 * (N * HW > 1 ? (double)N * HW / (N * HW - 1) : 1) * 2;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < HW; j++) {
                size_t e = ((size_t)i * C + c) * HW + j;
                ym[e] = fabs(g64[c]) * sr[c] * (fabs(x64[e]) + fabs(mr[c])) * 2 + fabs(b64[c]);
            }
    }
    check(op, "y", &y, yr, ym, K, 1);
    if (training) {
        check(op, "mean", &mean, mr, mm, K, 1);
        check(op, "rstd", &rstd, sr, sm, K, 1);
        check(op, "running_mean", &rm, rm64, rmm, K, 1);
        check(op, "running_var", &rv, rv64, rvm, K, 1);
    } else {
        unchanged(op, "running_mean", &rm);
        unchanged(op, "running_var", &rv);
    }
    unchanged(op, "x", &x);

    /* backward: dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)) in training mode */
    down(&mean), down(&rstd), down(&y);
    double *mu = f64(H(&mean), C), *rs = f64(H(&rstd), C); /* the statistics the op saved */
    double *yo = f64(H(&y), n);                              /* and its output (the mask) */
    buf dy = brand(n, r, 1), dx = brand(n, r, 1), dg = brand(C, r, 1), db = brand(C, r, 1);
    double *dy64 = f64(H(&dy), n), *rdx = f64(H(&dx), n), *rdg = f64(H(&dg), C), *rdb = f64(H(&db), C);
    double *mdx = f64abs(H(&dx), n), *mdg = f64abs(H(&dg), C), *mdb = f64abs(H(&db), C);
    for (size_t e = 0; e < n && relu; e++) bn_relu_seen[yo[e] > 0]++;
    rc = relu ? be->ops->batchnorm_relu_backward_sync(be, pl, D(&dx), D(&dg), D(&db), D(&dy),
                                                      D(&y), D(&x), D(&g), D(&mean), D(&rstd), N,
                                                      C, HW, training, NULL, 0)
       : sync ? be->ops->batchnorm_backward_sync(be, pl, D(&dx), D(&dg), D(&db), D(&dy), D(&x), D(&g),
                                                 D(&mean), D(&rstd), N, C, HW, training, NULL, 0)
              : be->ops->batchnorm_backward(be, pl, D(&dx), D(&dg), D(&db), D(&dy), D(&x), D(&g),
                                            D(&mean), D(&rstd), N, C, HW, training);
    CHECK(rc == BT_OK, "%s backward: %s", op, bt_error());
    if (relu) {
        bt_batchnorm_relu_backward_ref_f64(rdx, rdg, rdb, dy64, yo, x64, g64, mu, rs, N, C, HW,
                                           training);
        for (size_t e = 0; e < n; e++) dy64[e] = yo[e] <= 0 ? 0 : dy64[e]; /* for the bounds */
    } else {
        bt_batchnorm_backward_ref_f64(rdx, rdg, rdb, dy64, x64, g64, mu, rs, N, C, HW, training);
    }
    for (int c = 0; c < C; c++) {
        double ady = 0, adyx = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < HW; j++) {
                size_t e = ((size_t)i * C + c) * HW + j;
                double xh = (x64[e] - mu[c]) * rs[c];
                ady += fabs(dy64[e]);
                adyx += fabs(dy64[e] * xh);
            }
        mdg[c] += adyx;
        mdb[c] += ady;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < HW; j++) {
                size_t e = ((size_t)i * C + c) * HW + j;
                double xh = fabs((x64[e] - mu[c]) * rs[c]);
                mdx[e] += fabs(g64[c]) * rs[c] *
                          (fabs(dy64[e]) + (training ? (ady + xh * adyx) / (N * HW) : 0));
            }
    }
    check(op, "dx", &dx, rdx, mdx, K, 1);
    check(op, "dgamma", &dg, rdg, mdg, K, 1);
    check(op, "dbeta", &db, rdb, mdb, K, 1);
    unchanged(op, "dy", &dy); /* the fused op masks dy inside its loops, not in the buffer */
    unchanged(op, "y", &y);
    be->ops->plan_free(be, pl);
    buf *bs[] = {&x, &g, &b, &y, &mean, &rstd, &rm, &rv, &dy, &dx, &dg, &db};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
    double *ds[] = {x64, g64, b64, rm64, rv64, rm0, rv0, yr, mr, sr, ym, mm, sm, rmm, rvm, mu, rs,
                    yo, dy64, rdx, rdg, rdb, mdx, mdg, mdb};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) free(ds[i]);
}

static void test_batchnorm(void) {
    tu_rng r = {3307};
    for (int t = 0; t < 8; t++)
        bn_case(&r, irand(&r, 2, 5), irand(&r, 1, 9), irand(&r, 1, 37), t % 4 != 3, t & 1, 0);
    bn_case(&r, 16, 65, 1, 1, 1, 0); /* the projector's BatchNorm1d */
    bn_case(&r, 1, 3, 7, 1, 0, 0);   /* N = 1, several pixels */
    tu_rng q = {3308}; /* batch norm + ReLU: the same kinds of shapes */
    for (int t = 0; t < 6; t++)
        bn_case(&q, irand(&q, 2, 5), irand(&q, 1, 9), irand(&q, 1, 37), t % 3 != 2, 1, 1);
    bn_case(&q, 16, 65, 1, 1, 1, 1); /* the projector's BatchNorm1d + ReLU */
    bn_case(&q, 16, 65, 1, 0, 1, 1);
    CHECK(bn_relu_seen[0] > 0 && bn_relu_seen[1] > 0, "batch norm + ReLU cases: %zu outputs "
          "masked, %zu passed: both must occur", bn_relu_seen[0], bn_relu_seen[1]);
}

/* ---- first writer: the input-gradient flag (1: the op overwrites dx) ---- */

static const uint32_t nan_bits = 0x7fc0f00du; /* not the guards' pattern */

/* n floats in backend memory: NaN (nan) or +0. */
static buf bfill(size_t n, int nan) {
    buf b = bnew(n);
    const float z = 0.0f;
    for (size_t i = 0; i < n; i++) memcpy(H(&b) + i, nan ? (const void *)&nan_bits : &z, 4);
    up(&b);
    return b;
}
/* A second buffer with a's contents. */
static buf btwin(buf *a) {
    buf b = bnew(a->n);
    memcpy(H(&b), H(a), a->n * 4);
    up(&b);
    return b;
}
/* got and want, downloaded, hold the same bits (and their guards). */
static void same_bits(const char *op, const char *what, buf *got, buf *want) {
    down(got), down(want);
    if (!guards_ok(op, what, got) || !guards_ok(op, what, want)) return;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got->n; i++)
        if (memcmp(H(got) + i, H(want) + i, 4) && !bad++) first = i;
    CHECK(!bad, "%s %s %s: %zu of %zu elements differ from the += run over zeros; first [%zu] "
          "%a vs %a", bname, op, what, bad, got->n, first, H(got)[first], H(want)[first]);
}

/* conv2d_backward with dinp_set 1 over NaN against dinp_set 0 over zeros, dw and db from the
 * same random values in both. */
static void conv_first_case(tu_rng *r, const char *algo, int N, int C, int Hh, int W, int K,
                            int k, int stride, int pad) {
    bt_conv2d_desc d;
    CHECK(bt_conv2d_desc_init(&d, N, C, Hh, W, K, k, k, stride, pad) == BT_OK, "desc: %s",
          bt_error());
    char op[112];
    snprintf(op, sizeof op, "conv first writer %s %dx%dx%dx%d K%d k%d s%d p%d t%d", algo, N, C,
             Hh, W, K, k, stride, pad, bt_threads());
    size_t ni = (size_t)N * C * Hh * W, nw = (size_t)K * C * k * k, no = (size_t)N * K * d.OH * d.OW;
    buf x = brand(ni, r, 1), w = brand(nw, r, 0.5), dy = brand(no, r, 1);
    buf dxs = bfill(ni, 1), dxa = bfill(ni, 0), dw1 = brand(nw, r, 1), dw2 = btwin(&dw1);
    buf db1 = brand(K, r, 1), db2 = btwin(&db1);
    bt_op_desc od = {.op = BT_OP_CONV2D, .N = N, .C = C, .H = Hh, .W = W, .K = K, .k = k,
                     .stride = stride, .pad = pad};
    bt_plan *pl = NULL;
    CHECK(be->ops->plan_new(be, &od, &pl) == BT_OK, "%s plan: %s", op, bt_error());
    CHECK(be->ops->conv2d_backward(be, pl, D(&dxa), D(&dw1), D(&db1), D(&dy), D(&x), D(&w), &d,
                                   0) == BT_OK, "%s +=: %s", op, bt_error());
    CHECK(be->ops->conv2d_backward(be, pl, D(&dxs), D(&dw2), D(&db2), D(&dy), D(&x), D(&w), &d,
                                   1) == BT_OK, "%s set: %s", op, bt_error());
    same_bits(op, "dx", &dxs, &dxa);
    same_bits(op, "dw", &dw2, &dw1);
    same_bits(op, "db", &db2, &db1);
    unchanged(op, "dy", &dy);
    be->ops->plan_free(be, pl);
    buf *bs[] = {&x, &w, &dy, &dxs, &dxa, &dw1, &dw2, &db1, &db2};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
}

/* The Winograd shapes (3x3 s1 p1, >= 16 channels, >= 128 output pixels over the batch) on
 * the backend's own setting, then on backends of the same name made with F(4x4) and with
 * im2col only; the im2col shapes: stride 2 (phase planes), pointwise (one image: the GEMM
 * straight into dinp; several: col2im), 5x5, stride 3, the stem. Each on 1 and 3 threads
 * (the single-thread and the parallel loops of conv2d.c). */
static void conv_first_shapes(tu_rng *r, const char *algo) {
    conv_first_case(r, algo, 2, 16, 9, 9, 16, 3, 1, 1);
    conv_first_case(r, algo, 2, 16, 9, 7, 17, 3, 1, 1);
    conv_first_case(r, algo, 3, 24, 8, 8, 32, 3, 1, 1);
}
static void test_conv_first_writer(void) {
    tu_rng r = {1913};
    const int saved = bt_threads();
    for (int nt = 1; nt <= 3; nt += 2) {
        bt_set_threads(nt);
        conv_first_shapes(&r, "default");
        conv_first_case(&r, "im2col", 2, 16, 9, 9, 32, 3, 2, 1);
        conv_first_case(&r, "im2col", 3, 17, 10, 9, 16, 3, 2, 1);
        conv_first_case(&r, "im2col", 1, 17, 9, 9, 33, 1, 1, 0);
        conv_first_case(&r, "im2col", 3, 17, 9, 9, 33, 1, 1, 0);
        conv_first_case(&r, "im2col", 2, 17, 9, 9, 33, 1, 2, 0);
        conv_first_case(&r, "im2col", 2, 5, 11, 9, 7, 5, 1, 2);
        conv_first_case(&r, "im2col", 2, 5, 13, 11, 7, 3, 3, 1);
        conv_first_case(&r, "im2col", 2, 3, 17, 15, 16, 7, 2, 3);
        bt_backend *keep = be;
        const int algos[] = {4, 0};
        for (int a = 0; a < 2; a++) {
            bt_backend_cfg cfg;
            bt_backend_cfg_default(&cfg);
            cfg.winograd = algos[a];
            bt_backend *alt = NULL;
            CHECK(bt_backend_new(&alt, bname, &cfg) == BT_OK, "%s with winograd %d: %s", bname,
                  algos[a], bt_error());
            if (!alt) continue;
            be = alt;
            conv_first_shapes(&r, algos[a] ? "winograd4" : "im2col");
            be = keep;
            bt_backend_free(alt);
        }
    }
    bt_set_threads(saved);
}

/* Two ranks holding the same data: the all-reduce doubles (the multi-rank code of the
 * synchronised batch norm). */
static int twin_allreduce(const bt_comm *c, double *v, size_t n) {
    (void)c;
    for (size_t i = 0; i < n; i++) v[i] *= 2;
    return BT_OK;
}

/* batchnorm(_relu)_backward_sync with dx_set 1 over NaN against dx_set 0 over zeros. Channel
 * 0 has dy = 0 and a negative gamma: its dx is k * (+0) = -0 before the add, +0 after it, so
 * an overwrite that stores the product without the add of +0 shows here. */
static void bn_first_case(tu_rng *r, int N, int C, int HW, int training, int relu,
                          const bt_comm *comm) {
    char op[96];
    snprintf(op, sizeof op, "batchnorm%s first writer %dx%dx%d %s%s", relu ? "_relu" : "", N, C,
             HW, training ? "train" : "eval", comm ? " 2 ranks" : "");
    size_t n = (size_t)N * C * HW;
    buf x = brand(n, r, 1.5), g = brand(C, r, 1), b = brand(C, r, 1), y = bnew(n);
    buf mean = bnew(C), rstd = bnew(C), rm = brand(C, r, 0.5), rv = bnew(C);
    H(&g)[0] = -0.75f;
    up(&g);
    for (int c = 0; c < C; c++) H(&rv)[c] = 0.5f + (float)tu_uniform(r);
    up(&rv), up(&y), up(&mean), up(&rstd);
    bt_op_desc od = {.op = relu ? BT_OP_BATCHNORM_RELU : BT_OP_BATCHNORM, .N = N, .C = C,
                     .H = HW, .W = 1, .sync = 1};
    bt_plan *pl = NULL;
    CHECK(be->ops->plan_new(be, &od, &pl) == BT_OK, "%s plan", op);
    int rc = (relu ? be->ops->batchnorm_relu_forward_sync : be->ops->batchnorm_forward_sync)(
        be, pl, D(&y), D(&mean), D(&rstd), D(&x), D(&g), D(&b), D(&rm), D(&rv), N, C, HW,
        training, 0.1f, 1e-5f, comm);
    CHECK(rc == BT_OK, "%s forward: %s", op, bt_error());
    buf dy = brand(n, r, 1);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < HW; j++) H(&dy)[(size_t)i * C * HW + j] = 0.0f;
    up(&dy);
    buf dxs = bfill(n, 1), dxa = bfill(n, 0), dg1 = brand(C, r, 1), dg2 = btwin(&dg1);
    buf db1 = brand(C, r, 1), db2 = btwin(&db1);
    for (int set = 0; set < 2; set++) {
        buf *dx = set ? &dxs : &dxa, *dg = set ? &dg2 : &dg1, *db = set ? &db2 : &db1;
        rc = relu ? be->ops->batchnorm_relu_backward_sync(be, pl, D(dx), D(dg), D(db), D(&dy),
                                                          D(&y), D(&x), D(&g), D(&mean),
                                                          D(&rstd), N, C, HW, training, comm, set)
                  : be->ops->batchnorm_backward_sync(be, pl, D(dx), D(dg), D(db), D(&dy), D(&x),
                                                     D(&g), D(&mean), D(&rstd), N, C, HW,
                                                     training, comm, set);
        CHECK(rc == BT_OK, "%s backward (set %d): %s", op, set, bt_error());
    }
    same_bits(op, "dx", &dxs, &dxa);
    same_bits(op, "dgamma", &dg2, &dg1);
    same_bits(op, "dbeta", &db2, &db1);
    /* the case the comment above promises: += over zeros gave +0 on channel 0 */
    size_t plus0 = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < HW; j++) {
            const float v = H(&dxa)[(size_t)i * C * HW + j];
            plus0 += v == 0 && !signbit(v);
        }
    CHECK(plus0 == (size_t)N * HW, "%s: channel 0 (dy = 0) has %zu of %d dx at +0", op, plus0,
          N * HW);
    unchanged(op, "dy", &dy);
    be->ops->plan_free(be, pl);
    buf *bs[] = {&x, &g, &b, &y, &mean, &rstd, &rm, &rv, &dy, &dxs, &dxa, &dg1, &dg2, &db1, &db2};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
}

static void test_bn_first_writer(void) {
    tu_rng r = {3391};
    bt_comm twin = {.rank = 0, .world = 2, .allreduce_f64 = twin_allreduce};
    for (int relu = 0; relu < 2; relu++) {
        bn_first_case(&r, 3, 5, 37, 1, relu, NULL);
        bn_first_case(&r, 3, 5, 37, 0, relu, NULL);
        bn_first_case(&r, 4, 7, 64, 1, relu, &twin);
        bn_first_case(&r, 2, 6, 16, 0, relu, &twin); /* eval: local whatever the ranks */
        bn_first_case(&r, 16, 65, 1, 1, relu, NULL); /* the projector's BatchNorm1d */
        bn_first_case(&r, 16, 65, 1, 0, relu, NULL);
    }
}

/* ---- elementwise ---- */

static void test_elementwise(void) {
    tu_rng r = {4409};
    size_t sizes[] = {1, 17, 1000, 40001}; /* 40001: above the threads threshold */
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        char op[48];
        buf x = brand(n, &r, 1), y = bnew(n), a = brand(n, &r, 1);
        H(&x)[0] = 0.0f; /* the kink: y = 0, gradient 0 */
        up(&x), up(&y);
        double *ref = tu_xcalloc(n, 8), *mag = tu_xcalloc(n, 8);
        double *xd = f64(H(&x), n), *ad = f64(H(&a), n);
        snprintf(op, sizeof op, "relu n=%zu", n);
        CHECK(be->ops->relu_forward(be, D(&y), D(&x), n) == BT_OK, "%s", op);
        bt_relu_forward_ref_f64(ref, xd, n);
        check_exact(op, "forward", &y, ref);
        /* backward: dx += dy * (y > 0) */
        buf dy = brand(n, &r, 1), dx = brand(n, &r, 1);
        double *dyd = f64(H(&dy), n), *rdx = f64(H(&dx), n), *yd = f64(H(&y), n);
        CHECK(be->ops->relu_backward(be, D(&dx), D(&dy), D(&y), n) == BT_OK, "%s", op);
        bt_relu_backward_ref_f64(rdx, dyd, yd, n);
        for (size_t i = 0; i < n; i++) mag[i] = fabs(rdx[i]);
        check(op, "backward +=", &dx, rdx, mag, 1, 1); /* one rounding of g0 + dy */
        /* in place: d = y > 0 ? d : 0 */
        buf d = bnew(n);
        memcpy(H(&d), H(&dy), n * 4);
        up(&d);
        CHECK(be->ops->relu_backward_inplace(be, D(&d), D(&y), n) == BT_OK, "%s", op);
        for (size_t i = 0; i < n; i++) ref[i] = yd[i] <= 0 ? 0 : dyd[i];
        check_exact(op, "backward in place", &d, ref);
        /* add */
        snprintf(op, sizeof op, "add n=%zu", n);
        CHECK(be->ops->add_forward(be, D(&y), D(&x), D(&a), n) == BT_OK, "%s", op);
        bt_add_forward_ref_f64(ref, xd, ad, n);
        for (size_t i = 0; i < n; i++) mag[i] = fabs(xd[i]) + fabs(ad[i]);
        check(op, "forward", &y, ref, mag, 1, 1);
        buf da = brand(n, &r, 1), db = brand(n, &r, 1);
        double *rda = f64(H(&da), n), *rdb = f64(H(&db), n);
        double *mda = f64abs(H(&da), n), *mdb = f64abs(H(&db), n);
        CHECK(be->ops->add_backward(be, D(&da), D(&db), D(&dy), n) == BT_OK, "%s", op);
        bt_add_backward_ref_f64(rda, rdb, dyd, n);
        for (size_t i = 0; i < n; i++) mda[i] += fabs(dyd[i]), mdb[i] += fabs(dyd[i]);
        check(op, "da", &da, rda, mda, 1, 1);
        check(op, "db", &db, rdb, mdb, 1, 1);
        /* either gradient NULL */
        buf da2 = brand(n, &r, 1);
        double *rda2 = f64(H(&da2), n), *mda2 = f64abs(H(&da2), n);
        CHECK(be->ops->add_backward(be, D(&da2), NULL, D(&dy), n) == BT_OK, "%s", op);
        CHECK(be->ops->add_backward(be, NULL, NULL, D(&dy), n) == BT_OK, "%s", op);
        for (size_t i = 0; i < n; i++) rda2[i] += dyd[i], mda2[i] += fabs(dyd[i]);
        check(op, "da (db NULL)", &da2, rda2, mda2, 1, 1);
        /* add + ReLU: forward within add's bound (the ReLU is 1-Lipschitz); the backward from
         * the op's own output y2; the sum exactly 0 (x[0] = 0, a[0] = -0 below) is masked */
        snprintf(op, sizeof op, "add_relu n=%zu", n);
        H(&a)[0] = -0.0f;
        if (n > 1) H(&a)[1] = -H(&x)[1];
        up(&a);
        ad[0] = 0, ad[1 % n] = H(&a)[1 % n];
        buf y2 = bnew(n);
        up(&y2);
        CHECK(be->ops->add_relu_forward(be, D(&y2), D(&x), D(&a), n) == BT_OK, "%s", op);
        bt_add_relu_forward_ref_f64(ref, xd, ad, n);
        for (size_t i = 0; i < n; i++) mag[i] = fabs(xd[i]) + fabs(ad[i]);
        check(op, "forward", &y2, ref, mag, 1, 1);
        CHECK(H(&y2)[0] == 0 && (n < 2 || H(&y2)[1] == 0), "%s: a + b = 0 gives y %g, %g", op,
              H(&y2)[0], H(&y2)[n > 1]);
        unchanged(op, "a", &a);
        double *y2d = f64(H(&y2), n);
        buf ea = brand(n, &r, 1), eb = brand(n, &r, 1);
        double *rea = f64(H(&ea), n), *reb = f64(H(&eb), n);
        double *mea = f64abs(H(&ea), n), *meb = f64abs(H(&eb), n);
        CHECK(be->ops->add_relu_backward(be, D(&ea), D(&eb), D(&dy), D(&y2), n) == BT_OK, "%s", op);
        bt_add_relu_backward_ref_f64(rea, reb, dyd, y2d, n);
        for (size_t i = 0; i < n; i++) mea[i] += fabs(dyd[i]), meb[i] += fabs(dyd[i]);
        check(op, "da", &ea, rea, mea, 1, 1);
        check(op, "db", &eb, reb, meb, 1, 1);
        unchanged(op, "dy", &dy);
        unchanged(op, "y", &y2);
        /* one gradient NULL (either side), then both */
        CHECK(be->ops->add_relu_backward(be, NULL, D(&eb), D(&dy), D(&y2), n) == BT_OK, "%s", op);
        CHECK(be->ops->add_relu_backward(be, D(&ea), NULL, D(&dy), D(&y2), n) == BT_OK, "%s", op);
        CHECK(be->ops->add_relu_backward(be, NULL, NULL, D(&dy), D(&y2), n) == BT_OK, "%s", op);
        bt_add_relu_backward_ref_f64(rea, reb, dyd, y2d, n);
        for (size_t i = 0; i < n; i++) mea[i] += fabs(dyd[i]), meb[i] += fabs(dyd[i]);
        check(op, "da (db NULL)", &ea, rea, mea, 2, 1); /* two roundings now */
        check(op, "db (da NULL)", &eb, reb, meb, 2, 1);
        /* in place: d = y2 > 0 ? d : 0 exactly, then db += d; and with db NULL */
        buf d2 = bnew(n), d3 = bnew(n), ec = brand(n, &r, 1);
        memcpy(H(&d2), H(&dy), n * 4), memcpy(H(&d3), H(&dy), n * 4);
        up(&d2), up(&d3);
        double *rec = f64(H(&ec), n), *mec = f64abs(H(&ec), n);
        CHECK(be->ops->add_relu_backward_inplace(be, D(&d2), D(&ec), D(&y2), n) == BT_OK, "%s", op);
        CHECK(be->ops->add_relu_backward_inplace(be, D(&d3), NULL, D(&y2), n) == BT_OK, "%s", op);
        for (size_t i = 0; i < n; i++) ref[i] = y2d[i] <= 0 ? 0 : dyd[i];
        check_exact(op, "in place d", &d2, ref);
        check_exact(op, "in place d (db NULL)", &d3, ref);
        bt_add_relu_backward_ref_f64(NULL, rec, dyd, y2d, n);
        for (size_t i = 0; i < n; i++) mec[i] += fabs(dyd[i]);
        check(op, "in place db", &ec, rec, mec, 1, 1);
        buf *bs[] = {&x, &y, &a, &dy, &dx, &d, &da, &db, &da2, &y2, &ea, &eb, &d2, &d3, &ec};
        for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
        double *ds[] = {ref, mag, xd, ad, dyd, rdx, yd, rda, rdb, mda, mdb, rda2, mda2, y2d, rea,
                        reb, mea, meb, rec, mec};
        for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) free(ds[i]);
    }
}

/* ---- pools ---- */

static void maxpool_case(tu_rng *r, int N, int C, int Hh, int W, int k, int stride, int pad) {
    int OH = (Hh + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
    if (OH < 1 || OW < 1 || pad * 2 > k) return;
    char op[80];
    snprintf(op, sizeof op, "maxpool %dx%dx%dx%d k%d s%d p%d", N, C, Hh, W, k, stride, pad);
    size_t ni = (size_t)N * C * Hh * W, no = (size_t)N * C * OH * OW;
    buf x = brand(ni, r, 1), y = bnew(no), am = bnew(no);
    /* ties: equal values, where the first maximum in scan order must win */
    for (size_t i = 0; i + 1 < ni; i += 7) H(&x)[i + 1] = H(&x)[i];
    up(&x), up(&y), up(&am);
    bt_op_desc od = {.op = BT_OP_MAXPOOL2D, .N = N, .C = C, .H = Hh, .W = W, .K = C, .k = k,
                     .stride = stride, .pad = pad};
    bt_plan *pl = NULL;
    CHECK(be->ops->plan_new(be, &od, &pl) == BT_OK, "%s plan", op);
    CHECK(be->ops->maxpool2d_forward(be, pl, D(&y), DI(&am), D(&x), N, C, Hh, W, k, stride, pad) == BT_OK,
          "%s forward", op);
    double *xd = f64(H(&x), ni), *ref = tu_xcalloc(no, 8);
    int32_t *amr = tu_xcalloc(no, 4);
    bt_maxpool2d_forward_ref_f64(ref, amr, xd, N, C, Hh, W, k, stride, pad);
    check_exact(op, "forward", &y, ref);
    down(&am);
    if (guards_ok(op, "argmax", &am))
        CHECK(!memcmp(H(&am), amr, no * 4), "%s %s argmax differs from the reference", bname, op);
    /* backward: overlapping windows add up to ceil(k/stride)^2 terms into one input */
    buf dy = brand(no, r, 1), dx = brand(ni, r, 1);
    double *dyd = f64(H(&dy), no), *rdx = f64(H(&dx), ni), *mdx = f64abs(H(&dx), ni);
    double *dya = f64abs(H(&dy), no);
    CHECK(be->ops->maxpool2d_backward(be, pl, D(&dx), D(&dy), DI(&am), N, C, Hh, W, OH, OW) == BT_OK,
          "%s backward", op);
    bt_maxpool2d_backward_ref_f64(rdx, dyd, amr, N, C, Hh, W, OH, OW);
    bt_maxpool2d_backward_ref_f64(mdx, dya, amr, N, C, Hh, W, OH, OW);
    int per = (k + stride - 1) / stride;
    check(op, "dx", &dx, rdx, mdx, (double)per * per + 1, 1);
    be->ops->plan_free(be, pl);
    buf *bs[] = {&x, &y, &am, &dy, &dx};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) bfree(bs[i]);
    free(xd), free(ref), free(amr), free(dyd), free(rdx), free(mdx), free(dya);
}

static void avgpool_case(tu_rng *r, int N, int C, int HW) {
    char op[64];
    snprintf(op, sizeof op, "avgpool %dx%dx%d", N, C, HW);
    size_t ni = (size_t)N * C * HW, no = (size_t)N * C;
    buf x = brand(ni, r, 1), y = bnew(no);
    up(&y);
    CHECK(be->ops->avgpool_forward(be, D(&y), D(&x), N, C, HW) == BT_OK, "%s", op);
    double *xd = f64(H(&x), ni), *xa = f64abs(H(&x), ni), *ref = tu_xcalloc(no, 8), *mag = tu_xcalloc(no, 8);
    bt_avgpool_forward_ref_f64(ref, xd, N, C, HW);
    bt_avgpool_forward_ref_f64(mag, xa, N, C, HW);
    check(op, "forward", &y, ref, mag, HW + 2, 1);
    buf dy = brand(no, r, 1), dx = brand(ni, r, 1);
    double *dyd = f64(H(&dy), no), *dya = f64abs(H(&dy), no), *rdx = f64(H(&dx), ni), *mdx = f64abs(H(&dx), ni);
    CHECK(be->ops->avgpool_backward(be, D(&dx), D(&dy), N, C, HW) == BT_OK, "%s", op);
    bt_avgpool_backward_ref_f64(rdx, dyd, N, C, HW);
    bt_avgpool_backward_ref_f64(mdx, dya, N, C, HW);
    check(op, "dx", &dx, rdx, mdx, 3, 1);
    bfree(&x), bfree(&y), bfree(&dy), bfree(&dx);
    free(xd), free(xa), free(ref), free(mag), free(dyd), free(dya), free(rdx), free(mdx);
}

static void test_pools(void) {
    tu_rng r = {5501};
    for (int t = 0; t < 6; t++)
        maxpool_case(&r, irand(&r, 1, 3), irand(&r, 1, 5), irand(&r, 3, 15), irand(&r, 3, 13),
                     irand(&r, 2, 3), irand(&r, 1, 2), irand(&r, 0, 1));
    maxpool_case(&r, 2, 4, 16, 16, 3, 2, 1); /* the ImageNet stem's pool */
    for (int t = 0; t < 4; t++) avgpool_case(&r, irand(&r, 1, 4), irand(&r, 1, 33), irand(&r, 1, 50));
}

/* ---- softmax cross-entropy ---- */

static void test_xent(void) {
    tu_rng r = {6607};
    for (int t = 0; t < 4; t++) {
        int N = irand(&r, 1, 17), K = irand(&r, 2, 23);
        char op[48];
        snprintf(op, sizeof op, "xent %dx%d", N, K);
        buf lg = brand((size_t)N * K, &r, 3), pr = bnew((size_t)N * K), ls = bnew(1), lab = bnew(N);
        int32_t *labels = (int32_t *)H(&lab);
        for (int i = 0; i < N; i++) labels[i] = irand(&r, 0, K - 1);
        up(&pr), up(&ls), up(&lab);
        CHECK(be->ops->xent_forward(be, D(&ls), D(&pr), D(&lg), DI(&lab), N, K) == BT_OK, "%s", op);
        double *lgd = f64(H(&lg), (size_t)N * K), *prr = tu_xcalloc((size_t)N * K, 8), lr;
        CHECK(bt_xent_forward_ref_f64(&lr, prr, lgd, labels, N, K) == BT_OK, "ref");
        /* log-sum-exp over K terms: error within (K + c) u of max|logit| + |loss| per row */
        double ml = 0, *mp = tu_xcalloc((size_t)N * K, 8);
        for (size_t i = 0; i < (size_t)N * K; i++) ml = fmax(ml, fabs(lgd[i]));
        for (size_t i = 0; i < (size_t)N * K; i++) mp[i] = prr[i] * (2 * ml + 1); /* exp amplifies */
        double ml2 = 2 * ml + fabs(lr);
        check(op, "loss", &ls, &lr, &ml2, K + N + 4, 1);
        check(op, "probs", &pr, prr, mp, K + 4, 1);
        buf dl = brand((size_t)N * K, &r, 1);
        double *rdl = f64(H(&dl), (size_t)N * K), *mdl = f64abs(H(&dl), (size_t)N * K);
        float dloss = 0.75f;
        CHECK(be->ops->xent_backward(be, D(&dl), D(&pr), DI(&lab), dloss, N, K) == BT_OK, "%s", op);
        down(&pr);
        double *prd = f64(H(&pr), (size_t)N * K); /* from the probabilities the op saved */
        bt_xent_backward_ref_f64(rdl, prd, labels, dloss, N, K);
        for (size_t i = 0; i < (size_t)N * K; i++) mdl[i] += dloss * (prd[i] + 1) / N;
        check(op, "dlogits", &dl, rdl, mdl, 4, 1);
        bfree(&lg), bfree(&pr), bfree(&ls), bfree(&lab), bfree(&dl);
        free(lgd), free(prr), free(mp), free(rdl), free(mdl), free(prd);
    }
}

/* ---- the Barlow Twins loss, both forms, plain and synchronised (one process) ---- */

static void loss_case(tu_rng *r, int N, int D_, int form, int sync) {
    char op[80];
    snprintf(op, sizeof op, "bt_loss%s %s N%d D%d", sync ? "_sync" : "",
             form == BT_LOSS_DIRECT ? "direct" : form == BT_LOSS_GRAM ? "gram" : "auto", N, D_);
    size_t nd = (size_t)N * D_;
    const float lambda = 0.0051f;
    buf z1 = brand(nd, r, 1), z2 = brand(nd, r, 1), d1 = brand(nd, r, 0.01), d2 = brand(nd, r, 0.01);
    buf rm = brand(D_, r, 0.1), rv = bnew(D_);
    for (int j = 0; j < D_; j++) H(&rv)[j] = 1.0f;
    up(&rv);
    double *z1d = f64(H(&z1), nd), *z2d = f64(H(&z2), nd), *g1 = f64(H(&d1), nd), *g2 = f64(H(&d2), nd);
    double *rm64 = f64(H(&rm), D_), *rv64 = f64(H(&rv), D_);
    double *m1 = f64abs(H(&d1), nd), *m2 = f64abs(H(&d2), nd);
    bt_loss_result res, ref;
    int rc = sync ? be->ops->bt_loss_sync(be, &res, D(&d1), D(&d2), D(&z1), D(&z2), N, D_, lambda,
                                          form, D(&rm), D(&rv), NULL)
                  : be->ops->bt_loss(be, &res, D(&d1), D(&d2), D(&z1), D(&z2), N, D_, lambda, form,
                                     D(&rm), D(&rv));
    CHECK(rc == BT_OK, "%s: %s", op, bt_error());
    double *t1 = tu_xcalloc(nd, 8), *t2 = tu_xcalloc(nd, 8);
    CHECK(bt_twins_loss_f64(&ref, t1, t2, z1d, z2d, N, D_, lambda, form) == BT_OK, "ref");
    /* The loss adds (c_ii - 1)^2 and lambda c_ij^2, where each c_ij sums N products of
     * normalised entries (|.| <= sqrt(N), so sum|products| <= N... over N: <= 1): an error of
     * (N + c) u per c_ij, doubled by the square, over terms whose sum is at most
     * on_diag + lambda off_diag + D (the 1s of the diagonal). */
    double K = N + 16;
    double tol = 2 * K * U * (ref.on_diag + lambda * ref.off_diag + D_);
    CHECK(fabs(res.loss - ref.loss) <= tol, "%s: loss %.9g, reference %.9g (tol %.3g)", bname,
          res.loss, ref.loss, tol);
    CHECK(res.form_used == (form == BT_LOSS_AUTO ? bt_twins_loss_choose(N, D_) : form), "%s form_used %d",
          op, res.form_used);
    /* Gradients: dz = (terms of C, each within (N + c) u of sum|products|) propagated through
     * the BN; M_i = |g0| + mean |dz| + |dz_i|, K = N + D (a row of C and the BN's sums). */
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < nd; i++) s1 += fabs(t1[i]), s2 += fabs(t2[i]);
    for (size_t i = 0; i < nd; i++) {
        m1[i] += fabs(t1[i]) + s1 / nd * 4;
        m2[i] += fabs(t2[i]) + s2 / nd * 4;
        g1[i] += t1[i];
        g2[i] += t2[i];
    }
    check(op, "dz1 +=", &d1, g1, m1, (double)N + D_ + 16, 1);
    check(op, "dz2 +=", &d2, g2, m2, (double)N + D_ + 16, 1);
    /* running statistics: updated with z1, then with z2 (momentum 0.1, unbiased variance) */
    double *mm = tu_xcalloc(D_, 8), *mv = tu_xcalloc(D_, 8);
    for (int v = 0; v < 2; v++) {
        const double *z = v ? z2d : z1d;
        for (int j = 0; j < D_; j++) {
            double s = 0, q = 0, a = 0;
            for (int i = 0; i < N; i++) s += z[(size_t)i * D_ + j], a += fabs(z[(size_t)i * D_ + j]);
            s /= N;
            for (int i = 0; i < N; i++) q += (z[(size_t)i * D_ + j] - s) * (z[(size_t)i * D_ + j] - s);
            q /= N - 1;
            rm64[j] = 0.9 * rm64[j] + 0.1 * s;
            rv64[j] = 0.9 * rv64[j] + 0.1 * q;
            mm[j] = 0.9 * mm[j] + 0.1 * a / N + fabs(rm64[j]);
            mv[j] = 0.9 * mv[j] + 0.1 * 2 * q + fabs(rv64[j]);
        }
    }
    check(op, "running_mean", &rm, rm64, mm, N + 8, 1);
    check(op, "running_var", &rv, rv64, mv, N + 8, 1);
    unchanged(op, "z1", &z1);
    unchanged(op, "z2", &z2);
    /* forward only */
    rc = sync ? be->ops->bt_loss_sync(be, &res, NULL, NULL, D(&z1), D(&z2), N, D_, lambda, form, NULL,
                                      NULL, NULL)
              : be->ops->bt_loss(be, &res, NULL, NULL, D(&z1), D(&z2), N, D_, lambda, form, NULL, NULL);
    CHECK(rc == BT_OK && fabs(res.loss - ref.loss) <= tol, "%s forward only: %.9g vs %.9g", op,
          res.loss, ref.loss);
    bfree(&z1), bfree(&z2), bfree(&d1), bfree(&d2), bfree(&rm), bfree(&rv);
    double *ds[] = {z1d, z2d, g1, g2, rm64, rv64, m1, m2, t1, t2, mm, mv};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) free(ds[i]);
}

static void test_bt_loss(void) {
    tu_rng r = {7703};
    for (int sync = 0; sync < 2; sync++) {
        loss_case(&r, 7, 13, BT_LOSS_DIRECT, sync);
        loss_case(&r, 7, 13, BT_LOSS_GRAM, sync);
        loss_case(&r, 16, 64, BT_LOSS_AUTO, sync);
        loss_case(&r, 33, 9, BT_LOSS_AUTO, sync);
    }
}

/* ---- LARS ---- */

static void test_lars(void) {
    tu_rng r = {8803};
    bt_tensor_table tab = {0};
    int64_t s4[4] = {9, 3, 3, 3}, s1[1] = {9}, s2[2] = {37, 41}, sb[1] = {40000};
    CHECK(bt_table_add(&tab, "conv.weight", 4, s4) >= 0, "table");
    CHECK(bt_table_add(&tab, "bn.weight", 1, s1) >= 0, "table");
    CHECK(bt_table_add(&tab, "fc.weight", 2, s2) >= 0, "table");
    CHECK(bt_table_add(&tab, "big.bias", 1, sb) >= 0, "table");
    size_t n = tab.total;
    buf p = brand(n, &r, 1), g = brand(n, &r, 0.1), m = brand(n, &r, 0.1);
    double *pd = f64(H(&p), n), *gd = f64(H(&g), n), *md = f64(H(&m), n);
    double *mp = tu_xcalloc(n, 8), *mm = tu_xcalloc(n, 8);
    bt_lars_cfg c;
    bt_lars_default(&c);
    c.lr_weights = 0.3;
    c.lr_biases = 0.01;
    c.weight_decay = 1e-2;
    for (int t = 0; t < tab.n; t++) { /* magnitudes of mu = m mu + q (g + wd p), p -= lr mu */
        const bt_tensor_info *e = &tab.t[t];
        int f = e->ndim == 1;
        double pp = 0, uu = 0, wd = f ? 0 : c.weight_decay;
        for (size_t i = 0; i < e->numel; i++) {
            size_t k = e->offset + i;
            pp += pd[k] * pd[k];
            uu += (gd[k] + wd * pd[k]) * (gd[k] + wd * pd[k]);
        }
        double q = f ? 1 : c.eta * sqrt(pp) / sqrt(uu), lr = f ? c.lr_biases : c.lr_weights;
        for (size_t i = 0; i < e->numel; i++) {
            size_t k = e->offset + i;
            mm[k] = c.momentum * fabs(md[k]) + q * (fabs(gd[k]) + wd * fabs(pd[k]));
            mp[k] = fabs(pd[k]) + lr * mm[k];
        }
    }
    CHECK(be->ops->lars_step(be, D(&p), D(&g), D(&m), &tab, &c) == BT_OK, "lars_step");
    bt_lars_step_ref_f64(pd, gd, md, &tab, &c);
    check("lars_step", "params", &p, pd, mp, 12, 1);
    check("lars_step", "momentum", &m, md, mm, 12, 1);
    unchanged("lars_step", "grads", &g);
    bfree(&p), bfree(&g), bfree(&m);
    free(pd), free(gd), free(md), free(mp), free(mm);
    bt_table_free(&tab);
}

/* ---- the data pipeline's per-pixel half: equal to bt_aug_pixel on the host ---- */

static void test_aug_pixel(void) {
    enum { N = 6, S = 40 };
    bt_aug_preset pr;
    CHECK(bt_aug_preset_init(&pr, "imagenet") == BT_OK, "preset");
    tu_rng r = {23};
    const size_t cb = (size_t)N * S * S * 3, nf = (size_t)N * 3 * S * S;
    uint8_t *crops = tu_xcalloc(cb, 1), *host = tu_xcalloc(cb, 1);
    for (size_t i = 0; i < cb; i++) crops[i] = (uint8_t)((i * 7 + (i / 97) * 13) ^ (tu_next(&r) & 15));
    bt_aug_params prm[N];
    float *ref = tu_xcalloc(nf, sizeof(float));
    bt_aug_work *w = bt_aug_work_new();
    memcpy(host, crops, cb);
    for (int i = 0; i < N; i++) { /* both views' draws: blur, jitter, gray, solarize vary */
        bt_rng g = bt_rng_key(4, 0, (uint64_t)i, (uint64_t)(i & 1));
        bt_aug_sample(&prm[i], &pr.view[i & 1], 300, 200, &g);
        if (i == 0) prm[i].jitter = prm[i].gray = prm[i].blur = prm[i].solarize = 0;
        if (i == 1) prm[i].blur = prm[i].solarize = prm[i].gray = 1, prm[i].sigma = 1.3f;
        bt_image im = {S, S, host + (size_t)i * S * S * 3};
        CHECK(bt_aug_pixel(ref + (size_t)i * 3 * S * S, &im, &prm[i], pr.mean, pr.std, w) == BT_OK,
              "host bt_aug_pixel: %s", bt_error());
    }
    buf c = bnew((cb + 3) / 4), out = bnew(nf);
    memcpy(H(&c), crops, cb);
    up(&c);
    up(&out);
    CHECK(be->ops->aug_pixel(be, D(&out), (uint8_t *)D(&c), prm, N, S, pr.mean, pr.std) == BT_OK,
          "%s aug_pixel: %s", bname, bt_error());
    down(&out);
    down(&c);
    guards_ok("aug_pixel", "out", &out);
    guards_ok("aug_pixel", "crops", &c);
    CHECK(memcmp(H(&out), ref, nf * sizeof(float)) == 0, "%s aug_pixel: output differs from "
          "bt_aug_pixel", bname);
    CHECK(memcmp(H(&c), host, cb) == 0, "%s aug_pixel: crops differ from bt_aug_pixel's", bname);
    bfree(&c);
    bfree(&out);
    bt_aug_work_free(w);
    free(crops);
    free(host);
    free(ref);
}

int main(void) {
    int ran = 0;
    for (int i = 0; i < bt_backend_count(); i++) {
        bname = bt_backend_name(i);
        bt_backend_cfg cfg;
        bt_backend_cfg_default(&cfg);
        if (bt_backend_new(&be, bname, &cfg) != BT_OK) {
            /* compiled in but not usable here (no device): said, and counted as a failure
             * only when the backend is the CPU */
            fprintf(stderr, "  backend %s unavailable: %s\n", bname, bt_error());
            CHECK(strcmp(bname, "cpu") != 0, "the CPU backend must always work");
            continue;
        }
        printf("backend %s\n", bname);
        TEST_RUN(test_table_complete);
        TEST_RUN(test_memory);
        TEST_RUN(test_conv2d);
        TEST_RUN(test_linear);
        TEST_RUN(test_batchnorm);
        TEST_RUN(test_conv_first_writer);
        TEST_RUN(test_bn_first_writer);
        TEST_RUN(test_elementwise);
        TEST_RUN(test_pools);
        TEST_RUN(test_xent);
        TEST_RUN(test_bt_loss);
        TEST_RUN(test_lars);
        TEST_RUN(test_aug_pixel);
        bt_backend_free(be);
        ran++;
    }
    CHECK(ran > 0, "no backend ran");
    return tu_finish();
}
