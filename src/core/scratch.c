/* Grow-only scratch arenas, the default arena of the plain op functions, and the thread-count
 * setting shared by all ops. */
#include "barlow/scratch.h"
#include "barlow/error.h"
#include <omp.h>

static bt_arena bt_default;
static int bt_nthreads;

void *bt_arena_get(bt_arena *a, size_t bytes) {
    if (bytes <= a->size && a->buf) return a->buf;
    void *p = bt_alloc(bytes ? bytes : 64);
    if (!p) return NULL;
    bt_free(a->buf);
    a->buf = p;
    a->size = bytes;
    return p;
}

void bt_arena_release(bt_arena *a) {
    bt_free(a->buf);
    a->buf = NULL;
    a->size = 0;
}

bt_arena *bt_default_arena(void) { return &bt_default; }

void *bt_scratch(size_t bytes) { return bt_arena_get(&bt_default, bytes); }

void bt_scratch_release(void) { bt_arena_release(&bt_default); }

void bt_set_threads(int n) {
    if (n < 1) n = 1;
    bt_nthreads = n;
    omp_set_num_threads(n);
}

int bt_threads(void) { return bt_nthreads > 0 ? bt_nthreads : omp_get_max_threads(); }
