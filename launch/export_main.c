/* export: a checkpoint -> a Hugging Face folder or a GGUF file for llama.cpp.
 *
 *   build/export --ckpt CK.h5 --format hf --out DIR [--dtype f32|f16|bf16]
 *   build/export --ckpt CK.h5 --format gguf --out FILE.gguf [--type f32|f16|q8_0]
 *
 * hf: config.json as transformers' GPT2LMHeadModel reads it, model.safetensors
 * under the checkpoint's own (Hugging Face) names in the Conv1D layout,
 * generation_config.json, and the tokenizer as tokenizer.json +
 * tokenizer_config.json (Hugging Face's tokenizers library: our ids, our
 * pre-split for bpe) and as vocab.json + merges.txt (the slow GPT2Tokenizer,
 * build/import: our ids too but for bpe of the bytes split).  gguf: llama.cpp's gpt2 architecture: its tensor
 * names, each weight matrix transposed to [out, in] rows (ne = {in, out}), the
 * gpt2.* hyper-parameters and the tokenizer.ggml.* vocabulary; q8_0 quantizes
 * the weight matrices exactly as infer's int8 mode does (fp16 scales, one per
 * 32 inputs), so the file holds the int8 model infer runs.  Norms, biases and
 * the position embedding stay F32.  token_embd has a row per token of the
 * tokenizer: llama.cpp refuses one of any other size, so a vocabulary padded
 * for speed (50257 -> 50304) loses its padding rows, whose logits the trainer
 * masks to -inf.
 *
 * The vocabulary of every tokenizer type is written GPT-2's way: each token's
 * bytes spelled with GPT-2's byte-to-unicode map, merges as "left right" pairs
 * of such spellings (none for the byte tokenizer); gguf names bpe's split in
 * gpt_cpu.tokenizer.split.  A chat template the tokenizer carries goes to
 * tokenizer_config.json's chat_template and GGUF's tokenizer.chat_template.  An
 * existing output name is refused before anything is read, and nothing is left
 * under it when anything fails.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "io/gguf.h"
#include "io/hf_names.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "io/utf8.h"
#include "kernels/convert.h"
#include "kernels/cpu.h"
#include "kernels/q8.h"

static const char USAGE[] =
    "usage: build/export --ckpt CK.h5 --format hf --out DIR [--dtype|--type f32|f16|bf16]\n"
    "       build/export --ckpt CK.h5 --format gguf --out FILE.gguf [--type f32|f16|q8_0]\n"
    "Writes a checkpoint's model and tokenizer for other programs.\n"
    "  --ckpt CK.h5  the checkpoint (the trainer's or build/import's)\n"
    "  --format F    hf: a Hugging Face folder that transformers loads: config.json,\n"
    "                generation_config.json, model.safetensors, and the tokenizer as\n"
    "                tokenizer.json + tokenizer_config.json (fast tokenizers, transformers.js:\n"
    "                our ids; for a bpe of the bytes split but where a run of one kind of\n"
    "                byte reaches 256 bytes) and as vocab.json + merges.txt (the slow\n"
    "                GPT2Tokenizer: GPT-2's pre-split, other ids for a bpe of the bytes\n"
    "                split); gguf: one file llama.cpp and build/infer load (llama.cpp: our\n"
    "                ids but for a bpe of the bytes split).  Both keep the tokenizer's chat\n"
    "                template (tokenizer_config.json chat_template, tokenizer.chat_template)\n"
    "  --out PATH    the folder (hf) or file (gguf) to write: a new name, an existing file\n"
    "                or folder is refused.  A folder is built in PATH.tmp-XXXXXX beside it;\n"
    "                those a killed export left are removed, and named on stderr\n"
    "  --dtype D     hf only: the tensors as f32 (default), f16 or bf16\n"
    "  --type T      gguf: the weight matrices and token embedding as f32 (default),\n"
    "                f16 or q8_0 (infer's int8 model; needs n_embd a multiple of 32);\n"
    "                hf: the same as --dtype\n"
    "Exit status: 0 ok, 1 unusable checkpoint or failed write, 2 bad arguments or GPT_ISA\n"
    "(a kernel path: scalar, avx2 or avx512, one this CPU runs).\n";

typedef struct {
    const char *path;   /* the checkpoint's */
    ckpt_model_file *ck;
    gpt2_dims d;
    tokenizer *tok;
    hf_tensor *t;   /* the model's tensors, Hugging Face order */
    int n;
    float *buf;     /* the largest tensor */
    size_t most;    /* its values */
} model_src;

/* Values of the largest tensor: wte, wpe or a block's [C, 4C] product. */
static size_t largest_tensor(const gpt2_dims *d)
{
    size_t C = (size_t)d->n_embd, most = (size_t)d->vocab_size * C;
    if ((size_t)d->n_positions * C > most)
        most = (size_t)d->n_positions * C;
    return 4 * C * C > most ? 4 * C * C : most;
}

static int open_model(model_src *m, const char *path, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    if (ckpt_model_open(path, &m->ck, &m->d, err, errlen) != 0)
        return -1;
    /* /config allows up to 2^30 each: the tensor list and buffers below need less */
    char why[200];
    if (hf_gpt2_dims_check(&m->d, why, sizeof why) != 0) {
        snprintf(err, errlen, "%.800s: /config %s", path, why);
        return -1;
    }
    if (!(m->tok = ckpt_model_tokenizer(m->ck, err, errlen)))
        return -1;
    if (tokenizer_vocab_size(m->tok) > m->d.vocab_size) {
        snprintf(err, errlen, "%.800s: the tokenizer has %d tokens but the model only %d rows",
                 path, tokenizer_vocab_size(m->tok), m->d.vocab_size);
        return -1;
    }
    if (!(m->t = hf_gpt2_tensor_list(&m->d, &m->n))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* every shape against /config before the buffers are sized by it: a
     * /config claiming fewer blocks than /model holds exported part of the
     * model, one claiming huge dimensions failed as "out of memory" */
    for (int i = 0; i < m->n; i++)
        if (ckpt_model_tensor(m->ck, m->t[i].name, m->t[i].rows, m->t[i].cols, NULL, err,
                              errlen) != 0)
            return -1;
    char next[HF_NAME_MAX];
    snprintf(next, sizeof next, "transformer.h.%d.ln_1.weight", m->d.n_layer);
    if (ckpt_model_tensor(m->ck, next, m->d.n_embd, 0, NULL, why, sizeof why) == 0) {
        snprintf(err, errlen, "%.800s: /config n_layer is %d but /model holds more blocks", path,
                 m->d.n_layer);
        return -1;
    }
    m->most = largest_tensor(&m->d);
    if (!(m->buf = malloc(m->most * sizeof *m->buf))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void close_model(model_src *m)
{
    ckpt_model_close(m->ck);
    tokenizer_free(m->tok);
    free(m->t);
    free(m->buf);
}

/* Tensor i into m->buf; NaN and inf are refused, as infer and import refuse
 * them (q8_0 turned them into finite int8 weights that infer ran). */
static int read_tensor(model_src *m, int i, char *err, size_t errlen)
{
    const hf_tensor *t = &m->t[i];
    if (ckpt_model_tensor(m->ck, t->name, t->rows, t->cols, m->buf, err, errlen) != 0)
        return -1;
    if (!f32_all_finite(m->buf, (size_t)t->rows * (size_t)(t->cols ? t->cols : 1))) {
        snprintf(err, errlen, "%.800s: /model/%s holds NaN or infinite values", m->path, t->name);
        return -1;
    }
    return 0;
}

/* ---- the vocabulary, spelled GPT-2's way ---------------------------------------- */

typedef struct {
    char **tok;      /* each token's spelling (NUL-terminated) */
    size_t *len;
    int n;
    int nmodel;      /* ids 0..nmodel-1 in vocab.json and model.vocab (model_vocab_size) */
    char **merge;    /* "left right" */
    size_t *mlen;
    size_t nmerges;
} vocab_text;

static void free_vocab(vocab_text *v)
{
    for (int i = 0; v->tok && i < v->n; i++)
        free(v->tok[i]);
    for (size_t i = 0; v->merge && i < v->nmerges; i++)
        free(v->merge[i]);
    free(v->tok);
    free(v->len);
    free(v->merge);
    free(v->mlen);
}

/* An added token's name is its text, as Hugging Face's vocabularies and llama.cpp's
 * converter give it (" <x>", not "Ġ<x>"): tokenizers looks an added token's content up
 * in model.vocab, and llama.cpp matches a CONTROL or USER_DEFINED token by its text.
 * Text that is not UTF-8 (no JSON string or GGUF token can hold it) keeps the spelling.
 * Merges, made before, keep spellings.  0, or -1 when out of memory. */
static int own_texts(const tokenizer *t, vocab_text *v)
{
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    for (size_t i = 0; i < n; i++) {
        char *text = utf8_valid_copy(a[i].content, a[i].len);
        if (!text)
            return -1;
        if (strlen(text) != a[i].len || memcmp(text, a[i].content, a[i].len) != 0) {
            free(text);
            continue;
        }
        free(v->tok[a[i].id]);
        v->tok[a[i].id] = text;
        v->len[a[i].id] = a[i].len;
    }
    return 0;
}

/* How many ids vocab.json and model.vocab hold: all but a last run of added tokens
 * from the first one that is not special on.  tokenizers (0.13, the binding's) matches
 * an added token that is not special only when model.vocab lacks it, and numbers such
 * tokens, absent from model.vocab, on from its size in the order added_tokens lists
 * them: in id order, they get our ids.  An added token that is not special but inside
 * that vocabulary (below a token that is not added) stays in it. */
static int model_vocab_size(const tokenizer *t)
{
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    const size_t vocab = (size_t)tokenizer_vocab_size(t);
    int size = (int)vocab;
    for (size_t i = n; i > 0 && a[i - 1].id + n == vocab + i - 1; i--)   /* ids vocab-n+i-1 */
        if (!a[i - 1].special)
            size = (int)a[i - 1].id;
    return size;
}

static int spell_vocab(const tokenizer *t, vocab_text *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    v->n = tokenizer_vocab_size(t);
    v->nmodel = model_vocab_size(t);
    size_t nm = 0;
    const uint32_t *merges = tokenizer_merges(t, &nm);
    v->tok = calloc((size_t)v->n, sizeof *v->tok);
    v->len = calloc((size_t)v->n, sizeof *v->len);
    v->merge = calloc(nm ? nm : 1, sizeof *v->merge);
    v->mlen = calloc(nm ? nm : 1, sizeof *v->mlen);
    if (!v->tok || !v->len || !v->merge || !v->mlen)
        goto oom;
    uint8_t bytes[1024];
    for (int id = 0; id < v->n; id++) {
        uint32_t u = (uint32_t)id;
        size_t nb = tokenizer_decode(t, &u, 1, bytes, sizeof bytes);
        if (nb > sizeof bytes) {
            snprintf(err, errlen, "token %d is longer than %zu bytes", id, sizeof bytes);
            return -1;
        }
        if (!(v->tok[id] = malloc(2 * nb + 1)))
            goto oom;
        v->len[id] = tokenizer_spell_gpt2(bytes, nb, v->tok[id]);
    }
    for (size_t i = 0; i < nm; i++, v->nmerges++) {
        uint32_t a = merges[2 * i], b = merges[2 * i + 1];
        if (!(v->merge[i] = malloc(v->len[a] + v->len[b] + 2)))
            goto oom;
        v->mlen[i] = (size_t)sprintf(v->merge[i], "%s %s", v->tok[a], v->tok[b]);
    }
    if (own_texts(t, v) == 0)
        return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- Hugging Face folder ----------------------------------------------------------- */

/* Writes o as dir/name and frees it. */
static int write_json(const char *dir, const char *name, cJSON *o, char *err, size_t errlen)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = cJSON_Print(o);
    int rc = s ? fs_write_file_atomic(path, s, strlen(s), err, errlen) : -1;
    if (!s)
        snprintf(err, errlen, "out of memory");
    free(s);
    cJSON_Delete(o);
    return rc;
}

static int hf_config(const char *dir, const model_src *m, const char *dtype, char *err,
                     size_t errlen)
{
    const gpt2_dims *d = &m->d;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray((const char *[]){"GPT2LMHeadModel"}, 1));
    cJSON_AddStringToObject(o, "model_type", "gpt2");
    cJSON_AddNumberToObject(o, "vocab_size", tokenizer_vocab_size(m->tok));   /* no padding rows */
    cJSON_AddNumberToObject(o, "n_positions", d->n_positions);
    cJSON_AddNumberToObject(o, "n_ctx", d->n_positions);
    cJSON_AddNumberToObject(o, "n_embd", d->n_embd);
    cJSON_AddNumberToObject(o, "n_layer", d->n_layer);
    cJSON_AddNumberToObject(o, "n_head", d->n_head);
    cJSON_AddNullToObject(o, "n_inner");
    cJSON_AddStringToObject(o, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", 1e-5);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "resid_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "embd_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "attn_pdrop", 0.0);
    cJSON_AddTrueToObject(o, "scale_attn_weights");
    cJSON_AddFalseToObject(o, "scale_attn_by_inverse_layer_idx");
    cJSON_AddFalseToObject(o, "reorder_and_upcast_attn");
    cJSON_AddTrueToObject(o, "tie_word_embeddings");
    cJSON_AddTrueToObject(o, "use_cache");
    int eos = tokenizer_eos(m->tok);
    if (eos >= 0) {
        cJSON_AddNumberToObject(o, "bos_token_id", eos);
        cJSON_AddNumberToObject(o, "eos_token_id", eos);
    } else {   /* absent, GPT2Config would take GPT-2's 50256 */
        cJSON_AddNullToObject(o, "bos_token_id");
        cJSON_AddNullToObject(o, "eos_token_id");
    }
    cJSON_AddStringToObject(o, "torch_dtype", dtype);
    return write_json(dir, "config.json", o, err, errlen);
}

static int by_spelling(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* vocab.json maps each spelling to one id: -1 with a reason when two tokens
 * are the same bytes.  Sorted, so GPT-2's 50257 tokens take milliseconds. */
static int check_distinct(const vocab_text *v, char *err, size_t errlen)
{
    char ***sorted = malloc((v->n ? (size_t)v->n : 1) * sizeof *sorted);
    if (!sorted)
        return fs_fail(err, errlen, "out of memory");
    for (int id = 0; id < v->n; id++)
        sorted[id] = &v->tok[id];
    qsort(sorted, (size_t)v->n, sizeof *sorted, by_spelling);
    int rc = 0;
    for (int i = 1; i < v->n && rc == 0; i++)
        if (strcmp(*sorted[i - 1], *sorted[i]) == 0)
            rc = fs_fail(err, errlen, "tokens %td and %td are the same bytes: vocab.json cannot "
                         "hold both", sorted[i - 1] - v->tok, sorted[i] - v->tok);
    free(sorted);
    return rc;
}

/* {spelling: id}, vocab.json's and tokenizer.json's model.vocab. */
static cJSON *vocab_object(const vocab_text *v)
{
    cJSON *o = cJSON_CreateObject();
    for (int id = 0; id < v->nmodel; id++)
        cJSON_AddNumberToObject(o, v->tok[id], id);
    return o;
}

/* vocab.json and merges.txt, as transformers' slow GPT2Tokenizer reads them. */
static int hf_vocab_merges(const char *dir, const vocab_text *v, char *err, size_t errlen)
{
    if (check_distinct(v, err, errlen) != 0 ||
        write_json(dir, "vocab.json", vocab_object(v), err, errlen) != 0)
        return -1;
    fs_atomic a;
    char path[1200];
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    if (fs_atomic_begin(&a, path, err, errlen) != 0)
        return -1;
    int rc = fs_atomic_write(&a, "#version: 0.2\n", 14, err, errlen);
    for (size_t i = 0; i < v->nmerges && rc == 0; i++)
        rc = fs_atomic_write(&a, v->merge[i], v->mlen[i], err, errlen) ||
             fs_atomic_write(&a, "\n", 1, err, errlen) ? -1 : 0;
    if (rc != 0) {
        fs_atomic_abort(&a);
        return -1;
    }
    return fs_atomic_commit(&a, err, errlen);
}

/* A ByteLevel step of tokenizer.json (pre-tokenizer, post-processor or decoder). */
static cJSON *byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

/* A bpe tokenizer of the bytes split (tokenizer.c's), which GPT-2's tools do not know. */
static bool bytes_split_bpe(const tokenizer *t)
{
    return strcmp(tokenizer_type(t), "bpe") == 0 && tokenizer_split(t) == TOKENIZER_SPLIT_BYTES;
}

/* How the text is cut into the pieces merges stay within, then spelled byte by
 * byte: gpt2 and bpe of GPT-2's split with GPT-2's regex (ByteLevel's own), byte
 * not at all, bpe of the bytes split with tokenizer.c's split written as a regex
 * (Split, then ByteLevel without one). */
static cJSON *pre_tokenizer(const tokenizer *t)
{
    if (!bytes_split_bpe(t))
        return byte_level(false, true, strcmp(tokenizer_type(t), "byte") != 0);
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex",
                            TOKENIZER_BPE_SPLIT_REGEX);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");   /* tokenizers.js takes true when absent */
    cJSON *seq = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON_AddItemToArray(steps, split);
    cJSON_AddItemToArray(steps, byte_level(false, true, false));
    return seq;
}

/* An added token's fields as tokenizer.json's added_tokens and tokenizer_config.json's
 * added_tokens_decoder give them.  normalized true for every one, as GPT-2's own
 * <|endoftext|> has it: tokenizers matches tokens that are not normalized before the
 * others, while we match all in one pass, the same when all are alike. */
static cJSON *added_token(const vocab_text *v, const tokenizer_added *a, bool with_id)
{
    cJSON *o = cJSON_CreateObject();
    if (with_id)
        cJSON_AddNumberToObject(o, "id", a->id);
    cJSON_AddStringToObject(o, "content", v->tok[a->id]);
    cJSON_AddFalseToObject(o, "single_word");
    cJSON_AddFalseToObject(o, "lstrip");
    cJSON_AddFalseToObject(o, "rstrip");
    cJSON_AddTrueToObject(o, "normalized");
    cJSON_AddBoolToObject(o, "special", a->special);
    return o;
}

static cJSON *bpe_model(const vocab_text *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "BPE");
    cJSON_AddNullToObject(o, "dropout");
    cJSON_AddNullToObject(o, "unk_token");
    cJSON_AddNullToObject(o, "continuing_subword_prefix");
    cJSON_AddNullToObject(o, "end_of_word_suffix");
    cJSON_AddFalseToObject(o, "fuse_unk");
    cJSON_AddFalseToObject(o, "byte_fallback");
    cJSON_AddFalseToObject(o, "ignore_merges");   /* true would skip merges for whole-word tokens */
    cJSON_AddItemToObject(o, "vocab", vocab_object(v));
    cJSON_AddItemToObject(o, "merges", cJSON_CreateStringArray((const char *const *)v->merge,
                                                               (int)v->nmerges));
    return o;
}

/* tokenizer.json, Hugging Face tokenizers' format (transformers' fast
 * tokenizer, transformers.js): our ids for any valid UTF-8 text, but for bpe
 * of the bytes split near the cut of a chunk of 256 bytes
 * (TOKENIZER_BPE_SPLIT_REGEX). */
static int hf_tokenizer_json(const char *dir, const tokenizer *t, const vocab_text *v, char *err,
                             size_t errlen)
{
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", "1.0");
    cJSON_AddNullToObject(o, "truncation");
    cJSON_AddNullToObject(o, "padding");
    cJSON *added = cJSON_AddArrayToObject(o, "added_tokens");
    for (size_t i = 0; i < n; i++)   /* in id order, as tokenizers numbers new ones */
        cJSON_AddItemToArray(added, added_token(v, &a[i], true));
    cJSON_AddNullToObject(o, "normalizer");
    cJSON_AddItemToObject(o, "pre_tokenizer", pre_tokenizer(t));
    cJSON_AddItemToObject(o, "post_processor", byte_level(true, false, true));
    cJSON_AddItemToObject(o, "decoder", byte_level(true, true, true));
    cJSON_AddItemToObject(o, "model", bpe_model(v));
    return write_json(dir, "tokenizer.json", o, err, errlen);
}

/* tokenizer_config.json.  bpe of the bytes split names the generic fast class:
 * the slow GPT2Tokenizer would read vocab.json and merges.txt with GPT-2's
 * pre-split, not that one.  Without an end-of-text token (byte, bpe) the special tokens are
 * null, or transformers would take GPT-2's <|endoftext|>, which those
 * vocabularies do not hold. */
static int hf_tokenizer_config(const char *dir, const model_src *m, const vocab_text *v,
                               char *err, size_t errlen)
{
    int eos = tokenizer_eos(m->tok);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tokenizer_class",
                            bytes_split_bpe(m->tok) ? "PreTrainedTokenizerFast" : "GPT2Tokenizer");
    cJSON_AddNumberToObject(o, "model_max_length", m->d.n_positions);
    cJSON_AddFalseToObject(o, "add_prefix_space");
    cJSON_AddFalseToObject(o, "clean_up_tokenization_spaces");   /* decode gives the text back */
    static const char *special[] = {"bos_token", "eos_token", "unk_token"};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (eos >= 0)
            cJSON_AddStringToObject(o, special[i], v->tok[eos]);
        else
            cJSON_AddNullToObject(o, special[i]);
    /* inline, where every transformers with chat templates (4.34 on) reads it;
     * chat_template.jinja only 4.47 on */
    if (tokenizer_chat_template(m->tok))
        cJSON_AddStringToObject(o, "chat_template", tokenizer_chat_template(m->tok));
    cJSON *decoder = cJSON_AddObjectToObject(o, "added_tokens_decoder");
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(m->tok, &n);
    for (size_t i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "%u", a[i].id);
        cJSON_AddItemToObject(decoder, id, added_token(v, &a[i], false));
    }
    return write_json(dir, "tokenizer_config.json", o, err, errlen);
}

/* generation_config.json as transformers saves one for a model whose config.json
 * holds these ids: the end-of-text id, for GPT-2's tokenizer only. */
static int hf_generation_config(const char *dir, const tokenizer *t, char *err, size_t errlen)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "_from_model_config");
    if (tokenizer_eos(t) >= 0) {
        cJSON_AddNumberToObject(o, "bos_token_id", tokenizer_eos(t));
        cJSON_AddNumberToObject(o, "eos_token_id", tokenizer_eos(t));
    }
    return write_json(dir, "generation_config.json", o, err, errlen);
}

/* Every file of the tokenizer. */
static int hf_tokenizer(const char *dir, const model_src *m, const vocab_text *v, char *err,
                        size_t errlen)
{
    return hf_vocab_merges(dir, v, err, errlen) || hf_tokenizer_json(dir, m->tok, v, err, errlen) ||
           hf_tokenizer_config(dir, m, v, err, errlen) ||
           hf_generation_config(dir, m->tok, err, errlen) ? -1 : 0;
}

static int parse_st_dtype(const char *s, st_dtype *d, const char **torch)
{
    static const struct { const char *name, *torch; st_dtype d; } all[] = {
        {"f32", "float32", ST_F32}, {"f16", "float16", ST_F16}, {"bf16", "bfloat16", ST_BF16}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, all[i].name) == 0) {
            *d = all[i].d;
            *torch = all[i].torch;
            return 0;
        }
    return -1;
}

/* The folder is built in a fresh DIR.tmp-XXXXXX beside it (those a killed
 * export left behind are removed, and named on stderr) and renamed into place
 * whole. */
static int export_hf(model_src *m, const char *out, st_dtype dt, const char *torch, char *err,
                     size_t errlen)
{
    if (strlen(out) > 1000) {
        snprintf(err, errlen, "--out is longer than 1000 bytes");
        return -1;
    }
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')   /* "DIR/" names DIR, not a folder inside it */
        len--;
    char dir[1001], tmp[1100], path[1200], note[1024];
    snprintf(dir, sizeof dir, "%.*s", (int)len, out);
    int lock, rc = fs_temp_dir_beside(dir, tmp, sizeof tmp, &lock, note, sizeof note, err, errlen);
    if (note[0])
        fprintf(stderr, "export: removed %s\n", note);
    if (rc != 0)
        return -1;
    vocab_text v = {0};
    st_writer *w = st_writer_new();
    rc = w ? spell_vocab(m->tok, &v, err, errlen) : fs_fail(err, errlen, "out of memory");
    for (int i = 0; i < m->n && rc == 0; i++) {
        /* wte (tensor 0) without the padding rows: a row per token, as vocab.json
         * lists them, so that transformers never samples an id it cannot spell */
        int64_t shape[2] = {i == 0 ? v.n : m->t[i].rows, m->t[i].cols};
        rc = st_writer_add(w, m->t[i].name, dt, m->t[i].cols ? 2 : 1, shape, err, errlen);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    const char *k[] = {"format"}, *val[] = {"pt"};
    if (rc == 0)
        rc = st_writer_begin(w, path, k, val, 1, err, errlen);
    for (int i = 0; i < m->n && rc == 0; i++)
        rc = read_tensor(m, i, err, errlen) || st_writer_put(w, m->buf, err, errlen) ? -1 : 0;
    if (rc == 0)
        rc = st_writer_commit(w, err, errlen);
    if (rc == 0)
        rc = hf_config(tmp, m, torch, err, errlen) || hf_tokenizer(tmp, m, &v, err, errlen) ? -1 : 0;
    if (rc == 0 && rename(tmp, dir) != 0) {
        snprintf(err, errlen, "cannot rename %.450s to %.450s: %s", tmp, dir, strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = fs_fsync_parent(dir, err, errlen);
    st_writer_free(w);
    free_vocab(&v);
    if (rc != 0)   /* the temporary folder and whatever it holds */
        fs_remove_dir(tmp);
    fs_unlock_dir(lock);
    return rc;
}

/* ---- GGUF ------------------------------------------------------------------------ */

typedef enum { KIND_EMBED, KIND_POSITION, KIND_MATRIX, KIND_VECTOR } tensor_kind;

/* llama.cpp's name for Hugging Face tensor i, and its kind. */
static tensor_kind gguf_name(const model_src *m, int i, char *name, size_t cap)
{
    hf_gpt2_llama_name(i, m->d.n_layer, name, cap);
    if (i < 2)
        return i == 0 ? KIND_EMBED : KIND_POSITION;
    return m->t[i].matrix_weight ? KIND_MATRIX : KIND_VECTOR;
}

static ggml_type stored_type(tensor_kind kind, ggml_type chosen)
{
    return kind == KIND_EMBED || kind == KIND_MATRIX ? chosen : GGML_F32;
}

static int gguf_metadata(gguf_writer *w, const model_src *m, const vocab_text *v, ggml_type type,
                         const char *name)
{
    const gpt2_dims *d = &m->d;
    uint32_t file_type = type == GGML_F32 ? 0 : type == GGML_F16 ? 1 : 7;   /* llama_ftype */
    int32_t *types = malloc((size_t)v->n * sizeof *types);
    if (!types)
        return -1;
    int eos = tokenizer_eos(m->tok);
    size_t nadded;
    const tokenizer_added *a = tokenizer_added_tokens(m->tok, &nadded);
    for (int i = 0; i < v->n; i++)
        types[i] = 1;   /* normal */
    for (size_t i = 0; i < nadded; i++)
        types[a[i].id] = a[i].special ? 3 : 4;   /* control, user-defined */
    int rc = gguf_put_str(w, "general.architecture", "gpt2") | gguf_put_str(w, "general.name", name) |
             gguf_put_u32(w, "general.file_type", file_type) |
             (type == GGML_Q8_0 ? gguf_put_u32(w, "general.quantization_version", 2) : 0) |
             gguf_put_u32(w, "gpt2.context_length", (uint32_t)d->n_positions) |
             gguf_put_u32(w, "gpt2.embedding_length", (uint32_t)d->n_embd) |
             gguf_put_u32(w, "gpt2.feed_forward_length", 4u * (uint32_t)d->n_embd) |
             gguf_put_u32(w, "gpt2.block_count", (uint32_t)d->n_layer) |
             gguf_put_u32(w, "gpt2.attention.head_count", (uint32_t)d->n_head) |
             gguf_put_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f) |
             gguf_put_str(w, "tokenizer.ggml.model", "gpt2") |
             gguf_put_str(w, "gpt_cpu.tokenizer.type", tokenizer_type(m->tok)) |
             (strcmp(tokenizer_type(m->tok), "bpe") == 0
                  ? gguf_put_str(w, "gpt_cpu.tokenizer.split",
                                 tokenizer_split_name(tokenizer_split(m->tok)))
                  : 0) |
             gguf_put_str(w, "tokenizer.ggml.pre", "gpt-2") |
             gguf_put_str_array(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, v->len,
                                (size_t)v->n) |
             gguf_put_i32_array(w, "tokenizer.ggml.token_type", types, (size_t)v->n) |
             gguf_put_str_array(w, "tokenizer.ggml.merges", (const char *const *)v->merge,
                                v->mlen, v->nmerges);
    if (tokenizer_chat_template(m->tok))   /* the key llama.cpp's chat mode applies */
        rc |= gguf_put_str(w, "tokenizer.chat_template", tokenizer_chat_template(m->tok));
    /* byte and BPE tokenizers have no end-of-text token, and GGUF cannot say
     * "none": llama.cpp would take its default, id 11 (a vertical tab byte),
     * and stop there.  The NUL byte, which text never holds, stands in. */
    uint32_t stop = eos >= 0 ? (uint32_t)eos : 0;
    rc |= gguf_put_u32(w, "tokenizer.ggml.bos_token_id", stop) |
          gguf_put_u32(w, "tokenizer.ggml.eos_token_id", stop);
    free(types);
    return rc;
}

/* rows x in values, each row quantized as Q8_0 blocks (scale, then 32 int8). */
static int write_q8_0(gguf_writer *w, const int8_t *q, const float *scales, size_t rows, int in,
                      char *err, size_t errlen)
{
    uint8_t block[GGUF_Q8_0_BYTES];
    size_t groups = rows * (size_t)(in / GGUF_Q8_0_BLOCK);
    for (size_t g = 0; g < groups; g++) {
        uint16_t h = f32_to_f16_one(scales[g]);   /* exact: the scales are fp16 values */
        memcpy(block, &h, 2);
        memcpy(block + 2, q + g * GGUF_Q8_0_BLOCK, GGUF_Q8_0_BLOCK);
        if (gguf_write_data(w, block, sizeof block, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* One tensor in llama.cpp's orientation (matrices [out, in]) and type; of the
 * token embedding only the first n_tok rows (the tokenizer's tokens). */
static int gguf_tensor_data(gguf_writer *w, model_src *m, int i, tensor_kind kind, ggml_type type,
                            int n_tok, float *scratch, int8_t *q, float *scales, char *err,
                            size_t errlen)
{
    if (read_tensor(m, i, err, errlen) != 0)
        return -1;
    const hf_tensor *t = &m->t[i];
    size_t n = (size_t)(kind == KIND_EMBED ? n_tok : t->rows) * (t->cols ? t->cols : 1);
    int in = kind == KIND_MATRIX ? t->rows : t->cols ? t->cols : t->rows;
    size_t out = n / (size_t)in;
    const float *x = m->buf;
    if (kind == KIND_MATRIX && type != GGML_Q8_0) {
        hf_transpose(scratch, m->buf, t->rows, t->cols);
        x = scratch;
    }
    if (type == GGML_F32)
        return gguf_write_data(w, x, n * sizeof(float), err, errlen);
    if (type == GGML_F16) {   /* into whichever buffer x is not */
        uint16_t *h = (uint16_t *)(x == scratch ? m->buf : scratch);
        f32_to_f16(h, x, n);
        return gguf_write_data(w, h, n * 2, err, errlen);
    }
    size_t big = q8_weight_out_of_range(m->buf, n);
    if (big < n) {
        snprintf(err, errlen, "%.800s: /model/%s has a weight of %g, beyond q8_0's range "
                 "(|w| <= %g): use --type f32", m->path, t->name, m->buf[big], Q8_WEIGHT_MAX);
        return -1;
    }
    if (kind == KIND_MATRIX)
        q8_pack_weights(q, scales, m->buf, t->rows, t->cols);
    else
        q8_quantize_weights(q, scales, m->buf, n);
    return write_q8_0(w, q, scales, out, in, err, errlen);
}

static int parse_ggml_type(const char *s, ggml_type *t)
{
    if (strcmp(s, "f32") == 0)
        *t = GGML_F32;
    else if (strcmp(s, "f16") == 0)
        *t = GGML_F16;
    else if (strcmp(s, "q8_0") == 0)
        *t = GGML_Q8_0;
    else
        return -1;
    return 0;
}

/* Whether the model's shape allows type. */
static int check_type_fits(const model_src *m, ggml_type type, char *err, size_t errlen)
{
    if (type == GGML_Q8_0 && m->d.n_embd % GGUF_Q8_0_BLOCK) {
        snprintf(err, errlen, "q8_0 needs n_embd to be a multiple of %d, not %d", GGUF_Q8_0_BLOCK,
                 m->d.n_embd);
        return -1;
    }
    return 0;
}

/* Each tensor's name, shape (ggml's ne order) and stored type. */
static int add_tensor_infos(gguf_writer *w, const model_src *m, const vocab_text *v,
                            ggml_type type, char *err, size_t errlen)
{
    char name[96];
    for (int i = 0; i < m->n; i++) {
        tensor_kind kind = gguf_name(m, i, name, sizeof name);
        const hf_tensor *t = &m->t[i];
        uint64_t ne[2] = {(uint64_t)(t->cols ? t->cols : t->rows), (uint64_t)t->rows};
        if (kind == KIND_MATRIX) {   /* Conv1D [in, out] -> ne {in, out} */
            ne[0] = (uint64_t)t->rows;
            ne[1] = (uint64_t)t->cols;
        } else if (kind == KIND_EMBED) {   /* llama.cpp wants a row per token: no padding rows */
            ne[1] = (uint64_t)v->n;
        }
        if (gguf_add_tensor(w, name, t->cols ? 2 : 1, ne, stored_type(kind, type)) != 0) {
            snprintf(err, errlen, "%s: cannot be stored as %s", name, ggml_type_name(type));
            return -1;
        }
    }
    return 0;
}

/* Writes out: header and infos, then each tensor's data through buffers the
 * size of the largest tensor, then the atomic rename. */
static int write_gguf_file(gguf_writer *w, model_src *m, const vocab_text *v, ggml_type type,
                           const char *out, char *err, size_t errlen)
{
    size_t most = m->most;
    float *scratch = malloc(most * sizeof *scratch);
    int8_t *q = malloc(most);
    float *scales = malloc(most / GGUF_Q8_0_BLOCK * sizeof *scales + 4);
    int rc = scratch && q && scales ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    if (rc == 0)
        rc = gguf_write_begin(w, out, err, errlen);
    char name[96];
    for (int i = 0; i < m->n && rc == 0; i++) {
        tensor_kind kind = gguf_name(m, i, name, sizeof name);
        rc = gguf_tensor_data(w, m, i, kind, stored_type(kind, type), v->n, scratch, q, scales,
                              err, errlen);
    }
    if (rc == 0)
        rc = gguf_write_commit(w, err, errlen);
    free(scratch);
    free(q);
    free(scales);
    return rc;
}

static int export_gguf(model_src *m, const char *out, ggml_type type, char *err, size_t errlen)
{
    if (check_type_fits(m, type, err, errlen) != 0)
        return -1;
    gguf_writer *w = gguf_writer_new();
    vocab_text v = {0};
    int rc = w ? spell_vocab(m->tok, &v, err, errlen) : -1;
    if (!w)
        snprintf(err, errlen, "out of memory");
    const char *base = strrchr(out, '/');
    if (rc == 0 && gguf_metadata(w, m, &v, type, base ? base + 1 : out) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc == 0)
        rc = add_tensor_infos(w, m, &v, type, err, errlen);
    if (rc == 0)
        rc = write_gguf_file(w, m, &v, type, out, err, errlen);
    gguf_writer_free(w);
    free_vocab(&v);
    return rc;
}

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *format = NULL, *out = NULL, *dtype = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--ckpt") == 0)
            dst = &ckpt;
        else if (strcmp(argv[i], "--format") == 0)
            dst = &format;
        else if (strcmp(argv[i], "--out") == 0)
            dst = &out;
        else if (strcmp(argv[i], "--dtype") == 0)
            dst = &dtype;
        else if (strcmp(argv[i], "--type") == 0)
            dst = &type;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "export: unknown or incomplete option '%s' (see --help)\n", argv[i]);
            return 2;
        }
        *dst = argv[++i];
    }
    int hf = format && strcmp(format, "hf") == 0, gguf = format && strcmp(format, "gguf") == 0;
    if (format && !hf && !gguf) {
        fprintf(stderr, "export: --format %s is not one of hf, gguf\n", format);
        return 2;
    }
    if (!ckpt || !out || !format) {
        fprintf(stderr, "export: --ckpt, --out and --format are required (see --help)\n");
        return 2;
    }
    if (gguf && dtype) {
        fprintf(stderr, "export: --dtype applies to --format hf only\n");
        return 2;
    }
    /* DESIGN.md's command line gives both formats --type: for hf it is --dtype */
    const char *dtype_opt = "--dtype";
    if (hf && type) {
        if (dtype) {
            fprintf(stderr, "export: give --dtype or --type, not both (for hf they are one)\n");
            return 2;
        }
        dtype = type;
        dtype_opt = "--type";
        type = NULL;
    }
    st_dtype dt;   /* the one of the two that does not apply is f32, unused */
    const char *torch;
    ggml_type gt;
    if (parse_st_dtype(dtype ? dtype : "f32", &dt, &torch) != 0) {
        fprintf(stderr, "export: %s %s is not one of f32, f16, bf16 for --format hf\n", dtype_opt,
                dtype);
        return 2;
    }
    if (parse_ggml_type(type ? type : "f32", &gt) != 0) {
        fprintf(stderr, "export: --type %s is not one of f32, f16, q8_0\n", type);
        return 2;
    }
    char err[1024];
    /* before the checkpoint is opened: --out may well name it */
    if (cpu_isa_from_env(err, sizeof err) != 0 ||
        fs_require_new(out, hf ? "folder" : "file name", err, sizeof err) != 0) {
        fprintf(stderr, "export: %s\n", err);
        return 2;
    }
    fs_atomic_remove_on_signals();   /* Ctrl-C leaves no model-sized OUT.tmp behind */
    model_src m;
    int rc = open_model(&m, ckpt, err, sizeof err);
    if (rc == 0)
        rc = hf ? export_hf(&m, out, dt, torch, err, sizeof err)
                : export_gguf(&m, out, gt, err, sizeof err);
    close_model(&m);
    if (rc != 0) {
        fprintf(stderr, "export: %s\n", err);
        return 1;
    }
    printf("export: %s -> %s\n", ckpt, out);
    return 0;
}
