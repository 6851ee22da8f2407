/* bf16mm for AVX-512; contract in bf16mm_impl.h, arithmetic in bf16mm.h.
 * A block's 64 outputs are 4 vectors of accumulators per row, up to R rows a
 * pass, so each 64-byte read of W serves R rows.  Compiled plain, the
 * weights are widened in registers: a pair read as 16 dwords {W[2p][o],
 * W[2p+1][o]} gives W[2p] by a shift left of 16 and W[2p+1] by a mask.
 * Compiled again as bf16mm_bf16.c with AVX512-BF16 (__AVX512BF16__), one
 * vdpbf16ps per vector and pair instead, on x rounded to bf16 16 pairs at a
 * time: bf16mm_dot.  One source, so the two paths share the blocking. */
#include <immintrin.h>
#include <stdint.h>

#include "kernels/bf16mm_impl.h"
#define SIMD_AVX512   /* kernels/simd.h's 16-lane tails; this file has the AVX-512 flags */
#include "kernels/simd.h"

enum { R = 4, V = BF16MM_NB / 16 };   /* rows per pass, vectors per block */

#ifdef __AVX512BF16__
#define BF16MM_FN bf16mm_dot

/* acc[r] += x rows m0..m0+rows-1 times the block pb (vdpbf16ps) */
static inline __attribute__((always_inline)) void block_rows(__m512 acc[R][V],
                                                             const bf16mm_args *a,
                                                             const uint16_t *pb, int m0,
                                                             const int rows)
{
    const int in = a->in, pairs = (in + 1) / 2;
    for (int c = 0; c < pairs; c += 16) {
        /* x rounded to bf16: dword j = {x[2(c+j)], x[2(c+j)+1]} */
        uint32_t xb[R][16] __attribute__((aligned(64)));
        for (int r = 0; r < rows; r++) {
            const float *x = a->x + (size_t)(m0 + r) * in + 2 * c;
            const int rem = in - 2 * c;
            const __m512 lo = vload(x, rem), hi = vload(x + 16, rem - 16);
            _mm512_store_si512(xb[r], (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        const int np = pairs - c < 16 ? pairs - c : 16;
        for (int j = 0; j < np; j++) {
            const uint16_t *wp = pb + (size_t)(c + j) * BF16MM_NB * 2;
            __m512bh w[V];
            for (int v = 0; v < V; v++)
                w[v] = (__m512bh)_mm512_loadu_si512(wp + 32 * v);
            for (int r = 0; r < rows; r++) {
                const __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xb[r][j]);
                for (int v = 0; v < V; v++)
                    acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xv, w[v]);
            }
        }
    }
}

#else
#define BF16MM_FN bf16mm_avx512

/* The pair's two inputs of one vector of outputs as fp32 */
static inline __attribute__((always_inline)) void widen(const uint16_t *wp, __m512 *even,
                                                        __m512 *odd)
{
    const __m512i w = _mm512_loadu_si512(wp);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* acc[r] = fma(x[i], W[i], acc[r]) for i in order (an odd in: the last pair's
 * odd input is skipped, as gemv_n never has it) */
static inline __attribute__((always_inline)) void block_rows(__m512 acc[R][V],
                                                             const bf16mm_args *a,
                                                             const uint16_t *pb, int m0,
                                                             const int rows)
{
    const int in = a->in;
    const float *x = a->x + (size_t)m0 * in;
    for (int q = 0; q < in / 2; q++) {
        __m512 we[V], wo[V];
        for (int v = 0; v < V; v++)
            widen(pb + (size_t)q * BF16MM_NB * 2 + 32 * v, &we[v], &wo[v]);
        for (int r = 0; r < rows; r++) {
            const __m512 xe = _mm512_set1_ps(x[(size_t)r * in + 2 * q]);
            const __m512 xo = _mm512_set1_ps(x[(size_t)r * in + 2 * q + 1]);
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_fmadd_ps(xo, wo[v], _mm512_fmadd_ps(xe, we[v], acc[r][v]));
        }
    }
    if (in & 1) {
        __m512 we[V], wo[V];
        for (int v = 0; v < V; v++)
            widen(pb + (size_t)(in / 2) * BF16MM_NB * 2 + 32 * v, &we[v], &wo[v]);
        for (int r = 0; r < rows; r++) {
            const __m512 xe = _mm512_set1_ps(x[(size_t)r * in + in - 1]);
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_fmadd_ps(xe, we[v], acc[r][v]);
        }
    }
}
#endif

/* Rows m0.. (rows of them) of block k: accumulate, then y = acc (+ b). */
static inline __attribute__((always_inline)) void pass(const bf16mm_args *a, int k, int m0,
                                                       const int rows)
{
    __m512 acc[R][V];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm512_setzero_ps();
    block_rows(acc, a, a->p + (size_t)k * bf16mm_block_len(a->in), m0, rows);
    const int o0 = k * BF16MM_NB, outs = bf16mm_block_outs(a->out, k);
    for (int r = 0; r < rows; r++) {
        float *y = a->y + (size_t)(m0 + r) * a->out + o0;
        for (int v = 0; v < V; v++) {
            const int left = outs - 16 * v;
            __m512 s = acc[r][v];
            if (a->b)
                s = _mm512_add_ps(s, vload(a->b + o0 + 16 * v, left));
            vstore(y + 16 * v, left, s);
        }
    }
}

void BF16MM_FN(const bf16mm_args *a, int k0, int k1)
{
    for (int k = k0; k < k1; k++) {   /* a block's weights stay in cache over the rows */
        int m = 0;
        for (; m + R <= a->n; m += R)
            pass(a, k, m, R);
        switch (a->n - m) {
        case 3: pass(a, k, m, 3); break;
        case 2: pass(a, k, m, 2); break;
        case 1: pass(a, k, m, 1); break;
        default: break;
        }
    }
}
