/* loader: delivers exactly the batches a direct read of the dataset gives, for
 * any rank count and start step, through a full queue (backpressure); refuses
 * damaged or mismatched messages; reports a stalled loader within its timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/loader.h"

static char dir[64];
enum { NTOK = 5000, VOCAB = 300, T = 16 };

static int make_data(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/test_loader.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    uint32_t *tok = malloc(NTOK * sizeof *tok);
    for (int i = 0; i < NTOK; i++)
        tok[i] = (uint32_t)((i * 7919u) % VOCAB);
    tok[NTOK - 1] = VOCAB + 5;   /* one damaged token at the end of train: only some samples see it */
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/train.tok", dir);
    int rc = shard_write(path, tok, NTOK, VOCAB + 6, err, sizeof err);
    snprintf(path, sizeof path, "%s/val.tok", dir);
    rc |= shard_write(path, tok, 100, VOCAB + 6, err, sizeof err);
    free(tok);
    return rc;
}

static int remove_data(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

/* The loader's batches for (rank of ranks) from start equal direct reads. */
static void check_sequence(int B, int accum, int rank, int ranks, uint64_t start, int nsteps,
                           int consumer_sleep_us)
{
    dataset d;
    char err[256];
    /* the model vocabulary excludes the damaged id only in the error test */
    assert_int_equal(dataset_open(&d, dir, T, VOCAB + 6, 3, err, sizeof err), 0);
    loader_options o = {.B = B, .T = T, .grad_accum = accum, .rank = rank, .ranks = ranks,
                        .first_step = start, .depth = 4, .timeout_ms = 5000};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    int *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    int *rin = malloc(sizeof(int) * B * T), *rtg = malloc(sizeof(int) * B * T);
    for (uint64_t s = start; s < start + (uint64_t)nsteps; s++)
        for (int j = 0; j < accum; j++) {
            double wait;
            if (consumer_sleep_us)
                usleep(consumer_sleep_us);   /* a slow trainer: the queue stays full */
            assert_int_equal(loader_next(l, s, j, in, tg, &wait, err, sizeof err), 0);
            uint64_t first = dataset_first_sample(s, j, accum, rank, ranks, B);
            assert_int_equal(dataset_train_batch(&d, first, B, rin, rtg, err, sizeof err), 0);
            assert_memory_equal(in, rin, sizeof(int) * B * T);
            assert_memory_equal(tg, rtg, sizeof(int) * B * T);
        }
    loader_stop(l);
    dataset_close(&d);
    free(in), free(tg), free(rin), free(rtg);
}

static void test_same_batches_as_direct_reads(void **state)
{
    (void)state;
    check_sequence(4, 1, 0, 1, 0, 30, 0);
    check_sequence(2, 2, 1, 2, 0, 20, 0);
    check_sequence(3, 1, 2, 3, 17, 20, 0);   /* resumed at step 17 */
}

static void test_slow_consumer_loses_nothing(void **state)
{
    (void)state;
    check_sequence(2, 3, 0, 1, 5, 12, 2000);
}

/* Ranks 0..2 of np 3 with batch B together read np 1's batch of 3B. */
static void test_global_batch_independent_of_ranks(void **state)
{
    (void)state;
    for (uint64_t s = 0; s < 50; s++)
        for (int r = 0; r < 3; r++)
            assert_int_equal(dataset_first_sample(s, 0, 1, r, 3, 2),
                             dataset_first_sample(s, 0, 1, 0, 1, 6) + 2 * (uint64_t)r);
}

static void test_bad_messages_are_refused(void **state)
{
    (void)state;
    enum { B = 2 };
    int in[B * T], tg[B * T], out_in[B * T], out_tg[B * T];
    for (int i = 0; i < B * T; i++)
        in[i] = i, tg[i] = i + 1;
    size_t n = loader_message_bytes(B, T, 2);
    uint8_t *buf = malloc(n + 8);
    char err[256];
    assert_int_equal(loader_encode(buf, 7, 1, 0, B, T, 2, in, tg), n);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, out_in, out_tg, err, sizeof err), 0);
    assert_memory_equal(in, out_in, sizeof in);
    assert_memory_equal(tg, out_tg, sizeof tg);
    assert_int_equal(loader_decode(buf, n, 8, 1, 0, B, T, out_in, out_tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected step 8"));
    assert_int_equal(loader_decode(buf, n - 1, 7, 1, 0, B, T, out_in, out_tg, err, sizeof err), -1);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T + 1, out_in, out_tg, err, sizeof err), -1);
    assert_int_equal(loader_decode(buf, n, 7, 1, 1, B, T, out_in, out_tg, err, sizeof err), -1);
    buf[4] = 9;   /* version */
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, out_in, out_tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "version"));
    memset(buf, 'x', 16);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, out_in, out_tg, err, sizeof err), -1);
    assert_int_equal(loader_decode(buf, 3, 7, 1, 0, B, T, out_in, out_tg, err, sizeof err), -1);
    free(buf);
}

/* A damaged token reaches the trainer as an error naming it; afterwards the
 * stopped loader is reported within the timeout instead of hanging. */
static void test_loader_errors_and_timeout(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    assert_int_equal(dataset_open(&d, dir, T, VOCAB + 6, 3, err, sizeof err), 0);
    d.model_vocab = VOCAB;   /* now the last train token is out of range */
    loader_options o = {.B = 64, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 2, .timeout_ms = 300};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    int *in = malloc(sizeof(int) * 64 * T), *tg = malloc(sizeof(int) * 64 * T);
    double wait;
    int rc = 0;
    uint64_t s;
    for (s = 0; s < 500 && rc == 0; s++)   /* some window eventually covers the bad token */
        rc = loader_next(l, s, 0, in, tg, &wait, err, sizeof err);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(loader_next(l, s, 0, in, tg, &wait, err, sizeof err), -1);
    assert_non_null(strstr(err, "stopped answering"));
    assert_true(wait >= 250 && wait < 3000);
    loader_stop(l);
    dataset_close(&d);
    free(in), free(tg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_batches_as_direct_reads, make_data, remove_data),
        cmocka_unit_test_setup_teardown(test_slow_consumer_loses_nothing, make_data, remove_data),
        cmocka_unit_test(test_global_batch_independent_of_ranks),
        cmocka_unit_test(test_bad_messages_are_refused),
        cmocka_unit_test_setup_teardown(test_loader_errors_and_timeout, make_data, remove_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
