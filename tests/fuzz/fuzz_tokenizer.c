/* fuzz_tokenizer: tokenizer.json, as prep writes it and the trainer and infer
 * read it, for every tokenizer type: the type field picks the parser
 * (tokenizer_parse dispatches on it), so a new type is fuzzed here as soon as
 * its seeds are in tests/fuzz/corpus/tokenizer/ (gpt2: a tokenizer.json that
 * prep --tokenizer gpt2 wrote; GPT-2's own encoder.json/vocab.bpe files are
 * another format and get a target of their own).  Input: a whole file.
 * An accepted tokenizer must encode any bytes (here: the file itself) to ids
 * below its vocabulary that decode back to the same bytes, and its merges
 * must rebuild the same tokenizer (as a checkpoint stores it). */
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/tokcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size ? size : 1);   /* exact size: no NUL after it */
    if (!json)
        return 0;
    memcpy(json, data, size);
    char err[256] = "";
    tokenizer *t = tokenizer_parse(json, size, err, sizeof err);
    if (!t) {
        FUZZ_CHECK(err[0] != '\0');
        free(json);
        return 0;
    }
    FUZZ_CHECK(tokenizer_vocab_size(t) >= 256);
    check_round_trip(t, data, size);
    check_cut(t, data, size);
    check_added(t);
    size_t nm;
    const uint32_t *merges = tokenizer_merges(t, &nm);
    if (strcmp(tokenizer_type(t), "bpe") == 0) {
        tokenizer *again = tokenizer_new_bpe(merges, nm, tokenizer_split(t), err, sizeof err);
        FUZZ_CHECK(again && tokenizer_same(again, t));
        tokenizer_free(again);
    }
    tokenizer_free(t);
    free(json);
    return 0;
}
