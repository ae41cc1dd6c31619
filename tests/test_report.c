/* `barlow report`: the cross-correlation corner and the PCA against direct computations,
 * then whole reports on fake run directories (a stats.txt written here and checkpoints of a
 * tiny model on builtin:shapes) checked for every PNG, each read back with libpng at its
 * stated size, and the error paths. The command's source is compiled into this program
 * (tests link only libbarlow), so its static helpers are testable too.
 * Set BARLOW_KEEP_PNG=DIR to keep the full report's pictures in DIR for looking at. */
#include "cli/args.c"
#include "cli/cmd_report.c"
#include "testutil.h"
#include <png.h>

/* ---- pieces ---------------------------------------------------------------------------- */

static void test_corr_corner(void) {
    enum { N = 24, D = 10, K = 6 };
    float z1[N * D], z2[N * D], c[K * K];
    tu_rng r = {11};
    tu_fill_f32(z1, N * D, &r, 2.0);
    for (int i = 0; i < N * D; i++) z2[i] = 0.5f * z1[i] + (float)tu_normal(&r) + 3.0f;
    CHECK(rp_corr_corner(c, z1, z2, N, D, K, 1e-5) == BT_OK, "corr");
    /* Pearson correlation in double, two-pass, as an independent reference */
    double maxerr = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
            for (int n = 0; n < N; n++) {
                ma += z1[n * D + i];
                mb += z2[n * D + j];
            }
            ma /= N;
            mb /= N;
            for (int n = 0; n < N; n++) {
                double a = z1[n * D + i] - ma, b = z2[n * D + j] - mb;
                sab += a * b;
                saa += a * a;
                sbb += b * b;
            }
            /* BN's eps shrinks the correlation by sqrt(var/(var+eps)) per side: negligible */
            double want = sab / sqrt(saa * sbb);
            maxerr = fmax(maxerr, fabs(c[i * K + j] - want));
        }
    CHECK(maxerr < 1e-4, "max |C - pearson| %g", maxerr);
    /* the same view twice: a unit diagonal */
    CHECK(rp_corr_corner(c, z1, z1, N, D, K, 1e-5) == BT_OK, "corr");
    for (int i = 0; i < K; i++) CHECK(fabs(c[i * K + i] - 1) < 1e-4, "C_ii %g", c[i * K + i]);
}

/* Points a*u + b*v + small noise with var(a) = 9 var(b): PC1 must recover a and PC2 b (up
 * to the centring), with variance fractions near 0.9 and 0.1; both the n > d and n < d
 * paths. */
static void check_pca(int n, int d) {
    float *x = calloc((size_t)n * d, sizeof(float)), *pc = malloc(sizeof(float) * 2 * (size_t)n);
    double *a = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
    double *u = malloc(sizeof(double) * d), *v = malloc(sizeof(double) * d);
    tu_rng r = {(uint64_t)(n * 131 + d)};
    /* orthonormal u, v: two disjoint coordinate sets */
    for (int j = 0; j < d; j++) {
        u[j] = j < d / 2 ? 1 / sqrt(d / 2) : 0;
        v[j] = j >= d / 2 ? 1 / sqrt(d - d / 2) : 0;
    }
    for (int i = 0; i < n; i++) {
        a[i] = 3 * tu_normal(&r);
        b[i] = tu_normal(&r);
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = (float)(a[i] * u[j] + b[i] * v[j] + 0.01 * tu_normal(&r) + 5);
    }
    double frac[2];
    CHECK(rp_pca2(pc, frac, x, n, d) == BT_OK, "pca");
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) {
        ma += a[i] / n;
        mb += b[i] / n;
    }
    /* The data lies (up to the noise) in span(u, v) with coordinates (a, b): its principal
     * axes are the eigenvectors of the 2x2 covariance of (a, b), in closed form. */
    double saa = 0, sbb = 0, sab = 0;
    for (int i = 0; i < n; i++) {
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
        sab += (a[i] - ma) * (b[i] - mb);
    }
    double tr = saa + sbb, det = saa * sbb - sab * sab, disc = sqrt(tr * tr / 4 - det);
    double l1 = tr / 2 + disc, l2 = tr / 2 - disc;
    double e[2][2] = {{sab, l1 - saa}, {sab, l2 - saa}}; /* eigenvectors of [[saa,sab],[sab,sbb]] */
    for (int k = 0; k < 2; k++) {
        double nrm = hypot(e[k][0], e[k][1]);
        e[k][0] /= nrm;
        e[k][1] /= nrm;
        double ep = 0, em = 0;
        for (int i = 0; i < n; i++) {
            double want = (a[i] - ma) * e[k][0] + (b[i] - mb) * e[k][1];
            ep = fmax(ep, fabs(pc[2 * i + k] - want));
            em = fmax(em, fabs(pc[2 * i + k] + want));
        }
        CHECK(fmin(ep, em) < 0.05, "n %d d %d: PC%d off by %g", n, d, k + 1, fmin(ep, em));
    }
    CHECK(fabs(frac[0] - l1 / tr) < 0.01 && fabs(frac[1] - l2 / tr) < 0.01,
          "n %d d %d: fractions %g %g, want about %g %g", n, d, frac[0], frac[1], l1 / tr,
          l2 / tr);
    free(x);
    free(pc);
    free(a);
    free(b);
    free(u);
    free(v);
}

static void test_pca(void) {
    check_pca(200, 12);
    check_pca(12, 40);
}

static void test_stats_parse(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/stats_parse.txt", tu_tmpdir());
    FILE *f = fopen(path, "w");
    fprintf(f, "barlow pretrain builtin:shapes --epochs 2\n"
               "{\"epoch\":0,\"step\":0,\"lr_weights\":0.1,\"lr_biases\":0.01,\"loss\":9.5,"
               "\"on_diag\":4,\"off_diag\":1000,\"images_per_s\":10,\"time\":0}\n"
               "this is not json\n"
               "\n"
               "{\"epoch\":0,\"knn_top1\":31.5,\"knn_top5\":80.25}\n"
               "barlow pretrain builtin:shapes --epochs 2\n"
               "{\"epoch\":1,\"step\":5,\"lr_weights\":0.2,\"lr_biases\":0.02,\"loss\":7,"
               "\"on_diag\":3,\"off_diag\":800,\"images_per_s\":10,\"time\":1,"
               "\"knn_top1\":40,\"knn_top5\":90}\n");
    fclose(f);
    rp_stats s;
    memset(&s, 0, sizeof s);
    CHECK(rp_stats_read(&s, path) == BT_OK, "read: %s", bt_error());
    CHECK(s.step.n == 2 && s.step.v[1] == 5 && s.loss.v[0] == 9.5 && s.off.v[1] == 800 &&
          s.lrb.v[1] == 0.02, "training lines");
    CHECK(s.kepoch.n == 2 && s.top1.v[0] == 31.5 && s.top5.v[1] == 90 && s.kepoch.v[1] == 1,
          "knn lines");
    CHECK(s.skipped == 1, "skipped %d (the command lines are not warned about)", s.skipped);
    rp_stats_free(&s);
}

/* ---- whole reports ----------------------------------------------------------------------- */

static const char *ARCH = "resnet18-cifar:w=0.125", *PROJ = "16-80"; /* D = 80 > 64 */

static void write_ckpt(const char *path, uint64_t seed, long step) {
    bt_model *m = NULL;
    CHECK(bt_model_new(&m, ARCH, PROJ) == BT_OK, "model: %s", bt_error());
    if (!m) return;
    bt_model_init(m, seed);
    char config[512];
    snprintf(config, sizeof config,
             "{\"data\":\"builtin:shapes:train=64,test=60\",\"arch\":\"%s\",\"projector\":\"%s\","
             "\"preset\":\"cifar\",\"aug\":[\"solarize-p=0\"],\"lambd\":0.0051,\"seed\":3}",
             ARCH, PROJ);
    bt_ckpt_state st = {.epoch = 1, .next_batch = 0, .step = step, .steps_per_epoch = 2,
                        .seed = 3, .bn_batches = 0, .config = config};
    CHECK(bt_ckpt_save(path, m, &st) == BT_OK, "save %s: %s", path, bt_error());
    bt_model_free(m);
}

static void write_stats(const char *dir, int nlines, int knn) {
    char path[1200];
    snprintf(path, sizeof path, "%s/stats.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "barlow pretrain builtin:shapes --epochs 10\n");
    for (int i = 0; i < nlines; i++) {
        double t = i / (double)(nlines > 1 ? nlines - 1 : 1);
        double lrw = 0.2 * (t < 0.2 ? t / 0.2 : 0.5 * (1 + cos(M_PI * (t - 0.2) / 0.8)));
        double on = 60 * exp(-4 * t) + 1, off = 3000 * exp(-2 * t) + 200;
        fprintf(f, "{\"epoch\":%d,\"step\":%d,\"lr_weights\":%g,\"lr_biases\":%g,\"loss\":%g,"
                   "\"on_diag\":%g,\"off_diag\":%g,\"images_per_s\":100,\"time\":%d}\n",
                i / 3, i * 10, lrw, lrw * 0.024, on + 0.0051 * off, on, off, i);
        if (knn && i % 3 == 2)
            fprintf(f, "{\"epoch\":%d,\"knn_top1\":%g,\"knn_top5\":%g}\n", i / 3,
                    20 + 40 * t, 55 + 35 * t);
    }
    fclose(f);
}

/* Reads a PNG fully with libpng's simplified API; returns 1 when valid and w x h. */
static int png_ok(const char *path, int w, int h) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        fprintf(stderr, "  %s: %s\n", path, im.message);
        return 0;
    }
    im.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
    int ok = buf && png_image_finish_read(&im, NULL, buf, 0, NULL);
    /* a chart is mostly white background but not only: something was drawn */
    size_t nonwhite = 0;
    for (size_t i = 0; ok && i < (size_t)im.width * im.height; i++)
        nonwhite += buf[3 * i] < 250 || buf[3 * i + 1] < 250 || buf[3 * i + 2] < 250;
    if (ok && (nonwhite < 500 || nonwhite > (size_t)im.width * im.height * 9 / 10)) {
        fprintf(stderr, "  %s: %zu non-white pixels\n", path, nonwhite);
        ok = 0;
    }
    free(buf);
    if (ok && ((int)im.width != w || (int)im.height != h)) {
        fprintf(stderr, "  %s: %ux%u, want %dx%d\n", path, im.width, im.height, w, h);
        ok = 0;
    }
    return ok;
}

static int run_report(const char *run, const char *out) {
    char *argv[12];
    int argc = 0;
    argv[argc++] = "report";
    argv[argc++] = (char *)run;
    if (out) {
        argv[argc++] = "--out";
        argv[argc++] = (char *)out;
    }
    argv[argc++] = "--batch";
    argv[argc++] = "32";
    argv[argc++] = "--pca-items";
    argv[argc++] = "60";
    argv[argc++] = "--workers";
    argv[argc++] = "2";
    argv[argc] = NULL;
    return bt_cmd_report(argc, argv);
}

static void check_all(const char *out) {
    static const char *names[5] = {"loss", "lr", "knn", "corr", "pca"};
    static const int w[5] = {800, 800, 800, 1000, 800}, h[5] = {500, 500, 500, 500, 500};
    for (int i = 0; i < 5; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s.png", out, names[i]);
        CHECK(png_ok(p, w[i], h[i]), "%s", p);
    }
}

static void test_full_report(void) {
    char run[1024], out[1024], p[1100];
    snprintf(run, sizeof run, "%s/run_full", tu_tmpdir());
    CHECK(mkdir(run, 0777) == 0, "mkdir");
    write_stats(run, 30, 1);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", run);
    write_ckpt(p, 7, 300);
    snprintf(p, sizeof p, "%s/checkpoint-first.safetensors", run);
    write_ckpt(p, 8, 2);
    const char *keep = getenv("BARLOW_KEEP_PNG");
    snprintf(out, sizeof out, "%s", keep ? keep : run);
    CHECK(run_report(run, keep ? out : NULL) == 0, "report: %s", bt_error());
    check_all(out);
}

/* No first checkpoint and no kNN lines: one corr panel and the kNN placeholder; the output
 * goes to a new --out directory. */
static void test_report_partial(void) {
    char run[1024], out[1100], p[1100];
    snprintf(run, sizeof run, "%s/run_partial", tu_tmpdir());
    snprintf(out, sizeof out, "%s/pictures", run);
    CHECK(mkdir(run, 0777) == 0, "mkdir");
    write_stats(run, 1, 0);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", run);
    write_ckpt(p, 7, 2);
    CHECK(run_report(run, out) == 0, "report: %s", bt_error());
    check_all(out);
    const char *keep = getenv("BARLOW_KEEP_PNG");
    if (keep) {
        char k[1200];
        snprintf(k, sizeof k, "%s/partial", keep);
        CHECK(run_report(run, k) == 0, "report: %s", bt_error());
    }
}

/* No checkpoint at all: placeholders for the model charts, still success. */
static void test_report_no_checkpoint(void) {
    char run[1024];
    snprintf(run, sizeof run, "%s/run_nockpt", tu_tmpdir());
    CHECK(mkdir(run, 0777) == 0, "mkdir");
    write_stats(run, 8, 1);
    CHECK(run_report(run, NULL) == 0, "report: %s", bt_error());
    check_all(run);
}

static void test_report_errors(void) {
    char run[1024], missing[1100], p[1100];
    snprintf(missing, sizeof missing, "%s/no_such_run", tu_tmpdir());
    CHECK(run_report(missing, NULL) == 2, "missing RUN_DIR accepted");
    CHECK(strstr(bt_error(), "no such directory") && strstr(bt_error(), "no_such_run"),
          "message: %s", bt_error());
    char *argv1[] = {"report", NULL};
    CHECK(bt_cmd_report(1, argv1) == 2 && strstr(bt_error(), "missing RUN_DIR"), "no RUN_DIR: %s",
          bt_error());
    char *argv2[] = {"report", (char *)tu_tmpdir(), "--batchsize", "4", NULL};
    CHECK(bt_cmd_report(4, argv2) == 2 && strstr(bt_error(), "--batch"), "bad option: %s",
          bt_error());
    /* empty stats.txt */
    snprintf(run, sizeof run, "%s/run_empty", tu_tmpdir());
    CHECK(mkdir(run, 0777) == 0, "mkdir");
    snprintf(p, sizeof p, "%s/stats.txt", run);
    FILE *f = fopen(p, "w");
    fclose(f);
    CHECK(run_report(run, NULL) == 1, "empty stats.txt accepted");
    CHECK(strstr(bt_error(), "stats.txt: no measurements"), "message: %s", bt_error());
    /* only the command line */
    f = fopen(p, "w");
    fprintf(f, "barlow pretrain x\n");
    fclose(f);
    CHECK(run_report(run, NULL) == 1 && strstr(bt_error(), "no measurements"), "message: %s",
          bt_error());
    /* no stats.txt at all */
    remove(p);
    CHECK(run_report(run, NULL) == 1 && strstr(bt_error(), "stats.txt"), "message: %s",
          bt_error());
    /* a corrupted checkpoint is an error, not a placeholder */
    write_stats(run, 3, 0);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", run);
    f = fopen(p, "w");
    fprintf(f, "garbage");
    fclose(f);
    CHECK(run_report(run, NULL) == 1 && strstr(bt_error(), "checkpoint.safetensors"),
          "message: %s", bt_error());
}

int main(void) {
    TEST_RUN(test_corr_corner);
    TEST_RUN(test_pca);
    TEST_RUN(test_stats_parse);
    TEST_RUN(test_full_report);
    TEST_RUN(test_report_partial);
    TEST_RUN(test_report_no_checkpoint);
    TEST_RUN(test_report_errors);
    return tu_finish();
}
