/* Private to kernels/convert*.c: the per-ISA serial loops and the one scalar
 * rounding rule they all share.  The driver in convert.c owns the threading
 * (fixed-size chunks); each table supplies loops over one chunk. */
#ifndef KERNELS_CONVERT_IMPL_H
#define KERNELS_CONVERT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#define CVT_ABS_MASK 0x7FFFFFFFu
#define CVT_INF_BITS 0x7F800000u   /* |bits| above this is a NaN */
#define CVT_QUIET_BF16 0x0040u     /* top mantissa bit of a bf16: set = quiet NaN */

/* fp32 bits -> bf16 bits, round to nearest even.  Adding 0x7FFF plus the lsb
 * of the kept half carries into it exactly when the dropped half is above
 * 0x8000, or equal and the kept lsb is odd; a carry out of the mantissa bumps
 * the exponent, which is the right answer (the max finite rounds to inf).
 * NaNs would carry into the exponent or lose their payload, so they are
 * truncated and forced quiet instead.  No unsigned overflow: the largest
 * non-NaN pattern is 0xFF800000. */
static inline uint16_t cvt_bf16_bits(uint32_t b)
{
    if ((b & CVT_ABS_MASK) > CVT_INF_BITS)
        return (uint16_t)((b >> 16) | CVT_QUIET_BF16);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

typedef struct {
    void (*to_bf16)(uint16_t *out, const float *in, size_t n);
    void (*from_bf16)(float *out, const uint16_t *in, size_t n);
    void (*round_bf16)(float *x, size_t n);   /* in place: x = from_bf16(to_bf16(x)) */
    void (*to_f16)(uint16_t *out, const float *in, size_t n);
    void (*from_f16)(float *out, const uint16_t *in, size_t n);
    /* One block of bf16_pair_layout: src is its first value (k0, n0), of
     * which kvals (1..2 a_blk) rows and ncols (1..n_blk) columns exist, the
     * rest is padding (zero); out is the block's words, pair p at
     * out + p * n_blk.  pairs_rows reads B row-major (rows k of ldb values),
     * pairs_cols transposed (rows n, each pair adjacent). */
    void (*pairs_rows)(uint32_t *out, int a_blk, int n_blk, const float *src, size_t ldb,
                       int kvals, int ncols);
    void (*pairs_cols)(uint32_t *out, int a_blk, int n_blk, const float *src, size_t ldb,
                       int kvals, int ncols);
} convert_ops;

extern const convert_ops convert_ops_avx2, convert_ops_avx512;

/* fp32 bits -> fp16 bits, round to nearest even; overflow to inf; NaN kept
 * quiet with the top of its payload (as F16C's vcvtps2ph does). */
static inline uint16_t cvt_f16_bits(uint32_t b)
{
    uint32_t sign = (b >> 16) & 0x8000u, a = b & CVT_ABS_MASK;
    if (a > CVT_INF_BITS)
        return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    if (a >= 0x477FF000u)   /* >= 65520 rounds past the largest fp16, 65504 */
        return (uint16_t)(sign | 0x7C00u);
    if (a >= 0x38800000u) {   /* a normal fp16: rebias the exponent 127 -> 15 */
        uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
    }
    /* subnormal (or zero): the count of 2^-24 units, rounded to nearest even;
     * shifting the 24-bit significand keeps it in integers */
    uint32_t e = a >> 23;
    if (e < 102)   /* below 2^-25: rounds to zero */
        return (uint16_t)sign;
    uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e;   /* 14..24 */
    uint32_t q = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    q += rest > half || (rest == half && (q & 1u));
    return (uint16_t)(sign | q);
}

/* fp16 bits -> fp32 bits (exact); NaNs come out quiet. */
static inline uint32_t cvt_f16_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F)
        return sign | 0x7F800000u | (m << 13) | (m ? 0x400000u : 0);
    if (e != 0)
        return sign | ((e + 112) << 23) | (m << 13);
    if (m == 0)
        return sign;
    int shift = 0;   /* subnormal: normalise the significand */
    while (!(m & 0x400u)) {
        m <<= 1;
        shift++;
    }
    return sign | ((uint32_t)(113 - shift) << 23) | ((m & 0x3FFu) << 13);
}

#endif
