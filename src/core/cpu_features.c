/* CPU feature and cache detection (CPUID/XGETBV, once) and the choice of instruction-set path
 * for the dispatched kernels (see include/barlow/cpu.h). Only feature bits decide a path:
 * model numbers are recorded, never trusted, because the same model can ship with AVX-512
 * fused off and a hypervisor can hide features from a guest. */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define BT_X86 1
#else
#define BT_X86 0
#endif

/* Used when CPUID does not describe the caches (old CPUs, some hypervisors): sizes common to
 * every x86-64 core of the last decade, so blocking stays reasonable rather than optimal. */
#define BT_FALLBACK_L1D ((size_t)32 << 10)
#define BT_FALLBACK_L2 ((size_t)512 << 10)
#define BT_FALLBACK_L3 ((size_t)8 << 20)

static bt_cpu_info bt_cpu_info_v;
static pthread_once_t bt_cpu_once = PTHREAD_ONCE_INIT;
static bt_isa bt_isa_cur;

#if BT_X86
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    r[0] = r[1] = r[2] = r[3] = 0;
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

/* XCR0: which register states the OS saves on a context switch. A CPU with AVX-512 under an
 * OS that does not save zmm state must not use it. */
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Deterministic cache parameters (Intel leaf 4, AMD leaf 0x8000001D: the same layout). */
static void read_caches(bt_cpu_info *ci, unsigned leaf) {
    for (unsigned i = 0; i < 16; i++) {
        unsigned r[4];
        cpuid(leaf, i, r);
        const unsigned type = r[0] & 31, level = (r[0] >> 5) & 7;
        if (type == 0) break;
        if (type != 1 && type != 3) continue; /* data or unified, not instruction */
        const size_t ways = ((r[1] >> 22) & 0x3ff) + 1, parts = ((r[1] >> 12) & 0x3ff) + 1;
        const size_t line = (r[1] & 0xfff) + 1, sets = (size_t)r[2] + 1;
        const size_t size = ways * parts * line * sets;
        if (level == 1) ci->l1d = size;
        if (level == 2) ci->l2 = size;
        if (level == 3) ci->l3 = size;
        ci->caches_detected = 1;
    }
}

static void detect(void) {
    bt_cpu_info *ci = &bt_cpu_info_v;
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned maxleaf = r[0];
    memcpy(ci->vendor, &r[1], 4);
    memcpy(ci->vendor + 4, &r[3], 4);
    memcpy(ci->vendor + 8, &r[2], 4);
    ci->vendor[12] = 0;
    cpuid(1, 0, r);
    const unsigned fam = (r[0] >> 8) & 15, mod = (r[0] >> 4) & 15;
    ci->family = (int)(fam == 15 ? fam + ((r[0] >> 20) & 255) : fam);
    ci->model = (int)(fam == 6 || fam == 15 ? mod + (((r[0] >> 16) & 15) << 4) : mod);
    const int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    const int os_ymm = (xcr0 & 0x6) == 0x6;    /* SSE and AVX state */
    const int os_zmm = (xcr0 & 0xe6) == 0xe6;  /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    unsigned ebx7 = 0, eax7_1 = 0;
    if (maxleaf >= 7) {
        cpuid(7, 0, r);
        ebx7 = r[1];
        const unsigned sub = r[0]; /* the highest subleaf */
        if (sub >= 1) {
            cpuid(7, 1, r);
            eax7_1 = r[0];
        }
    }
    const int avx2 = (ebx7 >> 5) & 1;
    const int f = (ebx7 >> 16) & 1, dq = (ebx7 >> 17) & 1, bw = (ebx7 >> 30) & 1,
              vl = (ebx7 >> 31) & 1;
    ci->avx2_fma = avx && avx2 && fma && os_ymm;
    ci->avx512 = ci->avx2_fma && f && dq && bw && vl && os_zmm;
    ci->avx512_bf16 = ci->avx512 && ((eax7_1 >> 5) & 1);
    cpuid(0x80000000u, 0, r);
    const unsigned maxext = r[0];
    int amd_topo = 0;
    if (maxext >= 0x80000001u) {
        cpuid(0x80000001u, 0, r);
        amd_topo = (r[2] >> 22) & 1;
    }
    if ((!strcmp(ci->vendor, "AuthenticAMD") || !strcmp(ci->vendor, "HygonGenuine")) &&
        amd_topo && maxext >= 0x8000001Du)
        read_caches(ci, 0x8000001Du);
    else if (maxleaf >= 4)
        read_caches(ci, 4);
}
#else
static void detect(void) {}
#endif

static void init_once(void) {
    detect();
    bt_cpu_info *ci = &bt_cpu_info_v;
    if (!ci->l1d) ci->l1d = BT_FALLBACK_L1D;
    if (!ci->l2) ci->l2 = BT_FALLBACK_L2;
    if (!ci->l3) ci->l3 = BT_FALLBACK_L3;
    bt_isa_cur = ci->avx512 ? BT_ISA_AVX512 : ci->avx2_fma ? BT_ISA_AVX2 : BT_ISA_GENERIC;
}

const bt_cpu_info *bt_cpu(void) {
    pthread_once(&bt_cpu_once, init_once);
    return &bt_cpu_info_v;
}

int bt_isa_supported(bt_isa isa) {
    const bt_cpu_info *ci = bt_cpu();
    switch (isa) {
    case BT_ISA_GENERIC: return 1;
    case BT_ISA_AVX2: return ci->avx2_fma;
    case BT_ISA_AVX512: return ci->avx512;
    default: return 0;
    }
}

bt_isa bt_isa_best(void) {
    const bt_cpu_info *ci = bt_cpu();
    return ci->avx512 ? BT_ISA_AVX512 : ci->avx2_fma ? BT_ISA_AVX2 : BT_ISA_GENERIC;
}

bt_isa bt_isa_current(void) {
    bt_cpu();
    return bt_isa_cur;
}

const char *bt_isa_name(bt_isa isa) {
    static const char *const names[BT_ISA_COUNT] = {"generic", "avx2", "avx512"};
    return (unsigned)isa < BT_ISA_COUNT ? names[isa] : NULL;
}

int bt_isa_set(bt_isa isa) {
    if ((unsigned)isa >= BT_ISA_COUNT) return bt_fail(BT_EINVAL, "unknown ISA path %d", (int)isa);
    if (!bt_isa_supported(isa)) {
        const bt_cpu_info *ci = bt_cpu();
        return bt_fail(BT_EINVAL,
                       "ISA path '%s' is not supported by this CPU (%s family %d model %d; "
                       "best path: %s)",
                       bt_isa_name(isa), ci->vendor[0] ? ci->vendor : "non-x86", ci->family,
                       ci->model, bt_isa_name(bt_isa_best()));
    }
    bt_isa_cur = isa;
    return BT_OK;
}

int bt_isa_select(const char *name) {
    if (!name || !*name || !strcmp(name, "auto")) return bt_isa_set(bt_isa_best());
    for (int i = 0; i < BT_ISA_COUNT; i++)
        if (!strcmp(name, bt_isa_name((bt_isa)i))) return bt_isa_set((bt_isa)i);
    return bt_fail(BT_EINVAL, "unknown ISA path '%s' (expected avx512, avx2, generic or auto)",
                   name);
}
