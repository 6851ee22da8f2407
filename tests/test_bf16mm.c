/* bf16mm (bf16-weight products): packing keeps each weight's bf16 rounding
 * where the layout says; every widening path gives results bit-identical to
 * gemv_n on the bf16-rounded weights (the scalar path is that reference); the
 * AVX512-BF16 path matches a scalar emulation of vdpbf16ps tightly and fp32
 * loosely; any number of rows and threads, and a range of outputs, give the
 * same bits.  Paths this CPU cannot run print SKIP and are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16mm.h"
#include "kernels/convert.h"
#include "kernels/gemv.h"
#include "tests/test_util.h"

/* ... and the products of users' configs: n_embd 40, 72, 100 (3C, 4C, and
 * a vocabulary of 257, 2 or 1 for the LM head) */
static const int SHAPES[][2] = {{64, 64}, {384, 1152}, {48, 37}, {101, 300}, {1, 5},
                                {17, 1000}, {768, 197}, {3, 129}, {33, 64}, {40, 120},
                                {160, 40}, {72, 216}, {100, 400}, {40, 257}, {40, 2}, {72, 1}};
static const int ROWS[] = {1, 2, 3, 5, 9};

typedef struct {
    int in, out;
    float *x, *w, *wr, *b;   /* x [9, in], w [in, out], wr: w rounded to bf16 */
    uint16_t *p;
} problem;

static problem make(int s)
{
    problem q = {.in = SHAPES[s][0], .out = SHAPES[s][1]};
    const size_t nw = (size_t)q.in * q.out;
    q.x = malloc(sizeof(float) * 9 * q.in);
    q.w = malloc(sizeof(float) * nw);
    q.wr = malloc(sizeof(float) * nw);
    q.b = malloc(sizeof(float) * q.out);
    q.p = aligned_alloc(64, (bf16mm_packed_len(q.in, q.out) * 2 + 63) / 64 * 64);
    test_fill(q.x, (size_t)9 * q.in, 1 + s, 1.0f);
    test_fill(q.w, nw, 100 + s, 0.5f);
    test_fill(q.b, q.out, 200 + s, 0.1f);
    memcpy(q.wr, q.w, sizeof(float) * nw);
    round_to_bf16(q.wr, nw);
    bf16mm_pack(q.p, q.w, false, q.in, q.out);
    return q;
}

static void drop(problem *q)
{
    free(q->x);
    free(q->w);
    free(q->wr);
    free(q->b);
    free(q->p);
}

static int skip_unless(bf16mm_path path)
{
    if (bf16mm_supported(path))
        return 0;
    print_message("SKIP bf16mm %s path: this CPU cannot run it\n", bf16mm_path_name(path));
    return 1;
}

/* y[n, out] of path on 1 and 2 threads: identical, and every output written. */
static void run(bf16mm_path path, float *y, const problem *q, const float *b, int n)
{
    const size_t len = (size_t)n * q->out;
    float *y2 = malloc(sizeof(float) * len);
    memset(y, 0xff, sizeof(float) * len);   /* NaNs */
    omp_set_num_threads(1);
    bf16mm_matmul_path(path, y, q->x, q->p, b, n, q->in, q->out);
    omp_set_num_threads(2);
    bf16mm_matmul_path(path, y2, q->x, q->p, b, n, q->in, q->out);
    if (memcmp(y, y2, sizeof(float) * len) != 0)
        fail_msg("%s %dx%d n %d: 1 and 2 threads differ", bf16mm_path_name(path), q->in, q->out, n);
    free(y2);
}

static void test_pack(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        problem q = make((int)s);
        float *t = malloc(sizeof(float) * q.in * q.out), *col = malloc(sizeof(float) * q.in);
        uint16_t *pt = malloc(bf16mm_packed_len(q.in, q.out) * 2);
        for (int i = 0; i < q.in; i++)   /* t = w transposed: [out, in] */
            for (int o = 0; o < q.out; o++)
                t[(size_t)o * q.in + i] = q.w[(size_t)i * q.out + o];
        bf16mm_pack(pt, t, true, q.in, q.out);
        assert_memory_equal(pt, q.p, bf16mm_packed_len(q.in, q.out) * 2);
        for (int o = 0; o < q.out; o++) {
            bf16mm_column(col, q.p, q.in, o);
            for (int i = 0; i < q.in; i++)
                if (col[i] != q.wr[(size_t)i * q.out + o])
                    fail_msg("%dx%d: W[%d][%d] = %g, want %g", q.in, q.out, i, o, col[i],
                             q.wr[(size_t)i * q.out + o]);
        }
        free(t);
        free(col);
        free(pt);
        drop(&q);
    }
}

/* A widening path: gemv_n's bits on the rounded weights, row by row. */
static void check_widen(bf16mm_path path)
{
    if (skip_unless(path))
        skip();
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        problem q = make((int)s);
        float *got = malloc(sizeof(float) * 9 * q.out), *want = malloc(sizeof(float) * 9 * q.out);
        for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const int n = ROWS[r];
                const float *b = with_bias ? q.b : NULL;
                for (int m = 0; m < n; m++)
                    gemv_n_isa(ISA_SCALAR, want + (size_t)m * q.out, q.x + (size_t)m * q.in, q.wr,
                               b, q.in, q.out);
                run(path, got, &q, b, n);
                if (memcmp(got, want, sizeof(float) * n * q.out) != 0)
                    fail_msg("%s %dx%d n %d bias %d: not gemv_n's bits", bf16mm_path_name(path),
                             q.in, q.out, n, with_bias);
            }
        free(got);
        free(want);
        drop(&q);
    }
}

static void test_widen_scalar(void **state)
{
    (void)state;
    check_widen(BF16MM_SCALAR);
}

static void test_widen_avx2(void **state)
{
    (void)state;
    check_widen(BF16MM_AVX2);
}

static void test_widen_avx512(void **state)
{
    (void)state;
    check_widen(BF16MM_AVX512);
}

/* vdpbf16ps's input: x rounded to nearest even bf16, a denormal read as 0 */
static float bf16_daz(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7F800000u) == 0)
        return copysignf(0.0f, x);
    return bf16_to_f32_one(f32_to_bf16_one(x));
}

/* The dot arithmetic of bf16mm.h, one output at a time; *mag = sum |x w|. */
static float dot_ref(const float *x, const float *wr, const float *b, int in, int out, int o,
                     double *mag)
{
    float acc = 0.0f;
    *mag = 0;
    for (int i = 0; i < in; i += 2) {
        const float xe = bf16_daz(x[i]), we = wr[(size_t)i * out + o];
        const float xo = i + 1 < in ? bf16_daz(x[i + 1]) : 0.0f;
        const float wo = i + 1 < in ? wr[(size_t)(i + 1) * out + o] : 0.0f;
        acc = fmaf(xo, wo, acc);
        acc = fmaf(xe, we, acc);
        *mag += fabs((double)xe * we) + fabs((double)xo * wo);
    }
    return b ? acc + b[o] : acc;
}

static void test_dot_avx512_bf16(void **state)
{
    (void)state;
    if (skip_unless(BF16MM_DOT))
        skip();
    long exact = 0, total = 0;
    double worst_fp32 = 0;
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        problem q = make((int)s);
        float *got = malloc(sizeof(float) * 9 * q.out);
        for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const int n = ROWS[r];
                const float *b = with_bias ? q.b : NULL;
                run(BF16MM_DOT, got, &q, b, n);
                for (int m = 0; m < n; m++)
                    for (int o = 0; o < q.out; o++) {
                        const float *x = q.x + (size_t)m * q.in;
                        double mag, f32 = b ? b[o] : 0;
                        const float want = dot_ref(x, q.wr, b, q.in, q.out, o, &mag);
                        const float g = got[(size_t)m * q.out + o];
                        /* a few roundings of the running sum, each <= 2^-24 of mag */
                        if (!(fabs(g - want) <= 4e-7 * mag + 1e-30))
                            fail_msg("dot %dx%d n %d: y[%d][%d] = %.9g, emulation %.9g",
                                     q.in, q.out, n, m, o, g, want);
                        exact += g == want;
                        total++;
                        for (int i = 0; i < q.in; i++)
                            f32 += (double)x[i] * q.w[(size_t)i * q.out + o];
                        /* bf16 rounding of x and w (2^-8 each): a product within 2^-7 */
                        const double e = fabs(g - f32) / (mag + (b ? fabs(b[o]) : 0) + 1e-6);
                        worst_fp32 = e > worst_fp32 ? e : worst_fp32;
                    }
            }
        free(got);
        drop(&q);
    }
    print_message("dot: %ld of %ld outputs bit-identical to the emulation; worst error vs "
                  "fp32 %.2e of sum |x w|\n", exact, total, worst_fp32);
    assert_true(worst_fp32 < 1.0 / 100);
}

/* matvec_range over shares of whole blocks: the bits of the whole product. */
static void test_range(void **state)
{
    (void)state;
    problem q = make(1);   /* 384 x 1152 */
    float *whole = malloc(sizeof(float) * q.out), *parts = malloc(sizeof(float) * q.out);
    bf16mm_matmul(whole, q.x, q.p, q.b, 1, q.in, q.out);
    memset(parts, 0xff, sizeof(float) * q.out);
    for (int o0 = 0; o0 < q.out; o0 += 3 * BF16MM_NB) {
        const int o1 = o0 + 3 * BF16MM_NB < q.out ? o0 + 3 * BF16MM_NB : q.out;
        bf16mm_matvec_range(parts, q.x, q.p, q.b, q.in, q.out, o0, o1);
    }
    assert_memory_equal(parts, whole, sizeof(float) * q.out);
    print_message("active path: %s\n", bf16mm_path_name(bf16mm_path_active()));
    free(whole);
    free(parts);
    drop(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack),
        cmocka_unit_test(test_widen_scalar),
        cmocka_unit_test(test_widen_avx2),
        cmocka_unit_test(test_widen_avx512),
        cmocka_unit_test(test_dot_avx512_bf16),
        cmocka_unit_test(test_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
