/* train: the training loop every rank runs (data, forward/backward, the
 * gradient exchange, clipping, AdamW, periodic eval on the val split, status
 * records, checkpoints). */
#ifndef TRAINER_TRAIN_H
#define TRAINER_TRAIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"
#include "trainer/config.h"
#include "trainer/model.h"

typedef struct {
    float final_loss;       /* mean train loss of the last step (steps_run > 0) */
    float final_val_loss;   /* the last eval's loss (evaluated), NaN as it came */
    int steps_done;
    int steps_run;          /* by this process: 0 when a resume had none left */
    bool evaluated;         /* this process ran an eval */
    double train_seconds;   /* time in training steps (eval excluded) */
    double tokens_per_s;    /* median over the steps after the first */
    bool diverged;          /* stopped after too many non-finite steps in a row */
    bool bad_config;        /* refused at start: the config does not fit the data */
} train_result;

/* What a running train_run is asked to do after the current step: written
 * by the program's signal thread and by the run itself (the control
 * socket's requests), read by the run at each step's end. */
typedef struct {
    atomic_int stop;          /* non-zero: stop (saving first) */
    atomic_int checkpoints;   /* one more per request: save and go on */
} train_requests;

/* Runs c->max_steps steps on every rank of world (rank 0 reports), resuming
 * as resume says ("auto", a checkpoint path, NULL: a fresh start) and taking
 * the requests in req.  0 on success, -1 with a one-line reason in err. */
int train_run(const run_config *c, const char *resume, const comm_world *world,
              train_requests *req, train_result *result, char *err, size_t errlen);

/* The environment variables train_run reads (docs/config.md: GPT_ISA, the
 * peaks, GPT_BF16_EMULATE, GPT_PRECISION_CACHE, the restart count), checked
 * before it starts (and GPT_ISA's path made active): the modules that read
 * them later cannot fail and take a bad value's default.  0, or -1 with a
 * one-line reason naming the first variable whose value cannot be honoured. */
int train_check_env(char *err, size_t errlen);

/* The model options train_run starts from for c on `ranks` ranks (the data
 * and the node's sharing add theirs): c's precision, auto taken as fp32
 * until train_run has measured it, and recompute.  tests/bench_model builds
 * the trainer's model with them. */
gpt2_options train_model_options(const run_config *c, int ranks);

#endif
