/* The AVX-512 blocking compiled with AVX512-BF16 (the Makefile gives
 * *_bf16.c those flags): bf16mm_avx512.c sees __AVX512BF16__, takes its
 * products from vdpbf16ps and names its loop bf16mm_dot. */
#include "kernels/bf16mm_avx512.c"
