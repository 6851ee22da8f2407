/* tokenizer: byte and BPE round trips on arbitrary bytes, BPE training results that can be
 * worked out by hand, JSON save/load, and refusal of corrupt tokenizer files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/tokenizer.h"

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

static tokenizer *trained(int vocab)
{
    uint8_t *text = english(200000);
    char err[256] = "";
    tokenizer *t = tokenizer_train_bpe(text, 200000, vocab, err, sizeof err);
    if (!t)
        fprintf(stderr, "train: %s\n", err);
    free(text);
    return t;
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
    tokenizer *t = trained(600);
    assert_non_null(t);
    roundtrip_suite(t);
    tokenizer_free(t);
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
    return tokenizer_train_bpe((const uint8_t *)s, strlen(s), vocab, err, sizeof err);
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

static void test_bpe_bad_vocab(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(tokenizer_train_bpe((const uint8_t *)"abc", 3, 256, err, sizeof err));
    assert_non_null(strstr(err, "out of range"));
    assert_null(tokenizer_train_bpe((const uint8_t *)"abc", 3, (1 << 20) + 1, err, sizeof err));
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
    tokenizer *kinds[] = {trained(700), tokenizer_new_byte()};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tokenizer_save(kinds[i], path, err, sizeof err), 0);
        tokenizer *back = tokenizer_load(path, err, sizeof err);
        assert_non_null(back);
        check_same_encoding(kinds[i], back);
        tokenizer_free(back);
        tokenizer_free(kinds[i]);
    }
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);   /* the temporary was renamed away */
    unlink(path);
    rmdir(dir);
}

static void test_from_merges(void **state)
{
    (void)state;
    tokenizer *t = trained(450);
    size_t n;
    const uint32_t *m = tokenizer_merges(t, &n);
    char err[256];
    tokenizer *u = tokenizer_new_bpe(m, n, err, sizeof err);
    assert_non_null(u);
    check_same_encoding(t, u);
    uint32_t forward[] = {'a', 'b', 256, 258};   /* merge 1 uses token 258, defined later */
    assert_null(tokenizer_new_bpe(forward, 2, err, sizeof err));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_roundtrip),
        cmocka_unit_test(test_bpe_roundtrip),
        cmocka_unit_test(test_bpe_vocab_and_merges),
        cmocka_unit_test(test_bpe_deterministic),
        cmocka_unit_test(test_bpe_by_hand),
        cmocka_unit_test(test_bpe_presplit_and_early_stop),
        cmocka_unit_test(test_bpe_bad_vocab),
        cmocka_unit_test(test_decode_cap),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_from_merges),
        cmocka_unit_test(test_corrupt_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
