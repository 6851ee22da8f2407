/* gguf: ggml's model file (GGUF version 3, little-endian), written and read.
 *
 *   "GGUF", u32 version, u64 tensor count, u64 key-value count
 *   key-values:   string key, u32 value type, value (arrays: u32 element type,
 *                 u64 count, elements; strings: u64 length, bytes)
 *   tensor infos: string name, u32 n_dims, u64 ne[n_dims] (ne[0] varies
 *                 fastest), u32 ggml type, u64 offset in the data section
 *   zero padding to general.alignment (32 unless the file says otherwise),
 *   then the data section, each tensor at an aligned offset.
 *
 * The reader maps the file and checks everything a consumer relies on
 * (lengths inside the file, known value and tensor types, each tensor's byte
 * size from its shape and type, aligned, inside the data section, no two
 * overlapping) before handing out pointers into the mapping.  Only the tensor
 * types F32, F16, BF16 and Q8_0 are known.  Every call that can fail returns
 * 0, or -1 with a one-line reason in err.
 */
#ifndef IO_GGUF_H
#define IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum {   /* metadata value types */
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_NTYPES
};
typedef enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8, GGML_BF16 = 30 } ggml_type;

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_Q8_0_BLOCK 32   /* values per Q8_0 block: an fp16 scale, then 32 int8 */
#define GGUF_Q8_0_BYTES 34

const char *ggml_type_name(ggml_type t);

/* ---- writing ---------------------------------------------------------------- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);   /* drops an unfinished file */
/* Metadata, in the order added.  Strings are (pointer, length), not NUL-terminated. */
int gguf_put_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_put_f32(gguf_writer *w, const char *key, float v);
int gguf_put_str(gguf_writer *w, const char *key, const char *s);
int gguf_put_str_array(gguf_writer *w, const char *key, const char *const *s, const size_t *len,
                       size_t n);
int gguf_put_i32_array(gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* A tensor's info; its data follows in the same order through gguf_write_data. */
int gguf_add_tensor(gguf_writer *w, const char *name, int ndim, const uint64_t *ne, ggml_type type);
/* Writes header, metadata and tensor infos to path.tmp. */
int gguf_write_begin(gguf_writer *w, const char *path, char *err, size_t errlen);
/* The next tensor's bytes, in pieces of any size; its padding follows once all
 * of them are written. */
int gguf_write_data(gguf_writer *w, const void *data, size_t n, char *err, size_t errlen);
/* Checks that every tensor was written whole, fsyncs and renames into place. */
int gguf_write_commit(gguf_writer *w, char *err, size_t errlen);

/* ---- reading ---------------------------------------------------------------- */
typedef struct {
    const char *key;      /* NUL-terminated copy */
    uint32_t type;        /* GGUF_* */
    const uint8_t *val;   /* the value's bytes in the mapping (arrays: from the element type) */
    uint64_t count;       /* arrays: elements; otherwise 1 */
    uint32_t elem;        /* arrays: element type */
} gguf_kv;

typedef struct {
    const char *name;     /* NUL-terminated copy */
    int ndim;
    uint64_t ne[GGUF_MAX_DIMS];
    ggml_type type;
    uint64_t offset, bytes;   /* within the data section */
    const uint8_t *data;
} gguf_tensor;

typedef struct {
    uint32_t version, alignment;
    gguf_kv *kv;
    uint64_t nkv;
    gguf_tensor *tensors;
    uint64_t ntensors;
    const uint8_t *base;   /* the file's bytes */
    size_t size;
    int mapped;            /* base is a mapping gguf_close unmaps */
} gguf_file;

/* Parses a whole file image (buf stays owned by the caller and must outlive f). */
int gguf_parse(const uint8_t *buf, size_t len, gguf_file *f, char *err, size_t errlen);
int gguf_open(const char *path, gguf_file *f, char *err, size_t errlen);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* An unsigned integer value of any width (u8..u64, or a non-negative signed one). */
int gguf_get_uint(const gguf_file *f, const char *key, uint64_t *v, char *err, size_t errlen);
int gguf_get_f32(const gguf_file *f, const char *key, float *v, char *err, size_t errlen);
/* A string value: pointer into the mapping and length. */
int gguf_get_str(const gguf_file *f, const char *key, const char **s, uint64_t *len, char *err,
                 size_t errlen);
/* An array of strings, walked in order with gguf_str_next. */
typedef struct {
    const uint8_t *at;
    uint64_t left;
} gguf_str_iter;
int gguf_str_array(const gguf_file *f, const char *key, gguf_str_iter *it, uint64_t *n,
                   char *err, size_t errlen);
void gguf_str_next(gguf_str_iter *it, const char **s, uint64_t *len);

#endif
