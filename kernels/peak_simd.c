/* peak.c's FMA loop on one vector path, one source for AVX2 and AVX-512
 * (kernels/simd.h): NACC independent accumulators hide the 4-cycle FMA
 * latency on 2 ports. */
#include "kernels/peak_impl.h"
#include "kernels/simd.h"

enum { NACC = VW == 16 ? 12 : 10 };

double SIMD_NAME(peak_fma_loop)(long iters)
{
    vfloat acc[NACC];
    const vfloat x = vset1(0.999f), y = vset1(1e-7f);
    for (int i = 0; i < NACC; i++)
        acc[i] = vset1((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < NACC; i++)
            acc[i] = vfmadd(acc[i], x, y);
    vfloat s = acc[0];
    for (int i = 1; i < NACC; i++)
        s = vadd(s, acc[i]);
    volatile float sink = vhsum(s);   /* keep the loop alive */
    (void)sink;
    return (double)iters * NACC * VW * 2;
}
