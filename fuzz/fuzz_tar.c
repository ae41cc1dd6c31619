/* Fuzz target: the WebDataset tar shard indexer (ustar, GNU long names, pax records, .cls
 * parsing) through bt_dataset_open on a .tar path, then bt_dataset_load of a few samples
 * (which also runs the image decoders on whatever the members hold). The input is the shard. */
#include "fuzz_util.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/image.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("shard-000.tar", data, size);
    bt_dataset *ds = NULL;
    if (bt_dataset_open(&ds, path, "train") == BT_OK) {
        size_t n = bt_dataset_size(ds);
        bt_image im = {0};
        size_t pick[3] = {0, n / 2, n - 1};
        for (int k = 0; k < 3; k++) {
            if (bt_dataset_load(ds, pick[k], &im) == BT_OK && (im.w <= 0 || im.h <= 0 || !im.px))
                abort();
            int lab = bt_dataset_label(ds, pick[k]);
            if (lab < 0 || lab >= bt_dataset_num_classes(ds)) abort();
            if (!bt_dataset_class_name(ds, lab) || !bt_dataset_item_name(ds, pick[k])) abort();
        }
        bt_image_free(&im);
        bt_dataset_close(ds);
    }
    return 0;
}
