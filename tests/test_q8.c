/* q8: int8 quantization and the int8 matrix product.
 *
 * - quantize/dequantize: scale = max|x|/127 exactly, |q| <= 127 with 127 at
 *   the group's largest value, round-trip error <= scale/2 (plus float
 *   rounding); zero groups give scale 0 and q = 0;
 * - weights' scales: q8_half_ceil is the smallest fp16 value at or above its
 *   argument, and quantizing with it stays within half a step, never -128;
 * - q8_pack_weights quantizes each column of W exactly as q8_quantize_weights
 *   (fp16 scales) would;
 * - every int8 path this CPU runs is bit-identical to the scalar reference
 *   for M in {1, 3, 17}, IN in {32, 384, 768, 1536}, OUT in {1, 33, 384},
 *   with and without bias, on random int8 data, and writes nothing past y;
 *   the largest group sums (+-32*127*127) come out exact on every path;
 * - the product against a double-precision product of the dequantized values
 *   (tight: float rounding only) and against the unquantized fp32 product
 *   (loose: ~1% relative error in norm);
 * - dispatch: ISA_AVX512 means VNNI where the CPU has it, the public entry
 *   point equals the active path, and the thread count changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/convert.h"
#include "kernels/q8.h"
#include "tests/test_util.h"

#define GUARD 12345.0f
enum { NGUARD = 24 };   /* guard floats past y: more than one 8-output block */

/* IN = 96 is an odd number of groups past a whole step: the AVX-512 tile
 * loops take two groups a step and end an odd count with a half step, which
 * IN = 32 (one group) runs only at g = 0. */
/* OUT 2 and 257: the vocabularies and tails of users' configs; IN 160 and
 * 224 (n_embd 160, 4 x 56): an odd number of groups past two steps. */
static const int Ms[] = {1, 3, 17}, INs[] = {32, 96, 160, 224, 384, 768, 1536},
                 OUTs[] = {1, 2, 33, 257, 384};
#define COUNT(a) (int)(sizeof a / sizeof a[0])

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

/* Uniform in [-127, 127]: the full range the kernels accept. */
static void fill_i8(int8_t *q, size_t n, uint64_t seed)
{
    uint64_t s = seed * 2654435761ULL + 7;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        q[i] = (int8_t)((int)((s >> 33) % 255) - 127);
    }
}

/* Scales in (0, 0.05), every 7th one zero (a zero group). */
static void fill_scales(float *s, size_t n, uint64_t seed)
{
    test_fill(s, n, seed, 0.025f);
    for (size_t i = 0; i < n; i++)
        s[i] = i % 7 == 3 ? 0.0f : s[i] + 0.025f;
}

static int same_bits(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f32_bits(got[i]) != f32_bits(want[i])) {
            fprintf(stderr, "%s: element %zu: got %.9g (0x%08x) want %.9g (0x%08x)\n", what, i,
                    got[i], f32_bits(got[i]), want[i], f32_bits(want[i]));
            return 0;
        }
    return 1;
}

static int guards_intact(const float *y, size_t n)
{
    for (size_t i = n; i < n + NGUARD; i++)
        if (y[i] != GUARD) {
            fprintf(stderr, "guard %zu past y overwritten: %g\n", i - n, y[i]);
            return 0;
        }
    return 1;
}

static float *alloc_y(size_t n)
{
    float *y = xmalloc((n + NGUARD) * sizeof *y);
    for (size_t i = 0; i < n + NGUARD; i++)
        y[i] = GUARD;
    return y;
}

/* ---- quantization ---- */

/* Groups spanning 2^-12 .. 2^7 in magnitude. */
static void fill_groups(float *x, size_t n, uint64_t seed)
{
    test_fill(x, n, seed, 1.0f);
    for (size_t i = 0; i < n; i++)
        x[i] = ldexpf(x[i], (int)(i / Q8_GS % 20) - 12);
}

static void check_group(const float *x, const int8_t *q, float scale, const float *back)
{
    float amax = 0.0f;
    int qmax = 0;
    for (int k = 0; k < Q8_GS; k++) {
        amax = fmaxf(amax, fabsf(x[k]));
        qmax = abs(q[k]) > qmax ? abs(q[k]) : qmax;
        assert_true(q[k] >= -127 && q[k] <= 127);
        assert_true(f32_bits(back[k]) == f32_bits((float)q[k] * scale));
        /* rounding to nearest errs by scale/2; x/scale and q*scale add a few ulps of 127 */
        const double err = fabs((double)x[k] - back[k]), bound = scale * (0.5 + 1e-4);
        if (!(err <= bound))
            fail_msg("x=%.9g q=%d scale=%.9g: error %.3g > %.3g", x[k], q[k], scale, err, bound);
    }
    assert_true(f32_bits(scale) == f32_bits(amax / 127.0f));
    assert_int_equal(qmax, amax > 0 ? 127 : 0);
}

static void test_quantize_round_trip(void **state)
{
    const size_t n = (size_t)Q8_GS * 2049;   /* over the parallel threshold */
    float *x = xmalloc(n * sizeof *x), *s = xmalloc(n / Q8_GS * sizeof *s),
          *back = xmalloc(n * sizeof *back);
    int8_t *q = xmalloc(n);
    fill_groups(x, n, 1);
    q8_quantize(q, s, x, n);
    q8_dequantize(back, q, s, n);
    for (size_t g = 0; g < n / Q8_GS; g++)
        check_group(x + g * Q8_GS, q + g * Q8_GS, s[g], back + g * Q8_GS);
    free(x), free(s), free(back), free(q);
}

/* All-zero groups (signed zeros too) give scale 0 and q = 0; a lone tiny
 * value next to zeros still becomes +-127; a group below 127 * FLT_TRUE_MIN
 * has a scale that underflows to 0 and quantizes to zeros (documented). */
static void test_quantize_zero_groups(void **state)
{
    enum { G = 5, N = G * Q8_GS };
    float x[N] = {0}, s[G], back[N];
    int8_t q[N];
    for (int k = 0; k < Q8_GS; k++)
        x[Q8_GS + k] = k % 2 ? -0.0f : 0.0f;
    test_fill(x + 2 * Q8_GS, Q8_GS, 3, 2.0f);
    x[3 * Q8_GS + 17] = -1e-30f;
    x[4 * Q8_GS + 5] = 1e-44f;
    memset(q, 99, sizeof q);
    q8_quantize(q, s, x, N);
    q8_dequantize(back, q, s, N);
    for (int g = 0; g < G; g++)
        print_message("group %d: scale %g\n", g, s[g]);
    const int zero_groups[] = {0, 1, 4};
    for (int i = 0; i < 3; i++) {
        const int g = zero_groups[i];
        assert_true(s[g] == 0.0f);
        for (int k = 0; k < Q8_GS; k++) {
            assert_int_equal(q[g * Q8_GS + k], 0);
            assert_true(back[g * Q8_GS + k] == 0.0f);
        }
    }
    check_group(x + 2 * Q8_GS, q + 2 * Q8_GS, s[2], back + 2 * Q8_GS);
    assert_true(s[2] > 0.0f);
    assert_int_equal(q[3 * Q8_GS + 17], -127);
    check_group(x + 3 * Q8_GS, q + 3 * Q8_GS, s[3], back + 3 * Q8_GS);
}

/* Every path's quantization is the scalar one's, bit for bit: groups over 20
 * binades, zero and signed-zero groups, subnormal ones (a scale that loses
 * precision, or underflows to 0), values exactly halfway between two steps
 * (ties go to even), and weights past Q8_WEIGHT_MAX, whose fp16 scale stops
 * at its largest and whose values clip to +-127 with their sign (x / scale
 * passes what an int32, then what a long, holds). */
static void test_quantize_paths_match_scalar(void **state)
{
    const size_t n = (size_t)Q8_GS * 2100;
    float *x = xmalloc(n * sizeof *x), *s_ref = xmalloc(n / Q8_GS * sizeof(float)),
          *s = xmalloc(n / Q8_GS * sizeof(float));
    int8_t *q_ref = xmalloc(n), *q = xmalloc(n);
    fill_groups(x, n, 7);
    for (int k = 0; k < Q8_GS; k++) {
        x[k] = 0.0f;                                  /* group 0: zeros */
        x[Q8_GS + k] = k % 2 ? -0.0f : 0.0f;          /* group 1: signed zeros */
        x[2 * Q8_GS + k] = (k - 16) * 1e-41f;         /* group 2: subnormal scale */
        x[3 * Q8_GS + k] = k ? (k - 16) + 0.5f : 127.0f;   /* group 3: scale 1, halves */
    }
    x[4 * Q8_GS + 3] = 1e-44f;                        /* group 4: the scale underflows */
    for (int k = 0; k < Q8_GS; k++)                   /* group 5: 2^24 .. 2^117, signs alternate */
        x[5 * Q8_GS + k] = (k % 2 ? -1.0f : 1.0f) * ldexpf(1.0f, 24 + 3 * k);
    for (int half = 1; half >= 0; half--) {   /* the weights' fp16 scales, then fp32 */
        q8_quantize_path(Q8_SCALAR, q_ref, s_ref, x, n, half);
        for (int k = 0; half && k < Q8_GS; k++)
            assert_int_equal(q_ref[5 * Q8_GS + k], k % 2 ? -127 : 127);
        for (int p = Q8_AVX2; p < Q8_PATH_COUNT; p++) {
            if (!q8_path_supported((q8_path)p))
                continue;
            memset(q, 99, n);
            q8_quantize_path((q8_path)p, q, s, x, n, half);
            if (memcmp(q, q_ref, n) != 0 || memcmp(s, s_ref, n / Q8_GS * sizeof(float)) != 0)
                fail_msg("q8_quantize (%s scales) on path %s differs from scalar",
                         half ? "fp16" : "fp32", q8_path_name((q8_path)p));
        }
    }
    assert_int_equal(q_ref[3 * Q8_GS + 1], -14);   /* -14.5 -> -14, -13.5 -> -14 */
    assert_int_equal(q_ref[3 * Q8_GS + 2], -14);
    assert_int_equal(q_ref[3 * Q8_GS + 4], -12);   /* -11.5 -> -12 */
    free(x), free(s_ref), free(s), free(q_ref), free(q);
}

/* q8_half_ceil: the smallest fp16 value at or above s, at known points and on
 * random values in every binade fp16 has (normal and subnormal); and weights
 * quantized with it round-trip within half a step, never to -128. */
static float half_round_trip(float s)
{
    return f16_to_f32_one(f32_to_f16_one(s));
}

static float half_below(float h)   /* the fp16 value below h > 0, an fp16 value */
{
    return f16_to_f32_one((uint16_t)(f32_to_f16_one(h) - 1));
}

static void test_half_scales(void **state)
{
    const float ulp24 = ldexpf(1.0f, -24);
    assert_true(q8_half_ceil(0.0f) == 0.0f);
    assert_true(q8_half_ceil(1.0f) == 1.0f);
    assert_true(q8_half_ceil(nextafterf(1.0f, 2.0f)) == 1.0f + ldexpf(1.0f, -10));
    assert_true(q8_half_ceil(nextafterf(1.0f, 0.0f)) == 1.0f);
    assert_true(q8_half_ceil(1e-9f) == ulp24);           /* below fp16's smallest subnormal */
    assert_true(q8_half_ceil(3.0f * ulp24 - 1e-12f) == 3.0f * ulp24);
    assert_true(q8_half_ceil(65504.0f) == 65504.0f);
    assert_true(q8_half_ceil(1e6f) == 65504.0f);
    uint64_t seed = 5;
    for (int i = 0; i < 100000; i++) {
        const float s = ldexpf(1.0f + test_randf(&seed) * 0.5f + 0.5f, i % 44 - 28);
        if (s > Q8_SCALE_MAX)
            continue;
        const float h = q8_half_ceil(s);
        if (!(h >= s && half_round_trip(h) == h && half_below(h) < s))
            fail_msg("q8_half_ceil(%.9g) = %.9g", s, h);
    }
    enum { N = Q8_GS * 64 };
    float x[N], s[N / Q8_GS];
    int8_t q[N];
    fill_groups(x, N, 9);
    q8_quantize_path(Q8_SCALAR, q, s, x, N, true);
    for (int i = 0; i < N; i++)
        if (q[i] == -128 || fabsf(x[i] - q[i] * s[i / Q8_GS]) > 0.5f * s[i / Q8_GS])
            fail_msg("value %d: %.9g -> %d x %.9g", i, x[i], q[i], s[i / Q8_GS]);
}

/* Column o of w through q8_pack_weights == column o through q8_quantize with
 * fp16 scales. */
static void check_pack(int in, int out)
{
    const int G = in / Q8_GS;
    float *w = xmalloc((size_t)in * out * sizeof *w), *ws = xmalloc((size_t)out * G * sizeof *ws);
    float *col = xmalloc(in * sizeof *col), *cs = xmalloc(G * sizeof *cs);
    int8_t *wq = xmalloc((size_t)in * out), *cq = xmalloc(in);
    fill_groups(w, (size_t)in * out, 4);
    q8_pack_weights(wq, ws, w, in, out);
    for (int o = 0; o < out; o++) {
        for (int k = 0; k < in; k++)
            col[k] = w[(size_t)k * out + o];
        q8_quantize_weights(cq, cs, col, in);
        assert_memory_equal(wq + (size_t)o * in, cq, in);
        assert_memory_equal(ws + (size_t)o * G, cs, G * sizeof *cs);
    }
    free(w), free(ws), free(col), free(cs), free(wq), free(cq);
}

static void test_pack_weights(void **state)
{
    check_pack(96, 37);    /* serial, a partial column block */
    check_pack(384, 100);  /* threaded */
}

/* ---- the product: every path against the scalar reference ---- */

typedef struct {
    int M, IN, OUT;
    int8_t *xq, *wq;
    float *xs, *ws, *bias;
} problem;

static problem make_problem(int M, int IN, int OUT, uint64_t seed)
{
    const int G = IN / Q8_GS;
    problem p = {M, IN, OUT, xmalloc((size_t)M * IN), xmalloc((size_t)OUT * IN),
                 xmalloc((size_t)M * G * sizeof(float)), xmalloc((size_t)OUT * G * sizeof(float)),
                 xmalloc((size_t)OUT * sizeof(float))};
    fill_i8(p.xq, (size_t)M * IN, seed);
    fill_i8(p.wq, (size_t)OUT * IN, seed + 1);
    fill_scales(p.xs, (size_t)M * G, seed + 2);
    fill_scales(p.ws, (size_t)OUT * G, seed + 3);
    for (size_t i = 0; i < (size_t)OUT * G; i++)   /* weights' scales are fp16 values */
        p.ws[i] = q8_half_ceil(p.ws[i]);
    test_fill(p.bias, OUT, seed + 4, 1.0f);
    return p;
}

static void free_problem(problem *p)
{
    free(p->xq), free(p->wq), free(p->xs), free(p->ws), free(p->bias);
}

static void run_path(q8_path path, float *y, const problem *p, bool bias)
{
    q8_matmul_path(path, y, p->xq, p->xs, p->wq, p->ws, bias ? p->bias : NULL, p->M, p->IN,
                   p->OUT);
}

/* Every supported SIMD path vs scalar on one problem; returns the paths checked. */
static int compare_paths(const problem *p, bool bias)
{
    const size_t n = (size_t)p->M * p->OUT;
    float *want = alloc_y(n), *got = alloc_y(n);
    int checked = 0;
    run_path(Q8_SCALAR, want, p, bias);
    assert_true(guards_intact(want, n));
    for (q8_path path = Q8_AVX2; path < Q8_PATH_COUNT; path++) {
        if (!q8_path_supported(path))
            continue;
        char what[96];
        snprintf(what, sizeof what, "%s M=%d IN=%d OUT=%d bias=%d", q8_path_name(path), p->M,
                 p->IN, p->OUT, bias);
        for (size_t i = 0; i < n; i++)
            got[i] = GUARD;
        run_path(path, got, p, bias);
        if (!same_bits(what, got, want, n) || !guards_intact(got, n))
            fail_msg("%s differs from scalar", what);
        checked++;
    }
    free(want), free(got);
    return checked;
}

static void test_paths_match_scalar(void **state)
{
    int checked = 0;
    for (int i = 0; i < COUNT(Ms); i++)
        for (int j = 0; j < COUNT(INs); j++)
            for (int k = 0; k < COUNT(OUTs); k++) {
                problem p = make_problem(Ms[i], INs[j], OUTs[k], 100 + 10 * (uint64_t)(i + j + k));
                checked += compare_paths(&p, (i + j + k) % 2 == 0);
                checked += compare_paths(&p, (i + j + k) % 2 == 1);
                free_problem(&p);
            }
    for (q8_path path = Q8_AVX2; path < Q8_PATH_COUNT; path++) {
        if (q8_path_supported(path))
            print_message("%s: bit-identical to scalar\n", q8_path_name(path));
        else
            printf("SKIP q8 %s path: this CPU cannot run it\n", q8_path_name(path));
    }
    print_message("%d path x shape comparisons\n", checked);
}

/* x and w all +-127: every group sum is +-32*127*127 = +-516128, the largest
 * there is (maddubs would saturate on it without the sign trick's bounds).
 * Power-of-two scales make the exact answer representable in float. */
static void test_extreme_sums_exact(void **state)
{
    enum { M = 2, IN = 1536, OUT = 19, G = IN / Q8_GS };
    problem p = make_problem(M, IN, OUT, 7);
    memset(p.xq, -127, (size_t)M * IN);
    memset(p.xq + IN, 127, IN);   /* row 1: positive x */
    for (int o = 0; o < OUT; o++)
        memset(p.wq + (size_t)o * IN, o % 2 ? 127 : -127, IN);
    for (int i = 0; i < M * G; i++)
        p.xs[i] = 0.125f;
    for (int i = 0; i < OUT * G; i++)
        p.ws[i] = 0.0078125f;
    float y[M * OUT];
    for (q8_path path = Q8_SCALAR; path < Q8_PATH_COUNT; path++) {
        if (!q8_path_supported(path))
            continue;
        run_path(path, y, &p, false);
        for (int m = 0; m < M; m++)
            for (int o = 0; o < OUT; o++) {
                const int sign = (m == 1) == (o % 2 == 1) ? 1 : -1;
                const float want = (float)(sign * 516128.0 * G * 0.125 * 0.0078125);
                if (y[m * OUT + o] != want)
                    fail_msg("%s: y[%d][%d] = %.9g, want %.9g", q8_path_name(path), m, o,
                             y[m * OUT + o], want);
            }
    }
    free_problem(&p);
}

/* ---- the product against float references ---- */

/* |y - exact| <= (G + 3) u * sum_g |term_g| + u |bias|, u = 2^-24: one
 * rounding in xs*ws, one in the product with the group sum, G - 1 in the
 * accumulation, one in the bias add.  The exact value is computed in double
 * from the dequantized operands (each q*scale is exact in double). */
static void test_matmul_vs_double(void **state)
{
    enum { M = 17, IN = 768, OUT = 33, G = IN / Q8_GS };
    problem p = make_problem(M, IN, OUT, 11);
    float *y = alloc_y((size_t)M * OUT);
    q8_matmul(y, p.xq, p.xs, p.wq, p.ws, p.bias, M, IN, OUT);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int o = 0; o < OUT; o++) {
            double exact = p.bias[o], mag = fabs(p.bias[o]);
            for (int g = 0; g < G; g++) {
                double term = 0;
                for (int k = g * Q8_GS; k < (g + 1) * Q8_GS; k++)
                    term += ((double)p.xq[m * IN + k] * p.xs[m * G + g]) *
                            ((double)p.wq[o * IN + k] * p.ws[o * G + g]);
                exact += term, mag += fabs(term);
            }
            const double err = fabs(y[m * OUT + o] - exact), tol = (G + 4) * 0x1p-24 * mag;
            worst = fmax(worst, err / tol);
            if (!(err <= tol))
                fail_msg("y[%d][%d] = %.9g, exact %.9g: error %.3g > %.3g", m, o,
                         y[m * OUT + o], exact, err, tol);
        }
    print_message("worst error %.3f of the rounding bound\n", worst);
    assert_true(guards_intact(y, (size_t)M * OUT));
    free(y);
    free_problem(&p);
}

/* Quantizing uniform data costs ~0.6% relative error (rms noise scale/sqrt(12)
 * per operand); the bound is 1% in the 2-norm over all outputs. */
static void test_matmul_vs_fp32(void **state)
{
    enum { M = 17, IN = 768, OUT = 384, G = IN / Q8_GS };
    float *x = xmalloc(sizeof(float) * M * IN), *w = xmalloc(sizeof(float) * IN * OUT);
    float *bias = xmalloc(sizeof(float) * OUT), *y = alloc_y((size_t)M * OUT);
    float *xs = xmalloc(sizeof(float) * M * G), *ws = xmalloc(sizeof(float) * OUT * G);
    int8_t *xq = xmalloc((size_t)M * IN), *wq = xmalloc((size_t)OUT * IN);
    test_fill(x, (size_t)M * IN, 21, 3.0f);
    test_fill(w, (size_t)IN * OUT, 22, 0.05f);
    test_fill(bias, OUT, 23, 0.1f);
    q8_quantize(xq, xs, x, (size_t)M * IN);
    q8_pack_weights(wq, ws, w, IN, OUT);
    q8_matmul(y, xq, xs, wq, ws, bias, M, IN, OUT);
    double err2 = 0, ref2 = 0;
    for (int m = 0; m < M; m++)
        for (int o = 0; o < OUT; o++) {
            double ref = 0;
            for (int k = 0; k < IN; k++)
                ref += (double)x[m * IN + k] * w[(size_t)k * OUT + o];
            const double d = y[m * OUT + o] - (ref + bias[o]);
            err2 += d * d, ref2 += ref * ref;
        }
    const double rel = sqrt(err2 / ref2);
    print_message("int8 vs fp32: relative error %.4f\n", rel);
    assert_true(rel <= 0.01);
    assert_true(guards_intact(y, (size_t)M * OUT));
    free(x), free(w), free(bias), free(y), free(xs), free(ws), free(xq), free(wq);
}

/* ---- dispatch and threads ---- */

/* Both decode layouts (plain C, any CPU): unpacking gives back wq and ws
 * exactly, and each row dequantized alone is q8_dequantize's. */
static void test_decode_layout_roundtrip(void **state)
{
    static const q8_path paths[] = {Q8_AVX2, Q8_VNNI};
    const int IN = 96, OUT = 37;
    problem p = make_problem(1, IN, OUT, 61);
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        void *packed = xmalloc(q8_decode_pack_bytes(paths[k], IN, OUT));
        int8_t *wq = xmalloc((size_t)IN * OUT);
        float *ws = xmalloc((size_t)OUT * (IN / Q8_GS) * sizeof *ws);
        assert_int_equal(q8_decode_pack(paths[k], packed, p.wq, p.ws, IN, OUT), 0);
        q8_decode_unpack(paths[k], wq, ws, packed, IN, OUT);
        assert_memory_equal(wq, p.wq, (size_t)IN * OUT);
        assert_memory_equal(ws, p.ws, (size_t)OUT * (IN / Q8_GS) * sizeof *ws);
        float row[96], want[96];
        for (int o = 0; o < OUT; o++) {
            q8_decode_row(paths[k], row, packed, IN, o);
            q8_dequantize(want, p.wq + (size_t)o * IN, p.ws + (size_t)o * (IN / Q8_GS), IN);
            assert_memory_equal(row, want, sizeof row);
        }
        memcpy(ws, p.ws, (size_t)OUT * (IN / Q8_GS) * sizeof *ws);
        ws[5] = nextafterf(ws[5], 1.0f);   /* not an fp16 value: refused */
        assert_int_equal(q8_decode_pack(paths[k], packed, p.wq, ws, IN, OUT), -1);
        free(packed), free(wq), free(ws);
    }
    free_problem(&p);
}

/* Each decode layout this CPU can run (VNNI, AVX2) gives the scalar path's
 * bits: one row over the whole output range and over 64-aligned shares of
 * it, and several rows (prefill), with and without a bias, including -127
 * everywhere (the largest sums) and OUT not a multiple of the block. */
static void test_decode_products(void **state)
{
    static const q8_path paths[] = {Q8_AVX2, Q8_VNNI};
    static const int shapes[][3] = {{1, 32, 1},   {1, 384, 1152}, {1, 1536, 384}, {1, 768, 33},
                                    {1, 96, 200}, {5, 384, 200},  {17, 64, 130}, {1, 96, 257},
                                    {3, 160, 2},  {2, 32, 257},   {1, 224, 120}, {1, 640, 160}};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        const q8_path path = paths[k];
        if (!q8_path_supported(path)) {
            printf("SKIP q8 %s decode layout: this CPU cannot run it\n", q8_path_name(path));
            continue;
        }
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const int M = shapes[i][0], IN = shapes[i][1], OUT = shapes[i][2];
            problem p = make_problem(M, IN, OUT, 50 + i);
            if (i == 3) {
                memset(p.xq, -127, (size_t)IN);
                memset(p.wq, -127, (size_t)IN * OUT);
            }
            void *packed = xmalloc(q8_decode_pack_bytes(path, IN, OUT));
            void *aux = xmalloc((size_t)M * IN);
            float *want = alloc_y((size_t)M * OUT), *got = alloc_y((size_t)M * OUT);
            assert_int_equal(q8_decode_pack(path, packed, p.wq, p.ws, IN, OUT), 0);
            q8_decode_prep(path, aux, p.xq, M, IN);
            for (int bias = 0; bias < 2; bias++) {
                const float *b = bias ? p.bias : NULL;
                q8_matmul_path(Q8_SCALAR, want, p.xq, p.xs, p.wq, p.ws, b, M, IN, OUT);
                q8_decode_matmul(path, got, p.xq, p.xs, aux, packed, b, M, IN, OUT);
                assert_true(same_bits("decode matmul", got, want, (size_t)M * OUT));
                if (M == 1) {
                    q8_decode_matvec(path, got, p.xq, p.xs, aux, packed, b, IN, 0, OUT);
                    assert_true(same_bits("decode matvec", got, want, OUT));
                    for (int o0 = 0; o0 < OUT; o0 += 64)
                        q8_decode_matvec(path, got, p.xq, p.xs, aux, packed, b, IN, o0,
                                         o0 + 64 < OUT ? o0 + 64 : OUT);
                    assert_true(same_bits("decode matvec in shares", got, want, OUT));
                }
                assert_true(guards_intact(got, (size_t)M * OUT));
            }
            free(packed), free(aux), free(want), free(got);
            free_problem(&p);
        }
    }
    const q8_path active = q8_decode_path();
    assert_true(active == Q8_SCALAR || active == Q8_AVX2 || active == Q8_VNNI);
    assert_true(q8_path_supported(active));
}

static void test_dispatch(void **state)
{
    assert_int_equal(q8_path_for_isa(ISA_SCALAR), Q8_SCALAR);
    if (cpu_isa_supported(ISA_AVX2))
        assert_int_equal(q8_path_for_isa(ISA_AVX2), Q8_AVX2);
    if (cpu_isa_supported(ISA_AVX512))
        assert_int_equal(q8_path_for_isa(ISA_AVX512),
                         cpu_has_avx512_vnni() ? Q8_VNNI : Q8_AVX512);
    assert_int_equal(q8_path_supported(Q8_VNNI), cpu_has_avx512_vnni());
    print_message("active: isa %s -> q8 path %s\n", cpu_isa_name(cpu_isa()),
                  q8_path_name(q8_path_for_isa(cpu_isa())));

    problem p = make_problem(3, 384, 100, 31);
    float *a = alloc_y(300), *b = alloc_y(300);
    q8_matmul(a, p.xq, p.xs, p.wq, p.ws, p.bias, 3, 384, 100);
    run_path(q8_path_for_isa(cpu_isa()), b, &p, true);
    assert_true(same_bits("q8_matmul vs active path", a, b, 300));
    free(a), free(b);
    free_problem(&p);
}

/* The tile split does not change the arithmetic: 1 thread == all threads. */
static void test_thread_count_invariant(void **state)
{
    enum { M = 17, IN = 384, OUT = 1000 };
    problem p = make_problem(M, IN, OUT, 41);
    float *a = alloc_y((size_t)M * OUT), *b = alloc_y((size_t)M * OUT);
    const int threads = omp_get_max_threads();
    q8_matmul(a, p.xq, p.xs, p.wq, p.ws, p.bias, M, IN, OUT);
    omp_set_num_threads(1);
    q8_matmul(b, p.xq, p.xs, p.wq, p.ws, p.bias, M, IN, OUT);
    omp_set_num_threads(threads);
    print_message("%d threads vs 1\n", threads);
    assert_true(same_bits("threads", a, b, (size_t)M * OUT));
    free(a), free(b);
    free_problem(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_round_trip),
        cmocka_unit_test(test_quantize_zero_groups),
        cmocka_unit_test(test_quantize_paths_match_scalar),
        cmocka_unit_test(test_half_scales),
        cmocka_unit_test(test_pack_weights),
        cmocka_unit_test(test_paths_match_scalar),
        cmocka_unit_test(test_extreme_sums_exact),
        cmocka_unit_test(test_matmul_vs_double),
        cmocka_unit_test(test_matmul_vs_fp32),
        cmocka_unit_test(test_decode_layout_roundtrip),
        cmocka_unit_test(test_decode_products),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_thread_count_invariant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
