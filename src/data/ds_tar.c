/* WebDataset tar shards: each shard is indexed once at open by walking its ustar headers
 * (GNU long names and pax path records included); members KEY.jpg/.jpeg/.png and KEY.cls
 * of the same KEY form one sample, and images are read later with pread, never unpacked. */
#include "data/data_internal.h"
#include "barlow/error.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int nshards;
    int *fd;         /* (nshards) */
    uint32_t *shard; /* (n_all) */
    uint64_t *off;   /* (n_all) image member's data offset */
    uint64_t *size;  /* (n_all) */
} tar_impl;

/* ---- shard spec expansion ---- */

typedef struct {
    char **v;
    int n, cap;
} plist;

static int pl_push(plist *l, char *s) {
    if (!s) return BT_ENOMEM;
    if (l->n == l->cap) {
        int c = l->cap ? 2 * l->cap : 8;
        char **v = realloc(l->v, (size_t)c * sizeof *v);
        if (!v) {
            free(s);
            return bt_fail(BT_ENOMEM, "out of memory");
        }
        l->v = v;
        l->cap = c;
    }
    l->v[l->n++] = s;
    return BT_OK;
}

/* Expands the first {a..b} or {x,y,z} group of s, recursively; glob patterns ('*') are
 * matched against the file system in name order. */
static int expand_one(const char *s, plist *out, int depth) {
    if (depth > 8 || out->n > 1000000) return bt_fail(BT_EINVAL, "%s: shard pattern too large", s);
    const char *lb = strchr(s, '{');
    if (!lb) {
        if (!strchr(s, '*') && !strchr(s, '?')) return pl_push(out, bt_strdup_(s));
        glob_t g;
        int r = glob(s, 0, NULL, &g);
        if (r == GLOB_NOMATCH) return bt_fail(BT_EINVAL, "%s: no tar shards match", s);
        if (r != 0) return bt_fail(BT_EIO, "%s: glob failed", s);
        int rc = BT_OK;
        for (size_t k = 0; !rc && k < g.gl_pathc; k++) rc = pl_push(out, bt_strdup_(g.gl_pathv[k]));
        globfree(&g);
        return rc;
    }
    const char *rb = strchr(lb, '}');
    if (!rb) return bt_fail(BT_EINVAL, "%s: unmatched '{' in shard pattern", s);
    size_t pre = (size_t)(lb - s), inner = (size_t)(rb - lb - 1);
    char body[256];
    if (inner >= sizeof body) return bt_fail(BT_EINVAL, "%s: brace group too long", s);
    memcpy(body, lb + 1, inner);
    body[inner] = 0;
    char *dots = strstr(body, "..");
    int rc = BT_OK;
    if (dots) {
        char *end1, *end2;
        *dots = 0;
        long a = strtol(body, &end1, 10), b = strtol(dots + 2, &end2, 10);
        if (end1 == body || *end1 || end2 == dots + 2 || *end2 || a < 0 || b < a)
            return bt_fail(BT_EINVAL, "%s: bad range {%s..%s} in shard pattern", s, body, dots + 2);
        /* Zero-padded when a bound has a leading zero, to the wider bound's width. */
        int la = (int)strlen(body), lbw = (int)strlen(dots + 2);
        int width = (body[0] == '0' && la > 1) || (dots[2] == '0' && lbw > 1) ? (la > lbw ? la : lbw) : 0;
        for (long k = a; !rc && k <= b; k++) {
            char *t = bt_strfmt_("%.*s%0*ld%s", (int)pre, s, width, k, rb + 1);
            if (!t) return BT_ENOMEM;
            rc = expand_one(t, out, depth + 1);
            free(t);
        }
    } else {
        char *save = NULL;
        for (char *tok = strtok_r(body, ",", &save); !rc && tok; tok = strtok_r(NULL, ",", &save)) {
            char *t = bt_strfmt_("%.*s%s%s", (int)pre, s, tok, rb + 1);
            if (!t) return BT_ENOMEM;
            rc = expand_one(t, out, depth + 1);
            free(t);
        }
    }
    return rc;
}

int bt_tar_expand_(const char *spec, char ***paths, int *n) {
    plist out = {0};
    int rc = BT_OK, depth = 0;
    const char *start = spec;
    /* Top-level commas separate shards; commas inside braces are alternatives. */
    for (const char *p = spec;; p++) {
        if (*p == '{') depth++;
        if (*p == '}') depth--;
        if (*p == 0 || (*p == ',' && depth == 0)) {
            if (p > start) {
                char *part = bt_strfmt_("%.*s", (int)(p - start), start);
                rc = part ? expand_one(part, &out, 0) : BT_ENOMEM;
                free(part);
                if (rc) break;
            }
            if (!*p) break;
            start = p + 1;
        }
    }
    if (!rc && out.n == 0) rc = bt_fail(BT_EINVAL, "%s: no tar shards", spec);
    if (rc) {
        for (int k = 0; k < out.n; k++) free(out.v[k]);
        free(out.v);
        return rc;
    }
    *paths = out.v;
    *n = out.n;
    return BT_OK;
}

/* ---- indexing ---- */

static uint64_t parse_octal(const uint8_t *p, int n, int *ok) {
    if (p[0] & 0x80) { /* GNU base-256 for sizes of 8 GiB and more */
        uint64_t v = p[0] & 0x7f;
        for (int k = 1; k < n; k++) v = v << 8 | p[k];
        return v;
    }
    uint64_t v = 0;
    int k = 0, digits = 0;
    while (k < n && p[k] == ' ') k++;
    for (; k < n && p[k] >= '0' && p[k] <= '7'; k++, digits++) v = v * 8 + (uint64_t)(p[k] - '0');
    for (; k < n; k++)
        if (p[k] != ' ' && p[k] != 0) *ok = 0;
    if (!digits) *ok = 0;
    return v;
}

static int read_at(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

typedef struct {
    char key[1024];
    int have_img, have_cls;
    char img_name[1100];
    uint64_t img_off, img_size;
    int32_t cls;
} sample;

static int finish_sample(bt_dataset *ds, tar_impl *t, int s, const char *shard, sample *sm) {
    if (!sm->key[0]) return BT_OK;
    if (!sm->have_img)
        return bt_fail(BT_EFORMAT, "%s: sample '%s' has no .jpg/.jpeg/.png member", shard, sm->key);
    if (!sm->have_cls)
        return bt_fail(BT_EFORMAT, "%s: sample '%s' has no .cls member", shard, sm->key);
    size_t i = ds->n_all;
    if ((i & (i - 1)) == 0) {
        size_t c = i ? 2 * i : 1;
        uint32_t *a = realloc(t->shard, c * sizeof *a);
        if (a) t->shard = a;
        uint64_t *b = realloc(t->off, c * sizeof *b);
        if (b) t->off = b;
        uint64_t *d = realloc(t->size, c * sizeof *d);
        if (d) t->size = d;
        if (!a || !b || !d) return bt_fail(BT_ENOMEM, "out of memory");
    }
    t->shard[i] = (uint32_t)s;
    t->off[i] = sm->img_off;
    t->size[i] = sm->img_size;
    if (sm->cls + 1 > ds->nclass) ds->nclass = sm->cls + 1;
    sm->key[0] = 0;
    return bt_dataset_push_(ds, bt_strfmt_("%s:%s", shard, sm->img_name), sm->cls);
}

static int index_shard(bt_dataset *ds, tar_impl *t, int s, const char *path) {
    int fd = t->fd[s];
    struct stat st;
    if (fstat(fd, &st) != 0) return bt_fail(BT_EIO, "%s: %s", path, strerror(errno));
    uint64_t fsize = (uint64_t)st.st_size, off = 0;
    uint8_t h[512];
    char longname[1024] = "";
    sample sm;
    memset(&sm, 0, sizeof sm);
    int rc = BT_OK;
    while (!rc) {
        if (off == fsize) break; /* no end-of-archive blocks: accepted */
        if (off + 512 > fsize)
            return bt_fail(BT_EFORMAT, "%s: truncated tar header at byte offset %llu", path,
                           (unsigned long long)off);
        if (read_at(fd, h, 512, off)) return bt_fail(BT_EIO, "%s: read failed at byte %llu",
                                                     path, (unsigned long long)off);
        int zero = 1;
        for (int k = 0; k < 512 && zero; k++) zero = h[k] == 0;
        if (zero) break;
        int ok = 1;
        uint64_t want = parse_octal(h + 148, 8, &ok);
        uint64_t sum = 0;
        int64_t ssum = 0;
        for (int k = 0; k < 512; k++) {
            int b = k >= 148 && k < 156 ? ' ' : h[k];
            sum += (uint64_t)b;
            ssum += k >= 148 && k < 156 ? ' ' : (int8_t)h[k];
        }
        if (!ok || (sum != want && (uint64_t)ssum != want))
            return bt_fail(BT_EFORMAT, "%s: bad tar header checksum at byte offset %llu", path,
                           (unsigned long long)off);
        ok = 1;
        uint64_t size = parse_octal(h + 124, 12, &ok);
        if (!ok) return bt_fail(BT_EFORMAT, "%s: bad member size field at byte offset %llu",
                                path, (unsigned long long)off);
        uint64_t data = off + 512;
        char name[1024];
        if (size > fsize || data + size > fsize)
            return bt_fail(BT_EFORMAT, "%s: member at byte offset %llu runs past the end of the "
                           "file (%llu data bytes, file has %llu)", path,
                           (unsigned long long)off, (unsigned long long)size,
                           (unsigned long long)fsize);
        char type = (char)h[156];
        if (longname[0]) {
            snprintf(name, sizeof name, "%s", longname);
            longname[0] = 0;
        } else if (!memcmp(h + 257, "ustar", 5) && h[345]) {
            snprintf(name, sizeof name, "%.155s/%.100s", (const char *)h + 345, (const char *)h);
        } else {
            snprintf(name, sizeof name, "%.100s", (const char *)h);
        }
        if (type == 'L' || type == 'x') {
            char buf[4096];
            size_t n = size < sizeof buf - 1 ? (size_t)size : sizeof buf - 1;
            if (read_at(fd, buf, n, data)) return bt_fail(BT_EIO, "%s: read failed", path);
            buf[n] = 0;
            if (type == 'L') {
                snprintf(longname, sizeof longname, "%.1023s", buf);
            } else { /* pax records "LEN key=value\n": keep path= */
                for (char *p = buf; p < buf + n;) {
                    long len = strtol(p, NULL, 10);
                    /* compared as lengths: p + len could overflow for a hostile len */
                    if (len <= 0 || len > buf + n - p) break;
                    char *sp = memchr(p, ' ', (size_t)len);
                    if (sp && sp + 6 < p + len && !strncmp(sp + 1, "path=", 5)) {
                        int vl = (int)(p + len - (sp + 6) - 1);
                        snprintf(longname, sizeof longname, "%.*s", vl, sp + 6);
                    }
                    p += len;
                }
            }
        } else if (type == '0' || type == 0 || type == '7') {
            /* KEY is everything before the first dot of the last path component. */
            const char *base = strrchr(name, '/');
            base = base ? base + 1 : name;
            const char *dot = strchr(base, '.');
            if (dot) {
                char key[1024];
                snprintf(key, sizeof key, "%.*s", (int)(dot - name), name);
                const char *ext = dot + 1;
                if (strcmp(key, sm.key)) {
                    if ((rc = finish_sample(ds, t, s, path, &sm))) return rc;
                    snprintf(sm.key, sizeof sm.key, "%s", key);
                    sm.have_img = sm.have_cls = 0;
                }
                if (!strcasecmp(ext, "jpg") || !strcasecmp(ext, "jpeg") || !strcasecmp(ext, "png")) {
                    sm.have_img = 1;
                    sm.img_off = data;
                    sm.img_size = size;
                    snprintf(sm.img_name, sizeof sm.img_name, "%s", name);
                } else if (!strcasecmp(ext, "cls")) {
                    char buf[32];
                    size_t n = size < 31 ? (size_t)size : 31;
                    if (read_at(fd, buf, n, data)) return bt_fail(BT_EIO, "%s: read failed", path);
                    buf[n] = 0;
                    char *e;
                    long v = strtol(buf, &e, 10);
                    while (*e && isspace((unsigned char)*e)) e++;
                    if (e == buf || *e || v < 0 || v > 1000000 || size > 31)
                        return bt_fail(BT_EFORMAT, "%s: member %s at byte offset %llu: bad class "
                                       "index '%s'", path, name, (unsigned long long)off, buf);
                    sm.have_cls = 1;
                    sm.cls = (int32_t)v;
                }
            }
        }
        off = data + ((size + 511) & ~(uint64_t)511);
        if (off > fsize)
            return bt_fail(BT_EFORMAT, "%s: member at byte offset %llu is cut short (its "
                           "padding runs past the end of the file)", path,
                           (unsigned long long)(data - 512));
    }
    return finish_sample(ds, t, s, path, &sm);
}

static int tar_load(const bt_dataset *ds, size_t i, bt_image *im, bt_decoder *dc) {
    const tar_impl *t = ds->impl;
    size_t n = (size_t)t->size[i];
    int rc = bt_decoder_file(dc, n ? n : 1);
    if (rc) return rc;
    if (read_at(t->fd[t->shard[i]], dc->file, n, t->off[i]))
        return bt_fail(BT_EIO, "%s: read failed: %s", ds->names[i], strerror(errno));
    return bt_decoder_decode(dc, im, dc->file, n, ds->names[i]);
}

static void tar_close(bt_dataset *ds) {
    tar_impl *t = ds->impl;
    if (!t) return;
    for (int s = 0; s < t->nshards; s++)
        if (t->fd[s] >= 0) close(t->fd[s]);
    free(t->fd);
    free(t->shard);
    free(t->off);
    free(t->size);
    free(t);
}

static const bt_dataset_ops tar_ops = {"tar", tar_load, tar_close};

int bt_tar_open_(bt_dataset **out, const char *spec, const char *split) {
    char *sp = NULL;
    const char *at = strstr(spec, "{split}");
    if (at) {
        sp = bt_strfmt_("%.*s%s%s", (int)(at - spec), spec, split, at + 7);
        if (!sp) return BT_ENOMEM;
        spec = sp;
    }
    char **paths = NULL;
    int np = 0;
    int rc = bt_tar_expand_(spec, &paths, &np);
    bt_dataset *ds = NULL;
    tar_impl *t = NULL;
    if (!rc) {
        ds = bt_dataset_new_(&tar_ops);
        t = calloc(1, sizeof *t);
        if (ds) ds->impl = t;
        if (t) t->fd = malloc((size_t)np * sizeof(int));
        if (!ds || !t || !t->fd) rc = bt_fail(BT_ENOMEM, "out of memory");
    }
    for (int s = 0; !rc && s < np; s++) {
        t->fd[s] = open(paths[s], O_RDONLY | O_CLOEXEC);
        t->nshards = s + 1;
        if (t->fd[s] < 0) rc = bt_fail(BT_EINVAL, "DATA: tar shard %s: %s", paths[s], strerror(errno));
        else rc = index_shard(ds, t, s, paths[s]);
    }
    if (!rc && ds->n_all == 0) rc = bt_fail(BT_EINVAL, "%s: no samples in the tar shards", spec);
    if (!rc) {
        char **names = malloc((size_t)ds->nclass * sizeof *names);
        int made = 0;
        rc = names ? BT_OK : bt_fail(BT_ENOMEM, "out of memory");
        for (; !rc && made < ds->nclass; made++)
            if (!(names[made] = bt_strfmt_("%d", made))) rc = BT_ENOMEM;
        int nc = ds->nclass;
        ds->nclass = 0;
        if (!rc) rc = bt_dataset_set_classes_(ds, names, nc);
        for (int k = 0; k < made; k++) free(names[k]);
        free(names);
    }
    for (int s = 0; s < np; s++) free(paths[s]);
    free(paths);
    free(sp);
    if (rc) {
        if (ds) bt_dataset_close(ds);
        else free(t);
        return rc;
    }
    *out = ds;
    return BT_OK;
}
