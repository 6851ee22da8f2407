/* LayerNorm: the scalar reference (row sums in double), the threaded driver
 * and the run-time dispatch.  See layernorm_impl.h for the split of work. */
#include "kernels/layernorm.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/layernorm_impl.h"

/* Below this many values a parallel region costs more than it saves. */
enum { PAR_MIN = 1 << 15 };

/* ---- scalar reference ---- */

static void forward_row_scalar(float *out, float *mean, float *rstd, const float *inp,
                               const float *weight, const float *bias, int C)
{
    double sum = 0;
    for (int i = 0; i < C; i++)
        sum += inp[i];
    const double m = sum / C;
    double var = 0;
    for (int i = 0; i < C; i++)
        var += (inp[i] - m) * (inp[i] - m);
    const double s = 1.0 / sqrt(var / C + LN_EPS);
    for (int i = 0; i < C; i++)
        out[i] = (float)((inp[i] - m) * s * weight[i] + bias[i]);
    *mean = (float)m;
    *rstd = (float)s;
}

/* With norm = (x - mean) rstd and g = weight * dout:
 * dinp = rstd (g - mean(g) - norm mean(g norm)). */
static void backward_row_scalar(float *dinp, const float *dout, const float *inp,
                                const float *weight, float mean, float rstd, int C)
{
    double g_sum = 0, gn_sum = 0;
    for (int i = 0; i < C; i++) {
        const double g = (double)weight[i] * dout[i];
        g_sum += g;
        gn_sum += g * (((double)inp[i] - mean) * rstd);
    }
    const double g_mean = g_sum / C, gn_mean = gn_sum / C;
    for (int i = 0; i < C; i++) {
        const double norm = ((double)inp[i] - mean) * rstd;
        const double g = (double)weight[i] * dout[i];
        dinp[i] += (float)((g - g_mean - norm * gn_mean) * rstd);
    }
}

static void backward_params_scalar(float *dweight, float *dbias, const float *dout,
                                   const float *inp, const float *mean, const float *rstd, int N,
                                   int stride, int w)
{
    for (int c0 = 0; c0 < w; c0 += LN_COL_CHUNK) {
        const int cw = imin(w - c0, LN_COL_CHUNK);
        double dw[LN_COL_CHUNK] = {0}, db[LN_COL_CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * stride + c0, *x = inp + (size_t)n * stride + c0;
            for (int j = 0; j < cw; j++) {
                dw[j] += ((double)x[j] - mean[n]) * rstd[n] * g[j];
                db[j] += g[j];
            }
        }
        for (int j = 0; j < cw; j++) {
            dweight[c0 + j] += (float)dw[j];
            dbias[c0 + j] += (float)db[j];
        }
    }
}

static const layernorm_ops layernorm_ops_scalar = {forward_row_scalar, backward_row_scalar,
                                                   backward_params_scalar};

/* ---- driver ---- */

static const layernorm_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &layernorm_ops_scalar, &layernorm_ops_avx2, &layernorm_ops_avx512);
}

/* Row n on ops' path.  The SIMD paths sum the squared deviations in float,
 * which overflows for a row whose deviations pass ~1e17 (768 squares above
 * FLT_MAX): var is then inf and rstd 0, so out would be the bias and every
 * gradient through it 0, where the scalar path's double sums give the
 * normalised row.  rstd that is not > 0 (0 from an overflowed variance, NaN
 * from a non-finite input) sends the row to the scalar path, which also gives
 * NaN for a row holding a NaN or an infinity. */
static void forward_row(const layernorm_ops *ops, float *out, float *mean, float *rstd,
                        const float *inp, const float *weight, const float *bias, int C, int n)
{
    const size_t at = (size_t)n * C;
    ops->forward_row(out + at, &mean[n], &rstd[n], inp + at, weight, bias, C);
    if (!(rstd[n] > 0.0f) && ops != &layernorm_ops_scalar)
        forward_row_scalar(out + at, &mean[n], &rstd[n], inp + at, weight, bias, C);
}

void layernorm_forward_isa(isa_t isa, float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C)
{
    const layernorm_ops *ops = ops_for(isa);
    if ((size_t)N * C < PAR_MIN) {   /* no parallel construct at all (cpu.h, CPU_FOR_CHUNKS) */
        for (int n = 0; n < N; n++)
            forward_row(ops, out, mean, rstd, inp, weight, bias, C, n);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        forward_row(ops, out, mean, rstd, inp, weight, bias, C, n);
}

void layernorm_backward_isa(isa_t isa, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const float *mean, const float *rstd, int N, int C)
{
    const layernorm_ops *ops = ops_for(isa);
#pragma omp parallel if ((size_t)N * C >= PAR_MIN)
    {
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++)
            ops->backward_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C,
                              weight, mean[n], rstd[n], C);
        /* dweight and dbias sum over rows: split the columns instead, so that
         * each column is summed over all N rows in order by one thread */
        int c0, c1;
        cpu_thread_columns(C, &c0, &c1);
        if (c0 < c1)
            ops->backward_params(dweight + c0, dbias + c0, dout + c0, inp + c0, mean, rstd, N, C,
                                 c1 - c0);
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C)
{
    layernorm_forward_isa(cpu_isa(), out, mean, rstd, inp, weight, bias, N, C);
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C)
{
    layernorm_backward_isa(cpu_isa(), dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
