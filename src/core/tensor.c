/* Named-tensor table: offsets into one buffer, 64-byte aligned per tensor. */
#include "barlow/tensor.h"
#include "barlow/error.h"
#include <stdlib.h>
#include <string.h>

int bt_table_add(bt_tensor_table *tab, const char *name, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > BT_MAX_DIMS) return bt_fail(BT_EINVAL, "tensor '%s': %d dims", name, ndim);
    if (strlen(name) >= BT_NAME_MAX) return bt_fail(BT_EINVAL, "tensor name too long: '%s'", name);
    if (bt_table_find(tab, name) >= 0) return bt_fail(BT_EINVAL, "duplicate tensor '%s'", name);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return bt_fail(BT_EINVAL, "tensor '%s': dim %d is %lld", name, i, (long long)shape[i]);
        numel *= (size_t)shape[i];
    }
    if (tab->n == tab->cap) {
        int cap = tab->cap ? 2 * tab->cap : 64;
        bt_tensor_info *t = realloc(tab->t, (size_t)cap * sizeof *t);
        if (!t) return bt_fail(BT_ENOMEM, "out of memory growing tensor table");
        tab->t = t;
        tab->cap = cap;
    }
    bt_tensor_info *e = &tab->t[tab->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->numel = numel;
    e->offset = tab->total;
    tab->total += (numel + 15) & ~(size_t)15;
    return tab->n++;
}

int bt_table_find(const bt_tensor_table *tab, const char *name) {
    for (int i = 0; i < tab->n; i++)
        if (!strcmp(tab->t[i].name, name)) return i;
    return -1;
}

void bt_table_free(bt_tensor_table *tab) {
    free(tab->t);
    memset(tab, 0, sizeof *tab);
}
