/* publisher: the status socket (ZeroMQ PUB, one JSON object per message, no
 * topic frame).  The training thread only copies a record into a bounded
 * queue (drop-oldest when full, drops counted); a background thread drains it
 * with non-blocking sends, so a slow, stuck or absent subscriber never slows
 * training.  Every subscriber gets every record, whatever topic it subscribes
 * to (subscribe to ""), and no subscription traffic grows the trainer's memory
 * (publisher.c).  The publisher also keeps the latest step record, for the
 * control server's "status" reply. */
#ifndef TRAINER_PUBLISHER_H
#define TRAINER_PUBLISHER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A bounded FIFO of owned strings, safe between threads; push never blocks
 * (when full it frees the oldest entry and counts it as dropped). */
typedef struct {
    char **items;
    size_t cap, head, count;
    uint64_t dropped;
    pthread_mutex_t mu;
    pthread_cond_t nonempty;
} msg_queue;

int msgq_init(msg_queue *q, size_t cap);
void msgq_destroy(msg_queue *q);
/* Copies s; returns false if the copy could not be made (counted as dropped). */
bool msgq_push(msg_queue *q, const char *s);
/* The oldest entry (caller frees), waiting up to timeout_s; NULL if none. */
char *msgq_pop(msg_queue *q, double timeout_s);
uint64_t msgq_dropped(msg_queue *q);
size_t msgq_count(msg_queue *q);

/* Subscription messages the status socket reads before it is bound afresh
 * (see publisher.c): with io/zsock.h's bound on one subscription's size, what
 * ZeroMQ keeps of them stays around a megabyte. */
enum { PUBLISHER_QUEUE = 1024, PUBLISHER_MAX_SUBSCRIPTIONS = 1024, PUBLISHER_CLOSE_LINGER_MS = 500 };
/* The binds one (re)bind tries, 20 ms apart, while the port is still held. */
enum { PUBLISHER_BIND_TRIES = 100 };

typedef struct publisher publisher;

/* Binds endpoint ("none": no socket, only the latest record is kept).  NULL
 * with a one-line reason in err if the endpoint cannot be bound. */
publisher *publisher_open(const char *endpoint, char *err, size_t errlen);
/* Sends what is still queued (bounded by a short linger) and frees p. */
void publisher_close(publisher *p);
/* Queues one record for sending; is_step: also keep it as the latest step. */
void publisher_send(publisher *p, const char *json, bool is_step);
/* Times the socket was bound afresh after a flood of subscriptions. */
unsigned publisher_rebinds(publisher *p);
/* Records dropped so far because the queue was full. */
uint64_t publisher_dropped(publisher *p);
/* A copy of the latest step record (caller frees), or NULL before the first. */
char *publisher_latest_step(publisher *p);
/* The same, for a callback slot (control_options.latest_step): ctx is a publisher. */
char *publisher_latest_step_cb(void *ctx);

#endif
