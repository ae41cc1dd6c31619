/* Training checkpoints: everything `barlow pretrain` needs to continue a run so that the
 * resumed run ends bit-identical to an uninterrupted one, in one safetensors file.
 *
 * Tensors: the parameters and BN running statistics under their reference names, and the
 * LARS momentum as "momentum.<name>" (bt_model_write with BT_IO_PARAMS|BT_IO_BUFS|
 * BT_IO_MOMENTUM). __metadata__ (all strings):
 *   format "barlow-checkpoint", version "1",
 *   epoch        epoch to continue in (0-based),
 *   next_batch   batch index within that epoch to continue from,
 *   step         global steps done (the next step's index; the LR schedule's step),
 *   steps_per_epoch, seed, num_batches_tracked (every BN's counter: they move together),
 *   config       the run's resolved configuration (JSON object text),
 *   checksum     16 hex digits: XXH64 chained (h = bt_checksum64(bytes, n, h), from h = 0)
 *                over every tensor in name order — its name with the NUL, then int64
 *                {dtype, ndim, shape[8] zero-padded}, then its bytes — and then over every other
 *                metadata entry in key order (key and value, each with its NUL). So a flipped
 *                byte in data, names, shapes, the step or the configuration is detected, and
 *                the sum does not depend on how the writer lays the file out.
 * The checkpoint is written atomically (bt_st_writer_save), so a crash or a second signal
 * leaves either the previous file or the new one, never a torn one. */
#ifndef BARLOW_CHECKPOINT_H
#define BARLOW_CHECKPOINT_H
#include <stdint.h>
#include "barlow/model.h"
#include "barlow/safetensors.h"

#define BT_CKPT_FORMAT "barlow-checkpoint"
#define BT_CKPT_VERSION 1

typedef struct {
    int epoch;
    long next_batch;
    long step;
    long steps_per_epoch;
    uint64_t seed;
    int64_t bn_batches;
    const char *config; /* JSON text; on load it points into the open file (valid until close) */
} bt_ckpt_state;

/* Writes model m (params, running stats, momentum; bn_batches taken from m) and st to path,
 * atomically. Errors name the path. */
int bt_ckpt_save(const char *path, const bt_model *m, const bt_ckpt_state *st);

/* Opens a checkpoint and checks it before anything is trusted: format and version, every
 * metadata field present and well-formed, and the checksum over the tensor bytes (a mismatch
 * is BT_EFORMAT "<path>: checksum mismatch ..."). On success *f is open and st filled
 * (st->config points into *f). */
int bt_ckpt_open(bt_st_file **f, bt_ckpt_state *st, const char *path);

/* Loads the tensors of an opened checkpoint into m (strict: every tensor must match the
 * model's names and shapes) and sets m->bn_batches from st. */
int bt_ckpt_restore(bt_model *m, const bt_st_file *f, const bt_ckpt_state *st);

/* Writes the backbone alone (parameters and running statistics under torchvision names, plus
 * an I64 "<bn>.num_batches_tracked" per BatchNorm as torchvision's state_dict has), with
 * metadata arch and config (may be NULL), atomically. */
int bt_ckpt_save_backbone(const char *path, const bt_model *m, const char *config);

/* The checksum described above, over the tensors of an open file. */
uint64_t bt_ckpt_file_checksum(const bt_st_file *f);

#endif
