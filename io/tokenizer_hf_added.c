/* tokenizer_hf_added: Hugging Face's added tokens as its files give them
 * (io/tokenizer_internal.h): tokenizer.json's "added_tokens", tokenizer_config.json's
 * "added_tokens_decoder" and the older added_tokens.json.
 *
 * lstrip, rstrip and single_word change which text a token matches; the gpt2
 * tokenizer matches the text exactly, so a token with any of them true is refused
 * rather than encoded otherwise than transformers would.  "normalized" does not
 * matter: GPT-2 has no normalizer.
 */
#include "io/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tok_added_list_free(tok_added_list *l)
{
    free(l->a);
    *l = (tok_added_list){0};
}

static int list_push(tok_added_list *l, tokenizer_added a, char *err, size_t errlen)
{
    if (l->n >= MAX_VOCAB) {
        snprintf(err, errlen, "more than %d added tokens", MAX_VOCAB);
        return -1;
    }
    if (tok_grow(&l->a, &l->cap, l->n + 1, sizeof *l->a) != 0)
        return tok_fail_oom(err, errlen);
    l->a[l->n++] = a;
    return 0;
}

/* One token's fields (an object with "content", and "special", "lstrip", "rstrip",
 * "single_word" when given) as token id. */
static int parse_token(const cJSON *o, double id, tokenizer_added *a, char *err, size_t errlen)
{
    static const char *unsupported[] = {"lstrip", "rstrip", "single_word"};
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(o, "special");
    if (!(id >= 0 && id < MAX_VOCAB && floor(id) == id)) {
        snprintf(err, errlen, "an added token has no valid id");
        return -1;
    }
    if (!cJSON_IsString(content) || (special && !cJSON_IsBool(special))) {
        snprintf(err, errlen, "added token %.0f has no \"content\" string or a \"special\" that "
                 "is not true or false", id);
        return -1;
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, unsupported[i]))) {
            snprintf(err, errlen, "added token %.0f (\"%.40s\") has %s true, which is not "
                     "supported", id, content->valuestring, unsupported[i]);
            return -1;
        }
    *a = (tokenizer_added){(uint32_t)id, cJSON_IsTrue(special),
                           (const uint8_t *)content->valuestring,
                           (uint32_t)strlen(content->valuestring)};
    return 0;
}

int tok_hf_added_tokens(const cJSON *arr, tok_added_list *l, char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "added_tokens is not an array");
        return -1;
    }
    for (const cJSON *e = arr->child; e; e = e->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        tokenizer_added a;
        if (parse_token(e, cJSON_IsNumber(id) ? id->valuedouble : -1, &a, err, errlen) != 0 ||
            list_push(l, a, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int tok_hf_added_decoder(const cJSON *obj, tok_added_list *l, char *err, size_t errlen)
{
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "added_tokens_decoder is not an object");
        return -1;
    }
    for (const cJSON *e = obj->child; e; e = e->next) {
        char *end;
        double id = strtod(e->string, &end);
        tokenizer_added a;
        if (parse_token(e, *e->string && !*end ? id : -1, &a, err, errlen) != 0 ||
            list_push(l, a, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int by_id(const void *x, const void *y)
{
    const tokenizer_added *a = x, *b = y;
    return (a->id > b->id) - (a->id < b->id);
}

void tok_added_list_sort(tok_added_list *l)
{
    if (l->n)
        qsort(l->a, l->n, sizeof *l->a, by_id);
}

const tokenizer_added *tok_added_list_find(const tok_added_list *l, uint32_t id)
{
    const tokenizer_added key = {.id = id};
    return l->n ? bsearch(&key, l->a, l->n, sizeof *l->a, by_id) : NULL;
}

int tok_hf_added_json(const cJSON *obj, tok_added_list *l, char *err, size_t errlen)
{
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "added_tokens.json is not an object of text -> id");
        return -1;
    }
    tok_added_list_sort(l);
    size_t known = l->n;   /* the decoder's, which say more, sorted */
    for (const cJSON *e = obj->child; e; e = e->next) {
        uint32_t len = (uint32_t)strlen(e->string);
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= MAX_VOCAB ||
            floor(e->valuedouble) != e->valuedouble) {
            snprintf(err, errlen, "added_tokens.json: \"%.40s\" has no valid id", e->string);
            return -1;
        }
        tokenizer_added a = {(uint32_t)e->valuedouble, false, (const uint8_t *)e->string, len};
        const tokenizer_added *same = tok_added_list_find(&(tok_added_list){l->a, known, 0}, a.id);
        if (same && (same->len != len || memcmp(same->content, e->string, len) != 0)) {
            snprintf(err, errlen, "added_tokens.json gives id %u to \"%.40s\", "
                     "tokenizer_config.json to another text", a.id, e->string);
            return -1;
        }
        if (!same && list_push(l, a, err, errlen) != 0)
            return -1;
    }
    return 0;
}
