/* The training step's gradient computation: two views through one network, the loss, and
 * the backward of both views into one gradient buffer. */
#include "barlow/train.h"
#include "barlow/comm.h"
#include "barlow/error.h"
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
