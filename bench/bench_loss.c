/* Times the Barlow Twins loss, forward + backward, at the reference's sizes (N = 256 per
 * device, D = 8192 and 2048) in both forms on 2 threads, then times PyTorch's reference
 * formulation (BatchNorm1d + c = bn(z1).T @ bn(z2) with autograd, 2 threads) on the same
 * sizes and prints the ratio. Run from the repository root: build/bench/bench_loss [reps]. */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/loss.h"
#include "barlow/rng.h"
#include "barlow/scratch.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static const char *py_src =
    "import sys, time, torch\n"
    "torch.set_num_threads(2)\n"
    "N, reps = 256, int(sys.argv[1])\n"
    "def off_diagonal(x):\n"
    "    n, m = x.shape\n"
    "    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()\n"
    "for D in (8192, 2048):\n"
    "    bn = torch.nn.BatchNorm1d(D, affine=False)\n"
    "    g = torch.Generator().manual_seed(0)\n"
    "    z1 = torch.randn(N, D, generator=g, requires_grad=True)\n"
    "    z2 = torch.randn(N, D, generator=g, requires_grad=True)\n"
    "    best = 1e30\n"
    "    for r in range(reps + 1):\n"
    "        t = time.perf_counter()\n"
    "        c = bn(z1).T @ bn(z2)\n"
    "        c.div_(N)\n"
    "        on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()\n"
    "        off_diag = off_diagonal(c).pow_(2).sum()\n"
    "        loss = on_diag + 0.0051 * off_diag\n"
    "        loss.backward()\n"
    "        dt = time.perf_counter() - t\n"
    "        if r: best = min(best, dt)\n"
    "    print(D, best)\n";

/* Best of `reps` timed calls (after one warm-up call that also sizes the scratch arena). */
static double time_loss(int N, int D, int form, int reps, const float *z1, const float *z2,
                        float *dz1, float *dz2, float *rm, float *rv, double *loss) {
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        bt_loss_result res;
        double t = now();
        if (bt_twins_loss(&res, dz1, dz2, z1, z2, N, D, 0.0051f, form, rm, rv) != BT_OK) {
            fprintf(stderr, "bt_twins_loss: %s\n", bt_error());
            exit(1);
        }
        t = now() - t;
        if (r) best = t < best ? t : best;
        *loss = res.loss;
    }
    return best;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3, N = 256;
    if (reps < 1) reps = 1;
    bt_set_threads(2);
    {
        /* BARLOW_ISA forces the kernels' path, as in the barlow program. */
        const char *isa = getenv("BARLOW_ISA");
        if (isa && *isa && bt_isa_select(isa) != BT_OK) {
            fprintf(stderr, "bench_loss: BARLOW_ISA=%s: %s\n", isa, bt_error());
            return 1;
        }
        printf("kernels: path %s\n", bt_isa_name(bt_isa_current()));
    }
    const int Ds[2] = {8192, 2048};
    double ours[2][2];
    for (int k = 0; k < 2; k++) {
        int D = Ds[k];
        size_t nd = (size_t)N * D;
        float *z1 = bt_alloc(nd * 4), *z2 = bt_alloc(nd * 4), *d1 = bt_calloc(nd * 4),
              *d2 = bt_calloc(nd * 4), *rm = bt_calloc((size_t)D * 4), *rv = bt_alloc((size_t)D * 4);
        if (!z1 || !z2 || !d1 || !d2 || !rm || !rv) {
            fprintf(stderr, "%s\n", bt_error());
            return 1;
        }
        bt_rng g = bt_rng_key(1, 0, (uint64_t)D, 0);
        for (size_t i = 0; i < nd; i++) {
            double u = bt_rng_uniform(&g) - 0.5;
            z1[i] = (float)u;
            z2[i] = (float)(0.5 * u + bt_rng_uniform(&g) - 0.5);
        }
        for (int d = 0; d < D; d++) rv[d] = 1;
        double l[2];
        for (int f = 0; f < 2; f++) {
            ours[k][f] = time_loss(N, D, f + 1, reps, z1, z2, d1, d2, rm, rv, &l[f]);
            printf("barlow  N=%d D=%5d %-6s fwd+bwd %8.2f ms  (loss %.6g)\n", N, D,
                   f ? "gram" : "direct", 1e3 * ours[k][f], l[f]);
            fflush(stdout);
        }
        bt_scratch_release();
        bt_free(z1); bt_free(z2); bt_free(d1); bt_free(d2); bt_free(rm); bt_free(rv);
    }

    char path[] = "/tmp/bench_loss_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, py_src, strlen(py_src)) != (ssize_t)strlen(py_src)) {
        perror("temporary python file");
        return 1;
    }
    close(fd);
    const char *py = getenv("BARLOW_PYTHON") ? getenv("BARLOW_PYTHON") : "/usr/bin/python3";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s %d", py, path, reps);
    FILE *p = popen(cmd, "r");
    int D, got = 0;
    double t;
    while (p && fscanf(p, "%d %lf", &D, &t) == 2) {
        int k = D == Ds[0] ? 0 : 1;
        got++;
        printf("pytorch N=%d D=%5d ref    fwd+bwd %8.2f ms   direct x%.2f, gram x%.2f faster\n", N,
               D, 1e3 * t, t / ours[k][0], t / ours[k][1]);
    }
    int rc = p ? pclose(p) : -1;
    unlink(path);
    if (rc != 0 || got != 2) {
        fprintf(stderr, "PyTorch reference failed (rc %d)\n", rc);
        return 1;
    }
    return 0;
}
