/* fuzz_loader: the loader's wire format, both directions.  Input: a mode
 * byte, then one message as it arrives on the socket:
 *   mode 0  a batch (or error) reply, decoded by a rank that expects the
 *           step, micro-batch, rank and shape its header names (so that a
 *           well-formed reply gets all the way through), or B = T = 2; a
 *           refused one gets a one-line printable reason;
 *   mode 1  a request to build/loader, answered from a small in-memory
 *           dataset: the reply must be a batch the rank accepts, or an error
 *           reply, never anything else. */
#include <ctype.h>

#include "io/loader.h"
#include "tests/fuzz/fuzz.h"

enum { T = 8, VOCAB = 300, NTOK = 64 };

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void decode_reply(const uint8_t *msg, size_t len)
{
    uint64_t step = 0;
    int micro = 0, rank = 0, B = 2, t = 2;
    if (len >= LOADER_HEADER_BYTES) {
        memcpy(&step, msg + 8, 8);
        micro = (int)get32(msg + 16), rank = (int)get32(msg + 20);
        uint32_t b = get32(msg + 24), tt = get32(msg + 28);
        if (b >= 1 && tt >= 1 && (uint64_t)b * tt <= 4096)   /* what a rank can be configured to */
            B = (int)b, t = (int)tt;
    }
    int *in = malloc((size_t)B * t * sizeof *in), *tg = malloc((size_t)B * t * sizeof *tg);
    char err[512];
    if (in && tg && loader_decode(msg, len, step, micro, rank, B, t, VOCAB, in, tg, err,
                                  sizeof err) == 0) {
        FUZZ_CHECK(len == loader_message_bytes(B, t, msg[6]));
        for (int i = 0; i < B * t; i++)   /* what the rank's embedding can index */
            FUZZ_CHECK(in[i] >= 0 && in[i] < VOCAB && tg[i] >= 0 && tg[i] < VOCAB);
    }
    else if (in && tg)   /* the rank prints it: one line, nothing a terminal would act on */
        for (const char *c = err; *c; c++)
            FUZZ_CHECK(isprint((unsigned char)*c));
    free(in);
    free(tg);
}

static uint16_t tokens[NTOK];
static dataset data;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    for (int i = 0; i < NTOK; i++)
        tokens[i] = (uint16_t)(i * 37 % VOCAB);
    token_shard s = {.data = (const uint8_t *)tokens, .count = NTOK, .width = 2,
                     .vocab_size = VOCAB};
    data = (dataset){.train = s, .val = s, .T = T, .model_vocab = VOCAB, .seed = 7};
    return 0;
}

static void answer_request(const uint8_t *req, size_t len)
{
    char err[512];
    loader_server *s = loader_server_new(&data, err, sizeof err);
    FUZZ_CHECK(s);
    const uint8_t *reply;
    size_t n = loader_server_answer(s, req, len, &reply);
    loader_request r;
    uint64_t refused;
    loader_server_served(s, &refused);
    FUZZ_CHECK(n >= LOADER_HEADER_BYTES);
    if (refused == 0) {   /* a batch: exactly what the rank that asked decodes */
        FUZZ_CHECK(loader_request_decode(req, len, &r, err, sizeof err) == 0);
        size_t bt = (size_t)r.B * (size_t)r.T;
        int *in = malloc(bt * sizeof *in), *tg = malloc(bt * sizeof *tg);
        FUZZ_CHECK(in && tg);
        FUZZ_CHECK(loader_decode(reply, n, r.step, r.micro, r.rank, r.B, r.T, VOCAB, in, tg, err,
                                 sizeof err) == 0);
        for (size_t i = 0; i < bt; i++)
            FUZZ_CHECK(in[i] >= 0 && in[i] < VOCAB && tg[i] >= 0 && tg[i] < VOCAB);
        free(in);
        free(tg);
    } else {
        decode_reply(reply, n);
        FUZZ_CHECK(reply[6] == 0 && reply[7] == 0);   /* width 0: an error reply */
    }
    loader_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data_, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t *msg = malloc(size - 1 ? size - 1 : 1);   /* exact size: ASan sees overreads */
    if (!msg)
        return 0;
    memcpy(msg, data_ + 1, size - 1);
    if (data_[0] & 1)
        answer_request(msg, size - 1);
    else
        decode_reply(msg, size - 1);
    free(msg);
    return 0;
}
