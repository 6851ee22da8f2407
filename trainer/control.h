/* control: the control server (ZeroMQ REP protocol on control_endpoint, rank 0;
 * a ROUTER socket underneath, so that no peer can wedge a REP state machine).
 *
 * A background thread answers every request at once, even in the middle of a
 * step: one JSON object {"command": "status"|"checkpoint"|"stop"|"pause"|
 * "resume", "token": "..."} in, one JSON object {"ok": true|false, "message":
 * "...", ...} out.  Requests it accepts become pending commands that the
 * training loop fetches with control_poll() at a step boundary; nothing a
 * client sends (garbage, huge or multipart messages, floods) reaches the
 * training loop other than as one of those commands.
 *
 * Also here: the config's endpoint checks (io/zsock.h's policy: loopback
 * unless the config says otherwise) for the status publisher and this server. */
#ifndef TRAINER_CONTROL_H
#define TRAINER_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "trainer/config.h"

typedef enum {
    CONTROL_NONE,
    CONTROL_STATUS,       /* answered by the server thread; never polled */
    CONTROL_CHECKPOINT,
    CONTROL_STOP,
    CONTROL_PAUSE,
    CONTROL_RESUME,
} control_cmd;

/* Largest request that gets parsed; larger ones get an error reply, and the
 * transport (io/zsock.h) drops anything above ZSOCK_CONTROL_MAX_MSG unread. */
enum { CONTROL_MAX_REQUEST = 64 * 1024 };

/* ---- the config ---- */
/* config_finalize's checks of status_endpoint, status_public, control_endpoint
 * and control_token (a non-loopback control endpoint needs a token). */
int control_check_config(const run_config *c, char *err, size_t errlen);
/* The control token: the config's, else $GPT_CONTROL_TOKEN, else NULL. */
const char *control_token(const run_config *c);

/* ---- requests ---- */
/* Validates one request of len bytes (not NUL-terminated).  token: the one
 * every request must carry, NULL or "" for none.  Returns the command, or
 * CONTROL_NONE with a one-line reason in msg. */
control_cmd control_parse_request(const char *buf, size_t len, const char *token, char *msg,
                                  size_t msglen);

/* ---- the server ---- */
typedef struct control_server control_server;

typedef struct {
    const char *endpoint;        /* "none": no server (control_poll returns NONE) */
    const char *token;           /* NULL or "": requests need no token */
    bool checkpoint_available;   /* else "checkpoint" is refused */
    /* the latest step record (malloc'd JSON, or NULL), for "status" replies */
    char *(*latest_step)(void *ctx);
    void *ctx;
} control_options;

/* NULL with a one-line reason in err if the endpoint cannot be bound. */
control_server *control_open(const control_options *o, char *err, size_t errlen);
void control_close(control_server *c);
/* The next pending command, without waiting (CONTROL_NONE: nothing pending).
 * Order: stop, then checkpoint, then a change of the paused state. */
control_cmd control_poll(control_server *c);
/* As control_poll, waiting up to timeout_s for a command. */
control_cmd control_wait(control_server *c, double timeout_s);

#endif
