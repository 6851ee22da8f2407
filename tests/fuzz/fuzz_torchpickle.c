/* fuzz_torchpickle: the data.pkl of a pytorch_model.bin as build/import
 * unpickles it (io/torchzip.c tz_parse_pickle).  Input: the whole pickle.
 * An accepted pickle gives tensors named once, each a span of exactly its
 * shape's bytes within its storage, and a storage they share is of one
 * dtype and size. */
#include <string.h>

#include "io/torchzip.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tz_dict d;
    char err[256] = "";
    if (tz_parse_pickle(data, size, &d, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0' && !strchr(err, '\n'));
        return 0;
    }
    for (int i = 0; i < d.n; i++) {
        const tz_tensor *t = &d.tensors[i];
        size_t es = st_dtype_size(t->t.dtype);
        FUZZ_CHECK(t->t.ndim >= 0 && t->t.ndim <= ST_MAX_DIMS);
        FUZZ_CHECK(t->t.begin <= t->t.end && t->t.end <= t->storage_numel * es);
        FUZZ_CHECK(t->t.end - t->t.begin == st_numel(&t->t) * es);
        for (int j = 0; j < i; j++) {
            const tz_tensor *u = &d.tensors[j];
            FUZZ_CHECK(strcmp(t->t.name, u->t.name) != 0);
            FUZZ_CHECK(strcmp(t->storage, u->storage) != 0 ||
                       (t->t.dtype == u->t.dtype && t->storage_numel == u->storage_numel));
        }
    }
    tz_dict_free(&d);
    return 0;
}
