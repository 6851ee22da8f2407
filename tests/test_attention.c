/* attention: every ISA path against a naive double-precision reference (full
 * T x T softmax per head) for out, lse and dqkv; a finite-difference check of
 * backward; causality; independence from the thread count; the accuracy of
 * simd_math.h's vector exp, which the AVX2 / AVX-512 primitives use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <omp.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/attention_impl.h"
#include "kernels/convert.h"
#include "tests/test_util.h"

typedef struct {
    int B, T, C, H;
} shape;

/* The brief's sizes (hs 32, 64, 24), plus hs = 8, and hs = 128 and 160 whose
 * tiles are 32 and 24 rows instead of 64.  Only T = 256 is a multiple of the
 * tile edge. */
static const shape shapes[] = {
    {2, 67, 96, 3}, {1, 256, 384, 6}, {1, 33, 48, 2},
    {1, 19, 16, 2}, {1, 130, 256, 2}, {1, 100, 320, 2},
};

/* Inputs ~U(-2,2) give scaled scores of standard deviation ~1.3: the softmax
 * is far from uniform and the running max moves between tiles. */
enum { QKV_SEED = 11, DOUT_SEED = 12, WORK_THREADS = 3 };
static const float QKV_SCALE = 2.0f;

/* Tolerances (absolute + relative, elementwise): fp32 with ~1-ulp exp against
 * double, on O(1) outputs and gradients.  Every path measures errors
 * <= 1.4e-6 on out and lse and <= 2.3e-6 on dqkv here: the worst element
 * uses 11% of its forward and 5% of its backward tolerance. */
static const float FWD_ATOL = 1e-5f, FWD_RTOL = 1e-5f;
static const float BWD_ATOL = 3e-5f, BWD_RTOL = 1e-4f;

typedef struct {
    shape s;
    size_t n3, n1, nl;   /* elements of qkv/dqkv, out/dout, lse */
    float *qkv, *dout, *out, *lse, *dqkv;
    float *ref_out, *ref_lse, *ref_dqkv;
    attention_work work;
} problem;

static float *alloc_floats(size_t n)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    return p;
}

static double dotd(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Softmax row i of head (b,h): p[j] for j <= i; returns lse. */
static double ref_probs(double *p, const float *qkv, const shape *s, int b, int h, int i)
{
    const int hs = s->C / s->H, ld = 3 * s->C;
    const float *base = qkv + (size_t)b * s->T * ld + h * hs;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j <= i; j++) {
        p[j] = dotd(base + (size_t)i * ld, base + (size_t)j * ld + s->C, hs) / sqrt(hs);
        mx = fmax(mx, p[j]);
    }
    for (int j = 0; j <= i; j++)
        sum += p[j] = exp(p[j] - mx);
    for (int j = 0; j <= i; j++)
        p[j] /= sum;
    return mx + log(sum);
}

/* out and lse of query i of head (b,h); p is scratch for T doubles. */
static void ref_forward_row(problem *pb, double *p, int b, int h, int i)
{
    const shape *s = &pb->s;
    const int hs = s->C / s->H, ld = 3 * s->C;
    const float *v = pb->qkv + (size_t)b * s->T * ld + 2 * s->C + h * hs;
    pb->ref_lse[((size_t)b * s->H + h) * s->T + i] = (float)ref_probs(p, pb->qkv, s, b, h, i);
    for (int d = 0; d < hs; d++) {
        double o = 0;
        for (int j = 0; j <= i; j++)
            o += p[j] * v[(size_t)j * ld + d];
        pb->ref_out[((size_t)b * s->T + i) * s->C + h * hs + d] = (float)o;
    }
}

static void ref_forward(problem *pb)
{
    const shape *s = &pb->s;
    double *p = malloc(s->T * sizeof *p);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            for (int i = 0; i < s->T; i++)
                ref_forward_row(pb, p, b, h, i);
    free(p);
}

/* dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), dP_ij = dO_i . V_j;
 * dQ_i = scale sum_j dS_ij K_j, dK_j = scale sum_i dS_ij Q_i, dV_j = sum_i P_ij dO_i. */
static void ref_backward_head(double *g, const problem *pb, int b, int h)
{
    const shape *s = &pb->s;
    const int hs = s->C / s->H, ld = 3 * s->C;
    const float *q = pb->qkv + (size_t)b * s->T * ld + h * hs, *k = q + s->C, *v = q + 2 * s->C;
    double *p = malloc(s->T * sizeof *p), *ds = malloc(s->T * sizeof *ds);
    for (int i = 0; i < s->T; i++) {
        const float *dout = pb->dout + ((size_t)b * s->T + i) * s->C + h * hs;
        ref_probs(p, pb->qkv, s, b, h, i);
        double dsum = 0;
        for (int j = 0; j <= i; j++) {
            ds[j] = dotd(dout, v + (size_t)j * ld, hs);
            dsum += p[j] * ds[j];
        }
        for (int j = 0; j <= i; j++) {
            ds[j] = p[j] * (ds[j] - dsum) / sqrt(hs);
            for (int d = 0; d < hs; d++) {
                g[(size_t)i * ld + d] += ds[j] * k[(size_t)j * ld + d];
                g[(size_t)j * ld + s->C + d] += ds[j] * q[(size_t)i * ld + d];
                g[(size_t)j * ld + 2 * s->C + d] += p[j] * dout[d];
            }
        }
    }
    free(p), free(ds);
}

static void ref_backward(problem *pb)
{
    const shape *s = &pb->s;
    const int hs = s->C / s->H, ld = 3 * s->C;
    double *g = calloc(pb->n3, sizeof *g);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            ref_backward_head(g + (size_t)b * s->T * ld + h * hs, pb, b, h);
    for (size_t i = 0; i < pb->n3; i++)
        pb->ref_dqkv[i] = (float)g[i];
    free(g);
}

/* Random inputs; the reference results are computed by problem_reference. */
static problem problem_new(shape s)
{
    problem pb = {.s = s};
    pb.n3 = (size_t)s.B * s.T * 3 * s.C;
    pb.n1 = (size_t)s.B * s.T * s.C;
    pb.nl = (size_t)s.B * s.H * s.T;
    pb.qkv = alloc_floats(pb.n3), pb.dqkv = alloc_floats(pb.n3);
    pb.dout = alloc_floats(pb.n1), pb.out = alloc_floats(pb.n1), pb.lse = alloc_floats(pb.nl);
    test_fill(pb.qkv, pb.n3, QKV_SEED, QKV_SCALE);
    test_fill(pb.dout, pb.n1, DOUT_SEED, 1.0f);
    /* threads: the most any test here asks for */
    assert_int_equal(attention_work_init(&pb.work, s.T, s.C / s.H, WORK_THREADS), 0);
    return pb;
}

static void problem_reference(problem *pb)
{
    pb->ref_out = alloc_floats(pb->n1), pb->ref_lse = alloc_floats(pb->nl);
    pb->ref_dqkv = alloc_floats(pb->n3);
    ref_forward(pb);
    ref_backward(pb);
}

static void problem_free(problem *pb)
{
    free(pb->qkv), free(pb->dqkv), free(pb->dout), free(pb->out), free(pb->lse);
    free(pb->ref_out), free(pb->ref_lse), free(pb->ref_dqkv);
    attention_work_free(&pb->work);
}

static void run_forward_in(problem *pb, isa_t isa, bool bf16)
{
    attention_forward_isa(isa, pb->out, pb->lse, pb->qkv, pb->s.B, pb->s.T, pb->s.C, pb->s.H,
                          bf16, &pb->work);
}

static void run_backward_in(problem *pb, isa_t isa, bool bf16)
{
    attention_backward_isa(isa, pb->dqkv, pb->dout, pb->qkv, pb->out, pb->lse, pb->s.B, pb->s.T,
                           pb->s.C, pb->s.H, bf16, &pb->work);
}

static void run_forward(problem *pb, isa_t isa)
{
    run_forward_in(pb, isa, false);
}

static void run_backward(problem *pb, isa_t isa)
{
    run_backward_in(pb, isa, false);
}

static void describe(char *buf, size_t n, const char *what, isa_t isa, const shape *s)
{
    snprintf(buf, n, "%s [%s B=%d T=%d C=%d H=%d]", what, cpu_isa_name(isa), s->B, s->T, s->C,
             s->H);
}

static void fill_nan(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

/* Every supported path against the reference of pb; dqkv and the outputs are
 * poisoned first, so anything left unwritten (or accumulated) shows. */
static void check_against_reference(problem *pb, float fwd_atol, float fwd_rtol, float bwd_atol,
                                    float bwd_rtol)
{
    char what[128];
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        fill_nan(pb->out, pb->n1);
        fill_nan(pb->lse, pb->nl);
        run_forward(pb, isa);
        describe(what, sizeof what, "out", isa, &pb->s);
        assert_true(test_close(what, pb->out, pb->ref_out, pb->n1, fwd_atol, fwd_rtol));
        describe(what, sizeof what, "lse", isa, &pb->s);
        assert_true(test_close(what, pb->lse, pb->ref_lse, pb->nl, fwd_atol, fwd_rtol));
        fill_nan(pb->dqkv, pb->n3);
        run_backward(pb, isa);
        describe(what, sizeof what, "dqkv", isa, &pb->s);
        assert_true(test_close(what, pb->dqkv, pb->ref_dqkv, pb->n3, bwd_atol, bwd_rtol));
    }
}

static void test_matches_reference(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        problem pb = problem_new(shapes[c]);
        problem_reference(&pb);
        check_against_reference(&pb, FWD_ATOL, FWD_RTOL, BWD_ATOL, BWD_RTOL);
        problem_free(&pb);
    }
}

/* bf16 products: Q, K, V, P, dO and dS rounded to bf16 (relative error up to
 * 2^-9 each) with fp32 sums, against the double reference: the scalar path's
 * emulation and, where the CPU has AVX512-BF16, vdpbf16ps; the fast path
 * also against the emulation (same roundings, other sums and exp: a P or dS
 * one ulp of exp apart can round to neighbouring bf16 values), and both away
 * from the fp32 path's results, so the products really are bf16.  Measured
 * worst absolute errors: out and lse 8.9e-3, dqkv 1.0e-2.  Between the paths
 * (deterministic: the same with 1, 2 or 4 OpenMP threads) out differs by at
 * most 6.9e-6 (B=1 T=100 C=320; <= 3.6e-7 on the other shapes): a P one ulp
 * of exp apart that rounds to the neighbouring bf16 moves out by ~P * 2^-8 *
 * |v|; such flips are rare and on these inputs hit only small P.  dqkv
 * differs by up to 2.0e-3 on a value of 0.50 (1.2e-4 elsewhere).  Hence an
 * absolute 2e-5 on out (2.9x) and 4e-3 + 4e-3 |dqkv| (2.6x); the out bound
 * notices a fast path whose output drifts by ~1e-3 (an accumulator kept at
 * half precision between key tiles), which 4e-3 passed. */
static const float BF16_FWD_ATOL = 2e-2f, BF16_FWD_RTOL = 1e-2f;
static const float BF16_BWD_ATOL = 3e-2f, BF16_BWD_RTOL = 2e-2f;
static const float BF16_PATHS_OUT_ATOL = 2e-5f, BF16_PATHS_OUT_RTOL = 0.0f;
static const float BF16_PATHS_DQKV_ATOL = 4e-3f, BF16_PATHS_DQKV_RTOL = 4e-3f;

static float *copy_floats(const float *x, size_t n)
{
    float *p = alloc_floats(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static void check_bf16_shape(shape s, bool fast)
{
    char what[128];
    problem pb = problem_new(s);
    problem_reference(&pb);
    run_forward(&pb, ISA_SCALAR), run_backward(&pb, ISA_SCALAR);
    float *out32 = copy_floats(pb.out, pb.n1), *dqkv32 = copy_floats(pb.dqkv, pb.n3);
    float *out16 = NULL, *dqkv16 = NULL;
    const isa_t paths[2] = {ISA_SCALAR, ISA_AVX512};
    for (int p = 0; p < 1 + fast; p++) {
        const isa_t isa = paths[p];
        fill_nan(pb.out, pb.n1), fill_nan(pb.lse, pb.nl), fill_nan(pb.dqkv, pb.n3);
        run_forward_in(&pb, isa, true);
        run_backward_in(&pb, isa, true);
        describe(what, sizeof what, "bf16 out", isa, &s);
        assert_true(test_close(what, pb.out, pb.ref_out, pb.n1, BF16_FWD_ATOL, BF16_FWD_RTOL));
        describe(what, sizeof what, "bf16 lse", isa, &s);
        assert_true(test_close(what, pb.lse, pb.ref_lse, pb.nl, BF16_FWD_ATOL, BF16_FWD_RTOL));
        describe(what, sizeof what, "bf16 dqkv", isa, &s);
        assert_true(test_close(what, pb.dqkv, pb.ref_dqkv, pb.n3, BF16_BWD_ATOL, BF16_BWD_RTOL));
        assert_true(max_abs_diff(pb.out, out32, pb.n1) > 1e-4f);
        assert_true(max_abs_diff(pb.dqkv, dqkv32, pb.n3) > 1e-4f);
        if (isa == ISA_SCALAR) {
            out16 = copy_floats(pb.out, pb.n1), dqkv16 = copy_floats(pb.dqkv, pb.n3);
            continue;
        }
        describe(what, sizeof what, "bf16 out against the emulation", isa, &s);
        assert_true(
            test_close(what, pb.out, out16, pb.n1, BF16_PATHS_OUT_ATOL, BF16_PATHS_OUT_RTOL));
        describe(what, sizeof what, "bf16 dqkv against the emulation", isa, &s);
        assert_true(test_close(what, pb.dqkv, dqkv16, pb.n3, BF16_PATHS_DQKV_ATOL,
                               BF16_PATHS_DQKV_RTOL));
    }
    free(out32), free(dqkv32), free(out16), free(dqkv16);
    problem_free(&pb);
}

static void test_bf16_matches_reference(void **state)
{
    (void)state;
    const bool fast = cpu_isa_supported(ISA_AVX512) && cpu_has_avx512_bf16();
    if (!fast)
        test_skip("attention bf16 avx512 path", "this CPU has no AVX512-BF16");
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        check_bf16_shape(shapes[c], fast);
    /* a one-row last tile after full ones; a tile edge of 4 (hs 1024) */
    check_bf16_shape((shape){1, 65, 128, 2}, fast);
    check_bf16_shape((shape){1, 9, 1024, 1}, fast);
}

/* Users' configs: head sizes 8, 12, 20, 24, 40 and 100, none a multiple of
 * the AVX-512 width and most not of the AVX2 one, with T = 1, 2, 3 and 17
 * and odd B*T, in fp32 and bf16, on every path, at the tolerances above;
 * and odd head sizes (5, 7, 25, 1), whose bf16 products fall back to fp32
 * (pairs need an even head size): bf16 then gives fp32's bits. */
static const shape odd_shapes[] = {
    {1, 1, 40, 5},  {3, 2, 36, 3},  {1, 3, 100, 5}, {2, 17, 72, 3},  {1, 17, 80, 2},
    {1, 5, 100, 1}, {3, 3, 24, 3},  {1, 17, 100, 20}, {2, 3, 21, 3}, {1, 9, 75, 3},
    {1, 4, 3, 3},
};

static void check_bf16_is_fp32(problem *pb)
{
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!cpu_isa_supported(isa))
            continue;
        run_forward(pb, isa), run_backward(pb, isa);
        float *out32 = copy_floats(pb->out, pb->n1), *lse32 = copy_floats(pb->lse, pb->nl),
              *dqkv32 = copy_floats(pb->dqkv, pb->n3);
        run_forward_in(pb, isa, true), run_backward_in(pb, isa, true);
        assert_memory_equal(pb->out, out32, pb->n1 * sizeof(float));
        assert_memory_equal(pb->lse, lse32, pb->nl * sizeof(float));
        assert_memory_equal(pb->dqkv, dqkv32, pb->n3 * sizeof(float));
        free(out32), free(lse32), free(dqkv32);
    }
}

static void test_odd_head_sizes(void **state)
{
    (void)state;
    const bool fast = cpu_isa_supported(ISA_AVX512) && cpu_has_avx512_bf16();
    for (size_t c = 0; c < sizeof odd_shapes / sizeof odd_shapes[0]; c++) {
        problem pb = problem_new(odd_shapes[c]);
        problem_reference(&pb);
        check_against_reference(&pb, FWD_ATOL, FWD_RTOL, BWD_ATOL, BWD_RTOL);
        if (odd_shapes[c].C / odd_shapes[c].H % 2)
            check_bf16_is_fp32(&pb);
        problem_free(&pb);
        if (odd_shapes[c].C / odd_shapes[c].H % 2 == 0)
            check_bf16_shape(odd_shapes[c], fast);
    }
}

/* q and k ~U(-10,10): scaled scores reach +-100, where exp overflows unless
 * the running max is subtracted, and the row max jumps between key tiles.
 * fp32 scores then carry absolute errors ~1e-5, hence looser tolerances
 * (measured: <= 1.7e-5 on out, 2.3e-5 on lse of magnitude up to 127,
 * 5e-5 on dqkv of magnitude up to 9). */
static void test_large_scores(void **state)
{
    (void)state;
    problem pb = problem_new((shape){2, 150, 64, 2});
    for (size_t t = 0; t < (size_t)pb.s.B * pb.s.T; t++)
        for (int c = 0; c < 2 * pb.s.C; c++)
            pb.qkv[t * 3 * pb.s.C + c] *= 5.0f;
    problem_reference(&pb);
    check_against_reference(&pb, 1e-4f, 1e-5f, 3e-4f, 1e-4f);
    problem_free(&pb);
}

/* The naive reference's own backward against central differences of its
 * forward, in double: validates the formulas the other tests trust. */
static void test_reference_backward_by_finite_differences(void **state)
{
    (void)state;
    problem pb = problem_new((shape){1, 5, 8, 2});
    problem_reference(&pb);
    const double eps = 1e-3;
    for (size_t i = 0; i < pb.n3; i++) {
        const float x = pb.qkv[i];
        double loss[2];
        for (int side = 0; side < 2; side++) {
            pb.qkv[i] = x + (float)(side ? eps : -eps);
            ref_forward(&pb);
            loss[side] = dotd(pb.ref_out, pb.dout, (int)pb.n1);
        }
        pb.qkv[i] = x;
        const double fd = (loss[1] - loss[0]) / (((double)(float)(x + (float)eps)) -
                                                  (double)(float)(x - (float)eps));
        if (fabs(fd - pb.ref_dqkv[i]) > 1e-4 + 1e-3 * fabs(fd))
            fail_msg("reference dqkv[%zu] = %g, finite difference %g", i, pb.ref_dqkv[i], fd);
    }
    problem_free(&pb);
}

/* Each ISA's backward against central differences of the same ISA's forward
 * on loss = sum(out * R), R = dout.  The forward is fp32, so the step is
 * large (1e-2) and the tolerance loose (2e-3 + 1e-2 rel); a wrong formula
 * is off by O(0.1). */
static void test_backward_by_finite_differences(void **state)
{
    (void)state;
    problem pb = problem_new((shape){1, 5, 8, 2});
    const float eps = 1e-2f;
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        run_forward(&pb, isa);
        run_backward(&pb, isa);
        for (size_t i = 0; i < pb.n3; i++) {
            const float x = pb.qkv[i];
            double loss[2];
            for (int side = 0; side < 2; side++) {
                pb.qkv[i] = side ? x + eps : x - eps;
                run_forward(&pb, isa);
                loss[side] = dotd(pb.out, pb.dout, (int)pb.n1);
            }
            pb.qkv[i] = x;
            const double fd = (loss[1] - loss[0]) / ((double)(x + eps) - (double)(x - eps));
            if (fabs(fd - pb.dqkv[i]) > 2e-3 + 1e-2 * fabs(fd))
                fail_msg("%s: dqkv[%zu] = %g, finite difference %g", cpu_isa_name(isa), i,
                         pb.dqkv[i], fd);
        }
    }
    problem_free(&pb);
}

static bool rows_equal(const float *a, const float *b, int rows, int cols, int ld)
{
    for (int t = 0; t < rows; t++)
        if (memcmp(a + (size_t)t * ld, b + (size_t)t * ld, cols * sizeof *a) != 0)
            return false;
    return true;
}

/* Changing k and v at positions > i must leave out, lse and dq at positions
 * <= i bit-identical (and must change the rows after i, or the check proves
 * nothing).  B = 1 so rows are contiguous across heads. */
static void check_causal(isa_t isa, int i)
{
    const shape s = {1, 150, 96, 3};
    problem a = problem_new(s), b = problem_new(s);
    const int ld = 3 * s.C;
    for (int t = i + 1; t < s.T; t++)
        for (int c = s.C; c < 3 * s.C; c++)
            b.qkv[(size_t)t * ld + c] += 0.5f;
    run_forward(&a, isa), run_forward(&b, isa);
    run_backward(&a, isa), run_backward(&b, isa);
    assert_true(rows_equal(a.out, b.out, i + 1, s.C, s.C));
    for (int h = 0; h < s.H; h++)
        assert_true(rows_equal(a.lse + h * s.T, b.lse + h * s.T, 1, i + 1, 0));
    assert_true(rows_equal(a.dqkv, b.dqkv, i + 1, s.C, ld));   /* the q part of each row */
    assert_false(rows_equal(a.out + (size_t)(i + 1) * s.C, b.out + (size_t)(i + 1) * s.C,
                            s.T - i - 1, s.C, s.C));
    problem_free(&a), problem_free(&b);
}

static void test_causality(void **state)
{
    (void)state;
    const int positions[] = {0, 3, 62, 63, 64, 100, 148};
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++)
            check_causal(isa, positions[p]);
    }
}

/* Each (b,h) is owned by one thread: results are bit-identical for any count,
 * with fp32 and with bf16 products. */
static void test_thread_count_does_not_matter(void **state)
{
    (void)state;
    const shape s = {2, 90, 96, 3};
    problem one = problem_new(s), many = problem_new(s);
    const int saved = omp_get_max_threads();
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        for (int bf16 = 0; bf16 < 2; bf16++) {
            omp_set_num_threads(1);
            run_forward_in(&one, isa, bf16), run_backward_in(&one, isa, bf16);
            omp_set_num_threads(WORK_THREADS);
            run_forward_in(&many, isa, bf16), run_backward_in(&many, isa, bf16);
            assert_memory_equal(one.out, many.out, one.n1 * sizeof(float));
            assert_memory_equal(one.lse, many.lse, one.nl * sizeof(float));
            assert_memory_equal(one.dqkv, many.dqkv, one.n3 * sizeof(float));
        }
    }
    omp_set_num_threads(saved);
    problem_free(&one), problem_free(&many);
}

/* Work made for longer sequences (as the model's, for its largest T) gives
 * the same bits. */
static void test_larger_work_same_bits(void **state)
{
    (void)state;
    const shape s = {2, 45, 64, 2};
    problem a = problem_new(s), b = problem_new(s);
    attention_work_free(&b.work);
    assert_int_equal(attention_work_init(&b.work, 3 * s.T + 1, s.C / s.H, WORK_THREADS), 0);
    for (int isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        for (int bf16 = 0; bf16 < 2; bf16++) {
            run_forward_in(&a, isa, bf16), run_backward_in(&a, isa, bf16);
            run_forward_in(&b, isa, bf16), run_backward_in(&b, isa, bf16);
            assert_memory_equal(a.out, b.out, a.n1 * sizeof(float));
            assert_memory_equal(a.dqkv, b.dqkv, a.n3 * sizeof(float));
        }
    }
    problem_free(&a), problem_free(&b);
}

/* The dispatching entry points run the active path. */
static void test_default_path_matches_explicit(void **state)
{
    (void)state;
    const shape s = {1, 40, 64, 2};
    problem a = problem_new(s), b = problem_new(s);
    attention_forward(a.out, a.lse, a.qkv, s.B, s.T, s.C, s.H, false, &a.work);
    attention_backward(a.dqkv, a.dout, a.qkv, a.out, a.lse, s.B, s.T, s.C, s.H, false, &a.work);
    run_forward(&b, cpu_isa()), run_backward(&b, cpu_isa());
    assert_memory_equal(a.out, b.out, a.n1 * sizeof(float));
    assert_memory_equal(a.dqkv, b.dqkv, a.n3 * sizeof(float));
    problem_free(&a), problem_free(&b);
}

/* attention_cached (one decode query over a KV cache) on every path against
 * double arithmetic, for fp32 and bf16 caches: row counts below, at and past
 * the 8-row blocks, head sizes that are and are not multiples of 8 or 64.
 * A bf16 cache is compared with the reference on the same rounded values. */
static void cached_reference(double *out, const float *q, const float *k, const float *v, int n,
                             int hs)
{
    double *p = malloc(sizeof *p * n), mx = -INFINITY, sum = 0;
    assert_non_null(p);
    for (int t = 0; t < n; t++) {
        p[t] = dotd(q, k + (size_t)t * hs, hs) / sqrt((double)hs);
        mx = fmax(mx, p[t]);
    }
    for (int t = 0; t < n; t++)
        sum += p[t] = exp(p[t] - mx);
    for (int c = 0; c < hs; c++) {
        out[c] = 0;
        for (int t = 0; t < n; t++)
            out[c] += p[t] * v[(size_t)t * hs + c] / sum;
    }
    free(p);
}

static void check_cached(isa_t isa, bool bf16, int n, int hs)
{
    const size_t nkv = (size_t)n * hs;
    float *q = alloc_floats(hs), *k = alloc_floats(nkv), *v = alloc_floats(nkv);
    float *out = alloc_floats(hs), *want = alloc_floats(hs), *att = alloc_floats(n);
    uint16_t *k16 = malloc(nkv * 2), *v16 = malloc(nkv * 2);
    double *ref = malloc(sizeof *ref * hs);
    assert_non_null(k16), assert_non_null(v16), assert_non_null(ref);
    test_fill(q, hs, 31 + n, QKV_SCALE), test_fill(k, nkv, 32 + n, QKV_SCALE);
    test_fill(v, nkv, 33 + n, 1.0f);
    if (bf16) {   /* the reference sees the cache's values */
        f32_to_bf16(k16, k, nkv), f32_to_bf16(v16, v, nkv);
        bf16_to_f32(k, k16, nkv), bf16_to_f32(v, v16, nkv);
    }
    cached_reference(ref, q, k, v, n, hs);
    for (int c = 0; c < hs; c++)
        want[c] = (float)ref[c];
    attention_cached_isa(isa, out, q, bf16 ? (const void *)k16 : k, bf16 ? (const void *)v16 : v,
                         bf16, n, hs, att);
    char what[96];
    snprintf(what, sizeof what, "cached %s %s n %d hs %d", cpu_isa_name(isa),
             bf16 ? "bf16" : "fp32", n, hs);
    assert_true(test_close(what, out, want, hs, FWD_ATOL, FWD_RTOL));
    free(q), free(k), free(v), free(out), free(want), free(att), free(k16), free(v16), free(ref);
}

static void test_cached_matches_reference(void **state)
{
    (void)state;
    static const int ns[] = {1, 2, 3, 7, 8, 9, 17, 64, 137, 256},
                     hss[] = {64, 24, 12, 80, 128, 8, 20, 40, 100, 1, 5, 7, 25};
    for (isa_t isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        for (int b = 0; b < 2; b++)
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
                for (size_t j = 0; j < sizeof hss / sizeof hss[0]; j++)
                    check_cached(isa, b, ns[i], hss[j]);
        print_message("attention_cached %s: fp32 and bf16 caches match the reference\n",
                      cpu_isa_name(isa));
    }
}

/* A query over rows 0..n-1 reads those rows only: NaN in every row past n
 * (and in 8 guard rows past the cache) leaves every bit of the result as it
 * is with real rows there, fp32 and bf16, for n = 1..41 (all the short last
 * blocks of 8 rows). */
static void test_cached_reads_only_n_rows(void **state)
{
    (void)state;
    enum { N = 41, HS = 64, ROWS = N + 8, NKV = ROWS * HS };
    float q[HS], a[HS], b[HS], att[ROWS];
    float *k = alloc_floats(NKV), *v = alloc_floats(NKV), *kn = alloc_floats(NKV),
          *vn = alloc_floats(NKV);
    uint16_t *k16 = malloc(NKV * 2), *v16 = malloc(NKV * 2), *k16n = malloc(NKV * 2),
             *v16n = malloc(NKV * 2);
    assert_non_null(k16), assert_non_null(v16), assert_non_null(k16n), assert_non_null(v16n);
    test_fill(q, HS, 41, QKV_SCALE), test_fill(k, NKV, 42, QKV_SCALE), test_fill(v, NKV, 43, 1);
    f32_to_bf16(k16, k, NKV), f32_to_bf16(v16, v, NKV);
    for (isa_t isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        for (int n = 1; n <= N; n++) {
            memcpy(kn, k, NKV * 4), memcpy(vn, v, NKV * 4);
            memcpy(k16n, k16, NKV * 2), memcpy(v16n, v16, NKV * 2);
            for (size_t i = (size_t)n * HS; i < NKV; i++) {
                kn[i] = vn[i] = NAN;
                k16n[i] = v16n[i] = 0x7FC0;   /* bf16 NaN */
            }
            attention_cached_isa(isa, a, q, k, v, false, n, HS, att);
            attention_cached_isa(isa, b, q, kn, vn, false, n, HS, att);
            assert_memory_equal(a, b, sizeof a);
            attention_cached_isa(isa, a, q, k16, v16, true, n, HS, att);
            attention_cached_isa(isa, b, q, k16n, v16n, true, n, HS, att);
            assert_memory_equal(a, b, sizeof a);
        }
    }
    free(k), free(v), free(kn), free(vn), free(k16), free(v16), free(k16n), free(v16n);
}

/* attention_cached_rows: a prompt's queries at once give, on every path,
 * each query's attention_cached bits (the SIMD paths group 2 or 4 queries
 * and load each cache row once for them): fp32 and bf16 caches, row counts
 * around the group sizes, first rows before, at and past the kernels' blocks, head
 * sizes that are and are not multiples of 8, 32 or 64, strided rows. */
static void check_cached_rows(isa_t isa, bool bf16, int n, int rows, int hs)
{
    const int keys = n + rows - 1;
    const size_t nkv = (size_t)keys * hs, ldq = 3 * (size_t)hs + 5, ldo = (size_t)hs + 3;
    float *q = alloc_floats(rows * ldq), *k = alloc_floats(nkv), *v = alloc_floats(nkv);
    float *got = alloc_floats(rows * ldo), *want = alloc_floats(rows * ldo);
    float *att = alloc_floats(ATTN_CACHED_ROWS_SCRATCH * (size_t)(n + rows));
    uint16_t *k16 = malloc(nkv * 2), *v16 = malloc(nkv * 2);
    assert_non_null(k16), assert_non_null(v16);
    test_fill(q, rows * ldq, 51 + n, QKV_SCALE), test_fill(k, nkv, 52 + n, QKV_SCALE);
    test_fill(v, nkv, 53 + n, 1.0f);
    f32_to_bf16(k16, k, nkv), f32_to_bf16(v16, v, nkv);
    const void *kc = bf16 ? (const void *)k16 : k, *vc = bf16 ? (const void *)v16 : v;
    memset(got, 0, rows * ldo * sizeof *got);
    memset(want, 0, rows * ldo * sizeof *want);
    attention_cached_rows_isa(isa, got, ldo, q, ldq, kc, vc, bf16, n, rows, hs, att);
    for (int i = 0; i < rows; i++)
        attention_cached_isa(isa, want + i * ldo, q + i * ldq, kc, vc, bf16, n + i, hs, att);
    if (memcmp(got, want, rows * ldo * sizeof *got) != 0)
        fail_msg("cached rows %s %s n %d rows %d hs %d: not attention_cached's bits",
                 cpu_isa_name(isa), bf16 ? "bf16" : "fp32", n, rows, hs);
    free(q), free(k), free(v), free(got), free(want), free(att), free(k16), free(v16);
}

static void test_cached_rows_match_each_row(void **state)
{
    (void)state;
    static const int ns[] = {1, 2, 3, 4, 5, 8, 9, 31}, rows[] = {1, 2, 3, 4, 7, 16},
                     hss[] = {64, 8, 12, 20, 32, 40, 80, 100, 128, 5, 1};
    for (isa_t isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "attention"))
            continue;
        for (int b = 0; b < 2; b++)
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
                for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
                    for (size_t j = 0; j < sizeof hss / sizeof hss[0]; j++)
                        check_cached_rows(isa, b, ns[i], rows[r], hss[j]);
    }
}

/* simd_math.h's vector exp, which the AVX2 / AVX-512 primitives use.  Each
 * half of the header is compiled only under its ISA, so it is included here
 * under the Makefile's ISA flags as a target pragma, and wrapped. */
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include "kernels/simd_math.h"
static void exp_avx2(float *y, const float *x, int n)   /* n a multiple of 8 */
{
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(y + i, simd_exp8(_mm256_loadu_ps(x + i)));
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")
#include "kernels/simd_math.h"
static void exp_avx512(float *y, const float *x, int n)   /* n a multiple of 16 */
{
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(y + i, simd_exp16(_mm512_loadu_ps(x + i)));
}
#pragma GCC pop_options

/* Within 2 ulp of double exp on [-87.3, 88] (measured 0.99), 0 below
 * ln(FLT_MIN) and at -inf, exp(88) (finite) above 88 and at +inf, NaN for
 * NaN. */
static void check_vector_exp(void (*vexp)(float *, const float *, int), const char *name)
{
    enum { N = 64, CALLS = 20000 };
    float x[N], y[N];
    double worst = 0;
    for (int c = 0; c < CALLS; c++) {
        for (int j = 0; j < N; j++)
            x[j] = -87.3f + 175.3f * (float)(c * N + j) / (CALLS * N);
        vexp(y, x, N);
        for (int j = 0; j < N; j++) {
            int e2;
            const double want = exp((double)x[j]);
            frexp(want, &e2);
            worst = fmax(worst, fabs(y[j] - want) / ldexp(1.0, e2 - 24));
        }
    }
    if (!(worst <= 2.0))
        fail_msg("%s exp: %.2f ulp", name, worst);
    const float special[N] = {-87.34f, -100.0f, -1e30f, -INFINITY, 88.0f, 89.0f, 1e30f, INFINITY,
                              NAN};
    vexp(y, special, N);
    for (int j = 0; j < 4; j++)
        if (y[j] != 0.0f)
            fail_msg("%s exp(%g) = %g, want 0", name, special[j], y[j]);
    for (int j = 4; j < 8; j++)
        if (!isfinite(y[j]) || y[j] != y[4] || fabs(y[4] - exp(88.0)) > 2 * ldexp(1.0, 127 - 23))
            fail_msg("%s exp(%g) = %g, want exp(88)", name, special[j], y[j]);
    if (!isnan(y[8]))
        fail_msg("%s exp(nan) = %g, want nan", name, y[8]);
}

/* exp_row, the primitive that calls exp with a `valid` bound: 0 in the lanes
 * past `valid` and at -inf. */
static void check_exp_row(const attn_ops *ops, const char *name)
{
    const float s[5] = {-1.0f, 0.0f, -100.0f, -INFINITY, 0.0f};
    float p[5];
    ops->exp_row(p, s, 4, 5, 1.0f, 0.0f);   /* the last lane is past `valid` */
    const float want[5] = {expf(-1.0f), 1.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < 5; j++)
        if (fabsf(p[j] - want[j]) > 2e-7f)
            fail_msg("%s exp_row[%d] = %g, want %g", name, j, p[j], want[j]);
}

static void test_vector_exp(void **state)
{
    (void)state;
    if (test_isa_runs(ISA_AVX2, "attention exp")) {
        check_vector_exp(exp_avx2, "avx2");
        check_exp_row(&attn_ops_avx2, "avx2");
    }
    if (test_isa_runs(ISA_AVX512, "attention exp")) {
        check_vector_exp(exp_avx512, "avx512");
        check_exp_row(&attn_ops_avx512, "avx512");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_odd_head_sizes),
        cmocka_unit_test(test_large_scores),
        cmocka_unit_test(test_bf16_matches_reference),
        cmocka_unit_test(test_reference_backward_by_finite_differences),
        cmocka_unit_test(test_backward_by_finite_differences),
        cmocka_unit_test(test_causality),
        cmocka_unit_test(test_thread_count_does_not_matter),
        cmocka_unit_test(test_larger_work_same_bits),
        cmocka_unit_test(test_default_path_matches_explicit),
        cmocka_unit_test(test_vector_exp),
        cmocka_unit_test(test_cached_matches_reference),
        cmocka_unit_test(test_cached_reads_only_n_rows),
        cmocka_unit_test(test_cached_rows_match_each_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
