/* gguf: the writer's files read back (metadata of each kind, tensors at aligned
 * offsets with their bytes); a file laid out by hand byte for byte parses to
 * what it holds; every prefix of a valid file, and each kind of damage, is
 * refused with a reason and without reading outside the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/gguf.h"

static char dir[] = "/tmp/test_gguf.XXXXXX";
static char path[256];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

/* A small file: 3 metadata entries, an F32 [3, 2] tensor and a Q8_0 [32] one. */
static void write_sample(void)
{
    char err[512];
    gguf_writer *w = gguf_writer_new();
    const char *toks[] = {"a", "\xc4\xa0" "b", ""};
    size_t lens[] = {1, 3, 0};
    int32_t types[] = {1, 1, 3};
    assert_int_equal(gguf_put_str(w, "general.architecture", "gpt2"), 0);
    assert_int_equal(gguf_put_u32(w, "gpt2.block_count", 12), 0);
    assert_int_equal(gguf_put_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f), 0);
    assert_int_equal(gguf_put_str_array(w, "tokenizer.ggml.tokens", toks, lens, 3), 0);
    assert_int_equal(gguf_put_i32_array(w, "tokenizer.ggml.token_type", types, 3), 0);
    uint64_t ne2[2] = {3, 2}, ne1[1] = {32};
    assert_int_equal(gguf_add_tensor(w, "a", 2, ne2, GGML_F32), 0);
    assert_int_equal(gguf_add_tensor(w, "q", 1, ne1, GGML_Q8_0), 0);
    unlink(path);
    assert_int_equal(gguf_write_begin(w, path, err, sizeof err), 0);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint8_t q[34];
    for (int i = 0; i < 34; i++)
        q[i] = (uint8_t)i;
    assert_int_equal(gguf_write_data(w, a, 8, err, sizeof err), 0);   /* in two pieces */
    assert_int_equal(gguf_write_data(w, a + 2, 16, err, sizeof err), 0);
    assert_int_equal(gguf_write_data(w, q, 34, err, sizeof err), 0);
    assert_int_not_equal(gguf_write_data(w, q, 1, err, sizeof err), 0);   /* nothing left */
    assert_int_equal(gguf_write_commit(w, err, sizeof err), 0);
    gguf_writer_free(w);
}

static void test_roundtrip(void **state)
{
    (void)state;
    write_sample();
    gguf_file f;
    char err[512];
    assert_int_equal(gguf_open(path, &f, err, sizeof err), 0);
    assert_int_equal(f.version, 3);
    assert_int_equal(f.nkv, 5);
    assert_int_equal(f.ntensors, 2);
    const char *s;
    uint64_t len, v;
    assert_int_equal(gguf_get_str(&f, "general.architecture", &s, &len, err, sizeof err), 0);
    assert_true(len == 4 && memcmp(s, "gpt2", 4) == 0);
    assert_int_equal(gguf_get_uint(&f, "gpt2.block_count", &v, err, sizeof err), 0);
    assert_int_equal(v, 12);
    float eps;
    assert_int_equal(gguf_get_f32(&f, "gpt2.attention.layer_norm_epsilon", &eps, err, sizeof err), 0);
    assert_true(eps == 1e-5f);
    assert_int_not_equal(gguf_get_f32(&f, "gpt2.block_count", &eps, err, sizeof err), 0);
    assert_int_not_equal(gguf_get_uint(&f, "missing.key", &v, err, sizeof err), 0);
    assert_non_null(strstr(err, "missing.key is missing"));
    gguf_str_iter it;
    uint64_t n;
    assert_int_equal(gguf_str_array(&f, "tokenizer.ggml.tokens", &it, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    gguf_str_next(&it, &s, &len);
    assert_true(len == 1 && s[0] == 'a');
    gguf_str_next(&it, &s, &len);
    assert_true(len == 3 && memcmp(s, "\xc4\xa0" "b", 3) == 0);
    gguf_str_next(&it, &s, &len);
    assert_int_equal(len, 0);
    const gguf_kv *types = gguf_find(&f, "tokenizer.ggml.token_type");
    assert_true(types && types->elem == GGUF_I32 && types->count == 3);
    const gguf_tensor *a = gguf_find_tensor(&f, "a"), *q = gguf_find_tensor(&f, "q");
    assert_true(a && q);
    assert_true(a->ndim == 2 && a->ne[0] == 3 && a->ne[1] == 2 && a->type == GGML_F32);
    assert_int_equal(a->bytes, 24);
    assert_int_equal((a->data - f.base) % 32, 0);
    assert_int_equal(q->offset, 32);   /* 24 bytes, padded to the alignment */
    assert_int_equal(q->bytes, 34);
    float back[6];
    memcpy(back, a->data, 24);
    for (int i = 0; i < 6; i++)
        assert_true(back[i] == (float)(i + 1));
    for (int i = 0; i < 34; i++)
        assert_int_equal(q->data[i], i);
    gguf_close(&f);
}

/* Every prefix of a valid file that cuts into its tensors is refused, every
 * longer one (only trailing padding gone) accepted; ASan checks that nothing
 * is read past the end. */
static void test_every_prefix_refused(void **state)
{
    (void)state;
    write_sample();
    uint8_t *data;
    size_t len;
    char err[512];
    assert_int_equal(fs_read_file(path, &data, &len, err, sizeof err), 0);
    gguf_file f;
    assert_int_equal(gguf_parse(data, len, &f, err, sizeof err), 0);
    const gguf_tensor *q = gguf_find_tensor(&f, "q");
    size_t end = (size_t)(q->data - f.base) + q->bytes;
    gguf_close(&f);
    assert_true(end < len);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, data, n);
        int rc = gguf_parse(copy, n, &f, err, sizeof err);
        if (rc == 0)
            gguf_close(&f);
        if ((rc == 0) != (n >= end))
            fail_msg("a prefix of %zu of %zu bytes (tensors end at %zu) was %s", n, len, end,
                     rc == 0 ? "accepted" : "refused");
        free(copy);
    }
    free(data);
}

/* Hand-made: header, one u32 key, one F32 tensor info, then patched fields. */
typedef struct {
    uint8_t b[256];
    size_t n;
} buf;

static void put(buf *b, const void *x, size_t n)
{
    memcpy(b->b + b->n, x, n);
    b->n += n;
}
static void put32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(buf *b, uint64_t v) { put(b, &v, 8); }

/* type, ndim, ne0, offset of the one tensor; key value type */
static size_t hand_made(buf *b, uint32_t version, uint64_t ntensors, uint32_t kvtype, uint32_t ttype,
                        uint32_t ndim, uint64_t ne0, uint64_t offset)
{
    b->n = 0;
    put(b, "GGUF", 4);
    put32(b, version);
    put64(b, ntensors);
    put64(b, 1);
    put64(b, 3);
    put(b, "k.v", 3);
    put32(b, kvtype);
    put32(b, 7);
    put64(b, 1);
    put(b, "t", 1);
    put32(b, ndim);
    put64(b, ne0);
    put32(b, ttype);
    put64(b, offset);
    size_t data = (b->n + 31) / 32 * 32;
    memset(b->b + b->n, 0, data + 64 - b->n);
    b->n = data + 64;   /* 64 bytes of data */
    return data;
}

static void refuse(buf *b, const char *why)
{
    gguf_file f;
    char err[512] = "";
    if (gguf_parse(b->b, b->n, &f, err, sizeof err) == 0) {
        gguf_close(&f);
        fail_msg("accepted (wanted: %s)", why);
    }
    if (!strstr(err, why))
        fail_msg("said \"%s\", wanted \"%s\"", err, why);
    assert_null(strchr(err, '\n'));
}

static void test_hand_made(void **state)
{
    (void)state;
    buf b;
    size_t data = hand_made(&b, 3, 1, GGUF_U32, GGML_F32, 1, 16, 0);
    gguf_file f;
    char err[512];
    assert_int_equal(gguf_parse(b.b, b.n, &f, err, sizeof err), 0);
    assert_int_equal(f.tensors[0].data - b.b, data);
    assert_int_equal(f.tensors[0].bytes, 64);
    uint64_t v;
    assert_int_equal(gguf_get_uint(&f, "k.v", &v, err, sizeof err), 0);
    assert_int_equal(v, 7);
    gguf_close(&f);

    hand_made(&b, 4, 1, GGUF_U32, GGML_F32, 1, 16, 0);
    refuse(&b, "version 4");
    hand_made(&b, 3, 1ull << 60, GGUF_U32, GGML_F32, 1, 16, 0);
    refuse(&b, "cannot fit");
    hand_made(&b, 3, 1, 13, GGML_F32, 1, 16, 0);
    refuse(&b, "k.v: bad or truncated value");
    memcpy(memmem(b.b, b.n, "k.v", 3), "k\nv", 3);   /* the file's text, quoted on one line */
    refuse(&b, "k?v: bad or truncated value");
    hand_made(&b, 3, 1, GGUF_U32, 2 /* Q4_0 */, 1, 16, 0);
    refuse(&b, "ggml type 2 is not supported");
    hand_made(&b, 3, 1, GGUF_U32, GGML_F32, 5, 16, 0);
    refuse(&b, "5 dimensions");
    hand_made(&b, 3, 1, GGUF_U32, GGML_F32, 1, 17, 0);
    refuse(&b, "past the end of the file");
    hand_made(&b, 3, 1, GGUF_U32, GGML_F32, 1, 8, 4);
    refuse(&b, "not aligned");
    hand_made(&b, 3, 1, GGUF_U32, GGML_Q8_0, 1, 16, 0);
    refuse(&b, "Q8_0 rows of 16");
    hand_made(&b, 3, 1, GGUF_U32, GGML_F32, 1, 0, 0);
    refuse(&b, "bad shape");
    b.b[0] = 'X';
    refuse(&b, "no GGUF magic");
}

/* A shape whose element count wraps 64 bits: 2^32 x 2^32 multiplied to 0
 * and the tensor parsed as 0 bytes, every dimension within the limit. */
static void test_shape_product_wraps(void **state)
{
    (void)state;
    buf b = {.n = 0};
    put(&b, "GGUF", 4);
    put32(&b, 3);
    put64(&b, 1);   /* tensors */
    put64(&b, 0);   /* metadata */
    put64(&b, 1);
    put(&b, "t", 1);
    put32(&b, 2);
    put64(&b, 1ull << 32);
    put64(&b, 1ull << 32);
    put32(&b, GGML_F32);
    put64(&b, 0);
    memset(b.b + b.n, 0, 64);
    b.n += 64;
    refuse(&b, "bad shape");
}

static void test_unfinished_writer_leaves_nothing(void **state)
{
    (void)state;
    char err[512], tmp[300];
    gguf_writer *w = gguf_writer_new();
    uint64_t ne[1] = {4};
    assert_int_equal(gguf_add_tensor(w, "x", 1, ne, GGML_F32), 0);
    unlink(path);
    assert_int_equal(gguf_write_begin(w, path, err, sizeof err), 0);
    assert_int_not_equal(gguf_write_commit(w, err, sizeof err), 0);
    assert_non_null(strstr(err, "0 of 1 tensors"));
    gguf_writer_free(w);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_every_prefix_refused),
        cmocka_unit_test(test_hand_made),
        cmocka_unit_test(test_shape_product_wraps),
        cmocka_unit_test(test_unfinished_writer_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
