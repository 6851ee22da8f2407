/* gemv for AVX-512; contract in gemv_impl.h, arithmetic in gemv.h.
 * gemv_n: each lane is one output; the share of y accumulates in place while
 * W streams past row by row.  gemv_t: the 16 lanes are gemv.h's lanes, 4 rows at a time for
 * independent dependency chains; the tail of a row is a masked load (zeros). */
#include <immintrin.h>
#include <stddef.h>

#include "kernels/gemv_impl.h"

enum { V = 4 };   /* rows per pass in gemv_t */

static __mmask16 tail_mask(int rem)
{
    return rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
}

/* y[o0..o1) serves as the accumulators (in L1), so W is read row by row in
 * its layout, one sequential stream, whatever the width of the share. */
static void n_avx512(float *y, const float *x, const float *w, const float *b, int in, int out,
                     int o0, int o1)
{
    for (int o = o0; o < o1; o += 16)
        _mm512_mask_storeu_ps(y + o, tail_mask(o1 - o), _mm512_setzero_ps());
    for (int i = 0; i < in; i++) {
        const __m512 xv = _mm512_set1_ps(x[i]);
        const float *wi = w + (size_t)i * out;
        int o = o0;
        for (; o + 16 <= o1; o += 16)
            _mm512_storeu_ps(y + o, _mm512_fmadd_ps(xv, _mm512_loadu_ps(wi + o), _mm512_loadu_ps(y + o)));
        if (o < o1) {
            const __mmask16 k = tail_mask(o1 - o);
            _mm512_mask_storeu_ps(y + o, k, _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, wi + o),
                                                            _mm512_maskz_loadu_ps(k, y + o)));
        }
    }
    if (b)
        for (int o = o0; o < o1; o += 16) {
            const __mmask16 k = tail_mask(o1 - o);
            _mm512_mask_storeu_ps(y + o, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, y + o),
                                                          _mm512_maskz_loadu_ps(k, b + o)));
        }
}

/* gemv.h's reduction of the 16 lanes */
static float reduce16(__m512 a)
{
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

static void t_avx512(float *y, const float *x, const float *w, int ldw, const float *b, int in,
                     int o0, int o1)
{
    for (int o = o0; o < o1; o += V) {
        const int rows = o1 - o < V ? o1 - o : V;
        __m512 acc[V];
        for (int r = 0; r < V; r++)
            acc[r] = _mm512_setzero_ps();
        for (int i = 0; i < in; i += 16) {
            const __mmask16 k = tail_mask(in - i);
            const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
            for (int r = 0; r < rows; r++)
                acc[r] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(k, w + (size_t)(o + r) * ldw + i),
                                         acc[r]);
        }
        for (int r = 0; r < rows; r++) {
            const float s = reduce16(acc[r]);
            y[o + r] = b ? s + b[o + r] : s;
        }
    }
}

const gemv_ops gemv_ops_avx512 = {n_avx512, t_avx512};
