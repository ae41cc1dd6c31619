/* Whole-model parity with the PyTorch reference (main.py's BarlowTwins, run live): from the same
 * initial weights and inputs, barlow's loss, the gradient of every parameter, and the losses,
 * weights, BN buffers and momentum over LARS steps with the reference schedule are as close to
 * PyTorch in float64 as PyTorch's own float32 is (the criterion is stated below). */
#include "barlow/error.h"
#include "barlow/train.h"
#include "nn/model_internal.h"
#include "testutil.h"
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The criterion (testutil.h, tu_parity_check): PyTorch computes every quantity twice from the
 * same float32 weights and inputs, in float64 (the reference) and in float32 (its own float32
 * error on these inputs). barlow's float32 result passes when, element by element,
 *     |ours - ref64| <= K * max(E_g, 4 u max|ref64|_g) + u |ref64|       (K = TU_PARITY_K = 8)
 * where E_g is PyTorch's largest float32 error in the element's group: one output channel of
 * a weight or gradient (the first dimension), the whole tensor for 1-D tensors (biases, BN
 * affine and buffers) and for the scalar series (the loss parts, the per-step losses). So a
 * verdict depends on how far barlow is from float64 compared with PyTorch, not on how one
 * float32 rounding order happened to land; it holds whatever kernels the machine runs.
 * Parameters and BN buffers after the LARS steps are compared as the change from the initial
 * state (final - init): the update itself, not the much larger initial values it sits on.
 * Over several steps the network amplifies its first roundings along a few directions, so the
 * errors are fewer independent samples and the ratio of two of them spreads wider: the
 * trajectory is judged with K_TRAJ = 16 (seen: up to 5.9 on three OpenBLAS core types). A
 * wrong backward is thousands of times off (a sign flipped in batch norm's input gradient:
 * see the closing note of the issue that introduced this criterion).
 * ReLU and max-pool kinks: the reference applies barlow's own decisions (tests/py/
 * parity_model.py says why, and checks that those are float64's up to rounding ties). */
#define K_TRAJ 16.0

typedef struct {
    const bt_st_file *ref, *peer; /* float64 reference, PyTorch float32 */
    const bt_st_file *base;       /* when set: compare (x - base) with (ref - base), (peer - base) */
    const char *prefix, *what;
    double k; /* allowed multiple of PyTorch's error */
    double worst;
    char worst_name[160];
} cmp_ctx;

/* Compares every tensor of `tab` (buf) with "<prefix><name>" in the two reference files. */
static void compare_table(cmp_ctx *c, const bt_tensor_table *tab, const float *buf) {
    for (int i = 0; i < tab->n; i++) {
        const bt_tensor_info *e = &tab->t[i];
        char name[200];
        snprintf(name, sizeof name, "%s%s", c->prefix, e->name);
        size_t n = e->numel;
        double *r = tu_xcalloc(n, sizeof(double));
        float *p = tu_xcalloc(n, sizeof(float)), *o = tu_xcalloc(n, sizeof(float));
        float *b = tu_xcalloc(n, sizeof(float));
        int rc = bt_st_read_raw(c->ref, name, BT_ST_F64, r, e->ndim, e->shape);
        CHECK(rc == BT_OK, "%s: %s", c->what, bt_error());
        int rc2 = bt_st_read_f32(c->peer, name, p, e->ndim, e->shape);
        CHECK(rc2 == BT_OK, "%s: %s", c->what, bt_error());
        int rc3 = c->base ? bt_st_read_f32(c->base, e->name, b, e->ndim, e->shape) : BT_OK;
        CHECK(rc3 == BT_OK, "%s: %s", c->what, bt_error());
        if (rc == BT_OK && rc2 == BT_OK && rc3 == BT_OK) {
            for (size_t j = 0; j < n; j++) {
                o[j] = buf[e->offset + j] - b[j];
                p[j] -= b[j];
                r[j] -= b[j];
            }
            size_t ng = e->ndim >= 2 ? (size_t)e->shape[0] : 1; /* output channels */
            char what[260];
            snprintf(what, sizeof what, "%s %s", c->what, e->name);
            double q = tu_parity_check(what, o, r, p, n, n / ng, ng, c->k);
            if (q > c->worst || q != q) {
                c->worst = q != q ? INFINITY : q;
                snprintf(c->worst_name, sizeof c->worst_name, "%s", e->name);
            }
        }
        free(r), free(p), free(o), free(b);
    }
}

/* A series of scalars (loss parts, per-step losses) as one group. */
static double compare_scalars(const char *what, const double *ours, const double *ref,
                              const double *peer, int n, double k) {
    float o[64], p[64];
    for (int i = 0; i < n && i < 64; i++) o[i] = (float)ours[i], p[i] = (float)peer[i];
    return tu_parity_check(what, o, ref, p, n < 64 ? n : 64, 64, 1, k);
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static bt_st_file *open_in(const char *dir, const char *file) {
    char path[700];
    bt_st_file *f = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECK(bt_st_open(&f, path) == BT_OK, "%s", bt_error());
    return f;
}

/* barlow's ReLU masks (packed bits, most significant first: numpy's packbits) and max-pool
 * argmax of step `s`, both views, as "relu.S.V.K" / "pool.S.V.K" in forward order; the
 * reference applies them instead of deciding its kinks again (tests/py/parity_model.py says
 * why). The buffers go to `keep` (freed by the caller after the writer has saved). */
static void add_decisions(bt_st_writer *w, const bt_model *m, int s, void **keep, int *nkeep,
                          int cap) {
    for (int v = 0; v < 2; v++) {
        int kr = 0, kp = 0;
        for (int i = 0; i < m->nnodes; i++) {
            const bt_node *n = &m->nodes[i];
            /* a fused batch norm + ReLU or add + ReLU: its output is the ReLU's */
            const int relu = n->type == N_RELU || n->type == N_BN_RELU || n->type == N_ADD_RELU;
            if (!relu && n->type != N_MAXPOOL) continue;
            int o = n->out;
            size_t cnt = (size_t)m->N * m->act_c[o] * m->act_h[o] * m->act_w[o];
            char name[64];
            CHECK(*nkeep < cap, "more than %d decision tensors", cap);
            if (*nkeep >= cap) return;
            if (relu) {
                const float *y = m->act[v] + m->act_off[o];
                unsigned char *bits = tu_xcalloc((cnt + 7) / 8, 1);
                for (size_t j = 0; j < cnt; j++)
                    if (y[j] > 0) bits[j >> 3] |= (unsigned char)(0x80u >> (j & 7));
                int64_t shape[1] = {(int64_t)((cnt + 7) / 8)};
                snprintf(name, sizeof name, "relu.%d.%d.%d", s, v, kr++);
                CHECK(bt_st_writer_add(w, name, BT_ST_U8, 1, shape, bits) == BT_OK, "%s", bt_error());
                keep[(*nkeep)++] = bits;
            } else {
                int32_t *idx = tu_xcalloc(cnt, sizeof(int32_t));
                memcpy(idx, m->stat[v] + n->stat_off, cnt * sizeof(int32_t));
                int64_t shape[4] = {m->N, m->act_c[o], m->act_h[o], m->act_w[o]};
                snprintf(name, sizeof name, "pool.%d.%d.%d", s, v, kp++);
                CHECK(bt_st_writer_add(w, name, BT_ST_I32, 4, shape, idx) == BT_OK, "%s", bt_error());
                keep[(*nkeep)++] = idx;
            }
        }
    }
}

/* One configuration: loss and gradients of one step, then `steps` LARS steps (the learning
 * rate scaled for a batch of lr_batch: the reference's peak rate is 0.2 * 2048/256 = 1.6).
 * barlow runs first and hands its kink decisions to the reference, which then runs. */
static void parity(const char *arch, const char *proj, int N, int H, int steps, int form,
                   int lr_batch) {
    if (tu_skip_without_torch()) return;
    char cmd[1024], path[600];
    const char *dir = tu_tmpdir();
    snprintf(cmd, sizeof cmd, "%s tests/py/parity_model.py make %s '%s' %s %d %d %d", tu_python(),
             dir, arch, proj, N, H, steps);
    int rc = system(cmd);
    CHECK(rc == 0, "python reference failed: %s", cmd);
    if (rc) return;
    bt_model *m = NULL;
    rc = bt_model_new(&m, arch, proj);
    CHECK(rc == BT_OK, "%s", bt_error());
    if (rc) return;
    bt_st_file *init = open_in(dir, "init.safetensors"), *in = open_in(dir, "inputs.safetensors");
    bt_st_file *g64 = NULL, *g32 = NULL, *f64 = NULL, *f32 = NULL;
    cJSON *ref = NULL;
    char *js = NULL;
    size_t nx = (size_t)N * 3 * H * H;
    float *x1 = tu_xcalloc(steps * nx, sizeof(float)), *x2 = tu_xcalloc(steps * nx, sizeof(float));
    float *g0 = tu_xcalloc(m->params.total, sizeof(float));
    enum { CAP = 4096 };
    void **keep = tu_xcalloc(CAP, sizeof(void *));
    int nkeep = 0;
    double lo[64];
    bt_loss_result res, res0;
    if (!init || !in || steps > 64) goto out;
    rc = bt_model_read(m, init, BT_IO_PARAMS | BT_IO_BUFS, 1);
    CHECK(rc == BT_OK, "%s", bt_error());
    CHECK(bt_model_prepare(m, N, H, H) == BT_OK, "%s", bt_error());
    for (int s = 0; s < steps; s++) {
        int64_t shape[4] = {N, 3, H, H};
        char n1[32], n2[32];
        snprintf(n1, sizeof n1, "x1_%d", s);
        snprintf(n2, sizeof n2, "x2_%d", s);
        CHECK(bt_st_read_f32(in, n1, x1 + s * nx, 4, shape) == BT_OK, "%s", bt_error());
        CHECK(bt_st_read_f32(in, n2, x2 + s * nx, 4, shape) == BT_OK, "%s", bt_error());
    }
    if (tu_case_failed) goto out;
    /* One step: loss parts and gradients. */
    rc = bt_train_grads(m, x1, x2, 0.0051f, form, &res0);
    CHECK(rc == BT_OK, "%s", bt_error());
    memcpy(g0, m->g, m->params.total * sizeof(float));
    /* LARS trajectory from the initial state, recording the decisions of every step. */
    CHECK(bt_model_read(m, init, BT_IO_PARAMS | BT_IO_BUFS, 1) == BT_OK, "%s", bt_error());
    memset(m->mom, 0, m->params.total * sizeof(float));
    bt_lars_cfg cfg;
    bt_lars_default(&cfg);
    bt_st_writer *w = bt_st_writer_new();
    for (int s = 0; s < steps; s++) {
        bt_lr_schedule(&cfg.lr_weights, &cfg.lr_biases, s, 1, 10, 2, lr_batch, 0.2, 0.0048);
        rc = bt_train_grads(m, x1 + s * nx, x2 + s * nx, 0.0051f, form, &res);
        CHECK(rc == BT_OK, "%s", bt_error());
        add_decisions(w, m, s, keep, &nkeep, CAP);
        bt_lars_step(m->p, m->g, m->mom, &m->params, &cfg);
        lo[s] = res.loss;
    }
    snprintf(path, sizeof path, "%s/decisions.safetensors", dir);
    CHECK(bt_st_writer_save(w, path) == BT_OK, "%s", bt_error());
    bt_st_writer_free(w);
    if (tu_case_failed) goto out;

    snprintf(cmd, sizeof cmd, "%s tests/py/parity_model.py ref %s '%s' %s %d %d %d %d", tu_python(),
             dir, arch, proj, N, H, steps, lr_batch);
    rc = system(cmd);
    /* Exit status 3: barlow's decisions are not float64's up to ties (printed above); the
     * script has still written its results, so the comparisons below run and say more. */
    int st = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    CHECK(rc == 0, "python reference failed (exit status %d): %s", st, cmd);
    if (st != 0 && st != 3) goto out;
    g64 = open_in(dir, "grads_f64.safetensors"), g32 = open_in(dir, "grads_f32.safetensors");
    f64 = open_in(dir, "final_f64.safetensors"), f32 = open_in(dir, "final_f32.safetensors");
    snprintf(path, sizeof path, "%s/ref.json", dir);
    js = tu_slurp(path, NULL);
    ref = js ? cJSON_Parse(js) : NULL;
    CHECK(ref != NULL, "cannot read %s", path);
    const cJSON *r64 = cJSON_GetObjectItem(ref, "f64"), *r32 = cJSON_GetObjectItem(ref, "f32");
    const cJSON *t64 = cJSON_GetObjectItem(r64, "trajectory"), *t32 = cJSON_GetObjectItem(r32, "trajectory");
    const cJSON *dec = cJSON_GetObjectItem(ref, "decisions");
    CHECK(cJSON_GetArraySize(t64) == steps && cJSON_GetArraySize(t32) == steps, "ref.json trajectories");
    if (!g64 || !g32 || !f64 || !f32 || !ref || cJSON_GetArraySize(t64) != steps ||
        cJSON_GetArraySize(t32) != steps)
        goto out; /* (after a decision mismatch, still compare: the figures say more) */

    double ours[3] = {res0.loss, res0.on_diag, res0.off_diag};
    double rf[3] = {jnum(r64, "loss"), jnum(r64, "on_diag"), jnum(r64, "off_diag")};
    double pf[3] = {jnum(r32, "loss"), jnum(r32, "on_diag"), jnum(r32, "off_diag")};
    double ql = compare_scalars("loss, on_diag, off_diag", ours, rf, pf, 3, TU_PARITY_K);
    cmp_ctx cg = {g64, g32, NULL, "grad.", "grad", TU_PARITY_K, 0, ""};
    compare_table(&cg, &m->params, g0);
    const cJSON *dr = cJSON_GetObjectItem(dec, "relu"), *dp = cJSON_GetObjectItem(dec, "pool");
    const cJSON *drl = cJSON_GetObjectItem(dec, "relu_later"), *dpl = cJSON_GetObjectItem(dec, "pool_later");
    printf("  %s proj %s N=%d H=%d form=%d: loss %.9g (f64 %.9g, PyTorch f32 %.9g); error in units "
           "of PyTorch's f32 error: loss parts %.2f, worst grad %.2f (%s)\n"
           "  barlow's kink decisions that float64 takes otherwise: step 0: %d ReLU inputs, %d "
           "max-pool windows, all within %.2g rms(x) of the tie; later steps: %d and %d, within %.2g\n",
           arch, proj, N, H, res0.form_used, res0.loss, rf[0], pf[0], ql, cg.worst, cg.worst_name,
           (int)jnum(dr, "differ"), (int)jnum(dp, "differ"),
           fmax(jnum(dr, "worst_rel"), jnum(dp, "worst_rel")), (int)jnum(drl, "differ"),
           (int)jnum(dpl, "differ"), fmax(jnum(drl, "worst_rel"), jnum(dpl, "worst_rel")));
    double lr64[64], lp[64];
    for (int s = 0; s < steps; s++) {
        lr64[s] = cJSON_GetArrayItem(t64, s)->valuedouble;
        lp[s] = cJSON_GetArrayItem(t32, s)->valuedouble;
    }
    double qt = compare_scalars("per-step loss", lo, lr64, lp, steps, K_TRAJ);
    cmp_ctx cp = {f64, f32, init, "", "param change", K_TRAJ, 0, ""};
    compare_table(&cp, &m->params, m->p);
    cmp_ctx cb = {f64, f32, init, "", "buffer change", K_TRAJ, 0, ""};
    compare_table(&cb, &m->bufs, m->b);
    cmp_ctx cm = {f64, f32, NULL, "momentum.", "momentum", K_TRAJ, 0, ""};
    compare_table(&cm, &m->params, m->mom);
    printf("  %d LARS steps (peak lr %.3g): error in units of PyTorch's f32 error: losses %.2f, "
           "param change %.2f (%s), buffer change %.2f (%s), momentum %.2f (%s)\n",
           steps, 0.2 * lr_batch / 256, qt, cp.worst, cp.worst_name, cb.worst, cb.worst_name,
           cm.worst, cm.worst_name);
out:
    for (int i = 0; i < nkeep; i++) free(keep[i]);
    free(keep);
    free(g0);
    free(x1);
    free(x2);
    cJSON_Delete(ref);
    free(js);
    bt_st_close(init);
    bt_st_close(in);
    bt_st_close(g64);
    bt_st_close(g32);
    bt_st_close(f64);
    bt_st_close(f32);
    bt_model_free(m);
}

/* Shapes with enough values per batch-norm channel: the projector's BN sees N values, the last
 * stage of the backbone N * (H/16)^2 (CIFAR stem) or N * (H/32)^2. */
static void resnet18_cifar_gram(void) { parity("resnet18-cifar:w=0.25", "64-64-64", 16, 16, 5, BT_LOSS_AUTO, 2048); }
static void resnet18_cifar_direct(void) { parity("resnet18-cifar:w=0.25", "32-48", 32, 16, 5, BT_LOSS_DIRECT, 2048); }
static void resnet50_bottleneck(void) { parity("resnet50:w=0.5", "512-512", 8, 64, 4, BT_LOSS_AUTO, 2048); }

static void names_match_torchvision(void) {
    /* Parameter and buffer names and shapes equal torchvision's resnet50 state_dict. */
    if (tu_skip_without_torch()) return;
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
