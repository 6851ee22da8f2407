/* Private to kernels/attention*.c and its test: the primitives the tiled
 * driver in attention.c is built from, one table per instruction set.  The
 * driver owns the FlashAttention-2 loop structure (tiles, causal trimming,
 * threading); each table supplies the inner loops (small matrix products,
 * exp, row ops), so the algorithm is written once and every path runs the
 * same schedule.
 */
#ifndef KERNELS_ATTENTION_IMPL_H
#define KERNELS_ATTENTION_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    ATTN_BT = 64,   /* tile edge: query rows / key columns per tile; tile buffers use this stride */
    ATTN_MR = 4,    /* rows per mm call: the granularity of causal trimming */
};

typedef struct {
    /* C[r*ldc + n] = (acc ? C[r*ldc + n] : 0) + sum_{k0 <= k < k1} A[r*sam + k*sak] * B[k*ldb + n]
     * for r < mr (1 <= mr <= ATTN_MR) and n < ncols. */
    void (*mm)(float *C, int ldc, const float *A, int sam, int sak, const float *B, int ldb,
               int mr, int ncols, int k0, int k1, bool acc);
    /* One online-softmax step of the forward pass over a tile of transposed raw
     * scores st[j*ATTN_BT + i] (key j < bk, query i < bq).  On the diagonal tile
     * key j is visible to query i only if j <= i, and only visible entries are
     * read.  Sets alpha[i] = exp(m[i] - m_new[i]), l[i] = l[i]*alpha[i] +
     * sum_j p[j][i], m[i] = m_new[i], where m_new[i] = max(m[i], max over
     * visible j of scale*st[j][i]), and overwrites st with
     * p[j][i] = exp(scale*st[j][i] - m_new[i]) (0 if not visible) for every
     * j < bk, except that on the diagonal only j below the end of i's group of
     * ATTN_MR queries need be written: that is all P V reads there. */
    void (*softmax_cols)(float *st, int bk, int bq, bool diag, float scale, float *m, float *l,
                         float *alpha);
    /* p[j] = exp(scale*s[j] - lse) for j < valid, 0 for valid <= j < n. */
    void (*exp_row)(float *p, const float *s, int valid, int n, float scale, float lse);
    /* ds[j] = scale * p[j] * (dp[j] - d) for j < n. */
    void (*ds_row)(float *ds, const float *p, const float *dp, int n, float d, float scale);
    /* dst[c*ldd + r] = src[r*lds + c] for r < rows (<= ATTN_BT), c < cols. */
    void (*pack_t)(float *dst, int ldd, const float *src, int lds, int rows, int cols);
    float (*dot)(const float *a, const float *b, int n);
    void (*scale)(float *x, int n, float a);   /* x *= a */
    /* attention_cached (attention.h), the whole of it */
    void (*cached)(float *out, const float *q, const void *k, const void *v, bool bf16, int n,
                   int hs, float *att);
    /* attention_cached_rows (attention.h), the whole of it */
    void (*cached_rows)(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                        const void *v, bool bf16, int n, int rows, int hs, float *att);
} attn_ops;

/* bf16 attention's primitives.  Its operands hold bf16 values in pairs: word
 * w is X[2w] (the even k) and X[2w + 1] (the odd k) of pair kk = k / 2. */
typedef struct {
    /* C[r*ldc + n] = (acc ? C[r*ldc + n] : 0) + sum over kk0 <= kk < kk1 of
     * A_lo * B_lo + A_hi * B_hi, A's word r*sam + kk*sak and B's kk*ldb + n,
     * in fp32, for r < mr (1 <= mr <= ATTN_MR) and n < ncols. */
    void (*mm)(float *C, int ldc, const uint16_t *A, int sam, int sak, const uint16_t *B,
               int ldb, int mr, int ncols, int kk0, int kk1, bool acc);
    /* Word [kk*ldd + c] of dst = rows 2kk, 2kk + 1 of src (stride lds), column c
     * (< cols), rounded to bf16; a missing last row is 0. */
    void (*pair_rows)(uint16_t *dst, int ldd, const float *src, int lds, int rows, int cols);
    /* Word [r*ldd + kk] of dst = values 2kk, 2kk + 1 of row r (< rows) of src,
     * rounded to bf16; an odd last value pairs with 0. */
    void (*pair_cols)(uint16_t *dst, int ldd, const float *src, int lds, int rows, int cols);
} attn_bf16_ops;

/* attention_bf16.c: vdpbf16ps and the conversions of AVX512-BF16 */
extern const attn_bf16_ops attn_bf16_avx512bf16;

extern const attn_ops attn_ops_avx2, attn_ops_avx512;
/* attention_cached_simd.c: the cached entries of each SIMD table */
void attn_cached_avx2(float *out, const float *q, const void *k, const void *v, bool bf16, int n,
                      int hs, float *att);
void attn_cached_avx512(float *out, const float *q, const void *k, const void *v, bool bf16,
                        int n, int hs, float *att);
void attn_cached_rows_avx2(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                           const void *v, bool bf16, int n, int rows, int hs, float *att);
void attn_cached_rows_avx512(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                             const void *v, bool bf16, int n, int rows, int hs, float *att);

#endif
