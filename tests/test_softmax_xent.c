/* softmax_xent: losses against -log_softmax in double and gradients against
 * dloss * (softmax - onehot) in double, for the scalar path and every SIMD
 * path; gradient rows sum to ~0; backward=false leaves the logits untouched;
 * the public dispatch.  Rows mix scales (up to exp's underflow range) and
 * offsets of +-1000 that overflow without the max subtraction.
 *
 * Tolerances (atol, rtol as in test_close): losses 1e-5, 1e-5; gradients
 * 1e-8, 5e-5: the SIMD paths form p - 1 in float (~2^-24 |dloss| absolute:
 * with a dominant target p rounds to 1) and x - max in float (up to
 * |x - max| 2^-24 relative in exp); |sum of a gradient row| <= 1e-5 |dloss|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kernels/convert.h"
#include "kernels/softmax_xent.h"
#include "tests/test_util.h"

#define LOSS_ATOL 1e-5f
#define LOSS_RTOL 1e-5f
#define GRAD_ATOL 1e-8f
#define GRAD_RTOL 5e-5f
#define ROWSUM_TOL 1e-5

enum { N = 7 };
static const int vocab_sizes[] = {50257, 65, 16000, 17, 16, 1, 2, 257, 50304};
enum { NVOCAB = sizeof vocab_sizes / sizeof vocab_sizes[0] };
static const float dloss = 1.0f / N;

typedef struct {
    int V;
    float *logits;   /* [N, V] */
    int targets[N];
} xent_case;

static xent_case case_new(int V, uint64_t seed)
{
    /* row: scale, offset; row 5 gets a dominant target (p ~ 1, loss ~ 0) */
    static const float scale[N] = {1, 10, 3, 100, 3, 1, 1},
                       offset[N] = {0, 0, 1000, 0, -1000, 0, 0};
    xent_case c = {V, malloc((size_t)N * V * sizeof(float)), {0}};
    assert_non_null(c.logits);
    for (int n = 0; n < N; n++) {
        float *x = c.logits + (size_t)n * V;
        test_fill(x, V, seed + n, scale[n]);
        for (int v = 0; v < V; v++)
            x[v] += offset[n];
        c.targets[n] = (int)((n * 7919u + 13u) % (unsigned)V);
    }
    c.targets[N - 1] = V - 1;   /* in the last, partial vector */
    c.logits[(size_t)5 * V + c.targets[5]] += 30.0f;
    return c;
}

static float *copy_floats(const float *x, size_t n)
{
    float *y = malloc(n * sizeof *y);
    assert_non_null(y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* Losses and gradients of a case in double, rounded to float. */
static void reference(const xent_case *c, float *losses, float *grads)
{
    const int V = c->V;
    for (int n = 0; n < N; n++) {
        const float *x = c->logits + (size_t)n * V;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, x[v]);
        for (int v = 0; v < V; v++)
            sum += exp(x[v] - mx);
        losses[n] = (float)(log(sum) - (x[c->targets[n]] - mx));
        for (int v = 0; v < V; v++)
            grads[(size_t)n * V + v] =
                (float)(dloss * (exp(x[v] - mx) / sum - (v == c->targets[n])));
    }
}

static isa_t next_isa(isa_t isa)   /* the next supported path after isa, or ISA_COUNT */
{
    for (isa++; isa < ISA_COUNT && !test_isa_runs(isa, "softmax_xent"); isa++)
        ;
    return isa;
}

static void assert_rows_sum_to_zero(const float *grads, int V)
{
    for (int n = 0; n < N; n++) {
        double sum = 0;
        for (int v = 0; v < V; v++)
            sum += grads[(size_t)n * V + v];
        if (!(fabs(sum) <= ROWSUM_TOL * dloss))
            fail_msg("row %d: gradient sums to %g", n, sum);
    }
}

static void test_against_double(void **state)
{
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int s = 0; s < NVOCAB; s++) {
            xent_case c = case_new(vocab_sizes[s], 10 * s);
            const size_t NV = (size_t)N * c.V;
            float want_losses[N], losses[N], *want_grads = malloc(NV * sizeof(float));
            assert_non_null(want_grads);
            reference(&c, want_losses, want_grads);
            softmax_xent_isa(isa, losses, c.logits, c.targets, N, c.V, dloss, true);
            print_message("%s V=%d\n", cpu_isa_name(isa), c.V);
            assert_true(test_close("loss", losses, want_losses, N, LOSS_ATOL, LOSS_RTOL));
            assert_true(test_close("grad", c.logits, want_grads, NV, GRAD_ATOL, GRAD_RTOL));
            assert_rows_sum_to_zero(c.logits, c.V);
            free(want_grads);
            free(c.logits);
        }
    }
}

static void test_simd_vs_scalar(void **state)
{
    for (isa_t isa = next_isa(ISA_SCALAR); isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int s = 0; s < NVOCAB; s++) {
            xent_case c = case_new(vocab_sizes[s], 20 * s);
            float *ref = copy_floats(c.logits, (size_t)N * c.V), ref_losses[N], losses[N];
            softmax_xent_isa(ISA_SCALAR, ref_losses, ref, c.targets, N, c.V, dloss, true);
            softmax_xent_isa(isa, losses, c.logits, c.targets, N, c.V, dloss, true);
            print_message("%s V=%d\n", cpu_isa_name(isa), c.V);
            assert_true(test_close("loss", losses, ref_losses, N, LOSS_ATOL, LOSS_RTOL));
            assert_true(test_close("grad", c.logits, ref, (size_t)N * c.V, GRAD_ATOL, GRAD_RTOL));
            free(ref);
            free(c.logits);
        }
    }
}

/* backward=false: the same losses, and the logits are left as they were. */
static void test_forward_only_leaves_logits(void **state)
{
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        for (int s = 0; s < NVOCAB; s++) {
            xent_case c = case_new(vocab_sizes[s], 30 * s);
            const size_t NV = (size_t)N * c.V;
            float *orig = copy_floats(c.logits, NV), fwd_losses[N], bwd_losses[N];
            softmax_xent_isa(isa, fwd_losses, c.logits, c.targets, N, c.V, dloss, false);
            print_message("%s V=%d\n", cpu_isa_name(isa), c.V);
            assert_memory_equal(c.logits, orig, NV * sizeof(float));
            softmax_xent_isa(isa, bwd_losses, c.logits, c.targets, N, c.V, dloss, true);
            assert_memory_equal(fwd_losses, bwd_losses, sizeof fwd_losses);
            free(orig);
            free(c.logits);
        }
    }
}

static void test_public_dispatch(void **state)
{
    const isa_t isa = cpu_isa();
    print_message("active path: %s\n", cpu_isa_name(isa));
    xent_case c = case_new(65, 40);
    float *ref = copy_floats(c.logits, (size_t)N * c.V), ref_losses[N], losses[N];
    softmax_xent(losses, c.logits, c.targets, N, c.V, dloss, true);
    softmax_xent_isa(isa, ref_losses, ref, c.targets, N, c.V, dloss, true);
    assert_memory_equal(losses, ref_losses, sizeof losses);
    assert_memory_equal(c.logits, ref, (size_t)N * c.V * sizeof(float));
    free(ref);
    free(c.logits);
}

/* backward16 = softmax_xent backward then the 16-bit conversion, bit for bit,
 * on every path, for vocabularies with and without a tail (1000, 257, 17,
 * 2, 1) over an odd number of rows. */
static void test_backward16_matches_two_passes(void **state)
{
    (void)state;
    enum { ROWS = 37, VMAX = 1000 };
    static const int vs[] = {VMAX, 257, 17, 2, 1};
    float *a = malloc(ROWS * VMAX * sizeof *a), *b = malloc(ROWS * VMAX * sizeof *b);
    float la[ROWS], lb[ROWS];
    uint16_t *ha = malloc(ROWS * VMAX * sizeof *ha), *hb = malloc(ROWS * VMAX * sizeof *hb);
    int targets[ROWS];
    const isa_t saved = cpu_isa();
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        cpu_set_isa(isa);
        for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++) {
            const int V = vs[k];
            for (int n = 0; n < ROWS; n++)
                targets[n] = (n * 389) % V;
            for (int fp16 = 0; fp16 < 2; fp16++) {
                test_fill(a, ROWS * V, 41, 8.0f);
                memcpy(b, a, ROWS * V * sizeof *a);
                softmax_xent(la, a, targets, ROWS, V, 0.25f, true);
                (fp16 ? f32_to_f16 : f32_to_bf16)(ha, a, ROWS * V);
                softmax_xent_backward16(lb, b, hb, fp16, targets, ROWS, V, 0.25f);
                assert_memory_equal(la, lb, sizeof la);
                assert_memory_equal(ha, hb, ROWS * V * sizeof *ha);
            }
        }
    }
    cpu_set_isa(saved);
    free(a), free(b), free(ha), free(hb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_double),
        cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_forward_only_leaves_logits),
        cmocka_unit_test(test_public_dispatch),
        cmocka_unit_test(test_backward16_matches_two_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
