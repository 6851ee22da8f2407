/* bench_loader: how fast the loader delivers batches on its own, with nothing
 * else running, against what training consumes.  Modes: the in-process thread
 * (inproc PUSH/PULL) and a loader server (io/loader.h remote mode) reached over
 * tcp loopback and ipc, here a thread of this process.  Sizes: seed384 (B 8,
 * T 256, vocab 16000) and gpt2-124M (B 4, T 256, vocab 50257), on a synthetic
 * 8M-token shard.  Prints batches/s, MB/s (wire bytes) and the headroom over a
 * trainer taking one batch per CONSUME_S; with BENCH_JSONL=path each row is
 * also appended there as a JSON object. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/loader.h"
#include "io/shard.h"
#include "tests/bench_util.h"

enum { NTOK = 8 << 20, WARMUP = 20, DEPTH = 8 };
static const double RUN_S = 1.0;      /* timed per row */
static const double CONSUME_S = 0.5;  /* about a seed384 step on 2 cores */

typedef struct {
    const char *name;
    int B, T, vocab;
} workload;

static const workload works[] = {{"seed384", 8, 256, 16000}, {"gpt2-124M", 4, 256, 50257}};

/* A shard of NTOK tokens below 16000, valid for both vocabularies. */
static int make_data(char *dir)
{
    strcpy(dir, "/tmp/bench_loader.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    uint32_t *tok = malloc((size_t)NTOK * sizeof *tok);
    if (!tok)
        return -1;
    for (uint32_t i = 0; i < NTOK; i++)
        tok[i] = (i * 2654435761u >> 7) % 16000;
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/train.tok", dir);
    int rc = shard_write(path, tok, NTOK, 16000, err, sizeof err);
    snprintf(path, sizeof path, "%s/val.tok", dir);
    rc |= shard_write(path, tok, 1 << 16, 16000, err, sizeof err);
    free(tok);
    if (rc)
        fprintf(stderr, "bench_loader: %s\n", err);
    return rc;
}

typedef struct {
    loader_server *srv;
    const char *endpoint;
    atomic_int stop;
    char err[256];
    int rc;
} server_thread;

static void *serve(void *arg)
{
    server_thread *st = arg;
    st->rc = loader_server_run(st->srv, st->endpoint, &st->stop, st->err, sizeof st->err);
    return NULL;
}

/* Batches per second through l over about RUN_S; -1 on a loader error. */
static double drain(loader *l, const workload *w)
{
    int *in = malloc(sizeof(int) * w->B * w->T), *tg = malloc(sizeof(int) * w->B * w->T);
    char err[300];
    double wait, t0 = 0, rate = -1;
    uint64_t s;
    for (s = 0;; s++) {
        if (s == WARMUP)
            t0 = bench_now_s();
        if (loader_next(l, s, 0, in, tg, &wait, err, sizeof err) != 0) {
            fprintf(stderr, "bench_loader: %s\n", err);
            break;
        }
        if (s > WARMUP && bench_now_s() - t0 >= RUN_S) {
            rate = (double)(s - WARMUP) / (bench_now_s() - t0);
            break;
        }
    }
    free(in), free(tg);
    return rate;
}

/* One row: mode "inproc", or an endpoint served by a thread of this process. */
static double measure(const dataset *d, const workload *w, const char *endpoint)
{
    server_thread st = {.endpoint = endpoint};
    pthread_t th;
    char err[256];
    if (endpoint) {
        if (!(st.srv = loader_server_new(d, err, sizeof err)) ||
            pthread_create(&th, NULL, serve, &st) != 0)
            return -1;
    }
    loader_options o = {.B = w->B, .T = w->T, .grad_accum = 1, .rank = 0, .ranks = 1,
                        .depth = DEPTH, .timeout_ms = 10000, .endpoint = endpoint};
    loader *l = loader_start(d, &o, err, sizeof err);
    double rate = l ? drain(l, w) : -1;
    if (!l)
        fprintf(stderr, "bench_loader: %s\n", err);
    loader_stop(l);
    if (endpoint) {
        atomic_store(&st.stop, 1);
        pthread_join(th, NULL);
        if (st.rc)
            fprintf(stderr, "bench_loader: %s\n", st.err);
        loader_server_free(st.srv);
    }
    return rate;
}

int main(void)
{
    FILE *jsonl = bench_jsonl_open();
    char dir[64], tcp[64], ipc[128], err[256], cmd[128];
    if (make_data(dir) != 0)
        return 1;
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", 30000 + getpid() % 20000);
    snprintf(ipc, sizeof ipc, "ipc://%s/loader.sock", dir);
    const char *modes[3][2] = {{"inproc", NULL}, {"tcp", tcp}, {"ipc", ipc}};
    printf("loader benchmarks: %d-token shard, depth %d, %.1f s per row; training takes one "
           "batch per ~%.1f s\n", NTOK, DEPTH, RUN_S, CONSUME_S);
    printf("%-10s %-7s %6s %10s %9s %10s\n", "work", "mode", "B x T", "batches/s", "MB/s",
           "headroom");
    int rc = 0;
    for (size_t k = 0; k < sizeof works / sizeof works[0]; k++) {
        const workload *w = &works[k];
        dataset d;
        if (dataset_open(&d, dir, w->T, w->vocab, 1337, err, sizeof err) != 0) {
            fprintf(stderr, "bench_loader: %s\n", err);
            rc = 1;
            break;
        }
        double mb = loader_message_bytes(w->B, w->T, w->vocab <= 65536 ? 2 : 4) / 1e6;
        for (int m = 0; m < 3; m++) {
            double rate = measure(&d, w, modes[m][1]);
            if (rate < 0) {
                rc = 1;
                continue;
            }
            double headroom = rate * CONSUME_S;
            printf("%-10s %-7s %2dx%-3d %10.0f %9.1f %9.0fx\n", w->name, modes[m][0], w->B, w->T,
                   rate, rate * mb, headroom);
            if (jsonl)
                fprintf(jsonl, "{\"bench\":\"loader\",\"work\":\"%s\",\"mode\":\"%s\",\"B\":%d,"
                        "\"T\":%d,\"batches_per_s\":%.1f,\"mb_per_s\":%.2f,"
                        "\"consumed_batches_per_s\":%.1f,\"headroom\":%.0f}\n",
                        w->name, modes[m][0], w->B, w->T, rate, rate * mb, 1 / CONSUME_S,
                        headroom);
        }
        dataset_close(&d);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    if (jsonl)
        fclose(jsonl);
    return rc;
}
