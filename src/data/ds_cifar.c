/* CIFAR-10 binary batches: records of 1 label byte + 3072 bytes (R, G, B planes of 32x32).
 * The files stay open and each record is read with pread, so workers share them freely. */
#include "data/data_internal.h"
#include "barlow/error.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { REC = 3073, NPIX = 1024 };

typedef struct {
    int nfiles;
    int fd[5];
    char *path[5];
    uint32_t *rec;   /* (n_all) file index << 24 | record number */
} cifar_impl;

static int cifar_load(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc) {
    const cifar_impl *c = ds->impl;
    int f = (int)(c->rec[i] >> 24);
    off_t off = (off_t)(c->rec[i] & 0xffffff) * REC;
    int rc = bt_decoder_file(dc, REC);
    if (rc) return rc;
    ssize_t r;
    do r = pread(c->fd[f], dc->file, REC, off);
    while (r < 0 && errno == EINTR);
    if (r != REC)
        return bt_fail(BT_EIO, "%s: read failed at byte %lld: %s", ds->names[i], (long long)off,
                       r < 0 ? strerror(errno) : "unexpected end of file");
    if ((rc = bt_decoder_image(dc, im, 32, 32))) return rc;
    const uint8_t *p = dc->file + 1;
    for (int k = 0; k < NPIX; k++) {
        im->px[3 * k] = p[k];
        im->px[3 * k + 1] = p[NPIX + k];
        im->px[3 * k + 2] = p[2 * NPIX + k];
    }
    return BT_OK;
}

static void cifar_close(bt_dataset *ds) {
    cifar_impl *c = ds->impl;
    if (!c) return;
    for (int f = 0; f < c->nfiles; f++) {
        if (c->fd[f] >= 0) close(c->fd[f]);
        free(c->path[f]);
    }
    free(c->rec);
    free(c);
}

static const bt_dataset_ops cifar_ops = {"cifar-bin", cifar_load, cifar_close};

static const char *cifar10_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                        "dog", "frog", "horse", "ship", "truck"};

/* batches.meta.txt: one class name per line (blank lines ignored). */
static int read_meta(bt_dataset *ds, const char *dir) {
    char path[4200], line[256], *names[256];
    int n = 0, rc;
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return bt_dataset_set_classes_(ds, (char **)cifar10_names, 10);
    while (n < 256 && fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
        if (l && !(names[n++] = bt_strdup_(line))) break;
    }
    fclose(f);
    rc = n ? bt_dataset_set_classes_(ds, names, n)
           : bt_fail(BT_EFORMAT, "%s: no class names", path);
    for (int k = 0; k < n; k++) free(names[k]);
    return rc;
}

int bt_cifar_open_(bt_dataset **out, const char *dir, const char *split) {
    bt_dataset *ds = bt_dataset_new_(&cifar_ops);
    cifar_impl *c = calloc(1, sizeof *c);
    uint8_t *buf = malloc(REC * 1024);
    int rc = ds && c && buf ? BT_OK : bt_fail(BT_ENOMEM, "out of memory");
    if (ds) ds->impl = c;
    int train = !strcmp(split, "train");
    if (!rc) rc = read_meta(ds, dir);
    for (int f = 0; !rc && f < (train ? 5 : 1); f++) {
        c->fd[f] = -1;
        c->path[f] = train ? bt_strfmt_("%s/data_batch_%d.bin", dir, f + 1)
                           : bt_strfmt_("%s/test_batch.bin", dir);
        c->nfiles = f + 1;
        if (!c->path[f]) {
            rc = BT_ENOMEM;
            break;
        }
        const char *p = c->path[f];
        if ((c->fd[f] = open(p, O_RDONLY | O_CLOEXEC)) < 0) {
            rc = bt_fail(BT_EINVAL, "%s: %s (split %s)", p, strerror(errno), split);
            break;
        }
        struct stat st;
        if (fstat(c->fd[f], &st) != 0) {
            rc = bt_fail(BT_EIO, "%s: %s", p, strerror(errno));
            break;
        }
        size_t size = (size_t)st.st_size, nrec = size / REC;
        if (size % REC) {
            rc = bt_fail(BT_EFORMAT, "%s: truncated CIFAR batch: record %zu at byte offset %zu "
                         "is cut short (file size %zu is not a multiple of %d)",
                         p, nrec, nrec * REC, size, REC);
            break;
        }
        if (nrec > 0xffffff) {
            rc = bt_fail(BT_EFORMAT, "%s: too many records", p);
            break;
        }
        for (size_t r0 = 0; !rc && r0 < nrec; r0 += 1024) {
            size_t k = nrec - r0 < 1024 ? nrec - r0 : 1024;
            ssize_t got = pread(c->fd[f], buf, k * REC, (off_t)(r0 * REC));
            if (got != (ssize_t)(k * REC)) {
                rc = bt_fail(BT_EIO, "%s: read failed at byte %zu", p, r0 * REC);
                break;
            }
            for (size_t r = 0; !rc && r < k; r++) {
                int lab = buf[r * REC];
                if (lab >= ds->nclass) {
                    rc = bt_fail(BT_EFORMAT, "%s: label %d at byte offset %zu is not below the "
                                 "%d classes", p, lab, (r0 + r) * REC, ds->nclass);
                    break;
                }
                size_t idx = ds->n_all;
                if ((idx & (idx - 1)) == 0) {
                    uint32_t *v = realloc(c->rec, (idx ? 2 * idx : 1) * sizeof *v);
                    if (!v) {
                        rc = bt_fail(BT_ENOMEM, "out of memory");
                        break;
                    }
                    c->rec = v;
                }
                c->rec[idx] = (uint32_t)f << 24 | (uint32_t)(r0 + r);
                rc = bt_dataset_push_(ds, bt_strfmt_("%s:#%zu", p, r0 + r), lab);
            }
        }
    }
    if (!rc && ds->n_all == 0) rc = bt_fail(BT_EINVAL, "%s: empty CIFAR-10 %s split", dir, split);
    free(buf);
    if (rc) {
        bt_dataset_close(ds);
        if (!ds) free(c);
        return rc;
    }
    *out = ds;
    return BT_OK;
}
