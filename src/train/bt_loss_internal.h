/* The float32 loss of bt_loss.inc in pieces, for the multi-rank loss (bt_loss_sync.c): it
 * sizes one workspace for its own buffers and the loss's, and runs the direct form with a
 * communicator. Internal to the library. */
#ifndef BARLOW_TRAIN_BT_LOSS_INTERNAL_H
#define BARLOW_TRAIN_BT_LOSS_INTERNAL_H
#include <stddef.h>
#include "barlow/loss.h"

struct bt_comm;

/* The argument checks of bt_twins_loss for N rows; resolves AUTO in *form. */
int bt_loss_f32_check(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                      const float *z2, int N, int D, int *form);
/* Bytes of workspace bt_loss_f32_run needs (form DIRECT or GRAM; grad: dz wanted). */
size_t bt_loss_f32_bytes(int N, int D, int form, int grad);
/* The loss in the workspace ws (64-byte aligned, bt_loss_f32_bytes bytes) for checked
 * arguments. comm (DIRECT only): z1, z2, dz1, dz2 are this rank's N rows of the global batch
 * of every rank; NULL: one process. */
int bt_loss_f32_run(char *ws, bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                    const float *z2, int N, int D, double lambda, int form, float *running_mean,
                    float *running_var, const struct bt_comm *comm);

#endif
