/* monitor_view: the progress view; see monitor_view.h. */
#include "launch/monitor_view.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/fsutil.h"

static double num(const cJSON *r, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* A step count: the number clamped to int (0 if missing), since a record from
 * the socket may hold any number and converting one beyond int is undefined. */
static int count(const cJSON *r, const char *key)
{
    double v = num(r, key, 0);
    return v >= INT_MAX ? INT_MAX : v <= INT_MIN ? INT_MIN : (int)v;
}

const char *monitor_str(const cJSON *r, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, key));
    return s ? s : "";
}

/* Seconds as 42s, 3m05s, 2h07m. */
static void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e9)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* The progress line of a step record into v->line. */
static void format_step(monitor_view *v, const cJSON *r, double now)
{
    int step = count(r, "step"), max = count(r, "max_steps");
    double loss = num(r, "loss", NAN);
    if (!v->have_step || step <= v->last_step || !isfinite(v->loss_avg))   /* first, or a restart */
        v->loss_avg = loss;
    else
        v->loss_avg = 0.9 * v->loss_avg + 0.1 * loss;   /* exponential moving average */
    v->have_step = true;
    v->last_step = step;
    if (num(r, "last_checkpoint_step", 0) > 0) {   /* the trainer repeats it in step records */
        v->ckpt_step = count(r, "last_checkpoint_step");
        v->ckpt_time = num(r, "last_checkpoint_time", 0);
    }
    enum { BAR = 20 };
    char bar[BAR + 1], eta[32], ckpt[64] = "ckpt none";
    int filled = max > 0 ? (int)fmax(0, fmin(BAR, (double)step / max * BAR)) : 0;
    for (int i = 0; i < BAR; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR] = '\0';
    fmt_duration(eta, sizeof eta, num(r, "eta_s", NAN));
    if (v->ckpt_time > 0) {
        char age[32];
        fmt_duration(age, sizeof age, now - v->ckpt_time);
        snprintf(ckpt, sizeof ckpt, "ckpt step %d, %s ago", v->ckpt_step, age);
    }
    snprintf(v->line, sizeof v->line,
             "step %d/%d [%s] %3.0f%% | loss %.4f (avg %.4f) | lr %.2e | %.0f tok/s | mfu %.1f%% | eta %s | %s",
             step, max, bar, max > 0 ? 100.0 * step / max : 0.0, loss, v->loss_avg, num(r, "lr", NAN),
             num(r, "tokens_per_s", 0), 100 * num(r, "mfu", 0), eta, ckpt);
}

/* The progress line in place of the one on the terminal's last row, cut to
 * the terminal's width: the rows a longer line wraps onto would stay behind at
 * each redraw. */
static void draw_line(monitor_view *v)
{
    printf("\r\033[K%.*s", v->cols > 1 ? v->cols - 1 : (int)sizeof v->line, v->line);
    v->line_open = true;
}

/* A whole line of output; on a terminal the progress line is redrawn after it. */
static void print_line(monitor_view *v, const char *text)
{
    if (v->tty && v->line_open)
        printf("\r\033[K");
    printf("%s\n", text);
    v->line_open = false;
    if (v->tty && v->have_step)
        draw_line(v);
}

/* One record in the progress view. */
void monitor_show_record(monitor_view *v, const cJSON *r, double now)
{
    const char *type = monitor_str(r, "type");
    char text[640];
    if (!strcmp(type, "step")) {
        format_step(v, r, now);
        if (v->tty)
            draw_line(v);
        else
            printf("%s\n", v->line);
        return;
    }
    if (!strcmp(type, "eval"))
        snprintf(text, sizeof text, "step %d: val loss %.4f", count(r, "step"), num(r, "val_loss", NAN));
    else if (!strcmp(type, "checkpoint")) {
        v->ckpt_step = count(r, "step");
        v->ckpt_time = num(r, "time", now);
        snprintf(text, sizeof text, "step %d: checkpoint %s", v->ckpt_step,
                 *monitor_str(r, "path") ? monitor_str(r, "path") : monitor_str(r, "message"));
    } else {
        snprintf(text, sizeof text, "%s: %s", *type ? type : "record", monitor_str(r, "message"));
    }
    /* the strings are the publisher's: a newline or an escape sequence in them
     * would break the one line per record, or reach the terminal as a command */
    fs_printable(text);
    print_line(v, text);
}
