/* Bit-identity of the training trajectory: two 5-step pretraining runs of a tiny network on
 * builtin:shapes (one compute thread with the loss in Gram form, two threads with the direct
 * form), each checkpoint's tensors (parameters, BN running statistics, LARS momentum) hashed
 * one by one and compared with the fixture made by an earlier build. A refactor that does not
 * mean to change the numbers must keep this passing.
 *
 * The bits depend on what decides the order of the floating-point operations: the kernel path
 * in use, the GEMM's KC on that path (the depth of its partial sums, which follows the CPU's L1
 * size: MC and NC only partition the output), the Winograd setting, whether glibc's libm may pick
 * its FMA variants, and a sanitizer build's -O1. The key names exactly those, so a fixture made
 * on one CPU checks every other CPU that shares them (measured: gcc 12 and clang 14 give the same
 * bits, and so do Zen 4 and Intel family 6 model 207 on the avx2 and generic paths, where their
 * KC agree; their avx512 KC differ, 256 against 384, and so do their bits). Fixtures live in
 * tests/fixtures/trajectory/<XXH64 of the key>.txt, the key in its header. A build whose key has
 * no fixture is counted as skipped, with the reason; make one with the previous code to compare.
 *
 * When it fails after an INTENTIONAL numerical change (another GEMM summation order, a new
 * kernel), regenerate the fixture with tools/regen-trajectory-fixture.sh and say so in the
 * commit; when it fails after a refactor, the refactor changed the trajectory: find out why.
 * BARLOW_REGEN_FIXTURE=1 makes this program write the fixture instead of checking it. The
 * program is $BUILD/barlow (or $BARLOW_BIN). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "barlow/error.h"
#include "barlow/safetensors.h"
#include "barlow/cpu.h"
#include "testutil.h"
#include "ops/gemm/gemm_internal.h"

#define FIXTURE_DIR "tests/fixtures/trajectory"
#define TINY "--arch resnet18-cifar:w=0.25 --projector 64-64 --preset cifar --batch-size 16 " \
             "--workers 1 --warmup-epochs 1 --epochs 2 --max-steps 5 --print-freq 1 --seed 7"

static const struct {
    const char *tag, *args;
} runs[] = {
    {"threads1-gram", "--threads 1 --loss-form gram"},
    {"threads2-direct", "--threads 2 --loss-form direct"},
};

static char bin[1024], fixture[256], fingerprint_text[8192];

/* The key of this build and CPU (see the top); the compiler and CPU model go into the fixture's
 * header for the record only. */
static char record_text[4096];
static void fingerprint(void) {
    const bt_cpu_info *ci = bt_cpu();
    const bt_isa isa = bt_isa_current();
    const char *kc = getenv("BARLOW_GEMM_KC"); /* the program reads it too (src/cli/main.c) */
    if (kc && *kc) bt_gemm_set_blocking(0, atoi(kc), 0);
    const bt_gemm_blocking blk = bt_gemm_blocking_for(isa);
    const char *wino = getenv("BT_CONV_WINOGRAD");
    int fma = 0, avx2 = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    char model[256] = "?";
    if (f) {
        char line[8192];
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "model name", 10) && model[0] == '?') {
                char *c = strchr(line, ':');
                if (c) snprintf(model, sizeof model, "%s", c + 2);
                model[strcspn(model, "\n")] = 0;
            }
            if (!strncmp(line, "flags", 5)) {
                fma = strstr(line, " fma ") != NULL;
                avx2 = strstr(line, " avx2 ") != NULL;
                break;
            }
        }
        fclose(f);
    }
    snprintf(fingerprint_text, sizeof fingerprint_text,
             "trajectory key 2 | isa %s | gemm kc %d | winograd %s | libm fma %d avx2 %d%s",
             bt_isa_name(isa), blk.kc, wino && *wino ? wino : "default", fma, avx2,
             TU_SANITIZED ? " | sanitizer build" : ""); /* -O1: its own bits */
    snprintf(record_text, sizeof record_text, "%s; %s family %d model %d (%s), L1d %zu KiB",
             __VERSION__, ci->vendor[0] ? ci->vendor : "non-x86", ci->family, ci->model, model,
             ci->l1d / 1024);
    if (kc && *kc)
        snprintf(record_text + strlen(record_text), sizeof record_text - strlen(record_text),
                 ", KC forced by BARLOW_GEMM_KC=%s", kc);
    snprintf(fixture, sizeof fixture, "%s/%016llx.txt", FIXTURE_DIR,
             (unsigned long long)bt_checksum64(fingerprint_text, strlen(fingerprint_text), 0));
}

/* Runs one pretraining and appends "tag name dtype nbytes hash" lines for every tensor of its
 * checkpoint to out. Returns 0 on success. */
static int run_and_hash(int k, FILE *out) {
    char dir[1200], cmd[4096], ck[1300];
    snprintf(dir, sizeof dir, "%s/%s", tu_tmpdir(), runs[k].tag);
    snprintf(cmd, sizeof cmd, "'%s' pretrain builtin:shapes:train=96,test=16 " TINY
             " %s --checkpoint-dir '%s' >'%s.out' 2>&1", bin, runs[k].args, dir, dir);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "  %s failed (status %d); output in %s.out\n", cmd, st, dir);
        return 1;
    }
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", dir);
    bt_st_file *f;
    if (bt_st_open(&f, ck) != BT_OK) {
        fprintf(stderr, "  %s\n", bt_error());
        return 1;
    }
    const char *step = bt_st_meta(f, "step");
    fprintf(out, "%s step %s\n", runs[k].tag, step ? step : "?");
    for (int i = 0; i < bt_st_count(f); i++) {
        const bt_st_tensor *t = bt_st_at(f, i);
        fprintf(out, "%s %s %s %zu %016llx\n", runs[k].tag, t->name, bt_st_dtype_name(t->dtype),
                t->nbytes, (unsigned long long)bt_checksum64(t->data, t->nbytes, 0));
    }
    bt_st_close(f);
    return 0;
}

static void test_trajectory_bit_identical(void) {
    const char *b = getenv("BARLOW_BIN"), *build = getenv("BUILD");
    if (b) snprintf(bin, sizeof bin, "%s", b);
    else snprintf(bin, sizeof bin, "%s/barlow", build ? build : "build");
    CHECK(access(bin, X_OK) == 0, "%s not found (build it first)", bin);
    if (access(bin, X_OK) != 0) return;
    int regen = getenv("BARLOW_REGEN_FIXTURE") && !strcmp(getenv("BARLOW_REGEN_FIXTURE"), "1");
    fingerprint();
    if (!regen && access(fixture, R_OK) != 0) {
        tu_skip("no trajectory fixture for this key (%s: %s); make one with the previous code: "
                "tools/regen-trajectory-fixture.sh", fixture, fingerprint_text);
        return;
    }
    if (regen && system("mkdir -p " FIXTURE_DIR) != 0) CHECK(0, "cannot make %s", FIXTURE_DIR);
    char got_path[1200];
    snprintf(got_path, sizeof got_path, "%s/trajectory.txt", tu_tmpdir());
    FILE *out = fopen(regen ? fixture : got_path, "w");
    CHECK(out, "cannot write %s", regen ? fixture : got_path);
    if (!out) return;
    if (regen)
        fprintf(out, "# Made by tools/regen-trajectory-fixture.sh (tests/test_trajectory.c): per\n"
                     "# run, the checkpoint tensors' XXH64 after 5 steps. Regenerate only after an\n"
                     "# intentional numerical change.\n# key: %s\n# made with: %s\n",
                fingerprint_text, record_text);
    int bad = 0;
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) bad |= run_and_hash((int)k, out);
    fclose(out);
    CHECK(!bad, "a pretraining run failed");
    if (bad || regen) {
        if (regen) fprintf(stderr, "  wrote %s\n", fixture);
        return;
    }
    char *want = tu_slurp(fixture, NULL), *got = tu_slurp(got_path, NULL);
    CHECK(want && got, "cannot read %s or %s", fixture, got_path);
    if (want && got) {
        char *w = want;
        while (*w == '#') w = strchr(w, '\n') ? strchr(w, '\n') + 1 : w + strlen(w);
        int same = !strcmp(w, got);
        CHECK(same, "the 5-step trajectory is no longer bit-identical to %s (got %s). After an "
              "intentional numerical change run tools/regen-trajectory-fixture.sh and commit "
              "the fixture; otherwise the change altered the training numbers", fixture, got_path);
        if (!same) {
            /* name the first tensors that moved */
            char *gl = got, *wl = w;
            int shown = 0;
            while (*gl && *wl && shown < 5) {
                char *ge = strchr(gl, '\n'), *we = strchr(wl, '\n');
                if (!ge || !we) break;
                if (ge - gl != we - wl || memcmp(gl, wl, (size_t)(ge - gl)))
                    fprintf(stderr, "  want %.*s\n  got  %.*s\n", (int)(we - wl), wl,
                            (int)(ge - gl), gl), shown++;
                gl = ge + 1;
                wl = we + 1;
            }
        }
    }
    free(want);
    free(got);
}

int main(void) {
    TEST_RUN(test_trajectory_bit_identical);
    return tu_finish();
}
