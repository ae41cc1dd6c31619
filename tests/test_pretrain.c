/* End-to-end tests of `barlow pretrain`: they run the built program on a few hundred CIFAR-10
 * images and check exact resume (mid-epoch and at an epoch boundary, weights compared byte
 * for byte), the SIGTERM stop, stats.txt, the refusals (bad options, a contradicting or
 * corrupted checkpoint, an unwritable checkpoint dir), the non-finite-loss stop and that the
 * loss falls. The program is $BUILD/barlow (or $BARLOW_BIN). */
#include <cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "barlow/checkpoint.h"
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/safetensors.h"
#include "testutil.h"

static char bin[1024], data[1024], errtext[65536];

/* Tiny network, 64 images, batch 16: 4 steps per epoch. One compute thread keeps the bits
 * equal between runs (the thread count may change rounding) and the test fast on busy cores. */
#define SMALL "--arch resnet18-cifar:w=0.125 --projector 64-64 --preset cifar --batch-size 16 " \
              "--train-limit 64 --threads 1 --workers 1 --warmup-epochs 1 --epochs 4 --print-freq 1"

static int setup(void) {
    static int done = 0, ok = 0;
    if (done) return ok;
    done = 1;
    const char *b = tu_cli_bin();
    const char *d = b ? tu_cli_cifar("'cifar10/train/*/00[0-2]*.jpg' 'cifar10/test/*/000*.jpg'")
                      : NULL;
    if (!d) return 0;
    snprintf(bin, sizeof bin, "%s", b);
    snprintf(data, sizeof data, "%s", d);
    ok = 1;
    return ok;
}

/* Runs `bin pretrain data <args>` (env: extra "VAR=value " prefix or ""), stderr kept in
 * errtext; returns the exit status (-1 if it did not exit normally). */
static int run(const char *env, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tu_cli_pretrain(NULL, errtext, sizeof errtext, env, bin, data, args);
}

static const char *ckpt(const char *d) {
    static char buf[4][1200];
    static int k = 0;
    char *p = buf[k++ % 4];
    snprintf(p, 1200, "%s/checkpoint.safetensors", d);
    return p;
}

/* Metadata integer of a checkpoint (-1 if unreadable). */
static long meta_long(const char *path, const char *key) {
    bt_st_file *f;
    if (bt_st_open(&f, path) != BT_OK) return -1;
    const char *v = bt_st_meta(f, key);
    long x = v ? strtol(v, NULL, 10) : -1;
    bt_st_close(f);
    return x;
}

/* 1 if the two files hold the same tensors (names, dtypes, shapes, bytes). */
static int same_tensors(const char *a, const char *b, int verbose) {
    bt_st_file *fa = NULL, *fb = NULL;
    int same = bt_st_open(&fa, a) == BT_OK && bt_st_open(&fb, b) == BT_OK &&
               bt_st_count(fa) == bt_st_count(fb) && bt_st_count(fa) > 0;
    for (int i = 0; same && i < bt_st_count(fa); i++) {
        const bt_st_tensor *ta = bt_st_at(fa, i), *tb = bt_st_find(fb, ta->name);
        if (!tb || ta->dtype != tb->dtype || ta->nbytes != tb->nbytes ||
            memcmp(ta->data, tb->data, ta->nbytes) != 0) {
            if (verbose) fprintf(stderr, "  tensor %s differs\n", ta->name);
            same = 0;
        }
    }
    bt_st_close(fa);
    bt_st_close(fb);
    return same;
}

/* Stops mid-epoch (step 3 of 4) and at an epoch boundary (step 4), resumes to step 6, and
 * compares with an uninterrupted run. */
static void test_resume_exact(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *A = tu_tmp_path("A"), *B = tu_tmp_path("B"), *C = tu_tmp_path("C");
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 6", A) == 0, "run A: %s", errtext);
    CHECK(meta_long(ckpt(A), "step") == 6, "A step %ld", meta_long(ckpt(A), "step"));
    CHECK(meta_long(ckpt(A), "epoch") == 1 && meta_long(ckpt(A), "next_batch") == 2,
          "A at epoch %ld batch %ld", meta_long(ckpt(A), "epoch"), meta_long(ckpt(A), "next_batch"));

    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 3", B) == 0, "run B1: %s", errtext);
    CHECK(meta_long(ckpt(B), "step") == 3 && meta_long(ckpt(B), "next_batch") == 3, "B1 step %ld",
          meta_long(ckpt(B), "step"));
    CHECK(!same_tensors(ckpt(A), ckpt(B), 0), "step 3 equals step 6: the comparison cannot fail");
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 6", B) == 0, "run B2: %s", errtext);
    CHECK(meta_long(ckpt(B), "step") == 6, "B2 step %ld", meta_long(ckpt(B), "step"));
    CHECK(same_tensors(ckpt(A), ckpt(B), 1), "mid-epoch resume is not bit-identical");

    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 4", C) == 0, "run C1: %s", errtext);
    CHECK(meta_long(ckpt(C), "epoch") == 1 && meta_long(ckpt(C), "next_batch") == 0,
          "C1 at epoch %ld batch %ld", meta_long(ckpt(C), "epoch"), meta_long(ckpt(C), "next_batch"));
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 6 --print-freq 2", C) == 0,
          "run C2: %s", errtext);
    CHECK(same_tensors(ckpt(A), ckpt(C), 1), "epoch-boundary resume is not bit-identical");
    CHECK(meta_long(ckpt(A), "num_batches_tracked") == 12, "num_batches_tracked %ld",
          meta_long(ckpt(A), "num_batches_tracked"));

    /* The backbone export: torchvision names, no projector, loads by name. */
    char bb[1200];
    snprintf(bb, sizeof bb, "%s/backbone.safetensors", A);
    bt_st_file *f;
    CHECK(bt_st_open(&f, bb) == BT_OK, "%s", bt_error());
    if (f) {
        CHECK(bt_st_find(f, "conv1.weight") && bt_st_find(f, "layer4.1.bn2.running_var") &&
              bt_st_find(f, "bn1.num_batches_tracked"), "backbone names");
        CHECK(!bt_st_find(f, "projector.0.weight") && !bt_st_find(f, "momentum.conv1.weight"),
              "backbone holds more than the backbone");
        bt_st_close(f);
    }
}

/* stats.txt of run A: the command line, then one JSON object per step. */
static void test_stats(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/stats.txt", tu_tmp_path("A"));
    size_t n;
    char *s = tu_slurp(path, &n);
    CHECK(s != NULL, "no %s", path);
    if (!s) return;
    static const char *keys[] = {"epoch", "step", "lr_weights", "lr_biases", "loss", "time",
                                 "on_diag", "off_diag", "images_per_s", "skipped"};
    int lines = 0, json = 0;
    double prev_lr = -1;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        if (lines == 0) {
            CHECK(strncmp(line, "barlow pretrain ", 16) == 0 && strstr(line, "--max-steps 6") &&
                  strstr(line, data), "first line is not the command line: %s", line);
            continue;
        }
        cJSON *j = cJSON_Parse(line);
        CHECK(j && cJSON_IsObject(j), "not JSON: %s", line);
        if (!j) continue;
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[k])), "key %s missing in %s", keys[k], line);
        cJSON *st = cJSON_GetObjectItem(j, "step"), *lr = cJSON_GetObjectItem(j, "lr_weights");
        CHECK(st && st->valuedouble == json, "step %g, expected %d", st ? st->valuedouble : -1, json);
        /* warm-up over the first epoch (4 steps): lr_weights = 0.2 * 16/256 * step/4 */
        if (st && lr && st->valuedouble < 4)
            CHECK(fabs(lr->valuedouble - 0.2 * 16 / 256 * st->valuedouble / 4) < 1e-12,
                  "lr %g at step %g", lr->valuedouble, st->valuedouble);
        if (lr) prev_lr = lr->valuedouble;
        cJSON_Delete(j);
        json++;
    }
    CHECK(json == 6, "%d stats lines, expected 6 (steps 0..5)", json);
    CHECK(prev_lr > 0, "last lr %g", prev_lr);
    free(s);
}

static int count_step_lines(const char *path, long *last_step) {
    size_t n;
    char *s = tu_slurp(path, &n);
    if (!s) return 0;
    int c = 0;
    for (char *p = strstr(s, "\"step\":"); p; p = strstr(p + 1, "\"step\":")) {
        c++;
        *last_step = strtol(p + 7, NULL, 10);
    }
    free(s);
    return c;
}

/* SIGTERM: finish the step, checkpoint, exit 0; the checkpoint resumes. */
static void test_sigterm(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *D = tu_tmp_path("T");
    char cmd[4096], stats[1200], out[1200];
    snprintf(cmd, sizeof cmd, "exec '%s' pretrain '%s' " SMALL " --epochs 200 --checkpoint-dir '%s'",
             bin, data, D);
    snprintf(stats, sizeof stats, "%s/stats.txt", D);
    snprintf(out, sizeof out, "%s/sigterm.log", tu_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        FILE *o = freopen(out, "w", stdout);
        if (!o || dup2(fileno(stdout), 2) < 0) _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0, "fork failed");
    if (pid <= 0) return;
    long last = -1;
    for (int i = 0; i < 1200 && count_step_lines(stats, &last) < 2; i++) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    CHECK(count_step_lines(stats, &last) >= 2, "no step line after 60 s");
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d after SIGTERM", st);
    last = -1;
    count_step_lines(stats, &last);
    bt_st_file *f = NULL;
    bt_ckpt_state cs;
    CHECK(bt_ckpt_open(&f, &cs, ckpt(D)) == BT_OK, "%s", bt_error());
    if (!f) return;
    bt_st_close(f);
    CHECK(cs.step == last + 1, "checkpoint at step %ld, stats' last step %ld", cs.step, last);
    CHECK(cs.epoch * 4L + cs.next_batch == cs.step, "epoch %d batch %ld step %ld", cs.epoch,
          cs.next_batch, cs.step);
    size_t n;
    char *log = tu_slurp(out, &n);
    CHECK(log && strstr(log, ckpt(D)), "the checkpoint path was not printed: %s", log ? log : "");
    free(log);
    CHECK(run("", SMALL " --epochs 200 --checkpoint-dir '%s' --max-steps %ld", D, cs.step + 2) == 0,
          "resume after SIGTERM: %s", errtext);
    CHECK(meta_long(ckpt(D), "step") == cs.step + 2, "resumed to step %ld",
          meta_long(ckpt(D), "step"));
}

static void expect_refusal(const char *what, const char *needle, const char *args) {
    int rc = run("", "%s", args);
    CHECK(rc != 0, "%s: exit 0", what);
    CHECK(strstr(errtext, needle) != NULL, "%s: '%s' not in: %s", what, needle, errtext);
}

static void test_refusals(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    char a[4096];
    const char *R = tu_tmp_path("R");
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --batch-size -5", R);
    expect_refusal("negative batch", "--batch-size", a);
    CHECK(run("", "%s", a) == 2, "bad option exit status is not 2");
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --projector 64-x", R);
    expect_refusal("malformed projector", "--projector", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --batchsize 16", R);
    expect_refusal("unknown option", "did you mean --batch-size", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --arch resnet19", R);
    expect_refusal("unknown arch", "--arch", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --batch-size 128", R);
    expect_refusal("batch > dataset", "--batch-size", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --loss-form fast", R);
    expect_refusal("bad choice", "--loss-form", a);
    /* missing DATA: run() always passes DATA, so call the program directly */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' pretrain --epochs 1 2>'%s/e.txt' >/dev/null", bin, tu_tmpdir());
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2, "missing DATA: status %d", st);
    CHECK(access(R, F_OK) != 0, "a refused run created its checkpoint dir");

    /* checkpoint dir below a regular file cannot be created */
    char file[1200];
    snprintf(file, sizeof file, "%s/plainfile", tu_tmpdir());
    FILE *f = fopen(file, "w");
    if (f) fclose(f);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s/ck'", file);
    expect_refusal("unusable checkpoint dir", "--checkpoint-dir", a);

    /* a checkpoint made with another configuration (run A of test_resume_exact) */
    const char *A = tu_tmp_path("A");
    size_t n0, n1;
    char *before = tu_slurp(ckpt(A), &n0);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --max-steps 8 --arch resnet18-cifar:w=0.25", A);
    expect_refusal("other arch", "--arch", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --max-steps 8 --seed 3", A);
    expect_refusal("other seed", "--seed", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --max-steps 8 --lambd 0.01", A);
    expect_refusal("other lambd", "--lambd", a);
    snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --max-steps 8 --lars-eta 0.02", A);
    expect_refusal("other lars-eta", "--lars-eta", a);
    char *after = tu_slurp(ckpt(A), &n1);
    CHECK(before && after && n0 == n1 && !memcmp(before, after, n0), "a refused run changed the checkpoint");

    /* one flipped byte in the data area */
    const char *X = tu_tmp_path("X");
    mkdir(X, 0777);
    if (before) {
        before[n0 - 100] ^= 0x10;
        f = fopen(ckpt(X), "wb");
        if (f) {
            fwrite(before, 1, n0, f);
            fclose(f);
        }
        snprintf(a, sizeof a, SMALL " --checkpoint-dir '%s' --max-steps 8", X);
        expect_refusal("corrupted checkpoint", ckpt(X), a);
        CHECK(strstr(errtext, "checksum") != NULL, "not a checksum error: %s", errtext);
        free(after);
        after = tu_slurp(ckpt(X), &n1);
        CHECK(after && n1 == n0 && !memcmp(before, after, n0), "the corrupted checkpoint was replaced");
    }
    free(before);
    free(after);
}

/* A NaN at step 5 stops the run, names the step, and leaves the step-4 checkpoint alone. */
static void test_nan(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *N = tu_tmp_path("N");
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 4", N) == 0, "%s", errtext);
    size_t n0, n1;
    char *before = tu_slurp(ckpt(N), &n0);
    int rc = run("BARLOW_TEST_NAN_AT_STEP=5 ", SMALL " --checkpoint-dir '%s' --max-steps 8", N);
    CHECK(rc == 1, "exit %d", rc);
    CHECK(strstr(errtext, "step 5") && strstr(errtext, "non-finite"), "message: %s", errtext);
    char *after = tu_slurp(ckpt(N), &n1);
    CHECK(before && after && n0 == n1 && !memcmp(before, after, n0), "the checkpoint changed");
    free(before);
    free(after);
}

/* 64 steps at batch 32: the mean of the first 8 logged losses vs the last 8 (single steps are
 * noisy at this size). Milder crops and colour jitter than the preset and a high learning
 * rate let the tiny network make visible progress in 64 steps. */
/* --knn-every: kNN lines in stats.txt, and a trajectory bit-identical to a run without it. */
static void test_knn_monitor(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *K = tu_tmp_path("K"), *N = tu_tmp_path("N");
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 6 --knn-every 1", K) == 0, "run K: %s", errtext);
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 6", N) == 0, "run N: %s", errtext);
    CHECK(same_tensors(ckpt(K), ckpt(N), 1), "the kNN monitor changed the training trajectory");
    char path[1200];
    snprintf(path, sizeof path, "%s/stats.txt", K);
    size_t n = 0;
    char *txt = tu_slurp(path, &n);
    CHECK(txt && strstr(txt, "\"knn_top1\"") && strstr(txt, "\"knn_top5\""), "no kNN line in %s", path);
    if (txt) {
        const char *p = strstr(txt, "\"knn_top1\":");
        double top1 = p ? atof(p + 11) : -1;
        CHECK(top1 >= 0 && top1 <= 100, "kNN top-1 %g out of range", top1);
        printf("  kNN monitor after epoch 1: top-1 %.1f%%\n", top1);
    }
    free(txt);
}

/* TensorBoard's own reader lists the scalars and the image of C that a run wrote under tb/. */
static void test_tensorboard(void) {
    if (tu_skip_without("tensorboard")) return;
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *T = tu_tmp_path("TB");
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 8 --knn-every 1 --tb-image-every 4", T) == 0,
          "run T: %s", errtext);
    char cmd[2400], out[1200];
    snprintf(out, sizeof out, "%s/tags.json", T);
    snprintf(cmd, sizeof cmd, "%s tests/py/tb_tags.py '%s/tb' > '%s'", tu_python(), T, out);
    CHECK(system(cmd) == 0, "tensorboard reader failed: %s", cmd);
    size_t n = 0;
    char *js = tu_slurp(out, &n);
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    CHECK(j != NULL, "no JSON from the reader");
    if (j) {
        cJSON *sc = cJSON_GetObjectItem(j, "scalars"), *im = cJSON_GetObjectItem(j, "images");
        const char *want[] = {"loss/total", "loss/on_diag", "loss/off_diag", "lr/weights",
                              "lr/biases", "throughput/images_per_s", "knn/top1", "knn/top5"};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++)
            CHECK(cJSON_GetObjectItem(sc, want[i]) != NULL, "scalar %s missing", want[i]);
        cJSON *loss = cJSON_GetObjectItem(sc, "loss/total");
        CHECK(cJSON_GetArraySize(loss) == 8, "loss/total has %d points, want 8", cJSON_GetArraySize(loss));
        cJSON *img = cJSON_GetObjectItem(im, "cross_correlation/C_corner");
        CHECK(cJSON_GetArraySize(img) == 2, "C image at steps 0 and 4 expected, got %d", cJSON_GetArraySize(img));
        cJSON *first = cJSON_GetArrayItem(img, 0);
        CHECK(first && cJSON_GetArrayItem(first, 1)->valueint == 256 &&
                  cJSON_GetArrayItem(first, 2)->valueint == 256,
              "C image is not 256x256 (64x64 corner, 4-pixel cells)");
        cJSON_Delete(j);
    }
    free(js);
}

/* --init-from: a fresh run starts its backbone from torchvision-format weights (checked in the
 * untrained checkpoint-first), linear takes them too, and a file of another architecture is
 * refused naming the tensor. */
static void test_init_from(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *P = tu_tmp_path("P1"), *Q = tu_tmp_path("P2"), *W = tu_tmp_path("P3");
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 2", P) == 0, "run P1: %s", errtext);
    char bb[1200], first[1200];
    snprintf(bb, sizeof bb, "%s/backbone.safetensors", P);
    snprintf(first, sizeof first, "%s/checkpoint-first.safetensors", Q);
    CHECK(run("", SMALL " --checkpoint-dir '%s' --max-steps 1 --seed 7 --init-from '%s'", Q, bb) == 0,
          "run P2: %s", errtext);
    bt_st_file *a = NULL, *b = NULL;
    CHECK(bt_st_open(&a, bb) == BT_OK && bt_st_open(&b, first) == BT_OK, "%s", bt_error());
    int compared = 0, equal = 1;
    for (int i = 0; a && b && i < bt_st_count(a); i++) {
        const bt_st_tensor *t = bt_st_at(a, i), *u = bt_st_find(b, t->name);
        if (t->dtype != BT_ST_F32) continue;
        CHECK(u != NULL, "%s missing from %s", t->name, first);
        if (!u) continue;
        compared++;
        if (u->nbytes != t->nbytes || memcmp(u->data, t->data, t->nbytes)) equal = 0;
    }
    CHECK(compared > 20 && equal, "backbone not taken from --init-from (%d tensors compared)", compared);
    bt_st_close(a);
    bt_st_close(b);
    /* another architecture: refused before training, naming a tensor */
    int rc = run("", "--arch resnet18-cifar:w=0.25 --projector 64-64 --preset cifar --batch-size 16 "
                 "--train-limit 64 --threads 1 --workers 1 --checkpoint-dir '%s' --init-from '%s'", W, bb);
    CHECK(rc == 2 && strstr(errtext, "--init-from") && strstr(errtext, "conv1.weight"),
          "mismatched --init-from: exit %d: %s", rc, errtext);
    /* linear takes the same weights */
    char cmd[8192], errf[1200];
    snprintf(errf, sizeof errf, "%s/linear-err.txt", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' linear '%s' --init-from '%s' --arch resnet18-cifar:w=0.125 "
             "--preset cifar --epochs 1 --cached-features --threads 1 --workers 1 > /dev/null 2> '%s'",
             bin, data, bb, errf);
    CHECK(system(cmd) == 0, "linear --init-from failed (%s)", errf);
}

static void test_loss_falls(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *L = tu_tmp_path("L");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = run("", "--arch resnet18-cifar:w=0.125 --projector 64-64 --preset cifar "
                 "--batch-size 32 --train-limit 256 --threads 1 --workers 1 --warmup-epochs 1 "
                 "--epochs 8 --print-freq 1 --learning-rate-weights 3 --learning-rate-biases 0.05 "
                 "--aug scale=0.4,1 --aug jitter-p=0.4 "
                 "--checkpoint-dir '%s'", L);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(rc == 0, "%s", errtext);
    char path[1200];
    snprintf(path, sizeof path, "%s/stats.txt", L);
    size_t n;
    char *s = tu_slurp(path, &n);
    double loss[64];
    int k = 0;
    for (char *p = s ? strstr(s, "\"loss\":") : NULL; p && k < 64; p = strstr(p + 1, "\"loss\":"))
        loss[k++] = strtod(p + 7, NULL);
    free(s);
    CHECK(k == 64, "%d losses", k);
    if (k < 64) return;
    double first = 0, last = 0;
    for (int i = 0; i < 8; i++) first += loss[i] / 8, last += loss[56 + i] / 8;
    printf("  loss: first 8 steps %.3f, last 8 steps %.3f (step 0 %.3f, step 63 %.3f); 64 steps "
           "in %.1f s\n", first, last, loss[0], loss[63],
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    CHECK(last < 0.8 * first, "loss did not fall: %.3f -> %.3f", first, last);
}

/* The kernels' path: in the run header, the checkpoint's configuration and every stats line;
 * a resume on another path says so in one line; a bad BARLOW_ISA or --isa stops the run. */
static void test_isa_record(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *I = tu_tmp_path("I");
    char out[1200], path[1200];
    snprintf(out, sizeof out, "%s/stdout.txt", tu_tmpdir());
    int rc = run("BARLOW_ISA=generic ", SMALL " --max-steps 2 --checkpoint-dir '%s'", I);
    CHECK(rc == 0, "generic run: status %d: %s", rc, errtext);
    size_t n;
    char *s = tu_slurp(out, &n);
    CHECK(s && strstr(s, "kernels: path generic"), "no path in the run header");
    free(s);
    bt_st_file *f;
    CHECK(bt_st_open(&f, ckpt(I)) == BT_OK, "%s", bt_error());
    if (f) {
        const char *cfg = bt_st_meta(f, "config");
        CHECK(cfg && strstr(cfg, "\"isa\":\"generic\""), "config lacks the path: %s",
              cfg ? cfg : "(none)");
        CHECK(cfg && strstr(cfg, "\"gemm_kc\":"), "config lacks the GEMM KC: %s",
              cfg ? cfg : "(none)");
        bt_st_close(f);
    }
    snprintf(path, sizeof path, "%s/stats.txt", I);
    s = tu_slurp(path, &n);
    int lines = 0;
    for (char *p = s ? strstr(s, "\"isa\":\"generic\"") : NULL; p; p = strstr(p + 1, "\"isa\":\"generic\""))
        lines++;
    CHECK(lines == 2, "%d stats lines with the path, expected 2", lines);
    free(s);
    /* Resume on the best path (named: the suite may run with another BARLOW_ISA): one note
     * when it is another path. */
    char best[64];
    snprintf(best, sizeof best, "BARLOW_ISA=%s ", bt_isa_name(bt_isa_best()));
    rc = run(best, SMALL " --max-steps 3 --checkpoint-dir '%s'", I);
    CHECK(rc == 0, "resume: status %d: %s", rc, errtext);
    s = tu_slurp(out, &n);
    if (bt_isa_best() != BT_ISA_GENERIC)
        CHECK(s && strstr(s, "note: resuming on kernel path") && strstr(s, "made on generic"),
              "no note on the path change: %s", s ? s : "");
    else
        printf("  NOTE: only the generic path here: the path-change note is not exercised\n");
    free(s);
    /* Another KC on the same path (as another CPU's L1 would give; 72 is none that an L1 size
     * gives on any path): one note naming both. */
    char kc[64];
    snprintf(kc, sizeof kc, "BARLOW_ISA=%s BARLOW_GEMM_KC=72 ", bt_isa_name(bt_isa_best()));
    rc = run(kc, SMALL " --max-steps 4 --checkpoint-dir '%s'", I);
    CHECK(rc == 0, "resume with another KC: status %d: %s", rc, errtext);
    s = tu_slurp(out, &n);
    CHECK(s && strstr(s, "note: resuming on kernel path") && strstr(s, "(GEMM KC 72) with") &&
              strstr(s, "(BARLOW_GEMM_KC)"),
          "no note on the KC change: %s", s ? s : "");
    free(s);
    rc = run("BARLOW_ISA=sse9 ", SMALL " --max-steps 1 --checkpoint-dir '%s'", tu_tmp_path("I2"));
    int nl = 0;
    for (const char *p = errtext; *p; p++) nl += *p == '\n';
    CHECK(rc == 1 && strstr(errtext, "BARLOW_ISA=sse9") && nl == 1,
          "bad BARLOW_ISA: status %d, %d lines: %s", rc, nl, errtext);
    rc = run("", SMALL " --max-steps 1 --isa sse9 --checkpoint-dir '%s'", tu_tmp_path("I2"));
    CHECK(rc == 2 && strstr(errtext, "sse9"), "bad --isa: status %d: %s", rc, errtext);
}

/* The last "loss" of a stats.txt (NAN if none). */
static double last_loss(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/stats.txt", dir);
    size_t n;
    char *s = tu_slurp(path, &n);
    double v = NAN;
    for (char *p = s ? strstr(s, "\"loss\":") : NULL; p; p = strstr(p + 1, "\"loss\":"))
        v = strtod(p + 7, NULL);
    free(s);
    return v;
}

/* --precision: a bad value and bf16 where the CPU or path has no AVX512_BF16 are refused in one
 * line; where it has: a bf16 run records the precision (header, configuration, stats lines),
 * resumes bit for bit, differs from the fp32 run (the products were rounded) by little, and a
 * resume in fp32 says so in one line. */
static void test_precision(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    int rc = run("", SMALL " --max-steps 1 --precision fp16 --checkpoint-dir '%s'", tu_tmp_path("X1"));
    int nl = 0;
    for (const char *p = errtext; *p; p++) nl += *p == '\n';
    CHECK(rc == 2 && strstr(errtext, "precision") && strstr(errtext, "fp16") && nl == 1,
          "bad --precision: status %d, %d lines: %s", rc, nl, errtext);
    /* the refusal, on a path without the bf16 kernel (avx2 when the CPU has it) */
    const int has = bt_cpu()->avx512_bf16 && bt_isa_supported(BT_ISA_AVX512);
    const char *nopath = bt_isa_supported(BT_ISA_AVX2) ? "BARLOW_ISA=avx2 " : "BARLOW_ISA=generic ";
    rc = run(nopath, SMALL " --max-steps 1 --precision bf16 --checkpoint-dir '%s'", tu_tmp_path("X2"));
    nl = 0;
    for (const char *p = errtext; *p; p++) nl += *p == '\n';
    CHECK(rc == 2 && strstr(errtext, "--precision bf16 needs AVX512_BF16") && nl == 1,
          "bf16 without the kernel (%s): status %d, %d lines: %s", nopath, rc, nl, errtext);
    CHECK(access(tu_tmp_path("X2"), F_OK) != 0, "the refused bf16 run created its checkpoint dir");
    if (!has) {
        printf("  SKIPPED the bf16 runs: this CPU has no AVX512_BF16\n");
        tu_skip("no AVX512_BF16");
        return;
    }
    const char *P = tu_tmp_path("PP"), *Q = tu_tmp_path("PQ"), *R = tu_tmp_path("PR");
    const char *on = "BARLOW_ISA=avx512 ";
    char out[1200], path[1200];
    snprintf(out, sizeof out, "%s/stdout.txt", tu_tmpdir());
    rc = run(on, SMALL " --max-steps 3 --precision bf16 --checkpoint-dir '%s'", P);
    CHECK(rc == 0, "bf16 run: status %d: %s", rc, errtext);
    size_t n;
    char *s = tu_slurp(out, &n);
    CHECK(s && strstr(s, "products bf16 (AVX512_BF16)"), "no precision in the run header");
    free(s);
    bt_st_file *f;
    CHECK(bt_st_open(&f, ckpt(P)) == BT_OK, "%s", bt_error());
    if (f) {
        const char *cfg = bt_st_meta(f, "config");
        CHECK(cfg && strstr(cfg, "\"precision\":\"bf16\""), "config lacks the precision: %s",
              cfg ? cfg : "(none)");
        bt_st_close(f);
    }
    snprintf(path, sizeof path, "%s/stats.txt", P);
    s = tu_slurp(path, &n);
    int lines = 0;
    for (char *p = s ? strstr(s, "\"precision\":\"bf16\"") : NULL; p;
         p = strstr(p + 1, "\"precision\":\"bf16\""))
        lines++;
    CHECK(lines == 3, "%d stats lines with the precision, expected 3", lines);
    free(s);
    rc = run(on, SMALL " --max-steps 3 --checkpoint-dir '%s'", Q); /* fp32, same seed */
    CHECK(rc == 0, "fp32 run: status %d: %s", rc, errtext);
    CHECK(!same_tensors(ckpt(P), ckpt(Q), 0), "bf16 and fp32 runs give the same weights");
    const double lp = last_loss(P), lq = last_loss(Q);
    CHECK(fabs(lp - lq) <= 0.02 * fabs(lq), "loss after 3 steps: bf16 %.6g, fp32 %.6g (more "
          "than 2%% apart)", lp, lq);
    printf("  loss after 3 steps: bf16 %.6g, fp32 %.6g\n", lp, lq);
    /* exact resume in bf16 */
    rc = run(on, SMALL " --max-steps 2 --precision bf16 --checkpoint-dir '%s'", R);
    CHECK(rc == 0, "bf16 run R1: status %d: %s", rc, errtext);
    rc = run(on, SMALL " --max-steps 3 --precision bf16 --checkpoint-dir '%s'", R);
    CHECK(rc == 0, "bf16 run R2: status %d: %s", rc, errtext);
    CHECK(same_tensors(ckpt(P), ckpt(R), 1), "bf16 resume is not bit-identical");
    /* resume in fp32: allowed, said */
    rc = run(on, SMALL " --max-steps 4 --checkpoint-dir '%s'", P);
    CHECK(rc == 0, "fp32 resume of a bf16 run: status %d: %s", rc, errtext);
    s = tu_slurp(out, &n);
    CHECK(s && strstr(s, "note: resuming with --precision fp32; the checkpoint was made with bf16"),
          "no note on the precision change: %s", s ? s : "");
    free(s);
}

int main(void) {
    TEST_RUN(test_isa_record);
    TEST_RUN(test_precision);
    TEST_RUN(test_resume_exact);
    TEST_RUN(test_stats);
    TEST_RUN(test_sigterm);
    TEST_RUN(test_refusals);
    TEST_RUN(test_nan);
    TEST_RUN(test_knn_monitor);
    TEST_RUN(test_tensorboard);
    TEST_RUN(test_init_from);
    TEST_RUN(test_loss_falls);
    return tu_finish();
}
