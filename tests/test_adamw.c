/* adamw: several steps of the scalar path against the header's formula in
 * double (with and without weight decay, gradient scaling, zero gradients),
 * every SIMD path against the scalar one; sumsq against a long double sum,
 * on an input long enough to defeat float accumulators, across thread
 * counts; the public dispatch.  lr is large so that the order of decay and
 * update and the bias correction show at well above rounding level.
 *
 * Tolerances (atol, rtol as in test_close): param 1e-6, 1e-6; m 1e-7, 1e-5;
 * v 1e-12, 1e-5 (float state against double over 5 steps); sumsq 1e-12 relative
 * (1e-9 on the 2^24-value input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <omp.h>
#include <string.h>

#include "kernels/adamw.h"
#include "tests/test_util.h"

#define PARAM_ATOL 1e-6f
#define PARAM_RTOL 1e-6f
#define M_ATOL 1e-7f    /* m cancels (gradients change sign): its scale is |(1-beta1) g| */
#define V_ATOL 1e-12f
#define MOMENT_RTOL 1e-5f
#define SUMSQ_RTOL 1e-12
#define STEPS 5

static const size_t lengths[] = {1, 7, 15, 16, 17, 1003, 100003};
enum { NLENGTHS = sizeof lengths / sizeof lengths[0] };

static adamw_params hparams(float weight_decay)
{
    return (adamw_params){.lr = 0.05f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                          .weight_decay = weight_decay, .grad_scale = 0.5f, .step = 1};
}

typedef struct {
    size_t n;
    float *param, *m, *v, *grad;
} adam_state;

static adam_state state_new(size_t n, uint64_t seed)
{
    adam_state s = {n, malloc(n * sizeof(float)), calloc(n, sizeof(float)),
                    calloc(n, sizeof(float)), malloc(n * sizeof(float))};
    assert_true(s.param && s.m && s.v && s.grad);
    test_fill(s.param, n, seed, 1.0f);
    return s;
}

static void state_free(adam_state *s)
{
    free(s->param), free(s->m), free(s->v), free(s->grad);
}

/* Step t's gradients; the first few stay 0 (m = v = 0: the update must be 0). */
static void fill_grad(adam_state *s, int t)
{
    test_fill(s->grad, s->n, 1000 + t, 2.0f);
    for (size_t i = 0; i < s->n && i < 3; i++)
        s->grad[i] = 0.0f;
}

/* The header's formula in double. */
static void ref_step(double *param, double *m, double *v, const float *grad, size_t n,
                     const adamw_params *p)
{
    const double bc1 = 1 - pow(p->beta1, p->step), bc2 = 1 - pow(p->beta2, p->step);
    for (size_t i = 0; i < n; i++) {
        const double g = (double)grad[i] * p->grad_scale;
        param[i] -= (double)p->lr * p->weight_decay * param[i];
        m[i] = p->beta1 * m[i] + (1 - (double)p->beta1) * g;
        v[i] = p->beta2 * v[i] + (1 - (double)p->beta2) * g * g;
        param[i] -= p->lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + p->eps);
    }
}

static float *to_float(const double *x, size_t n)
{
    float *y = malloc(n * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)x[i];
    return y;
}

static isa_t next_isa(isa_t isa)   /* the next supported path after isa, or ISA_COUNT */
{
    for (isa++; isa < ISA_COUNT && !test_isa_runs(isa, "adamw"); isa++)
        ;
    return isa;
}

static void assert_state_close(const adam_state *got, const float *param, const float *m,
                               const float *v)
{
    assert_true(test_close("param", got->param, param, got->n, PARAM_ATOL, PARAM_RTOL));
    assert_true(test_close("m", got->m, m, got->n, M_ATOL, MOMENT_RTOL));
    assert_true(test_close("v", got->v, v, got->n, V_ATOL, MOMENT_RTOL));
}

static void test_update_scalar_vs_double(void **state)
{
    const size_t n = 1003;
    for (int d = 0; d < 2; d++) {
        adamw_params p = hparams(d ? 0.1f : 0.0f);
        adam_state s = state_new(n, 1);
        double *param = malloc(n * sizeof *param), *m = calloc(n, sizeof *m),
               *v = calloc(n, sizeof *v);
        assert_true(param && m && v);
        for (size_t i = 0; i < n; i++)
            param[i] = s.param[i];
        for (p.step = 1; p.step <= STEPS; p.step++) {
            fill_grad(&s, p.step);
            adamw_update_isa(ISA_SCALAR, s.param, s.grad, s.m, s.v, n, &p);
            ref_step(param, m, v, s.grad, n, &p);
            float *fp = to_float(param, n), *fm = to_float(m, n), *fv = to_float(v, n);
            print_message("weight_decay=%g step %d\n", p.weight_decay, p.step);
            assert_state_close(&s, fp, fm, fv);
            free(fp), free(fm), free(fv);
        }
        free(param), free(m), free(v);
        state_free(&s);
    }
}

/* One step from the same state: the decayed run ends lower by lr * wd * param. */
static void test_weight_decay(void **state)
{
    const size_t n = 1003;
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        adam_state plain = state_new(n, 2), decayed = state_new(n, 2);
        const adamw_params p0 = hparams(0.0f), pw = hparams(0.3f);
        fill_grad(&plain, 1);
        fill_grad(&decayed, 1);
        float *start = malloc(n * sizeof *start), *diff = malloc(n * sizeof *diff),
              *want = malloc(n * sizeof *want);
        assert_true(start && diff && want);
        memcpy(start, plain.param, n * sizeof *start);
        adamw_update_isa(isa, plain.param, plain.grad, plain.m, plain.v, n, &p0);
        adamw_update_isa(isa, decayed.param, decayed.grad, decayed.m, decayed.v, n, &pw);
        for (size_t i = 0; i < n; i++) {
            diff[i] = plain.param[i] - decayed.param[i];
            want[i] = pw.lr * pw.weight_decay * start[i];
        }
        print_message("%s\n", cpu_isa_name(isa));
        assert_true(test_close("decay", diff, want, n, 1e-6f, 1e-4f));
        free(start), free(diff), free(want);
        state_free(&plain);
        state_free(&decayed);
    }
}

static void test_update_simd_vs_scalar(void **state)
{
    for (isa_t isa = next_isa(ISA_SCALAR); isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int l = 0; l < NLENGTHS; l++) {
            adam_state ref = state_new(lengths[l], 3), got = state_new(lengths[l], 3);
            adamw_params p = hparams(0.1f);
            for (p.step = 1; p.step <= STEPS; p.step++) {
                fill_grad(&ref, p.step);
                fill_grad(&got, p.step);
                adamw_update_isa(ISA_SCALAR, ref.param, ref.grad, ref.m, ref.v, ref.n, &p);
                adamw_update_isa(isa, got.param, got.grad, got.m, got.v, got.n, &p);
            }
            print_message("%s n=%zu\n", cpu_isa_name(isa), ref.n);
            assert_state_close(&got, ref.param, ref.m, ref.v);
            state_free(&ref);
            state_free(&got);
        }
    }
}

/* ---- sumsq ---- */

static void assert_rel(double got, double want, double rtol)
{
    if (!(fabs(got - want) <= rtol * fabs(want)))
        fail_msg("got %.17g want %.17g", got, want);
}

static void test_sumsq_vs_long_double(void **state)
{
    static const size_t ns[] = {0, 1, 7, 17, 1000003};
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            const size_t n = ns[k];
            float *x = malloc((n ? n : 1) * sizeof *x);
            assert_non_null(x);
            test_fill(x, n, 4 + k, 3.0f);
            long double want = 0;
            for (size_t i = 0; i < n; i++)
                want += (long double)x[i] * x[i];
            print_message("%s n=%zu\n", cpu_isa_name(isa), n);
            assert_rel(sumsq_isa(isa, x, n), (double)want, SUMSQ_RTOL);
            free(x);
        }
    }
}

/* 2^24 + 5 equal squares: float accumulators would stall far from the sum. */
static void test_sumsq_long_input(void **state)
{
    const size_t n = ((size_t)1 << 24) + 5;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.1f;
    const double want = (double)n * ((double)0.1f * 0.1f);
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        print_message("%s\n", cpu_isa_name(isa));
        assert_rel(sumsq_isa(isa, x, n), want, 1e-9);
    }
    free(x);
}

static void test_sumsq_thread_count_invariance(void **state)
{
    const int saved = omp_get_max_threads();
    const size_t n = 1000003;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    test_fill(x, n, 5, 1.0f);
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        omp_set_num_threads(1);
        const double one = sumsq_isa(isa, x, n);
        omp_set_num_threads(3);
        const double three = sumsq_isa(isa, x, n);
        print_message("%s: %.17g vs %.17g\n", cpu_isa_name(isa), one, three);
        assert_memory_equal(&one, &three, sizeof one);
    }
    omp_set_num_threads(saved);
    free(x);
}

static void test_public_dispatch(void **state)
{
    const isa_t isa = cpu_isa();
    print_message("active path: %s\n", cpu_isa_name(isa));
    adam_state pub = state_new(1003, 6), ref = state_new(1003, 6);
    const adamw_params p = hparams(0.1f);
    fill_grad(&pub, 1);
    fill_grad(&ref, 1);
    adamw_update(pub.param, pub.grad, pub.m, pub.v, pub.n, &p);
    adamw_update_isa(isa, ref.param, ref.grad, ref.m, ref.v, ref.n, &p);
    assert_memory_equal(pub.param, ref.param, pub.n * sizeof(float));
    assert_memory_equal(pub.m, ref.m, pub.n * sizeof(float));
    assert_memory_equal(pub.v, ref.v, pub.n * sizeof(float));
    const double a = sumsq(pub.param, pub.n), b = sumsq_isa(isa, pub.param, pub.n);
    assert_memory_equal(&a, &b, sizeof a);
    state_free(&pub);
    state_free(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_scalar_vs_double),
        cmocka_unit_test(test_weight_decay),
        cmocka_unit_test(test_update_simd_vs_scalar),
        cmocka_unit_test(test_sumsq_vs_long_double),
        cmocka_unit_test(test_sumsq_long_input),
        cmocka_unit_test(test_sumsq_thread_count_invariance),
        cmocka_unit_test(test_public_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
