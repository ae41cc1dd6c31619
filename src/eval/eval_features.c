/* What the evaluation commands share: loading a backbone from any of the weight files they
 * accept, and extracting frozen features of a whole dataset (also the kNN monitor's). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/checkpoint.h"
#include "barlow/error.h"
#include "barlow/eval.h"
#include "barlow/loader.h"
#include "barlow/train.h"

/* Same network (blocks, widths, stem): the spelling of the arch string may differ. */
static int same_net(const bt_model_cfg *a, const bt_model_cfg *b) {
    return !memcmp(a->blocks, b->blocks, sizeof a->blocks) && a->bottleneck == b->bottleneck &&
           a->cifar == b->cifar && !memcmp(a->widths, b->widths, sizeof a->widths);
}

int bt_eval_load_backbone(bt_model **out, const char *path, const char *arch, int arch_given) {
    *out = NULL;
    bt_st_file *f = NULL;
    bt_model *m = NULL;
    cJSON *cfg = NULL;
    int rc;
    int is_ckpt = 0;
    {
        /* Peek at the format first: a training checkpoint is validated (checksum) as a whole. */
        if ((rc = bt_st_open(&f, path)) != BT_OK) return rc;
        const char *fmt = bt_st_meta(f, "format");
        is_ckpt = fmt && !strcmp(fmt, BT_CKPT_FORMAT);
        if (is_ckpt) {
            bt_st_close(f);
            f = NULL;
            bt_ckpt_state st;
            if ((rc = bt_ckpt_open(&f, &st, path)) != BT_OK) return rc;
        }
    }
    /* The architecture the file records, if any. */
    char file_arch[64] = "";
    const char *a = bt_st_meta(f, "arch");
    const char *ctext = bt_st_meta(f, "config");
    if (!a && ctext && (cfg = cJSON_Parse(ctext)) != NULL) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, "arch");
        if (cJSON_IsString(j)) a = j->valuestring;
    }
    if (a) {
        if (strlen(a) >= sizeof file_arch) {
            rc = bt_fail(BT_EFORMAT, "%s: architecture '%.40s...' too long", path, a);
            goto done;
        }
        strcpy(file_arch, a);
    }
    if (*file_arch) {
        bt_model_cfg fc, gc;
        if ((rc = bt_model_cfg_parse(&fc, file_arch, NULL)) != BT_OK) {
            rc = bt_fail(BT_EFORMAT, "%s: recorded architecture: %s", path, bt_error());
            goto done;
        }
        if (arch_given) {
            if ((rc = bt_model_cfg_parse(&gc, arch, NULL)) != BT_OK) goto done;
            if (!same_net(&fc, &gc)) {
                rc = bt_fail(BT_EINVAL, "%s: holds a %s backbone, but --arch is %s", path,
                             file_arch, arch);
                goto done;
            }
        }
        arch = file_arch;
    }
    if ((rc = bt_model_new(&m, arch, NULL)) != BT_OK) goto done;
    /* Strict (an unexpected tensor is an error) except for a training checkpoint, which also
     * holds LARS momentum for the projector, and whose checksum was verified above. */
    rc = bt_model_read(m, f, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_BACKBONE, !is_ckpt);
    if (rc != BT_OK) {
        /* The read names file and tensor; add the architecture it was read as. */
        char msg[768];
        snprintf(msg, sizeof msg, "%s", bt_error());
        rc = bt_fail(rc, "%s (reading it as %s)", msg, arch);
        goto done;
    }
done:
    cJSON_Delete(cfg);
    bt_st_close(f);
    if (rc != BT_OK) {
        bt_model_free(m);
        return rc;
    }
    *out = m;
    return BT_OK;
}

int bt_eval_file_preset(const char *path, char *preset, size_t n) {
    bt_st_file *f;
    int rc = bt_st_open(&f, path);
    if (rc != BT_OK) return rc;
    const char *ctext = bt_st_meta(f, "config");
    cJSON *cfg = ctext ? cJSON_Parse(ctext) : NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, "preset");
    int found = cJSON_IsString(j) && strlen(j->valuestring) < n;
    if (found) strcpy(preset, j->valuestring);
    cJSON_Delete(cfg);
    bt_st_close(f);
    return found;
}

int bt_extract_features(float *feat, int32_t *labels, bt_model *m, const bt_dataset *ds,
                        const bt_aug_preset *p, int batch, int workers) {
    if (batch < 1 || workers < 1)
        return bt_fail(BT_EINVAL, "extract features: batch %d / workers %d must be >= 1",
                       batch, workers);
    size_t n = bt_dataset_size(ds);
    const int D = m->cfg.feat_dim;
    bt_loader_cfg lc = {.batch = batch, .threads = workers, .ring = 3, .seed = 0,
                        .mode = BT_LOAD_EVAL, .shuffle = 0, .drop_last = 0, .rank = 0,
                        .world = 1};
    bt_loader *ld = NULL;
    float *pad = NULL; /* (batch, 3, S, S) zero-padded copy of a short last batch */
    int rc = bt_loader_new(&ld, ds, p, &lc);
    if (rc != BT_OK) return rc;
    int S = bt_loader_image_size(ld, 0);
    if ((rc = bt_model_prepare(m, batch, S, S)) != BT_OK) goto done;
    if ((rc = bt_loader_start_epoch(ld, 0, 0)) != BT_OK) goto done;
    size_t pos = 0;
    const bt_batch *b;
    while ((rc = bt_loader_next(ld, &b)) == 1) {
        const float *x = b->x[0];
        if (b->n < batch) {
            /* Eval-mode BN treats rows independently, so padding leaves the real rows exact. */
            size_t img = (size_t)3 * S * S;
            if (!pad && !(pad = bt_calloc((size_t)batch * img * sizeof(float)))) {
                rc = BT_ENOMEM;
                goto done;
            }
            memcpy(pad, x, (size_t)b->n * img * sizeof(float));
            memset(pad + (size_t)b->n * img, 0, (size_t)(batch - b->n) * img * sizeof(float));
            x = pad;
        }
        if (pos + (size_t)b->n > n) {
            rc = bt_fail(BT_EINVAL, "extract features: loader gave more than %zu items", n);
            goto done;
        }
        if ((rc = bt_model_forward(m, 0, x, 0, 1)) != BT_OK) goto done;
        if ((rc = bt_model_copy_features(m, 0, feat + pos * D, b->n, 0)) != BT_OK) goto done;
        if (labels) memcpy(labels + pos, b->labels, (size_t)b->n * sizeof(int32_t));
        pos += (size_t)b->n;
    }
    if (rc < 0) goto done;
    rc = BT_OK;
    if (pos != n) rc = bt_fail(BT_EINVAL, "extract features: got %zu of %zu items", pos, n);
done:
    bt_free(pad);
    bt_loader_free(ld);
    return rc;
}
