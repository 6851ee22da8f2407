/* gemv (fp32 decode, and gemv_n_rows for short prompts): every SIMD path this
 * CPU has gives results bit-identical to the scalar reference, for shapes with and without tails,
 * with and without a bias, on 1 and 2 threads; the reference itself agrees
 * with a double-precision product.  A path this CPU cannot run is a SKIP
 * line, not a pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemv.h"
#include "tests/test_util.h"

/* in covers every remainder of gemv_n's four rows a pass (0 to 3) and out
 * every remainder of gemv_t's six; in % 16 of 9 to 15 (13, 29, 90) gives
 * gemv_t a row tail that ends in its second AVX2 vector */
static const int SHAPES[][2] = {{64, 64}, {384, 1152}, {48, 37}, {100, 300}, {768, 197}, {1, 5},
                                {17, 1000}, {1536, 384}, {50, 37}, {771, 197}, {3, 23}, {6, 40},
                                {8, 26}, {5, 9}, {13, 11}, {29, 70}, {90, 33},
                                /* users' configs: n_embd 40, 72, 100; vocabularies 257, 2, 1 */
                                {40, 120}, {160, 40}, {72, 216}, {100, 400}, {40, 257}, {40, 2},
                                {72, 1}};

/* y[o] of x W (trans 0: W [in, out]) or x W^T (trans 1: W [out, in]) in double */
static void naive(double *y, const float *x, const float *w, const float *b, int in, int out,
                  int trans)
{
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++)
            s += (double)x[i] * (trans ? w[(size_t)o * in + i] : w[(size_t)i * out + o]);
        y[o] = s;
    }
}

static void run(isa_t isa, int trans, float *y, const float *x, const float *w, const float *b,
                int in, int out)
{
    if (trans)
        gemv_t_isa(isa, y, x, w, b, in, out);
    else
        gemv_n_isa(isa, y, x, w, b, in, out);
}

static void check(int trans)
{
    bool runs[ISA_COUNT];   /* a SKIP line for each path this CPU cannot run */
    for (int isa = ISA_SCALAR; isa < ISA_COUNT; isa++)
        runs[isa] = test_isa_runs((isa_t)isa, trans ? "gemv_t" : "gemv_n");
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const int in = SHAPES[s][0], out = SHAPES[s][1];
        float *x = malloc(sizeof(float) * in), *w = malloc(sizeof(float) * in * out);
        float *b = malloc(sizeof(float) * out), *ref = malloc(sizeof(float) * out);
        float *got = malloc(sizeof(float) * out);
        double *exact = malloc(sizeof(double) * out);
        test_fill(x, in, 1 + s, 1.0f);
        test_fill(w, (size_t)in * out, 100 + s, 0.5f);
        test_fill(b, out, 200 + s, 0.1f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const float *bias = with_bias ? b : NULL;
            run(ISA_SCALAR, trans, ref, x, w, bias, in, out);
            naive(exact, x, w, bias, in, out, trans);
            for (int o = 0; o < out; o++)   /* fp32 sums of in terms of size <= 0.5 */
                if (fabs(ref[o] - exact[o]) > 1e-5 * in + 1e-5 * fabs(exact[o]))
                    fail_msg("%s %dx%d: reference %g, exact %g at %d", trans ? "gemv_t" : "gemv_n",
                             in, out, ref[o], exact[o], o);
            for (int isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
                if (!runs[isa])
                    continue;
                for (int threads = 1; threads <= 2; threads++) {
                    omp_set_num_threads(threads);
                    memset(got, 0xff, sizeof(float) * out);   /* NaNs: every output is written */
                    run((isa_t)isa, trans, got, x, w, bias, in, out);
                    if (memcmp(got, ref, sizeof(float) * out) != 0)
                        fail_msg("%s %s %dx%d bias %d threads %d: not bit-identical to scalar",
                                 trans ? "gemv_t" : "gemv_n", cpu_isa_name((isa_t)isa), in, out,
                                 with_bias, threads);
                }
            }
        }
        free(x);
        free(w);
        free(b);
        free(ref);
        free(got);
        free(exact);
    }
}

static void test_gemv_n(void **state)
{
    (void)state;
    check(0);
}

static void test_gemv_t(void **state)
{
    (void)state;
    check(1);
}

/* gemv_n_rows: every path this CPU has gives, for each of m rows, the bits
 * of the scalar gemv_n of that row, on 1 and 2 threads, for row counts
 * around its tiles of 16 rows and shapes with column tails. */
static void test_gemv_n_rows(void **state)
{
    (void)state;
    static const int ROWS[] = {1, 2, 3, 5, 16, 17, 35};
    bool runs[ISA_COUNT];
    for (int isa = ISA_SCALAR; isa < ISA_COUNT; isa++)
        runs[isa] = test_isa_runs((isa_t)isa, "gemv_n_rows");
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const int in = SHAPES[s][0], out = SHAPES[s][1], m = ROWS[s % 7];
        float *x = malloc(sizeof(float) * m * in), *w = malloc(sizeof(float) * in * out);
        float *b = malloc(sizeof(float) * out), *ref = malloc(sizeof(float) * m * out);
        float *got = malloc(sizeof(float) * m * out);
        test_fill(x, (size_t)m * in, 300 + s, 1.0f);
        test_fill(w, (size_t)in * out, 400 + s, 0.5f);
        test_fill(b, out, 500 + s, 0.1f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const float *bias = with_bias ? b : NULL;
            for (int r = 0; r < m; r++)
                gemv_n_isa(ISA_SCALAR, ref + (size_t)r * out, x + (size_t)r * in, w, bias, in, out);
            for (int isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
                if (!runs[isa])
                    continue;
                for (int threads = 1; threads <= 2; threads++) {
                    omp_set_num_threads(threads);
                    memset(got, 0xff, sizeof(float) * m * out);
                    gemv_n_rows_isa((isa_t)isa, got, x, w, bias, m, in, out);
                    if (memcmp(got, ref, sizeof(float) * m * out) != 0)
                        fail_msg("gemv_n_rows %s %d rows %dx%d bias %d threads %d: not the bits "
                                 "of gemv_n", cpu_isa_name((isa_t)isa), m, in, out, with_bias,
                                 threads);
                }
            }
        }
        free(x);
        free(w);
        free(b);
        free(ref);
        free(got);
    }
}

/* The range entry points on a slice of a wider matrix (as the attention of
 * one head uses them): the same bits as the whole product on a copy. */
static void test_ranges_on_slices(void **state)
{
    (void)state;
    enum { ROWS = 77, LD = 384, OFF = 64, HS = 64 };
    float *w = malloc(sizeof(float) * ROWS * LD), *x = malloc(sizeof(float) * LD);
    float *slice = malloc(sizeof(float) * ROWS * HS), got[ROWS], want[ROWS];
    test_fill(w, (size_t)ROWS * LD, 5, 1.0f);
    test_fill(x, LD, 6, 1.0f);
    for (int r = 0; r < ROWS; r++)
        memcpy(slice + r * HS, w + (size_t)r * LD + OFF, sizeof(float) * HS);
    gemv_t_isa(ISA_SCALAR, want, x, slice, NULL, HS, ROWS);   /* x[0..HS) . row r */
    gemv_t_range(got, x, w + OFF, LD, NULL, HS, 0, ROWS);
    assert_memory_equal(got, want, sizeof got);
    /* gemv_n over rows: y[j] = sum_r x[r] w[r][OFF + j], j < HS */
    gemv_n_isa(ISA_SCALAR, want, x, slice, NULL, ROWS, HS);
    gemv_n_range(got, x, w + OFF, NULL, ROWS, LD, 0, HS);
    assert_memory_equal(got, want, sizeof(float) * HS);
    free(w);
    free(x);
    free(slice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemv_n),
        cmocka_unit_test(test_gemv_t),
        cmocka_unit_test(test_gemv_n_rows),
        cmocka_unit_test(test_ranges_on_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
