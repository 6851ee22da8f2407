/* plot: the loss picture of build/monitor --plot.
 *
 * Collects step and eval records (from log.jsonl or the live feed, one cJSON
 * object at a time) and writes them as a small self-contained SVG: training
 * loss as a thin line with its moving average, eval val_loss as markers on a
 * line, against step.  Hand-written SVG, so the monitor needs no plotting
 * library and the file opens in any browser. */
#ifndef LAUNCH_PLOT_H
#define LAUNCH_PLOT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    double *x, *y;
    int n, cap;
} plot_series;

typedef struct {
    plot_series loss;   /* step records: (step, loss) */
    plot_series val;    /* eval records: (step, val_loss) */
    int max_steps;      /* from the newest step record, 0 if unknown */
} plot_data;

/* Adds one record if it is a step or eval record with a finite loss (and
 * step) of magnitude 1e-300..1e300 or 0.  A step at or before the newest one
 * means the run was resumed from an earlier checkpoint: points from there on
 * are replaced by the resumed run's. */
void plot_add(plot_data *d, const cJSON *record);

/* The longest log.jsonl line read (a record is a few KB). */
enum { PLOT_MAX_LINE = 16 << 20 };

/* Reads every line of a log.jsonl into d; *malformed counts the lines that are
 * not JSON objects.  0, or -1 with a reason in err (missing or unreadable, or
 * a line longer than PLOT_MAX_LINE). */
int plot_read_log(plot_data *d, const char *path, int *malformed, char *err, size_t errlen);

/* Writes the SVG to path atomically (temp file + rename).  0, or -1 with a
 * reason in err. */
int plot_write_svg(const plot_data *d, const char *path, bool log_y, char *err, size_t errlen);

void plot_free(plot_data *d);

#endif
