/* infer_sample on degenerate parameters and logits: every accepted value (and
 * the extremes beyond) draws a token in range, and the argmax wherever the
 * distribution collapses onto it: temperatures that underflow, top-k 1,
 * top-p 0 or tiny, +inf logits.  NaN and -inf logits are never drawn.  Run
 * under SAN=1 this also checks that no index leaves the candidate buffer. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "infer/infer.h"

enum { V = 50, DRAWS = 200 };

/* n draws with these parameters; each one asserted in range. */
static void draw(int *out, int n, const float *logits, int nv, float t, int k, float p,
                 uint64_t seed)
{
    infer_sampler s;
    char err[128];
    assert_int_equal(infer_sampler_init(&s, nv, t, k, p, seed, err, sizeof err), 0);
    for (int i = 0; i < n; i++) {
        out[i] = infer_sample(&s, logits);
        assert_true(out[i] >= 0 && out[i] < nv);
    }
    infer_sampler_free(&s);
}

static void distinct_logits(float *x)
{
    for (int i = 0; i < V; i++)   /* a spread of values, the largest at 17 */
        x[i] = (float)((i * 37) % V) * 0.1f - 2.0f;
    x[17] = 3.5f;
}

static void test_tiny_temperatures_give_the_argmax(void **state)
{
    (void)state;
    float x[V];
    int out[DRAWS];
    distinct_logits(x);
    const float temps[] = {1e-39f, 1e-30f, FLT_MIN, FLT_TRUE_MIN, 1e-20f};
    const int ks[] = {0, 1, 5, V, V + 1, INT_MAX, -3};
    const float ps[] = {1.0f, 0.95f, 0.5f, 1e-6f, FLT_MIN, 0.0f, -1.0f};
    for (size_t a = 0; a < sizeof temps / sizeof *temps; a++)
        for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
            for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
                draw(out, 20, x, V, temps[a], ks[b], ps[c], a * 100 + b * 10 + c);
                for (int i = 0; i < 20; i++)
                    assert_int_equal(out[i], 17);
            }
    /* best logits near 0 or below it: the scaled gaps still overflow */
    for (int i = 0; i < V; i++)
        x[i] -= 3.5f;
    draw(out, 20, x, V, 1e-39f, 0, 1.0f, 1);
    for (int i = 0; i < 20; i++)
        assert_int_equal(out[i], 17);
    for (int i = 0; i < V; i++)
        x[i] -= 10.0f;
    draw(out, 20, x, V, 1e-39f, 0, 0.9f, 1);
    for (int i = 0; i < 20; i++)
        assert_int_equal(out[i], 17);
}

static void test_greedy_settings_give_the_argmax(void **state)
{
    (void)state;
    float x[V];
    int out[DRAWS];
    distinct_logits(x);
    const float temps[] = {0.0f, -1.0f, NAN, -INFINITY};
    for (size_t a = 0; a < sizeof temps / sizeof *temps; a++) {
        draw(out, 10, x, V, temps[a], 0, 1.0f, 3);
        assert_int_equal(out[9], 17);
    }
    const float temps_on[] = {0.5f, 1.0f, 100.0f, 1e4f};
    for (size_t a = 0; a < sizeof temps_on / sizeof *temps_on; a++) {
        draw(out, DRAWS, x, V, temps_on[a], 1, 1.0f, 4);   /* top-k 1 */
        for (int i = 0; i < DRAWS; i++)
            assert_int_equal(out[i], 17);
        draw(out, DRAWS, x, V, temps_on[a], 0, 0.0f, 4);   /* top-p 0 */
        for (int i = 0; i < DRAWS; i++)
            assert_int_equal(out[i], 17);
    }
}

/* A flat distribution (every logit equal, or nearly so at a large
 * temperature) with a tiny top-p: the nucleus is the first candidate alone.  The
 * shortcut that drops candidates below (1 - p) / (n - 1) used to drop it too. */
static void test_flat_distribution_with_tiny_top_p(void **state)
{
    (void)state;
    float x[V];
    int out[DRAWS];
    for (int i = 0; i < V; i++)
        x[i] = 1.0f;
    const float ps[] = {1e-6f, FLT_MIN, 0.0f, 1e-3f};
    for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
        draw(out, DRAWS, x, V, 1.0f, 0, ps[c], 5);
        for (int i = 0; i < DRAWS; i++)
            assert_int_equal(out[i], 0);   /* ties: the lowest index first */
    }
    distinct_logits(x);
    draw(out, DRAWS, x, V, 1e3f, 0, 1e-6f, 6);
    for (int i = 0; i < DRAWS; i++)
        assert_int_equal(out[i], 17);
}

/* Huge and infinite temperatures: a (near) uniform draw, never out of range. */
static void test_huge_temperatures_spread(void **state)
{
    (void)state;
    float x[V];
    int out[DRAWS];
    distinct_logits(x);
    const float temps[] = {1e6f, 1e30f, FLT_MAX, INFINITY};
    for (size_t a = 0; a < sizeof temps / sizeof *temps; a++) {
        draw(out, DRAWS, x, V, temps[a], 0, 1.0f, 7);
        int seen[V] = {0}, distinct = 0;
        for (int i = 0; i < DRAWS; i++)
            distinct += !seen[out[i]]++;
        assert_true(distinct > V / 2);   /* ~49 of 50 expected from 200 uniform draws */
        draw(out, DRAWS, x, V, temps[a], 3, 1.0f, 7);   /* within the top 3 */
        for (int i = 0; i < DRAWS; i++)
            assert_true(x[out[i]] >= 2.7f);
    }
}

static void test_non_finite_logits(void **state)
{
    (void)state;
    float x[V];
    int out[DRAWS];
    const float temps[] = {1e-39f, 0.8f, 1.0f, 1e30f, INFINITY};
    for (size_t a = 0; a < sizeof temps / sizeof *temps; a++) {
        distinct_logits(x);
        x[4] = INFINITY;
        x[9] = INFINITY;
        draw(out, 20, x, V, temps[a], 0, 0.9f, 8);   /* +inf is certain: the first one */
        for (int i = 0; i < 20; i++)
            assert_int_equal(out[i], 4);
        distinct_logits(x);
        for (int i = 0; i < V; i += 2)
            x[i] = NAN;
        x[1] = -INFINITY;
        for (int k = 0; k <= V; k += 5) {   /* NaN and -inf are never drawn */
            draw(out, DRAWS, x, V, temps[a], k, 0.95f, 9);
            for (int i = 0; i < DRAWS; i++)
                assert_true(!isnan(x[out[i]]) && out[i] != 1);
        }
        for (int i = 0; i < V; i++)
            x[i] = NAN;
        draw(out, 10, x, V, temps[a], 5, 0.5f, 10);
        assert_int_equal(out[0], 0);
        for (int i = 0; i < V; i++)
            x[i] = -INFINITY;
        x[30] = NAN;
        draw(out, 10, x, V, temps[a], 0, 1.0f, 11);
        assert_int_equal(out[0], 0);
    }
    assert_int_equal(infer_argmax((const float[]){NAN, 1.0f, NAN, 2.0f}, 4), 3);
    assert_int_equal(infer_argmax((const float[]){NAN, NAN}, 2), 0);
}

static void test_vocabulary_of_one(void **state)
{
    (void)state;
    int out[DRAWS];
    float x[1] = {-5.0f};
    draw(out, DRAWS, x, 1, 1.0f, 0, 0.9f, 12);
    draw(out, DRAWS, x, 1, 1.0f, 7, 1e-6f, 12);
    draw(out, DRAWS, x, 1, 1e-39f, 1, 0.0f, 12);
    infer_sampler s;
    char err[128];
    assert_int_equal(infer_sampler_init(&s, 0, 1.0f, 0, 1.0f, 1, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_temperatures_give_the_argmax),
        cmocka_unit_test(test_greedy_settings_give_the_argmax),
        cmocka_unit_test(test_flat_distribution_with_tiny_top_p),
        cmocka_unit_test(test_huge_temperatures_spread),
        cmocka_unit_test(test_non_finite_logits),
        cmocka_unit_test(test_vocabulary_of_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
