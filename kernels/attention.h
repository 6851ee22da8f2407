/* attention: causal multi-head self-attention, tiled with an online softmax
 * (FlashAttention-2 style): no T x T score matrix is ever stored; forward saves
 * only the per-query log-sum-exp for backward.
 *
 * Shapes: qkv [B,T,3C] laid out as q | k | v, each [C] = H heads x hs (hs = C/H),
 * head h of q at qkv[b,t, h*hs .. h*hs+hs), of k at C + h*hs, of v at 2C + h*hs;
 * out, dout [B,T,C] (head h at h*hs); lse [B,H,T]; dqkv [B,T,3C].
 * Scores are scaled by 1/sqrt(hs); query t attends to keys 0..t.
 */
#ifndef KERNELS_ATTENTION_H
#define KERNELS_ATTENTION_H

#include "kernels/cpu.h"

void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int H);
/* dqkv is written (not accumulated). */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int H);

void attention_forward_isa(isa_t isa, float *out, float *lse, const float *qkv, int B, int T,
                           int C, int H);
void attention_backward_isa(isa_t isa, float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int C, int H);

#endif
