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
#include <stddef.h>

#include "kernels/cpu.h"

/* Work memory of attention_forward and attention_backward, made once (by
 * the model) so that no call allocates: per thread, a head's operands
 * converted to bf16 and backward's row sums D.  A call runs on at most
 * threads threads. */
typedef struct {
    void *mem;
    size_t per_thread;   /* bytes */
    int T, hs, threads;  /* the largest T and the head size it was made for */
} attention_work;

/* Work for sequences of up to T tokens of heads of size hs, for calls on
 * up to threads threads.  0, or -1 when memory runs out. */
int attention_work_init(attention_work *w, int T, int hs, int threads);
/* The bytes attention_work_init takes for these sizes. */
size_t attention_work_bytes(int T, int hs, int threads);
void attention_work_free(attention_work *w);

/* bf16: the products take Q, K, V, P, dO and dS rounded to bf16 (fp32 sums,
 * as vdpbf16ps makes them) where the path has bf16 products, else fp32;
 * softmax, lse and the outputs stay fp32.  w: made for at least this T and
 * for hs = C / H. */
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int H,
                       bool bf16, const attention_work *w);
/* dqkv is written (not accumulated). */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int H, bool bf16,
                        const attention_work *w);
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
/* A prompt's rows consecutive queries of one head at once: query i (< rows)
 * at q + i ldq over cache rows 0..n+i-1, its output at out + i ldo; every
 * output has the bits attention_cached gives that query alone (which the
 * SIMD paths reach loading each cache row once for 2 or 4 queries).  att:
 * ATTN_CACHED_ROWS_SCRATCH (n + rows) floats of scratch. */
enum { ATTN_CACHED_ROWS_SCRATCH = 4 };
void attention_cached_rows(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                           const void *v, bool bf16, int n, int rows, int hs, float *att);

void attention_forward_isa(isa_t isa, float *out, float *lse, const float *qkv, int B, int T,
                           int C, int H, bool bf16, const attention_work *w);
void attention_cached_isa(isa_t isa, float *out, const float *q, const void *k, const void *v,
                          bool bf16, int n, int hs, float *att);
void attention_cached_rows_isa(isa_t isa, float *out, size_t ldo, const float *q, size_t ldq,
                               const void *k, const void *v, bool bf16, int n, int rows, int hs,
                               float *att);
void attention_backward_isa(isa_t isa, float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int C, int H,
                            bool bf16, const attention_work *w);

#endif
