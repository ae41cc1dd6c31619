/* Error reporting for libbarlow: functions return 0 (BT_OK) on success or a negative code,
 * and leave a one-line message, readable with bt_error(), that names what was wrong.
 * The library never exits; only the program's main decides to. */
#ifndef BARLOW_ERROR_H
#define BARLOW_ERROR_H
#include <stddef.h>

enum {
    BT_OK = 0,
    BT_EINVAL = -1,  /* bad argument or shape */
    BT_ENOMEM = -2,  /* allocation failed */
    BT_EIO = -3,     /* read/write failed */
    BT_EFORMAT = -4, /* malformed file */
    BT_ENUM = -5,    /* non-finite value */
};

/* Sets the calling thread's error message (printf-style) and returns `code`. */
int bt_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last error message ("" if none). */
const char *bt_error(void);
void bt_clear_error(void);

/* Allocation helpers that set the error message and return NULL on failure.
 * Buffers are 64-byte aligned so SIMD kernels can use aligned loads. */
void *bt_alloc(size_t bytes);
void *bt_calloc(size_t bytes);
void bt_free(void *p);

/* Invariant checks that only a bug can break: always on (NDEBUG does not remove them), they
 * print the condition with file and line and abort. Input that can be wrong (files, options,
 * shapes from callers) gets an error code instead. */
#define BT_ASSERT(cond)                                                                      \
    do {                                                                                     \
        if (!(cond)) bt_assert_fail(#cond, __FILE__, __LINE__);                              \
    } while (0)
_Noreturn void bt_assert_fail(const char *cond, const char *file, int line);

#endif
