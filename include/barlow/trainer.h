/* The Barlow Twins training step as a library object: bt_trainer owns the model and its
 * optimiser state, and runs on a backend and a communicator it is given. One call of
 * bt_trainer_step does what the reference's training loop body does: the learning rates of
 * this step from the schedule, both views forward, the loss, both views backward, the
 * gradient all-reduce across ranks (in buckets, overlapping the backward), the non-finite
 * check, and the LARS step. Options, logging, signals and checkpoint scheduling stay with the
 * caller (src/cli/cmd_pretrain.c).
 *
 * The batch shape reaches the model only here: bt_trainer_new prepares the model for
 * (cfg->batch, cfg->image_size, cfg->image_size) once, which sizes the backend's arenas and
 * makes every node's plan. */
#ifndef BARLOW_TRAINER_H
#define BARLOW_TRAINER_H
#include <stdint.h>
#include "barlow/backend.h"
#include "barlow/loss.h"
#include "barlow/model.h"
#include "barlow/optim.h"

struct bt_comm;

typedef struct {
    const char *arch, *projector; /* bt_model_cfg_parse syntax */
    int batch;                    /* this rank's batch N (the global batch / ranks) */
    int global_batch;             /* the reference's --batch-size: the schedule's base rate */
    int image_size;               /* H = W of both views */
    uint64_t seed;                /* initialisation */
    float lambd;                  /* off-diagonal weight */
    int loss_form;                /* BT_LOSS_AUTO / DIRECT / GRAM */
    double lr_weights, lr_biases; /* base rates (the reference's 0.2 and 0.0048) */
    double weight_decay, eta;     /* LARS */
    int epochs, warmup_epochs;    /* the schedule */
    long steps_per_epoch;
    size_t bucket_floats;         /* gradient all-reduce bucket (0: 1 Mi floats) */
} bt_trainer_cfg;

typedef struct {
    bt_model *m;                  /* owned; its buffers are the backend's */
    bt_backend *be;               /* not owned */
    const struct bt_comm *comm;   /* not owned; NULL = one process */
    bt_trainer_cfg cfg;
    bt_lars_cfg lars;             /* rates of the last step in lars.lr_weights/lr_biases */
    long step;                    /* global steps done: the next step's schedule index */
} bt_trainer;

/* Makes the model on `be`, attaches `comm`, prepares it for the batch shape and initialises
 * it from cfg->seed (torchvision's scheme). Errors name the offending option. */
int bt_trainer_new(bt_trainer **t, bt_backend *be, const struct bt_comm *comm,
                   const bt_trainer_cfg *cfg);
void bt_trainer_free(bt_trainer *t);

/* Every rank continues from rank 0's state: parameters, momentum, BN statistics, the BN
 * batch counter and the step, plus the caller's `n` longs in `extra` (its position in the
 * data). A no-op on one rank. Collective: every rank calls it. */
int bt_trainer_broadcast(bt_trainer *t, long *extra, int n);

/* One training step on views x1, x2 (N, 3, H, W) in host memory. On success the loss is in
 * *res and t->step has advanced. BT_ENUM: the loss is not finite (nothing was updated; the
 * caller stops with its last good checkpoint). */
int bt_trainer_step(bt_trainer *t, const float *x1, const float *x2, bt_loss_result *res);

#endif
