/* scaler: dynamic loss scaling for fp16 training, PyTorch GradScaler's rule.
 *
 * The loss (and so every gradient) is multiplied by scale so small gradients
 * survive fp16's narrow range; gradients are divided by it again before
 * clipping and the update.  A step whose gradients overflowed (inf/NaN) is
 * skipped and the scale halved, never below SCALER_MIN_SCALE; after
 * growth_interval finite steps in a row it doubles.  The floor is DeepSpeed's
 * min_loss_scale: below 1 the scale only pushes gradients towards fp16's
 * underflow (an overflow at 1 is in the gradients themselves), and overflows
 * spread out over a long run would otherwise halve it until every gradient
 * is a finite 0 and the run silently stops learning.  In fp32 and bf16 (growth_interval 0) the scale is fixed at 1: a
 * non-finite step is still skipped and counted, but halving would buy nothing
 * in fp32's range (bf16 has it too) and would drift for good: a resumed run
 * restarts at 1, and after 150 skips the scale is 0, so is every gradient,
 * and every later step is skipped.
 */
#ifndef TRAINER_SCALER_H
#define TRAINER_SCALER_H

#include <stdbool.h>

#define SCALER_MIN_SCALE 1.0f

typedef struct {
    float scale;
    int growth_interval, good_steps;
    long long overflows;   /* steps skipped for non-finite gradients */
} loss_scaler;

/* growth_interval 0: the scale stays initial_scale (fp32 and bf16: 1). */
void scaler_init(loss_scaler *s, float initial_scale, int growth_interval);
/* Called once per step with whether the scaled gradients were finite; returns
 * whether the step may be applied, and updates the scale for the next one. */
bool scaler_update(loss_scaler *s, bool finite);
/* The state a checkpoint holds (a growing scaler's scale kept at the floor:
 * files written before it may hold less). */
void scaler_restore(loss_scaler *s, double scale, int good_steps);

#endif
