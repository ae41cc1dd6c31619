/* Winograd F(2x2, 3x3) convolution (Lavin & Gray 2015) for 3x3 stride-1 pad-1 layers, NCHW.
 *
 * Each 2x2 block of outputs ("tile") is computed from the 4x4 input patch around it:
 *   Y = A^T [ (G g G^T) .* (B^T d B) ] A
 * so a tile costs 16 products per (input, output) channel pair instead of 36. Summed over
 * input channels, the 16 positions xi of the 4x4 transformed tile become 16 independent GEMMs
 *   M[xi] (Ko, T) = U[xi] (Ko, Ci) * V[xi] (Ci, T)
 * with U the transformed weights, V the transformed input tiles and T the number of tiles;
 * the output transform then folds each M tile (4x4) back into 2x2 outputs.
 *
 * The input gradient of a 3x3 pad-1 stride-1 conv is the same kind of conv applied to dout,
 * with the kernel rotated by 180 degrees and the two channel dimensions swapped, so both
 * directions share one driver: "Ci/Ko" below are the channels read and written (C/K forward,
 * K/C backward).
 *
 * Memory: U (16, Ko, Ci) lives for the whole call; V (16, Ci, T) and M (16, Ko, T) cover a
 * chunk of images whose size keeps them under a fixed budget, so the scratch arena stays small
 * whatever the batch. Transforms work on whole rows of tiles, deinterleaved into even and odd
 * columns so every inner loop is unit-stride and vectorises; they are spread over OpenMP
 * threads by (image, channel) plane. The 16 GEMMs run in an OpenMP loop with single-threaded
 * BLAS (see bench_conv for the measurement that chose this over threaded BLAS).
 * Tiles of a map with odd H or W overhang it: the missing inputs read as zero (as padding
 * does) and the outputs that fall outside are not written. */
#include "barlow/error.h"
#include "barlow/scratch.h"
#include "winograd_internal.h"
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Tiles per block along a tile row: bounds the transforms' stack buffers for any width. */
#define WINO_TB 32

/* V + M of one chunk, in bytes: large enough that each GEMM has hundreds of columns, small
 * enough that the arena stays far below the activations (chosen with bench_conv). */
#define WINO_CHUNK_DEFAULT ((size_t)16 << 20)
static size_t wino_chunk_bytes = WINO_CHUNK_DEFAULT;

void bt_wino_set_chunk_bytes(size_t bytes) {
    wino_chunk_bytes = bytes ? bytes : WINO_CHUNK_DEFAULT;
}

static int wino_on = -1; /* -1: not decided yet (read BT_CONV_WINOGRAD on first use) */

int bt_wino_enabled(void) {
    if (wino_on < 0) {
        const char *e = getenv("BT_CONV_WINOGRAD");
        wino_on = !(e && strcmp(e, "0") == 0);
    }
    return wino_on;
}

void bt_wino_set_enabled(int on) { wino_on = on != 0; }

/* Exact shape requirements, separate from the size heuristic. */
static int wino_shape_ok(const bt_conv2d_desc *d) {
    return d->R == 3 && d->S == 3 && d->stride == 1 && d->pad == 1;
}

int bt_wino_applicable(const bt_conv2d_desc *d) {
    /* Below a few channels the GEMMs are too thin for the transforms to pay off (the CIFAR
     * stem, C = 3, stays on im2col). */
    return d && wino_shape_ok(d) && d->C >= 8 && d->K >= 8;
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

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- weight transform: U = G g G^T, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] ------------ */

/* u[16] (row-major 4x4) from one 3x3 kernel g (row-major), rotated by 180 degrees if flip. */
static void weight_tile(float u[16], const float *g, int flip) {
    float k[9], t[4][3];
    for (int i = 0; i < 9; i++) k[i] = g[flip ? 8 - i : i];
    for (int j = 0; j < 3; j++) { /* t = G g, column j */
        float a = k[j], b = k[3 + j], c = k[6 + j];
        t[0][j] = a;
        t[1][j] = 0.5f * (a + b + c);
        t[2][j] = 0.5f * (a - b + c);
        t[3][j] = c;
    }
    for (int i = 0; i < 4; i++) { /* u = t G^T, row i */
        float a = t[i][0], b = t[i][1], c = t[i][2];
        u[4 * i + 0] = a;
        u[4 * i + 1] = 0.5f * (a + b + c);
        u[4 * i + 2] = 0.5f * (a - b + c);
        u[4 * i + 3] = c;
    }
}

/* U (16, Ko, Ci) from w (K, C, 3, 3). Forward (flip 0): Ko = K, Ci = C, kernel (o, i) is
 * w[o][i]. Backward (flip 1): Ko = C, Ci = K, kernel (o, i) is w[i][o] rotated. */
static void weight_transform(float *U, const float *w, int Ko, int Ci, int flip, int nt) {
    const size_t plane = (size_t)Ko * Ci;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int o = 0; o < Ko; o++)
        for (int i = 0; i < Ci; i++) {
            const float *g = w + 9 * (flip ? (size_t)i * Ko + o : (size_t)o * Ci + i);
            float u[16];
            weight_tile(u, g, flip);
            for (int xi = 0; xi < 16; xi++) U[xi * plane + (size_t)o * Ci + i] = u[xi];
        }
}

/* ---- input transform: V = B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] ------- */

/* Columns of the input row seen by tiles j0 .. j0+nj-1 of a tile row, split by parity:
 * e[j] = x(2(j0+j) - 1), o[j] = x(2(j0+j)), j = 0 .. nj (tile j spans e[j] o[j] e[j+1]
 * o[j+1]); x(col) is row[col] inside [0, W) and 0 outside; row NULL is a padding row. */
static void load_row(float *e, float *o, const float *row, int W, int j0, int nj) {
    if (!row) {
        memset(e, 0, sizeof(float) * (nj + 1));
        memset(o, 0, sizeof(float) * (nj + 1));
        return;
    }
    /* Interior [lo, hi): both columns inside the map, no tests in the loop. */
    int lo = j0 == 0 ? 1 : 0, hi = (W - 1) / 2 - j0 + 1;
    if (hi > nj + 1) hi = nj + 1;
    if (hi < lo) hi = lo;
    for (int j = 0; j < lo; j++) {
        int x = 2 * (j0 + j) - 1;
        e[j] = x >= 0 && x < W ? row[x] : 0.0f;
        o[j] = x + 1 < W ? row[x + 1] : 0.0f;
    }
    const float *p = row + 2 * (j0 + lo) - 1;
    for (int j = lo; j < hi; j++) {
        e[j] = p[2 * (j - lo)];
        o[j] = p[2 * (j - lo) + 1];
    }
    for (int j = hi; j <= nj; j++) {
        int x = 2 * (j0 + j) - 1;
        e[j] = x >= 0 && x < W ? row[x] : 0.0f;
        o[j] = x + 1 < W ? row[x + 1] : 0.0f;
    }
}

/* V (16, Ci, T) columns [i*TP, (i+1)*TP) for each image i of a chunk of nb images,
 * src (nb, Ci, H, W); TP = TH*TW tiles per image, tile (th, tw) at column th*TW + tw. */
static void input_transform(float *V, const float *src, int nb, int Ci, int H, int W, size_t T,
                            int par, int nt) {
    const int TH = (H + 1) / 2, TW = (W + 1) / 2;
    const size_t TP = (size_t)TH * TW, vplane = (size_t)Ci * T; /* one xi of V */
#pragma omp parallel for if (par) num_threads(nt) schedule(static)
    for (int p = 0; p < nb * Ci; p++) {
        const int img = p / Ci, c = p % Ci;
        const float *plane = src + (size_t)p * H * W;
        float *v0 = V + (size_t)c * T + img * TP;
        float e[4][WINO_TB + 1], o[4][WINO_TB + 1];
        for (int th = 0; th < TH; th++)
            for (int j0 = 0; j0 < TW; j0 += WINO_TB) {
                const int nj = TW - j0 < WINO_TB ? TW - j0 : WINO_TB;
                for (int r = 0; r < 4; r++) {
                    int y = 2 * th - 1 + r;
                    load_row(e[r], o[r], y >= 0 && y < H ? plane + (size_t)y * W : NULL, W, j0,
                             nj);
                }
                /* B^T along the tile's rows, in place. */
                for (int j = 0; j <= nj; j++) {
                    float a0 = e[0][j], a1 = e[1][j], a2 = e[2][j], a3 = e[3][j];
                    e[0][j] = a0 - a2, e[1][j] = a1 + a2, e[2][j] = a2 - a1, e[3][j] = a1 - a3;
                    float b0 = o[0][j], b1 = o[1][j], b2 = o[2][j], b3 = o[3][j];
                    o[0][j] = b0 - b2, o[1][j] = b1 + b2, o[2][j] = b2 - b1, o[3][j] = b1 - b3;
                }
                /* B along its columns: tile columns are e[j], o[j], e[j+1], o[j+1]. */
                float *vt = v0 + (size_t)th * TW + j0;
                for (int i = 0; i < 4; i++) {
                    const float *ei = e[i], *oi = o[i];
                    float *q0 = vt + (4 * i + 0) * vplane, *q1 = vt + (4 * i + 1) * vplane;
                    float *q2 = vt + (4 * i + 2) * vplane, *q3 = vt + (4 * i + 3) * vplane;
                    for (int j = 0; j < nj; j++) {
                        q0[j] = ei[j] - ei[j + 1];
                        q1[j] = oi[j] + ei[j + 1];
                        q2[j] = ei[j + 1] - oi[j];
                        q3[j] = oi[j] - oi[j + 1];
                    }
                }
            }
    }
}

/* ---- output transform: Y = A^T m A, A^T = [1 1 1 0; 0 1 -1 -1] --------------------------- */

/* dst[0 .. ncols) of an output row from the tiles' left (a) and right (b) columns:
 * dst[2j] = a[j], dst[2j+1] = b[j]; overwritten with bias added, or accumulated. */
static void store_row(float *dst, const float *a, const float *b, int ncols, float bias,
                      int acc) {
    const int np = ncols / 2;
    if (acc) {
        for (int j = 0; j < np; j++) {
            dst[2 * j] += a[j];
            dst[2 * j + 1] += b[j];
        }
        if (ncols & 1) dst[2 * np] += a[np];
    } else {
        for (int j = 0; j < np; j++) {
            dst[2 * j] = a[j] + bias;
            dst[2 * j + 1] = b[j] + bias;
        }
        if (ncols & 1) dst[2 * np] = a[np] + bias;
    }
}

/* dst (nb, Ko, H, W) from M (16, Ko, T) laid out as V is; bias (Ko) or NULL; acc: += instead
 * of = (then bias is ignored). */
static void output_transform(float *dst, const float *M, const float *bias, int nb, int Ko,
                             int H, int W, size_t T, int acc, int par, int nt) {
    const int TH = (H + 1) / 2, TW = (W + 1) / 2;
    const size_t TP = (size_t)TH * TW, mplane = (size_t)Ko * T;
#pragma omp parallel for if (par) num_threads(nt) schedule(static)
    for (int p = 0; p < nb * Ko; p++) {
        const int img = p / Ko, k = p % Ko;
        float *plane = dst + (size_t)p * H * W;
        const float *m0 = M + (size_t)k * T + img * TP;
        const float bk = bias && !acc ? bias[k] : 0.0f;
        float y00[WINO_TB], y01[WINO_TB], y10[WINO_TB], y11[WINO_TB];
        for (int th = 0; th < TH; th++)
            for (int j0 = 0; j0 < TW; j0 += WINO_TB) {
                const int nj = TW - j0 < WINO_TB ? TW - j0 : WINO_TB;
                const float *mt = m0 + (size_t)th * TW + j0;
                const float *m[16];
                for (int xi = 0; xi < 16; xi++) m[xi] = mt + xi * mplane;
                for (int j = 0; j < nj; j++) {
                    /* A^T down each column (s: top output row, d: bottom), then A across. */
                    float s0 = m[0][j] + m[4][j] + m[8][j], d0 = m[4][j] - m[8][j] - m[12][j];
                    float s1 = m[1][j] + m[5][j] + m[9][j], d1 = m[5][j] - m[9][j] - m[13][j];
                    float s2 = m[2][j] + m[6][j] + m[10][j], d2 = m[6][j] - m[10][j] - m[14][j];
                    float s3 = m[3][j] + m[7][j] + m[11][j], d3 = m[7][j] - m[11][j] - m[15][j];
                    y00[j] = s0 + s1 + s2, y01[j] = s1 - s2 - s3;
                    y10[j] = d0 + d1 + d2, y11[j] = d1 - d2 - d3;
                }
                const int x0 = 2 * j0, ncols = W - x0 < 2 * nj ? W - x0 : 2 * nj;
                float *row = plane + (size_t)(2 * th) * W + x0;
                store_row(row, y00, y01, ncols, bk, acc);
                if (2 * th + 1 < H) store_row(row + W, y10, y11, ncols, bk, acc);
            }
    }
}

/* ---- driver ---------------------------------------------------------------------------- */

/* dst (N, Ko, H, W) (+)= Winograd conv of src (N, Ci, H, W) with U (16, Ko, Ci). */
static int wino_run(float *dst, const float *src, const float *w, const float *bias, int N,
                    int Ci, int Ko, int H, int W, int flip, int acc) {
    int nt = bt_threads();
    const size_t TP = (size_t)((H + 1) / 2) * ((W + 1) / 2);
    const size_t per_img = sizeof(float) * 16 * ((size_t)Ci + Ko) * TP;
    size_t nb = wino_chunk_bytes / per_img;
    if (nb < 1) nb = 1;
    if (nb > (size_t)N) nb = N;
    const size_t u_n = round16((size_t)16 * Ko * Ci), v_n = round16((size_t)16 * Ci * nb * TP);
    const size_t m_n = round16((size_t)16 * Ko * nb * TP);
    float *U = bt_scratch(sizeof(float) * (u_n + v_n + m_n));
    if (!U) return BT_ENOMEM;
    float *V = U + u_n, *M = V + v_n; /* (16, Ci, T), (16, Ko, T) */
    weight_transform(U, w, Ko, Ci, flip, nt);
    const size_t in_img = (size_t)Ci * H * W, out_img = (size_t)Ko * H * W;
    for (int n0 = 0; n0 < N; n0 += (int)nb) {
        const int g = N - n0 < (int)nb ? N - n0 : (int)nb;
        const int T = g * (int)TP;
        input_transform(V, src + n0 * in_img, g, Ci, H, W, T, 1, nt);
        /* Each thread owns whole GEMMs; OpenBLAS runs serially inside the parallel region. */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int xi = 0; xi < 16; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Ko, T, Ci, 1.0f,
                        U + (size_t)xi * Ko * Ci, Ci, V + (size_t)xi * Ci * T, T, 0.0f,
                        M + (size_t)xi * Ko * T, T);
        output_transform(dst + n0 * out_img, M, bias, g, Ko, H, W, T, acc, 1, nt);
    }
    return BT_OK;
}

int bt_wino_forward(float *out, const float *in, const float *w, const float *b,
                    const bt_conv2d_desc *d) {
    int rc = wino_check(d, "wino_forward");
    if (rc) return rc;
    if (!out || !in || !w) return bt_fail(BT_EINVAL, "wino_forward: NULL buffer");
    return wino_run(out, in, w, b, d->N, d->C, d->K, d->H, d->W, 0, 0);
}

int bt_wino_backward_data(float *dinp, const float *dout, const float *w,
                          const bt_conv2d_desc *d) {
    int rc = wino_check(d, "wino_backward_data");
    if (rc) return rc;
    if (!dinp || !dout || !w) return bt_fail(BT_EINVAL, "wino_backward_data: NULL buffer");
    return wino_run(dinp, dout, w, NULL, d->N, d->K, d->C, d->H, d->W, 1, 1);
}
