/* fuzz_serve: requests to build/infer --serve.  Input: one request message,
 * any bytes.  A tiny random model (context 16) answers it; every reply must be
 * one JSON object with a boolean "ok" and, when false, an "error" string. */
#include <cjson/cJSON.h>

#include "infer/serve.h"
#include "tests/fuzz/fuzz.h"
#include "tests/infer_from_gpt2.h"

static infer_model model;
static tokenizer *tok;
static infer_server server;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("OMP_NUM_THREADS", "1", 1);   /* the fuzzer runs one input at a time */
    const gpt2_dims dims = {.vocab_size = 256, .n_positions = 16, .n_embd = 16, .n_layer = 1,
                            .n_head = 2};
    gpt2 g;
    gpt2_options o = {0};
    char err[256];
    FUZZ_CHECK(gpt2_create(&g, &dims, 1, dims.n_positions, &o, err, sizeof err) == 0);
    gpt2_init_params(&g, 1);
    FUZZ_CHECK(infer_model_from_gpt2(&model, &g, INFER_FP32, err, sizeof err) == 0);
    gpt2_destroy(&g);
    tok = tokenizer_new_byte();
    FUZZ_CHECK(tok);
    FUZZ_CHECK(infer_server_init(&server, &model, tok, INFER_KV_FP32, err, sizeof err) == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *req = malloc(size ? size : 1);   /* exact size: ASan sees overreads */
    FUZZ_CHECK(req);
    memcpy(req, data, size);
    char *reply = infer_server_handle(&server, req, size);
    FUZZ_CHECK(reply);
    cJSON *r = cJSON_Parse(reply);
    FUZZ_CHECK(cJSON_IsObject(r));
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
    FUZZ_CHECK(cJSON_IsBool(ok));
    if (cJSON_IsFalse(ok))
        FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "error")));
    else
        FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "text")));
    cJSON_Delete(r);
    free(reply);
    free(req);
    return 0;
}
