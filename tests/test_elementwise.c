/* elementwise: GELU against independently computed values and a double
 * formula, its derivative against central differences of that formula, every
 * SIMD path against the scalar one (including extreme inputs and in-place
 * calls), the residual add exactly, the bias gradient against double column
 * sums and across thread counts, and the public dispatch.
 *
 * Tolerances (atol, rtol as in test_close): GELU 1e-7, 1e-5; its derivative
 * 1e-6, 1e-4 (the SIMD paths round exp's argument in float); bias gradient
 * 1e-5, 1e-5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <omp.h>
#include <string.h>

#include "kernels/elementwise.h"
#include "tests/test_util.h"

#define GELU_ATOL 1e-7f
#define GELU_RTOL 1e-5f
#define DGELU_ATOL 1e-6f
#define DGELU_RTOL 1e-4f
#define BIAS_ATOL 1e-5f
#define BIAS_RTOL 1e-5f

static const size_t lengths[] = {1, 7, 8, 15, 16, 17, 65, 100003};
enum { NLENGTHS = sizeof lengths / sizeof lengths[0] };

/* Saturated, tiny, signed-zero and huge-but-finite inputs, ahead of the random ones. */
static const float extremes[] = {0.0f,  -0.0f,  1e-8f,  -1e-8f, 9.99f, -9.99f, 10.0f,  -10.0f,
                                 10.5f, -10.5f, 30.0f,  -30.0f, 1e4f,  -1e4f,  3e38f, -3e38f};
enum { NEXTREMES = sizeof extremes / sizeof extremes[0] };

static float *alloc_floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static float *gelu_inputs(size_t n, uint64_t seed)   /* mostly in [-6, 6) */
{
    float *x = alloc_floats(n);
    test_fill(x, n, seed, 6.0f);
    memcpy(x, extremes, (n < NEXTREMES ? n : NEXTREMES) * sizeof(float));
    return x;
}

static double gelu_double(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static isa_t next_isa(isa_t isa)   /* the next supported path after isa, or ISA_COUNT */
{
    for (isa++; isa < ISA_COUNT && !test_isa_runs(isa, "elementwise"); isa++)
        ;
    return isa;
}

/* ---- GELU ---- */

/* Python: 0.5*x*(1+math.tanh(math.sqrt(2/math.pi)*(x+0.044715*x**3))) */
static void test_gelu_known_values(void **state)
{
    static const float x[] = {-3.0f, -1.0f, -0.5f, 0.5f, 1.0f, 2.0f};
    static const float want[] = {-0.003637392082f, -0.1588080094f, -0.1542859902f,
                                 0.3457140098f,    0.8411919906f,  1.954597694f};
    float got[6];
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        gelu_forward_isa(isa, got, x, 6);
        print_message("%s\n", cpu_isa_name(isa));
        assert_true(test_close("gelu", got, want, 6, 0.0f, GELU_RTOL));
    }
}

static void test_gelu_scalar_vs_double(void **state)
{
    const size_t n = 1003;
    float *x = gelu_inputs(n, 1), *out = alloc_floats(n), *want = alloc_floats(n);
    float *dout = alloc_floats(n), *dinp = alloc_floats(n), *want_d = alloc_floats(n);
    test_fill(dout, n, 2, 1.0f);
    for (size_t i = 0; i < n; i++) {
        const double h = 1e-4 * fmax(1.0, fabs(x[i]));
        want[i] = (float)gelu_double(x[i]);
        want_d[i] = (float)((gelu_double(x[i] + h) - gelu_double(x[i] - h)) / (2 * h) * dout[i]);
    }
    gelu_forward_isa(ISA_SCALAR, out, x, n);
    gelu_backward_isa(ISA_SCALAR, dinp, x, dout, n);
    assert_true(test_close("gelu", out, want, n, GELU_ATOL, GELU_RTOL));
    assert_true(
        test_close("dgelu vs central differences", dinp, want_d, n, DGELU_ATOL, DGELU_RTOL));
    free(x), free(out), free(want), free(dout), free(dinp), free(want_d);
}

static void test_gelu_simd_vs_scalar(void **state)
{
    for (isa_t isa = next_isa(ISA_SCALAR); isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int l = 0; l < NLENGTHS; l++) {
            const size_t n = lengths[l];
            float *x = gelu_inputs(n, 10 + l), *dout = alloc_floats(n);
            float *ref = alloc_floats(n), *got = alloc_floats(n);
            float *dref = alloc_floats(n), *dgot = alloc_floats(n);
            test_fill(dout, n, 20 + l, 1.0f);
            gelu_forward_isa(ISA_SCALAR, ref, x, n);
            gelu_backward_isa(ISA_SCALAR, dref, x, dout, n);
            gelu_forward_isa(isa, got, x, n);
            gelu_backward_isa(isa, dgot, x, dout, n);
            print_message("%s n=%zu\n", cpu_isa_name(isa), n);
            assert_true(test_close("gelu", got, ref, n, GELU_ATOL, GELU_RTOL));
            assert_true(test_close("dgelu", dgot, dref, n, DGELU_ATOL, DGELU_RTOL));
            gelu_forward_isa(isa, x, x, n);   /* in place */
            assert_memory_equal(x, got, n * sizeof(float));
            free(x), free(dout), free(ref), free(got), free(dref), free(dgot);
        }
    }
}

/* a == b (infinities), or within the derivative's tolerance (finite values) */
static bool same_or_close(float a, float b)
{
    return a == b || fabsf(a - b) <= DGELU_ATOL + DGELU_RTOL * fabsf(b);
}

/* Infinities and NaNs: each SIMD path gives the scalar formula's value,
 * NaN where it is NaN (gelu(-inf), gelu'(+-inf)): a path that saturates
 * them to 0 or 1 would hide an overflowed activation from the loss scaler.
 * 19 values, so the specials also sit in a partial last vector. */
static void test_gelu_non_finite_as_scalar(void **state)
{
    static const float specials[] = {INFINITY, -INFINITY, NAN, -NAN, 1e30f, -1e30f, 3e38f, -3e38f,
                                     -10.5f,   10.5f,     0.0f, -0.0f, 1.0f,  -1.0f,  -INFINITY,
                                     NAN,      INFINITY,  -20.0f, INFINITY};
    enum { N = sizeof specials / sizeof specials[0] };
    float dout[N], ref[N], dref[N], got[N], dgot[N];
    for (int i = 0; i < N; i++)
        dout[i] = 0.5f + (float)i;
    gelu_forward_isa(ISA_SCALAR, ref, specials, N);
    gelu_backward_isa(ISA_SCALAR, dref, specials, dout, N);
    for (isa_t isa = next_isa(ISA_SCALAR); isa < ISA_COUNT; isa = next_isa(isa)) {
        gelu_forward_isa(isa, got, specials, N);
        gelu_backward_isa(isa, dgot, specials, dout, N);
        for (int i = 0; i < N; i++) {
            const bool fwd_ok = isnan(ref[i]) ? isnan(got[i]) : same_or_close(got[i], ref[i]);
            const bool bwd_ok = isnan(dref[i]) ? isnan(dgot[i]) : same_or_close(dgot[i], dref[i]);
            if (!fwd_ok || !bwd_ok)
                fail_msg("%s x=%g: gelu %g (scalar %g), dgelu %g (scalar %g)", cpu_isa_name(isa),
                         specials[i], got[i], ref[i], dgot[i], dref[i]);
        }
    }
}

static void test_gelu_backward_in_place(void **state)
{
    const size_t n = 100003;
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        float *x = gelu_inputs(n, 30), *g = alloc_floats(n), *want = alloc_floats(n);
        test_fill(g, n, 31, 1.0f);
        gelu_backward_isa(isa, want, x, g, n);
        gelu_backward_isa(isa, g, x, g, n);
        print_message("%s\n", cpu_isa_name(isa));
        assert_memory_equal(g, want, n * sizeof(float));
        free(x), free(g), free(want);
    }
}

/* ---- residual ---- */

static void test_residual_exact(void **state)
{
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int l = 0; l < NLENGTHS; l++) {
            const size_t n = lengths[l];
            float *a = alloc_floats(n), *b = alloc_floats(n), *out = alloc_floats(n),
                  *want = alloc_floats(n);
            test_fill(a, n, 40 + l, 3.0f);
            test_fill(b, n, 50 + l, 1.0f);
            for (size_t i = 0; i < n; i++)
                want[i] = a[i] + b[i];
            residual_forward_isa(isa, out, a, b, n);
            assert_memory_equal(out, want, n * sizeof(float));
            residual_forward_isa(isa, a, a, b, n);   /* out = a */
            assert_memory_equal(a, want, n * sizeof(float));
            test_fill(a, n, 40 + l, 3.0f);
            residual_forward_isa(isa, b, a, b, n);   /* out = b */
            assert_memory_equal(b, want, n * sizeof(float));
            free(a), free(b), free(out), free(want);
        }
    }
}

/* ---- bias gradient ---- */

/* ... and OC above the 1024 columns summed per sweep */
static const int bias_shapes[][2] = {{7, 65}, {300, 385}, {5, 1},    {3, 16},  {4, 17},
                                     {2, 8},  {50, 2500}, {3, 120}, {17, 216}, {1, 400}};
enum { NBIAS = sizeof bias_shapes / sizeof bias_shapes[0] };

static void test_bias_backward_scalar_vs_double(void **state)
{
    for (int s = 0; s < NBIAS; s++) {
        const int N = bias_shapes[s][0], OC = bias_shapes[s][1];
        float *dout = alloc_floats((size_t)N * OC), *db = alloc_floats(OC),
              *want = alloc_floats(OC);
        test_fill(dout, (size_t)N * OC, 60 + s, 1.0f);
        test_fill(db, OC, 70 + s, 1.0f);   /* bias_backward accumulates */
        for (int j = 0; j < OC; j++) {
            double sum = db[j];
            for (int n = 0; n < N; n++)
                sum += dout[(size_t)n * OC + j];
            want[j] = (float)sum;
        }
        bias_backward_isa(ISA_SCALAR, db, dout, N, OC);
        print_message("N=%d OC=%d\n", N, OC);
        assert_true(test_close("dbias", db, want, OC, BIAS_ATOL, BIAS_RTOL));
        free(dout), free(db), free(want);
    }
}

static void test_bias_backward_simd_vs_scalar(void **state)
{
    for (isa_t isa = next_isa(ISA_SCALAR); isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int s = 0; s < NBIAS; s++) {
            const int N = bias_shapes[s][0], OC = bias_shapes[s][1];
            float *dout = alloc_floats((size_t)N * OC), *ref = alloc_floats(OC),
                  *got = alloc_floats(OC);
            test_fill(dout, (size_t)N * OC, 80 + s, 1.0f);
            test_fill(ref, OC, 90 + s, 1.0f);
            memcpy(got, ref, OC * sizeof(float));
            bias_backward_isa(ISA_SCALAR, ref, dout, N, OC);
            bias_backward_isa(isa, got, dout, N, OC);
            print_message("%s N=%d OC=%d\n", cpu_isa_name(isa), N, OC);
            assert_true(test_close("dbias", got, ref, OC, BIAS_ATOL, BIAS_RTOL));
            free(dout), free(ref), free(got);
        }
    }
}

static void test_bias_backward_thread_count_invariance(void **state)
{
    const int saved = omp_get_max_threads(), N = 512, OC = 2500;
    float *dout = alloc_floats((size_t)N * OC), *one = alloc_floats(OC), *three = alloc_floats(OC);
    test_fill(dout, (size_t)N * OC, 100, 1.0f);
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        memset(one, 0, OC * sizeof(float));
        memset(three, 0, OC * sizeof(float));
        omp_set_num_threads(1);
        bias_backward_isa(isa, one, dout, N, OC);
        omp_set_num_threads(3);
        bias_backward_isa(isa, three, dout, N, OC);
        print_message("%s: 1 vs 3 threads\n", cpu_isa_name(isa));
        assert_memory_equal(one, three, OC * sizeof(float));
    }
    omp_set_num_threads(saved);
    free(dout), free(one), free(three);
}

/* ---- dispatch ---- */

/* fill_zeros clears exactly [x, x + n): short (one thread) and long
 * (threaded, ragged last chunk) ranges inside a guarded buffer. */
static void test_fill_zeros_exact_range(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 1000, (1 << 17) + 37};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
        const size_t n = lens[k], pad = 19;
        float *buf = alloc_floats(n + 2 * pad), *orig = alloc_floats(n + 2 * pad);
        test_fill(buf, n + 2 * pad, 120 + k, 1.0f);
        for (size_t i = 0; i < n + 2 * pad; i++)
            buf[i] = buf[i] == 0.0f ? 1.0f : buf[i];   /* no zeros before */
        memcpy(orig, buf, (n + 2 * pad) * sizeof *buf);
        fill_zeros(buf + pad, n);
        for (size_t i = 0; i < n + 2 * pad; i++) {
            const bool inside = i >= pad && i < pad + n;
            assert_true(inside ? buf[i] == 0.0f : buf[i] == orig[i]);
        }
        free(buf), free(orig);
    }
}

static void test_public_dispatch(void **state)
{
    const isa_t isa = cpu_isa();
    const size_t n = 1000;
    const int N = 8, OC = 125;   /* N * OC == n */
    print_message("active path: %s\n", cpu_isa_name(isa));
    float *x = gelu_inputs(n, 110), *g = alloc_floats(n), *pub = alloc_floats(n),
          *ref = alloc_floats(n);
    test_fill(g, n, 111, 1.0f);
    gelu_forward(pub, x, n);
    gelu_forward_isa(isa, ref, x, n);
    assert_memory_equal(pub, ref, n * sizeof(float));
    gelu_backward(pub, x, g, n);
    gelu_backward_isa(isa, ref, x, g, n);
    assert_memory_equal(pub, ref, n * sizeof(float));
    residual_forward(pub, x, g, n);
    residual_forward_isa(isa, ref, x, g, n);
    assert_memory_equal(pub, ref, n * sizeof(float));
    memset(pub, 0, OC * sizeof(float));
    memset(ref, 0, OC * sizeof(float));
    bias_backward(pub, x, N, OC);
    bias_backward_isa(isa, ref, x, N, OC);
    assert_memory_equal(pub, ref, OC * sizeof(float));
    free(x), free(g), free(pub), free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gelu_known_values),
        cmocka_unit_test(test_gelu_scalar_vs_double),
        cmocka_unit_test(test_gelu_simd_vs_scalar),
        cmocka_unit_test(test_gelu_non_finite_as_scalar),
        cmocka_unit_test(test_gelu_backward_in_place),
        cmocka_unit_test(test_residual_exact),
        cmocka_unit_test(test_bias_backward_scalar_vs_double),
        cmocka_unit_test(test_bias_backward_simd_vs_scalar),
        cmocka_unit_test(test_bias_backward_thread_count_invariance),
        cmocka_unit_test(test_fill_zeros_exact_range),
        cmocka_unit_test(test_public_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
