/* int8 tile loop for AVX-512; contract in q8_impl.h, arithmetic in q8.h.
 *
 * This file is compiled twice: as itself with the AVX-512 flags (the table
 * q8_ops_avx512, products by vpmaddubsw + vpmaddwd) and, included from
 * q8_vnni.c, with AVX512-VNNI as well (q8_ops_vnni, one vpdpbusd).
 *
 * A block is 8 outputs and one row m, and a step is two groups: 64 bytes of
 * each of the 8 weight rows.  Both instructions multiply unsigned by signed
 * bytes, so they get |x| and w with x's sign moved onto it (AVX-512 has no
 * vpsignb: a masked 0 - w where x < 0), whose products are x*w.  With |x|,
 * |w| <= 127 nothing saturates, so the group sums are exact int32.  A
 * transposing reduction turns the 8 per-output vectors into one holding
 * [group g: outputs 0-7 | group g+1: outputs 0-7]; the float combination then
 * adds group g and then group g+1 to a per-output accumulator with the scalar
 * path's operations, so the results are bit-identical.  An odd last group
 * runs the same step on half-vectors (masked loads, the upper half zero). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/q8_impl.h"
#include "kernels/simd_math.h"

#ifdef __AVX512VNNI__
#define Q8_OPS q8_ops_vnni
#else
#define Q8_OPS q8_ops_avx512
#endif

enum { R = 8 };   /* outputs per block */

typedef struct {            /* what one block reads besides the activations */
    const int8_t *w[R];     /* weight rows (rows past OUT repeat the last one) */
    const float *ws;        /* scales of the block's first row */
    __m512i sidx;           /* lane r, r+8: offset of row r's scale in ws (+1 for group g+1) */
} q8_block;

/* 16 int32 partial sums of x*w over two groups; ax = |x|, sw = w * sign(x) */
static inline __m512i dot64(__m512i ax, __m512i sw)
{
#ifdef __AVX512VNNI__
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sw);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(ax, sw), _mm512_set1_epi16(1));
#endif
}

/* per 128-bit chunk: [a0+a2, b0+b2, a1+a3, b1+b3] */
static inline __m512i pair_sum(__m512i a, __m512i b)
{
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}

/* s[r] = [group g: 8 lanes | group g+1: 8 lanes] of output r ->
 * lane r = group g sum of output r, lane 8 + r = group g+1 sum. */
static inline __m512i reduce16(const __m512i s[R])
{
    /* two levels leave each chunk with its 4 lanes summed, outputs in order 0 2 1 3 */
    const __m512i lo = pair_sum(pair_sum(s[0], s[1]), pair_sum(s[2], s[3]));
    const __m512i hi = pair_sum(pair_sum(s[4], s[5]), pair_sum(s[6], s[7]));
    /* chunks 0+1 are group g, 2+3 group g+1: add them pairwise */
    const __m512i t = _mm512_add_epi32(_mm512_shuffle_i32x4(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
    /* t = [g: 0 2 1 3 | g+1: 0 2 1 3 | g: 4 6 5 7 | g+1: 4 6 5 7] */
    const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    return _mm512_permutexvar_epi32(order, t);
}

/* Groups g and g+1 (tail: group g alone) of one row x into acc. */
static inline __attribute__((always_inline)) __m256
step(__m256 acc, const q8_block *b, const int8_t *x, const float *xs, int g, bool tail)
{
    const __mmask64 k = tail ? 0xFFFFFFFFull : ~0ull;
    const size_t at = (size_t)g * Q8_GS;
    const __m512i xv = tail ? _mm512_maskz_loadu_epi8(k, x + at) : _mm512_loadu_si512(x + at);
    const __m512i ax = _mm512_abs_epi8(xv), zero = _mm512_setzero_si512();
    const __mmask64 neg = _mm512_movepi8_mask(xv);
    __m512i s[R];
    for (int r = 0; r < R; r++) {
        const __m512i wv = tail ? _mm512_maskz_loadu_epi8(k, b->w[r] + at)
                                : _mm512_loadu_si512(b->w[r] + at);
        s[r] = dot64(ax, _mm512_mask_sub_epi8(wv, neg, zero, wv));
    }
    const __m512i isum = reduce16(s);
    /* scale pairs [xs[g] x8 | xs[g+1] x8] * [ws of rows 0-7 at g | at g+1] */
    const __m512 sc = tail ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFF, b->sidx,
                                                      b->ws + g, 4)
                           : _mm512_i32gather_ps(b->sidx, b->ws + g, 4);
    const __m512 xsv = _mm512_insertf32x8(_mm512_set1_ps(xs[g]),
                                          _mm256_set1_ps(tail ? 0.0f : xs[g + 1]), 1);
    const __m512 p = _mm512_mul_ps(_mm512_mul_ps(xsv, sc), _mm512_cvtepi32_ps(isum));
    acc = _mm256_add_ps(acc, _mm512_castps512_ps256(p));
    return tail ? acc : _mm256_add_ps(acc, _mm512_extractf32x8_ps(p, 1));
}

static void block(const q8_args *a, const q8_block *b, int m, int o0, int nvalid)
{
    const int G = a->IN / Q8_GS;
    const int8_t *x = a->xq + (size_t)m * a->IN;
    const float *xs = a->xs + (size_t)m * G;
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 2 <= G; g += 2)
        acc = step(acc, b, x, xs, g, false);
    if (g < G)
        acc = step(acc, b, x, xs, g, true);
    const __mmask8 k = (__mmask8)((1u << nvalid) - 1);
    if (a->bias)
        acc = _mm256_add_ps(acc, _mm256_maskz_loadu_ps(k, a->bias + o0));
    _mm256_mask_storeu_ps(a->y + (size_t)m * a->OUT + o0, k, acc);
}

static void tile(const q8_args *a, int m0, int m1, int o0, int o1)
{
    const int G = a->IN / Q8_GS;
    for (int ob = o0; ob < o1; ob += R) {
        const int nvalid = o1 - ob < R ? o1 - ob : R;
        q8_block b = {.ws = a->ws + (size_t)ob * G};
        int off[2 * R];
        for (int r = 0; r < R; r++) {
            const int rr = r < nvalid ? r : nvalid - 1;
            b.w[r] = a->wq + (size_t)(ob + rr) * a->IN;
            off[r] = rr * G;
            off[R + r] = rr * G + 1;
        }
        b.sidx = _mm512_loadu_si512(off);
        for (int m = m0; m < m1; m++)   /* the 8 weight rows stay in L1 across m */
            block(a, &b, m, ob, nvalid);
    }
}

/* q8.h's quantization of one group per iteration: two vectors of 16 */
static void quantize(int8_t *q, float *scales, const float *x, size_t groups, bool half)
{
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (size_t g = 0; g < groups; g++, x += Q8_GS, q += Q8_GS) {
        const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        const float scale = q8_group_scale(amax, half);
        scales[g] = scale;
        if (scale == 0.0f) {
            _mm256_storeu_si256((__m256i *)q, _mm256_setzero_si256());
            continue;
        }
        const __m512 d = _mm512_set1_ps(scale);
        for (int h = 0; h < 2; h++) {   /* clamped before the conversion, which overflows past 2^31 */
            const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(h ? x1 : x0, d), lo), hi);
            _mm_storeu_si128((__m128i *)(q + 16 * h), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
        }
    }
}

const q8_ops Q8_OPS = {tile, quantize};

#ifdef __AVX512VNNI__
/* The decode layout (q8.h): per block of 16 outputs and group, 8 vpdpbusd of
 * 64 bytes of offset weights against 4 broadcast bytes of x, in two chains. */
void q8_vnni_matvec_impl(float *y, const int8_t *xq, const float *xs, const int32_t *xsum,
                         const void *packed, const float *bias, int IN, int o0, int o1)
{
    enum { B = 16, GROUP = Q8_DECODE_GROUP(B) };
    const int G = IN / Q8_GS;
    for (int o = o0; o < o1; o += B) {
        const uint8_t *p = (const uint8_t *)packed + (size_t)(o / B) * G * GROUP;
        __m512 acc = _mm512_setzero_ps();
        for (int g = 0; g < G; g++, p += GROUP) {
            const int8_t *x = xq + (size_t)g * Q8_GS;
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int k = 0; k < 8; k += 2) {
                int32_t x0, x1;   /* 4 bytes of x each, broadcast */
                memcpy(&x0, x + 4 * k, 4);
                memcpy(&x1, x + 4 * k + 4, 4);
                s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(p + 64 * k), _mm512_set1_epi32(x0));
                s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(p + 64 * k + 64),
                                         _mm512_set1_epi32(x1));
            }
            const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1),
                                                  _mm512_set1_epi32(xsum[g]));
            const __m256i h =
                _mm256_loadu_si256((const __m256i *)(const void *)(p + Q8_DECODE_WEIGHTS(B)));
            const __m512 d = _mm512_mul_ps(_mm512_set1_ps(xs[g]), _mm512_cvtph_ps(h));
            acc = _mm512_add_ps(acc, _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum)));
        }
        const int n = o1 - o < B ? o1 - o : B;
        const __mmask16 k = (__mmask16)((1u << n) - 1);
        if (bias)
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(k, bias + o));
        _mm512_mask_storeu_ps(y + o, k, acc);
    }
}
#endif
