/* Evaluation of a pretrained backbone, as the Barlow Twins paper reports it: weighted kNN on
 * frozen features (InstDisc / solo-learn), the linear probe of the reference evaluate.py
 * (--weights freeze), and semi-supervised fine-tuning on a class-balanced labelled subset
 * (--weights finetune). The library parts below are shared by `barlow knn|linear|finetune`
 * and by the kNN monitor of `barlow pretrain --knn-every`. */
#ifndef BARLOW_EVAL_H
#define BARLOW_EVAL_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/augment.h"
#include "barlow/dataset.h"
#include "barlow/model.h"

/* ---- weights ------------------------------------------------------------------------------ */

/* Builds a backbone-only model (no projector) and loads its parameters and BN running
 * statistics from `path`: a training checkpoint (validated with bt_ckpt_open, projector and
 * loss BN ignored), a backbone.safetensors, or a PyTorch-written file with torchvision names
 * (optionally "backbone."-prefixed; fc.* ignored). The architecture is the file's (metadata
 * "arch", or "arch" inside the "config" JSON) when it records one, else `arch`. When the file
 * records one and `arch_given` is set, the two must describe the same network, else
 * BT_EINVAL naming the file and both. Missing tensors and shape mismatches are BT_EFORMAT
 * naming the file and the tensor; an unexpected extra tensor is also an error (strict). */
int bt_eval_load_backbone(bt_model **m, const char *path, const char *arch, int arch_given);
/* The augmentation preset a weights file was trained with ("preset" in its "config"
 * metadata: checkpoints and backbones written by `barlow pretrain`), copied into preset (n
 * bytes). 1 if recorded, 0 if not (other files), < 0 if the file cannot be read. */
int bt_eval_file_preset(const char *path, char *preset, size_t n);

/* ---- features ----------------------------------------------------------------------------- */

/* Backbone features of every item of ds, in dataset order, through the eval transform of p
 * and the model in eval mode (BN running statistics, which are not changed): feat
 * (bt_dataset_size(ds), m->cfg.feat_dim), labels (bt_dataset_size(ds)) or NULL.
 *
 * It runs view 0's arena at batch `batch`: when m is already prepared for (batch, S, S), S the
 * eval image side, nothing is reallocated and the caller's next training step is unaffected
 * (view 0's activations are overwritten, which a step recomputes anyway; parameters,
 * gradients, momentum and running statistics are untouched). Otherwise the model is
 * re-prepared for (batch, S, S), and a caller that trains afterwards must call
 * bt_model_prepare again with its training shape. A short last batch is zero-padded, so the
 * arena shape never changes within a call. `workers` decode threads (>= 1). */
int bt_extract_features(float *feat, int32_t *labels, bt_model *m, const bt_dataset *ds,
                        const bt_aug_preset *p, int batch, int workers);

/* Divides each row of x (n, dim) by its L2 norm (rows of norm 0 are left as they are). */
void bt_features_normalize(float *x, size_t n, int dim);

/* ---- kNN ---------------------------------------------------------------------------------- */

/* Weighted kNN classification (Wu et al. 2018; solo-learn's WeightedKNNClassifier): for each
 * test row, the k train rows of largest dot product s (cosine similarity: rows must be
 * L2-normalised, see bt_features_normalize), weights exp(s / T), class score = sum of the
 * weights of its neighbours; a test item counts for top-1 (top-5) when its label ranks first
 * (among the first 5) by score. Ranking breaks score ties by the lower class index, and the
 * neighbour selection breaks similarity ties by the lower train index. k is clamped to ntrain.
 * train_feat (ntrain, dim), train_labels (ntrain), test_feat (ntest, dim), test_labels (ntest),
 * labels in [0, nclasses). Similarities are computed with sgemm over blocks of test rows.
 * top1, top5: percentages. */
int bt_knn_eval(double *top1, double *top5, const float *train_feat,
                const int32_t *train_labels, size_t ntrain, const float *test_feat,
                const int32_t *test_labels, size_t ntest, int dim, int nclasses, int k,
                float T);

/* ---- linear classifier and SGD ------------------------------------------------------------ */

/* torch.optim.SGD (dampening 0, no Nesterov) over n elements:
 *   d = g + wd*p;  mom = momentum*mom + d;  p -= lr*mom
 * with mom starting at 0 (torch's first step sets mom = d, the same thing). */
void bt_sgd_step(float *p, const float *g, float *mom, size_t n, double lr, double momentum,
                 double wd);

/* CosineAnnealingLR(T_max = epochs, eta_min = 0) stepped once per epoch: the rate of epoch e
 * (0-based) is base * (1 + cos(pi * e / epochs)) / 2. */
double bt_cosine_lr(double base, int epoch, int epochs);

/* nn.Linear(in, out) with bias, its gradients and SGD momentum. */
typedef struct {
    int in, out;
    float *w, *b;       /* (out, in), (out) */
    float *gw, *gb;     /* (out, in), (out) gradients of the last step */
    float *mw, *mb;     /* (out, in), (out) momentum */
    float *logits;      /* (cap, out) scratch: logits, then d loss / d logits */
    float *probs;       /* (cap, out) softmax */
    int cap;
} bt_probe;

/* Weights N(0, 0.01) (Box-Muller from the seeded generator), bias 0, as evaluate.py
 * initialises its fc layer; momentum 0. */
int bt_probe_new(bt_probe **p, int in, int out, uint64_t seed);
void bt_probe_free(bt_probe *p);
/* One SGD step of mean cross-entropy on a batch: x (n, in), labels (n). *loss gets the batch
 * loss before the step. dx (n, in), when not NULL, receives (+=) the gradient with respect to
 * x at the weights before the step (for fine-tuning the backbone). */
int bt_probe_step(bt_probe *p, const float *x, const int32_t *labels, int n, double lr,
                  double momentum, double wd, float *loss, float *dx);
/* Counts the rows of x (n, in) whose label is the top-1 / among the top-5 logits (a label
 * ranks after the classes with larger logits and after equal ones of lower index). */
int bt_probe_eval(bt_probe *p, const float *x, const int32_t *labels, size_t n, long *correct1,
                  long *correct5);

/* ---- semi-supervised subsets -------------------------------------------------------------- */

/* Class-balanced seeded subset: from each class c with n_c items, round(n_c * percent / 100)
 * items (at least 1), chosen by a seeded shuffle; returned in dataset order. *idx is
 * allocated (free()). percent in (0, 100]. */
int bt_subset_balanced(size_t **idx, size_t *n, const bt_dataset *ds, double percent,
                       uint64_t seed);
/* Writes one item name (bt_dataset_item_name) per line. */
int bt_subset_write(const char *path, const bt_dataset *ds, const size_t *idx, size_t n);
/* Reads a list of names, one per line (blank lines and lines starting with '#' skipped), and
 * maps each to a dataset item: the item whose full name matches; else, for a name with a '/'
 * or ':', the item whose name ends with it after a separator ("cat/0012.jpg"); else the item
 * whose base name (after the last '/' or ':') matches, as in the SimCLR 1%/10% ImageNet lists
 * ("n01440764_10026.JPEG"). A name that matches nothing, or several items, is BT_EINVAL naming
 * it, the list and its line.
 * Returned in list order, *idx allocated (free()). */
int bt_subset_read(size_t **idx, size_t *n, const bt_dataset *ds, const char *path);

/* Decodes and augments the items idx (n) into x (n, 3, S, S), S = p->view[0].size, with view
 * 0's augmentation of p, each image's draws keyed by (seed, epoch, dataset index, view 0) as
 * the loader keys them; labels (n) receives their labels. Images are processed in parallel
 * (OpenMP), so the result does not depend on the thread count. For training on a subset
 * (fine-tuning), which the loader, working on whole datasets, does not cover. */
int bt_load_augmented(float *x, int32_t *labels, const bt_dataset *ds, const size_t *idx, int n,
                      const bt_aug_preset *p, uint64_t seed, int epoch);

#endif
