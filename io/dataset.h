/* dataset: the train and val token splits of a prepared data directory, and
 * the batches cut from them.
 *
 * Training batches: global sample g of the run is the window at
 * sampler_offset(g); micro-batch j of step s holds the samples
 * (s * grad_accum + j) * ranks * B + b for b < ranks * B, rank r the r-th B
 * of them (dataset_first_sample).
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
    uint64_t train_checksum;   /* train.tok's, as the manifest records it; 0: no manifest */
} dataset;

/* A data directory's files, as build/prep writes them: the splits, the
 * tokenizer and last DATASET_MANIFEST, which records the size and fs_checksum
 * of the other three, so that files of different preparations (a crash
 * between renames, a val.tok copied from elsewhere) are told apart:
 *   {"format": 1, "files": {"train.tok": {"bytes": N, "checksum": "16 hex"}, ...}} */
#define DATASET_MANIFEST "manifest.json"
extern const char *const dataset_files[3];   /* train.tok, val.tok, tokenizer.json */

/* Whether a file name is one a data directory holds (its files, the manifest,
 * or the .tmp files of an interrupted write). */
int dataset_owns_name(const char *name);
/* Writes DIR/manifest.json for the three files now in dir. */
int dataset_write_manifest(const char *dir, char *err, size_t errlen);
/* Everything a run needs from DIR before its first step: the manifest matches
 * every file (read whole), the splits' headers are sound, the tokenizer loads,
 * its vocabulary is at most model_vocab and holds every split's tokens. */
int dataset_check(const char *dir, int model_vocab, char *err, size_t errlen);

/* Whether DIR/tokenizer.json is the tokenizer the checkpoint ckpt stores: 0,
 * or -1 with a reason naming both.  What cannot be read passes here (the
 * checkpoint's loading and dataset_check say why). */
int dataset_check_tokenizer(const char *dir, const char *ckpt, char *err, size_t errlen);

/* dataset_open's refusal of a train split too short for one window: T is
 * the caller's choice, so it is the caller's to name (the trainer's seq_len). */
enum { DATASET_TOO_SHORT = -2 };

/* Opens DIR/train.tok and DIR/val.tok; refuses files whose vocabulary exceeds
 * model_vocab (-1), or a train split too short for one window of T+1 tokens
 * (DATASET_TOO_SHORT; the val split may hold none: dataset_val_windows is
 * then 0).  Takes train.tok's checksum from the manifest, unchecked
 * (dataset_check checks it), so that two processes can tell whether they
 * hold the same data. */
int dataset_open(dataset *d, const char *dir, int T, int model_vocab, uint64_t seed, char *err,
                 size_t errlen);
void dataset_close(dataset *d);

/* Number of training samples (windows) per epoch. */
uint64_t dataset_train_samples(const dataset *d);
/* Number of val windows (0: the split is shorter than T+1 tokens). */
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
