/* Augmentation presets (the reference's ImageNet Transform and a CIFAR variant) and their
 * command-line overrides, validated so a bad value fails at startup, not mid-epoch. */
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/augment.h"
#include "barlow/error.h"

static void view_defaults(bt_aug_view_cfg *v, int size, int interp) {
    v->size = size;
    v->scale_min = 0.08f;
    v->scale_max = 1.0f;
    v->ratio_min = 3.0f / 4.0f;
    v->ratio_max = 4.0f / 3.0f;
    v->interp = interp;
    v->flip_p = 0.5f;
    v->jitter_p = 0.8f;
    v->brightness = 0.4f;
    v->contrast = 0.4f;
    v->saturation = 0.2f;
    v->hue = 0.1f;
    v->gray_p = 0.2f;
    v->blur_p = 0.0f;
    v->blur_sigma_min = 0.1f;
    v->blur_sigma_max = 2.0f;
    v->solarize_p = 0.0f;
}

int bt_aug_preset_init(bt_aug_preset *p, const char *name) {
    memset(p, 0, sizeof *p);
    if (name && strcmp(name, "imagenet") == 0) {
        for (int v = 0; v < 2; v++) view_defaults(&p->view[v], 224, BT_INTERP_BICUBIC);
        p->view[0].blur_p = 1.0f;
        p->view[1].blur_p = 0.1f;
        p->view[1].solarize_p = 0.2f;
        const float m[3] = {0.485f, 0.456f, 0.406f}, s[3] = {0.229f, 0.224f, 0.225f};
        memcpy(p->mean, m, sizeof m);
        memcpy(p->std, s, sizeof s);
        p->eval_resize = 256;
        p->eval_crop = 224;
        p->eval_interp = BT_INTERP_BILINEAR; /* evaluate.py: Resize(256) default */
    } else if (name && strcmp(name, "cifar") == 0) {
        for (int v = 0; v < 2; v++) view_defaults(&p->view[v], 32, BT_INTERP_BILINEAR);
        p->view[1].solarize_p = 0.2f;
        const float m[3] = {0.4914f, 0.4822f, 0.4465f}, s[3] = {0.2470f, 0.2435f, 0.2616f};
        memcpy(p->mean, m, sizeof m);
        memcpy(p->std, s, sizeof s);
        p->eval_resize = 0;
        p->eval_crop = 0;
        p->eval_interp = BT_INTERP_BILINEAR;
    } else {
        return bt_fail(BT_EINVAL, "unknown augmentation preset '%s' (presets: imagenet, cifar)",
                       name ? name : "(null)");
    }
    strncpy(p->name, name, sizeof p->name - 1);
    return BT_OK;
}

static int parse_float(const char *key, const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno || !isfinite(v))
        return bt_fail(BT_EINVAL, "augmentation option %s: '%s' is not a number", key, s);
    *out = (float)v;
    return BT_OK;
}

static int parse_int(const char *key, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno)
        return bt_fail(BT_EINVAL, "augmentation option %s: '%s' is not an integer", key, s);
    if (v < lo || v > hi)
        return bt_fail(BT_EINVAL, "augmentation option %s: %ld out of range [%d, %d]", key, v,
                       lo, hi);
    *out = (int)v;
    return BT_OK;
}

static int parse_interp(const char *key, const char *s, int *out) {
    if (strcmp(s, "bilinear") == 0) *out = BT_INTERP_BILINEAR;
    else if (strcmp(s, "bicubic") == 0) *out = BT_INTERP_BICUBIC;
    else
        return bt_fail(BT_EINVAL, "augmentation option %s: '%s' (expected bilinear or bicubic)",
                       key, s);
    return BT_OK;
}

static int parse_float3(const char *key, const char *s, float out[3]) {
    char buf[128];
    if (strlen(s) >= sizeof buf)
        return bt_fail(BT_EINVAL, "augmentation option %s: value too long", key);
    strcpy(buf, s);
    char *save = NULL, *tok = strtok_r(buf, ",", &save);
    for (int i = 0; i < 3; i++, tok = strtok_r(NULL, ",", &save)) {
        if (!tok)
            return bt_fail(BT_EINVAL, "augmentation option %s: '%s' needs 3 comma-separated "
                           "numbers", key, s);
        if (parse_float(key, tok, &out[i])) return BT_EINVAL;
    }
    if (tok)
        return bt_fail(BT_EINVAL, "augmentation option %s: '%s' needs 3 comma-separated numbers",
                       key, s);
    return BT_OK;
}

static int check_range(const char *key, float v, float lo, float hi) {
    if (!(v >= lo && v <= hi))
        return bt_fail(BT_EINVAL, "augmentation option %s: %g out of range [%g, %g]", key,
                       (double)v, (double)lo, (double)hi);
    return BT_OK;
}

/* Per-view float keys: name, offset of the field, allowed range. */
typedef struct { const char *key; size_t off; float lo, hi; } float_key;
#define FK(k, f, lo, hi) {k, offsetof(bt_aug_view_cfg, f), lo, hi}
static const float_key view_floats[] = {
    FK("scale-min", scale_min, 1e-6f, 1.0f), FK("scale-max", scale_max, 1e-6f, 1.0f),
    FK("ratio-min", ratio_min, 1e-3f, 1e3f), FK("ratio-max", ratio_max, 1e-3f, 1e3f),
    FK("flip-p", flip_p, 0, 1),            FK("jitter-p", jitter_p, 0, 1),
    FK("brightness", brightness, 0, 100),  FK("contrast", contrast, 0, 100),
    FK("saturation", saturation, 0, 100),  FK("hue", hue, 0, 0.5f),
    FK("gray-p", gray_p, 0, 1),            FK("blur-p", blur_p, 0, 1),
    FK("blur-sigma-min", blur_sigma_min, 0, 100), FK("blur-sigma-max", blur_sigma_max, 0, 100),
    FK("solarize-p", solarize_p, 0, 1),
};
#undef FK

static int check_view(const bt_aug_view_cfg *v, int idx) {
    if (v->scale_min > v->scale_max)
        return bt_fail(BT_EINVAL, "augmentation view %d: scale-min %g > scale-max %g", idx,
                       (double)v->scale_min, (double)v->scale_max);
    if (v->ratio_min > v->ratio_max)
        return bt_fail(BT_EINVAL, "augmentation view %d: ratio-min %g > ratio-max %g", idx,
                       (double)v->ratio_min, (double)v->ratio_max);
    if (v->blur_sigma_min > v->blur_sigma_max)
        return bt_fail(BT_EINVAL, "augmentation view %d: blur-sigma-min %g > blur-sigma-max %g",
                       idx, (double)v->blur_sigma_min, (double)v->blur_sigma_max);
    return BT_OK;
}

int bt_aug_preset_set(bt_aug_preset *p, const char *key, const char *value) {
    if (!key || !value) return bt_fail(BT_EINVAL, "augmentation option: missing key or value");
    bt_aug_preset q = *p; /* edit a copy: p stays unchanged on error */
    char base[64];
    int v0 = 0, v1 = 1;
    size_t kl = strlen(key);
    if (kl >= sizeof base) return bt_fail(BT_EINVAL, "unknown augmentation option '%s'", key);
    strcpy(base, key);
    if (kl > 2 && base[kl - 2] == '.' && (base[kl - 1] == '0' || base[kl - 1] == '1')) {
        v0 = v1 = base[kl - 1] - '0';
        base[kl - 2] = '\0';
    }
    const int per_view = v0 == v1;
    int rc;
    for (size_t i = 0; i < sizeof view_floats / sizeof view_floats[0]; i++) {
        const float_key *f = &view_floats[i];
        if (strcmp(base, f->key) != 0) continue;
        float x = 0;
        if ((rc = parse_float(key, value, &x)) || (rc = check_range(key, x, f->lo, f->hi)))
            return rc;
        for (int v = v0; v <= v1; v++) *(float *)((char *)&q.view[v] + f->off) = x;
        goto validate;
    }
    if (strcmp(base, "size") == 0) {
        int x = 0;
        if ((rc = parse_int(key, value, 1, 4096, &x))) return rc;
        for (int v = v0; v <= v1; v++) q.view[v].size = x;
        goto validate;
    }
    if (strcmp(base, "interp") == 0) {
        int x = 0;
        if ((rc = parse_interp(key, value, &x))) return rc;
        for (int v = v0; v <= v1; v++) q.view[v].interp = x;
        goto validate;
    }
    /* Pairs, so a range can move past its old bounds in one step. */
    static const struct { const char *key; size_t lo, hi; float min, max; } pairs[] = {
        {"scale", offsetof(bt_aug_view_cfg, scale_min), offsetof(bt_aug_view_cfg, scale_max),
         1e-6f, 1.0f},
        {"ratio", offsetof(bt_aug_view_cfg, ratio_min), offsetof(bt_aug_view_cfg, ratio_max),
         1e-3f, 1e3f},
        {"blur-sigma", offsetof(bt_aug_view_cfg, blur_sigma_min),
         offsetof(bt_aug_view_cfg, blur_sigma_max), 0, 100},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (strcmp(base, pairs[i].key) != 0) continue;
        float lo = 0, hi = 0;
        char *comma = strchr(value, ',');
        char buf[64];
        if (!comma || strlen(value) >= sizeof buf)
            return bt_fail(BT_EINVAL, "augmentation option %s: '%s' (expected MIN,MAX)", key,
                           value);
        memcpy(buf, value, (size_t)(comma - value));
        buf[comma - value] = '\0';
        if ((rc = parse_float(key, buf, &lo)) || (rc = parse_float(key, comma + 1, &hi)) ||
            (rc = check_range(key, lo, pairs[i].min, pairs[i].max)) ||
            (rc = check_range(key, hi, pairs[i].min, pairs[i].max)))
            return rc;
        for (int v = v0; v <= v1; v++) {
            *(float *)((char *)&q.view[v] + pairs[i].lo) = lo;
            *(float *)((char *)&q.view[v] + pairs[i].hi) = hi;
        }
        goto validate;
    }
    if (per_view) return bt_fail(BT_EINVAL, "unknown augmentation option '%s'", key);
    if (strcmp(key, "mean") == 0) {
        if ((rc = parse_float3(key, value, q.mean))) return rc;
    } else if (strcmp(key, "std") == 0) {
        if ((rc = parse_float3(key, value, q.std))) return rc;
        for (int c = 0; c < 3; c++)
            if (!(q.std[c] > 0))
                return bt_fail(BT_EINVAL, "augmentation option std: '%s' must be > 0", value);
    } else if (strcmp(key, "eval-resize") == 0) {
        if ((rc = parse_int(key, value, 0, 8192, &q.eval_resize))) return rc;
    } else if (strcmp(key, "eval-crop") == 0) {
        if ((rc = parse_int(key, value, 0, 8192, &q.eval_crop))) return rc;
    } else if (strcmp(key, "eval-interp") == 0) {
        if ((rc = parse_interp(key, value, &q.eval_interp))) return rc;
    } else if (strcmp(key, "decode-scale") == 0) {
        if ((rc = parse_int(key, value, 0, 1, &q.decode_scale))) return rc;
    } else {
        return bt_fail(BT_EINVAL,
                       "unknown augmentation option '%s' (keys: size scale scale-min scale-max "
                       "ratio ratio-min ratio-max interp flip-p jitter-p brightness contrast "
                       "saturation hue gray-p blur-p blur-sigma blur-sigma-min blur-sigma-max "
                       "solarize-p [.0|.1], mean std eval-resize eval-crop eval-interp "
                       "decode-scale)", key);
    }
validate:
    for (int v = 0; v < 2; v++)
        if ((rc = check_view(&q.view[v], v))) return rc;
    *p = q;
    return BT_OK;
}
