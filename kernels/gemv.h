/* gemv: y = x W (+ b) for a single row x, the products of one decode step in
 * fp32 (a matrix product library is slow at M = 1: all of its blocking is for
 * M, and the step is a stream over W).
 *
 *   gemv_n  W [in, out] row-major (the checkpoint's Conv1D layout):
 *           acc = 0; for i = 0..in-1: acc = fmaf(x[i], W[i][o], acc)
 *   gemv_t  W [out, in] row-major (the tied LM head, wte): 16 lanes,
 *           lane l takes i = l, l+16, ... up to in rounded up to 16 (x and W
 *           read as 0 past in): a[l] = fmaf(x[i], W[o][i], a[l]) in order;
 *           then a[l] += a[l+8] (l < 8), a[l] += a[l+4] (l < 4),
 *           a[l] += a[l+2] (l < 2), acc = a[0] + a[1]
 *   y[o] = b ? acc + b[o] : acc
 * Every path does those operations in that order (vector lanes are outputs in
 * gemv_n, the 16 lanes in gemv_t), so all give results bit-identical to the
 * scalar reference, with any number of threads (they split the outputs).
 * Paths: scalar, AVX2+FMA, AVX-512; cpu_isa() picks, GPT_ISA forces. */
#ifndef KERNELS_GEMV_H
#define KERNELS_GEMV_H

#include "kernels/cpu.h"

void gemv_n(float *y, const float *x, const float *w, const float *b, int in, int out);
void gemv_t(float *y, const float *x, const float *w, const float *b, int in, int out);
/* gemv_n of each of m rows: Y [m, out] = X [m, in] W (+ b), every row
 * bit-identical to gemv_n's (the same operations in the same order).  For the
 * few rows of a short prompt: a library's product blocks for many rows and
 * reads W at a few GB/s there, while here W streams from memory once per 16
 * rows and meets each of them in registers. */
void gemv_n_rows(float *y, const float *x, const float *w, const float *b, int m, int in,
                 int out);
void gemv_n_rows_isa(isa_t isa, float *y, const float *x, const float *w, const float *b, int m,
                     int in, int out);
/* Outputs [o0, o1) on the calling thread alone, on the active path: for a
 * caller that splits the outputs over its own threads (same results).  W may
 * be a slice of a wider matrix: gemv_n's rows are out floats apart (y has
 * only [o0, o1)), gemv_t's rows ldw floats apart. */
void gemv_n_range(float *y, const float *x, const float *w, const float *b, int in, int out,
                  int o0, int o1);
void gemv_t_range(float *y, const float *x, const float *w, int ldw, const float *b, int in,
                  int o0, int o1);
void gemv_n_isa(isa_t isa, float *y, const float *x, const float *w, const float *b, int in,
                int out);
void gemv_t_isa(isa_t isa, float *y, const float *x, const float *w, const float *b, int in,
                int out);

#endif
