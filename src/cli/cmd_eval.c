/* `barlow knn | linear | finetune`: evaluation of a pretrained backbone on a labelled dataset
 * (train split to fit, val/test split to score), following the reference evaluate.py for the
 * linear probe and fine-tuning and solo-learn's weighted kNN. They share the option parsing,
 * the weight loading (bt_eval_load_backbone) and the frozen-feature extraction.
 *
 * Exit status: 0 done, 1 failure while working (unreadable or mismatching weights, I/O),
 * 2 bad command line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>
#include "barlow/augment.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/eval.h"
#include "barlow/interop.h"
#include "barlow/loader.h"
#include "barlow/model.h"
#include "barlow/rng.h"
#include "barlow/scratch.h"
#include "cli/args.h"
#include "cli/cmd_eval.h"

enum { CMD_KNN, CMD_LINEAR, CMD_FINETUNE };

typedef struct {
    int cmd;
    const char *name;           /* "barlow knn" ... */
    /* common */
    const char *weights, *init_from, *arch, *preset;
    int batch, threads, workers, help;
    /* knn */
    int k;
    double temperature;
    /* linear / finetune */
    int epochs, cached;
    double lr_cls, lr_bb, wd;
    long seed;
    const char *stats, *train_percent, *train_files, *subset_out;
    /* resolved */
    const char *data;
    bt_aug_preset pre;          /* eval transform + training crop (view 0) */
    bt_model *m;
    bt_dataset *train, *val;
} ev_run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const summary[] = {
    "Weighted kNN (k nearest train features by cosine similarity, votes exp(sim/T)) on the\n"
    "frozen backbone's features of DATA's train and val/test splits (eval transform, BN in\n"
    "eval mode). Prints top-1 and top-5 accuracy (%).\n",
    "Linear probe as the reference evaluate.py --weights freeze: a Linear(feat_dim, classes)\n"
    "trained with SGD (momentum 0.9, cosine schedule per epoch, cross-entropy) on the frozen\n"
    "backbone (eval mode); training images get RandomResizedCrop + horizontal flip, val/test\n"
    "images the eval transform. --cached-features extracts the train features once from\n"
    "unaugmented (eval-transform) images and trains on those: much faster, but without the\n"
    "crop/flip augmentation, so it usually scores a little lower and overfits sooner.\n"
    "Prints (and appends to --stats, JSON lines as stats.txt) top-1/top-5 per epoch and the best.\n",
    "Semi-supervised fine-tuning as the reference evaluate.py --weights finetune: backbone (BN\n"
    "in training mode) and a new Linear classifier trained with SGD (momentum 0.9, cosine\n"
    "schedule per epoch), two learning rates, on a class-balanced seeded subset of the train\n"
    "split (--train-percent), written to --subset-out (one item name per line) so the run can\n"
    "be repeated with --train-files. A final batch of a single image is skipped (training-mode\n"
    "BN needs two). The reference README's 1% run: --epochs 20 --lr-backbone 0.005\n"
    "--lr-classifier 0.5 --weight-decay 0.\n",
};

static void usage(FILE *f, const ev_run *r, const bt_arg *opts, int n) {
    static const char *const cmdn[] = {"knn", "linear", "finetune"};
    fprintf(f, "usage: barlow %s DATA --weights FILE [options]\n", cmdn[r->cmd]);
    fputs(summary[r->cmd], f);
    fprintf(f, "DATA: an ImageFolder root, a CIFAR-10 binary directory or tar shards with train\n"
               "and val (or test) splits. FILE: a training checkpoint.safetensors, a\n"
               "backbone.safetensors, or a torchvision-named state dict in safetensors form\n"
               "(optionally \"backbone.\"-prefixed); the architecture recorded in the file wins\n"
               "over the --arch default.\nOptions:\n");
    bt_args_help(f, opts, n);
}

/* Parses the command line, loads the weights and opens the datasets. Returns -1 after --help,
 * else an exit status (0 to go on). */
static int setup(ev_run *r, int argc, char **argv) {
    bt_arg all[] = {
        {"weights", BT_ARG_STRING, &r->weights, NULL, 1, 0, NULL,
         "pretrained weights (checkpoint, backbone or torchvision safetensors)", 0},
        {"init-from", BT_ARG_STRING, &r->init_from, NULL, 1, 0, NULL,
         "start from torchvision-format backbone weights (safetensors; strict) instead of --weights", 0},
        {"arch", BT_ARG_STRING, &r->arch, "resnet50", 1, 0, NULL,
         "backbone architecture, when the file does not record it", 0},
        {"preset", BT_ARG_CHOICE, &r->preset, "imagenet", 1, 0, "imagenet|cifar",
         "image sizes and normalisation", 0},
        {"batch-size", BT_ARG_INT, &r->batch, "256", 1, 1e7, NULL, "mini-batch size", 0},
        {"threads", BT_ARG_INT, &r->threads, "0", 0, 4096, NULL, "compute threads (0 = all cores)", 0},
        {"workers", BT_ARG_INT, &r->workers, "2", 1, 1024, NULL, "data loader threads", 0},
        /* knn */
        {"k", BT_ARG_INT, &r->k, "200", 1, 1e9, NULL, "neighbours", 0},
        {"temperature", BT_ARG_DOUBLE, &r->temperature, "0.1", 1e-6, 1e6, NULL,
         "vote weight exp(sim / T)", 0},
        /* linear / finetune */
        {"epochs", BT_ARG_INT, &r->epochs, "100", 1, 1e6, NULL, "training epochs", 0},
        {"lr-classifier", BT_ARG_DOUBLE, &r->lr_cls, "0.3", 0, 1e6, NULL, "classifier learning rate", 0},
        {"lr-backbone", BT_ARG_DOUBLE, &r->lr_bb, "0.0", 0, 1e6, NULL, "backbone learning rate", 0},
        {"weight-decay", BT_ARG_DOUBLE, &r->wd, "1e-6", 0, 1e6, NULL, "weight decay", 0},
        {"cached-features", BT_ARG_FLAG, &r->cached, NULL, 1, 0, NULL,
         "train on features of unaugmented images, extracted once", 0},
        {"seed", BT_ARG_LONG, &r->seed, "0", 0, 9007199254740992.0, NULL,
         "seed (initialisation, order, augmentation, subset)", 0},
        {"stats", BT_ARG_STRING, &r->stats, NULL, 1, 0, NULL,
         "append per-epoch JSON lines to this file", 0},
        {"train-percent", BT_ARG_CHOICE, &r->train_percent, "100", 1, 0, "1|10|100",
         "labelled share of the train split, class-balanced", 0},
        {"train-files", BT_ARG_STRING, &r->train_files, NULL, 1, 0, NULL,
         "list of train items (one name per line) instead of --train-percent", 0},
        {"subset-out", BT_ARG_STRING, &r->subset_out, NULL, 1, 0, NULL,
         "write the subset's item names here (default below 100%: subset-<P>pct-seed<S>.txt)", 0},
        {"help", BT_ARG_FLAG, &r->help, NULL, 1, 0, NULL, "show this help", 0},
    };
    /* Each command's options, by name in the table above. */
    static const char *const knn_opts[] = {"weights", "arch", "preset", "batch-size", "threads",
                                           "workers", "k", "temperature", "help", NULL};
    static const char *const lin_opts[] = {"weights", "init-from", "arch", "preset", "batch-size", "threads",
                                           "workers", "epochs", "lr-classifier", "weight-decay",
                                           "cached-features", "seed", "stats", "help", NULL};
    static const char *const ft_opts[] = {"weights", "init-from", "arch", "preset", "batch-size", "threads",
                                          "workers", "epochs", "lr-classifier", "lr-backbone",
                                          "weight-decay", "seed", "stats", "train-percent",
                                          "train-files", "subset-out", "help", NULL};
    const char *const *want = r->cmd == CMD_KNN ? knn_opts : r->cmd == CMD_LINEAR ? lin_opts : ft_opts;
    bt_arg opts[32];
    int n = 0;
    for (int i = 0; want[i]; i++)
        for (size_t j = 0; j < sizeof all / sizeof *all; j++)
            if (!strcmp(all[j].name, want[i])) opts[n++] = all[j];

    const char *pos[1];
    int npos = 0;
    int rc = bt_args_parse(opts, n, argc, argv, 1, pos, 1, &npos);
    if (!rc && r->help) {
        usage(stdout, r, opts, n);
        return -1;
    }
    if (rc) goto bad;
    if (npos < 1) {
        rc = bt_fail(BT_EINVAL, "missing DATA (the dataset path); see --help");
        goto bad;
    }
    r->data = pos[0];
    if (!r->weights && !r->init_from) {
        rc = bt_fail(BT_EINVAL, "--weights FILE is required; see --help");
        goto bad;
    }
    if (r->weights && r->init_from) {
        rc = bt_fail(BT_EINVAL, "--weights and --init-from exclude each other");
        goto bad;
    }
    if (r->cmd == CMD_FINETUNE && r->train_files && bt_args_find(opts, n, "train-percent")->seen) {
        rc = bt_fail(BT_EINVAL, "--train-files and --train-percent exclude each other");
        goto bad;
    }
    int arch_given = bt_args_find(opts, n, "arch")->seen > 0;
    /* The preset follows the weights file when it records one (a --preset cifar run is
     * evaluated with --preset cifar), unless given; a contradicting --preset is said. */
    static char file_preset[32];
    if (r->weights && bt_eval_file_preset(r->weights, file_preset, sizeof file_preset) == 1) {
        if (!bt_args_find(opts, n, "preset")->seen) r->preset = file_preset;
        else if (strcmp(r->preset, file_preset))
            fprintf(stderr, "%s: note: --preset %s, but %s was trained with --preset %s\n",
                    r->name, r->preset, r->weights, file_preset);
    }
    bt_model_cfg mc;
    if ((rc = bt_model_cfg_parse(&mc, r->arch, NULL)) != BT_OK) {
        rc = bt_fail(rc, "--arch: %s", bt_error());
        goto bad;
    }
    if ((rc = bt_aug_preset_init(&r->pre, r->preset)) != BT_OK) goto bad;
    /* The linear probe's training transform is RandomResizedCrop (torchvision's default
     * bilinear) + flip only: switch view 0's other augmentations off. */
    static const char *const crop_only[][2] = {
        {"jitter-p.0", "0"}, {"gray-p.0", "0"}, {"blur-p.0", "0"}, {"solarize-p.0", "0"},
        {"interp.0", "bilinear"},
    };
    for (size_t i = 0; i < sizeof crop_only / sizeof *crop_only; i++)
        if ((rc = bt_aug_preset_set(&r->pre, crop_only[i][0], crop_only[i][1])) != BT_OK) goto bad;

    int threads = r->threads > 0 ? r->threads : omp_get_num_procs();
    bt_set_threads(threads);

    if (r->init_from) {
        /* torchvision-format weights for --arch, loaded strictly */
        if ((rc = bt_model_new(&r->m, r->arch, NULL)) != BT_OK) goto bad;
        bt_model_init(r->m, (uint64_t)r->seed);
        if ((rc = bt_model_init_from(r->m, r->init_from)) != BT_OK) {
            fprintf(stderr, "%s: --init-from: %s\n", r->name, bt_error());
            return 1;
        }
    } else if ((rc = bt_eval_load_backbone(&r->m, r->weights, r->arch, arch_given)) != BT_OK) {
        fprintf(stderr, "%s: %s\n", r->name, bt_error());
        return 1;
    }
    if ((rc = bt_dataset_open(&r->train, r->data, "train")) != BT_OK ||
        (rc = bt_dataset_open(&r->val, r->data, "val")) != BT_OK) {
        rc = bt_fail(rc, "DATA: %s", bt_error());
        goto bad;
    }
    printf("%s: %s backbone (%d features) from %s; %zu train / %zu val images, %d classes\n",
           r->name, r->m->cfg.arch, r->m->cfg.feat_dim, r->weights, bt_dataset_size(r->train),
           bt_dataset_size(r->val), bt_dataset_num_classes(r->train));
    fflush(stdout);
    return 0;
bad:
    fprintf(stderr, "%s: %s\n", r->name, bt_error());
    return 2;
}

static void cleanup(ev_run *r) {
    bt_model_free(r->m);
    bt_dataset_close(r->train);
    bt_dataset_close(r->val);
    bt_scratch_release();
}

static int num_classes(const ev_run *r) {
    int a = bt_dataset_num_classes(r->train), b = bt_dataset_num_classes(r->val);
    return a > b ? a : b;
}

/* Features (n, D) and labels (n) of a whole split, frozen backbone in eval mode. */
static int features_of(ev_run *r, const bt_dataset *ds, float **feat, int32_t **labels) {
    size_t n = bt_dataset_size(ds);
    int D = r->m->cfg.feat_dim;
    *feat = bt_alloc(n * D * sizeof(float));
    *labels = malloc(n * sizeof(int32_t));
    if (!*feat || !*labels) return bt_fail(BT_ENOMEM, "out of memory for %zu x %d features", n, D);
    return bt_extract_features(*feat, *labels, r->m, ds, &r->pre, r->batch, r->workers);
}

/* ---- knn -------------------------------------------------------------------------------- */

static int run_knn(ev_run *r) {
    float *ftr = NULL, *fte = NULL;
    int32_t *ltr = NULL, *lte = NULL;
    double t0 = now_s(), top1 = 0, top5 = 0;
    int rc = features_of(r, r->train, &ftr, &ltr);
    if (rc == BT_OK) rc = features_of(r, r->val, &fte, &lte);
    if (rc == BT_OK) {
        int D = r->m->cfg.feat_dim;
        double t1 = now_s();
        bt_features_normalize(ftr, bt_dataset_size(r->train), D);
        bt_features_normalize(fte, bt_dataset_size(r->val), D);
        rc = bt_knn_eval(&top1, &top5, ftr, ltr, bt_dataset_size(r->train), fte, lte,
                         bt_dataset_size(r->val), D, num_classes(r), r->k, (float)r->temperature);
        if (rc == BT_OK)
            printf("%s: k=%d T=%g: top-1 %.2f%%  top-5 %.2f%%  (features %.1f s, kNN %.1f s)\n",
                   r->name, r->k, r->temperature, top1, top5, t1 - t0, now_s() - t1);
    }
    if (rc != BT_OK) fprintf(stderr, "%s: %s\n", r->name, bt_error());
    bt_free(ftr);
    bt_free(fte);
    free(ltr);
    free(lte);
    return rc == BT_OK ? 0 : 1;
}

/* ---- linear / finetune ------------------------------------------------------------------ */

/* Per-epoch report: printed and appended to --stats as one JSON line. */
static int report(ev_run *r, FILE *stats, int epoch, double lr, double loss, long c1, long c5,
                  size_t nval, double *best1, double *best5, double t) {
    double a1 = 100.0 * (double)c1 / (double)nval, a5 = 100.0 * (double)c5 / (double)nval;
    if (a1 > *best1) *best1 = a1;
    if (a5 > *best5) *best5 = a5;
    char line[512];
    snprintf(line, sizeof line,
             "{\"epoch\": %d, \"lr\": %.6g, \"loss\": %.6g, \"acc1\": %.3f, \"acc5\": %.3f, "
             "\"best_acc1\": %.3f, \"best_acc5\": %.3f, \"time\": %.1f}",
             epoch, lr, loss, a1, a5, *best1, *best5, t);
    printf("%s\n", line);
    fflush(stdout);
    if (stats && (fprintf(stats, "%s\n", line) < 0 || fflush(stats) != 0))
        return bt_fail(BT_EIO, "cannot write %s", r->stats);
    return BT_OK;
}

/* A batch of n <= B images padded with zeros to B rows (eval-mode forward at a fixed shape). */
static const float *padded(float *buf, const float *x, int n, int B, size_t img) {
    if (n == B) return x;
    memcpy(buf, x, (size_t)n * img * sizeof(float));
    memset(buf + (size_t)n * img, 0, (size_t)(B - n) * img * sizeof(float));
    return buf;
}

static int run_linear(ev_run *r) {
    const int D = r->m->cfg.feat_dim, C = num_classes(r), B = r->batch;
    const size_t ntr = bt_dataset_size(r->train), nval = bt_dataset_size(r->val);
    float *fval = NULL, *ftr = NULL, *pad = NULL, *fb = NULL; /* fb (B, D): a batch's features */
    int32_t *lval = NULL, *ltr = NULL, *lb = NULL;
    size_t *perm = NULL;
    bt_probe *p = NULL;
    bt_loader *ld = NULL;
    FILE *stats = NULL;
    double t0 = now_s(), best1 = 0, best5 = 0;
    int rc;
    if (r->stats && !(stats = fopen(r->stats, "a"))) {
        rc = bt_fail(BT_EIO, "cannot open --stats %s", r->stats);
        goto done;
    }
    if ((rc = bt_probe_new(&p, D, C, (uint64_t)r->seed)) != BT_OK) goto done;
    /* The backbone is frozen and the eval transform deterministic: the val features are the
     * same every epoch, so they are extracted once (exact, not an approximation). */
    if ((rc = features_of(r, r->val, &fval, &lval)) != BT_OK) goto done;
    if (r->cached) {
        if ((rc = features_of(r, r->train, &ftr, &ltr)) != BT_OK) goto done;
        perm = malloc(ntr * sizeof *perm);
        lb = malloc((size_t)B * sizeof *lb);
        pad = bt_alloc((size_t)B * D * sizeof(float));
        if (!perm || !lb || !pad) { rc = bt_fail(BT_ENOMEM, "out of memory"); goto done; }
    } else {
        bt_loader_cfg lc = {.batch = B, .threads = r->workers, .ring = 3, .seed = (uint64_t)r->seed,
                            .mode = BT_LOAD_ONE_VIEW, .shuffle = 1, .drop_last = 0, .rank = 0,
                            .world = 1};
        if ((rc = bt_loader_new(&ld, r->train, &r->pre, &lc)) != BT_OK) goto done;
        int S = bt_loader_image_size(ld, 0);
        pad = bt_alloc((size_t)B * 3 * S * S * sizeof(float));
        fb = bt_alloc((size_t)B * D * sizeof(float));
        if (!pad || !fb) { rc = BT_ENOMEM; goto done; }
    }
    printf("%s: probe %d -> %d, %d epochs, batch %d, lr %g, wd %g%s\n", r->name, D, C, r->epochs,
           B, r->lr_cls, r->wd, r->cached ? ", cached unaugmented train features" : "");
    for (int e = 0; e < r->epochs; e++) {
        double lr = bt_cosine_lr(r->lr_cls, e, r->epochs), lsum = 0;
        long nb = 0;
        float loss;
        if (r->cached) {
            /* The epoch's order: a seeded Fisher-Yates shuffle keyed by the epoch. */
            bt_rng g = bt_rng_key((uint64_t)r->seed, (uint64_t)e, UINT64_MAX, 0x6c696e);
            for (size_t i = 0; i < ntr; i++) perm[i] = i;
            for (size_t i = ntr; i > 1; i--) {
                size_t j = (size_t)bt_rng_below(&g, i), t = perm[i - 1];
                perm[i - 1] = perm[j];
                perm[j] = t;
            }
            for (size_t b0 = 0; b0 < ntr; b0 += (size_t)B) {
                int n = (int)(ntr - b0 < (size_t)B ? ntr - b0 : (size_t)B);
                for (int j = 0; j < n; j++) {
                    memcpy(pad + (size_t)j * D, ftr + perm[b0 + j] * D, (size_t)D * sizeof(float));
                    lb[j] = ltr[perm[b0 + j]];
                }
                if ((rc = bt_probe_step(p, pad, lb, n, lr, 0.9, r->wd, &loss, NULL))) goto done;
                lsum += loss;
                nb++;
            }
        } else {
            int S = bt_loader_image_size(ld, 0);
            if ((rc = bt_model_prepare(r->m, B, S, S)) != BT_OK) goto done;
            if ((rc = bt_loader_start_epoch(ld, e, 0)) != BT_OK) goto done;
            const bt_batch *b;
            while ((rc = bt_loader_next(ld, &b)) == 1) {
                const float *x = padded(pad, b->x[0], b->n, B, (size_t)3 * S * S);
                if ((rc = bt_model_forward(r->m, 0, x, 0, 1)) != BT_OK) goto done;
                if ((rc = bt_model_copy_features(r->m, 0, fb, b->n, 0)) != BT_OK) goto done;
                if ((rc = bt_probe_step(p, fb, b->labels, b->n, lr, 0.9, r->wd, &loss, NULL)))
                    goto done;
                lsum += loss;
                nb++;
            }
            if (rc < 0) goto done;
        }
        if (!isfinite(lsum)) {
            rc = bt_fail(BT_ENUM, "epoch %d: the loss is not finite (lower --lr-classifier?)", e);
            goto done;
        }
        long c1, c5;
        if ((rc = bt_probe_eval(p, fval, lval, nval, &c1, &c5)) != BT_OK) goto done;
        if ((rc = report(r, stats, e, lr, lsum / (double)nb, c1, c5, nval, &best1, &best5,
                         now_s() - t0)) != BT_OK)
            goto done;
    }
    printf("%s: best top-1 %.2f%%  top-5 %.2f%%\n", r->name, best1, best5);
    rc = BT_OK;
done:
    if (rc != BT_OK) fprintf(stderr, "%s: %s\n", r->name, bt_error());
    if (stats) fclose(stats);
    bt_loader_free(ld);
    bt_probe_free(p);
    bt_free(fval);
    bt_free(ftr);
    bt_free(pad);
    bt_free(fb);
    free(lval);
    free(ltr);
    free(lb);
    free(perm);
    return rc == BT_OK ? 0 : 1;
}

static int run_finetune(ev_run *r) {
    const int D = r->m->cfg.feat_dim, C = num_classes(r), B = r->batch;
    const size_t nval = bt_dataset_size(r->val);
    const int S = r->pre.view[0].size;
    size_t *sub = NULL, *perm = NULL, ns = 0;
    float *x = NULL, *dfeat = NULL, *fval = NULL, *fb = NULL; /* fb (B, D): a batch's features */
    int32_t *lb = NULL, *lval = NULL;
    bt_probe *p = NULL;
    FILE *stats = NULL;
    double t0 = now_s(), best1 = 0, best5 = 0;
    int rc;
    if (r->train_files) {
        if ((rc = bt_subset_read(&sub, &ns, r->train, r->train_files)) != BT_OK) goto done;
        printf("%s: %zu labelled train images from %s\n", r->name, ns, r->train_files);
    } else {
        double pct = atof(r->train_percent);
        if ((rc = bt_subset_balanced(&sub, &ns, r->train, pct, (uint64_t)r->seed)) != BT_OK) goto done;
        char def[256];
        const char *out = r->subset_out;
        if (!out && pct < 100) {
            snprintf(def, sizeof def, "subset-%spct-seed%ld.txt", r->train_percent, r->seed);
            out = def;
        }
        if (out && (rc = bt_subset_write(out, r->train, sub, ns)) != BT_OK) goto done;
        printf("%s: %zu labelled train images (%s%%, class-balanced, seed %ld)%s%s\n", r->name,
               ns, r->train_percent, r->seed, out ? ", list in " : "", out ? out : "");
    }
    if (r->stats && !(stats = fopen(r->stats, "a"))) {
        rc = bt_fail(BT_EIO, "cannot open --stats %s", r->stats);
        goto done;
    }
    if ((rc = bt_probe_new(&p, D, C, (uint64_t)r->seed)) != BT_OK) goto done;
    perm = malloc(ns * sizeof *perm);
    lb = malloc((size_t)B * sizeof *lb);
    x = bt_alloc((size_t)B * 3 * S * S * sizeof(float));   /* (B, 3, S, S) */
    dfeat = bt_alloc((size_t)B * D * sizeof(float));        /* (B, D) */
    fb = bt_alloc((size_t)B * D * sizeof(float));           /* (B, D) */
    fval = bt_alloc(nval * D * sizeof(float));              /* (nval, D) */
    lval = malloc(nval * sizeof *lval);
    if (!perm || !lb || !x || !dfeat || !fb || !fval || !lval) {
        rc = bt_fail(BT_ENOMEM, "out of memory");
        goto done;
    }
    bt_model *m = r->m;
    /* SGD runs on the host image: the parameters, gradients and momentum go there and back
     * around each step (no copies on the CPU backend) */
    memset(m->host.mom, 0, m->params.total * sizeof(float));
    if ((rc = bt_model_to_device(m, BT_IO_MOMENTUM)) != BT_OK) goto done;
    printf("%s: %d epochs, batch %d, lr classifier %g backbone %g, wd %g\n", r->name, r->epochs,
           B, r->lr_cls, r->lr_bb, r->wd);
    for (int e = 0; e < r->epochs; e++) {
        double lrc = bt_cosine_lr(r->lr_cls, e, r->epochs), lrb = bt_cosine_lr(r->lr_bb, e, r->epochs);
        double lsum = 0;
        long nb = 0;
        bt_rng g = bt_rng_key((uint64_t)r->seed, (uint64_t)e, UINT64_MAX, 0x66746e);
        memcpy(perm, sub, ns * sizeof *perm);
        for (size_t i = ns; i > 1; i--) {
            size_t j = (size_t)bt_rng_below(&g, i), t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
        for (size_t b0 = 0; b0 < ns; b0 += (size_t)B) {
            int n = (int)(ns - b0 < (size_t)B ? ns - b0 : (size_t)B);
            if (n < 2) break; /* training-mode BN needs two images */
            if ((rc = bt_load_augmented(x, lb, r->train, perm + b0, n, &r->pre,
                                        (uint64_t)r->seed, e)) != BT_OK)
                goto done;
            if ((rc = bt_model_prepare(m, n, S, S)) != BT_OK) goto done;
            if ((rc = bt_model_forward(m, 0, x, 1, 1)) != BT_OK) goto done;
            float loss;
            int bb = r->lr_bb > 0;
            if (bb) memset(dfeat, 0, (size_t)n * D * sizeof(float));
            if ((rc = bt_model_copy_features(m, 0, fb, n, 0)) != BT_OK) goto done;
            if ((rc = bt_probe_step(p, fb, lb, n, lrc, 0.9, r->wd, &loss, bb ? dfeat : NULL)) != BT_OK)
                goto done;
            if (bb) {
                /* A backbone learning rate of 0 leaves the weights where they are (torch's SGD
                 * step is then a no-op), so the backward is only run when it matters. */
                const int grp = BT_IO_PARAMS | BT_IO_GRADS | BT_IO_MOMENTUM;
                if ((rc = bt_model_zero_grads(m)) != BT_OK) goto done;
                if ((rc = bt_model_backward_host(m, 0, dfeat, 1)) != BT_OK) goto done;
                if ((rc = bt_model_to_host(m, grp)) != BT_OK) goto done;
                bt_sgd_step(m->host.p, m->host.g, m->host.mom, m->params.total, lrb, 0.9, r->wd);
                if ((rc = bt_model_to_device(m, BT_IO_PARAMS | BT_IO_MOMENTUM)) != BT_OK) goto done;
            }
            lsum += loss;
            nb++;
        }
        if (!isfinite(lsum)) {
            rc = bt_fail(BT_ENUM, "epoch %d: the loss is not finite (lower the learning rates?)", e);
            goto done;
        }
        long c1, c5;
        if ((rc = bt_extract_features(fval, lval, m, r->val, &r->pre, B, r->workers)) != BT_OK)
            goto done;
        if ((rc = bt_probe_eval(p, fval, lval, nval, &c1, &c5)) != BT_OK) goto done;
        if ((rc = report(r, stats, e, lrc, nb ? lsum / (double)nb : 0.0, c1, c5, nval, &best1,
                         &best5, now_s() - t0)) != BT_OK)
            goto done;
    }
    printf("%s: best top-1 %.2f%%  top-5 %.2f%%\n", r->name, best1, best5);
    rc = BT_OK;
done:
    if (rc != BT_OK) fprintf(stderr, "%s: %s\n", r->name, bt_error());
    if (stats) fclose(stats);
    bt_probe_free(p);
    bt_free(x);
    bt_free(dfeat);
    bt_free(fb);
    bt_free(fval);
    free(sub);
    free(perm);
    free(lb);
    free(lval);
    return rc == BT_OK ? 0 : 1;
}

static int run_cmd(int cmd, const char *name, int argc, char **argv) {
    ev_run r;
    memset(&r, 0, sizeof r);
    r.cmd = cmd;
    r.name = name;
    int rc = setup(&r, argc, argv);
    if (rc == 0)
        rc = cmd == CMD_KNN ? run_knn(&r) : cmd == CMD_LINEAR ? run_linear(&r) : run_finetune(&r);
    else if (rc < 0)
        rc = 0;
    cleanup(&r);
    return rc;
}

int bt_cmd_knn(int argc, char **argv) { return run_cmd(CMD_KNN, "barlow knn", argc, argv); }
int bt_cmd_linear(int argc, char **argv) { return run_cmd(CMD_LINEAR, "barlow linear", argc, argv); }
int bt_cmd_finetune(int argc, char **argv) {
    return run_cmd(CMD_FINETUNE, "barlow finetune", argc, argv);
}
