/* The CPU barlow runs on, and the instruction-set path its kernels take.
 *
 * The features are read once with CPUID/XGETBV (by feature bits, never by model number), the
 * first time any of these functions is called. The path starts as the best one the CPU and OS
 * support (AVX-512 F+BW+DQ+VL with zmm state enabled, else AVX2+FMA, else the portable C
 * path) and can be forced to a lower one, for tests and for users: the library reads no
 * environment variable, so the program's main passes BARLOW_ISA (or an option) to
 * bt_isa_select. Select the path before training starts: a kernel already running keeps
 * the path it started with. */
#ifndef BARLOW_CPU_H
#define BARLOW_CPU_H
#include <stddef.h>

typedef enum { BT_ISA_GENERIC = 0, BT_ISA_AVX2 = 1, BT_ISA_AVX512 = 2, BT_ISA_COUNT = 3 } bt_isa;

typedef struct {
    char vendor[13];  /* "GenuineIntel", "AuthenticAMD", ... ("" off x86) */
    int family, model; /* for the record only: dispatch never looks at them */
    int avx2_fma;     /* AVX2 and FMA3, with the OS saving ymm state */
    int avx512;       /* AVX-512 F, BW, DQ and VL, with the OS saving zmm and opmask state */
    int avx512_bf16;  /* and AVX512_BF16 (VDPBF16PS, VCVTNEPS2BF16): the bf16 GEMM's kernel */
    size_t l1d, l2, l3; /* data cache sizes in bytes (per core for L1/L2); fallbacks if unknown */
    int caches_detected; /* 0 when the sizes above are fallbacks */
} bt_cpu_info;

/* The detected CPU (never NULL). */
const bt_cpu_info *bt_cpu(void);
/* 1 if this CPU (and OS) can run path isa. */
int bt_isa_supported(bt_isa isa);
/* The best path this CPU supports. */
bt_isa bt_isa_best(void);
/* The path in use now. */
bt_isa bt_isa_current(void);
/* "generic", "avx2" or "avx512" (NULL for an invalid value). */
const char *bt_isa_name(bt_isa isa);
/* Uses path isa from now on; BT_EINVAL (with the message in bt_error) if the CPU lacks it. */
int bt_isa_set(bt_isa isa);
/* As bt_isa_set, by name ("avx512", "avx2", "generic"; NULL, "" or "auto" mean the best).
 * BT_EINVAL for an unknown name or a path this CPU lacks. */
int bt_isa_select(const char *name);

#endif
