/* Tests of the Barlow Twins loss (src/train/bt_loss.c): finite differences of both forms in
 * double, both forms against an independent naive computation and each other, float against
 * double, running statistics, error cases, and live parity with the reference's PyTorch code
 * (tests/py/parity_loss_lars.py). */
#include "barlow/error.h"
#include "barlow/loss.h"
#include "barlow/scratch.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Two correlated views with per-column offsets and scales, so the BN matters. z1, z2 (N, D). */
static void make_views(double *z1, double *z2, int N, int D, uint64_t seed) {
    tu_rng r = {seed};
    for (int d = 0; d < D; d++) {
        double off = 2 * tu_normal(&r), sc = 0.5 + tu_uniform(&r);
        for (int n = 0; n < N; n++) {
            double x = tu_normal(&r);
            z1[(size_t)n * D + d] = off + sc * x;
            z2[(size_t)n * D + d] = -off + sc * (0.7 * x + 0.5 * tu_normal(&r));
        }
    }
}

static void to_f32(float *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
}
static void to_f64(double *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i];
}
static double relerr(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

/* Independent textbook computation: explicit BN, explicit (D, D) c, plain loops. */
static void naive_loss(double *loss, double *on, double *off, const double *z1, const double *z2,
                       int N, int D, double lambda) {
    double *a = malloc(sizeof(double) * N * D), *b = malloc(sizeof(double) * N * D);
    const double *zs[2] = {z1, z2};
    double *outs[2] = {a, b};
    for (int v = 0; v < 2; v++)
        for (int d = 0; d < D; d++) {
            double m = 0, var = 0;
            for (int n = 0; n < N; n++) m += zs[v][n * D + d];
            m /= N;
            for (int n = 0; n < N; n++) var += (zs[v][n * D + d] - m) * (zs[v][n * D + d] - m);
            var /= N;
            for (int n = 0; n < N; n++) outs[v][n * D + d] = (zs[v][n * D + d] - m) / sqrt(var + 1e-5);
        }
    *on = *off = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double c = 0;
            for (int n = 0; n < N; n++) c += a[n * D + i] * b[n * D + j];
            c /= N;
            if (i == j) *on += (c - 1) * (c - 1);
            else *off += c * c;
        }
    *loss = *on + lambda * *off;
    free(a);
    free(b);
}

/* ---- finite differences in double ----------------------------------------------------- */
typedef struct {
    double *z; /* (2, N, D): z1 then z2, the variables */
    int N, D, form;
    double lambda;
} fd_ctx;

static double fd_loss(void *p) {
    fd_ctx *c = p;
    bt_loss_result r;
    size_t nd = (size_t)c->N * c->D;
    if (bt_twins_loss_f64(&r, NULL, NULL, c->z, c->z + nd, c->N, c->D, c->lambda, c->form) != BT_OK)
        return NAN;
    return r.loss;
}

static void check_fd(int N, int D, int form, double lambda) {
    size_t nd = (size_t)N * D;
    double *z = malloc(sizeof(double) * 2 * nd), *g = calloc(2 * nd, sizeof(double));
    make_views(z, z + nd, N, D, 100 + N * 31 + D);
    bt_loss_result r;
    int rc = bt_twins_loss_f64(&r, g, g + nd, z, z + nd, N, D, lambda, form);
    CHECK(rc == BT_OK, "rc %d: %s", rc, bt_error());
    CHECK(r.form_used == form, "form %d used, %d asked", r.form_used, form);
    fd_ctx c = {z, N, D, form, lambda};
    double err = tu_fd_check(fd_loss, &c, z, g, 2 * nd, 1e-5, 400);
    CHECK(err < 1e-6, "N=%d D=%d form %d lambda %g: fd rel err %.3g", N, D, form, lambda, err);
    free(z);
    free(g);
}

static void test_fd_direct(void) {
    check_fd(8, 5, BT_LOSS_DIRECT, 0.0051);
    check_fd(6, 13, BT_LOSS_DIRECT, 0.0051);
    check_fd(7, 7, BT_LOSS_DIRECT, 0.3);
    check_fd(3, 4, BT_LOSS_DIRECT, 0.3);
    check_fd(5, 1, BT_LOSS_DIRECT, 0.3);
}

static void test_fd_gram(void) {
    check_fd(8, 5, BT_LOSS_GRAM, 0.0051);
    check_fd(6, 13, BT_LOSS_GRAM, 0.0051);
    check_fd(7, 7, BT_LOSS_GRAM, 0.3);
    check_fd(3, 4, BT_LOSS_GRAM, 0.3);
    check_fd(5, 1, BT_LOSS_GRAM, 0.3);
}

/* ---- forms against the naive computation and each other, in double ------------------- */
static void check_forms_f64(int N, int D, double lambda) {
    size_t nd = (size_t)N * D;
    double *z1 = malloc(sizeof(double) * nd), *z2 = malloc(sizeof(double) * nd);
    double *g[2][2];
    for (int f = 0; f < 2; f++)
        for (int v = 0; v < 2; v++) g[f][v] = calloc(nd, sizeof(double));
    make_views(z1, z2, N, D, 7 + N * D);
    double nl, non, noff;
    naive_loss(&nl, &non, &noff, z1, z2, N, D, lambda);
    bt_loss_result r[2];
    for (int f = 0; f < 2; f++) {
        int rc = bt_twins_loss_f64(&r[f], g[f][0], g[f][1], z1, z2, N, D, lambda, f + 1);
        CHECK(rc == BT_OK, "rc %d: %s", rc, bt_error());
        CHECK(relerr(r[f].loss, nl) < 1e-12, "N=%d D=%d form %d: loss %.17g naive %.17g", N, D,
              f + 1, r[f].loss, nl);
        CHECK(relerr(r[f].on_diag, non) < 1e-12, "form %d: on %.17g naive %.17g", f + 1,
              r[f].on_diag, non);
        CHECK(relerr(r[f].off_diag, noff) < 1e-12, "form %d: off %.17g naive %.17g", f + 1,
              r[f].off_diag, noff);
    }
    for (int v = 0; v < 2; v++) {
        double gm = tu_maxabs_f64(g[0][v], nd), d = tu_maxabsdiff_f64(g[0][v], g[1][v], nd);
        CHECK(gm > 0 && d <= 1e-12 * gm, "N=%d D=%d view %d: direct vs gram grad diff %.3g (max %.3g)",
              N, D, v, d, gm);
    }
    free(z1);
    free(z2);
    for (int f = 0; f < 2; f++)
        for (int v = 0; v < 2; v++) free(g[f][v]);
}

static void test_forms_agree_f64(void) {
    check_forms_f64(8, 5, 0.0051);
    check_forms_f64(6, 13, 0.0051);
    check_forms_f64(7, 7, 0.3);
    check_forms_f64(20, 70, 0.0051);
    check_forms_f64(64, 300, 0.0051); /* N*D above the OpenMP threshold: split column ranges */
}

/* ---- float against double, and the forms against each other in float ------------------ */
static void check_f32(int N, int D, float lambda) {
    size_t nd = (size_t)N * D;
    double *z1 = malloc(sizeof(double) * nd), *z2 = malloc(sizeof(double) * nd);
    float *f1 = malloc(sizeof(float) * nd), *f2 = malloc(sizeof(float) * nd);
    double *r1 = calloc(nd, sizeof(double)), *r2 = calloc(nd, sizeof(double));
    double *t = malloc(sizeof(double) * nd);
    make_views(z1, z2, N, D, 99 + N + D);
    to_f32(f1, z1, nd);
    to_f32(f2, z2, nd);
    to_f64(z1, f1, nd); /* the double reference sees exactly the float inputs */
    to_f64(z2, f2, nd);
    bt_loss_result rd, rf[2];
    CHECK(bt_twins_loss_f64(&rd, r1, r2, z1, z2, N, D, lambda, BT_LOSS_DIRECT) == BT_OK, "%s",
          bt_error());
    float *gf[2][2];
    for (int f = 0; f < 2; f++) {
        gf[f][0] = calloc(nd, sizeof(float));
        gf[f][1] = calloc(nd, sizeof(float));
        int rc = bt_twins_loss(&rf[f], gf[f][0], gf[f][1], f1, f2, N, D, lambda, f + 1, NULL, NULL);
        CHECK(rc == BT_OK, "rc %d: %s", rc, bt_error());
        CHECK(relerr(rf[f].loss, rd.loss) < 1e-5, "N=%d D=%d form %d: float loss %.9g double %.9g",
              N, D, f + 1, rf[f].loss, rd.loss);
        CHECK(relerr(rf[f].off_diag, rd.off_diag) < 1e-5, "form %d: off %.9g vs %.9g", f + 1,
              rf[f].off_diag, rd.off_diag);
        CHECK(fabs(rf[f].on_diag - rd.on_diag) < 1e-5 * fmax(1, rd.on_diag), "form %d: on %.9g vs %.9g",
              f + 1, rf[f].on_diag, rd.on_diag);
        for (int v = 0; v < 2; v++) {
            to_f64(t, gf[f][v], nd);
            const double *ref = v ? r2 : r1;
            double gm = tu_maxabs_f64(ref, nd), d = tu_maxabsdiff_f64(t, ref, nd);
            CHECK(d <= 1e-4 * gm, "N=%d D=%d form %d view %d: grad diff %.3g (max %.3g)", N, D,
                  f + 1, v, d, gm);
        }
    }
    /* the two float forms round differently but must agree to float accuracy */
    CHECK(relerr(rf[0].loss, rf[1].loss) < 1e-5, "float direct %.9g gram %.9g", rf[0].loss,
          rf[1].loss);
    for (int f = 0; f < 2; f++) {
        free(gf[f][0]);
        free(gf[f][1]);
    }
    free(z1); free(z2); free(f1); free(f2); free(r1); free(r2); free(t);
}

static void test_f32_vs_f64(void) {
    check_f32(8, 5, 0.0051f);
    check_f32(6, 13, 0.0051f);
    check_f32(64, 300, 0.0051f); /* big enough for the OpenMP paths */
    check_f32(300, 64, 0.0051f);
}

/* Backward accumulates (+=), forward-only leaves nothing behind, and repeats are bitwise equal. */
static void test_accumulate_and_repeat(void) {
    int N = 64, D = 300;
    size_t nd = (size_t)N * D;
    double *z1 = malloc(sizeof(double) * nd), *z2 = malloc(sizeof(double) * nd);
    float *f1 = malloc(sizeof(float) * nd), *f2 = malloc(sizeof(float) * nd);
    float *a1 = calloc(nd, sizeof(float)), *a2 = calloc(nd, sizeof(float));
    float *b1 = malloc(sizeof(float) * nd), *b2 = malloc(sizeof(float) * nd);
    make_views(z1, z2, N, D, 5);
    to_f32(f1, z1, nd);
    to_f32(f2, z2, nd);
    for (int form = 1; form <= 2; form++) {
        memset(a1, 0, nd * sizeof(float));
        memset(a2, 0, nd * sizeof(float));
        bt_loss_result r0, r1, r2;
        CHECK(bt_twins_loss(&r0, a1, a2, f1, f2, N, D, 0.0051f, form, NULL, NULL) == BT_OK, "%s", bt_error());
        for (size_t i = 0; i < nd; i++) {
            b1[i] = 1.5f + a1[i] * 0; /* prefilled gradient buffers */
            b2[i] = -2.0f;
        }
        CHECK(bt_twins_loss(&r1, b1, b2, f1, f2, N, D, 0.0051f, form, NULL, NULL) == BT_OK, "%s", bt_error());
        CHECK(bt_twins_loss(&r2, NULL, NULL, f1, f2, N, D, 0.0051f, form, NULL, NULL) == BT_OK, "%s", bt_error());
        CHECK(r0.loss == r1.loss && r1.loss == r2.loss, "form %d: repeat losses %.17g %.17g %.17g",
              form, r0.loss, r1.loss, r2.loss);
        double e = 0;
        for (size_t i = 0; i < nd; i++) {
            e = fmax(e, fabs(b1[i] - (1.5f + a1[i])));
            e = fmax(e, fabs(b2[i] - (-2.0f + a2[i])));
        }
        CHECK(e < 1e-6, "form %d: accumulation off by %.3g", form, e);
    }
    free(z1); free(z2); free(f1); free(f2); free(a1); free(a2); free(b1); free(b2);
}

/* Running statistics: two momentum-0.1 updates, z1 then z2, with the unbiased variance. */
static void test_running_stats(void) {
    int N = 9, D = 70;
    size_t nd = (size_t)N * D;
    double *z1 = malloc(sizeof(double) * nd), *z2 = malloc(sizeof(double) * nd);
    float *f1 = malloc(sizeof(float) * nd), *f2 = malloc(sizeof(float) * nd);
    float rm[70], rv[70];
    make_views(z1, z2, N, D, 11);
    to_f32(f1, z1, nd);
    to_f32(f2, z2, nd);
    for (int d = 0; d < D; d++) {
        rm[d] = 0.25f * d;
        rv[d] = 1.0f + 0.1f * d;
    }
    bt_loss_result r;
    CHECK(bt_twins_loss(&r, NULL, NULL, f1, f2, N, D, 0.0051f, BT_LOSS_AUTO, rm, rv) == BT_OK, "%s",
          bt_error());
    double em = 0, ev = 0;
    for (int d = 0; d < D; d++) {
        double m = 0.25 * d, v = 1.0 + 0.1 * d;
        const float *zs[2] = {f1, f2};
        for (int k = 0; k < 2; k++) {
            double mu = 0, s = 0;
            for (int n = 0; n < N; n++) mu += zs[k][n * D + d];
            mu /= N;
            for (int n = 0; n < N; n++) s += (zs[k][n * D + d] - mu) * (zs[k][n * D + d] - mu);
            m = 0.9 * m + 0.1 * mu;
            v = 0.9 * v + 0.1 * s / (N - 1);
        }
        em = fmax(em, fabs(rm[d] - m) / fmax(1, fabs(m)));
        ev = fmax(ev, fabs(rv[d] - v) / fmax(1, fabs(v)));
    }
    CHECK(em < 1e-6 && ev < 1e-6, "running mean err %.3g, var err %.3g", em, ev);
    free(z1); free(z2); free(f1); free(f2);
}

static void test_errors(void) {
    float z[16] = {0}, g1[16], g2[16], rm[16], rv[16];
    bt_loss_result r;
    int rc = bt_twins_loss(&r, g1, g2, z, z, 1, 5, 0.0051f, BT_LOSS_AUTO, rm, rv);
    CHECK(rc == BT_EINVAL, "N=1 gave %d", rc);
    CHECK(strstr(bt_error(), "Expected more than 1 value per channel when training") != NULL,
          "message: %s", bt_error());
    CHECK(bt_twins_loss(&r, g1, g2, z, z, 4, 0, 0.0051f, 0, NULL, NULL) == BT_EINVAL, "D=0");
    CHECK(bt_twins_loss(&r, g1, g2, NULL, z, 4, 4, 0.0051f, 0, NULL, NULL) == BT_EINVAL, "NULL z1");
    CHECK(bt_twins_loss(NULL, g1, g2, z, z, 4, 4, 0.0051f, 0, NULL, NULL) == BT_EINVAL, "NULL res");
    CHECK(bt_twins_loss(&r, g1, NULL, z, z, 4, 4, 0.0051f, 0, NULL, NULL) == BT_EINVAL, "one grad");
    CHECK(bt_twins_loss(&r, g1, g2, z, z, 4, 4, 0.0051f, 7, NULL, NULL) == BT_EINVAL, "bad form");
    double zd[16] = {0}, gd[16];
    CHECK(bt_twins_loss_f64(&r, gd, gd, zd, zd, 1, 3, 0.0051, 0) == BT_EINVAL, "f64 N=1");
    /* a NaN input makes the loss non-finite; the gradients must be left untouched */
    for (int i = 0; i < 16; i++) {
        z[i] = (float)i;
        g1[i] = g2[i] = 3.0f;
    }
    z[5] = NAN;
    for (int form = 1; form <= 2; form++) {
        rc = bt_twins_loss(&r, g1, g2, z, z, 4, 4, 0.0051f, form, NULL, NULL);
        CHECK(rc == BT_ENUM, "NaN input, form %d: rc %d", form, rc);
    }
    int same = 1;
    for (int i = 0; i < 16; i++) same &= g1[i] == 3.0f && g2[i] == 3.0f;
    CHECK(same, "gradients written on a non-finite loss");
}

static void test_choose(void) {
    CHECK(bt_twins_loss_choose(256, 8192) == BT_LOSS_GRAM, "256x8192");
    CHECK(bt_twins_loss_choose(8, 5) == BT_LOSS_DIRECT, "8x5");
    CHECK(bt_twins_loss_choose(7, 7) == BT_LOSS_DIRECT, "7x7");
    CHECK(bt_twins_loss_choose(6, 13) == BT_LOSS_GRAM, "6x13");
    float z1[6 * 13], z2[6 * 13];
    tu_rng r = {3};
    tu_fill_f32(z1, 78, &r, 1);
    tu_fill_f32(z2, 78, &r, 1);
    bt_loss_result res;
    CHECK(bt_twins_loss(&res, NULL, NULL, z1, z2, 6, 13, 0.0051f, BT_LOSS_AUTO, NULL, NULL) == BT_OK, "%s", bt_error());
    CHECK(res.form_used == BT_LOSS_GRAM, "AUTO used %d", res.form_used);
    CHECK(bt_twins_loss(&res, NULL, NULL, z1, z2, 13, 6, 0.0051f, BT_LOSS_AUTO, NULL, NULL) == BT_OK, "%s", bt_error());
    CHECK(res.form_used == BT_LOSS_DIRECT, "AUTO used %d", res.form_used);
}

/* ---- live PyTorch parity -------------------------------------------------------------- */
static int write_f32(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(x, sizeof(float), n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

typedef struct {
    int N, D;
    float lambda;
    char dir[600];
    float *f1, *f2; /* (N, D) inputs written for PyTorch */
} torch_case;

/* Writes the inputs of one case into its own subdirectory and appends its arguments to cmd. */
static void torch_prepare(torch_case *c, int idx, char *cmd, size_t cap) {
    size_t nd = (size_t)c->N * c->D;
    char path[1024];
    double *z1 = malloc(sizeof(double) * nd), *z2 = malloc(sizeof(double) * nd);
    c->f1 = malloc(sizeof(float) * nd);
    c->f2 = malloc(sizeof(float) * nd);
    make_views(z1, z2, c->N, c->D, 4242 + c->N + c->D);
    to_f32(c->f1, z1, nd);
    to_f32(c->f2, z2, nd);
    snprintf(c->dir, sizeof c->dir, "%s/loss%d", tu_tmpdir(), idx);
    snprintf(path, sizeof path, "mkdir -p '%s'", c->dir);
    CHECK(system(path) == 0, "%s", path);
    snprintf(path, sizeof path, "%s/z1.bin", c->dir);
    CHECK(write_f32(path, c->f1, nd) == 0, "write %s", path);
    snprintf(path, sizeof path, "%s/z2.bin", c->dir);
    CHECK(write_f32(path, c->f2, nd) == 0, "write %s", path);
    size_t len = strlen(cmd);
    snprintf(cmd + len, cap - len, " '%s' %d %d %.9g", c->dir, c->N, c->D, (double)c->lambda);
    free(z1);
    free(z2);
}

/* Reads n float32 values (peer) or float64 values (ref) from DIR/<name>.bin. */
static int read_bin(const char *dir, const char *name, void *dst, size_t n, size_t size) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(dst, size, n, f) : 0;
    int extra = f ? fgetc(f) != EOF : 0;
    if (f) fclose(f);
    CHECK(got == n && !extra, "read %s: %zu of %zu values%s", path, got, n, extra ? ", file longer" : "");
    return got == n && !extra;
}

static int read_parts(const char *dir, const char *tag, double parts[3]) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s_loss.txt", dir, tag);
    FILE *f = fopen(path, "r");
    int ok = f && fscanf(f, "%lf %lf %lf", &parts[0], &parts[1], &parts[2]) == 3;
    if (f) fclose(f);
    CHECK(ok, "cannot read %s", path);
    return ok;
}

/* Both forms against torch in float64, judged by torch's own float32 error (tu_parity_check):
 * the loss parts as one group, the input gradients per feature (column), the running
 * statistics as one group each. */
static void torch_verify(torch_case *c) {
    int N = c->N, D = c->D;
    float lambda = c->lambda;
    size_t nd = (size_t)N * D;
    double *r1 = tu_xcalloc(nd, 8), *r2 = tu_xcalloc(nd, 8), *rrm = tu_xcalloc(D, 8),
           *rrv = tu_xcalloc(D, 8);
    float *p1 = tu_xcalloc(nd, 4), *p2 = tu_xcalloc(nd, 4), *prm = tu_xcalloc(D, 4),
          *prv = tu_xcalloc(D, 4);
    double rparts[3], pparts[3];
    int ok = read_parts(c->dir, "ref", rparts) & read_parts(c->dir, "peer", pparts);
    ok &= read_bin(c->dir, "ref_dz1", r1, nd, 8) & read_bin(c->dir, "ref_dz2", r2, nd, 8);
    ok &= read_bin(c->dir, "ref_rm", rrm, D, 8) & read_bin(c->dir, "ref_rv", rrv, D, 8);
    ok &= read_bin(c->dir, "peer_dz1", p1, nd, 4) & read_bin(c->dir, "peer_dz2", p2, nd, 4);
    ok &= read_bin(c->dir, "peer_rm", prm, D, 4) & read_bin(c->dir, "peer_rv", prv, D, 4);
    for (int form = 1; form <= 2 && ok; form++) {
        float *g1 = tu_xcalloc(nd, 4), *g2 = tu_xcalloc(nd, 4);
        float *rm = tu_xcalloc(D, 4), *rv = tu_xcalloc(D, 4);
        for (int d = 0; d < D; d++) rv[d] = 1; /* PyTorch's initial running stats */
        bt_loss_result r;
        int rc = bt_twins_loss(&r, g1, g2, c->f1, c->f2, N, D, lambda, form, rm, rv);
        CHECK(rc == BT_OK, "rc %d: %s", rc, bt_error());
        char what[160];
        float ours[3] = {(float)r.loss, (float)r.on_diag, (float)r.off_diag};
        float peer[3] = {(float)pparts[0], (float)pparts[1], (float)pparts[2]};
        snprintf(what, sizeof what, "N=%d D=%d form %d: loss, on_diag, off_diag", N, D, form);
        double q = tu_parity_check(what, ours, rparts, peer, 3, 3, 1, TU_PARITY_K);
        if (getenv("TU_VERBOSE")) printf("    loss parts %.2f\n", q);
        snprintf(what, sizeof what, "N=%d D=%d form %d: dz1", N, D, form);
        q = fmax(q, tu_parity_check(what, g1, r1, p1, nd, 1, D, TU_PARITY_K));
        snprintf(what, sizeof what, "N=%d D=%d form %d: dz2", N, D, form);
        q = fmax(q, tu_parity_check(what, g2, r2, p2, nd, 1, D, TU_PARITY_K));
        snprintf(what, sizeof what, "N=%d D=%d form %d: running mean", N, D, form);
        q = fmax(q, tu_parity_check(what, rm, rrm, prm, D, D, 1, TU_PARITY_K));
        snprintf(what, sizeof what, "N=%d D=%d form %d: running var", N, D, form);
        q = fmax(q, tu_parity_check(what, rv, rrv, prv, D, D, 1, TU_PARITY_K));
        printf("  N=%d D=%d lambda %g form %d: error %.2f x PyTorch's float32 error\n", N, D,
               (double)lambda, form, q);
        free(g1), free(g2), free(rm), free(rv);
    }
    free(c->f1), free(c->f2);
    free(r1), free(r2), free(rrm), free(rrv), free(p1), free(p2), free(prm), free(prv);
}

static void test_torch_parity(void) {
    if (tu_skip_without_torch()) return;
    torch_case cs[4] = {
        {16, 40, 0.0051f, "", NULL, NULL}, /* D > N: AUTO would pick GRAM */
        {40, 12, 0.0051f, "", NULL, NULL}, /* D < N */
        {24, 96, 0.05f, "", NULL, NULL},   /* larger lambda: off-diagonal gradients dominate */
        {48, 400, 0.0051f, "", NULL, NULL}, /* above the OpenMP threshold */
    };
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s tests/py/parity_loss_lars.py loss", tu_python());
    for (int i = 0; i < 4; i++) torch_prepare(&cs[i], i, cmd, sizeof cmd);
    int rc = system(cmd);
    CHECK(rc == 0, "python failed (%d): %s", rc, cmd);
    for (int i = 0; i < 4; i++) torch_verify(&cs[i]);
}

int main(void) {
    bt_set_threads(2);
    TEST_RUN(test_fd_direct);
    TEST_RUN(test_fd_gram);
    TEST_RUN(test_forms_agree_f64);
    TEST_RUN(test_f32_vs_f64);
    TEST_RUN(test_accumulate_and_repeat);
    TEST_RUN(test_running_stats);
    TEST_RUN(test_errors);
    TEST_RUN(test_choose);
    TEST_RUN(test_torch_parity);
    bt_scratch_release();
    return tu_finish();
}
