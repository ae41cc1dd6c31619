/* Data-parallel equivalence, run through mpirun: 2 ranks with global batch 2B against one
 * process with batch 2B (tests/mpi/mpi_equiv.c, built by `make mpi` into build-mpi/), for
 * both forms of the loss. */
#include "barlow/error.h"
#include "barlow/safetensors.h"
#include "testutil.h"
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* 1 (and the case skipped) when Open MPI's mpirun is not installed: the MPI build cannot run
 * here. With mpirun present, a missing build-mpi/ is a failure (`make test` builds it). */
static int no_mpi(void) {
    if (system("command -v mpirun >/dev/null 2>&1") == 0) return 0;
    tu_skip("no mpirun on PATH (Open MPI is not installed)");
    return 1;
}

static int run(const char *form) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "mpirun --allow-run-as-root --oversubscribe -np 2 build-mpi/mpi/mpi_equiv %s 5 > %s/mpi_%s.log 2>&1",
             form, tu_tmpdir(), form);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "cat %s/mpi_%s.log", tu_tmpdir(), form);
    if (system(cmd) != 0) return -1;
    return rc;
}

static void gram_form(void) { if (!no_mpi()) CHECK(run("gram") == 0, "2-rank run (Gram form) differs from 1 process"); }
static void direct_form(void) { if (!no_mpi()) CHECK(run("direct") == 0, "2-rank run (direct form) differs from 1 process"); }

static void built_with_mpi(void) {
    if (no_mpi()) return;
    CHECK(system("test -x build-mpi/mpi/mpi_equiv && command -v mpirun >/dev/null") == 0,
          "build-mpi/mpi/mpi_equiv or mpirun missing: run `make mpi` (needs libopenmpi-dev)");
}

/* ---- the CLI under mpirun: `barlow pretrain` on 2 ranks vs 1 process ------------------- */

static char data[600];

static int prepare_data(void) {
    if (data[0]) return 0;
    snprintf(data, sizeof data, "%s/cifar", tu_tmpdir());
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && tar xzf %s/cifar10-jpeg.tar.gz -C %s --strip-components=1 "
             "--wildcards 'cifar10/train/*/000*.jpg' 'cifar10/test/*/000*.jpg'",
             data, tu_shared_data(), data);
    return system(cmd);
}

/* Losses by step from stats.txt (steps 0..n-1); returns how many were found. */
static int read_losses(const char *dir, double *loss, int n) {
    char path[700], line[4096];
    snprintf(path, sizeof path, "%s/stats.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        cJSON *st = cJSON_GetObjectItem(j, "step"), *l = cJSON_GetObjectItem(j, "loss");
        if (cJSON_IsNumber(st) && cJSON_IsNumber(l) && st->valueint >= 0 && st->valueint < n) {
            loss[st->valueint] = l->valuedouble;
            got++;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return got;
}

/* Max over tensors of max|a-b| / max|b| between two checkpoints. */
static double ckpt_diff(const char *da, const char *db) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", da);
    snprintf(pb, sizeof pb, "%s/checkpoint.safetensors", db);
    bt_st_file *a = NULL, *b = NULL;
    if (bt_st_open(&a, pa) || bt_st_open(&b, pb)) {
        fprintf(stderr, "  %s\n", bt_error());
        bt_st_close(a);
        return INFINITY;
    }
    double worst = 0;
    for (int i = 0; i < bt_st_count(b); i++) {
        const bt_st_tensor *t = bt_st_at(b, i);
        if (t->dtype != BT_ST_F32) continue;
        float *x = malloc(t->numel * sizeof(float)), *y = malloc(t->numel * sizeof(float));
        if (bt_st_read_f32(a, t->name, x, t->ndim, t->shape) || bt_st_read_f32(b, t->name, y, t->ndim, t->shape)) {
            worst = INFINITY;
        } else {
            double mx = tu_maxabs_f32(y, t->numel), d = tu_maxabsdiff_f32(x, y, t->numel);
            double rel = mx > 0 ? d / mx : d;
            if (rel > worst) worst = rel;
        }
        free(x);
        free(y);
    }
    bt_st_close(a);
    bt_st_close(b);
    return worst;
}

static int pretrain(const char *launcher, const char *bin, const char *dir, int steps) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s %s pretrain %s --arch resnet18-cifar:w=0.125 --projector 32-32 --preset cifar "
             "--batch-size 16 --train-limit 64 --epochs 4 --warmup-epochs 1 --threads 1 --workers 1 "
             "--print-freq 1 --max-steps %d --checkpoint-dir %s > %s.log 2>&1",
             launcher, bin, data, steps, dir, dir);
    return system(cmd);
}

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -np 2"

static void cli_two_ranks_equal_one(void) {
    if (no_mpi()) return;
    CHECK(prepare_data() == 0, "cannot extract CIFAR-10 subset");
    char a[640], b[640];
    snprintf(a, sizeof a, "%s/one", tu_tmpdir());
    snprintf(b, sizeof b, "%s/two", tu_tmpdir());
    CHECK(pretrain("", "build/barlow", a, 5) == 0, "single-process run failed (%s.log)", a);
    CHECK(pretrain(MPIRUN, "build-mpi/barlow", b, 5) == 0, "2-rank run failed (%s.log)", b);
    double la[5] = {0}, lb[5] = {0};
    CHECK(read_losses(a, la, 5) == 5 && read_losses(b, lb, 5) == 5, "stats.txt incomplete");
    for (int s = 0; s < 5; s++) {
        double rel = fabs(la[s] - lb[s]) / fabs(la[s]);
        printf("  step %d: 1 process %.9g, 2 ranks %.9g (rel %.2g)\n", s, la[s], lb[s], rel);
        CHECK(rel <= 1e-5, "step %d: loss %.9g vs %.9g", s, la[s], lb[s]);
    }
    double d = ckpt_diff(b, a);
    printf("  checkpoint after 5 steps: worst tensor rel diff %.2g\n", d);
    CHECK(d <= 1e-4, "checkpoints differ: %.3g", d);
}

static void cli_resume_with_other_rank_count(void) {
    if (no_mpi()) return;
    CHECK(prepare_data() == 0, "cannot extract CIFAR-10 subset");
    char a[640], c[640];
    snprintf(a, sizeof a, "%s/one", tu_tmpdir());
    snprintf(c, sizeof c, "%s/mixed", tu_tmpdir());
    CHECK(pretrain(MPIRUN, "build-mpi/barlow", c, 3) == 0, "2-rank run to step 3 failed");
    CHECK(pretrain("", "build/barlow", c, 5) == 0, "single-process resume failed");
    double d = ckpt_diff(c, a);
    printf("  2 ranks to step 3, then 1 process to step 5: worst tensor rel diff %.2g\n", d);
    CHECK(d <= 1e-4, "resume across rank counts differs: %.3g", d);
}

/* A configuration that differs between ranks, or a rank that fails, ends the whole job with a
 * message instead of leaving the other rank waiting in a collective. */
static void cli_faults_end_the_job(void) {
    if (no_mpi()) return;
    CHECK(prepare_data() == 0, "cannot extract CIFAR-10 subset");
    char cmd[4096], log[700];
    const char *common = "--arch resnet18-cifar:w=0.125 --projector 32-32 --preset cifar --batch-size 16 "
                         "--train-limit 64 --epochs 4 --threads 1 --workers 1 --max-steps 3";
    snprintf(log, sizeof log, "%s/mismatch.log", tu_tmpdir());
    snprintf(cmd, sizeof cmd,
             "timeout 120 mpirun --allow-run-as-root --oversubscribe -np 1 build-mpi/barlow pretrain %s %s "
             "--seed 0 --checkpoint-dir %s/mm : -np 1 build-mpi/barlow pretrain %s %s --seed 1 "
             "--checkpoint-dir %s/mm > %s 2>&1",
             data, common, tu_tmpdir(), data, common, tu_tmpdir(), log);
    int rc = system(cmd);
    CHECK(rc != 0 && WEXITSTATUS(rc) != 124, "mismatched ranks: exit %d (124 = hung)", WEXITSTATUS(rc));
    snprintf(cmd, sizeof cmd, "grep -q 'configuration differs' %s", log);
    CHECK(system(cmd) == 0, "no clear message about the mismatch in %s", log);

    snprintf(log, sizeof log, "%s/rankfail.log", tu_tmpdir());
    snprintf(cmd, sizeof cmd,
             "timeout 120 mpirun --allow-run-as-root --oversubscribe -np 1 build-mpi/barlow pretrain %s %s "
             "--checkpoint-dir %s/rf : -np 1 build-mpi/barlow pretrain %s/missing %s "
             "--checkpoint-dir %s/rf > %s 2>&1",
             data, common, tu_tmpdir(), tu_tmpdir(), common, tu_tmpdir(), log);
    rc = system(cmd);
    CHECK(rc != 0 && WEXITSTATUS(rc) != 124, "failed rank: exit %d (124 = hung)", WEXITSTATUS(rc));
    snprintf(cmd, sizeof cmd, "grep -q 'missing' %s", log);
    CHECK(system(cmd) == 0, "no message naming the failing rank's problem in %s", log);
}

int main(void) {
    TEST_RUN(built_with_mpi);
    TEST_RUN(gram_form);
    TEST_RUN(direct_form);
    TEST_RUN(cli_two_ranks_equal_one);
    TEST_RUN(cli_resume_with_other_rank_count);
    TEST_RUN(cli_faults_end_the_job);
    return tu_finish();
}
