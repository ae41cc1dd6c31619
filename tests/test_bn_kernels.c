/* The per-channel batch-norm loops of every instruction-set path (src/ops/batchnorm_kernels.c):
 *  - against a plain reference (long double sums for the statistics, the same float formulas
 *    element by element for the outputs), on odd row lengths (1, 3, 15, 17, 49, ...), strided
 *    rows, and data whose magnitudes span many binades, so double sums are not exact;
 *  - bit-identical to the portable copy on every path this CPU has (the promise in
 *    batchnorm_kernels.c: the order of the sums does not depend on the vector width);
 *  - the whole bt_batchnorm_forward / backward bit-identical across paths;
 *  - batch norm + ReLU (the four _relu loops, and the whole fused op, local, eval and
 *    synchronised over two simulated ranks) and add + ReLU bit-identical to the unfused ops
 *    one after the other, on every path, and across paths;
 *  - the overwriting dx loops (the first writer's) bit-identical to += on zeros;
 *  - BatchNorm1d (HW 1), which walks blocks of channels row by row, bit-identical to the
 *    per-channel loops (bt_bn_set_rows_1d), in every mode.
 * tests/run.sh runs the program once per path (BARLOW_ISA); each run compares all paths. */
#include "barlow/comm.h"
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/ops.h"
#include "ops/batchnorm_internal.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int HWS[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 49, 64, 196};
#define NHWS ((int)(sizeof HWS / sizeof HWS[0]))

/* Values of widely varying magnitude (2^-30 .. 2^10) and both signs: their double sums are
 * rarely exact, so a change in summation order shows. */
static void fill_wide(float *x, size_t n, tu_rng *r) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(tu_normal(r) * ldexp(1.0, (int)(tu_next(r) % 41) - 30));
}

static void test_against_reference(void) {
    tu_rng r = {12345};
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!bt_isa_supported((bt_isa)p)) continue;
        const bt_bn_kernels *k = bt_bn_kernels_for(p);
        for (int h = 0; h < NHWS; h++) {
            const int HW = HWS[h], N = 5, C = 3;
            const size_t cs = (size_t)C * HW, n = (size_t)N * cs;
            float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
            float *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx);
            float *ye = malloc(n * sizeof *ye), *dxe = malloc(n * sizeof *dxe);
            fill_wide(x, n, &r);
            fill_wide(dy, n, &r);
            for (size_t i = 0; i < n; i++) dx[i] = dxe[i] = (float)tu_normal(&r);
            const int c = 1; /* the middle channel: rows strided by cs */
            const float *xc = x + (size_t)c * HW, *dyc = dy + (size_t)c * HW;
            long double s = 0, q = 0, sa = 0, sdy = 0, sdyx = 0, sdya = 0, sdyxa = 0;
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++) s += xc[b * cs + i], sa += fabsl(xc[b * cs + i]);
            const double m = (double)(s / (N * HW));
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++) {
                    const long double d = (long double)xc[b * cs + i] - m;
                    q += d * d;
                }
            const float mf = (float)m, rf = 0.75f;
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++) {
                    const float xv = xc[b * cs + i], dv = dyc[b * cs + i];
                    const long double t = (long double)dv * (float)((xv - mf) * rf);
                    sdy += dv, sdya += fabsl((long double)dv), sdyx += t, sdyxa += fabsl(t);
                }
            /* a double sum of n terms errs by at most about n * 2^-53 * sum |terms| */
            const double tol = N * HW * ldexp(1.0, -52);
            const double ks = k->sum(xc, cs, N, HW), kq = k->sqdev(xc, cs, N, HW, m);
            CHECK(fabs(ks - (double)s) <= tol * (double)sa + 1e-300, "%s sum HW=%d: %.17g vs %.17Lg",
                  k->name, HW, ks, s);
            CHECK(fabs(kq - (double)q) <= tol * (double)q + 1e-300, "%s sqdev HW=%d: %.17g vs %.17Lg",
                  k->name, HW, kq, q);
            double g1, g2;
            k->grad_sums(&g1, &g2, dyc, xc, cs, N, HW, mf, rf);
            CHECK(fabs(g1 - (double)sdy) <= tol * (double)sdya + 1e-300, "%s grad sdy HW=%d", k->name, HW);
            CHECK(fabs(g2 - (double)sdyx) <= tol * (double)sdyxa + 1e-300, "%s grad sdyx HW=%d", k->name, HW);
            /* elementwise: the same float formula, exactly, and nothing outside the channel */
            memset(y, 0, n * sizeof *y);
            memset(ye, 0, n * sizeof *ye);
            const float mhi = mf, mlo = (float)(m - mhi), a = 1.3f, bb = -0.2f;
            k->norm(y + (size_t)c * HW, xc, cs, N, HW, mhi, mlo, a, bb);
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++)
                    ye[b * cs + c * HW + i] = ((xc[b * cs + i] - mhi) - mlo) * a + bb;
            CHECK(!memcmp(y, ye, n * sizeof *y), "%s norm HW=%d differs", k->name, HW);
            const float kk = 0.9f, mdy = 0.01f, mdyx = -0.02f;
            k->dx(dx + (size_t)c * HW, dyc, xc, cs, N, HW, mf, rf, kk, mdy, mdyx);
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++) {
                    const size_t j = b * cs + c * HW + i;
                    dxe[j] += kk * (dy[j] - mdy - (x[j] - mf) * rf * mdyx);
                }
            CHECK(!memcmp(dx, dxe, n * sizeof *dx), "%s dx HW=%d differs", k->name, HW);
            k->dx_eval(dx + (size_t)c * HW, dyc, cs, N, HW, kk);
            for (int b = 0; b < N; b++)
                for (int i = 0; i < HW; i++) {
                    const size_t j = b * cs + c * HW + i;
                    dxe[j] += kk * dy[j];
                }
            CHECK(!memcmp(dx, dxe, n * sizeof *dx), "%s dx_eval HW=%d differs", k->name, HW);
            free(x), free(dy), free(y), free(dx), free(ye), free(dxe);
        }
    }
}

static int same_bits(double a, double b) { return !memcmp(&a, &b, sizeof a); }

static void test_paths_bit_identical(void) {
    tu_rng r = {777};
    const bt_bn_kernels *g = bt_bn_kernels_for(BT_ISA_GENERIC);
    int compared = 0;
    for (int h = 0; h < NHWS; h++) {
        const int HW = HWS[h], N = 7, C = 2;
        const size_t cs = (size_t)C * HW, n = (size_t)N * cs;
        float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
        fill_wide(x, n, &r);
        fill_wide(dy, n, &r);
        const double m = 0.0123456789;
        double s0 = g->sum(x, cs, N, HW), q0 = g->sqdev(x, cs, N, HW, m), a0, b0;
        g->grad_sums(&a0, &b0, dy, x, cs, N, HW, 0.01f, 1.7f);
        for (int p = 1; p < BT_ISA_COUNT; p++) {
            if (!bt_isa_supported((bt_isa)p)) continue;
            const bt_bn_kernels *k = bt_bn_kernels_for(p);
            double a1, b1;
            k->grad_sums(&a1, &b1, dy, x, cs, N, HW, 0.01f, 1.7f);
            CHECK(same_bits(k->sum(x, cs, N, HW), s0), "%s sum HW=%d not bit-identical to generic",
                  k->name, HW);
            CHECK(same_bits(k->sqdev(x, cs, N, HW, m), q0), "%s sqdev HW=%d", k->name, HW);
            CHECK(same_bits(a1, a0) && same_bits(b1, b0), "%s grad_sums HW=%d", k->name, HW);
            compared++;
        }
        free(x), free(dy);
    }
    if (!compared) tu_skip("only the portable path on this CPU: no other copy to compare");
}

/* The whole op on each path, bit for bit, through bt_isa_set. */
static void test_op_across_paths(void) {
    tu_rng r = {99};
    const int N = 6, C = 5, HW = 49;
    const size_t n = (size_t)N * C * HW;
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
    fill_wide(x, n, &r);
    fill_wide(dy, n, &r);
    float *y[BT_ISA_COUNT] = {0}, *dx[BT_ISA_COUNT] = {0};
    float g[5] = {1, 0.5f, 2, -1, 0.25f}, b[5] = {0, 0.1f, -0.1f, 1, 2};
    float st[BT_ISA_COUNT][5 * 6];
    const bt_isa start = bt_isa_current();
    int done = 0;
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!bt_isa_supported((bt_isa)p)) continue;
        CHECK(bt_isa_set((bt_isa)p) == BT_OK, "set %d", p);
        y[p] = calloc(n, sizeof(float));
        dx[p] = calloc(n, sizeof(float));
        float *mean = st[p], *rstd = st[p] + 5, *rm = st[p] + 10, *rv = st[p] + 15,
              *dg = st[p] + 20, *db = st[p] + 25;
        for (int c = 0; c < 5; c++) rm[c] = 0, rv[c] = 1, dg[c] = db[c] = 0;
        CHECK(bt_batchnorm_forward(y[p], mean, rstd, x, g, b, rm, rv, N, C, HW, 1, 0.1f, 1e-5f) ==
                  BT_OK, "forward");
        bt_batchnorm_backward(dx[p], dg, db, dy, x, g, mean, rstd, N, C, HW, 1);
        if (p > 0 && y[0]) {
            CHECK(!memcmp(y[p], y[0], n * sizeof(float)), "%s forward differs from generic",
                  bt_isa_name((bt_isa)p));
            CHECK(!memcmp(dx[p], dx[0], n * sizeof(float)), "%s dx differs from generic",
                  bt_isa_name((bt_isa)p));
            CHECK(!memcmp(st[p], st[0], sizeof st[0]), "%s statistics/dgamma/dbeta differ",
                  bt_isa_name((bt_isa)p));
            done++;
        }
    }
    bt_isa_set(start);
    for (int p = 0; p < BT_ISA_COUNT; p++) free(y[p]), free(dx[p]);
    free(x), free(dy);
    if (!done) tu_skip("only the portable path on this CPU: no other path to compare");
}

/* ---- batch norm + ReLU, add + ReLU: bit for bit the two ops one after the other ---------- */

/* The ReLU's output where about half the values are masked, some exactly 0 and some NaN-free
 * tiny positives: relu(v) of wide-ranged data. */
static void fill_relu_out(float *y, size_t n, tu_rng *r) {
    fill_wide(y, n, r);
    for (size_t i = 0; i < n; i++) y[i] = y[i] <= 0 ? 0.0f : y[i];
}

/* Each path's four _relu loops against its plain loops on the masked dy (g = y <= 0 ? 0 : dy,
 * bt_relu_backward_inplace's rule) and relu(norm): the promise in batchnorm_internal.h. */
static void test_relu_loops_vs_plain(void) {
    tu_rng r = {4242};
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!bt_isa_supported((bt_isa)p)) continue;
        const bt_bn_kernels *k = bt_bn_kernels_for(p);
        for (int h = 0; h < NHWS; h++) {
            const int HW = HWS[h], N = 5, C = 3, c = 1;
            const size_t cs = (size_t)C * HW, n = (size_t)N * cs, off = (size_t)c * HW;
            float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy), *y = malloc(n * sizeof *y);
            float *g = malloc(n * sizeof *g), *o1 = calloc(n, sizeof *o1), *o2 = calloc(n, sizeof *o2);
            fill_wide(x, n, &r);
            fill_wide(dy, n, &r);
            fill_relu_out(y, n, &r);
            memcpy(g, dy, n * sizeof *g);
            bt_relu_backward_inplace(g, y, n);
            const float mf = 0.01f, rf = 1.7f, mhi = mf, mlo = 1e-9f, a = 1.3f, bb = 0.05f;
            /* forward: norm then bt_relu_forward in place, against norm_relu */
            k->norm(o1 + off, x + off, cs, N, HW, mhi, mlo, a, bb);
            bt_relu_forward(o1, o1, n);
            k->norm_relu(o2 + off, x + off, cs, N, HW, mhi, mlo, a, bb);
            CHECK(!memcmp(o1, o2, n * sizeof *o1), "%s norm_relu HW=%d differs from relu(norm)",
                  k->name, HW);
            double s1, q1, s2, q2;
            k->grad_sums(&s1, &q1, g + off, x + off, cs, N, HW, mf, rf);
            k->grad_sums_relu(&s2, &q2, dy + off, y + off, x + off, cs, N, HW, mf, rf);
            CHECK(same_bits(s1, s2) && same_bits(q1, q2), "%s grad_sums_relu HW=%d: %.17g %.17g vs "
                  "%.17g %.17g on the masked dy", k->name, HW, s2, q2, s1, q1);
            for (size_t i = 0; i < n; i++) o1[i] = o2[i] = (float)tu_normal(&r); /* += onto these */
            k->dx(o1 + off, g + off, x + off, cs, N, HW, mf, rf, 0.9f, 0.01f, -0.02f);
            k->dx_relu(o2 + off, dy + off, y + off, x + off, cs, N, HW, mf, rf, 0.9f, 0.01f, -0.02f);
            CHECK(!memcmp(o1, o2, n * sizeof *o1), "%s dx_relu HW=%d differs", k->name, HW);
            k->dx_eval(o1 + off, g + off, cs, N, HW, 0.9f);
            k->dx_eval_relu(o2 + off, dy + off, y + off, cs, N, HW, 0.9f);
            CHECK(!memcmp(o1, o2, n * sizeof *o1), "%s dx_eval_relu HW=%d differs", k->name, HW);
            free(x), free(dy), free(y), free(g), free(o1), free(o2);
        }
    }
}

/* Each path's four overwriting dx loops (the first writer's, batchnorm_internal.h) against
 * the accumulating ones run on zeros: the same bits, from a dx of NaN that they must not
 * read. Twice: on random data, then on dy = 0 with mean(dy) = mean(dy xhat) = 0 and k < 0,
 * where the product is -0 and only the add of +0 gives the +0 that += on zeros does. */
static void test_set_loops_vs_add(void) {
    tu_rng r = {5150};
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!bt_isa_supported((bt_isa)p)) continue;
        const bt_bn_kernels *k = bt_bn_kernels_for(p);
        for (int h = 0; h < NHWS; h++)
            for (int zero_dy = 0; zero_dy < 2; zero_dy++) {
                const int HW = HWS[h], N = 5, C = 3, c = 1;
                const size_t cs = (size_t)C * HW, n = (size_t)N * cs, off = (size_t)c * HW;
                float *x = malloc(n * 4), *dy = malloc(n * 4), *y = malloc(n * 4);
                float *o1 = calloc(n, 4), *o2 = malloc(n * 4);
                fill_wide(x, n, &r);
                fill_wide(dy, n, &r);
                fill_relu_out(y, n, &r);
                if (zero_dy) memset(dy, 0, n * 4);
                const float mf = 0.01f, rf = 1.7f, kk = zero_dy ? -0.9f : 0.9f;
                const float mdy = zero_dy ? 0.0f : 0.01f, mdyx = zero_dy ? 0.0f : -0.02f;
                for (int f = 0; f < 4; f++) {
                    static const char *const names[] = {"dx_set", "dx_relu_set", "dx_eval_set",
                                                        "dx_eval_relu_set"};
                    memset(o1, 0, n * 4);
                    for (size_t i = 0; i < n; i++) o2[i] = NAN;
                    if (f == 0) {
                        k->dx(o1 + off, dy + off, x + off, cs, N, HW, mf, rf, kk, mdy, mdyx);
                        k->dx_set(o2 + off, dy + off, x + off, cs, N, HW, mf, rf, kk, mdy, mdyx);
                    } else if (f == 1) {
                        k->dx_relu(o1 + off, dy + off, y + off, x + off, cs, N, HW, mf, rf, kk,
                                   mdy, mdyx);
                        k->dx_relu_set(o2 + off, dy + off, y + off, x + off, cs, N, HW, mf, rf,
                                       kk, mdy, mdyx);
                    } else if (f == 2) {
                        k->dx_eval(o1 + off, dy + off, cs, N, HW, kk);
                        k->dx_eval_set(o2 + off, dy + off, cs, N, HW, kk);
                    } else {
                        k->dx_eval_relu(o1 + off, dy + off, y + off, cs, N, HW, kk);
                        k->dx_eval_relu_set(o2 + off, dy + off, y + off, cs, N, HW, kk);
                    }
                    /* channel c only: the other channels' NaN stays (the loops keep to c) */
                    size_t bad = 0, outside = 0;
                    for (int b = 0; b < N; b++)
                        for (int j = 0; j < C * HW; j++) {
                            const size_t e = (size_t)b * cs + j;
                            if (j / HW == c) bad += memcmp(o1 + e, o2 + e, 4) != 0;
                            else outside += !isnan(o2[e]);
                        }
                    CHECK(!bad && !outside, "%s %s HW=%d%s: %zu elements differ from += on zeros, "
                          "%zu written outside the channel", k->name, names[f], HW,
                          zero_dy ? " (dy = 0, k < 0)" : "", bad, outside);
                }
                free(x), free(dy), free(y), free(o1), free(o2);
            }
    }
}

/* Two ranks that hold the same data, simulated in one process: the all-reduce doubles. The
 * synchronised forms then run their multi-rank code (global sums, count 2 N HW). */
static int twin_allreduce(const bt_comm *c, double *buf, size_t n) {
    (void)c;
    for (size_t i = 0; i < n; i++) buf[i] *= 2;
    return BT_OK;
}

/* One path: the fused ops against the unfused pairs, as the model ran them before it fused
 * them (forward: BN, then ReLU in place; backward: the ReLU's mask in place on dy, then the
 * BN's backward; add + ReLU likewise), in training and eval mode, local and over the twin
 * ranks. out[p] keeps this path's outputs for the comparison across paths. */
enum { FN = 6, FC = 5, FHW = 49, FSZ = FN * FC * FHW };
typedef struct {
    float y[FSZ], dx[FSZ], st[FC * 6], ay[FSZ], ad[FSZ], adb[FSZ];
} fused_out;

static void fused_vs_unfused(const char *path, fused_out *keep) {
    tu_rng r = {2024};
    const int N = FN, C = FC, HW = FHW;
    const size_t n = FSZ;
    float *x = malloc(n * 4), *dy = malloc(n * 4), *d = malloc(n * 4);
    float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *dx1 = malloc(n * 4), *dx2 = malloc(n * 4);
    fill_wide(x, n, &r);
    for (int b = 0; b < N; b++) /* channel 3 constant: BN gives exactly beta = 0 there */
        for (int i = 0; i < HW; i++) x[((size_t)b * C + 3) * HW + i] = 0.375f;
    fill_wide(dy, n, &r);
    float g[FC] = {1, 0.5f, 2, -1, 0.25f}, bt[FC] = {0, 0.1f, -0.1f, 0, 2};
    bt_comm twin = {.rank = 0, .world = 2, .allreduce_f64 = twin_allreduce};
    for (int mode = 0; mode < 3; mode++) { /* 0 train, 1 eval, 2 train over the twin ranks */
        const int training = mode != 1;
        const bt_comm *cm = mode == 2 ? &twin : NULL;
        float s1[FC * 6], s2[FC * 6]; /* mean, rstd, rm, rv, dgamma, dbeta */
        for (int c = 0; c < C; c++) {
            s1[2 * C + c] = s2[2 * C + c] = 0.1f * c;
            s1[3 * C + c] = s2[3 * C + c] = 1 + 0.5f * c;
            s1[4 * C + c] = s2[4 * C + c] = 0.25f; /* += onto these */
            s1[5 * C + c] = s2[5 * C + c] = -0.5f;
        }
        for (size_t i = 0; i < n; i++) dx1[i] = dx2[i] = (float)(0.001 * (double)(i % 97));
        int rc1 = bt_batchnorm_forward_sync(y1, s1, s1 + C, x, g, bt, s1 + 2 * C, s1 + 3 * C, N, C,
                                            HW, training, 0.1f, 1e-5f, cm);
        bt_relu_forward(y1, y1, n);
        int rc2 = bt_batchnorm_relu_forward_sync(y2, s2, s2 + C, x, g, bt, s2 + 2 * C, s2 + 3 * C,
                                                 N, C, HW, training, 0.1f, 1e-5f, cm);
        CHECK(rc1 == BT_OK && rc2 == BT_OK, "%s mode %d forward: %s", path, mode, bt_error());
        CHECK(!memcmp(y1, y2, n * 4), "%s mode %d: batch norm + ReLU forward differs from BN then "
              "ReLU", path, mode);
        size_t masked = 0;
        for (size_t i = 0; i < n; i++) masked += y2[i] <= 0;
        CHECK(masked > n / 8 && masked < n - n / 8, "%s: %zu of %zu masked", path, masked, n);
        memcpy(d, dy, n * 4);
        bt_relu_backward_inplace(d, y1, n);
        int rb1 = bt_batchnorm_backward_sync(dx1, s1 + 4 * C, s1 + 5 * C, d, x, g, s1, s1 + C, N, C,
                                             HW, training, cm);
        int rb2 = bt_batchnorm_relu_backward_sync(dx2, s2 + 4 * C, s2 + 5 * C, dy, y2, x, g, s2,
                                                  s2 + C, N, C, HW, training, cm);
        CHECK(rb1 == BT_OK && rb2 == BT_OK, "%s mode %d backward: %s", path, mode, bt_error());
        CHECK(!memcmp(dx1, dx2, n * 4), "%s mode %d: batch norm + ReLU dx differs from the ReLU's "
              "mask then BN", path, mode);
        CHECK(!memcmp(s1, s2, sizeof s1), "%s mode %d: statistics, running stats, dgamma or dbeta "
              "differ", path, mode);
        if (mode == 0) {
            memcpy(keep->y, y2, n * 4), memcpy(keep->dx, dx2, n * 4);
            memcpy(keep->st, s2, sizeof s2);
        }
    }
    /* add + ReLU: x + a with a = -x at some elements (a sum of exactly 0) */
    float *a = malloc(n * 4), *db1 = malloc(n * 4), *db2 = malloc(n * 4), *d2 = malloc(n * 4);
    fill_wide(a, n, &r);
    for (size_t i = 0; i < n; i += 11) a[i] = -x[i];
    bt_add_forward(y1, x, a, n);
    bt_relu_forward(y1, y1, n);
    memcpy(y2, x, n * 4);
    bt_add_relu_forward(y2, y2, a, n); /* in place over the first addend, as the model runs it */
    CHECK(!memcmp(y1, y2, n * 4), "%s: add + ReLU forward differs from add then ReLU", path);
    for (size_t i = 0; i < n; i++) db1[i] = db2[i] = (float)(0.01 * (double)(i % 13));
    memcpy(d, dy, n * 4), memcpy(d2, dy, n * 4);
    bt_relu_backward_inplace(d, y1, n);
    bt_add_backward(NULL, db1, d, n);
    bt_add_relu_backward_inplace(d2, db2, y2, n);
    CHECK(!memcmp(d, d2, n * 4) && !memcmp(db1, db2, n * 4),
          "%s: add + ReLU backward in place differs from the ReLU's mask then add", path);
    memcpy(keep->ay, y2, n * 4), memcpy(keep->ad, d2, n * 4), memcpy(keep->adb, db2, n * 4);
    free(a), free(db1), free(db2), free(d2);
    free(x), free(dy), free(d), free(y1), free(y2), free(dx1), free(dx2);
}

static void test_fused_bit_identical(void) {
    static fused_out out[BT_ISA_COUNT];
    const bt_isa start = bt_isa_current();
    int first = -1, compared = 0;
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!bt_isa_supported((bt_isa)p)) continue;
        CHECK(bt_isa_set((bt_isa)p) == BT_OK, "set %d", p);
        fused_vs_unfused(bt_isa_name((bt_isa)p), &out[p]);
        if (first < 0) first = p;
        else {
            CHECK(!memcmp(&out[p], &out[first], sizeof out[p]), "%s: fused results differ from %s",
                  bt_isa_name((bt_isa)p), bt_isa_name((bt_isa)first));
            compared++;
        }
    }
    bt_isa_set(start);
    if (!compared) printf("  only the portable path on this CPU: fused vs unfused on it alone\n");
}

/* HW == 1: batchnorm.c's row-by-row blocks against the per-channel loops, bit for bit: forward
 * (training with and without running statistics, eval; with and without the ReLU, gamma and
 * beta), and the local backward (training and eval, with and without the ReLU, += and =),
 * with channel counts that leave partial blocks and wide-magnitude data. */
static void test_rows_1d_bit_identical(void) {
    static const int shapes[][2] = {{2, 1}, {5, 3}, {33, 64}, {7, 67}, {256, 130}, {3, 200}};
    tu_rng rng = {77};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int N = shapes[t][0], C = shapes[t][1];
        const size_t n = (size_t)N * C;
        float *x = tu_xcalloc(n, 4), *dy = tu_xcalloc(n, 4), *g = tu_xcalloc(C, 4);
        float *b = tu_xcalloc(C, 4), *rm0 = tu_xcalloc(C, 4), *rv0 = tu_xcalloc(C, 4);
        fill_wide(x, n, &rng);
        fill_wide(dy, n, &rng);
        for (int c = 0; c < C; c++) {
            g[c] = (float)tu_normal(&rng), b[c] = (float)tu_normal(&rng);
            rm0[c] = (float)tu_normal(&rng), rv0[c] = 0.5f + (float)(tu_next(&rng) % 100) / 50;
        }
        for (int mode = 0; mode < 16; mode++) {
            const int relu = mode & 1, training = (mode >> 1) & 1, affine = (mode >> 2) & 1;
            const int running = (mode >> 3) & 1 || !training; /* eval needs them */
            float *y[2], *mean[2], *rstd[2], *rm[2], *rv[2], *dx[2][2], *dg[2], *db[2];
            for (int k = 0; k < 2; k++) { /* k = 0: per-channel loops, 1: rows */
                y[k] = tu_xcalloc(n, 4), mean[k] = tu_xcalloc(C, 4), rstd[k] = tu_xcalloc(C, 4);
                rm[k] = tu_xcalloc(C, 4), rv[k] = tu_xcalloc(C, 4);
                memcpy(rm[k], rm0, C * 4), memcpy(rv[k], rv0, C * 4);
                dg[k] = tu_xcalloc(C, 4), db[k] = tu_xcalloc(C, 4);
                bt_bn_set_rows_1d(k);
                const float *gg = affine ? g : NULL, *bb = affine ? b : NULL;
                float *rmk = running ? rm[k] : NULL, *rvk = running ? rv[k] : NULL;
                int rc = relu ? bt_batchnorm_relu_forward(y[k], mean[k], rstd[k], x, gg, bb, rmk,
                                                          rvk, N, C, 1, training, 0.1f, 1e-5f)
                              : bt_batchnorm_forward(y[k], mean[k], rstd[k], x, gg, bb, rmk, rvk,
                                                     N, C, 1, training, 0.1f, 1e-5f);
                CHECK(rc == BT_OK, "forward: %s", bt_error());
                for (int set = 0; set < 2; set++) {
                    dx[k][set] = tu_xcalloc(n, 4);
                    if (!set) fill_wide(dx[k][set], n, &(tu_rng){5}); /* += onto this */
                    bt_bn_backward_local(dx[k][set], affine ? dg[k] : NULL, affine ? db[k] : NULL,
                                         dy, relu ? y[k] : NULL, x, gg, mean[k], rstd[k], N, C,
                                         1, training, set);
                }
            }
            bt_bn_set_rows_1d(1);
            CHECK(!memcmp(y[0], y[1], n * 4) && !memcmp(mean[0], mean[1], C * 4) &&
                      !memcmp(rstd[0], rstd[1], C * 4) && !memcmp(rm[0], rm[1], C * 4) &&
                      !memcmp(rv[0], rv[1], C * 4),
                  "N %d C %d relu %d training %d affine %d running %d: forward differs", N, C,
                  relu, training, affine, running);
            CHECK(!memcmp(dx[0][0], dx[1][0], n * 4) && !memcmp(dx[0][1], dx[1][1], n * 4) &&
                      !memcmp(dg[0], dg[1], C * 4) && !memcmp(db[0], db[1], C * 4),
                  "N %d C %d relu %d training %d affine %d: backward differs", N, C, relu,
                  training, affine);
            for (int k = 0; k < 2; k++) {
                free(y[k]), free(mean[k]), free(rstd[k]), free(rm[k]), free(rv[k]);
                free(dx[k][0]), free(dx[k][1]), free(dg[k]), free(db[k]);
            }
        }
        free(x), free(dy), free(g), free(b), free(rm0), free(rv0);
    }
}

int main(void) {
    TEST_RUN(test_against_reference);
    TEST_RUN(test_paths_bit_identical);
    TEST_RUN(test_op_across_paths);
    TEST_RUN(test_relu_loops_vs_plain);
    TEST_RUN(test_set_loops_vs_add);
    TEST_RUN(test_fused_bit_identical);
    TEST_RUN(test_rows_1d_bit_identical);
    return tu_finish();
}
