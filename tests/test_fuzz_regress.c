/* Regression test for the fuzz harnesses: every harness in fuzz/ is compiled into this
 * program (its entry point renamed through FUZZ_ENTRY) and run over every file of its seed
 * corpus fuzz/corpus/<target>/ and its saved reproducers fuzz/crashes/<target>/, so a crash
 * found once by libFuzzer stays fixed in the ordinary (and the SAN=1) test build. It also
 * checks that the seeds are valid inputs (else the fuzzer would start from nothing) and that
 * the saved reproducers are refused with the intended error. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/image.h"
#include "barlow/model.h"
#include "barlow/safetensors.h"
#include "cli/args.h"
#include "testutil.h"

/* The CLI sources are not in libbarlow.a; the option parser is small and self-contained. */
#include "cli/args.c"

#define FUZZ_ENTRY fuzz_safetensors_entry
#include "../fuzz/fuzz_safetensors.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_cifar_entry
#include "../fuzz/fuzz_cifar.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_tar_entry
#include "../fuzz/fuzz_tar.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_image_entry
#include "../fuzz/fuzz_image.c"
#undef FUZZ_ENTRY
#define FUZZ_ENTRY fuzz_args_entry
#include "../fuzz/fuzz_args.c"
#undef FUZZ_ENTRY

static const struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
    int min_seeds;
} targets[] = {
    {"safetensors", fuzz_safetensors_entry, 3}, {"cifar", fuzz_cifar_entry, 2},
    {"tar", fuzz_tar_entry, 3},                 {"image", fuzz_image_entry, 8},
    {"args", fuzz_args_entry, 5},
};

/* fuzz/ relative to the working directory (tests run from the repository root). */
static const char *fuzz_root(void) {
    const char *r = getenv("BARLOW_FUZZ_DIR");
    return r ? r : "fuzz";
}

/* Sorted regular files of dir, NULL-terminated (NULL if the directory does not exist). */
static char **list_dir(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = calloc(1025, sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d)) && *n < 1024) {
        char p[1024];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) v[(*n)++] = strdup(p);
    }
    closedir(d);
    for (int i = 1; i < *n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Every harness over every seed and every saved reproducer: each must return 0 and not
 * crash (a crash ends this program, which counts as a failure). */
static void test_replay_all(void) {
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        for (int kind = 0; kind < 2; kind++) {
            char dir[512];
            snprintf(dir, sizeof dir, "%s/%s/%s", fuzz_root(), kind ? "crashes" : "corpus",
                     targets[t].name);
            int n;
            char **files = list_dir(dir, &n);
            if (!kind)
                CHECK(n >= targets[t].min_seeds, "%s: %d seed files (want >= %d)", dir, n,
                      targets[t].min_seeds);
            for (int i = 0; i < n; i++) {
                size_t len;
                uint8_t *b = (uint8_t *)tu_slurp(files[i], &len);
                CHECK(b != NULL, "cannot read %s", files[i]);
                if (!b) continue;
                int rc = targets[t].fn(b, len);
                CHECK(rc == 0, "%s: harness returned %d", files[i], rc);
                free(b);
            }
            free_list(files, n);
        }
    }
}

/* The seeds must be accepted by the readers, or fuzzing would only explore error paths. */
static void test_seeds_valid(void) {
    char dir[512];
    int n;
    snprintf(dir, sizeof dir, "%s/corpus/safetensors", fuzz_root());
    char **files = list_dir(dir, &n);
    for (int i = 0; i < n; i++) {
        bt_st_file *f;
        int rc = bt_st_open(&f, files[i]);
        CHECK(rc == 0, "%s: %s", files[i], bt_error());
        if (!rc) {
            CHECK(bt_st_count(f) >= 2, "%s: %d tensors", files[i], bt_st_count(f));
            bt_st_close(f);
        }
    }
    free_list(files, n);

    snprintf(dir, sizeof dir, "%s/corpus/image", fuzz_root());
    files = list_dir(dir, &n);
    for (int i = 0; i < n; i++) {
        size_t len;
        uint8_t *b = (uint8_t *)tu_slurp(files[i], &len);
        bt_image im = {0};
        int rc = b ? bt_decode_image(&im, b, len, files[i]) : -1;
        CHECK(rc == 0 && im.w >= 3 && im.w <= 9 && im.h >= 3 && im.h <= 9, "%s: rc %d %dx%d %s",
              files[i], rc, im.w, im.h, bt_error());
        bt_image_free(&im);
        free(b);
    }
    free_list(files, n);

    /* tar shards: each holds two samples, or one with a long (GNU / pax) name */
    snprintf(dir, sizeof dir, "%s/corpus/tar", fuzz_root());
    files = list_dir(dir, &n);
    for (int i = 0; i < n; i++) {
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s/seed.tar", tu_tmpdir());
        size_t len;
        uint8_t *b = (uint8_t *)tu_slurp(files[i], &len);
        FILE *o = fopen(tmp, "wb");
        CHECK(b && o && fwrite(b, 1, len, o) == len, "copy %s", files[i]);
        if (o) fclose(o);
        free(b);
        bt_dataset *ds;
        int rc = bt_dataset_open(&ds, tmp, "train");
        CHECK(rc == 0, "%s: %s", files[i], bt_error());
        if (rc) continue;
        CHECK(bt_dataset_size(ds) >= 1, "%s: %zu samples", files[i], bt_dataset_size(ds));
        bt_image im = {0};
        for (size_t k = 0; k < bt_dataset_size(ds); k++) {
            rc = bt_dataset_load(ds, k, &im);
            CHECK(rc == 0, "%s item %zu: %s", files[i], k, bt_error());
        }
        if (strstr(files[i], "long_names") || strstr(files[i], "pax"))
            CHECK(strlen(bt_dataset_item_name(ds, 0)) > 100, "%s: long name lost: %s", files[i],
                  bt_dataset_item_name(ds, 0));
        bt_image_free(&im);
        bt_dataset_close(ds);
    }
    free_list(files, n);

    /* CIFAR: three records without meta; the meta seed names three classes */
    snprintf(dir, sizeof dir, "%s/corpus/cifar/three_records.bin", fuzz_root());
    size_t len;
    uint8_t *b = (uint8_t *)tu_slurp(dir, &len);
    CHECK(b && len == 1 + 3 * 3073, "%s: %zu bytes", dir, len);
    if (b) {
        char d2[600];
        snprintf(d2, sizeof d2, "%s/cifar", tu_tmpdir());
        mkdir(d2, 0700);
        char p[700];
        snprintf(p, sizeof p, "%s/test_batch.bin", d2);
        FILE *o = fopen(p, "wb");
        if (o) fwrite(b + 1, 1, len - 1, o), fclose(o);
        bt_dataset *ds;
        int rc = bt_dataset_open(&ds, d2, "test");
        CHECK(rc == 0 && bt_dataset_size(ds) == 3, "%s: %s", p, bt_error());
        if (!rc) bt_dataset_close(ds);
        free(b);
    }

    /* args: the tiny command line parses and its model spec is valid */
    snprintf(dir, sizeof dir, "%s/corpus/args/tiny.txt", fuzz_root());
    b = (uint8_t *)tu_slurp(dir, &len);
    CHECK(b && len > 10 && memchr(b, 0, len), "%s", dir);
    if (b) {
        bt_model_cfg c;
        const char *arch = (const char *)b, *proj = arch + strlen(arch) + 1;
        CHECK(bt_model_cfg_parse(&c, arch, proj) == 0 && c.nproj == 2 && c.cifar,
              "%s: %s", dir, bt_error());
        free(b);
    }
}

/* The reproducers libFuzzer found (fuzz/crashes/): refused with the intended message. */
static void test_crashes_refused(void) {
    char dir[512];
    int n;
    snprintf(dir, sizeof dir, "%s/crashes/image", fuzz_root());
    char **files = list_dir(dir, &n);
    CHECK(n >= 2, "%s: %d reproducers", dir, n);
    for (int i = 0; i < n; i++) {
        size_t len;
        uint8_t *b = (uint8_t *)tu_slurp(files[i], &len);
        bt_image im = {0};
        int rc = b ? bt_decode_image(&im, b, len, "bomb") : 0;
        if (strstr(files[i], "oom-"))
            CHECK(rc == BT_EFORMAT && strstr(bt_error(), "pixel limit") && !im.px,
                  "%s: rc %d '%s'", files[i], rc, bt_error());
        bt_image_free(&im);
        free(b);
    }
    free_list(files, n);
}

int main(void) {
    TEST_RUN(test_seeds_valid);
    TEST_RUN(test_replay_all);
    TEST_RUN(test_crashes_refused);
    return tu_finish();
}
