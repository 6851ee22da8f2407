/* fuzz_gguf: GGUF files (io/gguf.c) as build/infer --ckpt FILE.gguf reads
 * them.  Input: a whole file.  An accepted file's every tensor lies inside
 * it, and every key reads back through the typed accessors (or is refused
 * as the wrong type) without reading outside the file. */
#include "io/gguf.h"
#include "tests/fuzz/fuzz.h"

static void read_values(const gguf_file *f)
{
    char err[256];
    for (uint64_t i = 0; i < f->nkv; i++) {
        const char *key = f->kv[i].key, *s;
        uint64_t u, n, len;
        float x;
        gguf_str_iter it;
        FUZZ_CHECK(gguf_find(f, key) != NULL);
        gguf_get_uint(f, key, &u, err, sizeof err);
        gguf_get_f32(f, key, &x, err, sizeof err);
        if (gguf_get_str(f, key, &s, &len, err, sizeof err) == 0)
            FUZZ_CHECK((const uint8_t *)s >= f->base && len <= f->size &&
                       (const uint8_t *)s + len <= f->base + f->size);
        if (gguf_str_array(f, key, &it, &n, err, sizeof err) == 0)
            for (uint64_t k = 0; k < n; k++) {
                gguf_str_next(&it, &s, &len);
                FUZZ_CHECK((const uint8_t *)s + len <= f->base + f->size);
            }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);   /* exact size: ASan sees overreads */
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    gguf_file f;
    char err[256] = "";
    if (gguf_parse(buf, size, &f, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0');
        free(buf);
        return 0;
    }
    for (uint64_t i = 0; i < f.ntensors; i++) {
        const gguf_tensor *t = &f.tensors[i];
        FUZZ_CHECK(gguf_find_tensor(&f, t->name) != NULL);
        FUZZ_CHECK(t->data >= buf && t->bytes <= size && t->data + t->bytes <= buf + size);
    }
    read_values(&f);
    gguf_close(&f);
    free(buf);
    return 0;
}
