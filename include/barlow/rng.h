/* Counter-based random numbers: a generator is derived from a key (seed, epoch, sample index,
 * view) alone, so every random draw of the data pipeline is the same whatever the thread
 * schedule, and again after a resume. The stream itself is splitmix64 over a hashed key. */
#ifndef BARLOW_RNG_H
#define BARLOW_RNG_H
#include <stdint.h>

typedef struct { uint64_t s; } bt_rng;

static inline uint64_t bt_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* Generator for a key; different keys give independent-looking streams. */
static inline bt_rng bt_rng_key(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t view) {
    uint64_t h = bt_mix64(seed + 0x9e3779b97f4a7c15ULL);
    h = bt_mix64(h ^ (epoch + 0x632be59bd9b4e019ULL));
    h = bt_mix64(h ^ (index + 0x8cb92ba72f3d8dd7ULL));
    h = bt_mix64(h ^ (view + 0xd6e8feb86659fd93ULL));
    bt_rng r = {h};
    return r;
}
static inline uint64_t bt_rng_next(bt_rng *r) {
    return bt_mix64(r->s += 0x9e3779b97f4a7c15ULL);
}
/* Uniform double in [0, 1) with 53 random bits. */
static inline double bt_rng_uniform(bt_rng *r) {
    return (double)(bt_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
/* Uniform integer in [0, n), n > 0 (rejection sampling: unbiased). */
static inline uint64_t bt_rng_below(bt_rng *r, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = bt_rng_next(r); while (x >= lim);
    return x % n;
}

#endif
