/* infer_sample on degenerate parameters and logits: every accepted value (and
 * the extremes beyond) draws a token in range, and the argmax wherever the
 * distribution collapses onto it: temperatures that underflow, top-k 1,
 * top-p 0 or tiny, +inf logits.  NaN and -inf logits are never drawn.  Run
 * under SAN=1 this also checks that no index leaves the candidate buffer.
 * Then the distribution itself: 20000 draws with fixed seeds against
 * softmax(logits / T), top-k and the top-p nucleus (its boundary inclusive),
 * by a chi-square bound. */
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

/* Seed 3747935's first draw is the largest, 1 - 2^-24, and these
 * probabilities sum (in float, in order) to less: the draw falls past every
 * candidate, and must still not be the last, whose logit is -inf or NaN. */
static void test_draw_past_the_rounded_total(void **state)
{
    (void)state;
    float x[6] = {3.588f, 2.48f, -0.684f, 2.32f, 1.992f, -INFINITY};
    int out[1];
    for (int k = 0; k < 2; k++, x[5] = NAN) {
        draw(out, 1, x, 6, 1.0f, 0, 1.0f, 3747935);
        assert_int_not_equal(out[0], 5);
    }
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

/* ---- the distribution drawn from ---- */

enum { NDRAWS = 20000 };

/* Counts of NDRAWS draws over a vocabulary of nv <= 8 tokens. */
static void count_draws(long *counts, const float *logits, int nv, float t, int k, float p,
                        uint64_t seed)
{
    static int out[NDRAWS];
    draw(out, NDRAWS, logits, nv, t, k, p, seed);
    for (int i = 0; i < nv; i++)
        counts[i] = 0;
    for (int i = 0; i < NDRAWS; i++)
        counts[out[i]]++;
}

/* Pearson's chi-square of counts against probabilities want (summing to 1):
 * a token of probability 0 must never be drawn, and the statistic must stay
 * below the 0.1% point of its distribution.  The seeds are fixed, so this is
 * deterministic; the bound says how far from the distribution the draws may
 * be (a probability off by 0.01 adds ~4-20 to the statistic here). */
static void expect_distribution(const char *what, const long *counts, const double *want, int nv)
{
    static const double crit[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
    double chi2 = 0;
    int df = -1;
    for (int i = 0; i < nv; i++) {
        if (want[i] == 0) {
            if (counts[i] != 0)
                fail_msg("%s: token %d (probability 0) drawn %ld times", what, i, counts[i]);
            continue;
        }
        const double e = want[i] * NDRAWS;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
        df++;
    }
    print_message("%s: chi-square %.2f, %d degrees of freedom\n", what, chi2, df);
    if (df > 0 && !(chi2 < crit[df]))
        fail_msg("%s: chi-square %.2f >= %.2f (%d degrees of freedom)", what, chi2, crit[df], df);
}

/* Logits whose softmax is (0.5, 0.3, 0.15, 0.05). */
static const double P4[4] = {0.5, 0.3, 0.15, 0.05};

static void p4_logits(float *x)
{
    for (int i = 0; i < 4; i++)
        x[i] = (float)log(P4[i]) + 1.25f;   /* any shift: softmax is the same */
}

/* The nucleus is the smallest prefix of the tokens, most likely first, whose
 * probability reaches top_p (docs/inference.md), renormalised. */
static void test_top_p_keeps_the_nucleus(void **state)
{
    (void)state;
    float x[4];
    long counts[4];
    p4_logits(x);
    /* 0.5 < 0.7 <= 0.8: {0, 1} */
    count_draws(counts, x, 4, 1.0f, 0, 0.7f, 21);
    expect_distribution("top-p 0.7", counts, (const double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0}, 4);
    /* 0.8 < 0.85 <= 0.95: {0, 1, 2} */
    count_draws(counts, x, 4, 1.0f, 0, 0.85f, 22);
    expect_distribution("top-p 0.85", counts,
                        (const double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 4);
    /* 0.4: the most likely alone reaches it */
    count_draws(counts, x, 4, 1.0f, 0, 0.4f, 23);
    expect_distribution("top-p 0.4", counts, (const double[]){1, 0, 0, 0}, 4);
    /* top-p after top-k: top-k 3 leaves (0.5, 0.3, 0.15) / 0.95; 0.8 needs
     * 0.5/0.95 + 0.3/0.95 = 0.84 of it: {0, 1} */
    count_draws(counts, x, 4, 1.0f, 3, 0.8f, 24);
    expect_distribution("top-k 3 top-p 0.8", counts, (const double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0},
                        4);
}

/* "Reaches" is inclusive: four equal logits give probabilities of exactly
 * 0.25 (exp(0) / 4), ties go to the lowest index, so top-p 0.5 is reached
 * exactly by {0, 1} and 0.75 by {0, 1, 2}; an exclusive rule would take one
 * token more. */
static void test_top_p_boundary_is_inclusive(void **state)
{
    (void)state;
    const float x[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    long counts[4];
    count_draws(counts, x, 4, 1.0f, 0, 0.5f, 25);
    expect_distribution("flat, top-p 0.5", counts, (const double[]){0.5, 0.5, 0, 0}, 4);
    count_draws(counts, x, 4, 1.0f, 0, 0.75f, 26);
    expect_distribution("flat, top-p 0.75", counts, (const double[]){1 / 3.0, 1 / 3.0, 1 / 3.0, 0},
                        4);
}

/* With top-p 1 and top-k 0 the draws follow softmax(logits / T). */
static void test_draws_follow_the_softmax(void **state)
{
    (void)state;
    float x[4];
    long counts[4];
    p4_logits(x);
    count_draws(counts, x, 4, 1.0f, 0, 1.0f, 27);
    expect_distribution("T 1", counts, P4, 4);
    double half[4], sum = 0;   /* softmax(l / 2) is proportional to sqrt(P4) */
    for (int i = 0; i < 4; i++)
        sum += half[i] = sqrt(P4[i]);
    for (int i = 0; i < 4; i++)
        half[i] /= sum;
    count_draws(counts, x, 4, 2.0f, 0, 1.0f, 28);
    expect_distribution("T 2", counts, half, 4);
    /* top-k 2: the two most likely, renormalised */
    count_draws(counts, x, 4, 1.0f, 2, 1.0f, 29);
    expect_distribution("top-k 2", counts, (const double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0}, 4);
    /* the order of the vocabulary plays no part */
    const float y[5] = {x[2], -INFINITY, x[0], x[3], x[1]};
    long c5[5];
    count_draws(c5, y, 5, 1.0f, 0, 1.0f, 30);
    expect_distribution("T 1, shuffled", c5, (const double[]){P4[2], 0, P4[0], P4[3], P4[1]}, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_temperatures_give_the_argmax),
        cmocka_unit_test(test_greedy_settings_give_the_argmax),
        cmocka_unit_test(test_flat_distribution_with_tiny_top_p),
        cmocka_unit_test(test_huge_temperatures_spread),
        cmocka_unit_test(test_non_finite_logits),
        cmocka_unit_test(test_draw_past_the_rounded_total),
        cmocka_unit_test(test_vocabulary_of_one),
        cmocka_unit_test(test_top_p_keeps_the_nucleus),
        cmocka_unit_test(test_top_p_boundary_is_inclusive),
        cmocka_unit_test(test_draws_follow_the_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
