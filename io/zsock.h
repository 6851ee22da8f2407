/* zsock: every ZeroMQ socket the project creates, with its policy set in one
 * place.  A socket kind fixes the socket type, whether it binds or connects,
 * the largest message it accepts (ZMQ_MAXMSGSIZE: a larger one disconnects
 * the peer before it is read), its queue bounds (high-water marks, per peer)
 * and its linger.  A socket that binds a non-loopback endpoint needs a token
 * where its kind says so (control, serve, loader): the endpoint policy is
 * checked here, before anything is bound.  Requests then carry the token, and
 * the server compares it with zsock_token_equal.
 *
 * Endpoints: tcp://HOST:PORT (HOST a name, an IPv4 address, [v6] or *),
 * ipc://PATH, or "none"/"" for no socket.  Loopback: 127.x.y.z, localhost,
 * [::1], ipc:// (a local file).
 *
 * The servers (control, serve, loader) read and answer requests with
 * zsock_recv_request and zsock_reply, so that whatever a peer sends is
 * handled the same way on every socket. */
#ifndef IO_ZSOCK_H
#define IO_ZSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef enum {
    ZSOCK_STATUS,         /* XPUB (manual), binds: status records out, subscriptions in */
    ZSOCK_CONTROL,        /* ROUTER, binds: the trainer's control requests */
    ZSOCK_SERVE,          /* ROUTER, binds: infer --serve requests */
    ZSOCK_LOADER,         /* ROUTER, binds: build/loader's batch requests */
    ZSOCK_LOADER_CLIENT,  /* DEALER, connects: a rank asking build/loader */
    ZSOCK_PIPE_PUSH,      /* PUSH, binds inproc: the loader thread's batches */
    ZSOCK_PIPE_PULL,      /* PULL, connects inproc */
    ZSOCK_EVENTS,         /* PAIR, connects inproc: a zmq_socket_monitor's events */
    ZSOCK_SUB,            /* SUB to everything, connects: monitor, tests */
    ZSOCK_REQ,            /* REQ, connects: monitor --control, tests' clients */
    ZSOCK_KINDS
} zsock_kind;

/* The largest message each bound kind reads (a subscription is its topic + 1
 * byte, and subscribers take everything: "" is all they need). */
enum {
    ZSOCK_TOKEN_MAX = 127,                 /* bytes of a token */
    ZSOCK_STATUS_MAX_MSG = 32,         /* also bounds the handshake: READY is ~26 */
    ZSOCK_CONTROL_MAX_MSG = 128 * 1024,
    ZSOCK_SERVE_MAX_MSG = 1 << 20,
    ZSOCK_LOADER_MAX_MSG = 256,            /* a batch request and its token */
    ZSOCK_CLIENT_MAX_MSG = 1 << 20,        /* replies and records a client reads */
};

typedef struct {
    int hwm;           /* > 0: messages queued per peer each way, instead of the kind's */
    int64_t max_msg;   /* > 0: the largest message read, instead of the kind's */
    const char *token; /* a binding kind that needs one off loopback: NULL or "" = none */
} zsock_opts;

/* Creates a socket of kind k in ctx with its policy, checks the endpoint
 * policy and binds or connects it.  o may be NULL.  NULL with a one-line
 * reason in err (naming endpoint). */
void *zsock_open(void *ctx, zsock_kind k, const char *endpoint, const zsock_opts *o, char *err,
                 size_t errlen);
/* Sets an int option (timeouts): 0, or -1 with errno. */
int zsock_set(void *sock, int option, int value);

/* ---- requests on a bound ROUTER (control, serve, loader) ---- */

enum { ZSOCK_MAX_FRAMES = 16 };   /* frames of a message kept: its envelope and the body's first */

/* One message read whole: its envelope (the peer's routing id, then up to and
 * including the first empty frame: the REP protocol's delimiter), sent back
 * ahead of the reply, and its body.  Whatever a peer sends:
 *  - dropped, as a REP socket would, is a message without a body and, on the
 *    kinds that speak the REP protocol (control, serve), one without the
 *    delimiter.  The loader's DEALER clients send none: there the envelope
 *    is the routing id alone;
 *  - a body of several frames (any number: those past ZSOCK_MAX_FRAMES are
 *    read and discarded) is flagged multipart, and the server answers it as
 *    a malformed request;
 *  - a frame over the kind's size bound never arrives (zsock_open). */
typedef struct {
    zmq_msg_t frame[ZSOCK_MAX_FRAMES];
    int n;            /* frames kept */
    int envelope;     /* frame[0 .. envelope) is the envelope, frame[envelope] the body */
    bool multipart;   /* the body has more than one frame */
} zsock_request;

/* Reads one message from sock (a ROUTER of kind k) without waiting.  True: a
 * request to answer, to release with zsock_request_close; false: none was
 * waiting, or it was dropped (above). */
bool zsock_recv_request(void *sock, zsock_kind k, zsock_request *r);
/* The body's (first) frame and its size. */
const void *zsock_request_body(zsock_request *r, size_t *len);
/* Sends r's envelope, then reply, without waiting: a server never blocks on
 * a peer (one that is gone or does not read loses the reply).  0, or -1. */
int zsock_reply(void *sock, zsock_request *r, const void *reply, size_t len);
void zsock_request_close(zsock_request *r);

/* ---- endpoint policy ---- */
bool zsock_endpoint_none(const char *ep);      /* "none" or "": no socket */
bool zsock_endpoint_loopback(const char *ep);  /* 127.x, localhost, [::1], ipc://, none */
/* 0 if ep is tcp://HOST:PORT, ipc://PATH or none; -1 with a reason naming key
 * (a key "config: ..." is told that none is allowed; an option is not). */
int zsock_endpoint_check(const char *key, const char *ep, char *err, size_t errlen);
/* zsock_endpoint_check, and a non-loopback endpoint needs a token (NULL or ""
 * is none; longer than ZSOCK_TOKEN_MAX is refused).  tokenname says where a
 * token comes from, for the message. */
int zsock_endpoint_policy(const char *key, const char *ep, const char *token,
                          const char *tokenname, char *err, size_t errlen);

/* ---- tokens ---- */
/* $name if set and not empty, else NULL. */
const char *zsock_env_token(const char *name);
/* Whether the len bytes at got are the token want, in time independent of
 * where they differ (a token is a secret). */
bool zsock_token_equal(const char *got, size_t len, const char *want);

#endif
