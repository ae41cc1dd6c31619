/* Weights exchanged with PyTorch / torchvision: loading torchvision-format backbone weights
 * into a model (--init-from), building a model from any barlow weights file, and exporting
 * a model as a safetensors state_dict that torchvision / the reference main.py load with
 * load_state_dict(strict=True). The ONNX export is in onnx.h.
 *
 * Names are torchvision's: "conv1.weight", "layer1.0.bn1.running_mean", ... For the
 * "-cifar" variants the stem differs from torchvision's resnet in two modules, which a PyTorch
 * user must replace before loading: conv1 = Conv2d(3, w, 3, 1, 1, bias=False) and
 * maxpool = Identity(). */
#ifndef BARLOW_INTEROP_H
#define BARLOW_INTEROP_H
#include <stddef.h>
#include "barlow/model.h"
#include "barlow/safetensors.h"

/* Loads backbone weights (parameters and BN running statistics) from the safetensors file
 * `path` into m, strictly: a missing tensor, a tensor of another shape, a non-finite value,
 * or a tensor the backbone does not have is an error naming the tensor (and the file's
 * "arch" metadata, when it has one, to point at an architecture mismatch). Accepted without
 * use: fc.* (torchvision's classifier), *.num_batches_tracked, projector.* / bn.* (a
 * Barlow Twins state_dict); names may carry the reference's "backbone." prefix. The
 * projector, if m has one, is left as it is. m->bn_batches is taken from the first
 * num_batches_tracked found (0 if none). */
int bt_model_init_from(bt_model *m, const char *path);

/* The architecture a weights file was made for, from its metadata: "arch", else the "arch"
 * of the "config" JSON. Copies it into arch (n bytes); BT_EFORMAT if neither exists. */
int bt_weights_arch(const bt_st_file *f, char *arch, size_t n);

/* Builds the model stored in `path`:
 *  - a barlow checkpoint (metadata format "barlow-checkpoint"): checked (bt_ckpt_open), arch
 *    and projector from its config, every tensor restored; with want_projector 0 the
 *    projector is dropped (the model is backbone only);
 *  - any other safetensors weights (a backbone export, a torchvision state_dict converted by
 *    tools/pth_to_safetensors.py): arch from `arch` if non-NULL, else from the metadata;
 *    backbone loaded with bt_model_init_from; want_projector needs metadata "projector"
 *    (written by bt_export_safetensors with the projector).
 * `arch`, when given, must agree with a checkpoint's. *config (if config != NULL) receives a
 * malloc'd copy of the file's "config" metadata, or NULL. */
int bt_model_load_any(bt_model **m, const char *path, const char *arch, int want_projector,
                      char **config);

/* Writes m's weights to `path` (atomically) as a PyTorch state_dict in safetensors form:
 *  - with_projector 0: the backbone under torchvision names, plus an I64 scalar
 *    "<bn>.num_batches_tracked" per BatchNorm, exactly the keys of
 *    torchvision.models.resnetXX() with fc = Identity (metadata format "barlow-backbone");
 *  - with_projector 1: the reference main.py BarlowTwins module's state_dict: "backbone."
 *    + the above, "projector.<i>.weight" / BN tensors, and the loss BN's "bn.running_mean",
 *    "bn.running_var", "bn.num_batches_tracked" (metadata format "barlow-twins").
 * Metadata also holds arch, projector and config (if non-NULL). Every num_batches_tracked
 * is m->bn_batches (all BNs see the same batches). */
int bt_export_safetensors(const bt_model *m, const char *path, int with_projector,
                          const char *config);

#endif
