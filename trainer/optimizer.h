/* optimizer: AdamW over the model's parameter arena with global-norm gradient
 * clipping and the learning-rate schedule (linear warmup, cosine decay to
 * min_lr, as nanoGPT).  Weight decay applies to 2-D weights only. */
#ifndef TRAINER_OPTIMIZER_H
#define TRAINER_OPTIMIZER_H

#include <stdbool.h>

#include "trainer/config.h"
#include "trainer/model.h"

typedef struct {
    float *m, *v;   /* first and second moments, [num_params] each */
    size_t n;
    int step;       /* optimizer steps taken */
} adamw_state;

int optimizer_create(adamw_state *s, size_t n, char *err, size_t errlen);
void optimizer_destroy(adamw_state *s);

/* Learning rate for step (0-based). */
float lr_schedule(const run_config *c, int step);

/* Global L2 norm of the gradients. */
float grad_global_norm(const gpt2 *m);

/* Clip to grad_clip (0: no clipping) and apply one AdamW update with lr.
 * A non-finite grad_norm skips the update and returns false. */
bool optimizer_step(adamw_state *s, gpt2 *m, const run_config *c, float lr, float grad_norm);

#endif
