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

const convert_ops SIMD_NAME(convert_ops) = {to_bf16, from_bf16, round_bf16, to_f16, from_f16};
