/* Run under `mpirun -np 2`: data-parallel training on 2 ranks with global batch 2B equals one
 * process with batch 2B. Rank 0 also runs the single-process reference (comm = NULL) on the
 * whole batch, then compares the loss at every step and the weights after the last one.
 * usage: mpi_equiv direct|gram|auto [steps] */
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/scratch.h"
#include "barlow/train.h"
#include "../testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define B 8  /* per-rank batch */
#define H 16

static int steps = 5, form = BT_LOSS_AUTO;
static const char *proj = "32-32";
static bt_comm *comm;

/* Runs `steps` LARS steps on rows [row0, row0+n) of each step's global batch. */
static bt_model *train(const bt_comm *c, int row0, int n, const float *x1, const float *x2,
                       double *losses, int *form_used) {
    bt_model *m = NULL;
    if (bt_model_new(&m, "resnet18-cifar:w=0.125", proj) != BT_OK) {
        fprintf(stderr, "%s\n", bt_error());
        exit(1);
    }
    bt_model_init(m, 42);
    m->comm = c;
    m->grad_bucket = 4096; /* small buckets: the tiny model's all-reduce is split and overlapped */
    if (bt_model_prepare(m, n, H, H) != BT_OK) exit(1);
    size_t img = 3 * H * H, g = (size_t)2 * B * img;
    bt_lars_cfg cfg;
    bt_lars_default(&cfg);
    for (int s = 0; s < steps; s++) {
        bt_loss_result res;
        bt_lr_schedule(&cfg.lr_weights, &cfg.lr_biases, s + 1, 1, 10, 2, 2 * B, 0.2, 0.0048);
        if (bt_train_grads(m, x1 + s * g + row0 * img, x2 + s * g + row0 * img, 0.0051f, form,
                           &res) != BT_OK) {
            fprintf(stderr, "step %d: %s\n", s, bt_error());
            exit(1);
        }
        bt_lars_step(m->p, m->g, m->mom, &m->params, &cfg);
        losses[s] = res.loss;
        *form_used = res.form_used;
    }
    return m;
}

static void equivalence(void) {
    size_t img = 3 * H * H, g = (size_t)2 * B * img;
    float *x1 = malloc(steps * g * sizeof(float)), *x2 = malloc(steps * g * sizeof(float));
    tu_rng r = {2024};
    tu_fill_f32(x1, steps * g, &r, 1.0);
    tu_fill_f32(x2, steps * g, &r, 1.0);
    double ld[16], ls[16];
    int fd, fs;
    bt_model *dist = train(comm, comm->rank * B, B, x1, x2, ld, &fd);
    if (comm->rank == 0) {
        bt_model *single = train(NULL, 0, 2 * B, x1, x2, ls, &fs);
        CHECK(fd == fs, "forms differ: %d vs %d", fd, fs);
        for (int s = 0; s < steps; s++) {
            double rel = fabs(ld[s] - ls[s]) / fabs(ls[s]);
            printf("  step %d: loss 2 ranks %.9g, 1 process %.9g (rel %.2g)\n", s, ld[s], ls[s], rel);
            CHECK(rel <= 1e-5, "step %d loss differs: %.9g vs %.9g", s, ld[s], ls[s]);
        }
        double worst = 0, worstb = 0;
        for (int i = 0; i < single->params.n; i++) {
            const bt_tensor_info *t = &single->params.t[i];
            double d = tu_maxabsdiff_f32(dist->p + t->offset, single->p + t->offset, t->numel);
            double mx = tu_maxabs_f32(single->p + t->offset, t->numel);
            double rel = d / (mx > 0 ? mx : 1);
            CHECK(rel <= 1e-5, "%s: max|d| %.3g (rel %.3g)", t->name, d, rel);
            if (rel > worst) worst = rel;
        }
        for (int i = 0; i < single->bufs.n; i++) {
            const bt_tensor_info *t = &single->bufs.t[i];
            double d = tu_maxabsdiff_f32(dist->b + t->offset, single->b + t->offset, t->numel);
            double mx = tu_maxabs_f32(single->b + t->offset, t->numel);
            double rel = d / (mx > 0 ? mx : 1);
            CHECK(rel <= 1e-5, "%s: max|d| %.3g (rel %.3g)", t->name, d, rel);
            if (rel > worstb) worstb = rel;
        }
        printf("  form %s, after %d steps: worst weight rel diff %.2g, worst running-stat rel diff %.2g\n",
               fd == BT_LOSS_GRAM ? "gram" : "direct", steps, worst, worstb);
        bt_model_free(single);
    }
    bt_model_free(dist);
    free(x1);
    free(x2);
}

int main(int argc, char **argv) {
    if (bt_comm_open(&comm, &argc, &argv, 1, 0) != BT_OK || !comm || comm->world != 2) {
        fprintf(stderr, "mpi_equiv: run me with mpirun -np 2\n");
        return 2;
    }
    if (argc > 1 && !strcmp(argv[1], "direct")) form = BT_LOSS_DIRECT, proj = "16-12";
    if (argc > 1 && !strcmp(argv[1], "gram")) form = BT_LOSS_GRAM;
    if (argc > 2) steps = atoi(argv[2]);
    if (steps < 1 || steps > 16) steps = 5;
    bt_set_threads(1);
    TEST_RUN(equivalence);
    int rc = comm->rank == 0 ? tu_finish() : 0;
    bt_comm_finalize(comm);
    return rc;
}
