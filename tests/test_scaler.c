/* scaler: backs off on an overflow, grows back after the interval; a fixed
 * scale (fp32, bf16) stays 1 through a non-finite step; an fp16 model step
 * (forward, backward with the scaled loss, norm, scaler, optimizer, as
 * trainer/train.c runs them) whose gradients overflow is skipped, not
 * applied: with an injected inf, and with a scale so large that the fp16
 * gradients themselves overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/scaler.h"

static void test_backs_off_and_grows_back(void **state)
{
    (void)state;
    loss_scaler s;
    scaler_init(&s, 65536.0f, 2000);
    for (int i = 0; i < 1999; i++)
        assert_true(scaler_update(&s, true));
    assert_true(s.scale == 65536.0f);
    assert_true(scaler_update(&s, true));   /* the 2000th finite step in a row */
    assert_true(s.scale == 131072.0f);
    assert_false(scaler_update(&s, false));   /* overflow: skip and halve */
    assert_false(scaler_update(&s, false));
    assert_true(s.scale == 32768.0f);
    assert_int_equal(s.overflows, 2);
    for (int i = 0; i < 1999; i++)   /* the count restarts after an overflow */
        scaler_update(&s, true);
    assert_true(s.scale == 32768.0f);
    scaler_update(&s, true);
    assert_true(s.scale == 65536.0f);
}

/* Overflows between runs of finite steps never take the scale below 1, where
 * fp16 gradients would underflow to a finite 0; a checkpoint holding less
 * (written before the floor) resumes at 1. */
static void test_scale_stops_at_one(void **state)
{
    (void)state;
    loss_scaler s;
    scaler_init(&s, 65536.0f, 2000);
    for (int i = 0; i < 100; i++) {
        assert_false(scaler_update(&s, false));
        assert_true(scaler_update(&s, true));
    }
    assert_true(s.scale == SCALER_MIN_SCALE);
    assert_int_equal(s.overflows, 100);
    scaler_restore(&s, 0x1p-20, 7);
    assert_true(s.scale == SCALER_MIN_SCALE);
    assert_int_equal(s.good_steps, 7);
    scaler_restore(&s, 4096.0, 0);
    assert_true(s.scale == 4096.0f);
}

static void test_fixed_scale_when_growth_is_off(void **state)
{
    (void)state;
    loss_scaler s;
    scaler_init(&s, 1.0f, 0);
    for (int i = 0; i < 5000; i++)
        assert_true(scaler_update(&s, true));
    assert_true(s.scale == 1.0f);
    /* a non-finite step is skipped and counted, and the scale stays */
    assert_false(scaler_update(&s, false));
    assert_false(scaler_update(&s, false));
    assert_true(s.scale == 1.0f);
    assert_int_equal(s.overflows, 2);
    assert_true(scaler_update(&s, true));
    assert_true(s.scale == 1.0f);
}

typedef struct {
    gpt2 model;
    adamw_state opt;
    loss_scaler scaler;
    run_config cfg;
    int in[16], tg[16];
} fp16_run;

enum { B = 2, T = 8 };

static void fp16_run_init(fp16_run *r, float initial_scale)
{
    const gpt2_dims d = {.vocab_size = 32, .n_positions = T, .n_embd = 16, .n_layer = 1,
                         .n_head = 2};
    const gpt2_options o = {.precision = PREC_FP16};
    char err[256];
    memset(r, 0, sizeof *r);
    assert_int_equal(gpt2_create(&r->model, &d, B, T, &o, err, sizeof err), 0);
    assert_int_equal(optimizer_create(&r->opt, r->model.num_params, err, sizeof err), 0);
    gpt2_init_params(&r->model, 5);
    config_defaults(&r->cfg);
    scaler_init(&r->scaler, initial_scale, 2000);   /* train.c's fp16 interval */
    for (int i = 0; i < B * T; i++) {
        r->in[i] = (7 * i + 3) % d.vocab_size;
        r->tg[i] = (5 * i + 1) % d.vocab_size;
    }
}

static void fp16_run_free(fp16_run *r)
{
    optimizer_destroy(&r->opt);
    gpt2_destroy(&r->model);
}

/* One training step as train.c's train_step and update_params take it, with
 * gradient inject_at set to inf after backward (SIZE_MAX: none).  Returns
 * whether it was applied; the scaler's and the optimizer's verdicts agree. */
static bool fp16_step(fp16_run *r, size_t inject_at)
{
    gpt2 *m = &r->model;
    const float scale = r->scaler.scale;
    gpt2_zero_grad(m);
    gpt2_forward(m, r->in, r->tg, B, T);
    gpt2_backward(m, scale / (B * T));
    if (inject_at != SIZE_MAX)
        m->grads[inject_at] = INFINITY;
    float norm = grad_global_norm(m) / scale;
    bool may = scaler_update(&r->scaler, isfinite(norm));
    bool stepped = optimizer_step(&r->opt, m, NULL, &r->cfg, 1e-3f, norm, scale);
    assert_int_equal(may, stepped);
    return stepped;
}

static void test_fp16_overflow_step_is_skipped(void **state)
{
    (void)state;
    fp16_run r;
    fp16_run_init(&r, 65536.0f);
    size_t bytes = r.model.num_params * sizeof(float);
    float *before = malloc(bytes);
    assert_non_null(before);
    memcpy(before, r.model.params, bytes);
    /* an inf in one gradient (the middle of the arena: a block's) */
    assert_false(fp16_step(&r, r.model.num_params / 2));
    assert_memory_equal(r.model.params, before, bytes);
    assert_int_equal(r.opt.step, 0);
    for (size_t i = 0; i < r.opt.n; i++)
        assert_true(r.opt.m[i] == 0 && r.opt.v[i] == 0);
    assert_true(r.scaler.scale == 32768.0f);
    assert_int_equal(r.scaler.overflows, 1);
    /* the next step, finite at the halved scale, is applied */
    assert_true(fp16_step(&r, SIZE_MAX));
    assert_memory_not_equal(r.model.params, before, bytes);
    assert_int_equal(r.opt.step, 1);
    assert_true(r.scaler.scale == 32768.0f);
    assert_int_equal(r.scaler.overflows, 1);
    free(before);
    fp16_run_free(&r);
}

/* At 2^40 the scaled gradients overflow fp16 (65504) in backward's products:
 * every step is skipped and the scale halved until they fit, then one is
 * applied. */
static void test_fp16_gradients_overflowing_back_off(void **state)
{
    (void)state;
    fp16_run r;
    fp16_run_init(&r, 0x1p40f);
    size_t bytes = r.model.num_params * sizeof(float);
    float *before = malloc(bytes);
    assert_non_null(before);
    memcpy(before, r.model.params, bytes);
    int skipped = 0;
    while (!fp16_step(&r, SIZE_MAX)) {
        skipped++;
        assert_memory_equal(r.model.params, before, bytes);
        assert_int_equal(r.opt.step, 0);
        assert_true(r.scaler.scale == ldexpf(1.0f, 40 - skipped));
        assert_true(skipped < 40);
    }
    assert_true(skipped >= 1);
    assert_int_equal(r.scaler.overflows, skipped);
    assert_int_equal(r.opt.step, 1);
    assert_memory_not_equal(r.model.params, before, bytes);
    free(before);
    fp16_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backs_off_and_grows_back),
        cmocka_unit_test(test_scale_stops_at_one),
        cmocka_unit_test(test_fixed_scale_when_growth_is_off),
        cmocka_unit_test(test_fp16_overflow_step_is_skipped),
        cmocka_unit_test(test_fp16_gradients_overflowing_back_off),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
