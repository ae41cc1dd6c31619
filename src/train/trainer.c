/* The training step in the library (include/barlow/trainer.h): schedule, gradients with the
 * bucketed all-reduce (step.c), the non-finite check and LARS, all through the backend. */
#include "barlow/trainer.h"
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/train.h"
#include <stdlib.h>

int bt_trainer_new(bt_trainer **out, bt_backend *be, const bt_comm *comm,
                   const bt_trainer_cfg *cfg) {
    *out = NULL;
    if (!be || !cfg) return bt_fail(BT_EINVAL, "bt_trainer_new: no backend or configuration");
    if (cfg->batch < 2) return bt_fail(BT_EINVAL, "batch of %d per rank: training needs 2 or more", cfg->batch);
    bt_trainer *t = calloc(1, sizeof *t);
    if (!t) return bt_fail(BT_ENOMEM, "out of memory");
    t->be = be;
    t->comm = comm;
    t->cfg = *cfg;
    bt_lars_default(&t->lars);
    t->lars.weight_decay = cfg->weight_decay;
    t->lars.eta = cfg->eta;
    int rc = bt_model_new_on(&t->m, be, cfg->arch, cfg->projector);
    if (rc == BT_OK && !t->m->cfg.nproj) rc = bt_fail(BT_EINVAL, "training needs a projector");
    if (rc == BT_OK) {
        t->m->comm = comm;
        t->m->grad_bucket = cfg->bucket_floats;
        rc = bt_model_prepare(t->m, cfg->batch, cfg->image_size, cfg->image_size);
    }
    if (rc != BT_OK) {
        bt_trainer_free(t);
        return rc;
    }
    bt_model_init(t->m, cfg->seed);
    *out = t;
    return BT_OK;
}

void bt_trainer_free(bt_trainer *t) {
    if (!t) return;
    bt_model_free(t->m);
    free(t);
}

int bt_trainer_broadcast(bt_trainer *t, long *extra, int n) {
    const bt_comm *c = t->comm;
    if (bt_comm_world(c) == 1) return BT_OK;
    if (n < 0 || n > 8) return bt_fail(BT_EINVAL, "bt_trainer_broadcast: %d extra values", n);
    bt_model *m = t->m;
    long hdr[10] = {t->step, (long)m->bn_batches};
    for (int i = 0; i < n; i++) hdr[2 + i] = extra[i];
    int rc;
    if ((rc = c->bcast(c, hdr, sizeof hdr, 0)) ||
        (rc = c->bcast(c, m->p, m->params.total * sizeof(float), 0)) ||
        (rc = c->bcast(c, m->mom, m->params.total * sizeof(float), 0)) ||
        (rc = c->bcast(c, m->b, m->bufs.total * sizeof(float), 0)))
        return rc;
    t->step = hdr[0];
    m->bn_batches = hdr[1];
    for (int i = 0; i < n; i++) extra[i] = hdr[2 + i];
    return BT_OK;
}

int bt_trainer_step(bt_trainer *t, const float *x1, const float *x2, bt_loss_result *res) {
    const bt_trainer_cfg *c = &t->cfg;
    bt_lr_schedule(&t->lars.lr_weights, &t->lars.lr_biases, t->step, c->steps_per_epoch,
                   c->epochs, c->warmup_epochs, c->global_batch, c->lr_weights, c->lr_biases);
    bt_model *m = t->m;
    int rc = bt_train_grads(m, x1, x2, c->lambd, c->loss_form, res);
    if (rc != BT_OK) return rc; /* BT_ENUM from the loss: not finite, nothing accumulated */
    if ((rc = t->be->ops->lars_step(t->be, m->p, m->g, m->mom, &m->params, &t->lars)) != BT_OK)
        return rc;
    t->step++;
    return BT_OK;
}
