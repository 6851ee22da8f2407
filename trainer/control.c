#include "trainer/control.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "io/signals.h"
#include "io/zsock.h"
#include "kernels/clock.h"

/* ---- the config ---- */

const char *control_token(const run_config *c)
{
    if (c->control_token[0])
        return c->control_token;
    const char *env = getenv("GPT_CONTROL_TOKEN");
    return env && *env ? env : NULL;
}

/* -1 with a reason for tcp://HOST:*: ZeroMQ would bind a random port, which
 * the trainer reports nowhere (and a status rebind would move). */
static int fixed_port(const char *key, const char *ep, char *err, size_t errlen)
{
    size_t n = strlen(ep);
    if (strncmp(ep, "tcp://", 6) != 0 || n < 2 || strcmp(ep + n - 2, ":*") != 0)
        return 0;
    snprintf(err, errlen, "config: %s %s: give a port number ('*' would pick one no client "
             "could find)", key, ep);
    return -1;
}

int control_check_config(const run_config *c, char *err, size_t errlen)
{
    if (zsock_endpoint_check("config: status_endpoint", c->status_endpoint, err, errlen) != 0 ||
        zsock_endpoint_policy("config: control_endpoint", c->control_endpoint, control_token(c),
                              "a control_token (config key or GPT_CONTROL_TOKEN)", err, errlen) != 0 ||
        fixed_port("status_endpoint", c->status_endpoint, err, errlen) != 0 ||
        fixed_port("control_endpoint", c->control_endpoint, err, errlen) != 0)
        return -1;
    if (c->status_public != 0 && c->status_public != 1) {
        snprintf(err, errlen, "config: status_public must be 0 or 1");
        return -1;
    }
    if (!c->status_public && !zsock_endpoint_loopback(c->status_endpoint)) {
        snprintf(err, errlen, "config: status_endpoint %s is not a loopback address "
                 "(set status_public=1 to publish status on the network)", c->status_endpoint);
        return -1;
    }
    if (!zsock_endpoint_none(c->status_endpoint) &&
        strcmp(c->status_endpoint, c->control_endpoint) == 0) {
        snprintf(err, errlen, "config: status_endpoint and control_endpoint are the same (%s)",
                 c->status_endpoint);
        return -1;
    }
    return 0;
}

/* ---- requests ---- */

static const struct {
    const char *name;
    control_cmd cmd;
} commands[] = {
    {"status", CONTROL_STATUS}, {"checkpoint", CONTROL_CHECKPOINT}, {"stop", CONTROL_STOP},
    {"pause", CONTROL_PAUSE},   {"resume", CONTROL_RESUME},
};

/* Parses buf as exactly one JSON object (trailing bytes other than spaces refused). */
static cJSON *parse_object(const char *buf, size_t len)
{
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!o || !cJSON_IsObject(o) || !end) {
        cJSON_Delete(o);
        return NULL;
    }
    for (; end < buf + len; end++)
        if (!isspace((unsigned char)*end)) {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

static control_cmd check_request(const cJSON *o, const char *token, char *msg, size_t msglen)
{
    if (token && *token) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "token");
        if (!cJSON_IsString(t) || !zsock_token_equal(t->valuestring, strlen(t->valuestring), token)) {
            snprintf(msg, msglen, "%s token", cJSON_IsString(t) ? "wrong" : "missing");
            return CONTROL_NONE;
        }
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "command");
    if (!cJSON_IsString(c)) {
        snprintf(msg, msglen, "request needs a string \"command\"");
        return CONTROL_NONE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(c->valuestring, commands[i].name) == 0)
            return commands[i].cmd;
    snprintf(msg, msglen, "unknown command \"%.32s\" (status, checkpoint, stop, pause, resume)",
             c->valuestring);
    for (char *s = msg; *s; s++)   /* keep the message one printable line */
        if (!isprint((unsigned char)*s))
            *s = '?';
    return CONTROL_NONE;
}

control_cmd control_parse_request(const char *buf, size_t len, const char *token, char *msg,
                                  size_t msglen)
{
    if (len > CONTROL_MAX_REQUEST) {
        snprintf(msg, msglen, "request too large (%zu bytes, max %d)", len, CONTROL_MAX_REQUEST);
        return CONTROL_NONE;
    }
    cJSON *o = parse_object(buf, len);
    if (!o) {
        snprintf(msg, msglen, "request is not a JSON object");
        return CONTROL_NONE;
    }
    control_cmd cmd = check_request(o, token, msg, msglen);
    cJSON_Delete(o);
    return cmd;
}

/* ---- the server ---- */

struct control_server {
    control_options opt;
    char *token;
    void *ctx, *sock;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    /* under mu: what clients asked for, and what the loop has been told */
    bool quit, stop_pending, stop_reported, checkpoint_pending, paused, loop_paused;
};

/* The pending command under c->mu, or CONTROL_NONE. */
static control_cmd take_pending(control_server *c)
{
    if (c->stop_pending && !c->stop_reported) {
        c->stop_reported = true;
        return CONTROL_STOP;
    }
    if (c->checkpoint_pending) {
        c->checkpoint_pending = false;
        return CONTROL_CHECKPOINT;
    }
    if (c->paused != c->loop_paused) {
        c->loop_paused = c->paused;
        return c->paused ? CONTROL_PAUSE : CONTROL_RESUME;
    }
    return CONTROL_NONE;
}

control_cmd control_poll(control_server *c)
{
    if (!c)
        return CONTROL_NONE;
    pthread_mutex_lock(&c->mu);
    control_cmd cmd = take_pending(c);
    pthread_mutex_unlock(&c->mu);
    return cmd;
}

control_cmd control_wait(control_server *c, double timeout_s)
{
    if (!c) {
        struct timespec ts = {(time_t)timeout_s, (long)((timeout_s - (time_t)timeout_s) * 1e9)};
        nanosleep(&ts, NULL);
        return CONTROL_NONE;
    }
    struct timespec until = clock_deadline(timeout_s);
    pthread_mutex_lock(&c->mu);
    control_cmd cmd;
    while ((cmd = take_pending(c)) == CONTROL_NONE)
        if (pthread_cond_timedwait(&c->changed, &c->mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&c->mu);
    return cmd;
}

/* "status" reply: the run state and the latest step record. */
static void status_reply(control_server *c, cJSON *r, const char *state)
{
    char *latest = c->opt.latest_step ? c->opt.latest_step(c->opt.ctx) : NULL;
    cJSON *step = latest ? cJSON_Parse(latest) : NULL;
    free(latest);
    char msg[128];
    if (step)
        snprintf(msg, sizeof msg, "%s at step %d of %d", state,
                 cJSON_GetObjectItem(step, "step") ? cJSON_GetObjectItem(step, "step")->valueint : 0,
                 cJSON_GetObjectItem(step, "max_steps") ? cJSON_GetObjectItem(step, "max_steps")->valueint : 0);
    else
        snprintf(msg, sizeof msg, "%s, no step finished yet", state);
    cJSON_AddBoolToObject(r, "ok", 1);
    cJSON_AddStringToObject(r, "message", msg);
    cJSON_AddStringToObject(r, "state", state);
    if (step)
        cJSON_AddItemToObject(r, "latest", step);
}

/* Applies an accepted command to the pending state; fills the reply. */
static void apply_command(control_server *c, control_cmd cmd, cJSON *r)
{
    bool ok = true;
    const char *msg = "";
    pthread_mutex_lock(&c->mu);
    const char *state = c->stop_pending ? "stopping" : c->paused ? "paused" : "running";
    switch (cmd) {
    case CONTROL_STOP:
        msg = c->stop_pending ? "already stopping" : "stopping after the current step";
        c->stop_pending = true;
        break;
    case CONTROL_PAUSE:
        msg = c->paused ? "already paused" : "pausing after the current step";
        c->paused = true;
        break;
    case CONTROL_RESUME:
        ok = c->paused;
        msg = c->paused ? "resuming" : "not paused";
        c->paused = false;
        break;
    case CONTROL_CHECKPOINT:
        ok = c->opt.checkpoint_available;
        msg = !ok ? "checkpoints are not available yet"
              : c->loop_paused ? "checkpoint now (paused)" : "checkpoint after the current step";
        c->checkpoint_pending |= ok;
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->mu);
    if (cmd == CONTROL_STATUS) {
        status_reply(c, r, state);
        return;
    }
    cJSON_AddBoolToObject(r, "ok", ok);
    cJSON_AddStringToObject(r, "message", msg);
}

/* One request (all its frames already read) -> the reply text (malloc'd). */
static char *handle_request(control_server *c, const char *buf, size_t len, bool multipart)
{
    char msg[160];
    cJSON *r = cJSON_CreateObject();
    control_cmd cmd = multipart ? CONTROL_NONE : control_parse_request(buf, len, c->token, msg, sizeof msg);
    if (multipart)
        snprintf(msg, sizeof msg, "request must be a single message frame");
    if (cmd == CONTROL_NONE) {
        cJSON_AddBoolToObject(r, "ok", 0);
        cJSON_AddStringToObject(r, "message", msg);
    } else {
        apply_command(c, cmd, r);
    }
    char *text = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return text;
}

/* Receives one request and answers it.  The socket is a ROUTER speaking the
 * REP protocol, so that a hostile or broken peer cannot wedge a REP state
 * machine: zsock_recv_request drops what REP would, and every reply goes back
 * on the envelope of the request it answers. */
static void serve_one(control_server *c)
{
    zsock_request q;
    if (!zsock_recv_request(c->sock, ZSOCK_CONTROL, &q))
        return;
    size_t len;
    const char *body = zsock_request_body(&q, &len);
    char *reply = handle_request(c, body, len, q.multipart);
    zsock_reply(c->sock, &q, reply ? reply : "", reply ? strlen(reply) : 0);
    free(reply);
    zsock_request_close(&q);
}

static void *server_main(void *arg)
{
    control_server *c = arg;
    signals_block_all();
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool quit = c->quit;
        pthread_mutex_unlock(&c->mu);
        if (quit)
            return NULL;
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 200) > 0)
            serve_one(c);
    }
}

control_server *control_open(const control_options *o, char *err, size_t errlen)
{
    control_server *c = calloc(1, sizeof *c);
    bool want_token = o->token && *o->token;
    if (c && want_token)
        c->token = strdup(o->token);
    if (!c || (want_token && !c->token) || clock_cond_init(&c->changed) != 0) {
        /* never a server without the token it was given */
        snprintf(err, errlen, "out of memory creating the control server");
        if (c)
            free(c->token);
        free(c);
        return NULL;
    }
    c->opt = *o;
    pthread_mutex_init(&c->mu, NULL);
    if (zsock_endpoint_none(o->endpoint))
        return c;
    c->ctx = zmq_ctx_new();
    zsock_opts zo = {.token = o->token};
    c->sock = c->ctx ? zsock_open(c->ctx, ZSOCK_CONTROL, o->endpoint, &zo, err, errlen) : NULL;
    if (!c->sock) {   /* a ROUTER: see serve_one */
        if (!c->ctx)
            snprintf(err, errlen, "control_endpoint: cannot create a ZeroMQ context");
        control_close(c);
        return NULL;
    }
    if (pthread_create(&c->thread, NULL, server_main, c) != 0) {
        snprintf(err, errlen, "control_endpoint %s: cannot start the server thread", o->endpoint);
        control_close(c);
        return NULL;
    }
    c->running = true;
    return c;
}

void control_close(control_server *c)
{
    if (!c)
        return;
    if (c->running) {
        pthread_mutex_lock(&c->mu);
        c->quit = true;
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->changed);
    free(c->token);
    free(c);
}
