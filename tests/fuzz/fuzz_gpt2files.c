/* fuzz_gpt2files: GPT-2's own tokenizer files, as prep --tokenizer gpt2
 * --vocab-file F --merges M reads them: OpenAI's encoder.json + vocab.bpe or
 * Hugging Face's vocab.json + merges.txt.  Input: the vocabulary file, a NUL
 * byte, the merges file.  tokenizer_load_gpt2 reads paths, so both go to
 * files on /dev/shm.  An accepted pair must give a tokenizer that round-trips
 * any bytes (here: the input itself). */
#include <unistd.h>

#include "io/fsutil.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/tokcheck.h"

static char vocab_path[64], merges_path[64];

static void remove_files(void)
{
    unlink(vocab_path);
    unlink(merges_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(vocab_path, sizeof vocab_path, "%s/fuzz_gpt2.%d.json", dir, (int)getpid());
    snprintf(merges_path, sizeof merges_path, "%s/fuzz_gpt2.%d.bpe", dir, (int)getpid());
    atexit(remove_files);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t vlen = nul ? (size_t)(nul - data) : size;
    size_t mlen = nul ? size - vlen - 1 : 0;
    char err[512] = "";
    FUZZ_CHECK(fs_write_file_atomic(vocab_path, data, vlen, err, sizeof err) == 0);
    FUZZ_CHECK(fs_write_file_atomic(merges_path, data + size - mlen, mlen, err, sizeof err) == 0);
    tokenizer *t = tokenizer_load_gpt2(vocab_path, merges_path, err, sizeof err);
    if (!t) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(tokenizer_vocab_size(t) >= 257 && tokenizer_eos(t) >= 0);
    check_round_trip(t, data, size);
    check_cut(t, data, size);
    check_added(t);
    tokenizer_free(t);
    return 0;
}
