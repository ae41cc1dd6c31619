/* TensorBoard event files: scalars and images that `tensorboard --logdir` (or any reader of
 * TensorFlow's event format) shows live while barlow trains.
 *
 * A file is a sequence of TFRecords, each holding one serialized tensorflow.Event
 * (proto/tensorboard.proto, the field numbers of TensorFlow's event.proto/summary.proto):
 *   uint64 LE length | uint32 LE masked_crc32c(length bytes) | data | uint32 LE masked_crc32c(data)
 * where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 over CRC-32C (Castagnoli).
 * The first record is the file_version "brain.Event:2" event. */
#ifndef BARLOW_TB_H
#define BARLOW_TB_H
#include <stddef.h>
#include <stdint.h>

typedef struct bt_tb bt_tb;

/* Creates DIR (and its parents) and the file DIR/events.out.tfevents.<unix time>.<hostname>.<pid>
 * (".N" appended if that name is taken), and writes the file_version event. On failure *tb is
 * NULL and the error names the path. */
int bt_tb_open(bt_tb **tb, const char *dir);
/* The event file's path (owned by tb). */
const char *bt_tb_path(const bt_tb *tb);
/* A scalar summary; TensorBoard stores values as float32. */
int bt_tb_scalar(bt_tb *tb, const char *tag, long step, double value);
/* An image summary from 8-bit RGB pixels rgb (h, w, 3), PNG-encoded in memory. */
int bt_tb_image_rgb(bt_tb *tb, const char *tag, long step, const uint8_t *rgb, int w, int h);
/* A heatmap of m (rows, cols), row-major, mapped from [lo, hi] (lo < hi; values outside are
 * clamped) through blue (lo) - white (midpoint) - red (hi), matplotlib's "bwr"; non-finite
 * cells are black. Each cell becomes cell x cell pixels, so the image is (rows*cell, cols*cell). */
int bt_tb_heatmap(bt_tb *tb, const char *tag, long step, const float *m, int rows, int cols,
                  float lo, float hi, int cell);
/* Pushes buffered records to the file (readers see them after this). */
int bt_tb_flush(bt_tb *tb);
/* Flushes and closes; NULL is a no-op. Errors at this point are only reported by bt_tb_flush. */
void bt_tb_close(bt_tb *tb);

/* The colour bt_tb_heatmap gives v (3 bytes, RGB). */
void bt_tb_bwr(float v, float lo, float hi, uint8_t rgb[3]);

/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) of n bytes; crc32c("123456789") is
 * 0xe3069283. */
uint32_t bt_crc32c(const void *p, size_t n);
/* The TFRecord form of the CRC, which resists CRCs of data that embeds CRCs. */
uint32_t bt_crc32c_masked(const void *p, size_t n);

#endif
