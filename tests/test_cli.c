/* The barlow program's front door: --help lists every command, help COMMAND prints options
 * with defaults, --version, suggestions for mistyped commands and options, a bad
 * BT_CONV_WINOGRAD or BARLOW_GEMM_KC refused in one line, and
 * augment-preview writes a valid PNG grid of the stated size. */
#include "testutil.h"
#include <png.h>
#include <stdlib.h>
#include <string.h>

static char bin[600], out[65536];

/* Runs `bin args`, output (stdout+stderr) in out; returns the exit status. */
static int run(const char *args) {
    char cmd[2048], path[700];
    snprintf(path, sizeof path, "%s/out.txt", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", bin, args, path);
    int st = system(cmd);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
    }
    return WEXITSTATUS(st);
}

static void help_and_version(void) {
    CHECK(run("--help") == 0, "--help failed");
    const char *cmds[] = {"pretrain", "knn", "linear", "finetune", "export", "embed", "report", "augment-preview"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        CHECK(strstr(out, cmds[i]) != NULL, "--help does not list %s", cmds[i]);
    CHECK(run("--version") == 0 && strstr(out, "barlow 0."), "--version: %s", out);
    CHECK(run("help pretrain") == 0 && strstr(out, "--batch-size") && strstr(out, "(default: 2048)"),
          "help pretrain lacks options with defaults: %.200s", out);
    CHECK(run("") == 2, "no command should exit 2");
}

static void suggestions(void) {
    CHECK(run("pretrian x") == 2 && strstr(out, "did you mean 'pretrain'"), "command suggestion: %s", out);
    CHECK(run("pretrain builtin:shapes --batchsize 8") == 2 && strstr(out, "--batch-size"),
          "option suggestion: %s", out);
}

/* An environment variable the program reads at start: each bad value is refused in one line
 * naming the variable and containing `says`, with exit 2, before any work; each good value is
 * taken. */
static void env_values(const char *var, const char *const *bad, size_t nbad,
                       const char *const *good, size_t ngood, const char *says) {
    char named[128];
    snprintf(named, sizeof named, "%s=", var);
    for (size_t i = 0; i < nbad; i++) {
        setenv(var, bad[i], 1);
        int rc = run("--version");
        CHECK(rc == 2 && strstr(out, named) && strstr(out, says) &&
                  strchr(out, '\n') == out + strlen(out) - 1,
              "%s='%s': exit %d, '%s'", var, bad[i], rc, out);
    }
    for (size_t i = 0; i < ngood; i++) {
        setenv(var, good[i], 1);
        CHECK(run("--version") == 0, "%s=%s refused: %s", var, good[i], out);
    }
    unsetenv(var);
}

/* BT_CONV_WINOGRAD takes 0, 2, 4, 24 or 244. */
static void winograd_env(void) {
    static const char *const bad[] = {"3", "1", "", "F4", "42", "2444"};
    static const char *const good[] = {"0", "2", "4", "24", "244"};
    env_values("BT_CONV_WINOGRAD", bad, sizeof bad / sizeof *bad, good,
               sizeof good / sizeof *good, "244");
}

/* BARLOW_GEMM_KC (tests and tuning) takes a multiple of 8 from 8 to 2048 (empty: unset). */
static void gemm_kc_env(void) {
    static const char *const bad[] = {"0", "7", "250", "2056", "-8", "256x", "x",
                                      "99999999999999999999"};
    static const char *const good[] = {"8", "256", "2048", ""};
    env_values("BARLOW_GEMM_KC", bad, sizeof bad / sizeof *bad, good, sizeof good / sizeof *good,
               "multiple of 8");
}

static void augment_preview_png(void) {
    char args[1024], path[700];
    snprintf(path, sizeof path, "%s/views.png", tu_tmpdir());
    snprintf(args, sizeof args, "augment-preview builtin:shapes --preset cifar --count 4 --out %s", path);
    CHECK(run(args) == 0, "augment-preview failed: %s", out);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "no %s", path);
    if (!f) return;
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (setjmp(png_jmpbuf(p))) {
        CHECK(0, "invalid PNG");
    } else {
        png_init_io(p, f);
        png_read_info(p, info);
        int w = (int)png_get_image_width(p, info), h = (int)png_get_image_height(p, info);
        /* 4 rows of (original, view 1, view 2): three columns, four rows */
        CHECK(w > 0 && h > 0 && w < h * 2 && h > w, "unexpected grid size %dx%d", w, h);
        printf("  augment-preview grid: %dx%d\n", w, h);
    }
    png_destroy_read_struct(&p, &info, NULL);
    fclose(f);
    CHECK(run("augment-preview /nonexistent --out x.png") != 0 && strstr(out, "/nonexistent"),
          "a missing DATA is not named: %s", out);
}

int main(void) {
    const char *b = getenv("BUILD");
    snprintf(bin, sizeof bin, "%s/barlow", b ? b : "build");
    TEST_RUN(help_and_version);
    TEST_RUN(suggestions);
    TEST_RUN(winograd_env);
    TEST_RUN(gemm_kc_env);
    TEST_RUN(augment_preview_png);
    return tu_finish();
}
