/* Instantiates the reference batch-norm / elementwise / pooling / cross-entropy ops
 * (ref_norm_pool.inc) for float (_ref_f32) and double (_ref_f64), as declared in ops_ref.h. */
#include "barlow/ops_ref.h"
#include "norm_pool_check.h"
#include <math.h>
#include <stddef.h>

#define T float
#define SFX f32
#define BT_SQRT sqrtf
#define BT_EXP expf
#define BT_LOG logf
#include "ref_norm_pool.inc"
#undef T
#undef SFX
#undef BT_SQRT
#undef BT_EXP
#undef BT_LOG

#define T double
#define SFX f64
#define BT_SQRT sqrt
#define BT_EXP exp
#define BT_LOG log
#include "ref_norm_pool.inc"
#undef T
#undef SFX
#undef BT_SQRT
#undef BT_EXP
#undef BT_LOG
