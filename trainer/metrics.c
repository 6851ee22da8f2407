#include "trainer/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io/zsock.h"
#include "kernels/clock.h"

/* ---- the table: record field -> metric ---- */

typedef struct {
    const char *name, *type, *help;
    const char *record, *field;   /* the record type and JSON field the value comes from */
    double scale;                 /* to Prometheus' base units (seconds, bytes) */
} metric_def;

static const metric_def defs[] = {
    {"gpt_step", "gauge", "Optimizer steps done", "step", "step", 1},
    {"gpt_max_steps", "gauge", "Steps the run is configured for", "step", "max_steps", 1},
    {"gpt_loss", "gauge", "Training loss of the latest step", "step", "loss", 1},
    {"gpt_val_loss", "gauge", "Validation loss of the latest evaluation", "eval", "val_loss", 1},
    {"gpt_learning_rate", "gauge", "Learning rate of the latest step", "step", "lr", 1},
    {"gpt_grad_norm", "gauge", "Gradient norm of the latest step", "step", "grad_norm", 1},
    {"gpt_tokens_per_second", "gauge", "Training throughput of the latest step", "step",
     "tokens_per_s", 1},
    {"gpt_step_seconds", "gauge", "Wall time of the latest step", "step", "step_ms", 1e-3},
    {"gpt_comm_exposed_seconds", "gauge",
     "Communication the latest step waited for, not hidden (of the rank that waited least)",
     "step", "comm_exposed_ms", 1e-3},
    {"gpt_comm_total_seconds", "gauge",
     "Communication in flight during the latest step, hidden or not", "step", "comm_total_ms",
     1e-3},
    {"gpt_comm_cpu_seconds", "gauge",
     "CPU time the latest step's exchange took on its progress thread (largest over ranks)",
     "step", "comm_cpu_ms", 1e-3},
    {"gpt_comm_wait_seconds", "gauge",
     "Time the latest step spent in communication calls (largest over ranks, with their skew)",
     "step", "comm_ms", 1e-3},
    {"gpt_loader_wait_seconds", "gauge", "Time the latest step waited for its batch (largest over ranks)",
     "step", "loader_wait_ms", 1e-3},
    {"gpt_rss_bytes", "gauge", "Resident memory (largest over ranks)", "step", "rss_mb", 1e6},
    {"gpt_peak_rss_bytes", "gauge", "Peak resident memory (largest over ranks)", "step",
     "peak_rss_mb", 1e6},
    {"gpt_mfu_ratio", "gauge", "Model FLOPs utilisation of the latest step", "step", "mfu", 1},
    {"gpt_ranks", "gauge", "MPI ranks training", "step", "ranks", 1},
    {"gpt_eta_seconds", "gauge", "Estimated time to the last step", "step", "eta_s", 1},
    {"gpt_loss_scale", "gauge", "fp16 dynamic loss scale", "step", "loss_scale", 1},
    {"gpt_fp16_overflows_total", "counter", "fp16 steps skipped for non-finite gradients", "step",
     "overflows", 1},
    {"gpt_skipped_steps_total", "counter", "Steps skipped for a non-finite loss or gradient",
     "step", "skipped_steps", 1},
    {"gpt_status_dropped_total", "counter", "Status records dropped by a full publisher queue",
     "step", "status_dropped", 1},
    {"gpt_last_checkpoint_step", "gauge", "Step of the latest checkpoint written by this run",
     "checkpoint", "step", 1},
};
enum { NDEFS = sizeof defs / sizeof defs[0] };
_Static_assert((int)NDEFS <= (int)METRICS_MAX_VALUES, "raise METRICS_MAX_VALUES");

void metrics_values_init(metrics_values *mv, double start_time, int restarts)
{
    memset(mv, 0, sizeof *mv);
    mv->start_time = start_time;
    mv->restarts = restarts;
}

void metrics_values_update(metrics_values *mv, const cJSON *record)
{
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(record, "type"));
    if (!type)
        return;
    for (int i = 0; i < NDEFS; i++) {
        if (strcmp(defs[i].record, type) != 0)
            continue;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(record, defs[i].field);
        if (cJSON_IsNumber(f)) {
            mv->v[i] = f->valuedouble * defs[i].scale;
            mv->set[i] = true;
        }
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(record, "time");
    if (strcmp(type, "checkpoint") == 0 && cJSON_IsNumber(t))
        mv->last_ckpt_time = t->valuedouble;
}

/* Appends to buf as snprintf does, tracking the length needed. */
typedef struct {
    char *buf;
    size_t cap, len;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->len < t->cap ? t->cap - t->len : 0;
    int n = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

static void add_metric(text *t, const char *name, const char *type, const char *help, double v)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
    if (isnan(v))
        add(t, "NaN\n");
    else if (isinf(v))
        add(t, "%sInf\n", v > 0 ? "+" : "-");
    else
        add(t, "%.17g\n", v);
}

size_t metrics_render(const metrics_values *mv, double now, char *buf, size_t cap)
{
    text t = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < NDEFS; i++)
        if (mv->set[i])
            add_metric(&t, defs[i].name, defs[i].type, defs[i].help, mv->v[i]);
    add_metric(&t, "gpt_restarts_total", "counter",
               "Times the job was started again after a failure or preemption", mv->restarts);
    /* before the first checkpoint: since the start, so an alert on it fires for a run
     * that never saves */
    double since = mv->last_ckpt_time > 0 ? mv->last_ckpt_time : mv->start_time;
    add_metric(&t, "gpt_seconds_since_checkpoint", "gauge",
               "Seconds since the latest checkpoint of this run (or since its start)",
               now > since ? now - since : 0);
    add_metric(&t, "gpt_start_timestamp_seconds", "gauge", "Unix time the run started",
               mv->start_time);
    return t.len;
}

/* ---- endpoints ---- */

/* tcp://HOST:PORT into host (brackets removed; "*" -> "") and port; false if malformed. */
static bool parse_endpoint(const char *ep, char *host, size_t hostlen, char *port, size_t portlen)
{
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *h = ep + 6, *colon = strrchr(h, ':');
    if (!colon || colon == h)
        return false;
    size_t n = (size_t)(colon - h);
    if (h[0] == '[') {   /* [v6-address] */
        if (n < 3 || h[n - 1] != ']')
            return false;
        h++;
        n -= 2;
    }
    const char *p = colon + 1;
    if (n >= hostlen || !*p || strlen(p) >= portlen || strspn(p, "0123456789") != strlen(p) ||
        atol(p) > 65535)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strcmp(host, "*") == 0)
        host[0] = '\0';
    strcpy(port, p);
    return true;
}

int metrics_check_config(const run_config *c, char *err, size_t errlen)
{
    const char *ep = c->metrics_endpoint;
    char host[256], port[8], probe[300];
    if (zsock_endpoint_none(ep))
        return 0;
    if (!parse_endpoint(ep, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "config: metrics_endpoint \"%s\": expected tcp://HOST:PORT or none",
                 ep);
        return -1;
    }
    /* the host part decides, as for status_endpoint (port 0 is allowed here) */
    snprintf(probe, sizeof probe, "tcp://%s%s%s:1", strchr(host, ':') ? "[" : "",
             host[0] ? host : "*", strchr(host, ':') ? "]" : "");
    if (!c->status_public && !zsock_endpoint_loopback(probe)) {
        snprintf(err, errlen, "config: metrics_endpoint %s is not a loopback address "
                 "(set status_public=1 to serve metrics on the network)", ep);
        return -1;
    }
    return 0;
}

/* A listening, non-blocking socket on host:port; -1 with err set. */
static int listen_on(const char *endpoint, char *where, size_t wherelen, char *err, size_t errlen)
{
    char host[256], port[8];
    if (!parse_endpoint(endpoint, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "metrics_endpoint \"%s\": expected tcp://HOST:PORT", endpoint);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "metrics_endpoint %s: %s", endpoint, gai_strerror(rc));
        return -1;
    }
    int fd = -1, why = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            why = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            why = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "metrics_endpoint %s: %s", endpoint, strerror(why));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char h[NI_MAXHOST], p[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p, sizeof p,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(where, wherelen, "http://%s%s%s:%s/metrics", ss.ss_family == AF_INET6 ? "[" : "",
                 h, ss.ss_family == AF_INET6 ? "]" : "", p);
    else
        snprintf(where, wherelen, "%s", endpoint);
    return fd;
}

/* ---- the server ---- */

typedef struct {
    int fd;              /* -1: free slot */
    double deadline;     /* monotonic seconds: closed then, whatever its state */
    size_t in_len;
    char in[METRICS_MAX_REQUEST];
    char *out;           /* the response, once the request is complete */
    size_t out_len, out_off;
    bool draining;       /* replied: input is read and dropped until the client closes */
} conn;

struct metrics {
    pthread_mutex_t mu;
    metrics_values values;   /* under mu */
    int listen_fd, wake[2];
    pthread_t thread;
    conn conns[METRICS_MAX_CONN];
};

static void conn_close(conn *c)
{
    close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
}

/* The response to a complete request (or to one too large, when too_large). */
static char *respond(metrics *m, const conn *c, bool too_large, size_t *len)
{
    const char *status = "200 OK", *extra = "";
    char *body = NULL;
    size_t body_len = 0;
    bool head = strncmp(c->in, "HEAD ", 5) == 0;
    const char *target = strchr(c->in, ' ');
    const char *eol = strpbrk(c->in, "\r\n");
    if (too_large) {
        status = "431 Request Header Fields Too Large";
    } else if (!target || !eol || eol - target < 10 || strncmp(eol - 9, " HTTP/1.", 8) != 0) {
        status = "400 Bad Request";
    } else if (!head && strncmp(c->in, "GET ", 4) != 0) {
        status = "405 Method Not Allowed";
        extra = "Allow: GET, HEAD\r\n";
    } else if (strncmp(target + 1, "/metrics", 8) != 0 ||
               (target[9] != ' ' && target[9] != '?')) {
        status = "404 Not Found";
    } else {
        metrics_values snap;
        pthread_mutex_lock(&m->mu);
        snap = m->values;
        pthread_mutex_unlock(&m->mu);
        double now = clock_wall_s();
        body_len = metrics_render(&snap, now, NULL, 0);
        body = malloc(body_len + 1);
        if (!body)
            status = "503 Service Unavailable", body_len = 0;
        else
            metrics_render(&snap, now, body, body_len + 1);
    }
    if (!body) {   /* errors: the status line is the body */
        body = strdup(status);
        body_len = body ? strlen(body) : 0;
    }
    char header[256];
    int hn = snprintf(header, sizeof header,
                      "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                      "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                      status, body_len, extra);
    size_t send_body = head ? 0 : body_len;
    char *out = malloc((size_t)hn + send_body);
    if (out) {
        memcpy(out, header, (size_t)hn);
        if (send_body)
            memcpy(out + hn, body, send_body);
        *len = (size_t)hn + send_body;
    }
    free(body);
    return out;
}

/* Reads what is there; once the headers are complete (or too large), prepares the reply. */
static void conn_read(metrics *m, conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0)
        return;
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    /* memmem: a NUL in the request must not hide its end (it is answered 400) */
    bool complete = memmem(c->in, c->in_len, "\r\n\r\n", 4) ||
                    memmem(c->in, c->in_len, "\n\n", 2);
    bool too_large = !complete && c->in_len == sizeof c->in - 1;
    if (complete || too_large) {
        c->out = respond(m, c, too_large, &c->out_len);
        if (!c->out)
            conn_close(c);
    }
}

static void conn_write(conn *c)
{
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0)
        c->out_off += (size_t)n;
    if (n < 0) {
        conn_close(c);
    } else if (c->out_off == c->out_len) {
        /* closed with unread input, the socket would be reset, and a reset drops the
         * part of the reply the client has not acknowledged yet */
        shutdown(c->fd, SHUT_WR);
        free(c->out);
        c->out = NULL;
        c->draining = true;
    }
}

/* Drops the client's input until it closes (or the connection's deadline). */
static void conn_drain(conn *c)
{
    ssize_t n = recv(c->fd, c->in, sizeof c->in, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        conn_close(c);
}

/* Accepts what is pending; with every slot taken, the oldest connection is closed
 * for the new one: clients that connect and stall cannot keep out a scrape, which
 * sends its request at once.  False when the process is out of file descriptors
 * (the connection stays queued). */
static bool accept_all(metrics *m)
{
    for (int k = 0; k < 256; k++) {
        int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM;
        conn *slot = &m->conns[0];   /* a free one, else the oldest */
        for (int i = 1; i < METRICS_MAX_CONN && slot->fd >= 0; i++)
            if (m->conns[i].fd < 0 || m->conns[i].deadline < slot->deadline)
                slot = &m->conns[i];
        if (slot->fd >= 0)
            conn_close(slot);
        *slot = (conn){.fd = fd, .deadline = clock_mono_s() + METRICS_TIMEOUT_S};
    }
    return true;
}

static void *serve(void *arg)
{
    metrics *m = arg;
    /* below the training threads: under a flood of requests they get the CPU */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    struct pollfd pf[2 + METRICS_MAX_CONN];
    /* out of file descriptors, the listening socket stays readable: it is left out
     * of poll for a second at a time instead of spun on */
    double accept_at = 0;
    bool failing = false;   /* poll fails: said on stderr when it starts */
    for (;;) {
        int n = 0, slot[METRICS_MAX_CONN];
        double now = clock_mono_s(), next = now + 1;
        pf[n++] = (struct pollfd){.fd = m->wake[0], .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = now < accept_at ? -1 : m->listen_fd, .events = POLLIN};
        for (int i = 0; i < METRICS_MAX_CONN; i++) {
            conn *c = &m->conns[i];
            if (c->fd < 0)
                continue;
            if (c->deadline <= now) {
                conn_close(c);
                continue;
            }
            next = c->deadline < next ? c->deadline : next;
            slot[n - 2] = i;
            pf[n++] = (struct pollfd){.fd = c->fd, .events = c->out ? POLLOUT : POLLIN};
        }
        int r = poll(pf, (nfds_t)n, (int)((next - now) * 1e3) + 1);
        if (r < 0 && errno != EINTR) {
            /* EINVAL: RLIMIT_NOFILE lowered below the descriptors polled.  Tried again
             * each second, waiting on the wake pipe alone (so metrics_close still ends it) */
            if (!failing)
                fprintf(stderr, "warning: metrics: poll failed (%s): the endpoint does not "
                        "answer until it works again\n", strerror(errno));
            failing = true;
            if (poll(pf, 1, 1000) > 0)
                break;
            continue;
        }
        failing = false;
        if (r <= 0)
            continue;
        if (pf[0].revents)
            break;
        for (int k = 2; k < n; k++) {
            conn *c = &m->conns[slot[k - 2]];
            if (!pf[k].revents)
                continue;
            if (c->out)
                conn_write(c);
            else if (c->draining)
                conn_drain(c);
            else
                conn_read(m, c);
        }
        if ((pf[1].revents & POLLIN) && !accept_all(m))
            accept_at = clock_mono_s() + 1;
    }
    return NULL;
}

int metrics_open(metrics **out, const char *endpoint, int restarts, char *where, size_t wherelen,
                 char *err, size_t errlen)
{
    *out = NULL;
    if (zsock_endpoint_none(endpoint))
        return 0;
    metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "metrics: out of memory");
        return -1;
    }
    metrics_values_init(&m->values, clock_wall_s(), restarts);
    for (int i = 0; i < METRICS_MAX_CONN; i++)
        m->conns[i].fd = -1;
    m->listen_fd = listen_on(endpoint, where, wherelen, err, errlen);
    if (m->listen_fd < 0) {
        free(m);
        return -1;
    }
    if (pipe2(m->wake, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "metrics: pipe: %s", strerror(errno));
        close(m->listen_fd);
        free(m);
        return -1;
    }
    pthread_mutex_init(&m->mu, NULL);
    int rc = pthread_create(&m->thread, NULL, serve, m);
    if (rc != 0) {
        snprintf(err, errlen, "metrics: cannot start its thread: %s", strerror(rc));
        pthread_mutex_destroy(&m->mu);
        close(m->wake[0]);
        close(m->wake[1]);
        close(m->listen_fd);
        free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void metrics_observe(metrics *m, const cJSON *record)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    metrics_values_update(&m->values, record);
    pthread_mutex_unlock(&m->mu);
}

void metrics_close(metrics *m)
{
    if (!m)
        return;
    char b = 0;
    if (write(m->wake[1], &b, 1) != 1)
        pthread_cancel(m->thread);   /* cannot happen with an empty pipe; never hang */
    pthread_join(m->thread, NULL);
    for (int i = 0; i < METRICS_MAX_CONN; i++)
        if (m->conns[i].fd >= 0)
            conn_close(&m->conns[i]);
    close(m->listen_fd);
    close(m->wake[0]);
    close(m->wake[1]);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
