/* GELU, residual add and bias gradient: the scalar reference (GELU in double),
 * the threaded driver and the run-time dispatch. */
#include "kernels/elementwise.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/elementwise_impl.h"

enum {
    PAR_MIN = 1 << 15,   /* fewer values: a parallel region costs more than it saves */
    CHUNK = 1 << 13,     /* values per work item of the flat loops */
};

/* ---- scalar reference ---- */

static void gelu_forward_scalar(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(GELU_K * (x + GELU_A * x * x * x))));
    }
}

static void gelu_backward_scalar(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double x = inp[i];
        const double t = tanh(GELU_K * (x + GELU_A * x * x * x));
        const double grad =
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_A * x * x);
        dinp[i] = (float)(grad * dout[i]);
    }
}

static void residual_forward_scalar(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void bias_backward_cols_scalar(float *dbias, const float *dout, int N, int stride, int w)
{
    for (int c0 = 0; c0 < w; c0 += EW_COL_CHUNK) {
        const int cw = imin(w - c0, EW_COL_CHUNK);
        double sum[EW_COL_CHUNK] = {0};
        for (int n = 0; n < N; n++)
            for (int j = 0; j < cw; j++)
                sum[j] += dout[(size_t)n * stride + c0 + j];
        for (int j = 0; j < cw; j++)
            dbias[c0 + j] += (float)sum[j];
    }
}

static const elementwise_ops elementwise_ops_scalar = {
    gelu_forward_scalar, gelu_backward_scalar, residual_forward_scalar, bias_backward_cols_scalar,
};

/* ---- driver ---- */

static const elementwise_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &elementwise_ops_scalar, &elementwise_ops_avx2, &elementwise_ops_avx512);
}

void gelu_forward_isa(isa_t isa, float *out, const float *inp, size_t n)
{
    const elementwise_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->gelu_forward(out + i, inp + i, len));
}

void gelu_backward_isa(isa_t isa, float *dinp, const float *inp, const float *dout, size_t n)
{
    const elementwise_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->gelu_backward(dinp + i, inp + i, dout + i, len));
}

void residual_forward_isa(isa_t isa, float *out, const float *a, const float *b, size_t n)
{
    const elementwise_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->residual_forward(out + i, a + i, b + i, len));
}

/* Threads split the columns, not the rows: each column is summed over all N
 * rows in order by one thread, whatever the thread count. */
void bias_backward_isa(isa_t isa, float *dbias, const float *dout, int N, int OC)
{
    const elementwise_ops *ops = ops_for(isa);
#pragma omp parallel if ((size_t)N * OC >= PAR_MIN)
    {
        int c0, c1;
        cpu_thread_columns(OC, &c0, &c1);
        if (c0 < c1)
            ops->bias_backward_cols(dbias + c0, dout + c0, N, OC, c1 - c0);
    }
}

void gelu_forward(float *out, const float *inp, size_t n)
{
    gelu_forward_isa(cpu_isa(), out, inp, n);
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    gelu_backward_isa(cpu_isa(), dinp, inp, dout, n);
}

void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    residual_forward_isa(cpu_isa(), out, a, b, n);
}

void bias_backward(float *dbias, const float *dout, int N, int OC)
{
    bias_backward_isa(cpu_isa(), dbias, dout, N, OC);
}

void fill_zeros(float *x, size_t n)
{
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, memset(x + i, 0, len * sizeof *x));
}
