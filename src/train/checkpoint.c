/* Training checkpoints and the final backbone export (format in checkpoint.h). */
#include "barlow/checkpoint.h"
#include "barlow/error.h"
#include "barlow/train.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[BT_NAME_MAX + 16];
    int dtype, ndim;
    int64_t shape[BT_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} ck_item;

typedef struct {
    const char *key, *value;
} ck_meta;

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const ck_item *)a)->name, ((const ck_item *)b)->name);
}
static int cmp_meta(const void *a, const void *b) {
    return strcmp(((const ck_meta *)a)->key, ((const ck_meta *)b)->key);
}

/* XXH64 chained over every tensor (name, dtype, shape, bytes) in name order, then over every
 * metadata entry but "checksum" (key, value) in key order: a flipped byte anywhere that
 * matters — data, names, shapes, the step or the configuration — changes it. */
static uint64_t chain(ck_item *it, size_t n, ck_meta *mt, size_t nm) {
    qsort(it, n, sizeof *it, cmp_item);
    qsort(mt, nm, sizeof *mt, cmp_meta);
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t hdr[2 + BT_ST_MAX_DIMS] = {it[i].dtype, it[i].ndim};
        for (int d = 0; d < it[i].ndim && d < BT_ST_MAX_DIMS; d++) hdr[2 + d] = it[i].shape[d];
        h = bt_checksum64(it[i].name, strlen(it[i].name) + 1, h);
        h = bt_checksum64(hdr, sizeof hdr, h);
        h = bt_checksum64(it[i].data, it[i].nbytes, h);
    }
    for (size_t i = 0; i < nm; i++) {
        if (!strcmp(mt[i].key, "checksum")) continue;
        h = bt_checksum64(mt[i].key, strlen(mt[i].key) + 1, h);
        h = bt_checksum64(mt[i].value, strlen(mt[i].value) + 1, h);
    }
    return h;
}

static void item(ck_item *it, const char *prefix, const bt_tensor_info *e, const float *buf) {
    snprintf(it->name, sizeof it->name, "%s%s", prefix, e->name);
    it->dtype = BT_ST_F32;
    it->ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++) it->shape[d] = e->shape[d];
    it->data = buf + e->offset;
    it->nbytes = e->numel * sizeof(float);
}

/* The tensors bt_model_write(PARAMS|BUFS|MOMENTUM) adds, by the same names, and metadata. */
static int model_checksum(const bt_model *m, ck_meta *mt, size_t nm, uint64_t *out) {
    size_t n = (size_t)2 * m->params.n + m->bufs.n, k = 0;
    int rc = bt_model_to_host(m, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_MOMENTUM);
    if (rc != BT_OK) return rc;
    ck_item *it = calloc(n, sizeof *it);
    if (!it) return bt_fail(BT_ENOMEM, "out of memory");
    for (int i = 0; i < m->params.n; i++) {
        item(&it[k++], "", &m->params.t[i], m->host.p);
        item(&it[k++], "momentum.", &m->params.t[i], m->host.mom);
    }
    for (int i = 0; i < m->bufs.n; i++) item(&it[k++], "", &m->bufs.t[i], m->host.b);
    *out = chain(it, k, mt, nm);
    free(it);
    return BT_OK;
}

uint64_t bt_ckpt_file_checksum(const bt_st_file *f) {
    int n = bt_st_count(f), nm = bt_st_meta_count(f);
    ck_item *it = calloc((size_t)(n > 0 ? n : 1), sizeof *it);
    ck_meta *mt = calloc((size_t)(nm > 0 ? nm : 1), sizeof *mt);
    if (!it || !mt) { /* cannot match a real checksum except by a 2^-64 chance */
        free(it);
        free(mt);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const bt_st_tensor *t = bt_st_at(f, i);
        snprintf(it[i].name, sizeof it[i].name, "%s", t->name);
        it[i].dtype = t->dtype;
        it[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim && d < BT_ST_MAX_DIMS; d++) it[i].shape[d] = t->shape[d];
        it[i].data = t->data;
        it[i].nbytes = t->nbytes;
    }
    for (int i = 0; i < nm; i++) mt[i].key = bt_st_meta_at(f, i, &mt[i].value);
    uint64_t h = chain(it, (size_t)n, mt, (size_t)nm);
    free(it);
    free(mt);
    return h;
}

int bt_ckpt_save(const char *path, const bt_model *m, const bt_ckpt_state *st) {
    char num[7][32], hex[24];
    snprintf(num[0], 32, "%d", BT_CKPT_VERSION);
    snprintf(num[1], 32, "%d", st->epoch);
    snprintf(num[2], 32, "%ld", st->next_batch);
    snprintf(num[3], 32, "%ld", st->step);
    snprintf(num[4], 32, "%ld", st->steps_per_epoch);
    snprintf(num[5], 32, "%" PRIu64, st->seed);
    snprintf(num[6], 32, "%" PRId64, m->bn_batches);
    ck_meta mt[] = {
        {"format", BT_CKPT_FORMAT}, {"version", num[0]}, {"epoch", num[1]},
        {"next_batch", num[2]}, {"step", num[3]}, {"steps_per_epoch", num[4]},
        {"seed", num[5]}, {"num_batches_tracked", num[6]},
        {"config", st->config ? st->config : "{}"},
    };
    size_t nm = sizeof mt / sizeof *mt;
    uint64_t sum = 0;
    int rc = model_checksum(m, mt, nm, &sum);
    if (rc) return rc;
    snprintf(hex, sizeof hex, "%016" PRIx64, sum);
    bt_st_writer *w = bt_st_writer_new();
    if (!w) return BT_ENOMEM;
    rc = bt_model_write(m, w, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_MOMENTUM);
    for (size_t i = 0; i < nm && !rc; i++) rc = bt_st_writer_meta(w, mt[i].key, mt[i].value);
    if (!rc) rc = bt_st_writer_meta(w, "checksum", hex);
    if (!rc) rc = bt_st_writer_save(w, path);
    bt_st_writer_free(w);
    return rc;
}

/* Metadata integer `key` of f into *v, within [lo, hi]. */
static int get_i64(const bt_st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *v) {
    const char *s = bt_st_meta(f, key);
    if (!s) return bt_fail(BT_EFORMAT, "%s: not a barlow checkpoint (no '%s' in __metadata__)",
                           bt_st_path(f), key);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno == ERANGE || x < lo || x > hi)
        return bt_fail(BT_EFORMAT, "%s: bad metadata %s='%s'", bt_st_path(f), key, s);
    *v = x;
    return BT_OK;
}

int bt_ckpt_open(bt_st_file **out, bt_ckpt_state *st, const char *path) {
    *out = NULL;
    memset(st, 0, sizeof *st);
    bt_st_file *f;
    int rc = bt_st_open(&f, path);
    if (rc) return rc;
    const char *fmt = bt_st_meta(f, "format"), *sum = bt_st_meta(f, "checksum");
    int64_t ver = 0, epoch = 0, nb = 0, step = 0, spe = 0, nbt = 0;
    if (!fmt || strcmp(fmt, BT_CKPT_FORMAT)) {
        rc = bt_fail(BT_EFORMAT, "%s: not a barlow checkpoint (metadata format is '%s')", path,
                     fmt ? fmt : "missing");
    } else if ((rc = get_i64(f, "version", 0, INT32_MAX, &ver)) == BT_OK && ver != BT_CKPT_VERSION) {
        rc = bt_fail(BT_EFORMAT, "%s: checkpoint format version %" PRId64 " (this program reads %d)",
                     path, ver, BT_CKPT_VERSION);
    }
    if (!rc) rc = get_i64(f, "epoch", 0, INT32_MAX, &epoch);
    if (!rc) rc = get_i64(f, "next_batch", 0, INT64_MAX, &nb);
    if (!rc) rc = get_i64(f, "step", 0, INT64_MAX, &step);
    if (!rc) rc = get_i64(f, "steps_per_epoch", 1, INT64_MAX, &spe);
    if (!rc) rc = get_i64(f, "num_batches_tracked", 0, INT64_MAX, &nbt);
    if (!rc && nb > spe) rc = bt_fail(BT_EFORMAT, "%s: next_batch %" PRId64 " beyond the %" PRId64
                                      " batches of an epoch", path, nb, spe);
    const char *seed = bt_st_meta(f, "seed"), *config = bt_st_meta(f, "config");
    char *end = NULL;
    uint64_t sd = 0;
    if (!rc && seed) {
        errno = 0;
        sd = strtoull(seed, &end, 10);
    }
    if (!rc && (!seed || !*seed || *end || errno == ERANGE || seed[0] == '-'))
        rc = bt_fail(BT_EFORMAT, "%s: bad or missing metadata seed", path);
    if (!rc && !config) rc = bt_fail(BT_EFORMAT, "%s: no 'config' in __metadata__", path);
    if (!rc) {
        char hex[24];
        snprintf(hex, sizeof hex, "%016" PRIx64, bt_ckpt_file_checksum(f));
        if (!sum) rc = bt_fail(BT_EFORMAT, "%s: no 'checksum' in __metadata__", path);
        else if (strcmp(sum, hex))
            rc = bt_fail(BT_EFORMAT, "%s: checksum mismatch (stored %s, computed %s): the file is "
                         "corrupted", path, sum, hex);
    }
    if (rc) {
        bt_st_close(f);
        return rc;
    }
    st->epoch = (int)epoch;
    st->next_batch = (long)nb;
    st->step = (long)step;
    st->steps_per_epoch = (long)spe;
    st->seed = sd;
    st->bn_batches = nbt;
    st->config = config;
    *out = f;
    return BT_OK;
}

int bt_ckpt_restore(bt_model *m, const bt_st_file *f, const bt_ckpt_state *st) {
    int rc = bt_model_read(m, f, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_MOMENTUM, 1);
    if (rc) return rc;
    m->bn_batches = st->bn_batches;
    return BT_OK;
}

int bt_ckpt_save_backbone(const char *path, const bt_model *m, const char *config) {
    bt_st_writer *w = bt_st_writer_new();
    if (!w) return BT_ENOMEM;
    int nbn = 0;
    static const char suffix[] = ".running_mean";
    const size_t sl = sizeof suffix - 1;
    int64_t *counts = malloc((size_t)(m->bufs.n > 0 ? m->bufs.n : 1) * sizeof *counts);
    int rc = counts ? bt_model_write(m, w, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_BACKBONE)
                    : bt_fail(BT_ENOMEM, "out of memory");
    /* torchvision's state_dict has a num_batches_tracked per BN; a strict load_state_dict
     * wants them. Every BN is run once per view, so they all equal m->bn_batches. */
    for (int i = 0; !rc && i < m->bufs.n; i++) {
        const char *n = m->bufs.t[i].name;
        size_t l = strlen(n);
        if (l <= sl || strcmp(n + l - sl, suffix) || !strncmp(n, "bn.", 3) ||
            !strncmp(n, "projector.", 10))
            continue;
        char name[BT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%.*snum_batches_tracked", (int)(l - sl + 1), n);
        counts[nbn] = m->bn_batches;
        rc = bt_st_writer_add(w, name, BT_ST_I64, 0, NULL, &counts[nbn]);
        nbn++;
    }
    if (!rc) rc = bt_st_writer_meta(w, "format", "barlow-backbone");
    if (!rc) rc = bt_st_writer_meta(w, "arch", m->cfg.arch);
    if (!rc && config) rc = bt_st_writer_meta(w, "config", config);
    if (!rc) rc = bt_st_writer_save(w, path);
    bt_st_writer_free(w);
    free(counts);
    return rc;
}
