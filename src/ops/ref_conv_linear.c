/* Reference conv2d and linear (see ops_ref.h), instantiated for float and double from
 * ref_conv_linear.inc. */
#include "barlow/error.h"
#include "barlow/ops_ref.h"
#include <stddef.h>

/* Same validation as the optimised path, through the public initialiser, so a hand-made
 * descriptor with inconsistent sizes is refused here too. */
static int ref_check_desc(const bt_conv2d_desc *d) {
    if (!d) return bt_fail(BT_EINVAL, "conv2d_ref: NULL descriptor");
    bt_conv2d_desc v;
    int rc = bt_conv2d_desc_init(&v, d->N, d->C, d->H, d->W, d->K, d->R, d->S, d->stride, d->pad);
    if (rc) return rc;
    if (v.OH != d->OH || v.OW != d->OW)
        return bt_fail(BT_EINVAL,
                       "conv2d_ref: descriptor output size %dx%d does not match the computed "
                       "%dx%d",
                       d->OH, d->OW, v.OH, v.OW);
    return BT_OK;
}

#define T float
#define SFX f32
#include "ref_conv_linear.inc"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "ref_conv_linear.inc"
#undef T
#undef SFX
