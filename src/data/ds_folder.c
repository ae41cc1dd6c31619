/* ImageFolder datasets: <split>/<class>/.../<image>, in torchvision's order (classes sorted
 * by name; within a class, sorted(os.walk(class_dir, followlinks=True)) with each
 * directory's files sorted), so label and index i mean the same item as in PyTorch. */
#include "data/data_internal.h"
#include "barlow/error.h"
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static int sv_push(strvec *s, char *p) {
    if (!p) return BT_ENOMEM;
    if (s->n == s->cap) {
        size_t c = s->cap ? 2 * s->cap : 16;
        char **v = realloc(s->v, c * sizeof *v);
        if (!v) {
            free(p);
            return bt_fail(BT_ENOMEM, "out of memory");
        }
        s->v = v;
        s->cap = c;
    }
    s->v[s->n++] = p;
    return BT_OK;
}
static void sv_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *n) {
    size_t l = strlen(n);
    return (l > 4 && (!strcasecmp(n + l - 4, ".jpg") || !strcasecmp(n + l - 4, ".png"))) ||
           (l > 5 && !strcasecmp(n + l - 5, ".jpeg"));
}

/* Lists dir's entries: subdirectories (following links) into dirs, image files into files,
 * both as full paths. */
static int list_dir(const char *dir, strvec *dirs, strvec *files) {
    DIR *d = opendir(dir);
    if (!d) return bt_fail(BT_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = BT_OK;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = bt_strfmt_("%s/%s", dir, e->d_name);
        if (!p) {
            rc = BT_ENOMEM;
            break;
        }
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p);
            continue; /* dangling link: os.walk skips it too */
        }
        if (S_ISDIR(st.st_mode) && dirs) rc = sv_push(dirs, p);
        else if (S_ISREG(st.st_mode) && files && is_image_name(e->d_name)) rc = sv_push(files, p);
        else free(p);
    }
    closedir(d);
    return rc;
}

/* All directories under root (root included), sorted by path as sorted(os.walk()) does. */
static int walk_dirs(const char *root, strvec *out) {
    int rc = sv_push(out, bt_strdup_(root));
    for (size_t k = 0; !rc && k < out->n; k++) {
        if (out->n > 1000000) return bt_fail(BT_EINVAL, "%s: too many directories", root);
        rc = list_dir(out->v[k], out, NULL);
    }
    if (!rc) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return rc;
}

static int folder_load(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc) {
    size_t len;
    int rc = bt_read_file_(dc, ds->names[i], &len);
    if (rc) return rc;
    return bt_decoder_decode(dc, im, dc->file, len, ds->names[i]);
}

static const bt_dataset_ops folder_ops = {"folder", folder_load, NULL};

int bt_folder_open_(bt_dataset **out, const char *root, const char *split) {
    (void)split;
    strvec classes = {0}, dirs = {0}, files = {0};
    bt_dataset *ds = bt_dataset_new_(&folder_ops);
    if (!ds) return BT_ENOMEM;
    int rc = list_dir(root, &classes, NULL);
    if (!rc && classes.n == 0) rc = bt_fail(BT_EINVAL, "%s: no class folders", root);
    if (!rc) qsort(classes.v, classes.n, sizeof *classes.v, cmp_str);
    if (!rc && classes.n > 1000000) rc = bt_fail(BT_EINVAL, "%s: too many classes", root);
    for (size_t c = 0; !rc && c < classes.n; c++) {
        rc = walk_dirs(classes.v[c], &dirs);
        size_t before = ds->n_all;
        for (size_t k = 0; !rc && k < dirs.n; k++) {
            rc = list_dir(dirs.v[k], NULL, &files);
            if (!rc && files.n > 1) qsort(files.v, files.n, sizeof *files.v, cmp_str);
            for (size_t f = 0; !rc && f < files.n; f++) {
                rc = bt_dataset_push_(ds, files.v[f], (int32_t)c);
                files.v[f] = NULL;
            }
            sv_free(&files);
        }
        sv_free(&dirs);
        if (!rc && ds->n_all == before)
            rc = bt_fail(BT_EINVAL, "%s: class folder has no .jpg/.jpeg/.png images",
                         classes.v[c]);
    }
    if (!rc) {
        /* Class names are the folder names, without the root. */
        size_t rl = strlen(root) + 1;
        for (size_t c = 0; c < classes.n; c++) memmove(classes.v[c], classes.v[c] + rl, strlen(classes.v[c] + rl) + 1);
        rc = bt_dataset_set_classes_(ds, classes.v, (int)classes.n);
    }
    sv_free(&classes);
    sv_free(&dirs);
    sv_free(&files);
    if (rc) {
        bt_dataset_close(ds);
        return rc;
    }
    *out = ds;
    return BT_OK;
}
