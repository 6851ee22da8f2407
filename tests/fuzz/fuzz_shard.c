/* fuzz_shard: token files (train.tok / val.tok) as the trainer opens them.
 * Input: a whole file.  One that is accepted must have the size its header
 * promises, and every training and val window the trainer cuts from it is
 * either read within the file or refused with a reason (a token beyond the
 * vocabulary the header claims). */
#include "io/dataset.h"
#include "tests/fuzz/fuzz.h"

enum { T = 4, B = 3 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *file = malloc(size ? size : 1);   /* exact size: ASan sees overreads */
    if (!file)
        return 0;
    memcpy(file, data, size);
    token_shard s;
    char err[512];
    if (shard_parse(&s, file, size, "fuzz.tok", err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0');
        free(file);
        return 0;
    }
    FUZZ_CHECK(32 + s.count * s.width == size && (s.width == 2 || s.width == 4));
    if (s.count >= T + 1) {   /* dataset_open's minimum: one window */
        dataset d = {.train = s, .val = s, .T = T, .model_vocab = (int)(s.vocab_size > 1u << 24
                                                                            ? 1u << 24
                                                                            : s.vocab_size),
                     .seed = 3};
        int in[B * T], tg[B * T];
        uint64_t windows = dataset_val_windows(&d), samples = dataset_train_samples(&d);
        for (uint64_t first = 0; first < samples && first < 64; first += B)
            if (dataset_train_batch(&d, first, B, in, tg, err, sizeof err) == 0)
                for (int i = 0; i < B * T; i++)
                    FUZZ_CHECK(in[i] >= 0 && in[i] < d.model_vocab);
        if (windows >= B)
            dataset_val_batch(&d, windows - B, B, in, tg, err, sizeof err);
    }
    free(file);
    return 0;
}
