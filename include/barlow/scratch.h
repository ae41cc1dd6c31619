/* A grow-only scratch arena for ops that need temporary memory (im2col columns, per-thread
 * partial sums). It is reallocated only when a larger size is asked for, so after the first
 * training step nothing is allocated. Not reentrant: an op takes it, uses it, and returns;
 * ops never call each other while holding it. */
#ifndef BARLOW_SCRATCH_H
#define BARLOW_SCRATCH_H
#include <stddef.h>

/* Returns a 64-byte aligned buffer of at least `bytes` bytes, or NULL (error set). */
void *bt_scratch(size_t bytes);
/* Frees the arena (for leak checkers at exit). */
void bt_scratch_release(void);

/* Number of OpenMP threads ops may use; set once by the program (default: omp_get_max_threads). */
void bt_set_threads(int n);
int bt_threads(void);

#endif
