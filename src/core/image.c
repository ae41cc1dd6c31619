/* bt_image allocation. */
#include "barlow/image.h"
#include "barlow/error.h"
#include <stdlib.h>

int bt_image_alloc(bt_image *im, int w, int h) {
    im->w = im->h = 0;
    im->px = NULL;
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535)
        return bt_fail(BT_EINVAL, "image size %dx%d out of range", w, h);
    im->px = bt_alloc((size_t)w * h * 3);
    if (!im->px) return BT_ENOMEM;
    im->w = w;
    im->h = h;
    return BT_OK;
}

void bt_image_free(bt_image *im) {
    bt_free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}
