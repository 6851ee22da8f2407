/* safetensors: a file laid out by hand byte for byte reads back as the values
 * it holds; the writer's files read back (F32 exactly, F16 and BF16 as their
 * round to nearest even); every malformed header is refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "kernels/convert.h"
#include "tests/test_util.h"

static char dir[] = "/tmp/test_safetensors.XXXXXX";
static char path[256];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

/* Writes 8-byte length, header, then data bytes. */
static void write_raw(const char *header, uint64_t hlen, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)(hlen >> (8 * i));
    assert_int_equal(fwrite(len8, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, strlen(header), f), strlen(header));
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_hand_made_file(void **state)
{
    (void)state;
    /* a: F32 [2] = {1.5, -2}; b: BF16 [1,2] = {1, -0.5}; c: F16 [] = 2 */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[12,14]}}";
    uint8_t data[14] = {0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0,   /* 1.5f, -2.0f */
                        0x80, 0x3f, 0x00, 0xbf,                           /* bf16 1, -0.5 */
                        0x00, 0x40};                                      /* fp16 2 */
    write_raw(h, strlen(h), data, sizeof data);
    st_file f;
    char err[512];
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(f.h.n, 3);
    const st_tensor *a = st_find(&f, "a"), *b = st_find(&f, "b"), *c = st_find(&f, "c");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_null(st_find(&f, "__metadata__"));
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->shape[1], 2);
    assert_int_equal(c->ndim, 0);
    assert_int_equal(st_numel(c), 1);
    float v[2];
    assert_int_equal(st_read_f32(&f, a, v, err, sizeof err), 0);
    assert_true(v[0] == 1.5f && v[1] == -2.0f);
    assert_int_equal(st_read_f32(&f, b, v, err, sizeof err), 0);
    assert_true(v[0] == 1.0f && v[1] == -0.5f);
    assert_int_equal(st_read_f32(&f, c, v, err, sizeof err), 0);
    assert_true(v[0] == 2.0f);
    st_close(&f);
}

static void roundtrip(st_dtype dt)
{
    enum { R = 37, C = 53 };
    float *x = malloc(R * C * sizeof *x), *y = malloc(R * C * sizeof *y);
    float *want = malloc(R * C * sizeof *want);
    uint16_t *half = malloc(R * C * sizeof *half);
    test_fill(x, R * C, 7 + dt, 3.0f);
    x[0] = 1e-8f;   /* subnormal in fp16 */
    x[1] = -0.0f;
    memcpy(want, x, R * C * sizeof *x);
    if (dt == ST_F16) {
        f32_to_f16(half, x, R * C);
        f16_to_f32(want, half, R * C);
    } else if (dt == ST_BF16) {
        f32_to_bf16(half, x, R * C);
        bf16_to_f32(want, half, R * C);
    }
    char err[512];
    st_writer *w = st_writer_new();
    int64_t s2[2] = {R, C}, s1[1] = {C};
    assert_int_equal(st_writer_add(w, "w", dt, 2, s2, err, sizeof err), 0);
    assert_int_equal(st_writer_add(w, "bias", dt, 1, s1, err, sizeof err), 0);
    const char *k[] = {"format"}, *v[] = {"pt"};
    unlink(path);
    assert_int_equal(st_writer_begin(w, path, k, v, 1, err, sizeof err), 0);
    assert_int_equal(access(path, F_OK), -1);   /* nothing under the final name yet */
    assert_int_equal(st_writer_put(w, x, err, sizeof err), 0);
    assert_int_equal(st_writer_put(w, x + R * C - C, err, sizeof err), 0);
    assert_int_not_equal(st_writer_put(w, x, err, sizeof err), 0);   /* one too many */
    assert_int_equal(st_writer_commit(w, err, sizeof err), 0);
    st_writer_free(w);

    st_file f;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(f.data_start % 8, 0);
    const st_tensor *t = st_find(&f, "w");
    assert_non_null(t);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->shape[0], R);
    assert_int_equal(t->shape[1], C);
    assert_int_equal(st_read_f32(&f, t, y, err, sizeof err), 0);
    assert_memory_equal(y, want, R * C * sizeof *y);
    assert_int_equal(st_read_f32(&f, st_find(&f, "bias"), y, err, sizeof err), 0);
    assert_memory_equal(y, want + R * C - C, C * sizeof *y);
    st_close(&f);
    free(x);
    free(y);
    free(want);
    free(half);
}

static void test_roundtrip_f32(void **state) { (void)state; roundtrip(ST_F32); }
static void test_roundtrip_f16(void **state) { (void)state; roundtrip(ST_F16); }
static void test_roundtrip_bf16(void **state) { (void)state; roundtrip(ST_BF16); }

static void test_unfinished_writer_leaves_nothing(void **state)
{
    (void)state;
    char err[512];
    st_writer *w = st_writer_new();
    int64_t s[1] = {4};
    assert_int_equal(st_writer_add(w, "a", ST_F32, 1, s, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(st_writer_begin(w, path, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_not_equal(st_writer_commit(w, err, sizeof err), 0);
    assert_non_null(strstr(err, "0 of 1"));
    st_writer_free(w);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
}

/* Tensors of the dtypes that are not read (the U8 or BOOL causal mask of older
 * GPT-2 files, an F64 scalar) are parsed with their sizes, so the file opens
 * and its float tensors read; reading one of them is refused with a reason. */
static void test_other_dtypes_parse(void **state)
{
    (void)state;
    const char *h = "{\"mask\":{\"dtype\":\"U8\",\"shape\":[1,1,2,2],\"data_offsets\":[0,4]},"
                    "\"flag\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[4,7]},"
                    "\"x\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[7,15]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[15,19]}}";
    uint8_t data[19] = {1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x00, 0x00, 0xc0, 0x3f};
    write_raw(h, strlen(h), data, sizeof data);
    st_file f;
    char err[512];
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    float v[4];
    assert_int_equal(st_read_f32(&f, st_find(&f, "w"), v, err, sizeof err), 0);
    assert_true(v[0] == 1.5f);
    assert_int_not_equal(st_read_f32(&f, st_find(&f, "mask"), v, err, sizeof err), 0);
    assert_string_equal(err, "tensor mask: dtype U8 is not supported (F32, F16, BF16)");
    assert_int_not_equal(st_read_f32(&f, st_find(&f, "x"), v, err, sizeof err), 0);
    assert_non_null(strstr(err, "dtype F64"));
    st_close(&f);
}

/* header -> the reason st_open must give (a substring) */
static void refuse(const char *header, uint64_t hlen, size_t ndata, const char *why)
{
    static const uint8_t zeros[64];
    write_raw(header, hlen, zeros, ndata);
    st_file f;
    char err[512] = "";
    if (st_open(&f, path, err, sizeof err) == 0) {
        st_close(&f);
        fail_msg("accepted: %s", header);
    }
    if (!strstr(err, why))
        fail_msg("%s: said \"%s\", wanted \"%s\"", header, err, why);
    assert_null(strchr(err, '\n'));
}

static void test_bad_headers(void **state)
{
    (void)state;
#define T(dt, sh, b, e) "{\"x\":{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":[" #b "," #e "]}"
    const char *ok = T("F32", "[2]", 0, 8) "}";
    refuse(ok, strlen(ok) + 100, 8, "past the end of the file");          /* length past EOF */
    refuse(ok, 1ull << 62, 8, "past the end of the file");
    refuse(ok, strlen(ok), 4, "past the file's 4 data bytes");            /* truncated data */
    refuse(ok, strlen(ok), 12, "4 bytes after the last");                 /* trailing bytes */
    refuse("[1,2]", 5, 0, "not a JSON object");
    refuse("{\"x\":", 5, 0, "not a JSON object");                         /* truncated header */
    refuse(T("Q4", "[1]", 0, 8) "}", strlen(T("Q4", "[1]", 0, 8) "}"), 8, "dtype Q4 is not supported");
    refuse(T("F32", "[3]", 0, 8) "}", strlen(T("F32", "[3]", 0, 8) "}"), 8,
           "8 bytes of data for 3 F32");                                  /* dtype x shape */
    refuse(T("F32", "[-2]", 0, 8) "}", strlen(T("F32", "[-2]", 0, 8) "}"), 8, "bad shape");
    refuse(T("F32", "[2.5]", 0, 8) "}", strlen(T("F32", "[2.5]", 0, 8) "}"), 8, "bad shape");
    const char *wraps = T("F32", "[1099511627776,1099511627776]", 0, 0) "}";   /* 2^80 values */
    refuse(wraps, strlen(wraps), 0, "shape too large");
    refuse(T("F32", "[2]", 8, 0) "}", strlen(T("F32", "[2]", 8, 0) "}"), 8, "bad data_offsets");
    const char *overlap = T("F32", "[2]", 0, 8) ",\"y\":{\"dtype\":\"F32\",\"shape\":[1],"
                                                 "\"data_offsets\":[4,8]}}";
    refuse(overlap, strlen(overlap), 8, "overlaps");
    const char *gap = T("F32", "[1]", 4, 8) "}";
    refuse(gap, strlen(gap), 8, "a gap of 4 bytes");
    const char *dup = T("F32", "[1]", 0, 4) ",\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
                                             "\"data_offsets\":[4,8]}}";
    refuse(dup, strlen(dup), 8, "appears twice");
    const char *meta = "{\"__metadata__\":{\"a\":1}}";
    refuse(meta, strlen(meta), 0, "not a string");
    refuse("{\"__metadata__\":[1]}", 20, 0, "__metadata__ is not an object");
    refuse("{\"x\":{\"dtype\":\"F32\"}}", 21, 0, "needs dtype, shape and data_offsets");
    refuse("", 0, 0, "not a JSON object");
    const char *nl = "{\"a\\nb\\u001b\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,8]}}";
    refuse(nl, strlen(nl), 8, "tensor a?b?: dtype Q4");                   /* one printable line */
    refuse(T("U8", "[3]", 0, 4) "}", strlen(T("U8", "[3]", 0, 4) "}"), 4,
           "4 bytes of data for 3 U8");                                   /* every dtype's size */
#undef T
    /* a header of 100,000,001 bytes: past the format's limit of 100 MB (not MiB) */
    write_raw("", 100000001, NULL, 0);
    assert_int_equal(truncate(path, 8 + 100000001), 0);   /* sparse */
    st_file big;
    char why[512];
    assert_int_not_equal(st_open(&big, path, why, sizeof why), 0);
    assert_non_null(strstr(why, "header length 100000001 is over the format's limit of 100000000"));
    FILE *f = fopen(path, "wb");   /* shorter than the length field */
    fputs("abc", f);
    fclose(f);
    st_file sf;
    char err[512];
    assert_int_not_equal(st_open(&sf, path, err, sizeof err), 0);
    assert_non_null(strstr(err, "too short"));
}

/* Among many entries (names sorted to find a repeat: a hostile header may
 * hold millions), every one is kept and one name given twice is found. */
static void test_many_tensors_one_twice(void **state)
{
    (void)state;
    enum { N = 20000 };
    size_t cap = (size_t)N * 64 + 16, len = 0;
    char *json = malloc(cap);
    assert_non_null(json);
    json[len++] = '{';
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(json + len, cap - len,
                                "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                                i ? "," : "", i);
    json[len++] = '}';
    st_header h;
    char err[512];
    assert_int_equal(st_parse_header(json, len, 0, &h, err, sizeof err), 0);
    assert_int_equal(h.n, N);
    st_header_free(&h);
    snprintf(json + len - 1, cap - len + 1, ",\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],"
             "\"data_offsets\":[0,0]}}", N / 2);   /* one name twice */
    assert_int_not_equal(st_parse_header(json, strlen(json), 0, &h, err, sizeof err), 0);
    assert_non_null(strstr(err, "tensor t10000 appears twice"));
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_made_file),
        cmocka_unit_test(test_roundtrip_f32),
        cmocka_unit_test(test_roundtrip_f16),
        cmocka_unit_test(test_roundtrip_bf16),
        cmocka_unit_test(test_unfinished_writer_leaves_nothing),
        cmocka_unit_test(test_other_dtypes_parse),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_many_tensors_one_twice),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
