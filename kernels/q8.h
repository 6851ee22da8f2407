/* q8: int8 weights and activations for inference (llama.cpp Q8_0 style).
 *
 * Quantization is symmetric with one scale per group of Q8_GS = 32
 * consecutive values along the reduction axis:
 *   scale = max|x| / 127,  q = round_to_nearest_even(x / scale) in [-127, 127],
 * and a group of zeros gets scale 0 and q = 0.  -128 never occurs, which the
 * SIMD paths rely on (they negate int8 values).  Inputs must be finite.
 * Weights (q8_pack_weights) round their scale up to an fp16 value first,
 * scale = q8_half_ceil(max|x| / 127), as llama.cpp's Q8_0 keeps it: the
 * decode layouts then store a scale in 2 bytes, not 4, which is 6% of an int8
 * model's bytes per token.  Rounding up keeps every |x / scale| <= 127 while
 * max|x| <= Q8_WEIGHT_MAX; past it the scale stops at fp16's largest and the
 * values clip, so callers refuse such weights (infer does).
 *
 * y = x W + bias, with W stored [IN, OUT] row-major as in the checkpoint
 * (Conv1D convention), runs on a transposed int8 copy: Wq [OUT, IN] with
 * scales [OUT, IN/32], so each output is a dot product of two contiguous int8
 * rows.  For each output the group sums are exact int32, and the groups are
 * combined in one fixed order with the same float operations on every path:
 *   acc = 0;  for g in order: acc = acc + (xs[m][g] * ws[o][g]) * (float)isum_g;
 *   y[m][o] = bias ? acc + bias[o] : acc;
 * so every path gives results bit-identical to the scalar reference, with any
 * number of threads.  (|isum_g| <= 32*127*127 < 2^24: the conversion is exact.)
 *
 * Paths: scalar; AVX2 (maddubs/madd with the sign trick |x| * sign(x)w);
 * AVX-512BW (the same on 64-byte vectors); AVX512-VNNI (vpdpbusd).  The isa_t
 * ISA_AVX512 runs the VNNI path where the CPU has it.  Nothing allocates.
 */
#ifndef KERNELS_Q8_H
#define KERNELS_Q8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

#define Q8_GS 32   /* values per scale group */
#define Q8_SCALE_MAX 65504.0f                  /* fp16's largest: the weights' largest scale */
#define Q8_WEIGHT_MAX (Q8_SCALE_MAX * 127.0f)   /* the largest |weight| int8 can hold */

typedef enum { Q8_SCALAR = 0, Q8_AVX2, Q8_AVX512, Q8_VNNI, Q8_PATH_COUNT } q8_path;

bool q8_path_supported(q8_path path);
const char *q8_path_name(q8_path path);
q8_path q8_path_for_isa(isa_t isa);   /* the fastest q8 path that isa allows here */

/* n values (a multiple of Q8_GS) -> n int8 values and n/Q8_GS scales; every
 * path gives the scalar one's bits.  half_scales: the weights' fp16 scales. */
void q8_quantize(int8_t *q, float *scales, const float *x, size_t n);
void q8_quantize_path(q8_path path, int8_t *q, float *scales, const float *x, size_t n,
                      bool half_scales);
/* q8_quantize with the weights' fp16 scales, for a matrix already [out, in] */
void q8_quantize_weights(int8_t *q, float *scales, const float *x, size_t n);
/* The smallest fp16 value >= s (s >= 0 and finite), as a float;
 * Q8_SCALE_MAX for s beyond it. */
float q8_half_ceil(float s);
/* The index of the first |x[i]| > Q8_WEIGHT_MAX, a weight int8 cannot hold
 * (callers refuse it), or n when there is none. */
size_t q8_weight_out_of_range(const float *x, size_t n);
/* x[i] = q[i] * scales[i / Q8_GS] */
void q8_dequantize(float *x, const int8_t *q, const float *scales, size_t n);

/* w [in, out] row-major fp32 -> wq [out, in] int8 and ws [out, in/Q8_GS]:
 * column o of w quantized exactly as q8_quantize_path with half_scales would
 * quantize it.  in must be a multiple of Q8_GS. */
void q8_pack_weights(int8_t *wq, float *ws, const float *w, int in, int out);

/* y [M, OUT] = dequant(xq [M, IN], xs [M, IN/32]) @ dequant(wq [OUT, IN], ws)^T
 * + bias [OUT] (bias may be NULL).  IN a multiple of Q8_GS; xq and wq must
 * not hold -128.  Threads over OUT (and M). */
void q8_matmul(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
               const float *bias, int M, int IN, int OUT);
/* Outputs [o0, o1) of a single row (M = 1) on the calling thread alone, on
 * the active path: for a caller that splits OUT over its own threads.  o0
 * must be a multiple of 8; the results are q8_matmul's. */
void q8_matvec_range(float *y, const int8_t *xq, const float *xs, const int8_t *wq,
                     const float *ws, const float *bias, int IN, int OUT, int o0, int o1);
/* Decode layouts: a copy of wq/ws repacked so that one row (M = 1) runs with
 * no horizontal sums.  Per block of B outputs (the last padded with zero
 * rows), per group g: 8 chunks k of 4B bytes (output o's inputs g*32+4k..+3
 * at bytes 4o..4o+3), then the block's B scales as fp16.
 *   Q8_VNNI (B = 16): one vpdpbusd per chunk against 4 broadcast bytes of x.
 *     It multiplies unsigned by signed bytes, so the weights carry +128 and
 *     x stays signed: sum((w + 128) x) - 128 sum(x) is the exact group sum;
 *     aux holds 128 sum(x) per group.
 *   Q8_AVX2 (B = 8): maddubs of 4 broadcast bytes of |x| against the chunk
 *     with x's sign moved onto it (vpsignb), then madd: exact as in the
 *     tile path; aux holds |x|.
 * Either way q8_decode_matvec gives q8_matmul's results bit for bit.
 * q8_decode_path() is the layout the active ISA runs (AVX-512 without VNNI
 * takes the AVX2 one), or Q8_SCALAR: none, use q8_matvec_range. */
q8_path q8_decode_path(void);
size_t q8_decode_pack_bytes(q8_path path, int IN, int OUT);
/* 0, or -1 if a scale in ws is not an fp16 value (not q8_pack_weights's);
 * dst is written either way, and is not to be used after -1. */
int q8_decode_pack(q8_path path, void *dst, const int8_t *wq, const float *ws, int IN, int OUT);
/* q8_decode_pack's inverse: wq [OUT, IN] and ws [OUT, IN/32] back. */
void q8_decode_unpack(q8_path path, int8_t *wq, float *ws, const void *packed, int IN, int OUT);
/* Output o's IN weights from the layout, dequantized (x[i] = q[i] * scale):
 * a row of wte from the packed LM head, for the token embedding. */
void q8_decode_row(q8_path path, float *x, const void *packed, int IN, int o);
/* aux (rows x IN bytes, 32-byte aligned) <- what path's products need of
 * each row of xq [rows, IN] */
void q8_decode_prep(q8_path path, void *aux, const int8_t *xq, int rows, int IN);
/* Outputs [o0, o1) (o0 a multiple of 16) of one row on the calling thread. */
void q8_decode_matvec(q8_path path, float *y, const int8_t *xq, const float *xs, const void *aux,
                      const void *packed, const float *bias, int IN, int o0, int o1);
/* q8_matmul's y [M, OUT] on a decode layout (prefill): the threads split
 * tiles of outputs, and each tile's weights stay in cache across the rows. */
void q8_decode_matmul(q8_path path, float *y, const int8_t *xq, const float *xs, const void *aux,
                      const void *packed, const float *bias, int M, int IN, int OUT);

/* A given path (the scalar one when this CPU cannot run it), for tests and benchmarks. */
void q8_matmul_path(q8_path path, float *y, const int8_t *xq, const float *xs, const int8_t *wq,
                    const float *ws, const float *bias, int M, int IN, int OUT);

#endif
