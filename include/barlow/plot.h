/* Small PNG charts drawn with cairo for `barlow report`: line plots (optionally log-y),
 * heatmaps side by side with a colour bar, class-coloured scatter plots, and a placeholder
 * card with a message. Every chart has a title, labelled axes with tick labels, and a legend
 * where there are several series. Each call writes one w x h RGB PNG; errors (bad sizes, no
 * finite data, a write failure) return BT_EINVAL / BT_EIO with a message naming the path. */
#ifndef BARLOW_PLOT_H
#define BARLOW_PLOT_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *label;   /* legend text */
    const double *x, *y; /* (n) points; non-finite ones (and y <= 0 on a log axis) skipped */
    int n;
} bt_plot_series;

/* Lines through each series' points, in series order, with a legend when ns > 1. A series
 * with one point is drawn as a dot. logy: log10 y axis. */
int bt_plot_lines(const char *path, int w, int h, const char *title, const char *xlabel,
                  const char *ylabel, const bt_plot_series *s, int ns, int logy);

typedef struct {
    const char *title;  /* panel title */
    const float *v;     /* (rows, cols) row-major */
    int rows, cols;
} bt_plot_matrix;

/* The matrices as square heatmap panels side by side, on one diverging colour scale
 * (blue vmin .. white .. red vmax; values outside are clipped) shown by a colour bar at the
 * right. xlabel/ylabel name the column and row indices. */
int bt_plot_heatmaps(const char *path, int w, int h, const char *title, const char *xlabel,
                     const char *ylabel, const bt_plot_matrix *m, int nm, double vmin,
                     double vmax);

/* n points (x[i], y[i]) coloured by cls[i] in [0, nclass) (a 10-colour palette, cycled),
 * with a legend of class_names (NULL: the class indices). */
int bt_plot_scatter(const char *path, int w, int h, const char *title, const char *xlabel,
                    const char *ylabel, const float *x, const float *y, const int32_t *cls,
                    size_t n, const char *const *class_names, int nclass);

/* A card with the title and a centred message, for a chart that has no data. */
int bt_plot_message(const char *path, int w, int h, const char *title, const char *msg);

/* Frees cairo's global caches (fonts, patterns), so leak checkers see a clean exit. Call only
 * when no chart is being drawn, e.g. at the end of a command. */
void bt_plot_cleanup(void);

#endif
