/* layernorm: the scalar path against a double-precision forward and against
 * central differences of that forward (backward); every SIMD path against the
 * scalar one; results independent of the thread count; the public dispatch.
 *
 * Tolerances (atol, rtol as in test_close): forward 1e-5, 1e-5; backward
 * 1e-5, 1e-4 (float sums over C and N terms against double). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <omp.h>
#include <string.h>

#include "kernels/layernorm.h"
#include "tests/test_util.h"

#define FWD_ATOL 1e-5f
#define FWD_RTOL 1e-5f
#define BWD_ATOL 1e-5f
#define BWD_RTOL 1e-4f

/* Awkward widths (tails of every length class), C = 1 where var = 0, and C
 * above the 512 columns the parameter gradients sum per sweep; then the
 * widths of users' configs (n_embd 40, 72, 100, 24) with B*T odd. */
static const int shapes[][2] = {{7, 65}, {7, 384}, {3, 1}, {5, 16}, {4, 17}, {300, 33}, {3, 1100},
                                {3, 40}, {17, 72}, {1, 100}, {5, 24}};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };

typedef struct {
    int N, C;
    float *inp, *weight, *bias, *dout;             /* inputs */
    float *out, *mean, *rstd, *dinp, *dw, *db;     /* outputs; the gradients start non-zero */
} ln_case;

static float *alloc_floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static ln_case case_new(int N, int C, uint64_t seed)
{
    const size_t NC = (size_t)N * C;
    ln_case c = {N, C, alloc_floats(NC), alloc_floats(C), alloc_floats(C), alloc_floats(NC),
                 alloc_floats(NC), alloc_floats(N), alloc_floats(N), alloc_floats(NC),
                 alloc_floats(C), alloc_floats(C)};
    test_fill(c.inp, NC, seed, 2.0f);
    for (size_t i = 0; i < NC; i++)
        c.inp[i] += (float)(i / C % 5) - 2.0f;   /* rows with different means */
    test_fill(c.weight, C, seed + 1, 0.5f);
    for (int i = 0; i < C; i++)
        c.weight[i] += 1.0f;
    test_fill(c.bias, C, seed + 2, 0.5f);
    test_fill(c.dout, NC, seed + 3, 1.0f);
    test_fill(c.dinp, NC, seed + 4, 1.0f);
    test_fill(c.dw, C, seed + 5, 1.0f);
    test_fill(c.db, C, seed + 6, 1.0f);
    return c;
}

static ln_case case_copy(const ln_case *c)
{
    const size_t NC = (size_t)c->N * c->C;
    ln_case d = case_new(c->N, c->C, 0);
    memcpy(d.inp, c->inp, NC * sizeof(float));
    memcpy(d.weight, c->weight, c->C * sizeof(float));
    memcpy(d.bias, c->bias, c->C * sizeof(float));
    memcpy(d.dout, c->dout, NC * sizeof(float));
    memcpy(d.dinp, c->dinp, NC * sizeof(float));
    memcpy(d.dw, c->dw, c->C * sizeof(float));
    memcpy(d.db, c->db, c->C * sizeof(float));
    return d;
}

static void case_free(ln_case *c)
{
    float *bufs[] = {c->inp, c->weight, c->bias, c->dout, c->out,
                     c->mean, c->rstd, c->dinp, c->dw, c->db};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static void run_forward(isa_t isa, ln_case *c)
{
    layernorm_forward_isa(isa, c->out, c->mean, c->rstd, c->inp, c->weight, c->bias, c->N, c->C);
}

static void run_backward(isa_t isa, ln_case *c)
{
    layernorm_backward_isa(isa, c->dinp, c->dw, c->db, c->dout, c->inp, c->weight, c->mean,
                           c->rstd, c->N, c->C);
}

/* ---- double-precision reference ---- */

static void ref_row(double *out, double *mean, double *rstd, const double *x, const double *w,
                    const double *b, int C)
{
    double m = 0, var = 0;
    for (int i = 0; i < C; i++)
        m += x[i];
    m /= C;
    for (int i = 0; i < C; i++)
        var += (x[i] - m) * (x[i] - m);
    const double s = 1.0 / sqrt(var / C + 1e-5);
    for (int i = 0; i < C; i++)
        out[i] = (x[i] - m) * s * w[i] + b[i];
    *mean = m;
    *rstd = s;
}

/* sum_i out[i] * dout[i] for one row: the loss whose gradient backward gives. */
static double row_loss(const double *x, const double *w, const double *b, const float *dout, int C,
                       double *scratch)
{
    double m, s, loss = 0;
    ref_row(scratch, &m, &s, x, w, b, C);
    for (int i = 0; i < C; i++)
        loss += scratch[i] * dout[i];
    return loss;
}

static double *to_double(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* d/dp of the loss summed over all rows, by central differences, for p = *p. */
static double central_diff(double *p, const double *x, const double *w, const double *b,
                           const ln_case *c, double *scratch, int row /* -1: all rows */)
{
    const double h = 1e-4, p0 = *p;
    double lp = 0, lm = 0;
    for (int n = row < 0 ? 0 : row; n < (row < 0 ? c->N : row + 1); n++) {
        const size_t off = (size_t)n * c->C;
        *p = p0 + h;
        lp += row_loss(x + off, w, b, c->dout + off, c->C, scratch);
        *p = p0 - h;
        lm += row_loss(x + off, w, b, c->dout + off, c->C, scratch);
    }
    *p = p0;
    return (lp - lm) / (2 * h);
}

/* ---- tests ---- */

static void test_forward_scalar_vs_double(void **state)
{
    for (int s = 0; s < NSHAPES; s++) {
        ln_case c = case_new(shapes[s][0], shapes[s][1], 100 + s);
        const int N = c.N, C = c.C;
        run_forward(ISA_SCALAR, &c);
        double *x = to_double(c.inp, (size_t)N * C), *w = to_double(c.weight, C),
               *b = to_double(c.bias, C), *o = to_double(c.out, C);
        float *want = alloc_floats((size_t)N * C), *want_mean = alloc_floats(N),
              *want_rstd = alloc_floats(N);
        for (int n = 0; n < N; n++) {
            double m, r;
            ref_row(o, &m, &r, x + (size_t)n * C, w, b, C);
            for (int i = 0; i < C; i++)
                want[(size_t)n * C + i] = (float)o[i];
            want_mean[n] = (float)m;
            want_rstd[n] = (float)r;
        }
        print_message("N=%d C=%d\n", N, C);
        assert_true(test_close("out", c.out, want, (size_t)N * C, FWD_ATOL, FWD_RTOL));
        assert_true(test_close("mean", c.mean, want_mean, N, FWD_ATOL, FWD_RTOL));
        assert_true(test_close("rstd", c.rstd, want_rstd, N, FWD_ATOL, FWD_RTOL));
        free(x), free(w), free(b), free(o), free(want), free(want_mean), free(want_rstd);
        case_free(&c);
    }
}

/* The gradients of sum(out * dout) by central differences in double, added to
 * the non-zero starting gradients (backward accumulates). */
static void test_backward_scalar_vs_finite_differences(void **state)
{
    for (int s = 0; s < NSHAPES; s++) {
        if (shapes[s][0] * shapes[s][1] > 4000)
            continue;   /* the weight derivatives cost N*C per column */
        ln_case c = case_new(shapes[s][0], shapes[s][1], 200 + s);
        const int N = c.N, C = c.C;
        const size_t NC = (size_t)N * C;
        float *want_dinp = alloc_floats(NC), *want_dw = alloc_floats(C), *want_db = alloc_floats(C);
        double *x = to_double(c.inp, NC), *w = to_double(c.weight, C), *b = to_double(c.bias, C);
        double *scratch = to_double(c.inp, C);
        for (size_t i = 0; i < NC; i++)
            want_dinp[i] =
                (float)(c.dinp[i] + central_diff(&x[i], x, w, b, &c, scratch, (int)(i / C)));
        for (int i = 0; i < C; i++) {
            want_dw[i] = (float)(c.dw[i] + central_diff(&w[i], x, w, b, &c, scratch, -1));
            want_db[i] = (float)(c.db[i] + central_diff(&b[i], x, w, b, &c, scratch, -1));
        }
        run_forward(ISA_SCALAR, &c);
        run_backward(ISA_SCALAR, &c);
        print_message("N=%d C=%d\n", N, C);
        assert_true(test_close("dinp", c.dinp, want_dinp, NC, BWD_ATOL, BWD_RTOL));
        assert_true(test_close("dweight", c.dw, want_dw, C, BWD_ATOL, BWD_RTOL));
        assert_true(test_close("dbias", c.db, want_db, C, BWD_ATOL, BWD_RTOL));
        free(want_dinp), free(want_dw), free(want_db), free(x), free(w), free(b), free(scratch);
        case_free(&c);
    }
}

static void test_simd_vs_scalar(void **state)
{
    for (isa_t isa = ISA_AVX2; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "layernorm"))
            continue;
        for (int s = 0; s < NSHAPES; s++) {
            ln_case ref = case_new(shapes[s][0], shapes[s][1], 300 + s), got = case_copy(&ref);
            const size_t NC = (size_t)ref.N * ref.C;
            run_forward(ISA_SCALAR, &ref);
            run_backward(ISA_SCALAR, &ref);
            run_forward(isa, &got);
            run_backward(isa, &got);
            print_message("%s N=%d C=%d\n", cpu_isa_name(isa), ref.N, ref.C);
            assert_true(test_close("out", got.out, ref.out, NC, FWD_ATOL, FWD_RTOL));
            assert_true(test_close("mean", got.mean, ref.mean, ref.N, FWD_ATOL, FWD_RTOL));
            assert_true(test_close("rstd", got.rstd, ref.rstd, ref.N, FWD_ATOL, FWD_RTOL));
            assert_true(test_close("dinp", got.dinp, ref.dinp, NC, BWD_ATOL, BWD_RTOL));
            assert_true(test_close("dweight", got.dw, ref.dw, ref.C, BWD_ATOL, BWD_RTOL));
            assert_true(test_close("dbias", got.db, ref.db, ref.C, BWD_ATOL, BWD_RTOL));
            case_free(&ref);
            case_free(&got);
        }
    }
}

/* Constant rows, and rows whose variance is far below eps around a large
 * mean: rstd is then near 1/sqrt(eps) = 316, which magnifies any rounding
 * of the mean into out.  The scalar path's double mean makes a constant row
 * exactly its bias; the SIMD paths must agree to the forward tolerance.
 * C = 97: whole vectors and a one-value tail on both widths. */
static void test_flat_rows_as_scalar(void **state)
{
    static const float level[] = {0.1f, 3.3f, 1000.1f, 12345.6f, -777.7f, 1000.0f, -50.0f};
    static const float ripple[] = {0, 0, 0, 0, 0, 1e-4f, 1e-5f};
    enum { N = sizeof level / sizeof level[0], C = 97 };
    for (isa_t isa = ISA_AVX2; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "layernorm"))
            continue;
        ln_case ref = case_new(N, C, 700);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < C; i++)
                ref.inp[(size_t)n * C + i] = level[n] + ripple[n] * (float)(i % 5);
        ln_case got = case_copy(&ref);
        run_forward(ISA_SCALAR, &ref);
        run_forward(isa, &got);
        print_message("%s: constant and nearly constant rows\n", cpu_isa_name(isa));
        assert_true(test_close("out", got.out, ref.out, (size_t)N * C, FWD_ATOL, FWD_RTOL));
        assert_true(test_close("mean", got.mean, ref.mean, N, 0.0f, FWD_RTOL));
        assert_true(test_close("rstd", got.rstd, ref.rstd, N, 0.0f, FWD_RTOL));
        case_free(&ref);
        case_free(&got);
    }
}

/* Rows of finite values whose squares (or sums) overflow float: the SIMD
 * paths' float statistics give var = inf there, and the row must still be
 * normalised as the scalar path's double sums do, not collapse to the bias
 * with rstd 0.  C = 65: 64 + a one-value tail. */
static void test_huge_rows_as_scalar(void **state)
{
    static const float scales[] = {1e18f, 1e25f, 3e36f, 1e38f};
    enum { N = sizeof scales / sizeof scales[0], C = 65 };
    for (isa_t isa = ISA_AVX2; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "layernorm"))
            continue;
        ln_case ref = case_new(N, C, 600);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < C; i++)   /* spread around a mean of 1.5 scale */
                ref.inp[(size_t)n * C + i] = scales[n] * (1.5f + (float)(i % 7) / 4.0f);
        ln_case got = case_copy(&ref);
        run_forward(ISA_SCALAR, &ref);
        run_forward(isa, &got);
        print_message("%s: rows of magnitude up to 1e38\n", cpu_isa_name(isa));
        assert_true(test_close("out", got.out, ref.out, (size_t)N * C, FWD_ATOL, FWD_RTOL));
        assert_true(test_close("mean", got.mean, ref.mean, N, FWD_ATOL, FWD_RTOL));
        assert_true(test_close("rstd", got.rstd, ref.rstd, N, 0.0f, FWD_RTOL));
        case_free(&ref);
        case_free(&got);
    }
}

static void assert_same_bits(const ln_case *a, const ln_case *b)
{
    const size_t NC = (size_t)a->N * a->C;
    assert_memory_equal(a->out, b->out, NC * sizeof(float));
    assert_memory_equal(a->mean, b->mean, a->N * sizeof(float));
    assert_memory_equal(a->rstd, b->rstd, a->N * sizeof(float));
    assert_memory_equal(a->dinp, b->dinp, NC * sizeof(float));
    assert_memory_equal(a->dw, b->dw, a->C * sizeof(float));
    assert_memory_equal(a->db, b->db, a->C * sizeof(float));
}

/* Big enough to go parallel; dweight/dbias sum over all rows. */
static void test_thread_count_invariance(void **state)
{
    const int saved = omp_get_max_threads();
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "layernorm"))
            continue;
        ln_case one = case_new(512, 1100, 400), three = case_copy(&one);
        omp_set_num_threads(1);
        run_forward(isa, &one);
        run_backward(isa, &one);
        omp_set_num_threads(3);
        run_forward(isa, &three);
        run_backward(isa, &three);
        print_message("%s: 1 vs 3 threads\n", cpu_isa_name(isa));
        assert_same_bits(&one, &three);
        case_free(&one);
        case_free(&three);
    }
    omp_set_num_threads(saved);
}

static void test_public_dispatch(void **state)
{
    const isa_t isa = cpu_isa();
    print_message("active path: %s\n", cpu_isa_name(isa));
    ln_case pub = case_new(7, 65, 500), ref = case_copy(&pub);
    layernorm_forward(pub.out, pub.mean, pub.rstd, pub.inp, pub.weight, pub.bias, pub.N, pub.C);
    layernorm_backward(pub.dinp, pub.dw, pub.db, pub.dout, pub.inp, pub.weight, pub.mean, pub.rstd,
                       pub.N, pub.C);
    run_forward(isa, &ref);
    run_backward(isa, &ref);
    assert_same_bits(&pub, &ref);
    case_free(&pub);
    case_free(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_scalar_vs_double),
        cmocka_unit_test(test_backward_scalar_vs_finite_differences),
        cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_huge_rows_as_scalar),
        cmocka_unit_test(test_flat_rows_as_scalar),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_public_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
