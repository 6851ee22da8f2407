/* env: the strict readers of environment variables (kernels/env.h), GPT_ISA's
 * (kernels/cpu.h) and the trainer's check of every variable it reads
 * (train_check_env).  Unset and empty give the default; a value that cannot
 * be honoured gives -1, a reason naming the variable, the value and what is
 * accepted, and the default; a module reading a variable later (err NULL)
 * runs on that default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/env.h"
#include "kernels/gemm.h"
#include "kernels/peak.h"
#include "trainer/train.h"
#include "trainer/trainer_state.h"

#define VAR "GPT_TEST_ENV"

/* The variables train_check_env covers: none set when a test starts. */
static const char *const trainer_vars[] = {
    "GPT_ISA", "GPT_PEAK_GFLOPS", "GPT_PEAK_BF16_GFLOPS", "GPT_BF16_EMULATE",
    "GPT_PRECISION_CACHE", "GPT_RESTARTS", "SLURM_RESTART_COUNT",
};
enum { N_TRAINER_VARS = sizeof trainer_vars / sizeof *trainer_vars };

/* VAR=value refused: -1 and exactly "VAR=value is not <accepted>". */
static void assert_refused(int rc, const char *err, const char *value, const char *accepted)
{
    char want[256];
    snprintf(want, sizeof want, VAR "=%s is not %s", value, accepted);
    assert_int_equal(rc, -1);
    assert_string_equal(err, want);
}

static void test_flag(void **state)
{
    (void)state;
    char err[256];
    bool on;
    for (int dflt = 0; dflt <= 1; dflt++) {
        unsetenv(VAR);
        on = !dflt;
        assert_int_equal(env_flag(VAR, dflt, &on, err, sizeof err), 0);
        assert_int_equal(on, dflt);
        setenv(VAR, "", 1);   /* empty is unset */
        on = !dflt;
        assert_int_equal(env_flag(VAR, dflt, &on, err, sizeof err), 0);
        assert_int_equal(on, dflt);
    }
    setenv(VAR, "0", 1);
    assert_int_equal(env_flag(VAR, true, &on, err, sizeof err), 0);
    assert_false(on);
    setenv(VAR, "1", 1);
    assert_int_equal(env_flag(VAR, false, &on, err, sizeof err), 0);
    assert_true(on);
    const char *bad[] = {"yes", "off", "10", "01", " 1", "2", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(VAR, bad[i], 1);
        on = false;
        assert_refused(env_flag(VAR, true, &on, err, sizeof err), err, bad[i], "0 or 1");
        assert_true(on);   /* the default */
        on = false;
        assert_int_equal(env_flag(VAR, true, &on, NULL, 0), -1);   /* no reason wanted */
        assert_true(on);
    }
    unsetenv(VAR);
}

static void test_positive(void **state)
{
    (void)state;
    char err[256];
    double v = 1;
    unsetenv(VAR);
    assert_int_equal(env_positive(VAR, &v, err, sizeof err), 0);
    assert_true(v == 0);
    setenv(VAR, "123.5", 1);
    assert_int_equal(env_positive(VAR, &v, err, sizeof err), 0);
    assert_true(v == 123.5);
    setenv(VAR, "2e3", 1);
    assert_int_equal(env_positive(VAR, &v, err, sizeof err), 0);
    assert_true(v == 2000);
    const char *bad[] = {"fast", "0", "-5", "12abc", "1e999", "inf", "nan", "1,5", " 5", "+5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(VAR, bad[i], 1);
        v = 1;
        assert_refused(env_positive(VAR, &v, err, sizeof err), err, bad[i], "a number > 0");
        assert_true(v == 0);
    }
    unsetenv(VAR);
}

static void test_count(void **state)
{
    (void)state;
    char err[256];
    int v = -1;
    unsetenv(VAR);
    assert_int_equal(env_count(VAR, 4, &v, err, sizeof err), 0);
    assert_int_equal(v, 4);
    setenv(VAR, "0", 1);
    assert_int_equal(env_count(VAR, 4, &v, err, sizeof err), 0);
    assert_int_equal(v, 0);
    setenv(VAR, "2147483647", 1);
    assert_int_equal(env_count(VAR, 4, &v, err, sizeof err), 0);
    assert_int_equal(v, 2147483647);
    const char *bad[] = {"-1", "x", "1.5", "3 ", " 3", "+3", "2147483648", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(VAR, bad[i], 1);
        v = -1;
        assert_refused(env_count(VAR, 4, &v, err, sizeof err), err, bad[i], "a whole number >= 0");
        assert_int_equal(v, 4);
    }
    unsetenv(VAR);
}

/* OMP_NUM_THREADS's grammar, as libgomp reads it: what it refuses (and then
 * runs on every CPU) is refused here, what it takes is taken. */
static void test_thread_counts(void **state)
{
    (void)state;
    char err[256];
    unsetenv(VAR);
    assert_int_equal(env_thread_counts(VAR, err, sizeof err), 0);
    const char *good[] = {"", "4", "4,1", " 3 , 1 ", "2 ", "16,8,1"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        setenv(VAR, good[i], 1);
        assert_int_equal(env_thread_counts(VAR, err, sizeof err), 0);
    }
    const char *bad[] = {"0", "abc", "2,x", "2,", ",2", "2,,1", "-1", "4,0", "2.5", "+2",
                         "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(VAR, bad[i], 1);
        assert_refused(env_thread_counts(VAR, err, sizeof err), err, bad[i],
                       "a list of thread counts >= 1 (such as 4 or 4,1)");
    }
    unsetenv(VAR);
}

/* Any CPU: the best path is an argument, so every refusal is reached. */
static void test_isa_parse(void **state)
{
    (void)state;
    char err[256];
    isa_t isa;
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < ISA_COUNT; i++) {
        assert_int_equal(cpu_isa_parse(names[i], ISA_AVX512, &isa, err, sizeof err), 0);
        assert_int_equal(isa, i);
        assert_int_equal(cpu_isa_parse(NULL, (isa_t)i, &isa, err, sizeof err), 0);
        assert_int_equal(isa, i);
        assert_int_equal(cpu_isa_parse("", (isa_t)i, &isa, err, sizeof err), 0);
        assert_int_equal(isa, i);
    }
    assert_int_equal(cpu_isa_parse("avx512", ISA_AVX2, &isa, err, sizeof err), -1);
    assert_string_equal(err, "GPT_ISA=avx512: this CPU cannot run that path (it runs scalar or avx2)");
    assert_int_equal(isa, ISA_AVX2);
    assert_int_equal(cpu_isa_parse("avx2", ISA_SCALAR, &isa, err, sizeof err), -1);
    assert_string_equal(err, "GPT_ISA=avx2: this CPU cannot run that path (it runs scalar)");
    assert_int_equal(isa, ISA_SCALAR);
    const char *bad[] = {"avx1024", "AVX2", "sse", "avx2 ", "best"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char want[128];
        snprintf(want, sizeof want, "GPT_ISA=%s is not a kernel path (scalar, avx2 or avx512)", bad[i]);
        assert_int_equal(cpu_isa_parse(bad[i], ISA_AVX512, &isa, err, sizeof err), -1);
        assert_string_equal(err, want);
        assert_int_equal(isa, ISA_AVX512);
    }
}

/* cpu_isa_from_env makes GPT_ISA's path active, or the best one on a refusal. */
static void test_isa_from_env(void **state)
{
    (void)state;
    char err[256];
    isa_t best = ISA_SCALAR;
    for (int i = 0; i < ISA_COUNT; i++)
        if (cpu_isa_supported((isa_t)i))
            best = (isa_t)i;
    const isa_t saved = cpu_isa();
    setenv("GPT_ISA", "scalar", 1);
    assert_int_equal(cpu_isa_from_env(err, sizeof err), 0);
    assert_int_equal(cpu_isa(), ISA_SCALAR);
    setenv("GPT_ISA", "bogus", 1);
    assert_int_equal(cpu_isa_from_env(err, sizeof err), -1);
    assert_non_null(strstr(err, "GPT_ISA=bogus"));
    assert_int_equal(cpu_isa(), best);
    unsetenv("GPT_ISA");
    cpu_set_isa(ISA_SCALAR);
    assert_int_equal(cpu_isa_from_env(err, sizeof err), 0);
    assert_int_equal(cpu_isa(), best);
    cpu_set_isa(saved);
}

/* GPT_BF16_EMULATE read on gemm's first call: 1 widens; 0 and a bad value
 * give what unset gives. */
static void test_bf16_emulate_read_by_gemm(void **state)
{
    (void)state;
    unsetenv("GPT_BF16_EMULATE");
    gemm_release();
    const bool native = gemm_bf16_native();
    const struct { const char *value; bool native; } cases[] = {
        {"1", false}, {"0", native}, {"yes", native}, {"", native}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv("GPT_BF16_EMULATE", cases[i].value, 1);
        gemm_release();
        assert_int_equal(gemm_bf16_native(), cases[i].native);
    }
    unsetenv("GPT_BF16_EMULATE");
    gemm_release();
}

/* The peak's variable replaces the measurement (set before its first call). */
static void test_peak_read_by_peak(void **state)
{
    (void)state;
    setenv(PEAK_FP32_ENV, "123.5", 1);
    assert_true(peak_fp32_gflops() == 123.5);
    unsetenv(PEAK_FP32_ENV);
}

/* GPT_RESTARTS, else (unset or empty) SLURM_RESTART_COUNT, else 0. */
static void test_restart_count(void **state)
{
    (void)state;
    char err[256];
    int n = -1;
    assert_int_equal(restart_count(&n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    setenv("SLURM_RESTART_COUNT", "3", 1);
    assert_int_equal(restart_count(&n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    setenv("GPT_RESTARTS", "", 1);
    assert_int_equal(restart_count(&n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    setenv("GPT_RESTARTS", "2", 1);
    setenv("SLURM_RESTART_COUNT", "garbage", 1);   /* not read */
    assert_int_equal(restart_count(&n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    setenv("GPT_RESTARTS", "-2", 1);
    assert_int_equal(restart_count(&n, err, sizeof err), -1);
    assert_string_equal(err, "GPT_RESTARTS=-2 is not a whole number >= 0");
    assert_int_equal(n, 0);
    unsetenv("GPT_RESTARTS");
    assert_int_equal(restart_count(&n, err, sizeof err), -1);
    assert_string_equal(err, "SLURM_RESTART_COUNT=garbage is not a whole number >= 0");
    unsetenv("SLURM_RESTART_COUNT");
}

/* Each of the trainer's variables with a value it cannot honour stops the
 * check, named; valid values of all of them at once pass. */
static void test_train_check_env(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(train_check_env(err, sizeof err), 0);
    const char *bad[N_TRAINER_VARS] = {"avx1024", "fast", "-1", "yes", "off", "1.5", "x"};
    for (int i = 0; i < N_TRAINER_VARS; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s=%s ", trainer_vars[i], bad[i]);
        setenv(trainer_vars[i], bad[i], 1);
        err[0] = '\0';
        assert_int_equal(train_check_env(err, sizeof err), -1);
        assert_ptr_equal(strstr(err, want), err);
        unsetenv(trainer_vars[i]);
    }
    const char *good[N_TRAINER_VARS] = {"scalar", "100", "200.5", "1", "0", "2", "3"};
    for (int i = 0; i < N_TRAINER_VARS; i++)
        setenv(trainer_vars[i], good[i], 1);
    assert_int_equal(train_check_env(err, sizeof err), 0);
    for (int i = 0; i < N_TRAINER_VARS; i++)
        unsetenv(trainer_vars[i]);
}

static int unset_all(void **state)
{
    (void)state;
    unsetenv(VAR);
    for (int i = 0; i < N_TRAINER_VARS; i++)
        unsetenv(trainer_vars[i]);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag),
        cmocka_unit_test(test_positive),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_thread_counts),
        cmocka_unit_test(test_isa_parse),
        cmocka_unit_test(test_isa_from_env),
        cmocka_unit_test(test_bf16_emulate_read_by_gemm),
        cmocka_unit_test(test_peak_read_by_peak),
        cmocka_unit_test(test_restart_count),
        cmocka_unit_test(test_train_check_env),
    };
    int rc = cmocka_run_group_tests(tests, unset_all, NULL);
    gemm_release();
    return rc;
}
