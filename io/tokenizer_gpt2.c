/* tokenizer_gpt2: GPT-2's tokenizer (io/tokenizer_internal.h): its vocabulary and
 * merges checked and indexed, its byte-to-unicode spelling, its split and encoding.
 *
 * GPT-2's split cuts with GPT-2's own pattern (PCRE2, Unicode classes) and no cap,
 * as the reference encoders do; encoding then applies the same rank-ordered merging
 * to each chunk (tok_encode_chunk).  bpe with that split trains on these chunks and
 * encodes here too.
 */
#include "io/tokenizer_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hash.h"
#include "io/utf8.h"

/* ----------------------------------------- spelling, vocabulary and merges */

/* GPT-2's pre-tokenization pattern.  Its \s is Unicode White_Space, as in OpenAI's
 * and Hugging Face's encoders (the JS reference's \s differs on U+0085 and U+FEFF).
 * PCRE2's \s under PCRE2_UCP also matches U+180E, white space before Unicode 6.3 and
 * a symbol to those encoders, so BLANKS lists White_Space (a stable set) instead. */
#define BLANKS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
               "\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" BLANKS "\\p{L}\\p{N}]+|"
    "[" BLANKS "]+(?![^" BLANKS "])|[" BLANKS "]+";

bool tok_gpt2_ends_wide_blank(const uint8_t *s, size_t p)
{
    static const uint32_t wide[][2] = {   /* BLANKS beyond ASCII, first and last */
        {0x85, 0x85},     {0xa0, 0xa0},     {0x1680, 0x1680}, {0x2000, 0x200a},
        {0x2028, 0x2029}, {0x202f, 0x202f}, {0x205f, 0x205f}, {0x3000, 0x3000}};
    for (size_t len = 2; len <= 3 && len <= p; len++) {   /* all take 2 or 3 bytes */
        const uint8_t *c = s + p - len;
        if (utf8_step(c, len) != (long)len)
            continue;
        uint32_t cp = len == 2 ? (uint32_t)(c[0] & 0x1f) << 6 | (c[1] & 0x3f)
                               : (uint32_t)(c[0] & 0x0f) << 12 | (uint32_t)(c[1] & 0x3f) << 6 |
                                     (c[2] & 0x3f);
        for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
            if (cp >= wide[i][0] && cp <= wide[i][1])
                return true;
    }
    return false;
}

enum {
    MAP_CODEPOINTS = 324,  /* GPT-2's byte-to-unicode map uses U+0021..U+0143 */
    CACHE_MAX_LEN = 64,    /* longer chunks are rare and not cached */
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

long tok_gpt2_token_id(const tokenizer *t, const uint8_t *s, size_t n)
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
        t->split = TOKENIZER_SPLIT_GPT2;
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

/* The place in the pool and the slot in the bytes -> id table of tokens from..vocab-1,
 * whose bytes are in the pool from off on and lengths in tok_len; a token must be
 * non-empty and new.  0, or -1 with the reason in err. */
static int gpt2_index_tokens(tokenizer *t, uint32_t from, uint32_t off, char *err,
                             size_t errlen)
{
    for (uint32_t id = from; id < t->vocab; off += t->tok_len[id++]) {
        t->tok_off[id] = off;
        size_t slot = by_bytes_slot(t, t->pool + off, t->tok_len[id]);
        if (t->tok_len[id] == 0 || t->by_bytes[slot] != UINT32_MAX) {
            snprintf(err, errlen, "token %u is %s", id,
                     t->tok_len[id] ? "a repeat of an earlier one" : "empty");
            return -1;
        }
        t->by_bytes[slot] = id;
    }
    return 0;
}

/* Makes the bytes -> id table big enough for vocab tokens (at most half full). */
static int by_bytes_fit(tokenizer *t, size_t vocab)
{
    size_t cap = t->by_bytes_cap;
    while (cap < 2 * vocab)
        cap *= 2;
    if (cap == t->by_bytes_cap)
        return 0;
    uint32_t *table = malloc(cap * sizeof *table);
    if (!table)
        return -1;
    memset(table, 0xff, cap * sizeof *table);
    free(t->by_bytes);
    t->by_bytes = table;
    t->by_bytes_cap = cap;
    for (uint32_t id = 0; id < t->vocab; id++)
        t->by_bytes[by_bytes_slot(t, t->pool + t->tok_off[id], t->tok_len[id])] = id;
    return 0;
}

/* Grows *p to n elements of elem bytes; 0, or -1 leaving it as it was. */
static int resize(void *p, size_t n, size_t elem)
{
    void *q = realloc(*(void **)p, n * elem);
    if (!q)
        return -1;
    *(void **)p = q;
    return 0;
}

int tok_gpt2_append(tokenizer *t, const uint8_t *bytes, const uint32_t *lens, size_t m,
                    char *err, size_t errlen)
{
    size_t vocab = t->vocab + m, old = t->tok_off[t->vocab - 1] + t->tok_len[t->vocab - 1];
    size_t total = old;
    for (size_t i = 0; i < m; i++)
        total += lens[i];
    if (vocab > MAX_VOCAB) {
        snprintf(err, errlen, "%zu tokens exceed the limit of %d", vocab, MAX_VOCAB);
        return -1;
    }
    if (total > UINT32_MAX || resize(&t->tok_off, vocab, sizeof *t->tok_off) != 0 ||
        resize(&t->tok_len, vocab, sizeof *t->tok_len) != 0 ||
        resize(&t->pool, total + 1, 1) != 0 || by_bytes_fit(t, vocab) != 0)
        return tok_fail_oom(err, errlen);
    memcpy(t->pool + old, bytes, total - old);
    memcpy(t->tok_len + t->vocab, lens, m * sizeof *lens);
    uint32_t from = t->vocab;
    t->vocab = (uint32_t)vocab;
    return gpt2_index_tokens(t, from, (uint32_t)old, err, errlen);
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
    const tokenizer_added eos = {.id = (uint32_t)t->eos, .special = true};
    return tokenizer_set_added(t, &eos, 1, err, errlen);
}

tokenizer *tok_gpt2_alloc(const uint8_t *bytes, const uint32_t *lens, size_t vocab,
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
    if (gpt2_index_tokens(t, 0, 0, err, errlen) != 0 ||
        gpt2_find_special(t, err, errlen) != 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

int tok_gpt2_set_merges(tokenizer *t, const uint32_t *merges, size_t nmerges, char *err,
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
        if (nmerges > 0)   /* merges may be NULL without any */
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

pcre2_code *tok_gpt2_pattern(char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR why[120];
        pcre2_get_error_message(code, why, sizeof why);
        snprintf(err, errlen, "PCRE2 refuses GPT-2's pattern: %s", (const char *)why);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* without JIT it still matches, slower */
    return re;
}

tokenizer *tokenizer_new_gpt2(const uint8_t *bytes, const uint32_t *lens, size_t vocab,
                              const uint32_t *merges, size_t nmerges, char *err, size_t errlen)
{
    tokenizer *t = tok_gpt2_alloc(bytes, lens, vocab, err, errlen);
    if (t && (tok_gpt2_set_merges(t, merges, nmerges, err, errlen) != 0 ||
              !(t->re = tok_gpt2_pattern(err, errlen)))) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ---------------------------------------------------------------- encoding */

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

/* What encoding keeps from one text to the next (a tokenizer_encoder's). */
typedef struct {
    word_cache cache;
    chunk_scratch big;   /* for chunks over MAX_CHUNK bytes */
    size_t big_cap;
} gpt2_state;

typedef struct {
    const tokenizer *t;
    gpt2_state *s;
    uint32_t *ids;       /* the output, k ids so far */
    size_t k;
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

static int big_reserve(gpt2_state *c, size_t n)
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

static void state_free(gpt2_state *s)
{
    cache_free(&s->cache);
    free(s->big.sym);
    free(s->big.heap);
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
        if (n >= UINT32_MAX || big_reserve(c->s, n) != 0)
            return SIZE_MAX;
        return tok_encode_chunk(c->t, s, (uint32_t)n, ids, c->s->big);
    }
    word_cache *cache = &c->s->cache;
    uint64_t h = fnv1a64(s, n);
    cache_entry *e = cache_slot(cache, h, s, n);
    if (e->key_len) {
        memcpy(ids, cache->ids + e->ids_off, e->nids * sizeof *ids);
        return e->nids;
    }
    size_t k = tok_encode_short(c->t, s, (uint32_t)n, ids);
    cache_put(cache, e, h, s, n, ids, k);
    return k;
}

/* A replaced ill-formed sequence: at off in the matched text, raw_len bytes in the input. */
typedef struct {
    size_t off, raw_len;
} fix;

typedef struct {
    const pcre2_code *re;
    pcre2_match_data *md;
    tok_chunk_fn fn;
    void *ctx;
} splitter;

/* Splits subject (the input, or its copy with U+FFFD for each ill-formed sequence,
 * listed in fixes) with the pattern and hands on the input bytes of each piece. */
static int split_subject(const splitter *sp, const uint8_t *subject, size_t len,
                         const uint8_t *raw, const fix *fixes, size_t nfixes)
{
    size_t at = 0, raw_at = 0, shift = 0, f = 0;
    while (at < len) {
        int rc = pcre2_match(sp->re, subject, len, at, PCRE2_NO_UTF_CHECK, sp->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
            return -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sp->md);
        /* Every character matches some branch, so a gap or no match cannot happen on
         * valid UTF-8; should one, its bytes still become a chunk of their own. */
        size_t end = rc < 0 ? len : ov[0] > at ? ov[0] : ov[1];
        for (; f < nfixes && fixes[f].off < end; f++)
            shift += 3 - fixes[f].raw_len;
        size_t raw_end = end - shift;
        if (sp->fn(sp->ctx, raw + raw_at, raw_end - raw_at) != 0)
            return -1;
        at = end;
        raw_at = raw_end;
    }
    return 0;
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
    if (!out) {
        free(fs);   /* *fixes must not point at it: the caller frees that too */
        fs = NULL;
    }
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

int tok_split_gpt2(const pcre2_code *re, const uint8_t *text, size_t n, tok_chunk_fn fn,
                   void *ctx)
{
    splitter sp = {re, pcre2_match_data_create(1, NULL), fn, ctx};
    int rc = -1;
    if (sp.md && first_ill_formed(text, n) == n) {
        rc = split_subject(&sp, text, n, text, NULL, 0);
    } else if (sp.md) {
        size_t len, nfixes;
        fix *fixes;
        uint8_t *sub = replace_ill_formed(text, n, &len, &fixes, &nfixes);
        if (sub)
            rc = split_subject(&sp, sub, len, text, fixes, nfixes);
        free(sub);
        free(fixes);
    }
    pcre2_match_data_free(sp.md);
    return rc;
}

static int encode_piece(void *ctx, const uint8_t *s, size_t n)
{
    gpt2_ctx *c = ctx;
    size_t got = gpt2_chunk(c, s, n, c->ids + c->k);
    if (got == SIZE_MAX)
        return -1;
    c->k += got;
    return 0;
}

/* The text between added tokens is split and merged; each added token is its id. */
static size_t encode_gpt2(const tokenizer *t, gpt2_state *s, const uint8_t *text, size_t n,
                          uint32_t *ids)
{
    gpt2_ctx c = {.t = t, .s = s, .ids = ids};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n;) {
        uint32_t k = 0;
        size_t at = t->nadded ? tok_added_next(t, text, n, i, &k) : n;
        if (at > i)
            rc = tok_split_gpt2(t->re, text + i, at - i, encode_piece, &c);
        if (at == n)
            break;
        ids[c.k++] = t->added[k].id;
        i = at + t->added[k].len;
    }
    return rc == 0 ? c.k : SIZE_MAX;
}

size_t tok_encode_gpt2(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids)
{
    gpt2_state s = {0};
    size_t k = cache_init(&s.cache, n) == 0 ? encode_gpt2(t, &s, text, n, ids) : SIZE_MAX;
    state_free(&s);
    return k;
}

/* Only GPT-2's split has a state worth keeping (its word cache); the others encode
 * as tokenizer_encode does. */
struct tokenizer_encoder {
    const tokenizer *t;
    gpt2_state s;
};

tokenizer_encoder *tokenizer_encoder_new(const tokenizer *t)
{
    tokenizer_encoder *e = calloc(1, sizeof *e);
    if (e && t->split == TOKENIZER_SPLIT_GPT2 && cache_init(&e->s.cache, SIZE_MAX) != 0) {
        tokenizer_encoder_free(e);
        return NULL;
    }
    if (e)
        e->t = t;
    return e;
}

size_t tokenizer_encode_with(tokenizer_encoder *e, const uint8_t *text, size_t n, uint32_t *ids)
{
    if (e->t->kind == KIND_BYTE || e->t->split != TOKENIZER_SPLIT_GPT2)
        return tokenizer_encode(e->t, text, n, ids);
    return encode_gpt2(e->t, &e->s, text, n, ids);
}

void tokenizer_encoder_free(tokenizer_encoder *e)
{
    if (e)
        state_free(&e->s);
    free(e);
}
