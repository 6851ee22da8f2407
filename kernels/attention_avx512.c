/* Attention primitives for AVX-512 (16 floats a vector); see attention_impl.h
 * for the contracts.  Tails use lane masks, so any head size works at full
 * speed on its whole vectors.  exp is simd_math.h's: its exp(-inf) = 0 makes
 * alpha 0 on the first key tile, where m is -inf. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "kernels/attention_impl.h"
#include "kernels/simd_math.h"

enum { W = 16, NV = 4 };   /* mm: ATTN_MR rows x NV vectors = 16 of the 32 registers */

_Static_assert(W % ATTN_MR == 0, "softmax_cols writes whole row groups");

#define INLINE static inline __attribute__((always_inline))
/* Full unrolling of the register block must happen before scalar replacement,
 * or gcc keeps c[][] in memory and stores it every iteration. */
#define UNROLL _Pragma("GCC unroll 4")

INLINE __mmask16 tail_mask(int rem)   /* the first rem lanes (0..16) */
{
    return rem >= W ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1);
}

/* mm on mr rows and one column block of nv vectors; masked_last: the last
 * vector covers only `last` lanes.  Every call site passes constant mr, nv
 * and masked_last, so that c[][] can live in registers. */
INLINE void mm_block(int mr, int nv, bool masked_last, __mmask16 last, float *C, int ldc,
                     const float *A, int sam, int sak, const float *B, int ldb, int k0, int k1,
                     bool acc)
{
    __m512 c[ATTN_MR][NV];
    __mmask16 mask[NV];
    UNROLL for (int v = 0; v < nv; v++)
        mask[v] = (masked_last && v == nv - 1) ? last : (__mmask16)0xFFFF;
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int v = 0; v < nv; v++)
            c[r][v] = acc ? _mm512_maskz_loadu_ps(mask[v], C + (size_t)r * ldc + v * W)
                          : _mm512_setzero_ps();
    for (int k = k0; k < k1; k++) {
        const float *b = B + (size_t)k * ldb;
        __m512 bv[NV];
        UNROLL for (int v = 0; v < nv; v++)
            bv[v] = _mm512_maskz_loadu_ps(mask[v], b + v * W);
        UNROLL for (int r = 0; r < mr; r++) {
            const __m512 ar = _mm512_set1_ps(A[(size_t)r * sam + (size_t)k * sak]);
            UNROLL for (int v = 0; v < nv; v++)
                c[r][v] = _mm512_fmadd_ps(ar, bv[v], c[r][v]);
        }
    }
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(C + (size_t)r * ldc + v * W, mask[v], c[r][v]);
}

/* mm for a constant mr: whole blocks of NV vectors, then the column tail with
 * a block of exactly the vectors it needs. */
INLINE void mm_rows(int mr, float *C, int ldc, const float *A, int sam, int sak, const float *B,
                    int ldb, int ncols, int k0, int k1, bool acc)
{
    int n = 0;
    for (; n + NV * W <= ncols; n += NV * W)
        mm_block(mr, NV, false, 0, C + n, ldc, A, sam, sak, B + n, ldb, k0, k1, acc);
    const int rem = ncols - n, nv = (rem + W - 1) / W;
    if (rem <= 0)
        return;
    const __mmask16 last = tail_mask(rem - (nv - 1) * W);
    C += n, B += n;
    switch (nv) {
    case 1:
        mm_block(mr, 1, true, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
    case 2:
        mm_block(mr, 2, true, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
    case 3:
        mm_block(mr, 3, true, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
    default:
        mm_block(mr, 4, true, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
    }
}

static void mm(float *C, int ldc, const float *A, int sam, int sak, const float *B, int ldb,
               int mr, int ncols, int k0, int k1, bool acc)
{
    switch (mr) {
    case 1:
        mm_rows(1, C, ldc, A, sam, sak, B, ldb, ncols, k0, k1, acc);
        break;
    case 2:
        mm_rows(2, C, ldc, A, sam, sak, B, ldb, ncols, k0, k1, acc);
        break;
    case 3:
        mm_rows(3, C, ldc, A, sam, sak, B, ldb, ncols, k0, k1, acc);
        break;
    default:
        mm_rows(ATTN_MR, C, ldc, A, sam, sak, B, ldb, ncols, k0, k1, acc);
        break;
    }
}

/* Lanes i0 + lane of the diagonal tile that see key j: those with i0 + lane >= j. */
INLINE __mmask16 visible(bool diag, int j, int i0)
{
    const int d = j - i0;
    return (!diag || d <= 0) ? (__mmask16)0xFFFF : (__mmask16)(0xFFFFu << d);
}

static void softmax_cols(float *st, int bk, int bq, bool diag, float scale, float *m, float *l,
                         float *alpha)
{
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int i0 = 0; i0 < bq; i0 += W) {
        const __mmask16 lanes = tail_mask(bq - i0);
        /* keys seen by some lane; on the diagonal that covers the lanes' groups */
        const int jvis = diag ? (bk < i0 + W ? bk : i0 + W) : bk;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < jvis; j++) {
            const __mmask16 k = lanes & visible(diag, j, i0);
            mx = _mm512_mask_max_ps(mx, k, mx, _mm512_maskz_loadu_ps(k, st + j * ATTN_BT + i0));
        }
        const __m512 m_old = _mm512_maskz_loadu_ps(lanes, m + i0);
        const __m512 m_new = _mm512_max_ps(m_old, _mm512_mul_ps(mx, vscale));
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < jvis; j++) {
            const __mmask16 k = lanes & visible(diag, j, i0);
            float *s = st + j * ATTN_BT + i0;
            const __m512 e = _mm512_maskz_mov_ps(
                k, simd_exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, s), vscale, m_new)));
            sum = _mm512_add_ps(sum, e);
            _mm512_mask_storeu_ps(s, lanes, e);
        }
        const __m512 a = simd_exp16(_mm512_sub_ps(m_old, m_new));
        _mm512_mask_storeu_ps(alpha + i0, lanes, a);
        _mm512_mask_storeu_ps(l + i0, lanes,
                              _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, l + i0), a, sum));
        _mm512_mask_storeu_ps(m + i0, lanes, m_new);
    }
}

static void exp_row(float *p, const float *s, int valid, int n, float scale, float lse)
{
    const __m512 vscale = _mm512_set1_ps(scale), vlse = _mm512_set1_ps(lse);
    for (int j = 0; j < n; j += W) {
        const __mmask16 k = tail_mask(valid - j);
        const __m512 x = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, s + j), vscale, vlse);
        _mm512_mask_storeu_ps(p + j, tail_mask(n - j), _mm512_maskz_mov_ps(k, simd_exp16(x)));
    }
}

static void ds_row(float *ds, const float *p, const float *dp, int n, float d, float scale)
{
    const __m512 vd = _mm512_set1_ps(d), vscale = _mm512_set1_ps(scale);
    for (int j = 0; j < n; j += W) {
        const __mmask16 k = tail_mask(n - j);
        const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + j), vd);
        _mm512_mask_storeu_ps(ds + j, k,
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), g),
                                            vscale));
    }
}

INLINE __m512 unpacklo_pd(__m512 a, __m512 b)
{
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

INLINE __m512 unpackhi_pd(__m512 a, __m512 b)
{
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* In-register 16 x 16 transpose: interleave pairs of rows, then pairs of
 * pairs (each 128-bit lane now holds 4 rows of one column), then gather the
 * lanes of the four row-quads.  x[i] is row i before and column i after. */
INLINE void transpose16(__m512 x[16])
{
    __m512 t[16];
    UNROLL for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(x[i], x[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(x[i], x[i + 1]);
    }
    UNROLL for (int i = 0; i < 16; i += 4) {   /* x[i + c]: lane L = rows i..i+3 of column 4L + c */
        x[i] = unpacklo_pd(t[i], t[i + 2]);
        x[i + 1] = unpackhi_pd(t[i], t[i + 2]);
        x[i + 2] = unpacklo_pd(t[i + 1], t[i + 3]);
        x[i + 3] = unpackhi_pd(t[i + 1], t[i + 3]);
    }
    UNROLL for (int c = 0; c < 4; c++) {
        const __m512 u0 = _mm512_shuffle_f32x4(x[c], x[4 + c], 0x44);
        const __m512 u1 = _mm512_shuffle_f32x4(x[c], x[4 + c], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(x[8 + c], x[12 + c], 0x44);
        const __m512 u3 = _mm512_shuffle_f32x4(x[8 + c], x[12 + c], 0xEE);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
    UNROLL for (int i = 0; i < 16; i++)
        x[i] = t[i];
}

/* One block of up to 16 x 16: rows past `rows` read as 0, columns past `cols`
 * are neither read nor written. */
INLINE void pack_block(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    __m512 x[16];
    const __mmask16 cmask = tail_mask(cols), rmask = tail_mask(rows);
    UNROLL for (int r = 0; r < 16; r++)
        x[r] = r < rows ? _mm512_maskz_loadu_ps(cmask, src + (size_t)r * lds)
                        : _mm512_setzero_ps();
    transpose16(x);
    UNROLL for (int c = 0; c < 16; c++)
        if (c < cols)
            _mm512_mask_storeu_ps(dst + (size_t)c * ldd, rmask, x[c]);
}

static void pack_t(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    for (int r = 0; r < rows; r += W)
        for (int c = 0; c < cols; c += W)
            pack_block(dst + (size_t)c * ldd + r, ldd, src + (size_t)r * lds + c, lds, rows - r,
                       cols - c);
}

static float dot(const float *a, const float *b, int n)
{
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += W) {
        const __mmask16 k = tail_mask(n - i);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s);
    }
    return _mm512_reduce_add_ps(s);
}

static void scale_row(float *x, int n, float a)
{
    const __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += W) {
        const __mmask16 k = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), va));
    }
}

const attn_ops attn_ops_avx512 = {
    .mm = mm, .softmax_cols = softmax_cols, .exp_row = exp_row, .ds_row = ds_row,
    .pack_t = pack_t, .dot = dot, .scale = scale_row, .cached = attn_cached_avx2,
};
