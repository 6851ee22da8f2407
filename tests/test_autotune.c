/* autotune: precision auto times fp32 and each native 16-bit product of the
 * model's shapes, takes the fastest, and caches the choice per CPU, build,
 * threads and shapes; a damaged or foreign cache file is measured over.  The
 * weight gradients' kernel and bf16 attention's products are timed and cached
 * the same way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "trainer/autotune.h"
#include "tests/test_util.h"

static char dir[] = "/tmp/test_autotune_XXXXXX";

static void small_config(run_config *c)
{
    char err[256];
    config_defaults(c);
    c->vocab_size = 512, c->n_positions = 64, c->n_embd = 64, c->n_layer = 2, c->n_head = 2;
    c->batch_size = 2;
    assert_int_equal(config_finalize(c, err, sizeof err), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_measures_then_caches(void **state)
{
    (void)state;
    run_config c;
    small_config(&c);
    char path[1024];
    assert_int_equal(precision_cache_path(&c, path, sizeof path), 0);
    assert_non_null(strstr(path, dir));
    unlink(path);

    precision_choice first, again;
    const double t0 = omp_get_wtime();
    precision_choose(&c, &first);
    const double took = omp_get_wtime() - t0;
    assert_false(first.from_cache);
    assert_true(first.gflops[GEMM_F32] > 0);
    /* a 16-bit product is measured exactly where it runs natively */
    assert_int_equal(first.gflops[GEMM_BF16] > 0, gemm_native(GEMM_BF16));
    assert_int_equal(first.gflops[GEMM_F16] > 0, gemm_native(GEMM_F16));
    /* the choice is fp32 unless a 16-bit rate beats it */
    const int chosen = strcmp(first.chosen, "fp32") == 0 ? GEMM_F32
                       : strcmp(first.chosen, "bf16") == 0 ? GEMM_BF16 : GEMM_F16;
    for (int d = GEMM_F32; d <= GEMM_F16; d++)
        assert_true(first.gflops[chosen] >= first.gflops[d] / 1.06);
    /* measure_s is the time the measurement took: part of the call's time on
     * the same clock, however fast or loaded the host (no bound on it) */
    assert_true(isfinite(first.measure_s) && first.measure_s > 0 && first.measure_s <= took);
    assert_int_equal(access(path, R_OK), 0);

    precision_choose(&c, &again);
    assert_true(again.from_cache);
    assert_string_equal(again.chosen, first.chosen);
    /* cJSON prints 15 significant digits where they read back within an ulp or so */
    assert_true(fabs(again.gflops[GEMM_F32] - first.gflops[GEMM_F32]) <=
                1e-12 * first.gflops[GEMM_F32]);
    assert_true(fabs(again.measure_s - first.measure_s) <= 1e-12 * first.measure_s);

    /* another model is another key */
    run_config other = c;
    other.n_embd = 128;
    char other_path[1024];
    assert_int_equal(precision_cache_path(&other, other_path, sizeof other_path), 0);
    assert_string_not_equal(path, other_path);
    print_message("chose %s: fp32 %.0f, bf16 %.0f GFLOP/s, %.3f s\n", first.chosen,
                  first.gflops[GEMM_F32], first.gflops[GEMM_BF16], first.measure_s);
}

/* Damaged files, a foreign key and an unknown precision are measured over
 * (and the file rewritten), never trusted or fatal. */
static void test_bad_cache_is_ignored(void **state)
{
    (void)state;
    run_config c;
    small_config(&c);
    char path[1024];
    assert_int_equal(precision_cache_path(&c, path, sizeof path), 0);
    static const char *const bad[] = {
        "", "{\"precision\":\"bf16\"", "[1,2]",
        "{\"precision\":\"bf16\",\"measured_gflops\":{\"fp32\":1},\"key\":\"another machine\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i]);
        precision_choice p;
        precision_choose(&c, &p);
        assert_false(p.from_cache);
        precision_choose(&c, &p);   /* rewritten whole */
        assert_true(p.from_cache);
    }
    char json[512];
    precision_choice p;
    weight_grad_choice w = {0};
    precision_choose(&c, &p);
    autotune_event_json(&c, &p, &w, NULL, json, sizeof json);
    assert_non_null(strstr(json, "\"measured_gflops\":{\"fp32\":"));
    assert_non_null(strstr(json, "\"cached\":true"));   /* the precision's, printed first */
}

/* The file at path with text put right after its opening brace: a member
 * named there comes first, so it is the one read. */
static void put_first(const char *path, const char *text)
{
    char old[4096], new[4200];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(old, 1, sizeof old - 1, f);
    fclose(f);
    old[n] = '\0';
    assert_true(n > 0 && old[0] == '{');
    snprintf(new, sizeof new, "{%s,%s", text, old + 1);
    write_text(path, new);
}

/* Figures no measurement gives (negative, or far past any CPU) are damage,
 * measured over: the training event prints them with %.0f into a line of
 * fixed size, which 1e300 overran (the trainer crashed). */
static void test_absurd_cached_figures_are_measured_over(void **state)
{
    (void)state;
    run_config c;
    small_config(&c);
    char path[1024];
    static const char *const precision_bad[] = {
        "\"measured_gflops\":{\"fp32\":1e300}", "\"measured_gflops\":{\"bf16\":-1e300}",
        "\"measured_gflops\":{\"fp32\":\"fast\"}", "\"measure_s\":1e300", "\"measure_s\":-1",
    };
    assert_int_equal(precision_cache_path(&c, path, sizeof path), 0);
    for (size_t i = 0; i < sizeof precision_bad / sizeof precision_bad[0]; i++) {
        precision_choice p;
        precision_choose(&c, &p);   /* a good file to spoil */
        put_first(path, precision_bad[i]);
        precision_choose(&c, &p);
        assert_false(p.from_cache);
        assert_true(p.gflops[GEMM_F32] < 1e7 && p.measure_s < 1e6);
    }
    static const char *const kernel_bad[] = {
        "\"measured_gflops\":{\"first\":1e300,\"gemm\":1}",
        "\"measured_gflops\":{\"first\":1,\"gemm\":-1e300}", "\"measure_s\":-1e300",
    };
    c.precision = PRECISION_FP32;
    assert_int_equal(weight_grad_cache_path(&c, path, sizeof path), 0);
    for (size_t i = 0; i < sizeof kernel_bad / sizeof kernel_bad[0]; i++) {
        weight_grad_choice w;
        weight_grad_choose(&c, &w);
        put_first(path, kernel_bad[i]);
        weight_grad_choose(&c, &w);
        assert_false(w.from_cache);
        weight_grad_choose(&c, &w);   /* rewritten with what was measured */
        assert_true(w.from_cache);
    }
}

/* A rebuild (here: this program's time stamp moved) measures again, into
 * the file of the build before it: rebuilds do not add a file each to the
 * cache. */
static void test_rebuild_replaces_its_file(void **state)
{
    (void)state;
    run_config c;
    small_config(&c);
    char exe[1024], path[1024], rebuilt[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    struct stat st;
    assert_int_equal(stat(exe, &st), 0);
    assert_int_equal(precision_cache_path(&c, path, sizeof path), 0);
    precision_choice p;
    precision_choose(&c, &p);
    precision_choose(&c, &p);
    assert_true(p.from_cache);

    struct timespec moved[2] = {st.st_atim, st.st_mtim};
    moved[1].tv_sec += 1;
    assert_int_equal(utimensat(AT_FDCWD, exe, moved, 0), 0);
    assert_int_equal(precision_cache_path(&c, rebuilt, sizeof rebuilt), 0);
    precision_choose(&c, &p);
    const bool measured = !p.from_cache;
    precision_choose(&c, &p);
    const bool cached = p.from_cache;
    struct timespec back[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, exe, back, 0), 0);
    assert_string_equal(rebuilt, path);
    assert_true(measured && cached);
}

/* Both kernels are timed, the choice follows the rates, it is cached per
 * products' dtype, and a damaged file is measured over. */
static void test_weight_grad_kernel(void **state)
{
    (void)state;
    run_config c;
    small_config(&c);
    char path[1024], bf16_path[1024];
    c.precision = PRECISION_FP32;
    assert_int_equal(weight_grad_cache_path(&c, path, sizeof path), 0);
    unlink(path);
    weight_grad_choice first, again;
    const double t0 = omp_get_wtime();
    weight_grad_choose(&c, &first);
    const double took = omp_get_wtime() - t0;
    assert_false(first.from_cache);
    assert_true(first.gflops[0] > 0 && first.gflops[1] > 0);
    assert_true(isfinite(first.measure_s) && first.measure_s > 0 && first.measure_s <= took);
    /* the gemm kernel only when it was faster */
    assert_true(!first.gemm_kernel || first.gflops[1] > first.gflops[0]);
    weight_grad_choose(&c, &again);
    assert_true(again.from_cache);
    assert_int_equal(again.gemm_kernel, first.gemm_kernel);
    assert_true(fabs(again.measure_s - first.measure_s) <= 1e-12 * first.measure_s);
    /* the setting in force before is left as it was */
    assert_false(gemm_trans_a_kernel());

    run_config half = c;
    half.precision = PRECISION_BF16;
    assert_int_equal(weight_grad_cache_path(&half, bf16_path, sizeof bf16_path), 0);
    /* a bf16 run without native bf16 products runs (and measures) fp32 ones */
    assert_int_equal(strcmp(path, bf16_path) != 0, gemm_native(GEMM_BF16));

    write_text(path, "{\"kernel\":\"gemm\",\"measured_gflops\":");
    weight_grad_choose(&c, &again);
    assert_false(again.from_cache);
    char json[512];
    c.precision_auto = false;   /* an explicit precision: its name alone */
    autotune_event_json(&c, NULL, &again, NULL, json, sizeof json);
    const char *kernel = strstr(json, "\"precision\":\"fp32\",\"weight_grad\":{\"kernel\":");
    assert_non_null(kernel);
    assert_non_null(strstr(kernel, "\"measured_gflops\":{\"first\":"));
    assert_non_null(strstr(kernel, "\"cached\":false"));
    print_message("weight gradients (V %d, C %d): first choice %.0f, gemm kernel %.0f GFLOP/s\n",
                  c.vocab_size, c.n_embd, first.gflops[0], first.gflops[1]);
}

/* bf16 attention's products: where they are native both ways are timed, bf16
 * taken only when 5% faster, the choice cached and a damaged file measured
 * over; elsewhere, and for other precisions, nothing is timed and the
 * choice is fp32. */
static void test_attention_products(void **state)
{
    (void)state;
    run_config c;
    small_config(&c);
    c.precision = PRECISION_FP32;
    attention_choice a;
    attention_choose(&c, &a);
    assert_true(!a.bf16 && a.ms[0] == 0 && a.ms[1] == 0);

    c.precision = PRECISION_BF16;
    char path[1024];
    assert_int_equal(attention_cache_path(&c, path, sizeof path), 0);
    unlink(path);
    attention_choice first, again;
    const double t0 = omp_get_wtime();
    attention_choose(&c, &first);
    const double took = omp_get_wtime() - t0;
    if (!attention_bf16_native()) {
        assert_true(!first.bf16 && first.ms[0] == 0 && first.ms[1] == 0);
        assert_int_equal(access(path, F_OK), -1);
        test_skip("timing attention's bf16 products", "this CPU has no native bf16 attention");
        return;
    }
    assert_false(first.from_cache);
    assert_true(first.ms[0] > 0 && first.ms[1] > 0);
    assert_int_equal(first.bf16, first.ms[0] > 1.05 * first.ms[1]);
    assert_true(isfinite(first.measure_s) && first.measure_s > 0 && first.measure_s <= took);
    attention_choose(&c, &again);
    assert_true(again.from_cache);
    assert_int_equal(again.bf16, first.bf16);
    assert_true(fabs(again.ms[1] - first.ms[1]) <= 1e-12 * first.ms[1]);

    /* another sequence length is another key */
    run_config longer = c;
    longer.seq_len = c.seq_len / 2;
    char other[1024];
    assert_int_equal(attention_cache_path(&longer, other, sizeof other), 0);
    assert_string_not_equal(path, other);

    static const char *const bad[] = {
        "{\"products\":\"bf16\",\"measured_ms\":", "\"products\":\"int8\"",
        "\"measured_ms\":{\"fp32\":1,\"bf16\":-1}", "\"measured_ms\":{\"fp32\":0,\"bf16\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (i == 0)
            write_text(path, bad[i]);
        else
            put_first(path, bad[i]);
        attention_choose(&c, &again);
        assert_false(again.from_cache);
        attention_choose(&c, &again);   /* rewritten with what was measured */
        assert_true(again.from_cache);
    }
    char json[1024];
    weight_grad_choice w = {0};
    c.precision_auto = false;
    autotune_event_json(&c, NULL, &w, &again, json, sizeof json);
    const char *att = strstr(json, "\"attention\":{\"products\":");
    assert_non_null(att);
    assert_non_null(strstr(att, "\"measured_ms\":{\"fp32\":"));
    assert_non_null(strstr(att, "\"cached\":true"));
    print_message("attention (T %d, hs %d): fp32 %.2f, bf16 %.2f ms: %s\n", c.seq_len,
                  c.n_embd / c.n_head, first.ms[0], first.ms[1], first.bf16 ? "bf16" : "fp32");
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("GPT_PRECISION_CACHE");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    gemm_release();
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_measures_then_caches),
        cmocka_unit_test(test_bad_cache_is_ignored),
        cmocka_unit_test(test_absurd_cached_figures_are_measured_over),
        cmocka_unit_test(test_rebuild_replaces_its_file),
        cmocka_unit_test(test_weight_grad_kernel),
        cmocka_unit_test(test_attention_products),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
