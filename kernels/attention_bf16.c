/* bf16 attention's primitives with AVX512-BF16 (vdpbf16ps, vcvtne2ps2bf16);
 * the contracts are attn_bf16_ops' in attention_impl.h.  A register block of
 * the product holds up to ATTN_MR rows x 4 vectors of 16 columns: each pair
 * word of A is broadcast, each 16 words of B are one vdpbf16ps operand. */
#include <immintrin.h>
#include <string.h>

#include "kernels/attention_impl.h"
#define SIMD_AVX512   /* kernels/simd.h's 16-lane tails; this file has the AVX-512 flags */
#include "kernels/simd.h"

enum { NV = 4 };

/* the first n of 32 16-bit lanes */
static __mmask32 halves(int n)
{
    return n >= 32 ? (__mmask32)0xFFFFFFFFu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1);
}

/* mr rows, nv vectors (constant at every call site, so c[][] stays in
 * registers), the last vector covering `last` columns. */
static inline __attribute__((always_inline)) void block(int mr, int nv, int last, float *C,
                                                        int ldc, const uint16_t *A, int sam,
                                                        int sak, const uint16_t *B, int ldb,
                                                        int kk0, int kk1, bool acc)
{
    __m512 c[ATTN_MR][NV];
    vtail m[NV];
    for (int v = 0; v < nv; v++)
        m[v] = vtail_n(v == nv - 1 ? last : 16);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            c[r][v] = acc ? vload_t(C + (size_t)r * ldc + 16 * v, m[v]) : vzero();
    for (int kk = kk0; kk < kk1; kk++) {
        const uint16_t *b = B + 2 * (size_t)kk * ldb;
        __m512i bv[NV];
        for (int v = 0; v < nv; v++)
            bv[v] = _mm512_maskz_loadu_epi32(m[v], b + 32 * v);
        for (int r = 0; r < mr; r++) {
            uint32_t pair;
            memcpy(&pair, A + 2 * ((size_t)r * sam + (size_t)kk * sak), sizeof pair);
            const __m512i a = _mm512_set1_epi32((int)pair);
            for (int v = 0; v < nv; v++)
                c[r][v] = _mm512_dpbf16_ps(c[r][v], (__m512bh)a, (__m512bh)bv[v]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            vstore_t(C + (size_t)r * ldc + 16 * v, m[v], c[r][v]);
}

static inline __attribute__((always_inline)) void rows(int mr, float *C, int ldc,
                                                       const uint16_t *A, int sam, int sak,
                                                       const uint16_t *B, int ldb, int ncols,
                                                       int kk0, int kk1, bool acc)
{
    int n = 0;
    for (; n + 16 * NV <= ncols; n += 16 * NV)
        block(mr, NV, 16, C + n, ldc, A, sam, sak, B + 2 * n, ldb, kk0, kk1, acc);
    const int nv = (ncols - n + 15) / 16, last = ncols - n - 16 * (nv - 1);
    C += n, B += 2 * n;
    switch (nv) {
    case 1:
        block(mr, 1, last, C, ldc, A, sam, sak, B, ldb, kk0, kk1, acc);
        break;
    case 2:
        block(mr, 2, last, C, ldc, A, sam, sak, B, ldb, kk0, kk1, acc);
        break;
    case 3:
        block(mr, 3, last, C, ldc, A, sam, sak, B, ldb, kk0, kk1, acc);
        break;
    case 4:
        block(mr, 4, last, C, ldc, A, sam, sak, B, ldb, kk0, kk1, acc);
        break;
    }
}

static void mm(float *C, int ldc, const uint16_t *A, int sam, int sak, const uint16_t *B, int ldb,
               int mr, int ncols, int kk0, int kk1, bool acc)
{
    switch (mr) {
    case 1:
        rows(1, C, ldc, A, sam, sak, B, ldb, ncols, kk0, kk1, acc);
        break;
    case 2:
        rows(2, C, ldc, A, sam, sak, B, ldb, ncols, kk0, kk1, acc);
        break;
    case 3:
        rows(3, C, ldc, A, sam, sak, B, ldb, ncols, kk0, kk1, acc);
        break;
    default:
        rows(ATTN_MR, C, ldc, A, sam, sak, B, ldb, ncols, kk0, kk1, acc);
        break;
    }
}

static void pair_rows(uint16_t *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    /* vcvtne2ps2bf16 gives row a's 16 values then row b's: interleave them */
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                           24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                           16, 0);
    for (int r = 0; r < rows; r += 2) {
        const float *a = src + (size_t)r * lds, *b = a + lds;
        uint16_t *d = dst + 2 * (size_t)(r / 2) * ldd;
        for (int c = 0; c < cols; c += 16) {
            const __m512 va = vload(a + c, cols - c);
            const __m512 vb = r + 1 < rows ? vload(b + c, cols - c) : vzero();
            const __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(vb, va);
            _mm512_mask_storeu_epi16(d + 2 * c, halves(2 * (cols - c)),
                                     _mm512_permutexvar_epi16(order, ab));
        }
    }
}

static void pair_cols(uint16_t *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    const int even = cols + cols % 2;   /* the odd last value's partner: a loaded zero */
    for (int r = 0; r < rows; r++) {
        const float *x = src + (size_t)r * lds;
        uint16_t *d = dst + 2 * (size_t)r * ldd;
        for (int c = 0; c < cols; c += 32) {
            const __m512 lo = vload(x + c, cols - c), hi = vload(x + c + 16, cols - c - 16);
            _mm512_mask_storeu_epi16(d + c, halves(even - c),
                                     (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

const attn_bf16_ops attn_bf16_avx512bf16 = {.mm = mm, .pair_rows = pair_rows,
                                            .pair_cols = pair_cols};
