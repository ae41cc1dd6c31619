/* bt_sgemm and friends (include/barlow/gemm.h): the BLIS-style driver around the per-ISA
 * micro-kernels. Everything here is portable C; the ISA code is in ukernel_*.c.
 *
 * Loops (Goto/BLIS): jc over NC-wide column blocks of C; pc over KC-deep slices of K, for
 * which the KC x NC block of op(B) is packed into NR-wide panels (it stays in L3); ic over
 * MC-tall row blocks, for which the MC x KC block of op(A) is packed into MR-tall panels (in
 * L2); then the macro-kernel: jr over B panels, ir over A
 * panels, one micro-kernel call per MR x NR tile of C. In the innermost loop one B panel
 * (KC x NR) is reused across the A panels, so it should stay in L1: that sets KC; MC follows
 * from L2 and NC from L3 (bt_gemm_blocking_for).
 *
 * Threads take blocks of C of a tm x tn grid (see sgemm_run), each running the loops above on
 * its block with its own packing buffers, with no barrier inside the product. Blocks start at
 * multiples of MR and NR, so tiles sit where a one-thread run puts them, and each element of
 * C is summed over the same KC slices in the same order: the result does not depend on the
 * thread count. */
#include "barlow/gemm.h"
#include "barlow/error.h"
#include "barlow/scratch.h"
#include "gemm_internal.h"
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds a parallel region costs more than it saves (a few us at
 * ~100 GFLOP/s). */
#define BT_GEMM_PAR_MIN ((size_t)1 << 18)

static bt_gemm_blocking bt_gemm_override;
static int bt_gemm_unpacked_only;
static int bt_gemm_a_in_place = -1; /* -1: the rule in gemm_block */
static bt_precision bt_gemm_prec = BT_PREC_FP32;
static int bt_gemm_bf16_emulated; /* tests: the plain C bf16 kernel on every path */

void bt_gemm_force_bf16_emulated(int on) { bt_gemm_bf16_emulated = on != 0; }

void bt_gemm_set_precision(bt_precision p) { bt_gemm_prec = p == BT_PREC_BF16 ? p : BT_PREC_FP32; }
bt_precision bt_gemm_precision(void) { return bt_gemm_prec; }
int bt_gemm_bf16_native(void) {
    return bt_isa_current() == BT_ISA_AVX512 && bt_cpu()->avx512_bf16 && bt_ukr_avx512_bf16;
}

void bt_gemm_set_a_in_place(int mode) { bt_gemm_a_in_place = mode; }

void bt_gemm_force_unpacked(int on) { bt_gemm_unpacked_only = on != 0; }

void bt_gemm_set_blocking(int mc, int kc, int nc) {
    bt_gemm_override = (bt_gemm_blocking){mc, kc, nc};
}

const bt_ukernel *bt_gemm_ukernel(bt_isa isa) {
    const bt_ukernel *k = isa == BT_ISA_AVX512 ? &bt_ukernel_avx512
                          : isa == BT_ISA_AVX2 ? &bt_ukernel_avx2
                                               : &bt_ukernel_ref;
    return k->fn ? k : NULL;
}

static int clampi(size_t v, int lo, int hi) {
    return v < (size_t)lo ? lo : v > (size_t)hi ? hi : (int)v;
}

bt_gemm_blocking bt_gemm_blocking_for(bt_isa isa) {
    const bt_ukernel *u = bt_gemm_ukernel(isa);
    const bt_cpu_info *ci = bt_cpu();
    bt_gemm_blocking b;
    /* KC: the B panel (KC x NR) as large as L1 (it is read from L1 and L2 while the A panels
     * stream). MC: the A block (MC x KC) in a quarter of L2, which it shares with the B
     * panels passing through and, on a shared machine, with other jobs: half of L2 (MC 546
     * on a 1 MiB L2) ran at 150-160 GFLOP/s at 1024^3 on the AVX-512 path under load where a
     * quarter (MC 168, KC 384) ran at 210-220 in the same minutes (bench_gemm --blocking).
     * NC: the B block (KC x NC) in a quarter of L3, which the cores share. Multiples of 8 /
     * MR / NR. */
    b.kc = clampi(ci->l1d / (sizeof(float) * u->nr), 64, 512) & ~7;
    b.mc = clampi(ci->l2 / 4 / (sizeof(float) * b.kc), u->mr, 4096);
    b.mc -= b.mc % u->mr;
    b.nc = clampi(ci->l3 / 4 / (sizeof(float) * b.kc), u->nr, 8192);
    b.nc -= b.nc % u->nr;
    if (bt_gemm_override.mc) b.mc = bt_gemm_override.mc - bt_gemm_override.mc % u->mr;
    if (bt_gemm_override.kc) b.kc = bt_gemm_override.kc;
    if (bt_gemm_override.nc) b.nc = bt_gemm_override.nc - bt_gemm_override.nc % u->nr;
    if (b.mc < u->mr) b.mc = u->mr;
    if (b.nc < u->nr) b.nc = u->nr;
    return b;
}

int bt_sgemm_kc(void) { return bt_gemm_blocking_for(bt_isa_current()).kc; }

/* Per-thread packing memory, grown as needed and kept: GEMMs run thousands of times per
 * epoch, often inside other parallel loops, and a fresh allocation each time would page-fault
 * megabytes. Bounded by the blocking, not by the problem. A thread-specific key frees it when
 * its thread ends (OpenMP retires pool threads when a team shrinks). */
static _Thread_local float *bt_gemm_tl_buf;
static _Thread_local size_t bt_gemm_tl_n;
static pthread_key_t bt_gemm_key;
static int bt_gemm_key_ok; /* 0: no key could be made; buffers then live until the process ends */
static pthread_once_t bt_gemm_key_once = PTHREAD_ONCE_INIT;

static void tl_free(void *p) { bt_free(p); }
static void tl_key_init(void) {
    /* Fails only when the process has used up its keys: the buffers still work, they are
     * just not freed when a pool thread ends (the library never aborts on a resource). */
    bt_gemm_key_ok = pthread_key_create(&bt_gemm_key, tl_free) == 0;
}

static float *tl_buffer(size_t n) {
    if (n <= bt_gemm_tl_n) return bt_gemm_tl_buf;
    pthread_once(&bt_gemm_key_once, tl_key_init);
    float *p = bt_alloc(n * sizeof(float));
    if (!p) return NULL;
    bt_free(bt_gemm_tl_buf);
    bt_gemm_tl_buf = p;
    bt_gemm_tl_n = n;
    if (bt_gemm_key_ok) pthread_setspecific(bt_gemm_key, p);
    return p;
}

typedef struct {
    const bt_ukernel *u;
    bt_gemm_blocking blk;
    int ta, tb, M, N, K;
    float alpha, beta;
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    const float *Bp; /* op(B) prepacked (bt_sgemm_pack_b's layout), or NULL */
    size_t npad;     /* N rounded up to NR: floats per k row of Bp */
    int bf16;        /* operands rounded to bf16: converted panels (gemm_internal.h) */
    bt_ukr_bf16_fn kb;   /* the bf16 kernel; NULL: bt_ukr_ref_bf16_any */
    bt_pack_fn pack_t16, pack_n16; /* packs straight into converted panels (with kb); NULL:
                                      the float pack, then bt_cvt_bf16_ref */
} gemm_ctx;

/* The precision in force for a product made now on the current path (after g->blk is set).
 * bf16 panels take half the bytes per k, so KC doubles (unless forced): the B panel fills the
 * same L1 and the A block the same L2 (1024^3 on one thread, AVX512_BF16 on Zen 5: 320
 * GFLOP/s at KC 384, 380 at 768). */
static void ctx_precision(gemm_ctx *g) {
    g->bf16 = bt_gemm_prec == BT_PREC_BF16;
    if (g->bf16 && !bt_gemm_override.kc) g->blk.kc *= 2;
    const int native = g->bf16 && bt_gemm_bf16_native() && !bt_gemm_bf16_emulated;
    g->kb = native ? bt_ukr_avx512_bf16 : NULL;
    g->pack_t16 = native ? bt_pack_t_avx512_bf16 : NULL;
    g->pack_n16 = native ? bt_pack_n_avx512_bf16 : NULL;
}

/* Rows [i0, i0+mc), columns [p0, p0+kc) of op(A) into MR-tall panels, zero-padded. */
static void pack_a(float *dst, const gemm_ctx *g, int i0, int mc, int p0, int kc) {
    const int MR = g->u->mr;
    const float *A = g->A;
    const size_t lda = (size_t)g->lda;
    for (int ip = 0; ip < mc; ip += MR, dst += (size_t)MR * kc) {
        const int mr = mc - ip < MR ? mc - ip : MR;
        if (g->bf16 && !g->ta && g->pack_t16) {
            g->pack_t16(dst, MR, A + (size_t)(i0 + ip) * lda + p0, lda, mr, kc);
            continue;
        }
        if (g->bf16 && g->ta && g->pack_n16) {
            g->pack_n16(dst, MR, A + (size_t)p0 * lda + i0 + ip, lda, mr, kc);
            continue;
        }
        if (!g->ta && g->u->pack_t) {
            g->u->pack_t(dst, MR, A + (size_t)(i0 + ip) * lda + p0, lda, mr, kc);
        } else if (!g->ta) {
            for (int r = 0; r < mr; r++) {
                const float *src = A + (size_t)(i0 + ip + r) * lda + p0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = src[k];
            }
            for (int r = mr; r < MR; r++)
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = 0.0f;
        } else if (g->u->pack_n) {
            g->u->pack_n(dst, MR, A + (size_t)p0 * lda + i0 + ip, lda, mr, kc);
        } else {
            for (int k = 0; k < kc; k++) {
                const float *src = A + (size_t)(p0 + k) * lda + i0 + ip;
                float *d = dst + (size_t)k * MR;
                for (int r = 0; r < mr; r++) d[r] = src[r];
                for (int r = mr; r < MR; r++) d[r] = 0.0f;
            }
        }
        if (g->bf16) bt_cvt_bf16_ref(dst, MR, kc);
    }
}

/* Columns [j0, j0+nc), rows [p0, p0+kc) of op(B) into NR-wide panels, zero-padded. */
static void pack_b(float *dst, const gemm_ctx *g, int j0, int nc, int p0, int kc) {
    const int NR = g->u->nr;
    const float *B = g->B;
    const size_t ldb = (size_t)g->ldb;
    for (int jj = 0; jj < nc; jj += NR, dst += (size_t)NR * kc) {
        const int nr = nc - jj < NR ? nc - jj : NR;
        if (g->bf16 && g->tb && g->pack_t16) {
            g->pack_t16(dst, NR, B + (size_t)(j0 + jj) * ldb + p0, ldb, nr, kc);
            continue;
        }
        if (g->bf16 && !g->tb && g->pack_n16) {
            g->pack_n16(dst, NR, B + (size_t)p0 * ldb + j0 + jj, ldb, nr, kc);
            continue;
        }
        if (g->tb && g->u->pack_t) {
            g->u->pack_t(dst, NR, B + (size_t)(j0 + jj) * ldb + p0, ldb, nr, kc);
        } else if (!g->tb && g->u->pack_n) {
            g->u->pack_n(dst, NR, B + (size_t)p0 * ldb + j0 + jj, ldb, nr, kc);
        } else if (!g->tb) {
            for (int k = 0; k < kc; k++) {
                const float *src = B + (size_t)(p0 + k) * ldb + j0 + jj;
                float *d = dst + (size_t)k * NR;
                for (int c = 0; c < nr; c++) d[c] = src[c];
                for (int c = nr; c < NR; c++) d[c] = 0.0f;
            }
        } else {
            for (int c = 0; c < nr; c++) {
                const float *src = B + (size_t)(j0 + jj + c) * ldb + p0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * NR + c] = src[k];
            }
            for (int c = nr; c < NR; c++)
                for (int k = 0; k < kc; k++) dst[(size_t)k * NR + c] = 0.0f;
        }
        if (g->bf16) bt_cvt_bf16_ref(dst, NR, kc);
    }
}

/* x as bf16 (bt_bf16_bits), back in a float. */
static float bf16_round(float x) {
    const uint32_t w = (uint32_t)bt_bf16_bits(x) << 16;
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}

/* op(B)(k, j) from a prepacked B (bt_sgemm_pack_b's layout; bf16: its converted words). */
static float packed_b_at(const gemm_ctx *g, int k, int j) {
    const int KC = g->blk.kc, NR = g->u->nr, pc = k - k % KC;
    const size_t kc = (size_t)(g->K - pc < KC ? g->K - pc : KC);
    const float *panel = g->Bp + (size_t)pc * g->npad + (size_t)(j - j % NR) * kc;
    if (!g->bf16) return panel[(size_t)(k - pc) * NR + j % NR];
    uint32_t w;
    memcpy(&w, panel + (size_t)((k - pc) / 2) * NR + j % NR, sizeof w);
    w = (k - pc) % 2 ? w & 0xffff0000u : w << 16;
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}

/* The product without packing memory (the packing buffers could not be allocated): slow, but
 * correct, so that an out-of-memory moment degrades speed rather than results. bf16: the same
 * rounded operands, summed in k order. */
static void gemm_unpacked(const gemm_ctx *g, int i0, int i1, int j0, int j1) {
    for (int i = i0; i < i1; i++)
        for (int j = j0; j < j1; j++) {
            float acc = 0.0f;
            for (int k = 0; k < g->K; k++) {
                const float a = g->ta ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k];
                const float b = g->Bp   ? packed_b_at(g, k, j)
                                : g->tb ? g->B[(size_t)j * g->ldb + k]
                                        : g->B[(size_t)k * g->ldb + j];
                acc += g->bf16 ? bf16_round(a) * (g->Bp ? b : bf16_round(b)) : a * b;
            }
            float *c = g->C + (size_t)i * g->ldc + j;
            *c = g->alpha * acc + (g->beta == 0.0f ? 0.0f : g->beta * *c);
        }
}

/* Rows [i0, i1), columns [j0, j1) of C on the calling thread, with its own packing buffers.
 * i0 and j0 are multiples of MR and NR, so tiles sit where a one-thread run puts them. */
static void gemm_block(const gemm_ctx *g, int i0, int i1, int j0, int j1) {
    const int MR = g->u->mr, NR = g->u->nr, KC = g->blk.kc;
    const int M = i1 - i0, N = j1 - j0, K = g->K;
    const int MC = M < g->blk.mc ? M : g->blk.mc, NC = N < g->blk.nc ? N : g->blk.nc;
    const int kcmax = K < KC ? K : KC;
    const size_t an = ((size_t)(MC + MR - 1) / MR * MR * kcmax + 15) & ~(size_t)15;
    const size_t bn = g->Bp ? 0 : (size_t)(NC + NR - 1) / NR * NR * kcmax;
    float *apack = bt_gemm_unpacked_only ? NULL : tl_buffer(an + bn);
    if (!apack) {
        bt_clear_error();
        gemm_unpacked(g, i0, i1, j0, j1);
        return;
    }
    float *bbuf = apack + an;
    const bt_ukr_fn ukr = g->u->fn;
    /* A read in place (no packing) where the block's width N is at most 512: each A panel then
     * meets few B panels, and packing it costs more than the kernel's strided reads of A
     * (Winograd's products with 64 to 512 output channels, im2col's forward: 1.05x to 1.2x
     * faster in bench_gemm --a-in-place on both AVX paths); wide products (linear layers,
     * N = 2048) keep packing. Not where the rows of a row-major A lie a multiple of 4 KiB
     * apart: the kernel's MR rows would then share one L1 set (more rows than ways), which
     * took a 2-thread 1024^3 product (two 512-wide blocks) to 221 GFLOP/s against 338 packed
     * (bench_gemm --a-in-place 1 / -1, same minutes). */
    const bt_ukr_ua_fn ua = g->ta ? g->u->fn_uat : g->u->fn_ua;
    const int aliased = !g->ta && ((size_t)g->lda * sizeof(float)) % 4096 == 0;
    /* bf16 products always pack A: the conversion happens in the packing. */
    const int in_place = ua && !g->bf16 && (bt_gemm_a_in_place == 1 ||
                                (bt_gemm_a_in_place == -1 && N <= 512 && !aliased));
    for (int jc = j0; jc < j1; jc += NC) {
        const int nc = j1 - jc < NC ? j1 - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const float beta = pc == 0 ? g->beta : 1.0f;
            /* Prepacked: slice pc holds all of N's panels, kc x NR each (bt_sgemm_pack_b). */
            const float *bpack = g->Bp ? g->Bp + (size_t)pc * g->npad + (size_t)jc * kc : bbuf;
            if (!g->Bp) pack_b(bbuf, g, jc, nc, pc, kc);
            for (int ic = i0; ic < i1; ic += MC) {
                const int mc = i1 - ic < MC ? i1 - ic : MC;
                if (in_place) {
                    /* row ic, column pc of op(A); rows are lda apart, or columns if A^T */
                    const size_t rs = g->ta ? 1 : (size_t)g->lda;
                    const float *ap = g->ta ? g->A + (size_t)pc * g->lda + ic
                                            : g->A + (size_t)ic * g->lda + pc;
                    for (int jr = 0; jr < nc; jr += NR) {
                        const float *bp = bpack + (size_t)jr * kc;
                        const int n = nc - jr < NR ? nc - jr : NR;
                        float *cc = g->C + (size_t)ic * g->ldc + jc + jr;
                        for (int ir = 0; ir < mc; ir += MR) {
                            const int m = mc - ir < MR ? mc - ir : MR;
                            ua(kc, ap + (size_t)ir * rs, g->lda, bp, cc + (size_t)ir * g->ldc,
                               g->ldc, g->alpha, beta, m, n);
                        }
                    }
                    continue;
                }
                pack_a(apack, g, ic, mc, pc, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bp = bpack + (size_t)jr * kc;
                    const int n = nc - jr < NR ? nc - jr : NR;
                    float *cc = g->C + (size_t)ic * g->ldc + jc + jr;
                    for (int ir = 0; ir < mc; ir += MR) {
                        const int m = mc - ir < MR ? mc - ir : MR;
                        const float *ap = apack + (size_t)ir * kc;
                        float *ct = cc + (size_t)ir * g->ldc;
                        if (!g->bf16)
                            ukr(kc, ap, bp, ct, g->ldc, g->alpha, beta, m, n);
                        else if (g->kb)
                            g->kb(kc, (const uint32_t *)(const void *)ap,
                                  (const uint32_t *)(const void *)bp, ct, g->ldc, g->alpha, beta,
                                  m, n);
                        else
                            bt_ukr_ref_bf16_any(MR, NR, kc, (const uint32_t *)(const void *)ap,
                                                (const uint32_t *)(const void *)bp, ct, g->ldc,
                                                g->alpha, beta, m, n);
                    }
                }
            }
        }
    }
}

_Noreturn void bt_gemm_bad_arg(const char *fn, const char *what, int v, int need) {
    fprintf(stderr, "barlow: %s: %s = %d, need at least %d (programming error)\n", fn, what, v,
            need);
    abort();
}

void bt_gemm_check_args(const char *fn, int ta, int tb, int M, int N, int K, int lda, int ldb,
                        int ldc) {
    if (M < 0) bt_gemm_bad_arg(fn, "M", M, 0);
    if (N < 0) bt_gemm_bad_arg(fn, "N", N, 0);
    if (K < 0) bt_gemm_bad_arg(fn, "K", K, 0);
    const int acols = ta ? M : K, bcols = tb ? K : N;
    if (lda < (acols > 1 ? acols : 1)) bt_gemm_bad_arg(fn, "lda", lda, acols > 1 ? acols : 1);
    if (ldb < (bcols > 1 ? bcols : 1)) bt_gemm_bad_arg(fn, "ldb", ldb, bcols > 1 ? bcols : 1);
    if (ldc < (N > 1 ? N : 1)) bt_gemm_bad_arg(fn, "ldc", ldc, N > 1 ? N : 1);
}

/* C = beta * C (beta == 0: C = 0 without reading it). */
static void scale_c(float *C, int M, int N, int ldc, float beta) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* The product on nt threads (1 = the calling thread, wherever it is). */
static void sgemm_run(bt_trans ta, bt_trans tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, const float *Bp, float beta, float *C,
                      int ldc, int nt) {
    bt_gemm_check_args(Bp ? "bt_sgemm_pb" : "bt_sgemm", ta != BT_NOTRANS, tb != BT_NOTRANS, M, N,
                       K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) {
        scale_c(C, M, N, ldc, beta);
        return;
    }
    gemm_ctx g = {.u = bt_gemm_ukernel(bt_isa_current()), .ta = ta != BT_NOTRANS,
                  .tb = tb != BT_NOTRANS, .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta,
                  .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C, .Bp = Bp};
    g.blk = bt_gemm_blocking_for(bt_isa_current());
    ctx_precision(&g);
    const int MR = g.u->mr, NR = g.u->nr;
    g.npad = (size_t)(N + NR - 1) / NR * NR;
    if ((size_t)M * N * K < BT_GEMM_PAR_MIN) nt = 1;
    /* A tm x tn grid of threads, each on its own block of C with its own packing: no barrier
     * inside the product, so a thread that the OS preempts (other jobs share these cores)
     * delays only its block, and nobody spins waiting for it. Each thread packs the A rows and
     * B columns of its block, so the grid is the factorisation of nt that packs least:
     * tn * M * K + tm * K * N. */
    const int mt = (M + MR - 1) / MR, ntl = (N + NR - 1) / NR; /* tiles per dimension */
    int tm = 1, tn = 1;
    double best = -1;
    for (int f = 1; f <= nt; f++) {
        if (nt % f) continue;
        const int a = f, b = nt / f;
        if (a > mt || b > ntl) continue;
        const double cost = (double)b * M * K + (double)a * K * N;
        if (best < 0 || cost < best) best = cost, tm = a, tn = b;
    }
    if (best < 0) { /* fewer tiles than threads in some factorisation: all along the longer */
        if (mt >= ntl)
            tm = mt < nt ? mt : nt, tn = 1;
        else
            tn = ntl < nt ? ntl : nt, tm = 1;
    }
    if (tm * tn == 1) {
        gemm_block(&g, 0, M, 0, N);
        return;
    }
#pragma omp parallel num_threads(tm * tn)
    {
        /* The runtime may grant fewer threads than asked: threads take the grid's blocks in
         * turn, so every block is computed once whatever the team. */
        const int team = omp_get_num_threads();
        for (int w = omp_get_thread_num(); w < tm * tn; w += team) {
            const int bi = w / tn, bj = w % tn;
            const int i0 = (int)((int64_t)mt * bi / tm) * MR;
            const int i1 = (int)((int64_t)mt * (bi + 1) / tm) * MR;
            const int j0 = (int)((int64_t)ntl * bj / tn) * NR;
            const int j1 = (int)((int64_t)ntl * (bj + 1) / tn) * NR;
            gemm_block(&g, i0, i1 < M ? i1 : M, j0, j1 < N ? j1 : N);
        }
    }
}

void bt_sgemm(bt_trans ta, bt_trans tb, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    sgemm_run(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc,
              omp_in_parallel() ? 1 : bt_threads());
}

/* The batch loop of bt_sgemm_batch and bt_sgemm_batch_pb: product i reads op(B) at
 * B + i strideB (B non-NULL) or prepacked at Bp + i strideBp. Each product on one thread when
 * there are enough of them (its result is the same whichever thread takes it), else one after
 * the other on all threads. */
static void batch_run(const char *fn, int count, bt_trans ta, bt_trans tb, int M, int N, int K,
                      float alpha, const float *A, int lda, ptrdiff_t strideA, const float *B,
                      int ldb, ptrdiff_t strideB, const float *Bp, ptrdiff_t strideBp,
                      float beta, float *C, int ldc, ptrdiff_t strideC) {
    if (count < 0) bt_gemm_bad_arg(fn, "count", count, 0);
    const int nt = omp_in_parallel() ? 1 : bt_threads();
#define BATCH_RUN_ONE(i, threads)                                                                \
    sgemm_run(ta, tb, M, N, K, alpha, A + (i) * strideA, lda, B ? B + (i) * strideB : NULL, ldb, \
              Bp ? Bp + (i) * strideBp : NULL, beta, C + (i) * strideC, ldc, threads)
    if (nt == 1 || count < nt) {
        for (int i = 0; i < count; i++) BATCH_RUN_ONE(i, nt);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int i = 0; i < count; i++) BATCH_RUN_ONE(i, 1);
#undef BATCH_RUN_ONE
}

void bt_sgemm_batch(int count, bt_trans ta, bt_trans tb, int M, int N, int K, float alpha,
                    const float *A, int lda, ptrdiff_t strideA, const float *B, int ldb,
                    ptrdiff_t strideB, float beta, float *C, int ldc, ptrdiff_t strideC) {
    batch_run("bt_sgemm_batch", count, ta, tb, M, N, K, alpha, A, lda, strideA, B, ldb, strideB,
              NULL, 0, beta, C, ldc, strideC);
}

/* The upper triangle by row blocks: block [i0, i1) needs columns [i0, N) only, which halves
 * the work of a full product. The diagonal blocks also fill a few entries below the diagonal
 * (allowed by the contract in gemm.h). */
void bt_ssyrk(int N, int K, float alpha, const float *A, int lda, float beta, float *C,
              int ldc) {
    if (N < 0) bt_gemm_bad_arg("bt_ssyrk", "N", N, 0);
    const int nt = omp_in_parallel() ? 1 : bt_threads();
    const int step = 64; /* small enough that the skipped lower part is most of it */
    for (int i0 = 0; i0 < N; i0 += step) {
        const int m = N - i0 < step ? N - i0 : step;
        sgemm_run(BT_NOTRANS, BT_TRANS, m, N - i0, K, alpha, A + (size_t)i0 * lda, lda,
                  A + (size_t)i0 * lda, lda, NULL, beta, C + (size_t)i0 * ldc + i0, ldc, nt);
    }
}

/* ---- prepacked op(B) ------------------------------------------------------------------- */

size_t bt_sgemm_packed_b_floats(int N, int K) {
    if (N < 0) bt_gemm_bad_arg("bt_sgemm_packed_b_floats", "N", N, 0);
    if (K < 0) bt_gemm_bad_arg("bt_sgemm_packed_b_floats", "K", K, 0);
    const int NR = bt_gemm_ukernel(bt_isa_current())->nr;
    return (size_t)(N + NR - 1) / NR * NR * (size_t)K;
}

/* Slice after slice of KC rows of op(B), each as pack_b lays out one block of all N columns:
 * NR-wide panels, kc x NR each. gemm_block finds slice pc, panel jc at pc * npad + jc * kc. */
void bt_sgemm_pack_b(float *Bp, bt_trans tb, int N, int K, const float *B, int ldb) {
    bt_gemm_check_args("bt_sgemm_pack_b", 0, tb != BT_NOTRANS, 0, N, K, K > 1 ? K : 1, ldb,
                       N > 1 ? N : 1);
    gemm_ctx g = {.u = bt_gemm_ukernel(bt_isa_current()), .tb = tb != BT_NOTRANS, .N = N, .K = K,
                  .B = B, .ldb = ldb};
    g.blk = bt_gemm_blocking_for(bt_isa_current());
    ctx_precision(&g);
    const size_t npad = (size_t)(N + g.u->nr - 1) / g.u->nr * g.u->nr;
    if (N == 0) return;
    for (int pc = 0; pc < K; pc += g.blk.kc) {
        const int kc = K - pc < g.blk.kc ? K - pc : g.blk.kc;
        pack_b(Bp + (size_t)pc * npad, &g, 0, N, pc, kc);
    }
}

void bt_sgemm_pb(bt_trans ta, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *Bp, float beta, float *C, int ldc) {
    sgemm_run(ta, BT_NOTRANS, M, N, K, alpha, A, lda, NULL, N > 1 ? N : 1, Bp, beta, C, ldc,
              omp_in_parallel() ? 1 : bt_threads());
}

void bt_sgemm_batch_pb(int count, bt_trans ta, int M, int N, int K, float alpha, const float *A,
                       int lda, ptrdiff_t strideA, const float *Bp, ptrdiff_t strideBp,
                       float beta, float *C, int ldc, ptrdiff_t strideC) {
    batch_run("bt_sgemm_batch_pb", count, ta, BT_NOTRANS, M, N, K, alpha, A, lda, strideA, NULL,
              N > 1 ? N : 1, 0, Bp, strideBp, beta, C, ldc, strideC);
}
