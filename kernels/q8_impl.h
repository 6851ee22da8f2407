/* Private to kernels/q8*.c: the per-path tile loops behind q8_matmul.  The
 * driver in q8.c cuts y [M, OUT] into tiles and threads over them; a table
 * entry computes one tile serially, with the group order and float
 * operations that q8.h fixes, so tiles and paths are interchangeable. */
#ifndef KERNELS_Q8_IMPL_H
#define KERNELS_Q8_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/q8.h"

typedef struct {
    float *y;                      /* [M, OUT] */
    const int8_t *xq, *wq;         /* [M, IN], [OUT, IN] */
    const float *xs, *ws, *bias;   /* [M, IN/32], [OUT, IN/32], [OUT] or NULL */
    int M, IN, OUT;
} q8_args;

typedef struct {
    /* y[m][o] for m in [m0, m1), o in [o0, o1); o0 is a multiple of Q8_TILE_ALIGN */
    void (*tile)(const q8_args *a, int m0, int m1, int o0, int o1);
    /* q8_quantize of groups consecutive groups of Q8_GS values, bit-identical to
     * the scalar path: max |x| is exact in any order, and scale = amax / 127,
     * q = round-to-nearest-even(x / scale clamped to [-127, 127]), are the same
     * IEEE operations in a vector (cvtps rounds as lrintf does, both in the
     * default rounding mode); half: scale = q8_half_ceil(max / 127) */
    void (*quantize)(int8_t *q, float *scales, const float *x, size_t groups, bool half);
} q8_ops;

/* Tiles start on multiples of this many outputs: the SIMD paths work on
 * blocks of 8 outputs, and a block must not straddle two tiles. */
#define Q8_TILE_ALIGN 8

extern const q8_ops q8_ops_avx2, q8_ops_avx512, q8_ops_vnni;

/* A group's scale from its max |x| (q8.h), for every path's quantize. */
static inline float q8_group_scale(float amax, bool half)
{
    return half ? q8_half_ceil(amax / 127.0f) : amax / 127.0f;
}

/* The decode layouts' loops (q8.h), in q8_vnni.c and q8_avx2.c */
void q8_vnni_matvec_impl(float *y, const int8_t *xq, const float *xs, const int32_t *xsum,
                         const void *packed, const float *bias, int IN, int o0, int o1);
void q8_avx2_matvec_impl(float *y, const int8_t *xq, const float *xs, const int8_t *xabs,
                         const void *packed, const float *bias, int IN, int o0, int o1);

/* bytes per block of the decode layout and group: 8 chunks of 4B bytes, B
 * fp16 scales.  Groups then start 16 (AVX2) or 32 (VNNI) bytes past a cache
 * line in turn, so one in four of AVX2's 32-byte reads crosses a line (and
 * half of VNNI's 64-byte ones).  Keeping each block's scales after its last
 * group instead, every read aligned, made decode slower on AVX2 (the scales
 * became a second stream per block: docs/benchmarks.md, "Measurements behind
 * code choices"). */
#define Q8_DECODE_WEIGHTS(B) (8 * 4 * (B))   /* a group's chunks; its scales follow */
#define Q8_DECODE_GROUP(B) (Q8_DECODE_WEIGHTS(B) + 2 * (B))

#endif
