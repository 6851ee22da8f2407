/* bf16mm for AVX2 + FMA, the widening arithmetic; contract in bf16mm_impl.h.
 * A block's 64 outputs are 8 vectors of accumulators, one row at a time (16
 * registers leave no room for more); a pair read as 8 dwords {W[2p][o],
 * W[2p+1][o]} gives W[2p] by a shift left of 16 and W[2p+1] by a mask. */
#include <immintrin.h>
#include <stdint.h>

#include "kernels/bf16mm_impl.h"

enum { V = BF16MM_NB / 8 };   /* vectors per block */

static inline void widen(const uint16_t *wp, __m256 *even, __m256 *odd)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)wp);
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xFFFF0000u)));
}

/* Row m of block k: acc = fma(x[i], W[i], acc) for i in order, then y. */
static void row(const bf16mm_args *a, int k, int m)
{
    const int in = a->in;
    const float *x = a->x + (size_t)m * in;
    const uint16_t *pb = a->p + (size_t)k * bf16mm_block_len(in);
    __m256 acc[V];
    for (int v = 0; v < V; v++)
        acc[v] = _mm256_setzero_ps();
    for (int q = 0; q < (in + 1) / 2; q++) {
        const __m256 xe = _mm256_set1_ps(x[2 * q]);
        const bool has_odd = 2 * q + 1 < in;   /* an odd in: no last odd input */
        const __m256 xo = _mm256_set1_ps(has_odd ? x[2 * q + 1] : 0.0f);
        for (int v = 0; v < V; v++) {
            __m256 we, wo;
            widen(pb + (size_t)q * BF16MM_NB * 2 + 16 * v, &we, &wo);
            acc[v] = _mm256_fmadd_ps(xe, we, acc[v]);
            if (has_odd)
                acc[v] = _mm256_fmadd_ps(xo, wo, acc[v]);
        }
    }
    float s[BF16MM_NB];
    for (int v = 0; v < V; v++)
        _mm256_storeu_ps(s + 8 * v, acc[v]);
    const int o0 = k * BF16MM_NB, outs = bf16mm_block_outs(a->out, k);
    float *y = a->y + (size_t)m * a->out + o0;
    for (int j = 0; j < outs; j++)
        y[j] = a->b ? s[j] + a->b[o0 + j] : s[j];
}

void bf16mm_avx2(const bf16mm_args *a, int k0, int k1)
{
    for (int k = k0; k < k1; k++)   /* a block's weights stay in cache over the rows */
        for (int m = 0; m < a->n; m++)
            row(a, k, m);
}
