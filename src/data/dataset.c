/* The dataset front end: detects which kind DATA is, dispatches to that kind's vtable, and
 * holds what every kind shares (item names, labels, class names). */
#include "data/data_internal.h"
#include "barlow/error.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The procedural "builtin:..." datasets (ds_builtin.c). */
int bt_builtin_open_(bt_dataset **ds, const char *spec, const char *split);

char *bt_strdup_(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) {
        bt_fail(BT_ENOMEM, "out of memory");
        return NULL;
    }
    return memcpy(p, s, n);
}

char *bt_strfmt_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) {
        bt_fail(BT_ENOMEM, "out of memory");
        return NULL;
    }
    return p;
}

bt_dataset *bt_dataset_new_(const bt_dataset_ops *ops) {
    bt_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        bt_fail(BT_ENOMEM, "out of memory");
        return NULL;
    }
    ds->ops = ops;
    return ds;
}

int bt_dataset_push_(bt_dataset *ds, char *name, int32_t label) {
    if (!name) return BT_ENOMEM;
    size_t n = ds->n_all;
    if ((n & (n - 1)) == 0) { /* grow at powers of two */
        size_t cap = n ? 2 * n : 1;
        char **nm = realloc(ds->names, cap * sizeof *nm);
        if (nm) ds->names = nm;
        int32_t *lb = realloc(ds->labels, cap * sizeof *lb);
        if (lb) ds->labels = lb;
        if (!nm || !lb) {
            free(name);
            return bt_fail(BT_ENOMEM, "out of memory indexing the dataset");
        }
    }
    ds->names[n] = name;
    ds->labels[n] = label;
    ds->n_all = ds->n = n + 1;
    return BT_OK;
}

int bt_dataset_set_classes_(bt_dataset *ds, char **names, int n) {
    ds->class_names = calloc(n > 0 ? n : 1, sizeof(char *));
    if (!ds->class_names) return bt_fail(BT_ENOMEM, "out of memory");
    ds->nclass = n;
    for (int c = 0; c < n; c++)
        if (!(ds->class_names[c] = bt_strdup_(names[c]))) return BT_ENOMEM;
    return BT_OK;
}

int bt_read_file_(bt_decoder *dc, const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bt_fail(BT_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return bt_fail(BT_EIO, "%s: %s", path, strerror(errno));
    }
    size_t n = (size_t)st.st_size, got = 0;
    int rc = bt_decoder_file(dc, n ? n : 1);
    while (!rc && got < n) {
        ssize_t r = pread(fd, dc->file + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) rc = bt_fail(BT_EIO, "%s: read failed at byte %zu: %s", path, got,
                                 r < 0 ? strerror(errno) : "unexpected end of file");
        else got += (size_t)r;
    }
    close(fd);
    *len = n;
    return rc;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Does dir hold a file named <prefix>-*.tar? */
static int has_tar_shards(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t pl = strlen(prefix);
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        found = n > pl + 5 && strncmp(e->d_name, prefix, pl) == 0 && e->d_name[pl] == '-' &&
                strcmp(e->d_name + n - 4, ".tar") == 0;
    }
    closedir(d);
    return found;
}

int bt_dataset_open(bt_dataset **ds, const char *data, const char *split) {
    *ds = NULL;
    if (!data || !*data) return bt_fail(BT_EINVAL, "DATA: empty path");
    if (!split || (strcmp(split, "train") && strcmp(split, "test") && strcmp(split, "val")))
        return bt_fail(BT_EINVAL, "%s: unknown split '%s' (train, test or val)", data,
                       split ? split : "(null)");
    const char *alt = !strcmp(split, "test") ? "val" : !strcmp(split, "val") ? "test" : NULL;
    char path[4096];
    if (!strncmp(data, "builtin:", 8)) return bt_builtin_open_(ds, data, split);
    if (!is_dir(data)) {
        if (strstr(data, ".tar")) return bt_tar_open_(ds, data, split);
        if (!exists(data)) return bt_fail(BT_EINVAL, "DATA: %s: no such file or directory", data);
        return bt_fail(BT_EINVAL, "DATA: not an image folder, CIFAR-10 batch directory or tar "
                                  "shard: %s", data);
    }
    snprintf(path, sizeof path, "%s/cifar-10-batches-bin", data);
    const char *cdir = is_dir(path) ? path : data;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/data_batch_1.bin", cdir);
    int cifar = exists(probe);
    snprintf(probe, sizeof probe, "%s/test_batch.bin", cdir);
    cifar |= exists(probe);
    if (cifar) {
        snprintf(probe, sizeof probe, "%s", cdir);
        return bt_cifar_open_(ds, probe, split);
    }
    if (has_tar_shards(data, split) || (alt && has_tar_shards(data, alt))) {
        const char *s = has_tar_shards(data, split) ? split : alt;
        /* Every <split>-*.tar in name order: a brace-free spec the expander globs. */
        snprintf(path, sizeof path, "%s/%s-*.tar", data, s);
        return bt_tar_open_(ds, path, split);
    }
    snprintf(path, sizeof path, "%s/train", data);
    int folder = is_dir(path);
    snprintf(path, sizeof path, "%s/test", data);
    folder |= is_dir(path);
    snprintf(path, sizeof path, "%s/val", data);
    folder |= is_dir(path);
    if (folder) {
        snprintf(path, sizeof path, "%s/%s", data, split);
        if (!is_dir(path) && alt) snprintf(path, sizeof path, "%s/%s", data, alt);
        if (!is_dir(path))
            return bt_fail(BT_EINVAL, "DATA: %s/%s: no such split directory%s%s%s", data, split,
                           alt ? " (nor " : "", alt ? alt : "", alt ? ")" : "");
        return bt_folder_open_(ds, path, split);
    }
    return bt_fail(BT_EINVAL, "DATA: not an image folder, CIFAR-10 batch directory or tar "
                              "shard: %s", data);
}

void bt_dataset_close(bt_dataset *ds) {
    if (!ds) return;
    if (ds->ops && ds->ops->close) ds->ops->close(ds);
    for (size_t i = 0; i < ds->n_all; i++) free(ds->names[i]);
    free(ds->names);
    free(ds->labels);
    for (int c = 0; c < ds->nclass; c++) free(ds->class_names ? ds->class_names[c] : NULL);
    free(ds->class_names);
    free(ds);
}

size_t bt_dataset_size(const bt_dataset *ds) { return ds->n; }
int bt_dataset_num_classes(const bt_dataset *ds) { return ds->nclass; }
const char *bt_dataset_class_name(const bt_dataset *ds, int c) {
    return c >= 0 && c < ds->nclass ? ds->class_names[c] : NULL;
}
int bt_dataset_label(const bt_dataset *ds, size_t i) { return i < ds->n ? ds->labels[i] : -1; }
const char *bt_dataset_item_name(const bt_dataset *ds, size_t i) {
    return i < ds->n ? ds->names[i] : NULL;
}
const char *bt_dataset_kind(const bt_dataset *ds) { return ds->ops->kind; }

int bt_dataset_load_with(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc) {
    if (i >= ds->n)
        return bt_fail(BT_EINVAL, "dataset item %zu out of range (size %zu)", i, ds->n);
    return ds->ops->load(ds, i, im, dc);
}

int bt_dataset_load(const bt_dataset *ds, size_t i, bt_image *im) {
    bt_decoder dc;
    bt_decoder_init(&dc);
    dc.imcap = im->px ? (size_t)im->w * im->h * 3 : 0;
    int rc = bt_dataset_load_with(ds, i, im, &dc);
    bt_decoder_free(&dc);
    return rc;
}

int bt_dataset_limit(bt_dataset *ds, size_t n) {
    if (n > ds->n_all)
        return bt_fail(BT_EINVAL, "dataset limit %zu exceeds its %zu items", n, ds->n_all);
    if (n == 0) return bt_fail(BT_EINVAL, "dataset limit must be positive");
    ds->n = n;
    return BT_OK;
}
