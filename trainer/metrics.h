/* metrics: the run's status records in Prometheus' text exposition format,
 * served over HTTP/1.x (GET /metrics) on metrics_endpoint by a thread of rank 0.
 *
 * The training thread only copies numbers out of each status record into a
 * small table under a mutex (metrics_observe); the server thread renders a
 * copy of that table.  The server is bounded: at most METRICS_MAX_CONN open
 * connections (a new one closes the oldest), requests up to METRICS_MAX_REQUEST
 * bytes (larger ones get 431), and each connection METRICS_TIMEOUT_S seconds
 * from accept to its last byte; so floods, garbage and slow clients cost the
 * server fixed memory and the training loop nothing.
 *
 * Which record field becomes which metric is one table in metrics.c: a new
 * status field is one more row there. */
#ifndef TRAINER_METRICS_H
#define TRAINER_METRICS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "trainer/config.h"

enum { METRICS_MAX_CONN = 16, METRICS_MAX_REQUEST = 4096, METRICS_TIMEOUT_S = 5 };
enum { METRICS_MAX_VALUES = 48 };

/* The latest value of every metric (set[i]: seen in a record). */
typedef struct {
    double v[METRICS_MAX_VALUES];
    bool set[METRICS_MAX_VALUES];
    double start_time;        /* unix seconds the run started */
    double last_ckpt_time;    /* unix seconds of the last checkpoint record (0: none) */
    int restarts;
} metrics_values;

void metrics_values_init(metrics_values *mv, double start_time, int restarts);
/* Takes the fields of one status record (step, eval, checkpoint, ...). */
void metrics_values_update(metrics_values *mv, const cJSON *record);
/* The exposition text at wall time now into buf (NUL-terminated); returns the
 * length it needs, as snprintf (>= cap: truncated). */
size_t metrics_render(const metrics_values *mv, double now, char *buf, size_t cap);

/* config_finalize's check of metrics_endpoint: tcp://HOST:PORT (port 0: any
 * free port) or none; off loopback only with status_public=1. */
int metrics_check_config(const run_config *c, char *err, size_t errlen);

typedef struct metrics metrics;

/* Listens on endpoint and starts the server thread; *out NULL for "none".
 * where gets the URL served (e.g. http://127.0.0.1:40123/metrics: port 0 is
 * resolved).  -1 with a one-line reason in err if it cannot be bound. */
int metrics_open(metrics **out, const char *endpoint, int restarts, char *where,
                 size_t wherelen, char *err, size_t errlen);
/* Feeds one status record; m NULL: nothing. */
void metrics_observe(metrics *m, const cJSON *record);
void metrics_close(metrics *m);

#endif
