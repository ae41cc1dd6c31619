/* An 8-bit RGB image, interleaved (H, W, 3), row-major: the form PIL gives after
 * .convert('RGB'), on which the augmentations work before ToTensor. */
#ifndef BARLOW_IMAGE_H
#define BARLOW_IMAGE_H
#include <stdint.h>

typedef struct {
    int w, h;
    uint8_t *px; /* (h, w, 3), owned; free with bt_image_free */
} bt_image;

/* Allocates a w x h image (contents undefined); returns BT_OK or an error. */
int bt_image_alloc(bt_image *im, int w, int h);
void bt_image_free(bt_image *im);

#endif
