/* Fuzz target: the safetensors reader (bt_st_open and every accessor on a file it accepted)
 * and the checkpoint validator on top of it (bt_ckpt_open). The input is the whole file. */
#include "fuzz_util.h"
#include "barlow/checkpoint.h"
#include "barlow/error.h"
#include "barlow/safetensors.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.safetensors", data, size);
    bt_st_file *f = NULL;
    if (bt_st_open(&f, path) == BT_OK) {
        /* Accepted: every accessor must stay inside the buffers it validated. */
        float buf[4096];
        uint8_t raw[4096 * 8];
        for (int i = 0; i < bt_st_count(f); i++) {
            const bt_st_tensor *t = bt_st_at(f, i);
            if (bt_st_find(f, t->name) == NULL) abort(); /* names are unique: must be found */
            if (t->numel <= 4096) {
                bt_st_read_f32(f, t->name, buf, t->ndim, t->shape);
                bt_st_read_raw(f, t->name, t->dtype, raw, t->ndim, t->shape);
            }
            int64_t other[BT_ST_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1};
            bt_st_read_f32(f, t->name, buf, 1, other); /* usually a shape mismatch */
        }
        bt_st_read_f32(f, "missing", buf, 0, NULL);
        for (int i = 0; i < bt_st_meta_count(f); i++) {
            const char *v = NULL, *k = bt_st_meta_at(f, i, &v);
            if (!k || !v || bt_st_meta(f, k) == NULL) abort();
        }
        bt_st_close(f);
    }
    bt_ckpt_state st;
    if (bt_ckpt_open(&f, &st, path) == BT_OK) bt_st_close(f);
    return 0;
}
