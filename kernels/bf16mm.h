/* bf16mm: y = x W (+ b) with W held as bf16, 2 bytes a weight: inference's
 * 16-bit mode.  Decode streams W once per token, so halving its bytes is what
 * makes it faster than fp32; the same kernel serves prefill a few rows at a
 * time (each row's arithmetic is the same whatever the number of rows).
 *
 * Layout (bf16mm_pack): blocks of BF16MM_NB outputs; in a block, for each
 * pair of inputs (2p, 2p+1), the block's outputs in order, each as the two
 * bf16 values {W[2p][o], W[2p+1][o]}.  So a 64-byte read holds 16 outputs x
 * one input pair: what vdpbf16ps multiplies, and what a shift / a mask widens
 * to fp32 in registers.  Outputs past out and the odd input past an odd in are
 * zero weights.  This is oneDNN's BA16a64b2a when in is a multiple of 32.
 *
 * Two arithmetics, both accumulating each output in fp32 from 0, then
 * y = acc + b[o] (b NULL: y = acc):
 *   widen (scalar, AVX2, AVX-512): x stays fp32; for i = 0..in-1 in order,
 *        acc = fmaf(x[i], W[i][o], acc) -- exactly gemv_n on the weights
 *        rounded to bf16 (bit-identical results).
 *   dot (AVX512-BF16, vdpbf16ps): x rounded to bf16 (nearest even, denormals
 *        as zero) too; for each pair p in order, acc = fmaf(x[2p+1],
 *        W[2p+1][o], acc), then acc = fmaf(x[2p], W[2p][o], acc) (a product
 *        of two bf16 values is exact in fp32; the instruction treats denormal
 *        inputs as zero and flushes denormal results), x[in] = 0 for odd in.
 *        Half the instructions of widening, at bf16's rounding of x.
 * Results do not depend on the number of threads or of rows (threads split
 * the outputs in whole blocks).  bf16mm_path() is the active path: dot where
 * the active ISA is AVX-512 and the CPU has AVX512-BF16, else widen on
 * cpu_isa()'s path (GPT_ISA forces a widening path).
 */
#ifndef KERNELS_BF16MM_H
#define KERNELS_BF16MM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BF16MM_NB 64   /* outputs per block */

typedef enum { BF16MM_SCALAR = 0, BF16MM_AVX2, BF16MM_AVX512, BF16MM_DOT, BF16MM_PATH_COUNT } bf16mm_path;

bool bf16mm_supported(bf16mm_path p);
bf16mm_path bf16mm_path_active(void);
const char *bf16mm_path_name(bf16mm_path p);

/* uint16_t values of the packed W [in, out]. */
size_t bf16mm_packed_len(int in, int out);
/* Packs W from fp32 (rounded to nearest even): trans false: w is [in, out]
 * row-major (the checkpoint's Conv1D layout); trans true: [out, in] (the tied
 * LM head, wte).  Threads over blocks. */
void bf16mm_pack(uint16_t *p, const float *w, bool trans, int in, int out);
/* dst[i] = W[i][o] for i < in, as fp32 (exact): a row of wte from the packed
 * LM head, for the token embedding. */
void bf16mm_column(float *dst, const uint16_t *p, int in, int o);

/* y[n, out] = x[n, in] W + b on the active path, threaded over output blocks. */
void bf16mm_matmul(float *y, const float *x, const uint16_t *p, const float *b, int n, int in,
                   int out);
/* One row, outputs [o0, o1) on the calling thread (a caller that splits the
 * outputs itself): o0 a multiple of BF16MM_NB, o1 one too or out. */
void bf16mm_matvec_range(float *y, const float *x, const uint16_t *p, const float *b, int in,
                         int out, int o0, int o1);
/* bf16mm_matmul on a given path (falls back to scalar where it cannot run). */
void bf16mm_matmul_path(bf16mm_path path, float *y, const float *x, const uint16_t *p,
                        const float *b, int n, int in, int out);

#endif
