/* Private to kernels/bf16mm*.c: one loop per path.  The driver in bf16mm.c
 * splits the output blocks over threads; a path computes rows [0, n) of
 * blocks [k0, k1) serially with the arithmetic bf16mm.h fixes. */
#ifndef KERNELS_BF16MM_IMPL_H
#define KERNELS_BF16MM_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/bf16mm.h"

typedef struct {
    float *y;              /* [n, out] */
    const float *x;        /* [n, in] */
    const uint16_t *p;     /* bf16mm_pack's layout */
    const float *b;        /* [out] or NULL */
    int n, in, out;
} bf16mm_args;

typedef void (*bf16mm_fn)(const bf16mm_args *a, int k0, int k1);

/* uint16_t values of one block: ceil(in / 2) pairs x NB outputs x 2 */
static inline size_t bf16mm_block_len(int in)
{
    return (size_t)(in + 1) / 2 * BF16MM_NB * 2;
}

/* Outputs of block k that exist (the last block may be short). */
static inline int bf16mm_block_outs(int out, int k)
{
    const int left = out - k * BF16MM_NB;
    return left < BF16MM_NB ? left : BF16MM_NB;
}

void bf16mm_avx2(const bf16mm_args *a, int k0, int k1);
void bf16mm_avx512(const bf16mm_args *a, int k0, int k1);
void bf16mm_dot(const bf16mm_args *a, int k0, int k1);

#endif
