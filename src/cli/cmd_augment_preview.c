/* `barlow augment-preview DATA --out views.png`: a PNG grid with one row per sampled image:
 * the original (fitted into the cell) beside its two augmented views, drawn with the same
 * keyed random numbers as training (seed, epoch 0, dataset index, view), so what it shows is
 * what epoch 0 of `barlow train --seed S` feeds the network. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "barlow/augment.h"
#include "barlow/dataset.h"
#include "barlow/error.h"

int bt_cmd_augment_preview(int argc, char **argv);

enum { GAP = 4, BG = 40, MIN_CELL = 96 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: barlow augment-preview DATA --out views.png [--preset cifar|imagenet]\n"
            "                              [--count 8] [--seed 0] [--split train]\n"
            "                              [--aug KEY=VALUE ...]\n"
            "Writes a grid: each row an image of DATA (fitted) and its two augmented views.\n"
            "--aug overrides a preset setting (see bt_aug_preset_set), e.g. --aug blur-p.1=0.5\n");
}

static int write_png(const char *path, const uint8_t *rgb /* (h, w, 3) */, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return bt_fail(BT_EIO, "cannot write %s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return bt_fail(BT_ENOMEM, "libpng: out of memory writing %s", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return bt_fail(BT_EIO, "libpng: error writing %s", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) return bt_fail(BT_EIO, "cannot write %s", path);
    return BT_OK;
}

/* Copies im into the canvas cell at (x0, y0), magnified by the integer factor `zoom`
 * (nearest neighbour, so the pixels the network sees stay visible). */
static void blit(uint8_t *canvas, int cw, const uint8_t *im, int w, int h, int x0, int y0,
                 int zoom) {
    for (int y = 0; y < h * zoom; y++)
        for (int x = 0; x < w * zoom; x++)
            memcpy(canvas + ((size_t)(y0 + y) * cw + x0 + x) * 3,
                   im + ((size_t)(y / zoom) * w + x / zoom) * 3, 3);
}

int bt_cmd_augment_preview(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *preset_name = "imagenet", *split = "train";
    int count = 8;
    unsigned long long seed = 0;
    enum { MAX_AUG = 64 };
    const char *augs[MAX_AUG];
    int naug = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] == '-' && !v) {
            fprintf(stderr, "augment-preview: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--out")) {
            out = argv[++i];
        } else if (!strcmp(a, "--preset")) {
            preset_name = argv[++i];
        } else if (!strcmp(a, "--split")) {
            split = argv[++i];
        } else if (!strcmp(a, "--count")) {
            char *end;
            long c = strtol(argv[++i], &end, 10);
            if (*end || c < 1 || c > 256) {
                fprintf(stderr, "augment-preview: --count must be 1..256, got '%s'\n", argv[i]);
                return 2;
            }
            count = (int)c;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            seed = strtoull(argv[++i], &end, 10);
            if (*end || argv[i][0] == '-') {
                fprintf(stderr, "augment-preview: bad --seed '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--aug")) {
            if (naug == MAX_AUG) {
                fprintf(stderr, "augment-preview: too many --aug options\n");
                return 2;
            }
            augs[naug++] = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "augment-preview: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!data) {
            data = a;
        } else {
            fprintf(stderr, "augment-preview: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!data || !out) {
        usage(stderr);
        return 2;
    }

    bt_aug_preset p;
    if (bt_aug_preset_init(&p, preset_name)) {
        fprintf(stderr, "augment-preview: %s\n", bt_error());
        return 2;
    }
    for (int k = 0; k < naug; k++) {
        char key[64];
        const char *eq = strchr(augs[k], '=');
        if (!eq || (size_t)(eq - augs[k]) >= sizeof key) {
            fprintf(stderr, "augment-preview: --aug expects KEY=VALUE, got '%s'\n", augs[k]);
            return 2;
        }
        memcpy(key, augs[k], (size_t)(eq - augs[k]));
        key[eq - augs[k]] = '\0';
        if (bt_aug_preset_set(&p, key, eq + 1)) {
            fprintf(stderr, "augment-preview: %s\n", bt_error());
            return 2;
        }
    }

    bt_dataset *ds = NULL;
    if (bt_dataset_open(&ds, data, split)) {
        fprintf(stderr, "augment-preview: %s\n", bt_error());
        return 1;
    }
    size_t n = bt_dataset_size(ds);
    if ((size_t)count > n) count = (int)n;

    /* Cells hold the larger view; small views (CIFAR) are magnified to stay legible. */
    int vs = p.view[0].size > p.view[1].size ? p.view[0].size : p.view[1].size;
    int zoom[2], cell = 0;
    for (int v = 0; v < 2; v++) {
        zoom[v] = 1;
        while (p.view[v].size * zoom[v] < MIN_CELL && p.view[v].size * zoom[v] < vs * 4) zoom[v]++;
        if (p.view[v].size * zoom[v] > cell) cell = p.view[v].size * zoom[v];
    }
    const int cw = 3 * cell + 4 * GAP, ch = count * cell + (count + 1) * GAP;
    int rc = BT_OK;
    uint8_t *canvas = malloc((size_t)cw * ch * 3);
    uint8_t *fit = malloc((size_t)cell * cell * 3);
    bt_aug_work *w = bt_aug_work_new();
    bt_image src = {0, 0, NULL}, view[2] = {{0, 0, NULL}, {0, 0, NULL}};
    if (!canvas || !fit || !w) {
        rc = bt_fail(BT_ENOMEM, "out of memory for a %dx%d preview", cw, ch);
        goto done;
    }
    memset(canvas, BG, (size_t)cw * ch * 3);
    for (int r = 0; r < count; r++) {
        size_t idx = (size_t)r * n / (size_t)count; /* spread over the dataset */
        if ((rc = bt_dataset_load(ds, idx, &src))) goto done;
        int y0 = GAP + r * (cell + GAP);
        /* Original, fitted into the cell with its aspect kept (PIL bilinear resize). */
        int fw = cell, fh = cell;
        if (src.w >= src.h) fh = (int)((double)cell * src.h / src.w + 0.5);
        else fw = (int)((double)cell * src.w / src.h + 0.5);
        if (fw < 1) fw = 1;
        if (fh < 1) fh = 1;
        bt_image fitted = {fw, fh, fit}; /* a view of the cell buffer */
        if ((rc = bt_aug_resized_crop(&fitted, &src, 0, 0, src.h, src.w, BT_INTERP_BILINEAR, w)))
            goto done;
        blit(canvas, cw, fit, fw, fh, GAP + (cell - fw) / 2, y0 + (cell - fh) / 2, 1);
        for (int v = 0; v < 2; v++) {
            bt_rng rng = bt_rng_key(seed, 0, idx, (uint64_t)v);
            bt_aug_params pr;
            bt_aug_sample(&pr, &p.view[v], src.w, src.h, &rng);
            if (view[v].px && view[v].w != p.view[v].size) bt_image_free(&view[v]);
            if ((rc = bt_aug_apply_u8(&view[v], &src, &pr, &p.view[v], w))) goto done;
            int vcell = p.view[v].size * zoom[v];
            blit(canvas, cw, view[v].px, view[v].w, view[v].h,
                 GAP + (v + 1) * (cell + GAP) + (cell - vcell) / 2, y0 + (cell - vcell) / 2,
                 zoom[v]);
        }
    }
    rc = write_png(out, canvas, cw, ch);
    if (rc == BT_OK)
        printf("wrote %s: %d images of %s (%s split, preset %s, seed %llu)\n", out, count, data,
               split, p.name, seed);
done:
    if (rc) fprintf(stderr, "augment-preview: %s\n", bt_error());
    bt_image_free(&src);
    bt_image_free(&view[0]);
    bt_image_free(&view[1]);
    bt_aug_work_free(w);
    free(fit);
    free(canvas);
    bt_dataset_close(ds);
    return rc ? 1 : 0;
}
