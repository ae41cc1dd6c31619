/* The training step's gradient computation: two views through one network, the loss, and
 * the backward of both views into one gradient buffer. */
#include "barlow/train.h"
#include "barlow/comm.h"
#include "barlow/error.h"
#include <string.h>

int bt_train_grads(bt_model *m, const float *x1, const float *x2, float lambda, int form,
                   bt_loss_result *res) {
    if (!m->cfg.nproj) return bt_fail(BT_EINVAL, "training needs a projector");
    memset(m->g, 0, m->params.total * sizeof(float));
    int rc;
    if ((rc = bt_model_forward(m, 0, x1, 1, 0)) != BT_OK) return rc;
    if ((rc = bt_model_forward(m, 1, x2, 1, 0)) != BT_OK) return rc;
    int D = bt_model_out_dim(m);
    size_t nd = (size_t)m->N * D;
    memset(m->dz[0], 0, nd * sizeof(float));
    memset(m->dz[1], 0, nd * sizeof(float));
    rc = bt_bt_loss_sync(res, m->dz[0], m->dz[1], bt_model_output(m, 0), bt_model_output(m, 1),
                         m->N, D, lambda, form, m->b + m->bufs.t[m->loss_rm].offset,
                         m->b + m->bufs.t[m->loss_rv].offset, m->comm);
    if (rc != BT_OK) return rc;
    if ((rc = bt_model_backward(m, 1, m->dz[1], 0)) != BT_OK) return rc;
    if ((rc = bt_model_backward(m, 0, m->dz[0], 0)) != BT_OK) return rc;
    /* Each rank holds the gradient of the global loss through its own samples: their SUM is
     * the single-process gradient of the global batch (an average would be 1/P of it). */
    if (bt_comm_world(m->comm) > 1) rc = m->comm->allreduce_f32(m->comm, m->g, m->params.total);
    return rc;
}
