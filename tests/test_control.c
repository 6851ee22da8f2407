/* control: request parsing and validation (bad JSON, unknown commands, size,
 * tokens), endpoint rules of the config (io/zsock's policy: test_zsock), and the REP server answering while
 * handing commands to control_poll, over ipc and over TCP on a free port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "io/zsock.h"
#include "tests/test_net.h"
#include "trainer/control.h"

/* Parses text; expects cmd, or (cmd NONE) an error message containing fragment. */
static void expect(const char *text, size_t len, const char *token, control_cmd cmd,
                   const char *fragment)
{
    char msg[256] = "";
    control_cmd got = control_parse_request(text, len, token, msg, sizeof msg);
    if (got != cmd || (fragment && !strstr(msg, fragment)))
        fprintf(stderr, "request %.60s: got %d \"%s\"\n", text, (int)got, msg);
    assert_int_equal(got, cmd);
    if (fragment) {
        assert_non_null(strstr(msg, fragment));
        assert_null(strchr(msg, '\n'));
    }
}
#define EXPECT(text, token, cmd, fragment) expect(text, strlen(text), token, cmd, fragment)

static void test_valid_requests(void **state)
{
    (void)state;
    EXPECT("{\"command\": \"status\"}", NULL, CONTROL_STATUS, NULL);
    EXPECT("{\"command\": \"checkpoint\"}", "", CONTROL_CHECKPOINT, NULL);
    EXPECT("  {\"command\":\"stop\"}\n", NULL, CONTROL_STOP, NULL);
    EXPECT("{\"command\": \"pause\", \"extra\": [1, 2]}", NULL, CONTROL_PAUSE, NULL);
    EXPECT("{\"command\": \"resume\", \"token\": \"ignored without one\"}", NULL, CONTROL_RESUME, NULL);
}

static void test_malformed_requests(void **state)
{
    (void)state;
    EXPECT("", NULL, CONTROL_NONE, "not a JSON object");
    EXPECT("stop", NULL, CONTROL_NONE, "not a JSON object");
    EXPECT("{\"command\": \"stop\"", NULL, CONTROL_NONE, "not a JSON object");
    EXPECT("[\"stop\"]", NULL, CONTROL_NONE, "not a JSON object");
    EXPECT("{\"command\": \"stop\"} {\"command\": \"stop\"}", NULL, CONTROL_NONE, "not a JSON object");
    EXPECT("{}", NULL, CONTROL_NONE, "needs a string \"command\"");
    EXPECT("{\"command\": 3}", NULL, CONTROL_NONE, "needs a string \"command\"");
    EXPECT("{\"command\": \"STOP\"}", NULL, CONTROL_NONE, "unknown command \"STOP\"");
    EXPECT("{\"command\": \"reboot\"}", NULL, CONTROL_NONE, "unknown command");
    EXPECT("{\"command\": \"a\\nb\\u0001\"}", NULL, CONTROL_NONE, "unknown command \"a?b?\"");
    /* an embedded NUL: the bytes after it are not ignored */
    expect("{\"command\": \"stop\"}\0garbage", 27, NULL, CONTROL_NONE, "not a JSON object");
    /* binary garbage and deep nesting */
    char junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 37 + 11);
    expect(junk, sizeof junk, NULL, CONTROL_NONE, "not a JSON object");
    char deep[20001];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    EXPECT(deep, NULL, CONTROL_NONE, "not a JSON object");
}

static void test_request_size_limit(void **state)
{
    (void)state;
    size_t n = CONTROL_MAX_REQUEST + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "{\"command\": \"stop\"}", 19);   /* valid JSON, padded past the limit */
    big[n] = '\0';
    expect(big, n, NULL, CONTROL_NONE, "too large");
    expect(big, n - 1, NULL, CONTROL_STOP, NULL);   /* exactly at the limit is fine */
    free(big);
}

static void test_tokens(void **state)
{
    (void)state;
    EXPECT("{\"command\": \"stop\"}", "s3cret", CONTROL_NONE, "missing token");
    EXPECT("{\"command\": \"stop\", \"token\": 42}", "s3cret", CONTROL_NONE, "missing token");
    EXPECT("{\"command\": \"stop\", \"token\": \"s3cre\"}", "s3cret", CONTROL_NONE, "wrong token");
    EXPECT("{\"command\": \"stop\", \"token\": \"s3cret!\"}", "s3cret", CONTROL_NONE, "wrong token");
    EXPECT("{\"command\": \"stop\", \"token\": \"\"}", "s3cret", CONTROL_NONE, "wrong token");
    EXPECT("{\"command\": \"stop\", \"token\": \"s3cret\"}", "s3cret", CONTROL_STOP, NULL);
    /* the token is checked before the command: no probing without it */
    EXPECT("{\"command\": \"nope\"}", "s3cret", CONTROL_NONE, "missing token");
}

/* config_finalize with the given --set assignments: 0 ok, else -1 and err. */
static int finalize_with(const char *a, const char *b, char *err, size_t errlen)
{
    run_config c;
    config_defaults(&c);
    if (a && config_set(&c, a, err, errlen) != 0)
        return -1;
    if (b && config_set(&c, b, err, errlen) != 0)
        return -1;
    return config_finalize(&c, err, errlen);
}

static void test_config_endpoint_rules(void **state)
{
    (void)state;
    char err[512];
    unsetenv("GPT_CONTROL_TOKEN");
    assert_int_equal(finalize_with(NULL, NULL, err, sizeof err), 0);
    assert_int_equal(finalize_with("control_endpoint=tcp://0.0.0.0:5556", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "control_token"));
    assert_int_equal(finalize_with("control_endpoint=tcp://0.0.0.0:5556", "control_token=abc", err,
                                   sizeof err), 0);
    setenv("GPT_CONTROL_TOKEN", "from-env", 1);
    assert_int_equal(finalize_with("control_endpoint=tcp://0.0.0.0:5556", NULL, err, sizeof err), 0);
    unsetenv("GPT_CONTROL_TOKEN");
    assert_int_equal(finalize_with("status_endpoint=tcp://0.0.0.0:5555", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "status_public"));
    assert_int_equal(finalize_with("status_endpoint=tcp://0.0.0.0:5555", "status_public=1", err,
                                   sizeof err), 0);
    assert_int_equal(finalize_with("status_public=2", NULL, err, sizeof err), -1);
    assert_int_equal(finalize_with("status_endpoint=tcp://127.0.0.1:5556", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "same"));
    assert_int_equal(finalize_with("control_endpoint=5556", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "control_endpoint"));
    assert_int_equal(finalize_with("status_endpoint=none", "control_endpoint=none", err, sizeof err), 0);
    /* a port picked at random is one no client could find */
    assert_int_equal(finalize_with("status_endpoint=tcp://127.0.0.1:*", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "config: status_endpoint tcp://127.0.0.1:*: give a port number"));
    assert_int_equal(finalize_with("control_endpoint=tcp://127.0.0.1:*", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "config: control_endpoint tcp://127.0.0.1:*: give a port number"));
    /* the token never reaches a dump of the config */
    run_config c;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "control_token=hush", err, sizeof err), 0);
    char *json = config_to_json(&c);
    assert_null(strstr(json, "hush"));
    free(json);
}

/* ---- the server, over an ipc socket ---- */

static char *latest(void *ctx)
{
    (void)ctx;
    return strdup("{\"type\":\"step\",\"step\":5,\"max_steps\":9,\"loss\":2.5}");
}

/* Sends raw bytes as one request (or two frames), returns the reply (static) or NULL. */
static const char *ask(void *ctx, const char *ep, const char *req, size_t len, bool two_frames)
{
    static char reply[4096];
    char err[256];
    void *s = zsock_open(ctx, ZSOCK_REQ, ep, NULL, err, sizeof err);
    assert_non_null(s);
    zsock_set(s, ZMQ_RCVTIMEO, 2000);
    if (two_frames)
        zmq_send(s, req, len, ZMQ_SNDMORE);
    zmq_send(s, req, len, 0);
    int n = zmq_recv(s, reply, sizeof reply - 1, 0);
    zmq_close(s);
    if (n < 0)
        return NULL;
    reply[n < (int)sizeof reply - 1 ? n : (int)sizeof reply - 1] = '\0';
    return reply;
}
#define ASK(req) ask(ctx, ep, req, strlen(req), false)

static void test_server(void **state)
{
    (void)state;
    char ep[128], err[256];
    snprintf(ep, sizeof ep, "ipc:///tmp/gpt-test-ctl-%d", (int)getpid());
    control_options o = {.endpoint = ep, .token = "tk", .checkpoint_available = false,
                         .latest_step = latest};
    control_server *c = control_open(&o, err, sizeof err);
    assert_non_null(c);
    void *ctx = zmq_ctx_new();
    const char *r = ASK("{\"command\":\"status\",\"token\":\"tk\"}");
    assert_non_null(r);
    assert_non_null(strstr(r, "\"ok\":true"));
    assert_non_null(strstr(r, "\"latest\":{\"type\":\"step\",\"step\":5"));
    assert_int_equal(control_poll(c), CONTROL_NONE);   /* status is answered, not queued */

    r = ASK("{\"command\":\"stop\"}");
    assert_non_null(strstr(r, "\"ok\":false"));
    assert_non_null(strstr(r, "missing token"));
    r = ASK("\x01\x02garbage");
    assert_non_null(strstr(r, "not a JSON object"));
    r = ask(ctx, ep, "{\"command\":\"stop\",\"token\":\"tk\"}", 31, true);
    assert_non_null(strstr(r, "single message frame"));
    assert_int_equal(control_poll(c), CONTROL_NONE);
    r = ASK("{\"command\":\"checkpoint\",\"token\":\"tk\"}");
    assert_non_null(strstr(r, "checkpoints are not available yet"));

    /* pause, resume, pause again: the loop sees the latest state */
    assert_non_null(strstr(ASK("{\"command\":\"pause\",\"token\":\"tk\"}"), "\"ok\":true"));
    assert_int_equal(control_poll(c), CONTROL_PAUSE);
    assert_non_null(strstr(ASK("{\"command\":\"status\",\"token\":\"tk\"}"), "\"state\":\"paused\""));
    assert_non_null(strstr(ASK("{\"command\":\"resume\",\"token\":\"tk\"}"), "\"ok\":true"));
    assert_non_null(strstr(ASK("{\"command\":\"resume\",\"token\":\"tk\"}"), "not paused"));
    assert_int_equal(control_wait(c, 1.0), CONTROL_RESUME);
    assert_int_equal(control_wait(c, 0.05), CONTROL_NONE);

    /* an oversized message is dropped by the transport; the server keeps serving */
    size_t n = ZSOCK_CONTROL_MAX_MSG + 1000;
    char *big = calloc(n, 1);
    memset(big, 'x', n);
    assert_null(ask(ctx, ep, big, n, false));
    free(big);
    big = calloc(CONTROL_MAX_REQUEST + 10, 1);
    memset(big, ' ', CONTROL_MAX_REQUEST + 10);
    r = ask(ctx, ep, big, CONTROL_MAX_REQUEST + 10, false);
    free(big);
    assert_non_null(r);
    assert_non_null(strstr(r, "too large"));

    assert_non_null(strstr(ASK("{\"command\":\"stop\",\"token\":\"tk\"}"), "stopping"));
    assert_non_null(strstr(ASK("{\"command\":\"stop\",\"token\":\"tk\"}"), "already stopping"));
    assert_int_equal(control_poll(c), CONTROL_STOP);
    assert_int_equal(control_poll(c), CONTROL_NONE);
    zmq_ctx_term(ctx);
    control_close(c);
    test_ipc_remove(ep);
}

/* control_open with o (void *) on endpoint, for test_open_on_free_port. */
static void *open_control_at(const char *endpoint, void *o, char *err, size_t errlen)
{
    control_options *opt = o;
    opt->endpoint = endpoint;
    return control_open(opt, err, errlen);
}

/* "none" is no server; over TCP the server binds a free loopback port and
 * answers there, and a second server on the same port is refused with a
 * one-line reason.  A port that cannot be had here is a SKIP line; a bind
 * that fails on a free port is a failure. */
static void test_server_none_and_busy(void **state)
{
    (void)state;
    char err[256];
    control_options o = {.endpoint = "none", .latest_step = latest};
    control_server *c = control_open(&o, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(control_poll(c), CONTROL_NONE);
    control_close(c);
    assert_int_equal(control_poll(NULL), CONTROL_NONE);
    char ep[64];
    control_server *a = test_open_on_free_port(open_control_at, &o, "control server over tcp",
                                               ep, sizeof ep);
    if (!a)
        return;   /* no port to be had here: test_open_on_free_port printed a SKIP line */
    void *ctx = zmq_ctx_new();
    const char *r = ASK("{\"command\":\"status\"}");
    assert_non_null(r);
    assert_non_null(strstr(r, "\"ok\":true"));
    zmq_ctx_term(ctx);
    assert_null(control_open(&o, err, sizeof err));   /* busy: a one-line reason */
    assert_non_null(strstr(err, "control_endpoint tcp://127.0.0.1:"));
    assert_null(strchr(err, '\n'));
    control_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_requests),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_request_size_limit),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_config_endpoint_rules),
        cmocka_unit_test(test_server),
        cmocka_unit_test(test_server_none_and_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
