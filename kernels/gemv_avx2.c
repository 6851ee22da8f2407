/* gemv for AVX2 + FMA; contract in gemv_impl.h, arithmetic in gemv.h.
 * gemv_n: each lane is one output, 32 outputs (4 vectors) per pass over the
 * rows of W, then 8 at a time, then one (fmaf is the same instruction here).
 * gemv_t: gemv.h's 16 lanes as two vectors, 4 rows at a time. */
#include <immintrin.h>
#include <math.h>

#include "kernels/gemv_impl.h"
#include "kernels/simd_math.h"

enum { V = 4 };

static void n_avx2(float *y, const float *x, const float *w, const float *b, int in, int out,
                   int o0, int o1)
{
    int o = o0;
    for (; o + 8 * V <= o1; o += 8 * V) {
        __m256 acc[V];
        for (int v = 0; v < V; v++)
            acc[v] = _mm256_setzero_ps();
        for (int i = 0; i < in; i++) {
            const __m256 xv = _mm256_set1_ps(x[i]);
            const float *wi = w + (size_t)i * out + o;
            for (int v = 0; v < V; v++)
                acc[v] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wi + 8 * v), acc[v]);
        }
        for (int v = 0; v < V; v++) {
            if (b)
                acc[v] = _mm256_add_ps(acc[v], _mm256_loadu_ps(b + o + 8 * v));
            _mm256_storeu_ps(y + o + 8 * v, acc[v]);
        }
    }
    for (; o + 8 <= o1; o += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < in; i++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i]), _mm256_loadu_ps(w + (size_t)i * out + o), acc);
        if (b)
            acc = _mm256_add_ps(acc, _mm256_loadu_ps(b + o));
        _mm256_storeu_ps(y + o, acc);
    }
    for (; o < o1; o++) {
        float acc = 0.0f;
        for (int i = 0; i < in; i++)
            acc = fmaf(x[i], w[(size_t)i * out + o], acc);
        y[o] = b ? acc + b[o] : acc;
    }
}

/* gemv.h's reduction: lanes 0-7 in lo, 8-15 in hi */
static float reduce16(__m256 lo, __m256 hi)
{
    const __m256 s8 = _mm256_add_ps(lo, hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

static void t_avx2(float *y, const float *x, const float *w, const float *b, int in, int o0,
                   int o1)
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
                const float *wr = w + (size_t)(o + r) * in + i;
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
