/* One Barlow Twins training step on a bt_model, and the model's weights in safetensors form
 * (used by checkpoints, exports and the parity tests). */
#ifndef BARLOW_TRAIN_H
#define BARLOW_TRAIN_H
#include "barlow/loss.h"
#include "barlow/model.h"
#include "barlow/optim.h"
#include "barlow/safetensors.h"

/* Zeroes the gradients, runs both views forward (training mode), the loss, and both views
 * backward; leaves the parameter gradients in m->g. x1, x2 (N,3,H,W) with the shape given to
 * bt_model_prepare. form: BT_LOSS_AUTO / DIRECT / GRAM. */
int bt_train_grads(bt_model *m, const float *x1, const float *x2, float lambda, int form,
                   bt_loss_result *res);

/* The groups BT_IO_* (what bt_model_write / bt_model_read cover) are in model.h. */

/* Adds the selected tensors to a writer (by pointer: keep m alive until saved). */
int bt_model_write(const bt_model *m, bt_st_writer *w, int what);
/* Reads the selected tensors from f. Names are looked up as ours or with the reference's
 * "backbone." prefix. A missing tensor or a shape mismatch is an error naming it; with
 * `strict`, so is a tensor in f (other than num_batches_tracked, fc.*, and the groups not
 * selected) that the model does not have. */
int bt_model_read(bt_model *m, const bt_st_file *f, int what, int strict);

#endif
