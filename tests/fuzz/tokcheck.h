/* tokcheck: the properties every tokenizer the fuzz targets load must keep. */
#ifndef TESTS_FUZZ_TOKCHECK_H
#define TESTS_FUZZ_TOKCHECK_H

#include "io/tokenizer.h"
#include "tests/fuzz/fuzz.h"

/* Any n bytes encode to ids below the vocabulary that decode back to them. */
static inline void check_round_trip(const tokenizer *t, const uint8_t *text, size_t n)
{
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    uint8_t *back = malloc(n ? n : 1);
    FUZZ_CHECK(ids && back);
    size_t k = tokenizer_encode(t, text, n, ids);
    if (k == SIZE_MAX) {   /* out of memory (gpt2 allocates per call) */
        free(ids);
        free(back);
        return;
    }
    FUZZ_CHECK(k <= n);
    for (size_t i = 0; i < k; i++)
        FUZZ_CHECK(ids[i] < (uint32_t)tokenizer_vocab_size(t));
    FUZZ_CHECK(tokenizer_decode(t, ids, k, back, n) == n);
    FUZZ_CHECK(memcmp(back, text, n) == 0);
    free(ids);
    free(back);
}

/* Where tokenizer_cut cuts a prefix of the text (the whole, half, a third), the two
 * parts encode to the whole text's ids: prep encodes a corpus in such pieces. */
static inline void check_cut(const tokenizer *t, const uint8_t *text, size_t n)
{
    uint32_t *whole = malloc((n + 1) * sizeof *whole), *ids = malloc((n + 1) * sizeof *ids);
    FUZZ_CHECK(whole && ids);
    size_t k = tokenizer_encode(t, text, n, whole);
    for (size_t d = 1; d <= 3 && k != SIZE_MAX; d++) {
        size_t p = tokenizer_cut(t, text, n / d);
        FUZZ_CHECK(p <= n / d);
        if (p == 0)
            continue;
        size_t a = tokenizer_encode(t, text, p, ids);
        size_t b = a == SIZE_MAX ? SIZE_MAX : tokenizer_encode(t, text + p, n - p, ids + a);
        if (b == SIZE_MAX)   /* out of memory (gpt2 allocates per call) */
            break;
        FUZZ_CHECK(a + b == k && memcmp(ids, whole, k * sizeof *ids) == 0);
    }
    free(whole);
    free(ids);
}

/* Each added token's text alone encodes to that token: nothing else can start there
 * and be longer. */
static inline void check_added(const tokenizer *t)
{
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    for (size_t i = 0; i < n; i++) {
        uint32_t *ids = malloc((a[i].len + 1) * sizeof *ids);
        FUZZ_CHECK(ids);
        size_t k = tokenizer_encode(t, a[i].content, a[i].len, ids);
        FUZZ_CHECK(k == SIZE_MAX || (k == 1 && ids[0] == a[i].id));
        free(ids);
    }
}

#endif
