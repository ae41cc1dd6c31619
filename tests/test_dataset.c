/* Dataset readers against independent references: torchvision's ImageFolder order, PIL's
 * decode (Image.open(f).convert('RGB'), through tests/py/decode_ref.py), and CIFAR-10
 * batches and tar shards that Python builds from the same images; plus every error path. */
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "testutil.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[512];  /* unpacked CIFAR-10 JPEGs: root/cifar10/{train,test} */
static char small[512]; /* decode_ref.py make_small output */

static int sh(const char *fmt, const char *a, const char *b, const char *c) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, fmt, a, b, c);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "  command failed (%d): %s\n", rc, cmd);
    return rc;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* 60,000 small files unpack in ~2 s on tmpfs but can take minutes on a busy disk, so the
 * tree goes to /dev/shm when there is one (removed at the end of main), else tu_tmpdir(). */
static char shm_dir[64];
static void remove_shm(void) {
    if (shm_dir[0]) sh("rm -rf '%s'%s%s", shm_dir, "", "");
    shm_dir[0] = 0;
}
static const char *unpacked(void) {
    if (!root[0]) {
        /* trees left by runs that crashed (atexit does not run then), after an hour */
        sh("find /dev/shm -maxdepth 1 -name 'barlow-dataset-test-*' -mmin +60 -exec rm -rf {} +"
           " 2>/dev/null%s%s%s", "", "", "");
        snprintf(shm_dir, sizeof shm_dir, "/dev/shm/barlow-dataset-test-XXXXXX");
        if (mkdtemp(shm_dir)) {
            atexit(remove_shm);
            snprintf(root, sizeof root, "%s", shm_dir);
        } else {
            shm_dir[0] = 0;
            snprintf(root, sizeof root, "%s/full", tu_tmpdir());
            mkdir(root, 0755);
        }
        char tgz[1024];
        snprintf(tgz, sizeof tgz, "%s/cifar10-jpeg.tar.gz", tu_shared_data());
        CHECK(sh("tar xzf '%s' -C '%s'%s", tgz, root, "") == 0, "cannot unpack %s", tgz);
    }
    return root;
}

static const char *small_sets(void) {
    if (!small[0]) {
        char full[1024];
        snprintf(full, sizeof full, "%s/cifar10", unpacked());
        snprintf(small, sizeof small, "%s/small", tu_tmpdir());
        sh("'%s' tests/py/decode_ref.py make_small '%s' '%s'", tu_python(), full, small);
    }
    return small;
}

/* Decodes the images listed in `list` with PIL; compares each to ours, returns max |diff|
 * (or 999 on a size mismatch or failure). */
static int compare_with_pil(const char *list, char **paths, int n, int *worst) {
    char out[4096];
    snprintf(out, sizeof out, "%s.pil", list);
    if (sh("'%s' tests/py/decode_ref.py decode '%s' '%s'", tu_python(), out, list)) return 999;
    size_t len;
    uint8_t *ref = read_all(out, &len);
    if (!ref) return 999;
    size_t pos = 0;
    int maxd = 0;
    bt_image im = {0};
    for (int k = 0; k < n; k++) {
        int32_t wh[2];
        if (pos + 8 > len) { maxd = 999; break; }
        memcpy(wh, ref + pos, 8);
        pos += 8;
        size_t flen;
        uint8_t *file = read_all(paths[k], &flen);
        int rc = file ? bt_decode_image(&im, file, flen, paths[k]) : BT_EIO;
        free(file);
        CHECK(rc == 0, "%s: %s", paths[k], bt_error());
        if (rc || im.w != wh[0] || im.h != wh[1]) {
            CHECK(0, "%s: size %dx%d, PIL %dx%d", paths[k], im.w, im.h, wh[0], wh[1]);
            maxd = 999;
            break;
        }
        int d = 0;
        for (size_t p = 0; p < (size_t)wh[0] * wh[1] * 3; p++) {
            int e = abs((int)im.px[p] - (int)ref[pos + p]);
            if (e > d) d = e;
        }
        CHECK(d == 0, "%s: max diff %d vs PIL", paths[k], d);
        if (d > maxd) { maxd = d; *worst = k; }
        pos += (size_t)wh[0] * wh[1] * 3;
    }
    bt_image_free(&im);
    free(ref);
    return maxd;
}

static void test_folder_full_cifar(void) {
    char data[1024];
    snprintf(data, sizeof data, "%s/cifar10", unpacked());
    bt_dataset *tr = NULL, *te = NULL, *va = NULL;
    int rc = bt_dataset_open(&tr, data, "train");
    CHECK(rc == 0, "%s", bt_error());
    if (rc) return;
    CHECK(bt_dataset_open(&te, data, "test") == 0, "%s", bt_error());
    CHECK(bt_dataset_open(&va, data, "val") == 0, "val should find test/: %s", bt_error());
    CHECK(!strcmp(bt_dataset_kind(tr), "folder"), "kind %s", bt_dataset_kind(tr));
    CHECK(bt_dataset_size(tr) == 50000, "train size %zu", bt_dataset_size(tr));
    CHECK(te && bt_dataset_size(te) == 10000, "test size");
    CHECK(va && bt_dataset_size(va) == 10000, "val size");
    static const char *names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck"};
    CHECK(bt_dataset_num_classes(tr) == 10, "classes %d", bt_dataset_num_classes(tr));
    for (int c = 0; c < 10; c++)
        CHECK(bt_dataset_class_name(tr, c) && !strcmp(bt_dataset_class_name(tr, c), names[c]),
              "class %d is %s", c, bt_dataset_class_name(tr, c));
    /* 5000 per class, files 0000.jpg ..: item 3*5000+17 is cat/0017.jpg */
    const char *n = bt_dataset_item_name(tr, 15017);
    CHECK(n && strstr(n, "/train/cat/0017.jpg"), "item 15017 is %s", n);
    CHECK(bt_dataset_label(tr, 15017) == 3, "label %d", bt_dataset_label(tr, 15017));
    CHECK(bt_dataset_label(te, 9999) == 9, "last test label %d", bt_dataset_label(te, 9999));

    /* The whole order: each class's 5000 files contiguous, under their class folder, in
     * strictly increasing name order (torchvision's order is checked against torchvision
     * itself on the smaller tree of test_cifar_bin_and_tar). */
    size_t bad = 0;
    for (size_t i = 0; i < 50000; i++) {
        int c = (int)(i / 5000);
        char dir[64];
        snprintf(dir, sizeof dir, "/train/%s/", names[c]);
        const char *p = bt_dataset_item_name(tr, i);
        if (bt_dataset_label(tr, i) != c || !strstr(p, dir) ||
            (i % 5000 && strcmp(bt_dataset_item_name(tr, i - 1), p) >= 0))
            bad++;
    }
    CHECK(bad == 0, "%zu items out of order", bad);
    char list[2048];
    FILE *f;
    /* A sample of JPEGs against PIL. */
    char *paths[160];
    int np = 0;
    snprintf(list, sizeof list, "%s/jpeg_sample.txt", tu_tmpdir());
    f = fopen(list, "w");
    for (size_t i = 0; i < 50000; i += 419) paths[np++] = (char *)bt_dataset_item_name(tr, i);
    for (size_t i = 5; i < 10000; i += 251) paths[np++] = (char *)bt_dataset_item_name(te, i);
    for (int k = 0; k < np; k++) fprintf(f, "%s\n", paths[k]);
    fclose(f);
    int worst = 0, d = compare_with_pil(list, paths, np, &worst);
    CHECK(d == 0, "JPEG vs PIL: max diff %d (%s)", d, paths[worst]);
    printf("  %d CIFAR JPEGs vs PIL: max diff %d\n", np, d);

    /* bt_dataset_load agrees with bt_decode_image, and limit. */
    bt_image a = {0};
    CHECK(bt_dataset_load(tr, 15017, &a) == 0 && a.w == 32 && a.h == 32, "%s", bt_error());
    CHECK(bt_dataset_limit(tr, 50001) == BT_EINVAL, "limit past the end accepted");
    CHECK(bt_dataset_limit(tr, 100) == 0 && bt_dataset_size(tr) == 100, "limit");
    CHECK(bt_dataset_load(tr, 100, &a) == BT_EINVAL, "load past limit");
    bt_image_free(&a);
    bt_dataset_close(tr);
    bt_dataset_close(te);
    bt_dataset_close(va);
}

static void test_decode_colour_types(void) {
    if (tu_skip_without("PIL")) return;
    char dir[1024], list[2048];
    snprintf(dir, sizeof dir, "%s/imgs", tu_tmpdir());
    mkdir(dir, 0755);
    CHECK(sh("'%s' tests/py/decode_ref.py make_images '%s'%s", tu_python(), dir, "") == 0,
          "python make_images");
    snprintf(list, sizeof list, "%s/list.txt", dir);
    FILE *f = fopen(list, "r");
    CHECK(f != NULL, "no list");
    if (!f) return;
    char *paths[64], line[2048];
    int n = 0;
    while (n < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0]) paths[n++] = strdup(line);
    }
    fclose(f);
    CHECK(n >= 25, "only %d test images", n);
    int worst = 0, d = compare_with_pil(list, paths, n, &worst);
    CHECK(d == 0, "max diff %d vs PIL (%s)", d, paths[worst]);
    /* Reuse of a larger buffer: decode big then small into the same image. */
    bt_image im = {0};
    size_t len;
    char p[2048];
    snprintf(p, sizeof p, "%s/big.jpg", dir);
    uint8_t *b = read_all(p, &len);
    CHECK(b && bt_decode_image(&im, b, len, p) == 0 && im.w == 259, "big %d", im.w);
    free(b);
    snprintf(p, sizeof p, "%s/rgb8.png", dir);
    b = read_all(p, &len);
    CHECK(b && bt_decode_image(&im, b, len, p) == 0 && im.w == 37 && im.h == 23, "small");
    /* Corrupt data: errors, never crashes, name the item. */
    uint8_t junk[64] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 1, 2, 3};
    int rc = bt_decode_image(&im, junk, sizeof junk, "junk.png");
    CHECK(rc == BT_EFORMAT && strstr(bt_error(), "junk.png"), "junk png: %d %s", rc, bt_error());
    CHECK(b && bt_decode_image(&im, b, len / 2, "half.png") == BT_EFORMAT &&
              strstr(bt_error(), "half.png"), "truncated png: %s", bt_error());
    free(b);
    junk[0] = 0xff, junk[1] = 0xd8, junk[2] = 0xff;
    CHECK(bt_decode_image(&im, junk, sizeof junk, "junk.jpg") == BT_EFORMAT, "junk jpeg");
    CHECK(bt_decode_image(&im, junk + 3, 10, "text.jpg") == BT_EFORMAT &&
              strstr(bt_error(), "not a JPEG or PNG"), "unknown magic: %s", bt_error());
    bt_image_free(&im);
    for (int k = 0; k < n; k++) free(paths[k]);
}

/* Item i of a and b: same label and pixels. */
static int same_items(bt_dataset *a, bt_dataset *b, const char *what) {
    int bad = 0;
    bt_image x = {0}, y = {0};
    CHECK(bt_dataset_size(a) == bt_dataset_size(b), "%s: sizes %zu vs %zu", what,
          bt_dataset_size(a), bt_dataset_size(b));
    for (size_t i = 0; i < bt_dataset_size(a) && i < bt_dataset_size(b); i++) {
        int ra = bt_dataset_load(a, i, &x), rb = bt_dataset_load(b, i, &y);
        if (ra || rb || bt_dataset_label(a, i) != bt_dataset_label(b, i) || x.w != y.w ||
            x.h != y.h || memcmp(x.px, y.px, (size_t)x.w * x.h * 3)) {
            if (!bad) CHECK(0, "%s: item %zu (%s vs %s) differs: %s", what, i,
                            bt_dataset_item_name(a, i), bt_dataset_item_name(b, i), bt_error());
            bad++;
        }
    }
    bt_image_free(&x);
    bt_image_free(&y);
    return bad;
}

static void test_cifar_bin_and_tar(void) {
    const char *s = small_sets();
    char folder[1024], cifar[1024], tar[1024], spec[4096], order[1024];
    snprintf(folder, sizeof folder, "%s/folder", s);
    snprintf(cifar, sizeof cifar, "%s/cifar", s);
    snprintf(tar, sizeof tar, "%s/tar", s);
    const char *splits[2] = {"train", "test"};
    for (int sp = 0; sp < 2; sp++) {
        bt_dataset *f = NULL, *c = NULL, *t = NULL, *t2 = NULL, *t3 = NULL;
        CHECK(bt_dataset_open(&f, folder, splits[sp]) == 0, "%s", bt_error());
        CHECK(bt_dataset_open(&c, cifar, splits[sp]) == 0, "%s", bt_error());
        CHECK(bt_dataset_open(&t, tar, splits[sp]) == 0, "%s", bt_error());
        if (!f || !c || !t) return;
        CHECK(!strcmp(bt_dataset_kind(c), "cifar-bin") && !strcmp(bt_dataset_kind(t), "tar"),
              "kinds %s %s", bt_dataset_kind(c), bt_dataset_kind(t));
        size_t want = sp == 0 ? 60 : 30;
        CHECK(bt_dataset_size(f) == want, "%s folder size %zu", splits[sp], bt_dataset_size(f));
        /* folder order (nested dir, .JPG, stray .txt) equals torchvision's */
        snprintf(order, sizeof order, "%s/order_%s.txt", s, splits[sp]);
        FILE *o = fopen(order, "r");
        char line[2048];
        size_t i = 0;
        while (o && fgets(line, sizeof line, o)) {
            int lab;
            char p[2000];
            if (sscanf(line, "%d %1999[^\n]", &lab, p) != 2) break;
            CHECK(i < bt_dataset_size(f) && lab == bt_dataset_label(f, i) &&
                      !strcmp(p, bt_dataset_item_name(f, i)),
                  "item %zu: torchvision %d %s, ours %d %s", i, lab, p, bt_dataset_label(f, i),
                  bt_dataset_item_name(f, i));
            i++;
        }
        if (o) fclose(o);
        CHECK(i == want, "order file has %zu lines", i);
        CHECK(bt_dataset_num_classes(c) == 10 && !strcmp(bt_dataset_class_name(c, 3), "cat"),
              "cifar classes from batches.meta.txt");
        CHECK(bt_dataset_num_classes(t) == 10 && !strcmp(bt_dataset_class_name(t, 9), "9"),
              "tar classes %d", bt_dataset_num_classes(t));
        CHECK(same_items(f, c, "folder vs cifar-bin") == 0, "cifar-bin differs");
        CHECK(same_items(f, t, "folder vs tar dir") == 0, "tar differs");
        const char *nm = bt_dataset_item_name(t, 0);
        CHECK(strstr(nm, sp == 0 ? "train-000.tar:s00000.jpg" : "test-000.tar:s00000.jpg"),
              "tar item name %s", nm);
        if (sp == 0) {
            snprintf(spec, sizeof spec, "%s/train-{000..001}.tar", tar);
            CHECK(bt_dataset_open(&t2, spec, "train") == 0, "brace: %s", bt_error());
            snprintf(spec, sizeof spec, "%s/train-000.tar,%s/train-001.tar", tar, tar);
            CHECK(bt_dataset_open(&t3, spec, "train") == 0, "list: %s", bt_error());
            if (t2) CHECK(same_items(f, t2, "folder vs brace pattern") == 0, "brace differs");
            if (t3) CHECK(same_items(f, t3, "folder vs shard list") == 0, "list differs");
            bt_dataset_close(t2);
            bt_dataset_close(t3);
            /* {split} substitution and "val" for test */
            snprintf(spec, sizeof spec, "%s/{split}-000.tar", tar);
            CHECK(bt_dataset_open(&t2, spec, "test") == 0 && bt_dataset_size(t2) == 30,
                  "{split}: %s", bt_error());
            bt_dataset_close(t2);
            CHECK(bt_dataset_open(&t2, tar, "val") == 0 && bt_dataset_size(t2) == 30,
                  "val -> test shards: %s", bt_error());
            bt_dataset_close(t2);
        }
        bt_dataset_close(f);
        bt_dataset_close(c);
        bt_dataset_close(t);
    }
}

static void copy_file(const char *from, const char *to, long keep, long flip_at) {
    size_t n;
    uint8_t *p = read_all(from, &n);
    if (!p) return;
    if (flip_at >= 0 && (size_t)flip_at < n) p[flip_at] ^= 0x20;
    write_all(to, p, keep >= 0 && (size_t)keep < n ? (size_t)keep : n);
    free(p);
}

/* Byte offset of the first ustar header whose name ends in .jpg (found independently of
 * the reader: a plain walk over 512-byte headers). */
static long jpg_header(const char *path) {
    size_t n;
    uint8_t *b = read_all(path, &n);
    long found = -1;
    for (size_t off = 0; b && off + 512 <= n && b[off];) {
        char name[101];
        memcpy(name, b + off, 100);
        name[100] = 0;
        size_t l = strlen(name);
        if (l > 4 && !strcmp(name + l - 4, ".jpg") && b[off + 156] == '0') {
            found = (long)off;
            break;
        }
        long sz = strtol((char *)b + off + 124, NULL, 8);
        off += 512 + (size_t)((sz + 511) / 512) * 512;
    }
    free(b);
    return found;
}

static void expect_fail(const char *data, const char *split, int code, const char *must1,
                        const char *must2) {
    bt_dataset *ds = NULL;
    int rc = bt_dataset_open(&ds, data, split);
    CHECK(rc == code && ds == NULL, "open %s %s: rc %d (want %d): %s", data, split, rc, code,
          bt_error());
    CHECK(strstr(bt_error(), must1), "message '%s' lacks '%s'", bt_error(), must1);
    if (must2) CHECK(strstr(bt_error(), must2), "message '%s' lacks '%s'", bt_error(), must2);
    bt_dataset_close(ds);
}

static void test_errors(void) {
    const char *s = small_sets();
    char d[1024], p[2048], q[2048], src[2048];
    const char *t = tu_tmpdir();

    snprintf(d, sizeof d, "%s/does-not-exist", t);
    expect_fail(d, "train", BT_EINVAL, "does-not-exist", "no such file");
    snprintf(d, sizeof d, "%s/empty", t);
    mkdir(d, 0755);
    expect_fail(d, "train", BT_EINVAL, "not an image folder, CIFAR-10 batch directory", "empty");
    snprintf(p, sizeof p, "%s/plain.txt", t);
    write_all(p, "hello", 5);
    expect_fail(p, "train", BT_EINVAL, "not an image folder", "plain.txt");
    expect_fail(s, "bogus", BT_EINVAL, "unknown split", NULL);

    /* only a train split; then a class folder without images */
    snprintf(d, sizeof d, "%s/onlytrain", t);
    snprintf(p, sizeof p, "%s/train/a", d);
    sh("mkdir -p '%s' && cp '%s/folder/train/cat/0000.jpg' '%s/x.jpg'", p, s, p);
    expect_fail(d, "val", BT_EINVAL, "onlytrain/val", "test");
    snprintf(p, sizeof p, "%s/train/b", d);
    sh("mkdir -p '%s' && echo hi > '%s/readme.txt'%s", p, p, "");
    expect_fail(d, "train", BT_EINVAL, "onlytrain/train/b", "no .jpg");
    snprintf(d, sizeof d, "%s/noclasses", t);
    sh("mkdir -p '%s/train'%s%s", d, "", "");
    expect_fail(d, "train", BT_EINVAL, "noclasses/train", "no class folders");

    /* truncated CIFAR batch: message has the file and the byte offset of the cut record */
    snprintf(d, sizeof d, "%s/cifar_trunc", t);
    snprintf(src, sizeof src, "%s/cifar", s);
    sh("cp -r '%s' '%s'%s", src, d, "");
    snprintf(p, sizeof p, "%s/cifar/test_batch.bin", s);
    snprintf(q, sizeof q, "%s/test_batch.bin", d);
    copy_file(p, q, 3073 * 7 + 100, -1);
    expect_fail(d, "test", BT_EFORMAT, "test_batch.bin", "byte offset 21511");
    snprintf(q, sizeof q, "%s/data_batch_3.bin", d);
    unlink(q);
    expect_fail(d, "train", BT_EINVAL, "data_batch_3.bin", NULL);
    /* bad label byte */
    snprintf(q, sizeof q, "%s/test_batch.bin", d);
    copy_file(p, q, -1, -1);
    {
        int fd = open(q, O_WRONLY);
        uint8_t bad = 200;
        CHECK(pwrite(fd, &bad, 1, 3073 * 2) == 1, "pwrite");
        close(fd);
    }
    expect_fail(d, "test", BT_EFORMAT, "label 200", "byte offset 6146");

    /* truncated tar (member past EOF) and a header with a bad checksum */
    snprintf(d, sizeof d, "%s/tar_bad", t);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/tar/train-001.tar", s);
    snprintf(q, sizeof q, "%s/train-000.tar", d);
    long jh = jpg_header(p);
    char off[64];
    CHECK(jh >= 0, "no .jpg member found");
    copy_file(p, q, jh + 512 + 200, -1); /* inside the first image's data */
    snprintf(off, sizeof off, "byte offset %ld runs past the end", jh);
    expect_fail(d, "train", BT_EFORMAT, "train-000.tar", off);
    copy_file(p, q, 300, -1); /* inside the first header */
    expect_fail(d, "train", BT_EFORMAT, "train-000.tar", "truncated tar header at byte offset 0");
    /* the member at 0 is .jpg (512 + data), flip a byte inside the second header */
    {
        size_t n;
        uint8_t *b = read_all(p, &n);
        /* find the second header: first member's size from its header */
        long sz = b ? strtol((char *)b + 124, NULL, 8) : 0;
        long h2 = 512 + ((sz + 511) / 512) * 512;
        free(b);
        copy_file(p, q, -1, h2 + 3);
        snprintf(off, sizeof off, "byte offset %ld", h2);
        expect_fail(d, "train", BT_EFORMAT, "checksum", off);
    }
    snprintf(q, sizeof q, "%s/x-{000..001}.tar", d);
    expect_fail(q, "train", BT_EINVAL, "x-000.tar", NULL);

    /* corrupt JPEGs: open succeeds, load fails naming the item */
    snprintf(d, sizeof d, "%s/corrupt", t);
    snprintf(p, sizeof p, "%s/train/a", d);
    sh("mkdir -p '%s' && cp '%s/folder/train/cat/0000.jpg' '%s/0.jpg'", p, s, p);
    snprintf(src, sizeof src, "%s/folder/train/cat/0002.jpg", s);
    snprintf(q, sizeof q, "%s/train/a/1.jpg", d);
    copy_file(src, q, 300, -1);
    snprintf(q, sizeof q, "%s/train/a/2.jpg", d);
    write_all(q, "\xff\xd8\xff garbage garbage garbage", 27);
    bt_dataset *ds = NULL;
    CHECK(bt_dataset_open(&ds, d, "train") == 0 && bt_dataset_size(ds) == 3, "%s", bt_error());
    if (ds) {
        bt_image im = {0};
        CHECK(bt_dataset_load(ds, 0, &im) == 0, "%s", bt_error());
        int rc = bt_dataset_load(ds, 1, &im);
        CHECK(rc == BT_EFORMAT && strstr(bt_error(), "a/1.jpg"), "truncated jpeg: %d %s", rc,
              bt_error());
        rc = bt_dataset_load(ds, 2, &im);
        CHECK(rc == BT_EFORMAT && strstr(bt_error(), "a/2.jpg"), "garbage jpeg: %d %s", rc,
              bt_error());
        CHECK(bt_dataset_load(ds, 0, &im) == 0 && im.w == 32, "good after bad");
        bt_image_free(&im);
        bt_dataset_close(ds);
    }
}

int main(void) {
    TEST_RUN(test_decode_colour_types);
    TEST_RUN(test_folder_full_cifar);
    TEST_RUN(test_cifar_bin_and_tar);
    TEST_RUN(test_errors);
    remove_shm();
    return tu_finish();
}
