/* torch_archive: writes a ZIP archive byte for byte as torch.save's writer
 * (PyTorchStreamWriter in caffe2/serialize/inline_container.cc, over miniz
 * initialised with MZ_ZIP_FLAG_WRITE_ZIP64) lays one out, for the tests of
 * io/torchzip.c and its fuzzer.  torch 1.13 writes exactly this (checked
 * against a file it saved); torch 2.x changes only which records it writes
 * (the caller's list), the alignment when configured, and, from 2.5 with
 * torch.serialization.config.save.compute_crc32 = False, writes every CRC
 * as 0.  Each record, in order:
 *
 *   local header   version 0, flags 0x0808 (UTF-8 name, data descriptor
 *                  follows), stored, time and date 0, CRC and sizes 0
 *   extra          a ZIP64 field (id 1) when the record's size or offset
 *                  reaches 2^32-1: the sizes and/or the header's offset;
 *                  then "FB" padding ('Z's) so the data starts on a multiple
 *                  of the alignment (64 unless the caller says otherwise)
 *   data
 *   descriptor     PK\7\10, CRC, the sizes: 32-bit, or 64-bit when the
 *                  local header had a ZIP64 field
 *
 * then a central directory entry per record (version 0, sizes and offset
 * capped at 2^32-1 with the ZIP64 field that holds them), a ZIP64 end of
 * central directory record and locator (always) and the end record.
 * A record whose data is NULL is that many zero bytes, written as a hole. */
#ifndef TESTS_TORCH_ARCHIVE_H
#define TESTS_TORCH_ARCHIVE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

typedef struct {
    const char *name;   /* under the prefix: "data.pkl", "data/0", ... */
    const void *data;   /* NULL: size zero bytes */
    uint64_t size;
} ta_record;

typedef struct {
    const char *prefix;   /* the archive's folder: the file's stem, or "archive" */
    int no_crc;           /* torch >= 2.5 with compute_crc32 = False */
    uint64_t align;       /* 0: 64 */
} ta_options;

enum { TA_MAX_RECORDS = 64 };

/* A small state_dict to write: {"v": TA_V, 2 F32 values of storage "0",
 * "h": TA_H_BF16, 3 BF16 values of storage "1"}, a plain dict as
 * transformers saves a shard; the pickle is torch.save's. */
static const char TA_PICKLE[] =
    "\x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00\x00\x76\x71\x01\x63\x74\x6f\x72\x63\x68\x2e\x5f"
    "\x75\x74\x69\x6c\x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f\x72\x5f"
    "\x76\x32\x0a\x71\x02\x28\x28\x58\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71\x03\x63"
    "\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f\x61\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\x04\x58"
    "\x01\x00\x00\x00\x30\x71\x05\x58\x03\x00\x00\x00\x63\x70\x75\x71\x06\x4b\x02\x74\x71\x07"
    "\x51\x4b\x00\x4b\x02\x85\x71\x08\x4b\x01\x85\x71\x09\x89\x63\x63\x6f\x6c\x6c\x65\x63\x74"
    "\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x0a\x29\x52\x71"
    "\x0b\x74\x71\x0c\x52\x71\x0d\x58\x01\x00\x00\x00\x68\x71\x0e\x68\x02\x28\x28\x68\x03\x63"
    "\x74\x6f\x72\x63\x68\x0a\x42\x46\x6c\x6f\x61\x74\x31\x36\x53\x74\x6f\x72\x61\x67\x65\x0a"
    "\x71\x0f\x58\x01\x00\x00\x00\x31\x71\x10\x68\x06\x4b\x03\x74\x71\x11\x51\x4b\x00\x4b\x03"
    "\x85\x71\x12\x4b\x01\x85\x71\x13\x89\x68\x0a\x29\x52\x71\x14\x74\x71\x15\x52\x71\x16\x75"
    "\x2e";

static const float TA_V[2] = {1.5f, -2.0f};
static const uint16_t TA_H_BF16[3] = {0x3f80, 0xbf00, 0x4040};   /* 1, -0.5, 3 */

/* v's low bytes (at most 8), little-endian; ta_zeros: n zero bytes. */
static void ta_put(FILE *f, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        fputc((int)(v >> (8 * i)) & 0xff, f);
}

static void ta_zeros(FILE *f, int n)
{
    for (int i = 0; i < n; i++)
        fputc(0, f);
}

static uint32_t ta_crc(const ta_record *r)
{
    uLong c = crc32(0, Z_NULL, 0);
    static const uint8_t zeros[1 << 16];
    for (uint64_t done = 0; done < r->size;) {
        uint64_t n = r->size - done < sizeof zeros ? r->size - done : sizeof zeros;
        c = crc32(c, r->data ? (const uint8_t *)r->data + done : zeros, (uInt)n);
        done += n;
    }
    return (uint32_t)c;
}

/* The ZIP64 extra field for size and offset, into x; its length (0: none). */
static size_t ta_zip64(uint8_t *x, uint64_t size, uint64_t ofs)
{
    int big_size = size >= 0xffffffffu, big_ofs = ofs >= 0xffffffffu;
    if (!big_size && !big_ofs)
        return 0;
    size_t n = 4;
    uint64_t v[3];
    int k = 0;
    if (big_size)
        v[k++] = size, v[k++] = size;
    if (big_ofs)
        v[k++] = ofs;
    x[0] = 1, x[1] = 0, x[2] = (uint8_t)(8 * k), x[3] = 0;
    for (int i = 0; i < k; i++)
        for (int b = 0; b < 8; b++)
            x[n++] = (uint8_t)(v[i] >> (8 * b));
    return n;
}

/* Writes records r[0..n) to f; 0, or -1 on a write error. */
static int ta_write(FILE *f, const ta_options *o, const ta_record *r, int n)
{
    uint64_t ofs[TA_MAX_RECORDS], align = o->align ? o->align : 64;
    uint32_t crc[TA_MAX_RECORDS];
    char name[TA_MAX_RECORDS][256];
    if (n > TA_MAX_RECORDS)
        return -1;
    for (int i = 0; i < n; i++) {
        snprintf(name[i], sizeof name[i], "%s/%s", o->prefix, r[i].name);
        size_t nlen = strlen(name[i]);
        ofs[i] = (uint64_t)ftello(f);
        crc[i] = o->no_crc ? 0 : ta_crc(&r[i]);
        uint8_t z64[28];
        size_t zlen = ta_zip64(z64, r[i].size, ofs[i]);
        uint64_t start = ofs[i] + 30 + nlen + zlen + 4;
        size_t pad = (size_t)((align - start % align) % align);
        ta_put(f, 0x04034b50, 4);
        ta_put(f, 0, 2);
        ta_put(f, 0x0808, 2);
        ta_zeros(f, 2 + 2 + 2 + 4 + 4 + 4);   /* method, time, date, CRC, sizes */
        ta_put(f, nlen, 2);
        ta_put(f, zlen + 4 + pad, 2);
        fwrite(name[i], 1, nlen, f);
        fwrite(z64, 1, zlen, f);
        fputs("FB", f);
        ta_put(f, pad, 2);
        for (size_t k = 0; k < pad; k++)
            fputc('Z', f);
        if (r[i].data)
            fwrite(r[i].data, 1, r[i].size, f);
        else if (r[i].size && fseeko(f, (off_t)r[i].size, SEEK_CUR) != 0)
            return -1;
        ta_put(f, 0x08074b50, 4);
        ta_put(f, crc[i], 4);
        ta_put(f, r[i].size, zlen ? 8 : 4);
        ta_put(f, r[i].size, zlen ? 8 : 4);
    }
    uint64_t cd = (uint64_t)ftello(f);
    for (int i = 0; i < n; i++) {
        size_t nlen = strlen(name[i]);
        uint8_t z64[28];
        size_t zlen = ta_zip64(z64, r[i].size, ofs[i]);
        uint64_t size32 = r[i].size < 0xffffffffu ? r[i].size : 0xffffffffu;
        ta_put(f, 0x02014b50, 4);
        ta_zeros(f, 2 + 2);   /* version made by, needed */
        ta_put(f, 0x0808, 2);
        ta_zeros(f, 2 + 2 + 2);   /* method, time, date */
        ta_put(f, crc[i], 4);
        ta_put(f, size32, 4);
        ta_put(f, size32, 4);
        ta_put(f, nlen, 2);
        ta_put(f, zlen, 2);
        ta_zeros(f, 2 + 2 + 2 + 4);   /* comment, disk, internal and external attributes */
        ta_put(f, ofs[i] < 0xffffffffu ? ofs[i] : 0xffffffffu, 4);
        fwrite(name[i], 1, nlen, f);
        fwrite(z64, 1, zlen, f);
    }
    uint64_t end64 = (uint64_t)ftello(f), cdsize = end64 - cd;
    ta_put(f, 0x06064b50, 4);
    ta_put(f, 44, 8);
    ta_put(f, 0x031e, 2);
    ta_put(f, 0x2d, 2);
    ta_zeros(f, 4 + 4);
    ta_put(f, (uint64_t)n, 8);
    ta_put(f, (uint64_t)n, 8);
    ta_put(f, cdsize, 8);
    ta_put(f, cd, 8);
    ta_put(f, 0x07064b50, 4);
    ta_put(f, 0, 4);
    ta_put(f, end64, 8);
    ta_put(f, 1, 4);
    ta_put(f, 0x06054b50, 4);
    ta_zeros(f, 2 + 2);
    ta_put(f, (uint64_t)n, 2);
    ta_put(f, (uint64_t)n, 2);
    ta_put(f, cdsize < 0xffffffffu ? cdsize : 0xffffffffu, 4);
    ta_put(f, cd < 0xffffffffu ? cd : 0xffffffffu, 4);
    ta_put(f, 0, 2);
    return ferror(f) ? -1 : 0;
}

#endif
