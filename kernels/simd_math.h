/* simd_math: vector exp, lane masks and horizontal reductions shared by the
 * SIMD kernels (kernels/simd.h builds on them).  Include it only from files
 * the Makefile compiles with ISA flags (or under a target pragma, see below):
 * each half is compiled only under the ISA flags its file gets.
 *
 * simd_exp8 / simd_exp16 compute exp(x) to about 1 ulp (Cephes' expf):
 * x = n ln2 + r with |r| <= ln2/2, exp(r) = 1 + r + r^2 P(r) with P of degree
 * 5, times 2^n.  x is clamped to [ln FLT_MIN, 88] so that 2^n stays a normal
 * number and nothing overflows: x > 88 gives exp(88) ~ 1.65e38 (never inf),
 * x < ln FLT_MIN gives 0 (the true value is below FLT_MIN; -inf gives 0), NaN
 * stays NaN.  tests/test_attention.c checks the accuracy and these limits.
 *
 * Each ISA half has its own include guard, so that a file may include this
 * header again after `#pragma GCC target(...)` to get the other half (the
 * test does that for both halves; kernels just include it once).
 */
#ifndef KERNELS_SIMD_MATH_H
#define KERNELS_SIMD_MATH_H

#include <immintrin.h>
#include <stddef.h>

#define SIMD_INLINE static inline __attribute__((always_inline))

#define SIMD_EXP_LO (-87.33654f)   /* ln FLT_MIN */
#define SIMD_EXP_HI 88.0f
#define SIMD_LOG2E 1.44269504088896341f
#define SIMD_LN2_HI 0.693359375f      /* ln 2 = HI + LO; n * HI is exact for |n| <= 127 */
#define SIMD_LN2_LO (-2.12194440e-4f)
#define SIMD_EXP_P0 1.9875691500e-4f
#define SIMD_EXP_P1 1.3981999507e-3f
#define SIMD_EXP_P2 8.3334519073e-3f
#define SIMD_EXP_P3 4.1665795894e-2f
#define SIMD_EXP_P4 1.6666665459e-1f
#define SIMD_EXP_P5 5.0000001201e-1f

#endif

#if defined(__AVX2__) && defined(__FMA__) && !defined(KERNELS_SIMD_MATH_AVX2)
#define KERNELS_SIMD_MATH_AVX2

/* All-ones in the first min(rem, 8) lanes: the mask for _mm256_mask{load,store}_ps. */
SIMD_INLINE __m256i simd_mask8(size_t rem)
{
    const int r = rem < 8 ? (int)rem : 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first min(rem, 8) values at p; the other lanes read as 0 (and are not touched). */
SIMD_INLINE __m256 simd_load8(const float *p, size_t rem)
{
    return rem >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, simd_mask8(rem));
}

SIMD_INLINE void simd_store8(float *p, size_t rem, __m256 x)   /* the first min(rem, 8) lanes */
{
    if (rem >= 8)
        _mm256_storeu_ps(p, x);
    else
        _mm256_maskstore_ps(p, simd_mask8(rem), x);
}

SIMD_INLINE float simd_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

SIMD_INLINE float simd_hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

SIMD_INLINE __m256 simd_exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(SIMD_EXP_LO);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ);   /* x >= lo or NaN */
    /* min/max return their second operand if either is NaN, so NaN passes through */
    x = _mm256_max_ps(lo, _mm256_min_ps(_mm256_set1_ps(SIMD_EXP_HI), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(SIMD_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SIMD_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SIMD_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SIMD_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SIMD_EXP_P5));
    /* (r + P r^2) + 1: adding the 1 last rounds only once at full magnitude */
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i two_n = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(two_n)));
}

#endif

#if defined(__AVX512F__) && !defined(KERNELS_SIMD_MATH_AVX512)
#define KERNELS_SIMD_MATH_AVX512

SIMD_INLINE __m512 simd_exp16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(SIMD_EXP_LO);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);   /* x >= lo or NaN */
    x = _mm512_max_ps(lo, _mm512_min_ps(_mm512_set1_ps(SIMD_EXP_HI), x));   /* NaN stays NaN */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(SIMD_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SIMD_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SIMD_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SIMD_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SIMD_EXP_P5));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);   /* p * 2^n */
}

#endif
