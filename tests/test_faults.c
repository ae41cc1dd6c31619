/* Fault injection on `barlow pretrain` (the built program, $BUILD/barlow or $BARLOW_BIN):
 * a flipped byte in a checkpoint, undecodable JPEGs in an image-folder dataset, a checkpoint
 * directory that cannot exist, a full disk (a tiny tmpfs, when mount works here) and kill -9
 * at random moments with a checkpoint every step. Each case checks the documented outcome:
 * a one-line error naming the file, a warning plus a count in stats.txt, an error before any
 * training, the previous checkpoint left intact, a loadable checkpoint after every kill and a
 * resumed run that ends bit-identical to an uninterrupted one. Tiny model, 100 CIFAR images. */
#include <cJSON.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "barlow/checkpoint.h"
#include "barlow/error.h"
#include "barlow/safetensors.h"
#include "testutil.h"

extern char **environ;

static char bin[1024], data[1024], errtext[65536], outtext[65536];

/* 96 of the 100 images (6 steps of 16 per epoch); one compute thread keeps runs bit-equal. */
#define TINY "--arch resnet18-cifar:w=0.125 --projector 32-32 --preset cifar --batch-size 16 " \
             "--train-limit 96 --threads 1 --workers 1 --warmup-epochs 1 --print-freq 1"

static int setup(void) {
    static int done = 0, ok = 0;
    if (done) return ok;
    done = 1;
    /* 10 images per class: 100 in all */
    const char *b = tu_cli_bin(), *d = b ? tu_cli_cifar("'cifar10/train/*/000*.jpg'") : NULL;
    if (!d) return 0;
    snprintf(bin, sizeof bin, "%s", b);
    snprintf(data, sizeof data, "%s", d);
    ok = 1;
    return ok;
}

/* Runs `bin pretrain DATA <args>`; stdout/stderr kept in outtext/errtext. Returns the exit
 * status, or -1 if the program did not exit normally (a crash is never an acceptable
 * outcome of a fault). */
static int run(const char *dataset, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    _Static_assert(sizeof outtext == sizeof errtext, "one capacity for both");
    return tu_cli_pretrain(outtext, errtext, sizeof outtext, "", bin, dataset, args);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static int copy_file(const char *src, const char *dst) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
    return system(cmd);
}

static int same_file(const char *a, const char *b) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* Opens a checkpoint with the library's validator; returns its step, or -1 (message kept). */
static long ckpt_step(const char *path, char *why, size_t cap) {
    bt_st_file *f;
    bt_ckpt_state st;
    if (bt_ckpt_open(&f, &st, path) != BT_OK) {
        snprintf(why, cap, "%s", bt_error());
        return -1;
    }
    long s = st.step;
    bt_st_close(f);
    return s;
}

/* Every tensor of a and b byte-identical (same names, shapes, bytes). */
static int same_tensors(const char *a, const char *b) {
    bt_st_file *fa, *fb;
    if (bt_st_open(&fa, a) != BT_OK) return 0;
    if (bt_st_open(&fb, b) != BT_OK) {
        bt_st_close(fa);
        return 0;
    }
    int ok = bt_st_count(fa) == bt_st_count(fb) && bt_st_count(fa) > 0;
    for (int i = 0; ok && i < bt_st_count(fa); i++) {
        const bt_st_tensor *x = bt_st_at(fa, i), *y = bt_st_find(fb, x->name);
        ok = y && x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0;
        if (!ok) fprintf(stderr, "  tensor %s differs\n", x->name);
    }
    bt_st_close(fa);
    bt_st_close(fb);
    return ok;
}

/* ---- cases ---------------------------------------------------------------------------- */

/* A flipped byte anywhere in a checkpoint: refused, naming the file, which is left as it
 * was (not overwritten by a fresh run). Three places: tensor data (checksum), the JSON
 * header (parse or field error) and the header length (size check). */
static void test_flipped_byte(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *ck = tu_tmp_path("flip/ck"), *ckf = tu_tmp_path("flip/ck/checkpoint.safetensors");
    int rc = run(data, TINY " --epochs 1 --max-steps 2 --checkpoint-dir '%s'", ck);
    CHECK(rc == 0, "clean run: exit %d: %s", rc, errtext);
    long size = file_size(ckf);
    CHECK(size > 1000, "checkpoint %s: %ld bytes", ckf, size);
    if (size <= 1000) return;
    const char *orig = tu_tmp_path("flip/orig.safetensors");
    CHECK(copy_file(ckf, orig) == 0, "copy");
    uint8_t lb[8];
    FILE *f = fopen(orig, "rb");
    CHECK(f && fread(lb, 1, 8, f) == 8, "read header length");
    if (f) fclose(f);
    long hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lb[i];
    /* the value of the "step" metadata: a digit whose change would silently move the LR
     * schedule and the data position of the resumed run */
    long step_off = -1;
    {
        char *hdr = calloc(1, (size_t)hlen + 1);
        f = fopen(orig, "rb");
        if (hdr && f && fseek(f, 8, SEEK_SET) == 0 && fread(hdr, 1, (size_t)hlen, f) == (size_t)hlen) {
            const char *q = strstr(hdr, "\"step\":\"");
            if (q) step_off = 8 + (q - hdr) + 8;
        }
        if (f) fclose(f);
        free(hdr);
    }
    CHECK(step_off > 0, "no \"step\" metadata in %s", orig);
    const struct { const char *what; long off; uint8_t mask; } flips[] = {
        {"tensor data", size - 37, 0x10},
        {"first tensor byte", 8 + hlen, 0x01},
        {"header JSON '{'", 8, 0x20},
        {"header length", 2, 0x01},
        {"metadata step digit", step_off, 0x01},
    };
    for (size_t k = 0; k < sizeof flips / sizeof *flips; k++) {
        CHECK(copy_file(orig, ckf) == 0, "restore");
        f = fopen(ckf, "r+b");
        int c = -1;
        if (f && fseek(f, flips[k].off, SEEK_SET) == 0) c = fgetc(f);
        CHECK(c >= 0, "read byte %ld", flips[k].off);
        if (c < 0) {
            if (f) fclose(f);
            continue;
        }
        if (flips[k].off <= 0) {
            fclose(f);
            continue;
        }
        fseek(f, flips[k].off, SEEK_SET);
        fputc(c ^ flips[k].mask, f);
        fclose(f);
        const char *flipped = tu_tmp_path("flip/flipped.safetensors");
        copy_file(ckf, flipped);
        char why[512];
        long accepted = ckpt_step(ckf, why, sizeof why);
        /* A metadata flip passing here means the checksum does not cover __metadata__. */
        CHECK(accepted < 0, "%s flipped: bt_ckpt_open accepted it (read step %ld)", flips[k].what,
              accepted);
        if (accepted >= 0) continue; /* the run would resume from it: nothing more to check */
        rc = run(data, TINY " --epochs 1 --checkpoint-dir '%s'", ck);
        CHECK(rc == 1, "%s flipped: exit %d (want 1)", flips[k].what, rc);
        CHECK(strstr(errtext, "checkpoint.safetensors") != NULL,
              "%s flipped: message does not name the file: %s", flips[k].what, errtext);
        CHECK(!strstr(outtext, "\"step\"") && !strstr(errtext, "\"step\""),
              "%s flipped: trained anyway", flips[k].what);
        CHECK(same_file(ckf, flipped), "%s flipped: the checkpoint was modified", flips[k].what);
        if (k == 0)
            CHECK(strstr(errtext, "checksum mismatch") != NULL, "data flip: %s", errtext);
    }
}

/* A truncated JPEG and a garbage one in an ImageFolder: each warned about once, counted in
 * stats.txt ("skipped", once per epoch each), and training completes. */
static void test_corrupt_jpeg(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    char cmd[4096];
    const char *d = tu_tmp_path("badjpeg");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -r '%s' '%s/'", d, data, d);
    CHECK(system(cmd) == 0, "%s", cmd);
    /* The first two items in folder order (airplane/0000, 0001), inside --train-limit 96. */
    char trunc_p[1200], garb_p[1200];
    snprintf(trunc_p, sizeof trunc_p, "%s/cifar10/train/airplane/0000.jpg", d);
    snprintf(garb_p, sizeof garb_p, "%s/cifar10/train/airplane/0001.jpg", d);
    long n = file_size(trunc_p);
    CHECK(n > 200 && truncate(trunc_p, n * 6 / 10) == 0, "truncate %s (%ld bytes)", trunc_p, n);
    FILE *f = fopen(garb_p, "r+b");
    CHECK(f != NULL, "open %s", garb_p);
    if (f) { /* a JPEG signature, then noise: the header cannot parse */
        fseek(f, 3, SEEK_SET);
        tu_rng r = {99};
        for (int i = 0; i < 400; i++) fputc((int)(tu_next(&r) & 0xff), f);
        fclose(f);
    }
    char ds[1200];
    snprintf(ds, sizeof ds, "%s/cifar10", d);
    const char *ck = tu_tmp_path("badjpeg-ck");
    int rc = run(ds, TINY " --epochs 2 --checkpoint-dir '%s'", ck);
    CHECK(rc == 0, "exit %d: %s", rc, errtext);
    CHECK(strstr(outtext, "done at epoch 2") != NULL, "did not finish: %s", outtext);
    /* warned once per file, naming it */
    int warns = 0;
    for (const char *p = errtext; (p = strstr(p, "warning: skipping")); p++) warns++;
    CHECK(warns == 2, "%d warnings (want 2): %s", warns, errtext);
    CHECK(strstr(errtext, "airplane/0000.jpg") && strstr(errtext, "airplane/0001.jpg"),
          "warnings do not name the files: %s", errtext);
    char stats[65536];
    char sp[1200];
    snprintf(sp, sizeof sp, "%s/stats.txt", ck);
    tu_read_into(sp, stats, sizeof stats);
    double skipped = 0;
    int lines = 0;
    for (char *line = strtok(stats, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '{') continue;
        cJSON *j = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "skipped");
        CHECK(cJSON_IsNumber(s), "stats line without skipped: %s", line);
        if (cJSON_IsNumber(s)) skipped += s->valuedouble;
        lines++;
        cJSON_Delete(j);
    }
    CHECK(lines == 12, "%d stats lines (want 12 steps)", lines);
    CHECK(skipped == 4, "skipped sums to %g over 2 epochs (want 2 files x 2 epochs)", skipped);
    char why[512] = "";
    char ckf[1200];
    snprintf(ckf, sizeof ckf, "%s/checkpoint.safetensors", ck);
    CHECK(ckpt_step(ckf, why, sizeof why) == 12, "final checkpoint: %s", why);
}

/* --checkpoint-dir under a regular file: an error naming the path before any training. */
static void test_unwritable_ckdir(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *file = tu_tmp_path("plainfile");
    FILE *f = fopen(file, "w");
    CHECK(f != NULL, "create %s", file);
    if (f) fclose(f);
    char ck[1200];
    snprintf(ck, sizeof ck, "%s/ckpt", file);
    int rc = run(data, TINY " --epochs 1 --checkpoint-dir '%s'", ck);
    CHECK(rc != 0 && rc != -1, "exit %d", rc);
    CHECK(strstr(errtext, ck) || strstr(errtext, file), "message does not name the path: %s",
          errtext);
    CHECK(!strstr(errtext, "\"step\"") && !strstr(outtext, "\"step\"") &&
          !strstr(outtext, "done at"), "trained before noticing: %s", outtext);
    /* also a directory path that is itself a regular file */
    rc = run(data, TINY " --epochs 1 --checkpoint-dir '%s'", file);
    CHECK(rc != 0 && rc != -1 && strstr(errtext, file), "ckdir is a file: exit %d: %s", rc,
          errtext);
}

/* A full disk while saving: a clear error (exit 1) naming the file, and the previous
 * checkpoint intact and loadable. The checkpoint directory is a tmpfs sized for one
 * checkpoint and a half, so the second save (temporary file beside the old one) fails. */
static void test_disk_full(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *probe = tu_tmp_path("full-probe");
    int rc = run(data, TINY " --epochs 1 --max-steps 1 --checkpoint-dir '%s'", probe);
    CHECK(rc == 0, "probe run: exit %d: %s", rc, errtext);
    char pf[1200];
    snprintf(pf, sizeof pf, "%s/checkpoint.safetensors", probe);
    long size = file_size(pf);
    CHECK(size > 0, "probe checkpoint %s missing", pf);
    if (size <= 0) return;
    const char *mnt = tu_tmp_path("full");
    mkdir(mnt, 0700);
    char opt[64];
    /* Room for checkpoint-first (the untrained network, written at the start) and one
     * checkpoint, but not for the temporary file of the next: stats.txt and the events file
     * are small next to a checkpoint with momentum. */
    snprintf(opt, sizeof opt, "size=%ldk", (size * 5 / 2) / 1024 + 8);
    if (mount("tmpfs", mnt, "tmpfs", 0, opt) != 0) {
        tu_skip("cannot mount a tmpfs here (%s): the full-disk case needs root", strerror(errno));
        return;
    }
    rc = run(data, TINY " --epochs 1 --save-every-steps 1 --checkpoint-dir '%s'", mnt);
    char ckf[1200];
    snprintf(ckf, sizeof ckf, "%s/checkpoint.safetensors", mnt);
    CHECK(rc == 1, "exit %d (want 1): %s", rc, errtext);
    CHECK(strstr(errtext, "No space left") != NULL && strstr(errtext, "checkpoint.safetensors"),
          "unclear error: %s", errtext);
    char why[512] = "";
    long s = ckpt_step(ckf, why, sizeof why);
    CHECK(s == 1, "previous checkpoint not intact: step %ld: %s", s, why);
    /* no temporary file left filling the disk */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q '\\.tmp\\.'", mnt);
    CHECK(system(cmd) != 0, "a temporary checkpoint file was left in %s", mnt);
    /* and a later run with room resumes from it: here, the saves stop at step 1 again */
    umount(mnt);
}

/* kill -9 at random moments of runs that checkpoint every step: after each kill the
 * directory holds a loadable checkpoint (once the first save happened), each restart resumes
 * from it, and the final weights equal those of an uninterrupted run bit for bit. */
static void test_kill9(void) {
    if (!setup()) {
        CHECK(0, "setup failed");
        return;
    }
    const char *ref = tu_tmp_path("kill-ref"), *ck = tu_tmp_path("kill");
    /* long enough (48 steps) that ten kills land before the run can finish */
    const char *opts = TINY " --epochs 8 --save-every-steps 1";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = run(data, "%s --checkpoint-dir '%s'", opts, ref);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(rc == 0, "reference run: exit %d: %s", rc, errtext);
    /* Kill moments scale with this build's speed (the sanitizer build is several times
     * slower): 6% to 20% of an uninterrupted run, start-up included. */
    double tref = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    char reff[1200], ckf[1200], outp[1200];
    snprintf(reff, sizeof reff, "%s/checkpoint.safetensors", ref);
    snprintf(ckf, sizeof ckf, "%s/checkpoint.safetensors", ck);
    snprintf(outp, sizeof outp, "%s/kill-out.txt", tu_tmpdir());
    tu_rng r = {2024};
    int kills = 0, loadable = 0, finished_early = 0;
    long last = -1;
    for (int k = 0; k < 10; k++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec '%s' pretrain '%s' %s --checkpoint-dir '%s' >>'%s' 2>&1",
                 bin, data, opts, ck, outp);
        char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        pid_t pid;
        if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0) {
            CHECK(0, "spawn failed");
            return;
        }
        /* from just after start-up to well into training */
        double delay = tref * (0.06 + 0.14 * tu_uniform(&r));
        struct timespec ts = {(time_t)delay, (long)((delay - (long)delay) * 1e9)};
        nanosleep(&ts, NULL);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) { /* finished before the kill */
            finished_early++;
            break;
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        kills += WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
        if (access(ckf, F_OK) != 0) continue; /* killed before the first save */
        char why[512] = "";
        long s = ckpt_step(ckf, why, sizeof why);
        CHECK(s >= 0, "kill %d after %.2fs: checkpoint not loadable: %s", k, delay, why);
        CHECK(s >= last, "kill %d: checkpoint went back from step %ld to %ld", k, last, s);
        if (s >= 0) loadable++, last = s;
    }
    fprintf(stderr, "  kill -9: %d kills, %d loadable checkpoints after them, last at step %ld%s\n",
            kills, loadable, last, finished_early ? " (the run finished before the last kill)" : "");
    CHECK(kills + finished_early >= 5 && loadable >= 3, "%d kills, %d checks", kills, loadable);
    char why[512] = "";
    rc = run(data, "%s --checkpoint-dir '%s'", opts, ck);
    CHECK(rc == 0, "final resume: exit %d: %s", rc, errtext);
    CHECK(last < 0 || strstr(outtext, "resuming from") || strstr(outtext, "done at"),
          "final run did not resume: %s", outtext);
    CHECK(ckpt_step(ckf, why, sizeof why) == 48, "final checkpoint step: %s", why);
    CHECK(same_tensors(ckf, reff), "killed-and-resumed run differs from the uninterrupted one");
}

int main(void) {
    TEST_RUN(test_unwritable_ckdir);
    TEST_RUN(test_flipped_byte);
    TEST_RUN(test_corrupt_jpeg);
    TEST_RUN(test_disk_full);
    TEST_RUN(test_kill9);
    return tu_finish();
}
