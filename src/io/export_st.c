/* Export of a model's weights as a PyTorch state_dict in safetensors form: torchvision's
 * ResNet (fc = Identity) or the reference main.py's whole BarlowTwins module. */
#include "barlow/interop.h"
#include "barlow/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int in_backbone(const char *name) {
    return strncmp(name, "projector.", 10) != 0 && strncmp(name, "bn.", 3) != 0;
}

/* Adds the tensors of one table under the state_dict's names. */
static int add_table(bt_st_writer *w, const bt_tensor_table *t, const float *buf, int with_projector) {
    for (int i = 0; i < t->n; i++) {
        const bt_tensor_info *e = &t->t[i];
        int bb = in_backbone(e->name);
        if (!bb && !with_projector) continue;
        char name[BT_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s%s", bb && with_projector ? "backbone." : "", e->name);
        int rc = bt_st_writer_add(w, name, BT_ST_F32, e->ndim, e->shape, buf + e->offset);
        if (rc) return rc;
    }
    return BT_OK;
}

int bt_export_safetensors(const bt_model *m, const char *path, int with_projector,
                          const char *config) {
    if (with_projector && !m->cfg.nproj)
        return bt_fail(BT_EINVAL, "%s: the model has no projector to export", path);
    bt_st_writer *w = bt_st_writer_new();
    if (!w) return BT_ENOMEM;
    int64_t count = m->bn_batches;
    int rc = bt_model_to_host(m, BT_IO_PARAMS | BT_IO_BUFS);
    if (!rc) rc = add_table(w, &m->params, m->host.p, with_projector);
    if (!rc) rc = add_table(w, &m->bufs, m->host.b, with_projector);
    /* PyTorch's BatchNorm keeps a num_batches_tracked beside running_mean, and a strict
     * load_state_dict wants it; every BN sees the same batches, so they share one value. */
    static const char suffix[] = "running_mean";
    const size_t sl = sizeof suffix - 1;
    for (int i = 0; !rc && i < m->bufs.n; i++) {
        const char *n = m->bufs.t[i].name;
        size_t l = strlen(n);
        int bb = in_backbone(n);
        if (l <= sl || strcmp(n + l - sl, suffix) || (!bb && !with_projector)) continue;
        char name[BT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%.*snum_batches_tracked", bb && with_projector ? "backbone." : "",
                 (int)(l - sl), n);
        rc = bt_st_writer_add(w, name, BT_ST_I64, 0, NULL, &count);
    }
    if (!rc) rc = bt_st_writer_meta(w, "format", with_projector ? "barlow-twins" : "barlow-backbone");
    if (!rc) rc = bt_st_writer_meta(w, "arch", m->cfg.arch);
    if (!rc && with_projector) {
        char proj[BT_MAX_PROJ * 12] = "";
        for (int i = 0; i < m->cfg.nproj; i++)
            snprintf(proj + strlen(proj), sizeof proj - strlen(proj), "%s%d", i ? "-" : "", m->cfg.proj[i]);
        rc = bt_st_writer_meta(w, "projector", proj);
    }
    if (!rc && config) rc = bt_st_writer_meta(w, "config", config);
    if (!rc) rc = bt_st_writer_save(w, path);
    bt_st_writer_free(w);
    return rc;
}
