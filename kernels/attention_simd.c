/* Attention primitives, one source for AVX2 and AVX-512 (kernels/simd.h); see
 * attention_impl.h for the contracts.  Tails use vload/vstore's counts, so any
 * head size works at full speed on its whole vectors.  exp is simd_math.h's:
 * its exp(-inf) = 0 makes alpha 0 on the first key tile, where m is -inf.
 * The in-register transpose of pack_t is the one part written per width;
 * the cached entries are attention_cached_simd.c's. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "kernels/attention_impl.h"
#include "kernels/simd.h"

/* mm's register block: ATTN_MR rows x NV vectors, half the vector registers */
enum { NV = VW == 16 ? 4 : 2 };

_Static_assert(VW % ATTN_MR == 0, "softmax_cols writes whole row groups");

/* Full unrolling of the register block must happen before scalar replacement,
 * or gcc keeps c[][] in memory and stores it every iteration. */
#define UNROLL _Pragma("GCC unroll 4")

/* mm on mr rows and one column block of nv vectors, the last of which covers
 * `last` lanes (1..VW).  Every call site passes constant mr and nv, so that
 * c[][] can live in registers. */
SIMD_INLINE void mm_block(int mr, int nv, int last, float *C, int ldc, const float *A, int sam,
                          int sak, const float *B, int ldb, int k0, int k1, bool acc)
{
    vfloat c[ATTN_MR][NV];
    vtail tail[NV];
    UNROLL for (int v = 0; v < nv; v++)
        tail[v] = vtail_n(v == nv - 1 ? last : VW);
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int v = 0; v < nv; v++)
            c[r][v] = acc ? vload_t(C + (size_t)r * ldc + v * VW, tail[v]) : vzero();
    for (int k = k0; k < k1; k++) {
        const float *b = B + (size_t)k * ldb;
        vfloat bv[NV];
        UNROLL for (int v = 0; v < nv; v++)
            bv[v] = vload_t(b + v * VW, tail[v]);
        UNROLL for (int r = 0; r < mr; r++) {
            const vfloat ar = vbroadcast(&A[(size_t)r * sam + (size_t)k * sak]);
            UNROLL for (int v = 0; v < nv; v++)
                c[r][v] = vfmadd(ar, bv[v], c[r][v]);
        }
    }
    UNROLL for (int r = 0; r < mr; r++)
        UNROLL for (int v = 0; v < nv; v++)
            vstore_t(C + (size_t)r * ldc + v * VW, tail[v], c[r][v]);
}

/* mm for a constant mr: whole blocks of NV vectors, then the column tail with
 * a block of exactly the vectors it needs. */
SIMD_INLINE void mm_rows(int mr, float *C, int ldc, const float *A, int sam, int sak,
                         const float *B, int ldb, int ncols, int k0, int k1, bool acc)
{
    int n = 0;
    for (; n + NV * VW <= ncols; n += NV * VW)
        mm_block(mr, NV, VW, C + n, ldc, A, sam, sak, B + n, ldb, k0, k1, acc);
    const int rem = ncols - n, nv = (rem + VW - 1) / VW, last = rem - (nv - 1) * VW;
    C += n, B += n;
    switch (nv) {
    case 1:
        mm_block(mr, 1, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
    case 2:
        mm_block(mr, 2, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
#ifdef SIMD_AVX512   /* AVX2's NV = 2 leaves at most 2 */
    case 3:
        mm_block(mr, 3, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
    case 4:
        mm_block(mr, 4, last, C, ldc, A, sam, sak, B, ldb, k0, k1, acc);
        break;
#endif
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
SIMD_INLINE vmask visible(bool diag, int j, int i0)
{
    return vmask_from(diag ? j - i0 : 0);
}

static void softmax_cols(float *st, int bk, int bq, bool diag, float scale, float *m, float *l,
                         float *alpha)
{
    const vfloat vscale = vset1(scale);
    for (int i0 = 0; i0 < bq; i0 += VW) {
        const int rem = bq - i0;
        /* keys seen by some lane; on the diagonal that covers the lanes' groups */
        const int jvis = diag ? (bk < i0 + VW ? bk : i0 + VW) : bk;
        vfloat mx = vset1(-INFINITY);
        for (int j = 0; j < jvis; j++)
            mx = vmax_where(visible(diag, j, i0), mx, vload(st + j * ATTN_BT + i0, rem));
        const vfloat m_old = vload(m + i0, rem);
        const vfloat m_new = vmax(m_old, vmul(mx, vscale));
        vfloat sum = vzero();
        for (int j = 0; j < jvis; j++) {
            float *s = st + j * ATTN_BT + i0;
            const vfloat x = vfmsub(vload(s, rem), vscale, m_new);
            const vfloat e = vkeep(visible(diag, j, i0), vexp(x));
            sum = vadd(sum, e);
            vstore(s, rem, e);
        }
        const vfloat a = vexp(vsub(m_old, m_new));
        vstore(alpha + i0, rem, a);
        vstore(l + i0, rem, vfmadd(vload(l + i0, rem), a, sum));
        vstore(m + i0, rem, m_new);
    }
}

static void exp_row(float *p, const float *s, int valid, int n, float scale, float lse)
{
    const vfloat vscale = vset1(scale), vlse = vset1(lse);
    for (int j = 0; j < n; j += VW) {
        const vfloat x = vfmsub(vload(s + j, valid - j), vscale, vlse);
        vstore(p + j, n - j, vkeep(vmask_n(valid - j), vexp(x)));
    }
}

static void ds_row(float *ds, const float *p, const float *dp, int n, float d, float scale)
{
    const vfloat vd = vset1(d), vscale = vset1(scale);
    for (int j = 0; j < n; j += VW) {
        const vfloat g = vsub(vload(dp + j, n - j), vd);
        vstore(ds + j, n - j, vmul(vmul(vload(p + j, n - j), g), vscale));
    }
}

#ifdef SIMD_AVX512

SIMD_INLINE vfloat unpacklo_pd(vfloat a, vfloat b)
{
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

SIMD_INLINE vfloat unpackhi_pd(vfloat a, vfloat b)
{
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* In-register 16 x 16 transpose: interleave pairs of rows, then pairs of
 * pairs (each 128-bit lane now holds 4 rows of one column), then gather the
 * lanes of the four row-quads.  x[i] is row i before and column i after. */
SIMD_INLINE void transpose(vfloat x[16])
{
    vfloat t[16];
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
        const vfloat u0 = _mm512_shuffle_f32x4(x[c], x[4 + c], 0x44);
        const vfloat u1 = _mm512_shuffle_f32x4(x[c], x[4 + c], 0xEE);
        const vfloat u2 = _mm512_shuffle_f32x4(x[8 + c], x[12 + c], 0x44);
        const vfloat u3 = _mm512_shuffle_f32x4(x[8 + c], x[12 + c], 0xEE);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
    UNROLL for (int i = 0; i < 16; i++)
        x[i] = t[i];
}

#else

/* In-register 8 x 8 transpose: interleave pairs of rows, then pairs of pairs
 * (each 128-bit half now holds 4 rows of one column), then swap halves.
 * x[i] is row i before and column i after. */
SIMD_INLINE void transpose(vfloat x[8])
{
    vfloat t[8], u[8];
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

#endif

/* One block of up to VW x VW: rows past `rows` read as 0, columns past `cols`
 * are neither read nor written. */
SIMD_INLINE void pack_block(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    vfloat x[VW];
    UNROLL for (int r = 0; r < VW; r++)
        x[r] = r < rows ? vload(src + (size_t)r * lds, cols) : vzero();
    transpose(x);
    UNROLL for (int c = 0; c < VW; c++)
        if (c < cols)
            vstore(dst + (size_t)c * ldd, rows, x[c]);
}

static void pack_t(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    for (int r = 0; r < rows; r += VW)
        for (int c = 0; c < cols; c += VW)
            pack_block(dst + (size_t)c * ldd + r, ldd, src + (size_t)r * lds + c, lds, rows - r,
                       cols - c);
}

static float dot(const float *a, const float *b, int n)
{
    vfloat s = vzero();
    for (int i = 0; i < n; i += VW)
        s = vfmadd(vload(a + i, n - i), vload(b + i, n - i), s);
    return vhsum(s);
}

static void scale_row(float *x, int n, float a)
{
    const vfloat va = vset1(a);
    for (int i = 0; i < n; i += VW)
        vstore(x + i, n - i, vmul(vload(x + i, n - i), va));
}

const attn_ops SIMD_NAME(attn_ops) = {
    .mm = mm, .softmax_cols = softmax_cols, .exp_row = exp_row, .ds_row = ds_row,
    .pack_t = pack_t, .dot = dot, .scale = scale_row, .cached = SIMD_NAME(attn_cached),
    .cached_rows = SIMD_NAME(attn_cached_rows),
};
