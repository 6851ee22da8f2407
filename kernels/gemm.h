/* gemm: row-major fp32 matrix products through oneDNN's matmul primitive.
 *
 *   C[M,N] = op(A)[M,K] @ op(B)[K,N] (+ bias[N]) (+ C if accumulate)
 *
 * op(X) is X or its transpose; lda/ldb/ldc are the row strides of the matrices
 * as stored.  Primitives are created once per shape and cached, so the training
 * loop never re-creates one.  Not thread-safe: call from one thread (oneDNN
 * itself uses all OpenMP threads inside each call).
 */
#ifndef KERNELS_GEMM_H
#define KERNELS_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { GEMM_F32 = 0, GEMM_BF16 = 1, GEMM_F16 = 2 } gemm_dtype;

/* A and B hold dtype values (float, or bf16 / IEEE fp16 bit patterns as
 * uint16_t); bias and C are fp32 and the products accumulate in fp32.  On a
 * CPU where oneDNN has no bf16 matmul, bf16 operands are widened to fp32 first
 * (same numbers, slower); fp16 operands always are (oneDNN 2.6 has no fp16
 * matmul on CPUs). */
void gemm(gemm_dtype dtype, bool trans_a, bool trans_b, int M, int N, int K, const void *A,
          int lda, const void *B, int ldb, const float *bias, bool accumulate, float *C, int ldc);
/* C = alpha * op(A) @ op(B) (+ C if accumulate), without a bias. */
void gemm_scaled(gemm_dtype dtype, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const void *A, int lda, const void *B, int ldb, bool accumulate, float *C,
                 int ldc);
/* The implementation of products with a transposed A (C = A^T B: the weight
 * gradients): oneDNN's first choice (its brgemm kernels where the ISA has
 * them) by default, or with gemm_kernel its older gemm kernel, which on some
 * CPUs and shapes is much faster (trainer/autotune.h measures which).  Part
 * of each cached product's key: later calls run the products it names. */
void gemm_set_trans_a_kernel(bool gemm_kernel);
bool gemm_trans_a_kernel(void);

/* Whether bf16 products run natively (AVX512-BF16/AMX or oneDNN's AVX-512 path);
 * GPT_BF16_EMULATE=1 in the environment (0 or 1, kernels/env.h) forces the
 * widening path.  Read on the first call after gemm_release. */
#define GEMM_BF16_EMULATE_ENV "GPT_BF16_EMULATE"
bool gemm_bf16_native(void);

/* A weight matrix for repeated products C = A @ W: W (K x N) is copied from its
 * fp32 master into the dtype and the blocked layout oneDNN's matmul reads
 * fastest (with AMX notably faster than plain row-major operands).  The
 * layout depends only on dtype, K and N, so one packed copy serves any M.
 * Where the dtype has no native product (fp16; bf16 without AVX512-BF16/AMX)
 * the copy is fp32 holding the values rounded to the dtype (4 bytes a value),
 * so each product widens only A: the same numbers as gemm()'s widening. */
typedef struct gemm_weights gemm_weights;

/* Weights of K x N taken from fp32 masters stored as B[K,N] (trans_b false) or
 * B[N,K] (trans_b true) with row stride ldb.  NULL when out of memory. */
gemm_weights *gemm_weights_create(gemm_dtype dtype, bool trans_b, int K, int N, int ldb);
/* The same, its packed copy placed in memory (gemm_weights_size bytes, 64-byte
 * aligned, outliving w) instead of allocated: processes that share memory can
 * share one copy.  NULL where gemm_weights_size is 0. */
gemm_weights *gemm_weights_create_in(gemm_dtype dtype, bool trans_b, int K, int N, int ldb,
                                     void *memory);
/* Bytes of the packed copy of K x N weights in dtype; 0 when it is not a
 * native 16-bit or fp32 layout (the widening fallback keeps its own). */
size_t gemm_weights_size(gemm_dtype dtype, int K, int N);
/* A view of bf16 weights K x N already laid out as oneDNN's BA16a64b2a
 * (kernels/bf16mm.h's layout where K is a multiple of 32): gemm_packed reads
 * data in place, nothing is copied (data must outlive the view, and the view
 * is never packed).  NULL where K is not a multiple of 32 or oneDNN has no
 * bf16 product reading that layout on this CPU. */
gemm_weights *gemm_weights_view_bf16(const uint16_t *data, int K, int N);
void gemm_weights_destroy(gemm_weights *w);
/* Refreshes w from the master B (after every optimizer step). */
void gemm_weights_pack(gemm_weights *w, const float *B);
/* Refreshes w and wt, the copies of one master B for a product and for its
 * transpose (wt made with K and N swapped and trans_b flipped, the same
 * ldb): reading B once where both are bf16 pair layouts, else two
 * gemm_weights_pack calls; the same bytes either way. */
void gemm_weights_pack_pair(gemm_weights *w, gemm_weights *wt, const float *B);
/* The same bytes (fp32 denormals aside) by oneDNN's own reorder:
 * gemm_weights_pack writes the bf16 pair layouts itself (kernels/convert.h),
 * and this is what tests and benchmarks compare it with. */
void gemm_weights_pack_onednn(gemm_weights *w, const float *B);
/* Whether gemm_weights_pack writes w itself (oneDNN chose a bf16 pair layout
 * for it) rather than through oneDNN's reorder. */
bool gemm_weights_packed_here(const gemm_weights *w);
/* Bytes the packed copy holds. */
size_t gemm_weights_bytes(const gemm_weights *w);
/* C[M,N] = alpha * A[M,K] @ W (+ bias[N]) (+ C if accumulate); A holds dtype
 * values; alpha is 1 when there is a bias. */
void gemm_packed(const gemm_weights *w, int M, float alpha, const void *A, int lda,
                 const float *bias, bool accumulate, float *C, int ldc);

void gemm_f32(bool trans_a, bool trans_b, int M, int N, int K, const float *A, int lda,
              const float *B, int ldb, const float *bias, bool accumulate, float *C, int ldc);

/* Plain loops in double: the reference the tests compare against. */
void gemm_f32_ref(bool trans_a, bool trans_b, int M, int N, int K, const float *A, int lda,
                  const float *B, int ldb, const float *bias, bool accumulate, float *C, int ldc);

/* One product of a timing set: C[M,N] = op(A)[M,K] @ op(B)[K,N], B a
 * gemm_weights copy when packed (trans_b unused then), weighted by count (how
 * often one training step runs it).  Weight-gradient products (trans_a)
 * accumulate into C, as training does. */
typedef struct {
    int M, N, K;
    bool trans_a, trans_b, packed;
    double count;
} gemm_shape;

/* Times a set of products with dtype operands (zeros: the time does not
 * depend on them), with gemm_set_trans_a_kernel's setting at creation.
 * Create runs each product once (primitive creation, page faults, tile
 * set-up); each pass runs them all again and keeps each one's
 * fastest time, so passes of several sets can alternate and share a noisy
 * host's slow moments.  NULL when dtype has no native product here (fp16 with
 * this oneDNN; bf16 without AVX512-BF16/AMX) or memory runs out. */
typedef struct gemm_timing gemm_timing;
gemm_timing *gemm_timing_create(gemm_dtype dtype, const gemm_shape *shapes, int n);
void gemm_timing_pass(gemm_timing *t);
/* sum(count * 2MNK) / sum(count * fastest time), in GFLOP/s. */
double gemm_timing_gflops(const gemm_timing *t);
void gemm_timing_destroy(gemm_timing *t);

/* Whether products of dtype run natively (fp32 always). */
bool gemm_native(gemm_dtype dtype);

/* The matmul library, its version and the ISA it runs, e.g.
 * "oneDNN 2.6.3 isa 0x3e7". */
const char *gemm_library(void);

/* The implementation oneDNN picks for a plain M x K x N product of dtype
 * ("brg:avx512_core_amx", "gemm:jit", ...), "" when it has none. */
const char *gemm_impl_name(gemm_dtype dtype, int M, int N, int K);

/* Releases every cached primitive (tests under LeakSanitizer, program exit). */
void gemm_release(void);

#endif
