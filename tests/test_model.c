/* model: finite-difference check of the gradient of every parameter tensor,
 * loss at initialisation near ln(vocab_size), gradient accumulation; the
 * 16-bit modes against fp32; recompute and logit chunks bit-identical; a
 * padded vocabulary masked out of loss and gradients; the split embedding
 * gradient adding up to the whole; eval-only forward (no targets) gives the
 * training loss.  Users' configs (n_embd 40, 72, 100, 36, 75, 25; head sizes
 * 8, 24, 20, 12, 25, 5; T 1, 3, 5, 17; vocabularies 257, padded or not, 50,
 * 17, 2, 1): the forward against a double-precision one on every path,
 * backward against finite differences, the 16-bit modes against fp32,
 * recompute, logit chunks and padding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <omp.h>

#include "kernels/attention.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "trainer/model.h"
#include "tests/test_util.h"

static const gpt2_options FP32 = {.precision = PREC_FP32};

static void random_tokens(int *x, int n, int V, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (int)((seed >> 33) % (uint64_t)V);
    }
}

static double loss_at(gpt2 *m, const int *in, const int *tg, int B, int T)
{
    return gpt2_forward(m, in, tg, B, T);
}

/* Parameters ~U(-0.4, 0.4), LayerNorm weights around 1: larger weights than
 * GPT-2's init so every gradient is well above fp32 noise. */
static void fill_large_params(gpt2 *m, uint64_t seed)
{
    test_fill(m->params, m->num_params, seed, 0.4f);
    for (int i = 0; i < m->num_tensors; i++)
        if (strstr(m->tensors[i].name, "ln_") && strstr(m->tensors[i].name, ".weight"))
            for (size_t j = 0; j < m->tensors[i].numel; j++)
                m->params[m->tensors[i].offset + j] += 1.0f;
    gpt2_params_changed(m);
}

/* Central differences on up to 12 elements of each tensor, compared as vectors:
 * ||numeric - analytic|| <= 2e-2 ||analytic|| + 1e-4. */
static void check_finite_differences(const gpt2_dims *d, const gpt2_options *o, int B, int T,
                                     float eps)
{
    gpt2 m;
    char err[256];
    assert_int_equal(gpt2_create(&m, d, B, T, o, err, sizeof err), 0);
    fill_large_params(&m, 7);
    const int R = o->vocab_real ? o->vocab_real : d->vocab_size;
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    assert_true(in && tg);
    random_tokens(in, B * T, R, 1);
    random_tokens(tg, B * T, R, 2);

    gpt2_zero_grad(&m);
    loss_at(&m, in, tg, B, T);
    gpt2_backward(&m, 1.0f / (B * T));

    for (int i = 0; i < m.num_tensors; i++) {
        const param_tensor *t = &m.tensors[i];
        double diff2 = 0, ref2 = 0;
        size_t stride = t->numel / 12 + 1;
        for (size_t j = 0; j < t->numel; j += stride) {
            float *p = &m.params[t->offset + j];
            float saved = *p;
            *p = saved + eps;
            double up = loss_at(&m, in, tg, B, T);
            *p = saved - eps;
            double down = loss_at(&m, in, tg, B, T);
            *p = saved;
            double num = (up - down) / (2 * eps), ana = m.grads[t->offset + j];
            diff2 += (num - ana) * (num - ana);
            ref2 += ana * ana;
        }
        double rel = sqrt(diff2) / (sqrt(ref2) + 1e-4);
        if (rel > 2e-2)
            fprintf(stderr, "%s [%s C=%d H=%d V=%d B=%d T=%d]: gradient differs from finite "
                    "differences by %.3g (|g| %.3g)\n", t->name, cpu_isa_name(cpu_isa()),
                    d->n_embd, d->n_head, d->vocab_size, B, T, rel, sqrt(ref2));
        assert_true(rel <= 2e-2);
        /* every tensor receives gradient (but T = 1 leaves attention's q and k
         * none: one key, a softmax of 1 whatever the score; and one token's
         * loss is 0 whatever the weights) */
        if (R > 1 && (T > 1 || !strstr(t->name, "c_attn")))
            assert_true(ref2 > 0);
    }
    free(in), free(tg);
    gpt2_destroy(&m);
}

static void test_gradients_match_finite_differences(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 19, .n_positions = 7, .n_embd = 16, .n_layer = 2, .n_head = 2};
    check_finite_differences(&d, &FP32, 2, 6, 2e-3f);
}

static void test_initial_loss_is_ln_vocab(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 256, .n_positions = 32, .n_embd = 64, .n_layer = 2, .n_head = 4};
    int B = 4, T = 32;
    gpt2 m;
    char err[256];
    assert_int_equal(gpt2_create(&m, &d, B, T, &FP32, err, sizeof err), 0);
    gpt2_init_params(&m, 42);
    int in[128], tg[128];
    random_tokens(in, B * T, d.vocab_size, 3);
    random_tokens(tg, B * T, d.vocab_size, 4);
    double loss = gpt2_forward(&m, in, tg, B, T);
    assert_true(fabs(loss - log(256.0)) < 0.05);
    gpt2_destroy(&m);
}

/* Two micro-batches of B=2 accumulate to the gradient of one batch of B=4. */
static void test_gradient_accumulation_equals_big_batch(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 32, .n_positions = 8, .n_embd = 16, .n_layer = 1, .n_head = 2};
    int T = 8;
    gpt2 big, small;
    char err[256];
    assert_int_equal(gpt2_create(&big, &d, 4, T, &FP32, err, sizeof err), 0);
    assert_int_equal(gpt2_create(&small, &d, 2, T, &FP32, err, sizeof err), 0);
    gpt2_init_params(&big, 5);
    gpt2_init_params(&small, 5);
    assert_memory_equal(big.params, small.params, big.num_params * sizeof(float));
    int in[32], tg[32];
    random_tokens(in, 4 * T, d.vocab_size, 8);
    random_tokens(tg, 4 * T, d.vocab_size, 9);

    gpt2_zero_grad(&big);
    float lbig = gpt2_forward(&big, in, tg, 4, T);
    gpt2_backward(&big, 1.0f / (4 * T));
    gpt2_zero_grad(&small);
    float l0 = gpt2_forward(&small, in, tg, 2, T);
    gpt2_backward(&small, 1.0f / (4 * T));
    float l1 = gpt2_forward(&small, in + 2 * T, tg + 2 * T, 2, T);
    gpt2_backward(&small, 1.0f / (4 * T));
    assert_true(fabsf((l0 + l1) / 2 - lbig) < 1e-5f);
    assert_true(test_close("accumulated grads", small.grads, big.grads, big.num_params, 1e-6f, 1e-3f));
    gpt2_destroy(&big);
    gpt2_destroy(&small);
}

/* gpt2_zero_grad leaves the weight matrices' old gradients for backward's
 * products to overwrite: a backward after it gives the same gradients, bit
 * for bit, on a model whose gradients held another batch's as on a fresh
 * one, in fp32 and in bf16 (its own products). */
static void test_zero_grad_replaces_old_gradients(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 40, .n_positions = 8, .n_embd = 16, .n_layer = 2, .n_head = 2};
    const gpt2_options opts[2] = {FP32, {.precision = PREC_BF16}};
    int B = 2, T = 8, in[2][16], tg[2][16];
    for (int k = 0; k < 2; k++) {
        random_tokens(in[k], B * T, d.vocab_size, 20 + k);
        random_tokens(tg[k], B * T, d.vocab_size, 30 + k);
    }
    for (int o = 0; o < 2; o++) {
        gpt2 used, fresh;
        char err[256];
        assert_int_equal(gpt2_create(&used, &d, B, T, &opts[o], err, sizeof err), 0);
        assert_int_equal(gpt2_create(&fresh, &d, B, T, &opts[o], err, sizeof err), 0);
        gpt2_init_params(&used, 3);
        gpt2_init_params(&fresh, 3);
        gpt2_zero_grad(&used);
        gpt2_forward(&used, in[0], tg[0], B, T);
        gpt2_backward(&used, 1.0f / (B * T));
        gpt2_zero_grad(&used);
        gpt2_forward(&used, in[1], tg[1], B, T);
        gpt2_backward(&used, 1.0f / (B * T));
        gpt2_zero_grad(&fresh);
        gpt2_forward(&fresh, in[1], tg[1], B, T);
        gpt2_backward(&fresh, 1.0f / (B * T));
        assert_memory_equal(used.grads, fresh.grads, used.num_params * sizeof(float));
        gpt2_destroy(&used);
        gpt2_destroy(&fresh);
    }
}

static void test_same_seed_same_params(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 50, .n_positions = 8, .n_embd = 16, .n_layer = 2, .n_head = 2};
    gpt2 a, b;
    char err[256];
    assert_int_equal(gpt2_create(&a, &d, 1, 8, &FP32, err, sizeof err), 0);
    assert_int_equal(gpt2_create(&b, &d, 1, 8, &FP32, err, sizeof err), 0);
    gpt2_init_params(&a, 11);
    gpt2_init_params(&b, 11);
    assert_memory_equal(a.params, b.params, a.num_params * sizeof(float));
    gpt2_init_params(&b, 12);
    assert_memory_not_equal(a.params, b.params, a.num_params * sizeof(float));
    assert_int_equal(a.num_params, gpt2_count_params(&d));
    gpt2_destroy(&a);
    gpt2_destroy(&b);
}

/* ---- users' configs: widths and head sizes off the vector width ---- */

/* n_embd 40 (5 heads of 8), 72 (3 of 24), 100 (5 of 20), 36 (3 of 12),
 * 75 (3 of 25) and 25 (5 of 5); T 3, 3, 17, 1, 5 and 3; B*T odd;
 * vocabularies of 257 (padded from 250 in the second), 2, 50, 17 and 1. */
typedef struct {
    gpt2_dims d;
    int vocab_real, B, T;
} odd_config;

static const odd_config odd_configs[] = {
    {{.vocab_size = 257, .n_positions = 5, .n_embd = 40, .n_layer = 1, .n_head = 5}, 0, 1, 3},
    {{.vocab_size = 257, .n_positions = 4, .n_embd = 72, .n_layer = 2, .n_head = 3}, 250, 3, 3},
    {{.vocab_size = 2, .n_positions = 17, .n_embd = 100, .n_layer = 1, .n_head = 5}, 0, 1, 17},
    {{.vocab_size = 50, .n_positions = 3, .n_embd = 36, .n_layer = 1, .n_head = 3}, 0, 3, 1},
    {{.vocab_size = 17, .n_positions = 6, .n_embd = 75, .n_layer = 1, .n_head = 3}, 0, 1, 5},
    {{.vocab_size = 1, .n_positions = 3, .n_embd = 25, .n_layer = 2, .n_head = 5}, 0, 3, 3},
};
enum { NODD = sizeof odd_configs / sizeof odd_configs[0] };

static isa_t next_isa(isa_t isa)   /* the next supported path after isa, or ISA_COUNT */
{
    for (isa++; isa < ISA_COUNT && !test_isa_runs(isa, "model"); isa++)
        ;
    return isa;
}

/* GPT-2's forward in double on m's parameters: logits [B*T, V], -inf in the
 * padding columns. */
static void ref_layernorm(double *out, const double *x, const float *w, const float *b, int N,
                          int C)
{
    for (int n = 0; n < N; n++) {
        const double *r = x + (size_t)n * C;
        double mean = 0, var = 0;
        for (int i = 0; i < C; i++)
            mean += r[i];
        mean /= C;
        for (int i = 0; i < C; i++)
            var += (r[i] - mean) * (r[i] - mean);
        const double rstd = 1.0 / sqrt(var / C + 1e-5);
        for (int i = 0; i < C; i++)
            out[(size_t)n * C + i] = (r[i] - mean) * rstd * w[i] + b[i];
    }
}

static void ref_linear(double *y, const double *x, const float *w, const float *b, int N, int in,
                       int out)   /* w [in, out] */
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++)
                s += x[(size_t)n * in + i] * w[(size_t)i * out + o];
            y[(size_t)n * out + o] = s;
        }
}

static void ref_attention(double *y, const double *qkv, int B, int T, int C, int H)
{
    const int hs = C / H;
    double *p = malloc(sizeof(double) * T);
    assert_non_null(p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const double *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const double *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
                    p[j] = 0;
                    for (int e = 0; e < hs; e++)
                        p[j] += q[e] * k[e];
                    p[j] /= sqrt(hs);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= i; j++)
                    sum += p[j] = exp(p[j] - mx);
                for (int e = 0; e < hs; e++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++)
                        o += p[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + e];
                    y[((size_t)b * T + i) * C + h * hs + e] = o / sum;
                }
            }
    free(p);
}

static void ref_logits(double *logits, const gpt2 *m, const int *in, int B, int T)
{
    const int C = m->dims.n_embd, V = m->dims.vocab_size, N = B * T;
    const int R = m->opt.vocab_real ? m->opt.vocab_real : V;
    double *x = malloc(sizeof(double) * N * C), *ln = malloc(sizeof(double) * N * C),
           *big = malloc(sizeof(double) * N * 4 * C), *y = malloc(sizeof(double) * N * 4 * C);
    assert_true(x && ln && big && y);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            x[(size_t)n * C + c] =
                (double)m->p.wte[(size_t)in[n] * C + c] + m->p.wpe[(size_t)(n % T) * C + c];
    for (int l = 0; l < m->dims.n_layer; l++) {
        const block_params *w = &m->p.h[l];
        ref_layernorm(ln, x, w->ln1w, w->ln1b, N, C);
        ref_linear(big, ln, w->qkvw, w->qkvb, N, C, 3 * C);
        ref_attention(ln, big, B, T, C, m->dims.n_head);
        ref_linear(y, ln, w->attprojw, w->attprojb, N, C, C);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += y[i];
        ref_layernorm(ln, x, w->ln2w, w->ln2b, N, C);
        ref_linear(big, ln, w->fcw, w->fcb, N, C, 4 * C);
        for (size_t i = 0; i < (size_t)N * 4 * C; i++) {
            const double v = big[i];
            big[i] = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        }
        ref_linear(y, big, w->fcprojw, w->fcprojb, N, 4 * C, C);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += y[i];
    }
    ref_layernorm(ln, x, m->p.lnfw, m->p.lnfb, N, C);
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += ln[(size_t)n * C + c] * m->p.wte[(size_t)v * C + c];
            logits[(size_t)n * V + v] = v < R ? s : -INFINITY;
        }
    free(x), free(ln), free(big), free(y);
}

static gpt2_options odd_options(const odd_config *c, gpt2_precision p)
{
    return (gpt2_options){.precision = p, .vocab_real = c->vocab_real};
}

/* fp32 forward on every path against the double forward: the logits (forward
 * without targets; padding -inf) and the mean loss.  Weights as the finite
 * differences take them, so activations are O(1): atol 1e-5, rtol 1e-5 on
 * the logits [measured: at most 3.6e-6 from the double value, on every
 * path], 1.5e-6 relative on the loss [4.6e-7]. */
static void test_odd_configs_forward_matches_double(void **state)
{
    (void)state;
    const isa_t saved = cpu_isa();
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        cpu_set_isa(isa);
        for (int k = 0; k < NODD; k++) {
            const odd_config *c = &odd_configs[k];
            const int B = c->B, T = c->T, N = B * T, V = c->d.vocab_size;
            const int R = c->vocab_real ? c->vocab_real : V;
            const gpt2_options o = odd_options(c, PREC_FP32);
            gpt2 m;
            char err[256], what[128];
            assert_int_equal(gpt2_create(&m, &c->d, B, T, &o, err, sizeof err), 0);
            fill_large_params(&m, 30 + k);
            int *in = malloc(sizeof(int) * N), *tg = malloc(sizeof(int) * N);
            double *ref = malloc(sizeof(double) * N * V);
            float *want = malloc(sizeof(float) * N * V);
            assert_true(in && tg && ref && want);
            random_tokens(in, N, R, 40 + k);
            random_tokens(tg, N, R, 50 + k);
            ref_logits(ref, &m, in, B, T);
            double loss = 0;
            for (int n = 0; n < N; n++) {
                const double *r = ref + (size_t)n * V;
                double mx = r[0], sum = 0;
                for (int v = 1; v < R; v++)
                    mx = fmax(mx, r[v]);
                for (int v = 0; v < R; v++)
                    sum += exp(r[v] - mx);
                loss += (log(sum) + mx - r[tg[n]]) / N;
                for (int v = 0; v < V; v++)
                    want[(size_t)n * V + v] = v < R ? (float)r[v] : 0.0f;
            }
            gpt2_forward(&m, in, NULL, B, T);
            for (int n = 0; n < N; n++)
                for (int v = R; v < V; v++) {
                    float *x = &m.logits[(size_t)n * V + v];
                    assert_true(isinf(*x) && *x < 0);
                    *x = 0.0f;
                }
            snprintf(what, sizeof what, "logits [%s C=%d H=%d V=%d B=%d T=%d]",
                     cpu_isa_name(isa), c->d.n_embd, c->d.n_head, V, B, T);
            assert_true(test_close(what, m.logits, want, (size_t)N * V, 1e-5f, 1e-5f));
            const double got = gpt2_forward(&m, in, tg, B, T);
            if (!(fabs(got - loss) <= 1.5e-6 * loss))
                fail_msg("%s: loss %.9g, double %.9g", what, got, loss);
            free(in), free(tg), free(ref), free(want);
            gpt2_destroy(&m);
        }
    }
    cpu_set_isa(saved);
}

/* Backward against central differences of forward, on the active path.  A
 * step of 5e-3 rather than 2e-3: wte's sampled elements are mostly rows no
 * input names, whose small gradients (|g| ~ 0.01 over 12 elements) a smaller
 * step buries in the float loss's rounding [worst 0.020 at 2e-3, 0.008 at
 * 5e-3, against 2e-2]. */
static void test_odd_configs_gradients_match_finite_differences(void **state)
{
    (void)state;
    for (int k = 0; k < NODD; k++) {
        const gpt2_options o = odd_options(&odd_configs[k], PREC_FP32);
        check_finite_differences(&odd_configs[k].d, &o, odd_configs[k].B, odd_configs[k].T,
                                 5e-3f);
    }
}

/* A's gradient against the reference f's, tensor by tensor: the relative
 * error ||a - f|| / ||f||, and the relative bias <a - f, f> / ||f||^2, the
 * part of the error along the gradient (how much a's gradient is scaled
 * up or down).  Each must stay within its tolerance. */
static void assert_grads_track(const gpt2 *f, const gpt2 *a, const char *what, double tol,
                               double bias_tol)
{
    for (int i = 0; i < f->num_tensors; i++) {
        const param_tensor *t = &f->tensors[i];
        double diff2 = 0, ref2 = 0, along = 0;
        for (size_t j = 0; j < t->numel; j++) {
            double r = f->grads[t->offset + j], e = a->grads[t->offset + j] - r;
            diff2 += e * e;
            ref2 += r * r;
            along += e * r;
        }
        double rel = sqrt(diff2 / (ref2 + 1e-30)), bias = along / (ref2 + 1e-30);
        if (!(rel <= tol) || !(fabs(bias) <= bias_tol))
            fprintf(stderr, "%s: %s gradient off by %.3g (tolerance %.3g), bias %.3g (%.3g)\n",
                    what, t->name, rel, tol, bias, bias_tol);
        assert_true(rel <= tol);
        assert_true(fabs(bias) <= bias_tol);

    }
}

/* bf16 and fp16 modes: the same loss and gradients as fp32 up to the rounding
 * of the matrix-product operands (bf16 keeps 8 bits of mantissa, fp16 11).
 *
 * Twice: with GPT-2's initial weights, and with those weights rounded to the
 * 16-bit type in both models, so that the fp32 model computes with exactly
 * the weight operands the 16-bit one packs.  That second path cannot
 * pre-round the other operands, the activations and gradients the model
 * converts inside forward and backward (nor bf16 attention's internals
 * where it runs natively), so what is left between the two is their
 * rounding alone, and round-to-nearest-even is unbiased: the error has
 * almost no component along the gradient, where a truncating conversion
 * shrinks every product and with it each gradient (bias about -8e-3 in bf16
 * against at most 1.2e-3 here).
 *
 * Tolerances, about 1.6-2x the worst measured over the AVX-512 (native bf16
 * products and attention), AVX2 and scalar paths, for {bf16, fp16}:
 *   initial weights: gradient 1e-2, 1.2e-3 [6.2e-3, 7.3e-4];
 *     bias 4e-3, 5e-4 [2.2e-3, 2.9e-4]; loss 8e-6, 4e-6 relative [4.9e-6, 2.1e-6]
 *   rounded weights: gradient 7e-3, 7e-4 [4.4e-3, 4.4e-4];
 *     bias 2e-3, 4e-4 [1.2e-3, 2.0e-4]; loss 9e-6, 4e-7 [5.4e-6, 2.3e-7]
 * A bf16 conversion that truncates gives gradient 1.1e-2, bias 1.0e-2 and
 * loss 1.2e-5 with rounded weights. */
static void check_half_tracks_fp32(const gpt2_dims *d, int vocab_real, int B, int T,
                                   double loss_scale)
{
    const gpt2_options modes[2] = {{.precision = PREC_BF16, .vocab_real = vocab_real},
                                   {.precision = PREC_FP16, .vocab_real = vocab_real}};
    const gpt2_options fp32 = {.precision = PREC_FP32, .vocab_real = vocab_real};
    /* [rounded weights][bf16, fp16] */
    const double tol[2][2] = {{1e-2, 1.2e-3}, {7e-3, 7e-4}};
    const double bias_tol[2][2] = {{4e-3, 5e-4}, {2e-3, 4e-4}};
    const double loss_tol[2][2] = {{8e-6, 4e-6}, {9e-6, 4e-7}};
    const int R = vocab_real ? vocab_real : d->vocab_size;
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    assert_true(in && tg);
    random_tokens(in, B * T, R, 5);
    random_tokens(tg, B * T, R, 6);
    for (int rounded = 0; rounded < 2; rounded++) {
        for (int k = 0; k < 2; k++) {
            gpt2 f, h;
            char err[256], what[96];
            snprintf(what, sizeof what, "%s%s [C=%d H=%d V=%d B=%d T=%d]", k ? "fp16" : "bf16",
                     rounded ? ", rounded weights" : "", d->n_embd, d->n_head, d->vocab_size, B,
                     T);
            assert_int_equal(gpt2_create(&f, d, B, T, &fp32, err, sizeof err), 0);
            assert_int_equal(gpt2_create(&h, d, B, T, &modes[k], err, sizeof err), 0);
            gpt2_init_params(&f, 3);
            if (rounded && k == 0)
                round_to_bf16(f.params, f.num_params);
            for (size_t i = 0; rounded && k == 1 && i < f.num_params; i++)
                f.params[i] = f16_to_f32_one(f32_to_f16_one(f.params[i]));
            memcpy(h.params, f.params, f.num_params * sizeof(float));
            gpt2_params_changed(&h);
            gpt2_zero_grad(&f);
            gpt2_zero_grad(&h);
            float lf = gpt2_forward(&f, in, tg, B, T), lh = gpt2_forward(&h, in, tg, B, T);
            gpt2_backward(&f, 1.0f / (B * T));
            gpt2_backward(&h, 1.0f / (B * T));
            const double ltol = loss_scale * loss_tol[rounded][k];
            if (!(fabs((double)lh - lf) <= ltol * lf))
                fprintf(stderr, "%s: loss %.9g, fp32 %.9g\n", what, lh, lf);
            assert_true(fabs((double)lh - lf) <= ltol * lf);
            assert_grads_track(&f, &h, what, tol[rounded][k], bias_tol[rounded][k]);
            gpt2_destroy(&f);
            gpt2_destroy(&h);
        }
    }
    free(in), free(tg);
}

static void test_half_gradients_track_fp32(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 64, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 2};
    check_half_tracks_fp32(&d, 0, 2, 16, 1.0);
}

/* bf16 mode's attention follows the options: its products in bf16 where they
 * are native, in fp32 with attention_fp32 (the trainer's measurement may
 * choose either): each layer's output is attention_forward's on the layer's
 * qkv with that setting, bit for bit, and the two settings differ where bf16
 * runs natively. */
static void test_bf16_attention_follows_options(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 64, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 2};
    const int B = 2, T = 16, C = d.n_embd, H = d.n_head;
    const size_t n = (size_t)B * T * C;
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    float *want = malloc(n * sizeof(float)), *lse = malloc(sizeof(float) * B * H * T);
    float *first = malloc(n * sizeof(float));
    attention_work w;
    assert_true(in && tg && want && lse && first);
    assert_int_equal(attention_work_init(&w, T, C / H, omp_get_max_threads()), 0);
    random_tokens(in, B * T, d.vocab_size, 7);
    random_tokens(tg, B * T, d.vocab_size, 8);
    for (int fp32 = 0; fp32 < 2; fp32++) {
        const gpt2_options o = {.precision = PREC_BF16, .attention_fp32 = fp32};
        gpt2 m;
        char err[256];
        assert_int_equal(gpt2_create(&m, &d, B, T, &o, err, sizeof err), 0);
        gpt2_init_params(&m, 3);
        gpt2_forward(&m, in, tg, B, T);
        for (int l = 0; l < d.n_layer; l++) {
            attention_forward(want, lse, m.acts[l].qkv, B, T, C, H, !fp32, &w);
            assert_memory_equal(want, m.acts[l].atty, n * sizeof(float));
        }
        if (!fp32)
            memcpy(first, m.acts[0].atty, n * sizeof(float));
        else
            assert_int_equal(memcmp(first, m.acts[0].atty, n * sizeof(float)) != 0,
                             attention_bf16_native());
        gpt2_destroy(&m);
    }
    if (!attention_bf16_native())
        test_skip("bf16 attention in the model", "this CPU has no native bf16 attention");
    attention_work_free(&w);
    free(in), free(tg), free(want), free(lse), free(first);
}

/* The memory check counts attention's work, which grows with the threads
 * the model is made for. */
static void test_memory_counts_attention_work(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 40, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4};
    gpt2_options o = {.precision = PREC_BF16};
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    size_t one = gpt2_memory_bytes(&d, 2, 64, &o);
    omp_set_num_threads(3);
    size_t three = gpt2_memory_bytes(&d, 2, 64, &o);
    omp_set_num_threads(threads);
    assert_true(attention_work_bytes(64, 8, 1) > 0);
    assert_int_equal(three - one, attention_work_bytes(64, 8, 3) - attention_work_bytes(64, 8, 1));
}

/* recompute: block gives bit-identical loss and gradients, fp32, bf16 and
 * fp16, with gradient accumulation over two micro-batches. */
static void check_recompute(const gpt2_dims *d, int vocab_real, int B, int T)
{
    const int R = vocab_real ? vocab_real : d->vocab_size;
    int *in = malloc(sizeof(int) * 2 * B * T), *tg = malloc(sizeof(int) * 2 * B * T);
    assert_true(in && tg);
    random_tokens(in, 2 * B * T, R, 21);
    random_tokens(tg, 2 * B * T, R, 22);
    for (gpt2_precision p = PREC_FP32; p <= PREC_FP16; p++) {
        gpt2_options keep = {.precision = p, .vocab_real = vocab_real}, again = keep;
        again.recompute = true;
        gpt2 a, b;
        char err[256];
        assert_int_equal(gpt2_create(&a, d, B, T, &keep, err, sizeof err), 0);
        assert_int_equal(gpt2_create(&b, d, B, T, &again, err, sizeof err), 0);
        /* one block: its inputs are all recompute would drop */
        const size_t kept = gpt2_memory_bytes(d, B, T, &keep);
        if (d->n_layer > 1)
            assert_true(gpt2_memory_bytes(d, B, T, &again) < kept);
        else
            assert_true(gpt2_memory_bytes(d, B, T, &again) == kept);
        gpt2_init_params(&a, 9);
        gpt2_init_params(&b, 9);
        gpt2_zero_grad(&a);
        gpt2_zero_grad(&b);
        for (int j = 0; j < 2; j++) {
            float la = gpt2_forward(&a, in + j * B * T, tg + j * B * T, B, T);
            float lb = gpt2_forward(&b, in + j * B * T, tg + j * B * T, B, T);
            assert_memory_equal(&la, &lb, sizeof la);
            gpt2_backward(&a, 0.5f / (B * T));
            gpt2_backward(&b, 0.5f / (B * T));
        }
        assert_memory_equal(a.grads, b.grads, a.num_params * sizeof(float));
        gpt2_destroy(&a);
        gpt2_destroy(&b);
    }
    free(in), free(tg);
}

static void test_recompute_is_bit_identical(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 40, .n_positions = 16, .n_embd = 32, .n_layer = 3, .n_head = 4};
    check_recompute(&d, 0, 2, 16);
}

/* 16-bit mode makes the logits a chunk of rows at a time: 5-row chunks (and a
 * remainder) give the loss and gradients of one chunk holding every row, in
 * bf16 and fp16, bit for bit: a row's logits, loss and gradient depend on no
 * other row, and backward's products take the whole [N,V] gradient either
 * way (measured identical on the AVX-512, AVX2 and scalar paths, one thread
 * or two, native and emulated bf16). */
static void check_logit_chunks(const gpt2_dims *d, int vocab_real, int B, int T, int rows)
{
    const int R = vocab_real ? vocab_real : d->vocab_size;
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    assert_true(in && tg);
    random_tokens(in, B * T, R, 31);
    random_tokens(tg, B * T, R, 32);
    for (gpt2_precision p = PREC_BF16; p <= PREC_FP16; p++) {
        gpt2_options whole = {.precision = p, .vocab_real = vocab_real}, chunked = whole;
        chunked.logit_rows = rows;
        gpt2 a, b;
        char err[256];
        assert_int_equal(gpt2_create(&a, d, B, T, &whole, err, sizeof err), 0);
        assert_int_equal(gpt2_create(&b, d, B, T, &chunked, err, sizeof err), 0);
        assert_int_equal(a.logit_rows, B * T);
        assert_int_equal(b.logit_rows, rows);
        gpt2_init_params(&a, 4);
        gpt2_init_params(&b, 4);
        gpt2_zero_grad(&a);
        gpt2_zero_grad(&b);
        float la = gpt2_forward(&a, in, tg, B, T), lb = gpt2_forward(&b, in, tg, B, T);
        assert_memory_equal(&la, &lb, sizeof la);
        gpt2_backward(&a, 1.0f / (B * T));
        gpt2_backward(&b, 1.0f / (B * T));
        assert_memory_equal(a.grads, b.grads, a.num_params * sizeof(float));
        gpt2_destroy(&a);
        gpt2_destroy(&b);
    }
    free(in), free(tg);
}

static void test_logit_chunks_match_whole(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 50, .n_positions = 16, .n_embd = 32, .n_layer = 1, .n_head = 2};
    check_logit_chunks(&d, 0, 2, 16, 5);
}

/* to's parameters from from's, a model of the same layers whose vocabulary
 * may be larger: wte's first rows, every other tensor whole. */
static void copy_weights(gpt2 *to, const gpt2 *from)
{
    for (int i = 0; i < to->num_tensors; i++) {
        const param_tensor *a = &to->tensors[i], *b = &from->tensors[i];
        assert_string_equal(a->name, b->name);
        assert_true(a->numel <= b->numel);
        memcpy(to->params + a->offset, from->params + b->offset, a->numel * sizeof(float));
    }
    gpt2_params_changed(to);
}

/* A vocabulary padded from R = V - 3 real tokens to V (vocab_real R, as
 * llm.c pads 50257 to 50304): the padding columns' logits are -inf, and the
 * loss and every gradient are those of an R-token model with the same
 * weights (the padding rows of wte large, so that unmasked they would
 * dominate); the padding rows of wte get exactly zero gradient.  In fp32,
 * bf16 and fp16 (the 16-bit LM head masks each chunk of logits itself).
 * Measured identical in fp32, bf16 and fp16 on the AVX-512, AVX2 and
 * scalar paths, but the R-token model's products have other shapes (the
 * LM head's backward sums over V), which another CPU's kernels may block
 * and so round differently, an ulp here and there carried through backward:
 * rtol 1e-6. */
static void check_vocab_padding(const gpt2_dims *dp, int R, int B, int T)
{
    const int V = dp->vocab_size, C = dp->n_embd;
    gpt2_dims dr = *dp;
    dr.vocab_size = R;
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    assert_true(in && tg);
    random_tokens(in, B * T, R, 51);
    random_tokens(tg, B * T, R, 52);
    for (gpt2_precision p = PREC_FP32; p <= PREC_FP16; p++) {
        gpt2_options op = {.precision = p, .vocab_real = R}, orr = {.precision = p};
        gpt2 pad, real;
        char err[256];
        assert_int_equal(gpt2_create(&pad, dp, B, T, &op, err, sizeof err), 0);
        assert_int_equal(gpt2_create(&real, &dr, B, T, &orr, err, sizeof err), 0);
        gpt2_init_params(&pad, 8);
        test_fill(pad.p.wte + (size_t)R * C, (size_t)(V - R) * C, 9, 2.0f);
        copy_weights(&real, &pad);

        /* logits (forward without targets): padding -inf, the rest the real model's */
        gpt2_forward(&pad, in, NULL, B, T);
        gpt2_forward(&real, in, NULL, B, T);
        for (int r = 0; r < B * T; r++) {
            for (int v = R; v < V; v++)
                assert_true(isinf(pad.logits[(size_t)r * V + v]) && pad.logits[(size_t)r * V + v] < 0);
            assert_true(test_close("real logits", pad.logits + (size_t)r * V,
                                   real.logits + (size_t)r * R, R, 1e-7f, 1e-6f));
        }

        gpt2_zero_grad(&pad);
        gpt2_zero_grad(&real);
        float lp = gpt2_forward(&pad, in, tg, B, T), lr = gpt2_forward(&real, in, tg, B, T);
        assert_true(fabsf(lp - lr) <= 1e-6f * lr);
        gpt2_backward(&pad, 1.0f / (B * T));
        gpt2_backward(&real, 1.0f / (B * T));
        for (int i = 0; i < pad.num_tensors; i++) {
            const param_tensor *a = &pad.tensors[i], *b = &real.tensors[i];
            assert_true(test_close(a->name, pad.grads + a->offset, real.grads + b->offset,
                                   b->numel, 1e-9f, 1e-6f));
        }
        const float *pad_rows = pad.g.wte + (size_t)R * C;
        for (size_t j = 0; j < (size_t)(V - R) * C; j++)
            assert_true(pad_rows[j] == 0.0f);
        gpt2_destroy(&pad);
        gpt2_destroy(&real);
    }
    free(in), free(tg);
}

static void test_vocab_padding_is_masked(void **state)
{
    (void)state;
    gpt2_dims dp = {.vocab_size = 19, .n_positions = 8, .n_embd = 16, .n_layer = 2, .n_head = 2};
    check_vocab_padding(&dp, 16, 2, 8);
}

/* Users' configs: recompute is bit-identical in fp32, bf16 and fp16, and
 * so are logits made two rows at a time in the 16-bit modes; a vocabulary
 * of 257 padded from 250 and from 256 is the unpadded model's; bf16 and
 * fp16 track fp32 within test_half_gradients_track_fp32's gradient
 * tolerances [measured at most 0.7x of them], on every path.  Its loss
 * tolerances are for its model: 4x them here [measured at most 2.2x, fp16
 * with rounded weights at C 72], over an odd B*T of at least 96 tokens: one
 * token's bf16 loss is off by ~5e-5 with C 40, which a mean over few tokens
 * does not average out.  Not for V = 2 (nor 1): its loss is ln 2 rather
 * than ln 64, so the same absolute error is 6x the relative one, and
 * ln_f.bias's gradient is (sum over rows of p - y) (wte[0] - wte[1]), so
 * any error in that sum, which cancels to a few percent of its terms, is
 * all along the gradient [its bias up to 3.1x the tolerance, on every
 * path]. */
static void test_odd_configs_half_recompute_padding(void **state)
{
    (void)state;
    const isa_t saved = cpu_isa();
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa = next_isa(isa)) {
        cpu_set_isa(isa);
        print_message("%s\n", cpu_isa_name(isa));
        for (int k = 0; k < NODD; k++) {
            const odd_config *c = &odd_configs[k];
            if (c->d.vocab_size > 2) {
                const int half_B = (96 + c->T - 1) / c->T | 1;
                check_half_tracks_fp32(&c->d, c->vocab_real, half_B, c->T, 4.0);
            }
            check_recompute(&c->d, c->vocab_real, c->B, c->T);
            if (c->B * c->T > 1)
                check_logit_chunks(&c->d, c->vocab_real, c->B, c->T, 2);
        }
        check_vocab_padding(&odd_configs[0].d, 250, 1, 3);
        check_vocab_padding(&odd_configs[1].d, 256, 3, 3);
    }
    cpu_set_isa(saved);
}

/* Backward with split_embed_grad (and grads_ready set, as the trainer's
 * reduction does) leaves the input side of wte's gradient in embed_rows,
 * one row per distinct input token in increasing order; added into g.wte
 * at embed_tokens after each backward, it gives the gradients of the model
 * that adds it there itself, over two accumulated micro-batches with
 * repeated tokens, in fp32 and bf16.  Only the order of additions into
 * wte's rows differs, so a sum may round the other way: atol 2e-8, rtol
 * 2e-7 [measured: bf16 identical; fp32 7.5e-9 at most, one ulp of wte's
 * largest gradients (0.12), in elements that cancel to 1e-3 of that]. */
static void note_ready(void *ctx, size_t from)
{
    (void)from;
    ++*(int *)ctx;
}

static void test_split_embed_grad_adds_up(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 40, .n_positions = 16, .n_embd = 16, .n_layer = 2, .n_head = 2};
    int B = 2, T = 16, in[64], tg[64];
    random_tokens(in, 2 * B * T, 12, 61);   /* 12 of 40 tokens: repeats, and tokens absent */
    random_tokens(tg, 2 * B * T, d.vocab_size, 62);
    for (gpt2_precision p = PREC_FP32; p <= PREC_BF16; p++) {
        gpt2_options plain = {.precision = p}, split = {.precision = p, .split_embed_grad = true};
        gpt2 u, s;
        char err[256];
        assert_int_equal(gpt2_create(&u, &d, B, T, &plain, err, sizeof err), 0);
        assert_int_equal(gpt2_create(&s, &d, B, T, &split, err, sizeof err), 0);
        gpt2_init_params(&u, 6);
        gpt2_init_params(&s, 6);
        int calls = 0;
        s.grads_ready = note_ready;
        s.grads_ready_ctx = &calls;
        gpt2_zero_grad(&u);
        gpt2_zero_grad(&s);
        for (int j = 0; j < 2; j++) {
            const int *x = in + j * B * T, *y = tg + j * B * T;
            gpt2_forward(&u, x, y, B, T);
            gpt2_forward(&s, x, y, B, T);
            gpt2_backward(&u, 0.5f / (B * T));
            gpt2_backward(&s, 0.5f / (B * T));
            /* the distinct input tokens, increasing */
            bool seen[40] = {false};
            int distinct = 0;
            for (int i = 0; i < B * T; i++)
                distinct += !seen[x[i]], seen[x[i]] = true;
            assert_int_equal(s.n_embed_tokens, distinct);
            for (int i = 0; i < s.n_embed_tokens; i++) {
                assert_true(seen[s.embed_tokens[i]]);
                assert_true(i == 0 || s.embed_tokens[i] > s.embed_tokens[i - 1]);
                float *row = s.g.wte + (size_t)s.embed_tokens[i] * d.n_embd;
                for (int c = 0; c < d.n_embd; c++)
                    row[c] += s.embed_rows[(size_t)i * d.n_embd + c];
            }
        }
        assert_true(calls > 0);
        assert_true(test_close("split embedding grads", s.grads, u.grads, u.num_params, 2e-8f,
                               2e-7f));
        gpt2_destroy(&u);
        gpt2_destroy(&s);
    }
}

/* Forward without targets (evaluation of logits, generation) computes the
 * logits the training forward does: bit for bit in fp32, where the training
 * forward leaves them in place; and their cross-entropy, taken here in
 * double, is the training forward's loss for every position, in fp32 and
 * bf16 (whose training forward turns each chunk into its gradient).
 * The kernel's exp and log are float: each position's loss within 2.5e-7
 * [measured 1.0e-7 on the AVX-512, AVX2 and scalar paths], their mean 1e-7
 * [3.6e-8]. */
static void test_eval_forward_gives_training_loss(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 50, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 2};
    int B = 2, T = 16, N = B * T, V = d.vocab_size, in[32], tg[32];
    random_tokens(in, N, V, 71);
    random_tokens(tg, N, V, 72);
    for (gpt2_precision p = PREC_FP32; p <= PREC_BF16; p++) {
        gpt2_options o = {.precision = p};
        gpt2 m;
        char err[256];
        assert_int_equal(gpt2_create(&m, &d, B, T, &o, err, sizeof err), 0);
        gpt2_init_params(&m, 7);
        test_fill(m.p.wte, (size_t)V * d.n_embd, 73, 0.5f);   /* logits well spread */
        gpt2_params_changed(&m);
        assert_true(gpt2_forward(&m, in, NULL, B, T) == 0.0f);
        float *logits = malloc((size_t)N * V * sizeof *logits), *want = malloc(N * sizeof *want);
        assert_true(logits && want);
        memcpy(logits, m.logits, (size_t)N * V * sizeof *logits);
        double mean = 0;
        for (int r = 0; r < N; r++) {
            const float *x = logits + (size_t)r * V;
            double mx = x[0], sum = 0;
            for (int v = 1; v < V; v++)
                mx = fmax(mx, x[v]);
            for (int v = 0; v < V; v++)
                sum += exp(x[v] - mx);
            want[r] = (float)(log(sum) + mx - x[tg[r]]);
            mean += want[r];
        }
        mean /= N;
        float loss = gpt2_forward(&m, in, tg, B, T);
        if (p == PREC_FP32)
            assert_memory_equal(m.logits, logits, (size_t)N * V * sizeof *logits);
        assert_true(test_close("eval losses", m.losses, want, N, 0.0f, 2.5e-7f));
        assert_true(fabs(loss - mean) <= 1e-7 * mean);
        free(logits);
        free(want);
        gpt2_destroy(&m);
    }
}

/* What forward asks for before reading parameters (ZeRO waits for each range
 * of the allgather): one tensor at a time, every tensor, in the order read.
 * wte ends the arena and wpe starts it: one range for both would be the
 * whole arena, and the allgather's overlap with forward gone. */
typedef struct {
    const gpt2 *m;
    int calls, covered;
    bool one_tensor_each;
} needs_seen;

static void record_need(void *ctx, size_t lo, size_t hi)
{
    needs_seen *s = ctx;
    bool match = false;
    for (int i = 0; i < s->m->num_tensors; i++)
        match |= s->m->tensors[i].offset == lo && s->m->tensors[i].numel == hi - lo;
    s->one_tensor_each &= match;
    s->covered += (int)(hi - lo);
    s->calls++;
}

static void test_forward_asks_for_one_tensor_at_a_time(void **state)
{
    (void)state;
    gpt2_dims d = {.vocab_size = 40, .n_positions = 8, .n_embd = 16, .n_layer = 2, .n_head = 2};
    int B = 1, T = 8, in[8], tg[8];
    random_tokens(in, B * T, d.vocab_size, 41);
    random_tokens(tg, B * T, d.vocab_size, 42);
    gpt2 m;
    char err[256];
    assert_int_equal(gpt2_create(&m, &d, B, T, &FP32, err, sizeof err), 0);
    gpt2_init_params(&m, 5);
    needs_seen seen = {.m = &m, .one_tensor_each = true};
    m.params_needed = record_need;
    m.params_needed_ctx = &seen;
    gpt2_forward(&m, in, tg, B, T);
    assert_true(seen.one_tensor_each);
    assert_int_equal(seen.calls, m.num_tensors);
    assert_int_equal(seen.covered, (int)m.num_params);
    gpt2_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_finite_differences),
        cmocka_unit_test(test_odd_configs_forward_matches_double),
        cmocka_unit_test(test_odd_configs_gradients_match_finite_differences),
        cmocka_unit_test(test_initial_loss_is_ln_vocab),
        cmocka_unit_test(test_gradient_accumulation_equals_big_batch),
        cmocka_unit_test(test_zero_grad_replaces_old_gradients),
        cmocka_unit_test(test_same_seed_same_params),
        cmocka_unit_test(test_half_gradients_track_fp32),
        cmocka_unit_test(test_bf16_attention_follows_options),
        cmocka_unit_test(test_memory_counts_attention_work),
        cmocka_unit_test(test_recompute_is_bit_identical),
        cmocka_unit_test(test_logit_chunks_match_whole),
        cmocka_unit_test(test_vocab_padding_is_masked),
        cmocka_unit_test(test_odd_configs_half_recompute_padding),
        cmocka_unit_test(test_split_embed_grad_adds_up),
        cmocka_unit_test(test_eval_forward_gives_training_loss),
        cmocka_unit_test(test_forward_asks_for_one_tensor_at_a_time),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
