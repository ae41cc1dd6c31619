/* Weighted kNN classification of frozen features (InstDisc / solo-learn): similarities by
 * sgemm over blocks of test rows, a bounded heap per row for the k nearest train rows, and
 * exp(s/T)-weighted class votes. */
#include "barlow/gemm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/error.h"
#include "barlow/eval.h"

void bt_features_normalize(float *x, size_t n, int dim) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)n; i++) {
        float *r = x + (size_t)i * dim;
        double s = 0;
        for (int j = 0; j < dim; j++) s += (double)r[j] * r[j];
        if (s > 0) {
            float inv = (float)(1.0 / sqrt(s));
            for (int j = 0; j < dim; j++) r[j] *= inv;
        }
    }
}

/* Heap entry ordering: a is "worse" than b when its similarity is lower, or equal with a
 * higher train index (so ties keep the lower index, a deterministic rule). */
static int worse(float sa, long ia, float sb, long ib) {
    return sa < sb || (sa == sb && ia > ib);
}

/* Min-heap (worst at the root) of size k over (sim, idx). */
static void sift_down(float *hs, long *hi, int k, int pos) {
    for (;;) {
        int l = 2 * pos + 1, r = l + 1, w = pos;
        if (l < k && worse(hs[l], hi[l], hs[w], hi[w])) w = l;
        if (r < k && worse(hs[r], hi[r], hs[w], hi[w])) w = r;
        if (w == pos) return;
        float ts = hs[w]; hs[w] = hs[pos]; hs[pos] = ts;
        long ti = hi[w]; hi[w] = hi[pos]; hi[pos] = ti;
        pos = w;
    }
}

int bt_knn_eval(double *top1, double *top5, const float *train_feat,
                const int32_t *train_labels, size_t ntrain, const float *test_feat,
                const int32_t *test_labels, size_t ntest, int dim, int nclasses, int k,
                float T) {
    if (ntrain < 1 || ntest < 1 || dim < 1 || nclasses < 1 || k < 1 || !(T > 0))
        return bt_fail(BT_EINVAL, "knn: bad arguments (ntrain %zu, ntest %zu, dim %d, "
                       "classes %d, k %d, T %g)", ntrain, ntest, dim, nclasses, k, (double)T);
    for (size_t i = 0; i < ntrain; i++)
        if (train_labels[i] < 0 || train_labels[i] >= nclasses)
            return bt_fail(BT_EINVAL, "knn: train label %d of item %zu outside [0, %d)",
                           (int)train_labels[i], i, nclasses);
    for (size_t i = 0; i < ntest; i++)
        if (test_labels[i] < 0 || test_labels[i] >= nclasses)
            return bt_fail(BT_EINVAL, "knn: test label %d of item %zu outside [0, %d)",
                           (int)test_labels[i], i, nclasses);
    if ((size_t)k > ntrain) k = (int)ntrain;

    /* Block of test rows so the similarity block stays near 64 MB. */
    size_t blk = ((size_t)16 << 20) / ntrain;
    if (blk < 1) blk = 1;
    if (blk > 1024) blk = 1024;
    if (blk > ntest) blk = ntest;
    float *sim = bt_alloc(blk * ntrain * sizeof(float)); /* (blk, ntrain) */
    if (!sim) return BT_ENOMEM;
    long c1 = 0, c5 = 0;
    int err = 0;
    for (size_t t0 = 0; t0 < ntest; t0 += blk) {
        int nb = (int)(ntest - t0 < blk ? ntest - t0 : blk);
        bt_sgemm(BT_NOTRANS, BT_TRANS, nb, (int)ntrain, dim, 1.0f,
                    test_feat + t0 * dim, dim, train_feat, dim, 0.0f, sim, (int)ntrain);
#pragma omp parallel reduction(+ : c1, c5)
        {
            float *hs = malloc((size_t)k * sizeof(float)); /* (k) heap similarities */
            long *hi = malloc((size_t)k * sizeof(long));    /* (k) heap train indices */
            double *score = malloc((size_t)nclasses * sizeof(double)); /* (nclasses) */
            int ok = hs && hi && score;
            if (!ok) {
#pragma omp atomic write
                err = 1;
            }
            /* Every thread reaches the worksharing loop (a thread without buffers skips its
             * rows; the error is reported after the region). */
#pragma omp for schedule(dynamic, 4)
            for (int r = 0; r < nb; r++) {
                if (!ok) continue;
                const float *s = sim + (size_t)r * ntrain;
                for (int j = 0; j < k; j++) { hs[j] = s[j]; hi[j] = j; }
                for (int j = k / 2 - 1; j >= 0; j--) sift_down(hs, hi, k, j);
                for (size_t j = (size_t)k; j < ntrain; j++)
                    if (worse(hs[0], hi[0], s[j], (long)j)) {
                        hs[0] = s[j];
                        hi[0] = (long)j;
                        sift_down(hs, hi, k, 0);
                    }
                memset(score, 0, (size_t)nclasses * sizeof(double));
                for (int j = 0; j < k; j++)
                    score[train_labels[hi[j]]] += exp((double)hs[j] / (double)T);
                int y = test_labels[t0 + r], rank = 0;
                for (int c = 0; c < nclasses; c++)
                    if (score[c] > score[y] || (score[c] == score[y] && c < y)) rank++;
                c1 += rank < 1;
                c5 += rank < 5;
            }
            free(hs);
            free(hi);
            free(score);
        }
        if (err) break;
    }
    bt_free(sim);
    if (err) return bt_fail(BT_ENOMEM, "knn: out of memory");
    *top1 = 100.0 * (double)c1 / (double)ntest;
    *top5 = 100.0 * (double)c5 / (double)ntest;
    return BT_OK;
}
