/* bench_hw: the hardware line make bench starts with.  Names the CPU, the ISA
 * tiers the kernels use here, and measures oneDNN's fp32 and bf16 rates on a
 * large square product and the memory bandwidth, so every figure after it can
 * be read against this machine (MFU is computed against these rates).
 * Prints one line and, with $BENCH_JSONL, a {"bench": "hardware", ...} row. */
#include <omp.h>
#include <stdio.h>

#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/peak.h"
#include "tests/bench_util.h"

enum { SQUARE = 2048 };

int main(void)
{
    bench_check_isa("bench_hw");
    char tiers[128];
    int n = snprintf(tiers, sizeof tiers, "%s", cpu_isa_name(cpu_isa()));
    if (cpu_has_avx512_vnni())
        n += snprintf(tiers + n, sizeof tiers - n, "+vnni");
    if (cpu_has_bf16())
        n += snprintf(tiers + n, sizeof tiers - n, "+bf16");
    if (cpu_has_avx512_fp16())
        n += snprintf(tiers + n, sizeof tiers - n, "+fp16");
    if (cpu_has_amx_bf16())
        snprintf(tiers + n, sizeof tiers - n, "+amx");
    const double fp32 = peak_matmul_gflops(GEMM_F32, SQUARE);
    const double bf16 = peak_matmul_gflops(GEMM_BF16, SQUARE);
    char bf16_impl[128];
    snprintf(bf16_impl, sizeof bf16_impl, "%s",
             bf16 > 0 ? gemm_impl_name(GEMM_BF16, SQUARE, SQUARE, SQUARE) : "widened to fp32");
    const double mem = peak_memory_gb_s();
    printf("hardware: %s | ISA %s | %d threads | %s %dx%dx%d products: fp32 %.0f GFLOP/s (%s), "
           "bf16 %.0f GFLOP/s (%s) | memory %.1f GB/s (triad)\n",
           cpu_model_name(), tiers, omp_get_max_threads(), gemm_library(), SQUARE, SQUARE, SQUARE,
           fp32, gemm_impl_name(GEMM_F32, SQUARE, SQUARE, SQUARE), bf16, bf16_impl, mem);
    FILE *f = bench_jsonl_open();
    if (f) {
        fprintf(f, "{\"bench\": \"hardware\", \"cpu\": \"%s\", \"isa\": \"%s\", \"threads\": %d, "
                   "\"fp32_gflops\": %.1f, \"bf16_gflops\": %.1f, \"bf16_impl\": \"%s\", "
                   "\"memory_gb_s\": %.1f}\n",
                cpu_model_name(), tiers, omp_get_max_threads(), fp32, bf16, bf16_impl, mem);
        fclose(f);
    }
    gemm_release();
    return 0;
}
