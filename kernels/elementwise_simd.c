/* GELU, residual add and bias gradient, one source for AVX2 and AVX-512
 * (kernels/simd.h); contracts in elementwise_impl.h.  Loops run on tail
 * counts, so any length works without a separate tail.
 *
 * GELU goes through s = 0.5 (1 + tanh(u)) = 1 / (1 + e), e = exp(-2u): then
 * gelu = x s and gelu' = s + x s (1 - s) 2k (1 + 3a x^2) with 1 - s = e s.
 * This is tanh by exp without the cancellation that 1 + tanh(u) suffers for
 * negative x when tanh is formed as 1 - 2 / (exp(2u) + 1).  x is clamped to
 * [-GELU_XMAX, GELU_XMAX] so that no intermediate overflows; below -GELU_XMAX
 * gelu is x * 0 and gelu' is 0 (the true values are < 1e-35).  Infinities
 * give what the scalar formula gives: gelu(+inf) = inf, gelu(-inf) = NaN
 * (-inf * 0) and gelu'(+-inf) = NaN, so an overflowed activation stays
 * non-finite for the loss scaler to see instead of turning into 0 or 1. */
#include <stddef.h>
#include <string.h>

#include "kernels/elementwise_impl.h"
#include "kernels/simd.h"

#define GELU_XMAX 10.0f   /* beyond it gelu is x or ~0 and gelu' is 1 or ~0 in float */

SIMD_INLINE vfloat clamp(vfloat x)   /* NaN stays NaN */
{
    return vmax(vset1(-GELU_XMAX), vmin(vset1(GELU_XMAX), x));
}

SIMD_INLINE vmask live(vfloat x)   /* x >= -GELU_XMAX, or NaN */
{
    return vcmp(x, vset1(-GELU_XMAX), _CMP_NLT_UQ);
}

/* s = 1 / (1 + e) with e = exp(-2u), u = k (xc + a xc^3), for clamped xc. */
SIMD_INLINE vfloat gelu_s(vfloat xc, vfloat *e)
{
    const vfloat one = vset1(1.0f);
    const vfloat inner = vfmadd(vset1((float)GELU_A), vmul(xc, xc), one);
    *e = vexp(vmul(vmul(xc, inner), vset1((float)(-2 * GELU_K))));
    return vdiv(one, vadd(one, *e));
}

SIMD_INLINE vfloat gelu(vfloat x)
{
    vfloat e;
    const vfloat s = gelu_s(clamp(x), &e);
    return vmul(x, vkeep(live(x), s));   /* x * 0 below -GELU_XMAX: -0, or NaN at -inf */
}

SIMD_INLINE vfloat gelu_grad(vfloat x)
{
    const vfloat xc = clamp(x);
    vfloat e;
    const vfloat s = gelu_s(xc, &e);
    const vfloat q =
        vfmadd(vset1((float)(6 * GELU_K * GELU_A)), vmul(xc, xc), vset1((float)(2 * GELU_K)));
    const vfloat t = vfmadd(vmul(xc, vmul(e, s)), q, vset1(1.0f));
    /* s (1 + x (1 - s) q); x - x is 0, or NaN where x is infinite */
    return vadd(vkeep(live(x), vmul(s, t)), vsub(x, x));
}

static void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i += VW)
        vstore(out + i, n - i, gelu(vload(inp + i, n - i)));
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i += VW)
        vstore(dinp + i, n - i, vmul(gelu_grad(vload(inp + i, n - i)), vload(dout + i, n - i)));
}

static void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i += VW)
        vstore(out + i, n - i, vadd(vload(a + i, n - i), vload(b + i, n - i)));
}

/* The sums live in an L1-resident stack array; lanes past w load zeros from
 * dout, so full vectors of the array can be used. */
static void bias_backward_cols(float *dbias, const float *dout, int N, int stride, int w)
{
    float sum[EW_COL_CHUNK];
    for (int c0 = 0; c0 < w; c0 += EW_COL_CHUNK) {
        const int cw = w - c0 < EW_COL_CHUNK ? w - c0 : EW_COL_CHUNK;
        memset(sum, 0, sizeof sum);
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * stride + c0;
            for (int j = 0; j < cw; j += VW)
                vstoreu(sum + j, vadd(vloadu(sum + j), vload(g + j, cw - j)));
        }
        for (int j = 0; j < cw; j += VW) {
            float *p = dbias + c0 + j;
            vstore(p, cw - j, vadd(vload(p, cw - j), vloadu(sum + j)));
        }
    }
}

const elementwise_ops SIMD_NAME(elementwise_ops) = {gelu_forward, gelu_backward, residual_forward,
                                                    bias_backward_cols};
