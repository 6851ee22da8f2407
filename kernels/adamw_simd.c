/* AdamW and sumsq, one source for AVX2 and AVX-512 (kernels/simd.h);
 * contracts in adamw_impl.h.  Loops run on tail counts, so any length works
 * without a separate tail. */
#include <stddef.h>

#include "kernels/adamw_impl.h"
#include "kernels/simd.h"

static void update(float *param, const float *grad, float *m, float *v, size_t n,
                   const adamw_params *p, float bc1, float bc2)
{
    const vfloat gs = vset1(p->grad_scale), lr = vset1(p->lr);
    const vfloat lr_wd = vset1(p->lr * p->weight_decay), eps = vset1(p->eps);
    const vfloat b1 = vset1(p->beta1), c1 = vset1(1.0f - p->beta1);
    const vfloat b2 = vset1(p->beta2), c2 = vset1(1.0f - p->beta2);
    const vfloat ibc1 = vset1(1.0f / bc1), ibc2 = vset1(1.0f / bc2);
    for (size_t i = 0; i < n; i += VW) {
        const size_t r = n - i;
        const vfloat g = vmul(vload(grad + i, r), gs);
        const vfloat mi = vfmadd(b1, vload(m + i, r), vmul(c1, g));
        const vfloat vi = vfmadd(b2, vload(v + i, r), vmul(c2, vmul(g, g)));
        vfloat w = vload(param + i, r);
        w = vfnmadd(lr_wd, w, w);   /* decoupled weight decay, before the Adam step */
        const vfloat den = vadd(vsqrt(vmul(vi, ibc2)), eps);
        w = vfnmadd(lr, vdiv(vmul(mi, ibc1), den), w);
        vstore(m + i, r, mi);
        vstore(v + i, r, vi);
        vstore(param + i, r, w);
    }
}

/* Squares are formed and summed in double lanes: exact products, and no float
 * accumulator to saturate on long inputs. */
static double sumsq_lanes(const float *x, size_t n)
{
    vdouble lo = vzero_pd(), hi = vzero_pd();
    for (size_t i = 0; i < n; i += VW) {
        const vfloat a = vload(x + i, n - i);
        const vdouble a0 = vcvt_lo_pd(a), a1 = vcvt_hi_pd(a);
        lo = vfmadd_pd(a0, a0, lo);
        hi = vfmadd_pd(a1, a1, hi);
    }
    return vhsum_pd(vadd_pd(lo, hi));
}

const adamw_ops SIMD_NAME(adamw_ops) = {update, sumsq_lanes};
