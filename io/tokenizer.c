/* tokenizer: the tokenizer struct, the byte and BPE tokenizers, and the merging,
 * encoding and decoding all kinds share (io/tokenizer_internal.h).
 *
 * BPE training and encoding first cut the text into chunks, so merges never cross
 * a word boundary: with GPT-2's own split (tokenizer_gpt2.c), or with the bytes
 * split here, which bpe files made before GPT-2's split was bpe's mean.  It cuts
 * GPT-2 style (contractions, an optional space plus a run of letters, digits or
 * punctuation, whitespace runs), but bytes >= 0x80 count as letters, which keeps
 * UTF-8 sequences inside words without decoding them, and chunks are capped at
 * MAX_CHUNK bytes, which bounds the work per chunk.  Tokens are at most MAX_CHUNK
 * bytes with either split.
 */
#include "io/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- pair map */

#define EMPTY_KEY UINT64_MAX

int tok_map_init(pair_map *m, size_t expected)
{
    m->cap = 64;
    while (m->cap < 2 * expected)
        m->cap *= 2;
    m->len = 0;
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->vals = malloc(m->cap * sizeof *m->vals);
    if (!m->keys || !m->vals)
        return -1;
    memset(m->keys, 0xff, m->cap * sizeof *m->keys);
    return 0;
}

void tok_map_free(pair_map *m)
{
    free(m->keys);
    free(m->vals);
}

static size_t map_slot(const pair_map *m, uint64_t key)
{
    size_t i = mix64(key) & (m->cap - 1);
    while (m->keys[i] != key && m->keys[i] != EMPTY_KEY)
        i = (i + 1) & (m->cap - 1);
    return i;
}

const uint32_t *tok_map_get(const pair_map *m, uint64_t key)
{
    size_t i = map_slot(m, key);
    return m->keys[i] == key ? &m->vals[i] : NULL;
}

static int map_grow(pair_map *m)
{
    pair_map bigger;
    if (tok_map_init(&bigger, m->cap) != 0) {
        tok_map_free(&bigger);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != EMPTY_KEY) {
            size_t j = map_slot(&bigger, m->keys[i]);
            bigger.keys[j] = m->keys[i];
            bigger.vals[j] = m->vals[i];
        }
    bigger.len = m->len;
    tok_map_free(m);
    *m = bigger;
    return 0;
}

int tok_map_put(pair_map *m, uint64_t key, uint32_t val)
{
    if (2 * (m->len + 1) > m->cap && map_grow(m) != 0)
        return -1;
    size_t i = map_slot(m, key);
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 0;
}

int tok_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*(void **)p, c * elem);
    if (!q)
        return -1;
    *(void **)p = q;
    *cap = c;
    return 0;
}

/* --------------------------------------------------------------- pre-split */

enum { C_LETTER, C_DIGIT, C_SPACE, C_OTHER };

static int byte_class(uint8_t c)
{
    if (c >= 0x80 || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return C_LETTER;
    if (c >= '0' && c <= '9')
        return C_DIGIT;
    if (c == ' ' || (c >= '\t' && c <= '\r'))
        return C_SPACE;
    return C_OTHER;
}

/* GPT-2's 's 't 're 've 'm 'll 'd; s[0] is the apostrophe. */
static size_t contraction_len(const uint8_t *s, size_t n)
{
    if (n >= 2 && (s[1] == 's' || s[1] == 't' || s[1] == 'm' || s[1] == 'd'))
        return 2;
    if (n >= 3 && ((s[1] == 'r' && s[2] == 'e') || (s[1] == 'v' && s[2] == 'e') ||
                   (s[1] == 'l' && s[2] == 'l')))
        return 3;
    return 0;
}

size_t tok_chunk_end(const uint8_t *s, size_t n, size_t i)
{
    if (n - i > MAX_CHUNK)
        n = i + MAX_CHUNK;
    if (s[i] == '\'' && contraction_len(s + i, n - i))
        return i + contraction_len(s + i, n - i);
    size_t j = i;
    if (s[j] == ' ' && j + 1 < n && byte_class(s[j + 1]) != C_SPACE)
        j++;
    int cls = byte_class(s[j]);
    while (j < n && byte_class(s[j]) == cls)
        j++;
    /* Like GPT-2's \s+(?!\S): a blank run leaves its last blank to the word after it. */
    if (cls == C_SPACE && j < n && j - i >= 2)
        j--;
    return j;
}

/* tok_chunk_end's bytes split as a regular expression (io/tokenizer.h): a contraction,
 * an optional space and a run of letters (ASCII ones and every non-ASCII
 * character), of digits or of other ASCII characters, a blank run that leaves
 * its last blank to a non-blank after it, any other blank run.  Written with
 * \xHH escapes below 0x80 only, which Oniguruma, JavaScript and PCRE2 all read
 * alike. */
const char TOKENIZER_BPE_SPLIT_REGEX[] =
    "'(?:[stmd]|re|ve|ll)"
    "| ?[^\\x00-\\x40\\x5B-\\x60\\x7B-\\x7F]+"
    "| ?[0-9]+"
    "| ?[\\x00-\\x08\\x0E-\\x1F\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7F]+"
    "|[\\x09-\\x0D\\x20]+(?![^\\x09-\\x0D\\x20])"
    "|[\\x09-\\x0D\\x20]+";

/* --------------------------------------------------------------- tokenizer */

static const char *const SPLIT_NAMES[] = {"bytes", "gpt2"};

const char *tokenizer_split_name(tokenizer_split_kind split)
{
    return SPLIT_NAMES[split];
}

int tokenizer_split_parse(const char *name, size_t len, tokenizer_split_kind *split)
{
    for (int i = 0; i < 2; i++)
        if (strlen(SPLIT_NAMES[i]) == len && memcmp(name, SPLIT_NAMES[i], len) == 0) {
            *split = (tokenizer_split_kind)i;
            return 0;
        }
    return -1;
}

tokenizer_split_kind tokenizer_split(const tokenizer *t)
{
    return t->split;
}

void tokenizer_free(tokenizer *t)
{
    if (!t)
        return;
    free(t->merges);
    free(t->merge_out);
    tok_map_free(&t->ranks);
    free(t->tok_off);
    free(t->tok_len);
    free(t->pool);
    free(t->by_bytes);
    pcre2_code_free(t->re);
    free(t->added);
    free(t->added_order);
    free(t->chat_template);
    free(t);
}

int tok_fail_oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "tokenizer: out of memory");
    return -1;
}

/* Checks that every merge uses earlier tokens, is new, and stays within MAX_CHUNK bytes. */
static int check_merges(tokenizer *t, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < t->nmerges; i++) {
        uint32_t a = t->merges[2 * i], b = t->merges[2 * i + 1];
        if (a >= BYTE_VOCAB + i || b >= BYTE_VOCAB + i) {
            snprintf(err, errlen, "merge %u ([%u, %u]) refers to a token not defined before it",
                     i, a, b);
            return -1;
        }
        const uint32_t *prev = tok_map_get(&t->ranks, pair_key(a, b));
        if (prev) {
            snprintf(err, errlen, "merge %u ([%u, %u]) repeats merge %u", i, a, b, *prev);
            return -1;
        }
        t->merge_out[i] = BYTE_VOCAB + i;
        t->tok_len[BYTE_VOCAB + i] = t->tok_len[a] + t->tok_len[b];
        if (t->tok_len[BYTE_VOCAB + i] > MAX_CHUNK) {
            snprintf(err, errlen, "merge %u makes a token longer than %d bytes", i, MAX_CHUNK);
            return -1;
        }
        if (tok_map_put(&t->ranks, pair_key(a, b), i) != 0)
            return tok_fail_oom(err, errlen);
    }
    return 0;
}

/* Lays out the bytes of every token so decoding is a table lookup. */
static int build_pool(tokenizer *t, char *err, size_t errlen)
{
    uint32_t vocab = BYTE_VOCAB + t->nmerges;
    size_t total = 0;
    for (uint32_t id = 0; id < vocab; id++) {
        t->tok_off[id] = (uint32_t)total;
        total += t->tok_len[id];
    }
    t->pool = malloc(total);
    if (!t->pool)
        return tok_fail_oom(err, errlen);
    for (uint32_t id = 0; id < BYTE_VOCAB; id++)
        t->pool[id] = (uint8_t)id;
    for (uint32_t i = 0; i < t->nmerges; i++) {
        uint32_t a = t->merges[2 * i], b = t->merges[2 * i + 1];
        uint8_t *dst = t->pool + t->tok_off[BYTE_VOCAB + i];
        memcpy(dst, t->pool + t->tok_off[a], t->tok_len[a]);
        memcpy(dst + t->tok_len[a], t->pool + t->tok_off[b], t->tok_len[b]);
    }
    return 0;
}

tokenizer *tok_create(int kind, const uint32_t *merges, size_t nmerges, char *err,
                      size_t errlen)
{
    if (nmerges > MAX_VOCAB - BYTE_VOCAB) {
        snprintf(err, errlen, "%zu merges exceed the vocabulary limit of %d", nmerges, MAX_VOCAB);
        return NULL;
    }
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        tok_fail_oom(err, errlen);
        return NULL;
    }
    size_t vocab = BYTE_VOCAB + nmerges;
    t->kind = kind;
    t->eos = -1;
    t->vocab = (uint32_t)vocab;
    t->nmerges = (uint32_t)nmerges;
    t->merges = malloc((2 * nmerges + 1) * sizeof *t->merges);
    t->merge_out = malloc((nmerges + 1) * sizeof *t->merge_out);
    t->tok_off = malloc(vocab * sizeof *t->tok_off);
    t->tok_len = malloc(vocab * sizeof *t->tok_len);
    int ok = t->merges && t->merge_out && t->tok_off && t->tok_len &&
             tok_map_init(&t->ranks, nmerges) == 0;
    if (!ok) {
        tok_fail_oom(err, errlen);
    } else {
        if (nmerges)   /* the byte tokenizer passes NULL */
            memcpy(t->merges, merges, 2 * nmerges * sizeof *t->merges);
        for (uint32_t id = 0; id < BYTE_VOCAB; id++) {
            t->tok_len[id] = 1;
            t->byte_id[id] = id;
        }
        ok = check_merges(t, err, errlen) == 0 && build_pool(t, err, errlen) == 0;
    }
    if (!ok) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

tokenizer *tokenizer_new_byte(void)
{
    char err[64];
    return tok_create(KIND_BYTE, NULL, 0, err, sizeof err);
}

tokenizer *tokenizer_new_bpe(const uint32_t *merges, size_t nmerges, tokenizer_split_kind split,
                             char *err, size_t errlen)
{
    tokenizer *t = tok_create(KIND_BPE, merges, nmerges, err, errlen);
    if (t && split == TOKENIZER_SPLIT_GPT2) {
        t->split = split;
        if (!(t->re = tok_gpt2_pattern(err, errlen))) {
            tokenizer_free(t);
            return NULL;
        }
    }
    return t;
}

const uint32_t *tokenizer_merges(const tokenizer *t, size_t *n)
{
    *n = t->nmerges;
    return t->kind != KIND_BYTE ? t->merges : NULL;
}

const uint8_t *tokenizer_vocab(const tokenizer *t, const uint32_t **lens)
{
    *lens = t->tok_len;
    return t->pool;
}

int tokenizer_eos(const tokenizer *t)
{
    return t->eos;
}

int tokenizer_vocab_size(const tokenizer *t)
{
    return (int)t->vocab;
}

bool tokenizer_same(const tokenizer *a, const tokenizer *b)
{
    if (a->kind != b->kind || a->split != b->split || a->vocab != b->vocab || a->eos != b->eos ||
        a->nmerges != b->nmerges ||
        (a->nmerges && memcmp(a->merges, b->merges, 2 * (size_t)a->nmerges * sizeof *a->merges)))
        return false;
    for (uint32_t id = 0; id < a->vocab; id++)
        if (a->tok_len[id] != b->tok_len[id] ||
            memcmp(a->pool + a->tok_off[id], b->pool + b->tok_off[id], a->tok_len[id]) != 0)
            return false;
    if (a->nadded != b->nadded)
        return false;
    for (uint32_t i = 0; i < a->nadded; i++)   /* both in id order */
        if (a->added[i].id != b->added[i].id || a->added[i].special != b->added[i].special)
            return false;
    return true;
}

const char *tokenizer_type(const tokenizer *t)
{
    static const char *names[] = {"byte", "bpe", "gpt2"};
    return names[t->kind];
}

/* ---------------------------------------------------------------- encoding */

#define DEAD UINT32_MAX

/* Min-heap of (rank << 32 | position): lowest rank first, then leftmost, which merges
 * overlapping runs such as "aaa" left to right exactly as training did. */
static void heap_push_u64(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop_u64(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= last)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void push_candidate(const tokenizer *t, uint64_t *h, size_t *nh, const uint32_t *sym,
                           uint32_t p, uint32_t q)
{
    const uint32_t *rank = tok_map_get(&t->ranks, pair_key(sym[p], sym[q]));
    if (rank)
        heap_push_u64(h, nh, (uint64_t)*rank << 32 | p);
}

size_t tok_encode_chunk(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids,
                        chunk_scratch w)
{
    uint32_t *sym = w.sym, *next = w.next, *prev = w.prev;
    uint64_t *heap = w.heap;
    size_t nh = 0;
    for (uint32_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        next[i] = i + 1;
        prev[i] = i - 1;   /* wraps to DEAD for the first symbol */
    }
    for (uint32_t i = 0; i + 1 < n; i++)
        push_candidate(t, heap, &nh, sym, i, i + 1);
    while (nh > 0) {
        uint64_t top = heap_pop_u64(heap, &nh);
        uint32_t rank = (uint32_t)(top >> 32), p = (uint32_t)top, q = next[p];
        /* Entries go stale when a neighbour merges; only act on ones still true. */
        if (sym[p] == DEAD || q >= n || sym[p] != t->merges[2 * rank] ||
            sym[q] != t->merges[2 * rank + 1])
            continue;
        sym[p] = t->merge_out[rank];
        sym[q] = DEAD;
        next[p] = next[q];
        if (next[p] < n)
            prev[next[p]] = p;
        if (prev[p] != DEAD)
            push_candidate(t, heap, &nh, sym, prev[p], p);
        if (next[p] < n)
            push_candidate(t, heap, &nh, sym, p, next[p]);
    }
    size_t k = 0;
    for (uint32_t i = 0; i < n; i = next[i])
        ids[k++] = sym[i];
    return k;
}

size_t tok_encode_short(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids)
{
    uint32_t sym[MAX_CHUNK], next[MAX_CHUNK], prev[MAX_CHUNK];
    uint64_t heap[3 * MAX_CHUNK];
    return tok_encode_chunk(t, s, n, ids, (chunk_scratch){sym, next, prev, heap});
}

size_t tokenizer_encode(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids)
{
    if (t->kind == KIND_BYTE) {
        for (size_t i = 0; i < n; i++)
            ids[i] = text[i];
        return n;
    }
    if (t->split == TOKENIZER_SPLIT_GPT2)
        return tok_encode_gpt2(t, text, n, ids);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t end = tok_chunk_end(text, n, i);
        k += tok_encode_short(t, text + i, (uint32_t)(end - i), ids + k);
        i = end;
    }
    return k;
}

/* ----------------------------------------------------------------- cutting */

static int ascii_blank(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Whether a chunk ends after text[p-1] whatever follows when text[p] is an ASCII
 * blank: text[p-1] is no blank of t's split (GPT-2's: Unicode's White_Space; the
 * bytes split's: the ASCII ones, every byte >= 0x80 being a letter). */
static bool ends_word(const tokenizer *t, const uint8_t *text, size_t p)
{
    if (ascii_blank(text[p - 1]))
        return false;
    return text[p - 1] < 0x80 || t->split != TOKENIZER_SPLIT_GPT2 ||
           !tok_gpt2_ends_wide_blank(text, p);
}

/* Why a cut between text[p-1], no blank, and an ASCII blank text[p] keeps every
 * id (blank: GPT-2's White_Space and the bytes split's C_SPACE agree on ASCII):
 * - GPT-2's split.  Its pattern looks behind nothing, so matching from p sees only
 *   what follows.  The chunk holding text[p-1] is a contraction, or a run of letters,
 *   digits or symbols (which takes no blank but a leading space), so it ends at p;
 *   only a blank run could read past p-1, and text[p-1] is in none.  So the chunks
 *   before p are the same whether the text goes on or ends at p, and one starts at
 *   p.  An ill-formed UTF-8 sequence (read as U+FFFD, a symbol) ends at the ASCII
 *   text[p] either way, and a well-formed character's first byte is never taken
 *   into the ill-formed sequence before it, so the character that ends at p-1 is
 *   read the same either way too (CJK text, whose punctuation is not ASCII, may be
 *   cut before its newlines).
 * - The bytes split: the same, a class run ending where the class changes; its
 *   MAX_CHUNK cap counts from a chunk's start, and a chunk starts at p either way.
 * - Added tokens (gpt2) are found before the split: the matches are the same on
 *   both sides unless one could cover both text[p-1] and text[p].
 * After a '\n' is no such place: "\n\n" followed by text is cut "\n", "\n", but is
 * one chunk at the end of a text. */
size_t tokenizer_cut(const tokenizer *t, const uint8_t *text, size_t n)
{
    if (t->kind == KIND_BYTE)
        return n;
    for (size_t p = n ? n - 1 : 0; p > 0; p--)
        if (ascii_blank(text[p]) && ends_word(t, text, p) &&
            !(t->nadded && tok_added_spans(t, text, n, p)))
            return p;
    return 0;
}

/* Ids outside the vocabulary (e.g. a model's padding rows) decode to nothing. */
size_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, uint8_t *out,
                        size_t cap)
{
    uint32_t vocab = t->vocab;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= vocab)
            continue;
        uint32_t len = t->tok_len[ids[i]];
        if (k < cap)
            memcpy(out + k, t->pool + t->tok_off[ids[i]], k + len <= cap ? len : cap - k);
        k += len;
    }
    return k;
}

