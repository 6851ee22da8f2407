/* status: the run's status records.  Each record is one JSON object (fields
 * as docs/design.md: type, step, max_steps, loss, lr, tokens_per_s, mfu, ...),
 * appended as a line to OUT_DIR/log.jsonl; step records also print a one-line
 * progress report on stderr. */
#ifndef TRAINER_STATUS_H
#define TRAINER_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "io/procmem.h"   /* process_rss_mb, process_peak_rss_mb: rss_mb, peak_rss_mb */

typedef struct {
    int step, max_steps, ranks;
    float loss, lr, grad_norm;
    double step_ms, tokens_per_s, mfu, elapsed_s, eta_s;
    double loader_wait_ms, comm_ms, rss_mb;
    double comm_tail_ms;   /* the least comm_ms over ranks: the last rank to finish backward
                            * waits only for what the reduction did not hide, the others
                            * also for it (comm_ms, the largest, counts that skew) */
    /* Of the rank that waited least (as comm_tail_ms): */
    double comm_exposed_ms;   /* the step's waits for communication: gradient reduction,
                               * embedding rows and ZeRO's parameter allgather */
    double comm_total_ms;     /* the step's communication in flight, hidden or not */
    double comm_hidden;       /* 1 - exposed / total */
    double comm_cpu_ms;       /* CPU time the exchange's progress thread took (largest over ranks) */
    double peak_rss_mb;    /* the largest RSS so far (with several ranks: of the largest rank) */
    double optimizer_mb;   /* this rank's Adam moments (1/N of them under ZeRO) */
    double optimizer_ms;   /* the optimizer step (ZeRO's allgather overlaps the next forward) */
    double loss_scale;     /* fp16 loss scale (0: not fp16, field omitted) */
    long long overflows;   /* fp16 steps skipped for non-finite gradients */
    int loader_queue;      /* batches ready ahead of the trainer (-1: unknown) */
    int skipped_steps;
} step_stats;

typedef struct {
    FILE *log;
    char log_path[1024];
    bool log_failing;   /* the last write to log failed (said once on stderr) */
    bool log_cut;       /* it left part of a record: the next one starts a line */
    int log_every;
    bool muted;   /* ranks other than 0: every call does nothing */
    struct publisher *pub;   /* status socket, NULL for none (trainer/publisher.h) */
    struct metrics *metrics; /* Prometheus endpoint, NULL for none (trainer/metrics.h) */
    int last_ckpt_step;      /* the last "checkpoint" record (0: none), */
    double last_ckpt_time;   /* repeated in step records for late subscribers */
} status_log;

int status_open(status_log *s, const char *out_dir, int log_every, char *err, size_t errlen);
void status_close(status_log *s);

void status_step(status_log *s, const step_stats *st);
void status_eval(status_log *s, int step, int max_steps, float val_loss, double eval_s);
/* type is "event" or "error"; events are also echoed on stderr. */
void status_event(status_log *s, const char *type, int step, const char *message);

/* An "event" record with the fields of the JSON object `fields` added next to
 * message (e.g. the training event's precision measurement); echoed on stderr. */
void status_event_fields(status_log *s, int step, const char *message, const char *fields);

/* The closing "event" record (message "done") with the run's summary figures;
 * final_loss NULL: no step ran, val_loss NULL: no eval ran (a NaN is null). */
void status_done(status_log *s, int step, double tokens_per_s, double train_s,
                 double peak_gflops, const float *final_loss, const float *val_loss);

/* a "checkpoint" record (path, size_mb, write_s, and blocked_s: the
 * time the training loop waited for it), also echoed on stderr. */
void status_checkpoint(status_log *s, int step, int max_steps, const char *path, double size_mb,
                       double write_s, double blocked_s);

#endif
