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

#include <stdbool.h>

#include "kernels/cpu.h"

/* bf16: the products take Q, K, V, P, dO and dS rounded to bf16 (fp32 sums,
 * as vdpbf16ps makes them) where the path has bf16 products, else fp32;
 * softmax, lse and the outputs stay fp32. */
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int H,
                       bool bf16);
/* dqkv is written (not accumulated). */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int H, bool bf16);
/* Whether the active path has native bf16 products (AVX-512 with
 * AVX512-BF16); the scalar path emulates them for the tests. */
bool attention_bf16_native(void);

/* Inference with a KV cache: one query q [hs] over cache rows 0..n-1 (n >= 1)
 * of one head, k and v [n, hs] contiguous, stored as fp32 or (bf16 = true) as
 * bf16 bits (uint16_t):  out [hs] = softmax(q k^T / sqrt(hs)) v.  att: n
 * floats of scratch.  One call runs on the calling thread; each row's
 * arithmetic does not depend on n, so a prompt's queries and the same
 * queries decoded one by one get the same bits. */
void attention_cached(float *out, const float *q, const void *k, const void *v, bool bf16, int n,
                      int hs, float *att);

void attention_forward_isa(isa_t isa, float *out, float *lse, const float *qkv, int B, int T,
                           int C, int H, bool bf16);
void attention_cached_isa(isa_t isa, float *out, const float *q, const void *k, const void *v,
                          bool bf16, int n, int hs, float *att);
void attention_backward_isa(isa_t isa, float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int C, int H,
                            bool bf16);

#endif
