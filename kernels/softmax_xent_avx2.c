/* Softmax + cross-entropy row kernel for AVX2 + FMA (8 floats a vector);
 * contract in softmax_xent_impl.h.  Lanes past the end of the row load as
 * -inf, which the max ignores and whose exp is 0; the partial last vector is
 * read and written with vmaskmov. */
#include <math.h>
#include <stddef.h>

#include "kernels/simd_math.h"
#include "kernels/softmax_xent_impl.h"

enum { SUM_BLOCK = 1024 };   /* values per partial sum; a multiple of the vector width */

SIMD_INLINE __m256 load8(const float *p, size_t rem)   /* lanes >= rem read -inf */
{
    if (rem >= 8)
        return _mm256_loadu_ps(p);
    const __m256i k = simd_mask8(rem);
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(p, k),
                            _mm256_castsi256_ps(k));
}

/* Sum of exp(x - mx) over the row in float lanes, block by block so that the
 * rounding error grows with SUM_BLOCK + V / SUM_BLOCK terms rather than V.
 * With store, each exp is also written over its x.  Meanwhile pf[0, V) is
 * prefetched into L2, one cache line per 16 values. */
static float exp_sum(float *x, const float *pf, int V, float mx, bool store)
{
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (int b = 0; b < V; b += SUM_BLOCK) {
        const int end = V - b < SUM_BLOCK ? V : b + SUM_BLOCK;
        __m256 part = _mm256_setzero_ps();
        for (int i = b; i < end; i += 8) {
            const __m256 e = simd_exp8(_mm256_sub_ps(load8(x + i, end - i), vm));
            part = _mm256_add_ps(part, e);
            if (i % 16 == 0)
                _mm_prefetch((const char *)(pf + i), _MM_HINT_T1);
            if (store)
                simd_store8(x + i, end - i, e);
        }
        sum = _mm256_add_ps(sum, part);
    }
    return simd_hsum8(sum);
}

static float row(float *x, const float *next, int target, int V, float dloss, bool backward)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int i = 0; i < V; i += 8)
        vmax = _mm256_max_ps(vmax, load8(x + i, V - i));
    const float mx = simd_hmax8(vmax);
    const float xt = x[target];   /* before the row is overwritten */
    /* the first pass over the next row then reads from L2 (the last row
     * "prefetches" itself, which is already cached) */
    const float total = exp_sum(x, next ? next : x, V, mx, backward);
    if (backward) {
        const __m256 s = _mm256_set1_ps(dloss / total);
        for (int i = 0; i < V; i += 8)
            simd_store8(x + i, V - i, _mm256_mul_ps(simd_load8(x + i, V - i), s));
        x[target] -= dloss;
    }
    return (float)(log(total) - ((double)xt - mx));
}

const softmax_xent_ops softmax_xent_ops_avx2 = {row};
