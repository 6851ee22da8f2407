/* metrics: the Prometheus text rendering of status records (every sample
 * after its # HELP and # TYPE lines, values in base units, unset metrics left
 * out), the endpoint checks, and the HTTP server's answers and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "trainer/metrics.h"

/* The sample value of name in text (a line "name value"); NAN if absent. */
static double sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    return NAN;
}

static void feed(metrics_values *mv, const char *json)
{
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    metrics_values_update(mv, o);
    cJSON_Delete(o);
}

static void test_render_step_eval_checkpoint(void **state)
{
    (void)state;
    metrics_values mv;
    metrics_values_init(&mv, 1000.0, 2);
    char buf[8192];
    metrics_render(&mv, 1010.0, buf, sizeof buf);
    assert_true(isnan(sample(buf, "gpt_loss")));   /* nothing seen yet: left out */
    assert_true(sample(buf, "gpt_restarts_total") == 2);
    assert_true(sample(buf, "gpt_seconds_since_checkpoint") == 10);   /* since the start */

    feed(&mv, "{\"type\":\"step\",\"step\":7,\"max_steps\":9,\"loss\":3.25,\"step_ms\":250,"
              "\"comm_ms\":12.5,\"comm_exposed_ms\":2.5,\"comm_total_ms\":40,\"comm_cpu_ms\":7.5,\"loader_wait_ms\":0.5,\"peak_rss_mb\":123.5,\"tokens_per_s\":4096,"
              "\"skipped_steps\":1,\"time\":1005}");
    feed(&mv, "{\"type\":\"eval\",\"step\":7,\"val_loss\":3.5,\"time\":1006}");
    feed(&mv, "{\"type\":\"checkpoint\",\"step\":7,\"path\":\"x\",\"time\":1007}");
    feed(&mv, "{\"type\":\"event\",\"step\":0,\"message\":\"done\",\"loss\":99}");   /* ignored */
    size_t need = metrics_render(&mv, 1010.0, buf, sizeof buf);
    assert_int_equal(need, strlen(buf));
    assert_true(sample(buf, "gpt_step") == 7);
    assert_true(sample(buf, "gpt_loss") == 3.25);
    assert_true(sample(buf, "gpt_val_loss") == 3.5);
    assert_true(sample(buf, "gpt_step_seconds") == 0.25);
    assert_true(sample(buf, "gpt_comm_exposed_seconds") == 0.0025);
    assert_true(sample(buf, "gpt_comm_total_seconds") == 0.04);
    assert_true(sample(buf, "gpt_comm_wait_seconds") == 0.0125);
    assert_true(sample(buf, "gpt_comm_cpu_seconds") == 0.0075);
    assert_true(sample(buf, "gpt_loader_wait_seconds") == 0.0005);
    assert_true(sample(buf, "gpt_peak_rss_bytes") == 123.5e6);
    assert_true(sample(buf, "gpt_tokens_per_second") == 4096);
    assert_true(sample(buf, "gpt_skipped_steps_total") == 1);
    assert_true(sample(buf, "gpt_last_checkpoint_step") == 7);
    assert_true(sample(buf, "gpt_seconds_since_checkpoint") == 3);
    assert_true(isnan(sample(buf, "gpt_loss_scale")));   /* not fp16: no such field */
    feed(&mv, "{\"type\":\"step\",\"step\":8,\"loss_scale\":65536}");
    metrics_render(&mv, 1010.0, buf, sizeof buf);
    assert_true(sample(buf, "gpt_loss_scale") == 65536);

    /* every sample line follows "# HELP name" and "# TYPE name gauge|counter" */
    int samples = 0;
    char help[128] = "", type[128] = "";
    for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
        char name[128];
        if (strncmp(l, "# HELP ", 7) == 0) {
            sscanf(l + 7, "%127s", help);
        } else if (strncmp(l, "# TYPE ", 7) == 0) {
            char kind[32];
            assert_int_equal(sscanf(l + 7, "%127s %31s", type, kind), 2);
            assert_true(strcmp(kind, "gauge") == 0 || strcmp(kind, "counter") == 0);
            if (strcmp(kind, "counter") == 0)   /* Prometheus' naming rule */
                assert_non_null(strstr(type, "_total"));
        } else {
            assert_int_equal(sscanf(l, "%127s", name), 1);
            assert_string_equal(name, help);
            assert_string_equal(name, type);
            assert_int_equal(strncmp(name, "gpt_", 4), 0);
            samples++;
        }
    }
    assert_true(samples >= 15);
}

static void test_render_truncates_like_snprintf(void **state)
{
    (void)state;
    metrics_values mv;
    metrics_values_init(&mv, 0, 0);
    feed(&mv, "{\"type\":\"step\",\"step\":1,\"loss\":1e300,\"grad_norm\":1e999}");
    char full[4096], small[64];
    size_t need = metrics_render(&mv, 1.0, full, sizeof full);
    assert_int_equal(metrics_render(&mv, 1.0, small, sizeof small), need);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, full, sizeof small - 1);
    assert_non_null(strstr(full, "gpt_loss 1.0000000000000001e+300\n"));
    assert_non_null(strstr(full, "gpt_grad_norm +Inf\n"));
}

static void test_endpoint_rules(void **state)
{
    (void)state;
    run_config c;
    char err[256];
    config_defaults(&c);
    const char *ok[] = {"none", "tcp://127.0.0.1:9100", "tcp://localhost:0", "tcp://[::1]:9100"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        strcpy(c.metrics_endpoint, ok[i]);
        assert_int_equal(metrics_check_config(&c, err, sizeof err), 0);
    }
    const char *bad[] = {"http://127.0.0.1:9100", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
                         "tcp://127.0.0.1:x", "ipc:///tmp/m"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(c.metrics_endpoint, bad[i]);
        assert_int_equal(metrics_check_config(&c, err, sizeof err), -1);
        assert_non_null(strstr(err, "metrics_endpoint"));
    }
    const char *public[] = {"tcp://*:9100", "tcp://0.0.0.0:9100", "tcp://10.1.2.3:9100"};
    for (size_t i = 0; i < sizeof public / sizeof *public; i++) {
        strcpy(c.metrics_endpoint, public[i]);
        c.status_public = 0;
        assert_int_equal(metrics_check_config(&c, err, sizeof err), -1);
        assert_non_null(strstr(err, "status_public"));
        c.status_public = 1;
        assert_int_equal(metrics_check_config(&c, err, sizeof err), 0);
    }
}

/* A server on a free loopback port (*port) keeping ring records. */
static metrics *open_local(int ring, int *port)
{
    metrics *m;
    char where[128], err[256];
    assert_int_equal(metrics_open(&m, "tcp://127.0.0.1:0", ring, where, sizeof where, err, sizeof err), 0);
    assert_int_equal(sscanf(where, "http://127.0.0.1:%d/metrics", port), 1);
    return m;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends req (len bytes), returns the whole reply (until the server closes). */
static char *exchange(int port, const char *req, size_t len)
{
    int fd = connect_to(port);
    if (len)
        assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (n < cap - 1 && (r = recv(fd, buf + n, cap - 1 - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return buf;
}

static void test_server_answers_and_bounds(void **state)
{
    (void)state;
    int port;
    metrics *m = open_local(3, &port);
    cJSON *o = cJSON_Parse("{\"type\":\"step\",\"step\":5,\"loss\":2.5}");
    metrics_observe(m, o);
    cJSON_Delete(o);

    char *r = exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35);
    assert_int_equal(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_true(sample(strstr(r, "\r\n\r\n") + 4, "gpt_loss") == 2.5);
    assert_true(sample(strstr(r, "\r\n\r\n") + 4, "gpt_restarts_total") == 3);
    free(r);
    r = exchange(port, "GET /other HTTP/1.0\r\n\r\n", 23);
    assert_int_equal(strncmp(r, "HTTP/1.1 404", 12), 0);
    free(r);
    r = exchange(port, "\x01\x02garbage\n\n", 11);
    assert_int_equal(strncmp(r, "HTTP/1.1 400", 12), 0);
    free(r);
    r = exchange(port, "GET /metrics\0 HTTP/1.1\r\n\r\n", 26);   /* a NUL: answered too */
    assert_int_equal(strncmp(r, "HTTP/1.1 400", 12), 0);
    free(r);
    char *big = malloc(3 * METRICS_MAX_REQUEST);
    memset(big, 'A', 3 * METRICS_MAX_REQUEST);
    int fd = connect_to(port);
    send(fd, big, 3 * METRICS_MAX_REQUEST, MSG_NOSIGNAL);   /* may be cut short by the reply */
    char head[32] = "";
    assert_true(recv(fd, head, sizeof head - 1, 0) > 12);
    assert_int_equal(strncmp(head, "HTTP/1.1 431", 12), 0);
    close(fd);
    free(big);

    /* every slot held by a silent client (slowloris): a scrape is still answered,
     * the oldest holder closed to make room */
    int held[METRICS_MAX_CONN];
    for (int i = 0; i < METRICS_MAX_CONN; i++)
        held[i] = connect_to(port);
    usleep(200000);
    r = exchange(port, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    assert_int_equal(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0);
    free(r);
    char c;
    assert_int_equal(recv(held[0], &c, 1, 0), 0);
    for (int i = 0; i < METRICS_MAX_CONN; i++)
        close(held[i]);
    metrics_close(m);
}

/* A client whose input the server did not read (a body after the request, or a
 * request too large) still gets the whole reply: closing with unread input resets
 * the connection, and a reset drops what the client has not yet acknowledged.  A
 * small receive window keeps most of the reply unacknowledged until it is read. */
static void test_reply_survives_unread_input(void **state)
{
    (void)state;
    int port;
    metrics *m = open_local(0, &port);
    /* every step metric set: a reply larger than the window */
    cJSON *o = cJSON_Parse("{\"type\":\"step\",\"step\":5,\"max_steps\":9,\"loss\":2.5,"
                           "\"lr\":1e-3,\"grad_norm\":1,\"tokens_per_s\":1,\"step_ms\":1,"
                           "\"comm_exposed_ms\":1,\"comm_total_ms\":1,\"comm_ms\":1,"
                           "\"loader_wait_ms\":1,\"rss_mb\":1,\"peak_rss_mb\":1,\"mfu\":1,"
                           "\"ranks\":1,\"eta_s\":1,\"loss_scale\":1,\"overflows\":1,"
                           "\"skipped_steps\":1,\"status_dropped\":1}");
    metrics_observe(m, o);
    cJSON_Delete(o);
    size_t len = 3 * METRICS_MAX_REQUEST;
    char *req = malloc(len);
    memset(req, 'A', len);
    const char *get = "GET /metrics HTTP/1.1\r\nContent-Length: 12000\r\n\r\n";
    for (int big = 0; big < 2; big++) {
        if (!big)
            memcpy(req, get, strlen(get));   /* a request and a body it never reads */
        else
            memset(req, 'A', strlen(get));   /* no blank line within 4 KiB: 431 */
        int fd = socket(AF_INET, SOCK_STREAM, 0), small = 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
        usleep(200000);   /* the server answers and closes before anything is read */
        char buf[1 << 16];
        size_t n = 0;
        ssize_t r;
        while (n < sizeof buf - 1 && (r = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0)
            n += (size_t)r;
        if (r < 0)
            fail_msg("%s: after %zu bytes of the reply: %s", big ? "431" : "200", n,
                     strerror(errno));
        buf[n] = '\0';
        const char *body = strstr(buf, "\r\n\r\n");
        assert_non_null(body);
        assert_int_equal(strtoul(strstr(buf, "Content-Length: ") + 16, NULL, 10),
                         n - (size_t)(body + 4 - buf));
        assert_int_equal(strncmp(buf, big ? "HTTP/1.1 431" : "HTTP/1.1 200", 12), 0);
        close(fd);
    }
    free(req);
    metrics_close(m);
}

static void test_silent_client_times_out(void **state)
{
    (void)state;
    int port;
    metrics *m = open_local(0, &port);
    int fd = connect_to(port);
    char c;
    /* the server closes it after METRICS_TIMEOUT_S: recv sees the end, not its own timeout */
    assert_int_equal(recv(fd, &c, 1, 0), 0);
    close(fd);
    metrics_close(m);
}

/* The CPU time this process has used, in seconds (the server thread's spin
 * shows there; a wait does not). */
static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A connection that arrives while the process is out of file descriptors cannot
 * be accepted: the server waits for descriptors instead of polling again at once
 * (a spin that takes a core from training), and answers once there are some. */
static void test_out_of_fds_no_spin(void **state)
{
    (void)state;
    int port;
    metrics *m = open_local(0, &port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct rlimit was, none;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
    none = was;
    none.rlim_cur = (rlim_t)dup(0);   /* the lowest free descriptor: the next one is refused */
    close((int)none.rlim_cur);
    double cpu = cpu_seconds();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    sleep(1);   /* the server thread's CPU over this second is what is measured */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);   /* before any assertion can leave */
    cpu = cpu_seconds() - cpu;
    assert_int_equal(rc, 0);
    if (cpu > 0.5)
        fail_msg("the server used %.2f s of CPU waiting for a file descriptor", cpu);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(send(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL), 25);
    char head[32] = "";
    assert_true(recv(fd, head, sizeof head - 1, MSG_WAITALL) > 17);
    assert_int_equal(strncmp(head, "HTTP/1.1 200 OK\r\n", 17), 0);
    close(fd);
    metrics_close(m);
}

/* poll fails (EINVAL) while RLIMIT_NOFILE is below the descriptors it is given:
 * the server says so once on stderr, waits instead of spinning, and answers
 * again once the limit is back. */
static void test_poll_failure_said_and_survived(void **state)
{
    (void)state;
    int port;
    metrics *m = open_local(0, &port);
    int held[4];
    for (int i = 0; i < 4; i++)
        held[i] = connect_to(port);
    usleep(200000);   /* accepted: poll is given 2 + 4 descriptors */
    FILE *said = tmpfile();
    assert_non_null(said);
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(said), 2);
    struct rlimit was, few;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
    few = was;
    few.rlim_cur = 3;
    double cpu = cpu_seconds();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &few), 0);
    send(held[0], "G", 1, MSG_NOSIGNAL);   /* wakes the server into its next poll */
    sleep(2);   /* the server thread's CPU over these seconds is what is measured */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);   /* before any assertion can leave */
    cpu = cpu_seconds() - cpu;
    dup2(saved, 2);
    close(saved);
    if (cpu > 0.5)
        fail_msg("the server used %.2f s of CPU while poll failed", cpu);
    char text[512] = "";
    rewind(said);
    size_t len = fread(text, 1, sizeof text - 1, said);
    text[len] = '\0';
    fclose(said);
    const char *w = strstr(text, "warning: metrics");
    assert_non_null(w);
    assert_null(strstr(w + 1, "warning: metrics"));   /* once, not at every retry */
    char *r = exchange(port, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    assert_int_equal(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0);
    free(r);
    for (int i = 0; i < 4; i++)
        close(held[i]);
    metrics_close(m);
}

static void test_none_and_bind_failure(void **state)
{
    (void)state;
    metrics *m = (metrics *)1, *m2;
    char where[128], err[256];
    assert_int_equal(metrics_open(&m, "none", 0, where, sizeof where, err, sizeof err), 0);
    assert_null(m);
    metrics_observe(NULL, NULL);   /* no endpoint: feeding it does nothing */
    assert_int_equal(metrics_open(&m, "tcp://127.0.0.1:0", 0, where, sizeof where, err, sizeof err), 0);
    char again[160];
    int port = 0;
    sscanf(where, "http://127.0.0.1:%d/metrics", &port);
    snprintf(again, sizeof again, "tcp://127.0.0.1:%d", port);
    assert_int_equal(metrics_open(&m2, again, 0, where, sizeof where, err, sizeof err), -1);
    assert_non_null(strstr(err, "in use"));
    metrics_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_step_eval_checkpoint),
        cmocka_unit_test(test_render_truncates_like_snprintf),
        cmocka_unit_test(test_endpoint_rules),
        cmocka_unit_test(test_server_answers_and_bounds),
        cmocka_unit_test(test_reply_survives_unread_input),
        cmocka_unit_test(test_silent_client_times_out),
        cmocka_unit_test(test_out_of_fds_no_spin),
        cmocka_unit_test(test_poll_failure_said_and_survived),
        cmocka_unit_test(test_none_and_bind_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
