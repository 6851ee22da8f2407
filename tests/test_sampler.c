/* sampler and dataset: each epoch is a permutation (every sample exactly once),
 * orders differ by epoch and seed and are reproducible, are exactly the
 * permutation io/sampler.h specifies (a second implementation here) and match
 * pinned values (the checkpoints' stability contract); batches are the
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

/* The permutation as io/sampler.h specifies it, written from that text alone
 * (not from sampler.c): a second path for every position of every order. */
static uint64_t spec_mix(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z;
}

static uint64_t spec_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch)
{
    if (n <= 1)
        return 0;
    unsigned h = 1;
    uint64_t domain = 4;   /* 4^h */
    while (domain < n) {
        h++;
        domain *= 4;
    }
    const uint64_t low = ((uint64_t)1 << h) - 1;   /* mod 2^h */
    const uint64_t key = spec_mix(seed * 0x9E3779B97F4A7C15ULL + epoch + 1);
    uint64_t x = i;
    do {
        uint64_t L = x >> h, R = x & low;
        for (uint64_t round = 0; round <= 3; round++) {
            const uint64_t newR = L ^ (spec_mix(R ^ spec_mix(key + round)) & low);
            L = R;
            R = newR;
        }
        x = L * ((uint64_t)1 << h) + R;
    } while (x >= n);
    return x;
}

static void test_order_is_the_specified_permutation(void **state)
{
    (void)state;
    const uint64_t sizes[] = {0, 1, 2, 3, 4, 5, 16, 17, 63, 64, 65, 1000, 4097, 70001};
    const uint64_t seeds[] = {0, 1, 42, 0xFFFFFFFFFFFFFFFFULL};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
            for (uint64_t epoch = 0; epoch < 3; epoch++)
                for (uint64_t i = 0; i < sizes[k]; i++)
                    if (sampler_permute(i, sizes[k], seeds[s], epoch) !=
                        spec_permute(i, sizes[k], seeds[s], epoch))
                        fail_msg("n %llu seed %llu epoch %llu position %llu: %llu, specified %llu",
                                 (unsigned long long)sizes[k], (unsigned long long)seeds[s],
                                 (unsigned long long)epoch, (unsigned long long)i,
                                 (unsigned long long)sampler_permute(i, sizes[k], seeds[s], epoch),
                                 (unsigned long long)spec_permute(i, sizes[k], seeds[s], epoch));
    /* a far epoch and a large split: key and domain arithmetic past 32 bits */
    const uint64_t big = (uint64_t)3 << 40;
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(sampler_permute(i * 7919, big, 42, 123456789),
                         spec_permute(i * 7919, big, 42, 123456789));
}

/* The stability contract: a checkpoint resumes on the same samples with any
 * build, so these orders never change (n = 1000, seed 42).  A change of the
 * rounds, the key, the mixer or the cycle walk breaks resumed runs; if the
 * order ever has to change, the checkpoint format has to change with it. */
static void test_order_is_pinned(void **state)
{
    (void)state;
    const uint64_t pos[] = {0, 1, 2, 3, 4, 5, 6, 7, 500, 998, 999};
    const uint64_t want[2][11] = {
        {385, 211, 599, 307, 918, 93, 241, 280, 212, 194, 737},
        {712, 784, 22, 498, 240, 356, 645, 805, 590, 350, 157},
    };
    for (uint64_t epoch = 0; epoch < 2; epoch++)
        for (size_t k = 0; k < sizeof pos / sizeof pos[0]; k++) {
            assert_int_equal(sampler_permute(pos[k], 1000, 42, epoch), want[epoch][k]);
            assert_int_equal(sampler_offset(epoch * 1000 + pos[k], 1000, 42), want[epoch][k]);
        }
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
    /* train too short */
    assert_int_equal(dataset_open(&d, dir, 100, 64, 9, err, sizeof err), DATASET_TOO_SHORT);
    assert_non_null(strstr(err, "too few"));
    assert_int_equal(dataset_open(&d, "/nonexistent", 8, 64, 9, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_epoch_is_a_permutation),
        cmocka_unit_test(test_orders_depend_on_seed_and_epoch_only),
        cmocka_unit_test(test_order_is_the_specified_permutation),
        cmocka_unit_test(test_order_is_pinned),
        cmocka_unit_test_setup_teardown(test_batches_are_the_sampled_windows, make_data, remove_data),
        cmocka_unit_test_setup_teardown(test_refuses_data_the_model_cannot_embed, make_data, remove_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
