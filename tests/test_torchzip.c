/* torchzip: an archive laid out as torch.save lays it out reads back as the
 * values it holds: written with libzip (a tensor of no elements in an empty
 * storage entry included), and byte for byte as torch's own writer writes
 * it (tests/torch_archive.h) with the records of each torch version, CRCs
 * off, and storages past 4 GiB (ZIP64).
 *
 * What torch.save of a state_dict writes, from torch/serialization.py _save
 * and caffe2/serialize/inline_container.cc (read at a 2.2-era and a
 * 2.5-era commit; 1.13, installed here, checked by saving with it):
 *   1.6 on      PREFIX/data.pkl, PREFIX/data/KEY per storage (KEY its
 *               number), PREFIX/version "3\n" last; PREFIX is the file
 *               name's stem ("pytorch_model"), or "archive" when saved to a
 *               buffer (io.BytesIO); miniz in
 *               ZIP64 mode: data descriptors, a ZIP64 end record always, a
 *               ZIP64 field in the headers of a record at or past 4 GiB
 *   2.2-era     + PREFIX/byteorder "little" after data.pkl, and
 *               PREFIX/.data/serialization_id (40 digits) last
 *   2.5-era     + PREFIX/.format_version "1" and PREFIX/.storage_alignment
 *               "64" after data.pkl; storages in numeric order;
 *               torch.serialization.config.save.compute_crc32 = False
 *               writes every CRC as 0 (torch's reader, miniz built
 *               without its CRC checks, never looks)
 * The pickle is the same throughout (protocol 2 unless asked; storages as
 * torch.FloatStorage etc., though 2.x holds an UntypedStorage), and
 * transformers' save_pretrained(safe_serialization=False) saves each shard
 * as a plain dict, as the pickles here are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "io/fsutil.h"
#include "io/le.h"
#include "io/torchzip.h"
#include "tests/torch_archive.h"

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

static void write_archive(const ta_options *o, const ta_record *r, int n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(ta_write(f, o, r, n), 0);
    assert_int_equal(fclose(f), 0);
}

static void expect_shard(void)
{
    tz_file *f;
    char err[512] = "";
    if (tz_open(&f, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    const tz_dict *d = tz_tensors(f);
    assert_int_equal(d->n, 2);
    float v[2], h[3];
    assert_int_equal(tz_read_f32(f, 0, v, err, sizeof err), 0);
    assert_int_equal(tz_read_f32(f, 1, h, err, sizeof err), 0);
    assert_memory_equal(v, TA_V, sizeof TA_V);
    assert_true(h[0] == 1.0f && h[1] == -0.5f && h[2] == 3.0f);
    tz_close(f);
}

#define PKL {"data.pkl", TA_PICKLE, sizeof TA_PICKLE - 1}
#define STORAGES {"data/0", TA_V, sizeof TA_V}, {"data/1", TA_H_BF16, sizeof TA_H_BF16}
#define VERSION {"version", "3\n", 2}
#define SERIAL_ID {".data/serialization_id", "0123456789012345678900000000001234567890", 40}

static void test_torch_versions(void **state)
{
    (void)state;
    const ta_record v113[] = {PKL, STORAGES, VERSION};
    const ta_record v22[] = {PKL, {"byteorder", "little", 6}, STORAGES, VERSION, SERIAL_ID};
    const ta_record v25[] = {PKL, {".format_version", "1", 1}, {".storage_alignment", "64", 2},
                             {"byteorder", "little", 6}, STORAGES, VERSION, SERIAL_ID};
    const struct {
        const ta_record *r;
        int n;
        ta_options o;
    } cases[] = {
        {v113, 4, {.prefix = "pytorch_model"}},
        {v22, 6, {.prefix = "archive"}},
        {v25, 8, {.prefix = "pytorch_model-00001-of-00002"}},
        {v25, 8, {.prefix = "archive", .no_crc = 1}},
        {v25, 8, {.prefix = "archive", .align = 4096}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_archive(&cases[i].o, cases[i].r, cases[i].n);
        expect_shard();
    }
}

/* {"big": the last 2 of 2^30 + 1 F32 values of storage "0", "v": 2 F32
 * values of storage "1"}: storage 0 (4 GiB + 4 bytes) puts storage 1's
 * record past 4 GiB, both with ZIP64 fields. */
static const char BIG_PICKLE[] =
    "\x80\x02\x7d\x71\x00\x28\x58\x03\x00\x00\x00\x62\x69\x67\x71\x01\x63\x74\x6f\x72\x63\x68"
    "\x2e\x5f\x75\x74\x69\x6c\x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f"
    "\x72\x5f\x76\x32\x0a\x71\x02\x28\x28\x58\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71"
    "\x03\x63\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f\x61\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71"
    "\x04\x58\x01\x00\x00\x00\x30\x71\x05\x58\x03\x00\x00\x00\x63\x70\x75\x71\x06\x4a\x01\x00"
    "\x00\x40\x74\x71\x07\x51\x4a\xff\xff\xff\x3f\x4b\x02\x85\x71\x08\x4b\x01\x85\x71\x09\x89"
    "\x63\x63\x6f\x6c\x6c\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69"
    "\x63\x74\x0a\x71\x0a\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x58\x01\x00\x00\x00\x76\x71"
    "\x0e\x68\x02\x28\x28\x68\x03\x68\x04\x58\x01\x00\x00\x00\x31\x71\x0f\x68\x06\x4b\x02\x74"
    "\x71\x10\x51\x4b\x00\x4b\x02\x85\x71\x11\x68\x09\x89\x68\x0a\x29\x52\x71\x12\x74\x71\x13"
    "\x52\x71\x14\x75\x2e";

static void test_zip64(void **state)
{
    (void)state;
    /* CRCs off (as torch 2.5 can): the CRC of 4 GiB is not worth the time */
    const ta_record r[] = {{"data.pkl", BIG_PICKLE, sizeof BIG_PICKLE - 1},
                           {"data/0", NULL, ((1ull << 30) + 1) * 4}, {"data/1", TA_V, sizeof TA_V},
                           VERSION};
    const ta_options o = {.prefix = "pytorch_model", .no_crc = 1};
    write_archive(&o, r, 4);   /* sparse: storage 0 is a hole */
    tz_file *f;
    char err[512] = "";
    if (tz_open(&f, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    float big[2] = {7, 7}, v[2];
    if (tz_read_f32(f, 0, big, err, sizeof err) != 0 || tz_read_f32(f, 1, v, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(big[0] == 0 && big[1] == 0);
    assert_memory_equal(v, TA_V, sizeof TA_V);
    tz_close(f);
}

/* A storage stored with another size in the archive than its own (the
 * central directory's compressed size 0 for 8): refused before libzip
 * reads or seeks within it, which crashed libzip 1.7. */
static void test_stored_size(void **state)
{
    (void)state;
    const ta_record r[] = {PKL, STORAGES, VERSION};
    const ta_options o = {.prefix = "archive"};
    write_archive(&o, r, 4);
    uint8_t *p;
    size_t len;
    char err[512] = "";
    assert_int_equal(fs_read_file(path, &p, &len, err, sizeof err), 0);
    uint8_t *cd = memmem(p, len, "PK\1\2", 4), *entry = NULL;
    for (; cd && (size_t)(cd - p) + 46 <= len;
         cd += 46 + le_get_u16(cd + 28) + le_get_u16(cd + 30) + le_get_u16(cd + 32))
        if (le_get_u16(cd + 28) == 14 && memcmp(cd + 46, "archive/data/0", 14) == 0)
            entry = cd;
    assert_non_null(entry);
    memset(entry + 20, 0, 4);
    assert_int_equal(fs_write_file_atomic(path, p, len, err, sizeof err), 0);
    free(p);
    tz_file *f;
    assert_int_equal(tz_open(&f, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "archive/data/0: stored, but 0 bytes in the archive for 8"));
}

/* One byte of storage "0" (v) changed after the archive was written: v's read
 * is refused on its CRC, h's still reads; with torch 2.5's CRCs of 0 there is
 * nothing to check against, and the changed value reads. */
static void test_damaged_storage(void **state)
{
    (void)state;
    const ta_record r[] = {PKL, STORAGES, VERSION};
    for (int no_crc = 0; no_crc < 2; no_crc++) {
        const ta_options o = {.prefix = "archive", .no_crc = no_crc};
        write_archive(&o, r, 4);
        uint8_t *p;
        size_t len;
        char err[512] = "";
        assert_int_equal(fs_read_file(path, &p, &len, err, sizeof err), 0);
        uint8_t *v = memmem(p, len, TA_V, sizeof TA_V);
        assert_non_null(v);
        v[0] ^= 1;   /* the low bit of 1.5f's mantissa */
        assert_int_equal(fs_write_file_atomic(path, p, len, err, sizeof err), 0);
        free(p);
        tz_file *f;
        if (tz_open(&f, path, err, sizeof err) != 0)
            fail_msg("%s", err);
        float got[2] = {0, 0}, h[3];
        int rc = tz_read_f32(f, 0, got, err, sizeof err);
        if (no_crc) {
            assert_int_equal(rc, 0);
            assert_true(got[0] != TA_V[0] && got[1] == TA_V[1]);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "tensor v: "));
            assert_non_null(strstr(err, "not the ones the archive's CRC was made of"));
        }
        if (tz_read_f32(f, 1, h, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_true(h[0] == 1.0f && h[1] == -0.5f && h[2] == 3.0f);
        tz_close(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_every_tensor),
        cmocka_unit_test(test_torch_versions),
        cmocka_unit_test(test_zip64),
        cmocka_unit_test(test_stored_size),
        cmocka_unit_test(test_damaged_storage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
