/* Test and benchmark hooks of the im2col convolution (conv2d.c). Internal to the library. */
#ifndef BARLOW_OPS_CONV_INTERNAL_H
#define BARLOW_OPS_CONV_INTERNAL_H

/* Stride-2 layers with kernels larger than 1x1 build their columns through phase planes (see
 * conv2d.c), on by default; 0 selects the direct strided loops, which give the same bits. Not
 * thread-safe: set it before any conv runs. */
void bt_conv_set_phase_planes(int on);

#endif
