/* Thread-local error message and checked allocation. */
#include "barlow/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char bt_errbuf[1024];

int bt_fail(int code, const char *fmt, ...) {
    /* Format into a copy first: callers may pass bt_error() itself as an argument to
     * prefix the previous message. */
    char tmp[sizeof bt_errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(bt_errbuf, tmp, sizeof tmp);
    return code;
}

const char *bt_error(void) { return bt_errbuf; }
void bt_clear_error(void) { bt_errbuf[0] = 0; }

void *bt_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n < bytes || posix_memalign(&p, 64, n ? n : 64) != 0) {
        bt_fail(BT_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void *bt_calloc(size_t bytes) {
    void *p = bt_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void bt_free(void *p) { free(p); }
