/* The Barlow Twins loss over a global batch split across ranks.
 *  - DIRECT: the loss BN's statistics are all-reduced per dimension, each rank builds its
 *    share of C = A^T B / N from its own rows, and C (D x D) is all-reduced; the gradient
 *    then flows back through the local rows with globally reduced BN sums.
 *  - GRAM: every rank all-gathers the two views' embeddings (N_global x D each; small when
 *    D > N is why GRAM was picked) and evaluates bt_bt_loss on the whole batch, keeping the
 *    gradient rows of its own samples. The result is the single-process computation.
 * One rank: exactly bt_bt_loss. */
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/loss.h"
#include "barlow/scratch.h"
#include "barlow/gemm.h"
#include <math.h>
#include <string.h>

/* Grow-only buffers of their own: bt_bt_loss uses bt_scratch() inside. */
static float *gbuf;
static size_t gcap;

static float *grow(size_t n) {
    if (n <= gcap) return gbuf;
    float *p = bt_alloc(n * sizeof(float));
    if (!p) return NULL;
    bt_free(gbuf);
    gbuf = p;
    gcap = n;
    return p;
}

static int loss_gram(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                     const float *z2, int N, int D, float lambda, float *rm, float *rv,
                     const bt_comm *comm) {
    size_t W = (size_t)comm->world, nd = (size_t)N * D;
    float *all = grow(4 * W * nd);
    if (!all) return BT_ENOMEM;
    float *a1 = all, *a2 = a1 + W * nd, *g1 = a2 + W * nd, *g2 = g1 + W * nd;
    int rc = comm->allgather_f32(comm, z1, a1, nd);
    if (!rc) rc = comm->allgather_f32(comm, z2, a2, nd);
    if (rc) return rc;
    memset(g1, 0, 2 * W * nd * sizeof(float));
    rc = bt_bt_loss(res, dz1 ? g1 : NULL, dz2 ? g2 : NULL, a1, a2, (int)(W * N), D, lambda,
                    BT_LOSS_GRAM, rm, rv);
    if (rc || !dz1) return rc;
    const float *m1 = g1 + comm->rank * nd, *m2 = g2 + comm->rank * nd;
    for (size_t i = 0; i < nd; i++) {
        dz1[i] += m1[i];
        dz2[i] += m2[i];
    }
    return BT_OK;
}

/* Global per-dimension statistics of z (N_local, D): mean m and rstd r (D); updates the
 * running statistics like BatchNorm1d (unbiased variance over the global count). */
static int global_stats(double *m, double *r, double *tmp, const float *z, int N, int D,
                        float *rm, float *rv, const bt_comm *comm, double *cnt_out) {
    for (int d = 0; d <= D; d++) tmp[d] = 0;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) tmp[d] += z[(size_t)n * D + d];
    tmp[D] = N;
    int rc = comm->allreduce_f64(comm, tmp, (size_t)D + 1);
    if (rc) return rc;
    double cnt = tmp[D];
    for (int d = 0; d < D; d++) m[d] = tmp[d] / cnt;
    for (int d = 0; d < D; d++) tmp[d] = 0;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            double v = z[(size_t)n * D + d] - m[d];
            tmp[d] += v * v;
        }
    if ((rc = comm->allreduce_f64(comm, tmp, (size_t)D))) return rc;
    for (int d = 0; d < D; d++) {
        r[d] = 1.0 / sqrt(tmp[d] / cnt + BT_LOSS_BN_EPS);
        if (rm) {
            rm[d] = (float)((1 - BT_LOSS_BN_MOMENTUM) * rm[d] + BT_LOSS_BN_MOMENTUM * m[d]);
            rv[d] = (float)((1 - BT_LOSS_BN_MOMENTUM) * rv[d] + BT_LOSS_BN_MOMENTUM * tmp[d] / (cnt - 1));
        }
    }
    *cnt_out = cnt;
    return BT_OK;
}

static int loss_direct(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                       const float *z2, int N, int D, float lambda, float *rm, float *rv,
                       const bt_comm *comm) {
    size_t nd = (size_t)N * D, dd = (size_t)D * D;
    float *buf = grow(4 * nd + 2 * dd);
    double *st = bt_scratch((6 * (size_t)D + 2) * sizeof(double));
    if (!buf || !st) return BT_ENOMEM;
    float *A = buf, *B = A + nd, *dA = B + nd, *dB = dA + nd, *C = dB + nd, *dC = C + dd;
    double *m1 = st, *r1 = m1 + D, *m2 = r1 + D, *r2 = m2 + D, *tmp = r2 + D, cnt;
    int rc = global_stats(m1, r1, tmp, z1, N, D, rm, rv, comm, &cnt);
    if (!rc) rc = global_stats(m2, r2, tmp, z2, N, D, rm, rv, comm, &cnt);
    if (rc) return rc;
    if (cnt < 2) return bt_fail(BT_EINVAL, "Expected more than 1 value per channel when training, got %.0f", cnt);
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)n * D + d;
            A[i] = (float)((z1[i] - m1[d]) * r1[d]);
            B[i] = (float)((z2[i] - m2[d]) * r2[d]);
        }
    /* C (D,D) = A^T B / N_global, summed over ranks */
    bt_sgemm(BT_TRANS, BT_NOTRANS, D, D, N, (float)(1.0 / cnt), A, D, B, D,
                0.0f, C, D);
    if ((rc = comm->allreduce_f32(comm, C, dd))) return rc;
    double on = 0, off = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double c = C[(size_t)i * D + j];
            if (i == j) on += (1 - c) * (1 - c);
            else off += c * c;
        }
    res->on_diag = on;
    res->off_diag = off;
    res->loss = on + lambda * off;
    res->form_used = BT_LOSS_DIRECT;
    if (!isfinite(res->loss)) return bt_fail(BT_ENUM, "loss is not finite (%g)", res->loss);
    if (!dz1) return BT_OK;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            float c = C[(size_t)i * D + j];
            dC[(size_t)i * D + j] = i == j ? 2.0f * (c - 1.0f) : 2.0f * lambda * c;
        }
    /* dA = B dC^T / N_g, dB = A dC / N_g */
    bt_sgemm(BT_NOTRANS, BT_TRANS, N, D, D, (float)(1.0 / cnt), B, D, dC, D,
                0.0f, dA, D);
    bt_sgemm(BT_NOTRANS, BT_NOTRANS, N, D, D, (float)(1.0 / cnt), A, D, dC, D,
                0.0f, dB, D);
    /* BN (no affine) backward with global sums: dz = r (dA - mean(dA) - A mean(dA A)) */
    double *s = tmp; /* (4D): sum dA, sum dA*A, sum dB, sum dB*B */
    for (int d = 0; d < 4 * D; d++) s[d] = 0;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)n * D + d;
            s[d] += dA[i];
            s[D + d] += (double)dA[i] * A[i];
            s[2 * D + d] += dB[i];
            s[3 * D + d] += (double)dB[i] * B[i];
        }
    if ((rc = comm->allreduce_f64(comm, s, 4 * (size_t)D))) return rc;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)n * D + d;
            dz1[i] += (float)(r1[d] * (dA[i] - s[d] / cnt - A[i] * s[D + d] / cnt));
            dz2[i] += (float)(r2[d] * (dB[i] - s[2 * D + d] / cnt - B[i] * s[3 * D + d] / cnt));
        }
    return BT_OK;
}

int bt_bt_loss_sync(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                    const float *z2, int N, int D, float lambda, int form, float *running_mean,
                    float *running_var, const bt_comm *comm) {
    if (bt_comm_world(comm) == 1)
        return bt_bt_loss(res, dz1, dz2, z1, z2, N, D, lambda, form, running_mean, running_var);
    if (!res || !z1 || !z2 || N < 1 || D < 1 || (!dz1) != (!dz2))
        return bt_fail(BT_EINVAL, "bt_bt_loss_sync: bad arguments (N=%d, D=%d)", N, D);
    if (form == BT_LOSS_AUTO) form = bt_bt_loss_choose(N * comm->world, D);
    if (form == BT_LOSS_GRAM)
        return loss_gram(res, dz1, dz2, z1, z2, N, D, lambda, running_mean, running_var, comm);
    if (form == BT_LOSS_DIRECT)
        return loss_direct(res, dz1, dz2, z1, z2, N, D, lambda, running_mean, running_var, comm);
    return bt_fail(BT_EINVAL, "bt_bt_loss_sync: bad form %d", form);
}
