/* torchzip: a state_dict that torch.save wrote (torch >= 1.6), as in a
 * Hugging Face folder's pytorch_model.bin:
 *
 *   a ZIP archive of entries under one folder PREFIX/
 *     PREFIX/data.pkl     a pickle (protocol 2, the default, to 5) of a dict
 *                         name -> tensor, each torch._utils.
 *                         _rebuild_tensor_v2(storage, offset,
 *                         size, stride, requires_grad, backward_hooks) of a
 *                         storage that persistent_load(("storage",
 *                         torch.FloatStorage..., KEY, location, numel)) names
 *     PREFIX/data/KEY     that storage's raw little-endian bytes, stored
 *     PREFIX/byteorder    "little" (optional; torch 2.x writes it)
 *
 * Other records (version, torch 2.x's .format_version, .storage_alignment,
 * .data/serialization_id) are not read.  PREFIX is whatever torch.save chose
 * (the file name's stem, or "archive").  Records may sit past 4 GiB (ZIP64).
 * CRCs are not checked, as torch does not check them (libzip checks one only
 * when a read runs into the entry's end; reads here stop at it), so an
 * archive torch 2.5+ saved with compute_crc32 = False (CRCs 0) reads.
 *
 * The pickle is read by a restricted unpickler, as torch.load(weights_only=
 * True) would: only the opcodes and the globals a state_dict needs
 * (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, torch.*Storage), which it never imports nor calls: any
 * other is refused, naming it.  It is bounded: the pickle is at most
 * TZ_MAX_PICKLE bytes, makes at most TZ_MAX_OBJECTS objects and pushes as
 * many values (so no container holds more), opens as many MARKs, and nothing
 * recurses.  Each tensor must be a contiguous view (offset, size, stride)
 * within its storage, whose entry holds exactly numel x element size bytes,
 * uncompressed; tensors may share a storage (tied weights) of one type and size.  The legacy format (before 1.6: a bare pickle stream, not a
 * ZIP) is refused.
 *
 * Tensors are described as st_tensor (dtype, shape, and begin/end their byte
 * span within their storage's entry) and read one at a time, F32, F16 and
 * BF16 widened to fp32.  Every function that can fail returns 0, or -1 with a
 * one-line reason in err.
 */
#ifndef IO_TORCHZIP_H
#define IO_TORCHZIP_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

#define TZ_MAX_PICKLE (64u << 20)
#define TZ_MAX_OBJECTS (1 << 20)

typedef struct {
    st_tensor t;             /* name: the state_dict's key */
    char *storage;           /* the storage's KEY */
    uint64_t storage_numel;  /* its elements, of t.dtype */
    int64_t entry;           /* its ZIP entry, once tz_open found it */
} tz_tensor;

typedef struct {
    tz_tensor *tensors;   /* in the pickle's order */
    int n;
} tz_dict;

/* Unpickles data.pkl (p[0..len)) into the tensors it describes, each checked
 * to be a contiguous view within its storage.  Free with tz_dict_free. */
int tz_parse_pickle(const uint8_t *p, size_t len, tz_dict *out, char *err, size_t errlen);
void tz_dict_free(tz_dict *d);

typedef struct tz_file tz_file;

int tz_open(tz_file **out, const char *path, char *err, size_t errlen);
void tz_close(tz_file *f);
const tz_dict *tz_tensors(const tz_file *f);
/* Reads tensor i into dst (st_numel floats); only F32, F16 and BF16. */
int tz_read_f32(const tz_file *f, int i, float *dst, char *err, size_t errlen);

#endif
