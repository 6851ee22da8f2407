/* shard: write/open round trips for both token widths, and refusal (with a one-line
 * reason) of truncated, foreign, wrong-version and empty files.  shard_stream: appended
 * in pieces and split, the files shard_write makes of the two parts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/shard.h"

static char dir[] = "/tmp/test_shard.XXXXXX";
static char path[256];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/x.tok", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void roundtrip(uint32_t vocab, uint32_t want_width, uint64_t count)
{
    uint32_t *tok = calloc(count + 1, sizeof *tok);
    for (uint64_t i = 0; i < count; i++)
        tok[i] = (uint32_t)((i * 2654435761u) % vocab);
    if (count)
        tok[count - 1] = vocab - 1;   /* the largest id must survive narrowing */
    char err[512];
    assert_int_equal(shard_write(path, tok, count, vocab, err, sizeof err), 0);
    assert_int_equal(file_size(path), 32 + (long)(count * want_width));
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    token_shard s;
    assert_int_equal(shard_open(&s, path, err, sizeof err), 0);
    assert_int_equal(s.count, count);
    assert_int_equal(s.width, want_width);
    assert_int_equal(s.vocab_size, vocab);
    for (uint64_t i = 0; i < count; i++)
        assert_int_equal(shard_token(&s, i), tok[i]);
    shard_close(&s);
    free(tok);
}

static void test_roundtrip_width2(void **state)
{
    (void)state;
    roundtrip(256, 2, 10000);
    roundtrip(65536, 2, 70000);   /* the largest vocabulary that fits 2 bytes */
    roundtrip(300, 2, 0);
}

static void test_roundtrip_width4(void **state)
{
    (void)state;
    roundtrip(65537, 4, 70000);
    roundtrip(1 << 20, 4, 12345);
}

static void test_write_rejects_out_of_vocab(void **state)
{
    (void)state;
    uint32_t tok[] = {1, 2, 300};
    char err[512] = "";
    unlink(path);
    assert_int_equal(shard_write(path, tok, 3, 300, err, sizeof err), -1);
    assert_non_null(strstr(err, "index 2"));
    assert_int_equal(file_size(path), -1);   /* nothing left behind */
}

/* Writes a valid 100-token shard, lets edit damage it, and expects shard_open to
 * fail with a message naming the file and containing want. */
static void expect_refused(void (*edit)(FILE *), const char *want)
{
    uint32_t tok[100] = {0};
    char err[512] = "";
    assert_int_equal(shard_write(path, tok, 100, 256, err, sizeof err), 0);
    FILE *f = fopen(path, "r+b");
    edit(f);
    fclose(f);
    token_shard s;
    assert_int_equal(shard_open(&s, path, err, sizeof err), -1);
    if (!strstr(err, want))
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, want);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, path));
    assert_null(strchr(err, '\n'));
    assert_null(s.map);
}

static void drop_last_byte(FILE *f)
{
    assert_int_equal(ftruncate(fileno(f), 32 + 200 - 1), 0);
}

static void empty(FILE *f)
{
    assert_int_equal(ftruncate(fileno(f), 0), 0);
}

static void header_only_part(FILE *f)
{
    assert_int_equal(ftruncate(fileno(f), 20), 0);
}

static void append_byte(FILE *f)
{
    fseek(f, 0, SEEK_END);
    fputc(0, f);
}

static void poke_u32(FILE *f, long at, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fseek(f, at, SEEK_SET);
    fwrite(b, 1, 4, f);
}

static void bad_magic(FILE *f)
{
    fputc('X', f);
}

static void version_2(FILE *f)
{
    poke_u32(f, 8, 2);
}

static void width_3(FILE *f)
{
    poke_u32(f, 12, 3);
}

static void huge_count(FILE *f)
{
    poke_u32(f, 20, 0x80000000u);
}

static void test_truncated(void **state)
{
    (void)state;
    expect_refused(drop_last_byte, "truncated token file (expected 232 bytes, found 231)");
    expect_refused(header_only_part, "truncated");
}

static void test_zero_length(void **state)
{
    (void)state;
    expect_refused(empty, "found 0");
}

static void test_wrong_magic(void **state)
{
    (void)state;
    expect_refused(bad_magic, "magic");
}

static void test_wrong_version(void **state)
{
    (void)state;
    expect_refused(version_2, "version 2");
}

static void test_other_corruption(void **state)
{
    (void)state;
    expect_refused(width_3, "width 3");
    expect_refused(append_byte, "trailing data");
    expect_refused(huge_count, "token file");
}

static void test_missing_file(void **state)
{
    (void)state;
    char err[512] = "";
    token_shard s;
    unlink(path);
    assert_int_equal(shard_open(&s, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
}

static uint8_t *slurp(const char *p, long *n)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    *n = file_size(p);
    uint8_t *b = malloc((size_t)*n + 1);
    assert_int_equal(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

/* A stream appended in pieces and split at keep holds, byte for byte, what
 * shard_write makes of the first keep tokens and of the rest. */
static void stream_split(uint32_t vocab, uint64_t count, uint64_t keep)
{
    uint32_t *tok = calloc(count + 1, sizeof *tok);
    for (uint64_t i = 0; i < count; i++)
        tok[i] = (uint32_t)((i * 2654435761u) % vocab);
    char err[512], head[300], tail[300];
    snprintf(head, sizeof head, "%s/head.tok", dir);
    snprintf(tail, sizeof tail, "%s/tail.tok", dir);
    shard_stream st;
    assert_int_equal(shard_stream_begin(&st, head, vocab, err, sizeof err), 0);
    for (uint64_t at = 0, piece = 1; at < count; at += piece, piece = piece * 3 + 1) {
        size_t n = count - at < piece ? (size_t)(count - at) : (size_t)piece;
        assert_int_equal(shard_stream_append(&st, tok + at, n, err, sizeof err), 0);
    }
    assert_int_equal(st.count, count);
    assert_int_equal(shard_stream_split(&st, keep, tail, err, sizeof err), 0);
    const char *made[2] = {head, tail};
    const uint64_t from[2] = {0, keep}, n[2] = {keep, count - keep};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(shard_write(path, tok + from[k], n[k], vocab, err, sizeof err), 0);
        long a, b;
        uint8_t *got = slurp(made[k], &a), *want = slurp(path, &b);
        assert_int_equal(a, b);
        assert_memory_equal(got, want, (size_t)a);
        free(got);
        free(want);
        unlink(made[k]);
    }
    free(tok);
}

static void test_stream_split(void **state)
{
    (void)state;
    stream_split(256, 100000, 90000);
    stream_split(70000, 3000000, 2700000);   /* width 4, more than one copy block */
    stream_split(300, 4, 2);
}

/* An id outside the vocabulary is refused; abort leaves no file. */
static void test_stream_refuses_and_aborts(void **state)
{
    (void)state;
    char err[512], tmp[300];
    shard_stream st;
    assert_int_equal(shard_stream_begin(&st, path, 300, err, sizeof err), 0);
    const uint32_t ok[2] = {1, 299}, bad[2] = {5, 300};
    assert_int_equal(shard_stream_append(&st, ok, 2, err, sizeof err), 0);
    assert_int_equal(shard_stream_append(&st, bad, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "token 300 at index 3 is outside the vocabulary (300)"));
    shard_stream_abort(&st);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_width2),
        cmocka_unit_test(test_roundtrip_width4),
        cmocka_unit_test(test_write_rejects_out_of_vocab),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_other_corruption),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_stream_split),
        cmocka_unit_test(test_stream_refuses_and_aborts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
