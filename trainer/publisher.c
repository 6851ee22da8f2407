#include "trainer/publisher.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "trainer/control.h"

/* ---- the bounded drop-oldest queue ---- */

int msgq_init(msg_queue *q, size_t cap)
{
    memset(q, 0, sizeof *q);
    q->items = calloc(cap ? cap : 1, sizeof *q->items);
    if (!q->items)
        return -1;
    q->cap = cap ? cap : 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->nonempty, NULL);
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
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)(timeout_s * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
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
    void *ctx, *sock;        /* NULL when the endpoint is "none" */
    pthread_t thread;
    bool running;
    int quit;                /* under queue.mu */
    pthread_mutex_t latest_mu;
    char *latest;            /* latest step record */
};

/* Sender thread: pops records and sends them without ever blocking.  A PUB
 * socket drops messages for a subscriber whose pipe is full (SNDHWM) by
 * itself, so a failed send is only possible when the socket is closing. */
static void *sender_main(void *arg)
{
    publisher *p = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);   /* signals belong to the main thread */
    for (;;) {
        char *msg = msgq_pop(&p->queue, 0.2);
        if (msg) {
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

/* Socket options: a bounded per-subscriber buffer, and a bounded linger so
 * that closing with a gone subscriber never hangs shutdown. */
static int set_pub_options(void *sock, const char *endpoint)
{
    int hwm = 1000, linger = 500, ipv6 = endpoint_is_ipv6(endpoint);
    return zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) |
           zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) |
           zmq_setsockopt(sock, ZMQ_IPV6, &ipv6, sizeof ipv6);
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
    if (endpoint_is_none(endpoint))
        return p;
    p->ctx = zmq_ctx_new();
    p->sock = p->ctx ? zmq_socket(p->ctx, ZMQ_PUB) : NULL;
    if (!p->sock || set_pub_options(p->sock, endpoint) != 0 || zmq_bind(p->sock, endpoint) != 0) {
        snprintf(err, errlen, "status_endpoint %s: %s", endpoint, zmq_strerror(zmq_errno()));
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
    if (p->sock)
        zmq_close(p->sock);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    msgq_destroy(&p->queue);
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
