/* fp32 <-> bf16 loops for AVX2 (8 values a vector); contracts in
 * convert_impl.h.  Integer arithmetic on the bit patterns, the same steps as
 * cvt_bf16_bits, so the results are bit-identical to the scalar path.  AVX2
 * has no 16-bit masked store, so the conversions finish the last < 8 values
 * with the scalar rule; the in-place rounding is all 32-bit and uses vmaskmov
 * (simd_load8/simd_store8) for its last partial vector. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/convert_impl.h"
#include "kernels/simd_math.h"

/* cvt_bf16_bits on 8 lanes: each result in the low half of its lane. */
static inline __m256i bf16_lanes(__m256i b)
{
    const __m256i hi = _mm256_srli_epi32(b, 16);
    const __m256i bias = _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)),
                                          _mm256_set1_epi32(0x7FFF));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(b, bias), 16);
    /* a signed compare is fine: both sides have the sign bit clear */
    const __m256i nan =
        _mm256_cmpgt_epi32(_mm256_and_si256(b, _mm256_set1_epi32((int)CVT_ABS_MASK)),
                           _mm256_set1_epi32((int)CVT_INF_BITS));
    const __m256i quiet = _mm256_or_si256(hi, _mm256_set1_epi32(CVT_QUIET_BF16));
    return _mm256_blendv_epi8(rounded, quiet, nan);
}

static void to_bf16(uint16_t *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i r = bf16_lanes(_mm256_loadu_si256((const __m256i *)(in + i)));
        /* packus saturates from signed 32 bits; the lanes hold 0..0xFFFF, so it is exact */
        const __m128i packed =
            _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(out + i), packed);
    }
    for (; i < n; i++) {
        uint32_t b;
        memcpy(&b, in + i, sizeof b);
        out[i] = cvt_bf16_bits(b);
    }
}

static void from_bf16(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + i)));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_slli_epi32(b, 16));
    }
    for (; i < n; i++) {
        const uint32_t b = (uint32_t)in[i] << 16;
        memcpy(out + i, &b, sizeof b);
    }
}

static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        const __m256i b = _mm256_castps_si256(simd_load8(x + i, n - i));
        simd_store8(x + i, n - i, _mm256_castsi256_ps(_mm256_slli_epi32(bf16_lanes(b), 16)));
    }
}

void convert_to_f16_f16c(uint16_t *out, const float *in, size_t n)
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

void convert_from_f16_f16c(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) {
        const uint32_t b = cvt_f16_to_f32_bits(in[i]);
        memcpy(out + i, &b, sizeof b);
    }
}

const convert_ops convert_ops_avx2 = {to_bf16, from_bf16, round_bf16, convert_to_f16_f16c,
                                      convert_from_f16_f16c};
