/* layernorm: LayerNorm over the last axis (eps 1e-5, as GPT-2).
 * Shapes: inp, out, dout, dinp [N,C]; weight, bias, dweight, dbias [C];
 * mean, rstd [N] (saved by forward for backward).
 */
#ifndef KERNELS_LAYERNORM_H
#define KERNELS_LAYERNORM_H

#include "kernels/cpu.h"

/* out = (inp - mean) * rstd * weight + bias; writes mean and rstd. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C);
/* dinp += ..., dweight += ..., dbias += ... (accumulates: the residual
 * stream's gradient and the parameter gradients arrive from several places). */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C);

/* The same operations on one explicit path (tests and benchmarks). */
void layernorm_forward_isa(isa_t isa, float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C);
void layernorm_backward_isa(isa_t isa, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight,
                            const float *mean, const float *rstd, int N, int C);

#endif
