/* LARS optimizer and learning-rate schedule of the reference (see include/barlow/optim.h). */
#include "barlow/optim.h"
#include "barlow/scratch.h"
#include <math.h>
#include <stddef.h>

/* Norms are summed over this many fixed chunks of a tensor (then added in order), so the
 * trust ratio, and hence every parameter bit, is the same whatever the thread count. */
#define BT_LARS_CHUNKS 256
/* Tensors smaller than this are updated by one thread. */
#define BT_LARS_PAR_MIN 32768

void bt_lars_default(bt_lars_cfg *c) {
    c->lr_weights = 0;
    c->lr_biases = 0;
    c->weight_decay = 1e-6;
    c->momentum = 0.9;
    c->eta = 0.001;
}

/* ||p||^2 and ||g + wd*p||^2 of one tensor (n), dp rounded to float as PyTorch forms it. */
static void bt_lars_norms(double *pp, double *uu, const float *p, const float *g, float wd,
                          size_t n) {
    double sp[BT_LARS_CHUNKS], su[BT_LARS_CHUNKS];
    size_t chunk = (n + BT_LARS_CHUNKS - 1) / BT_LARS_CHUNKS;
#pragma omp parallel for schedule(static) num_threads(bt_threads()) if (n >= BT_LARS_PAR_MIN)
    for (int c = 0; c < BT_LARS_CHUNKS; c++) {
        size_t i0 = (size_t)c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        double a = 0, b = 0;
        for (size_t i = i0; i < i1; i++) {
            float d = g[i] + wd * p[i];
            a += (double)p[i] * p[i];
            b += (double)d * d;
        }
        sp[c] = a;
        su[c] = b;
    }
    double a = 0, b = 0;
    for (int c = 0; c < BT_LARS_CHUNKS; c++) {
        a += sp[c];
        b += su[c];
    }
    *pp = a;
    *uu = b;
}

void bt_lars_step(float *params, const float *grads, float *mom, const bt_tensor_table *tab,
                  const bt_lars_cfg *cfg) {
    const float m = (float)cfg->momentum;
    for (int t = 0; t < tab->n; t++) {
        const bt_tensor_info *e = &tab->t[t];
        float *p = params + e->offset, *mu = mom + e->offset;
        const float *g = grads + e->offset;
        size_t n = e->numel;
        if (e->ndim == 1) { /* biases and BN parameters: plain momentum SGD */
            const float lr = (float)cfg->lr_biases;
#pragma omp parallel for schedule(static) num_threads(bt_threads()) if (n >= BT_LARS_PAR_MIN)
            for (size_t i = 0; i < n; i++) {
                float v = m * mu[i] + g[i];
                mu[i] = v;
                p[i] -= lr * v;
            }
            continue;
        }
        const float wd = (float)cfg->weight_decay, lr = (float)cfg->lr_weights;
        double pp, uu;
        bt_lars_norms(&pp, &uu, p, g, wd, n);
        double pn = sqrt(pp), un = sqrt(uu);
        const float q = (float)(pn > 0 && un > 0 ? cfg->eta * pn / un : 1.0);
#pragma omp parallel for schedule(static) num_threads(bt_threads()) if (n >= BT_LARS_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float d = (g[i] + wd * p[i]) * q;
            float v = m * mu[i] + d;
            mu[i] = v;
            p[i] -= lr * v;
        }
    }
}

void bt_lars_step_ref_f64(double *params, const double *grads, double *mom,
                          const bt_tensor_table *tab, const bt_lars_cfg *cfg) {
    for (int t = 0; t < tab->n; t++) {
        const bt_tensor_info *e = &tab->t[t];
        double *p = params + e->offset, *mu = mom + e->offset;
        const double *g = grads + e->offset;
        int filtered = e->ndim == 1;
        double wd = filtered ? 0 : cfg->weight_decay, q = 1;
        if (!filtered) {
            double pp = 0, uu = 0;
            for (size_t i = 0; i < e->numel; i++) {
                double d = g[i] + wd * p[i];
                pp += p[i] * p[i];
                uu += d * d;
            }
            if (pp > 0 && uu > 0) q = cfg->eta * sqrt(pp) / sqrt(uu);
        }
        double lr = filtered ? cfg->lr_biases : cfg->lr_weights;
        for (size_t i = 0; i < e->numel; i++) {
            mu[i] = cfg->momentum * mu[i] + (g[i] + wd * p[i]) * q;
            p[i] -= lr * mu[i];
        }
    }
}

void bt_lr_schedule(double *lr_weights, double *lr_biases, long step, long steps_per_epoch,
                    int epochs, int warmup_epochs, int batch_size, double base_lr_weights,
                    double base_lr_biases) {
    long max_steps = (long)epochs * steps_per_epoch;
    long warmup_steps = (long)warmup_epochs * steps_per_epoch;
    double base = batch_size / 256.0, lr;
    if (step < warmup_steps) {
        lr = base * (double)step / (double)warmup_steps;
    } else {
        double end = base * 0.001;
        long s = step - warmup_steps, m = max_steps - warmup_steps;
        double q = m > 0 ? 0.5 * (1 + cos(M_PI * (double)s / (double)m)) : 0;
        lr = base * q + end * (1 - q);
    }
    *lr_weights = lr * base_lr_weights;
    *lr_biases = lr * base_lr_biases;
}
