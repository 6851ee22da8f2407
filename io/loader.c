#include "io/loader.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

enum { SEND_POLL_MS = 100 };   /* how often a blocked loader checks for stop */

struct loader {
    const dataset *data;
    loader_options opt;
    int width;
    void *ctx, *push, *pull;
    pthread_t thread;
    atomic_bool stop;
    uint8_t *send_buf, *recv_buf;
    size_t msg_bytes;
    int *in_tmp, *tg_tmp;   /* the thread's batch before encoding */
};

/* ---- wire format ------------------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t get_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

size_t loader_message_bytes(int B, int T, int width)
{
    return LOADER_HEADER_BYTES + 2 * (size_t)B * T * (size_t)width;
}

static void put_tokens(uint8_t *p, const int *x, size_t n, int width)
{
    for (size_t i = 0; i < n; i++) {
        if (width == 2)
            put_u16(p + 2 * i, (uint16_t)x[i]);
        else
            put_u32(p + 4 * i, (uint32_t)x[i]);
    }
}

static void get_tokens(int *x, const uint8_t *p, size_t n, int width)
{
    for (size_t i = 0; i < n; i++)
        x[i] = width == 2 ? (int)get_u16(p + 2 * i) : (int)get_u32(p + 4 * i);
}

static void put_header(uint8_t *buf, uint64_t step, int micro, int rank, int B, int T, int width)
{
    put_u32(buf, LOADER_MAGIC);
    put_u16(buf + 4, LOADER_VERSION);
    put_u16(buf + 6, (uint16_t)width);
    put_u64(buf + 8, step);
    put_u32(buf + 16, (uint32_t)micro);
    put_u32(buf + 20, (uint32_t)rank);
    put_u32(buf + 24, (uint32_t)B);
    put_u32(buf + 28, (uint32_t)T);
}

size_t loader_encode(uint8_t *buf, uint64_t step, int micro, int rank, int B, int T, int width,
                     const int *inputs, const int *targets)
{
    size_t n = (size_t)B * T;
    put_header(buf, step, micro, rank, B, T, width);
    put_tokens(buf + LOADER_HEADER_BYTES, inputs, n, width);
    put_tokens(buf + LOADER_HEADER_BYTES + n * width, targets, n, width);
    return loader_message_bytes(B, T, width);
}

int loader_decode(const uint8_t *buf, size_t len, uint64_t step, int micro, int rank, int B, int T,
                  int *inputs, int *targets, char *err, size_t errlen)
{
    if (len < LOADER_HEADER_BYTES || get_u32(buf) != LOADER_MAGIC) {
        snprintf(err, errlen, "loader: message of %zu bytes is not a batch", len);
        return -1;
    }
    if (get_u16(buf + 4) != LOADER_VERSION) {
        snprintf(err, errlen, "loader: batch format version %u, expected %d", get_u16(buf + 4),
                 LOADER_VERSION);
        return -1;
    }
    int width = get_u16(buf + 6);
    if (width == 0) {   /* the loader's own error report */
        int n = (int)(len - LOADER_HEADER_BYTES);
        snprintf(err, errlen, "loader: %.*s", n < 400 ? n : 400, (const char *)buf + LOADER_HEADER_BYTES);
        return -1;
    }
    if (get_u64(buf + 8) != step || get_u32(buf + 16) != (uint32_t)micro ||
        get_u32(buf + 20) != (uint32_t)rank) {
        snprintf(err, errlen, "loader: got step %" PRIu64 " micro-batch %u for rank %u, expected "
                 "step %" PRIu64 " micro-batch %d for rank %d", get_u64(buf + 8), get_u32(buf + 16),
                 get_u32(buf + 20), step, micro, rank);
        return -1;
    }
    if (get_u32(buf + 24) != (uint32_t)B || get_u32(buf + 28) != (uint32_t)T ||
        (width != 2 && width != 4) || len != loader_message_bytes(B, T, width)) {
        snprintf(err, errlen, "loader: batch of %u x %u tokens, width %d, %zu bytes does not match "
                 "%d x %d", get_u32(buf + 24), get_u32(buf + 28), width, len, B, T);
        return -1;
    }
    size_t n = (size_t)B * T;
    get_tokens(inputs, buf + LOADER_HEADER_BYTES, n, width);
    get_tokens(targets, buf + LOADER_HEADER_BYTES + n * width, n, width);
    return 0;
}

/* ---- the loader thread -------------------------------------------------- */

/* Sends one message, retrying while the queue is full; false once stopped. */
static bool send_blocking(loader *l, const void *buf, size_t len)
{
    while (!atomic_load(&l->stop)) {
        if (zmq_send(l->push, buf, len, 0) >= 0)
            return true;
        if (errno != EAGAIN)
            return false;
    }
    return false;
}

static void *produce(void *arg)
{
    loader *l = arg;
    const loader_options *o = &l->opt;
    char err[300];
    for (uint64_t step = o->first_step;; step++) {
        for (int j = 0; j < o->grad_accum; j++) {
            uint64_t first = dataset_first_sample(step, j, o->grad_accum, o->rank, o->ranks, o->B);
            size_t len;
            if (dataset_train_batch(l->data, first, o->B, l->in_tmp, l->tg_tmp, err, sizeof err) == 0) {
                len = loader_encode(l->send_buf, step, j, o->rank, o->B, o->T, l->width, l->in_tmp,
                                    l->tg_tmp);
            } else {   /* tell the trainer why, then stop producing */
                put_header(l->send_buf, step, j, o->rank, o->B, o->T, 0);
                size_t n = strlen(err);
                memcpy(l->send_buf + LOADER_HEADER_BYTES, err, n);
                len = LOADER_HEADER_BYTES + n;
                send_blocking(l, l->send_buf, len);
                return NULL;
            }
            if (!send_blocking(l, l->send_buf, len))
                return NULL;
        }
    }
}

/* ---- the trainer's side -------------------------------------------------- */

static int set_int(void *sock, int option, int value)
{
    return zmq_setsockopt(sock, option, &value, sizeof value);
}

loader *loader_start(const dataset *d, const loader_options *o, char *err, size_t errlen)
{
    loader *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "loader: out of memory");
        return NULL;
    }
    l->data = d;
    l->opt = *o;
    l->width = d->model_vocab <= 65536 ? 2 : 4;
    l->msg_bytes = loader_message_bytes(o->B, o->T, l->width);
    size_t n = (size_t)o->B * o->T;
    l->send_buf = malloc(l->msg_bytes);
    l->recv_buf = malloc(l->msg_bytes + 1);   /* +1: a longer message is detected, not cut */
    l->in_tmp = malloc(n * sizeof(int));
    l->tg_tmp = malloc(n * sizeof(int));
    l->ctx = zmq_ctx_new();
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://loader-%p", (void *)l);
    if (l->ctx) {
        l->push = zmq_socket(l->ctx, ZMQ_PUSH);
        l->pull = zmq_socket(l->ctx, ZMQ_PULL);
    }
    /* half the depth queued at each end of the pipe */
    int hwm = o->depth > 1 ? (o->depth + 1) / 2 : 1;
    if (!l->send_buf || !l->recv_buf || !l->in_tmp || !l->tg_tmp || !l->push || !l->pull ||
        set_int(l->push, ZMQ_SNDHWM, hwm) || set_int(l->pull, ZMQ_RCVHWM, hwm) ||
        set_int(l->push, ZMQ_SNDTIMEO, SEND_POLL_MS) || set_int(l->push, ZMQ_LINGER, 0) ||
        set_int(l->pull, ZMQ_LINGER, 0) || set_int(l->pull, ZMQ_RCVTIMEO, o->timeout_ms) ||
        zmq_bind(l->push, endpoint) || zmq_connect(l->pull, endpoint) ||
        pthread_create(&l->thread, NULL, produce, l) != 0) {
        snprintf(err, errlen, "loader: cannot start (%s)", zmq_strerror(zmq_errno()));
        l->thread = 0;
        loader_stop(l);
        return NULL;
    }
    return l;
}

void loader_stop(loader *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, true);
    if (l->thread)
        pthread_join(l->thread, NULL);
    if (l->push)
        zmq_close(l->push);
    if (l->pull)
        zmq_close(l->pull);
    if (l->ctx)
        zmq_ctx_term(l->ctx);
    free(l->send_buf);
    free(l->recv_buf);
    free(l->in_tmp);
    free(l->tg_tmp);
    free(l);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int loader_next(loader *l, uint64_t step, int micro, int *inputs, int *targets, double *wait_ms,
                char *err, size_t errlen)
{
    double t0 = now_ms();
    int len = zmq_recv(l->pull, l->recv_buf, l->msg_bytes + 1, 0);
    *wait_ms = now_ms() - t0;
    if (len < 0) {
        snprintf(err, errlen, "loader: no batch for step %" PRIu64 " within %d ms (the loader "
                 "stopped answering)", step, l->opt.timeout_ms);
        return -1;
    }
    return loader_decode(l->recv_buf, (size_t)len, step, micro, l->opt.rank, l->opt.B, l->opt.T,
                         inputs, targets, err, errlen);
}
