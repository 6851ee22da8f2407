/* simd: the vector operations of the kernels written once in kernels/X_simd.c,
 * named independently of the vector width.
 *
 * The Makefile compiles each X_simd.c twice: with the AVX2 + FMA flags into
 * X_simd_avx2.o (8 floats a vector), and with the AVX-512 flags and
 * -DSIMD_AVX512 into X_simd_avx512.o (16 floats).  SIMD_NAME(x) gives the
 * object's exported names (x_avx2 / x_avx512), which the dispatch in X.c
 * picks at run time.  Where a kernel's two paths need different code (a
 * transpose, a register block), X_simd.c says so with #ifdef SIMD_AVX512.
 * The reductions (vhsum, vhmax) add lanes in a width-dependent order, so the
 * two paths may differ in the last bits; each is tested against the scalar
 * reference.
 *
 * Tails: vload/vstore take the count of values left from p (any int: <= 0 is
 * none, >= VW a whole vector).  Lanes past it read as 0 and are not written:
 * vmaskmov on AVX2, lane masks on AVX-512, and a plain move for whole vectors
 * on both (on AMD Zen 5 a masked 512-bit load of a whole vector streams from
 * memory at a third of a plain load's rate: docs/benchmarks.md).
 * A vmask is a lane predicate: all-ones / zero int lanes on AVX2, a k mask on
 * AVX-512.
 */
#ifndef KERNELS_SIMD_H
#define KERNELS_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/simd_math.h"

#define SIMD_CAT_(a, b) a##_##b
#define SIMD_CAT(a, b) SIMD_CAT_(a, b)

#ifdef SIMD_AVX512

#ifndef __AVX512F__
#error "SIMD_AVX512 needs the AVX-512 flags (see the Makefile)"
#endif

enum { VW = 16 };
#define SIMD_NAME(name) SIMD_CAT(name, avx512)
typedef __m512 vfloat;
typedef __m512d vdouble;
typedef __m512i vint;
typedef __mmask16 vmask;

SIMD_INLINE vmask vmask_n(ptrdiff_t rem)   /* the first rem lanes */
{
    return rem >= VW ? (vmask)0xFFFF : rem <= 0 ? (vmask)0 : (vmask)((1u << rem) - 1);
}
SIMD_INLINE vfloat vzero(void) { return _mm512_setzero_ps(); }
SIMD_INLINE vfloat vset1(float x) { return _mm512_set1_ps(x); }
SIMD_INLINE vfloat vbroadcast(const float *p) { return _mm512_set1_ps(*p); }   /* vset1(*p) */
SIMD_INLINE vfloat vloadu(const float *p) { return _mm512_loadu_ps(p); }
SIMD_INLINE void vstoreu(float *p, vfloat x) { _mm512_storeu_ps(p, x); }
SIMD_INLINE vfloat vload(const float *p, ptrdiff_t rem)
{
    return rem >= VW ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(vmask_n(rem), p);
}
SIMD_INLINE vfloat vload_or(const float *p, ptrdiff_t rem, float fill)   /* lanes past rem: fill */
{
    return rem >= VW ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(_mm512_set1_ps(fill), vmask_n(rem), p);
}
SIMD_INLINE void vstore(float *p, ptrdiff_t rem, vfloat x)
{
    if (rem >= VW)
        _mm512_storeu_ps(p, x);
    else
        _mm512_mask_storeu_ps(p, vmask_n(rem), x);
}
/* A tail worked out once for many loads and stores (a loop's invariant). */
typedef __mmask16 vtail;
SIMD_INLINE vtail vtail_n(ptrdiff_t rem) { return vmask_n(rem); }
SIMD_INLINE vfloat vload_t(const float *p, vtail t) { return _mm512_maskz_loadu_ps(t, p); }
SIMD_INLINE void vstore_t(float *p, vtail t, vfloat x) { _mm512_mask_storeu_ps(p, t, x); }
SIMD_INLINE vfloat vadd(vfloat a, vfloat b) { return _mm512_add_ps(a, b); }
SIMD_INLINE vfloat vsub(vfloat a, vfloat b) { return _mm512_sub_ps(a, b); }
SIMD_INLINE vfloat vmul(vfloat a, vfloat b) { return _mm512_mul_ps(a, b); }
SIMD_INLINE vfloat vdiv(vfloat a, vfloat b) { return _mm512_div_ps(a, b); }
SIMD_INLINE vfloat vmax(vfloat a, vfloat b) { return _mm512_max_ps(a, b); }
SIMD_INLINE vfloat vmin(vfloat a, vfloat b) { return _mm512_min_ps(a, b); }
SIMD_INLINE vfloat vsqrt(vfloat a) { return _mm512_sqrt_ps(a); }
SIMD_INLINE vfloat vfmadd(vfloat a, vfloat b, vfloat c) { return _mm512_fmadd_ps(a, b, c); }
SIMD_INLINE vfloat vfnmadd(vfloat a, vfloat b, vfloat c) { return _mm512_fnmadd_ps(a, b, c); }
SIMD_INLINE vfloat vfmsub(vfloat a, vfloat b, vfloat c) { return _mm512_fmsub_ps(a, b, c); }
SIMD_INLINE vfloat vexp(vfloat x) { return simd_exp16(x); }
SIMD_INLINE float vhsum(vfloat v) { return _mm512_reduce_add_ps(v); }
SIMD_INLINE float vhmax(vfloat v) { return _mm512_reduce_max_ps(v); }
#define vcmp(a, b, pred) _mm512_cmp_ps_mask(a, b, pred)
SIMD_INLINE vmask vmask_from(int d)   /* lanes d, d + 1, ... */
{
    return d <= 0 ? (vmask)0xFFFF : (vmask)(0xFFFFu << d);
}
SIMD_INLINE vfloat vkeep(vmask m, vfloat x) { return _mm512_maskz_mov_ps(m, x); }   /* else 0 */
SIMD_INLINE vfloat vmax_where(vmask m, vfloat acc, vfloat x)   /* acc, or max(acc, x) in m */
{
    return _mm512_mask_max_ps(acc, m, acc, x);
}

/* Doubles: the float lanes of a widened in two halves. */
SIMD_INLINE vdouble vzero_pd(void) { return _mm512_setzero_pd(); }
SIMD_INLINE vdouble vcvt_lo_pd(vfloat a) { return _mm512_cvtps_pd(_mm512_castps512_ps256(a)); }
SIMD_INLINE vdouble vcvt_hi_pd(vfloat a) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)); }
SIMD_INLINE vdouble vfmadd_pd(vdouble a, vdouble b, vdouble c) { return _mm512_fmadd_pd(a, b, c); }
SIMD_INLINE vdouble vadd_pd(vdouble a, vdouble b) { return _mm512_add_pd(a, b); }
SIMD_INLINE double vhsum_pd(vdouble v) { return _mm512_reduce_add_pd(v); }

/* 32-bit integer lanes and the bits of float lanes. */
SIMD_INLINE vint vbits(vfloat x) { return _mm512_castps_si512(x); }
SIMD_INLINE vfloat vfrombits(vint x) { return _mm512_castsi512_ps(x); }
SIMD_INLINE vint vi_set1(int x) { return _mm512_set1_epi32(x); }
SIMD_INLINE vint vi_add(vint a, vint b) { return _mm512_add_epi32(a, b); }
SIMD_INLINE vint vi_and(vint a, vint b) { return _mm512_and_si512(a, b); }
SIMD_INLINE vint vi_or(vint a, vint b) { return _mm512_or_si512(a, b); }
SIMD_INLINE vint vi_srli(vint a, int n) { return _mm512_srli_epi32(a, n); }
SIMD_INLINE vint vi_slli(vint a, int n) { return _mm512_slli_epi32(a, n); }
SIMD_INLINE vmask vi_gt(vint a, vint b) { return _mm512_cmpgt_epi32_mask(a, b); }   /* signed */
SIMD_INLINE vint vi_select(vmask m, vint a, vint b) { return _mm512_mask_blend_epi32(m, b, a); }
/* uint16 values <-> the low halves of 32-bit lanes (stored values must fit) */
SIMD_INLINE vint vload_u16(const uint16_t *p, ptrdiff_t rem)
{
    return _mm512_cvtepu16_epi32(rem >= VW ? _mm256_loadu_si256((const __m256i *)p)
                                           : _mm256_maskz_loadu_epi16(vmask_n(rem), p));
}
SIMD_INLINE void vstore_u16(uint16_t *p, ptrdiff_t rem, vint x)
{
    if (rem >= VW)   /* vpmovdw: truncation */
        _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(x));
    else
        _mm512_mask_cvtepi32_storeu_epi16(p, vmask_n(rem), x);
}

#else /* AVX2 + FMA */

#if !defined(__AVX2__) || !defined(__FMA__)
#error "kernels/*_simd.c need the AVX2 + FMA flags, or SIMD_AVX512 (see the Makefile)"
#endif

enum { VW = 8 };
#define SIMD_NAME(name) SIMD_CAT(name, avx2)
typedef __m256 vfloat;
typedef __m256d vdouble;
typedef __m256i vint;
typedef __m256i vmask;

SIMD_INLINE vmask vmask_n(ptrdiff_t rem)
{
    const int r = rem < VW ? (int)rem : VW;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
SIMD_INLINE vfloat vzero(void) { return _mm256_setzero_ps(); }
SIMD_INLINE vfloat vset1(float x) { return _mm256_set1_ps(x); }
/* the memory form: gcc then keeps attention's mm loop as written (not unrolled twice) */
SIMD_INLINE vfloat vbroadcast(const float *p) { return _mm256_broadcast_ss(p); }
SIMD_INLINE vfloat vloadu(const float *p) { return _mm256_loadu_ps(p); }
SIMD_INLINE void vstoreu(float *p, vfloat x) { _mm256_storeu_ps(p, x); }
SIMD_INLINE vfloat vload(const float *p, ptrdiff_t rem)
{
    return rem >= VW ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, vmask_n(rem));
}
SIMD_INLINE vfloat vload_or(const float *p, ptrdiff_t rem, float fill)
{
    if (rem >= VW)
        return _mm256_loadu_ps(p);
    const vmask k = vmask_n(rem);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, k), _mm256_castsi256_ps(k));
}
SIMD_INLINE void vstore(float *p, ptrdiff_t rem, vfloat x)
{
    if (rem >= VW)
        _mm256_storeu_ps(p, x);
    else
        _mm256_maskstore_ps(p, vmask_n(rem), x);
}
typedef int vtail;
SIMD_INLINE vtail vtail_n(ptrdiff_t rem) { return rem < VW ? (int)rem : VW; }
SIMD_INLINE vfloat vload_t(const float *p, vtail t) { return vload(p, t); }
SIMD_INLINE void vstore_t(float *p, vtail t, vfloat x) { vstore(p, t, x); }
SIMD_INLINE vfloat vadd(vfloat a, vfloat b) { return _mm256_add_ps(a, b); }
SIMD_INLINE vfloat vsub(vfloat a, vfloat b) { return _mm256_sub_ps(a, b); }
SIMD_INLINE vfloat vmul(vfloat a, vfloat b) { return _mm256_mul_ps(a, b); }
SIMD_INLINE vfloat vdiv(vfloat a, vfloat b) { return _mm256_div_ps(a, b); }
SIMD_INLINE vfloat vmax(vfloat a, vfloat b) { return _mm256_max_ps(a, b); }
SIMD_INLINE vfloat vmin(vfloat a, vfloat b) { return _mm256_min_ps(a, b); }
SIMD_INLINE vfloat vsqrt(vfloat a) { return _mm256_sqrt_ps(a); }
SIMD_INLINE vfloat vfmadd(vfloat a, vfloat b, vfloat c) { return _mm256_fmadd_ps(a, b, c); }
SIMD_INLINE vfloat vfnmadd(vfloat a, vfloat b, vfloat c) { return _mm256_fnmadd_ps(a, b, c); }
SIMD_INLINE vfloat vfmsub(vfloat a, vfloat b, vfloat c) { return _mm256_fmsub_ps(a, b, c); }
SIMD_INLINE vfloat vexp(vfloat x) { return simd_exp8(x); }
SIMD_INLINE float vhsum(vfloat v) { return simd_hsum8(v); }
SIMD_INLINE float vhmax(vfloat v) { return simd_hmax8(v); }
#define vcmp(a, b, pred) _mm256_castps_si256(_mm256_cmp_ps(a, b, pred))
SIMD_INLINE vmask vmask_from(int d)
{
    return _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(d - 1));
}
SIMD_INLINE vfloat vkeep(vmask m, vfloat x) { return _mm256_and_ps(_mm256_castsi256_ps(m), x); }
SIMD_INLINE vfloat vmax_where(vmask m, vfloat acc, vfloat x)
{
    const vfloat ninf = _mm256_set1_ps(-INFINITY);
    return _mm256_max_ps(acc, _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(m)));
}

SIMD_INLINE vdouble vzero_pd(void) { return _mm256_setzero_pd(); }
SIMD_INLINE vdouble vcvt_lo_pd(vfloat a) { return _mm256_cvtps_pd(_mm256_castps256_ps128(a)); }
SIMD_INLINE vdouble vcvt_hi_pd(vfloat a) { return _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)); }
SIMD_INLINE vdouble vfmadd_pd(vdouble a, vdouble b, vdouble c) { return _mm256_fmadd_pd(a, b, c); }
SIMD_INLINE vdouble vadd_pd(vdouble a, vdouble b) { return _mm256_add_pd(a, b); }
SIMD_INLINE double vhsum_pd(vdouble v)
{
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

SIMD_INLINE vint vbits(vfloat x) { return _mm256_castps_si256(x); }
SIMD_INLINE vfloat vfrombits(vint x) { return _mm256_castsi256_ps(x); }
SIMD_INLINE vint vi_set1(int x) { return _mm256_set1_epi32(x); }
SIMD_INLINE vint vi_add(vint a, vint b) { return _mm256_add_epi32(a, b); }
SIMD_INLINE vint vi_and(vint a, vint b) { return _mm256_and_si256(a, b); }
SIMD_INLINE vint vi_or(vint a, vint b) { return _mm256_or_si256(a, b); }
SIMD_INLINE vint vi_srli(vint a, int n) { return _mm256_srli_epi32(a, n); }
SIMD_INLINE vint vi_slli(vint a, int n) { return _mm256_slli_epi32(a, n); }
SIMD_INLINE vmask vi_gt(vint a, vint b) { return _mm256_cmpgt_epi32(a, b); }
SIMD_INLINE vint vi_select(vmask m, vint a, vint b) { return _mm256_blendv_epi8(b, a, m); }
/* AVX2 has no 16-bit masked moves: a partial vector goes through a stack copy. */
SIMD_INLINE vint vload_u16(const uint16_t *p, ptrdiff_t rem)
{
    if (rem >= VW)
        return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    uint16_t tail[VW] = {0};
    memcpy(tail, p, (size_t)(rem > 0 ? rem : 0) * sizeof *p);
    return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)tail));
}
SIMD_INLINE void vstore_u16(uint16_t *p, ptrdiff_t rem, vint x)
{
    /* packus saturates from signed 32 bits; the lanes hold 0..0xFFFF, so it is exact */
    const __m128i packed =
        _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    if (rem >= VW) {
        _mm_storeu_si128((__m128i *)(void *)p, packed);
        return;
    }
    uint16_t tail[VW];
    _mm_storeu_si128((__m128i *)(void *)tail, packed);
    memcpy(p, tail, (size_t)(rem > 0 ? rem : 0) * sizeof *p);
}

#endif

#endif
