#include <immintrin.h>

#include "kernels/peak.h"

/* 12 independent accumulators hide the 4-cycle FMA latency on 2 ports. */
double peak_fma_loop_avx512(long iters)
{
    __m512 acc[12], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    __m512 s = acc[0];
    for (int i = 1; i < 12; i++)
        s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);   /* keep the loop alive */
    (void)sink;
    return (double)iters * 12 * 16 * 2;
}
