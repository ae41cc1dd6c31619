/* The Barlow Twins loss over a global batch split across ranks, both forms being the code of
 * bt_twins_loss (bt_loss.inc):
 *  - DIRECT: bt_loss.inc with the communicator: the loss BN's column sums are all-reduced,
 *    each rank builds its share of C = A^T B / N from its own rows and C (D x D) is
 *    all-reduced; the gradient then flows back through the local rows with globally reduced
 *    BN sums.
 *  - GRAM: every rank all-gathers the two views' embeddings (N_global x D each; small when
 *    D > N is why GRAM was picked) and evaluates the loss on the whole batch, keeping the
 *    gradient rows of its own samples. The result is the single-process computation.
 * One rank: exactly bt_twins_loss. Every temporary comes from the caller's arena. */
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/loss.h"
#include "barlow/scratch.h"
#include "bt_loss_internal.h"
#include <string.h>

/* The gathered views and their gradients (4 W N D floats), then the loss's own workspace. */
static int loss_gram(bt_arena *ws, bt_loss_result *res, float *dz1, float *dz2,
                     const float *z1, const float *z2, int N, int D, float lambda, float *rm,
                     float *rv, const bt_comm *comm) {
    size_t W = (size_t)comm->world, nd = (size_t)N * D;
    int NG = (int)(W * N), form = BT_LOSS_GRAM;
    float *g1 = NULL, *g2 = NULL;
    int rc = bt_loss_f32_check(res, dz1, dz2, z1, z2, NG, D, &form);
    if (rc) return rc;
    size_t own = (4 * W * nd * sizeof(float) + 63) & ~(size_t)63;
    char *p = bt_arena_get(ws, own + bt_loss_f32_bytes(NG, D, form, dz1 != NULL));
    if (!p) return BT_ENOMEM;
    float *a1 = (float *)p, *a2 = a1 + W * nd;
    if (dz1) g1 = a2 + W * nd, g2 = g1 + W * nd;
    rc = comm->allgather_f32(comm, z1, a1, nd);
    if (!rc) rc = comm->allgather_f32(comm, z2, a2, nd);
    if (rc) return rc;
    if (dz1) memset(g1, 0, 2 * W * nd * sizeof(float));
    rc = bt_loss_f32_run(p + own, res, g1, g2, a1, a2, NG, D, lambda, form, rm, rv, NULL);
    if (rc || !dz1) return rc;
    const float *m1 = g1 + comm->rank * nd, *m2 = g2 + comm->rank * nd;
    for (size_t i = 0; i < nd; i++) {
        dz1[i] += m1[i];
        dz2[i] += m2[i];
    }
    return BT_OK;
}

/* This rank's N rows through bt_loss.inc with the communicator. */
static int loss_direct(bt_arena *ws, bt_loss_result *res, float *dz1, float *dz2,
                       const float *z1, const float *z2, int N, int D, float lambda, float *rm,
                       float *rv, const bt_comm *comm) {
    char *p = bt_arena_get(ws, bt_loss_f32_bytes(N, D, BT_LOSS_DIRECT, dz1 != NULL));
    if (!p) return BT_ENOMEM;
    return bt_loss_f32_run(p, res, dz1, dz2, z1, z2, N, D, lambda, BT_LOSS_DIRECT, rm, rv, comm);
}

int bt_twins_loss_sync(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                    const float *z2, int N, int D, float lambda, int form, float *running_mean,
                    float *running_var, const bt_comm *comm) {
    return bt_twins_loss_sync_ws(bt_default_arena(), res, dz1, dz2, z1, z2, N, D, lambda, form,
                              running_mean, running_var, comm);
}

int bt_twins_loss_sync_ws(bt_arena *ws, bt_loss_result *res, float *dz1, float *dz2,
                       const float *z1, const float *z2, int N, int D, float lambda, int form,
                       float *running_mean, float *running_var, const bt_comm *comm) {
    if (bt_comm_world(comm) == 1)
        return bt_twins_loss_ws(ws, res, dz1, dz2, z1, z2, N, D, lambda, form, running_mean,
                             running_var);
    if (!res || !z1 || !z2 || N < 1 || D < 1 || (!dz1) != (!dz2))
        return bt_fail(BT_EINVAL, "bt_twins_loss_sync: bad arguments (N=%d, D=%d)", N, D);
    if (form == BT_LOSS_AUTO) form = bt_twins_loss_choose(N * comm->world, D);
    if (form == BT_LOSS_GRAM)
        return loss_gram(ws, res, dz1, dz2, z1, z2, N, D, lambda, running_mean, running_var,
                         comm);
    if (form == BT_LOSS_DIRECT)
        return loss_direct(ws, res, dz1, dz2, z1, z2, N, D, lambda, running_mean, running_var,
                           comm);
    return bt_fail(BT_EINVAL, "bt_twins_loss_sync: bad form %d", form);
}
