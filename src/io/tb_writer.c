/* TensorBoard event-file writer (format in barlow/tb.h). Events are serialized by protobuf-c
 * from proto/tensorboard.proto, framed as TFRecords, and written through stdio; bt_tb_flush
 * pushes them out so a running TensorBoard picks them up at each log line. Images are
 * PNG-encoded in memory with libpng. */
#include "barlow/tb.h"
#include "barlow/error.h"
#include "tensorboard.pb-c.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct bt_tb {
    FILE *fp;
    char *path;
    int failed; /* a write failed: later calls report it rather than write a torn file */
};

/* Images beyond this side are a caller's bug, and would make PNG buffers of gigabytes. */
#define TB_MAX_SIDE 16384

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int mkdir_p(const char *dir) {
    size_t n = strlen(dir);
    if (n == 0) return bt_fail(BT_EINVAL, "tensorboard: empty log directory");
    char *p = malloc(n + 1);
    if (!p) return bt_fail(BT_ENOMEM, "tensorboard %s: out of memory", dir);
    memcpy(p, dir, n + 1);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int rc = bt_fail(BT_EIO, "tensorboard %s: cannot create %s: %s", dir, p,
                                 strerror(errno));
                free(p);
                return rc;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return bt_fail(BT_EIO, "tensorboard %s: not a directory", dir);
    return BT_OK;
}

/* One TFRecord around the packed event. */
static int write_event(bt_tb *tb, Tensorflow__Event *ev) {
    if (!tb) return bt_fail(BT_EINVAL, "tensorboard: NULL writer");
    if (tb->failed) return bt_fail(BT_EIO, "tensorboard %s: an earlier write failed", tb->path);
    ev->wall_time = wall_now();
    size_t n = protobuf_c_message_get_packed_size(&ev->base);
    uint8_t *buf = malloc(12 + n + 4);
    if (!buf) return bt_fail(BT_ENOMEM, "tensorboard %s: out of memory for a %zu-byte event", tb->path, n);
    uint64_t len = n;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len >> (8 * i));
    uint32_t hc = bt_crc32c_masked(buf, 8);
    for (int i = 0; i < 4; i++) buf[8 + i] = (uint8_t)(hc >> (8 * i));
    size_t packed = protobuf_c_message_pack(&ev->base, buf + 12);
    if (packed != n) {
        free(buf);
        return bt_fail(BT_EINVAL, "tensorboard %s: event packed to %zu bytes, expected %zu",
                       tb->path, packed, n);
    }
    uint32_t dc = bt_crc32c_masked(buf + 12, n);
    for (int i = 0; i < 4; i++) buf[12 + n + i] = (uint8_t)(dc >> (8 * i));
    size_t w = fwrite(buf, 1, 12 + n + 4, tb->fp);
    free(buf);
    if (w != 12 + n + 4) {
        tb->failed = 1;
        return bt_fail(BT_EIO, "tensorboard %s: write failed: %s", tb->path, strerror(errno));
    }
    return BT_OK;
}

int bt_tb_open(bt_tb **out, const char *dir) {
    if (!out) return bt_fail(BT_EINVAL, "tensorboard: NULL output pointer");
    *out = NULL;
    if (!dir) return bt_fail(BT_EINVAL, "tensorboard: NULL log directory");
    int rc = mkdir_p(dir);
    if (rc) return rc;
    char host[256];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    bt_tb *tb = calloc(1, sizeof *tb);
    size_t cap = strlen(dir) + strlen(host) + 96;
    char *path = malloc(cap);
    if (!tb || !path) {
        free(tb), free(path);
        return bt_fail(BT_ENOMEM, "tensorboard %s: out of memory", dir);
    }
    long now = (long)time(NULL), pid = (long)getpid();
    /* Two writers opened in one second by one process (a test, a restart) must not share a
     * file: O_EXCL, then a numeric suffix (readers take every name containing "tfevents"). */
    int fd = -1;
    for (int k = 0; k < 1000 && fd < 0; k++) {
        if (k == 0)
            snprintf(path, cap, "%s/events.out.tfevents.%ld.%s.%ld", dir, now, host, pid);
        else
            snprintf(path, cap, "%s/events.out.tfevents.%ld.%s.%ld.%d", dir, now, host, pid, k);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(tb->fp = fdopen(fd, "wb"))) {
        rc = bt_fail(BT_EIO, "tensorboard: cannot create %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        free(path), free(tb);
        return rc;
    }
    tb->path = path;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.what_case = TENSORFLOW__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    rc = write_event(tb, &ev);
    if (!rc) rc = bt_tb_flush(tb);
    if (rc) {
        bt_tb_close(tb);
        return rc;
    }
    *out = tb;
    return BT_OK;
}

const char *bt_tb_path(const bt_tb *tb) { return tb ? tb->path : NULL; }

static int check_tag(const bt_tb *tb, const char *tag) {
    if (!tb) return bt_fail(BT_EINVAL, "tensorboard: NULL writer");
    if (!tag || !*tag) return bt_fail(BT_EINVAL, "tensorboard %s: empty tag", tb->path);
    return BT_OK;
}

static int write_value(bt_tb *tb, long step, Tensorflow__Summary__Value *v) {
    Tensorflow__Summary__Value *vals[1] = {v};
    Tensorflow__Summary sum = TENSORFLOW__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = vals;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.step = step;
    ev.what_case = TENSORFLOW__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return write_event(tb, &ev);
}

int bt_tb_scalar(bt_tb *tb, const char *tag, long step, double value) {
    int rc = check_tag(tb, tag);
    if (rc) return rc;
    Tensorflow__Summary__Value v = TENSORFLOW__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TENSORFLOW__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    /* NaN/inf pass through on purpose: a diverging loss should show in TensorBoard too. */
    v.simple_value = (float)value;
    return write_value(tb, step, &v);
}

/* ---- PNG to memory ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    char msg[160];
    jmp_buf jb;
} png_mem;

static void png_mem_write(png_structp png, png_bytep data, png_size_t n) {
    png_mem *m = png_get_io_ptr(png);
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->n + n) cap *= 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q) png_error(png, "out of memory");
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}
static void png_mem_flush(png_structp png) { (void)png; }
static void png_on_error(png_structp png, png_const_charp msg) {
    png_mem *m = png_get_error_ptr(png);
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    longjmp(m->jb, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* rgb (h, w, 3) -> PNG bytes in m->p (m->n). All state the error path needs lives in *m and
 * *rows, which are not reassigned after setjmp. */
static int png_encode(png_mem *m, png_bytep *rows, const uint8_t *rgb, int w, int h) {
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(rgb + (size_t)y * (size_t)w * 3);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, m, png_on_error, png_on_warning);
    if (!png) return -1;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return -1;
    }
    if (setjmp(m->jb)) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, m, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int bt_tb_image_rgb(bt_tb *tb, const char *tag, long step, const uint8_t *rgb, int w, int h) {
    int rc = check_tag(tb, tag);
    if (rc) return rc;
    if (!rgb || w <= 0 || h <= 0 || w > TB_MAX_SIDE || h > TB_MAX_SIDE)
        return bt_fail(BT_EINVAL, "tensorboard %s: image '%s' of %dx%d (sides 1..%d, pixels non-NULL)",
                       tb->path, tag, w, h, TB_MAX_SIDE);
    png_mem *m = calloc(1, sizeof *m);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    if (!m || !rows) {
        free(m), free(rows);
        return bt_fail(BT_ENOMEM, "tensorboard %s: out of memory for image '%s'", tb->path, tag);
    }
    if (png_encode(m, rows, rgb, w, h) != 0) {
        rc = bt_fail(BT_ENOMEM, "tensorboard %s: PNG encoding of '%s' failed: %s", tb->path, tag,
                     m->msg[0] ? m->msg : "cannot create encoder");
    } else {
        Tensorflow__Summary__Image im = TENSORFLOW__SUMMARY__IMAGE__INIT;
        im.height = h;
        im.width = w;
        im.colorspace = 3;
        im.encoded_image_string.data = m->p;
        im.encoded_image_string.len = m->n;
        Tensorflow__Summary__Value v = TENSORFLOW__SUMMARY__VALUE__INIT;
        v.tag = (char *)tag;
        v.value_case = TENSORFLOW__SUMMARY__VALUE__VALUE_IMAGE;
        v.image = &im;
        rc = write_value(tb, step, &v);
    }
    free(m->p), free(m), free(rows);
    return rc;
}

void bt_tb_bwr(float v, float lo, float hi, uint8_t rgb[3]) {
    if (!isfinite(v)) {
        rgb[0] = rgb[1] = rgb[2] = 0;
        return;
    }
    float t = (v - lo) / (hi - lo);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    /* Below the midpoint the red and green channels rise to white; above it they fall to red. */
    float a = t < 0.5f ? 2 * t : 2 * (1 - t);
    uint8_t c = (uint8_t)lrintf(255 * a);
    if (t < 0.5f) {
        rgb[0] = c, rgb[1] = c, rgb[2] = 255;
    } else {
        rgb[0] = 255, rgb[1] = c, rgb[2] = c;
    }
}

int bt_tb_heatmap(bt_tb *tb, const char *tag, long step, const float *m, int rows, int cols,
                  float lo, float hi, int cell) {
    int rc = check_tag(tb, tag);
    if (rc) return rc;
    if (!m || rows <= 0 || cols <= 0 || cell <= 0 || rows > TB_MAX_SIDE / cell ||
        cols > TB_MAX_SIDE / cell)
        return bt_fail(BT_EINVAL, "tensorboard %s: heatmap '%s' of %dx%d cells of %d px (image sides up to %d)",
                       tb->path, tag, rows, cols, cell, TB_MAX_SIDE);
    if (!(lo < hi) || !isfinite(lo) || !isfinite(hi))
        return bt_fail(BT_EINVAL, "tensorboard %s: heatmap '%s' range [%g, %g] (need finite lo < hi)",
                       tb->path, tag, (double)lo, (double)hi);
    int w = cols * cell, h = rows * cell;
    uint8_t *img = malloc((size_t)w * (size_t)h * 3); /* (h, w, 3) */
    if (!img) return bt_fail(BT_ENOMEM, "tensorboard %s: out of memory for heatmap '%s'", tb->path, tag);
    for (int r = 0; r < rows; r++) {
        uint8_t *line = img + (size_t)r * cell * w * 3; /* first pixel row of this cell row */
        for (int c = 0; c < cols; c++) {
            uint8_t px[3];
            bt_tb_bwr(m[(size_t)r * cols + c], lo, hi, px);
            for (int k = 0; k < cell; k++) memcpy(line + ((size_t)c * cell + k) * 3, px, 3);
        }
        for (int k = 1; k < cell; k++) memcpy(line + (size_t)k * w * 3, line, (size_t)w * 3);
    }
    rc = bt_tb_image_rgb(tb, tag, step, img, w, h);
    free(img);
    return rc;
}

int bt_tb_flush(bt_tb *tb) {
    if (!tb) return bt_fail(BT_EINVAL, "tensorboard: NULL writer");
    if (tb->failed) return bt_fail(BT_EIO, "tensorboard %s: an earlier write failed", tb->path);
    if (fflush(tb->fp) != 0 || ferror(tb->fp)) {
        tb->failed = 1;
        return bt_fail(BT_EIO, "tensorboard %s: write failed: %s", tb->path, strerror(errno));
    }
    return BT_OK;
}

void bt_tb_close(bt_tb *tb) {
    if (!tb) return;
    if (tb->fp) fclose(tb->fp);
    free(tb->path);
    free(tb);
}
