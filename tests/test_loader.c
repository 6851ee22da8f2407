/* loader: delivers exactly the batches a direct read of the dataset gives, for
 * any rank count and start step, through a full queue (backpressure); refuses
 * damaged or mismatched messages; reports a stalled loader within its timeout.
 * Remote mode: requests round-trip, garbage and mismatches get an error reply,
 * a server thread on ipc:// serves the same batches, also across restarts and
 * with replies out of order, repeated or stale; a token gates the server; a
 * silent endpoint times out. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "io/fsutil.h"
#include "io/loader.h"
#include "io/zsock.h"

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
    /* a manifest, whose train.tok checksum requests carry (the tokenizer is
     * a placeholder: only its bytes are checksummed) */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    rc |= !f || fputs("{}", f) < 0;
    if (f)
        rc |= fclose(f);
    return rc | dataset_write_manifest(dir, err, sizeof err);
}

static int remove_data(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

/* The test data with the sampling seed given (the model vocabulary excludes
 * the damaged id only in the error test). */
static void open_data(dataset *d, uint64_t seed)
{
    char err[256];
    assert_int_equal(dataset_open(d, dir, T, VOCAB + 6, seed, err, sizeof err), 0);
}

/* Steps [from, to) of l, every micro-batch, equal direct reads of d for the
 * options' rank; sleep_us before each read makes a slow trainer. */
static void expect_batches(loader *l, dataset *d, const loader_options *o, uint64_t from,
                           uint64_t to, int sleep_us)
{
    size_t bytes = sizeof(int) * (size_t)o->B * T;
    int *in = malloc(bytes), *tg = malloc(bytes), *rin = malloc(bytes), *rtg = malloc(bytes);
    char err[256];
    for (uint64_t s = from; s < to; s++)
        for (int j = 0; j < o->grad_accum; j++) {
            double wait;
            if (sleep_us)
                usleep(sleep_us);
            assert_int_equal(loader_next(l, s, j, in, tg, &wait, err, sizeof err), 0);
            uint64_t first = dataset_first_sample(s, j, o->grad_accum, o->rank, o->ranks, o->B);
            assert_int_equal(dataset_train_batch(d, first, o->B, rin, rtg, err, sizeof err), 0);
            assert_memory_equal(in, rin, bytes);
            assert_memory_equal(tg, rtg, bytes);
        }
    free(in), free(tg), free(rin), free(rtg);
}

/* The loader's batches for (rank of ranks) from start equal direct reads. */
static void check_sequence(int B, int accum, int rank, int ranks, uint64_t start, int nsteps,
                           int consumer_sleep_us)
{
    dataset d;
    char err[256];
    open_data(&d, 3);
    loader_options o = {.B = B, .T = T, .grad_accum = accum, .rank = rank, .ranks = ranks,
                        .first_step = start, .depth = 4, .timeout_ms = 5000};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    /* with a sleep, a slow trainer: the queue stays full */
    expect_batches(l, &d, &o, start, start + (uint64_t)nsteps, consumer_sleep_us);
    loader_stop(l);
    dataset_close(&d);
}

static void test_same_batches_as_direct_reads(void **state)
{
    (void)state;
    check_sequence(4, 1, 0, 1, 0, 30, 0);
    check_sequence(2, 2, 1, 2, 0, 20, 0);
    check_sequence(3, 1, 2, 3, 17, 20, 0);   /* resumed at step 17 */
}

/* A signal that interrupts the wait for a batch (SIGHUP or SIGTERM asking
 * the run to stop after the step, SIGUSR1 for a checkpoint) is no reason to
 * give up the batch: the run must finish its step.  A second thread keeps
 * interrupting this one while it reads batches the loader is slow to make. */
static volatile sig_atomic_t interrupts;
static void count_interrupt(int sig)
{
    (void)sig;
    interrupts++;
}

typedef struct {
    pthread_t target;
    volatile int done;
} interrupter;

static void *interrupt_often(void *arg)
{
    interrupter *it = arg;
    while (!it->done) {
        pthread_kill(it->target, SIGUSR2);
        usleep(200);
    }
    return NULL;
}

static void test_signals_do_not_lose_a_batch(void **state)
{
    (void)state;
    struct sigaction sa = {.sa_handler = count_interrupt}, old;   /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
    dataset d;
    char err[256];
    open_data(&d, 3);
    loader_options o = {.B = 256, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 1, .timeout_ms = 5000};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    interrupter it = {.target = pthread_self()};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, interrupt_often, &it), 0);
    /* taken as fast as they come, so this thread mostly waits for them */
    size_t bytes = sizeof(int) * (size_t)o.B * T;
    int *in = malloc(bytes), *tg = malloc(bytes);
    double wait;
    for (uint64_t s = 0; s < 300; s++)
        if (loader_next(l, s, 0, in, tg, &wait, err, sizeof err) != 0)
            fail_msg("step %d: %s", (int)s, err);
    free(in), free(tg);
    expect_batches(l, &d, &o, 300, 302, 0);
    it.done = 1;
    pthread_join(t, NULL);
    assert_true(interrupts > 0);
    loader_stop(l);
    dataset_close(&d);
    sigaction(SIGUSR2, &old, NULL);
}

/* A process-directed signal may be delivered to any thread that does not
 * block it: one the loader thread takes while it waits for room in the queue
 * must not end it.  The main thread blocks the signal here, so that only the
 * loader thread could take it. */
static void test_loader_thread_survives_signals(void **state)
{
    (void)state;
    struct sigaction sa = {.sa_handler = count_interrupt}, old;   /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
    dataset d;
    char err[256];
    open_data(&d, 3);
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 1, .timeout_ms = 2000};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    sigset_t usr2, mask;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &usr2, &mask), 0);
    for (int i = 0; i < 20; i++) {   /* the queue is full: the loader waits to send */
        usleep(2000);
        kill(getpid(), SIGUSR2);
    }
    expect_batches(l, &d, &o, 0, 10, 0);
    loader_stop(l);
    dataset_close(&d);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &mask, NULL), 0);   /* takes the pending one */
    sigaction(SIGUSR2, &old, NULL);
}

/* The queue fills up to about the configured depth while nobody reads it. */
static void test_queue_depth_is_reported(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    open_data(&d, 3);
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 4, .timeout_ms = 5000};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    int depth = 0;
    for (int i = 0; i < 200 && depth < 2; i++) {
        usleep(5000);
        depth = loader_queue_depth(l);
    }
    assert_true(depth >= 2 && depth <= 2 * o.depth + 2);
    int in[2 * T], tg[2 * T];
    double wait;
    assert_int_equal(loader_next(l, 0, 0, in, tg, &wait, err, sizeof err), 0);
    assert_true(loader_queue_depth(l) <= 2 * o.depth + 2);
    loader_stop(l);
    dataset_close(&d);
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
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, VOCAB, out_in, out_tg, err, sizeof err), 0);
    assert_memory_equal(in, out_in, sizeof in);
    assert_memory_equal(tg, out_tg, sizeof tg);
    assert_int_equal(loader_decode(buf, n, 8, 1, 0, B, T, VOCAB, out_in, out_tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "got step 8 micro-batch 1 for rank 0, expected step 9"));
    assert_int_equal(loader_decode(buf, n - 1, 7, 1, 0, B, T, VOCAB, out_in, out_tg, err, sizeof err), -1);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T + 1, VOCAB, out_in, out_tg, err, sizeof err), -1);
    assert_int_equal(loader_decode(buf, n, 7, 1, 1, B, T, VOCAB, out_in, out_tg, err, sizeof err), -1);
    buf[4] = 9;   /* version */
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, VOCAB, out_in, out_tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "version"));
    memset(buf, 'x', 16);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, VOCAB, out_in, out_tg, err, sizeof err), -1);
    assert_int_equal(loader_decode(buf, 3, 7, 1, 0, B, T, VOCAB, out_in, out_tg, err, sizeof err), -1);
    free(buf);
}

/* A well-formed batch whose tokens the rank's model cannot index (a loader
 * of another vocabulary, a damaged or hostile one) is refused, naming the
 * token: the rank would read and write beyond its embedding with it. */
static void test_out_of_range_tokens_are_refused(void **state)
{
    (void)state;
    enum { B = 2 };
    int in[B * T], tg[B * T], out_in[B * T], out_tg[B * T];
    for (int i = 0; i < B * T; i++)
        in[i] = tg[i] = i;
    uint8_t buf[LOADER_HEADER_BYTES + 2 * B * T * 4];
    char err[256];
    size_t n = loader_encode(buf, 7, 1, 0, B, T, 2, in, tg);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, B * T, out_in, out_tg, err, sizeof err), 0);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, B * T - 1, out_in, out_tg, err,
                                   sizeof err), -1);
    assert_non_null(strstr(err, "token 31 (input 31), out of range for vocab_size 31"));
    in[3] = 5, tg[5] = 65535;
    n = loader_encode(buf, 7, 1, 0, B, T, 2, in, tg);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, 300, out_in, out_tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "token 65535 (target 5)"));
    tg[5] = -1;   /* width 4: 4294967295, which as an int would be negative */
    n = loader_encode(buf, 7, 1, 0, B, T, 4, in, tg);
    assert_int_equal(loader_decode(buf, n, 7, 1, 0, B, T, 300, out_in, out_tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "token 4294967295 (target 5)"));
}

/* A damaged token reaches the trainer as an error naming it; afterwards the
 * stopped loader is reported within the timeout instead of hanging. */
static void test_loader_errors_and_timeout(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    open_data(&d, 3);
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
    char want[64];   /* steps are counted from 1 in messages, as in the run's log */
    snprintf(want, sizeof want, "no batch for step %d ", (int)s + 1);
    assert_non_null(strstr(err, want));
    assert_true(wait >= 250 && wait < 3000);
    loader_stop(l);
    dataset_close(&d);
    free(in), free(tg);
}

/* A batch smaller than the reason of its error (here 1 x 2 tokens, 8 bytes)
 * still carries the whole reason: neither end's buffer is overrun by it. */
static void test_small_batch_error_is_whole(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    assert_int_equal(dataset_open(&d, dir, 2, VOCAB + 6, 3, err, sizeof err), 0);
    d.model_vocab = VOCAB;   /* the sample ending at the last train token is damaged */
    loader_options o = {.B = 1, .T = 2, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 2, .timeout_ms = 5000};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    int in[2], tg[2], rc = 0;
    double wait;
    for (uint64_t s = 0; s < NTOK && rc == 0; s++)   /* one epoch reaches it */
        rc = loader_next(l, s, 0, in, tg, &wait, err, sizeof err);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "out of range for vocab_size 300"));
    loader_stop(l);
    dataset_close(&d);
}

/* ---- remote mode ---------------------------------------------------------- */

static loader_request sample_request(void)
{
    return (loader_request){.step = 123456789012ull, .micro = 2, .rank = 1, .ranks = 3, .B = 4,
                            .T = T, .grad_accum = 3, .seed = 3, .vocab = VOCAB + 6,
                            .train_tokens = NTOK};
}

static void test_request_round_trip_and_validation(void **state)
{
    (void)state;
    uint8_t buf[LOADER_REQUEST_BYTES + 1];
    loader_request r = sample_request(), back;
    r.train_checksum = 0x0123456789abcdefull;
    char err[256];
    loader_request_encode(buf, &r);
    assert_int_equal(loader_request_decode(buf, LOADER_REQUEST_BYTES, &back, err, sizeof err), 0);
    assert_true(back.step == r.step && back.seed == r.seed && back.train_tokens == r.train_tokens &&
                back.train_checksum == r.train_checksum);
    assert_true(back.micro == r.micro && back.rank == r.rank && back.ranks == r.ranks &&
                back.B == r.B && back.T == r.T && back.grad_accum == r.grad_accum &&
                back.vocab == r.vocab);
    /* wrong size, magic, version */
    assert_int_equal(loader_request_decode(buf, LOADER_REQUEST_BYTES - 1, &back, err, sizeof err), -1);
    assert_int_equal(loader_request_decode(buf, LOADER_REQUEST_BYTES + 1, &back, err, sizeof err), -1);
    buf[4] = 7;
    assert_int_equal(loader_request_decode(buf, LOADER_REQUEST_BYTES, &back, err, sizeof err), -1);
    assert_non_null(strstr(err, "version 7"));
    buf[0] ^= 1;
    assert_int_equal(loader_request_decode(buf, LOADER_REQUEST_BYTES, &back, err, sizeof err), -1);
    /* fields out of range: rank >= ranks, micro >= accum, zero B, huge B*T, negative T */
    loader_request bad[5] = {r, r, r, r, r};
    bad[0].rank = 3, bad[1].micro = 3, bad[2].B = 0, bad[3].B = 1 << 21, bad[4].T = -1;
    for (int i = 0; i < 5; i++) {
        loader_request_encode(buf, &bad[i]);
        assert_int_equal(loader_request_decode(buf, LOADER_REQUEST_BYTES, &back, err, sizeof err), -1);
    }
}

/* A request matches the served data only with the same T, vocab, seed and
 * corpus: its size, and its checksum where the request knows it. */
static void test_request_mismatch_is_refused(void **state)
{
    (void)state;
    dataset d;
    char err[256], path[128];
    open_data(&d, 3);
    uint64_t bytes, sum;
    snprintf(path, sizeof path, "%s/train.tok", dir);
    assert_int_equal(fs_checksum_file(path, &bytes, &sum, err, sizeof err), 0);
    assert_true(d.train_checksum == sum);   /* the manifest's, which is the file's */
    loader_request r = sample_request();
    r.train_checksum = sum;
    assert_int_equal(loader_request_check(&r, &d, err, sizeof err), 0);
    r.train_checksum = 0;   /* a trainer whose data has no manifest */
    assert_int_equal(loader_request_check(&r, &d, err, sizeof err), 0);
    r.train_checksum = sum;
    const char *want[5] = {"seq_len is 17", "vocab_size is 999", "seed is 4", "different data)",
                           "different data of the same size"};
    for (int i = 0; i < 5; i++) {
        loader_request m = r;
        if (i == 0) m.T = T + 1;
        if (i == 1) m.vocab = 999;
        if (i == 2) m.seed = 4;
        if (i == 3) m.train_tokens = NTOK + 1;
        if (i == 4) m.train_checksum = sum ^ 1;
        assert_int_equal(loader_request_check(&m, &d, err, sizeof err), -1);
        assert_non_null(strstr(err, want[i]));
    }
    dataset_close(&d);
}

/* The server answers anything: a batch, or a width-0 reply that decodes to the reason. */
static void test_server_answers_garbage_with_errors(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    open_data(&d, 3);
    loader_server *s = loader_server_new(&d, err, sizeof err);
    assert_non_null(s);
    const uint8_t *reply;
    int in[4 * T], tg[4 * T], rin[4 * T], rtg[4 * T];
    uint8_t req[LOADER_REQUEST_BYTES];
    loader_request r = sample_request();
    loader_request_encode(req, &r);
    size_t n = loader_server_answer(s, req, sizeof req, &reply);
    assert_int_equal(loader_decode(reply, n, r.step, 2, 1, 4, T, VOCAB + 6, in, tg, err, sizeof err), 0);
    uint64_t first = dataset_first_sample(r.step, 2, 3, 1, 3, 4);
    assert_int_equal(dataset_train_batch(&d, first, 4, rin, rtg, err, sizeof err), 0);
    assert_memory_equal(in, rin, sizeof in);
    assert_memory_equal(tg, rtg, sizeof tg);
    /* garbage of many sizes, including none */
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof junk; len += 13) {
        n = loader_server_answer(s, junk, len, &reply);
        assert_int_equal(loader_decode(reply, n, 0, 0, 0, 4, T, VOCAB + 6, in, tg, err, sizeof err), -1);
        assert_non_null(strstr(err, "not a batch request"));
    }
    r.seed = 99;
    loader_request_encode(req, &r);
    n = loader_server_answer(s, req, sizeof req, &reply);
    assert_int_equal(loader_decode(reply, n, r.step, 2, 1, 4, T, VOCAB + 6, in, tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "seed is 99"));
    uint64_t refused, served = loader_server_served(s, &refused);
    assert_true(served == 26 && refused == 25);
    loader_server_free(s);
    dataset_close(&d);
}

typedef struct {
    loader_server *srv;
    const char *endpoint;
    atomic_int stop;
    int rc;
} server_thread;

static void *serve(void *arg)
{
    server_thread *st = arg;
    char err[256];
    st->rc = loader_server_run(st->srv, st->endpoint, &st->stop, err, sizeof err);
    return NULL;
}

/* A loader server of d on endpoint, in thread th, until stop_server. */
static void start_server(server_thread *st, pthread_t *th, dataset *d, const char *endpoint)
{
    char err[256];
    *st = (server_thread){.endpoint = endpoint};
    st->srv = loader_server_new(d, err, sizeof err);
    assert_non_null(st->srv);
    assert_int_equal(pthread_create(th, NULL, serve, st), 0);
}

static void stop_server(server_thread *st, pthread_t th)
{
    atomic_store(&st->stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(st->rc, 0);
    loader_server_free(st->srv);
}

/* A server with a token answers only requests that carry it, and the others
 * (garbage included) not at all; the token travels after the fixed fields. */
static void test_server_token(void **state)
{
    (void)state;
    dataset d;
    char err[256];
    open_data(&d, 3);
    loader_server *s = loader_server_new(&d, err, sizeof err);
    assert_int_equal(loader_server_set_token(s, "s3cret"), 0);
    uint8_t req[LOADER_REQUEST_BYTES + ZSOCK_TOKEN_MAX];
    const uint8_t *reply;
    int in[4 * T], tg[4 * T];
    loader_request r = sample_request(), back;
    const char *tokens[] = {NULL, "s3cre", "s3cretX", "S3cret"};
    for (int i = 0; i < 4; i++) {
        r.token = tokens[i], r.token_len = tokens[i] ? strlen(tokens[i]) : 0;
        size_t len = loader_request_encode(req, &r);
        assert_int_equal(len, LOADER_REQUEST_BYTES + r.token_len);
        assert_int_equal(loader_server_answer(s, req, len, &reply), 0);
    }
    r.token = "s3cret", r.token_len = 6;
    size_t len = loader_request_encode(req, &r);
    assert_int_equal(loader_request_decode(req, len, &back, err, sizeof err), 0);
    assert_true(back.token_len == 6 && memcmp(back.token, "s3cret", 6) == 0);
    /* the length field must match the message */
    assert_int_equal(loader_request_decode(req, len - 1, &back, err, sizeof err), -1);
    /* garbage, and a token-bearing request cut short, get no answer either */
    const uint8_t junk[7] = "GET / H";
    assert_int_equal(loader_server_answer(s, junk, sizeof junk, &reply), 0);
    assert_int_equal(loader_server_answer(s, req, len - 1, &reply), 0);
    size_t n = loader_server_answer(s, req, len, &reply);
    assert_int_equal(loader_decode(reply, n, r.step, 2, 1, 4, T, VOCAB + 6, in, tg, err, sizeof err), 0);
    uint64_t refused, served = loader_server_served(s, &refused);
    assert_true(served == 7 && refused == 6);
    loader_server_free(s);
    dataset_close(&d);
}

/* A server with a token ignores a rank without it: the rank's timeout says a
 * token may be why, as a silent server would otherwise look merely down. */
static void test_remote_without_token_says_so(void **state)
{
    (void)state;
    dataset d;
    char err[256], endpoint[128];
    open_data(&d, 3);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/token.sock", dir);
    server_thread st = {.endpoint = endpoint};
    st.srv = loader_server_new(&d, err, sizeof err);
    assert_non_null(st.srv);
    assert_int_equal(loader_server_set_token(st.srv, "s3cret"), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve, &st), 0);
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1, .depth = 2,
                        .timeout_ms = 300, .endpoint = endpoint, .token = "wrong"};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    int in[2 * T], tg[2 * T];
    double wait;
    assert_int_equal(loader_next(l, 0, 0, in, tg, &wait, err, sizeof err), -1);
    assert_non_null(strstr(err, "did not answer within 0.3 s"));
    assert_non_null(strstr(err, "$" LOADER_TOKEN_ENV));
    loader_stop(l);
    stop_server(&st, th);
    dataset_close(&d);
}

/* A rank in remote mode gets the batches of a direct read, for a resumed
 * start and accumulation, from a server thread; a mismatched seed is refused
 * naming the endpoint. */
static void test_remote_same_batches(void **state)
{
    (void)state;
    dataset d;
    char err[256], endpoint[128];
    open_data(&d, 3);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/loader.sock", dir);
    server_thread st;
    pthread_t th;
    start_server(&st, &th, &d, endpoint);

    enum { B = 3 };
    loader_options o = {.B = B, .T = T, .grad_accum = 2, .rank = 1, .ranks = 2,
                        .first_step = 9, .depth = 3, .timeout_ms = 5000, .endpoint = endpoint};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    expect_batches(l, &d, &o, 9, 30, 0);
    loader_stop(l);

    dataset other;   /* this rank's seed disagrees with the server's */
    open_data(&other, 4);
    l = loader_start(&other, &o, err, sizeof err);
    assert_non_null(l);
    int in[B * T], tg[B * T];
    double wait;
    assert_int_equal(loader_next(l, 9, 0, in, tg, &wait, err, sizeof err), -1);
    assert_non_null(strstr(err, endpoint));
    assert_non_null(strstr(err, "seed is 4"));
    loader_stop(l);
    dataset_close(&other);

    stop_server(&st, th);
    dataset_close(&d);
}

/* The server is stopped and started again on the same endpoint between two
 * batches, with requests in flight: the rank asks again and gets the batches
 * of a direct read, in order, as io/loader.h promises. */
static void test_remote_server_restart(void **state)
{
    (void)state;
    dataset d;
    char err[256], endpoint[128];
    open_data(&d, 3);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/restart.sock", dir);
    loader_options o = {.B = 2, .T = T, .grad_accum = 3, .rank = 0, .ranks = 1,
                        .first_step = 4, .depth = 5, .timeout_ms = 10000, .endpoint = endpoint};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    for (uint64_t s = 4; s < 16; s += 4) {   /* three servers, four steps each */
        server_thread st;
        pthread_t th;
        start_server(&st, &th, &d, endpoint);
        expect_batches(l, &d, &o, s, s + 4, 0);
        stop_server(&st, th);   /* gone with `depth` requests in flight */
    }
    loader_stop(l);
    dataset_close(&d);
}

/* A stand-in for build/loader's server: a thread that answers requests with
 * srv's replies, misbehaving as its serve function says, until stop. */
typedef struct standin standin;
struct standin {
    loader_server *srv;
    const char *endpoint;
    /* skipping_serve: whether a request from this peer goes unanswered */
    bool (*ignores)(standin *sd, const uint8_t *id, int idn);
    int drop;                 /* forget: requests never answered */
    uint8_t deaf_to[64];      /* deaf: the first peer, never answered */
    int deaf_len;
    int seen;                 /* slow: requests received */
    atomic_int stop;
};

static void start_standin(standin *sd, pthread_t *th, dataset *d, const char *endpoint,
                          void *(*serve_fn)(void *))
{
    char err[256];
    sd->endpoint = endpoint;
    sd->srv = loader_server_new(d, err, sizeof err);
    assert_non_null(sd->srv);
    assert_int_equal(pthread_create(th, NULL, serve_fn, sd), 0);
}

static void stop_standin(standin *sd, pthread_t th)
{
    atomic_store(&sd->stop, 1);
    pthread_join(th, NULL);
    loader_server_free(sd->srv);
}

/* Steps [o.first_step, end) read from stand-in sd (serve_fn on socket
 * `sock` in the test's directory) are the batches of a direct read, in order. */
static void expect_from_standin(standin *sd, void *(*serve_fn)(void *), const char *sock,
                                loader_options o, uint64_t end)
{
    dataset d;
    char err[256], endpoint[128];
    open_data(&d, 3);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/%s", dir, sock);
    pthread_t th;
    start_standin(sd, &th, &d, endpoint, serve_fn);
    o.endpoint = endpoint;
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    expect_batches(l, &d, &o, o.first_step, end, 0);
    loader_stop(l);
    stop_standin(sd, th);
    dataset_close(&d);
}

/* Answers each pair of requests in reverse order and twice, then an answer to
 * a batch never asked for: the rank still gets the batches of a direct read,
 * in order (out-of-order, repeated and stale replies are discarded, and what
 * was discarded early is asked for again). */
static void *shuffle_serve(void *arg)
{
    standin *sh = arg;
    void *ctx = zmq_ctx_new();
    char err[256];
    void *sock = zsock_open(ctx, ZSOCK_LOADER, sh->endpoint, NULL, err, sizeof err);
    zsock_set(sock, ZMQ_RCVTIMEO, 100);
    uint8_t id[2][64], req[2][LOADER_REQUEST_BYTES];
    int idn[2], have = 0;
    while (!atomic_load(&sh->stop)) {
        idn[have] = zmq_recv(sock, id[have], sizeof id[have], 0);
        if (idn[have] < 0)
            continue;
        if (zmq_recv(sock, req[have], sizeof req[have], 0) < 0 || ++have < 2)
            continue;
        for (int k = 1; k >= 0; k--)
            for (int twice = 0; twice < 2; twice++) {
                const uint8_t *reply;
                size_t n = loader_server_answer(sh->srv, req[k], sizeof req[k], &reply);
                zmq_send(sock, id[k], (size_t)idn[k], ZMQ_SNDMORE);
                zmq_send(sock, reply, n, 0);
            }
        loader_request stale = {.step = 1, .micro = 0, .rank = 0, .ranks = 1, .B = 2, .T = T,
                                .grad_accum = 2, .seed = 3, .vocab = VOCAB + 6,
                                .train_tokens = NTOK};
        uint8_t sreq[LOADER_REQUEST_BYTES];
        const uint8_t *reply;
        size_t n = loader_server_answer(sh->srv, sreq, loader_request_encode(sreq, &stale), &reply);
        zmq_send(sock, id[0], (size_t)idn[0], ZMQ_SNDMORE);
        zmq_send(sock, reply, n, 0);
        have = 0;
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return NULL;
}

static void test_remote_discards_stale_and_reordered(void **state)
{
    (void)state;
    standin sh = {0};
    loader_options o = {.B = 2, .T = T, .grad_accum = 2, .rank = 0, .ranks = 1,
                        .first_step = 3, .depth = 4, .timeout_ms = 10000};
    expect_from_standin(&sh, shuffle_serve, "shuffle.sock", o, 13);
}

/* Answers requests in order except those sd->ignores says to leave unanswered. */
static void *skipping_serve(void *arg)
{
    standin *sd = arg;
    void *ctx = zmq_ctx_new();
    char err[256];
    void *sock = zsock_open(ctx, ZSOCK_LOADER, sd->endpoint, NULL, err, sizeof err);
    zsock_set(sock, ZMQ_RCVTIMEO, 100);
    uint8_t id[64], req[LOADER_REQUEST_BYTES];
    while (!atomic_load(&sd->stop)) {
        int idn = zmq_recv(sock, id, sizeof id, 0);
        if (idn < 0 || zmq_recv(sock, req, sizeof req, 0) < 0 || sd->ignores(sd, id, idn))
            continue;
        const uint8_t *reply;
        size_t n = loader_server_answer(sd->srv, req, sizeof req, &reply);
        zmq_send(sock, id, (size_t)idn, ZMQ_SNDMORE);
        zmq_send(sock, reply, n, 0);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return NULL;
}

/* Never answers the first `drop` requests it gets, as a server that died with
 * them would: the rank asks for them again after a silence and gets every
 * batch, in order, long before its timeout. */
static bool forget(standin *sd, const uint8_t *id, int idn)
{
    (void)id, (void)idn;
    return sd->drop-- > 0;
}

static void test_remote_asks_again_after_silence(void **state)
{
    (void)state;
    standin fg = {.ignores = forget, .drop = 2};
    /* both first requests are dropped; without asking again the first batch
     * would fail after the 60 s timeout */
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 2, .timeout_ms = 60000};
    expect_from_standin(&fg, skipping_serve, "forget.sock", o, 6);
}

/* Never answers the first request, answers the later ones: the rank asks
 * for the lost batch again although other replies keep coming. */
static void test_remote_asks_again_for_a_lost_reply(void **state)
{
    (void)state;
    standin fg = {.ignores = forget, .drop = 1};
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 3, .timeout_ms = 15000};
    expect_from_standin(&fg, skipping_serve, "lost.sock", o, 6);
}

/* Never answers the first connection it gets, as a server that no longer
 * reads a connection the rank still thinks is up: asking again on it would
 * wait for the whole timeout; the rank opens a new connection instead. */
static bool deaf(standin *sd, const uint8_t *id, int idn)
{
    if (sd->deaf_len == 0)
        memcpy(sd->deaf_to, id, (size_t)(sd->deaf_len = idn));
    return idn == sd->deaf_len && memcmp(id, sd->deaf_to, (size_t)idn) == 0;
}

static void test_remote_reconnects_when_ignored(void **state)
{
    (void)state;
    standin df = {.ignores = deaf};
    /* without a new connection the first batch fails after the 15 s timeout */
    loader_options o = {.B = 2, .T = T, .grad_accum = 2, .rank = 0, .ranks = 1,
                        .first_step = 5, .depth = 3, .timeout_ms = 15000};
    expect_from_standin(&df, skipping_serve, "deaf.sock", o, 9);
}

/* Takes longer than the loader's 2 s patience for every request, as one
 * loader shared by many ranks may: the rank waits longer after the first
 * silence instead of asking for every batch twice (on a new connection, which
 * loses the answer the server was already working on). */
static bool slow(standin *sd, const uint8_t *id, int idn)
{
    (void)id, (void)idn;
    sd->seen++;
    usleep(2300 * 1000);
    return false;
}

static void test_remote_slow_server_is_not_asked_twice(void **state)
{
    (void)state;
    standin sl = {.ignores = slow};
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .first_step = 0, .depth = 1, .timeout_ms = 60000};
    expect_from_standin(&sl, skipping_serve, "slow.sock", o, 3);
    /* the first batch asked three times (after its 2 s silence, again on the
     * new connection), then each once: 5; a rank that kept its 2 s patience
     * asked every batch again: 7 */
    if (sl.seen > 5)
        fail_msg("%d requests for 3 batches", sl.seen);
}

/* Nobody serves the endpoint: the first batch fails after timeout_ms, naming it. */
static void test_remote_silent_endpoint_times_out(void **state)
{
    (void)state;
    dataset d;
    char err[256], endpoint[128];
    open_data(&d, 3);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/nobody.sock", dir);
    loader_options o = {.B = 2, .T = T, .grad_accum = 1, .rank = 0, .ranks = 1, .depth = 2,
                        .timeout_ms = 300, .endpoint = endpoint};
    loader *l = loader_start(&d, &o, err, sizeof err);
    assert_non_null(l);
    int in[2 * T], tg[2 * T];
    double wait;
    assert_int_equal(loader_next(l, 0, 0, in, tg, &wait, err, sizeof err), -1);
    assert_non_null(strstr(err, "did not answer within 0.3 s"));
    assert_non_null(strstr(err, endpoint));
    assert_true(wait >= 250 && wait < 3000);
    loader_stop(l);
    o.endpoint = "bogus://x";
    assert_null(loader_start(&d, &o, err, sizeof err));
    assert_non_null(strstr(err, "\"bogus://x\": expected tcp://HOST:PORT"));
    dataset_close(&d);
}

/* a test that reads the dataset made for it */
#define WITH_DATA(test) cmocka_unit_test_setup_teardown(test, make_data, remove_data)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_DATA(test_same_batches_as_direct_reads),
        WITH_DATA(test_slow_consumer_loses_nothing),
        WITH_DATA(test_queue_depth_is_reported),
        WITH_DATA(test_signals_do_not_lose_a_batch),
        WITH_DATA(test_loader_thread_survives_signals),
        cmocka_unit_test(test_global_batch_independent_of_ranks),
        cmocka_unit_test(test_bad_messages_are_refused),
        cmocka_unit_test(test_out_of_range_tokens_are_refused),
        WITH_DATA(test_loader_errors_and_timeout),
        WITH_DATA(test_small_batch_error_is_whole),
        cmocka_unit_test(test_request_round_trip_and_validation),
        WITH_DATA(test_request_mismatch_is_refused),
        WITH_DATA(test_server_answers_garbage_with_errors),
        WITH_DATA(test_remote_same_batches),
        WITH_DATA(test_server_token),
        WITH_DATA(test_remote_without_token_says_so),
        WITH_DATA(test_remote_server_restart),
        WITH_DATA(test_remote_discards_stale_and_reordered),
        WITH_DATA(test_remote_asks_again_after_silence),
        WITH_DATA(test_remote_asks_again_for_a_lost_reply),
        WITH_DATA(test_remote_reconnects_when_ignored),
        WITH_DATA(test_remote_slow_server_is_not_asked_twice),
        WITH_DATA(test_remote_silent_endpoint_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
