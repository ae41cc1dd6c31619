/* Benchmark of barlow's sgemm (src/ops/gemm/) on each instruction-set path this CPU supports,
 * against OpenBLAS with its own core detection and with the best core type forced for the
 * path (SkylakeX for AVX-512, Haswell for AVX2), all in the same run: at 1024^3 and at the
 * GEMM shapes of one ResNet-18/CIFAR training step (batch 256, 32x32, projector 2048-2048-
 * 2048; shapes logged from bench_step's step, listed below with where they come from).
 *
 * OPENBLAS_CORETYPE is read when OpenBLAS loads, so each OpenBLAS core runs in a child
 * process (this program re-executed with --openblas-child and the variable set), one after
 * another, and reports its rates on stdout.
 * Rates are GFLOP/s (2 M N K / time) of the best of --reps timed calls after one warm-up: the
 * best, because other jobs share the machine and only slow calls down. The whole comparison
 * (our paths, then each OpenBLAS core) is repeated --rounds times and each cell keeps its
 * best, so a burst of load from a neighbour does not land on one column only.
 * Usage: bench_gemm [--threads N] [--reps R] [--rounds N] [--blocking MC,KC,NC] [--no-openblas]
 *        [--shapes 1024|all] [--precision fp32|bf16]. BARLOW_ISA restricts our side to one
 *        path; --precision bf16 rounds our operands to bf16 (bt_gemm_set_precision), against
 *        OpenBLAS's float products. */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/scratch.h"
#include "ops/gemm/gemm_internal.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *what; /* where the step uses it */
    int ta, tb, M, N, K;
    int single; /* run on one thread (the step calls it inside its own parallel loop) */
} shape;

static const shape shapes[] = {
    {"square 1024^3", 0, 0, 1024, 1024, 1024, 0},
#include "bench_gemm_shapes.inc"
};
#define NSHAPES (int)(sizeof shapes / sizeof *shapes)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    float *A, *B, *C;
} bufs;

static bufs make_bufs(void) {
    size_t amax = 0, bmax = 0, cmax = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const shape *s = &shapes[i];
        size_t a = (size_t)s->M * s->K, b = (size_t)s->K * s->N, c = (size_t)s->M * s->N;
        amax = a > amax ? a : amax, bmax = b > bmax ? b : bmax, cmax = c > cmax ? c : cmax;
    }
    bufs b = {bt_alloc(amax * 4), bt_alloc(bmax * 4), bt_alloc(cmax * 4)};
    if (!b.A || !b.B || !b.C) {
        fprintf(stderr, "bench_gemm: %s\n", bt_error());
        exit(1);
    }
    unsigned seed = 1;
    for (size_t i = 0; i < amax; i++) b.A[i] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
    for (size_t i = 0; i < bmax; i++) b.B[i] = (float)((double)rand_r(&seed) / RAND_MAX - 0.5);
    memset(b.C, 0, cmax * 4);
    return b;
}

static void call(const shape *s, const bufs *b, int openblas, int threads) {
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    if (openblas) {
        openblas_set_num_threads(s->single ? 1 : threads);
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                    s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, b->A, lda, b->B,
                    ldb, 0.0f, b->C, s->N);
    } else {
        bt_set_threads(s->single ? 1 : threads);
        bt_sgemm(s->ta ? BT_TRANS : BT_NOTRANS, s->tb ? BT_TRANS : BT_NOTRANS, s->M, s->N, s->K,
                 1.0f, b->A, lda, b->B, ldb, 0.0f, b->C, s->N);
    }
}

static double rate(const shape *s, const bufs *b, int openblas, int threads, int reps) {
    call(s, b, openblas, threads);
    double best = 1e30;
    const double flop = 2.0 * s->M * s->N * s->K;
    /* Small shapes: several calls per timing, so a timing lasts ~ a millisecond at least. */
    int inner = (int)(2e8 / flop) + 1;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        for (int i = 0; i < inner; i++) call(s, b, openblas, threads);
        const double t = (now() - t0) / inner;
        if (t < best) best = t;
    }
    return flop / best * 1e-9;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 7, rounds = 3, openblas = 1, all = 1, child = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-openblas")) openblas = 0;
        else if (!strcmp(argv[i], "--openblas-child")) child = 1;
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) all = strcmp(argv[++i], "1024") != 0;
        else if (!strcmp(argv[i], "--blocking") && i + 1 < argc) {
            int mc = 0, kc = 0, nc = 0;
            if (sscanf(argv[++i], "%d,%d,%d", &mc, &kc, &nc) != 3) {
                fprintf(stderr, "bench_gemm: --blocking MC,KC,NC\n");
                return 2;
            }
            bt_gemm_set_blocking(mc, kc, nc);
        } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            const char *v = argv[++i]; /* our side only; OpenBLAS stays float */
            if (strcmp(v, "fp32") && strcmp(v, "bf16")) {
                fprintf(stderr, "bench_gemm: --precision fp32|bf16, not '%s'\n", v);
                return 2;
            }
            bt_gemm_set_precision(strcmp(v, "bf16") ? BT_PREC_FP32 : BT_PREC_BF16);
        } else if (!strcmp(argv[i], "--a-in-place") && i + 1 < argc) {
            bt_gemm_set_a_in_place(atoi(argv[++i])); /* 1 on, 0 off, -1 the default rule */
        } else {
            fprintf(stderr, "usage: bench_gemm [--threads N] [--reps R] [--rounds N] "
                            "[--blocking MC,KC,NC] [--a-in-place 1|0|-1] [--precision fp32|bf16] "
                            "[--no-openblas] "
                            "[--shapes 1024|all]\n");
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (rounds < 1) rounds = 1;
    const int nshapes = all ? NSHAPES : 1;
    bufs b = make_bufs();
    if (child) { /* one OpenBLAS core type: "rate" per shape on one line */
        printf("%s", openblas_get_corename());
        for (int i = 0; i < nshapes; i++) printf(" %.1f", rate(&shapes[i], &b, 1, threads, reps));
        printf("\n");
        return 0;
    }
    const char *env = getenv("BARLOW_ISA");
    if (env && *env && bt_isa_select(env) != BT_OK) {
        fprintf(stderr, "bench_gemm: BARLOW_ISA=%s: %s\n", env, bt_error());
        return 1;
    }
    const bt_cpu_info *ci = bt_cpu();
    printf("cpu %s family %d model %d, L1d %zu KiB, L2 %zu KiB, L3 %zu KiB; %d thread(s); best "
           "of %d calls in each of %d rounds\n", ci->vendor, ci->family, ci->model,
           ci->l1d >> 10, ci->l2 >> 10, ci->l3 >> 10, threads, reps, rounds);
    /* columns: our paths, then OpenBLAS cores */
    char names[8][48];
    double r[8][64] = {{0}}, t[64];
    int ncol = 0;
    const bt_isa forced = bt_isa_current();
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "bench_gemm: cannot find my own executable\n");
        return 1;
    }
    exe[n] = 0;
    for (int round = 0; round < rounds; round++) {
        ncol = 0;
        for (int p = BT_ISA_COUNT - 1; p >= 0; p--) {
            if (!bt_isa_supported((bt_isa)p) || (env && *env && (bt_isa)p != forced)) continue;
            bt_isa_set((bt_isa)p);
            const bt_gemm_blocking bl = bt_gemm_blocking_for((bt_isa)p);
            if (round == 0)
                printf("barlow %s: kernel %s, MC %d KC %d NC %d\n", bt_isa_name((bt_isa)p),
                       bt_gemm_ukernel((bt_isa)p)->name, bl.mc, bl.kc, bl.nc);
            snprintf(names[ncol], sizeof names[ncol], "barlow %s", bt_isa_name((bt_isa)p));
            for (int i = 0; i < nshapes; i++) {
                const double g = rate(&shapes[i], &b, 0, threads, reps);
                if (g > r[ncol][i]) r[ncol][i] = g;
            }
            ncol++;
        }
        bt_isa_set(forced);
        if (openblas) {
            const char *cores[3] = {"", ci->avx512 ? "SkylakeX" : NULL,
                                    ci->avx2_fma ? "Haswell" : NULL};
            for (int c = 0; c < 3 && ncol < 8; c++) {
                if (!cores[c]) continue;
                char cmd[8192];
                snprintf(cmd, sizeof cmd, "%s%s%s '%s' --openblas-child --threads %d --reps %d%s",
                         *cores[c] ? "OPENBLAS_CORETYPE=" : "env -u OPENBLAS_CORETYPE", cores[c],
                         *cores[c] ? " " : " ", exe, threads, reps, all ? "" : " --shapes 1024");
                FILE *f = popen(cmd, "r");
                char core[64] = "";
                int got = f && fscanf(f, "%63s", core) == 1;
                for (int i = 0; got && i < nshapes; i++) got = fscanf(f, "%lf", &t[i]) == 1;
                if (f) pclose(f);
                if (!got) {
                    fprintf(stderr, "bench_gemm: OpenBLAS child (%s) failed\n", cmd);
                    continue;
                }
                snprintf(names[ncol], sizeof names[ncol], "OpenBLAS %s%s", core,
                         *cores[c] ? " (forced)" : " (detected)");
                for (int i = 0; i < nshapes; i++)
                    if (t[i] > r[ncol][i]) r[ncol][i] = t[i];
                ncol++;
            }
        }
    } /* rounds */
    printf("\nGFLOP/s\n%-44s %5s %5s %5s %2s", "shape (step use)", "M", "N", "K", "tt");
    for (int c = 0; c < ncol; c++) printf(" | %-26s", names[c]);
    printf("\n");
    for (int i = 0; i < nshapes; i++) {
        const shape *s = &shapes[i];
        printf("%-44s %5d %5d %5d %c%c", s->what, s->M, s->N, s->K, s->ta ? 'T' : 'N',
               s->tb ? 'T' : 'N');
        for (int c = 0; c < ncol; c++) printf(" | %-26.1f", r[c][i]);
        printf("\n");
    }
    /* Each path against the forced OpenBLAS core of the same ISA at 1024^3 (target 3). */
    for (int c = 0; c < ncol; c++) {
        const char *p = strstr(names[c], "barlow ") == names[c] ? names[c] + 7 : NULL;
        if (!p) continue;
        const char *peer = !strcmp(p, "avx512") ? "OpenBLAS SKYLAKEX"
                           : !strcmp(p, "avx2") ? "OpenBLAS HASWELL"
                                                : NULL;
        for (int d = 0; peer && d < ncol; d++)
            if (!strncasecmp(names[d], peer, strlen(peer)) && strstr(names[d], "(forced)"))
                printf("1024^3: barlow %s / %s = %.2f\n", p, names[d], r[c][0] / r[d][0]);
    }
    return 0;
}
