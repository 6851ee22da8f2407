/* Attention primitives for AVX2 + FMA (8 floats a vector); see
 * attention_impl.h for the contracts.  Tails use vmaskmov, so any head size
 * works at full speed on its whole vectors.  exp is simd_math.h's: its
 * exp(-inf) = 0 makes alpha 0 on the first key tile, where m is -inf. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/attention_impl.h"
#include "kernels/simd_math.h"

enum { W = 8, NV = 2 };   /* mm: ATTN_MR rows x NV vectors = 8 of the 16 registers */

_Static_assert(W % ATTN_MR == 0, "softmax_cols writes whole row groups");

#define INLINE static inline __attribute__((always_inline))
/* Full unrolling of the register block must happen before scalar replacement,
 * or gcc keeps c[][] in memory and stores it every iteration. */
#define UNROLL _Pragma("GCC unroll 4")

INLINE __m256i tail_mask(int rem)   /* the first rem lanes (any int) */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INLINE __m256 load_n(const float *p, int rem)   /* lanes past rem read as 0 */
{
    return rem >= W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(rem));
}

INLINE void store_n(float *p, int rem, __m256 x)   /* only the first rem lanes */
{
    if (rem >= W)
        _mm256_storeu_ps(p, x);
    else
        _mm256_maskstore_ps(p, tail_mask(rem), x);
}

/* mm on mr rows and one column block of nv vectors, the last of which covers
 * `last` lanes (1..8).  Every call site passes constant mr, nv and (mostly)
 * last, so that c[][] can live in registers. */
INLINE void mm_block(int mr, int nv, int last, float *C, int ldc, const float *A, int sam,
                     int sak, const float *B, int ldb, int k0, int k1, bool acc)
{
    __m256 c[ATTN_MR][NV];
    int width[NV];
    UNROLL for (int v = 0; v < nv; v++)
        width[v] = v == nv - 1 ? last : W;
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int v = 0; v < nv; v++)
            c[r][v] = acc ? load_n(C + (size_t)r * ldc + v * W, width[v]) : _mm256_setzero_ps();
    for (int k = k0; k < k1; k++) {
        const float *b = B + (size_t)k * ldb;
        __m256 bv[NV];
        UNROLL for (int v = 0; v < nv; v++)
            bv[v] = load_n(b + v * W, width[v]);
        UNROLL for (int r = 0; r < mr; r++) {
            const __m256 ar = _mm256_broadcast_ss(&A[(size_t)r * sam + (size_t)k * sak]);
            UNROLL for (int v = 0; v < nv; v++)
                c[r][v] = _mm256_fmadd_ps(ar, bv[v], c[r][v]);
        }
    }
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int v = 0; v < nv; v++)
            store_n(C + (size_t)r * ldc + v * W, width[v], c[r][v]);
}

/* mm for a constant mr: whole blocks of NV vectors, then the column tail. */
INLINE void mm_rows(int mr, float *C, int ldc, const float *A, int sam, int sak, const float *B,
                    int ldb, int ncols, int k0, int k1, bool acc)
{
    int n = 0;
    for (; n + NV * W <= ncols; n += NV * W)
        mm_block(mr, NV, W, C + n, ldc, A, sam, sak, B + n, ldb, k0, k1, acc);
    const int rem = ncols - n;
    if (rem > W)
        mm_block(mr, 2, rem - W, C + n, ldc, A, sam, sak, B + n, ldb, k0, k1, acc);
    else if (rem > 0)
        mm_block(mr, 1, rem, C + n, ldc, A, sam, sak, B + n, ldb, k0, k1, acc);
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
INLINE __m256 visible(bool diag, int j, int i0)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int d = diag ? j - i0 : 0;
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(d - 1)));
}

static void softmax_cols(float *st, int bk, int bq, bool diag, float scale, float *m, float *l,
                         float *alpha)
{
    const __m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    for (int i0 = 0; i0 < bq; i0 += W) {
        const int rem = bq - i0;
        /* keys seen by some lane; on the diagonal that covers the lanes' groups */
        const int jvis = diag ? (bk < i0 + W ? bk : i0 + W) : bk;
        __m256 mx = ninf;
        for (int j = 0; j < jvis; j++) {
            const __m256 s = _mm256_blendv_ps(ninf, load_n(st + j * ATTN_BT + i0, rem),
                                              visible(diag, j, i0));
            mx = _mm256_max_ps(mx, s);
        }
        const __m256 m_old = load_n(m + i0, rem);
        const __m256 m_new = _mm256_max_ps(m_old, _mm256_mul_ps(mx, vscale));
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < jvis; j++) {
            float *s = st + j * ATTN_BT + i0;
            const __m256 x = _mm256_fmsub_ps(load_n(s, rem), vscale, m_new);
            const __m256 e = _mm256_and_ps(visible(diag, j, i0), simd_exp8(x));
            sum = _mm256_add_ps(sum, e);
            store_n(s, rem, e);
        }
        const __m256 a = simd_exp8(_mm256_sub_ps(m_old, m_new));
        store_n(alpha + i0, rem, a);
        store_n(l + i0, rem, _mm256_fmadd_ps(load_n(l + i0, rem), a, sum));
        store_n(m + i0, rem, m_new);
    }
}

static void exp_row(float *p, const float *s, int valid, int n, float scale, float lse)
{
    const __m256 vscale = _mm256_set1_ps(scale), vlse = _mm256_set1_ps(lse);
    for (int j = 0; j < n; j += W) {
        const __m256 x = _mm256_fmsub_ps(load_n(s + j, valid - j), vscale, vlse);
        const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(tail_mask(valid - j)), simd_exp8(x));
        store_n(p + j, n - j, e);
    }
}

static void ds_row(float *ds, const float *p, const float *dp, int n, float d, float scale)
{
    const __m256 vd = _mm256_set1_ps(d), vscale = _mm256_set1_ps(scale);
    for (int j = 0; j < n; j += W) {
        const __m256 g = _mm256_sub_ps(load_n(dp + j, n - j), vd);
        store_n(ds + j, n - j, _mm256_mul_ps(_mm256_mul_ps(load_n(p + j, n - j), g), vscale));
    }
}

/* In-register 8 x 8 transpose: interleave pairs of rows, then pairs of pairs
 * (each 128-bit half now holds 4 rows of one column), then swap halves.
 * x[i] is row i before and column i after. */
INLINE void transpose8(__m256 x[8])
{
    __m256 t[8], u[8];
    UNROLL for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(x[i], x[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);
    }
    UNROLL for (int i = 0; i < 8; i += 4) {   /* u[i + c]: half H = rows i..i+3 of column 4H + c */
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    UNROLL for (int c = 0; c < 4; c++) {
        x[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        x[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* One block of up to 8 x 8: rows past `rows` read as 0, columns past `cols`
 * are neither read nor written. */
INLINE void pack_block(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    __m256 x[8];
    UNROLL for (int r = 0; r < 8; r++)
        x[r] = r < rows ? load_n(src + (size_t)r * lds, cols) : _mm256_setzero_ps();
    transpose8(x);
    UNROLL for (int c = 0; c < 8; c++)
        if (c < cols)
            store_n(dst + (size_t)c * ldd, rows, x[c]);
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
    __m256 s = _mm256_setzero_ps();
    for (int i = 0; i < n; i += W)
        s = _mm256_fmadd_ps(load_n(a + i, n - i), load_n(b + i, n - i), s);
    return simd_hsum8(s);
}

static void scale_row(float *x, int n, float a)
{
    const __m256 va = _mm256_set1_ps(a);
    for (int i = 0; i < n; i += W)
        store_n(x + i, n - i, _mm256_mul_ps(load_n(x + i, n - i), va));
}

/* ---- attention_cached: one query over a KV cache ---- */

/* The 8 values from i of a cache block p, fp32 or bf16 widened (its bits are
 * an fp32's top half); lanes past rem read as 0 and touch no memory. */
INLINE __m256 kv_load8(const void *p, bool bf16, size_t i, size_t rem)
{
    if (!bf16)
        return simd_load8((const float *)p + i, rem);
    const uint16_t *b = (const uint16_t *)p + i;
    uint16_t tail[8] = {0};
    if (rem < 8) {
        memcpy(tail, b, rem * sizeof *b);
        b = tail;
    }
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)b);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Lane r = the sum of the 8 lanes of s[r]. */
INLINE __m256 reduce8(const __m256 s[8])
{
    const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
    const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(s[4], s[5]), _mm256_hadd_ps(s[6], s[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                         _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/* att[t] = scale (q . k[t]) for t < n, 8 rows at a time with no horizontal
 * sum per row; a short last block repeats row n-1 and stores only its own
 * lanes, so every row gets the same arithmetic.  Returns max_t att[t]. */
static float cached_scores(float *att, const float *q, const void *k, bool bf16, int n, int hs,
                           float scale)
{
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int t = 0; t < n; t += 8) {
        __m256 acc[8];
        size_t row[8];
        for (int r = 0; r < 8; r++) {
            acc[r] = _mm256_setzero_ps();
            row[r] = (size_t)(t + r < n ? t + r : n - 1) * hs;
        }
        for (int c = 0; c < hs; c += 8) {
            const size_t rem = (size_t)(hs - c);
            const __m256 qv = simd_load8(q + c, rem);
            _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++)
                acc[r] = _mm256_fmadd_ps(qv, kv_load8(k, bf16, row[r] + c, rem), acc[r]);
        }
        const __m256 s = _mm256_mul_ps(reduce8(acc), _mm256_set1_ps(scale));
        simd_store8(att + t, (size_t)(n - t), s);
        mx = _mm256_max_ps(mx, s);   /* repeated lanes hold row n-1's score */
    }
    return simd_hmax8(mx);
}

/* att[t] = exp(att[t] - mx) for t < n; returns their sum. */
static float cached_exps(float *att, int n, float mx)
{
    const __m256 m = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (int t = 0; t < n; t += 8) {
        const size_t rem = (size_t)(n - t);
        __m256 e = simd_exp8(_mm256_sub_ps(simd_load8(att + t, rem), m));
        if (rem < 8)
            e = _mm256_and_ps(e, _mm256_castsi256_ps(simd_mask8(rem)));
        simd_store8(att + t, rem, e);
        sum = _mm256_add_ps(sum, e);
    }
    return simd_hsum8(sum);
}

/* out = inv sum_t att[t] v[t]: up to 64 columns at a time (nv vectors)
 * held in registers while the rows stream past. */
static void cached_values(float *out, const float *att, const void *v, bool bf16, int n, int hs,
                          float inv)
{
    for (int c0 = 0; c0 < hs; c0 += 64) {
        const int nv = hs - c0 >= 64 ? 8 : (hs - c0 + 7) / 8;
        __m256 acc[8];
        size_t rem[8];
        for (int j = 0; j < 8; j++) {
            acc[j] = _mm256_setzero_ps();
            rem[j] = j < nv ? (size_t)(hs - c0 - 8 * j) : 0;
        }
        for (int t = 0; t < n; t++) {
            const __m256 a = _mm256_set1_ps(att[t]);
            const size_t at = (size_t)t * hs + c0;
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
                if (j < nv)
                    acc[j] = _mm256_fmadd_ps(a, kv_load8(v, bf16, at + 8 * j, rem[j]), acc[j]);
        }
        for (int j = 0; j < nv; j++)
            simd_store8(out + c0 + 8 * j, rem[j], _mm256_mul_ps(acc[j], _mm256_set1_ps(inv)));
    }
}

void attn_cached_avx2(float *out, const float *q, const void *k, const void *v, bool bf16, int n,
                      int hs, float *att)
{
    const float mx = cached_scores(att, q, k, bf16, n, hs, 1.0f / sqrtf((float)hs));
    cached_values(out, att, v, bf16, n, hs, 1.0f / cached_exps(att, n, mx));
}

const attn_ops attn_ops_avx2 = {
    .mm = mm, .softmax_cols = softmax_cols, .exp_row = exp_row, .ds_row = ds_row,
    .pack_t = pack_t, .dot = dot, .scale = scale_row, .cached = attn_cached_avx2,
};
