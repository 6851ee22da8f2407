/* Private to kernels/softmax_xent*.c: the per-ISA row kernel.  The driver in
 * softmax_xent.c owns the threading (rows are independent). */
#ifndef KERNELS_SOFTMAX_XENT_IMPL_H
#define KERNELS_SOFTMAX_XENT_IMPL_H

#include <stdbool.h>

typedef struct {
    /* One row of V logits: returns -log softmax(x)[target]; when backward,
     * overwrites x with dloss * (softmax(x) - onehot(target)).  next is the
     * row the caller will hand over next (NULL if none): the SIMD paths
     * prefetch it into L2 while they compute, so that its first pass does not
     * wait on memory. */
    float (*row)(float *x, const float *next, int target, int V, float dloss, bool backward);
} softmax_xent_ops;

extern const softmax_xent_ops softmax_xent_ops_avx2, softmax_xent_ops_avx512;

#endif
