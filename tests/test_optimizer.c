/* optimizer: the learning-rate schedule against nanoGPT's get_lr written out
 * here; grad_global_norm against a double sum; optimizer_step on a small
 * GPT-2 over steps with the gradient norm above and below grad_clip and loss
 * scales 1 and 1024, against an AdamW in double written here (unscale, clip
 * as torch.nn.utils.clip_grad_norm_, decoupled weight decay on the 2-D
 * weights only, bias correction); a non-finite norm skips the step.
 *
 * Tolerances (measured worst in brackets, the same under GPT_ISA=scalar, avx2
 * and avx512): lr 2e-7 relative [6.6e-8; float arithmetic on float inputs];
 * the norm 1e-7 relative [1.7e-8; one rounding to float can cost 6e-8];
 * after four steps params 1e-7 absolute [3.7e-8; near 0.5, where an ulp is
 * 6e-8]; moments relative to the tensor's largest, m 2e-7 [8.5e-8] and
 * v 4e-7 [1.8e-7].
 * Each asserted quantity moves by far more under the faults these tests
 * are for (no clipping, no unscaling, decay on 1-D tensors, no cosine).
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernels/gemm.h"
#include "trainer/config.h"
#include "trainer/optimizer.h"
#include "tests/test_util.h"

#define LR_RTOL 2e-7
#define NORM_RTOL 1e-7
#define PARAM_ATOL 1e-7
#define M_RTOL 2e-7
#define V_RTOL 4e-7

/* nanoGPT's get_lr (train.py), in double. */
static double nanogpt_lr(double lr, double min_lr, int warmup, int decay_iters, int it)
{
    if (it < warmup)
        return lr * (it + 1) / (warmup + 1);
    if (it > decay_iters)
        return min_lr;
    double ratio = (double)(it - warmup) / (decay_iters - warmup);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));
    return min_lr + coeff * (lr - min_lr);
}

static void check_lr(const run_config *c, int step, double want)
{
    double got = lr_schedule(c, step);
    if (!(fabs(got - want) <= LR_RTOL * want))
        fail_msg("lr_schedule(step %d) = %.9g, want %.9g", step, got, want);
}

static void test_lr_schedule_is_nanogpts(void **state)
{
    (void)state;
    run_config c;
    config_defaults(&c);
    c.lr = 6e-4f;
    c.min_lr = 6e-5f;
    c.warmup_steps = 10;
    c.lr_decay_steps = 110;
    const double lr = c.lr, min_lr = c.min_lr;
    /* the landmarks, by their own values */
    check_lr(&c, 0, lr / 11);                        /* first warmup step */
    check_lr(&c, 9, lr * 10 / 11);                   /* last warmup step */
    check_lr(&c, 10, lr);                            /* the peak */
    check_lr(&c, 60, (lr + min_lr) / 2);             /* half way down the cosine */
    check_lr(&c, 35, min_lr + (lr - min_lr) * (0.5 + 0.5 * cos(M_PI / 4)));
    check_lr(&c, 110, min_lr);                       /* the decay's end */
    check_lr(&c, 111, min_lr);
    check_lr(&c, 100000, min_lr);
    /* and every step against the closed form */
    for (int s = 0; s <= 130; s++)
        check_lr(&c, s, nanogpt_lr(lr, min_lr, c.warmup_steps, c.lr_decay_steps, s));
    /* no warmup: the peak at step 0 */
    c.warmup_steps = 0;
    for (int s = 0; s <= 120; s++)
        check_lr(&c, s, nanogpt_lr(lr, min_lr, 0, c.lr_decay_steps, s));
    /* the longest warmup the config takes: a tiny lr, not a negative one
     * from warmup_steps + 1 overflowing */
    c.warmup_steps = INT_MAX;
    check_lr(&c, 0, lr / 2147483648.0);
    check_lr(&c, 999, lr * 1000 / 2147483648.0);
}

static void make_model(gpt2 *m, const gpt2_dims *d)
{
    char err[256];
    const gpt2_options fp32 = {.precision = PREC_FP32};
    if (gpt2_create(m, d, 1, d->n_positions, &fp32, err, sizeof err) != 0)
        fail_msg("%s", err);
}

/* A model with its parameters set to a fixed pattern, and fresh Adam state. */
static void make_model_and_state(gpt2 *m, adamw_state *s, const gpt2_dims *d)
{
    char err[256];
    make_model(m, d);
    if (optimizer_create(s, m->num_params, err, sizeof err) != 0)
        fail_msg("%s", err);
    test_fill(m->params, m->num_params, 3, 0.5f);
}

static double norm_double(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* Over 32768 values (the kernel's parallel threshold), and a small one. */
static void test_grad_global_norm_is_the_double_norm(void **state)
{
    (void)state;
    const gpt2_dims dims[2] = {{.vocab_size = 64, .n_positions = 16, .n_embd = 48, .n_layer = 2,
                                .n_head = 2},
                               {.vocab_size = 5, .n_positions = 4, .n_embd = 8, .n_layer = 1,
                                .n_head = 2}};
    for (int k = 0; k < 2; k++) {
        gpt2 m;
        make_model(&m, &dims[k]);
        assert_true(k == 1 || m.num_params > 32768);
        test_fill(m.grads, m.num_params, 11 + k, 3.0f);
        m.grads[m.num_params / 3] = 40.0f;   /* one large value among many small */
        double want = norm_double(m.grads, m.num_params);
        double got = grad_global_norm(&m);
        if (!(fabs(got - want) <= NORM_RTOL * want))
            fail_msg("grad_global_norm %.9g, want %.9g", got, want);
        gpt2_destroy(&m);
    }
}

/* The optimizer's state in double, and the update written from the docs:
 * unscale by the loss scale, clip the global norm to grad_clip
 * (clip_grad_norm_: coefficient max_norm / (norm + 1e-6) when below 1), then
 * torch.optim.AdamW with weight decay on the 2-D weights (embeddings and the
 * products' matrices, not biases or LayerNorm). */
typedef struct {
    double *p, *m, *v;
    int step;
} ref_adamw;

static bool decayed_by_name(const char *name)
{
    return strstr(name, ".weight") && !strstr(name, ".ln_");
}

static void ref_step(ref_adamw *r, const gpt2 *model, const run_config *c, double lr,
                     double grad_norm, double loss_scale)
{
    double coef = 1.0;
    if (c->grad_clip > 0 && c->grad_clip / (grad_norm + 1e-6) < 1.0)
        coef = c->grad_clip / (grad_norm + 1e-6);
    r->step++;
    const double b1 = c->beta1, b2 = c->beta2;
    const double bc1 = 1 - pow(b1, r->step), bc2 = 1 - pow(b2, r->step);
    for (int t = 0; t < model->num_tensors; t++) {
        const param_tensor *pt = &model->tensors[t];
        const double wd = decayed_by_name(pt->name) ? c->weight_decay : 0.0;
        for (size_t i = pt->offset; i < pt->offset + pt->numel; i++) {
            const double g = model->grads[i] / loss_scale * coef;
            r->p[i] -= lr * wd * r->p[i];
            r->m[i] = b1 * r->m[i] + (1 - b1) * g;
            r->v[i] = b2 * r->v[i] + (1 - b2) * g * g;
            r->p[i] -= lr * (r->m[i] / bc1) / (sqrt(r->v[i] / bc2) + c->eps);
        }
    }
}

/* params within PARAM_ATOL; each tensor's moments within M_RTOL, V_RTOL of the
 * tensor's largest (a moment near 0 is the difference of two steps'). */
static void assert_matches_ref(const gpt2 *m, const adamw_state *s, const ref_adamw *r,
                               const char *when)
{
    for (int t = 0; t < m->num_tensors; t++) {
        const param_tensor *pt = &m->tensors[t];
        double mmax = 0, vmax = 0;
        for (size_t i = pt->offset; i < pt->offset + pt->numel; i++) {
            mmax = fmax(mmax, fabs(r->m[i]));
            vmax = fmax(vmax, r->v[i]);
        }
        for (size_t i = pt->offset; i < pt->offset + pt->numel; i++) {
            double ep = fabs(m->params[i] - r->p[i]), em = fabs(s->m[i] - r->m[i]),
                   ev = fabs(s->v[i] - r->v[i]);
            if (!(ep <= PARAM_ATOL) || !(em <= M_RTOL * mmax) || !(ev <= V_RTOL * vmax))
                fail_msg("%s, %s[%zu]: param %.9g want %.9g, m %.9g want %.9g, v %.9g want %.9g",
                         when, pt->name, i - pt->offset, m->params[i], r->p[i], s->m[i], r->m[i],
                         s->v[i], r->v[i]);
        }
    }
}

/* Gradients of global norm `norm` (before the loss scale) times loss_scale,
 * as backward leaves them with a scaled loss; returns the norm as computed. */
static double set_grads(gpt2 *m, uint64_t seed, double norm, float loss_scale)
{
    test_fill(m->grads, m->num_params, seed, 1.0f);
    double k = norm / norm_double(m->grads, m->num_params);
    for (size_t i = 0; i < m->num_params; i++)
        m->grads[i] = (float)(m->grads[i] * k);
    double unscaled = norm_double(m->grads, m->num_params);
    for (size_t i = 0; i < m->num_params; i++)
        m->grads[i] *= loss_scale;   /* a power of two: exact */
    return unscaled;
}

static void test_step_matches_double_adamw(void **state)
{
    (void)state;
    const gpt2_dims d = {.vocab_size = 13, .n_positions = 6, .n_embd = 8, .n_layer = 2,
                         .n_head = 2};
    run_config c;
    config_defaults(&c);
    c.weight_decay = 0.1f;
    c.grad_clip = 1.0f;
    c.beta1 = 0.9f;
    c.beta2 = 0.95f;
    c.eps = 1e-8f;
    const float lr = 1e-2f;   /* updates far above the params' rounding */
    /* {norm before scaling, loss scale}: clipped, not, clipped and scaled, scaled */
    const struct {
        double norm;
        float scale;
    } steps[] = {{4.0, 1.0f}, {0.25, 1.0f}, {3.0, 1024.0f}, {0.5, 1024.0f}};
    for (int clip_off = 0; clip_off < 2; clip_off++) {
        c.grad_clip = clip_off ? 0.0f : 1.0f;
        gpt2 m;
        adamw_state s;
        make_model_and_state(&m, &s, &d);
        ref_adamw r = {calloc(m.num_params, sizeof(double)), calloc(m.num_params, sizeof(double)),
                       calloc(m.num_params, sizeof(double)), 0};
        assert_true(r.p && r.m && r.v);
        for (size_t i = 0; i < m.num_params; i++)
            r.p[i] = m.params[i];
        for (int t = 0; t < m.num_tensors; t++)   /* the table agrees on what decays */
            assert_int_equal(m.tensors[t].decay, decayed_by_name(m.tensors[t].name));
        for (int k = 0; k < (int)(sizeof steps / sizeof steps[0]); k++) {
            double norm = set_grads(&m, 100 + k, steps[k].norm, steps[k].scale);
            assert_true(optimizer_step(&s, &m, NULL, &c, lr, (float)norm, steps[k].scale));
            ref_step(&r, &m, &c, lr, (float)norm, steps[k].scale);
            assert_int_equal(s.step, r.step);
            char when[64];
            snprintf(when, sizeof when, "grad_clip %g, step %d", c.grad_clip, k + 1);
            assert_matches_ref(&m, &s, &r, when);
        }
        free(r.p), free(r.m), free(r.v);
        optimizer_destroy(&s);
        gpt2_destroy(&m);
    }
}

/* A non-finite norm: no update, no moment, no step counted. */
static void test_nonfinite_norm_skips_the_step(void **state)
{
    (void)state;
    const gpt2_dims d = {.vocab_size = 13, .n_positions = 6, .n_embd = 8, .n_layer = 1,
                         .n_head = 2};
    run_config c;
    config_defaults(&c);
    gpt2 m;
    adamw_state s;
    make_model_and_state(&m, &s, &d);
    size_t bytes = m.num_params * sizeof(float);
    float *before = malloc(bytes), *zeros = calloc(m.num_params, sizeof(float));
    assert_true(before && zeros);
    memcpy(before, m.params, bytes);
    const float bad[2] = {INFINITY, NAN};
    for (int k = 0; k < 2; k++) {
        set_grads(&m, 7, 0.5, 1.0f);
        m.grads[0] = bad[k];
        assert_false(optimizer_step(&s, &m, NULL, &c, 1e-2f, bad[k], 1.0f));
        assert_memory_equal(m.params, before, bytes);
        assert_memory_equal(s.m, zeros, bytes);
        assert_memory_equal(s.v, zeros, bytes);
        assert_int_equal(s.step, 0);
    }
    free(before);
    free(zeros);
    optimizer_destroy(&s);
    gpt2_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lr_schedule_is_nanogpts),
        cmocka_unit_test(test_grad_global_norm_is_the_double_norm),
        cmocka_unit_test(test_step_matches_double_adamw),
        cmocka_unit_test(test_nonfinite_norm_skips_the_step),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
