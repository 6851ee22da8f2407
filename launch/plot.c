/* plot: log.jsonl or live status records -> a loss-curve SVG (see plot.h). */
#include "launch/plot.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"

/* Page geometry (px): the plot area is [X0, X1] x [Y0, Y1], y growing down. */
enum { WIDTH = 800, HEIGHT = 480, X0 = 72, X1 = WIDTH - 24, Y0 = 48, Y1 = HEIGHT - 56 };
enum { MAX_TICKS = 32, TARGET_TICKS = 6 };

#define COLOR_LOSS "#9ecae1"
#define COLOR_AVG  "#08519c"
#define COLOR_VAL  "#e6550d"
#define COLOR_GRID "#e5e5e5"

/* ---- collecting records ---- */

static int series_push(plot_series *s, double x, double y)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx)
            return -1;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny)
            return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

/* Drops the points at or after step x: a resumed run rewrites that stretch. */
static void series_truncate(plot_series *s, double x)
{
    while (s->n > 0 && s->x[s->n - 1] >= x)
        s->n--;
}

static double field(const cJSON *r, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* A value the axes can place: finite and within 1e-300..1e300 in magnitude
 * (or 0), so that spans, padding and powers of ten stay finite and nonzero
 * (a denormal or 1e308 made coordinates NaN).  Every step and loss a run
 * logs (an int, a float) is one. */
static bool plottable(double v)
{
    return v == 0 || (fabs(v) >= 1e-300 && fabs(v) <= 1e300);
}

void plot_add(plot_data *d, const cJSON *r)
{
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "type"));
    double step = field(r, "step");
    if (!type || !plottable(step))
        return;
    if (!strcmp(type, "step")) {
        double loss = field(r, "loss");
        if (d->loss.n > 0 && step <= d->loss.x[d->loss.n - 1]) {   /* resumed earlier */
            series_truncate(&d->loss, step);
            series_truncate(&d->val, step);
        }
        if (plottable(loss))
            series_push(&d->loss, step, loss);
        if (field(r, "max_steps") > 0)   /* any number may come in: clamp before converting */
            d->max_steps = (int)fmin(field(r, "max_steps"), INT_MAX);
    } else if (!strcmp(type, "eval")) {
        double val = field(r, "val_loss");
        series_truncate(&d->val, step);
        if (plottable(val))
            series_push(&d->val, step, val);
    }
}

static bool blank(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    return *s == '\0';
}

/* The next line of f into line (cap bytes, NUL-terminated, without its
 * newline); 0 at the end of the file, -1 for a line that does not fit.  A
 * NUL byte in the line ends it for the parser: that line is malformed. */
static int read_line(FILE *f, char *line, size_t cap)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (n + 1 == cap)
            return -1;
        line[n++] = (char)c;
    }
    line[n] = '\0';
    return c == EOF && n == 0 ? 0 : 1;
}

int plot_read_log(plot_data *d, const char *path, int *malformed, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = malloc(PLOT_MAX_LINE + 1);
    if (!f || !line) {
        snprintf(err, errlen, "%s: %s", path, f ? "out of memory" : strerror(errno));
        if (f)
            fclose(f);
        free(line);
        return -1;
    }
    *malformed = 0;
    int rc, lines = 0;
    /* a line is held whole to be parsed: one longer than any record (a file
     * of NULs, /dev/zero given by mistake) is refused, not read into memory */
    while ((rc = read_line(f, line, PLOT_MAX_LINE + 1)) > 0) {
        lines++;
        if (blank(line))
            continue;
        cJSON *r = cJSON_Parse(line);
        if (cJSON_IsObject(r))
            plot_add(d, r);
        else
            (*malformed)++;   /* e.g. a line the trainer is still writing */
        cJSON_Delete(r);
    }
    int bad = ferror(f);
    free(line);
    fclose(f);
    if (rc < 0)
        snprintf(err, errlen, "%s: line %d is longer than %d MB: not a run's log.jsonl", path,
                 lines + 1, PLOT_MAX_LINE >> 20);
    else if (bad)
        snprintf(err, errlen, "%s: read error", path);
    return rc < 0 || bad ? -1 : 0;
}

void plot_free(plot_data *d)
{
    free(d->loss.x);
    free(d->loss.y);
    free(d->val.x);
    free(d->val.y);
    *d = (plot_data){0};
}

/* ---- axes ---- */

typedef struct {
    double lo, hi;
    bool log;
    double tick[MAX_TICKS];
    int ntick;
    int decimals;   /* for tick labels; < 0: %g */
} axis;

/* A 1, 2 or 5 times a power of ten near x (Heckbert's "nice numbers"): the
 * nearest one if round_, else the smallest at least x. */
static double nice_num(double x, bool round_)
{
    double p = pow(10, floor(log10(x))), f = x / p;
    if (round_)
        return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* Round ticks covering [min, max]; the axis ends on a tick on both sides. */
static void axis_linear(axis *a, double min, double max)
{
    if (!(max > min)) {   /* one point, or a flat line: give it some room */
        double pad = min != 0 ? fabs(min) * 0.1 : 1;
        min -= pad;
        max += pad;
    }
    double d = nice_num(nice_num(max - min, false) / (TARGET_TICKS - 1), true);
    if (!(d > 0 && isfinite(d))) {   /* a span too small or too large to divide: no ticks */
        *a = (axis){.lo = min, .hi = max, .decimals = -1};
        return;
    }
    *a = (axis){.lo = floor(min / d) * d, .hi = ceil(max / d) * d};
    for (int i = 0; a->ntick < MAX_TICKS; i++) {
        double t = a->lo + i * d;   /* not a running sum: no drift in the labels */
        if (t > a->hi + d * 1e-6)
            break;
        a->tick[a->ntick++] = fabs(t) < d * 1e-9 ? 0 : t;
    }
    a->decimals = d >= 1 ? 0 : (int)ceil(-log10(d) - 1e-9);
}

/* Log scale: decades (with 2 and 5 between when there are few) when the data
 * spans at least a decade, else the linear round ticks placed on a log axis. */
static void axis_log(axis *a, double min, double max)
{
    if (max < min * 10) {
        axis_linear(a, min, max);
        if (a->lo <= 0) {   /* log(0): start at the data and drop the ticks below it */
            a->lo = min;
            int k = 0;
            for (int i = 0; i < a->ntick; i++)
                if (a->tick[i] >= min)
                    a->tick[k++] = a->tick[i];
            a->ntick = k;
        }
        a->log = true;
        return;
    }
    int k0 = (int)floor(log10(min)), k1 = (int)ceil(log10(max));
    static const double mults[] = {1, 2, 5};
    int nm = k1 - k0 <= 2 ? 3 : 1;
    *a = (axis){.lo = pow(10, k0), .hi = pow(10, k1), .log = true, .decimals = -1};
    for (int k = k0; k <= k1; k++)
        for (int m = 0; m < nm && a->ntick < MAX_TICKS; m++) {
            double t = mults[m] * pow(10, k);
            if (t <= a->hi * (1 + 1e-9))
                a->tick[a->ntick++] = t;
        }
}

/* Pixel coordinate of v on an axis drawn from p0 (at lo) to p1 (at hi). */
static double axis_pos(const axis *a, double v, double p0, double p1)
{
    double f = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo))
                      : (v - a->lo) / (a->hi - a->lo);
    return p0 + f * (p1 - p0);
}

static void tick_label(const axis *a, double v, char *buf, size_t n)
{
    if (a->decimals < 0)
        snprintf(buf, n, "%g", v);
    else
        snprintf(buf, n, "%.*f", a->decimals, v);
}

/* ---- drawing ---- */

/* Centered mean over i-half..i+half, the half-width shrinking near both ends
 * so the window stays symmetric: a trailing mean lags behind the steep early
 * drop of the loss and draws the average above every point there. */
static int moving_average(const plot_series *s, int half, plot_series *out)
{
    double *prefix = malloc((s->n + 1) * sizeof *prefix);
    if (!prefix)
        return -1;
    prefix[0] = 0;
    for (int i = 0; i < s->n; i++)
        prefix[i + 1] = prefix[i] + s->y[i];
    *out = (plot_series){0};
    for (int i = 0; i < s->n; i++) {
        int h = half;
        h = i < h ? i : h;
        h = s->n - 1 - i < h ? s->n - 1 - i : h;
        if (series_push(out, s->x[i], (prefix[i + h + 1] - prefix[i - h]) / (2 * h + 1)) != 0) {
            free(prefix);
            return -1;
        }
    }
    free(prefix);
    return 0;
}

/* Half-width of the moving average: ~1/50 of the run, at least 2 points. */
static int average_half_width(int n)
{
    int h = n / 50;
    return h < 2 ? 2 : h > 250 ? 250 : h;
}

static bool y_ok(const axis *ay, double y)
{
    return isfinite(y) && (!ay->log || y > 0);
}

static void svg_axes(FILE *f, const axis *ax, const axis *ay)
{
    char label[64];
    fprintf(f, "<g id=\"grid\" stroke=\"" COLOR_GRID "\" stroke-width=\"1\">\n");
    for (int i = 0; i < ax->ntick; i++) {
        double x = axis_pos(ax, ax->tick[i], X0, X1);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", x, Y0, x, Y1);
    }
    for (int i = 0; i < ay->ntick; i++) {
        double y = axis_pos(ay, ay->tick[i], Y1, Y0);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", X0, y, X1, y);
    }
    fprintf(f, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
            X0, Y0, X1 - X0, Y1 - Y0);
    fprintf(f, "<g id=\"xticks\" text-anchor=\"middle\" fill=\"#333\">\n");
    for (int i = 0; i < ax->ntick; i++) {
        tick_label(ax, ax->tick[i], label, sizeof label);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s</text>\n", axis_pos(ax, ax->tick[i], X0, X1), Y1 + 18, label);
    }
    fprintf(f, "</g>\n<g id=\"yticks\" text-anchor=\"end\" fill=\"#333\">\n");
    for (int i = 0; i < ay->ntick; i++) {
        tick_label(ay, ay->tick[i], label, sizeof label);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\">%s</text>\n", X0 - 6, axis_pos(ay, ay->tick[i], Y1, Y0) + 4, label);
    }
    fprintf(f, "</g>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">step</text>\n",
            (X0 + X1) / 2, Y1 + 42);
    fprintf(f, "<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">%s</text>\n",
            18, (Y0 + Y1) / 2, ay->log ? "loss (log scale)" : "loss");
}

/* Writes the points [from, to) of s that share one column of the picture as
 * at most four: the first, the lowest and highest (in their order) and the
 * last, which draw the same line as all of them. */
static void column_points(FILE *f, const plot_series *s, const int *idx, int from, int to,
                          const axis *ax, const axis *ay, bool *first)
{
    int lo = from, hi = from;
    for (int k = from; k < to; k++) {
        lo = s->y[idx[k]] < s->y[idx[lo]] ? k : lo;
        hi = s->y[idx[k]] > s->y[idx[hi]] ? k : hi;
    }
    int keep[4] = {from, lo < hi ? lo : hi, lo < hi ? hi : lo, to - 1};
    for (int j = 0; j < 4; j++) {
        if (j > 0 && keep[j] == keep[j - 1])
            continue;
        int i = idx[keep[j]];
        fprintf(f, "%s%.1f,%.1f", *first ? "" : " ", axis_pos(ax, s->x[i], X0, X1),
                axis_pos(ay, s->y[i], Y1, Y0));
        *first = false;
    }
}

/* The series as one polyline; a long run (a million steps) keeps a few points
 * per half pixel of width, so the file stays small whatever the log's length. */
static void svg_polyline(FILE *f, const char *id, const plot_series *s, const axis *ax, const axis *ay,
                         const char *color, double width)
{
    fprintf(f, "<polyline id=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%g\" stroke-linejoin=\"round\" points=\"",
            id, color, width);
    int *idx = malloc((size_t)(s->n ? s->n : 1) * sizeof *idx), m = 0;
    for (int i = 0; idx && i < s->n; i++)   /* the points the axes can place */
        if (y_ok(ay, s->y[i]))
            idx[m++] = i;
    bool first = true;
    for (int from = 0, to; idx && from < m; from = to) {
        long col = lround(2 * axis_pos(ax, s->x[idx[from]], X0, X1));
        for (to = from + 1; to < m && lround(2 * axis_pos(ax, s->x[idx[to]], X0, X1)) == col;)
            to++;
        column_points(f, s, idx, from, to, ax, ay, &first);
    }
    free(idx);
    fprintf(f, "\"/>\n");
    if (s->n == 1 && y_ok(ay, s->y[0]))   /* a one-point polyline draws nothing */
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%g\" fill=\"%s\"/>\n", axis_pos(ax, s->x[0], X0, X1),
                axis_pos(ay, s->y[0], Y1, Y0), width + 2, color);
}

static void svg_markers(FILE *f, const plot_series *s, const axis *ax, const axis *ay)
{
    fprintf(f, "<g id=\"val_markers\" fill=\"" COLOR_VAL "\" stroke=\"white\" stroke-width=\"1\">\n");
    for (int i = 0; i < s->n; i++)
        if (y_ok(ay, s->y[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\"><title>step %.0f: val loss %.4f</title></circle>\n",
                    axis_pos(ax, s->x[i], X0, X1), axis_pos(ay, s->y[i], Y1, Y0), s->x[i], s->y[i]);
    fprintf(f, "</g>\n");
}

/* Legend in the top-right corner, where a falling loss curve leaves room. */
static void svg_legend(FILE *f, const plot_data *d, int half)
{
    char avg[64];
    snprintf(avg, sizeof avg, "moving average (%d points)", 2 * half + 1);
    const char *names[] = {"train loss", avg, "val loss"};
    const char *colors[] = {COLOR_LOSS, COLOR_AVG, COLOR_VAL};
    const double widths[] = {1, 2, 1.5};
    int n = d->val.n > 0 ? 3 : 2, w = 210, h = 10 + 18 * n, x = X1 - w - 10, y = Y0 + 10;
    fprintf(f, "<g id=\"legend\">\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"white\" "
               "fill-opacity=\"0.9\" stroke=\"#ccc\"/>\n", x, y, w, h);
    for (int i = 0; i < n; i++) {
        int ly = y + 14 + 18 * i;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"%g\"/>\n",
                x + 10, ly, x + 38, ly, colors[i], widths[i]);
        if (i == 2)
            fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"" COLOR_VAL "\"/>\n", x + 24, ly);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", x + 46, ly + 4, names[i]);
    }
    fprintf(f, "</g>\n");
}

static void svg_title(FILE *f, const plot_data *d)
{
    char title[256], val[96] = "";
    int n = d->loss.n;
    double steps = n ? d->loss.x[n - 1] : 0;   /* any finite number a record held */
    if (d->val.n > 0)
        snprintf(val, sizeof val, ", val loss %.4f at step %.0f", d->val.y[d->val.n - 1],
                 d->val.x[d->val.n - 1]);
    if (n > 0 && d->max_steps > 0)
        snprintf(title, sizeof title, "step %.0f/%d: loss %.4f%s", steps, d->max_steps, d->loss.y[n - 1], val);
    else if (n > 0)
        snprintf(title, sizeof title, "step %.0f: loss %.4f%s", steps, d->loss.y[n - 1], val);
    else
        snprintf(title, sizeof title, "no step records%s", val);
    fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">%s</text>\n",
            (X0 + X1) / 2, title);
}

/* The axes' data ranges: every plotted point (log scale: positive y only). */
static void data_range(const plot_data *d, bool log_y, double *x0, double *x1, double *y0, double *y1)
{
    *x0 = *y0 = INFINITY;
    *x1 = *y1 = -INFINITY;
    const plot_series *all[] = {&d->loss, &d->val};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < all[k]->n; i++) {
            double y = all[k]->y[i];
            if (!isfinite(y) || (log_y && y <= 0))
                continue;
            *x0 = fmin(*x0, all[k]->x[i]);
            *x1 = fmax(*x1, all[k]->x[i]);
            *y0 = fmin(*y0, y);
            *y1 = fmax(*y1, y);
        }
}

static int svg_body(FILE *f, const plot_data *d, bool log_y)
{
    double xmin, xmax, ymin, ymax;
    data_range(d, log_y, &xmin, &xmax, &ymin, &ymax);
    if (!isfinite(xmin))
        return -1;
    axis ax, ay;
    axis_linear(&ax, fmin(xmin, 0), xmax);   /* steps from 0: where the run started */
    if (log_y)
        axis_log(&ay, ymin, ymax);
    else
        axis_linear(&ay, ymin, ymax);
    int half = average_half_width(d->loss.n);
    plot_series avg;
    if (moving_average(&d->loss, half, &avg) != 0)
        return -1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", WIDTH, HEIGHT, WIDTH, HEIGHT);
    svg_title(f, d);
    svg_axes(f, &ax, &ay);
    svg_polyline(f, "loss", &d->loss, &ax, &ay, COLOR_LOSS, 1);
    svg_polyline(f, "loss_avg", &avg, &ax, &ay, COLOR_AVG, 2);
    if (d->val.n > 0) {
        svg_polyline(f, "val_loss", &d->val, &ax, &ay, COLOR_VAL, 1.5);
        svg_markers(f, &d->val, &ax, &ay);
    }
    svg_legend(f, d, half);
    fprintf(f, "</svg>\n");
    free(avg.x);
    free(avg.y);
    return 0;
}

int plot_write_svg(const plot_data *d, const char *path, bool log_y, char *err, size_t errlen)
{
    /* drawn in memory, then written whole: the final name never holds a torn file */
    char *svg = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&svg, &len);
    if (!f)
        return fs_fail(err, errlen, "%s: out of memory", path);
    int rc = svg_body(f, d, log_y);
    if (fclose(f) != 0)
        rc = fs_fail(err, errlen, "%s: out of memory", path);
    else if (rc != 0)
        fs_fail(err, errlen, "%s: nothing to plot (no finite%s losses)", path, log_y ? " positive" : "");
    else
        rc = fs_write_file_atomic(path, svg, len, err, errlen);
    free(svg);
    return rc;
}
