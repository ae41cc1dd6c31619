/* safetensors files: checkpoints, and weights exchanged with PyTorch / huggingface tools.
 *
 * On-disk format (huggingface safetensors, all integers little-endian):
 *   bytes [0, 8)        u64 L, the length of the header
 *   bytes [8, 8+L)      UTF-8 JSON object: tensor name -> {"dtype": "F32", "shape": [64,3,7,7],
 *                       "data_offsets": [begin, end]}, plus an optional "__metadata__" object
 *                       mapping strings to strings. The writer pads it with spaces so that
 *                       8+L is a multiple of 8, as the reference implementation does.
 *   bytes [8+L, EOF)    the data buffer; data_offsets are relative to its start, and each
 *                       tensor is stored row-major (C order), little-endian, unaligned.
 *
 * Validation (bt_st_open): files come from strangers, so every rule below is checked, always,
 * and a violation gives BT_EFORMAT with a one-line message "<path>: <problem>":
 *   - the file is a regular file of at least 8 bytes; L <= file size - 8 and L <= 100 MB
 *     (checked before anything is allocated from L);
 *   - the header is valid UTF-8 without NUL bytes, parses (cJSON) as a JSON object, and
 *     nothing but whitespace follows the object;
 *   - every entry except "__metadata__" is an object with "dtype" (a string naming a known
 *     dtype, see bt_st_dtype), "shape" (an array of at most BT_ST_MAX_DIMS integers in
 *     [0, 2^53]) and "data_offsets" (two integers begin <= end inside the data buffer);
 *   - end - begin == numel * dtype size, with the product computed overflow-safely;
 *   - no two tensors overlap (zero-byte tensors overlap nothing) and no name repeats;
 *   - "__metadata__", if present, is an object whose values are all strings.
 * Gaps between tensors and trailing bytes after the last one are accepted (the reference
 * reader rejects them; they are harmless), and unknown extra keys in an entry are ignored.
 *
 * Writing (bt_st_writer_save) lays tensors out contiguously in the order they were added, with
 * "__metadata__" first in the header, and replaces the target atomically: write
 * "<path>.tmp.<pid>", fsync, rename over <path>, fsync the directory. Add large-dtype tensors
 * first if alignment matters to a reader that maps the file (the data buffer starts 8-aligned).
 *
 * Only little-endian hosts are supported (checked at compile time). */
#ifndef BARLOW_SAFETENSORS_H
#define BARLOW_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define BT_ST_MAX_DIMS 8
#define BT_ST_MAX_HEADER (100u * 1000u * 1000u) /* same limit as the reference reader */

/* dtypes with a whole number of bytes per element, named as in the file ("F32", ...). */
enum {
    BT_ST_BOOL, BT_ST_U8, BT_ST_I8, BT_ST_F8_E5M2, BT_ST_F8_E4M3,
    BT_ST_I16, BT_ST_U16, BT_ST_F16, BT_ST_BF16,
    BT_ST_I32, BT_ST_U32, BT_ST_F32,
    BT_ST_I64, BT_ST_U64, BT_ST_F64,
    BT_ST_NDTYPES
};

/* Name of a dtype ("F32"), or NULL if out of range. */
const char *bt_st_dtype_name(int dtype);
/* dtype for a name, or -1 if unknown. */
int bt_st_dtype(const char *name);
/* Bytes per element (0 if out of range). */
size_t bt_st_dtype_size(int dtype);

typedef struct {
    char *name;
    int dtype;                       /* BT_ST_* */
    int ndim;                        /* 0 for a scalar (numel 1) */
    int64_t shape[BT_ST_MAX_DIMS];
    size_t numel;
    const void *data;                /* (numel) elements, little-endian, possibly unaligned */
    size_t nbytes;
} bt_st_tensor;

typedef struct bt_st_file bt_st_file; /* the whole file in memory, validated */

/* Reads and validates `path` (rules above). On error *f is NULL and the code is BT_EIO
 * (cannot open/read), BT_EFORMAT (malformed) or BT_ENOMEM. */
int bt_st_open(bt_st_file **f, const char *path);
void bt_st_close(bt_st_file *f);
const char *bt_st_path(const bt_st_file *f);
/* Tensors in the order of the header JSON ("__metadata__" excluded). */
int bt_st_count(const bt_st_file *f);
const bt_st_tensor *bt_st_at(const bt_st_file *f, int i);
/* Tensor `name`, or NULL (binary search: loading a checkpoint tensor by tensor stays fast). */
const bt_st_tensor *bt_st_find(const bt_st_file *f, const char *name);
/* Metadata value for `key`, or NULL if absent. */
const char *bt_st_meta(const bt_st_file *f, const char *key);
int bt_st_meta_count(const bt_st_file *f);
/* The i-th metadata entry (header order); returns its key and sets *value. */
const char *bt_st_meta_at(const bt_st_file *f, int i, const char **value);

/* Copies tensor `name` into dst (numel floats) converting F32/F64/F16/BF16/I64/I32/I16/I8/
 * U8/BOOL to float32 (F64 and large integers round to nearest). The stored shape must equal
 * (ndim, shape) exactly. Missing tensor, other shape or dtype: BT_EFORMAT naming the file and
 * tensor (and expected/found shapes). */
int bt_st_read_f32(const bt_st_file *f, const char *name, float *dst, int ndim,
                   const int64_t *shape);
/* Copies tensor `name` into dst bytes-for-bytes; its dtype and shape must match exactly
 * (for exact state such as F64 accumulators, I64 step counters, U64 generator state). */
int bt_st_read_raw(const bt_st_file *f, const char *name, int dtype, void *dst, int ndim,
                   const int64_t *shape);

/* Writer: tensors are added by pointer and not copied, so their data must stay valid and
 * unchanged until bt_st_writer_save returns. Names and metadata strings are copied. */
typedef struct bt_st_writer bt_st_writer;
bt_st_writer *bt_st_writer_new(void);    /* NULL (error set) if out of memory */
/* BT_EINVAL for an unknown dtype, ndim outside [0, BT_ST_MAX_DIMS], a negative dim, an empty
 * or reserved ("__metadata__") or duplicate name, or a size that overflows. */
int bt_st_writer_add(bt_st_writer *w, const char *name, int dtype, int ndim,
                     const int64_t *shape, const void *data);
/* Sets (or replaces) metadata key -> value. */
int bt_st_writer_meta(bt_st_writer *w, const char *key, const char *value);
/* Atomic save (see above). On failure returns BT_EIO naming the path and strerror, removes
 * the temporary file and leaves an existing <path> untouched; the one exception is a failed
 * fsync of the directory after the rename, when <path> already holds the new file. */
int bt_st_writer_save(bt_st_writer *w, const char *path);
void bt_st_writer_free(bt_st_writer *w);

/* XXH64 (xxHash, 64-bit) of n bytes: fast (several GB/s) and sensitive to every flipped bit,
 * for checksums that checkpoints store in __metadata__. Matches the reference XXH64(p,n,seed). */
uint64_t bt_checksum64(const void *p, size_t n, uint64_t seed);

#endif
