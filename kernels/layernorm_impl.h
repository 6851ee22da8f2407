/* Private to kernels/layernorm*.c: the per-ISA inner loops.  The driver in
 * layernorm.c owns the threading (rows for the forward and for dinp, column
 * ranges for dweight/dbias, so every sum runs in a fixed order whatever the
 * thread count); each table supplies the serial loops. */
#ifndef KERNELS_LAYERNORM_IMPL_H
#define KERNELS_LAYERNORM_IMPL_H

#define LN_EPS 1e-5f
enum { LN_COL_CHUNK = 512 };   /* dweight/dbias columns per sweep over the rows (L1-sized sums) */

typedef struct {
    /* One row of C values: out, *mean, *rstd. */
    void (*forward_row)(float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, int C);
    /* One row: dinp += the input gradient. */
    void (*backward_row)(float *dinp, const float *dout, const float *inp, const float *weight,
                         float mean, float rstd, int C);
    /* w columns: dweight[j] += sum_n norm[n][j] * dout[n][j] and
     * dbias[j] += sum_n dout[n][j], each sum formed from 0 in row order, then
     * added; dout and inp point at the first column, rows `stride` apart.
     * Sweeps the rows over LN_COL_CHUNK columns at a time, so every row is
     * read as one contiguous run. */
    void (*backward_params)(float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *mean, const float *rstd, int N, int stride, int w);
} layernorm_ops;

extern const layernorm_ops layernorm_ops_avx2, layernorm_ops_avx512;

#endif
