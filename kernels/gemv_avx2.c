/* gemv for AVX2 + FMA; contract in gemv_impl.h, arithmetic in gemv.h.
 * gemv_n: each lane is one output; the share of y accumulates in place while
 * W streams past row by row (fmaf for the last few is the same instruction).
 * gemv_t: gemv.h's 16 lanes as two vectors, 4 rows at a time. */
#include <immintrin.h>
#include <math.h>

#include "kernels/gemv_impl.h"
#include "kernels/simd_math.h"

enum { V = 4 };

/* y[o0..o1) serves as the accumulators (in L1), so W is read row by row in
 * its layout, one sequential stream; the last outputs short of 8 one by one. */
static void n_avx2(float *y, const float *x, const float *w, const float *b, int in, int out,
                   int o0, int o1)
{
    const int o8 = o0 + (o1 - o0) / 8 * 8;
    for (int o = o0; o < o1; o++)
        y[o] = 0.0f;
    for (int i = 0; i < in; i++) {
        const __m256 xv = _mm256_set1_ps(x[i]);
        const float *wi = w + (size_t)i * out;
        for (int o = o0; o < o8; o += 8)
            _mm256_storeu_ps(y + o, _mm256_fmadd_ps(xv, _mm256_loadu_ps(wi + o), _mm256_loadu_ps(y + o)));
        for (int o = o8; o < o1; o++)
            y[o] = fmaf(x[i], wi[o], y[o]);
    }
    if (b)
        for (int o = o0; o < o1; o++)
            y[o] = y[o] + b[o];
}

/* gemv.h's reduction: lanes 0-7 in lo, 8-15 in hi */
static float reduce16(__m256 lo, __m256 hi)
{
    const __m256 s8 = _mm256_add_ps(lo, hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

static void t_avx2(float *y, const float *x, const float *w, int ldw, const float *b, int in,
                   int o0, int o1)
{
    for (int o = o0; o < o1; o += V) {
        const int rows = o1 - o < V ? o1 - o : V;
        __m256 lo[V], hi[V];
        for (int r = 0; r < V; r++)
            lo[r] = hi[r] = _mm256_setzero_ps();
        for (int i = 0; i < in; i += 16) {
            const size_t rem = (size_t)(in - i);
            const __m256 x0 = simd_load8(x + i, rem), x1 = simd_load8(x + i + 8, rem > 8 ? rem - 8 : 0);
            for (int r = 0; r < rows; r++) {
                const float *wr = w + (size_t)(o + r) * ldw + i;
                lo[r] = _mm256_fmadd_ps(x0, simd_load8(wr, rem), lo[r]);
                hi[r] = _mm256_fmadd_ps(x1, simd_load8(wr + 8, rem > 8 ? rem - 8 : 0), hi[r]);
            }
        }
        for (int r = 0; r < rows; r++) {
            const float s = reduce16(lo[r], hi[r]);
            y[o + r] = b ? s + b[o + r] : s;
        }
    }
}

const gemv_ops gemv_ops_avx2 = {n_avx2, t_avx2};
