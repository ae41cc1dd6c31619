/* The model's tensors to and from safetensors, under torchvision / reference names, through
 * the model's host image (bt_model_to_host before a write, bt_model_to_device after a read). */
#include "barlow/error.h"
#include "barlow/train.h"
#include <stdio.h>
#include <string.h>

static int in_backbone(const char *name) {
    return strncmp(name, "projector.", 10) != 0 && strncmp(name, "bn.", 3) != 0;
}

static int write_table(const bt_tensor_table *t, const float *buf, bt_st_writer *w,
                       const char *prefix, int backbone) {
    for (int i = 0; i < t->n; i++) {
        const bt_tensor_info *e = &t->t[i];
        if (backbone && !in_backbone(e->name)) continue;
        char name[BT_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        int rc = bt_st_writer_add(w, name, BT_ST_F32, e->ndim, e->shape, buf + e->offset);
        if (rc != BT_OK) return rc;
    }
    return BT_OK;
}

int bt_model_write(const bt_model *m, bt_st_writer *w, int what) {
    int bb = (what & BT_IO_BACKBONE) != 0, rc = bt_model_to_host(m, what);
    if (rc == BT_OK && (what & BT_IO_PARAMS)) rc = write_table(&m->params, m->host.p, w, "", bb);
    if (rc == BT_OK && (what & BT_IO_BUFS)) rc = write_table(&m->bufs, m->host.b, w, "", bb);
    if (rc == BT_OK && (what & BT_IO_GRADS)) rc = write_table(&m->params, m->host.g, w, "grad.", bb);
    if (rc == BT_OK && (what & BT_IO_MOMENTUM))
        rc = write_table(&m->params, m->host.mom, w, "momentum.", bb);
    return rc;
}

static int read_table(const bt_tensor_table *t, float *buf, const bt_st_file *f, const char *prefix,
                      int backbone) {
    for (int i = 0; i < t->n; i++) {
        const bt_tensor_info *e = &t->t[i];
        if (backbone && !in_backbone(e->name)) continue;
        char name[BT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        if (!bt_st_find(f, name) && !*prefix) snprintf(name, sizeof name, "backbone.%s", e->name);
        if (!bt_st_find(f, name))
            return bt_fail(BT_EFORMAT, "%s: missing tensor '%s%s'", bt_st_path(f), prefix, e->name);
        int rc = bt_st_read_f32(f, name, buf + e->offset, e->ndim, e->shape);
        if (rc != BT_OK) return rc;
    }
    return BT_OK;
}

/* Is file tensor `name` (ours, with the reference's "backbone." prefix, or a "grad."/"momentum."
 * companion) one of the model's tensors? */
static int known(const bt_model *m, const char *name) {
    static const char *const pre[] = {"", "grad.", "momentum."};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(pre[k]);
        if (strncmp(name, pre[k], l)) continue;
        const char *rest = name + l;
        if (!strncmp(rest, "backbone.", 9)) rest += 9;
        if (bt_table_find(&m->params, rest) >= 0 || bt_table_find(&m->bufs, rest) >= 0) return 1;
    }
    return 0;
}

int bt_model_read(bt_model *m, const bt_st_file *f, int what, int strict) {
    /* the image first holds what the backend has, so a partial read (the backbone) keeps the
     * rest when the groups go back */
    int bb = (what & BT_IO_BACKBONE) != 0, rc = bt_model_to_host(m, what);
    if (rc == BT_OK && (what & BT_IO_PARAMS)) rc = read_table(&m->params, m->host.p, f, "", bb);
    if (rc == BT_OK && (what & BT_IO_BUFS)) rc = read_table(&m->bufs, m->host.b, f, "", bb);
    if (rc == BT_OK && (what & BT_IO_GRADS)) rc = read_table(&m->params, m->host.g, f, "grad.", bb);
    if (rc == BT_OK && (what & BT_IO_MOMENTUM))
        rc = read_table(&m->params, m->host.mom, f, "momentum.", bb);
    if (rc == BT_OK) rc = bt_model_to_device(m, what);
    if (rc != BT_OK || !strict) return rc;
    for (int i = 0; i < bt_st_count(f); i++) {
        const char *name = bt_st_at(f, i)->name;
        size_t n = strlen(name);
        if (n >= 19 && !strcmp(name + n - 19, "num_batches_tracked")) continue;
        if (!strncmp(name, "fc.", 3) || !strncmp(name, "backbone.fc.", 12)) continue;
        if (bb) { /* the projector, the loss BN and their companions are not asked for */
            const char *rest = name;
            if (!strncmp(rest, "grad.", 5)) rest += 5;
            else if (!strncmp(rest, "momentum.", 9)) rest += 9;
            if (!strncmp(rest, "projector.", 10) || !strncmp(rest, "bn.", 3)) continue;
        }
        if (!known(m, name))
            return bt_fail(BT_EFORMAT, "%s: unexpected tensor '%s' (not part of %s)", bt_st_path(f),
                           name, m->cfg.arch);
    }
    return BT_OK;
}
