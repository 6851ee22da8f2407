/* fuzz_hffolder: a Hugging Face folder's tokenizer, as build/import --hf DIR and
 * prep --hf DIR read it (tokenizer_load_hf_dir): vocab.json, merges.txt,
 * tokenizer_config.json (added_tokens_decoder, chat_template), added_tokens.json,
 * tokenizer.json (added_tokens) where the first two are absent, and
 * chat_template.jinja.  Input: those six files in that order, separated by NUL
 * bytes; an empty or missing part is a file the folder lacks.  The files go to a
 * folder on /dev/shm.  An accepted tokenizer must round-trip any bytes (here: the
 * input itself), each added token's text must encode to that token, and its chat
 * template, if any, be valid UTF-8 within the bound. */
#include <sys/stat.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/utf8.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/tokcheck.h"

static const char *const NAMES[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                    "added_tokens.json", "tokenizer.json",
                                    "chat_template.jinja"};
enum { NFILES = sizeof NAMES / sizeof *NAMES };
static char dir[64], paths[NFILES][96];

static void remove_files(void)
{
    for (int i = 0; i < NFILES; i++)
        unlink(paths[i]);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(dir, sizeof dir, "%s/fuzz_hffolder.%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FUZZ_CHECK(mkdir(dir, 0700) == 0);
    for (int i = 0; i < NFILES; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, NAMES[i]);
    atexit(remove_files);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    const uint8_t *part = data, *end = data + size;
    for (int i = 0; i < NFILES; i++) {
        const uint8_t *nul = part < end ? memchr(part, 0, (size_t)(end - part)) : NULL;
        size_t len = part < end ? (size_t)((nul ? nul : end) - part) : 0;
        unlink(paths[i]);
        if (len)
            FUZZ_CHECK(fs_write_file_atomic(paths[i], part, len, err, sizeof err) == 0);
        part = nul ? nul + 1 : end;
    }
    tokenizer *t = tokenizer_load_hf_dir(dir, err, sizeof err);
    if (!t) {
        FUZZ_CHECK(err[0] != '\0' && !strchr(err, '\n'));
        return 0;
    }
    FUZZ_CHECK(tokenizer_vocab_size(t) >= 257 && tokenizer_eos(t) >= 0);
    check_round_trip(t, data, size);
    check_cut(t, data, size);
    check_added(t);
    const char *chat = tokenizer_chat_template(t);
    size_t n = chat ? strlen(chat) : 0;
    FUZZ_CHECK(!chat || (n > 0 && n <= TOKENIZER_CHAT_TEMPLATE_MAX));
    for (long step; n > 0; chat += step, n -= (size_t)step)
        FUZZ_CHECK((step = utf8_step((const uint8_t *)chat, n)) > 0);
    tokenizer_free(t);
    return 0;
}
