#include "trainer/status.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "io/fsutil.h"
#include "io/utf8.h"
#include "kernels/clock.h"
#include "trainer/metrics.h"
#include "trainer/publisher.h"

/* A log cut off inside a record (a full disk, a crash mid-write) gets its
 * newline before anything is appended, so the records after it stay whole
 * lines and only the cut one is unreadable. */
static void end_cut_line(FILE *f)
{
    if (fseek(f, -1, SEEK_END) != 0)   /* empty */
        return;
    const int last = fgetc(f);
    /* C asks for a positioning call between reading and writing a stream */
    if (last != EOF && last != '\n' && fseek(f, 0, SEEK_END) == 0) {
        fputc('\n', f);
        fflush(f);
    }
}

int status_open(status_log *s, const char *out_dir, int log_every, char *err, size_t errlen)
{
    s->log_every = log_every;
    if (fs_mkdir_p(out_dir, err, errlen) != 0)
        return -1;
    char *path = s->log_path;
    snprintf(path, sizeof s->log_path, "%s/log.jsonl", out_dir);
    s->log = fopen(path, "a+");   /* reads only its last byte; writes append */
    if (!s->log) {
        snprintf(err, errlen, "%s: cannot open for appending: %s", path, strerror(errno));
        return -1;
    }
    end_cut_line(s->log);
    return 0;
}

void status_close(status_log *s)
{
    if (s->log)
        fclose(s->log);
    s->log = NULL;
}

static cJSON *record(const char *type, int step, int max_steps)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddNumberToObject(o, "max_steps", max_steps);
    return o;
}

/* Appends line and its newline in one write (the stream is in append mode
 * and unbuffered after status_open's flush).  A failed write (a full disk)
 * is said on stderr when it starts failing, so records are not lost
 * silently; what it cut off is ended before the next record. */
static void log_append(status_log *s, const char *line)
{
    struct iovec iov[3] = {{.iov_base = "\n", .iov_len = s->log_cut},
                           {.iov_base = (void *)line, .iov_len = strlen(line)},
                           {.iov_base = "\n", .iov_len = 1}};
    const size_t want = iov[0].iov_len + iov[1].iov_len + 1;
    errno = 0;
    const ssize_t n = writev(fileno(s->log), iov, 3);
    const bool ok = n == (ssize_t)want;
    if (!ok && !s->log_failing)
        fprintf(stderr, "warning: %s: write failed (%s): status records are being lost\n",
                s->log_path, strerror(errno ? errno : ENOSPC));
    if (n > 0)
        s->log_cut = !ok;
    s->log_failing = !ok;
}

/* Adds the time stamp, appends the record as one line, frees it. */
static void emit(status_log *s, cJSON *o)
{
    if (s->muted) {
        cJSON_Delete(o);
        return;
    }
    cJSON_AddNumberToObject(o, "time", clock_wall_s());
    /* a message or path quoting bytes that are not UTF-8 (a file name) would
     * make a line that strict JSON readers refuse whole; JSON's own syntax is
     * ASCII, so mending the text mends only the strings */
    char *text = cJSON_PrintUnformatted(o);
    char *line = text ? utf8_valid_copy(text, strlen(text)) : NULL;
    free(text);
    if (line && s->log)
        log_append(s, line);
    /* the same record on the status socket; remember the last checkpoint */
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
    if (line && s->pub)
        publisher_send(s->pub, line, type && strcmp(type, "step") == 0);
    metrics_observe(s->metrics, o);
    if (type && strcmp(type, "checkpoint") == 0) {
        s->last_ckpt_step = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "step"));
        s->last_ckpt_time = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "time"));
    }
    free(line);
    cJSON_Delete(o);
}

void status_step(status_log *s, const step_stats *st)
{
    cJSON *o = record("step", st->step, st->max_steps);
    cJSON_AddNumberToObject(o, "loss", st->loss);
    cJSON_AddNumberToObject(o, "lr", st->lr);
    cJSON_AddNumberToObject(o, "grad_norm", st->grad_norm);
    cJSON_AddNumberToObject(o, "step_ms", st->step_ms);
    cJSON_AddNumberToObject(o, "tokens_per_s", st->tokens_per_s);
    cJSON_AddNumberToObject(o, "mfu", st->mfu);
    cJSON_AddNumberToObject(o, "elapsed_s", st->elapsed_s);
    cJSON_AddNumberToObject(o, "eta_s", st->eta_s);
    cJSON_AddNumberToObject(o, "ranks", st->ranks);
    cJSON_AddNumberToObject(o, "loader_wait_ms", st->loader_wait_ms);
    cJSON_AddNumberToObject(o, "comm_ms", st->comm_ms);
    cJSON_AddNumberToObject(o, "comm_tail_ms", st->comm_tail_ms);
    cJSON_AddNumberToObject(o, "comm_exposed_ms", st->comm_exposed_ms);
    cJSON_AddNumberToObject(o, "comm_total_ms", st->comm_total_ms);
    cJSON_AddNumberToObject(o, "comm_hidden", st->comm_hidden);
    cJSON_AddNumberToObject(o, "comm_cpu_ms", st->comm_cpu_ms);
    cJSON_AddNumberToObject(o, "rss_mb", st->rss_mb);
    cJSON_AddNumberToObject(o, "peak_rss_mb", st->peak_rss_mb);
    cJSON_AddNumberToObject(o, "optimizer_mb", st->optimizer_mb);
    cJSON_AddNumberToObject(o, "optimizer_ms", st->optimizer_ms);
    if (st->loader_queue >= 0)
        cJSON_AddNumberToObject(o, "loader_queue", st->loader_queue);
    if (st->loss_scale > 0) {
        cJSON_AddNumberToObject(o, "loss_scale", st->loss_scale);
        cJSON_AddNumberToObject(o, "overflows", (double)st->overflows);
    }
    cJSON_AddNumberToObject(o, "skipped_steps", st->skipped_steps);
    cJSON_AddNumberToObject(o, "status_dropped", (double)publisher_dropped(s->pub));
    if (s->last_ckpt_step > 0) {   /* a late subscriber needs nothing earlier */
        cJSON_AddNumberToObject(o, "last_checkpoint_step", s->last_ckpt_step);
        cJSON_AddNumberToObject(o, "last_checkpoint_time", s->last_ckpt_time);
    }
    emit(s, o);
    if (s->muted || (st->step % s->log_every != 0 && st->step != st->max_steps))
        return;
    char comm[96] = "";
    if (st->ranks > 1)
        snprintf(comm, sizeof comm, " | comm %.0f of %.0f ms exposed (%.0f%% hidden, %.0f ms cpu)",
                 st->comm_exposed_ms, st->comm_total_ms, 100 * st->comm_hidden, st->comm_cpu_ms);
    fprintf(stderr, "step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f ms | %.0f tok/s | mfu %.1f%%%s | eta %.0fs\n",
            st->step, st->max_steps, st->loss, st->lr, st->grad_norm, st->step_ms,
            st->tokens_per_s, 100 * st->mfu, comm, st->eta_s);
}

void status_eval(status_log *s, int step, int max_steps, float val_loss, double eval_s)
{
    cJSON *o = record("eval", step, max_steps);
    cJSON_AddNumberToObject(o, "val_loss", val_loss);
    cJSON_AddNumberToObject(o, "eval_s", eval_s);
    emit(s, o);
    if (!s->muted)
        fprintf(stderr, "step %5d/%d | val loss %.4f (%.1f s)\n", step, max_steps, val_loss, eval_s);
}

void status_event(status_log *s, const char *type, int step, const char *message)
{
    cJSON *o = record(type, step, 0);
    cJSON_DeleteItemFromObject(o, "max_steps");
    cJSON_AddStringToObject(o, "message", message);
    emit(s, o);
    if (!s->muted && strcmp(type, "error") != 0)   /* errors reach stderr once, from main */
        fprintf(stderr, "%s: %s\n", type, message);
}

void status_event_fields(status_log *s, int step, const char *message, const char *fields)
{
    cJSON *o = record("event", step, 0);
    cJSON_DeleteItemFromObject(o, "max_steps");
    cJSON_AddStringToObject(o, "message", message);
    cJSON *extra = cJSON_Parse(fields);
    for (cJSON *item = extra ? extra->child : NULL; item; item = item->next)
        cJSON_AddItemToObject(o, item->string, cJSON_Duplicate(item, true));
    cJSON_Delete(extra);
    emit(s, o);
    if (!s->muted)
        fprintf(stderr, "event: %s\n", message);
}

void status_done(status_log *s, int step, double tokens_per_s, double train_s,
                 double peak_gflops, const float *final_loss, const float *val_loss)
{
    cJSON *o = record("event", step, 0);
    cJSON_DeleteItemFromObject(o, "max_steps");
    cJSON_AddStringToObject(o, "message", "done");
    if (final_loss)
        cJSON_AddNumberToObject(o, "loss", *final_loss);
    if (val_loss)
        cJSON_AddNumberToObject(o, "val_loss", *val_loss);
    cJSON_AddNumberToObject(o, "tokens_per_s", tokens_per_s);
    cJSON_AddNumberToObject(o, "train_s", train_s);
    cJSON_AddNumberToObject(o, "peak_gflops", peak_gflops);
    cJSON_AddNumberToObject(o, "peak_rss_mb", process_peak_rss_mb());
    emit(s, o);
}

void status_checkpoint(status_log *s, int step, int max_steps, const char *path, double size_mb,
                       double write_s, double blocked_s)
{
    cJSON *o = record("checkpoint", step, max_steps);
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddNumberToObject(o, "size_mb", size_mb);
    cJSON_AddNumberToObject(o, "write_s", write_s);
    cJSON_AddNumberToObject(o, "blocked_s", blocked_s);
    emit(s, o);
    if (!s->muted)
        fprintf(stderr, "step %5d/%d | checkpoint %s (%.1f MB, %.2f s)\n", step, max_steps, path,
                size_mb, write_s);
}
