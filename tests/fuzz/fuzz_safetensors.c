/* fuzz_safetensors: safetensors headers (io/safetensors.c) as build/import
 * reads a Hugging Face model.safetensors.  Input: the data region's size
 * (8 bytes, little-endian), then the JSON header.  An accepted header's
 * tensors each span exactly their shape's bytes inside the data region,
 * without overlapping. */
#include "io/safetensors.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t data_len = fuzz_take(&data, &size, 8);
    char *json = malloc(size ? size : 1);   /* exact size: not NUL-terminated */
    if (!json)
        return 0;
    memcpy(json, data, size);
    st_header h;
    char err[256] = "";
    if (st_parse_header(json, size, data_len, &h, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0');
        free(json);
        return 0;
    }
    for (int i = 0; i < h.n; i++) {
        const st_tensor *t = &h.tensors[i];
        FUZZ_CHECK(t->begin <= t->end && t->end <= data_len);
        FUZZ_CHECK(t->end - t->begin == st_numel(t) * st_dtype_size(t->dtype));
        for (int j = 0; j < i; j++)   /* no two tensors share a byte */
            FUZZ_CHECK(t->begin >= h.tensors[j].end || t->end <= h.tensors[j].begin ||
                       t->begin == t->end || h.tensors[j].begin == h.tensors[j].end);
    }
    st_header_free(&h);
    free(json);
    return 0;
}
