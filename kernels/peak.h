/* peak: the machine's fp32 FMA peak, measured once, for MFU figures.
 *
 * Every OpenMP thread runs independent chains of fused multiply-adds on the
 * widest vector path this CPU has for ~20 ms; the sum over threads is the
 * figure.  GPT_PEAK_GFLOPS in the environment overrides it.
 */
#ifndef KERNELS_PEAK_H
#define KERNELS_PEAK_H

double peak_fp32_gflops(void);

/* The ceiling bf16 training is measured against: the rate of oneDNN's bf16
 * matmul (AMX or AVX512-BF16) on a 1024-cube product, timed once (~0.1 s);
 * the fp32 peak where bf16 products are not native.  GPT_PEAK_BF16_GFLOPS in
 * the environment overrides it.  (The tile units' register-resident peak is
 * several times higher, but no product from memory comes near it.) */
double peak_bf16_gflops(void);

/* FLOPs of `iters` iterations of the FMA loop of one path (tests, internals). */
double peak_fma_loop_avx512(long iters);
double peak_fma_loop_avx2(long iters);

#endif
