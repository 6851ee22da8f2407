/* Softmax + cross-entropy row kernel for AVX-512 (16 floats a vector);
 * contract in softmax_xent_impl.h.  Lanes past the end of the row load as
 * -inf, which the max ignores and whose exp is 0, so the partial last vector
 * needs no separate code. */
#include <math.h>
#include <stddef.h>

#include "kernels/simd_math.h"
#include "kernels/softmax_xent_impl.h"

enum { SUM_BLOCK = 1024 };   /* values per partial sum; a multiple of the vector width */

SIMD_INLINE __m512 load16(const float *p, size_t rem)   /* lanes >= rem read -inf */
{
    return _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), simd_mask16(rem), p);
}

/* Sum of exp(x - mx) over the row in float lanes, block by block so that the
 * rounding error grows with SUM_BLOCK + V / SUM_BLOCK terms rather than V.
 * With store, each exp is also written over its x.  Meanwhile pf[0, V) is
 * prefetched into L2, one cache line per 16 values. */
static float exp_sum(float *x, const float *pf, int V, float mx, bool store)
{
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int b = 0; b < V; b += SUM_BLOCK) {
        const int end = V - b < SUM_BLOCK ? V : b + SUM_BLOCK;
        __m512 part = _mm512_setzero_ps();
        for (int i = b; i < end; i += 16) {
            const __m512 e = simd_exp16(_mm512_sub_ps(load16(x + i, end - i), vm));
            part = _mm512_add_ps(part, e);
            _mm_prefetch((const char *)(pf + i), _MM_HINT_T1);
            if (store)
                _mm512_mask_storeu_ps(x + i, simd_mask16(end - i), e);
        }
        sum = _mm512_add_ps(sum, part);
    }
    return _mm512_reduce_add_ps(sum);
}

static float row(float *x, const float *next, int target, int V, float dloss, bool backward)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < V; i += 16)
        vmax = _mm512_max_ps(vmax, load16(x + i, V - i));
    const float mx = _mm512_reduce_max_ps(vmax);
    const float xt = x[target];   /* before the row is overwritten */
    /* the first pass over the next row then reads from L2 (the last row
     * "prefetches" itself, which is already cached) */
    const float total = exp_sum(x, next ? next : x, V, mx, backward);
    if (backward) {
        const __m512 s = _mm512_set1_ps(dloss / total);
        for (int i = 0; i < V; i += 16) {
            const __mmask16 k = simd_mask16(V - i);
            _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s));
        }
        x[target] -= dloss;
    }
    return (float)(log(total) - ((double)xt - mx));
}

const softmax_xent_ops softmax_xent_ops_avx512 = {row};
