/* Winograd F(2x2, 3x3) convolution for 3x3 stride-1 pad-1 layers (conv_winograd.c), used by
 * conv2d.c in place of im2col + GEMM for the forward and the input gradient. Internal to the
 * library; tests and benchmarks include it to call the two paths side by side. */
#ifndef BARLOW_OPS_WINOGRAD_INTERNAL_H
#define BARLOW_OPS_WINOGRAD_INTERNAL_H
#include "barlow/ops.h"

/* 1 if d is a shape Winograd handles (3x3, stride 1, pad 1) and is big enough to gain from it
 * (at least 16 channels in and out, 128 output pixels over the batch); 0 otherwise (also for
 * d NULL). Looks only at the sizes; the conv functions validate d. */
int bt_wino_applicable(const bt_conv2d_desc *d);

/* Whether the plain conv functions of conv2d.c take the Winograd path for applicable shapes:
 * on by default; set by bt_wino_set_enabled or bt_backend_cpu_settings (the program takes it
 * from BT_CONV_WINOGRAD; benchmarks and tests compare both paths in one process). A CPU
 * backend keeps its own choice, taken from its configuration when it is made (the process
 * setting at that moment for winograd -1), and passes it to the workspace forms. The library
 * reads no environment variable. */
int bt_wino_enabled(void);
void bt_wino_set_enabled(int on);

/* The output tiles of the three passes (forward, input gradient, weight gradient), on maps
 * of 8x8 and more (the weight gradient: 4x4 and more; F(2x2) below), set by bt_wino_set_tile:
 *   BT_WINO_F2_DX4_DW4 (the default): F(2x2, 3x3) forward, F(4x4, 3x3) input and weight
 *     gradients;
 *   BT_WINO_F2_DX4: F(2x2, 3x3) forward and weight gradient, F(4x4, 3x3) input gradient
 *     (the default of 2026-12-07's first commits);
 *   BT_WINO_F2: F(2x2, 3x3) for all three (barlow's default before 2026-12-07);
 *   BT_WINO_F4: F(4x4, 3x3) for all three (opt-in, BT_CONV_WINOGRAD=4 in the program).
 * F(4x4) has fewer products but about 3 times F(2x2)'s rounding error. In the two gradients
 * that stays within the PyTorch parity tolerances of test_parity_model (worst gradient 3.0 to
 * 4.4 units of PyTorch's float32 error, against 8 allowed, as with F(2x2)): an error there
 * reaches only the weight gradients. In the forward, whose errors every later layer and the
 * loss see, it does not (up to 8.9 units with the forward alone, 9.3 with all three). */
#define BT_WINO_F2 2
#define BT_WINO_F4 4
#define BT_WINO_F2_DX4 24
#define BT_WINO_F2_DX4_DW4 244
int bt_wino_tile(void);
void bt_wino_set_tile(int m);

/* Tiles per chunk of work (a chunk's transformed input and GEMM output take
 * 64 * (C + K) bytes per tile, channels rounded up to 8); 0 restores the default rule
 * (conv_winograd.c). Chunks are whole images, or bands of tile rows of one image when an image
 * has more tiles. Tests use it to exercise both. */
void bt_wino_set_chunk_tiles(size_t tiles);

/* Same contract as bt_conv2d_forward: out (N,K,H,W) = conv(in (N,C,H,W), w (K,C,3,3)) + b (K),
 * b may be NULL; out is overwritten. Fails with BT_EINVAL when d is not applicable in shape
 * (3x3, stride 1, pad 1; the size threshold of bt_wino_applicable is not enforced). */
int bt_wino_forward(float *out, const float *in, const float *w, const float *b,
                    const bt_conv2d_desc *d);
/* The input-gradient part of bt_conv2d_backward: dinp (N,C,H,W) += the gradient through the
 * conv of dout (N,K,H,W) with w (K,C,3,3). Accumulates, as bt_conv2d_backward does. */
int bt_wino_backward_data(float *dinp, const float *dout, const float *w,
                          const bt_conv2d_desc *d);
/* The weight-gradient part of bt_conv2d_backward: dw (K,C,3,3) += the gradient of the conv of
 * in (N,C,H,W) given dout (N,K,H,W). Accumulates. Reproducible for a given thread count. */
int bt_wino_backward_weights(float *dw, const float *dout, const float *in,
                             const bt_conv2d_desc *d);
/* The three above with an explicit workspace and tile (a setting of bt_wino_set_tile, each
 * pass taking its own tile from it; the plain forms use bt_default_arena() and
 * bt_wino_tile()).
 * The input gradient's dinp_set: 0 dinp += (as bt_wino_backward_data); 1 dinp = the gradient,
 * its previous contents ignored (stored as result + 0, the bits of += on a zeroed dinp). */
int bt_wino_forward_ws(bt_arena *ws, int tile, float *out, const float *in, const float *w,
                       const float *b, const bt_conv2d_desc *d);
int bt_wino_backward_data_ws(bt_arena *ws, int tile, float *dinp, const float *dout,
                             const float *w, const bt_conv2d_desc *d, int dinp_set);
int bt_wino_backward_weights_ws(bt_arena *ws, int tile, float *dw, const float *dout,
                                const float *in, const bt_conv2d_desc *d);

#endif
