/* torchzip: an archive laid out as torch.save lays it out (written here with
 * libzip, its pickle assembled by hand) reads back as the values it holds,
 * a tensor of no elements in an empty storage entry included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "io/torchzip.h"

static char dir[] = "/tmp/test_torchzip.XXXXXX";
static char path[256];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

/* OrderedDict(v=2 F32 values of storage "0", e=shape (3, 0) strides (1, 1)
 * of storage "1" of 0 values), as pickle protocol 2 writes it. */
static const char PICKLE[] =
    "\x80\x02\x63\x63\x6f\x6c\x6c\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64"
    "\x44\x69\x63\x74\x0a\x71\x00\x29\x52\x71\x01\x28\x58\x01\x00\x00\x00\x76\x71\x02\x63\x74"
    "\x6f\x72\x63\x68\x2e\x5f\x75\x74\x69\x6c\x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74"
    "\x65\x6e\x73\x6f\x72\x5f\x76\x32\x0a\x71\x03\x28\x28\x58\x07\x00\x00\x00\x73\x74\x6f\x72"
    "\x61\x67\x65\x71\x04\x63\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f\x61\x74\x53\x74\x6f\x72\x61"
    "\x67\x65\x0a\x71\x05\x58\x01\x00\x00\x00\x30\x71\x06\x58\x03\x00\x00\x00\x63\x70\x75\x71"
    "\x07\x4b\x02\x74\x71\x08\x51\x4b\x00\x4b\x02\x85\x71\x09\x4b\x01\x85\x71\x0a\x89\x68\x00"
    "\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x58\x01\x00\x00\x00\x65\x71\x0e\x68\x03\x28\x28"
    "\x68\x04\x68\x05\x58\x01\x00\x00\x00\x31\x71\x0f\x68\x07\x4b\x00\x74\x71\x10\x51\x4b\x00"
    "\x4b\x03\x4b\x00\x86\x71\x11\x4b\x01\x4b\x01\x86\x71\x12\x89\x68\x00\x29\x52\x71\x13\x74"
    "\x71\x14\x52\x71\x15\x75\x2e";

static void add_stored(zip_t *z, const char *name, const void *data, size_t n)
{
    zip_source_t *s = zip_source_buffer(z, data, n, 0);
    assert_non_null(s);
    zip_int64_t i = zip_file_add(z, name, s, ZIP_FL_ENC_UTF_8);
    assert_true(i >= 0);
    assert_int_equal(zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0), 0);
}

static void test_reads_every_tensor(void **state)
{
    (void)state;
    static const float v[2] = {1.5f, -2.0f};
    int code = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &code);
    assert_non_null(z);
    add_stored(z, "archive/data.pkl", PICKLE, sizeof PICKLE - 1);
    add_stored(z, "archive/data/0", v, sizeof v);
    add_stored(z, "archive/data/1", "", 0);
    assert_int_equal(zip_close(z), 0);

    tz_file *f;
    char err[512] = "";
    int rc = tz_open(&f, path, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    const tz_dict *d = tz_tensors(f);
    assert_int_equal(d->n, 2);
    assert_string_equal(d->tensors[0].t.name, "v");
    assert_string_equal(d->tensors[1].t.name, "e");
    float got[2] = {0, 0}, none[1] = {7};
    assert_int_equal(tz_read_f32(f, 0, got, err, sizeof err), 0);
    assert_memory_equal(got, v, sizeof v);
    rc = tz_read_f32(f, 1, none, err, sizeof err);   /* nothing to read, nothing written */
    if (rc != 0)
        fail_msg("%s", err);
    assert_true(none[0] == 7);
    tz_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_every_tensor),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
