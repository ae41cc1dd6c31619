/* safetensors reader (validating: files are untrusted), atomic writer, and XXH64 checksums.
 * The format and the validation rules are documented in include/barlow/safetensors.h. */
#include "barlow/safetensors.h"
#include "barlow/error.h"
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* JSON numbers are doubles in cJSON: integers above 2^53 would not be exact. */
#define ST_MAX_INT 9007199254740992.0

static const struct { const char *name; size_t size; } st_dtypes[BT_ST_NDTYPES] = {
    [BT_ST_BOOL] = {"BOOL", 1},       [BT_ST_U8] = {"U8", 1},
    [BT_ST_I8] = {"I8", 1},           [BT_ST_F8_E5M2] = {"F8_E5M2", 1},
    [BT_ST_F8_E4M3] = {"F8_E4M3", 1}, [BT_ST_I16] = {"I16", 2},
    [BT_ST_U16] = {"U16", 2},         [BT_ST_F16] = {"F16", 2},
    [BT_ST_BF16] = {"BF16", 2},       [BT_ST_I32] = {"I32", 4},
    [BT_ST_U32] = {"U32", 4},         [BT_ST_F32] = {"F32", 4},
    [BT_ST_I64] = {"I64", 8},         [BT_ST_U64] = {"U64", 8},
    [BT_ST_F64] = {"F64", 8},
};

const char *bt_st_dtype_name(int dtype) {
    return dtype >= 0 && dtype < BT_ST_NDTYPES ? st_dtypes[dtype].name : NULL;
}

int bt_st_dtype(const char *name) {
    for (int i = 0; i < BT_ST_NDTYPES; i++)
        if (!strcmp(st_dtypes[i].name, name)) return i;
    return -1;
}

size_t bt_st_dtype_size(int dtype) {
    return dtype >= 0 && dtype < BT_ST_NDTYPES ? st_dtypes[dtype].size : 0;
}

/* ---- helpers for messages ---- */

/* Names come from untrusted files: keep messages on one line and bounded. */
static const char *st_safe(char *buf, size_t cap, const char *s) {
    size_t j = 0, i = 0;
    for (; s[i] && j + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i]) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = 0;
    return buf;
}

static const char *st_fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t j = 0;
    buf[j++] = '[';
    for (int i = 0; i < ndim && j + 24 < cap; i++)
        j += (size_t)snprintf(buf + j, cap - j, "%s%lld", i ? "," : "", (long long)shape[i]);
    buf[j++] = ']';
    buf[j] = 0;
    return buf;
}

/* Strict UTF-8: no overlongs, surrogates, code points above U+10FFFF, or NUL bytes. */
static int st_utf8_ok(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        int k;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0) k = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) k = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) k = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n - i <= (size_t)k) return 0;
        for (int j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* ---- reader ---- */

struct bt_st_file {
    char *path;
    cJSON *root;                 /* owns the tensor names and metadata strings */
    unsigned char *data;         /* (data_len) the data buffer */
    size_t data_len;
    bt_st_tensor *t;             /* (n) in header order */
    const bt_st_tensor **by_name;/* (n) sorted by name */
    int n;
    const char **meta_k, **meta_v; /* (nmeta) */
    int nmeta;
};

static int st_cmp_name(const void *a, const void *b) {
    return strcmp((*(const bt_st_tensor *const *)a)->name, (*(const bt_st_tensor *const *)b)->name);
}

static int st_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_cmp_begin(const void *a, const void *b) {
    const unsigned char *x = (*(const bt_st_tensor *const *)a)->data;
    const unsigned char *y = (*(const bt_st_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

static int st_read_full(int fd, void *buf, size_t n, off_t off) {
    unsigned char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? errno : -1;
        p += r, n -= (size_t)r, off += r;
    }
    return 0;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int st_json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Validates one tensor entry and fills *t; returns 0 or an error naming the file and tensor. */
static int st_parse_entry(const bt_st_file *f, const cJSON *e, bt_st_tensor *t) {
    char nm[96], sh[256];
    const char *path = f->path;
    st_safe(nm, sizeof nm, e->string);
    if (!e->string[0]) return bt_fail(BT_EFORMAT, "%s: empty tensor name", path);
    if (!cJSON_IsObject(e))
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': entry is not a JSON object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shp = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, nm);
    int dtype = bt_st_dtype(dt->valuestring);
    if (dtype < 0) {
        char d[40];
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, nm,
                       st_safe(d, sizeof d, dt->valuestring));
    }
    if (!cJSON_IsArray(shp))
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, nm);
    int ndim = cJSON_GetArraySize(shp);
    if (ndim > BT_ST_MAX_DIMS)
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': shape has %d dims (at most %d supported)",
                       path, nm, ndim, BT_ST_MAX_DIMS);
    size_t numel = 1;
    int overflow = 0, i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, shp) {
        uint64_t d;
        if (!st_json_uint(v, &d))
            return bt_fail(BT_EFORMAT, "%s: tensor '%s': shape entry %d is not an integer in "
                           "[0, 2^53]", path, nm, i);
        t->shape[i++] = (int64_t)d;
        if ((uint64_t)(size_t)d != d || __builtin_mul_overflow(numel, (size_t)d, &numel)) overflow = 1;
    }
    /* A zero dim makes the tensor empty even if the other dims overflowed on the way. */
    for (int k = 0; k < ndim; k++)
        if (t->shape[k] == 0) numel = 0, overflow = 0;
    size_t esz = st_dtypes[dtype].size, nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, esz, &nbytes))
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': shape %s of %s overflows the address space",
                       path, nm, st_fmt_shape(sh, sizeof sh, ndim, t->shape), st_dtypes[dtype].name);
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !st_json_uint(cJSON_GetArrayItem(off, 0), &b) || !st_json_uint(cJSON_GetArrayItem(off, 1), &en))
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end] with "
                       "integers in [0, 2^53]", path, nm);
    if (b > en || en > f->data_len)
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] outside the data "
                       "buffer (%zu bytes)", path, nm, (unsigned long long)b,
                       (unsigned long long)en, f->data_len);
    if (en - b != nbytes)
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] do not match shape "
                       "%s of %s (%zu bytes)", path, nm, (unsigned long long)b,
                       (unsigned long long)en, st_fmt_shape(sh, sizeof sh, ndim, t->shape),
                       st_dtypes[dtype].name, nbytes);
    t->name = e->string;
    t->dtype = dtype;
    t->ndim = ndim;
    t->numel = numel;
    t->data = f->data + b;
    t->nbytes = nbytes;
    return 0;
}

static int st_parse_meta(bt_st_file *f, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return bt_fail(BT_EFORMAT, "%s: \"__metadata__\" is not a JSON object", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta_k = calloc((size_t)n + 1, sizeof *f->meta_k);
    f->meta_v = calloc((size_t)n + 1, sizeof *f->meta_v);
    if (!f->meta_k || !f->meta_v) return bt_fail(BT_ENOMEM, "%s: out of memory", f->path);
    const cJSON *v;
    cJSON_ArrayForEach(v, m) {
        char k[96];
        if (!cJSON_IsString(v))
            return bt_fail(BT_EFORMAT, "%s: metadata '%s' is not a string", f->path,
                           st_safe(k, sizeof k, v->string));
        f->meta_k[f->nmeta] = v->string;
        f->meta_v[f->nmeta++] = v->valuestring;
    }
    /* Duplicates by sorting a copy: a hostile header may hold millions of keys. */
    const char **s = malloc(((size_t)f->nmeta + 1) * sizeof *s);
    if (!s) return bt_fail(BT_ENOMEM, "%s: out of memory", f->path);
    memcpy(s, f->meta_k, (size_t)f->nmeta * sizeof *s);
    qsort(s, (size_t)f->nmeta, sizeof *s, st_cmp_str);
    int rc = 0;
    for (int i = 1; i < f->nmeta && !rc; i++)
        if (!strcmp(s[i - 1], s[i])) {
            char k[96];
            rc = bt_fail(BT_EFORMAT, "%s: duplicate metadata key '%s'", f->path, st_safe(k, sizeof k, s[i]));
        }
    free(s);
    return rc;
}

/* Everything after reading the bytes: JSON, entries, names, overlaps. */
static int st_parse_header(bt_st_file *f, char *hdr, size_t hlen) {
    const char *path = f->path;
    if (!st_utf8_ok((const unsigned char *)hdr, hlen))
        return bt_fail(BT_EFORMAT, "%s: header is not valid UTF-8 (or contains a NUL byte)", path);
    hdr[hlen] = 0;
    const char *end = NULL;
    f->root = cJSON_ParseWithOpts(hdr, &end, 1);
    if (!f->root)
        return bt_fail(BT_EFORMAT, "%s: header is not valid JSON (error near byte %td of %zu)",
                       path, end ? end - hdr : (ptrdiff_t)-1, hlen);
    if (!cJSON_IsObject(f->root))
        return bt_fail(BT_EFORMAT, "%s: header is not a JSON object", path);
    int n = cJSON_GetArraySize(f->root);
    f->t = calloc((size_t)n + 1, sizeof *f->t);
    f->by_name = calloc((size_t)n + 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) return bt_fail(BT_ENOMEM, "%s: out of memory", path);
    int have_meta = 0, rc;
    const cJSON *e;
    cJSON_ArrayForEach(e, f->root) {
        if (!strcmp(e->string, "__metadata__")) {
            if (have_meta++) return bt_fail(BT_EFORMAT, "%s: \"__metadata__\" appears twice", path);
            if ((rc = st_parse_meta(f, e))) return rc;
            continue;
        }
        if ((rc = st_parse_entry(f, e, &f->t[f->n]))) return rc;
        f->by_name[f->n] = &f->t[f->n];
        f->n++;
    }
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, st_cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name)) {
            char nm[96];
            return bt_fail(BT_EFORMAT, "%s: duplicate tensor '%s'", path,
                           st_safe(nm, sizeof nm, f->by_name[i]->name));
        }
    /* Overlap: sort the non-empty tensors by start; each must start at or after the previous end. */
    const bt_st_tensor **ord = malloc(((size_t)f->n + 1) * sizeof *ord);
    if (!ord) return bt_fail(BT_ENOMEM, "%s: out of memory", path);
    int m = 0;
    for (int i = 0; i < f->n; i++)
        if (f->t[i].nbytes) ord[m++] = &f->t[i];
    qsort(ord, (size_t)m, sizeof *ord, st_cmp_begin);
    rc = 0;
    for (int i = 1; i < m && !rc; i++) {
        const unsigned char *pb = ord[i - 1]->data, *cb = ord[i]->data;
        if (cb < pb + ord[i - 1]->nbytes) {
            char a[96], b[96];
            size_t pa = (size_t)(pb - f->data), ca = (size_t)(cb - f->data);
            rc = bt_fail(BT_EFORMAT, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap",
                         path, st_safe(a, sizeof a, ord[i - 1]->name), pa, pa + ord[i - 1]->nbytes,
                         st_safe(b, sizeof b, ord[i]->name), ca, ca + ord[i]->nbytes);
        }
    }
    free(ord);
    return rc;
}

int bt_st_open(bt_st_file **out, const char *path) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bt_fail(BT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return bt_fail(BT_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bt_fail(BT_EIO, "%s: not a regular file", path);
    }
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize == 0) {
        close(fd);
        return bt_fail(BT_EFORMAT, "%s: empty file", path);
    }
    if (fsize < 8) {
        close(fd);
        return bt_fail(BT_EFORMAT, "%s: file is %llu bytes, too short for the 8-byte header "
                       "length", path, (unsigned long long)fsize);
    }
    unsigned char lb[8];
    int e = st_read_full(fd, lb, 8, 0);
    if (e) {
        close(fd);
        return bt_fail(BT_EIO, "%s: cannot read: %s", path, e > 0 ? strerror(e) : "file shrank");
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    if (hlen > fsize - 8) {
        close(fd);
        return bt_fail(BT_EFORMAT, "%s: header length %llu is larger than the file (%llu bytes)",
                       path, (unsigned long long)hlen, (unsigned long long)fsize);
    }
    if (hlen > BT_ST_MAX_HEADER) {
        close(fd);
        return bt_fail(BT_EFORMAT, "%s: header length %llu exceeds the limit of %u bytes", path,
                       (unsigned long long)hlen, BT_ST_MAX_HEADER);
    }
    if (fsize > SIZE_MAX / 2) {
        close(fd);
        return bt_fail(BT_EFORMAT, "%s: file too large (%llu bytes)", path, (unsigned long long)fsize);
    }
    bt_st_file *f = calloc(1, sizeof *f);
    char *hdr = malloc((size_t)hlen + 1);
    int rc = 0;
    if (f) f->path = strdup(path);
    if (!f || !hdr || !f->path) {
        rc = bt_fail(BT_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    f->data_len = (size_t)(fsize - 8 - hlen);
    f->data = bt_alloc(f->data_len ? f->data_len : 1);
    if (!f->data) {
        rc = bt_fail(BT_ENOMEM, "%s: out of memory reading %zu bytes", path, f->data_len);
        goto done;
    }
    if ((e = st_read_full(fd, hdr, (size_t)hlen, 8)) ||
        (e = st_read_full(fd, f->data, f->data_len, (off_t)(8 + hlen)))) {
        rc = bt_fail(BT_EIO, "%s: cannot read: %s", path, e > 0 ? strerror(e) : "file shrank");
        goto done;
    }
    rc = st_parse_header(f, hdr, (size_t)hlen);
done:
    close(fd);
    free(hdr);
    if (rc) bt_st_close(f);
    else *out = f;
    return rc;
}

void bt_st_close(bt_st_file *f) {
    if (!f) return;
    cJSON_Delete(f->root);
    bt_free(f->data);
    free(f->t);
    free(f->by_name);
    free(f->meta_k);
    free(f->meta_v);
    free(f->path);
    free(f);
}

const char *bt_st_path(const bt_st_file *f) { return f->path; }
int bt_st_count(const bt_st_file *f) { return f->n; }
const bt_st_tensor *bt_st_at(const bt_st_file *f, int i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const bt_st_tensor *bt_st_find(const bt_st_file *f, const char *name) {
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *bt_st_meta(const bt_st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta_k[i], key)) return f->meta_v[i];
    return NULL;
}
int bt_st_meta_count(const bt_st_file *f) { return f->nmeta; }
const char *bt_st_meta_at(const bt_st_file *f, int i, const char **value) {
    if (i < 0 || i >= f->nmeta) return NULL;
    if (value) *value = f->meta_v[i];
    return f->meta_k[i];
}

/* Finds `name` and checks its shape; returns the tensor or NULL with the error set. */
static const bt_st_tensor *st_lookup(const bt_st_file *f, const char *name, int ndim,
                                     const int64_t *shape, int *rc) {
    char nm[96], a[256], b[256];
    const bt_st_tensor *t = bt_st_find(f, name);
    if (!t) {
        *rc = bt_fail(BT_EFORMAT, "%s: missing tensor '%s'", f->path, st_safe(nm, sizeof nm, name));
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        *rc = bt_fail(BT_EFORMAT, "%s: tensor '%s': expected shape %s but found %s (%s)", f->path,
                      st_safe(nm, sizeof nm, name),
                      st_fmt_shape(a, sizeof a, ndim < 0 ? 0 : ndim > 16 ? 16 : ndim, shape),
                      st_fmt_shape(b, sizeof b, t->ndim, t->shape), st_dtypes[t->dtype].name);
        return NULL;
    }
    return t;
}

/* IEEE half -> float, subnormals, infinities and NaN payloads included. */
static float st_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (ex == 0) {
        float v = (float)man * (1.0f / 16777216.0f); /* man * 2^-24, exact */
        return sign ? -v : v;
    }
    if (ex == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((ex + 112) << 23) | (man << 13);
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

/* bfloat16 is the top half of a float32. */
static float st_bf16(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

int bt_st_read_f32(const bt_st_file *f, const char *name, float *dst, int ndim,
                   const int64_t *shape) {
    int rc = 0;
    const bt_st_tensor *t = st_lookup(f, name, ndim, shape, &rc);
    if (!t) return rc;
    const unsigned char *p = t->data;
    size_t n = t->numel;
    if (n == 0) return 0; /* dst may be NULL for an empty tensor */
    switch (t->dtype) {
    case BT_ST_F32: memcpy(dst, p, t->nbytes); break;
#define ST_CONV(T, expr)                                                       \
        for (size_t i = 0; i < n; i++) {                                       \
            T x;                                                               \
            memcpy(&x, p + i * sizeof(T), sizeof(T));                          \
            dst[i] = (expr);                                                   \
        }                                                                      \
        break;
    case BT_ST_F64: ST_CONV(double, (float)x)
    case BT_ST_F16: ST_CONV(uint16_t, st_f16(x))
    case BT_ST_BF16: ST_CONV(uint16_t, st_bf16(x))
    case BT_ST_I64: ST_CONV(int64_t, (float)x)
    case BT_ST_I32: ST_CONV(int32_t, (float)x)
    case BT_ST_I16: ST_CONV(int16_t, (float)x)
    case BT_ST_I8: ST_CONV(int8_t, (float)x)
    case BT_ST_U8: ST_CONV(uint8_t, (float)x)
    case BT_ST_BOOL: ST_CONV(uint8_t, x ? 1.0f : 0.0f)
#undef ST_CONV
    default: {
        char nm[96];
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': cannot convert dtype %s to F32", f->path,
                       st_safe(nm, sizeof nm, name), st_dtypes[t->dtype].name);
    }
    }
    return 0;
}

int bt_st_read_raw(const bt_st_file *f, const char *name, int dtype, void *dst, int ndim,
                   const int64_t *shape) {
    int rc = 0;
    const bt_st_tensor *t = st_lookup(f, name, ndim, shape, &rc);
    if (!t) return rc;
    if (t->dtype != dtype) {
        char nm[96];
        const char *want = bt_st_dtype_name(dtype);
        return bt_fail(BT_EFORMAT, "%s: tensor '%s': expected dtype %s but found %s", f->path,
                       st_safe(nm, sizeof nm, name), want ? want : "(invalid)",
                       st_dtypes[t->dtype].name);
    }
    if (t->nbytes) memcpy(dst, t->data, t->nbytes);
    return 0;
}

/* ---- writer ---- */

typedef struct {
    char *name;
    int dtype, ndim;
    int64_t shape[BT_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
} st_wtensor;

struct bt_st_writer {
    st_wtensor *t;
    int n, cap;
    char **mk, **mv;   /* (nm) metadata keys and values, owned */
    int nm, mcap;
};

bt_st_writer *bt_st_writer_new(void) {
    bt_st_writer *w = calloc(1, sizeof *w);
    if (!w) bt_fail(BT_ENOMEM, "out of memory creating a safetensors writer");
    return w;
}

void bt_st_writer_free(bt_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->nm; i++) free(w->mk[i]), free(w->mv[i]);
    free(w->t);
    free(w->mk);
    free(w->mv);
    free(w);
}

static int st_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int c = *cap ? 2 * *cap : 32;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return bt_fail(BT_ENOMEM, "out of memory growing a safetensors writer");
    *p = q;
    *cap = c;
    return 0;
}

int bt_st_writer_add(bt_st_writer *w, const char *name, int dtype, int ndim,
                     const int64_t *shape, const void *data) {
    char nm[96];
    if (!name || !name[0]) return bt_fail(BT_EINVAL, "safetensors writer: empty tensor name");
    st_safe(nm, sizeof nm, name);
    if (!strcmp(name, "__metadata__") || !st_utf8_ok((const unsigned char *)name, strlen(name)))
        return bt_fail(BT_EINVAL, "safetensors writer: invalid tensor name '%s'", nm);
    if (!bt_st_dtype_name(dtype))
        return bt_fail(BT_EINVAL, "safetensors writer: tensor '%s': invalid dtype %d", nm, dtype);
    if (ndim < 0 || ndim > BT_ST_MAX_DIMS)
        return bt_fail(BT_EINVAL, "safetensors writer: tensor '%s': %d dims", nm, ndim);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (double)shape[i] > ST_MAX_INT)
            return bt_fail(BT_EINVAL, "safetensors writer: tensor '%s': dim %d is %lld", nm, i,
                           (long long)shape[i]);
        if (__builtin_mul_overflow(numel, (size_t)shape[i], &numel))
            return bt_fail(BT_EINVAL, "safetensors writer: tensor '%s': size overflows", nm);
    }
    size_t nbytes;
    if (__builtin_mul_overflow(numel, st_dtypes[dtype].size, &nbytes))
        return bt_fail(BT_EINVAL, "safetensors writer: tensor '%s': size overflows", nm);
    if (nbytes && !data)
        return bt_fail(BT_EINVAL, "safetensors writer: tensor '%s': NULL data", nm);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return bt_fail(BT_EINVAL, "safetensors writer: duplicate tensor '%s'", nm);
    int rc = st_grow((void **)&w->t, &w->cap, w->n + 1, sizeof *w->t);
    if (rc) return rc;
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return bt_fail(BT_ENOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->data = data;
    w->n++;
    return 0;
}

int bt_st_writer_meta(bt_st_writer *w, const char *key, const char *value) {
    if (!key || !value || !st_utf8_ok((const unsigned char *)key, strlen(key)) ||
        !st_utf8_ok((const unsigned char *)value, strlen(value)))
        return bt_fail(BT_EINVAL, "safetensors writer: metadata key and value must be UTF-8 strings");
    char *v = strdup(value);
    if (!v) return bt_fail(BT_ENOMEM, "out of memory");
    for (int i = 0; i < w->nm; i++)
        if (!strcmp(w->mk[i], key)) {
            free(w->mv[i]);
            w->mv[i] = v;
            return 0;
        }
    int c = w->mcap, rc = st_grow((void **)&w->mk, &c, w->nm + 1, sizeof *w->mk);
    if (!rc) rc = st_grow((void **)&w->mv, &w->mcap, w->nm + 1, sizeof *w->mv);
    char *k = rc ? NULL : strdup(key);
    if (!k) {
        free(v);
        return rc ? rc : bt_fail(BT_ENOMEM, "out of memory");
    }
    w->mk[w->nm] = k;
    w->mv[w->nm++] = v;
    return 0;
}

/* Header JSON padded with spaces so the data buffer starts 8-aligned; *len excludes the prefix.
 * Integer arrays are written raw so large values never come out in cJSON's %g notation. */
static char *st_build_header(const bt_st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    char *s = NULL, buf[8 * 24 + 8];
    int ok = root != NULL;
    if (ok && w->nm) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; ok && i < w->nm; i++) ok = cJSON_AddStringToObject(m, w->mk[i], w->mv[i]) != NULL;
    }
    size_t off = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        ok = o && cJSON_AddStringToObject(o, "dtype", st_dtypes[t->dtype].name) &&
             cJSON_AddRawToObject(o, "shape", st_fmt_shape(buf, sizeof buf, t->ndim, t->shape));
        snprintf(buf, sizeof buf, "[%zu,%zu]", off, off + t->nbytes);
        ok = ok && cJSON_AddRawToObject(o, "data_offsets", buf);
        off += t->nbytes;
    }
    char *j = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!j) return NULL;
    size_t n = strlen(j), pad = (8 - n % 8) % 8;
    s = malloc(8 + n + pad);
    if (s) {
        uint64_t L = n + pad;
        for (int i = 0; i < 8; i++) s[i] = (char)(L >> (8 * i));
        memcpy(s + 8, j, n);
        memset(s + 8 + n, ' ', pad);
        *len = n + pad;
    }
    cJSON_free(j);
    return s;
}

static int st_write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return EIO;
        c += r, n -= (size_t)r;
    }
    return 0;
}

int bt_st_writer_save(bt_st_writer *w, const char *path) {
    size_t total = 0;
    for (int i = 0; i < w->n; i++)
        if (__builtin_add_overflow(total, w->t[i].nbytes, &total) || (double)total > ST_MAX_INT)
            return bt_fail(BT_EINVAL, "%s: total tensor size overflows", path);
    size_t hlen = 0;
    char *hdr = st_build_header(w, &hlen);
    if (!hdr) return bt_fail(BT_ENOMEM, "%s: out of memory building the header", path);
    if (hlen > BT_ST_MAX_HEADER) {
        free(hdr);
        return bt_fail(BT_EINVAL, "%s: header of %zu bytes exceeds the limit", path, hlen);
    }
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp) {
        free(hdr);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    const char *what = "cannot create temporary file";
    int e = 0, fd;
    unlink(tmp); /* a stale one from a crashed process that had our pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        e = errno;
        goto fail;
    }
    what = "write failed";
    e = st_write_all(fd, hdr, 8 + hlen);
    for (int i = 0; !e && i < w->n; i++) e = st_write_all(fd, w->t[i].data, w->t[i].nbytes);
    if (e) goto fail;
    what = "fsync failed";
    if (fsync(fd) != 0) {
        e = errno;
        goto fail;
    }
    what = "close failed";
    int c = close(fd);
    fd = -1;
    if (c != 0) {
        e = errno;
        goto fail;
    }
    what = "rename failed";
    if (rename(tmp, path) != 0) {
        e = errno;
        goto fail;
    }
    free(tmp);
    free(hdr);
    /* Make the rename itself durable. */
    char *dir = strdup(path);
    if (!dir) return bt_fail(BT_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS))
        rc = bt_fail(BT_EIO, "%s: saved, but cannot fsync directory %s: %s", path, d, strerror(errno));
    if (dfd >= 0) close(dfd);
    free(dir);
    return rc;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    bt_fail(BT_EIO, "%s: %s (temporary %s): %s", path, what, tmp, strerror(e));
    free(tmp);
    free(hdr);
    return BT_EIO;
}

/* ---- XXH64 ---- */

#define XP1 0x9E3779B185EBCA87ULL
#define XP2 0xC2B2AE3D27D4EB4FULL
#define XP3 0x165667B19E3779F9ULL
#define XP4 0x85EBCA77C2B2AE63ULL
#define XP5 0x27D4EB2F165667C5ULL

static inline uint64_t xx_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xx_round(uint64_t acc, uint64_t in) {
    return xx_rotl(acc + in * XP2, 31) * XP1;
}
static inline uint64_t xx_merge(uint64_t h, uint64_t v) {
    return (h ^ xx_round(0, v)) * XP1 + XP4;
}
static inline uint64_t xx_r64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t xx_r32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

uint64_t bt_checksum64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = seed + XP1 + XP2, v2 = seed + XP2, v3 = seed, v4 = seed - XP1;
        for (; end - p >= 32; p += 32) {
            v1 = xx_round(v1, xx_r64(p));
            v2 = xx_round(v2, xx_r64(p + 8));
            v3 = xx_round(v3, xx_r64(p + 16));
            v4 = xx_round(v4, xx_r64(p + 24));
        }
        h = xx_rotl(v1, 1) + xx_rotl(v2, 7) + xx_rotl(v3, 12) + xx_rotl(v4, 18);
        h = xx_merge(h, v1);
        h = xx_merge(h, v2);
        h = xx_merge(h, v3);
        h = xx_merge(h, v4);
    } else {
        h = seed + XP5;
    }
    h += (uint64_t)n;
    for (; end - p >= 8; p += 8) h = xx_rotl(h ^ xx_round(0, xx_r64(p)), 27) * XP1 + XP4;
    if (end - p >= 4) {
        h = xx_rotl(h ^ ((uint64_t)xx_r32(p) * XP1), 23) * XP2 + XP3;
        p += 4;
    }
    for (; p < end; p++) h = xx_rotl(h ^ (*p * XP5), 11) * XP1;
    h ^= h >> 33;
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    h ^= h >> 32;
    return h;
}
