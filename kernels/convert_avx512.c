/* fp32 <-> bf16 loops for AVX-512 (16 values a vector); contracts in
 * convert_impl.h.  Plain AVX-512F integer arithmetic on the bit patterns (no
 * AVX512-BF16 needed), the same steps as cvt_bf16_bits, so the results are
 * bit-identical to the scalar path.  Every loop runs on lane masks, so the
 * last partial vector needs no separate code. */
#include <stddef.h>
#include <stdint.h>

#include "kernels/convert_impl.h"
#include "kernels/simd_math.h"

/* cvt_bf16_bits on 16 lanes: each result in the low half of its lane. */
static inline __m512i bf16_lanes(__m512i b)
{
    const __m512i hi = _mm512_srli_epi32(b, 16);
    const __m512i bias = _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)),
                                          _mm512_set1_epi32(0x7FFF));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(b, bias), 16);
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, _mm512_set1_epi32((int)CVT_ABS_MASK)),
                                _mm512_set1_epi32((int)CVT_INF_BITS));
    return _mm512_mask_or_epi32(rounded, nan, hi, _mm512_set1_epi32(CVT_QUIET_BF16));
}

static void to_bf16(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        /* vpmovdw: the lanes hold values <= 0xFFFF, so truncation is exact */
        _mm512_mask_cvtepi32_storeu_epi16(out + i, k,
                                          bf16_lanes(_mm512_maskz_loadu_epi32(k, in + i)));
    }
}

static void from_bf16(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        const __m512i b = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, in + i));
        _mm512_mask_storeu_epi32(out + i, k, _mm512_slli_epi32(b, 16));
    }
}

static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        const __m512i b = _mm512_maskz_loadu_epi32(k, x + i);
        _mm512_mask_storeu_epi32(x + i, k, _mm512_slli_epi32(bf16_lanes(b), 16));
    }
}

const convert_ops convert_ops_avx512 = {to_bf16, from_bf16, round_bf16, convert_to_f16_f16c,
                                        convert_from_f16_f16c};
