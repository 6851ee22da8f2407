/* Private to kernels/elementwise*.c: the per-ISA serial loops.  The driver in
 * elementwise.c owns the threading (fixed-size chunks, column ranges for the
 * bias gradient so each column sums its rows in order on one thread). */
#ifndef KERNELS_ELEMENTWISE_IMPL_H
#define KERNELS_ELEMENTWISE_IMPL_H

#include <stddef.h>

#define GELU_K 0.7978845608028654   /* sqrt(2/pi) */
#define GELU_A 0.044715
enum { EW_COL_CHUNK = 1024 };   /* bias-gradient columns per sweep over the rows (L1-sized sums) */

typedef struct {
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);
    void (*residual_forward)(float *out, const float *a, const float *b, size_t n);
    /* dbias[j] += sum over N rows (`stride` apart) of dout[n][j] for j < w, each
     * sum formed from 0 in row order, then added; sweeps the rows over
     * EW_COL_CHUNK columns at a time, so every row is read as one contiguous run. */
    void (*bias_backward_cols)(float *dbias, const float *dout, int N, int stride, int w);
} elementwise_ops;

extern const elementwise_ops elementwise_ops_avx2, elementwise_ops_avx512;

#endif
