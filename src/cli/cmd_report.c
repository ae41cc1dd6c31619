/* `barlow report RUN_DIR [--out DIR]`: pictures of a pretraining run, from its stats.txt and
 * checkpoints, as PNG files:
 *   loss.png  loss with its on-diagonal and (lambda-weighted) off-diagonal parts vs step
 *   lr.png    both learning rates vs step
 *   knn.png   kNN top-1 (and top-5) vs epoch, or a placeholder when never measured
 *   corr.png  a corner of the cross-correlation matrix C at the first and the latest
 *             checkpoint, computed on one batch of two-view augmented training images
 *   pca.png   2-D PCA of test-set backbone features (eval transform, BN eval mode) by class
 * The run's configuration (arch, projector, preset, aug, data, seed, lambd) comes from the
 * checkpoint's metadata, so the report needs nothing but the run directory. */
#include "cli/cmd_report.h"
#include "cli/args.h"
#include "barlow/augment.h"
#include "barlow/checkpoint.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/loader.h"
#include "barlow/model.h"
#include "barlow/plot.h"
#include <cJSON.h>
#include "barlow/gemm.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RP "report"
enum { LINE_W = 800, LINE_H = 500, CORR_W = 1000, CORR_H = 500, CORR_MAX = 64 };

/* ---- stats.txt ------------------------------------------------------------------------- */

typedef struct {
    double *v;
    int n, cap;
} rp_vec;

static int rp_push(rp_vec *a, double x) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        double *p = realloc(a->v, (size_t)cap * sizeof *p);
        if (!p) return bt_fail(BT_ENOMEM, "out of memory reading stats.txt");
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return BT_OK;
}

typedef struct {
    /* per training line: step, loss parts, learning rates (NaN where a key is missing) */
    rp_vec step, loss, on, off, lrw, lrb;
    /* per kNN measurement */
    rp_vec kepoch, top1, top5;
    int records, skipped;
} rp_stats;

static void rp_stats_free(rp_stats *s) {
    rp_vec *all[] = {&s->step, &s->loss, &s->on, &s->off, &s->lrw, &s->lrb,
                     &s->kepoch, &s->top1, &s->top5};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->v);
}

static double rp_num(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(it) ? it->valuedouble : NAN;
}

/* Parses one line; lines that are not JSON objects are skipped (with a warning, except the
 * command lines that each start or resume of `barlow pretrain` writes). */
static int rp_stats_line(rp_stats *s, const char *line, const char *path, int lineno) {
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p || *p == '\n' || *p == '\r') return BT_OK;
    cJSON *o = cJSON_Parse(p);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        if (strncmp(p, "barlow", 6) != 0) {
            fprintf(stderr, "%s: warning: %s:%d: not a JSON object, skipped\n", RP, path, lineno);
            s->skipped++;
        }
        return BT_OK;
    }
    int rc = BT_OK;
    double step = rp_num(o, "step"), loss = rp_num(o, "loss");
    if (isfinite(step) && (isfinite(loss) || isfinite(rp_num(o, "lr_weights")))) {
        if (!rc) rc = rp_push(&s->step, step);
        if (!rc) rc = rp_push(&s->loss, loss);
        if (!rc) rc = rp_push(&s->on, rp_num(o, "on_diag"));
        if (!rc) rc = rp_push(&s->off, rp_num(o, "off_diag"));
        if (!rc) rc = rp_push(&s->lrw, rp_num(o, "lr_weights"));
        if (!rc) rc = rp_push(&s->lrb, rp_num(o, "lr_biases"));
    }
    double top1 = rp_num(o, "knn_top1"), ep = rp_num(o, "epoch");
    if (isfinite(top1) && isfinite(ep)) {
        if (!rc) rc = rp_push(&s->kepoch, ep);
        if (!rc) rc = rp_push(&s->top1, top1);
        if (!rc) rc = rp_push(&s->top5, rp_num(o, "knn_top5"));
    }
    s->records++;
    cJSON_Delete(o);
    return rc;
}

static int rp_stats_read(rp_stats *s, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return bt_fail(BT_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = BT_OK;
    while (!rc && getline(&line, &cap, f) >= 0) rc = rp_stats_line(s, line, path, ++lineno);
    free(line);
    fclose(f);
    if (!rc && s->step.n == 0 && s->kepoch.n == 0)
        rc = bt_fail(BT_EFORMAT, "%s: no measurements (the file is empty or has no JSON lines "
                                 "with \"step\" and \"loss\")", path);
    return rc;
}

/* ---- the run's configuration and model --------------------------------------------------- */

typedef struct {
    char arch[128], projector[128], preset[32], data[1024];
    double lambd;     /* NaN when not recorded */
    uint64_t seed;
    char **aug;       /* (naug) KEY=VALUE overrides */
    int naug;
} rp_config;

static void rp_config_free(rp_config *c) {
    for (int i = 0; i < c->naug; i++) free(c->aug[i]);
    free(c->aug);
    c->aug = NULL;
    c->naug = 0;
}

static int rp_str(char *dst, size_t n, const cJSON *o, const char *key, const char *path,
                  int required) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(it)) {
        if (!required) return BT_OK;
        return bt_fail(BT_EFORMAT, "%s: the config in the metadata has no string \"%s\"", path,
                       key);
    }
    if (strlen(it->valuestring) >= n)
        return bt_fail(BT_EFORMAT, "%s: config \"%s\" too long", path, key);
    strcpy(dst, it->valuestring);
    return BT_OK;
}

static int rp_config_parse(rp_config *c, const char *json, const char *path) {
    memset(c, 0, sizeof *c);
    c->lambd = NAN;
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return bt_fail(BT_EFORMAT, "%s: metadata config is not a JSON object", path);
    }
    int rc = rp_str(c->arch, sizeof c->arch, o, "arch", path, 1);
    if (!rc) rc = rp_str(c->projector, sizeof c->projector, o, "projector", path, 0);
    if (!rc) rc = rp_str(c->preset, sizeof c->preset, o, "preset", path, 1);
    if (!rc) rc = rp_str(c->data, sizeof c->data, o, "data", path, 1);
    c->lambd = rp_num(o, "lambd");
    double seed = rp_num(o, "seed");
    c->seed = isfinite(seed) && seed >= 0 ? (uint64_t)seed : 0;
    const cJSON *aug = cJSON_GetObjectItemCaseSensitive(o, "aug"), *it;
    if (!rc && cJSON_IsArray(aug)) {
        int n = cJSON_GetArraySize(aug);
        c->aug = calloc(n > 0 ? (size_t)n : 1, sizeof *c->aug);
        if (!c->aug) rc = bt_fail(BT_ENOMEM, "out of memory");
        cJSON_ArrayForEach(it, aug) {
            if (rc) break;
            if (!cJSON_IsString(it)) {
                rc = bt_fail(BT_EFORMAT, "%s: config \"aug\" holds a non-string", path);
                break;
            }
            size_t l = strlen(it->valuestring) + 1;
            if (!(c->aug[c->naug] = malloc(l))) rc = bt_fail(BT_ENOMEM, "out of memory");
            else memcpy(c->aug[c->naug++], it->valuestring, l);
        }
    }
    cJSON_Delete(o);
    if (rc) rp_config_free(c);
    return rc;
}

static int rp_preset(bt_aug_preset *p, const rp_config *c) {
    int rc = bt_aug_preset_init(p, c->preset);
    for (int i = 0; !rc && i < c->naug; i++) {
        char key[128];
        const char *eq = strchr(c->aug[i], '=');
        if (!eq || (size_t)(eq - c->aug[i]) >= sizeof key)
            return bt_fail(BT_EFORMAT, "config aug '%s': expected KEY=VALUE", c->aug[i]);
        memcpy(key, c->aug[i], (size_t)(eq - c->aug[i]));
        key[eq - c->aug[i]] = 0;
        rc = bt_aug_preset_set(p, key, eq + 1);
    }
    return rc;
}

/* Loads the model of checkpoint `path`; *step gets its step. cfg (when not NULL) gets the
 * configuration recorded in it. */
static int rp_load_model(bt_model **m, long *step, rp_config *cfg, const char *path) {
    *m = NULL;
    bt_st_file *f = NULL;
    bt_ckpt_state st;
    rp_config local;
    rp_config *c = cfg ? cfg : &local;
    int rc = bt_ckpt_open(&f, &st, path);
    if (!rc) rc = rp_config_parse(c, st.config, path);
    if (!rc) {
        rc = bt_model_new(m, c->arch, c->projector[0] ? c->projector : NULL);
        if (!rc) rc = bt_ckpt_restore(*m, f, &st);
        if (rc) rc = bt_fail(rc, "%s: %s", path, bt_error());
        *step = st.step;
        if (!cfg) rp_config_free(c);
        else if (rc) rp_config_free(c);
    }
    bt_st_close(f);
    if (rc) {
        bt_model_free(*m);
        *m = NULL;
    }
    return rc;
}

/* ---- cross-correlation ------------------------------------------------------------------- */

/* The top-left k x k corner of C = z1n^T z2n / N, where zvn is zv (N, D) normalised per
 * dimension with the batch mean and biased variance (BatchNorm1d without affine, eps):
 * c (k, k). Only the k needed columns are normalised, so a wide projector costs nothing. */
static int rp_corr_corner(float *c, const float *z1, const float *z2, int N, int D, int k,
                          double eps) {
    double *a = malloc(sizeof(double) * (size_t)N * k * 2); /* (2, N, k) normalised columns */
    if (!a) return bt_fail(BT_ENOMEM, "out of memory");
    const float *z[2] = {z1, z2};
    for (int v = 0; v < 2; v++)
        for (int j = 0; j < k; j++) {
            double mean = 0, var = 0;
            for (int n = 0; n < N; n++) mean += z[v][(size_t)n * D + j];
            mean /= N;
            for (int n = 0; n < N; n++) {
                double d = z[v][(size_t)n * D + j] - mean;
                var += d * d;
            }
            double rstd = 1 / sqrt(var / N + eps);
            for (int n = 0; n < N; n++)
                a[((size_t)v * N + n) * k + j] = (z[v][(size_t)n * D + j] - mean) * rstd;
        }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += a[(size_t)n * k + i] * a[((size_t)N + n) * k + j];
            c[(size_t)i * k + j] = (float)(s / N);
        }
    free(a);
    return BT_OK;
}

/* One batch of two augmented views of the first images of the run's training data in
 * epoch 0's order: x[v] (N, 3, S, S). The loader is keyed by the run's seed, so every
 * checkpoint sees the same images. */
static int rp_two_views(float **x0, float **x1, int *N, int *S, const rp_config *c,
                        const bt_aug_preset *p, int batch, int workers) {
    bt_dataset *ds = NULL;
    bt_loader *ld = NULL;
    *x0 = *x1 = NULL;
    int rc = bt_dataset_open(&ds, c->data, "train");
    if (rc) return rc;
    size_t n = bt_dataset_size(ds);
    bt_loader_cfg lc = {.batch = (size_t)batch < n ? batch : (int)n, .threads = workers,
                        .ring = 1, .seed = c->seed, .mode = BT_LOAD_TWO_VIEWS, .shuffle = 1,
                        .drop_last = 1, .rank = 0, .world = 1};
    const bt_batch *b = NULL;
    if (!(rc = bt_loader_new(&ld, ds, p, &lc)) && !(rc = bt_loader_start_epoch(ld, 0, 0))) {
        int got = bt_loader_next(ld, &b);
        if (got < 0) rc = got;
        else if (got == 0) rc = bt_fail(BT_EINVAL, "%s: no batch of training images", c->data);
    }
    if (!rc) {
        *S = bt_loader_image_size(ld, 0);
        *N = b->n;
        size_t sz = (size_t)b->n * 3 * (size_t)*S * (size_t)*S;
        *x0 = malloc(sz * sizeof(float));
        *x1 = malloc(sz * sizeof(float));
        if (!*x0 || !*x1) rc = bt_fail(BT_ENOMEM, "out of memory");
        else {
            memcpy(*x0, b->x[0], sz * sizeof(float));
            memcpy(*x1, b->x[1], sz * sizeof(float));
        }
    }
    bt_loader_free(ld);
    bt_dataset_close(ds);
    if (rc) {
        free(*x0);
        free(*x1);
        *x0 = *x1 = NULL;
    }
    return rc;
}

/* C's corner for model m on views x0, x1 (N, 3, S, S), in training mode as pretraining runs
 * it (batch statistics). c (k, k), k = min(D, CORR_MAX). */
static int rp_model_corr(float *c, int *k, bt_model *m, const float *x0, const float *x1,
                         int N, int S) {
    int rc = bt_model_prepare(m, N, S, S);
    if (!rc) rc = bt_model_forward(m, 0, x0, 1, 0);
    if (!rc) rc = bt_model_forward(m, 1, x1, 1, 0);
    if (rc) return rc;
    int D = bt_model_out_dim(m);
    *k = D < CORR_MAX ? D : CORR_MAX;
    float *z = malloc(sizeof(float) * 2 * (size_t)N * D); /* both views' outputs, on the host */
    if (!z) return bt_fail(BT_ENOMEM, "out of memory");
    rc = bt_model_copy_features(m, 0, z, N, 1);
    if (!rc) rc = bt_model_copy_features(m, 1, z + (size_t)N * D, N, 1);
    if (!rc) rc = rp_corr_corner(c, z, z + (size_t)N * D, N, D, *k, m->bn_eps);
    free(z);
    return rc;
}

/* ---- PCA --------------------------------------------------------------------------------- */

/* Projections of the rows of x (n, d) on its first two principal axes: pc (n, 2), and the
 * fraction of the total variance each explains. The eigenvectors come from subspace
 * iteration on the smaller of the two Gram matrices (X^T X or X X^T of the centred data),
 * in double precision; each axis' sign is fixed so its largest score is positive. */
static int rp_pca2(float *pc, double frac[2], const float *x, int n, int d) {
    int small = n < d ? n : d, rc = BT_OK;
    double *xc = malloc(sizeof(double) * (size_t)n * d);    /* (n, d) centred */
    double *g = malloc(sizeof(double) * (size_t)small * small); /* (small, small) */
    double *v = malloc(sizeof(double) * (size_t)small * 2), *t = malloc(sizeof(double) * (size_t)small * 2);
    if (!xc || !g || !v || !t) {
        rc = bt_fail(BT_ENOMEM, "out of memory for PCA");
        goto done;
    }
    for (int j = 0; j < d; j++) {
        double mean = 0;
        for (int i = 0; i < n; i++) mean += x[(size_t)i * d + j];
        mean /= n;
        for (int i = 0; i < n; i++) xc[(size_t)i * d + j] = x[(size_t)i * d + j] - mean;
    }
    if (n < d) /* g = Xc Xc^T */
        bt_dgemm(BT_NOTRANS, BT_TRANS, n, n, d, 1, xc, d, xc, d, 0, g, n);
    else       /* g = Xc^T Xc */
        bt_dgemm(BT_TRANS, BT_NOTRANS, d, d, n, 1, xc, d, xc, d, 0, g, d);
    double trace = 0;
    for (int i = 0; i < small; i++) trace += g[(size_t)i * small + i];
    /* deterministic start: two fixed, independent-looking vectors */
    for (int i = 0; i < small; i++) {
        v[2 * i] = 1 + 0.01 * (i % 7);
        v[2 * i + 1] = (i % 2 ? 1 : -1) + 0.013 * (i % 5);
    }
    double lam[2] = {0, 0};
    for (int it = 0; it < 500; it++) {
        /* t = g v, then Gram-Schmidt */
        bt_dgemm(BT_NOTRANS, BT_NOTRANS, small, 2, small, 1, g, small, v,
                    2, 0, t, 2);
        double n0 = 0, dot = 0, n1 = 0, change = 0;
        for (int i = 0; i < small; i++) n0 += t[2 * i] * t[2 * i];
        n0 = sqrt(n0);
        for (int i = 0; i < small; i++) {
            t[2 * i] /= n0 > 0 ? n0 : 1;
            dot += t[2 * i] * t[2 * i + 1];
        }
        for (int i = 0; i < small; i++) {
            t[2 * i + 1] -= dot * t[2 * i];
            n1 += t[2 * i + 1] * t[2 * i + 1];
        }
        n1 = sqrt(n1);
        for (int i = 0; i < small; i++) {
            t[2 * i + 1] /= n1 > 0 ? n1 : 1;
            change = fmax(change, fmax(fabs(t[2 * i] - v[2 * i]), fabs(t[2 * i + 1] - v[2 * i + 1])));
        }
        memcpy(v, t, sizeof(double) * (size_t)small * 2);
        lam[0] = n0;
        lam[1] = n1;
        if (change < 1e-10) break;
    }
    /* Rayleigh quotients give the eigenvalues once converged */
    for (int a = 0; a < 2; a++) {
        double q = 0;
        for (int i = 0; i < small; i++) {
            double gi = 0;
            for (int j = 0; j < small; j++) gi += g[(size_t)i * small + j] * v[2 * j + a];
            q += v[2 * i + a] * gi;
        }
        lam[a] = q;
        frac[a] = trace > 0 ? q / trace : 0;
    }
    for (int a = 0; a < 2; a++) {
        double best = 0;
        for (int i = 0; i < n; i++) {
            double s = 0;
            if (n < d) s = v[2 * i + a] * sqrt(fmax(lam[a], 0)); /* Xc w = u sqrt(lambda) */
            else
                for (int j = 0; j < d; j++) s += xc[(size_t)i * d + j] * v[2 * j + a];
            pc[2 * i + a] = (float)s;
            if (fabs(s) > fabs(best)) best = s;
        }
        if (best < 0)
            for (int i = 0; i < n; i++) pc[2 * i + a] = -pc[2 * i + a];
    }
done:
    free(xc);
    free(g);
    free(v);
    free(t);
    return rc;
}

/* Backbone features (eval transform, BN running statistics) of up to `limit` test items,
 * spread evenly over the split so sorted datasets still show every class: feat (n, dim),
 * labels (n). The run's test split, else its train split (with a warning). */
static int rp_test_features(float **feat, int32_t **labels, int *n, bt_dataset **dsp,
                            bt_model *m, const rp_config *c, const bt_aug_preset *p,
                            int limit) {
    bt_dataset *ds = NULL;
    *feat = NULL;
    *labels = NULL;
    int rc = bt_dataset_open(&ds, c->data, "test");
    if (rc) {
        fprintf(stderr, "%s: warning: no test split (%s); using training images for the PCA\n",
                RP, bt_error());
        if ((rc = bt_dataset_open(&ds, c->data, "train"))) return rc;
    }
    *dsp = ds;
    size_t total = bt_dataset_size(ds);
    int cnt = total < (size_t)limit ? (int)total : limit, B = 64, dim = m->cfg.feat_dim, S = 0;
    bt_image im = {0};
    bt_aug_work *w = bt_aug_work_new();
    float *x = NULL;
    *feat = malloc(sizeof(float) * (size_t)cnt * dim);
    *labels = malloc(sizeof(int32_t) * (size_t)cnt);
    if (!w || !*feat || !*labels) rc = bt_fail(BT_ENOMEM, "out of memory");
    for (int b0 = 0; !rc && b0 < cnt; b0 += B) {
        int nb = cnt - b0 < B ? cnt - b0 : B;
        for (int i = 0; !rc && i < nb; i++) {
            size_t idx = (size_t)(b0 + i) * total / (size_t)cnt;
            if ((rc = bt_dataset_load(ds, idx, &im))) break;
            int s = bt_aug_eval_size(p, im.w, im.h);
            if (s <= 0) {
                rc = s < 0 ? s : bt_fail(BT_EINVAL, "eval transform size");
                break;
            }
            if (!x) {
                S = s;
                if (!(x = malloc(sizeof(float) * (size_t)B * 3 * S * S))) {
                    rc = bt_fail(BT_ENOMEM, "out of memory");
                    break;
                }
                /* a fixed batch shape: the last, short batch is zero-padded */
                memset(x, 0, sizeof(float) * (size_t)B * 3 * S * S);
                if ((rc = bt_model_prepare(m, B, S, S))) break;
            } else if (s != S) {
                rc = bt_fail(BT_EINVAL, "%s: eval images of different sizes (%d and %d)",
                             bt_dataset_item_name(ds, idx), s, S);
                break;
            }
            rc = bt_aug_eval(x + (size_t)i * 3 * S * S, &im, p, w);
            (*labels)[b0 + i] = bt_dataset_label(ds, idx);
        }
        if (!rc) rc = bt_model_forward(m, 0, x, 0, 1);
        if (!rc) rc = bt_model_copy_features(m, 0, *feat + (size_t)b0 * dim, nb, 0);
    }
    *n = cnt;
    free(x);
    bt_image_free(&im);
    bt_aug_work_free(w);
    if (rc) {
        free(*feat);
        free(*labels);
        *feat = NULL;
        *labels = NULL;
    }
    return rc;
}

/* ---- the command --------------------------------------------------------------------------- */

typedef struct {
    const char *out;
    int batch, pca_items, workers, help;
} rp_opts;

static void rp_usage(FILE *f, const bt_arg *opts, int n) {
    fprintf(f,
            "usage: barlow report RUN_DIR [--out DIR] [options]\n"
            "Draws PNG charts of a pretraining run from RUN_DIR/stats.txt and its checkpoints\n"
            "(RUN_DIR/checkpoint.safetensors, and RUN_DIR/checkpoint-first.safetensors when\n"
            "present), into DIR (default RUN_DIR):\n"
            "  loss.png  800x500   loss, on-diagonal and lambda*off-diagonal terms vs step (log y)\n"
            "  lr.png    800x500   learning rates of weights and biases vs step\n"
            "  knn.png   800x500   kNN top-1/top-5 accuracy vs epoch (or a note when none)\n"
            "  corr.png  1000x500  cross-correlation matrix C (top-left corner, at most 64x64)\n"
            "                      at the first and the latest checkpoint, on one training batch\n"
            "  pca.png   800x500   2-D PCA of the test-set backbone features, coloured by class\n"
            "Options:\n");
    bt_args_help(f, opts, n);
}

static int rp_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int rp_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int rp_wrote(int rc, const char *path, int w, int h) {
    if (!rc) printf("%s: wrote %s (%dx%d)\n", RP, path, w, h);
    return rc;
}

/* loss.png, lr.png and knn.png. lambd: NaN when unknown (the off-diagonal term is then
 * drawn unweighted). */
static int rp_curves(const rp_stats *s, const char *out, double lambd) {
    char path[4200];
    int rc = BT_OK, n = s->step.n;
    snprintf(path, sizeof path, "%s/loss.png", out);
    if (n == 0) {
        rc = bt_plot_message(path, LINE_W, LINE_H, "Barlow Twins loss",
                             "no loss measurements in stats.txt");
    } else {
        double *woff = malloc(sizeof(double) * (size_t)n);
        if (!woff) return bt_fail(BT_ENOMEM, "out of memory");
        int weighted = isfinite(lambd);
        double mn = INFINITY, mx = 0;
        for (int i = 0; i < n; i++) {
            woff[i] = s->off.v[i] * (weighted ? lambd : 1);
            const double *vals[3] = {s->loss.v, s->on.v, woff};
            for (int k = 0; k < 3; k++)
                if (isfinite(vals[k][i])) {
                    mn = fmin(mn, vals[k][i]);
                    mx = fmax(mx, vals[k][i]);
                }
        }
        char offl[64];
        if (weighted) snprintf(offl, sizeof offl, "lambda * off-diagonal (lambda %g)", lambd);
        else snprintf(offl, sizeof offl, "off-diagonal (unweighted)");
        bt_plot_series ser[3] = {{"loss", s->step.v, s->loss.v, n},
                                 {"on-diagonal", s->step.v, s->on.v, n},
                                 {offl, s->step.v, woff, n}};
        /* a log axis when the terms span more than a decade and all are positive */
        int logy = mn > 0 && mx / mn > 10;
        rc = bt_plot_lines(path, LINE_W, LINE_H,
                           logy ? "Barlow Twins loss and its terms (log scale)"
                                : "Barlow Twins loss and its terms",
                           "step", "loss", ser, 3, logy);
        free(woff);
    }
    if (rp_wrote(rc, path, LINE_W, LINE_H)) return rc;

    snprintf(path, sizeof path, "%s/lr.png", out);
    bt_plot_series lr[2] = {{"weights", s->step.v, s->lrw.v, n},
                            {"biases and BN", s->step.v, s->lrb.v, n}};
    rc = n ? bt_plot_lines(path, LINE_W, LINE_H, "Learning rates (LARS)", "step",
                           "learning rate", lr, 2, 0)
           : bt_plot_message(path, LINE_W, LINE_H, "Learning rates (LARS)",
                             "no learning-rate measurements in stats.txt");
    if (rp_wrote(rc, path, LINE_W, LINE_H)) return rc;

    snprintf(path, sizeof path, "%s/knn.png", out);
    int have5 = 0;
    for (int i = 0; i < s->top5.n; i++) have5 |= isfinite(s->top5.v[i]);
    bt_plot_series kn[2] = {{"top-1", s->kepoch.v, s->top1.v, s->kepoch.n},
                            {"top-5", s->kepoch.v, s->top5.v, s->kepoch.n}};
    rc = s->kepoch.n ? bt_plot_lines(path, LINE_W, LINE_H, "kNN accuracy on the test set",
                                     "epoch", "accuracy (%)", kn, have5 ? 2 : 1, 0)
                     : bt_plot_message(path, LINE_W, LINE_H, "kNN accuracy",
                                       "no kNN measurements in stats.txt");
    return rp_wrote(rc, path, LINE_W, LINE_H);
}

/* corr.png and pca.png from the checkpoints; placeholders when the run has none yet. */
static int rp_model_charts(const char *run, const char *out, const rp_opts *o, double *lambd) {
    char latest[4200], first[4200], cpath[4200], ppath[4200];
    snprintf(latest, sizeof latest, "%s/checkpoint.safetensors", run);
    snprintf(first, sizeof first, "%s/checkpoint-first.safetensors", run);
    snprintf(cpath, sizeof cpath, "%s/corr.png", out);
    snprintf(ppath, sizeof ppath, "%s/pca.png", out);
    if (!rp_exists(latest)) {
        fprintf(stderr, "%s: warning: no %s: corr.png and pca.png are placeholders\n", RP,
                latest);
        int rc = bt_plot_message(cpath, CORR_W, CORR_H, "Cross-correlation matrix C",
                                 "no checkpoint.safetensors in the run directory");
        if (rp_wrote(rc, cpath, CORR_W, CORR_H)) return rc;
        rc = bt_plot_message(ppath, LINE_W, LINE_H, "PCA of test-set backbone features",
                             "no checkpoint.safetensors in the run directory");
        return rp_wrote(rc, ppath, LINE_W, LINE_H);
    }
    rp_config c;
    bt_model *m = NULL;
    bt_dataset *tds = NULL;
    long step_last = 0, step_first = 0;
    float *x0 = NULL, *x1 = NULL, *feat = NULL, *pc = NULL;
    float corr[2][CORR_MAX * CORR_MAX];
    int32_t *labels = NULL;
    int N = 0, S = 0, k = 0, kf = 0, nf = 0, have_first = rp_exists(first);
    bt_aug_preset p;
    int rc = rp_load_model(&m, &step_last, &c, latest);
    if (rc) return rc;
    *lambd = c.lambd;
    if ((rc = rp_preset(&p, &c))) goto done;

    /* PCA first: it runs in eval mode, before the training-mode forward moves the running
     * statistics */
    if ((rc = rp_test_features(&feat, &labels, &nf, &tds, m, &c, &p, o->pca_items))) goto done;
    if (!(pc = malloc(sizeof(float) * 2 * (size_t)nf))) {
        rc = bt_fail(BT_ENOMEM, "out of memory");
        goto done;
    }
    double frac[2];
    if ((rc = rp_pca2(pc, frac, feat, nf, m->cfg.feat_dim))) goto done;
    char title[256], xl[64], yl[64];
    const char *names[64];
    int nclass = bt_dataset_num_classes(tds);
    for (int i = 0; i < nclass && i < 64; i++) names[i] = bt_dataset_class_name(tds, i);
    snprintf(title, sizeof title, "PCA of test-set backbone features (%d images, step %ld)", nf,
             step_last);
    snprintf(xl, sizeof xl, "PC1 (%.1f%% of variance)", 100 * frac[0]);
    snprintf(yl, sizeof yl, "PC2 (%.1f%% of variance)", 100 * frac[1]);
    /* pc (nf, 2) -> two columns in place: x in the first half, y in the second */
    float *col = malloc(sizeof(float) * 2 * (size_t)nf); /* (2, nf) */
    if (!col) {
        rc = bt_fail(BT_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < nf; i++) {
        col[i] = pc[2 * i];
        col[nf + i] = pc[2 * i + 1];
    }
    rc = bt_plot_scatter(ppath, LINE_W, LINE_H, title, xl, yl, col, col + nf, labels,
                         (size_t)nf, names, nclass);
    free(col);
    if (rp_wrote(rc, ppath, LINE_W, LINE_H)) goto done;

    if ((rc = rp_two_views(&x0, &x1, &N, &S, &c, &p, o->batch, o->workers))) goto done;
    if ((rc = rp_model_corr(corr[1], &k, m, x0, x1, N, S))) goto done;
    bt_model_free(m);
    m = NULL;
    if (have_first) {
        if ((rc = rp_load_model(&m, &step_first, NULL, first))) goto done;
        if ((rc = rp_model_corr(corr[0], &kf, m, x0, x1, N, S))) goto done;
        if (kf != k) {
            rc = bt_fail(BT_EFORMAT, "%s and %s have different output sizes", first, latest);
            goto done;
        }
    } else {
        fprintf(stderr, "%s: note: no %s; corr.png shows the latest checkpoint only\n", RP,
                first);
    }
    char t0[128], t1[128];
    snprintf(t0, sizeof t0, "first checkpoint (step %ld)", step_first);
    snprintf(t1, sizeof t1, have_first ? "latest checkpoint (step %ld)"
                                       : "latest checkpoint (step %ld; no first kept)",
             step_last);
    bt_plot_matrix mats[2] = {{t0, corr[0], k, k}, {t1, corr[1], k, k}};
    snprintf(title, sizeof title, "Cross-correlation C of the two views (%dx%d corner, batch %d)",
             k, k, N);
    rc = bt_plot_heatmaps(cpath, CORR_W, CORR_H, title, "dimension of view 2",
                          "dimension of view 1", have_first ? mats : mats + 1,
                          have_first ? 2 : 1, -1, 1);
    rp_wrote(rc, cpath, CORR_W, CORR_H);
done:
    bt_model_free(m);
    bt_dataset_close(tds);
    rp_config_free(&c);
    free(x0);
    free(x1);
    free(feat);
    free(labels);
    free(pc);
    return rc;
}

int bt_cmd_report(int argc, char **argv) {
    rp_opts o;
    memset(&o, 0, sizeof o);
    bt_arg opts[] = {
        {"out", BT_ARG_STRING, &o.out, NULL, 1, 0, NULL,
         "directory for the PNG files (default RUN_DIR; created if missing)", 0},
        {"batch", BT_ARG_INT, &o.batch, "128", 2, 65536, NULL,
         "images in the batch C is computed on (at most the dataset's size)", 0},
        {"pca-items", BT_ARG_INT, &o.pca_items, "1000", 3, 1000000, NULL,
         "test images in the PCA (spread evenly over the split)", 0},
        {"workers", BT_ARG_INT, &o.workers, "2", 1, 1024, NULL, "data loader threads", 0},
        {"help", BT_ARG_FLAG, &o.help, NULL, 1, 0, NULL, "show this help", 0},
    };
    int nopts = (int)(sizeof opts / sizeof *opts), npos = 0;
    const char *pos[1] = {NULL};
    int rc = bt_args_parse(opts, nopts, argc, argv, 1, pos, 1, &npos);
    if (!rc && o.help) {
        rp_usage(stdout, opts, nopts);
        bt_args_free(opts, nopts);
        return 0;
    }
    if (!rc && npos < 1) rc = bt_fail(BT_EINVAL, "missing RUN_DIR (a pretraining run's "
                                                 "checkpoint directory); see --help");
    if (!rc && !rp_is_dir(pos[0]))
        rc = bt_fail(BT_EINVAL, "RUN_DIR %s: %s", pos[0],
                     rp_exists(pos[0]) ? "not a directory" : "no such directory");
    bt_args_free(opts, nopts);
    if (rc) {
        fprintf(stderr, "%s: %s\n", RP, bt_error());
        return 2;
    }
    const char *run = pos[0], *out = o.out ? o.out : run;
    if (!rp_is_dir(out) && mkdir(out, 0777) != 0) {
        fprintf(stderr, "%s: cannot create --out %s: %s\n", RP, out, strerror(errno));
        return 1;
    }
    char spath[4200];
    snprintf(spath, sizeof spath, "%s/stats.txt", run);
    rp_stats s;
    memset(&s, 0, sizeof s);
    double lambd = NAN;
    rc = rp_stats_read(&s, spath);
    /* the model charts first: they read lambda for the loss chart from the checkpoint */
    if (!rc) rc = rp_model_charts(run, out, &o, &lambd);
    if (!rc) rc = rp_curves(&s, out, lambd);
    rp_stats_free(&s);
    bt_plot_cleanup();
    if (rc) {
        fprintf(stderr, "%s: %s\n", RP, bt_error());
        return 1;
    }
    return 0;
}
