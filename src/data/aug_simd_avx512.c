/* The AVX-512 (F, BW, DQ, VL) path of the per-pixel augmentation loops (aug_simd.h): the portable bodies
 * compiled for AVX-512 (F, BW, DQ, VL) by attribute (so any build of this file compiles it the same way). It
 * only runs where bt_isa_supported holds for the path. */
#if defined(__x86_64__) || defined(__i386__)
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL is built without FMA; a fused multiply-add rounds differently */
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))), apply_to = function)
#else
#pragma GCC optimize("no-trapping-math") /* if-conversion of the float selects; no value changes */
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")
#endif
#define BT_AUG_KERNELS bt_aug_kernels_avx512
#define BT_AUG_WIDE 2
#include "data/aug_simd_body.inc"
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int bt_aug_simd_avx512_unused; /* ISO C wants a declaration in every file */
#endif
