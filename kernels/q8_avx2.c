/* int8 tile loop for AVX2; contract in q8_impl.h, arithmetic in q8.h.
 *
 * A block is 8 outputs and one row m.  For each group, each output's 32
 * products go through the sign trick: maddubs wants unsigned x signed bytes,
 * so it gets |x| and w with x's sign moved onto it (vpsignb), whose products
 * are x*w.  With |x|, |w| <= 127 a pair sums to at most 32258: no int16
 * saturation, and madd against ones then gives exact int32.  A transposing
 * reduction turns the 8 per-output vectors into one vector holding the 8
 * group sums, so the float combination runs lane-per-output, in group order,
 * with the scalar path's operations: the results are bit-identical. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/q8_impl.h"
#include "kernels/simd_math.h"

enum { R = 8 };   /* outputs per block: one lane each */

/* Lane r of the result = sum of the 8 lanes of s[r]. */
static inline __m256i reduce8(const __m256i s[R])
{
    /* hadd(a, b) per 128-bit half: [a0+a1, a2+a3, b0+b1, b2+b3] */
    const __m256i s0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]),
                                            _mm256_hadd_epi32(s[2], s[3]));
    const __m256i s4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]),
                                            _mm256_hadd_epi32(s[6], s[7]));
    /* each half now holds rows 0-3 (or 4-7) summed over that half's lanes */
    return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                            _mm256_permute2x128_si256(s0123, s4567, 0x31));
}

/* 8 int32 partial sums of x*w over one group; ax = |x| */
static inline __m256i group_dot(__m256i ax, __m256i x, const int8_t *w)
{
    const __m256i sw = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)w), x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), _mm256_set1_epi16(1));
}

/* y[m][o0 .. o0+nvalid) from the 8 weight rows w[] (rows past OUT repeat the
 * last one; their lanes are not stored).  sidx: lane r = row r's offset in ws. */
static void block(const q8_args *a, int m, int o0, int nvalid, const int8_t *const w[R],
                  __m256i sidx)
{
    const int G = a->IN / Q8_GS;
    const int8_t *x = a->xq + (size_t)m * a->IN;
    const float *xs = a->xs + (size_t)m * G, *ws = a->ws + (size_t)o0 * G;
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < G; g++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + g * Q8_GS));
        const __m256i ax = _mm256_abs_epi8(xv);
        __m256i s[R];
        for (int r = 0; r < R; r++)
            s[r] = group_dot(ax, xv, w[r] + g * Q8_GS);
        const __m256 d = _mm256_mul_ps(_mm256_set1_ps(xs[g]), _mm256_i32gather_ps(ws + g, sidx, 4));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(reduce8(s))));
    }
    float *y = a->y + (size_t)m * a->OUT + o0;
    if (a->bias)
        acc = _mm256_add_ps(acc, simd_load8(a->bias + o0, (size_t)nvalid));
    simd_store8(y, (size_t)nvalid, acc);
}

static void tile(const q8_args *a, int m0, int m1, int o0, int o1)
{
    const int G = a->IN / Q8_GS;
    for (int ob = o0; ob < o1; ob += R) {
        const int nvalid = o1 - ob < R ? o1 - ob : R;
        const int8_t *w[R];
        int off[R];
        for (int r = 0; r < R; r++) {
            const int rr = r < nvalid ? r : nvalid - 1;
            w[r] = a->wq + (size_t)(ob + rr) * a->IN;
            off[r] = rr * G;
        }
        const __m256i sidx = _mm256_loadu_si256((const __m256i *)off);
        for (int m = m0; m < m1; m++)   /* the 8 weight rows stay in L1 across m */
            block(a, m, ob, nvalid, w, sidx);
    }
}

/* q8.h's quantization of one group per iteration: four vectors of 8 */
static void quantize(int8_t *q, float *scales, const float *x, size_t groups, bool half)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    /* packs interleave 128-bit lanes: this puts the 8 groups of 4 bytes back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t g = 0; g < groups; g++, x += Q8_GS, q += Q8_GS) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
        const float scale = q8_group_scale(amax, half);
        scales[g] = scale;
        if (scale == 0.0f) {
            _mm256_storeu_si256((__m256i *)q, _mm256_setzero_si256());
            continue;
        }
        const __m256 d = _mm256_set1_ps(scale);
        __m256i i[4];
        for (int k = 0; k < 4; k++)   /* clamped before the conversion, which overflows past 2^31 */
            i[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_div_ps(v[k], d), lo), hi));
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]),
                                             _mm256_packs_epi32(i[2], i[3]));
        _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(b, order));
    }
}

const q8_ops q8_ops_avx2 = {tile, quantize};

/* The decode layout (q8.h): per block of 8 outputs and group, 8 chunks of 32
 * bytes against 4 broadcast bytes of x.  vpsignb moves x's sign onto the
 * weights (and zeroes them where x is 0), maddubs multiplies by |x| (from
 * aux), madd sums the pairs into exact int32.  Blocks go four at a time,
 * one from each quarter of the range: four streams from memory keep more
 * lines in flight than one (bench_q8 compares them), and the four share
 * each broadcast of x. */
enum { DB = 8, DGROUP = Q8_DECODE_GROUP(DB), NS = 4 /* streams */ };

static inline __attribute__((always_inline)) void
decode_blocks(float *y, const int8_t *xq, const float *xs, const int8_t *xabs, const uint8_t *p[NS],
              const float *bias, int G, const int o[NS], const int n[NS], int nblk)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NS];
    for (int b = 0; b < NS; b++)
        acc[b] = _mm256_setzero_ps();
    for (int g = 0; g < G; g++) {
        const int8_t *x = xq + (size_t)g * Q8_GS, *ax = xabs + (size_t)g * Q8_GS;
        __m256i s[NS];
        for (int b = 0; b < NS; b++)
            s[b] = _mm256_setzero_si256();
        for (int k = 0; k < 8; k++) {
            int32_t xk, ak;   /* 4 bytes of x and of |x|, broadcast */
            memcpy(&xk, x + 4 * k, 4);
            memcpy(&ak, ax + 4 * k, 4);
            const __m256i xb = _mm256_set1_epi32(xk), ab = _mm256_set1_epi32(ak);
            for (int b = 0; b < nblk; b++) {
                const __m256i w = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(p[b] + (size_t)g * DGROUP + 32 * k));
                s[b] = _mm256_add_epi32(
                    s[b], _mm256_madd_epi16(_mm256_maddubs_epi16(ab, _mm256_sign_epi8(w, xb)), ones));
            }
        }
        for (int b = 0; b < nblk; b++) {
            const __m128i h = _mm_loadu_si128(   /* the block's fp16 scales of group g */
                (const __m128i *)(const void *)(p[b] + (size_t)g * DGROUP + Q8_DECODE_WEIGHTS(DB)));
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(xs[g]), _mm256_cvtph_ps(h));
            acc[b] = _mm256_add_ps(acc[b], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s[b])));
        }
    }
    for (int b = 0; b < nblk; b++) {
        if (bias)
            acc[b] = _mm256_add_ps(acc[b], simd_load8(bias + o[b], (size_t)n[b]));
        simd_store8(y + o[b], (size_t)n[b], acc[b]);
    }
}

void q8_avx2_matvec_impl(float *y, const int8_t *xq, const float *xs, const int8_t *xabs,
                         const void *packed, const float *bias, int IN, int o0, int o1)
{
    const int G = IN / Q8_GS, blocks = (o1 - o0 + DB - 1) / DB, per = (blocks + NS - 1) / NS;
    for (int i = 0; i < per; i++) {
        int o[NS] = {0}, n[NS] = {0}, nblk = 0;
        const uint8_t *p[NS] = {0};
        for (int b = 0; b < NS && o0 + (i + b * per) * DB < o1; b++, nblk++) {
            o[b] = o0 + (i + b * per) * DB;
            n[b] = o1 - o[b] < DB ? o1 - o[b] : DB;
            p[b] = (const uint8_t *)packed + (size_t)(o[b] / DB) * G * DGROUP;
        }
        switch (nblk) {
        case 4: decode_blocks(y, xq, xs, xabs, p, bias, G, o, n, 4); break;
        case 3: decode_blocks(y, xq, xs, xabs, p, bias, G, o, n, 3); break;
        case 2: decode_blocks(y, xq, xs, xabs, p, bias, G, o, n, 2); break;
        default: decode_blocks(y, xq, xs, xabs, p, bias, G, o, n, 1); break;
        }
    }
}
