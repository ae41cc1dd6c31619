/* Augmentation pipeline against torchvision + PIL (tests/py/aug_ref.py, run live): each op
 * with fixed parameters on seeded smooth+noise images of odd sizes, the full chain with
 * sampled parameters, the eval transform, the crop sampler's distribution against
 * RandomResizedCrop.get_params, the other draws' frequencies, and preset overrides. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "barlow/augment.h"
#include "barlow/error.h"
#include "data/aug_internal.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------------------------- */

/* Smooth waves + noise, with a gray patch (hue/saturation edge case) and a saturated block
 * (clipping in bicubic overshoot). */
static void make_image(bt_image *im, int w, int h, uint64_t seed) {
    if (bt_image_alloc(im, w, h)) {
        fprintf(stderr, "alloc: %s\n", bt_error());
        exit(1);
    }
    tu_rng r = {seed};
    double f[3], ph[3];
    for (int c = 0; c < 3; c++) {
        f[c] = 1 + 4 * tu_uniform(&r);
        ph[c] = 6.283 * tu_uniform(&r);
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im->px + ((size_t)y * w + x) * 3;
            for (int c = 0; c < 3; c++) {
                double v = 128 + 110 * sin(f[c] * 6.283 * x / w + ph[c]) *
                                     cos((f[(c + 1) % 3]) * 6.283 * y / h) +
                           25 * tu_normal(&r);
                p[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            if (x < w / 4 && y < h / 4) p[1] = p[2] = p[0];          /* gray */
            if (x > w / 2 && x < w / 2 + w / 6 + 1 && y > h / 2) { /* saturated, sharp */
                p[0] = 255;
                p[1] = (x & 1) ? 255 : 0;
                p[2] = 0;
            }
        }
}

static void path_of(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tu_tmpdir(), name);
}

static void write_bytes(const char *name, const void *data, size_t n) {
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
}

/* Reads exactly n bytes; returns 0 on success. */
static int read_bytes(const char *name, void *data, size_t n) {
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    size_t got = fread(data, 1, n, f);
    int extra = fgetc(f);
    fclose(f);
    return got == n && extra == EOF ? 0 : -1;
}

/* All reference work runs in one Python process (importing torch is the slow part): every
 * test first appends its jobs (g_prep = 1), then the script runs once, then every test checks
 * its outputs (g_prep = 0). Inputs are regenerated from the same seeds in both phases. */
static FILE *g_job;
static int g_prep, g_ref_ok;

static void job_open(void) {
    char p[512];
    path_of(p, sizeof p, "job.txt");
    g_job = fopen(p, "w");
    if (!g_job) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
}

static void test_reference_run(void) {
    if (tu_skip_without("torchvision")) return;
    if (tu_skip_without("torchvision")) return;
    fclose(g_job);
    g_job = NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s tests/py/aug_ref.py %s/job.txt", tu_python(), tu_tmpdir());
    int rc = system(cmd);
    CHECK(rc == 0, "reference script failed (%s)", cmd);
    g_ref_ok = rc == 0;
}

/* In the check phase: whether the reference outputs exist (the test fails if not). */
static int have_ref(void) {
    CHECK(g_ref_ok, "no reference outputs (the Python reference failed)");
    return g_ref_ok;
}

typedef struct { int max; double mean; size_t nbad; } u8diff;

static u8diff diff_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    u8diff d = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        int e = abs((int)a[i] - (int)b[i]);
        if (e > d.max) d.max = e;
        d.mean += e;
        d.nbad += e != 0;
    }
    d.mean /= (double)n;
    return d;
}

/* Compares our u8 result with the reference's file `name`; exact equality required. */
static void check_u8(const char *what, const bt_image *ours, const char *name) {
    size_t n = (size_t)ours->w * ours->h * 3;
    uint8_t *ref = malloc(n);
    int rc = read_bytes(name, ref, n);
    CHECK(rc == 0, "%s: reference output %s missing or of the wrong size", what, name);
    if (rc == 0) {
        u8diff d = diff_u8(ours->px, ref, n);
        CHECK(d.max == 0, "%s: max diff %d, mean %.4f, %zu of %zu samples differ", what, d.max,
              d.mean, d.nbad, n);
    }
    free(ref);
}

static void check_f32(const char *what, const float *ours, size_t n, const char *name,
                      double tol) {
    float *ref = malloc(n * sizeof(float));
    int rc = read_bytes(name, ref, n * sizeof(float));
    CHECK(rc == 0, "%s: reference output %s missing or of the wrong size", what, name);
    if (rc == 0) {
        double m = tu_maxabsdiff_f32(ours, ref, n), mean = 0;
        for (size_t i = 0; i < n; i++) mean += fabs((double)ours[i] - ref[i]);
        CHECK(m <= tol, "%s: max diff %.3g (mean %.3g) > %.3g", what, m, mean / n, tol);
    }
    free(ref);
}

static const char *interp_name(int i) { return i == BT_INTERP_BICUBIC ? "bicubic" : "bilinear"; }

/* ---- single ops -------------------------------------------------------------------------- */

typedef struct { int w, h; } shape;

static void test_resized_crop(void) {
    const shape shapes[] = {{37, 29}, {500, 375}, {64, 48}, {13, 200}};
    typedef struct { int s; int top, left, ch, cw, size, interp; } cs; /* s: shape index */
    const cs cases[] = {
        {0, 0, 0, 29, 37, 224, BT_INTERP_BICUBIC},  /* upscale */
        {0, 0, 0, 29, 37, 32, BT_INTERP_BILINEAR},
        {0, 3, 5, 20, 17, 32, BT_INTERP_BICUBIC},
        {1, 0, 0, 375, 500, 224, BT_INTERP_BICUBIC}, /* downscale */
        {1, 0, 0, 375, 500, 32, BT_INTERP_BILINEAR},
        {1, 0, 0, 375, 500, 32, BT_INTERP_BICUBIC},
        {1, 17, 101, 301, 233, 224, BT_INTERP_BICUBIC},
        {1, 200, 7, 31, 224, 224, BT_INTERP_BICUBIC}, /* width kept: vertical pass only */
        {1, 5, 9, 224, 99, 224, BT_INTERP_BILINEAR},  /* height kept: horizontal pass only */
        {1, 50, 60, 224, 224, 224, BT_INTERP_BICUBIC}, /* no pass: copy */
        {2, 1, 2, 47, 61, 224, BT_INTERP_BILINEAR},
        {3, 0, 0, 200, 13, 32, BT_INTERP_BICUBIC},
        {3, 150, 4, 1, 1, 32, BT_INTERP_BICUBIC},      /* a single pixel */
    };
    const int ns = sizeof shapes / sizeof shapes[0], nc = sizeof cases / sizeof cases[0];
    bt_image src[4];
    for (int s = 0; s < ns; s++) {
        make_image(&src[s], shapes[s].w, shapes[s].h, 100 + s);
        char name[64];
        snprintf(name, sizeof name, "src%d.rgb", s);
        if (g_prep) write_bytes(name, src[s].px, (size_t)src[s].w * src[s].h * 3);
    }
    FILE *job = g_job;
    if (g_prep) {
    for (int k = 0; k < nc; k++) {
        const cs *c = &cases[k];
        fprintf(job, "resized_crop %s/src%d.rgb %d %d %s/rc%d.out %d %d %d %d %d %s\n",
                tu_tmpdir(), c->s, shapes[c->s].w, shapes[c->s].h, tu_tmpdir(), k, c->top,
                c->left, c->ch, c->cw, c->size, interp_name(c->interp));
    }
    }
    if (!g_prep && have_ref()) {
        bt_aug_work *w = bt_aug_work_new();
        for (int k = 0; k < nc; k++) {
            const cs *c = &cases[k];
            bt_image out;
            bt_image_alloc(&out, c->size, c->size);
            int rc = bt_aug_resized_crop(&out, &src[c->s], c->top, c->left, c->ch, c->cw,
                                         c->interp, w);
            CHECK(rc == 0, "resized_crop case %d: %s", k, bt_error());
            char what[128], name[32];
            snprintf(what, sizeof what, "resized_crop %dx%d crop (%d,%d) %dx%d -> %d %s",
                     shapes[c->s].w, shapes[c->s].h, c->top, c->left, c->cw, c->ch, c->size,
                     interp_name(c->interp));
            snprintf(name, sizeof name, "rc%d.out", k);
            check_u8(what, &out, name);
            bt_image_free(&out);
        }
        /* A crop outside the image is refused. */
        bt_image out;
        bt_image_alloc(&out, 8, 8);
        CHECK(bt_aug_resized_crop(&out, &src[0], 10, 0, 20, 37, 0, w) == BT_EINVAL,
              "crop outside accepted");
        bt_image_free(&out);
        bt_aug_work_free(w);
    }
    for (int s = 0; s < ns; s++) bt_image_free(&src[s]);
}

/* Colour ops, flip, grayscale, solarize and blur with fixed parameters. */
typedef struct { const char *op; float arg; } opcase;

static void apply_op(bt_image *im, const opcase *o, bt_aug_work *w) {
    if (!strcmp(o->op, "flip")) bt_aug_hflip(im);
    else if (!strcmp(o->op, "brightness")) bt_aug_brightness(im, o->arg);
    else if (!strcmp(o->op, "contrast")) bt_aug_contrast(im, o->arg);
    else if (!strcmp(o->op, "saturation")) bt_aug_saturation(im, o->arg);
    else if (!strcmp(o->op, "hue")) bt_aug_hue(im, o->arg);
    else if (!strcmp(o->op, "gray")) bt_aug_grayscale(im);
    else if (!strcmp(o->op, "solarize")) bt_aug_solarize(im);
    else if (!strcmp(o->op, "blur"))
        CHECK(bt_aug_gaussian_blur(im, o->arg, w) == 0, "%s", bt_error());
}

static void run_ops(const char *tag, const opcase *ops, int nops, const shape *shapes,
                    int ns) {
    bt_image *src = calloc(ns, sizeof *src);
    for (int s = 0; s < ns; s++) {
        make_image(&src[s], shapes[s].w, shapes[s].h, 200 + s);
        char name[64];
        snprintf(name, sizeof name, "%s%d.rgb", tag, s);
        if (g_prep) write_bytes(name, src[s].px, (size_t)src[s].w * src[s].h * 3);
    }
    FILE *job = g_job;
    if (g_prep) {
    for (int s = 0; s < ns; s++)
        for (int k = 0; k < nops; k++)
            fprintf(job, "%s %s/%s%d.rgb %d %d %s/%s%d_%d.out %a\n", ops[k].op, tu_tmpdir(), tag,
                    s, shapes[s].w, shapes[s].h, tu_tmpdir(), tag, s, k, (double)ops[k].arg);
    }
    if (!g_prep && have_ref()) {
        bt_aug_work *w = bt_aug_work_new();
        bt_image im;
        for (int s = 0; s < ns; s++)
            for (int k = 0; k < nops; k++) {
                bt_image_alloc(&im, shapes[s].w, shapes[s].h);
                memcpy(im.px, src[s].px, (size_t)im.w * im.h * 3);
                apply_op(&im, &ops[k], w);
                char what[96], name[32];
                snprintf(what, sizeof what, "%s(%g) on %dx%d", ops[k].op, (double)ops[k].arg,
                         im.w, im.h);
                snprintf(name, sizeof name, "%s%d_%d.out", tag, s, k);
                check_u8(what, &im, name);
                bt_image_free(&im);
            }
        bt_aug_work_free(w);
    }
    for (int s = 0; s < ns; s++) bt_image_free(&src[s]);
    free(src);
}

static void test_color_ops(void) {
    const opcase ops[] = {
        {"flip", 0},          {"gray", 0},           {"solarize", 0},
        {"brightness", 0.6f}, {"brightness", 1.37f}, {"brightness", 0.0f},
        {"brightness", 1.0f}, {"brightness", 0.9123f}, {"contrast", 0.6f},
        {"contrast", 1.4f},   {"contrast", 0.0f},    {"contrast", 1.0f},
        {"contrast", 0.777f}, {"saturation", 0.8f},  {"saturation", 1.2f},
        {"saturation", 0.0f}, {"saturation", 3.0f},  {"saturation", 0.9371f},
        {"hue", -0.1f},       {"hue", 0.1f},         {"hue", 0.0531f},
        {"hue", -0.0017f},    {"hue", 0.5f},         {"hue", -0.5f},
        {"hue", 0.0f},        {"hue", -0.0731f},
    };
    const shape shapes[] = {{37, 29}, {120, 91}};
    run_ops("col", ops, sizeof ops / sizeof ops[0], shapes, 2);
}

static void test_gaussian_blur(void) {
    const opcase ops[] = {{"blur", 0.1f}, {"blur", 0.5f}, {"blur", 1.0f}, {"blur", 1.2345f},
                          {"blur", 1.9f}, {"blur", 2.0f}, {"blur", 4.5f}, {"blur", 0.73f}};
    const shape shapes[] = {{37, 29}, {224, 224}, {3, 2}, {1, 7}};
    run_ops("blur", ops, sizeof ops / sizeof ops[0], shapes, 4);
}

/* ---- full chain -------------------------------------------------------------------------- */

static void test_pipeline(void) {
    const shape shapes[] = {{500, 375}, {37, 29}, {64, 80}, {32, 32}};
    enum { NCASE = 16 };
    bt_aug_preset pi, pc;
    CHECK(bt_aug_preset_init(&pi, "imagenet") == 0, "%s", bt_error());
    CHECK(bt_aug_preset_init(&pc, "cifar") == 0, "%s", bt_error());
    bt_image src[4];
    for (int s = 0; s < 4; s++) {
        make_image(&src[s], shapes[s].w, shapes[s].h, 300 + s);
        char name[64];
        snprintf(name, sizeof name, "pl%d.rgb", s);
        if (g_prep) write_bytes(name, src[s].px, (size_t)src[s].w * src[s].h * 3);
    }
    bt_aug_params prs[NCASE];
    const bt_aug_preset *pre[NCASE];
    const bt_aug_view_cfg *cfg[NCASE];
    int sh[NCASE];
    FILE *job = g_job;
    for (int k = 0; k < NCASE; k++) {
        pre[k] = k < 8 ? &pi : &pc;
        cfg[k] = &pre[k]->view[k & 1];
        sh[k] = k < 8 ? (k & 3) % 3 : 1 + (k & 3) % 3;
        bt_rng rng = bt_rng_key(7, 1, (uint64_t)k, (uint64_t)(k & 1));
        bt_aug_sample(&prs[k], cfg[k], shapes[sh[k]].w, shapes[sh[k]].h, &rng);
        if (k % 4 == 3) { /* every op at once, so each is exercised in the chain */
            prs[k].flip = prs[k].jitter = prs[k].blur = prs[k].solarize = 1;
            prs[k].gray = 0;
            prs[k].brightness = 1.3f;
            prs[k].contrast = 0.7f;
            prs[k].saturation = 1.1f;
            prs[k].hue = -0.08f;
            prs[k].sigma = 1.3f;
        }
        if (k == 7 || k == 15) prs[k].gray = 1;
        const bt_aug_params *p = &prs[k];
        if (g_prep)
            fprintf(job, "pipeline %s/pl%d.rgb %d %d %s/pl%d.out %d %d %d %d %d %s %d %d %d %d %d "
                         "%d %a %a %a %a %d %d %a %d %a %a %a %a %a %a\n",
                tu_tmpdir(), sh[k], shapes[sh[k]].w, shapes[sh[k]].h, tu_tmpdir(), k, p->crop_top,
                p->crop_left, p->crop_h, p->crop_w, cfg[k]->size, interp_name(cfg[k]->interp),
                p->flip, p->jitter, p->jitter_order[0], p->jitter_order[1], p->jitter_order[2],
                p->jitter_order[3], (double)p->brightness, (double)p->contrast,
                (double)p->saturation, (double)p->hue, p->gray, p->blur, (double)p->sigma,
                p->solarize, (double)pre[k]->mean[0], (double)pre[k]->mean[1],
                (double)pre[k]->mean[2], (double)pre[k]->std[0], (double)pre[k]->std[1],
                (double)pre[k]->std[2]);
    }
    if (!g_prep && have_ref()) {
        bt_aug_work *w = bt_aug_work_new();
        for (int k = 0; k < NCASE; k++) {
            size_t n = (size_t)3 * cfg[k]->size * cfg[k]->size;
            float *out = malloc(n * sizeof(float));
            int rc = bt_aug_apply(out, &src[sh[k]], &prs[k], cfg[k], pre[k]->mean, pre[k]->std, w);
            CHECK(rc == 0, "apply case %d: %s", k, bt_error());
            char what[160], name[32];
            const bt_aug_params *p = &prs[k];
            snprintf(what, sizeof what,
                     "pipeline %d (%s view %d, %dx%d crop %dx%d flip %d jit %d gray %d blur %d "
                     "sol %d)", k, pre[k]->name, k & 1, src[sh[k]].w, src[sh[k]].h, p->crop_w,
                     p->crop_h, p->flip, p->jitter, p->gray, p->blur, p->solarize);
            snprintf(name, sizeof name, "pl%d.out", k);
            /* Same 8-bit image and the same float32 ops (division, not a reciprocal): bit-exact. */
            check_f32(what, out, n, name, 0.0);
            free(out);
        }
        bt_aug_work_free(w);
    }
    for (int s = 0; s < 4; s++) bt_image_free(&src[s]);
}

static void test_eval(void) {
    const shape shapes[] = {{500, 375}, {300, 400}, {257, 256}, {256, 300}, {32, 32}, {293, 331}};
    const int ns = sizeof shapes / sizeof shapes[0];
    bt_aug_preset pi, pc;
    bt_aug_preset_init(&pi, "imagenet");
    bt_aug_preset_init(&pc, "cifar");
    bt_image src[6];
    FILE *job = g_job;
    for (int s = 0; s < ns; s++) {
        make_image(&src[s], shapes[s].w, shapes[s].h, 400 + s);
        char name[64];
        snprintf(name, sizeof name, "ev%d.rgb", s);
        if (g_prep) write_bytes(name, src[s].px, (size_t)src[s].w * src[s].h * 3);
        const bt_aug_preset *p = s == 4 ? &pc : &pi;
        if (g_prep)
            fprintf(job, "eval %s/ev%d.rgb %d %d %s/ev%d.out %d %d %s %a %a %a %a %a %a\n",
                tu_tmpdir(), s, shapes[s].w, shapes[s].h, tu_tmpdir(), s, p->eval_resize,
                p->eval_crop, interp_name(p->eval_interp), (double)p->mean[0],
                (double)p->mean[1], (double)p->mean[2], (double)p->std[0], (double)p->std[1],
                (double)p->std[2]);
    }
    if (!g_prep && have_ref()) {
        bt_aug_work *w = bt_aug_work_new();
        for (int s = 0; s < ns; s++) {
            const bt_aug_preset *p = s == 4 ? &pc : &pi;
            int S = bt_aug_eval_size(p, src[s].w, src[s].h);
            CHECK(S == (s == 4 ? 32 : 224), "eval size %d for %dx%d", S, src[s].w, src[s].h);
            if (S <= 0) continue;
            size_t n = (size_t)3 * S * S;
            float *out = malloc(n * sizeof(float));
            CHECK(bt_aug_eval(out, &src[s], p, w) == 0, "%s", bt_error());
            char what[64], name[32];
            snprintf(what, sizeof what, "eval %s %dx%d", p->name, src[s].w, src[s].h);
            snprintf(name, sizeof name, "ev%d.out", s);
            check_f32(what, out, n, name, 0.0);
            free(out);
        }
        bt_aug_work_free(w);
    }
    /* Non-square output without a crop is refused with a message. */
    CHECK(bt_aug_eval_size(&pc, 40, 30) == BT_EINVAL && strstr(bt_error(), "non-square"),
          "cifar eval of 40x30: %s", bt_error());
    for (int s = 0; s < ns; s++) bt_image_free(&src[s]);
}

/* ---- sampler ----------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Two-sample Kolmogorov-Smirnov statistic (ties handled by stepping past equal values). */
static double ks_stat(double *a, int n, double *b, int m) {
    qsort(a, n, sizeof *a, cmp_double);
    qsort(b, m, sizeof *b, cmp_double);
    int i = 0, j = 0;
    double d = 0;
    while (i < n && j < m) {
        double x = a[i] < b[j] ? a[i] : b[j];
        while (i < n && a[i] <= x) i++;
        while (j < m && b[j] <= x) j++;
        double e = fabs((double)i / n - (double)j / m);
        if (e > d) d = e;
    }
    return d;
}

/* torchvision's fallback crop for a W x H image, computed independently of the sampler. */
static void fallback_crop(int W, int H, double r0, double r1, int c[4]) {
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < r0) h = (int)nearbyint(W / r0);
    else if (in_ratio > r1) w = (int)nearbyint(H * r1);
    c[0] = (H - h) / 2;
    c[1] = (W - w) / 2;
    c[2] = h;
    c[3] = w;
}

static void test_crop_distribution(void) {
    enum { N = 10000 };
    const shape shapes[] = {{500, 375}, {37, 29}, {300, 40}, {40, 300}};
    const int ns = sizeof shapes / sizeof shapes[0];
    bt_aug_preset p;
    bt_aug_preset_init(&p, "imagenet");
    const bt_aug_view_cfg *c = &p.view[0];
    FILE *job = g_job;
    if (g_prep) {
    for (int s = 0; s < ns; s++)
        fprintf(job, "rrc none %d %d %s/rrc%d.out %d %a %a %a %a %d\n", shapes[s].w, shapes[s].h,
                tu_tmpdir(), s, N, (double)c->scale_min, (double)c->scale_max, 3.0 / 4.0,
                4.0 / 3.0, 11 + s);
    }
    if (g_prep || !have_ref()) return;
    int32_t *ref = malloc(sizeof(int32_t) * 4 * N);
    double *a1 = malloc(sizeof(double) * N), *a2 = malloc(sizeof(double) * N);
    double *l1 = malloc(sizeof(double) * N), *l2 = malloc(sizeof(double) * N);
    for (int s = 0; s < ns; s++) {
        const int W = shapes[s].w, H = shapes[s].h;
        char name[32];
        snprintf(name, sizeof name, "rrc%d.out", s);
        CHECK(read_bytes(name, ref, sizeof(int32_t) * 4 * N) == 0, "missing %s", name);
        int fb[4];
        fallback_crop(W, H, 0.75, 4.0 / 3.0, fb);
        int nfb1 = 0, nfb2 = 0, bad = 0;
        double m1 = 0, m2 = 0;
        for (int k = 0; k < N; k++) {
            bt_rng rng = bt_rng_key(5, 0, (uint64_t)k, 0);
            bt_aug_params pr;
            bt_aug_sample(&pr, c, W, H, &rng);
            int ours[4] = {pr.crop_top, pr.crop_left, pr.crop_h, pr.crop_w};
            const int32_t *t = ref + 4 * k;
            bad += ours[0] < 0 || ours[1] < 0 || ours[2] < 1 || ours[3] < 1 ||
                   ours[0] + ours[2] > H || ours[1] + ours[3] > W;
            a1[k] = (double)ours[2] * ours[3] / ((double)W * H);
            a2[k] = (double)t[2] * t[3] / ((double)W * H);
            l1[k] = log((double)ours[3] / ours[2]);
            l2[k] = log((double)t[3] / t[2]);
            m1 += a1[k];
            m2 += a2[k];
            nfb1 += !memcmp(ours, fb, sizeof fb);
            nfb2 += t[0] == fb[0] && t[1] == fb[1] && t[2] == fb[2] && t[3] == fb[3];
        }
        CHECK(bad == 0, "%dx%d: %d crops outside the image", W, H, bad);
        /* Critical KS value at alpha = 0.001 for two samples of N. */
        const double ks_crit = 1.95 * sqrt(2.0 / N);
        double ka = ks_stat(a1, N, a2, N), kl = ks_stat(l1, N, l2, N);
        double p1 = (double)nfb1 / N, p2 = (double)nfb2 / N, pp = (p1 + p2) / 2;
        double fb_tol = 4.5 * sqrt(pp * (1 - pp) * 2.0 / N) + 1e-3;
        printf("  %4dx%-4d area mean %.4f / %.4f  KS area %.4f log-ratio %.4f (crit %.4f)  "
               "fallback %.4f / %.4f\n", W, H, m1 / N, m2 / N, ka, kl, ks_crit, p1, p2);
        CHECK(ka < ks_crit, "%dx%d: area fraction distributions differ (KS %.4f)", W, H, ka);
        CHECK(kl < ks_crit, "%dx%d: log-ratio distributions differ (KS %.4f)", W, H, kl);
        CHECK(fabs(p1 - p2) <= fb_tol, "%dx%d: fallback frequency %.4f vs torchvision %.4f", W, H,
              p1, p2);
    }
    free(ref);
    free(a1);
    free(a2);
    free(l1);
    free(l2);
}

static void check_freq(const char *what, int count, int n, double p) {
    double f = (double)count / n, tol = 5 * sqrt(p * (1 - p) / n) + 1e-9;
    CHECK(fabs(f - p) <= tol, "%s: frequency %.4f, expected %.4f +- %.4f", what, f, p, tol);
}

static void test_sampler_draws(void) {
    enum { N = 20000 };
    bt_aug_preset p;
    bt_aug_preset_init(&p, "imagenet");
    const bt_aug_view_cfg *c = &p.view[1];
    int nflip = 0, njit = 0, ngray = 0, nblur = 0, nsol = 0, perm[24] = {0};
    double sb = 0, sh = 0, ssig = 0;
    int range_bad = 0;
    for (int k = 0; k < N; k++) {
        bt_rng rng = bt_rng_key(9, 3, (uint64_t)k, 1);
        bt_aug_params pr;
        bt_aug_sample(&pr, c, 200, 150, &rng);
        nflip += pr.flip;
        ngray += pr.gray;
        nblur += pr.blur;
        nsol += pr.solarize;
        if (pr.jitter) {
            njit++;
            int code = 0, seen = 0;
            for (int i = 0; i < 4; i++) {
                code = code * 4 + pr.jitter_order[i];
                seen |= 1 << pr.jitter_order[i];
            }
            range_bad += seen != 15;
            /* rank the permutation: lexicographic index among the 24 */
            int idx = 0, used = 0;
            for (int i = 0; i < 4; i++) {
                int v = pr.jitter_order[i], less = 0;
                for (int u = 0; u < v; u++) less += !(used >> u & 1);
                used |= 1 << v;
                idx = idx * (4 - i) + less;
            }
            if (seen == 15) perm[idx]++;
            range_bad += pr.brightness < 0.6f || pr.brightness > 1.4f || pr.contrast < 0.6f ||
                         pr.contrast > 1.4f || pr.saturation < 0.8f || pr.saturation > 1.2f ||
                         pr.hue < -0.1f || pr.hue > 0.1f;
            sb += pr.brightness;
            sh += pr.hue;
            (void)code;
        }
        if (pr.blur) {
            range_bad += pr.sigma < 0.1f || pr.sigma > 2.0f;
            ssig += pr.sigma;
        }
        /* The same key gives the same draws. */
        bt_rng again = bt_rng_key(9, 3, (uint64_t)k, 1);
        bt_aug_params pr2;
        bt_aug_sample(&pr2, c, 200, 150, &again);
        range_bad += memcmp(&pr, &pr2, sizeof pr) != 0;
    }
    CHECK(range_bad == 0, "%d draws out of range, not permutations or not reproducible", range_bad);
    check_freq("flip", nflip, N, 0.5);
    check_freq("jitter", njit, N, 0.8);
    check_freq("gray", ngray, N, 0.2);
    check_freq("blur", nblur, N, 0.1);
    check_freq("solarize", nsol, N, 0.2);
    /* Uniform factors: means at the interval centres (sd of U(0.6,1.4) is 0.231). */
    CHECK(fabs(sb / njit - 1.0) < 5 * 0.231 / sqrt(njit), "brightness mean %.4f", sb / njit);
    CHECK(fabs(sh / njit) < 5 * 0.0578 / sqrt(njit), "hue mean %.4f", sh / njit);
    CHECK(nblur == 0 || fabs(ssig / nblur - 1.05) < 5 * 0.548 / sqrt(nblur), "sigma mean %.4f",
          ssig / nblur);
    /* Permutations uniform: chi-square with 23 dof, 0.001 critical value 49.7. */
    double chi = 0, e = njit / 24.0;
    for (int i = 0; i < 24; i++) chi += (perm[i] - e) * (perm[i] - e) / e;
    CHECK(chi < 49.7, "jitter order not uniform: chi2 %.1f", chi);
    /* Probability 0 never fires, 1 always does (view 0 blurs every image). */
    int blur0 = 0;
    for (int k = 0; k < 2000; k++) {
        bt_rng rng = bt_rng_key(1, 0, (uint64_t)k, 0);
        bt_aug_params pr;
        bt_aug_sample(&pr, &p.view[0], 64, 64, &rng);
        blur0 += pr.blur;
        CHECK(!pr.solarize, "view 0 solarized with p 0");
    }
    CHECK(blur0 == 2000, "view 0 blurred %d of 2000 with p 1", blur0);
}

/* ---- presets, errors, buffers, speed -------------------------------------------------- */

static void test_presets(void) {
    bt_aug_preset p;
    CHECK(bt_aug_preset_init(&p, "imagenet") == 0, "%s", bt_error());
    CHECK(p.view[0].size == 224 && p.view[0].interp == BT_INTERP_BICUBIC &&
              p.view[0].blur_p == 1.0f && p.view[1].blur_p == 0.1f &&
              p.view[0].solarize_p == 0.0f && p.view[1].solarize_p == 0.2f &&
              p.eval_resize == 256 && p.eval_crop == 224 && p.mean[0] == 0.485f &&
              p.std[2] == 0.225f && !strcmp(p.name, "imagenet"),
          "imagenet preset fields");
    CHECK(bt_aug_preset_init(&p, "cifar") == 0, "%s", bt_error());
    CHECK(p.view[1].size == 32 && p.view[1].interp == BT_INTERP_BILINEAR &&
              p.view[0].blur_p == 0 && p.view[1].blur_p == 0 && p.view[1].solarize_p == 0.2f &&
              p.mean[0] == 0.4914f && p.std[2] == 0.2616f && p.eval_resize == 0 &&
              p.view[0].scale_min == 0.08f && p.view[0].jitter_p == 0.8f,
          "cifar preset fields");
    CHECK(bt_aug_preset_init(&p, "mnist") == BT_EINVAL && strstr(bt_error(), "mnist") &&
              strstr(bt_error(), "imagenet") && strstr(bt_error(), "cifar"),
          "unknown preset message: %s", bt_error());

    bt_aug_preset_init(&p, "imagenet");
    CHECK(bt_aug_preset_set(&p, "blur-p", "0.5") == 0 && p.view[0].blur_p == 0.5f &&
              p.view[1].blur_p == 0.5f, "blur-p both views");
    CHECK(bt_aug_preset_set(&p, "blur-p.1", "0.25") == 0 && p.view[0].blur_p == 0.5f &&
              p.view[1].blur_p == 0.25f, "blur-p.1");
    CHECK(bt_aug_preset_set(&p, "size", "96") == 0 && p.view[0].size == 96 && p.view[1].size == 96,
          "size");
    CHECK(bt_aug_preset_set(&p, "interp.0", "bilinear") == 0 &&
              p.view[0].interp == BT_INTERP_BILINEAR && p.view[1].interp == BT_INTERP_BICUBIC,
          "interp.0");
    CHECK(bt_aug_preset_set(&p, "mean", "0.5,0.25,0.125") == 0 && p.mean[1] == 0.25f, "mean");
    CHECK(bt_aug_preset_set(&p, "scale-min", "0.2") == 0 && p.view[1].scale_min == 0.2f,
          "scale-min");
    CHECK(bt_aug_preset_set(&p, "eval-resize", "128") == 0 && bt_aug_preset_set(&p, "eval-crop",
          "112") == 0 && p.eval_crop == 112, "eval keys");

    CHECK(bt_aug_preset_set(&p, "scale", "0.01,0.05") == 0 && p.view[0].scale_min == 0.01f &&
              p.view[1].scale_max == 0.05f, "scale pair: %s", bt_error());
    CHECK(bt_aug_preset_set(&p, "blur-sigma.0", "0.5,3") == 0 && p.view[0].blur_sigma_max == 3.0f &&
              p.view[1].blur_sigma_max == 2.0f, "blur-sigma.0 pair: %s", bt_error());
    /* A crop larger than the resized image is refused when the eval size is asked. */
    bt_aug_preset e = p;
    CHECK(bt_aug_preset_set(&e, "eval-crop", "300") == 0, "%s", bt_error());
    CHECK(bt_aug_eval_size(&e, 500, 375) == BT_EINVAL && strstr(bt_error(), "smaller"),
          "crop 300 of a 128-resized image: %s", bt_error());

    bt_aug_preset before = p;
    struct { const char *k, *v, *msg; } bad[] = {
        {"blurr-p", "0.5", "blurr-p"},        {"blur-p", "1.5", "blur-p"},
        {"blur-p", "abc", "not a number"},    {"size", "0", "size"},
        {"size", "12x", "not an integer"},    {"scale-min", "0", "scale-min"},
        {"scale-max", "0.005", "scale-min"},  {"hue", "0.7", "hue"},
        {"std", "0.2,0,0.2", "std"},          {"mean", "0.1,0.2", "3 comma"},
        {"interp", "nearest", "bilinear"},    {"mean.1", "0.1,0.2,0.3", "mean.1"},
        {"scale", "0.5", "MIN,MAX"},         {"solarize-p.2", "0.1", "solarize-p.2"},
        {"scale.1", "0.5,0.2", "scale-min"},  {"ratio", "0,2", "ratio"},
        {"gray-p", "-0.1", "gray-p"},         {"blur-sigma-min", "3", "blur-sigma"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = bt_aug_preset_set(&p, bad[i].k, bad[i].v);
        CHECK(rc == BT_EINVAL && strstr(bt_error(), bad[i].msg), "%s=%s: rc %d, message '%s'",
              bad[i].k, bad[i].v, rc, bt_error());
    }
    CHECK(!memcmp(&before, &p, sizeof p), "a rejected override changed the preset");
}

static void test_errors_and_buffers(void) {
    bt_aug_preset p;
    bt_aug_preset_init(&p, "imagenet");
    bt_image src;
    make_image(&src, 300, 200, 9);
    bt_aug_work *w = bt_aug_work_new();
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    bt_aug_params pr;
    bt_rng rng = bt_rng_key(1, 2, 3, 0);
    bt_aug_sample(&pr, &p.view[0], 300, 200, &rng);
    bt_aug_params badp = pr;
    badp.crop_left = 250;
    badp.crop_w = 60;
    CHECK(bt_aug_apply(out, &src, &badp, &p.view[0], p.mean, p.std, w) == BT_EINVAL,
          "crop outside the image accepted");
    badp = pr;
    badp.jitter = 1;
    badp.jitter_order[0] = badp.jitter_order[1] = 0;
    CHECK(bt_aug_apply(out, &src, &badp, &p.view[0], p.mean, p.std, w) == BT_EINVAL,
          "bad jitter order accepted");
    /* Warm-up with a full-image crop, then smaller work: no buffer is reallocated. */
    bt_aug_params big = pr;
    big.crop_top = big.crop_left = 0;
    big.crop_w = 300;
    big.crop_h = 200;
    big.blur = 1;
    big.sigma = 2.0f;
    CHECK(bt_aug_apply(out, &src, &big, &p.view[0], p.mean, p.std, w) == 0, "%s", bt_error());
    void *bufs[5] = {w->img, w->tmp, w->kx, w->ky, w->line};
    for (int k = 0; k < 50; k++) {
        bt_rng r = bt_rng_key(1, 2, (uint64_t)k, 0);
        bt_aug_sample(&pr, &p.view[0], 300, 200, &r);
        CHECK(bt_aug_apply(out, &src, &pr, &p.view[0], p.mean, p.std, w) == 0, "%s", bt_error());
    }
    void *after[5] = {w->img, w->tmp, w->kx, w->ky, w->line};
    CHECK(!memcmp(bufs, after, sizeof bufs), "work buffers reallocated after warm-up");
    /* apply_u8 allocates dst when empty and checks its size otherwise. */
    bt_image dst = {0, 0, NULL};
    CHECK(bt_aug_apply_u8(&dst, &src, &pr, &p.view[0], w) == 0 && dst.w == 224, "%s", bt_error());
    bt_image small;
    bt_image_alloc(&small, 10, 10);
    CHECK(bt_aug_apply_u8(&small, &src, &pr, &p.view[0], w) == BT_EINVAL,
          "wrong dst size accepted");
    bt_image_free(&small);
    bt_image_free(&dst);

    /* Throughput, informational (the machine is shared): views per second on one thread. */
    bt_image big_src;
    make_image(&big_src, 500, 375, 10);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const int iters = 200;
    for (int k = 0; k < iters; k++) {
        bt_rng r = bt_rng_key(3, 0, (uint64_t)k, (uint64_t)(k & 1));
        bt_aug_sample(&pr, &p.view[k & 1], 500, 375, &r);
        bt_aug_apply(out, &big_src, &pr, &p.view[k & 1], p.mean, p.std, w);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("  imagenet views from 500x375: %.3f ms/view (one thread)\n", 1e3 * s / iters);
    bt_image_free(&big_src);
    free(out);
    bt_image_free(&src);
    bt_aug_work_free(w);
}

int main(void) {
    void (*const parity[])(void) = {test_resized_crop, test_color_ops, test_gaussian_blur,
                                    test_pipeline, test_eval, test_crop_distribution};
    const int np = sizeof parity / sizeof parity[0];
    job_open();
    g_prep = 1;
    for (int i = 0; i < np; i++) parity[i]();
    g_prep = 0;
    TEST_RUN(test_reference_run);
    TEST_RUN(test_presets);
    TEST_RUN(test_resized_crop);
    TEST_RUN(test_color_ops);
    TEST_RUN(test_gaussian_blur);
    TEST_RUN(test_pipeline);
    TEST_RUN(test_eval);
    TEST_RUN(test_crop_distribution);
    TEST_RUN(test_sampler_draws);
    TEST_RUN(test_errors_and_buffers);
    return tu_finish();
}
