/* Fuzz target: the CIFAR-10 binary batch reader, through bt_dataset_open on a directory and
 * bt_dataset_load of a few records.
 * Input layout: byte 0 flags; if flags & 1, bytes 1-2 are a little-endian length L and the
 * next L bytes become batches.meta.txt (the class names); the rest is test_batch.bin. */
#include "fuzz_util.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/image.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    data++, size--;
    if (flags & 1) {
        if (size < 2) return 0;
        size_t l = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (l > size) l = size;
        fuzz_write("batches.meta.txt", data, l);
        data += l, size -= l;
    } else {
        fuzz_remove("batches.meta.txt");
    }
    fuzz_write("test_batch.bin", data, size);
    bt_dataset *ds = NULL;
    if (bt_dataset_open(&ds, fuzz_dir(), (flags & 2) ? "val" : "test") == BT_OK) {
        size_t n = bt_dataset_size(ds);
        bt_image im = {0};
        size_t pick[3] = {0, n / 2, n - 1};
        for (int k = 0; k < 3; k++) {
            if (bt_dataset_load(ds, pick[k], &im) == BT_OK && (im.w != 32 || im.h != 32)) abort();
            int lab = bt_dataset_label(ds, pick[k]);
            if (lab < 0 || lab >= bt_dataset_num_classes(ds)) abort();
            if (!bt_dataset_class_name(ds, lab) || !bt_dataset_item_name(ds, pick[k])) abort();
        }
        bt_dataset_load(ds, n, &im); /* out of range: an error, not a read */
        if (n > 1) bt_dataset_limit(ds, n - 1);
        bt_image_free(&im);
        bt_dataset_close(ds);
    }
    return 0;
}
