/* tokenizer_files: the tokenizer.json files prep writes and every program reads,
 * GPT-2's vocabulary and merges as OpenAI (encoder.json, vocab.bpe) and Hugging
 * Face (vocab.json, merges.txt, tokenizer.json) publish them, and a Hugging Face
 * folder's tokenizer with its added tokens (io/tokenizer_internal.h).
 */
#include "io/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"

/* ---------------------------------------------------------- tokenizer.json */

/* gpt2's "eos_id" and "vocab": every token in GPT-2's spelling, by id. */
static int add_gpt2_vocab(cJSON *root, const tokenizer *t)
{
    cJSON *vocab = cJSON_AddNumberToObject(root, "eos_id", t->eos)
                       ? cJSON_AddArrayToObject(root, "vocab") : NULL;
    size_t longest = 0;
    for (uint32_t id = 0; id < t->vocab; id++)
        longest = t->tok_len[id] > longest ? t->tok_len[id] : longest;
    char *spelled = malloc(2 * longest + 1);
    int ok = vocab && spelled;
    for (uint32_t id = 0; ok && id < t->vocab; id++) {
        tokenizer_spell_gpt2(t->pool + t->tok_off[id], t->tok_len[id], spelled);
        ok = cJSON_AddItemToArray(vocab, cJSON_CreateString(spelled));
    }
    free(spelled);
    return ok;
}

/* gpt2's "added": each added token's id and whether it is special. */
static int add_gpt2_added(cJSON *root, const tokenizer *t)
{
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    cJSON *arr = cJSON_AddArrayToObject(root, "added");
    int ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        ok = cJSON_AddItemToArray(arr, o) && cJSON_AddNumberToObject(o, "id", a[i].id) &&
             cJSON_AddBoolToObject(o, "special", a[i].special);
    }
    return ok;
}

static cJSON *to_json(const tokenizer *t)
{
    cJSON *root = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(root, "type", tokenizer_type(t)) &&
             (t->kind != KIND_BPE ||
              cJSON_AddStringToObject(root, "split", tokenizer_split_name(t->split))) &&
             cJSON_AddNumberToObject(root, "vocab_size", tokenizer_vocab_size(t));
    if (ok && t->kind == KIND_GPT2)
        ok = add_gpt2_vocab(root, t) && add_gpt2_added(root, t);
    if (ok && t->chat_template)
        ok = cJSON_AddStringToObject(root, "chat_template", t->chat_template) != NULL;
    cJSON *merges = ok ? cJSON_AddArrayToObject(root, "merges") : NULL;
    ok = merges != NULL;
    for (uint32_t i = 0; ok && i < t->nmerges; i++) {
        int pair[2] = {(int)t->merges[2 * i], (int)t->merges[2 * i + 1]};
        ok = cJSON_AddItemToArray(merges, cJSON_CreateIntArray(pair, 2));
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int tokenizer_save(const tokenizer *t, const char *path, char *err, size_t errlen)
{
    cJSON *root = to_json(t);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t len = strlen(text);
    text[len] = '\n';   /* replaces the NUL, which is not written */
    int rc = fs_write_file_atomic(path, text, len + 1, err, errlen);
    free(text);
    return rc;
}

static int json_uint(const cJSON *item, double max, uint32_t *out)
{
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0) || item->valuedouble > max ||
        floor(item->valuedouble) != item->valuedouble)
        return -1;
    *out = (uint32_t)item->valuedouble;
    return 0;
}

/* Reads the "merges" array; its ids are range-checked again by tok_create. */
static uint32_t *parse_merges(const cJSON *arr, uint32_t n, char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr) || (uint32_t)cJSON_GetArraySize(arr) != n) {
        snprintf(err, errlen, "\"merges\" must be an array of vocab_size - 256 = %u pairs", n);
        return NULL;
    }
    uint32_t *m = malloc((2 * (size_t)n + 1) * sizeof *m);
    if (!m) {
        tok_fail_oom(err, errlen);
        return NULL;
    }
    uint32_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++)
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 ||
            json_uint(e->child, MAX_VOCAB, &m[2 * i]) != 0 ||
            json_uint(e->child->next, MAX_VOCAB, &m[2 * i + 1]) != 0) {
            snprintf(err, errlen, "merge %u is not a pair of token ids", i);
            free(m);
            return NULL;
        }
    return m;
}

/* Tokens in GPT-2's spelling (strings) -> their bytes concatenated, and lengths. */
typedef struct {
    uint8_t *bytes;
    uint32_t *lens;
    size_t len;
} vocab_bytes;

static void vocab_bytes_free(vocab_bytes *v)
{
    free(v->bytes);
    free(v->lens);
}

static int vocab_bytes_init(vocab_bytes *v, size_t n, size_t max_bytes, char *err,
                            size_t errlen)
{
    *v = (vocab_bytes){.bytes = malloc(max_bytes + 1), .lens = calloc(n + 1, sizeof *v->lens)};
    return v->bytes && v->lens ? 0 : tok_fail_oom(err, errlen);
}

/* Appends the token spelled s; -1 with a reason if it is not GPT-2's spelling. */
static int vocab_bytes_add(vocab_bytes *v, size_t id, const char *s, char *err, size_t errlen)
{
    long k = tokenizer_unspell_gpt2(s, strlen(s), v->bytes + v->len);
    if (k <= 0) {
        snprintf(err, errlen, "token %zu (\"%.40s\") is not in GPT-2's byte-to-unicode "
                 "spelling", id, s);
        return -1;
    }
    v->lens[id] = (uint32_t)k;
    v->len += (size_t)k;
    return 0;
}

/* gpt2's "added" (ids of the vocabulary), when there is one: without, files made
 * before it, the eos alone is added, special. */
static int parse_added(const cJSON *root, tokenizer *t, char *err, size_t errlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "added");
    if (!arr)
        return 0;
    size_t n = cJSON_IsArray(arr) ? (size_t)cJSON_GetArraySize(arr) : 0;
    if (!cJSON_IsArray(arr) || n > (size_t)tokenizer_vocab_size(t)) {
        snprintf(err, errlen, "\"added\" must be an array of at most vocab_size entries");
        return -1;
    }
    tokenizer_added *a = calloc(n + 1, sizeof *a);
    if (!a)
        return tok_fail_oom(err, errlen);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(e, "special");
        if (json_uint(cJSON_GetObjectItemCaseSensitive(e, "id"), t->vocab - 1, &a[i].id) != 0 ||
            !cJSON_IsBool(special)) {
            snprintf(err, errlen, "added token %zu is not {\"id\": a token id, \"special\": "
                     "true or false}", i);
            free(a);
            return -1;
        }
        a[i].special = cJSON_IsTrue(special);
    }
    int rc = tokenizer_set_added(t, a, n, err, errlen);
    free(a);
    return rc;
}

static tokenizer *gpt2_from_json(const cJSON *root, uint32_t vocab, char *err, size_t errlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(root, "merges");
    uint32_t eos;
    if (!cJSON_IsArray(arr) || (uint32_t)cJSON_GetArraySize(arr) != vocab) {
        snprintf(err, errlen, "\"vocab\" must be an array of vocab_size = %u strings", vocab);
        return NULL;
    }
    if (!cJSON_IsArray(merges) || cJSON_GetArraySize(merges) > MAX_VOCAB) {
        snprintf(err, errlen, "\"merges\" must be an array of at most %d pairs", MAX_VOCAB);
        return NULL;
    }
    if (json_uint(cJSON_GetObjectItemCaseSensitive(root, "eos_id"), MAX_VOCAB, &eos) != 0) {
        snprintf(err, errlen, "missing or invalid \"eos_id\"");
        return NULL;
    }
    size_t max_bytes = 0;
    for (const cJSON *e = arr->child; e; e = e->next)
        max_bytes += cJSON_IsString(e) ? strlen(e->valuestring) : 0;
    vocab_bytes v;
    int ok = vocab_bytes_init(&v, vocab, max_bytes, err, errlen) == 0;
    size_t id = 0;
    for (const cJSON *e = arr->child; ok && e; e = e->next, id++) {
        ok = cJSON_IsString(e);
        if (!ok)
            snprintf(err, errlen, "vocab entry %zu is not a string", id);
        else
            ok = vocab_bytes_add(&v, id, e->valuestring, err, errlen) == 0;
    }
    uint32_t n = (uint32_t)cJSON_GetArraySize(merges);
    uint32_t *m = ok ? parse_merges(merges, n, err, errlen) : NULL;
    tokenizer *t = m ? tokenizer_new_gpt2(v.bytes, v.lens, vocab, m, n, err, errlen) : NULL;
    if (t && (uint32_t)t->eos != eos)
        snprintf(err, errlen, "eos_id %u is not the id of %s (%d)", eos, GPT2_EOS, t->eos);
    if (t && ((uint32_t)t->eos != eos || parse_added(root, t, err, errlen) != 0)) {
        tokenizer_free(t);
        t = NULL;
    }
    free(m);
    vocab_bytes_free(&v);
    return t;
}

/* bpe's "split": absent in files made before GPT-2's split, which mean the bytes one. */
static int parse_split(const cJSON *root, tokenizer_split_kind *split, char *err, size_t errlen)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "split");
    *split = TOKENIZER_SPLIT_BYTES;
    if (!s || (cJSON_IsString(s) &&
               tokenizer_split_parse(s->valuestring, strlen(s->valuestring), split) == 0))
        return 0;
    if (cJSON_IsString(s))
        snprintf(err, errlen, "unknown split \"%.40s\" (gpt2 or bytes)", s->valuestring);
    else
        snprintf(err, errlen, "\"split\" is not a string (gpt2 or bytes)");
    return -1;
}

static tokenizer *from_json(const cJSON *root, char *err, size_t errlen)
{
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "not a tokenizer file (not a JSON object)");
        return NULL;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(root, "merges");
    uint32_t vocab;
    if (!cJSON_IsString(type)) {
        snprintf(err, errlen, "not a tokenizer file (no \"type\")");
        return NULL;
    }
    if (json_uint(cJSON_GetObjectItemCaseSensitive(root, "vocab_size"), MAX_VOCAB, &vocab) != 0) {
        snprintf(err, errlen, "missing or invalid \"vocab_size\"");
        return NULL;
    }
    if (strcmp(type->valuestring, "bpe") != 0 && cJSON_GetObjectItemCaseSensitive(root, "split")) {
        snprintf(err, errlen, "\"split\" is for bpe tokenizers, not %.40s", type->valuestring);
        return NULL;
    }
    if (strcmp(type->valuestring, "byte") == 0) {
        if (vocab != BYTE_VOCAB || (merges && cJSON_GetArraySize(merges) != 0)) {
            snprintf(err, errlen, "byte tokenizer must have vocab_size 256 and no merges");
            return NULL;
        }
        return tok_create(KIND_BYTE, NULL, 0, err, errlen);
    }
    if (strcmp(type->valuestring, "gpt2") == 0)
        return gpt2_from_json(root, vocab, err, errlen);
    if (strcmp(type->valuestring, "bpe") != 0) {
        snprintf(err, errlen, "unknown tokenizer type \"%.40s\"", type->valuestring);
        return NULL;
    }
    if (vocab < BYTE_VOCAB) {
        snprintf(err, errlen, "BPE vocab_size %u is below %d", vocab, BYTE_VOCAB);
        return NULL;
    }
    tokenizer_split_kind split;
    if (parse_split(root, &split, err, errlen) != 0)
        return NULL;
    uint32_t *m = parse_merges(merges, vocab - BYTE_VOCAB, err, errlen);
    tokenizer *t = m ? tokenizer_new_bpe(m, vocab - BYTE_VOCAB, split, err, errlen) : NULL;
    free(m);
    return t;
}

/* The optional "chat_template" of any kind; 0, or -1 with a reason in err. */
static int parse_chat_template(const cJSON *root, tokenizer *t, char *err, size_t errlen)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (!s)
        return 0;
    if (!cJSON_IsString(s))
        return fs_fail(err, errlen, "\"chat_template\" is not a string");
    return tokenizer_set_chat_template(t, s->valuestring, strlen(s->valuestring), err, errlen);
}

tokenizer *tokenizer_parse(const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    tokenizer *t = NULL;
    if (!root)
        snprintf(err, errlen, "not a tokenizer file (invalid JSON)");
    else
        t = from_json(root, err, errlen);
    if (t && parse_chat_template(root, t, err, errlen) != 0) {
        tokenizer_free(t);
        t = NULL;
    }
    cJSON_Delete(root);
    return t;
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)
        return NULL;
    char why[200] = "";
    tokenizer *t = tokenizer_parse((const char *)data, len, why, sizeof why);
    free(data);
    fs_printable(why);   /* it may quote a token */
    if (!t)
        snprintf(err, errlen, "%s: %s", path, why);
    return t;
}

/* ------------------------------------------- OpenAI / Hugging Face files */

/* Appends token id's text: raw (the added token's text it is, as exports write added
 * tokens), else GPT-2's spelling of its bytes. */
static int vocab_bytes_key(vocab_bytes *v, size_t id, const char *key, const tok_added_list *raw,
                           char *err, size_t errlen)
{
    const tokenizer_added *a = raw ? tok_added_list_find(raw, (uint32_t)id) : NULL;
    size_t n = strlen(key);
    if (!a || a->len != n || memcmp(a->content, key, n) != 0)
        return vocab_bytes_add(v, id, key, err, errlen);
    memcpy(v->bytes + v->len, key, n);
    v->lens[id] = (uint32_t)n;
    v->len += n;
    return 0;
}

/* {"token": id, ...} with ids 0..n-1, each once (encoder.json, vocab.json,
 * tokenizer.json's model.vocab), its tokens at most max_bytes bytes in all; raw (or
 * NULL) the added tokens, sorted, whose texts stand for themselves. */
static tokenizer *gpt2_vocab_from(const cJSON *root, size_t len, const tok_added_list *raw,
                                  char *err, size_t errlen)
{
    size_t n = cJSON_IsObject(root) ? (size_t)cJSON_GetArraySize(root) : 0;
    if (n == 0) {
        snprintf(err, errlen, "not a GPT-2 vocabulary (a JSON object of token -> id)");
        return NULL;
    }
    vocab_bytes v;
    const cJSON **by_id = calloc(n, sizeof *by_id);
    int ok = vocab_bytes_init(&v, n, len, err, errlen) == 0;
    if (ok && !by_id) {
        tok_fail_oom(err, errlen);
        ok = 0;
    }
    for (const cJSON *e = ok ? root->child : NULL; ok && e; e = e->next) {
        uint32_t id;
        ok = json_uint(e, (double)n - 1, &id) == 0 && !by_id[id];
        if (!ok)
            snprintf(err, errlen, "token \"%.40s\" has id %g: ids must be 0..%zu, each once",
                     e->string, cJSON_IsNumber(e) ? e->valuedouble : -1.0, n - 1);
        else
            by_id[id] = e;
    }
    for (size_t id = 0; ok && id < n; id++)
        ok = vocab_bytes_key(&v, id, by_id[id]->string, raw, err, errlen) == 0;
    tokenizer *t = ok ? tok_gpt2_alloc(v.bytes, v.lens, n, err, errlen) : NULL;
    free(by_id);
    vocab_bytes_free(&v);
    return t;
}

static tokenizer *gpt2_vocab_parse(const uint8_t *data, size_t len, const tok_added_list *raw,
                                   char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    tokenizer *t = gpt2_vocab_from(root, len, raw, err, errlen);
    cJSON_Delete(root);
    return t;
}

/* The file's errors name it once: fs_read_file's already do. */
static tokenizer *gpt2_vocab_file(const char *path, const tok_added_list *raw, char *err,
                                  size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)
        return NULL;
    char why[300] = "";
    tokenizer *t = gpt2_vocab_parse(data, len, raw, why, sizeof why);
    free(data);
    fs_printable(why);   /* it may quote a token */
    if (!t)
        snprintf(err, errlen, "%s: %s", path, why);
    return t;
}

/* The id of the token spelled s (buf: room for its bytes); -1 with a reason. */
static int merge_part(const tokenizer *t, const char *s, uint8_t *buf, uint32_t *id, char *err,
                      size_t errlen)
{
    long k = tokenizer_unspell_gpt2(s, strlen(s), buf);
    long found = k > 0 ? tok_gpt2_token_id(t, buf, (size_t)k) : NO_ID;
    if (found == NO_ID) {
        snprintf(err, errlen, "\"%.40s\" is not in the vocabulary", s);
        return -1;
    }
    *id = (uint32_t)found;
    return 0;
}

/* One line "a b" of vocab.bpe / merges.txt -> the ids of a and b; -1 with a reason. */
static int merge_line(const tokenizer *t, char *line, uint8_t *buf, uint32_t *pair, char *err,
                      size_t errlen)
{
    char *space = strchr(line, ' ');
    if (!space || space == line || !space[1] || strchr(space + 1, ' ')) {
        snprintf(err, errlen, "\"%.60s\" is not two tokens separated by a space", line);
        return -1;
    }
    *space = 0;
    return merge_part(t, line, buf, &pair[0], err, errlen) ||
           merge_part(t, space + 1, buf, &pair[1], err, errlen) ? -1 : 0;
}

/* vocab.bpe / merges.txt (len bytes at data, which it edits; path names it
 * in errors): an optional "#version" line, then one merge per line. */
static uint32_t *gpt2_merges_parse(const tokenizer *t, const char *path, uint8_t *data,
                                   size_t len, size_t *nmerges, char *err, size_t errlen)
{
    size_t cap = 0, n = 0, lineno = 0;
    uint32_t *m = NULL;
    uint8_t *buf = malloc(len + 1);
    char why[200];
    int ok = buf != NULL;
    if (!ok)
        tok_fail_oom(err, errlen);
    for (char *line = (char *)data, *end; ok && line < (char *)data + len; line = end + 1) {
        end = memchr(line, '\n', (size_t)((char *)data + len - line));
        end = end ? end : (char *)data + len;
        *end = 0;
        lineno++;
        if (end > line && end[-1] == '\r')
            end[-1] = 0;
        if (!*line || (lineno == 1 && strncmp(line, "#version", 8) == 0))
            continue;
        ok = tok_grow(&m, &cap, 2 * n + 2, sizeof *m) == 0;
        if (!ok)
            tok_fail_oom(err, errlen);
        else if (merge_line(t, line, buf, m + 2 * n, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
            ok = 0;
        }
        n++;
    }
    free(buf);
    if (!ok) {
        free(m);
        return NULL;
    }
    *nmerges = n;
    return m ? m : calloc(1, sizeof *m);
}

/* ---------------------------------------------- Hugging Face tokenizer.json */

/* NULL if root (a tokenizers-library tokenizer.json) is GPT-2's byte-level BPE,
 * else what it is instead, in why. */
static const char *not_gpt2(const cJSON *root, char *why, size_t cap)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pre_type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pre, "use_regex");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!cJSON_IsObject(model))
        snprintf(why, cap, "no \"model\": not a Hugging Face tokenizer.json");
    else if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        snprintf(why, cap, "a model of type %.40s, not BPE",
                 cJSON_IsString(type) ? type->valuestring : "(not a string)");
    else if (!(cJSON_IsString(pre_type) && strcmp(pre_type->valuestring, "ByteLevel") == 0))
        snprintf(why, cap, "a pre-tokenizer of type %.40s, not ByteLevel",
                 cJSON_IsString(pre_type) ? pre_type->valuestring : "(none)");
    else if (cJSON_IsFalse(regex))
        snprintf(why, cap, "ByteLevel without GPT-2's regex (use_regex false)");
    else if (cJSON_IsTrue(prefix))   /* it would encode "Hi" as " Hi" */
        snprintf(why, cap, "ByteLevel that adds a space before the text (add_prefix_space true)");
    else if (norm && !cJSON_IsNull(norm))
        snprintf(why, cap, "a normalizer");
    else
        return NULL;
    return why;
}

/* One of model.merges: "a b" or [a, b] -> the ids; -1 with a reason.  line has
 * room for the longest string in the file. */
static int hf_merge(const tokenizer *t, const cJSON *e, char *line, uint8_t *buf, uint32_t *pair,
                    char *err, size_t errlen)
{
    const cJSON *a = cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 ? e->child : NULL;
    if (cJSON_IsString(e))
        return merge_line(t, strcpy(line, e->valuestring), buf, pair, err, errlen);
    if (cJSON_IsString(a) && cJSON_IsString(a->next))
        return merge_part(t, a->valuestring, buf, &pair[0], err, errlen) ||
               merge_part(t, a->next->valuestring, buf, &pair[1], err, errlen) ? -1 : 0;
    snprintf(err, errlen, "neither \"a b\" nor [a, b]");
    return -1;
}

/* model.merges, "a b" strings or [a, b] pairs (newer tokenizers versions),
 * from a file of len bytes. */
static uint32_t *hf_merges(const tokenizer *t, const cJSON *arr, size_t len, size_t *nmerges,
                           char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "model.merges is not an array");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    uint32_t *m = malloc((2 * n + 1) * sizeof *m);
    uint8_t *buf = malloc(len + 1);
    char *line = malloc(len + 1), why[200];
    int rc = m && buf && line ? 0 : tok_fail_oom(err, errlen);
    for (const cJSON *e = arr->child; e && rc == 0; e = e->next, i++)
        if ((rc = hf_merge(t, e, line, buf, m + 2 * i, why, sizeof why)) != 0)
            snprintf(err, errlen, "model.merges[%zu]: %s", i, why);
    free(buf);
    free(line);
    if (rc != 0) {
        free(m);
        return NULL;
    }
    *nmerges = n;
    return m;
}

/* Sets t's merges and compiles its pattern; frees t and returns NULL on failure. */
static tokenizer *gpt2_finish(tokenizer *t, const uint32_t *m, size_t n, char *err,
                              size_t errlen)
{
    if (tok_gpt2_set_merges(t, m, n, err, errlen) != 0 || !(t->re = tok_gpt2_pattern(err, errlen))) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* Makes list (NULL: keep the default) t's added tokens; frees t and returns NULL on
 * failure. */
static tokenizer *gpt2_with_added(tokenizer *t, const tok_added_list *list, char *err,
                                  size_t errlen)
{
    if (t && list && tokenizer_set_added(t, list->a, list->n, err, errlen) != 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* The tokenizer of a parsed tokenizer.json of len bytes, GPT-2's byte-level BPE;
 * NULL with a reason in why. */
static tokenizer *hf_json_tokenizer(const cJSON *root, size_t len, char *why, size_t cap)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    tok_added_list list = {0};
    if (added && tok_hf_added_tokens(added, &list, why, cap) != 0) {
        tok_added_list_free(&list);
        return NULL;
    }
    tok_added_list_sort(&list);
    uint32_t *m = NULL;
    size_t n = 0;
    tokenizer *t = gpt2_vocab_from(cJSON_GetObjectItemCaseSensitive(model, "vocab"), len, &list,
                                   why, cap);
    if (t && !(m = hf_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), len, &n, why,
                             cap))) {
        tokenizer_free(t);
        t = NULL;
    }
    if (t)
        t = gpt2_with_added(gpt2_finish(t, m, n, why, cap), added ? &list : NULL, why, cap);
    free(m);
    tok_added_list_free(&list);
    return t;
}

tokenizer *tokenizer_load_hf_gpt2(const char *path, char *err, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)   /* its errors name it */
        return NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    char why[300] = "";
    bool foreign = !root || not_gpt2(root, why, sizeof why);
    if (!root)
        snprintf(why, sizeof why, "not JSON");
    tokenizer *t = foreign ? NULL : hf_json_tokenizer(root, len, why, sizeof why);
    cJSON_Delete(root);
    fs_printable(why);   /* it may quote a token */
    if (!t)
        snprintf(err, errlen, "%s: %s%s", path, why,
                 foreign ? " (only GPT-2's byte-level BPE is read)" : "");
    return t;
}

/* vocab.json + merges.txt, with raw (or NULL) as in gpt2_vocab_from. */
static tokenizer *load_gpt2(const char *vocab_path, const char *merges_path,
                            const tok_added_list *raw, char *err, size_t errlen)
{
    char why[300] = "";
    uint8_t *data;
    size_t len, n = 0;
    tokenizer *t = gpt2_vocab_file(vocab_path, raw, err, errlen);
    if (!t)
        return NULL;
    if (fs_read_file(merges_path, &data, &len, err, errlen) != 0) {   /* its errors name it */
        tokenizer_free(t);
        return NULL;
    }
    uint32_t *m = gpt2_merges_parse(t, merges_path, data, len, &n, why, sizeof why);
    free(data);
    if (m) {
        t = gpt2_finish(t, m, n, why, sizeof why);
    } else {
        tokenizer_free(t);
        t = NULL;
    }
    fs_printable(why);   /* it may quote a line */
    if (!m)
        snprintf(err, errlen, "%s (do %s and %s belong together?)", why, vocab_path, merges_path);
    else if (!t)
        snprintf(err, errlen, "%s: %s (do %s and %s belong together?)", merges_path, why,
                 vocab_path, merges_path);
    free(m);
    return t;
}

tokenizer *tokenizer_load_gpt2(const char *vocab_path, const char *merges_path, char *err,
                               size_t errlen)
{
    return load_gpt2(vocab_path, merges_path, NULL, err, errlen);
}

/* ------------------------------------------------ a Hugging Face folder */

cJSON *tok_read_json(const char *path, char *err, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)
        return NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    if (!root)
        snprintf(err, errlen, "%s: not JSON", path);
    return root;
}

int tok_hf_config_root(tok_hf_config *c, const cJSON **root, char *err, size_t errlen)
{
    if (!c->read) {
        c->read = true;
        if (fs_dir_has(c->dir, "tokenizer_config.json", c->path, sizeof c->path) &&
            !(c->root = tok_read_json(c->path, err, errlen)))
            return -1;
    }
    *root = c->root;
    return 0;
}

/* The slow tokenizer's added tokens: tokenizer_config.json's added_tokens_decoder, then
 * added_tokens.json.  The list's texts point into both files' JSON: config keeps the
 * first, *added_json the second.  *found: whether either says anything. */
static int slow_added(tok_hf_config *config, cJSON **added_json, tok_added_list *l, bool *found,
                      char *err, size_t errlen)
{
    char path[PATH_MAX + 32], why[300] = "";
    const cJSON *root;
    *found = false;
    if (tok_hf_config_root(config, &root, err, errlen) != 0)
        return -1;
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder");
    if (dec && tok_hf_added_decoder(dec, l, why, sizeof why) != 0)
        return fs_fail(err, errlen, "%s: %s", config->path, why);
    *found = dec != NULL;
    if (fs_dir_has(config->dir, "added_tokens.json", path, sizeof path)) {
        if (!(*added_json = tok_read_json(path, err, errlen)))
            return -1;
        if (tok_hf_added_json(*added_json, l, why, sizeof why) != 0)
            return fs_fail(err, errlen, "%s: %s", path, why);
        *found = true;
    }
    tok_added_list_sort(l);
    return 0;
}

/* The folder's tokens: vocab.json + merges.txt with the slow tokenizer's added
 * tokens, or tokenizer.json alone. */
static tokenizer *hf_dir_tokens(tok_hf_config *config, char *err, size_t errlen)
{
    const char *dir = config->dir;
    char vocab[PATH_MAX + 32], merges[PATH_MAX + 32], json[PATH_MAX + 32];
    bool have_vocab = fs_dir_has(dir, "vocab.json", vocab, sizeof vocab);
    bool have_merges = fs_dir_has(dir, "merges.txt", merges, sizeof merges);
    if (!have_vocab && !have_merges && fs_dir_has(dir, "tokenizer.json", json, sizeof json))
        return tokenizer_load_hf_gpt2(json, err, errlen);
    cJSON *added_json = NULL;
    tok_added_list list = {0};
    bool found;
    char why[300];
    tokenizer *t = NULL;
    if (slow_added(config, &added_json, &list, &found, err, errlen) == 0 &&
        (t = load_gpt2(vocab, merges, &list, err, errlen)) &&
        !(t = gpt2_with_added(t, found ? &list : NULL, why, sizeof why)))
        snprintf(err, errlen, "%s: %s", dir, why);
    if (!t)
        fs_printable(err);   /* it may quote a token */
    tok_added_list_free(&list);
    cJSON_Delete(added_json);
    return t;
}

tokenizer *tokenizer_load_hf_dir(const char *dir, char *err, size_t errlen)
{
    tok_hf_config config = {.dir = dir};
    tokenizer *t = hf_dir_tokens(&config, err, errlen);
    if (t && tok_hf_chat_template(t, &config, err, errlen) != 0) {
        tokenizer_free(t);
        t = NULL;
    }
    cJSON_Delete(config.root);
    return t;
}
