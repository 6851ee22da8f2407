#include "io/dataset.h"

#include <inttypes.h>
#include <stdio.h>

#include "io/sampler.h"

static int open_split(token_shard *s, const char *dir, const char *name, int T, int model_vocab,
                      char *err, size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (shard_open(s, path, err, errlen) != 0)
        return -1;
    if (s->vocab_size > (uint32_t)model_vocab) {
        snprintf(err, errlen, "%s: tokens go up to %" PRIu32 " but the model's vocab_size is %d",
                 path, s->vocab_size, model_vocab);
        shard_close(s);
        return -1;
    }
    if (s->count < (uint64_t)T + 2) {
        snprintf(err, errlen, "%s: %" PRIu64 " tokens is too few for windows of %d+1 tokens", path,
                 s->count, T);
        shard_close(s);
        return -1;
    }
    return 0;
}

int dataset_open(dataset *d, const char *dir, int T, int model_vocab, uint64_t seed, char *err,
                 size_t errlen)
{
    *d = (dataset){.T = T, .model_vocab = model_vocab, .seed = seed};
    if (open_split(&d->train, dir, "train.tok", T, model_vocab, err, errlen) != 0)
        return -1;
    if (open_split(&d->val, dir, "val.tok", T, model_vocab, err, errlen) != 0) {
        shard_close(&d->train);
        return -1;
    }
    return 0;
}

void dataset_close(dataset *d)
{
    shard_close(&d->train);
    shard_close(&d->val);
}

uint64_t dataset_train_samples(const dataset *d)
{
    return d->train.count - (uint64_t)d->T;
}

uint64_t dataset_val_windows(const dataset *d)
{
    return (d->val.count - 1) / (uint64_t)d->T;
}

/* Copy the window at offset into one row; a token beyond the model's vocabulary
 * (a damaged file whose header lies) is an error, never an out-of-bounds read. */
static int fill_row(const token_shard *s, uint64_t offset, int T, int vocab, int *inputs,
                    int *targets, char *err, size_t errlen)
{
    for (int t = 0; t <= T; t++) {
        uint32_t tok = shard_token(s, offset + (uint64_t)t);
        if (tok >= (uint32_t)vocab) {
            snprintf(err, errlen, "token %" PRIu32 " at position %" PRIu64
                     " is out of range for vocab_size %d", tok, offset + (uint64_t)t, vocab);
            return -1;
        }
        if (t < T)
            inputs[t] = (int)tok;
        if (t > 0)
            targets[t - 1] = (int)tok;
    }
    return 0;
}

int dataset_train_batch(const dataset *d, uint64_t first, int B, int *inputs, int *targets,
                        char *err, size_t errlen)
{
    uint64_t n = dataset_train_samples(d);
    for (int b = 0; b < B; b++) {
        uint64_t off = sampler_offset(first + (uint64_t)b, n, d->seed);
        if (fill_row(&d->train, off, d->T, d->model_vocab, inputs + (size_t)b * d->T,
                     targets + (size_t)b * d->T, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int dataset_val_batch(const dataset *d, uint64_t first, int B, int *inputs, int *targets,
                      char *err, size_t errlen)
{
    for (int b = 0; b < B; b++) {
        uint64_t off = (first + (uint64_t)b) * (uint64_t)d->T;
        if (fill_row(&d->val, off, d->T, d->model_vocab, inputs + (size_t)b * d->T,
                     targets + (size_t)b * d->T, err, errlen) != 0)
            return -1;
    }
    return 0;
}
