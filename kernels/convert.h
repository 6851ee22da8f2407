/* convert: fp32 <-> bf16 (and, for the fp16 mode, fp32 <-> fp16) conversion.
 *
 * bf16 is the top 16 bits of an fp32 value; fp32 -> bf16 rounds to nearest
 * even, NaN stays NaN (quiet), infinities stay infinite.  Values are uint16_t
 * bit patterns.  Every path gives bit-identical results to the scalar one.
 */
#ifndef KERNELS_CONVERT_H
#define KERNELS_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu.h"

/* A float's bits and back: memcpy, not a pointer cast, so aliasing rules hold
 * and no float operation can quiet a signalling NaN. */
static inline uint32_t f32_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static inline float bits_f32(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

void f32_to_bf16(uint16_t *out, const float *in, size_t n);
void bf16_to_f32(float *out, const uint16_t *in, size_t n);
/* x[i] = bf16 round-trip of x[i], in place (emulates bf16 storage in fp32). */
void round_to_bf16(float *x, size_t n);

/* IEEE fp16 (the fp16 precision mode): round to nearest even, overflow to
 * inf, NaN quiet; fp16 -> fp32 is exact.  F16C on the SIMD paths. */
void f32_to_f16(uint16_t *out, const float *in, size_t n);
void f16_to_f32(float *out, const uint16_t *in, size_t n);
/* One value, on the calling thread (the functions above may start threads):
 * for loops that convert a value now and then, such as q8's fp16 scales. */
uint16_t f32_to_f16_one(float x);
float f16_to_f32_one(uint16_t h);
float bf16_to_f32_one(uint16_t b);
uint16_t f32_to_bf16_one(float x);

/* 1 if none of the n values is NaN or infinite: weights converted from a file
 * are checked before use (a model of NaNs would run, and say nothing). */
int f32_all_finite(const float *x, size_t n);

/* The blocked layout oneDNN's bf16 products read their weights in (tags
 * such as BA16a64b2a): the K x N matrix (K the products' reduction) cut into
 * blocks of 2 * a_blk rows by n_blk columns; inside a block, row pair p
 * (rows 2p, 2p + 1) is n_blk 32-bit words, word j holding (2p, j) in its low
 * half and (2p + 1, j) in its high half, so that vdpbf16ps and AMX read a
 * pair per lane.  Values past K or N are zero. */
typedef struct {
    int K, N;
    int a_blk, n_blk;              /* a block: a_blk row pairs of n_blk words */
    int k_blocks, n_blocks;        /* blocks along K and N, padding included */
    size_t kb_stride, nb_stride;   /* bf16 values from one block to the next along K, N */
} bf16_pair_layout;

/* dst = B rounded to bf16 in layout l (padding zero).  B is K x N with row
 * stride ldb, or with trans stored transposed: element (k, n) at
 * B[n * ldb + k].  oneDNN's reorder writes the same bytes (fp32 denormals
 * aside, which its conversion may flush to zero and this rounds as
 * convert.h says; bf16 products treat denormal inputs as zero anyway), but
 * walks a tall source such as the LM head's 50257 x 768 across its rows at
 * a few GB/s; this reads each source in storage order, near memory speed. */
void f32_to_bf16_pairs(const bf16_pair_layout *l, uint16_t *dst, const float *B, size_t ldb,
                       bool trans);
/* Both copies of one master at once: dst in layout l from B as stored
 * (K x N, row-major) and dst_t in layout lt from B transposed (lt is N x K),
 * reading B once: bands of rows that are whole blocks of both layouts, the
 * second copy packed while the band is still in cache. */
void f32_to_bf16_pairs_both(const bf16_pair_layout *l, uint16_t *dst, const bf16_pair_layout *lt,
                            uint16_t *dst_t, const float *B, size_t ldb);

void f32_to_bf16_pairs_isa(isa_t isa, const bf16_pair_layout *l, uint16_t *dst, const float *B,
                           size_t ldb, bool trans);
void f32_to_bf16_pairs_both_isa(isa_t isa, const bf16_pair_layout *l, uint16_t *dst,
                                const bf16_pair_layout *lt, uint16_t *dst_t, const float *B,
                                size_t ldb);
void f32_to_f16_isa(isa_t isa, uint16_t *out, const float *in, size_t n);
void f16_to_f32_isa(isa_t isa, float *out, const uint16_t *in, size_t n);
void f32_to_bf16_isa(isa_t isa, uint16_t *out, const float *in, size_t n);
void bf16_to_f32_isa(isa_t isa, float *out, const uint16_t *in, size_t n);
void round_to_bf16_isa(isa_t isa, float *x, size_t n);

#endif
