/* sampler and dataset: each epoch is a permutation (every sample exactly once),
 * orders differ by epoch and seed and are reproducible; batches are the
 * windows the sampler names; bad data is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "io/dataset.h"
#include "io/sampler.h"
#include "tests/test_util.h"

static void test_each_epoch_is_a_permutation(void **state)
{
    (void)state;
    const uint64_t sizes[] = {1, 2, 3, 5, 16, 17, 1000, 4097};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        for (uint64_t epoch = 0; epoch < 3; epoch++) {
            char *seen = calloc(n, 1);
            for (uint64_t i = 0; i < n; i++) {
                uint64_t x = sampler_permute(i, n, 42, epoch);
                assert_true(x < n);
                assert_int_equal(seen[x], 0);
                seen[x] = 1;
            }
            free(seen);
        }
    }
}

static void test_orders_depend_on_seed_and_epoch_only(void **state)
{
    (void)state;
    uint64_t n = 1000, same_epoch = 0, same_seed = 0;
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(sampler_permute(i, n, 7, 0), sampler_permute(i, n, 7, 0));
        same_epoch += sampler_permute(i, n, 7, 0) == sampler_permute(i, n, 7, 1);
        same_seed += sampler_permute(i, n, 7, 0) == sampler_permute(i, n, 8, 0);
    }
    assert_true(same_epoch < 20 && same_seed < 20);   /* ~1 expected by chance */
    assert_int_equal(sampler_offset(n + 5, n, 7), sampler_permute(5, n, 7, 1));
}

static char dir[64];

static int make_data(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/test_sampler.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    uint32_t train[100], val[40];
    for (int i = 0; i < 100; i++)
        train[i] = (uint32_t)(i % 50);
    for (int i = 0; i < 40; i++)
        val[i] = (uint32_t)(40 - i);
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/train.tok", dir);
    if (shard_write(path, train, 100, 50, err, sizeof err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/val.tok", dir);
    return shard_write(path, val, 40, 50, err, sizeof err);
}

static int remove_data(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void test_batches_are_the_sampled_windows(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    int T = 8, B = 3, in[24], tg[24];
    assert_int_equal(dataset_open(&d, dir, T, 64, 9, err, sizeof err), 0);
    assert_int_equal(dataset_train_samples(&d), 92);
    assert_int_equal(dataset_val_windows(&d), 4);   /* (40 - 1) / 8 */
    assert_int_equal(dataset_train_batch(&d, 200, B, in, tg, err, sizeof err), 0);
    for (int b = 0; b < B; b++) {
        uint64_t off = sampler_offset(200 + (uint64_t)b, 92, 9);
        for (int t = 0; t < T; t++) {
            assert_int_equal(in[b * T + t], (off + t) % 50);
            assert_int_equal(tg[b * T + t], (off + t + 1) % 50);
        }
    }
    assert_int_equal(dataset_val_batch(&d, 1, 2, in, tg, err, sizeof err), 0);
    assert_int_equal(in[0], 40 - 8);
    assert_int_equal(tg[T - 1], 40 - 16);
    dataset_close(&d);
}

static void test_refuses_data_the_model_cannot_embed(void **state)
{
    (void)state;
    dataset d;
    char err[256] = "";
    assert_int_equal(dataset_open(&d, dir, 8, 49, 9, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocab_size"));
    assert_int_equal(dataset_open(&d, dir, 39, 64, 9, err, sizeof err), -1);   /* val too short */
    assert_non_null(strstr(err, "too few"));
    assert_int_equal(dataset_open(&d, "/nonexistent", 8, 64, 9, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_epoch_is_a_permutation),
        cmocka_unit_test(test_orders_depend_on_seed_and_epoch_only),
        cmocka_unit_test_setup_teardown(test_batches_are_the_sampled_windows, make_data, remove_data),
        cmocka_unit_test_setup_teardown(test_refuses_data_the_model_cannot_embed, make_data, remove_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
