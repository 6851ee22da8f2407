/* safetensors: Hugging Face's tensor file, read and written.
 *
 *   8 bytes        N, the header's length (little-endian u64)
 *   N bytes        a JSON object: name -> {"dtype", "shape", "data_offsets": [begin, end]},
 *                  and an optional "__metadata__" object of string values
 *   the rest       the data: each tensor's row-major little-endian bytes at
 *                  [begin, end) of this region
 *
 * Reading is as strict as the reference implementation: the header is at most
 * 100 MB of valid JSON, each tensor's byte span equals its element count times
 * its dtype's size, and the spans tile the data region exactly (no overlap, no
 * hole, nothing left over).  Every fixed-size dtype of the format is parsed,
 * so a file is checked whole (older GPT-2 files keep their causal-mask
 * buffers as U8 or BOOL), but only F32, F16 and BF16 tensors can be read;
 * they are read one at a time and widened to fp32, so a file larger than
 * memory can be streamed.  Writing goes to PATH.tmp, renamed into place.
 * Every function that can fail returns 0, or -1 with a one-line reason in err.
 */
#ifndef IO_SAFETENSORS_H
#define IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 4
#define ST_MAX_HEADER 100000000u   /* the reference implementation's limit: 100 MB, not MiB */

typedef enum {
    ST_F32, ST_F16, ST_BF16,   /* the ones st_read_f32 reads */
    ST_F64, ST_I64, ST_U64, ST_I32, ST_U32, ST_I16, ST_U16, ST_I8, ST_U8, ST_BOOL,
    ST_F8_E4M3, ST_F8_E5M2
} st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;   /* byte span within the data region */
} st_tensor;

typedef struct {
    st_tensor *tensors;   /* in header order */
    int n;
} st_header;

/* Parses a header (json[0..len), not NUL-terminated) for a data region of
 * data_len bytes.  Free with st_header_free. */
int st_parse_header(const char *json, size_t len, uint64_t data_len, st_header *out, char *err,
                    size_t errlen);
void st_header_free(st_header *h);

size_t st_dtype_size(st_dtype d);
const char *st_dtype_name(st_dtype d);
/* Whether st_read_f32 reads tensors of this dtype (F32, F16, BF16). */
int st_dtype_readable(st_dtype d);
/* Number of elements (product of the shape; 1 for a scalar). */
uint64_t st_numel(const st_tensor *t);

typedef struct {
    int fd;
    uint64_t data_start;   /* file offset of the data region */
    st_header h;
} st_file;

int st_open(st_file *f, const char *path, char *err, size_t errlen);
void st_close(st_file *f);
/* The tensor of that name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
/* Reads t into dst (st_numel(t) floats), widening F16 and BF16 exactly. */
int st_read_f32(const st_file *f, const st_tensor *t, float *dst, char *err, size_t errlen);

/* Writing: declare every tensor (name, dtype, shape) with st_writer_add, then
 * st_writer_begin writes the header, then st_writer_put the tensors' fp32
 * values in the order they were added (each rounded to its dtype to nearest
 * even), then st_writer_commit.  st_writer_free drops an unfinished file. */
typedef struct st_writer st_writer;

st_writer *st_writer_new(void);
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  char *err, size_t errlen);
/* metadata: string pairs for "__metadata__" (may be NULL) */
int st_writer_begin(st_writer *w, const char *path, const char *const *meta_keys,
                    const char *const *meta_values, int nmeta, char *err, size_t errlen);
int st_writer_put(st_writer *w, const float *values, char *err, size_t errlen);
int st_writer_commit(st_writer *w, char *err, size_t errlen);
void st_writer_free(st_writer *w);

#endif
