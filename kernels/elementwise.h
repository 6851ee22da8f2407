/* elementwise: tanh-GELU, residual add, bias gradient, zeroing.
 * GELU is GPT-2's tanh approximation:
 *   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * Non-finite inputs give on every path what that formula gives: NaN stays
 * NaN, gelu(+inf) = inf, gelu(-inf) = NaN and gelu'(+-inf) = NaN.
 */
#ifndef KERNELS_ELEMENTWISE_H
#define KERNELS_ELEMENTWISE_H

#include <stddef.h>

#include "kernels/cpu.h"

/* out[i] = gelu(inp[i]) over n values (out may alias inp). */
void gelu_forward(float *out, const float *inp, size_t n);
/* dinp[i] = gelu'(inp[i]) * dout[i] (writes; dinp may alias dout). */
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* out[i] = a[i] + b[i] (out may alias a or b). */
void residual_forward(float *out, const float *a, const float *b, size_t n);
/* dbias[OC] += column sums of dout[N,OC]. */
void bias_backward(float *dbias, const float *dout, int N, int OC);
/* x[0, n) = 0 on the OpenMP team: one core's stores fill about half of what
 * the memory takes (the gradient arena is zeroed every step). */
void fill_zeros(float *x, size_t n);

void gelu_forward_isa(isa_t isa, float *out, const float *inp, size_t n);
void gelu_backward_isa(isa_t isa, float *dinp, const float *inp, const float *dout, size_t n);
void residual_forward_isa(isa_t isa, float *out, const float *a, const float *b, size_t n);
void bias_backward_isa(isa_t isa, float *dbias, const float *dout, int N, int OC);

#endif
