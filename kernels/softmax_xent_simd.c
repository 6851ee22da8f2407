/* Softmax + cross-entropy row kernel, one source for AVX2 and AVX-512
 * (kernels/simd.h); contract in softmax_xent_impl.h.  Lanes past the end of
 * the row load as -inf, which the max ignores and whose exp is 0, so the
 * partial last vector needs no separate code. */
#include <math.h>
#include <stddef.h>

#include "kernels/simd.h"
#include "kernels/softmax_xent_impl.h"

enum { SUM_BLOCK = 1024 };   /* values per partial sum; a multiple of the vector width */

/* Sum of exp(x - mx) over the row in float lanes, block by block so that the
 * rounding error grows with SUM_BLOCK + V / SUM_BLOCK terms rather than V.
 * With store, each exp is also written over its x.  Meanwhile pf[0, V) is
 * prefetched into L2, one cache line per 16 values. */
static float exp_sum(float *x, const float *pf, int V, float mx, bool store)
{
    const vfloat vm = vset1(mx);
    vfloat sum = vzero();
    for (int b = 0; b < V; b += SUM_BLOCK) {
        const int end = V - b < SUM_BLOCK ? V : b + SUM_BLOCK;
        vfloat part = vzero();
        for (int i = b; i < end; i += VW) {
            const vfloat e = vexp(vsub(vload_or(x + i, end - i, -INFINITY), vm));
            part = vadd(part, e);
            if (i % 16 == 0)
                _mm_prefetch((const char *)(pf + i), _MM_HINT_T1);
            if (store)
                vstore(x + i, end - i, e);
        }
        sum = vadd(sum, part);
    }
    return vhsum(sum);
}

static float row(float *x, const float *next, int target, int V, float dloss, bool backward)
{
    vfloat vmx = vset1(-INFINITY);
    for (int i = 0; i < V; i += VW)
        vmx = vmax(vmx, vload_or(x + i, V - i, -INFINITY));
    const float mx = vhmax(vmx);
    const float xt = x[target];   /* before the row is overwritten */
    /* the first pass over the next row then reads from L2 (the last row
     * "prefetches" itself, which is already cached) */
    const float total = exp_sum(x, next ? next : x, V, mx, backward);
    if (backward) {
        const vfloat s = vset1(dloss / total);
        for (int i = 0; i < V; i += VW)
            vstore(x + i, V - i, vmul(vload(x + i, V - i), s));
        x[target] -= dloss;
    }
    return (float)(log(total) - ((double)xt - mx));
}

const softmax_xent_ops SIMD_NAME(softmax_xent_ops) = {row};
