/* Helpers shared by the fuzz harnesses: the readers under test take paths, so each input is
 * written to a file in a private scratch directory (on /dev/shm when it exists, so an
 * execution costs no disk I/O). Everything here is static: each harness .c file includes
 * this header, and tests/test_fuzz_regress.c includes every harness into one program. */
#ifndef BARLOW_FUZZ_UTIL_H
#define BARLOW_FUZZ_UTIL_H
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The entry point: LLVMFuzzerTestOneInput under libFuzzer; the regression test defines
 * FUZZ_ENTRY to a per-target name before including a harness. */
#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#endif

static char fuzz_dir_[256];
static char fuzz_files_[8][320]; /* files written so far, removed at exit */
static int fuzz_nfiles_;

static inline void fuzz_cleanup_(void) {
    for (int i = 0; i < fuzz_nfiles_; i++) unlink(fuzz_files_[i]);
    if (fuzz_dir_[0]) rmdir(fuzz_dir_);
}

/* The scratch directory, made on first use. Aborts if it cannot be made: a harness that
 * silently tests nothing would be worse. */
static inline const char *fuzz_dir(void) {
    if (fuzz_dir_[0]) return fuzz_dir_;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/barlow-fuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_dir_)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup_);
    return fuzz_dir_;
}

/* Writes n bytes to <scratch>/<name> (replacing it) and returns the path (static storage,
 * one slot per distinct name). */
static inline const char *fuzz_write(const char *name, const void *p, size_t n) {
    char path[320];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    int slot = -1;
    for (int i = 0; i < fuzz_nfiles_; i++)
        if (!strcmp(fuzz_files_[i], path)) slot = i;
    if (slot < 0) {
        if (fuzz_nfiles_ == 8) abort();
        slot = fuzz_nfiles_++;
        snprintf(fuzz_files_[slot], sizeof fuzz_files_[slot], "%s", path);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w <= 0) {
            perror(path);
            abort();
        }
        b += w, n -= (size_t)w;
    }
    close(fd);
    return fuzz_files_[slot];
}

static inline void fuzz_remove(const char *name) {
    char path[320];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    unlink(path);
}

#endif
