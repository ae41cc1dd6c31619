/* The threaded batch loader: worker threads decode and augment images into a ring of
 * preallocated batch buffers while the caller trains. Every random draw is keyed by
 * (seed, epoch, dataset index, view), and the epoch order by (seed, epoch), so batches are
 * bit-identical whatever the number of threads or ring size, and after a mid-epoch resume.
 *
 * An item that fails to decode is warned about once (one stderr line naming it), counted in
 * its batch's `skipped`, and its slot is filled with the next decodable item in the epoch
 * order (positions p+1, p+2, ... wrapping around), augmented with that item's own keys: the
 * substitution depends only on the data and the epoch, never on the thread schedule. */
#ifndef BARLOW_LOADER_H
#define BARLOW_LOADER_H
#include <stdint.h>
#include "barlow/augment.h"
#include "barlow/dataset.h"

enum { BT_LOAD_TWO_VIEWS = 0, BT_LOAD_ONE_VIEW = 1, BT_LOAD_EVAL = 2 };

typedef struct {
    int batch;          /* images per batch (this rank's share when world > 1) */
    int threads;        /* decode/augment worker threads (>= 1) */
    int ring;           /* batches in flight (>= 1), default 3 */
    uint64_t seed;
    int mode;           /* BT_LOAD_TWO_VIEWS (pretraining), BT_LOAD_ONE_VIEW (view 0's
                           augmentation, linear eval training), BT_LOAD_EVAL (eval transform) */
    int shuffle;        /* seeded shuffle per epoch, else dataset order */
    int drop_last;      /* drop the incomplete last global batch */
    int rank, world;    /* rank takes [rank*batch, (rank+1)*batch) of each global batch of
                           world*batch; without drop_last the last one may be short or empty
                           on some ranks, but every rank sees the same number of batches */
    /* Where the ring's image buffers (x[0], x[1]) come from: NULL = bt_alloc / bt_free; a
     * backend passes its host_alloc (pinned memory on a GPU) through these hooks. */
    void *(*slot_alloc)(void *ctx, size_t bytes);
    void (*slot_free)(void *ctx, void *p);
    void *slot_ctx;
    /* 0: a batch stays valid until the next bt_loader_next (which releases it). 1: it stays
     * valid until the caller hands it back with bt_loader_release, in the order received, so
     * an asynchronous copy may still read it after the next call; at most `ring` held, and
     * bt_loader_start_epoch releases them all. */
    int explicit_release;
} bt_loader_cfg;

typedef struct {
    int n;              /* images in this batch (<= cfg.batch) */
    float *x[2];        /* (n, 3, S, S) each; x[1] only in BT_LOAD_TWO_VIEWS, else NULL */
    int32_t *labels;    /* (n) */
    int64_t *index;     /* (n) dataset index of each image (after substitution) */
    int skipped;        /* slots whose own item failed to decode and was substituted */
} bt_batch;

typedef struct bt_loader bt_loader;

/* Starts the workers; ds and preset must outlive the loader. */
int bt_loader_new(bt_loader **ld, const bt_dataset *ds, const bt_aug_preset *preset,
                  const bt_loader_cfg *cfg);
long bt_loader_batches_per_epoch(const bt_loader *ld);
/* Side S of the batch images (view v's size, or the eval size). */
int bt_loader_image_size(const bt_loader *ld, int v);
/* Begins epoch `epoch` at batch first_batch (> 0: resume mid-epoch); abandons any batches
 * of the previous epoch still in flight. */
int bt_loader_start_epoch(bt_loader *ld, int epoch, long first_batch);
/* Returns 1 with the next batch, 0 at the end of the epoch, < 0 on error (message set).
 * The batch stays valid until the next call, or with cfg.explicit_release until it is
 * released. */
int bt_loader_next(bt_loader *ld, const bt_batch **b);
/* With cfg.explicit_release: the caller is done with b (the oldest batch it holds), whose
 * slot the workers may then refill. BT_EINVAL for a batch not held or out of order. */
int bt_loader_release(bt_loader *ld, const bt_batch *b);
void bt_loader_free(bt_loader *ld);

#endif
