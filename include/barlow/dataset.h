/* Image datasets for training and evaluation: an ImageFolder tree, a CIFAR-10 binary batch
 * directory, or WebDataset tar shards, behind one interface that lists items (name, label)
 * and decodes item i to 8-bit RGB exactly as PIL's Image.open(f).convert('RGB') would. */
#ifndef BARLOW_DATASET_H
#define BARLOW_DATASET_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/image.h"

typedef struct bt_dataset bt_dataset;

/* Opens one split ("train", or "test"/"val": either name finds whichever exists) of DATA,
 * detecting its kind:
 *  - an ImageFolder root: DATA/<split>/<class>/.../<image>, classes sorted by name (byte
 *    order), images in torchvision's order (sorted(os.walk(class_dir)), files sorted);
 *    extensions .jpg .jpeg .png (case-insensitive), other files ignored;
 *  - a CIFAR-10 binary directory (DATA or DATA/cifar-10-batches-bin): data_batch_1..5.bin
 *    (train), test_batch.bin (test/val), records of 1 label byte + R, G, B planes (32x32);
 *    class names from batches.meta.txt if present, else the CIFAR-10 names;
 *  - WebDataset tar shards: a .tar path, a comma-separated list, or a brace pattern
 *    "train-{000..099}.tar"; the text "{split}" in it is replaced by the split name, else
 *    the same shards serve every split. DATA may also be a directory holding <split>-*.tar
 *    (for test/val: test-*.tar or val-*.tar). Members KEY.jpg/.jpeg/.png with KEY.cls (ASCII
 *    class index); class names are the indices ("0", "1", ...), classes = max index + 1.
 * Errors name the path: BT_EINVAL for a missing path, missing split, empty class folder or
 * empty dataset; BT_EFORMAT with file and byte offset for a truncated CIFAR batch or tar
 * shard or a bad tar header checksum. */
int bt_dataset_open(bt_dataset **ds, const char *data, const char *split);
void bt_dataset_close(bt_dataset *ds);
size_t bt_dataset_size(const bt_dataset *ds);
int bt_dataset_num_classes(const bt_dataset *ds);
const char *bt_dataset_class_name(const bt_dataset *ds, int c);
int bt_dataset_label(const bt_dataset *ds, size_t i);
/* File path, "shard.tar:member" or "data_batch_1.bin:#record". */
const char *bt_dataset_item_name(const bt_dataset *ds, size_t i);
/* "folder", "cifar-bin" or "tar". */
const char *bt_dataset_kind(const bt_dataset *ds);
/* Decodes item i into im; im must be zeroed or hold an image from an earlier call or
 * bt_image_alloc (its buffer is reused when large enough, else reallocated). Thread-safe.
 * A read or decode failure returns BT_EIO/BT_EFORMAT with a message naming the item. */
int bt_dataset_load(const bt_dataset *ds, size_t i, bt_image *im);
/* Keeps only the first n items (n <= size), as --train-limit does. */
int bt_dataset_limit(bt_dataset *ds, size_t n);

/* Decodes a JPEG or PNG held in memory (format from the magic bytes) to RGB as PIL's
 * .convert('RGB') does: gray replicated, alpha dropped, palettes expanded, 16-bit samples
 * cut to their high byte (16-bit grayscale: clipped to 255, as PIL's I -> RGB does), Adobe
 * CMYK inverted and converted with PIL's formula. `name` is used in error messages.
 * im follows bt_dataset_load's rule. */
int bt_decode_image(bt_image *im, const uint8_t *buf, size_t len, const char *name);

#endif
