/* dataset: the train and val token splits of a prepared data directory, and
 * the batches cut from them.
 *
 * Training batches: global sample g of the run is the window at
 * sampler_offset(g); micro-batch j of step s holds the samples
 * (s * grad_accum + j) * B + b for b < B.
 * Evaluation: the val split cut into consecutive, non-overlapping windows of
 * T+1 tokens (each predicts T tokens), in order.
 */
#ifndef IO_DATASET_H
#define IO_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "io/shard.h"

typedef struct {
    token_shard train, val;
    int T;
    int model_vocab;      /* every token must be below it */
    uint64_t seed;
} dataset;

/* Opens DIR/train.tok and DIR/val.tok; refuses files whose vocabulary exceeds
 * model_vocab or that are too short for windows of T+1 tokens. */
int dataset_open(dataset *d, const char *dir, int T, int model_vocab, uint64_t seed, char *err,
                 size_t errlen);
void dataset_close(dataset *d);

/* Number of training samples (windows) per epoch. */
uint64_t dataset_train_samples(const dataset *d);
/* Number of val windows. */
uint64_t dataset_val_windows(const dataset *d);

/* Global index of the first sample of micro-batch `micro` of `step` for `rank`:
 * micro-batch j of step s is samples (s*accum + j) * ranks*B + [0, ranks*B),
 * of which rank r takes the r-th B, so the global batch is the same whatever
 * the number of ranks. */
static inline uint64_t dataset_first_sample(uint64_t step, int micro, int accum, int rank,
                                            int ranks, int B)
{
    return ((step * (uint64_t)accum + (uint64_t)micro) * (uint64_t)ranks + (uint64_t)rank) *
           (uint64_t)B;
}

/* Fill inputs/targets [B,T] with global training samples first .. first+B-1. */
int dataset_train_batch(const dataset *d, uint64_t first, int B, int *inputs, int *targets,
                        char *err, size_t errlen);
/* Fill inputs/targets [B,T] with val windows first .. first+B-1. */
int dataset_val_batch(const dataset *d, uint64_t first, int B, int *inputs, int *targets,
                      char *err, size_t errlen);

#endif
