/* Semi-supervised fine-tuning support: the class-balanced labelled subsets (1% / 10% as in
 * SimCLR and the Barlow Twins paper), their item lists on disk so a run can be repeated, and
 * decoding + augmenting an arbitrary list of items (the loader covers whole datasets only). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/error.h"
#include "barlow/eval.h"
#include "barlow/rng.h"

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int bt_subset_balanced(size_t **out, size_t *nout, const bt_dataset *ds, double percent,
                       uint64_t seed) {
    *out = NULL;
    *nout = 0;
    if (!(percent > 0 && percent <= 100))
        return bt_fail(BT_EINVAL, "subset: percent %g outside (0, 100]", percent);
    size_t n = bt_dataset_size(ds);
    int C = bt_dataset_num_classes(ds);
    size_t *cnt = calloc((size_t)C + 1, sizeof(size_t));    /* (C+1) prefix offsets */
    size_t *byc = malloc((n ? n : 1) * sizeof(size_t));      /* (n) items grouped by class */
    size_t *fill = calloc((size_t)C, sizeof(size_t));        /* (C) */
    size_t *sel = malloc((n ? n : 1) * sizeof(size_t));      /* (n) chosen items */
    if (!cnt || !byc || !fill || !sel) {
        free(cnt); free(byc); free(fill); free(sel);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) cnt[bt_dataset_label(ds, i) + 1]++;
    for (int c = 0; c < C; c++) cnt[c + 1] += cnt[c];
    for (size_t i = 0; i < n; i++) {
        int c = bt_dataset_label(ds, i);
        byc[cnt[c] + fill[c]++] = i;
    }
    size_t ns = 0;
    for (int c = 0; c < C; c++) {
        size_t nc = cnt[c + 1] - cnt[c];
        if (!nc) continue;
        size_t take = (size_t)llround((double)nc * percent / 100.0);
        if (take < 1) take = 1;
        if (take > nc) take = nc;
        /* Partial Fisher-Yates with a generator keyed by the class: the choice in one class
         * does not depend on the sizes of the others. */
        size_t *g = byc + cnt[c];
        bt_rng r = bt_rng_key(seed, 0, (uint64_t)c, 0x5b5e7);
        for (size_t j = 0; j < take; j++) {
            size_t k = j + (size_t)bt_rng_below(&r, nc - j);
            size_t t = g[j]; g[j] = g[k]; g[k] = t;
            sel[ns++] = g[j];
        }
    }
    qsort(sel, ns, sizeof *sel, cmp_size);
    free(cnt);
    free(byc);
    free(fill);
    *out = sel;
    *nout = ns;
    return BT_OK;
}

int bt_subset_write(const char *path, const bt_dataset *ds, const size_t *idx, size_t n) {
    FILE *f = fopen(path, "w");
    if (!f) return bt_fail(BT_EIO, "cannot write %s: %s", path, strerror(errno));
    for (size_t i = 0; i < n; i++) fprintf(f, "%s\n", bt_dataset_item_name(ds, idx[i]));
    if (ferror(f) | (fclose(f) != 0)) return bt_fail(BT_EIO, "cannot write %s", path);
    return BT_OK;
}

static const char *base_name(const char *s) {
    const char *a = strrchr(s, '/'), *b = strrchr(s, ':');
    const char *c = a > b ? a : b;
    return c ? c + 1 : s;
}

typedef struct {
    const char *key;
    size_t idx;
} name_ix;

static int cmp_name(const void *a, const void *b) {
    const name_ix *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

/* The first entry with key `key` in sorted t (n), or n. */
static size_t lower(const name_ix *t, size_t n, const char *key) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t[mid].key, key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int bt_subset_read(size_t **out, size_t *nout, const bt_dataset *ds, const char *path) {
    *out = NULL;
    *nout = 0;
    FILE *f = fopen(path, "r");
    if (!f) return bt_fail(BT_EIO, "cannot read %s: %s", path, strerror(errno));
    size_t n = bt_dataset_size(ds);
    name_ix *full = malloc((n ? n : 1) * sizeof *full), *base = malloc((n ? n : 1) * sizeof *base);
    size_t cap = 1024, ns = 0;
    size_t *sel = malloc(cap * sizeof *sel);
    char *line = NULL;
    size_t lcap = 0;
    int rc = BT_OK;
    if (!full || !base || !sel) {
        rc = bt_fail(BT_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        full[i].key = bt_dataset_item_name(ds, i);
        base[i].key = base_name(full[i].key);
        full[i].idx = base[i].idx = i;
    }
    qsort(full, n, sizeof *full, cmp_name);
    qsort(base, n, sizeof *base, cmp_name);
    long lineno = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        size_t j = lower(full, n, s), hit = n;
        if (j < n && !strcmp(full[j].key, s)) {
            hit = full[j].idx;
        } else if (strchr(s, '/') || strchr(s, ':')) {
            /* A relative path ("n01440764/x.JPEG"): the unique item whose name ends with it
             * after a separator. */
            size_t ls = strlen(s), found = 0;
            for (size_t i = 0; i < n; i++) {
                const char *nm = bt_dataset_item_name(ds, i);
                size_t ln = strlen(nm);
                if (ln > ls && !strcmp(nm + ln - ls, s) &&
                    (nm[ln - ls - 1] == '/' || nm[ln - ls - 1] == ':')) {
                    if (found++) {
                        rc = bt_fail(BT_EINVAL, "%s:%ld: '%s' matches several items (%s, %s); "
                                     "give the full name", path, lineno, s,
                                     bt_dataset_item_name(ds, hit), nm);
                        goto done;
                    }
                    hit = i;
                }
            }
            if (!found) {
                rc = bt_fail(BT_EINVAL, "%s:%ld: '%s' is not an item of the dataset", path,
                             lineno, s);
                goto done;
            }
        } else {
            j = lower(base, n, s);
            if (j >= n || strcmp(base[j].key, s)) {
                rc = bt_fail(BT_EINVAL, "%s:%ld: '%s' is not an item of the dataset", path,
                             lineno, s);
                goto done;
            }
            if (j + 1 < n && !strcmp(base[j + 1].key, s)) {
                rc = bt_fail(BT_EINVAL, "%s:%ld: '%s' matches several items (%s, %s); give the "
                             "full name", path, lineno, s, bt_dataset_item_name(ds, base[j].idx),
                             bt_dataset_item_name(ds, base[j + 1].idx));
                goto done;
            }
            hit = base[j].idx;
        }
        if (ns == cap) {
            size_t *t = realloc(sel, 2 * cap * sizeof *sel);
            if (!t) {
                rc = bt_fail(BT_ENOMEM, "out of memory");
                goto done;
            }
            sel = t;
            cap *= 2;
        }
        sel[ns++] = hit;
    }
    if (ferror(f)) rc = bt_fail(BT_EIO, "cannot read %s", path);
    else if (!ns) rc = bt_fail(BT_EINVAL, "%s: no item names in the list", path);
done:
    fclose(f);
    free(line);
    free(full);
    free(base);
    if (rc != BT_OK) {
        free(sel);
        return rc;
    }
    *out = sel;
    *nout = ns;
    return BT_OK;
}

int bt_load_augmented(float *x, int32_t *labels, const bt_dataset *ds, const size_t *idx, int n,
                      const bt_aug_preset *p, uint64_t seed, int epoch) {
    const bt_aug_view_cfg *c = &p->view[0];
    const size_t per = (size_t)3 * c->size * c->size;
    int rc = BT_OK;
    char err[512] = ""; /* the first failing thread's message (messages are per thread) */
#pragma omp parallel
    {
        bt_aug_work *w = bt_aug_work_new();
        bt_image im = {0, 0, NULL};
        int mine = w ? BT_OK : BT_ENOMEM;
        char msg[512] = "";
#pragma omp for schedule(dynamic, 1)
        for (int j = 0; j < n; j++) {
            if (mine != BT_OK) continue;
            size_t i = idx[j];
            if ((mine = bt_dataset_load(ds, i, &im)) == BT_OK) {
                bt_rng rng = bt_rng_key(seed, (uint64_t)epoch, i, 0);
                bt_aug_params prm;
                bt_aug_sample(&prm, c, im.w, im.h, &rng);
                mine = bt_aug_apply(x + (size_t)j * per, &im, &prm, c, p->mean, p->std, w);
            }
            if (mine != BT_OK) snprintf(msg, sizeof msg, "%s", bt_error());
            labels[j] = bt_dataset_label(ds, i);
        }
        if (mine != BT_OK) {
#pragma omp critical(bt_load_augmented)
            if (rc == BT_OK) {
                rc = mine;
                snprintf(err, sizeof err, "%s", *msg ? msg : "out of memory");
            }
        }
        bt_image_free(&im);
        bt_aug_work_free(w);
    }
    if (rc != BT_OK) return bt_fail(rc, "%s", err);
    return BT_OK;
}
