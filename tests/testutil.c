/* Test harness implementation: case bookkeeping, seeded data, finite differences. */
#include "testutil.h"
#include "barlow/cpu.h"
#include "barlow/error.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int tu_case_failed;
static int tu_case_skipped;
static char tu_skip_why[512];
static int tu_passed, tu_failed, tu_skipped;
static char tu_tmp[512];

/* BARLOW_ISA (avx512|avx2|generic) forces the kernels' path for the whole program, as the CLI
 * does: read here because the library reads no environment. A path the CPU lacks is an
 * error, not a silent fallback (exit status 2). */
static void tu_select_isa(void) {
    static int done;
    if (done) return;
    done = 1;
    const char *isa = getenv("BARLOW_ISA");
    if (isa && *isa && bt_isa_select(isa) != BT_OK) {
        fprintf(stderr, "BARLOW_ISA: %s\n", bt_error());
        exit(2);
    }
}

static int tu_only_matched;

void tu_run(const char *name, void (*fn)(void)) {
    tu_select_isa();
    const char *only = getenv("TU_ONLY"); /* development: run only the cases named so */
    if (only && only[0] && !strstr(name, only)) return;
    tu_only_matched = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tu_case_failed = 0;
    tu_case_skipped = 0;
    fn();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    if (tu_case_failed) {
        tu_failed++;
        printf("FAIL %s (%.2fs)\n", name, s);
    } else if (tu_case_skipped) {
        tu_skipped++;
        printf("skip %s: %s\n", name, tu_skip_why);
    } else {
        tu_passed++;
        printf("ok   %s (%.2fs)\n", name, s);
    }
    fflush(stdout);
}

int tu_finish(void) {
    if (tu_tmp[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_tmp);
        if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tu_tmp);
    }
    const char *only = getenv("TU_ONLY");
    if (only && only[0] && !tu_only_matched) {
        printf("TU_ONLY=%s matches no case of this program\n", only);
        tu_failed++;
    }
    printf("%d passed, %d failed, %d skipped\n", tu_passed, tu_failed, tu_skipped);
    return tu_failed ? 1 : 0;
}

void tu_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tu_skip_why, sizeof tu_skip_why, fmt, ap);
    va_end(ap);
    tu_case_skipped = 1;
}

int tu_skip_without(const char *mod) {
    static char known[8][32];
    static int have[8], nknown;
    int i = 0;
    while (i < nknown && strcmp(known[i], mod)) i++;
    if (i == nknown) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import %s' >/dev/null 2>&1", tu_python(), mod);
        int ok = system(cmd) == 0;
        if (nknown == 8) return ok ? 0 : (tu_skip("Python module %s cannot be imported by %s", mod, tu_python()), 1);
        snprintf(known[nknown], sizeof known[nknown], "%s", mod);
        have[nknown++] = ok;
    }
    if (!have[i]) tu_skip("Python module %s cannot be imported by %s", mod, tu_python());
    return !have[i];
}

tu_parity_res tu_parity_eval(const float *ours, const double *ref, const float *peer, size_t n,
                             size_t inner, size_t ngroups) {
    const double u = 0x1p-24;
    tu_parity_res res = {0, 0, 0, 0, 0};
    if (inner == 0) inner = 1;
    if (ngroups == 0) ngroups = 1;
    /* PyTorch's largest error over a handful of values is a poor estimate of what float32
     * allows there: groups of fewer than TU_MIN_GROUP values merge into one. */
    if (n / ngroups < TU_MIN_GROUP) inner = n ? n : 1, ngroups = 1;
    double *e = tu_xcalloc(ngroups, sizeof(double)), *m = tu_xcalloc(ngroups, sizeof(double));
    for (size_t j = 0; j < n; j++) {
        size_t g = (j / inner) % ngroups;
        double ej = fabs((double)peer[j] - ref[j]);
        if (ej > e[g] || ej != ej) e[g] = ej != ej ? INFINITY : ej;
        if (fabs(ref[j]) > m[g]) m[g] = fabs(ref[j]);
    }
    for (size_t g = 0; g < ngroups; g++)
        if (TU_ULP_FLOOR * u * m[g] > e[g]) e[g] = TU_ULP_FLOOR * u * m[g];
    for (size_t j = 0; j < n; j++) {
        size_t g = (j / inner) % ngroups;
        double d = fabs((double)ours[j] - ref[j]);
        double den = e[g] + u * fabs(ref[j]) / TU_PARITY_K;
        double q = d != d ? INFINITY : den > 0 ? d / den : (d > 0 ? INFINITY : 0);
        if (q > res.q) res.q = q, res.at = j, res.d = d, res.e = e[g], res.r = ref[j];
    }
    free(e);
    free(m);
    return res;
}

double tu_parity_check(const char *what, const float *ours, const double *ref, const float *peer,
                       size_t n, size_t inner, size_t ngroups, double k) {
    tu_parity_res r = tu_parity_eval(ours, ref, peer, n, inner, ngroups);
    CHECK(r.q <= k, "%s[%zu]: |ours-ref| %.3g is %.3g x PyTorch's float32 error %.3g (ref %.6g; "
          "allowed %g x)", what, r.at, r.d, r.q, r.e, r.r, k);
    return r.q;
}

uint64_t tu_next(tu_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
double tu_uniform(tu_rng *r) { return (tu_next(r) >> 11) * (1.0 / 9007199254740992.0); }
double tu_normal(tu_rng *r) {
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
void tu_fill_f32(float *x, size_t n, tu_rng *r, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * tu_normal(r));
}
void tu_fill_f64(double *x, size_t n, tu_rng *r, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_normal(r);
}
double tu_maxabsdiff_f32(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}
double tu_maxabsdiff_f64(const double *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}
double tu_maxabs_f32(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}
double tu_maxabs_f64(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

double tu_fd_check(double (*loss)(void *ctx), void *ctx, double *x, const double *grad,
                   size_t n, double h, size_t max_checks) {
    double gmax = tu_maxabs_f64(grad, n), err = 0;
    if (gmax < 1e-8) gmax = 1e-8;
    size_t stride = n > max_checks ? n / max_checks : 1;
    for (size_t i = 0; i < n; i += stride) {
        double x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2 * h);
        double e = fabs(fd - grad[i]) / gmax;
        if (e > err || e != e) err = e != e ? INFINITY : e;
    }
    return err;
}

const char *tu_shared_data(void) {
    const char *e = getenv("BARLOW_SHARED_DATA");
    return e ? e : "../shared/data";
}
const char *tu_python(void) {
    const char *e = getenv("BARLOW_PYTHON");
    return e ? e : "/usr/bin/python3";
}
const char *tu_tmpdir(void) {
    if (!tu_tmp[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(tu_tmp, sizeof tu_tmp, "%s/barlow-test-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(tu_tmp)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tu_tmp;
}

const char *tu_cli_bin(void) {
    static char bin[1024];
    const char *b = getenv("BARLOW_BIN"), *build = getenv("BUILD");
    if (b) snprintf(bin, sizeof bin, "%s", b);
    else snprintf(bin, sizeof bin, "%s/barlow", build ? build : "build");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "  %s not found (build it first)\n", bin);
        return NULL;
    }
    return bin;
}

const char *tu_cli_cifar(const char *wildcards) {
    static char data[1100];
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/data' && tar xzf '%s/cifar10-jpeg.tar.gz' -C '%s/data' "
             "--wildcards %s", tu_tmpdir(), tu_shared_data(), tu_tmpdir(), wildcards);
    if (system(cmd) != 0) {
        fprintf(stderr, "  cannot extract the CIFAR-10 subset: %s\n", cmd);
        return NULL;
    }
    snprintf(data, sizeof data, "%s/data/cifar10", tu_tmpdir());
    return data;
}

const char *tu_tmp_path(const char *name) {
    static char buf[8][1100];
    static int k = 0;
    char *p = buf[k++ % 8];
    snprintf(p, 1100, "%s/%s", tu_tmpdir(), name);
    return p;
}

/* The file at path into buf (cap bytes, NUL-terminated; empty if unreadable). */
void tu_read_into(const char *path, char *buf, size_t cap) {
    if (!buf || !cap) return;
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

int tu_cli_pretrain(char *out, char *err, size_t cap, const char *env, const char *bin,
                    const char *data, const char *args) {
    char cmd[8192], outf[1100], errf[1100];
    snprintf(outf, sizeof outf, "%s/stdout.txt", tu_tmpdir());
    snprintf(errf, sizeof errf, "%s/stderr.txt", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "%s'%s' pretrain '%s' %s >'%s' 2>'%s'", env, bin, data, args, outf,
             errf);
    int st = system(cmd);
    tu_read_into(outf, out, cap);
    tu_read_into(errf, err, cap);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *tu_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    if (b) b[sz] = 0;
    if (n) *n = b ? (size_t)sz : 0;
    fclose(f);
    return b;
}

void *tu_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
