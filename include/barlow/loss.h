/* The Barlow Twins loss (Zbontar et al. 2021; facebookresearch/barlowtwins main.py):
 *
 *     c = bn(z1).T @ bn(z2) / N          bn = BatchNorm1d(D, affine=False), training mode
 *     loss = sum_i (c_ii - 1)^2 + lambda * sum_{i != j} c_ij^2
 *
 * with its gradient with respect to the projector outputs z1, z2. Two algebraically equal
 * forms: DIRECT builds the (D, D) cross-correlation (O(N D^2) time, O(D^2) memory); GRAM never
 * forms it and works with the (N, N) Gram matrices of the two views, using
 * ||c||_F^2 = tr(A A^T B B^T) / N^2 (O(N^2 D) time, O(N^2 + N D) memory), which wins when
 * D > N (the reference setting: D = 8192, N = 256 per GPU). */
#ifndef BARLOW_LOSS_H
#define BARLOW_LOSS_H
#include "barlow/scratch.h"

enum { BT_LOSS_AUTO = 0, BT_LOSS_DIRECT = 1, BT_LOSS_GRAM = 2 };

/* The BatchNorm1d of the reference loss: PyTorch defaults. */
#define BT_LOSS_BN_EPS 1e-5
#define BT_LOSS_BN_MOMENTUM 0.1

typedef struct {
    double loss;     /* on_diag + lambda * off_diag */
    double on_diag;  /* sum_i (c_ii - 1)^2 */
    double off_diag; /* sum_{i != j} c_ij^2, unweighted */
    int form_used;   /* BT_LOSS_DIRECT or BT_LOSS_GRAM */
} bt_loss_result;

/* z1, z2 (N, D): projector outputs of the two views. dz1, dz2 (N, D): the gradients of the
 * loss are ACCUMULATED (+=) into them; both NULL = forward only (one NULL is an error).
 * running_mean, running_var (D): the loss BN's running statistics, updated twice (z1, then z2)
 * as the reference's two calls of self.bn do (momentum 0.1, unbiased variance); may be NULL.
 * Temporaries come from the default arena (bt_scratch()); bt_twins_loss_ws takes an arena of its
 * caller's (a backend's). Returns BT_EINVAL for N < 2, D < 1, NULL inputs or a
 * bad form, BT_ENUM if the loss is not finite (nothing is accumulated then; the running
 * statistics have been updated, as PyTorch would have). */
int bt_twins_loss(bt_loss_result *res, float *dz1, float *dz2, const float *z1, const float *z2,
               int N, int D, float lambda, int form, float *running_mean, float *running_var);
int bt_twins_loss_ws(bt_arena *ws, bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                  const float *z2, int N, int D, float lambda, int form, float *running_mean,
                  float *running_var);

/* Same computation in double precision, for tests (both forms, through `form`). */
int bt_twins_loss_f64(bt_loss_result *res, double *dz1, double *dz2, const double *z1,
                   const double *z2, int N, int D, double lambda, int form);

/* The form BT_LOSS_AUTO picks for these sizes: GRAM when D > N, else DIRECT. */
int bt_twins_loss_choose(int N, int D);

/* The loss over a global batch split across the ranks of `comm` (z1, z2, dz1, dz2 are this
 * rank's N rows; statistics and C cover every rank). DIRECT all-reduces the BN sums and C;
 * GRAM all-gathers the embeddings; AUTO picks by the global batch. One rank (or comm NULL):
 * exactly bt_twins_loss. Both forms are the code of bt_twins_loss (the direct one with its column
 * sums and C all-reduced). */
struct bt_comm;
int bt_twins_loss_sync(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                    const float *z2, int N, int D, float lambda, int form, float *running_mean,
                    float *running_var, const struct bt_comm *comm);
int bt_twins_loss_sync_ws(bt_arena *ws, bt_loss_result *res, float *dz1, float *dz2,
                       const float *z1, const float *z2, int N, int D, float lambda, int form,
                       float *running_mean, float *running_var, const struct bt_comm *comm);

#endif
