/* Byte and byte-level BPE tokenizers.
 *
 * Both training and encoding first cut the text into chunks GPT-2 style (contractions,
 * an optional space plus a run of letters, digits or punctuation, whitespace runs), so
 * merges never cross a word boundary.  Bytes >= 0x80 count as letters, which keeps
 * UTF-8 sequences inside words without decoding them.  Chunks are capped at MAX_CHUNK
 * bytes, which bounds the work per chunk and the length of every token.
 */
#include "io/tokenizer.h"

#include "io/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
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

static int map_init(pair_map *m, size_t expected)
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

static void map_free(pair_map *m)
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

static const uint32_t *map_get(const pair_map *m, uint64_t key)
{
    size_t i = map_slot(m, key);
    return m->keys[i] == key ? &m->vals[i] : NULL;
}

static int map_grow(pair_map *m)
{
    pair_map bigger;
    if (map_init(&bigger, m->cap) != 0) {
        map_free(&bigger);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != EMPTY_KEY) {
            size_t j = map_slot(&bigger, m->keys[i]);
            bigger.keys[j] = m->keys[i];
            bigger.vals[j] = m->vals[i];
        }
    bigger.len = m->len;
    map_free(m);
    *m = bigger;
    return 0;
}

/* Inserts key (which must be absent). */
static int map_put(pair_map *m, uint64_t key, uint32_t val)
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
static int grow(void *p, size_t *cap, size_t need, size_t elem)
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
static size_t chunk_end(const uint8_t *s, size_t n, size_t i)
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

struct tokenizer {
    int bpe;
    uint32_t nmerges;
    uint32_t *merges;     /* merges[2i], merges[2i+1] make token 256+i */
    pair_map ranks;       /* (a, b) -> i */
    uint32_t *tok_off;    /* bytes of token id: pool[tok_off[id] .. + tok_len[id]] */
    uint32_t *tok_len;
    uint8_t *pool;
};

void tokenizer_free(tokenizer *t)
{
    if (!t)
        return;
    free(t->merges);
    map_free(&t->ranks);
    free(t->tok_off);
    free(t->tok_len);
    free(t->pool);
    free(t);
}

static int fail_oom(char *err, size_t errlen)
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
        const uint32_t *prev = map_get(&t->ranks, pair_key(a, b));
        if (prev) {
            snprintf(err, errlen, "merge %u ([%u, %u]) repeats merge %u", i, a, b, *prev);
            return -1;
        }
        t->tok_len[BYTE_VOCAB + i] = t->tok_len[a] + t->tok_len[b];
        if (t->tok_len[BYTE_VOCAB + i] > MAX_CHUNK) {
            snprintf(err, errlen, "merge %u makes a token longer than %d bytes", i, MAX_CHUNK);
            return -1;
        }
        if (map_put(&t->ranks, pair_key(a, b), i) != 0)
            return fail_oom(err, errlen);
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
        return fail_oom(err, errlen);
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

static tokenizer *tokenizer_create(int bpe, const uint32_t *merges, size_t nmerges, char *err,
                                   size_t errlen)
{
    if (nmerges > MAX_VOCAB - BYTE_VOCAB) {
        snprintf(err, errlen, "%zu merges exceed the vocabulary limit of %d", nmerges, MAX_VOCAB);
        return NULL;
    }
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        fail_oom(err, errlen);
        return NULL;
    }
    size_t vocab = BYTE_VOCAB + nmerges;
    t->bpe = bpe;
    t->nmerges = (uint32_t)nmerges;
    t->merges = malloc((2 * nmerges + 1) * sizeof *t->merges);
    t->tok_off = malloc(vocab * sizeof *t->tok_off);
    t->tok_len = malloc(vocab * sizeof *t->tok_len);
    int ok = t->merges && t->tok_off && t->tok_len && map_init(&t->ranks, nmerges) == 0;
    if (!ok) {
        fail_oom(err, errlen);
    } else {
        if (nmerges)   /* the byte tokenizer passes NULL */
            memcpy(t->merges, merges, 2 * nmerges * sizeof *t->merges);
        for (uint32_t id = 0; id < BYTE_VOCAB; id++)
            t->tok_len[id] = 1;
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
    return tokenizer_create(0, NULL, 0, err, sizeof err);
}

tokenizer *tokenizer_new_bpe(const uint32_t *merges, size_t nmerges, char *err, size_t errlen)
{
    return tokenizer_create(1, merges, nmerges, err, errlen);
}

const uint32_t *tokenizer_merges(const tokenizer *t, size_t *n)
{
    *n = t->nmerges;
    return t->bpe ? t->merges : NULL;
}

int tokenizer_vocab_size(const tokenizer *t)
{
    return (int)(BYTE_VOCAB + t->nmerges);
}

const char *tokenizer_type(const tokenizer *t)
{
    return t->bpe ? "bpe" : "byte";
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
    const uint32_t *rank = map_get(&t->ranks, pair_key(sym[p], sym[q]));
    if (rank)
        heap_push_u64(h, nh, (uint64_t)*rank << 32 | p);
}

/* Applies merges in rank order to one chunk, kept as a linked list of symbols. */
static size_t encode_chunk(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids)
{
    uint32_t sym[MAX_CHUNK], next[MAX_CHUNK], prev[MAX_CHUNK];
    uint64_t heap[3 * MAX_CHUNK];   /* n-1 initial pairs + 2 per merge */
    size_t nh = 0;
    for (uint32_t i = 0; i < n; i++) {
        sym[i] = s[i];
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
        sym[p] = BYTE_VOCAB + rank;
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

size_t tokenizer_encode(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids)
{
    if (!t->bpe) {
        for (size_t i = 0; i < n; i++)
            ids[i] = text[i];
        return n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t end = chunk_end(text, n, i);
        k += encode_chunk(t, text + i, (uint32_t)(end - i), ids + k);
        i = end;
    }
    return k;
}

/* Ids outside the vocabulary (e.g. a model's padding rows) decode to nothing. */
size_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, uint8_t *out,
                        size_t cap)
{
    uint32_t vocab = BYTE_VOCAB + t->nmerges;
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
    map_free(&tr->pair_index);
    free(tr->occ);
    free(tr->heap);
    free(tr->touched);
}

static uint64_t hash_bytes(const uint8_t *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
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
    uint64_t h = hash_bytes(s, n);
    size_t i = h & (tr->table_cap - 1);
    for (; tr->table[i]; i = (i + 1) & (tr->table_cap - 1)) {
        word *w = &tr->words[tr->table[i] - 1];
        if (w->hash == h && word_equals(tr, w, s, n)) {
            w->freq++;
            return 0;
        }
    }
    if (tr->nwords >= UINT32_MAX - 1 ||
        grow(&tr->words, &tr->cap_words, tr->nwords + 1, sizeof *tr->words) != 0 ||
        grow(&tr->syms, &tr->cap_syms, tr->nsyms + n, sizeof *tr->syms) != 0)
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
    if (grow(&tr->heap, &tr->cap_heap, tr->nheap + 1, sizeof *tr->heap) != 0)
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
    const uint32_t *found = map_get(&tr->pair_index, pair_key(a, b));
    if (found) {
        *idx = *found;
        return 0;
    }
    if (grow(&tr->pairs, &tr->cap_pairs, tr->npairs + 1, sizeof *tr->pairs) != 0 ||
        map_put(&tr->pair_index, pair_key(a, b), (uint32_t)tr->npairs) != 0)
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
            grow(&tr->occ, &tr->cap_occ, tr->nocc + 1, sizeof *tr->occ) != 0)
            return -1;
        tr->occ[tr->nocc] = (occurrence){.word = w, .next = p->where};
        p->where = (uint32_t)tr->nocc++;
    }
    if (p->stamp != stamp) {
        p->stamp = stamp;
        if (grow(&tr->touched, &tr->cap_touched, tr->ntouched + 1, sizeof *tr->touched) != 0)
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
        size_t end = chunk_end(text, n, i);
        if (count_chunk(tr, text + i, end - i) != 0)
            return -1;
        i = end;
    }
    if (map_init(&tr->pair_index, tr->nsyms) != 0 || count_pairs(tr) != 0)
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
        fail_oom(err, errlen);
    else
        t = tokenizer_create(1, merges, (size_t)got, err, errlen);
    free(merges);
    return t;
}

/* -------------------------------------------------------------------- JSON */

static cJSON *to_json(const tokenizer *t)
{
    cJSON *root = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(root, "type", tokenizer_type(t)) &&
             cJSON_AddNumberToObject(root, "vocab_size", tokenizer_vocab_size(t));
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

/* Reads the "merges" array; its ids are range-checked again by tokenizer_create. */
static uint32_t *parse_merges(const cJSON *arr, uint32_t n, char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr) || (uint32_t)cJSON_GetArraySize(arr) != n) {
        snprintf(err, errlen, "\"merges\" must be an array of vocab_size - 256 = %u pairs", n);
        return NULL;
    }
    uint32_t *m = malloc((2 * (size_t)n + 1) * sizeof *m);
    if (!m) {
        fail_oom(err, errlen);
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
        return tokenizer_create(0, NULL, 0, err, errlen);
    }
    if (strcmp(type->valuestring, "bpe") != 0) {
        snprintf(err, errlen, "unknown tokenizer type \"%.40s\"", type->valuestring);
        return NULL;
    }
    if (vocab < BYTE_VOCAB) {
        snprintf(err, errlen, "BPE vocab_size %u is below %d", vocab, BYTE_VOCAB);
        return NULL;
    }
    uint32_t *m = parse_merges(merges, vocab - BYTE_VOCAB, err, errlen);
    tokenizer *t = m ? tokenizer_create(1, m, vocab - BYTE_VOCAB, err, errlen) : NULL;
    free(m);
    return t;
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (fs_read_file(path, &data, &len, err, errlen) != 0)
        return NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    char why[200];
    tokenizer *t = NULL;
    if (!root)
        snprintf(why, sizeof why, "not a tokenizer file (invalid JSON)");
    else
        t = from_json(root, why, sizeof why);
    cJSON_Delete(root);
    if (!t)
        snprintf(err, errlen, "%s: %s", path, why);
    return t;
}
