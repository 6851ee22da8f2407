/* infer on GGUF files (build/infer --ckpt FILE.gguf) that a tool other than
 * build/export may have written: a small q8_0 file laid out as export lays it
 * out loads with every --quant; one whose tensors disagree with its metadata
 * (before anything is allocated at the metadata's size), whose Q8_0 scales
 * are not finite, or whose tokenizer has more tokens than the model has rows
 * is refused with one line, whatever --quant asks, before a weight is used.
 * A bpe file's gpt_cpu.tokenizer.split gives the tokenizer's split back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/infer.h"
#include "io/gguf.h"
#include "io/hf_names.h"
#include "io/procmem.h"
#include "kernels/convert.h"

enum { C = 32, T = 8, H = 2 };

static char dir[] = "/tmp/test_infer_gguf.XXXXXX";
static char path[256];

/* What the file holds; the defaults describe a valid one. */
typedef struct {
    int vocab;             /* token_embd's rows */
    int layers;            /* blocks of tensors */
    int block_count;       /* gpt2.block_count */
    int context;           /* gpt2.context_length (position_embd has T rows) */
    const char *type;      /* gpt_cpu.tokenizer.type */
    const char *split;     /* gpt_cpu.tokenizer.split (NULL: none) */
    const char *short_of;  /* this Q8_0 matrix (llama.cpp name) is declared a row short */
    uint16_t qkv_scale;    /* fp16 bits of blk.0.attn_qkv.weight's first scale */
} spec;

static const spec VALID = {.vocab = 256, .layers = 1, .block_count = 1, .context = T,
                           .type = "byte", .qkv_scale = 0x2000};

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

/* gpt2 metadata as build/export writes it, the tokens spelled as GPT-2 does. */
static void put_metadata(gguf_writer *w, const spec *s)
{
    char *tok[256];
    size_t len[256];
    for (int i = 0; i < s->vocab; i++) {
        uint8_t b = (uint8_t)i;
        tok[i] = malloc(3);
        len[i] = tokenizer_spell_gpt2(&b, 1, tok[i]);
    }
    assert_int_equal(gguf_put_str(w, "general.architecture", "gpt2") |
                     gguf_put_u32(w, "gpt2.context_length", (uint32_t)s->context) |
                     gguf_put_u32(w, "gpt2.embedding_length", C) |
                     gguf_put_u32(w, "gpt2.feed_forward_length", 4 * C) |
                     gguf_put_u32(w, "gpt2.block_count", (uint32_t)s->block_count) |
                     gguf_put_u32(w, "gpt2.attention.head_count", H) |
                     gguf_put_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f) |
                     gguf_put_str(w, "gpt_cpu.tokenizer.type", s->type) |
                     gguf_put_str_array(w, "tokenizer.ggml.tokens", (const char *const *)tok, len,
                                        (size_t)s->vocab) |
                     (s->split ? gguf_put_str(w, "gpt_cpu.tokenizer.split", s->split) : 0), 0);
    for (int i = 0; i < s->vocab; i++)
        free(tok[i]);
}

/* rows of in values as Q8_0 blocks of small values; the first scale as given. */
static void put_q8_0(gguf_writer *w, size_t rows, int in, uint16_t first_scale)
{
    char err[256];
    uint8_t b[GGUF_Q8_0_BYTES];
    for (size_t g = 0; g < rows * (size_t)(in / GGUF_Q8_0_BLOCK); g++) {
        uint16_t h = g == 0 ? first_scale : 0x2000;   /* 2^-7 */
        memcpy(b, &h, 2);
        for (int j = 0; j < GGUF_Q8_0_BLOCK; j++)
            b[2 + j] = (uint8_t)(int8_t)((int)((g * 7 + (size_t)j * 13) % 21) - 10);
        assert_int_equal(gguf_write_data(w, b, sizeof b, err, sizeof err), 0);
    }
}

static void put_f32(gguf_writer *w, size_t n)
{
    char err[256];
    for (size_t i = 0; i < n; i++) {
        float x = 0.5f + 0.01f * (float)(i % 7);
        assert_int_equal(gguf_write_data(w, &x, sizeof x, err, sizeof err), 0);
    }
}

/* A GGUF of a C-wide model: token_embd and the matrices Q8_0, the rest F32. */
static void write_gguf(const spec *s)
{
    char err[256], name[96];
    int n = hf_gpt2_count(s->layers);
    hf_tensor t[64];
    uint64_t ne[64][2];
    int ndim[64], q8[64];
    hf_gpt2_tensors(s->vocab, T, C, s->layers, t);
    gguf_writer *w = gguf_writer_new();
    put_metadata(w, s);
    for (int i = 0; i < n; i++) {
        hf_gpt2_llama_name(i, s->layers, name, sizeof name);
        q8[i] = i == 0 || (i >= 2 && t[i].cols && t[i].matrix_weight);
        ndim[i] = t[i].cols ? 2 : 1;
        ne[i][0] = (uint64_t)(q8[i] && i ? t[i].rows : t[i].cols ? t[i].cols : t[i].rows);
        ne[i][1] = (uint64_t)(q8[i] && i ? t[i].cols : t[i].rows);
        if (s->short_of && strcmp(name, s->short_of) == 0)
            ne[i][1]--;
        assert_int_equal(gguf_add_tensor(w, name, ndim[i], ne[i], q8[i] ? GGML_Q8_0 : GGML_F32), 0);
    }
    unlink(path);
    assert_int_equal(gguf_write_begin(w, path, err, sizeof err), 0);
    for (int i = 0; i < n; i++) {
        size_t rows = ndim[i] == 2 ? ne[i][1] : 1;
        if (q8[i])
            put_q8_0(w, rows, (int)ne[i][0], i == 2 + HF_QKV_W ? s->qkv_scale : 0x2000);
        else
            put_f32(w, rows * ne[i][0]);
    }
    assert_int_equal(gguf_write_commit(w, err, sizeof err), 0);
    gguf_writer_free(w);
}

static const infer_quant ALL[] = {INFER_INT8, INFER_BF16, INFER_FP32};

static void expect_refused(const spec *s, const char *want)
{
    write_gguf(s);
    for (int i = 0; i < 3; i++) {
        infer_model m;
        tokenizer *tok = NULL;
        char err[512] = "";
        if (infer_load(path, ALL[i], &m, &tok, err, sizeof err) == 0)
            fail_msg("--quant %s loaded a file that should be refused for '%s'",
                     infer_quant_name(ALL[i]), want);
        assert_null(tok);
        assert_null(strchr(err, '\n'));
        if (!strstr(err, want))
            fail_msg("--quant %s: error '%s' does not mention '%s'", infer_quant_name(ALL[i]),
                     err, want);
    }
}

static void test_valid_file_runs(void **state)
{
    (void)state;
    write_gguf(&VALID);
    for (int i = 0; i < 3; i++) {
        infer_model m;
        infer_state st;
        tokenizer *tok = NULL;
        char err[512] = "";
        if (infer_load(path, ALL[i], &m, &tok, err, sizeof err) != 0)
            fail_msg("--quant %s: %s", infer_quant_name(ALL[i]), err);
        assert_int_equal(m.d.vocab_size, VALID.vocab);
        assert_int_equal(infer_state_create(&st, &m, 0, INFER_KV_FP32, err, sizeof err), 0);
        int toks[2] = {'a', 'b'};
        infer_forward(&m, &st, toks, 2, 0, NULL);
        for (int v = 0; v < m.d.vocab_size; v++)
            assert_true(st.logits[v] == st.logits[v]);   /* not NaN */
        infer_state_free(&st);
        infer_model_free(&m);
        tokenizer_free(tok);
    }
}

/* The int8 run took a q8_0 matrix's blocks trusting the model's shape and
 * read past the tensor's bytes (into the next tensor, or past the file). */
static void test_matrix_shorter_than_the_model(void **state)
{
    (void)state;
    spec s = VALID;
    s.short_of = "blk.0.attn_qkv.weight";
    expect_refused(&s, "blk.0.attn_qkv.weight has the wrong shape");
    s.short_of = "blk.0.ffn_down.weight";   /* the last matrix: nothing after it but vectors */
    expect_refused(&s, "blk.0.ffn_down.weight has the wrong shape");
}

/* fp32 and bf16 refuse such a scale as a non-finite weight; int8 ran it. */
static void test_non_finite_q8_0_scale(void **state)
{
    (void)state;
    spec s = VALID;
    const uint16_t bad[] = {0x7c00, 0xfc00, 0x7e00};   /* +inf, -inf, NaN */
    for (int i = 0; i < 3; i++) {
        s.qkv_scale = bad[i];
        expect_refused(&s, "non-finite");
    }
}

/* The byte tokenizer has 256 tokens whatever the file's token count: a model
 * of fewer rows would be asked for logits and embeddings it does not have. */
static void test_tokenizer_larger_than_the_model(void **state)
{
    (void)state;
    spec s = VALID;
    s.vocab = 100;
    expect_refused(&s, "tokenizer.ggml.tokens has 100 tokens but its byte tokenizer has 256");
}

/* The metadata's dimensions are checked against the tensors before anything
 * is allocated for them: a context_length of 1M (the most the dimensions
 * allow) had 128 MB of position embeddings zeroed before their shape was seen; a smaller block_count ran
 * the first blocks alone. */
static void test_metadata_disagrees_with_tensors(void **state)
{
    (void)state;
    spec s = VALID;
    s.context = 1 << 20;
    const double peak = process_peak_rss_mb();
    expect_refused(&s, "position_embd.weight has the wrong shape");
    assert_true(process_peak_rss_mb() - peak < 100);
    s = VALID;
    s.layers = 2;
    expect_refused(&s, "gpt2.block_count is 1 but the file holds more blocks");
}

/* A bpe file names its split; one written before the key existed has none and
 * means the bytes split; an unknown split is refused, named. */
static void test_bpe_split(void **state)
{
    (void)state;
    spec s = VALID;
    s.type = "bpe";
    const char *split[] = {NULL, "bytes", "gpt2"};
    const tokenizer_split_kind want[] = {TOKENIZER_SPLIT_BYTES, TOKENIZER_SPLIT_BYTES,
                                         TOKENIZER_SPLIT_GPT2};
    for (int i = 0; i < 3; i++) {
        s.split = split[i];
        write_gguf(&s);
        infer_model m;
        tokenizer *tok = NULL;
        char err[512] = "";
        if (infer_load(path, INFER_FP32, &m, &tok, err, sizeof err) != 0)
            fail_msg("split %s: %s", split[i] ? split[i] : "(none)", err);
        assert_string_equal(tokenizer_type(tok), "bpe");
        assert_int_equal(tokenizer_split(tok), want[i]);
        infer_model_free(&m);
        tokenizer_free(tok);
    }
    s.split = "unicode";
    expect_refused(&s, "gpt_cpu.tokenizer.split \"unicode\" is unknown (gpt2 or bytes)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file_runs),
        cmocka_unit_test(test_matrix_shorter_than_the_model),
        cmocka_unit_test(test_non_finite_q8_0_scale),
        cmocka_unit_test(test_tokenizer_larger_than_the_model),
        cmocka_unit_test(test_metadata_disagrees_with_tensors),
        cmocka_unit_test(test_bpe_split),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
