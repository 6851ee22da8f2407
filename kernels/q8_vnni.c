/* The AVX-512 int8 tile loop compiled with AVX512-VNNI (the Makefile gives
 * *_vnni.c those flags): q8_avx512.c sees __AVX512VNNI__, takes its products
 * from vpdpbusd and names its table q8_ops_vnni.  One source, so the two
 * AVX-512 paths cannot drift apart. */
#include "kernels/q8_avx512.c"
