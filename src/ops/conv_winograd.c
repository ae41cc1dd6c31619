/* Winograd F(2x2, 3x3) convolution (Lavin & Gray 2015) for 3x3 stride-1 pad-1 layers, NCHW.
 *
 * Each 2x2 block of outputs ("tile") is computed from the 4x4 input patch around it:
 *   Y = A^T [ (G g G^T) .* (B^T d B) ] A
 * so a tile costs 16 products per (input, output) channel pair instead of 36. Summed over
 * input channels, the 16 positions xi of the 4x4 transformed tile become 16 independent GEMMs
 *   M[xi] (T, Ko) = V[xi] (T, Ci) * U[xi] (Ci, Ko)
 * with U the transformed weights, V the transformed input tiles and T the number of tiles;
 * the output transform then folds each M tile (4x4) back into 2x2 outputs.
 *
 * F(4x4, 3x3) (6x6 input tiles, 36 products per 16 outputs, on maps of 8x8 and more; 4x4 and
 * more for the weight gradient) runs
 * through the same driver with 36 planes: by default for the input and weight gradients, and
 * for the forward too when opted into (BT_CONV_WINOGRAD=4). Its points are 0, 1, -1, 1/2, -2
 * (weight_tile4_8), whose transforms round 2.4 to 3.4 times less than the symmetric 0, +-1, +-2
 * in test_winograd; still about 3 times F(2x2)'s error.
 *
 * The weight gradient (F(2x2) or F(4x4), the same transforms transposed) is at the end of the
 * file.
 *
 * The input gradient of a 3x3 pad-1 stride-1 conv is the same kind of conv applied to dout,
 * with the kernel rotated by 180 degrees and the two channel dimensions swapped, so both
 * directions share one driver: "Ci/Ko" below are the channels read and written (C/K forward,
 * K/C backward).
 *
 * Layout: V and M keep a tile's channels contiguous, so the transforms work on 8 channels at
 * once with unit-stride loads and stores whatever the map size (ResNet's last stage has 4x4
 * maps: 2 tiles per row, too few to vectorise across). For that the input of a chunk is first
 * copied channels-last (X, (nb, rows, W, Cp)). Channel counts are padded to multiples of 8
 * (Cp, Kp) with zeros, so no vector is partial.
 *
 * Work is split into chunks of whole images (or, for a map larger than the budget, bands of
 * tile rows of one image). Each OpenMP thread takes whole chunks and runs the four steps on
 * its own buffers with single-threaded GEMMs (bt_sgemm_batch), so a chunk stays in that core's cache and the
 * threads never wait for each other until the end. Measured on 2 threads against one shared
 * chunk at a time (transforms split over threads, then the 16 GEMMs in an OpenMP loop, or
 * each GEMM threaded itself), this was the fastest on every ResNet-18/CIFAR layer, by
 * 1.3x to 2.5x and 3x to 9x respectively, on a machine that other jobs kept busy (which
 * punishes every barrier). A chunk's V + M is kept to a budget, which bounds the scratch
 * memory whatever the batch. A chunk's result does not depend on which thread computes it, so
 * for a given thread count (which sets the chunk sizes) results are reproducible.
 * Tiles of a map with odd H or W overhang it: missing inputs read as zero (as padding does)
 * and outputs that fall outside are not written. */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/scratch.h"
#include "winograd_internal.h"
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Tiles per block of a tile row in the output transform (bounds its stack buffer). */
#define WINO_TB 16

/* Tiles per chunk: as many as keep the chunk's V + M within WINO_CHUNK_BYTES (per thread),
 * so that it stays near the core, but at least WINO_TMIN (rows of each GEMM), so that packing
 * U, which on wide layers comes from memory (1 MB per GEMM at 512 x 512), is amortised: 8 MB
 * at 512 channels. Both chosen with a one-thread profile of the ResNet-18/CIFAR layers. */
#define WINO_CHUNK_BYTES ((size_t)2 << 20)
#define WINO_TMIN 128
/* F(4x4)'s floor (36 planes): U is packed once per convolution now (bt_sgemm_pack_b), and at
 * 128 tiles a chunk of the 256-channel layer held 9.4 MB; with 32, the two threads' input
 * gradients of the 16x16 and 8x8 layers ran 6 to 26% faster (bench_conv 2 256, Zen 4) and
 * the 32x32 layer (113 tiles by the budget) the same. Chunking does not change the bits of
 * the forward or the input gradient: a tile's products do not depend on its chunk. */
#define WINO_TMIN4 32
/* The weight gradient's chunks: at least Cp * Kp / WINO_DW_DIV tiles (512 at 512 x 512
 * channels), V + D within WINO_DW_MAX_BYTES per thread (see bt_wino_backward_weights). */
#define WINO_DW_DIV 512
#define WINO_DW_MAX_BYTES ((size_t)32 << 20)
static size_t wino_chunk_tiles; /* 0: the rule above */

void bt_wino_set_chunk_tiles(size_t tiles) { wino_chunk_tiles = tiles; }

/* Process settings of the plain conv functions (the library reads no environment; the
 * program maps BT_CONV_WINOGRAD onto them and onto the CPU backend's configuration, which
 * keeps its own copy). */
static int wino_on = 1;                  /* default: on */
static int wino_tile = BT_WINO_F2_DX4_DW4; /* or BT_WINO_F2, BT_WINO_F4, BT_WINO_F2_DX4 */

int bt_wino_enabled(void) { return wino_on; }

void bt_wino_set_enabled(int on) { wino_on = on != 0; }

int bt_wino_tile(void) { return wino_tile; }

void bt_wino_set_tile(int m) {
    wino_tile = m == BT_WINO_F4 || m == BT_WINO_F2_DX4 || m == BT_WINO_F2_DX4_DW4 ? m : BT_WINO_F2;
}

/* Exact shape requirements, separate from the size heuristic. */
static int wino_shape_ok(const bt_conv2d_desc *d) {
    return d->R == 3 && d->S == 3 && d->stride == 1 && d->pad == 1;
}

int bt_wino_applicable(const bt_conv2d_desc *d) {
    /* Measured against im2col on one thread (32x32 maps, N = 64): with 8 channels on either
     * side the GEMMs are too thin for the transforms to pay (0.6x to 1.1x), from 16 on it
     * gains (1.0x to 1.4x, more with more channels). The weight transform costs about as much
     * as 50 output pixels' worth of the saved GEMM work, so below 128 output pixels per call
     * (N = 4 at 4x4, 512 channels: 0.9x) im2col stays. */
    return d && wino_shape_ok(d) && d->C >= 16 && d->K >= 16 &&
           (int64_t)d->N * d->H * d->W >= 128;
}

/* Same checks as conv2d.c: a hand-filled descriptor must agree with what init computes. */
static int wino_check(const bt_conv2d_desc *d, const char *fn) {
    if (!d) return bt_fail(BT_EINVAL, "%s: NULL descriptor", fn);
    bt_conv2d_desc v;
    int rc = bt_conv2d_desc_init(&v, d->N, d->C, d->H, d->W, d->K, d->R, d->S, d->stride, d->pad);
    if (rc) return rc;
    if (v.OH != d->OH || v.OW != d->OW)
        return bt_fail(BT_EINVAL, "%s: descriptor output size %dx%d does not match the computed "
                       "%dx%d", fn, d->OH, d->OW, v.OH, v.OW);
    if (!wino_shape_ok(d))
        return bt_fail(BT_EINVAL, "%s: needs a 3x3 kernel, stride 1, pad 1 (got %dx%d s%d p%d)",
                       fn, d->R, d->S, d->stride, d->pad);
    return BT_OK;
}

static size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }
/* Plane strides get 16 floats more than needed: the 16 planes a tile touches then do not all
 * fall in the same L1 set when the plane size is a power of two. */
static size_t plane_stride(size_t n) { return ((n + 15) & ~(size_t)15) + 16; }

/* ---- weight transform: U = G g G^T, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] ------------ */

/* 8 floats (doubles) as one vector (GCC/clang vector extensions: each path's copy of the chunk
 * code compiles them to its own instructions). */
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

/* u[xi * up] (4x4 row-major) from the 3x3 kernels g + 9 l (row-major) of 8 consecutive input
 * channels l, rotated by 180 degrees if flip; lane l of each vector is channel l, so the
 * planes are written 8 channels at a time. Each element goes through the operations of a
 * one-kernel form. */
/* k[i] lane l = tap i of kernel g + 9 l (tap 8 - i if flip): the 8 kernels as vectors. */
static inline void kernels8(v8f k[9], const float *g, int flip) {
    for (int i = 0; i < 9; i++)
        for (int l = 0; l < 8; l++) k[i][l] = g[9 * l + (flip ? 8 - i : i)];
}

static void weight_tile8(float *u, size_t up, const float *g, int flip) {
    v8f k[9], t[4][3];
    kernels8(k, g, flip);
    for (int j = 0; j < 3; j++) { /* t = G g, column j */
        const v8f a = k[j], b = k[3 + j], c = k[6 + j];
        t[0][j] = a;
        t[1][j] = 0.5f * (a + b + c);
        t[2][j] = 0.5f * (a - b + c);
        t[3][j] = c;
    }
    for (int i = 0; i < 4; i++) { /* u = t G^T, row i */
        const v8f a = t[i][0], b = t[i][1], c = t[i][2];
        const v8f r[4] = {a, 0.5f * (a + b + c), 0.5f * (a - b + c), c};
        for (int j = 0; j < 4; j++) memcpy(u + (4 * i + j) * up, &r[j], sizeof r[j]);
    }
}

/* F(4x4, 3x3) on the points 0, 1, -1, 1/2, -2 and infinity (not Lavin's 0, +-1, +-2, inf:
 * with these, in float, the forward's largest error is about a third and its rms error two
 * thirds of the symmetric points' on ResNet-like data; Barabasz et al. 2020 found the same
 * set best for F(4,3)). Rows 0, 1, 2, 4 and 5 of B^T are scaled by 2 (exact) to make them
 * integers, and those rows of G by 1/2:
 *   B^T = [2 -3 -4 3 2 0; 0 -2 1 5 2 0; 0 2 -5 1 2 0; 0 -2 -1 2 1 0; 0 1 -2 -1 2 0;
 *          0 2 -3 -4 3 2]
 *   G   = [1/2 0 0; 1/6 1/6 1/6; -1/6 1/6 -1/6; -16/15 -8/15 -4/15; 1/30 -1/15 2/15;
 *          0 0 1/2]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1]
 * u[xi * up] (6x6 row-major) = G g G^T from a 3x3 kernel g, rotated by 180 degrees if
 * flip, computed in double and rounded once (sixths and fifteenths are not exact in float);
 * weight_tile4_8 does 8 kernels at once. */
#define G_COL4(r, a, b, c)                                                                       \
    do {                                                                                         \
        (r)[0] = (a) / 2, (r)[1] = ((a) + (b) + (c)) / 6, (r)[2] = ((b) - (a) - (c)) / 6;        \
        (r)[3] = -(16 * (a) + 8 * (b) + 4 * (c)) / 15, (r)[4] = ((a) - 2 * (b) + 4 * (c)) / 30;  \
        (r)[5] = (c) / 2;                                                                        \
    } while (0)

/* The same for 8 consecutive input channels as weight_tile8, in vectors of 8 doubles. */
static void weight_tile4_8(float *u, size_t up, const float *g, int flip) {
    v8f kf[9];
    v8d k[9], t[6][3];
    kernels8(kf, g, flip);
    for (int i = 0; i < 9; i++) k[i] = __builtin_convertvector(kf[i], v8d); /* exact */
    for (int j = 0; j < 3; j++) { /* t = G g, column j */
        v8d r[6];
        G_COL4(r, k[j], k[3 + j], k[6 + j]);
        for (int i = 0; i < 6; i++) t[i][j] = r[i];
    }
    for (int i = 0; i < 6; i++) { /* u = t G^T, row i */
        v8d r[6];
        G_COL4(r, t[i][0], t[i][1], t[i][2]);
        for (int j = 0; j < 6; j++) {
            const v8f f = __builtin_convertvector(r[j], v8f);
            memcpy(u + (6 * i + j) * up, &f, sizeof f);
        }
    }
}

#undef G_COL4

/* U (np planes of stride up, each (K8, C8), the channel counts rounded up to 8) from
 * w (K, C, 3, 3), kernels rotated by 180 degrees if flip, zero in the padding. U keeps w's
 * order, so both are streamed front to back (U is 16 MB at 512 x 512, too big for the cache
 * to absorb a scattered write): the forward GEMM uses U transposed, the backward as is. */
static void weight_transform(float *U, size_t up, const float *w, int K, int C, int flip,
                             int nt, int m) {
    const int K8 = (int)round8(K), C8 = (int)round8(C), np = (m + 2) * (m + 2);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int k = 0; k < K8; k++) {
        float *row = U + (size_t)k * C8; /* row k of plane 0 */
        if (k >= K) {
            for (int xi = 0; xi < np; xi++) memset(row + xi * up, 0, sizeof(float) * C8);
            continue;
        }
        /* 8 input channels at a time; the last group's missing channels read as zero kernels */
        for (int c = 0; c < C8; c += 8) {
            float g[72];
            const float *src = w + 9 * ((size_t)k * C + c);
            if (c + 8 > C) {
                memset(g, 0, sizeof g);
                memcpy(g, src, sizeof(float) * 9 * (C - c));
                src = g;
            }
            (m == 4 ? weight_tile4_8 : weight_tile8)(row + c, up, src, flip);
        }
        /* +0 in the padding, as before (a zero kernel's F(4x4) transform has -0s) */
        for (int xi = 0; xi < np; xi++) memset(row + xi * up + C, 0, sizeof(float) * (C8 - C));
    }
}

/* ---- chunks ---------------------------------------------------------------------------- */

/* Shapes and buffers shared by every chunk of one call. */
typedef struct {
    int N, Ci, Ko, Cp, Kp, H, W, TH, TW;
    int m, np;          /* outputs per tile side (2: F(2x2,3x3), 4: F(4x4,3x3)); (m + 2)^2 */
    const float *src;   /* (N, Ci, H, W) */
    float *dst;         /* (N, Ko, H, W) */
    const float *bias;  /* (Ko) or NULL */
    int acc;            /* dst += result (bias ignored) instead of dst = result + bias */
    int flip;           /* the input gradient: kernels rotated, K and C swapped */
    const float *Up;    /* U prepacked for the GEMMs: np planes of op(U) (Cp, Kp), upk floats
                           apart (bt_sgemm_pack_b) */
    size_t upk;
    const float *zero;  /* (Cp) zeros: what a pixel outside the map reads */
    size_t up;
    int whole;          /* chunks of nb whole images, or bands of R tile rows of one image */
    int wide;           /* F(2x2) tile transforms on 16 channels at a time (AVX-512, 32 vector
                           registers) rather than 8 (the other paths: 16 registers at most) */
    int nb, R, bands;   /* bands: chunks per image when !whole */
} wino_plan;

/* The tiles of chunk q: images [*img0, *img0 + *nb), tile rows [*th0, *th1) of each. */
static void chunk_range(const wino_plan *pl, int q, int *img0, int *nb, int *th0, int *th1) {
    if (pl->whole) {
        *img0 = q * pl->nb;
        *nb = pl->N - *img0 < pl->nb ? pl->N - *img0 : pl->nb;
        *th0 = 0, *th1 = pl->TH;
    } else {
        *img0 = q / pl->bands, *nb = 1;
        *th0 = q % pl->bands * pl->R;
        *th1 = *th0 + pl->R < pl->TH ? *th0 + pl->R : pl->TH;
    }
}

/* ---- input transform: V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] ------- */

/* r[l] lane j -> r[j] lane l: 2 x 2 blocks (unpack), then 4 x 4 (pairs), then the halves. */
static inline void transpose8(v8f r[8]) {
    v8f t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int g = 0; g < 8; g += 4) {
        u[g] = __builtin_shufflevector(t[g], t[g + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[g + 1] = __builtin_shufflevector(t[g], t[g + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[g + 2] = __builtin_shufflevector(t[g + 1], t[g + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[g + 3] = __builtin_shufflevector(t[g + 1], t[g + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = __builtin_shufflevector(u[j], u[4 + j], 0, 1, 2, 3, 8, 9, 10, 11);
        r[j + 4] = __builtin_shufflevector(u[j], u[4 + j], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* X (nb, yb - ya, W, Cp) = rows [ya, yb) of images [img0, img0 + nb) of src (N, C, H, W),
 * channels last, channels C .. Cp-1 zero. Moves 8 x 8 blocks (8 channels of 8 pixels) so
 * that loads and stores are runs of 8 contiguous floats. */
static void to_channels_last(float *X, const float *src, int C, int Cp, int H, int W, int img0,
                             int nb, int ya, int yb) {
    const size_t HW = (size_t)H * W, P = (size_t)(yb - ya) * W; /* pixels per image */
    for (int i = 0; i < nb; i++) {
        const float *im = src + ((size_t)(img0 + i) * C) * HW + (size_t)ya * W;
        float *xi = X + (size_t)i * P * Cp;
        for (int c0 = 0; c0 < Cp; c0 += 8) {
            const float *pc[8];
            for (int l = 0; l < 8; l++) pc[l] = c0 + l < C ? im + (size_t)(c0 + l) * HW : NULL;
            size_t p = 0;
            if (c0 + 8 <= C)
                for (; p + 8 <= P; p += 8) {
                    v8f r[8]; /* (channel, pixel) */
                    for (int l = 0; l < 8; l++) memcpy(&r[l], pc[l] + p, sizeof r[l]);
                    transpose8(r);
                    for (int j = 0; j < 8; j++) memcpy(xi + (p + j) * Cp + c0, &r[j], sizeof r[j]);
                }
            for (; p < P; p++) {
                float *xp = xi + p * Cp + c0;
                for (int l = 0; l < 8; l++) xp[l] = pc[l] ? pc[l][p] : 0.0f;
            }
        }
    }
}

/* F(4x4, 3x3): (B^T d B)[xi] for VN channels at once as vectors (VT: v8f or v16f), stored
 * straight into the 36 planes (vt + xi * vp + c), d[rs] + c channel c of the 6x6 tile's pixel
 * rs, with B^T as at weight_tile4_8: one row of B^T applied to (a0 .. a5) is, with s = a3 - a1
 * and t = a4 - a2,
 *   2 (a0 - a2) + 2 t + 3 s,  2 (s + t) + 3 (a2 + a3),  2 (t - s) + 3 (a3 - a2),  2 s + t,
 *   2 t - s,  2 (a5 - a3) - 2 s + 3 t,
 * down the columns (into t) and then along the rows. Each element goes through the same
 * operations whatever VN (and as the earlier scalar form did), so the bits do not depend on
 * the vector width. */
#define WINO_BT6(T, o, os, a0, a1, a2, a3, a4, a5)                                               \
    do {                                                                                         \
        const T s_ = (a3) - (a1), t_ = (a4) - (a2);                                              \
        (o)[0 * (os)] = 2 * ((a0) - (a2)) + 2 * t_ + 3 * s_;                                     \
        (o)[1 * (os)] = 2 * (s_ + t_) + 3 * ((a2) + (a3));                                       \
        (o)[2 * (os)] = 2 * (t_ - s_) + 3 * ((a3) - (a2));                                       \
        (o)[3 * (os)] = 2 * s_ + t_;                                                             \
        (o)[4 * (os)] = 2 * t_ - s_;                                                             \
        (o)[5 * (os)] = 2 * ((a5) - (a3)) - 2 * s_ + 3 * t_;                                     \
    } while (0)
#define WINO_INPUT_TILE4(NAME, VT)                                                               \
    static inline void NAME(float *vt, size_t vp, const float *const d[36], int c) {             \
        VT t[36]; /* B^T d: t[6 i + s] is row i of column s */                                   \
        for (int s = 0; s < 6; s++) {                                                            \
            VT a[6];                                                                             \
            for (int i = 0; i < 6; i++) memcpy(&a[i], d[6 * i + s] + c, sizeof a[i]);            \
            WINO_BT6(VT, &t[s], 6, a[0], a[1], a[2], a[3], a[4], a[5]);                          \
        }                                                                                        \
        for (int r = 0; r < 6; r++) {                                                            \
            const VT *u = &t[6 * r];                                                             \
            VT v[6];                                                                             \
            WINO_BT6(VT, v, 1, u[0], u[1], u[2], u[3], u[4], u[5]);                              \
            for (int k = 0; k < 6; k++) memcpy(vt + (6 * r + k) * vp + c, &v[k], sizeof v[k]);   \
        }                                                                                        \
    }

/* 16 floats as one vector (an AVX-512 register; two or four on the other paths). */
typedef float v16f __attribute__((vector_size(64)));

/* v[xi] = (B^T d B)[xi] for VN channels at once as vectors (VT: v8f or v16f), stored straight
 * into the 16 planes: d[rs] + c is channel c of the tile's pixel rs, B^T = [1 0 -1 0;
 * 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. One row r of B^T d at a time (4 vectors), then B along it, so
 * that at most a dozen vectors are live: with all 16 pixels loaded first, the AVX2 copy of
 * the 16-channel form needed 64 ymm registers of 16 and spilled to the stack. The same
 * operations on each element as the scalar form, so the same bits whatever VN. */
#define WINO_INPUT_TILE(NAME, VT)                                                                \
    static inline void NAME(float *vt, size_t vp, const float *const d[16], int c) {             \
        for (int r = 0; r < 4; r++) {                                                            \
            VT t[4];                                                                             \
            for (int s = 0; s < 4; s++) { /* row r of B^T d, column s */                         \
                VT p, q;                                                                         \
                const int i = r == 0 ? 0 : r == 2 ? 8 : 4;                                       \
                const int j = r < 2 ? 8 : r == 2 ? 4 : 12;                                       \
                memcpy(&p, d[i + s] + c, sizeof p);                                              \
                memcpy(&q, d[j + s] + c, sizeof q);                                              \
                t[s] = r == 1 ? p + q : p - q;                                                   \
            }                                                                                    \
            const VT v[4] = {t[0] - t[2], t[1] + t[2], t[2] - t[1], t[1] - t[3]};                \
            for (int k = 0; k < 4; k++) memcpy(vt + (4 * r + k) * vp + c, &v[k], sizeof v[k]);   \
        }                                                                                        \
    }
WINO_INPUT_TILE(input_tile_v8, v8f)
WINO_INPUT_TILE(input_tile_v16, v16f)
WINO_INPUT_TILE4(input_tile4_v8, v8f)
WINO_INPUT_TILE4(input_tile4_v16, v16f)
#undef WINO_BT6

/* V (np planes (T, Cp), stride vp) for the chunk's tiles in (image, th, tw) order, from X
 * holding rows [ya, yb) of each image channels-last. */
static inline void input_transform_m(float *V, size_t vp, const float *X, const wino_plan *pl,
                                     int nb, int th0, int th1, int ya, int yb, const int m) {
    const int H = pl->H, W = pl->W, TW = pl->TW, Cp = pl->Cp, rows = yb - ya;
    const int a = m + 2;
    size_t t = 0;
    for (int i = 0; i < nb; i++)
        for (int th = th0; th < th1; th++)
            for (int tw = 0; tw < TW; tw++, t++) {
                const float *p[36]; /* the tile's a x a pixels, channels contiguous */
                for (int r = 0; r < a; r++)
                    for (int s = 0; s < a; s++) {
                        int y = m * th - 1 + r, x = m * tw - 1 + s;
                        p[a * r + s] = y >= 0 && y < H && x >= 0 && x < W
                                           ? X + (((size_t)i * rows + (y - ya)) * W + x) * Cp
                                           : pl->zero;
                    }
                float *vt = V + t * Cp;
                if (m == 2) {
                    int c = 0;
                    if (pl->wide)
                        for (; c + 16 <= Cp; c += 16) input_tile_v16(vt, vp, p, c);
                    for (; c < Cp; c += 8) input_tile_v8(vt, vp, p, c);
                    continue;
                }
                int c = 0;
                if (pl->wide)
                    for (; c + 16 <= Cp; c += 16) input_tile4_v16(vt, vp, p, c);
                for (; c < Cp; c += 8) input_tile4_v8(vt, vp, p, c);
            }
}

/* ---- output transform: Y = A^T m A, A^T = [1 1 1 0; 0 1 -1 -1] --------------------------- */

/* y[q][l] (2x2 row-major per lane) from 8 channels of a 4x4 tile: m[xi] + l. */
static void output_tile8(float y[16][8], const float *const m[16]) {
    for (int l = 0; l < 8; l++) {
        float s[4], d[4]; /* A^T down each column: top (s) and bottom (d) output rows */
        for (int j = 0; j < 4; j++) {
            s[j] = m[j][l] + m[4 + j][l] + m[8 + j][l];
            d[j] = m[4 + j][l] - m[8 + j][l] - m[12 + j][l];
        }
        y[0][l] = s[0] + s[1] + s[2], y[1][l] = s[1] - s[2] - s[3];
        y[2][l] = d[0] + d[1] + d[2], y[3][l] = d[1] - d[2] - d[3];
    }
}

/* F(4x4, 3x3): y[q] (the 4x4 outputs row-major, 8 channels each) from the 6x6 tile whose
 * plane xi holds 8 channels at mt + xi * mp, A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0;
 * 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1] (weight_tile4_8), applied down the columns (into t) and then
 * along the rows, by the same expressions (so the same bits as an element-by-element form). */
#define WINO_AT6(T, o, os, a0, a1, a2, a3, a4, a5)                                               \
    do {                                                                                         \
        const T p12_ = (a1) + (a2), d12_ = (a1) - (a2);                                          \
        (o)[0 * (os)] = (a0) + p12_ + ((a3) + (a4));                                             \
        (o)[1 * (os)] = d12_ + (0.5f * (a3) - 2 * (a4));                                         \
        (o)[2 * (os)] = p12_ + (0.25f * (a3) + 4 * (a4));                                        \
        (o)[3 * (os)] = d12_ + (0.125f * (a3) - 8 * (a4)) + (a5);                                \
    } while (0)
static inline void output_tile4_v8(v8f y[16], const float *mt, size_t mp) {
    v8f t[24]; /* A^T m: t[6 i + s] is row i of column s */
    for (int s = 0; s < 6; s++) {
        v8f a[6];
        for (int i = 0; i < 6; i++) memcpy(&a[i], mt + (6 * i + s) * mp, sizeof a[i]);
        WINO_AT6(v8f, &t[s], 6, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    for (int r = 0; r < 4; r++) {
        const v8f *u = &t[6 * r];
        WINO_AT6(v8f, &y[4 * r], 1, u[0], u[1], u[2], u[3], u[4], u[5]);
    }
}
#undef WINO_AT6

/* dst images [img0, img0 + nb), output rows of tile rows [th0, th1), from M (16 planes
 * (T, Kp), stride mp) in the order input_transform wrote the tiles. A block of up to WINO_TB
 * tiles of a tile row is transformed 8 channels at a time into y (2 rows of each channel),
 * then written out as whole row segments, so the stores to dst are unit-stride. */
static inline void output_transform_m(const float *M, size_t mp, const wino_plan *pl, int img0,
                                      int nb, int th0, int th1, int jfirst, const int m) {
    const int H = pl->H, W = pl->W, TW = pl->TW, Ko = pl->Ko, Kp = pl->Kp;
    const size_t HW = (size_t)H * W;
    size_t t = 0; /* first tile of the current tile row */
    for (int i = 0; i < nb; i++) {
        float *img = pl->dst + (size_t)(img0 + i) * Ko * HW;
        for (int th = th0; th < th1; th++, t += TW) {
            const int y0 = m * th, ny = H - y0 < m ? H - y0 : m;
            for (int j0 = jfirst; j0 < TW; j0 += WINO_TB) {
                const int nj = TW - j0 < WINO_TB ? TW - j0 : WINO_TB;
                const int x0 = m * j0, nx = W - x0 < m * nj ? W - x0 : m * nj;
                for (int k0 = 0; k0 < Kp; k0 += 8) {
                    float y[8][4][4 * WINO_TB]; /* (channel, output row, column) */
                    for (int j = 0; j < nj; j++) {
                        const float *mt = M + (t + j0 + j) * Kp + k0;
                        float q[16][8]; /* (output pixel of the m x m tile, channel) */
                        if (m == 4) {
                            v8f qv[16];
                            output_tile4_v8(qv, mt, mp);
                            memcpy(q, qv, sizeof q);
                        } else {
                            const float *mx[16];
                            for (int xi = 0; xi < 16; xi++) mx[xi] = mt + xi * mp;
                            output_tile8(q, mx);
                        }
                        for (int l = 0; l < 8; l++)
                            for (int a = 0; a < m; a++)
                                for (int b = 0; b < m; b++) y[l][a][m * j + b] = q[m * a + b][l];
                    }
                    const int nl = Ko - k0 < 8 ? Ko - k0 : 8;
                    for (int l = 0; l < nl; l++)
                        for (int a = 0; a < ny; a++) {
                            float *o = img + (size_t)(k0 + l) * HW + (size_t)(y0 + a) * W + x0;
                            const float *ya = y[l][a];
                            if (pl->acc) {
                                for (int x = 0; x < nx; x++) o[x] += ya[x];
                            } else {
                                const float bk = pl->bias ? pl->bias[k0 + l] : 0.0f;
                                for (int x = 0; x < nx; x++) o[x] = ya[x] + bk;
                            }
                        }
                }
            }
        }
    }
}

/* One channel's run of 8 outputs at o: o += *vp (pl->acc), else o = *vp + channel k's bias. */
static inline void store_run8(const wino_plan *pl, float *o, const v8f *vp, int k) {
    v8f v = *vp;
    if (pl->acc) {
        v8f cur;
        memcpy(&cur, o, sizeof cur);
        v = cur + v;
    } else {
        const float bk = pl->bias ? pl->bias[k] : 0.0f;
        v = v + bk;
    }
    memcpy(o, &v, sizeof v);
}

/* F(2x2) output transform of 4 tiles side by side (8 output columns of 2 rows), 8 channels:
 * for each of the two output rows, each tile's two pixels from its 12 planes that row needs
 * (as in output_tile8), then the 8 x 8 (column, channel) block transposed in registers into
 * rows of 8 pixels per channel, which are stored whole. One output row at a time keeps about
 * 20 vectors live (both rows at once, 40, spilled on AVX2's 16 registers). Same arithmetic as
 * output_tile8 per element. */
static inline void output_quad8(const wino_plan *pl, const float *M, size_t mp, size_t t,
                                float *img, int k0, int y0, int ny, int x0) {
    const int Kp = pl->Kp, W = pl->W;
    const size_t HW = (size_t)pl->H * W;
    const int nl = pl->Ko - k0 < 8 ? pl->Ko - k0 : 8;
    for (int a = 0; a < ny; a++) {
        v8f r[8]; /* output row y0 + a: column 2j + b in r[2j + b] (8 channels) */
        for (int j = 0; j < 4; j++) {
            const float *mt = M + (t + j) * Kp + k0;
            v8f sv[4];
            for (int c = 0; c < 4; c++) {
                /* row 0: m[c] + m[4 + c] + m[8 + c]; row 1: m[4 + c] - m[8 + c] - m[12 + c] */
                v8f p, q, u;
                memcpy(&p, mt + (a ? 4 + c : c) * mp, sizeof p);
                memcpy(&q, mt + (a ? 8 + c : 4 + c) * mp, sizeof q);
                memcpy(&u, mt + (a ? 12 + c : 8 + c) * mp, sizeof u);
                sv[c] = a ? p - q - u : p + q + u;
            }
            r[2 * j] = sv[0] + sv[1] + sv[2], r[2 * j + 1] = sv[1] - sv[2] - sv[3];
        }
        transpose8(r);
        for (int l = 0; l < nl; l++) {
            float *o = img + (size_t)(k0 + l) * HW + (size_t)(y0 + a) * W + x0;
            /* The same columns of the next tile row, reached after this row's other quads and
             * channels: fetched now, so its read-modify-write does not wait on memory. */
            __builtin_prefetch(o + 2 * (size_t)W, 1, 3);
            store_run8(pl, o, &r[l], k0 + l);
        }
    }
}

/* F(4x4) output transform of 2 tiles side by side (8 output columns of 4 rows), 8 channels:
 * both tiles' 4x4 outputs (output_tile4_v8), then for each output row the 8 x 8 (column,
 * channel) block transposed in registers into rows of 8 pixels per channel, stored whole (as
 * output_quad8 does for F(2x2)). Same arithmetic per element as output_transform_m. */
static inline void output_pair8_f4(const wino_plan *pl, const float *M, size_t mp, size_t t,
                                   float *img, int k0, int y0, int ny, int x0) {
    const int Kp = pl->Kp, W = pl->W;
    const size_t HW = (size_t)pl->H * W;
    const int nl = pl->Ko - k0 < 8 ? pl->Ko - k0 : 8;
    v8f q[2][16];
    output_tile4_v8(q[0], M + t * Kp + k0, mp);
    output_tile4_v8(q[1], M + (t + 1) * Kp + k0, mp);
    for (int a = 0; a < ny; a++) {
        v8f r[8]; /* output row y0 + a: column 4j + b in r[4j + b] (8 channels) */
        for (int j = 0; j < 2; j++)
            for (int b = 0; b < 4; b++) r[4 * j + b] = q[j][4 * a + b];
        transpose8(r);
        for (int l = 0; l < nl; l++) {
            store_run8(pl, img + (size_t)(k0 + l) * HW + (size_t)(y0 + a) * W + x0, &r[l],
                       k0 + l);
        }
    }
}

/* The output transform by blocks of 8 output columns (8 / m tiles: output_quad8 for F(2x2),
 * output_pair8_f4 for F(4x4)) where they lie inside the map, output_transform_m for the rest
 * of each tile row. */
static inline void output_transform_blocks(const float *M, size_t mp, const wino_plan *pl,
                                           int img0, int nb, int th0, int th1, const int m) {
    const int H = pl->H, W = pl->W, TW = pl->TW, Ko = pl->Ko, Kp = pl->Kp, per = 8 / m;
    const size_t HW = (size_t)H * W;
    const int blocks = W / 8; /* blocks of tiles whose 8 columns are all inside */
    size_t t = 0;
    for (int i = 0; blocks && i < nb; i++) {
        float *img = pl->dst + (size_t)(img0 + i) * Ko * HW;
        for (int th = th0; th < th1; th++, t += TW) {
            const int y0 = m * th, ny = H - y0 < m ? H - y0 : m;
            for (int q = 0; q < blocks; q++)
                for (int k0 = 0; k0 < Kp; k0 += 8) {
                    if (m == 4)
                        output_pair8_f4(pl, M, mp, t + per * q, img, k0, y0, ny, 8 * q);
                    else
                        output_quad8(pl, M, mp, t + per * q, img, k0, y0, ny, 8 * q);
                }
        }
    }
    if (per * blocks < TW) /* the remaining tiles of each row */
        output_transform_m(M, mp, pl, img0, nb, th0, th1, per * blocks, m);
}

/* The two transforms specialised for each tile size (the loops over a tile's pixels then have
 * constant bounds and unroll: the generic versions were 1.8x slower on F(2x2)). */
static void input_transform(float *V, size_t vp, const float *X, const wino_plan *pl, int nb,
                            int th0, int th1, int ya, int yb) {
    if (pl->m == 4)
        input_transform_m(V, vp, X, pl, nb, th0, th1, ya, yb, 4);
    else
        input_transform_m(V, vp, X, pl, nb, th0, th1, ya, yb, 2);
}

static void output_transform(const float *M, size_t mp, const wino_plan *pl, int img0, int nb,
                             int th0, int th1) {
    if (pl->m == 4)
        output_transform_blocks(M, mp, pl, img0, nb, th0, th1, 4);
    else
        output_transform_blocks(M, mp, pl, img0, nb, th0, th1, 2);
}

/* One chunk, start to finish, on this thread's buffers: V (16 planes (Tmax, Cp)) and XM,
 * which holds first the channels-last input and then M (16 planes (Tmax, Kp)). */
static void run_chunk(const wino_plan *pl, int q, float *V, size_t vp, float *XM, size_t mp) {
    int img0, nb, th0, th1;
    chunk_range(pl, q, &img0, &nb, &th0, &th1);
    const int m = pl->m;
    const int ya = m * th0 - 1 < 0 ? 0 : m * th0 - 1;
    const int yb = m * th1 + 1 > pl->H ? pl->H : m * th1 + 1;
    const int T = nb * (th1 - th0) * pl->TW;
    to_channels_last(XM, pl->src, pl->Ci, pl->Cp, pl->H, pl->W, img0, nb, ya, yb);
    input_transform(V, vp, XM, pl, nb, th0, th1, ya, yb);
    /* np products M[xi] (T, Kp) = V[xi] (T, Cp) U[xi] (Cp, Kp), on this thread (the batch runs
     * serially inside the chunk loop's parallel region). */
    bt_sgemm_batch_pb(pl->np, BT_NOTRANS, T, pl->Kp, pl->Cp, 1.0f, V, pl->Cp, (ptrdiff_t)vp,
                      pl->Up, (ptrdiff_t)pl->upk, 0.0f, XM, pl->Kp, (ptrdiff_t)mp);
    output_transform(XM, mp, pl, img0, nb, th0, th1);
}

/* The transforms per instruction set: the same C compiled for AVX2 and AVX-512 (flatten
 * inlines the transforms into each copy; the GEMMs are calls), chosen with the GEMM kernels'
 * path, so BARLOW_ISA pins them too. The arithmetic of each element is the same in every
 * copy (no reductions, and no contraction into FMAs: -ffp-contract=off), only the vector
 * width changes. */
typedef void (*chunk_fn)(const wino_plan *pl, int q, float *V, size_t vp, float *XM, size_t mp);
#if defined(__x86_64__) || defined(__i386__)
#define WINO_AVX2 "avx2,fma"
#define WINO_AVX512 "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"
__attribute__((target(WINO_AVX2), flatten)) static void run_chunk_avx2(const wino_plan *pl, int q,
                                                                        float *V, size_t vp,
                                                                        float *XM, size_t mp) {
    run_chunk(pl, q, V, vp, XM, mp);
}
__attribute__((target(WINO_AVX512), flatten)) static void run_chunk_avx512(const wino_plan *pl,
                                                                            int q, float *V,
                                                                            size_t vp, float *XM,
                                                                            size_t mp) {
    run_chunk(pl, q, V, vp, XM, mp);
}
#endif
static chunk_fn chunk_for_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    switch (bt_isa_current()) {
    case BT_ISA_AVX512: return run_chunk_avx512;
    case BT_ISA_AVX2: return run_chunk_avx2;
    default: break;
    }
#endif
    return run_chunk;
}

/* Tiles per chunk before plan_chunks' limits: as many as keep a chunk's transformed input and
 * GEMM output (np planes each) within WINO_CHUNK_BYTES, at least WINO_TMIN (F(4x4):
 * WINO_TMIN4) and at least `at_least`, at most `cap`; bt_wino_set_chunk_tiles overrides all
 * of it. */
static size_t chunk_tiles(const wino_plan *pl, size_t at_least, size_t cap) {
    if (wino_chunk_tiles) return wino_chunk_tiles;
    size_t t = WINO_CHUNK_BYTES / (sizeof(float) * pl->np * ((size_t)pl->Cp + pl->Kp));
    const size_t tmin = pl->np == 36 ? WINO_TMIN4 : WINO_TMIN;
    if (t < tmin) t = tmin;
    if (t < at_least) t = at_least;
    return t < cap ? t : cap;
}

/* Cuts the N images of pl into chunks of at most tmax tiles (but at least one tile row, and
 * no more than an equal share of nt threads): whole images, or bands of tile rows of one
 * image. Sets pl's chunk fields; returns the number of chunks, *T the tiles of the largest and
 * *xrows the input rows (pixel rows with the halo) it reads. */
static int plan_chunks(wino_plan *pl, size_t tmax, int nt, size_t *T, int *xrows) {
    const size_t TP = (size_t)pl->TH * pl->TW, total = (size_t)pl->N * TP;
    if (tmax > (total + nt - 1) / nt) tmax = (total + nt - 1) / nt;
    if (tmax < (size_t)pl->TW) tmax = pl->TW;
    if (tmax >= TP) {
        pl->whole = 1, pl->nb = (int)(tmax / TP), pl->R = pl->TH, pl->bands = 1;
    } else {
        pl->whole = 0, pl->nb = 1, pl->R = (int)(tmax / pl->TW);
        pl->bands = (pl->TH + pl->R - 1) / pl->R;
    }
    *T = pl->whole ? (size_t)pl->nb * TP : (size_t)pl->R * pl->TW;
    const int band_rows = pl->m * pl->R + 2;
    *xrows = pl->whole ? pl->nb * pl->H : (band_rows < pl->H ? band_rows : pl->H);
    return pl->whole ? (pl->N + pl->nb - 1) / pl->nb : pl->N * pl->bands;
}

/* dst (N, Ko, H, W) = (or +=) the Winograd conv of src (N, Ci, H, W) with w. */
static int wino_run(bt_arena *ws, float *dst, const float *src, const float *w,
                    const float *bias, int N, int Ci, int Ko, int H, int W, int flip, int acc,
                    int m) {
    wino_plan pl = {.N = N, .Ci = Ci, .Ko = Ko, .Cp = (int)round8(Ci), .Kp = (int)round8(Ko),
                    .H = H, .W = W, .TH = (H + m - 1) / m, .TW = (W + m - 1) / m, .m = m,
                    .np = (m + 2) * (m + 2), .src = src, .dst = dst, .bias = bias, .acc = acc,
                    .flip = flip, .wide = bt_isa_current() == BT_ISA_AVX512};
    int nt = bt_threads();
    /* Tiles per chunk: the rule above, but small enough that every thread gets a chunk. */
    const size_t tmax = chunk_tiles(&pl, 0, (size_t)-1);
    size_t T;
    int xrows;
    const int nchunks = plan_chunks(&pl, tmax, nt, &T, &xrows);
    const size_t x_n = (size_t)xrows * W * pl.Cp;
    const size_t vp = plane_stride(T * pl.Cp), mp = plane_stride(T * pl.Kp);
    const size_t np = (size_t)pl.np;
    const size_t xm_n = plane_stride(np * mp > x_n ? np * mp : x_n), v_n = np * vp;
    pl.up = plane_stride((size_t)pl.Cp * pl.Kp);
    pl.upk = plane_stride(bt_sgemm_packed_b_floats(pl.Kp, pl.Cp));
    if (nt > nchunks) nt = nchunks;
    float *scr = bt_arena_get(ws, sizeof(float) * (np * (pl.up + pl.upk) + plane_stride(pl.Cp) +
                                                  (size_t)nt * (v_n + xm_n)));
    if (!scr) return BT_ENOMEM;
    float *Up = scr, *U = Up + np * pl.upk, *zero = U + np * pl.up;
    float *bufs = zero + plane_stride(pl.Cp);
    memset(zero, 0, sizeof(float) * pl.Cp);
    weight_transform(U, pl.up, w, flip ? Ci : Ko, flip ? Ko : Ci, flip, bt_threads(), m);
    /* Each plane of U packed once for all the chunks' products (each chunk would otherwise
     * re-pack all of U: 16 MB per chunk at 512 x 512 channels). */
#pragma omp parallel for num_threads(bt_threads()) schedule(static)
    for (int xi = 0; xi < pl.np; xi++)
        bt_sgemm_pack_b(Up + xi * pl.upk, flip ? BT_NOTRANS : BT_TRANS, pl.Kp, pl.Cp,
                        U + xi * pl.up, flip ? pl.Kp : pl.Cp);
    pl.Up = Up, pl.zero = zero;
    const chunk_fn chunk = chunk_for_isa();
    /* Chunks are independent and computed the same way on any thread: dynamic scheduling
     * balances a busy machine without changing the result. */
#pragma omp parallel num_threads(nt)
    {
        float *V = bufs + (size_t)omp_get_thread_num() * (v_n + xm_n), *XM = V + v_n;
#pragma omp for schedule(dynamic, 1)
        for (int q = 0; q < nchunks; q++) chunk(&pl, q, V, vp, XM, mp);
    }
    return BT_OK;
}

/* ---- weight gradient: dg = G^T (sum over tiles of (A dy A^T) .* (B^T d B)) G --------------
 *
 * With M = U .* V and Y = A^T M A, the gradient reaching M is A dY A^T, and summed over the
 * tiles and the batch, dU[xi] (Kp, Cp) = D[xi]^T V[xi], with D the transformed output
 * gradient: 16 GEMMs again (F(4x4): 36), now with the tiles as the inner dimension. F(4x4) uses
 * the forward's B^T, A^T and G (weight_tile4_8), so its identity is exact in real arithmetic as
 * well; its rounding stays within the PyTorch parity tolerances (winograd_internal.h). Each thread
 * sums its own chunks into its own dU (a fixed, contiguous share of the chunks, so the sums, and
 * the result, are the same on every run with the same thread count); the fold adds the threads' dU
 * in thread order and maps each 4x4 (6x6) back to 3x3 with G^T . G. */

/* m[xi] = (A dy A^T)[xi] for VN channels at once as vectors (VT: v8f or v16f), stored
 * straight into the 16 planes, A = [1 0; 1 1; 1 -1; 0 -1]: p[2a + b] + k is channel k of the
 * tile's output pixel (a, b). One row of A dy at a time (see WINO_INPUT_TILE). */
#define WINO_GRAD_TILE(NAME, VT)                                                                 \
    static inline void NAME(float *dt, size_t dp, const float *const p[4], int k) {              \
        for (int r = 0; r < 4; r++) {                                                            \
            VT u, v; /* row r of A dy: dy row 0, the sum, the difference, minus row 1 */         \
            if (r == 0 || r == 3) {                                                              \
                memcpy(&u, p[r == 0 ? 0 : 2] + k, sizeof u);                                     \
                memcpy(&v, p[r == 0 ? 1 : 3] + k, sizeof v);                                     \
                if (r == 3) u = -u, v = -v;                                                      \
            } else {                                                                             \
                VT a, b, c, e;                                                                   \
                memcpy(&a, p[0] + k, sizeof a);                                                  \
                memcpy(&b, p[1] + k, sizeof b);                                                  \
                memcpy(&c, p[2] + k, sizeof c);                                                  \
                memcpy(&e, p[3] + k, sizeof e);                                                  \
                u = r == 1 ? a + c : a - c, v = r == 1 ? b + e : b - e;                          \
            }                                                                                    \
            const VT o[4] = {u, u + v, u - v, -v};                                               \
            for (int q = 0; q < 4; q++) memcpy(dt + (4 * r + q) * dp + k, &o[q], sizeof o[q]);   \
        }                                                                                        \
    }
WINO_GRAD_TILE(grad_tile_v8, v8f)
WINO_GRAD_TILE(grad_tile_v16, v16f)

/* F(4x4, 3x3): dt[xi * dp + k] = (A dy A^T)[xi] for VN channels at once as vectors (VT: v8f
 * or v16f; stored straight into the 36 planes, as grad_tile_v8 into its 16), p[4a + b] + k
 * channel k of the tile's output pixel (a, b), with A^T as at WINO_AT6: A applied to (y0 .. y3) is
 *   y0,  (y0 + y2) + (y1 + y3),  (y0 + y2) - (y1 + y3),  (y0 + y2 / 4) + (y1 + y3 / 4) / 2,
 *   (y0 + 4 y2) - 2 (y1 + 4 y3),  y3
 * (every factor a power of two), down the columns and then along the rows. */
#define WINO_A6(T, o, os, y0, y1, y2, y3)                                                        \
    do {                                                                                         \
        const T p_ = (y0) + (y2), q_ = (y1) + (y3);                                              \
        (o)[0 * (os)] = (y0);                                                                    \
        (o)[1 * (os)] = p_ + q_;                                                                 \
        (o)[2 * (os)] = p_ - q_;                                                                 \
        (o)[3 * (os)] = ((y0) + 0.25f * (y2)) + 0.5f * ((y1) + 0.25f * (y3));                    \
        (o)[4 * (os)] = ((y0) + 4 * (y2)) - 2 * ((y1) + 4 * (y3));                               \
        (o)[5 * (os)] = (y3);                                                                    \
    } while (0)
#define WINO_GRAD_TILE4(NAME, VT)                                                                \
    static inline void NAME(float *dt, size_t dp, const float *const p[16], int k) {             \
        VT t[24]; /* A dy: t[4 i + s] is row i of column s */                                    \
        for (int s = 0; s < 4; s++) {                                                            \
            VT y[4];                                                                             \
            for (int i = 0; i < 4; i++) memcpy(&y[i], p[4 * i + s] + k, sizeof y[i]);            \
            WINO_A6(VT, &t[s], 4, y[0], y[1], y[2], y[3]);                                       \
        }                                                                                        \
        for (int r = 0; r < 6; r++) { /* row r of the 6x6 straight into planes 6r .. 6r + 5 */   \
            const VT *u = &t[4 * r];                                                             \
            VT o[6];                                                                             \
            WINO_A6(VT, o, 1, u[0], u[1], u[2], u[3]);                                           \
            for (int q = 0; q < 6; q++) memcpy(dt + (6 * r + q) * dp + k, &o[q], sizeof o[q]);   \
        }                                                                                        \
    }
WINO_GRAD_TILE4(grad_tile4_v8, v8f)
WINO_GRAD_TILE4(grad_tile4_v16, v16f)
#undef WINO_A6

/* D (np planes (T, Kp), stride dp) for the chunk's tiles in (image, th, tw) order, from Y
 * holding output-gradient rows [ya, yb) of each image channels-last (Kp). Output pixels
 * outside the map (odd H or W) read as zero: the forward pass did not write them. */
static inline void grad_transform_m(float *D, size_t dp, const float *Y, const wino_plan *pl,
                                    int nb, int th0, int th1, int ya, int yb, const int m) {
    const int H = pl->H, W = pl->W, TW = pl->TW, Kp = pl->Kp, rows = yb - ya;
    size_t t = 0;
    for (int i = 0; i < nb; i++)
        for (int th = th0; th < th1; th++)
            for (int tw = 0; tw < TW; tw++, t++) {
                const float *p[16];
                for (int a = 0; a < m; a++)
                    for (int b = 0; b < m; b++) {
                        const int y = m * th + a, x = m * tw + b;
                        p[m * a + b] = y < H && x < W
                                           ? Y + (((size_t)i * rows + (y - ya)) * W + x) * Kp
                                           : pl->zero;
                    }
                float *dt = D + t * Kp;
                if (m == 4) {
                    int k = 0;
                    if (pl->wide)
                        for (; k + 16 <= Kp; k += 16) grad_tile4_v16(dt, dp, p, k);
                    for (; k < Kp; k += 8) grad_tile4_v8(dt, dp, p, k);
                    continue;
                }
                int k = 0;
                if (pl->wide)
                    for (; k + 16 <= Kp; k += 16) grad_tile_v16(dt, dp, p, k);
                for (; k < Kp; k += 8) grad_tile_v8(dt, dp, p, k);
            }
}

/* Specialised per tile size, as input_transform. */
static void grad_transform(float *D, size_t dp, const float *Y, const wino_plan *pl, int nb,
                           int th0, int th1, int ya, int yb) {
    if (pl->m == 4)
        grad_transform_m(D, dp, Y, pl, nb, th0, th1, ya, yb, 4);
    else
        grad_transform_m(D, dp, Y, pl, nb, th0, th1, ya, yb, 2);
}

/* Chunk q of the weight gradient: dU (np planes (Kp, Cp), stride pl->up) += (or, if first,
 * =) D^T V over its tiles. V (np planes (T, Cp)) and D (np planes (T, Kp)) are this thread's,
 * X holds first the chunk's input rows, then its output-gradient rows, channels-last. */
static void run_chunk_dw(const wino_plan *pl, const float *dout, int q, float *V, size_t vp,
                         float *D, size_t dp, float *X, float *dU, int first) {
    int img0, nb, th0, th1;
    chunk_range(pl, q, &img0, &nb, &th0, &th1);
    const int m = pl->m;
    const int ya = m * th0 - 1 < 0 ? 0 : m * th0 - 1;
    const int yb = m * th1 + 1 > pl->H ? pl->H : m * th1 + 1;
    const int oa = m * th0, ob = m * th1 > pl->H ? pl->H : m * th1;
    const int T = nb * (th1 - th0) * pl->TW;
    to_channels_last(X, pl->src, pl->Ci, pl->Cp, pl->H, pl->W, img0, nb, ya, yb);
    input_transform(V, vp, X, pl, nb, th0, th1, ya, yb);
    to_channels_last(X, dout, pl->Ko, pl->Kp, pl->H, pl->W, img0, nb, oa, ob);
    grad_transform(D, dp, X, pl, nb, th0, th1, oa, ob);
    bt_sgemm_batch(pl->np, BT_TRANS, BT_NOTRANS, pl->Kp, pl->Cp, T, 1.0f, D, pl->Kp,
                   (ptrdiff_t)dp, V, pl->Cp, (ptrdiff_t)vp, first ? 0.0f : 1.0f, dU, pl->Cp,
                   (ptrdiff_t)pl->up);
}

typedef void (*chunk_dw_fn)(const wino_plan *pl, const float *dout, int q, float *V, size_t vp,
                            float *D, size_t dp, float *X, float *dU, int first);
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target(WINO_AVX2), flatten)) static void
run_chunk_dw_avx2(const wino_plan *pl, const float *dout, int q, float *V, size_t vp, float *D,
                  size_t dp, float *X, float *dU, int first) {
    run_chunk_dw(pl, dout, q, V, vp, D, dp, X, dU, first);
}
__attribute__((target(WINO_AVX512), flatten)) static void
run_chunk_dw_avx512(const wino_plan *pl, const float *dout, int q, float *V, size_t vp, float *D,
                    size_t dp, float *X, float *dU, int first) {
    run_chunk_dw(pl, dout, q, V, vp, D, dp, X, dU, first);
}
#endif
static chunk_dw_fn chunk_dw_for_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    switch (bt_isa_current()) {
    case BT_ISA_AVX512: return run_chunk_dw_avx512;
    case BT_ISA_AVX2: return run_chunk_dw_avx2;
    default: break;
    }
#endif
    return run_chunk_dw;
}

/* dw (K, C, 3, 3) += G^T u G, u the 4x4 sum over the `parts` dU copies (each 16 planes of
 * stride up, (Kp, Cp), copies `per` floats apart), added in copy order. */
static void fold_weight_grad(float *dw, const float *dU, size_t up, size_t per, int parts,
                             int K, int C, int Cp, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            const size_t at = (size_t)k * Cp + c;
            float u[16], t[3][4];
            for (int xi = 0; xi < 16; xi++) {
                float s = dU[xi * up + at];
                for (int p = 1; p < parts; p++) s += dU[p * per + xi * up + at];
                u[xi] = s;
            }
            for (int j = 0; j < 4; j++) { /* G^T u, column j */
                const float a = u[j], b = u[4 + j], e = u[8 + j], f = u[12 + j];
                t[0][j] = a + 0.5f * (b + e);
                t[1][j] = 0.5f * (b - e);
                t[2][j] = 0.5f * (b + e) + f;
            }
            float *g = dw + 9 * ((size_t)k * C + c);
            for (int r = 0; r < 3; r++) { /* (G^T u) G, row r */
                const float a = t[r][0], b = t[r][1], e = t[r][2], f = t[r][3];
                g[3 * r + 0] += a + 0.5f * (b + e);
                g[3 * r + 1] += 0.5f * (b - e);
                g[3 * r + 2] += 0.5f * (b + e) + f;
            }
        }
}

/* The same for F(4x4): dw += G^T u G, u the 6x6 sum (36 planes), G as at weight_tile4_8, in
 * double and rounded once; 8 input channels at a time, compiled per path as the chunks are,
 * the divisions by 6, 15 and 30 as products with the doubles nearest their reciprocals. */
#define WINO_GT6(o, os, v0, v1, v2, v3, v4, v5)                                                  \
    do {                                                                                         \
        const v8d s_ = ((v1) - (v2)) * (1.0 / 6), p_ = ((v1) + (v2)) * (1.0 / 6);                \
        (o)[0 * (os)] = 0.5 * (v0) + s_ - (16.0 / 15) * (v3) + (1.0 / 30) * (v4);                \
        (o)[1 * (os)] = p_ - (8.0 / 15) * (v3) - (1.0 / 15) * (v4);                              \
        (o)[2 * (os)] = s_ - (4.0 / 15) * (v3) + (2.0 / 15) * (v4) + 0.5 * (v5);                 \
    } while (0)
/* Output channel k's row of dw, 8 input channels at a time as vectors (v8d; the arithmetic of
 * each element as in a lane-by-lane loop, so the same bits on every path). */
static inline void fold4_k(float *dw, const float *dU, size_t up, size_t per, int parts, int k,
                           int C, int Cp) {
    for (int c0 = 0; c0 < C; c0 += 8) {
        const size_t at = (size_t)k * Cp + c0; /* 8 lanes: the planes are Cp wide */
        const int nl = C - c0 < 8 ? C - c0 : 8;
        v8d u[36], t[18], g[9];
        for (int xi = 0; xi < 36; xi++) {
            v8f f;
            memcpy(&f, dU + xi * up + at, sizeof f);
            u[xi] = __builtin_convertvector(f, v8d);
            for (int p = 1; p < parts; p++) {
                memcpy(&f, dU + p * per + xi * up + at, sizeof f);
                u[xi] += __builtin_convertvector(f, v8d);
            }
        }
        for (int j = 0; j < 6; j++) /* G^T u, column j: t[6a + j] */
            WINO_GT6(&t[j], 6, u[j], u[6 + j], u[12 + j], u[18 + j], u[24 + j], u[30 + j]);
        for (int a = 0; a < 3; a++) /* (G^T u) G, row a */
            WINO_GT6(&g[3 * a], 1, t[6 * a], t[6 * a + 1], t[6 * a + 2], t[6 * a + 3],
                     t[6 * a + 4], t[6 * a + 5]);
        for (int l = 0; l < nl; l++) {
            float *o = dw + 9 * ((size_t)k * C + c0 + l);
            for (int e = 0; e < 9; e++) o[e] = (float)(o[e] + g[e][l]);
        }
    }
}
typedef void (*fold4_fn)(float *dw, const float *dU, size_t up, size_t per, int parts, int k,
                         int C, int Cp);
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target(WINO_AVX2), flatten)) static void
fold4_k_avx2(float *dw, const float *dU, size_t up, size_t per, int parts, int k, int C, int Cp) {
    fold4_k(dw, dU, up, per, parts, k, C, Cp);
}
__attribute__((target(WINO_AVX512), flatten)) static void
fold4_k_avx512(float *dw, const float *dU, size_t up, size_t per, int parts, int k, int C,
               int Cp) {
    fold4_k(dw, dU, up, per, parts, k, C, Cp);
}
#endif
static void fold_weight_grad4(float *dw, const float *dU, size_t up, size_t per, int parts,
                              int K, int C, int Cp, int nt) {
    fold4_fn f = fold4_k;
#if defined(__x86_64__) || defined(__i386__)
    if (bt_isa_current() == BT_ISA_AVX512) f = fold4_k_avx512;
    if (bt_isa_current() == BT_ISA_AVX2) f = fold4_k_avx2;
#endif
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int k = 0; k < K; k++) f(dw, dU, up, per, parts, k, C, Cp);
}
#undef WINO_GT6

/* The tile for the forward and input gradient of d: F(4x4, 3x3) on maps of 8 x 8 and more,
 * F(2x2, 3x3) below, where an image has too few 4 x 4 tiles: with 4 x 4 maps (ResNet-18/CIFAR's
 * last stage) one tile per image makes each GEMM chunk re-pack the 36 planes of U (36 MB at
 * 512 x 512 channels) for little work, and F(2x2) was faster there (bench_conv). */
static int tile_for(const bt_conv2d_desc *d, int tile) {
    return tile == BT_WINO_F4 && d->H >= 8 && d->W >= 8 ? 4 : 2;
}

/* The same for the input gradient, which also takes F(4x4) under BT_WINO_F2_DX4 and the
 * default BT_WINO_F2_DX4_DW4: its rounding error stays within the PyTorch parity tolerances there, while an
 * F(4x4) forward's does not (winograd_internal.h). */
static int tile_for_dx(const bt_conv2d_desc *d, int tile) {
    return tile_for(d, tile == BT_WINO_F2_DX4 || tile == BT_WINO_F2_DX4_DW4 ? BT_WINO_F4 : tile);
}

/* The weight gradient's: F(4x4) under BT_WINO_F4 and BT_WINO_F2_DX4_DW4, on maps of 4 x 4 and
 * more. Its U is not packed per chunk (it is the product's output, dU, one per thread), and on
 * the 4 x 4 maps of ResNet-18/CIFAR's last stage (N 256, 512 x 512 channels) it ran in 34-35 ms
 * against F(2x2)'s 44-45 (bench_conv 2 256 6, Intel family 6 model 167), where the input
 * gradient gained nothing from F(4x4) (33-41 ms with 32 to 256 tiles per chunk, against
 * 35-36; the forward keeps F(2x2) on every map for its rounding, winograd_internal.h). */
static int tile_for_dw(const bt_conv2d_desc *d, int tile) {
    return (tile == BT_WINO_F2_DX4_DW4 || tile == BT_WINO_F4) && d->H >= 4 && d->W >= 4 ? 4 : 2;
}

int bt_wino_backward_weights(float *dw, const float *dout, const float *in,
                             const bt_conv2d_desc *d) {
    return bt_wino_backward_weights_ws(bt_default_arena(), bt_wino_tile(), dw, dout, in, d);
}

int bt_wino_backward_weights_ws(bt_arena *ws, int tile, float *dw, const float *dout,
                                const float *in, const bt_conv2d_desc *d) {
    int rc = wino_check(d, "wino_backward_weights");
    if (rc) return rc;
    if (!dw || !dout || !in) return bt_fail(BT_EINVAL, "wino_backward_weights: NULL buffer");
    const int N = d->N, C = d->C, K = d->K, H = d->H, W = d->W;
    wino_plan pl = {.N = N, .Ci = C, .Ko = K, .Cp = (int)round8(C), .Kp = (int)round8(K),
                    .H = H, .W = W, .src = in, .wide = bt_isa_current() == BT_ISA_AVX512};
    const int m = tile_for_dw(d, tile);
    pl.m = m, pl.np = (m + 2) * (m + 2), pl.TH = (H + m - 1) / m, pl.TW = (W + m - 1) / m;
    const size_t np = (size_t)pl.np;
    int nt = bt_threads();
    /* Tiles per chunk: as the forward's, but each chunk also adds to the thread's dU (np
     * planes of Kp x Cp: 16 MB at 512 x 512 for F(2x2), read and written once per chunk; 36 MB
     * for F(4x4), whose 4x4 tiles need maps of 8x8 and more), so wide layers
     * take longer chunks to amortise that, within WINO_DW_MAX_BYTES of V + D per thread. */
    const size_t tile_bytes = sizeof(float) * np * ((size_t)pl.Cp + pl.Kp);
    const size_t tmax = chunk_tiles(&pl, (size_t)pl.Cp * pl.Kp / WINO_DW_DIV,
                                    WINO_DW_MAX_BYTES / tile_bytes);
    size_t T;
    int xrows;
    const int nchunks = plan_chunks(&pl, tmax, nt, &T, &xrows);
    const int cmax = pl.Cp > pl.Kp ? pl.Cp : pl.Kp;
    const size_t x_n = plane_stride((size_t)xrows * W * cmax);
    const size_t vp = plane_stride(T * pl.Cp), dp = plane_stride(T * pl.Kp);
    pl.up = plane_stride((size_t)pl.Cp * pl.Kp);
    const size_t per = np * (pl.up + vp + dp) + x_n; /* one thread's buffers */
    if (nt > nchunks) nt = nchunks;
    float *scr = bt_arena_get(ws, sizeof(float) * (plane_stride(cmax) + (size_t)nt * per));
    if (!scr) return BT_ENOMEM;
    float *zero = scr, *bufs = zero + plane_stride(cmax);
    memset(zero, 0, sizeof(float) * cmax);
    pl.zero = zero;
    int parts = nt;
    const chunk_dw_fn chunk = chunk_dw_for_isa();
#pragma omp parallel num_threads(nt)
    {
        const int u = omp_get_thread_num(), team = omp_get_num_threads();
        float *dU = bufs + (size_t)u * per, *V = dU + np * pl.up, *D = V + np * vp;
        float *X = D + np * dp;
        /* Thread u's share: chunks [q0, q1), never empty since nt <= nchunks. */
        const int q0 = (int)((int64_t)nchunks * u / team);
        const int q1 = (int)((int64_t)nchunks * (u + 1) / team);
        for (int q = q0; q < q1; q++) chunk(&pl, dout, q, V, vp, D, dp, X, dU, q == q0);
#pragma omp single
        parts = team;
    }
    (m == 4 ? fold_weight_grad4 : fold_weight_grad)(dw, bufs, pl.up, per, parts, K, C, pl.Cp,
                                                    bt_threads());
    return BT_OK;
}

int bt_wino_forward(float *out, const float *in, const float *w, const float *b,
                    const bt_conv2d_desc *d) {
    return bt_wino_forward_ws(bt_default_arena(), bt_wino_tile(), out, in, w, b, d);
}

int bt_wino_forward_ws(bt_arena *ws, int tile, float *out, const float *in, const float *w,
                       const float *b, const bt_conv2d_desc *d) {
    int rc = wino_check(d, "wino_forward");
    if (rc) return rc;
    if (!out || !in || !w) return bt_fail(BT_EINVAL, "wino_forward: NULL buffer");
    return wino_run(ws, out, in, w, b, d->N, d->C, d->K, d->H, d->W, 0, 0, tile_for(d, tile));
}

int bt_wino_backward_data(float *dinp, const float *dout, const float *w,
                          const bt_conv2d_desc *d) {
    return bt_wino_backward_data_ws(bt_default_arena(), bt_wino_tile(), dinp, dout, w, d, 0);
}

int bt_wino_backward_data_ws(bt_arena *ws, int tile, float *dinp, const float *dout,
                             const float *w, const bt_conv2d_desc *d, int dinp_set) {
    int rc = wino_check(d, "wino_backward_data");
    if (rc) return rc;
    if (!dinp || !dout || !w) return bt_fail(BT_EINVAL, "wino_backward_data: NULL buffer");
    /* Not accumulating, the output transform stores result + 0 (no bias): what += leaves in
     * a zeroed dinp, -0 included. Every pixel of every image is stored, as in the forward. */
    return wino_run(ws, dinp, dout, w, NULL, d->N, d->K, d->C, d->H, d->W, 1, !dinp_set,
                    tile_for_dx(d, tile));
}
