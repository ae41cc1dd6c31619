/* The per-channel batch-norm loops of every instruction-set path (src/ops/batchnorm_kernels.c):
 *  - against a plain reference (long double sums for the statistics, the same float formulas
 *    element by element for the outputs), on odd row lengths (1, 3, 15, 17, 49, ...), strided
 *    rows, and data whose magnitudes span many binades, so double sums are not exact;
 *  - bit-identical to the portable copy on every path this CPU has (the promise in
 *    batchnorm_kernels.c: the order of the sums does not depend on the vector width);
 *  - the whole bt_batchnorm_forward / backward bit-identical across paths.
 * tests/run.sh runs the program once per path (BARLOW_ISA); each run compares all paths. */
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

int main(void) {
    TEST_RUN(test_against_reference);
    TEST_RUN(test_paths_bit_identical);
    TEST_RUN(test_op_across_paths);
    return tu_finish();
}
