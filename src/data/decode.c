/* JPEG and PNG decoding to 8-bit RGB, matching PIL's Image.open(f).convert('RGB') pixel for
 * pixel: TurboJPEG with the islow DCT and fancy upsampling (PIL's libjpeg defaults), and
 * libpng with PIL's mode conversions. The format comes from the magic bytes, never the name. */
#include "data/data_internal.h"
#include "barlow/error.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* PIL's 2 * MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3. */
#define BT_MAX_IMAGE_PIXELS (2ull * (1024ull * 1024 * 1024 / 4 / 3))

void bt_decoder_init(bt_decoder *dc) { memset(dc, 0, sizeof *dc); }

void bt_decoder_free(bt_decoder *dc) {
    if (dc->tj) tjDestroy((tjhandle)dc->tj);
    bt_free(dc->file);
    bt_free(dc->tmp);
    memset(dc, 0, sizeof *dc);
}

static int grow(uint8_t **p, size_t *cap, size_t n) {
    if (n <= *cap) return BT_OK;
    size_t c = n + n / 4;
    uint8_t *q = bt_alloc(c);
    if (!q) return BT_ENOMEM;
    bt_free(*p);
    *p = q;
    *cap = c;
    return BT_OK;
}

int bt_decoder_file(bt_decoder *dc, size_t n) { return grow(&dc->file, &dc->filecap, n); }

int bt_decoder_image(bt_decoder *dc, bt_image *im, int w, int h) {
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535)
        return bt_fail(BT_EFORMAT, "image size %dx%d out of range", w, h);
    /* The size comes from the header, before any pixel data is seen: a few hundred bytes
     * could otherwise ask for 12 GB. PIL refuses the same images (DecompressionBombError
     * above 2 * Image.MAX_IMAGE_PIXELS). */
    if ((uint64_t)w * (uint64_t)h > BT_MAX_IMAGE_PIXELS)
        return bt_fail(BT_EFORMAT, "image size %dx%d exceeds the %llu-pixel limit (a "
                       "decompression bomb?)", w, h, (unsigned long long)BT_MAX_IMAGE_PIXELS);
    size_t n = (size_t)w * h * 3;
    if (!im->px) dc->imcap = 0;
    if (n > dc->imcap) {
        uint8_t *p = bt_alloc(n);
        if (!p) return BT_ENOMEM;
        bt_free(im->px);
        im->px = p;
        dc->imcap = n;
    }
    im->w = w;
    im->h = h;
    return BT_OK;
}

/* PIL's cmyk2rgb (Convert.c) on PIL's "CMYK;I" unpacking: PIL assumes every CMYK JPEG
 * stores inverted (Adobe) samples, so c = 255 - stored, then r = nk - c*nk/255 rounded. */
static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static int decode_jpeg_(bt_decoder *dc, bt_image *im, const uint8_t *buf, size_t len,
                        const char *name);

/* After a libjpeg error TurboJPEG's handle can keep failing on good images (seen with
 * 2.1.5), so a failed decode throws its handle away. */
static int decode_jpeg(bt_decoder *dc, bt_image *im, const uint8_t *buf, size_t len,
                       const char *name) {
    int rc = decode_jpeg_(dc, im, buf, len, name);
    if (rc && dc->tj) {
        tjDestroy((tjhandle)dc->tj);
        dc->tj = NULL;
    }
    return rc;
}

static int decode_jpeg_(bt_decoder *dc, bt_image *im, const uint8_t *buf, size_t len,
                        const char *name) {
    if (!dc->tj && !(dc->tj = tjInitDecompress()))
        return bt_fail(BT_ENOMEM, "%s: cannot create a TurboJPEG decoder", name);
    tjhandle tj = (tjhandle)dc->tj;
    int w, h, sub, cs;
    if (len > 0xffffffffUL) return bt_fail(BT_EFORMAT, "%s: file too large", name);
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &sub, &cs) != 0)
        return bt_fail(BT_EFORMAT, "%s: bad JPEG: %s", name, tjGetErrorStr2(tj));
    /* The pixel limit is checked on the full size (bt_decoder_image below sees the scaled
     * one): a bomb stays refused whatever the scale. */
    if (dc->scale_cb && (uint64_t)w * (uint64_t)h > BT_MAX_IMAGE_PIXELS)
        return bt_fail(BT_EFORMAT, "%s: image size %dx%d exceeds the %llu-pixel limit (a "
                       "decompression bomb?)", name, w, h, (unsigned long long)BT_MAX_IMAGE_PIXELS);
    dc->full_w = w;
    dc->full_h = h;
    if (dc->scale_cb) {
        int den = dc->scale_cb(dc->scale_ctx, w, h);
        if (den == 2 || den == 4 || den == 8) {
            /* TurboJPEG picks the scaling factor 1/den for exactly these sides */
            tjscalingfactor sf = {1, den};
            w = TJSCALED(w, sf);
            h = TJSCALED(h, sf);
        }
    }
    int rc = bt_decoder_image(dc, im, w, h);
    if (rc) return bt_fail(rc, "%s: %s", name, bt_error());
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    uint8_t *dst = im->px;
    if (cmyk) {
        if ((rc = grow(&dc->tmp, &dc->tmpcap, (size_t)w * h * 4))) return rc;
        dst = dc->tmp;
    }
    /* islow DCT and fancy upsampling: what PIL's libjpeg uses by default. */
    if (tjDecompress2(tj, buf, (unsigned long)len, dst, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB,
                      TJFLAG_ACCURATEDCT) != 0) {
        const char *msg = tjGetErrorStr2(tj);
        /* libjpeg warnings (extraneous bytes, ...) leave a full image and PIL accepts them;
         * running out of data is the one PIL reports as "image file is truncated". */
        if (tjGetErrorCode(tj) != TJERR_WARNING || strstr(msg, "Premature end"))
            return bt_fail(BT_EFORMAT, "%s: bad JPEG: %s", name, msg);
    }
    if (cmyk) {
        size_t n = (size_t)w * h;
        for (size_t p = 0; p < n; p++) {
            const uint8_t *s = dc->tmp + 4 * p;
            int nk = s[3]; /* 255 - (255 - stored k) */
            for (int c = 0; c < 3; c++) im->px[3 * p + c] = (uint8_t)(nk - muldiv255(255 - s[c], nk));
        }
    }
    return BT_OK;
}

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[200];
    jmp_buf jb;
} png_src;

static void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "unexpected end of data");
    memcpy(out, s->buf + s->pos, n);
    s->pos += n;
}
static void png_on_error(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jb, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int decode_png(bt_decoder *dc, bt_image *im, const uint8_t *buf, size_t len,
                      const char *name) {
    png_src src;
    memset(&src, 0, sizeof src);
    src.buf = buf;
    src.len = len;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    if (!png) return bt_fail(BT_ENOMEM, "%s: cannot create a PNG decoder", name);
    png_infop info = png_create_info_struct(png);
    png_bytep *volatile rows = NULL;
    volatile int rc = BT_OK;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return bt_fail(BT_ENOMEM, "%s: cannot create a PNG decoder", name);
    }
    if (setjmp(src.jb)) {
        rc = bt_fail(BT_EFORMAT, "%s: bad PNG: %s", name, src.msg);
        goto done;
    }
    png_set_read_fn(png, &src, png_read_mem);
    /* PIL ignores CRC errors in ancillary chunks only; so does libpng's default. */
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ct = png_get_color_type(png, info);
    if (w > 65535 || h > 65535) {
        rc = bt_fail(BT_EFORMAT, "%s: PNG size %ux%u too large", name, (unsigned)w, (unsigned)h);
        goto done;
    }
    /* PIL opens 16-bit grayscale as mode I and I -> RGB clips at 255 rather than scaling;
     * every other 16-bit mode keeps the high byte (rawmodes "RGB;16B", "LA;16B", ...). */
    int gray16 = depth == 16 && ct == PNG_COLOR_TYPE_GRAY;
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !gray16) png_set_strip_16(png);
    if (gray16) png_set_swap(png); /* host order: read as uint16 below */
    if (!gray16 && (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA))
        png_set_gray_to_rgb(png);
    /* tRNS is not turned into alpha (no png_set_tRNS_to_alpha), and real alpha is dropped. */
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    size_t want = gray16 ? (size_t)w * 2 : (size_t)w * 3;
    if (rowbytes != want) {
        rc = bt_fail(BT_EFORMAT, "%s: unsupported PNG layout (depth %d, colour type %d)", name,
                     depth, ct);
        goto done;
    }
    if ((rc = bt_decoder_image(dc, im, (int)w, (int)h))) {
        rc = bt_fail(rc, "%s: %s", name, bt_error());
        goto done;
    }
    dc->full_w = (int)w; /* never scaled */
    dc->full_h = (int)h;
    uint8_t *base = im->px;
    if (gray16) {
        if ((rc = grow(&dc->tmp, &dc->tmpcap, (size_t)w * h * 2))) goto done;
        base = dc->tmp;
    }
    rows = malloc(sizeof(png_bytep) * h);
    if (!rows) {
        rc = bt_fail(BT_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = base + y * want;
    png_read_image(png, rows);
    if (gray16) {
        const uint16_t *s = (const uint16_t *)(const void *)dc->tmp;
        size_t n = (size_t)w * h;
        for (size_t p = 0; p < n; p++) {
            uint8_t v = s[p] > 255 ? 255 : (uint8_t)s[p];
            im->px[3 * p] = im->px[3 * p + 1] = im->px[3 * p + 2] = v;
        }
    }
done:
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return rc;
}

int bt_decoder_decode(bt_decoder *dc, bt_image *im, const uint8_t *buf, size_t len,
                      const char *name) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return decode_jpeg(dc, im, buf, len, name);
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0) return decode_png(dc, im, buf, len, name);
    return bt_fail(BT_EFORMAT, "%s: not a JPEG or PNG image (%zu bytes)", name, len);
}

int bt_decode_image(bt_image *im, const uint8_t *buf, size_t len, const char *name) {
    bt_decoder dc;
    bt_decoder_init(&dc);
    dc.imcap = im->px ? (size_t)im->w * im->h * 3 : 0;
    int rc = bt_decoder_decode(&dc, im, buf, len, name);
    bt_decoder_free(&dc);
    return rc;
}
