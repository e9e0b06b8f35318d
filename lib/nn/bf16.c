/* bf16.c — the compute-precision setting (align_compute_set / _get / _info)
 * and the CPU feature checks behind it. The mode is refused (an error, the
 * setting stays fp32) where the build has no oneDNN or the CPU has neither
 * AVX512_BF16 nor AMX-BF16: oneDNN would otherwise emulate bf16 products on
 * plain AVX-512 or AVX2, slower than the fp32 path. */
#include "nn/bf16.h"

#include <stdatomic.h>
#include <stdio.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define ALIGN__X86 1
#endif

static atomic_int mode;        /* ALIGN_COMPUTE_* in force */
static atomic_int hide_cpu;    /* tests: pretend no bf16 instructions */

#ifdef ALIGN__X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* The OS saves the AVX-512 state (opmask, ZMM upper halves, ZMM16-31). */
static int os_avx512(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return 0;
    return (xgetbv0() & 0xe6u) == 0xe6u;
}
#endif

int align__cpu_has_avx512_bf16(void)
{
#ifdef ALIGN__X86
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7 || !os_avx512())
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & (1u << 16)) || !(b & (1u << 30)) || !(b & (1u << 31))) /* AVX512F, BW, VL */
        return 0;
    if (a < 1)
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1u; /* AVX512_BF16 */
#else
    return 0;
#endif
}

int align__cpu_has_amx_bf16(void)
{
#ifdef ALIGN__X86
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(1, 0, a, b, c, d);
    if (!(c & (1u << 27)))
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    /* AMX-BF16 (EDX 22), AMX-TILE (EDX 24), and the OS enables tile state
     * (XCR0 bits 17, 18; Linux also wants an arch_prctl, which oneDNN makes) */
    return (d & (1u << 22)) && (d & (1u << 24)) && (xgetbv0() & 0x60000u) == 0x60000u;
#else
    return 0;
#endif
}

int align__bf16_available(const char **why)
{
    const char *w = NULL;
    if (!align__dnnl_built())
        w = "this libalign was built without oneDNN (install libdnnl-dev and rebuild, DNNL=auto or 1)";
    else if (atomic_load(&hide_cpu) || !(align__cpu_has_avx512_bf16() || align__cpu_has_amx_bf16()))
        w = "this CPU has neither AVX512_BF16 nor AMX-BF16 instructions";
    if (why)
        *why = w;
    return w == NULL;
}

int align__bf16_on(void)
{
    return atomic_load_explicit(&mode, memory_order_relaxed) == ALIGN_COMPUTE_BF16;
}

void align__bf16_test_hide_cpu(int hide)
{
    atomic_store(&hide_cpu, hide ? 1 : 0);
    if (hide)
        atomic_store(&mode, ALIGN_COMPUTE_FP32);
}

ALIGN_API int align_compute_set(int32_t m)
{
    if (m == ALIGN_COMPUTE_FP32) {
        atomic_store(&mode, m);
        return ALIGN_OK;
    }
    if (m != ALIGN_COMPUTE_BF16)
        return align__error(NULL, ALIGN_EINVAL, "align_compute_set: unknown mode %d (0 fp32, 1 bf16)",
                            (int)m);
    const char *why;
    if (!align__bf16_available(&why))
        return align__error(NULL, ALIGN_EMISUSE, "align_compute_set: bf16 compute unavailable: %s; "
                            "computing in fp32", why);
    atomic_store(&mode, m);
    return ALIGN_OK;
}

ALIGN_API int32_t align_compute_get(void)
{
    return atomic_load(&mode);
}

ALIGN_API const char *align_compute_info(void)
{
    static _Thread_local char buf[192];
    const char *why;
    if (!align__bf16_available(&why))
        snprintf(buf, sizeof buf, "%s; bf16 unavailable: %s",
                 align__bf16_on() ? "bf16" : "fp32", why);
    else
        snprintf(buf, sizeof buf, "%s; bf16 available through %s (CPU:%s%s)", align__bf16_on() ? "bf16" : "fp32",
                 align__dnnl_info(), align__cpu_has_avx512_bf16() ? " avx512_bf16" : "",
                 align__cpu_has_amx_bf16() ? " amx_bf16" : "");
    return buf;
}
