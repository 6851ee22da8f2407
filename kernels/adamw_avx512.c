/* AdamW and sumsq for AVX-512 (16 floats a vector); contracts in
 * adamw_impl.h.  Loops run on lane masks, so any length works without a
 * separate tail. */
#include <stddef.h>

#include "kernels/adamw_impl.h"
#include "kernels/simd_math.h"

static void update(float *param, const float *grad, float *m, float *v, size_t n,
                   const adamw_params *p, float bc1, float bc2)
{
    const __m512 gs = _mm512_set1_ps(p->grad_scale), lr = _mm512_set1_ps(p->lr);
    const __m512 lr_wd = _mm512_set1_ps(p->lr * p->weight_decay), eps = _mm512_set1_ps(p->eps);
    const __m512 b1 = _mm512_set1_ps(p->beta1), c1 = _mm512_set1_ps(1.0f - p->beta1);
    const __m512 b2 = _mm512_set1_ps(p->beta2), c2 = _mm512_set1_ps(1.0f - p->beta2);
    const __m512 ibc1 = _mm512_set1_ps(1.0f / bc1), ibc2 = _mm512_set1_ps(1.0f / bc2);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = simd_mask16(n - i);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, grad + i), gs);
        const __m512 mi =
            _mm512_fmadd_ps(b1, _mm512_maskz_loadu_ps(k, m + i), _mm512_mul_ps(c1, g));
        const __m512 vi = _mm512_fmadd_ps(b2, _mm512_maskz_loadu_ps(k, v + i),
                                          _mm512_mul_ps(c2, _mm512_mul_ps(g, g)));
        __m512 w = _mm512_maskz_loadu_ps(k, param + i);
        w = _mm512_fnmadd_ps(lr_wd, w, w);   /* decoupled weight decay, before the Adam step */
        const __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(vi, ibc2)), eps);
        w = _mm512_fnmadd_ps(lr, _mm512_div_ps(_mm512_mul_ps(mi, ibc1), den), w);
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        _mm512_mask_storeu_ps(param + i, k, w);
    }
}

/* Squares are formed and summed in double lanes: exact products, and no float
 * accumulator to saturate on long inputs. */
static double sumsq_lanes(const float *x, size_t n)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (size_t i = 0; i < n; i += 16) {
        const __m512 a = _mm512_maskz_loadu_ps(simd_mask16(n - i), x + i);
        const __m512d a0 = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
        const __m512d a1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1));
        lo = _mm512_fmadd_pd(a0, a0, lo);
        hi = _mm512_fmadd_pd(a1, a1, hi);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

const adamw_ops adamw_ops_avx512 = {update, sumsq_lanes};
