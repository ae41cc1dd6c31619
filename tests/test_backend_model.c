/* The model and the trainer on a backend whose memory is NOT the host's view of it: a
 * "staged" CPU backend (the CPU table with host_memory = 0), so the model keeps a separate host
 * image and every host access must go through the named copies (bt_model_to_host /
 * to_device, copy_features). Training, checkpoints, reads and features on it must be
 * bit-identical to the plain CPU backend: a missing copy shows as stale host data. This is
 * the discipline a GPU backend relies on, checked without a GPU. */
#include <stdlib.h>
#include <string.h>
#include "barlow/backend.h"
#include "barlow/checkpoint.h"
#include "barlow/error.h"
#include "barlow/model.h"
#include "barlow/scratch.h"
#include "barlow/train.h"
#include "barlow/trainer.h"
#include "testutil.h"

#define N 4
#define S 16
#define STEPS 3

static bt_backend_ops staged_ops;
static bt_backend staged;

static void staged_destroy(bt_backend *be) { (void)be; }

static bt_backend *make_staged(const bt_backend *cpu) {
    staged_ops = *cpu->ops;
    staged_ops.name = "cpu-staged";
    staged_ops.destroy = staged_destroy;
    staged.ops = &staged_ops;
    staged.cfg = cpu->cfg;
    staged.host_memory = 0; /* the model must copy */
    staged.impl = cpu->impl; /* the CPU table's state (its arena) */
    return &staged;
}

static bt_trainer *trainer(bt_backend *be) {
    bt_trainer_cfg c = {.arch = "resnet18-cifar:w=0.125", .projector = "32-32", .batch = N,
                        .global_batch = N, .image_size = S, .seed = 5, .lambd = 0.0051f,
                        .loss_form = BT_LOSS_AUTO, .lr_weights = 0.2, .lr_biases = 0.0048,
                        .weight_decay = 1e-6, .eta = 0.001, .epochs = 10, .warmup_epochs = 1,
                        .steps_per_epoch = 2};
    bt_trainer *t = NULL;
    CHECK(bt_trainer_new(&t, be, NULL, &c) == BT_OK, "trainer on %s: %s", be->ops->name, bt_error());
    return t;
}

/* Host images of every group equal the CPU model's buffers, byte for byte. */
static int same_state(const bt_model *cpu, const bt_model *st, const char *when) {
    CHECK(bt_model_to_host(st, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_GRADS | BT_IO_MOMENTUM) == BT_OK,
          "to_host: %s", bt_error());
    size_t np = cpu->params.total * sizeof(float), nb = cpu->bufs.total * sizeof(float);
    int same = !memcmp(cpu->p, st->host.p, np) && !memcmp(cpu->mom, st->host.mom, np) &&
               !memcmp(cpu->g, st->host.g, np) && !memcmp(cpu->b, st->host.b, nb) &&
               cpu->bn_batches == st->bn_batches;
    CHECK(same, "%s: the staged model differs from the CPU model", when);
    return same;
}

static void test_staged_training_and_io(void) {
    bt_backend *cpu = NULL;
    CHECK(bt_backend_cpu_new(&cpu, NULL) == BT_OK, "%s", bt_error());
    if (!cpu) return;
    bt_backend *st = make_staged(cpu);
    bt_trainer *a = trainer(cpu), *b = trainer(st);
    if (!a || !b) goto done;
    CHECK(b->m->host.p != b->m->p, "staged model without a separate host image");
    CHECK(a->m->host.p == a->m->p, "CPU model with a separate host image");
    same_state(a->m, b->m, "after initialisation");

    size_t nx = (size_t)N * 3 * S * S;
    float *x = tu_xcalloc(2 * nx, sizeof(float));
    tu_rng r = {77};
    for (int s = 0; s < STEPS; s++) {
        tu_fill_f32(x, 2 * nx, &r, 1.0);
        bt_loss_result ra, rb;
        CHECK(bt_trainer_step(a, x, x + nx, &ra) == BT_OK, "cpu step %d: %s", s, bt_error());
        CHECK(bt_trainer_step(b, x, x + nx, &rb) == BT_OK, "staged step %d: %s", s, bt_error());
        CHECK(ra.loss == rb.loss, "step %d: loss %.9g vs %.9g", s, ra.loss, rb.loss);
    }
    same_state(a->m, b->m, "after the steps");

    /* features through the named copy */
    float *fa = tu_xcalloc((size_t)N * 64, sizeof(float)), *fb = tu_xcalloc((size_t)N * 64, sizeof(float));
    int D = b->m->cfg.feat_dim;
    CHECK(bt_model_forward(a->m, 0, x, 0, 1) == BT_OK && bt_model_forward(b->m, 0, x, 0, 1) == BT_OK,
          "eval forward: %s", bt_error());
    CHECK(D <= 64 && bt_model_copy_features(a->m, 0, fa, N, 0) == BT_OK &&
              bt_model_copy_features(b->m, 0, fb, N, 0) == BT_OK,
          "copy_features: %s", bt_error());
    CHECK(!memcmp(fa, fb, (size_t)N * D * sizeof(float)), "features differ");

    /* a checkpoint written from the staged model, read into a fresh staged model */
    char path[1200];
    snprintf(path, sizeof path, "%s/staged.safetensors", tu_tmpdir());
    bt_ckpt_state cs = {.epoch = 1, .next_batch = 1, .step = STEPS, .steps_per_epoch = 2, .seed = 5,
                        .config = "{}"};
    CHECK(bt_ckpt_save(path, b->m, &cs) == BT_OK, "save: %s", bt_error());
    bt_trainer *c = trainer(st);
    bt_st_file *f = NULL;
    bt_ckpt_state got;
    if (c && bt_ckpt_open(&f, &got, path) == BT_OK) {
        CHECK(bt_ckpt_restore(c->m, f, &got) == BT_OK, "restore: %s", bt_error());
        /* gradients are not in checkpoints: compare the rest */
        bt_model_to_host(c->m, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_MOMENTUM);
        size_t np = a->m->params.total * sizeof(float);
        CHECK(!memcmp(a->m->p, c->m->host.p, np) && !memcmp(a->m->mom, c->m->host.mom, np) &&
                  !memcmp(a->m->b, c->m->host.b, a->m->bufs.total * sizeof(float)),
              "checkpoint round trip through the staged backend differs");
        /* the device side too: one more step on both gives the same loss */
        tu_fill_f32(x, 2 * nx, &r, 1.0);
        bt_loss_result ra, rc;
        c->step = a->step;
        CHECK(bt_trainer_step(a, x, x + nx, &ra) == BT_OK && bt_trainer_step(c, x, x + nx, &rc) == BT_OK,
              "step after restore: %s", bt_error());
        CHECK(ra.loss == rc.loss, "after restore: loss %.9g vs %.9g", ra.loss, rc.loss);
        bt_st_close(f);
    } else {
        CHECK(0, "open: %s", bt_error());
    }
    bt_trainer_free(c);
    free(fa);
    free(fb);
    free(x);
done:
    bt_trainer_free(a);
    bt_trainer_free(b);
    bt_backend_free(cpu);
}

int main(void) {
    bt_set_threads(1);
    TEST_RUN(test_staged_training_and_io);
    bt_scratch_release();
    return tu_finish();
}
