/* GELU, residual add and bias gradient for AVX-512 (16 floats a vector);
 * contracts in elementwise_impl.h.  Loops run on lane masks, so any length
 * works without a separate tail.
 *
 * GELU goes through s = 0.5 (1 + tanh(u)) = 1 / (1 + e), e = exp(-2u): then
 * gelu = x s and gelu' = s + x s (1 - s) 2k (1 + 3a x^2) with 1 - s = e s.
 * This is tanh by exp without the cancellation that 1 + tanh(u) suffers for
 * negative x when tanh is formed as 1 - 2 / (exp(2u) + 1).  x is clamped to
 * [-GELU_XMAX, GELU_XMAX] so that no intermediate overflows; below -GELU_XMAX
 * both gelu and gelu' are set to exactly 0 (the true values are < 1e-35). */
#include <stddef.h>
#include <string.h>

#include "kernels/elementwise_impl.h"
#include "kernels/simd_math.h"

#define GELU_XMAX 10.0f   /* beyond it gelu is x or ~0 and gelu' is 1 or ~0 in float */

SIMD_INLINE __m512 clamp16(__m512 x)   /* NaN stays NaN */
{
    return _mm512_max_ps(_mm512_set1_ps(-GELU_XMAX), _mm512_min_ps(_mm512_set1_ps(GELU_XMAX), x));
}

SIMD_INLINE __mmask16 live16(__m512 x)   /* x >= -GELU_XMAX, or NaN */
{
    return _mm512_cmp_ps_mask(x, _mm512_set1_ps(-GELU_XMAX), _CMP_NLT_UQ);
}

/* s = 1 / (1 + e) with e = exp(-2u), u = k (xc + a xc^3), for clamped xc. */
SIMD_INLINE __m512 gelu_s16(__m512 xc, __m512 *e)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps((float)GELU_A), _mm512_mul_ps(xc, xc), one);
    *e = simd_exp16(_mm512_mul_ps(_mm512_mul_ps(xc, inner), _mm512_set1_ps((float)(-2 * GELU_K))));
    return _mm512_div_ps(one, _mm512_add_ps(one, *e));
}

SIMD_INLINE __m512 gelu16(__m512 x)
{
    __m512 e;
    const __m512 s = gelu_s16(clamp16(x), &e);
    return _mm512_maskz_mul_ps(live16(x), x, s);
}

SIMD_INLINE __m512 gelu_grad16(__m512 x)
{
    const __m512 xc = clamp16(x);
    __m512 e;
    const __m512 s = gelu_s16(xc, &e);
    const __m512 q = _mm512_fmadd_ps(_mm512_set1_ps((float)(6 * GELU_K * GELU_A)),
                                     _mm512_mul_ps(xc, xc), _mm512_set1_ps((float)(2 * GELU_K)));
    const __m512 t =
        _mm512_fmadd_ps(_mm512_mul_ps(xc, _mm512_mul_ps(e, s)), q, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mul_ps(live16(x), s, t);   /* s (1 + x (1 - s) q) */
}

static void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        _mm512_mask_storeu_ps(out + i, k, gelu16(_mm512_maskz_loadu_ps(k, inp + i)));
    }
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        const __m512 g = gelu_grad16(_mm512_maskz_loadu_ps(k, inp + i));
        _mm512_mask_storeu_ps(dinp + i, k, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, dout + i)));
    }
}

static void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        _mm512_mask_storeu_ps(out + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, a + i),
                                                        _mm512_maskz_loadu_ps(k, b + i)));
    }
}

/* The sums live in an L1-resident stack array; lanes past w load zeros from
 * dout, so full vectors of the array can be used. */
static void bias_backward_cols(float *dbias, const float *dout, int N, int stride, int w)
{
    float sum[EW_COL_CHUNK];
    for (int c0 = 0; c0 < w; c0 += EW_COL_CHUNK) {
        const int cw = w - c0 < EW_COL_CHUNK ? w - c0 : EW_COL_CHUNK;
        memset(sum, 0, sizeof sum);
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * stride + c0;
            for (int j = 0; j < cw; j += 16)
                _mm512_storeu_ps(sum + j,
                                 _mm512_add_ps(_mm512_loadu_ps(sum + j),
                                               _mm512_maskz_loadu_ps(simd_mask16(cw - j), g + j)));
        }
        for (int j = 0; j < cw; j += 16) {
            const __mmask16 k = simd_mask16(cw - j);
            float *p = dbias + c0 + j;
            _mm512_mask_storeu_ps(
                p, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, p), _mm512_loadu_ps(sum + j)));
        }
    }
}

const elementwise_ops elementwise_ops_avx512 = {gelu_forward, gelu_backward, residual_forward,
                                                bias_backward_cols};
