/* Optimised float32 conv2d (groups=1, dilation=1): im2col / col2im around bt_sgemm.
 *
 * Work is split over groups of G consecutive images. Small feature maps (late ResNet stages,
 * 4x4 on CIFAR) make a per-image GEMM too thin to be efficient, so G images are
 * unrolled side by side into one column matrix (CRS, G*P) and handled by one GEMM; large maps
 * use G = 1, where the output and dout rows of an image are used in place.
 * With more than one group and thread, groups are spread over OpenMP threads, each with its
 * own buffers from the workspace arena and single-threaded GEMMs (bt_sgemm runs serially inside
 * a parallel region). With a single group the loop runs outside any parallel region, so
 * bt_sgemm itself uses every thread. The weight gradient is summed into per-thread partials that are
 * reduced at the end, in a fixed order: for a given thread count results are reproducible.
 * 3x3 stride-1 pad-1 layers go to Winograd (conv_winograd.c) for the forward and both
 * gradients, unless BT_CONV_WINOGRAD=0: by default F(2x2, 3x3) for the forward and weight
 * gradient and F(4x4, 3x3) for the input gradient (winograd_internal.h). Stride-2 layers
 * build their columns from the channels' phase planes (below), so every copy is a contiguous
 * run.
 * Shapes: CRS = C*R*S (a column), P = OH*OW (output pixels of one image). */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "conv_internal.h"
#include "winograd_internal.h"
#include "barlow/gemm.h"
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Element counts must fit a size_t comfortably and GEMM dimensions an int. */
static int too_big(int64_t a, int64_t b, int64_t c, int64_t d, int64_t lim) {
    int64_t p = a;
    if (p > lim / b) return 1;
    p *= b;
    if (p > lim / c) return 1;
    p *= c;
    return p > lim / d;
}

int bt_conv2d_desc_init(bt_conv2d_desc *d, int N, int C, int H, int W, int K, int R, int S,
                        int stride, int pad) {
    if (!d) return bt_fail(BT_EINVAL, "conv2d: NULL descriptor");
    memset(d, 0, sizeof *d);
    if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0)
        return bt_fail(BT_EINVAL,
                       "conv2d: sizes must be positive (input N=%d C=%d H=%d W=%d, weight "
                       "K=%d R=%d S=%d)",
                       N, C, H, W, K, R, S);
    if (stride < 1) return bt_fail(BT_EINVAL, "conv2d: stride must be >= 1 (got %d)", stride);
    if (pad < 0) return bt_fail(BT_EINVAL, "conv2d: pad must be >= 0 (got %d)", pad);
    if ((int64_t)H + 2 * (int64_t)pad < R || (int64_t)W + 2 * (int64_t)pad < S)
        return bt_fail(BT_EINVAL,
                       "conv2d: kernel %dx%d does not fit the padded input %dx%d (H=%d W=%d "
                       "pad=%d)",
                       R, S, (int)((int64_t)H + 2 * pad), (int)((int64_t)W + 2 * pad), H, W, pad);
    int64_t OH = ((int64_t)H + 2 * pad - R) / stride + 1;
    int64_t OW = ((int64_t)W + 2 * pad - S) / stride + 1;
    const int64_t big = INT64_MAX / 16;
    if (too_big(C, R, S, 1, INT_MAX) || too_big(N, OH, OW, 1, INT_MAX) ||
        too_big(N, C, H, W, big) || too_big(N, K, OH, OW, big) || too_big(K, C, R, S, big))
        return bt_fail(BT_EINVAL, "conv2d: sizes too large (N=%d C=%d H=%d W=%d K=%d R=%d S=%d)", N,
                       C, H, W, K, R, S);
    *d = (bt_conv2d_desc){N, C, H, W, K, R, S, stride, pad, (int)OH, (int)OW};
    return BT_OK;
}

/* A descriptor may have been filled by hand: re-derive it so bad sizes never reach a loop. */
static int check_desc(const bt_conv2d_desc *d) {
    if (!d) return bt_fail(BT_EINVAL, "conv2d: NULL descriptor");
    bt_conv2d_desc v;
    int rc = bt_conv2d_desc_init(&v, d->N, d->C, d->H, d->W, d->K, d->R, d->S, d->stride, d->pad);
    if (rc) return rc;
    if (v.OH != d->OH || v.OW != d->OW)
        return bt_fail(BT_EINVAL,
                       "conv2d: descriptor output size %dx%d does not match the computed %dx%d",
                       d->OH, d->OW, v.OH, v.OW);
    return BT_OK;
}

/* Range [*lo, *hi) of output columns whose input column ow*stride - pad + s lies in [0, W). */
static void valid_cols(int s, int W, int stride, int pad, int OW, int *lo, int *hi) {
    int a = pad - s, b = W - 1 + pad - s;
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int h = b < 0 ? 0 : b / stride + 1;
    if (l > OW) l = OW;
    if (h > OW) h = OW;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* 8 floats as one vector (GCC/clang vector extensions). */
typedef float v8f __attribute__((vector_size(32)));
/* 4 floats as one vector, for the tails and 4-wide maps. */
typedef float v4f __attribute__((vector_size(16)));

/* o[j] = sp[2 j], j < n: the stride-2 gather, 8 at a time from two loads (the second starting
 * one float early, so it never reads past sp[2 (n - 1)]). */
static void gather2(float *o, const float *sp, int n) {
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f a, b;
        memcpy(&a, sp + 2 * j, sizeof a);
        memcpy(&b, sp + 2 * j + 7, sizeof b);
        const v8f e = __builtin_shufflevector(a, b, 0, 2, 4, 6, 9, 11, 13, 15);
        memcpy(o + j, &e, sizeof e);
    }
    if (j + 4 <= n) {
        v4f a, b;
        memcpy(&a, sp + 2 * j, sizeof a);
        memcpy(&b, sp + 2 * j + 3, sizeof b);
        const v4f e = __builtin_shufflevector(a, b, 0, 2, 5, 7);
        memcpy(o + j, &e, sizeof e);
        j += 4;
    }
    for (; j < n; j++) o[j] = sp[(size_t)2 * j];
}

/* dp[2 j] += o[j] (add) or dp[2 j] = o[j] (!add), j < n: gather2's adjoint and the stride-2
 * store, 8 and 4 at a time, touching nothing past dp[2 (n - 1)] (the odd lanes of each block
 * are kept: plus zero, or blended out). add is a constant at every call. */
static inline void put2(float *dp, const float *o, int n, const int add) {
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f a, b, v;
        memcpy(&a, dp + 2 * j, sizeof a);
        memcpy(&b, dp + 2 * j + 7, sizeof b);
        memcpy(&v, o + j, sizeof v);
        if (add) {
            const v8f z = {0};
            a += __builtin_shufflevector(v, z, 0, 8, 1, 8, 2, 8, 3, 8);
            b += __builtin_shufflevector(v, z, 8, 4, 8, 5, 8, 6, 8, 7);
        } else {
            a = __builtin_shufflevector(a, v, 8, 1, 9, 3, 10, 5, 11, 7);
            b = __builtin_shufflevector(b, v, 0, 12, 2, 13, 4, 14, 6, 15);
        }
        memcpy(dp + 2 * j, &a, sizeof a);
        memcpy(dp + 2 * j + 7, &b, sizeof b);
    }
    if (j + 4 <= n) {
        v4f a, b, v;
        memcpy(&a, dp + 2 * j, sizeof a);
        memcpy(&b, dp + 2 * j + 3, sizeof b);
        memcpy(&v, o + j, sizeof v);
        if (add) {
            const v4f z = {0};
            a += __builtin_shufflevector(v, z, 0, 4, 1, 4);
            b += __builtin_shufflevector(v, z, 4, 2, 4, 3);
        } else {
            a = __builtin_shufflevector(a, v, 4, 1, 5, 3);
            b = __builtin_shufflevector(b, v, 0, 6, 2, 7);
        }
        memcpy(dp + 2 * j, &a, sizeof a);
        memcpy(dp + 2 * j + 3, &b, sizeof b);
        j += 4;
    }
    for (; j < n; j++) dp[(size_t)2 * j] = add ? dp[(size_t)2 * j] + o[j] : o[j];
}

/* d[j] += s[j] (add) or d[j] = s[j], j < n, 8 and 4 at a time. */
static inline void put_run(float *d, const float *s, int n, const int add) {
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f v, u;
        memcpy(&v, s + j, sizeof v);
        if (add) {
            memcpy(&u, d + j, sizeof u);
            v += u;
        }
        memcpy(d + j, &v, sizeof v);
    }
    if (j + 4 <= n) {
        v4f v, u;
        memcpy(&v, s + j, sizeof v);
        if (add) {
            memcpy(&u, d + j, sizeof u);
            v += u;
        }
        memcpy(d + j, &v, sizeof v);
        j += 4;
    }
    for (; j < n; j++) d[j] = add ? d[j] + s[j] : s[j];
}

/* ---- stride 2 through phase planes ---------------------------------------------------
 * With stride 2, tap (r, s) of output pixel (oh, ow) reads x[2 oh + r - pad][2 ow + s - pad],
 * which is element (oh + r/2, ow + s/2) of the phase plane
 *   Q[a][b][i][j] = x[2 i + a - pad][2 j + b - pad]   (0 outside x),  a = r % 2, b = s % 2,
 * of PH x PW = (OH + (R-1)/2) x (OW + (S-1)/2) elements. So a channel is split once into its
 * (up to) 4 phase planes, and each of its R*S rows of columns is then a window of one plane:
 * OH runs of OW contiguous floats, instead of OH strided gathers, each with its own bounds.
 * col2im splits the image's gradient the same way, adds each row of columns into its window
 * in the same order as the direct loop, and stores the planes back: the same sums, bit for
 * bit. Used for stride 2 and kernels larger than 1x1 (a 1x1 kernel reads one whole plane). */
static int phase_on = 1;

void bt_conv_set_phase_planes(int on) { phase_on = on != 0; }

static int use_phases(const bt_conv2d_desc *d) {
    return phase_on && d->stride == 2 && d->R * d->S > 1;
}

/* Floats of the phase planes of one channel (0 when d does not use them). */
static size_t phase_floats(const bt_conv2d_desc *d) {
    if (!use_phases(d)) return 0;
    return (size_t)4 * (d->OH + (d->R - 1) / 2) * (d->OW + (d->S - 1) / 2);
}

/* Columns [*lo, *hi) of phase b whose input column 2 j + b - pad lies in [0, W), within PW. */
static void phase_cols(int b, int W, int pad, int PW, int *lo, int *hi) {
    int l = pad - b <= 0 ? 0 : (pad - b + 1) / 2;
    int h = W - 1 + pad - b < 0 ? 0 : (W - 1 + pad - b) / 2 + 1;
    if (l > PW) l = PW;
    if (h > PW) h = PW;
    if (h < l) h = l;
    *lo = l, *hi = h;
}

/* q (the phase planes a < na, b < nb, each PH x PW, plane (a, b) at (2 a + b) PH PW) = the
 * split of channel plane x (H, W). */
static void phase_split(float *q, const float *x, int H, int W, int pad, int PH, int PW, int na,
                        int nb) {
    for (int a = 0; a < na; a++)
        for (int b = 0; b < nb; b++) {
            float *plane = q + (size_t)(2 * a + b) * PH * PW;
            int lo, hi;
            phase_cols(b, W, pad, PW, &lo, &hi);
            for (int i = 0; i < PH; i++) {
                float *row = plane + (size_t)i * PW;
                const int y = 2 * i + a - pad;
                if (y < 0 || y >= H || lo == hi) {
                    memset(row, 0, sizeof(float) * PW);
                    continue;
                }
                for (int j = 0; j < lo; j++) row[j] = 0;
                gather2(row + lo, x + (size_t)y * W + (2 * lo + b - pad), hi - lo);
                for (int j = hi; j < PW; j++) row[j] = 0;
            }
        }
}

/* x (H, W) at every element some plane holds = that plane's element: phase_split's inverse. */
static void phase_merge(float *x, const float *q, int H, int W, int pad, int PH, int PW, int na,
                        int nb) {
    for (int a = 0; a < na; a++)
        for (int b = 0; b < nb; b++) {
            const float *plane = q + (size_t)(2 * a + b) * PH * PW;
            int lo, hi;
            phase_cols(b, W, pad, PW, &lo, &hi);
            if (lo == hi) continue;
            for (int i = 0; i < PH; i++) {
                const int y = 2 * i + a - pad;
                if (y < 0 || y >= H) continue;
                put2(x + (size_t)y * W + (2 * lo + b - pad), plane + (size_t)i * PW + lo,
                     hi - lo, 0);
            }
        }
}

/* im2col for stride 2 (use_phases): q holds phase_floats(d) floats of scratch. */
static void im2col_phases(float *col, size_t ld, const float *im, const bt_conv2d_desc *d,
                          float *q) {
    const int H = d->H, W = d->W, R = d->R, S = d->S, pad = d->pad, OH = d->OH, OW = d->OW;
    const int PH = OH + (R - 1) / 2, PW = OW + (S - 1) / 2, na = R > 1 ? 2 : 1, nb = S > 1 ? 2 : 1;
    size_t row = 0;
    for (int c = 0; c < d->C; c++) {
        phase_split(q, im + (size_t)c * H * W, H, W, pad, PH, PW, na, nb);
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++, row++) {
                const float *win = q + (size_t)(2 * (r & 1) + (s & 1)) * PH * PW +
                                   (size_t)(r >> 1) * PW + (s >> 1);
                float *dst = col + row * ld;
                for (int oh = 0; oh < OH; oh++)
                    put_run(dst + (size_t)oh * OW, win + (size_t)oh * PW, OW, 0);
            }
    }
}

/* col2im for stride 2 (use_phases): im (C, H, W) += the fold of col, as col2im sums it. */
static void col2im_phases(float *im, const float *col, size_t ld, const bt_conv2d_desc *d,
                          float *q) {
    const int H = d->H, W = d->W, R = d->R, S = d->S, pad = d->pad, OH = d->OH, OW = d->OW;
    const int PH = OH + (R - 1) / 2, PW = OW + (S - 1) / 2, na = R > 1 ? 2 : 1, nb = S > 1 ? 2 : 1;
    size_t row = 0;
    for (int c = 0; c < d->C; c++) {
        float *x = im + (size_t)c * H * W;
        phase_split(q, x, H, W, pad, PH, PW, na, nb);
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++, row++) {
                float *win = q + (size_t)(2 * (r & 1) + (s & 1)) * PH * PW +
                             (size_t)(r >> 1) * PW + (s >> 1);
                const float *src = col + row * ld;
                for (int oh = 0; oh < OH; oh++)
                    put_run(win + (size_t)oh * PW, src + (size_t)oh * OW, OW, 1);
            }
        phase_merge(x, q, H, W, pad, PH, PW, na, nb);
    }
}

/* col (CRS rows, row stride ld; P = OH*OW columns used) = unrolled patches of im (C,H,W).
 * q: phase_floats(d) floats of scratch where d uses phase planes (else unused). */
static inline void im2col_body(float *col, size_t ld, const float *im, const bt_conv2d_desc *d,
                               float *q) {
    if (use_phases(d)) {
        im2col_phases(col, ld, im, d, q);
        return;
    }
    const int H = d->H, W = d->W, R = d->R, S = d->S, st = d->stride, pad = d->pad;
    const int OH = d->OH, OW = d->OW;
    size_t row = 0;
    for (int c = 0; c < d->C; c++) {
        const float *src = im + (size_t)c * H * W;
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++, row++) {
                float *dst = col + row * ld;
                int lo, hi;
                valid_cols(s, W, st, pad, OW, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    float *o = dst + (size_t)oh * OW;
                    int ih = oh * st - pad + r;
                    if (ih < 0 || ih >= H || lo == hi) {
                        memset(o, 0, sizeof(float) * OW);
                        continue;
                    }
                    const float *sp = src + (size_t)ih * W + (lo * st - pad + s);
                    for (int ow = 0; ow < lo; ow++) o[ow] = 0;
                    if (st == 1)
                        memcpy(o + lo, sp, sizeof(float) * (hi - lo));
                    else if (st == 2)
                        gather2(o + lo, sp, hi - lo);
                    else
                        for (int ow = lo; ow < hi; ow++) o[ow] = sp[(size_t)(ow - lo) * st];
                    for (int ow = hi; ow < OW; ow++) o[ow] = 0;
                }
            }
    }
}

/* im (C,H,W) += fold of col (CRS rows, row stride ld): the adjoint of im2col. q as there. */
static inline void col2im_body(float *im, const float *col, size_t ld, const bt_conv2d_desc *d,
                               float *q) {
    if (use_phases(d)) {
        col2im_phases(im, col, ld, d, q);
        return;
    }
    const int H = d->H, W = d->W, R = d->R, S = d->S, st = d->stride, pad = d->pad;
    const int OH = d->OH, OW = d->OW;
    size_t row = 0;
    for (int c = 0; c < d->C; c++) {
        float *dst = im + (size_t)c * H * W;
        for (int r = 0; r < R; r++)
            for (int s = 0; s < S; s++, row++) {
                const float *src = col + row * ld;
                int lo, hi;
                valid_cols(s, W, st, pad, OW, &lo, &hi);
                if (lo == hi) continue; /* this kernel column only ever sees padding */
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * st - pad + r;
                    if (ih < 0 || ih >= H) continue;
                    const float *o = src + (size_t)oh * OW;
                    float *dp = dst + (size_t)ih * W + (lo * st - pad + s);
                    if (st == 1)
                        for (int ow = lo; ow < hi; ow++) dp[ow - lo] += o[ow];
                    else if (st == 2)
                        put2(dp, o + lo, hi - lo, 1);
                    else
                        for (int ow = lo; ow < hi; ow++) dp[(size_t)(ow - lo) * st] += o[ow];
                }
            }
    }
}

/* im2col and col2im per instruction set: the same C compiled for AVX2 where the path allows
 * it, so the 8-wide vectors above are single instructions (in the baseline x86-64 build a
 * shuffle of two 8-float vectors goes through the stack, one float at a time). The copies and
 * sums are the same element by element on every path: the same bits. */
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"), flatten)) static void
im2col_avx2(float *col, size_t ld, const float *im, const bt_conv2d_desc *d, float *q) {
    im2col_body(col, ld, im, d, q);
}
__attribute__((target("avx2,fma"), flatten)) static void
col2im_avx2(float *im, const float *col, size_t ld, const bt_conv2d_desc *d, float *q) {
    col2im_body(im, col, ld, d, q);
}
#endif

static void im2col(float *col, size_t ld, const float *im, const bt_conv2d_desc *d, float *q) {
#if defined(__x86_64__) || defined(__i386__)
    if (bt_isa_current() != BT_ISA_GENERIC) {
        im2col_avx2(col, ld, im, d, q);
        return;
    }
#endif
    im2col_body(col, ld, im, d, q);
}

static void col2im(float *im, const float *col, size_t ld, const bt_conv2d_desc *d, float *q) {
#if defined(__x86_64__) || defined(__i386__)
    if (bt_isa_current() != BT_ISA_GENERIC) {
        col2im_avx2(im, col, ld, d, q);
        return;
    }
#endif
    col2im_body(im, col, ld, d, q);
}

/* The input is already its own column matrix (C = CRS rows, P = H*W columns). */
static int is_pointwise(const bt_conv2d_desc *d) {
    return d->R == 1 && d->S == 1 && d->stride == 1 && d->pad == 0;
}

/* Images per GEMM: enough that G*P reaches ~256 columns, but keep a group per thread. */
static int group_size(const bt_conv2d_desc *d, int nthreads) {
    int P = d->OH * d->OW;
    int g = (256 + P - 1) / P;
    int per_thread = d->N / (nthreads > 0 ? nthreads : 1);
    if (per_thread < 1) per_thread = 1;
    if (g > per_thread) g = per_thread;
    if (g > d->N) g = d->N;
    return g < 1 ? 1 : g;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Forward of images [n0, n0+g): col (CRS, G*P), tmp (K, G*P) and q (phase_floats(d)) are
 * this thread's buffers. */
static void forward_group(float *out, const float *in, const float *w, const float *b,
                          const bt_conv2d_desc *d, int n0, int g, float *col, float *tmp,
                          float *q) {
    const int K = d->K, CRS = d->C * d->R * d->S, P = d->OH * d->OW, GP = g * P;
    const size_t in_img = (size_t)d->C * d->H * d->W, out_img = (size_t)K * P;
    const float *B;
    if (g == 1 && is_pointwise(d)) {
        B = in + (size_t)n0 * in_img;
    } else {
        for (int i = 0; i < g; i++) im2col(col + (size_t)i * P, GP, in + (n0 + i) * in_img, d, q);
        B = col;
    }
    float *Cm = g == 1 ? out + (size_t)n0 * out_img : tmp; /* (K, G*P) */
    bt_sgemm(BT_NOTRANS, BT_NOTRANS, K, GP, CRS, 1.0f, w, CRS, B, GP, 0.0f,
                Cm, GP);
    for (int i = 0; i < g; i++) {
        float *o = out + (n0 + i) * out_img;
        for (int k = 0; k < K; k++) {
            float *orow = o + (size_t)k * P;
            float bk = b ? b[k] : 0.0f;
            if (g > 1) {
                const float *src = tmp + (size_t)k * GP + (size_t)i * P;
                for (int p = 0; p < P; p++) orow[p] = src[p] + bk;
            } else if (b) {
                for (int p = 0; p < P; p++) orow[p] += bk;
            }
        }
    }
}

int bt_conv2d_forward(float *out, const float *in, const float *w, const float *b,
                      const bt_conv2d_desc *d) {
    return bt_conv2d_forward_ws(bt_default_arena(), BT_WINO_PROCESS, out, in, w, b, d);
}

/* The Winograd tile setting for d under the choice `winograd` (BT_WINO_PROCESS: the process
 * setting; BT_WINO_F2, _F4 or _F2_DX4, which conv_winograd.c maps to each direction's tile),
 * 0 for im2col. */
static int wino_choice(const bt_conv2d_desc *d, int winograd) {
    if (winograd == BT_WINO_PROCESS) winograd = bt_wino_enabled() ? bt_wino_tile() : 0;
    return winograd && bt_wino_applicable(d) ? winograd : 0;
}

int bt_conv2d_forward_ws(bt_arena *ws, int winograd, float *out, const float *in,
                         const float *w, const float *b, const bt_conv2d_desc *d) {
    int rc = check_desc(d);
    if (rc) return rc;
    if (!out || !in || !w) return bt_fail(BT_EINVAL, "conv2d_forward: NULL buffer");
    const int tile = wino_choice(d, winograd);
    if (tile) return bt_wino_forward_ws(ws, tile, out, in, w, b, d);
    const int N = d->N, P = d->OH * d->OW, CRS = d->C * d->R * d->S;
    int nt = bt_threads();
    const int G = group_size(d, nt);
    const int ngroups = (N + G - 1) / G;
    if (nt > ngroups) nt = ngroups;
    /* A single pointwise image needs no columns; at least 16 floats keep scr non-NULL. */
    const size_t col_n = G == 1 && is_pointwise(d) ? 16 : round16((size_t)CRS * G * P);
    const size_t tmp_n = G > 1 ? round16((size_t)d->K * G * P) : 0;
    const size_t per = col_n + tmp_n + round16(phase_floats(d));
    float *scr = bt_arena_get(ws, sizeof(float) * per * nt);
    if (!scr) return BT_ENOMEM;
    if (nt == 1) {
        for (int n0 = 0; n0 < N; n0 += G)
            forward_group(out, in, w, b, d, n0, N - n0 < G ? N - n0 : G, scr, scr + col_n,
                          scr + col_n + tmp_n);
        return BT_OK;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int gi = 0; gi < ngroups; gi++) {
        float *mine = scr + per * (size_t)omp_get_thread_num();
        int n0 = gi * G;
        forward_group(out, in, w, b, d, n0, N - n0 < G ? N - n0 : G, mine, mine + col_n,
                      mine + col_n + tmp_n);
    }
    return BT_OK;
}

/* Backward of images [n0, n0+g): dwp (K, CRS) += dy col^T; dinp += col2im(w^T dy), or with
 * dinp_set those images of dinp zeroed first (here, by the thread that then accumulates into
 * them, while they are about to be written anyway: the same sums, hence the same bits).
 * col (CRS, G*P) holds the columns, then is reused for their gradient; tmp (K, G*P);
 * q (phase_floats(d)). */
static void backward_group(float *dinp, float *dwp, const float *dout, const float *in,
                           const float *w, const bt_conv2d_desc *d, int n0, int g, float *col,
                           float *tmp, float *q, int dinp_set) {
    const int K = d->K, CRS = d->C * d->R * d->S, P = d->OH * d->OW, GP = g * P;
    const size_t in_img = (size_t)d->C * d->H * d->W, out_img = (size_t)K * P;
    const int direct = g == 1 && is_pointwise(d);
    const float *dy = dout + n0 * out_img; /* (K, G*P) */
    if (g > 1) {
        for (int k = 0; k < K; k++)
            for (int i = 0; i < g; i++)
                memcpy(tmp + (size_t)k * GP + (size_t)i * P,
                       dout + (n0 + i) * out_img + (size_t)k * P, sizeof(float) * P);
        dy = tmp;
    }
    if (dwp) {
        const float *B = in + n0 * in_img;
        if (!direct) {
            for (int i = 0; i < g; i++) im2col(col + (size_t)i * P, GP, in + (n0 + i) * in_img, d, q);
            B = col;
        }
        bt_sgemm(BT_NOTRANS, BT_TRANS, K, CRS, GP, 1.0f, dy, GP, B, GP, 1.0f,
                    dwp, CRS);
    }
    if (dinp) {
        if (dinp_set) memset(dinp + n0 * in_img, 0, sizeof(float) * g * in_img);
        if (direct) {
            bt_sgemm(BT_TRANS, BT_NOTRANS, CRS, GP, K, 1.0f, w, CRS, dy, GP,
                        1.0f, dinp + n0 * in_img, GP);
        } else {
            bt_sgemm(BT_TRANS, BT_NOTRANS, CRS, GP, K, 1.0f, w, CRS, dy, GP,
                        0.0f, col, GP);
            for (int i = 0; i < g; i++)
                col2im(dinp + (n0 + i) * in_img, col + (size_t)i * P, GP, d, q);
        }
    }
}

int bt_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *in,
                       const float *w, const bt_conv2d_desc *d) {
    return bt_conv2d_backward_ws(bt_default_arena(), BT_WINO_PROCESS, dinp, dw, db, dout, in, w,
                                 d, 0);
}

int bt_conv2d_backward_ws(bt_arena *ws, int winograd, float *dinp, float *dw, float *db,
                          const float *dout, const float *in, const float *w,
                          const bt_conv2d_desc *d, int dinp_set) {
    int rc = check_desc(d);
    if (rc) return rc;
    if (!dout || (dw && !in) || (dinp && !w))
        return bt_fail(BT_EINVAL, "conv2d_backward: NULL buffer");
    const int N = d->N, K = d->K, P = d->OH * d->OW, CRS = d->C * d->R * d->S;
    int nt = bt_threads();
    if (db) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int k = 0; k < K; k++) {
            double s = 0; /* N*P terms: double keeps the bias gradient exact to float */
            for (int n = 0; n < N; n++) {
                const float *g = dout + ((size_t)n * K + k) * P;
                for (int p = 0; p < P; p++) s += g[p];
            }
            db[k] += (float)s;
        }
    }
    const int tile = wino_choice(d, winograd);
    if (tile) {
        if (dinp) rc = bt_wino_backward_data_ws(ws, tile, dinp, dout, w, d, dinp_set);
        if (!rc && dw) rc = bt_wino_backward_weights_ws(ws, tile, dw, dout, in, d);
        return rc;
    }
    if (!dinp && !dw) return BT_OK;
    const int G = group_size(d, nt);
    const int ngroups = (N + G - 1) / G;
    if (nt > ngroups) nt = ngroups;
    const size_t col_n = G == 1 && is_pointwise(d) ? 16 : round16((size_t)CRS * G * P);
    const size_t tmp_n = G > 1 ? round16((size_t)K * G * P) : 0;
    const size_t dw_n = nt > 1 && dw ? round16((size_t)K * CRS) : 0;
    const size_t q_n = round16(phase_floats(d)), per = col_n + tmp_n + dw_n + q_n;
    float *scr = bt_arena_get(ws, sizeof(float) * per * nt);
    if (!scr) return BT_ENOMEM;
    if (nt == 1) {
        for (int n0 = 0; n0 < N; n0 += G)
            backward_group(dinp, dw, dout, in, w, d, n0, N - n0 < G ? N - n0 : G, scr, scr + col_n,
                           scr + col_n + tmp_n + dw_n, dinp_set);
        return BT_OK;
    }
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        float *mine = scr + per * (size_t)t;
        float *dwp = dw ? mine + col_n + tmp_n : NULL; /* (K, CRS) this thread's partial */
        if (dwp) memset(dwp, 0, sizeof(float) * K * CRS);
#pragma omp for schedule(static)
        for (int gi = 0; gi < ngroups; gi++) {
            int n0 = gi * G;
            backward_group(dinp, dwp, dout, in, w, d, n0, N - n0 < G ? N - n0 : G, mine,
                           mine + col_n, mine + col_n + tmp_n + dw_n, dinp_set);
        }
        if (dw) {
            /* Summed in thread order whatever the schedule: reproducible. */
#pragma omp for schedule(static)
            for (size_t i = 0; i < (size_t)K * CRS; i++) {
                float s = 0;
                for (int u = 0; u < team; u++) s += scr[per * (size_t)u + col_n + tmp_n + i];
                dw[i] += s;
            }
        }
    }
    return BT_OK;
}
