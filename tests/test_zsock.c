/* zsock: the endpoint policy (syntax, loopback or not, a token off loopback),
 * token comparison, that a socket gets its kind's bounds (an oversized
 * message never reaches the application; a refused endpoint is never bound),
 * and how a server reads requests and answers them whatever a peer sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "io/zsock.h"
#include "tests/test_net.h"

static void test_loopback_and_syntax(void **state)
{
    (void)state;
    const char *loop[] = {"tcp://127.0.0.1:5555", "tcp://127.0.0.2:1", "tcp://localhost:80",
                          "tcp://[::1]:5555", "ipc:///tmp/x", "none", ""};
    const char *open[] = {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://eth0:5555",
                          "tcp://127.evil.example:5555", "tcp://10.1.2.3:5555", "tcp://[::]:5555"};
    for (size_t i = 0; i < sizeof loop / sizeof *loop; i++)
        assert_true(zsock_endpoint_loopback(loop[i]));
    for (size_t i = 0; i < sizeof open / sizeof *open; i++)
        assert_false(zsock_endpoint_loopback(open[i]));
    char err[256];
    const char *bad[] = {"127.0.0.1:5555", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://:5555",
                         "tcp://127.0.0.1:99999", "tcp://127.0.0.1:55x", "udp://1.2.3.4:5", "ipc://"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(zsock_endpoint_check("k", bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "expected tcp://HOST:PORT"));
        /* the policy checks the syntax first, token or not */
        assert_int_equal(zsock_endpoint_policy("k", bad[i], "tk", "a token", err, sizeof err), -1);
    }
    assert_int_equal(zsock_endpoint_check("k", "tcp://*:5555", err, sizeof err), 0);
    /* none is offered to a config key, where it means no socket, not to an option */
    assert_int_equal(zsock_endpoint_check("config: status_endpoint", "x", err, sizeof err), -1);
    assert_non_null(strstr(err, "ipc://PATH or none"));
    assert_int_equal(zsock_endpoint_check("--serve", "x", err, sizeof err), -1);
    assert_null(strstr(err, "none"));
}

static void test_token_policy(void **state)
{
    (void)state;
    char err[256] = "";
    /* loopback: no token needed, one allowed */
    assert_int_equal(zsock_endpoint_policy("--x", "tcp://127.0.0.1:5", NULL, "a token", err,
                                           sizeof err), 0);
    assert_int_equal(zsock_endpoint_policy("--x", "ipc:///tmp/s", "", "a token", err, sizeof err), 0);
    assert_int_equal(zsock_endpoint_policy("--x", "tcp://[::1]:5", "tk", "a token", err,
                                           sizeof err), 0);
    /* off loopback: refused without one ("" is none), naming the key and the source */
    const char *open[] = {"tcp://0.0.0.0:5555", "tcp://*:1", "tcp://[::]:2", "tcp://host:3"};
    for (size_t i = 0; i < sizeof open / sizeof *open; i++) {
        assert_int_equal(zsock_endpoint_policy("--x", open[i], NULL, "$TOK", err, sizeof err), -1);
        assert_non_null(strstr(err, "--x"));
        assert_non_null(strstr(err, "not a loopback address and needs $TOK"));
        assert_null(strchr(err, '\n'));
        assert_int_equal(zsock_endpoint_policy("--x", open[i], "", "$TOK", err, sizeof err), -1);
        assert_int_equal(zsock_endpoint_policy("--x", open[i], "tk", "$TOK", err, sizeof err), 0);
    }
    char long_token[ZSOCK_TOKEN_MAX + 2];
    memset(long_token, 'a', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    assert_int_equal(zsock_endpoint_policy("--x", "tcp://*:1", long_token, "t", err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
    long_token[ZSOCK_TOKEN_MAX] = '\0';
    assert_int_equal(zsock_endpoint_policy("--x", "tcp://*:1", long_token, "t", err, sizeof err), 0);
}

static void test_token_equal(void **state)
{
    (void)state;
    assert_true(zsock_token_equal("s3cret", 6, "s3cret"));
    assert_false(zsock_token_equal("s3cret", 5, "s3cret"));        /* a prefix */
    assert_false(zsock_token_equal("s3cretX", 7, "s3cret"));       /* longer */
    assert_false(zsock_token_equal("s3creT", 6, "s3cret"));
    assert_false(zsock_token_equal("s3cr\0t", 6, "s3cr"));         /* NUL inside */
    assert_false(zsock_token_equal("", 0, "s3cret"));
    assert_true(zsock_token_equal("", 0, ""));
}

/* zsock_open refuses what the policy refuses, before binding anything. */
static void test_open_applies_policy(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    char err[256] = "";
    const zsock_kind needs_token[] = {ZSOCK_CONTROL, ZSOCK_SERVE, ZSOCK_LOADER};
    for (size_t i = 0; i < sizeof needs_token / sizeof *needs_token; i++) {
        assert_null(zsock_open(ctx, needs_token[i], "tcp://0.0.0.0:5555", NULL, err, sizeof err));
        assert_non_null(strstr(err, "needs a token"));
        zsock_opts empty = {.token = ""};
        assert_null(zsock_open(ctx, needs_token[i], "tcp://0.0.0.0:5555", &empty, err, sizeof err));
    }
    assert_null(zsock_open(ctx, ZSOCK_SERVE, "udp://1.2.3.4:5", NULL, err, sizeof err));
    assert_non_null(strstr(err, "expected tcp://HOST:PORT"));
    assert_null(zsock_open(ctx, ZSOCK_SERVE, "none", NULL, err, sizeof err));
    zsock_opts tk = {.token = "tk"};
    void *s = zsock_open(ctx, ZSOCK_SERVE, "tcp://0.0.0.0:*", &tk, err, sizeof err);
    assert_non_null(s);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* A message over the kind's bound disconnects its sender unread; the next
 * peer's message of the allowed size gets through. */
static void test_max_message_size(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    char ep[128], err[256];
    snprintf(ep, sizeof ep, "ipc:///tmp/gpt-test-zsock-%d", (int)getpid());
    void *srv = zsock_open(ctx, ZSOCK_LOADER, ep, NULL, err, sizeof err);
    assert_non_null(srv);
    zsock_set(srv, ZMQ_RCVTIMEO, 300);
    static char big[ZSOCK_LOADER_MAX_MSG + 1], ok[ZSOCK_LOADER_MAX_MSG];
    void *c1 = zsock_open(ctx, ZSOCK_REQ, ep, NULL, err, sizeof err);
    assert_non_null(c1);
    assert_int_equal(zmq_send(c1, big, sizeof big, 0), (int)sizeof big);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(zmq_msg_recv(&m, srv, 0), -1);   /* nothing arrives */
    void *c2 = zsock_open(ctx, ZSOCK_REQ, ep, NULL, err, sizeof err);
    memset(ok, 'k', sizeof ok);
    assert_int_equal(zmq_send(c2, ok, sizeof ok, 0), (int)sizeof ok);
    size_t body = 0;   /* routing id, empty delimiter, then the body */
    for (int i = 0; i < 3 && zmq_msg_recv(&m, srv, 0) >= 0; i++)
        body = zmq_msg_size(&m);
    assert_int_equal(body, sizeof ok);
    zmq_msg_close(&m);
    zmq_close(c1);
    zmq_close(c2);
    zmq_close(srv);
    zmq_ctx_term(ctx);
    test_ipc_remove(ep);
}

/* Sends the n frames of parts from a client; an empty string is an empty frame. */
static void send_parts(void *client, const char *const *parts, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(zmq_send(client, parts[i], strlen(parts[i]), i + 1 < n ? ZMQ_SNDMORE : 0),
                         (int)strlen(parts[i]));
}

/* Waits for a message on srv, then reads it as a request of kind k. */
static bool request_arrives(void *srv, zsock_kind k, zsock_request *q)
{
    zmq_pollitem_t item = {.socket = srv, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&item, 1, 2000), 1);
    return zsock_recv_request(srv, k, q);
}

/* The client's next message, one frame, as a string ("" if none came). */
static const char *reply_of(void *client)
{
    static char buf[256];
    int n = zmq_recv(client, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* A request and its reply on a REP-protocol ROUTER; what is dropped (no body,
 * no delimiter) and what is flagged multipart (a body of several frames,
 * however many). */
static void test_requests(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    char ep[128], err[256];
    snprintf(ep, sizeof ep, "ipc:///tmp/gpt-test-zsock-req-%d", (int)getpid());
    void *srv = zsock_open(ctx, ZSOCK_CONTROL, ep, NULL, err, sizeof err);
    assert_non_null(srv);
    zsock_request q;
    assert_false(zsock_recv_request(srv, ZSOCK_CONTROL, &q));   /* nothing waiting */

    void *req = zsock_open(ctx, ZSOCK_REQ, ep, NULL, err, sizeof err);
    zsock_set(req, ZMQ_RCVTIMEO, 2000);
    send_parts(req, (const char *[]){"ping"}, 1);
    assert_true(request_arrives(srv, ZSOCK_CONTROL, &q));
    size_t len;
    const char *body = zsock_request_body(&q, &len);
    assert_int_equal(q.envelope, 2);   /* routing id, delimiter */
    assert_int_equal(len, 4);
    assert_memory_equal(body, "ping", 4);
    assert_false(q.multipart);
    assert_int_equal(zsock_reply(srv, &q, "pong", 4), 0);
    zsock_request_close(&q);
    assert_string_equal(reply_of(req), "pong");

    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    zsock_set(dealer, ZMQ_RCVTIMEO, 2000);
    assert_int_equal(zmq_connect(dealer, ep), 0);
    send_parts(dealer, (const char *[]){"no delimiter"}, 1);
    assert_false(request_arrives(srv, ZSOCK_CONTROL, &q));
    send_parts(dealer, (const char *[]){""}, 1);   /* a delimiter and no body */
    assert_false(request_arrives(srv, ZSOCK_CONTROL, &q));
    send_parts(dealer, (const char *[]){"", "a", "b"}, 3);
    assert_true(request_arrives(srv, ZSOCK_CONTROL, &q));
    assert_true(q.multipart);
    zsock_request_close(&q);
    const char *many[ZSOCK_MAX_FRAMES + 8];
    for (size_t i = 0; i < sizeof many / sizeof *many; i++)
        many[i] = i == 0 ? "" : "part";
    send_parts(dealer, many, (int)(sizeof many / sizeof *many));
    assert_true(request_arrives(srv, ZSOCK_CONTROL, &q));
    assert_true(q.multipart);   /* answered like any malformed request */
    assert_int_equal(zsock_reply(srv, &q, "one part", 8), 0);
    zsock_request_close(&q);
    assert_string_equal(reply_of(dealer), "");   /* the delimiter, */
    assert_string_equal(reply_of(dealer), "one part");   /* then the reply */

    zmq_close(dealer);
    zmq_close(req);
    zmq_close(srv);
    zmq_ctx_term(ctx);
    test_ipc_remove(ep);
}

/* localhost, which the policy counts as loopback, is bound (ZeroMQ binds
 * addresses and interfaces, not host names) and reached by a client. */
static void test_localhost_binds(void **state)
{
    (void)state;
    const int port = test_tcp_bind_port(0);
    if (port == 0) {
        test_skip("zsock on localhost", "no free TCP port on 127.0.0.1 here");
        return;
    }
    void *ctx = zmq_ctx_new();
    char ep[64], err[256] = "";
    snprintf(ep, sizeof ep, "tcp://localhost:%d", port);
    void *srv = zsock_open(ctx, ZSOCK_CONTROL, ep, NULL, err, sizeof err);
    if (!srv)
        fail_msg("%s", err);
    void *req = zsock_open(ctx, ZSOCK_REQ, ep, NULL, err, sizeof err);
    assert_non_null(req);
    zsock_set(req, ZMQ_RCVTIMEO, 2000);
    send_parts(req, (const char *[]){"ping"}, 1);
    zsock_request q;
    assert_true(request_arrives(srv, ZSOCK_CONTROL, &q));
    assert_int_equal(zsock_reply(srv, &q, "pong", 4), 0);
    zsock_request_close(&q);
    assert_string_equal(reply_of(req), "pong");
    zmq_close(req);
    zmq_close(srv);
    zmq_ctx_term(ctx);
}

/* The loader's ROUTER: its DEALER clients send no delimiter, so the envelope
 * is the routing id alone; a REQ client's delimiter still goes back. */
static void test_requests_without_delimiter(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    char ep[128], err[256];
    snprintf(ep, sizeof ep, "ipc:///tmp/gpt-test-zsock-ldr-%d", (int)getpid());
    void *srv = zsock_open(ctx, ZSOCK_LOADER, ep, NULL, err, sizeof err);
    assert_non_null(srv);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    zsock_set(dealer, ZMQ_RCVTIMEO, 2000);
    assert_int_equal(zmq_connect(dealer, ep), 0);
    zsock_request q;
    send_parts(dealer, (const char *[]){"batch?"}, 1);
    assert_true(request_arrives(srv, ZSOCK_LOADER, &q));
    assert_int_equal(q.envelope, 1);
    assert_false(q.multipart);
    assert_int_equal(zsock_reply(srv, &q, "batch", 5), 0);
    zsock_request_close(&q);
    assert_string_equal(reply_of(dealer), "batch");
    send_parts(dealer, (const char *[]){"a", "b"}, 2);
    assert_true(request_arrives(srv, ZSOCK_LOADER, &q));
    assert_true(q.multipart);
    zsock_request_close(&q);

    void *req = zsock_open(ctx, ZSOCK_REQ, ep, NULL, err, sizeof err);
    zsock_set(req, ZMQ_RCVTIMEO, 2000);
    send_parts(req, (const char *[]){"batch?"}, 1);
    assert_true(request_arrives(srv, ZSOCK_LOADER, &q));
    assert_int_equal(q.envelope, 2);
    assert_int_equal(zsock_reply(srv, &q, "batch", 5), 0);
    zsock_request_close(&q);
    assert_string_equal(reply_of(req), "batch");
    zmq_close(req);
    zmq_close(dealer);
    zmq_close(srv);
    zmq_ctx_term(ctx);
    test_ipc_remove(ep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_and_syntax),
        cmocka_unit_test(test_token_policy),
        cmocka_unit_test(test_token_equal),
        cmocka_unit_test(test_open_applies_policy),
        cmocka_unit_test(test_max_message_size),
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_requests_without_delimiter),
        cmocka_unit_test(test_localhost_binds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
