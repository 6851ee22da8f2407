/* LayerNorm inner loops, one source for AVX2 and AVX-512 (kernels/simd.h);
 * contracts in layernorm_impl.h.  Every loop runs on tail counts, so the last
 * partial vector of a row needs no separate code; its lanes past the end read
 * as zeros. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/layernorm_impl.h"
#include "kernels/simd.h"

/* The row's mean, summed in double lanes as the scalar path sums it.  Float
 * lanes rounded the running sums by ~1e-7 of their size, and rstd, up to
 * 1/sqrt(eps) = 316 for a row of little variance, magnifies that error in
 * out: a constant row of 1000 came out 0.3 from its bias, not on it. */
static double row_mean(const float *inp, int C)
{
    vdouble lo = vzero_pd(), hi = vzero_pd();
    for (int i = 0; i < C; i += VW) {
        const vfloat x = vload(inp + i, C - i);
        lo = vadd_pd(lo, vcvt_lo_pd(x));
        hi = vadd_pd(hi, vcvt_hi_pd(x));
    }
    return vhsum_pd(vadd_pd(lo, hi)) / C;
}

/* x - mean with the mean as two floats m_hi + m_lo: x - m_hi is exact where
 * x is near the mean, so a constant row's differences are exactly 0. */
SIMD_INLINE vfloat centred(vfloat x, vfloat m_hi, vfloat m_lo)
{
    return vsub(vsub(x, m_hi), m_lo);
}

static void forward_row(float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, int C)
{
    const double md = row_mean(inp, C);
    const float m = (float)md;
    const vfloat vm = vset1(m), vm_lo = vset1((float)(md - m));
    vfloat var = vzero();
    for (int i = 0; i < C; i += VW) {
        /* lanes past the end must not add (0 - m)^2: mask the difference */
        const vfloat d = vkeep(vmask_n(C - i), centred(vload(inp + i, C - i), vm, vm_lo));
        var = vfmadd(d, d, var);
    }
    const float s = 1.0f / sqrtf(vhsum(var) / C + LN_EPS);
    const vfloat vs = vset1(s);
    for (int i = 0; i < C; i += VW) {
        const vfloat norm = vmul(centred(vload(inp + i, C - i), vm, vm_lo), vs);
        vstore(out + i, C - i, vfmadd(norm, vload(weight + i, C - i), vload(bias + i, C - i)));
    }
    *mean = m;
    *rstd = s;
}

static void backward_row(float *dinp, const float *dout, const float *inp, const float *weight,
                         float mean, float rstd, int C)
{
    const vfloat vm = vset1(mean), vs = vset1(rstd);
    vfloat g_sum = vzero(), gn_sum = vzero();
    for (int i = 0; i < C; i += VW) {   /* lanes past the end have g = 0 and add nothing */
        const vfloat g = vmul(vload(weight + i, C - i), vload(dout + i, C - i));
        const vfloat norm = vmul(vsub(vload(inp + i, C - i), vm), vs);
        g_sum = vadd(g_sum, g);
        gn_sum = vfmadd(g, norm, gn_sum);
    }
    const vfloat g_mean = vset1(vhsum(g_sum) / C);
    const vfloat gn_mean = vset1(vhsum(gn_sum) / C);
    for (int i = 0; i < C; i += VW) {
        const vfloat g = vmul(vload(weight + i, C - i), vload(dout + i, C - i));
        const vfloat norm = vmul(vsub(vload(inp + i, C - i), vm), vs);
        const vfloat t = vfnmadd(norm, gn_mean, vsub(g, g_mean));
        vstore(dinp + i, C - i, vfmadd(t, vs, vload(dinp + i, C - i)));
    }
}

/* The sums live in L1-resident stack arrays; lanes past w load zeros from
 * dout, so they add nothing and full vectors of the arrays can be used. */
static void backward_params(float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *mean, const float *rstd, int N, int stride, int w)
{
    float dw[LN_COL_CHUNK], db[LN_COL_CHUNK];
    for (int c0 = 0; c0 < w; c0 += LN_COL_CHUNK) {
        const int cw = w - c0 < LN_COL_CHUNK ? w - c0 : LN_COL_CHUNK;
        memset(dw, 0, sizeof dw);
        memset(db, 0, sizeof db);
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * stride + c0, *x = inp + (size_t)n * stride + c0;
            const vfloat vm = vset1(mean[n]), vs = vset1(rstd[n]);
            for (int j = 0; j < cw; j += VW) {
                const vfloat gv = vload(g + j, cw - j);
                const vfloat norm = vmul(vsub(vload(x + j, cw - j), vm), vs);
                vstoreu(dw + j, vfmadd(norm, gv, vloadu(dw + j)));
                vstoreu(db + j, vadd(vloadu(db + j), gv));
            }
        }
        for (int j = 0; j < cw; j += VW) {
            float *pw = dweight + c0 + j, *pb = dbias + c0 + j;
            vstore(pw, cw - j, vadd(vload(pw, cw - j), vloadu(dw + j)));
            vstore(pb, cw - j, vadd(vload(pb, cw - j), vloadu(db + j)));
        }
    }
}

const layernorm_ops SIMD_NAME(layernorm_ops) = {forward_row, backward_row, backward_params};
