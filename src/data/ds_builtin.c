/* The built-in procedural dataset "builtin:shapes": 32x32 RGB images of ten shape and texture
 * classes drawn on cluttered backgrounds, generated on the fly from (seed, split, index), so
 * runs, tests and demos need no files and every item is the same on every machine.
 *
 * Spec: "builtin:shapes" or "builtin:shapes:KEY=VALUE,..." with keys
 *   seed=N   (default 0)      train=N (default 10000)      test=N (default 2000; serves "val")
 *   clean=1  shapes only: centred, unrotated, one size, white on black, no clutter or noise
 *            (for checking the renderer; 0 by default).
 *   clutter=0  no background blobs, lines or sensor noise; colours, the background gradient,
 *            position, scale and rotation stay random (1 by default).
 *   colour=F   saturation of every drawn colour, 0..1 (default 0.3; 0 = grey levels). Colour
 *            is what two views of an item share most: with fully saturated random colours
 *            (colour=1) minutes of Barlow Twins learn colour rather than shape (kNN 16% against
 *            12% at random init, where 0.3 gives 45% against 20%; README, "The main job").
 * Item i of a split draws everything from bt_rng_key(seed, split, i, 0) (split 0 = train,
 * 1 = test), its label is i % 10 (balanced, and still balanced under --train-limit), and its
 * name is "builtin:shapes/<split>/<i>". Shapes are rendered with 4x4 supersampling, in plain
 * C: this is the dataset's own rasteriser, kept deliberately small. */
#include "data/data_internal.h"
#include "barlow/error.h"
#include "barlow/rng.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SIDE = 32, NCLASS = 10, SS = 4 };
enum { C_CIRCLE, C_SQUARE, C_TRIANGLE, C_CROSS, C_STAR, C_RING, C_HSTRIPES, C_VSTRIPES,
       C_CHECKER, C_ELLIPSE };

static const char *shape_names[NCLASS] = {"circle", "square", "triangle", "cross", "star",
                                          "ring", "hstripes", "vstripes", "checker", "ellipse"};

typedef struct {
    uint64_t seed;
    int split;   /* 0 train, 1 test */
    int clean;
    int clutter; /* 0: no blobs, lines or noise (colours, gradient and pose stay random) */
    float colour; /* 0..1: saturation of every colour (0: grey levels) */
} builtin_impl;

/* ---- rasteriser ---------------------------------------------------------------------- */

typedef struct { float v[SIDE * SIDE * 3]; } canvas; /* (H, W, 3) linear 0..1 colours */

/* Even-odd point-in-polygon over n vertices (x, y interleaved). */
static int in_poly(const float *p, int n, float u, float v) {
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        float xi = p[2 * i], yi = p[2 * i + 1], xj = p[2 * j], yj = p[2 * j + 1];
        if ((yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi) in = !in;
    }
    return in;
}

static float tri_poly[6], star_poly[20];

static void init_polys(void) {
    /* Written identically by every thread, so the benign race cannot change a value. */
    const double pi = 3.14159265358979323846;
    for (int k = 0; k < 3; k++) {
        double a = -pi / 2 + 2 * pi * k / 3;
        tri_poly[2 * k] = (float)cos(a);
        tri_poly[2 * k + 1] = (float)(sin(a) + 0.25); /* centre the triangle's area */
    }
    for (int k = 0; k < 10; k++) {
        double a = -pi / 2 + pi * k / 5, r = k % 2 ? 0.42 : 1.0;
        star_poly[2 * k] = (float)(r * cos(a));
        star_poly[2 * k + 1] = (float)(r * sin(a));
    }
}

/* Is (u, v), in the shape's own frame (the shape spans about [-1, 1]^2), inside class c? */
static int inside(int c, float u, float v) {
    float au = fabsf(u), av = fabsf(v), r2 = u * u + v * v;
    switch (c) {
    case C_CIRCLE: return r2 <= 1.0f;
    case C_SQUARE: return au <= 0.8f && av <= 0.8f;
    case C_TRIANGLE: return in_poly(tri_poly, 3, u, v);
    case C_CROSS: return (au <= 0.3f && av <= 1.0f) || (av <= 0.3f && au <= 1.0f);
    case C_STAR: return in_poly(star_poly, 10, u, v);
    case C_RING: return r2 <= 1.0f && r2 >= 0.36f;
    /* Textures: bars or squares of a 4-period pattern inside a square patch. */
    case C_HSTRIPES: return au <= 0.9f && av <= 0.9f && fmodf((v + 1.0f) * 2.0f, 1.0f) < 0.5f;
    case C_VSTRIPES: return au <= 0.9f && av <= 0.9f && fmodf((u + 1.0f) * 2.0f, 1.0f) < 0.5f;
    case C_CHECKER:
        return au <= 0.9f && av <= 0.9f &&
               (((int)floorf((u + 1.0f) * 2.0f) + (int)floorf((v + 1.0f) * 2.0f)) & 1) == 0;
    case C_ELLIPSE: return u * u + 4.0f * v * v <= 1.0f;
    }
    return 0;
}

static void blend(canvas *cv, int px, float a, const float col[3]) {
    for (int k = 0; k < 3; k++) cv->v[3 * px + k] += a * (col[k] - cv->v[3 * px + k]);
}

/* Draws class c centred at (cx, cy) pixels, radius r pixels, rotated by angle, in colour
 * col, with per-pixel coverage from SS x SS samples. */
static void draw_shape(canvas *cv, int c, float cx, float cy, float r, float angle,
                       const float col[3]) {
    float ca = cosf(angle), sa = sinf(angle), inv = 1.0f / r;
    int x0 = (int)floorf(cx - 1.5f * r), x1 = (int)ceilf(cx + 1.5f * r);
    int y0 = (int)floorf(cy - 1.5f * r), y1 = (int)ceilf(cy + 1.5f * r);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > SIDE) x1 = SIDE;
    if (y1 > SIDE) y1 = SIDE;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int hit = 0;
            for (int sy = 0; sy < SS; sy++)
                for (int sx = 0; sx < SS; sx++) {
                    float dx = (x + (sx + 0.5f) / SS - cx) * inv;
                    float dy = (y + (sy + 0.5f) / SS - cy) * inv;
                    hit += inside(c, ca * dx + sa * dy, -sa * dx + ca * dy);
                }
            if (hit) blend(cv, y * SIDE + x, (float)hit / (SS * SS), col);
        }
}

/* An anti-aliased line segment of the given width (coverage from the distance to it). */
static void draw_line(canvas *cv, float xa, float ya, float xb, float yb, float width,
                      const float col[3]) {
    float dx = xb - xa, dy = yb - ya, len2 = dx * dx + dy * dy + 1e-6f;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            int hit = 0;
            for (int sy = 0; sy < SS; sy++)
                for (int sx = 0; sx < SS; sx++) {
                    float px = x + (sx + 0.5f) / SS - xa, py = y + (sy + 0.5f) / SS - ya;
                    float t = (px * dx + py * dy) / len2;
                    t = t < 0 ? 0 : t > 1 ? 1 : t;
                    float ex = px - t * dx, ey = py - t * dy;
                    hit += ex * ex + ey * ey <= 0.25f * width * width;
                }
            if (hit) blend(cv, y * SIDE + x, (float)hit / (SS * SS), col);
        }
}

/* A soft Gaussian blob: partial opacity, so clutter never has a crisp shape outline. */
static void draw_blob(canvas *cv, float cx, float cy, float sigma, float alpha,
                      const float col[3]) {
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            float dx = x + 0.5f - cx, dy = y + 0.5f - cy;
            float a = alpha * expf(-(dx * dx + dy * dy) / (2 * sigma * sigma));
            if (a > 1e-3f) blend(cv, y * SIDE + x, a, col);
        }
}

static float urand(bt_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)bt_rng_uniform(r);
}

/* Three uniform draws; with saturation sat < 1 the green and blue channels are pulled towards
 * the red one (sat = 0: a grey level), so every setting consumes the same random stream. */
static void rand_colour(bt_rng *r, float col[3], float sat) {
    for (int k = 0; k < 3; k++) col[k] = (float)bt_rng_uniform(r);
    for (int k = 1; k < 3; k++) col[k] = col[0] + sat * (col[k] - col[0]);
}

static float colour_dist(const float a[3], const float b[3]) {
    float s = 0;
    for (int k = 0; k < 3; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return sqrtf(s);
}

/* Renders item `index` of class c into px (SIDE, SIDE, 3). The draw order of the generator is
 * part of the dataset's definition: changing it changes every image. */
static void render(uint8_t *px, const builtin_impl *b, size_t index, int c) {
    static canvas zero;
    canvas cv = zero;
    const float pi = 3.14159265f;
    if (b->clean) {
        const float white[3] = {1, 1, 1};
        draw_shape(&cv, c, SIDE / 2.0f, SIDE / 2.0f, SIDE * 0.35f, 0.0f, white);
    } else {
        bt_rng r = bt_rng_key(b->seed, (uint64_t)b->split, index, 0);
        /* background: a linear gradient between two colours */
        float c0[3], c1[3], mean_bg[3];
        rand_colour(&r, c0, b->colour);
        rand_colour(&r, c1, b->colour);
        float ga = urand(&r, 0, 2 * pi), gx = cosf(ga) / SIDE, gy = sinf(ga) / SIDE;
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                float t = 0.5f + (x - SIDE / 2.0f) * gx + (y - SIDE / 2.0f) * gy;
                for (int k = 0; k < 3; k++) cv.v[3 * (y * SIDE + x) + k] = c0[k] + t * (c1[k] - c0[k]);
            }
        for (int k = 0; k < 3; k++) mean_bg[k] = 0.5f * (c0[k] + c1[k]);
        /* clutter behind the shape: soft blobs and thin lines */
        int nblob = 0, nline = 0;
        if (b->clutter) {
            nblob = (int)bt_rng_below(&r, 4);
            nline = (int)bt_rng_below(&r, 4);
        }
        for (int k = 0; k < nblob; k++) {
            float col[3];
            rand_colour(&r, col, b->colour);
            float bx = urand(&r, 0, SIDE), by = urand(&r, 0, SIDE), s = urand(&r, 1.5f, 4.0f);
            draw_blob(&cv, bx, by, s, urand(&r, 0.3f, 0.7f), col);
        }
        for (int k = 0; k < nline; k++) {
            float col[3];
            rand_colour(&r, col, b->colour);
            float xa = urand(&r, 0, SIDE), ya = urand(&r, 0, SIDE);
            float xb = urand(&r, 0, SIDE), yb = urand(&r, 0, SIDE);
            draw_line(&cv, xa, ya, xb, yb, urand(&r, 0.6f, 1.4f), col);
        }
        /* the shape: a colour that stands out from the background's mean */
        float fg[3];
        for (int t = 0; t < 32; t++) {
            rand_colour(&r, fg, b->colour);
            if (colour_dist(fg, mean_bg) > 0.45f) break;
        }
        float rad = urand(&r, 7.0f, 12.0f);
        float cx = urand(&r, 10.0f, SIDE - 10.0f), cy = urand(&r, 10.0f, SIDE - 10.0f);
        /* stripes keep their orientation class: rotation within +-20 degrees */
        float ang = c == C_HSTRIPES || c == C_VSTRIPES ? urand(&r, -0.35f, 0.35f)
                                                       : urand(&r, 0, 2 * pi);
        draw_shape(&cv, c, cx, cy, rad, ang, fg);
        /* sensor noise */
        float amp = b->clutter ? urand(&r, 0.0f, 0.08f) : 0.0f;
        for (int k = 0; amp > 0.0f && k < SIDE * SIDE * 3; k++) /* nothing draws after it */
            cv.v[k] += amp * ((float)bt_rng_uniform(&r) + (float)bt_rng_uniform(&r) - 1.0f);
    }
    for (int k = 0; k < SIDE * SIDE * 3; k++) {
        float v = cv.v[k] * 255.0f + 0.5f;
        px[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

/* ---- dataset kind ---------------------------------------------------------------------- */

static int builtin_load(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc) {
    int rc = bt_decoder_image(dc, im, SIDE, SIDE);
    if (rc) return rc;
    render(im->px, ds->impl, i, ds->labels[i]);
    return BT_OK;
}

static void builtin_close(bt_dataset *ds) { free(ds->impl); }

static const bt_dataset_ops builtin_ops = {"builtin", builtin_load, builtin_close};

/* Parses a non-negative decimal number no larger than max. */
static int parse_count(const char *spec, const char *key, const char *val, size_t len,
                       unsigned long long max, unsigned long long *out) {
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return bt_fail(BT_EINVAL, "%s: bad value for %s (expected a number)", spec, key);
    memcpy(buf, val, len);
    buf[len] = 0;
    for (size_t k = 0; k < len; k++)
        if (buf[k] < '0' || buf[k] > '9')
            return bt_fail(BT_EINVAL, "%s: bad value '%s' for %s (expected a number)", spec,
                           buf, key);
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno || v > max)
        return bt_fail(BT_EINVAL, "%s: %s=%s out of range (at most %llu)", spec, key, buf, max);
    *out = v;
    return BT_OK;
}

/* Parses a decimal number in [0, 1]. */
static int parse_unit(const char *spec, const char *key, const char *val, size_t len,
                      double *out) {
    char buf[32], *end;
    if (len == 0 || len >= sizeof buf)
        return bt_fail(BT_EINVAL, "%s: bad value for %s (expected a number in [0, 1])", spec, key);
    memcpy(buf, val, len);
    buf[len] = 0;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end || errno || !(v >= 0.0 && v <= 1.0))
        return bt_fail(BT_EINVAL, "%s: bad value '%s' for %s (expected a number in [0, 1])",
                       spec, buf, key);
    *out = v;
    return BT_OK;
}

/* The option keys, as the error messages list them. */
#define BUILTIN_KEYS "seed, train, test, clean, clutter, colour"

int bt_builtin_open_(bt_dataset **out, const char *spec, const char *split) {
    *out = NULL;
    const char *name = spec + strlen("builtin:");
    size_t nlen = strcspn(name, ":");
    if (nlen != strlen("shapes") || strncmp(name, "shapes", nlen))
        return bt_fail(BT_EINVAL, "DATA: %s: unknown built-in dataset '%.*s' (known: "
                                  "builtin:shapes)", spec, (int)nlen, name);
    unsigned long long seed = 0, ntrain = 10000, ntest = 2000, clean = 0, clutter = 1;
    double colour = 0.3;
    const char *p = name + nlen;
    if (*p == ':') {
        p++;
        if (!*p) return bt_fail(BT_EINVAL, "DATA: %s: empty option list", spec);
        while (*p) {
            size_t len = strcspn(p, ","), klen = strcspn(p, "=");
            if (klen >= len)
                return bt_fail(BT_EINVAL, "DATA: %s: option '%.*s' is not KEY=VALUE (keys: "
                                          BUILTIN_KEYS ")", spec, (int)len, p);
            const char *val = p + klen + 1;
            size_t vlen = len - klen - 1;
            int rc;
            if (klen == 4 && !strncmp(p, "seed", 4))
                rc = parse_count(spec, "seed", val, vlen, UINT64_MAX, &seed);
            else if (klen == 5 && !strncmp(p, "train", 5))
                rc = parse_count(spec, "train", val, vlen, 100000000, &ntrain);
            else if (klen == 4 && !strncmp(p, "test", 4))
                rc = parse_count(spec, "test", val, vlen, 100000000, &ntest);
            else if (klen == 5 && !strncmp(p, "clean", 5))
                rc = parse_count(spec, "clean", val, vlen, 1, &clean);
            else if (klen == 7 && !strncmp(p, "clutter", 7))
                rc = parse_count(spec, "clutter", val, vlen, 1, &clutter);
            else if (klen == 6 && !strncmp(p, "colour", 6))
                rc = parse_unit(spec, "colour", val, vlen, &colour);
            else
                rc = bt_fail(BT_EINVAL, "DATA: %s: unknown option '%.*s' (keys: " BUILTIN_KEYS ")",
                             spec, (int)klen, p);
            if (rc) return rc;
            p += len;
            if (*p == ',') {
                p++;
                if (!*p) return bt_fail(BT_EINVAL, "DATA: %s: trailing ','", spec);
            }
        }
    }
    int train = !strcmp(split, "train");
    unsigned long long n = train ? ntrain : ntest;
    if (n == 0)
        return bt_fail(BT_EINVAL, "DATA: %s: the %s split is empty (%s=0)", spec, split,
                       train ? "train" : "test");
    init_polys();
    bt_dataset *ds = bt_dataset_new_(&builtin_ops);
    if (!ds) return BT_ENOMEM;
    builtin_impl *b = calloc(1, sizeof *b);
    if (!b) {
        bt_dataset_close(ds);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    b->seed = seed;
    b->split = train ? 0 : 1;
    b->clean = (int)clean;
    b->clutter = (int)clutter;
    b->colour = (float)colour;
    ds->impl = b;
    int rc = bt_dataset_set_classes_(ds, (char **)shape_names, NCLASS);
    for (unsigned long long i = 0; !rc && i < n; i++)
        rc = bt_dataset_push_(ds, bt_strfmt_("builtin:shapes/%s/%llu", train ? "train" : "test",
                                             i), (int32_t)(i % NCLASS));
    if (rc) {
        bt_dataset_close(ds);
        return rc;
    }
    *out = ds;
    return BT_OK;
}
