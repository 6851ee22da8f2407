/* attention_cached and attention_cached_rows (attention.h): decode queries
 * over a KV cache, one at a time or a prompt's several at a time.  Compiled
 * for both SIMD tables (kernels/simd.h) but written in 8-float vectors on
 * both: a query's rows are one head wide (64 values), and the kernels wait
 * on the cache's bytes, not on lanes; AVX-512's extra registers let a group
 * hold more queries.  Tails use simd_load8 / simd_store8, so any head size
 * works; exp is simd_math.h's. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/attention_impl.h"
#include "kernels/simd.h"

/* The 8 values from i of a cache block p, fp32 or bf16 widened (its bits are
 * an fp32's top half); lanes past rem read as 0 and touch no memory. */
SIMD_INLINE __m256 kv_load8(const void *p, bool bf16, size_t i, size_t rem)
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
SIMD_INLINE __m256 reduce8(const __m256 s[8])
{
    const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
    const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(s[4], s[5]), _mm256_hadd_ps(s[6], s[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                         _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/* The kernels below are inlined once per cache type and per whether hs is
 * a multiple of 8 (bf16 and whole constants), so that their addresses and
 * accumulators stay in registers; whole: every vector of a row is full. */

/* att[t] = scale (q . k[t]) for t < n, 8 rows at a time with no horizontal
 * sum per row; a short last block repeats row n-1 and stores only its own
 * lanes, so every row gets the same arithmetic.  Returns max_t att[t]. */
SIMD_INLINE float cached_scores(float *att, const float *q, const void *k, bool bf16, bool whole,
                                int n, int hs, float scale)
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
            const size_t rem = whole ? 8 : (size_t)(hs - c);
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

/* Columns c0 .. c0 + 8 nv - 1 (at most hs) of out = inv sum_t att[t] v[t],
 * nv <= 8 vectors held in registers while the rows stream past. */
SIMD_INLINE void values_columns(float *out, const float *att, const void *v, bool bf16,
                                bool whole, int n, int hs, int c0, int nv, float inv)
{
    __m256 acc[8];
    size_t rem[8];
    for (int j = 0; j < 8; j++) {
        acc[j] = _mm256_setzero_ps();
        rem[j] = j >= nv ? 0 : whole ? 8 : (size_t)(hs - c0 - 8 * j);
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

/* out = inv sum_t att[t] v[t], 64 columns at a time (8 a constant there). */
SIMD_INLINE void cached_values(float *out, const float *att, const void *v, bool bf16,
                               bool whole, int n, int hs, float inv)
{
    int c0 = 0;
    for (; c0 + 64 <= hs; c0 += 64)
        values_columns(out, att, v, bf16, whole, n, hs, c0, 8, inv);
    if (c0 < hs)
        values_columns(out, att, v, bf16, whole, n, hs, c0, (hs - c0 + 7) / 8, inv);
}

SIMD_INLINE void cached(float *out, const float *q, const void *k, const void *v, bool bf16,
                        bool whole, int n, int hs, float *att)
{
    const float mx = cached_scores(att, q, k, bf16, whole, n, hs, 1.0f / sqrtf((float)hs));
    cached_values(out, att, v, bf16, whole, n, hs, 1.0f / cached_exps(att, n, mx));
}

/* A prompt's queries QG at a time (2 on AVX2's 16 vector registers, 4 with
 * AVX-512's 32): query j of a group over keys 0..n+j-1, each key's row loaded
 * once for all of them.  Every score, exp and output gets cached()'s
 * arithmetic for that query: per key the same chains of lanes over c and
 * the same reduce8 tree (it sums each of its 8 inputs alike, whichever keys
 * they hold), the exps and their sum by cached_exps on the query's own keys,
 * per column the same chain over t. */
#ifdef SIMD_AVX512
enum { QG = 4 };
#else
enum { QG = 2 };
#endif
/* Full unrolling must come before scalar replacement, or gcc keeps the
 * accumulators in memory. */
#define UNROLL _Pragma("GCC unroll 8")

/* att[j][t] = scale (q_j . k[t]) for t < n + QG - 1 (past query j's own keys
 * too: computed and unused), 4 keys a block: acc[p][r] holds query 2p (r < 4)
 * or 2p + 1 (r >= 4) against key t + r % 4, so reduce8(acc[p])'s lanes 0-3
 * are the even query's scores, 4-7 the odd one's. */
SIMD_INLINE void scores_group(float *const att[QG], const float *q, size_t ldq, const void *k,
                              bool bf16, bool whole, int n, int hs, float scale)
{
    const int keys = n + QG - 1;
    for (int t = 0; t < keys; t += 4) {
        __m256 acc[QG / 2][8];
        size_t row[4];
        UNROLL for (int r = 0; r < 4; r++)
            row[r] = (size_t)(t + r < keys ? t + r : keys - 1) * hs;
        UNROLL for (int p = 0; p < QG / 2; p++)
            UNROLL for (int r = 0; r < 8; r++)
                acc[p][r] = _mm256_setzero_ps();
        for (int c = 0; c < hs; c += 8) {
            const size_t rem = whole ? 8 : (size_t)(hs - c);
            __m256 qv[QG];
            UNROLL for (int j = 0; j < QG; j++)
                qv[j] = simd_load8(q + j * ldq + c, rem);
            UNROLL for (int r = 0; r < 4; r++) {
                const __m256 kr = kv_load8(k, bf16, row[r] + c, rem);
                UNROLL for (int p = 0; p < QG / 2; p++) {
                    acc[p][r] = _mm256_fmadd_ps(qv[2 * p], kr, acc[p][r]);
                    acc[p][4 + r] = _mm256_fmadd_ps(qv[2 * p + 1], kr, acc[p][4 + r]);
                }
            }
        }
        const int m = keys - t < 4 ? keys - t : 4;
        UNROLL for (int p = 0; p < QG / 2; p++) {
            float lanes[8];
            _mm256_storeu_ps(lanes, _mm256_mul_ps(reduce8(acc[p]), _mm256_set1_ps(scale)));
            memcpy(att[2 * p] + t, lanes, (size_t)m * sizeof *lanes);
            memcpy(att[2 * p + 1] + t, lanes + 4, (size_t)m * sizeof *lanes);
        }
    }
}

/* max_t x[t] for t < n (lanes past n read as -inf, not simd_load8's 0) */
static float max_of(const float *x, int n)
{
    const __m256 none = _mm256_set1_ps(-INFINITY);
    __m256 mx = none;
    for (int t = 0; t < n; t += 8) {
        const size_t rem = (size_t)(n - t);
        const __m256 xt = simd_load8(x + t, rem);
        mx = _mm256_max_ps(mx, rem >= 8 ? xt
                                        : _mm256_blendv_ps(none, xt,
                                                           _mm256_castsi256_ps(simd_mask8(rem))));
    }
    return simd_hmax8(mx);
}

/* Columns c0 .. c0 + 8 nv - 1 (nv <= 4) of out_j = inv[j] sum_{t < n + j}
 * att[j][t] v[t] for the group's queries. */
SIMD_INLINE void values_group_columns(float *out, size_t ldo, float *const att[QG],
                                      const void *v, bool bf16, bool whole, int n, int hs,
                                      int c0, int nv, const float inv[QG])
{
    __m256 acc[QG][4];
    size_t rem[4];
    UNROLL for (int i = 0; i < 4; i++) {
        UNROLL for (int j = 0; j < QG; j++)
            acc[j][i] = _mm256_setzero_ps();
        rem[i] = i >= nv ? 0 : whole ? 8 : (size_t)(hs - c0 - 8 * i);
    }
    for (int t = 0; t < n; t++) {   /* every query's keys */
        const size_t at = (size_t)t * hs + c0;
        __m256 a[QG];
        UNROLL for (int j = 0; j < QG; j++)
            a[j] = _mm256_set1_ps(att[j][t]);
        UNROLL for (int i = 0; i < 4; i++)
            if (i < nv) {
                const __m256 vi = kv_load8(v, bf16, at + 8 * i, rem[i]);
                UNROLL for (int j = 0; j < QG; j++)
                    acc[j][i] = _mm256_fmadd_ps(a[j], vi, acc[j][i]);
            }
    }
    for (int t = n; t < n + QG - 1; t++)   /* the later queries' last keys */
        UNROLL for (int i = 0; i < 4; i++)
            if (i < nv) {
                const __m256 vi = kv_load8(v, bf16, (size_t)t * hs + c0 + 8 * i, rem[i]);
                UNROLL for (int j = 0; j < QG; j++)
                    if (t < n + j)
                        acc[j][i] = _mm256_fmadd_ps(_mm256_set1_ps(att[j][t]), vi, acc[j][i]);
            }
    UNROLL for (int j = 0; j < QG; j++)
        UNROLL for (int i = 0; i < 4; i++)
            if (i < nv)
                simd_store8(out + j * ldo + c0 + 8 * i, rem[i],
                            _mm256_mul_ps(acc[j][i], _mm256_set1_ps(inv[j])));
}

/* The group of QG queries from q (row stride ldq), the first over n keys. */
SIMD_INLINE void cached_group(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                              const void *v, bool bf16, bool whole, int n, int hs,
                              float *const att[QG])
{
    scores_group(att, q, ldq, k, bf16, whole, n, hs, 1.0f / sqrtf((float)hs));
    float inv[QG];
    for (int j = 0; j < QG; j++)
        inv[j] = 1.0f / cached_exps(att[j], n + j, max_of(att[j], n + j));
    int c0 = 0;
    for (; c0 + 32 <= hs; c0 += 32)
        values_group_columns(out, ldo, att, v, bf16, whole, n, hs, c0, 4, inv);
    if (c0 < hs)
        values_group_columns(out, ldo, att, v, bf16, whole, n, hs, c0, (hs - c0 + 7) / 8, inv);
}

SIMD_INLINE void cached_rows(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                             const void *v, bool bf16, bool whole, int n, int rows, int hs,
                             float *att)
{
    float *groups[QG];
    for (int j = 0; j < QG; j++)
        groups[j] = att + (size_t)j * (n + rows);
    int i = 0;
    for (; i + QG <= rows; i += QG)
        cached_group(out + i * ldo, ldo, q + i * ldq, ldq, k, v, bf16, whole, n + i, hs, groups);
    for (; i < rows; i++)
        cached(out + i * ldo, q + i * ldq, k, v, bf16, whole, n + i, hs, att);
}

void SIMD_NAME(attn_cached_rows)(float *out, size_t ldo, const float *q, size_t ldq,
                                 const void *k, const void *v, bool bf16, int n, int rows,
                                 int hs, float *att)
{
    if (hs % 8 == 0 && bf16)
        cached_rows(out, ldo, q, ldq, k, v, true, true, n, rows, hs, att);
    else if (hs % 8 == 0)
        cached_rows(out, ldo, q, ldq, k, v, false, true, n, rows, hs, att);
    else if (bf16)
        cached_rows(out, ldo, q, ldq, k, v, true, false, n, rows, hs, att);
    else
        cached_rows(out, ldo, q, ldq, k, v, false, false, n, rows, hs, att);
}

/* One query: attention_cached_rows' path for a single row (no group forms). */
void SIMD_NAME(attn_cached)(float *out, const float *q, const void *k, const void *v, bool bf16,
                            int n, int hs, float *att)
{
    SIMD_NAME(attn_cached_rows)(out, 0, q, 0, k, v, bf16, n, 1, hs, att);
}
