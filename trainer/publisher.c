#include "trainer/publisher.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "io/signals.h"
#include "io/zsock.h"
#include "kernels/clock.h"

/* ---- the bounded drop-oldest queue ---- */

int msgq_init(msg_queue *q, size_t cap)
{
    memset(q, 0, sizeof *q);
    q->items = calloc(cap ? cap : 1, sizeof *q->items);
    if (!q->items || clock_cond_init(&q->nonempty) != 0) {
        free(q->items);
        q->items = NULL;
        return -1;
    }
    q->cap = cap ? cap : 1;
    pthread_mutex_init(&q->mu, NULL);
    return 0;
}

void msgq_destroy(msg_queue *q)
{
    if (!q->items)
        return;
    for (size_t i = 0; i < q->count; i++)
        free(q->items[(q->head + i) % q->cap]);
    free(q->items);
    q->items = NULL;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->nonempty);
}

bool msgq_push(msg_queue *q, const char *s)
{
    char *copy = strdup(s);   /* outside the lock: the consumer never waits on malloc */
    char *evicted = NULL;
    pthread_mutex_lock(&q->mu);
    if (!copy) {
        q->dropped++;
    } else {
        if (q->count == q->cap) {   /* full: the oldest record goes */
            evicted = q->items[q->head];
            q->head = (q->head + 1) % q->cap;
            q->count--;
            q->dropped++;
        }
        q->items[(q->head + q->count) % q->cap] = copy;
        q->count++;
        pthread_cond_signal(&q->nonempty);
    }
    pthread_mutex_unlock(&q->mu);
    free(evicted);
    return copy != NULL;
}

char *msgq_pop(msg_queue *q, double timeout_s)
{
    struct timespec until = clock_deadline(timeout_s);
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && timeout_s > 0)
        if (pthread_cond_timedwait(&q->nonempty, &q->mu, &until) == ETIMEDOUT)
            break;
    char *s = NULL;
    if (q->count > 0) {
        s = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    pthread_mutex_unlock(&q->mu);
    return s;
}

uint64_t msgq_dropped(msg_queue *q)
{
    pthread_mutex_lock(&q->mu);
    uint64_t d = q->dropped;
    pthread_mutex_unlock(&q->mu);
    return d;
}

size_t msgq_count(msg_queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* ---- the publisher ---- */

struct publisher {
    msg_queue queue;
    char *endpoint;
    void *ctx, *sock;        /* sock NULL when the endpoint is "none" (or between binds) */
    pthread_t thread;
    bool running;
    int quit;                /* under queue.mu */
    unsigned subscriptions;  /* subscription messages read since sock was bound */
    atomic_uint rebinds;
    pthread_mutex_t latest_mu;
    char *latest;            /* latest step record */
};

/* Binds the status socket (retrying a while: a port just closed may still be
 * held by ZeroMQ's I/O thread).  0, or -1 with err set. */
static int bind_status(publisher *p, char *err, size_t errlen)
{
    for (int tries = 1;; tries++) {
        p->sock = zsock_open(p->ctx, ZSOCK_STATUS, p->endpoint, NULL, err, errlen);
        if (p->sock || zmq_errno() != EADDRINUSE || tries == PUBLISHER_BIND_TRIES)
            return p->sock ? 0 : -1;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

/* Reads the subscription messages waiting (XPUB_MANUAL: they reach us, not
 * ZeroMQ's subscription trie) and subscribes each sender to everything,
 * whatever its topic.  ZeroMQ still keeps every distinct topic a peer sent
 * until it disconnects, and a peer cannot be disconnected alone: after
 * PUBLISHER_MAX_SUBSCRIPTIONS of them the socket is closed and bound again,
 * which frees them all (subscribers reconnect and subscribe by themselves). */
static void read_subscriptions(publisher *p)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (p->sock && zmq_msg_recv(&m, p->sock, ZMQ_DONTWAIT) >= 0) {
        const uint8_t *d = zmq_msg_data(&m);
        if (zmq_msg_size(&m) > 0 && d[0] == 1)
            zmq_setsockopt(p->sock, ZMQ_SUBSCRIBE, "", 0);   /* the pipe it came from */
        if (++p->subscriptions >= PUBLISHER_MAX_SUBSCRIPTIONS) {
            char err[256];
            zmq_close(p->sock);
            p->sock = NULL;
            p->subscriptions = 0;
            atomic_fetch_add(&p->rebinds, 1);
            bind_status(p, err, sizeof err);
        }
    }
    zmq_msg_close(&m);
}

/* Sender thread: pops records and sends them without ever blocking.  A PUB
 * socket drops messages for a subscriber whose pipe is full (SNDHWM) by
 * itself, so a failed send is only possible when the socket is closing.
 * Between records it answers subscriptions (at least every 50 ms). */
static void *sender_main(void *arg)
{
    publisher *p = arg;
    signals_block_all();
    for (;;) {
        char err[256];
        pthread_mutex_lock(&p->queue.mu);
        const int quitting = p->quit;
        pthread_mutex_unlock(&p->queue.mu);
        /* a rebind that failed: try again, but not when closing, where each
         * record left would wait for the retries of a port someone took */
        if (!p->sock && !quitting)
            bind_status(p, err, sizeof err);
        read_subscriptions(p);
        char *msg = msgq_pop(&p->queue, 0.05);
        if (msg) {
            if (p->sock)
                zmq_send(p->sock, msg, strlen(msg), ZMQ_DONTWAIT);
            free(msg);
            continue;
        }
        pthread_mutex_lock(&p->queue.mu);
        int quit = p->quit && p->queue.count == 0;
        pthread_mutex_unlock(&p->queue.mu);
        if (quit)
            return NULL;
    }
}

publisher *publisher_open(const char *endpoint, char *err, size_t errlen)
{
    publisher *p = calloc(1, sizeof *p);
    if (!p || msgq_init(&p->queue, PUBLISHER_QUEUE) != 0) {
        free(p);
        snprintf(err, errlen, "out of memory creating the status publisher");
        return NULL;
    }
    pthread_mutex_init(&p->latest_mu, NULL);
    if (zsock_endpoint_none(endpoint))
        return p;
    p->endpoint = strdup(endpoint);
    p->ctx = zmq_ctx_new();
    if (!p->endpoint || !p->ctx || bind_status(p, err, errlen) != 0) {
        if (!p->endpoint || !p->ctx)
            snprintf(err, errlen, "status_endpoint %s: cannot create a ZeroMQ context", endpoint);
        publisher_close(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, sender_main, p) != 0) {
        snprintf(err, errlen, "status_endpoint %s: cannot start the sender thread", endpoint);
        publisher_close(p);
        return NULL;
    }
    p->running = true;
    return p;
}

unsigned publisher_rebinds(publisher *p)
{
    return p ? atomic_load(&p->rebinds) : 0;
}

void publisher_close(publisher *p)
{
    if (!p)
        return;
    if (p->running) {
        pthread_mutex_lock(&p->queue.mu);
        p->quit = 1;
        pthread_mutex_unlock(&p->queue.mu);
        pthread_join(p->thread, NULL);
    }
    if (p->sock) {   /* the last records (the "done" event) still go out, for a bounded time */
        zsock_set(p->sock, ZMQ_LINGER, PUBLISHER_CLOSE_LINGER_MS);
        zmq_close(p->sock);
    }
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    msgq_destroy(&p->queue);
    free(p->endpoint);
    pthread_mutex_destroy(&p->latest_mu);
    free(p->latest);
    free(p);
}

void publisher_send(publisher *p, const char *json, bool is_step)
{
    if (!p || !json)
        return;
    if (p->running)
        msgq_push(&p->queue, json);
    if (is_step) {
        char *copy = strdup(json);
        pthread_mutex_lock(&p->latest_mu);
        free(p->latest);
        p->latest = copy;
        pthread_mutex_unlock(&p->latest_mu);
    }
}

uint64_t publisher_dropped(publisher *p)
{
    return p ? msgq_dropped(&p->queue) : 0;
}

char *publisher_latest_step(publisher *p)
{
    if (!p)
        return NULL;
    pthread_mutex_lock(&p->latest_mu);
    char *s = p->latest ? strdup(p->latest) : NULL;
    pthread_mutex_unlock(&p->latest_mu);
    return s;
}

char *publisher_latest_step_cb(void *ctx)
{
    return publisher_latest_step(ctx);
}
