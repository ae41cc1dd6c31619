/* Tests for the TensorBoard event writer (src/io/tb_writer.c, src/io/crc32c.c): files written
 * here are read back by the tensorboard package's own EventAccumulator and record reader
 * (tests/py/tb_read.py), which must see the same tags, steps, float32 values and images, and
 * must reject a file with one corrupted byte. */
#include "barlow/error.h"
#include "barlow/tb.h"
#include "testutil.h"
#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NSTEP 6
#define IMG_W 7
#define IMG_H 5
#define HM_R 5
#define HM_C 9
#define HM_CELL 3

static double loss_at(int i) { return exp(-0.3 * i) + 1.0 / 3.0; }
static double lr_at(int i) { return 0.2 * i / 7.0; }
static long step_at(int i) { return 10L * i; }
static uint8_t pix_at(int x, int y, int c) { return (uint8_t)((x * 37 + y * 11 + c * 89) & 255); }

/* The heatmap matrix: anchors (lo, hi, midpoint, beyond the range, NaN) then a ramp. */
static void hm_fill(float *m) { /* (HM_R, HM_C) */
    static const float anchors[] = {-1.0f, 1.0f, 0.0f, 3.0f, -7.0f, NAN, 0.5f, -0.5f};
    for (int i = 0; i < HM_R * HM_C; i++)
        m[i] = i < 8 ? anchors[i] : -1.2f + 2.4f * (float)(i - 8) / (HM_R * HM_C - 9);
}

/* Independent expectation of matplotlib's "bwr" on [-1, 1] (double precision). */
static void bwr_expect(float v, int rgb[3]) {
    if (isnan(v)) {
        rgb[0] = rgb[1] = rgb[2] = 0;
        return;
    }
    double t = ((double)v + 1.0) / 2.0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    if (t <= 0.5) {
        rgb[0] = rgb[1] = (int)lround(510 * t), rgb[2] = 255;
    } else {
        rgb[0] = 255, rgb[1] = rgb[2] = (int)lround(510 * (1 - t));
    }
}

/* Runs tb_read.py with `args` and parses its JSON (NULL, with a failed CHECK, on error). */
static cJSON *run_reader(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tests/py/tb_read.py %s", tu_python(), args);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "popen %s", cmd);
    if (!p) return NULL;
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    for (size_t r; (r = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += r;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    CHECK(st == 0, "%s exited with status %d (is the tensorboard package installed? "
                   "tools/install-test-deps.sh installs it)", cmd, st);
    cJSON *j = st == 0 ? cJSON_Parse(buf) : NULL;
    CHECK(st != 0 || j != NULL, "%s printed no JSON: %.200s", cmd, buf);
    free(buf);
    return j;
}

/* The single event file in dir (its path into out); returns how many there are. */
static int event_files(const char *dir, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, "tfevents")) {
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

static void test_crc32c(void) {
    /* RFC 3720 (iSCSI) appendix B.4 vectors, plus the usual check string. */
    uint8_t z[32] = {0}, f[32], inc[32], dec[32];
    for (int i = 0; i < 32; i++) f[i] = 0xff, inc[i] = (uint8_t)i, dec[i] = (uint8_t)(31 - i);
    CHECK(bt_crc32c("123456789", 9) == 0xe3069283u, "check string: %08x", bt_crc32c("123456789", 9));
    CHECK(bt_crc32c(z, 32) == 0x8a9136aau, "zeros: %08x", bt_crc32c(z, 32));
    CHECK(bt_crc32c(f, 32) == 0x62a8ab43u, "ones: %08x", bt_crc32c(f, 32));
    CHECK(bt_crc32c(inc, 32) == 0x46dd794eu, "incrementing: %08x", bt_crc32c(inc, 32));
    CHECK(bt_crc32c(dec, 32) == 0x113fdb5cu, "decrementing: %08x", bt_crc32c(dec, 32));
    CHECK(bt_crc32c("", 0) == 0, "empty: %08x", bt_crc32c("", 0));
    uint32_t c = bt_crc32c("123456789", 9);
    CHECK(bt_crc32c_masked("123456789", 9) == ((c >> 15) | (c << 17)) + 0xa282ead8u, "masked");
}

static char g_file[1024]; /* the event file written by test_roundtrip, for test_corrupt */

static double wall_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_roundtrip(void) {
    if (tu_skip_without("tensorboard")) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/logs/run1", tu_tmpdir()); /* parents do not exist yet */
    /* the writer's clock (CLOCK_REALTIME): time() reads the coarse clock, a tick behind, so
     * an event written 1 ms into a new second could fall past time()'s t1 + 1 */
    double t0 = wall_now_s();
    bt_tb *tb = NULL;
    CHECK(bt_tb_open(&tb, dir) == 0, "open: %s", bt_error());
    if (!tb) return;
    char host[256] = "", pidstr[32];
    gethostname(host, sizeof host);
    snprintf(pidstr, sizeof pidstr, ".%ld", (long)getpid());
    const char *path = bt_tb_path(tb);
    CHECK(strstr(path, "/events.out.tfevents.") && strstr(path, host) && strstr(path, pidstr),
          "file name %s", path);
    snprintf(g_file, sizeof g_file, "%s", path);

    /* A second writer in the same second gets its own file. */
    bt_tb *tb2 = NULL;
    char other[600];
    snprintf(other, sizeof other, "%s/logs/run2", tu_tmpdir());
    CHECK(bt_tb_open(&tb2, other) == 0, "open 2: %s", bt_error());
    bt_tb *tb3 = NULL;
    CHECK(bt_tb_open(&tb3, other) == 0, "open 3: %s", bt_error());
    CHECK(tb2 && tb3 && strcmp(bt_tb_path(tb2), bt_tb_path(tb3)) != 0, "two writers share a file");
    bt_tb_close(tb2);
    bt_tb_close(tb3);

    for (int i = 0; i < NSTEP; i++) {
        CHECK(bt_tb_scalar(tb, "loss", step_at(i), loss_at(i)) == 0, "%s", bt_error());
        CHECK(bt_tb_scalar(tb, "lr", step_at(i), lr_at(i)) == 0, "%s", bt_error());
        if (i == 2) CHECK(bt_tb_flush(tb) == 0, "%s", bt_error());
    }
    uint8_t img[IMG_H * IMG_W * 3]; /* (h, w, 3) */
    for (int y = 0; y < IMG_H; y++)
        for (int x = 0; x < IMG_W; x++)
            for (int c = 0; c < 3; c++) img[(y * IMG_W + x) * 3 + c] = pix_at(x, y, c);
    CHECK(bt_tb_image_rgb(tb, "pixels", 30, img, IMG_W, IMG_H) == 0, "%s", bt_error());
    float m[HM_R * HM_C]; /* (HM_R, HM_C) */
    hm_fill(m);
    CHECK(bt_tb_heatmap(tb, "corr", 40, m, HM_R, HM_C, -1.0f, 1.0f, HM_CELL) == 0, "%s", bt_error());
    CHECK(bt_tb_flush(tb) == 0, "%s", bt_error());
    double t1 = wall_now_s();
    /* Read while the writer is still open: flush alone must make the events visible. */
    char dq[700];
    snprintf(dq, sizeof dq, "'%s'", dir);
    cJSON *j = run_reader(dq);
    bt_tb_close(tb);
    char found[1024] = "";
    CHECK(event_files(dir, found, sizeof found) == 1 && !strcmp(found, g_file),
          "%s: expected exactly the file %s", dir, g_file);
    if (!j) return;

    cJSON *fv = cJSON_GetObjectItem(j, "file_version");
    CHECK(cJSON_IsNumber(fv) && fv->valuedouble == 2.0, "file_version not brain.Event:2");
    cJSON *tags = cJSON_GetObjectItem(j, "tags");
    char *ts = cJSON_PrintUnformatted(cJSON_GetObjectItem(tags, "scalars"));
    char *ti = cJSON_PrintUnformatted(cJSON_GetObjectItem(tags, "images"));
    CHECK(ts && !strcmp(ts, "[\"loss\",\"lr\"]"), "scalar tags %s", ts ? ts : "(none)");
    CHECK(ti && !strcmp(ti, "[\"corr\",\"pixels\"]"), "image tags %s", ti ? ti : "(none)");
    free(ts), free(ti);

    cJSON *sc = cJSON_GetObjectItem(j, "scalars");
    for (int k = 0; k < 2; k++) {
        const char *tag = k ? "lr" : "loss";
        cJSON *ev = cJSON_GetObjectItem(sc, tag);
        CHECK(cJSON_GetArraySize(ev) == NSTEP, "%s: %d events", tag, cJSON_GetArraySize(ev));
        for (int i = 0; i < NSTEP && i < cJSON_GetArraySize(ev); i++) {
            cJSON *e = cJSON_GetArrayItem(ev, i);
            double step = cJSON_GetObjectItem(e, "step")->valuedouble;
            double v = cJSON_GetObjectItem(e, "value")->valuedouble;
            double wt = cJSON_GetObjectItem(e, "wall_time")->valuedouble;
            /* TensorBoard keeps float32; Python prints the shortest repr, which round-trips. */
            double want = (double)(float)(k ? lr_at(i) : loss_at(i));
            CHECK(step == (double)step_at(i), "%s[%d]: step %g", tag, i, step);
            CHECK(v == want, "%s[%d]: value %.17g, want %.17g", tag, i, v, want);
            CHECK(wt >= t0 - 1 && wt <= t1 + 1, "%s[%d]: wall_time %f not in [%f, %f]", tag, i, wt, t0, t1);
        }
    }

    cJSON *ims = cJSON_GetObjectItem(j, "images");
    cJSON *px = cJSON_GetArrayItem(cJSON_GetObjectItem(ims, "pixels"), 0);
    cJSON *hm = cJSON_GetArrayItem(cJSON_GetObjectItem(ims, "corr"), 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(ims, "pixels")) == 1, "pixels: not one image");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(ims, "corr")) == 1, "corr: not one image");
    if (px) {
        CHECK(cJSON_GetObjectItem(px, "step")->valuedouble == 30, "pixels step");
        CHECK(cJSON_GetObjectItem(px, "width")->valueint == IMG_W &&
                  cJSON_GetObjectItem(px, "height")->valueint == IMG_H, "pixels: summary size");
        cJSON *ps = cJSON_GetObjectItem(px, "png_size");
        CHECK(cJSON_GetArrayItem(ps, 0)->valueint == IMG_W && cJSON_GetArrayItem(ps, 1)->valueint == IMG_H,
              "pixels: PNG size");
        CHECK(!strcmp(cJSON_GetObjectItem(px, "mode")->valuestring, "RGB"), "pixels: PNG mode");
        cJSON *rgb = cJSON_GetObjectItem(px, "rgb");
        CHECK(cJSON_GetArraySize(rgb) == IMG_W * IMG_H * 3, "pixels: %d bytes", cJSON_GetArraySize(rgb));
        int bad = 0;
        for (int i = 0; i < cJSON_GetArraySize(rgb) && i < IMG_W * IMG_H * 3; i++)
            bad += cJSON_GetArrayItem(rgb, i)->valueint != img[i];
        CHECK(bad == 0, "pixels: %d bytes differ after the PNG round trip", bad);
    }
    if (hm) {
        int W = HM_C * HM_CELL, H = HM_R * HM_CELL;
        CHECK(cJSON_GetObjectItem(hm, "step")->valuedouble == 40, "corr step");
        CHECK(cJSON_GetObjectItem(hm, "width")->valueint == W && cJSON_GetObjectItem(hm, "height")->valueint == H,
              "corr: summary size %dx%d", cJSON_GetObjectItem(hm, "width")->valueint,
              cJSON_GetObjectItem(hm, "height")->valueint);
        cJSON *ps = cJSON_GetObjectItem(hm, "png_size");
        CHECK(cJSON_GetArrayItem(ps, 0)->valueint == W && cJSON_GetArrayItem(ps, 1)->valueint == H,
              "corr: PNG size");
        cJSON *rgb = cJSON_GetObjectItem(hm, "rgb");
        CHECK(cJSON_GetArraySize(rgb) == W * H * 3, "corr: %d bytes", cJSON_GetArraySize(rgb));
        /* Anchors exact; the ramp within 1 level (float vs double rounding at .5). */
        int worst = 0, anchor_bad = 0;
        for (int y = 0; y < H && cJSON_GetArraySize(rgb) == W * H * 3; y++)
            for (int x = 0; x < W; x++) {
                int cellidx = (y / HM_CELL) * HM_C + x / HM_CELL, e[3];
                bwr_expect(m[cellidx], e);
                for (int c = 0; c < 3; c++) {
                    int d = abs(cJSON_GetArrayItem(rgb, (y * W + x) * 3 + c)->valueint - e[c]);
                    if (d > worst) worst = d;
                    if (cellidx < 8 && d) anchor_bad++;
                }
            }
        CHECK(worst <= 1, "corr: a pixel is %d levels off the bwr scale", worst);
        CHECK(anchor_bad == 0, "corr: %d anchor-cell bytes off (lo blue, hi red, 0 white, NaN black)", anchor_bad);
    }
    cJSON_Delete(j);
}

static int copy_file(const char *from, const char *to, long flip_at) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) {
        if (a) fclose(a);
        if (b) fclose(b);
        return -1;
    }
    long i = 0;
    for (int ch; (ch = fgetc(a)) != EOF; i++) fputc(i == flip_at ? ch ^ 0x20 : ch, b);
    fclose(a);
    return fclose(b);
}

/* Offset of record k's length field (k = 0 is the file_version record). */
static long record_offset(const char *path, int k) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long off = 0;
    for (int i = 0; i < k; i++) {
        uint8_t h[8];
        if (fseek(f, off, SEEK_SET) || fread(h, 1, 8, f) != 8) {
            fclose(f);
            return -1;
        }
        uint64_t len = 0;
        for (int b = 0; b < 8; b++) len |= (uint64_t)h[b] << (8 * b);
        off += 12 + (long)len + 4;
    }
    fclose(f);
    return off;
}

static void test_corrupt(void) {
    if (!g_file[0]) {
        tu_skip("test_roundtrip wrote no event file to corrupt");
        return;
    }
    CHECK(g_file[0], "no event file from test_roundtrip");
    if (!g_file[0]) return;
    const int nrec = 1 + 2 * NSTEP + 2;
    char args[1200], bad[700];
    snprintf(args, sizeof args, "--verify '%s'", g_file);
    cJSON *j = run_reader(args);
    if (j) {
        CHECK(cJSON_GetObjectItem(j, "records")->valueint == nrec && cJSON_IsNull(cJSON_GetObjectItem(j, "error")),
              "clean file: %d records (want %d), error %s", cJSON_GetObjectItem(j, "records")->valueint, nrec,
              cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "error")));
        cJSON_Delete(j);
    }
    /* One byte inside record 5's event data, then one byte of record 7's length. */
    snprintf(bad, sizeof bad, "%s/corrupt/events.out.tfevents.0.bad", tu_tmpdir());
    char bdir[700];
    snprintf(bdir, sizeof bdir, "%s/corrupt", tu_tmpdir());
    mkdir(bdir, 0777);
    struct { int rec; long at; const char *key; } cases[] = {
        {5, 12 + 3, "crc"}, {7, 1, "header crc"}};
    for (int c = 0; c < 2; c++) {
        long off = record_offset(g_file, cases[c].rec);
        CHECK(off > 0 && copy_file(g_file, bad, off + cases[c].at) == 0, "copying %s", g_file);
        snprintf(args, sizeof args, "--verify '%s'", bad);
        j = run_reader(args);
        if (!j) continue;
        cJSON *err = cJSON_GetObjectItem(j, "error");
        int n = cJSON_GetObjectItem(j, "records")->valueint;
        CHECK(cJSON_IsString(err) && strstr(err->valuestring, cases[c].key), "case %d: corruption not detected", c);
        CHECK(n == cases[c].rec, "case %d: reader stopped after %d records, want %d", c, n, cases[c].rec);
        cJSON_Delete(j);
    }
}

static void expect_fail(int rc, int code, const char *key, const char *what) {
    CHECK(rc == code, "%s: rc %d, want %d (%s)", what, rc, code, bt_error());
    CHECK(strstr(bt_error(), key) != NULL, "%s: message '%s' lacks '%s'", what, bt_error(), key);
    CHECK(strchr(bt_error(), '\n') == NULL, "%s: message spans lines", what);
}

static void test_errors(void) {
    char file[600], sub[700], dir[600];
    snprintf(file, sizeof file, "%s/plainfile", tu_tmpdir());
    FILE *f = fopen(file, "w");
    CHECK(f && fclose(f) == 0, "creating %s", file);
    snprintf(sub, sizeof sub, "%s/logs", file);
    bt_tb *tb = (bt_tb *)1;
    expect_fail(bt_tb_open(&tb, sub), BT_EIO, file, "directory under a file");
    CHECK(tb == NULL, "handle not NULL after a failed open");

    snprintf(dir, sizeof dir, "%s/errs", tu_tmpdir());
    CHECK(bt_tb_open(&tb, dir) == 0, "%s", bt_error());
    if (!tb) return;
    float m[4] = {0};
    uint8_t px[3] = {0};
    expect_fail(bt_tb_scalar(tb, "", 0, 1.0), BT_EINVAL, "tag", "empty tag");
    expect_fail(bt_tb_image_rgb(tb, "im", 0, px, 0, 1), BT_EINVAL, "im", "zero width");
    expect_fail(bt_tb_image_rgb(tb, "im", 0, NULL, 1, 1), BT_EINVAL, "im", "NULL pixels");
    expect_fail(bt_tb_heatmap(tb, "hm", 0, m, 2, 2, 1.0f, 1.0f, 2), BT_EINVAL, "range", "lo == hi");
    expect_fail(bt_tb_heatmap(tb, "hm", 0, m, 2, 2, -1.0f, 1.0f, 0), BT_EINVAL, "hm", "cell 0");
    expect_fail(bt_tb_heatmap(tb, "hm", 0, m, 100000, 2, -1.0f, 1.0f, 1), BT_EINVAL, "hm", "huge heatmap");

    /* A full disk, simulated by a file-size limit: the error names the file and sticks. */
    enum { S = 160 };
    uint8_t *noise = malloc(S * S * 3); /* (S, S, 3); incompressible, so the PNG is ~75 KB */
    tu_rng r = {7};
    for (int i = 0; i < S * S * 3; i++) noise[i] = (uint8_t)tu_next(&r);
    struct stat sb;
    stat(bt_tb_path(tb), &sb);
    struct rlimit rl0, rl;
    getrlimit(RLIMIT_FSIZE, &rl0);
    rl = rl0;
    rl.rlim_cur = (rlim_t)sb.st_size + 8192;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit");
    int rc = bt_tb_image_rgb(tb, "noise", 1, noise, S, S);
    if (rc == 0) rc = bt_tb_flush(tb);
    int rc2 = bt_tb_scalar(tb, "loss", 2, 1.0);
    if (rc2 == 0) rc2 = bt_tb_flush(tb);
    setrlimit(RLIMIT_FSIZE, &rl0);
    signal(SIGXFSZ, prev);
    expect_fail(rc, BT_EIO, bt_tb_path(tb), "write past the size limit");
    expect_fail(rc2, BT_EIO, "earlier write failed", "write after a failure");
    expect_fail(bt_tb_flush(tb), BT_EIO, bt_tb_path(tb), "flush after a failure");
    bt_tb_close(tb);
    free(noise);
    bt_tb_close(NULL);
}

int main(void) {
    TEST_RUN(test_crc32c);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_corrupt);
    TEST_RUN(test_errors);
    return tu_finish();
}
