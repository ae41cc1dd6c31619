/* The linear classifier of evaluate.py (nn.Linear with bias, N(0, 0.01) init, mean
 * cross-entropy, torch SGD with momentum and weight decay, per-epoch cosine schedule), used by
 * the linear probe on frozen features and as the head of semi-supervised fine-tuning. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/error.h"
#include "barlow/eval.h"
#include "barlow/ops.h"
#include "barlow/rng.h"

enum { PROBE_CAP = 1024 }; /* rows per forward chunk in bt_probe_eval */

void bt_sgd_step(float *p, const float *g, float *mom, size_t n, double lr, double momentum,
                 double wd) {
    const float flr = (float)lr, fmu = (float)momentum, fwd = (float)wd;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < (long)n; i++) {
        float d = g[i] + fwd * p[i];
        mom[i] = fmu * mom[i] + d;
        p[i] -= flr * mom[i];
    }
}

double bt_cosine_lr(double base, int epoch, int epochs) {
    if (epochs < 1) return base;
    return base * (1.0 + cos(M_PI * (double)epoch / (double)epochs)) / 2.0;
}

void bt_probe_free(bt_probe *p) {
    if (!p) return;
    bt_free(p->w);
    bt_free(p->b);
    bt_free(p->gw);
    bt_free(p->gb);
    bt_free(p->mw);
    bt_free(p->mb);
    bt_free(p->logits);
    bt_free(p->probs);
    free(p);
}

/* Grows the logits/probs scratch to n rows. */
static int probe_reserve(bt_probe *p, int n) {
    if (n <= p->cap) return BT_OK;
    bt_free(p->logits);
    bt_free(p->probs);
    p->logits = bt_alloc((size_t)n * p->out * sizeof(float));
    p->probs = bt_alloc((size_t)n * p->out * sizeof(float));
    if (!p->logits || !p->probs) {
        p->cap = 0;
        return BT_ENOMEM;
    }
    p->cap = n;
    return BT_OK;
}

int bt_probe_new(bt_probe **out, int in, int nout, uint64_t seed) {
    *out = NULL;
    if (in < 1 || nout < 1) return bt_fail(BT_EINVAL, "probe: bad size %d -> %d", in, nout);
    bt_probe *p = calloc(1, sizeof *p);
    if (!p) return bt_fail(BT_ENOMEM, "out of memory");
    p->in = in;
    p->out = nout;
    size_t nw = (size_t)in * nout;
    p->w = bt_alloc(nw * sizeof(float));
    p->gw = bt_calloc(nw * sizeof(float));
    p->mw = bt_calloc(nw * sizeof(float));
    p->b = bt_calloc((size_t)nout * sizeof(float));
    p->gb = bt_calloc((size_t)nout * sizeof(float));
    p->mb = bt_calloc((size_t)nout * sizeof(float));
    if (!p->w || !p->gw || !p->mw || !p->b || !p->gb || !p->mb || probe_reserve(p, 256)) {
        bt_probe_free(p);
        return BT_ENOMEM;
    }
    bt_rng r = bt_rng_key(seed, 0, 0, 0x11ea7);
    for (size_t i = 0; i < nw; i += 2) {
        /* Box-Muller: two normals per pair of uniforms. */
        double u1 = 1.0 - bt_rng_uniform(&r), u2 = bt_rng_uniform(&r);
        double rad = sqrt(-2.0 * log(u1));
        p->w[i] = (float)(0.01 * rad * cos(2 * M_PI * u2));
        if (i + 1 < nw) p->w[i + 1] = (float)(0.01 * rad * sin(2 * M_PI * u2));
    }
    *out = p;
    return BT_OK;
}

int bt_probe_step(bt_probe *p, const float *x, const int32_t *labels, int n, double lr,
                  double momentum, double wd, float *loss, float *dx) {
    if (n < 1) return bt_fail(BT_EINVAL, "probe: empty batch");
    int rc = probe_reserve(p, n);
    if (rc != BT_OK) return rc;
    const int I = p->in, O = p->out;
    float l;
    bt_linear_forward(p->logits, x, p->w, p->b, n, I, O); /* (n, O) */
    if ((rc = bt_xent_forward(&l, p->probs, p->logits, labels, n, O)) != BT_OK) return rc;
    memset(p->logits, 0, (size_t)n * O * sizeof(float)); /* reused as dlogits (n, O) */
    bt_xent_backward(p->logits, p->probs, labels, 1.0f, n, O);
    memset(p->gw, 0, (size_t)O * I * sizeof(float));
    memset(p->gb, 0, (size_t)O * sizeof(float));
    bt_linear_backward(dx, p->gw, p->gb, p->logits, x, p->w, n, I, O);
    bt_sgd_step(p->w, p->gw, p->mw, (size_t)O * I, lr, momentum, wd);
    bt_sgd_step(p->b, p->gb, p->mb, (size_t)O, lr, momentum, wd);
    if (loss) *loss = l;
    return BT_OK;
}

int bt_probe_eval(bt_probe *p, const float *x, const int32_t *labels, size_t n, long *correct1,
                  long *correct5) {
    const int I = p->in, O = p->out;
    int rc = probe_reserve(p, PROBE_CAP);
    if (rc != BT_OK) return rc;
    long c1 = 0, c5 = 0;
    for (size_t r0 = 0; r0 < n; r0 += PROBE_CAP) {
        int nb = (int)(n - r0 < PROBE_CAP ? n - r0 : PROBE_CAP);
        bt_linear_forward(p->logits, x + r0 * I, p->w, p->b, nb, I, O);
        for (int r = 0; r < nb; r++) {
            int y = labels[r0 + r];
            if (y < 0 || y >= O)
                return bt_fail(BT_EINVAL, "probe: label %d of item %zu outside [0, %d)", y,
                               r0 + r, O);
            const float *z = p->logits + (size_t)r * O;
            int rank = 0;
            for (int c = 0; c < O; c++) rank += z[c] > z[y] || (z[c] == z[y] && c < y);
            if (z[y] != z[y]) rank = O; /* a NaN logit is never a correct prediction */
            c1 += rank < 1;
            c5 += rank < 5;
        }
    }
    *correct1 = c1;
    *correct5 = c5;
    return BT_OK;
}
