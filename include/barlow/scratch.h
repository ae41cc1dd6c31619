/* Grow-only scratch arenas for ops that need temporary memory (im2col columns, Winograd
 * planes, per-thread partial sums, the loss's normalised embeddings). An arena is reallocated
 * only when a larger size is asked for, so after the first training step nothing is
 * allocated. Not reentrant: an op takes its arena, uses it, and returns; ops never call each
 * other while holding it.
 *
 * Each compute backend owns its arena (the CPU backend's is `scratch` in
 * include/barlow/backend.h) and passes it to the workspace-taking forms of the ops
 * (bt_conv2d_forward_ws and the like, ops.h and loss.h). The plain forms, for tests, benchmarks
 * and callers without a backend, use one default arena per process: bt_scratch(). */
#ifndef BARLOW_SCRATCH_H
#define BARLOW_SCRATCH_H
#include <stddef.h>

typedef struct bt_arena {
    void *buf;   /* 64-byte aligned, or NULL */
    size_t size; /* bytes in buf */
} bt_arena;
#define BT_ARENA_INIT {NULL, 0}

/* Returns a 64-byte aligned buffer of at least `bytes` bytes owned by a (valid until the next
 * call on a), or NULL (error set). */
void *bt_arena_get(bt_arena *a, size_t bytes);
/* Frees a's buffer; a is then empty and may be used again. */
void bt_arena_release(bt_arena *a);

/* The default arena of the plain ops.h / loss.h functions (never one of a backend's). */
bt_arena *bt_default_arena(void);
/* bt_arena_get(bt_default_arena(), bytes). */
void *bt_scratch(size_t bytes);
/* Frees the default arena (for leak checkers at exit). */
void bt_scratch_release(void);

/* Number of OpenMP threads ops may use; set once by the program (default: omp_get_max_threads). */
void bt_set_threads(int n);
int bt_threads(void);

#endif
