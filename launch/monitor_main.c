/* build/monitor: watches a training run over its status socket, or sends one
 * control request.
 *   monitor [--connect ENDPOINT] [--json] [--once] [--timeout S]
 *   monitor --control ENDPOINT COMMAND [--token T] [--json] [--timeout S]
 *   monitor --plot FILE.svg [--log OUT_DIR/log.jsonl | --connect EP --timeout S] [--log-y]
 * ZeroMQ reconnects by itself, so a monitor outlives trainer restarts. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <zmq.h>

#include "io/fsutil.h"
#include "io/utf8.h"
#include "io/zsock.h"
#include "kernels/clock.h"
#include "launch/monitor_view.h"
#include "launch/plot.h"

typedef struct {
    const char *connect, *control, *command, *token;
    const char *plot, *log;   /* --plot FILE, and --log: read records from a file */
    bool json, once, log_y, connect_given;
    double timeout_s;   /* < 0: not given */
} options;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: monitor [--connect ENDPOINT] [--json] [--once] [--timeout S]\n"
            "       monitor --control ENDPOINT COMMAND [--token T] [--json] [--timeout S]\n"
            "       monitor --plot F.svg [--log FILE | --connect ENDPOINT [--timeout S]] [--log-y]\n"
            "  --connect EP   status socket of the run (default tcp://127.0.0.1:5555)\n"
            "  --json         print the raw JSON records (or reply) instead of the progress view\n"
            "  --once         print one record and exit (exit 1 if none within the timeout)\n"
            "  --timeout S    seconds to wait: for --once and --control (default 10); when\n"
            "                 watching, exit 1 after S seconds without a record (default: never)\n"
            "  --control EP   send COMMAND (status, checkpoint, stop, pause, resume) to the run's\n"
            "                 control socket at EP, which has no default (the trainer's\n"
            "                 control_endpoint is tcp://127.0.0.1:5556 unless its config says\n"
            "                 otherwise), print the reply, exit 0 if ok\n"
            "  --token T      control token (default: $GPT_CONTROL_TOKEN)\n"
            "  --plot F.svg   draw the training loss (and its moving average) and the eval\n"
            "                 val_loss against step into an SVG file, from --log FILE (a run's\n"
            "                 OUT_DIR/log.jsonl) or else from the live feed at --connect, collected\n"
            "                 until a \"done\" event, --timeout S or Ctrl-C\n"
            "  --log FILE     the run log --plot reads (OUT_DIR/log.jsonl) instead of the feed\n"
            "  --log-y        log-scale loss axis for --plot\n");
}

/* The combinations --plot does not take; true after printing why. */
static bool plot_args_bad(const options *o)
{
    const char *why = NULL;
    if ((o->log || o->log_y) && !o->plot)
        why = "--log and --log-y go with --plot FILE.svg";
    else if (o->plot && (o->control || o->once || o->json))
        why = "--plot does not go with --control, --once or --json";
    else if (o->plot && o->log && o->connect_given)
        why = "--plot reads either --log FILE or --connect ENDPOINT, not both";
    else if (o->plot && !*o->plot)
        why = "--plot needs a file name";
    else if (o->plot && strlen(o->plot) > 4 && !strcasecmp(o->plot + strlen(o->plot) - 4, ".png"))
        why = "--plot writes SVG only (convert it with e.g. rsvg-convert -o loss.png loss.svg)";
    if (why)
        fprintf(stderr, "monitor: %s\n", why);
    return why != NULL;
}

/* --timeout's value: 0, or 2 after printing why. */
static int parse_timeout(const char *v, options *o)
{
    char *end;
    o->timeout_s = strtod(v, &end);
    if (*end || end == v || !(o->timeout_s > 0 && o->timeout_s < 1e6)) {
        fprintf(stderr, "monitor: --timeout \"%s\" is not a positive number of seconds\n", v);
        return 2;
    }
    return 0;
}

/* The argument argv[*i] (and its value, *i then moves past it); 0, or the
 * exit code after printing why. */
static int parse_arg(int argc, char **argv, int *i, options *o)
{
    const char *a = argv[*i];
    bool takes_value = !strcmp(a, "--connect") || !strcmp(a, "--control") ||
                       !strcmp(a, "--timeout") || !strcmp(a, "--token") ||
                       !strcmp(a, "--plot") || !strcmp(a, "--log");
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        usage(stdout);
        exit(0);
    }
    if (takes_value && *i + 1 >= argc) {
        fprintf(stderr, "monitor: %s needs a value\n", a);
        return 2;
    }
    const char *v = takes_value ? argv[++*i] : NULL;
    if (!strcmp(a, "--connect")) {
        o->connect = v;
        o->connect_given = true;
    } else if (!strcmp(a, "--plot")) {
        o->plot = v;
    } else if (!strcmp(a, "--log")) {
        o->log = v;
    } else if (!strcmp(a, "--log-y")) {
        o->log_y = true;
    } else if (!strcmp(a, "--control")) {
        o->control = v;
    } else if (!strcmp(a, "--token")) {
        o->token = v;
    } else if (!strcmp(a, "--timeout")) {
        return parse_timeout(v, o);
    } else if (!strcmp(a, "--json")) {
        o->json = true;
    } else if (!strcmp(a, "--once")) {
        o->once = true;
    } else if (o->control && !o->command && a[0] != '-') {
        o->command = a;
    } else {
        fprintf(stderr, "monitor: unknown argument \"%s\" (try --help)\n", a);
        return 2;
    }
    return 0;
}

/* Parses argv into o; 0 on success, else the exit code. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.connect = "tcp://127.0.0.1:5555", .timeout_s = -1,
                   .token = getenv("GPT_CONTROL_TOKEN")};
    for (int i = 1; i < argc; i++) {
        int rc = parse_arg(argc, argv, &i, o);
        if (rc != 0)
            return rc;
    }
    if (plot_args_bad(o))
        return 2;
    if (o->control && !o->command) {
        if (!strstr(o->control, "://"))   /* `--control stop`: the command taken as EP */
            fprintf(stderr, "monitor: --control takes the run's control endpoint, then the "
                            "command: --control tcp://127.0.0.1:5556 %s\n", o->control);
        else
            fprintf(stderr, "monitor: --control needs a command (status, checkpoint, stop, "
                            "pause, resume)\n");
        return 2;
    }
    char err[256];
    const char *ep = o->control ? o->control : o->connect;
    if (zsock_endpoint_none(ep) ||
        zsock_endpoint_check(o->control ? "--control" : "--connect", ep, err, sizeof err) != 0) {
        if (zsock_endpoint_none(ep))
            fprintf(stderr, "monitor: %s none: give the run's endpoint (tcp://HOST:PORT or "
                            "ipc://PATH)\n", o->control ? "--control" : "--connect");
        else
            fprintf(stderr, "monitor: %s\n", err);
        return 2;
    }
    return 0;
}

/* A SUB (timeout 0) or REQ client with the project's socket policy
 * (io/zsock.h); NULL after printing why. */
static void *open_socket(void *ctx, zsock_kind kind, const char *endpoint, double timeout_s)
{
    char err[256];
    void *s = zsock_open(ctx, kind, endpoint, NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "monitor: %s\n", err);
        return NULL;
    }
    int ms = (int)(timeout_s * 1000);
    if (kind == ZSOCK_REQ) {
        zsock_set(s, ZMQ_RCVTIMEO, ms);
        zsock_set(s, ZMQ_SNDTIMEO, ms);
    }
    return s;
}

/* Next message as a NUL-terminated string (malloc'd), waiting up to wait_s;
 * NULL on timeout or interruption. */
static char *receive(void *sock, double wait_s)
{
    double until = clock_wall_s() + wait_s;
    while (!interrupted) {
        double left = until - clock_wall_s();
        if (left <= 0)
            return NULL;
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, left < 0.25 ? (long)(left * 1000) + 1 : 250) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0) {
            char *s = malloc(zmq_msg_size(&m) + 1);
            if (s) {
                memcpy(s, zmq_msg_data(&m), zmq_msg_size(&m));
                s[zmq_msg_size(&m)] = '\0';
            }
            zmq_msg_close(&m);
            return s;
        }
        zmq_msg_close(&m);
    }
    return NULL;
}

/* A record or reply as one JSON line: printed again, not as it came, since
 * the sender's text may hold newlines between its tokens, control characters
 * or bytes after the object, which cJSON_Parse leaves unread.  cJSON escapes
 * the C0 controls in strings but not the C1 ones (U+0080..U+009F, which
 * terminals act on: U+009B is CSI), so those are written as \u escapes. */
static void print_json(const cJSON *r)
{
    char *line = cJSON_PrintUnformatted(r);
    if (!line)
        return;
    for (const unsigned char *p = (const unsigned char *)line; *p; p++) {
        if (utf8_is_c1(p))
            printf("\\u%04x", *++p);
        else
            putchar(*p);
    }
    putchar('\n');
    free(line);
}

/* The width of the terminal on stdout, 0 if unknown. */
static int terminal_cols(void)
{
    struct winsize ws;
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

static int watch(void *ctx, const options *o)
{
    void *sock = open_socket(ctx, ZSOCK_SUB, o->connect, 0);
    if (!sock)
        return 1;
    monitor_view v = {.tty = isatty(STDOUT_FILENO)};
    double timeout = o->timeout_s > 0 ? o->timeout_s : o->once ? 10 : 1e9;
    /* the wait is for a record: messages that are not one (not JSON, not an
     * object) neither end it nor start it again */
    double until = clock_mono_s() + timeout;
    int rc = 0;
    bool shown = false;
    while (!interrupted) {
        char *msg = receive(sock, until - clock_mono_s());
        if (!msg) {
            if (!interrupted) {
                if (v.tty && v.line_open)
                    printf("\n");
                v.line_open = false;
                fprintf(stderr, "monitor: no status record from %s within %g s\n", o->connect, timeout);
                rc = 1;
            }
            break;
        }
        cJSON *r = cJSON_Parse(msg);
        bool record = cJSON_IsObject(r);
        if (record) {
            if (o->json) {
                print_json(r);
            } else {
                v.cols = v.tty ? terminal_cols() : 0;   /* asked each time: it may be resized */
                monitor_show_record(&v, r, clock_wall_s());
            }
            fflush(stdout);
            until = clock_mono_s() + timeout;
            shown = true;
        }
        cJSON_Delete(r);
        free(msg);
        if (o->once && record)
            break;
    }
    if (v.tty && v.line_open)
        printf("\n");
    if (o->once && !shown && rc == 0) {   /* Ctrl-C before the record --once waits for */
        fprintf(stderr, "monitor: interrupted before a status record from %s\n", o->connect);
        rc = 1;
    }
    zmq_close(sock);
    return rc;
}

/* Sends one control request, prints the reply; 0 if it says ok. */
static int control(void *ctx, const options *o)
{
    double timeout = o->timeout_s > 0 ? o->timeout_s : 10;
    void *sock = open_socket(ctx, ZSOCK_REQ, o->control, timeout);
    if (!sock)
        return 1;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "command", o->command);
    if (o->token && *o->token)
        cJSON_AddStringToObject(req, "token", o->token);
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    char *reply = NULL;
    if (text && zmq_send(sock, text, strlen(text), 0) >= 0)
        reply = receive(sock, timeout);
    free(text);
    zmq_close(sock);
    if (!reply) {
        if (interrupted)
            fprintf(stderr, "monitor: interrupted before a reply from %s\n", o->control);
        else
            fprintf(stderr, "monitor: no reply from %s within %g s\n", o->control, timeout);
        return 1;
    }
    cJSON *r = cJSON_Parse(reply);
    bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"));
    if (!r) {   /* not JSON: shown as text, one printable line */
        fs_printable(reply);
        printf("%s\n", reply);
    } else if (o->json) {
        print_json(r);
    } else {
        char *message = strdup(monitor_str(r, "message"));
        if (message)
            fs_printable(message);
        printf("%s: %s\n", ok ? "ok" : "refused", message ? message : "");
        free(message);
        const cJSON *latest = cJSON_GetObjectItemCaseSensitive(r, "latest");
        if (cJSON_IsObject(latest)) {
            monitor_view v = {0};
            monitor_show_record(&v, latest, clock_wall_s());
        }
    }
    cJSON_Delete(r);
    free(reply);
    return ok ? 0 : 1;
}

/* Collects records from the live feed until a "done" event, the --timeout
 * (counted from the start, not between records) or Ctrl-C. */
static int collect_feed(void *ctx, const options *o, plot_data *d)
{
    void *sock = open_socket(ctx, ZSOCK_SUB, o->connect, 0);
    if (!sock)
        return 1;
    double until = clock_wall_s() + (o->timeout_s > 0 ? o->timeout_s : 1e9);
    bool done = false;
    while (!done && !interrupted && clock_wall_s() < until) {
        char *msg = receive(sock, until - clock_wall_s());
        cJSON *r = msg ? cJSON_Parse(msg) : NULL;
        if (cJSON_IsObject(r)) {
            plot_add(d, r);
            done = !strcmp(monitor_str(r, "type"), "event") && !strcmp(monitor_str(r, "message"), "done");
        }
        cJSON_Delete(r);
        free(msg);
    }
    zmq_close(sock);
    return 0;
}

/* --plot: records from --log or the live feed -> an SVG file. */
static int plot(void *ctx, const options *o)
{
    plot_data d = {0};
    char err[512];
    int rc = 0, malformed = 0;
    const char *source = o->log ? o->log : o->connect;
    if (o->log) {
        rc = plot_read_log(&d, o->log, &malformed, err, sizeof err) != 0;
        if (rc)
            fprintf(stderr, "monitor: %s\n", err);
        else if (malformed > 0)
            fprintf(stderr, "monitor: %s: skipped %d malformed line%s\n", o->log, malformed,
                    malformed == 1 ? "" : "s");
    } else {
        rc = collect_feed(ctx, o, &d);
    }
    if (!rc && d.loss.n == 0 && d.val.n == 0) {
        fprintf(stderr, "monitor: %s: no step or eval records%s\n", source, o->log ? "" : " arrived");
        rc = 1;
    }
    if (!rc && plot_write_svg(&d, o->plot, o->log_y, err, sizeof err) != 0) {
        fprintf(stderr, "monitor: %s\n", err);
        rc = 1;
    }
    if (!rc)
        printf("wrote %s: %d step records, %d eval records\n", o->plot, d.loss.n, d.val.n);
    plot_free(&d);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    struct sigaction sa = {.sa_handler = on_signal};   /* no SA_RESTART: wake zmq_poll */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "monitor: cannot create a ZeroMQ context\n");
        return 1;
    }
    rc = o.plot ? plot(ctx, &o) : o.control ? control(ctx, &o) : watch(ctx, &o);
    zmq_ctx_term(ctx);
    return rc;
}
