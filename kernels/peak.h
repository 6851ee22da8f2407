/* peak: the machine's fp32 FMA peak, measured once, for MFU figures.
 *
 * Every OpenMP thread runs independent chains of fused multiply-adds on the
 * widest vector path this CPU has for ~20 ms; the sum over threads is the
 * figure.  GPT_PEAK_GFLOPS in the environment (a number > 0, kernels/env.h)
 * overrides it.
 */
#ifndef KERNELS_PEAK_H
#define KERNELS_PEAK_H

#include "kernels/gemm.h"

/* The variables that replace the fp32 and bf16 figures below. */
#define PEAK_FP32_ENV "GPT_PEAK_GFLOPS"
#define PEAK_BF16_ENV "GPT_PEAK_BF16_GFLOPS"

double peak_fp32_gflops(void);

/* The ceiling bf16 training is measured against: the rate of oneDNN's bf16
 * matmul (AMX or AVX512-BF16) on a 1024-cube product, timed once (~0.1 s);
 * the fp32 peak where bf16 products are not native.  GPT_PEAK_BF16_GFLOPS in
 * the environment overrides it.  (The tile units' register-resident peak is
 * several times higher, but no product from memory comes near it.) */
double peak_bf16_gflops(void);

/* The rate of oneDNN's matmul on an S x S x S product of dtype operands
 * (fp32 results), best of a few runs after one that creates the primitive:
 * what a large, well-shaped product reaches here.  0 when dtype has no native
 * product on this CPU. */
double peak_matmul_gflops(gemm_dtype dtype, int S);

/* Main-memory bandwidth in GB/s: the best of a few runs of a STREAM triad
 * (a = b + s c, 3 x 64 MB of floats, all OpenMP threads), counting the bytes
 * read and written. */
double peak_memory_gb_s(void);

#endif
