/* The training step in the library (include/barlow/trainer.h): schedule, gradients with the
 * bucketed all-reduce (bt_train_grads, train.h: two views through one network, the loss, and
 * the backward of both views into one gradient buffer), the non-finite check and LARS, all
 * through the backend. */
#include "barlow/trainer.h"
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/train.h"
#include <stdlib.h>

/* Gradient buckets of at least 1 Mi floats (4 MiB; m->grad_bucket overrides it, for tuning
 * and for the tests, which use tiny models), all-reduced without blocking. */
#define MAX_BUCKETS 256

typedef struct {
    bt_model *m;
    size_t bucket;            /* floats per bucket */
    size_t sent;              /* gradients at offsets >= sent are on their way */
    void *req[MAX_BUCKETS];
    int n;
} bucket_ctx;

/* Starts the all-reduce of [lo, sent). */
static int bucket_send(bucket_ctx *b, size_t lo) {
    if (b->n == MAX_BUCKETS) return bt_fail(BT_EINVAL, "too many gradient buckets");
    int rc = b->m->comm->iallreduce_f32(b->m->comm, b->m->g + lo, b->sent - lo, &b->req[b->n]);
    if (rc) return rc;
    b->n++;
    b->sent = lo;
    return BT_OK;
}

static int bucket_ready(void *ctx, size_t lo) {
    bucket_ctx *b = ctx;
    int rc = BT_OK;
    /* keep the last bucket for the end, so no bucket is tiny */
    if (b->sent - lo >= b->bucket && lo >= b->bucket && b->n < MAX_BUCKETS - 1)
        rc = bucket_send(b, lo);
    /* let MPI progress the buckets in flight */
    for (int i = 0; i < b->n && !rc; i++) {
        int done;
        rc = b->m->comm->test(b->m->comm, b->req[i], &done);
    }
    return rc;
}

int bt_train_grads(bt_model *m, const float *x1, const float *x2, float lambda, int form,
                   bt_loss_result *res) {
    if (!m->cfg.nproj) return bt_fail(BT_EINVAL, "training needs a projector");
    bt_backend *be = m->be;
    int rc;
    if ((rc = bt_model_zero_grads(m)) != BT_OK) return rc;
    if ((rc = bt_model_forward(m, 0, x1, 1, 0)) != BT_OK) return rc;
    if ((rc = bt_model_forward(m, 1, x2, 1, 0)) != BT_OK) return rc;
    int D = bt_model_out_dim(m);
    size_t nd = (size_t)m->N * D;
    if ((rc = be->ops->zero(be, m->dz[0], nd * sizeof(float))) != BT_OK ||
        (rc = be->ops->zero(be, m->dz[1], nd * sizeof(float))) != BT_OK)
        return rc;
    rc = be->ops->bt_loss_sync(be, res, m->dz[0], m->dz[1], bt_model_output(m, 0),
                               bt_model_output(m, 1), m->N, D, lambda, form,
                               m->b + m->bufs.t[m->loss_rm].offset,
                               m->b + m->bufs.t[m->loss_rv].offset, m->comm);
    if (rc != BT_OK) return rc;
    if ((rc = bt_model_backward(m, 1, m->dz[1], 0)) != BT_OK) return rc;
    if (bt_comm_world(m->comm) == 1) return bt_model_backward(m, 0, m->dz[0], 0);
    /* Each rank holds the gradient of the global loss through its own samples: their SUM is
     * the single-process gradient of the global batch (an average would be 1/P of it). The
     * last view's backward finishes the gradients from the end of the buffer backwards, so
     * buckets of finished gradients are all-reduced while the backward goes on. */
    bucket_ctx b = {.m = m, .sent = m->params.total,
                    .bucket = m->grad_bucket ? m->grad_bucket : (size_t)1 << 20};
    m->grad_ready = bucket_ready;
    m->grad_ready_ctx = &b;
    rc = bt_model_backward(m, 0, m->dz[0], 0);
    m->grad_ready = NULL;
    if (rc == BT_OK && b.sent > 0) rc = bucket_send(&b, 0);
    for (int i = 0; i < b.n; i++) {
        int w = m->comm->wait(m->comm, b.req[i]);
        if (!rc) rc = w;
    }
    return rc;
}

/* ---- the trainer ------------------------------------------------------------------------ */

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
