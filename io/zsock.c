#include "io/zsock.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* ---- the policy of each kind ---- */

static const struct {
    int type;
    bool bind;
    bool token;        /* a non-loopback endpoint needs one */
    bool rep;          /* a ROUTER speaking the REP protocol: requests carry a delimiter */
    int64_t max_msg;   /* -1: unbounded (inproc, where only this process writes) */
    int sndhwm, rcvhwm;
    int linger_ms;
    const char *what;  /* names the endpoint in messages */
} kinds[ZSOCK_KINDS] = {
    /* records queue for a slow subscriber up to sndhwm, then are dropped for
     * it; every queue, in and out, is memory a flood of peers can claim;
     * linger 0: a socket closed by a rebind goes at once (publisher_close
     * lingers for the last records) */
    [ZSOCK_STATUS] = {ZMQ_XPUB, true, false, false, ZSOCK_STATUS_MAX_MSG, 100, 16, 0, "status_endpoint"},
    [ZSOCK_CONTROL] = {ZMQ_ROUTER, true, true, true, ZSOCK_CONTROL_MAX_MSG, 16, 16, 0, "control_endpoint"},
    [ZSOCK_SERVE] = {ZMQ_ROUTER, true, true, true, ZSOCK_SERVE_MAX_MSG, 4, 4, 0, "--serve"},
    /* a rank keeps up to loader_depth (<= 1024) requests in flight */
    [ZSOCK_LOADER] = {ZMQ_ROUTER, true, true, false, ZSOCK_LOADER_MAX_MSG, 1024, 1024, 0, "loader"},
    [ZSOCK_LOADER_CLIENT] = {ZMQ_DEALER, false, false, false, ZSOCK_CLIENT_MAX_MSG, 1024, 1024, 0, "loader"},
    [ZSOCK_PIPE_PUSH] = {ZMQ_PUSH, true, false, false, -1, 1, 1, 0, "loader pipe"},
    [ZSOCK_PIPE_PULL] = {ZMQ_PULL, false, false, false, -1, 1, 1, 0, "loader pipe"},
    [ZSOCK_EVENTS] = {ZMQ_PAIR, false, false, false, -1, 64, 64, 0, "socket events"},
    [ZSOCK_SUB] = {ZMQ_SUB, false, false, false, ZSOCK_CLIENT_MAX_MSG, 1000, 1000, 0, "status"},
    [ZSOCK_REQ] = {ZMQ_REQ, false, false, false, ZSOCK_CLIENT_MAX_MSG, 16, 16, 0, "request"},
};

int zsock_set(void *sock, int option, int value)
{
    return zmq_setsockopt(sock, option, &value, sizeof value);
}

static int set_policy(void *s, zsock_kind k, const char *endpoint, const zsock_opts *o)
{
    int64_t max_msg = o && o->max_msg > 0 ? o->max_msg : kinds[k].max_msg;
    bool own = o && o->hwm > 0;
    int rc = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) |
             zsock_set(s, ZMQ_SNDHWM, own ? o->hwm : kinds[k].sndhwm) |
             zsock_set(s, ZMQ_RCVHWM, own ? o->hwm : kinds[k].rcvhwm) |
             zsock_set(s, ZMQ_LINGER, kinds[k].linger_ms) |
             zsock_set(s, ZMQ_IPV6, strncmp(endpoint, "tcp://[", 7) == 0);
    if (k == ZSOCK_STATUS)   /* subscriptions reach the publisher, which decides (publisher.c) */
        rc |= zsock_set(s, ZMQ_XPUB_MANUAL, 1);
    if (k == ZSOCK_SUB)
        rc |= zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    return rc;
}

void *zsock_open(void *ctx, zsock_kind k, const char *endpoint, const zsock_opts *o, char *err,
                 size_t errlen)
{
    const char *what = kinds[k].what;
    const char *token = o && o->token && *o->token ? o->token : NULL;
    if (strncmp(endpoint, "inproc://", 9) != 0) {
        int rc = kinds[k].bind && kinds[k].token
                     ? zsock_endpoint_policy(what, endpoint, token, "a token", err, errlen)
                     : zsock_endpoint_check(what, endpoint, err, errlen);
        if (rc != 0)
            return NULL;
        if (zsock_endpoint_none(endpoint)) {
            snprintf(err, errlen, "%s: no endpoint given", what);
            return NULL;
        }
    }
    /* ZeroMQ binds an address or an interface, not a host name: localhost,
     * loopback to the policy, is bound as 127.0.0.1 (its clients resolve it) */
    char addr[64];
    const char *bind_ep = endpoint;
    if (kinds[k].bind && strncmp(endpoint, "tcp://localhost:", 16) == 0 &&
        (size_t)snprintf(addr, sizeof addr, "tcp://127.0.0.1:%s", endpoint + 16) < sizeof addr)
        bind_ep = addr;
    void *s = zmq_socket(ctx, kinds[k].type);
    if (!s || set_policy(s, k, endpoint, o) != 0 ||
        (kinds[k].bind ? zmq_bind(s, bind_ep) : zmq_connect(s, endpoint)) != 0) {
        snprintf(err, errlen, "%s %s: %s", what, endpoint, zmq_strerror(zmq_errno()));
        if (s)
            zmq_close(s);
        return NULL;
    }
    return s;
}

/* ---- requests on a bound ROUTER ---- */

/* Reads every frame of one message (a message arrives whole) into r, the
 * first ZSOCK_MAX_FRAMES kept; the number of frames, or -1 if none could be
 * read or the message broke off. */
static int recv_whole(void *sock, zsock_request *r)
{
    int total = 0, more = 1;
    r->n = 0;
    while (more) {
        zmq_msg_t spare, *m = r->n < ZSOCK_MAX_FRAMES ? &r->frame[r->n] : &spare;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        total++;
        if (m == &spare)
            zmq_msg_close(m);
        else
            r->n++;
    }
    return more ? -1 : total;
}

/* Frames in the envelope: up to the first empty one after the routing id;
 * without one, the routing id alone, or -1 where the REP protocol needs it. */
static int envelope_frames(zsock_request *r, bool rep)
{
    for (int i = 1; i < r->n; i++)
        if (zmq_msg_size(&r->frame[i]) == 0)
            return i + 1;
    return rep ? -1 : 1;
}

bool zsock_recv_request(void *sock, zsock_kind k, zsock_request *r)
{
    int total = recv_whole(sock, r);
    r->envelope = total < 0 ? -1 : envelope_frames(r, kinds[k].rep);
    if (r->envelope < 0 || r->envelope >= r->n) {   /* no body to answer */
        zsock_request_close(r);
        return false;
    }
    r->multipart = total - r->envelope > 1;
    return true;
}

const void *zsock_request_body(zsock_request *r, size_t *len)
{
    *len = zmq_msg_size(&r->frame[r->envelope]);
    return zmq_msg_data(&r->frame[r->envelope]);
}

int zsock_reply(void *sock, zsock_request *r, const void *reply, size_t len)
{
    for (int i = 0; i < r->envelope; i++)
        if (zmq_send(sock, zmq_msg_data(&r->frame[i]), zmq_msg_size(&r->frame[i]),
                     ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return -1;
    return zmq_send(sock, reply, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

void zsock_request_close(zsock_request *r)
{
    for (int i = 0; i < r->n; i++)
        zmq_msg_close(&r->frame[i]);
    r->n = 0;
}

/* ---- endpoint policy ---- */

bool zsock_endpoint_none(const char *ep)
{
    return ep[0] == '\0' || strcmp(ep, "none") == 0;
}

/* The host part of tcp://HOST:PORT into host (brackets kept); false if malformed. */
static bool tcp_host(const char *ep, char *host, size_t n)
{
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *h = ep + 6, *colon = strrchr(h, ':');
    if (!colon || colon == h || (size_t)(colon - h) >= n || strchr(h, ';'))
        return false;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    const char *port = colon + 1;
    if (strcmp(port, "*") == 0)
        return true;
    char *end;
    long p = strtol(port, &end, 10);
    return *port && !*end && isdigit((unsigned char)*port) && p > 0 && p < 65536;
}

bool zsock_endpoint_loopback(const char *ep)
{
    if (zsock_endpoint_none(ep) || strncmp(ep, "ipc://", 6) == 0)
        return true;   /* no socket, or a local file */
    char host[256];
    if (!tcp_host(ep, host, sizeof host))
        return false;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    if (strncmp(host, "127.", 4) != 0)
        return false;
    for (const char *s = host; *s; s++)   /* digits and dots only: not a host name */
        if (!isdigit((unsigned char)*s) && *s != '.')
            return false;
    return true;
}

int zsock_endpoint_check(const char *key, const char *ep, char *err, size_t errlen)
{
    char host[256];
    if (zsock_endpoint_none(ep) || (strncmp(ep, "ipc://", 6) == 0 && ep[6]) ||
        tcp_host(ep, host, sizeof host))
        return 0;
    /* "none" (no socket) is a value of the config's endpoint keys; the programs'
     * options (--serve, --control, --endpoint) need a socket */
    bool config_key = strncmp(key, "config:", 7) == 0;
    snprintf(err, errlen, "%s \"%s\": expected tcp://HOST:PORT%s", key, ep,
             config_key ? ", ipc://PATH or none" : " or ipc://PATH");
    return -1;
}

int zsock_endpoint_policy(const char *key, const char *ep, const char *token,
                          const char *tokenname, char *err, size_t errlen)
{
    if (zsock_endpoint_check(key, ep, err, errlen) != 0)
        return -1;
    if (token && strlen(token) > ZSOCK_TOKEN_MAX) {
        snprintf(err, errlen, "%s: the token is longer than %d bytes", key, ZSOCK_TOKEN_MAX);
        return -1;
    }
    if (!zsock_endpoint_loopback(ep) && !(token && *token)) {
        snprintf(err, errlen, "%s %s is not a loopback address and needs %s", key, ep, tokenname);
        return -1;
    }
    return 0;
}

/* ---- tokens ---- */

const char *zsock_env_token(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

bool zsock_token_equal(const char *got, size_t len, const char *want)
{
    size_t lw = strlen(want);
    unsigned diff = (unsigned)(len != lw);
    for (size_t i = 0; i < lw; i++)
        diff |= (unsigned char)(i < len ? got[i] : 0) ^ (unsigned char)want[i];
    return diff == 0;
}
