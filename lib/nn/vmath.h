/*
 * vmath.h — exp for the elementwise kernels (GELU, the vocabulary softmax,
 * sampling), 8 lanes with AVX2 + FMA and a scalar twin.
 *
 * libm's expf/tanhf are scalar calls: GELU through tanhf was ~10% of a 124M
 * training step. This is Cephes' expf (range reduction by n ln 2 in two
 * parts, a degree-6 polynomial, 2^n through the exponent bits), accurate to
 * ~2 ulp on [-88, 88]; arguments are clamped to that range (exp(-88) comes
 * out as 0, exp(88) ~ 1.65e38, never inf); NaN stays NaN. The vector version uses FMA;
 * align__exp1 is the same evaluation with FMA too (fmaf), so the AVX2 body
 * and the scalar remainders give the same bits. Without AVX2 + FMA the
 * kernels fall back to align__exp1_nofma (plain a * b + c): other bits, same
 * accuracy. Every lane is independent: no result depends on the split.
 */
#ifndef ALIGN_NN_VMATH_H
#define ALIGN_NN_VMATH_H

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define ALIGN__EXP_LO -88.0f
#define ALIGN__EXP_HI 88.0f
#define ALIGN__LOG2E 1.44269504088896341f
#define ALIGN__LN2_HI 0.693359375f
#define ALIGN__LN2_LO -2.12194440e-4f
#define ALIGN__EXP_P0 1.9875691500e-4f
#define ALIGN__EXP_P1 1.3981999507e-3f
#define ALIGN__EXP_P2 8.3334519073e-3f
#define ALIGN__EXP_P3 4.1665795894e-2f
#define ALIGN__EXP_P4 1.6666665459e-1f
#define ALIGN__EXP_P5 5.0000001201e-1f

static inline float align__pow2i(int32_t n) /* 2^n for n in -127..127 (-127 gives 0) */
{
    uint32_t b = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

#define ALIGN__EXP1_BODY(MA)                                                                              \
    if (x != x)                                                                                          \
        return x;                                                                                        \
    x = x < ALIGN__EXP_LO ? ALIGN__EXP_LO : x > ALIGN__EXP_HI ? ALIGN__EXP_HI : x;                      \
    float n = rintf(x * ALIGN__LOG2E);                                                                   \
    float r = MA(n, -ALIGN__LN2_HI, x);                                                                  \
    r = MA(n, -ALIGN__LN2_LO, r);                                                                        \
    float p = ALIGN__EXP_P0;                                                                             \
    p = MA(p, r, ALIGN__EXP_P1);                                                                         \
    p = MA(p, r, ALIGN__EXP_P2);                                                                         \
    p = MA(p, r, ALIGN__EXP_P3);                                                                         \
    p = MA(p, r, ALIGN__EXP_P4);                                                                         \
    p = MA(p, r, ALIGN__EXP_P5);                                                                         \
    float y = MA(p, r * r, r + 1.0f);                                                                    \
    return y * align__pow2i((int32_t)n);

#define ALIGN__FMA(a, b, c) fmaf(a, b, c)
#define ALIGN__MULADD(a, b, c) ((a) * (b) + (c))
/* The scalar twin of align__exp8 (with fmaf: use where the CPU has FMA). */
static inline float align__exp1(float x) { ALIGN__EXP1_BODY(ALIGN__FMA) }
/* The same without FMA, for CPUs without it. */
static inline float align__exp1_nofma(float x) { ALIGN__EXP1_BODY(ALIGN__MULADD) }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ALIGN__VMATH_X86 1
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 align__exp8(__m256 x)
{
    /* max/min return their second operand when either is NaN: NaN goes through (a NaN loss must stay NaN) */
    x = _mm256_min_ps(_mm256_set1_ps(ALIGN__EXP_HI), _mm256_max_ps(_mm256_set1_ps(ALIGN__EXP_LO), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(ALIGN__LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ALIGN__LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ALIGN__LN2_LO), r);
    __m256 p = _mm256_set1_ps(ALIGN__EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ALIGN__EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ALIGN__EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ALIGN__EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ALIGN__EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ALIGN__EXP_P5));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* Lanes [0, n) of 8 on (n clamped to 0..8). */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256i align__mask8(int64_t n)
{
    int32_t k = n < 0 ? 0 : n > 8 ? 8 : (int32_t)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The sum of 8 lanes in a fixed tree: halves, then {0,2} {1,3}, then the two. */
__attribute__((target("avx2,fma"), always_inline)) static inline float align__hsum8(__m256 v)
{
    __m128 t = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    t = _mm_add_ps(t, _mm_shuffle_ps(t, t, 0x4e));
    return _mm_cvtss_f32(t) + _mm_cvtss_f32(_mm_shuffle_ps(t, t, 0x55));
}

/* dot(a, b) over n: 8 lane sums by FMA, the tail loaded masked, then hsum8. */
__attribute__((target("avx2,fma"), always_inline)) static inline float align__dot8(const float *a, const float *b,
                                                                                    int64_t n)
{
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    if (i < n) {
        __m256i m = align__mask8(n - i);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), acc);
    }
    return align__hsum8(acc);
}

/* y[i] = fma(s, x[i], y[i]) over n. */
__attribute__((target("avx2,fma"), always_inline)) static inline void align__axpy8(float *y, float s, const float *x,
                                                                                    int64_t n)
{
    const __m256 sv = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = align__mask8(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(sv, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
    }
}

/* AVX2 and FMA both present (checked once). */
static inline int align__have_avx2_fma(void)
{
    static _Atomic int ok = -1; /* threads may race to set it: each stores the same value */
    int v = atomic_load_explicit(&ok, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        atomic_store_explicit(&ok, v, memory_order_relaxed);
    }
    return v;
}
#else
static inline int align__have_avx2_fma(void) { return 0; }
#endif

#endif
