/* PNG charts with cairo (see plot.h): a shared frame (title, axes, ticks at "nice" values,
 * axis labels, legend) and the three chart kinds `barlow report` needs. Text uses cairo's
 * toy font API with the "sans-serif" face (DejaVu Sans on Debian), which is enough for
 * labels and avoids pulling in pango. */
#include "barlow/plot.h"
#include "barlow/error.h"
#include <cairo.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tableau 10: distinct hues for series and classes. */
static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

typedef struct {
    cairo_surface_t *sf;
    cairo_t *cr;
    int w, h;
    double px0, py0, px1, py1; /* plot area in pixels (x0 left, y0 top) */
    double xmin, xmax, ymin, ymax;
    int logy;
} frame;

static int frame_begin(frame *f, const char *path, int w, int h, const char *title) {
    memset(f, 0, sizeof *f);
    if (w < 200 || h < 150 || w > 8000 || h > 8000)
        return bt_fail(BT_EINVAL, "%s: chart size %dx%d out of range (200x150 .. 8000x8000)",
                       path, w, h);
    f->sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    f->cr = cairo_create(f->sf);
    if (cairo_status(f->cr) != CAIRO_STATUS_SUCCESS)
        return bt_fail(BT_ENOMEM, "%s: cairo: %s", path, cairo_status_to_string(cairo_status(f->cr)));
    f->w = w;
    f->h = h;
    cairo_set_source_rgb(f->cr, 1, 1, 1);
    cairo_paint(f->cr);
    cairo_select_font_face(f->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(f->cr, 17);
    cairo_text_extents_t te;
    cairo_text_extents(f->cr, title, &te);
    cairo_set_source_rgb(f->cr, 0, 0, 0);
    cairo_move_to(f->cr, (w - te.width) / 2 - te.x_bearing, 28);
    cairo_show_text(f->cr, title);
    cairo_select_font_face(f->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(f->cr, 12);
    return BT_OK;
}

static int frame_end(frame *f, const char *path, int rc) {
    if (!rc && f->sf) {
        cairo_surface_flush(f->sf);
        cairo_status_t st = cairo_surface_write_to_png(f->sf, path);
        if (st != CAIRO_STATUS_SUCCESS)
            rc = bt_fail(BT_EIO, "%s: cannot write PNG: %s", path, cairo_status_to_string(st));
    }
    if (f->cr) cairo_destroy(f->cr);
    if (f->sf) cairo_surface_destroy(f->sf);
    return rc;
}

/* Text with its anchor at (x, y): ax, ay in {0, 0.5, 1} pick left/centre/right and
 * top/middle/baseline-bottom; angle in radians (labels of the y axis turn by -pi/2). */
static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay,
                    double angle) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, angle);
    cairo_move_to(cr, -te.x_bearing - ax * te.width, -te.y_bearing - ay * te.height);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

static double text_width(cairo_t *cr, const char *s) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    return te.x_advance;
}

/* A step of 1, 2 or 5 times a power of ten giving about `target` intervals over range. */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0; /* -0 and 1e-17 residues of the tick arithmetic */
    snprintf(buf, n, "%.4g", v);
}

static double map_x(const frame *f, double x) {
    return f->px0 + (x - f->xmin) / (f->xmax - f->xmin) * (f->px1 - f->px0);
}
/* y is already log10'd on a log axis */
static double map_y(const frame *f, double y) {
    return f->py1 - (y - f->ymin) / (f->ymax - f->ymin) * (f->py1 - f->py0);
}

/* Pads a degenerate range so the mapping is defined. */
static void fix_range(double *lo, double *hi, double pad_frac) {
    if (!(*hi > *lo)) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d;
        *hi += d;
    } else {
        double d = (*hi - *lo) * pad_frac;
        *lo -= d;
        *hi += d;
    }
}

/* Axes box, grid, ticks with labels, and axis labels for the ranges in f. */
static void draw_axes(frame *f, const char *xlabel, const char *ylabel) {
    cairo_t *cr = f->cr;
    char buf[64];
    cairo_set_line_width(cr, 1);
    /* x ticks */
    double xs = nice_step(f->xmax - f->xmin, 6);
    for (double t = ceil(f->xmin / xs) * xs; t <= f->xmax + xs * 1e-9; t += xs) {
        double X = round(map_x(f, t)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, X, f->py0);
        cairo_line_to(cr, X, f->py1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, X, f->py1);
        cairo_line_to(cr, X, f->py1 + 5);
        cairo_stroke(cr);
        fmt_tick(buf, sizeof buf, t, xs);
        text_at(cr, X, f->py1 + 8, buf, 0.5, 0, 0);
    }
    /* y ticks: 1-2-5 steps, or on a log axis the powers of ten (with 2x and 5x between them
     * when the range spans few decades) */
    double ticks[64];
    int nt = 0;
    if (!f->logy) {
        double ys = nice_step(f->ymax - f->ymin, 6);
        for (double t = ceil(f->ymin / ys) * ys; t <= f->ymax + ys * 1e-9 && nt < 64; t += ys)
            ticks[nt++] = t;
    } else {
        static const double mult[3][9] = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
        static const int nmult[3] = {1, 3, 9};
        double span = f->ymax - f->ymin;
        int level = span > 3 ? 0 : span > 0.7 ? 1 : 2;
        for (; level < 3 && nt < 3; level++) {
            nt = 0;
            for (int e = (int)floor(f->ymin); e <= (int)ceil(f->ymax) && nt < 64; e++)
                for (int k = 0; k < nmult[level] && nt < 64; k++) {
                    double l = log10(mult[level][k]) + e;
                    if (l >= f->ymin && l <= f->ymax) ticks[nt++] = l;
                }
        }
    }
    for (int k = 0; k < nt; k++) {
        double Y = round(map_y(f, ticks[k])) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->px0, Y);
        cairo_line_to(cr, f->px1, Y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, f->px0 - 5, Y);
        cairo_line_to(cr, f->px0, Y);
        cairo_stroke(cr);
        if (f->logy) snprintf(buf, sizeof buf, "%.3g", pow(10, ticks[k]));
        else fmt_tick(buf, sizeof buf, ticks[k], nt > 1 ? ticks[1] - ticks[0] : 1);
        text_at(cr, f->px0 - 8, Y, buf, 1, 0.5, 0);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, f->px0 + 0.5, f->py0 + 0.5, f->px1 - f->px0, f->py1 - f->py0);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 14);
    text_at(cr, (f->px0 + f->px1) / 2, f->h - 12, xlabel, 0.5, 1, 0);
    text_at(cr, 16, (f->py0 + f->py1) / 2, ylabel, 0.5, 0, -M_PI / 2);
    cairo_set_font_size(cr, 12);
}

static void legend_size(cairo_t *cr, const char *const *labels, int n, double *bw,
                        double *bh) {
    double wmax = 0;
    for (int i = 0; i < n; i++) wmax = fmax(wmax, text_width(cr, labels[i]));
    *bw = wmax + 44;
    *bh = 18.0 * n + 10;
}

/* A legend box with a swatch per entry, its top-right corner at (x1, y0). dots: point
 * markers instead of line swatches. */
static void draw_legend(cairo_t *cr, double x1, double y0, const char *const *labels, int n,
                        int dots) {
    double bw, bh;
    legend_size(cr, labels, n, &bw, &bh);
    double x0 = x1 - bw;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
    cairo_rectangle(cr, x0, y0, bw, bh);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double y = y0 + 14 + 18.0 * i;
        const double *c = palette[i % 10];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        if (dots) {
            cairo_arc(cr, x0 + 19, y, 4, 0, 2 * M_PI);
            cairo_fill(cr);
        } else {
            cairo_set_line_width(cr, 2.5);
            cairo_move_to(cr, x0 + 8, y);
            cairo_line_to(cr, x0 + 30, y);
            cairo_stroke(cr);
        }
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, x0 + 36, y, labels[i], 0, 0.5, 0);
    }
}

static int usable(double x, double y, int logy) {
    return isfinite(x) && isfinite(y) && (!logy || y > 0);
}

int bt_plot_lines(const char *path, int w, int h, const char *title, const char *xlabel,
                  const char *ylabel, const bt_plot_series *s, int ns, int logy) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!usable(x, y, logy)) continue;
            if (logy) y = log10(y);
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
        }
    if (!(xmin <= xmax))
        return bt_fail(BT_EINVAL, "%s: no finite%s points to plot", path,
                       logy ? " positive" : "");
    frame f;
    int rc = frame_begin(&f, path, w, h, title);
    if (rc) return frame_end(&f, path, rc);
    f.logy = logy;
    f.px0 = 80;
    f.px1 = w - 25;
    f.py0 = 45;
    f.py1 = h - 60;
    fix_range(&xmin, &xmax, 0);
    fix_range(&ymin, &ymax, 0.05);
    f.xmin = xmin;
    f.xmax = xmax;
    f.ymin = ymin;
    f.ymax = ymax;
    draw_axes(&f, xlabel, ylabel);
    cairo_t *cr = f.cr;
    cairo_save(cr);
    cairo_rectangle(cr, f.px0, f.py0, f.px1 - f.px0, f.py1 - f.py0);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int k = 0; k < ns; k++) {
        const double *c = palette[k % 10];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2);
        int pen = 0, used = 0;
        double lx = 0, ly = 0;
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!usable(x, y, logy)) {
                pen = 0; /* a gap, not a line across the missing point */
                continue;
            }
            lx = map_x(&f, x);
            ly = map_y(&f, logy ? log10(y) : y);
            if (pen) cairo_line_to(cr, lx, ly);
            else cairo_move_to(cr, lx, ly);
            pen = 1;
            used++;
        }
        cairo_stroke(cr);
        /* markers when the points are few enough to tell apart */
        if (used <= 40)
            for (int i = 0; i < s[k].n; i++)
                if (usable(s[k].x[i], s[k].y[i], logy)) {
                    cairo_arc(cr, map_x(&f, s[k].x[i]),
                              map_y(&f, logy ? log10(s[k].y[i]) : s[k].y[i]), 3.5, 0, 2 * M_PI);
                    cairo_fill(cr);
                }
    }
    cairo_restore(cr);
    if (ns > 1) {
        const char *labels[16];
        int nl = ns < 16 ? ns : 16;
        for (int k = 0; k < nl; k++) labels[k] = s[k].label ? s[k].label : "";
        /* the corner whose box covers the fewest line samples: top-right, bottom-right,
         * top-left, bottom-left */
        double bw, bh;
        legend_size(cr, labels, nl, &bw, &bh);
        double cx[4] = {f.px1 - 8, f.px1 - 8, f.px0 + 8 + bw, f.px0 + 8 + bw};
        double cy[4] = {f.py0 + 8, f.py1 - 8 - bh, f.py0 + 8, f.py1 - 8 - bh};
        int best = 0;
        long cover[4] = {0, 0, 0, 0};
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < ns; k++)
                for (int i = 0; i < s[k].n; i++) {
                    int j = i + 1 < s[k].n ? i + 1 : i;
                    if (!usable(s[k].x[i], s[k].y[i], logy) || !usable(s[k].x[j], s[k].y[j], logy))
                        continue;
                    for (int t = 0; t < 8; t++) {
                        double a = t / 8.0;
                        double X = map_x(&f, (1 - a) * s[k].x[i] + a * s[k].x[j]);
                        double yi = logy ? log10(s[k].y[i]) : s[k].y[i];
                        double yj = logy ? log10(s[k].y[j]) : s[k].y[j];
                        double Y = map_y(&f, (1 - a) * yi + a * yj);
                        cover[c] += X >= cx[c] - bw - 6 && X <= cx[c] + 6 && Y >= cy[c] - 6 &&
                                    Y <= cy[c] + bh + 6;
                    }
                }
        for (int c = 1; c < 4; c++)
            if (cover[c] < cover[best]) best = c;
        draw_legend(cr, cx[best], cy[best], labels, nl, 0);
    }
    return frame_end(&f, path, BT_OK);
}

/* Diverging blue-white-red colour map over t in [0, 1]. */
static void diverging(double t, double rgb[3]) {
    static const double lo[3] = {0.13, 0.40, 0.67}, hi[3] = {0.70, 0.09, 0.17};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    const double *e = t < 0.5 ? lo : hi;
    double a = t < 0.5 ? 1 - 2 * t : 2 * t - 1;
    for (int k = 0; k < 3; k++) rgb[k] = 1 + a * (e[k] - 1);
}

int bt_plot_heatmaps(const char *path, int w, int h, const char *title, const char *xlabel,
                     const char *ylabel, const bt_plot_matrix *m, int nm, double vmin,
                     double vmax) {
    if (nm < 1 || !(vmax > vmin))
        return bt_fail(BT_EINVAL, "%s: heatmaps need at least one matrix and vmin < vmax", path);
    for (int k = 0; k < nm; k++)
        if (m[k].rows < 1 || m[k].cols < 1)
            return bt_fail(BT_EINVAL, "%s: empty matrix %d", path, k);
    frame f;
    int rc = frame_begin(&f, path, w, h, title);
    if (rc) return frame_end(&f, path, rc);
    cairo_t *cr = f.cr;
    /* panels: equal squares in a row, then the colour bar */
    double left = 70, bar_w = 90, top = 70, bottom = 55, gap = 60;
    double side = fmin((w - left - bar_w - gap * (nm - 1)) / nm, h - top - bottom);
    /* centre the row of panels and the bar when they leave room */
    left += (w - left - bar_w - gap * (nm - 1) - nm * side) / 2;
    char buf[64];
    for (int k = 0; k < nm; k++) {
        double x0 = left + k * (side + gap), y0 = top;
        int R = m[k].rows, C = m[k].cols;
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) {
                double rgb[3];
                diverging((m[k].v[(size_t)i * C + j] - vmin) / (vmax - vmin), rgb);
                cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
                /* cells overlap by a hair so no seams show between them */
                cairo_rectangle(cr, x0 + side * j / C, y0 + side * i / R, side / C + 0.6,
                                side / R + 0.6);
                cairo_fill(cr);
            }
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_line_width(cr, 1);
        cairo_rectangle(cr, x0, y0, side, side);
        cairo_stroke(cr);
        /* index ticks at cell centres */
        double cs = nice_step(C, 4), rs = nice_step(R, 4);
        for (double t = 0; t < C; t += cs) {
            double X = x0 + side * (t + 0.5) / C;
            cairo_move_to(cr, X, y0 + side);
            cairo_line_to(cr, X, y0 + side + 4);
            cairo_stroke(cr);
            snprintf(buf, sizeof buf, "%d", (int)t);
            text_at(cr, X, y0 + side + 6, buf, 0.5, 0, 0);
        }
        for (double t = 0; t < R; t += rs) {
            double Y = y0 + side * (t + 0.5) / R;
            cairo_move_to(cr, x0 - 4, Y);
            cairo_line_to(cr, x0, Y);
            cairo_stroke(cr);
            snprintf(buf, sizeof buf, "%d", (int)t);
            text_at(cr, x0 - 6, Y, buf, 1, 0.5, 0);
        }
        cairo_set_font_size(cr, 13);
        text_at(cr, x0 + side / 2, y0 - 8, m[k].title ? m[k].title : "", 0.5, 1, 0);
        text_at(cr, x0 + side / 2, y0 + side + 24, xlabel, 0.5, 0, 0);
        if (k == 0) text_at(cr, left - 48, y0 + side / 2, ylabel, 0.5, 0, -M_PI / 2);
        cairo_set_font_size(cr, 12);
    }
    /* colour bar */
    double bx = left + nm * side + (nm - 1) * gap + 25, bw = 16;
    for (int i = 0; i < 256; i++) {
        double rgb[3];
        diverging(1 - i / 255.0, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, bx, top + side * i / 256, bw, side / 256 + 0.6);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, bx, top, bw, side);
    cairo_stroke(cr);
    double vs = nice_step(vmax - vmin, 4);
    for (double t = ceil(vmin / vs) * vs; t <= vmax + vs * 1e-9; t += vs) {
        double Y = top + side * (vmax - t) / (vmax - vmin);
        cairo_move_to(cr, bx + bw, Y);
        cairo_line_to(cr, bx + bw + 4, Y);
        cairo_stroke(cr);
        fmt_tick(buf, sizeof buf, t, vs);
        text_at(cr, bx + bw + 7, Y, buf, 0, 0.5, 0);
    }
    return frame_end(&f, path, BT_OK);
}

int bt_plot_scatter(const char *path, int w, int h, const char *title, const char *xlabel,
                    const char *ylabel, const float *x, const float *y, const int32_t *cls,
                    size_t n, const char *const *class_names, int nclass) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) {
            xmin = fmin(xmin, x[i]);
            xmax = fmax(xmax, x[i]);
            ymin = fmin(ymin, y[i]);
            ymax = fmax(ymax, y[i]);
        }
    if (!(xmin <= xmax)) return bt_fail(BT_EINVAL, "%s: no finite points to plot", path);
    if (nclass < 1) return bt_fail(BT_EINVAL, "%s: no classes", path);
    frame f;
    int rc = frame_begin(&f, path, w, h, title);
    if (rc) return frame_end(&f, path, rc);
    cairo_t *cr = f.cr;
    /* the legend goes right of the plot: reserve the widest class name */
    const char *labels[64];
    char idx[64][16];
    int nl = nclass < 64 ? nclass : 64;
    double wmax = 0;
    for (int c = 0; c < nl; c++) {
        if (class_names && class_names[c]) labels[c] = class_names[c];
        else {
            snprintf(idx[c], sizeof idx[c], "%d", c);
            labels[c] = idx[c];
        }
        wmax = fmax(wmax, text_width(cr, labels[c]));
    }
    f.px0 = 80;
    f.px1 = w - wmax - 70;
    f.py0 = 45;
    f.py1 = h - 60;
    fix_range(&xmin, &xmax, 0.05);
    fix_range(&ymin, &ymax, 0.05);
    f.xmin = xmin;
    f.xmax = xmax;
    f.ymin = ymin;
    f.ymax = ymax;
    draw_axes(&f, xlabel, ylabel);
    cairo_save(cr);
    cairo_rectangle(cr, f.px0, f.py0, f.px1 - f.px0, f.py1 - f.py0);
    cairo_clip(cr);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        int c = cls ? cls[i] : 0;
        const double *col = palette[(c < 0 ? 0 : c) % 10];
        cairo_set_source_rgba(cr, col[0], col[1], col[2], 0.75);
        cairo_arc(cr, map_x(&f, x[i]), map_y(&f, y[i]), 2.8, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
    draw_legend(cr, w - 10, f.py0, labels, nl, 1);
    return frame_end(&f, path, BT_OK);
}

int bt_plot_message(const char *path, int w, int h, const char *title, const char *msg) {
    frame f;
    int rc = frame_begin(&f, path, w, h, title);
    if (rc) return frame_end(&f, path, rc);
    cairo_t *cr = f.cr;
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, 40.5, 50.5, w - 81, h - 91);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_font_size(cr, 16);
    text_at(cr, w / 2.0, h / 2.0, msg, 0.5, 0.5, 0);
    return frame_end(&f, path, BT_OK);
}

void bt_plot_cleanup(void) {
    cairo_debug_reset_static_data();
    /* cairo's toy fonts go through fontconfig, whose configuration stays allocated until
     * FcFini; it is looked up at run time (libfontconfig is loaded as cairo's dependency) so
     * the build needs no fontconfig flags. Fontconfig re-initialises itself on next use. */
    void (*fc_fini)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "FcFini");
    if (fc_fini) fc_fini();
}
