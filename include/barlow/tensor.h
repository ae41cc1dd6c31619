/* A table of named tensors laid out in one contiguous float buffer (llm.c style): parameters,
 * their gradients and LARS momentum share one layout, so zeroing, optimizer steps,
 * checkpoints and all-reduces are single loops over `total` floats. */
#ifndef BARLOW_TENSOR_H
#define BARLOW_TENSOR_H
#include <stddef.h>
#include <stdint.h>

#define BT_NAME_MAX 96
#define BT_MAX_DIMS 4

typedef struct {
    char name[BT_NAME_MAX]; /* torchvision state_dict name, e.g. "layer1.0.bn1.weight" */
    int ndim;
    int64_t shape[BT_MAX_DIMS];
    size_t offset;          /* in floats, into the owning buffer; multiple of 16 */
    size_t numel;
} bt_tensor_info;

typedef struct {
    bt_tensor_info *t;
    int n, cap;
    size_t total;           /* floats needed for the buffer, padding included */
} bt_tensor_table;

/* Appends a tensor; returns its index (>= 0) or a negative error (duplicate name, bad shape). */
int bt_table_add(bt_tensor_table *tab, const char *name, int ndim, const int64_t *shape);
/* Index of `name`, or -1. */
int bt_table_find(const bt_tensor_table *tab, const char *name);
void bt_table_free(bt_tensor_table *tab);

#endif
