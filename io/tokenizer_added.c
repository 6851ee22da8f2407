/* tokenizer_added: a gpt2 tokenizer's added tokens (io/tokenizer_internal.h), as
 * Hugging Face's tokenizers library has them: the list checked, new tokens appended
 * to the vocabulary, and their texts found in an input, the leftmost match first and
 * the longest of those starting there.
 */
#include "io/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_id(const void *x, const void *y)
{
    const tokenizer_added *a = x, *b = y;
    return (a->id > b->id) - (a->id < b->id);
}

/* Names token a in err: its id and up to 40 bytes of its text. */
static void name_token(const tokenizer_added *a, char *err, size_t errlen, const char *why)
{
    int shown = a->content ? (int)(a->len < 40 ? a->len : 40) : 0;
    snprintf(err, errlen, "added token %u (\"%.*s\") %s", a->id, shown,
             a->content ? (const char *)a->content : "", why);
}

/* Checks the list (sorted by id) against t's vocabulary of vocab tokens; *m of them
 * are new, *bytes their texts' total length.  0, or -1 with a reason. */
static int check_list(const tokenizer *t, const tokenizer_added *a, size_t n, size_t *m,
                      size_t *bytes, char *err, size_t errlen)
{
    char why[80];
    *m = *bytes = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = a[i].id;
        if (i > 0 && id == a[i - 1].id) {
            name_token(&a[i], err, errlen, "has the id of another added token");
            return -1;
        }
        if (id < t->vocab) {
            if (a[i].content && (a[i].len != t->tok_len[id] ||
                                 memcmp(a[i].content, t->pool + t->tok_off[id], a[i].len) != 0)) {
                name_token(&a[i], err, errlen, "is not the text of the vocabulary's token");
                return -1;
            }
            continue;
        }
        if (id != t->vocab + *m) {
            snprintf(why, sizeof why, "leaves a gap: the next new id is %zu", t->vocab + *m);
            name_token(&a[i], err, errlen, why);
            return -1;
        }
        if (!a[i].content || a[i].len == 0) {
            name_token(&a[i], err, errlen, "has no text");
            return -1;
        }
        ++*m;
        *bytes += a[i].len;
    }
    return 0;
}

/* The new tokens' texts (the last m of a, in id order) appended to t. */
static int append_new(tokenizer *t, const tokenizer_added *a, size_t m, size_t bytes,
                      char *err, size_t errlen)
{
    uint8_t *cat = malloc(bytes + 1);
    uint32_t *lens = malloc((m + 1) * sizeof *lens);
    int rc = cat && lens ? 0 : tok_fail_oom(err, errlen);
    for (size_t i = 0, off = 0; rc == 0 && i < m; off += a[i++].len) {
        memcpy(cat + off, a[i].content, a[i].len);
        lens[i] = a[i].len;
    }
    char why[200];
    if (rc == 0 && tok_gpt2_append(t, cat, lens, m, why, sizeof why) != 0) {
        snprintf(err, errlen, "added tokens: %s", why);
        rc = -1;
    }
    free(cat);
    free(lens);
    return rc;
}

/* Orders added tokens by first byte, then longest first, for tok_added_next. */
static int by_first_then_longest(const void *x, const void *y, void *ctx)
{
    const tokenizer_added *a = (const tokenizer_added *)ctx + *(const uint32_t *)x;
    const tokenizer_added *b = (const tokenizer_added *)ctx + *(const uint32_t *)y;
    if (a->content[0] != b->content[0])
        return a->content[0] - b->content[0];
    return (a->len < b->len) - (a->len > b->len);
}

static int index_matches(tokenizer *t, char *err, size_t errlen)
{
    free(t->added_order);
    t->added_order = malloc((t->nadded + 1) * sizeof *t->added_order);
    if (!t->added_order)
        return tok_fail_oom(err, errlen);
    for (uint32_t i = 0; i < t->nadded; i++)
        t->added_order[i] = i;
    qsort_r(t->added_order, t->nadded, sizeof *t->added_order, by_first_then_longest, t->added);
    t->added_longest = 0;
    for (uint32_t i = 0; i < t->nadded; i++)
        if (t->added[i].len > t->added_longest)
            t->added_longest = t->added[i].len;
    uint32_t j = 0;
    for (int b = 0; b <= BYTE_VOCAB; b++) {
        t->added_first[b] = j;
        while (j < t->nadded && t->added[t->added_order[j]].content[0] == b)
            j++;
    }
    return 0;
}

int tokenizer_set_added(tokenizer *t, const tokenizer_added *list, size_t n, char *err,
                        size_t errlen)
{
    if (t->kind != KIND_GPT2) {
        snprintf(err, errlen, "a %s tokenizer has no added tokens", tokenizer_type(t));
        return -1;
    }
    if (n > MAX_VOCAB) {
        snprintf(err, errlen, "%zu added tokens exceed the limit of %d", n, MAX_VOCAB);
        return -1;
    }
    tokenizer_added *a = malloc((n + 1) * sizeof *a);
    if (!a)
        return tok_fail_oom(err, errlen);
    if (n)
        memcpy(a, list, n * sizeof *a);
    qsort(a, n, sizeof *a, by_id);
    size_t m, bytes;
    if (check_list(t, a, n, &m, &bytes, err, errlen) != 0 ||
        (m && append_new(t, a + n - m, m, bytes, err, errlen) != 0)) {
        free(a);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {   /* the texts now live in t */
        a[i].content = t->pool + t->tok_off[a[i].id];
        a[i].len = t->tok_len[a[i].id];
    }
    free(t->added);
    t->added = a;
    t->nadded = (uint32_t)n;
    return index_matches(t, err, errlen);
}

const tokenizer_added *tokenizer_added_tokens(const tokenizer *t, size_t *n)
{
    *n = t->nadded;
    return t->added;
}

size_t tok_added_next(const tokenizer *t, const uint8_t *s, size_t n, size_t from, uint32_t *k)
{
    for (size_t i = from; i < n; i++) {
        for (uint32_t j = t->added_first[s[i]]; j < t->added_first[s[i] + 1]; j++) {
            const tokenizer_added *a = &t->added[t->added_order[j]];
            if (a->len <= n - i && memcmp(s + i, a->content, a->len) == 0) {
                *k = t->added_order[j];
                return i;
            }
        }
    }
    return n;
}

bool tok_added_spans(const tokenizer *t, const uint8_t *s, size_t n, size_t p)
{
    for (size_t back = 1; back <= p && back < t->added_longest; back++) {
        size_t i = p - back;
        for (uint32_t j = t->added_first[s[i]]; j < t->added_first[s[i] + 1]; j++) {
            const tokenizer_added *a = &t->added[t->added_order[j]];
            /* one that runs past n and matches as far as n may still match */
            size_t have = i + a->len > n ? n - i : a->len;
            if (a->len > back && memcmp(s + i, a->content, have) == 0)
                return true;
        }
    }
    return false;
}
