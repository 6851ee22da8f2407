/* infer_gguf: build/infer --ckpt FILE.gguf, for the GGUF files build/export
 * writes (llama.cpp's gpt2 layout; F32, F16 or Q8_0 matrices).
 *
 * Matrices come back to the checkpoint's Conv1D layout ([in, out]) and are
 * then rounded or quantized as --quant says, as a checkpoint's are; an int8
 * run of a q8_0 file takes its blocks as they are (they are what
 * q8_pack_weights makes), so it runs the very int8 matrices and LM head the
 * checkpoint would, the token embedding (the LM head's rows) included.  The
 * tokenizer is rebuilt
 * from tokenizer.ggml.tokens and merges, as the type gpt_cpu.tokenizer.type
 * names (a GGUF from elsewhere is taken as GPT-2's), with bpe's split from
 * gpt_cpu.tokenizer.split, and gpt2's added tokens from tokenizer.ggml.token_type.
 */
#include "infer/gguf_load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"
#include "io/gguf.h"
#include "io/hf_names.h"
#include "io/le.h"
#include "kernels/convert.h"

typedef struct {
    gguf_file f;
    gpt2_dims d;
    int L;
    hf_tensor *hf;   /* Hugging Face name i <-> llama.cpp name i */
    char (*gname)[96];
    int n;
} gguf_model;

/* llama.cpp's names in Hugging Face order (io/hf_names.h). */
static void name_tensors(gguf_model *g)
{
    for (int i = 0; i < g->n; i++)
        hf_gpt2_llama_name(i, g->L, g->gname[i], sizeof g->gname[i]);
}

/* The GGUF tensor holding Hugging Face tensor name, or NULL (err set). */
static const gguf_tensor *find(const gguf_model *g, const char *name, int *index, char *err,
                               size_t errlen)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->hf[i].name, name) == 0) {
            const gguf_tensor *t = gguf_find_tensor(&g->f, g->gname[i]);
            if (!t)
                snprintf(err, errlen, "tensor %s is missing", g->gname[i]);
            *index = i;
            return t;
        }
    snprintf(err, errlen, "no tensor for %s", name);
    return NULL;
}

/* A matrix of llama.cpp's (out rows of in values) has ne {in, out}; a vector
 * or an embedding {cols, rows} as the checkpoint's [rows, cols]. */
static int check_shape(const gguf_tensor *t, const hf_tensor *h, int matrix, char *err,
                       size_t errlen)
{
    uint64_t ne0 = matrix ? (uint64_t)h->rows : (uint64_t)(h->cols ? h->cols : h->rows);
    uint64_t ne1 = matrix ? (uint64_t)h->cols : (uint64_t)(h->cols ? h->rows : 1);
    if (t->ne[0] != ne0 || (t->ndim == 2 ? t->ne[1] : 1) != ne1 || t->ndim != (h->cols ? 2 : 1)) {
        snprintf(err, errlen, "tensor %s has the wrong shape for this model", t->name);
        return -1;
    }
    return 0;
}

/* n values of t as fp32, in the file's order.  0, or -1 with err set. */
static int widen(const gguf_tensor *t, float *dst, size_t n, char *err, size_t errlen)
{
    if (t->type == GGML_F32) {
        memcpy(dst, t->data, n * sizeof *dst);
    } else if (t->type == GGML_F16 || t->type == GGML_BF16) {
        uint16_t *h = malloc(n * sizeof *h);   /* the mapping may not be 2-byte aligned for SIMD */
        if (!h) {
            snprintf(err, errlen, "out of memory widening %s", t->name);
            return -1;
        }
        memcpy(h, t->data, n * sizeof *h);
        (t->type == GGML_F16 ? f16_to_f32 : bf16_to_f32)(dst, h, n);
        free(h);
    } else {
        for (size_t g = 0; g < n / GGUF_Q8_0_BLOCK; g++) {
            const uint8_t *b = t->data + g * GGUF_Q8_0_BYTES;
            uint16_t h;
            memcpy(&h, b, 2);
            float s = f16_to_f32_one(h);
            for (int j = 0; j < GGUF_Q8_0_BLOCK; j++)
                dst[g * GGUF_Q8_0_BLOCK + j] = s * (float)(int8_t)b[2 + j];
        }
    }
    return 0;
}

/* infer_tensor_fn: fp32 values in the checkpoint's layout. */
static int gguf_source(void *ctx, const char *name, int rows, int cols, float *dst, char *err,
                       size_t errlen)
{
    const gguf_model *g = ctx;
    int i;
    const gguf_tensor *t = find(g, name, &i, err, errlen);
    int matrix = i >= 2 && g->hf[i].cols && g->hf[i].matrix_weight;
    if (!t || check_shape(t, &g->hf[i], matrix, err, errlen) != 0)
        return -1;
    size_t n = (size_t)rows * (cols ? cols : 1);
    if (!matrix)
        return widen(t, dst, n, err, errlen);
    float *tmp = malloc(n * sizeof *tmp);   /* [out][in] -> [in][out] */
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = widen(t, tmp, n, err, errlen);
    if (rc == 0)
        hf_transpose(dst, tmp, cols, rows);
    free(tmp);
    return rc;
}

/* Every tensor's shape against the metadata's dimensions, and no block past
 * block_count, before anything is allocated for them (as a checkpoint's
 * are): a context_length of millions had gigabytes of position embeddings
 * zeroed before their shape was seen, and a smaller block_count ran part of
 * the model.  Only the tensor infos are read. */
static int check_tensors(const gguf_model *g, char *err, size_t errlen)
{
    for (int i = 0; i < g->n; i++) {
        const gguf_tensor *t = gguf_find_tensor(&g->f, g->gname[i]);
        int matrix = i >= 2 && g->hf[i].cols && g->hf[i].matrix_weight;
        if (!t) {
            snprintf(err, errlen, "tensor %s is missing", g->gname[i]);
            return -1;
        }
        if (check_shape(t, &g->hf[i], matrix, err, errlen) != 0)
            return -1;
    }
    char next[96];
    snprintf(next, sizeof next, "blk.%d.attn_norm.weight", g->L);
    if (gguf_find_tensor(&g->f, next)) {
        snprintf(err, errlen, "gpt2.block_count is %d but the file holds more blocks", g->L);
        return -1;
    }
    return 0;
}

/* ---- int8 runs: Q8_0 blocks as the int8 matrices -------------------------------- */

static int q8_vec(void *ctx, const char *name, int rows, int cols, float *x, char *err,
                  size_t errlen)
{
    return gguf_source(ctx, name, rows, cols, x, err, errlen);
}

static int q8_mat(void *ctx, const char *name, const infer_linear *l, char *err, size_t errlen)
{
    const gguf_model *g = ctx;
    int i = 0;
    const gguf_tensor *t = strcmp(name, "lm_head.weight") == 0
                               ? gguf_find_tensor(&g->f, "token_embd.weight")
                               : find(g, name, &i, err, errlen);
    if (!t)   /* its shape was checked before anything was loaded (check_tensors) */
        return -1;
    if (t->type != GGML_Q8_0) {
        snprintf(err, errlen, "tensor %s is %s in a q8_0 file", t->name, ggml_type_name(t->type));
        return -1;
    }
    size_t groups = (size_t)l->out * (size_t)(l->in / GGUF_Q8_0_BLOCK);
    for (size_t k = 0; k < groups; k++) {
        const uint8_t *b = t->data + k * GGUF_Q8_0_BYTES;
        uint16_t h;
        memcpy(&h, b, 2);
        l->ws[k] = f16_to_f32_one(h);
        if (!isfinite(l->ws[k])) {   /* fp32 and bf16 refuse it as a non-finite weight */
            snprintf(err, errlen, "tensor %s has a non-finite Q8_0 scale", t->name);
            return -1;
        }
        memcpy(l->wq + k * GGUF_Q8_0_BLOCK, b + 2, GGUF_Q8_0_BLOCK);
        for (int j = 0; j < GGUF_Q8_0_BLOCK; j++)
            if (l->wq[k * GGUF_Q8_0_BLOCK + j] == -128) {   /* the int8 kernels never see -128 */
                snprintf(err, errlen, "tensor %s holds -128, which q8_0 as infer runs it cannot",
                         t->name);
                return -1;
            }
    }
    return 0;
}

/* ---- hyper-parameters and tokenizer ---------------------------------------------- */

static int read_dims(gguf_model *g, char *err, size_t errlen)
{
    const char *arch;
    uint64_t len, v[4], ff;
    float eps;
    static const char *const keys[4] = {"gpt2.context_length", "gpt2.embedding_length",
                                        "gpt2.block_count", "gpt2.attention.head_count"};
    if (gguf_get_str(&g->f, "general.architecture", &arch, &len, err, errlen) != 0)
        return -1;
    if (len != 4 || memcmp(arch, "gpt2", 4) != 0) {
        snprintf(err, errlen, "general.architecture is %.*s: only gpt2 runs here", (int)len, arch);
        return -1;
    }
    for (int k = 0; k < 4; k++)
        if (gguf_get_uint(&g->f, keys[k], &v[k], err, errlen) != 0)
            return -1;
        else if (v[k] < 1 || v[k] > (1u << 30)) {
            snprintf(err, errlen, "%s = %llu is out of range", keys[k], (unsigned long long)v[k]);
            return -1;
        }
    if (gguf_get_uint(&g->f, "gpt2.feed_forward_length", &ff, err, errlen) != 0 ||
        gguf_get_f32(&g->f, "gpt2.attention.layer_norm_epsilon", &eps, err, errlen) != 0)
        return -1;
    if (ff != 4 * v[1] || eps != 1e-5f) {
        snprintf(err, errlen, "feed_forward_length %llu or layer_norm_epsilon %g: this model runs "
                 "only 4 x n_embd and 1e-5", (unsigned long long)ff, eps);
        return -1;
    }
    const gguf_tensor *embd = gguf_find_tensor(&g->f, "token_embd.weight");
    if (!embd || embd->ndim != 2 || embd->ne[0] != v[1] || embd->ne[1] > (1u << 30)) {
        snprintf(err, errlen, "token_embd.weight is missing or not [vocab, embedding_length]");
        return -1;
    }
    g->d = (gpt2_dims){(int)embd->ne[1], (int)v[0], (int)v[1], (int)v[2], (int)v[3]};
    g->L = (int)v[2];
    return 0;
}

/* tokenizer.ggml.tokens' strings (GPT-2's byte spelling), pointing into the
 * mapped file, and their ids ordered by spelling (then id) for the merges'
 * lookups (a linear search made loading quadratic in the vocabulary). */
typedef struct {
    const char **tok;
    size_t *len, total;
    int n;
    int *order;
} gguf_vocab;

static int spelling_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int by_spelling(const void *x, const void *y, void *ctx)
{
    const gguf_vocab *v = ctx;
    int i = *(const int *)x, j = *(const int *)y;
    int c = spelling_cmp(v->tok[i], v->len[i], v->tok[j], v->len[j]);
    return c ? c : (i > j) - (i < j);
}

/* The lowest id spelled s, or -1. */
static int token_id(const gguf_vocab *v, const char *s, size_t slen)
{
    int lo = 0, hi = v->n;   /* the first place whose spelling is not below s */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, k = v->order[mid];
        if (spelling_cmp(v->tok[k], v->len[k], s, slen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    int k = lo < v->n ? v->order[lo] : -1;
    return k >= 0 && spelling_cmp(v->tok[k], v->len[k], s, slen) == 0 ? k : -1;
}

static int read_vocab(gguf_str_iter *it, int n, gguf_vocab *v, char *err, size_t errlen)
{
    *v = (gguf_vocab){malloc(n * sizeof *v->tok), malloc(n * sizeof *v->len), 0, n,
                      malloc(n * sizeof *v->order)};
    if (!v->tok || !v->len || !v->order) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        uint64_t l;
        gguf_str_next(it, &v->tok[i], &l);
        v->len[i] = (size_t)l;
        v->total += l;
        v->order[i] = i;
    }
    qsort_r(v->order, n, sizeof *v->order, by_spelling, v);
    return 0;
}

/* tokenizer.ggml.merges ("left right" strings) as pairs of token ids in
 * *merges (2 * *nm values; none when the key is absent or unreadable). */
static int read_merges(const gguf_model *g, const gguf_vocab *v, uint32_t **merges, uint64_t *nm,
                       char *err, size_t errlen)
{
    gguf_str_iter it;
    *nm = 0;
    if (gguf_find(&g->f, "tokenizer.ggml.merges") &&
        gguf_str_array(&g->f, "tokenizer.ggml.merges", &it, nm, err, errlen) != 0)
        *nm = 0;
    if (!(*merges = malloc((*nm ? *nm : 1) * 2 * sizeof **merges))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (uint64_t i = 0; i < *nm; i++) {
        const char *s;
        uint64_t l;
        gguf_str_next(&it, &s, &l);
        const char *sp = memchr(s, ' ', l);
        int a = sp ? token_id(v, s, (size_t)(sp - s)) : -1;
        int b = sp ? token_id(v, sp + 1, (size_t)(s + l - sp - 1)) : -1;
        if (a < 0 || b < 0) {
            snprintf(err, errlen, "tokenizer.ggml.merges entry %llu is not two tokens",
                     (unsigned long long)i);
            return -1;
        }
        (*merges)[2 * i] = (uint32_t)a;
        (*merges)[2 * i + 1] = (uint32_t)b;
    }
    return 0;
}

enum { TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4 };   /* llama.cpp's added tokens */

/* tokenizer.ggml.token_type, n int32s in the mapping, or NULL in *types when absent.
 * 0, or -1 with a reason when it is something else. */
static int read_types(const gguf_model *g, uint64_t n, const uint8_t **types, char *err,
                      size_t errlen)
{
    const gguf_kv *kv = gguf_find(&g->f, "tokenizer.ggml.token_type");
    *types = NULL;
    if (!kv)
        return 0;
    if (kv->type != GGUF_ARRAY || (kv->elem != GGUF_I32 && kv->elem != GGUF_U32) ||
        kv->count != n) {
        snprintf(err, errlen, "tokenizer.ggml.token_type is not %llu int32s, one per token",
                 (unsigned long long)n);
        return -1;
    }
    *types = kv->val;
    return 0;
}

static bool is_added(const uint8_t *types, int i)
{
    uint32_t type = types ? le_get_u32(types + 4 * (size_t)i) : 0;
    return type == TYPE_CONTROL || type == TYPE_USER_DEFINED;
}

/* Each token's bytes, concatenated, and their lengths: GPT-2's spelling undone, but
 * for added tokens (types, when given), named by their text. */
static int unspell_vocab(const gguf_vocab *v, const uint8_t *types, uint8_t **bytes,
                         uint32_t **lens, char *err, size_t errlen)
{
    *bytes = malloc(v->total + 1);
    *lens = malloc(v->n * sizeof **lens);
    if (!*bytes || !*lens) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t at = 0;
    for (int i = 0; i < v->n; i++) {
        long got = (long)v->len[i];
        if (is_added(types, i))
            memcpy(*bytes + at, v->tok[i], v->len[i]);
        else
            got = tokenizer_unspell_gpt2(v->tok[i], v->len[i], *bytes + at);
        if (got < 0) {
            snprintf(err, errlen, "tokenizer.ggml.tokens entry %d is not GPT-2's byte spelling", i);
            return -1;
        }
        (*lens)[i] = (uint32_t)got;
        at += (size_t)got;
    }
    return 0;
}

/* A bpe file's gpt_cpu.tokenizer.split: absent in files written before it, which
 * mean the bytes split.  0, or -1 with a reason in err. */
static int read_split(const gguf_model *g, tokenizer_split_kind *split, char *err,
                      size_t errlen)
{
    static const char key[] = "gpt_cpu.tokenizer.split";
    const char *name;
    uint64_t len;
    *split = TOKENIZER_SPLIT_BYTES;
    if (!gguf_find(&g->f, key))
        return 0;
    if (gguf_get_str(&g->f, key, &name, &len, err, errlen) != 0)
        return -1;
    if (tokenizer_split_parse(name, len, split) == 0)
        return 0;
    snprintf(err, errlen, "%s \"%.*s\" is unknown (gpt2 or bytes)", key, len > 40 ? 40 : (int)len,
             name);
    return -1;
}

/* The added tokens token_type names: CONTROL ones special, USER_DEFINED ones not.
 * Frees t and returns NULL on failure. */
static tokenizer *with_added(tokenizer *t, const uint8_t *types, int n, char *err,
                             size_t errlen)
{
    tokenizer_added *a = t && types ? malloc(((size_t)n + 1) * sizeof *a) : NULL;
    size_t k = 0;
    for (int i = 0; a && i < n; i++)
        if (is_added(types, i))
            a[k++] = (tokenizer_added){.id = (uint32_t)i,
                                       .special = le_get_u32(types + 4 * (size_t)i) == TYPE_CONTROL};
    char why[200];
    if (t && types && (!a || tokenizer_set_added(t, a, k, why, sizeof why) != 0)) {
        snprintf(err, errlen, "tokenizer.ggml.token_type: %s", a ? why : "out of memory");
        tokenizer_free(t);
        t = NULL;
    }
    free(a);
    return t;
}

/* The tokenizer the tokenizer.ggml.* keys (and gpt_cpu.tokenizer.*) describe. */
static tokenizer *build_tokenizer(const gguf_model *g, char *err, size_t errlen)
{
    gguf_str_iter it;
    uint64_t n;
    if (gguf_str_array(&g->f, "tokenizer.ggml.tokens", &it, &n, err, errlen) != 0)
        return NULL;
    if (n < 1 || n > (uint64_t)g->d.vocab_size) {
        snprintf(err, errlen, "tokenizer.ggml.tokens has %llu tokens for a vocabulary of %d",
                 (unsigned long long)n, g->d.vocab_size);
        return NULL;
    }
    const char *type = "gpt2";
    uint64_t tlen = 4;
    if (gguf_find(&g->f, "gpt_cpu.tokenizer.type") &&
        gguf_get_str(&g->f, "gpt_cpu.tokenizer.type", &type, &tlen, err, errlen) != 0)
        return NULL;
    if (tlen == 4 && memcmp(type, "byte", 4) == 0)
        return tokenizer_new_byte();
    bool bpe = tlen == 3 && memcmp(type, "bpe", 3) == 0;
    tokenizer_split_kind split = TOKENIZER_SPLIT_BYTES;
    if (bpe && read_split(g, &split, err, errlen) != 0)
        return NULL;
    gguf_vocab v;
    uint32_t *merges = NULL, *lens = NULL;
    uint8_t *bytes = NULL;
    uint64_t nm = 0;
    const uint8_t *types = NULL;
    tokenizer *t = NULL;
    if (read_vocab(&it, (int)n, &v, err, errlen) == 0 &&
        read_merges(g, &v, &merges, &nm, err, errlen) == 0 &&
        (bpe || read_types(g, n, &types, err, errlen) == 0) &&
        unspell_vocab(&v, types, &bytes, &lens, err, errlen) == 0)
        t = bpe ? tokenizer_new_bpe(merges, nm, split, err, errlen)
                : with_added(tokenizer_new_gpt2(bytes, lens, n, merges, nm, err, errlen), types,
                             (int)n, err, errlen);
    free(v.tok);
    free(v.len);
    free(v.order);
    free(merges);
    free(lens);
    free(bytes);
    return t;
}

/* byte and bpe tokenizers are rebuilt from their type and merges, not from
 * the token list, and a token past the model's rows is read from beyond its
 * embedding and logits: the tokenizer must have exactly the listed tokens. */
static tokenizer *read_tokenizer(const gguf_model *g, char *err, size_t errlen)
{
    tokenizer *t = build_tokenizer(g, err, errlen);
    const gguf_kv *kv = gguf_find(&g->f, "tokenizer.ggml.tokens");
    if (t && (uint64_t)tokenizer_vocab_size(t) != kv->count) {
        snprintf(err, errlen, "tokenizer.ggml.tokens has %llu tokens but its %s tokenizer has %d",
                 (unsigned long long)kv->count, tokenizer_type(t), tokenizer_vocab_size(t));
        tokenizer_free(t);
        t = NULL;
    }
    return t;
}

int infer_gguf_load(const char *path, infer_quant q, infer_model *m, tokenizer **tok, char *err,
                    size_t errlen)
{
    gguf_model g = {0};
    char why[600] = "";
    *tok = NULL;
    if (gguf_open(path, &g.f, err, errlen) != 0)   /* its errors name the file */
        return -1;
    /* the dimensions first: the tensor list is sized from them in int arithmetic */
    int rc = read_dims(&g, why, sizeof why);
    if (rc == 0)
        rc = infer_check_dims(&g.d, q, why, sizeof why);
    if (rc == 0) {
        g.hf = hf_gpt2_tensor_list(&g.d, &g.n);
        g.gname = g.hf ? calloc((size_t)g.n, sizeof *g.gname) : NULL;
        if (!g.gname) {
            snprintf(why, sizeof why, "out of memory");
            rc = -1;
        } else {
            name_tensors(&g);
        }
    }
    if (rc == 0 && !(*tok = read_tokenizer(&g, why, sizeof why)))
        rc = -1;
    if (rc == 0)
        rc = check_tensors(&g, why, sizeof why);
    const gguf_tensor *embd = gguf_find_tensor(&g.f, "token_embd.weight");
    if (rc == 0 && q == INFER_INT8 && embd->type == GGML_Q8_0) {   /* the blocks as they are */
        static const infer_visitor v = {q8_vec, q8_mat};
        rc = infer_model_load(m, &g.d, q, &v, &g, why, sizeof why);
    } else if (rc == 0) {   /* fp32 values, quantized or rounded at load as a checkpoint's */
        rc = infer_model_build(m, &g.d, q, gguf_source, &g, why, sizeof why);
    }
    gguf_close(&g.f);
    free(g.hf);
    free(g.gname);
    if (rc != 0) {
        fs_printable(why);   /* it may quote a tensor name or token of the file */
        snprintf(err, errlen, "%s: %s", path, why);
        tokenizer_free(*tok);
        *tok = NULL;
    }
    return rc;
}
