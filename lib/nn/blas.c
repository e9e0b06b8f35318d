/* blas.c — which BLAS runs, its thread count, and the slow-kernel check.
 *
 * Debian's OpenBLAS 0.3.21 is built with DYNAMIC_ARCH and picks its kernels
 * from the CPU id when it loads. It does not know recent Xeons (e.g. Sapphire
 * Rapids) and falls back to the SSE3 "Prescott" kernels, ~5x slower sgemm
 * than "SkylakeX" on the same CPU (docs/bench.md). The kernel is chosen in
 * OpenBLAS's constructor from OPENBLAS_CORETYPE, so the only remedy is that
 * variable set before the process starts; we detect the case and say so.
 * OpenBLAS entry points are found with dlsym so any other cblas links too. */
#define _GNU_SOURCE
#include "nn/nn.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef void (*set_threads_fn)(int);
typedef char *(*str_fn)(void);

void align__blas_set_threads(int n)
{
    set_threads_fn f = (set_threads_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (f && n > 0)
        f(n);
}

const char *align__blas_corename(void)
{
    str_fn f = (str_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_get_corename");
    return f ? f() : NULL;
}

static char info[256];
static pthread_once_t info_once = PTHREAD_ONCE_INIT;

/* Kernel sets that use at most AVX2: slow on a CPU with AVX-512. */
static int is_pre_avx512(const char *core)
{
    static const char *const slow[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                       "sandybridge", "haswell", "zen", "atom", "katmai",
                                       "coppermine", "northwood", "banias", "generic", NULL};
    for (int i = 0; slow[i]; i++)
        if (strcasecmp(core, slow[i]) == 0)
            return 1;
    return 0;
}

static int is_pre_avx2(const char *core)
{
    static const char *const slow[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                       "sandybridge", "atom", "katmai", "coppermine",
                                       "northwood", "banias", "generic", NULL};
    for (int i = 0; slow[i]; i++)
        if (strcasecmp(core, slow[i]) == 0)
            return 1;
    return 0;
}

/* The OPENBLAS_CORETYPE value that would run faster kernels on this CPU when
 * `core` is a slow fallback for it, else NULL. Only tells; loads nothing. */
static const char *slow_fix(const char *core)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && is_pre_avx512(core))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && is_pre_avx2(core))
        return "Haswell";
#else
    (void)core;
#endif
    return NULL;
}

static void info_init(void)
{
    str_fn cfg = (str_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_get_config");
    const char *core = align__blas_corename();
    if (!cfg || !core) {
        snprintf(info, sizeof info, "cblas (not OpenBLAS; kernel unknown)");
        return;
    }
    /* config reads "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64" */
    char ver[64] = "OpenBLAS";
    const char *c = cfg();
    if (c) {
        size_t n = strcspn(c, " ");
        const char *rest = c + n + (c[n] == ' ');
        size_t m = strcspn(rest, " ");
        if (m > 0 && m < 32)
            snprintf(ver, sizeof ver, "OpenBLAS %.*s", (int)m, rest);
    }
    snprintf(info, sizeof info, "%s (%s kernels)", ver, core);
    const char *fix = slow_fix(core);
    if (fix)
        align__log(ALIGN_LOG_WARN,
                   "OpenBLAS runs its slow '%s' kernels on a CPU that supports %s ones (sgemm up "
                   "to ~5x slower). Set OPENBLAS_CORETYPE=%s in the environment before the "
                   "program starts (OpenBLAS reads it when it loads).",
                   core, fix, fix);
}

ALIGN_API const char *align_blas_info(void)
{
    pthread_once(&info_once, info_init);
    return info;
}

ALIGN_API int align_blas_slow_kernel(const char **remedy_out)
{
    if (remedy_out)
        *remedy_out = NULL;
    str_fn cfg = (str_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_get_config");
    const char *core = align__blas_corename();
    if (!cfg || !core)
        return 0;
    const char *fix = slow_fix(core);
    if (remedy_out)
        *remedy_out = fix;
    return fix != NULL;
}
