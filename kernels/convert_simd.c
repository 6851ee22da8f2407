/* fp32 <-> bf16 and fp16 loops, one source for AVX2 and AVX-512
 * (kernels/simd.h); contracts in convert_impl.h.  bf16: integer arithmetic on
 * the bit patterns (no AVX512-BF16 needed), the same steps as cvt_bf16_bits,
 * so the results are bit-identical to the scalar path; every loop runs on
 * tail counts, so the last partial vector needs no separate code.  fp16:
 * F16C's 8-lane conversions on both paths (the rule does not depend on the
 * width), the last < 8 values by the scalar rule. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/convert_impl.h"
#include "kernels/simd.h"

/* cvt_bf16_bits on every lane: each result in the low half of its lane. */
SIMD_INLINE vint bf16_lanes(vint b)
{
    const vint hi = vi_srli(b, 16);
    const vint bias = vi_add(vi_and(hi, vi_set1(1)), vi_set1(0x7FFF));
    const vint rounded = vi_srli(vi_add(b, bias), 16);
    /* a signed compare is fine: both sides have the sign bit clear */
    const vmask nan = vi_gt(vi_and(b, vi_set1((int)CVT_ABS_MASK)), vi_set1((int)CVT_INF_BITS));
    return vi_select(nan, vi_or(hi, vi_set1(CVT_QUIET_BF16)), rounded);
}

static void to_bf16(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i += VW)
        vstore_u16(out + i, n - i, bf16_lanes(vbits(vload(in + i, n - i))));
}

static void from_bf16(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i += VW)
        vstore(out + i, n - i, vfrombits(vi_slli(vload_u16(in + i, n - i), 16)));
}

static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += VW) {
        const vint b = vbits(vload(x + i, n - i));
        vstore(x + i, n - i, vfrombits(vi_slli(bf16_lanes(b), 16)));
    }
}

static void to_f16(uint16_t *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) {
        uint32_t b;
        memcpy(&b, in + i, sizeof b);
        out[i] = cvt_f16_bits(b);
    }
}

static void from_f16(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) {
        const uint32_t b = cvt_f16_to_f32_bits(in[i]);
        memcpy(out + i, &b, sizeof b);
    }
}

/* ---- bf16_pair_layout blocks ---- */

/* VW floats at p, of which rem exist (the rest read as 0), as bf16 in the
 * low halves of the lanes. */
SIMD_INLINE vint bf16_load(const float *p, ptrdiff_t rem)
{
    return bf16_lanes(vbits(vload(p, rem)));
}

/* The first n (at most VW) words of x at p. */
SIMD_INLINE void store_words(uint32_t *p, ptrdiff_t n, vint x)
{
    vstore((float *)(void *)p, n, vfrombits(x));   /* a bit copy, no float arithmetic */
}

static void pairs_rows(uint32_t *out, int a_blk, int n_blk, const float *src, size_t ldb,
                       int kvals, int ncols)
{
    for (int p = 0; p < a_blk; p++) {
        const float *lo = src + (size_t)2 * p * ldb, *hi = lo + ldb;
        const int rows = kvals - 2 * p;   /* of this pair's two rows, how many exist */
        for (int j = 0; j < n_blk; j += VW) {
            const ptrdiff_t rem = ncols - j;
            const vint a = rows > 0 ? bf16_load(lo + j, rem) : vi_set1(0);
            const vint b = rows > 1 ? bf16_load(hi + j, rem) : vi_set1(0);
            store_words(out + (size_t)p * n_blk + j, n_blk - j, vi_or(a, vi_slli(b, 16)));
        }
    }
}

/* 2 VW consecutive floats (rem of them exist) as VW pair words: the bf16 of
 * value 2q in word q's low half, of 2q + 1 in its high half. */
SIMD_INLINE vint pair_words(const float *p, ptrdiff_t rem)
{
    const vint a = bf16_load(p, rem), b = bf16_load(p + VW, rem - VW);
#ifdef __AVX512F__
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(a)),
                              _mm512_cvtepi32_epi16(b), 1);
#else
    /* packus (exact: lanes hold 0..0xFFFF) interleaves the 128-bit halves */
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
#endif
}

/* r[i][j] <- r[j][i] for a VW x VW tile of 32-bit words */
static void transpose(vint r[VW])
{
#ifdef __AVX512F__
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4g + c]: in each 128-bit lane L, rows 4g..4g+3 of column 4L + c */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        const __m512i even0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
        const __m512i even1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
        const __m512i odd0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
        const __m512i odd1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_i32x4(even0, even1, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(even0, even1, 0xDD);
        r[4 + c] = _mm512_shuffle_i32x4(odd0, odd1, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(odd0, odd1, 0xDD);
    }
#else
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm256_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm256_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm256_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
    }
#endif
}

/* Tiles of VW columns (source rows) by VW pairs: each row's pairs converted
 * in place, then the tile transposed into VW rows of the block (fewer at
 * the block's edges). */
static void pairs_cols(uint32_t *out, int a_blk, int n_blk, const float *src, size_t ldb,
                       int kvals, int ncols)
{
    for (int j0 = 0; j0 < n_blk; j0 += VW)
        for (int p0 = 0; p0 < a_blk; p0 += VW) {
            vint r[VW];
            for (int j = 0; j < VW; j++)
                r[j] = j0 + j < ncols ? pair_words(src + (size_t)(j0 + j) * ldb + 2 * p0,
                                                   kvals - 2 * p0)
                                      : vi_set1(0);
            transpose(r);
            for (int p = 0; p < VW && p0 + p < a_blk; p++)
                store_words(out + (size_t)(p0 + p) * n_blk + j0, n_blk - j0, r[p]);
        }
}

const convert_ops SIMD_NAME(convert_ops) = {to_bf16, from_bf16,  round_bf16, to_f16,
                                            from_f16, pairs_rows, pairs_cols};
