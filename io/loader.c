#include "io/loader.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "io/le.h"
#include "io/signals.h"
#include "io/zsock.h"
#include "kernels/clock.h"

enum { SEND_POLL_MS = 100 };   /* how often a blocked loader checks for stop */
enum { ERROR_TEXT_BYTES = 512 };  /* room for a width-0 reply's reason */
/* A remote loader silent this long while batches are outstanding gets them
 * asked for again on a new connection: requests lost with a server that died,
 * a reconnection whose event was not seen, or a connection the server no
 * longer reads then cost this wait, not the whole timeout.  Each further
 * silence doubles the wait, so that a server merely slower than this still
 * gets to answer, and the wait kept for the next batch is twice the last one's:
 * asking again costs a slow server's work, so a loader shared by many ranks
 * that takes longer than this per batch must not be asked everything twice
 * for every batch.  Replies are matched by step, so duplicates are dropped. */
enum { RESEND_MS = 2000 };

struct loader {
    const dataset *data;
    loader_options opt;
    int width;
    void *ctx, *push, *pull;
    /* remote mode: a DEALER connected to build/loader and its connection events;
     * batches are numbered from first_step on (seq_of): next_seq is the one
     * loader_next returns next, requests for [next_seq, sent_seq) are in flight */
    char *endpoint, *token;
    void *dealer, *events;
    uint64_t next_seq, sent_seq;
    double patience_ms;   /* silence before asking again (RESEND_MS) */
    int connects, sockets;   /* connections of this socket; sockets opened */
    size_t recv_cap;         /* the longest message: a batch, or an error report */
    pthread_t thread;
    atomic_bool stop;
    atomic_long produced;   /* batches the thread has queued, and the trainer taken */
    long consumed;
    uint8_t *send_buf, *recv_buf;   /* recv_cap bytes (+1 to receive) */
    int *in_tmp, *tg_tmp;   /* the thread's batch before encoding */
};

/* ---- wire format ------------------------------------------------------- */

size_t loader_message_bytes(int B, int T, int width)
{
    return LOADER_HEADER_BYTES + 2 * (size_t)B * T * (size_t)width;
}

static void put_tokens(uint8_t *p, const int *x, size_t n, int width)
{
    for (size_t i = 0; i < n; i++) {
        if (width == 2)
            le_put_u16(p + 2 * i, (uint16_t)x[i]);
        else
            le_put_u32(p + 4 * i, (uint32_t)x[i]);
    }
}

/* Reads n tokens; the index of the first one at or above vocab, or n if none is.
 * A rank indexes its embedding with them, so one out of range must be refused
 * before it is used: a read and a write beyond the model's arrays. */
static size_t get_tokens(int *x, const uint8_t *p, size_t n, int width, int vocab)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t t = width == 2 ? le_get_u16(p + 2 * i) : le_get_u32(p + 4 * i);
        if (t >= (uint32_t)vocab)
            return i;
        x[i] = (int)t;
    }
    return n;
}

static void put_header(uint8_t *buf, uint64_t step, int micro, int rank, int B, int T, int width)
{
    le_put_u32(buf, LOADER_MAGIC);
    le_put_u16(buf + 4, LOADER_VERSION);
    le_put_u16(buf + 6, (uint16_t)width);
    le_put_u64(buf + 8, step);
    le_put_u32(buf + 16, (uint32_t)micro);
    le_put_u32(buf + 20, (uint32_t)rank);
    le_put_u32(buf + 24, (uint32_t)B);
    le_put_u32(buf + 28, (uint32_t)T);
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
                  int vocab, int *inputs, int *targets, char *err, size_t errlen)
{
    if (len < LOADER_HEADER_BYTES || le_get_u32(buf) != LOADER_MAGIC) {
        snprintf(err, errlen, "loader: message of %zu bytes is not a batch", len);
        return -1;
    }
    if (le_get_u16(buf + 4) != LOADER_VERSION) {
        snprintf(err, errlen, "loader: batch format version %u, expected %d", le_get_u16(buf + 4),
                 LOADER_VERSION);
        return -1;
    }
    int width = le_get_u16(buf + 6);
    if (width == 0) {   /* the loader's own error report */
        size_t n = len - LOADER_HEADER_BYTES;   /* not int: a huge n went negative, unbounded */
        snprintf(err, errlen, "loader: %.*s", (int)(n < 400 ? n : 400), (const char *)buf + LOADER_HEADER_BYTES);
        for (char *c = err; *c; c++)   /* the peer's text: keep it one printable line */
            if (!isprint((unsigned char)*c))
                *c = '?';
        return -1;
    }
    if (le_get_u64(buf + 8) != step || le_get_u32(buf + 16) != (uint32_t)micro ||
        le_get_u32(buf + 20) != (uint32_t)rank) {
        /* steps as the log counts them, from 1 */
        snprintf(err, errlen, "loader: got step %" PRIu64 " micro-batch %u for rank %u, expected "
                 "step %" PRIu64 " micro-batch %d for rank %d", le_get_u64(buf + 8) + 1,
                 le_get_u32(buf + 16), le_get_u32(buf + 20), step + 1, micro, rank);
        return -1;
    }
    if (le_get_u32(buf + 24) != (uint32_t)B || le_get_u32(buf + 28) != (uint32_t)T ||
        (width != 2 && width != 4) || len != loader_message_bytes(B, T, width)) {
        snprintf(err, errlen, "loader: batch of %u x %u tokens, width %d, %zu bytes does not match "
                 "%d x %d", le_get_u32(buf + 24), le_get_u32(buf + 28), width, len, B, T);
        return -1;
    }
    size_t n = (size_t)B * T, at = get_tokens(inputs, buf + LOADER_HEADER_BYTES, n, width, vocab);
    if (at == n)
        at = n + get_tokens(targets, buf + LOADER_HEADER_BYTES + n * width, n, width, vocab);
    if (at < 2 * n) {
        const uint8_t *p = buf + LOADER_HEADER_BYTES + at * (size_t)width;
        snprintf(err, errlen, "loader: batch holds token %u (%s %zu), out of range for "
                 "vocab_size %d", width == 2 ? le_get_u16(p) : le_get_u32(p),
                 at < n ? "input" : "target", at % n, vocab);
        return -1;
    }
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
    signals_block_all();
    for (uint64_t step = o->first_step;; step++) {
        for (int j = 0; j < o->grad_accum; j++) {
            uint64_t first = dataset_first_sample(step, j, o->grad_accum, o->rank, o->ranks, o->B);
            size_t len;
            if (dataset_train_batch(l->data, first, o->B, l->in_tmp, l->tg_tmp, err, sizeof err) == 0) {
                len = loader_encode(l->send_buf, step, j, o->rank, o->B, o->T, l->width, l->in_tmp,
                                    l->tg_tmp);
            } else {   /* tell the trainer why, then stop producing */
                put_header(l->send_buf, step, j, o->rank, o->B, o->T, 0);
                size_t n = strnlen(err, ERROR_TEXT_BYTES);
                memcpy(l->send_buf + LOADER_HEADER_BYTES, err, n);
                len = LOADER_HEADER_BYTES + n;
                send_blocking(l, l->send_buf, len);
                return NULL;
            }
            if (!send_blocking(l, l->send_buf, len))
                return NULL;
            atomic_fetch_add(&l->produced, 1);
        }
    }
}

/* ---- remote mode: requests ------------------------------------------------ */

size_t loader_request_encode(uint8_t *buf, const loader_request *r)
{
    memset(buf, 0, LOADER_REQUEST_BYTES);
    le_put_u32(buf, LOADER_REQUEST_MAGIC);
    le_put_u16(buf + 4, LOADER_REQUEST_VERSION);
    le_put_u16(buf + 6, (uint16_t)r->token_len);
    if (r->token_len)
        memcpy(buf + LOADER_REQUEST_BYTES, r->token, r->token_len);
    le_put_u64(buf + 8, r->step);
    le_put_u32(buf + 16, (uint32_t)r->micro);
    le_put_u32(buf + 20, (uint32_t)r->rank);
    le_put_u32(buf + 24, (uint32_t)r->ranks);
    le_put_u32(buf + 28, (uint32_t)r->B);
    le_put_u32(buf + 32, (uint32_t)r->T);
    le_put_u32(buf + 36, (uint32_t)r->grad_accum);
    le_put_u64(buf + 40, r->seed);
    le_put_u32(buf + 48, (uint32_t)r->vocab);
    le_put_u64(buf + 56, r->train_tokens);
    le_put_u64(buf + 64, r->train_checksum);
    return LOADER_REQUEST_BYTES + r->token_len;
}

/* A u32 field as a positive int; false if it does not fit. */
static bool get_count(const uint8_t *p, int *out)
{
    uint32_t v = le_get_u32(p);
    *out = (int)v;
    return v >= 1 && v <= INT32_MAX;
}

int loader_request_decode(const uint8_t *buf, size_t len, loader_request *r, char *err,
                          size_t errlen)
{
    if (len < LOADER_REQUEST_BYTES || len != (size_t)LOADER_REQUEST_BYTES + le_get_u16(buf + 6) ||
        len > LOADER_REQUEST_BYTES + ZSOCK_TOKEN_MAX || le_get_u32(buf) != LOADER_REQUEST_MAGIC) {
        snprintf(err, errlen, "request of %zu bytes is not a batch request", len);
        return -1;
    }
    if (le_get_u16(buf + 4) != LOADER_REQUEST_VERSION) {
        snprintf(err, errlen, "request format version %u, this loader speaks %d",
                 le_get_u16(buf + 4), LOADER_REQUEST_VERSION);
        return -1;
    }
    *r = (loader_request){.step = le_get_u64(buf + 8), .seed = le_get_u64(buf + 40),
                          .train_tokens = le_get_u64(buf + 56),
                          .train_checksum = le_get_u64(buf + 64),
                          .micro = (int)le_get_u32(buf + 16), .rank = (int)le_get_u32(buf + 20),
                          .token = (const char *)buf + LOADER_REQUEST_BYTES,
                          .token_len = le_get_u16(buf + 6)};
    if (!get_count(buf + 24, &r->ranks) || !get_count(buf + 28, &r->B) ||
        !get_count(buf + 32, &r->T) || !get_count(buf + 36, &r->grad_accum) ||
        !get_count(buf + 48, &r->vocab)) {
        snprintf(err, errlen, "request with a zero or negative ranks, B, T, grad_accum or vocab");
        return -1;
    }
    if (le_get_u32(buf + 20) >= (uint32_t)r->ranks ||
        le_get_u32(buf + 16) >= (uint32_t)r->grad_accum) {
        snprintf(err, errlen, "request for rank %u of %d, micro-batch %u of %d is out of range",
                 le_get_u32(buf + 20), r->ranks, le_get_u32(buf + 16), r->grad_accum);
        return -1;
    }
    if ((uint64_t)r->B * (uint64_t)r->T > LOADER_MAX_BATCH_TOKENS) {
        snprintf(err, errlen, "request for a batch of %d x %d tokens, more than the %d allowed",
                 r->B, r->T, LOADER_MAX_BATCH_TOKENS);
        return -1;
    }
    return 0;
}

int loader_request_check(const loader_request *r, const dataset *d, char *err, size_t errlen)
{
    if (r->T != d->T)
        snprintf(err, errlen, "the trainer's seq_len is %d, this loader serves %d", r->T, d->T);
    else if (r->vocab != d->model_vocab)
        snprintf(err, errlen, "the trainer's vocab_size is %d, this loader serves %d", r->vocab,
                 d->model_vocab);
    else if (r->seed != d->seed)
        snprintf(err, errlen, "the trainer's seed is %" PRIu64 ", this loader serves %" PRIu64,
                 r->seed, d->seed);
    else if (r->train_tokens != d->train.count)
        snprintf(err, errlen, "the trainer's train split has %" PRIu64 " tokens, this loader's "
                 "has %" PRIu64 " (different data)", r->train_tokens, d->train.count);
    else if (r->train_checksum && d->train_checksum && r->train_checksum != d->train_checksum)
        snprintf(err, errlen, "the trainer's train.tok has checksum %016" PRIx64 ", this loader's "
                 "%016" PRIx64 " (different data of the same size)", r->train_checksum,
                 d->train_checksum);
    else
        return 0;
    return -1;
}

/* ---- remote mode: the server --------------------------------------------- */

struct loader_server {
    const dataset *data;
    int width;
    uint8_t *buf;   /* the last reply */
    size_t cap;
    int *in, *tg;
    size_t tokens;   /* capacity of in/tg */
    uint64_t served, refused;
    char *token;     /* NULL: requests need none */
};

int loader_server_set_token(loader_server *s, const char *token)
{
    free(s->token);
    s->token = token && *token ? strdup(token) : NULL;
    return token && *token && !s->token ? -1 : 0;
}

loader_server *loader_server_new(const dataset *d, char *err, size_t errlen)
{
    loader_server *s = calloc(1, sizeof *s);
    if (s) {
        s->data = d;
        s->width = d->model_vocab <= 65536 ? 2 : 4;
        s->cap = LOADER_HEADER_BYTES + ERROR_TEXT_BYTES;
        s->buf = malloc(s->cap);
    }
    if (!s || !s->buf) {
        free(s);
        snprintf(err, errlen, "loader: out of memory");
        return NULL;
    }
    return s;
}

void loader_server_free(loader_server *s)
{
    if (!s)
        return;
    free(s->buf);
    free(s->in);
    free(s->tg);
    free(s->token);
    free(s);
}

uint64_t loader_server_served(const loader_server *s, uint64_t *refused)
{
    if (refused)
        *refused = s->refused;
    return s->served;
}

/* A width-0 reply carrying the reason (fits: cap >= header + ERROR_TEXT_BYTES). */
static size_t error_reply(loader_server *s, const loader_request *r, const char *why)
{
    put_header(s->buf, r->step, r->micro, r->rank, r->B, r->T, 0);
    size_t n = strnlen(why, ERROR_TEXT_BYTES);
    memcpy(s->buf + LOADER_HEADER_BYTES, why, n);
    s->refused++;
    return LOADER_HEADER_BYTES + n;
}

/* Grows the batch buffers to B*T tokens; false when out of memory. */
static bool server_reserve(loader_server *s, int B, int T)
{
    size_t n = (size_t)B * T, bytes = loader_message_bytes(B, T, s->width);
    if (bytes > s->cap) {
        uint8_t *b = realloc(s->buf, bytes);
        if (!b)
            return false;
        s->buf = b, s->cap = bytes;
    }
    if (n > s->tokens) {
        int *in = realloc(s->in, n * sizeof *in);
        if (in)
            s->in = in;
        int *tg = realloc(s->tg, n * sizeof *tg);
        if (tg)
            s->tg = tg;
        if (!in || !tg)
            return false;
        s->tokens = n;
    }
    return true;
}

/* A request that cannot be read (it does not decode, or comes in several
 * parts) carries no token to show: a server with one does not answer it, as
 * a peer without the token learns nothing, not even why; others get why. */
static size_t refuse_unread(loader_server *s, const char *why)
{
    if (s->token) {
        s->refused++;
        return 0;
    }
    const loader_request none = {0};   /* nothing in a refused request is trusted */
    return error_reply(s, &none, why);
}

size_t loader_server_answer(loader_server *s, const uint8_t *req, size_t len,
                            const uint8_t **reply)
{
    loader_request r = {0};
    char why[300];
    size_t n;
    *reply = s->buf;
    s->served++;
    if (loader_request_decode(req, len, &r, why, sizeof why) != 0)
        return refuse_unread(s, why);
    if (s->token && !zsock_token_equal(r.token, r.token_len, s->token)) {
        s->refused++;
        return 0;
    }
    if (loader_request_check(&r, s->data, why, sizeof why) != 0)
        return error_reply(s, &r, why);
    if (!server_reserve(s, r.B, r.T))
        return error_reply(s, &r, "out of memory for the batch");
    uint64_t first = dataset_first_sample(r.step, r.micro, r.grad_accum, r.rank, r.ranks, r.B);
    if (dataset_train_batch(s->data, first, r.B, s->in, s->tg, why, sizeof why) != 0)
        return error_reply(s, &r, why);
    n = loader_encode(s->buf, r.step, r.micro, r.rank, r.B, r.T, s->width, s->in, s->tg);
    *reply = s->buf;   /* server_reserve may have moved it */
    return n;
}

/* Receives one request and sends its reply behind its envelope (zsock_reply:
 * a peer that went away is not waited for). */
static void answer_one(loader_server *s, void *sock)
{
    zsock_request q;
    if (!zsock_recv_request(sock, ZSOCK_LOADER, &q))
        return;
    const uint8_t *reply = s->buf;
    size_t len;
    const uint8_t *body = zsock_request_body(&q, &len);
    if (q.multipart) {
        s->served++;
        len = refuse_unread(s, "a request is one message part");
    } else
        len = loader_server_answer(s, body, len, &reply);
    if (len > 0)
        zsock_reply(sock, &q, reply, len);
    zsock_request_close(&q);
}

int loader_server_run(loader_server *s, const char *endpoint, const atomic_int *stop, char *err,
                      size_t errlen)
{
    void *ctx = zmq_ctx_new(), *sock = NULL;
    int rc = -1;
    zsock_opts zo = {.token = s->token};
    if (!ctx || !(sock = zsock_open(ctx, ZSOCK_LOADER, endpoint, &zo, err, errlen))) {
        if (!ctx)
            snprintf(err, errlen, "loader: cannot create a ZeroMQ context");
        goto out;
    }
    while (!atomic_load(stop)) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, SEND_POLL_MS) < 0 && zmq_errno() != EINTR) {
            snprintf(err, errlen, "loader: %s: %s", endpoint, zmq_strerror(zmq_errno()));
            goto out;
        }
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        answer_one(s, sock);
    }
    rc = 0;
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}

/* ---- the trainer's side -------------------------------------------------- */

/* A batch's number in the run: batches are asked for and used in this order. */
static uint64_t seq_of(const loader *l, uint64_t step, int micro)
{
    return (step - l->opt.first_step) * (uint64_t)l->opt.grad_accum + (uint64_t)micro;
}

/* Asks the server for batch seq; false if it cannot be queued. */
static bool request(loader *l, uint64_t seq)
{
    const loader_options *o = &l->opt;
    loader_request r = {.step = o->first_step + seq / (uint64_t)o->grad_accum,
                        .micro = (int)(seq % (uint64_t)o->grad_accum), .rank = o->rank,
                        .ranks = o->ranks, .B = o->B, .T = o->T, .grad_accum = o->grad_accum,
                        .seed = l->data->seed, .vocab = l->data->model_vocab,
                        .train_tokens = l->data->train.count,
                        .train_checksum = l->data->train_checksum, .token = l->token,
                        .token_len = l->token ? strlen(l->token) : 0};
    uint8_t buf[LOADER_REQUEST_BYTES + ZSOCK_TOKEN_MAX];
    size_t len = loader_request_encode(buf, &r);
    int rc;
    while ((rc = zmq_send(l->dealer, buf, len, 0)) < 0 && zmq_errno() == EINTR)
        ;   /* a signal (a stop request, SIGCONT after SIGSTOP) is no failure */
    return rc >= 0;
}

/* Keeps `depth` requests in flight. */
static bool request_ahead(loader *l)
{
    for (; l->sent_seq < l->next_seq + (uint64_t)l->opt.depth; l->sent_seq++)
        if (!request(l, l->sent_seq))
            return false;
    return true;
}

/* After a reconnection (a restarted server) the requests the old one had
 * taken are lost: every one still outstanding is asked for again.  Those
 * that were still queued here reach the new server too; their second replies
 * are discarded as stale (next_remote). */
static bool request_again(loader *l)
{
    for (uint64_t seq = l->next_seq; seq < l->sent_seq; seq++)
        if (!request(l, seq))
            return false;
    return true;
}

static void close_dealer(loader *l)
{
    if (l->events)
        zmq_close(l->events);
    if (l->dealer)
        zmq_close(l->dealer);
    l->events = l->dealer = NULL;
}

/* A new DEALER to the loader process, with a new identity, and the monitor of
 * its connections; requests queued on the old one are dropped with it. */
static int open_dealer(loader *l, char *err, size_t errlen)
{
    close_dealer(l);
    /* a reply larger than the widest batch is refused unread (peer disconnected) */
    zsock_opts zo = {.max_msg = (int64_t)l->recv_cap};
    char events[64];
    snprintf(events, sizeof events, "inproc://loader-events-%p-%d", (void *)l, l->sockets++);
    l->connects = 0;
    if (!(l->dealer = zsock_open(l->ctx, ZSOCK_LOADER_CLIENT, l->endpoint, &zo, err, errlen)) ||
        zsock_set(l->dealer, ZMQ_SNDTIMEO, l->opt.timeout_ms) != 0 ||
        zmq_socket_monitor(l->dealer, events, ZMQ_EVENT_CONNECTED) != 0 ||
        !(l->events = zsock_open(l->ctx, ZSOCK_EVENTS, events, NULL, err, errlen))) {
        if (l->dealer && !l->events)
            snprintf(err, errlen, "loader: %s: %s", l->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* The longest message a rank takes: a batch of tokens `width` bytes wide, or
 * an error report, which a small batch is shorter than (+1 when receiving,
 * so that a longer message is detected, not cut). */
static size_t message_cap(const loader_options *o, int width)
{
    size_t batch = loader_message_bytes(o->B, o->T, width);
    return batch > LOADER_HEADER_BYTES + ERROR_TEXT_BYTES ? batch
                                                          : LOADER_HEADER_BYTES + ERROR_TEXT_BYTES;
}

/* Remote mode: connect a DEALER to the loader process and put `depth` requests
 * in flight.  Connecting never waits for the server: requests queue until it
 * is up, and only loader_next's timeout decides that it is not coming. */
static int start_remote(loader *l, const char *endpoint, const char *token, char *err,
                        size_t errlen)
{
    const loader_options *o = &l->opt;
    l->endpoint = strdup(endpoint);
    l->token = token && *token ? strdup(token) : NULL;
    if (l->token && strlen(l->token) > ZSOCK_TOKEN_MAX) {
        snprintf(err, errlen, "loader: the token is longer than %d bytes", ZSOCK_TOKEN_MAX);
        return -1;
    }
    l->recv_cap = message_cap(o, 4);   /* the widest batch a server may send */
    l->recv_buf = malloc(l->recv_cap + 1);
    l->ctx = zmq_ctx_new();
    if (!l->endpoint || !l->recv_buf || !l->ctx) {
        snprintf(err, errlen, "loader: out of memory");
        return -1;
    }
    if (open_dealer(l, err, errlen) != 0)
        return -1;
    if (!request_ahead(l)) {
        snprintf(err, errlen, "loader: cannot send to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
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
    l->opt.endpoint = NULL;   /* the caller's string need not outlive the loader */
    if (o->endpoint && o->endpoint[0]) {
        const char *token = o->token ? o->token : zsock_env_token(LOADER_TOKEN_ENV);
        l->opt.token = NULL;
        if (start_remote(l, o->endpoint, token, err, errlen) != 0) {
            loader_stop(l);
            return NULL;
        }
        return l;
    }
    l->width = d->model_vocab <= 65536 ? 2 : 4;
    l->recv_cap = message_cap(o, l->width);
    size_t n = (size_t)o->B * o->T;
    l->send_buf = malloc(l->recv_cap);
    l->recv_buf = malloc(l->recv_cap + 1);   /* +1: a longer message is detected, not cut */
    l->in_tmp = malloc(n * sizeof(int));
    l->tg_tmp = malloc(n * sizeof(int));
    l->ctx = zmq_ctx_new();
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://loader-%p", (void *)l);
    /* half the depth queued at each end of the pipe */
    zsock_opts half = {.hwm = o->depth > 1 ? (o->depth + 1) / 2 : 1};
    int rc = -1;
    if (!l->send_buf || !l->recv_buf || !l->in_tmp || !l->tg_tmp || !l->ctx)
        snprintf(err, errlen, "loader: cannot start: out of memory");
    else if (!(l->push = zsock_open(l->ctx, ZSOCK_PIPE_PUSH, endpoint, &half, err, errlen)) ||
             !(l->pull = zsock_open(l->ctx, ZSOCK_PIPE_PULL, endpoint, &half, err, errlen)))
        ;   /* zsock_open said why */
    else if (zsock_set(l->push, ZMQ_SNDTIMEO, SEND_POLL_MS) ||
             zsock_set(l->pull, ZMQ_RCVTIMEO, o->timeout_ms))
        snprintf(err, errlen, "loader: cannot start (%s)", zmq_strerror(zmq_errno()));
    else if ((rc = pthread_create(&l->thread, NULL, produce, l)) != 0)
        snprintf(err, errlen, "loader: cannot start its thread (%s)", strerror(rc));
    if (rc == 0)
        return l;
    l->thread = 0;
    loader_stop(l);
    return NULL;
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
    close_dealer(l);
    if (l->ctx)
        zmq_ctx_term(l->ctx);
    free(l->send_buf);
    free(l->recv_buf);
    free(l->in_tmp);
    free(l->tg_tmp);
    free(l->endpoint);
    free(l->token);
    free(l);
}

static double now_ms(void)   /* the loader's timeouts are in ms */
{
    return clock_mono_s() * 1e3;
}

/* Drops the rest of a multi-part message, which no loader sends: the next
 * receive starts at a message boundary, and this one is refused by its size. */
static void drain_more(void *sock)
{
    int more = 1;
    size_t sz = sizeof more;
    char scratch[1];
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more)
        zmq_recv(sock, scratch, sizeof scratch, ZMQ_DONTWAIT);
}

/* Reads one connection event; a reconnection re-sends what is outstanding. */
static bool on_event(loader *l)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n = zmq_msg_recv(&m, l->events, ZMQ_DONTWAIT);
    bool connected = n >= 2 && (((const uint8_t *)zmq_msg_data(&m))[0] |
                                ((const uint8_t *)zmq_msg_data(&m))[1] << 8) == ZMQ_EVENT_CONNECTED;
    drain_more(l->events);   /* the event's second part: the endpoint */
    zmq_msg_close(&m);
    /* the first connection delivers the requests queued before it */
    return !connected || ++l->connects == 1 || request_again(l);
}

/* What a reply answers: 1 the batch expected now, 0 nothing outstanding (a
 * second answer to a request sent again, or an answer to an earlier run's),
 * -1 a later batch (it came before the one expected: a restarted server got
 * its request first; that request is sent again, so order is restored). */
static int classify(loader *l, const uint8_t *buf, size_t len)
{
    if (len < LOADER_HEADER_BYTES || le_get_u32(buf) != LOADER_MAGIC || le_get_u16(buf + 6) == 0 ||
        le_get_u32(buf + 20) != (uint32_t)l->opt.rank)
        return 1;   /* not a batch, or an error report: loader_decode says why */
    uint64_t step = le_get_u64(buf + 8);
    uint32_t micro = le_get_u32(buf + 16);
    if (step < l->opt.first_step || micro >= (uint32_t)l->opt.grad_accum)
        return 0;
    uint64_t seq = seq_of(l, step, (int)micro);
    if (seq == l->next_seq)
        return 1;
    return seq > l->next_seq && seq < l->sent_seq ? -1 : 0;
}

/* Waits for the reply to batch next_seq (until the timeout from now), handling
 * connection events on the way.  Its length, -1 at the timeout, or -2 when a
 * socket cannot be polled, opened or sent to (the reason in err). */
static int receive_expected(loader *l, double *wait_ms, char *err, size_t errlen)
{
    double t0 = now_ms(), heard = t0, left;
    double patience = l->patience_ms > RESEND_MS ? l->patience_ms : RESEND_MS;
    bool asked_again = false;
    while ((left = l->opt.timeout_ms - (now_ms() - t0)) > 0) {
        zmq_pollitem_t items[2] = {{.socket = l->dealer, .events = ZMQ_POLLIN},
                                   {.socket = l->events, .events = ZMQ_POLLIN}};
        double quiet = patience - (now_ms() - heard), poll_ms = quiet < left ? quiet : left;
        if (zmq_poll(items, 2, poll_ms > 0 ? (long)poll_ms + 1 : 0) < 0 && zmq_errno() != EINTR)
            goto failed;
        if ((items[1].revents & ZMQ_POLLIN) && !on_event(l))
            goto failed;
        if (!(items[0].revents & ZMQ_POLLIN)) {
            if (now_ms() - heard >= patience) {
                if (open_dealer(l, err, errlen) != 0)
                    goto out;
                if (!request_again(l))
                    goto failed;
                heard = now_ms();
                patience *= 2;
            }
            continue;
        }
        heard = now_ms();
        int len = zmq_recv(l->dealer, l->recv_buf, l->recv_cap + 1, ZMQ_DONTWAIT);
        if (len < 0)
            continue;
        drain_more(l->dealer);
        size_t n = (size_t)len < l->recv_cap + 1 ? (size_t)len : l->recv_cap + 1;
        int c = classify(l, l->recv_buf, n);
        if (c == 1) {
            *wait_ms = now_ms() - t0;
            l->patience_ms = 2 * *wait_ms;
            return (int)n;
        }
        if (c < 0 && !request(l, seq_of(l, le_get_u64(l->recv_buf + 8),
                                        (int)le_get_u32(l->recv_buf + 16))))
            goto failed;
        /* a later batch came first: the expected one's reply may be lost (a
         * server answers one connection in order), and the replies that keep
         * coming would hold off the silence that asks again */
        if (c < 0 && !asked_again && !(asked_again = request(l, l->next_seq)))
            goto failed;
    }
    *wait_ms = now_ms() - t0;
    return -1;
failed:
    snprintf(err, errlen, "loader at %s: %s", l->endpoint, zmq_strerror(zmq_errno()));
out:
    *wait_ms = now_ms() - t0;
    return -2;
}

static int next_remote(loader *l, uint64_t step, int micro, int *inputs, int *targets,
                       double *wait_ms, char *err, size_t errlen)
{
    if (seq_of(l, step, micro) != l->next_seq) {
        snprintf(err, errlen, "loader: step %" PRIu64 " micro-batch %d asked out of order", step + 1,
                 micro);
        return -1;
    }
    int len = receive_expected(l, wait_ms, err, errlen);
    if (len == -2)
        return -1;
    if (len < 0) {   /* never answered: a server with a token ignores a rank without it */
        snprintf(err, errlen, "loader at %s did not answer within %g s (batch of step %" PRIu64
                 "%s)", l->endpoint, l->opt.timeout_ms / 1e3, step + 1,
                 l->next_seq == 0 ? "; a loader with a token answers only requests that carry "
                                    "it: $" LOADER_TOKEN_ENV : "");
        return -1;
    }
    char why[400];
    if (loader_decode(l->recv_buf, (size_t)len, step, micro, l->opt.rank, l->opt.B, l->opt.T,
                      l->data->model_vocab, inputs, targets, why, sizeof why) != 0) {
        const char *p = strncmp(why, "loader: ", 8) == 0 ? why + 8 : why;
        snprintf(err, errlen, "loader at %s: %s", l->endpoint, p);
        return -1;
    }
    l->next_seq++;
    if (!request_ahead(l)) {
        snprintf(err, errlen, "loader at %s: cannot send a request: %s", l->endpoint,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int loader_next(loader *l, uint64_t step, int micro, int *inputs, int *targets, double *wait_ms,
                char *err, size_t errlen)
{
    if (l->endpoint)
        return next_remote(l, step, micro, inputs, targets, wait_ms, err, errlen);
    double t0 = now_ms();
    int len;
    /* a signal (a stop or checkpoint request, which the run takes after the
     * step) interrupts the wait; the batch is still needed */
    while ((len = zmq_recv(l->pull, l->recv_buf, l->recv_cap + 1, 0)) < 0 && zmq_errno() == EINTR)
        continue;
    *wait_ms = now_ms() - t0;
    if (len < 0) {
        snprintf(err, errlen, "loader: no batch for step %" PRIu64 " within %d ms (the loader "
                 "stopped answering)", step + 1, l->opt.timeout_ms);
        return -1;
    }
    l->consumed++;
    return loader_decode(l->recv_buf, (size_t)len, step, micro, l->opt.rank, l->opt.B, l->opt.T,
                         l->data->model_vocab, inputs, targets, err, errlen);
}

int loader_queue_depth(const loader *l)
{
    if (l->endpoint)
        return -1;   /* replies waiting in the socket cannot be counted */
    return (int)(atomic_load(&((loader *)l)->produced) - l->consumed);
}
