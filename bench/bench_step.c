/* Times one full Barlow Twins training step (bt_train_grads + bt_lars_step at the schedule's
 * peak rate) on random inputs, and the reference's step in PyTorch on the same configuration
 * (bench/bench_step_torch.py, run as a separate process so neither's peak memory counts the
 * other's). Reports the median step time, image pairs per second, peak resident memory, and
 * the useful FLOP rate against OpenBLAS's cblas_sgemm 1024^3 rate measured in the same run
 * (the "efficiency" figure: how much of the machine's GEMM speed the step turns into model
 * arithmetic). Run from the repository root:
 *
 *   build/bench/bench_step [--arch resnet18-cifar] [--projector 2048-2048-2048] [--batch 256]
 *       [--size 32] [--threads 2] [--warmup 1] [--iters 3] [--no-torch | --torch-only]
 *       [--scaling] [--torch2 PYTHON|none]
 *
 * The peers are Debian's PyTorch 1.13 and, where installed (--torch2, default
 * /opt/torch2/bin/python3), a current PyTorch in fp32 NCHW and channels_last; the ratios are
 * taken against the fastest of them (the memory ratio also against the leanest).
 * --scaling also times our step on one thread and prints the speed-up of --threads over it.
 *
 * Useful FLOPs are nominal: 2 x the multiply-adds of every convolution and linear layer for
 * both views, backward counted as twice the forward, plus the GEMMs of the loss form used;
 * BatchNorm, ReLU, pooling and the optimizer are not counted. */
#include "barlow/cpu.h"
#include "barlow/backend.h"
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/loss.h"
#include "barlow/model.h"
#include "barlow/optim.h"
#include "barlow/rng.h"
#include "barlow/scratch.h"
#include "barlow/train.h"
#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Where the reference sits in main.py's schedule: the last warm-up step (peak lr), with
 * CIFAR-10's 50,000 images / 256 steps per epoch and main.py's 1000 epochs, 10 warm-up. */
#define STEPS_PER_EPOCH 195
#define EPOCHS 1000
#define WARMUP_EPOCHS 10

typedef struct {
    const char *arch, *projector;
    int batch, size, threads, warmup, iters, no_torch, torch_only, scaling;
    const char *torch2; /* a current PyTorch's python ("none": Debian's 1.13 alone) */
    int bf16;           /* --precision bf16: our convolutions and linear layers in bf16, and the
                           current PyTorch's bf16 autocast among the peers */
} opts;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Process CPU seconds, all threads: less sensitive than wall time to other load on a shared
 * machine (though spinning OpenMP/OpenBLAS threads count too). */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* ---- nominal FLOP count ---------------------------------------------------------------- */

typedef struct {
    double conv_mac, lin_mac;       /* forward multiply-adds per image */
    double conv_params, lin_params; /* weights counted, to check against the model's table */
} flop_count;

/* A k x k convolution with `pad` = k/2 (every conv of a torchvision ResNet), updating the
 * spatial size *h, *w to its output. */
static void count_conv(flop_count *f, int cin, int cout, int k, int stride, int *h, int *w) {
    int pad = k / 2;
    *h = (*h + 2 * pad - k) / stride + 1;
    *w = (*w + 2 * pad - k) / stride + 1;
    f->conv_mac += (double)*h * *w * cin * cout * k * k;
    f->conv_params += (double)cin * cout * k * k;
}

/* Walks the torchvision ResNet of `c` (v1.5: a bottleneck strides in its 3x3 conv) on an
 * H x W input, then the projector. */
static void count_model(flop_count *f, const bt_model_cfg *c, int H, int W) {
    memset(f, 0, sizeof *f);
    int h = H, w = W, exp = c->bottleneck ? 4 : 1;
    if (c->cifar) {
        count_conv(f, 3, c->widths[0], 3, 1, &h, &w);
    } else {
        count_conv(f, 3, c->widths[0], 7, 2, &h, &w);
        h = (h + 2 - 3) / 2 + 1; /* max-pool 3x3 stride 2 pad 1 */
        w = (w + 2 - 3) / 2 + 1;
    }
    int in = c->widths[0];
    for (int s = 0; s < 4; s++) {
        int wd = c->widths[s];
        for (int b = 0; b < c->blocks[s]; b++) {
            int stride = (s > 0 && b == 0) ? 2 : 1, h0 = h, w0 = w;
            if (c->bottleneck) {
                count_conv(f, in, wd, 1, 1, &h, &w);
                count_conv(f, wd, wd, 3, stride, &h, &w);
                count_conv(f, wd, wd * exp, 1, 1, &h, &w);
            } else {
                count_conv(f, in, wd, 3, stride, &h, &w);
                count_conv(f, wd, wd, 3, 1, &h, &w);
            }
            if (stride != 1 || in != wd * exp) count_conv(f, in, wd * exp, 1, stride, &h0, &w0);
            in = wd * exp;
        }
    }
    int prev = c->feat_dim;
    for (int i = 0; i < c->nproj; i++) {
        f->lin_mac += (double)prev * c->proj[i];
        f->lin_params += (double)prev * c->proj[i];
        prev = c->proj[i];
    }
}

/* FLOPs of the loss's matrix products for the form bt_twins_loss picks. DIRECT: c = A^T B and the
 * two (N,D)x(D,D) products of its backward. GRAM: two SYRKs (upper triangle only) and two
 * (N,N)x(N,D) products. */
static double loss_flops(int N, int D) {
    if (bt_twins_loss_choose(N, D) == BT_LOSS_DIRECT) return 2.0 * 3.0 * N * (double)D * D;
    return 2.0 * ((double)N * (N + 1) * D + 2.0 * N * (double)N * D);
}

/* Useful FLOPs of one step: both views, forward + 2x forward for the backward, plus the loss. */
static double step_flops(const bt_model_cfg *c, int N, int H, int W, flop_count *f) {
    count_model(f, c, H, W);
    double fwd_mac = 2.0 * N * (f->conv_mac + f->lin_mac);
    return 3.0 * 2.0 * fwd_mac + loss_flops(N, c->nproj ? c->proj[c->nproj - 1] : c->feat_dim);
}

/* The walk above duplicates the model's graph, so check it against the parameter table:
 * 4-d tensors are conv weights, 2-d tensors linear weights. */
static int check_counts(const bt_model *m, const flop_count *f) {
    double conv = 0, lin = 0;
    for (int i = 0; i < m->params.n; i++) {
        if (m->params.t[i].ndim == 4) conv += (double)m->params.t[i].numel;
        if (m->params.t[i].ndim == 2) lin += (double)m->params.t[i].numel;
    }
    if (conv != f->conv_params || lin != f->lin_params)
        return bt_fail(BT_EINVAL, "FLOP count out of step with the model: conv weights %.0f vs "
                                  "%.0f counted, linear %.0f vs %.0f", conv, f->conv_params, lin,
                       f->lin_params);
    return BT_OK;
}

/* ---- our step -------------------------------------------------------------------------- */

typedef struct {
    double sec, cpu, pairs_s, rss_mb, loss; /* median wall and CPU s/step */
    int form;
} step_result;

static int run_ours(const opts *o, step_result *r, const flop_count *f) {
    bt_model *m = NULL;
    bt_backend *be = NULL;
    bt_backend_cfg bc;
    bt_backend_cfg_default(&bc);
    bc.precision = o->bf16 ? BT_PREC_BF16 : BT_PREC_FP32;
    int rc = bt_backend_cpu_new(&be, &bc);
    if (rc != BT_OK) return rc;
    if ((rc = bt_model_new_on(&m, be, o->arch, o->projector)) != BT_OK) {
        bt_backend_free(be);
        return rc;
    }
    m->own_be = 1; /* freed with the model */
    bt_model_init(m, 1);
    if ((rc = check_counts(m, f)) != BT_OK || (rc = bt_model_prepare(m, o->batch, o->size, o->size)) != BT_OK) {
        bt_model_free(m);
        return rc;
    }
    size_t nx = (size_t)o->batch * 3 * o->size * o->size;
    float *x1 = bt_alloc(nx * sizeof(float)), *x2 = bt_alloc(nx * sizeof(float)); /* (N,3,H,W) */
    if (!x1 || !x2) {
        bt_free(x1);
        bt_free(x2);
        bt_model_free(m);
        return BT_ENOMEM;
    }
    /* standard normal inputs, like normalised images */
    bt_rng g = bt_rng_key(1, 0, 0, 0);
    for (size_t i = 0; i < nx; i++) {
        double u1 = 1.0 - bt_rng_uniform(&g), u2 = bt_rng_uniform(&g);
        double rad = sqrt(-2.0 * log(u1));
        x1[i] = (float)(rad * cos(2 * M_PI * u2));
        x2[i] = (float)(rad * sin(2 * M_PI * u2));
    }
    bt_lars_cfg lc;
    bt_lars_default(&lc);
    int n = o->warmup + o->iters;
    double *t = malloc((size_t)n * sizeof *t), *c = malloc((size_t)n * sizeof *c);
    if (!t || !c) {
        rc = bt_fail(BT_ENOMEM, "out of memory");
        goto done;
    }
    long step0 = (long)WARMUP_EPOCHS * STEPS_PER_EPOCH;
    for (int k = 0; k < n; k++) {
        bt_loss_result res;
        double t0 = now(), c0 = cpu_seconds();
        bt_lr_schedule(&lc.lr_weights, &lc.lr_biases, step0 + k, STEPS_PER_EPOCH, EPOCHS,
                       WARMUP_EPOCHS, o->batch, 0.2, 0.0048);
        if ((rc = bt_train_grads(m, x1, x2, 0.0051f, BT_LOSS_AUTO, &res)) != BT_OK) goto done;
        bt_lars_step(m->p, m->g, m->mom, &m->params, &lc);
        t[k] = now() - t0;
        c[k] = cpu_seconds() - c0;
        r->loss = res.loss;
        r->form = res.form_used;
        fprintf(stderr, "  barlow step %d%s: %.3f s (cpu %.3f s)  loss %.6g\n", k + 1,
                k < o->warmup ? " (warm-up)" : "", t[k], c[k], res.loss);
    }
    r->sec = median(t + o->warmup, o->iters);
    r->cpu = median(c + o->warmup, o->iters);
    r->pairs_s = o->batch / r->sec;
    r->rss_mb = peak_rss_mb();
done:
    free(t);
    free(c);
    bt_free(x1);
    bt_free(x2);
    bt_model_free(m);
    bt_scratch_release();
    return rc;
}

/* GFLOP/s of OpenBLAS's single-precision 1024^3 GEMM on the current thread count, best of 7:
 * the attainable rate, which other load on a shared machine can only lower. */
static double sgemm_gflops(void) {
    const int n = 1024, reps = 7;
    float *a = bt_alloc((size_t)n * n * 4), *b = bt_alloc((size_t)n * n * 4),
          *c = bt_alloc((size_t)n * n * 4); /* (n, n) each */
    if (!a || !b || !c) {
        bt_free(a);
        bt_free(b);
        bt_free(c);
        return 0;
    }
    bt_rng g = bt_rng_key(2, 0, 0, 0);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(bt_rng_uniform(&g) - 0.5);
        b[i] = (float)(bt_rng_uniform(&g) - 0.5);
    }
    double t[7];
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (OpenBLAS buffers, thread pool) */
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r >= 0) t[r] = now() - t0;
    }
    bt_free(a);
    bt_free(b);
    bt_free(c);
    qsort(t, reps, sizeof *t, cmp_double);
    return 2.0 * n * (double)n * n / t[0] / 1e9;
}

/* ---- PyTorch's step, in its own process ------------------------------------------------ */

/* The PyTorch peers: Debian's 1.13 (/usr/bin/python3, or $BARLOW_PYTHON) and, where it is
 * installed, a current PyTorch from PyPI (--torch2 PYTHON; default /opt/torch2/bin/python3),
 * in fp32 NCHW and in channels_last. The fastest is the peer the ratios are taken against. */
typedef struct {
    char name[64];
    const char *python;
    int channels_last;
    int bf16; /* torch.autocast("cpu", dtype=torch.bfloat16) around the forward */
    step_result r;
    int ok;
} peer;

static int run_torch(const opts *o, peer *pe) {
    const char *script = "bench/bench_step_torch.py";
    if (access(script, R_OK) != 0)
        return bt_fail(BT_EIO, "%s not found: run from the repository root", script);
    step_result *r = &pe->r;
    char cmd[1024], line[8192];
    snprintf(cmd, sizeof cmd,
             "%s %s --arch '%s' --projector '%s' --batch %d --size %d --threads %d --warmup %d "
             "--iters %d --steps-per-epoch %d --epochs %d%s%s",
             pe->python, script, o->arch, o->projector, o->batch, o->size, o->threads, o->warmup,
             o->iters, STEPS_PER_EPOCH, EPOCHS, pe->channels_last ? " --channels-last" : "",
             pe->bf16 ? " --autocast-bf16" : "");
    fprintf(stderr, "  running: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) return bt_fail(BT_EIO, "popen failed: %s", cmd);
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        cJSON *s = cJSON_GetObjectItem(j, "sec_per_step"), *m = cJSON_GetObjectItem(j, "peak_rss_mb"),
              *l = cJSON_GetObjectItem(j, "loss"), *c = cJSON_GetObjectItem(j, "cpu_per_step"),
              *v = cJSON_GetObjectItem(j, "torch");
        if (cJSON_IsNumber(s) && cJSON_IsNumber(m) && cJSON_IsNumber(l) && cJSON_IsNumber(c)) {
            r->sec = s->valuedouble;
            r->cpu = c->valuedouble;
            r->pairs_s = o->batch / r->sec;
            r->rss_mb = m->valuedouble;
            r->loss = l->valuedouble;
            if (cJSON_IsString(v)) {
                char ver[16];
                snprintf(ver, sizeof ver, "%s", v->valuestring);
                ver[strcspn(ver, "+")] = 0; /* "2.15.0+cu132" -> "2.15.0" */
                snprintf(pe->name, sizeof pe->name, "torch %s%s%s", ver,
                         pe->channels_last ? " CL" : "", pe->bf16 ? " bf16" : "");
            }
            got = 1;
        }
        cJSON_Delete(j);
    }
    int st = pclose(p);
    if (st != 0 || !got) return bt_fail(BT_EIO, "PyTorch step failed (status %d): %s", st, cmd);
    return BT_OK;
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(void) {
    fprintf(stderr, "usage: bench_step [--arch A] [--projector P] [--batch N] [--size S] "
                    "[--threads T] [--warmup W] [--iters I] [--no-torch | --torch-only] "
                    "[--scaling] [--torch2 PYTHON|none] [--precision fp32|bf16]\n");
    exit(2);
}

static int int_arg(const char *s, int lo) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > 1 << 20) usage();
    return (int)v;
}

int main(int argc, char **argv) {
    opts o = {"resnet18-cifar", "2048-2048-2048", 256, 32, 2, 1, 3, 0, 0, 0,
              "/opt/torch2/bin/python3", 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-torch")) o.no_torch = 1;
        else if (!strcmp(a, "--torch-only")) o.torch_only = 1;
        else if (!strcmp(a, "--scaling")) o.scaling = 1;
        else if (!v) usage();
        else if (!strcmp(a, "--arch")) o.arch = v, i++;
        else if (!strcmp(a, "--projector")) o.projector = v, i++;
        else if (!strcmp(a, "--batch")) o.batch = int_arg(v, 2), i++;
        else if (!strcmp(a, "--size")) o.size = int_arg(v, 1), i++;
        else if (!strcmp(a, "--threads")) o.threads = int_arg(v, 1), i++;
        else if (!strcmp(a, "--warmup")) o.warmup = int_arg(v, 0), i++;
        else if (!strcmp(a, "--iters")) o.iters = int_arg(v, 1), i++;
        else if (!strcmp(a, "--torch2")) o.torch2 = v, i++;
        else if (!strcmp(a, "--precision") && (!strcmp(v, "fp32") || !strcmp(v, "bf16")))
            o.bf16 = !strcmp(v, "bf16"), i++;
        else usage();
    }
    if ((o.no_torch && o.torch_only) || (o.scaling && (o.torch_only || o.threads < 2))) usage();
    bt_set_threads(o.threads); /* also omp_set_num_threads: the OpenMP OpenBLAS follows it */
    {
        /* BARLOW_ISA forces the kernels' path, as in the barlow program. */
        const char *isa = getenv("BARLOW_ISA");
        if (isa && *isa && bt_isa_select(isa) != BT_OK) {
            fprintf(stderr, "bench_step: BARLOW_ISA=%s: %s\n", isa, bt_error());
            return 1;
        }
        printf("kernels: path %s\n", bt_isa_name(bt_isa_current()));
        if (o.bf16)
            printf("precision: bf16 products in the convolutions and linear layers (%s)\n",
                   bt_gemm_bf16_native() ? "AVX512_BF16 kernel"
                                         : "no AVX512_BF16 here: the plain C kernel, slow");
    }
    { /* as the barlow program: BT_CONV_WINOGRAD=0 im2col only, 2, 4 or 24 (the default) */
        const char *e = getenv("BT_CONV_WINOGRAD");
        bt_backend_cfg bc;
        bt_backend_cfg_default(&bc);
        if ((e && bt_backend_winograd_parse(e, &bc.winograd) != BT_OK) ||
            bt_backend_cpu_settings(&bc) != BT_OK) {
            fprintf(stderr, "bench_step: %s\n", bt_error());
            return 1;
        }
        printf("convolutions: BT_CONV_WINOGRAD=%s%s\n",
               e ? e : "unset (244: F(2x2) forward, F(4x4) input and weight gradients)",
               o.bf16 && (!e || strcmp(e, "0")) ? "; with bf16 products F(2x2) for all three" : "");
    }

    bt_model_cfg cfg;
    if (bt_model_cfg_parse(&cfg, o.arch, o.projector) != BT_OK || !cfg.nproj) {
        fprintf(stderr, "bench_step: %s\n", cfg.nproj ? bt_error() : "a projector is needed");
        return 2;
    }
    flop_count fc;
    double flops = step_flops(&cfg, o.batch, o.size, o.size, &fc);
    printf("config: arch %s, projector %s, batch %d, %dx%d, %d thread(s), warm-up %d, %d timed "
           "step(s)\n", o.arch, o.projector, o.batch, o.size, o.size, o.threads, o.warmup, o.iters);
    printf("nominal step work: %.1f GFLOP (forward %.4g GMAC/image conv + %.4g GMAC/sample "
           "linear, x2 views x3 fwd+bwd, loss %s %.2f GFLOP)\n", flops / 1e9, fc.conv_mac / 1e9,
           fc.lin_mac / 1e9, bt_twins_loss_choose(o.batch, cfg.proj[cfg.nproj - 1]) == BT_LOSS_GRAM ? "gram" : "direct",
           loss_flops(o.batch, cfg.proj[cfg.nproj - 1]) / 1e9);
    fflush(stdout);

    step_result ours = {0};
    double gemm = 0;
    if (!o.torch_only) {
        /* measured before and after our step (the best counts), as the load may change */
        double gemm0 = sgemm_gflops();
        if (run_ours(&o, &ours, &fc) != BT_OK) {
            fprintf(stderr, "bench_step: %s\n", bt_error());
            return 1;
        }
        double gemm1 = sgemm_gflops();
        gemm = gemm0 > gemm1 ? gemm0 : gemm1;
        printf("barlow : %.3f s/step (median of %d; cpu %.3f s), %.2f pairs/s, %.1f GFLOP/s useful, "
               "peak RSS %.0f MiB, loss %.6g (%s form)\n", ours.sec, o.iters, ours.cpu, ours.pairs_s,
               flops / ours.sec / 1e9, ours.rss_mb, ours.loss,
               ours.form == BT_LOSS_GRAM ? "gram" : "direct");
        printf("sgemm  : OpenBLAS 1024^3 %.1f GFLOP/s on %d thread(s) (best of 7; %.1f before "
               "our step, %.1f after)\n", gemm, o.threads, gemm0, gemm1);
        fflush(stdout);
    }
    step_result one = {0};
    if (o.scaling) { /* the same step on one thread: the threading speed-up */
        opts o1 = o;
        o1.threads = 1;
        bt_set_threads(1);
        if (run_ours(&o1, &one, &fc) != BT_OK) {
            fprintf(stderr, "bench_step: %s\n", bt_error());
            return 1;
        }
        bt_set_threads(o.threads);
        printf("barlow on 1 thread: %.3f s/step (median of %d; cpu %.3f s), %.2f pairs/s\n",
               one.sec, o.iters, one.cpu, one.pairs_s);
        fflush(stdout);
    }
    if (o.torch_only) {
        gemm = sgemm_gflops();
        printf("sgemm  : OpenBLAS 1024^3 %.1f GFLOP/s on %d thread(s)\n", gemm, o.threads);
    }
    peer peers[5];
    int npeers = 0, best = -1, leanest = -1;
    if (!o.no_torch) {
        const char *deb = getenv("BARLOW_PYTHON") ? getenv("BARLOW_PYTHON") : "/usr/bin/python3";
        peers[npeers++] = (peer){"torch (debian)", deb, 0, .ok = 0};
        if (strcmp(o.torch2, "none") && access(o.torch2, X_OK) == 0) {
            peers[npeers++] = (peer){"torch 2", o.torch2, 0, .ok = 0};
            peers[npeers++] = (peer){"torch 2 CL", o.torch2, 1, .ok = 0};
            if (o.bf16) { /* against its own bf16 too */
                peers[npeers++] = (peer){"torch 2 bf16", o.torch2, 0, .bf16 = 1, .ok = 0};
                peers[npeers++] = (peer){"torch 2 CL bf16", o.torch2, 1, .bf16 = 1, .ok = 0};
            }
        } else if (strcmp(o.torch2, "none")) {
            printf("note: no current PyTorch at %s (install: python3 -m venv /opt/torch2 && "
                   "/opt/torch2/bin/pip install torch torchvision); Debian's alone is the peer\n",
                   o.torch2);
        }
        for (int k = 0; k < npeers; k++) {
            peer *pe = &peers[k];
            if (run_torch(&o, pe) != BT_OK) {
                fprintf(stderr, "bench_step: %s\n", bt_error());
                continue;
            }
            pe->ok = 1;
            printf("%-15s: %.3f s/step (median of %d; cpu %.3f s), %.2f pairs/s, %.1f GFLOP/s "
                   "useful, peak RSS %.0f MiB, loss %.6g\n", pe->name, pe->r.sec, o.iters,
                   pe->r.cpu, pe->r.pairs_s, flops / pe->r.sec / 1e9, pe->r.rss_mb, pe->r.loss);
            fflush(stdout);
            if (best < 0 || pe->r.sec < peers[best].r.sec) best = k;
            if (leanest < 0 || pe->r.rss_mb < peers[leanest].r.rss_mb) leanest = k;
        }
        if (best < 0) {
            fprintf(stderr, "bench_step: no PyTorch peer ran\n");
            return 1;
        }
    }

    printf("\n%-15s %10s %10s %10s %12s %14s %12s\n", "", "s/step", "cpu s/step", "pairs/s",
           "useful GF/s", "peak RSS MiB", "efficiency");
    if (!o.torch_only)
        printf("%-15s %10.3f %10.3f %10.2f %12.1f %14.0f %11.1f%%\n", "barlow", ours.sec, ours.cpu,
               ours.pairs_s, flops / ours.sec / 1e9, ours.rss_mb, 100 * flops / ours.sec / 1e9 / gemm);
    for (int k = 0; k < npeers; k++) {
        const peer *pe = &peers[k];
        if (!pe->ok) continue;
        printf("%-15s %10.3f %10.3f %10.2f %12.1f %14.0f ", pe->name, pe->r.sec, pe->r.cpu,
               pe->r.pairs_s, flops / pe->r.sec / 1e9, pe->r.rss_mb);
        if (gemm > 0) printf("%11.1f%%\n", 100 * flops / pe->r.sec / 1e9 / gemm);
        else printf("%12s\n", "-");
    }
    if (!o.torch_only && !o.no_torch) {
        const step_result *t = &peers[best].r;
        printf("peer: %s, the fastest of %d\n", peers[best].name, npeers);
        printf("speed ratio barlow/pytorch: %.2fx (by CPU time: %.2fx)   memory ratio "
               "barlow/pytorch: %.2fx (against the leanest, %s: %.2fx)\n",
               ours.pairs_s / t->pairs_s, t->cpu / ours.cpu, ours.rss_mb / t->rss_mb,
               peers[leanest].name, ours.rss_mb / peers[leanest].r.rss_mb);
    }
    if (gemm > 0)
        printf("efficiency = useful GFLOP/s / sgemm 1024^3 GFLOP/s (%.1f)\n", gemm);
    if (o.scaling)
        printf("thread scaling: %d threads %.2fx faster than 1 (%.3f vs %.3f s/step)\n", o.threads,
               one.sec / ours.sec, ours.sec, one.sec);
    return 0;
}
