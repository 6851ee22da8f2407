/* AdamW and sumsq for AVX2 + FMA (8 floats a vector); contracts in
 * adamw_impl.h.  The last partial vector goes through vmaskmov
 * (simd_load8/simd_store8). */
#include <stddef.h>

#include "kernels/adamw_impl.h"
#include "kernels/simd_math.h"

static void update(float *param, const float *grad, float *m, float *v, size_t n,
                   const adamw_params *p, float bc1, float bc2)
{
    const __m256 gs = _mm256_set1_ps(p->grad_scale), lr = _mm256_set1_ps(p->lr);
    const __m256 lr_wd = _mm256_set1_ps(p->lr * p->weight_decay), eps = _mm256_set1_ps(p->eps);
    const __m256 b1 = _mm256_set1_ps(p->beta1), c1 = _mm256_set1_ps(1.0f - p->beta1);
    const __m256 b2 = _mm256_set1_ps(p->beta2), c2 = _mm256_set1_ps(1.0f - p->beta2);
    const __m256 ibc1 = _mm256_set1_ps(1.0f / bc1), ibc2 = _mm256_set1_ps(1.0f / bc2);
    for (size_t i = 0; i < n; i += 8) {
        const size_t r = n - i;
        const __m256 g = _mm256_mul_ps(simd_load8(grad + i, r), gs);
        const __m256 mi = _mm256_fmadd_ps(b1, simd_load8(m + i, r), _mm256_mul_ps(c1, g));
        const __m256 vi = _mm256_fmadd_ps(b2, simd_load8(v + i, r),
                                          _mm256_mul_ps(c2, _mm256_mul_ps(g, g)));
        __m256 w = simd_load8(param + i, r);
        w = _mm256_fnmadd_ps(lr_wd, w, w);   /* decoupled weight decay, before the Adam step */
        const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, ibc2)), eps);
        w = _mm256_fnmadd_ps(lr, _mm256_div_ps(_mm256_mul_ps(mi, ibc1), den), w);
        simd_store8(m + i, r, mi);
        simd_store8(v + i, r, vi);
        simd_store8(param + i, r, w);
    }
}

/* Squares are formed and summed in double lanes: exact products, and no float
 * accumulator to saturate on long inputs. */
static double sumsq_lanes(const float *x, size_t n)
{
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (size_t i = 0; i < n; i += 8) {
        const __m256 a = simd_load8(x + i, n - i);
        const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
        const __m256d a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
        lo = _mm256_fmadd_pd(a0, a0, lo);
        hi = _mm256_fmadd_pd(a1, a1, hi);
    }
    const __m256d s = _mm256_add_pd(lo, hi);
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

const adamw_ops adamw_ops_avx2 = {update, sumsq_lanes};
