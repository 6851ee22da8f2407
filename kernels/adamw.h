/* adamw: the AdamW update (decoupled weight decay, as torch.optim.AdamW) and
 * the squared-norm reduction used for gradient clipping. */
#ifndef KERNELS_ADAMW_H
#define KERNELS_ADAMW_H

#include <stddef.h>

#include "kernels/cpu.h"

typedef struct {
    float lr, beta1, beta2, eps;
    float weight_decay;   /* 0 for tensors that are not decayed */
    float grad_scale;     /* gradients are multiplied by this first (clipping, unscaling) */
    int step;             /* 1-based step count, for bias correction */
} adamw_params;

/* For each i: g = grad[i] * grad_scale;
 *   param -= lr * weight_decay * param;
 *   m = beta1 m + (1-beta1) g;  v = beta2 v + (1-beta2) g^2;
 *   param -= lr * (m / (1-beta1^step)) / (sqrt(v / (1-beta2^step)) + eps). */
void adamw_update(float *param, const float *grad, float *m, float *v, size_t n,
                  const adamw_params *p);
/* sum of x[i]^2, accumulated in double. */
double sumsq(const float *x, size_t n);

void adamw_update_isa(isa_t isa, float *param, const float *grad, float *m, float *v, size_t n,
                      const adamw_params *p);
double sumsq_isa(isa_t isa, const float *x, size_t n);

#endif
