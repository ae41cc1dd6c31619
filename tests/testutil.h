/* Minimal test harness: each tests/test_*.c is its own program whose main calls TEST_RUN on
 * its cases and returns tu_finish(). A failed CHECK prints file:line and the message, marks
 * the current case failed, and the program exits non-zero. */
#ifndef BARLOW_TESTUTIL_H
#define BARLOW_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int tu_case_failed;

#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fprintf(stderr, "\n");                                                          \
            tu_case_failed = 1;                                                             \
        }                                                                                   \
    } while (0)

#define TEST_RUN(fn) tu_run(#fn, fn)

/* 1 in the AddressSanitizer build: end-to-end runs that check learning, not memory safety,
 * skip there (several times slower) and run in the plain suite. */
#if defined(__SANITIZE_ADDRESS__)
#define TU_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_SANITIZED 1
#endif
#endif
#ifndef TU_SANITIZED
#define TU_SANITIZED 0
#endif
void tu_run(const char *name, void (*fn)(void));
/* Prints "N passed, M failed" for this program and returns its exit status. */
int tu_finish(void);

/* Deterministic generator for test data (splitmix64). */
typedef struct { uint64_t s; } tu_rng;
uint64_t tu_next(tu_rng *r);
double tu_uniform(tu_rng *r);             /* [0,1) */
double tu_normal(tu_rng *r);              /* N(0,1) */
void tu_fill_f32(float *x, size_t n, tu_rng *r, double scale);
void tu_fill_f64(double *x, size_t n, tu_rng *r, double scale);

/* max |a-b| and max |b| over n elements. */
double tu_maxabsdiff_f32(const float *a, const float *b, size_t n);
double tu_maxabsdiff_f64(const double *a, const double *b, size_t n);
double tu_maxabs_f32(const float *a, size_t n);
double tu_maxabs_f64(const double *a, size_t n);

/* Finite-difference gradient check in double precision. `loss` evaluates a scalar from the
 * parameter vector x (n); `grad` holds the analytic gradient at x. Central differences with
 * step h; returns the max relative error max|fd-g| / max(1e-8, max|g|) over checked entries.
 * At most `max_checks` entries are checked (spread evenly); x is restored afterwards. */
double tu_fd_check(double (*loss)(void *ctx), void *ctx, double *x, const double *grad,
                   size_t n, double h, size_t max_checks);

/* Directory holding the shared data (../shared/data relative to the repo root), or the
 * BARLOW_SHARED_DATA environment variable. */
const char *tu_shared_data(void);
/* The system Python that has torch (/usr/bin/python3 unless BARLOW_PYTHON is set). */
const char *tu_python(void);
/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp); removed by tu_finish. */
const char *tu_tmpdir(void);
/* calloc that never returns NULL (a test without memory stops at once, exit status 2); n may
 * be 0. */
void *tu_xcalloc(size_t n, size_t size);

#endif
