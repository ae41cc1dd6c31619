/* NumPy .npy files (format version 1.0) of float32 matrices, for features handed to Python:
 * numpy.load(path) gives an (rows, cols) float32 array.
 *
 * Layout: the magic "\x93NUMPY", version bytes 1 0, a little-endian u16 header length, then
 * the ASCII header "{'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }" padded
 * with spaces and ended by '\n' so the data starts at a multiple of 64 bytes, then R*C
 * little-endian float32 in C order. */
#ifndef BARLOW_NPY_H
#define BARLOW_NPY_H
#include <stdint.h>

typedef struct bt_npy_writer bt_npy_writer;

/* Starts `path` (written to "<path>.tmp.<pid>" until bt_npy_close renames it). */
int bt_npy_open(bt_npy_writer **w, const char *path, int64_t rows, int64_t cols);
/* Appends nrows rows (nrows, cols); more rows than announced is BT_EINVAL. */
int bt_npy_append(bt_npy_writer *w, const float *x, int64_t nrows);
/* Checks that every announced row was written, flushes, fsyncs and renames into place.
 * Frees w in every case; on error the temporary file is removed. */
int bt_npy_close(bt_npy_writer *w);
/* Abandons the file (removes the temporary) and frees w. */
void bt_npy_abort(bt_npy_writer *w);

/* The whole matrix x (rows, cols) at once. */
int bt_npy_write_f32(const char *path, const float *x, int64_t rows, int64_t cols);

#endif
