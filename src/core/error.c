/* Thread-local error message and checked allocation. */
#include "barlow/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* Buffers of 4 MiB and more (activations, gradients, the scratch arena) are aligned to 2 MiB
 * and marked for transparent huge pages where the kernel offers them on request
 * ("madvise" mode): the conv and norm passes stride across channel planes, which with 4 KiB
 * pages costs a TLB miss on nearly every access; the first touch also takes 512 times fewer
 * page faults. Purely a hint: without THP nothing changes. */
#define BT_HUGE_MIN ((size_t)4 << 20)
#define BT_HUGE_ALIGN ((size_t)2 << 20)

void *bt_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    const int huge = n >= BT_HUGE_MIN;
    if (huge) n = (n + BT_HUGE_ALIGN - 1) & ~(BT_HUGE_ALIGN - 1);
    if (n < bytes || posix_memalign(&p, huge ? BT_HUGE_ALIGN : 64, n ? n : 64) != 0) {
        bt_fail(BT_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (huge) (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

void *bt_calloc(size_t bytes) {
    void *p = bt_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void bt_free(void *p) { free(p); }

_Noreturn void bt_assert_fail(const char *cond, const char *file, int line) {
    fflush(stdout);
    fprintf(stderr, "barlow: internal error (a bug): %s:%d: BT_ASSERT(%s) failed\n", file, line, cond);
    fflush(stderr);
    abort();
}
