/* publisher: the drop-oldest queue (drops counted, newest kept, push never
 * blocks) and the PUB socket delivering records to a subscriber, over ipc
 * and over TCP on a free port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "io/zsock.h"
#include "kernels/clock.h"
#include "tests/test_net.h"
#include "trainer/publisher.h"

static void test_queue_drops_oldest_and_keeps_newest(void **state)
{
    (void)state;
    msg_queue q;
    assert_int_equal(msgq_init(&q, 4), 0);
    char buf[16];
    for (int i = 0; i < 10; i++) {
        snprintf(buf, sizeof buf, "m%d", i);
        assert_true(msgq_push(&q, buf));
    }
    assert_int_equal(msgq_count(&q), 4);
    assert_int_equal(msgq_dropped(&q), 6);
    for (int i = 6; i < 10; i++) {   /* the newest four, oldest first */
        char *s = msgq_pop(&q, 0);
        snprintf(buf, sizeof buf, "m%d", i);
        assert_non_null(s);
        assert_string_equal(s, buf);
        free(s);
    }
    assert_null(msgq_pop(&q, 0));
    msgq_push(&q, "left over");   /* freed by msgq_destroy */
    msgq_destroy(&q);
}

static void test_queue_push_never_blocks(void **state)
{
    (void)state;
    msg_queue q;
    assert_int_equal(msgq_init(&q, 8), 0);
    /* nobody pops: every push past 8 drops the oldest (a push that waited
     * for room would hang here, and the runner's timeout names the test) */
    for (int i = 0; i < 100000; i++)
        msgq_push(&q, "{\"type\":\"step\",\"step\":1}");
    assert_int_equal(msgq_dropped(&q), 100000 - 8);
    char *s;
    int n = 0;
    while ((s = msgq_pop(&q, 0)) != NULL) {
        free(s);
        n++;
    }
    assert_int_equal(n, 8);
    assert_null(msgq_pop(&q, 0.05));   /* an empty queue: NULL after the timeout */
    msgq_destroy(&q);
}

static void test_publisher_none_keeps_latest_step(void **state)
{
    (void)state;
    char err[256];
    publisher *p = publisher_open("none", err, sizeof err);
    assert_non_null(p);
    assert_null(publisher_latest_step(p));
    publisher_send(p, "{\"type\":\"step\",\"step\":1}", true);
    publisher_send(p, "{\"type\":\"eval\",\"step\":1}", false);
    char *s = publisher_latest_step(p);
    assert_string_equal(s, "{\"type\":\"step\",\"step\":1}");
    free(s);
    assert_int_equal(publisher_dropped(p), 0);
    publisher_close(p);
    assert_int_equal(publisher_dropped(NULL), 0);
}

static void test_publisher_delivers_to_subscriber(void **state)
{
    (void)state;
    char ep[128], err[256];
    snprintf(ep, sizeof ep, "ipc:///tmp/gpt-test-pub-%d", (int)getpid());
    publisher *p = publisher_open(ep, err, sizeof err);
    assert_non_null(p);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int timeout = 100, linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(sub, ep), 0);
    /* a subscriber joins late (its subscription takes a moment): keep sending */
    char buf[256] = "";
    int got = -1;
    for (int i = 0; i < 100 && got < 0; i++) {
        publisher_send(p, "{\"type\":\"step\",\"step\":7}", true);
        got = zmq_recv(sub, buf, sizeof buf - 1, 0);
    }
    assert_true(got > 0);
    buf[got] = '\0';
    assert_string_equal(buf, "{\"type\":\"step\",\"step\":7}");
    zmq_close(sub);
    zmq_ctx_term(ctx);
    /* subscriber gone: close still returns, its linger bounding the send of
     * what is queued (a close that waited for a reader would hang here) */
    for (int i = 0; i < 3000; i++)
        publisher_send(p, "{\"type\":\"event\",\"message\":\"x\"}", false);
    publisher_close(p);
    test_ipc_remove(ep);
}

/* Waits up to ~10 s for one record on sub, sending as it goes. */
static int receive_one(publisher *p, void *sub, char *buf, size_t n)
{
    int got = -1;
    for (int i = 0; i < 100 && got < 0; i++) {
        publisher_send(p, "{\"type\":\"step\",\"step\":7}", true);
        got = zmq_recv(sub, buf, n - 1, 0);
    }
    if (got >= 0)
        buf[got] = '\0';
    return got;
}

/* A flood of distinct subscriptions makes the socket bind afresh (what libzmq
 * kept of them goes), and subscribers old and new get records afterwards; a
 * subscription over the size bound is refused without harm. */
static void test_publisher_survives_subscription_flood(void **state)
{
    (void)state;
    char ep[128], err[256], buf[256];
    snprintf(ep, sizeof ep, "ipc:///tmp/gpt-test-pubflood-%d", (int)getpid());
    publisher *p = publisher_open(ep, err, sizeof err);
    assert_non_null(p);
    void *ctx = zmq_ctx_new();
    void *old = zsock_open(ctx, ZSOCK_SUB, ep, NULL, err, sizeof err);
    zsock_set(old, ZMQ_RCVTIMEO, 100);
    assert_true(receive_one(p, old, buf, sizeof buf) > 0);

    void *x = zmq_socket(ctx, ZMQ_XSUB);
    int linger = 2000, unbounded = 0;   /* XSUB drops what exceeds its SNDHWM */
    zmq_setsockopt(x, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(x, ZMQ_SNDHWM, &unbounded, sizeof unbounded);
    assert_int_equal(zmq_connect(x, ep), 0);
    char topic[12];
    for (int i = 0; i < 3 * PUBLISHER_MAX_SUBSCRIPTIONS; i++) {
        int n = snprintf(topic, sizeof topic, "%c%d", 1, i);
        zmq_send(x, topic, (size_t)n, 0);
    }
    for (int i = 0; i < 200 && publisher_rebinds(p) == 0; i++)
        usleep(50 * 1000);
    assert_true(publisher_rebinds(p) > 0);
    zmq_close(x);

    char huge[ZSOCK_STATUS_MAX_MSG + 100];   /* refused by the transport */
    memset(huge, 'x', sizeof huge);
    huge[0] = 1;
    void *y = zmq_socket(ctx, ZMQ_XSUB);
    zmq_setsockopt(y, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(y, ep);
    zmq_send(y, huge, sizeof huge, 0);
    zmq_close(y);

    void *fresh = zsock_open(ctx, ZSOCK_SUB, ep, NULL, err, sizeof err);
    zsock_set(fresh, ZMQ_RCVTIMEO, 100);
    assert_true(receive_one(p, fresh, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"type\":\"step\",\"step\":7}");
    assert_true(receive_one(p, old, buf, sizeof buf) > 0);   /* reconnected by itself */
    zmq_close(fresh);
    zmq_close(old);
    zmq_ctx_term(ctx);
    publisher_close(p);
    test_ipc_remove(ep);
}

static void *open_publisher_at(const char *endpoint, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return publisher_open(endpoint, err, errlen);
}

/* Over TCP on a free loopback port: a subscriber gets the records, and a
 * second publisher on the same port is refused with a one-line reason.  A
 * port that cannot be had here is a SKIP line; a bind that fails on a free
 * port is a failure. */
static void test_publisher_refuses_busy_endpoint(void **state)
{
    (void)state;
    char ep[128], err[256] = "", buf[256];
    publisher *a = test_open_on_free_port(open_publisher_at, NULL, "status publisher over tcp",
                                          ep, sizeof ep);
    if (!a)
        return;   /* no port to be had here: test_open_on_free_port printed a SKIP line */
    void *ctx = zmq_ctx_new();
    void *sub = zsock_open(ctx, ZSOCK_SUB, ep, NULL, err, sizeof err);
    assert_non_null(sub);
    zsock_set(sub, ZMQ_RCVTIMEO, 100);
    assert_true(receive_one(a, sub, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"type\":\"step\",\"step\":7}");
    zmq_close(sub);
    zmq_ctx_term(ctx);
    publisher *b = publisher_open(ep, err, sizeof err);
    assert_null(b);
    assert_non_null(strstr(err, "status_endpoint"));
    assert_null(strchr(err, '\n'));
    publisher_close(a);
}

/* Takes 127.0.0.1:port with a listening socket (another process taking the
 * port while the publisher binds afresh); the fd, or -1 while it is held. */
static int take_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0)
        return fd;
    close(fd);
    return -1;
}

/* Every zmq_bind made (the test is linked with --wrap=zmq_bind: Makefile). */
static atomic_int binds;
int __real_zmq_bind(void *s, const char *endpoint);
int __wrap_zmq_bind(void *s, const char *endpoint)
{
    atomic_fetch_add(&binds, 1);
    return __real_zmq_bind(s, endpoint);
}

/* A port lost to another process during a rebind loses records, but the
 * sender does not spend a bind's retries on each of them: publisher_close
 * binds at most to end the round of tries under way, with records still
 * queued. */
static void test_publisher_close_after_lost_port(void **state)
{
    (void)state;
    char ep[128];
    publisher *p = test_open_on_free_port(open_publisher_at, NULL, "status publisher over tcp",
                                          ep, sizeof ep);
    if (!p)
        return;
    const int port = atoi(strrchr(ep, ':') + 1);
    void *ctx = zmq_ctx_new();
    void *x = zmq_socket(ctx, ZMQ_XSUB);
    int linger = 0, unbounded = 0;
    zmq_setsockopt(x, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(x, ZMQ_SNDHWM, &unbounded, sizeof unbounded);
    assert_int_equal(zmq_connect(x, ep), 0);
    char topic[12];
    int taken = -1;
    for (int i = 0; i < 20 * PUBLISHER_MAX_SUBSCRIPTIONS && taken < 0; i++) {
        int n = snprintf(topic, sizeof topic, "%c%d", 1, i);
        zmq_send(x, topic, (size_t)n, 0);
        taken = take_port(port);
    }
    for (double t0 = clock_mono_s(); taken < 0 && clock_mono_s() - t0 < 5;)
        taken = take_port(port);
    zmq_close(x);
    zmq_ctx_term(ctx);
    if (taken < 0) {
        test_skip("publisher close after a lost port", "the publisher kept its port");
        publisher_close(p);
        return;
    }
    for (int i = 0; i < 20; i++)
        publisher_send(p, "{\"type\":\"step\",\"step\":7}", true);
    const int before = atomic_load(&binds);
    publisher_close(p);
    const int during = atomic_load(&binds) - before;
    close(taken);
    if (during > PUBLISHER_BIND_TRIES)
        fail_msg("publisher_close tried %d binds with its port taken, more than one round's %d",
                 during, PUBLISHER_BIND_TRIES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_drops_oldest_and_keeps_newest),
        cmocka_unit_test(test_queue_push_never_blocks),
        cmocka_unit_test(test_publisher_none_keeps_latest_step),
        cmocka_unit_test(test_publisher_delivers_to_subscriber),
        cmocka_unit_test(test_publisher_survives_subscription_flood),
        cmocka_unit_test(test_publisher_refuses_busy_endpoint),
        cmocka_unit_test(test_publisher_close_after_lost_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
