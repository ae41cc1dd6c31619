/* The portable path of the per-pixel augmentation loops (aug_simd.h), and the dispatch. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* PIL is built without FMA; a fused multiply-add rounds differently */
#elif defined(__GNUC__)
/* Lets GCC if-convert (and so vectorise) the branch-free float code; it changes no value,
 * only the assumption that FP exception flags are observed. */
#pragma GCC optimize("no-trapping-math")
#endif
#define BT_AUG_KERNELS bt_aug_kernels_generic
#define BT_AUG_WIDE 0
#include "data/aug_simd_body.inc"

const bt_aug_kernels *bt_aug_kernels_for(bt_isa isa) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa == BT_ISA_AVX512) return &bt_aug_kernels_avx512;
    if (isa == BT_ISA_AVX2) return &bt_aug_kernels_avx2;
#endif
    (void)isa;
    return &bt_aug_kernels_generic;
}
