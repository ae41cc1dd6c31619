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

/* Runs case fn (only those whose name contains $TU_ONLY when that is set: for development;
 * a TU_ONLY that matches no case fails the program). */
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
/* Prints "N passed, M failed, K skipped" for this program and returns its exit status. */
int tu_finish(void);
/* Marks the current case skipped (it cannot run here: no MPI, sanitizer build, no PyTorch),
 * with the reason printed. A skipped case is counted apart, never as a pass; a case that also
 * failed a CHECK counts as failed. */
void tu_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 1 when the current case is to be skipped because Python module `mod` (e.g. "torch",
 * "onnxruntime") cannot be imported by tu_python() (the skip is recorded); 0 when it is there.
 * Each module is tried once per program. */
int tu_skip_without(const char *mod);
#define tu_skip_without_torch() tu_skip_without("torch")

/* ---- Parity with a float64 reference, judged by what float32 allows ----------------------
 * ours: barlow's float32 result; ref: the same quantity in float64 (PyTorch in double, from
 * the same float32 inputs); peer: PyTorch's own float32 result on the same inputs. Element i
 * belongs to group g(i) = (i / inner) % ngroups: one output channel of a weight or one image
 * of an activation (inner = its size, ngroups = the first dimension), one channel of an NCHW
 * tensor (inner = H*W, ngroups = C), the whole tensor (inner = n, ngroups = 1); groups of
 * fewer than TU_MIN_GROUP = 16 values are merged into one (PyTorch's largest error over a
 * handful of values says little about what float32 allows). In group g,
 *     E_g = max |peer - ref|                   (PyTorch's float32 error there)
 *     F_g = TU_ULP_FLOOR * u * max |ref|       (a floor: a float32 sum cannot beat a few
 *                                               roundings of its largest term; u = 2^-24)
 * and element i passes when
 *     |ours_i - ref_i| <= K * max(E_g, F_g) + u * |ref_i|
 * i.e. atol = K * max(E_g, F_g) and rtol = u. The worst q_i = |ours_i - ref_i| /
 * (max(E_g, F_g) + u |ref_i| / K), barlow's error in units of PyTorch's, is printed; a case
 * fails when q > K. */
#define TU_PARITY_K 8.0
#define TU_ULP_FLOOR 4.0
#define TU_MIN_GROUP 16
typedef struct {
    double q;        /* worst ratio (see above); NaN in ours gives INFINITY */
    size_t at;       /* where */
    double d, e, r;  /* |ours-ref|, PyTorch's error max(E_g, F_g) and ref there */
} tu_parity_res;
/* Computes the worst ratio over the n elements (no CHECK). */
tu_parity_res tu_parity_eval(const float *ours, const double *ref, const float *peer, size_t n,
                             size_t inner, size_t ngroups);
/* tu_parity_eval and a CHECK that q <= k, naming `what`; returns q. */
double tu_parity_check(const char *what, const float *ours, const double *ref, const float *peer,
                       size_t n, size_t inner, size_t ngroups, double k);

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
/* The whole file at path, NUL-terminated (malloc'd; NULL if it cannot be read); *n (when not
 * NULL) gets its length in bytes. */
/* The file at path into buf (cap bytes, NUL-terminated; empty if unreadable). */
void tu_read_into(const char *path, char *buf, size_t cap);
char *tu_slurp(const char *path, size_t *n);

/* ---- tests of the built program (test_pretrain, test_faults) ------------------------------ */
/* The program: $BARLOW_BIN, else $BUILD/barlow (BUILD unset: build/barlow). NULL, said on
 * stderr, when it is not executable. */
const char *tu_cli_bin(void);
/* Extracts the members of the shared CIFAR-10 tarball matching `wildcards` (one or more
 * single-quoted tar patterns) into tu_tmpdir()/data; returns that dataset's folder
 * (tu_tmpdir()/data/cifar10, static), or NULL, said on stderr. */
const char *tu_cli_cifar(const char *wildcards);
/* tu_tmpdir()/name, in one of 8 rotating static buffers. */
const char *tu_tmp_path(const char *name);
/* Runs `<env>'bin' pretrain 'data' <args>` through the shell (env: "VAR=value " prefixes or
 * ""), with stdout and stderr in tu_tmpdir()/stdout.txt and stderr.txt, then read into out
 * and err (cap bytes each, NUL-terminated; either may be NULL). Returns the exit status, or
 * -1 if the program did not exit normally. */
int tu_cli_pretrain(char *out, char *err, size_t cap, const char *env, const char *bin,
                    const char *data, const char *args);
/* calloc that never returns NULL (a test without memory stops at once, exit status 2); n may
 * be 0. */
void *tu_xcalloc(size_t n, size_t size);

#endif
