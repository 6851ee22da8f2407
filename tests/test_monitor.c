/* monitor: build/monitor's progress view (launch/monitor_view.c) as a
 * terminal shows it, and the SVG of --plot (launch/plot.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "launch/monitor_view.h"
#include "launch/plot.h"

/* What the view prints for records (one JSON object a line) into out. */
static void show(monitor_view *v, const char *records, char *out, size_t cap)
{
    int fd = memfd_create("view", 0), saved = dup(STDOUT_FILENO);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stdout);
    assert_int_equal(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
    char *text = strdup(records);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *r = cJSON_Parse(line);
        assert_true(cJSON_IsObject(r));
        monitor_show_record(v, r, 1.7e9);
        cJSON_Delete(r);
    }
    free(text);
    fflush(stdout);
    assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
    ssize_t n = pread(fd, out, cap - 1, 0);
    assert_true(n >= 0);
    out[n] = '\0';
    close(fd);
    close(saved);
}

static const char *const STEPS =
    "{\"type\":\"step\",\"step\":1234,\"max_steps\":5000,\"loss\":3.1234,\"lr\":6e-4,"
    "\"tokens_per_s\":12345,\"mfu\":0.123,\"eta_s\":3720,\"last_checkpoint_step\":1000,"
    "\"last_checkpoint_time\":1699999900}\n"
    "{\"type\":\"eval\",\"step\":1234,\"val_loss\":3.2}\n"
    "{\"type\":\"step\",\"step\":1235,\"max_steps\":5000,\"loss\":3.1}\n";

/* On an 80-column terminal every redraw of the progress line fits in a row:
 * \r goes back to the start of the last row only, so the rows of a wrapped
 * line would stay on the screen, one more at each record. */
static void test_progress_line_fits_terminal(void **state)
{
    (void)state;
    char out[8192];
    monitor_view v = {.tty = true, .cols = 80};
    show(&v, STEPS, out, sizeof out);
    assert_non_null(strstr(out, "\r\033[Kstep 1234/5000 ["));
    assert_non_null(strstr(out, "step 1234: val loss 3.2000\n"));
    for (char *p = out; *p;) {   /* the text between \r, \n and ESC [ K */
        size_t n = strcspn(p, "\r\n");
        assert_true(n <= 79);
        p += n + (p[n] != '\0');
        if (!strncmp(p, "\033[K", 3))
            p += 3;
    }
    /* not a terminal: whole lines, nothing cut */
    monitor_view plain = {.cols = 80};
    show(&plain, STEPS, out, sizeof out);
    assert_null(strchr(out, '\r'));
    assert_non_null(strstr(out, "| ckpt step 1000, 1m40s ago\n"));
}

/* A publisher's strings reach the terminal without their control characters:
 * C0, DEL, and C1 as UTF-8 (U+009B is CSI to xterm and VTE, as ESC [ is). */
static void test_strings_printable(void **state)
{
    (void)state;
    char out[4096];
    monitor_view v = {.tty = true, .cols = 80};
    show(&v,
         "{\"type\":\"checkpoint\",\"step\":3,\"path\":\"a\\u001b[2Jb\\nc\\u007f\"}\n"
         "{\"type\":\"x\\u009b2J\",\"message\":\"\\u0085\\u00e9\\u00a0\"}\n",
         out, sizeof out);
    assert_string_equal(out, "step 3: checkpoint a?[2Jb?c?\n"
                             "x??2J: ??\u00e9\u00a0\n");   /* é and NBSP are text */
}

/* The SVG of records (one JSON object a line) into svg; 0, or -1 with err. */
static int plot(const char *records, bool log_y, char *svg, size_t cap, char *err, size_t errlen)
{
    plot_data d = {0};
    char *text = strdup(records);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *r = cJSON_Parse(line);
        assert_true(cJSON_IsObject(r));
        plot_add(&d, r);
        cJSON_Delete(r);
    }
    free(text);
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_monitor.%d.svg", (int)getpid());
    int rc = plot_write_svg(&d, path, log_y, err, errlen);
    plot_free(&d);
    svg[0] = '\0';
    FILE *f = fopen(path, "r");
    assert_true(rc != 0 || f);
    if (f) {
        svg[fread(svg, 1, cap - 1, f)] = '\0';
        fclose(f);
    }
    unlink(path);
    return rc;
}

/* Values at the ends of the double range (a hostile or damaged log) are left
 * out rather than drawn at NaN coordinates: a denormal loss made a zero-width
 * axis, +-1.7e308 an infinite one. */
static void test_plot_extremes(void **state)
{
    (void)state;
    static const char *const logs[] = {
        "{\"type\":\"step\",\"step\":1,\"loss\":5e-324}\n",
        "{\"type\":\"step\",\"step\":1,\"loss\":-1.7e308}\n{\"type\":\"step\",\"step\":2,\"loss\":-1.7e308}\n",
        "{\"type\":\"step\",\"step\":1,\"loss\":-1.7e308}\n{\"type\":\"step\",\"step\":2,\"loss\":1.7e308}\n",
        "{\"type\":\"step\",\"step\":-1.7e308,\"loss\":1}\n{\"type\":\"step\",\"step\":1.7e308,\"loss\":2}\n",
        "{\"type\":\"step\",\"step\":1,\"loss\":5e-324}\n{\"type\":\"step\",\"step\":2,\"loss\":1}\n",
        "{\"type\":\"step\",\"step\":1,\"loss\":1e300}\n{\"type\":\"eval\",\"step\":2,\"val_loss\":1.7e308}\n",
    };
    static char svg[1 << 16];
    char err[256];
    for (size_t i = 0; i < sizeof logs / sizeof *logs; i++)
        for (int log_y = 0; log_y < 2; log_y++) {
            if (plot(logs[i], log_y, svg, sizeof svg, err, sizeof err) != 0) {
                assert_non_null(strstr(err, "nothing to plot"));
                continue;
            }
            if (strstr(svg, "nan") || strstr(svg, "inf"))
                fail_msg("log %zu%s: %s", i, log_y ? " (log y)" : "", svg);
        }
}

/* A long run's polyline keeps a few points per column of the picture, and
 * still every spike: 200000 steps of a loss near 3 with one step at 50. */
static void test_plot_long_run(void **state)
{
    (void)state;
    enum { N = 200000, SPIKE = 123457 };
    plot_data d = {0};
    for (int i = 1; i <= N; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "type", "step");
        cJSON_AddNumberToObject(r, "step", i);
        cJSON_AddNumberToObject(r, "loss", i == SPIKE ? 50 : 3 + 0.1 * sin(i));
        plot_add(&d, r);
        cJSON_Delete(r);
    }
    char path[64], err[256];
    snprintf(path, sizeof path, "/tmp/test_monitor.%d.svg", (int)getpid());
    assert_int_equal(plot_write_svg(&d, path, false, err, sizeof err), 0);
    plot_free(&d);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char svg[4 << 20];
    size_t len = fread(svg, 1, sizeof svg - 1, f);
    svg[len] = '\0';
    fclose(f);
    unlink(path);
    assert_true(len < sizeof svg - 1);   /* a few hundred KB at most */
    const char *p = strstr(svg, "id=\"loss\"");
    assert_non_null(p);
    p = strstr(p, "points=\"") + 8;
    int points = 0;
    double x, y, top = 1e9;
    for (int used; sscanf(p, "%lf,%lf%n", &x, &y, &used) == 2; p += used, points++)
        top = y < top ? y : top;
    assert_true(points > 1000 && points < 8000);   /* 4 per half pixel of ~700 */
    assert_true(top < 240);   /* the spike, near the top; the rest lies low */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_line_fits_terminal),
        cmocka_unit_test(test_strings_printable),
        cmocka_unit_test(test_plot_extremes),
        cmocka_unit_test(test_plot_long_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
