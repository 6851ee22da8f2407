/* tokenizer_train: learning BPE merges from a corpus (io/tokenizer_internal.h).
 *
 * The corpus is cut into chunks as encoding cuts it (GPT-2's split, tok_split_gpt2,
 * or the bytes split, tok_chunk_end), each distinct chunk is counted once with its
 * frequency, and the most frequent pair is merged until the vocabulary is full or
 * nothing is left to merge.  A pair that would make a token over MAX_CHUNK bytes
 * (only GPT-2's split has such chunks) is never merged.  Pair counts are kept up to
 * date incrementally: a merge only revisits the words its pair occurs in.
 */
#include "io/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/hash.h"

/* A distinct chunk of the corpus: its current symbols and how often it occurs. */
typedef struct {
    uint64_t hash;     /* of the original bytes, for the counting table */
    size_t off;        /* into bpe_trainer.syms */
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
    uint32_t *tok_len;   /* bytes of each token made so far */
} bpe_trainer;

static void bpe_trainer_free(bpe_trainer *tr)
{
    free(tr->words);
    free(tr->syms);
    free(tr->table);
    free(tr->pairs);
    tok_map_free(&tr->pair_index);
    free(tr->occ);
    free(tr->heap);
    free(tr->touched);
    free(tr->tok_len);
}

static int word_equals(const bpe_trainer *tr, const word *w, const uint8_t *s, size_t n)
{
    if (w->len != n)
        return 0;
    const uint32_t *sym = tr->syms + w->off;
    for (size_t i = 0; i < n; i++)
        if (sym[i] != s[i])
            return 0;
    return 1;
}

static int table_grow(bpe_trainer *tr)
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

/* Counts one chunk (a tok_chunk_fn of the trainer); chunks of one byte can never
 * merge and are not kept. */
static int count_chunk(void *ctx, const uint8_t *s, size_t n)
{
    bpe_trainer *tr = ctx;
    if (n < 2)
        return 0;
    if (n >= UINT32_MAX)
        return -1;
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

static int heap_push(bpe_trainer *tr, heap_entry e)
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

static heap_entry heap_pop(bpe_trainer *tr)
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

static int find_pair(bpe_trainer *tr, uint32_t a, uint32_t b, uint32_t stamp, uint32_t *idx)
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
static int pair_add(bpe_trainer *tr, uint32_t a, uint32_t b, int64_t delta, uint32_t w,
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

static int flush_touched(bpe_trainer *tr)
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
static int merge_in_word(bpe_trainer *tr, uint32_t w, uint32_t a, uint32_t b, uint32_t z,
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

static int apply_merge(bpe_trainer *tr, uint32_t pair, uint32_t z, uint32_t stamp)
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
 * out of date are re-queued with the current count (counts only fall between pushes);
 * pairs too long to merge are dropped. */
static int64_t best_pair(bpe_trainer *tr)
{
    while (tr->nheap > 0) {
        heap_entry e = heap_pop(tr);
        if (tr->tok_len[e.a] + tr->tok_len[e.b] > MAX_CHUNK)
            continue;
        int64_t now = tr->pairs[e.pair].count;
        if (now == e.count)
            return e.pair;
        e.count = now;
        if (now > 0 && heap_push(tr, e) != 0)
            return -2;
    }
    return -1;
}

static int count_pairs(bpe_trainer *tr)
{
    for (uint32_t w = 0; w < tr->nwords; w++) {
        const uint32_t *s = tr->syms + tr->words[w].off;
        for (uint32_t i = 0; i + 1 < tr->words[w].len; i++)
            if (pair_add(tr, s[i], s[i + 1], (int64_t)tr->words[w].freq, w, 0) != 0)
                return -1;
    }
    return flush_touched(tr);
}

/* Counts the chunks of text: GPT-2's split with its pattern re, else the bytes split. */
static int count_chunks(bpe_trainer *tr, const pcre2_code *re, const uint8_t *text, size_t n)
{
    if (re)
        return tok_split_gpt2(re, text, n, count_chunk, tr);
    for (size_t i = 0; i < n;) {
        size_t end = tok_chunk_end(text, n, i);
        if (count_chunk(tr, text + i, end - i) != 0)
            return -1;
        i = end;
    }
    return 0;
}

/* Learns up to want merges into merges[] from the chunks counted so far; returns how
 * many, or -1 when out of memory. */
static int64_t learn_merges(bpe_trainer *tr, uint32_t want, uint32_t *merges)
{
    tr->tok_len = malloc((BYTE_VOCAB + (size_t)want) * sizeof *tr->tok_len);
    if (!tr->tok_len || tok_map_init(&tr->pair_index, tr->nsyms) != 0 || count_pairs(tr) != 0)
        return -1;
    for (uint32_t id = 0; id < BYTE_VOCAB; id++)
        tr->tok_len[id] = 1;
    for (uint32_t m = 0; m < want; m++) {
        int64_t best = best_pair(tr);
        if (best == -1)
            return m;   /* every chunk is a single token already */
        if (best < 0)
            return -1;
        merges[2 * m] = tr->pairs[best].a;
        merges[2 * m + 1] = tr->pairs[best].b;
        tr->tok_len[BYTE_VOCAB + m] = tr->tok_len[merges[2 * m]] + tr->tok_len[merges[2 * m + 1]];
        if (apply_merge(tr, (uint32_t)best, BYTE_VOCAB + m, m + 1) != 0)
            return -1;
    }
    return want;
}

struct tokenizer_bpe_counts {
    bpe_trainer tr;
    tokenizer_split_kind split;
    pcre2_code *re;   /* GPT-2's pattern for that split, else NULL */
};

tokenizer_bpe_counts *tokenizer_bpe_counts_new(tokenizer_split_kind split, char *err,
                                               size_t errlen)
{
    tokenizer_bpe_counts *c = calloc(1, sizeof *c);
    if (!c) {
        tok_fail_oom(err, errlen);
        return NULL;
    }
    c->split = split;
    if (split == TOKENIZER_SPLIT_GPT2 && !(c->re = tok_gpt2_pattern(err, errlen))) {
        free(c);
        return NULL;
    }
    return c;
}

int tokenizer_bpe_counts_add(tokenizer_bpe_counts *c, const uint8_t *text, size_t n, char *err,
                             size_t errlen)
{
    return count_chunks(&c->tr, c->re, text, n) == 0 ? 0 : tok_fail_oom(err, errlen);
}

void tokenizer_bpe_counts_free(tokenizer_bpe_counts *c)
{
    if (!c)
        return;
    bpe_trainer_free(&c->tr);
    pcre2_code_free(c->re);
    free(c);
}

tokenizer *tokenizer_bpe_counts_train(tokenizer_bpe_counts *c, int vocab_size, char *err,
                                      size_t errlen)
{
    if (vocab_size <= BYTE_VOCAB || vocab_size > MAX_VOCAB) {
        snprintf(err, errlen, "BPE vocabulary size %d out of range (%d..%d)", vocab_size,
                 BYTE_VOCAB + 1, MAX_VOCAB);
        return NULL;
    }
    uint32_t want = (uint32_t)vocab_size - BYTE_VOCAB;
    uint32_t *merges = malloc(2 * (size_t)want * sizeof *merges);
    int64_t got = merges ? learn_merges(&c->tr, want, merges) : -1;
    tokenizer *t = NULL;
    if (got < 0)
        tok_fail_oom(err, errlen);
    else
        t = tokenizer_new_bpe(merges, (size_t)got, c->split, err, errlen);
    free(merges);
    return t;
}

tokenizer *tokenizer_train_bpe(const uint8_t *text, size_t n, int vocab_size,
                               tokenizer_split_kind split, char *err, size_t errlen)
{
    tokenizer_bpe_counts *c = tokenizer_bpe_counts_new(split, err, errlen);
    tokenizer *t = NULL;
    if (c && tokenizer_bpe_counts_add(c, text, n, err, errlen) == 0)
        t = tokenizer_bpe_counts_train(c, vocab_size, err, errlen);
    tokenizer_bpe_counts_free(c);
    return t;
}
