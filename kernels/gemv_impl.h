/* Private to kernels/gemv*.c: one table per path.  The driver in gemv.c
 * splits the outputs over threads; a table entry computes outputs [o0, o1)
 * serially with the arithmetic gemv.h fixes. */
#ifndef KERNELS_GEMV_IMPL_H
#define KERNELS_GEMV_IMPL_H

typedef struct {
    void (*n)(float *y, const float *x, const float *w, const float *b, int in, int out, int o0,
              int o1);
    void (*t)(float *y, const float *x, const float *w, int ldw, const float *b, int in, int o0,
              int o1);   /* row o of W at w + o * ldw */
    void (*nm)(float *y, const float *x, const float *w, const float *b, int m, int in, int out,
               int o0, int o1);   /* gemv_n of m rows, y and x row-major */
} gemv_ops;

/* gemv_n's threads take whole multiples of this many outputs (cache lines of y
 * and of each row of W are never shared) */
#define GEMV_N_ALIGN 64

extern const gemv_ops gemv_ops_avx2, gemv_ops_avx512;

#endif
