/* Interop with PyTorch and ONNX, checked live against /usr/bin/python3 (torch, torchvision,
 * safetensors, onnx, onnxruntime): exports that torchvision / the reference main.py load with
 * load_state_dict(strict=True) and that compute our features; PyTorch-made weights loaded with
 * bt_model_init_from; the ONNX export under onnx.checker and onnxruntime at two batch sizes;
 * the .npy writer under numpy.load; and `barlow embed` against bt_model_forward. */
#include "barlow/augment.h"
#include "barlow/checkpoint.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/interop.h"
#include "barlow/npy.h"
#include "barlow/onnx.h"
#include "barlow/safetensors.h"
#include "testutil.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CIFAR_ARCH "resnet18-cifar:w=0.25"
#define CIFAR_PROJ "32-16"
/* Features agree to float rounding: PyTorch and onnxruntime sum in other orders (conv
 * algorithms, BN folded or not), which moves results by ~1e-6 relative on these small nets. */
#define TOL 1e-4

static char path_buf[8][1024];
static const char *P(int slot, const char *name) {
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", tu_tmpdir(), name);
    return path_buf[slot];
}

static int write_f32(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(x, sizeof(float), n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* n floats from path (exactly n, else NULL). */
static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *x = malloc(n * sizeof(float) + 4);
    size_t r = x ? fread(x, sizeof(float), n + 1, f) : 0;
    fclose(f);
    if (r != n) {
        free(x);
        return NULL;
    }
    return x;
}

static int py(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tests/py/interop_check.py %s", tu_python(), args);
    int rc = system(cmd);
    CHECK(rc == 0, "python failed: %s", cmd);
    return rc;
}

/* max|a-ref| / max|ref|. */
static double rel(const float *a, const float *ref, size_t n) {
    double mx = tu_maxabs_f32(ref, n);
    return tu_maxabsdiff_f32(a, ref, n) / (mx > 0 ? mx : 1e-30);
}

/* Random weights with BN parameters and running statistics far from their defaults, so a
 * mixed-up BN tensor (mean for var, gamma for beta) cannot go unnoticed. */
static void randomize(bt_model *m, uint64_t seed) {
    bt_model_init(m, seed);
    tu_rng r = {seed * 7919 + 1};
    for (int i = 0; i < m->params.n; i++) {
        const bt_tensor_info *e = &m->params.t[i];
        if (e->ndim != 1) continue;
        int is_w = strstr(e->name, ".weight") != NULL;
        for (size_t j = 0; j < e->numel; j++)
            m->p[e->offset + j] = is_w ? (float)(0.5 + tu_uniform(&r)) : (float)(0.2 * tu_normal(&r));
    }
    for (int i = 0; i < m->bufs.n; i++) {
        const bt_tensor_info *e = &m->bufs.t[i];
        int is_var = strstr(e->name, "running_var") != NULL;
        for (size_t j = 0; j < e->numel; j++)
            m->b[e->offset + j] = is_var ? (float)(0.5 + 1.5 * tu_uniform(&r)) : (float)(0.2 * tu_normal(&r));
    }
    m->bn_batches = 5;
}

static float *make_input(int N, int H, uint64_t seed) {
    size_t n = (size_t)N * 3 * H * H;
    float *x = malloc(n * sizeof(float));
    tu_rng r = {seed};
    tu_fill_f32(x, n, &r, 1.0);
    return x;
}

/* Our eval-mode backbone features (N, feat_dim) of x, malloc'd. */
static float *features(bt_model *m, const float *x, int N, int H) {
    if (bt_model_prepare(m, N, H, H) || bt_model_forward(m, 0, x, 0, 1)) {
        CHECK(0, "forward: %s", bt_error());
        return NULL;
    }
    size_t n = (size_t)N * m->cfg.feat_dim;
    float *y = malloc(n * sizeof(float));
    memcpy(y, bt_model_features(m, 0), n * sizeof(float));
    return y;
}

/* After the Python side has written PyTorch's features of x in float32 (y_torch.bin) and
 * float64 (y_torch64.bin), judges our features of x against float64 by PyTorch's own float32
 * error (tu_parity_check, one group per image). */
static void compare_torch(bt_model *m, const float *x, int N, int H, const char *what) {
    float *ours = features(m, x, N, H);
    size_t n = (size_t)N * m->cfg.feat_dim;
    float *peer = read_f32(P(7, "y_torch.bin"), n);
    double *ref = tu_xcalloc(n, sizeof(double));
    FILE *f = fopen(P(6, "y_torch64.bin"), "rb");
    size_t got = f ? fread(ref, sizeof(double), n, f) : 0;
    if (f) fclose(f);
    CHECK(peer != NULL && got == n, "%s: no PyTorch output", what);
    if (ours && peer && got == n) {
        double q = tu_parity_check(what, ours, ref, peer, n, m->cfg.feat_dim, N, TU_PARITY_K);
        printf("  %s: error %.2f x PyTorch's float32 error (max|y| %.3g)\n", what, q,
               tu_maxabs_f64(ref, n));
        CHECK(tu_maxabs_f64(ref, n) > 1e-3, "%s: degenerate features", what);
    }
    free(ours);
    free(peer);
    free(ref);
    remove(P(7, "y_torch.bin"));
    remove(P(6, "y_torch64.bin"));
}

/* The CIFAR model with projector, saved as a training checkpoint (shared by several cases). */
static bt_model *ckpt_model;
static const char *ckpt_path;
static int setup_ckpt(void) {
    if (ckpt_model) return 1;
    if (bt_model_new(&ckpt_model, CIFAR_ARCH, CIFAR_PROJ)) {
        CHECK(0, "model: %s", bt_error());
        return 0;
    }
    randomize(ckpt_model, 11);
    bt_ckpt_state st = {.epoch = 1, .next_batch = 0, .step = 10, .steps_per_epoch = 10, .seed = 3,
                        .config = "{\"arch\": \"" CIFAR_ARCH "\", \"projector\": \"" CIFAR_PROJ "\"}"};
    ckpt_path = P(0, "checkpoint.safetensors");
    int rc = bt_ckpt_save(ckpt_path, ckpt_model, &st);
    CHECK(rc == 0, "bt_ckpt_save: %s", bt_error());
    return rc == 0;
}

static void export_cifar_into_reference_backbone(void) {
    if (tu_skip_without("torch")) return;
    if (!setup_ckpt()) return;
    bt_model *m = NULL;
    char *cfg = NULL;
    int rc = bt_model_load_any(&m, ckpt_path, NULL, 0, &cfg);
    CHECK(rc == 0, "load checkpoint: %s", bt_error());
    if (rc) return;
    CHECK(m->cfg.nproj == 0 && !strcmp(m->cfg.arch, CIFAR_ARCH), "arch %s nproj %d", m->cfg.arch, m->cfg.nproj);
    CHECK(cfg && strstr(cfg, CIFAR_ARCH), "config not returned");
    rc = bt_export_safetensors(m, P(1, "export.safetensors"), 0, cfg);
    CHECK(rc == 0, "export: %s", bt_error());
    /* The file holds exactly the torchvision keys: every BN with its I64 counter, no fc. */
    bt_st_file *f = NULL;
    if (!rc && bt_st_open(&f, P(1, "export.safetensors")) == 0) {
        const bt_st_tensor *t = bt_st_find(f, "layer3.1.bn2.num_batches_tracked");
        CHECK(t && t->dtype == BT_ST_I64 && t->ndim == 0 && *(const int64_t *)t->data == 5,
              "num_batches_tracked missing or wrong");
        CHECK(!bt_st_find(f, "projector.0.weight") && !bt_st_find(f, "bn.running_mean"), "projector exported");
        CHECK(bt_st_meta(f, "arch") && !strcmp(bt_st_meta(f, "arch"), CIFAR_ARCH), "arch metadata");
        bt_st_close(f);
    }
    int N = 4, H = 16;
    float *x = make_input(N, H, 21);
    write_f32(P(2, "x.bin"), x, (size_t)N * 3 * H * H);
    char args[1200];
    snprintf(args, sizeof args, "export %s '%s' %d %d", tu_tmpdir(), CIFAR_ARCH, N, H);
    if (!rc && py(args) == 0) compare_torch(ckpt_model, x, N, H, CIFAR_ARCH " export");
    /* And the export reads back bit for bit. */
    bt_model *back = NULL;
    if (!rc && bt_model_new(&back, CIFAR_ARCH, NULL) == 0) {
        rc = bt_model_init_from(back, P(1, "export.safetensors"));
        CHECK(rc == 0, "init_from export: %s", bt_error());
        CHECK(!memcmp(back->p, m->p, m->params.total * sizeof(float)) &&
              !memcmp(back->b, m->b, m->bufs.total * sizeof(float)) && back->bn_batches == 5,
              "export does not read back identically");
    }
    bt_model_free(back);
    free(x);
    free(cfg);
    bt_model_free(m);
}

static void export_resnet18_into_torchvision(void) {
    if (tu_skip_without("torchvision")) return;
    bt_model *m = NULL;
    if (bt_model_new(&m, "resnet18", NULL)) {
        CHECK(0, "model: %s", bt_error());
        return;
    }
    randomize(m, 5);
    int rc = bt_export_safetensors(m, P(1, "export.safetensors"), 0, NULL);
    CHECK(rc == 0, "export: %s", bt_error());
    int N = 2, H = 64;
    float *x = make_input(N, H, 22);
    write_f32(P(2, "x.bin"), x, (size_t)N * 3 * H * H);
    char args[1200];
    snprintf(args, sizeof args, "torchvision %s resnet18 %d %d", tu_tmpdir(), N, H);
    if (!rc && py(args) == 0) compare_torch(m, x, N, H, "torchvision resnet18");
    free(x);
    bt_model_free(m);
}

static void export_with_projector_into_barlowtwins(void) {
    if (tu_skip_without("torch")) return;
    if (!setup_ckpt()) return;
    bt_model *m = NULL;
    int rc = bt_model_load_any(&m, ckpt_path, NULL, 1, NULL);
    CHECK(rc == 0, "load checkpoint: %s", bt_error());
    if (rc) return;
    rc = bt_export_safetensors(m, P(1, "export.safetensors"), 1, NULL);
    CHECK(rc == 0, "export: %s", bt_error());
    int N = 3, H = 16;
    float *x = make_input(N, H, 23);
    write_f32(P(2, "x.bin"), x, (size_t)N * 3 * H * H);
    char args[1200];
    snprintf(args, sizeof args, "twins %s '%s' %s %d %d", tu_tmpdir(), CIFAR_ARCH, CIFAR_PROJ, N, H);
    if (!rc && py(args) == 0) compare_torch(m, x, N, H, "BarlowTwins module");
    /* Reading the export back gives the whole model, projector and loss BN included. */
    bt_model *back = NULL;
    rc = bt_model_load_any(&back, P(1, "export.safetensors"), NULL, 1, NULL);
    CHECK(rc == 0, "reload: %s", bt_error());
    if (!rc) {
        CHECK(back->cfg.nproj == 2 && back->params.total == ckpt_model->params.total &&
              !memcmp(back->p, ckpt_model->p, back->params.total * sizeof(float)) &&
              !memcmp(back->b, ckpt_model->b, back->bufs.total * sizeof(float)),
              "with-projector export does not read back identically");
    }
    bt_model_free(back);
    free(x);
    bt_model_free(m);
}

static void init_from_pytorch(const char *arch, int N, int H, uint64_t seed) {
    if (tu_skip_without("torch")) return;
    float *x = make_input(N, H, seed);
    write_f32(P(2, "x.bin"), x, (size_t)N * 3 * H * H);
    char args[1200];
    snprintf(args, sizeof args, "make %s '%s' %d %d %llu", tu_tmpdir(), arch, N, H,
             (unsigned long long)seed);
    bt_model *m = NULL;
    if (py(args) == 0 && bt_model_new(&m, arch, NULL) == 0) {
        int rc = bt_model_init_from(m, P(1, "torch.safetensors"));
        CHECK(rc == 0, "init_from: %s", bt_error());
        CHECK(m->bn_batches == 7, "num_batches_tracked %lld", (long long)m->bn_batches);
        if (!rc) compare_torch(m, x, N, H, arch);
        /* Broken files: an error naming the tensor, and the model left untouched. */
        static const struct { const char *file, *tensor; } bad[] = {
            {"missing.safetensors", "layer1.0.conv1.weight"},
            {"extra.safetensors", "layer5.0.conv1.weight"},
            {"shape.safetensors", "layer2.0.bn1.weight"},
        };
        float *keep = malloc(m->params.total * sizeof(float));
        memcpy(keep, m->p, m->params.total * sizeof(float));
        for (int i = 0; i < 3; i++) {
            rc = bt_model_init_from(m, P(3, bad[i].file));
            CHECK(rc != 0, "%s accepted", bad[i].file);
            CHECK(strstr(bt_error(), bad[i].tensor) != NULL, "%s: error does not name %s: %s",
                  bad[i].file, bad[i].tensor, bt_error());
            CHECK(!memcmp(keep, m->p, m->params.total * sizeof(float)), "%s: model changed", bad[i].file);
            if (i == 0) printf("  e.g. %s\n", bt_error());
        }
        free(keep);
        /* Weights of another architecture: refused, naming a tensor. */
        bt_model *other = NULL;
        if (bt_model_new(&other, strstr(arch, "resnet50") ? "resnet18" : "resnet34-cifar:w=0.25", NULL) == 0) {
            rc = bt_model_init_from(other, P(1, "torch.safetensors"));
            CHECK(rc != 0 && strstr(bt_error(), "tensor '"), "wrong architecture accepted: %s", bt_error());
            if (rc) printf("  other arch: %s\n", bt_error());
        }
        bt_model_free(other);
    } else {
        CHECK(0, "setup failed: %s", bt_error());
    }
    bt_model_free(m);
    free(x);
}

static void init_from_pytorch_cifar(void) { init_from_pytorch(CIFAR_ARCH, 3, 16, 31); }
static void init_from_pytorch_bottleneck(void) { init_from_pytorch("resnet50:w=0.125", 2, 64, 32); }

/* ONNX export of m; onnxruntime at batch sizes N1 and N2 against our forward. */
static void onnx_check(bt_model *m, int H, const char *what) {
    int N1 = 3, N2 = 5, D = m->cfg.feat_dim;
    int rc = bt_onnx_export(m, P(1, "model.onnx"), 0);
    CHECK(rc == 0, "onnx export: %s", bt_error());
    if (rc) return;
    float *x1 = make_input(N1, H, 41), *x2 = make_input(N2, H, 42);
    write_f32(P(2, "x1.bin"), x1, (size_t)N1 * 3 * H * H);
    write_f32(P(3, "x2.bin"), x2, (size_t)N2 * 3 * H * H);
    char args[1200];
    snprintf(args, sizeof args, "onnx %s %d %d %d %d", tu_tmpdir(), N1, N2, H, D);
    if (py(args) == 0) {
        for (int k = 1; k <= 2; k++) {
            int N = k == 1 ? N1 : N2;
            float *ours = features(m, k == 1 ? x1 : x2, N, H);
            float *ref = read_f32(P(4, k == 1 ? "y_onnx1.bin" : "y_onnx2.bin"), (size_t)N * D);
            CHECK(ours && ref, "%s: missing output", what);
            if (ours && ref) {
                double e = rel(ours, ref, (size_t)N * D);
                printf("  %s ONNX batch %d: max rel diff vs onnxruntime %.2e\n", what, N, e);
                CHECK(e <= TOL, "%s batch %d: rel diff %.3g > %g", what, N, e, TOL);
            }
            free(ours);
            free(ref);
        }
    }
    free(x1);
    free(x2);
}

static void onnx_cifar(void) {
    if (tu_skip_without("onnxruntime")) return;
    if (setup_ckpt()) onnx_check(ckpt_model, 16, CIFAR_ARCH);
}

static void onnx_bottleneck(void) {
    if (tu_skip_without("onnxruntime")) return;
    bt_model *m = NULL;
    int rc = bt_model_new(&m, "resnet50:w=0.125", NULL);
    CHECK(rc == BT_OK, "resnet50:w=0.125: %s", bt_error());
    if (rc) return;
    randomize(m, 9);
    onnx_check(m, 64, "resnet50:w=0.125");
    bt_model_free(m);
}

static void npy_roundtrip(void) {
    if (tu_skip_without("numpy")) return;
    enum { R = 5, C = 7 };
    float x[R * C];
    tu_rng r = {77};
    tu_fill_f32(x, R * C, &r, 3.0);
    int rc = bt_npy_write_f32(P(1, "features.npy"), x, R, C);
    CHECK(rc == 0, "npy write: %s", bt_error());
    char args[1200];
    snprintf(args, sizeof args, "npy %s %d %d", tu_tmpdir(), R, C);
    if (!rc && py(args) == 0) {
        float *y = read_f32(P(2, "y_npy.bin"), R * C);
        CHECK(y && !memcmp(x, y, sizeof x), "numpy.load gives other values");
        free(y);
    }
    /* Fewer rows than announced: an error, and no file left at the path. */
    bt_npy_writer *w = NULL;
    rc = bt_npy_open(&w, P(3, "short.npy"), 3, 2);
    CHECK(rc == 0, "open: %s", bt_error());
    if (!rc) {
        CHECK(bt_npy_append(w, x, 2) == 0, "append");
        CHECK(bt_npy_append(w, x, 2) != 0, "too many rows accepted");
        CHECK(bt_npy_close(w) != 0, "short file accepted");
        CHECK(access(P(3, "short.npy"), F_OK) != 0, "short file left behind");
    }
}

/* A CIFAR-10 binary test batch of n random records under dir. */
static int make_cifar(const char *dir, int n, uint64_t seed) {
    mkdir(dir, 0777);
    char path[1100];
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    tu_rng r = {seed};
    unsigned char rec[3073];
    for (int i = 0; i < n; i++) {
        rec[0] = (unsigned char)(i % 10);
        for (int j = 1; j < 3073; j++) rec[j] = (unsigned char)(tu_next(&r) >> 56);
        fwrite(rec, 1, sizeof rec, f);
    }
    return fclose(f);
}

static void embed_matches_forward(void) {
    if (!setup_ckpt()) return;
    char bin[1024];
    const char *b = getenv("BARLOW_BIN"), *build = getenv("BUILD");
    if (b) snprintf(bin, sizeof bin, "%s", b);
    else snprintf(bin, sizeof bin, "%s/barlow", build ? build : "build");
    const int n = 10, H = 32, D = ckpt_model->cfg.feat_dim;
    const char *data = P(5, "cifar");
    CHECK(make_cifar(data, n, 99) == 0, "cannot write the CIFAR batch");
    /* Backbone weights as a user would hand them over: the safetensors export. */
    bt_model *m = NULL;
    int rc = bt_model_load_any(&m, ckpt_path, NULL, 0, NULL);
    if (!rc) rc = bt_export_safetensors(m, P(6, "backbone.safetensors"), 0, NULL);
    CHECK(rc == 0, "export: %s", bt_error());
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s embed %s --weights %s --out %s/features.npy --preset cifar "
             "--split test --batch-size 4 --workers 2 --threads 1", bin, data, P(6, "backbone.safetensors"),
             tu_tmpdir());
    int sys = system(cmd);
    CHECK(sys == 0, "embed failed: %s", cmd);
    char args[1200];
    snprintf(args, sizeof args, "npy %s %d %d", tu_tmpdir(), n, D);
    float *y = NULL;
    if (!sys && py(args) == 0) y = read_f32(P(2, "y_npy.bin"), (size_t)n * D);
    /* Independently: decode each record, eval transform, one forward of the whole set. */
    bt_dataset *ds = NULL;
    bt_aug_preset pr;
    float *x = malloc((size_t)n * 3 * H * H * sizeof(float));
    bt_aug_work *wk = bt_aug_work_new();
    bt_image im = {0};
    rc = bt_dataset_open(&ds, data, "test") || bt_aug_preset_init(&pr, "cifar");
    CHECK(rc == 0, "dataset: %s", bt_error());
    for (int i = 0; !rc && i < n; i++) {
        rc = bt_dataset_load(ds, (size_t)i, &im) ||
             bt_aug_eval(x + (size_t)i * 3 * H * H, &im, &pr, wk);
        CHECK(rc == 0, "eval transform: %s", bt_error());
    }
    float *ref = rc ? NULL : features(ckpt_model, x, n, H);
    if (y && ref) {
        double e = rel(y, ref, (size_t)n * D);
        printf("  embed: %d x %d features, max rel diff vs bt_model_forward %.2e\n", n, D, e);
        CHECK(e <= 1e-5, "embed rows differ from the forward: rel %.3g", e);
    } else {
        CHECK(0, "no features to compare");
    }
    /* The sidecar names each row. */
    FILE *f = fopen(P(7, "features.tsv"), "r");
    CHECK(f != NULL, "no features.tsv");
    if (f) {
        char line[2048];
        int rows = 0, ok = 1;
        while (fgets(line, sizeof line, f)) {
            if (rows > 0) {
                int row = -1, label = -1;
                char name[1024];
                ok &= sscanf(line, "%d\t%1023[^\t]\t%d", &row, name, &label) == 3 && row == rows - 1 &&
                      label == (rows - 1) % 10 && label == bt_dataset_label(ds, (size_t)row);
            }
            rows++;
        }
        fclose(f);
        CHECK(rows == n + 1 && ok, "features.tsv: %d lines, rows ok %d", rows, ok);
    }
    bt_image_free(&im);
    bt_aug_work_free(wk);
    bt_dataset_close(ds);
    free(x);
    free(y);
    free(ref);
    bt_model_free(m);
}

int main(void) {
    TEST_RUN(export_cifar_into_reference_backbone);
    TEST_RUN(export_resnet18_into_torchvision);
    TEST_RUN(export_with_projector_into_barlowtwins);
    TEST_RUN(init_from_pytorch_cifar);
    TEST_RUN(init_from_pytorch_bottleneck);
    TEST_RUN(onnx_cifar);
    TEST_RUN(onnx_bottleneck);
    TEST_RUN(npy_roundtrip);
    TEST_RUN(embed_matches_forward);
    bt_model_free(ckpt_model);
    return tu_finish();
}
