/* fuzz_torchzip: the ZIP layer of a pytorch_model.bin as build/import reads it
 * (io/torchzip.c tz_open and tz_read_f32, over libzip).
 *
 * The bytes are not an archive: random bytes would rarely get past libzip's
 * end-of-central-directory search.  They are edits to a valid archive that
 * tests/torch_archive.h writes as torch.save does (TA_PICKLE's two tensors
 * and torch 2.x's records).  Byte 0 picks the base: bit 0 with CRCs or with
 * CRCs 0 (compute_crc32 = False), bit 1 an alignment of 64 or 4096.  Then
 * each 4-byte edit (op, anchor, delta, value) acts at the offset of one of
 * the archive's structures (a local header, a record's data, a descriptor,
 * a central directory entry, the ZIP64 end record or locator, the end
 * record; anchor picks it) plus delta: op % 4 is 0 set a byte, 1 set a
 * 16-bit field, 2 set a 32-bit field (value 0xff: 0xffffffff, which means
 * "in the ZIP64 field"), 3 truncate the file there.  The reader's CRC checks
 * need no fixing: it never verifies one (io/torchzip.h), so edits within
 * the data reach the pickle and the storages as they are.
 *
 * The edited file (on /dev/shm: libzip opens by path) must open or be
 * refused with a one-line reason, and each tensor of an open one must read
 * or fail with one; with no edit, it opens and reads TA_V and TA_H_BF16. */
#include <stdlib.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/le.h"
#include "io/torchzip.h"
#include "tests/fuzz/fuzz.h"
#include "tests/torch_archive.h"

enum { NBASE = 4, MAX_ANCHORS = 64, MAX_NUMEL = 1 << 16 };

static struct {
    uint8_t *p;
    size_t len;
    size_t anchor[MAX_ANCHORS];
    int nanchor;
} base[NBASE];
static uint8_t *work;
static char path[64];

static void remove_file(void)
{
    unlink(path);
}

/* The offsets of the structures of archive b, found by their signatures
 * (the data is small and holds none of them). */
static void find_anchors(int b)
{
    static const uint32_t sigs[] = {0x04034b50, 0x08074b50, 0x02014b50, 0x06064b50, 0x07064b50,
                                    0x06054b50};
    for (size_t i = 0; i + 4 <= base[b].len && base[b].nanchor < MAX_ANCHORS - 1; i++)
        for (size_t s = 0; s < sizeof sigs / sizeof *sigs; s++)
            if (le_get_u32(base[b].p + i) == sigs[s]) {
                base[b].anchor[base[b].nanchor++] = i;
                if (s == 0)   /* and where the record's data starts */
                    base[b].anchor[base[b].nanchor++] =
                        i + 30 + le_get_u16(base[b].p + i + 26) + le_get_u16(base[b].p + i + 28);
            }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const ta_record r[] = {
        {"data.pkl", TA_PICKLE, sizeof TA_PICKLE - 1},
        {".format_version", "1", 1},
        {".storage_alignment", "64", 2},
        {"byteorder", "little", 6},
        {"data/0", TA_V, sizeof TA_V},
        {"data/1", TA_H_BF16, sizeof TA_H_BF16},
        {"version", "3\n", 2},
        {".data/serialization_id", "0123456789012345678900000000001234567890", 40},
    };
    size_t most = 0;
    for (int b = 0; b < NBASE; b++) {
        ta_options o = {.prefix = "archive", .no_crc = b & 1, .align = b & 2 ? 4096 : 64};
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        FUZZ_CHECK(f && ta_write(f, &o, r, (int)(sizeof r / sizeof *r)) == 0);
        FUZZ_CHECK(fclose(f) == 0);
        base[b].p = (uint8_t *)buf;
        base[b].len = len;
        most = len > most ? len : most;
        find_anchors(b);
        base[b].anchor[base[b].nanchor++] = len;
    }
    FUZZ_CHECK((work = malloc(most)) != NULL);
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/fuzz_torchzip.%d.bin", dir, (int)getpid());
    atexit(remove_file);
    return 0;
}

/* Applies the edits of data[0..size) to work (a copy of base b); its new length. */
static size_t apply_edits(int b, const uint8_t *data, size_t size)
{
    size_t len = base[b].len;
    memcpy(work, base[b].p, len);
    for (size_t k = 0; k + 4 <= size; k += 4) {
        uint8_t op = data[k] % 4, value = data[k + 3];
        size_t at = base[b].anchor[data[k + 1] % base[b].nanchor] + data[k + 2];
        if (op == 3) {
            len = at < len ? at : len;
            continue;
        }
        size_t width = op == 0 ? 1 : op == 1 ? 2 : 4;
        for (size_t i = 0; i < width && at + i < len; i++)
            work[at + i] = op == 2 && value == 0xff ? 0xff : i == 0 ? value : 0;
    }
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int b = size ? data[0] % NBASE : 0;
    size_t len = apply_edits(b, size ? data + 1 : data, size ? size - 1 : 0);
    char err[512] = "";
    FUZZ_CHECK(fs_write_file_atomic(path, work, len, err, sizeof err) == 0);
    tz_file *f;
    int edited = size > 4;
    if (tz_open(&f, path, err, sizeof err) != 0) {
        FUZZ_CHECK(edited && err[0] != '\0' && !strchr(err, '\n'));
        return 0;
    }
    const tz_dict *d = tz_tensors(f);
    FUZZ_CHECK(edited || d->n == 2);
    for (int i = 0; i < d->n; i++) {
        uint64_t n = st_numel(&d->tensors[i].t);
        if (n > MAX_NUMEL)   /* an edited shape: the importer checks shapes before reading */
            continue;
        float *dst = malloc((size_t)(n ? n : 1) * sizeof *dst);
        FUZZ_CHECK(dst != NULL);
        err[0] = '\0';
        if (tz_read_f32(f, i, dst, err, sizeof err) != 0)
            FUZZ_CHECK(edited && err[0] != '\0' && !strchr(err, '\n'));
        else if (!edited)
            FUZZ_CHECK(i == 0 ? memcmp(dst, TA_V, sizeof TA_V) == 0
                              : dst[0] == 1.0f && dst[1] == -0.5f && dst[2] == 3.0f);
        free(dst);
    }
    tz_close(f);
    return 0;
}
