/* Internals shared by the dataset kinds, the decoder and the loader: the per-kind vtable
 * (a new kind is one more ops table and one more branch in bt_dataset_open), and the
 * per-thread decoder whose buffers only grow, so a worker stops allocating once warm. */
#ifndef BARLOW_DATA_INTERNAL_H
#define BARLOW_DATA_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/dataset.h"

/* Grow-only per-thread buffers for reading and decoding one image at a time. */
typedef struct bt_decoder bt_decoder;
struct bt_decoder {
    void *tj;          /* TurboJPEG handle, made on first JPEG */
    uint8_t *file;     /* (filecap) encoded bytes */
    size_t filecap;
    uint8_t *tmp;      /* (tmpcap) CMYK or 16-bit rows before conversion */
    size_t tmpcap;
    size_t imcap;      /* bytes owned by the image being decoded into */
    /* Decode-time scaling: when scale_cb is set, a JPEG's full size is passed to it once the
     * header is read, and it returns the denominator (1, 2, 4, 8) to decode at. */
    int (*scale_cb)(void *ctx, int w, int h);
    void *scale_ctx;
    int full_w, full_h; /* the last decoded image's size before scaling */
};

void bt_decoder_init(bt_decoder *dc);
void bt_decoder_free(bt_decoder *dc);
/* Makes dc->file hold at least n bytes. */
int bt_decoder_file(bt_decoder *dc, size_t n);
/* Makes im a w x h image, reusing its buffer (of dc->imcap bytes) when large enough. */
int bt_decoder_image(bt_decoder *dc, bt_image *im, int w, int h);
int bt_decoder_decode(bt_decoder *dc, bt_image *im, const uint8_t *buf, size_t len,
                      const char *name);

typedef struct {
    const char *kind;
    int (*load)(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc);
    void (*close)(bt_dataset *ds);
} bt_dataset_ops;

struct bt_dataset {
    const bt_dataset_ops *ops;
    size_t n;            /* items visible (after bt_dataset_limit) */
    size_t n_all;        /* items indexed */
    int nclass;
    char **class_names;  /* (nclass) */
    int32_t *labels;     /* (n_all) */
    char **names;        /* (n_all) item names */
    void *impl;          /* the kind's own state */
};

/* Common helpers (dataset.c). */
bt_dataset *bt_dataset_new_(const bt_dataset_ops *ops);
int bt_dataset_push_(bt_dataset *ds, char *name, int32_t label); /* takes name */
int bt_dataset_set_classes_(bt_dataset *ds, char **names, int n); /* copies */
char *bt_strdup_(const char *s);
char *bt_strfmt_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads the whole file into dc->file; *len gets its size. */
int bt_read_file_(bt_decoder *dc, const char *path, size_t *len);
int bt_dataset_load_with(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc);

/* Per-kind openers: split is the canonical name asked for ("train", "test" or "val"). */
int bt_folder_open_(bt_dataset **ds, const char *root, const char *split);
int bt_cifar_open_(bt_dataset **ds, const char *dir, const char *split);
int bt_tar_open_(bt_dataset **ds, const char *spec, const char *split);
/* Expands a shard spec (comma list, brace ranges/alternatives) into paths. */
int bt_tar_expand_(const char *spec, char ***paths, int *n);

#endif
