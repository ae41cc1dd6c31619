/* Grow-only scratch arena and the thread-count setting shared by all ops. */
#include "barlow/scratch.h"
#include "barlow/error.h"
#include <omp.h>

static void *bt_scratch_buf;
static size_t bt_scratch_size;
static int bt_nthreads;

void *bt_scratch(size_t bytes) {
    if (bytes <= bt_scratch_size) return bt_scratch_buf;
    void *p = bt_alloc(bytes);
    if (!p) return NULL;
    bt_free(bt_scratch_buf);
    bt_scratch_buf = p;
    bt_scratch_size = bytes;
    return p;
}

void bt_scratch_release(void) {
    bt_free(bt_scratch_buf);
    bt_scratch_buf = NULL;
    bt_scratch_size = 0;
}

void bt_set_threads(int n) {
    if (n < 1) n = 1;
    bt_nthreads = n;
    omp_set_num_threads(n);
}

int bt_threads(void) { return bt_nthreads > 0 ? bt_nthreads : omp_get_max_threads(); }
