/* The Barlow Twins loss (see include/barlow/loss.h): float32 training version and the double
 * version the tests differentiate, both compiled from bt_loss.inc, and the float32 pieces the
 * multi-rank loss (bt_loss_sync.c) runs with a communicator (bt_loss_internal.h). */
#include "barlow/loss.h"
#include "barlow/comm.h"
#include "bt_loss_internal.h"
#include "barlow/error.h"
#include "barlow/scratch.h"
#include "barlow/gemm.h"
#include <math.h>
#include <omp.h>
#include <stddef.h>

/* Below this many elements an OpenMP region costs more than it saves. */
#define BT_LOSS_PAR_MIN 16384

/* The calling thread's share [d0, d1) of D columns inside a parallel region: contiguous, in
 * multiples of 16 so no two threads write to one cache line of a double array. */
static void bt_loss_cols(int *d0, int *d1, int D) {
    int T = omp_get_num_threads(), t = omp_get_thread_num();
    int per = ((D + T - 1) / T + 15) & ~15;
    long lo = (long)t * per, hi = lo + per;
    *d0 = lo < D ? (int)lo : D;
    *d1 = hi < D ? (int)hi : D;
}

int bt_twins_loss_choose(int N, int D) { return D > N ? BT_LOSS_GRAM : BT_LOSS_DIRECT; }

#define REAL float
#define SFX f32
#define GEMM bt_sgemm
#define SYRK bt_ssyrk
#define ALLREDUCE allreduce_f32
#include "bt_loss.inc"
#undef REAL
#undef SFX
#undef GEMM
#undef SYRK
#undef ALLREDUCE

#define REAL double
#define SFX f64
#define GEMM bt_dgemm
#define SYRK bt_dsyrk
#define ALLREDUCE allreduce_f64
#include "bt_loss.inc"
#undef REAL
#undef SFX
#undef GEMM
#undef SYRK
#undef ALLREDUCE

int bt_twins_loss(bt_loss_result *res, float *dz1, float *dz2, const float *z1, const float *z2,
               int N, int D, float lambda, int form, float *running_mean, float *running_var) {
    return bt_loss_ws_f32(bt_default_arena(), res, dz1, dz2, z1, z2, N, D, lambda, form,
                          running_mean, running_var);
}

int bt_twins_loss_ws(bt_arena *ws, bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                  const float *z2, int N, int D, float lambda, int form, float *running_mean,
                  float *running_var) {
    return bt_loss_ws_f32(ws, res, dz1, dz2, z1, z2, N, D, lambda, form, running_mean,
                          running_var);
}

int bt_twins_loss_f64(bt_loss_result *res, double *dz1, double *dz2, const double *z1,
                   const double *z2, int N, int D, double lambda, int form) {
    return bt_loss_ws_f64(bt_default_arena(), res, dz1, dz2, z1, z2, N, D, lambda, form, NULL,
                          NULL);
}

int bt_loss_f32_check(bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                      const float *z2, int N, int D, int *form) {
    return bt_loss_check_f32(res, dz1, dz2, z1, z2, N, D, form);
}

size_t bt_loss_f32_bytes(int N, int D, int form, int grad) {
    return bt_loss_bytes_f32(N, D, form, grad);
}

int bt_loss_f32_run(char *ws, bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                    const float *z2, int N, int D, double lambda, int form, float *running_mean,
                    float *running_var, const bt_comm *comm) {
    return bt_loss_run_f32(ws, res, dz1, dz2, z1, z2, N, D, lambda, form, running_mean,
                           running_var, comm);
}
