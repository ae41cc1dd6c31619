/* Softmax cross-entropy (PyTorch's F.cross_entropy with mean reduction), optimised float32
 * version, used by the linear-evaluation head. Rows are split across OpenMP threads; each
 * row's loss goes to a slot of the workspace and the slots are summed in order on one thread, so the
 * loss does not depend on the thread count. */
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "norm_pool_check.h"
#include <math.h>

/* logits, probs (N,K); labels (N). */
int bt_xent_forward(float *loss, float *probs, const float *logits, const int32_t *labels,
                    int N, int K) {
    return bt_xent_forward_ws(bt_default_arena(), loss, probs, logits, labels, N, K);
}

int bt_xent_forward_ws(bt_arena *ws, float *loss, float *probs, const float *logits,
                       const int32_t *labels, int N, int K) {
    int err = bt_xent_check(labels, N, K);
    if (err) return err;
    double *row = bt_arena_get(ws, (size_t)N * sizeof(double)); /* (N) per-row losses */
    if (!row) return BT_ENOMEM;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        float *p = probs + (size_t)n * K;
        /* subtracting the row max keeps exp from overflowing */
        float mx = z[0];
        for (int j = 1; j < K; j++) mx = z[j] > mx ? z[j] : mx;
        double s = 0;
        for (int j = 0; j < K; j++) {
            p[j] = expf(z[j] - mx);
            s += p[j];
        }
        const float inv = (float)(1.0 / s);
        for (int j = 0; j < K; j++) p[j] *= inv;
        row[n] = log(s) - ((double)z[labels[n]] - mx);
    }
    double total = 0;
    for (int n = 0; n < N; n++) total += row[n];
    *loss = (float)(total / N);
    return BT_OK;
}

/* dlogits, probs (N,K) ; labels (N) checked by the forward. */
void bt_xent_backward(float *dlogits, const float *probs, const int32_t *labels, float dloss,
                      int N, int K) {
    const float scale = dloss / (float)N;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int n = 0; n < N; n++) {
        float *d = dlogits + (size_t)n * K;
        const float *p = probs + (size_t)n * K;
        for (int j = 0; j < K; j++) d[j] += scale * (p[j] - (j == labels[n] ? 1.0f : 0.0f));
    }
}
