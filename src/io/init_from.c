/* Loading weights made elsewhere (torchvision, PyTorch, earlier barlow runs) into a model:
 * strict backbone initialisation (--init-from), and building a model from whatever barlow
 * weights file a command is given. */
#include "barlow/interop.h"
#include "barlow/checkpoint.h"
#include "barlow/error.h"
#include "barlow/train.h"
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bt_weights_arch(const bt_st_file *f, char *arch, size_t n) {
    const char *a = bt_st_meta(f, "arch");
    cJSON *cfg = NULL;
    if (!a) {
        const char *c = bt_st_meta(f, "config");
        cfg = c ? cJSON_Parse(c) : NULL;
        const cJSON *j = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "arch") : NULL;
        if (cJSON_IsString(j)) a = j->valuestring;
    }
    int rc = BT_OK;
    if (!a) rc = bt_fail(BT_EFORMAT, "%s: no 'arch' in the metadata (give --arch)", bt_st_path(f));
    else if (strlen(a) >= n) rc = bt_fail(BT_EFORMAT, "%s: metadata arch too long", bt_st_path(f));
    else strcpy(arch, a);
    cJSON_Delete(cfg);
    return rc;
}

static int is_backbone(const char *name) {
    return strncmp(name, "projector.", 10) != 0 && strncmp(name, "bn.", 3) != 0;
}

/* Every value of the backbone's tensors is finite: a NaN in a downloaded file would otherwise
 * surface as a NaN loss many steps later, far from its cause. */
static int check_finite(const bt_model *m, const char *path) {
    for (int k = 0; k < 2; k++) {
        const bt_tensor_table *t = k ? &m->bufs : &m->params;
        const float *buf = k ? m->host.b : m->host.p; /* after bt_model_read: the image is current */
        for (int i = 0; i < t->n; i++) {
            const bt_tensor_info *e = &t->t[i];
            if (!is_backbone(e->name)) continue;
            for (size_t j = 0; j < e->numel; j++)
                if (!isfinite(buf[e->offset + j]))
                    return bt_fail(BT_ENUM, "%s: tensor '%s' has a non-finite value at element %zu",
                                   path, e->name, j);
        }
    }
    return BT_OK;
}

static int init_from_file(bt_model *m, const bt_st_file *f) {
    const char *path = bt_st_path(f);
    /* Load into the model but keep a copy, so a failed load leaves m as it was. */
    float *keep_p = bt_alloc(m->params.total * sizeof(float));
    float *keep_b = bt_alloc((m->bufs.total ? m->bufs.total : 1) * sizeof(float));
    if (!keep_p || !keep_b) {
        bt_free(keep_p);
        bt_free(keep_b);
        return BT_ENOMEM;
    }
    int rc = bt_model_to_host(m, BT_IO_PARAMS | BT_IO_BUFS);
    if (rc) {
        bt_free(keep_p);
        bt_free(keep_b);
        return rc;
    }
    memcpy(keep_p, m->host.p, m->params.total * sizeof(float));
    memcpy(keep_b, m->host.b, m->bufs.total * sizeof(float));
    rc = bt_model_read(m, f, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_BACKBONE, 1);
    if (rc) {
        /* A wrong architecture shows up as the first missing or misshapen tensor; say so. */
        const char *arch = bt_st_meta(f, "arch");
        if (arch && strcmp(arch, m->cfg.arch)) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", bt_error());
            rc = bt_fail(rc, "%s (the file holds %s weights, the model is %s)", msg, arch, m->cfg.arch);
        }
    }
    if (!rc) rc = check_finite(m, path);
    int64_t nbt = 0;
    for (int i = 0; !rc && i < bt_st_count(f); i++) {
        const bt_st_tensor *t = bt_st_at(f, i);
        size_t l = strlen(t->name);
        if (l >= 19 && !strcmp(t->name + l - 19, "num_batches_tracked") && t->dtype == BT_ST_I64 &&
            t->numel == 1) {
            memcpy(&nbt, t->data, sizeof nbt);
            break;
        }
    }
    if (rc) {
        memcpy(m->host.p, keep_p, m->params.total * sizeof(float));
        memcpy(m->host.b, keep_b, m->bufs.total * sizeof(float));
        int back = bt_model_to_device(m, BT_IO_PARAMS | BT_IO_BUFS);
        if (back) rc = back;
    } else {
        m->bn_batches = nbt < 0 ? 0 : nbt;
    }
    bt_free(keep_p);
    bt_free(keep_b);
    return rc;
}

int bt_model_init_from(bt_model *m, const char *path) {
    bt_st_file *f;
    int rc = bt_st_open(&f, path);
    if (rc) return rc;
    rc = init_from_file(m, f);
    bt_st_close(f);
    return rc;
}

static char *dup_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A barlow checkpoint: arch and projector from its config. */
static int load_checkpoint(bt_model **out, const char *path, const char *arch, int want_projector,
                           char **config) {
    bt_st_file *f;
    bt_ckpt_state st;
    int rc = bt_ckpt_open(&f, &st, path);
    if (rc) return rc;
    cJSON *cfg = cJSON_Parse(st.config);
    const cJSON *ja = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "arch") : NULL;
    const cJSON *jp = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "projector") : NULL;
    const char *proj = cJSON_IsString(jp) && *jp->valuestring ? jp->valuestring : NULL;
    bt_model *m = NULL;
    if (!cJSON_IsString(ja)) rc = bt_fail(BT_EFORMAT, "%s: checkpoint config has no \"arch\"", path);
    else if (arch && strcmp(arch, ja->valuestring))
        rc = bt_fail(BT_EINVAL, "--arch %s: the checkpoint %s holds a %s", arch, path, ja->valuestring);
    else if (want_projector && !proj)
        rc = bt_fail(BT_EFORMAT, "%s: checkpoint config has no \"projector\"", path);
    if (!rc) rc = bt_model_new(&m, ja->valuestring, want_projector ? proj : NULL);
    if (!rc && want_projector) {
        rc = bt_ckpt_restore(m, f, &st);
    } else if (!rc) {
        /* The checksum was verified by bt_ckpt_open; the projector tensors are left behind. */
        rc = bt_model_read(m, f, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_BACKBONE, 0);
        m->bn_batches = st.bn_batches;
    }
    if (!rc && config && !(*config = dup_str(st.config))) rc = bt_fail(BT_ENOMEM, "out of memory");
    cJSON_Delete(cfg);
    bt_st_close(f);
    if (rc) bt_model_free(m);
    else *out = m;
    return rc;
}

int bt_model_load_any(bt_model **out, const char *path, const char *arch, int want_projector,
                      char **config) {
    *out = NULL;
    if (config) *config = NULL;
    bt_st_file *f;
    int rc = bt_st_open(&f, path);
    if (rc) return rc;
    const char *fmt = bt_st_meta(f, "format");
    if (fmt && !strcmp(fmt, BT_CKPT_FORMAT)) {
        bt_st_close(f);
        return load_checkpoint(out, path, arch, want_projector, config);
    }
    char a[64];
    const char *proj = bt_st_meta(f, "projector");
    bt_model *m = NULL;
    if (arch) {
        if (strlen(arch) >= sizeof a) rc = bt_fail(BT_EINVAL, "--arch: too long");
        else strcpy(a, arch);
    } else {
        rc = bt_weights_arch(f, a, sizeof a);
    }
    if (!rc && want_projector && !proj)
        rc = bt_fail(BT_EFORMAT, "%s: holds no projector (metadata 'projector' missing); export "
                     "from the training checkpoint instead", path);
    if (!rc) rc = bt_model_new(&m, a, want_projector ? proj : NULL);
    if (!rc && want_projector) {
        rc = bt_model_read(m, f, BT_IO_PARAMS | BT_IO_BUFS, 1);
        if (!rc) rc = check_finite(m, path);
        const bt_st_tensor *t = rc ? NULL : bt_st_find(f, "bn.num_batches_tracked");
        if (t && t->dtype == BT_ST_I64 && t->numel == 1) memcpy(&m->bn_batches, t->data, sizeof(int64_t));
    } else if (!rc) {
        rc = init_from_file(m, f);
    }
    if (!rc && config && bt_st_meta(f, "config") && !(*config = dup_str(bt_st_meta(f, "config"))))
        rc = bt_fail(BT_ENOMEM, "out of memory");
    bt_st_close(f);
    if (rc) bt_model_free(m);
    else *out = m;
    return rc;
}
