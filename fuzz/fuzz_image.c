/* Fuzz target: bt_decode_image, the JPEG/PNG decoding wrapper (TurboJPEG and libpng with
 * PIL's mode conversions). Each input is decoded twice, the second time into the image the
 * first call left, to exercise buffer reuse. The input is the encoded file. */
#include "fuzz_util.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/image.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    bt_image im = {0};
    for (int pass = 0; pass < 2; pass++) {
        if (bt_decode_image(&im, data, size, "fuzz") == BT_OK) {
            if (im.w <= 0 || im.h <= 0 || !im.px) abort();
            /* touch the last pixel: the buffer must hold w*h*3 bytes */
            volatile uint8_t last = im.px[(size_t)im.w * im.h * 3 - 1];
            (void)last;
        }
    }
    bt_image_free(&im);
    return 0;
}
