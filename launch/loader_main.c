/* loader: serves training batches to trainer ranks over ZeroMQ (io/loader.h,
 * remote mode), so the data can live on one host or in one process per node.
 * It keeps no state between requests: each names the batch it wants, so a
 * restarted loader (or trainer) carries on where it stopped. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dataset.h"
#include "io/loader.h"
#include "io/zsock.h"
#define CLI_NAME "loader"
#include "launch/cli.h"

enum { EXIT_RUN = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *data, *endpoint;
    long long seq_len, vocab, seed;
} loader_args;

static atomic_int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loader --data DIR --endpoint ipc://PATH|tcp://HOST:PORT [--seq-len T]\n"
            "              [--vocab V] [--seed S]\n"
            "Serves training batches of DIR/train.tok to trainers started with\n"
            "--set loader_endpoint=ENDPOINT.  T, V and S must be the trainer's seq_len,\n"
            "vocab_size and seed (requests that differ are refused).\n"
            "  --seq-len  tokens per sample (default 256)\n"
            "  --vocab    the model's vocab_size (default 256)\n"
            "  --seed     the run's seed, which orders the samples (default 1337)\n"
            "A non-loopback endpoint needs a token: $" LOADER_TOKEN_ENV ", which every\n"
            "trainer then needs too (requests without it get no reply).\n"
            "SIGINT or SIGTERM stops it.\n");
}

/* A whole decimal number in [lo, hi]; false otherwise. */
static int parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* 0 ok, 1 --help was printed, -1 error (already reported). */
static int parse_args(int argc, char **argv, loader_args *a)
{
    *a = (loader_args){.seq_len = 256, .vocab = 256, .seed = 1337};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (i + 1 >= argc)
            return die(-1, "%s needs a value (see --help)", opt);
        const char *v = argv[++i];
        long long lo = 0, hi = 0, *num = NULL;
        if (strcmp(opt, "--data") == 0)
            a->data = v;
        else if (strcmp(opt, "--endpoint") == 0)
            a->endpoint = v;
        else if (strcmp(opt, "--seq-len") == 0)
            lo = 1, hi = 1 << 20, num = &a->seq_len;
        else if (strcmp(opt, "--vocab") == 0)
            lo = 1, hi = INT32_MAX, num = &a->vocab;
        else if (strcmp(opt, "--seed") == 0)   /* the trainer's seed is a long long >= 0 */
            lo = 0, hi = INT64_MAX, num = &a->seed;
        else
            return die(-1, "unknown option %s (see --help)", opt);
        if (num && !parse_int(v, lo, hi, num))
            return die(-1, "%s: \"%s\" is not a whole number in %lld..%lld", opt, v, lo, hi);
    }
    if (!a->data || !a->endpoint)
        return die(-1, "--data and --endpoint are required (see --help)");
    char err[300];
    if (zsock_endpoint_none(a->endpoint) ||
        zsock_endpoint_policy("--endpoint", a->endpoint, zsock_env_token(LOADER_TOKEN_ENV),
                              "a token ($" LOADER_TOKEN_ENV ")", err, sizeof err) != 0)
        return die(-1, "%s", zsock_endpoint_none(a->endpoint)
                                 ? "--endpoint must be ipc://PATH or tcp://HOST:PORT" : err);
    return 0;
}

int main(int argc, char **argv)
{
    loader_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;
    char err[512];
    dataset d;
    /* the checks a trainer makes of its own data directory: a loader serving
     * files of mixed preparations would train every rank on them */
    rc = dataset_check(a.data, (int)a.vocab, err, sizeof err);
    if (rc == 0)
        rc = dataset_open(&d, a.data, (int)a.seq_len, (int)a.vocab, (uint64_t)a.seed, err,
                          sizeof err);
    if (rc == DATASET_TOO_SHORT)   /* the option's mismatch with the data, as the trainer's */
        return die(EXIT_USAGE, "%s (lower --seq-len, or give more data)", err);
    if (rc != 0)
        return die(EXIT_RUN, "%s", err);
    loader_server *s = loader_server_new(&d, err, sizeof err);
    if (!s || loader_server_set_token(s, zsock_env_token(LOADER_TOKEN_ENV)) != 0) {
        if (s)
            snprintf(err, sizeof err, "out of memory");
        loader_server_free(s);
        dataset_close(&d);
        return die(EXIT_RUN, "%s", err);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "loader: serving %s (%" PRIu64 " train tokens, seq_len %lld, vocab %lld, "
            "seed %lld) on %s\n", a.data, d.train.count, a.seq_len, a.vocab, a.seed, a.endpoint);
    rc = loader_server_run(s, a.endpoint, &stop_flag, err, sizeof err);
    uint64_t refused, served = loader_server_served(s, &refused);
    loader_server_free(s);
    dataset_close(&d);
    if (rc != 0)
        return die(EXIT_RUN, "%s", err + (strncmp(err, "loader: ", 8) == 0 ? 8 : 0));
    fprintf(stderr, "loader: stopped after %" PRIu64 " requests (%" PRIu64 " refused)\n", served,
            refused);
    return 0;
}
