/* CRC-32C (Castagnoli) for TFRecord framing of TensorBoard event files. One byte per step
 * through a 256-entry table: event records are small and written a few times per log line, so
 * slicing-by-8 or SSE4.2 would buy nothing measurable. */
#include "barlow/tb.h"
#include <pthread.h>

/* Table for the reflected polynomial 0x82f63b78, built on first use. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t bt_crc32c(const void *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *b = p;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ b[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t bt_crc32c_masked(const void *p, size_t n) {
    uint32_t c = bt_crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}
