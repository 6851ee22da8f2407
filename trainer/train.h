/* train: the single-process training loop (data, forward/backward, clipping,
 * AdamW, periodic eval on the val split, status records). */
#ifndef TRAINER_TRAIN_H
#define TRAINER_TRAIN_H

#include <stddef.h>

#include "comm/comm.h"
#include "trainer/config.h"

typedef struct {
    float final_loss;       /* mean train loss of the last step, NaN if none ran */
    float final_val_loss;   /* last eval, NaN if none ran */
    int steps_done;
    int steps_run;          /* by this process: 0 when a resume had none left */
    double train_seconds;   /* time in training steps (eval excluded) */
    double tokens_per_s;    /* median over the steps after the first */
} train_result;

/* Runs c->max_steps steps on every rank of world (rank 0 reports); 0 on
 * success, -1 with a one-line reason in err. */
int train_run(const run_config *c, const comm_world *world, train_result *result, char *err,
              size_t errlen);

/* Ask a running train_run to stop after the current step (signal-safe). */
void train_request_stop(void);

#endif
