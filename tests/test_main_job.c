/* The README's first command, end to end in its reduced form: `QUICK=1 bash tools/main-job.sh
 * DIR` installs what is missing (nothing, in CI), builds, pretrains on builtin:shapes,
 * evaluates the learned features and the same network at random initialisation with kNN and
 * a linear probe, draws the pictures and writes DIR/summary.txt. The test reads the summary's
 * numbers back: the learned features must beat random initialisation by a clear margin in
 * both columns, and every picture must be a PNG. A few minutes on 2 cores; it tests the script,
 * not the library's memory safety, so the sanitizer build skips it (the plain suite runs it). */
#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds the line starting with `label` and reads the two percentages on it. */
static int read_row(const char *text, const char *label, double *knn, double *lin) {
    const char *p = strstr(text, label);
    if (!p) return -1;
    p += strlen(label);
    return sscanf(p, " %lf%% %lf%%", knn, lin) == 2 ? 0 : -1;
}

static int is_png(const char *path) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(b, sig, 8);
}

static void test_quick_main_job(void) {
    if (TU_SANITIZED) {
        tu_skip("sanitizer build: this checks learning, not memory safety (the plain suite runs it)");
        return;
    }
    char run[1200], cmd[4096], path[1400];
    snprintf(run, sizeof run, "%s/main-job", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "QUICK=1 bash tools/main-job.sh '%s' > '%s.log' 2>&1", run, run);
    int st = system(cmd);
    snprintf(path, sizeof path, "%s.log", run);
    if (st != 0) {
        FILE *f = fopen(path, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) fputs(line, stderr);
        if (f) fclose(f);
    }
    CHECK(st == 0, "QUICK=1 bash tools/main-job.sh exited with status %d", st);
    snprintf(path, sizeof path, "%s/summary.txt", run);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "no %s", path);
    if (!f) return;
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    printf("%s", text);
    double kl = -1, ll = -1, kr = -1, lr = -1;
    CHECK(read_row(text, "learned features", &kl, &ll) == 0, "no 'learned features' row");
    CHECK(read_row(text, "random initialisation", &kr, &lr) == 0, "no 'random initialisation' row");
    CHECK(kl >= kr + 10.0, "kNN: learned %.1f%% does not beat random init %.1f%% by 10 points", kl,
          kr);
    CHECK(ll >= lr + 10.0, "linear: learned %.1f%% does not beat random init %.1f%% by 10 points",
          ll, lr);
    const char *pics[] = {"loss.png", "lr.png", "knn.png", "corr.png", "pca.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", run, pics[i]);
        CHECK(is_png(path), "%s is not a PNG", path);
    }
}

int main(void) {
    TEST_RUN(test_quick_main_job);
    return tu_finish();
}
