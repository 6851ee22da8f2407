#include "kernels/peak.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cpu.h"
#include "kernels/env.h"
#include "kernels/gemm.h"
#include "kernels/peak_impl.h"

/* Scalar machines: two FMA-less float ops per cycle is a fair stand-in. */
static double fma_loop_scalar(long iters)
{
    volatile float a = 1.0f;
    for (long i = 0; i < iters; i++)
        a = a * 0.999f + 1e-7f;
    return (double)iters * 2;
}

static double fma_loop(long iters)
{
    switch (cpu_isa()) {
    case ISA_AVX512: return peak_fma_loop_avx512(iters);
    case ISA_AVX2: return peak_fma_loop_avx2(iters);
    default: return fma_loop_scalar(iters);
    }
}

double peak_fp32_gflops(void)
{
    static double cached;
    if (cached > 0)
        return cached;
    double set;   /* a bad value: measured instead (the trainer refuses it at start) */
    env_positive(PEAK_FP32_ENV, &set, NULL, 0);
    if (set > 0)
        return cached = set;
    double total = 0;
    fma_loop(100000);   /* wake the vector units up before timing */
#pragma omp parallel reduction(+ : total)
    {
        long iters = 100000;
        double t0 = omp_get_wtime(), flops = 0, dt = 0;
        while (dt < 0.02) {
            flops += fma_loop(iters);
            dt = omp_get_wtime() - t0;
        }
        total += flops / dt / 1e9;
    }
    return cached = total;
}

double peak_matmul_gflops(gemm_dtype dtype, int S)
{
    if (!gemm_native(dtype))
        return 0;
    enum { REPS = 4 };
    size_t value = dtype == GEMM_F32 ? sizeof(float) : sizeof(uint16_t);
    char *a = calloc((size_t)2 * S * S, value);
    float *c = malloc((size_t)S * S * sizeof *c);
    double best = 0;
    for (int r = 0; a && c && r <= REPS; r++) {   /* run 0 creates the primitive */
        double t0 = omp_get_wtime();
        gemm(dtype, false, false, S, S, S, a, S, a + (size_t)S * S * value, S, NULL,
             false, c, S);
        double rate = 2.0 * S * S * S / (omp_get_wtime() - t0) / 1e9;
        best = r > 0 && rate > best ? rate : best;
    }
    free(a);
    free(c);
    return best;
}

double peak_bf16_gflops(void)
{
    static double cached;
    if (cached > 0)
        return cached;
    double set;
    env_positive(PEAK_BF16_ENV, &set, NULL, 0);
    if (set > 0)
        return cached = set;
    double rate = peak_matmul_gflops(GEMM_BF16, 1024);
    return cached = rate > 0 ? rate : peak_fp32_gflops();
}

double peak_memory_gb_s(void)
{
    enum { N = 16 << 20, REPS = 5 };   /* 64 MB per array: far beyond any cache */
    float *a = malloc((size_t)N * sizeof *a), *b = malloc((size_t)N * sizeof *b),
          *c = malloc((size_t)N * sizeof *c);
    double best = 0;
    if (a && b && c) {
#pragma omp parallel for schedule(static)
        for (long i = 0; i < N; i++)   /* first touch by the threads that use the pages */
            a[i] = 0, b[i] = 1, c[i] = 2;
        for (int r = 0; r < REPS; r++) {
            double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
            for (long i = 0; i < N; i++)
                a[i] = b[i] + 0.5f * c[i];
            double rate = 3.0 * sizeof(float) * N / (omp_get_wtime() - t0) / 1e9;
            best = rate > best ? rate : best;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}
