/* import: a Hugging Face GPT-2 folder -> a gpt-cpu checkpoint without
 * optimizer state, which `trainer --init-from` fine-tunes and `infer` runs.
 *
 *   build/import --hf DIR --out CK.h5
 *
 * DIR holds config.json, the weights (model.safetensors, the shards of
 * model.safetensors.index.json, or pytorch_model.bin: io/weights.h), and
 * vocab.json and merges.txt or (what a fast tokenizer saves) tokenizer.json
 * with GPT-2's byte-level BPE, and the added tokens these files list
 * (tokenizer_load_hf_dir).  An existing --out is refused.  Everything is
 * checked before the output is created: the architecture keys of config.json,
 * every tensor's presence, dtype and shape, the tied lm_head.
 * Tensors then stream one at a time from the weights files into the HDF5
 * file, so a model is never held twice in memory.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "io/hf_names.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "io/tokenizer.h"
#include "kernels/convert.h"
#include "kernels/cpu.h"

static const char USAGE[] =
    "usage: build/import --hf DIR --out CK.h5\n"
    "Turns a Hugging Face GPT-2 folder into a checkpoint without optimizer state, which\n"
    "build/trainer --init-from fine-tunes and build/infer runs.\n"
    "  --hf DIR     the folder: config.json, the weights in F32, F16 or BF16\n"
    "               (model.safetensors, or model.safetensors.index.json and the shards\n"
    "               it names, or pytorch_model.bin as torch 1.6 to 2.6 save it, or\n"
    "               pytorch_model.bin.index.json and the torch.save shards it names;\n"
    "               not torch < 1.6's legacy format, nor a storage compressed,\n"
    "               big-endian or not contiguous), vocab.json and merges.txt, or\n"
    "               without them tokenizer.json (GPT-2's byte-level BPE only), with\n"
    "               the added tokens (pad, chat markers) of tokenizer.json\n"
    "               or of tokenizer_config.json and added_tokens.json, and its chat\n"
    "               template (chat_template.jinja or tokenizer_config.json's)\n"
    "  --out CK.h5  the checkpoint to write: a new name, an existing file is refused\n"
    "Exit status: 0 ok, 1 unusable folder or failed write, 2 bad arguments or GPT_ISA\n"
    "(a kernel path: scalar, avx2 or avx512, one this CPU runs).\n";

/* An integer key of config.json in [1, 2^30]; alt is a second name for it (or NULL). */
static int int_key(const cJSON *cfg, const char *key, const char *alt, int *out, char *err,
                   size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v && alt)
        v = cJSON_GetObjectItemCaseSensitive(cfg, alt);
    if (!v) {
        snprintf(err, errlen, "config.json: %s is missing", key);
        return -1;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (1 << 30) ||
        v->valuedouble != floor(v->valuedouble)) {
        char *text = cJSON_PrintUnformatted(v);
        snprintf(err, errlen, "config.json: %s is %.40s, not a whole number in 1..2^30", key,
                 text ? text : "?");
        free(text);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

/* What this model cannot run is refused, naming the key. */
static int check_architecture(const cJSON *cfg, const gpt2_dims *d, char *err, size_t errlen)
{
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(cfg, "layer_norm_epsilon");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, "activation_function");
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(cfg, "n_inner");
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(cfg, "scale_attn_weights");
    const cJSON *by_layer = cJSON_GetObjectItemCaseSensitive(cfg, "scale_attn_by_inverse_layer_idx");
    const cJSON *tied = cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings");
    const char *bad = NULL;
    if (mt && !(cJSON_IsString(mt) && strcmp(mt->valuestring, "gpt2") == 0))
        bad = "model_type (only gpt2)";
    else if (eps && !(cJSON_IsNumber(eps) && fabs(eps->valuedouble - 1e-5) < 1e-12))
        bad = "layer_norm_epsilon (only 1e-5)";
    else if (act && !(cJSON_IsString(act) && (strcmp(act->valuestring, "gelu_new") == 0 ||
                                              strcmp(act->valuestring, "gelu_pytorch_tanh") == 0)))
        bad = "activation_function (only gelu_new, the tanh approximation)";
    else if (inner && !cJSON_IsNull(inner) &&
             !(cJSON_IsNumber(inner) && inner->valuedouble == 4.0 * d->n_embd))
        bad = "n_inner (only null or 4 x n_embd)";
    else if (scale && !cJSON_IsTrue(scale))
        bad = "scale_attn_weights (only true)";
    else if (by_layer && !cJSON_IsFalse(by_layer))
        bad = "scale_attn_by_inverse_layer_idx (only false)";
    else if (tied && !cJSON_IsTrue(tied))
        bad = "tie_word_embeddings (only true: the LM head is the token embedding)";
    else if (d->n_embd % d->n_head != 0)
        bad = "n_head (must divide n_embd)";
    if (bad)
        snprintf(err, errlen, "config.json: unsupported %s", bad);
    return bad ? -1 : 0;
}

/* Dimensions past the trainer's limits are refused before the tensor list is
 * built: its count and shapes are ints, which n_layer 2^30 would overflow. */
static int check_size(const gpt2_dims *d, char *err, size_t errlen)
{
    char why[200];
    if (hf_gpt2_dims_check(d, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "config.json: %s (too large a model to import)", why);
    return -1;
}

static int read_config(const char *dir, gpt2_dims *d, char *err, size_t errlen)
{
    char path[1100];
    uint8_t *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (fs_read_file(path, &text, &len, err, errlen) != 0)
        return -1;
    cJSON *cfg = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    int rc = 0;
    if (!cJSON_IsObject(cfg)) {
        snprintf(err, errlen, "%.900s: not a JSON object", path);
        rc = -1;
    }
    if (rc == 0)
        rc = int_key(cfg, "vocab_size", NULL, &d->vocab_size, err, errlen) ||
             int_key(cfg, "n_positions", "n_ctx", &d->n_positions, err, errlen) ||
             int_key(cfg, "n_embd", NULL, &d->n_embd, err, errlen) ||
             int_key(cfg, "n_layer", NULL, &d->n_layer, err, errlen) ||
             int_key(cfg, "n_head", NULL, &d->n_head, err, errlen) ||
             check_architecture(cfg, d, err, errlen) || check_size(d, err, errlen) ? -1 : 0;
    cJSON_Delete(cfg);
    return rc;
}

typedef struct {
    wsrc *src;
    hf_tensor *want;          /* our table */
    const st_tensor **have;   /* each one's entry in the weights */
    const st_tensor *lm_head; /* NULL when the file leaves it out */
    int n;
} importer;

/* The weights' entry for one of our names, stored with or without "transformer.". */
static const st_tensor *find(const wsrc *src, const char *name)
{
    const st_tensor *t = wsrc_find(src, name);
    return t ? t : wsrc_find(src, name + strlen("transformer."));
}

static int shape_is(const st_tensor *t, int rows, int cols)
{
    return cols ? t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols
                : t->ndim == 1 && t->shape[0] == rows;
}

/* A tensor that is imported must be of a dtype st_read_f32 reads. */
static int readable(const wsrc *src, const st_tensor *t, char *err, size_t errlen)
{
    if (st_dtype_readable(t->dtype))
        return 0;
    snprintf(err, errlen, "%s: %s is %s (only F32, F16 and BF16 are read)", wsrc_label(src),
             t->name, st_dtype_name(t->dtype));
    return -1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Buffers that are not parameters (the causal mask) are skipped, whatever
 * their dtype (F32, or U8 or BOOL as transformers 4.x saved them). */
static int is_buffer(const char *name)
{
    return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias");
}

/* Every tensor present with its shape, nothing unknown, before anything is written. */
static int match_tensors(importer *im, const gpt2_dims *d, char *err, size_t errlen)
{
    for (int i = 0; i < im->n; i++) {
        const hf_tensor *w = &im->want[i];
        const st_tensor *t = find(im->src, w->name);
        if (!t && i == 0)   /* safetensors' save_model keeps the tied pair as lm_head.weight */
            t = wsrc_find(im->src, "lm_head.weight");
        im->have[i] = t;
        if (!t) {
            snprintf(err, errlen, "%s: %s is missing", wsrc_label(im->src), w->name);
            return -1;
        }
        if (!shape_is(t, w->rows, w->cols)) {
            snprintf(err, errlen, "%s: %s has shape [%lld%s%.0lld], config.json "
                     "makes it [%d%s%.0d]", wsrc_label(im->src), t->name, (long long)t->shape[0],
                     t->ndim > 1 ? "," : "", t->ndim > 1 ? (long long)t->shape[1] : 0, w->rows,
                     w->cols ? "," : "", w->cols);
            return -1;
        }
        if (readable(im->src, t, err, errlen) != 0)
            return -1;
    }
    im->lm_head = wsrc_find(im->src, "lm_head.weight");
    if (im->lm_head == im->have[0])   /* it is wte: nothing to compare */
        im->lm_head = NULL;
    if (im->lm_head && !shape_is(im->lm_head, d->vocab_size, d->n_embd)) {
        snprintf(err, errlen, "%s: lm_head.weight's shape differs from wte's", wsrc_label(im->src));
        return -1;
    }
    if (im->lm_head && readable(im->src, im->lm_head, err, errlen) != 0)
        return -1;
    for (int k = 0; k < wsrc_count(im->src); k++) {
        const st_tensor *t = wsrc_tensor(im->src, k);
        int known = t == im->lm_head || is_buffer(t->name);
        for (int i = 0; i < im->n && !known; i++)
            known = im->have[i] == t;
        if (!known) {
            snprintf(err, errlen, "%s: %s is not a GPT-2 parameter", wsrc_label(im->src), t->name);
            return -1;
        }
    }
    return 0;
}

/* The tied head must be the embedding: an untied model would silently lose it. */
static int check_tied(importer *im, const float *wte, size_t n, char *err, size_t errlen)
{
    float *head = malloc(n * sizeof *head);
    if (!head) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = wsrc_read_f32(im->src, im->lm_head, head, err, errlen);
    if (rc == 0 && memcmp(head, wte, n * sizeof *head) != 0) {
        snprintf(err, errlen, "%s: lm_head.weight differs from wte "
                 "(an untied head cannot be imported)", wsrc_label(im->src));
        rc = -1;
    }
    free(head);
    return rc;
}

/* ckpt_stream.get: tensor i of /model (the only group), converted and checked. */
static int fill(void *ctx, int g, int i, float *buf, char *err, size_t errlen)
{
    importer *im = ctx;
    const st_tensor *t = im->have[i];
    size_t n = (size_t)st_numel(t);
    if (wsrc_read_f32(im->src, t, buf, err, errlen) != 0)
        return -1;
    if (!f32_all_finite(buf, n)) {
        snprintf(err, errlen, "%s: %s holds NaN or infinite values", wsrc_label(im->src), t->name);
        return -1;
    }
    return i == 0 && im->lm_head ? check_tied(im, buf, n, err, errlen) : 0;
}

static char *config_json(const gpt2_dims *d, const char *dir)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "vocab_size", d->vocab_size);
    cJSON_AddNumberToObject(o, "n_positions", d->n_positions);
    cJSON_AddNumberToObject(o, "n_embd", d->n_embd);
    cJSON_AddNumberToObject(o, "n_layer", d->n_layer);
    cJSON_AddNumberToObject(o, "n_head", d->n_head);
    cJSON_AddStringToObject(o, "imported_from", dir);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int import(const char *dir, const char *out, char *err, size_t errlen)
{
    gpt2_dims d;
    if (read_config(dir, &d, err, errlen) != 0)
        return -1;
    tokenizer *tok = tokenizer_load_hf_dir(dir, err, errlen);
    if (!tok)
        return -1;
    int rc = 0;
    if (tokenizer_vocab_size(tok) > d.vocab_size) {
        snprintf(err, errlen, "the vocabulary has %d tokens, more than config.json's vocab_size %d",
                 tokenizer_vocab_size(tok), d.vocab_size);
        rc = -1;
    }
    importer im = {0};
    im.want = hf_gpt2_tensor_list(&d, &im.n);
    im.have = calloc((size_t)im.n, sizeof *im.have);
    ckpt_tensor *desc = calloc((size_t)im.n, sizeof *desc);
    if (rc == 0 && (!im.want || !im.have || !desc)) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc == 0)
        rc = wsrc_open(&im.src, dir, err, errlen);
    if (rc == 0)
        rc = match_tensors(&im, &d, err, errlen);
    char *cfg = rc == 0 ? config_json(&d, dir) : NULL;
    if (rc == 0) {
        for (int i = 0; i < im.n; i++)
            desc[i] = (ckpt_tensor){im.want[i].name, im.want[i].rows, im.want[i].cols, 0};
        const ckpt_state s = {.config_json = cfg, .tok = tok, .tensors = desc, .num_tensors = im.n,
                              .stream = {.get = fill, .ctx = &im}, .weights_only = true};
        rc = ckpt_write(out, &s, err, errlen);
    }
    wsrc_close(im.src);
    free(cfg);
    free(desc);
    free(im.want);
    free(im.have);
    tokenizer_free(tok);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (i + 1 < argc && strcmp(argv[i], "--hf") == 0)
            dir = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--out") == 0)
            out = argv[++i];
        else {
            fprintf(stderr, "import: unknown or incomplete option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!dir || !out) {
        fprintf(stderr, "import: --hf and --out are required (see --help)\n");
        return 2;
    }
    if (strlen(dir) > 1000) {
        fprintf(stderr, "import: --hf is longer than 1000 bytes\n");
        return 2;
    }
    char err[1024];
    if (cpu_isa_from_env(err, sizeof err) != 0 ||
        fs_require_new(out, "file name", err, sizeof err) != 0) {
        fprintf(stderr, "import: %s\n", err);
        return 2;
    }
    fs_atomic_remove_on_signals();   /* Ctrl-C leaves no model-sized OUT.tmp behind */
    if (import(dir, out, err, sizeof err) != 0) {
        fs_printable(err);   /* it may quote a tensor name of the file */
        fprintf(stderr, "import: %s\n", err);
        return 1;
    }
    printf("import: %s -> %s\n", dir, out);
    return 0;
}
