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
} convert_ops;

extern const convert_ops convert_ops_avx2, convert_ops_avx512;

#endif
