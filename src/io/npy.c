/* NumPy .npy writer (format 1.0, float32, C order), written atomically. */
#include "barlow/npy.h"
#include "barlow/error.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .npy writer stores '<f4' as is");

struct bt_npy_writer {
    FILE *f;
    char *path, *tmp;
    int64_t rows, cols, done;
};

static void discard(bt_npy_writer *w) {
    if (w->f) fclose(w->f);
    remove(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
}

int bt_npy_open(bt_npy_writer **out, const char *path, int64_t rows, int64_t cols) {
    *out = NULL;
    if (rows < 0 || cols < 0) return bt_fail(BT_EINVAL, "%s: bad matrix shape (%" PRId64 ", %" PRId64 ")",
                                             path, rows, cols);
    bt_npy_writer *w = calloc(1, sizeof *w);
    size_t pl = strlen(path) + 1;
    if (w) {
        w->path = malloc(pl);
        w->tmp = malloc(pl + 32);
    }
    if (!w || !w->path || !w->tmp) {
        if (w) { free(w->path); free(w->tmp); free(w); }
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    memcpy(w->path, path, pl);
    snprintf(w->tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    w->rows = rows;
    w->cols = cols;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        int e = errno;
        free(w->path); free(w->tmp); free(w);
        return bt_fail(BT_EIO, "cannot write %s: %s", path, strerror(e));
    }
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRId64
                      ", %" PRId64 "), }", rows, cols);
    /* 10 bytes of preamble + header, padded with spaces, '\n' last: a multiple of 64, as
     * numpy itself writes, so the float data is aligned for memory-mapped reads. */
    size_t total = (10 + (size_t)dl + 1 + 63) / 64 * 64;
    uint16_t hl = (uint16_t)(total - 10);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff),
                             (unsigned char)(hl >> 8)};
    char hdr[192];
    memset(hdr, ' ', sizeof hdr);
    memcpy(hdr, dict, (size_t)dl);
    hdr[hl - 1] = '\n';
    if (fwrite(pre, 1, 10, w->f) != 10 || fwrite(hdr, 1, hl, w->f) != hl) {
        int e = errno;
        discard(w);
        return bt_fail(BT_EIO, "cannot write %s: %s", path, strerror(e));
    }
    *out = w;
    return BT_OK;
}

int bt_npy_append(bt_npy_writer *w, const float *x, int64_t nrows) {
    if (nrows < 0 || nrows > w->rows - w->done)
        return bt_fail(BT_EINVAL, "%s: %" PRId64 " rows more than the %" PRId64 " announced", w->path,
                       w->done + nrows - w->rows, w->rows);
    size_t n = (size_t)(nrows * w->cols);
    if (n && fwrite(x, sizeof(float), n, w->f) != n)
        return bt_fail(BT_EIO, "cannot write %s: %s", w->path, strerror(errno));
    w->done += nrows;
    return BT_OK;
}

int bt_npy_close(bt_npy_writer *w) {
    int rc = BT_OK;
    if (w->done != w->rows)
        rc = bt_fail(BT_EINVAL, "%s: %" PRId64 " of %" PRId64 " rows written", w->path, w->done, w->rows);
    if (!rc && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
        rc = bt_fail(BT_EIO, "cannot write %s: %s", w->path, strerror(errno));
    if (!rc) {
        int c = fclose(w->f);
        w->f = NULL;
        if (c != 0) rc = bt_fail(BT_EIO, "cannot write %s: %s", w->path, strerror(errno));
    }
    if (!rc && rename(w->tmp, w->path) != 0)
        rc = bt_fail(BT_EIO, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
    if (rc) {
        discard(w);
        return rc;
    }
    free(w->path);
    free(w->tmp);
    free(w);
    return BT_OK;
}

void bt_npy_abort(bt_npy_writer *w) {
    if (w) discard(w);
}

int bt_npy_write_f32(const char *path, const float *x, int64_t rows, int64_t cols) {
    bt_npy_writer *w;
    int rc = bt_npy_open(&w, path, rows, cols);
    if (rc) return rc;
    rc = bt_npy_append(w, x, rows);
    if (rc) {
        bt_npy_abort(w);
        return rc;
    }
    return bt_npy_close(w);
}
