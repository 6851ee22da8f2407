/* h5_attr_read_str on string attributes as other writers make them: h5py
 * writes str as variable-length UTF-8 and numpy bytes as fixed-length
 * NULLPAD (no terminator when full); Fortran-style writers pad with spaces.
 * Each reads back whole; what cannot fit or is not one string is refused
 * without writing past the buffer (run under SAN=1).  And h5_read_checked on
 * what h5_write_checked wrote, and on each way a dataset can be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5attr.h"

static char path[64];
static hid_t file = -1;

static int open_file(void **state)
{
    (void)state;
    h5_quiet();
    strcpy(path, "/tmp/test_h5attr.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    return file < 0 ? -1 : 0;
}

static int close_file(void **state)
{
    (void)state;
    H5Fclose(file);
    unlink(path);
    return 0;
}

/* A string attribute of type (size, pad, cset) over space, holding data. */
static void write_str(const char *name, size_t size, H5T_str_t pad, H5T_cset_t cset, hid_t space,
                      const void *data)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    assert_true(H5Tset_size(t, size) >= 0 && H5Tset_strpad(t, pad) >= 0 && H5Tset_cset(t, cset) >= 0);
    hid_t a = H5Acreate2(file, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, t, data) >= 0);
    H5Aclose(a);
    H5Tclose(t);
}

static void expect_read(const char *name, const char *want)
{
    char buf[32];
    memset(buf, 'x', sizeof buf);
    assert_int_equal(h5_attr_read_str(file, name, buf, sizeof buf), 0);
    assert_string_equal(buf, want);
}

static void test_strings_of_every_writer(void **state)
{
    (void)state;
    hid_t scalar = H5Screate(H5S_SCALAR);
    assert_int_equal(h5_attr_str(file, "ours", "byte"), 0);   /* NULLTERM, 5 bytes */
    expect_read("ours", "byte");
    write_str("nullpad", 4, H5T_STR_NULLPAD, H5T_CSET_ASCII, scalar, "byte");   /* numpy b"byte" */
    expect_read("nullpad", "byte");
    write_str("nullpad_long", 8, H5T_STR_NULLPAD, H5T_CSET_ASCII, scalar, "bpe\0\0\0\0\0");
    expect_read("nullpad_long", "bpe");
    write_str("spacepad", 6, H5T_STR_SPACEPAD, H5T_CSET_ASCII, scalar, "byte  ");
    expect_read("spacepad", "byte");
    write_str("utf8_fixed", 5, H5T_STR_NULLPAD, H5T_CSET_UTF8, scalar, "gpt2\0");
    expect_read("utf8_fixed", "gpt2");
    const char *vlen = "byte";   /* h5py: attrs["type"] = "byte" */
    write_str("vlen_utf8", H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_UTF8, scalar, &vlen);
    expect_read("vlen_utf8", "byte");
    write_str("vlen_ascii", H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_ASCII, scalar, &vlen);
    expect_read("vlen_ascii", "byte");
    hsize_t one = 1;   /* a one-element array: h5py's attrs["t"] = ["bpe"] */
    hid_t single = H5Screate_simple(1, &one, NULL);
    const char *bpe = "bpe";
    write_str("vlen_array1", H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_UTF8, single, &bpe);
    expect_read("vlen_array1", "bpe");
    H5Sclose(single);
    H5Sclose(scalar);
}

static void test_what_does_not_fit_is_refused(void **state)
{
    (void)state;
    hid_t scalar = H5Screate(H5S_SCALAR);
    char small[5];   /* "byte" and its NUL */
    write_str("full", 5, H5T_STR_NULLPAD, H5T_CSET_ASCII, scalar, "bytes");
    assert_int_equal(h5_attr_read_str(file, "full", small, sizeof small), -1);
    write_str("fits", 4, H5T_STR_NULLPAD, H5T_CSET_ASCII, scalar, "byte");
    assert_int_equal(h5_attr_read_str(file, "fits", small, sizeof small), 0);
    assert_string_equal(small, "byte");
    const char *longer = "a string longer than the buffer";
    write_str("vlen_long", H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_UTF8, scalar, &longer);
    assert_int_equal(h5_attr_read_str(file, "vlen_long", small, sizeof small), -1);

    hsize_t two = 2;   /* two strings: one buffer cannot take them */
    hid_t pair = H5Screate_simple(1, &two, NULL);
    write_str("two", 4, H5T_STR_NULLPAD, H5T_CSET_ASCII, pair, "bytebpe_");
    char buf[32];
    assert_int_equal(h5_attr_read_str(file, "two", buf, sizeof buf), -1);
    H5Sclose(pair);

    assert_int_equal(h5_attr_i64(file, "number", 7), 0);
    assert_int_equal(h5_attr_read_str(file, "number", buf, sizeof buf), -1);
    assert_int_equal(h5_attr_read_str(file, "missing", buf, sizeof buf), -1);
    H5Sclose(scalar);
}

static void expect_unread(hid_t g, const char *name, hid_t mtype, int rows, int cols,
                          const char *want)
{
    char err[256] = "";
    float x[16];
    assert_int_equal(h5_read_checked(g, "/g", name, mtype, x, rows, cols, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("\"%s\" does not say \"%s\"", err, want);
}

static void test_checked_datasets(void **state)
{
    (void)state;
    float x[12], back[12];
    int8_t q[8] = {1, -2, 3, -4, 5, -6, 7, -127}, qback[8];
    for (int i = 0; i < 12; i++)
        x[i] = 0.5f * (float)i - 1.0f;
    hid_t g = H5Gcreate2(file, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    assert_int_equal(h5_write_checked(g, "m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x, 3, 4,
                                      sizeof x), 0);
    assert_int_equal(h5_write_checked(g, "v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x, 12, 0,
                                      sizeof x), 0);
    assert_int_equal(h5_write_checked(g, "q", H5T_STD_I8LE, H5T_NATIVE_INT8, q, 2, 4,
                                      sizeof q), 0);
    char err[256];
    assert_int_equal(h5_read_checked(g, "/g", "m", H5T_NATIVE_FLOAT, back, 3, 4, err,
                                     sizeof err), 0);
    assert_memory_equal(back, x, sizeof x);
    assert_int_equal(h5_read_checked(g, "/g", "v", H5T_NATIVE_FLOAT, back, 12, 0, err,
                                     sizeof err), 0);
    assert_int_equal(h5_read_checked(g, "/g", "q", H5T_NATIVE_INT8, qback, 2, 4, err,
                                     sizeof err), 0);
    assert_memory_equal(qback, q, sizeof q);
    assert_int_equal(h5_read_checked(g, "/g", "m", H5T_NATIVE_FLOAT, NULL, 3, 4, err,
                                     sizeof err), 0);   /* the shape alone */

    expect_unread(g, "absent", H5T_NATIVE_FLOAT, 3, 4, "/g/absent is missing");
    expect_unread(g, "m", H5T_NATIVE_FLOAT, 4, 3, "/g/m is not a float tensor of shape [4,3]");
    expect_unread(g, "m", H5T_NATIVE_FLOAT, 12, 0, "not a float tensor of shape [12]");
    expect_unread(g, "q", H5T_NATIVE_FLOAT, 2, 4, "not a float tensor");
    expect_unread(g, "m", H5T_NATIVE_INT8, 3, 4, "/g/m is not an int8 tensor of shape [3,4]");
    expect_unread(g, "q", H5T_NATIVE_UINT8, 2, 4, "not a uint8 tensor");   /* the sign counts */

    uint64_t wrong = 1;   /* a checksum that is not the data's, then none */
    hid_t d = H5Dopen2(g, "m", H5P_DEFAULT);
    hid_t a = H5Aopen(d, "checksum", H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_UINT64, &wrong) >= 0);
    H5Aclose(a);
    expect_unread(g, "m", H5T_NATIVE_FLOAT, 3, 4, "/g/m is damaged (checksum mismatch)");
    assert_true(H5Adelete(d, "checksum") >= 0);
    H5Dclose(d);
    expect_unread(g, "m", H5T_NATIVE_FLOAT, 3, 4, "/g/m is damaged (no checksum attribute)");
    H5Gclose(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_of_every_writer),
        cmocka_unit_test(test_what_does_not_fit_is_refused),
        cmocka_unit_test(test_checked_datasets),
    };
    return cmocka_run_group_tests(tests, open_file, close_file);
}
