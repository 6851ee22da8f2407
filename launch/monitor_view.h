/* monitor_view: build/monitor's progress view of status records.
 *
 * Each record (a cJSON object from the status feed or a control reply, any
 * fields, any values: it comes from a socket) becomes a line on stdout: step
 * records a progress line with a moving-average loss, redrawn in place on a
 * terminal; eval, checkpoint and other records a line of their own.  What a
 * record's strings hold is printed with its control characters replaced. */
#ifndef LAUNCH_MONITOR_VIEW_H
#define LAUNCH_MONITOR_VIEW_H

#include <cjson/cJSON.h>
#include <stdbool.h>

/* What the progress line shows, carried over from record to record. */
typedef struct {
    bool have_step, tty, line_open;
    int cols;           /* the terminal's width, 0 if unknown: the progress line is
                         * cut to it, since \r cannot go back over a wrapped line */
    int last_step;
    double loss_avg;
    int ckpt_step;
    double ckpt_time;   /* 0: no checkpoint seen */
    char line[512];     /* the last progress line, redrawn after other output */
} monitor_view;

/* Shows one record; now is the current unix time (for ages of checkpoints). */
void monitor_show_record(monitor_view *v, const cJSON *r, double now);

/* The string field key of r, or "" when it is missing or not a string. */
const char *monitor_str(const cJSON *r, const char *key);

#endif
