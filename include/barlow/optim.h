/* The optimizer of the reference (facebookresearch/barlowtwins main.py): LARS with weight
 * decay and the LARS trust ratio applied only to tensors with ndim != 1 (conv/linear weights),
 * never to biases and BN parameters (weight_decay_filter = lars_adaptation_filter = True),
 * and its learning-rate schedule (linear warm-up, then cosine decay to 1/1000 of the peak).
 *
 * Parameters, gradients and momentum are three buffers sharing one bt_tensor_table layout.
 * Group 0 (ndim != 1) uses lr_weights, group 1 (ndim == 1) uses lr_biases. */
#ifndef BARLOW_OPTIM_H
#define BARLOW_OPTIM_H
#include "barlow/tensor.h"

typedef struct {
    double lr_weights, lr_biases; /* current rates of the two groups (see bt_lr_schedule) */
    double weight_decay;          /* default 1e-6 */
    double momentum;              /* default 0.9 */
    double eta;                   /* trust coefficient, default 0.001 */
} bt_lars_cfg;

/* Reference defaults; both rates 0 (the reference builds LARS with lr=0 and sets the rates
 * from the schedule before every step). */
void bt_lars_default(bt_lars_cfg *c);

/* One LARS step over every tensor of `tab`:
 *   dp = g + wd*p                     (ndim != 1 only)
 *   dp *= eta*||p||/||dp||            (ndim != 1, when both norms > 0)
 *   mu = momentum*mu + dp;  p -= lr*mu
 * params, mom (tab->total) updated in place; grads (tab->total) read only. Norms are summed
 * in double over a fixed chunking, so the result does not depend on the thread count. */
void bt_lars_step(float *params, const float *grads, float *mom, const bt_tensor_table *tab,
                  const bt_lars_cfg *cfg);

/* Plain per-element version of bt_lars_step in double precision, for tests. */
void bt_lars_step_ref_f64(double *params, const double *grads, double *mom,
                          const bt_tensor_table *tab, const bt_lars_cfg *cfg);

/* The reference's adjust_learning_rate at global step `step` (0-based, counted over all
 * epochs): base = batch_size/256; for step < warm = warmup_epochs*steps_per_epoch,
 * lr = base*step/warm; after it, lr = base*q + 0.001*base*(1-q) with
 * q = (1 + cos(pi*(step-warm)/(epochs*steps_per_epoch - warm)))/2.
 * Returns lr*base_lr_weights and lr*base_lr_biases (the reference's --learning-rate-weights
 * 0.2 and --learning-rate-biases 0.0048). If no steps remain after the warm-up, the end rate. */
void bt_lr_schedule(double *lr_weights, double *lr_biases, long step, long steps_per_epoch,
                    int epochs, int warmup_epochs, int batch_size, double base_lr_weights,
                    double base_lr_biases);

#endif
