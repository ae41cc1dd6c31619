/* Tests of the LARS optimizer and learning-rate schedule (src/train/lars.c): the schedule at
 * hand-computed points and against the reference formula run live in Python; one LARS step
 * worked by hand; the float step against the double reference; thread-count independence;
 * and five scheduled steps against the reference's LARS class in PyTorch. */
#include "barlow/error.h"
#include "barlow/optim.h"
#include "barlow/scratch.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double relerr(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

static void test_schedule_hand(void) {
    /* 100 steps/epoch, 10 epochs, 2 warm-up epochs, batch 512: base = 2 */
    double w, b;
    bt_lr_schedule(&w, &b, 0, 100, 10, 2, 512, 0.2, 0.0048);
    CHECK(w == 0 && b == 0, "step 0: %g %g", w, b);
    bt_lr_schedule(&w, &b, 100, 100, 10, 2, 512, 0.2, 0.0048);
    CHECK(relerr(w, 1.0 * 0.2) < 1e-15 && relerr(b, 1.0 * 0.0048) < 1e-15, "mid warm-up: %g %g", w, b);
    bt_lr_schedule(&w, &b, 199, 100, 10, 2, 512, 0.2, 0.0048);
    CHECK(relerr(w, 2 * 0.2 * 199 / 200) < 1e-15, "last warm-up step: %g", w);
    bt_lr_schedule(&w, &b, 200, 100, 10, 2, 512, 0.2, 0.0048);
    CHECK(relerr(w, 2 * 0.2) < 1e-15 && relerr(b, 2 * 0.0048) < 1e-15, "end of warm-up: %g %g", w, b);
    bt_lr_schedule(&w, &b, 600, 100, 10, 2, 512, 0.2, 0.0048); /* cosine midpoint: q = 1/2 */
    CHECK(relerr(w, 2 * (0.5 + 0.0005) * 0.2) < 1e-14, "cosine midpoint: %.17g", w);
    bt_lr_schedule(&w, &b, 1000, 100, 10, 2, 512, 0.2, 0.0048); /* q = 0 */
    CHECK(relerr(w, 0.002 * 0.2) < 1e-12 && relerr(b, 0.002 * 0.0048) < 1e-12, "end: %g %g", w, b);
    bt_lr_schedule(&w, &b, 999, 100, 10, 2, 512, 0.2, 0.0048);
    CHECK(w > 0.002 * 0.2 && w < 0.0021 * 0.2, "last step: %g", w);
    bt_lr_schedule(&w, &b, 0, 100, 10, 0, 256, 0.2, 0.0048); /* no warm-up: starts at base */
    CHECK(relerr(w, 0.2) < 1e-15, "no warm-up, step 0: %g", w);
    bt_lr_schedule(&w, &b, 5, 10, 1, 1, 256, 0.2, 0.0048); /* nothing after warm-up */
    CHECK(relerr(w, 0.5 * 0.2) < 1e-15, "warm-up only: %g", w);
    bt_lr_schedule(&w, &b, 10, 10, 1, 1, 256, 0.2, 0.0048);
    CHECK(isfinite(w) && relerr(w, 0.001 * 0.2) < 1e-12, "past warm-up-only schedule: %g", w);
}

static void test_schedule_torch(void) {
    long steps[] = {0, 1, 37, 99, 100, 101, 250, 333, 549, 550, 551, 777, 998, 999};
    int ns = (int)(sizeof steps / sizeof steps[0]);
    char cmd[2048];
    int len = snprintf(cmd, sizeof cmd, "%s tests/py/parity_loss_lars.py sched 50 20 2 768 0.2 0.0048",
                       tu_python());
    for (int i = 0; i < ns; i++) len += snprintf(cmd + len, sizeof cmd - len, " %ld", steps[i]);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "popen %s", cmd);
    if (!p) return;
    int got = 0;
    for (int i = 0; i < ns; i++) {
        double tw, tb, w, b;
        if (fscanf(p, "%lf %lf", &tw, &tb) != 2) break;
        got++;
        bt_lr_schedule(&w, &b, steps[i], 50, 20, 2, 768, 0.2, 0.0048);
        CHECK(fabs(w - tw) <= 1e-14 * fabs(tw) + 1e-300 && fabs(b - tb) <= 1e-14 * fabs(tb) + 1e-300,
              "step %ld: %.17g %.17g, python %.17g %.17g", steps[i], w, b, tw, tb);
    }
    int rc = pclose(p);
    CHECK(rc == 0 && got == ns, "python rc %d, %d of %d lines", rc, got, ns);
}

/* One step worked by hand: weight (1,2) = [3, 4], g = [1, 0], no decay: ||p|| = 5, ||dp|| = 1,
 * q = eta*5 = 0.005; bias [1], g [2] is plain momentum SGD. */
static void test_lars_hand(void) {
    bt_tensor_table tab = {0};
    int64_t s2[2] = {1, 2}, s1[1] = {1};
    CHECK(bt_table_add(&tab, "w", 2, s2) >= 0, "%s", bt_error());
    CHECK(bt_table_add(&tab, "b", 1, s1) >= 0, "%s", bt_error());
    float *p = calloc(tab.total, sizeof(float)), *g = calloc(tab.total, sizeof(float)),
          *m = calloc(tab.total, sizeof(float));
    size_t wo = tab.t[0].offset, bo = tab.t[1].offset;
    p[wo] = 3; p[wo + 1] = 4; g[wo] = 1; g[wo + 1] = 0;
    p[bo] = 1; g[bo] = 2;
    m[wo] = 0.1f; /* previous momentum: mu = 0.9*0.1 + 0.005 */
    bt_lars_cfg c;
    bt_lars_default(&c);
    CHECK(c.weight_decay == 1e-6 && c.momentum == 0.9 && c.eta == 0.001, "defaults");
    c.weight_decay = 0;
    c.lr_weights = 1;
    c.lr_biases = 0.5;
    bt_lars_step(p, g, m, &tab, &c);
    CHECK(fabs(m[wo] - 0.095f) < 1e-7 && m[wo + 1] == 0, "weight mu %.9g %.9g", m[wo], m[wo + 1]);
    CHECK(fabs(p[wo] - 2.905f) < 1e-6 && p[wo + 1] == 4, "weight %.9g %.9g", p[wo], p[wo + 1]);
    CHECK(m[bo] == 2 && p[bo] == 0, "bias mu %g p %g", m[bo], p[bo]);
    /* weight decay enters dp and its norm: p=[3,4], g=[1,0], wd=0.5: dp=[2.5,2], q=eta*5/|dp| */
    memset(m, 0, tab.total * sizeof(float));
    p[wo] = 3; p[wo + 1] = 4;
    c.weight_decay = 0.5;
    bt_lars_step(p, g, m, &tab, &c);
    double q = 0.001 * 5 / sqrt(2.5 * 2.5 + 4.0);
    CHECK(fabs(m[wo] - 2.5 * q) < 1e-8 && fabs(m[wo + 1] - 2 * q) < 1e-8, "wd mu %.9g %.9g", m[wo], m[wo + 1]);
    free(p); free(g); free(m);
    bt_table_free(&tab);
}

/* A table of mixed tensors: 4-D and 2-D weights, 1-D biases, a zero weight (||p|| = 0, q = 1)
 * and one big enough for the parallel path. */
static void make_table(bt_tensor_table *tab) {
    int64_t conv[4] = {8, 3, 3, 3}, fc[2] = {20, 30}, b20[1] = {20}, b8[1] = {8}, z[2] = {4, 5},
            big[2] = {300, 200}, bigb[1] = {40000};
    bt_table_add(tab, "conv.weight", 4, conv);
    bt_table_add(tab, "bn.weight", 1, b8);
    bt_table_add(tab, "bn.bias", 1, b8);
    bt_table_add(tab, "fc.weight", 2, fc);
    bt_table_add(tab, "fc.bias", 1, b20);
    bt_table_add(tab, "zero.weight", 2, z);
    bt_table_add(tab, "big.weight", 2, big);
    bt_table_add(tab, "big.bias", 1, bigb);
}

static void fill_table(float *p, float *g, float *m, const bt_tensor_table *tab, uint64_t seed) {
    tu_rng r = {seed};
    memset(p, 0, tab->total * sizeof(float));
    memset(g, 0, tab->total * sizeof(float));
    memset(m, 0, tab->total * sizeof(float));
    for (int t = 0; t < tab->n; t++) {
        const bt_tensor_info *e = &tab->t[t];
        if (strcmp(e->name, "zero.weight")) tu_fill_f32(p + e->offset, e->numel, &r, 0.5);
        tu_fill_f32(g + e->offset, e->numel, &r, 0.01);
        tu_fill_f32(m + e->offset, e->numel, &r, 0.001);
    }
}

static void test_lars_vs_ref(void) {
    bt_tensor_table tab = {0};
    make_table(&tab);
    size_t n = tab.total;
    float *p = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *m = malloc(n * sizeof(float));
    double *pd = malloc(n * sizeof(double)), *gd = malloc(n * sizeof(double)), *md = malloc(n * sizeof(double));
    fill_table(p, g, m, &tab, 77);
    for (size_t i = 0; i < n; i++) {
        pd[i] = p[i];
        gd[i] = g[i];
        md[i] = m[i];
    }
    bt_lars_cfg c;
    bt_lars_default(&c);
    c.lr_weights = 0.3;
    c.lr_biases = 0.01;
    c.weight_decay = 1e-3;
    for (int s = 0; s < 3; s++) {
        bt_lars_step(p, g, m, &tab, &c);
        bt_lars_step_ref_f64(pd, gd, md, &tab, &c);
    }
    for (int t = 0; t < tab.n; t++) {
        const bt_tensor_info *e = &tab.t[t];
        double ep = 0, em = 0, sp = 0, sm = 0, moved = 0;
        for (size_t i = e->offset; i < e->offset + e->numel; i++) {
            ep = fmax(ep, fabs(p[i] - pd[i]));
            em = fmax(em, fabs(m[i] - md[i]));
            sp = fmax(sp, fabs(pd[i]));
            sm = fmax(sm, fabs(md[i]));
        }
        for (size_t i = e->offset; i < e->offset + e->numel; i++) moved = fmax(moved, fabs(md[i]));
        CHECK(ep <= 2e-6 * sp && em <= 2e-6 * sm, "%s: param err %.3g (max %.3g), mom err %.3g (max %.3g)",
              e->name, ep, sp, em, sm);
        CHECK(moved > 0, "%s did not move", e->name);
    }
    free(p); free(g); free(m); free(pd); free(gd); free(md);
    bt_table_free(&tab);
}

/* The chunked norms make the step bitwise independent of the thread count. */
static void test_lars_threads(void) {
    bt_tensor_table tab = {0};
    make_table(&tab);
    size_t n = tab.total;
    float *p[2], *m[2], *g = malloc(n * sizeof(float));
    bt_lars_cfg c;
    bt_lars_default(&c);
    c.lr_weights = 0.3;
    c.lr_biases = 0.01;
    for (int k = 0; k < 2; k++) {
        p[k] = malloc(n * sizeof(float));
        m[k] = malloc(n * sizeof(float));
        fill_table(p[k], g, m[k], &tab, 5);
        bt_set_threads(k + 1);
        bt_lars_step(p[k], g, m[k], &tab, &c);
    }
    bt_set_threads(2);
    CHECK(!memcmp(p[0], p[1], n * sizeof(float)) && !memcmp(m[0], m[1], n * sizeof(float)),
          "1 and 2 threads differ");
    for (int k = 0; k < 2; k++) {
        free(p[k]);
        free(m[k]);
    }
    free(g);
    bt_table_free(&tab);
}

static int write_f32(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(x, sizeof(float), n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}
static int read_f32(const char *path, float *x, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t r = fread(x, sizeof(float), n, f);
    fclose(f);
    return r == n ? 0 : -1;
}

static int read_f64(const char *path, double *x, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t r = fread(x, sizeof(double), n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return r == n && !extra ? 0 : -1;
}

/* Five steps of the reference's LARS under the schedule (2 steps/epoch, 3 epochs, 1 warm-up
 * epoch, batch 512: steps 0-1 warm up from 0, steps 2-4 decay), with fixed random gradients. */
static void test_lars_torch(void) {
    enum { STEPS = 5 };
    if (tu_skip_without_torch()) return;
    bt_tensor_table tab = {0};
    int64_t conv[4] = {4, 3, 3, 3}, fc[2] = {6, 10}, b6[1] = {6}, b4[1] = {4}, z[2] = {3, 5};
    bt_table_add(&tab, "conv.weight", 4, conv);
    bt_table_add(&tab, "bn.weight", 1, b4);
    bt_table_add(&tab, "bn.bias", 1, b4);
    bt_table_add(&tab, "fc.weight", 2, fc);
    bt_table_add(&tab, "fc.bias", 1, b6);
    bt_table_add(&tab, "zero.weight", 2, z);
    size_t n = tab.total;
    float *p = calloc(n, sizeof(float)), *m = calloc(n, sizeof(float)),
          *g = calloc(n * STEPS, sizeof(float)), *tp = malloc(n * sizeof(float)),
          *tm = malloc(n * sizeof(float));
    tu_rng r = {2024};
    for (int t = 0; t < tab.n; t++) {
        const bt_tensor_info *e = &tab.t[t];
        if (strcmp(e->name, "zero.weight")) tu_fill_f32(p + e->offset, e->numel, &r, 0.5);
        for (int s = 0; s < STEPS; s++) tu_fill_f32(g + s * n + e->offset, e->numel, &r, 0.1);
    }
    const char *dir = tu_tmpdir();
    char path[1024], cmd[2048];
    snprintf(path, sizeof path, "%s/spec.txt", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "open %s", path);
    if (!f) return;
    for (int t = 0; t < tab.n; t++) {
        const bt_tensor_info *e = &tab.t[t];
        fprintf(f, "%s %d", e->name, e->ndim);
        for (int d = 0; d < e->ndim; d++) fprintf(f, " %lld", (long long)e->shape[d]);
        fprintf(f, " %zu %zu\n", e->offset, e->numel);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/params0.bin", dir);
    CHECK(write_f32(path, p, n) == 0, "write %s", path);
    snprintf(path, sizeof path, "%s/grads.bin", dir);
    CHECK(write_f32(path, g, n * STEPS) == 0, "write %s", path);
    /* weight decay 0.05 rather than 1e-6 so that its effect is visible at float precision */
    const double wd = 0.05, mom = 0.9, eta = 0.02, lrw = 0.2, lrb = 0.0048;
    snprintf(cmd, sizeof cmd, "%s tests/py/parity_loss_lars.py lars '%s' %d 2 3 1 512 %.17g %.17g %.17g %.17g %.17g",
             tu_python(), dir, STEPS, lrw, lrb, wd, mom, eta);
    int rc = system(cmd);
    CHECK(rc == 0, "python failed (%d): %s", rc, cmd);
    snprintf(path, sizeof path, "%s/params.bin", dir);
    CHECK(read_f32(path, tp, n) == 0, "read %s", path);
    snprintf(path, sizeof path, "%s/mom.bin", dir);
    CHECK(read_f32(path, tm, n) == 0, "read %s", path);
    double *rp = tu_xcalloc(n, sizeof(double)), *rm = tu_xcalloc(n, sizeof(double));
    snprintf(path, sizeof path, "%s/params64.bin", dir);
    CHECK(read_f64(path, rp, n) == 0, "read %s", path);
    snprintf(path, sizeof path, "%s/mom64.bin", dir);
    CHECK(read_f64(path, rm, n) == 0, "read %s", path);

    bt_lars_cfg c;
    bt_lars_default(&c);
    c.weight_decay = wd;
    c.momentum = mom;
    c.eta = eta;
    float *p0 = malloc(n * sizeof(float));
    memcpy(p0, p, n * sizeof(float));
    for (int s = 0; s < STEPS; s++) {
        bt_lr_schedule(&c.lr_weights, &c.lr_biases, s, 2, 3, 1, 512, lrw, lrb);
        bt_lars_step(p, g + s * n, m, &tab, &c);
    }
    /* Judged against the float64 run by PyTorch's own float32 error (tu_parity_check), per
     * output channel: the parameters' change over the steps (the update itself, not the much
     * larger parameter it sits on), and the momentum. */
    double worst = 0;
    for (int t = 0; t < tab.n; t++) {
        const bt_tensor_info *e = &tab.t[t];
        size_t o = e->offset, ne = e->numel, ng = e->ndim >= 2 ? (size_t)e->shape[0] : 1;
        float *dp = tu_xcalloc(ne, 4), *dtp = tu_xcalloc(ne, 4);
        double *drp = tu_xcalloc(ne, 8), moved = 0, sm = 0;
        for (size_t i = 0; i < ne; i++) {
            dp[i] = p[o + i] - p0[o + i], dtp[i] = tp[o + i] - p0[o + i];
            drp[i] = rp[o + i] - p0[o + i];
            moved = fmax(moved, fabs(drp[i])), sm = fmax(sm, fabs(rm[o + i]));
        }
        char what[128];
        CHECK(moved > 0 && sm > 0, "%s: the reference did not move (%.3g, momentum %.3g)", e->name,
              moved, sm);
        snprintf(what, sizeof what, "%s change", e->name);
        worst = fmax(worst, tu_parity_check(what, dp, drp, dtp, ne, ne / ng, ng, TU_PARITY_K));
        snprintf(what, sizeof what, "%s momentum", e->name);
        worst = fmax(worst, tu_parity_check(what, m + o, rm + o, tm + o, ne, ne / ng, ng, TU_PARITY_K));
        free(dp), free(dtp), free(drp);
    }
    printf("  %d LARS steps: error %.2f x PyTorch's float32 error\n", STEPS, worst);
    free(rp), free(rm);
    free(p); free(m); free(g); free(tp); free(tm); free(p0);
    bt_table_free(&tab);
}

int main(void) {
    bt_set_threads(2);
    TEST_RUN(test_schedule_hand);
    TEST_RUN(test_schedule_torch);
    TEST_RUN(test_lars_hand);
    TEST_RUN(test_lars_vs_ref);
    TEST_RUN(test_lars_threads);
    TEST_RUN(test_lars_torch);
    bt_scratch_release();
    return tu_finish();
}
