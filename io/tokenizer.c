/* Byte, byte-level BPE and GPT-2 tokenizers.
 *
 * BPE training and encoding first cut the text into chunks GPT-2 style (contractions,
 * an optional space plus a run of letters, digits or punctuation, whitespace runs), so
 * merges never cross a word boundary.  Bytes >= 0x80 count as letters, which keeps
 * UTF-8 sequences inside words without decoding them.  Chunks are capped at MAX_CHUNK
 * bytes, which bounds the work per chunk and the length of every token.
 *
 * gpt2 cuts with GPT-2's own pattern (PCRE2, Unicode classes) and no cap, as the
 * reference encoders do, then applies the same rank-ordered merging to each chunk.
 */
#include "io/tokenizer.h"

#include "io/fsutil.h"
#include "io/hash.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BYTE_VOCAB = 256, MAX_VOCAB = 1 << 20, MAX_CHUNK = 256 };

/* ---------------------------------------------------------------- pair map */

/* Open-addressing map from a token pair to a 32-bit value. */
typedef struct {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, len;   /* cap is a power of two, kept at least twice len */
} pair_map;

#define EMPTY_KEY UINT64_MAX

static uint64_t pair_key(uint32_t a, uint32_t b)
{
    return (uint64_t)a << 32 | b;
}

static size_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static int tok_map_init(pair_map *m, size_t expected)
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

static void tok_map_free(pair_map *m)
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

static const uint32_t *tok_map_get(const pair_map *m, uint64_t key)
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

/* Inserts key (which must be absent). */
static int tok_map_put(pair_map *m, uint64_t key, uint32_t val)
{
    if (2 * (m->len + 1) > m->cap && map_grow(m) != 0)
        return -1;
    size_t i = map_slot(m, key);
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 0;
}

/* Grows *p (of *cap elements of size elem) to hold at least need elements. */
static int tok_grow(void *p, size_t *cap, size_t need, size_t elem)
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

/* End of the chunk starting at s[i]; never more than MAX_CHUNK bytes. */
static size_t tok_chunk_end(const uint8_t *s, size_t n, size_t i)
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

/* --------------------------------------------------------------- tokenizer */

enum { KIND_BYTE, KIND_BPE, KIND_GPT2 };

struct tokenizer {
    int kind;
    int eos;              /* -1: none */
    uint32_t vocab;       /* ids 0..vocab-1 */
    uint32_t nmerges;
    uint32_t *merges;     /* merges[2i], merges[2i+1] make token merge_out[i] */
    uint32_t *merge_out;  /* 256+i for bpe */
    uint32_t byte_id[BYTE_VOCAB];   /* the token of each single byte */
    pair_map ranks;       /* (a, b) -> i */
    uint32_t *tok_off;    /* bytes of token id: pool[tok_off[id] .. + tok_len[id]] */
    uint32_t *tok_len;
    uint8_t *pool;
    uint32_t *by_bytes;   /* gpt2: open-addressing table of ids keyed by their bytes */
    size_t by_bytes_cap;
    pcre2_code *re;       /* gpt2: the pre-tokenization pattern */
};

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
    free(t);
}

static int tok_fail_oom(char *err, size_t errlen)
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

static tokenizer *tok_create(int kind, const uint32_t *merges, size_t nmerges, char *err,
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

tokenizer *tokenizer_new_bpe(const uint32_t *merges, size_t nmerges, char *err, size_t errlen)
{
    return tok_create(KIND_BPE, merges, nmerges, err, errlen);
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
    if (a->kind != b->kind || a->vocab != b->vocab || a->eos != b->eos ||
        a->nmerges != b->nmerges ||
        (a->nmerges && memcmp(a->merges, b->merges, 2 * (size_t)a->nmerges * sizeof *a->merges)))
        return false;
    for (uint32_t id = 0; id < a->vocab; id++)
        if (a->tok_len[id] != b->tok_len[id] ||
            memcmp(a->pool + a->tok_off[id], b->pool + b->tok_off[id], a->tok_len[id]) != 0)
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

/* Work space for a chunk of n bytes: symbols, their links, and a heap of 3n
 * (n-1 initial pairs + 2 per merge). */
typedef struct {
    uint32_t *sym, *next, *prev;
    uint64_t *heap;
} chunk_scratch;

/* Applies merges in rank order to one chunk, kept as a linked list of symbols.  With
 * merges that only use tokens made by earlier ones (checked when the tokenizer is
 * built), this gives what GPT-2's "merge every occurrence of the best pair, repeat"
 * gives. */
static size_t tok_encode_chunk(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids,
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

/* A chunk of at most MAX_CHUNK bytes, with work space on the stack. */
static size_t tok_encode_short(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids)
{
    uint32_t sym[MAX_CHUNK], next[MAX_CHUNK], prev[MAX_CHUNK];
    uint64_t heap[3 * MAX_CHUNK];
    return tok_encode_chunk(t, s, n, ids, (chunk_scratch){sym, next, prev, heap});
}

static size_t tok_encode_gpt2(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids);

size_t tokenizer_encode(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids)
{
    if (t->kind == KIND_BYTE) {
        for (size_t i = 0; i < n; i++)
            ids[i] = text[i];
        return n;
    }
    if (t->kind == KIND_GPT2)
        return tok_encode_gpt2(t, text, n, ids);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t end = tok_chunk_end(text, n, i);
        k += tok_encode_short(t, text + i, (uint32_t)(end - i), ids + k);
        i = end;
    }
    return k;
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

/* -------------------------------------------------------------------- gpt2 */

/* GPT-2's pre-tokenization pattern.  \s under PCRE2_UCP is Unicode White_Space, as in
 * OpenAI's and Hugging Face's encoders (the JS reference's \s differs on U+0085 and
 * U+FEFF). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char GPT2_EOS[] = "<|endoftext|>";

enum {
    MAP_CODEPOINTS = 324,  /* GPT-2's byte-to-unicode map uses U+0021..U+0143 */
    CACHE_MAX_LEN = 64,    /* longer chunks are rare and not cached */
    NO_ID = -1,
};

/* GPT-2's byte <-> code point maps: printable Latin-1 bytes stand for
 * themselves, the others (controls, space, 0x7f-0xa0, 0xad) for U+0100
 * onwards in byte order.  Filled once (pthread_once: tokenizers are used from
 * several threads), constant after. */
static uint32_t byte_cp[BYTE_VOCAB];
static int16_t cp_byte[MAP_CODEPOINTS];
static pthread_once_t maps_once = PTHREAD_ONCE_INIT;

static void fill_byte_maps(void)
{
    uint32_t next = 256;
    for (int i = 0; i < MAP_CODEPOINTS; i++)
        cp_byte[i] = -1;
    for (int b = 0; b < BYTE_VOCAB; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        byte_cp[b] = printable ? (uint32_t)b : next++;
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

/* The code point GPT-2 spells byte b with. */
static uint32_t byte_codepoint(int b)
{
    pthread_once(&maps_once, fill_byte_maps);
    return byte_cp[b];
}

/* The byte a code point spells, or -1. */
static int codepoint_byte(uint32_t c)
{
    pthread_once(&maps_once, fill_byte_maps);
    return c < MAP_CODEPOINTS ? cp_byte[c] : -1;
}

/* Length of the well-formed UTF-8 sequence at s (> 0), or minus the length of the
 * maximal ill-formed subpart there: what a UTF-8 decoder (WHATWG, Python, Node) replaces
 * by one U+FFFD. */
static long utf8_step(const uint8_t *s, size_t n)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1;
    else if (c >= 0xe0 && c <= 0xef)
        need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return -1;
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi)
            return -(long)i;
        lo = 0x80, hi = 0xbf;
    }
    return (long)need + 1;
}

long tokenizer_unspell_gpt2(const char *s, size_t n, uint8_t *out)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        long len = utf8_step(u + i, n - i);
        if (len <= 0)
            return -1;
        uint32_t c = len == 1 ? u[i] : len == 2 ? (uint32_t)(u[i] & 0x1f) << 6 | (u[i + 1] & 0x3f)
                                               : MAP_CODEPOINTS;
        int b = codepoint_byte(c);
        if (b < 0)
            return -1;
        out[k++] = (uint8_t)b;
        i += (size_t)len;
    }
    return (long)k;
}

size_t tokenizer_spell_gpt2(const uint8_t *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = byte_codepoint(s[i]);
        if (c < 0x80) {
            out[k++] = (char)c;
        } else {
            out[k++] = (char)(0xc0 | c >> 6);
            out[k++] = (char)(0x80 | (c & 0x3f));
        }
    }
    out[k] = 0;
    return k;
}

static size_t by_bytes_slot(const tokenizer *t, const uint8_t *s, size_t n)
{
    size_t i = mix64(fnv1a64(s, n)) & (t->by_bytes_cap - 1);
    for (;; i = (i + 1) & (t->by_bytes_cap - 1)) {
        uint32_t id = t->by_bytes[i];
        if (id == UINT32_MAX ||
            (t->tok_len[id] == n && memcmp(t->pool + t->tok_off[id], s, n) == 0))
            return i;
    }
}

/* The id of the token with these bytes, or NO_ID. */
static long tok_gpt2_token_id(const tokenizer *t, const uint8_t *s, size_t n)
{
    uint32_t id = t->by_bytes[by_bytes_slot(t, s, n)];
    return id == UINT32_MAX ? NO_ID : (long)id;
}

/* An empty gpt2 tokenizer sized for vocab tokens of total bytes: the arrays
 * allocated, the bytes -> id table (open addressing, at most half full) empty. */
static tokenizer *gpt2_new(size_t vocab, size_t total, char *err, size_t errlen)
{
    tokenizer *t = calloc(1, sizeof *t);
    if (t) {
        t->kind = KIND_GPT2;
        t->vocab = (uint32_t)vocab;
        t->by_bytes_cap = 64;
        while (t->by_bytes_cap < 2 * vocab)
            t->by_bytes_cap *= 2;
        t->tok_off = malloc(vocab * sizeof *t->tok_off);
        t->tok_len = malloc(vocab * sizeof *t->tok_len);
        t->pool = malloc(total + 1);
        t->by_bytes = malloc(t->by_bytes_cap * sizeof *t->by_bytes);
    }
    if (!t || !t->tok_off || !t->tok_len || !t->pool || !t->by_bytes || total > UINT32_MAX) {
        tok_fail_oom(err, errlen);
        tokenizer_free(t);
        return NULL;
    }
    memset(t->by_bytes, 0xff, t->by_bytes_cap * sizeof *t->by_bytes);
    return t;
}

/* Each token's place in the pool and its slot in the bytes -> id table; a
 * token must be non-empty and new.  0, or -1 with the reason in err. */
static int gpt2_index_tokens(tokenizer *t, const uint8_t *bytes, const uint32_t *lens,
                             char *err, size_t errlen)
{
    for (uint32_t id = 0, off = 0; id < t->vocab; off += lens[id++]) {
        t->tok_off[id] = off;
        size_t slot = by_bytes_slot(t, bytes + off, lens[id]);
        if (lens[id] == 0 || t->by_bytes[slot] != UINT32_MAX) {
            snprintf(err, errlen, "token %u is %s", id,
                     lens[id] ? "a repeat of an earlier one" : "empty");
            return -1;
        }
        t->by_bytes[slot] = id;
    }
    return 0;
}

/* Each byte's token and the eos, which a GPT-2 vocabulary must have. */
static int gpt2_find_special(tokenizer *t, char *err, size_t errlen)
{
    for (int b = 0; b < BYTE_VOCAB; b++) {
        uint8_t c = (uint8_t)b;
        long id = tok_gpt2_token_id(t, &c, 1);
        if (id == NO_ID) {
            snprintf(err, errlen, "the vocabulary has no token for the byte 0x%02x", b);
            return -1;
        }
        t->byte_id[b] = (uint32_t)id;
    }
    t->eos = (int)tok_gpt2_token_id(t, (const uint8_t *)GPT2_EOS, strlen(GPT2_EOS));
    if (t->eos == NO_ID) {
        snprintf(err, errlen, "the vocabulary has no %s token", GPT2_EOS);
        return -1;
    }
    return 0;
}

/* The vocabulary part of a gpt2 tokenizer: token bytes, the bytes -> id table, each
 * byte's token and the eos. */
static tokenizer *tok_gpt2_alloc(const uint8_t *bytes, const uint32_t *lens, size_t vocab,
                                 char *err, size_t errlen)
{
    if (vocab < BYTE_VOCAB || vocab > MAX_VOCAB) {
        snprintf(err, errlen, "a GPT-2 vocabulary of %zu tokens (must be %d..%d)", vocab,
                 BYTE_VOCAB, MAX_VOCAB);
        return NULL;
    }
    size_t total = 0;
    for (size_t id = 0; id < vocab; id++)
        total += lens[id];
    tokenizer *t = gpt2_new(vocab, total, err, errlen);
    if (!t)
        return NULL;
    memcpy(t->pool, bytes, total);
    memcpy(t->tok_len, lens, vocab * sizeof *lens);
    if (gpt2_index_tokens(t, bytes, lens, err, errlen) != 0 ||
        gpt2_find_special(t, err, errlen) != 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* Merges as id pairs: each must join two tokens made before it (bytes, or earlier
 * merges) into a token of the vocabulary, and be new. */
static int tok_gpt2_set_merges(tokenizer *t, const uint32_t *merges, size_t nmerges, char *err,
                               size_t errlen)
{
    if (nmerges > MAX_VOCAB) {
        snprintf(err, errlen, "%zu merges exceed the limit of %d", nmerges, MAX_VOCAB);
        return -1;
    }
    t->nmerges = (uint32_t)nmerges;
    t->merges = malloc((2 * nmerges + 1) * sizeof *t->merges);
    t->merge_out = malloc((nmerges + 1) * sizeof *t->merge_out);
    uint32_t *made = malloc(t->vocab * sizeof *made);   /* merge that first makes id, +1 */
    uint8_t *cat = malloc(2 * MAX_CHUNK + 1);
    int rc = t->merges && t->merge_out && made && cat && tok_map_init(&t->ranks, nmerges) == 0
                 ? 0 : tok_fail_oom(err, errlen);
    if (rc == 0) {
        memcpy(t->merges, merges, 2 * nmerges * sizeof *merges);
        memset(made, 0, t->vocab * sizeof *made);
    }
    for (uint32_t i = 0; rc == 0 && i < nmerges; i++) {
        uint32_t a = merges[2 * i], b = merges[2 * i + 1];
        long out = NO_ID;
        if (a < t->vocab && b < t->vocab && t->tok_len[a] + t->tok_len[b] <= 2 * MAX_CHUNK) {
            memcpy(cat, t->pool + t->tok_off[a], t->tok_len[a]);
            memcpy(cat + t->tok_len[a], t->pool + t->tok_off[b], t->tok_len[b]);
            out = tok_gpt2_token_id(t, cat, t->tok_len[a] + t->tok_len[b]);
        }
        if (out == NO_ID) {
            snprintf(err, errlen, "merge %u ([%u, %u]) makes a token that is not in the "
                     "vocabulary", i, a, b);
            rc = -1;
        } else if ((t->tok_len[a] > 1 && made[a] == 0) || (t->tok_len[b] > 1 && made[b] == 0)) {
            snprintf(err, errlen, "merge %u ([%u, %u]) uses a token no earlier merge makes", i,
                     a, b);
            rc = -1;
        } else if (tok_map_get(&t->ranks, pair_key(a, b))) {
            snprintf(err, errlen, "merge %u ([%u, %u]) repeats an earlier merge", i, a, b);
            rc = -1;
        } else if (tok_map_put(&t->ranks, pair_key(a, b), i) != 0) {
            rc = tok_fail_oom(err, errlen);
        } else {
            t->merge_out[i] = (uint32_t)out;
            if (made[out] == 0)
                made[out] = i + 1;
        }
    }
    free(made);
    free(cat);
    return rc;
}

static int tok_gpt2_compile(tokenizer *t, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &code, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR why[120];
        pcre2_get_error_message(code, why, sizeof why);
        snprintf(err, errlen, "PCRE2 refuses GPT-2's pattern: %s", (const char *)why);
        return -1;
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);   /* without JIT it still matches, slower */
    return 0;
}

tokenizer *tokenizer_new_gpt2(const uint8_t *bytes, const uint32_t *lens, size_t vocab,
                              const uint32_t *merges, size_t nmerges, char *err, size_t errlen)
{
    tokenizer *t = tok_gpt2_alloc(bytes, lens, vocab, err, errlen);
    if (t && (tok_gpt2_set_merges(t, merges, nmerges, err, errlen) != 0 ||
              tok_gpt2_compile(t, err, errlen) != 0)) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ------------------------------------------------------ gpt2 encoding */

/* Chunk bytes -> ids, for the words a text repeats.  Cleared when full. */
typedef struct {
    uint64_t hash;
    uint32_t key_off, ids_off;
    uint16_t key_len, nids;   /* key_len 0: empty slot */
} cache_entry;

typedef struct {
    cache_entry *slots;
    size_t cap, len;
    uint8_t *keys;
    uint32_t *ids;
    size_t keys_len, ids_len, arena;   /* both arenas hold `arena` elements */
} word_cache;

typedef struct {
    const tokenizer *t;
    pcre2_match_data *md;
    word_cache cache;
    chunk_scratch big;   /* for chunks over MAX_CHUNK bytes */
    size_t big_cap;
} gpt2_ctx;

static int cache_init(word_cache *c, size_t text_len)
{
    c->cap = 256;
    while (c->cap < (1 << 16) && c->cap < text_len / 4)
        c->cap *= 2;
    c->arena = c->cap * 8;
    c->slots = calloc(c->cap, sizeof *c->slots);
    c->keys = malloc(c->arena);
    c->ids = malloc(c->arena * sizeof *c->ids);
    return c->slots && c->keys && c->ids ? 0 : -1;
}

static void cache_free(word_cache *c)
{
    free(c->slots);
    free(c->keys);
    free(c->ids);
}

static cache_entry *cache_slot(const word_cache *c, uint64_t h, const uint8_t *s, size_t n)
{
    for (size_t i = mix64(h) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        cache_entry *e = &c->slots[i];
        if (e->key_len == 0 ||
            (e->hash == h && e->key_len == n && memcmp(c->keys + e->key_off, s, n) == 0))
            return e;
    }
}

static void cache_put(word_cache *c, cache_entry *e, uint64_t h, const uint8_t *s, size_t n,
                      const uint32_t *ids, size_t k)
{
    if (2 * (c->len + 1) > c->cap || c->keys_len + n > c->arena || c->ids_len + k > c->arena) {
        memset(c->slots, 0, c->cap * sizeof *c->slots);
        c->len = c->keys_len = c->ids_len = 0;
        e = cache_slot(c, h, s, n);
    }
    *e = (cache_entry){h, (uint32_t)c->keys_len, (uint32_t)c->ids_len, (uint16_t)n, (uint16_t)k};
    memcpy(c->keys + c->keys_len, s, n);
    memcpy(c->ids + c->ids_len, ids, k * sizeof *ids);
    c->keys_len += n;
    c->ids_len += k;
    c->len++;
}

static int big_reserve(gpt2_ctx *c, size_t n)
{
    if (n <= c->big_cap)
        return 0;
    free(c->big.sym);
    free(c->big.heap);
    c->big.sym = malloc(3 * n * sizeof *c->big.sym);
    c->big.heap = malloc(3 * n * sizeof *c->big.heap);
    c->big_cap = c->big.sym && c->big.heap ? n : 0;
    c->big.next = c->big.sym ? c->big.sym + n : NULL;
    c->big.prev = c->big.sym ? c->big.sym + 2 * n : NULL;
    return c->big_cap ? 0 : -1;
}

/* One pre-tokenized chunk -> ids; SIZE_MAX when out of memory. */
static size_t gpt2_chunk(gpt2_ctx *c, const uint8_t *s, size_t n, uint32_t *ids)
{
    if (n == 1) {
        ids[0] = c->t->byte_id[s[0]];
        return 1;
    }
    if (n > CACHE_MAX_LEN) {
        if (n <= MAX_CHUNK)
            return tok_encode_short(c->t, s, (uint32_t)n, ids);
        if (n >= UINT32_MAX || big_reserve(c, n) != 0)
            return SIZE_MAX;
        return tok_encode_chunk(c->t, s, (uint32_t)n, ids, c->big);
    }
    uint64_t h = fnv1a64(s, n);
    cache_entry *e = cache_slot(&c->cache, h, s, n);
    if (e->key_len) {
        memcpy(ids, c->cache.ids + e->ids_off, e->nids * sizeof *ids);
        return e->nids;
    }
    size_t k = tok_encode_short(c->t, s, (uint32_t)n, ids);
    cache_put(&c->cache, e, h, s, n, ids, k);
    return k;
}

/* A replaced ill-formed sequence: at off in the matched text, raw_len bytes in the input. */
typedef struct {
    size_t off, raw_len;
} fix;

/* Splits subject (the input, or its copy with U+FFFD for each ill-formed sequence,
 * listed in fixes) with the pattern and encodes the input bytes of each piece. */
static size_t gpt2_split(gpt2_ctx *c, const uint8_t *subject, size_t len, const uint8_t *raw,
                         const fix *fixes, size_t nfixes, uint32_t *ids)
{
    size_t k = 0, at = 0, raw_at = 0, shift = 0, f = 0;
    while (at < len) {
        int rc = pcre2_match(c->t->re, subject, len, at, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
            return SIZE_MAX;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        /* Every character matches some branch, so a gap or no match cannot happen on
         * valid UTF-8; should one, its bytes still become a chunk of their own. */
        size_t end = rc < 0 ? len : ov[0] > at ? ov[0] : ov[1];
        for (; f < nfixes && fixes[f].off < end; f++)
            shift += 3 - fixes[f].raw_len;
        size_t raw_end = end - shift;
        size_t got = gpt2_chunk(c, raw + raw_at, raw_end - raw_at, ids + k);
        if (got == SIZE_MAX)
            return SIZE_MAX;
        k += got;
        at = end;
        raw_at = raw_end;
    }
    return k;
}

/* The input with each maximal ill-formed sequence replaced by U+FFFD (EF BF BD). */
static uint8_t *replace_ill_formed(const uint8_t *text, size_t n, size_t *len, fix **fixes,
                                   size_t *nfixes)
{
    size_t cap = 0, nf = 0, k = 0;
    uint8_t *out = malloc(3 * n + 1);
    fix *fs = NULL;
    for (size_t i = 0; out && i < n;) {
        long step = utf8_step(text + i, n - i);
        if (step > 0) {
            memcpy(out + k, text + i, (size_t)step);
            k += (size_t)step;
            i += (size_t)step;
            continue;
        }
        if (tok_grow(&fs, &cap, nf + 1, sizeof *fs) != 0) {
            free(out);
            out = NULL;
            break;
        }
        fs[nf++] = (fix){k, (size_t)-step};
        memcpy(out + k, "\xef\xbf\xbd", 3);
        k += 3;
        i += (size_t)-step;
    }
    if (!out)
        free(fs);
    *len = k;
    *fixes = fs;
    *nfixes = nf;
    return out;
}

static size_t first_ill_formed(const uint8_t *text, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (text[i] < 0x80) {
            i++;
            continue;
        }
        long step = utf8_step(text + i, n - i);
        if (step < 0)
            return i;
        i += (size_t)step;
    }
    return n;
}

static size_t tok_encode_gpt2(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids)
{
    gpt2_ctx c = {.t = t, .md = pcre2_match_data_create(1, NULL)};
    size_t k = SIZE_MAX;
    if (c.md && cache_init(&c.cache, n) == 0) {
        if (first_ill_formed(text, n) == n) {
            k = gpt2_split(&c, text, n, text, NULL, 0, ids);
        } else {
            size_t len, nfixes;
            fix *fixes;
            uint8_t *sub = replace_ill_formed(text, n, &len, &fixes, &nfixes);
            if (sub)
                k = gpt2_split(&c, sub, len, text, fixes, nfixes, ids);
            free(sub);
            free(fixes);
        }
    }
    pcre2_match_data_free(c.md);
    cache_free(&c.cache);
    free(c.big.sym);
    free(c.big.heap);
    return k;
}

/* ---------------------------------------------------------------- training */

/* A distinct chunk of the corpus: its current symbols and how often it occurs. */
typedef struct {
    uint64_t hash;     /* of the original bytes, for the counting table */
    size_t off;        /* into trainer.syms */
    uint32_t len;
    uint32_t stamp;    /* last merge that rewrote it, so a word is visited once per merge */
    uint64_t freq;
} word;

typedef struct {
    uint32_t a, b;
    int64_t count;     /* occurrences weighted by word frequency */
    uint32_t where;    /* head of the list of words it occurs in (may hold stale words) */
    uint32_t stamp;    /* last merge that queued it for the heap */
} pair_stat;

typedef struct {
    uint32_t word, next;
} occurrence;

/* Max-heap entry; stale when count differs from the pair's current count. */
typedef struct {
    int64_t count;
    uint32_t a, b, pair;
} heap_entry;

#define NO_OCC UINT32_MAX

typedef struct {
    word *words;
    size_t nwords, cap_words;
    uint32_t *syms;
    size_t nsyms, cap_syms;
    uint32_t *table;   /* chunk counting: word index + 1, 0 = empty */
    size_t table_cap;
    pair_stat *pairs;
    size_t npairs, cap_pairs;
    pair_map pair_index;
    occurrence *occ;
    size_t nocc, cap_occ;
    heap_entry *heap;
    size_t nheap, cap_heap;
    uint32_t *touched;   /* pairs whose count rose during the current merge */
    size_t ntouched, cap_touched;
} trainer;

static void trainer_free(trainer *tr)
{
    free(tr->words);
    free(tr->syms);
    free(tr->table);
    free(tr->pairs);
    tok_map_free(&tr->pair_index);
    free(tr->occ);
    free(tr->heap);
    free(tr->touched);
}

static int word_equals(const trainer *tr, const word *w, const uint8_t *s, size_t n)
{
    if (w->len != n)
        return 0;
    const uint32_t *sym = tr->syms + w->off;
    for (size_t i = 0; i < n; i++)
        if (sym[i] != s[i])
            return 0;
    return 1;
}

static int table_grow(trainer *tr)
{
    size_t cap = tr->table_cap ? 2 * tr->table_cap : 1 << 16;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t w = 0; w < tr->nwords; w++) {
        size_t i = tr->words[w].hash & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = (uint32_t)w + 1;
    }
    free(tr->table);
    tr->table = t;
    tr->table_cap = cap;
    return 0;
}

/* Counts one chunk; chunks of one byte can never merge and are not kept. */
static int count_chunk(trainer *tr, const uint8_t *s, size_t n)
{
    if (n < 2)
        return 0;
    if (2 * (tr->nwords + 1) > tr->table_cap && table_grow(tr) != 0)
        return -1;
    uint64_t h = fnv1a64(s, n);
    size_t i = h & (tr->table_cap - 1);
    for (; tr->table[i]; i = (i + 1) & (tr->table_cap - 1)) {
        word *w = &tr->words[tr->table[i] - 1];
        if (w->hash == h && word_equals(tr, w, s, n)) {
            w->freq++;
            return 0;
        }
    }
    if (tr->nwords >= UINT32_MAX - 1 ||
        tok_grow(&tr->words, &tr->cap_words, tr->nwords + 1, sizeof *tr->words) != 0 ||
        tok_grow(&tr->syms, &tr->cap_syms, tr->nsyms + n, sizeof *tr->syms) != 0)
        return -1;
    tr->words[tr->nwords] = (word){.hash = h, .off = tr->nsyms, .len = (uint32_t)n, .freq = 1};
    for (size_t k = 0; k < n; k++)
        tr->syms[tr->nsyms++] = s[k];
    tr->table[i] = (uint32_t)++tr->nwords;
    return 0;
}

static int heap_before(const heap_entry *x, const heap_entry *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;   /* ties: lowest ids first */
}

static int heap_push(trainer *tr, heap_entry e)
{
    if (tok_grow(&tr->heap, &tr->cap_heap, tr->nheap + 1, sizeof *tr->heap) != 0)
        return -1;
    size_t i = tr->nheap++;
    while (i > 0 && heap_before(&e, &tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = e;
    return 0;
}

static heap_entry heap_pop(trainer *tr)
{
    heap_entry *h = tr->heap, top = h[0], last = h[--tr->nheap];
    size_t n = tr->nheap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(&h[c + 1], &h[c]))
            c++;
        if (!heap_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static int find_pair(trainer *tr, uint32_t a, uint32_t b, uint32_t stamp, uint32_t *idx)
{
    const uint32_t *found = tok_map_get(&tr->pair_index, pair_key(a, b));
    if (found) {
        *idx = *found;
        return 0;
    }
    if (tok_grow(&tr->pairs, &tr->cap_pairs, tr->npairs + 1, sizeof *tr->pairs) != 0 ||
        tok_map_put(&tr->pair_index, pair_key(a, b), (uint32_t)tr->npairs) != 0)
        return -1;
    tr->pairs[tr->npairs] = (pair_stat){.a = a, .b = b, .where = NO_OCC, .stamp = stamp - 1};
    *idx = (uint32_t)tr->npairs++;
    return 0;
}

/* Adds delta to the count of (a, b); a rise also records word w and queues the pair
 * so its new count reaches the heap. */
static int pair_add(trainer *tr, uint32_t a, uint32_t b, int64_t delta, uint32_t w,
                    uint32_t stamp)
{
    uint32_t idx;
    if (find_pair(tr, a, b, stamp, &idx) != 0)
        return -1;
    pair_stat *p = &tr->pairs[idx];
    p->count += delta;
    if (delta < 0)
        return 0;
    if (p->where == NO_OCC || tr->occ[p->where].word != w) {
        if (tr->nocc >= NO_OCC - 1 ||
            tok_grow(&tr->occ, &tr->cap_occ, tr->nocc + 1, sizeof *tr->occ) != 0)
            return -1;
        tr->occ[tr->nocc] = (occurrence){.word = w, .next = p->where};
        p->where = (uint32_t)tr->nocc++;
    }
    if (p->stamp != stamp) {
        p->stamp = stamp;
        if (tok_grow(&tr->touched, &tr->cap_touched, tr->ntouched + 1, sizeof *tr->touched) != 0)
            return -1;
        tr->touched[tr->ntouched++] = idx;
    }
    return 0;
}

static int flush_touched(trainer *tr)
{
    for (size_t i = 0; i < tr->ntouched; i++) {
        const pair_stat *p = &tr->pairs[tr->touched[i]];
        if (p->count > 0 &&
            heap_push(tr, (heap_entry){p->count, p->a, p->b, tr->touched[i]}) != 0)
            return -1;
    }
    tr->ntouched = 0;
    return 0;
}

/* Replaces every (a, b) in word w by z, left to right, moving the counts of the
 * neighbouring pairs from the old symbols to z. */
static int merge_in_word(trainer *tr, uint32_t w, uint32_t a, uint32_t b, uint32_t z,
                         uint32_t stamp)
{
    uint32_t *s = tr->syms + tr->words[w].off;
    uint32_t n = tr->words[w].len, out = 0;
    int64_t f = (int64_t)tr->words[w].freq;
    int rc = 0;
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (out > 0)
                rc |= pair_add(tr, s[out - 1], a, -f, w, stamp) |
                      pair_add(tr, s[out - 1], z, f, w, stamp);
            if (i + 2 < n)
                rc |= pair_add(tr, b, s[i + 2], -f, w, stamp) |
                      pair_add(tr, z, s[i + 2], f, w, stamp);
            rc |= pair_add(tr, a, b, -f, w, stamp);
            s[out++] = z;
            i += 2;
        } else {
            s[out++] = s[i++];
        }
    }
    tr->words[w].len = out;
    return rc;
}

static int apply_merge(trainer *tr, uint32_t pair, uint32_t z, uint32_t stamp)
{
    uint32_t a = tr->pairs[pair].a, b = tr->pairs[pair].b;
    for (uint32_t o = tr->pairs[pair].where; o != NO_OCC; o = tr->occ[o].next) {
        uint32_t w = tr->occ[o].word;
        if (tr->words[w].stamp == stamp)
            continue;
        tr->words[w].stamp = stamp;
        if (merge_in_word(tr, w, a, b, z, stamp) != 0)
            return -1;
    }
    return flush_touched(tr);
}

/* Most frequent pair, or -1 when nothing is left to merge.  Entries whose count is
 * out of date are re-queued with the current count (counts only fall between pushes). */
static int64_t best_pair(trainer *tr)
{
    while (tr->nheap > 0) {
        heap_entry e = heap_pop(tr);
        int64_t now = tr->pairs[e.pair].count;
        if (now == e.count)
            return e.pair;
        e.count = now;
        if (now > 0 && heap_push(tr, e) != 0)
            return -2;
    }
    return -1;
}

static int count_pairs(trainer *tr)
{
    for (uint32_t w = 0; w < tr->nwords; w++) {
        const uint32_t *s = tr->syms + tr->words[w].off;
        for (uint32_t i = 0; i + 1 < tr->words[w].len; i++)
            if (pair_add(tr, s[i], s[i + 1], (int64_t)tr->words[w].freq, w, 0) != 0)
                return -1;
    }
    return flush_touched(tr);
}

/* Learns up to want merges into merges[]; returns how many, or -1 when out of memory. */
static int64_t learn_merges(trainer *tr, const uint8_t *text, size_t n, uint32_t want,
                            uint32_t *merges)
{
    for (size_t i = 0; i < n;) {
        size_t end = tok_chunk_end(text, n, i);
        if (count_chunk(tr, text + i, end - i) != 0)
            return -1;
        i = end;
    }
    if (tok_map_init(&tr->pair_index, tr->nsyms) != 0 || count_pairs(tr) != 0)
        return -1;
    for (uint32_t m = 0; m < want; m++) {
        int64_t best = best_pair(tr);
        if (best == -1)
            return m;   /* every chunk is a single token already */
        if (best < 0)
            return -1;
        merges[2 * m] = tr->pairs[best].a;
        merges[2 * m + 1] = tr->pairs[best].b;
        if (apply_merge(tr, (uint32_t)best, BYTE_VOCAB + m, m + 1) != 0)
            return -1;
    }
    return want;
}

tokenizer *tokenizer_train_bpe(const uint8_t *text, size_t n, int vocab_size, char *err,
                               size_t errlen)
{
    if (vocab_size <= BYTE_VOCAB || vocab_size > MAX_VOCAB) {
        snprintf(err, errlen, "BPE vocabulary size %d out of range (%d..%d)", vocab_size,
                 BYTE_VOCAB + 1, MAX_VOCAB);
        return NULL;
    }
    uint32_t want = (uint32_t)vocab_size - BYTE_VOCAB;
    uint32_t *merges = malloc(2 * (size_t)want * sizeof *merges);
    trainer tr = {0};
    int64_t got = merges ? learn_merges(&tr, text, n, want, merges) : -1;
    trainer_free(&tr);
    tokenizer *t = NULL;
    if (got < 0)
        tok_fail_oom(err, errlen);
    else
        t = tokenizer_new_bpe(merges, (size_t)got, err, errlen);
    free(merges);
    return t;
}

/* -------------------------------------------------------------------- JSON */

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

static cJSON *to_json(const tokenizer *t)
{
    cJSON *root = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(root, "type", tokenizer_type(t)) &&
             cJSON_AddNumberToObject(root, "vocab_size", tokenizer_vocab_size(t));
    if (ok && t->kind == KIND_GPT2)
        ok = add_gpt2_vocab(root, t);
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
    if (t && (uint32_t)t->eos != eos) {
        snprintf(err, errlen, "eos_id %u is not the id of %s (%d)", eos, GPT2_EOS, t->eos);
        tokenizer_free(t);
        t = NULL;
    }
    free(m);
    vocab_bytes_free(&v);
    return t;
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
    uint32_t *m = parse_merges(merges, vocab - BYTE_VOCAB, err, errlen);
    tokenizer *t = m ? tok_create(KIND_BPE, m, vocab - BYTE_VOCAB, err, errlen) : NULL;
    free(m);
    return t;
}

tokenizer *tokenizer_parse(const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    tokenizer *t = NULL;
    if (!root)
        snprintf(err, errlen, "not a tokenizer file (invalid JSON)");
    else
        t = from_json(root, err, errlen);
    cJSON_Delete(root);
    return t;
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)
        return NULL;
    char why[200];
    tokenizer *t = tokenizer_parse((const char *)data, len, why, sizeof why);
    free(data);
    if (!t)
        snprintf(err, errlen, "%s: %s", path, why);
    return t;
}

/* ------------------------------------------- OpenAI / Hugging Face files */

/* encoder.json / vocab.json: {"token": id, ...} with ids 0..n-1, each once. */
static tokenizer *gpt2_vocab_parse(const uint8_t *data, size_t len, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    size_t n = cJSON_IsObject(root) ? (size_t)cJSON_GetArraySize(root) : 0;
    if (n == 0) {
        snprintf(err, errlen, "not a GPT-2 vocabulary (a JSON object of token -> id)");
        cJSON_Delete(root);
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
        ok = vocab_bytes_add(&v, id, by_id[id]->string, err, errlen) == 0;
    tokenizer *t = ok ? tok_gpt2_alloc(v.bytes, v.lens, n, err, errlen) : NULL;
    free(by_id);
    vocab_bytes_free(&v);
    cJSON_Delete(root);
    return t;
}

/* The file's errors name it once: fs_read_file's already do. */
static tokenizer *gpt2_vocab_file(const char *path, char *err, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)
        return NULL;
    char why[300];
    tokenizer *t = gpt2_vocab_parse(data, len, why, sizeof why);
    free(data);
    if (!t)
        snprintf(err, errlen, "%s: %s", path, why);
    return t;
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
    char *part[2] = {line, space + 1};
    for (int j = 0; j < 2; j++) {
        long k = tokenizer_unspell_gpt2(part[j], strlen(part[j]), buf);
        long id = k > 0 ? tok_gpt2_token_id(t, buf, (size_t)k) : NO_ID;
        if (id == NO_ID) {
            snprintf(err, errlen, "\"%.40s\" is not in the vocabulary", part[j]);
            return -1;
        }
        pair[j] = (uint32_t)id;
    }
    return 0;
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

tokenizer *tokenizer_load_gpt2(const char *vocab_path, const char *merges_path, char *err,
                               size_t errlen)
{
    char why[300];
    uint8_t *data;
    size_t len, n = 0;
    tokenizer *t = gpt2_vocab_file(vocab_path, err, errlen);
    if (!t)
        return NULL;
    if (fs_read_file(merges_path, &data, &len, err, errlen) != 0) {   /* its errors name it */
        tokenizer_free(t);
        return NULL;
    }
    uint32_t *m = gpt2_merges_parse(t, merges_path, data, len, &n, why, sizeof why);
    free(data);
    int rc = m ? tok_gpt2_set_merges(t, m, n, why, sizeof why) : -1;
    if (!m)
        snprintf(err, errlen, "%s (do %s and %s belong together?)", why, vocab_path, merges_path);
    else if (rc != 0)
        snprintf(err, errlen, "%s: %s (do %s and %s belong together?)", merges_path, why,
                 vocab_path, merges_path);
    else
        rc = tok_gpt2_compile(t, err, errlen);
    free(m);
    if (rc != 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}
