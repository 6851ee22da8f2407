/* Private to kernels/adamw*.c: the per-ISA serial loops.  The driver in
 * adamw.c owns the threading and the fixed chunking that keeps sumsq
 * independent of the thread count. */
#ifndef KERNELS_ADAMW_IMPL_H
#define KERNELS_ADAMW_IMPL_H

#include <stddef.h>

#include "kernels/adamw.h"

typedef struct {
    /* adamw_update on n values; bc1 = 1 - beta1^step, bc2 = 1 - beta2^step. */
    void (*update)(float *param, const float *grad, float *m, float *v, size_t n,
                   const adamw_params *p, float bc1, float bc2);
    double (*sumsq)(const float *x, size_t n);   /* in double, serially */
} adamw_ops;

extern const adamw_ops adamw_ops_avx2, adamw_ops_avx512;

#endif
