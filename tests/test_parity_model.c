/* Whole-model parity with the PyTorch reference (main.py's BarlowTwins, run live): same initial
 * weights and inputs give the same loss, the same gradient for every parameter, and the same
 * trajectory and final weights over LARS steps with the reference schedule. */
#include "barlow/error.h"
#include "barlow/train.h"
#include "testutil.h"
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc(n + 1);
    if (fread(s, 1, n, f) != (size_t)n) n = 0;
    s[n] = 0;
    fclose(f);
    return s;
}

/* Compares every tensor of `tab` (buf) with "<prefix><name>" in f: max|d| <= tol * max|ref|. */
static double compare_table(const bt_tensor_table *tab, const float *buf, const bt_st_file *f,
                            const char *prefix, double tol, const char *what) {
    double worst = 0;
    int shown = 0;
    for (int i = 0; i < tab->n; i++) {
        const bt_tensor_info *e = &tab->t[i];
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        float *r = malloc(e->numel * sizeof(float));
        int rc = bt_st_read_f32(f, name, r, e->ndim, e->shape);
        CHECK(rc == BT_OK, "%s: %s", what, bt_error());
        if (rc == BT_OK) {
            double d = tu_maxabsdiff_f32(buf + e->offset, r, e->numel);
            double mx = tu_maxabs_f32(r, e->numel);
            double rel = d / (mx > 0 ? mx : 1e-30);
            if (mx == 0) rel = d > 0 ? INFINITY : 0;
            if (rel > tol && shown++ >= 4) tu_case_failed = 1; else
            CHECK(rel <= tol, "%s %s: max|d| %.3g vs max|ref| %.3g (rel %.3g > %.1g)", what, e->name, d, mx, rel, tol);
            if (rel > worst) worst = rel;
        }
        free(r);
    }
    return worst;
}

/* ref: "f32" or "f64" (the precision PyTorch computes in); gtol: gradient tolerance. */
static void parity(const char *arch, const char *proj, int N, int H, int steps, int form,
                   const char *refdt, double gtol) {
    char cmd[1024], path[600];
    const char *dir = tu_tmpdir();
    snprintf(cmd, sizeof cmd, "%s tests/py/parity_model.py %s '%s' %s %d %d %d %s", tu_python(), dir, arch,
             proj, N, H, steps, refdt);
    int rc = system(cmd);
    CHECK(rc == 0, "python reference failed: %s", cmd);
    if (rc) return;
    bt_model *m = NULL;
    rc = bt_model_new(&m, arch, proj);
    CHECK(rc == BT_OK, "%s", bt_error());
    if (rc) return;
    bt_st_file *init = NULL, *in = NULL, *grads = NULL, *final = NULL;
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    CHECK(bt_st_open(&init, path) == BT_OK, "%s", bt_error());
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    CHECK(bt_st_open(&in, path) == BT_OK, "%s", bt_error());
    snprintf(path, sizeof path, "%s/grads.safetensors", dir);
    CHECK(bt_st_open(&grads, path) == BT_OK, "%s", bt_error());
    snprintf(path, sizeof path, "%s/final.safetensors", dir);
    CHECK(bt_st_open(&final, path) == BT_OK, "%s", bt_error());
    snprintf(path, sizeof path, "%s/ref.json", dir);
    char *js = slurp(path);
    cJSON *ref = js ? cJSON_Parse(js) : NULL;
    CHECK(ref != NULL, "cannot read %s", path);
    if (!init || !in || !grads || !final || !ref) goto out;

    rc = bt_model_read(m, init, BT_IO_PARAMS | BT_IO_BUFS, 1);
    CHECK(rc == BT_OK, "%s", bt_error());
    CHECK(bt_model_prepare(m, N, H, H) == BT_OK, "%s", bt_error());
    size_t nx = (size_t)N * 3 * H * H;
    float *x1 = malloc(steps * nx * sizeof(float)), *x2 = malloc(steps * nx * sizeof(float));
    for (int s = 0; s < steps; s++) {
        int64_t shape[4] = {N, 3, H, H};
        char n1[32], n2[32];
        snprintf(n1, sizeof n1, "x1_%d", s);
        snprintf(n2, sizeof n2, "x2_%d", s);
        CHECK(bt_st_read_f32(in, n1, x1 + s * nx, 4, shape) == BT_OK, "%s", bt_error());
        CHECK(bt_st_read_f32(in, n2, x2 + s * nx, 4, shape) == BT_OK, "%s", bt_error());
    }
    /* One step: loss and gradients. */
    bt_loss_result res;
    rc = bt_train_grads(m, x1, x2, 0.0051f, form, &res);
    CHECK(rc == BT_OK, "%s", bt_error());
    double rl = cJSON_GetObjectItem(ref, "loss")->valuedouble;
    double ron = cJSON_GetObjectItem(ref, "on_diag")->valuedouble;
    double roff = cJSON_GetObjectItem(ref, "off_diag")->valuedouble;
    CHECK(fabs(res.loss - rl) <= 1e-5 * fabs(rl), "loss %.9g vs torch %.9g (rel %.3g)", res.loss, rl, fabs(res.loss - rl) / fabs(rl));
    CHECK(fabs(res.on_diag - ron) <= 1e-5 * fabs(ron), "on_diag %.9g vs %.9g", res.on_diag, ron);
    CHECK(fabs(res.off_diag - roff) <= 1e-4 * fabs(roff), "off_diag %.9g vs %.9g", res.off_diag, roff);
    double gw = compare_table(&m->params, m->g, grads, "grad.", gtol, "grad");
    printf("  %s proj %s N=%d H=%d form=%d vs torch %s: loss %.7g (torch %.7g, rel %.2g), worst grad rel %.2g\n",
           arch, proj, N, H, res.form_used, refdt, res.loss, rl, fabs(res.loss - rl) / fabs(rl), gw);

    /* LARS trajectory from the initial state. */
    CHECK(bt_model_read(m, init, BT_IO_PARAMS | BT_IO_BUFS, 1) == BT_OK, "%s", bt_error());
    memset(m->mom, 0, m->params.total * sizeof(float));
    cJSON *traj = cJSON_GetObjectItem(ref, "trajectory");
    bt_lars_cfg cfg;
    bt_lars_default(&cfg);
    double worst_l = 0;
    for (int s = 0; s < steps; s++) {
        bt_lr_schedule(&cfg.lr_weights, &cfg.lr_biases, s, 1, 10, 2, N, 0.2, 0.0048);
        rc = bt_train_grads(m, x1 + s * nx, x2 + s * nx, 0.0051f, form, &res);
        CHECK(rc == BT_OK, "%s", bt_error());
        bt_lars_step(m->p, m->g, m->mom, &m->params, &cfg);
        double t = cJSON_GetArrayItem(traj, s)->valuedouble;
        double rel = fabs(res.loss - t) / fabs(t);
        CHECK(rel <= 1e-4, "step %d loss %.9g vs torch %.9g", s, res.loss, t);
        if (rel > worst_l) worst_l = rel;
    }
    double pw = compare_table(&m->params, m->p, final, "", 1e-4, "param");
    double bw = compare_table(&m->bufs, m->b, final, "", 1e-4, "buffer");
    double mw = compare_table(&m->params, m->mom, final, "momentum.", 1e-3, "momentum");
    printf("  %d LARS steps: worst loss rel %.2g, params rel %.2g, buffers rel %.2g, momentum rel %.2g\n",
           steps, worst_l, pw, bw, mw);
    free(x1);
    free(x2);
out:
    cJSON_Delete(ref);
    free(js);
    bt_st_close(init);
    bt_st_close(in);
    bt_st_close(grads);
    bt_st_close(final);
    bt_model_free(m);
}

static void resnet18_cifar_gram(void) { parity("resnet18-cifar:w=0.25", "64-64-64", 8, 16, 5, BT_LOSS_AUTO, "f32", 1e-4); }
static void resnet18_cifar_direct(void) { parity("resnet18-cifar:w=0.25", "32-48", 16, 16, 3, BT_LOSS_DIRECT, "f64", 1e-4); }
static void resnet50_bottleneck(void) { parity("resnet50", "512-512", 4, 64, 2, BT_LOSS_AUTO, "f64", 1e-4); }

static void names_match_torchvision(void) {
    /* Parameter and buffer names and shapes equal torchvision's resnet50 state_dict. */
    bt_model *m = NULL;
    CHECK(bt_model_new(&m, "resnet50", NULL) == BT_OK, "%s", bt_error());
    if (!m) return;
    char cmd[1400], path[600];
    snprintf(path, sizeof path, "%s/names.txt", tu_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s -c \"import torchvision; sd = torchvision.models.resnet50().state_dict(); "
             "print('\\n'.join(k + ' ' + 'x'.join(map(str, v.shape)) for k, v in sd.items() "
             "if not k.startswith('fc.') and not k.endswith('num_batches_tracked')))\" > %s",
             tu_python(), path);
    CHECK(system(cmd) == 0, "python failed");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "no %s", path);
    if (!f) { bt_model_free(m); return; }
    char line[256];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128], shape[64], ours[64] = "";
        if (sscanf(line, "%127s %63s", name, shape) != 2) continue;
        count++;
        int i = bt_table_find(&m->params, name);
        const bt_tensor_info *t = i >= 0 ? &m->params.t[i] : NULL;
        if (!t) { i = bt_table_find(&m->bufs, name); t = i >= 0 ? &m->bufs.t[i] : NULL; }
        CHECK(t != NULL, "torchvision tensor %s missing", name);
        if (!t) continue;
        for (int d = 0; d < t->ndim; d++)
            snprintf(ours + strlen(ours), sizeof ours - strlen(ours), d ? "x%lld" : "%lld", (long long)t->shape[d]);
        CHECK(!strcmp(ours, shape), "%s: ours %s, torchvision %s", name, ours, shape);
    }
    fclose(f);
    CHECK(count == m->params.n + m->bufs.n, "torchvision has %d tensors, we have %d", count, m->params.n + m->bufs.n);
    bt_model_free(m);
}

static void bad_arch_and_projector(void) {
    bt_model_cfg c;
    CHECK(bt_model_cfg_parse(&c, "resnet19", "64") == BT_EINVAL && strstr(bt_error(), "resnet19"), "%s", bt_error());
    CHECK(bt_model_cfg_parse(&c, "resnet18:w=0", "64") == BT_EINVAL, "width 0 accepted");
    CHECK(bt_model_cfg_parse(&c, "resnet18", "64--64") == BT_EINVAL && strstr(bt_error(), "--projector"), "%s", bt_error());
    CHECK(bt_model_cfg_parse(&c, "resnet18", "64-") == BT_EINVAL, "trailing dash accepted");
    CHECK(bt_model_cfg_parse(&c, "resnet18", "abc") == BT_EINVAL, "abc accepted");
    CHECK(bt_model_cfg_parse(&c, "resnet18-cifar:w=0.5", "8192-8192-8192") == BT_OK, "%s", bt_error());
    CHECK(c.cifar && c.widths[0] == 32 && c.nproj == 3 && c.proj[2] == 8192 && c.feat_dim == 256, "parse");
}

static void bad_weights(void) {
    /* A checkpoint of another architecture is refused with the tensor named. */
    bt_model *a = NULL, *b = NULL;
    CHECK(bt_model_new(&a, "resnet18-cifar:w=0.25", "32") == BT_OK, "%s", bt_error());
    CHECK(bt_model_new(&b, "resnet18-cifar:w=0.5", "32") == BT_OK, "%s", bt_error());
    if (!a || !b) return;
    char path[600];
    snprintf(path, sizeof path, "%s/a.safetensors", tu_tmpdir());
    bt_st_writer *w = bt_st_writer_new();
    CHECK(bt_model_write(a, w, BT_IO_PARAMS | BT_IO_BUFS) == BT_OK, "%s", bt_error());
    CHECK(bt_st_writer_save(w, path) == BT_OK, "%s", bt_error());
    bt_st_writer_free(w);
    bt_st_file *f = NULL;
    CHECK(bt_st_open(&f, path) == BT_OK, "%s", bt_error());
    if (!f) return;
    CHECK(bt_model_read(a, f, BT_IO_PARAMS | BT_IO_BUFS, 1) == BT_OK, "%s", bt_error());
    int rc = bt_model_read(b, f, BT_IO_PARAMS | BT_IO_BUFS, 1);
    CHECK(rc == BT_EFORMAT && strstr(bt_error(), "conv1.weight"), "rc %d: %s", rc, bt_error());
    bt_st_close(f);
    bt_model_free(a);
    bt_model_free(b);
}

int main(void) {
    TEST_RUN(bad_arch_and_projector);
    TEST_RUN(names_match_torchvision);
    TEST_RUN(bad_weights);
    TEST_RUN(resnet18_cifar_gram);
    TEST_RUN(resnet18_cifar_direct);
    TEST_RUN(resnet50_bottleneck);
    return tu_finish();
}
