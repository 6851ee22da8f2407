/* GELU, residual add and bias gradient for AVX2 + FMA (8 floats a vector);
 * contracts in elementwise_impl.h.  The last partial vector goes through
 * vmaskmov (simd_load8/simd_store8).  GELU is evaluated as in
 * elementwise_avx512.c: s = 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), which
 * avoids the cancellation in 1 + tanh(u) for negative x, on x clamped to
 * [-GELU_XMAX, GELU_XMAX]; below -GELU_XMAX gelu and gelu' are exactly 0. */
#include <stddef.h>
#include <string.h>

#include "kernels/elementwise_impl.h"
#include "kernels/simd_math.h"

#define GELU_XMAX 10.0f   /* beyond it gelu is x or ~0 and gelu' is 1 or ~0 in float */

SIMD_INLINE __m256 clamp8(__m256 x)   /* NaN stays NaN */
{
    return _mm256_max_ps(_mm256_set1_ps(-GELU_XMAX), _mm256_min_ps(_mm256_set1_ps(GELU_XMAX), x));
}

SIMD_INLINE __m256 live8(__m256 x)   /* all-ones where x >= -GELU_XMAX, or NaN */
{
    return _mm256_cmp_ps(x, _mm256_set1_ps(-GELU_XMAX), _CMP_NLT_UQ);
}

/* s = 1 / (1 + e) with e = exp(-2u), u = k (xc + a xc^3), for clamped xc. */
SIMD_INLINE __m256 gelu_s8(__m256 xc, __m256 *e)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 inner = _mm256_fmadd_ps(_mm256_set1_ps((float)GELU_A), _mm256_mul_ps(xc, xc), one);
    *e = simd_exp8(_mm256_mul_ps(_mm256_mul_ps(xc, inner), _mm256_set1_ps((float)(-2 * GELU_K))));
    return _mm256_div_ps(one, _mm256_add_ps(one, *e));
}

SIMD_INLINE __m256 gelu8(__m256 x)
{
    __m256 e;
    const __m256 s = gelu_s8(clamp8(x), &e);
    return _mm256_and_ps(live8(x), _mm256_mul_ps(x, s));
}

SIMD_INLINE __m256 gelu_grad8(__m256 x)
{
    const __m256 xc = clamp8(x);
    __m256 e;
    const __m256 s = gelu_s8(xc, &e);
    const __m256 q = _mm256_fmadd_ps(_mm256_set1_ps((float)(6 * GELU_K * GELU_A)),
                                     _mm256_mul_ps(xc, xc), _mm256_set1_ps((float)(2 * GELU_K)));
    const __m256 t =
        _mm256_fmadd_ps(_mm256_mul_ps(xc, _mm256_mul_ps(e, s)), q, _mm256_set1_ps(1.0f));
    return _mm256_and_ps(live8(x), _mm256_mul_ps(s, t));   /* s (1 + x (1 - s) q) */
}

static void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i += 8)
        simd_store8(out + i, n - i, gelu8(simd_load8(inp + i, n - i)));
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i += 8)
        simd_store8(
            dinp + i, n - i,
            _mm256_mul_ps(gelu_grad8(simd_load8(inp + i, n - i)), simd_load8(dout + i, n - i)));
}

static void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i += 8)
        simd_store8(out + i, n - i,
                    _mm256_add_ps(simd_load8(a + i, n - i), simd_load8(b + i, n - i)));
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
            for (int j = 0; j < cw; j += 8)
                _mm256_storeu_ps(
                    sum + j, _mm256_add_ps(_mm256_loadu_ps(sum + j), simd_load8(g + j, cw - j)));
        }
        for (int j = 0; j < cw; j += 8) {
            float *p = dbias + c0 + j;
            simd_store8(p, cw - j, _mm256_add_ps(simd_load8(p, cw - j), _mm256_loadu_ps(sum + j)));
        }
    }
}

const elementwise_ops elementwise_ops_avx2 = {gelu_forward, gelu_backward, residual_forward,
                                              bias_backward_cols};
