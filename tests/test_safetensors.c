/* Tests for src/io/safetensors.c: round trip, interop with the reference Python package
 * (tests/py/st_roundtrip.py), rejection of corrupted files, atomic saving, XXH64. */
#include "barlow/error.h"
#include "barlow/safetensors.h"
#include "testutil.h"
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void pth(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", tu_tmpdir(), name); }

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = fwrite(p, 1, n, fp);
    return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    *n = fread(p, 1, (size_t)sz, fp);
    fclose(fp);
    return p;
}

/* A file with the given header text (its real length as prefix) followed by `ndata` bytes. */
static void write_crafted(const char *path, const char *hdr, size_t ndata) {
    size_t h = strlen(hdr), n = 8 + h + ndata;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, hdr, h);
    for (size_t i = 0; i < ndata; i++) b[8 + h + i] = (unsigned char)(i * 13 + 1);
    CHECK(write_bytes(path, b, n) == 0, "writing %s", path);
    free(b);
}

/* Opening `path` must fail with BT_EFORMAT, a one-line message naming the file and `key`. */
static void expect_format_file(const char *path, const char *key) {
    bt_st_file *f = (bt_st_file *)1;
    bt_clear_error();
    int rc = bt_st_open(&f, path);
    const char *m = bt_error();
    CHECK(rc == BT_EFORMAT, "%s: rc %d, message '%s'", path, rc, m);
    CHECK(f == NULL, "%s: handle not NULL on failure", path);
    CHECK(strstr(m, path) != NULL, "message '%s' does not name the file", m);
    CHECK(strstr(m, key) != NULL, "message '%s' lacks '%s'", m, key);
    CHECK(strchr(m, '\n') == NULL, "message '%s' spans lines", m);
    if (rc == 0) bt_st_close(f);
}

static void expect_format(const char *hdr, size_t ndata, const char *key) {
    static int k;
    char p[512], name[64];
    snprintf(name, sizeof name, "bad%03d.safetensors", k++);
    pth(p, name);
    write_crafted(p, hdr, ndata);
    expect_format_file(p, key);
}

static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static float pattern(size_t i) { return (float)((long)((i * 37) % 101) - 50) / 16.0f; }

/* The tensor set tests/py/st_roundtrip.py expects in "our" file (same formulas there). */
typedef struct {
    float w[48];     /* (4,3,2,2) */
    double acc[7];   /* (7) */
    int64_t step;    /* () */
    int64_t ids[6];  /* (2,3) */
    float empty[1];  /* (0,5) */
    uint8_t mask[5]; /* (5) */
    uint16_t half[4];/* (4) F16 bits */
} std_set;

static const int64_t sh_w[] = {4, 3, 2, 2}, sh_acc[] = {7}, sh_ids[] = {2, 3}, sh_empty[] = {0, 5},
                     sh_mask[] = {5}, sh_half[] = {4};

static bt_st_writer *std_writer(std_set *s) {
    for (size_t i = 0; i < 48; i++) s->w[i] = pattern(i);
    for (int i = 0; i < 7; i++) s->acc[i] = i / 10.0 - 0.3;
    s->step = 1234567890123LL;
    for (int i = 0; i < 6; i++) s->ids[i] = (int64_t)i * 1000000007LL - 3000000000LL;
    for (int i = 0; i < 5; i++) s->mask[i] = (uint8_t)(i * 50);
    const uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
    memcpy(s->half, h, sizeof h);
    bt_st_writer *w = bt_st_writer_new();
    int rc = 0;
    rc |= bt_st_writer_meta(w, "format", "barlow");
    rc |= bt_st_writer_meta(w, "step", "41");
    rc |= bt_st_writer_add(w, "conv1.weight", BT_ST_F32, 4, sh_w, s->w);
    rc |= bt_st_writer_add(w, "acc", BT_ST_F64, 1, sh_acc, s->acc);
    rc |= bt_st_writer_add(w, "step", BT_ST_I64, 0, NULL, &s->step);
    rc |= bt_st_writer_add(w, "ids", BT_ST_I64, 2, sh_ids, s->ids);
    rc |= bt_st_writer_add(w, "empty", BT_ST_F32, 2, sh_empty, s->empty);
    rc |= bt_st_writer_add(w, "mask", BT_ST_U8, 1, sh_mask, s->mask);
    rc |= bt_st_writer_add(w, "half", BT_ST_F16, 1, sh_half, s->half);
    rc |= bt_st_writer_meta(w, "step", "42"); /* replaces */
    rc |= bt_st_writer_meta(w, "utf8", "h\xc3\xa9llo \xe2\x9c\x93");
    CHECK(rc == 0, "building writer: %s", bt_error());
    return w;
}

static void test_dtypes(void) {
    static const char *names[] = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                  "BF16", "I32", "U32", "F32", "I64", "U64", "F64"};
    static const size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    for (int i = 0; i < BT_ST_NDTYPES; i++) {
        CHECK(bt_st_dtype(names[i]) == i, "%s -> %d", names[i], bt_st_dtype(names[i]));
        CHECK(!strcmp(bt_st_dtype_name(i), names[i]), "%d -> %s", i, bt_st_dtype_name(i));
        CHECK(bt_st_dtype_size(i) == sizes[i], "%s size %zu", names[i], bt_st_dtype_size(i));
    }
    CHECK(bt_st_dtype("f32") == -1 && bt_st_dtype("") == -1, "case-sensitive, unknown -> -1");
    CHECK(bt_st_dtype_name(-1) == NULL && bt_st_dtype_name(BT_ST_NDTYPES) == NULL, "range");
}

static void test_roundtrip(void) {
    char p[512];
    pth(p, "rt.safetensors");
    std_set s;
    bt_st_writer *w = std_writer(&s);
    int rc = bt_st_writer_save(w, p);
    CHECK(rc == 0, "save: %s", bt_error());
    bt_st_writer_free(w);

    /* Layout on disk: padded header, __metadata__ first, data in the order added. */
    size_t n = 0;
    unsigned char *raw = read_bytes(p, &n);
    uint64_t L = 0;
    for (int i = 7; i >= 0; i--) L = (L << 8) | raw[i];
    size_t data = 48 * 4 + 7 * 8 + 8 + 6 * 8 + 0 + 5 + 4 * 2;
    CHECK((8 + L) % 8 == 0, "header length %llu not padded", (unsigned long long)L);
    CHECK(n == 8 + L + data, "file %zu bytes, expected %llu", n, (unsigned long long)(8 + L + data));
    const char *head = "{\"__metadata__\":{\"format\":\"barlow\",\"step\":\"42\",\"utf8\":";
    CHECK(!memcmp(raw + 8, head, strlen(head)),
          "header starts %.60s", raw + 8);
    CHECK(raw[8 + L - 1] == '}' || raw[8 + L - 1] == ' ', "header tail");
    CHECK(!memcmp(raw + 8 + L, s.w, sizeof s.w), "first tensor added is first in the buffer");
    CHECK(!memcmp(raw + 8 + L + 192, s.acc, sizeof s.acc), "second tensor follows");
    CHECK(strstr((char *)raw + 8, "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4,3,2,2],"
                                  "\"data_offsets\":[0,192]}") != NULL, "conv1 entry");
    free(raw);

    bt_st_file *f = NULL;
    rc = bt_st_open(&f, p);
    CHECK(rc == 0 && f, "open: %s", bt_error());
    if (!f) return;
    CHECK(bt_st_count(f) == 7, "count %d", bt_st_count(f));
    static const char *order[] = {"conv1.weight", "acc", "step", "ids", "empty", "mask", "half"};
    for (int i = 0; i < 7 && i < bt_st_count(f); i++)
        CHECK(!strcmp(bt_st_at(f, i)->name, order[i]), "at(%d) = %s", i, bt_st_at(f, i)->name);
    CHECK(bt_st_at(f, 7) == NULL && bt_st_at(f, -1) == NULL, "at out of range");
    struct { const char *name; int dtype, ndim; const int64_t *shape; const void *data; size_t nbytes; } want[] = {
        {"conv1.weight", BT_ST_F32, 4, sh_w, s.w, sizeof s.w},
        {"acc", BT_ST_F64, 1, sh_acc, s.acc, sizeof s.acc},
        {"step", BT_ST_I64, 0, NULL, &s.step, 8},
        {"ids", BT_ST_I64, 2, sh_ids, s.ids, sizeof s.ids},
        {"empty", BT_ST_F32, 2, sh_empty, s.empty, 0},
        {"mask", BT_ST_U8, 1, sh_mask, s.mask, 5},
        {"half", BT_ST_F16, 1, sh_half, s.half, 8},
    };
    for (int k = 0; k < 7; k++) {
        const bt_st_tensor *t = bt_st_find(f, want[k].name);
        CHECK(t != NULL, "find %s", want[k].name);
        if (!t) continue;
        CHECK(t->dtype == want[k].dtype && t->ndim == want[k].ndim, "%s dtype %d ndim %d",
              t->name, t->dtype, t->ndim);
        for (int d = 0; d < want[k].ndim && d < t->ndim; d++)
            CHECK(t->shape[d] == want[k].shape[d], "%s dim %d", t->name, d);
        CHECK(t->nbytes == want[k].nbytes, "%s nbytes %zu", t->name, t->nbytes);
        CHECK(t->nbytes == 0 || !memcmp(t->data, want[k].data, t->nbytes), "%s bytes differ", t->name);
    }
    CHECK(bt_st_find(f, "nope") == NULL && bt_st_find(f, "") == NULL, "find missing");
    CHECK(bt_st_meta(f, "format") && !strcmp(bt_st_meta(f, "format"), "barlow"), "meta format");
    CHECK(bt_st_meta(f, "step") && !strcmp(bt_st_meta(f, "step"), "42"), "meta step replaced");
    CHECK(bt_st_meta(f, "utf8") && !strcmp(bt_st_meta(f, "utf8"), "h\xc3\xa9llo \xe2\x9c\x93"), "utf8");
    CHECK(bt_st_meta(f, "missing") == NULL && bt_st_meta_count(f) == 3, "meta count %d",
          bt_st_meta_count(f));
    const char *v = NULL;
    CHECK(!strcmp(bt_st_meta_at(f, 0, &v), "format") && !strcmp(v, "barlow"), "meta_at");

    /* Conversions to float32, against values computed here. */
    float out[48];
    CHECK(bt_st_read_f32(f, "conv1.weight", out, 4, sh_w) == 0, "%s", bt_error());
    CHECK(!memcmp(out, s.w, sizeof s.w), "F32 read");
    CHECK(bt_st_read_f32(f, "acc", out, 1, sh_acc) == 0, "%s", bt_error());
    for (int i = 0; i < 7; i++) CHECK(out[i] == (float)(i / 10.0 - 0.3), "F64->F32 %d: %g", i, out[i]);
    CHECK(bt_st_read_f32(f, "ids", out, 2, sh_ids) == 0, "%s", bt_error());
    for (int i = 0; i < 6; i++) CHECK(out[i] == (float)s.ids[i], "I64->F32 %d: %g", i, out[i]);
    CHECK(bt_st_read_f32(f, "half", out, 1, sh_half) == 0, "%s", bt_error());
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1, -24) && out[3] == 65504.0f,
          "F16->F32 %g %g %g %g", out[0], out[1], out[2], out[3]);
    CHECK(bt_st_read_f32(f, "mask", out, 1, sh_mask) == 0 && out[4] == 200.0f, "U8->F32");
    CHECK(bt_st_read_f32(f, "step", out, 0, NULL) == 0 && out[0] == (float)1234567890123LL, "scalar");
    CHECK(bt_st_read_f32(f, "empty", out, 2, sh_empty) == 0, "empty: %s", bt_error());
    int64_t step = 0;
    CHECK(bt_st_read_raw(f, "step", BT_ST_I64, &step, 0, NULL) == 0 && step == 1234567890123LL, "raw");

    /* Shape, dtype and name mismatches name what was expected and found. */
    const int64_t sh71[] = {7, 1};
    rc = bt_st_read_f32(f, "acc", out, 2, sh71);
    CHECK(rc == BT_EFORMAT && strstr(bt_error(), "'acc'") && strstr(bt_error(), "[7,1]") &&
          strstr(bt_error(), "found [7]") && strstr(bt_error(), p), "shape mismatch: %s", bt_error());
    rc = bt_st_read_f32(f, "nope", out, 1, sh_acc);
    CHECK(rc == BT_EFORMAT && strstr(bt_error(), "missing tensor 'nope'"), "missing: %s", bt_error());
    rc = bt_st_read_raw(f, "acc", BT_ST_F32, out, 1, sh_acc);
    CHECK(rc == BT_EFORMAT && strstr(bt_error(), "expected dtype F32 but found F64"), "%s", bt_error());
    bt_st_close(f);
}

static void test_writer_errors(void) {
    bt_st_writer *w = bt_st_writer_new();
    float x[4] = {0};
    const int64_t s4[] = {4}, sneg[] = {-1}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int64_t shuge[] = {INT64_C(1) << 40, INT64_C(1) << 40};
    CHECK(bt_st_writer_add(w, "a", BT_ST_F32, 1, s4, x) == 0, "%s", bt_error());
    CHECK(bt_st_writer_add(w, "a", BT_ST_F32, 1, s4, x) == BT_EINVAL, "duplicate");
    CHECK(strstr(bt_error(), "duplicate tensor 'a'"), "%s", bt_error());
    CHECK(bt_st_writer_add(w, "__metadata__", BT_ST_F32, 1, s4, x) == BT_EINVAL, "reserved name");
    CHECK(bt_st_writer_add(w, "", BT_ST_F32, 1, s4, x) == BT_EINVAL, "empty name");
    CHECK(bt_st_writer_add(w, "bad\xff", BT_ST_F32, 1, s4, x) == BT_EINVAL, "non-UTF-8 name");
    CHECK(bt_st_writer_add(w, "b", BT_ST_NDTYPES, 1, s4, x) == BT_EINVAL, "bad dtype");
    CHECK(bt_st_writer_add(w, "b", BT_ST_F32, 1, sneg, x) == BT_EINVAL, "negative dim");
    CHECK(bt_st_writer_add(w, "b", BT_ST_F32, 9, s9, x) == BT_EINVAL, "9 dims");
    CHECK(bt_st_writer_add(w, "b", BT_ST_F32, 1, s4, NULL) == BT_EINVAL, "NULL data");
    CHECK(bt_st_writer_add(w, "b", BT_ST_F64, 2, shuge, x) == BT_EINVAL, "overflow");
    CHECK(bt_st_writer_meta(w, "k", "\xc0\x80") == BT_EINVAL, "overlong UTF-8 value");
    bt_st_writer_free(w);
}

static void test_python_interop(void) {
    if (tu_skip_without("safetensors")) return;
    char ours[512], theirs[512], cmd[2048];
    pth(ours, "ours.safetensors");
    pth(theirs, "theirs.safetensors");
    std_set s;
    bt_st_writer *w = std_writer(&s);
    CHECK(bt_st_writer_save(w, ours) == 0, "save: %s", bt_error());
    bt_st_writer_free(w);
    snprintf(cmd, sizeof cmd, "%s tests/py/st_roundtrip.py '%s' '%s' 2>&1", tu_python(), ours, theirs);
    FILE *pp = popen(cmd, "r");
    char out[4096] = {0};
    size_t got = pp ? fread(out, 1, sizeof out - 1, pp) : 0;
    out[got] = 0;
    int st = pp ? pclose(pp) : -1;
    CHECK(st == 0 && strstr(out, "ok"), "python (%s) exited %d:\n%s", cmd, st, out);
    if (st != 0) return;

    bt_st_file *f = NULL;
    int rc = bt_st_open(&f, theirs);
    CHECK(rc == 0, "open python's file: %s", bt_error());
    if (rc) return;
    CHECK(bt_st_count(f) == 9, "count %d", bt_st_count(f));
    CHECK(bt_st_meta(f, "framework") && !strcmp(bt_st_meta(f, "framework"), "pt"), "meta framework");
    CHECK(bt_st_meta(f, "epoch") && !strcmp(bt_st_meta(f, "epoch"), "3"), "meta epoch");
    CHECK(bt_st_meta(f, "note") && !strcmp(bt_st_meta(f, "note"), "h\xc3\xa9llo \xe2\x9c\x93"), "note");
    float out32[64 * 33];
    const int64_t s43[] = {4, 3}, s5[] = {5}, s6[] = {6}, s22[] = {2, 2}, s3[] = {3}, s4[] = {4},
                  sbig[] = {64, 33};
    CHECK(bt_st_read_f32(f, "w", out32, 2, s43) == 0, "%s", bt_error());
    for (int i = 0; i < 12; i++) CHECK(out32[i] == pattern((size_t)i), "w[%d] = %g", i, out32[i]);
    CHECK(bt_st_read_f32(f, "big", out32, 2, sbig) == 0, "%s", bt_error());
    for (int i = 0; i < 64 * 33; i++)
        if (out32[i] != pattern((size_t)i)) {
            CHECK(0, "big[%d] = %g", i, out32[i]);
            break;
        }
    double d[5];
    CHECK(bt_st_read_raw(f, "d", BT_ST_F64, d, 1, s5) == 0, "%s", bt_error());
    for (int i = 0; i < 5; i++) CHECK(d[i] == i / 10.0 - 0.3, "d[%d] = %.17g", i, d[i]);
    CHECK(bt_st_read_f32(f, "h", out32, 1, s6) == 0, "%s", bt_error());
    CHECK(out32[0] == 1.0f && out32[1] == -2.0f && out32[2] == ldexpf(1, -24) &&
          out32[3] == 65504.0f && out32[4] == 0.333251953125f && out32[5] == 0.0f && signbit(out32[5]),
          "F16: %g %g %g %g %g %g", out32[0], out32[1], out32[2], out32[3], out32[4], out32[5]);
    CHECK(bt_st_read_f32(f, "b", out32, 2, s22) == 0, "%s", bt_error());
    CHECK(out32[0] == 1.0f && out32[1] == -3.140625f && out32[2] == 0.5f && out32[3] == 256.0f,
          "BF16: %g %g %g %g", out32[0], out32[1], out32[2], out32[3]);
    int64_t iv[3];
    CHECK(bt_st_read_raw(f, "i", BT_ST_I64, iv, 1, s3) == 0, "%s", bt_error());
    CHECK(iv[0] == -(INT64_C(1) << 40) && iv[1] == 0 && iv[2] == (INT64_C(1) << 40) + 1, "I64 raw");
    CHECK(bt_st_read_f32(f, "i", out32, 1, s3) == 0 && out32[2] == ldexpf(1, 40), "I64->F32");
    CHECK(bt_st_read_f32(f, "i32", out32, 1, s4) == 0, "%s", bt_error());
    CHECK(out32[0] == -7.0f && out32[2] == 7.0f && out32[3] == 2147483648.0f, "I32->F32");
    CHECK(bt_st_read_f32(f, "u8", out32, 1, s5) == 0 && out32[3] == 254.0f && out32[4] == 255.0f, "U8");
    CHECK(bt_st_read_f32(f, "s", out32, 0, NULL) == 0 && out32[0] == 3.5f, "scalar: %s", bt_error());
    bt_st_close(f);
}

static void test_corrupt(void) {
    char p[512];
    /* Length prefix problems, written by hand. */
    pth(p, "empty.safetensors");
    CHECK(write_bytes(p, "", 0) == 0, "write");
    expect_format_file(p, "empty file");
    pth(p, "short.safetensors");
    CHECK(write_bytes(p, "\x10\0\0\0\0", 5) == 0, "write");
    expect_format_file(p, "too short");
    pth(p, "longhdr.safetensors");
    CHECK(write_bytes(p, "\xe8\x03\0\0\0\0\0\0{\"a\":1}", 15) == 0, "write");
    expect_format_file(p, "larger than the file");
    pth(p, "hugehdr.safetensors");
    CHECK(write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10) == 0, "write");
    expect_format_file(p, "larger than the file");
    /* A header over the 100 MB limit, in a sparse file so nothing big is written. */
    pth(p, "limit.safetensors");
    {
        uint64_t L = BT_ST_MAX_HEADER + 8;
        unsigned char b[8];
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(L >> (8 * i));
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0 && write(fd, b, 8) == 8 && ftruncate(fd, (off_t)(8 + L)) == 0, "sparse file");
        if (fd >= 0) close(fd);
        expect_format_file(p, "exceeds the limit");
    }
    /* The header itself. */
    expect_format("{\"a\": {\"dtype\": \"F32\", ", 0, "not valid JSON");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "not valid JSON");
    expect_format("[1,2,3]", 0, "not a JSON object");
    expect_format("\"str\"", 0, "not a JSON object");
    expect_format("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8");
    expect_format("{\"a\":[1]}", 0, "'a': entry is not a JSON object");
    expect_format("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\"");
    expect_format("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F33'");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":7,\"data_offsets\":[0,4]}}", 4, "\"shape\"");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape entry 0");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape entry 0");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape entry 0");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                  "9 dims");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                  "\"data_offsets\":[0,0]}}", 0, "overflows");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,0]}}", 0, "shape entry 0");
    expect_format("{\"a\":{\"dtype\":\"F64\",\"shape\":[4503599627370496,4096],\"data_offsets\":[0,0]}}", 0,
                  "overflows");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "outside");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,400]}}", 16,
                  "'a': data_offsets [0, 400] outside the data buffer (16 bytes)");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16,
                  "'a': data_offsets [0, 12] do not match shape [2,2] of F32 (16 bytes)");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24,
                  "tensors 'a' [0, 16] and 'b' [8, 24] overlap");
    expect_format("{\"b\":{\"dtype\":\"U8\",\"shape\":[24],\"data_offsets\":[0,24]},"
                  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[23,24]}}", 24, "overlap");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate tensor 'a'");
    expect_format("{\"__metadata__\":{\"k\":1}}", 0, "metadata 'k' is not a string");
    expect_format("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0, "duplicate metadata key 'k'");
    expect_format("{\"__metadata__\":[\"k\"]}", 0, "\"__metadata__\" is not a JSON object");
    expect_format("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "twice");
    /* Control characters in an untrusted name stay out of the one-line message. */
    expect_format("{\"a\\nb\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a?b'");
    /* A good file truncated inside its data. */
    pth(p, "rt.safetensors");
    size_t n = 0;
    unsigned char *raw = read_bytes(p, &n);
    CHECK(raw && n > 100, "rt.safetensors from test_roundtrip");
    if (raw) {
        pth(p, "trunc.safetensors");
        CHECK(write_bytes(p, raw, n - 3) == 0, "write");
        expect_format_file(p, "outside the data buffer");
        /* Flip one byte of the length prefix's high half: length now exceeds the file. */
        raw[5] ^= 1;
        pth(p, "flip.safetensors");
        CHECK(write_bytes(p, raw, n) == 0, "write");
        expect_format_file(p, "larger than the file");
        free(raw);
    }
    /* Missing file and directory are I/O errors, not format errors. */
    bt_st_file *f = NULL;
    pth(p, "does-not-exist.safetensors");
    CHECK(bt_st_open(&f, p) == BT_EIO && f == NULL && strstr(bt_error(), p), "%s", bt_error());
    CHECK(bt_st_open(&f, tu_tmpdir()) == BT_EIO && f == NULL, "directory: %s", bt_error());
}

/* Unusual but valid files that must be accepted. */
static void test_valid_edge(void) {
    char p[512];
    pth(p, "edge.safetensors");
    /* A gap between tensors, trailing bytes, an unknown extra key, whitespace and zero-size
     * tensors at the same offset as a real one. */
    write_crafted(p, " { \"z\" : {\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,4]},"
                     "\"y\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                     "\"x\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[4,12],\"extra\":[1]},"
                     "\"w\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[13,16]}}\n   ", 20);
    bt_st_file *f = NULL;
    int rc = bt_st_open(&f, p);
    CHECK(rc == 0, "edge: %s", bt_error());
    if (f) {
        CHECK(bt_st_count(f) == 4 && bt_st_meta_count(f) == 0 && bt_st_meta(f, "x") == NULL, "counts");
        const bt_st_tensor *x = bt_st_find(f, "x");
        int32_t xv[2];
        unsigned char want[8];
        for (int i = 0; i < 8; i++) want[i] = (unsigned char)((4 + i) * 13 + 1);
        memcpy(xv, want, 8);
        float o[3];
        const int64_t s2[] = {2}, s3[] = {3};
        CHECK(x && x->numel == 2 && !memcmp(x->data, want, 8), "x bytes");
        CHECK(bt_st_read_f32(f, "x", o, 1, s2) == 0 && o[0] == (float)xv[0] && o[1] == (float)xv[1],
              "I32 -> F32");
        CHECK(bt_st_read_f32(f, "w", o, 1, s3) == 0 && o[0] == 1.0f && o[1] == 1.0f, "BOOL -> F32");
        bt_st_close(f);
    }
    /* No tensors at all, and no data buffer. */
    pth(p, "none.safetensors");
    write_crafted(p, "{}", 0);
    rc = bt_st_open(&f, p);
    CHECK(rc == 0 && bt_st_count(f) == 0, "empty header: %s", bt_error());
    bt_st_close(f);
    /* A writer with nothing added writes a file that reads back empty. */
    bt_st_writer *w = bt_st_writer_new();
    pth(p, "nothing.safetensors");
    CHECK(bt_st_writer_save(w, p) == 0, "%s", bt_error());
    bt_st_writer_free(w);
    f = NULL;
    CHECK(bt_st_open(&f, p) == 0 && bt_st_count(f) == 0, "%s", bt_error());
    bt_st_close(f);
}

/* F16/BF16 special values against independently computed floats. */
static void test_half_conversion(void) {
    const uint16_t h[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3555, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0xc100};
    const float hf[] = {0.0f, -0.0f, ldexpf(1, -24), ldexpf(1023, -24), ldexpf(1, -14), 0.333251953125f,
                        65504.0f, INFINITY, -INFINITY, NAN, -2.5f};
    const uint16_t b[] = {0x3f80, 0xc049, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000};
    const float bf[] = {1.0f, -3.140625f, ldexpf(1, -133), INFINITY, -INFINITY, NAN, -0.0f};
    const int64_t sh[] = {11}, sb[] = {7};
    bt_st_writer *w = bt_st_writer_new();
    CHECK(bt_st_writer_add(w, "h", BT_ST_F16, 1, sh, h) == 0 && bt_st_writer_add(w, "b", BT_ST_BF16, 1, sb, b) == 0,
          "%s", bt_error());
    char p[512];
    pth(p, "half.safetensors");
    CHECK(bt_st_writer_save(w, p) == 0, "%s", bt_error());
    bt_st_writer_free(w);
    bt_st_file *f = NULL;
    CHECK(bt_st_open(&f, p) == 0, "%s", bt_error());
    if (!f) return;
    float o[11];
    CHECK(bt_st_read_f32(f, "h", o, 1, sh) == 0, "%s", bt_error());
    for (int i = 0; i < 11; i++)
        CHECK(isnan(hf[i]) ? isnan(o[i]) : (o[i] == hf[i] && signbit(o[i]) == signbit(hf[i])),
              "F16 %04x -> %g, want %g", h[i], o[i], hf[i]);
    CHECK(bt_st_read_f32(f, "b", o, 1, sb) == 0, "%s", bt_error());
    for (int i = 0; i < 7; i++)
        CHECK(isnan(bf[i]) ? isnan(o[i]) : (o[i] == bf[i] && signbit(o[i]) == signbit(bf[i])),
              "BF16 %04x -> %g, want %g", b[i], o[i], bf[i]);
    bt_st_close(f);
}

static void test_atomic_save(void) {
    char dir[512], p[640], bad[640];
    pth(dir, "atomic");
    CHECK(mkdir(dir, 0755) == 0, "mkdir");
    snprintf(p, sizeof p, "%s/ckpt.safetensors", dir);
    float a[256], big[16384];
    for (int i = 0; i < 256; i++) a[i] = (float)i;
    for (int i = 0; i < 16384; i++) big[i] = (float)-i;
    const int64_t sa[] = {256}, sbig[] = {16384};
    bt_st_writer *w = bt_st_writer_new();
    CHECK(bt_st_writer_add(w, "a", BT_ST_F32, 1, sa, a) == 0, "%s", bt_error());
    CHECK(bt_st_writer_save(w, p) == 0, "first save: %s", bt_error());
    CHECK(count_tmp(dir) == 0, "temp file left after success");
    size_t n0 = 0;
    unsigned char *old = read_bytes(p, &n0);

    /* A parent directory that does not exist. */
    snprintf(bad, sizeof bad, "%s/missing/ckpt.safetensors", dir);
    bt_clear_error();
    int rc = bt_st_writer_save(w, bad);
    CHECK(rc == BT_EIO && strstr(bt_error(), bad) && strstr(bt_error(), "No such file"), "rc %d: %s",
          rc, bt_error());
    /* A target that is a directory: the temp file is written, the rename fails. */
    snprintf(bad, sizeof bad, "%s/isdir", dir);
    CHECK(mkdir(bad, 0755) == 0, "mkdir");
    rc = bt_st_writer_save(w, bad);
    CHECK(rc == BT_EIO && strstr(bt_error(), bad) && strstr(bt_error(), "rename"), "rc %d: %s", rc,
          bt_error());
    struct stat st;
    CHECK(stat(bad, &st) == 0 && S_ISDIR(st.st_mode), "directory replaced");
    CHECK(count_tmp(dir) == 0, "temp file left after failed rename");
    bt_st_writer_free(w);

    /* A write that fails midway (file size limit -> EFBIG) over an existing file. */
    w = bt_st_writer_new();
    CHECK(bt_st_writer_add(w, "big", BT_ST_F32, 1, sbig, big) == 0, "%s", bt_error());
    struct rlimit rl0, rl;
    getrlimit(RLIMIT_FSIZE, &rl0);
    rl = rl0;
    rl.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit");
    rc = bt_st_writer_save(w, p);
    setrlimit(RLIMIT_FSIZE, &rl0);
    signal(SIGXFSZ, prev);
    CHECK(rc == BT_EIO && strstr(bt_error(), p) && strstr(bt_error(), "too large"), "rc %d: %s", rc,
          bt_error());
    CHECK(count_tmp(dir) == 0, "temp file left after failed write");
    size_t n1 = 0;
    unsigned char *now = read_bytes(p, &n1);
    CHECK(old && now && n0 == n1 && !memcmp(old, now, n0), "old file changed by a failed save");
    free(now);

    /* Now the same save succeeds and replaces the file. */
    CHECK(bt_st_writer_save(w, p) == 0, "%s", bt_error());
    CHECK(count_tmp(dir) == 0, "temp file left after success");
    bt_st_file *f = NULL;
    CHECK(bt_st_open(&f, p) == 0 && bt_st_count(f) == 1 && bt_st_find(f, "big") &&
          !memcmp(bt_st_find(f, "big")->data, big, sizeof big), "replaced file: %s", bt_error());
    bt_st_close(f);
    bt_st_writer_free(w);
    free(old);
}

static void test_checksum(void) {
    /* Reference values from libxxhash's XXH64 over bytes (i*7+3) & 255. */
    static const struct { size_t n; uint64_t h0, hs; } ref[] = {
        {0, 0xef46db3751d8e999ULL, 0x51e24c0e9077a48cULL},   {1, 0x1f25c8d0bc1f4bb6ULL, 0x20f9f4e3fba1be06ULL},
        {3, 0x31d2363f52e564c9ULL, 0x076b77199119d7ddULL},   {4, 0x9bb64b7d66ee9fdaULL, 0x27a7e5587a8a5c2eULL},
        {7, 0x9a7b149959ce60d8ULL, 0xcff13e1a810bec27ULL},   {8, 0xdab99d95c6f90092ULL, 0x841e06da64a07ce8ULL},
        {13, 0xf78b031308f5bfc8ULL, 0x71206de9a8f0d726ULL},  {31, 0xa2aa5f33cc4a6119ULL, 0x6ba872e910fbce5cULL},
        {32, 0x23c3c17ef790fd97ULL, 0x25cc07da699894a9ULL},  {33, 0x50a7cfc7ba588784ULL, 0xbf84912d4dea9670ULL},
        {63, 0x5e3e54b431c7493cULL, 0x737629700e723da5ULL},  {64, 0x0eb64b3ef6eeb01fULL, 0xfded24eb11992703ULL},
        {100, 0xa61f8d4c170fe531ULL, 0xfe1fce732c97c212ULL}, {200, 0xa6cb3c09bc829b24ULL, 0xac807cb85af4bf45ULL},
    };
    unsigned char b[200];
    for (int i = 0; i < 200; i++) b[i] = (unsigned char)(i * 7 + 3);
    for (size_t k = 0; k < sizeof ref / sizeof ref[0]; k++) {
        uint64_t h0 = bt_checksum64(b, ref[k].n, 0), hs = bt_checksum64(b, ref[k].n, 0x123456789abcdefULL);
        CHECK(h0 == ref[k].h0 && hs == ref[k].hs, "n=%zu: %016llx %016llx", ref[k].n,
              (unsigned long long)h0, (unsigned long long)hs);
    }
    CHECK(bt_checksum64("abc", 3, 0) == 0x44bc2cf5ad770999ULL, "XXH64(abc)");
    /* Every single flipped bit of a 1 KiB buffer changes the checksum. */
    unsigned char buf[1024];
    tu_rng r = {7};
    for (int i = 0; i < 1024; i++) buf[i] = (unsigned char)tu_next(&r);
    uint64_t base = bt_checksum64(buf, sizeof buf, 0);
    int same = 0;
    for (int bit = 0; bit < 1024 * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        same += bt_checksum64(buf, sizeof buf, 0) == base;
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    CHECK(same == 0, "%d bit flips went undetected", same);
    unsigned char moved[1040];
    memcpy(moved + 8, buf + 1, 1000);
    CHECK(bt_checksum64(buf + 1, 1000, 0) == bt_checksum64(moved + 8, 1000, 0),
          "result depends on alignment");
}

/* Seeded random corruption of a good file: every variant opens cleanly or fails with
 * BT_EFORMAT and a message naming the file (the sanitizer build catches stray reads). */
static void test_fuzz(void) {
    char p[512], q[512];
    pth(p, "rt.safetensors");
    pth(q, "fuzz.safetensors");
    size_t n = 0;
    unsigned char *raw = read_bytes(p, &n);
    CHECK(raw && n > 100, "rt.safetensors from test_roundtrip");
    if (!raw) return;
    unsigned char *b = malloc(n);
    tu_rng r = {2024};
    int ok = 0, bad = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(b, raw, n);
        size_t len = n;
        int nflip = 1 + (int)(tu_next(&r) % 4);
        for (int k = 0; k < nflip; k++) {
            /* Mostly the header, where the parsing is; sometimes the length prefix. */
            size_t at = tu_next(&r) % 8 == 0 ? tu_next(&r) % 8 : 8 + tu_next(&r) % (n - 8);
            uint64_t v = tu_next(&r);
            b[at] = (v & 1) ? (unsigned char)(b[at] ^ (1u << ((v >> 1) % 8))) : "{}[]\",:0123456789\"e-. "[(v >> 1) % 21];
        }
        if (it % 10 == 9) len = tu_next(&r) % n;
        CHECK(write_bytes(q, b, len) == 0, "write");
        bt_st_file *f = NULL;
        int rc = bt_st_open(&f, q);
        if (rc == 0) {
            ok++;
            /* Disjoint and inside the buffer means the sizes add up to at most the file; touching
             * every byte lets the sanitizer build check the pointers. */
            size_t sum = 0;
            for (int i = 0; i < bt_st_count(f); i++) {
                const bt_st_tensor *t = bt_st_at(f, i);
                sum += t->nbytes;
                (void)bt_checksum64(t->data, t->nbytes, 0);
            }
            CHECK(sum <= len, "iteration %d: tensors hold %zu bytes of a %zu-byte file", it, sum, len);
            bt_st_close(f);
        } else {
            bad++;
            CHECK(rc == BT_EFORMAT && f == NULL && strstr(bt_error(), q) && !strchr(bt_error(), '\n'),
                  "iteration %d: rc %d: %s", it, rc, bt_error());
        }
    }
    printf("  fuzz: %d accepted, %d rejected\n", ok, bad);
    CHECK(bad > 300, "only %d of 400 corruptions rejected (%d accepted)", bad, ok);
    free(b);
    free(raw);
}

int main(void) {
    TEST_RUN(test_dtypes);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_writer_errors);
    TEST_RUN(test_python_interop);
    TEST_RUN(test_corrupt);
    TEST_RUN(test_fuzz);
    TEST_RUN(test_valid_edge);
    TEST_RUN(test_half_conversion);
    TEST_RUN(test_atomic_save);
    TEST_RUN(test_checksum);
    return tu_finish();
}
