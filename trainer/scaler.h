/* scaler: dynamic loss scaling for fp16 training, PyTorch GradScaler's rule.
 *
 * The loss (and so every gradient) is multiplied by scale so small gradients
 * survive fp16's narrow range; gradients are divided by it again before
 * clipping and the update.  A step whose gradients overflowed (inf/NaN) is
 * skipped and the scale halved; after growth_interval finite steps in a row it
 * doubles.  In fp32 and bf16 the scale stays 1.
 */
#ifndef TRAINER_SCALER_H
#define TRAINER_SCALER_H

#include <stdbool.h>

typedef struct {
    float scale;
    int growth_interval, good_steps;
    long long overflows;   /* steps skipped for non-finite gradients */
} loss_scaler;

void scaler_init(loss_scaler *s, float initial_scale, int growth_interval);
/* Called once per step with whether the scaled gradients were finite; returns
 * whether the step may be applied, and updates the scale for the next one. */
bool scaler_update(loss_scaler *s, bool finite);

#endif
