/* gemv: the scalar reference, the threaded driver and the run-time dispatch;
 * the arithmetic is in gemv.h. */
#include "kernels/gemv.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/gemv_impl.h"

/* Below this many multiply-adds a parallel region costs more than it saves. */
enum { PAR_MIN = 1 << 16 };

static void n_scalar(float *y, const float *x, const float *w, const float *b, int in, int out,
                     int o0, int o1)
{
    for (int o = o0; o < o1; o++)
        y[o] = 0.0f;
    for (int i = 0; i < in; i++)   /* row by row: W is read in its layout */
        for (int o = o0; o < o1; o++)
            y[o] = fmaf(x[i], w[(size_t)i * out + o], y[o]);
    if (b)
        for (int o = o0; o < o1; o++)
            y[o] = y[o] + b[o];
}

static void t_scalar(float *y, const float *x, const float *w, int ldw, const float *b, int in,
                     int o0, int o1)
{
    for (int o = o0; o < o1; o++) {
        const float *row = w + (size_t)o * ldw;
        float a[16] = {0};
        for (int i = 0; i < (in + 15) / 16 * 16; i++)
            a[i % 16] = fmaf(i < in ? x[i] : 0.0f, i < in ? row[i] : 0.0f, a[i % 16]);
        for (int half = 8; half >= 1; half /= 2)
            for (int l = 0; l < half; l++)
                a[l] = a[l] + a[l + half];
        y[o] = b ? a[0] + b[o] : a[0];
    }
}

static void nm_scalar(float *y, const float *x, const float *w, const float *b, int m, int in,
                      int out, int o0, int o1)
{
    for (int r = 0; r < m; r++)
        n_scalar(y + (size_t)r * out, x + (size_t)r * in, w, b, in, out, o0, o1);
}

static const gemv_ops gemv_ops_scalar = {n_scalar, t_scalar, nm_scalar};

static const gemv_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &gemv_ops_scalar, &gemv_ops_avx2, &gemv_ops_avx512);
}

/* The calling thread's outputs [*o0, *o1) of gemv_n's out: contiguous shares
 * of whole chunks, so each thread streams its own columns of W. */
static void n_share(int out, int *o0, int *o1)
{
    const int chunks = (out + GEMV_N_ALIGN - 1) / GEMV_N_ALIGN;
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int c0 = chunks * t / nt, c1 = chunks * (t + 1) / nt;
    *o0 = c0 * GEMV_N_ALIGN;
    *o1 = c1 * GEMV_N_ALIGN < out ? c1 * GEMV_N_ALIGN : out;
}

void gemv_n_isa(isa_t isa, float *y, const float *x, const float *w, const float *b, int in,
                int out)
{
    const gemv_ops *ops = ops_for(isa);
#pragma omp parallel if ((long)in * out >= PAR_MIN)
    {
        int o0, o1;
        n_share(out, &o0, &o1);
        if (o0 < o1)
            ops->n(y, x, w, b, in, out, o0, o1);
    }
}

void gemv_n_rows_isa(isa_t isa, float *y, const float *x, const float *w, const float *b, int m,
                     int in, int out)
{
    const gemv_ops *ops = ops_for(isa);
#pragma omp parallel if ((long)m * in * out >= PAR_MIN)
    {
        int o0, o1;
        n_share(out, &o0, &o1);
        if (o0 < o1)
            ops->nm(y, x, w, b, m, in, out, o0, o1);
    }
}

void gemv_t_isa(isa_t isa, float *y, const float *x, const float *w, const float *b, int in,
                int out)
{
    const gemv_ops *ops = ops_for(isa);
#pragma omp parallel if ((long)in * out >= PAR_MIN)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int o0 = (int)((long)out * t / nt), o1 = (int)((long)out * (t + 1) / nt);
        if (o0 < o1)
            ops->t(y, x, w, in, b, in, o0, o1);
    }
}

void gemv_n_range(float *y, const float *x, const float *w, const float *b, int in, int out,
                  int o0, int o1)
{
    ops_for(cpu_isa())->n(y, x, w, b, in, out, o0, o1);
}

void gemv_t_range(float *y, const float *x, const float *w, int ldw, const float *b, int in,
                  int o0, int o1)
{
    ops_for(cpu_isa())->t(y, x, w, ldw, b, in, o0, o1);
}

void gemv_n(float *y, const float *x, const float *w, const float *b, int in, int out)
{
    gemv_n_isa(cpu_isa(), y, x, w, b, in, out);
}

void gemv_n_rows(float *y, const float *x, const float *w, const float *b, int m, int in,
                 int out)
{
    gemv_n_rows_isa(cpu_isa(), y, x, w, b, m, in, out);
}

void gemv_t(float *y, const float *x, const float *w, const float *b, int in, int out)
{
    gemv_t_isa(cpu_isa(), y, x, w, b, in, out);
}
