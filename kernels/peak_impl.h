/* Private to kernels/peak*.c: the FMA loop of each vector path
 * (kernels/peak_simd.c, compiled once per ISA), which peak.c times. */
#ifndef KERNELS_PEAK_IMPL_H
#define KERNELS_PEAK_IMPL_H

/* FLOPs of `iters` iterations of the FMA loop of one path. */
double peak_fma_loop_avx512(long iters);
double peak_fma_loop_avx2(long iters);

#endif
